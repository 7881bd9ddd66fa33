//! Looking into a spool from outside the running agent: backlog figures
//! for `edge-agent spool stats` and the unsent batches as JSON lines for
//! `edge-agent spool export`, for a technician who must carry data out by
//! hand.
//!
//! Everything here reads only: [`Spool::open_read_only`] opens the
//! database read-only (no schema change, no migration, no checkpoint), so
//! it can run beside the agent and on a copy taken from a broken gateway.

use std::io::Write;
use std::path::Path;

use edge_wire::Limits;
use rusqlite::{Connection, OpenFlags};
use serde_json::json;

use super::{Spool, SpoolError, SpoolOptions};

/// The backlog and what was dropped so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    pub batches: u64,
    pub readings: u64,
    /// Encoded bytes of the unsent batches.
    pub bytes: u64,
    /// Database plus WAL on disk.
    pub disk_bytes: u64,
    /// Timestamp of the oldest unsent reading (or batch), µs since the epoch.
    pub oldest_us: Option<i64>,
    pub quarantined: u64,
    pub dropped_readings_full: u64,
    pub dropped_readings_age: u64,
    pub dropped_batches_full: u64,
    pub dropped_batches_age: u64,
    /// Gap records (runs of dropped batches).
    pub gaps: u64,
}

/// What [`Spool::export`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exported {
    pub batches: u64,
    pub readings: u64,
    pub alarms: u64,
    /// Gap records (intervals dropped under the bound policy, not yet
    /// reported to the relay).
    pub gaps: u64,
    /// Device-state events (a device down, degraded or back).
    pub devices: u64,
    /// Batches that could not be decoded: (seq, why). They are not written.
    pub undecodable: Vec<(u64, String)>,
}

impl Spool {
    /// Open an existing spool without writing to it.
    pub fn open_read_only(path: &Path) -> Result<Spool, SpoolError> {
        let err = |source| SpoolError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.pragma_update(None, "query_only", true).map_err(err)?;
        let instance = conn
            .query_row("SELECT value FROM meta WHERE key = 'instance'", [], |r| {
                r.get::<_, i64>(0)
            })
            .ok()
            .and_then(|v| std::num::NonZeroU64::new(v as u64));
        Ok(Spool {
            conn,
            instance,
            path: path.to_owned(),
            options: SpoolOptions::default(),
            gaps: Vec::new(),
            // Read-only: it never writes, so it neither holds nor restores
            // a reserve.
            reserve: super::room::Reserve::new(path),
            hit_disk_end: false,
            refused: false,
        })
    }

    /// Backlog figures, drops so far included.
    pub fn backlog(&self) -> Result<Backlog, SpoolError> {
        let meta = |key: &str| -> Result<u64, SpoolError> {
            self.conn
                .query_row(
                    "SELECT COALESCE((SELECT value FROM meta WHERE key = ?1), 0)",
                    [key],
                    |r| r.get::<_, i64>(0),
                )
                .map(|v| v as u64)
                .map_err(|e| self.err(e))
        };
        let (batches, readings, bytes, oldest_us) = self
            .conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(readings), 0), COALESCE(SUM(LENGTH(body)), 0),
                        MIN(COALESCE(first_us, created_us))
                 FROM batches",
                [],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)? as u64,
                        r.get::<_, i64>(1)? as u64,
                        r.get::<_, i64>(2)? as u64,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                },
            )
            .map_err(|e| self.err(e))?;
        let count = |table: &str| -> Result<u64, SpoolError> {
            self.conn
                .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|v| v as u64)
                .map_err(|e| self.err(e))
        };
        Ok(Backlog {
            batches,
            readings,
            bytes,
            disk_bytes: self.disk_bytes()?,
            oldest_us,
            quarantined: count("quarantine")?,
            dropped_readings_full: meta("dropped_readings_full")?,
            dropped_readings_age: meta("dropped_readings_age")?,
            dropped_batches_full: meta("dropped_batches_full")?,
            dropped_batches_age: meta("dropped_batches_age")?,
            gaps: count("gaps")?,
        })
    }

    /// Write the unsent batches, in the order they would be sent, as JSON
    /// lines: one per reading (`"type": "reading"`, with seq, series, unit,
    /// ts_us, value, quality), one per alarm event (`"type": "alarm"`) and
    /// one per gap record not yet reported to the relay (`"type": "gap"`,
    /// with reason, first_us, last_us, readings, batches, recorded_us) and
    /// one per device-state event (`"type": "device"`, with device, source,
    /// state, previous_state, reason, at_us, since_us).
    pub fn export(&self, out: &mut dyn Write) -> Result<Exported, SpoolError> {
        let limits = Limits {
            max_compressed_bytes: usize::MAX,
            max_decompressed_bytes: usize::MAX,
            max_series: usize::MAX,
            max_readings: usize::MAX,
            max_alarms: usize::MAX,
            max_gaps: usize::MAX,
            max_device_events: usize::MAX,
            max_tags: usize::MAX,
            max_string_bytes: usize::MAX,
        };
        let mut stmt = self
            .conn
            .prepare("SELECT seq, body FROM batches ORDER BY priority DESC, seq")
            .map_err(|e| self.err(e))?;
        let mut rows = stmt.query([]).map_err(|e| self.err(e))?;
        let mut done = Exported::default();
        let io = |e: std::io::Error| SpoolError::Export(e.to_string());
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            let seq = row.get::<_, i64>(0).map_err(|e| self.err(e))? as u64;
            let body: Vec<u8> = row.get(1).map_err(|e| self.err(e))?;
            let batch = match edge_wire::decode(&body, &limits) {
                Ok(b) => b,
                Err(e) => {
                    done.undecodable.push((seq, e.to_string()));
                    continue;
                }
            };
            for s in &batch.series {
                for p in &s.points {
                    let line = json!({
                        "type": "reading", "seq": seq, "series": s.name, "unit": s.unit,
                        "ts_us": p.ts_us, "value": p.value, "quality": p.quality.as_str(),
                    });
                    writeln!(out, "{line}").map_err(io)?;
                    done.readings += 1;
                }
            }
            for a in &batch.alarms {
                let series = batch
                    .series
                    .iter()
                    .find(|s| s.id == a.series_id)
                    .map(|s| s.name.as_str());
                let line = json!({
                    "type": "alarm", "seq": seq, "series": series, "rule": a.rule,
                    "state": a.state.as_str(), "severity": a.severity.map(|s| s.as_str()),
                    "ts_us": a.ts_us, "value": a.value, "limit": a.limit,
                });
                writeln!(out, "{line}").map_err(io)?;
                done.alarms += 1;
            }
            for g in &batch.gaps {
                let line = json!({
                    "type": "gap", "seq": seq, "reason": g.reason.as_str(),
                    "first_us": g.first_us, "last_us": g.last_us, "readings": g.readings,
                    "batches": g.batches, "recorded_us": g.recorded_us,
                });
                writeln!(out, "{line}").map_err(io)?;
                done.gaps += 1;
            }
            for d in &batch.devices {
                let line = json!({
                    "type": "device", "seq": seq, "device": d.device, "source": d.source,
                    "state": d.state.as_str(), "previous_state": d.previous.as_str(),
                    "reason": d.reason.as_ref().map(|r| r.kind.as_str()),
                    "at_us": d.at_us, "since_us": d.since_us,
                });
                writeln!(out, "{line}").map_err(io)?;
                done.devices += 1;
            }
            done.batches += 1;
        }
        Ok(done)
    }
}
