//! Sinks: where accepted batches go. A sink's `deliver` returns `Ok` only
//! once its destination holds the whole batch durably (Kafka acknowledged
//! every message with acks=all, the time-series store answered 2xx, the file
//! is fsynced). Anything else is an error, the gateway gets 503 and sends the
//! batch again later, so a failure never loses data but may duplicate it.
//!
//! An enum rather than a trait object: the three kinds are known, and an enum
//! keeps `deliver` an ordinary `async fn`.
//!
//! Reading order: [`file`] (the default, simplest), [`kafka`],
//! [`timeseries`] with its pure [`line_protocol`] renderer.

pub mod file;
pub mod kafka;
pub mod line_protocol;
pub mod timeseries;

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::RelayConfig;
use crate::message::Delivery;
use crate::metrics::Metrics;

pub use file::FileSink;
pub use kafka::KafkaSink;
pub use timeseries::TimeseriesSink;

/// One destination of accepted batches.
#[derive(Debug)]
pub enum Sink {
    /// Kafka topics, one message per reading or alarm.
    Kafka(KafkaSink),
    /// A time-series store speaking Influx line protocol.
    Timeseries(TimeseriesSink),
    /// JSON lines in local files; used when nothing else is configured.
    File(FileSink),
}

impl Sink {
    /// The sinks a config asks for: Kafka and/or time-series, or the file
    /// sink when neither is configured.
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
        if sinks.is_empty() {
            let dir = config.data_dir.clone().unwrap_or_default();
            sinks.push(Sink::File(FileSink::open(&dir)?));
        }
        Ok(sinks)
    }

    /// Short name, used in logs and as a metric label.
    pub fn name(&self) -> &'static str {
        match self {
            Sink::Kafka(_) => "kafka",
            Sink::Timeseries(_) => "timeseries",
            Sink::File(_) => "file",
        }
    }

    /// Deliver the whole batch; `Ok` means durably stored.
    pub async fn deliver(&self, delivery: Arc<Delivery>) -> Result<(), SinkError> {
        match self {
            Sink::Kafka(s) => s.deliver(delivery).await,
            Sink::Timeseries(s) => s.deliver(delivery).await,
            Sink::File(s) => s.deliver(delivery).await,
        }
    }
}

/// Why a sink could not be built or could not deliver a batch. All delivery
/// errors are transient from the gateway's point of view: it retries.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
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
