//! One check of one rule on one series: the condition it evaluates and the
//! little state that condition needs (a rate window, a flat run, a bad run).
//!
//! Each sample first becomes a condition (present or not, with the value and
//! limit to report) or no condition at all when the check cannot judge the
//! sample (NaN or bad quality for a value check, too few samples in a rate
//! window). The condition then goes through the check's [`Debounce`].

use std::collections::VecDeque;

use super::delay::{Change, Debounce};
use super::rule::{Hold, Level, Rule};
use super::spc::{Chart, Detail, Test};
use crate::reading::{AlarmState, Severity};

/// What a check watches, with the state the condition needs.
#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Limit {
        level: Level,
        limit: f64,
    },
    Rise {
        per_s: f64,
        window: Window,
    },
    Fall {
        per_s: f64,
        window: Window,
    },
    Stale {
        after_us: i64,
    },
    Flatline {
        epsilon: f64,
        after_us: i64,
        run: Option<FlatRun>,
    },
    BadQuality {
        after_us: i64,
        since: Option<i64>,
    },
    /// One SPC test; its settings are the rule's `spc`.
    Spc {
        test: Test,
        chart: Box<Chart>,
    },
}

/// Samples of the last `window_us`, for the rate of change.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    window_us: i64,
    samples: VecDeque<(i64, f64)>,
}

/// A run of samples that all lie within `epsilon` of each other.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FlatRun {
    start_us: i64,
    min: f64,
    max: f64,
}

/// A transition to report, before the detector adds series and rule name.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Event {
    pub state: AlarmState,
    pub value: f64,
    pub limit: f64,
    pub ts_us: i64,
    pub duration_us: Option<i64>,
    /// What an SPC test saw at this point.
    pub spc: Option<Detail>,
}

/// One reading as the checks see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub ts_us: i64,
    pub value: f64,
    pub bad: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Check {
    /// Event name, for example "oil_temp.high".
    pub name: String,
    pub severity: Severity,
    kind: Kind,
    /// Whether the rule's on/off delays apply (limits and rate); the time
    /// checks have their duration built in.
    delayed: bool,
    state: Debounce,
    /// The limit reported with the raise, while raised: what
    /// [`super::ActiveAlarm`] persists (it may differ from the configured
    /// limit after a restart with a changed config).
    raised_limit: f64,
}

impl Check {
    /// Which limit a limit check watches; `None` for other checks.
    pub(crate) fn limit_kind(&self) -> Option<crate::reading::LimitKind> {
        match self.kind {
            Kind::Limit { level, .. } => Some(level.kind()),
            _ => None,
        }
    }

    /// Every check `rule` asks for, in a fixed order.
    pub(crate) fn all_of(rule: &Rule) -> Vec<Check> {
        let mut out = Vec::new();
        let mut add = |kind: &str, severity, delayed, k: Kind| {
            out.push(Check {
                name: rule.event_name(kind),
                severity,
                kind: k,
                delayed,
                state: Debounce::default(),
                raised_limit: f64::NAN,
            })
        };
        for l in &rule.limits {
            let kind = Kind::Limit {
                level: l.level,
                limit: l.limit,
            };
            add(l.level.as_str(), l.severity, true, kind);
        }
        if let Some(r) = rule.rate {
            let window = Window {
                window_us: r.window_us,
                samples: VecDeque::new(),
            };
            if let Some(per_s) = r.rise_per_s {
                let w = window.clone();
                add(
                    "rate_rise",
                    r.severity,
                    true,
                    Kind::Rise { per_s, window: w },
                );
            }
            if let Some(per_s) = r.fall_per_s {
                add("rate_fall", r.severity, true, Kind::Fall { per_s, window });
            }
        }
        if let Some(s) = rule.stale {
            let kind = Kind::Stale {
                after_us: s.after_us,
            };
            add("stale", s.severity, false, kind);
        }
        if let Some(f) = rule.flatline {
            let kind = Kind::Flatline {
                epsilon: f.epsilon,
                after_us: f.after_us,
                run: None,
            };
            add("flatline", f.severity, false, kind);
        }
        if let Some(b) = rule.bad_quality {
            let kind = Kind::BadQuality {
                after_us: b.after_us,
                since: None,
            };
            add("bad_quality", b.severity, false, kind);
        }
        if let Some(spc) = &rule.spc {
            for &test in &spc.tests {
                let kind = Kind::Spc {
                    test,
                    chart: Box::default(),
                };
                add(&format!("spc_{}", test.as_str()), spc.severity, true, kind);
            }
        }
        out
    }

    /// Evaluate one accepted reading; `mode` is the SPC mode the reading
    /// belongs to (0 without a mode source; `None`: unknown, not judged).
    pub(crate) fn observe(&mut self, s: Sample, mode: Option<i64>, rule: &Rule) -> Option<Event> {
        let judged = !s.bad && !s.value.is_nan();
        let raised = self.state.is_raised();
        let v = s.value;
        let mut detail = None;
        let cond = match &mut self.kind {
            Kind::Limit { level, limit } => judged.then(|| {
                // Hysteresis: once raised, the value must be back inside by
                // the deadband. Exactly at a (shifted) limit is inside.
                let m = if raised { rule.deadband } else { 0.0 };
                let present = if level.is_high() {
                    v > *limit - m
                } else {
                    v < *limit + m
                };
                (present, v, *limit)
            }),
            Kind::Rise { per_s, window } => judged
                .then(|| window.slope(s.ts_us, v))
                .flatten()
                .map(|slope| (slope > *per_s, slope, *per_s)),
            Kind::Fall { per_s, window } => judged
                .then(|| window.slope(s.ts_us, v))
                .flatten()
                .map(|slope| (-slope > *per_s, -slope, *per_s)),
            Kind::Stale { after_us } => Some((false, 0.0, secs(*after_us))),
            Kind::Flatline {
                epsilon,
                after_us,
                run,
            } => judged.then(|| {
                let r = match *run {
                    Some(r) if r.max.max(v) - r.min.min(v) <= *epsilon => FlatRun {
                        start_us: r.start_us,
                        min: r.min.min(v),
                        max: r.max.max(v),
                    },
                    _ => FlatRun {
                        start_us: s.ts_us,
                        min: v,
                        max: v,
                    },
                };
                *run = Some(r);
                let lasted = s.ts_us - r.start_us;
                (lasted >= *after_us, secs(lasted), secs(*after_us))
            }),
            Kind::BadQuality { after_us, since } => {
                if s.bad {
                    let lasted = s.ts_us - *since.get_or_insert(s.ts_us);
                    Some((lasted >= *after_us, secs(lasted), secs(*after_us)))
                } else {
                    *since = None;
                    Some((false, 0.0, secs(*after_us)))
                }
            }
            Kind::Spc { test, chart } => {
                let spc = rule.spc.as_ref()?;
                // ±infinity is no point of a process: it would poison the
                // baseline and the EWMA for good.
                let j = match mode {
                    Some(m) if judged && v.is_finite() => chart.judge(*test, v, m, spc),
                    _ => None,
                }?;
                detail = Some(j.detail);
                Some((j.present, j.detail.statistic, j.limit()))
            }
        };
        let (present, value, limit) = cond?;
        let mut e = self.step(present, value, limit, s.ts_us, rule)?;
        e.spc = detail;
        Some(e)
    }

    /// The SPC chart of this check, if it is an SPC test.
    pub(crate) fn chart(&self) -> Option<&Chart> {
        match &self.kind {
            Kind::Spc { chart, .. } => Some(chart),
            _ => None,
        }
    }

    /// The SPC test and its chart, if this check is an SPC test.
    pub(crate) fn spc_mut(&mut self) -> Option<(Test, &mut Chart)> {
        match &mut self.kind {
            Kind::Spc { test, chart } => Some((*test, chart)),
            _ => None,
        }
    }

    /// Clear the alarm at `ts_us` if it is raised, whatever the condition
    /// (re-baselining takes away what it was judged against): the clear
    /// event, with `value` reported, or `None` when not raised.
    pub(crate) fn force_clear(&mut self, ts_us: i64, value: f64) -> Option<Event> {
        let duration_us = self.state.force_clear(ts_us)?;
        Some(Event {
            state: AlarmState::Cleared,
            value,
            limit: self.raised_limit,
            ts_us,
            duration_us: Some(duration_us),
            spc: None,
        })
    }

    /// Replace the SPC chart (persisted state); false if this check is no
    /// SPC test.
    pub(crate) fn set_chart(&mut self, c: Chart) -> bool {
        match &mut self.kind {
            Kind::Spc { chart, .. } => {
                **chart = c;
                true
            }
            _ => false,
        }
    }

    /// Evaluate the passing of time: only the stale check listens.
    pub(crate) fn tick(&mut self, now_us: i64, last_ts_us: i64, rule: &Rule) -> Option<Event> {
        let Kind::Stale { after_us } = self.kind else {
            return None;
        };
        let age = now_us.saturating_sub(last_ts_us);
        if age < after_us {
            return None;
        }
        self.step(true, secs(age), secs(after_us), now_us, rule)
    }

    /// When the alarm was raised and the limit reported then, if raised.
    pub(crate) fn raised(&self) -> Option<(i64, f64)> {
        self.state.raised_at().map(|ts| (ts, self.raised_limit))
    }

    /// Take the alarm as raised since `ts_us` with `limit` (persisted state
    /// from before a restart); nothing is reported.
    pub(crate) fn seed(&mut self, ts_us: i64, limit: f64) {
        self.state.seed(ts_us);
        self.raised_limit = limit;
    }

    /// The clock stepped back: windows and runs measured in the old
    /// timeline are dropped, raised alarms stay raised.
    pub(crate) fn restart(&mut self) {
        self.state.restart();
        match &mut self.kind {
            Kind::Rise { window, .. } | Kind::Fall { window, .. } => window.samples.clear(),
            Kind::Flatline { run, .. } => *run = None,
            Kind::BadQuality { since, .. } => *since = None,
            Kind::Spc { chart, .. } => chart.restart(),
            Kind::Limit { .. } | Kind::Stale { .. } => {}
        }
    }

    fn step(
        &mut self,
        present: bool,
        value: f64,
        limit: f64,
        ts_us: i64,
        rule: &Rule,
    ) -> Option<Event> {
        let (on, off) = if self.delayed {
            (rule.on_delay, rule.off_delay)
        } else {
            (Hold::Immediate, Hold::Immediate)
        };
        let (state, duration_us) = match self.state.step(present, ts_us, on, off)? {
            Change::Raise => {
                self.raised_limit = limit;
                (AlarmState::Raised, None)
            }
            Change::Clear { duration_us } => (AlarmState::Cleared, Some(duration_us)),
        };
        Some(Event {
            state,
            value,
            limit,
            ts_us,
            duration_us,
            spc: None,
        })
    }
}

impl Window {
    /// Add a sample; the slope in units/s from the oldest sample still in
    /// the window, or `None` while the window holds a single sample (start,
    /// or after a gap longer than the window).
    fn slope(&mut self, ts_us: i64, v: f64) -> Option<f64> {
        self.samples.push_back((ts_us, v));
        while let Some(&(t0, _)) = self.samples.front() {
            if ts_us - t0 > self.window_us {
                self.samples.pop_front();
            } else {
                break;
            }
        }
        let &(t0, v0) = self.samples.front()?;
        (ts_us > t0).then(|| (v - v0) / secs(ts_us - t0))
    }
}

fn secs(us: i64) -> f64 {
    us as f64 / 1e6
}
