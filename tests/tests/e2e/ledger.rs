//! The delivered-batch ledger from outside: the real `edge-agent` and
//! `edge-relay` binaries, tansu as Kafka (read back with kafka-python),
//! Mosquitto as the source (numbered QoS 1 messages, so the readings that
//! must arrive are known exactly), PostgreSQL at 127.0.0.1:5432.
//!
//! - `a_reinstalled_agent_loses_nothing`: the agent delivers, its spool is
//!   deleted (as a purge and reinstall would), it runs again under the same
//!   gateway id; its sequence numbers start again at 1, and every reading of
//!   the second life must reach Kafka (before spool instance ids the relay
//!   answered them "duplicate" and stored nothing).
//! - `a_fleet_sharing_the_postgres_ledger_publishes_each_batch_once`: two
//!   relays on one PostgreSQL ledger behind a round-robin TCP proxy that
//!   also loses answers (the relay delivered, the agent never hears it and
//!   retries, on the other relay). Phase 1, no kills: every reading exactly
//!   once. Phase 2, relays SIGKILLed and restarted during the stream: nothing
//!   lost, duplicates within the stated bound (a relay killed while a batch
//!   is half published to Kafka, or after the sinks acknowledged it and
//!   before the ledger commit: at most the batches in flight, `max_in_flight`
//!   × `max_readings` readings, per kill).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use edge_tests::proxy::RoundRobin;
use edge_tests::{
    agent_binary, free_port, relay_answers, relay_binary, spawn, wait_until, Mosquitto, Service,
    Tansu,
};

const TOKEN: &str = "ledger-token-0123456789abcdef";
const READINGS: &str = "ledger.readings";
const ALARMS: &str = "ledger.alarms";
const SERIES: [&str; 2] = ["s0", "s1"];
const MAX_READINGS: u64 = 25;
const MAX_IN_FLIGHT: u64 = 4;

/// Per series, how often each number arrived; and every (instance, seq)
/// seen per series number, to tell the agent's lives apart.
struct Seen {
    counts: BTreeMap<String, BTreeMap<u64, u64>>,
    /// (spool_instance header, batch_seq, number) of each reading message.
    batches: Vec<(String, u64, u64)>,
    /// Reading messages flagged `batch_conflict`.
    conflicts: u64,
}

fn seen(tansu: &Tansu) -> anyhow::Result<Seen> {
    let mut counts: BTreeMap<String, BTreeMap<u64, u64>> = BTreeMap::new();
    let mut batches = Vec::new();
    let mut conflicts = 0;
    for m in tansu.read_topic(READINGS)? {
        if m["headers"]["batch_conflict"] == "true" {
            conflicts += 1;
        }
        let series = m["value"]["series"].as_str().unwrap_or("?").to_string();
        let n = m["value"]["value"].as_f64().unwrap_or(-1.0) as u64;
        *counts.entry(series).or_default().entry(n).or_default() += 1;
        let instance = m["headers"]["spool_instance"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let seq = m["value"]["batch_seq"].as_u64().unwrap_or(0);
        batches.push((instance, seq, n));
    }
    Ok(Seen {
        counts,
        batches,
        conflicts,
    })
}

impl Seen {
    /// Numbers in `range` missing from any series.
    fn missing(&self, range: std::ops::RangeInclusive<u64>) -> Vec<(String, u64)> {
        let mut gone = Vec::new();
        for s in SERIES {
            let series = format!("ledger.{s}");
            let c = self.counts.get(&series);
            for n in range.clone() {
                if c.is_none_or(|c| !c.contains_key(&n)) {
                    gone.push((series.clone(), n));
                }
            }
        }
        gone
    }

    /// Readings in `range` that arrived more than once (extra copies).
    fn duplicates(&self, range: std::ops::RangeInclusive<u64>) -> u64 {
        self.counts
            .values()
            .flat_map(|c| c.iter())
            .filter(|(n, _)| range.contains(n))
            .map(|(_, &k)| k.saturating_sub(1))
            .sum()
    }
}

fn agent_config(gateway: &str, spool: &Path, uplink_port: u16, mqtt_port: u16) -> String {
    format!(
        r#"gateway_id = "{gateway}"
[spool]
path = {spool:?}
[batch]
max_readings = {MAX_READINGS}
max_age_ms = 100
[uplink]
url = "http://127.0.0.1:{uplink_port}/v1/batches"
token = "{TOKEN}"
retry_initial_ms = 100
retry_max_ms = 1000
max_in_flight = {MAX_IN_FLIGHT}
timeout_ms = 5000
[[mqtt]]
host = "127.0.0.1"
port = {mqtt_port}
protocol = "5"
client_id = "{gateway}"
clean_session = false
[[mqtt.subscriptions]]
topic = "{gateway}/+"
qos = 1
series = "ledger.{{2}}"
"#
    )
}

fn relay_config(gateway: &str, port: u16, data_dir: &Path, brokers: &str, dedup: &str) -> String {
    format!(
        r#"listen = "127.0.0.1:{port}"
data_dir = {data_dir:?}
[[gateways]]
id = "{gateway}"
token = "{TOKEN}"
[kafka]
brokers = ["{brokers}"]
readings_topic = "{READINGS}"
alarms_topic = "{ALARMS}"
delivery_timeout_ms = 5000
{dedup}
[ops]
listen = "127.0.0.1:0"
"#
    )
}

fn start_relay(config: &Path, port: u16, logs: &Path) -> anyhow::Result<Service> {
    let args = ["--config".to_string(), config.display().to_string()];
    let relay = spawn("edge-relay", &relay_binary()?, &args, logs)?;
    wait_until(
        "edge-relay answers uploads",
        Duration::from_secs(30),
        || relay_answers(port),
    )
    .with_context(|| relay.log_tail())?;
    Ok(relay)
}

fn start_agent(config: &Path, logs: &Path) -> anyhow::Result<Service> {
    let args = ["run", "--config", &config.display().to_string()].map(String::from);
    spawn("edge-agent", &agent_binary()?, &args, logs)
}

/// Publish `range` on every series of `gateway`.
fn publish(
    broker: &Mosquitto,
    gateway: &str,
    range: std::ops::RangeInclusive<u64>,
) -> anyhow::Result<()> {
    let lines: Vec<String> = range.map(|n| n.to_string()).collect();
    for s in SERIES {
        broker.publish_lines(&format!("{gateway}/{s}"), &lines, 1)?;
    }
    Ok(())
}

/// Publish the warm-up number `n` until it is in Kafka: the agent is then
/// subscribed and forwarding.
fn warm_up(
    broker: &Mosquitto,
    tansu: &Tansu,
    gateway: &str,
    n: u64,
    agent: &Service,
) -> anyhow::Result<()> {
    wait_until(
        "a warm-up reading in Kafka",
        Duration::from_secs(90),
        || {
            let _ = broker.publish(&format!("{gateway}/s0"), &n.to_string(), 1);
            seen(tansu).is_ok_and(|s| {
                s.counts
                    .get("ledger.s0")
                    .is_some_and(|c| c.contains_key(&n))
            })
        },
    )
    .with_context(|| agent.log_tail())
}

#[test]
fn a_reinstalled_agent_loses_nothing() -> anyhow::Result<()> {
    const GATEWAY: &str = "reinstalled-gw";
    let logs = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let broker = Mosquitto::start(logs.path())?;
    let tansu = Tansu::start(logs.path())?;
    tansu.create_topic(READINGS)?;
    tansu.create_topic(ALARMS)?;
    let relay_port = free_port()?;
    let relay_toml = work.path().join("relay.toml");
    std::fs::write(
        &relay_toml,
        relay_config(
            GATEWAY,
            relay_port,
            &work.path().join("relay"),
            &tansu.bootstrap(),
            "",
        ),
    )?;
    let _relay = start_relay(&relay_toml, relay_port, logs.path())?;
    let spool = work.path().join("spool.db");
    let agent_toml = work.path().join("agent.toml");
    std::fs::write(
        &agent_toml,
        agent_config(GATEWAY, &spool, relay_port, broker.port),
    )?;

    // First life: 1..=200 on each series.
    let mut agent = start_agent(&agent_toml, logs.path())?;
    warm_up(&broker, &tansu, GATEWAY, 0, &agent)?;
    publish(&broker, GATEWAY, 1..=200)?;
    let mut last = None;
    wait_until("the first life in Kafka", Duration::from_secs(120), || {
        last = seen(&tansu).ok();
        last.as_ref().is_some_and(|s| s.missing(1..=200).is_empty())
    })
    .with_context(|| agent.log_tail())?;
    let first = last.take().unwrap();

    // The reinstall: the agent stopped, its spool deleted.
    agent.terminate(Duration::from_secs(20))?;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", spool.display()));
    }
    ensure!(!spool.exists());

    // Second life, same gateway id: 1001..=1200.
    let agent = start_agent(&agent_toml, logs.path())?;
    warm_up(&broker, &tansu, GATEWAY, 1000, &agent)?;
    publish(&broker, GATEWAY, 1001..=1200)?;
    let arrived = wait_until("the second life in Kafka", Duration::from_secs(120), || {
        last = seen(&tansu).ok();
        last.as_ref()
            .is_some_and(|s| s.missing(1001..=1200).is_empty())
    });
    let after = last.context("Kafka could not be read")?;
    let gone = after.missing(1001..=1200);
    ensure!(
        arrived.is_ok() && gone.is_empty(),
        "{} readings of the second life missing, first {:?}\nagent:\n{}",
        gone.len(),
        &gone[..gone.len().min(10)],
        agent.log_tail()
    );

    // The test is about the collision: the second life's batches reused
    // the first life's sequence numbers, under another spool instance.
    let instances = |s: &Seen, range: std::ops::RangeInclusive<u64>| {
        let mut v: Vec<(String, u64)> = s
            .batches
            .iter()
            .filter(|(_, _, n)| range.contains(n))
            .map(|(i, seq, _)| (i.clone(), *seq))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    let one = instances(&first, 0..=200);
    let two = instances(&after, 1000..=1200);
    let seqs_one: std::collections::BTreeSet<u64> = one.iter().map(|(_, s)| *s).collect();
    let reused = two.iter().filter(|(_, s)| seqs_one.contains(s)).count();
    ensure!(reused > 0, "second life reused no seq: {one:?} {two:?}");
    let (i1, i2) = (&one[0].0, &two[0].0);
    ensure!(
        i1.len() == 16 && i2.len() == 16 && i1 != i2,
        "spool instances {i1:?} and {i2:?} must be 16 hex digits and differ"
    );
    ensure!(
        after.duplicates(1..=200) + after.duplicates(1001..=1200) == 0,
        "duplicates after a reinstall"
    );
    // New batches because of their new instance, not published as
    // conflicts of the old spool's.
    ensure!(
        after.conflicts == 0,
        "{} readings flagged as conflicts",
        after.conflicts
    );
    println!(
        "reinstall: first life {} batches, second life {} batches, {reused} of them reusing a first-life seq; 400 of 400 second-life readings in Kafka, 0 duplicates",
        one.len(),
        two.len()
    );
    Ok(())
}

/// A schema of its own on the PostgreSQL test server, dropped at the end.
struct Schema {
    name: String,
}

impl Schema {
    fn new() -> anyhow::Result<Schema> {
        let name = format!("ledger_e2e_{}_{}", std::process::id(), fastrand::u32(..));
        psql(&format!("CREATE SCHEMA {name}"))?;
        Ok(Schema { name })
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}

fn psql(sql: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(
            "postgresql://postgres@127.0.0.1:5432/test",
            tokio_postgres::NoTls,
        )
        .await
        .context("PostgreSQL at 127.0.0.1:5432 (trust auth, database test) is needed")?;
        tokio::spawn(connection);
        client.batch_execute(sql).await?;
        Ok(())
    })
}

#[test]
fn a_fleet_sharing_the_postgres_ledger_publishes_each_batch_once() -> anyhow::Result<()> {
    const GATEWAY: &str = "fleet-gw";
    const PHASE1: u64 = 600;
    const PHASE2: u64 = 1200;
    const KILLS: u64 = 6;
    let logs = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let schema = Schema::new()?;
    let broker = Mosquitto::start(logs.path())?;
    let tansu = Tansu::start(logs.path())?;
    tansu.create_topic(READINGS)?;
    tansu.create_topic(ALARMS)?;
    let dedup = format!(
        "[dedup]\nstore = \"postgres\"\nurl = \"postgresql://postgres@127.0.0.1:5432/test\"\n\
         table = \"{}.ledger\"\nclaim_lease_secs = 8\nprune_interval_secs = 5\n",
        schema.name
    );
    let ports = [free_port()?, free_port()?];
    let configs: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| -> anyhow::Result<_> {
            let path = work.path().join(format!("relay-{i}.toml"));
            std::fs::write(
                &path,
                relay_config(
                    GATEWAY,
                    *port,
                    &work.path().join(format!("relay-{i}")),
                    &tansu.bootstrap(),
                    &dedup,
                ),
            )?;
            Ok(path)
        })
        .collect::<anyhow::Result<_>>()?;
    let mut relays = vec![
        start_relay(&configs[0], ports[0], logs.path())?,
        start_relay(&configs[1], ports[1], logs.path())?,
    ];
    // Every 7th chunk coming back from a relay is lost.
    let proxy = RoundRobin::start(&ports, Some(7))?;
    let agent_toml = work.path().join("agent.toml");
    std::fs::write(
        &agent_toml,
        agent_config(
            GATEWAY,
            &work.path().join("spool.db"),
            proxy.port,
            broker.port,
        ),
    )?;
    let agent = start_agent(&agent_toml, logs.path())?;
    warm_up(&broker, &tansu, GATEWAY, 0, &agent)?;

    // Phase 1: answers lost, no kills. Each lost answer is a retry on the
    // other relay of a batch already delivered: exactly once in Kafka.
    for chunk in 0..6 {
        publish(&broker, GATEWAY, chunk * 100 + 1..=(chunk + 1) * 100)?;
        std::thread::sleep(Duration::from_millis(300));
    }
    let mut last = None;
    let phase1 = wait_until("phase 1 in Kafka", Duration::from_secs(180), || {
        last = seen(&tansu).ok();
        last.as_ref()
            .is_some_and(|s| s.missing(1..=PHASE1).is_empty())
    });
    let s1 = last.take().context("Kafka could not be read")?;
    let gone = s1.missing(1..=PHASE1);
    ensure!(
        phase1.is_ok() && gone.is_empty(),
        "phase 1: {} readings missing, first {:?}\nagent:\n{}",
        gone.len(),
        &gone[..gone.len().min(10)],
        agent.log_tail()
    );
    let lost_answers = proxy.answers_lost();
    let routed = proxy.routed();
    let dup1 = s1.duplicates(1..=PHASE1);
    ensure!(
        lost_answers > 0,
        "the proxy lost no answer: nothing was retried"
    );
    ensure!(
        routed.iter().all(|&n| n > 0),
        "one relay got nothing: {routed:?}"
    );
    ensure!(
        dup1 == 0,
        "phase 1: {dup1} duplicate readings with {lost_answers} lost answers (connections per relay {routed:?})"
    );

    // Phase 2: relays SIGKILLed and restarted while the stream goes on.
    let started = Instant::now();
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let publisher = scope.spawn(|| -> anyhow::Result<()> {
            for chunk in 0..12 {
                let base = PHASE1 + chunk * (PHASE2 - PHASE1) / 12;
                publish(&broker, GATEWAY, base + 1..=base + (PHASE2 - PHASE1) / 12)?;
                std::thread::sleep(Duration::from_millis(400));
            }
            Ok(())
        });
        for k in 0..KILLS as usize {
            std::thread::sleep(Duration::from_millis(fastrand::u64(200..900)));
            let i = k % 2;
            relays[i].kill()?;
            std::thread::sleep(Duration::from_millis(fastrand::u64(0..800)));
            relays[i] = start_relay(&configs[i], ports[i], logs.path())?;
        }
        publisher
            .join()
            .map_err(|_| anyhow::anyhow!("publisher panicked"))??;
        Ok(())
    })?;
    let phase2 = wait_until("phase 2 in Kafka", Duration::from_secs(240), || {
        last = seen(&tansu).ok();
        last.as_ref()
            .is_some_and(|s| s.missing(1..=PHASE2).is_empty())
    });
    let s2 = last.take().context("Kafka could not be read")?;
    let gone = s2.missing(1..=PHASE2);
    ensure!(
        phase2.is_ok() && gone.is_empty(),
        "phase 2: {} readings missing, first {:?}\nagent:\n{}\nrelay 0:\n{}\nrelay 1:\n{}",
        gone.len(),
        &gone[..gone.len().min(10)],
        agent.log_tail(),
        relays[0].log_tail(),
        relays[1].log_tail()
    );
    let dup2 = s2.duplicates(PHASE1 + 1..=PHASE2);
    let bound = KILLS * MAX_IN_FLIGHT * MAX_READINGS;
    println!(
        "fleet: phase 1 {PHASE1} readings per series, {lost_answers} answers lost, connections per relay {routed:?}, 0 lost, {dup1} duplicates; \
         phase 2 {} readings per series, {KILLS} relay SIGKILLs, 0 lost, {dup2} duplicate readings (bound {bound}), {} answers lost in all, {:.1} s",
        PHASE2 - PHASE1,
        proxy.answers_lost(),
        started.elapsed().as_secs_f64()
    );
    ensure!(
        dup2 <= bound,
        "phase 2: {dup2} duplicates exceed the bound {bound}"
    );
    ensure!(
        s2.duplicates(1..=PHASE1) == 0,
        "phase 1's readings were published again in phase 2"
    );
    drop(agent);
    drop(relays);
    drop(proxy);
    Ok(())
}
