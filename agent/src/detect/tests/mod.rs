//! Table-driven tests of every check kind and of the edge cases the module
//! doc promises. Timestamps are whole seconds to keep the tables readable.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::reading::{AlarmState, Severity};
use AlarmState::{Cleared, Raised};

mod limits;
mod rebaseline;
mod seed;
mod spc;
mod time;

/// One input: a reading of good or uncertain quality, a bad-quality
/// reading, or a tick.
#[derive(Clone, Copy)]
enum In {
    V(i64, f64),
    Uncertain(i64, f64),
    Bad(i64),
    Tick(i64),
}
use In::{Bad, Tick, Uncertain, V};

/// (second, state, event name) of one emitted event.
type Ev = (i64, AlarmState, String);

fn series(name: &str, tags: &[(&str, &str)]) -> Arc<SeriesInfo> {
    Arc::new(SeriesInfo {
        name: name.into(),
        unit: String::new(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

fn reading(s: &Arc<SeriesInfo>, sec: i64, value: f64, quality: Quality) -> Reading {
    Reading {
        series: s.clone(),
        ts_us: sec * 1_000_000,
        value,
        quality,
    }
}

fn run_alarms(d: &mut Detector, inputs: &[In]) -> Vec<Alarm> {
    let s = series("s", &[]);
    inputs
        .iter()
        .flat_map(|i| match *i {
            V(t, v) => d.observe(&reading(&s, t, v, Quality::Good)),
            Uncertain(t, v) => d.observe(&reading(&s, t, v, Quality::Uncertain)),
            Bad(t) => d.observe(&reading(&s, t, f64::NAN, Quality::Bad)),
            Tick(t) => d.tick(t * 1_000_000),
        })
        .collect()
}

fn run(rule: Rule, inputs: &[In]) -> Vec<Ev> {
    let mut d = Detector::new(&[rule]);
    run_alarms(&mut d, inputs)
        .into_iter()
        .map(|a| (a.ts_us / 1_000_000, a.state, a.rule))
        .collect()
}

fn ev(t: i64, state: AlarmState, name: &str) -> Ev {
    (t, state, name.to_string())
}

fn rule() -> Rule {
    Rule::new("r", Selector::Series("s".into()))
}

fn limit(level: Level, limit: f64) -> Limit {
    Limit {
        level,
        limit,
        severity: Severity::Major,
    }
}

fn high(l: f64) -> Rule {
    let mut r = rule();
    r.limits.push(limit(Level::High, l));
    r
}

fn with(mut r: Rule, f: impl FnOnce(&mut Rule)) -> Rule {
    f(&mut r);
    r
}

fn check_table(cases: Vec<(&str, Rule, Vec<In>, Vec<Ev>)>) {
    for (name, r, inputs, want) in cases {
        assert_eq!(run(r, &inputs), want, "{name}");
    }
}

#[test]
fn events_carry_value_limit_severity_and_duration() {
    let r = with(rule(), |r| {
        r.limits.push(Limit {
            level: Level::HighHigh,
            limit: 100.0,
            severity: Severity::Critical,
        })
    });
    let mut d = Detector::new(&[r]);
    let a = run_alarms(&mut d, &[V(10, 120.0), V(70, 50.0)]);
    assert_eq!(a.len(), 2);
    assert_eq!(
        (a[0].value, a[0].limit, a[0].severity),
        (120.0, 100.0, Severity::Critical)
    );
    assert_eq!(a[0].duration_us, None);
    assert_eq!((a[1].value, a[1].limit), (50.0, 100.0));
    assert_eq!(a[1].duration_us, Some(60_000_000));
}

#[test]
fn counters_count_what_was_ignored() {
    let mut d = Detector::new(&[high(10.0)]);
    run_alarms(
        &mut d,
        &[
            V(5, 1.0),
            V(4, 1.0),
            V(5, 1.0),
            V(6, f64::NAN),
            V(3, 1.0),
            V(2, 1.0),
            V(1, 1.0),
        ],
    );
    let c = d.counters();
    assert_eq!((c.out_of_order, c.clock_steps, c.nan), (4, 1, 1));
}

#[test]
fn tag_selector_applies_to_every_matching_series() {
    let tags: BTreeMap<String, String> = [("device".to_string(), "press-3".to_string())].into();
    let mut r = Rule::new("hot", Selector::Tags(tags));
    r.limits.push(limit(Level::High, 10.0));
    let mut d = Detector::new(&[r]);
    let a = series("press-3.a", &[("device", "press-3"), ("site", "x")]);
    let b = series("press-3.b", &[("device", "press-3")]);
    let c = series("press-4.a", &[("device", "press-4")]);
    let mut raised = Vec::new();
    for s in [&a, &b, &c] {
        for e in d.observe(&reading(s, 0, 11.0, Quality::Good)) {
            raised.push(e.series.name.clone());
        }
    }
    assert_eq!(raised, ["press-3.a", "press-3.b"]);
}

/// Guards against alarm flooding: a noisy signal hovering around its limit
/// must give one raise and one clear with a deadband, not one per crossing.
#[test]
fn flapping_signal_gives_one_raise_and_one_clear_with_hysteresis() {
    // 10 ± 0.4 for 1000 samples, with two incommensurate periods so the
    // crossings are irregular; then well below.
    let mut inputs: Vec<In> = (0..1000)
        .map(|i| {
            let x = i as f64;
            V(i, 10.0 + 0.25 * (x * 0.9).sin() + 0.15 * (x * 2.3).cos())
        })
        .collect();
    inputs.extend((1000..1010).map(|i| V(i, 8.0)));
    let without = run(high(10.0), &inputs);
    assert!(
        without.len() > 200,
        "the signal should flap without hysteresis: {}",
        without.len()
    );
    let with_deadband = run(with(high(10.0), |r| r.deadband = 1.0), &inputs);
    assert_eq!(
        with_deadband,
        vec![ev(0, Raised, "r.high"), ev(1000, Cleared, "r.high")]
    );
    // An off-delay longer than the noise's swings works too.
    let off = run(
        with(high(10.0), |r| r.off_delay = Hold::Samples(10)),
        &inputs,
    );
    assert_eq!(off.len(), 2, "{off:?}");
}

#[test]
fn check_count_is_one_alarm_per_check() {
    let mut r = Rule::new("r", Selector::Series("s".into()));
    assert_eq!(r.check_count(), 0);
    r.limits.push(Limit {
        level: Level::High,
        limit: 1.0,
        severity: Severity::Major,
    });
    r.rate = Some(Rate {
        rise_per_s: Some(1.0),
        fall_per_s: Some(1.0),
        window_us: 1,
        severity: Severity::Warning,
    });
    r.stale = Some(Timeout {
        after_us: 1,
        severity: Severity::Major,
    });
    // One limit, rise and fall, stale.
    assert_eq!(r.check_count(), 4);
}
