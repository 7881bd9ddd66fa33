//! The state of one SPC test on one series: the baselines of its modes and
//! the chart (last points, EWMA, CUSUM) of the current mode. Pure: a point
//! and its mode go in, a judgement comes out.
//!
//! The chart restarts (window emptied, EWMA at the centre, CUSUM at 0) on a
//! change of mode, on a clock step back and when a baseline has just been
//! learned. Formulas (Montgomery, 9.1 and 9.2), with mu the centre and
//! sigma from the baseline:
//! - EWMA z_i = lambda x_i + (1 - lambda) z_(i-1), z_0 = mu; limits
//!   mu ± L sigma sqrt(lambda / (2 - lambda) (1 - (1 - lambda)^(2i))), or
//!   without the last factor when asymptotic.
//! - CUSUM C+_i = max(0, x_i - (mu + K) + C+_(i-1)),
//!   C-_i = max(0, (mu - K) - x_i + C-_(i-1)), K = k sigma, H = h sigma;
//!   out when either is above H. No reset after a signal: the alarm clears
//!   once both sums are back at or below H.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::baseline::Learner;
use super::{Baseline, Detail, EwmaLimits, Spc, Test};

/// The most points a run rule looks back on (eight in a row).
const WINDOW: usize = 8;

/// One test's state on one series; what is persisted across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Chart {
    /// Baselines by mode (mode 0 without a mode source).
    baselines: BTreeMap<i64, Learner>,
    /// The mode of the last judged point.
    mode: Option<i64>,
    /// The last points, in sigma from the centre, newest last.
    window: VecDeque<f64>,
    /// EWMA statistic and the number of points it has taken.
    ewma: Option<(f64, u32)>,
    /// CUSUM (C+, C-).
    cusum: (f64, f64),
}

/// A judged point: whether the test's condition is present, with what the
/// alarm event reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Judgement {
    pub present: bool,
    pub detail: Detail,
}

impl Judgement {
    /// The limit an alarm event reports: the one on the statistic's side.
    pub(crate) fn limit(&self) -> f64 {
        let d = &self.detail;
        let below = if d.test == Test::Cusum {
            d.statistic < 0.0
        } else {
            d.statistic < d.centre
        };
        if below {
            d.lower
        } else {
            d.upper
        }
    }
}

impl Chart {
    /// Judge the point `x` (a finite value of good or uncertain quality) of
    /// mode `mode` (0 without a mode source). `None` while the mode's
    /// baseline is being learned, when it has sigma 0, or for a run rule
    /// that has not seen enough points of this mode.
    pub(crate) fn judge(&mut self, test: Test, x: f64, mode: i64, spc: &Spc) -> Option<Judgement> {
        if self.mode != Some(mode) {
            self.restart();
            self.mode = Some(mode);
        }
        let (mu, sigma) = match spc.baseline {
            Baseline::Fixed { mean, sigma } => (mean, sigma),
            Baseline::Learn {
                samples,
                sigma_from,
            } => {
                let l = self.baselines.entry(mode).or_default();
                if !l.complete(samples) {
                    // The completing point belongs to the baseline and is
                    // not judged against it.
                    l.take(x, samples, sigma_from);
                    return None;
                }
                l.limits(sigma_from)?
            }
        };
        if !(sigma > 0.0 && sigma.is_finite()) {
            return None;
        }
        let z = (x - mu) / sigma;
        if self.window.len() == WINDOW {
            self.window.pop_front();
        }
        self.window.push_back(z);
        let detail = |lower: f64, upper: f64, statistic: f64| Detail {
            test,
            centre: mu,
            sigma,
            lower,
            upper,
            statistic,
        };
        let zone = |k: f64| detail(mu - k * sigma, mu + k * sigma, x);
        let (present, detail) = match test {
            Test::BeyondLimits => (z.abs() > spc.k_sigma, zone(spc.k_sigma)),
            Test::TwoOfThree => (self.beyond(3, 2, 2.0)?, zone(2.0)),
            Test::FourOfFive => (self.beyond(5, 4, 1.0)?, zone(1.0)),
            Test::EightOneSide => (self.beyond(8, 8, 0.0)?, zone(0.0)),
            Test::SixTrending => {
                let w = self.last(6)?;
                let up = w.windows(2).all(|p| p[1] > p[0]);
                let down = w.windows(2).all(|p| p[1] < p[0]);
                (up || down, zone(0.0))
            }
            Test::Ewma => {
                let lambda = spc.ewma_lambda;
                let (prev, i) = self.ewma.unwrap_or((mu, 0));
                let i = i.saturating_add(1);
                let e = lambda * x + (1.0 - lambda) * prev;
                self.ewma = Some((e, i));
                let mut var = lambda / (2.0 - lambda);
                if spc.ewma_limits == EwmaLimits::Exact {
                    var *= 1.0 - (1.0 - lambda).powf(2.0 * f64::from(i));
                }
                let w = spc.ewma_l * sigma * var.sqrt();
                (e > mu + w || e < mu - w, detail(mu - w, mu + w, e))
            }
            Test::Cusum => {
                let k = spc.cusum_k * sigma;
                let h = spc.cusum_h * sigma;
                let (hi, lo) = self.cusum;
                let hi = (x - (mu + k) + hi).max(0.0);
                let lo = ((mu - k) - x + lo).max(0.0);
                self.cusum = (hi, lo);
                let signed = if hi >= lo { hi } else { -lo };
                (hi > h || lo > h, detail(-h, h, signed))
            }
        };
        Some(Judgement { present, detail })
    }

    /// Re-baselining: forget the learned baseline of `mode` (every mode's
    /// when `None`) and restart the chart, so the next points of that mode
    /// are learned again. Returns the (centre, sigma) that was in force for
    /// `mode` (for `None`, the mode of the last judged point), if one was
    /// learned completely.
    pub(crate) fn forget(&mut self, mode: Option<i64>, spc: &Spc) -> Option<(f64, f64)> {
        let Baseline::Learn {
            samples,
            sigma_from,
        } = spc.baseline
        else {
            return None;
        };
        let reported = mode.or(self.mode)?;
        let dropped = self
            .baselines
            .get(&reported)
            .filter(|l| l.complete(samples))
            .and_then(|l| l.limits(sigma_from));
        match mode {
            Some(m) => {
                self.baselines.remove(&m);
            }
            None => self.baselines.clear(),
        }
        if mode.is_none() || self.mode == mode {
            self.restart();
        }
        dropped
    }

    /// Whether a baseline of `mode` (of any mode when `None`) is held,
    /// learned or being learned.
    pub(crate) fn holds(&self, mode: Option<i64>) -> bool {
        match mode {
            Some(m) => self.baselines.contains_key(&m),
            None => !self.baselines.is_empty(),
        }
    }

    /// Forget the chart (window, EWMA, CUSUM), keep the baselines.
    pub(crate) fn restart(&mut self) {
        self.window.clear();
        self.ewma = None;
        self.cusum = (0.0, 0.0);
    }

    /// The last `n` points, once there are that many.
    fn last(&self, n: usize) -> Option<Vec<f64>> {
        let len = self.window.len();
        (len >= n).then(|| self.window.range(len - n..).copied().collect())
    }

    /// Whether at least `m` of the last `n` points lie beyond `k` sigma on
    /// the same side (strictly beyond; for k = 0, strictly off the centre).
    fn beyond(&self, n: usize, m: usize, k: f64) -> Option<bool> {
        let w = self.last(n)?;
        let above = w.iter().filter(|&&z| z > k).count();
        let below = w.iter().filter(|&&z| z < -k).count();
        Some(above >= m || below >= m)
    }
}
