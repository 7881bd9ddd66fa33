//! The forwarder: sends the next spooled batch to the relay (the oldest
//! alarm-only batch of the priority lane first, then the oldest reading
//! batch; see [`crate::spool`]) and removes it from the spool only after a
//! 2xx answer. One batch at a time, so an alarm raised during an outage
//! goes out before the reading backlog.
//!
//! - network errors, timeouts, 5xx, 401/403 and 429 are transient: the batch
//!   stays and is retried with exponential backoff and jitter, honouring a
//!   `Retry-After` header (capped at `retry_max`);
//! - 400, 413 and 422 mean the relay will never accept these bytes: the
//!   batch is moved to the spool's quarantine table, logged and counted, so
//!   one bad batch cannot block the queue forever.
//!
//! The uplink going down and coming back are logged once each, not per try.

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::UplinkConfig;
use crate::reading::now_us;
use crate::spool::{SharedSpool, StoredBatch};
use crate::stats::AgentStats;

/// Media type of an encoded batch (see docs/wire-format.md).
pub const BATCH_CONTENT_TYPE: &str = "application/vnd.edge-ingest.batch";

pub struct Forwarder {
    pub spool: SharedSpool,
    pub uplink: UplinkConfig,
    pub gateway_id: String,
    pub stats: Arc<AgentStats>,
    /// Signalled when a batch is appended, so an idle forwarder wakes at once.
    pub wake: Arc<Notify>,
}

enum Outcome {
    Delivered,
    Rejected(String),
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}

impl Forwarder {
    /// Forward until `drain` is cancelled, then keep going until the spool is
    /// empty or `uplink.shutdown_drain` has passed.
    pub async fn run(self, drain: CancellationToken) {
        let client = match reqwest::Client::builder()
            .timeout(self.uplink.timeout)
            .no_proxy()
            .build()
        {
            Ok(c) => c,
            Err(error) => {
                error!(%error, "cannot build the HTTP client; forwarding disabled");
                return;
            }
        };
        let mut backoff = self.uplink.retry_initial;
        let mut failing_since: Option<(Instant, u64)> = None;
        let mut deadline: Option<Instant> = None;
        loop {
            if deadline.is_none() && drain.is_cancelled() {
                deadline = Some(Instant::now() + self.uplink.shutdown_drain);
            }
            let next = match self.spool.call(|s| s.oldest()).await {
                Ok(n) => n,
                Err(error) => {
                    error!(%error, "cannot read the spool; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = until(deadline) => return,
                    }
                    continue;
                }
            };
            let Some(batch) = next else {
                if deadline.is_some() {
                    return;
                }
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = drain.cancelled() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                continue;
            };
            let outcome = tokio::select! {
                o = self.send(&client, &batch) => o,
                _ = until(deadline) => return,
            };
            match outcome {
                Outcome::Delivered => {
                    if let Some((since, tries)) = failing_since.take() {
                        info!(
                            failed_attempts = tries,
                            down_for_s = since.elapsed().as_secs(),
                            "uplink to relay restored"
                        );
                    }
                    backoff = self.uplink.retry_initial;
                    let seq = batch.seq;
                    if let Err(error) = self.spool.call(move |s| s.remove(seq)).await {
                        // The relay has it; if the row survives, it is sent
                        // again and arrives as a duplicate with the same seq.
                        error!(%error, seq, "delivered batch could not be removed from the spool");
                    }
                    self.stats.batches_forwarded.inc();
                    self.stats.readings_forwarded.add(batch.readings);
                }
                Outcome::Rejected(reason) => {
                    error!(seq = batch.seq, readings = batch.readings, %reason, "relay rejected batch; moved to quarantine");
                    let seq = batch.seq;
                    let why = reason.clone();
                    if let Err(error) = self
                        .spool
                        .call(move |s| s.quarantine(seq, &why, now_us()))
                        .await
                    {
                        error!(%error, seq, "cannot quarantine rejected batch; will retry");
                        tokio::time::sleep(backoff).await;
                    } else {
                        self.stats.batches_quarantined.inc();
                    }
                }
                Outcome::Retry { reason, after } => {
                    self.stats.upload_failures.inc();
                    match &mut failing_since {
                        None => {
                            warn!(url = %self.uplink.url, %reason, "uplink to relay failing; batches stay in the spool and are retried");
                            failing_since = Some((Instant::now(), 1));
                        }
                        Some((_, tries)) => *tries += 1,
                    }
                    let wait = after.unwrap_or(backoff).min(self.uplink.retry_max);
                    let jittered = wait.mul_f64(0.5 + fastrand::f64() * 0.5);
                    backoff = (backoff * 2).min(self.uplink.retry_max);
                    tokio::select! {
                        _ = tokio::time::sleep(jittered) => {}
                        _ = until(deadline) => return,
                    }
                }
            }
        }
    }

    async fn send(&self, client: &reqwest::Client, batch: &StoredBatch) -> Outcome {
        let response = client
            .post(&self.uplink.url)
            .bearer_auth(&self.uplink.token)
            .header(reqwest::header::CONTENT_TYPE, BATCH_CONTENT_TYPE)
            .header("x-edge-gateway", &self.gateway_id)
            .body(batch.body.clone())
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => {
                return Outcome::Retry {
                    reason: format!("request failed: {e}"),
                    after: None,
                }
            }
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Delivered;
        }
        let after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response.text().await.unwrap_or_default();
        let reason = format!(
            "relay answered {status}: {}",
            body.chars().take(300).collect::<String>()
        );
        match status {
            StatusCode::BAD_REQUEST
            | StatusCode::PAYLOAD_TOO_LARGE
            | StatusCode::UNPROCESSABLE_ENTITY => Outcome::Rejected(reason),
            _ => Outcome::Retry { reason, after },
        }
    }
}

/// Completes at `deadline`, or never when there is none.
async fn until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
