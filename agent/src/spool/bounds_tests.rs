//! Tests of the bounds: drop-oldest keeps the spool under `max_bytes` and
//! records what it dropped, as a gap batch for the relay too; block refuses
//! without losing anything; the age bound; SQLITE_FULL becomes the policy.

use std::collections::HashSet;
use std::time::Duration;

use super::super::tests::batch;
use super::super::*;
use edge_wire::Batch;

/// A reading batch of `n` readings that do not compress (about 9 bytes
/// each), sealed at `created_us`, readings from `ts0` on.
fn noisy(n: usize, created_us: i64, ts0: i64) -> Batch {
    let mut b = batch(n);
    b.created_us = created_us;
    let mut x: u64 = ts0 as u64 | 1;
    for (i, p) in b.series[0].points.iter_mut().enumerate() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p.ts_us = ts0 + i as i64;
        p.value = f64::from_bits(x >> 2);
    }
    b
}

/// Everything the forwarder would send, in order, removing it as if the
/// relay had acknowledged each batch.
fn drain(s: &mut Spool) -> Vec<StoredBatch> {
    let mut sent = Vec::new();
    while let Some(b) = s.oldest().unwrap() {
        s.remove(b.seq).unwrap();
        sent.push(b);
    }
    sent
}

/// The gap records a stored batch carries to the relay.
fn wire_gaps(b: &StoredBatch) -> Vec<edge_wire::Gap> {
    edge_wire::decode(&b.body, &edge_wire::Limits::default())
        .unwrap()
        .gaps
}

/// `gaps` (one per drop pass) as the one record they merge into.
fn merged(gaps: &[Gap], recorded_us: i64) -> edge_wire::Gap {
    edge_wire::Gap {
        first_us: gaps.iter().map(|g| g.first_us).min().unwrap(),
        last_us: gaps.iter().map(|g| g.last_us).max().unwrap(),
        readings: gaps.iter().map(|g| g.readings).sum(),
        batches: gaps.iter().map(|g| g.batches).sum(),
        ..gaps[0].to_wire(recorded_us)
    }
}

/// A spool at `path` under an age bound of `max_age_s` seconds.
fn aged(path: &std::path::Path, max_age_s: u64) -> Spool {
    let options = SpoolOptions {
        max_age: Some(Duration::from_secs(max_age_s)),
        ..SpoolOptions::default()
    };
    Spool::open_with(path, options).unwrap()
}

/// One reading batch a second for the seconds `ks`: 10 readings from `k` s
/// on, sealed at `k` s.
fn every_second(s: &mut Spool, ks: std::ops::Range<i64>) {
    for k in ks {
        s.append(&mut noisy(10, k * SEC, k * SEC), &[], Lane::Readings)
            .unwrap();
    }
}

const SEC: i64 = 1_000_000;

fn bounded(max_bytes: u64, on_full: OnFull) -> SpoolOptions {
    SpoolOptions {
        max_bytes: Some(max_bytes),
        on_full,
        ..SpoolOptions::default()
    }
}

#[test]
fn drop_oldest_keeps_the_bound_drops_readings_first_and_records_the_gap() {
    let dir = tempfile::tempdir().unwrap();
    let max = 128 * 1024;
    let mut s = Spool::open_with(
        &dir.path().join("spool.db"),
        bounded(max, OnFull::DropOldest),
    )
    .unwrap();
    let alarm = s.append(&mut batch(0), &[], Lane::Alarms).unwrap();
    let mut seqs = Vec::new();
    for k in 0..60i64 {
        seqs.push(
            s.append(&mut noisy(500, k, k * 1000), &[], Lane::Readings)
                .unwrap(),
        );
        assert!(
            s.disk_bytes().unwrap() <= max,
            "{} bytes after batch {k}",
            s.disk_bytes().unwrap()
        );
    }
    let gaps = s.take_gaps();
    assert!(!gaps.is_empty());
    // The gaps cover the oldest reading batches, in order, without holes.
    assert_eq!(gaps[0].first_us, 0);
    let dropped: u64 = gaps.iter().map(|g| g.batches).sum();
    for w in gaps.windows(2) {
        assert_eq!(w[1].first_us, w[0].last_us + 1000 - 499);
    }
    assert!(gaps.iter().all(|g| g.reason == DropReason::Full));
    assert_eq!(gaps.iter().map(|g| g.readings).sum::<u64>(), dropped * 500);
    // What is left: the alarm batch, one gap batch (priority lane) carrying
    // the drops merged into one record (nothing was delivered between them,
    // see `carrier`), then the newest reading batches.
    let sent = drain(&mut s);
    assert_eq!(sent[0].seq, alarm);
    let carried = wire_gaps(&sent[1]);
    assert_eq!(sent[1].readings, 0);
    assert_eq!(carried, [merged(&gaps, carried[0].recorded_us)]);
    assert_eq!(carried[0].reason, edge_wire::GapReason::SpoolFull);
    // The reading batches left are the newest ones; appending a batch that
    // caused a drop gave its seq to the gap batch, so compare readings.
    let readings: Vec<u64> = sent[2..].iter().map(|b| b.readings).collect();
    assert_eq!(readings, vec![500; 60 - dropped as usize]);
    // Sequence numbers still grow strictly in commit order.
    let mut all: Vec<u64> = sent.iter().map(|b| b.seq).collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), sent.len());
    assert_eq!(*all.last().unwrap(), *seqs.last().unwrap());
    let backlog = s.backlog().unwrap();
    assert_eq!(backlog.dropped_batches_full, dropped);
    assert_eq!(backlog.dropped_readings_full, dropped * 500);
    assert_eq!(backlog.gaps, gaps.len() as u64);
}

#[test]
fn block_refuses_without_losing_anything_until_room_is_made() {
    let dir = tempfile::tempdir().unwrap();
    let max = 96 * 1024;
    let mut s =
        Spool::open_with(&dir.path().join("spool.db"), bounded(max, OnFull::Block)).unwrap();
    let mut stored = Vec::new();
    let err = loop {
        match s.append(
            &mut noisy(500, 1, stored.len() as i64 * 1000),
            &[],
            Lane::Readings,
        ) {
            Ok(seq) => stored.push(seq),
            Err(e) => break e,
        }
        assert!(stored.len() < 100, "never full");
    };
    assert!(err.is_full(), "{err}");
    assert!(err.to_string().contains("on_full is \"block\""), "{err}");
    // Refused again, and nothing was dropped or half-stored.
    assert!(s
        .append(&mut noisy(500, 1, 0), &[], Lane::Readings)
        .unwrap_err()
        .is_full());
    assert!(s.take_gaps().is_empty());
    assert_eq!(s.stats().unwrap().batches, stored.len() as u64);
    assert_eq!(s.oldest().unwrap().unwrap().seq, stored[0]);
    // The forwarder acknowledges the oldest half: there is room again, and
    // the seq continues where it stopped.
    for seq in &stored[..stored.len() / 2] {
        s.remove(*seq).unwrap();
    }
    let next = s
        .append(&mut noisy(500, 1, 0), &[], Lane::Readings)
        .unwrap();
    assert_eq!(next, stored.last().unwrap() + 1);
    assert_eq!(s.backlog().unwrap().dropped_batches_full, 0);
}

#[test]
fn batches_older_than_max_age_are_dropped_as_a_gap_but_alarms_stay() {
    let dir = tempfile::tempdir().unwrap();
    let options = SpoolOptions {
        max_age: Some(Duration::from_secs(60)),
        ..SpoolOptions::default()
    };
    let mut s = Spool::open_with(&dir.path().join("spool.db"), options).unwrap();
    let sec = 1_000_000;
    let mut old_alarm = batch(0);
    old_alarm.created_us = 0;
    let alarm = s.append(&mut old_alarm, &[], Lane::Alarms).unwrap();
    s.append(&mut noisy(10, 0, 0), &[], Lane::Readings).unwrap();
    s.append(&mut noisy(10, 30 * sec, 30 * sec), &[], Lane::Readings)
        .unwrap();
    let young = s
        .append(&mut noisy(10, 50 * sec, 50 * sec), &[], Lane::Readings)
        .unwrap();
    assert!(s.take_gaps().is_empty());
    let now = s
        .append(&mut noisy(10, 100 * sec, 100 * sec), &[], Lane::Readings)
        .unwrap();
    assert_eq!(
        s.take_gaps(),
        [Gap {
            reason: DropReason::Age,
            first_us: 0,
            last_us: 30 * sec + 9,
            readings: 20,
            batches: 2,
        }]
    );
    // The gap batch took the seq the new batch would have had and travels
    // in the priority lane, right after the older alarm batch.
    let sent = drain(&mut s);
    let seqs: Vec<u64> = sent.iter().map(|b| b.seq).collect();
    assert_eq!(seqs, [alarm, now - 1, young, now]);
    assert_eq!(
        wire_gaps(&sent[1]),
        [edge_wire::Gap {
            reason: edge_wire::GapReason::MaxAge,
            first_us: 0,
            last_us: 30 * sec + 9,
            readings: 20,
            batches: 2,
            recorded_us: 100 * sec,
        }]
    );
    let b = s.backlog().unwrap();
    assert_eq!((b.dropped_batches_age, b.dropped_readings_age), (2, 20));
}

/// SQLITE_FULL (here from `max_page_count`, as from a full disk) is not a
/// crash: with drop-oldest the oldest batches make room; with block the
/// error is [`SpoolError::Full`].
#[test]
fn disk_full_applies_the_policy() {
    for on_full in [OnFull::DropOldest, OnFull::Block] {
        let dir = tempfile::tempdir().unwrap();
        let options = SpoolOptions {
            on_full,
            ..SpoolOptions::default()
        };
        let mut s = Spool::open_with(&dir.path().join("spool.db"), options).unwrap();
        s.conn
            .query_row("PRAGMA max_page_count = 40", [], |_| Ok(()))
            .unwrap();
        let mut outcome = Vec::new();
        for k in 0..40i64 {
            outcome.push(s.append(&mut noisy(500, k, k * 1000), &[], Lane::Readings));
        }
        match on_full {
            OnFull::DropOldest => {
                assert!(outcome.iter().all(|r| r.is_ok()), "{outcome:?}");
                let gaps = s.take_gaps();
                assert!(!gaps.is_empty());
                assert_eq!(gaps[0].first_us, 0);
                assert!(gaps.iter().all(|g| g.reason == DropReason::Full));
            }
            OnFull::Block => {
                let err = outcome.into_iter().find_map(|r| r.err()).expect("full");
                assert!(err.is_full(), "{err}");
                assert!(err.to_string().contains("disk full"), "{err}");
                assert!(s.take_gaps().is_empty());
            }
        }
    }
}

/// A long outage under the age bound: batches go in runs, so the relay gets
/// one gap per tenth of `max_age` (not one per batch), and no reading batch
/// is ever kept past `max_age` plus that tenth.
#[test]
fn the_age_bound_drops_in_runs_during_a_long_outage() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = aged(&dir.path().join("spool.db"), 60);
    let sec = SEC;
    for k in 0..600i64 {
        s.append(&mut noisy(10, k * sec, k * sec), &[], Lane::Readings)
            .unwrap();
        let oldest: i64 = s
            .conn
            .query_row(
                "SELECT MIN(created_us) FROM batches WHERE priority = 0",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(oldest >= (k - 66) * sec, "batch at {oldest} kept at {k} s");
    }
    let gaps = s.take_gaps();
    let dropped: u64 = gaps.iter().map(|g| g.batches).sum();
    // 600 batches, the newest 60 to 66 kept: about 540 dropped in runs of 6.
    assert!((534..=540).contains(&dropped), "{dropped} dropped");
    assert!(gaps.len() <= 540 / 6 + 1, "{} gaps", gaps.len());
    assert!(gaps.len() >= 540 / 7, "{} gaps", gaps.len());
    // The runs reach the relay as one record: nothing was delivered between
    // them (the relay is down), and no kept reading lies between them.
    let sent = drain(&mut s);
    let carried: Vec<edge_wire::Gap> = sent.iter().flat_map(wire_gaps).collect();
    assert_eq!(carried, [merged(&gaps, carried[0].recorded_us)]);
    assert!(carried[0].recorded_us > 590 * sec);
    assert_eq!(carried[0].batches, dropped);
}

/// The readings' timestamps of a stored batch.
fn timestamps(b: &StoredBatch) -> Vec<i64> {
    edge_wire::decode(&b.body, &edge_wire::Limits::default())
        .unwrap()
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.ts_us))
        .collect()
}

/// Issue 21: one outage gave one gap event per drop pass, split where
/// batches carrying alarms (the priority lane, which the age bound keeps)
/// sat among the dropped ones. Now the relay, down all along, gets one
/// record for the outage: the alarm batches hold no readings, so they do
/// not split it, and the forwarder's retries do not take the open gap
/// batch while the backlog fills them. It stays open across a restart.
#[test]
fn one_outage_with_alarm_batches_surviving_gives_one_gap_record() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spool.db");
    let mut s = aged(&path, 10);
    let (mut gaps, mut alarms) = (Vec::new(), Vec::new());
    for k in 0..60i64 {
        if k % 5 == 2 {
            let mut alarm = batch(0);
            alarm.created_us = k * SEC;
            alarms.push(s.append(&mut alarm, &[], Lane::Alarms).unwrap());
        }
        every_second(&mut s, k..k + 1);
        // The forwarder retries against a relay that is down: it gets the
        // alarm batches and the oldest readings, never the open gap batch.
        for b in s.next_unsent(4, &HashSet::new()).unwrap() {
            assert!(wire_gaps(&b).is_empty(), "gap batch handed out at {k} s");
        }
        if k == 30 {
            gaps.extend(s.take_gaps());
            drop(s);
            s = aged(&path, 10);
        }
    }
    gaps.extend(s.take_gaps());
    assert!(gaps.len() >= 5, "{} drop passes", gaps.len());
    // The relay is back: everything drains.
    let sent = drain(&mut s);
    let gap_batches: Vec<&StoredBatch> = sent.iter().filter(|b| !wire_gaps(b).is_empty()).collect();
    assert_eq!(gap_batches.len(), 1);
    let carried = wire_gaps(gap_batches[0]);
    assert_eq!(carried, [merged(&gaps, carried[0].recorded_us)]);
    let g = carried[0];
    assert_eq!(g.reason, edge_wire::GapReason::MaxAge);
    assert_eq!((g.first_us, g.readings), (0, 10 * g.batches));
    // Every alarm batch is delivered; no delivered reading lies in the gap,
    // and every reading is delivered or counted.
    for a in &alarms {
        assert!(sent.iter().any(|b| b.seq == *a), "alarm batch {a} lost");
    }
    let delivered: Vec<i64> = sent.iter().flat_map(timestamps).collect();
    assert!(delivered
        .iter()
        .all(|t| !(g.first_us..=g.last_us).contains(t)));
    assert_eq!(delivered.len() as u64 + g.readings, 600);
}

/// A reading batch delivered between two drop passes lies between their
/// records, so they stay apart: the delivery closes the open gap batch and
/// the next pass opens another.
#[test]
fn a_delivery_between_drops_keeps_their_records_apart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = aged(&dir.path().join("spool.db"), 10);
    every_second(&mut s, 0..30);
    // The uplink is back for a moment: the oldest reading batch (not the
    // open gap batch, which waits behind it) is delivered.
    let first = s.oldest().unwrap().unwrap();
    assert!(first.readings > 0);
    s.remove(first.seq).unwrap();
    every_second(&mut s, 30..60);
    let sent = drain(&mut s);
    let carried: Vec<Vec<edge_wire::Gap>> = sent
        .iter()
        .map(wire_gaps)
        .filter(|g| !g.is_empty())
        .collect();
    assert_eq!(carried.len(), 2, "{carried:?}");
    let (before, after) = (carried[0][0], carried[1][0]);
    assert_eq!(carried[0].len() + carried[1].len(), 2);
    let ts = timestamps(&first);
    assert!(before.last_us < ts[0] && *ts.last().unwrap() < after.first_us);
}

/// The open gap batch is handed out only when the others do not fill the
/// request, closed first, and never rewritten after: the next record goes
/// to a new gap batch. Device gaps merge like the bounds' ones.
#[test]
fn a_gap_batch_handed_out_is_closed_and_never_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Spool::open(&dir.path().join("spool.db")).unwrap();
    let gap = |first_us, last_us| Gap {
        reason: DropReason::Device,
        first_us,
        last_us,
        readings: 5,
        batches: 0,
    };
    s.record_gap("gw", gap(0, 4), 100).unwrap();
    s.record_gap("gw", gap(5, 9), 200).unwrap();
    assert_eq!(s.stats().unwrap().batches, 1);
    let handed = s.next_unsent(4, &HashSet::new()).unwrap();
    assert_eq!(handed.len(), 1);
    let want = edge_wire::Gap {
        reason: edge_wire::GapReason::DeviceDropped,
        first_us: 0,
        last_us: 9,
        readings: 10,
        batches: 0,
        recorded_us: 200,
    };
    assert_eq!(wire_gaps(&handed[0]), [want]);
    // Adjacent, same reason, but the first is on its way: a new gap batch.
    s.record_gap("gw", gap(10, 14), 300).unwrap();
    let in_flight = HashSet::from([handed[0].seq]);
    let next = s.next_unsent(4, &in_flight).unwrap();
    assert_eq!(next.len(), 1);
    assert!(next[0].seq > handed[0].seq);
    assert_eq!(wire_gaps(&next[0])[0].first_us, 10);
    let sent = drain(&mut s);
    assert_eq!(sent[0], handed[0], "the handed-out batch was rewritten");
    assert_eq!(s.backlog().unwrap().gaps, 3);
}
