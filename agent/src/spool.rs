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
//!   transaction, commits it to a gap batch in the priority lane so the
//!   relay learns which interval is missing and why (`bounds_tests`); the
//!   gap batch not yet handed out is rewritten to merge adjacent records of
//!   one outage, never one that may have been sent ([`carrier`]);
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
//!   (see [`alarms`]);
//! - likewise the `frames_progress` and `frames_taken` tables, which
//!   microcontroller samples are taken, change only in the transaction that
//!   stores their readings (see [`frames`]);
//! - the `spc_state` table (created by the first save) holds the SPC
//!   baselines and charts, replaced
//!   after each reading batch the pipeline commits (see [`spc`];
//!   `spc::tests::spc_state_survives_reopen`).
//!
//! Two lanes: alarm-only batches ([`Spool::append`] with [`Lane::Alarms`]) and gap batches
//! are stored with `priority` 1 and [`Spool::oldest`] hands them out before
//! any reading batch, so after an outage alarms reach the relay ahead of the reading
//! backlog. Sequence numbers still come from the one counter, so they grow
//! strictly in the order batches were committed; the relay may therefore see
//! an alarm batch's seq before smaller seqs of older reading batches. When a
//! bound forces batches out, reading batches go first; alarm batches only
//! once no reading batch is left. The open gap batch (the one later drops
//! still merge into, see [`carrier`]) waits behind the reading batches until
//! the forwarder asks for more than they fill or a delivery closes it.
//!
//! Durability ([`Synchronous`]): with `full` a committed batch survives a
//! power failure; with `normal` the last transactions before a power
//! failure may be lost (the database stays consistent), never on a crash
//! of the agent alone.
//!
//! Modules: [`check`] (start-up check, quarantine of corrupt batches,
//! moving a broken database aside), [`bounds`] (size and age bounds, the
//! `on_full` policy and gap records), [`carrier`] (the gap batch and the
//! merge of adjacent gap records), [`room`] (the disk as a bound, the
//! reserve file, the default `max_bytes`), [`inspect`] (backlog figures and
//! export for `edge-agent spool`), [`alarms`], [`frames`], [`salvage`]; and, private,
//! `append` (the commit path), `schema` (tables, migrations, checksum,
//! instance id) and `error` ([`SpoolError`]).
//!
//! The spool is synchronous (rusqlite); async callers go through
//! [`SharedSpool`], which runs each call on the blocking pool.

use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection};

use crate::detect::{ActiveAlarm, SpcState};

pub mod alarms;
mod append;
pub mod bounds;
pub mod carrier;
pub mod check;
mod error;
pub mod frames;
pub mod inspect;
pub mod mqtt;
mod options;
mod pending;
pub mod room;
pub mod salvage;
mod schema;
pub mod spc;

pub use self::bounds::{DropReason, Gap, OnFull};
pub use self::check::StartupReport;
use self::error::sqlite_error;

/// Something a source took, committed with the batch that holds its
/// readings, so a restarted agent knows not to take it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// A microcontroller sample ([`frames`]).
    Frame(frames::FrameMark),
    /// A QoS 1 MQTT message ([`mqtt`]).
    Mqtt(mqtt::MqttMark),
}
pub use self::error::{FullCause, SpoolError};
pub use self::options::{SpoolOptions, Synchronous};
pub use self::room::Pressure;
pub use self::schema::checksum;
use self::schema::{instance, migrate, SCHEMA};

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

    /// The SPC baselines and charts as last saved, and how many rows did
    /// not parse ([`spc`]).
    pub fn spc_states(&self) -> Result<(Vec<SpcState>, usize), SpoolError> {
        spc::load(&self.conn).map_err(|e| self.err(e))
    }

    /// Replace the saved SPC baselines and charts with `states`.
    pub fn save_spc(&mut self, states: &[SpcState]) -> Result<(), SpoolError> {
        spc::save(&mut self.conn, states).map_err(|e| sqlite_error(&self.path, e))
    }

    /// When each raised alarm was acknowledged: (series, rule, µs since the
    /// epoch), for the alarms acknowledged and not yet cleared.
    pub fn acknowledged_alarms(&self) -> Result<Vec<(String, String, i64)>, SpoolError> {
        alarms::acknowledged(&self.conn).map_err(|e| self.err(e))
    }

    /// The MQTT messages of broker connection `client_id` committed so far:
    /// packet id to digest ([`mqtt`]).
    pub fn mqtt_delivered(
        &self,
        client_id: &str,
    ) -> Result<std::collections::BTreeMap<u16, u64>, SpoolError> {
        mqtt::load(&self.conn, client_id).map_err(|e| self.err(e))
    }

    /// What the spool holds of the microcontroller `device_id`'s sequence:
    /// its current boot, settled floor and the seqs taken above it.
    pub fn frame_progress(
        &self,
        device_id: &str,
    ) -> Result<Option<frames::FrameProgress>, SpoolError> {
        frames::load(&self.conn, device_id).map_err(|e| self.err(e))
    }

    /// The batch to send next: [`Spool::next_unsent`] with nothing in
    /// flight (the oldest of the priority lane, alarm-only batches and
    /// closed gap batches, if there is one, else the oldest reading batch,
    /// else the open gap batch).
    pub fn oldest(&self) -> Result<Option<StoredBatch>, SpoolError> {
        Ok(self
            .next_unsent(1, &std::collections::HashSet::new())?
            .into_iter()
            .next())
    }

    /// Remove a batch the relay acknowledged. On a full disk the reserve
    /// is released and the delete tried once more: a delete needs room for
    /// its WAL frames, and a spool that cannot delete cannot drain.
    ///
    /// The open gap batch is closed first ([`carrier`]): readings delivered
    /// now may lie between its records and the next drop's.
    pub fn remove(&mut self, seq: u64) -> Result<(), SpoolError> {
        let delete = |s: &Spool| {
            s.close_gap_batch()?;
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
    /// keeping its bytes and the reason for a technician to inspect. Closes
    /// the open gap batch ([`carrier`]) in the same transaction.
    pub fn quarantine(&mut self, seq: u64, reason: &str, now_us: i64) -> Result<(), SpoolError> {
        let tx = self.conn.transaction().map_err(|e| SpoolError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        let keep = "INSERT OR REPLACE INTO quarantine (seq, quarantined_us, reason, readings, body)
                    SELECT seq, ?2, ?3, readings, body FROM batches WHERE seq = ?1";
        let result = carrier::close(&tx)
            .and_then(|_| tx.execute(keep, params![seq as i64, now_us, reason]))
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
pub(crate) mod tests;

#[cfg(test)]
mod model_tests;
