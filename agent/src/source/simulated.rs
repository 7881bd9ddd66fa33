//! A simulated signal (a sine wave around a mean), for trying the agent on a
//! desk with no hardware. Not meant for tests of detection: those feed values
//! directly.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::SourceError;
use crate::config::SimulatedSignal;
use crate::reading::{now_us, Input, Quality, Reading, SeriesInfo};
use crate::stats::AgentStats;

pub struct SimulatedSource {
    pub signal: SimulatedSignal,
    pub series: Arc<SeriesInfo>,
    pub stats: Arc<AgentStats>,
}

impl SimulatedSource {
    pub async fn run(
        self,
        out: mpsc::Sender<Input>,
        shutdown: CancellationToken,
    ) -> Result<(), SourceError> {
        let mut tick = tokio::time::interval(self.signal.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            if self.stats.held_back.get() {
                // The spool refuses commits: no reading is taken that
                // could not be stored.
                self.stats.polls_held_back.inc();
                continue;
            }
            let ts_us = now_us();
            let phase = (ts_us as f64 / 1e6) / self.signal.period_s * std::f64::consts::TAU;
            let value = self.signal.mean + self.signal.amplitude * phase.sin();
            let reading = Reading {
                series: self.series.clone(),
                ts_us,
                value,
                quality: Quality::Good,
            };
            self.stats.readings_produced.inc();
            if out.send(reading.into()).await.is_err() {
                return Err(SourceError::OutputClosed {
                    source_name: self.signal.name.clone(),
                });
            }
        }
    }
}
