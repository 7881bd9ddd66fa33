//! Salvage of a spool judged unusable: what can still be read is copied
//! into the fresh spool before the old file is set aside.
//!
//! A database fails the start-up check as a whole (a damaged page anywhere,
//! even in an empty table), while most of its rows usually still read. So
//! before [`super::check`] moves a bad database aside, [`Spool::salvage_from`]
//! reads it row by row:
//! - every unsent batch whose bytes match their stored CRC-64 (or, for a
//!   row from before checksums, that decodes) is copied into the fresh spool
//!   with its seq, lane and bytes unchanged. The bytes carry the old spool's
//!   instance id and seq, so the relay recognises one it already has;
//! - a batch whose bytes do not match goes to the fresh spool's quarantine
//!   (kept for a technician, never sent), a row that cannot be read at all
//!   is counted; both are [`Salvaged::corrupt`];
//! - the raised alarms (`alarms`) and the totals of dropped readings
//!   (`dropped_*` in `meta`) are carried over, so alarms are neither raised
//!   again nor forgotten.
//!
//! All of it is one transaction in the fresh spool: a crash midway leaves
//! the fresh spool without any of it, and the bad file is still where it
//! was, to be salvaged again at the next start.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::{checksum, Spool, SpoolError};

/// What was copied out of a bad database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Salvaged {
    pub batches: u64,
    pub readings: u64,
    pub alarms: u64,
    /// Batches whose bytes failed their checksum (quarantined) or whose row
    /// could not be read.
    pub corrupt: u64,
}

/// A batch row as stored.
struct Row {
    created_us: i64,
    readings: i64,
    alarms: i64,
    body: Vec<u8>,
    priority: i64,
    checksum: Option<i64>,
    first_us: Option<i64>,
    last_us: Option<i64>,
}

/// The columns of a row, by seq; columns an older spool lacks read as
/// their defaults.
fn read_row(bad: &Connection, seq: i64) -> rusqlite::Result<Option<Row>> {
    bad.query_row(
        "SELECT created_us, readings, alarms, body, priority, checksum, first_us, last_us
         FROM batches WHERE seq = ?1",
        params![seq],
        |r| {
            Ok(Row {
                created_us: r.get(0)?,
                readings: r.get(1)?,
                alarms: r.get(2)?,
                body: r.get(3)?,
                priority: r.get(4)?,
                checksum: r.get(5)?,
                first_us: r.get(6)?,
                last_us: r.get(7)?,
            })
        },
    )
    .optional()
}

/// Every seq the batches table lists, as far as its pages can be walked.
fn seqs(bad: &Connection) -> Vec<i64> {
    let mut out = Vec::new();
    let Ok(mut stmt) = bad.prepare("SELECT seq FROM batches ORDER BY seq") else {
        return out;
    };
    let Ok(rows) = stmt.query_map([], |r| r.get::<_, i64>(0)) else {
        return out;
    };
    for row in rows {
        match row {
            Ok(seq) => out.push(seq),
            // A damaged page ends the walk; what was listed is kept.
            Err(_) => break,
        }
    }
    out
}

/// True when `row`'s bytes are what was stored.
fn intact(row: &Row) -> bool {
    match row.checksum {
        Some(c) => c == checksum(&row.body),
        None => edge_wire::decode(&row.body, &edge_wire::Limits::default()).is_ok(),
    }
}

impl Spool {
    /// Copy what can be read from the bad database at `bad` into this
    /// (fresh) spool; see the module doc. A file SQLite cannot open at all
    /// salvages nothing.
    pub fn salvage_from(&mut self, bad: &Path, now_us: i64) -> Result<Salvaged, SpoolError> {
        let mut report = Salvaged::default();
        let Ok(old) = Connection::open(bad) else {
            return Ok(report);
        };
        let listed = seqs(&old);
        let err = |e| super::sqlite_error(&self.path, e);
        let tx = self.conn.transaction().map_err(err)?;
        for seq in listed {
            let row = match read_row(&old, seq) {
                Ok(Some(row)) => row,
                Ok(None) => continue,
                Err(_) => {
                    report.corrupt += 1;
                    continue;
                }
            };
            if intact(&row) {
                tx.execute(
                    "INSERT OR IGNORE INTO batches (seq, created_us, readings, alarms, body,
                         priority, checksum, first_us, last_us)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    params![
                        seq,
                        row.created_us,
                        row.readings,
                        row.alarms,
                        row.body,
                        row.priority,
                        checksum(&row.body),
                        row.first_us,
                        row.last_us
                    ],
                )
                .map_err(err)?;
                report.batches += 1;
                report.readings += row.readings.max(0) as u64;
            } else {
                tx.execute(
                    "INSERT OR REPLACE INTO quarantine (seq, quarantined_us, reason, readings, body)
                     VALUES (?1, ?2, 'checksum mismatch while salvaging a corrupt spool', ?3, ?4)",
                    params![seq, now_us, row.readings, row.body],
                )
                .map_err(err)?;
                report.corrupt += 1;
            }
        }
        if let Ok(mut stmt) = old
            .prepare("SELECT rule, series, raised_us, limit_value, severity, acked_us FROM alarms")
        {
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, f64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                ))
            });
            for alarm in rows.into_iter().flatten().map_while(Result::ok) {
                tx.execute(
                    "INSERT OR REPLACE INTO alarms (rule, series, raised_us, limit_value, severity, acked_us)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![alarm.0, alarm.1, alarm.2, alarm.3, alarm.4, alarm.5],
                )
                .map_err(err)?;
                report.alarms += 1;
            }
        }
        if let Ok(mut stmt) = old.prepare("SELECT key, value FROM meta WHERE key LIKE 'dropped_%'")
        {
            let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)));
            for (key, value) in rows.into_iter().flatten().map_while(Result::ok) {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)
                     ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
                    params![key, value],
                )
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        Ok(report)
    }
}
