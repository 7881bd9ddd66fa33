//! The page and the JSON from made-up views.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::devices::{DeviceKey, DeviceState, DeviceStatus, Reason, ReasonKind, SourceKind};
use crate::points::Point;
use crate::reading::{AlarmState, Quality, SeriesInfo, Severity};
use crate::status::api;
use crate::status::view::{SpoolView, UplinkView};

const S: i64 = 1_000_000;

fn device(name: &str, state: DeviceState) -> DeviceView {
    DeviceView {
        key: DeviceKey::new(SourceKind::Modbus, name),
        status: DeviceStatus {
            state,
            since_us: 90 * S,
            last_ok_us: Some(95 * S),
            reason: (state == DeviceState::Down)
                .then(|| Reason::new(ReasonKind::Timeout, "timed out after 500 ms")),
            times_down: 1,
        },
        received: 42,
        errors: vec![("transport".into(), 3), ("exception_2".into(), 1)],
        round_trip_ms: Some(4.25),
    }
}

fn view(ack_token: bool) -> View {
    let point = |series: &str, stale: bool| PointView {
        series: series.into(),
        point: Point {
            device: "press<1>".into(),
            unit: "°C".into(),
            value: Some(21.5),
            quality: Some(Quality::Good),
            ts_us: Some(97 * S),
            last_good_us: Some(97 * S),
            interval: Some(Duration::from_secs(1)),
            since_us: 0,
        },
        age_us: Some(3 * S),
        stale,
    };
    View {
        now_us: 100 * S,
        gateway_id: "gw-<script>".into(),
        version: "0.1.0",
        started_us: 10 * S,
        uplink: UplinkView {
            connected: Some(false),
            backlog_readings: 600,
            drain_per_s: Some(10.0),
            time_to_empty_s: Some(60.0),
            ..UplinkView::default()
        },
        spool: Some(SpoolView {
            on_full: "drop-oldest",
            ..SpoolView::default()
        }),
        health: vec![("not_forwarding", "no upload for 300 s".into())],
        devices: vec![
            device("press<1>", DeviceState::Down),
            device("oven", DeviceState::Ok),
        ],
        points: vec![point("press<1>.temp", true), point("press<1>.speed", false)],
        points_device: None,
        point_devices: vec!["press<1>".into()],
        points_total: 2,
        alarms: vec![RaisedAlarm {
            series: "press<1>.temp".into(),
            unit: "°C".into(),
            rule: "temp.high".into(),
            severity: Severity::Critical,
            value: Some(81.0),
            limit: 50.0,
            raised_us: 99 * S,
            acked_us: None,
        }],
        history: vec![Alarm {
            series: Arc::new(SeriesInfo {
                name: "press<1>.temp".into(),
                unit: "°C".into(),
                tags: Default::default(),
            }),
            rule: "temp.high".into(),
            severity: Severity::Critical,
            state: AlarmState::Raised,
            value: 81.0,
            limit: 50.0,
            ts_us: 99 * S,
            duration_us: None,
            limit_kind: None,
            spc: None,
        }],
        ack_token,
        ack_basic: false,
    }
}

#[test]
fn text_is_escaped() {
    let page = render(&view(true));
    assert!(!page.contains("gw-<script>"), "gateway id unescaped");
    assert!(page.contains("Gateway gw-&lt;script&gt;"));
    assert!(!page.contains("press<1>"), "device name unescaped");
    assert!(page.contains("data-device=\"modbus/press&lt;1&gt;\""));
    assert_eq!(escape("a&b\"'<>"), "a&amp;b&quot;&#39;&lt;&gt;");
}

#[test]
fn states_are_words_as_well_as_colours() {
    let page = render(&view(false));
    let down = page
        .split("<tr data-device=\"modbus/press&lt;1&gt;\" class=\"st-down\">")
        .nth(1)
        .expect("the down device's row");
    let row = &down[..down.find("</tr>").unwrap()];
    assert!(row.contains("<span class=\"badge\">DOWN</span>"), "{row}");
    assert!(row.contains("timed out after 500 ms"), "{row}");
    assert!(row.contains("transport 3, exception_2 1"), "{row}");
    assert!(page.contains("class=\"st-ok\""));
    assert!(page.contains("<span class=\"badge\">OK</span>"));
    assert!(page.contains("class=\"stale\""));
    assert!(page.contains(">STALE</td>"));
    assert!(page.contains("NOT CONNECTED"));
    assert!(page.contains("UNHEALTHY: not_forwarding: no upload for 300 s"));
    assert!(page.contains(">CRITICAL</td>"));
}

#[test]
fn no_buttons_without_auth() {
    let page = render(&view(false));
    // The markup, without the script (which can draw buttons when allowed).
    let read_only = &page[..page.find("<script>").unwrap()];
    assert!(!read_only.contains("<button"), "read only: no button");
    assert!(!read_only.contains("ack-token"));
    assert!(read_only.contains("data-ack=\"\""));
    assert!(read_only.contains("NOT ACKNOWLEDGED"));
    let with_auth = render(&view(true));
    assert!(
        with_auth.contains("<label for=\"ack-token\">Access token</label><input id=\"ack-token\"")
    );
    assert!(with_auth.contains(
        "aria-label=\"Acknowledge temp.high on press&lt;1&gt;.temp\">Acknowledge</button>"
    ));
    assert!(with_auth.contains("data-ack=\"bearer\""));
}

#[test]
fn first_last_updated_is_the_views_time_of_day() {
    let page = render(&view(false));
    assert!(page.contains("<time id=\"updated\">00:01:40 UTC</time>"));
    assert_eq!(clock(86_400 * S + 3_723 * S), "01:02:03 UTC");
}

#[test]
fn ages_table() {
    let table: &[(Option<i64>, &str)] = &[
        (None, "never"),
        (Some(100 * S), "0 s ago"),
        (Some(101 * S), "0 s ago"), // a clock ahead: not negative
        (Some(100 * S - 1), "0 s ago"),
        (Some(100 * S - 119 * S), "119 s ago"),
        (Some(100 * S - 120 * S), "2 min ago"),
        (Some(100 * S - 7199 * S), "119 min ago"),
        (Some(100 * S - 7200 * S), "2 h ago"),
    ];
    for (t, want) in table {
        assert_eq!(age(100 * S, *t), *want, "{t:?}");
    }
}

#[test]
fn api_json_has_the_documented_fields() {
    let v = api::json(&view(true));
    assert_eq!(v["api"], 1);
    assert_eq!(
        v["gateway"]["id"], "gw-<script>",
        "JSON is not HTML-escaped"
    );
    assert_eq!(v["gateway"]["uptime_s"], 90.0);
    assert_eq!(v["uplink"]["connected"], false);
    assert_eq!(v["uplink"]["time_to_empty_s"], 60.0);
    assert_eq!(v["health"]["status"], "unhealthy");
    assert_eq!(v["health"]["failed"][0]["condition"], "not_forwarding");
    let d = &v["devices"][0];
    assert_eq!(
        (d["kind"].as_str(), d["state"].as_str()),
        (Some("modbus"), Some("down"))
    );
    assert_eq!(d["reason"]["kind"], "timeout");
    assert_eq!(d["errors"]["transport"], 3);
    assert_eq!(d["errors"]["exception_2"], 1);
    let p = &v["points"][0];
    assert_eq!(p["stale"], true);
    assert_eq!(p["age_s"], 3.0);
    assert_eq!(p["poll_interval_ms"], 1000);
    assert_eq!(p["stale_after_s"], 4.0);
    let a = &v["alarms"]["active"][0];
    assert_eq!(
        (a["severity"].as_str(), a["acknowledged"].as_bool()),
        (Some("critical"), Some(false))
    );
    assert_eq!(v["alarms"]["recent"][0]["state"], "raised");
    assert_eq!(v["alarms"]["ack"], serde_json::json!(["bearer"]));
}
