//! The relay binary publishing both message generations
//! (`message_versions = "both"`) to tansu, read back with kafka-python, for
//! two gateways that use the same series names:
//! - every key sits in the partition the Java client's default partitioner
//!   picks (murmur2, computed here from its specification), on topics of
//!   several partitions, v1 and v2 alike;
//! - v2 keys are `<gateway>:<series>` (distinct per gateway), v1 keys the
//!   series name;
//! - the relay's site is `gateway_site` in v2 (`site` in v1) and a `site`
//!   tag of the series arrives unchanged beside it;
//! - alarms say which limit fired (`limit_kind`);
//! - the two shapes on one readings topic (one relay per granularity) are
//!   told apart by the `schema` header, and both carry a readable time.
//!
//! Every message is checked against its JSON Schema in `docs/schemas/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use edge_tests::{free_port, Service, Tansu};
use edge_wire::{AlarmEvent, AlarmState, Batch, LimitKind, Point, Quality, Series, Severity};
use serde_json::Value;

use super::relay_kafka::{post_as, run_relay};

const PARTITIONS: u32 = 6;
const SERIES: u32 = 12;
const POINTS: i64 = 3;
const GATEWAYS: [(&str, &str); 2] = [
    ("gw-north", "north-token-0123456789abcdef"),
    ("plant-b/gw:2", "south-token-0123456789abcdef"),
];

/// Kafka's `Utils.murmur2` (the Java client, `org.apache.kafka.common.utils`):
/// MurmurHash2, 32-bit, seed 0x9747b28c, little-endian 4-byte blocks.
fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ data.len() as u32;
    let mut blocks = data.chunks_exact(4);
    for b in &mut blocks {
        let mut k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The Java client's `DefaultPartitioner`/`BuiltInPartitioner` for a keyed
/// record: `toPositive(murmur2(key)) % numPartitions`, with
/// `toPositive(n) = n & 0x7fffffff`.
fn java_partition(key: &str, partitions: u32) -> i64 {
    i64::from((murmur2(key.as_bytes()) & 0x7fff_ffff) as u32 % partitions)
}

/// The test's own hash against the values Kafka's `UtilsTest.testMurmur2`
/// pins, so a wrong expectation cannot pass for a right partition.
#[rustfmt::skip]
#[test]
fn murmur2_matches_the_java_clients_test_vectors() {
    let table = [
        ("21",                                               -973_932_308),
        ("foobar",                                           -790_332_482),
        ("a-little-bit-long-string",                         -985_981_536),
        ("a-little-bit-longer-string",                       -1_486_304_829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58_897_971),
        ("abc",                                              479_470_107),
    ];
    for (key, hash) in table {
        assert_eq!(murmur2(key.as_bytes()), hash, "{key}");
    }
}

/// What each gateway sends: the same series names, a `site` tag of its own,
/// and on series 0 the low and high alarm of one `min`/`max` rule (same
/// name), on series 1 a stale alarm (no limit).
fn batch(gateway: &str, t0: i64) -> Batch {
    // The value jumps from above the max to below the min at t0 + 1 ms: the
    // high alarm clears and the low one raises at the same time.
    let alarm = |series_id, rule: &str, state, limit_kind, ts_us| AlarmEvent {
        series_id,
        rule: rule.into(),
        state,
        value: 1.0,
        limit: 0.0,
        ts_us,
        severity: Some(Severity::Major),
        duration_us: None,
        limit_kind,
        spc: None,
    };
    Batch {
        gateway_id: gateway.into(),
        instance: None,
        seq: 1,
        created_us: t0,
        series: (0..SERIES)
            .map(|s| Series {
                id: s,
                name: format!("line1.temp{s}"),
                unit: "degC".into(),
                tags: [("site".to_string(), "hall-7".to_string())].into(),
                points: (0..POINTS)
                    .map(|i| Point {
                        ts_us: t0 + i * 1000,
                        value: i as f64,
                        quality: Quality::Good,
                    })
                    .collect(),
                reporting: None,
            })
            .collect(),
        alarms: vec![
            alarm(0, "oil", AlarmState::Raised, Some(LimitKind::High), t0),
            alarm(
                0,
                "oil",
                AlarmState::Cleared,
                Some(LimitKind::High),
                t0 + 1000,
            ),
            alarm(
                0,
                "oil",
                AlarmState::Raised,
                Some(LimitKind::Low),
                t0 + 1000,
            ),
            alarm(1, "oil.stale", AlarmState::Raised, None, t0 + 2000),
        ],
        gaps: Vec::new(),
        devices: Vec::new(),
    }
}

/// The relay binary with both generations for both gateways; the readings
/// cut by `granularity`.
fn start_relay(dir: &Path, tansu: &Tansu, granularity: &str) -> anyhow::Result<(Service, u16)> {
    let (port, ops_port) = (free_port()?, free_port()?);
    let gateways: String = GATEWAYS
        .iter()
        .map(|(id, token)| {
            format!("[[gateways]]\nid = \"{id}\"\ntoken = \"{token}\"\nsite = \"plant-e2e\"\n")
        })
        .collect();
    let config = dir.join(format!("relay-v2-{granularity}.toml"));
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\n{gateways}\
             [kafka]\nbrokers = [\"{}\"]\ngranularity = \"{granularity}\"\n\
             message_versions = \"both\"\n\
             readings_topic = \"m.readings.v1\"\nalarms_topic = \"m.alarms.v1\"\n\
             readings_topic_v2 = \"m.readings.v2\"\nalarms_topic_v2 = \"m.alarms.v2\"\n\
             [dedup]\npath = \"{}\"\n[ops]\nlisten = \"127.0.0.1:{ops_port}\"\n",
            tansu.bootstrap(),
            dir.join(format!("delivered-v2-{granularity}.db")).display(),
        ),
    )?;
    Ok((run_relay(dir, &config, port, ops_port)?, port))
}

fn post(port: u16, token: &str, batch: &Batch) -> anyhow::Result<()> {
    let (status, body) = post_as(port, token, batch)?;
    anyhow::ensure!(status == 200, "upload answered {status}: {body}");
    Ok(())
}

fn validator(text: &str) -> anyhow::Result<jsonschema::Validator> {
    let schema: Value = serde_json::from_str(text)?;
    jsonschema::validator_for(&schema).context("the schema compiles")
}

#[test]
fn both_generations_land_where_java_would_put_them_keyed_by_gateway_and_series(
) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tansu = Tansu::start(dir.path())?;
    for topic in [
        "m.readings.v1",
        "m.alarms.v1",
        "m.readings.v2",
        "m.alarms.v2",
    ] {
        tansu.create_topic_with_partitions(topic, PARTITIONS)?;
    }
    let schemas: BTreeMap<&str, jsonschema::Validator> = [
        (
            "edge.reading.v1",
            include_str!("../../../docs/schemas/edge.reading.v1.json"),
        ),
        (
            "edge.reading.v2",
            include_str!("../../../docs/schemas/edge.reading.v2.json"),
        ),
        (
            "edge.series-batch.v1",
            include_str!("../../../docs/schemas/edge.series-batch.v1.json"),
        ),
        (
            "edge.series-batch.v2",
            include_str!("../../../docs/schemas/edge.series-batch.v2.json"),
        ),
        (
            "edge.alarm.v1",
            include_str!("../../../docs/schemas/edge.alarm.v1.json"),
        ),
        (
            "edge.alarm.v2",
            include_str!("../../../docs/schemas/edge.alarm.v2.json"),
        ),
    ]
    .into_iter()
    .map(|(name, text)| Ok((name, validator(text)?)))
    .collect::<anyhow::Result<_>>()?;

    // The first gateway through a relay cutting per reading, the second
    // through one cutting per series: both shapes on each readings topic.
    let t0 = edge_agent::reading::now_us() - 10_000;
    let (mut by_reading, reading_port) = start_relay(dir.path(), &tansu, "reading")?;
    let (mut by_series, series_port) = start_relay(dir.path(), &tansu, "series")?;
    post(reading_port, GATEWAYS[0].1, &batch(GATEWAYS[0].0, t0))?;
    post(series_port, GATEWAYS[1].1, &batch(GATEWAYS[1].0, t0))?;

    let mut keys: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut placed = 0;
    for (topic, version) in [
        ("m.readings.v1", 1),
        ("m.readings.v2", 2),
        ("m.alarms.v1", 1),
        ("m.alarms.v2", 2),
    ] {
        let messages = tansu.read_topic(topic)?;
        let per_gateway = if topic.contains("readings") {
            // gw-north one per reading, the other one per series.
            (SERIES as i64 * POINTS + SERIES as i64) as usize
        } else {
            2 * 4
        };
        assert_eq!(messages.len(), per_gateway, "{topic}");
        for msg in &messages {
            let (key, value) = (msg["key"].as_str().unwrap(), &msg["value"]);
            let schema = msg["headers"]["schema"].as_str().unwrap();
            assert_eq!(value["schema"], schema, "{msg}");
            let errors: Vec<String> = schemas[schema]
                .iter_errors(value)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{value}: {errors:?}");
            let gateway = value["gateway"].as_str().unwrap();
            assert_eq!(msg["headers"]["gateway"], gateway, "{msg}");
            let series = value["series"].as_str().unwrap();
            // The key (format documented in docs/kafka-messages.md).
            let expected_key = if version == 1 {
                series.to_owned()
            } else {
                format!("{gateway}:{series}")
            };
            assert_eq!(key, expected_key, "{msg}");
            if version == 2 {
                assert_eq!(key.rsplit_once(':'), Some((gateway, series)), "{msg}");
            }
            // The partition Java's producer would choose for this key.
            assert_eq!(
                msg["partition"].as_i64().unwrap(),
                java_partition(key, PARTITIONS),
                "{topic} key {key:?}"
            );
            placed += 1;
            keys.entry(topic).or_default().insert(key.to_owned());
            // The two sites: the relay's and the series' tag, apart.
            assert_eq!(value["tags"]["site"], "hall-7", "{msg}");
            let (relay_site, absent) = if version == 1 {
                ("site", "gateway_site")
            } else {
                ("gateway_site", "site")
            };
            assert_eq!(value[relay_site], "plant-e2e", "{msg}");
            assert!(value.get(absent).is_none(), "{msg}");
            // The shape follows the schema header, with a readable time.
            let shape = schema.trim_end_matches(".v1").trim_end_matches(".v2");
            match shape {
                "edge.reading" => {
                    assert!(value["ts"].as_str().unwrap().ends_with('Z'), "{msg}");
                    assert!(value.get("points").is_none(), "{msg}");
                    assert_eq!(gateway, GATEWAYS[0].0, "{msg}");
                }
                "edge.series-batch" => {
                    let points = value["points"].as_array().unwrap();
                    assert_eq!(points.len(), POINTS as usize, "{msg}");
                    assert_eq!(gateway, GATEWAYS[1].0, "{msg}");
                    for p in points {
                        assert_eq!(p.get("ts").is_some(), version == 2, "{p}");
                    }
                }
                "edge.alarm" => {}
                other => panic!("unexpected schema {other} on {topic}"),
            }
        }
        if topic.contains("alarms") {
            // Which limit fired, per gateway and series in batch order (the
            // order Kafka keeps is per key, not across keys).
            let absent = if version == 1 {
                Value::from("absent")
            } else {
                Value::Null
            };
            let expected = BTreeMap::from([
                (
                    "line1.temp0",
                    vec![
                        ("oil", "raised", Value::from("high")),
                        ("oil", "cleared", Value::from("high")),
                        ("oil", "raised", Value::from("low")),
                    ],
                ),
                ("line1.temp1", vec![("oil.stale", "raised", absent)]),
            ]);
            for (gw, _) in GATEWAYS {
                let mut kinds: BTreeMap<&str, Vec<(&str, &str, Value)>> = BTreeMap::new();
                for v in messages.iter().map(|m| &m["value"]) {
                    if v["gateway"] != gw {
                        continue;
                    }
                    let kind = v
                        .get("limit_kind")
                        .cloned()
                        .unwrap_or(Value::from("absent"));
                    kinds
                        .entry(v["series"].as_str().unwrap())
                        .or_default()
                        .push((
                            v["rule"].as_str().unwrap(),
                            v["state"].as_str().unwrap(),
                            kind,
                        ));
                }
                assert_eq!(kinds, expected, "{topic} {gw}");
            }
        }
    }
    // v1 keys collide across the two gateways, v2 keys do not.
    assert_eq!(keys["m.readings.v1"].len(), SERIES as usize);
    assert_eq!(keys["m.readings.v2"].len(), 2 * SERIES as usize);
    // Several partitions really were used (the check above is not vacuous).
    let partitions: BTreeSet<i64> = keys["m.readings.v2"]
        .iter()
        .map(|k| java_partition(k, PARTITIONS))
        .collect();
    assert!(partitions.len() >= 4, "{partitions:?}");
    assert!(placed > 0);

    // The consumer example of docs/examples/: the same readings again in a
    // new batch (a gateway that lost its spool and sent them twice) are
    // duplicates it drops; every alarm joins the reading of its key at its
    // time (points are 1 ms apart from t0 with values 0, 1, 2).
    let mut again = batch(GATEWAYS[0].0, t0);
    again.seq = 2;
    post(reading_port, GATEWAYS[0].1, &again)?;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/examples/kafka_consumer.py");
    let out = std::process::Command::new("python3")
        .arg(&example)
        .args([&tansu.bootstrap(), "m.readings.v2", "m.alarms.v2"])
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout)?;
    let readings_per_gateway = (SERIES as i64 * POINTS) as u64;
    assert_eq!(summary["readings"], 2 * readings_per_gateway, "{summary}");
    assert_eq!(summary["alarms"], 2 * 4, "{summary}");
    assert_eq!(summary["duplicates"], readings_per_gateway + 4, "{summary}");
    let joined = summary["joined"].as_array().unwrap();
    assert_eq!(joined.len(), 8, "{summary}");
    for j in joined {
        let ts = j["ts_us"].as_i64().unwrap();
        let value = ((ts - t0) / 1000) as f64;
        assert_eq!(
            j["last_reading"],
            serde_json::json!({"ts_us": ts, "value": value}),
            "{j}"
        );
        assert!(GATEWAYS.iter().any(|(gw, _)| j["gateway"] == *gw), "{j}");
    }

    by_reading.terminate(Duration::from_secs(20))?;
    by_series.terminate(Duration::from_secs(20))?;
    Ok(())
}
