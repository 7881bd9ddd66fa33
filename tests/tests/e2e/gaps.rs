//! Gap events: a gateway whose uplink is down drops readings under its
//! spool's age bound, and the cloud learns exactly which interval is missing.
//!
//! The real agent binary subscribes to numbered QoS 1 messages on Mosquitto
//! with `[spool] max_age_s = 2` while its relay is not running, so batches
//! older than two seconds are dropped as new ones arrive. Then the real relay
//! starts with tansu behind it. Every number must be accounted for: either
//! delivered to the readings topic (once) or counted by a gap event on the
//! events topic, whose interval covers it and no delivered reading; the
//! agent's own drop counter agrees.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{ensure, Context};
use edge_tests::{
    agent_binary, free_port, http_get, relay_binary, spawn, wait_until, Mosquitto, Tansu,
};

const GATEWAY: &str = "gap-gw";
const TOKEN: &str = "gap-token-0123456789abcdef";
const READINGS: &str = "gaps.readings";
const ALARMS: &str = "gaps.alarms";
const EVENTS: &str = "gaps.events";
/// Numbers published, in chunks of `CHUNK` every 200 ms: about 8 s of data,
/// four times the spool's age bound.
const MESSAGES: u64 = 400;
const CHUNK: u64 = 10;

/// A counter of the agent's status page, e.g. `edge_agent_readings_dropped_age_total`.
fn counter(metrics: &str, name: &str) -> Option<u64> {
    metrics
        .lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
}

#[test]
fn readings_dropped_by_the_age_bound_arrive_as_gap_events() -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let broker = Mosquitto::start(logs.path())?;
    let tansu = Tansu::start(logs.path())?;
    for topic in [READINGS, ALARMS, EVENTS] {
        tansu.create_topic(topic)?;
    }
    let relay_port = free_port()?;
    let status_port = free_port()?;
    // Not the default operations port: tests run in parallel.
    let ops_port = free_port()?;
    let relay_config = work.path().join("relay.toml");
    std::fs::write(
        &relay_config,
        format!(
            r#"listen = "127.0.0.1:{relay_port}"
data_dir = {:?}
[[gateways]]
id = "{GATEWAY}"
token = "{TOKEN}"
[kafka]
brokers = ["{}"]
readings_topic = "{READINGS}"
alarms_topic = "{ALARMS}"
events_topic = "{EVENTS}"
delivery_timeout_ms = 5000
[ops]
listen = "127.0.0.1:{ops_port}"
"#,
            work.path().join("relay"),
            tansu.bootstrap(),
        ),
    )?;
    let agent_config = work.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            r#"gateway_id = "{GATEWAY}"
[spool]
path = {:?}
max_age_s = 2
[batch]
max_readings = 20
max_age_ms = 100
[uplink]
url = "http://127.0.0.1:{relay_port}/v1/batches"
token = "{TOKEN}"
retry_initial_ms = 100
retry_max_ms = 500
[status]
listen = "127.0.0.1:{status_port}"
[[mqtt]]
host = "127.0.0.1"
port = {}
protocol = "5"
client_id = "{GATEWAY}"
clean_session = false
[[mqtt.subscriptions]]
topic = "gap/+"
qos = 1
series = "gap.{{2}}"
"#,
            work.path().join("spool.db"),
            broker.port
        ),
    )?;
    let args = ["run", "--config", &agent_config.display().to_string()].map(String::from);
    let agent = spawn("edge-agent", &agent_binary()?, &args, logs.path())?;
    let status = format!("http://127.0.0.1:{status_port}/metrics");
    wait_until("agent status page", Duration::from_secs(30), || {
        http_get(&status).is_ok()
    })
    .with_context(|| agent.log_tail())?;
    // The subscription is live once a first message is counted.
    wait_until(
        "the agent's MQTT subscription",
        Duration::from_secs(30),
        || {
            let _ = broker.publish("gap/s", "0", 1);
            http_get(&status).is_ok_and(|m| {
                counter(&m, "edge_agent_readings_spooled_total").is_some_and(|n| n > 0)
            })
        },
    )
    .with_context(|| agent.log_tail())?;

    // The stream, with the relay down: the spool drops what is over 2 s old.
    for chunk in 0..MESSAGES / CHUNK {
        let lines: Vec<String> = (chunk * CHUNK + 1..=(chunk + 1) * CHUNK)
            .map(|n| n.to_string())
            .collect();
        broker.publish_lines("gap/s", &lines, 1)?;
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut dropped_by_agent = 0;
    wait_until(
        "the agent to commit every message",
        Duration::from_secs(30),
        || {
            let m = http_get(&status).unwrap_or_default();
            dropped_by_agent = counter(&m, "edge_agent_readings_dropped_age_total").unwrap_or(0);
            dropped_by_agent > 0
                && counter(&m, "edge_agent_readings_spooled_total") > Some(MESSAGES)
        },
    )
    .with_context(|| agent.log_tail())?;

    // The relay comes up; the backlog and the gap batches drain.
    let args = ["--config", &relay_config.display().to_string()].map(String::from);
    let relay = spawn("edge-relay", &relay_binary()?, &args, logs.path())?;
    let mut spooled = 0;
    let drained = wait_until("the spool to drain", Duration::from_secs(60), || {
        let m = http_get(&status).unwrap_or_default();
        spooled = counter(&m, "edge_agent_readings_spooled_total").unwrap_or(0);
        counter(&m, "edge_agent_spool_batches") == Some(0)
    });
    drained
        .with_context(|| format!("agent:\n{}\nrelay:\n{}", agent.log_tail(), relay.log_tail()))?;

    // What a cloud consumer sees.
    let mut delivered: BTreeMap<u64, (u64, i64)> = BTreeMap::new();
    let messages = tansu.read_topic(READINGS)?;
    for m in &messages {
        let n = m["value"]["value"].as_f64().context("reading value")? as u64;
        let ts = m["value"]["ts_us"].as_i64().context("reading ts_us")?;
        delivered.entry(n).or_insert((0, ts)).0 += 1;
    }
    let events = tansu.read_topic(EVENTS)?;
    ensure!(!events.is_empty(), "no gap event in {EVENTS}");
    let mut gap_readings = 0;
    let mut intervals = Vec::new();
    for e in &events {
        let v = &e["value"];
        ensure!(v["schema"] == "edge.event.v1" && v["event"] == "gap", "{v}");
        ensure!(v["gateway"] == GATEWAY && e["key"] == GATEWAY, "{e}");
        ensure!(e["headers"]["schema"] == "edge.event.v1", "{e}");
        ensure!(v["reason"] == "max_age", "{v}");
        let (first, last) = (v["first_us"].as_i64(), v["last_us"].as_i64());
        let (first, last) = (first.context("first_us")?, last.context("last_us")?);
        ensure!(first <= last, "{v}");
        gap_readings += v["readings"].as_u64().context("readings")?;
        intervals.push((first, last));
    }

    // Numbers 1..=MESSAGES were published once each (0 is the warm-up,
    // published until the agent counted one).
    let duplicates: Vec<_> = delivered
        .iter()
        .filter(|(n, (c, _))| **n > 0 && *c > 1)
        .collect();
    ensure!(duplicates.is_empty(), "duplicates: {duplicates:?}");
    // Every reading the agent accepted is in Kafka or counted by a gap event.
    ensure!(
        messages.len() as u64 + gap_readings == spooled,
        "{} readings in {READINGS} + {gap_readings} in gap events != {spooled} the agent accepted",
        messages.len()
    );
    ensure!(
        gap_readings == dropped_by_agent,
        "gap events count {gap_readings}, the agent counted {dropped_by_agent} dropped"
    );
    let missing = (1..=MESSAGES)
        .filter(|n| !delivered.contains_key(n))
        .count() as u64;
    ensure!(
        missing > 0 && missing < MESSAGES && missing <= gap_readings,
        "the age bound should drop some but not all numbers ({missing} missing, {gap_readings} in gaps)"
    );
    // No delivered reading lies inside a gap (one series: batches do not
    // overlap in time), so the intervals say exactly what is missing.
    for (n, (_, ts)) in &delivered {
        ensure!(
            !intervals.iter().any(|(a, b)| (a..=b).contains(&ts)),
            "delivered reading {n} at {ts} lies inside a gap {intervals:?}"
        );
    }
    // The newest readings survived: the bound drops the oldest.
    ensure!(
        delivered.contains_key(&MESSAGES),
        "the last number is missing"
    );
    println!(
        "gaps: {} of {} readings delivered, {gap_readings} reported in {} gap events",
        messages.len(),
        spooled,
        events.len()
    );
    Ok(())
}
