//! Statistical process control (SPC): control limits learned from the
//! process instead of written in the config, and the tests a quality
//! engineer runs against them (Montgomery, *Introduction to Statistical
//! Quality Control*, chapters 6 and 9). What this module configures and
//! computes; the detector runs each selected test as one check with its own
//! alarm, through the same on/off-delay as a limit.
//!
//! - **Baseline**: per series and per mode, the first `samples` judged
//!   readings give the centre line (their mean) and sigma (moving range /
//!   1.128, the individuals-chart estimate, or the sample standard
//!   deviation), or the config gives `mean` and `sigma`. While a baseline is
//!   being learned nothing is judged. Once learned it is frozen: it never
//!   follows the process, so a slowly failing machine does not teach the
//!   detector that failing is normal. A baseline with sigma 0 (a constant
//!   signal) judges nothing.
//! - **Re-baselining** is explicit, never drift, and always recorded as an
//!   event (alarm state `rebaselined`): by config, a change of any
//!   baseline key (`baseline_samples`, `sigma_from`, `mean`, `sigma`, the
//!   mode, `baseline_id`) changes the rule's [`Spc::fingerprint`], and
//!   persisted baselines with another fingerprint are dropped at start-up
//!   (handed back by [`super::Detector::seed_spc`] for the log); on
//!   request, [`super::Detector::rebaseline`] drops the baselines of one
//!   rule (one series, one mode), for an MQTT command or the status page.
//! - **Tests** ([`Test`]): one point beyond k sigma; the Western Electric /
//!   Nelson run rules (2 of 3 beyond 2 sigma on one side, 4 of 5 beyond
//!   1 sigma on one side, 8 in a row on one side of the centre, 6 in a row
//!   each strictly above, or each strictly below, the one before); EWMA and
//!   tabular CUSUM. A run-rule alarm is present while the last points meet
//!   the rule and clears when they no longer do.
//! - **Modes**: the value of another series (a recipe number, a running
//!   flag: each whole number a mode; or a speed given as bands) selects the
//!   baseline. Each mode learns its own. A change of mode restarts the
//!   charts (run window, EWMA, CUSUM) so points of one operating point are
//!   never judged against another's; it is not an alarm. Until the mode
//!   series has reported, or while its value is in no band, nothing is
//!   judged.
//!
//! Not here: who may re-baseline (the agent's `[status.auth]`, checked by
//! the MQTT and status-page handlers).

mod baseline;
mod chart;

#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use self::chart::Chart;
use crate::reading::Severity;

/// The individuals-chart constant d2 for moving ranges of two points.
pub const D2: f64 = 1.128;

/// One SPC test, selectable by name in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Test {
    /// One point beyond k sigma (Western Electric rule 1, Nelson 1).
    BeyondLimits,
    /// Two of three points in a row beyond 2 sigma, on one side.
    TwoOfThree,
    /// Four of five points in a row beyond 1 sigma, on one side.
    FourOfFive,
    /// Eight points in a row on one side of the centre line.
    EightOneSide,
    /// Six points in a row, each above (or each below) the one before.
    SixTrending,
    /// The EWMA statistic beyond its limits.
    Ewma,
    /// The tabular CUSUM, either side, above h sigma.
    Cusum,
}

impl Test {
    /// Every test, in the order the checks are made.
    pub const ALL: [Test; 7] = [
        Test::BeyondLimits,
        Test::TwoOfThree,
        Test::FourOfFive,
        Test::EightOneSide,
        Test::SixTrending,
        Test::Ewma,
        Test::Cusum,
    ];

    /// The name in the config and the suffix of the event name
    /// (`<rule>.spc_<name>`).
    pub fn as_str(self) -> &'static str {
        match self {
            Test::BeyondLimits => "beyond_limits",
            Test::TwoOfThree => "two_of_three",
            Test::FourOfFive => "four_of_five",
            Test::EightOneSide => "eight_one_side",
            Test::SixTrending => "six_trending",
            Test::Ewma => "ewma",
            Test::Cusum => "cusum",
        }
    }

    /// The test named `s` in the config.
    pub fn parse(s: &str) -> Option<Test> {
        Test::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The number carried on the wire (`docs/wire-format.md`).
    pub fn code(self) -> u8 {
        match self {
            Test::BeyondLimits => 1,
            Test::TwoOfThree => 2,
            Test::FourOfFive => 3,
            Test::EightOneSide => 4,
            Test::SixTrending => 5,
            Test::Ewma => 6,
            Test::Cusum => 7,
        }
    }
}

/// How sigma is estimated from a learned baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigmaFrom {
    /// Mean moving range of consecutive points / d2 (1.128): the textbook
    /// estimate for individual readings, blind to slow wander.
    MovingRange,
    /// Sample standard deviation (n - 1).
    StdDev,
}

/// Where the centre line and sigma come from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Baseline {
    /// Learned from the first `samples` judged readings of each mode
    /// (at least 2).
    Learn { samples: u32, sigma_from: SigmaFrom },
    /// Given in the config (sigma above 0); then there is no mode.
    Fixed { mean: f64, sigma: f64 },
}

/// Which mode a reading of the rule's series belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeSource {
    /// The series whose last good value sets the mode.
    pub series: String,
    /// `None`: each whole number (rounded) is a mode. Otherwise the index
    /// of the first band `[from, to)` holding the value.
    pub bands: Option<Vec<(f64, f64)>>,
}

impl ModeSource {
    /// The mode of the value `v` of the mode series, if it has one.
    pub fn mode_of(&self, v: f64) -> Option<i64> {
        if !v.is_finite() {
            return None;
        }
        match &self.bands {
            None => Some(v.round() as i64),
            Some(bands) => bands
                .iter()
                .position(|&(from, to)| from <= v && v < to)
                .map(|i| i as i64),
        }
    }
}

/// EWMA limits: exact (time-varying) or asymptotic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EwmaLimits {
    /// mu ± L sigma sqrt(lambda / (2 - lambda) (1 - (1 - lambda)^(2i))),
    /// narrower for the first points after a (re)start.
    Exact,
    /// mu ± L sigma sqrt(lambda / (2 - lambda)).
    Asymptotic,
}

/// The SPC checks of one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Spc {
    /// The tests to run, each its own alarm; no duplicates.
    pub tests: Vec<Test>,
    pub baseline: Baseline,
    /// Limits of the beyond-limits test at this many sigma (default 3).
    pub k_sigma: f64,
    /// EWMA weight of the newest point, 0 < lambda <= 1 (default 0.2).
    pub ewma_lambda: f64,
    /// EWMA limits at this many sigma of the statistic (default 3).
    pub ewma_l: f64,
    pub ewma_limits: EwmaLimits,
    /// CUSUM reference value (slack) in sigma (default 0.5).
    pub cusum_k: f64,
    /// CUSUM decision interval in sigma (default 5).
    pub cusum_h: f64,
    pub mode: Option<ModeSource>,
    /// Changed by hand to learn every baseline of the rule again.
    pub baseline_id: String,
    pub severity: Severity,
}

impl Spc {
    /// The tests at their textbook defaults with a learned baseline.
    pub fn new(tests: &[Test], samples: u32) -> Spc {
        Spc {
            tests: tests.to_vec(),
            baseline: Baseline::Learn {
                samples,
                sigma_from: SigmaFrom::MovingRange,
            },
            k_sigma: 3.0,
            ewma_lambda: 0.2,
            ewma_l: 3.0,
            ewma_limits: EwmaLimits::Exact,
            cusum_k: 0.5,
            cusum_h: 5.0,
            mode: None,
            baseline_id: String::new(),
            severity: Severity::Warning,
        }
    }

    /// What persisted baselines must match to be used again: every key
    /// that decides a baseline, nothing else (a new k or a new test keeps
    /// the baselines).
    pub fn fingerprint(&self) -> String {
        let base = match self.baseline {
            Baseline::Learn {
                samples,
                sigma_from,
            } => format!("learn:{samples}:{sigma_from:?}"),
            Baseline::Fixed { mean, sigma } => format!("fixed:{mean}:{sigma}"),
        };
        let mode = match &self.mode {
            None => String::new(),
            Some(m) => format!("{}:{:?}", m.series, m.bands),
        };
        format!("{base}|{mode}|{}", self.baseline_id)
    }
}

/// What an SPC alarm event carries about the test that fired, in process
/// units: the wire's optional SPC element.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detail {
    pub test: Test,
    /// Centre line (the baseline mean).
    pub centre: f64,
    pub sigma: f64,
    /// The test's lower and upper limit (for CUSUM -H and +H; for the run
    /// rules the zone edges the rule counts against).
    pub lower: f64,
    pub upper: f64,
    /// The point, or the EWMA statistic, or the signed CUSUM (C+ when it is
    /// the larger side, otherwise -C-).
    pub statistic: f64,
}
