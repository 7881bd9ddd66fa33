use super::proto::{PropertyKind, PropertySet, PropertyValue};
use super::*;
use crate::config::mqtt::{PayloadFormat, Qos, Template};

fn sub() -> Subscription {
    Subscription {
        topic: "spBv1.0/#".into(),
        qos: Qos::AtMostOnce,
        format: PayloadFormat::Sparkplug {
            rebirth_requests: false,
            property_tags: Vec::new(),
        },
        series: Template::parse("{2}.{4}").unwrap(),
        unit: "".into(),
        tags: BTreeMap::new(),
        lenient: true,
    }
}

fn metric(name: Option<&str>, alias: u64, datatype: Option<u32>, v: MetricValue) -> Metric {
    Metric {
        name: name.map(str::to_string),
        alias: Some(alias),
        datatype,
        value: Some(v),
        ..Default::default()
    }
}

fn bytes(seq: Option<u64>, ts: u64, metrics: Vec<Metric>) -> Vec<u8> {
    Payload {
        timestamp: Some(ts),
        metrics,
        seq,
        ..Default::default()
    }
    .encode_to_vec()
}

#[test]
fn births_and_data_become_named_tagged_readings_and_a_death_bad_ones() {
    let mut r = Reader::default();
    let gw: BTreeMap<String, String> = [("site".to_string(), "north".to_string())].into();
    let mut temp = metric(
        Some("Inputs/Oil Temp"),
        1,
        Some(9),
        MetricValue::Float(61.5),
    );
    temp.properties = Some(PropertySet {
        keys: vec!["engUnit".into()],
        values: vec![PropertyValue {
            value: Some(PropertyKind::String("degC".into())),
            ..Default::default()
        }],
    });
    let bd = metric(Some("bdSeq"), 0, Some(8), MetricValue::Long(1));
    let birth = bytes(Some(0), 1_700_000_000_000, vec![bd.clone(), temp]);
    let got = r
        .read(&sub(), &gw, "spBv1.0/plant1/NBIRTH/press-gw", &birth, 0)
        .unwrap();
    assert_eq!(got.readings.len(), 1);
    let reading = &got.readings[0];
    assert_eq!(reading.series.name, "plant1.press-gw.Inputs/Oil_Temp");
    assert_eq!(reading.series.unit, "degC");
    assert_eq!(reading.ts_us, 1_700_000_000_000_000);
    assert_eq!((reading.value, reading.quality), (61.5, Quality::Good));
    let tags = &reading.series.tags;
    assert_eq!(tags.get("site").map(String::as_str), Some("north"));
    assert_eq!(tags.get("protocol").map(String::as_str), Some("sparkplug"));
    assert_eq!(
        tags.get("sparkplug_group").map(String::as_str),
        Some("plant1")
    );
    assert_eq!(tags.get("edge_node").map(String::as_str), Some("press-gw"));
    assert_eq!(tags.get("device"), None);

    let dbirth = bytes(
        Some(1),
        1_700_000_000_500,
        vec![metric(Some("rpm"), 5, Some(3), MetricValue::Int(1200))],
    );
    let got = r
        .read(
            &sub(),
            &gw,
            "spBv1.0/plant1/DBIRTH/press-gw/motor 2",
            &dbirth,
            0,
        )
        .unwrap();
    assert_eq!(got.readings[0].series.name, "plant1.press-gw.motor_2.rpm");
    assert_eq!(
        got.readings[0]
            .series
            .tags
            .get("device")
            .map(String::as_str),
        Some("motor 2")
    );

    // DDATA by alias.
    let ddata = bytes(
        Some(2),
        1_700_000_001_000,
        vec![Metric {
            alias: Some(5),
            value: Some(MetricValue::Int(1250)),
            ..Default::default()
        }],
    );
    let got = r
        .read(
            &sub(),
            &gw,
            "spBv1.0/plant1/DDATA/press-gw/motor 2",
            &ddata,
            0,
        )
        .unwrap();
    assert_eq!(
        (got.readings[0].series.name.as_str(), got.readings[0].value),
        ("plant1.press-gw.motor_2.rpm", 1250.0)
    );

    // NDEATH: both series bad, NaN.
    let death = bytes(None, 1_700_000_002_000, vec![bd]);
    let got = r
        .read(&sub(), &gw, "spBv1.0/plant1/NDEATH/press-gw", &death, 0)
        .unwrap();
    let mut dead: Vec<_> = got
        .readings
        .iter()
        .map(|r| (r.series.name.as_str(), r.quality, r.value.is_nan()))
        .collect();
    dead.sort();
    assert_eq!(
        dead,
        vec![
            ("plant1.press-gw.Inputs/Oil_Temp", Quality::Bad, true),
            ("plant1.press-gw.motor_2.rpm", Quality::Bad, true),
        ]
    );
}

#[test]
fn garbage_and_foreign_topics_are_specific_errors() {
    let mut r = Reader::default();
    let e = r
        .read(
            &sub(),
            &BTreeMap::new(),
            "spBv1.0/g/NDATA/n",
            &[0xff, 0xff, 0xff],
            0,
        )
        .unwrap_err();
    assert!(e.to_string().contains("not a Sparkplug B protobuf"), "{e}");
    let e = r
        .read(&sub(), &BTreeMap::new(), "plant/line1/temp", &[], 0)
        .unwrap_err();
    assert!(
        e.to_string().contains("does not start with \"spBv1.0/\""),
        "{e}"
    );
}

#[test]
fn a_rebirth_request_is_an_ncmd_with_the_node_control_metric() {
    let node = NodeId {
        group: "plant1".into(),
        node: "press-gw".into(),
    };
    let (topic, payload) = rebirth_request(&node, 42);
    assert_eq!(topic, "spBv1.0/plant1/NCMD/press-gw");
    let p = Payload::decode(&payload[..]).unwrap();
    assert_eq!(p.metrics.len(), 1);
    assert_eq!(p.metrics[0].name.as_deref(), Some("Node Control/Rebirth"));
    assert_eq!(p.metrics[0].datatype, Some(11));
    assert_eq!(p.metrics[0].value, Some(MetricValue::Boolean(true)));
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    const TOPICS: [&str; 6] = [
        "spBv1.0/g/NBIRTH/n",
        "spBv1.0/g/NDATA/n",
        "spBv1.0/g/NDEATH/n",
        "spBv1.0/g/DBIRTH/n/d",
        "spBv1.0/g/DDATA/n/d",
        "spBv1.0/g/DDEATH/n/d",
    ];

    fn value() -> impl Strategy<Value = MetricValue> {
        prop_oneof![
            any::<u32>().prop_map(MetricValue::Int),
            any::<u64>().prop_map(MetricValue::Long),
            any::<f32>().prop_map(MetricValue::Float),
            any::<f64>().prop_map(MetricValue::Double),
            any::<bool>().prop_map(MetricValue::Boolean),
            "[a-z ]{0,8}".prop_map(MetricValue::String),
        ]
    }

    fn message() -> impl Strategy<Value = (usize, Vec<u8>)> {
        let metric = (
            proptest::option::of("[a-zA-Z /:]{1,10}"),
            proptest::option::of(0u64..8),
            proptest::option::of(0u32..25),
            proptest::option::of(value()),
            proptest::option::of(any::<bool>()),
        )
            .prop_map(|(name, alias, datatype, value, is_null)| Metric {
                name,
                alias,
                datatype,
                value,
                is_null,
                ..Default::default()
            });
        (
            0..TOPICS.len(),
            proptest::option::of(0u64..300),
            proptest::collection::vec(metric, 0..6),
        )
            .prop_map(|(t, seq, metrics)| {
                let p = Payload {
                    timestamp: Some(1),
                    metrics,
                    seq,
                    ..Default::default()
                };
                (t, p.encode_to_vec())
            })
    }

    proptest! {
        /// Arbitrary bytes and arbitrary well-formed sessions: an error or
        /// readings, never a panic; every reading is named by the rule.
        #[test]
        fn any_bytes_or_message_sequence_is_read_or_refused(
            garbage in proptest::collection::vec(any::<u8>(), 0..200),
            messages in proptest::collection::vec(message(), 0..30),
        ) {
            let mut r = Reader::default();
            let tags = BTreeMap::new();
            let _ = r.read(&sub(), &tags, TOPICS[1], &garbage, 0);
            for (t, bytes) in messages {
                if let Ok(read) = r.read(&sub(), &tags, TOPICS[t], &bytes, 0) {
                    for reading in &read.readings {
                        prop_assert!(reading.series.name.starts_with("g.n."), "{}", reading.series.name);
                        prop_assert!(is_plain_name(&reading.series.name));
                        if reading.quality == Quality::Bad {
                            prop_assert!(reading.value.is_nan());
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn the_properties_named_in_property_tags_become_tags() {
    let mut s = sub();
    s.format = PayloadFormat::Sparkplug {
        rebirth_requests: false,
        property_tags: vec!["area".into(), "sensor".into()],
    };
    let string = |v: &str| PropertyValue {
        value: Some(PropertyKind::String(v.into())),
        ..Default::default()
    };
    let mut temp = metric(Some("temp"), 1, Some(10), MetricValue::Double(1.0));
    temp.properties = Some(PropertySet {
        keys: vec!["engUnit".into(), "area".into(), "ignored".into()],
        values: vec![string("degC"), string("press hall"), string("x")],
    });
    let plain = metric(Some("plain"), 2, Some(10), MetricValue::Double(2.0));
    let birth = bytes(Some(0), 1, vec![temp, plain]);
    let got = r_read(&mut Reader::default(), &s, &birth);
    let tags = |name: &str| {
        got.iter()
            .find(|r| r.series.name.ends_with(name))
            .unwrap()
            .series
            .tags
            .clone()
    };
    assert_eq!(
        tags(".temp").get("area").map(String::as_str),
        Some("press hall")
    );
    assert_eq!(
        tags(".temp").get("ignored"),
        None,
        "only the properties named"
    );
    assert_eq!(
        tags(".temp").get("sensor"),
        None,
        "a property the metric lacks"
    );
    assert_eq!(tags(".plain").get("area"), None);
}

fn r_read(r: &mut Reader, s: &Subscription, birth: &[u8]) -> Vec<Reading> {
    r.read(s, &BTreeMap::new(), "spBv1.0/g/NBIRTH/n", birth, 0)
        .unwrap()
        .readings
}

#[test]
fn a_lost_session_gives_a_bad_reading_per_metric_under_its_series() {
    let mut r = Reader::default();
    let birth = bytes(
        Some(0),
        1,
        vec![metric(Some("temp"), 1, Some(10), MetricValue::Double(1.0))],
    );
    let born = r_read(&mut r, &sub(), &birth);
    let lost = r.lose_session(5_000_000);
    assert_eq!(lost.len(), 1);
    assert!(
        Arc::ptr_eq(&lost[0].series, &born[0].series),
        "the series it had"
    );
    assert_eq!(
        (lost[0].quality, lost[0].value.is_nan(), lost[0].ts_us),
        (Quality::Bad, true, 5_000_000)
    );
    assert!(
        r.lose_session(6_000_000).is_empty(),
        "nothing known any more"
    );
}
