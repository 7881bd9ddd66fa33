//! Report by exception: which readings of a series travel to the relay
//! when `[[report_by_exception]]` selects it. Opt-in and lossy by design: a
//! steady signal costs one reading per heartbeat instead of one per sample.
//! Pure state: readings in, a verdict out; no clock, no I/O.
//!
//! Not here: alarms. The pipeline hands every sample to the detector
//! *before* this filter ([`Intake`]), so a limit, rate, flatline or
//! quality alarm is judged on the full stream and raised exactly as it
//! would be without the filter. Only the batcher (and so the spool and
//! the relay) sees the filtered stream.
//!
//! Decided once, per series, against the last reading *sent* (not the
//! last one seen, so a slow drift is sent once it adds up to more than the
//! deadband):
//! - the first reading of a series is sent;
//! - a reading is sent when `|value - last sent| > deadband` (strictly: a
//!   deadband of 0 sends every change and holds exact repeats);
//! - a reading whose quality is not good is sent, and so is the first good
//!   one after it (every quality change is seen); so is a reading whose value is not finite (NaN, ±inf), and the
//!   first reading after a non-finite one: bad data is never hidden;
//! - a reading at least `max_silence` after the last sent is sent (the
//!   heartbeat): it is the current sample with its own timestamp, never a
//!   made-up one. The heartbeat is driven by samples: a source that stops
//!   sending produces no heartbeat (the `stale` rule is for that);
//! - a reading older than the last sent (the clock stepped back) is sent
//!   and becomes the reference: it is not for this filter to guess time;
//! - everything else is held: counted (`readings_filtered`), not sent.
//!
//! The deadband is absolute (`deadband`, in the series' unit) or a percent
//! of a declared span (`deadband_pct` with `span = [lo, hi]`), resolved to
//! units when the config is read. A percent of the last sent value is not
//! offered: around zero it shrinks to nothing and sends every sample, and
//! a consumer could not tell the band from the batch.
//!
//! Each sent reading of a filtered series carries its [`Reporting`]
//! (deadband in units, heartbeat interval) into the batch, so the relay
//! and Kafka say that the series is reported by exception.

use std::collections::HashMap;

use edge_wire::Reporting;

use crate::detect::{Detector, Selector};
use crate::reading::{Alarm, Quality, Reading, SeriesInfo};

/// One `[[report_by_exception]]` table, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ExceptionRule {
    /// The series it applies to; the first rule that matches a series wins.
    pub selector: Selector,
    /// Send a reading that moved by more than this from the last one sent,
    /// in the series' unit (finite, at least 0).
    pub deadband: f64,
    /// Send a reading at least this often (µs, above 0), as a heartbeat.
    pub max_silence_us: i64,
}

impl ExceptionRule {
    /// What the batch says about a series this rule filters.
    pub fn reporting(&self) -> Reporting {
        Reporting {
            deadband: self.deadband,
            // At least 1 ms: the config refuses less.
            max_silence_ms: (self.max_silence_us / 1000).max(1) as u64,
        }
    }
}

/// Why a reading of a filtered series was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The first reading of the series.
    First,
    /// It moved by more than the deadband from the last one sent.
    Moved,
    /// Its quality, or the last sent one's, is not good.
    NotGood,
    /// Its value (or the last sent one) is not finite.
    NotFinite,
    /// `max_silence` passed since the last one sent.
    Heartbeat,
    /// It is older than the last one sent.
    ClockBack,
}

/// The verdict on one reading.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// The series is not reported by exception: every reading is sent.
    Unfiltered,
    /// Sent, for this reason, with what the batch says about the series.
    Send(Why, Reporting),
    /// Held: within the deadband of the last one sent, before the heartbeat.
    Hold,
}

impl Verdict {
    /// Whether the reading goes into the batch.
    pub fn sends(&self) -> bool {
        !matches!(self, Verdict::Hold)
    }

    /// What the batch says about the reading's series, when filtered.
    pub fn reporting(&self) -> Option<Reporting> {
        match self {
            Verdict::Send(_, r) => Some(*r),
            _ => None,
        }
    }
}

/// The reading last sent of a filtered series.
#[derive(Debug, Clone, Copy)]
struct Sent {
    ts_us: i64,
    value: f64,
    quality: Quality,
}

/// Per series: its rule (if any) and the last reading sent.
#[derive(Debug)]
struct Track {
    rule: Option<usize>,
    last: Option<Sent>,
}

/// The filter over every series.
#[derive(Debug, Default)]
pub struct ExceptionFilter {
    rules: Vec<ExceptionRule>,
    series: HashMap<String, Track>,
}

impl ExceptionFilter {
    pub fn new(rules: &[ExceptionRule]) -> ExceptionFilter {
        ExceptionFilter {
            rules: rules.to_vec(),
            series: HashMap::new(),
        }
    }

    /// Whether any series can be filtered at all.
    pub fn is_off(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rule that filters `series`, if any (the first that matches).
    pub fn rule_for(&self, series: &SeriesInfo) -> Option<&ExceptionRule> {
        self.rules.iter().find(|r| r.selector.matches(series))
    }

    /// Judge one reading, in the order readings of the series are taken.
    pub fn judge(&mut self, r: &Reading) -> Verdict {
        if self.rules.is_empty() {
            return Verdict::Unfiltered;
        }
        let rules = &self.rules;
        let track = self
            .series
            .entry(r.series.name.clone())
            .or_insert_with(|| Track {
                rule: rules.iter().position(|x| x.selector.matches(&r.series)),
                last: None,
            });
        let Some(rule) = track.rule.map(|i| &rules[i]) else {
            return Verdict::Unfiltered;
        };
        let why = match track.last {
            None => Some(Why::First),
            Some(last) => why_send(rule, last, r),
        };
        match why {
            Some(why) => {
                track.last = Some(Sent {
                    ts_us: r.ts_us,
                    value: r.value,
                    quality: r.quality,
                });
                Verdict::Send(why, rule.reporting())
            }
            None => Verdict::Hold,
        }
    }
}

/// Why `r` is sent after `last`, or `None` to hold it. The order of the
/// checks only picks the reason reported; any one sends.
fn why_send(rule: &ExceptionRule, last: Sent, r: &Reading) -> Option<Why> {
    if r.ts_us < last.ts_us {
        Some(Why::ClockBack)
    } else if !r.value.is_finite() || !last.value.is_finite() {
        Some(Why::NotFinite)
    } else if r.quality != Quality::Good || last.quality != Quality::Good {
        Some(Why::NotGood)
    } else if (r.value - last.value).abs() > rule.deadband {
        Some(Why::Moved)
    } else if r.ts_us - last.ts_us >= rule.max_silence_us {
        Some(Why::Heartbeat)
    } else {
        None
    }
}

/// Detection, then report by exception, for one reading at a time: the
/// one place that orders the two, so that every sample is judged for
/// alarms whatever the filter then does with it.
pub struct Intake {
    pub detector: Detector,
    pub filter: ExceptionFilter,
}

impl Intake {
    /// The alarm transitions the reading causes, judged before the
    /// filter, and the filter's verdict on it.
    pub fn take(&mut self, r: &Reading) -> (Vec<Alarm>, Verdict) {
        let alarms = self.detector.observe(r);
        (alarms, self.filter.judge(r))
    }
}

#[cfg(test)]
#[path = "exception_tests.rs"]
mod tests;
