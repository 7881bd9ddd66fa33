//! The alarm board: which alarms are raised on which series, and whether
//! someone acknowledged them, as a local HMI should see it. Pure state: the
//! MQTT task ([`super`]) feeds it events and publishes what it renders.
//!
//! - [`AlarmBoard::apply`] takes every raise, clear and acknowledge event;
//! - [`AlarmBoard::state_json`] renders a series' retained state message:
//!   `"state": "alarm"` with the raised alarms, or `"state": "normal"` with
//!   none once the last one cleared (explicit rather than an empty retained
//!   message, so a new subscriber sees that the series is normal);
//! - [`event_json`] renders one event for the events topic;
//! - [`parse_ack`] and [`AlarmBoard::acknowledge`] turn an HMI's
//!   acknowledgement into acknowledge events, or a specific error.
//!
//! JSON has no NaN or infinity: a non-finite value or limit is `null`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::detect::ActiveAlarm;
use crate::reading::{Alarm, AlarmState, SeriesInfo, Severity};

/// One raised alarm on the board.
#[derive(Debug, Clone, PartialEq)]
struct Raised {
    severity: Severity,
    /// The value at the raise; unknown for alarms raised before a restart.
    value: Option<f64>,
    limit: f64,
    raised_us: i64,
    acked_us: Option<i64>,
}

#[derive(Debug, Clone)]
struct SeriesAlarms {
    info: Arc<SeriesInfo>,
    /// By event name.
    raised: BTreeMap<String, Raised>,
}

/// One raised alarm as the status page lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct RaisedAlarm {
    pub series: String,
    pub unit: String,
    pub rule: String,
    pub severity: Severity,
    /// The value at the raise; unknown for alarms raised before a restart.
    pub value: Option<f64>,
    pub limit: f64,
    pub raised_us: i64,
    /// When it was acknowledged, if it was.
    pub acked_us: Option<i64>,
}

/// Raised alarms per series.
#[derive(Debug, Clone)]
pub struct AlarmBoard {
    gateway_id: String,
    series: BTreeMap<String, SeriesAlarms>,
}

/// What an HMI asked to acknowledge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckRequest {
    /// Event name, for example "oil_temp.high".
    pub rule: String,
    /// Who acknowledged, if the HMI said.
    pub by: Option<String>,
}

/// Why an acknowledgement was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("ack payload is not UTF-8 text")]
    NotText,
    #[error("ack payload is empty: expected a rule name or {{\"rule\": \"<name>\"}}")]
    Empty,
    #[error("ack payload is not a JSON object with a \"rule\" string: {0}")]
    BadJson(String),
    #[error("series {series:?} has no raised alarm {rule:?} to acknowledge")]
    NotRaised { series: String, rule: String },
}

/// Read an acknowledgement payload: a plain rule name
/// (`oil_temp.high`) or a JSON object (`{"rule": "oil_temp.high", "by":
/// "operator-7"}`).
pub fn parse_ack(payload: &[u8]) -> Result<AckRequest, AckError> {
    let text = std::str::from_utf8(payload).map_err(|_| AckError::NotText)?;
    let text = text.trim();
    if text.is_empty() {
        return Err(AckError::Empty);
    }
    if !text.starts_with('{') {
        return Ok(AckRequest {
            rule: text.to_owned(),
            by: None,
        });
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Raw {
        rule: String,
        by: Option<String>,
    }
    let raw: Raw = serde_json::from_str(text).map_err(|e| AckError::BadJson(e.to_string()))?;
    if raw.rule.trim().is_empty() {
        return Err(AckError::BadJson("\"rule\" is empty".into()));
    }
    Ok(AckRequest {
        rule: raw.rule,
        by: raw.by,
    })
}

impl AlarmBoard {
    pub fn new(gateway_id: &str) -> AlarmBoard {
        AlarmBoard {
            gateway_id: gateway_id.to_owned(),
            series: BTreeMap::new(),
        }
    }

    /// Put the alarms raised before a restart on the board, with their
    /// acknowledgements ((series, rule, acked_us), from the spool).
    /// `info` gives a series' metadata by name.
    pub fn seed(
        &mut self,
        active: &[ActiveAlarm],
        acks: &[(String, String, i64)],
        info: impl Fn(&str) -> Arc<SeriesInfo>,
    ) {
        for a in active {
            let acked_us = acks
                .iter()
                .find(|(s, r, _)| *s == a.series && *r == a.rule)
                .map(|(_, _, t)| *t);
            let entry = self
                .series
                .entry(a.series.clone())
                .or_insert_with(|| SeriesAlarms {
                    info: info(&a.series),
                    raised: BTreeMap::new(),
                });
            entry.raised.insert(
                a.rule.clone(),
                Raised {
                    severity: a.severity,
                    value: None,
                    limit: a.limit,
                    raised_us: a.raised_us,
                    acked_us,
                },
            );
        }
    }

    /// Apply one event. A clear removes the alarm (and the series once it
    /// has none left); an acknowledge of an alarm not on the board changes
    /// nothing.
    pub fn apply(&mut self, a: &Alarm) {
        match a.state {
            AlarmState::Raised => {
                let entry =
                    self.series
                        .entry(a.series.name.clone())
                        .or_insert_with(|| SeriesAlarms {
                            info: a.series.clone(),
                            raised: BTreeMap::new(),
                        });
                entry.info = a.series.clone();
                entry.raised.insert(
                    a.rule.clone(),
                    Raised {
                        severity: a.severity,
                        value: Some(a.value),
                        limit: a.limit,
                        raised_us: a.ts_us,
                        acked_us: None,
                    },
                );
            }
            AlarmState::Cleared => {
                if let Some(entry) = self.series.get_mut(&a.series.name) {
                    entry.raised.remove(&a.rule);
                    if entry.raised.is_empty() {
                        self.series.remove(&a.series.name);
                    }
                }
            }
            AlarmState::Acknowledged => {
                if let Some(r) = self
                    .series
                    .get_mut(&a.series.name)
                    .and_then(|e| e.raised.get_mut(&a.rule))
                {
                    r.acked_us.get_or_insert(a.ts_us);
                }
            }
            // Not an alarm state: the clear before it took the alarm off.
            AlarmState::Rebaselined => {}
        }
    }

    /// The acknowledge event for `request` on `series` at `now_us`, not yet
    /// applied; `Ok(None)` when the alarm is already acknowledged.
    pub fn acknowledge(
        &self,
        series: &str,
        request: &AckRequest,
        now_us: i64,
    ) -> Result<Option<Alarm>, AckError> {
        let not_raised = || AckError::NotRaised {
            series: series.to_owned(),
            rule: request.rule.clone(),
        };
        let entry = self.series.get(series).ok_or_else(not_raised)?;
        let r = entry.raised.get(&request.rule).ok_or_else(not_raised)?;
        if r.acked_us.is_some() {
            return Ok(None);
        }
        Ok(Some(Alarm {
            series: entry.info.clone(),
            rule: request.rule.clone(),
            severity: r.severity,
            state: AlarmState::Acknowledged,
            value: r.value.unwrap_or(f64::NAN),
            limit: r.limit,
            ts_us: now_us,
            duration_us: None,
            limit_kind: None,
            spc: None,
        }))
    }

    /// Every raised alarm, by series and rule.
    pub fn raised(&self) -> Vec<RaisedAlarm> {
        self.series
            .iter()
            .flat_map(|(series, e)| {
                e.raised.iter().map(move |(rule, r)| RaisedAlarm {
                    series: series.clone(),
                    unit: e.info.unit.clone(),
                    rule: rule.clone(),
                    severity: r.severity,
                    value: r.value,
                    limit: r.limit,
                    raised_us: r.raised_us,
                    acked_us: r.acked_us,
                })
            })
            .collect()
    }

    /// Series with at least one raised alarm.
    pub fn series_names(&self) -> impl Iterator<Item = &str> {
        self.series.keys().map(String::as_str)
    }

    /// The retained state message of `series`.
    pub fn state_json(&self, series: &str) -> Vec<u8> {
        let alarms: Vec<Value> = self
            .series
            .get(series)
            .map(|e| {
                e.raised
                    .iter()
                    .map(|(rule, r)| {
                        json!({
                            "rule": rule,
                            "severity": r.severity.as_str(),
                            "value": r.value.and_then(finite),
                            "limit": finite(r.limit),
                            "raised_us": r.raised_us,
                            "acknowledged": r.acked_us.is_some(),
                            "acked_us": r.acked_us,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let state = if alarms.is_empty() { "normal" } else { "alarm" };
        to_vec(&json!({
            "gateway": self.gateway_id,
            "series": series,
            "state": state,
            "alarms": alarms,
        }))
    }
}

/// The events-topic message of one alarm event; `by` is who acknowledged.
pub fn event_json(gateway_id: &str, a: &Alarm, by: Option<&str>) -> Vec<u8> {
    let mut v = json!({
        "gateway": gateway_id,
        "series": a.series.name,
        "unit": a.series.unit,
        "rule": a.rule,
        "state": a.state.as_str(),
        "severity": a.severity.as_str(),
        "value": finite(a.value),
        "limit": finite(a.limit),
        "ts_us": a.ts_us,
        "duration_us": a.duration_us,
    });
    if let Some(by) = by {
        v["acknowledged_by"] = Value::from(by);
    }
    to_vec(&v)
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn to_vec(v: &Value) -> Vec<u8> {
    // A `Value` always serializes.
    serde_json::to_vec(v).expect("JSON values serialize")
}

#[cfg(test)]
mod tests;
