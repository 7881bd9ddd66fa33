//! The ledger of delivered batches: which batches every sink has
//! acknowledged, so that a retry of a delivered batch (the agent never saw
//! the 200, the relay restarted before answering, or the retry landed on
//! another relay of the fleet) is answered 200 without publishing it again.
//!
//! A batch is known by its [`BatchKey`] (gateway, spool instance, sequence
//! number) and its content [`Digest`]. The spool instance is the random id a
//! gateway's spool makes when it is created (wire format v4); a gateway whose
//! spool starts afresh (a reinstall, a replaced box) sends new keys, so its
//! batches are never mistaken for the old spool's. Batches without an
//! instance id (formats v1 to v3, older agents) have instance 0.
//!
//! Two stores behind one seam ([`Ledger`]): SQLite, one file per relay
//! (the default), and PostgreSQL, one table shared by a fleet of relays
//! behind any load balancer (`[dedup] store = "postgres"`).
//!
//! Invariants and limits:
//! - a batch is recorded only after every sink acknowledged it, and the
//!   record is committed before the 200 goes out. A relay that dies between
//!   the sinks' acknowledgement and the commit publishes the batch again on
//!   retry: at-least-once, never lost;
//! - while a batch is being delivered it is *claimed*, so a retry arriving
//!   meanwhile (at this relay or, with PostgreSQL, at another) is told to come
//!   back later (503) instead of being published a second time in parallel.
//!   A claim is a lease ([`claims`]): it is owned by a [`ClaimGuard`] that
//!   releases it when dropped on any path (client gone, future dropped,
//!   sink error), and it expires after `claim_lease_secs` in any case (a
//!   relay killed while holding it);
//! - the claim is taken *before* the delivered rows are read, and a record
//!   releases the claim only after it committed, so two requests for one
//!   batch can never both read "not delivered" and both publish;
//! - a known key whose content differs is a *conflict* ([`claims::verdict`]):
//!   it is delivered anyway and flagged (metric, log, `"conflict": true` in
//!   the answer, a `batch_conflict` Kafka header), never dropped as a
//!   duplicate;
//! - rows older than `window_hours` are ignored by every lookup and deleted
//!   by [`Ledger::prune`], which the relay runs on a timer; the ledger also
//!   keeps at most `max_rows` rows (the oldest go first).

pub mod claims;
mod postgres;
mod sqlite;
pub mod tables;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use edge_wire::Batch;
use sha2::{Digest as _, Sha256};

use self::claims::{verdict, Verdict};
use self::postgres::PostgresLedger;
use self::sqlite::SqliteLedger;

pub use self::claims::{Claims, Lease};

/// What identifies a batch in the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BatchKey {
    /// The gateway that sent it (authenticated).
    pub gateway: String,
    /// The spool instance that made it; 0 for batches without one (v1 to v3).
    pub instance: u64,
    /// Its sequence number within that spool.
    pub seq: u64,
}

impl BatchKey {
    /// The key of a decoded batch.
    pub fn of(batch: &Batch) -> BatchKey {
        BatchKey {
            gateway: batch.gateway_id.clone(),
            instance: batch.instance.map_or(0, |i| i.get()),
            seq: batch.seq,
        }
    }
}

/// A content digest: the first 16 bytes of SHA-256 over the decoded batch
/// ([`digest`]).
pub type Digest = [u8; 16];

/// The digest of rows recorded before digests were kept: matches any content.
pub const UNKNOWN_DIGEST: Digest = [0; 16];

/// A claim's identity: the batch and its content.
pub type ClaimKey = (BatchKey, Digest);

/// The digest of what a batch says, independent of how it was encoded
/// (compression level, integer widths): every field of the decoded batch,
/// length-prefixed, values by their bits.
pub fn digest(batch: &Batch) -> Digest {
    let mut h = Sha256::new();
    let text = |h: &mut Sha256, s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    text(&mut h, &batch.gateway_id);
    h.update(batch.instance.map_or(0, |i| i.get()).to_le_bytes());
    h.update(batch.seq.to_le_bytes());
    h.update(batch.created_us.to_le_bytes());
    h.update((batch.series.len() as u64).to_le_bytes());
    for s in &batch.series {
        h.update(s.id.to_le_bytes());
        text(&mut h, &s.name);
        text(&mut h, &s.unit);
        h.update((s.tags.len() as u64).to_le_bytes());
        for (k, v) in &s.tags {
            text(&mut h, k);
            text(&mut h, v);
        }
        // The points in one buffer and one update: SHA-256 then runs at
        // its block speed instead of per 8-byte call.
        let mut points = Vec::with_capacity(8 + s.points.len() * 17);
        points.extend_from_slice(&(s.points.len() as u64).to_le_bytes());
        for p in &s.points {
            points.extend_from_slice(&p.ts_us.to_le_bytes());
            points.extend_from_slice(&p.value.to_bits().to_le_bytes());
            points.push(p.quality.code());
        }
        h.update(&points);
    }
    h.update((batch.alarms.len() as u64).to_le_bytes());
    for a in &batch.alarms {
        h.update(a.series_id.to_le_bytes());
        text(&mut h, &a.rule);
        text(&mut h, a.state.as_str());
        h.update([a.severity.map_or(0, |s| s.code())]);
        h.update(a.value.to_bits().to_le_bytes());
        h.update(a.limit.to_bits().to_le_bytes());
        h.update(a.ts_us.to_le_bytes());
        h.update(a.duration_us.map_or([0xff; 9], |d| {
            let mut b = [0; 9];
            b[1..].copy_from_slice(&d.to_le_bytes());
            b
        }));
    }
    h.update((batch.gaps.len() as u64).to_le_bytes());
    for g in &batch.gaps {
        h.update([g.reason.code()]);
        for n in [g.first_us, g.last_us, g.recorded_us] {
            h.update(n.to_le_bytes());
        }
        h.update(g.readings.to_le_bytes());
        h.update(g.batches.to_le_bytes());
    }
    // Only batches with device events (v5, v6) carry them; hashing nothing for the others
    // keeps the digests of older batches as they were.
    if !batch.devices.is_empty() {
        h.update((batch.devices.len() as u64).to_le_bytes());
    }
    for d in &batch.devices {
        text(&mut h, &d.device);
        text(&mut h, &d.source);
        h.update([d.state.code(), d.previous.code()]);
        match &d.reason {
            Some(r) => {
                h.update([
                    r.kind.code(),
                    u8::from(r.code.is_some()),
                    r.code.unwrap_or(0),
                ]);
                text(&mut h, &r.detail);
            }
            None => h.update([0]),
        }
        h.update(d.at_us.to_le_bytes());
        h.update(d.since_us.to_le_bytes());
    }
    let full = h.finalize();
    let mut d = [0; 16];
    d.copy_from_slice(&full[..16]);
    if d == UNKNOWN_DIGEST {
        d[0] = 1;
    }
    d
}

/// Now, in ms since the Unix epoch (the ledger's clock).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Why the ledger could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The SQLite file failed.
    #[error("delivered-batch ledger {}: {source}", path.display())]
    Sqlite {
        /// The ledger file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The PostgreSQL ledger failed or timed out.
    #[error("delivered-batch ledger {target} table {table}: {action}: {message}")]
    Postgres {
        /// `host:port/dbname`, without credentials.
        target: String,
        /// The ledger table.
        table: String,
        /// What was being done.
        action: &'static str,
        /// The server's or driver's message.
        message: String,
    },
    /// A blocking task of the ledger panicked or was cancelled.
    #[error("delivered-batch ledger: background task failed: {0}")]
    Task(String),
}

/// Where the ledger lives and how long it remembers; see
/// [`crate::config::DedupConfig`] for the keys.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// How long a delivered batch is remembered.
    pub window: Duration,
    /// How long a claim holds without being released.
    pub lease: Duration,
    /// Most rows kept; the oldest are deleted beyond it.
    pub max_rows: u64,
}

/// What a [`Ledger::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Rows older than the window.
    pub by_age: u64,
    /// Rows beyond `max_rows`, oldest first.
    pub by_rows: u64,
    /// Claims whose lease had ended.
    pub claims: u64,
    /// Series tables not stored again within [`tables::TABLE_RETENTION`].
    pub tables: u64,
}

/// What the ledger says about a batch about to be delivered.
#[derive(Debug)]
pub enum Claim {
    /// Not delivered before: deliver it, then [`ClaimGuard::record`]; the
    /// guard releases the claim if it is dropped instead. `conflict` when
    /// other content was delivered under the same key.
    New {
        /// Owns the claim.
        guard: ClaimGuard,
        /// Other content was delivered under this key before.
        conflict: bool,
    },
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
    store: Store,
    options: LedgerOptions,
    /// Series tables read or kept lately ([`tables`]).
    tables: tables::TableCache,
}

/// The two stores.
#[derive(Debug)]
enum Store {
    Sqlite(SqliteLedger),
    Postgres(PostgresLedger),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A token no other claim of this or another relay uses: a random base per
/// process plus a counter.
fn new_token() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    static BASE: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let base = *BASE.get_or_init(|| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    });
    base.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed))
}

impl Ledger {
    /// Open (or create) the SQLite ledger at `path`.
    pub fn sqlite(path: &std::path::Path, options: LedgerOptions) -> Result<Ledger, LedgerError> {
        Ok(Ledger::with(
            Store::Sqlite(SqliteLedger::open(path)?),
            options,
        ))
    }

    /// The PostgreSQL ledger in `table` (and `<table>_claims`) of the
    /// server at `url`; it connects at first use and again after a failure.
    pub fn postgres(
        url: &tokio_postgres::Config,
        table: &str,
        timeout: Duration,
        options: LedgerOptions,
    ) -> Ledger {
        Ledger::with(
            Store::Postgres(PostgresLedger::new(url, table, timeout)),
            options,
        )
    }

    fn with(store: Store, options: LedgerOptions) -> Ledger {
        Ledger {
            inner: Arc::new(Inner {
                store,
                options,
                tables: tables::TableCache::default(),
            }),
        }
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn store_name(&self) -> &'static str {
        match &self.inner.store {
            Store::Sqlite(_) => "sqlite",
            Store::Postgres(_) => "postgres",
        }
    }

    fn cutoff_ms(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.inner.options.window.as_millis() as i64)
    }

    fn lease_ms(&self) -> i64 {
        self.inner.options.lease.as_millis() as i64
    }

    /// Claim the batch `key` with content `digest` at `now_ms`, then read
    /// what was delivered under the key within the window. The claim is
    /// owned by a guard from before the first `.await`, so a caller dropped
    /// anywhere in here leaves no claim behind.
    pub async fn claim(
        &self,
        key: BatchKey,
        digest: Digest,
        now_ms: i64,
    ) -> Result<Claim, LedgerError> {
        let mut guard = ClaimGuard {
            ledger: self.clone(),
            key: (key, digest),
            token: new_token(),
            done: false,
        };
        let cutoff = self.cutoff_ms(now_ms);
        let recorded = match &self.inner.store {
            Store::Sqlite(s) => {
                if !s.try_claim(&guard.key, guard.token, now_ms, self.lease_ms()) {
                    guard.done = true;
                    return Ok(Claim::InFlight);
                }
                let ledger = self.clone();
                let key = guard.key.0.clone();
                blocking(move || ledger.as_sqlite().recorded(&key, cutoff)).await?
            }
            Store::Postgres(p) => {
                match p
                    .claim(&guard.key, guard.token, now_ms, self.lease_ms(), cutoff)
                    .await?
                {
                    Some(recorded) => recorded,
                    None => {
                        guard.done = true;
                        return Ok(Claim::InFlight);
                    }
                }
            }
        };
        Ok(match verdict(&recorded, &digest) {
            Verdict::Delivered => Claim::Delivered,
            Verdict::New => Claim::New {
                guard,
                conflict: false,
            },
            Verdict::Conflict => Claim::New {
                guard,
                conflict: true,
            },
        })
    }

    fn as_sqlite(&self) -> &SqliteLedger {
        match &self.inner.store {
            Store::Sqlite(s) => s,
            Store::Postgres(_) => unreachable!("called on the SQLite ledger only"),
        }
    }

    /// Give up the claim `key` if `token` still holds it. Does not wait:
    /// the PostgreSQL release runs as a task (and the lease covers it if
    /// there is no runtime left to run it).
    fn release(&self, key: &ClaimKey, token: u64) {
        match &self.inner.store {
            Store::Sqlite(s) => s.release(key, token),
            Store::Postgres(_) => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return;
                };
                let (ledger, key) = (self.clone(), key.clone());
                runtime.spawn(async move {
                    if let Store::Postgres(p) = &ledger.inner.store {
                        if let Err(error) = p.release(&key, token).await {
                            // The lease ends it in any case.
                            tracing::debug!(%error, seq = key.0.seq, "claim not released; its lease will end it");
                        }
                    }
                });
            }
        }
    }

    /// Forget rows older than the window, then the oldest beyond
    /// `max_rows`, claims whose lease ended by `now_ms`, and series tables
    /// not stored again within [`tables::TABLE_RETENTION`].
    pub async fn prune(&self, now_ms: i64) -> Result<Pruned, LedgerError> {
        let cutoff = self.cutoff_ms(now_ms);
        let max_rows = self.inner.options.max_rows;
        let tables_cutoff = now_ms.saturating_sub(tables::TABLE_RETENTION.as_millis() as i64);
        match &self.inner.store {
            Store::Sqlite(_) => {
                let ledger = self.clone();
                blocking(move || {
                    let sqlite = ledger.as_sqlite();
                    let mut pruned = sqlite.prune(cutoff, max_rows, now_ms)?;
                    pruned.tables = sqlite.prune_series_tables(tables_cutoff)?;
                    Ok(pruned)
                })
                .await
            }
            Store::Postgres(p) => {
                let mut pruned = p.prune(cutoff, max_rows, now_ms).await?;
                pruned.tables = p.prune_series_tables(tables_cutoff).await?;
                Ok(pruned)
            }
        }
    }

    /// Delivered rows remembered now (within the window or not yet pruned).
    pub async fn rows(&self) -> Result<u64, LedgerError> {
        match &self.inner.store {
            Store::Sqlite(_) => {
                let ledger = self.clone();
                blocking(move || ledger.as_sqlite().len()).await
            }
            Store::Postgres(p) => p.len().await,
        }
    }

    /// Whether the ledger can be used now: always for SQLite (the file was
    /// opened at start), a round trip for PostgreSQL.
    pub async fn ready(&self) -> Result<(), LedgerError> {
        match &self.inner.store {
            Store::Sqlite(_) => Ok(()),
            Store::Postgres(p) => p.ready().await,
        }
    }

    /// Claims held now (expired ones included until pruned).
    pub async fn claims_held(&self) -> Result<u64, LedgerError> {
        match &self.inner.store {
            Store::Sqlite(s) => Ok(s.claims_held()),
            Store::Postgres(p) => p.claims_held().await,
        }
    }
}

/// Run `f` on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, LedgerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| LedgerError::Task(e.to_string()))?
}

/// Owns one claim: [`ClaimGuard::record`] turns it into a delivered row;
/// dropping it on any other path releases it.
#[derive(Debug)]
pub struct ClaimGuard {
    ledger: Ledger,
    key: ClaimKey,
    token: u64,
    /// Recorded, or never held: nothing to release.
    done: bool,
}

impl ClaimGuard {
    /// The batch claimed.
    pub fn key(&self) -> &BatchKey {
        &self.key.0
    }

    /// Record the batch as delivered at `now_ms` (committed before this
    /// returns), then release the claim.
    pub async fn record(mut self, now_ms: i64) -> Result<(), LedgerError> {
        let result = match &self.ledger.inner.store {
            Store::Sqlite(_) => {
                let ledger = self.ledger.clone();
                let key = self.key.clone();
                blocking(move || ledger.as_sqlite().record(&key, now_ms)).await
            }
            Store::Postgres(p) => p.record(&self.key, self.token, now_ms).await,
        };
        if result.is_ok() {
            if let Store::Sqlite(s) = &self.ledger.inner.store {
                s.release(&self.key, self.token);
            }
            // PostgreSQL deleted the claim in the recording transaction.
            self.done = true;
        }
        result
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        if !self.done {
            self.ledger.release(&self.key, self.token);
        }
    }
}

#[cfg(test)]
mod tests;
