//! The embedded file sink (beside the stores: alarm and gap events only):
//! JSON lines in `data_dir/readings.jsonl`,
//! `data_dir/alarms.jsonl` and `data_dir/events.jsonl`, one line per
//! reading, alarm event or gateway event (gap), the same
//! JSON as the Kafka message values ([`crate::message`]). It lets the relay
//! run with nothing else installed, and the demo counts readings from it.
//!
//! Invariants:
//! - Writes are serialised by one mutex; a batch's lines are contiguous.
//! - `deliver` returns only after `sync_data` on every file it wrote to.
//! - A batch is all or nothing: if anything fails, all files are truncated
//!   back to their length before the batch, so no torn line is left for the
//!   next append to glue onto (best effort: if the truncation fails too, the
//!   error is still returned and the gateway retries).
//!
//! Not for production volumes: there is no rotation.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::message::Delivery;
use crate::sink::SinkError;

/// File holding reading messages.
pub const READINGS_FILE: &str = "readings.jsonl";
/// File holding alarm messages.
pub const ALARMS_FILE: &str = "alarms.jsonl";
/// File holding gateway event messages (gaps, device states).
pub const EVENTS_FILE: &str = "events.jsonl";

/// Appends JSON lines to three files in one directory.
#[derive(Debug, Clone)]
pub struct FileSink {
    files: Arc<Mutex<Files>>,
    /// False beside a time-series or PostgreSQL sink, which has the
    /// readings: then only alarm and gap events are written here.
    readings: bool,
}

#[derive(Debug)]
struct Files {
    readings: Appender,
    alarms: Appender,
    events: Appender,
}

#[derive(Debug)]
struct Appender {
    path: PathBuf,
    file: File,
}

impl FileSink {
    /// Create `dir` if needed and open (or create) the files for appending.
    pub fn open(dir: &Path) -> Result<FileSink, SinkError> {
        fn err<'p>(
            path: &'p Path,
            action: &'static str,
        ) -> impl FnOnce(std::io::Error) -> SinkError + 'p {
            move |source| SinkError::File {
                path: path.to_owned(),
                action,
                source,
            }
        }
        std::fs::create_dir_all(dir).map_err(err(dir, "create directory"))?;
        let open = |name: &str| -> Result<Appender, SinkError> {
            let path = dir.join(name);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(err(&path, "open"))?;
            Ok(Appender { path, file })
        };
        let files = Files {
            readings: open(READINGS_FILE)?,
            alarms: open(ALARMS_FILE)?,
            events: open(EVENTS_FILE)?,
        };
        // Make the new directory entries durable too.
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err(dir, "sync"))?;
        Ok(FileSink {
            files: Arc::new(Mutex::new(files)),
            readings: true,
        })
    }

    /// Like [`FileSink::open`], for alarm and gap events only: beside the
    /// stores, which keep the readings, when Kafka is not configured.
    pub fn open_events_only(dir: &Path) -> Result<FileSink, SinkError> {
        Ok(FileSink {
            readings: false,
            ..FileSink::open(dir)?
        })
    }

    /// Append every reading (unless events only), alarm and gap of the
    /// batch and fsync the files.
    pub async fn deliver(&self, delivery: Arc<Delivery>) -> Result<(), SinkError> {
        let files = self.files.clone();
        let with_readings = self.readings;
        tokio::task::spawn_blocking(move || {
            let (readings, alarms, events) = render(&delivery, with_readings);
            // A panic while holding the lock cannot leave a torn batch
            // behind (see `append_all`), so a poisoned lock is still usable.
            let mut files = files.lock().unwrap_or_else(|p| p.into_inner());
            files.append_all(&readings, &alarms, &events)
        })
        .await
        .map_err(|e| SinkError::Task {
            sink: "file",
            message: e.to_string(),
        })?
    }
}

/// The batch as three blocks of newline-terminated JSON (the first empty
/// without `with_readings`).
fn render(delivery: &Delivery, with_readings: bool) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let mut readings = Vec::new();
    for (series, point) in delivery.readings().filter(|_| with_readings) {
        readings.extend_from_slice(&delivery.reading_json(series, point));
        readings.push(b'\n');
    }
    let mut alarms = Vec::new();
    for (series, alarm) in delivery.alarms() {
        alarms.extend_from_slice(&delivery.alarm_json(series, alarm));
        alarms.push(b'\n');
    }
    let mut events = Vec::new();
    for gap in &delivery.batch.gaps {
        events.extend_from_slice(&delivery.gap_json(gap));
        events.push(b'\n');
    }
    for device in &delivery.batch.devices {
        events.extend_from_slice(&delivery.device_json(device));
        events.push(b'\n');
    }
    for (series, alarm) in delivery.rebaselines() {
        events.extend_from_slice(&delivery.rebaseline_json(series, alarm));
        events.push(b'\n');
    }
    (readings, alarms, events)
}

impl Files {
    fn append_all(
        &mut self,
        readings: &[u8],
        alarms: &[u8],
        events: &[u8],
    ) -> Result<(), SinkError> {
        let before = (self.readings.len()?, self.alarms.len()?, self.events.len()?);
        let result = self
            .readings
            .append(readings)
            .and_then(|()| self.alarms.append(alarms))
            .and_then(|()| self.events.append(events));
        if result.is_err() {
            // Best effort; the error that matters is the one we return.
            let _ = self.readings.file.set_len(before.0);
            let _ = self.alarms.file.set_len(before.1);
            let _ = self.events.file.set_len(before.2);
        }
        result
    }
}

impl Appender {
    fn len(&self) -> Result<u64, SinkError> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|source| self.error("stat", source))
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), SinkError> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.file
            .write_all(bytes)
            .map_err(|source| self.error("write", source))?;
        self.file
            .sync_data()
            .map_err(|source| self.error("sync", source))
    }

    fn error(&self, action: &'static str, source: std::io::Error) -> SinkError {
        SinkError::File {
            path: self.path.clone(),
            action,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_wire::{AlarmEvent, AlarmState, Batch, Gap, GapReason, Point, Quality, Series};

    fn delivery(seq: u64) -> Arc<Delivery> {
        let batch = Batch {
            gateway_id: "gw-1".into(),
            instance: None,
            seq,
            created_us: 0,
            series: vec![Series {
                id: 7,
                name: "press-3.oil_temp".into(),
                unit: "degC".into(),
                tags: [("site".to_string(), "a".to_string())].into(),
                points: vec![
                    Point {
                        ts_us: 1,
                        value: 1.5,
                        quality: Quality::Good,
                    },
                    Point {
                        ts_us: 2,
                        value: f64::NAN,
                        quality: Quality::Bad,
                    },
                ],
                reporting: None,
            }],
            alarms: vec![AlarmEvent {
                series_id: 7,
                spc: None,
                rule: "oil_temp.high".into(),
                state: AlarmState::Raised,
                value: 91.0,
                limit: 90.0,
                ts_us: 2,
                severity: None,
                duration_us: None,
                limit_kind: None,
            }],
            gaps: vec![Gap {
                reason: GapReason::MaxAge,
                first_us: 1_700_000_000_000_000,
                last_us: 1_700_000_060_000_000,
                readings: 120,
                batches: 2,
                recorded_us: 1_700_000_090_000_000,
            }],
            devices: vec![edge_wire::DeviceEvent {
                device: "press-3".into(),
                source: "modbus".into(),
                state: edge_wire::DeviceState::Down,
                previous: edge_wire::DeviceState::Ok,
                reason: Some(edge_wire::DeviceReason {
                    kind: edge_wire::ReasonKind::ConnectionRefused,
                    code: None,
                    detail: "connect failed: Connection refused (os error 111)".into(),
                }),
                at_us: 1_700_000_100_000_000,
                since_us: 1_700_000_000_000_000,
            }],
        };
        Arc::new(Delivery::new(batch).unwrap())
    }

    #[tokio::test]
    async fn appends_one_line_per_reading_and_alarm_across_batches() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::open(&dir.path().join("nested/data")).unwrap();
        sink.deliver(delivery(1)).await.unwrap();
        sink.deliver(delivery(2)).await.unwrap();
        let readings =
            std::fs::read_to_string(dir.path().join("nested/data").join(READINGS_FILE)).unwrap();
        let alarms =
            std::fs::read_to_string(dir.path().join("nested/data").join(ALARMS_FILE)).unwrap();
        let events =
            std::fs::read_to_string(dir.path().join("nested/data").join(EVENTS_FILE)).unwrap();
        assert_eq!(readings.lines().count(), 4);
        assert_eq!(alarms.lines().count(), 2);
        // Per batch: the gap, then the device event.
        assert_eq!(events.lines().count(), 4);
        let device: serde_json::Value =
            serde_json::from_str(events.lines().nth(1).unwrap()).unwrap();
        assert_eq!(device["event"], "device_state");
        assert_eq!(device["state"], "down");
        assert_eq!(device["reason"]["kind"], "connection_refused");
        assert_eq!(device["at"], "2023-11-14T22:15:00.000000Z");
        let gap: serde_json::Value = serde_json::from_str(events.lines().nth(2).unwrap()).unwrap();
        assert_eq!(gap["schema"], "edge.event.v1");
        assert_eq!(gap["event"], "gap");
        assert_eq!(gap["batch_seq"], 2);
        assert_eq!(gap["reason"], "max_age");
        assert_eq!(gap["first"], "2023-11-14T22:13:20.000000Z");
        assert_eq!(gap["last_us"], 1_700_000_060_000_000i64);
        assert_eq!(gap["readings"], 120);
        let first: serde_json::Value =
            serde_json::from_str(readings.lines().next().unwrap()).unwrap();
        assert_eq!(first["batch_seq"], 1);
        assert_eq!(first["value"], 1.5);
        let nan: serde_json::Value =
            serde_json::from_str(readings.lines().nth(1).unwrap()).unwrap();
        assert_eq!(nan["value"], serde_json::Value::Null);
        assert_eq!(nan["value_text"], "NaN");
    }

    #[tokio::test]
    async fn beside_the_stores_only_alarms_gaps_and_device_events_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::open_events_only(dir.path()).unwrap();
        sink.deliver(delivery(1)).await.unwrap();
        let read = |name| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read(READINGS_FILE), "");
        assert_eq!(read(ALARMS_FILE).lines().count(), 1);
        assert_eq!(read(EVENTS_FILE).lines().count(), 2);
    }

    #[test]
    fn open_fails_naming_the_path_when_the_directory_is_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, b"x").unwrap();
        let err = FileSink::open(&blocker).unwrap_err().to_string();
        assert!(err.contains("not-a-dir"), "{err}");
    }
}
