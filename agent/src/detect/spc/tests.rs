//! The charts against the textbook: Montgomery, *Introduction to
//! Statistical Quality Control*, Table 9.1 (30 points, the first 20 from
//! N(10, 1), the last 10 from N(11, 1)), the tabular CUSUM of Example 9.1
//! (k = 0.5, h = 5: C+ reaches 5.28 at point 29, the first signal) and the
//! EWMA of Example 9.2 (lambda = 0.1, L = 2.7). The EWMA figures below were
//! worked out by hand from the formula in `chart.rs` (z_1 = 0.1 * 9.45 +
//! 0.9 * 10 = 9.945, UCL_1 = 10 + 2.7 sqrt(0.1 / 1.9 * (1 - 0.9^2)) =
//! 10.27) and, for the later points, with a separate script of the same
//! formula; the asymptotic limit 10 + 2.7 sqrt(0.1 / 1.9) = 10.6194.

use super::*;

/// Table 9.1 of Montgomery.
pub(crate) const TABLE_9_1: [f64; 30] = [
    9.45, 7.99, 9.29, 11.66, 12.16, 10.18, 8.04, 11.46, 9.20, 10.34, 9.03, 11.47, 10.51, 9.40,
    10.08, 9.37, 10.62, 10.31, 8.52, 10.84, 10.90, 9.33, 12.29, 11.50, 10.60, 11.08, 10.38, 11.62,
    11.31, 10.52,
];

fn fixed(tests: &[Test]) -> Spc {
    let mut s = Spc::new(tests, 0);
    s.baseline = Baseline::Fixed {
        mean: 10.0,
        sigma: 1.0,
    };
    s
}

/// Every judgement of `test` over Table 9.1.
fn judge_all(test: Test, spc: &Spc) -> Vec<chart::Judgement> {
    let mut c = Chart::default();
    TABLE_9_1
        .iter()
        .map(|&x| {
            c.judge(test, x, 0, spc)
                .expect("a fixed baseline judges every point")
        })
        .collect()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn cusum_matches_example_9_1() {
    let j = judge_all(Test::Cusum, &fixed(&[Test::Cusum]));
    // (point, signed CUSUM to 2 places as in the book's table: C+ when it
    // is the larger side, else -C-).
    #[rustfmt::skip]
    let want = [(1, -0.05), (2, -1.56), (3, -1.77), (4, 1.16), (5, 2.82), (7, -1.46),
                (23, 1.79), (28, 4.47), (29, 5.28), (30, 5.30)];
    for (i, s) in want {
        let d = j[i - 1].detail;
        assert!(
            close(d.statistic, s, 0.005),
            "point {i}: {} want {s}",
            d.statistic
        );
        assert_eq!((d.lower, d.upper), (-5.0, 5.0));
    }
    let first = j.iter().position(|j| j.present).map(|i| i + 1);
    assert_eq!(first, Some(29));
    assert!(j[29].present, "still out at 30");
}

#[test]
fn ewma_matches_example_9_2_with_exact_limits() {
    let mut spc = fixed(&[Test::Ewma]);
    spc.ewma_lambda = 0.1;
    spc.ewma_l = 2.7;
    let j = judge_all(Test::Ewma, &spc);
    #[rustfmt::skip]
    let want = [(1, 9.945, 10.27), (2, 9.7495, 10.3632), (10, 10.0232, 10.5805),
                (28, 10.5731, 10.6186), (29, 10.6468, 10.6187)];
    for (i, z, ucl) in want {
        let d = j[i - 1].detail;
        assert!(
            close(d.statistic, z, 5e-5),
            "z_{i} {} want {z}",
            d.statistic
        );
        assert!(close(d.upper, ucl, 5e-5), "UCL_{i} {} want {ucl}", d.upper);
        assert!(close(d.lower, 20.0 - ucl, 5e-5), "LCL_{i} symmetric");
    }
    let first = j.iter().position(|j| j.present).map(|i| i + 1);
    assert_eq!(first, Some(29));
}

#[test]
fn ewma_asymptotic_limits_are_constant() {
    let mut spc = fixed(&[Test::Ewma]);
    spc.ewma_lambda = 0.1;
    spc.ewma_l = 2.7;
    spc.ewma_limits = EwmaLimits::Asymptotic;
    let j = judge_all(Test::Ewma, &spc);
    for (i, j) in j.iter().enumerate() {
        assert!(close(j.detail.upper, 10.6194, 5e-5), "UCL_{}", i + 1);
    }
}

#[test]
fn a_change_of_mode_restarts_the_chart_but_keeps_both_baselines() {
    let spc = Spc::new(&[Test::Cusum], 2);
    let mut c = Chart::default();
    // Mode 0 learns 10, 12: centre 11, sigma 2 / 1.128.
    assert_eq!(c.judge(Test::Cusum, 10.0, 0, &spc), None);
    assert_eq!(c.judge(Test::Cusum, 12.0, 0, &spc), None);
    let s0 = 2.0 / D2;
    let j = c.judge(Test::Cusum, 11.0 + 2.0 * s0, 0, &spc).unwrap();
    // C+ = x - (mu + 0.5 sigma) = 1.5 sigma.
    assert!(close(j.detail.statistic, 1.5 * s0, 1e-12));
    // Mode 1 learns its own; its first judged point starts from C = 0.
    assert_eq!(c.judge(Test::Cusum, 100.0, 1, &spc), None);
    assert_eq!(c.judge(Test::Cusum, 100.0, 1, &spc), None);
    assert_eq!(
        c.judge(Test::Cusum, 100.0, 1, &spc),
        None,
        "sigma 0 judges nothing"
    );
    // Back in mode 0: baseline kept, CUSUM restarted.
    let j = c.judge(Test::Cusum, 11.0 + 2.0 * s0, 0, &spc).unwrap();
    assert!(close(j.detail.statistic, 1.5 * s0, 1e-12));
    assert!(close(j.detail.centre, 11.0, 1e-12));
}
