//! The MQTT source against a real broker: Mosquitto on a free loopback
//! port, messages published with `mosquitto_pub`, and the source's `run()`
//! driven directly with an mpsc channel so each reading can be checked.
//!
//! What is published is known independently of the code under test: the
//! expected series names, values and timestamps are written out by hand.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use edge_agent::config::AgentConfig;
use edge_agent::reading::{now_us, Input, Quality, Reading};
use edge_agent::source::mqtt::MqttSource;
use edge_agent::stats::AgentStats;
use edge_tests::Mosquitto;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const CLIENT_ID: &str = "e2e-gw-mqtt";
/// 2023-11-14T22:13:20Z, in µs.
const T0: i64 = 1_700_000_000_000_000;

/// A config for driving the source alone: `brokers` (TOML sections) after
/// a gateway whose spool and uplink are never used.
pub(crate) fn source_only_config(brokers: &str) -> anyhow::Result<AgentConfig> {
    Ok(AgentConfig::parse(
        &format!(
            r#"
gateway_id = "e2e-gw"
tags = {{ site = "plant-e2e" }}
[spool]
path = "/nonexistent/spool.db"
[uplink]
url = "http://127.0.0.1:9/v1/batches"
token = "unused"
{brokers}"#
        ),
        "e2e mqtt source config",
    )?)
}

fn source_config(port: u16) -> anyhow::Result<AgentConfig> {
    source_only_config(&format!(
        r#"
[[mqtt]]
host = "127.0.0.1"
port = {port}
client_id = "{CLIENT_ID}"
keep_alive_s = 5
[[mqtt.subscriptions]]
topic = "plant/+/temp"
series = "{{2}}.temp"
unit = "degC"
tags = {{ line = "{{2}}" }}
[[mqtt.subscriptions]]
topic = "plant/+/drive"
qos = 1
format = "json"
series = "{{2}}.drive"
values = [
    {{ pointer = "/motor/rpm", name = "rpm", unit = "rpm" }},
    {{ pointer = "/motor/current", name = "current", unit = "A" }},
]
timestamp_pointer = "/ts"
timestamp_format = "ms"
[[mqtt.subscriptions]]
topic = "plant/+/energy/#"
format = "json-object"
series = "{{2}}.{{4}}"
unit = "kWh"
timestamp_pointer = "/time"
timestamp_format = "rfc3339"
"#
    ))
}

/// Start the MQTT source on its own task, reading into a channel.
pub(crate) fn start_source(
    config: &AgentConfig,
    ack_after_commit: bool,
    stats: &Arc<AgentStats>,
) -> anyhow::Result<(
    mpsc::Receiver<Input>,
    CancellationToken,
    JoinHandle<anyhow::Result<()>>,
)> {
    let source = MqttSource {
        broker: config.mqtt[0].clone(),
        tags: config.tags.clone(),
        stats: stats.clone(),
        ack_after_commit,
        spool: None,
    };
    let (tx, rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let stop = stop.clone();
        async move { Ok(source.run(tx, stop).await?) }
    });
    Ok((rx, stop, task))
}

/// Poll a condition every 20 ms for at most 20 s.
pub(crate) async fn wait_for(what: &str, check: impl Fn() -> bool) -> anyhow::Result<()> {
    edge_tests::wait_for_async(what, Duration::from_secs(20), check).await
}

/// The next `n` readings, by series name, failing after 10 s.
pub(crate) async fn next_readings(
    rx: &mut mpsc::Receiver<Input>,
    n: usize,
) -> anyhow::Result<BTreeMap<String, Reading>> {
    let mut got = BTreeMap::new();
    let mut taken = 0;
    while taken < n {
        let r = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .with_context(|| format!("reading {} of {n} did not arrive", taken + 1))?
            .context("the source closed its channel")?;
        let r = match r {
            Input::Reading(r) => r,
            // The broker connection going down or coming back.
            Input::Device(_) => continue,
            Input::Sample { .. } => anyhow::bail!("an MQTT source sent a microcontroller sample"),
        };
        taken += 1;
        got.insert(r.series.name.clone(), r);
    }
    Ok(got)
}

pub(crate) async fn publish(
    broker: &Mosquitto,
    topic: &str,
    payload: &str,
    qos: u8,
) -> anyhow::Result<()> {
    tokio::task::block_in_place(|| broker.publish(topic, payload, qos))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_payload_format_becomes_readings_and_malformed_ones_are_counted() -> anyhow::Result<()>
{
    let logs = tempfile::tempdir()?;
    let broker = Mosquitto::start(logs.path())?;
    let stats = Arc::new(AgentStats::default());
    let (mut rx, stop, task) = start_source(&source_config(broker.port)?, false, &stats)?;
    wait_for("three subscriptions acknowledged", || {
        stats.mqtt_subscriptions_acked.get() >= 3
    })
    .await?;

    // "number", timestamped on arrival.
    let before = now_us();
    publish(&broker, "plant/l1/temp", " 21.5\n", 0).await?;
    let r = next_readings(&mut rx, 1).await?;
    let temp = &r["l1.temp"];
    assert_eq!((temp.value, temp.quality), (21.5, Quality::Good));
    assert!((before..=now_us()).contains(&temp.ts_us), "arrival time");
    assert_eq!(temp.series.unit, "degC");
    let tags: Vec<(&str, &str)> = temp
        .series
        .tags
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        tags,
        [
            ("line", "l1"),
            ("protocol", "mqtt"),
            ("site", "plant-e2e"),
            ("topic", "plant/l1/temp"),
        ]
    );

    // "json" by pointer, QoS 1, time in ms from the payload.
    let drive = r#"{"ts": 1700000000123, "motor": {"rpm": 1450, "current": 3.5}}"#;
    publish(&broker, "plant/l2/drive", drive, 1).await?;
    let r = next_readings(&mut rx, 2).await?;
    assert_eq!(
        r.keys().collect::<Vec<_>>(),
        ["l2.drive.current", "l2.drive.rpm"]
    );
    assert_eq!(r["l2.drive.rpm"].value, 1450.0);
    assert_eq!(r["l2.drive.rpm"].series.unit, "rpm");
    assert_eq!(r["l2.drive.current"].value, 3.5);
    assert!(r.values().all(|x| x.ts_us == T0 + 123_000));

    // "json-object" under a '#' filter, RFC 3339 time; text fields skipped.
    let energy =
        r#"{"time": "2023-11-14T23:13:20.5+01:00", "import": 12.5, "export": 0.25, "meter": "A"}"#;
    publish(&broker, "plant/l3/energy/main", energy, 0).await?;
    let r = next_readings(&mut rx, 2).await?;
    assert_eq!(
        r.keys().collect::<Vec<_>>(),
        ["l3.main.export", "l3.main.import"]
    );
    assert_eq!(r["l3.main.import"].value, 12.5);
    assert_eq!(r["l3.main.export"].value, 0.25);
    assert!(r.values().all(|x| x.ts_us == T0 + 500_000));
    assert_eq!(
        r["l3.main.import"].series.tags["topic"],
        "plant/l3/energy/main"
    );

    // Malformed messages are counted per subscription; the source goes on.
    publish(&broker, "plant/l1/temp", "12abc", 0).await?;
    publish(
        &broker,
        "plant/l2/drive",
        r#"{"motor": {"rpm": "fast"}}"#,
        1,
    )
    .await?;
    publish(&broker, "plant/l1/temp", "", 0).await?;
    publish(&broker, "plant/l1/temp", "22.5", 0).await?;
    let r = next_readings(&mut rx, 1).await?;
    assert_eq!(r["l1.temp"].value, 22.5, "the source kept going");
    assert_eq!(stats.mqtt_malformed_for(CLIENT_ID, "plant/+/temp"), 2);
    assert_eq!(stats.mqtt_malformed_for(CLIENT_ID, "plant/+/drive"), 1);
    assert_eq!(stats.mqtt_malformed_for(CLIENT_ID, "plant/+/energy/#"), 0);
    assert_eq!(stats.mqtt_malformed.get(), 3);
    assert_eq!(stats.readings_produced.get(), 6);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .context("the source did not stop on shutdown")???;
    Ok(())
}

/// Regression guard: a clean session forgets subscriptions, so a source
/// that subscribed only once would go silent after the broker restarts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_resubscribes_after_the_broker_restarts() -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let broker = Mosquitto::start(logs.path())?;
    let port = broker.port;
    let stats = Arc::new(AgentStats::default());
    let (mut rx, stop, task) = start_source(&source_config(port)?, false, &stats)?;
    wait_for("subscribed", || stats.mqtt_subscriptions_acked.get() >= 3).await?;
    publish(&broker, "plant/l1/temp", "1", 0).await?;
    assert_eq!(next_readings(&mut rx, 1).await?["l1.temp"].value, 1.0);

    drop(broker);
    wait_for("connection loss noticed", || {
        stats.mqtt_connection_errors.get() >= 1
    })
    .await?;
    let broker = Mosquitto::start_on(logs.path(), port)?;
    wait_for("subscribed again", || {
        stats.mqtt_subscriptions_acked.get() >= 6
    })
    .await?;
    publish(&broker, "plant/l1/temp", "2", 0).await?;
    assert_eq!(next_readings(&mut rx, 1).await?["l1.temp"].value, 2.0);

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .context("the source did not stop on shutdown")???;
    Ok(())
}

/// A persistent session over one QoS 1 subscription.
fn persistent_config(port: u16) -> anyhow::Result<AgentConfig> {
    source_only_config(&format!(
        r#"
[[mqtt]]
host = "127.0.0.1"
port = {port}
client_id = "e2e-gw-persistent"
clean_session = false
[[mqtt.subscriptions]]
topic = "line/+/count"
qos = 1
series = "{{2}}.count"
"#
    ))
}

pub(crate) async fn stop_source(
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
) -> anyhow::Result<()> {
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .context("the source did not stop on shutdown")??
}

/// A QoS 1 message is acknowledged only after its readings are committed
/// (simulated here by counting them in `readings_spooled`, as the pipeline
/// does after a commit): the
/// broker redelivers it to the next connection of the session until then,
/// and not after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos1_messages_are_acknowledged_only_after_the_spool_commit() -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let broker = Mosquitto::start(logs.path())?;
    let config = persistent_config(broker.port)?;
    let stats = Arc::new(AgentStats::default());

    let (mut rx, stop, task) = start_source(&config, true, &stats)?;
    wait_for("subscribed", || stats.mqtt_subscriptions_acked.get() >= 1).await?;
    publish(&broker, "line/a/count", "1", 1).await?;
    assert_eq!(next_readings(&mut rx, 1).await?["a.count"].value, 1.0);
    // No commit: the source must not acknowledge, whatever time passes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stats.mqtt_messages_acked.get(), 0);
    stop_source(stop, task).await?;

    // Same session again: the broker still holds "1" and redelivers it.
    let (mut rx, stop, task) = start_source(&config, true, &stats)?;
    assert_eq!(
        next_readings(&mut rx, 1).await?["a.count"].value,
        1.0,
        "the unacknowledged message is redelivered"
    );
    stats.readings_spooled.add(stats.readings_produced.get());
    wait_for("acknowledged after the commit", || {
        stats.mqtt_messages_acked.get() >= 1
    })
    .await?;
    stop_source(stop, task).await?;

    // Acknowledged: a third connection gets only what is new.
    let (mut rx, stop, task) = start_source(&config, true, &stats)?;
    wait_for("subscribed again", || {
        stats.mqtt_subscriptions_acked.get() >= 3
    })
    .await?;
    publish(&broker, "line/a/count", "2", 1).await?;
    assert_eq!(
        next_readings(&mut rx, 1).await?["a.count"].value,
        2.0,
        "no redelivery after the acknowledgement"
    );
    stop_source(stop, task).await?;
    Ok(())
}

/// The whole agent with an MQTT broker as its only source and the relay
/// out of reach: a QoS 1 message is spooled, and only then acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_spools_mqtt_readings_then_acknowledges_them() -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let broker = Mosquitto::start(logs.path())?;
    let unreachable = edge_tests::free_port()?;
    let config = AgentConfig::parse(
        &format!(
            r#"
gateway_id = "e2e-gw"
[spool]
path = {:?}
[batch]
max_age_ms = 100
[uplink]
url = "http://127.0.0.1:{unreachable}/v1/batches"
token = "unused"
shutdown_drain_ms = 100
[[mqtt]]
host = "127.0.0.1"
port = {}
[[mqtt.subscriptions]]
topic = "plant/+/drive"
qos = 1
format = "json-object"
series = "{{2}}.drive"
"#,
            logs.path().join("spool.db"),
            broker.port
        ),
        "e2e agent mqtt config",
    )?;
    let agent = edge_agent::Agent::new(config);
    let stats = agent.stats();
    let stop = CancellationToken::new();
    let run = tokio::spawn(agent.run(stop.clone()));
    wait_for("subscribed", || stats.mqtt_subscriptions_acked.get() >= 1).await?;
    publish(
        &broker,
        "plant/l2/drive",
        r#"{"rpm": 1450, "current": 3.5}"#,
        1,
    )
    .await?;
    wait_for("acknowledged", || stats.mqtt_messages_acked.get() >= 1).await?;
    assert_eq!(stats.readings_produced.get(), 2);
    assert_eq!(
        stats.readings_spooled.get(),
        2,
        "spooled before the acknowledgement"
    );
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .context("the agent did not stop")???;
    Ok(())
}
