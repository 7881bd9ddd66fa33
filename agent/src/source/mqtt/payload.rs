//! MQTT payloads to samples: a pure function of the subscription's format,
//! the topic, the payload bytes and the arrival time. No sockets, no clock.
//!
//! - "number": the payload is one number as text, surrounding whitespace
//!   allowed ("21.5", " 7\n"); "nan" and "inf" give a `Bad` sample, anything
//!   else that is not a number ("12abc", "") is malformed.
//! - "json": each configured value is picked by JSON pointer; a missing
//!   field or one that is not a number makes the whole message malformed
//!   (a partial message would silently leave gaps); `null` gives `Bad`.
//! - "json-object": every numeric top-level field becomes a sample named
//!   after the field; other fields and the timestamp field are skipped.
//! - With `lenient_values` (the default) a JSON value that is a number
//!   written as text (`"26.5"`, surrounding whitespace allowed) or a
//!   boolean (1 or 0) counts as a number, in both JSON formats; text that
//!   is not a number stays malformed ("json") or skipped ("json-object").
//!
//! The sample time is read from `timestamp_pointer` when configured and
//! present; when the payload has none the arrival time is used. A timestamp
//! that is present but unreadable makes the message malformed.

use serde_json::Value;

use crate::config::mqtt::{PayloadFormat, Subscription, TimestampField, TimestampFormat};
use crate::reading::Quality;

/// One value read from a message, before it is given a series.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Appended to the subscription's series as `".<field>"`; `None` for "number".
    pub field: Option<String>,
    pub unit: String,
    pub value: f64,
    pub quality: Quality,
    /// µs since the Unix epoch.
    pub ts_us: i64,
}

/// A message that could not be read; it names the topic and the reason.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("topic {topic:?}: {reason}")]
pub struct PayloadError {
    pub topic: String,
    pub reason: Malformed,
}

/// Why a payload could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Malformed {
    #[error("payload is not UTF-8 text")]
    NotUtf8,
    #[error("payload {text:?} is not a number")]
    NotANumber { text: String },
    #[error("payload is not JSON: {error}")]
    NotJson { error: String },
    #[error("field {pointer:?} is missing")]
    MissingField { pointer: String },
    #[error("field {pointer:?} is {found}, not a number")]
    FieldNotANumber {
        pointer: String,
        found: &'static str,
    },
    #[error("timestamp {pointer:?}: {reason}")]
    BadTimestamp { pointer: String, reason: String },
    #[error("payload is {found}, not a JSON object")]
    NotAnObject { found: &'static str },
    #[error("JSON object has no numeric field")]
    NoNumericFields,
    #[error("the series name refers to topic level {level}, which the topic does not have")]
    MissingLevel { level: usize },
    #[error("series name {name:?} must be letters, digits, '-', '_', '.', '/'")]
    BadSeriesName { name: String },
    #[error("not a Sparkplug B message: {error}")]
    NotSparkplug { error: String },
}

/// Read the samples of one message of `sub`.
pub fn decode(
    sub: &Subscription,
    topic: &str,
    payload: &[u8],
    arrival_us: i64,
) -> Result<Vec<Sample>, PayloadError> {
    decode_inner(sub, payload, arrival_us).map_err(|reason| PayloadError {
        topic: topic.to_string(),
        reason,
    })
}

fn decode_inner(
    sub: &Subscription,
    payload: &[u8],
    arrival_us: i64,
) -> Result<Vec<Sample>, Malformed> {
    match &sub.format {
        // Sparkplug needs the session state of earlier messages (births):
        // the source reads it with crate::source::sparkplug, not here.
        PayloadFormat::Sparkplug { .. } => Err(Malformed::NotSparkplug {
            error: "a Sparkplug subscription is read with its session state".into(),
        }),
        PayloadFormat::Number => {
            let text = std::str::from_utf8(payload).map_err(|_| Malformed::NotUtf8)?;
            let value: f64 = text.trim().parse().map_err(|_| Malformed::NotANumber {
                text: shorten(text),
            })?;
            Ok(vec![sample(None, &sub.unit, value, arrival_us)])
        }
        PayloadFormat::Json { values, timestamp } => {
            let doc = parse_json(payload)?;
            let ts_us = timestamp_of(&doc, timestamp.as_ref(), arrival_us)?;
            values
                .iter()
                .map(|v| {
                    let value = match doc.pointer(&v.pointer) {
                        None => {
                            return Err(Malformed::MissingField {
                                pointer: v.pointer.clone(),
                            })
                        }
                        Some(Value::Null) => f64::NAN,
                        Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
                        Some(other) => lenient(other, sub.lenient).ok_or_else(|| {
                            Malformed::FieldNotANumber {
                                pointer: v.pointer.clone(),
                                found: kind(other),
                            }
                        })?,
                    };
                    Ok(sample(Some(v.name.clone()), &v.unit, value, ts_us))
                })
                .collect()
        }
        PayloadFormat::JsonObject { timestamp } => {
            let doc = parse_json(payload)?;
            let ts_us = timestamp_of(&doc, timestamp.as_ref(), arrival_us)?;
            let Value::Object(fields) = &doc else {
                return Err(Malformed::NotAnObject { found: kind(&doc) });
            };
            let ts_field = timestamp.as_ref().map(|t| unescape(&t.pointer[1..]));
            let samples: Vec<Sample> = fields
                .iter()
                .filter(|(name, _)| Some(name.as_str()) != ts_field.as_deref())
                .filter_map(|(name, v)| {
                    let value = v.as_f64().or_else(|| lenient(v, sub.lenient))?;
                    Some(sample(Some(name.clone()), &sub.unit, value, ts_us))
                })
                .collect();
            if samples.is_empty() {
                return Err(Malformed::NoNumericFields);
            }
            Ok(samples)
        }
    }
}

/// A number written as text, or a boolean as 1 or 0, when `on`.
fn lenient(v: &Value, on: bool) -> Option<f64> {
    match v {
        Value::String(s) if on => s.trim().parse().ok(),
        Value::Bool(b) if on => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

fn sample(field: Option<String>, unit: &str, value: f64, ts_us: i64) -> Sample {
    // A device that sends "nan" or null says it has no value: keep the
    // sample, marked bad, like a Modbus exception.
    let good = value.is_finite();
    Sample {
        field,
        unit: unit.to_string(),
        value: if good { value } else { f64::NAN },
        quality: if good { Quality::Good } else { Quality::Bad },
        ts_us,
    }
}

fn parse_json(payload: &[u8]) -> Result<Value, Malformed> {
    serde_json::from_slice(payload).map_err(|e| Malformed::NotJson {
        error: e.to_string(),
    })
}

fn timestamp_of(
    doc: &Value,
    field: Option<&TimestampField>,
    arrival_us: i64,
) -> Result<i64, Malformed> {
    let Some(field) = field else {
        return Ok(arrival_us);
    };
    let bad = |reason: String| Malformed::BadTimestamp {
        pointer: field.pointer.clone(),
        reason,
    };
    let value = match doc.pointer(&field.pointer) {
        None | Some(Value::Null) => return Ok(arrival_us),
        Some(v) => v,
    };
    let per_unit: i64 = match field.format {
        TimestampFormat::Rfc3339 => {
            let text = value
                .as_str()
                .ok_or_else(|| bad(format!("is {}, not RFC 3339 text", kind(value))))?;
            return parse_rfc3339(text).map_err(bad);
        }
        TimestampFormat::Seconds => 1_000_000,
        TimestampFormat::Millis => 1_000,
        TimestampFormat::Micros => 1,
    };
    let Value::Number(n) = value else {
        return Err(bad(format!("is {}, not a number", kind(value))));
    };
    if let Some(us) = n.as_i64().and_then(|i| i.checked_mul(per_unit)) {
        return Ok(us);
    }
    let us = n.as_f64().unwrap_or(f64::NAN) * per_unit as f64;
    if us.is_finite() && us.abs() < 9.2e18 {
        Ok(us.round() as i64)
    } else {
        Err(bad(format!("{n} is out of range")))
    }
}

/// Microseconds since the Unix epoch of an RFC 3339 date-time such as
/// "2026-11-22T04:30:00.250+01:00" ('T' or space, 'Z' or an offset).
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not an RFC 3339 date-time");
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        let s = text.get(r).ok_or_else(bad)?;
        if !s.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        s.parse().map_err(|_| bad())
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month) || day < 1 || day > month_days[month as usize - 1] {
        return Err(bad());
    }
    if hour > 23 || minute > 59 || second > 60 {
        return Err(bad());
    }
    let mut rest = &text[19..];
    let mut micros = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        for (i, c) in frac[..digits].bytes().take(6).enumerate() {
            micros += i64::from(c - b'0') * 10i64.pow(5 - i as u32);
        }
        rest = &frac[digits..];
    }
    let offset_s = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            let (oh, om) = (
                num_in(&rest[1..3]).ok_or_else(bad)?,
                num_in(&rest[4..6]).ok_or_else(bad)?,
            );
            if oh > 23 || om > 59 {
                return Err(bad());
            }
            sign * (oh * 3600 + om * 60)
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
    Ok(secs * 1_000_000 + micros)
}

fn num_in(s: &str) -> Option<i64> {
    s.bytes()
        .all(|c| c.is_ascii_digit())
        .then(|| s.parse().ok())?
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A JSON pointer token's text (RFC 6901: "~1" is '/', "~0" is '~').
fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "text",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// At most 40 characters of a payload, for an error message.
fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
#[path = "payload_tests.rs"]
mod tests;
