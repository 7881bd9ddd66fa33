//! Local anomaly detection on the gateway: a pure state machine, no I/O,
//! no clock. Readings go in through [`Detector::observe`], the passing of
//! time through [`Detector::tick`]; alarm transitions come out.
//!
//! A [`Rule`] selects series (an exact name or a tag selector) and holds
//! checks; every check on every selected series has its own alarm, raised
//! once and cleared once, never one event per reading:
//!
//! - **limits** high-high, high, low, low-low, each with its own severity
//!   and alarm. A value strictly beyond the limit is out; exactly at the
//!   limit is inside. With a `deadband`, a raised limit alarm clears only
//!   when the value is back inside by at least the deadband (hysteresis).
//! - **rate of change**: the slope between the oldest sample of the window
//!   and the newest, against a rise and/or a fall limit in units/s.
//! - **stale**: no reading for T. Only [`Detector::tick`] can see silence;
//!   the next reading clears it.
//! - **flatline**: every sample within `epsilon` of each other for T.
//! - **bad quality** without a break for T.
//! - **SPC** (statistical process control, [`spc`]): limits learned from a
//!   baseline of the process per series and mode, the Western Electric /
//!   Nelson run rules, EWMA and CUSUM; each selected test is one check.
//!
//! On-delay and off-delay (in samples or in time) apply to limits, rate and
//! SPC tests:
//! the condition must hold that long before raising, and be gone that long
//! before clearing. The time checks have their duration built in; a
//! duration is reached when exactly T has passed.
//!
//! Edge cases, decided once for every check:
//! - **NaN** is ignored by the value checks (counted in
//!   [`Counters::nan`]); it is still a reading for stale and quality.
//!   ±infinity is a value (beyond every limit), but no point of an SPC
//!   chart (it would poison a baseline or an EWMA for good).
//! - **Bad quality**: the value is not judged by value checks; it feeds the
//!   bad-quality check. Uncertain quality is judged like good.
//! - **Gap in timestamps**: nothing happens during the gap (no reading, no
//!   judgement) except stale via `tick`. A time delay or flat run that holds
//!   on both sides of a gap counts as held through it. A rate window that
//!   the gap emptied judges nothing until it holds two samples again.
//! - **Out-of-order timestamps**: a reading not newer than the last accepted
//!   one of its series is ignored and counted in [`Counters::out_of_order`].
//!   Never a panic.
//! - **Clock step backwards**: after [`CLOCK_STEP_READINGS`] readings in a
//!   row older than the last accepted one, the detector takes the new
//!   timeline as the truth (counted in [`Counters::clock_steps`]): pending
//!   delays, rate windows and runs restart, raised alarms stay raised, and a
//!   duration that would be negative is reported as 0.
//! - A series with no matching rule costs one map entry and nothing else;
//!   a series that never reported is not stale (the source's own error
//!   counters cover a device that never answers).
//!
//! Restart: [`Detector::active`] lists the raised alarms and
//! [`Detector::seed`] takes such a list back at start-up, so an alarm still
//! present after a restart is not raised again and one gone meanwhile is
//! cleared once, its duration counted from the persisted raise. Only the
//! raised state survives: on/off-delay counts in flight, rate windows, flat
//! and bad-quality runs and the last timestamp of each series start afresh
//! (a pending on-delay restarts its count; a raised alarm's off-delay does
//! too). A seeded alarm applies when its series first reports; one whose
//! event name no rule produces any more is handed back by `seed`.
//! SPC tests are the exception: their baselines and charts survive through
//! [`Detector::spc_states`] and [`Detector::seed_spc`] (persisted in the
//! spool), so a restart neither learns a baseline again nor loses a CUSUM
//! that was building up; a clock step back restarts the charts (not the
//! baselines). A state whose rule's baseline keys changed is handed back by
//! `seed_spc` instead: that is how a baseline is learned again by config.
//! [`Detector::rebaseline`] learns one again on request (an MQTT command,
//! the status page), recorded as events (module `rebaseline`).
//!
//! Event names are `<rule name>.<kind>` (kinds: `high_high`, `high`, `low`,
//! `low_low`, `rate_rise`, `rate_fall`, `stale`, `flatline`,
//! `bad_quality`, `spc_<test>` such as `spc_cusum`), except for the `min`/`max` shorthand whose events keep
//! the rule name as is. For the time checks the event's value is the
//! seconds elapsed and its limit the configured seconds. For an SPC test
//! the value is the test's statistic and the limit the one on its side;
//! [`Alarm::spc`] carries the rest (test, centre, sigma, both limits).

mod check;
mod delay;
mod rebaseline;
pub mod rule;
pub mod spc;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use self::check::{Check, Sample};
pub use self::rebaseline::{RebaselineError, Rebaselined, Request as RebaselineRequest};
pub use self::rule::{Flatline, Hold, Level, Limit, Rate, Rule, Selector, Timeout};
pub use self::spc::Spc;
use crate::reading::{Alarm, Quality, Reading, SeriesInfo, Severity};

/// Readings in a row older than the last accepted one that make the
/// detector believe the clock stepped back, rather than a late straggler.
pub const CLOCK_STEP_READINGS: u32 = 3;

/// What the detector ignored, for the agent's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Readings not newer than the previous one of their series.
    pub out_of_order: u64,
    /// Times a series' clock was taken to have stepped back.
    pub clock_steps: u64,
    /// NaN values of good or uncertain quality.
    pub nan: u64,
}

/// A raised alarm, as persisted across restarts: keyed by (rule, series).
#[derive(Debug, Clone, PartialEq)]
pub struct ActiveAlarm {
    /// Event name ("oil_temp.high").
    pub rule: String,
    /// Series name ("press-3.oil_temp").
    pub series: String,
    /// µs since the epoch, the raise event's timestamp: clear durations are
    /// counted from it.
    pub raised_us: i64,
    /// The limit reported with the raise.
    pub limit: f64,
    pub severity: Severity,
}

/// The state of one SPC test on one series (its baselines and chart), as
/// persisted across restarts: keyed by (rule, series).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpcState {
    /// Event name ("pump.flow.spc_cusum").
    pub rule: String,
    /// Series name.
    pub series: String,
    /// [`Spc::fingerprint`] of the rule the baselines were learned under.
    pub fingerprint: String,
    pub chart: spc::Chart,
}

/// Evaluates every configured rule against the readings it is given.
pub struct Detector {
    rules: Vec<Rule>,
    series: HashMap<String, Tracked>,
    /// Seeded alarms of series that have not reported yet, by series name:
    /// checks exist only once a series' metadata is known.
    seeds: HashMap<String, Vec<ActiveAlarm>>,
    /// Seeded SPC states of series that have not reported yet.
    spc_seeds: HashMap<String, Vec<SpcState>>,
    /// The last good value of every series an SPC rule takes its mode
    /// from (`None` until it reports).
    modes: HashMap<String, Option<f64>>,
    /// Rebaseline events of series that have not reported yet
    /// (module `rebaseline`): sent with their first reading.
    pending: HashMap<String, Vec<rebaseline::Pending>>,
    counters: Counters,
}

/// Detection state of one series.
struct Tracked {
    info: Arc<SeriesInfo>,
    /// Timestamp of the last accepted reading.
    last_ts_us: Option<i64>,
    /// Readings in a row older than `last_ts_us`.
    behind: u32,
    /// (index into `Detector::rules`, check).
    checks: Vec<(usize, Check)>,
}

impl Detector {
    pub fn new(rules: &[Rule]) -> Detector {
        let modes = rules
            .iter()
            .filter_map(|r| r.spc.as_ref()?.mode.as_ref())
            .map(|m| (m.series.clone(), None))
            .collect();
        Detector {
            rules: rules.to_vec(),
            series: HashMap::new(),
            seeds: HashMap::new(),
            spc_seeds: HashMap::new(),
            modes,
            pending: HashMap::new(),
            counters: Counters::default(),
        }
    }

    /// Take persisted SPC states back (baselines and charts from before a
    /// restart) at `now_us`. Returns those not taken: their event name is
    /// no SPC test of the config any more, or the rule's baseline keys
    /// changed (re-baselining by config: each of those is also recorded
    /// as a rebaseline event, sent when its series first reports).
    pub fn seed_spc(&mut self, states: Vec<SpcState>, now_us: i64) -> Vec<SpcState> {
        let prints: HashMap<String, String> = self
            .rules
            .iter()
            .filter_map(|r| Some((r, r.spc.as_ref()?.fingerprint())))
            .flat_map(|(r, f)| {
                Check::all_of(r)
                    .into_iter()
                    .filter(|c| c.chart().is_some())
                    .map(move |c| (c.name, f.clone()))
            })
            .collect();
        let mut dropped = Vec::new();
        for s in states {
            if prints.get(&s.rule) != Some(&s.fingerprint) {
                dropped.push(s);
                continue;
            }
            match self.series.get_mut(&s.series) {
                Some(t) => apply_spc_seed(t, s),
                None => self.spc_seeds.entry(s.series.clone()).or_default().push(s),
            }
        }
        self.pend_config_rebaselines(&dropped, now_us);
        dropped
    }

    /// The state of every SPC test on every series, seeded ones of series
    /// not yet seen included, sorted by (series, rule): what to persist.
    pub fn spc_states(&self) -> Vec<SpcState> {
        let mut out: Vec<SpcState> = self.spc_seeds.values().flatten().cloned().collect();
        for t in self.series.values() {
            for (i, c) in &t.checks {
                let (Some(chart), Some(spc)) = (c.chart(), &self.rules[*i].spc) else {
                    continue;
                };
                out.push(SpcState {
                    rule: c.name.clone(),
                    series: t.info.name.clone(),
                    fingerprint: spc.fingerprint(),
                    chart: chart.clone(),
                });
            }
        }
        out.sort_by(|a, b| (&a.series, &a.rule).cmp(&(&b.series, &b.rule)));
        out
    }

    /// Take `active` as raised without reporting them (they were reported
    /// before a restart). Returns the alarms whose event name no configured
    /// rule produces: nothing will ever clear those here.
    pub fn seed(&mut self, active: Vec<ActiveAlarm>) -> Vec<ActiveAlarm> {
        let names: HashSet<String> = self
            .rules
            .iter()
            .flat_map(|r| Check::all_of(r).into_iter().map(|c| c.name))
            .collect();
        let (known, unknown): (Vec<_>, Vec<_>) =
            active.into_iter().partition(|a| names.contains(&a.rule));
        for a in known {
            match self.series.get_mut(&a.series) {
                Some(t) => apply_seed(t, &a),
                None => self.seeds.entry(a.series.clone()).or_default().push(a),
            }
        }
        unknown
    }

    /// Every raised alarm, seeded ones of series not yet seen included,
    /// sorted by (series, rule).
    pub fn active(&self) -> Vec<ActiveAlarm> {
        let mut out: Vec<ActiveAlarm> = self.seeds.values().flatten().cloned().collect();
        for t in self.series.values() {
            for (_, c) in &t.checks {
                if let Some((raised_us, limit)) = c.raised() {
                    out.push(ActiveAlarm {
                        rule: c.name.clone(),
                        series: t.info.name.clone(),
                        raised_us,
                        limit,
                        severity: c.severity,
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.series, &a.rule).cmp(&(&b.series, &b.rule)));
        out
    }

    /// What was ignored so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Feed one reading; returns the alarm transitions it causes, in order.
    pub fn observe(&mut self, reading: &Reading) -> Vec<Alarm> {
        let bad = reading.quality == Quality::Bad;
        if let Some(m) = self.modes.get_mut(&reading.series.name) {
            if !bad && reading.value.is_finite() {
                *m = Some(reading.value);
            }
        }
        let rules = &self.rules;
        let seeds = &mut self.seeds;
        let spc_seeds = &mut self.spc_seeds;
        let modes = &self.modes;
        let pending = &mut self.pending;
        let t = self
            .series
            .entry(reading.series.name.clone())
            .or_insert_with(|| {
                let mut t = Tracked {
                    info: reading.series.clone(),
                    last_ts_us: None,
                    behind: 0,
                    checks: rules
                        .iter()
                        .enumerate()
                        .filter(|(_, r)| r.selector.matches(&reading.series))
                        .flat_map(|(i, r)| Check::all_of(r).into_iter().map(move |c| (i, c)))
                        .collect(),
                };
                for a in seeds.remove(&reading.series.name).unwrap_or_default() {
                    apply_seed(&mut t, &a);
                }
                for s in spc_seeds.remove(&reading.series.name).unwrap_or_default() {
                    apply_spc_seed(&mut t, s);
                }
                t
            });
        // Rebaseline events waiting for this series' first reading.
        let mut out: Vec<Alarm> = pending
            .remove(&reading.series.name)
            .unwrap_or_default()
            .into_iter()
            .map(|p| p.alarm(&t.info))
            .collect();
        if t.checks.is_empty() {
            return out;
        }
        let ts = reading.ts_us;
        if let Some(last) = t.last_ts_us.filter(|&last| ts <= last) {
            if ts < last {
                t.behind += 1;
            }
            if t.behind < CLOCK_STEP_READINGS {
                self.counters.out_of_order += 1;
                return out;
            }
            self.counters.clock_steps += 1;
            for (_, c) in &mut t.checks {
                c.restart();
            }
        }
        t.behind = 0;
        t.last_ts_us = Some(ts);
        if reading.value.is_nan() && !bad {
            self.counters.nan += 1;
        }
        let sample = Sample {
            ts_us: ts,
            value: reading.value,
            bad,
        };
        for (i, c) in &mut t.checks {
            let rule = &rules[*i];
            let mode = match rule.spc.as_ref().and_then(|s| s.mode.as_ref()) {
                None => Some(0),
                Some(m) => modes
                    .get(&m.series)
                    .copied()
                    .flatten()
                    .and_then(|v| m.mode_of(v)),
            };
            if let Some(e) = c.observe(sample, mode, rule) {
                out.push(alarm(&t.info, c, e));
            }
        }
        out
    }

    /// Let time pass to `now_us` (µs since the epoch, same clock as the
    /// readings): raises stale alarms. Call it about as often as the
    /// shortest stale time needs; it does nothing else.
    pub fn tick(&mut self, now_us: i64) -> Vec<Alarm> {
        let mut out = Vec::new();
        for t in self.series.values_mut() {
            let Some(last) = t.last_ts_us else { continue };
            for (i, c) in &mut t.checks {
                if let Some(e) = c.tick(now_us, last, &self.rules[*i]) {
                    out.push(alarm(&t.info, c, e));
                }
            }
        }
        // The map's order is arbitrary; the caller's log should not be.
        out.sort_by(|a, b| (&a.series.name, &a.rule).cmp(&(&b.series.name, &b.rule)));
        out
    }
}

impl Rule {
    /// How many checks, each with its own alarm, the rule runs on every
    /// series it selects.
    pub fn check_count(&self) -> usize {
        Check::all_of(self).len()
    }
}

/// Mark the check `a` names as raised; a seed for a check this series no
/// longer has (its rule does not select it any more) is dropped.
fn apply_seed(t: &mut Tracked, a: &ActiveAlarm) {
    if let Some((_, c)) = t.checks.iter_mut().find(|(_, c)| c.name == a.rule) {
        c.seed(a.raised_us, a.limit);
    }
}

/// Put a persisted SPC state into the check it names; one for a check this
/// series no longer has is dropped.
fn apply_spc_seed(t: &mut Tracked, s: SpcState) {
    if let Some((_, c)) = t.checks.iter_mut().find(|(_, c)| c.name == s.rule) {
        c.set_chart(s.chart);
    }
}

fn alarm(series: &Arc<SeriesInfo>, c: &Check, e: check::Event) -> Alarm {
    Alarm {
        series: series.clone(),
        rule: c.name.clone(),
        severity: c.severity,
        state: e.state,
        value: e.value,
        limit: e.limit,
        ts_us: e.ts_us,
        duration_us: e.duration_us,
        limit_kind: c.limit_kind(),
        spc: e.spc,
    }
}
