//! `edge-bench-drain`: how fast the agent's forwarder drains a spooled
//! backlog into Kafka through the relay, in readings per second, with one
//! batch in flight (the baseline: one round trip per batch) and with the
//! default `[uplink] max_in_flight`, side by side in the same run.
//!
//! Everything is local and real: tansu (started as the end-to-end tests
//! start it, in-memory storage) as
//! the Kafka broker, the relay in-process with only its Kafka sink (a 2xx
//! means every reading's delivery report came back), and the forwarder over
//! loopback HTTP. The spool is filled before the clock starts; the clock
//! stops when the relay has acknowledged every batch and the forwarder has
//! removed it. A short unreported drain warms the relay's Kafka producer
//! up first. Each configuration forwards as its own gateway, so the
//! relay's duplicate ledger never short-cuts a batch.
//!
//! `scripts/bench --only drain` runs it; the figures are recorded in
//! `docs/BENCHMARKS.md`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use edge_agent::config::{UplinkConfig, DEFAULT_MAX_IN_FLIGHT};
use edge_agent::forward::Forwarder;
use edge_agent::spool::{Lane, SharedSpool, Spool};
use edge_agent::stats::AgentStats;
use edge_relay::config::{GatewayConfig, KafkaConfig, RelayConfig};
use edge_wire::{Batch, Point, Quality, Series};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const USAGE: &str = "usage: edge-bench-drain [--batches N] [--readings R]

  --batches N    batches in the backlog per configuration (default 500)
  --readings R   readings per batch, over 10 series (default 1000, the agent's default batch size)";

const READINGS_TOPIC: &str = "bench.readings";
const ALARMS_TOPIC: &str = "bench.alarms";
/// Each gateway's token is this followed by the gateway's name.
const TOKEN: &str = "bench-drain-token-0123456789-";

/// Batch `n` of a backlog: `readings` readings over 10 series, one second
/// apart from `t0_us` on. The relay refuses timestamps more than
/// `limits.max_past_hours` behind its clock (422, quarantined by the agent),
/// so `t0_us` is taken from the clock: fixed 2023 timestamps once made every
/// batch a rejection and the drain wait forever.
fn batch(gateway: &str, n: usize, readings: usize, t0_us: i64) -> Batch {
    let per_series = readings.div_ceil(10);
    let series = (0..10)
        .map(|s| Series {
            id: s,
            name: format!("line-1.press-{s}.oil_temp"),
            unit: "degC".into(),
            tags: [("site".to_string(), "plant-a".to_string())].into(),
            points: (0..per_series)
                .filter(|i| s as usize * per_series + i < readings)
                .map(|i| Point {
                    ts_us: t0_us + ((n * per_series + i) as i64) * 1_000_000,
                    value: 60.0 + (i % 17) as f64 * 0.25,
                    quality: Quality::Good,
                })
                .collect(),
            reporting: None,
        })
        .collect();
    Batch {
        gateway_id: gateway.into(),
        instance: None,
        seq: 0,
        created_us: t0_us,
        series,
        alarms: Vec::new(),
        gaps: Vec::new(),
        devices: Vec::new(),
    }
}

/// Fill a spool, then time the forwarder draining it; readings per second.
async fn drain(
    url: &str,
    gateway: &str,
    max_in_flight: usize,
    batches: usize,
    readings: usize,
) -> Result<(f64, Duration)> {
    let dir = tempfile::tempdir()?;
    let mut spool = Spool::open(&dir.path().join("spool.db"))?;
    // The backlog ends an hour ago at the latest: inside the relay's window.
    let span_us = (batches * readings.div_ceil(10)) as i64 * 1_000_000;
    let t0_us = now_us() - span_us - 3_600_000_000;
    for n in 0..batches {
        spool.append(&mut batch(gateway, n, readings, t0_us), &[], Lane::Readings)?;
    }
    eprintln!(
        "drain {gateway}: {batches} batches spooled, forwarding with max_in_flight {max_in_flight}"
    );
    let spool = SharedSpool::new(spool);
    let stats = Arc::new(AgentStats::default());
    let mut uplink = UplinkConfig::new(url, format!("{TOKEN}{gateway}"));
    uplink.max_in_flight = max_in_flight;
    uplink.retry_initial = Duration::from_millis(50);
    uplink.retry_max = Duration::from_millis(500);
    let forwarder = Forwarder {
        spool: spool.clone(),
        uplink,
        gateway_id: gateway.into(),
        stats: stats.clone(),
        wake: Arc::new(Notify::new()),
    };
    let stop = CancellationToken::new();
    let started = Instant::now();
    let task = tokio::spawn(forwarder.run(stop.clone()));
    let deadline = started + Duration::from_secs(300);
    while stats.batches_forwarded.get() < batches as u64 {
        // A rejected batch is quarantined, never forwarded: waiting longer
        // cannot help, so say so at once.
        if stats.batches_quarantined.get() > 0 {
            bail!(
                "drain {gateway}: the relay rejected {} batch(es) (quarantined); see its log above",
                stats.batches_quarantined.get()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "drain {gateway} (max_in_flight {max_in_flight}): {} of {batches} batches forwarded after 300 s, {} upload failures",
                stats.batches_forwarded.get(),
                stats.upload_failures.get()
            );
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let took = started.elapsed();
    stop.cancel();
    task.await?;
    if stats.upload_failures.get() > 0 {
        eprintln!(
            "note: max_in_flight {max_in_flight}: {} upload(s) failed and were retried",
            stats.upload_failures.get()
        );
    }
    let total = stats.readings_forwarded.get() as f64;
    Ok((total / took.as_secs_f64(), took))
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

fn main() -> Result<()> {
    let (mut batches, mut readings) = (500usize, 1000usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| -> Result<usize> {
            args.next()
                .and_then(|v| v.parse().ok())
                .with_context(|| format!("{name} needs a number\n{USAGE}"))
        };
        match a.as_str() {
            "--batches" => batches = value("--batches")?,
            "--readings" => readings = value("--readings")?,
            _ => bail!("unknown argument {a:?}\n{USAGE}"),
        }
    }
    let work = tempfile::tempdir()?;
    eprintln!("drain: starting tansu");
    let tansu = edge_tests::Tansu::start(work.path())?;
    for topic in [READINGS_TOPIC, ALARMS_TOPIC] {
        tansu.create_topic(topic)?;
    }
    eprintln!("drain: tansu up at {}, topics created", tansu.bootstrap());
    let configs = [1, DEFAULT_MAX_IN_FLIGHT];
    let rt = tokio::runtime::Runtime::new()?;
    let results = rt.block_on(async {
        let mut relay_config = RelayConfig::new(
            work.path(),
            ["warm-up".to_string()]
                .into_iter()
                .chain(configs.iter().map(|n| n.to_string()))
                .map(|n| {
                    GatewayConfig::with_token(
                        format!("bench-gw-{n}"),
                        &format!("{TOKEN}bench-gw-{n}"),
                    )
                })
                .collect(),
        );
        relay_config.data_dir = None;
        relay_config.dedup.path = Some(work.path().join("delivered.db"));
        relay_config.kafka = Some(KafkaConfig {
            readings_topic: READINGS_TOPIC.into(),
            alarms_topic: ALARMS_TOPIC.into(),
            events_topic: "edge.events.v1".into(),
            delivery_timeout: Duration::from_secs(30),
            ..KafkaConfig::new(vec![tansu.bootstrap()])
        });
        let relay = edge_relay::Relay::from_config(relay_config)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/v1/batches", listener.local_addr()?);
        let stop = CancellationToken::new();
        let serving = tokio::spawn(edge_relay::serve(listener, relay, stop.clone()));
        // Connections to tansu and its topic metadata are set up on the
        // first deliveries; a short unreported drain keeps that out of the
        // baseline.
        drain(&url, "bench-gw-warm-up", 1, 20, readings).await?;
        let mut results = Vec::new();
        for n in configs {
            results.push((
                n,
                drain(&url, &format!("bench-gw-{n}"), n, batches, readings).await?,
            ));
        }
        stop.cancel();
        let _ = serving.await;
        anyhow::Ok(results)
    })?;
    println!("Backlog per configuration: {batches} batches of {readings} readings ({} readings), relay with its Kafka sink on tansu, all on loopback.", batches * readings);
    println!();
    println!("| max_in_flight | Drain time | Readings/s | vs. 1 in flight |");
    println!("|---:|---:|---:|---:|");
    let base = results[0].1 .0;
    for (n, (rate, took)) in &results {
        let label = if *n == DEFAULT_MAX_IN_FLIGHT {
            format!("{n} (default)")
        } else {
            format!("{n} (baseline)")
        };
        println!(
            "| {label} | {:.2} s | {:.0} | {:.2}× |",
            took.as_secs_f64(),
            rate,
            rate / base
        );
    }
    Ok(())
}
