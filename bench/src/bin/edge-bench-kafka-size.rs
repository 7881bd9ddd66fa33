//! `edge-bench-kafka-size`: bytes per Kafka message the relay publishes,
//! measured on the messages themselves (rendered by `edge_relay::message`,
//! keyed as the Kafka sink keys them), for each shape and generation: what
//! `docs/kafka-messages.md` states as the size of a message.
//!
//! Data: SKAB valve1 (`testdata/`, 8 sensors of a water pump at 1 Hz, real
//! values), cut into batches of 800 readings as the agent seals them, from
//! gateway `plant-a-gw-1` with series tags `site`, `line`, `asset`,
//! `protocol` and the relay's enrichment (`site`, one gateway tag, arrival
//! time), as in the doc's examples. Alarms: one raise per series per
//! batch, with a limit kind. Sizes are of the uncompressed value (JSON),
//! the key, and the headers (names and values of `gateway`, `batch_seq`,
//! `schema`); Kafka's own record framing and lz4 are not counted.
//!
//! No broker, no clock: the figures are the same on every machine.
//!
//! Usage: edge-bench-kafka-size [--data-dir DIR]

#[path = "../data.rs"]
#[allow(dead_code)]
mod data;

use std::path::PathBuf;

use anyhow::{Context, Result};
use edge_relay::message::{series_key, Delivery, Origin, Version};
use edge_wire::{AlarmEvent, AlarmState, LimitKind, Severity};

const READINGS_PER_BATCH: usize = 800;

/// Sizes of a set of messages of one kind.
#[derive(Default)]
struct Sizes {
    values: Vec<usize>,
    keys: usize,
    headers: usize,
    readings: usize,
}

impl Sizes {
    fn add(&mut self, value: usize, key: usize, headers: usize, readings: usize) {
        self.values.push(value);
        self.keys += key;
        self.headers += headers;
        self.readings += readings;
    }

    fn row(&self, what: &str) {
        let n = self.values.len().max(1) as f64;
        let total: usize = self.values.iter().sum();
        let min = self.values.iter().min().copied().unwrap_or(0);
        let max = self.values.iter().max().copied().unwrap_or(0);
        let all = total + self.keys + self.headers;
        println!(
            "| {what} | {} | {min} | {:.0} | {max} | {:.1} | {:.1} | {:.1} |",
            self.values.len(),
            total as f64 / n,
            self.keys as f64 / n,
            self.headers as f64 / n,
            all as f64 / self.readings.max(1) as f64,
        );
    }
}

/// Bytes of the three headers every message carries.
fn header_bytes(gateway: &str, seq: u64, schema: &str) -> usize {
    "gateway".len()
        + gateway.len()
        + "batch_seq".len()
        + seq.to_string().len()
        + "schema".len()
        + schema.len()
}

fn main() -> Result<()> {
    let mut dir = PathBuf::from("testdata");
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        match flag.as_str() {
            "--data-dir" => dir = it.next().context("a directory after --data-dir")?.into(),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    let skab = data::load_skab(&dir)?;
    let mut rows: Vec<(String, Sizes)> = Vec::new();
    for version in [Version::V1, Version::V2] {
        let (mut reading, mut series, mut alarm) =
            (Sizes::default(), Sizes::default(), Sizes::default());
        for mut batch in skab.batches(READINGS_PER_BATCH) {
            let ts = batch.created_us;
            batch.seq += 1;
            batch.alarms = batch
                .series
                .iter()
                .map(|s| AlarmEvent {
                    series_id: s.id,
                    rule: format!("{}.high", s.name),
                    state: AlarmState::Raised,
                    value: s.points.last().map_or(0.0, |p| p.value),
                    limit: 80.0,
                    ts_us: ts,
                    severity: Some(Severity::Major),
                    duration_us: None,
                    limit_kind: Some(LimitKind::High),
                    spc: None,
                })
                .collect();
            let mut d = Delivery::new(batch).context("a SKAB batch")?;
            d.origin = Origin {
                site: Some("plant-a".into()),
                gateway_tags: [("owner".to_string(), "maintenance-a".to_string())].into(),
                received_us: ts + 1_000_000,
            };
            let (gw, seq) = (d.batch.gateway_id.as_str(), d.batch.seq);
            for s in &d.batch.series {
                let key = series_key(version, gw, &s.name).len();
                for p in &s.points {
                    let h = header_bytes(gw, seq, version.reading_schema());
                    reading.add(d.reading_json_as(version, s, p).len(), key, h, 1);
                }
                let h = header_bytes(gw, seq, version.series_batch_schema());
                series.add(d.series_json_as(version, s).len(), key, h, s.points.len());
            }
            for (s, a) in d.alarms() {
                let key = series_key(version, gw, &s.name).len();
                let h = header_bytes(gw, seq, version.alarm_schema());
                alarm.add(d.alarm_json_as(version, s, a).len(), key, h, 1);
            }
        }
        let v = version.as_str();
        rows.push((format!("reading ({v})"), reading));
        rows.push((
            format!("series batch of {} readings ({v})", READINGS_PER_BATCH / 8),
            series,
        ));
        rows.push((format!("alarm ({v})"), alarm));
    }
    println!("{} ({} readings), batches of {READINGS_PER_BATCH} readings; value = JSON bytes, uncompressed", skab.label, skab.rows() * skab.sensors.len());
    println!();
    println!("| message | messages | value min | value mean | value max | key mean | headers mean | value+key+headers per reading (per alarm) |");
    println!("|---|---|---|---|---|---|---|---|");
    for (what, sizes) in &rows {
        sizes.row(what);
    }
    Ok(())
}
