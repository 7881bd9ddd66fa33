//! Bounds of the spool: a largest size on disk (`max_bytes`, database plus
//! WAL), an optional largest age (`max_age_s`), and what happens when a
//! batch does not fit (`on_full`).
//!
//! Every removal here is recorded as a [`Gap`] (which interval, how many
//! readings and batches, why) in the `gaps` table and counted per reason in
//! `meta`, in the transaction that makes room for the new batch: a batch
//! leaves the spool either acknowledged by the relay or as part of a gap,
//! never silently.
//!
//! Order of removal: the oldest reading batches first; alarm batches (the
//! priority lane) only once no reading batch is left. The age bound
//! applies to reading batches only. Both bounds drop in runs (the size bound
//! down to nine tenths of `max_bytes`; the age bound once the oldest batch is
//! `max_age` plus a tenth), so a long outage yields one gap row per run, not
//! one per batch.
//!
//! The spool hands the gaps recorded here to the gap batch (see
//! [`Gap::to_wire`] and [`super::carrier`]) in the same transaction, so the
//! relay learns which interval is missing; runs of one outage are merged
//! there into one record where no kept reading lies between them. The `gaps`
//! table keeps one row per run, the history for `edge-agent spool stats` and
//! the counters.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::room::Bound;
use super::SpoolOptions;

/// What to do with a batch that does not fit under `max_bytes`
/// (`[spool] on_full`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnFull {
    /// Drop the oldest reading batches (then alarm batches) to make room,
    /// recording a gap.
    #[default]
    DropOldest,
    /// Refuse the batch with [`super::SpoolError::Full`]; the commit path
    /// waits and the sources slow down behind the bounded channel.
    Block,
}

/// Why batches were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// `max_bytes` or the disk was full.
    Full,
    /// Older than `max_age_s`.
    Age,
    /// Dropped by a device before the agent got them (a microcontroller's
    /// sample ring was full).
    Device,
}

impl DropReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::Full => "full",
            DropReason::Age => "age",
            DropReason::Device => "device",
        }
    }
}

/// An interval of readings dropped from the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub reason: DropReason,
    /// Timestamp of the first dropped reading, µs since the epoch.
    pub first_us: i64,
    /// Timestamp of the last dropped reading.
    pub last_us: i64,
    pub readings: u64,
    pub batches: u64,
}

impl Gap {
    /// The record that travels to the relay in a gap batch.
    pub fn to_wire(&self, recorded_us: i64) -> edge_wire::Gap {
        edge_wire::Gap {
            reason: match self.reason {
                DropReason::Full => edge_wire::GapReason::SpoolFull,
                DropReason::Age => edge_wire::GapReason::MaxAge,
                DropReason::Device => edge_wire::GapReason::DeviceDropped,
            },
            first_us: self.first_us,
            last_us: self.last_us,
            readings: self.readings,
            batches: self.batches,
            recorded_us,
        }
    }
}

/// Bytes on disk: used database pages plus the WAL file.
pub(super) fn used_bytes(conn: &Connection, path: &Path) -> rusqlite::Result<u64> {
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal = std::fs::metadata(wal).map(|m| m.len()).unwrap_or(0);
    Ok(((pages - free).max(0) * size) as u64 + wal)
}

/// Make room for a batch of `incoming` bytes inside the caller's
/// transaction, under `bound` (the tighter of `max_bytes` and the disk, see
/// [`super::room::bound`]). `disk_full`: the last insert failed with
/// SQLITE_FULL, drop about a tenth of the batches whatever the bound says.
/// False when the batch does not fit and the policy is `block`.
#[allow(clippy::too_many_arguments)]
pub(super) fn make_room(
    conn: &Connection,
    path: &Path,
    options: &SpoolOptions,
    bound: Option<Bound>,
    now_us: i64,
    incoming: u64,
    disk_full: bool,
    gaps: &mut Vec<Gap>,
) -> rusqlite::Result<bool> {
    if let Some(age) = options.max_age {
        // In runs, like the size bound: only once the oldest reading batch is
        // a tenth of `max_age` past the bound does everything past the bound
        // go. A long outage then drops (and reports) one gap per tenth of
        // `max_age`, not one per appended batch.
        let age_us = age.as_micros() as i64;
        let cutoff = now_us.saturating_sub(age_us);
        let trigger = cutoff.saturating_sub(age_us / 10);
        let overdue: bool = conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM batches WHERE priority = 0 AND created_us < ?1)",
            params![trigger],
            |r| r.get(0),
        )?;
        let cutoff = if overdue { cutoff } else { i64::MIN };
        let mut gap = None;
        while let Some(seq) = conn
            .query_row(
                "SELECT seq FROM batches WHERE priority = 0 AND created_us < ?1
                 ORDER BY seq LIMIT 1",
                params![cutoff],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
        {
            drop_batch(conn, seq, DropReason::Age, &mut gap)?;
        }
        record(conn, gap, now_us, gaps)?;
    }
    if disk_full {
        let total: i64 = conn.query_row("SELECT COUNT(*) FROM batches", [], |r| r.get(0))?;
        let mut gap = None;
        for _ in 0..(total / 10).max(1) {
            match oldest(conn)? {
                Some(seq) => drop_batch(conn, seq, DropReason::Full, &mut gap)?,
                None => break,
            }
        }
        record(conn, gap, now_us, gaps)?;
        return Ok(true);
    }
    let Some(max) = bound.map(|b| b.bytes) else {
        return Ok(true);
    };
    if used_bytes(conn, path)? + incoming <= max {
        return Ok(true);
    }
    if options.on_full == OnFull::Block {
        return Ok(false);
    }
    // Down to nine tenths, so that a full spool drops a run of batches now
    // and then rather than one with every append.
    let target = max - max / 10;
    let mut gap = None;
    while used_bytes(conn, path)? + incoming > target {
        match oldest(conn)? {
            Some(seq) => drop_batch(conn, seq, DropReason::Full, &mut gap)?,
            None => break,
        }
    }
    record(conn, gap, now_us, gaps)?;
    Ok(true)
}

/// The next batch to give up: the oldest reading batch, else the oldest
/// alarm batch.
fn oldest(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row(
        "SELECT seq FROM batches ORDER BY priority, seq LIMIT 1",
        [],
        |r| r.get(0),
    )
    .optional()
}

fn drop_batch(
    conn: &Connection,
    seq: i64,
    reason: DropReason,
    gap: &mut Option<Gap>,
) -> rusqlite::Result<()> {
    let (first, last, readings): (i64, i64, i64) = conn.query_row(
        "SELECT COALESCE(first_us, created_us), COALESCE(last_us, created_us), readings
         FROM batches WHERE seq = ?1",
        params![seq],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    conn.execute("DELETE FROM batches WHERE seq = ?1", params![seq])?;
    let g = gap.get_or_insert(Gap {
        reason,
        first_us: first,
        last_us: last,
        readings: 0,
        batches: 0,
    });
    g.first_us = g.first_us.min(first);
    g.last_us = g.last_us.max(last);
    g.readings += readings as u64;
    g.batches += 1;
    Ok(())
}

/// Store `gap` (if any batch was dropped) and add it to the per-reason
/// totals.
pub(super) fn record(
    conn: &Connection,
    gap: Option<Gap>,
    now_us: i64,
    gaps: &mut Vec<Gap>,
) -> rusqlite::Result<()> {
    let Some(g) = gap else {
        return Ok(());
    };
    conn.execute(
        "INSERT INTO gaps (recorded_us, reason, first_us, last_us, readings, batches)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            now_us,
            g.reason.as_str(),
            g.first_us,
            g.last_us,
            g.readings as i64,
            g.batches as i64
        ],
    )?;
    for (what, n) in [("readings", g.readings), ("batches", g.batches)] {
        conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
            params![format!("dropped_{what}_{}", g.reason.as_str()), n as i64],
        )?;
    }
    gaps.push(g);
    Ok(())
}

#[cfg(test)]
#[path = "bounds_tests.rs"]
mod tests;
