//! The whole pipeline against real services: an in-test Modbus TCP device →
//! the agent → the relay → tansu (Kafka) and VictoriaMetrics, read back with
//! kafka-python and VictoriaMetrics' export API; and the same with Mosquitto
//! and the MQTT source in place of the device (Kafka only).
//!
//! What the device serves is known independently of the code under test: a
//! poll-counter register makes the n-th poll read the value n, so "every
//! produced reading arrived exactly once" means the values 1..=N each arrive
//! once, where N is the number of reads the device itself counted. The MQTT
//! run publishes values and timestamps written out in the test.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Context;
use edge_agent::config::AgentConfig;
use edge_agent::Agent;
use edge_demo::device::SimDevice;
use edge_relay::{Relay, RelayConfig};
use edge_tests::{Mosquitto, Tansu, Victoria};
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

    let relay = RelayRun::start(tansu, Some(vm)).await?;
    let relay_addr = relay.addr;

    let spool = tempfile::tempdir()?;
    let agent_config = agent_config(
        &spool.path().join("spool.db"),
        relay_addr,
        &format!(
            r#"
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
"#
        ),
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
    relay.stop().await?;
    stop_device.cancel();
    Ok(Run {
        polls: device.requests(),
        produced: stats.readings_produced.get(),
        forwarded: stats.readings_forwarded.get(),
        started_us,
        ended_us: now_us(),
    })
}

/// The agent's config with `sources` (TOML sections) after the settings
/// both runs share: gateway, spool, short batches, and the relay.
fn agent_config(
    spool: &std::path::Path,
    relay: std::net::SocketAddr,
    sources: &str,
) -> anyhow::Result<AgentConfig> {
    Ok(AgentConfig::parse(
        &format!(
            r#"
gateway_id = "{GATEWAY}"
tags = {{ site = "plant-e2e" }}
[spool]
path = {spool:?}
[batch]
max_readings = 50
max_age_ms = 300
[uplink]
url = "http://{relay}/v1/batches"
token = "{TOKEN}"
retry_initial_ms = 100
retry_max_ms = 1000
shutdown_drain_ms = 30000
{sources}"#
        ),
        "e2e agent config",
    )?)
}

/// The relay in-process, writing to tansu and, when given, VictoriaMetrics;
/// its delivered-batch ledger lives in `_state`, removed when it drops.
struct RelayRun {
    addr: std::net::SocketAddr,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), edge_relay::RelayError>>,
    _state: tempfile::TempDir,
}

impl RelayRun {
    async fn start(tansu: &Tansu, vm: Option<&Victoria>) -> anyhow::Result<RelayRun> {
        let timeseries = vm
            .map(|vm| format!("[timeseries]\nurl = \"{}\"\n", vm.write_url()))
            .unwrap_or_default();
        let state = tempfile::tempdir()?;
        let relay_config = RelayConfig::from_toml(&format!(
            r#"
[[gateways]]
id = "{GATEWAY}"
token = "{TOKEN}"
[limits]
# The MQTT drive payloads carry 2023 sample times (T0_MS).
max_past_hours = 1000000
[kafka]
brokers = ["{}"]
readings_topic = "{READINGS}"
alarms_topic = "{ALARMS}"
delivery_timeout_ms = 10000
[dedup]
path = "{}"
{timeseries}"#,
            tansu.bootstrap(),
            state.path().join("delivered.db").display(),
        ))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let task = tokio::spawn(edge_relay::serve(
            listener,
            Relay::from_config(relay_config)?,
            stop.clone(),
        ));
        Ok(RelayRun {
            addr,
            stop,
            task,
            _state: state,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await??;
        Ok(())
    }
}

/// Poll a condition every 20 ms for at most 30 s.
async fn wait_for(check: impl Fn() -> bool) -> anyhow::Result<()> {
    edge_tests::wait_for_async("condition", Duration::from_secs(30), check).await
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
    let by_series = readings_by_series(&messages, |_| {
        [
            ("site", "plant-e2e"),
            ("line", "L1"),
            ("asset", "press-3"),
            ("device", "press-3"),
            ("protocol", "modbus-tcp"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into()
    })?;
    for values in by_series.values() {
        for v in values {
            let ts = v["ts_us"].as_i64().context("ts_us")?;
            assert!(
                (run.started_us..=run.ended_us).contains(&ts),
                "timestamp {ts} outside the run"
            );
        }
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

/// The reading messages of the readings topic by series, after checking
/// what every one of them must carry: the series as the Kafka key, the
/// gateway in a header and in the value, good quality, and exactly the
/// tags `want_tags(series)`.
fn readings_by_series(
    messages: &[Value],
    want_tags: impl Fn(&str) -> BTreeMap<String, String>,
) -> anyhow::Result<BTreeMap<String, Vec<&Value>>> {
    let mut by_series: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for m in messages {
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
        let tags: BTreeMap<String, String> = v["tags"]
            .as_object()
            .context("tags")?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
            .collect();
        assert_eq!(tags, want_tags(&series), "tags of {series}");
        by_series.entry(series).or_default().push(v);
    }
    Ok(by_series)
}

/// 2023-11-14T22:13:20Z, in ms: the drive payloads' time base.
const T0_MS: i64 = 1_700_000_000_000;

/// Mosquitto → the agent's MQTT source (QoS 1, acknowledged after the spool
/// commit) → the relay → tansu. JSON payloads carry their sample time, which
/// must survive to Kafka; plain numbers get the arrival time.
#[test]
fn mqtt_readings_reach_kafka_with_their_keys_tags_and_timestamps() -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let tansu = Tansu::start(logs.path())?;
    tansu.create_topic(READINGS)?;
    tansu.create_topic(ALARMS)?;
    let broker = Mosquitto::start(logs.path())?;
    let (started_us, ended_us) = tokio::runtime::Runtime::new()?
        .block_on(run_mqtt_plant(&tansu, &broker))
        .with_context(|| format!("MQTT run failed; tansu log:\n{}", tansu.service.log_tail()))?;

    let messages = tansu.read_topic(READINGS)?;
    let by_series = readings_by_series(&messages, |series| {
        let (line, topic) = if series.starts_with("l1.") {
            ("l1", "plant/l1/drive")
        } else {
            ("l2", "plant/l2/temp")
        };
        [
            ("site", "plant-e2e"),
            ("line", line),
            ("protocol", "mqtt"),
            ("topic", topic),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into()
    })?;
    let points = |series: &str| -> Vec<(i64, f64)> {
        let mut p: Vec<(i64, f64)> = by_series
            .get(series)
            .into_iter()
            .flatten()
            .map(|v| {
                (
                    v["ts_us"].as_i64().unwrap_or(0),
                    v["value"].as_f64().unwrap_or(f64::NAN),
                )
            })
            .collect();
        p.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        p
    };
    assert_eq!(
        by_series.keys().collect::<Vec<_>>(),
        ["l1.drive.current", "l1.drive.rpm", "l2.temp"]
    );
    let ts = |i: i64| (T0_MS + i * 1000) * 1000;
    assert_eq!(
        points("l1.drive.rpm"),
        [(ts(0), 1450.0), (ts(1), 1460.0), (ts(2), 1470.0)]
    );
    assert_eq!(
        points("l1.drive.current"),
        [(ts(0), 3.5), (ts(1), 3.75), (ts(2), 4.0)]
    );
    let temps = points("l2.temp");
    assert_eq!(
        temps.iter().map(|p| p.1).collect::<Vec<_>>(),
        [21.5, 22.0],
        "arrival-time readings, in publishing order"
    );
    assert!(
        temps.iter().all(|p| (started_us..=ended_us).contains(&p.0)),
        "arrival times within the run: {temps:?}"
    );
    assert!(by_series["l1.drive.rpm"].iter().all(|v| v["unit"] == "rpm"));
    assert!(by_series["l2.temp"].iter().all(|v| v["unit"] == "degC"));
    Ok(())
}

/// Run relay and agent in-process, publish the messages, and return the
/// run's time span (µs) once the agent has forwarded all of them.
async fn run_mqtt_plant(tansu: &Tansu, broker: &Mosquitto) -> anyhow::Result<(i64, i64)> {
    let started_us = now_us();
    let relay = RelayRun::start(tansu, None).await?;
    let spool = tempfile::tempdir()?;
    let agent_config = agent_config(
        &spool.path().join("spool.db"),
        relay.addr,
        &format!(
            r#"
[[mqtt]]
host = "127.0.0.1"
port = {}
[[mqtt.subscriptions]]
topic = "plant/+/drive"
qos = 1
format = "json"
series = "{{2}}.drive"
tags = {{ line = "{{2}}" }}
values = [
    {{ pointer = "/motor/rpm", name = "rpm", unit = "rpm" }},
    {{ pointer = "/motor/current", name = "current", unit = "A" }},
]
timestamp_pointer = "/ts"
timestamp_format = "ms"
[[mqtt.subscriptions]]
topic = "plant/+/temp"
qos = 1
series = "{{2}}.temp"
unit = "degC"
tags = {{ line = "{{2}}" }}
"#,
            broker.port
        ),
    )?;
    let agent = Agent::new(agent_config);
    let stats = agent.stats();
    let stop_agent = CancellationToken::new();
    let agent_task = tokio::spawn(agent.run(stop_agent.clone()));
    wait_for(|| stats.mqtt_subscriptions_acked.get() >= 2).await?;

    let publish = |topic: &str, payload: String| {
        tokio::task::block_in_place(|| broker.publish(topic, &payload, 1))
    };
    for i in 0..3i64 {
        let rpm = 1450 + 10 * i;
        let current = 3.5 + 0.25 * i as f64;
        let ts = T0_MS + i * 1000;
        publish(
            "plant/l1/drive",
            format!(r#"{{"ts": {ts}, "motor": {{"rpm": {rpm}, "current": {current}}}}}"#),
        )?;
    }
    publish("plant/l2/temp", "21.5".into())?;
    publish("plant/l2/temp", "22.0".into())?;
    wait_for(|| stats.readings_forwarded.get() >= 8).await?;
    let ended_us = now_us();

    stop_agent.cancel();
    agent_task.await??;
    relay.stop().await?;
    assert_eq!(stats.readings_produced.get(), 8);
    assert_eq!(stats.mqtt_malformed.get(), 0);
    Ok((started_us, ended_us))
}

/// Sparkplug B end to end: a pysparkplug edge node (births with every
/// scalar datatype, alias-only data, then killed so the broker sends its
/// NDEATH will) → Mosquitto → the agent → the relay → tansu, read back with
/// kafka-python: each metric's three readings arrive with the values the
/// edge node sent, written out by hand in `sparkplug::expected`, the last
/// one bad and without a value.
#[test]
fn sparkplug_metrics_reach_kafka_with_their_values_and_the_death() -> anyhow::Result<()> {
    use crate::sparkplug::{expected, EdgeNode, N};
    let logs = tempfile::tempdir()?;
    let tansu = Tansu::start(logs.path())?;
    tansu.create_topic(READINGS)?;
    tansu.create_topic(ALARMS)?;
    let broker = Mosquitto::start(logs.path())?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(async {
            let relay = RelayRun::start(&tansu, None).await?;
            let spool = tempfile::tempdir()?;
            let config = agent_config(
                &spool.path().join("spool.db"),
                relay.addr,
                &format!(
                    r#"
[[mqtt]]
host = "127.0.0.1"
port = {}
[[mqtt.subscriptions]]
topic = "spBv1.0/plant1/#"
format = "sparkplug"
series = "{{2}}.{{4}}"
"#,
                    broker.port
                ),
            )?;
            let agent = Agent::new(config);
            let stats = agent.stats();
            let stop = CancellationToken::new();
            let task = tokio::spawn(agent.run(stop.clone()));
            wait_for(|| stats.mqtt_subscriptions_acked.get() >= 1).await?;
            let mut node = tokio::task::block_in_place(|| EdgeNode::start(broker.port))?;
            tokio::task::block_in_place(|| node.command("birth"))?;
            wait_for(|| stats.readings_produced.get() >= N as u64).await?;
            tokio::task::block_in_place(|| node.command("alias"))?;
            // "ok" means queued in the edge node's client: wait for the
            // agent to have the data before the kill can cut it off.
            wait_for(|| stats.readings_produced.get() >= 2 * N as u64).await?;
            {
                use std::io::Write;
                writeln!(node.stdin, "die")?;
                node.stdin.flush()?;
            }
            wait_for(|| stats.readings_forwarded.get() >= 3 * N as u64)
                .await
                .with_context(|| {
                    format!(
                        "produced {}, spooled {}, forwarded {}, upload failures {}, quarantined {}",
                        stats.readings_produced.get(),
                        stats.readings_spooled.get(),
                        stats.readings_forwarded.get(),
                        stats.upload_failures.get(),
                        stats.batches_quarantined.get()
                    )
                })?;
            stop.cancel();
            task.await??;
            relay.stop().await?;
            anyhow::Ok(())
        })?;
    let messages = tansu.read_topic(READINGS)?;
    let mut by_series: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for m in &messages {
        let v = &m["value"];
        let series = v["series"].as_str().context("series")?.to_string();
        assert_eq!(v["tags"]["protocol"], "sparkplug", "{series}");
        assert_eq!(v["tags"]["sparkplug_group"], "plant1", "{series}");
        assert_eq!(v["tags"]["edge_node"], "press-gw", "{series}");
        by_series.entry(series).or_default().push(v);
    }
    let (births, data) = (expected(true), expected(false));
    assert_eq!(
        by_series.keys().collect::<Vec<_>>(),
        births.keys().collect::<Vec<_>>(),
        "every numeric metric, and only those (the String metric is not carried)"
    );
    for (series, got) in &mut by_series {
        got.sort_by_key(|v| v["ts_us"].as_i64().unwrap_or(0));
        let values: Vec<(Option<f64>, &str)> = got
            .iter()
            .map(|v| (v["value"].as_f64(), v["quality"].as_str().unwrap_or("")))
            .collect();
        assert_eq!(
            values,
            vec![
                (Some(births[series].0), "good"),
                (Some(data[series].0), "good"),
                (None, "bad"),
            ],
            "{series}: birth, alias data, death"
        );
    }
    assert_eq!(
        by_series["plant1.press-gw.motor.rpm"][0]["tags"]["device"],
        "motor"
    );
    Ok(())
}
