//! The alarm board shared by the pipeline (which applies every raise and
//! clear), the acknowledgement path ([`super::ack`], from MQTT or the
//! status page) and the readers (the local publisher's retained state, the
//! status page), with a ring of the most recent events.
//!
//! Invariants: only the pipeline applies raises and clears, and only the
//! acknowledgement path applies acknowledgements, each before anyone is
//! told of the event, so a reader never sees an acknowledgement undone by
//! a late copy of its raise; the history holds at most [`HISTORY`] events,
//! newest last (`history_is_a_bounded_ring`).

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use super::board::{AlarmBoard, RaisedAlarm};
use crate::reading::Alarm;

/// How many recent alarm events the status page lists.
pub const HISTORY: usize = 50;

/// The board and the recent events, each behind its own short lock.
#[derive(Debug)]
pub struct SharedAlarms {
    board: Mutex<AlarmBoard>,
    history: Mutex<VecDeque<Alarm>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SharedAlarms {
    /// Share `board` (seeded with the alarms raised before a restart).
    pub fn new(board: AlarmBoard) -> SharedAlarms {
        SharedAlarms {
            board: Mutex::new(board),
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }

    /// Apply one event to the board and remember it.
    pub fn apply(&self, a: &Alarm) {
        lock(&self.board).apply(a);
        let mut h = lock(&self.history);
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(a.clone());
    }

    /// Run `f` on the board (read only).
    pub fn with_board<T>(&self, f: impl FnOnce(&AlarmBoard) -> T) -> T {
        f(&lock(&self.board))
    }

    /// Every raised alarm.
    pub fn raised(&self) -> Vec<RaisedAlarm> {
        self.with_board(|b| b.raised())
    }

    /// The retained state message of `series` (see [`AlarmBoard::state_json`]).
    pub fn state_json(&self, series: &str) -> Vec<u8> {
        self.with_board(|b| b.state_json(series))
    }

    /// Series with at least one raised alarm.
    pub fn series_names(&self) -> Vec<String> {
        self.with_board(|b| b.series_names().map(Into::into).collect())
    }

    /// The recent events, oldest first.
    pub fn history(&self) -> Vec<Alarm> {
        lock(&self.history).iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reading::{AlarmState, SeriesInfo, Severity};
    use std::sync::Arc;

    fn event(i: i64, state: AlarmState) -> Alarm {
        Alarm {
            series: Arc::new(SeriesInfo {
                name: "press.temp".into(),
                unit: "°C".into(),
                tags: Default::default(),
            }),
            rule: "temp.high".into(),
            severity: Severity::Major,
            state,
            value: 80.0,
            limit: 50.0,
            ts_us: i,
            duration_us: None,
            limit_kind: None,
            spc: None,
        }
    }

    #[test]
    fn history_is_a_bounded_ring() {
        let shared = SharedAlarms::new(AlarmBoard::new("gw"));
        for i in 0..(HISTORY as i64 + 7) {
            let state = if i % 2 == 0 {
                AlarmState::Raised
            } else {
                AlarmState::Cleared
            };
            shared.apply(&event(i, state));
        }
        let h = shared.history();
        assert_eq!(h.len(), HISTORY);
        assert_eq!(h.first().unwrap().ts_us, 7, "the oldest fell out");
        assert_eq!(h.last().unwrap().ts_us, HISTORY as i64 + 6);
        // The last event (i = 56) was a raise.
        let raised = shared.raised();
        assert_eq!(raised.len(), 1);
        assert_eq!((raised[0].value, raised[0].acked_us), (Some(80.0), None));
    }
}
