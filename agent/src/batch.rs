//! The batcher: collects readings and seals them into an
//! [`edge_wire::Batch`] once it holds `max_readings` readings or its first
//! reading is `max_age` old. Pure state: the caller supplies the clock.
//! Alarm events do not go through it: they travel in their own batches
//! ([`alarm_batch`]) in the spool's alarm lane, and so do device-state
//! events ([`device_batch`]).
//!
//! The batch it seals has `seq` 0; the spool assigns the sequence number in
//! the same transaction that stores the batch.

use std::collections::HashMap;
use std::sync::Arc;

use edge_wire::{AlarmEvent, Batch, DeviceEvent, Point, Reporting, Series, SpcDetail};
use tokio::time::Instant;

use crate::config::BatchConfig;
use crate::reading::{Alarm, Reading, SeriesInfo};

pub struct Batcher {
    config: BatchConfig,
    gateway_id: String,
    /// Each series of the open batch, what the batch says about how it is
    /// reported (report by exception, when filtered) and its points.
    series: Vec<(Arc<SeriesInfo>, Option<Reporting>, Vec<Point>)>,
    index: HashMap<String, usize>,
    readings: usize,
    /// When the first reading of the open batch arrived.
    opened_at: Option<Instant>,
}

impl Batcher {
    pub fn new(gateway_id: &str, config: BatchConfig) -> Batcher {
        Batcher {
            config,
            gateway_id: gateway_id.to_owned(),
            series: Vec::new(),
            index: HashMap::new(),
            readings: 0,
            opened_at: None,
        }
    }

    fn slot(&mut self, series: &Arc<SeriesInfo>, now: Instant) -> usize {
        self.opened_at.get_or_insert(now);
        if let Some(&i) = self.index.get(series.name.as_str()) {
            return i;
        }
        self.series.push((series.clone(), None, Vec::new()));
        self.index
            .insert(series.name.clone(), self.series.len() - 1);
        self.series.len() - 1
    }

    /// Add a reading; true when the batch is now full and should be sealed.
    pub fn push(&mut self, r: &Reading, now: Instant) -> bool {
        self.push_reported(r, None, now)
    }

    /// Add a reading of a series reported as `reporting` says (`Some` for
    /// a series reported by exception); true when the batch is now full.
    pub fn push_reported(
        &mut self,
        r: &Reading,
        reporting: Option<Reporting>,
        now: Instant,
    ) -> bool {
        let i = self.slot(&r.series, now);
        if reporting.is_some() {
            self.series[i].1 = reporting;
        }
        self.series[i].2.push(Point {
            ts_us: r.ts_us,
            value: r.value,
            quality: r.quality,
        });
        self.readings += 1;
        self.readings >= self.config.max_readings
    }

    /// When the open batch must be sealed at the latest, if one is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.opened_at.map(|t| t + self.config.max_age)
    }

    pub fn is_empty(&self) -> bool {
        self.opened_at.is_none()
    }

    /// Seal what is held into a batch (None when empty) and start afresh.
    pub fn seal(&mut self, created_us: i64) -> Option<Batch> {
        self.opened_at.take()?;
        self.index.clear();
        self.readings = 0;
        let series = std::mem::take(&mut self.series)
            .into_iter()
            .enumerate()
            .map(|(id, (info, reporting, points))| Series {
                id: id as u32,
                name: info.name.clone(),
                unit: info.unit.clone(),
                tags: info.tags.clone(),
                points,
                reporting,
            })
            .collect();
        Some(Batch {
            gateway_id: self.gateway_id.clone(),
            instance: None,
            seq: 0,
            created_us,
            series,
            alarms: Vec::new(),
            gaps: Vec::new(),
            devices: Vec::new(),
        })
    }
}

/// The wire event of an alarm whose series has `series_id` in the batch.
fn event(a: &Alarm, series_id: u32) -> AlarmEvent {
    AlarmEvent {
        series_id,
        spc: a.spc.map(|d| SpcDetail {
            test: d.test.code(),
            centre: d.centre,
            sigma: d.sigma,
            lower: d.lower,
            upper: d.upper,
            statistic: d.statistic,
        }),
        rule: a.rule.clone(),
        state: a.state,
        value: a.value,
        limit: a.limit,
        ts_us: a.ts_us,
        severity: Some(a.severity),
        duration_us: a.duration_us,
        limit_kind: a.limit_kind,
    }
}

/// An alarm-only batch for the spool's priority lane: the dictionary holds
/// the series the events are about, without readings, so the events travel
/// ahead of the reading backlog. `seq` 0, as from [`Batcher::seal`].
pub fn alarm_batch(gateway_id: &str, alarms: &[Alarm], created_us: i64) -> Batch {
    let mut series: Vec<Series> = Vec::new();
    let mut events = Vec::with_capacity(alarms.len());
    for a in alarms {
        let id = match series.iter().position(|s| s.name == a.series.name) {
            Some(i) => i,
            None => {
                series.push(Series {
                    id: series.len() as u32,
                    name: a.series.name.clone(),
                    unit: a.series.unit.clone(),
                    tags: a.series.tags.clone(),
                    points: Vec::new(),
                    reporting: None,
                });
                series.len() - 1
            }
        };
        events.push(event(a, id as u32));
    }
    Batch {
        gateway_id: gateway_id.to_owned(),
        instance: None,
        seq: 0,
        created_us,
        series,
        alarms: events,
        gaps: Vec::new(),
        devices: Vec::new(),
    }
}

/// A batch of device-state events for the spool's priority lane, with no
/// series: like [`alarm_batch`], so the events travel ahead of the reading
/// backlog. `seq` 0 and no instance: the spool sets both.
pub fn device_batch(gateway_id: &str, devices: Vec<DeviceEvent>, created_us: i64) -> Batch {
    Batch {
        gateway_id: gateway_id.to_owned(),
        instance: None,
        seq: 0,
        created_us,
        series: Vec::new(),
        alarms: Vec::new(),
        gaps: Vec::new(),
        devices,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::reading::{AlarmState, Quality};

    fn info(name: &str) -> Arc<SeriesInfo> {
        Arc::new(SeriesInfo {
            name: name.into(),
            unit: "u".into(),
            tags: [("site".to_string(), "a".to_string())].into(),
        })
    }

    fn reading(s: &Arc<SeriesInfo>, ts_us: i64) -> Reading {
        Reading {
            series: s.clone(),
            ts_us,
            value: ts_us as f64,
            quality: Quality::Good,
        }
    }

    #[test]
    fn full_at_max_readings_and_groups_by_series() {
        let cfg = BatchConfig {
            max_readings: 3,
            max_age: Duration::from_secs(1),
        };
        let mut b = Batcher::new("gw", cfg);
        let (x, y) = (info("x"), info("y"));
        let t = Instant::now();
        assert!(!b.push(&reading(&x, 1), t));
        assert!(!b.push(&reading(&y, 2), t));
        assert!(b.push(&reading(&x, 3), t));
        let batch = b.seal(99).unwrap();
        assert_eq!(batch.gateway_id, "gw");
        assert_eq!(batch.reading_count(), 3);
        assert_eq!(batch.series.len(), 2);
        assert_eq!(batch.series[0].name, "x");
        let ts: Vec<i64> = batch.series[0].points.iter().map(|p| p.ts_us).collect();
        assert_eq!(ts, vec![1, 3]);
        assert!(b.is_empty());
        assert!(b.seal(100).is_none());
    }

    #[test]
    fn deadline_counts_from_first_entry() {
        let cfg = BatchConfig {
            max_readings: 100,
            max_age: Duration::from_millis(250),
        };
        let mut b = Batcher::new("gw", cfg);
        assert_eq!(b.deadline(), None);
        let t = Instant::now();
        b.push(&reading(&info("x"), 1), t);
        b.push(&reading(&info("x"), 2), t + Duration::from_millis(100));
        assert_eq!(b.deadline(), Some(t + Duration::from_millis(250)));
    }

    #[test]
    fn alarm_batch_holds_only_the_alarm_series_and_all_event_fields() {
        let (x, y) = (info("x"), info("y"));
        let ev = |s: &Arc<SeriesInfo>, state, duration_us| Alarm {
            series: s.clone(),
            rule: "r.high".into(),
            severity: crate::reading::Severity::Critical,
            state,
            value: 5.0,
            limit: 4.0,
            ts_us: 7,
            duration_us,
            limit_kind: None,
            spc: None,
        };
        let batch = alarm_batch(
            "gw",
            &[
                ev(&y, AlarmState::Raised, None),
                ev(&x, AlarmState::Raised, None),
                ev(&y, AlarmState::Cleared, Some(3)),
            ],
            9,
        );
        let names: Vec<&str> = batch.series.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["y", "x"]);
        assert_eq!(batch.reading_count(), 0);
        let ids: Vec<u32> = batch.alarms.iter().map(|a| a.series_id).collect();
        assert_eq!(ids, [0, 1, 0]);
        let clear = &batch.alarms[2];
        assert_eq!(clear.severity, Some(crate::reading::Severity::Critical));
        assert_eq!(clear.duration_us, Some(3));
        batch.validate().unwrap();
    }
}
