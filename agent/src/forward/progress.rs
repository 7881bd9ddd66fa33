//! Drain progress: how fast the backlog goes down and when it will be empty.
//! [`estimate`] is a pure function of what is left and what went out in the
//! last window; [`Window`] counts what went out. The forwarder logs the
//! result at `[uplink] progress_interval_ms` while a backlog drains.

use std::time::Duration;

use tokio::time::Instant;

/// Rate and time to empty, from one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrainEstimate {
    /// Readings forwarded per second in the window.
    pub rate: f64,
    /// How long the readings left take at that rate; None when nothing
    /// went out (no rate to extrapolate from).
    pub eta: Option<Duration>,
}

/// `readings_left` still spooled, `forwarded` readings sent during `window`.
pub fn estimate(readings_left: u64, forwarded: u64, window: Duration) -> DrainEstimate {
    let secs = window.as_secs_f64();
    let rate = if secs > 0.0 {
        forwarded as f64 / secs
    } else {
        0.0
    };
    let eta = if readings_left == 0 {
        Some(Duration::ZERO)
    } else if rate > 0.0 {
        Some(Duration::from_secs_f64(readings_left as f64 / rate))
    } else {
        None
    };
    DrainEstimate { rate, eta }
}

/// Readings forwarded since the window started.
#[derive(Debug)]
pub struct Window {
    started: Instant,
    forwarded: u64,
}

impl Window {
    pub fn new(now: Instant) -> Window {
        Window {
            started: now,
            forwarded: 0,
        }
    }

    pub fn add(&mut self, readings: u64) {
        self.forwarded += readings;
    }

    /// (readings forwarded, window length), and start a new window at `now`.
    pub fn take(&mut self, now: Instant) -> (u64, Duration) {
        let taken = (self.forwarded, now.duration_since(self.started));
        *self = Window::new(now);
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates() {
        let s = Duration::from_secs;
        // (left, forwarded, window) -> (rate, eta)
        let cases = [
            (10_000, 5_000, s(10), 500.0, Some(s(20))),
            (0, 5_000, s(10), 500.0, Some(s(0))),
            (0, 0, s(10), 0.0, Some(s(0))),
            (10_000, 0, s(10), 0.0, None),
            (10_000, 100, Duration::ZERO, 0.0, None),
            (
                1_500,
                1_000,
                Duration::from_millis(500),
                2_000.0,
                Some(Duration::from_millis(750)),
            ),
        ];
        for (left, fwd, window, rate, eta) in cases {
            let e = estimate(left, fwd, window);
            assert_eq!(
                (e.rate, e.eta),
                (rate, eta),
                "left {left} forwarded {fwd} window {window:?}"
            );
        }
    }

    #[test]
    fn window_counts_and_restarts() {
        let t0 = Instant::now();
        let mut w = Window::new(t0);
        w.add(3);
        w.add(4);
        assert_eq!(
            w.take(t0 + Duration::from_secs(2)),
            (7, Duration::from_secs(2))
        );
        assert_eq!(
            w.take(t0 + Duration::from_secs(3)),
            (0, Duration::from_secs(1))
        );
    }
}
