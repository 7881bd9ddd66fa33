//! The forwarder: sends spooled batches to the relay and removes each from
//! the spool only after a 2xx answer for that batch.
//!
//! Up to `[uplink] max_in_flight` uploads run at once, so draining a backlog
//! is not bounded by one round trip per batch. Batches are picked in send
//! order ([`crate::spool::Spool::next_unsent`]: the alarm-only priority lane
//! first, then the oldest reading batch) among those not already in flight,
//! so an alarm raised during an outage takes the next free slot ahead of
//! the reading backlog. Answers may come back in any order; each one is
//! applied to its own batch:
//!
//! - 2xx (a 200 with `"duplicate": true` or `"conflict": true` included):
//!   the batch is removed; a conflict is warned about and counted. Once
//!   the relay says it holds a batch's series table, later batches name it
//!   instead of carrying it ([`tables`]);
//! - 400, 413 and 422 mean the relay will never accept these bytes: the
//!   batch is moved to the spool's quarantine table, logged and counted, so
//!   one bad batch cannot block the queue forever;
//! - network errors, timeouts, 5xx, 401/403 and 429 are transient: the batch
//!   stays, no new upload starts until the backoff (exponential with
//!   jitter, or the relay's `Retry-After`, capped at `retry_max`) has
//!   passed, and then it is sent again (the window and the backoff are a
//!   pure state machine, [`window`], with table tests). Uploads already on their way finish
//!   and are applied. A failed batch never stops the others from being
//!   removed when they succeed, and never leaves the spool without its own
//!   2xx.
//!
//! - a 2xx whose batch cannot then be deleted from the spool (a full disk,
//!   a locked database): the batch is kept in memory as confirmed
//!   ([`unremoved`]), never sent again by this process, and the forwarder
//!   backs off as for an upload failure; after the backoff it retries the
//!   deletes before starting any new upload. The failure is logged
//!   rate-limited and counted in `spool_remove_failures`.
//!
//! Invariant: a sequence number is in flight at most once, so a batch is
//! never sent twice at the same time; it may be sent again after a failure
//! or a restart, and the relay answers such a repeat as a duplicate.
//!
//! The uplink going down and coming back are logged once each, not per
//! try. While a backlog drains, its size, the rate and the estimated time to
//! empty are logged every `progress_interval` ([`progress`]).

pub mod compat;
pub mod progress;
pub mod tables;
pub mod unremoved;
pub mod upload;
pub mod window;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::timing::sleep_until;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::UplinkConfig;
use crate::reading::now_us;
use crate::spool::{SharedSpool, SpoolError, StoredBatch};
use crate::stats::AgentStats;

use self::unremoved::{LogLine, Unremoved};
pub use self::upload::{Outcome, Uploader, BATCH_CONTENT_TYPE};
use self::window::{Action, Uplink, Window};

pub struct Forwarder {
    pub spool: SharedSpool,
    pub uplink: UplinkConfig,
    pub gateway_id: String,
    pub stats: Arc<AgentStats>,
    /// Signalled when a batch is appended, so an idle forwarder wakes at once.
    pub wake: Arc<Notify>,
}

impl Forwarder {
    /// Forward until `drain` is cancelled, then keep going until the spool is
    /// empty or `uplink.shutdown_drain` has passed.
    pub async fn run(self, drain: CancellationToken) {
        let uploader = match Uploader::new(&self.uplink, &self.gateway_id) {
            Ok(u) => Arc::new(u),
            Err(error) => {
                error!(%error, "cannot build the uplink client; forwarding disabled");
                return;
            }
        };
        let formats = Arc::new(compat::RelayFormats::default());
        let tables = Arc::new(tables::RelayTables::default());
        let mut uploads: JoinSet<(StoredBatch, Outcome)> = JoinSet::new();
        let mut seq_of: HashMap<tokio::task::Id, u64> = HashMap::new();
        let mut backoff = Window::new(
            self.uplink.max_in_flight,
            self.uplink.retry_initial,
            self.uplink.retry_max,
        );
        let mut unremoved = Unremoved::default();
        let mut window = progress::Window::new(Instant::now());
        let mut report = tokio::time::interval(self.uplink.progress_interval);
        report.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        report.tick().await;
        let mut deadline: Option<Instant> = None;
        loop {
            if deadline.is_none() && drain.is_cancelled() {
                deadline = Some(Instant::now() + self.uplink.shutdown_drain);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return;
            }
            if !unremoved.is_empty() && !backoff.is_paused(Instant::now()) {
                self.retry_removals(&mut unremoved, &mut backoff).await;
            }
            let paused = backoff.is_paused(Instant::now());
            let free = backoff.free(Instant::now());
            if free > 0 {
                let mut skip: HashSet<u64> = backoff.in_flight().iter().copied().collect();
                skip.extend(unremoved.seqs());
                match self.spool.call(move |s| s.next_unsent(free, &skip)).await {
                    Ok(batches) => {
                        if batches.is_empty()
                            && backoff.in_flight().is_empty()
                            && deadline.is_some()
                        {
                            return;
                        }
                        for batch in batches {
                            if !backoff.started(batch.seq) {
                                continue;
                            }
                            let (uploader, formats, tables) =
                                (uploader.clone(), formats.clone(), tables.clone());
                            let stats = self.stats.clone();
                            let seq = batch.seq;
                            let handle = uploads.spawn(async move {
                                let (outcome, form) =
                                    tables::send(&uploader, &formats, &tables, batch.body.clone())
                                        .await;
                                if form.legacy {
                                    stats.batches_sent_in_legacy_format.inc();
                                }
                                if form.referenced {
                                    stats.batches_sent_with_table_reference.inc();
                                }
                                if form.table_resent {
                                    stats.series_tables_resent.inc();
                                }
                                (batch, outcome)
                            });
                            seq_of.insert(handle.id(), seq);
                        }
                    }
                    Err(error) => {
                        error!(%error, "cannot read the spool; retrying");
                        backoff.pause(Instant::now(), None, fastrand::f64());
                    }
                }
            }
            let can_start = backoff.in_flight().len() < self.uplink.max_in_flight.max(1);
            tokio::select! {
                done = uploads.join_next_with_id(), if !uploads.is_empty() => match done {
                    Some(Ok((id, (batch, outcome)))) => {
                        seq_of.remove(&id);
                        self.apply(&batch, outcome, &mut backoff, &mut unremoved, &mut window)
                            .await;
                    }
                    Some(Err(e)) => {
                        // The batch stays in the spool and goes out again.
                        let seq = seq_of.remove(&e.id());
                        error!(error = %e, ?seq, "upload task failed");
                        if let Some(seq) = seq {
                            backoff.abandoned(seq);
                        }
                    }
                    None => {}
                },
                _ = self.wake.notified(), if can_start && !paused => {}
                _ = sleep_until(backoff.paused_until()), if paused => {}
                _ = tokio::time::sleep(Duration::from_secs(1)), if can_start && !paused => {}
                _ = drain.cancelled(), if deadline.is_none() => {}
                _ = sleep_until(deadline) => return,
                _ = report.tick() => self.report(&mut window).await,
            }
        }
    }

    /// Apply one upload's outcome to its batch and to the shared backoff:
    /// the window decides ([`Window::on_outcome`]), this logs and touches
    /// the spool.
    async fn apply(
        &self,
        batch: &StoredBatch,
        outcome: Outcome,
        backoff: &mut Window,
        unremoved: &mut Unremoved,
        window: &mut progress::Window,
    ) {
        let seq = batch.seq;
        let decision = backoff.on_outcome(seq, &outcome, Instant::now(), fastrand::f64());
        match decision.uplink {
            Some(Uplink::Restored {
                failed_attempts,
                down_for,
            }) => info!(
                failed_attempts,
                down_for_s = down_for.as_secs(),
                "uplink to relay restored"
            ),
            Some(Uplink::Failing) => {
                if let Outcome::Retry { reason, .. } = &outcome {
                    warn!(url = %self.uplink.url, seq, %reason, "uplink to relay failing; batches stay in the spool and are retried");
                }
            }
            Some(Uplink::FailingAgain) => {
                if let Outcome::Retry { reason, .. } = &outcome {
                    debug!(seq, %reason, "upload failed again");
                }
            }
            None => {}
        }
        match decision.action {
            Action::Remove => {
                if let Outcome::Delivered {
                    duplicate,
                    conflict,
                    ..
                } = outcome
                {
                    if duplicate {
                        debug!(seq, "relay had this batch already (duplicate)");
                        self.stats.batches_acked_as_duplicate.inc();
                    }
                    if conflict {
                        // Each batch once; only a misconfigured fleet (two boxes
                        // on one gateway id and one cloned spool) repeats it.
                        warn!(seq, instance = ?batch_instance(&batch.body), "relay knew this gateway, spool instance and seq with other content; it published the batch flagged as a conflict. Is another gateway using this gateway_id and a copy of this spool?");
                        self.stats.batches_acked_as_conflict.inc();
                    }
                }
                if let Err(error) = self.spool.call(move |s| s.remove(seq)).await {
                    // The relay has it: not sent again by this process; a
                    // restart sends it once more, answered as a duplicate.
                    self.removal_failed(unremoved, [seq], &error, backoff);
                }
                self.stats.batches_forwarded.inc();
                self.stats.readings_forwarded.add(batch.readings);
                window.add(batch.readings);
            }
            Action::Quarantine(reason) => {
                error!(seq, readings = batch.readings, %reason, "relay rejected batch; moved to quarantine");
                if let Err(error) = self
                    .spool
                    .call(move |s| s.quarantine(seq, &reason, now_us()))
                    .await
                {
                    error!(%error, seq, "cannot quarantine rejected batch; will retry");
                    backoff.pause(Instant::now(), None, fastrand::f64());
                } else {
                    self.stats.batches_quarantined.inc();
                }
            }
            Action::Keep => self.stats.upload_failures.inc(),
        }
    }

    /// Delete the confirmed batches still in the spool; on failure, back off.
    async fn retry_removals(&self, unremoved: &mut Unremoved, backoff: &mut Window) {
        let seqs = unremoved.seqs();
        let result = self
            .spool
            .call(move |s| {
                let mut gone = Vec::with_capacity(seqs.len());
                for seq in seqs {
                    if let Err(e) = s.remove(seq) {
                        return Ok((gone, Some(e)));
                    }
                    gone.push(seq);
                }
                Ok((gone, None))
            })
            .await;
        let (gone, error) = match result {
            Ok(r) => r,
            Err(e) => (Vec::new(), Some(e)),
        };
        if unremoved.removed(&gone) {
            info!("delivered batches are removed from the spool again");
            backoff.recovered();
        }
        if let Some(error) = error {
            self.removal_failed(unremoved, [], &error, backoff);
        }
    }

    /// Deleting confirmed batches failed: keep `seqs` as confirmed, count,
    /// log rate-limited, and back off as for an upload failure.
    fn removal_failed(
        &self,
        unremoved: &mut Unremoved,
        seqs: impl IntoIterator<Item = u64>,
        error: &SpoolError,
        backoff: &mut Window,
    ) {
        self.stats.spool_remove_failures.inc();
        match unremoved.failed(seqs, Instant::now()) {
            LogLine::Due { failures } => error!(
                %error,
                failures,
                confirmed_not_removed = unremoved.len(),
                "delivered batches could not be removed from the spool; they are not sent again and the delete is retried after the backoff"
            ),
            LogLine::Quiet => debug!(%error, "delete of delivered batches failed again"),
        }
        backoff.pause(Instant::now(), None, fastrand::f64());
    }

    /// Log what is left of a draining backlog, the rate and the time to empty.
    async fn report(&self, window: &mut progress::Window) {
        let (forwarded, took) = window.take(Instant::now());
        if forwarded == 0 {
            return;
        }
        let Ok(left) = self.spool.call(|s| s.stats()).await else {
            return;
        };
        if left.batches == 0 {
            return;
        }
        let e = progress::estimate(left.readings, forwarded, took);
        info!(
            batches_left = left.batches,
            readings_left = left.readings,
            readings_per_s = e.rate.round() as u64,
            eta_s = e.eta.map(|d| d.as_secs()),
            "draining backlog"
        );
    }
}

/// The spool instance a stored batch carries, in hex, for a log line.
fn batch_instance(body: &[u8]) -> Option<String> {
    let batch = edge_wire::decode(body, &edge_wire::Limits::default()).ok()?;
    batch.instance.map(|i| format!("{:016x}", i.get()))
}
