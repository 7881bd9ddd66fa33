//! Chaos: the real `edge-agent` and `edge-relay` binaries as processes,
//! with tansu (Kafka, on SQLite storage so it keeps its messages across a
//! restart) and VictoriaMetrics, while the test kills things.
//!
//! The source is MQTT: numbered QoS 1 messages (1..=N on each of a few
//! series) published to Mosquitto while the agent holds a persistent MQTT 5
//! session, so the set of readings that must arrive is known exactly.
//! During the stream the test SIGKILLs and restarts the agent many times,
//! SIGKILLs the relay several times (once leaving it down for a while, so
//! the spool holds a backlog that drains afterwards), and stops and
//! restarts tansu once while the relay runs (deliveries fail with 503 and
//! are retried). At the end every number of every series must be in Kafka
//! (0 lost) and in VictoriaMetrics.
//!
//! Duplicates seen by a Kafka consumer are counted and bounded; they come
//! from two known windows, each bounded by construction:
//! - an agent killed after committing readings to its spool but before its
//!   PUBACK reached the broker: the broker sends those messages again. At
//!   most the unacknowledged window, which the agent caps at 100 messages
//!   (MQTT 5 Receive Maximum), per agent kill;
//! - a relay or tansu failure in the middle of a delivery: the messages of
//!   the batches that reached Kafka are published again on retry (the
//!   relay's ledger only skips batches that were delivered whole). At most
//!   `max_in_flight` batches of `max_readings` per relay kill and tansu
//!   restart.
//!
//! Parameters (environment, for a longer run at night or by hand):
//! `EDGE_CHAOS_AGENT_KILLS` (default 20), `EDGE_CHAOS_RELAY_KILLS` (5),
//! `EDGE_CHAOS_MESSAGES` per series (1000), `EDGE_CHAOS_SEED` (random; the
//! seed is printed so a failing run can be repeated). A nightly run:
//! `EDGE_CHAOS_AGENT_KILLS=200 EDGE_CHAOS_RELAY_KILLS=40 EDGE_CHAOS_MESSAGES=20000
//! cargo test -p edge-tests --test e2e chaos -- --nocapture`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use edge_tests::{
    agent_binary, free_port, relay_answers, relay_binary, spawn, wait_until, Mosquitto, Service,
    Tansu, Victoria,
};

const GATEWAY: &str = "chaos-gw";
const TOKEN: &str = "chaos-token-0123456789abcdef";
const READINGS: &str = "chaos.readings";
const ALARMS: &str = "chaos.alarms";
const SERIES: [&str; 3] = ["s0", "s1", "s2"];
/// The agent's batch size, which bounds the duplicates of a failed delivery.
const MAX_READINGS: u64 = 50;
/// Batches the agent's forwarder keeps in flight.
const MAX_IN_FLIGHT: u64 = 4;
/// The agent's MQTT 5 Receive Maximum: unacknowledged messages per session.
const RECEIVE_MAXIMUM: u64 = 100;

struct Params {
    agent_kills: u32,
    relay_kills: u32,
    messages: u64,
    seed: u64,
}

impl Params {
    fn from_env() -> anyhow::Result<Params> {
        let get = |name: &str, default: u64| -> anyhow::Result<u64> {
            match std::env::var(name) {
                Ok(v) => v
                    .parse()
                    .with_context(|| format!("{name}={v:?} is not a number")),
                Err(_) => Ok(default),
            }
        };
        Ok(Params {
            agent_kills: get("EDGE_CHAOS_AGENT_KILLS", 20)? as u32,
            relay_kills: get("EDGE_CHAOS_RELAY_KILLS", 5)?.max(1) as u32,
            messages: get("EDGE_CHAOS_MESSAGES", 1000)?,
            seed: get("EDGE_CHAOS_SEED", fastrand::u64(..))?,
        })
    }
}

/// The readings in Kafka: per series, how often each number arrived.
fn kafka_counts(tansu: &Tansu) -> anyhow::Result<BTreeMap<String, BTreeMap<u64, u64>>> {
    let mut counts: BTreeMap<String, BTreeMap<u64, u64>> = BTreeMap::new();
    for m in tansu.read_topic(READINGS)? {
        let series = m["value"]["series"].as_str().unwrap_or("?").to_string();
        let n = m["value"]["value"].as_f64().unwrap_or(-1.0) as u64;
        *counts.entry(series).or_default().entry(n).or_default() += 1;
    }
    Ok(counts)
}

/// Numbers 1..=n missing from one series' counts.
fn missing(counts: Option<&BTreeMap<u64, u64>>, n: u64) -> Vec<u64> {
    (1..=n)
        .filter(|k| counts.is_none_or(|c| !c.contains_key(k)))
        .collect()
}

struct Plant<'a> {
    logs: &'a Path,
    agent_config: String,
    relay_config: String,
    relay_port: u16,
}

impl Plant<'_> {
    fn start_agent(&self) -> anyhow::Result<Service> {
        let args = ["run", "--config", &self.agent_config].map(String::from);
        spawn("edge-agent", &agent_binary()?, &args, self.logs)
    }

    fn start_relay(&self) -> anyhow::Result<Service> {
        let args = ["--config", &self.relay_config].map(String::from);
        let relay = spawn("edge-relay", &relay_binary()?, &args, self.logs)?;
        wait_until(
            "edge-relay answers uploads",
            Duration::from_secs(30),
            || relay_answers(self.relay_port),
        )
        .with_context(|| relay.log_tail())?;
        Ok(relay)
    }
}

#[test]
fn nothing_is_lost_when_agent_relay_and_kafka_are_killed() -> anyhow::Result<()> {
    let p = Params::from_env()?;
    fastrand::seed(p.seed);
    println!(
        "chaos: seed {} (EDGE_CHAOS_SEED), {} agent kills, {} relay kills, {} messages on each of {} series",
        p.seed,
        p.agent_kills,
        p.relay_kills,
        p.messages,
        SERIES.len()
    );
    let logs = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let broker = Mosquitto::start(logs.path())?;
    let vm = Victoria::start(logs.path())?;
    let kafka_port = free_port()?;
    // tansu takes the URL's path without its leading slash: four slashes
    // for an absolute path.
    let storage = format!("sqlite:///{}", work.path().join("tansu.db").display());
    let mut tansu = Tansu::start_with(logs.path(), kafka_port, &storage)?;
    tansu.create_topic(READINGS)?;
    tansu.create_topic(ALARMS)?;

    let relay_port = free_port()?;
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
delivery_timeout_ms = 5000
[timeseries]
url = "{}"
[ops]
listen = "127.0.0.1:0"
"#,
            work.path().join("relay"),
            tansu.bootstrap(),
            vm.write_url()
        ),
    )?;
    let agent_config = work.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            r#"gateway_id = "{GATEWAY}"
[spool]
path = {:?}
[batch]
max_readings = {MAX_READINGS}
max_age_ms = 100
[uplink]
url = "http://127.0.0.1:{relay_port}/v1/batches"
token = "{TOKEN}"
retry_initial_ms = 100
retry_max_ms = 1000
max_in_flight = {MAX_IN_FLIGHT}
[[mqtt]]
host = "127.0.0.1"
port = {}
protocol = "5"
client_id = "{GATEWAY}"
clean_session = false
[[mqtt.subscriptions]]
topic = "chaos/+"
qos = 1
series = "chaos.{{2}}"
"#,
            work.path().join("spool.db"),
            broker.port
        ),
    )?;
    let plant = Plant {
        logs: logs.path(),
        agent_config: agent_config.display().to_string(),
        relay_config: relay_config.display().to_string(),
        relay_port,
    };
    let mut relay = plant.start_relay()?;
    let mut agent = plant.start_agent()?;
    // The persistent session exists once a warm-up message (0) is in Kafka.
    wait_until(
        "a warm-up message in Kafka",
        Duration::from_secs(60),
        || {
            let _ = broker.publish("chaos/s0", "0", 1);
            kafka_counts(&tansu)
                .is_ok_and(|c| c.get("chaos.s0").is_some_and(|s| s.contains_key(&0)))
        },
    )
    .with_context(|| format!("agent:\n{}\nrelay:\n{}", agent.log_tail(), relay.log_tail()))?;

    // The stream: each series in chunks, paced so the kills fall during it.
    let chunks = 20u64;
    let chaos_started = Instant::now();
    std::thread::scope(|s| -> anyhow::Result<()> {
        let publisher = s.spawn(|| -> anyhow::Result<()> {
            for chunk in 0..chunks {
                for series in SERIES {
                    let lines: Vec<String> = (chunk * p.messages / chunks + 1
                        ..=(chunk + 1) * p.messages / chunks)
                        .map(|n| n.to_string())
                        .collect();
                    broker.publish_lines(&format!("chaos/{series}"), &lines, 1)?;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Ok(())
        });

        // The kills, in a random order with random pauses: agent kills,
        // relay kills (the first leaves it down for 5 s: a backlog), and one
        // tansu restart.
        #[derive(Debug, Clone, Copy)]
        enum Kill {
            Agent,
            Relay { down: Duration },
            Kafka,
        }
        let mut kills: Vec<Kill> = (0..p.agent_kills).map(|_| Kill::Agent).collect();
        kills.push(Kill::Relay {
            down: Duration::from_secs(5),
        });
        kills.extend((1..p.relay_kills).map(|_| Kill::Relay {
            down: Duration::from_millis(fastrand::u64(0..1000)),
        }));
        kills.push(Kill::Kafka);
        fastrand::shuffle(&mut kills);
        for kill in kills {
            std::thread::sleep(Duration::from_millis(fastrand::u64(200..1200)));
            match kill {
                Kill::Agent => {
                    agent.kill()?;
                    agent = plant.start_agent()?;
                }
                Kill::Relay { down } => {
                    relay.kill()?;
                    std::thread::sleep(down);
                    relay = plant.start_relay()?;
                }
                Kill::Kafka => {
                    tansu.service.kill()?;
                    std::thread::sleep(Duration::from_secs(2));
                    tansu = Tansu::start_with(logs.path(), kafka_port, &storage)?;
                }
            }
        }
        publisher
            .join()
            .map_err(|_| anyhow::anyhow!("publisher panicked"))??;
        Ok(())
    })?;
    println!(
        "chaos: kills done after {:.1} s; waiting for the backlog to drain",
        chaos_started.elapsed().as_secs_f64()
    );

    // Everything arrives in Kafka. tansu itself is not under test: if it
    // dies or stops answering on its own (seen once in CI after its
    // restart), it is restarted on the same storage, which is one more Kafka
    // restart of the kind the plant must survive, and said so.
    let mut counts = BTreeMap::new();
    let mut read_error = None;
    let mut unreachable_since: Option<Instant> = None;
    let mut tansu_restarts = Vec::new();
    let drained = wait_until("every number in Kafka", Duration::from_secs(240), || {
        match kafka_counts(&tansu) {
            Ok(c) => {
                counts = c;
                read_error = None;
                unreachable_since = None;
            }
            Err(e) => {
                read_error = Some(format!("{e:#}"));
                let since = *unreachable_since.get_or_insert_with(Instant::now);
                let exited = tansu.service.exit_status();
                if (exited.is_some() || since.elapsed() > Duration::from_secs(30))
                    && tansu_restarts.len() < 2
                {
                    let why = format!(
                        "tansu {} ({e:#}); its log:\n{}",
                        exited.map_or("stopped answering for 30 s".into(), |s| format!(
                            "exited by itself ({s})"
                        )),
                        tansu.service.log_tail()
                    );
                    println!("chaos: restarting tansu: {why}");
                    let _ = tansu.service.kill();
                    match Tansu::start_with(logs.path(), kafka_port, &storage) {
                        Ok(t) => tansu = t,
                        Err(e) => println!("chaos: tansu did not start again: {e:#}"),
                    }
                    tansu_restarts.push(why);
                    unreachable_since = None;
                }
            }
        }
        SERIES
            .iter()
            .all(|s| missing(counts.get(&format!("chaos.{s}")), p.messages).is_empty())
    });
    let mut report = Vec::new();
    let mut duplicates = 0u64;
    for s in SERIES {
        let series = format!("chaos.{s}");
        let c = counts.get(&series);
        let gone = missing(c, p.messages);
        if !gone.is_empty() {
            report.push(format!(
                "{series}: {} of {} missing, first {:?}",
                gone.len(),
                p.messages,
                &gone[..gone.len().min(10)]
            ));
        }
        duplicates += c.map_or(0, |c| {
            c.iter().filter(|(&n, _)| n >= 1).map(|(_, &k)| k - 1).sum()
        });
    }
    ensure!(
        drained.is_ok() && report.is_empty(),
        "readings lost:\n{}\nlast Kafka read error: {}\ntansu restarted by the test: {:?}\nagent:\n{}\nrelay:\n{}\ntansu:\n{}",
        report.join("\n"),
        read_error.as_deref().unwrap_or("none"),
        tansu_restarts,
        agent.log_tail(),
        relay.log_tail(),
        tansu.service.log_tail()
    );

    // Written to a file, not a terminal: the logs carry no colour codes.
    for (name, log) in [("agent", agent.log()), ("relay", relay.log())] {
        ensure!(
            !log.contains('\x1b'),
            "{name} log to a file holds ANSI escape codes:\n{}",
            &log[..log.len().min(2000)]
        );
    }

    // Duplicates stay within the windows the module doc names.
    let bound =
        u64::from(p.agent_kills) * RECEIVE_MAXIMUM + u64::from(p.relay_kills + 1) * MAX_READINGS;
    println!(
        "chaos: 0 lost; {duplicates} duplicate readings in Kafka (bound {bound}); total {:.1} s",
        chaos_started.elapsed().as_secs_f64()
    );
    ensure!(
        duplicates <= bound,
        "{duplicates} duplicates exceed the bound of {bound}"
    );

    // VictoriaMetrics holds every number too (it keeps one point per
    // series and timestamp, so duplicates collapse there).
    for s in SERIES {
        let exported = vm.export(&format!(r#"edge_value{{series="chaos.{s}"}}"#))?;
        let mut values: Vec<u64> = exported
            .iter()
            .flat_map(|e| e["values"].as_array().cloned().unwrap_or_default())
            .filter_map(|v| v.as_f64())
            .map(|v| v as u64)
            .filter(|&v| v >= 1)
            .collect();
        values.sort_unstable();
        values.dedup();
        ensure!(
            values.len() as u64 == p.messages,
            "VictoriaMetrics holds {} of {} numbers of chaos.{s}",
            values.len(),
            p.messages
        );
    }
    drop(agent);
    drop(relay);
    Ok(())
}
