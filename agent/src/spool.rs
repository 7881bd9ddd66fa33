//! The spool: encoded batches waiting for the relay, in SQLite (WAL).
//!
//! Invariants (each names the test that holds it):
//! - a batch is committed here before any source is acknowledged and before
//!   it can be forwarded: the pipeline acknowledges MQTT QoS 1 messages and
//!   wakes the forwarder only after [`Spool::append`] returned, and the
//!   forwarder reads only committed rows; a refused append leaves nothing
//!   (`tests::appended_batch_is_readable_only_after_commit`, e2e
//!   `mqtt::qos1_messages_are_acknowledged_only_after_the_spool_commit` and
//!   `mqtt_crash`);
//! - the bytes stored are exactly the bytes sent (encoded once, at append),
//!   and each row carries a CRC-64 of them, checked at start-up ([`check`]);
//! - a batch is removed only after the relay answered 2xx for it
//!   ([`Spool::remove`] is called by the forwarder on a 2xx only;
//!   `agent/tests/spool_removal.rs`), or by the configured bound policy,
//!   which records the removal as a gap ([`bounds`]) and, in the same
//!   transaction, commits a gap batch to the priority lane so the relay
//!   learns which interval is missing and why (`bounds_tests`);
//! - batch sequence numbers grow strictly, across restarts: the counter lives
//!   in the same database and is advanced in the same transaction as the
//!   insert; a spool started fresh after a corrupt one was moved aside
//!   starts its counter at the current time in µs, above every earlier seq
//!   (`tests::sequence_grows_across_reopen_and_bytes_are_the_encoding`,
//!   `check::tests::garbage_database_is_moved_aside_and_seq_keeps_growing`,
//!   the proptest model in `model_tests`);
//! - every batch carries the spool's instance id, a random non-zero id
//!   drawn when the database is created and kept in `meta` (wire v4): a
//!   spool started afresh (reinstall, replaced box, deleted by hand) has
//!   another, so the relay keeps its batches apart from the old spool's
//!   though their sequence numbers repeat
//!   (`tests::a_spool_keeps_its_instance_id_and_a_fresh_spool_draws_another`);
//! - the `alarms` table holds the alarms raised and not yet cleared, keyed
//!   by (rule, series), with when each was acknowledged; it is changed only
//!   in the transaction that stores the batch carrying those raise, clear
//!   and acknowledge events, so it never disagrees with what was spooled
//!   (see [`alarms`]).
//!
//! Two lanes: alarm-only batches ([`Spool::append`] with [`Lane::Alarms`]) and gap batches
//! are stored with `priority` 1 and [`Spool::oldest`] hands them out before
//! any reading batch, so after an outage alarms reach the relay ahead of the reading
//! backlog. Sequence numbers still come from the one counter, so they grow
//! strictly in the order batches were committed; the relay may therefore see
//! an alarm batch's seq before smaller seqs of older reading batches. When a
//! bound forces batches out, reading batches go first; alarm batches only
//! once no reading batch is left.
//!
//! Durability ([`Synchronous`]): with `full` a committed batch survives a
//! power failure; with `normal` the last transactions before a power
//! failure may be lost (the database stays consistent), never on a crash
//! of the agent alone.
//!
//! Modules: [`check`] (start-up check, quarantine of corrupt batches,
//! moving a broken database aside), [`bounds`] (size and age bounds, the
//! `on_full` policy and gap records), [`room`] (the disk as a bound, the
//! reserve file, the default `max_bytes`), [`inspect`] (backlog figures and
//! export for `edge-agent spool`), [`alarms`].
//!
//! The spool is synchronous (rusqlite); async callers go through
//! [`SharedSpool`], which runs each call on the blocking pool.

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use edge_wire::Batch;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

use crate::detect::ActiveAlarm;
use crate::reading::Alarm;

pub mod alarms;
pub mod bounds;
pub mod check;
pub mod inspect;
mod options;
mod pending;
pub mod room;
pub mod salvage;

pub use self::bounds::{DropReason, Gap, OnFull};
pub use self::check::StartupReport;
pub use self::options::{SpoolOptions, Synchronous};
pub use self::room::Pressure;

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
    /// The spool cannot take the batch now: its bound (`max_bytes` or the
    /// disk's, see [`room`]) with `on_full = "block"`, or the disk
    /// (SQLITE_FULL) when the reserve and dropping the oldest batches did
    /// not make room. Transient: retry after the forwarder has removed
    /// batches.
    #[error("spool {path}: full ({cause}: {why}); the batch waits")]
    Full {
        path: PathBuf,
        cause: FullCause,
        why: String,
    },
    /// Writing the export failed.
    #[error("spool export: cannot write: {0}")]
    Export(String),
    /// `PRAGMA quick_check` found damage.
    #[error("spool {path}: database is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    /// A bad database could not be moved aside.
    #[error("spool {path}: cannot move the bad database to {to}: {source}")]
    MoveAside {
        path: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
}

/// What filled the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullCause {
    /// `max_bytes` reached with `on_full = "block"`.
    MaxBytes,
    /// The disk bound (free space less the headroom) reached with
    /// `on_full = "block"`.
    DiskBound,
    /// SQLite could not write: the filesystem is full.
    DiskFull,
}

impl std::fmt::Display for FullCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FullCause::MaxBytes => "max_bytes reached",
            FullCause::DiskBound => "the disk is nearly full",
            FullCause::DiskFull => "disk full",
        })
    }
}

impl SpoolError {
    /// True for [`SpoolError::Full`]: wait and retry, nothing is wrong
    /// with the batch.
    pub fn is_full(&self) -> bool {
        matches!(self, SpoolError::Full { .. })
    }
}

/// Which lane of the spool a batch goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Reading batches, forwarded oldest first.
    Readings,
    /// Alarm-only batches (see [`crate::batch::alarm_batch`]) and gap
    /// batches, forwarded before the reading backlog.
    Alarms,
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
    /// This spool's instance id (`meta.instance`), drawn at random when the
    /// database is created and put in every batch it seals (wire v4), so
    /// the relay tells this spool's batches from those of an earlier spool
    /// of the same gateway whose sequence numbers this one repeats. `None`
    /// only for a read-only spool that has none yet (it never seals).
    instance: Option<NonZeroU64>,
    options: SpoolOptions,
    /// Gaps recorded since the last [`Spool::take_gaps`], for the caller's
    /// counters; the `gaps` table keeps them durably.
    gaps: Vec<Gap>,
    /// The reserve file released when SQLite finds the disk full ([`room`]).
    reserve: room::Reserve,
    /// SQLite reported the disk full since the last commit that fitted.
    hit_disk_end: bool,
    /// The last commit was refused ([`SpoolError::Full`]).
    refused: bool,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS batches (
    seq INTEGER PRIMARY KEY,
    created_us INTEGER NOT NULL,
    readings INTEGER NOT NULL,
    alarms INTEGER NOT NULL,
    body BLOB NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    checksum INTEGER,
    first_us INTEGER,
    last_us INTEGER
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
CREATE TABLE IF NOT EXISTS gaps (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    recorded_us INTEGER NOT NULL,
    reason TEXT NOT NULL,
    first_us INTEGER NOT NULL,
    last_us INTEGER NOT NULL,
    readings INTEGER NOT NULL,
    batches INTEGER NOT NULL
);
";

/// Columns added after the first release: (table, column, definition).
/// Spools created before them get them at open. `checksum`, `first_us` and
/// `last_us` are NULL in old rows until [`check`] fills in the checksum;
/// the interval of an old row is taken as its `created_us`.
const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("batches", "priority", "INTEGER NOT NULL DEFAULT 0"),
    ("alarms", "acked_us", "INTEGER"),
    ("batches", "checksum", "INTEGER"),
    ("batches", "first_us", "INTEGER"),
    ("batches", "last_us", "INTEGER"),
];

/// Created after the migrations, since it needs `priority`.
const INDEXES: &str = "CREATE INDEX IF NOT EXISTS batches_by_lane ON batches (priority DESC, seq);";

/// The checksum stored with each batch: CRC-64/XZ of the encoded bytes,
/// kept in SQLite's signed 64-bit integer.
pub fn checksum(body: &[u8]) -> i64 {
    const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);
    CRC64.checksum(body) as i64
}

/// The spool's instance id: drawn (random, non-zero) and committed the first
/// time a database is opened, read back every time after. A spool from
/// before instance ids gets one at its first open by this version.
fn instance(conn: &Connection) -> rusqlite::Result<NonZeroU64> {
    let drawn = fastrand::u64(1..) as i64;
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('instance', ?1) ON CONFLICT(key) DO NOTHING",
        params![drawn],
    )?;
    let stored: i64 = conn.query_row("SELECT value FROM meta WHERE key = 'instance'", [], |r| {
        r.get(0)
    })?;
    // A hand-edited 0 is replaced, not sent: 0 is reserved on the wire.
    match NonZeroU64::new(stored as u64) {
        Some(id) => Ok(id),
        None => {
            conn.execute(
                "UPDATE meta SET value = ?1 WHERE key = 'instance'",
                params![drawn],
            )?;
            Ok(NonZeroU64::new(drawn as u64).expect("drawn from 1.."))
        }
    }
}

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

/// The interval of readings a batch holds: (first, last) µs, or the seal
/// time for a batch without readings.
fn interval(batch: &Batch) -> (i64, i64) {
    let ts = batch
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.ts_us));
    let (lo, hi) = ts.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    if lo > hi {
        (batch.created_us, batch.created_us)
    } else {
        (lo, hi)
    }
}

/// The batch that reports `gaps` (recorded while making room for `batch`)
/// to the relay: no readings, the gap records, `batch`'s seq and seal time.
fn gap_batch(batch: &Batch, gaps: &[Gap]) -> Batch {
    Batch {
        gateway_id: batch.gateway_id.clone(),
        instance: batch.instance,
        seq: batch.seq,
        created_us: batch.created_us,
        series: Vec::new(),
        alarms: Vec::new(),
        gaps: gaps.iter().map(|g| g.to_wire(batch.created_us)).collect(),
    }
}

impl Spool {
    /// Open (or create) the spool at `path` with the default options
    /// (`synchronous = "full"`, no bounds), without the start-up check.
    pub fn open(path: &Path) -> Result<Spool, SpoolError> {
        Spool::open_with(path, SpoolOptions::default())
    }

    /// Open (or create) the spool at `path` with `options`, without the
    /// start-up check; see [`Spool::open_checked`] for what the agent uses.
    pub fn open_with(path: &Path, options: SpoolOptions) -> Result<Spool, SpoolError> {
        let err = |source| SpoolError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", options.synchronous.pragma())
            .map_err(err)?;
        // After a checkpoint the WAL file is cut back, so that the bytes a
        // bound counts are the bytes the spool needs.
        conn.pragma_update(None, "journal_size_limit", room::HEADROOM as i64)
            .map_err(err)?;
        // Checkpoint every 64 pages (256 KiB) rather than SQLite's 4 MiB, so
        // that the WAL stays within the headroom a small disk leaves it.
        conn.pragma_update(None, "wal_autocheckpoint", 64)
            .map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        migrate(&conn).map_err(err)?;
        let instance = Some(instance(&conn).map_err(err)?);
        let reserve = room::Reserve::new(path);
        reserve.restore();
        Ok(Spool {
            conn,
            instance,
            path: path.to_owned(),
            options,
            gaps: Vec::new(),
            reserve,
            hit_disk_end: false,
            refused: false,
        })
    }

    /// This spool's instance id, carried by every batch it seals (`None`
    /// for a read-only spool from before instance ids).
    pub fn instance(&self) -> Option<NonZeroU64> {
        self.instance
    }

    /// Where the database is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, source: rusqlite::Error) -> SpoolError {
        sqlite_error(&self.path, source)
    }

    /// The gaps recorded since the last call (batches the bound policy
    /// dropped), oldest first.
    pub fn take_gaps(&mut self) -> Vec<Gap> {
        std::mem::take(&mut self.gaps)
    }

    /// Assign the next sequence number to `batch`, encode it and commit it
    /// to `lane`, applying `alarms` (the raise, acknowledge and clear events
    /// it carries, in order) to the `alarms` table in the same transaction.
    /// Returns the sequence number. The alarm lane is forwarded before every
    /// reading batch.
    ///
    /// The bounds are applied first. On SQLITE_FULL the reserve is released
    /// and the WAL folded back into the database, then the commit is tried
    /// once more (with `drop-oldest`, dropping a tenth of the batches
    /// first); otherwise the error is [`SpoolError::Full`] and the caller
    /// waits.
    pub fn append(
        &mut self,
        batch: &mut Batch,
        alarms: &[Alarm],
        lane: Lane,
    ) -> Result<u64, SpoolError> {
        let result = match self.try_append(batch, alarms, lane, false) {
            Err(SpoolError::Full {
                cause: FullCause::DiskFull,
                ..
            }) => {
                self.hit_disk_end = true;
                self.use_reserve();
                let drop = self.options.on_full == OnFull::DropOldest;
                self.try_append(batch, alarms, lane, drop)
            }
            other => other,
        };
        self.refused = matches!(&result, Err(e) if e.is_full());
        if result.is_ok() {
            self.hit_disk_end = false;
            self.reserve.restore();
        }
        result
    }

    /// SQLite found the disk full: give it the reserve's room and cut the
    /// WAL back, which a drop or delete then has room to write into.
    fn use_reserve(&mut self) {
        if self.reserve.release() {
            tracing::warn!(spool = %self.path.display(), reserve = %self.reserve.path().display(), "disk full: reserve file released to let the spool drop and delete");
        }
        if let Err(error) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::debug!(spool = %self.path.display(), %error, "checkpoint on a full disk failed");
        }
    }

    /// The bound in force now: the tighter of `max_bytes` and what the disk
    /// can hold ([`room::bound`]), and the room it was read from.
    fn bound(&self) -> (Option<room::Bound>, Option<room::DiskRoom>) {
        let disk = room::DiskRoom::read(&self.path).ok();
        (room::bound(self.options.max_bytes, disk), disk)
    }

    /// How full the spool is, for `/healthz` and the metrics.
    pub fn pressure(&self) -> Result<room::Pressure, SpoolError> {
        let used = self.disk_bytes()?;
        let (bound, disk) = self.bound();
        Ok(room::pressure(
            used,
            bound,
            disk,
            self.hit_disk_end,
            self.refused,
        ))
    }

    fn try_append(
        &mut self,
        batch: &mut Batch,
        alarms: &[Alarm],
        lane: Lane,
        disk_full: bool,
    ) -> Result<u64, SpoolError> {
        let options = self.options;
        let (bound, _) = self.bound();
        if let Some(b) = bound {
            self.checkpoint_if_over(b.bytes - b.bytes / 10)
                .map_err(|e| self.err(e))?;
        }
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
        batch.instance = self.instance;
        let body = edge_wire::encode(batch)?;
        let (first_us, last_us) = interval(batch);
        let mut gaps = Vec::new();
        let made_room = bounds::make_room(
            &tx,
            &self.path,
            &options,
            bound,
            batch.created_us,
            body.len() as u64,
            disk_full,
            &mut gaps,
        );
        match made_room {
            Ok(true) => {}
            Ok(false) => {
                let b = bound.expect("make_room refuses only under a bound");
                return Err(SpoolError::Full {
                    path: self.path.clone(),
                    cause: if b.by_disk {
                        FullCause::DiskBound
                    } else {
                        FullCause::MaxBytes
                    },
                    why: format!("bound {} bytes and on_full is \"block\"", b.bytes),
                });
            }
            Err(e) => return Err(sqlite_error(&self.path, e)),
        }
        // Batches were dropped: a gap batch, committed with them, tells the
        // relay which interval is missing. It takes this seq (and goes to the
        // priority lane, ahead of the backlog); the incoming batch the next.
        let mut gap_seq = None;
        let body = if gaps.is_empty() {
            body
        } else {
            let gap_batch = gap_batch(batch, &gaps);
            let gap_body = edge_wire::encode(&gap_batch)?;
            tx.execute(
                "INSERT INTO batches (seq, created_us, readings, alarms, body, priority,
                                      checksum, first_us, last_us)
                 VALUES (?1, ?2, 0, 0, ?3, 1, ?4, ?2, ?2)",
                params![
                    gap_batch.seq as i64,
                    gap_batch.created_us,
                    gap_body,
                    checksum(&gap_body)
                ],
            )
            .map_err(|e| sqlite_error(&self.path, e))?;
            gap_seq = Some(gap_batch.seq);
            batch.seq += 1;
            edge_wire::encode(batch)?
        };
        let result = tx
            .execute(
                "INSERT INTO batches (seq, created_us, readings, alarms, body, priority,
                                      checksum, first_us, last_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    batch.seq as i64,
                    batch.created_us,
                    batch.reading_count() as i64,
                    batch.alarms.len() as i64,
                    body,
                    i64::from(lane == Lane::Alarms),
                    checksum(&body),
                    first_us,
                    last_us
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
        self.gaps.extend(gaps);
        if let Some(gap_seq) = gap_seq {
            tracing::debug!(spool = %self.path.display(), gap_seq, "gap batch committed");
        }
        if let Some(b) = bound {
            // The batch is committed: a failed checkpoint must not make the
            // caller store it again.
            if let Err(error) = self.checkpoint_if_over(b.bytes + 1) {
                tracing::warn!(spool = %self.path.display(), %error, "WAL checkpoint after a commit failed; the spool may stay above max_bytes until the next one");
            }
        }
        Ok(batch.seq)
    }

    /// Record `batch`, which the spool refused until the agent had to stop,
    /// as a gap (reason `full`): a row in `gaps`, the drop counters, and a
    /// gap batch in the priority lane telling the relay which interval is
    /// missing. Uses the reserve if the disk is full. The alarm events the
    /// batch carried are not applied (they are logged by the caller).
    pub fn record_unstored(&mut self, batch: &Batch, now_us: i64) -> Result<(), SpoolError> {
        let (first_us, last_us) = interval(batch);
        let gap = Gap {
            reason: DropReason::Full,
            first_us,
            last_us,
            readings: batch.reading_count() as u64,
            batches: 1,
        };
        self.record_gap(&batch.gateway_id, gap, now_us)
    }

    /// Record `gap` of `gateway_id` (readings lost before they reached the
    /// spool, or refused by it): a row in `gaps`, the drop counters, and a
    /// gap batch in the priority lane for the relay. Uses the reserve if the
    /// disk is full.
    pub fn record_gap(
        &mut self,
        gateway_id: &str,
        gap: Gap,
        now_us: i64,
    ) -> Result<(), SpoolError> {
        let batch = &Batch {
            gateway_id: gateway_id.to_owned(),
            instance: None,
            seq: 0,
            created_us: now_us,
            series: Vec::new(),
            alarms: Vec::new(),
            gaps: Vec::new(),
        };
        let attempt = |s: &mut Spool| -> Result<(), SpoolError> {
            let path = s.path.clone();
            let e = |e| sqlite_error(&path, e);
            let tx = s.conn.transaction().map_err(e)?;
            let next: Option<i64> = tx
                .query_row("SELECT value FROM meta WHERE key = 'next_seq'", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(e)?;
            let mut carrier = gap_batch(batch, &[gap]);
            carrier.seq = next.unwrap_or(1) as u64;
            carrier.instance = s.instance;
            carrier.created_us = now_us;
            let body = edge_wire::encode(&carrier)?;
            let mut recorded = Vec::new();
            bounds::record(&tx, Some(gap), now_us, &mut recorded).map_err(e)?;
            tx.execute(
                "INSERT INTO batches (seq, created_us, readings, alarms, body, priority,
                                      checksum, first_us, last_us)
                 VALUES (?1, ?2, 0, 0, ?3, 1, ?4, ?2, ?2)",
                params![carrier.seq as i64, now_us, body, checksum(&body)],
            )
            .and_then(|_| {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('next_seq', ?1)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    params![carrier.seq as i64 + 1],
                )
            })
            .and_then(|_| tx.commit())
            .map_err(e)?;
            s.gaps.extend(recorded);
            Ok(())
        };
        match attempt(self) {
            Err(SpoolError::Full {
                cause: FullCause::DiskFull,
                ..
            }) => {
                self.hit_disk_end = true;
                self.use_reserve();
                attempt(self)
            }
            other => other,
        }
    }

    /// Bytes the spool takes on disk: used pages of the database plus the
    /// WAL file.
    pub fn disk_bytes(&self) -> Result<u64, SpoolError> {
        bounds::used_bytes(&self.conn, &self.path).map_err(|e| self.err(e))
    }

    /// At `limit` bytes or more: fold the WAL back into the database and
    /// cut it, which may be all the room needed. Done before a commit near
    /// `max_bytes`, and after one that went over it through its WAL frames,
    /// so the spool stays under the bound unless a reader holds the WAL.
    fn checkpoint_if_over(&self, limit: u64) -> rusqlite::Result<()> {
        if bounds::used_bytes(&self.conn, &self.path)? >= limit {
            self.conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        }
        Ok(())
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

    /// Remove a batch the relay acknowledged. On a full disk the reserve
    /// is released and the delete tried once more: a delete needs room for
    /// its WAL frames, and a spool that cannot delete cannot drain.
    pub fn remove(&mut self, seq: u64) -> Result<(), SpoolError> {
        let delete = |s: &Spool| {
            s.conn
                .execute("DELETE FROM batches WHERE seq = ?1", params![seq as i64])
                .map(|_| ())
                .map_err(|e| s.err(e))
        };
        match delete(self) {
            Err(SpoolError::Full {
                cause: FullCause::DiskFull,
                ..
            }) => {
                self.hit_disk_end = true;
                self.use_reserve();
                delete(self)
            }
            other => other,
        }
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

#[cfg(test)]
mod model_tests;

/// The error for `source` on the spool at `path`; SQLITE_FULL becomes
/// [`SpoolError::Full`], which the commit path waits on.
fn sqlite_error(path: &Path, source: rusqlite::Error) -> SpoolError {
    if is_disk_full(&source) {
        return SpoolError::Full {
            path: path.to_owned(),
            cause: FullCause::DiskFull,
            why: source.to_string(),
        };
    }
    SpoolError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

/// SQLITE_FULL: the disk (or `max_page_count`) has no room left.
fn is_disk_full(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::DiskFull)
}
