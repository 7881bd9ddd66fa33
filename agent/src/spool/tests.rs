//! Tests of the spool: sequence numbers across reopen, quarantine, the
//! priority lane, and migration of spools from before it.

use super::*;
use edge_wire::{Point, Quality, Series};

pub(super) fn batch(n: usize) -> Batch {
    Batch {
        gateway_id: "gw".into(),
        seq: 0,
        created_us: 1,
        series: vec![Series {
            id: 0,
            name: "s".into(),
            unit: String::new(),
            tags: Default::default(),
            points: (0..n)
                .map(|i| Point {
                    ts_us: i as i64,
                    value: i as f64,
                    quality: Quality::Good,
                })
                .collect(),
        }],
        alarms: vec![],
    }
}

#[test]
fn sequence_grows_across_reopen_and_bytes_are_the_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    let mut s = Spool::open(&path).unwrap();
    let mut b1 = batch(3);
    assert_eq!(s.append(&mut b1).unwrap(), 1);
    assert_eq!(s.append(&mut batch(2)).unwrap(), 2);
    s.remove(1).unwrap();
    s.remove(2).unwrap();
    drop(s);
    let mut s = Spool::open(&path).unwrap();
    assert_eq!(s.append(&mut batch(1)).unwrap(), 3, "seq must not restart");
    let oldest = s.oldest().unwrap().unwrap();
    assert_eq!(oldest.seq, 3);
    let decoded = edge_wire::decode(&oldest.body, &Default::default()).unwrap();
    assert_eq!(decoded.seq, 3);
    assert_eq!(decoded.reading_count(), 1);
}

#[test]
fn oldest_first_and_quarantine_moves_out_of_queue() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&dir.path().join("spool.db")).unwrap();
    for n in [1, 2, 3] {
        s.append(&mut batch(n)).unwrap();
    }
    assert_eq!(
        s.stats().unwrap(),
        SpoolStats {
            batches: 3,
            readings: 6,
            bytes: s.stats().unwrap().bytes,
            quarantined: 0
        }
    );
    s.quarantine(1, "400 invalid", 5).unwrap();
    assert_eq!(s.oldest().unwrap().unwrap().seq, 2);
    let st = s.stats().unwrap();
    assert_eq!((st.batches, st.readings, st.quarantined), (2, 5, 1));
}

/// Guards the priority lane: alarm-only batches leave before older
/// reading batches, in their own order, and seqs still grow strictly.
#[test]
fn alarm_lane_is_drained_before_the_reading_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&dir.path().join("spool.db")).unwrap();
    for n in [1, 2, 3] {
        s.append(&mut batch(n)).unwrap();
    }
    let a1 = s.append_alarms(&mut batch(0), &[]).unwrap();
    s.append(&mut batch(4)).unwrap();
    let a2 = s.append_alarms(&mut batch(0), &[]).unwrap();
    assert_eq!((a1, a2), (4, 6));
    let mut order = Vec::new();
    while let Some(b) = s.oldest().unwrap() {
        order.push(b.seq);
        s.remove(b.seq).unwrap();
    }
    assert_eq!(order, [4, 6, 1, 2, 3, 5]);
}

/// A spool written before the priority lane and acknowledgements opens,
/// keeps its batches (as readings) and gains both columns.
#[test]
fn spool_from_before_the_priority_lane_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT INTO meta VALUES ('next_seq', 8);
             CREATE TABLE batches (seq INTEGER PRIMARY KEY, created_us INTEGER NOT NULL,
                 readings INTEGER NOT NULL, alarms INTEGER NOT NULL, body BLOB NOT NULL);
             INSERT INTO batches VALUES (7, 0, 1, 0, x'00');
             CREATE TABLE alarms (rule TEXT NOT NULL, series TEXT NOT NULL,
                 raised_us INTEGER NOT NULL, limit_value REAL NOT NULL,
                 severity TEXT NOT NULL, PRIMARY KEY (rule, series));",
        )
        .unwrap();
    }
    let mut s = Spool::open(&path).unwrap();
    let a = s.append_alarms(&mut batch(0), &[]).unwrap();
    assert_eq!(a, 8);
    assert_eq!(s.oldest().unwrap().unwrap().seq, 8);
    s.remove(8).unwrap();
    assert_eq!(s.oldest().unwrap().unwrap().seq, 7);
    assert!(s.acknowledged_alarms().unwrap().is_empty());
}
