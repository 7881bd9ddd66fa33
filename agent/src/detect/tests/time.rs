//! Rate of change, stale, flatline and bad quality.

use super::*;

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
            "clock step back: the window restarts, no slope across the step",
            rate(Some(1.0), Some(1.0)),
            vec![
                V(100, 0.0),
                V(101, 0.0),
                V(10, 50.0),
                V(11, 50.0),
                V(12, 50.0),
                V(13, 50.0),
            ],
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
