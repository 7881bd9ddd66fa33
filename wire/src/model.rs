//! The batch data model: plain data types that the agent builds and the relay
//! consumes. Nothing here knows about CBOR, zstd, Modbus or Kafka.
//!
//! Invariants a well-formed batch keeps (checked by [`Batch::validate`] and by
//! the decoder):
//! - series ids are unique within a batch;
//! - every alarm names a series id present in `series`;
//! - every point carries a timestamp in microseconds since the Unix epoch.
//!
//! Values are `f64` and are carried bit-exactly, including NaN payloads,
//! infinities and negative zero: the wire format is lossless.

use std::collections::BTreeMap;

/// Newest version of the batch format this crate writes: v4 adds the spool
/// instance id to the header, v3 gap records. A batch without an instance
/// id is still written as v3 or v2 (see [`Batch::format_version`]), so a
/// relay that reads only older versions keeps accepting every batch that
/// does not need the new fields.
pub const FORMAT_VERSION: u16 = 4;

/// Every version this crate reads: v1 (alarms without severity, duration or
/// acknowledgement), v2 (no gap records), v3 (no spool instance) and v4.
pub const READABLE_VERSIONS: [u16; 4] = [1, 2, 3, 4];

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
}

impl AlarmState {
    /// Lower-case name used in JSON messages: `raised`, `cleared`,
    /// `acknowledged`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlarmState::Raised => "raised",
            AlarmState::Cleared => "cleared",
            AlarmState::Acknowledged => "acknowledged",
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
    }
}

impl Batch {
    /// Number of readings across all series.
    pub fn reading_count(&self) -> usize {
        self.series.iter().map(|s| s.points.len()).sum()
    }

    /// The format version [`crate::encode`] writes for this batch: 4 when it
    /// carries a spool instance id, else 3 when it carries gaps, else 2, so
    /// readers of older versions keep reading batches that need nothing new.
    pub fn format_version(&self) -> u16 {
        if self.instance.is_some() {
            FORMAT_VERSION
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
