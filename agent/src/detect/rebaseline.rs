//! Re-baselining on request: an SPC rule's learned baselines are dropped
//! so that its tests learn them again from the readings that follow. The
//! request names a rule, and optionally one series and one mode; it comes
//! from an MQTT command or the status page (the caller checks who may ask)
//! and is recorded as events, never done silently:
//!
//! - for every SPC test of the rule on every series whose baseline is
//!   dropped, one [`AlarmState::Rebaselined`] event carrying the dropped
//!   baseline (centre, sigma and the control limits at `k_sigma`) in its
//!   SPC detail, when one was learned completely; value NaN, limit the
//!   dropped upper control limit (NaN when none);
//! - before it, a clear of that test's alarm if it was raised: what it was
//!   judged against is gone, and nothing is judged while the new baseline
//!   is learned (its duration runs from the raise);
//! - for a series that has not reported since the start (its state is a
//!   seed from before a restart), the events wait until it first reports,
//!   since an event needs the series' unit and tags. Baselines dropped at
//!   start-up because the config's baseline keys changed become such
//!   waiting events too, without detail (the keys they were learned under
//!   are gone).
//!
//! A rule whose baseline comes from the config (`mean`, `sigma`) cannot be
//! re-baselined this way: changing the config is how. A request that drops
//! nothing (no baseline learned or being learned yet) is an error, so a
//! typo in a series name is not reported as done.

use std::sync::Arc;

use super::check::Check;
use super::spc::{Baseline, Detail, Spc};
use super::{Detector, SpcState};
use crate::reading::{Alarm, AlarmState, SeriesInfo, Severity};

/// What to learn again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The rule's `name` in the config (not an event name).
    pub rule: String,
    /// Only this series; every series of the rule when `None`.
    pub series: Option<String>,
    /// Only this mode's baseline; every mode's when `None`. A rule without
    /// a mode source has the one mode 0.
    pub mode: Option<i64>,
}

/// Why a request was refused; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RebaselineError {
    #[error("no rule named {0:?} in the config")]
    UnknownRule(String),
    #[error("rule {0:?} has no SPC tests")]
    NotSpc(String),
    #[error("rule {0:?} takes its baseline from the config (mean, sigma); change the config to change it")]
    FixedBaseline(String),
    #[error("rule {rule:?} has no mode source; its one mode is 0, not {mode}")]
    NoSuchMode { rule: String, mode: i64 },
    #[error("rule {rule:?} holds no baseline {what} yet: nothing to learn again")]
    NothingToForget { rule: String, what: String },
}

/// What a request did.
#[derive(Debug, Clone)]
pub struct Rebaselined {
    /// The events, in order (per series, per test: a clear if it was
    /// raised, then the rebaseline); empty for series not seen since the
    /// start, whose events wait for their first reading.
    pub alarms: Vec<Alarm>,
    /// Every series whose baselines were dropped, sorted.
    pub series: Vec<String>,
}

/// A rebaseline event waiting for its series to report.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Pending {
    pub rule: String,
    pub severity: Severity,
    pub detail: Option<Detail>,
    pub ts_us: i64,
}

impl Pending {
    pub(super) fn alarm(self, series: &Arc<SeriesInfo>) -> Alarm {
        Alarm {
            series: series.clone(),
            rule: self.rule,
            severity: self.severity,
            state: AlarmState::Rebaselined,
            value: f64::NAN,
            limit: self.detail.map_or(f64::NAN, |d| d.upper),
            ts_us: self.ts_us,
            duration_us: None,
            limit_kind: None,
            spc: self.detail,
        }
    }
}

/// The SPC detail of a dropped baseline: its control limits at k sigma.
fn dropped(c: &mut Check, mode: Option<i64>, spc: &Spc) -> Option<Option<Detail>> {
    let (test, chart) = c.spc_mut()?;
    if !chart.holds(mode) {
        return None;
    }
    Some(chart.forget(mode, spc).map(|(centre, sigma)| Detail {
        test,
        centre,
        sigma,
        lower: centre - spc.k_sigma * sigma,
        upper: centre + spc.k_sigma * sigma,
        statistic: f64::NAN,
    }))
}

impl Detector {
    /// Drop the baselines `request` names, at `now_us`; see the module doc.
    pub fn rebaseline(
        &mut self,
        request: &Request,
        now_us: i64,
    ) -> Result<Rebaselined, RebaselineError> {
        let name = &request.rule;
        let (index, rule) = self
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| &r.name == name)
            .ok_or_else(|| RebaselineError::UnknownRule(name.clone()))?;
        let spc = rule
            .spc
            .as_ref()
            .ok_or_else(|| RebaselineError::NotSpc(name.clone()))?;
        if let Baseline::Fixed { .. } = spc.baseline {
            return Err(RebaselineError::FixedBaseline(name.clone()));
        }
        if let (None, Some(mode)) = (&spc.mode, request.mode.filter(|&m| m != 0)) {
            return Err(RebaselineError::NoSuchMode {
                rule: name.clone(),
                mode,
            });
        }
        let wanted = |series: &str| request.series.as_deref().is_none_or(|s| s == series);
        let mut alarms = Vec::new();
        let mut series = Vec::new();
        let mut names: Vec<String> = self.series.keys().filter(|n| wanted(n)).cloned().collect();
        names.sort();
        for n in names {
            let Some(t) = self.series.get_mut(&n) else {
                continue;
            };
            let mut touched = false;
            for (_, c) in t.checks.iter_mut().filter(|(i, _)| *i == index) {
                let Some(detail) = dropped(c, request.mode, spc) else {
                    continue;
                };
                touched = true;
                if let Some(e) = c.force_clear(now_us, f64::NAN) {
                    alarms.push(super::alarm(&t.info, c, e));
                }
                let pending = Pending {
                    rule: c.name.clone(),
                    severity: c.severity,
                    detail,
                    ts_us: now_us,
                };
                alarms.push(pending.alarm(&t.info));
            }
            if touched {
                series.push(n);
            }
        }
        // Seeds of series not seen since the start: the same test on a
        // chart not yet in a check.
        let events: Vec<String> = Check::all_of(rule)
            .into_iter()
            .filter(|c| c.chart().is_some())
            .map(|c| c.name)
            .collect();
        let severity = spc.severity;
        for (n, states) in self.spc_seeds.iter_mut().filter(|(n, _)| wanted(n)) {
            let mut touched = false;
            for s in states.iter_mut().filter(|s| events.contains(&s.rule)) {
                let mut check = Check::all_of(rule)
                    .into_iter()
                    .find(|c| c.name == s.rule)
                    .expect("the name came from this rule's checks");
                check.set_chart(s.chart.clone());
                let Some(detail) = dropped(&mut check, request.mode, spc) else {
                    continue;
                };
                if let Some(chart) = check.chart() {
                    s.chart = chart.clone();
                }
                touched = true;
                self.pending.entry(n.clone()).or_default().push(Pending {
                    rule: s.rule.clone(),
                    severity,
                    detail,
                    ts_us: now_us,
                });
            }
            if touched {
                series.push(n.clone());
            }
        }
        if series.is_empty() {
            let what = match (&request.series, request.mode) {
                (None, None) => "on any series".to_owned(),
                (Some(s), None) => format!("on series {s:?}"),
                (None, Some(m)) => format!("of mode {m} on any series"),
                (Some(s), Some(m)) => format!("of mode {m} on series {s:?}"),
            };
            return Err(RebaselineError::NothingToForget {
                rule: name.clone(),
                what,
            });
        }
        series.sort();
        Ok(Rebaselined { alarms, series })
    }

    /// Record the states `seed_spc` dropped because their rule's baseline
    /// keys changed as rebaseline events, each sent when its series first
    /// reports (states of tests no longer configured are not recorded).
    pub(super) fn pend_config_rebaselines(&mut self, dropped: &[SpcState], now_us: i64) {
        for s in dropped {
            let Some(severity) = self.rules.iter().find_map(|r| {
                let spc = r.spc.as_ref()?;
                Check::all_of(r)
                    .iter()
                    .any(|c| c.name == s.rule && c.chart().is_some())
                    .then_some(spc.severity)
            }) else {
                continue;
            };
            self.pending
                .entry(s.series.clone())
                .or_default()
                .push(Pending {
                    rule: s.rule.clone(),
                    severity,
                    detail: None,
                    ts_us: now_us,
                });
        }
    }
}
