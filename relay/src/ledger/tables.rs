//! Series tables the relay holds for its gateways, so a gateway can send a
//! batch that names its series table by content id instead of carrying it
//! (format v7 or v9, `edge_wire::codec::reference`).
//!
//! The relay keeps the table of every self-contained (v6, v8) batch it
//! delivers, in the ledger's store (the SQLite file, or PostgreSQL shared
//! by the fleet) and in a bounded memory cache in front of it, *before* it
//! answers 200 with `"series_table": "<id>"`; only then does the agent send
//! references to it. A referenced batch whose table the relay does not hold
//! (another relay of a fleet on SQLite, a table pruned, a store that lost
//! it) is answered 409 with the reason `unknown_series_table`, and the
//! agent sends the same batch again with its table inline.
//!
//! Guarantees and limits:
//! - tables are content-addressed: the id is the SHA-256 of the bytes, so
//!   an entry is never stale, only absent, and a table read back from the
//!   store is used only if it still hashes to its id (else it counts as
//!   absent: a corrupted row costs one resend, never a refused batch);
//! - per gateway at most [`TABLES_PER_GATEWAY`] tables are kept (the most
//!   recently stored); a table is forgotten [`TABLE_RETENTION`] after it
//!   was last stored (the gateway then sends it once more); a table over
//!   [`MAX_TABLE_BYTES`] is not kept (its gateway keeps sending it inline);
//! - the memory cache holds at most [`CACHE_ENTRIES`] tables and starts
//!   empty again when full;
//! - a failure to keep a table does not fail the batch (it is delivered);
//!   the answer then names no table, so the agent keeps sending it inline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_wire::codec::reference::{table_id, SeriesTable, TableId};

use super::{blocking, lock, Ledger, LedgerError, Store};

/// Most tables kept per gateway in the store.
pub const TABLES_PER_GATEWAY: i64 = 64;
/// How long a table is kept after it was last stored.
pub const TABLE_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Largest table kept (1 MiB: about 10,000 series with names, units and
/// tags): the largest the decoder hands out.
pub const MAX_TABLE_BYTES: usize = edge_wire::codec::reference::MAX_TABLE_BYTES;
/// Most tables held in memory.
pub const CACHE_ENTRIES: usize = 4096;

/// What [`Ledger::keep_series_table`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// Written to the store now.
    Written,
    /// Held already (kept or read by this relay lately): not written again.
    Held,
    /// Over [`MAX_TABLE_BYTES`]: not kept.
    TooLarge,
}

/// Tables by (gateway, id).
type Tables = HashMap<(String, TableId), Arc<[u8]>>;

/// The memory cache in front of the store.
#[derive(Debug, Default)]
pub(super) struct TableCache {
    tables: Mutex<Tables>,
}

impl TableCache {
    fn get(&self, gateway: &str, id: &TableId) -> Option<Arc<[u8]>> {
        lock(&self.tables).get(&(gateway.to_owned(), *id)).cloned()
    }

    fn put(&self, gateway: &str, id: TableId, bytes: Arc<[u8]>) {
        let mut tables = lock(&self.tables);
        if tables.len() >= CACHE_ENTRIES {
            tables.clear();
        }
        tables.insert((gateway.to_owned(), id), bytes);
    }
}

/// Whether a table read back is the one asked for.
fn intact(id: &TableId, bytes: &[u8]) -> bool {
    table_id(bytes) == *id
}

impl Ledger {
    /// The bytes of series table `id` of `gateway`, if the relay holds it.
    pub async fn series_table(
        &self,
        gateway: &str,
        id: &TableId,
    ) -> Result<Option<Arc<[u8]>>, LedgerError> {
        if let Some(bytes) = self.inner.tables.get(gateway, id) {
            return Ok(Some(bytes));
        }
        let found = match &self.inner.store {
            Store::Sqlite(_) => {
                let (ledger, gateway, id) = (self.clone(), gateway.to_owned(), *id);
                blocking(move || ledger.as_sqlite().series_table(&gateway, &id)).await?
            }
            Store::Postgres(p) => p.series_table(gateway, id).await?,
        };
        let Some(bytes) = found else { return Ok(None) };
        if !intact(id, &bytes) {
            tracing::warn!(gateway = ?gateway, id = %edge_wire::codec::reference::hex(id), "stored series table does not hash to its id; treated as unknown");
            return Ok(None);
        }
        let bytes: Arc<[u8]> = bytes.into();
        self.inner.tables.put(gateway, *id, bytes.clone());
        Ok(Some(bytes))
    }

    /// Keep `table` for `gateway`: committed to the store when this
    /// returns [`Kept::Written`]. A table this relay kept or read lately is
    /// not written again ([`Kept::Held`]).
    pub async fn keep_series_table(
        &self,
        gateway: &str,
        table: &SeriesTable,
        now_ms: i64,
    ) -> Result<Kept, LedgerError> {
        if table.bytes.len() > MAX_TABLE_BYTES {
            return Ok(Kept::TooLarge);
        }
        if self.inner.tables.get(gateway, &table.id).is_some() {
            return Ok(Kept::Held);
        }
        let bytes: Arc<[u8]> = table.bytes.clone().into();
        match &self.inner.store {
            Store::Sqlite(_) => {
                let (ledger, gateway, id, bytes) =
                    (self.clone(), gateway.to_owned(), table.id, bytes.clone());
                blocking(move || {
                    ledger
                        .as_sqlite()
                        .keep_series_table(&gateway, &id, &bytes, now_ms)
                })
                .await?
            }
            Store::Postgres(p) => {
                p.keep_series_table(gateway, &table.id, &bytes, now_ms)
                    .await?
            }
        }
        self.inner.tables.put(gateway, table.id, bytes);
        Ok(Kept::Written)
    }

    /// Series tables in the store now.
    pub async fn series_tables(&self) -> Result<u64, LedgerError> {
        match &self.inner.store {
            Store::Sqlite(_) => {
                let ledger = self.clone();
                blocking(move || ledger.as_sqlite().series_tables()).await
            }
            Store::Postgres(p) => p.series_tables().await,
        }
    }
}
