//! The device board: whether each device or connection behind a source is
//! talking, for the status page and for the device-state events the cloud
//! receives. Pure state: a source reports what its own health rule decided
//! (a Modbus device up after an answer, down after its retries; a block
//! answering with an exception; an MQTT connection lost) with the time, and
//! the board remembers it and says what changed.
//!
//! Guarantees:
//! - every device a source will report on is on the board from the start,
//!   in state [`DeviceState::Pending`] until its first outcome, so the page
//!   lists a device that never answered instead of leaving it out;
//! - a report that does not change the state returns no [`Transition`]: a
//!   dead device reported on every backoff attempt is one event, not one
//!   per attempt. A change of reason within a state (down on a timeout,
//!   then down on a refused connection) is not a transition either; the
//!   board shows the latest reason;
//! - [`Transition::worth_an_event`] leaves out the first answer after
//!   start-up (`pending` to `ok`), so restarting an agent does not send one
//!   "device ok" event per device; a device that is down from the start is
//!   an event;
//! - `since_us` is when the current state began, `last_ok_us` when the
//!   device last answered with data (kept across down periods).
//!
//! - [`Transition::event`] is the wire event the pipeline spools for a
//!   transition, its detail cut to [`MAX_DETAIL_BYTES`] so a long error
//!   text cannot make the relay refuse the batch (`max_string_bytes`).
//!
//! Times are µs since the Unix epoch, passed in.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Which kind of source a device belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SourceKind {
    /// A `[[modbus]]` device (TCP, or one slave on an RTU line).
    Modbus,
    /// An `[[mqtt]]` broker connection.
    Mqtt,
    /// A `[[frames]]` microcontroller link.
    Frames,
}

impl SourceKind {
    /// `modbus`, `mqtt` or `frames`: the config section's name.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Modbus => "modbus",
            SourceKind::Mqtt => "mqtt",
            SourceKind::Frames => "frames",
        }
    }
}

/// A device on the board: its source kind and its configured name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceKey {
    pub kind: SourceKind,
    pub name: String,
}

impl DeviceKey {
    pub fn new(kind: SourceKind, name: impl Into<String>) -> DeviceKey {
        DeviceKey {
            kind,
            name: name.into(),
        }
    }
}

// The states and reason kinds are the wire format's (`edge_wire`), so the
// board, the page and the device-state events share one set of names and
// codes.
pub use edge_wire::{DeviceState, ReasonKind};

/// Why a device is in its state: a kind, the exception code where there is
/// one, and the error text for a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub kind: ReasonKind,
    /// The Modbus exception code, for [`ReasonKind::Exception`].
    pub code: Option<u8>,
    pub detail: String,
}

impl Reason {
    pub fn new(kind: ReasonKind, detail: impl Into<String>) -> Reason {
        Reason {
            kind,
            code: None,
            detail: detail.into(),
        }
    }

    /// A Modbus exception `code`.
    pub fn exception(code: u8) -> Reason {
        Reason {
            kind: ReasonKind::Exception,
            code: Some(code),
            detail: format!("exception code {code} ({})", exception_name(code)),
        }
    }

    /// The reason for a transport error's text, as the Modbus poll loop
    /// words them ("timed out after 500 ms", "connect failed: Connection
    /// refused (os error 111)", "crc: ...").
    pub fn from_transport(error: &str) -> Reason {
        let lower = error.to_ascii_lowercase();
        let kind = if lower.starts_with("crc") {
            ReasonKind::Crc
        } else if lower.contains("refused") {
            ReasonKind::ConnectionRefused
        } else if lower.contains("timed out") || lower.contains("no reply") {
            ReasonKind::Timeout
        } else if lower.contains("connect")
            || lower.contains("broken pipe")
            || lower.contains("reset")
            || lower.contains("cannot open")
            || lower.contains("eof")
        {
            ReasonKind::ConnectionLost
        } else {
            ReasonKind::Error
        };
        Reason::new(kind, error)
    }
}

/// The name of a standard Modbus exception code.
pub fn exception_name(code: u8) -> &'static str {
    match code {
        1 => "illegal function",
        2 => "illegal data address",
        3 => "illegal data value",
        4 => "server device failure",
        5 => "acknowledge",
        6 => "server device busy",
        8 => "memory parity error",
        10 => "gateway path unavailable",
        11 => "gateway target failed to respond",
        _ => "unknown",
    }
}

/// What the board knows of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceStatus {
    pub state: DeviceState,
    /// When the current state began.
    pub since_us: i64,
    /// When the device last answered with data, if it ever did.
    pub last_ok_us: Option<i64>,
    /// Why it is degraded or down; `None` while ok or pending.
    pub reason: Option<Reason>,
    /// Transitions to down so far.
    pub times_down: u64,
}

/// A change of state, reported once.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub device: DeviceKey,
    pub from: DeviceState,
    pub to: DeviceState,
    /// Why, when `to` is degraded or down.
    pub reason: Option<Reason>,
    /// When the new state began.
    pub at_us: i64,
    /// When the previous state began (how long it lasted: `at_us - since_us`).
    pub since_us: i64,
}

impl Transition {
    /// Whether the cloud should hear of it: every transition but the first
    /// answer after start-up.
    pub fn worth_an_event(&self) -> bool {
        !(self.from == DeviceState::Pending && self.to == DeviceState::Ok)
    }
}

/// Longest reason detail a device event carries, in bytes: well inside the
/// relay's default `max_string_bytes` (1024).
pub const MAX_DETAIL_BYTES: usize = 256;

impl Transition {
    /// The wire event of this transition (`since_us` is when the previous
    /// state began).
    pub fn event(&self) -> edge_wire::DeviceEvent {
        edge_wire::DeviceEvent {
            device: self.device.name.clone(),
            source: self.device.kind.as_str().to_owned(),
            state: self.to,
            previous: self.from,
            reason: self.reason.as_ref().map(|r| edge_wire::DeviceReason {
                kind: r.kind,
                code: r.code,
                detail: truncated(&r.detail, MAX_DETAIL_BYTES).to_owned(),
            }),
            at_us: self.at_us,
            since_us: self.since_us,
        }
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
fn truncated(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Every device's state.
#[derive(Debug, Default)]
pub struct DeviceBoard {
    devices: BTreeMap<DeviceKey, DeviceStatus>,
}

impl DeviceBoard {
    /// Put `device` on the board as pending, unless it is there already.
    pub fn register(&mut self, device: DeviceKey, now_us: i64) {
        self.devices.entry(device).or_insert(DeviceStatus {
            state: DeviceState::Pending,
            since_us: now_us,
            last_ok_us: None,
            reason: None,
            times_down: 0,
        });
    }

    /// The device answered with data for everything it was asked.
    pub fn ok(&mut self, device: &DeviceKey, now_us: i64) -> Option<Transition> {
        self.set(device, DeviceState::Ok, None, now_us)
    }

    /// The device answers but part of it fails (`reason`).
    pub fn degraded(
        &mut self,
        device: &DeviceKey,
        reason: Reason,
        now_us: i64,
    ) -> Option<Transition> {
        self.set(device, DeviceState::Degraded, Some(reason), now_us)
    }

    /// The device does not answer, after the retries allowed (`reason`).
    pub fn down(&mut self, device: &DeviceKey, reason: Reason, now_us: i64) -> Option<Transition> {
        self.set(device, DeviceState::Down, Some(reason), now_us)
    }

    fn set(
        &mut self,
        device: &DeviceKey,
        to: DeviceState,
        reason: Option<Reason>,
        now_us: i64,
    ) -> Option<Transition> {
        self.register(device.clone(), now_us);
        let status = self.devices.get_mut(device)?;
        if to != DeviceState::Down {
            status.last_ok_us = Some(now_us);
        }
        let from = status.state;
        status.reason = reason.clone();
        if from == to {
            return None;
        }
        let since_us = status.since_us;
        status.state = to;
        status.since_us = now_us;
        if to == DeviceState::Down {
            status.times_down += 1;
        }
        Some(Transition {
            device: device.clone(),
            from,
            to,
            reason,
            at_us: now_us,
            since_us,
        })
    }

    /// One device's status.
    pub fn get(&self, device: &DeviceKey) -> Option<&DeviceStatus> {
        self.devices.get(device)
    }

    /// Every device, by kind and name.
    pub fn all(&self) -> Vec<(DeviceKey, DeviceStatus)> {
        self.devices
            .iter()
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    }
}

/// The board shared by the sources (which report) and the status page
/// (which reads), behind one lock held only for a map update.
#[derive(Debug, Default)]
pub struct Devices(Mutex<DeviceBoard>);

impl Devices {
    /// Run `f` on the board.
    pub fn with<T>(&self, f: impl FnOnce(&mut DeviceBoard) -> T) -> T {
        let mut board = self.0.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut board)
    }

    /// Every device, by kind and name.
    pub fn all(&self) -> Vec<(DeviceKey, DeviceStatus)> {
        self.with(|b| b.all())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeviceState::*;

    enum Step {
        Ok,
        Degraded(u8),
        Down(&'static str),
    }

    fn key() -> DeviceKey {
        DeviceKey::new(SourceKind::Modbus, "press-3")
    }

    /// (reports at t = 10, 20, 30, ...; the transitions they return as
    /// (from, to); the state afterwards)
    #[rustfmt::skip]
    #[test]
    fn transitions_table() {
        type Row = (&'static [Step], &'static [(DeviceState, DeviceState)], DeviceState);
        let table: &[Row] = &[
            (&[], &[], Pending),
            (&[Step::Ok], &[(Pending, Ok)], Ok),
            (&[Step::Ok, Step::Ok, Step::Ok], &[(Pending, Ok)], Ok),
            (&[Step::Down("timed out after 500 ms")], &[(Pending, Down)], Down),
            (&[Step::Ok, Step::Down("timed out"), Step::Down("timed out"), Step::Ok],
                &[(Pending, Ok), (Ok, Down), (Down, Ok)], Ok),
            (&[Step::Ok, Step::Degraded(2), Step::Degraded(2), Step::Ok],
                &[(Pending, Ok), (Ok, Degraded), (Degraded, Ok)], Ok),
            (&[Step::Degraded(2), Step::Down("connect failed: Connection refused")],
                &[(Pending, Degraded), (Degraded, Down)], Down),
        ];
        for (steps, want, end) in table {
            let mut board = DeviceBoard::default();
            board.register(key(), 0);
            let mut got = Vec::new();
            for (i, step) in steps.iter().enumerate() {
                let now = 10 * (i as i64 + 1);
                let t = match step {
                    Step::Ok => board.ok(&key(), now),
                    Step::Degraded(code) => board.degraded(&key(), Reason::exception(*code), now),
                    Step::Down(e) => board.down(&key(), Reason::from_transport(e), now),
                };
                if let Some(t) = t {
                    assert_eq!(t.at_us, now);
                    got.push((t.from, t.to));
                }
            }
            assert_eq!(&got, want, "steps of row ending {end:?}");
            assert_eq!(board.get(&key()).unwrap().state, *end);
        }
    }

    #[test]
    fn since_last_ok_and_reason_follow_the_reports() {
        let mut board = DeviceBoard::default();
        board.register(key(), 5);
        assert_eq!(board.get(&key()).unwrap().since_us, 5);
        board.ok(&key(), 10);
        board.ok(&key(), 20);
        let s = board.get(&key()).unwrap();
        assert_eq!((s.state, s.since_us, s.last_ok_us), (Ok, 10, Some(20)));

        let t = board
            .down(&key(), Reason::from_transport("timed out after 500 ms"), 30)
            .unwrap();
        assert_eq!((t.since_us, t.at_us), (10, 30), "ok lasted from 10 to 30");
        assert_eq!(t.reason.as_ref().unwrap().kind, ReasonKind::Timeout);
        // Still down, another reason: no transition, the board shows it.
        let again = board.down(
            &key(),
            Reason::from_transport("connect failed: Connection refused (os error 111)"),
            40,
        );
        assert_eq!(again, None);
        let s = board.get(&key()).unwrap();
        assert_eq!(s.state, Down);
        assert_eq!(s.since_us, 30);
        assert_eq!(s.last_ok_us, Some(20), "a down report is not an answer");
        assert_eq!(
            s.reason.as_ref().unwrap().kind,
            ReasonKind::ConnectionRefused
        );
        assert_eq!(s.times_down, 1);

        let back = board.ok(&key(), 50).unwrap();
        assert_eq!((back.from, back.to, back.since_us), (Down, Ok, 30));
        assert_eq!(back.reason, None);
        assert_eq!(board.get(&key()).unwrap().reason, None);
    }

    #[test]
    fn only_the_first_answer_after_start_is_not_an_event() {
        let mut board = DeviceBoard::default();
        let first = board.ok(&key(), 1).unwrap();
        assert!(!first.worth_an_event());
        let down = board
            .down(&key(), Reason::new(ReasonKind::Timeout, "t"), 2)
            .unwrap();
        assert!(down.worth_an_event());
        let up = board.ok(&key(), 3).unwrap();
        assert!(up.worth_an_event());
        let other = DeviceKey::new(SourceKind::Mqtt, "plant-broker");
        let dead_from_start = board
            .down(&other, Reason::new(ReasonKind::ConnectionRefused, "r"), 4)
            .unwrap();
        assert!(dead_from_start.worth_an_event());
        assert_eq!(dead_from_start.from, Pending);
    }

    #[test]
    fn a_transition_becomes_its_wire_event_with_a_bounded_detail() {
        let mut board = DeviceBoard::default();
        board.ok(&key(), 10);
        let long = format!("timed out{}", "é".repeat(400));
        let down = board
            .down(&key(), Reason::from_transport(&long), 30)
            .unwrap();
        let e = down.event();
        assert_eq!(
            (e.device.as_str(), e.source.as_str()),
            ("press-3", "modbus")
        );
        assert_eq!(
            (e.previous, e.state, e.since_us, e.at_us),
            (Ok, Down, 10, 30)
        );
        let reason = e.reason.unwrap();
        assert_eq!((reason.kind, reason.code), (ReasonKind::Timeout, None));
        // 256 bytes would split an "é": cut before it.
        assert_eq!(reason.detail.len(), 255, "{}", reason.detail);
        assert!(long.starts_with(&reason.detail));

        let degraded = board.degraded(&key(), Reason::exception(2), 40).unwrap();
        let r = degraded.event().reason.unwrap();
        assert_eq!((r.kind, r.code), (ReasonKind::Exception, Some(2)));
        let back = board.ok(&key(), 50).unwrap().event();
        assert_eq!(
            (back.previous, back.state, back.reason),
            (Degraded, Ok, None)
        );
        assert_eq!(back.since_us, 40);
    }

    #[rustfmt::skip]
    #[test]
    fn transport_errors_get_their_kind() {
        let table = [
            ("timed out after 500 ms", ReasonKind::Timeout),
            ("connect timed out after 1000 ms", ReasonKind::Timeout),
            ("connect failed: Connection refused (os error 111)", ReasonKind::ConnectionRefused),
            ("crc: timed out after 300 ms", ReasonKind::Crc),
            ("no reply: timed out after 300 ms", ReasonKind::Timeout),
            ("Connection reset by peer (os error 104)", ReasonKind::ConnectionLost),
            ("cannot open /dev/ttyUSB0: No such file or directory", ReasonKind::ConnectionLost),
            ("invalid response header", ReasonKind::Error),
        ];
        for (text, kind) in table {
            assert_eq!(Reason::from_transport(text).kind, kind, "{text}");
            assert_eq!(ReasonKind::parse(kind.as_str()), Some(kind));
        }
        let e = Reason::exception(2);
        assert_eq!((e.kind, e.code), (ReasonKind::Exception, Some(2)));
        assert!(e.detail.contains("illegal data address"), "{}", e.detail);
        for s in [Pending, Ok, Degraded, Down] {
            assert_eq!(DeviceState::parse(s.as_str()), Some(s));
        }
    }
}
