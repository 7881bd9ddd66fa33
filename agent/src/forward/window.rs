//! The forwarder's window, as a pure state machine: which batches are in
//! flight, how many more may start, and the backoff shared by all uploads
//! (one relay, one backoff). It takes the time and the random draw for the
//! jitter, and returns decisions; [`super::Forwarder`] does the I/O.
//!
//! Rules, each decided here once:
//! - at most `max_in_flight` uploads at once, a seq in flight at most once;
//! - while paused, no upload starts (those in flight finish and are
//!   applied);
//! - a delivery ([`Outcome::Delivered`]) removes its batch and resets the
//!   backoff to `retry_initial`; the first delivery after failures says
//!   the uplink is restored, with how many attempts failed and for how long;
//! - a rejection ([`Outcome::Rejected`]) quarantines its batch, without
//!   touching the backoff;
//! - a transient failure ([`Outcome::Retry`]) pauses for the backoff (or the
//!   relay's `Retry-After`), capped at `retry_max` and jittered into
//!   [50 %, 100 %), and doubles the backoff; the first failure of a run says
//!   the uplink is failing;
//! - a local failure (the spool could not remove, quarantine or read)
//!   pauses the same way ([`Window::pause`]).

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use super::upload::Outcome;
use crate::timing::jittered;

/// What to do with a batch whose upload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The relay has it: remove it from the spool.
    Remove,
    /// The relay will never take it: move it to the quarantine table.
    Quarantine(String),
    /// Keep it; it goes out again after the pause.
    Keep,
}

/// A change of the uplink's state worth one log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Uplink {
    /// The first failure of a run.
    Failing,
    /// Another failure of the same run.
    FailingAgain,
    /// A delivery after `failed_attempts` failures over `down_for`.
    Restored {
        failed_attempts: u64,
        down_for: Duration,
    },
}

/// The decision for one ended upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub uplink: Option<Uplink>,
}

/// The in-flight set and the shared backoff.
#[derive(Debug)]
pub struct Window {
    max_in_flight: usize,
    retry_initial: Duration,
    retry_max: Duration,
    in_flight: BTreeSet<u64>,
    /// The next pause after a failure, before jitter.
    next: Duration,
    /// No new upload starts before this.
    paused_until: Option<Instant>,
    /// Since when uploads fail, and how many failed.
    failing_since: Option<(Instant, u64)>,
}

impl Window {
    pub fn new(max_in_flight: usize, retry_initial: Duration, retry_max: Duration) -> Window {
        Window {
            max_in_flight: max_in_flight.max(1),
            retry_initial,
            retry_max,
            in_flight: BTreeSet::new(),
            next: retry_initial,
            paused_until: None,
            failing_since: None,
        }
    }

    pub fn is_paused(&self, now: Instant) -> bool {
        self.paused_until.is_some_and(|t| now < t)
    }

    /// When the pause ends, if one is set.
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
    }

    /// How many uploads may start at `now`: 0 while paused or full.
    pub fn free(&self, now: Instant) -> usize {
        if self.is_paused(now) {
            return 0;
        }
        self.max_in_flight.saturating_sub(self.in_flight.len())
    }

    /// The seqs in flight, to skip when picking the next batches.
    pub fn in_flight(&self) -> &BTreeSet<u64> {
        &self.in_flight
    }

    /// An upload of `seq` started. False (and nothing changes) when it is
    /// in flight already or the window is full.
    pub fn started(&mut self, seq: u64) -> bool {
        if self.in_flight.len() >= self.max_in_flight {
            return false;
        }
        self.in_flight.insert(seq)
    }

    /// The upload of `seq` ended without an outcome (its task failed): it
    /// leaves the window and goes out again.
    pub fn abandoned(&mut self, seq: u64) {
        self.in_flight.remove(&seq);
    }

    /// The upload of `seq` ended with `outcome` at `now`; `unit_random` in
    /// [0, 1) jitters a pause.
    pub fn on_outcome(
        &mut self,
        seq: u64,
        outcome: &Outcome,
        now: Instant,
        unit_random: f64,
    ) -> Decision {
        self.in_flight.remove(&seq);
        match outcome {
            Outcome::Delivered { .. } => {
                let uplink =
                    self.failing_since
                        .take()
                        .map(|(since, failed_attempts)| Uplink::Restored {
                            failed_attempts,
                            down_for: now.saturating_duration_since(since),
                        });
                self.next = self.retry_initial;
                Decision {
                    action: Action::Remove,
                    uplink,
                }
            }
            Outcome::Rejected(reason) | Outcome::TooNew(reason) => Decision {
                action: Action::Quarantine(reason.clone()),
                uplink: None,
            },
            // [`super::tables::send`] answers this itself by sending the
            // table; should one get here, the batch goes again, inline.
            Outcome::UnknownTable(_) => Decision {
                action: Action::Keep,
                uplink: None,
            },
            Outcome::Retry { after, .. } => {
                let uplink = match &mut self.failing_since {
                    None => {
                        self.failing_since = Some((now, 1));
                        Uplink::Failing
                    }
                    Some((_, tries)) => {
                        *tries += 1;
                        Uplink::FailingAgain
                    }
                };
                self.pause(now, *after, unit_random);
                Decision {
                    action: Action::Keep,
                    uplink: Some(uplink),
                }
            }
        }
    }

    /// Start no new upload for the backoff (or `after`, as the relay asked),
    /// capped and jittered, and double the backoff. A pause already longer
    /// stays.
    pub fn pause(&mut self, now: Instant, after: Option<Duration>, unit_random: f64) {
        let wait = after.unwrap_or(self.next).min(self.retry_max);
        let until = now + jittered(wait, unit_random);
        self.paused_until = Some(self.paused_until.map_or(until, |t| t.max(until)));
        self.next = (self.next * 2).min(self.retry_max);
    }

    /// Something that had failed works again (delivered batches could be
    /// removed after all): the backoff starts over.
    pub fn recovered(&mut self) {
        self.next = self.retry_initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn delivered() -> Outcome {
        Outcome::Delivered {
            duplicate: false,
            conflict: false,
            series_table: None,
        }
    }

    fn retry(after: Option<Duration>) -> Outcome {
        Outcome::Retry {
            reason: "503".into(),
            after,
        }
    }

    #[test]
    fn a_window_table() {
        let t0 = Instant::now();
        let mut w = Window::new(2, 100 * MS, 1000 * MS);
        assert_eq!(w.free(t0), 2);
        assert!(w.started(1) && w.started(2));
        assert!(!w.started(3), "full at max_in_flight");
        assert!(!w.started(1), "a seq in flight once");
        assert_eq!(w.free(t0), 0);
        // (seq, outcome, at ms, jitter draw, expected action, uplink,
        //  paused until ms after t0, free after)
        type Step = (
            u64,
            Outcome,
            u64,
            f64,
            Action,
            Option<Uplink>,
            Option<u64>,
            usize,
        );
        let steps: Vec<Step> = vec![
            // A failure pauses for the backoff (100 ms, jitter 0 → 50 ms).
            (
                1,
                retry(None),
                10,
                0.0,
                Action::Keep,
                Some(Uplink::Failing),
                Some(60),
                0,
            ),
            // Another, now the backoff is 200 ms (jitter ~1 → ~200 ms); the
            // later pause wins.
            (
                2,
                retry(None),
                20,
                0.999_999,
                Action::Keep,
                Some(Uplink::FailingAgain),
                Some(220),
                0,
            ),
            // The relay's Retry-After is capped at retry_max (1 s).
            (
                3,
                retry(Some(Duration::from_secs(60))),
                30,
                0.0,
                Action::Keep,
                Some(Uplink::FailingAgain),
                Some(530),
                0,
            ),
            // A delivery restores the uplink and resets the backoff; the
            // pause set before still holds.
            (
                4,
                delivered(),
                600,
                0.0,
                Action::Remove,
                Some(Uplink::Restored {
                    failed_attempts: 3,
                    down_for: 590 * MS,
                }),
                Some(530),
                2,
            ),
            // A rejection quarantines and leaves the backoff alone.
            (
                5,
                Outcome::Rejected("422 invalid".into()),
                610,
                0.0,
                Action::Quarantine("422 invalid".into()),
                None,
                Some(530),
                2,
            ),
            // After the reset, a failure waits retry_initial again.
            (
                6,
                retry(None),
                700,
                0.0,
                Action::Keep,
                Some(Uplink::Failing),
                Some(750),
                0,
            ),
        ];
        for (i, (seq, outcome, at, r, action, uplink, paused, free)) in
            steps.into_iter().enumerate()
        {
            let now = t0 + Duration::from_millis(at);
            let d = w.on_outcome(seq, &outcome, now, r);
            assert_eq!(d.action, action, "step {i}");
            assert_eq!(d.uplink, uplink, "step {i}");
            let until = w.paused_until().map(|u| (u - t0).as_millis() as u64);
            match paused {
                // Jitter near 1 lands a hair under the full wait.
                Some(ms) => assert!(
                    until.is_some_and(|u| u + 1 >= ms && u <= ms),
                    "step {i}: {until:?}"
                ),
                None => assert_eq!(until, None, "step {i}"),
            }
            assert_eq!(w.free(now), free, "step {i}");
        }
    }

    #[test]
    fn an_abandoned_upload_frees_its_place_and_a_local_failure_pauses() {
        let t0 = Instant::now();
        let mut w = Window::new(1, 100 * MS, 400 * MS);
        assert!(w.started(7));
        w.abandoned(7);
        assert_eq!(w.free(t0), 1);
        w.pause(t0, None, 0.0);
        w.pause(t0, None, 0.0);
        w.pause(t0, None, 0.0);
        // 100, then 200, then 400 (capped): the longest pause, 200 ms after
        // jitter 0, holds.
        assert_eq!(w.paused_until(), Some(t0 + 200 * MS));
        assert!(w.is_paused(t0 + 199 * MS) && !w.is_paused(t0 + 200 * MS));
        w.recovered();
        w.pause(t0 + 300 * MS, None, 0.0);
        assert_eq!(w.paused_until(), Some(t0 + 350 * MS));
    }
}
