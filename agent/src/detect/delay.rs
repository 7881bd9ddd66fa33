//! On-delay and off-delay: the debounce every check goes through.
//!
//! A [`Debounce`] turns "is the condition present in this sample?" into
//! raise and clear transitions. A change needs the new state to hold for the
//! configured [`Hold`] without a break; a sample with the old state starts
//! the count again. Samples that were not evaluated (NaN, bad quality for a
//! value check) are not passed here, so they neither extend nor break a run.
//!
//! Time holds are measured between sample timestamps: across a gap the
//! condition is taken to have held if it held on both sides of the gap.

use super::rule::Hold;

/// A transition of one check's alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Raise,
    /// `duration_us` is how long the alarm was raised, never negative (a
    /// clock stepped back makes it 0 rather than a negative duration).
    Clear {
        duration_us: i64,
    },
}

/// Raise/clear state of one check on one series.
#[derive(Debug, Clone, Default)]
pub(crate) struct Debounce {
    /// Timestamp of the raise while the alarm is raised.
    raised_at: Option<i64>,
    /// Start timestamp and sample count of the current run of samples that
    /// disagree with the alarm state.
    streak: Option<(i64, u32)>,
}

impl Debounce {
    pub(crate) fn is_raised(&self) -> bool {
        self.raised_at.is_some()
    }

    /// Timestamp of the raise while the alarm is raised.
    pub(crate) fn raised_at(&self) -> Option<i64> {
        self.raised_at
    }

    /// Take the alarm as raised since `ts_us` without reporting a change:
    /// the raise was reported before a restart.
    pub(crate) fn seed(&mut self, ts_us: i64) {
        self.raised_at = Some(ts_us);
        self.streak = None;
    }

    /// Feed one evaluated sample; returns the transition it completes.
    pub(crate) fn step(
        &mut self,
        present: bool,
        ts_us: i64,
        on: Hold,
        off: Hold,
    ) -> Option<Change> {
        if present == self.is_raised() {
            self.streak = None;
            return None;
        }
        let (since, n) = match self.streak {
            Some((since, n)) => (since, n.saturating_add(1)),
            None => (ts_us, 1),
        };
        self.streak = Some((since, n));
        let hold = if self.is_raised() { off } else { on };
        let held = match hold {
            Hold::Immediate => true,
            Hold::Samples(k) => n >= k,
            Hold::Micros(t) => ts_us.saturating_sub(since) >= t,
        };
        if !held {
            return None;
        }
        self.streak = None;
        match self.raised_at.take() {
            None => {
                self.raised_at = Some(ts_us);
                Some(Change::Raise)
            }
            Some(at) => Some(Change::Clear {
                duration_us: ts_us.saturating_sub(at).max(0),
            }),
        }
    }

    /// Clear a raised alarm at `ts_us` without waiting for the condition
    /// (its baseline was dropped); the duration, `None` if not raised.
    pub(crate) fn force_clear(&mut self, ts_us: i64) -> Option<i64> {
        self.streak = None;
        let at = self.raised_at.take()?;
        Some(ts_us.saturating_sub(at).max(0))
    }

    /// Forget a pending run (the clock stepped back, so its start time
    /// means nothing any more); the raised state is kept.
    pub(crate) fn restart(&mut self) {
        self.streak = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed (present, ts) pairs; collect (ts, change).
    fn run(on: Hold, off: Hold, samples: &[(bool, i64)]) -> Vec<(i64, Change)> {
        let mut d = Debounce::default();
        samples
            .iter()
            .filter_map(|&(p, ts)| d.step(p, ts, on, off).map(|c| (ts, c)))
            .collect()
    }

    /// (name, on, off, (present, ts) inputs, expected (ts, change)).
    type Case = (
        &'static str,
        Hold,
        Hold,
        Vec<(bool, i64)>,
        Vec<(i64, Change)>,
    );

    #[test]
    fn holds_table() {
        use Change::*;
        use Hold::*;
        let t = true;
        let f = false;
        let cases: Vec<Case> = vec![
            (
                "immediate both ways",
                Immediate,
                Immediate,
                vec![(f, 0), (t, 1), (f, 2)],
                vec![(1, Raise), (2, Clear { duration_us: 1 })],
            ),
            (
                "on-delay 3 samples",
                Samples(3),
                Immediate,
                vec![(t, 0), (t, 1), (f, 2), (t, 3), (t, 4), (t, 5), (f, 6)],
                vec![(5, Raise), (6, Clear { duration_us: 1 })],
            ),
            (
                "off-delay 2 samples: one quiet sample does not clear",
                Immediate,
                Samples(2),
                vec![(t, 0), (f, 1), (t, 2), (f, 3), (f, 4)],
                vec![(0, Raise), (4, Clear { duration_us: 4 })],
            ),
            (
                "on-delay 10 s, held exactly 10 s raises",
                Micros(10_000_000),
                Immediate,
                vec![(t, 0), (t, 5_000_000), (t, 10_000_000)],
                vec![(10_000_000, Raise)],
            ),
            (
                "on-delay 10 s broken at 9 s starts over",
                Micros(10_000_000),
                Immediate,
                vec![(t, 0), (f, 9_000_000), (t, 10_000_000), (t, 19_000_000)],
                vec![],
            ),
            (
                "a gap inside a run counts as held",
                Micros(10_000_000),
                Immediate,
                vec![(t, 0), (t, 60_000_000)],
                vec![(60_000_000, Raise)],
            ),
            (
                "off-delay 5 s",
                Immediate,
                Micros(5_000_000),
                vec![(t, 0), (f, 1_000_000), (f, 5_000_000), (f, 6_000_000)],
                vec![
                    (0, Raise),
                    (
                        6_000_000,
                        Clear {
                            duration_us: 6_000_000,
                        },
                    ),
                ],
            ),
        ];
        for (name, on, off, samples, want) in cases {
            assert_eq!(run(on, off, &samples), want, "{name}");
        }
    }

    #[test]
    fn clear_after_clock_step_back_has_zero_duration() {
        let mut d = Debounce::default();
        assert_eq!(
            d.step(true, 100, Hold::Immediate, Hold::Immediate),
            Some(Change::Raise)
        );
        d.restart();
        assert!(d.is_raised());
        assert_eq!(
            d.step(false, 50, Hold::Immediate, Hold::Immediate),
            Some(Change::Clear { duration_us: 0 })
        );
    }
}
