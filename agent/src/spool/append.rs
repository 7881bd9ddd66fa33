//! Committing to the spool: [`Spool::append`] (a batch and the alarm
//! events it carries, in one transaction, after the bounds;
//! [`Spool::append_marked`] also the microcontroller samples it holds), and the gap
//! records for readings that never reached it ([`Spool::record_gap`],
//! [`Spool::record_unstored`]); gap records travel in the gap batch of
//! [`super::carrier`]. The invariants are the spool's (see
//! [`super`]); this file is where the commit path keeps them.

use edge_wire::Batch;
use rusqlite::{params, OptionalExtension};

use super::Mark;
use super::{
    alarms, bounds, carrier, checksum, frames, mqtt, room, sqlite_error, DropReason, FullCause,
    Gap, Lane, OnFull, Spool, SpoolError,
};
use crate::reading::Alarm;

/// The interval of readings a batch holds: (first, last) µs, or the seal
/// time for a batch without readings.
fn interval(batch: &Batch) -> (i64, i64) {
    let ts = batch
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.ts_us));
    let (lo, hi) = ts.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    if lo > hi {
        (batch.created_us, batch.created_us)
    } else {
        (lo, hi)
    }
}

impl Spool {
    /// Assign the next sequence number to `batch`, encode it and commit it
    /// to `lane`, applying `alarms` (the raise, acknowledge and clear events
    /// it carries, in order) to the `alarms` table in the same transaction.
    /// Returns the sequence number. The alarm lane is forwarded before every
    /// reading batch.
    ///
    /// The bounds are applied first. On SQLITE_FULL the reserve is released
    /// and the WAL folded back into the database, then the commit is tried
    /// once more (with `drop-oldest`, dropping a tenth of the batches
    /// first); otherwise the error is [`SpoolError::Full`] and the caller
    /// waits.
    pub fn append(
        &mut self,
        batch: &mut Batch,
        alarms: &[Alarm],
        lane: Lane,
    ) -> Result<u64, SpoolError> {
        self.append_marked(batch, alarms, lane, &[])
    }

    /// [`Spool::append`], recording in the same transaction that the
    /// microcontroller samples and MQTT messages of `marks` are taken
    /// ([`super::frames`], [`super::mqtt`]).
    pub fn append_marked(
        &mut self,
        batch: &mut Batch,
        alarms: &[Alarm],
        lane: Lane,
        marks: &[Mark],
    ) -> Result<u64, SpoolError> {
        let result = match self.try_append(batch, alarms, lane, marks, false) {
            Err(SpoolError::Full {
                cause: FullCause::DiskFull,
                ..
            }) => {
                self.hit_disk_end = true;
                self.use_reserve();
                let drop = self.options.on_full == OnFull::DropOldest;
                self.try_append(batch, alarms, lane, marks, drop)
            }
            other => other,
        };
        self.refused = matches!(&result, Err(e) if e.is_full());
        if result.is_ok() {
            self.hit_disk_end = false;
            self.reserve.restore();
        }
        result
    }

    /// SQLite found the disk full: give it the reserve's room and cut the
    /// WAL back, which a drop or delete then has room to write into.
    pub(super) fn use_reserve(&mut self) {
        if self.reserve.release() {
            tracing::warn!(spool = %self.path.display(), reserve = %self.reserve.path().display(), "disk full: reserve file released to let the spool drop and delete");
        }
        if let Err(error) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::debug!(spool = %self.path.display(), %error, "checkpoint on a full disk failed");
        }
    }

    /// The bound in force now: the tighter of `max_bytes` and what the disk
    /// can hold ([`room::bound`]), and the room it was read from.
    fn bound(&self) -> (Option<room::Bound>, Option<room::DiskRoom>) {
        let disk = room::DiskRoom::read(&self.path).ok();
        (room::bound(self.options.max_bytes, disk), disk)
    }

    /// How full the spool is, for `/healthz` and the metrics.
    pub fn pressure(&self) -> Result<room::Pressure, SpoolError> {
        let used = self.disk_bytes()?;
        let (bound, disk) = self.bound();
        Ok(room::pressure(
            used,
            bound,
            disk,
            self.hit_disk_end,
            self.refused,
        ))
    }

    fn try_append(
        &mut self,
        batch: &mut Batch,
        alarms: &[Alarm],
        lane: Lane,
        marks: &[Mark],
        disk_full: bool,
    ) -> Result<u64, SpoolError> {
        let options = self.options;
        let (bound, _) = self.bound();
        if let Some(b) = bound {
            self.checkpoint_if_over(b.bytes - b.bytes / 10)
                .map_err(|e| self.err(e))?;
        }
        let tx = self.conn.transaction().map_err(|e| SpoolError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        let next: Option<i64> = tx
            .query_row("SELECT value FROM meta WHERE key = 'next_seq'", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(|e| SpoolError::Sqlite {
                path: self.path.clone(),
                source: e,
            })?;
        batch.seq = next.unwrap_or(1) as u64;
        batch.instance = self.instance;
        let body = edge_wire::encode(batch)?;
        let (first_us, last_us) = interval(batch);
        let mut gaps = Vec::new();
        let made_room = bounds::make_room(
            &tx,
            &self.path,
            &options,
            bound,
            batch.created_us,
            body.len() as u64,
            disk_full,
            &mut gaps,
        );
        match made_room {
            Ok(true) => {}
            Ok(false) => {
                let b = bound.expect("make_room refuses only under a bound");
                return Err(SpoolError::Full {
                    path: self.path.clone(),
                    cause: if b.by_disk {
                        FullCause::DiskBound
                    } else {
                        FullCause::MaxBytes
                    },
                    why: format!("bound {} bytes and on_full is \"block\"", b.bytes),
                });
            }
            Err(e) => return Err(sqlite_error(&self.path, e)),
        }
        // Batches were dropped: the gap batch, committed with them, tells the
        // relay which interval is missing ([`carrier`]). A new one takes this
        // seq (and goes to the priority lane, ahead of the backlog) and the
        // incoming batch the next; merged into the open one, it takes none.
        let mut gap_seq = None;
        let body = if gaps.is_empty() {
            body
        } else {
            let incoming = (batch.reading_count() > 0).then_some((first_us, last_us));
            let took = carrier::carry(
                &tx,
                &self.path,
                &batch.gateway_id,
                batch.instance,
                batch.seq,
                batch.created_us,
                &gaps,
                incoming,
            )?;
            if took {
                gap_seq = Some(batch.seq);
                batch.seq += 1;
                edge_wire::encode(batch)?
            } else {
                body
            }
        };
        let result = tx
            .execute(
                "INSERT INTO batches (seq, created_us, readings, alarms, body, priority,
                                      checksum, first_us, last_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    batch.seq as i64,
                    batch.created_us,
                    batch.reading_count() as i64,
                    batch.alarms.len() as i64,
                    body,
                    i64::from(lane == Lane::Alarms),
                    checksum(&body),
                    first_us,
                    last_us
                ],
            )
            .and_then(|_| {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('next_seq', ?1)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    params![batch.seq as i64 + 1],
                )
            })
            .and_then(|_| alarms::apply(&tx, alarms))
            .and_then(|_| {
                let frames: Vec<_> = marks
                    .iter()
                    .filter_map(|m| match m {
                        Mark::Frame(f) => Some(f.clone()),
                        Mark::Mqtt(_) => None,
                    })
                    .collect();
                frames::apply(&tx, &frames)
            })
            .and_then(|_| {
                let mqtt: Vec<_> = marks
                    .iter()
                    .filter_map(|m| match m {
                        Mark::Mqtt(m) => Some(m),
                        Mark::Frame(_) => None,
                    })
                    .collect();
                mqtt::apply(&tx, &mqtt)
            })
            .and_then(|_| tx.commit());
        result.map_err(|e| self.err(e))?;
        self.gaps.extend(gaps);
        if let Some(gap_seq) = gap_seq {
            tracing::debug!(spool = %self.path.display(), gap_seq, "gap batch committed");
        }
        if let Some(b) = bound {
            // The batch is committed: a failed checkpoint must not make the
            // caller store it again.
            if let Err(error) = self.checkpoint_if_over(b.bytes + 1) {
                tracing::warn!(spool = %self.path.display(), %error, "WAL checkpoint after a commit failed; the spool may stay above max_bytes until the next one");
            }
        }
        Ok(batch.seq)
    }

    /// Record `batch`, which the spool refused until the agent had to stop,
    /// as a gap (reason `full`): a row in `gaps`, the drop counters, and a
    /// gap batch in the priority lane telling the relay which interval is
    /// missing. Uses the reserve if the disk is full. The alarm events the
    /// batch carried are not applied (they are logged by the caller).
    pub fn record_unstored(&mut self, batch: &Batch, now_us: i64) -> Result<(), SpoolError> {
        let (first_us, last_us) = interval(batch);
        let gap = Gap {
            reason: DropReason::Full,
            first_us,
            last_us,
            readings: batch.reading_count() as u64,
            batches: 1,
        };
        self.record_gap(&batch.gateway_id, gap, now_us)
    }

    /// Record `gap` of `gateway_id` (readings lost before they reached the
    /// spool, or refused by it): a row in `gaps`, the drop counters, and a
    /// gap batch in the priority lane for the relay. Uses the reserve if the
    /// disk is full.
    pub fn record_gap(
        &mut self,
        gateway_id: &str,
        gap: Gap,
        now_us: i64,
    ) -> Result<(), SpoolError> {
        let attempt = |s: &mut Spool| -> Result<(), SpoolError> {
            let path = s.path.clone();
            let e = |e| sqlite_error(&path, e);
            let tx = s.conn.transaction().map_err(e)?;
            let next: Option<i64> = tx
                .query_row("SELECT value FROM meta WHERE key = 'next_seq'", [], |r| {
                    r.get(0)
                })
                .optional()
                .map_err(e)?;
            let seq = next.unwrap_or(1) as u64;
            let mut recorded = Vec::new();
            bounds::record(&tx, Some(gap), now_us, &mut recorded).map_err(e)?;
            let took = carrier::carry(
                &tx, &path, gateway_id, s.instance, seq, now_us, &recorded, None,
            )?;
            if took {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('next_seq', ?1)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    params![seq as i64 + 1],
                )
                .map_err(e)?;
            }
            tx.commit().map_err(e)?;
            s.gaps.extend(recorded);
            Ok(())
        };
        match attempt(self) {
            Err(SpoolError::Full {
                cause: FullCause::DiskFull,
                ..
            }) => {
                self.hit_disk_end = true;
                self.use_reserve();
                attempt(self)
            }
            other => other,
        }
    }
}
