//! Tests of the start-up check: a corrupt batch goes to quarantine, a
//! database that is not one is moved aside, old rows get checksums.

use super::super::tests::batch;
use super::*;
use crate::spool::Lane;
use rusqlite::Connection;

const NOW: i64 = 1_700_000_000_000_000;

#[test]
fn batch_with_changed_bytes_is_quarantined_and_the_rest_stays() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    {
        let mut s = Spool::open(&path).unwrap();
        for n in [1, 2, 3] {
            s.append(&mut batch(n), &[], Lane::Readings).unwrap();
        }
    }
    {
        let conn = Connection::open(&path).unwrap();
        // One byte of batch 2 flipped: same length, different content.
        conn.execute(
            "UPDATE batches SET body = CAST(substr(body, 1, 10) || x'ff' || substr(body, 12) AS BLOB) WHERE seq = 2",
            [],
        )
        .unwrap();
    }
    let (mut s, report) = Spool::open_checked(&path, SpoolOptions::default(), NOW).unwrap();
    assert_eq!(report.corrupt_batches, 1);
    assert_eq!(report.moved_aside, None);
    let reason: String = s
        .conn
        .query_row("SELECT reason FROM quarantine WHERE seq = 2", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(
        reason.starts_with("checksum mismatch at start-up"),
        "{reason}"
    );
    let mut sent = Vec::new();
    while let Some(b) = s.oldest().unwrap() {
        sent.push(b.seq);
        s.remove(b.seq).unwrap();
    }
    assert_eq!(sent, [1, 3]);
    assert_eq!(s.append(&mut batch(1), &[], Lane::Readings).unwrap(), 4);
    // A second start finds nothing more.
    drop(s);
    let (_, report) = Spool::open_checked(&path, SpoolOptions::default(), NOW).unwrap();
    assert_eq!(report, StartupReport::default());
}

#[test]
fn garbage_database_is_moved_aside_and_seq_keeps_growing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    {
        let mut s = Spool::open(&path).unwrap();
        for n in [1, 2, 3] {
            s.append(&mut batch(n), &[], Lane::Readings).unwrap();
        }
    }
    let garbage: Vec<u8> = (0..50_000u32)
        .map(|i| i.wrapping_mul(2_654_435_761) as u8)
        .collect();
    std::fs::write(&path, &garbage).unwrap();
    let (mut s, report) = Spool::open_checked(&path, SpoolOptions::default(), NOW).unwrap();
    let (aside, why) = report.moved_aside.expect("moved aside");
    assert_eq!(aside, dir.path().join("spool.db.corrupt-1700000000.000000"));
    assert_eq!(std::fs::read(&aside).unwrap(), garbage);
    assert!(why.contains("not a database"), "{why}");
    assert_eq!(s.stats().unwrap().batches, 0);
    let seq = s.append(&mut batch(1), &[], Lane::Readings).unwrap();
    assert!(seq >= NOW as u64, "fresh spool restarted seq at {seq}");
    drop(s);
    // The fresh spool is a good one: the next start keeps it.
    let (mut s, report) = Spool::open_checked(&path, SpoolOptions::default(), NOW + 1).unwrap();
    assert_eq!(report.moved_aside, None);
    assert_eq!(
        s.append(&mut batch(1), &[], Lane::Readings).unwrap(),
        seq + 1
    );
}

#[test]
fn a_directory_that_does_not_exist_is_an_error_not_a_move() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing").join("spool.db");
    let err = Spool::open_checked(&path, SpoolOptions::default(), NOW)
        .err()
        .expect("cannot create a spool there");
    assert!(err.to_string().contains("missing/spool.db"), "{err}");
}

#[test]
fn rows_from_before_checksums_get_one_and_are_checked_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    let body = edge_wire::encode(&batch(2)).unwrap();
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT INTO meta VALUES ('next_seq', 8);
             CREATE TABLE batches (seq INTEGER PRIMARY KEY, created_us INTEGER NOT NULL,
                 readings INTEGER NOT NULL, alarms INTEGER NOT NULL, body BLOB NOT NULL,
                 priority INTEGER NOT NULL DEFAULT 0);",
        )
        .unwrap();
        conn.execute("INSERT INTO batches VALUES (7, 5, 2, 0, ?1, 0)", [&body])
            .unwrap();
    }
    let (s, report) = Spool::open_checked(&path, SpoolOptions::default(), NOW).unwrap();
    assert_eq!((report.checksums_added, report.corrupt_batches), (1, 0));
    let stored: i64 = s
        .conn
        .query_row("SELECT checksum FROM batches WHERE seq = 7", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(stored, checksum(&body));
    assert_eq!(s.oldest().unwrap().unwrap().body, body);
}

#[test]
fn two_move_asides_at_the_same_instant_get_different_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    let garbage = vec![0x5a_u8; 20_000];
    let mut seen = Vec::new();
    for round in 0..3 {
        std::fs::write(&path, &garbage).unwrap();
        let (_s, report) = Spool::open_checked(&path, SpoolOptions::default(), NOW).unwrap();
        let (aside, _) = report.moved_aside.expect("moved aside");
        assert!(!seen.contains(&aside), "round {round} reused {aside:?}");
        assert_eq!(std::fs::read(&aside).unwrap(), garbage, "round {round}");
        seen.push(aside);
        std::fs::remove_file(&path).unwrap();
        let _ = std::fs::remove_file(dir.path().join("spool.db-wal"));
    }
    // Every earlier file is still there, untouched.
    for aside in &seen {
        assert_eq!(std::fs::read(aside).unwrap(), garbage);
    }
}

#[test]
fn aside_names_carry_microseconds_and_a_counter_when_taken() {
    let path = std::path::Path::new("/var/lib/edge-agent/spool.db");
    let taken = |names: &'static [&'static str]| {
        move |p: &std::path::Path| names.iter().any(|n| p.ends_with(n))
    };
    // (now_us, names taken, expected file name)
    let table: &[(i64, &'static [&'static str], &str)] = &[
        (
            1_700_000_000_123_456,
            &[],
            "spool.db.corrupt-1700000000.123456",
        ),
        (
            1_700_000_000_000_001,
            &[],
            "spool.db.corrupt-1700000000.000001",
        ),
        (
            1_700_000_000_123_456,
            &["spool.db.corrupt-1700000000.123456"],
            "spool.db.corrupt-1700000000.123456-1",
        ),
        (
            1_700_000_000_123_456,
            &[
                "spool.db.corrupt-1700000000.123456",
                "spool.db.corrupt-1700000000.123456-1",
            ],
            "spool.db.corrupt-1700000000.123456-2",
        ),
    ];
    for &(now, names, want) in table {
        let got = super::aside_name(path, now, taken(names));
        assert_eq!(got, path.with_file_name(want), "{now} with {names:?} taken");
    }
}

/// Overwrite page `page` (1-based) of the database at `path` with garbage.
fn smash_page(path: &Path, page: i64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(((page - 1) * 4096) as u64)).unwrap();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| i.wrapping_mul(2_654_435_761) as u8)
        .collect();
    f.write_all(&garbage).unwrap();
}

#[test]
fn an_unusable_spool_is_salvaged_into_the_fresh_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    let (bodies, instance) = {
        let mut s = Spool::open(&path).unwrap();
        for n in 1..=6 {
            s.append(&mut batch(n), &[], Lane::Readings).unwrap();
        }
        s.append(&mut batch(0), &[], Lane::Alarms).unwrap();
        s.conn
            .execute_batch(
                "INSERT INTO alarms (rule, series, raised_us, limit_value, severity, acked_us)
                 VALUES ('oil_temp.high', 'press-3.oil_temp', 10000000, 80.0, 'critical', 15000000);
                 INSERT INTO meta (key, value) VALUES ('dropped_readings_full', 42);",
            )
            .unwrap();
        // Batch 3's bytes rot on disk (its stored checksum stays).
        s.conn
            .execute(
                "UPDATE batches SET body = CAST(substr(body, 1, 10) || x'ff' || substr(body, 12) AS BLOB) WHERE seq = 3",
                [],
            )
            .unwrap();
        s.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        let mut bodies = std::collections::BTreeMap::new();
        let mut stmt = s.conn.prepare("SELECT seq, body FROM batches").unwrap();
        for row in stmt
            .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
            .unwrap()
        {
            let (seq, body) = row.unwrap();
            bodies.insert(seq as u64, body);
        }
        (bodies, s.instance())
    };
    // A damaged page in a table the batches do not live in: the quick
    // check fails the whole database.
    let root: i64 = Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = 'quarantine'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    smash_page(&path, root);

    let (mut s, report) = Spool::open_checked(&path, SpoolOptions::default(), NOW).unwrap();
    let (aside, why) = report.moved_aside.clone().expect("moved aside");
    assert!(
        aside.exists(),
        "the bad file is kept at {}",
        aside.display()
    );
    assert!(!why.is_empty());
    assert_eq!(
        (
            report.salvaged.batches,
            report.salvaged.alarms,
            report.salvaged.corrupt
        ),
        (6, 1, 1),
        "{report:?}"
    );
    assert_eq!(report.corrupt_batches, 1);
    assert_ne!(
        s.instance(),
        instance,
        "the fresh spool has its own instance id"
    );
    // The alarm state and the drop totals came back.
    let active = s.active_alarms().unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].rule, "oil_temp.high");
    assert_eq!(s.backlog().unwrap().dropped_readings_full, 42);
    // The rotten batch is in quarantine, the others go out with their own
    // seq and bytes, the alarm lane first.
    let quarantined: i64 = s
        .conn
        .query_row("SELECT seq FROM quarantine", [], |r| r.get(0))
        .unwrap();
    assert_eq!(quarantined, 3);
    let mut sent = Vec::new();
    while let Some(b) = s.oldest().unwrap() {
        assert_eq!(Some(&b.body), bodies.get(&b.seq), "seq {}", b.seq);
        sent.push(b.seq);
        s.remove(b.seq).unwrap();
    }
    assert_eq!(sent, [7, 1, 2, 4, 5, 6]);
    // New batches continue above every old seq.
    assert!(s.append(&mut batch(1), &[], Lane::Readings).unwrap() >= NOW as u64);
    // No leftovers of the rebuild beside the spool.
    for leftover in [".fresh", ".fresh-wal", ".fresh-reserve"] {
        assert!(
            !with_suffix(&path, leftover).exists(),
            "{leftover} left behind"
        );
    }
    drop(s);
    let (_, report) = Spool::open_checked(&path, SpoolOptions::default(), NOW + 1).unwrap();
    assert_eq!(report.moved_aside, None, "the salvaged spool is a good one");
}
