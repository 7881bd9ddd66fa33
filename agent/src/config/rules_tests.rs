//! Tests of `[[rules]]` parsing and validation, beside `rules.rs` to keep
//! it readable.

use crate::config::{AgentConfig, ConfigError};
use crate::detect::{Hold, Level, Selector};
use crate::reading::Severity;

use crate::config::TEST_BASE;

/// The one series the rules below watch.
const SOURCES: &str = r#"
[[simulated]]
name = "press-3.oil_temp"
mean = 50.0
"#;

fn problems(rules: &str) -> String {
    match AgentConfig::parse(&format!("{TEST_BASE}{SOURCES}{rules}"), "t.toml") {
        Err(ConfigError::Invalid { problems, .. }) => problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        other => panic!("expected validation errors, got {other:?}"),
    }
}

#[test]
fn min_max_shorthand_still_works() {
    let text = format!(
        "{TEST_BASE}{SOURCES}[[rules]]\nname = \"oil_temp.high\"\nseries = \"press-3.oil_temp\"\nmax = 80.0\n"
    );
    let c = AgentConfig::parse(&text, "t.toml").unwrap();
    let r = &c.rules[0];
    assert!(r.bare_name);
    assert_eq!(r.limits[0].level, Level::High);
    assert_eq!(r.limits[0].limit, 80.0);
}

#[test]
fn full_form_parses() {
    let text = format!(
        r#"{TEST_BASE}{SOURCES}
[[rules]]
name = "oil_temp"
match_tags = {{ protocol = "simulated" }}
high_high = {{ limit = 90.0 }}
high = {{ limit = 80.0, severity = "warning" }}
low = {{ limit = 5.0 }}
deadband = 2.0
on_delay_samples = 3
off_delay_s = 30
rate = {{ rise_per_s = 0.5, window_s = 60 }}
stale = {{ after_s = 10 }}
flatline = {{ epsilon = 0.01, after_s = 600, severity = "major" }}
bad_quality = {{ after_s = 5 }}
"#
    );
    let c = AgentConfig::parse(&text, "t.toml").unwrap();
    let r = &c.rules[0];
    assert!(matches!(r.selector, Selector::Tags(_)));
    assert_eq!(r.limits.len(), 3);
    assert_eq!(r.limits[0].severity, Severity::Critical);
    assert_eq!(r.limits[1].severity, Severity::Warning);
    assert_eq!(r.on_delay, Hold::Samples(3));
    assert_eq!(r.off_delay, Hold::Micros(30_000_000));
    assert_eq!(r.rate.unwrap().window_us, 60_000_000);
    assert_eq!(r.stale.unwrap().after_us, 10_000_000);
    assert_eq!(r.flatline.unwrap().severity, Severity::Major);
    assert_eq!(r.bad_quality.unwrap().after_us, 5_000_000);
}

#[test]
fn every_rule_problem_is_reported_with_its_key_path() {
    let all = problems(
        r#"
[[rules]]
name = "a"
series = "press-3.oil_temp"
max = 80.0
[[rules]]
name = "b"
series = "press-3.oil_temp"
high = { limit = 80.0, severity = "urgent" }
high_high = { limit = 70.0 }
low = { limit = inf }
on_delay_samples = 3
on_delay_s = 3
rate = { window_s = 0 }
stale = { after_s = -1 }
flatline = { epsilon = -1, after_s = 10 }
[[rules]]
name = "c"
series = "press-3.oil_temp"
min = 1.0
high = { limit = 80.0 }
[[rules]]
name = "d"
match_tags = {}
"#,
    );
    for expected in [
        "rules[1].high.severity: \"urgent\" is not a severity",
        "rules[1].high_high.limit: 70 must be at or above high.limit 80",
        "rules[1].low.limit: inf must be a finite number",
        "rules[1]: give on_delay_samples or on_delay_s, not both",
        "rules[1].rate: give rise_per_s, fall_per_s or both",
        "rules[1].rate.window_s: 0 must be more than 0 seconds",
        "rules[1].stale.after_s: -1 must be more than 0 seconds",
        "rules[1].flatline.epsilon: -1 must be 0 or more",
        "rules[2]: min/max is a shorthand for low/high",
        "rules[3].match_tags: give at least one tag",
        "rules[3]: give at least one check",
    ] {
        assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
    }
    assert!(!all.contains("rules[0]"), "{all}");
}

#[test]
fn example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/agent.example.toml");
    let c = AgentConfig::load(std::path::Path::new(path)).unwrap();
    assert_eq!(c.rules.len(), 3);
    assert!(c.rules[2].spc.as_ref().is_some_and(|s| s.mode.is_some()));
}

#[test]
fn unknown_rule_key_is_rejected_with_its_name() {
    let text = format!(
        "{TEST_BASE}{SOURCES}[[rules]]\nname = \"a\"\nseries = \"press-3.oil_temp\"\nhigh = {{ limit = 1.0, severity = \"major\", delay = 3 }}\n"
    );
    let err = AgentConfig::parse(&text, "t.toml").unwrap_err().to_string();
    assert!(err.contains("delay"), "{err}");
}
