//! Arbitrary bytes as Sparkplug B payloads into the agent's reader, as the
//! MQTT source hands it a message, after a birth so data resolves: on each
//! of the message types. Beyond "never panics": every reading it yields is
//! named under the subscription's series and is NaN exactly when bad.
#![no_main]

use std::collections::BTreeMap;

use edge_agent::config::mqtt::{PayloadFormat, Qos, Subscription, Template};
use edge_agent::reading::Quality;
use edge_agent::source::sparkplug::Reader;

const TOPICS: [&str; 6] = [
    "spBv1.0/g/NBIRTH/n",
    "spBv1.0/g/NDATA/n",
    "spBv1.0/g/NDEATH/n",
    "spBv1.0/g/DBIRTH/n/d",
    "spBv1.0/g/DDATA/n/d",
    "spBv1.0/g/DDEATH/n/d",
];

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let Some((&first, rest)) = bytes.split_first() else {
        return;
    };
    let sub = Subscription {
        topic: "spBv1.0/#".into(),
        qos: Qos::AtMostOnce,
        format: PayloadFormat::Sparkplug {
            rebirth_requests: false,
            property_tags: Vec::new(),
        },
        series: Template::parse("{2}.{4}").expect("a valid template"),
        unit: String::new(),
        tags: BTreeMap::new(),
        lenient: true,
    };
    let mut reader = Reader::default();
    let tags = BTreeMap::new();
    // The input split in two messages: the first on a birth topic.
    let cut = usize::from(first) % (rest.len() + 1);
    let (a, b) = rest.split_at(cut);
    let _ = reader.read(&sub, &tags, TOPICS[0], a, 0);
    let topic = TOPICS[usize::from(first) % TOPICS.len()];
    if let Ok(read) = reader.read(&sub, &tags, topic, b, 0) {
        for r in &read.readings {
            assert!(r.series.name.starts_with("g.n."), "{}", r.series.name);
            if r.quality == Quality::Bad {
                assert!(r.value.is_nan(), "a bad reading with a value");
            }
        }
    }
});
