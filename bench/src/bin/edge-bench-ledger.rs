//! The delivered-batch ledger's cost per batch: what the relay adds to every
//! batch to recognise retries (claim, lookup, record), with the SQLite
//! ledger (a file, `synchronous = FULL`) beside the PostgreSQL one a fleet
//! shares (127.0.0.1:5432, database `test`, a schema of its own), one
//! request at a time and with several at once; the lookup a retry costs;
//! and the content digest beside decoding the same batch.
//!
//! Usage: edge-bench-ledger [--batches N] [--concurrency C]

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use edge_relay::ledger::{digest, BatchKey, Claim, Ledger, LedgerOptions};

struct Args {
    batches: u64,
    concurrency: u64,
}

fn args() -> Result<Args> {
    let mut a = Args {
        batches: 2000,
        concurrency: 4,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().context("a value after each flag")?;
        match flag.as_str() {
            "--batches" => a.batches = value.parse()?,
            "--concurrency" => a.concurrency = value.parse()?,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

fn options() -> LedgerOptions {
    LedgerOptions {
        window: Duration::from_secs(7 * 24 * 3600),
        lease: Duration::from_secs(60),
        max_rows: 10_000_000,
    }
}

/// Claim and record `n` new batches from `tasks` concurrent requests, then
/// look each up again (a retry); (new per s, p50 ms, p99 ms, retries per s).
async fn run(ledger: &Ledger, n: u64, tasks: u64, instance: u64) -> Result<(f64, f64, f64, f64)> {
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let ledger = ledger.clone();
        handles.push(tokio::spawn(async move {
            let mut took = Vec::new();
            for seq in (t..n).step_by(tasks as usize) {
                let at = Instant::now();
                let key = BatchKey {
                    gateway: "bench-gw".into(),
                    instance,
                    seq,
                };
                let now = edge_relay::ledger::now_ms();
                match ledger.claim(key, [7; 16], now).await? {
                    Claim::New { guard, .. } => guard.record(now).await?,
                    other => anyhow::bail!("batch {seq}: {other:?}"),
                }
                took.push(at.elapsed());
            }
            Ok::<_, anyhow::Error>(took)
        }));
    }
    let mut took = Vec::new();
    for h in handles {
        took.extend(h.await??);
    }
    let elapsed = started.elapsed().as_secs_f64();
    took.sort();
    let ms = |q: f64| took[((took.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    let retries = Instant::now();
    for seq in 0..n.min(500) {
        let key = BatchKey {
            gateway: "bench-gw".into(),
            instance,
            seq,
        };
        let claim = ledger
            .claim(key, [7; 16], edge_relay::ledger::now_ms())
            .await?;
        anyhow::ensure!(
            matches!(claim, Claim::Delivered),
            "batch {seq} not recognised"
        );
    }
    let retry_rate = n.min(500) as f64 / retries.elapsed().as_secs_f64();
    Ok((n as f64 / elapsed, ms(0.5), ms(0.99), retry_rate))
}

async fn pg(sql: &str) -> Result<()> {
    let (client, connection) = tokio_postgres::connect(
        "postgresql://postgres@127.0.0.1:5432/test",
        tokio_postgres::NoTls,
    )
    .await
    .context("PostgreSQL at 127.0.0.1:5432 (trust auth, database test)")?;
    tokio::spawn(connection);
    client.batch_execute(sql).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let a = args()?;
    let dir = tempfile::tempdir()?;
    let schema = format!("bench_ledger_{}", std::process::id());
    pg(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))
    .await?;
    let sqlite = Ledger::sqlite(&dir.path().join("delivered.db"), options())?;
    let postgres = Ledger::postgres(
        &"postgresql://postgres@127.0.0.1:5432/test".parse()?,
        &format!("{schema}.ledger"),
        Duration::from_secs(5),
        options(),
    );
    println!("| Ledger | Requests at once | New batches/s (claim + lookup + record) | p50 ms | p99 ms | Retries recognised/s |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut instance = 1;
    for (name, ledger) in [("SQLite file", &sqlite), ("PostgreSQL (shared)", &postgres)] {
        for tasks in [1, a.concurrency] {
            let (rate, p50, p99, retries) = run(ledger, a.batches, tasks, instance).await?;
            instance += 1;
            println!("| {name} | {tasks} | {rate:.0} | {p50:.2} | {p99:.2} | {retries:.0} |");
        }
    }
    pg(&format!("DROP SCHEMA {schema} CASCADE")).await?;

    // The digest beside decoding, on a batch of 10 series x 500 readings.
    let batch = edge_bench_batch();
    let bytes = edge_wire::encode(&batch)?;
    let limits = edge_wire::Limits::default();
    let reps = 50;
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(edge_wire::decode(&bytes, &limits)?);
    }
    let decode_us = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
    let t = Instant::now();
    for _ in 0..reps {
        std::hint::black_box(digest(&batch));
    }
    let digest_us = t.elapsed().as_secs_f64() * 1e6 / reps as f64;
    println!();
    println!("| Per batch of 5 000 readings (10 series x 500) | µs |");
    println!("|---|---:|");
    println!("| decode (zstd + CBOR), for comparison | {decode_us:.0} |");
    println!("| content digest (SHA-256 of the decoded batch) | {digest_us:.0} |");
    Ok(())
}

fn edge_bench_batch() -> edge_wire::Batch {
    use edge_wire::{Batch, Point, Quality, Series};
    Batch {
        gateway_id: "bench-gw".into(),
        instance: std::num::NonZeroU64::new(1),
        seq: 1,
        created_us: 1_800_000_000_000_000,
        series: (0..10)
            .map(|s| Series {
                id: s,
                name: format!("line-1.sensor-{s}"),
                unit: "bar".into(),
                tags: Default::default(),
                points: (0..500)
                    .map(|i| Point {
                        ts_us: 1_800_000_000_000_000 + i * 100_000,
                        value: 20.0 + (i % 37) as f64 * 0.25,
                        quality: Quality::Good,
                    })
                    .collect(),
                reporting: None,
            })
            .collect(),
        alarms: vec![],
        gaps: vec![],
        devices: vec![],
    }
}
