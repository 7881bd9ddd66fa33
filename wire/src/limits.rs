//! Bounds the decoder enforces, so that a hostile or corrupt batch costs a
//! bounded amount of time and memory. The relay makes them configurable.

/// Upper bounds on what one batch may contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest encoded (compressed) batch accepted, in bytes.
    pub max_compressed_bytes: usize,
    /// Largest decompressed CBOR document accepted, in bytes.
    pub max_decompressed_bytes: usize,
    /// Most series in one batch.
    pub max_series: usize,
    /// Most readings in one batch, across all series.
    pub max_readings: usize,
    /// Most alarm events in one batch.
    pub max_alarms: usize,
    /// Most gap records in one batch.
    pub max_gaps: usize,
    /// Most device-state events in one batch.
    pub max_device_events: usize,
    /// Most tags on one series.
    pub max_tags: usize,
    /// Longest string (gateway id, series name, unit, tag key or value, rule,
    /// device name, source kind, reason detail), in bytes.
    pub max_string_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_compressed_bytes: 16 << 20,
            max_decompressed_bytes: 16 << 20,
            max_series: 100_000,
            max_readings: 1_000_000,
            max_alarms: 100_000,
            max_gaps: 10_000,
            max_device_events: 10_000,
            max_tags: 32,
            max_string_bytes: 1024,
        }
    }
}
