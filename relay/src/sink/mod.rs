//! Sinks: where accepted batches go. A sink's `deliver` returns `Ok` only
//! once its destination holds the whole batch durably (Kafka acknowledged
//! every message with acks=all, the time-series store answered 2xx, the file
//! is fsynced). Anything else is an error, the gateway gets 503 and sends the
//! batch again later, so a failure never loses data but may duplicate it.
//!
//! Several sinks may be configured at once (Kafka, a line-protocol store,
//! PostgreSQL); the relay delivers to all of them concurrently and
//! acknowledges only when every one succeeded.
//!
//! An enum rather than a trait object: the kinds are known, and an enum
//! keeps `deliver` an ordinary `async fn`.
//!
//! Reading order: [`mod@file`] (the default, simplest), [`kafka`],
//! [`timeseries`] with its pure [`line_protocol`] renderer, [`postgres`].

pub mod file;
pub mod kafka;
pub mod line_protocol;
pub mod postgres;
pub mod timeseries;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::config::RelayConfig;
use crate::message::Delivery;
use crate::metrics::Metrics;

pub use file::FileSink;
pub use kafka::KafkaSink;
pub use postgres::PostgresSink;
pub use timeseries::TimeseriesSink;

/// One destination of accepted batches.
#[derive(Debug)]
pub enum Sink {
    /// Kafka topics, one message per reading or alarm.
    Kafka(KafkaSink),
    /// A time-series store speaking Influx line protocol.
    Timeseries(TimeseriesSink),
    /// A PostgreSQL table, one row per reading.
    Postgres(PostgresSink),
    /// JSON lines in local files: when nothing else is configured, or for
    /// alarm and gap events when only the stores are.
    File(FileSink),
}

impl Sink {
    /// The sinks a config asks for: any of Kafka, time-series and
    /// PostgreSQL; the file sink when none is configured, and beside the
    /// stores when Kafka is not configured and `data_dir` is (it keeps the
    /// alarm and gap events the stores do not take).
    pub fn from_config(
        config: &RelayConfig,
        metrics: &Arc<Metrics>,
    ) -> Result<Vec<Sink>, SinkError> {
        let mut sinks = Vec::new();
        if let Some(k) = &config.kafka {
            sinks.push(Sink::Kafka(KafkaSink::new(k)?));
        }
        if let Some(t) = &config.timeseries {
            sinks.push(Sink::Timeseries(TimeseriesSink::new(t, metrics.clone())?));
        }
        if let Some(p) = &config.postgres {
            sinks.push(Sink::Postgres(PostgresSink::new(p)));
        }
        if config.sink_names().contains(&"file") {
            let dir = config.data_dir.clone().unwrap_or_default();
            sinks.push(Sink::File(if sinks.is_empty() {
                FileSink::open(&dir)?
            } else {
                FileSink::open_events_only(&dir)?
            }));
        } else if config.kafka.is_none() {
            tracing::warn!(
                "neither [kafka] nor data_dir is configured: alarm and gap events are acknowledged but kept nowhere (the time-series and PostgreSQL sinks store readings only)"
            );
        }
        Ok(sinks)
    }

    /// Short name, used in logs and as a metric label.
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Kafka(_) => "kafka",
            Sink::Timeseries(_) => "timeseries",
            Sink::Postgres(_) => "postgres",
            Sink::File(_) => "file",
        }
    }

    /// Deliver the whole batch; `Ok` means durably stored.
    pub async fn deliver(&self, delivery: Arc<Delivery>) -> Result<(), SinkError> {
        match self {
            Sink::Kafka(s) => s.deliver(delivery).await,
            Sink::Timeseries(s) => s.deliver(delivery).await,
            Sink::Postgres(s) => s.deliver(delivery).await,
            Sink::File(s) => s.deliver(delivery).await,
        }
    }
}

/// Longest wait of one readiness probe (`GET /readyz`).
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

impl Sink {
    /// Readiness probe for `GET /readyz`, bounded by [`READY_TIMEOUT`]:
    /// Kafka answers a metadata request, the time-series store answers its
    /// `/ping`, PostgreSQL answers `SELECT 1`; the file sink is always ready.
    pub async fn ready(&self) -> Result<(), SinkError> {
        let probe = async {
            match self {
                Sink::Kafka(s) => s.ready(READY_TIMEOUT).await,
                Sink::Timeseries(s) => s.ready().await,
                Sink::Postgres(s) => s.ready().await,
                Sink::File(_) => Ok(()),
            }
        };
        tokio::time::timeout(READY_TIMEOUT + Duration::from_millis(500), probe)
            .await
            .unwrap_or_else(|_| {
                Err(SinkError::Unready {
                    sink: self.name(),
                    target: String::new(),
                    reason: format!("no answer within {} ms", READY_TIMEOUT.as_millis()),
                })
            })
    }
}

/// Why a sink could not be built or could not deliver a batch. All delivery
/// errors are transient from the gateway's point of view: it retries.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The delivered-batch ledger cannot be reached (readiness only; a
    /// delivery reports it as [`crate::relay::DeliverError::Ledger`]).
    #[error(transparent)]
    Ledger(#[from] crate::ledger::LedgerError),
    /// The Kafka producer could not be created.
    #[error("kafka producer for brokers {brokers:?}: cannot create: {source}")]
    KafkaSetup {
        /// The bootstrap list.
        brokers: String,
        /// librdkafka's reason (boxed: it is large and errors travel by value).
        source: Box<rdkafka::error::KafkaError>,
    },
    /// A `[kafka.producer]` property the relay refuses (see
    /// [`kafka::properties`]).
    #[error("kafka.producer.{name:?}: {reason}")]
    KafkaProperty {
        /// The librdkafka property.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// A message was not acknowledged (broker down, timeout, queue full).
    #[error("kafka topic {topic:?}: batch {seq} of gateway {gateway:?} not delivered: {source}")]
    KafkaDelivery {
        /// Topic of the failed message.
        topic: String,
        /// Gateway of the batch.
        gateway: String,
        /// Sequence number of the batch.
        seq: u64,
        /// librdkafka's reason (boxed: it is large and errors travel by value).
        source: Box<rdkafka::error::KafkaError>,
    },
    /// The HTTP client for the time-series store could not be created.
    #[error("time-series client for {url}: cannot create: {source}")]
    TimeseriesSetup {
        /// The write URL.
        url: String,
        /// reqwest's reason.
        source: reqwest::Error,
    },
    /// The write request failed in transport (refused, timed out).
    #[error("time-series store {url}: write request failed: {source}")]
    TimeseriesRequest {
        /// The write URL.
        url: String,
        /// reqwest's reason.
        source: reqwest::Error,
    },
    /// The store answered with a non-2xx status.
    #[error("time-series store {url}: answered {status}: {body:?}")]
    TimeseriesStatus {
        /// The write URL.
        url: String,
        /// HTTP status code.
        status: u16,
        /// Start of the response body.
        body: String,
    },
    /// PostgreSQL refused a step or the connection broke.
    #[error("postgres {target} table {table}: {action} failed: {message}")]
    Postgres {
        /// `host:port/dbname` (never the password).
        target: String,
        /// The readings table.
        table: String,
        /// What was attempted: `connect`, `create table`, `prepare insert`, `insert`, `SELECT 1`.
        action: &'static str,
        /// tokio-postgres's error with its causes.
        message: String,
    },
    /// A PostgreSQL step took longer than `postgres.timeout_ms`.
    #[error("postgres {target}: {action} timed out after {} ms", after.as_millis())]
    PostgresTimeout {
        /// `host:port/dbname`.
        target: String,
        /// What was attempted.
        action: &'static str,
        /// The configured bound.
        after: Duration,
    },
    /// A readiness probe found the destination unreachable (see [`Sink::ready`]).
    #[error("{sink} {target}: not ready: {reason}")]
    Unready {
        /// Sink name.
        sink: &'static str,
        /// The brokers or URL probed.
        target: String,
        /// What the probe saw.
        reason: String,
    },
    /// A file of the file sink could not be opened, written or synced.
    #[error("file sink {}: cannot {action}: {source}", path.display())]
    File {
        /// The file or directory.
        path: PathBuf,
        /// What was attempted: `create directory`, `open`, `write`, `sync`.
        action: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The task doing the delivery panicked or was cancelled (a relay bug).
    #[error("{sink} sink task failed: {message}")]
    Task {
        /// Sink name.
        sink: &'static str,
        /// The join error.
        message: String,
    },
}
