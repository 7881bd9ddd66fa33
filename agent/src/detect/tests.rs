//! Table-driven tests of every check kind and of the edge cases the module
//! doc promises. Timestamps are whole seconds to keep the tables readable.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::*;
use crate::reading::{AlarmState, Severity};
use AlarmState::{Cleared, Raised};

/// One input: a reading of good quality, a bad-quality reading, or a tick.
#[derive(Clone, Copy)]
enum In {
    V(i64, f64),
    Bad(i64),
    Tick(i64),
}
use In::{Bad, Tick, V};

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
fn limits_table() {
    let nan = f64::NAN;
    check_table(vec![
        (
            "inside stays quiet",
            high(10.0),
            vec![V(0, 1.0), V(1, 9.9)],
            vec![],
        ),
        (
            "exactly at the limit is inside",
            Rule::min_max("r", "s", Some(0.0), Some(10.0)),
            vec![V(0, 10.0), V(1, 0.0)],
            vec![],
        ),
        (
            "above then back: one raise, one clear",
            high(10.0),
            vec![V(0, 5.0), V(1, 11.0), V(2, 12.0), V(3, 9.0)],
            vec![ev(1, Raised, "r.high"), ev(3, Cleared, "r.high")],
        ),
        (
            "shorthand keeps the bare rule name, both sides",
            Rule::min_max("oil.high", "s", Some(0.0), Some(10.0)),
            vec![V(0, 11.0), V(1, -1.0)],
            vec![
                ev(0, Raised, "oil.high"),
                ev(1, Cleared, "oil.high"),
                ev(1, Raised, "oil.high"),
            ],
        ),
        (
            "high-high and high are separate alarms",
            with(high(10.0), |r| r.limits.push(limit(Level::HighHigh, 20.0))),
            vec![V(0, 25.0), V(1, 15.0), V(2, 5.0)],
            vec![
                ev(0, Raised, "r.high"),
                ev(0, Raised, "r.high_high"),
                ev(1, Cleared, "r.high_high"),
                ev(2, Cleared, "r.high"),
            ],
        ),
        (
            "low and low-low",
            with(rule(), |r| {
                r.limits.push(limit(Level::Low, 0.0));
                r.limits.push(limit(Level::LowLow, -10.0));
            }),
            vec![V(0, -1.0), V(1, -11.0), V(2, 1.0)],
            vec![
                ev(0, Raised, "r.low"),
                ev(1, Raised, "r.low_low"),
                ev(2, Cleared, "r.low"),
                ev(2, Cleared, "r.low_low"),
            ],
        ),
        (
            "deadband: clears only back inside by the margin (at the margin is inside)",
            with(high(10.0), |r| r.deadband = 2.0),
            vec![V(0, 11.0), V(1, 9.0), V(2, 10.5), V(3, 8.0)],
            vec![ev(0, Raised, "r.high"), ev(3, Cleared, "r.high")],
        ),
        (
            "deadband on a low limit",
            with(rule(), |r| {
                r.limits.push(limit(Level::Low, 0.0));
                r.deadband = 1.0;
            }),
            vec![V(0, -1.0), V(1, 0.5), V(2, 1.0)],
            vec![ev(0, Raised, "r.low"), ev(2, Cleared, "r.low")],
        ),
        (
            "NaN is ignored: neither raises nor clears",
            high(10.0),
            vec![V(0, nan), V(1, 11.0), V(2, nan), V(3, 12.0), V(4, 5.0)],
            vec![ev(1, Raised, "r.high"), ev(4, Cleared, "r.high")],
        ),
        (
            "infinity is above",
            high(10.0),
            vec![V(0, f64::INFINITY)],
            vec![ev(0, Raised, "r.high")],
        ),
        (
            "bad quality is not judged by limits",
            high(10.0),
            vec![V(0, 11.0), Bad(1), V(2, 12.0)],
            vec![ev(0, Raised, "r.high")],
        ),
        (
            "on-delay 3 samples, broken once",
            with(high(10.0), |r| r.on_delay = Hold::Samples(3)),
            vec![
                V(0, 11.0),
                V(1, 11.0),
                V(2, 5.0),
                V(3, 11.0),
                V(4, 11.0),
                V(5, 11.0),
            ],
            vec![ev(5, Raised, "r.high")],
        ),
        (
            "on-delay 10 s across a gap",
            with(high(10.0), |r| r.on_delay = Hold::Micros(10_000_000)),
            vec![V(0, 11.0), V(3, 11.0), V(60, 11.0)],
            vec![ev(60, Raised, "r.high")],
        ),
        (
            "off-delay 2 samples",
            with(high(10.0), |r| r.off_delay = Hold::Samples(2)),
            vec![V(0, 11.0), V(1, 5.0), V(2, 11.0), V(3, 5.0), V(4, 5.0)],
            vec![ev(0, Raised, "r.high"), ev(4, Cleared, "r.high")],
        ),
        (
            "off-delay 5 s",
            with(high(10.0), |r| r.off_delay = Hold::Micros(5_000_000)),
            vec![V(0, 11.0), V(1, 5.0), V(5, 5.0), V(6, 5.0)],
            vec![ev(0, Raised, "r.high"), ev(6, Cleared, "r.high")],
        ),
        (
            "out-of-order reading is ignored",
            high(10.0),
            vec![V(1, 5.0), V(3, 11.0), V(2, 5.0), V(3, 5.0), V(4, 5.0)],
            vec![ev(3, Raised, "r.high"), ev(4, Cleared, "r.high")],
        ),
        (
            "clock step back: the third older reading is accepted",
            high(10.0),
            vec![
                V(100, 11.0),
                V(10, 5.0),
                V(11, 5.0),
                V(12, 5.0),
                V(13, 11.0),
            ],
            vec![
                ev(100, Raised, "r.high"),
                ev(12, Cleared, "r.high"),
                ev(13, Raised, "r.high"),
            ],
        ),
    ]);
}

#[test]
fn rate_table() {
    let rate = |rise, fall| {
        with(rule(), |r| {
            r.rate = Some(Rate {
                rise_per_s: rise,
                fall_per_s: fall,
                window_us: 10_000_000,
                severity: Severity::Warning,
            })
        })
    };
    check_table(vec![
        (
            "rise faster than 1/s, clears as the window slides",
            rate(Some(1.0), None),
            vec![
                V(0, 0.0),
                V(1, 0.5),
                V(2, 5.0),
                V(3, 5.0),
                V(4, 5.0),
                V(5, 5.0),
            ],
            vec![ev(2, Raised, "r.rate_rise"), ev(5, Cleared, "r.rate_rise")],
        ),
        (
            "exactly at the rate is inside",
            rate(Some(1.0), None),
            vec![V(0, 0.0), V(2, 2.0)],
            vec![],
        ),
        (
            "fall; after a gap the alarm waits for two samples in the window",
            rate(None, Some(1.0)),
            vec![V(0, 10.0), V(1, 10.0), V(2, 0.0), V(30, 0.0), V(31, 0.0)],
            vec![ev(2, Raised, "r.rate_fall"), ev(31, Cleared, "r.rate_fall")],
        ),
        (
            "a step across a gap longer than the window is not a rate",
            rate(Some(1.0), Some(1.0)),
            vec![V(0, 0.0), V(100, 100.0), V(101, 100.0)],
            vec![],
        ),
        (
            "a rise does not trip the fall check",
            rate(None, Some(1.0)),
            vec![V(0, 0.0), V(1, 50.0)],
            vec![],
        ),
    ]);
}

#[test]
fn time_checks_table() {
    let stale = with(rule(), |r| {
        r.stale = Some(Timeout {
            after_us: 10_000_000,
            severity: Severity::Warning,
        })
    });
    let flat = with(rule(), |r| {
        r.flatline = Some(Flatline {
            epsilon: 0.1,
            after_us: 10_000_000,
            severity: Severity::Warning,
        })
    });
    let bad = with(rule(), |r| {
        r.bad_quality = Some(Timeout {
            after_us: 5_000_000,
            severity: Severity::Warning,
        })
    });
    check_table(vec![
        (
            "stale after exactly T, once, cleared by the next reading",
            stale.clone(),
            vec![V(0, 1.0), Tick(5), Tick(10), Tick(11), V(12, 1.0), Tick(13)],
            vec![ev(10, Raised, "r.stale"), ev(12, Cleared, "r.stale")],
        ),
        (
            "a series that never reported is not stale",
            stale.clone(),
            vec![Tick(100)],
            vec![],
        ),
        (
            "a tick from before the last reading (clock back) is not stale",
            stale.clone(),
            vec![V(100, 1.0), Tick(50)],
            vec![],
        ),
        (
            "a bad-quality reading is still a reading",
            stale,
            vec![V(0, 1.0), Bad(8), Tick(15)],
            vec![],
        ),
        (
            "flatline after T within epsilon, cleared when it moves",
            flat.clone(),
            vec![V(0, 5.0), V(5, 5.05), V(10, 5.0), V(11, 6.0)],
            vec![ev(10, Raised, "r.flatline"), ev(11, Cleared, "r.flatline")],
        ),
        (
            "a slow drift beyond epsilon is not flat",
            flat.clone(),
            vec![V(0, 5.0), V(5, 5.08), V(10, 5.16), V(15, 5.24)],
            vec![],
        ),
        (
            "NaN does not break a flat run",
            flat,
            vec![V(0, 5.0), V(5, f64::NAN), V(10, 5.0)],
            vec![ev(10, Raised, "r.flatline")],
        ),
        (
            "bad quality for T raises, a good reading clears",
            bad.clone(),
            vec![V(0, 1.0), Bad(1), Bad(3), Bad(6), V(7, 1.0)],
            vec![
                ev(6, Raised, "r.bad_quality"),
                ev(7, Cleared, "r.bad_quality"),
            ],
        ),
        (
            "a good reading restarts the bad run",
            bad,
            vec![Bad(0), Bad(4), V(5, 1.0), Bad(6), Bad(10), Bad(11)],
            vec![ev(11, Raised, "r.bad_quality")],
        ),
    ]);
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
