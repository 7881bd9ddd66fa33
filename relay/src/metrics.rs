//! Counters of what the relay did, rendered in the Prometheus text format at
//! `GET /metrics`. Plain atomics: a handful of counters does not need a
//! metrics framework, and there are no histograms yet.
//!
//! Counters only ever grow (they reset when the process restarts, which
//! Prometheus' `rate()` handles).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// How one `POST /v1/batches` ended. Each is a label value of
/// `edge_relay_requests_total{outcome=...}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// 200: every sink acknowledged the batch.
    Accepted,
    /// 401: no token or an unknown token.
    Unauthorized,
    /// 403: the batch names another gateway.
    Forbidden,
    /// 400: the body is not a valid batch.
    Malformed,
    /// 413: the body or the decoded batch is over a limit.
    TooLarge,
    /// 422: the batch decodes but holds readings the relay will not publish.
    Invalid,
    /// 503: a sink failed; the gateway should retry.
    Unavailable,
    /// 500: a bug in the relay (a task panicked).
    Internal,
}

impl Outcome {
    const ALL: [Outcome; 8] = [
        Outcome::Accepted,
        Outcome::Unauthorized,
        Outcome::Forbidden,
        Outcome::Malformed,
        Outcome::TooLarge,
        Outcome::Invalid,
        Outcome::Unavailable,
        Outcome::Internal,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Unauthorized => "unauthorized",
            Outcome::Forbidden => "forbidden",
            Outcome::Malformed => "malformed",
            Outcome::TooLarge => "too_large",
            Outcome::Invalid => "invalid",
            Outcome::Unavailable => "unavailable",
            Outcome::Internal => "internal",
        }
    }
}

/// Sink names used as label values of `edge_relay_sink_failures_total`.
pub const SINK_NAMES: [&str; 4] = ["kafka", "timeseries", "postgres", "file"];

/// All counters of one relay.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: [AtomicU64; Outcome::ALL.len()],
    readings: AtomicU64,
    alarms: AtomicU64,
    sink_failures: [AtomicU64; SINK_NAMES.len()],
    nonfinite_skipped: AtomicU64,
    tags_dropped: AtomicU64,
    duplicates: AtomicU64,
    ledger_failures: AtomicU64,
}

impl Metrics {
    /// Count one request that ended with `outcome`.
    pub fn request(&self, outcome: Outcome) {
        // Discriminants follow declaration order, which is the order of ALL.
        self.requests[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Count readings and alarm events of an accepted batch.
    pub fn accepted(&self, readings: usize, alarms: usize) {
        self.readings.fetch_add(readings as u64, Ordering::Relaxed);
        self.alarms.fetch_add(alarms as u64, Ordering::Relaxed);
    }

    /// Count a batch recognised as delivered before and not published again.
    pub fn duplicate(&self) {
        self.duplicates.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a delivered batch the ledger could not record (a retry of it
    /// would be published again).
    pub fn ledger_failure(&self) {
        self.ledger_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Count one failed delivery to the sink named `sink` (see [`SINK_NAMES`]).
    pub fn sink_failure(&self, sink: &str) {
        if let Some(i) = SINK_NAMES.iter().position(|s| *s == sink) {
            self.sink_failures[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count readings the time-series sink left out because NaN or ±inf
    /// cannot be written in line protocol.
    pub fn nonfinite_skipped(&self, n: u64) {
        self.nonfinite_skipped.fetch_add(n, Ordering::Relaxed);
    }

    /// Count series tags the time-series sink left out (reserved key or empty).
    pub fn tags_dropped(&self, n: u64) {
        self.tags_dropped.fetch_add(n, Ordering::Relaxed);
    }

    /// The counters in Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        fn head(out: &mut String, name: &str, help: &str) {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
        }
        head(
            &mut out,
            "edge_relay_requests_total",
            "Batch uploads by outcome.",
        );
        for (o, c) in Outcome::ALL.iter().zip(&self.requests) {
            let _ = writeln!(
                out,
                "edge_relay_requests_total{{outcome=\"{}\"}} {}",
                o.as_str(),
                get(c)
            );
        }
        head(
            &mut out,
            "edge_relay_readings_total",
            "Readings in accepted batches.",
        );
        let _ = writeln!(out, "edge_relay_readings_total {}", get(&self.readings));
        head(
            &mut out,
            "edge_relay_alarms_total",
            "Alarm events in accepted batches.",
        );
        let _ = writeln!(out, "edge_relay_alarms_total {}", get(&self.alarms));
        head(
            &mut out,
            "edge_relay_duplicate_batches_total",
            "Batches delivered before (same gateway and sequence number), answered 200 without publishing again.",
        );
        let _ = writeln!(
            out,
            "edge_relay_duplicate_batches_total {}",
            get(&self.duplicates)
        );
        head(
            &mut out,
            "edge_relay_ledger_failures_total",
            "Delivered batches the ledger could not record; a retry of one is published again.",
        );
        let _ = writeln!(
            out,
            "edge_relay_ledger_failures_total {}",
            get(&self.ledger_failures)
        );
        head(
            &mut out,
            "edge_relay_sink_failures_total",
            "Batches a sink failed to deliver.",
        );
        for (s, c) in SINK_NAMES.iter().zip(&self.sink_failures) {
            let _ = writeln!(
                out,
                "edge_relay_sink_failures_total{{sink=\"{s}\"}} {}",
                get(c)
            );
        }
        head(
            &mut out,
            "edge_relay_timeseries_nonfinite_skipped_total",
            "Readings not written to the time-series store because the value is NaN or infinite.",
        );
        let _ = writeln!(
            out,
            "edge_relay_timeseries_nonfinite_skipped_total {}",
            get(&self.nonfinite_skipped)
        );
        head(
            &mut out,
            "edge_relay_timeseries_tags_dropped_total",
            "Series tags not written to the time-series store (reserved key or empty).",
        );
        let _ = writeln!(
            out,
            "edge_relay_timeseries_tags_dropped_total {}",
            get(&self.tags_dropped)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_every_outcome_with_its_count() {
        let m = Metrics::default();
        m.request(Outcome::Accepted);
        m.request(Outcome::Accepted);
        m.request(Outcome::TooLarge);
        m.sink_failure("file");
        m.accepted(10, 2);
        let text = m.render();
        assert!(
            text.contains("edge_relay_requests_total{outcome=\"accepted\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("edge_relay_requests_total{outcome=\"too_large\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("edge_relay_requests_total{outcome=\"internal\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("edge_relay_sink_failures_total{sink=\"file\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("edge_relay_readings_total 10\n"), "{text}");
        assert!(
            text.contains("# TYPE edge_relay_alarms_total counter\n"),
            "{text}"
        );
    }
}
