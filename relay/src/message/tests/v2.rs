//! The v2 generation: exact layouts (the relay's site as `gateway_site`,
//! readable `ts` on series-batch points, `limit_kind` on every alarm), the
//! v1 alarm carrying `limit_kind` only when known, and v2 messages valid
//! against `docs/schemas/*.v2.json`.

use super::*;
use edge_wire::LimitKind;

const ORIGIN_V2: &str = r#""gateway_site":"plant-a","gateway_tags":{"owner":"maint-a"},"received":"2026-11-22T03:01:00.000001Z","received_us":1795316460000001"#;

/// A batch whose series says of itself that it is in another site than
/// the relay says the gateway is: both values must arrive, apart.
fn disagreeing_sites(points: Vec<Point>, alarms: Vec<AlarmEvent>) -> Delivery {
    let mut b = batch(points, alarms);
    b.series[0].tags.insert("site".into(), "hall-7".into());
    enriched(b)
}

fn limit_alarm(kind: Option<LimitKind>) -> AlarmEvent {
    AlarmEvent {
        series_id: 3,
        rule: "oil_temp".into(),
        state: AlarmState::Raised,
        value: -1.5,
        limit: 0.0,
        ts_us: 1_795_316_401_500_000,
        severity: Some(Severity::Major),
        duration_us: None,
        limit_kind: kind,
        spc: None,
    }
}

#[test]
fn v2_reading_names_the_relay_site_gateway_site_beside_the_series_tag() {
    let d = disagreeing_sites(vec![point(1_795_316_400_123_456, 73.9)], vec![]);
    let (s, p) = d.readings().next().unwrap();
    let json = String::from_utf8(d.reading_json_as(Version::V2, s, p)).unwrap();
    assert_eq!(
        json,
        format!(
            r#"{{"schema":"edge.reading.v2","gateway":"gw-1","batch_seq":17,"series":"press-3.oil_temp","unit":"degC","tags":{{"line":"L1","site":"hall-7"}},"ts":"2026-11-22T03:00:00.123456Z","ts_us":1795316400123456,"value":73.9,"quality":"good",{ORIGIN_V2}}}"#
        )
    );
    // v1 keeps `site` for the relay's value; the tag is the gateway's.
    let v1: Value = serde_json::from_slice(&d.reading_json(s, p)).unwrap();
    assert_eq!(
        (&v1["site"], &v1["tags"]["site"]),
        (&"plant-a".into(), &"hall-7".into())
    );
    assert!(v1.get("gateway_site").is_none());
}

#[test]
fn v2_series_batch_points_carry_a_readable_time() {
    let d = enriched(batch(
        vec![
            point(1_795_316_400_000_000, 73.9),
            point(-62_167_219_200_000_001, 1.0), // before year 0: no RFC 3339
        ],
        vec![],
    ));
    let json = String::from_utf8(d.series_json_as(Version::V2, &d.batch.series[0])).unwrap();
    assert_eq!(
        json,
        format!(
            r#"{{"schema":"edge.series-batch.v2","gateway":"gw-1","batch_seq":17,"series":"press-3.oil_temp","unit":"degC","tags":{{"line":"L1","site":"plant-a"}},"points":[{{"t_us":1795316400000000,"ts":"2026-11-22T03:00:00.000000Z","value":73.9,"quality":"good"}},{{"t_us":-62167219200000001,"ts":null,"value":1.0,"quality":"good"}}],{ORIGIN_V2}}}"#
        )
    );
}

#[rustfmt::skip]
#[test]
fn alarms_say_which_limit_fired() {
    // (kind on the wire, v1 limit_kind (None = absent), v2 limit_kind)
    let table = [
        (Some(LimitKind::HighHigh), Some("high_high"), Value::from("high_high")),
        (Some(LimitKind::High),     Some("high"),      Value::from("high")),
        (Some(LimitKind::Low),      Some("low"),       Value::from("low")),
        (Some(LimitKind::LowLow),   Some("low_low"),   Value::from("low_low")),
        (None,                      None,              Value::Null),
    ];
    for (kind, v1_kind, v2_kind) in table {
        let d = enriched(batch(vec![], vec![limit_alarm(kind)]));
        let (s, a) = d.alarms().next().unwrap();
        let v1: Value = serde_json::from_slice(&d.alarm_json(s, a)).unwrap();
        let v2: Value = serde_json::from_slice(&d.alarm_json_as(Version::V2, s, a)).unwrap();
        assert_eq!(v1.get("limit_kind").map(|k| k.as_str().unwrap()), v1_kind, "{v1}");
        assert_eq!(v2.get("limit_kind"), Some(&v2_kind), "{v2}");
        assert_eq!((&v2["schema"], &v2["rule"]), (&"edge.alarm.v2".into(), &"oil_temp".into()));
    }
}

#[test]
fn v2_messages_validate_against_the_v2_schemas_and_v1_alarms_with_a_kind_against_v1() {
    let v = |text: &str| {
        let schema: Value = serde_json::from_str(text).unwrap();
        jsonschema::validator_for(&schema).unwrap()
    };
    let reading = v(include_str!(
        "../../../../docs/schemas/edge.reading.v2.json"
    ));
    let series = v(include_str!(
        "../../../../docs/schemas/edge.series-batch.v2.json"
    ));
    let alarm = v(include_str!("../../../../docs/schemas/edge.alarm.v2.json"));
    let alarm_v1 = v(include_str!("../../../../docs/schemas/edge.alarm.v1.json"));
    let check = |v: &jsonschema::Validator, bytes: &[u8], valid: bool| {
        let msg: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(v.is_valid(&msg), valid, "{msg}");
    };
    let alarms = vec![limit_alarm(Some(LimitKind::Low)), limit_alarm(None)];
    let points = vec![point(1_795_316_400_000_000, 73.9), point(2, f64::NAN)];
    for d in [
        disagreeing_sites(points.clone(), alarms.clone()),
        Delivery::new(batch(points, alarms)).unwrap(),
    ] {
        for (s, p) in d.readings() {
            check(&reading, &d.reading_json_as(Version::V2, s, p), true);
            // A v1 message is not a v2 one (schema name, `site`).
            check(&reading, &d.reading_json(s, p), false);
        }
        for (s, a) in d.alarms() {
            check(&alarm, &d.alarm_json_as(Version::V2, s, a), true);
            check(&alarm_v1, &d.alarm_json(s, a), true);
        }
        check(
            &series,
            &d.series_json_as(Version::V2, &d.batch.series[0]),
            true,
        );
        check(&series, &d.series_json(&d.batch.series[0]), false);
    }
}
