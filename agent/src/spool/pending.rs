//! Picking batches to send while others are still in flight: the forwarder
//! keeps several uploads going at once and asks for the next ones that are
//! not already on their way, in the order they must go (the priority lane of
//! alarm-only batches first, then reading batches, each oldest first).
//!
//! Read-only: a batch leaves the spool only through [`Spool::remove`] (after
//! its own 2xx) or [`Spool::quarantine`].

use std::collections::HashSet;

use rusqlite::params;

use super::{Spool, SpoolError, StoredBatch};

impl Spool {
    /// Up to `limit` batches to send next, skipping the sequence numbers in
    /// `in_flight`: the priority lane first, then reading batches, each in
    /// sequence order.
    pub fn next_unsent(
        &self,
        limit: usize,
        in_flight: &HashSet<u64>,
    ) -> Result<Vec<StoredBatch>, SpoolError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        // The batches in flight are the first ones in send order, unless an
        // alarm batch arrived since; reading `limit + in_flight` rows always
        // leaves `limit` that are not in flight when there are that many.
        let rows = (limit + in_flight.len()) as i64;
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT seq, readings, alarms, body FROM batches
                 ORDER BY priority DESC, seq LIMIT ?1",
            )
            .map_err(|e| self.err(e))?;
        let batches = stmt
            .query_map(params![rows], |r| {
                Ok(StoredBatch {
                    seq: r.get::<_, i64>(0)? as u64,
                    readings: r.get::<_, i64>(1)? as u64,
                    alarms: r.get::<_, i64>(2)? as u64,
                    body: r.get(3)?,
                })
            })
            .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err(e))?;
        Ok(batches
            .into_iter()
            .filter(|b| !in_flight.contains(&b.seq))
            .take(limit)
            .collect())
    }
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
