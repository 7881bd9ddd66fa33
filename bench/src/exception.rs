//! Report by exception on a data set: the same readings sealed into v8
//! batches of a given size twice, every reading and through the agent's
//! filter (`edge_agent::exception::ExceptionFilter`), with a deadband of a
//! percent of each sensor's span (its min..max over the data set) and a
//! heartbeat. The filtered stream is cut into batches of the same number of
//! readings *sent*, as the agent's `max_readings` seals them.

use std::sync::Arc;

use anyhow::Result;
use edge_agent::detect::Selector;
use edge_agent::exception::{ExceptionFilter, ExceptionRule};
use edge_agent::reading::{Reading, SeriesInfo};
use edge_wire::{Batch, Point, Quality, Series};

use crate::data::Dataset;

/// One table row.
pub struct Row {
    pub batch_readings: usize,
    pub readings: usize,
    pub sent: usize,
    pub all_bytes: usize,
    pub filtered_bytes: usize,
    /// Per sensor: name, deadband in its unit, readings sent.
    pub per_sensor: Vec<(String, f64, usize)>,
}

/// The filter rules: `pct` % of each sensor's span, `max_silence_s`.
fn rules(ds: &Dataset, pct: f64, max_silence_s: i64) -> Vec<ExceptionRule> {
    let width = ds.sensors.len();
    ds.sensors
        .iter()
        .enumerate()
        .map(|(c, (name, _))| {
            let (lo, hi) = (0..ds.rows())
                .map(|r| ds.values[r * width + c])
                .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
            ExceptionRule {
                selector: Selector::Series(name.clone()),
                deadband: pct / 100.0 * (hi - lo),
                max_silence_us: max_silence_s * 1_000_000,
            }
        })
        .collect()
}

pub fn measure(ds: &Dataset, size: usize, pct: f64, max_silence_s: i64) -> Result<Row> {
    let all_bytes = ds
        .batches(size)
        .iter()
        .map(|b| edge_wire::encode(b).map(|e| e.len()))
        .sum::<Result<usize, _>>()?;
    let rules = rules(ds, pct, max_silence_s);
    let mut filter = ExceptionFilter::new(&rules);
    let width = ds.sensors.len();
    let infos: Vec<Arc<SeriesInfo>> = ds
        .sensors
        .iter()
        .map(|(name, unit)| {
            Arc::new(SeriesInfo {
                name: name.clone(),
                unit: unit.clone(),
                tags: ds.tags.clone(),
            })
        })
        .collect();
    let mut open: Vec<Vec<Point>> = vec![Vec::new(); width];
    let mut sent_by: Vec<usize> = vec![0; width];
    let (mut in_batch, mut sent, mut filtered_bytes, mut seq) = (0usize, 0usize, 0usize, 0u64);
    let mut seal = |open: &mut Vec<Vec<Point>>, created_us: i64| -> Result<usize> {
        let series = open
            .iter_mut()
            .enumerate()
            .filter(|(_, p)| !p.is_empty())
            .map(|(c, points)| Series {
                id: c as u32,
                name: infos[c].name.clone(),
                unit: infos[c].unit.clone(),
                tags: ds.tags.clone(),
                points: std::mem::take(points),
                reporting: Some(rules[c].reporting()),
            })
            .collect();
        seq += 1;
        let batch = Batch {
            gateway_id: "plant-a-gw-1".into(),
            instance: None,
            seq,
            created_us,
            series,
            alarms: Vec::new(),
            gaps: Vec::new(),
            devices: Vec::new(),
        };
        Ok(edge_wire::encode(&batch)?.len())
    };
    for row in 0..ds.rows() {
        let ts_us = ds.ts_us[row];
        for (c, info) in infos.iter().enumerate() {
            let value = ds.values[row * width + c];
            let r = Reading {
                series: info.clone(),
                ts_us,
                value,
                quality: Quality::Good,
            };
            if filter.judge(&r).sends() {
                open[c].push(Point {
                    ts_us,
                    value,
                    quality: Quality::Good,
                });
                sent += 1;
                sent_by[c] += 1;
                in_batch += 1;
                if in_batch == size {
                    filtered_bytes += seal(&mut open, ts_us + 1_000)?;
                    in_batch = 0;
                }
            }
        }
    }
    if in_batch > 0 {
        filtered_bytes += seal(&mut open, ds.ts_us[ds.rows() - 1] + 1_000)?;
    }
    Ok(Row {
        batch_readings: size,
        readings: ds.rows() * width,
        sent,
        all_bytes,
        filtered_bytes,
        per_sensor: ds
            .sensors
            .iter()
            .zip(&rules)
            .zip(sent_by)
            .map(|(((name, _), rule), n)| (name.clone(), rule.deadband, n))
            .collect(),
    })
}
