//! Tests of the alarm board: ack payloads, the state an HMI sees through
//! raise, acknowledge and clear, seeding after a restart, event messages.

use super::*;

fn info() -> Arc<SeriesInfo> {
    Arc::new(SeriesInfo {
        name: "press-3.oil_temp".into(),
        unit: "degC".into(),
        tags: Default::default(),
    })
}

fn event(rule: &str, state: AlarmState, ts_us: i64) -> Alarm {
    Alarm {
        series: info(),
        rule: rule.into(),
        severity: Severity::Critical,
        state,
        value: 91.5,
        limit: 90.0,
        ts_us,
        duration_us: (state == AlarmState::Cleared).then_some(ts_us - 10),
        limit_kind: None,
        spc: None,
    }
}

fn state(board: &AlarmBoard) -> Value {
    serde_json::from_slice(&board.state_json("press-3.oil_temp")).unwrap()
}

#[test]
fn parse_ack_table() {
    let ok = |rule: &str, by: Option<&str>| {
        Ok(AckRequest {
            rule: rule.into(),
            by: by.map(Into::into),
        })
    };
    let table: &[(&[u8], Result<AckRequest, AckError>)] = &[
        (b"oil_temp.high", ok("oil_temp.high", None)),
        (b"  oil_temp.high\n", ok("oil_temp.high", None)),
        (
            br#"{"rule":"r.low","by":"op-7"}"#,
            ok("r.low", Some("op-7")),
        ),
        (br#"{"rule":"r.low"}"#, ok("r.low", None)),
        (b"", Err(AckError::Empty)),
        (b"\xff\xfe", Err(AckError::NotText)),
        (
            br#"{"rule":""}"#,
            Err(AckError::BadJson("\"rule\" is empty".into())),
        ),
    ];
    for (payload, expected) in table {
        assert_eq!(&parse_ack(payload), expected, "{payload:?}");
    }
    let err = parse_ack(br#"{"rul":"x"}"#).unwrap_err().to_string();
    assert!(
        err.starts_with(
            "ack payload is not a JSON object with a \"rule\" string: unknown field `rul`"
        ),
        "{err}"
    );
}

#[test]
fn raise_ack_clear_as_the_hmi_sees_it() {
    let mut b = AlarmBoard::new("gw");
    assert_eq!(state(&b)["state"], "normal");
    b.apply(&event("oil_temp.high", AlarmState::Raised, 100));
    let s = state(&b);
    assert_eq!(s["state"], "alarm");
    assert_eq!(
        s["alarms"],
        json!([{"rule": "oil_temp.high", "severity": "critical", "value": 91.5,
                "limit": 90.0, "raised_us": 100, "acknowledged": false, "acked_us": null}])
    );

    let req = parse_ack(b"oil_temp.high").unwrap();
    let ack = b
        .acknowledge("press-3.oil_temp", &req, 150)
        .unwrap()
        .unwrap();
    assert_eq!(
        (ack.state, ack.ts_us, ack.limit),
        (AlarmState::Acknowledged, 150, 90.0)
    );
    b.apply(&ack);
    assert_eq!(state(&b)["alarms"][0]["acked_us"], 150);
    assert!(
        matches!(b.acknowledge("press-3.oil_temp", &req, 160), Ok(None)),
        "second ack is a no-op"
    );

    b.apply(&event("oil_temp.high", AlarmState::Cleared, 200));
    assert_eq!(
        state(&b),
        json!({"gateway": "gw", "series": "press-3.oil_temp", "state": "normal", "alarms": []})
    );
    assert_eq!(
        b.acknowledge("press-3.oil_temp", &req, 250).unwrap_err(),
        AckError::NotRaised {
            series: "press-3.oil_temp".into(),
            rule: "oil_temp.high".into()
        }
    );
}

#[test]
fn seeded_alarms_keep_their_acknowledgement() {
    let mut b = AlarmBoard::new("gw");
    let active = ActiveAlarm {
        rule: "oil_temp.high".into(),
        series: "press-3.oil_temp".into(),
        raised_us: 5,
        limit: 90.0,
        severity: Severity::Major,
    };
    b.seed(
        &[active],
        &[("press-3.oil_temp".into(), "oil_temp.high".into(), 7)],
        |_| info(),
    );
    let s = state(&b);
    assert_eq!(s["alarms"][0]["value"], Value::Null);
    assert_eq!(s["alarms"][0]["acked_us"], 7);
    assert_eq!(b.series_names().collect::<Vec<_>>(), ["press-3.oil_temp"]);
}

#[test]
fn event_message_fields() {
    let mut clear = event("oil_temp.high", AlarmState::Cleared, 300);
    clear.limit = f64::INFINITY;
    let v: Value = serde_json::from_slice(&event_json("gw", &clear, None)).unwrap();
    assert_eq!(
        v,
        json!({"gateway": "gw", "series": "press-3.oil_temp", "unit": "degC",
               "rule": "oil_temp.high", "state": "cleared", "severity": "critical",
               "value": 91.5, "limit": null, "ts_us": 300, "duration_us": 290})
    );
    let ack = event("oil_temp.high", AlarmState::Acknowledged, 5);
    let v: Value = serde_json::from_slice(&event_json("gw", &ack, Some("op-7"))).unwrap();
    assert_eq!(v["acknowledged_by"], "op-7");
}
