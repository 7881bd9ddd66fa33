//! Batches the relay confirmed that could not yet be removed from the spool.
//!
//! When the delete of a delivered batch fails (a full disk, a locked or
//! damaged database), the row stays in the spool but the relay already has
//! the batch. [`Unremoved`] keeps those sequence numbers in memory so the
//! forwarder neither sends them again nor lets them block the drain: it
//! retries the deletes after the upload backoff, and they are skipped when
//! picking what to send next. The set lives only as long as the process; a
//! restart sends such batches once more and the relay answers them as
//! duplicates (same spool instance and seq), which loses and doubles nothing.
//!
//! The failure is logged rate-limited ([`Unremoved::failed`] says when a
//! log line is due): the first failure at once, then at most one line per
//! [`LOG_EVERY`] carrying the number of failures since the last line.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

/// At most one log line about failing deletes per this interval.
pub const LOG_EVERY: Duration = Duration::from_secs(30);

/// Confirmed, not yet removed batches and the log limiter for their deletes.
#[derive(Debug, Default)]
pub struct Unremoved {
    seqs: BTreeSet<u64>,
    /// When the last line was logged, and failures since then.
    logged: Option<(Instant, u64)>,
}

/// What the caller logs after [`Unremoved::failed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLine {
    /// Nothing: a line was logged less than [`LOG_EVERY`] ago.
    Quiet,
    /// Log now; `failures` deletes failed since the previous line
    /// (this one included).
    Due { failures: u64 },
}

impl Unremoved {
    pub fn is_empty(&self) -> bool {
        self.seqs.is_empty()
    }

    pub fn len(&self) -> usize {
        self.seqs.len()
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.seqs.contains(&seq)
    }

    /// The sequence numbers waiting for their delete, oldest first.
    pub fn seqs(&self) -> Vec<u64> {
        self.seqs.iter().copied().collect()
    }

    /// Deleting `seqs` (confirmed by the relay) failed at `now`.
    pub fn failed(&mut self, seqs: impl IntoIterator<Item = u64>, now: Instant) -> LogLine {
        self.seqs.extend(seqs);
        match &mut self.logged {
            Some((at, n)) if now.duration_since(*at) < LOG_EVERY => {
                *n += 1;
                LogLine::Quiet
            }
            Some((at, n)) => {
                let failures = *n + 1;
                *at = now;
                *n = 0;
                LogLine::Due { failures }
            }
            None => {
                self.logged = Some((now, 0));
                LogLine::Due { failures: 1 }
            }
        }
    }

    /// `seqs` are gone from the spool. Returns true when this ends a run of
    /// failures (the set is empty again), so the caller can log the recovery.
    pub fn removed(&mut self, seqs: &[u64]) -> bool {
        for s in seqs {
            self.seqs.remove(s);
        }
        if self.seqs.is_empty() && self.logged.is_some() {
            self.logged = None;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_logged_at_most_once_per_interval_with_their_count() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut u = Unremoved::default();
        // (seq failing, at) -> line
        let cases = [
            (1, s(0), LogLine::Due { failures: 1 }),
            (2, s(1), LogLine::Quiet),
            (3, s(29), LogLine::Quiet),
            (1, s(30), LogLine::Due { failures: 3 }),
            (1, s(31), LogLine::Quiet),
            (1, s(61), LogLine::Due { failures: 2 }),
        ];
        for (seq, at, line) in cases {
            assert_eq!(u.failed([seq], t0 + at), line, "seq {seq} at {at:?}");
        }
        assert_eq!(u.seqs(), vec![1, 2, 3]);
        assert!(u.contains(2) && !u.contains(4));
    }

    #[test]
    fn recovery_is_reported_once_when_the_last_one_is_removed() {
        let t0 = Instant::now();
        let mut u = Unremoved::default();
        assert!(!u.removed(&[9]), "nothing was failing");
        u.failed([4, 5], t0);
        assert!(!u.removed(&[4]));
        assert_eq!(u.len(), 1);
        assert!(u.removed(&[5]));
        assert!(u.is_empty());
        // A new run of failures logs at once again.
        assert_eq!(
            u.failed([6], t0 + Duration::from_secs(1)),
            LogLine::Due { failures: 1 }
        );
    }
}
