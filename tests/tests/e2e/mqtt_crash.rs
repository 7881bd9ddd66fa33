//! Every QoS 1 message exactly once when the agent dies: the real
//! `edge-agent` binary, subscribed with a persistent session (MQTT 3.1.1,
//! and again MQTT 5) to its own Mosquitto, is killed with SIGKILL up to
//! four times (at least twice) in the middle of a stream of numbered
//! messages and started again on the same spool each time; every number
//! must reach the relay (its file sink) once: no gap, and no duplicate
//! from the broker's redelivery of messages committed but not yet
//! acknowledged.
//!
//! The binary is built by [`edge_tests::agent_binary`]; the relay runs
//! in-process.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context};
use edge_relay::config::GatewayConfig;
use edge_relay::{Relay, RelayConfig};
use edge_tests::{agent_binary, spawn, wait_until, Mosquitto, Service};
use tokio_util::sync::CancellationToken;

const GATEWAY: &str = "e2e-gw-crash";
const TOKEN: &str = "e2e-crash-token-0123456789";
const TOPIC: &str = "count/a";
/// Messages published; each carries its sequence number 1..=N as its value.
const N: u64 = 4000;
/// SIGKILLs of the agent during the stream (at most: none once the
/// stream is through, and at least two must come before that).
const KILLS: usize = 4;
/// Log names of the agent's lives.
const AGENTS: [&str; KILLS + 1] = [
    "edge-agent-1",
    "edge-agent-2",
    "edge-agent-3",
    "edge-agent-4",
    "edge-agent-5",
];

/// The sequence numbers in the relay's readings file so far.
fn relayed(relay_dir: &Path) -> BTreeSet<u64> {
    let text = std::fs::read_to_string(relay_dir.join("readings.jsonl")).unwrap_or_default();
    text.lines()
        // A line being written may be cut short; it is read whole next time.
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["value"].as_f64())
        .map(|v| v as u64)
        .collect()
}

/// (warm-up messages, stream messages) in the relay's readings file,
/// duplicates included.
fn count_relayed(relay_dir: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(relay_dir.join("readings.jsonl")).unwrap_or_default();
    let zeros = text
        .lines()
        .filter(|l| l.contains(r#""value":0.0"#))
        .count();
    (zeros, text.lines().count() - zeros)
}

fn start_agent(name: &'static str, config: &Path, logs: &Path) -> anyhow::Result<Service> {
    let args = ["run", "--config", &config.display().to_string()].map(String::from);
    spawn(name, &agent_binary()?, &args, logs)
}

#[test]
fn every_mqtt_3_message_arrives_once_across_four_sigkills() -> anyhow::Result<()> {
    kill_mid_stream("3.1.1")
}

#[test]
fn every_mqtt_5_message_arrives_once_across_four_sigkills() -> anyhow::Result<()> {
    kill_mid_stream("5")
}

fn kill_mid_stream(protocol: &str) -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let broker = Mosquitto::start(logs.path())?;

    let rt = tokio::runtime::Runtime::new()?;
    let relay_dir = work.path().join("relay");
    std::fs::create_dir_all(&relay_dir)?;
    let relay = Relay::from_config(RelayConfig::new(
        &relay_dir,
        vec![GatewayConfig::with_token(GATEWAY, TOKEN)],
    ))?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let relay_addr = listener.local_addr()?;
    let stop_relay = CancellationToken::new();
    let relay_task = rt.spawn(edge_relay::serve(listener, relay, stop_relay.clone()));

    let config = work.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            r#"
gateway_id = "{GATEWAY}"
[spool]
path = {:?}
[batch]
max_readings = 50
max_age_ms = 100
[uplink]
url = "http://{relay_addr}/v1/batches"
token = "{TOKEN}"
retry_initial_ms = 100
retry_max_ms = 500
[[mqtt]]
host = "127.0.0.1"
port = {}
protocol = "{protocol}"
client_id = "{GATEWAY}"
clean_session = false
[[mqtt.subscriptions]]
topic = "count/+"
qos = 1
series = "count"
"#,
            work.path().join("spool.db"),
            broker.port
        ),
    )?;

    let agent = start_agent(AGENTS[0], &config, logs.path())?;
    // Subscribed (and the persistent session exists) once a warm-up
    // message, 0, makes it through to the relay.
    wait_until(
        "a warm-up message at the relay",
        Duration::from_secs(60),
        || {
            let _ = broker.publish(TOPIC, "0", 1);
            relayed(&relay_dir).contains(&0)
        },
    )
    .with_context(|| agent.log_tail())?;

    let numbers: Vec<String> = (1..=N).map(|n| n.to_string()).collect();
    let mut kills = Vec::new();
    let agent = std::thread::scope(|s| -> anyhow::Result<Service> {
        let mut agent = agent;
        let publisher = s.spawn(|| broker.publish_lines(TOPIC, &numbers, 1));
        // SIGKILL as soon as each life has forwarded another N / 40
        // numbers (the restarted agent drains its backlog quickly), each
        // time starting the agent again on the same spool.
        // Once every number is through, a kill proves nothing more.
        for next in &AGENTS[1..] {
            let at = (kills.last().map_or(0, |&n| n as u64) + N / 40).min(N);
            wait_until(
                "the next part of the stream at the relay",
                Duration::from_secs(60),
                || relayed(&relay_dir).range(1..=N).count() as u64 >= at,
            )
            .with_context(|| agent.log_tail())?;
            if relayed(&relay_dir).range(1..=N).count() as u64 == N {
                break;
            }
            agent.kill()?;
            kills.push(relayed(&relay_dir).range(1..=N).count());
            agent = start_agent(next, &config, logs.path())?;
        }
        publisher
            .join()
            .map_err(|_| anyhow::anyhow!("publisher panicked"))??;
        Ok(agent)
    })?;
    // The loop stops killing once the stream is through (a kill can
    // still race its end); at least two kills must come before, or the
    // test proves little.
    let mid_stream = kills.iter().filter(|&&at| (at as u64) < N).count();
    ensure!(
        mid_stream >= 2,
        "only {mid_stream} kills came before all {N} messages were through ({kills:?}): the test proves little"
    );

    let complete = wait_until(
        "every number at the relay",
        Duration::from_secs(120),
        || relayed(&relay_dir).range(1..=N).count() as u64 == N,
    );
    let got = relayed(&relay_dir);
    let missing: Vec<u64> = (1..=N).filter(|n| !got.contains(n)).collect();
    assert!(
        complete.is_ok() && missing.is_empty(),
        "{} of {N} numbers missing after the restarts (first {:?}); through at the kills: {kills:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        agent.log_tail()
    );
    // None twice: a message committed but not yet acknowledged when the
    // agent died is redelivered by the broker (DUP, same packet id), and
    // the restarted agent finds it in the spool and only acknowledges it.
    let (warm_up, stream) = count_relayed(&relay_dir);
    println!(
        "MQTT {protocol}: through at the {} kills: {kills:?} of {N}; relayed {stream} stream readings and {warm_up} warm-up ones",
        kills.len()
    );
    assert_eq!(
        stream as u64,
        N,
        "MQTT {protocol}: {} stream readings relayed twice",
        stream as u64 - N
    );

    stop_relay.cancel();
    rt.block_on(relay_task)??;
    Ok(())
}
