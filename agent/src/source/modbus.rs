//! Modbus TCP polling of holding registers.
//!
//! The pure part, [`plan_reads`] and [`decode_value`], turns a point list
//! into requests and registers into numbers; it is tested without sockets.
//! The I/O part, [`ModbusSource`], polls one device on its interval:
//! - every request has a timeout; on a timeout or I/O error the connection is
//!   dropped, so a late reply can never be matched to the next request;
//! - a device that is down is retried with exponential backoff, logged once
//!   when it goes down and once when it comes back;
//! - an exception code is the device's answer, not a failure of the agent:
//!   the affected points are emitted with quality `Bad` and counted.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_modbus::client::{tcp, Context, Reader};
use tokio_modbus::Slave;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::SourceError;
use crate::config::{DataType, ModbusDevice, ModbusPoint};
use crate::reading::{now_us, Quality, Reading, SeriesInfo};
use crate::stats::AgentStats;

/// Most registers one read may ask for (Modbus application protocol limit).
pub const MAX_REGISTERS_PER_READ: u16 = 125;

/// One read-holding-registers request and the points it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadBlock {
    pub start: u16,
    pub count: u16,
    /// Indices into the device's point list.
    pub points: Vec<usize>,
}

/// Group points into as few requests as the protocol allows, merging only
/// adjacent or overlapping register ranges (a gap could hold an unmapped
/// address that makes the device answer with an exception).
pub fn plan_reads(points: &[ModbusPoint]) -> Vec<ReadBlock> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| points[i].register);
    let mut blocks: Vec<ReadBlock> = Vec::new();
    for i in order {
        let start = u32::from(points[i].register);
        let end = start + u32::from(points[i].data_type.registers());
        if let Some(b) = blocks.last_mut() {
            let b_start = u32::from(b.start);
            let b_end = b_start + u32::from(b.count);
            let new_end = b_end.max(end);
            if start <= b_end && new_end - b_start <= u32::from(MAX_REGISTERS_PER_READ) {
                b.count = (new_end - b_start) as u16;
                b.points.push(i);
                continue;
            }
        }
        blocks.push(ReadBlock {
            start: start as u16,
            count: (end - start) as u16,
            points: vec![i],
        });
    }
    blocks
}

/// The engineering value of a point from its registers (`regs` starts at the
/// point's first register): raw * scale + offset.
pub fn decode_value(regs: &[u16], point: &ModbusPoint) -> Option<f64> {
    let raw = match point.data_type {
        DataType::U16 => f64::from(*regs.first()?),
        DataType::I16 => f64::from(*regs.first()? as i16),
        DataType::F32 => {
            let hi = u32::from(*regs.first()?);
            let lo = u32::from(*regs.get(1)?);
            f64::from(f32::from_bits(hi << 16 | lo))
        }
    };
    Some(apply_scale(raw, point.scale) + point.offset)
}

/// `raw * scale`, except that a decimal scale such as 0.1 or 0.001 divides
/// by the power of ten instead: `235.0 * 0.1` is 23.500000000000004 while
/// `235.0 / 10.0` is 23.5, the value the device's display shows, which also
/// keeps the wire encoding compact (decimal values cost ~1 byte, noisy ones 8).
fn apply_scale(raw: f64, scale: f64) -> f64 {
    let inverse = 1.0 / scale;
    let rounded = inverse.round();
    let is_decimal = (1..=9).any(|k| rounded == 10f64.powi(k)) && 1.0 / rounded == scale;
    if is_decimal {
        raw / rounded
    } else {
        raw * scale
    }
}

/// Polls one Modbus TCP device.
pub struct ModbusSource {
    pub device: ModbusDevice,
    /// One entry per point, in the device's point order.
    pub series: Vec<Arc<SeriesInfo>>,
    pub stats: Arc<AgentStats>,
}

const BACKOFF_MAX: Duration = Duration::from_secs(30);

impl ModbusSource {
    pub async fn run(
        self,
        out: mpsc::Sender<Reading>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let plan = plan_reads(&self.device.points);
        let mut conn: Option<Context> = None;
        let mut backoff = self.device.poll_interval;
        let mut next_connect = Instant::now();
        let mut down_since_failures: u64 = 0;
        let mut tick = tokio::time::interval(self.device.poll_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            if conn.is_none() {
                if Instant::now() < next_connect {
                    continue;
                }
                match self.connect().await {
                    Ok(c) => {
                        if down_since_failures > 0 {
                            info!(device = %self.device.name, failed_attempts = down_since_failures, "Modbus device reachable again");
                        }
                        down_since_failures = 0;
                        backoff = self.device.poll_interval;
                        conn = Some(c);
                    }
                    Err(error) => {
                        self.stats.modbus_transport_errors.inc();
                        if down_since_failures == 0 {
                            warn!(device = %self.device.name, address = %self.device.address, %error, "Modbus device unreachable; retrying with backoff");
                        }
                        down_since_failures += 1;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        next_connect = Instant::now() + backoff;
                        continue;
                    }
                }
            }
            let Some(ctx) = conn.as_mut() else { continue };
            for block in &plan {
                match self.read_block(ctx, block).await {
                    Ok(readings) => {
                        for r in readings {
                            self.stats.readings_produced.inc();
                            if out.send(r).await.is_err() {
                                return Err(SourceError::OutputClosed {
                                    source_name: self.device.name.clone(),
                                });
                            }
                        }
                    }
                    Err(error) => {
                        // Drop the connection: a reply that arrives late must
                        // never be taken for the answer to the next request.
                        self.stats.modbus_transport_errors.inc();
                        warn!(device = %self.device.name, unit = self.device.unit, register = block.start, count = block.count, %error, "Modbus read failed; reconnecting");
                        conn = None;
                        down_since_failures = 1;
                        break;
                    }
                }
            }
        }
    }

    async fn connect(&self) -> Result<Context, String> {
        let slave = Slave(self.device.unit);
        match timeout(
            self.device.timeout,
            tcp::connect_slave(self.device.address, slave),
        )
        .await
        {
            Ok(Ok(ctx)) => Ok(ctx),
            Ok(Err(e)) => Err(format!("connect failed: {e}")),
            Err(_) => Err(format!(
                "connect timed out after {} ms",
                self.device.timeout.as_millis()
            )),
        }
    }

    /// Read one block; an exception code yields `Bad` readings, a transport
    /// failure or timeout is an error.
    async fn read_block(
        &self,
        ctx: &mut Context,
        block: &ReadBlock,
    ) -> Result<Vec<Reading>, String> {
        let answer = timeout(
            self.device.timeout,
            ctx.read_holding_registers(block.start, block.count),
        )
        .await;
        let ts_us = now_us();
        let regs = match answer {
            Err(_) => {
                return Err(format!(
                    "timed out after {} ms",
                    self.device.timeout.as_millis()
                ))
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(Err(exception))) => {
                self.stats.modbus_exceptions.inc();
                warn!(device = %self.device.name, unit = self.device.unit, register = block.start, count = block.count, ?exception, "Modbus exception; points marked bad");
                None
            }
            Ok(Ok(Ok(regs))) => Some(regs),
        };
        Ok(block
            .points
            .iter()
            .map(|&i| {
                let point = &self.device.points[i];
                let offset = usize::from(point.register - block.start);
                let value = regs
                    .as_deref()
                    .and_then(|r| decode_value(r.get(offset..)?, point));
                Reading {
                    series: self.series[i].clone(),
                    ts_us,
                    value: value.unwrap_or(f64::NAN),
                    quality: if value.is_some() {
                        Quality::Good
                    } else {
                        Quality::Bad
                    },
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pt(register: u16, data_type: DataType) -> ModbusPoint {
        ModbusPoint {
            name: format!("p{register}"),
            register,
            data_type,
            scale: 1.0,
            offset: 0.0,
            unit: String::new(),
        }
    }

    #[test]
    fn adjacent_points_share_a_request_and_gaps_split() {
        let points = [
            pt(10, DataType::U16),
            pt(0, DataType::F32),
            pt(2, DataType::I16),
            pt(3, DataType::U16),
        ];
        let plan = plan_reads(&points);
        assert_eq!(
            plan,
            vec![
                ReadBlock {
                    start: 0,
                    count: 4,
                    points: vec![1, 2, 3]
                },
                ReadBlock {
                    start: 10,
                    count: 1,
                    points: vec![0]
                },
            ]
        );
    }

    #[test]
    fn a_request_never_exceeds_125_registers() {
        let points: Vec<_> = (0..200).map(|r| pt(r, DataType::U16)).collect();
        let plan = plan_reads(&points);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].count, 125);
        assert_eq!(plan[1].start, 125);
        assert_eq!(plan[1].count, 75);
    }

    #[test]
    fn decodes_each_type_with_scale_and_offset() {
        let cases: [(DataType, &[u16], f64, f64, f64); 5] = [
            (DataType::U16, &[65535], 1.0, 0.0, 65535.0),
            (DataType::I16, &[0xFFFF], 1.0, 0.0, -1.0),
            (DataType::I16, &[0xFC18], 0.1, 0.0, -100.0), // -1000 * 0.1
            (DataType::U16, &[500], 0.5, -10.0, 240.0),
            // 0x42F6E979 is 123.456f32, high word first.
            (
                DataType::F32,
                &[0x42F6, 0xE979],
                1.0,
                0.0,
                f64::from(123.456f32),
            ),
        ];
        for (ty, regs, scale, offset, want) in cases {
            let mut p = pt(0, ty);
            p.scale = scale;
            p.offset = offset;
            let got = decode_value(regs, &p).unwrap();
            assert!(
                (got - want).abs() < 1e-9,
                "{ty:?} {regs:?}: got {got}, want {want}"
            );
        }
    }

    #[test]
    fn decimal_scales_give_the_displayed_decimal_exactly() {
        let mut p = pt(0, DataType::I16);
        for (scale, raw, want) in [(0.1, 235u16, 23.5), (0.01, 1234, 12.34), (0.001, 7, 0.007)] {
            p.scale = scale;
            assert_eq!(decode_value(&[raw], &p), Some(want), "scale {scale}");
        }
        // A non-decimal scale multiplies.
        p.scale = 0.25;
        assert_eq!(decode_value(&[10], &p), Some(2.5));
    }

    #[test]
    fn too_few_registers_is_not_a_value() {
        assert_eq!(decode_value(&[0x42F6], &pt(0, DataType::F32)), None);
    }
}
