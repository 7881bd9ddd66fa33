//! Table-driven tests of [`super::decode`]: one row per payload, with the
//! samples or the error expected.

use std::collections::BTreeMap;

use super::*;
use crate::config::mqtt::{JsonValue, Qos, Template};

const ARRIVAL: i64 = 1_700_000_000_000_000;
/// 2023-11-14T22:13:20Z, in µs.
const T0: i64 = 1_700_000_000_000_000;

fn sub(format: PayloadFormat) -> Subscription {
    Subscription {
        topic: "plant/+/temp".into(),
        qos: Qos::AtMostOnce,
        format,
        series: Template::parse("{2}").unwrap(),
        unit: "degC".into(),
        tags: BTreeMap::new(),
        lenient: true,
    }
}

fn ts(pointer: &str, format: TimestampFormat) -> Option<TimestampField> {
    Some(TimestampField {
        pointer: pointer.into(),
        format,
    })
}

fn json(timestamp: Option<TimestampField>) -> PayloadFormat {
    PayloadFormat::Json {
        values: vec![
            JsonValue {
                pointer: "/temp".into(),
                name: "temp".into(),
                unit: "degC".into(),
            },
            JsonValue {
                pointer: "/motor/rpm".into(),
                name: "rpm".into(),
                unit: "rpm".into(),
            },
        ],
        timestamp,
    }
}

fn good(field: Option<&str>, unit: &str, value: f64, ts_us: i64) -> Sample {
    Sample {
        field: field.map(String::from),
        unit: unit.into(),
        value,
        quality: Quality::Good,
        ts_us,
    }
}

#[test]
fn plain_numbers() {
    let s = sub(PayloadFormat::Number);
    let ok: [(&str, f64); 6] = [
        ("21.5", 21.5),
        ("  -3\n", -3.0),
        ("1e3", 1000.0),
        ("+7", 7.0),
        ("0", 0.0),
        ("\t42.25 ", 42.25),
    ];
    for (payload, want) in ok {
        assert_eq!(
            decode(&s, "plant/l1/temp", payload.as_bytes(), ARRIVAL),
            Ok(vec![good(None, "degC", want, ARRIVAL)]),
            "{payload:?}"
        );
    }
    for payload in ["nan", "NaN", "inf"] {
        let got = decode(&s, "t", payload.as_bytes(), ARRIVAL).unwrap();
        assert_eq!(got[0].quality, Quality::Bad, "{payload:?}");
        assert!(got[0].value.is_nan());
    }
    for payload in ["12abc", "", "  ", "0x10", "1,5", "{\"v\":1}"] {
        assert_eq!(
            decode(&s, "plant/l1/temp", payload.as_bytes(), ARRIVAL),
            Err(PayloadError {
                topic: "plant/l1/temp".into(),
                reason: Malformed::NotANumber {
                    text: payload.into()
                }
            }),
            "{payload:?}"
        );
    }
    assert_eq!(
        decode(&s, "t", &[0xff, 0x31], ARRIVAL).unwrap_err().reason,
        Malformed::NotUtf8
    );
}

#[test]
fn json_values_by_pointer() {
    let s = sub(json(None));
    let got = decode(
        &s,
        "t",
        br#"{"temp": 21.5, "motor": {"rpm": 1450}}"#,
        ARRIVAL,
    );
    assert_eq!(
        got,
        Ok(vec![
            good(Some("temp"), "degC", 21.5, ARRIVAL),
            good(Some("rpm"), "rpm", 1450.0, ARRIVAL),
        ])
    );
    let null = decode(&s, "t", br#"{"temp": null, "motor": {"rpm": 1}}"#, ARRIVAL).unwrap();
    assert_eq!(null[0].quality, Quality::Bad);

    let errors: [(&str, Malformed); 5] = [
        (
            r#"{"temp": 21.5}"#,
            Malformed::MissingField {
                pointer: "/motor/rpm".into(),
            },
        ),
        (
            r#"{"temp": "hot", "motor": {"rpm": 1}}"#,
            Malformed::FieldNotANumber {
                pointer: "/temp".into(),
                found: "text",
            },
        ),
        (
            r#"{"temp": [21.5], "motor": {"rpm": 1}}"#,
            Malformed::FieldNotANumber {
                pointer: "/temp".into(),
                found: "an array",
            },
        ),
        (
            r#"{"temp": 1, "motor": [1]}"#,
            Malformed::MissingField {
                pointer: "/motor/rpm".into(),
            },
        ),
        (
            r#"[1, 2]"#,
            Malformed::MissingField {
                pointer: "/temp".into(),
            },
        ),
    ];
    for (payload, reason) in errors {
        let err = decode(&s, "plant/l1/state", payload.as_bytes(), ARRIVAL).unwrap_err();
        assert_eq!(err.reason, reason, "{payload}");
        assert!(
            err.to_string().starts_with("topic \"plant/l1/state\": "),
            "{err}"
        );
    }
    let err = decode(&s, "t", b"{temp: 1}", ARRIVAL).unwrap_err();
    assert!(matches!(err.reason, Malformed::NotJson { .. }), "{err}");
}

#[test]
fn timestamps_in_each_format() {
    use TimestampFormat::*;
    let rows: [(TimestampFormat, &str, i64); 9] = [
        (Seconds, "1700000000", T0),
        (Seconds, "1700000000.25", T0 + 250_000),
        (Millis, "1700000000123", T0 + 123_000),
        (Micros, "1700000000123456", T0 + 123_456),
        (Rfc3339, r#""2023-11-14T22:13:20Z""#, T0),
        (Rfc3339, r#""2023-11-14T22:13:20.5Z""#, T0 + 500_000),
        (
            Rfc3339,
            r#""2023-11-14 23:13:20.123456789+01:00""#,
            T0 + 123_456,
        ),
        (Rfc3339, r#""2023-11-14T20:13:20-02:00""#, T0),
        (Rfc3339, r#""1970-01-01T00:00:00Z""#, 0),
    ];
    for (format, value, want) in rows {
        let s = sub(json(ts("/ts", format)));
        let payload = format!(r#"{{"ts": {value}, "temp": 1, "motor": {{"rpm": 2}}}}"#);
        let got = decode(&s, "t", payload.as_bytes(), ARRIVAL).unwrap();
        assert_eq!(got[0].ts_us, want, "{format:?} {value}");
        assert_eq!(got[1].ts_us, want, "{format:?} {value}");
    }

    // No timestamp in the payload: the arrival time.
    let s = sub(json(ts("/ts", Millis)));
    let got = decode(&s, "t", br#"{"temp": 1, "motor": {"rpm": 2}}"#, ARRIVAL).unwrap();
    assert_eq!(got[0].ts_us, ARRIVAL);

    let bad: [(TimestampFormat, &str); 6] = [
        (Millis, r#""1700000000123""#),
        (Seconds, "1e300"),
        (Rfc3339, "1700000000"),
        (Rfc3339, r#""2023-02-29T00:00:00Z""#),
        (Rfc3339, r#""2023-11-14T22:13:20""#),
        (Rfc3339, r#""yesterday""#),
    ];
    for (format, value) in bad {
        let s = sub(json(ts("/ts", format)));
        let payload = format!(r#"{{"ts": {value}, "temp": 1, "motor": {{"rpm": 2}}}}"#);
        let err = decode(&s, "t", payload.as_bytes(), ARRIVAL).unwrap_err();
        assert!(
            matches!(&err.reason, Malformed::BadTimestamp { pointer, .. } if pointer == "/ts"),
            "{format:?} {value}: {err}"
        );
    }
}

#[test]
fn json_object_fields_become_samples() {
    let s = sub(PayloadFormat::JsonObject {
        timestamp: ts("/ts", TimestampFormat::Seconds),
    });
    let got = decode(
        &s,
        "t",
        br#"{"ts": 1700000000, "temp": 21.5, "rpm": 1450, "state": "run", "nested": {"x": 1}}"#,
        ARRIVAL,
    );
    assert_eq!(
        got,
        Ok(vec![
            good(Some("rpm"), "degC", 1450.0, T0),
            good(Some("temp"), "degC", 21.5, T0),
        ])
    );
    let err = |payload: &str| {
        decode(&s, "t", payload.as_bytes(), ARRIVAL)
            .unwrap_err()
            .reason
    };
    assert_eq!(err(r#"{"state": "run"}"#), Malformed::NoNumericFields);
    assert_eq!(err("[1]"), Malformed::NotAnObject { found: "an array" });
    assert_eq!(err("3"), Malformed::NotAnObject { found: "a number" });
}

#[test]
fn rfc3339_agrees_with_day_counting_across_leap_years() {
    // 2024-02-29 is day 19782 since the epoch; 2000-03-01 is day 11017.
    assert_eq!(
        parse_rfc3339("2024-02-29T00:00:00Z"),
        Ok(19_782 * 86_400_000_000)
    );
    assert_eq!(
        parse_rfc3339("2000-03-01T00:00:00Z"),
        Ok(11_017 * 86_400_000_000)
    );
    assert!(parse_rfc3339("2024-13-01T00:00:00Z").is_err());
    assert!(parse_rfc3339("2024-01-01T24:00:00Z").is_err());
    assert!(parse_rfc3339("2024-01-01T00:00:00.Z").is_err());
}

#[test]
fn numbers_as_text_and_booleans_are_read_unless_lenient_values_is_off() {
    let mut s = sub(json(None));
    let text = br#"{"temp": " 26.5 ", "motor": {"rpm": true}}"#;
    let got = decode(&s, "plant/a/temp", text, T0).unwrap();
    assert_eq!(
        got,
        [
            good(Some("temp"), "degC", 26.5, T0),
            good(Some("rpm"), "rpm", 1.0, T0)
        ]
    );
    // Text that is not a number is still malformed.
    let err = decode(&s, "t", br#"{"temp": "warm", "motor": {"rpm": 1}}"#, T0).unwrap_err();
    assert_eq!(
        err.reason,
        Malformed::FieldNotANumber {
            pointer: "/temp".into(),
            found: "text"
        }
    );
    // json-object: a boolean field is a sample, a text field that is no
    // number is skipped.
    let mut o = sub(PayloadFormat::JsonObject { timestamp: None });
    let got = decode(&o, "t", br#"{"on": false, "v": "3", "note": "ok"}"#, T0).unwrap();
    assert_eq!(
        got,
        [
            good(Some("on"), "degC", 0.0, T0),
            good(Some("v"), "degC", 3.0, T0)
        ]
    );
    // Off: such fields are what they were before.
    s.lenient = false;
    o.lenient = false;
    let err = decode(&s, "t", text, T0).unwrap_err();
    assert!(
        matches!(err.reason, Malformed::FieldNotANumber { ref pointer, found: "text" } if pointer == "/temp"),
        "{err}"
    );
    let err = decode(&o, "t", br#"{"on": false, "v": "3"}"#, T0).unwrap_err();
    assert_eq!(err.reason, Malformed::NoNumericFields);
}
