//! `edge-bench-detect`: readings per second through the agent's detection
//! engine (`edge_agent::detect::Detector`) with 10 rules on each of 10 000
//! series, on one thread, and the detector's memory per series. Side by
//! side in the same run with two baselines: the same readings through a
//! detector with no rule, and with one rule per series; and with one SPC
//! rule (all seven tests, a baseline learned from 10 readings), alone and
//! beside the 10 rules.
//!
//! Memory is counted by this binary's global allocator: bytes the detector
//! holds once every series has been seen, minus the bytes before it was
//! built, per series. The series metadata (`Arc<SeriesInfo>`) belongs to
//! the sources and is allocated before, so it is not counted.
//!
//! `scripts/bench` runs it after the wire-format benchmark; the figures are
//! recorded in `docs/BENCHMARKS.md`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use edge_agent::detect::spc::{Spc, Test};
use edge_agent::detect::{Detector, Flatline, Hold, Level, Limit, Rate, Rule, Selector, Timeout};
use edge_agent::reading::{Quality, Reading, SeriesInfo, Severity};

/// Counts the bytes currently allocated.
struct Counting;

static ALLOCATED: AtomicI64 = AtomicI64::new(0);

// SAFETY: defers to the system allocator; only adds bookkeeping.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const SERIES: usize = 10_000;
/// Rounds of one reading per series per timed repetition.
const ROUNDS: usize = 20;

const USAGE: &str = "usage: edge-bench-detect [--reps N]

  --reps N   timed repetitions per configuration; the median is shown (default 7)";

fn limit(level: Level, limit: f64, severity: Severity) -> Limit {
    Limit {
        level,
        limit,
        severity,
    }
}

/// The ten rules of the main configuration, each selecting every series by
/// tag, with a spread of check kinds a plant would use.
fn ten_rules() -> Vec<Rule> {
    let all = || Selector::Tags([("kind".to_string(), "temp".to_string())].into());
    let mut rules = Vec::new();
    let mut r = Rule::new("limits", all());
    r.limits = vec![
        limit(Level::HighHigh, 95.0, Severity::Critical),
        limit(Level::High, 85.0, Severity::Major),
        limit(Level::Low, 5.0, Severity::Major),
        limit(Level::LowLow, -5.0, Severity::Critical),
    ];
    r.deadband = 1.0;
    rules.push(r);
    let mut r = Rule::new("rate", all());
    r.rate = Some(Rate {
        rise_per_s: Some(5.0),
        fall_per_s: Some(5.0),
        window_us: 10_000_000,
        severity: Severity::Warning,
    });
    rules.push(r);
    let mut r = Rule::new("stale", all());
    r.stale = Some(Timeout {
        after_us: 30_000_000,
        severity: Severity::Major,
    });
    rules.push(r);
    let mut r = Rule::new("flat", all());
    r.flatline = Some(Flatline {
        epsilon: 0.001,
        after_us: 600_000_000,
        severity: Severity::Warning,
    });
    rules.push(r);
    let mut r = Rule::new("quality", all());
    r.bad_quality = Some(Timeout {
        after_us: 10_000_000,
        severity: Severity::Major,
    });
    rules.push(r);
    for i in 0..5 {
        let mut r = Rule::new(&format!("band{i}"), all());
        r.limits = vec![
            limit(Level::High, 60.0 + 5.0 * i as f64, Severity::Warning),
            limit(Level::Low, 20.0 - 2.0 * i as f64, Severity::Warning),
        ];
        r.deadband = 0.5;
        r.on_delay = Hold::Samples(3);
        r.off_delay = Hold::Samples(3);
        rules.push(r);
    }
    rules
}

/// The one-rule baseline: a high limit on every series.
fn one_rule() -> Vec<Rule> {
    let mut r = Rule::new(
        "high",
        Selector::Tags([("kind".to_string(), "temp".to_string())].into()),
    );
    r.limits = vec![limit(Level::High, 85.0, Severity::Major)];
    vec![r]
}

/// Readings of each series taken to learn an SPC baseline.
const SPC_BASELINE: u32 = 10;

/// One SPC rule running all seven tests on every series, its baseline
/// learned from the first [`SPC_BASELINE`] readings of each series.
fn spc_rule() -> Vec<Rule> {
    let mut r = Rule::new(
        "spc",
        Selector::Tags([("kind".to_string(), "temp".to_string())].into()),
    );
    r.spc = Some(Spc::new(&Test::ALL, SPC_BASELINE));
    vec![r]
}

/// A value per (series, round): mostly normal (50 ± 5 with a little
/// noise, inside every limit), and for 5 rounds in every 100 an excursion
/// to 88, staggered across series, so limit, band and rate alarms raise
/// and clear now and then, as on a plant, rather than on every reading.
fn value(series: usize, round: usize) -> f64 {
    if (round + series) % 100 < 5 {
        return 88.0;
    }
    let phase = (series % 97) as f64 / 97.0;
    let x = (round as f64 / 40.0 + phase) * std::f64::consts::TAU;
    let noise = ((series * 7919 + round * 104_729) % 1000) as f64 / 1000.0 - 0.5;
    50.0 + 5.0 * x.sin() + noise
}

struct Row {
    label: &'static str,
    checks_per_series: usize,
    readings_per_s: f64,
    bytes_per_series: f64,
    alarms: u64,
}

/// `warmup` rounds of one reading per series come before the memory is
/// counted: 1 creates the state of every series; an SPC rule needs its
/// baseline learned and its run window full too.
fn run(
    label: &'static str,
    rules: Vec<Rule>,
    series: &[Arc<SeriesInfo>],
    reps: usize,
    warmup: usize,
) -> Result<Row> {
    let base_us = 1_700_000_000_000_000i64;
    let before = ALLOCATED.load(Ordering::Relaxed);
    let mut detector = Detector::new(&rules);
    // Round 0 creates the detection state of every series.
    let mut reading = Reading {
        series: series[0].clone(),
        ts_us: base_us,
        value: 0.0,
        quality: Quality::Good,
    };
    let mut alarms = 0u64;
    for round in 0..warmup {
        reading.ts_us = base_us + round as i64 * 1_000_000;
        for (i, s) in series.iter().enumerate() {
            reading.series = s.clone();
            reading.value = value(i, round);
            alarms += detector.observe(&reading).len() as u64;
        }
    }
    drop(reading);
    let bytes_per_series =
        (ALLOCATED.load(Ordering::Relaxed) - before) as f64 / series.len() as f64;

    // Readings with the series' Arc already in place: the timed loop only
    // changes timestamp and value, as a source would hand them over.
    let mut readings: Vec<Reading> = series
        .iter()
        .map(|s| Reading {
            series: s.clone(),
            ts_us: base_us,
            value: 0.0,
            quality: Quality::Good,
        })
        .collect();
    let mut round = warmup;
    let mut speeds = Vec::with_capacity(reps);
    for _ in 0..reps {
        let start = Instant::now();
        for _ in 0..ROUNDS {
            let ts_us = base_us + round as i64 * 1_000_000;
            for (i, r) in readings.iter_mut().enumerate() {
                r.ts_us = ts_us;
                r.value = value(i, round);
                alarms += black_box(detector.observe(r)).len() as u64;
            }
            round += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        speeds.push((ROUNDS * series.len()) as f64 / secs);
    }
    let c = detector.counters();
    if c.out_of_order != 0 || c.clock_steps != 0 {
        bail!("{label}: the bench fed readings out of order ({c:?})");
    }
    speeds.sort_by(f64::total_cmp);
    Ok(Row {
        label,
        checks_per_series: rules.iter().map(Rule::check_count).sum(),
        readings_per_s: speeds[speeds.len() / 2],
        bytes_per_series,
        alarms,
    })
}

fn main() -> Result<()> {
    let mut reps = 7usize;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--reps" => {
                let n = it.next().context("--reps needs a number")?;
                reps = n
                    .parse()
                    .with_context(|| format!("--reps {n:?} is not a number"))?;
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let reps = reps.max(1);
    let series: Vec<Arc<SeriesInfo>> = (0..SERIES)
        .map(|i| {
            Arc::new(SeriesInfo {
                name: format!("line-{}.dev-{i}.temp", i % 20),
                unit: "degC".into(),
                tags: BTreeMap::from([
                    ("device".to_string(), format!("dev-{i}")),
                    ("kind".to_string(), "temp".to_string()),
                ]),
            })
        })
        .collect();
    println!(
        "Detection engine, {SERIES} series, one thread, {ROUNDS} readings per series per \
         repetition, median of {reps} repetitions. Memory: bytes the detector allocates per \
         series once every series has reported.\n"
    );
    println!("| Rules per series | Checks per series | M readings/s | Detector bytes per series | Alarm events |");
    println!("|---|---:|---:|---:|---:|");
    let spc_warmup = SPC_BASELINE as usize + 8;
    let ten_and_spc = ten_rules().into_iter().chain(spc_rule()).collect();
    for (label, rules, warmup) in [
        ("0 (baseline: no rule)", Vec::new(), 1),
        ("1 (baseline: one high limit)", one_rule(), 1),
        ("10", ten_rules(), 1),
        ("1 SPC rule, all 7 tests", spc_rule(), spc_warmup),
        ("10 + 1 SPC rule", ten_and_spc, spc_warmup),
    ] {
        let row = run(label, rules, &series, reps, warmup)?;
        println!(
            "| {} | {} | {:.2} | {:.0} | {} |",
            row.label,
            row.checks_per_series,
            row.readings_per_s / 1e6,
            row.bytes_per_series,
            row.alarms
        );
    }
    Ok(())
}
