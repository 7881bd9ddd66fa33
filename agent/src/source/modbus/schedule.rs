//! When each poll group of each device on one link is due, and which one a
//! link serves next. Pure: no sockets, no clock; the caller passes `now`.
//!
//! A link (one TCP connection, or one serial line) carries one transaction
//! at a time, so its devices' poll groups take turns:
//!
//! - the slot due earliest goes first; slots due at the same instant are
//!   served round-robin from the one after the last served, so on a line
//!   that cannot keep up every device still gets its turn in order;
//! - a device that is down is held until its backoff ends
//!   ([`Schedule::next`] takes each device's hold), so it costs the line one
//!   failed request per backoff period and never delays the others by more;
//! - a slot that fell behind is not polled again for every missed interval:
//!   its next due time is one interval after the poll, at the earliest now.
//!
//! Staggering: [`stagger`] spreads the first polls of many devices over one
//! interval, so a gateway with 100 devices does not send 100 requests in the
//! same millisecond at start-up and then at every interval.

use std::time::Duration;

use tokio::time::Instant;

/// One poll group of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Index of the device on the link.
    pub device: usize,
    /// Index of the poll group in the device's groups.
    pub group: usize,
    pub interval: Duration,
    pub due: Instant,
}

/// The slots of one link and whose turn it is.
#[derive(Debug, Clone)]
pub struct Schedule {
    slots: Vec<Slot>,
    /// The slot after the last one served: first in line among equals.
    cursor: usize,
}

/// Offset of the first poll of device `k` of `n` with this interval: the
/// devices' first polls are spread evenly over one interval.
pub fn stagger(k: usize, n: usize, interval: Duration) -> Duration {
    if n <= 1 {
        return Duration::ZERO;
    }
    interval.mul_f64((k % n) as f64 / n as f64)
}

impl Schedule {
    pub fn new(slots: Vec<Slot>) -> Schedule {
        Schedule { slots, cursor: 0 }
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    /// The slot to serve next and when: the earliest effective due time,
    /// where a device's slots wait at least until `hold(device)` (its
    /// backoff); ties go round-robin from the cursor. `None` without slots.
    pub fn next(&self, hold: impl Fn(usize) -> Option<Instant>) -> Option<(usize, Instant)> {
        let n = self.slots.len();
        (0..n)
            .map(|k| (self.cursor + k) % n)
            .map(|i| {
                let s = &self.slots[i];
                let at = hold(s.device).map_or(s.due, |h| h.max(s.due));
                (i, at)
            })
            // min_by_key keeps the first of equal keys: the one nearest the cursor.
            .min_by_key(|&(_, at)| at)
    }

    /// Record that slot `i` was polled at `now`: it is due again one
    /// interval after its due time, or one interval after now if it fell
    /// more than an interval behind.
    pub fn served(&mut self, i: usize, now: Instant) {
        let s = &mut self.slots[i];
        let next = s.due + s.interval;
        s.due = if next > now { next } else { now + s.interval };
        self.cursor = (i + 1) % self.slots.len();
    }

    /// Put slot `i` off until `until` without counting it as served (the
    /// link was down).
    pub fn defer(&mut self, i: usize, until: Instant) {
        let s = &mut self.slots[i];
        s.due = s.due.max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn slot(device: usize, group: usize, interval_ms: u64, due: Instant) -> Slot {
        Slot {
            device,
            group,
            interval: ms(interval_ms),
            due,
        }
    }

    /// Serve the schedule for `until` of simulated time, each poll taking
    /// `cost`; returns the (device, group) pairs in the order served.
    fn simulate(
        s: &mut Schedule,
        start: Instant,
        until: Duration,
        cost: Duration,
        hold: impl Fn(usize) -> Option<Instant>,
    ) -> Vec<(usize, usize)> {
        let mut now = start;
        let mut order = Vec::new();
        loop {
            let (i, at) = s.next(&hold).unwrap();
            if at.max(now) >= start + until {
                return order;
            }
            now = now.max(at);
            now += cost;
            order.push((s.slots()[i].device, s.slots()[i].group));
            s.served(i, now);
        }
    }

    #[test]
    fn stagger_spreads_first_polls_over_one_interval() {
        let i = ms(1000);
        let offsets: Vec<_> = (0..4).map(|k| stagger(k, 4, i)).collect();
        assert_eq!(offsets, [ms(0), ms(250), ms(500), ms(750)]);
        assert_eq!(stagger(0, 1, i), ms(0));
        assert_eq!(stagger(5, 4, i), ms(250), "k wraps around n");
        assert_eq!(stagger(0, 0, i), ms(0));
    }

    #[test]
    fn a_fast_group_is_polled_as_often_as_its_interval_says() {
        let t0 = Instant::now();
        let mut s = Schedule::new(vec![slot(0, 0, 1000, t0), slot(0, 1, 100, t0)]);
        let order = simulate(&mut s, t0, ms(2000), ms(1), |_| None);
        let groups: Vec<usize> = order.iter().map(|&(_, g)| g).collect();
        let fast = groups.iter().filter(|&&g| g == 1).count();
        let slow = groups.iter().filter(|&&g| g == 0).count();
        assert_eq!((fast, slow), (20, 2), "{groups:?}");
    }

    #[test]
    fn an_overloaded_line_serves_every_device_in_turn() {
        // Three devices want a poll every 10 ms, each poll takes 20 ms: the
        // line cannot keep up, and must not starve anyone.
        let t0 = Instant::now();
        let mut s = Schedule::new((0..3).map(|d| slot(d, 0, 10, t0)).collect());
        let order: Vec<usize> = simulate(&mut s, t0, ms(600), ms(20), |_| None)
            .into_iter()
            .map(|(d, _)| d)
            .collect();
        for w in order.chunks(3).filter(|c| c.len() == 3) {
            let mut w = w.to_vec();
            w.sort();
            assert_eq!(w, [0, 1, 2], "{order:?}");
        }
    }

    #[test]
    fn a_held_device_waits_and_the_others_keep_their_rate() {
        let t0 = Instant::now();
        let mut s = Schedule::new((0..3).map(|d| slot(d, 0, 100, t0)).collect());
        // Device 1 is down and backs off for 10 s.
        let hold = |d: usize| (d == 1).then(|| t0 + Duration::from_secs(10));
        let order = simulate(&mut s, t0, ms(1000), ms(5), hold);
        let count = |d| order.iter().filter(|&&(x, _)| x == d).count();
        assert_eq!(count(1), 0, "{order:?}");
        assert_eq!(count(0), 10);
        assert_eq!(count(2), 10);
    }

    #[test]
    fn a_late_slot_skips_missed_intervals() {
        let t0 = Instant::now();
        let mut s = Schedule::new(vec![slot(0, 0, 100, t0)]);
        s.served(0, t0 + ms(1000));
        assert_eq!(s.slots()[0].due, t0 + ms(1100));
        s.served(0, t0 + ms(1150));
        assert_eq!(s.slots()[0].due, t0 + ms(1200), "on time: keeps its phase");
    }

    #[test]
    fn defer_never_moves_a_slot_earlier() {
        let t0 = Instant::now();
        let mut s = Schedule::new(vec![slot(0, 0, 100, t0 + ms(500))]);
        s.defer(0, t0 + ms(100));
        assert_eq!(s.slots()[0].due, t0 + ms(500));
        s.defer(0, t0 + ms(900));
        assert_eq!(s.slots()[0].due, t0 + ms(900));
    }
}
