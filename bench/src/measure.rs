//! Measuring one (data set, batch size) cell of the table: wire bytes of
//! both formats over every batch, and encode/decode throughput as the median
//! of a few timed repetitions.
//!
//! Sizes are exact and deterministic. Speeds are wall-clock on whatever
//! machine runs this, so only ratios between columns of one run mean much.
//! Every batch is decoded once and compared before anything is timed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use edge_wire::{decode, encode, Limits};

use crate::baseline;
use crate::data::Dataset;

/// One row of the table.
pub struct Row {
    pub dataset: String,
    pub batch_readings: usize,
    pub batches: usize,
    pub readings: usize,
    pub ours_bytes: usize,
    pub baseline_bytes: usize,
    pub ours_encode_per_s: f64,
    pub ours_decode_per_s: f64,
    pub baseline_encode_per_s: f64,
}

impl Row {
    pub fn ours_bytes_per_reading(&self) -> f64 {
        self.ours_bytes as f64 / self.readings as f64
    }

    pub fn baseline_bytes_per_reading(&self) -> f64 {
        self.baseline_bytes as f64 / self.readings as f64
    }
}

/// Each timed repetition runs the workload for at least this long.
const MIN_REPETITION: Duration = Duration::from_millis(200);

/// Measure `dataset` cut into batches of `batch_readings` readings.
pub fn measure(dataset: &Dataset, batch_readings: usize, reps: usize) -> Result<Row> {
    let batches = dataset.batches(batch_readings);
    let readings: usize = batches.iter().map(|b| b.reading_count()).sum();
    let limits = Limits::default();

    let mut ours_bytes = 0;
    let mut encoded = Vec::with_capacity(batches.len());
    for batch in &batches {
        let bytes = encode(batch)?;
        if decode(&bytes, &limits)? != *batch {
            bail!("{}: batch {} does not round-trip", dataset.label, batch.seq);
        }
        ours_bytes += bytes.len();
        encoded.push(bytes);
    }

    let mut text = Vec::new();
    let baseline_bytes = batches
        .iter()
        .map(|b| baseline::encode(b, &dataset.measurement, &mut text).len())
        .sum();

    let ours_encode_per_s = median_rate(reps, readings, || {
        for batch in &batches {
            let _ = black_box(encode(black_box(batch)));
        }
    });
    let ours_decode_per_s = median_rate(reps, readings, || {
        for bytes in &encoded {
            let _ = black_box(decode(black_box(bytes), &limits));
        }
    });
    let baseline_encode_per_s = median_rate(reps, readings, || {
        for batch in &batches {
            black_box(baseline::encode(
                black_box(batch),
                &dataset.measurement,
                &mut text,
            ));
        }
    });

    Ok(Row {
        dataset: dataset.label.clone(),
        batch_readings,
        batches: batches.len(),
        readings,
        ours_bytes,
        baseline_bytes,
        ours_encode_per_s,
        ours_decode_per_s,
        baseline_encode_per_s,
    })
}

/// Readings per second of `pass` (which handles `readings` readings): the
/// median of `reps` repetitions, each looping `pass` for at least
/// [`MIN_REPETITION`], after one untimed warm-up pass.
fn median_rate(reps: usize, readings: usize, mut pass: impl FnMut()) -> f64 {
    let started = Instant::now();
    pass();
    let one = started.elapsed().max(Duration::from_micros(1));
    let loops = (MIN_REPETITION.as_secs_f64() / one.as_secs_f64())
        .ceil()
        .max(1.0) as usize;
    let mut rates: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let started = Instant::now();
            for _ in 0..loops {
                pass();
            }
            (readings * loops) as f64 / started.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}
