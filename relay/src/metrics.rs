//! What the relay did, rendered in the Prometheus text format at
//! `GET /metrics`: counters of batches and readings in and out, rejections
//! by status and reason, per-gateway last-seen time and sequence, a latency
//! histogram per sink, and (added by [`crate::Relay`]) the Kafka producer's
//! queue depth. Plain atomics and two small mutex-guarded maps: a handful of
//! series does not need a metrics framework.
//!
//! Counters only ever grow (they reset when the process restarts, which
//! Prometheus' `rate()` handles). Label values that come from outside the
//! code (gateway ids, from the config) are escaped as the format requires.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

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
    /// 429: the gateway sent more than `[fairness]` allows; retry later.
    Throttled,
    /// 500: a bug in the relay (a task panicked).
    Internal,
    /// 409: the batch names a series table the relay does not hold; the
    /// gateway sends it again with its table.
    UnknownTable,
}

impl Outcome {
    const ALL: [Outcome; 10] = [
        Outcome::Accepted,
        Outcome::Unauthorized,
        Outcome::Forbidden,
        Outcome::Malformed,
        Outcome::TooLarge,
        Outcome::Invalid,
        Outcome::Unavailable,
        Outcome::Throttled,
        Outcome::Internal,
        Outcome::UnknownTable,
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
            Outcome::Throttled => "throttled",
            Outcome::Internal => "internal",
            Outcome::UnknownTable => "unknown_series_table",
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
    /// Batches whose key the ledger knew with other content; delivered, flagged.
    conflicts: AtomicU64,
    /// Ledger rows pruned: past the window, beyond the row bound.
    ledger_pruned: [AtomicU64; 2],
    batches_received: AtomicU64,
    readings_received: AtomicU64,
    /// Batches that named their series table instead of carrying it.
    referenced_batches: AtomicU64,
    /// Series tables written to the ledger's store.
    series_tables_kept: AtomicU64,
    /// `(status, reason)` → count.
    rejected: Mutex<BTreeMap<(u16, &'static str), u64>>,
    /// Gateway id → what was last seen of it.
    gateways: Mutex<BTreeMap<String, GatewaySeen>>,
    sink_latency: [Histogram; SINK_NAMES.len()],
}

/// The last request and batch of one gateway.
#[derive(Debug, Default, Clone, Copy)]
struct GatewaySeen {
    /// Unix time of its last authenticated request, seconds.
    last_seen_s: f64,
    /// Sequence number of its last stored batch, if any.
    last_seq: Option<u64>,
}

/// Upper bounds of the sink latency buckets, seconds.
const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// A cumulative Prometheus histogram over [`LATENCY_BUCKETS`].
#[derive(Debug, Default)]
struct Histogram {
    /// Per bucket (not cumulative; summed when rendered), then +Inf.
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_us: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&b| s <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }
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

    /// Count a batch whose (gateway, instance, seq) the ledger knew with
    /// other content (delivered anyway, flagged as a conflict).
    pub fn conflict(&self) {
        self.conflicts.fetch_add(1, Ordering::Relaxed);
    }

    /// Count ledger rows pruned past the window (`by_age`) and beyond the
    /// row bound (`by_rows`).
    pub fn ledger_pruned(&self, by_age: u64, by_rows: u64) {
        self.ledger_pruned[0].fetch_add(by_age, Ordering::Relaxed);
        self.ledger_pruned[1].fetch_add(by_rows, Ordering::Relaxed);
    }

    /// Count one failed delivery to the sink named `sink` (see [`SINK_NAMES`]).
    pub fn sink_failure(&self, sink: &str) {
        if let Some(i) = SINK_NAMES.iter().position(|s| *s == sink) {
            self.sink_failures[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Count a batch that decoded, with its readings ("in", whatever
    /// happens to it next).
    pub fn received(&self, readings: usize) {
        self.batches_received.fetch_add(1, Ordering::Relaxed);
        self.readings_received
            .fetch_add(readings as u64, Ordering::Relaxed);
    }

    /// Count a batch that named its series table (format v7 or v9) and decoded
    /// with the table the relay held.
    pub fn referenced_batch(&self) {
        self.referenced_batches.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a series table written to the ledger's store.
    pub fn series_table_kept(&self) {
        self.series_tables_kept.fetch_add(1, Ordering::Relaxed);
    }

    /// Count a refused request by HTTP status and reason (the decoder's
    /// label for 400/413 from decoding, else the outcome's label).
    pub fn rejected(&self, status: u16, reason: &'static str) {
        let mut map = self.rejected.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((status, reason)).or_default() += 1;
    }

    /// Record an authenticated request from `gateway` at `unix_s`.
    pub fn gateway_seen(&self, gateway: &str, unix_s: f64) {
        let mut map = self.gateways.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(gateway) {
            Some(seen) => seen.last_seen_s = seen.last_seen_s.max(unix_s),
            None => {
                map.insert(
                    gateway.to_owned(),
                    GatewaySeen {
                        last_seen_s: unix_s,
                        last_seq: None,
                    },
                );
            }
        }
    }

    /// Record that batch `seq` of `gateway` is stored (now or before).
    pub fn gateway_stored(&self, gateway: &str, seq: u64) {
        let mut map = self.gateways.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(gateway.to_owned()).or_default().last_seq = Some(seq);
    }

    /// Record how long one delivery to the sink named `sink` took, success
    /// or failure.
    pub fn sink_latency(&self, sink: &str, took: Duration) {
        if let Some(i) = SINK_NAMES.iter().position(|s| *s == sink) {
            self.sink_latency[i].observe(took);
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
            "Batches delivered before (same gateway, spool instance, sequence number and content), answered 200 without publishing again.",
        );
        let _ = writeln!(
            out,
            "edge_relay_duplicate_batches_total {}",
            get(&self.duplicates)
        );
        head(
            &mut out,
            "edge_relay_referenced_batches_total",
            "Batches that named their series table by content id instead of carrying it (format v7 or v9), decoded with the table the relay held.",
        );
        let _ = writeln!(
            out,
            "edge_relay_referenced_batches_total {}",
            get(&self.referenced_batches)
        );
        head(
            &mut out,
            "edge_relay_series_tables_kept_total",
            "Series tables written to the ledger's store, so the gateway's next batches can name them instead of carrying them.",
        );
        let _ = writeln!(
            out,
            "edge_relay_series_tables_kept_total {}",
            get(&self.series_tables_kept)
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
            "edge_relay_ledger_conflicts_total",
            "Batches whose gateway, spool instance and sequence number the ledger knew with other content; published anyway, flagged.",
        );
        let _ = writeln!(
            out,
            "edge_relay_ledger_conflicts_total {}",
            get(&self.conflicts)
        );
        head(
            &mut out,
            "edge_relay_ledger_pruned_total",
            "Ledger rows forgotten: past dedup.window_hours (age) or beyond dedup.max_rows (rows).",
        );
        for (reason, c) in ["age", "rows"].iter().zip(&self.ledger_pruned) {
            let _ = writeln!(
                out,
                "edge_relay_ledger_pruned_total{{reason=\"{reason}\"}} {}",
                get(c)
            );
        }
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
        head(
            &mut out,
            "edge_relay_batches_received_total",
            "Batches that decoded, whatever happened to them next.",
        );
        let _ = writeln!(
            out,
            "edge_relay_batches_received_total {}",
            get(&self.batches_received)
        );
        head(
            &mut out,
            "edge_relay_readings_received_total",
            "Readings in batches that decoded, whatever happened to them next.",
        );
        let _ = writeln!(
            out,
            "edge_relay_readings_received_total {}",
            get(&self.readings_received)
        );
        head(
            &mut out,
            "edge_relay_rejected_total",
            "Refused batch uploads by HTTP status and reason.",
        );
        for ((status, reason), n) in self
            .rejected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "edge_relay_rejected_total{{status=\"{status}\",reason=\"{reason}\"}} {n}"
            );
        }
        let gateways = self
            .gateways
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let _ = writeln!(
            out,
            "# HELP edge_relay_gateway_last_seen_seconds Unix time of the gateway's last authenticated request.\n\
             # TYPE edge_relay_gateway_last_seen_seconds gauge"
        );
        for (gw, seen) in &gateways {
            let _ = writeln!(
                out,
                "edge_relay_gateway_last_seen_seconds{{gateway=\"{}\"}} {:.3}",
                escape(gw),
                seen.last_seen_s
            );
        }
        let _ = writeln!(
            out,
            "# HELP edge_relay_gateway_last_seq Sequence number of the gateway's last stored batch.\n\
             # TYPE edge_relay_gateway_last_seq gauge"
        );
        for (gw, seen) in &gateways {
            if let Some(seq) = seen.last_seq {
                let _ = writeln!(
                    out,
                    "edge_relay_gateway_last_seq{{gateway=\"{}\"}} {seq}",
                    escape(gw)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP edge_relay_sink_seconds Time one sink took to deliver one batch (success or failure).\n\
             # TYPE edge_relay_sink_seconds histogram"
        );
        for (sink, h) in SINK_NAMES.iter().zip(&self.sink_latency) {
            let mut cumulative = 0;
            for (i, c) in h.counts.iter().enumerate() {
                cumulative += get(c);
                let le = LATENCY_BUCKETS
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
                let _ = writeln!(
                    out,
                    "edge_relay_sink_seconds_bucket{{sink=\"{sink}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                out,
                "edge_relay_sink_seconds_sum{{sink=\"{sink}\"}} {}",
                get(&h.sum_us) as f64 / 1e6
            );
            let _ = writeln!(
                out,
                "edge_relay_sink_seconds_count{{sink=\"{sink}\"}} {cumulative}"
            );
        }
        out
    }

    /// The Kafka producer's queue depth gauge (messages waiting for a
    /// delivery report), rendered apart because the producer owns the number.
    pub fn render_kafka_queue(out: &mut String, messages: i32) {
        let _ = writeln!(
            out,
            "# HELP edge_relay_kafka_queue_messages Messages in the Kafka producer waiting for delivery or its report.\n\
             # TYPE edge_relay_kafka_queue_messages gauge\n\
             edge_relay_kafka_queue_messages {messages}"
        );
    }
}

/// A label value as the text format wants it: `\\`, `\"` and `\n` escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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

    #[test]
    fn gauges_histograms_and_rejections_render_with_their_labels() {
        let m = Metrics::default();
        m.received(7);
        m.rejected(413, "too_large");
        m.rejected(413, "too_large");
        m.rejected(401, "unauthorized");
        m.gateway_seen("gw-\"1\"", 1_800_000_000.5);
        m.gateway_stored("gw-\"1\"", 42);
        m.sink_latency("kafka", Duration::from_millis(3));
        m.sink_latency("kafka", Duration::from_secs(60));
        let text = m.render();
        for line in [
            "edge_relay_batches_received_total 1\n",
            "edge_relay_readings_received_total 7\n",
            "edge_relay_rejected_total{status=\"413\",reason=\"too_large\"} 2\n",
            "edge_relay_rejected_total{status=\"401\",reason=\"unauthorized\"} 1\n",
            "edge_relay_gateway_last_seen_seconds{gateway=\"gw-\\\"1\\\"\"} 1800000000.500\n",
            "edge_relay_gateway_last_seq{gateway=\"gw-\\\"1\\\"\"} 42\n",
            "edge_relay_sink_seconds_bucket{sink=\"kafka\",le=\"0.0025\"} 0\n",
            "edge_relay_sink_seconds_bucket{sink=\"kafka\",le=\"0.005\"} 1\n",
            "edge_relay_sink_seconds_bucket{sink=\"kafka\",le=\"30\"} 1\n",
            "edge_relay_sink_seconds_bucket{sink=\"kafka\",le=\"+Inf\"} 2\n",
            "edge_relay_sink_seconds_count{sink=\"kafka\"} 2\n",
            "edge_relay_sink_seconds_sum{sink=\"kafka\"} 60.003\n",
            "edge_relay_sink_seconds_count{sink=\"file\"} 0\n",
        ] {
            assert!(text.contains(line), "{line:?} not in\n{text}");
        }
    }
}
