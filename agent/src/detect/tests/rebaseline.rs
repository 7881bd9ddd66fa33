//! Re-baselining on request ([`Detector::rebaseline`]): what is dropped,
//! the events that record it, what is refused, and that the next baseline
//! is learned from the readings after the request. Baseline 10, 11, 10, 11
//! (4 samples): centre 10.5, moving range 1, sigma 1 / 1.128 = 0.886525,
//! upper 3-sigma limit 13.159574.

use super::*;
use crate::detect::spc::{Baseline, ModeSource, Spc, Test};
use crate::detect::{RebaselineError, RebaselineRequest};

fn learned_rule(tests: &[Test]) -> Rule {
    with(rule(), |r| r.spc = Some(Spc::new(tests, 4)))
}

fn request(rule: &str, series: Option<&str>, mode: Option<i64>) -> RebaselineRequest {
    RebaselineRequest {
        rule: rule.into(),
        series: series.map(Into::into),
        mode,
    }
}

const SIGMA: f64 = 1.0 / 1.128;

fn learn() -> Vec<In> {
    vec![V(0, 10.0), V(1, 11.0), V(2, 10.0), V(3, 11.0)]
}

#[test]
fn a_raised_alarm_is_cleared_and_the_dropped_baseline_recorded() {
    let mut d = Detector::new(&[learned_rule(&[Test::BeyondLimits])]);
    let mut inputs = learn();
    inputs.push(V(4, 20.0));
    let a = run_alarms(&mut d, &inputs);
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].state, Raised);

    let done = d.rebaseline(&request("r", None, None), 6_000_000).unwrap();
    assert_eq!(done.series, ["s"]);
    let got: Vec<(AlarmState, &str, i64, Option<i64>)> = done
        .alarms
        .iter()
        .map(|a| (a.state, a.rule.as_str(), a.ts_us, a.duration_us))
        .collect();
    assert_eq!(
        got,
        [
            (Cleared, "r.spc_beyond_limits", 6_000_000, Some(2_000_000)),
            (
                AlarmState::Rebaselined,
                "r.spc_beyond_limits",
                6_000_000,
                None
            ),
        ]
    );
    let detail = done.alarms[1].spc.expect("the dropped baseline");
    assert!((detail.centre - 10.5).abs() < 1e-12, "{detail:?}");
    assert!((detail.sigma - SIGMA).abs() < 1e-9, "{detail:?}");
    assert!((detail.upper - 13.159_574).abs() < 1e-6, "{detail:?}");
    assert!((detail.lower - 7.840_426).abs() < 1e-6, "{detail:?}");
    assert!(done.alarms[1].value.is_nan() && detail.statistic.is_nan());
    assert_eq!(done.alarms[1].limit, detail.upper);
    assert!(d.active().is_empty(), "nothing stays raised");

    // The next four readings are the new baseline (20, 21, 20, 21: centre
    // 20.5), judged by nothing; 22 is inside it, 30 beyond it.
    let after = run_alarms(
        &mut d,
        &[
            V(7, 20.0),
            V(8, 21.0),
            V(9, 20.0),
            V(10, 21.0),
            V(11, 22.0),
            V(12, 30.0),
        ],
    );
    let got: Vec<(i64, AlarmState)> = after
        .iter()
        .map(|a| (a.ts_us / 1_000_000, a.state))
        .collect();
    assert_eq!(got, [(12, Raised)]);
    assert!((after[0].spc.unwrap().centre - 20.5).abs() < 1e-12);
}

/// Every test of the rule is re-baselined; a test not raised gets only
/// its rebaseline event. A second request right after drops what the new
/// baseline has learned so far (here: nothing yet), so it is refused.
#[test]
fn every_test_of_the_rule_and_nothing_twice() {
    let mut d = Detector::new(&[learned_rule(&[Test::BeyondLimits, Test::Cusum])]);
    run_alarms(&mut d, &learn());
    let done = d
        .rebaseline(&request("r", Some("s"), None), 5_000_000)
        .unwrap();
    let names: Vec<(&str, AlarmState)> = done
        .alarms
        .iter()
        .map(|a| (a.rule.as_str(), a.state))
        .collect();
    assert_eq!(
        names,
        [
            ("r.spc_beyond_limits", AlarmState::Rebaselined),
            ("r.spc_cusum", AlarmState::Rebaselined),
        ]
    );
    assert_eq!(
        d.rebaseline(&request("r", None, None), 5_000_001)
            .unwrap_err(),
        RebaselineError::NothingToForget {
            rule: "r".into(),
            what: "on any series".into()
        }
    );
}

#[test]
fn refusals_change_nothing() {
    let mut fixed = Spc::new(&[Test::BeyondLimits], 0);
    fixed.baseline = Baseline::Fixed {
        mean: 0.0,
        sigma: 1.0,
    };
    let rules = [
        learned_rule(&[Test::BeyondLimits]),
        with(high(5.0), |r| r.name = "limits".into()),
        with(rule(), |r| {
            r.name = "fixed".into();
            r.spc = Some(fixed);
        }),
    ];
    let mut d = Detector::new(&rules);
    let cases: Vec<(RebaselineRequest, RebaselineError)> = vec![
        (
            request("nope", None, None),
            RebaselineError::UnknownRule("nope".into()),
        ),
        (
            request("r.spc_beyond_limits", None, None),
            RebaselineError::UnknownRule("r.spc_beyond_limits".into()),
        ),
        (
            request("limits", None, None),
            RebaselineError::NotSpc("limits".into()),
        ),
        (
            request("fixed", None, None),
            RebaselineError::FixedBaseline("fixed".into()),
        ),
        (
            request("r", None, Some(2)),
            RebaselineError::NoSuchMode {
                rule: "r".into(),
                mode: 2,
            },
        ),
        (
            request("r", None, None),
            RebaselineError::NothingToForget {
                rule: "r".into(),
                what: "on any series".into(),
            },
        ),
    ];
    for (req, want) in &cases {
        assert_eq!(d.rebaseline(req, 0).unwrap_err(), *want, "{req:?}");
    }
    run_alarms(&mut d, &learn());
    // A typo in the series name is not reported as done.
    assert_eq!(
        d.rebaseline(&request("r", Some("S"), None), 0).unwrap_err(),
        RebaselineError::NothingToForget {
            rule: "r".into(),
            what: "on series \"S\"".into(),
        }
    );
    // Mode 0 is the one mode of a rule without a mode source.
    assert!(d.rebaseline(&request("r", Some("s"), Some(0)), 0).is_ok());
}

/// Mode 1's baseline is learned again, mode 2's is kept and judges at once.
#[test]
fn one_mode_only() {
    let mut spc = Spc::new(&[Test::BeyondLimits], 4);
    spc.mode = Some(ModeSource {
        series: "m".into(),
        bands: None,
    });
    let mut d = Detector::new(&[with(rule(), |r| r.spc = Some(spc))]);
    let s = series("s", &[]);
    let m = series("m", &[]);
    let feed = |d: &mut Detector, t: i64, mode: f64, v: f64| {
        let mut out = d.observe(&reading(&m, t, mode, Quality::Good));
        out.extend(d.observe(&reading(&s, t, v, Quality::Good)));
        out
    };
    for (t, mode) in [(0, 1.0), (10, 2.0)] {
        for (i, v) in [10.0, 11.0, 10.0, 11.0].into_iter().enumerate() {
            assert!(feed(&mut d, t + i as i64, mode, v).is_empty());
        }
    }
    let done = d
        .rebaseline(&request("r", None, Some(1)), 20_000_000)
        .unwrap();
    assert_eq!(done.alarms.len(), 1);
    assert!(done.alarms[0].spc.is_some(), "mode 1 had learned one");
    // Mode 2 judges 20 at once; mode 1 learns again from 20.
    assert_eq!(feed(&mut d, 21, 2.0, 20.0).len(), 1);
    assert!(feed(&mut d, 22, 1.0, 20.0).is_empty());
    assert!(feed(&mut d, 23, 1.0, 40.0).is_empty(), "still learning");
}

/// After a restart, before the series reports: the seeded baseline is
/// dropped at once (so it is not persisted again) and the event waits for
/// the series' unit and tags.
#[test]
fn a_seeded_series_gets_its_event_with_its_first_reading() {
    let r = learned_rule(&[Test::BeyondLimits]);
    let mut before = Detector::new(std::slice::from_ref(&r));
    run_alarms(&mut before, &learn());
    let mut after = Detector::new(std::slice::from_ref(&r));
    assert!(after.seed_spc(before.spc_states(), 0).is_empty());

    let done = after
        .rebaseline(&request("r", None, None), 9_000_000)
        .unwrap();
    assert_eq!(done.series, ["s"]);
    assert!(done.alarms.is_empty());
    // Persisted now, a third start would learn again too.
    let mut third = Detector::new(std::slice::from_ref(&r));
    third.seed_spc(after.spc_states(), 0);
    assert!(run_alarms(&mut third, &[V(10, 50.0)]).is_empty());

    let a = run_alarms(&mut after, &[V(10, 50.0), V(11, 50.0)]);
    let got: Vec<(i64, AlarmState)> = a.iter().map(|a| (a.ts_us, a.state)).collect();
    assert_eq!(got, [(9_000_000, AlarmState::Rebaselined)]);
    let detail = a[0].spc.expect("the seeded baseline was learned");
    assert!((detail.centre - 10.5).abs() < 1e-12);
}
