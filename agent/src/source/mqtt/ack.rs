//! When a QoS 1 message may be acknowledged to the broker: only once the
//! readings made from it are committed to the spool, so that a crash never
//! loses a message the broker has already forgotten.
//!
//! A pure queue over two counters the source can read without touching the
//! pipeline:
//! - `readings_produced`: every source counts a reading *before* sending it
//!   into the channel. Read just after a message's readings were sent, it
//!   counts those readings and every reading ahead of them in the channel.
//! - `readings_spooled + readings_dropped + readings_filtered`
//!   ([`AgentStats::readings_settled`](crate::stats::AgentStats::readings_settled)):
//!   readings the pipeline has committed (or given up on after a spool
//!   failure, which it logs and counts, or held back by report by
//!   exception, counted only once what came before them is committed).
//!   The pipeline commits in channel order, so once this reaches the first
//!   count, the message's readings are settled.
//!
//! The first count also includes readings produced but not yet sent; that
//! only delays an acknowledgement, never advances it.

use std::collections::VecDeque;

/// Messages (of type `T`, a [`super::client::Message`] in the source) waiting for
/// their readings to be committed, oldest first.
#[derive(Debug)]
pub struct AckQueue<T> {
    /// (readings produced when the message's readings were sent, message).
    waiting: VecDeque<(u64, T)>,
}

impl<T> Default for AckQueue<T> {
    fn default() -> Self {
        AckQueue {
            waiting: VecDeque::new(),
        }
    }
}

impl<T> AckQueue<T> {
    /// A message whose readings were just sent; `produced` is
    /// `readings_produced` read after the last send.
    pub fn sent(&mut self, message: T, produced: u64) {
        self.waiting.push_back((produced, message));
    }

    /// The messages that may be acknowledged now that `settled` readings
    /// (spooled plus dropped) are behind the pipeline.
    pub fn committed(&mut self, settled: u64) -> Vec<T> {
        let mut ready = Vec::new();
        while self.waiting.front().is_some_and(|(at, _)| settled >= *at) {
            ready.extend(self.waiting.pop_front().map(|(_, m)| m));
        }
        ready
    }

    /// Messages returned by [`AckQueue::committed`] that could not be
    /// acknowledged yet, oldest first: they are the first ones released by
    /// the next call.
    pub fn put_back(&mut self, messages: impl DoubleEndedIterator<Item = T>) {
        for m in messages.rev() {
            self.waiting.push_front((0, m));
        }
    }

    /// Forget every message: after a reconnect their packet ids belong to
    /// the old connection, and the broker redelivers what a persistent
    /// session still holds.
    pub fn clear(&mut self) {
        self.waiting.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_released_once_the_readings_before_it_are_settled() {
        let mut q = AckQueue::default();
        q.sent("a", 3);
        q.sent("b", 7);
        assert!(q.committed(2).is_empty());
        assert_eq!(q.committed(3), ["a"]);
        assert!(q.committed(6).is_empty());
        q.sent("c", 8);
        assert_eq!(q.committed(100), ["b", "c"]);
        assert!(q.is_empty());
    }

    #[test]
    fn messages_put_back_come_first_in_their_order() {
        let mut q = AckQueue::default();
        q.sent("a", 1);
        q.sent("b", 2);
        q.sent("c", 9);
        let ready = q.committed(2);
        assert_eq!(ready, ["a", "b"]);
        q.put_back(ready.into_iter());
        assert_eq!(q.committed(0), ["a", "b"]);
        assert!(q.committed(8).is_empty());
        assert_eq!(q.committed(9), ["c"]);
    }

    #[test]
    fn a_reconnect_forgets_every_pending_message() {
        let mut q = AckQueue::default();
        q.sent(1, 1);
        q.clear();
        assert!(q.is_empty());
        assert!(q.committed(10).is_empty());
    }
}
