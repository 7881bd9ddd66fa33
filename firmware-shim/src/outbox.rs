//! The device's outbox: a fixed-size ring of samples not yet acknowledged.
//!
//! A pure state machine: the caller passes `now` in device ticks and sends
//! whatever [`Outbox::poll`] hands back. Guarantees: a sample stays until an
//! [`Ack`] covers it (or a [`Nack`] says it can never be stored); it is resent
//! every `timeout` ticks, oldest first; when the ring is full the oldest is
//! dropped and the count travels in the next sample's `dropped` field, so the
//! agent can write a gap record instead of silently missing data.
use crate::message::{Ack, Nack, NackReason, Reading, Samples, MAX_READINGS};
use heapless::{Deque, Vec};

struct Entry {
    samples: Samples,
    /// Ticks of the last send; `None` = due now.
    sent_at: Option<u64>,
}

/// Unacknowledged samples, at most `N`.
pub struct Outbox<const N: usize> {
    ring: Deque<Entry, N>,
    next_seq: u32,
    dropped: u32,
    timeout: u64,
}

/// What the caller must do after a [`Nack`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NackAction {
    /// Send the birth again; everything pending will be resent.
    SendBirth,
    /// Nothing: the sample was removed (it can never be stored) or will be
    /// resent by [`Outbox::poll`].
    None,
}

impl<const N: usize> Outbox<N> {
    /// An empty outbox resending after `timeout` ticks without an ack.
    pub const fn new(timeout: u64) -> Self {
        Outbox {
            ring: Deque::new(),
            next_seq: 0,
            dropped: 0,
            timeout,
        }
    }

    /// Records readings taken at `ticks`; returns the samples message to send
    /// now (its `seq` and `dropped` filled in). Drops the oldest pending
    /// sample if the ring is full.
    pub fn record(&mut self, now: u64, readings: Vec<Reading, MAX_READINGS>) -> &Samples {
        if self.ring.is_full() {
            self.ring.pop_front();
            self.dropped = self.dropped.saturating_add(1);
        }
        let samples = Samples {
            seq: self.next_seq,
            ticks: now,
            dropped: core::mem::take(&mut self.dropped),
            readings,
        };
        self.next_seq = self.next_seq.wrapping_add(1);
        let entry = Entry {
            samples,
            sent_at: Some(now),
        };
        // Cannot fail: a slot was freed above if the ring was full.
        let _ = self.ring.push_back(entry);
        &self.ring.back().expect("just pushed").samples
    }

    /// Removes every pending sample with `seq <= ack.seq`; returns how many.
    pub fn ack(&mut self, ack: Ack) -> usize {
        let mut n = 0;
        while self.ring.front().is_some_and(|e| e.samples.seq <= ack.seq) {
            self.ring.pop_front();
            n += 1;
        }
        n
    }

    /// Applies a refusal.
    pub fn nack(&mut self, nack: Nack) -> NackAction {
        match nack.reason {
            NackReason::UnknownChannel => {
                let keep = self.ring.len();
                for _ in 0..keep {
                    if let Some(e) = self.ring.pop_front() {
                        if e.samples.seq != nack.seq {
                            let _ = self.ring.push_back(e);
                        }
                    }
                }
                NackAction::None
            }
            NackReason::Busy => {
                self.ring
                    .iter_mut()
                    .filter(|e| e.samples.seq == nack.seq)
                    .for_each(|e| e.sent_at = None);
                NackAction::None
            }
            NackReason::NoBirth => {
                self.ring.iter_mut().for_each(|e| e.sent_at = None);
                NackAction::SendBirth
            }
        }
    }

    /// The oldest sample due for a resend at `now`, marked as sent; `None`
    /// if nothing is due. Call until `None`.
    pub fn poll(&mut self, now: u64) -> Option<&Samples> {
        let timeout = self.timeout;
        let e = self.ring.iter_mut().find(|e| match e.sent_at {
            None => true,
            Some(t) => now.wrapping_sub(t) >= timeout,
        })?;
        e.sent_at = Some(now);
        Some(&e.samples)
    }

    /// Samples waiting for an ack.
    pub fn pending(&self) -> usize {
        self.ring.len()
    }

    /// Drops not yet reported in a samples message.
    pub fn unreported_drops(&self) -> u32 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(v: f32) -> Vec<Reading, MAX_READINGS> {
        Vec::from_slice(&[Reading {
            channel: 0,
            value: v,
        }])
        .unwrap()
    }

    enum Step {
        Record(u64),
        Acked(u32),
        Nacked(u32, NackReason),
        /// poll at now; expected seqs handed back, in order.
        Poll(u64, &'static [u32]),
        /// expected number pending.
        Expect(usize),
    }
    use Step::{Expect, Poll, Record};

    fn run<const N: usize>(name: &str, steps: &[Step]) -> heapless::Vec<(u32, u32), 32> {
        let mut o = Outbox::<N>::new(10);
        let mut recorded = heapless::Vec::new();
        for (i, s) in steps.iter().enumerate() {
            match *s {
                Record(now) => {
                    let smp = o.record(now, reading(now as f32));
                    recorded.push((smp.seq, smp.dropped)).unwrap();
                }
                Step::Acked(seq) => {
                    o.ack(Ack { seq });
                }
                Step::Nacked(seq, reason) => {
                    o.nack(Nack { seq, reason });
                }
                Poll(now, want) => {
                    let mut got: heapless::Vec<u32, 32> = heapless::Vec::new();
                    while let Some(smp) = o.poll(now) {
                        got.push(smp.seq).unwrap();
                    }
                    assert_eq!(&got[..], want, "{name}: step {i}");
                }
                Expect(pending) => assert_eq!(o.pending(), pending, "{name}: step {i}"),
            }
        }
        recorded
    }

    #[test]
    fn table() {
        run::<4>(
            "nothing due before the timeout",
            &[Record(0), Poll(9, &[]), Expect(1)],
        );
        run::<4>(
            "resent at the timeout, then not again until the next",
            &[
                Record(0),
                Record(5),
                Poll(10, &[0]),
                Poll(14, &[]),
                Poll(15, &[1]),
                Poll(20, &[0]),
            ],
        );
        run::<4>(
            "cumulative ack removes all up to seq",
            &[
                Record(0),
                Record(1),
                Record(2),
                Step::Acked(1),
                Expect(1),
                Poll(100, &[2]),
            ],
        );
        run::<4>(
            "stale ack is harmless",
            &[
                Record(0),
                Step::Acked(0),
                Step::Acked(0),
                Expect(0),
                Poll(100, &[]),
            ],
        );
        run::<4>(
            "busy nack resends that one now",
            &[
                Record(0),
                Record(1),
                Step::Nacked(1, NackReason::Busy),
                Poll(1, &[1]),
            ],
        );
        run::<4>(
            "unknown channel nack removes it",
            &[
                Record(0),
                Record(1),
                Step::Nacked(0, NackReason::UnknownChannel),
                Expect(1),
                Poll(50, &[1]),
            ],
        );
        run::<4>(
            "no-birth nack resends everything",
            &[
                Record(0),
                Record(1),
                Step::Nacked(0, NackReason::NoBirth),
                Poll(2, &[0, 1]),
            ],
        );
        run::<4>(
            "ticks wrap",
            &[Record(u64::MAX - 2), Poll(3, &[]), Poll(8, &[0])],
        );
    }

    #[test]
    fn full_ring_drops_oldest_and_reports_the_count_once() {
        let got = run::<2>(
            "overflow",
            &[
                Record(0),
                Record(1),
                Record(2),
                Record(3),
                Expect(2),
                Poll(100, &[2, 3]),
                Record(4),
            ],
        );
        // seq 2 dropped seq 0, seq 3 dropped seq 1, seq 4 dropped seq 2.
        assert_eq!(&got[..], &[(0, 0), (1, 0), (2, 1), (3, 1), (4, 1)][..]);
    }
}
