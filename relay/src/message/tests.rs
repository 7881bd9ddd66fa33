//! JSON messages: exact layout, non-finite numbers, timestamps, and a
//! property test that finite values and timestamps survive the JSON.

use super::*;
use edge_wire::{AlarmState, Quality, Severity};
use proptest::prelude::*;
use serde_json::Value;

fn batch(points: Vec<Point>, alarms: Vec<AlarmEvent>) -> Batch {
    Batch {
        gateway_id: "gw-1".into(),
        instance: None,
        seq: 17,
        created_us: 0,
        series: vec![Series {
            id: 3,
            name: "press-3.oil_temp".into(),
            unit: "degC".into(),
            tags: [("line", "L1"), ("site", "plant-a")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            points,
            reporting: None,
        }],
        alarms,
        gaps: Vec::new(),
        devices: Vec::new(),
    }
}

fn point(ts_us: i64, value: f64) -> Point {
    Point {
        ts_us,
        value,
        quality: Quality::Good,
    }
}

/// A delivery as the relay makes it: with the gateway's site and tags and
/// the arrival time.
fn enriched(batch: Batch) -> Delivery {
    let mut d = Delivery::new(batch).unwrap();
    d.origin = Origin {
        site: Some("plant-a".into()),
        gateway_tags: [("owner".to_string(), "maint-a".to_string())].into(),
        received_us: 1_795_316_460_000_001,
    };
    d
}

const ORIGIN_JSON: &str = r#""site":"plant-a","gateway_tags":{"owner":"maint-a"},"received":"2026-11-22T03:01:00.000001Z","received_us":1795316460000001"#;

fn readings_json(points: Vec<Point>) -> Vec<String> {
    let d = enriched(batch(points, vec![]));
    d.readings()
        .map(|(s, p)| String::from_utf8(d.reading_json(s, p)).unwrap())
        .collect()
}

#[test]
fn reading_message_layout_is_exactly_the_documented_one() {
    let json = readings_json(vec![point(1_795_316_400_123_456, 73.9)]);
    assert_eq!(
        json[0],
        format!(
            r#"{{"schema":"edge.reading.v1","gateway":"gw-1","batch_seq":17,"series":"press-3.oil_temp","unit":"degC","tags":{{"line":"L1","site":"plant-a"}},"ts":"2026-11-22T03:00:00.123456Z","ts_us":1795316400123456,"value":73.9,"quality":"good",{ORIGIN_JSON}}}"#
        )
    );
}

#[test]
fn non_finite_values_become_null_with_value_text() {
    let json = readings_json(vec![
        point(1, f64::NAN),
        point(2, f64::INFINITY),
        point(3, f64::NEG_INFINITY),
        point(4, -0.0),
    ]);
    let parsed: Vec<Value> = json
        .iter()
        .map(|j| serde_json::from_str(j).unwrap())
        .collect();
    for (msg, text) in parsed.iter().zip(["NaN", "inf", "-inf"]) {
        assert_eq!(msg["value"], Value::Null, "{msg}");
        assert_eq!(msg["value_text"], text, "{msg}");
    }
    // A finite value has no value_text at all; -0.0 keeps its sign.
    assert!(parsed[3].get("value_text").is_none(), "{}", parsed[3]);
    assert!(json[3].contains(r#""value":-0.0,"#), "{}", json[3]);
}

#[test]
fn alarm_message_layout_and_non_finite_limit() {
    let alarm = AlarmEvent {
        series_id: 3,
        spc: None,
        rule: "oil_temp.high".into(),
        state: AlarmState::Cleared,
        value: 79.5,
        limit: f64::INFINITY,
        ts_us: 1_795_316_401_500_000,
        severity: Some(Severity::Critical),
        duration_us: Some(90_000_000),
        limit_kind: None,
    };
    let d = enriched(batch(vec![], vec![alarm]));
    let (s, a) = d.alarms().next().unwrap();
    let json = String::from_utf8(d.alarm_json(s, a)).unwrap();
    assert_eq!(
        json,
        format!(
            r#"{{"schema":"edge.alarm.v1","gateway":"gw-1","batch_seq":17,"series":"press-3.oil_temp","unit":"degC","tags":{{"line":"L1","site":"plant-a"}},"rule":"oil_temp.high","state":"cleared","value":79.5,"limit":null,"limit_text":"inf","ts":"2026-11-22T03:00:01.500000Z","ts_us":1795316401500000,"severity":"critical","duration_us":90000000,{ORIGIN_JSON}}}"#
        )
    );
}

/// An SPC alarm carries `spc` after `duration_us`; the layout of every
/// other alarm is unchanged (the test above).
#[test]
fn spc_alarm_carries_the_test_limits_and_statistic() {
    let alarm = AlarmEvent {
        series_id: 3,
        spc: Some(edge_wire::SpcDetail {
            test: 7,
            centre: 32.0,
            sigma: 0.5,
            lower: -2.5,
            upper: 2.5,
            statistic: 2.75,
        }),
        rule: "oil_temp.spc_cusum".into(),
        state: AlarmState::Raised,
        value: 2.75,
        limit: 2.5,
        ts_us: 1_795_316_401_500_000,
        severity: Some(Severity::Warning),
        duration_us: None,
        limit_kind: None,
    };
    let d = enriched(batch(vec![], vec![alarm]));
    let (s, a) = d.alarms().next().unwrap();
    let json = String::from_utf8(d.alarm_json(s, a)).unwrap();
    assert!(
        json.contains(r#""duration_us":null,"spc":{"test":7,"test_name":"cusum","centre":32.0,"sigma":0.5,"lower":-2.5,"upper":2.5,"statistic":2.75},"site""#),
        "{json}"
    );
    let mut unknown = a.clone();
    unknown.spc = unknown.spc.map(|d| edge_wire::SpcDetail { test: 99, ..d });
    let msg: Value = serde_json::from_slice(&d.alarm_json(s, &unknown)).unwrap();
    assert_eq!(msg["spc"]["test_name"], Value::Null, "{msg}");
}

#[test]
fn series_batch_message_layout_is_exactly_the_documented_one() {
    let d = enriched(batch(
        vec![
            point(1_795_316_400_000_000, 73.9),
            Point {
                ts_us: 1_795_316_401_000_000,
                value: f64::NAN,
                quality: Quality::Bad,
            },
        ],
        vec![],
    ));
    let json = String::from_utf8(d.series_json(&d.batch.series[0])).unwrap();
    assert_eq!(
        json,
        format!(
            r#"{{"schema":"edge.series-batch.v1","gateway":"gw-1","batch_seq":17,"series":"press-3.oil_temp","unit":"degC","tags":{{"line":"L1","site":"plant-a"}},"points":[{{"t_us":1795316400000000,"value":73.9,"quality":"good"}},{{"t_us":1795316401000000,"value":null,"value_text":"NaN","quality":"bad"}}],{ORIGIN_JSON}}}"#
        )
    );
}

#[test]
fn without_a_site_the_message_says_null_and_empty_gateway_tags() {
    let d = Delivery::new(batch(vec![point(5, 1.0)], vec![])).unwrap();
    let (s, p) = d.readings().next().unwrap();
    let msg: Value = serde_json::from_slice(&d.reading_json(s, p)).unwrap();
    assert_eq!(msg["site"], Value::Null, "{msg}");
    assert_eq!(msg["gateway_tags"], serde_json::json!({}), "{msg}");
    assert_eq!(msg["received_us"], 0, "{msg}");
}

#[test]
fn alarm_naming_an_unknown_series_is_refused() {
    let alarm = AlarmEvent {
        series_id: 99,
        spc: None,
        rule: "r".into(),
        state: AlarmState::Raised,
        value: 1.0,
        limit: 0.0,
        ts_us: 0,
        severity: None,
        duration_us: None,
        limit_kind: None,
    };
    let err = Delivery::new(batch(vec![], vec![alarm]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("series id 99"), "{err}");
}

/// Guards the v1 compatibility: an alarm from a v1 batch (no severity, no
/// duration) still renders, with explicit nulls.
#[test]
fn alarm_without_v2_fields_has_null_severity_and_duration() {
    let alarm = AlarmEvent {
        series_id: 3,
        spc: None,
        rule: "r".into(),
        state: AlarmState::Raised,
        value: 1.0,
        limit: 0.0,
        ts_us: 0,
        severity: None,
        duration_us: None,
        limit_kind: None,
    };
    let d = Delivery::new(batch(vec![], vec![alarm])).unwrap();
    let (s, a) = d.alarms().next().unwrap();
    let msg: Value = serde_json::from_slice(&d.alarm_json(s, a)).unwrap();
    assert_eq!(msg["severity"], Value::Null, "{msg}");
    assert_eq!(msg["duration_us"], Value::Null, "{msg}");
    assert_eq!(msg["state"], "raised", "{msg}");
}

#[test]
fn rfc3339_table() {
    let table = [
        (0, Some("1970-01-01T00:00:00.000000Z")),
        (-1, Some("1969-12-31T23:59:59.999999Z")),
        (951_782_400_000_000, Some("2000-02-29T00:00:00.000000Z")),
        (1_795_316_400_123_456, Some("2026-11-22T03:00:00.123456Z")),
        (253_402_300_799_999_999, Some("9999-12-31T23:59:59.999999Z")),
        (253_402_300_800_000_000, None),
        (-62_167_219_200_000_000, Some("0000-01-01T00:00:00.000000Z")),
        (-62_167_219_200_000_001, None),
        (i64::MIN, None),
        (i64::MAX, None),
    ];
    for (ts_us, expected) in table {
        assert_eq!(rfc3339_micros(ts_us).as_deref(), expected, "{ts_us}");
    }
}

proptest! {
    #[test]
    fn finite_values_and_timestamps_survive_the_json(
        bits in any::<u64>(),
        ts_us in -62_167_219_200_000_000i64..253_402_300_800_000_000,
    ) {
        let value = f64::from_bits(bits);
        let json = readings_json(vec![point(ts_us, value)]);
        let msg: Value = serde_json::from_str(&json[0]).unwrap();
        prop_assert_eq!(msg["ts_us"].as_i64(), Some(ts_us));
        if value.is_finite() {
            prop_assert_eq!(msg["value"].as_f64().map(f64::to_bits), Some(value.to_bits()));
        } else {
            prop_assert!(msg["value"].is_null());
        }
        prop_assert_eq!(parse_ts(msg["ts"].as_str().unwrap()), ts_us);
    }
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ` back to µs, with the inverse algorithm
/// (`days_from_civil`), so the property test checks the formatter against
/// independent code.
fn parse_ts(ts: &str) -> i64 {
    assert_eq!(ts.len(), 27, "{ts}");
    let n = |r: std::ops::Range<usize>| ts[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    secs * 1_000_000 + n(20..26)
}

/// Guards the published contract: real rendered messages of every kind
/// validate against the JSON Schema files in `docs/schemas/`, and a message
/// that breaks a documented rule does not.
mod schema_files {
    use super::*;

    fn validator(text: &str) -> jsonschema::Validator {
        let schema: Value = serde_json::from_str(text).unwrap();
        jsonschema::validator_for(&schema).unwrap()
    }

    fn assert_valid(v: &jsonschema::Validator, bytes: &[u8]) {
        let msg: Value = serde_json::from_slice(bytes).unwrap();
        let errors: Vec<String> = v.iter_errors(&msg).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{msg}: {errors:?}");
    }

    fn alarm(state: AlarmState, limit: f64, severity: Option<Severity>) -> AlarmEvent {
        AlarmEvent {
            series_id: 3,
            spc: None,
            rule: "oil_temp.high".into(),
            state,
            value: f64::NAN,
            limit,
            ts_us: 1_795_316_401_500_000,
            severity,
            duration_us: Some(5),
            limit_kind: None,
        }
    }

    #[test]
    fn rendered_messages_validate_against_the_published_schemas() {
        let reading = validator(include_str!("../../../docs/schemas/edge.reading.v1.json"));
        let alarm_v = validator(include_str!("../../../docs/schemas/edge.alarm.v1.json"));
        let series = validator(include_str!(
            "../../../docs/schemas/edge.series-batch.v1.json"
        ));
        let points = vec![
            point(1_795_316_400_000_000, 73.9),
            point(1_795_316_400_100_000, f64::INFINITY),
            point(-62_167_219_200_000_001, -0.0), // before year 0: ts is null
        ];
        let mut spc = alarm(AlarmState::Raised, 2.5, Some(Severity::Warning));
        spc.spc = Some(edge_wire::SpcDetail {
            test: 6,
            centre: 10.0,
            sigma: 1.0,
            lower: 9.4,
            upper: 10.6,
            statistic: 10.7,
        });
        let alarms = vec![
            alarm(AlarmState::Raised, 90.0, Some(Severity::Warning)),
            alarm(AlarmState::Cleared, f64::NEG_INFINITY, None),
            alarm(AlarmState::Acknowledged, 1.0, Some(Severity::Critical)),
            spc,
        ];
        for d in [
            enriched(batch(points.clone(), alarms.clone())),
            Delivery::new(batch(points, alarms)).unwrap(),
        ] {
            for (s, p) in d.readings() {
                assert_valid(&reading, &d.reading_json(s, p));
            }
            for (s, a) in d.alarms() {
                assert_valid(&alarm_v, &d.alarm_json(s, a));
            }
            assert_valid(&series, &d.series_json(&d.batch.series[0]));
        }
    }

    #[test]
    fn gap_events_validate_and_say_what_is_missing() {
        let event = validator(include_str!("../../../docs/schemas/edge.event.v1.json"));
        let mut b = batch(vec![], vec![]);
        b.gaps = vec![edge_wire::Gap {
            reason: edge_wire::GapReason::SpoolFull,
            first_us: 1_795_309_200_000_000,
            last_us: 1_795_312_799_000_000,
            readings: 36_000,
            batches: 360,
            recorded_us: 1_795_316_400_250_000,
        }];
        let d = enriched(b);
        let bytes = d.gap_json(&d.batch.gaps[0]);
        assert_valid(&event, &bytes);
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            format!(
                r#"{{"schema":"edge.event.v1","event":"gap","gateway":"gw-1","batch_seq":17,"reason":"spool_full","first":"2026-11-22T01:00:00.000000Z","first_us":1795309200000000,"last":"2026-11-22T01:59:59.000000Z","last_us":1795312799000000,"readings":36000,"batches":360,"recorded":"2026-11-22T03:00:00.250000Z","recorded_us":1795316400250000,{ORIGIN_JSON}}}"#
            )
        );
        let good: Value = serde_json::from_slice(&bytes).unwrap();
        let mut bad_reason = good.clone();
        bad_reason["reason"] = "disk_on_fire".into();
        assert!(!event.is_valid(&bad_reason));
        let mut no_interval = good;
        no_interval.as_object_mut().unwrap().remove("last_us");
        assert!(!event.is_valid(&no_interval));
    }

    fn device(
        state: edge_wire::DeviceState,
        previous: edge_wire::DeviceState,
        reason: Option<(edge_wire::ReasonKind, Option<u8>, &str)>,
    ) -> edge_wire::DeviceEvent {
        edge_wire::DeviceEvent {
            device: "press-3".into(),
            source: "modbus".into(),
            state,
            previous,
            reason: reason.map(|(kind, code, detail)| edge_wire::DeviceReason {
                kind,
                code,
                detail: detail.into(),
            }),
            at_us: 1_795_316_402_500_000,
            since_us: 1_795_309_920_000_000,
        }
    }

    /// Every state change a source reports (down on each reason kind,
    /// degraded on an exception, back to ok, down from start-up) renders
    /// as a `device_state` event the published schema accepts; its exact
    /// layout is pinned, and messages that break the documented rules are
    /// refused by the schema.
    #[test]
    fn device_state_events_validate_and_say_what_changed() {
        use edge_wire::{DeviceState as S, ReasonKind as K};
        let event = validator(include_str!("../../../docs/schemas/edge.event.v1.json"));
        let mut b = batch(vec![], vec![]);
        b.instance = std::num::NonZeroU64::new(5);
        b.devices = vec![
            device(
                S::Down,
                S::Ok,
                Some((K::Timeout, None, "timed out after 500 ms")),
            ),
            device(S::Ok, S::Down, None),
            device(
                S::Degraded,
                S::Ok,
                Some((
                    K::Exception,
                    Some(2),
                    "exception code 2 (illegal data address)",
                )),
            ),
            device(
                S::Down,
                S::Pending,
                Some((K::ConnectionRefused, None, "refused")),
            ),
        ];
        for kind in K::ALL {
            b.devices
                .push(device(S::Down, S::Degraded, Some((kind, None, "x"))));
        }
        let d = enriched(b);
        for dev in &d.batch.devices {
            assert_valid(&event, &d.device_json(dev));
        }
        let bytes = d.device_json(&d.batch.devices[0]);
        assert_eq!(
            String::from_utf8(bytes.clone()).unwrap(),
            format!(
                r#"{{"schema":"edge.event.v1","event":"device_state","gateway":"gw-1","batch_seq":17,"device":"press-3","source":"modbus","state":"down","previous_state":"ok","reason":{{"kind":"timeout","code":null,"detail":"timed out after 500 ms"}},"at":"2026-11-22T03:00:02.500000Z","at_us":1795316402500000,"since":"2026-11-22T01:12:00.000000Z","since_us":1795309920000000,{ORIGIN_JSON}}}"#
            )
        );
        let ok: Value = serde_json::from_slice(&d.device_json(&d.batch.devices[1])).unwrap();
        assert_eq!(ok["reason"], Value::Null);
        assert_eq!(
            (ok["state"].as_str(), ok["previous_state"].as_str()),
            (Some("ok"), Some("down"))
        );
        let degraded: Value = serde_json::from_slice(&d.device_json(&d.batch.devices[2])).unwrap();
        assert_eq!(degraded["reason"]["code"], 2);

        let good: Value = serde_json::from_slice(&bytes).unwrap();
        let mut bad_kind = good.clone();
        bad_kind["reason"]["kind"] = "gremlins".into();
        assert!(!event.is_valid(&bad_kind));
        let mut down_without_reason = good.clone();
        down_without_reason["reason"] = Value::Null;
        assert!(!event.is_valid(&down_without_reason));
        let mut ok_with_reason = good.clone();
        ok_with_reason["state"] = "ok".into();
        assert!(!event.is_valid(&ok_with_reason));
        let mut pending_now = ok;
        pending_now["state"] = "pending".into();
        assert!(
            !event.is_valid(&pending_now),
            "pending is never a new state"
        );
        let mut no_since = good;
        no_since.as_object_mut().unwrap().remove("since_us");
        assert!(!event.is_valid(&no_since));
    }

    /// A series reported by exception: its readings and its series-batch
    /// message say so, validate, and a broken `reporting` does not.
    #[test]
    fn a_series_reported_by_exception_says_so_and_validates() {
        let reading = validator(include_str!("../../../docs/schemas/edge.reading.v1.json"));
        let series = validator(include_str!(
            "../../../docs/schemas/edge.series-batch.v1.json"
        ));
        let mut b = batch(vec![point(1_795_316_400_000_000, 73.9)], vec![]);
        b.series[0].reporting = Some(edge_wire::Reporting {
            deadband: 0.05,
            max_silence_ms: 60_000,
        });
        let d = enriched(b);
        let (s, p) = d.readings().next().unwrap();
        let json = String::from_utf8(d.reading_json(s, p)).unwrap();
        assert!(
            json.contains(r#""quality":"good","reporting":{"mode":"exception","deadband":0.05,"max_silence_s":60.0},"site""#),
            "{json}"
        );
        assert_valid(&reading, json.as_bytes());
        assert_valid(&series, &d.series_json(&d.batch.series[0]));
        let mut bad: Value = serde_json::from_str(&json).unwrap();
        bad["reporting"]["mode"] = "sampled".into();
        assert!(!reading.is_valid(&bad));
        bad["reporting"]["mode"] = "exception".into();
        bad["reporting"]["max_silence_s"] = 0.into();
        assert!(!reading.is_valid(&bad));
    }

    #[test]
    fn schemas_refuse_messages_that_break_the_documented_rules() {
        let reading = validator(include_str!("../../../docs/schemas/edge.reading.v1.json"));
        let series = validator(include_str!(
            "../../../docs/schemas/edge.series-batch.v1.json"
        ));
        let d = enriched(batch(vec![point(1, f64::NAN)], vec![]));
        let (s, p) = d.readings().next().unwrap();
        let good: Value = serde_json::from_slice(&d.reading_json(s, p)).unwrap();
        assert!(reading.is_valid(&good));
        let mut no_text = good.clone();
        no_text.as_object_mut().unwrap().remove("value_text");
        assert!(!reading.is_valid(&no_text), "null value without value_text");
        let mut wrong_schema = good.clone();
        wrong_schema["schema"] = "edge.reading.v2".into();
        assert!(!reading.is_valid(&wrong_schema));
        let mut no_received = good;
        no_received.as_object_mut().unwrap().remove("received_us");
        assert!(!reading.is_valid(&no_received));
        let batch_msg: Value = serde_json::from_slice(&d.series_json(&d.batch.series[0])).unwrap();
        assert!(series.is_valid(&batch_msg));
        let mut bad_quality = batch_msg;
        bad_quality["points"][0]["quality"] = "excellent".into();
        assert!(!series.is_valid(&bad_quality));
    }
    /// A rebaseline is a gateway event, not an alarm: it renders as
    /// `spc_rebaseline` with the dropped baseline (or null), validates
    /// against the events schema, and no alarm message is made of it.
    #[test]
    fn a_rebaseline_is_an_event_with_the_dropped_baseline() {
        let event = validator(include_str!("../../../docs/schemas/edge.event.v1.json"));
        let mut with = alarm(AlarmState::Rebaselined, 33.0, Some(Severity::Major));
        with.rule = "pump.flow_spc.spc_two_of_three".into();
        with.duration_us = None;
        with.spc = Some(edge_wire::SpcDetail {
            test: 2,
            centre: 32.0,
            sigma: 0.25,
            lower: 31.25,
            upper: 32.75,
            statistic: f64::NAN,
        });
        let mut without = with.clone();
        without.spc = None;
        let raise = alarm(AlarmState::Raised, 50.0, Some(Severity::Major));
        let d = enriched(batch(vec![], vec![raise, with, without]));
        assert_eq!(d.alarms().count(), 1, "only the raise is an alarm message");
        let all: Vec<Vec<u8>> = d
            .rebaselines()
            .map(|(s, a)| d.rebaseline_json(s, a))
            .collect();
        assert_eq!(all.len(), 2);
        for bytes in &all {
            assert_valid(&event, bytes);
        }
        assert_eq!(
            String::from_utf8(all[0].clone()).unwrap(),
            format!(
                r#"{{"schema":"edge.event.v1","event":"spc_rebaseline","gateway":"gw-1","batch_seq":17,"series":"press-3.oil_temp","unit":"degC","tags":{{"line":"L1","site":"plant-a"}},"rule":"pump.flow_spc.spc_two_of_three","severity":"major","at":"2026-11-22T03:00:01.500000Z","at_us":1795316401500000,"dropped":{{"test":2,"test_name":"two_of_three","centre":32.0,"sigma":0.25,"lower":31.25,"upper":32.75}},{ORIGIN_JSON}}}"#
            )
        );
        let none: Value = serde_json::from_slice(&all[1]).unwrap();
        assert_eq!(none["dropped"], Value::Null);
        let good: Value = serde_json::from_slice(&all[0]).unwrap();
        let mut no_rule = good.clone();
        no_rule.as_object_mut().unwrap().remove("rule");
        assert!(!event.is_valid(&no_rule));
        let mut statistic = good;
        statistic["dropped"]["statistic"] = 1.0.into();
        assert!(!event.is_valid(&statistic), "dropped has no statistic");
    }
}

mod v2;
