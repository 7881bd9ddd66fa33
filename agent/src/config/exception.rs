//! `[[report_by_exception]]`: report by exception as written, and its
//! validation into [`crate::exception::ExceptionRule`]. Off unless a table
//! selects a series; a series is selected the way `[[rules]]` select it,
//! by exact `series` name or by `match_tags`. Every problem is reported
//! with its key path, for example
//! `report_by_exception[1].span: [5, 5]: lo must be below hi`.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::issue::Problems;
use crate::detect::Selector;

use crate::exception::ExceptionRule;

/// `[[report_by_exception]]`: send a series' readings only when they move (lossy; off by default).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReportByException {
    /// Series this applies to, for example "press-3.oil_temp". Give this or `match_tags`.
    pub series: Option<String>,
    /// Apply to every series whose tags include all of these (for example { device = "press-3" }) instead of one `series`.
    pub match_tags: Option<BTreeMap<String, String>>,
    /// Send a reading when it differs from the last one sent by more than this, in the series' unit. Give this or `deadband_pct`.
    pub deadband: Option<f64>,
    /// The deadband as a percent of `span` (for example 0.5 for 0.5 %). Give this or `deadband`.
    pub deadband_pct: Option<f64>,
    /// The measuring range [lo, hi] of the series, for `deadband_pct` (for example [0, 10] for a 0..10 bar transmitter).
    pub span: Option<[f64; 2]>,
    /// Send a reading at least this often, in seconds, even when the value holds (a heartbeat: the current sample with its own timestamp). Required.
    pub max_silence_s: f64,
}

/// Validate every table; `series` is the sorted list of configured series,
/// or `None` when series names are not known before the agent runs.
pub(super) fn validate(
    p: &mut Problems,
    raw: &[RawReportByException],
    series: Option<&[String]>,
) -> Vec<ExceptionRule> {
    raw.iter()
        .enumerate()
        .map(|(i, r)| validate_one(p, &format!("report_by_exception[{i}]"), r, series))
        .collect()
}

fn validate_one(
    p: &mut Problems,
    at: &str,
    r: &RawReportByException,
    series: Option<&[String]>,
) -> ExceptionRule {
    let selector = super::rules::selector(p, at, &r.series, &r.match_tags, series);
    let deadband = match (r.deadband, r.deadband_pct, r.span) {
        (Some(d), None, None) => {
            if !(d.is_finite() && d >= 0.0) {
                p.add(
                    format!("{at}.deadband"),
                    format!("{d} must be a finite number of at least 0"),
                );
            }
            d
        }
        (Some(_), None, Some(_)) => {
            p.add(
                format!("{at}.span"),
                "span is for deadband_pct; an absolute deadband needs none",
            );
            0.0
        }
        (None, Some(pct), Some([lo, hi])) => {
            let mut ok = true;
            if !(pct.is_finite() && (0.0..=100.0).contains(&pct)) {
                p.add(
                    format!("{at}.deadband_pct"),
                    format!("{pct} must be a percent from 0 to 100"),
                );
                ok = false;
            }
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                p.add(
                    format!("{at}.span"),
                    format!("[{lo}, {hi}]: lo must be below hi, both finite"),
                );
                ok = false;
            }
            if ok {
                pct / 100.0 * (hi - lo)
            } else {
                0.0
            }
        }
        (None, Some(_), None) => {
            p.add(
                format!("{at}.span"),
                "deadband_pct needs the series' span = [lo, hi]",
            );
            0.0
        }
        (Some(_), Some(_), _) => {
            p.add(at, "give deadband or deadband_pct, not both");
            0.0
        }
        (None, None, _) => {
            p.add(
                at,
                "give deadband (in the series' unit) or deadband_pct with span",
            );
            0.0
        }
    };
    let s = r.max_silence_s;
    if !(s.is_finite() && s >= 0.001) {
        p.add(
            format!("{at}.max_silence_s"),
            format!("{s} must be a number of seconds of at least 0.001"),
        );
    }
    ExceptionRule {
        selector,
        deadband,
        max_silence_us: if s.is_finite() && s >= 0.001 {
            (s * 1e6).round() as i64
        } else {
            1_000
        },
    }
}

/// What `check-config` prints about one rule: that the series is lossy,
/// and how.
pub fn describe(rule: &ExceptionRule) -> String {
    let which = match &rule.selector {
        Selector::Series(s) => format!("series {s:?}"),
        Selector::Tags(t) => format!("series with tags {t:?}"),
    };
    format!(
        "report by exception (lossy) for {which}: sent when moved by more than {} or after {} s of holding",
        rule.deadband,
        rule.max_silence_us as f64 / 1e6
    )
}

#[cfg(test)]
mod tests {
    use crate::config::{AgentConfig, ConfigError};

    const BASE: &str = "gateway_id = \"gw\"\n[spool]\npath = \"/tmp/s.db\"\n[uplink]\nurl = \"http://127.0.0.1:9/ingest\"\ntoken = \"t-0123456789abcdef0123\"\n[[simulated]]\nname = \"s\"\nmean = 1.0\n";

    fn problems(extra: &str) -> Vec<String> {
        match AgentConfig::parse(&format!("{BASE}{extra}"), "t.toml") {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid { problems, .. }) => {
                problems.iter().map(ToString::to_string).collect()
            }
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn off_by_default_and_a_percent_of_span_is_resolved_to_units() {
        let c = AgentConfig::parse(BASE, "t.toml").unwrap();
        assert!(c.report_by_exception.is_empty());
        let c = AgentConfig::parse(
            &format!("{BASE}[[report_by_exception]]\nseries = \"s\"\ndeadband_pct = 0.5\nspan = [0, 10]\nmax_silence_s = 60\n"),
            "t.toml",
        )
        .unwrap();
        let r = &c.report_by_exception[0];
        assert_eq!((r.deadband, r.max_silence_us), (0.05, 60_000_000));
    }

    #[test]
    fn problems_table() {
        let rbe = "[[report_by_exception]]\n";
        for (extra, want) in [
            (
                "series = \"nope\"\ndeadband = 1\nmax_silence_s = 60\n",
                "report_by_exception[0].series: \"nope\" is not a configured series",
            ),
            (
                "series = \"s\"\ndeadband = -1\nmax_silence_s = 60\n",
                "report_by_exception[0].deadband: -1 must be a finite number of at least 0",
            ),
            (
                "series = \"s\"\ndeadband_pct = 0.5\nmax_silence_s = 60\n",
                "report_by_exception[0].span: deadband_pct needs the series' span = [lo, hi]",
            ),
            (
                "series = \"s\"\ndeadband_pct = 0.5\nspan = [5, 5]\nmax_silence_s = 60\n",
                "report_by_exception[0].span: [5, 5]: lo must be below hi, both finite",
            ),
            (
                "series = \"s\"\ndeadband_pct = 200\nspan = [0, 1]\nmax_silence_s = 60\n",
                "report_by_exception[0].deadband_pct: 200 must be a percent from 0 to 100",
            ),
            (
                "series = \"s\"\ndeadband = 1\ndeadband_pct = 1\nspan = [0, 1]\nmax_silence_s = 60\n",
                "report_by_exception[0]: give deadband or deadband_pct, not both",
            ),
            (
                "series = \"s\"\nmax_silence_s = 60\n",
                "report_by_exception[0]: give deadband (in the series' unit) or deadband_pct with span",
            ),
            (
                "series = \"s\"\ndeadband = 1\nmax_silence_s = 0\n",
                "report_by_exception[0].max_silence_s: 0 must be a number of seconds of at least 0.001",
            ),
            (
                "deadband = 1\nmax_silence_s = 60\n",
                "report_by_exception[0]: give series or match_tags",
            ),
        ] {
            let got = problems(&format!("{rbe}{extra}"));
            assert!(got.iter().any(|g| g == want), "{extra}: {got:?}");
        }
    }

    /// A mistyped or missing key is a TOML error that names the line.
    #[test]
    fn a_broken_line_is_named_with_its_line() {
        let got =
            problems("[[report_by_exception]]\nseries = \"s\"\ndeadband = 1\nmax_silence = 60\n");
        assert!(
            got[0].contains("line 13") && got[0].contains("max_silence"),
            "{got:?}"
        );
        let got = problems("[[report_by_exception]]\nseries = \"s\"\ndeadband = 1\nspan = [0]\nmax_silence_s = 60\n");
        assert!(got[0].contains("line 13"), "{got:?}");
    }

    /// The example's commented `[[report_by_exception]]`, uncommented and
    /// added to the example itself: the documented keys stay valid and say
    /// what the comments say (0.5 % of a 150-unit span, 60 s heartbeat).
    #[test]
    fn the_example_block_is_valid_once_uncommented() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/agent.example.toml");
        let example = std::fs::read_to_string(path).unwrap();
        let block: String = example
            .lines()
            .skip_while(|l| !l.starts_with("# [[report_by_exception]]"))
            .take_while(|l| l.starts_with('#'))
            .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or("")))
            .collect();
        assert!(block.contains("max_silence_s"), "no block in:\n{block}");
        let dir = std::path::Path::new(path).parent().unwrap();
        let parse = |text: &str| AgentConfig::parse_in(text, "agent.toml", dir);
        let c = parse(&format!("{example}\n{block}")).unwrap_or_else(|e| panic!("{e}\n{block}"));
        let r = &c.report_by_exception[..];
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].deadband, r[0].max_silence_us), (0.75, 60_000_000));
        assert!(parse(&example).unwrap().report_by_exception.is_empty());
    }
}
