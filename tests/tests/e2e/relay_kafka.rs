//! The `edge-relay` binary against tansu, read back with kafka-python:
//! both message granularities with the relay's enrichment (site, gateway
//! tags, arrival time) and headers, a series reported by exception marked
//! as such (every message checked against its JSON Schema), and a graceful shutdown (SIGTERM while a
//! batch is in flight: the batch is answered 200, is in Kafka, and the
//! process exits 0).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use edge_tests::{
    free_port, http_get, relay_answers, relay_binary, spawn, wait_until, Service, Tansu,
};
use edge_wire::{Batch, Point, Quality, Series};

const TOKEN: &str = "relay-kafka-test-token-0123";

fn now_us() -> i64 {
    edge_agent::reading::now_us()
}

/// `series` series of `points` readings each, timestamps one ms apart
/// ending now.
fn batch(seq: u64, series: u32, points: i64) -> Batch {
    let t0 = now_us() - points * 1000;
    Batch {
        gateway_id: "gw-e2e".into(),
        instance: None,
        seq,
        created_us: t0,
        series: (0..series)
            .map(|s| Series {
                id: s,
                name: format!("press-{s}.oil_temp"),
                unit: "degC".into(),
                tags: [("line".to_string(), "L1".to_string())].into(),
                points: (0..points)
                    .map(|i| Point {
                        ts_us: t0 + i * 1000,
                        value: i as f64 / 4.0,
                        quality: Quality::Good,
                    })
                    .collect(),
                reporting: None,
            })
            .collect(),
        alarms: vec![],
        gaps: Vec::new(),
        devices: Vec::new(),
    }
}

/// Start the relay binary publishing to `topic` with `granularity`: the
/// relay, its upload port and its operations port.
fn start_relay(
    dir: &Path,
    tansu: &Tansu,
    topic: &str,
    granularity: &str,
) -> anyhow::Result<(Service, u16, u16)> {
    let (port, ops_port) = (free_port()?, free_port()?);
    let config = dir.join(format!("relay-{granularity}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"
listen = "127.0.0.1:{port}"
[[gateways]]
id = "gw-e2e"
token = "{TOKEN}"
site = "plant-e2e"
tags = {{ owner = "maintenance-a", zone = "north" }}
[kafka]
brokers = ["{}"]
readings_topic = "{topic}"
alarms_topic = "{topic}.alarms"
granularity = "{granularity}"
delivery_timeout_ms = 30000
[kafka.producer]
"linger.ms" = 5
[dedup]
path = "{}"
[ops]
listen = "127.0.0.1:{ops_port}"
"#,
            tansu.bootstrap(),
            dir.join(format!("delivered-{granularity}.db")).display(),
        ),
    )?;
    let relay = run_relay(dir, &config, port, ops_port)?;
    Ok((relay, port, ops_port))
}

/// The relay binary with the config file `config`, once it answers on
/// `port` and its operations port `ops_port` says it is healthy.
pub(crate) fn run_relay(
    dir: &Path,
    config: &Path,
    port: u16,
    ops_port: u16,
) -> anyhow::Result<Service> {
    let args = ["--config".to_string(), config.display().to_string()];
    let relay = spawn("edge-relay", &relay_binary()?, &args, dir)?;
    let url = format!("http://127.0.0.1:{ops_port}/healthz");
    wait_until("edge-relay /healthz", Duration::from_secs(30), || {
        http_get(&url).is_ok() && relay_answers(port)
    })
    .with_context(|| relay.log_tail())?;
    Ok(relay)
}

fn post(port: u16, batch: &Batch) -> anyhow::Result<(u16, String)> {
    post_as(port, TOKEN, batch)
}

/// Upload `batch` with the bearer `token`: the status and the body.
pub(crate) fn post_as(port: u16, token: &str, batch: &Batch) -> anyhow::Result<(u16, String)> {
    let response = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(120))
        .build()?
        .post(format!("http://127.0.0.1:{port}/v1/batches"))
        .bearer_auth(token)
        .body(edge_wire::encode(batch)?)
        .send()?;
    Ok((response.status().as_u16(), response.text()?))
}

fn check_common(msg: &serde_json::Value, sent_us: i64, schema: &str) {
    let value = &msg["value"];
    assert_eq!(value["schema"], schema, "{msg}");
    assert_eq!(msg["headers"]["schema"], schema, "{msg}");
    assert_eq!(msg["headers"]["gateway"], "gw-e2e", "{msg}");
    assert_eq!(msg["headers"]["batch_seq"], "1", "{msg}");
    assert_eq!(msg["key"], value["series"], "{msg}");
    assert_eq!(value["site"], "plant-e2e", "{msg}");
    assert_eq!(
        value["gateway_tags"],
        serde_json::json!({"owner": "maintenance-a", "zone": "north"}),
        "{msg}"
    );
    let received = value["received_us"].as_i64().unwrap();
    assert!(
        (sent_us..sent_us + 60_000_000).contains(&received),
        "received_us {received} is not just after the upload at {sent_us}"
    );
    assert!(value["received"].as_str().unwrap().ends_with('Z'), "{msg}");
}

#[test]
fn both_granularities_publish_enriched_messages_with_series_keys_and_headers() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    let tansu = Tansu::start(dir.path())?;
    for topic in [
        "g.readings",
        "g.readings.alarms",
        "g.series",
        "g.series.alarms",
    ] {
        tansu.create_topic(topic)?;
    }
    let (series_count, points) = (3, 40);
    let mut sent = batch(1, series_count, points);
    // Series 0 is reported by exception: its messages say so, the others
    // have no `reporting`, and every message validates against its schema.
    sent.series[0].reporting = Some(edge_wire::Reporting {
        deadband: 0.05,
        max_silence_ms: 60_000,
    });
    let reported =
        serde_json::json!({"mode": "exception", "deadband": 0.05, "max_silence_s": 60.0});
    let schema = |text: &str| -> anyhow::Result<jsonschema::Validator> {
        let schema: serde_json::Value = serde_json::from_str(text)?;
        jsonschema::validator_for(&schema).context("the schema compiles")
    };
    let reading_schema = schema(include_str!("../../../docs/schemas/edge.reading.v1.json"))?;
    let series_schema = schema(include_str!(
        "../../../docs/schemas/edge.series-batch.v1.json"
    ))?;
    let check_reporting = |msg: &serde_json::Value, v: &jsonschema::Validator| {
        let value = &msg["value"];
        let errors: Vec<String> = v.iter_errors(value).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{value}: {errors:?}");
        if value["series"] == "press-0.oil_temp" {
            assert_eq!(value["reporting"], reported, "{msg}");
        } else {
            assert!(value.get("reporting").is_none(), "{msg}");
        }
    };
    let sent_us = now_us();
    let (mut by_reading, reading_port, _) =
        start_relay(dir.path(), &tansu, "g.readings", "reading")?;
    let (mut by_series, series_port, _) = start_relay(dir.path(), &tansu, "g.series", "series")?;
    for port in [reading_port, series_port] {
        let (status, body) = post(port, &sent)?;
        assert_eq!(status, 200, "{body}");
    }

    // granularity = "reading": one message per reading.
    let readings = tansu.read_topic("g.readings")?;
    assert_eq!(readings.len(), (series_count as i64 * points) as usize);
    let mut per_series: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for msg in &readings {
        check_common(msg, sent_us, "edge.reading.v1");
        check_reporting(msg, &reading_schema);
        per_series
            .entry(msg["key"].as_str().unwrap().to_owned())
            .or_default()
            .push(msg["value"]["ts_us"].as_i64().unwrap());
    }

    // granularity = "series": one message per series, the same points.
    let batches = tansu.read_topic("g.series")?;
    assert_eq!(batches.len(), series_count as usize);
    for msg in &batches {
        check_common(msg, sent_us, "edge.series-batch.v1");
        check_reporting(msg, &series_schema);
        let key = msg["key"].as_str().unwrap();
        let points: Vec<i64> = msg["value"]["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["t_us"].as_i64().unwrap())
            .collect();
        let sent_series = sent.series.iter().find(|s| s.name == key).unwrap();
        let sent_ts: Vec<i64> = sent_series.points.iter().map(|p| p.ts_us).collect();
        assert_eq!(points, sent_ts, "series {key}: points in batch order");
        // Within one partition a series is in order in reading mode too.
        assert_eq!(per_series[key], sent_ts, "series {key} in reading mode");
    }
    by_reading.terminate(Duration::from_secs(20))?;
    by_series.terminate(Duration::from_secs(20))?;
    Ok(())
}

#[test]
fn sigterm_while_a_batch_is_in_flight_answers_it_publishes_it_and_exits_0() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tansu = Tansu::start(dir.path())?;
    tansu.create_topic("s.readings")?;
    tansu.create_topic("s.readings.alarms")?;
    let (mut relay, port, ops_port) = start_relay(dir.path(), &tansu, "s.readings", "reading")?;
    let sent = batch(1, 10, 3_000);
    let upload = std::thread::spawn(move || post(port, &sent));
    // The batch is in flight once it decoded: it is counted before the
    // sinks get it.
    let metrics = format!("http://127.0.0.1:{ops_port}/metrics");
    wait_until("batch decoded", Duration::from_secs(30), || {
        http_get(&metrics).is_ok_and(|m| m.contains("edge_relay_batches_received_total 1\n"))
    })
    .with_context(|| relay.log_tail())?;
    // Guards what this test is about: if the upload already finished, the
    // batch was not in flight at SIGTERM (make the batch bigger).
    assert!(
        !upload.is_finished(),
        "the batch was delivered before SIGTERM"
    );
    let status = relay.terminate(Duration::from_secs(60))?;
    let (code, body) = upload.join().expect("upload thread")?;
    assert_eq!(code, 200, "in-flight batch answered: {body}");
    assert!(
        status.success(),
        "relay exit status {status}:\n{}",
        relay.log_tail()
    );
    let log = relay.log();
    let stop_at = log.find("shutdown requested").context("no shutdown line")?;
    let flushed_at = log
        .find("kafka producer flushed")
        .context("no flush line")?;
    assert!(stop_at < flushed_at, "{log}");
    let readings = tansu.read_topic("s.readings")?;
    assert_eq!(
        readings.len(),
        30_000,
        "every reading of the batch is in Kafka"
    );
    Ok(())
}

/// A broken config is exit status 78 (EX_CONFIG), which the packaged unit
/// does not restart, and the message names the key.
#[test]
fn a_broken_config_exits_78_naming_the_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("relay.toml");
    std::fs::write(&config, "listen = \"127.0.0.1:1\"\n[kafka]\nbrokers = []\n")?;
    let out = std::process::Command::new(relay_binary()?)
        .args(["--config", &config.display().to_string()])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("gateways"), "{stderr}");
    Ok(())
}
