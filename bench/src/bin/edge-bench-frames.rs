//! Microcontroller frames against Modbus RTU for the same samples: bytes on
//! the serial line per reading, and how fast the agent decodes them.
//!
//! Frames: `firmware_shim::frame::encode` of `Samples` messages with 1, 2
//! and 4 readings (f32 values of a slowly moving signal, sequence numbers
//! and device ticks growing as on a device), decoded by the agent's
//! decoder (`Decoder::push`, COBS, CRC-16, postcard). Modbus RTU: what a
//! poller exchanges for the same readings as f32 holding registers (two
//! registers each): the read request (8 bytes) and the response (5 bytes +
//! 4 per reading), built and checked byte by byte with the CRC-16/MODBUS of
//! the `crc` crate, as an RTU master parses them. Both decoders run over
//! the same number of readings in one process; the figures are medians of
//! `--reps` runs.
//!
//! Usage: edge-bench-frames [--reps N] [--samples N]

use std::hint::black_box;
use std::time::Instant;

use anyhow::{Context, Result};
use firmware_shim::frame::{encode, Decoder, MAX_ENCODED};
use firmware_shim::heapless;
use firmware_shim::{Message, Reading, Samples};

const MODBUS: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS);

fn args() -> Result<(usize, u32)> {
    let (mut reps, mut samples) = (5, 20_000);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().context("a value after each flag")?;
        match flag.as_str() {
            "--reps" => reps = value.parse()?,
            "--samples" => samples = value.parse()?,
            other => anyhow::bail!("unknown flag {other}"),
        }
    }
    Ok((reps.max(1), samples.max(1)))
}

fn value(i: u32, ch: usize) -> f32 {
    20.0 + ch as f32 + (i as f32 / 50.0).sin() * 3.0
}

/// The frames a device sends for `samples` messages of `per` readings.
fn frames(samples: u32, per: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    for i in 0..samples {
        let readings: heapless::Vec<Reading, 4> = (0..per)
            .map(|ch| Reading {
                channel: ch as u8,
                value: value(i, ch),
            })
            .collect();
        let msg = Message::Samples(Samples {
            seq: i,
            ticks: 1_000 + u64::from(i) * 100,
            dropped: 0,
            readings,
        });
        let mut out = [0u8; MAX_ENCODED];
        let n = encode(&msg, &mut out).expect("fits");
        wire.extend_from_slice(&out[..n]);
    }
    wire
}

/// A Modbus RTU exchange reading `per` f32 values (2 registers each) from
/// unit 1 at address 0: request, then response.
fn rtu_exchange(i: u32, per: usize) -> (Vec<u8>, Vec<u8>) {
    let with_crc = |mut f: Vec<u8>| {
        let c = MODBUS.checksum(&f);
        f.extend_from_slice(&c.to_le_bytes());
        f
    };
    let regs = (per * 2) as u16;
    let request = with_crc(vec![1, 0x03, 0, 0, (regs >> 8) as u8, regs as u8]);
    let mut resp = vec![1, 0x03, (regs * 2) as u8];
    for ch in 0..per {
        resp.extend_from_slice(&value(i, ch).to_be_bytes());
    }
    (request, with_crc(resp))
}

/// Parse an RTU response as a master does: CRC, unit, function, byte
/// count, then the values; the sum keeps the work from being optimised out.
fn parse_rtu(resp: &[u8]) -> Option<f32> {
    let (body, crc) = resp.split_at(resp.len().checked_sub(2)?);
    if MODBUS.checksum(body).to_le_bytes() != [crc[0], crc[1]] {
        return None;
    }
    if body[0] != 1 || body[1] != 0x03 || usize::from(body[2]) != body.len() - 3 {
        return None;
    }
    Some(
        body[3..]
            .chunks_exact(4)
            .map(|c| f32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .sum(),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let (reps, samples) = args()?;
    println!("Samples: {samples} per run, {reps} runs (medians); f32 readings of a slowly moving signal.");
    println!();
    println!("| readings per sample | frames: bytes per reading | Modbus RTU (request + response): bytes per reading | frames decode, M readings/s | RTU parse, M readings/s |");
    println!("|---:|---:|---:|---:|---:|");
    for per in [1usize, 2, 4] {
        eprintln!("edge-bench-frames: {per} readings per sample");
        let wire = frames(samples, per);
        let exchanges: Vec<(Vec<u8>, Vec<u8>)> =
            (0..samples).map(|i| rtu_exchange(i, per)).collect();
        let rtu_bytes: usize = exchanges.iter().map(|(q, r)| q.len() + r.len()).sum();
        let readings = f64::from(samples) * per as f64;
        let mut frame_rate = Vec::new();
        let mut rtu_rate = Vec::new();
        for _ in 0..reps {
            let t = Instant::now();
            let mut d = Decoder::new();
            let mut decoded = 0usize;
            for &b in &wire {
                if let Some(Ok(Message::Samples(s))) = d.push(b) {
                    decoded += s.readings.len();
                }
            }
            anyhow::ensure!(
                decoded as f64 == readings,
                "decoded {decoded} of {readings}"
            );
            frame_rate.push(readings / t.elapsed().as_secs_f64() / 1e6);
            let t = Instant::now();
            let mut sum = 0.0f32;
            for (_, resp) in &exchanges {
                sum += parse_rtu(black_box(resp)).context("RTU response")?;
            }
            black_box(sum);
            rtu_rate.push(readings / t.elapsed().as_secs_f64() / 1e6);
        }
        println!(
            "| {per} | {:.2} | {:.2} | {:.1} | {:.1} |",
            wire.len() as f64 / readings,
            rtu_bytes as f64 / readings,
            median(frame_rate),
            median(rtu_rate)
        );
    }
    Ok(())
}
