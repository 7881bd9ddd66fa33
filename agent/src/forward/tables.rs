//! Series-table references on the uplink: once the relay has said it holds
//! a batch's series table (a 200 with `"series_table": "<id>"`), the next
//! batches with the same table go in the referenced form (format v9 for a
//! v8 batch, v7 for a v6 one spooled before an upgrade,
//! [`edge_wire::codec::reference`]), without the table: names, units and
//! tags are not paid for in every batch.
//!
//! - The spool keeps every batch self-contained (v8); only the bytes on
//!   the wire are shortened, at send time.
//! - The relay may not hold a table it held before (another relay of the
//!   fleet behind a load balancer, a relay whose store was reset, a table
//!   it pruned): it answers 409 `unknown_series_table`, the agent forgets
//!   that the relay holds the table and sends the same batch again at once
//!   with its table inline, which teaches the relay the table again. So a
//!   reference costs at most one extra round trip, never a batch.
//! - A gateway whose series change (a point added, a tag edited, a restart
//!   with another config) has a new table id, which the relay has not
//!   confirmed: that batch goes inline, and the references start again
//!   from its answer.
//! - A relay that never says it holds a table (one older than this
//!   feature) never gets a referenced batch.
//! - What the agent knows is in memory only, at most [`KNOWN_TABLES`] ids
//!   (the oldest forgotten first): after a restart the first batch goes
//!   inline.
//!
//! Older relays that do not read v8 ([`super::compat`]) get the legacy
//! format as before; legacy batches never refer to a table, and an answer
//! to one teaches the agent nothing about tables.

use std::collections::VecDeque;
use std::sync::Mutex;

use edge_wire::codec::reference::{shorten, TableId};
use edge_wire::Limits;
use tokio::time::Instant;
use tracing::debug;

use super::compat::{self, RelayFormats};
use super::upload::{Outcome, Uploader};

/// Most table ids remembered as held by the relay.
pub const KNOWN_TABLES: usize = 64;

/// The series tables the relay said it holds. Shared by the uploads in
/// flight.
#[derive(Debug, Default)]
pub struct RelayTables {
    known: Mutex<VecDeque<TableId>>,
}

impl RelayTables {
    /// Whether the relay said it holds table `id`.
    pub fn holds(&self, id: &TableId) -> bool {
        self.lock().contains(id)
    }

    /// The relay said it holds table `id`.
    pub fn learned(&self, id: TableId) {
        let mut known = self.lock();
        if !known.contains(&id) {
            if known.len() >= KNOWN_TABLES {
                known.pop_front();
            }
            known.push_back(id);
        }
    }

    /// The relay does not hold table `id` (any more).
    pub fn forget(&self, id: &TableId) {
        self.lock().retain(|k| k != id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<TableId>> {
        self.known.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How one batch went out, for the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Form {
    /// Sent in an older format ([`super::compat`]).
    pub legacy: bool,
    /// Delivered with a reference to its series table.
    pub referenced: bool,
    /// A reference was refused (the relay did not hold the table) and the
    /// batch went again with its table.
    pub table_resent: bool,
}

/// Upload `body` (a spooled batch): with a reference to its series table
/// when the relay holds it, else self-contained (in an older format for an
/// older relay, [`compat::send`]). Never returns [`Outcome::UnknownTable`]
/// or [`Outcome::TooNew`].
pub async fn send(
    uploader: &Uploader,
    formats: &RelayFormats,
    tables: &RelayTables,
    body: Vec<u8>,
) -> (Outcome, Form) {
    let mut form = Form::default();
    // A body before v6 (an older spool's batch) has no table to name.
    let split = (!formats.prefer_legacy(Instant::now()))
        .then(|| shorten(&body, &Limits::default()).ok())
        .flatten();
    if let Some((table, short)) = &split {
        if tables.holds(&table.id) {
            match uploader.send(short.clone()).await {
                Outcome::UnknownTable(reason) => {
                    debug!(%reason, "the relay does not hold this batch's series table; sending it with the table");
                    tables.forget(&table.id);
                    form.table_resent = true;
                }
                // A relay of the fleet that does not read this referenced
                // version (one that was downgraded): self-contained below,
                // where compat handles one that does not read v8 either.
                Outcome::TooNew(_) => tables.forget(&table.id),
                outcome => {
                    form.referenced = matches!(outcome, Outcome::Delivered { .. });
                    return (outcome, form);
                }
            }
        }
    }
    let (outcome, legacy) = compat::send(uploader, formats, body).await;
    form.legacy = legacy;
    let outcome = match outcome {
        Outcome::Delivered {
            duplicate,
            conflict,
            series_table,
        } => {
            // Only from an answer to the newest format: a relay that took
            // the batch in an older one (it reads v6 and v7 but not v8)
            // would refuse the v9 a reference to it becomes.
            if let (Some(said), Some((table, _)), false) = (series_table, &split, legacy) {
                if said == table.id {
                    tables.learned(said);
                }
            }
            Outcome::Delivered {
                duplicate,
                conflict,
                series_table,
            }
        }
        // Only a referenced batch can get this; a relay that says it of a
        // self-contained one is broken: try again later.
        Outcome::UnknownTable(reason) => Outcome::Retry {
            reason,
            after: None,
        },
        outcome => outcome,
    };
    (outcome, form)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> TableId {
        [n; 16]
    }

    #[test]
    fn known_tables_are_bounded_oldest_first_and_forgotten_on_demand() {
        let t = RelayTables::default();
        assert!(!t.holds(&id(1)));
        t.learned(id(1));
        t.learned(id(1));
        assert!(t.holds(&id(1)));
        for n in 2..=KNOWN_TABLES as u8 {
            t.learned(id(n));
        }
        assert!(t.holds(&id(1)), "64 fit");
        t.learned(id(200));
        assert!(!t.holds(&id(1)), "the oldest goes first");
        assert!(t.holds(&id(2)) && t.holds(&id(200)));
        t.forget(&id(2));
        assert!(!t.holds(&id(2)));
        assert!(t.holds(&id(3)));
    }
}
