//! The validated rules the detector runs: what `config::rules` builds from
//! the TOML and what tests build by hand.
//!
//! A [`Rule`] selects series (one exact name, or every series carrying some
//! tags) and holds any number of checks on them: limit levels, rate of
//! change, stale, flatline, bad quality, SPC tests. Each check raises and clears its
//! own alarm, named `<rule name>.<kind>` ("oil_temp.high_high"), so the
//! severity can be looked up from the name on the far side of the wire.
//!
//! Invariants (upheld by `config::rules`, assumed here): limits are finite,
//! high levels above low levels, high-high at or above high, low-low at or
//! below low; durations and the deadband are not negative.

use std::collections::BTreeMap;

use super::spc::Spc;
use crate::reading::{LimitKind, SeriesInfo, Severity};

/// Which series a rule watches.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// Exactly this series name ("press-3.oil_temp").
    Series(String),
    /// Every series whose tags include all of these pairs.
    Tags(BTreeMap<String, String>),
}

impl Selector {
    /// Whether the rule applies to `series`.
    pub fn matches(&self, series: &SeriesInfo) -> bool {
        match self {
            Selector::Series(name) => series.name == *name,
            Selector::Tags(tags) => tags.iter().all(|(k, v)| series.tags.get(k) == Some(v)),
        }
    }
}

/// How long a condition must hold (or be gone) before the alarm changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hold {
    /// Change at once.
    #[default]
    Immediate,
    /// This many consecutive evaluated samples, the current one included.
    Samples(u32),
    /// This many µs between the first and the current evaluated sample.
    Micros(i64),
}

/// One of the four classic limit levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    HighHigh,
    High,
    Low,
    LowLow,
}

impl Level {
    /// The key in config files and the suffix of event names.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::HighHigh => "high_high",
            Level::High => "high",
            Level::Low => "low",
            Level::LowLow => "low_low",
        }
    }

    /// The wire name of this level, carried in the alarm event.
    pub fn kind(self) -> LimitKind {
        match self {
            Level::HighHigh => LimitKind::HighHigh,
            Level::High => LimitKind::High,
            Level::Low => LimitKind::Low,
            Level::LowLow => LimitKind::LowLow,
        }
    }

    /// Whether the alarm is for values above the limit.
    pub fn is_high(self) -> bool {
        matches!(self, Level::HighHigh | Level::High)
    }
}

/// A limit level: raises when the value is strictly beyond `limit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limit {
    pub level: Level,
    pub limit: f64,
    pub severity: Severity,
}

/// Rate of change over a sliding window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Raise when the value rises faster than this many units per second.
    pub rise_per_s: Option<f64>,
    /// Raise when the value falls faster than this many units per second.
    pub fall_per_s: Option<f64>,
    /// The slope is taken between the oldest sample not older than this and
    /// the newest one, so a single noisy sample cannot trip it.
    pub window_us: i64,
    pub severity: Severity,
}

/// A check that raises once something has lasted `after_us`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeout {
    pub after_us: i64,
    pub severity: Severity,
}

/// Value stuck: every sample within `epsilon` of each other for `after_us`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flatline {
    pub epsilon: f64,
    pub after_us: i64,
    pub severity: Severity,
}

/// Everything watched on the series a rule selects.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Prefix of every event name of this rule.
    pub name: String,
    pub selector: Selector,
    /// Events are named exactly `name`, without the kind: the `min`/`max`
    /// shorthand, kept so that alarms of existing configs keep their names.
    pub bare_name: bool,
    pub limits: Vec<Limit>,
    /// A raised limit alarm clears only once the value is back inside the
    /// limit by at least this much (hysteresis), so noise around the limit
    /// does not make it flap.
    pub deadband: f64,
    /// Limit and rate conditions must hold this long before raising.
    pub on_delay: Hold,
    /// Limit and rate conditions must be gone this long before clearing.
    pub off_delay: Hold,
    pub rate: Option<Rate>,
    /// No new reading for this long (needs [`super::Detector::tick`]).
    pub stale: Option<Timeout>,
    pub flatline: Option<Flatline>,
    /// Bad quality without a break for this long.
    pub bad_quality: Option<Timeout>,
    /// Statistical process control tests, each its own alarm.
    pub spc: Option<Spc>,
}

impl Rule {
    /// A rule without any check yet, for building by hand.
    pub fn new(name: &str, selector: Selector) -> Rule {
        Rule {
            name: name.to_owned(),
            selector,
            bare_name: false,
            limits: Vec::new(),
            deadband: 0.0,
            on_delay: Hold::Immediate,
            off_delay: Hold::Immediate,
            rate: None,
            stale: None,
            flatline: None,
            bad_quality: None,
            spc: None,
        }
    }

    /// The `min`/`max` shorthand: low and high limits, events named `name`.
    pub fn min_max(name: &str, series: &str, min: Option<f64>, max: Option<f64>) -> Rule {
        let mut r = Rule::new(name, Selector::Series(series.to_owned()));
        r.bare_name = true;
        let lim = |level, limit| Limit {
            level,
            limit,
            severity: Severity::Major,
        };
        r.limits.extend(max.map(|m| lim(Level::High, m)));
        r.limits.extend(min.map(|m| lim(Level::Low, m)));
        r
    }

    /// Name of the events of one check.
    pub(crate) fn event_name(&self, kind: &str) -> String {
        if self.bare_name {
            self.name.clone()
        } else {
            format!("{}.{kind}", self.name)
        }
    }
}
