//! What the technician's page and `/api/status` show, gathered once per
//! request into a [`View`]: plain data, so the HTML ([`super::html`]) and
//! the JSON ([`super::api`]) are pure functions of it and are tested from a
//! made-up view, without a running agent.
//!
//! Not here: secrets. A view is built from the counters, the device,
//! point and alarm boards, the spool's figures and the gateway id; no
//! config section with a token or a password reaches it, so neither
//! rendering can show one (`no_secret_reaches_a_view`, in the status tests).
//!
//! [`Drain`] estimates how fast the backlog empties from the forwarded
//! counter seen over the last minute (table test `drain_table`).

use std::collections::VecDeque;

use crate::devices::{DeviceKey, DeviceState, DeviceStatus, SourceKind};
use crate::points::PointView;
use crate::publish::board::RaisedAlarm;
use crate::reading::Alarm;
use crate::stats::{AgentStats, FrameEvent};

/// The uplink as the overview shows it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UplinkView {
    /// Whether the last upload seen succeeded; `None` before the first.
    pub connected: Option<bool>,
    pub last_success_us: Option<i64>,
    pub backlog_batches: u64,
    pub backlog_readings: u64,
    pub backlog_bytes: u64,
    pub oldest_unsent_us: Option<i64>,
    /// Readings forwarded per second over the last minute.
    pub drain_per_s: Option<f64>,
    /// Backlog readings over the drain rate; `None` without a rate.
    pub time_to_empty_s: Option<f64>,
}

/// The spool's bounds and what they dropped so far.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SpoolView {
    pub used_bytes: u64,
    /// 0 when no bound is known.
    pub bound_bytes: u64,
    pub max_age_s: Option<u64>,
    /// "drop-oldest" or "block".
    pub on_full: &'static str,
    pub dropped_full: u64,
    pub dropped_age: u64,
    pub gaps: u64,
    pub quarantined: u64,
}

/// One device or connection on the devices table.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceView {
    pub key: DeviceKey,
    pub status: DeviceStatus,
    /// Readings (Modbus), messages (MQTT) or frames (frames) received.
    pub received: u64,
    /// Error counts by kind ("timeout_or_transport", "crc", "exception_2",
    /// "malformed", "connection", ...), zero ones left out.
    pub errors: Vec<(String, u64)>,
    /// Mean request round trip, Modbus only.
    pub round_trip_ms: Option<f64>,
}

/// Everything one page shows.
#[derive(Debug, Clone)]
pub struct View {
    pub now_us: i64,
    pub gateway_id: String,
    pub version: &'static str,
    pub started_us: i64,
    pub uplink: UplinkView,
    /// `None` when the spool could not be read.
    pub spool: Option<SpoolView>,
    /// (condition, message) as `/healthz` reports them; empty when healthy.
    pub health: Vec<(&'static str, String)>,
    pub devices: Vec<DeviceView>,
    /// The points shown: all, or one device's ([`select_points`]).
    pub points: Vec<PointView>,
    /// The device whose points are shown; `None`: every point.
    pub points_device: Option<String>,
    /// Every device that has points, for the filter.
    pub point_devices: Vec<String>,
    /// How many points there are in all.
    pub points_total: usize,
    pub alarms: Vec<RaisedAlarm>,
    /// Recent raise, clear and acknowledge events, oldest first.
    pub history: Vec<Alarm>,
    /// Which credentials the ack action takes; both false: read only.
    pub ack_token: bool,
    pub ack_basic: bool,
}

impl View {
    /// Whether the page offers the acknowledge action.
    pub fn can_ack(&self) -> bool {
        self.ack_token || self.ack_basic
    }
}

/// The devices table from the device board and the per-device counters.
pub fn devices(stats: &AgentStats) -> Vec<DeviceView> {
    let modbus = stats.modbus_devices();
    let exceptions = stats.modbus_exceptions_by_code();
    let mqtt_messages = stats.mqtt_messages_by_subscription();
    let mqtt_malformed = stats.mqtt_malformed_by_subscription();
    let mqtt_conn = stats.mqtt_connection_errors_by_client();
    let frames = stats.frames_by_device();
    stats
        .devices
        .all()
        .into_iter()
        .map(|(key, status)| {
            let mut errors = Vec::new();
            let mut received = 0;
            let mut round_trip_ms = None;
            let name = key.name.as_str();
            let mut push = |kind: String, n: u64| {
                if n > 0 {
                    errors.push((kind, n));
                }
            };
            match key.kind {
                SourceKind::Modbus => {
                    if let Some((_, c)) = modbus.iter().find(|(d, _)| d == name) {
                        received = c.readings;
                        push("transport".into(), c.transport_errors);
                        push("crc".into(), c.crc_errors);
                        push("retries".into(), c.retries);
                        if c.latency_count > 0 {
                            round_trip_ms = Some(c.latency_sum_s * 1000.0 / c.latency_count as f64);
                        }
                    }
                    for ((d, code), n) in &exceptions {
                        if d == name {
                            push(format!("exception_{code}"), *n);
                        }
                    }
                }
                SourceKind::Mqtt => {
                    received = sum_for(&mqtt_messages, name);
                    push("malformed".into(), sum_for(&mqtt_malformed, name));
                    let conn = mqtt_conn.iter().find(|(c, _)| c == name).map(|(_, n)| *n);
                    push("connection".into(), conn.unwrap_or(0));
                }
                SourceKind::Frames => {
                    // Frames counters are kept per link; a device's name is
                    // its link until its birth names it.
                    let of = |e: FrameEvent| {
                        frames
                            .iter()
                            .filter(|((l, ev), _)| l == name && *ev == e)
                            .map(|(_, n)| *n)
                            .sum::<u64>()
                    };
                    received = of(FrameEvent::Received);
                    push("crc".into(), of(FrameEvent::CrcError));
                    push("bad_frame".into(), of(FrameEvent::BadFrame));
                    push("link".into(), of(FrameEvent::LinkError));
                }
            }
            DeviceView {
                key,
                status,
                received,
                errors,
                round_trip_ms,
            }
        })
        .collect()
}

fn sum_for(map: &[((String, String), u64)], client: &str) -> u64 {
    map.iter()
        .filter(|((c, _), _)| c == client)
        .map(|(_, n)| *n)
        .sum()
}

/// Up to this many points the page and the API show every point unless
/// asked for one device; above it, one device's points at a time (the
/// first device's unless asked), so a page of 50 devices × 50 points stays
/// small.
pub const ALL_POINTS_UP_TO: usize = 500;

/// The points to show for the request's `device` (`None` or `""`: all,
/// when there are at most [`ALL_POINTS_UP_TO`]), the device shown, and
/// every device that has points (table test `points_selection_table`).
pub fn select_points(
    all: Vec<PointView>,
    device: Option<&str>,
) -> (Vec<PointView>, Option<String>, Vec<String>) {
    let mut devices: Vec<String> = all.iter().map(|p| p.point.device.clone()).collect();
    devices.sort_unstable();
    devices.dedup();
    let asked = device.filter(|d| !d.is_empty());
    let shown = match asked {
        Some(d) => Some(d.to_owned()),
        None if all.len() <= ALL_POINTS_UP_TO => None,
        None => devices.first().cloned(),
    };
    let points = match &shown {
        Some(d) => all.into_iter().filter(|p| &p.point.device == d).collect(),
        None => all,
    };
    (points, shown, devices)
}

/// The words a state is shown with (never colour alone).
pub fn state_words(state: DeviceState) -> &'static str {
    match state {
        DeviceState::Pending => "PENDING",
        DeviceState::Ok => "OK",
        DeviceState::Degraded => "DEGRADED",
        DeviceState::Down => "DOWN",
    }
}

/// The forwarded counter over the last minute.
#[derive(Debug, Default)]
pub struct Drain {
    /// (µs, readings forwarded so far), oldest first.
    samples: VecDeque<(i64, u64)>,
}

/// How far back the drain rate looks.
const DRAIN_WINDOW_US: i64 = 60_000_000;

impl Drain {
    /// Look at the counter at `now`.
    pub fn observe(&mut self, now_us: i64, forwarded: u64) {
        if self.samples.back().is_some_and(|&(t, _)| now_us <= t) {
            return;
        }
        self.samples.push_back((now_us, forwarded));
        while self
            .samples
            .front()
            .is_some_and(|&(t, _)| now_us - t > DRAIN_WINDOW_US)
        {
            self.samples.pop_front();
        }
    }

    /// Readings per second over the window; `None` with less than a
    /// second of samples.
    pub fn rate(&self) -> Option<f64> {
        let (&(t0, n0), &(t1, n1)) = (self.samples.front()?, self.samples.back()?);
        let dt = t1 - t0;
        (dt >= 1_000_000).then(|| n1.saturating_sub(n0) as f64 * 1e6 / dt as f64)
    }
}

/// Seconds until `backlog` readings are gone at `rate` per second; `None`
/// when nothing drains.
pub fn time_to_empty_s(backlog: u64, rate: Option<f64>) -> Option<f64> {
    match rate {
        _ if backlog == 0 => Some(0.0),
        Some(r) if r > 0.0 => Some(backlog as f64 / r),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::points::Point;

    fn points(devices: usize, each: usize) -> Vec<PointView> {
        (0..devices * each)
            .map(|i| PointView {
                series: format!("s{i}"),
                point: Point {
                    device: format!("d{}", i / each),
                    unit: String::new(),
                    value: None,
                    quality: None,
                    ts_us: None,
                    last_good_us: None,
                    interval: None,
                    since_us: 0,
                },
                age_us: None,
                stale: false,
            })
            .collect()
    }

    /// (devices × points each, asked, points shown, device shown)
    #[test]
    fn points_selection_table() {
        type Row = (
            usize,
            usize,
            Option<&'static str>,
            usize,
            Option<&'static str>,
        );
        let table: &[Row] = &[
            (2, 3, None, 6, None),
            (2, 3, Some(""), 6, None),
            (2, 3, Some("d1"), 3, Some("d1")),
            (2, 3, Some("nope"), 0, Some("nope")),
            (10, 50, None, 500, None),
            (50, 50, None, 50, Some("d0")),
            (50, 50, Some(""), 50, Some("d0")),
            (50, 50, Some("d7"), 50, Some("d7")),
        ];
        for &(n, each, asked, count, dev) in table {
            let (shown, device, devices) = select_points(points(n, each), asked);
            assert_eq!(
                (shown.len(), device.as_deref()),
                (count, dev),
                "{n}×{each} {asked:?}"
            );
            assert_eq!(devices.len(), n);
            assert!(shown
                .iter()
                .all(|p| dev.is_none_or(|d| p.point.device == d)));
        }
    }

    /// (samples (s, forwarded), rate, time to empty 600 readings)
    #[test]
    fn drain_table() {
        type Row = (&'static [(i64, u64)], Option<f64>, Option<f64>);
        let table: &[Row] = &[
            (&[], None, None),
            (&[(10, 0)], None, None),
            (&[(10, 0), (11, 100)], Some(100.0), Some(6.0)),
            (&[(10, 0), (12, 100), (12, 900)], Some(50.0), Some(12.0)), // same time: ignored
            (&[(10, 0), (20, 0)], Some(0.0), None),
            // Older than a minute falls out: 120..=170 s only.
            (&[(0, 0), (120, 1000), (170, 1500)], Some(10.0), Some(60.0)),
        ];
        for (samples, rate, empty) in table {
            let mut d = Drain::default();
            for &(s, n) in *samples {
                d.observe(s * 1_000_000, n);
            }
            assert_eq!(d.rate(), *rate, "{samples:?}");
            assert_eq!(time_to_empty_s(600, d.rate()), *empty, "{samples:?}");
        }
        assert_eq!(
            time_to_empty_s(0, None),
            Some(0.0),
            "an empty spool is empty"
        );
    }
}
