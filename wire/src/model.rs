//! The batch data model: plain data types that the agent builds and the relay
//! consumes. Nothing here knows about CBOR, zstd, Modbus or Kafka.
//!
//! Invariants a well-formed batch keeps (checked by [`Batch::validate`] and by
//! the decoder):
//! - series ids are unique within a batch;
//! - every alarm names a series id present in `series`;
//! - a batch with device events carries a spool instance (v5 extends v4);
//! - every point carries a timestamp in microseconds since the Unix epoch.
//!
//! Values are `f64` and are carried bit-exactly, including NaN payloads,
//! infinities and negative zero: the wire format is lossless.

use std::collections::BTreeMap;

/// Newest version of the batch format this crate writes, and the one
/// [`crate::encode`] writes for every batch: v8 is v6 with a range coder
/// whose models learn from a count of the bits seen (a series of 125
/// values in a batch costs about 3 % less). v6 codes the value column per
/// series (predictors, ulp corrections, dictionaries, a range coder) and
/// always carries the instance (0 for none), gap and device-event fields
/// of v5; v7 is the referenced form of a v6 or v8 batch
/// ([`crate::codec::reference`]). Before v6 a batch was written in the
/// oldest version that holds
/// everything it carries ([`Batch::legacy_version`]): v5 adds device-state
/// events, v4 the spool instance id to the header, v3 gap records;
/// [`crate::codec::encode_version`] still writes those.
pub const FORMAT_VERSION: u16 = 8;

/// The version [`crate::encode`] writes for a batch that holds what v8
/// cannot say ([`Batch::needs_v10`]): v10 is v8 plus the alarm state
/// `rebaselined` (code 3). Every other batch is still written in
/// [`FORMAT_VERSION`], so a relay that reads v8 but not v10 refuses only
/// the batches that need it. v10 has no referenced form.
pub const V10: u16 = 10;

/// Every self-contained version this crate reads: v1 (alarms without
/// severity, duration or acknowledgement), v2 (no gap records), v3 (no
/// spool instance), v4 (no device events), v5, v6 (the v6 value column)
/// v8 (its counted adaptation) and v10 (v8 with the alarm state
/// `rebaselined`); v7 and v9, the referenced forms, are read by
/// [`crate::codec::reference::decode_parts`].
pub const READABLE_VERSIONS: [u16; 8] = [1, 2, 3, 4, 5, 6, 8, 10];

/// One upload unit: everything a gateway sends in one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Gateway that produced the batch, for example `"plant-a-gw-1"`.
    pub gateway_id: String,
    /// The spool that made the batch: a random id the agent's spool draws
    /// when it is created and keeps with it (format v4 on; `None` in v1 to
    /// v3). A gateway whose spool starts again (a reinstall) gets a new one,
    /// so `(gateway_id, instance, seq)` names a batch even though `seq`
    /// starts again.
    pub instance: Option<std::num::NonZeroU64>,
    /// Batch sequence number; grows strictly per spool instance, across
    /// restarts.
    pub seq: u64,
    /// When the batch was sealed, µs since the Unix epoch.
    pub created_us: i64,
    /// The series dictionary, each with its readings.
    pub series: Vec<Series>,
    /// Alarm events raised or cleared on the gateway.
    pub alarms: Vec<AlarmEvent>,
    /// Intervals of readings the gateway dropped under its spool policy
    /// (format v3 on; empty in v1 and v2 batches).
    pub gaps: Vec<Gap>,
    /// Devices or connections behind the gateway that went down, degraded
    /// or came back (format v5 on; empty in v1 to v4 batches). A batch
    /// with device events carries a spool instance ([`Batch::validate`]).
    pub devices: Vec<DeviceEvent>,
}

/// How a device behind the gateway is doing (a Modbus device, an MQTT
/// broker connection, a microcontroller link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeviceState {
    /// Not heard from since the agent started.
    Pending,
    /// Answering, every block with data.
    Ok,
    /// Answering, but some of what it was asked failed (an exception code
    /// for a block): some points are bad.
    Degraded,
    /// Not answering after the retries the config allows (or the connection
    /// to it is lost).
    Down,
}

impl DeviceState {
    /// `pending`, `ok`, `degraded` or `down`: the name on the page, in the
    /// JSON API and in the Kafka event.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceState::Pending => "pending",
            DeviceState::Ok => "ok",
            DeviceState::Degraded => "degraded",
            DeviceState::Down => "down",
        }
    }

    /// The state for a name [`DeviceState::as_str`] gives.
    pub fn parse(s: &str) -> Option<DeviceState> {
        DeviceState::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The wire code (0 pending, 1 ok, 2 degraded, 3 down).
    pub fn code(self) -> u8 {
        match self {
            DeviceState::Pending => 0,
            DeviceState::Ok => 1,
            DeviceState::Degraded => 2,
            DeviceState::Down => 3,
        }
    }

    /// The state for a wire code, or `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<DeviceState> {
        DeviceState::ALL.into_iter().find(|k| k.code() == code)
    }

    /// Every state, in code order.
    pub const ALL: [DeviceState; 4] = [
        DeviceState::Pending,
        DeviceState::Ok,
        DeviceState::Degraded,
        DeviceState::Down,
    ];
}

/// Why a device is degraded or down, as a kind a program can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ReasonKind {
    /// No answer within the timeout.
    Timeout,
    /// The connection was refused (nothing listens on the port).
    ConnectionRefused,
    /// An open connection or line was lost, or could not be opened.
    ConnectionLost,
    /// The device answered with a Modbus exception code.
    Exception,
    /// Replies arrived with a bad checksum (line noise, a wrong baud rate).
    Crc,
    /// Anything else; the detail says what.
    Error,
}

impl ReasonKind {
    /// Every kind, in code order.
    pub const ALL: [ReasonKind; 6] = [
        ReasonKind::Timeout,
        ReasonKind::ConnectionRefused,
        ReasonKind::ConnectionLost,
        ReasonKind::Exception,
        ReasonKind::Crc,
        ReasonKind::Error,
    ];

    /// `timeout`, `connection_refused`, `connection_lost`, `exception`,
    /// `crc` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonKind::Timeout => "timeout",
            ReasonKind::ConnectionRefused => "connection_refused",
            ReasonKind::ConnectionLost => "connection_lost",
            ReasonKind::Exception => "exception",
            ReasonKind::Crc => "crc",
            ReasonKind::Error => "error",
        }
    }

    /// The kind for a name [`ReasonKind::as_str`] gives.
    pub fn parse(s: &str) -> Option<ReasonKind> {
        ReasonKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The wire code (1 timeout, 2 connection refused, 3 connection lost,
    /// 4 exception, 5 crc, 6 error; 0 means "no reason" on the wire).
    pub fn code(self) -> u8 {
        match self {
            ReasonKind::Timeout => 1,
            ReasonKind::ConnectionRefused => 2,
            ReasonKind::ConnectionLost => 3,
            ReasonKind::Exception => 4,
            ReasonKind::Crc => 5,
            ReasonKind::Error => 6,
        }
    }

    /// The kind for a non-zero wire code, or `None` for an unknown one.
    pub fn from_code(code: u8) -> Option<ReasonKind> {
        ReasonKind::ALL.into_iter().find(|k| k.code() == code)
    }
}

/// Why a device is degraded or down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceReason {
    /// The kind of failure.
    pub kind: ReasonKind,
    /// The Modbus exception code, for [`ReasonKind::Exception`].
    pub code: Option<u8>,
    /// The error text, for a person.
    pub detail: String,
}

/// A device behind the gateway changed state: it went down after the
/// retries its config allows, answered with an exception, or came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEvent {
    /// The device's configured name, for example `"press-3"`.
    pub device: String,
    /// The kind of source it belongs to, as the agent's config section
    /// names it (`"modbus"`, `"mqtt"`, `"frames"`). Text, not a code, so
    /// the format stays ignorant of protocols and a new source kind needs
    /// no new version.
    pub source: String,
    /// The state it is in now.
    pub state: DeviceState,
    /// The state it was in before.
    pub previous: DeviceState,
    /// Why it is degraded or down; `None` when it is ok.
    pub reason: Option<DeviceReason>,
    /// When the new state began, µs since the Unix epoch.
    pub at_us: i64,
    /// When the previous state began, µs since the Unix epoch.
    pub since_us: i64,
}

/// Why a gateway dropped readings it had accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GapReason {
    /// The spool reached its configured size bound (`max_bytes`) and the
    /// `drop-oldest` policy removed the oldest reading batches.
    SpoolFull,
    /// The readings were older than the spool's `max_age_s` bound.
    MaxAge,
    /// A device in front of the gateway (a microcontroller's sample ring)
    /// dropped them before the gateway got them (format code 3; a relay
    /// older than this code refuses such a batch, so update relays first).
    DeviceDropped,
}

impl GapReason {
    /// The wire code (1 spool full, 2 max age, 3 dropped by the device).
    pub fn code(self) -> u8 {
        match self {
            GapReason::SpoolFull => 1,
            GapReason::MaxAge => 2,
            GapReason::DeviceDropped => 3,
        }
    }

    /// The reason for a wire code, or `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<GapReason> {
        match code {
            1 => Some(GapReason::SpoolFull),
            2 => Some(GapReason::MaxAge),
            3 => Some(GapReason::DeviceDropped),
            _ => None,
        }
    }

    /// The name used in logs and JSON messages: `spool_full`, `max_age`,
    /// `device_dropped`.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::SpoolFull => "spool_full",
            GapReason::MaxAge => "max_age",
            GapReason::DeviceDropped => "device_dropped",
        }
    }
}

/// A stretch of readings the gateway accepted and then dropped, so the cloud
/// knows which interval is missing and why, instead of guessing from silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Why the readings were dropped.
    pub reason: GapReason,
    /// Timestamp of the oldest dropped reading, µs since the Unix epoch.
    pub first_us: i64,
    /// Timestamp of the newest dropped reading, µs since the Unix epoch.
    pub last_us: i64,
    /// How many readings were dropped.
    pub readings: u64,
    /// How many spooled batches held them.
    pub batches: u64,
    /// When the gateway dropped them, µs since the Unix epoch.
    pub recorded_us: i64,
}

/// One named signal and the readings of it that travel in this batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Batch-local id; alarms refer to the series by it.
    pub id: u32,
    /// Stable name of the signal, for example `"press-3.oil_temp"`.
    pub name: String,
    /// Engineering unit, for example `"degC"`; empty when unknown.
    pub unit: String,
    /// Descriptive tags such as `site`, `line`, `asset`, `protocol`.
    pub tags: BTreeMap<String, String>,
    /// Readings in the order they were taken.
    pub points: Vec<Point>,
    /// `Some` when the gateway reports this series by exception: the
    /// readings that travel are only those that moved by more than the
    /// deadband, changed quality or are a heartbeat, so a missing reading
    /// means "held", not "lost" and not "flat by measurement". `None`
    /// (every reading sent) in batches that do not say, which is every
    /// batch before this field (v6 series entry, 5th element).
    pub reporting: Option<Reporting>,
}

/// How a series reported by exception was filtered on the gateway: what a
/// consumer needs to read a held value correctly. The filter is lossy by
/// design; alarms are judged on every sample before it.
#[derive(Debug, Clone, Copy)]
pub struct Reporting {
    /// A reading is sent when it differs from the last one sent by more than
    /// this, in the series' unit (a percent deadband is resolved to units on
    /// the gateway). Finite and not negative.
    pub deadband: f64,
    /// A reading is sent at least this often (ms) while samples arrive, as
    /// a heartbeat, even when the value holds. Above 0.
    pub max_silence_ms: u64,
}

/// Bit-exact, as [`Point`].
impl PartialEq for Reporting {
    fn eq(&self, other: &Self) -> bool {
        self.deadband.to_bits() == other.deadband.to_bits()
            && self.max_silence_ms == other.max_silence_ms
    }
}

/// A single reading of a series.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    /// When the value was sampled, µs since the Unix epoch.
    pub ts_us: i64,
    /// The value, carried bit-exactly.
    pub value: f64,
    /// Whether the source trusts the value.
    pub quality: Quality,
}

/// Points compare bit-exactly so that NaN == NaN and 0.0 != -0.0, which is
/// what "lossless" means for the codec.
impl PartialEq for Point {
    fn eq(&self, other: &Self) -> bool {
        self.ts_us == other.ts_us
            && self.value.to_bits() == other.value.to_bits()
            && self.quality == other.quality
    }
}

/// Quality of a reading, as OPC UA and most SCADA systems use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Quality {
    /// The value is trustworthy.
    Good,
    /// The value may be off (for example a sensor out of calibration).
    Uncertain,
    /// The value is not usable (for example a Modbus exception).
    Bad,
}

impl Quality {
    /// The wire code of the quality (0 good, 1 uncertain, 2 bad).
    pub fn code(self) -> u8 {
        match self {
            Quality::Good => 0,
            Quality::Uncertain => 1,
            Quality::Bad => 2,
        }
    }

    /// The quality for a wire code, or `None` for an unknown code.
    pub fn from_code(code: u8) -> Option<Quality> {
        match code {
            0 => Some(Quality::Good),
            1 => Some(Quality::Uncertain),
            2 => Some(Quality::Bad),
            _ => None,
        }
    }

    /// Lower-case name used in JSON messages: `good`, `uncertain`, `bad`.
    pub fn as_str(self) -> &'static str {
        match self {
            Quality::Good => "good",
            Quality::Uncertain => "uncertain",
            Quality::Bad => "bad",
        }
    }
}

/// What happened to an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlarmState {
    /// The condition began to hold.
    Raised,
    /// The condition stopped holding.
    Cleared,
    /// Someone at the plant acknowledged the raised alarm (format v2 on).
    Acknowledged,
    /// The SPC test's baseline was dropped on request (an MQTT command, the
    /// status page): the test learns it again from the readings that
    /// follow and judges nothing meanwhile (format v10 on). The event
    /// carries the dropped baseline in its SPC detail, when there was one.
    Rebaselined,
}

impl AlarmState {
    /// Lower-case name used in JSON messages: `raised`, `cleared`,
    /// `acknowledged`, `rebaselined`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Raised => "raised",
            AlarmState::Cleared => "cleared",
            AlarmState::Acknowledged => "acknowledged",
            AlarmState::Rebaselined => "rebaselined",
        }
    }
}

/// How urgently a technician should look at an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// Worth a look during the next round.
    Warning,
    /// Needs attention this shift.
    Major,
    /// Needs attention now.
    Critical,
}

impl Severity {
    /// The name used in config files, logs and JSON messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Major => "major",
            Severity::Critical => "critical",
        }
    }

    /// Parse the name ("warning", "major", "critical").
    pub fn parse(s: &str) -> Option<Severity> {
        match s {
            "warning" => Some(Severity::Warning),
            "major" => Some(Severity::Major),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }

    /// The wire code (1 warning, 2 major, 3 critical; 0 means unknown).
    pub fn code(self) -> u8 {
        match self {
            Severity::Warning => 1,
            Severity::Major => 2,
            Severity::Critical => 3,
        }
    }

    /// The severity of a non-zero wire code, or `None` for an unknown one.
    pub fn from_code(code: u8) -> Option<Severity> {
        match code {
            1 => Some(Severity::Warning),
            2 => Some(Severity::Major),
            3 => Some(Severity::Critical),
            _ => None,
        }
    }
}

/// Which of the four classic limits a limit alarm is about, so a low and
/// a high alarm of one `min`/`max` rule (which share the event name) can
/// be told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LimitKind {
    /// Above the high-high limit.
    HighHigh,
    /// Above the high limit.
    High,
    /// Below the low limit.
    Low,
    /// Below the low-low limit.
    LowLow,
}

impl LimitKind {
    /// `high_high`, `high`, `low` or `low_low`: the config key and the JSON
    /// value.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::HighHigh => "high_high",
            LimitKind::High => "high",
            LimitKind::Low => "low",
            LimitKind::LowLow => "low_low",
        }
    }

    /// `"high"` for values above the limit, `"low"` for values below it.
    pub fn direction(self) -> &'static str {
        match self {
            LimitKind::HighHigh | LimitKind::High => "high",
            LimitKind::Low | LimitKind::LowLow => "low",
        }
    }

    /// The wire code (1 high-high, 2 high, 3 low, 4 low-low).
    pub fn code(self) -> u8 {
        match self {
            LimitKind::HighHigh => 1,
            LimitKind::High => 2,
            LimitKind::Low => 3,
            LimitKind::LowLow => 4,
        }
    }

    /// The kind of a wire code, or `None` for an unknown one.
    pub fn from_code(code: u8) -> Option<LimitKind> {
        match code {
            1 => Some(LimitKind::HighHigh),
            2 => Some(LimitKind::High),
            3 => Some(LimitKind::Low),
            4 => Some(LimitKind::LowLow),
            _ => None,
        }
    }
}

/// An alarm transition detected on the gateway.
#[derive(Debug, Clone)]
pub struct AlarmEvent {
    /// Id of the series (in this batch's dictionary) the alarm is about.
    pub series_id: u32,
    /// Name of the rule that fired, for example `"oil_temp.high"`.
    pub rule: String,
    /// Raised, cleared or acknowledged.
    pub state: AlarmState,
    /// Severity of the rule; `None` in v1 batches, which did not carry it.
    pub severity: Option<Severity>,
    /// The value that caused the transition.
    pub value: f64,
    /// The limit the value was compared with.
    pub limit: f64,
    /// When the transition happened, µs since the Unix epoch.
    pub ts_us: i64,
    /// On a clear: how long the alarm was raised, in µs. `None` on other
    /// events and in v1 batches.
    pub duration_us: Option<i64>,
    /// For an alarm of a limit check: which limit. `None` for other checks
    /// (rate, stale, ...), from agents before the field, and in documents
    /// before v6, which cannot carry it.
    pub limit_kind: Option<LimitKind>,
    /// For an alarm of a statistical process control test: what fired
    /// (v6 alarm element 10; `None` for every other alarm).
    pub spc: Option<SpcDetail>,
}

/// What an SPC test saw when its alarm changed, in the series' units: the
/// optional 10th element of a v6 alarm entry (`docs/wire-format.md`).
#[derive(Debug, Clone, Copy)]
pub struct SpcDetail {
    /// 1 beyond limits, 2 two of three beyond 2 sigma, 3 four of five
    /// beyond 1 sigma, 4 eight on one side, 5 six trending, 6 EWMA,
    /// 7 CUSUM; readers keep codes they do not know.
    pub test: u8,
    /// Centre line.
    pub centre: f64,
    pub sigma: f64,
    /// The test's lower and upper limit.
    pub lower: f64,
    pub upper: f64,
    /// The point, the EWMA statistic, or the signed CUSUM.
    pub statistic: f64,
}

/// Bit-exact, as [`Point`].
impl PartialEq for SpcDetail {
    fn eq(&self, other: &Self) -> bool {
        let bits =
            |d: &SpcDetail| [d.centre, d.sigma, d.lower, d.upper, d.statistic].map(f64::to_bits);
        self.test == other.test && bits(self) == bits(other)
    }
}

impl PartialEq for AlarmEvent {
    fn eq(&self, other: &Self) -> bool {
        self.series_id == other.series_id
            && self.rule == other.rule
            && self.state == other.state
            && self.value.to_bits() == other.value.to_bits()
            && self.limit.to_bits() == other.limit.to_bits()
            && self.ts_us == other.ts_us
            && self.severity == other.severity
            && self.duration_us == other.duration_us
            && self.limit_kind == other.limit_kind
            && self.spc == other.spc
    }
}

impl Batch {
    /// Number of readings across all series.
    pub fn reading_count(&self) -> usize {
        self.series.iter().map(|s| s.points.len()).sum()
    }

    /// Whether the batch holds what only format v10 carries: an alarm
    /// event in state [`AlarmState::Rebaselined`].
    pub fn needs_v10(&self) -> bool {
        self.alarms
            .iter()
            .any(|a| a.state == AlarmState::Rebaselined)
    }

    /// The version [`crate::encode`] writes: [`V10`] when
    /// [`Batch::needs_v10`], else [`FORMAT_VERSION`].
    pub fn version(&self) -> u16 {
        if self.needs_v10() {
            V10
        } else {
            FORMAT_VERSION
        }
    }

    /// The oldest format version that can carry this batch (what
    /// [`crate::encode`] wrote before v6, and what
    /// [`crate::codec::encode_version`] needs for an older reader): 10 when
    /// it [needs v10](Batch::needs_v10) (no older version can carry it), 6 when
    /// a series is reported by exception or an alarm carries SPC detail
    /// (only v6 on say so), else 5 when it carries device events, else 4
    /// when it carries a spool instance id, else 3 when it carries gaps,
    /// else 2.
    pub fn legacy_version(&self) -> u16 {
        if self.needs_v10() {
            V10
        } else if self.series.iter().any(|s| s.reporting.is_some())
            || self.alarms.iter().any(|a| a.spc.is_some())
        {
            6
        } else if !self.devices.is_empty() {
            5
        } else if self.instance.is_some() {
            4
        } else if self.gaps.is_empty() {
            2
        } else {
            3
        }
    }

    /// The series with the given batch-local id.
    pub fn series_by_id(&self, id: u32) -> Option<&Series> {
        self.series.iter().find(|s| s.id == id)
    }
}
