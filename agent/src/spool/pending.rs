//! Picking batches to send while others are still in flight: the forwarder
//! keeps several uploads going at once and asks for the next ones that are
//! not already on their way, in the order they must go (the priority lane of
//! alarm-only and gap batches first, then reading batches, each oldest
//! first).
//!
//! The open gap batch ([`super::carrier`]) waits: it is handed out only when
//! the other batches do not fill the request, and it is closed (never
//! rewritten again) in the spool before it is handed out. If closing fails,
//! it is not handed out this time.
//!
//! A batch leaves the spool only through [`Spool::remove`] (after its own
//! 2xx) or [`Spool::quarantine`].

use std::collections::HashSet;

use rusqlite::{params, OptionalExtension};

use super::{carrier, Spool, SpoolError, StoredBatch};

impl Spool {
    /// Up to `limit` batches to send next, skipping the sequence numbers in
    /// `in_flight`: the priority lane first, then reading batches, each in
    /// sequence order; the open gap batch only if these do not fill `limit`
    /// (it is closed first, see [`super::carrier`]).
    pub fn next_unsent(
        &self,
        limit: usize,
        in_flight: &HashSet<u64>,
    ) -> Result<Vec<StoredBatch>, SpoolError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The batches in flight are the first ones in send order, unless an
        // alarm batch arrived since; reading `limit + in_flight` rows (and
        // the open gap batch) always leaves `limit` that are not in flight
        // when there are that many.
        let open = carrier::open_seq(&self.conn).map_err(|e| self.err(e))?;
        let rows = (limit + in_flight.len() + 1) as i64;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, readings, alarms, body FROM batches
                 ORDER BY priority DESC, seq LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let batches = stmt
            .query_map(params![rows], stored)
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        let mut next: Vec<StoredBatch> = batches
            .into_iter()
            .filter(|b| !in_flight.contains(&b.seq) && Some(b.seq) != open)
            .take(limit)
            .collect();
        if let Some(open) = open.filter(|s| next.len() < limit && !in_flight.contains(s)) {
            let batch = self
                .conn
                .query_row(
                    "SELECT seq, readings, alarms, body FROM batches WHERE seq = ?1",
                    params![open as i64],
                    stored,
                )
                .optional()
                .map_err(|e| self.err(e))?;
            match carrier::close(&self.conn) {
                // Closed, so it goes first, as the priority lane does.
                Ok(()) => next.splice(0..0, batch).for_each(drop),
                Err(error) => {
                    tracing::debug!(spool = %self.path.display(), %error, "cannot close the open gap batch; it waits");
                }
            }
        }
        Ok(next)
    }
}

/// A `batches` row as [`StoredBatch`].
fn stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredBatch> {
    Ok(StoredBatch {
        seq: r.get::<_, i64>(0)? as u64,
        readings: r.get::<_, i64>(1)? as u64,
        alarms: r.get::<_, i64>(2)? as u64,
        body: r.get(3)?,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use edge_wire::Batch;

    use crate::spool::{Lane, Spool};

    fn batch() -> Batch {
        Batch {
            gateway_id: "gw".into(),
            instance: None,
            seq: 0,
            created_us: 0,
            series: Vec::new(),
            alarms: Vec::new(),
            gaps: Vec::new(),
            devices: Vec::new(),
        }
    }

    #[test]
    fn alarm_lane_first_then_oldest_skipping_those_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Spool::open(&dir.path().join("spool.db")).unwrap();
        for _ in 0..4 {
            s.append(&mut batch(), &[], Lane::Readings).unwrap(); // seq 1..=4
        }
        s.append(&mut batch(), &[], Lane::Alarms).unwrap(); // seq 5
        let seqs = |v: Vec<crate::spool::StoredBatch>| v.iter().map(|b| b.seq).collect::<Vec<_>>();
        assert_eq!(seqs(s.next_unsent(3, &HashSet::new()).unwrap()), [5, 1, 2]);
        let in_flight = HashSet::from([5, 2]);
        assert_eq!(seqs(s.next_unsent(2, &in_flight).unwrap()), [1, 3]);
        assert_eq!(seqs(s.next_unsent(10, &in_flight).unwrap()), [1, 3, 4]);
        assert!(s.next_unsent(0, &in_flight).unwrap().is_empty());
    }
}
