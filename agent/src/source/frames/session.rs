//! One microcontroller's session, as a pure state machine: messages in
//! (with the time they arrived), decisions out. No I/O, no clock.
//!
//! Rules, each decided here once:
//! - **Birth.** Samples are accepted only after a birth. A birth with a new
//!   `boot_id` (a reboot, or the first) starts a new session: the sequence
//!   starts over and the channel table is replaced. A repeated birth of the
//!   same boot (the device was asked for it, or the cable was pulled) keeps
//!   the sequence, so resent samples are still recognised. Every birth is
//!   answered with a time sync.
//! - **Samples before a birth** (the agent restarted under a running
//!   device; the first samples of a session are never counted as a gap)
//!   are refused with `Nack(NoBirth)`: the device sends its birth
//!   again and resends.
//! - **Sequence.** Within a boot, every `seq` is taken once: a resend of
//!   one already taken is a duplicate (acknowledged again once committed,
//!   never taken again). Samples may arrive out of order (one was corrupted
//!   on the wire and is resent after later ones): they are taken as they
//!   come, and [`Session::settled_through`] (what a cumulative `Ack` may
//!   cover) only advances over an unbroken run, so the device keeps and
//!   resends the one that is missing. Where a session starts is learnt, not
//!   guessed: a boot whose seq 0 has arrived settles from 0 at once;
//!   otherwise (the agent started under a running device) nothing is
//!   settled for [`SETTLE_AFTER`] after the birth (the device resends
//!   everything it holds within its resend timeout, which must be shorter),
//!   then everything below the oldest seq seen is taken as acknowledged by
//!   an earlier agent process.
//! - **Device drops.** `dropped = k` in a samples message means the device's
//!   ring overflowed and it gave up its `k` oldest unacknowledged samples:
//!   the `k` seqs after the settled run. Those not taken are lost, reported
//!   as `lost` with the message that brought the count.
//! - **Unknown channel.** A reading of a channel the birth did not announce
//!   makes the whole message refused (`Nack(UnknownChannel)`), never guessed.
//! - **Time.** Device ticks become time through the smallest
//!   `arrival - ticks / tick_hz` seen this boot: a frame can only arrive
//!   after it was taken, so the smallest offset is the closest to the
//!   device's real clock, and a resend of an old sample keeps its own time.
//!
//! Series are named `<name>.<channel>`, `<name>` being the configured name
//! or, without one, the device id from the birth.

use std::collections::BTreeMap;

use firmware_shim::{Birth, Message, NackReason};

/// How long after a birth the agent waits for the device's resends before
/// it settles the start of the session (and sends its first ack).
pub const SETTLE_AFTER_US: i64 = 2_000_000;
/// [`SETTLE_AFTER_US`] for the docs.
pub const SETTLE_AFTER: std::time::Duration =
    std::time::Duration::from_micros(SETTLE_AFTER_US as u64);

/// Most seqs a session tracks out of order (and most drops it tracks one
/// by one): far more than a device ring holds. Past it, the samples the
/// device never sent are counted lost and no longer waited for, so a
/// broken or hostile device cannot grow the agent's memory.
pub const MAX_TRACKED: u32 = 4096;

/// A channel of the birth's table, as the agent uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelInfo {
    /// Full series name, `<name>.<channel>`.
    pub series: String,
    pub unit: String,
    pub scale: f64,
}

/// One value to hand to the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub channel: u8,
    pub ts_us: i64,
    pub value: f64,
}

/// What to do after a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// A birth: answer with a time sync. `new_boot`: the channel table
    /// (see [`Session::channel`]) is new.
    Birth { new_boot: bool },
    /// Take these values; `seq` may be acknowledged once they are committed
    /// and it is settled. `lost`: samples messages the device dropped that
    /// were never taken.
    Take {
        seq: u32,
        values: Vec<Value>,
        lost: u32,
    },
    /// A resend of `seq`, taken before: nothing to take.
    Duplicate { seq: u32 },
    /// Refuse `seq` with this reason.
    Refuse { seq: u32, reason: NackReason },
    /// A heartbeat: nothing to take, the device is alive.
    Alive,
    /// A message only the agent sends (time sync, ack, nack): ignored.
    Ignore,
}

/// The state of one device link.
#[derive(Debug, Default)]
pub struct Session {
    /// The configured series prefix, if any.
    name: Option<String>,
    boot: Option<Boot>,
}

#[derive(Debug)]
struct Boot {
    device_id: String,
    boot_id: u32,
    tick_hz: u32,
    channels: BTreeMap<u8, ChannelInfo>,
    /// Every seq up to this one is taken or given up by the device (-1:
    /// none before 0); `None` until the session's start is settled.
    settled: Option<i64>,
    /// When the birth arrived.
    born_us: i64,
    /// Seqs above `settled` taken (or known dropped) out of order.
    ahead: std::collections::BTreeSet<u32>,
    /// The last cumulative ack sent.
    acked: Option<u32>,
    /// Smallest arrival minus device time seen, µs.
    offset_us: Option<i64>,
}

impl Session {
    pub fn new(name: Option<String>) -> Session {
        Session { name, boot: None }
    }

    /// The device id of the last birth.
    pub fn device_id(&self) -> Option<&str> {
        self.boot.as_ref().map(|b| b.device_id.as_str())
    }

    /// The series prefix: the configured name, else the device id.
    pub fn prefix(&self) -> Option<&str> {
        self.name.as_deref().or(self.device_id())
    }

    /// A channel of the current birth.
    pub fn channel(&self, index: u8) -> Option<&ChannelInfo> {
        self.boot.as_ref()?.channels.get(&index)
    }

    /// Every channel of the current birth, by index.
    pub fn channels(&self) -> impl Iterator<Item = (&u8, &ChannelInfo)> {
        self.boot.iter().flat_map(|b| b.channels.iter())
    }

    /// Decide what to do with `msg`, which arrived at `now_us`.
    pub fn on_message(&mut self, msg: Message, now_us: i64) -> Decision {
        match msg {
            Message::Birth(b) => self.birth(b, now_us),
            Message::Samples(s) => {
                let Some(boot) = self.boot.as_mut() else {
                    return Decision::Refuse {
                        seq: s.seq,
                        reason: NackReason::NoBirth,
                    };
                };
                if s.readings
                    .iter()
                    .any(|r| !boot.channels.contains_key(&r.channel))
                {
                    return Decision::Refuse {
                        seq: s.seq,
                        reason: NackReason::UnknownChannel,
                    };
                }
                boot.settle(now_us);
                if boot.is_taken(s.seq) {
                    return Decision::Duplicate { seq: s.seq };
                }
                // The device's ring starts after what it was acknowledged.
                let front = boot
                    .acked
                    .map(i64::from)
                    .or(boot.settled)
                    .or(boot.ahead.first().map(|&a| i64::from(a) - 1))
                    .unwrap_or(i64::from(s.seq) - 1);
                let mut lost = 0;
                if s.dropped > MAX_TRACKED {
                    // More than any ring holds: give up everything below
                    // this sample rather than track each seq.
                    lost = s.dropped;
                    boot.give_up_below(s.seq);
                } else {
                    for d in (1..=i64::from(s.dropped)).map(|k| front + k) {
                        let Ok(d) = u32::try_from(d) else { continue };
                        if d != s.seq && !boot.is_taken(d) {
                            boot.ahead.insert(d);
                            lost += 1;
                        }
                    }
                }
                boot.ahead.insert(s.seq);
                boot.settle(now_us);
                if boot.ahead.len() > MAX_TRACKED as usize {
                    // A hole the device never fills (no resend comes):
                    // stop waiting for it, so acks and memory stay bounded.
                    let lowest = *boot.ahead.first().expect("not empty");
                    let holes = boot.holes_below(lowest);
                    lost += holes;
                    boot.give_up_below(lowest);
                    boot.settle(now_us);
                }
                let ts_us = boot.time_of(s.ticks, now_us);
                let values = s
                    .readings
                    .iter()
                    .map(|r| Value {
                        channel: r.channel,
                        ts_us,
                        value: f64::from(r.value) * boot.channels[&r.channel].scale,
                    })
                    .collect();
                Decision::Take {
                    seq: s.seq,
                    values,
                    lost,
                }
            }
            Message::Heartbeat { ticks } => {
                if let Some(boot) = self.boot.as_mut() {
                    boot.time_of(ticks, now_us);
                }
                Decision::Alive
            }
            Message::TimeSync { .. } | Message::Ack(_) | Message::Nack(_) => Decision::Ignore,
        }
    }

    fn birth(&mut self, b: Birth, now_us: i64) -> Decision {
        let same_boot = self
            .boot
            .as_ref()
            .is_some_and(|o| o.boot_id == b.boot_id && o.device_id == b.device_id.as_str());
        let prefix = self.name.clone().unwrap_or_else(|| b.device_id.to_string());
        let channels = b
            .channels
            .iter()
            .map(|c| {
                (
                    c.index,
                    ChannelInfo {
                        series: format!("{prefix}.{}", c.name),
                        unit: c.unit.to_string(),
                        scale: c.scale.map_or(1.0, f64::from),
                    },
                )
            })
            .collect();
        let (settled, ahead, acked, offset_us, born_us) = match (self.boot.take(), same_boot) {
            (Some(o), true) => (o.settled, o.ahead, o.acked, o.offset_us, o.born_us),
            _ => (None, Default::default(), None, None, now_us),
        };
        self.boot = Some(Boot {
            device_id: b.device_id.to_string(),
            boot_id: b.boot_id,
            tick_hz: b.tick_hz.max(1),
            channels,
            settled,
            born_us,
            ahead,
            acked,
            offset_us,
        });
        Decision::Birth {
            new_boot: !same_boot,
        }
    }
}

impl Session {
    /// Every seq of this boot up to the returned one is taken or given up
    /// by the device: what a cumulative `Ack` may cover once the taken ones
    /// are committed.
    pub fn settled_through(&mut self, now_us: i64) -> Option<u32> {
        let boot = self.boot.as_mut()?;
        boot.settle(now_us);
        boot.settled.and_then(|s| u32::try_from(s).ok())
    }

    /// The boot id of the last birth.
    pub fn boot_id(&self) -> Option<u32> {
        self.boot.as_ref().map(|b| b.boot_id)
    }

    /// Every seq of this boot up to the returned one is taken or given up
    /// (-1: none before seq 0); `None` while the start is not settled. What
    /// a [`crate::spool::frames::FrameMark`] records.
    pub fn settled(&self) -> Option<i64> {
        self.boot.as_ref()?.settled
    }

    /// Right after a new boot's birth: what an earlier agent process
    /// committed of this boot (from the spool), so that the device's
    /// resends of those samples are duplicates, not taken again, and the
    /// start of the session is known without waiting [`SETTLE_AFTER`].
    /// Ignored when `boot_id` is not the current boot's.
    pub fn restore(&mut self, boot_id: u32, settled: Option<i64>, taken: &[u32]) {
        let Some(boot) = self.boot.as_mut().filter(|b| b.boot_id == boot_id) else {
            return;
        };
        if boot.settled.is_none_or(|l| settled.is_some_and(|s| s > l)) {
            boot.settled = settled;
        }
        let floor = boot.settled.unwrap_or(-1);
        boot.ahead
            .extend(taken.iter().copied().take(MAX_TRACKED as usize));
        boot.ahead.retain(|&t| i64::from(t) > floor);
        // Fold a run that starts at the floor into it (never settling an
        // unsettled start early: no time has passed since the birth).
        let born = boot.born_us;
        boot.settle(born);
    }

    /// A cumulative `Ack` of `seq` was sent to the device.
    pub fn acked(&mut self, seq: u32) {
        if let Some(b) = self.boot.as_mut() {
            b.acked = Some(seq);
        }
    }
}

impl Boot {
    /// Seqs between the settled run and `seq` that were never taken.
    fn holes_below(&self, seq: u32) -> u32 {
        let from = self.settled.map_or(i64::from(seq), |l| l + 1);
        (from..i64::from(seq))
            .filter(|&d| u32::try_from(d).is_ok_and(|d| !self.ahead.contains(&d)))
            .count() as u32
    }

    /// Settle everything below `seq` (taken or not).
    fn give_up_below(&mut self, seq: u32) {
        let below = i64::from(seq) - 1;
        if self.settled.is_none_or(|l| l < below) {
            self.settled = Some(below);
        }
        self.ahead = self.ahead.split_off(&seq);
    }

    fn is_taken(&self, seq: u32) -> bool {
        self.settled.is_some_and(|l| i64::from(seq) <= l) || self.ahead.contains(&seq)
    }

    /// Once [`SETTLE_AFTER_US`] has passed since the birth, settle the
    /// start below the oldest seq seen; then move `settled` over the run of
    /// seqs taken out of order.
    fn settle(&mut self, now_us: i64) {
        // Nothing is below seq 0: a fresh boot settles at once.
        let fresh = self.ahead.first() == Some(&0);
        if self.settled.is_none() && (fresh || now_us - self.born_us >= SETTLE_AFTER_US) {
            self.settled = self.ahead.first().map(|&a| i64::from(a) - 1);
        }
        while let Some(s) = self.settled {
            let Ok(next) = u32::try_from(s + 1) else {
                break;
            };
            if !self.ahead.remove(&next) {
                break;
            }
            self.settled = Some(i64::from(next));
        }
    }

    /// The time of device `ticks`, learning the offset from this arrival.
    fn time_of(&mut self, ticks: u64, now_us: i64) -> i64 {
        let device_us = (ticks as i128 * 1_000_000 / i128::from(self.tick_hz)) as i64;
        let offset = now_us - device_us;
        let best = self.offset_us.map_or(offset, |o| o.min(offset));
        self.offset_us = Some(best);
        device_us + best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmware_shim::heapless;
    use firmware_shim::{Channel, ChannelKind, Reading, Samples};

    fn birth(boot_id: u32) -> Message {
        let mut channels = heapless::Vec::new();
        channels
            .push(Channel {
                index: 0,
                name: heapless::String::try_from("temperature").unwrap(),
                unit: heapless::String::try_from("degC").unwrap(),
                kind: ChannelKind::Analog,
                scale: None,
            })
            .unwrap();
        channels
            .push(Channel {
                index: 3,
                name: heapless::String::try_from("current").unwrap(),
                unit: heapless::String::try_from("A").unwrap(),
                kind: ChannelKind::Analog,
                scale: Some(0.5),
            })
            .unwrap();
        Message::Birth(Birth {
            device_id: heapless::String::try_from("mcu-7").unwrap(),
            fw_version: [1, 2, 3],
            boot_id,
            tick_hz: 1000,
            channels,
        })
    }

    fn samples(seq: u32, ticks: u64, dropped: u32, channels: &[(u8, f32)]) -> Message {
        Message::Samples(Samples {
            seq,
            ticks,
            dropped,
            readings: channels
                .iter()
                .map(|&(channel, value)| Reading { channel, value })
                .collect(),
        })
    }

    const S: i64 = 1_000_000;

    #[test]
    fn a_session_table() {
        // (message, arrival s, expected decision) in order, one session.
        let mut s = Session::new(None);
        let take = |seq, ts_s: i64, values: &[(u8, f64)], lost| Decision::Take {
            seq,
            values: values
                .iter()
                .map(|&(channel, value)| Value {
                    channel,
                    ts_us: ts_s * S,
                    value,
                })
                .collect(),
            lost,
        };
        let steps: Vec<(Message, i64, Decision)> = vec![
            // The agent started under a running device.
            (
                samples(5, 1000, 0, &[(0, 20.0)]),
                100,
                Decision::Refuse {
                    seq: 5,
                    reason: NackReason::NoBirth,
                },
            ),
            (birth(1), 100, Decision::Birth { new_boot: true }),
            // Device tick 1000 ms arrives at 101 s: offset 100 s. Scale 0.5.
            (
                samples(5, 1000, 0, &[(0, 20.0), (3, 4.0)]),
                101,
                take(5, 101, &[(0, 20.0), (3, 2.0)], 0),
            ),
            // A resend of 5 (its ack was lost).
            (
                samples(5, 1000, 0, &[(0, 20.0)]),
                103,
                Decision::Duplicate { seq: 5 },
            ),
            // 6 and 7 dropped by the full ring; 8 says so. It arrives late
            // (offset 101 s): the smaller offset stays.
            (
                samples(8, 4000, 2, &[(0, 21.0)]),
                105,
                take(8, 104, &[(0, 21.0)], 2),
            ),
            // A channel the birth did not announce.
            (
                samples(9, 5000, 0, &[(1, 1.0)]),
                106,
                Decision::Refuse {
                    seq: 9,
                    reason: NackReason::UnknownChannel,
                },
            ),
            // The same boot's birth again (cable pulled): the sequence stays.
            (birth(1), 107, Decision::Birth { new_boot: false }),
            (
                samples(8, 4000, 0, &[(0, 21.0)]),
                107,
                Decision::Duplicate { seq: 8 },
            ),
            (Message::Heartbeat { ticks: 6000 }, 107, Decision::Alive),
            // A reboot: a new boot id, the sequence starts over, a new clock.
            (birth(2), 200, Decision::Birth { new_boot: true }),
            (
                samples(0, 10, 0, &[(0, 19.0)]),
                200,
                Decision::Take {
                    seq: 0,
                    values: vec![Value {
                        channel: 0,
                        ts_us: 200 * S,
                        value: 19.0,
                    }],
                    lost: 0,
                },
            ),
            (
                Message::Ack(firmware_shim::Ack { seq: 1 }),
                201,
                Decision::Ignore,
            ),
        ];
        for (i, (msg, at, want)) in steps.into_iter().enumerate() {
            let got = s.on_message(msg, at * S);
            assert_eq!(got, want, "step {i}");
        }
        assert_eq!(s.device_id(), Some("mcu-7"));
        assert_eq!(s.channel(3).unwrap().series, "mcu-7.current");
        assert_eq!(s.channel(3).unwrap().unit, "A");
    }

    /// Send samples `seq` with `dropped` at 1 s; `Some(lost)` when taken.
    fn take(s: &mut Session, seq: u32, dropped: u32) -> Option<u32> {
        match s.on_message(samples(seq, 0, dropped, &[(0, 1.0)]), S) {
            Decision::Take { lost, .. } => Some(lost),
            _ => None,
        }
    }

    #[test]
    fn out_of_order_samples_settle_only_an_unbroken_run() {
        let mut s = Session::new(None);
        s.on_message(birth(1), 0);
        assert_eq!(take(&mut s, 0, 0), Some(0));
        // A fresh boot (its seq 0 is here) settles at once, in the grace.
        assert_eq!(s.settled_through(S), Some(0));
        // 1 corrupted on the wire; 2 and 3 come first.
        assert_eq!(take(&mut s, 2, 0), Some(0));
        assert_eq!(take(&mut s, 3, 0), Some(0));
        assert_eq!(s.settled_through(10 * S), Some(0), "1 is still missing");
        assert_eq!(
            s.on_message(samples(2, 0, 0, &[(0, 1.0)]), S),
            Decision::Duplicate { seq: 2 }
        );
        assert_eq!(take(&mut s, 1, 0), Some(0));
        assert_eq!(s.settled_through(10 * S), Some(3));
        // Acked through 3; the ring then gave up 4 and 5 (6 was taken out of
        // order before): 7 reports 3 dropped, of which 4 and 5 are lost.
        s.acked(3);
        assert_eq!(take(&mut s, 6, 0), Some(0));
        assert_eq!(take(&mut s, 7, 3), Some(2));
        assert_eq!(s.settled_through(10 * S), Some(7));
    }

    /// A second agent process, restored from what the first committed of
    /// the boot: the device's resends of those are duplicates, the rest is
    /// taken once, and with a floor nothing waits for the grace.
    #[rustfmt::skip]
    #[test]
    fn a_restored_session_takes_only_what_was_not_committed() {
        // (settled, taken above it, seqs resent in order, taken of them, settled after)
        type Row<'a> = (Option<i64>, &'a [u32], &'a [u32], &'a [u32], Option<u32>);
        let table: &[Row] = &[
            // Committed through 9, and 11 and 12 out of order (10 was
            // corrupted): the resends 10..=14 take 10, 13 and 14.
            (Some(9), &[11, 12], &[10, 11, 12, 13, 14], &[10, 13, 14], Some(14)),
            // Committed 0..=5 settled, nothing above: 6 on is new.
            (Some(5), &[], &[4, 5, 6, 7], &[6, 7], Some(7)),
            // Killed within the grace of a start under a running device:
            // no floor, the seqs are known; the start settles after the grace
            // below the oldest one seen.
            (None, &[40, 41], &[40, 41, 42], &[42], None),
            // A fresh boot killed right away: seq 0 was committed.
            (Some(-1), &[0, 1], &[0, 1, 2], &[2], Some(2)),
        ];
        for (i, &(settled, taken, resent, want_taken, want_settled)) in table.iter().enumerate() {
            let mut s = Session::new(None);
            s.on_message(birth(1), 0);
            s.restore(1, settled, taken);
            let got: Vec<u32> = resent.iter().filter(|&&q| take(&mut s, q, 0).is_some()).copied().collect();
            assert_eq!(got, want_taken, "row {i}");
            assert_eq!(s.settled_through(S), want_settled, "row {i}");
        }
        // The grace case settles below the oldest seq seen, restored ones included.
        let mut s = Session::new(None);
        s.on_message(birth(1), 0);
        s.restore(1, None, &[40, 41]);
        take(&mut s, 42, 0);
        assert_eq!(s.settled_through(SETTLE_AFTER_US + S), Some(42));
        // Progress of another boot is not this one's.
        let mut s = Session::new(None);
        s.on_message(birth(2), 0);
        s.restore(1, Some(9), &[]);
        assert_eq!(take(&mut s, 5, 0), Some(0));
        assert_eq!(s.settled(), None);
    }

    #[test]
    fn an_agent_started_under_a_running_device_waits_for_its_resends() {
        let mut s = Session::new(None);
        s.on_message(birth(1), 0);
        // The newest sample comes before the resends of older ones.
        assert_eq!(take(&mut s, 40, 0), Some(0));
        assert_eq!(s.settled_through(S), None, "within the grace: no ack");
        assert_eq!(take(&mut s, 38, 0), Some(0));
        assert_eq!(take(&mut s, 39, 0), Some(0));
        // After the grace, everything below the oldest seen is settled.
        assert_eq!(s.settled_through(SETTLE_AFTER_US), Some(40));
        assert_eq!(take(&mut s, 39, 0), None, "a duplicate");
    }

    #[test]
    fn a_device_that_never_fills_a_hole_or_reports_huge_drops_stays_bounded() {
        let mut s = Session::new(None);
        s.on_message(birth(1), 0);
        assert_eq!(take(&mut s, 0, 0), Some(0));
        // 1 never comes; 2.. keep coming. Past MAX_TRACKED the hole is
        // given up, counted once as lost, and the acks move on.
        let mut lost = 0;
        for seq in 2..=MAX_TRACKED + 2 {
            lost += take(&mut s, seq, 0).unwrap();
        }
        assert_eq!(lost, 1);
        assert_eq!(s.settled_through(S), Some(MAX_TRACKED + 2));
        // A drop count no ring can have is taken at its word, not tracked.
        let seq = MAX_TRACKED + 10;
        assert_eq!(take(&mut s, seq, u32::MAX), Some(u32::MAX));
        assert_eq!(s.settled_through(S), Some(seq));
        assert!(s.boot.as_ref().unwrap().ahead.is_empty());
    }

    #[test]
    fn a_configured_name_prefixes_the_series() {
        let mut s = Session::new(Some("vib-1".into()));
        s.on_message(birth(9), 0);
        assert_eq!(s.channel(0).unwrap().series, "vib-1.temperature");
        assert_eq!(s.prefix(), Some("vib-1"));
    }
}
