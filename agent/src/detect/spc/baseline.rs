//! Learning one baseline: the centre line and sigma of the first n judged
//! points of a mode, then frozen. Welford's running mean and sum of squares
//! (no catastrophic cancellation on large values) and the running sum of
//! moving ranges; a few numbers, whatever n is.

use serde::{Deserialize, Serialize};

use super::{SigmaFrom, D2};

/// A baseline being learned or learned.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Learner {
    /// Points taken so far.
    n: u32,
    mean: f64,
    /// Sum of squared deviations from the running mean.
    m2: f64,
    /// Sum of |x_i - x_(i-1)|.
    mr_sum: f64,
    last: f64,
}

impl Learner {
    /// Take `x` while fewer than `samples` points were taken. Returns the
    /// (centre, sigma) once the baseline is complete, this point included
    /// in it; `None` while learning.
    pub(crate) fn take(&mut self, x: f64, samples: u32, from: SigmaFrom) -> Option<(f64, f64)> {
        if self.n < samples {
            if self.n > 0 {
                self.mr_sum += (x - self.last).abs();
            }
            self.n += 1;
            let d = x - self.mean;
            self.mean += d / f64::from(self.n);
            self.m2 += d * (x - self.mean);
            self.last = x;
            if self.n < samples {
                return None;
            }
        }
        self.limits(from)
    }

    /// (centre, sigma), once at least two points were taken.
    pub(crate) fn limits(&self, from: SigmaFrom) -> Option<(f64, f64)> {
        if self.n < 2 {
            return None;
        }
        let sigma = match from {
            SigmaFrom::MovingRange => self.mr_sum / f64::from(self.n - 1) / D2,
            SigmaFrom::StdDev => (self.m2 / f64::from(self.n - 1)).sqrt(),
        };
        Some((self.mean, sigma))
    }

    /// Whether `samples` points were taken.
    pub(crate) fn complete(&self, samples: u32) -> bool {
        self.n >= samples
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-computed: 2, 4, 4, 4, 5, 5, 7, 9 has mean 5, sum of squares 32,
    /// sample sd sqrt(32/7) = 2.13809; moving ranges 2,0,0,1,0,2,2 sum 7,
    /// mean 1, sigma 1 / 1.128 = 0.886525.
    #[test]
    fn mean_and_both_sigmas_of_a_known_set() {
        let xs = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        let mut l = Learner::default();
        let got: Vec<Option<(f64, f64)>> = xs
            .iter()
            .map(|&x| l.take(x, 8, SigmaFrom::StdDev))
            .collect();
        assert!(got[..7].iter().all(Option::is_none), "learning: {got:?}");
        let (c, s) = got[7].unwrap();
        assert!((c - 5.0).abs() < 1e-12 && (s - 2.138_089_935).abs() < 1e-9);
        let (c, s) = l.limits(SigmaFrom::MovingRange).unwrap();
        assert!((c - 5.0).abs() < 1e-12 && (s - 0.886_524_822).abs() < 1e-9);
        // Frozen: later points change nothing.
        assert_eq!(l.take(1000.0, 8, SigmaFrom::StdDev), got[7]);
        assert!(l.complete(8));
    }
}
