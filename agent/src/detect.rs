//! Threshold detection on the gateway: pure state machine, no I/O.
//!
//! A rule watches one series with a lower and/or upper limit. A value
//! strictly above `max` (or strictly below `min`) raises the alarm; the first
//! value back inside the limits clears it. A value exactly at a limit is
//! inside. NaN values and readings of bad quality never change alarm state.
//! One event is emitted per transition, never one per reading.

use std::collections::HashMap;

use crate::config::ThresholdRule;
use crate::reading::{Alarm, AlarmState, Quality, Reading};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Side {
    Above,
    Below,
}

struct RuleState {
    rule: ThresholdRule,
    active: Option<(Side, f64)>,
}

/// Evaluates every configured rule against the readings it is given.
pub struct Detector {
    rules: Vec<RuleState>,
    by_series: HashMap<String, Vec<usize>>,
}

impl Detector {
    pub fn new(rules: &[ThresholdRule]) -> Detector {
        let mut by_series: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            by_series.entry(r.series.clone()).or_default().push(i);
        }
        Detector {
            rules: rules
                .iter()
                .map(|r| RuleState {
                    rule: r.clone(),
                    active: None,
                })
                .collect(),
            by_series,
        }
    }

    /// Feed one reading; returns the alarm transitions it causes, in order.
    pub fn observe(&mut self, reading: &Reading) -> Vec<Alarm> {
        let mut events = Vec::new();
        if reading.quality == Quality::Bad || reading.value.is_nan() {
            return events;
        }
        let Some(idxs) = self.by_series.get(reading.series.name.as_str()) else {
            return events;
        };
        let v = reading.value;
        for &i in idxs {
            let st = &mut self.rules[i];
            let now = match (st.rule.max, st.rule.min) {
                (Some(hi), _) if v > hi => Some((Side::Above, hi)),
                (_, Some(lo)) if v < lo => Some((Side::Below, lo)),
                _ => None,
            };
            let event = |state, limit| Alarm {
                series: reading.series.clone(),
                rule: st.rule.name.clone(),
                state,
                value: v,
                limit,
                ts_us: reading.ts_us,
            };
            match (st.active, now) {
                (None, Some((_, limit))) => events.push(event(AlarmState::Raised, limit)),
                (Some((_, limit)), None) => events.push(event(AlarmState::Cleared, limit)),
                (Some((was, old)), Some((side, limit))) if was != side => {
                    events.push(event(AlarmState::Cleared, old));
                    events.push(event(AlarmState::Raised, limit));
                }
                _ => {}
            }
            st.active = now;
        }
        events
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::reading::SeriesInfo;

    fn rule(min: Option<f64>, max: Option<f64>) -> ThresholdRule {
        ThresholdRule {
            name: "r".into(),
            series: "s".into(),
            min,
            max,
        }
    }

    /// (state, value, limit) of one emitted event.
    type Event = (AlarmState, f64, f64);

    fn feed(d: &mut Detector, values: &[f64]) -> Vec<Event> {
        let series = Arc::new(SeriesInfo {
            name: "s".into(),
            unit: String::new(),
            tags: Default::default(),
        });
        values
            .iter()
            .enumerate()
            .flat_map(|(i, &value)| {
                d.observe(&Reading {
                    series: series.clone(),
                    ts_us: i as i64,
                    value,
                    quality: Quality::Good,
                })
            })
            .map(|a| (a.state, a.value, a.limit))
            .collect()
    }

    use AlarmState::{Cleared, Raised};

    #[test]
    fn transitions_table() {
        let cases: Vec<(&str, ThresholdRule, Vec<f64>, Vec<Event>)> = vec![
            (
                "inside stays quiet",
                rule(Some(0.0), Some(10.0)),
                vec![1.0, 5.0, 9.9],
                vec![],
            ),
            (
                "exactly at the limit is inside",
                rule(Some(0.0), Some(10.0)),
                vec![10.0, 0.0],
                vec![],
            ),
            (
                "above then back",
                rule(None, Some(10.0)),
                vec![5.0, 11.0, 12.0, 9.0],
                vec![(Raised, 11.0, 10.0), (Cleared, 9.0, 10.0)],
            ),
            (
                "below then back",
                rule(Some(0.0), None),
                vec![-1.0, 1.0],
                vec![(Raised, -1.0, 0.0), (Cleared, 1.0, 0.0)],
            ),
            (
                "jump from above to below clears then raises",
                rule(Some(0.0), Some(10.0)),
                vec![11.0, -1.0],
                vec![
                    (Raised, 11.0, 10.0),
                    (Cleared, -1.0, 10.0),
                    (Raised, -1.0, 0.0),
                ],
            ),
            (
                "NaN changes nothing",
                rule(None, Some(10.0)),
                vec![11.0, f64::NAN, 12.0],
                vec![(Raised, 11.0, 10.0)],
            ),
            (
                "infinity is above",
                rule(None, Some(10.0)),
                vec![f64::INFINITY],
                vec![(Raised, f64::INFINITY, 10.0)],
            ),
        ];
        for (name, r, values, want) in cases {
            let mut d = Detector::new(&[r]);
            assert_eq!(feed(&mut d, &values), want, "{name}");
        }
    }

    #[test]
    fn bad_quality_never_raises() {
        let mut d = Detector::new(&[rule(None, Some(10.0))]);
        let series = Arc::new(SeriesInfo {
            name: "s".into(),
            unit: String::new(),
            tags: Default::default(),
        });
        let events = d.observe(&Reading {
            series,
            ts_us: 0,
            value: 99.0,
            quality: Quality::Bad,
        });
        assert!(events.is_empty());
    }

    #[test]
    fn other_series_are_ignored() {
        let mut d = Detector::new(&[rule(None, Some(10.0))]);
        let other = Arc::new(SeriesInfo {
            name: "t".into(),
            unit: String::new(),
            tags: Default::default(),
        });
        let r = Reading {
            series: other,
            ts_us: 0,
            value: 99.0,
            quality: Quality::Good,
        };
        assert!(d.observe(&r).is_empty());
    }
}
