//! The decode budget: a count of bytes shared by all requests, taken
//! before a batch is decoded and given back when its request ends.
//!
//! Invariants (guarded by the tests below):
//! - The bytes reserved at once never exceed the total. A request asking
//!   for more than the whole budget is given the whole budget (it then runs
//!   alone), so a budget smaller than one batch's bound slows the relay
//!   down but never refuses a batch outright.
//! - A reservation is given back when it is dropped, however the request
//!   ends (answered, client gone, handler cancelled), and waiters wake.
//! - A waiter gives up after the configured wait with [`Busy`]. Waiters are
//!   not served in order: a small reservation can pass a large one that
//!   does not fit yet, so a bomb queue does not hold up small batches.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

/// The budget; share it as `Arc<DecodeBudget>`.
#[derive(Debug)]
pub struct DecodeBudget {
    total: usize,
    wait: Duration,
    used: Mutex<usize>,
    freed: Notify,
}

/// No budget within the wait: answer 503 with `Retry-After`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("relay busy: decoding this batch may hold {wanted} bytes and the decode budget of {total} bytes (admission.decode_budget_bytes) stayed in use for {waited_ms} ms; retry later")]
pub struct Busy {
    /// Bytes the request asked for (capped at the total).
    pub wanted: usize,
    /// The whole budget.
    pub total: usize,
    /// How long it waited.
    pub waited_ms: u64,
}

/// Bytes taken from a [`DecodeBudget`], given back on drop.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<DecodeBudget>,
    bytes: usize,
}

impl DecodeBudget {
    /// A budget of `total` bytes; a request waits at most `wait` for its share.
    pub fn new(total: usize, wait: Duration) -> Arc<DecodeBudget> {
        Arc::new(DecodeBudget {
            total,
            wait,
            used: Mutex::new(0),
            freed: Notify::new(),
        })
    }

    /// Bytes reserved now.
    pub fn in_use(&self) -> usize {
        *self.lock()
    }

    /// The whole budget.
    pub fn total(&self) -> usize {
        self.total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, usize> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn try_take(&self, bytes: usize) -> bool {
        let mut used = self.lock();
        if *used + bytes <= self.total {
            *used += bytes;
            true
        } else {
            false
        }
    }

    /// Reserve `bytes` (at most the total), waiting up to the configured
    /// wait for other requests to give theirs back.
    pub async fn reserve(self: &Arc<Self>, bytes: usize) -> Result<Reservation, Busy> {
        let bytes = bytes.min(self.total);
        let started = tokio::time::Instant::now();
        let deadline = started + self.wait;
        loop {
            // Registered before the check, so a release between the check
            // and the wait is not missed.
            let notified = self.freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.try_take(bytes) {
                return Ok(Reservation {
                    budget: self.clone(),
                    bytes,
                });
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(Busy {
                    wanted: bytes,
                    total: self.total,
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
        }
    }
}

impl Reservation {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Give back all but `bytes` (no-op if it holds less).
    pub fn shrink_to(&mut self, bytes: usize) {
        if bytes < self.bytes {
            self.budget.give_back(self.bytes - bytes);
            self.bytes = bytes;
        }
    }
}

impl DecodeBudget {
    fn give_back(&self, bytes: usize) {
        *self.lock() -= bytes;
        self.freed.notify_waiters();
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(100);

    #[tokio::test(start_paused = true)]
    async fn reservations_never_exceed_the_total_and_come_back_on_drop() {
        let budget = DecodeBudget::new(100, WAIT);
        let a = budget.reserve(60).await.unwrap();
        let b = budget.reserve(40).await.unwrap();
        assert_eq!(budget.in_use(), 100);
        let busy = budget.reserve(1).await.unwrap_err();
        assert_eq!(
            busy,
            Busy {
                wanted: 1,
                total: 100,
                waited_ms: 100
            }
        );
        drop(a);
        assert_eq!(budget.in_use(), 40);
        drop(b);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn more_than_the_total_gets_the_whole_budget() {
        let budget = DecodeBudget::new(100, WAIT);
        let all = budget.reserve(1_000).await.unwrap();
        assert_eq!(all.bytes(), 100);
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_is_served_when_bytes_come_back_within_the_wait() {
        let budget = DecodeBudget::new(100, WAIT);
        let mut held = budget.reserve(100).await.unwrap();
        let waiter = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(30).await.map(|r| r.bytes()) })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        held.shrink_to(70);
        assert_eq!(waiter.await.unwrap(), Ok(30));
        assert_eq!(budget.in_use(), 70);
    }

    #[tokio::test(start_paused = true)]
    async fn a_small_reservation_passes_a_large_waiter_that_does_not_fit() {
        let budget = DecodeBudget::new(100, WAIT);
        let _held = budget.reserve(50).await.unwrap();
        let large = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.reserve(80).await.map(|r| r.bytes()) })
        };
        tokio::task::yield_now().await;
        let small = budget.reserve(40).await.unwrap();
        assert_eq!(small.bytes(), 40);
        assert!(large.await.unwrap().is_err());
    }
}
