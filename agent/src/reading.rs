//! What flows from sources through detection into the batcher: a [`Reading`]
//! of a [`SeriesInfo`], and the [`Alarm`] transitions the detector emits.
//!
//! Series metadata is shared behind an `Arc` so that a reading costs one
//! pointer, not copies of its name and tags.

use std::collections::BTreeMap;
use std::sync::Arc;

pub use edge_wire::{AlarmState, Quality};

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

/// An alarm transition detected on the gateway.
#[derive(Debug, Clone)]
pub struct Alarm {
    pub series: Arc<SeriesInfo>,
    pub rule: String,
    pub state: AlarmState,
    pub value: f64,
    pub limit: f64,
    pub ts_us: i64,
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}
