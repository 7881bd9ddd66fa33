//! The relay's policy on readings that decode but must not be published:
//! a good reading whose value is not finite, a timestamp outside the
//! accepted window around the relay's clock, a series name outside the
//! plain character set that Kafka keys and line protocol rely on.
//!
//! Policy: **a batch with any invalid reading or alarm is rejected whole**
//! with 422, naming how many items are invalid and the first one. Nothing
//! of it is published, which keeps the "a batch is published entirely or
//! not at all" property the ledger and the agent's retry rely on; the
//! agent's forwarder quarantines a 422 batch instead of retrying it
//! forever. Accepting the valid part would need a per-reading answer the
//! agent cannot act on anyway (the readings cannot be fixed after the fact).
//!
//! Not invalid: a non-finite value with quality `bad` or `uncertain` (the
//! agent records a failed read that way; it is published with `value: null`
//! and `value_text`), see docs/kafka-messages.md.
//!
//! Pure: the caller passes the current time, so tests need no clock.

use std::time::Duration;

use edge_wire::{Batch, Quality};

/// Default of `limits.max_future_secs`: gateway clocks may run a little ahead.
pub const DEFAULT_MAX_FUTURE_SECS: u64 = 300;
/// Default of `limits.max_past_hours`: 90 days, longer than an agent spools.
pub const DEFAULT_MAX_PAST_HOURS: u64 = 90 * 24;

/// The accepted window of reading and alarm timestamps around "now".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindow {
    /// Latest accepted timestamp, after the relay's clock.
    pub max_future: Duration,
    /// Earliest accepted timestamp, before the relay's clock.
    pub max_past: Duration,
}

impl Default for TimeWindow {
    fn default() -> Self {
        TimeWindow {
            max_future: Duration::from_secs(DEFAULT_MAX_FUTURE_SECS),
            max_past: Duration::from_secs(3600 * DEFAULT_MAX_PAST_HOURS),
        }
    }
}

/// Whether a series name is plain: 1 or more ASCII letters, digits, '-', '_', '.', '/'.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
}

/// `Ok` if every reading and alarm of `batch` may be published at
/// `now_us` (microseconds since the epoch); else the 422 message.
pub fn check(batch: &Batch, window: &TimeWindow, now_us: i64) -> Result<(), String> {
    let earliest = now_us.saturating_sub(window.max_past.as_micros() as i64);
    let latest = now_us.saturating_add(window.max_future.as_micros() as i64);
    let when = |ts: i64| {
        if ts > latest {
            Some(format!(
                "timestamp {ts} µs is more than max_future_secs={} ahead of the relay's clock",
                window.max_future.as_secs()
            ))
        } else if ts < earliest {
            Some(format!(
                "timestamp {ts} µs is more than max_past_hours={} behind the relay's clock",
                window.max_past.as_secs() / 3600
            ))
        } else {
            None
        }
    };
    let mut invalid = 0usize;
    let mut first = None;
    let mut note = |what: String| {
        invalid += 1;
        first.get_or_insert(what);
    };
    for series in &batch.series {
        if !is_plain_name(&series.name) {
            note(format!(
                "series {:?}: name must be ASCII letters, digits, '-', '_', '.', '/'",
                series.name
            ));
        }
        for (i, p) in series.points.iter().enumerate() {
            if p.quality == Quality::Good && !p.value.is_finite() {
                note(format!(
                    "series {:?} reading {i}: value {} with quality good (a good reading must be finite)",
                    series.name, p.value
                ));
            }
            if let Some(why) = when(p.ts_us) {
                note(format!("series {:?} reading {i}: {why}", series.name));
            }
        }
    }
    for (j, a) in batch.alarms.iter().enumerate() {
        if let Some(why) = when(a.ts_us) {
            note(format!("alarm {j} ({:?}): {why}", a.rule));
        }
    }
    match first {
        None => Ok(()),
        Some(first) => Err(format!(
            "batch rejected whole: {invalid} invalid item(s); first: {first}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_wire::{Point, Series};

    const NOW: i64 = 1_800_000_000_000_000;

    fn batch(name: &str, points: &[(i64, f64, Quality)]) -> Batch {
        Batch {
            gateway_id: "gw".into(),
            instance: None,
            seq: 1,
            created_us: NOW,
            series: vec![Series {
                id: 1,
                name: name.into(),
                unit: String::new(),
                tags: Default::default(),
                points: points
                    .iter()
                    .map(|&(ts_us, value, quality)| Point {
                        ts_us,
                        value,
                        quality,
                    })
                    .collect(),
                reporting: None,
            }],
            alarms: vec![],
            gaps: Vec::new(),
            devices: Vec::new(),
        }
    }

    /// Series name, readings, expected part of the 422 message (None: valid).
    type Case<'a> = (&'a str, &'a [(i64, f64, Quality)], Option<&'a str>);

    #[test]
    fn policy_table() {
        let w = TimeWindow::default();
        let min = 60_000_000;
        let table: &[Case] = &[
            ("press-3.oil_temp", &[(NOW, 1.0, Quality::Good)], None),
            ("a/b_c-d.e", &[(NOW, f64::NAN, Quality::Bad)], None),
            ("x", &[(NOW, f64::INFINITY, Quality::Uncertain)], None),
            ("x", &[(NOW + 4 * min, 1.0, Quality::Good)], None),
            ("x", &[(NOW - 89 * 24 * 60 * min, 1.0, Quality::Good)], None),
            (
                "x",
                &[(NOW, f64::NAN, Quality::Good), (NOW, f64::NEG_INFINITY, Quality::Good)],
                Some("2 invalid item(s); first: series \"x\" reading 0: value NaN with quality good"),
            ),
            (
                "x",
                &[(NOW + 6 * min, 1.0, Quality::Good)],
                Some("reading 0: timestamp 1800000360000000 µs is more than max_future_secs=300 ahead"),
            ),
            (
                "x",
                &[(NOW - 91 * 24 * 60 * min, 1.0, Quality::Good)],
                Some("is more than max_past_hours=2160 behind"),
            ),
            ("", &[], Some("series \"\": name must be")),
            ("press 3\n", &[], Some("series \"press 3\\n\": name must be")),
        ];
        for &(name, points, expected) in table {
            let got = check(&batch(name, points), &w, NOW).err();
            match (expected, &got) {
                (None, None) => {}
                (Some(e), Some(g)) if g.contains(e) => {}
                _ => panic!("{name:?} {points:?}: expected {expected:?}, got {got:?}"),
            }
        }
    }
}
