//! `edge-bench-spool`: the agent's SQLite spool (`edge_agent::spool`).
//!
//! - Append throughput: readings per second committed by
//!   `Spool::append` (encoding included) in batches of 1000 readings (the
//!   default `[batch] max_readings`), with `synchronous = "full"` (the
//!   default) and, side by side in the same run, `"normal"`.
//! - Start-up time: `Spool::open_checked` (open, migrations, `PRAGMA
//!   quick_check`, checksums of every unsent batch) on a spool holding one
//!   million unsent readings, side by side with an empty spool.
//!
//! The spools live in `--dir` (default `target/bench-spool`), which should
//! be on the disk the agent would use: on tmpfs an fsync costs nothing.
//! `scripts/bench --only spool` runs it; the figures are recorded in
//! `docs/BENCHMARKS.md`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use edge_agent::spool::{Lane, Spool, SpoolOptions, Synchronous};
use edge_wire::{Batch, Point, Quality, Series};

const USAGE: &str = "usage: edge-bench-spool [--reps N] [--dir DIR]

  --reps N    timed repetitions per configuration; the median is shown (default 5)
  --dir DIR   where the spool files are written (default target/bench-spool)";

/// Readings per batch: the default `[batch] max_readings`.
const BATCH: usize = 1000;
/// Series per batch (100 readings each), as from a gateway polling 10 points.
const SERIES: usize = 10;

/// Batch number `k`: 10 series of 100 readings one second apart, values
/// with two decimals as a scaled register gives them.
fn batch(k: usize) -> Batch {
    let t0 = 1_700_000_000_000_000 + (k * BATCH / SERIES) as i64 * 1_000_000;
    let series = (0..SERIES)
        .map(|s| Series {
            id: s as u32,
            name: format!("press-{s}.oil_temp"),
            unit: "degC".into(),
            tags: [("site".to_string(), "plant-a".to_string())].into(),
            points: (0..BATCH / SERIES)
                .map(|i| {
                    // A slow wave plus xorshift noise of ±0.5, two decimals:
                    // about as compressible as the real pump data.
                    let mut x = ((k * BATCH + s * 100 + i) as u64 + 1) * 0x9E37_79B9;
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let noise = (x % 1000) as f64 / 1000.0 - 0.5;
                    let wave = ((k * 100 + i) as f64 * 0.01 + s as f64).sin() * 5.0;
                    Point {
                        ts_us: t0 + i as i64 * 1_000_000,
                        value: ((50.0 + wave + noise) * 100.0).round() / 100.0,
                        quality: Quality::Good,
                    }
                })
                .collect(),
            reporting: None,
        })
        .collect();
    Batch {
        gateway_id: "plant-a-gw-1".into(),
        instance: None,
        seq: 0,
        created_us: t0 + 100_000_000,
        series,
        alarms: vec![],
        gaps: Vec::new(),
        devices: Vec::new(),
    }
}

fn remove_spool(path: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {p:?}"))
            }
            _ => {}
        }
    }
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Readings per second appending `batches` batches to a new spool.
fn append_rate(path: &Path, synchronous: Synchronous, batches: &[Batch]) -> Result<f64> {
    remove_spool(path)?;
    let options = SpoolOptions {
        synchronous,
        ..SpoolOptions::default()
    };
    let mut spool = Spool::open_with(path, options)?;
    let start = Instant::now();
    for b in batches {
        spool.append(&mut b.clone(), &[], Lane::Readings)?;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((batches.len() * BATCH) as f64 / secs)
}

/// Milliseconds `Spool::open_checked` takes on the spool at `path`.
fn open_ms(path: &Path) -> Result<f64> {
    let start = Instant::now();
    let (spool, report) = Spool::open_checked(path, SpoolOptions::default(), 0)?;
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(
        report.moved_aside.is_none() && report.corrupt_batches == 0,
        "the benchmark spool failed its check: {report:?}"
    );
    drop(spool);
    Ok(ms)
}

fn main() -> Result<()> {
    let mut reps = 5usize;
    let mut dir = PathBuf::from("target/bench-spool");
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--reps" => {
                let n = it.next().context("--reps needs a number")?;
                reps = n
                    .parse()
                    .with_context(|| format!("--reps {n:?} is not a number"))?;
            }
            "--dir" => dir = it.next().context("--dir needs a directory")?.into(),
            _ => anyhow::bail!("unknown argument {arg:?}\n{USAGE}"),
        }
    }
    let reps = reps.max(1);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("spool.db");

    let batches: Vec<Batch> = (0..200).map(batch).collect();
    let bytes: usize = batches
        .iter()
        .map(|b| edge_wire::encode(b).map(|e| e.len()))
        .sum::<Result<_, _>>()?;
    println!(
        "Append: {} batches of {BATCH} readings ({SERIES} series), {:.2} encoded bytes per reading, \
         median of {reps} repetitions, spool in {}.",
        batches.len(),
        bytes as f64 / (batches.len() * BATCH) as f64,
        dir.display()
    );
    println!();
    println!("| synchronous | readings/s | batches/s |");
    println!("|---|---:|---:|");
    for (label, sync) in [
        ("full (default)", Synchronous::Full),
        ("normal (baseline)", Synchronous::Normal),
    ] {
        let rate = median(
            (0..reps)
                .map(|_| append_rate(&path, sync, &batches))
                .collect::<Result<_>>()?,
        );
        println!("| {label} | {rate:.0} | {:.1} |", rate / BATCH as f64);
    }

    // One million readings, written fast (normal), then opened with the check.
    remove_spool(&path)?;
    {
        let options = SpoolOptions {
            synchronous: Synchronous::Normal,
            ..SpoolOptions::default()
        };
        let mut spool = Spool::open_with(&path, options)?;
        for k in 0..1_000_000 / BATCH {
            spool.append(&mut batch(k), &[], Lane::Readings)?;
        }
    }
    let full_bytes = std::fs::metadata(&path)?.len();
    let empty = dir.join("empty.db");
    remove_spool(&empty)?;
    drop(Spool::open(&empty)?);
    println!();
    println!(
        "Start-up (open, quick_check, checksum of every unsent batch), median of {reps} opens, \
         page cache warm:"
    );
    println!();
    println!("| spool | unsent readings | file bytes | open + check ms |");
    println!("|---|---:|---:|---:|");
    for (label, p, readings, size) in [
        (
            "empty (baseline)",
            &empty,
            0,
            std::fs::metadata(&empty)?.len(),
        ),
        ("backlog", &path, 1_000_000, full_bytes),
    ] {
        let ms = median((0..reps).map(|_| open_ms(p)).collect::<Result<_>>()?);
        println!("| {label} | {readings} | {size} | {ms:.1} |");
    }
    remove_spool(&path)?;
    remove_spool(&empty)?;
    Ok(())
}
