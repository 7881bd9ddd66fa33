//! The health rule behind `/healthz`, as a pure function of the time, the
//! window and what the pipeline last did, so it is tested with tables and
//! no clock; and the [`Tracker`] that learns when the pipeline last moved by
//! watching the [`AgentStats`](crate::stats::AgentStats) counters change.
//!
//! The rule (`stuck_after` is the window, "recently" means within it):
//! - `not_spooling`: readings were produced recently, but none was
//!   committed to the spool recently: the pipeline between the sources and
//!   the spool is stuck;
//! - `not_forwarding`: the spool holds an unsent reading older than the
//!   window, and no upload succeeded recently: nothing is leaving the
//!   gateway, whether the relay is unreachable or the forwarder is stuck;
//! - `disk_full`: the spool's filesystem is its bound and the spool is at
//!   it, or SQLite found the disk full ([`crate::spool::room`]): with
//!   `drop-oldest` the oldest readings are being dropped into gaps;
//! - `spool_full`: the spool refuses commits (`on_full = "block"` at its
//!   bound): the sources are held back and readings are not being taken.
//!
//! The agent's start counts as the last commit and the last upload, so an
//! agent is not unhealthy during its first window. An idle agent (no
//! source producing, empty spool) is healthy.

use std::time::Duration;

use crate::spool::Pressure;

/// Counter values the tracker compares between two looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub produced: u64,
    pub spooled: u64,
    pub batches_forwarded: u64,
    pub upload_failures: u64,
}

/// When the pipeline last moved, in microseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    pub started_us: i64,
    pub last_produced_us: Option<i64>,
    pub last_spooled_us: Option<i64>,
    pub last_forwarded_us: Option<i64>,
    /// Whether the last upload seen succeeded; `None` before the first.
    /// When both a success and a failure happened between two looks, the
    /// success wins: the relay was reachable.
    pub uplink_up: Option<bool>,
}

/// Learns [`Activity`] from counters: a counter that grew since the last
/// look moved at the time of this look, so times are as fine as the looks
/// (the status page looks every second and at every request).
#[derive(Debug, Clone)]
pub struct Tracker {
    activity: Activity,
    seen: Counts,
}

impl Tracker {
    pub fn new(started_us: i64, seen: Counts) -> Tracker {
        Tracker {
            activity: Activity {
                started_us,
                last_produced_us: None,
                last_spooled_us: None,
                last_forwarded_us: None,
                uplink_up: None,
            },
            seen,
        }
    }

    /// Look at the counters at `now_us`; returns what is known so far.
    pub fn observe(&mut self, now_us: i64, counts: Counts) -> Activity {
        let a = &mut self.activity;
        if counts.produced > self.seen.produced {
            a.last_produced_us = Some(now_us);
        }
        if counts.spooled > self.seen.spooled {
            a.last_spooled_us = Some(now_us);
        }
        let forwarded = counts.batches_forwarded > self.seen.batches_forwarded;
        if forwarded {
            a.last_forwarded_us = Some(now_us);
            a.uplink_up = Some(true);
        } else if counts.upload_failures > self.seen.upload_failures {
            a.uplink_up = Some(false);
        }
        self.seen = counts;
        *a
    }
}

/// A failed health condition, with the figures that failed it.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    /// Readings produced `produced_ago_s` ago, nothing spooled for
    /// `spooled_ago_s` (since the start if never).
    NotSpooling {
        produced_ago_s: f64,
        spooled_ago_s: f64,
    },
    /// The oldest unsent reading is `oldest_age_s` old and no upload
    /// succeeded for `forwarded_ago_s` (since the start if never).
    NotForwarding {
        oldest_age_s: f64,
        forwarded_ago_s: f64,
    },
    /// The disk bounds the spool and it is full (see [`Pressure`]).
    DiskFull {
        used: u64,
        bound: u64,
        available: u64,
    },
    /// The spool refuses commits; the sources are held back.
    SpoolFull { used: u64, bound: u64 },
}

impl Problem {
    /// The condition's name in the `/healthz` body.
    pub fn condition(&self) -> &'static str {
        match self {
            Problem::NotSpooling { .. } => "not_spooling",
            Problem::NotForwarding { .. } => "not_forwarding",
            Problem::DiskFull { .. } => "disk_full",
            Problem::SpoolFull { .. } => "spool_full",
        }
    }

    /// One sentence for a technician.
    pub fn message(&self) -> String {
        match self {
            Problem::NotSpooling {
                produced_ago_s,
                spooled_ago_s,
            } => format!(
                "sources produced readings {produced_ago_s:.1} s ago, but none was committed to the spool for {spooled_ago_s:.1} s"
            ),
            Problem::NotForwarding {
                oldest_age_s,
                forwarded_ago_s,
            } => format!(
                "the spool holds a reading {oldest_age_s:.1} s old, and no upload to the relay succeeded for {forwarded_ago_s:.1} s"
            ),
            Problem::DiskFull {
                used,
                bound,
                available,
            } => format!(
                "the spool's disk is full: the spool uses {used} of the {bound} bytes the disk leaves it ({available} bytes free); the oldest readings are dropped into gaps (drop-oldest) or the sources wait (block)"
            ),
            Problem::SpoolFull { used, bound } => format!(
                "the spool is full ({used} of {bound} bytes) and refuses commits: the sources are held back until the relay takes the backlog"
            ),
        }
    }
}

/// What fails the rule at `now_us` (empty when healthy). `oldest_unsent_us`
/// is the time of the oldest reading in the spool, `None` when it is empty.
pub fn check(
    now_us: i64,
    window: Duration,
    activity: &Activity,
    oldest_unsent_us: Option<i64>,
) -> Vec<Problem> {
    let window_s = window.as_secs_f64();
    let ago = |t: i64| (now_us - t) as f64 / 1e6;
    let since =
        |last: Option<i64>| ago(last.unwrap_or(activity.started_us).max(activity.started_us));
    let mut problems = Vec::new();
    if let Some(produced) = activity.last_produced_us {
        let spooled_ago_s = since(activity.last_spooled_us);
        if ago(produced) <= window_s && spooled_ago_s > window_s {
            problems.push(Problem::NotSpooling {
                produced_ago_s: ago(produced),
                spooled_ago_s,
            });
        }
    }
    if let Some(oldest) = oldest_unsent_us {
        let forwarded_ago_s = since(activity.last_forwarded_us);
        if ago(oldest) > window_s && forwarded_ago_s > window_s {
            problems.push(Problem::NotForwarding {
                oldest_age_s: ago(oldest),
                forwarded_ago_s,
            });
        }
    }
    problems
}

/// What the spool's fill state fails: `disk_full`, `spool_full`, or both.
pub fn spool_problems(p: &Pressure) -> Vec<Problem> {
    let mut problems = Vec::new();
    if p.disk_full {
        problems.push(Problem::DiskFull {
            used: p.used,
            bound: p.bound,
            available: p.available,
        });
    }
    if p.refused {
        problems.push(Problem::SpoolFull {
            used: p.used,
            bound: p.bound,
        });
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;

    fn activity(produced: Option<i64>, spooled: Option<i64>, forwarded: Option<i64>) -> Activity {
        Activity {
            started_us: 0,
            last_produced_us: produced.map(|t| t * S),
            last_spooled_us: spooled.map(|t| t * S),
            last_forwarded_us: forwarded.map(|t| t * S),
            uplink_up: None,
        }
    }

    #[test]
    fn spool_conditions_table() {
        // (disk_full, refused, expected conditions)
        let cases: &[(bool, bool, &[&str])] = &[
            (false, false, &[]),
            (true, false, &["disk_full"]),
            (false, true, &["spool_full"]),
            (true, true, &["disk_full", "spool_full"]),
        ];
        for (disk_full, refused, expected) in cases {
            let p = Pressure {
                used: 900,
                bound: 1000,
                disk_full: *disk_full,
                refused: *refused,
                available: 10,
            };
            let got: Vec<_> = spool_problems(&p).iter().map(Problem::condition).collect();
            assert_eq!(&got, expected, "disk_full {disk_full}, refused {refused}");
        }
        let m = spool_problems(&Pressure {
            used: 900,
            bound: 1000,
            disk_full: true,
            refused: false,
            available: 10,
        })[0]
            .message();
        assert!(
            m.contains("900 of the 1000 bytes") && m.contains("10 bytes free"),
            "{m}"
        );
    }

    #[test]
    fn health_rule_table() {
        // (case, now s, last produced, last spooled, last forwarded,
        //  oldest unsent reading, expected conditions); window 10 s.
        type Case = (
            &'static str,
            i64,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            Option<i64>,
            &'static [&'static str],
        );
        let cases: &[Case] = &[
            ("idle agent", 100, None, None, None, None, &[]),
            ("flowing", 100, Some(99), Some(98), Some(97), Some(97), &[]),
            (
                "first window after start",
                5,
                Some(4),
                None,
                None,
                Some(1),
                &[],
            ),
            (
                "never spooled",
                20,
                Some(19),
                None,
                None,
                None,
                &["not_spooling"],
            ),
            (
                "spool stuck",
                100,
                Some(99),
                Some(80),
                Some(80),
                None,
                &["not_spooling"],
            ),
            (
                "sources silent too",
                100,
                Some(50),
                Some(40),
                Some(40),
                None,
                &[],
            ),
            (
                "edge of window",
                100,
                Some(99),
                Some(90),
                Some(90),
                Some(90),
                &[],
            ),
            (
                "uplink down",
                100,
                Some(99),
                Some(99),
                Some(50),
                Some(60),
                &["not_forwarding"],
            ),
            (
                "never uploaded",
                30,
                Some(29),
                Some(29),
                None,
                Some(5),
                &["not_forwarding"],
            ),
            (
                "backlog draining",
                100,
                Some(99),
                Some(99),
                Some(99),
                Some(20),
                &[],
            ),
            (
                "young backlog",
                100,
                Some(99),
                Some(99),
                Some(10),
                Some(95),
                &[],
            ),
            (
                "all stuck",
                100,
                Some(99),
                Some(50),
                Some(50),
                Some(45),
                &["not_spooling", "not_forwarding"],
            ),
        ];
        for (case, now, produced, spooled, forwarded, oldest, expected) in cases {
            let a = activity(*produced, *spooled, *forwarded);
            let got: Vec<_> = check(now * S, Duration::from_secs(10), &a, oldest.map(|t| t * S))
                .iter()
                .map(Problem::condition)
                .collect();
            assert_eq!(&got, expected, "case {case:?}");
        }
    }

    #[test]
    fn problem_message_names_the_figures() {
        let a = activity(Some(99), Some(99), Some(50));
        let p = check(100 * S, Duration::from_secs(10), &a, Some(60 * S));
        assert_eq!(
            p[0].message(),
            "the spool holds a reading 40.0 s old, and no upload to the relay succeeded for 50.0 s"
        );
    }

    #[test]
    fn tracker_stamps_counters_that_grew_and_tells_the_uplink_state() {
        let mut t = Tracker::new(0, Counts::default());
        let counts = |produced, spooled, batches_forwarded, upload_failures| Counts {
            produced,
            spooled,
            batches_forwarded,
            upload_failures,
        };
        let a = t.observe(S, counts(5, 0, 0, 0));
        assert_eq!(
            (a.last_produced_us, a.last_spooled_us, a.uplink_up),
            (Some(S), None, None)
        );
        let a = t.observe(2 * S, counts(5, 5, 0, 1));
        assert_eq!(
            (a.last_produced_us, a.last_spooled_us),
            (Some(S), Some(2 * S))
        );
        assert_eq!((a.last_forwarded_us, a.uplink_up), (None, Some(false)));
        let a = t.observe(3 * S, counts(5, 5, 1, 2));
        assert_eq!(
            (a.last_forwarded_us, a.uplink_up),
            (Some(3 * S), Some(true))
        );
        let a = t.observe(4 * S, counts(5, 5, 1, 2));
        assert_eq!(
            (a.last_forwarded_us, a.uplink_up),
            (Some(3 * S), Some(true))
        );
    }
}
