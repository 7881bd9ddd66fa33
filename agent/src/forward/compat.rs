//! Batches for a relay older than the agent: a relay that cannot read the
//! newest wire format answers 400 with the reason `bad_version` (every
//! relay version does: `edge_wire::WireError::UnsupportedVersion`); the
//! agent then sends the same batch again in the oldest format that can
//! carry it ([`edge_wire::Batch::legacy_version`]) instead of quarantining
//! it, and keeps sending that format for [`RETRY_NEWEST_AFTER`] before it
//! tries the newest one again. So agents can be upgraded before the relays
//! of their fleet, and a fleet whose relays are upgraded one by one behind
//! a load balancer loses nothing.
//!
//! Guarantees: the spool keeps what it stored (this changes only the bytes
//! on the wire); a re-encoded batch decodes to the same batch, so the
//! relay's ledger (which digests the decoded batch) recognises a batch sent
//! once in each format as one; a batch no older format can carry, or bytes
//! that do not decode, stay refused ([`Outcome::Rejected`], quarantined as
//! before).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use super::upload::{Outcome, Uploader};

/// How long the agent sends the older format after a refusal before it
/// tries the newest again (the relay may have been upgraded meanwhile).
pub const RETRY_NEWEST_AFTER: Duration = Duration::from_secs(600);

/// What the forwarder knows of the relay's formats: when it last refused
/// the newest one. Shared by the uploads in flight.
#[derive(Debug, Default)]
pub struct RelayFormats {
    refused_at: Mutex<Option<Instant>>,
}

impl RelayFormats {
    /// Whether to send the older format first at `now`.
    pub fn prefer_legacy(&self, now: Instant) -> bool {
        let refused = *self.refused_at.lock().unwrap_or_else(|e| e.into_inner());
        refused.is_some_and(|at| now.saturating_duration_since(at) < RETRY_NEWEST_AFTER)
    }

    /// The relay refused the newest format at `now`.
    pub fn refused(&self, now: Instant) {
        *self.refused_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(now);
    }
}

/// `body` re-encoded in the oldest format that can carry its batch, or
/// `None` when it already is in that format or does not decode (the
/// spool's checksums make the latter a bug, not a state to recover from).
pub fn legacy_body(body: &[u8]) -> Option<Vec<u8>> {
    let version = edge_wire::encoded_version(body).ok()?;
    let batch = edge_wire::decode(body, &edge_wire::Limits::default()).ok()?;
    let legacy = batch.legacy_version();
    (legacy < version)
        .then(|| edge_wire::codec::encode_version(&batch, legacy).ok())
        .flatten()
}

/// Upload `body`, in the older format when the relay is known to refuse
/// the newest, and again in the older format when it refuses the newest
/// now. The outcome is never [`Outcome::TooNew`]: a refusal no older format
/// helps with is [`Outcome::Rejected`]. The second field says whether the
/// batch went out in the older format.
pub async fn send(uploader: &Uploader, formats: &RelayFormats, body: Vec<u8>) -> (Outcome, bool) {
    if formats.prefer_legacy(Instant::now()) {
        if let Some(legacy) = legacy_body(&body) {
            return (settle(uploader.send(legacy).await), true);
        }
    }
    match uploader.send(body.clone()).await {
        Outcome::TooNew(reason) => match legacy_body(&body) {
            Some(legacy) => {
                // About once per RETRY_NEWEST_AFTER (once per upload in
                // flight at the refusal): until then the older format
                // goes first.
                warn!(%reason, "the relay does not read the newest wire format; sending batches in the older one (upgrade the relay)");
                formats.refused(Instant::now());
                (settle(uploader.send(legacy).await), true)
            }
            None => (Outcome::Rejected(reason), false),
        },
        outcome => (outcome, false),
    }
}

/// A refusal of the older format too is final.
fn settle(outcome: Outcome) -> Outcome {
    match outcome {
        Outcome::TooNew(reason) => Outcome::Rejected(reason),
        outcome => outcome,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::tests::batch;

    #[test]
    fn a_newest_format_body_becomes_the_same_batch_in_its_legacy_format() {
        let b = batch(20);
        let newest = edge_wire::encode(&b).unwrap();
        assert_eq!(
            edge_wire::encoded_version(&newest).unwrap(),
            edge_wire::FORMAT_VERSION
        );
        let legacy = legacy_body(&newest).expect("an older format carries it");
        assert_eq!(edge_wire::encoded_version(&legacy).unwrap(), 2);
        assert_eq!(edge_wire::decode(&legacy, &Default::default()).unwrap(), b);
        // Already legacy, or not a batch: nothing to re-encode.
        assert_eq!(legacy_body(&legacy), None);
        assert_eq!(legacy_body(b"EDGB\x00\x06garbage"), None);
    }

    #[test]
    fn the_older_format_is_preferred_for_ten_minutes_after_a_refusal() {
        let formats = RelayFormats::default();
        let t0 = Instant::now();
        assert!(!formats.prefer_legacy(t0));
        formats.refused(t0);
        assert!(formats.prefer_legacy(t0 + Duration::from_secs(599)));
        assert!(!formats.prefer_legacy(t0 + RETRY_NEWEST_AFTER));
    }
}
