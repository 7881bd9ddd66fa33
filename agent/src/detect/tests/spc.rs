//! SPC tests in the detector: each run rule on a known sequence, modes taken
//! from another series, and restart with persisted baselines and charts.
//! Points are given in sigma from a centre line of 0 with sigma 1 unless a
//! baseline is learned, so the zones can be read off the tables.

use super::*;
use crate::detect::spc::{Baseline, ModeSource, Spc, Test};

fn spc_rule(test: Test) -> Rule {
    let mut s = Spc::new(&[test], 0);
    s.baseline = Baseline::Fixed {
        mean: 0.0,
        sigma: 1.0,
    };
    with(rule(), |r| r.spc = Some(s))
}

fn vs(values: &[f64]) -> Vec<In> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| V(i as i64, v))
        .collect()
}

#[rustfmt::skip]
#[test]
fn run_rules_table() {
    use Test::*;
    let cases: Vec<(&str, Rule, Vec<In>, Vec<Ev>)> = vec![
        ("beyond: exactly at 3 sigma is inside; either side is the same alarm",
         spc_rule(BeyondLimits), vs(&[0.0, 3.0, 3.1, -3.2, 0.0]),
         vec![ev(2, Raised, "r.spc_beyond_limits"), ev(4, Cleared, "r.spc_beyond_limits")]),
        ("2 of 3 beyond 2 sigma on one side",
         spc_rule(TwoOfThree), vs(&[0.0, 2.1, 0.0, 2.5, 0.0, 0.0]),
         vec![ev(3, Raised, "r.spc_two_of_three"), ev(4, Cleared, "r.spc_two_of_three")]),
        ("2 of 3 on opposite sides is no signal",
         spc_rule(TwoOfThree), vs(&[2.1, -2.5, 0.0, 2.2, -2.9]),
         vec![]),
        ("4 of 5 beyond 1 sigma: the fourth point raises",
         spc_rule(FourOfFive), vs(&[1.5, 1.5, 0.0, 1.5, 1.5, 0.0, 0.0]),
         vec![ev(4, Raised, "r.spc_four_of_five"), ev(5, Cleared, "r.spc_four_of_five")]),
        ("3 of 5 beyond 1 sigma is not enough; exactly 1 sigma is inside",
         spc_rule(FourOfFive), vs(&[-1.5, -1.5, -1.0, -1.5, -0.9, -1.2]),
         vec![]),
        ("8 in a row above the centre",
         spc_rule(EightOneSide), vs(&[0.1, 0.2, 0.1, 0.3, 0.1, 0.2, 0.1, 0.4, -0.1]),
         vec![ev(7, Raised, "r.spc_eight_one_side"), ev(8, Cleared, "r.spc_eight_one_side")]),
        ("a point exactly on the centre breaks the run",
         spc_rule(EightOneSide), vs(&[-0.1, -0.1, -0.1, -0.1, 0.0, -0.1, -0.1, -0.1, -0.1, -0.1, -0.1, -0.1]),
         vec![]),
        ("6 in a row rising (5 rises)",
         spc_rule(SixTrending), vs(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.6]),
         vec![ev(5, Raised, "r.spc_six_trending"), ev(6, Cleared, "r.spc_six_trending")]),
        ("5 in a row falling is not enough; an equal point breaks a trend",
         spc_rule(SixTrending), vs(&[0.5, 0.4, 0.3, 0.2, 0.1, 0.1, 0.0, -0.1, -0.2, -0.3]),
         vec![]),
        ("6 in a row falling",
         spc_rule(SixTrending), vs(&[0.5, 0.4, 0.3, 0.2, 0.1, 0.0]),
         vec![ev(5, Raised, "r.spc_six_trending")]),
        ("NaN, infinity and bad quality are not points of the chart",
         spc_rule(TwoOfThree), vec![V(0, 2.1), V(1, f64::NAN), Bad(2), V(3, f64::INFINITY), V(4, 2.2)],
         vec![]),
        ("the rule's on-delay applies: 2 samples",
         with(spc_rule(BeyondLimits), |r| r.on_delay = Hold::Samples(2)), vs(&[4.0, 0.0, 4.0, 4.0]),
         vec![ev(3, Raised, "r.spc_beyond_limits")]),
    ];
    check_table(cases);
}

#[test]
fn events_carry_the_test_limits_and_statistic() {
    let mut d = Detector::new(&[spc_rule(Test::BeyondLimits)]);
    let a = run_alarms(&mut d, &[V(0, -3.5)]);
    assert_eq!(a.len(), 1);
    let detail = a[0].spc.expect("SPC detail");
    assert_eq!(detail.test, Test::BeyondLimits);
    assert_eq!(
        (detail.centre, detail.sigma, detail.lower, detail.upper),
        (0.0, 1.0, -3.0, 3.0)
    );
    assert_eq!(
        (detail.statistic, a[0].value, a[0].limit),
        (-3.5, -3.5, -3.0)
    );
}

/// A rule on "s" learning 4 points per mode, the mode from series "m".
fn moded(bands: Option<Vec<(f64, f64)>>) -> Rule {
    let mut s = Spc::new(&[Test::BeyondLimits], 4);
    s.mode = Some(ModeSource {
        series: "m".into(),
        bands,
    });
    with(rule(), |r| r.spc = Some(s))
}

/// Feed ("m" or "s", second, value); collect (second, state) of the events.
fn run_two(d: &mut Detector, inputs: &[(&str, i64, f64)]) -> Vec<(i64, AlarmState)> {
    let (m, s) = (series("m", &[]), series("s", &[]));
    inputs
        .iter()
        .flat_map(|&(name, t, v)| {
            let which = if name == "m" { &m } else { &s };
            d.observe(&reading(which, t, v, Quality::Good))
        })
        .map(|a| (a.ts_us / 1_000_000, a.state))
        .collect()
}

/// Guards against a change of operating point raising an alarm: each mode
/// learns its own baseline, and is judged against it only.
#[test]
fn each_mode_is_judged_against_its_own_baseline() {
    // Mode 1: 10, 11, 10, 11: centre 10.5, sigma 1 / 1.128 = 0.8865, limits
    // 7.84 .. 13.16. Mode 2 learns 100, 101, 100, 101 the same way.
    let mut d = Detector::new(&[moded(None)]);
    #[rustfmt::skip]
    let got = run_two(&mut d, &[
        ("s", 0, 50.0),                       // no mode yet: not judged, not learned
        ("m", 1, 1.2),                        // rounds to mode 1
        ("s", 2, 10.0), ("s", 3, 11.0), ("s", 4, 10.0), ("s", 5, 11.0),
        ("s", 6, 13.0),                       // inside 13.16
        ("m", 7, 2.0),
        ("s", 8, 100.0), ("s", 9, 101.0), ("s", 10, 100.0), ("s", 11, 101.0),
        ("s", 12, 103.0),                     // inside mode 2's limits
        ("s", 13, 104.0),                     // 104 > 100.5 + 2.66: out
        ("m", 14, 1.0),
        ("s", 15, 10.5),                      // back in mode 1, inside: clears
        ("s", 16, 14.0),                      // out in mode 1
    ]);
    assert_eq!(got, [(13, Raised), (15, Cleared), (16, Raised)]);
}

#[test]
fn bands_make_modes_and_a_value_in_no_band_is_not_judged() {
    let mut d = Detector::new(&[moded(Some(vec![(0.0, 50.0), (50.0, 150.0)]))]);
    #[rustfmt::skip]
    let got = run_two(&mut d, &[
        ("m", 0, 30.0),
        ("s", 1, 10.0), ("s", 2, 11.0), ("s", 3, 10.0), ("s", 4, 11.0),
        ("m", 5, 49.9),                       // same band
        ("s", 6, 20.0),                       // out
        ("m", 7, 200.0),                      // no band
        ("s", 8, 10.5),                       // not judged: stays raised
        ("m", 9, 20.0),
        ("s", 10, 10.5),
    ]);
    assert_eq!(got, [(6, Raised), (10, Cleared)]);
}

/// Guards against a restart learning the baseline again (a machine that
/// failed during the outage would become the new normal) or losing a
/// CUSUM that was building up.
#[test]
fn restart_with_persisted_state_keeps_baselines_and_charts() {
    let mut spc = Spc::new(&[Test::BeyondLimits, Test::Cusum], 4);
    spc.baseline_id = "2026-12".into();
    let r = with(rule(), |r| r.spc = Some(spc.clone()));
    let mut before = Detector::new(std::slice::from_ref(&r));
    // Baseline 10, 11, 10, 11: centre 10.5, sigma 0.8865; K = 0.4433,
    // H = 4.4326. Then 12, 12: C+ = 1.0567, then 2.1135.
    let learn = [
        V(0, 10.0),
        V(1, 11.0),
        V(2, 10.0),
        V(3, 11.0),
        V(4, 12.0),
        V(5, 12.0),
    ];
    assert!(run_alarms(&mut before, &learn).is_empty());
    let saved = before.spc_states();
    assert_eq!(saved.len(), 2);
    // Through JSON, as the spool stores it.
    let json = serde_json::to_string(&saved).unwrap();
    let back: Vec<SpcState> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, saved);

    let mut after = Detector::new(std::slice::from_ref(&r));
    assert!(after.seed_spc(back.clone(), 0).is_empty());
    // 12.3, 12.3: C+ 2.1135 + 1.3567 = 3.4702, then 4.8270 > H: raises at
    // the second. A fresh detector would still be learning.
    let a = run_alarms(&mut after, &[V(6, 12.3), V(7, 12.3)]);
    let names: Vec<&str> = a.iter().map(|a| a.rule.as_str()).collect();
    assert_eq!(names, ["r.spc_cusum"]);
    let stat = a[0].spc.unwrap().statistic;
    assert!((stat - 4.8270).abs() < 1e-3, "{stat}");
    assert_eq!(a[0].ts_us, 7_000_000);
    let mut fresh = Detector::new(std::slice::from_ref(&r));
    assert!(run_alarms(&mut fresh, &[V(6, 12.3), V(7, 12.3)]).is_empty());

    // Re-baselining: a new baseline_id drops the persisted state.
    let mut spc2 = spc;
    spc2.baseline_id = "2027-01".into();
    let r2 = with(rule(), |r| r.spc = Some(spc2));
    let mut rebased = Detector::new(&[r2]);
    assert_eq!(rebased.seed_spc(back.clone(), 3_000_000), back);
    // Recorded as one rebaseline event per test, sent with the series'
    // first reading (without detail: the old keys are gone); then the
    // baseline is being learned, so 50.0 is judged by nothing.
    let a = run_alarms(&mut rebased, &[V(6, 50.0), V(7, 50.0)]);
    let got: Vec<(i64, AlarmState, &str, bool)> = a
        .iter()
        .map(|a| (a.ts_us, a.state, a.rule.as_str(), a.spc.is_some()))
        .collect();
    assert_eq!(
        got,
        [
            (
                3_000_000,
                AlarmState::Rebaselined,
                "r.spc_beyond_limits",
                false
            ),
            (3_000_000, AlarmState::Rebaselined, "r.spc_cusum", false),
        ]
    );
    // A new k_sigma keeps the baselines: it is no baseline key.
    let mut spc3 = Spc::new(&[Test::BeyondLimits, Test::Cusum], 4);
    spc3.baseline_id = "2026-12".into();
    spc3.k_sigma = 2.0;
    let mut wider = Detector::new(&[with(rule(), |r| r.spc = Some(spc3))]);
    assert!(wider.seed_spc(back, 0).is_empty());
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    fn all_tests() -> Rule {
        let mut s = Spc::new(&Test::ALL, 5);
        s.ewma_lambda = 0.3;
        with(rule(), |r| r.spc = Some(s))
    }

    fn events(a: &[Alarm]) -> Vec<(String, AlarmState, i64, u64)> {
        a.iter()
            .map(|a| (a.rule.clone(), a.state, a.ts_us, a.value.to_bits()))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Guards against a restart changing what the charts decide: an
        /// agent stopped after `cut` readings and seeded with its raised
        /// alarms and SPC states gives exactly the events of one that ran
        /// through. (Without delays: pending delay counts are not persisted,
        /// as the module doc says.)
        #[test]
        fn a_restart_with_persisted_state_changes_no_decision(
            values in prop::collection::vec(-50.0f64..50.0, 1..80),
            cut in 0usize..80,
        ) {
            let cut = cut.min(values.len());
            let inputs = vs(&values);
            let mut through = Detector::new(&[all_tests()]);
            let all = run_alarms(&mut through, &inputs);
            let mut first = Detector::new(&[all_tests()]);
            let before = run_alarms(&mut first, &inputs[..cut]);
            let mut second = Detector::new(&[all_tests()]);
            prop_assert!(second.seed(first.active()).is_empty());
            prop_assert!(second.seed_spc(first.spc_states(), 0).is_empty());
            let after = run_alarms(&mut second, &inputs[cut..]);
            let joined: Vec<Alarm> = before.into_iter().chain(after).collect();
            prop_assert_eq!(events(&joined), events(&all));
        }

        /// Any values, NaN and infinities included, through every test:
        /// no panic, and every event's SPC detail names its own test.
        #[test]
        fn any_values_never_panic(values in prop::collection::vec(prop_oneof![
            any::<f64>(), Just(f64::NAN), Just(f64::INFINITY), -1e3f64..1e3,
        ], 0..60)) {
            let mut d = Detector::new(&[all_tests()]);
            for a in run_alarms(&mut d, &vs(&values)) {
                let spc = a.spc.expect("every event of an SPC test has its detail");
                prop_assert_eq!(format!("r.spc_{}", spc.test.as_str()), a.rule);
            }
        }
    }
}
