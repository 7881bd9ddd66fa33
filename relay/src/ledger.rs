//! The ledger of delivered batches: which (gateway, sequence number) pairs
//! every sink has acknowledged, kept in a small SQLite file so that a retry
//! of a delivered batch (the agent never saw the 200, or the relay
//! restarted before answering) is answered 200 without publishing it again.
//!
//! Invariants and limits:
//! - a pair is recorded only after every sink acknowledged the batch, and
//!   the record is committed (`synchronous = FULL`) before the 200 goes
//!   out. A relay that dies between the sinks' acknowledgement and the
//!   commit publishes the batch again on retry: at-least-once, never lost;
//! - while a batch is being delivered its pair is *claimed* in memory, so
//!   a retry arriving meanwhile is told to come back later (503) instead of
//!   being published a second time in parallel;
//! - pairs are forgotten after the configured window (default a week); a
//!   batch retried after that is published again;
//! - the ledger is local to one relay. Several relays side by side each
//!   keep their own: a retry that lands on another relay is published again
//!   unless the load balancer routes each gateway to one relay. Consumers
//!   that need exactly-once can drop duplicates by the `gateway` and
//!   `batch_seq` headers (docs/kafka-messages.md).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

/// Why the ledger could not be used.
#[derive(Debug, thiserror::Error)]
#[error("delivered-batch ledger {path}: {source}")]
pub struct LedgerError {
    pub path: PathBuf,
    pub source: rusqlite::Error,
}

/// What the ledger says about a batch about to be delivered.
#[derive(Debug, PartialEq, Eq)]
pub enum Claim {
    /// Not seen: deliver it, then [`Ledger::record`] or [`Ledger::release`].
    New,
    /// Delivered before: answer 200 without publishing.
    Delivered,
    /// Being delivered by another request right now.
    InFlight,
}

/// The delivered-batch ledger. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    db: Mutex<Connection>,
    in_flight: Mutex<HashSet<(String, u64)>>,
    window: Duration,
}

fn now_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Ledger {
    /// Open (or create) the ledger at `path` and forget pairs older than
    /// `window`.
    pub fn open(path: &Path, window: Duration) -> Result<Ledger, LedgerError> {
        let err = |source| LedgerError {
            path: path.to_owned(),
            source,
        };
        let db = Connection::open(path).map_err(err)?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             CREATE TABLE IF NOT EXISTS delivered (
                 gateway TEXT NOT NULL,
                 seq INTEGER NOT NULL,
                 delivered_s INTEGER NOT NULL,
                 PRIMARY KEY (gateway, seq)
             ) WITHOUT ROWID;
             CREATE INDEX IF NOT EXISTS delivered_by_age ON delivered (delivered_s);",
        )
        .map_err(err)?;
        let ledger = Ledger {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                db: Mutex::new(db),
                in_flight: Mutex::default(),
                window,
            }),
        };
        ledger.prune()?;
        Ok(ledger)
    }

    fn err(&self, source: rusqlite::Error) -> LedgerError {
        LedgerError {
            path: self.inner.path.clone(),
            source,
        }
    }

    /// Whether the batch `seq` of `gateway` is new, delivered or in flight;
    /// a new one is claimed until [`Ledger::record`] or [`Ledger::release`].
    pub fn claim(&self, gateway: &str, seq: u64) -> Result<Claim, LedgerError> {
        let key = (gateway.to_string(), seq);
        let mut in_flight = lock(&self.inner.in_flight);
        if in_flight.contains(&key) {
            return Ok(Claim::InFlight);
        }
        let seen = lock(&self.inner.db)
            .query_row(
                "SELECT 1 FROM delivered WHERE gateway = ?1 AND seq = ?2",
                params![gateway, seq as i64],
                |_| Ok(()),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        if seen.is_some() {
            return Ok(Claim::Delivered);
        }
        in_flight.insert(key);
        Ok(Claim::New)
    }

    /// Record a claimed batch as delivered (committed before returning)
    /// and release the claim.
    pub fn record(&self, gateway: &str, seq: u64) -> Result<(), LedgerError> {
        let result = lock(&self.inner.db)
            .execute(
                "INSERT OR REPLACE INTO delivered (gateway, seq, delivered_s) VALUES (?1, ?2, ?3)",
                params![gateway, seq as i64, now_s()],
            )
            .map(drop)
            .map_err(|e| self.err(e));
        self.release(gateway, seq);
        result
    }

    /// Give a claim up: the batch was not delivered and may come again.
    pub fn release(&self, gateway: &str, seq: u64) {
        lock(&self.inner.in_flight).remove(&(gateway.to_string(), seq));
    }

    /// Forget pairs older than the window; returns how many.
    pub fn prune(&self) -> Result<usize, LedgerError> {
        let cutoff = now_s() - self.inner.window.as_secs() as i64;
        lock(&self.inner.db)
            .execute(
                "DELETE FROM delivered WHERE delivered_s < ?1",
                params![cutoff],
            )
            .map_err(|e| self.err(e))
    }

    /// Pairs remembered now.
    pub fn len(&self) -> Result<u64, LedgerError> {
        lock(&self.inner.db)
            .query_row("SELECT count(*) FROM delivered", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    pub fn is_empty(&self) -> Result<bool, LedgerError> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEEK: Duration = Duration::from_secs(7 * 24 * 3600);

    #[test]
    fn a_recorded_batch_is_delivered_across_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("delivered.db");
        let ledger = Ledger::open(&path, WEEK).unwrap();
        assert_eq!(ledger.claim("gw-a", 7).unwrap(), Claim::New);
        assert_eq!(ledger.claim("gw-a", 7).unwrap(), Claim::InFlight);
        ledger.record("gw-a", 7).unwrap();
        assert_eq!(ledger.claim("gw-a", 7).unwrap(), Claim::Delivered);
        drop(ledger);
        let ledger = Ledger::open(&path, WEEK).unwrap();
        assert_eq!(ledger.claim("gw-a", 7).unwrap(), Claim::Delivered);
        // Another gateway's 7 and this gateway's 8 are new.
        assert_eq!(ledger.claim("gw-b", 7).unwrap(), Claim::New);
        assert_eq!(ledger.claim("gw-a", 8).unwrap(), Claim::New);
    }

    #[test]
    fn a_released_claim_can_be_delivered_again() {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::open(&dir.path().join("l.db"), WEEK).unwrap();
        assert_eq!(ledger.claim("gw", 1).unwrap(), Claim::New);
        ledger.release("gw", 1);
        assert_eq!(ledger.claim("gw", 1).unwrap(), Claim::New);
        assert!(ledger.is_empty().unwrap());
    }

    #[test]
    fn pairs_older_than_the_window_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db");
        let ledger = Ledger::open(&path, WEEK).unwrap();
        for seq in 1..=3 {
            ledger.claim("gw", seq).unwrap();
            ledger.record("gw", seq).unwrap();
        }
        // Age two of them past the window.
        lock(&ledger.inner.db)
            .execute(
                "UPDATE delivered SET delivered_s = delivered_s - ?1 WHERE seq <= 2",
                params![WEEK.as_secs() as i64 + 60],
            )
            .unwrap();
        assert_eq!(ledger.prune().unwrap(), 2);
        assert_eq!(ledger.len().unwrap(), 1);
        assert_eq!(ledger.claim("gw", 1).unwrap(), Claim::New);
        assert_eq!(ledger.claim("gw", 3).unwrap(), Claim::Delivered);
    }
}
