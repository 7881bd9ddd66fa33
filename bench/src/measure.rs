//! Measuring one (data set, batch size) row of the table: wire bytes of
//! every format over every batch, and encode/decode throughput of our
//! codec, v8 (alone and with a series-table reference), v6 (the version
//! before) and v5, as the median of a few timed repetitions.
//!
//! Sizes are exact and deterministic. Speeds are wall-clock on whatever
//! machine runs this, so only ratios between columns of one run mean much.
//! Every batch is decoded once in both versions and compared before
//! anything is timed.

use std::hint::black_box;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use edge_wire::codec::encode_version;
use edge_wire::{decode, encode, Batch, Limits};

use crate::baseline;
use crate::data::Dataset;

/// One row of the table.
pub struct Row {
    pub dataset: String,
    pub batch_readings: usize,
    pub batches: usize,
    pub readings: usize,
    /// Ours, v8 (what `encode` writes).
    pub v8: Codec,
    /// Ours, v8 with a series-table reference (format v7, what the agent
    /// sends once the relay holds the table): encode is `encode` then
    /// `shorten`, decode is `decode_parts` with the table.
    pub v7: Codec,
    /// Ours, v6: the range coder before v8's counted adaptation.
    pub v6: Codec,
    /// Ours, v5: the value coding before v6 ([`Batch::legacy_version`]).
    pub v5: Codec,
    pub line_protocol_bytes: usize,
    pub f64_xz_bytes: usize,
    /// Readings per second into line protocol + gzip, and into f64 + xz.
    pub line_protocol_per_s: f64,
    pub f64_xz_per_s: f64,
}

/// Size and speed of one of our format versions.
pub struct Codec {
    pub bytes: usize,
    pub encode_per_s: f64,
    pub decode_per_s: f64,
}

impl Row {
    /// `bytes` per reading of this row.
    pub fn per_reading(&self, bytes: usize) -> f64 {
        bytes as f64 / self.readings as f64
    }
}

/// Each timed repetition runs the workload for at least this long.
const MIN_REPETITION: Duration = Duration::from_millis(200);

/// Encode `batch` as v5 did: the oldest version before v6 that holds it.
fn encode_v5(batch: &Batch) -> Result<Vec<u8>, edge_wire::WireError> {
    encode_version(batch, batch.legacy_version())
}

/// Encode `batch` in v6, the version before v8.
fn encode_v6(batch: &Batch) -> Result<Vec<u8>, edge_wire::WireError> {
    encode_version(batch, 6)
}

/// Sizes and speeds of one version: `encode` over every batch, checked to
/// decode to the batch, then timed.
fn measure_codec(
    dataset: &Dataset,
    batches: &[Batch],
    reps: usize,
    encode: fn(&Batch) -> Result<Vec<u8>, edge_wire::WireError>,
) -> Result<Codec> {
    let readings: usize = batches.iter().map(|b| b.reading_count()).sum();
    let limits = Limits::default();
    let mut bytes = 0;
    let mut encoded = Vec::with_capacity(batches.len());
    for batch in batches {
        let body = encode(batch)?;
        if decode(&body, &limits)? != *batch {
            bail!("{}: batch {} does not round-trip", dataset.label, batch.seq);
        }
        bytes += body.len();
        encoded.push(body);
    }
    let encode_per_s = median_rate(reps, readings, || {
        for batch in batches {
            let _ = black_box(encode(black_box(batch)));
        }
    });
    let decode_per_s = median_rate(reps, readings, || {
        for body in &encoded {
            let _ = black_box(decode(black_box(body), &limits));
        }
    });
    Ok(Codec {
        bytes,
        encode_per_s,
        decode_per_s,
    })
}

/// Sizes and speeds of the referenced form (format v7): each batch is
/// encoded (v8) and shortened, checked to decode with its table, then timed.
fn measure_referenced(dataset: &Dataset, batches: &[Batch], reps: usize) -> Result<Codec> {
    use edge_wire::codec::reference::{decode_parts, shorten};
    let readings: usize = batches.iter().map(|b| b.reading_count()).sum();
    let limits = Limits::default();
    let mut bytes = 0;
    let mut encoded = Vec::with_capacity(batches.len());
    for batch in batches {
        let (table, short) = shorten(&encode(batch)?, &limits)?;
        if decode_parts(&short, &limits, Some(&table.bytes))?.batch != *batch {
            bail!(
                "{}: batch {} does not round-trip referenced",
                dataset.label,
                batch.seq
            );
        }
        bytes += short.len();
        encoded.push((table.bytes, short));
    }
    let encode_per_s = median_rate(reps, readings, || {
        for batch in batches {
            let _ = black_box(encode(black_box(batch)).map(|b| shorten(&b, &limits)));
        }
    });
    let decode_per_s = median_rate(reps, readings, || {
        for (table, short) in &encoded {
            let _ = black_box(decode_parts(black_box(short), &limits, Some(table)));
        }
    });
    Ok(Codec {
        bytes,
        encode_per_s,
        decode_per_s,
    })
}

/// Measure `dataset` cut into batches of `batch_readings` readings.
pub fn measure(dataset: &Dataset, batch_readings: usize, reps: usize) -> Result<Row> {
    let batches = dataset.batches(batch_readings);
    let readings: usize = batches.iter().map(|b| b.reading_count()).sum();
    let v8 = measure_codec(dataset, &batches, reps, encode)?;
    let v7 = measure_referenced(dataset, &batches, reps)?;
    let v6 = measure_codec(dataset, &batches, reps, encode_v6)?;
    let v5 = measure_codec(dataset, &batches, reps, encode_v5)?;
    let mut scratch = Vec::new();
    let line_protocol_bytes = batches
        .iter()
        .map(|b| baseline::encode(b, &dataset.measurement, &mut scratch).len())
        .sum();
    let f64_xz_bytes = batches
        .iter()
        .map(|b| baseline::encode_f64_xz(b, &mut scratch).len())
        .sum();
    let line_protocol_per_s = median_rate(reps, readings, || {
        for b in &batches {
            let _ =
                black_box(baseline::encode(black_box(b), &dataset.measurement, &mut scratch).len());
        }
    });
    let f64_xz_per_s = median_rate(reps, readings, || {
        for b in &batches {
            let _ = black_box(baseline::encode_f64_xz(black_box(b), &mut scratch).len());
        }
    });
    Ok(Row {
        dataset: dataset.label.clone(),
        batch_readings,
        batches: batches.len(),
        readings,
        v8,
        v7,
        v6,
        v5,
        line_protocol_bytes,
        f64_xz_bytes,
        line_protocol_per_s,
        f64_xz_per_s,
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
