//! The SQLite ledger: delivered rows in one file per relay (`synchronous =
//! FULL`, committed before the 200), claims in memory ([`Claims`]): with one
//! relay, a claim cannot outlive the process that holds it.
//!
//! ```sql
//! CREATE TABLE delivered_batches (
//!     gateway TEXT NOT NULL,
//!     instance INTEGER NOT NULL,     -- spool instance, 0 if none; u64 bits
//!     seq INTEGER NOT NULL,          -- u64 bits
//!     digest BLOB NOT NULL,          -- 16 bytes; zeros: recorded before digests
//!     delivered_ms INTEGER NOT NULL,
//!     PRIMARY KEY (gateway, instance, seq, digest)
//! ) WITHOUT ROWID;
//! CREATE TABLE series_tables (       -- super::tables
//!     gateway TEXT NOT NULL,
//!     id BLOB NOT NULL,              -- 16 bytes: SHA-256 of body
//!     body BLOB NOT NULL,            -- the CBOR of the series table
//!     stored_ms INTEGER NOT NULL,
//!     PRIMARY KEY (gateway, id)
//! ) WITHOUT ROWID;
//! ```
//!
//! A ledger file from before instance ids (`delivered (gateway, seq,
//! delivered_s)`) is moved into this table at open, its rows with instance 0
//! and the unknown digest, so the batches it knew stay duplicates.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rusqlite::{params, Connection};

use super::{lock, BatchKey, ClaimKey, Claims, Digest, LedgerError, Pruned};

#[derive(Debug)]
pub(super) struct SqliteLedger {
    path: PathBuf,
    db: Mutex<Connection>,
    claims: Mutex<Claims>,
    /// Rows in the table, counted once at open and kept up to date, so the
    /// row bound needs no `count(*)` over the whole table on every prune.
    rows: AtomicU64,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE IF NOT EXISTS delivered_batches (
    gateway TEXT NOT NULL,
    instance INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    digest BLOB NOT NULL,
    delivered_ms INTEGER NOT NULL,
    PRIMARY KEY (gateway, instance, seq, digest)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS delivered_batches_by_age ON delivered_batches (delivered_ms);
CREATE TABLE IF NOT EXISTS series_tables (
    gateway TEXT NOT NULL,
    id BLOB NOT NULL,
    body BLOB NOT NULL,
    stored_ms INTEGER NOT NULL,
    PRIMARY KEY (gateway, id)
) WITHOUT ROWID;
";

/// Rows of the ledger before instance ids and digests.
const MIGRATE_V1: &str = "
INSERT OR IGNORE INTO delivered_batches (gateway, instance, seq, digest, delivered_ms)
    SELECT gateway, 0, seq, zeroblob(16), delivered_s * 1000 FROM delivered;
DROP TABLE delivered;
";

impl SqliteLedger {
    pub(super) fn open(path: &Path) -> Result<SqliteLedger, LedgerError> {
        let err = |source| LedgerError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let mut db = Connection::open(path).map_err(err)?;
        db.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        db.execute_batch(SCHEMA).map_err(err)?;
        let old: bool = db
            .query_row(
                "SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'delivered'",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if old {
            let tx = db.transaction().map_err(err)?;
            tx.execute_batch(MIGRATE_V1).map_err(err)?;
            tx.commit().map_err(err)?;
        }
        let rows: i64 = db
            .query_row("SELECT count(*) FROM delivered_batches", [], |r| r.get(0))
            .map_err(err)?;
        Ok(SqliteLedger {
            path: path.to_owned(),
            db: Mutex::new(db),
            claims: Mutex::default(),
            rows: AtomicU64::new(rows as u64),
        })
    }

    fn err(&self, source: rusqlite::Error) -> LedgerError {
        LedgerError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    pub(super) fn try_claim(&self, key: &ClaimKey, token: u64, now_ms: i64, lease_ms: i64) -> bool {
        lock(&self.claims).try_claim(key, token, now_ms, lease_ms)
    }

    pub(super) fn release(&self, key: &ClaimKey, token: u64) {
        lock(&self.claims).release(key, token);
    }

    pub(super) fn claims_held(&self) -> u64 {
        lock(&self.claims).len() as u64
    }

    /// The digests recorded for `key` at or after `cutoff_ms`.
    pub(super) fn recorded(
        &self,
        key: &BatchKey,
        cutoff_ms: i64,
    ) -> Result<Vec<Digest>, LedgerError> {
        let db = lock(&self.db);
        let mut stmt = db
            .prepare_cached(
                "SELECT digest FROM delivered_batches
                 WHERE gateway = ?1 AND instance = ?2 AND seq = ?3 AND delivered_ms >= ?4",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![key.gateway, key.instance as i64, key.seq as i64, cutoff_ms],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .map_err(|e| self.err(e))?;
        let mut digests = Vec::new();
        for row in rows {
            let bytes = row.map_err(|e| self.err(e))?;
            let mut d = [0; 16];
            if bytes.len() == 16 {
                d.copy_from_slice(&bytes);
            }
            digests.push(d);
        }
        Ok(digests)
    }

    /// Record a delivered batch (committed when this returns).
    pub(super) fn record(&self, (key, digest): &ClaimKey, now_ms: i64) -> Result<(), LedgerError> {
        let added = lock(&self.db)
            .execute(
                "INSERT INTO delivered_batches (gateway, instance, seq, digest, delivered_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT DO UPDATE SET delivered_ms = excluded.delivered_ms",
                params![
                    key.gateway,
                    key.instance as i64,
                    key.seq as i64,
                    digest.as_slice(),
                    now_ms
                ],
            )
            .map_err(|e| self.err(e))?;
        // An upsert of a row already there reports 1 change too; the count
        // only needs to be close (a recount happens at every open).
        self.rows.fetch_add(added as u64, Ordering::Relaxed);
        Ok(())
    }

    pub(super) fn prune(
        &self,
        cutoff_ms: i64,
        max_rows: u64,
        now_ms: i64,
    ) -> Result<Pruned, LedgerError> {
        let db = lock(&self.db);
        let by_age = db
            .execute(
                "DELETE FROM delivered_batches WHERE delivered_ms < ?1",
                params![cutoff_ms],
            )
            .map_err(|e| self.err(e))? as u64;
        let mut rows = self.rows.load(Ordering::Relaxed).saturating_sub(by_age);
        let mut by_rows = 0;
        if rows > max_rows {
            // The counter may run high (upserts): count exactly first.
            rows = db
                .query_row("SELECT count(*) FROM delivered_batches", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map_err(|e| self.err(e))? as u64;
            if rows > max_rows {
                by_rows = db
                    .execute(
                        "DELETE FROM delivered_batches WHERE (gateway, instance, seq, digest) IN (
                             SELECT gateway, instance, seq, digest FROM delivered_batches
                             ORDER BY delivered_ms LIMIT ?1)",
                        params![(rows - max_rows) as i64],
                    )
                    .map_err(|e| self.err(e))? as u64;
                rows -= by_rows;
            }
        }
        self.rows.store(rows, Ordering::Relaxed);
        drop(db);
        let claims = lock(&self.claims).expire(now_ms) as u64;
        Ok(Pruned {
            by_age,
            by_rows,
            claims,
            tables: 0,
        })
    }

    /// The body of series table `id` of `gateway`, if stored.
    pub(super) fn series_table(
        &self,
        gateway: &str,
        id: &[u8; 16],
    ) -> Result<Option<Vec<u8>>, LedgerError> {
        use rusqlite::OptionalExtension as _;
        lock(&self.db)
            .prepare_cached("SELECT body FROM series_tables WHERE gateway = ?1 AND id = ?2")
            .and_then(|mut stmt| {
                stmt.query_row(params![gateway, id.as_slice()], |r| r.get(0))
                    .optional()
            })
            .map_err(|e| self.err(e))
    }

    /// Store a series table, then keep only the gateway's newest
    /// [`super::tables::TABLES_PER_GATEWAY`]; one transaction.
    pub(super) fn keep_series_table(
        &self,
        gateway: &str,
        id: &[u8; 16],
        body: &[u8],
        now_ms: i64,
    ) -> Result<(), LedgerError> {
        let mut db = lock(&self.db);
        let tx = db.transaction().map_err(|e| self.err(e))?;
        tx.execute(
            "INSERT INTO series_tables (gateway, id, body, stored_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO UPDATE SET stored_ms = excluded.stored_ms",
            params![gateway, id.as_slice(), body, now_ms],
        )
        .map_err(|e| self.err(e))?;
        tx.execute(
            "DELETE FROM series_tables WHERE gateway = ?1 AND id NOT IN (
                 SELECT id FROM series_tables WHERE gateway = ?1
                 ORDER BY stored_ms DESC LIMIT ?2)",
            params![gateway, super::tables::TABLES_PER_GATEWAY],
        )
        .map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))
    }

    /// Delete series tables last stored before `cutoff_ms`.
    pub(super) fn prune_series_tables(&self, cutoff_ms: i64) -> Result<u64, LedgerError> {
        lock(&self.db)
            .execute(
                "DELETE FROM series_tables WHERE stored_ms < ?1",
                params![cutoff_ms],
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    pub(super) fn series_tables(&self) -> Result<u64, LedgerError> {
        lock(&self.db)
            .query_row("SELECT count(*) FROM series_tables", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    pub(super) fn len(&self) -> Result<u64, LedgerError> {
        lock(&self.db)
            .query_row("SELECT count(*) FROM delivered_batches", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }
}
