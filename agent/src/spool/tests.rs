//! Tests of the spool: sequence numbers across reopen, quarantine, the
//! priority lane, and migration of spools from before it.

use super::*;
use edge_wire::{Batch, Point, Quality, Series};

pub(crate) fn batch(n: usize) -> Batch {
    Batch {
        gateway_id: "gw".into(),
        instance: None,
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
            reporting: None,
        }],
        alarms: vec![],
        gaps: Vec::new(),
        devices: Vec::new(),
    }
}

#[test]
fn sequence_grows_across_reopen_and_bytes_are_the_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    let mut s = Spool::open(&path).unwrap();
    let mut b1 = batch(3);
    assert_eq!(s.append(&mut b1, &[], Lane::Readings).unwrap(), 1);
    assert_eq!(s.append(&mut batch(2), &[], Lane::Readings).unwrap(), 2);
    s.remove(1).unwrap();
    s.remove(2).unwrap();
    drop(s);
    let mut s = Spool::open(&path).unwrap();
    assert_eq!(
        s.append(&mut batch(1), &[], Lane::Readings).unwrap(),
        3,
        "seq must not restart"
    );
    let oldest = s.oldest().unwrap().unwrap();
    assert_eq!(oldest.seq, 3);
    let decoded = edge_wire::decode(&oldest.body, &Default::default()).unwrap();
    assert_eq!(decoded.seq, 3);
    assert_eq!(decoded.reading_count(), 1);
}

#[test]
fn a_spool_keeps_its_instance_id_and_a_fresh_spool_draws_another() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    let mut s = Spool::open(&path).unwrap();
    let instance = s.instance();
    s.append(&mut batch(1), &[], Lane::Readings).unwrap();
    drop(s);
    let s = Spool::open(&path).unwrap();
    assert_eq!(s.instance(), instance, "kept across a reopen");
    // Every batch carries it (format v8, as v4 did).
    let body = s.oldest().unwrap().unwrap().body;
    assert_eq!(
        edge_wire::encoded_version(&body).unwrap(),
        edge_wire::FORMAT_VERSION
    );
    let decoded = edge_wire::decode(&body, &Default::default()).unwrap();
    assert_eq!(decoded.instance, instance);
    assert!(instance.is_some());
    drop(s);
    // The spool deleted (a reinstall): seq starts again at 1, under a new
    // instance, so the relay does not take its batches for the old ones.
    std::fs::remove_file(&path).unwrap();
    let _ = std::fs::remove_file(dir.path().join("spool.db-wal"));
    let mut s = Spool::open(&path).unwrap();
    assert_ne!(s.instance(), instance);
    assert_eq!(s.append(&mut batch(1), &[], Lane::Readings).unwrap(), 1);
    // A spool from before instance ids gets one at its first open.
    let old = dir.path().join("old.db");
    rusqlite::Connection::open(&old)
        .unwrap()
        .execute_batch("CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL); INSERT INTO meta VALUES ('next_seq', 8);")
        .unwrap();
    let mut s = Spool::open(&old).unwrap();
    let id = s.instance();
    assert_eq!(s.append(&mut batch(1), &[], Lane::Readings).unwrap(), 8);
    drop(s);
    assert_eq!(Spool::open(&old).unwrap().instance(), id);
}

#[test]
fn oldest_first_and_quarantine_moves_out_of_queue() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&dir.path().join("spool.db")).unwrap();
    for n in [1, 2, 3] {
        s.append(&mut batch(n), &[], Lane::Readings).unwrap();
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
        s.append(&mut batch(n), &[], Lane::Readings).unwrap();
    }
    let a1 = s.append(&mut batch(0), &[], Lane::Alarms).unwrap();
    s.append(&mut batch(4), &[], Lane::Readings).unwrap();
    let a2 = s.append(&mut batch(0), &[], Lane::Alarms).unwrap();
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
    let a = s.append(&mut batch(0), &[], Lane::Alarms).unwrap();
    assert_eq!(a, 8);
    assert_eq!(s.oldest().unwrap().unwrap().seq, 8);
    s.remove(8).unwrap();
    assert_eq!(s.oldest().unwrap().unwrap().seq, 7);
    assert!(s.acknowledged_alarms().unwrap().is_empty());
}

/// Guards "committed before it can be forwarded": another connection (as
/// `edge-agent spool` or a restarted agent would open) sees a batch once
/// `append` returned, and a refused append leaves neither a row nor a used
/// sequence number behind.
#[test]
fn appended_batch_is_readable_only_after_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    let options = SpoolOptions {
        max_bytes: Some(64 * 1024),
        on_full: OnFull::Block,
        ..SpoolOptions::default()
    };
    let mut s = Spool::open_with(&path, options).unwrap();
    let seq = s.append(&mut batch(3), &[], Lane::Readings).unwrap();
    let reader = Spool::open_read_only(&path).unwrap();
    assert_eq!(reader.oldest().unwrap().unwrap().seq, seq);
    // Fill the spool until the bound refuses a batch.
    let mut last = seq;
    let refused = loop {
        let mut big = batch(2000);
        for (i, p) in big.series[0].points.iter_mut().enumerate() {
            p.value = f64::from_bits((i as u64 + last).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 1);
        }
        match s.append(&mut big, &[], Lane::Readings) {
            Ok(seq) => last = seq,
            Err(e) => break e,
        }
    };
    assert!(refused.is_full(), "{refused}");
    assert_eq!(reader.backlog().unwrap().batches, last);
    s.remove(seq).unwrap();
    assert_eq!(
        s.append(&mut batch(1), &[], Lane::Readings).unwrap(),
        last + 1
    );
}

/// Guards the `block` policy end to end in the commit path: the store
/// call waits (counting `spool_full`) while the spool is full, and commits
/// the batch, nothing lost, once the forwarder removed one.
#[tokio::test]
async fn store_waits_on_a_blocked_spool_and_commits_when_room_is_made() {
    use crate::stats::AgentStats;
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions {
        max_bytes: Some(64 * 1024),
        on_full: OnFull::Block,
        ..SpoolOptions::default()
    };
    let mut s = Spool::open_with(&dir.path().join("spool.db"), options).unwrap();
    let noisy = |k: u64| {
        let mut b = batch(1000);
        for (i, p) in b.series[0].points.iter_mut().enumerate() {
            p.value =
                f64::from_bits((i as u64 + k * 7919).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 1);
        }
        b
    };
    let mut k = 0;
    while s.append(&mut noisy(k), &[], Lane::Readings).is_ok() {
        k += 1;
    }
    let before = s.stats().unwrap().batches;
    let spool = SharedSpool::new(s);
    let stats = std::sync::Arc::new(AgentStats::default());
    let task = {
        let (spool, stats) = (spool.clone(), stats.clone());
        tokio::spawn(async move {
            let stop = tokio_util::sync::CancellationToken::new();
            crate::pipeline::store(noisy(k), vec![], Lane::Readings, &spool, &stats, &stop).await
        })
    };
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while stats.spool_full.get() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "store never hit the bound"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(!task.is_finished());
    assert_eq!(spool.call(|s| s.stats()).await.unwrap().batches, before);
    spool
        .call(|s| {
            let oldest = s.oldest()?.expect("a batch");
            s.remove(oldest.seq)
        })
        .await
        .unwrap();
    assert!(task.await.unwrap(), "committed");
    let after = spool.call(|s| s.backlog()).await.unwrap();
    assert_eq!(after.batches, before);
    assert_eq!(after.dropped_batches_full, 0);
    assert_eq!(stats.readings_dropped.get(), 0);
}
