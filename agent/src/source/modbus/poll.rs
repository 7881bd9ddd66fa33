//! The poll loop of one Modbus TCP device: connect, send the planned reads
//! every poll interval, emit a reading per point.
//!
//! - every request has a timeout; on a timeout or I/O error the connection is
//!   dropped, so a late reply can never be matched to the next request;
//! - a device that is down is retried with exponential backoff and jitter
//!   ([`backoff_delay`]), logged once when it goes down and once when it
//!   comes back;
//! - an exception code is the device's answer, not a failure of the agent:
//!   the block's points are emitted with quality `Bad` and counted, the other
//!   blocks keep flowing, and it is logged when a block starts and stops
//!   failing rather than on every poll.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};
use tokio_modbus::client::{tcp, Context, Reader};
use tokio_modbus::Slave;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::decode::{decode_bits, decode_registers};
use super::plan::{plan_reads, ReadBlock, ReadLimits};
use crate::config::{ModbusDevice, Table};
use crate::reading::{now_us, Quality, Reading, SeriesInfo};
use crate::source::SourceError;
use crate::stats::AgentStats;

/// Polls one Modbus TCP device.
pub struct ModbusSource {
    pub device: ModbusDevice,
    /// One entry per point, in the device's point order.
    pub series: Vec<Arc<SeriesInfo>>,
    pub stats: Arc<AgentStats>,
}

/// Longest wait between connection attempts.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The wait before the next connection attempt after `failures` (>= 1)
/// failed ones: `base * 2^failures`, at most `max`, then scaled into
/// [50 %, 100 %) by `unit_random` (in [0, 1)) so that gateways that lost
/// the same device do not all reconnect in the same instant.
pub fn backoff_delay(base: Duration, failures: u32, max: Duration, unit_random: f64) -> Duration {
    let full = base.saturating_mul(1u32 << failures.min(20)).min(max);
    full.mul_f64(0.5 + 0.5 * unit_random.clamp(0.0, 1.0))
}

/// What a read brought back.
enum Data {
    Registers(Vec<u16>),
    Bits(Vec<bool>),
}

impl ModbusSource {
    pub async fn run(
        self,
        out: mpsc::Sender<Reading>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let limits = ReadLimits {
            max_gap: self.device.max_gap,
            max_read: self.device.max_read,
        };
        let plan = plan_reads(&self.device.points, limits);
        // Whether each block answered with an exception last time, so a
        // failing block is logged when it starts and stops failing.
        let mut failing = vec![false; plan.len()];
        let mut conn: Option<Context> = None;
        let mut failures: u32 = 0;
        let mut next_connect = Instant::now();
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
                        if failures > 0 {
                            info!(device = %self.device.name, failed_attempts = failures, "Modbus device reachable again");
                        }
                        failures = 0;
                        conn = Some(c);
                    }
                    Err(error) => {
                        self.stats.modbus_transport_errors.inc();
                        if failures == 0 {
                            warn!(device = %self.device.name, address = %self.device.address, %error, "Modbus device unreachable; retrying with backoff");
                        }
                        failures = failures.saturating_add(1);
                        next_connect = Instant::now()
                            + backoff_delay(
                                self.device.poll_interval,
                                failures,
                                BACKOFF_MAX,
                                fastrand::f64(),
                            );
                        continue;
                    }
                }
            }
            let Some(ctx) = conn.as_mut() else { continue };
            for (block, failing) in plan.iter().zip(failing.iter_mut()) {
                match self.read_block(ctx, block, failing).await {
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
                        warn!(device = %self.device.name, unit = self.device.unit, table = block.table.as_str(), address = block.start, count = block.count, %error, "Modbus read failed; reconnecting");
                        conn = None;
                        failures = 1;
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

    /// Send the block's request with the table's function code.
    async fn call(ctx: &mut Context, block: &ReadBlock) -> tokio_modbus::Result<Data> {
        let (start, count) = (block.start, block.count);
        Ok(match block.table {
            Table::Coil => ctx.read_coils(start, count).await?.map(Data::Bits),
            Table::Discrete => ctx
                .read_discrete_inputs(start, count)
                .await?
                .map(Data::Bits),
            Table::Holding => ctx
                .read_holding_registers(start, count)
                .await?
                .map(Data::Registers),
            Table::Input => ctx
                .read_input_registers(start, count)
                .await?
                .map(Data::Registers),
        })
    }

    /// Read one block; an exception code yields `Bad` readings, a transport
    /// failure or timeout is an error.
    async fn read_block(
        &self,
        ctx: &mut Context,
        block: &ReadBlock,
        failing: &mut bool,
    ) -> Result<Vec<Reading>, String> {
        let answer = timeout(self.device.timeout, Self::call(ctx, block)).await;
        let ts_us = now_us();
        let data = match answer {
            Err(_) => {
                return Err(format!(
                    "timed out after {} ms",
                    self.device.timeout.as_millis()
                ))
            }
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(Err(exception))) => {
                self.stats.modbus_exceptions.inc();
                if !*failing {
                    warn!(device = %self.device.name, unit = self.device.unit, table = block.table.as_str(), address = block.start, count = block.count, ?exception, "Modbus exception; points marked bad until it answers");
                }
                *failing = true;
                None
            }
            Ok(Ok(Ok(data))) => {
                if *failing {
                    info!(device = %self.device.name, unit = self.device.unit, table = block.table.as_str(), address = block.start, "Modbus block answers again");
                }
                *failing = false;
                Some(data)
            }
        };
        Ok(block
            .points
            .iter()
            .map(|&i| {
                let point = &self.device.points[i];
                let at = usize::from(point.register - block.start);
                let value = match &data {
                    None => None,
                    Some(Data::Registers(r)) => {
                        r.get(at..).and_then(|r| decode_registers(r, point))
                    }
                    Some(Data::Bits(b)) => b.get(at..).and_then(|b| decode_bits(b, point)),
                };
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

    #[test]
    fn backoff_doubles_to_the_cap_and_jitters_within_half() {
        let base = Duration::from_millis(1000);
        let max = Duration::from_secs(30);
        // (failures, full delay before jitter)
        let cases = [
            (1, 2_000),
            (2, 4_000),
            (4, 16_000),
            (5, 30_000),
            (40, 30_000),
        ];
        for (failures, full_ms) in cases {
            let full = Duration::from_millis(full_ms);
            assert_eq!(
                backoff_delay(base, failures, max, 0.0),
                full / 2,
                "{failures}"
            );
            let high = backoff_delay(base, failures, max, 0.999_999);
            assert!(
                high < full && high > full.mul_f64(0.99),
                "{failures}: {high:?}"
            );
            let r = fastrand::f64();
            let d = backoff_delay(base, failures, max, r);
            assert!(d >= full / 2 && d < full, "{failures}, {r}: {d:?}");
        }
    }
}
