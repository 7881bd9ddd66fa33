//! Whether a Modbus device (or the link to it) answers, and when it may be
//! asked again: the pure state machine behind the poll loop's backoff.
//!
//! Decided here, once:
//! - a device starts **up**. One failed request (after the configured
//!   repeats) makes it **down**: the next attempt waits
//!   `backoff_delay(poll_interval, failures, BACKOFF_MAX, jitter)`, so the
//!   wait doubles with every failure in a row, up to [`BACKOFF_MAX`], and is
//!   jittered into [50 %, 100 %) of that;
//! - a device that is down gets one try per attempt, without repeats
//!   ([`Health::retries`]): repeating a request to a dead device only
//!   multiplies the time it holds a shared serial line;
//! - the first answer of a device that is down makes it up again at once,
//!   with the failure count reset;
//! - each transition is reported once ([`Change`]), so the caller logs a
//!   device going down and coming back, never every failed attempt;
//! - an exception reply is an answer: it is not a failure here (the poll
//!   loop counts it per code and marks the block's readings bad).
//!
//! Time and the random draw are passed in; nothing here sleeps or logs.

use std::time::Duration;

use tokio::time::Instant;

use crate::timing::backoff_delay;

/// Longest wait between attempts to reach a device or open a link.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What an outcome changed, for the one log line per transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Nothing worth a log line.
    None,
    /// The device (or link) was up and is now down.
    WentDown,
    /// The device was down and answered; `failed_attempts` in a row before.
    CameBack { failed_attempts: u32 },
}

/// One device's (or one link's) health.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    failures: u32,
    hold: Option<Instant>,
}

impl Health {
    /// Whether the last attempt failed.
    pub fn is_down(&self) -> bool {
        self.failures > 0
    }

    /// Failed attempts in a row (0 when up).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Not to be asked before this instant (`None`: whenever it is due).
    pub fn hold(&self) -> Option<Instant> {
        self.hold
    }

    /// How many times a failed request is repeated at once: the
    /// configured number while up, none while down.
    pub fn retries(&self, configured: u32) -> u32 {
        if self.is_down() {
            0
        } else {
            configured
        }
    }

    /// The device answered (data or an exception).
    pub fn on_answer(&mut self) -> Change {
        let failed_attempts = self.failures;
        *self = Health::default();
        if failed_attempts > 0 {
            Change::CameBack { failed_attempts }
        } else {
            Change::None
        }
    }

    /// A request got no usable answer at `now`; `base` is the device's poll
    /// interval and `unit_random` a draw in [0, 1) for the jitter.
    pub fn on_failure(&mut self, now: Instant, base: Duration, unit_random: f64) -> Change {
        let was_up = !self.is_down();
        self.failures = self.failures.saturating_add(1);
        self.hold = Some(now + backoff_delay(base, self.failures, BACKOFF_MAX, unit_random));
        if was_up {
            Change::WentDown
        } else {
            Change::None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One step of a table: what happened, after how many ms from the start,
    /// and what the machine must say and hold afterwards.
    enum Step {
        Fail { at_ms: u64, jitter: f64 },
        Answer,
    }

    struct Row {
        step: Step,
        change: Change,
        failures: u32,
        /// Hold, in ms from the start; `None` for no hold.
        hold_ms: Option<u64>,
        retries: u32,
    }

    fn run(base_ms: u64, rows: &[Row]) {
        let t0 = Instant::now();
        let base = Duration::from_millis(base_ms);
        let mut h = Health::default();
        for (i, row) in rows.iter().enumerate() {
            let change = match row.step {
                Step::Fail { at_ms, jitter } => {
                    h.on_failure(t0 + Duration::from_millis(at_ms), base, jitter)
                }
                Step::Answer => h.on_answer(),
            };
            assert_eq!(change, row.change, "row {i}: change");
            assert_eq!(h.failures(), row.failures, "row {i}: failures");
            assert_eq!(h.is_down(), row.failures > 0, "row {i}: is_down");
            assert_eq!(
                h.hold(),
                row.hold_ms.map(|ms| t0 + Duration::from_millis(ms)),
                "row {i}: hold"
            );
            assert_eq!(h.retries(3), row.retries, "row {i}: retries");
        }
    }

    #[test]
    #[rustfmt::skip]
    fn backoff_doubles_per_failure_caps_at_the_maximum_and_resets_on_an_answer() {
        use Step::*;
        // jitter 1.0 is clamped to the top of the range: exactly the
        // undelayed backoff; 0.0 halves it.
        run(
            1000,
            &[
                Row { step: Fail { at_ms: 0, jitter: 1.0 }, change: Change::WentDown, failures: 1, hold_ms: Some(2_000), retries: 0 },
                Row { step: Fail { at_ms: 2_000, jitter: 1.0 }, change: Change::None, failures: 2, hold_ms: Some(6_000), retries: 0 },
                Row { step: Fail { at_ms: 6_000, jitter: 0.0 }, change: Change::None, failures: 3, hold_ms: Some(10_000), retries: 0 },
                Row { step: Fail { at_ms: 10_000, jitter: 1.0 }, change: Change::None, failures: 4, hold_ms: Some(26_000), retries: 0 },
                // 2^5 s = 32 s is above the 30 s cap.
                Row { step: Fail { at_ms: 26_000, jitter: 1.0 }, change: Change::None, failures: 5, hold_ms: Some(56_000), retries: 0 },
                Row { step: Fail { at_ms: 56_000, jitter: 0.0 }, change: Change::None, failures: 6, hold_ms: Some(71_000), retries: 0 },
                Row { step: Answer, change: Change::CameBack { failed_attempts: 6 }, failures: 0, hold_ms: None, retries: 3 },
                Row { step: Answer, change: Change::None, failures: 0, hold_ms: None, retries: 3 },
                Row { step: Fail { at_ms: 80_000, jitter: 1.0 }, change: Change::WentDown, failures: 1, hold_ms: Some(82_000), retries: 0 },
            ],
        );
    }

    #[test]
    #[rustfmt::skip]
    fn a_fast_poll_interval_backs_off_from_its_own_base() {
        use Step::*;
        run(
            20,
            &[
                Row { step: Fail { at_ms: 0, jitter: 1.0 }, change: Change::WentDown, failures: 1, hold_ms: Some(40), retries: 0 },
                Row { step: Fail { at_ms: 40, jitter: 1.0 }, change: Change::None, failures: 2, hold_ms: Some(120), retries: 0 },
                Row { step: Answer, change: Change::CameBack { failed_attempts: 2 }, failures: 0, hold_ms: None, retries: 3 },
            ],
        );
    }

    #[test]
    fn a_device_that_never_answers_keeps_a_bounded_wait() {
        let t0 = Instant::now();
        let mut h = Health::default();
        for i in 0..10_000u64 {
            h.on_failure(t0, Duration::from_secs(10), 1.0);
            assert!(h.hold().unwrap() - t0 <= BACKOFF_MAX, "attempt {i}");
        }
        assert_eq!(h.failures(), 10_000);
        assert!(h.is_down());
    }
}
