//! `[rules.spc]`: statistical process control on a rule's series, as
//! written, and its validation into [`crate::detect::Spc`]. Every problem
//! is reported with its key path (`rules[2].spc.tests[1]: "two_of_tree" is
//! not an SPC test (beyond_limits, ...)`), all of them at once.

use serde::Deserialize;

use super::issue::Problems;
use super::rules::severity;
use crate::detect::spc::{Baseline, EwmaLimits, ModeSource, SigmaFrom, Spc, Test};
use crate::reading::Severity;

/// `[rules.spc]`: control limits learned from the process (or given), and
/// the tests run against them; each test raises `<rule name>.spc_<test>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpc {
    /// Tests to run, by name: "beyond_limits", "two_of_three", "four_of_five", "eight_one_side", "six_trending", "ewma", "cusum".
    pub tests: Vec<String>,
    /// Learn the centre line and sigma from this many first readings of each mode (give this, or `mean` and `sigma`).
    pub baseline_samples: Option<u32>,
    /// How a learned baseline estimates sigma: "moving_range" (mean moving range / 1.128, default) or "std_dev".
    pub sigma_from: Option<String>,
    /// The centre line, instead of learning it (with `sigma`; not with `mode`).
    pub mean: Option<f64>,
    /// The process sigma, instead of learning it (with `mean`).
    pub sigma: Option<f64>,
    /// beyond_limits raises outside centre ± this many sigma (default 3).
    pub k_sigma: Option<f64>,
    /// EWMA weight of the newest reading, above 0 and at most 1 (default 0.2).
    pub ewma_lambda: Option<f64>,
    /// EWMA limits at this many sigma of the EWMA statistic (default 3).
    pub ewma_l: Option<f64>,
    /// "exact" (default: limits narrower for the first readings, as the textbook) or "asymptotic".
    pub ewma_limits: Option<String>,
    /// CUSUM slack k in sigma (default 0.5: tuned to a shift of 1 sigma).
    pub cusum_k: Option<f64>,
    /// CUSUM decision interval h in sigma (default 5).
    pub cusum_h: Option<f64>,
    /// Learn a baseline per operating point, taken from another series.
    pub mode: Option<RawMode>,
    /// Change this text to learn every baseline of the rule again (the only way to re-baseline; recorded in the log).
    pub baseline_id: Option<String>,
    /// "warning", "major" or "critical" (default warning).
    pub severity: Option<String>,
}

/// `mode`: which operating point a reading belongs to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMode {
    /// The series whose last good value is the mode (a recipe number, a running flag, a speed).
    pub series: String,
    /// Bands [from, to) of that value, each its own mode; without bands each whole number is a mode.
    pub bands: Option<Vec<[f64; 2]>>,
}

/// Validate `raw` at key path `at` (`rules[2].spc`); `series` is the sorted
/// list of configured series, or `None` to accept any name.
pub(super) fn validate(p: &mut Problems, at: &str, raw: &RawSpc, series: Option<&[String]>) -> Spc {
    let mut spc = Spc::new(&[], 0);
    if raw.tests.is_empty() {
        p.add(format!("{at}.tests"), "give at least one test");
    }
    for (i, name) in raw.tests.iter().enumerate() {
        match Test::parse(name) {
            Some(t) if spc.tests.contains(&t) => p.add(
                format!("{at}.tests[{i}]"),
                format!("{name:?} is given twice"),
            ),
            Some(t) => spc.tests.push(t),
            None => {
                let all: Vec<&str> = Test::ALL.iter().map(|t| t.as_str()).collect();
                p.add(
                    format!("{at}.tests[{i}]"),
                    format!("{name:?} is not an SPC test ({})", all.join(", ")),
                );
            }
        }
    }
    let sigma_from = match raw.sigma_from.as_deref() {
        None | Some("moving_range") => SigmaFrom::MovingRange,
        Some("std_dev") => SigmaFrom::StdDev,
        Some(s) => {
            p.add(
                format!("{at}.sigma_from"),
                format!("{s:?} is not moving_range or std_dev"),
            );
            SigmaFrom::MovingRange
        }
    };
    spc.baseline = match (raw.baseline_samples, raw.mean, raw.sigma) {
        (Some(n), None, None) => {
            if n < 2 {
                p.add(
                    format!("{at}.baseline_samples"),
                    format!("{n} must be 2 or more"),
                );
            }
            Baseline::Learn {
                samples: n,
                sigma_from,
            }
        }
        (None, Some(mean), Some(sigma)) => {
            if !mean.is_finite() {
                p.add(
                    format!("{at}.mean"),
                    format!("{mean} must be a finite number"),
                );
            }
            positive(p, &format!("{at}.sigma"), sigma);
            if raw.mode.is_some() {
                p.add(
                    format!("{at}.mode"),
                    "a given mean and sigma hold for every mode; learn the baselines (baseline_samples) to use modes",
                );
            }
            Baseline::Fixed { mean, sigma }
        }
        _ => {
            p.add(
                at,
                "give baseline_samples (learn the limits) or mean and sigma (given limits), not both",
            );
            Baseline::Fixed {
                mean: 0.0,
                sigma: 1.0,
            }
        }
    };
    spc.k_sigma = positive_or(p, &format!("{at}.k_sigma"), raw.k_sigma, 3.0);
    spc.ewma_lambda = raw.ewma_lambda.unwrap_or(0.2);
    if !(spc.ewma_lambda > 0.0 && spc.ewma_lambda <= 1.0) {
        p.add(
            format!("{at}.ewma_lambda"),
            format!("{} must be above 0 and at most 1", spc.ewma_lambda),
        );
    }
    spc.ewma_l = positive_or(p, &format!("{at}.ewma_l"), raw.ewma_l, 3.0);
    spc.ewma_limits = match raw.ewma_limits.as_deref() {
        None | Some("exact") => EwmaLimits::Exact,
        Some("asymptotic") => EwmaLimits::Asymptotic,
        Some(s) => {
            p.add(
                format!("{at}.ewma_limits"),
                format!("{s:?} is not exact or asymptotic"),
            );
            EwmaLimits::Exact
        }
    };
    spc.cusum_k = raw.cusum_k.unwrap_or(0.5);
    if !(spc.cusum_k.is_finite() && spc.cusum_k >= 0.0) {
        p.add(
            format!("{at}.cusum_k"),
            format!("{} must be 0 or more", spc.cusum_k),
        );
    }
    spc.cusum_h = positive_or(p, &format!("{at}.cusum_h"), raw.cusum_h, 5.0);
    spc.mode = raw
        .mode
        .as_ref()
        .map(|m| mode(p, &format!("{at}.mode"), m, series));
    spc.baseline_id = raw.baseline_id.clone().unwrap_or_default();
    spc.severity = severity(p, at, &raw.severity, Severity::Warning);
    spc
}

fn mode(p: &mut Problems, at: &str, m: &RawMode, series: Option<&[String]>) -> ModeSource {
    if series.is_some_and(|all| all.binary_search(&m.series).is_err()) {
        p.add(
            format!("{at}.series"),
            format!("{:?} is not a configured series", m.series),
        );
    }
    if let Some(bands) = &m.bands {
        if bands.is_empty() {
            p.add(format!("{at}.bands"), "give at least one band, or no bands");
        }
        for (i, [from, to]) in bands.iter().enumerate() {
            if !(from.is_finite() && to.is_finite() && from < to) {
                p.add(
                    format!("{at}.bands[{i}]"),
                    format!(
                        "[{from}, {to}] must be two finite numbers, the first below the second"
                    ),
                );
            }
        }
        for (i, w) in bands.windows(2).enumerate() {
            if w[1][0] < w[0][1] {
                p.add(
                    format!("{at}.bands[{}]", i + 1),
                    format!(
                        "starts at {} inside the band before, which ends at {}",
                        w[1][0], w[0][1]
                    ),
                );
            }
        }
    }
    ModeSource {
        series: m.series.clone(),
        bands: m
            .bands
            .as_ref()
            .map(|b| b.iter().map(|&[from, to]| (from, to)).collect()),
    }
}

fn positive(p: &mut Problems, key: &str, v: f64) {
    if !(v.is_finite() && v > 0.0) {
        p.add(key, format!("{v} must be a positive number"));
    }
}

fn positive_or(p: &mut Problems, key: &str, v: Option<f64>, default: f64) -> f64 {
    let v = v.unwrap_or(default);
    positive(p, key, v);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_rule_set;

    fn errors(spc: &str) -> Vec<String> {
        let text = format!("[[rules]]\nname = \"r\"\nseries = \"s\"\n[rules.spc]\n{spc}\n");
        match parse_rule_set(&text, "t.toml") {
            Ok(_) => Vec::new(),
            Err(crate::config::ConfigError::Invalid { problems, .. }) => {
                problems.iter().map(|i| i.to_string()).collect()
            }
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn defaults_are_the_textbook_ones() {
        let text = "[[rules]]\nname = \"r\"\nseries = \"s\"\n[rules.spc]\ntests = [\"ewma\", \"cusum\"]\nbaseline_samples = 100\n";
        let rules = parse_rule_set(text, "t.toml").unwrap();
        let spc = rules[0].spc.as_ref().unwrap();
        assert_eq!(spc.tests, [Test::Ewma, Test::Cusum]);
        assert_eq!(
            (
                spc.k_sigma,
                spc.ewma_lambda,
                spc.ewma_l,
                spc.cusum_k,
                spc.cusum_h
            ),
            (3.0, 0.2, 3.0, 0.5, 5.0)
        );
        assert_eq!(spc.ewma_limits, EwmaLimits::Exact);
        assert_eq!(
            spc.baseline,
            Baseline::Learn {
                samples: 100,
                sigma_from: SigmaFrom::MovingRange
            }
        );
        assert_eq!(rules[0].check_count(), 2);
    }

    #[rustfmt::skip]
    #[test]
    fn problems_name_the_key_and_the_value() {
        let cases: &[(&str, &[&str])] = &[
            ("tests = [\"two_of_tree\"]\nbaseline_samples = 10",
             &["rules[0].spc.tests[0]: \"two_of_tree\" is not an SPC test (beyond_limits, two_of_three, four_of_five, eight_one_side, six_trending, ewma, cusum)"]),
            ("tests = [\"ewma\", \"ewma\"]\nbaseline_samples = 10",
             &["rules[0].spc.tests[1]: \"ewma\" is given twice"]),
            ("tests = []\nbaseline_samples = 1",
             &["rules[0].spc.tests: give at least one test", "rules[0].spc.baseline_samples: 1 must be 2 or more"]),
            ("tests = [\"cusum\"]",
             &["rules[0].spc: give baseline_samples (learn the limits) or mean and sigma (given limits), not both"]),
            ("tests = [\"cusum\"]\nmean = 1.0\nsigma = 0.0\nmode = { series = \"m\" }",
             &["rules[0].spc.sigma: 0 must be a positive number", "rules[0].spc.mode: a given mean and sigma hold for every mode"]),
            ("tests = [\"ewma\"]\nbaseline_samples = 10\newma_lambda = 1.5\newma_limits = \"wide\"",
             &["rules[0].spc.ewma_lambda: 1.5 must be above 0 and at most 1", "rules[0].spc.ewma_limits: \"wide\" is not exact or asymptotic"]),
            ("tests = [\"ewma\"]\nbaseline_samples = 10\nmode = { series = \"m\", bands = [[0.0, 50.0], [40.0, 30.0]] }",
             &["rules[0].spc.mode.bands[1]: [40, 30] must be two finite numbers", "rules[0].spc.mode.bands[1]: starts at 40 inside the band before, which ends at 50"]),
            ("tests = [\"ewma\"]\nbaseline_samples = 10\nseverity = \"loud\"",
             &["rules[0].spc.severity: \"loud\" is not a severity"]),
        ];
        for (spc, want) in cases {
            let got = errors(spc).join("\n");
            for w in *want {
                assert!(got.contains(w), "{spc:?}: want {w:?} in\n{got}");
            }
        }
    }
}
