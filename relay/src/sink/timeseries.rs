//! The time-series sink: POSTs the batch's readings as Influx line protocol
//! (see [`super::line_protocol`] for the layout) to a write endpoint such as
//! VictoriaMetrics' `/write` or InfluxDB 1.x's `/write?db=...`. Alarm events,
//! gaps and device-state events are not written here; they go to Kafka or
//! the file sink.
//!
//! A batch is acknowledged when every request answered 2xx (VictoriaMetrics
//! and InfluxDB answer 204). Big batches are cut into bodies of about
//! [`BODY_BYTES`] and sent one after the other; if a later body fails, the
//! earlier ones are written again on retry, which the stores absorb (same
//! series, same timestamp: the point is overwritten or deduplicated).
//!
//! Readings with NaN or ±inf values are skipped and counted; the warning
//! about them is logged at most once a minute, with the count since the last.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;

use crate::message::Delivery;
use crate::metrics::Metrics;
use crate::sink::line_protocol::{self, LineLayout};
use crate::sink::SinkError;

/// Default bound on one write request to the time-series store, in milliseconds.
pub const DEFAULT_TIMESERIES_TIMEOUT_MS: u64 = 10_000;

/// The time-series sink's configuration (`[timeseries]`). Where and how to write Influx line protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeseriesConfig {
    /// Influx line protocol write endpoint, for example VictoriaMetrics http://127.0.0.1:8428/write (plain http only for now).
    pub url: Url,
    /// How readings become lines: measurement, tag and field names (`measurement`, `series_tag`, `gateway_tag`, `quality`, `quality_key`, `value_field`).
    pub layout: LineLayout,
    /// Longest wait for one write request to the store; past it the batch fails with 503.
    pub timeout: Duration,
}

/// Target size of one write request body, in bytes (VictoriaMetrics accepts
/// 64 MiB by default, InfluxDB 1.x 25 MB; both are far above this).
pub const BODY_BYTES: usize = 4 << 20;

/// Writes readings to a time-series store.
#[derive(Debug)]
pub struct TimeseriesSink {
    client: reqwest::Client,
    /// The configured URL with `precision=u` added.
    url: Url,
    /// The store's `/ping`, for the readiness probe.
    ping: Url,
    /// `url` as errors and `/readyz` show it: without user, password and
    /// InfluxDB's `u`/`p` query arguments.
    shown: String,
    layout: Arc<LineLayout>,
    metrics: Arc<Metrics>,
    nonfinite: LogOncePerInterval,
}

impl TimeseriesSink {
    /// Build the HTTP client; nothing is sent until the first batch.
    pub fn new(
        config: &TimeseriesConfig,
        metrics: Arc<Metrics>,
    ) -> Result<TimeseriesSink, SinkError> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|source| SinkError::TimeseriesSetup {
                url: redacted(&config.url),
                source: source.without_url(),
            })?;
        Ok(TimeseriesSink {
            client,
            shown: redacted(&write_url(&config.url)),
            url: write_url(&config.url),
            ping: ping_url(&config.url),
            layout: Arc::new(config.layout.clone()),
            metrics,
            nonfinite: LogOncePerInterval::new(Duration::from_secs(60)),
        })
    }

    /// Write every finite reading of the batch.
    pub async fn deliver(&self, delivery: Arc<Delivery>) -> Result<(), SinkError> {
        let rendered = {
            let (delivery, layout) = (delivery.clone(), self.layout.clone());
            tokio::task::spawn_blocking(move || {
                line_protocol::render(&delivery, &layout, BODY_BYTES)
            })
            .await
            .map_err(|e| SinkError::Task {
                sink: "timeseries",
                message: e.to_string(),
            })?
        };
        self.metrics.tags_dropped(rendered.tags_dropped);
        if rendered.nonfinite > 0 {
            self.metrics.nonfinite_skipped(rendered.nonfinite);
            if let Some(count) = self.nonfinite.note(rendered.nonfinite) {
                tracing::warn!(
                    gateway = ?delivery.batch.gateway_id,
                    seq = delivery.batch.seq,
                    skipped_since_last_warning = count,
                    "readings with NaN or infinite values not written to the time-series store"
                );
            }
        }
        for body in rendered.bodies {
            self.post(body).await?;
        }
        Ok(())
    }

    /// Readiness probe: `GET /ping` (VictoriaMetrics and InfluxDB 1.x answer
    /// 204) within [`super::READY_TIMEOUT`].
    pub async fn ready(&self) -> Result<(), SinkError> {
        let unready = |reason: String| SinkError::Unready {
            sink: "timeseries",
            target: redacted(&self.ping),
            reason,
        };
        let response = self
            .client
            .get(self.ping.clone())
            .timeout(super::READY_TIMEOUT)
            .send()
            .await
            .map_err(|e| unready(format!("request failed: {}", e.without_url())))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(unready(format!("answered {}", response.status())))
        }
    }

    async fn post(&self, body: String) -> Result<(), SinkError> {
        let url = || self.shown.clone();
        let response = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .body(body)
            .send()
            .await
            .map_err(|source| SinkError::TimeseriesRequest {
                url: url(),
                source: source.without_url(),
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let mut text = response.text().await.unwrap_or_default();
        if text.len() > 512 {
            let cut = (0..=512)
                .rev()
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(0);
            text.truncate(cut);
        }
        Err(SinkError::TimeseriesStatus {
            url: url(),
            status: status.as_u16(),
            body: text,
        })
    }
}

/// `url` without its secrets: no user or password, no InfluxDB 1.x `u`/`p`
/// query arguments. What errors, logs and `/readyz` show.
fn redacted(url: &Url) -> String {
    let mut out = url.clone();
    let _ = out.set_username("");
    let _ = out.set_password(None);
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "u" && k != "p")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    out.set_query(None);
    if !kept.is_empty() {
        out.query_pairs_mut().extend_pairs(kept);
    }
    out.to_string()
}

/// `url` with `precision=u` (replacing any `precision` already there).
fn write_url(url: &Url) -> Url {
    let mut out = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "precision")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    out.query_pairs_mut()
        .clear()
        .extend_pairs(kept)
        .append_pair("precision", "u");
    out
}

/// The `/ping` beside the write endpoint: the last path segment (`write`)
/// replaced by `ping`, no query, so `http://h:8086/write?db=x` gives
/// `http://h:8086/ping` and `http://h/influx/write` gives `http://h/influx/ping`.
fn ping_url(url: &Url) -> Url {
    let mut out = url.clone();
    out.set_query(None);
    let path = url.path();
    let base = path.rsplit_once('/').map_or("", |(base, _)| base);
    out.set_path(&format!("{base}/ping"));
    out
}

/// Counts occurrences and says when to log: the first time, then at most
/// once per interval, with the count accumulated since the last log.
#[derive(Debug)]
struct LogOncePerInterval {
    start: Instant,
    interval: Duration,
    /// Milliseconds after `start` of the last log, plus one (0 = never).
    last: AtomicU64,
    count: AtomicU64,
}

impl LogOncePerInterval {
    fn new(interval: Duration) -> Self {
        LogOncePerInterval {
            start: Instant::now(),
            interval,
            last: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Add `n`; `Some(total since last log)` when it is time to log.
    fn note(&self, n: u64) -> Option<u64> {
        self.count.fetch_add(n, Ordering::Relaxed);
        let now = self.start.elapsed().as_millis() as u64 + 1;
        let last = self.last.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= self.interval.as_millis() as u64;
        if due
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.count.swap(0, Ordering::Relaxed))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_url_sets_microsecond_precision_and_keeps_other_arguments() {
        let cases = [
            (
                "http://127.0.0.1:8428/write",
                "http://127.0.0.1:8428/write?precision=u",
            ),
            (
                "http://h:8086/write?db=edge",
                "http://h:8086/write?db=edge&precision=u",
            ),
            (
                "http://h:8086/write?precision=ns&db=x",
                "http://h:8086/write?db=x&precision=u",
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(
                write_url(&Url::parse(input).unwrap()).as_str(),
                expected,
                "{input}"
            );
        }
    }

    #[test]
    fn shown_urls_carry_no_credentials() {
        for (input, expected) in [
            (
                "http://admin:s3cret@vm:8428/write?db=plant&u=edge&p=pw2&precision=u",
                "http://vm:8428/write?db=plant&precision=u",
            ),
            ("http://vm:8428/write", "http://vm:8428/write"),
        ] {
            let shown = redacted(&Url::parse(input).unwrap());
            assert_eq!(shown, expected);
            assert!(!shown.contains("s3cret") && !shown.contains("pw2"));
        }
    }

    #[test]
    fn ping_url_sits_beside_the_write_endpoint() {
        for (input, expected) in [
            ("http://127.0.0.1:8428/write", "http://127.0.0.1:8428/ping"),
            ("http://h:8086/write?db=edge", "http://h:8086/ping"),
            ("http://h/influx/write", "http://h/influx/ping"),
        ] {
            assert_eq!(
                ping_url(&Url::parse(input).unwrap()).as_str(),
                expected,
                "{input}"
            );
        }
    }

    #[test]
    fn log_limiter_logs_first_then_accumulates() {
        let limiter = LogOncePerInterval::new(Duration::from_secs(3600));
        assert_eq!(limiter.note(2), Some(2));
        assert_eq!(limiter.note(3), None);
        assert_eq!(limiter.note(4), None);
        let limiter = LogOncePerInterval::new(Duration::ZERO);
        assert_eq!(limiter.note(1), Some(1));
        assert_eq!(limiter.note(5), Some(5));
    }
}
