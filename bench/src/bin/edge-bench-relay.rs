//! `edge-bench-relay`: relay throughput from HTTP request to Kafka
//! acknowledgement, in readings per second, beside a plain rdkafka producer
//! sending the same messages to the same broker in the same run, for both
//! message granularities (`reading` and `series`), and the relay's peak
//! memory (RSS high-water mark) under that load.
//!
//! Everything is local and real: tansu (in-memory storage, started as the
//! end-to-end tests start it) as the broker, the `edge-relay` release binary
//! as a child process with only its Kafka sink (a 200 means every message's
//! delivery report came back, acks=all), and uploads over loopback HTTP from
//! `--clients` threads, each with one batch in flight. The batches are
//! encoded before the clock starts; the clock stops at the last 200.
//!
//! The plain producer gets the same JSON messages (rendered by
//! `edge_relay::message` before its clock starts), keys and headers, with
//! the relay's producer settings (idempotent, acks=all, lz4), enqueues them
//! all and waits for every delivery report. Its figure is what the broker
//! and librdkafka can do; the ratio is the relay's own cost (HTTP, decode,
//! validation, JSON, ledger, one batch per request).
//!
//! Then the relay's cost under attack: decompression bombs (32 KiB bodies
//! that would inflate to 1 GiB, `edge_tests::zstd_bomb`) sent with the
//! gateway's token, one alone and fifty at once: the relay's peak RSS growth
//! (`VmHWM` reset through `/proc/PID/clear_refs`) and the slowest answer,
//! beside its RSS before and after.
//!
//! `scripts/bench --only relay` runs it; the figures are recorded in
//! `docs/BENCHMARKS.md`.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use edge_relay::message::{Delivery, Origin};
use edge_wire::{Batch, Point, Quality, Series};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

const USAGE: &str = "usage: edge-bench-relay [--batches N] [--series S] [--points P] [--clients C]

  --batches N   batches per run (default 40)
  --series S    series per batch (default 10)
  --points P    readings per series per batch (default 500)
  --clients C   concurrent uploads (default 4)";

const TOKEN: &str = "bench-relay-token-0123456789";

struct Params {
    batches: usize,
    series: u32,
    points: usize,
    clients: usize,
}

fn params() -> Result<Params> {
    let mut p = Params {
        batches: 40,
        series: 10,
        points: 500,
        clients: 4,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        let n: usize = value
            .parse()
            .with_context(|| format!("{flag} {value:?} is not a number\n{USAGE}"))?;
        match flag.as_str() {
            "--batches" => p.batches = n,
            "--series" => p.series = n as u32,
            "--points" => p.points = n,
            "--clients" => p.clients = n,
            _ => bail!("unknown argument {flag:?}\n{USAGE}"),
        }
    }
    Ok(p)
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The batches of one run; timestamps in the last hour, unique per series.
fn batches(p: &Params, gateway: &str) -> Vec<Batch> {
    let per_batch = p.points as i64;
    let t0 = now_us() - 3_600_000_000;
    (0..p.batches)
        .map(|b| Batch {
            gateway_id: gateway.into(),
            instance: None,
            seq: b as u64 + 1,
            created_us: t0,
            series: (0..p.series)
                .map(|s| Series {
                    id: s,
                    name: format!("line-1.press-{s}.vibration"),
                    unit: "mm/s".into(),
                    tags: [("line".to_string(), "L1".to_string())].into(),
                    points: (0..per_batch)
                        .map(|i| Point {
                            ts_us: t0 + (b as i64 * per_batch + i) * 100,
                            value: 2.0 + (i % 37) as f64 * 0.125,
                            quality: Quality::Good,
                        })
                        .collect(),
                    reporting: None,
                })
                .collect(),
            alarms: vec![],
            gaps: Vec::new(),
            devices: Vec::new(),
        })
        .collect()
}

/// The relay binary with only a Kafka sink, listening on `port`.
fn start_relay(
    dir: &std::path::Path,
    port: u16,
    bootstrap: &str,
    granularity: &str,
) -> Result<Child> {
    let config = dir.join(format!("relay-{granularity}.toml"));
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:{port}"
[[gateways]]
id = "bench-{granularity}"
token = "{TOKEN}"
site = "plant-a"
[kafka]
brokers = ["{bootstrap}"]
readings_topic = "relay.{granularity}"
alarms_topic = "relay.alarms"
granularity = "{granularity}"
delivery_timeout_ms = 120000
[dedup]
path = "{}"
# Above delivery_timeout_ms, as the config check requires.
claim_lease_secs = 300
[ops]
listen = "127.0.0.1:0"
"#,
            dir.join(format!("delivered-{granularity}.db")).display()
        ),
    )?;
    let log = std::fs::File::create(dir.join(format!("relay-{granularity}.log")))?;
    // scripts/bench builds it into the same directory as this binary.
    let relay_bin = std::env::current_exe()?.with_file_name("edge-relay");
    if !relay_bin.exists() {
        bail!(
            "{} not found: run `cargo build --release -p edge-relay --bin edge-relay` first",
            relay_bin.display()
        );
    }
    let child = Command::new(relay_bin)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start edge-relay")?;
    edge_tests::wait_until(
        "edge-relay answers uploads",
        Duration::from_secs(30),
        || edge_tests::relay_answers(port),
    )?;
    Ok(child)
}

/// Peak resident memory of a process, from /proc (Linux), in MiB.
fn peak_rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmHWM in /proc/<pid>/status")?;
    Ok(kib / 1024.0)
}

/// `VmRSS` and `VmHWM` of `pid`, in MiB.
fn rss_mib(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<f64> {
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        Ok(kib / 1024.0)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// One row of the bomb table: `n` bombs at once.
struct BombRun {
    n: usize,
    statuses: Vec<u16>,
    slowest: Duration,
    growth_mib: f64,
}

/// `n` bombs at once against the relay `pid` on `port`.
fn bombs(pid: u32, port: u16, n: usize) -> Result<BombRun> {
    let body = edge_tests::zstd_bomb(8_192);
    let url = format!("http://127.0.0.1:{port}/v1/batches");
    let (before, _) = rss_mib(pid)?;
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").context("resetting VmHWM")?;
    let barrier = std::sync::Barrier::new(n);
    let answers: Vec<Result<(u16, Duration)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| -> Result<(u16, Duration)> {
                    let client = reqwest::blocking::Client::builder()
                        .no_proxy()
                        .timeout(Duration::from_secs(60))
                        .build()?;
                    barrier.wait();
                    let started = Instant::now();
                    let r = client
                        .post(&url)
                        .bearer_auth(TOKEN)
                        .body(body.clone())
                        .send()?;
                    Ok((r.status().as_u16(), started.elapsed()))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bomb thread panicked"))
            .collect()
    });
    let (_, peak) = rss_mib(pid)?;
    let mut run = BombRun {
        n,
        statuses: Vec::new(),
        slowest: Duration::ZERO,
        growth_mib: (peak - before).max(0.0),
    };
    for a in answers {
        let (status, took) = a?;
        run.statuses.push(status);
        run.slowest = run.slowest.max(took);
    }
    Ok(run)
}

/// The bomb table: one bomb, then fifty at once, against a fresh relay.
fn bomb_table(dir: &std::path::Path, bootstrap: &str) -> Result<()> {
    let port = edge_tests::free_port()?;
    let mut relay = start_relay(dir, port, bootstrap, "reading")?;
    let pid = relay.id();
    let (start_rss, _) = rss_mib(pid)?;
    println!("\nDecompression bombs (32 KiB each, would inflate to 1 GiB) with the gateway's token, release build, default limits:\n");
    println!("| Bombs at once | Answers | Slowest answer | Peak RSS growth |");
    println!("|---:|---|---:|---:|");
    for n in [1, 50] {
        let run = bombs(pid, port, n)?;
        let mut counts = std::collections::BTreeMap::new();
        for s in &run.statuses {
            *counts.entry(*s).or_insert(0) += 1;
        }
        let answers: Vec<String> = counts.iter().map(|(s, k)| format!("{k}x {s}")).collect();
        println!(
            "| {} | {} | {:.0} ms | {:.1} MiB |",
            run.n,
            answers.join(", "),
            run.slowest.as_secs_f64() * 1000.0,
            run.growth_mib
        );
    }
    let (end_rss, _) = rss_mib(pid)?;
    println!("\nRelay RSS {start_rss:.1} MiB before the bombs, {end_rss:.1} MiB after.");
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    relay.wait()?;
    Ok(())
}

/// Upload every batch with `clients` threads; readings per second and the
/// relay's peak RSS.
fn relay_run(
    p: &Params,
    dir: &std::path::Path,
    bootstrap: &str,
    granularity: &str,
) -> Result<(f64, f64)> {
    let port = edge_tests::free_port()?;
    let mut relay = start_relay(dir, port, bootstrap, granularity)?;
    let gateway = format!("bench-{granularity}");
    // Warm-up: connections and topic metadata, not timed.
    let warm = batches(&Params { batches: 1, ..*p }, &gateway);
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()?;
    let url = format!("http://127.0.0.1:{port}/v1/batches");
    let post = |body: Vec<u8>| -> Result<()> {
        let r = client.post(&url).bearer_auth(TOKEN).body(body).send()?;
        if r.status() != 200 {
            bail!("relay answered {}: {}", r.status(), r.text()?);
        }
        Ok(())
    };
    let mut warm_batch = warm.into_iter().next().context("no warm-up batch")?;
    warm_batch.seq = 1_000_000;
    post(edge_wire::encode(&warm_batch)?)?;

    let bodies: Vec<Vec<u8>> = batches(p, &gateway)
        .iter()
        .map(edge_wire::encode)
        .collect::<Result<_, _>>()?;
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..p.clients)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(body) = bodies.get(i) else {
                            return Ok(());
                        };
                        post(body.clone())?;
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("upload thread panicked")?;
        }
        Ok(())
    })?;
    let took = started.elapsed();
    let rss = peak_rss_mib(relay.id())?;
    let _ = Command::new("kill")
        .args(["-TERM", &relay.id().to_string()])
        .status();
    relay.wait()?;
    let readings = p.batches * p.series as usize * p.points;
    Ok((readings as f64 / took.as_secs_f64(), rss))
}

/// The same messages through a plain producer with the relay's settings.
async fn plain_run(p: &Params, bootstrap: &str, granularity: &str) -> Result<f64> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "120000")
        .create()?;
    let topic = format!("plain.{granularity}");
    let schema = if granularity == "series" {
        "edge.series-batch.v1"
    } else {
        "edge.reading.v1"
    };
    // Rendered before the clock: (key, value, gateway, seq).
    let mut messages = Vec::new();
    for batch in batches(p, "bench-plain") {
        let mut d = Delivery::new(batch).context("bench batch")?;
        d.origin = Origin {
            site: Some("plant-a".into()),
            gateway_tags: Default::default(),
            received_us: now_us(),
        };
        let seq = d.batch.seq.to_string();
        for s in &d.batch.series {
            if granularity == "series" {
                messages.push((s.name.clone(), d.series_json(s), seq.clone()));
            } else {
                for point in &s.points {
                    messages.push((s.name.clone(), d.reading_json(s, point), seq.clone()));
                }
            }
        }
    }
    // Warm-up: connections and topic metadata.
    producer
        .send(
            FutureRecord::to(&topic).key("warm-up").payload("{}"),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)?;
    let started = Instant::now();
    let mut reports = std::collections::VecDeque::with_capacity(messages.len());
    for (key, value, seq) in &messages {
        let headers = OwnedHeaders::new_with_capacity(3)
            .insert(Header {
                key: "gateway",
                value: Some("bench-plain"),
            })
            .insert(Header {
                key: "batch_seq",
                value: Some(seq.as_str()),
            })
            .insert(Header {
                key: "schema",
                value: Some(schema),
            });
        let mut record = FutureRecord::to(&topic)
            .key(key.as_str())
            .payload(value.as_slice())
            .headers(headers);
        loop {
            match producer.send_result(record) {
                Ok(report) => {
                    reports.push_back(report);
                    break;
                }
                Err((_, back)) => {
                    // Queue full: wait for the oldest report.
                    record = back;
                    if let Some(oldest) = reports.pop_front() {
                        oldest
                            .await
                            .context("delivery report dropped")?
                            .map_err(|(e, _)| e)?;
                    }
                }
            }
        }
    }
    for report in reports {
        report
            .await
            .context("delivery report dropped")?
            .map_err(|(e, _)| e)?;
    }
    let took = started.elapsed();
    Ok((p.batches * p.series as usize * p.points) as f64 / took.as_secs_f64())
}

fn main() -> Result<()> {
    let p = params()?;
    let work = tempfile::tempdir()?;
    let tansu = edge_tests::Tansu::start(work.path())?;
    for g in ["reading", "series"] {
        tansu.create_topic(&format!("relay.{g}"))?;
        tansu.create_topic(&format!("plain.{g}"))?;
    }
    tansu.create_topic("relay.alarms")?;
    let bootstrap = tansu.bootstrap();
    let rt = tokio::runtime::Runtime::new()?;
    println!(
        "{} batches of {} series x {} readings, {} concurrent uploads, tansu (memory storage) on loopback\n",
        p.batches, p.series, p.points, p.clients
    );
    println!("| Granularity | Kafka messages | Relay (HTTP → Kafka ack) readings/s | Plain rdkafka producer readings/s | Relay / plain | Relay peak RSS |");
    println!("|---|---:|---:|---:|---:|---:|");
    for g in ["reading", "series"] {
        let (relay, rss) = relay_run(&p, work.path(), &bootstrap, g)?;
        let plain = rt.block_on(plain_run(&p, &bootstrap, g))?;
        let messages = if g == "series" {
            p.batches * p.series as usize
        } else {
            p.batches * p.series as usize * p.points
        };
        println!(
            "| `{g}` | {messages} | {relay:.0} | {plain:.0} | {:.2} | {rss:.1} MiB |",
            relay / plain
        );
    }
    bomb_table(work.path(), &bootstrap)?;
    Ok(())
}
