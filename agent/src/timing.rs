//! Time helpers shared by the sources, the pipeline and the forwarder: a
//! log limiter, the jittered exponential backoff, and a sleep that waits
//! forever when there is nothing to wait for.
//!
//! The limiter and the backoff are pure: the caller passes the time and the
//! random draw, so both are tested with tables and no clock.

use std::time::Duration;

use tokio::time::Instant;

/// Lets a repeating condition be logged once per interval, counting the
/// occurrences in between.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    next: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    pub const fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            next: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` when the occurrence at `now` should be logged, `n` being
    /// how many were suppressed since the last line; `None` when not.
    pub fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.next.is_some_and(|next| now < next) {
            self.suppressed += 1;
            return None;
        }
        self.next = Some(now + self.interval);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// `d` scaled into [50 %, 100 %) by `unit_random` (in [0, 1)), so that many
/// clients that failed together do not retry in the same instant.
pub fn jittered(d: Duration, unit_random: f64) -> Duration {
    d.mul_f64(0.5 + 0.5 * unit_random.clamp(0.0, 1.0))
}

/// The wait before the next attempt after `failures` (>= 1) failed ones:
/// `base * 2^failures`, at most `max`, then [`jittered`].
pub fn backoff_delay(base: Duration, failures: u32, max: Duration, unit_random: f64) -> Duration {
    jittered(
        base.saturating_mul(1u32 << failures.min(20)).min(max),
        unit_random,
    )
}

/// Completes at `at`, or never when it is `None` (for a `select!` branch
/// whose deadline may not be set).
pub async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeating_condition_is_logged_once_per_interval_with_a_count() {
        let mut l = LogLimiter::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(l.allow(t0), Some(0));
        assert_eq!(l.allow(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(9)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(l.allow(t0 + Duration::from_secs(11)), None);
        assert_eq!(l.allow(t0 + Duration::from_secs(60)), Some(1));
    }

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
