//! `[[rules]]`: the detection rules as written, and their validation into
//! [`crate::detect::Rule`].
//!
//! Two forms share the table. The shorthand `min`/`max` (events named
//! exactly `name`, as before the detection engine grew) and the full form
//! with limit levels, each with its own severity, and the other checks.
//! Mixing `min`/`max` with limit levels in one rule is an error rather than
//! a guess. Every problem is reported with its key path, for example
//! `rules[3].high.limit: inf must be a finite number`.

use crate::config::issue::Problems;
use std::collections::BTreeMap;

use serde::Deserialize;

use super::{check_name, ConfigError};
use crate::detect::{Flatline, Hold, Level, Limit, Rate, Rule, Selector, Timeout};
use crate::reading::Severity;

/// `[[rules]]`: checks on one series (or on every series with some tags).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    /// Rule name; events are named `<name>.<check>` (for example "oil_temp.high"), or exactly this name with the min/max shorthand.
    pub name: String,
    /// Series the rule watches, for example "press-3.oil_temp". Give this or `match_tags`.
    pub series: Option<String>,
    /// Watch every series whose tags include all of these (for example { device = "press-3" }) instead of one `series`.
    pub match_tags: Option<BTreeMap<String, String>>,
    /// Shorthand: raise when the value goes below this limit (severity major).
    pub min: Option<f64>,
    /// Shorthand: raise when the value goes above this limit (severity major).
    pub max: Option<f64>,
    /// Raise `<name>.high_high` when the value is above this limit (default severity critical).
    pub high_high: Option<RawLimit>,
    /// Raise `<name>.high` when the value is above this limit (default severity major).
    pub high: Option<RawLimit>,
    /// Raise `<name>.low` when the value is below this limit (default severity major).
    pub low: Option<RawLimit>,
    /// Raise `<name>.low_low` when the value is below this limit (default severity critical).
    pub low_low: Option<RawLimit>,
    /// Hysteresis: a raised limit alarm clears only once the value is back inside the limit by this much (default 0).
    pub deadband: Option<f64>,
    /// Limit and rate alarms raise only after the condition held this many samples in a row.
    pub on_delay_samples: Option<u32>,
    /// Limit and rate alarms raise only after the condition held this many seconds.
    pub on_delay_s: Option<f64>,
    /// Limit and rate alarms clear only after the condition was gone this many samples in a row.
    pub off_delay_samples: Option<u32>,
    /// Limit and rate alarms clear only after the condition was gone this many seconds.
    pub off_delay_s: Option<f64>,
    /// Raise `<name>.rate_rise` / `<name>.rate_fall` when the value changes faster than a limit.
    pub rate: Option<RawRate>,
    /// Raise `<name>.stale` when no reading arrived for `after_s` seconds.
    pub stale: Option<RawTimeout>,
    /// Raise `<name>.flatline` when the value stayed within `epsilon` for `after_s` seconds.
    pub flatline: Option<RawFlatline>,
    /// Raise `<name>.bad_quality` when every reading was of bad quality for `after_s` seconds.
    pub bad_quality: Option<RawTimeout>,
    /// Statistical process control: limits learned from the process, run rules, EWMA, CUSUM (`[rules.spc]`).
    pub spc: Option<super::RawSpc>,
}

/// `high_high`, `high`, `low`, `low_low`: one limit level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimit {
    /// The limit; a value exactly at the limit is inside.
    pub limit: f64,
    /// "warning", "major" or "critical".
    pub severity: Option<String>,
}

/// `rate`: rate of change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    /// Raise when the value rises faster than this many units per second.
    pub rise_per_s: Option<f64>,
    /// Raise when the value falls faster than this many units per second.
    pub fall_per_s: Option<f64>,
    /// The rate is measured from the oldest sample at most this many seconds old to the newest one; make it a few sample intervals wide.
    pub window_s: f64,
    /// "warning", "major" or "critical" (default warning).
    pub severity: Option<String>,
}

/// `stale`, `bad_quality`: a condition that raises once it lasted `after_s`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeout {
    /// Seconds the condition must last.
    pub after_s: f64,
    /// "warning", "major" or "critical" (default warning).
    pub severity: Option<String>,
}

/// `flatline`: a value that does not move.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFlatline {
    /// Largest spread between readings that still counts as unchanged.
    pub epsilon: f64,
    /// Seconds the value must stay unchanged.
    pub after_s: f64,
    /// "warning", "major" or "critical" (default warning).
    pub severity: Option<String>,
}

/// A file holding only `[[rules]]`: a rule set kept apart from any agent
/// config, as the benchmark rule sets in `configs/examples/` are.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuleSet {
    #[serde(default)]
    rules: Vec<RawRule>,
}

/// Parse and validate a rule set file; `origin` names it in errors. Series
/// names are not checked: there is no agent config to check them against.
pub fn parse_rule_set(text: &str, origin: &str) -> Result<Vec<Rule>, ConfigError> {
    let raw: RawRuleSet = toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: origin.to_owned(),
        message: e.to_string(),
    })?;
    let mut p = Problems::default();
    let rules = validate(&mut p, &raw.rules, None);
    if !p.is_empty() {
        return Err(ConfigError::Invalid {
            path: origin.to_owned(),
            problems: p.into_issues(),
        });
    }
    Ok(rules)
}

/// Validate every rule; `series` is the sorted list of configured series,
/// or `None` to accept any series name.
pub(super) fn validate(p: &mut Problems, raw: &[RawRule], series: Option<&[String]>) -> Vec<Rule> {
    raw.iter()
        .enumerate()
        .map(|(i, r)| validate_rule(p, &format!("rules[{i}]"), r, series))
        .collect()
}

/// The series a table selects, as `[[rules]]` and `[[report_by_exception]]`
/// write it: exactly one of `series` (checked against the configured
/// series when they are known) and `match_tags` (at least one tag).
pub(super) fn selector(
    p: &mut Problems,
    at: &str,
    series_key: &Option<String>,
    match_tags: &Option<BTreeMap<String, String>>,
    series: Option<&[String]>,
) -> Selector {
    match (series_key, match_tags) {
        (Some(s), None) => {
            if series.is_some_and(|all| all.binary_search(s).is_err()) {
                p.add(
                    format!("{at}.series"),
                    format!("{s:?} is not a configured series"),
                );
            }
            Selector::Series(s.clone())
        }
        (None, Some(tags)) => {
            if tags.is_empty() {
                p.add(format!("{at}.match_tags"), "give at least one tag");
            }
            Selector::Tags(tags.clone())
        }
        (Some(_), Some(_)) => {
            p.add(at, "give series or match_tags, not both");
            Selector::Tags(BTreeMap::new())
        }
        (None, None) => {
            p.add(at, "give series or match_tags");
            Selector::Tags(BTreeMap::new())
        }
    }
}

fn validate_rule(p: &mut Problems, at: &str, r: &RawRule, series: Option<&[String]>) -> Rule {
    check_name(p, &format!("{at}.name"), &r.name);
    let selector = selector(p, at, &r.series, &r.match_tags, series);
    let levels = [
        (Level::HighHigh, &r.high_high, Severity::Critical),
        (Level::High, &r.high, Severity::Major),
        (Level::Low, &r.low, Severity::Major),
        (Level::LowLow, &r.low_low, Severity::Critical),
    ];
    let mut rule = if r.min.is_some() || r.max.is_some() {
        if levels.iter().any(|(_, l, _)| l.is_some()) {
            p.add(
                at,
                "min/max is a shorthand for low/high; use one form or the other",
            );
        }
        for (key, v) in [("min", r.min), ("max", r.max)] {
            if let Some(v) = v.filter(|v| !v.is_finite()) {
                p.add(
                    format!("{at}.{key}"),
                    format!("{v} must be a finite number"),
                );
            }
        }
        if let (Some(lo), Some(hi)) = (r.min, r.max) {
            if lo >= hi {
                p.add(at, format!("min {lo} must be below max {hi}"));
            }
        }
        let mut rule = Rule::min_max(&r.name, "", r.min, r.max);
        rule.selector = selector;
        rule
    } else {
        let mut rule = Rule::new(&r.name, selector);
        for (level, raw, default) in levels {
            let Some(l) = raw else { continue };
            let key = format!("{at}.{}", level.as_str());
            if !l.limit.is_finite() {
                p.add(
                    format!("{key}.limit"),
                    format!("{} must be a finite number", l.limit),
                );
            }
            rule.limits.push(Limit {
                level,
                limit: l.limit,
                severity: severity(p, &key, &l.severity, default),
            });
        }
        check_order(p, at, &rule.limits);
        rule
    };
    rule.deadband = r.deadband.unwrap_or(0.0);
    if !(rule.deadband.is_finite() && rule.deadband >= 0.0) {
        p.add(
            format!("{at}.deadband"),
            format!("{} must be 0 or more", rule.deadband),
        );
    }
    rule.on_delay = hold(p, at, "on_delay", r.on_delay_samples, r.on_delay_s);
    rule.off_delay = hold(p, at, "off_delay", r.off_delay_samples, r.off_delay_s);
    if let Some(rate) = &r.rate {
        let key = format!("{at}.rate");
        if rate.rise_per_s.is_none() && rate.fall_per_s.is_none() {
            p.add(&key, "give rise_per_s, fall_per_s or both");
        }
        for (k, v) in [
            ("rise_per_s", rate.rise_per_s),
            ("fall_per_s", rate.fall_per_s),
        ] {
            if let Some(v) = v.filter(|v| !(v.is_finite() && *v > 0.0)) {
                p.add(
                    format!("{key}.{k}"),
                    format!("{v} must be a positive number"),
                );
            }
        }
        rule.rate = Some(Rate {
            rise_per_s: rate.rise_per_s,
            fall_per_s: rate.fall_per_s,
            window_us: seconds(p, &format!("{key}.window_s"), rate.window_s, false),
            severity: severity(p, &key, &rate.severity, Severity::Warning),
        });
    }
    rule.stale = r
        .stale
        .as_ref()
        .map(|t| timeout(p, &format!("{at}.stale"), t, false));
    rule.bad_quality = r
        .bad_quality
        .as_ref()
        .map(|t| timeout(p, &format!("{at}.bad_quality"), t, true));
    if let Some(f) = &r.flatline {
        let key = format!("{at}.flatline");
        if !(f.epsilon.is_finite() && f.epsilon >= 0.0) {
            p.add(
                format!("{key}.epsilon"),
                format!("{} must be 0 or more", f.epsilon),
            );
        }
        rule.flatline = Some(Flatline {
            epsilon: f.epsilon,
            after_us: seconds(p, &format!("{key}.after_s"), f.after_s, false),
            severity: severity(p, &key, &f.severity, Severity::Warning),
        });
    }
    rule.spc = r
        .spc
        .as_ref()
        .map(|s| super::spc::validate(p, &format!("{at}.spc"), s, series));
    let has_check = !rule.limits.is_empty()
        || rule.spc.is_some()
        || rule.rate.is_some()
        || rule.stale.is_some()
        || rule.flatline.is_some()
        || rule.bad_quality.is_some();
    if !has_check {
        p.add(at, "give at least one check (min, max, high_high, high, low, low_low, rate, stale, flatline, bad_quality, spc)");
    }
    rule
}

/// High-high at or above high, low-low at or below low, every low below every high.
fn check_order(p: &mut Problems, at: &str, limits: &[Limit]) {
    let get = |level| limits.iter().find(|l| l.level == level).map(|l| l.limit);
    let pairs = [
        (Level::HighHigh, Level::High, true),
        (Level::LowLow, Level::Low, false),
    ];
    for (outer, inner, high) in pairs {
        if let (Some(o), Some(n)) = (get(outer), get(inner)) {
            if (high && o < n) || (!high && o > n) {
                let side = if high { "at or above" } else { "at or below" };
                p.add(
                    format!("{at}.{}.limit", outer.as_str()),
                    format!("{o} must be {side} {}.limit {n}", inner.as_str()),
                );
            }
        }
    }
    for lo in limits.iter().filter(|l| !l.level.is_high()) {
        for hi in limits.iter().filter(|l| l.level.is_high()) {
            if lo.limit >= hi.limit {
                p.add(
                    format!("{at}.{}.limit", lo.level.as_str()),
                    format!(
                        "{} must be below {}.limit {}",
                        lo.limit,
                        hi.level.as_str(),
                        hi.limit
                    ),
                );
            }
        }
    }
}

fn hold(p: &mut Problems, at: &str, key: &str, samples: Option<u32>, s: Option<f64>) -> Hold {
    match (samples, s) {
        (Some(_), Some(_)) => {
            p.add(at, format!("give {key}_samples or {key}_s, not both"));
            Hold::Immediate
        }
        (Some(n), None) => Hold::Samples(n),
        (None, Some(s)) => Hold::Micros(seconds(p, &format!("{at}.{key}_s"), s, true)),
        (None, None) => Hold::Immediate,
    }
}

fn timeout(p: &mut Problems, key: &str, t: &RawTimeout, zero_ok: bool) -> Timeout {
    Timeout {
        after_us: seconds(p, &format!("{key}.after_s"), t.after_s, zero_ok),
        severity: severity(p, key, &t.severity, Severity::Warning),
    }
}

/// Seconds as µs; at most about 30 years so the µs fit anywhere.
fn seconds(p: &mut Problems, key: &str, s: f64, zero_ok: bool) -> i64 {
    let ok = s.is_finite() && s <= 1e9 && (s > 0.0 || (zero_ok && s == 0.0));
    if !ok {
        let what = if zero_ok { "0 or more" } else { "more than 0" };
        p.add(key, format!("{s} must be {what} seconds (at most 1e9)"));
        return 0;
    }
    (s * 1e6).round() as i64
}

pub(super) fn severity(
    p: &mut Problems,
    key: &str,
    raw: &Option<String>,
    default: Severity,
) -> Severity {
    let Some(s) = raw else { return default };
    Severity::parse(s).unwrap_or_else(|| {
        p.add(
            format!("{key}.severity"),
            format!("{s:?} is not a severity (warning, major, critical)"),
        );
        default
    })
}

#[cfg(test)]
#[path = "rules_tests.rs"]
mod tests;
