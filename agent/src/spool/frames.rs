//! What the spool remembers of each microcontroller's sequence, so that an
//! agent killed between a commit and the acknowledgement to the device does
//! not take the device's resends again after its restart.
//!
//! A [`FrameMark`] says "sample `seq` of boot `boot_id` of device
//! `device_id` is taken, and every seq up to `settled` is taken or given
//! up". Marks are written only inside the transaction of
//! [`super::Spool::append_marked`] that commits the batch holding the
//! sample's readings, so after a crash the tables agree with what was
//! spooled: a sample in the tables is in the spool (or was forwarded from
//! it), and a sample whose readings never reached the spool is not in the
//! tables, and is taken again when the device resends it.
//!
//! Two tables: `frames_progress` (one row per device: its current boot and
//! the settled floor) and `frames_taken` (the seqs above the floor taken
//! out of order). A mark of a new boot replaces the device's row and drops
//! the old boot's seqs; seqs at or below the floor are deleted as the floor
//! passes them. So the tables hold, per device, one row and at most the
//! samples the agent tracks out of order
//! ([`crate::source::frames::session::MAX_TRACKED`]).
//!
//! A sample's readings and its mark travel together from the frames source
//! to the pipeline ([`crate::reading::Input::Sample`]), which commits both
//! in the same batch.

use rusqlite::{params, Connection, OptionalExtension};

/// One sample of a microcontroller, taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameMark {
    pub device_id: String,
    pub boot_id: u32,
    pub seq: u32,
    /// Every seq up to this one is taken or given up by the device when
    /// this sample was taken (-1: none before seq 0); `None`: the start of
    /// the session is not settled yet.
    pub settled: Option<i64>,
}

/// What the spool knows of one device's current boot.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FrameProgress {
    pub boot_id: u32,
    /// As [`FrameMark::settled`], the highest committed.
    pub settled: Option<i64>,
    /// Seqs above `settled` whose samples are committed, ascending.
    pub taken: Vec<u32>,
}

/// Record `marks`, in order, within the caller's transaction.
pub(super) fn apply(conn: &Connection, marks: &[FrameMark]) -> rusqlite::Result<()> {
    for m in marks {
        // A new boot replaces the row; within a boot the floor only rises.
        conn.execute(
            "INSERT INTO frames_progress (device_id, boot_id, settled) VALUES (?1, ?2, ?3)
             ON CONFLICT(device_id) DO UPDATE SET
                 settled = CASE
                     WHEN frames_progress.boot_id <> excluded.boot_id THEN excluded.settled
                     WHEN excluded.settled IS NULL THEN frames_progress.settled
                     WHEN frames_progress.settled IS NULL THEN excluded.settled
                     ELSE max(frames_progress.settled, excluded.settled) END,
                 boot_id = excluded.boot_id",
            params![m.device_id, i64::from(m.boot_id), m.settled],
        )?;
        conn.execute(
            "DELETE FROM frames_taken WHERE device_id = ?1 AND boot_id <> ?2",
            params![m.device_id, i64::from(m.boot_id)],
        )?;
        conn.execute(
            "INSERT OR IGNORE INTO frames_taken (device_id, boot_id, seq) VALUES (?1, ?2, ?3)",
            params![m.device_id, i64::from(m.boot_id), i64::from(m.seq)],
        )?;
        conn.execute(
            "DELETE FROM frames_taken WHERE device_id = ?1 AND seq <=
                 (SELECT settled FROM frames_progress WHERE device_id = ?1)",
            params![m.device_id],
        )?;
    }
    Ok(())
}

/// What is recorded for `device_id`, if anything.
pub(super) fn load(conn: &Connection, device_id: &str) -> rusqlite::Result<Option<FrameProgress>> {
    let row: Option<(i64, Option<i64>)> = conn
        .query_row(
            "SELECT boot_id, settled FROM frames_progress WHERE device_id = ?1",
            params![device_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((boot_id, settled)) = row else {
        return Ok(None);
    };
    let mut stmt = conn.prepare(
        "SELECT seq FROM frames_taken WHERE device_id = ?1 AND boot_id = ?2 ORDER BY seq",
    )?;
    let taken = stmt
        .query_map(params![device_id, boot_id], |r| r.get::<_, i64>(0))?
        .filter_map(|s| s.map(|s| u32::try_from(s).ok()).transpose())
        .collect::<rusqlite::Result<Vec<u32>>>()?;
    Ok(Some(FrameProgress {
        boot_id: u32::try_from(boot_id).unwrap_or(u32::MAX),
        settled,
        taken,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::tests::batch;
    use crate::spool::{Lane, Spool};

    fn mark(device: &str, boot_id: u32, seq: u32, settled: Option<i64>) -> FrameMark {
        FrameMark {
            device_id: device.into(),
            boot_id,
            seq,
            settled,
        }
    }

    fn progress(boot_id: u32, settled: Option<i64>, taken: &[u32]) -> Option<FrameProgress> {
        Some(FrameProgress {
            boot_id,
            settled,
            taken: taken.to_vec(),
        })
    }

    /// Each row: the marks committed with one batch, then what the spool
    /// holds of device "a" after that commit and a reopen.
    #[rustfmt::skip]
    #[test]
    fn marks_commit_with_their_batch_and_read_back_across_a_reopen() {
        let table: Vec<(Vec<FrameMark>, Option<FrameProgress>)> = vec![
            // Nothing known yet of device a.
            (vec![mark("b", 1, 0, Some(0))], None),
            // Unsettled start (an agent started under a running device):
            // the seqs are kept, no floor.
            (vec![mark("a", 7, 40, None), mark("a", 7, 42, None)], progress(7, None, &[40, 42])),
            // The start settles at 39 and 40 is folded in by the session:
            // the floor rises, seqs at or below it are dropped.
            (vec![mark("a", 7, 43, Some(40))], progress(7, Some(40), &[42, 43])),
            // A mark with an older (smaller) floor never lowers it.
            (vec![mark("a", 7, 41, Some(39))], progress(7, Some(40), &[41, 42, 43])),
            (vec![mark("a", 7, 44, Some(44))], progress(7, Some(44), &[])),
            // A reboot: the new boot replaces the old one and its seqs.
            (vec![mark("a", 8, 1, None)], progress(8, None, &[1])),
            (vec![mark("a", 8, 0, Some(1))], progress(8, Some(1), &[])),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.db");
        for (i, (marks, want)) in table.into_iter().enumerate() {
            let mut s = Spool::open(&path).unwrap();
            let marks: Vec<_> = marks.into_iter().map(crate::spool::Mark::Frame).collect();
            s.append_marked(&mut batch(1), &[], Lane::Readings, &marks).unwrap();
            drop(s);
            let s = Spool::open(&path).unwrap();
            assert_eq!(s.frame_progress("a").unwrap(), want, "row {i}");
        }
        let s = Spool::open(&path).unwrap();
        assert_eq!(s.frame_progress("b").unwrap(), progress(1, Some(0), &[]));
    }

    /// Under `on_full = "block"` the spool fills up and refuses a batch:
    /// exactly the marks of the batches it took are recorded.
    #[test]
    fn a_refused_batch_leaves_no_mark() {
        let dir = tempfile::tempdir().unwrap();
        let options = crate::spool::SpoolOptions {
            max_bytes: Some(96 * 1024),
            on_full: crate::spool::OnFull::Block,
            ..Default::default()
        };
        let mut s = Spool::open_with(&dir.path().join("spool.db"), options).unwrap();
        let mut stored = Vec::new();
        for seq in 0..2000 {
            let mut b = batch(400);
            // Values that do not compress away.
            for p in &mut b.series[0].points {
                p.value = fastrand::f64();
            }
            match s.append_marked(
                &mut b,
                &[],
                Lane::Readings,
                &[crate::spool::Mark::Frame(mark("a", 1, seq, None))],
            ) {
                Ok(_) => stored.push(seq),
                Err(e) => {
                    assert!(e.is_full(), "{e}");
                    break;
                }
            }
        }
        assert!(stored.len() < 2000, "never full");
        assert_eq!(s.frame_progress("a").unwrap(), progress(1, None, &stored));
    }
}
