//! The pure core of the ledger: which batches are claimed (being delivered)
//! and until when, and what the delivered rows say about a batch. No I/O and
//! no clock: time comes in as `now_ms` (ms since the Unix epoch).
//!
//! - A claim is a *lease*: it holds until it is released by the token that
//!   took it, or until `now_ms` passes its expiry, whichever comes first. A
//!   claim whose holder vanished (a relay killed, a future dropped before
//!   its guard existed) therefore frees itself, and a release by a token
//!   that no longer holds the claim (it expired and was taken over) is a
//!   no-op instead of freeing someone else's claim.
//! - [`verdict`] decides from the content digests recorded for a batch key:
//!   the same digest (or a row from before digests were kept) is a
//!   duplicate, only other digests a conflict, none a new batch.

use std::collections::HashMap;

use super::{ClaimKey, Digest, UNKNOWN_DIGEST};

/// One claim: who holds it and until when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The token of the request that holds it.
    pub token: u64,
    /// When it frees itself, ms since the Unix epoch.
    pub expires_ms: i64,
}

/// The claims held in this process (the SQLite ledger's; the PostgreSQL
/// ledger keeps the same leases in a table).
#[derive(Debug, Default)]
pub struct Claims {
    held: HashMap<ClaimKey, Lease>,
}

impl Claims {
    /// Take `key` for `token` until `now_ms + lease_ms` when it is free or
    /// its lease has expired; false when another live claim holds it.
    pub fn try_claim(&mut self, key: &ClaimKey, token: u64, now_ms: i64, lease_ms: i64) -> bool {
        let lease = Lease {
            token,
            expires_ms: now_ms.saturating_add(lease_ms),
        };
        match self.held.get_mut(key) {
            Some(held) if held.expires_ms > now_ms && held.token != token => false,
            Some(held) => {
                *held = lease;
                true
            }
            None => {
                self.held.insert(key.clone(), lease);
                true
            }
        }
    }

    /// Give `key` up if `token` holds it; true when it did.
    pub fn release(&mut self, key: &ClaimKey, token: u64) -> bool {
        if self.held.get(key).is_some_and(|l| l.token == token) {
            self.held.remove(key);
            true
        } else {
            false
        }
    }

    /// Forget the claims whose lease ended by `now_ms`; how many.
    pub fn expire(&mut self, now_ms: i64) -> usize {
        let before = self.held.len();
        self.held.retain(|_, l| l.expires_ms > now_ms);
        before - self.held.len()
    }

    /// Claims held (live or not yet expired away).
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// True when no claim is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

/// What the rows recorded for a batch key say about a batch with `digest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing recorded: deliver it.
    New,
    /// This content was delivered before: answer without publishing.
    Delivered,
    /// Other content was delivered under the same key (a gateway whose
    /// spool started again without an instance id, or two gateways sharing
    /// one id and spool image): deliver it too, flagged.
    Conflict,
}

/// Decide from the digests recorded for the key; [`UNKNOWN_DIGEST`] (rows
/// written before digests were kept) counts as a match, as it did then.
pub fn verdict(recorded: &[Digest], digest: &Digest) -> Verdict {
    if recorded.iter().any(|d| d == digest || *d == UNKNOWN_DIGEST) {
        Verdict::Delivered
    } else if recorded.is_empty() {
        Verdict::New
    } else {
        Verdict::Conflict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::BatchKey;

    fn key(seq: u64) -> ClaimKey {
        (
            BatchKey {
                gateway: "gw".into(),
                instance: 9,
                seq,
            },
            [seq as u8; 16],
        )
    }

    #[test]
    fn leases_hold_until_released_or_expired() {
        // (step, now_ms, action, expected)
        enum Step {
            Claim(u64),
            Release(u64),
        }
        use Step::*;
        let cases: &[(i64, Step, bool)] = &[
            (0, Claim(1), true),      // free: taken until 100
            (50, Claim(2), false),    // held by 1
            (50, Claim(1), true),     // the holder renews: until 150
            (149, Claim(2), false),   // still held
            (120, Release(2), false), // 2 does not hold it: no effect
            (149, Claim(2), false),   // so still held by 1
            (150, Claim(2), true),    // 1's lease ended at 150: 2 takes over
            (160, Release(1), false), // 1's late release frees nothing
            (170, Claim(3), false),   // 2 holds it
            (170, Release(2), true),  // 2 gives it up
            (171, Claim(3), true),    // free again
        ];
        let mut claims = Claims::default();
        for (i, (now, step, expected)) in cases.iter().enumerate() {
            let got = match step {
                Claim(token) => claims.try_claim(&key(1), *token, *now, 100),
                Release(token) => claims.release(&key(1), *token),
            };
            assert_eq!(got, *expected, "step {i} at {now} ms");
        }
        // Another key is independent.
        assert!(claims.try_claim(&key(2), 4, 171, 100));
    }

    #[test]
    fn expired_leases_are_forgotten() {
        let mut claims = Claims::default();
        assert!(claims.try_claim(&key(1), 1, 0, 100));
        assert!(claims.try_claim(&key(2), 2, 50, 100));
        assert_eq!(claims.expire(99), 0);
        assert_eq!(claims.expire(100), 1);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims.expire(150), 1);
        assert!(claims.is_empty());
    }

    #[test]
    fn verdicts() {
        let a = [1u8; 16];
        let b = [2u8; 16];
        let cases: &[(&[Digest], Verdict)] = &[
            (&[], Verdict::New),
            (&[a], Verdict::Delivered),
            (&[b], Verdict::Conflict),
            (&[b, a], Verdict::Delivered),
            (&[UNKNOWN_DIGEST], Verdict::Delivered),
            (&[b, UNKNOWN_DIGEST], Verdict::Delivered),
        ];
        for (recorded, expected) in cases {
            assert_eq!(verdict(recorded, &a), *expected, "{recorded:?}");
        }
    }
}
