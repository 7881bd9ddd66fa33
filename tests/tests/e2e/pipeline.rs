//! The whole pipeline against real services: an in-test Modbus TCP device →
//! the agent → the relay → tansu (Kafka) and VictoriaMetrics, read back with
//! kafka-python and VictoriaMetrics' export API.
//!
//! What the device serves is known independently of the code under test: a
//! poll-counter register makes the n-th poll read the value n, so "every
//! produced reading arrived exactly once" means the values 1..=N each arrive
//! once, where N is the number of reads the device itself counted.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{ensure, Context};
use edge_agent::config::AgentConfig;
use edge_agent::Agent;
use edge_demo::device::SimDevice;
use edge_relay::{Relay, RelayConfig};
use edge_tests::{Tansu, Victoria};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

const GATEWAY: &str = "e2e-gw-1";
const TOKEN: &str = "e2e-token-0123456789abcdef";
const READINGS: &str = "edge.readings.v1";
const ALARMS: &str = "edge.alarms.v1";

fn now_us() -> i64 {
    edge_agent::reading::now_us()
}

struct Run {
    polls: u64,
    produced: u64,
    forwarded: u64,
    started_us: i64,
    ended_us: i64,
}

/// Run device, relay and agent in-process for a few seconds with one
/// over-limit excursion of the temperature register.
async fn run_plant(tansu: &Tansu, vm: &Victoria) -> anyhow::Result<Run> {
    let started_us = now_us();
    let device = SimDevice::new();
    device.count_reads_in(100);
    device.set_i16(101, 215); // 21.5 degC
    device.set_f32(102, 4.25);
    let device_listener = TcpListener::bind("127.0.0.1:0").await?;
    let device_addr = device_listener.local_addr()?;
    let stop_device = CancellationToken::new();
    tokio::spawn(device.clone().serve(device_listener, stop_device.clone()));

    let relay_config = RelayConfig::from_toml(&format!(
        r#"
[[gateways]]
id = "{GATEWAY}"
token = "{TOKEN}"
[kafka]
brokers = ["{}"]
readings_topic = "{READINGS}"
alarms_topic = "{ALARMS}"
delivery_timeout_ms = 10000
[timeseries]
url = "{}"
"#,
        tansu.bootstrap(),
        vm.write_url()
    ))?;
    let relay_listener = TcpListener::bind("127.0.0.1:0").await?;
    let relay_addr = relay_listener.local_addr()?;
    let stop_relay = CancellationToken::new();
    let relay = tokio::spawn(edge_relay::serve(
        relay_listener,
        Relay::from_config(relay_config)?,
        stop_relay.clone(),
    ));

    let spool = tempfile::tempdir()?;
    let agent_config = AgentConfig::parse(
        &format!(
            r#"
gateway_id = "{GATEWAY}"
tags = {{ site = "plant-e2e" }}
[spool]
path = {:?}
[batch]
max_readings = 50
max_age_ms = 300
[uplink]
url = "http://{relay_addr}/v1/batches"
token = "{TOKEN}"
retry_initial_ms = 100
retry_max_ms = 1000
shutdown_drain_ms = 30000
[[modbus]]
name = "press-3"
address = "{device_addr}"
poll_interval_ms = 100
timeout_ms = 2000
tags = {{ line = "L1", asset = "press-3" }}
[[modbus.points]]
name = "poll_no"
register = 100
type = "u16"
[[modbus.points]]
name = "oil_temp"
register = 101
type = "i16"
scale = 0.1
unit = "degC"
[[modbus.points]]
name = "line_pressure"
register = 102
type = "f32"
unit = "bar"
[[rules]]
name = "oil_temp.high"
series = "press-3.oil_temp"
max = 50.0
"#,
            spool.path().join("spool.db")
        ),
        "e2e agent config",
    )?;
    let agent = Agent::new(agent_config);
    let stats = agent.stats();
    let stop_agent = CancellationToken::new();
    let agent_task = tokio::spawn(agent.run(stop_agent.clone()));

    // Let it run, with one excursion: 21.5 → 61.2 → 21.5 degC.
    wait_for(|| stats.readings_forwarded.get() >= 15).await?;
    device.set_i16(101, 612);
    wait_for(|| stats.alarms_raised.get() >= 1).await?;
    wait_for(|| stats.readings_produced.get() >= 45).await?;
    device.set_i16(101, 215);
    wait_for(|| stats.alarms_cleared.get() >= 1).await?;
    wait_for(|| stats.readings_produced.get() >= 75).await?;

    stop_agent.cancel();
    agent_task.await??;
    stop_relay.cancel();
    relay.await??;
    stop_device.cancel();
    Ok(Run {
        polls: device.requests(),
        produced: stats.readings_produced.get(),
        forwarded: stats.readings_forwarded.get(),
        started_us,
        ended_us: now_us(),
    })
}

/// Poll a condition every 20 ms for at most 30 s.
async fn wait_for(check: impl Fn() -> bool) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check() {
        ensure!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[test]
fn modbus_readings_and_alarms_reach_kafka_and_victoriametrics() -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let tansu = Tansu::start(logs.path())?;
    tansu.create_topic(READINGS)?;
    tansu.create_topic(ALARMS)?;
    let vm = Victoria::start(logs.path())?;

    let run = tokio::runtime::Runtime::new()?
        .block_on(run_plant(&tansu, &vm))
        .with_context(|| format!("plant run failed; tansu log:\n{}", tansu.service.log_tail()))?;
    let polls = run.polls;
    assert!(polls >= 25, "the device served only {polls} reads");
    assert_eq!(
        run.produced,
        3 * polls,
        "three points per poll, one request per poll"
    );
    assert_eq!(
        run.forwarded, run.produced,
        "the agent forwarded everything it produced"
    );

    // Kafka, read back with kafka-python.
    let messages = tansu.read_topic(READINGS)?;
    let mut by_series: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for m in &messages {
        let v = &m["value"];
        let series = v["series"].as_str().context("series")?.to_string();
        assert_eq!(
            m["key"].as_str(),
            Some(series.as_str()),
            "key is the series"
        );
        assert_eq!(m["headers"]["gateway"], GATEWAY);
        assert_eq!(v["gateway"], GATEWAY);
        assert_eq!(v["quality"], "good");
        let ts = v["ts_us"].as_i64().context("ts_us")?;
        assert!(
            (run.started_us..=run.ended_us).contains(&ts),
            "timestamp {ts} outside the run"
        );
        let want_tags: BTreeMap<&str, &str> = [
            ("site", "plant-e2e"),
            ("line", "L1"),
            ("asset", "press-3"),
            ("device", "press-3"),
            ("protocol", "modbus-tcp"),
        ]
        .into();
        let tags: BTreeMap<&str, &str> = v["tags"]
            .as_object()
            .context("tags")?
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
            .collect();
        assert_eq!(tags, want_tags, "tags of {series}");
        by_series.entry(series).or_default().push(v);
    }
    assert_eq!(
        by_series.keys().collect::<Vec<_>>(),
        [
            "press-3.line_pressure",
            "press-3.oil_temp",
            "press-3.poll_no"
        ]
    );
    for (series, values) in &by_series {
        assert_eq!(
            values.len() as u64,
            polls,
            "{series}: one reading per poll, no duplicates"
        );
    }

    // Every poll number 1..=polls exactly once, timestamps rising with it.
    let mut poll_readings: Vec<(u64, i64)> = by_series["press-3.poll_no"]
        .iter()
        .map(|v| {
            (
                v["value"].as_f64().unwrap_or(-1.0) as u64,
                v["ts_us"].as_i64().unwrap_or(0),
            )
        })
        .collect();
    poll_readings.sort();
    let numbers: Vec<u64> = poll_readings.iter().map(|r| r.0).collect();
    assert_eq!(numbers, (1..=polls).collect::<Vec<_>>());
    assert!(
        poll_readings.windows(2).all(|w| w[0].1 < w[1].1),
        "timestamps rise with the poll number"
    );

    assert!(by_series["press-3.line_pressure"]
        .iter()
        .all(|v| v["value"] == 4.25));
    let temps: BTreeSet<String> = by_series["press-3.oil_temp"]
        .iter()
        .map(|v| v["value"].to_string())
        .collect();
    assert_eq!(
        temps,
        BTreeSet::from(["21.5".to_string(), "61.2".to_string()])
    );
    assert!(by_series["press-3.oil_temp"]
        .iter()
        .all(|v| v["unit"] == "degC"));

    // The alarm, raised and cleared, on its own topic.
    let alarms = tansu.read_topic(ALARMS)?;
    let events: Vec<(String, String, String, String)> = alarms
        .iter()
        .map(|m| {
            let v = &m["value"];
            (
                v["state"].as_str().unwrap_or("").to_string(),
                v["rule"].as_str().unwrap_or("").to_string(),
                v["value"].to_string(),
                v["limit"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        events,
        vec![
            (
                "raised".into(),
                "oil_temp.high".into(),
                "61.2".into(),
                "50.0".into()
            ),
            (
                "cleared".into(),
                "oil_temp.high".into(),
                "21.5".into(),
                "50.0".into()
            ),
        ]
    );
    assert!(alarms.iter().all(|m| m["key"] == "press-3.oil_temp"));
    // Wire v2 fields: the severity of the min/max shorthand, and on the
    // clear how long the alarm was raised.
    assert!(alarms.iter().all(|m| m["value"]["severity"] == "major"));
    let (raise, clear) = (&alarms[0]["value"], &alarms[1]["value"]);
    assert_eq!(raise["duration_us"], serde_json::Value::Null);
    let duration = clear["ts_us"].as_i64().unwrap() - raise["ts_us"].as_i64().unwrap();
    assert_eq!(clear["duration_us"], duration, "{clear}");

    // VictoriaMetrics holds the same poll numbers at the same instants (ms).
    let exported = vm.export(r#"edge_value{series="press-3.poll_no"}"#)?;
    assert_eq!(
        exported.len(),
        1,
        "one time series in VictoriaMetrics: {exported:?}"
    );
    assert_eq!(exported[0]["metric"]["gateway"], GATEWAY);
    assert_eq!(exported[0]["metric"]["asset"], "press-3");
    let vm_points: Vec<(u64, i64)> = exported[0]["values"]
        .as_array()
        .context("values")?
        .iter()
        .zip(exported[0]["timestamps"].as_array().context("timestamps")?)
        .map(|(v, t)| (v.as_f64().unwrap_or(-1.0) as u64, t.as_i64().unwrap_or(0)))
        .collect();
    let kafka_points: Vec<(u64, i64)> = poll_readings
        .iter()
        .map(|&(n, ts)| (n, ts / 1000))
        .collect();
    let mut vm_sorted = vm_points.clone();
    vm_sorted.sort();
    assert_eq!(vm_sorted, kafka_points);
    Ok(())
}
