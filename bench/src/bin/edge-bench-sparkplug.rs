//! Sparkplug B: how fast the agent reads NDATA into readings, and how many
//! bytes a metric costs on the plant's MQTT beside our batch format.
//!
//! Data: SKAB valve1 (testdata/, 8 sensors of a water pump at 1 Hz), one
//! row per NDATA of one edge node: 8 Double metrics by alias, each with its
//! own timestamp (as Ignition and most edge nodes send them), after one
//! NBIRTH naming them. Decode: the agent's whole path
//! (`source::sparkplug::Reader::read`: topic, protobuf, session with seq
//! and aliases, naming, tags) beside prost's decode of the same payloads
//! alone (the floor any Sparkplug reader pays), one thread, medians of
//! `--reps` runs. Size: NDATA bytes per metric (protobuf, with and without
//! per-metric timestamps; MQTT's own header not counted) beside edge-wire
//! batches of the same readings at 256, 1,000 and 8,192 readings.
//!
//! Usage: edge-bench-sparkplug [--reps N] [--data-dir DIR]

#[path = "../data.rs"]
#[allow(dead_code)]
mod data;

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use edge_agent::config::mqtt::{PayloadFormat, Qos, Subscription, Template};
use edge_agent::source::sparkplug::proto::{Metric, MetricValue, Payload};
use edge_agent::source::sparkplug::Reader;
use prost::Message as _;

fn args() -> Result<(usize, PathBuf)> {
    let (mut reps, mut dir) = (5, PathBuf::from("testdata"));
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().context("a value after each flag")?;
        match flag.as_str() {
            "--reps" => reps = value.parse()?,
            "--data-dir" => dir = value.into(),
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok((reps.max(1), dir))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let (reps, dir) = args()?;
    eprintln!("edge-bench-sparkplug: loading SKAB valve1");
    let skab = data::load_skab(&dir)?;
    let width = skab.sensors.len();
    let sub = Subscription {
        topic: "spBv1.0/#".into(),
        qos: Qos::AtMostOnce,
        format: PayloadFormat::Sparkplug {
            rebirth_requests: false,
            property_tags: Vec::new(),
        },
        series: Template::parse("{2}.{4}").map_err(anyhow::Error::msg)?,
        unit: String::new(),
        tags: BTreeMap::new(),
        lenient: true,
    };
    let birth = Payload {
        timestamp: Some(0),
        seq: Some(0),
        metrics: skab
            .sensors
            .iter()
            .enumerate()
            .map(|(i, (name, _))| Metric {
                name: Some(name.clone()),
                alias: Some(i as u64 + 1),
                datatype: Some(10),
                value: Some(MetricValue::Double(0.0)),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
    .encode_to_vec();
    let ndata = |with_ts: bool| -> Vec<Vec<u8>> {
        (0..skab.rows())
            .map(|row| {
                let ms = (skab.ts_us[row] / 1000) as u64;
                Payload {
                    timestamp: Some(ms),
                    seq: Some(((row + 1) % 256) as u64),
                    metrics: (0..width)
                        .map(|col| Metric {
                            alias: Some(col as u64 + 1),
                            timestamp: with_ts.then_some(ms),
                            value: Some(MetricValue::Double(skab.values[row * width + col])),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }
                .encode_to_vec()
            })
            .collect()
    };
    let messages = ndata(true);
    let bare = ndata(false);
    let metrics = (messages.len() * width) as f64;

    eprintln!(
        "edge-bench-sparkplug: decoding {} NDATA messages, {reps} reps",
        messages.len()
    );
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    let tags = BTreeMap::new();
    for _ in 0..reps {
        let mut reader = Reader::default();
        reader
            .read(&sub, &tags, "spBv1.0/pump/NBIRTH/valve1", &birth, 0)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        let start = Instant::now();
        let mut readings = 0usize;
        for m in &messages {
            let read = reader
                .read(&sub, &tags, "spBv1.0/pump/NDATA/valve1", m, 0)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            readings += read.readings.len();
            black_box(read);
        }
        ours.push(start.elapsed().as_secs_f64());
        anyhow::ensure!(
            readings as f64 == metrics,
            "{readings} readings of {metrics} metrics"
        );
        let start = Instant::now();
        for m in &messages {
            black_box(Payload::decode(&m[..])?);
        }
        floor.push(start.elapsed().as_secs_f64());
    }
    let (ours, floor) = (median(ours), median(floor));
    println!("| path (SKAB valve1, {} NDATA × {width} metrics, one thread) | messages/s | metrics (readings)/s |", messages.len());
    println!("|---|---:|---:|");
    for (label, s) in [
        (
            "agent: topic, protobuf, session (seq, aliases), names and tags",
            ours,
        ),
        ("baseline: prost `Payload::decode` alone", floor),
    ] {
        println!(
            "| {label} | {:.0} | {:.0} |",
            messages.len() as f64 / s,
            metrics / s
        );
    }
    println!();
    let bytes = |v: &[Vec<u8>]| v.iter().map(Vec::len).sum::<usize>() as f64;
    println!(
        "| encoding of the same {} readings | bytes/reading |",
        metrics as usize
    );
    println!("|---|---:|");
    println!(
        "| Sparkplug NDATA, a timestamp per metric | {:.2} |",
        bytes(&messages) / metrics
    );
    println!(
        "| Sparkplug NDATA, payload timestamp only | {:.2} |",
        bytes(&bare) / metrics
    );
    for per_batch in [256, 1000, 8192] {
        let mut total = 0usize;
        for b in skab.batches(per_batch) {
            total += edge_wire::encode(&b)?.len();
        }
        println!(
            "| edge-wire batch of {per_batch} readings | {:.2} |",
            total as f64 / metrics
        );
    }
    Ok(())
}
