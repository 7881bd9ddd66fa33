//! What flows from sources through detection into the batcher: a [`Reading`]
//! of a [`SeriesInfo`], and the [`Alarm`] transitions the detector emits.
//!
//! Series metadata is shared behind an `Arc` so that a reading costs one
//! pointer, not copies of its name and tags.

use std::collections::BTreeMap;
use std::sync::Arc;

/// [`Severity`] comes from the wire format (v2 carries it with every alarm
/// event), so the agent and the relay name it alike.
pub use edge_wire::{AlarmState, LimitKind, Quality, Severity};

/// Name, unit and tags of one signal, fixed at configuration time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesInfo {
    /// Series name, for example "press-3.oil_temp".
    pub name: String,
    /// Engineering unit; empty when unknown.
    pub unit: String,
    /// Gateway, device and point tags, merged.
    pub tags: BTreeMap<String, String>,
}

/// One sampled value.
#[derive(Debug, Clone)]
pub struct Reading {
    pub series: Arc<SeriesInfo>,
    /// µs since the Unix epoch.
    pub ts_us: i64,
    pub value: f64,
    pub quality: Quality,
}

/// What a source hands the pipeline, on the one channel all sources share
/// (one channel, so the pipeline sees everything in the order it was sent,
/// which the commit-before-acknowledge rule of MQTT and the frames source
/// relies on: see `source::mqtt::ack`).
#[derive(Debug, Clone)]
pub enum Input {
    Reading(Reading),
    /// A microcontroller sample or an MQTT message: its readings and its
    /// mark together, so the
    /// pipeline puts them in one batch and commits the mark with it (a
    /// sample's readings are never split between two batches, of which a
    /// crash could keep one).
    Sample {
        readings: Vec<Reading>,
        mark: crate::spool::Mark,
    },
    /// A device or connection changed state (down, degraded, back): an
    /// event for the cloud, on the same channel so it keeps its place
    /// among the readings of that source.
    Device(crate::devices::Transition),
}

impl From<Reading> for Input {
    fn from(r: Reading) -> Input {
        Input::Reading(r)
    }
}

impl Input {
    /// The readings it carries.
    pub fn readings(&self) -> &[Reading] {
        match self {
            Input::Reading(r) => std::slice::from_ref(r),
            Input::Sample { readings, .. } => readings,
            Input::Device(_) => &[],
        }
    }
}

/// An alarm transition detected on the gateway.
#[derive(Debug, Clone)]
pub struct Alarm {
    pub series: Arc<SeriesInfo>,
    /// Event name: the rule's name, then the rule kind ("oil_temp.high").
    pub rule: String,
    pub severity: Severity,
    pub state: AlarmState,
    /// The value that crossed the limit (for time rules: seconds elapsed).
    pub value: f64,
    pub limit: f64,
    pub ts_us: i64,
    /// On a clear: how long the alarm was raised, in µs. `None` on a raise
    /// or an acknowledgement.
    pub duration_us: Option<i64>,
    /// For a limit check: which limit fired (the `min`/`max` shorthand
    /// names its low and high alarms alike). `None` for other checks.
    pub limit_kind: Option<LimitKind>,
    /// For an SPC test: which test, its limits and the statistic.
    pub spc: Option<crate::detect::spc::Detail>,
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
