//! The gap batch that carries gap records to the relay, and the merge that
//! makes one outage one gap event where it can.
//!
//! Every drop pass of the bounds ([`super::bounds`]), every refused batch
//! and every device drop records a gap ([`Gap`]) and, in the same
//! transaction, hands it to `carry`: into the *open* gap batch if there is
//! one, else into a new gap batch in the priority lane, which becomes the
//! open one (`meta.open_gap_batch` holds its seq). The records of the open
//! batch are merged with [`merge`], a pure function: consecutive records (in
//! the order recorded) with the same reason become one (`first_us` the
//! smallest, `last_us` the largest, `readings` and `batches` summed,
//! `recorded_us` the latest), unless a kept reading would fall inside the
//! merged interval. So an outage during which the age bound drops a run of
//! batches every tenth of `max_age` reaches the relay as one gap event,
//! not one per run.
//!
//! Guarantees:
//! - no count is lost or doubled: the merged records sum exactly the
//!   records merged, and the rewrite of the open batch is committed in the
//!   transaction that dropped the batches (crash-safe with them);
//! - the relay never sees two contents for one seq: only a gap batch never
//!   handed to the forwarder is rewritten. The open batch is closed (it is
//!   never rewritten again) durably *before* it is handed out
//!   ([`Spool::next_unsent`]), and when any batch is removed after a 2xx or
//!   quarantined (`close`), since readings delivered after a record may
//!   lie between it and the next;
//! - a merged record spans no reading that was kept: two records merge only
//!   if no reading batch still in the spool (nor the batch committed with
//!   the new records) has its interval inside the merged one, and none was
//!   delivered since the open batch was opened (that closes it). Batches
//!   the bounds keep because they are in the priority lane (alarm, device
//!   and gap batches) hold no readings, so they never split a run. As for a
//!   single record, the check assumes readings' timestamps follow the batch
//!   order; where sources' clocks interleave, a batch interval that overlaps
//!   stops the merge (the records stay apart).
//!
//! While open, the gap batch waits behind the reading batches: the forwarder
//! gets it only once fewer batches are left than it asks for, or after a
//! first delivery closed it, so that an outage keeps merging into it while
//! the forwarder retries. It then goes first, ahead of the reading backlog.
//! The `gaps` table and [`Spool::take_gaps`] keep one row per drop pass (the
//! local history and the counters); only what travels is merged.

use std::num::NonZeroU64;
use std::path::Path;

use edge_wire::Batch;
use rusqlite::{params, Connection, OptionalExtension};

use super::{checksum, sqlite_error, Gap, Spool, SpoolError};

/// The `meta` key holding the seq of the open gap batch.
const OPEN_KEY: &str = "open_gap_batch";

/// An open gap batch holds at most this many records (after merging); a
/// record that would make more starts a new gap batch. Well under the wire
/// limit (`max_gaps`).
pub const MAX_RECORDS: usize = 256;

/// Merge consecutive `records` (in the order they were recorded) into one
/// where they have the same reason and no interval of `kept` (readings kept:
/// still spooled, or committed with the records) meets the interval the
/// merged record would span. The merged record: `first_us` the smallest,
/// `last_us` the largest, `readings` and `batches` summed, `recorded_us`
/// the latest. Records of another reason, or split by a kept reading, stay
/// as they are, in order.
pub fn merge(records: &[edge_wire::Gap], kept: &[(i64, i64)]) -> Vec<edge_wire::Gap> {
    let mut out: Vec<edge_wire::Gap> = Vec::with_capacity(records.len());
    for r in records {
        if let Some(last) = out.last_mut() {
            let lo = last.first_us.min(r.first_us);
            let hi = last.last_us.max(r.last_us);
            let split = kept.iter().any(|&(a, b)| a <= hi && b >= lo);
            if last.reason == r.reason && !split {
                *last = edge_wire::Gap {
                    reason: r.reason,
                    first_us: lo,
                    last_us: hi,
                    readings: last.readings.saturating_add(r.readings),
                    batches: last.batches.saturating_add(r.batches),
                    recorded_us: last.recorded_us.max(r.recorded_us),
                };
                continue;
            }
        }
        out.push(*r);
    }
    out
}

/// Hand `gaps`, recorded at `now_us` in the transaction of `tx`, to the
/// relay: merged into the open gap batch if there is one and it has room,
/// else in a new gap batch of `gateway_id` and `instance` that takes `seq`
/// and becomes the open one. `incoming`: the interval of the reading batch
/// committed in the same transaction, which is kept. True when `seq` was
/// taken (the caller's batch takes the next one).
#[allow(clippy::too_many_arguments)]
pub(super) fn carry(
    tx: &Connection,
    path: &Path,
    gateway_id: &str,
    instance: Option<NonZeroU64>,
    seq: u64,
    now_us: i64,
    gaps: &[Gap],
    incoming: Option<(i64, i64)>,
) -> Result<bool, SpoolError> {
    let e = |e| sqlite_error(path, e);
    let new: Vec<edge_wire::Gap> = gaps.iter().map(|g| g.to_wire(now_us)).collect();
    if let Some((open_seq, mut open)) = open_batch(tx).map_err(e)? {
        let mut records = std::mem::take(&mut open.gaps);
        records.extend_from_slice(&new);
        let merged = merge(&records, &kept(tx, &records, incoming).map_err(e)?);
        if merged.len() <= MAX_RECORDS {
            open.gaps = merged;
            let body = edge_wire::encode(&open)?;
            tx.execute(
                "UPDATE batches SET body = ?2, checksum = ?3 WHERE seq = ?1",
                params![open_seq, body, checksum(&body)],
            )
            .map_err(e)?;
            return Ok(false);
        }
    }
    let carrier = Batch {
        gateway_id: gateway_id.to_owned(),
        instance,
        seq,
        created_us: now_us,
        series: Vec::new(),
        alarms: Vec::new(),
        gaps: merge(&new, &kept(tx, &new, incoming).map_err(e)?),
        devices: Vec::new(),
    };
    let body = edge_wire::encode(&carrier)?;
    tx.execute(
        "INSERT INTO batches (seq, created_us, readings, alarms, body, priority,
                              checksum, first_us, last_us)
         VALUES (?1, ?2, 0, 0, ?3, 1, ?4, ?2, ?2)",
        params![seq as i64, now_us, body, checksum(&body)],
    )
    .and_then(|_| {
        tx.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            params![OPEN_KEY, seq as i64],
        )
    })
    .map_err(e)?;
    Ok(true)
}

/// Close the open gap batch, if any: it is never rewritten again. Called
/// before it is handed out and before any batch is removed or quarantined.
pub(super) fn close(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute("DELETE FROM meta WHERE key = ?1", params![OPEN_KEY])
        .map(|_| ())
}

/// The seq of the open gap batch, if one is open.
pub(super) fn open_seq(conn: &Connection) -> rusqlite::Result<Option<u64>> {
    conn.query_row(
        "SELECT value FROM meta WHERE key = ?1",
        params![OPEN_KEY],
        |r| r.get::<_, i64>(0),
    )
    .optional()
    .map(|s| s.map(|s| s as u64))
}

/// The open gap batch, decoded: `None` if none is open, or if its row is
/// gone (dropped by a bound, quarantined at start-up) or does not decode,
/// in which case it is closed and a new one is started.
fn open_batch(conn: &Connection) -> rusqlite::Result<Option<(i64, Batch)>> {
    let Some(seq) = open_seq(conn)? else {
        return Ok(None);
    };
    let seq = seq as i64;
    let body: Option<Vec<u8>> = conn
        .query_row(
            "SELECT body FROM batches WHERE seq = ?1 AND priority = 1 AND readings = 0",
            params![seq],
            |r| r.get(0),
        )
        .optional()?;
    let decoded = body.and_then(|b| edge_wire::decode(&b, &edge_wire::Limits::default()).ok());
    match decoded {
        Some(batch) => Ok(Some((seq, batch))),
        None => {
            close(conn)?;
            Ok(None)
        }
    }
}

/// The intervals of the readings kept that meet the span of `records`: the
/// reading batches in the spool, and `incoming`.
fn kept(
    conn: &Connection,
    records: &[edge_wire::Gap],
    incoming: Option<(i64, i64)>,
) -> rusqlite::Result<Vec<(i64, i64)>> {
    let lo = records.iter().map(|g| g.first_us).min().unwrap_or(i64::MAX);
    let hi = records.iter().map(|g| g.last_us).max().unwrap_or(i64::MIN);
    let mut stmt = conn.prepare_cached(
        "SELECT COALESCE(first_us, created_us), COALESCE(last_us, created_us) FROM batches
         WHERE readings > 0 AND COALESCE(last_us, created_us) >= ?1
           AND COALESCE(first_us, created_us) <= ?2",
    )?;
    let mut kept = stmt
        .query_map(params![lo, hi], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<Vec<(i64, i64)>>>()?;
    kept.extend(incoming);
    Ok(kept)
}

impl Spool {
    /// Close the open gap batch (before a batch is removed: readings
    /// delivered now may lie between its records and the next).
    pub(super) fn close_gap_batch(&self) -> Result<(), SpoolError> {
        close(&self.conn).map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use edge_wire::{Gap, GapReason};

    use super::merge;

    fn gap(reason: GapReason, first_us: i64, last_us: i64, readings: u64) -> Gap {
        Gap {
            reason,
            first_us,
            last_us,
            readings,
            batches: 1,
            recorded_us: last_us + 1000,
        }
    }

    const AGE: GapReason = GapReason::MaxAge;
    const FULL: GapReason = GapReason::SpoolFull;

    #[test]
    fn merge_table() {
        let merged = |first_us, last_us, readings, batches, recorded_us| Gap {
            reason: AGE,
            first_us,
            last_us,
            readings,
            batches,
            recorded_us,
        };
        #[allow(clippy::type_complexity)]
        let cases: &[(&str, Vec<Gap>, Vec<(i64, i64)>, Vec<Gap>)] = &[
            ("nothing", vec![], vec![], vec![]),
            (
                "one record stays as it is",
                vec![gap(AGE, 0, 9, 10)],
                vec![(20, 29)],
                vec![gap(AGE, 0, 9, 10)],
            ),
            (
                "adjacent, same reason: one record, counts summed, latest recorded_us",
                vec![
                    gap(AGE, 0, 9, 10),
                    gap(AGE, 10, 19, 10),
                    gap(AGE, 20, 29, 5),
                ],
                vec![(30, 39)],
                vec![merged(0, 29, 25, 3, 1029)],
            ),
            (
                "time between them with no kept reading: merged across it",
                vec![gap(AGE, 0, 9, 10), gap(AGE, 100, 109, 10)],
                vec![(200, 209)],
                vec![merged(0, 109, 20, 2, 1109)],
            ),
            (
                "different reasons are not merged",
                vec![gap(AGE, 0, 9, 10), gap(FULL, 10, 19, 10)],
                vec![],
                vec![gap(AGE, 0, 9, 10), gap(FULL, 10, 19, 10)],
            ),
            (
                "a record of another reason between two of one: nothing merges",
                vec![gap(AGE, 0, 9, 1), gap(FULL, 10, 19, 1), gap(AGE, 20, 29, 1)],
                vec![],
                vec![gap(AGE, 0, 9, 1), gap(FULL, 10, 19, 1), gap(AGE, 20, 29, 1)],
            ),
            (
                "a kept batch between them splits",
                vec![gap(AGE, 0, 9, 10), gap(AGE, 20, 29, 10)],
                vec![(10, 19)],
                vec![gap(AGE, 0, 9, 10), gap(AGE, 20, 29, 10)],
            ),
            (
                "a kept batch touching the span's edge splits",
                vec![gap(AGE, 0, 9, 10), gap(AGE, 20, 29, 10)],
                vec![(29, 40)],
                vec![gap(AGE, 0, 9, 10), gap(AGE, 20, 29, 10)],
            ),
            (
                "split once, the runs on each side still merge",
                vec![
                    gap(AGE, 0, 9, 1),
                    gap(AGE, 10, 19, 1),
                    gap(AGE, 30, 39, 1),
                    gap(AGE, 40, 49, 1),
                ],
                vec![(20, 29)],
                vec![merged(0, 19, 2, 2, 1019), merged(30, 49, 2, 2, 1049)],
            ),
            (
                "out of time order: the span covers both",
                vec![gap(AGE, 50, 59, 1), gap(AGE, 0, 9, 1)],
                vec![(60, 70)],
                vec![merged(0, 59, 2, 2, 1059)],
            ),
        ];
        for (name, records, kept, want) in cases {
            let got = merge(records, kept);
            assert_eq!(&got, want, "{name}");
            let sum = |v: &[Gap]| {
                (
                    v.iter().map(|g| g.readings).sum::<u64>(),
                    v.iter().map(|g| g.batches).sum::<u64>(),
                )
            };
            assert_eq!(sum(&got), sum(records), "{name}: counts kept");
            for g in &got {
                assert!(
                    !kept.iter().any(|&(a, b)| a <= g.last_us && b >= g.first_us)
                        || records.contains(g),
                    "{name}: a merged record spans a kept reading"
                );
            }
        }
    }
}
