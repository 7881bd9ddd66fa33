use std::time::Duration;

use super::super::proto::{Metric, MetricValue, Payload, PropertySet, PropertyValue};
use super::super::topic::parse;
use super::*;

fn metric(
    name: Option<&str>,
    alias: Option<u64>,
    datatype: Option<u32>,
    v: Option<MetricValue>,
) -> Metric {
    Metric {
        name: name.map(str::to_string),
        alias,
        datatype,
        value: v,
        ..Default::default()
    }
}

fn payload(seq: Option<u64>, ts: u64, metrics: Vec<Metric>) -> Payload {
    Payload {
        timestamp: Some(ts),
        metrics,
        seq,
        ..Default::default()
    }
}

fn bd_seq(v: u64) -> Metric {
    metric(Some("bdSeq"), None, Some(8), Some(MetricValue::Long(v)))
}

/// The NBIRTH of node "gw" in group "g": bdSeq, a rebirth control,
/// "temp" (Double, alias 1, unit degC) and "count" (Int16, alias 2).
fn nbirth(bd: u64) -> Payload {
    let mut temp = metric(
        Some("temp"),
        Some(1),
        Some(10),
        Some(MetricValue::Double(20.5)),
    );
    temp.properties = Some(PropertySet {
        keys: vec!["engUnit".into()],
        values: vec![PropertyValue {
            r#type: Some(12),
            value: Some(PropertyKind::String("degC".into())),
            ..Default::default()
        }],
    });
    payload(
        Some(0),
        1_000,
        vec![
            bd_seq(bd),
            metric(
                Some("Node Control/Rebirth"),
                Some(9),
                Some(11),
                Some(MetricValue::Boolean(false)),
            ),
            temp,
            metric(Some("count"), Some(2), Some(2), Some(MetricValue::Int(7))),
        ],
    )
}

fn host() -> Host {
    Host::new(Duration::from_secs(10))
}

fn feed(h: &mut Host, topic: &str, p: &Payload, now_ms: i64) -> Outcome {
    h.on_message(&parse(topic).unwrap(), p, now_ms)
}

fn values(o: &Outcome) -> Vec<(Option<&str>, &str, Value)> {
    o.samples
        .iter()
        .map(|s| (s.device.as_deref(), s.metric.as_str(), s.value))
        .collect()
}

#[test]
fn a_birth_defines_names_units_and_first_values_then_aliases_resolve() {
    let mut h = host();
    let b = feed(&mut h, "spBv1.0/g/NBIRTH/gw", &nbirth(3), 5_000);
    assert_eq!(b.problems, vec![]);
    assert_eq!(b.rebirth, None);
    // bdSeq and Node Control are metadata, not readings.
    let mut got = values(&b);
    got.sort_by(|a, b| a.1.cmp(b.1));
    assert_eq!(
        got,
        vec![
            (None, "count", Value::Number(7.0)),
            (None, "temp", Value::Number(20.5))
        ]
    );
    let temp = b.samples.iter().find(|s| s.metric == "temp").unwrap();
    assert_eq!((temp.unit.as_deref(), temp.ts_ms), (Some("degC"), 1_000));

    // NDATA by alias only, no datatype: the birth's Double and Int16.
    let mut m = metric(None, Some(1), None, Some(MetricValue::Double(21.25)));
    m.timestamp = Some(1_500);
    let d = feed(
        &mut h,
        "spBv1.0/g/NDATA/gw",
        &payload(
            Some(1),
            2_000,
            vec![
                m,
                metric(None, Some(2), None, Some(MetricValue::Int(0xfffe))),
            ],
        ),
        6_000,
    );
    assert_eq!(d.problems, vec![]);
    assert_eq!(
        values(&d),
        vec![
            (None, "temp", Value::Number(21.25)),
            (None, "count", Value::Number(-2.0))
        ]
    );
    assert_eq!(d.samples[0].ts_ms, 1_500, "the metric's own timestamp");
    assert_eq!(d.samples[1].ts_ms, 2_000, "else the payload's");
}

/// (datatype code, value field, the number it stands for; None: not carried)
#[rustfmt::skip]
#[test]
fn every_scalar_datatype_table() {
    let table: &[(u32, MetricValue, Option<f64>)] = &[
        (1, MetricValue::Int(0xff), Some(-1.0)),                 // Int8
        (1, MetricValue::Int(0x7f), Some(127.0)),
        (2, MetricValue::Int(0x8000), Some(-32768.0)),           // Int16
        (3, MetricValue::Int(0xffff_ffff), Some(-1.0)),          // Int32
        (4, MetricValue::Long(u64::MAX), Some(-1.0)),            // Int64
        (4, MetricValue::Long(1 << 40), Some((1u64 << 40) as f64)),
        (5, MetricValue::Int(200), Some(200.0)),                 // UInt8
        (6, MetricValue::Int(65535), Some(65535.0)),             // UInt16
        (7, MetricValue::Int(0xffff_ffff), Some(4294967295.0)),  // UInt32
        (8, MetricValue::Long(u64::MAX), Some(u64::MAX as f64)), // UInt64
        (9, MetricValue::Float(1.5), Some(1.5)),                 // Float
        (10, MetricValue::Double(-0.25), Some(-0.25)),           // Double
        (11, MetricValue::Boolean(true), Some(1.0)),             // Boolean
        (11, MetricValue::Boolean(false), Some(0.0)),
        (13, MetricValue::Long(1_700_000_000_000), Some(1.7e12)), // DateTime
        (12, MetricValue::String("on".into()), None),            // String
        (14, MetricValue::String("t".into()), None),             // Text
        (17, MetricValue::Bytes(vec![1]), None),                 // Bytes
    ];
    for (code, v, want) in table {
        let mut h = host();
        let birth = payload(Some(0), 10, vec![metric(Some("m"), Some(1), Some(*code), Some(v.clone()))]);
        let o = feed(&mut h, "spBv1.0/g/NBIRTH/n", &birth, 20);
        let got = o.samples.first().map(|s| s.value);
        assert_eq!(got, want.map(Value::Number), "datatype {code} {v:?}");
        assert_eq!(o.skipped.len(), usize::from(want.is_none()), "datatype {code}");
    }
}

#[test]
fn data_sets_templates_and_strings_are_named_once_and_never_crash() {
    let mut h = host();
    let birth = payload(
        Some(0),
        10,
        vec![
            metric(
                Some("recipe"),
                Some(1),
                Some(12),
                Some(MetricValue::String("A".into())),
            ),
            metric(
                Some("table"),
                Some(2),
                Some(16),
                Some(MetricValue::DataSet(Default::default())),
            ),
            metric(
                Some("udt"),
                Some(3),
                Some(19),
                Some(MetricValue::Template(Default::default())),
            ),
            metric(
                Some("speed"),
                Some(4),
                Some(10),
                Some(MetricValue::Double(3.0)),
            ),
        ],
    );
    let o = feed(&mut h, "spBv1.0/g/NBIRTH/n", &birth, 20);
    let mut names: Vec<_> = o
        .skipped
        .iter()
        .map(|s| (s.metric.as_str(), s.datatype.as_str()))
        .collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            ("recipe", "String"),
            ("table", "DataSet"),
            ("udt", "Template")
        ]
    );
    assert_eq!(values(&o), vec![(None, "speed", Value::Number(3.0))]);
    // Their data: no readings, no problems, not named again.
    let d = payload(
        Some(1),
        30,
        vec![
            metric(None, Some(1), None, Some(MetricValue::String("B".into()))),
            metric(
                None,
                Some(2),
                None,
                Some(MetricValue::DataSet(Default::default())),
            ),
        ],
    );
    let o = feed(&mut h, "spBv1.0/g/NDATA/n", &d, 40);
    assert_eq!(
        (o.samples.len(), o.problems.len(), o.skipped.len()),
        (0, 0, 0)
    );
}

#[test]
fn is_null_is_a_bad_reading_and_historical_keeps_its_time() {
    let mut h = host();
    feed(&mut h, "spBv1.0/g/NBIRTH/gw", &nbirth(0), 5_000);
    let mut null = metric(None, Some(1), None, None);
    null.is_null = Some(true);
    let mut old = metric(None, Some(2), None, Some(MetricValue::Int(5)));
    old.is_historical = Some(true);
    old.timestamp = Some(100);
    let o = feed(
        &mut h,
        "spBv1.0/g/NDATA/gw",
        &payload(Some(1), 2_000, vec![null, old]),
        6_000,
    );
    assert_eq!(
        values(&o),
        vec![
            (None, "temp", Value::Null),
            (None, "count", Value::Number(5.0))
        ]
    );
    assert!(o.samples[1].historical);
    assert_eq!(o.samples[1].ts_ms, 100);
}

/// (messages after the NBIRTH as (topic type, seq); the problems of the
/// last one by name; whether it asks for a rebirth)
#[rustfmt::skip]
#[test]
fn seq_gaps_unknown_aliases_and_data_before_birth_ask_for_a_rebirth() {
    type Row = (&'static [(&'static str, Option<u64>, u64)], &'static [&'static str], bool);
    let table: &[Row] = &[
        (&[("NDATA", Some(1), 1)], &[], false),
        (&[("NDATA", Some(1), 1), ("NDATA", Some(2), 1)], &[], false),
        (&[("NDATA", Some(2), 1)], &["seq_gap"], true),
        (&[("NDATA", None, 1)], &["seq_gap"], true),
        (&[("NDATA", Some(1), 77)], &["unknown_metric"], true),
        // A device's data before its DBIRTH.
        (&[("DDATA", Some(1), 1)], &["no_birth"], true),
    ];
    for (steps, want, rebirth) in table {
        let mut h = host();
        feed(&mut h, "spBv1.0/g/NBIRTH/gw", &nbirth(0), 0);
        let mut last = Outcome::default();
        for (kind, seq, alias) in *steps {
            let topic = if kind.starts_with('D') { format!("spBv1.0/g/{kind}/gw/dev") } else { format!("spBv1.0/g/{kind}/gw") };
            let p = payload(*seq, 10, vec![metric(None, Some(*alias), None, Some(MetricValue::Double(1.0)))]);
            last = feed(&mut h, &topic, &p, 100);
        }
        let names: Vec<_> = last.problems.iter().map(Problem::as_str).collect();
        assert_eq!(&names, want, "{steps:?}");
        assert_eq!(last.rebirth.is_some(), *rebirth, "{steps:?}");
    }
    // Data from a node never born.
    let mut h = host();
    let o = feed(&mut h, "spBv1.0/g/NDATA/ghost", &payload(Some(4), 1, vec![]), 0);
    assert_eq!(o.problems, vec![Problem::NoBirth]);
    assert_eq!(o.rebirth, Some(NodeId { group: "g".into(), node: "ghost".into() }));
}

#[test]
fn rebirth_requests_are_rate_limited_per_node() {
    let mut h = host();
    let ghost = |h: &mut Host, node: &str, now| {
        feed(
            h,
            &format!("spBv1.0/g/NDATA/{node}"),
            &payload(Some(1), 1, vec![]),
            now,
        )
        .rebirth
        .is_some()
    };
    assert!(ghost(&mut h, "a", 0));
    assert!(
        !ghost(&mut h, "a", 9_999),
        "within 10 s of the last request"
    );
    assert!(ghost(&mut h, "b", 9_999), "another node has its own limit");
    assert!(ghost(&mut h, "a", 10_000));
}

#[test]
fn a_death_marks_every_metric_of_the_node_and_its_devices_bad() {
    let mut h = host();
    feed(&mut h, "spBv1.0/g/NBIRTH/gw", &nbirth(5), 0);
    let dbirth = motor_birth(1, 10, 900.0);
    let o = feed(&mut h, "spBv1.0/g/DBIRTH/gw/motor", &dbirth, 10);
    assert_eq!(
        values(&o),
        vec![(Some("motor"), "rpm", Value::Number(900.0))]
    );

    // DDEATH: the device's metrics only.
    let o = feed(
        &mut h,
        "spBv1.0/g/DDEATH/gw/motor",
        &payload(Some(2), 20, vec![]),
        20,
    );
    assert_eq!(values(&o), vec![(Some("motor"), "rpm", Value::Dead)]);
    let o = feed(
        &mut h,
        "spBv1.0/g/DDATA/gw/motor",
        &payload(
            Some(3),
            30,
            vec![metric(None, Some(1), None, Some(MetricValue::Double(1.0)))],
        ),
        30,
    );
    assert_eq!(
        o.problems,
        vec![Problem::NoBirth],
        "a dead device needs a DBIRTH"
    );

    // Born again, then an NDEATH of an older session (bdSeq 4): ignored.
    feed(
        &mut h,
        "spBv1.0/g/DBIRTH/gw/motor",
        &motor_birth(4, 40, 901.0),
        40,
    );
    let o = feed(
        &mut h,
        "spBv1.0/g/NDEATH/gw",
        &payload(None, 50, vec![bd_seq(4)]),
        50,
    );
    assert_eq!(
        o.problems,
        vec![Problem::StaleDeath {
            birth: Some(5),
            death: Some(4)
        }]
    );
    assert_eq!(o.samples.len(), 0);
    // Within 10 s of the request the dead device's data made at 30: not
    // asked again.
    assert_eq!(o.rebirth, None);

    // The matching NDEATH: node and device metrics all bad, at its arrival
    // (60), not at the will's stamp (55).
    let o = feed(
        &mut h,
        "spBv1.0/g/NDEATH/gw",
        &payload(None, 55, vec![bd_seq(5)]),
        60,
    );
    let mut got = values(&o);
    got.sort_by(|a, b| a.1.cmp(b.1));
    assert_eq!(
        got,
        vec![
            (None, "count", Value::Dead),
            (Some("motor"), "rpm", Value::Dead),
            (None, "temp", Value::Dead)
        ]
    );
    assert!(o.samples.iter().all(|s| s.ts_ms == 60));
    // After the death, data needs a new birth.
    let o = feed(
        &mut h,
        "spBv1.0/g/NDATA/gw",
        &payload(Some(5), 70, vec![]),
        70,
    );
    assert_eq!(o.problems, vec![Problem::NoBirth]);
    // A new NBIRTH starts seq at 0 again.
    let o = feed(&mut h, "spBv1.0/g/NBIRTH/gw", &nbirth(6), 80);
    assert_eq!(o.problems, vec![]);
}

/// The DBIRTH of device "motor": one Double metric "rpm", alias 1.
fn motor_birth(seq: u64, ts: u64, rpm: f64) -> Payload {
    payload(
        Some(seq),
        ts,
        vec![metric(
            Some("rpm"),
            Some(1),
            Some(10),
            Some(MetricValue::Double(rpm)),
        )],
    )
}

#[test]
fn made_up_node_names_do_not_grow_memory_without_bound() {
    let mut h = host();
    for i in 0..MAX_NODES {
        feed(
            &mut h,
            &format!("spBv1.0/g/NDATA/n{i}"),
            &payload(Some(0), 1, vec![]),
            0,
        );
    }
    let o = feed(&mut h, "spBv1.0/g/NBIRTH/one-more", &nbirth(0), 0);
    assert_eq!(o.problems, vec![Problem::TooMany]);
    assert!(o.samples.is_empty());
    assert_eq!(h.nodes.len(), MAX_NODES);
}

#[test]
fn a_lost_session_marks_every_known_metric_bad_and_needs_new_births() {
    let mut h = host();
    feed(&mut h, "spBv1.0/g/NBIRTH/gw", &nbirth(1), 0);
    let dbirth = motor_birth(1, 10, 900.0);
    feed(&mut h, "spBv1.0/g/DBIRTH/gw/motor", &dbirth, 10);
    let lost = h.lose_session(99);
    assert!(lost.iter().all(|(n, _)| n.node == "gw" && n.group == "g"));
    let o = Outcome {
        samples: lost.into_iter().map(|(_, s)| s).collect(),
        ..Default::default()
    };
    let mut got = values(&o);
    got.sort_by(|a, b| a.1.cmp(b.1));
    assert_eq!(
        got,
        vec![
            (None, "count", Value::Dead),
            (Some("motor"), "rpm", Value::Dead),
            (None, "temp", Value::Dead)
        ]
    );
    assert!(o.samples.iter().all(|s| s.ts_ms == 99));
    assert!(
        h.lose_session(100).is_empty(),
        "once: nothing is known after it"
    );
    let o = feed(
        &mut h,
        "spBv1.0/g/NDATA/gw",
        &payload(Some(2), 110, vec![]),
        110,
    );
    assert_eq!(o.problems, vec![Problem::NoBirth]);
    assert!(o.rebirth.is_some());
}
