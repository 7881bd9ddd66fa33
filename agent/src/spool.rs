//! The spool: encoded batches waiting for the relay, in SQLite (WAL).
//!
//! Invariants:
//! - a batch is committed here before it can be forwarded;
//! - the bytes stored are exactly the bytes sent (encoded once, at append);
//! - a batch is removed only after the relay answered 2xx for it;
//! - batch sequence numbers grow strictly, across restarts: the counter lives
//!   in the same database and is advanced in the same transaction as the
//!   insert;
//! - the `alarms` table holds the alarms raised and not yet cleared, keyed
//!   by (rule, series), with when each was acknowledged; it is changed only
//!   in the transaction that stores the batch carrying those raise, clear
//!   and acknowledge events, so it never disagrees with what was spooled
//!   (see [`alarms`]).
//!
//! Two lanes: alarm-only batches ([`Spool::append_alarms`]) are stored with
//! `priority` 1 and [`Spool::oldest`] hands them out before any reading
//! batch, so after an outage alarms reach the relay ahead of the reading
//! backlog. Sequence numbers still come from the one counter, so they grow
//! strictly in the order batches were committed; the relay may therefore see
//! an alarm batch's seq before smaller seqs of older reading batches.
//!
//! Not for: applying size bounds; that comes with the store-and-forward
//! work.
//!
//! The spool is synchronous (rusqlite); async callers go through
//! [`SharedSpool`], which runs each call on the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use edge_wire::Batch;
use rusqlite::{params, Connection, OptionalExtension};

use crate::detect::ActiveAlarm;
use crate::reading::Alarm;

pub mod alarms;
mod pending;

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("spool: batch could not be encoded: {0}")]
    Encode(#[from] edge_wire::WireError),
    #[error("spool: background task failed: {0}")]
    Join(String),
}

/// A stored batch, as it will be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredBatch {
    pub seq: u64,
    pub readings: u64,
    pub alarms: u64,
    pub body: Vec<u8>,
}

/// Backlog figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SpoolStats {
    pub batches: u64,
    pub readings: u64,
    pub bytes: u64,
    pub quarantined: u64,
}

pub struct Spool {
    conn: Connection,
    path: PathBuf,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    created_us INTEGER NOT NULL,
    readings INTEGER NOT NULL,
    alarms INTEGER NOT NULL,
    body BLOB NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS quarantine (
    seq INTEGER PRIMARY KEY,
    quarantined_us INTEGER NOT NULL,
    reason TEXT NOT NULL,
    readings INTEGER NOT NULL,
    body BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS alarms (
    rule TEXT NOT NULL,
    series TEXT NOT NULL,
    raised_us INTEGER NOT NULL,
    limit_value REAL NOT NULL,
    severity TEXT NOT NULL,
    acked_us INTEGER,
    PRIMARY KEY (rule, series)
);
";

/// Columns added after the first release: (table, column, definition).
/// Spools created before them get them at open.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("batches", "priority", "INTEGER NOT NULL DEFAULT 0"),
    ("alarms", "acked_us", "INTEGER"),
];

/// Created after the migrations, since it needs `priority`.
const INDEXES: &str = "CREATE INDEX IF NOT EXISTS batches_by_lane ON batches (priority DESC, seq);";

fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, definition) in ADDED_COLUMNS {
        let present: bool = conn.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2",
            params![table, column],
            |r| r.get(0),
        )?;
        if !present {
            conn.execute_batch(&format!(
                "ALTER TABLE {table} ADD COLUMN {column} {definition}"
            ))?;
        }
    }
    conn.execute_batch(INDEXES)
}

impl Spool {
    /// Open (or create) the spool at `path`.
    pub fn open(path: &Path) -> Result<Spool, SpoolError> {
        let err = |source| SpoolError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        migrate(&conn).map_err(err)?;
        Ok(Spool {
            conn,
            path: path.to_owned(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> SpoolError {
        SpoolError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Assign the next sequence number to `batch`, encode it and commit it.
    /// Returns the sequence number. For a batch without alarm events; see
    /// [`Spool::append_with_alarms`].
    pub fn append(&mut self, batch: &mut Batch) -> Result<u64, SpoolError> {
        self.append_with_alarms(batch, &[])
    }

    /// Like [`Spool::append`], and apply `alarms` (the raise and clear
    /// events `batch` carries, in order) to the `alarms` table in the same
    /// transaction.
    pub fn append_with_alarms(
        &mut self,
        batch: &mut Batch,
        alarms: &[Alarm],
    ) -> Result<u64, SpoolError> {
        self.append_in_lane(batch, alarms, false)
    }

    /// Commit an alarm-only batch (see [`crate::batch::alarm_batch`]) to the
    /// priority lane, applying its events to the `alarms` table in the same
    /// transaction. It is forwarded before every reading batch.
    pub fn append_alarms(
        &mut self,
        batch: &mut Batch,
        alarms: &[Alarm],
    ) -> Result<u64, SpoolError> {
        self.append_in_lane(batch, alarms, true)
    }

    fn append_in_lane(
        &mut self,
        batch: &mut Batch,
        alarms: &[Alarm],
        priority: bool,
    ) -> Result<u64, SpoolError> {
        let tx = self.conn.transaction().map_err(|e| SpoolError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        let next: Option<i64> = tx
            .query_row("SELECT value FROM meta WHERE key = 'next_seq'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| SpoolError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
        batch.seq = next.unwrap_or(1) as u64;
        let body = edge_wire::encode(batch)?;
        let result = tx
            .execute(
                "INSERT INTO batches (seq, created_us, readings, alarms, body, priority)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    batch.seq as i64,
                    batch.created_us,
                    batch.reading_count() as i64,
                    batch.alarms.len() as i64,
                    body,
                    i64::from(priority)
                ],
            )
            .and_then(|_| {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('next_seq', ?1)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    params![batch.seq as i64 + 1],
                )
            })
            .and_then(|_| alarms::apply(&tx, alarms))
            .and_then(|_| tx.commit());
        result.map_err(|e| self.err(e))?;
        Ok(batch.seq)
    }

    /// The alarms raised and not cleared, as last committed: what the
    /// detector is seeded with at start-up.
    pub fn active_alarms(&self) -> Result<Vec<ActiveAlarm>, SpoolError> {
        alarms::load(&self.conn).map_err(|e| self.err(e))
    }

    /// When each raised alarm was acknowledged: (series, rule, µs since the
    /// epoch), for the alarms acknowledged and not yet cleared.
    pub fn acknowledged_alarms(&self) -> Result<Vec<(String, String, i64)>, SpoolError> {
        alarms::acknowledged(&self.conn).map_err(|e| self.err(e))
    }

    /// The batch to send next: the oldest of the priority lane (alarm-only
    /// batches) if there is one, else the oldest reading batch.
    pub fn oldest(&self) -> Result<Option<StoredBatch>, SpoolError> {
        self.conn
            .query_row(
                "SELECT seq, readings, alarms, body FROM batches
                 ORDER BY priority DESC, seq LIMIT 1",
                [],
                |r| {
                    Ok(StoredBatch {
                        seq: r.get::<_, i64>(0)? as u64,
                        readings: r.get::<_, i64>(1)? as u64,
                        alarms: r.get::<_, i64>(2)? as u64,
                        body: r.get(3)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Remove a batch the relay acknowledged.
    pub fn remove(&self, seq: u64) -> Result<(), SpoolError> {
        self.conn
            .execute("DELETE FROM batches WHERE seq = ?1", params![seq as i64])
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Move a batch the relay will never accept out of the send queue,
    /// keeping its bytes and the reason for a technician to inspect.
    pub fn quarantine(&mut self, seq: u64, reason: &str, now_us: i64) -> Result<(), SpoolError> {
        let tx = self.conn.transaction().map_err(|e| SpoolError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        let result = tx
            .execute(
                "INSERT OR REPLACE INTO quarantine (seq, quarantined_us, reason, readings, body)
                 SELECT seq, ?2, ?3, readings, body FROM batches WHERE seq = ?1",
                params![seq as i64, now_us, reason],
            )
            .and_then(|_| tx.execute("DELETE FROM batches WHERE seq = ?1", params![seq as i64]))
            .and_then(|_| tx.commit());
        result.map(|_| ()).map_err(|e| self.err(e))
    }

    pub fn stats(&self) -> Result<SpoolStats, SpoolError> {
        self.conn
            .query_row(
                "SELECT COUNT(*), COALESCE(SUM(readings), 0), COALESCE(SUM(LENGTH(body)), 0),
                        (SELECT COUNT(*) FROM quarantine)
                 FROM batches",
                [],
                |r| {
                    Ok(SpoolStats {
                        batches: r.get::<_, i64>(0)? as u64,
                        readings: r.get::<_, i64>(1)? as u64,
                        bytes: r.get::<_, i64>(2)? as u64,
                        quarantined: r.get::<_, i64>(3)? as u64,
                    })
                },
            )
            .map_err(|e| self.err(e))
    }
}

/// A spool shared between async tasks; each call runs on the blocking pool.
#[derive(Clone)]
pub struct SharedSpool(Arc<Mutex<Spool>>);

impl SharedSpool {
    pub fn new(spool: Spool) -> SharedSpool {
        SharedSpool(Arc::new(Mutex::new(spool)))
    }

    pub async fn call<T, F>(&self, f: F) -> Result<T, SpoolError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Spool) -> Result<T, SpoolError> + Send + 'static,
    {
        let inner = self.0.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave SQLite half-written
            // (transactions roll back), so a poisoned lock is still usable.
            let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| SpoolError::Join(e.to_string()))?
    }
}

#[cfg(test)]
mod tests;
