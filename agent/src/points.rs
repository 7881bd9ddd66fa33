//! The points board: every series' last value, unit, quality and time, with
//! its device and (where the config gives one) its poll interval, for the
//! status page's points table. Pure state behind one lock ([`Points`]).
//!
//! Not for: history (the spool and the cloud keep that) or alarms (the
//! detector decides those). The board only remembers the latest reading.
//!
//! Guarantees:
//! - the pipeline updates it once per batch of readings it has taken
//!   ([`Points::update`] with a slice), never once per reading, so the hot
//!   path takes this lock at most once per sealed batch and once a second
//!   (the pipeline's clock tick), and an empty slice not at all;
//! - a point the config declares (Modbus points, simulated signals) is on
//!   the board from the start, with no value, so a point that never
//!   answered is listed (and stale) rather than missing;
//! - a reading older than the one the board holds does not replace it;
//! - staleness follows the last *good* value: a point is stale when its
//!   last good value (or the agent's start, before any) is older than
//!   [`stale_after_us`] of its poll interval, that is twice the interval
//!   plus two seconds (table test `staleness_table`); a point without a
//!   known interval (MQTT, frames) is never flagged.
//!
//! Times are µs since the Unix epoch, passed in.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::reading::{Quality, Reading};

/// What the board knows of one series.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The device the series belongs to (its `device` tag, else its
    /// `protocol` tag: "simulated", "mqtt").
    pub device: String,
    pub unit: String,
    /// `None` until the first reading.
    pub value: Option<f64>,
    pub quality: Option<Quality>,
    /// Time of the last reading.
    pub ts_us: Option<i64>,
    /// Time of the last reading of good quality.
    pub last_good_us: Option<i64>,
    /// How often the point is polled, when the config says.
    pub interval: Option<Duration>,
    /// When the board learnt of the point: staleness counts from here
    /// before any good value.
    pub since_us: i64,
}

/// One point as the page shows it at `now`.
#[derive(Debug, Clone, PartialEq)]
pub struct PointView {
    pub series: String,
    pub point: Point,
    /// `now - ts_us` of the last reading, if any.
    pub age_us: Option<i64>,
    pub stale: bool,
}

/// How old a point's last good value may grow before it is stale: twice
/// its poll interval plus two seconds (one missed poll and a slow answer
/// are not stale; two missed polls are).
pub fn stale_after_us(interval: Duration) -> i64 {
    2 * interval.as_micros() as i64 + 2_000_000
}

/// Whether a point is stale at `now`.
pub fn is_stale(point: &Point, now_us: i64) -> bool {
    let Some(interval) = point.interval else {
        return false;
    };
    let good = point.last_good_us.unwrap_or(point.since_us);
    now_us - good > stale_after_us(interval)
}

/// Every series' last reading.
#[derive(Debug, Default)]
pub struct PointBoard {
    points: BTreeMap<String, Point>,
}

impl PointBoard {
    /// Put a configured point on the board, with no value yet.
    pub fn declare(
        &mut self,
        series: &str,
        device: &str,
        unit: &str,
        interval: Option<Duration>,
        now_us: i64,
    ) {
        let p = self.points.entry(series.to_owned()).or_insert(Point {
            device: device.to_owned(),
            unit: unit.to_owned(),
            value: None,
            quality: None,
            ts_us: None,
            last_good_us: None,
            interval,
            since_us: now_us,
        });
        p.interval = interval.or(p.interval);
    }

    /// Take the readings of one batch (in the order they arrived).
    pub fn update(&mut self, readings: &[Reading]) {
        for r in readings {
            let p = match self.points.get_mut(r.series.name.as_str()) {
                Some(p) => p,
                None => {
                    let tags = &r.series.tags;
                    let device = tags
                        .get("device")
                        .or_else(|| tags.get("protocol"))
                        .cloned()
                        .unwrap_or_default();
                    self.points.entry(r.series.name.clone()).or_insert(Point {
                        device,
                        unit: r.series.unit.clone(),
                        value: None,
                        quality: None,
                        ts_us: None,
                        last_good_us: None,
                        interval: None,
                        since_us: r.ts_us,
                    })
                }
            };
            if p.ts_us.is_some_and(|t| t > r.ts_us) {
                continue;
            }
            p.value = Some(r.value);
            p.quality = Some(r.quality);
            p.ts_us = Some(r.ts_us);
            if r.quality == Quality::Good {
                p.last_good_us = Some(r.ts_us);
            }
        }
    }

    /// Every point at `now`, by series name.
    pub fn all(&self, now_us: i64) -> Vec<PointView> {
        self.points
            .iter()
            .map(|(series, p)| PointView {
                series: series.clone(),
                point: p.clone(),
                age_us: p.ts_us.map(|t| now_us - t),
                stale: is_stale(p, now_us),
            })
            .collect()
    }
}

/// The board shared by the pipeline (which updates it per batch) and the
/// status page (which reads it per request).
#[derive(Debug, Default)]
pub struct Points(Mutex<PointBoard>);

impl Points {
    fn lock(&self) -> std::sync::MutexGuard<'_, PointBoard> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// See [`PointBoard::declare`].
    pub fn declare(
        &self,
        series: &str,
        device: &str,
        unit: &str,
        interval: Option<Duration>,
        now_us: i64,
    ) {
        self.lock().declare(series, device, unit, interval, now_us);
    }

    /// Take a batch of readings under one lock; an empty slice takes none.
    pub fn update(&self, readings: &[Reading]) {
        if !readings.is_empty() {
            self.lock().update(readings);
        }
    }

    /// Every point at `now`.
    pub fn all(&self, now_us: i64) -> Vec<PointView> {
        self.lock().all(now_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::SeriesInfo;
    use std::sync::Arc;

    fn reading(name: &str, ts_us: i64, value: f64, quality: Quality) -> Reading {
        let mut tags = BTreeMap::new();
        tags.insert("protocol".to_string(), "mqtt".to_string());
        Reading {
            series: Arc::new(SeriesInfo {
                name: name.into(),
                unit: "°C".into(),
                tags,
            }),
            ts_us,
            value,
            quality,
        }
    }

    /// (interval, last good value at, now, stale?) with the point declared
    /// at t = 0.
    #[rustfmt::skip]
    #[test]
    fn staleness_table() {
        let s = 1_000_000;
        let table: &[(Option<u64>, Option<i64>, i64, bool)] = &[
            (Some(1000), Some(10 * s), 10 * s, false),
            (Some(1000), Some(10 * s), 13 * s, false),
            (Some(1000), Some(10 * s), 14 * s, false),  // exactly 2 × 1 s + 2 s
            (Some(1000), Some(10 * s), 14 * s + 1, true),
            (Some(100), Some(10 * s), 12 * s + 200_000, false),
            (Some(100), Some(10 * s), 12 * s + 200_001, true),
            (Some(60_000), Some(10 * s), 100 * s, false),
            (Some(1000), None, 3 * s, false),             // never answered, not yet stale
            (Some(1000), None, 5 * s, true),              // never answered for 5 s
            (None, Some(10 * s), 1_000 * s, false),       // no interval: never stale
        ];
        for &(ms, good, now, want) in table {
            let p = Point {
                device: "d".into(),
                unit: String::new(),
                value: None,
                quality: None,
                ts_us: good,
                last_good_us: good,
                interval: ms.map(Duration::from_millis),
                since_us: 0,
            };
            assert_eq!(is_stale(&p, now), want, "interval {ms:?} good {good:?} now {now}");
        }
    }

    #[test]
    fn update_keeps_the_latest_and_the_last_good_value() {
        let mut b = PointBoard::default();
        b.declare(
            "press.speed",
            "press",
            "rpm",
            Some(Duration::from_secs(1)),
            0,
        );
        b.update(&[
            reading("line.temp", 20, 21.5, Quality::Good),
            reading("line.temp", 30, 22.0, Quality::Bad),
            reading("line.temp", 25, 99.0, Quality::Good), // older: ignored
        ]);
        let all = b.all(40);
        assert_eq!(all.len(), 2);
        let temp = &all[0];
        assert_eq!(temp.series, "line.temp");
        assert_eq!(temp.point.device, "mqtt", "no device tag: the protocol");
        assert_eq!(temp.point.value, Some(22.0));
        assert_eq!(temp.point.quality, Some(Quality::Bad));
        assert_eq!(temp.point.last_good_us, Some(20));
        assert_eq!(temp.age_us, Some(10));
        let speed = &all[1];
        assert_eq!((speed.point.value, speed.age_us), (None, None));
        assert_eq!(speed.point.unit, "rpm");
    }
}
