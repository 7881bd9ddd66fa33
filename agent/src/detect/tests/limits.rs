//! Limit levels, hysteresis, delays and the timestamp edge cases.

use super::*;

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
            "uncertain quality is judged like good",
            high(10.0),
            vec![Uncertain(0, 11.0), Uncertain(1, 5.0)],
            vec![ev(0, Raised, "r.high"), ev(1, Cleared, "r.high")],
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

/// Guards against the `min`/`max` shorthand losing which side fired: its
/// low and high alarms share the event name, so the limit kind is what
/// tells them apart; checks that are not limits carry none.
#[rustfmt::skip]
#[test]
fn every_alarm_says_which_limit_fired() {
    use crate::reading::LimitKind::{High, HighHigh, Low, LowLow};
    let all_four = with(rule(), |r| {
        r.limits.push(limit(Level::HighHigh, 20.0));
        r.limits.push(limit(Level::High, 10.0));
        r.limits.push(limit(Level::Low, 0.0));
        r.limits.push(limit(Level::LowLow, -10.0));
    });
    let mut stale = rule();
    stale.stale = Some(crate::detect::rule::Timeout { after_us: 5_000_000, severity: Severity::Major });
    // (rule, inputs, (second, state, event name, limit kind) expected)
    let cases = vec![
        (Rule::min_max("oil", "s", Some(0.0), Some(10.0)),
         vec![V(0, 11.0), V(1, -1.0), V(2, 5.0)],
         vec![(0, Raised, "oil", Some(High)), (1, Cleared, "oil", Some(High)),
              (1, Raised, "oil", Some(Low)), (2, Cleared, "oil", Some(Low))]),
        (all_four,
         vec![V(0, 25.0), V(1, -15.0)],
         vec![(0, Raised, "r.high_high", Some(HighHigh)), (0, Raised, "r.high", Some(High)),
              (1, Cleared, "r.high_high", Some(HighHigh)), (1, Cleared, "r.high", Some(High)),
              (1, Raised, "r.low", Some(Low)), (1, Raised, "r.low_low", Some(LowLow))]),
        (stale,
         vec![V(0, 1.0), Tick(10)],
         vec![(10, Raised, "r.stale", None)]),
    ];
    for (r, inputs, want) in cases {
        let mut d = Detector::new(&[r]);
        let got: Vec<_> = run_alarms(&mut d, &inputs)
            .into_iter()
            .map(|a| (a.ts_us / 1_000_000, a.state, a.rule, a.limit_kind))
            .collect();
        let want: Vec<_> = want
            .into_iter()
            .map(|(t, s, n, k)| (t, s, n.to_string(), k))
            .collect();
        assert_eq!(got, want);
    }
}
