//! The one path an alarm acknowledgement takes, whether it came from an HMI
//! over MQTT ([`super::LocalPublisher`]) or from a technician on the status
//! page ([`crate::status`]): the shared board checks it, the spool commits
//! it (priority lane, with the `alarms` table row, so
//! [`Spool::acknowledged_alarms`](crate::spool::Spool::acknowledged_alarms)
//! shows it after a restart), then the board applies it and the caller
//! publishes or answers.
//!
//! Not here: MQTT. The path works with no `[alarm_publish]` configured;
//! the page hands an acknowledged event to the publisher when there is one.
//!
//! Invariants: acknowledgements are taken one at a time (a lock around
//! check, commit and apply), so two at once of the same alarm commit one
//! event; an acknowledgement the spool does not take is not applied.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::board::{AckError, AckRequest};
use super::shared::SharedAlarms;
use crate::batch;
use crate::pipeline::store;
use crate::reading::{now_us, Alarm};
use crate::spool::{Lane, SharedSpool};
use crate::stats::AgentStats;

/// What an accepted acknowledgement did.
#[derive(Debug, Clone)]
pub enum AckOutcome {
    /// Committed and applied: the acknowledge event.
    Acknowledged(Alarm),
    /// It was acknowledged before; nothing was written.
    AlreadyAcknowledged,
}

/// Why an acknowledgement was not taken.
#[derive(Debug, thiserror::Error)]
pub enum AckFailure {
    /// The request itself: no such raised alarm, a bad payload.
    #[error(transparent)]
    Refused(#[from] AckError),
    /// The spool did not commit it (shutting down with the spool full, or
    /// the spool task failed): it was not applied.
    #[error("alarm acknowledgement of {series:?} {rule:?} not stored in the spool")]
    NotStored { series: String, rule: String },
}

/// Everything an acknowledgement needs.
pub struct AckPath {
    pub alarms: Arc<SharedAlarms>,
    pub spool: SharedSpool,
    /// Wakes the forwarder once the event is committed.
    pub wake: Arc<Notify>,
    pub stats: Arc<AgentStats>,
    pub gateway_id: String,
    /// The agent's shutdown: a full spool is not waited on past it.
    pub stop: CancellationToken,
    /// One acknowledgement at a time.
    serial: tokio::sync::Mutex<()>,
}

impl AckPath {
    pub fn new(
        alarms: Arc<SharedAlarms>,
        spool: SharedSpool,
        wake: Arc<Notify>,
        stats: Arc<AgentStats>,
        gateway_id: String,
        stop: CancellationToken,
    ) -> AckPath {
        AckPath {
            alarms,
            spool,
            wake,
            stats,
            gateway_id,
            stop,
            serial: tokio::sync::Mutex::new(()),
        }
    }

    /// Acknowledge `request` on `series`: check, commit, apply. Counted in
    /// `alarm_acks` or `alarm_acks_rejected`, and logged.
    pub async fn acknowledge(
        &self,
        series: &str,
        request: &AckRequest,
    ) -> Result<AckOutcome, AckFailure> {
        let _one = self.serial.lock().await;
        let checked = self
            .alarms
            .with_board(|b| b.acknowledge(series, request, now_us()));
        let ack = match checked {
            Ok(Some(ack)) => ack,
            Ok(None) => return Ok(AckOutcome::AlreadyAcknowledged),
            Err(error) => {
                self.stats.alarm_acks_rejected.inc();
                warn!(%series, %error, "alarm acknowledgement refused");
                return Err(error.into());
            }
        };
        let b = batch::alarm_batch(&self.gateway_id, std::slice::from_ref(&ack), ack.ts_us);
        let stored = store(
            b,
            vec![ack.clone()],
            Lane::Alarms,
            &self.spool,
            &self.stats,
            &self.stop,
        )
        .await;
        if !stored {
            self.stats.alarm_acks_rejected.inc();
            return Err(AckFailure::NotStored {
                series: series.to_owned(),
                rule: request.rule.clone(),
            });
        }
        self.wake.notify_one();
        self.stats.alarm_acks.inc();
        info!(%series, rule = %ack.rule, by = request.by.as_deref().unwrap_or(""), "alarm acknowledged");
        self.alarms.apply(&ack);
        Ok(AckOutcome::Acknowledged(ack))
    }
}
