//! The Kafka sink: one message per reading (or, with `granularity =
//! "series"`, one per series per batch) to the readings topic and one per
//! alarm event to the alarms topic, in each message generation
//! `kafka.message_versions` asks for (v1 topics keyed by series name, v2
//! topics keyed by `<gateway>:<series>`, [`crate::message::series_key`]; so
//! one series of one gateway stays ordered within its partition), value =
//! the JSON of [`crate::message`],
//! headers `gateway`, `batch_seq`, `schema`, and `spool_instance` (16 hex
//! digits, wire v4 batches) and `batch_conflict: true` (a batch the ledger
//! knew with other content, see [`crate::ledger`]) when they apply. Gap records (readings a gateway
//! dropped under its spool policy) and device-state events (a device behind
//! the gateway down, degraded or back) go to the events topic, one message
//! each, key = gateway id (so one gateway's events stay ordered). Extra producer
//! properties pass through [`properties`], which refuses any that would
//! weaken delivery. Partitions are chosen by [`PARTITIONER`], the Java
//! client's murmur2, unless `[kafka.producer]` names another.
//!
//! Durability: the producer runs with `enable.idempotence=true` and
//! `acks=all`, and `deliver` enqueues every message of the batch, then waits
//! for every delivery report; one failure fails the batch. `message.timeout.ms`
//! bounds the wait, so a broker outage becomes a 503 rather than a hang.
//! Messages of a failed batch that did get through are sent again when the
//! gateway retries: delivery is at least once (see `docs/kafka-messages.md`).
//!
//! When librdkafka's local queue is full, the sink first waits for the
//! reports of what it already enqueued, and otherwise (the queue is full of
//! other requests' messages) polls every 10 ms until the delivery timeout.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;

use crate::message::{series_key, Delivery, Version, EVENT_SCHEMA};
use crate::sink::SinkError;

pub mod config;
pub mod properties;

pub use config::{Granularity, KafkaConfig, Topics};

/// The librdkafka partitioner the relay sets unless `[kafka.producer]`
/// names another: Java-client compatible murmur2 (keys are never null).
pub const PARTITIONER: &str = "murmur2_random";

/// Publishes batches to Kafka.
pub struct KafkaSink {
    producer: FutureProducer,
    brokers: String,
    /// Readings and alarms topics of v1 messages.
    v1: Topics,
    /// Readings and alarms topics of v2 messages.
    v2: Topics,
    events_topic: String,
    delivery_timeout: Duration,
    granularity: Granularity,
    /// The generations published, each to its own topics.
    versions: Vec<Version>,
}

impl fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSink")
            .field("brokers", &self.brokers)
            .field("v1", &self.v1)
            .field("v2", &self.v2)
            .field("events_topic", &self.events_topic)
            .field("granularity", &self.granularity)
            .field("versions", &self.versions)
            .finish_non_exhaustive()
    }
}

/// Which topic a rendered message goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Reading,
    Alarm,
    Event,
}

/// One rendered message: which topic, which generation, which series (the
/// key; `None` for a gateway event, keyed by the gateway id), the JSON.
struct Outgoing {
    kind: Kind,
    version: Version,
    series: Option<usize>,
    payload: Vec<u8>,
}

impl KafkaSink {
    /// Create the producer. It connects lazily: a broker that is down now
    /// shows up as delivery errors later, not here.
    pub fn new(config: &KafkaConfig) -> Result<KafkaSink, SinkError> {
        let brokers = config.brokers.join(",");
        let mut client = ClientConfig::new();
        client.set("compression.type", "lz4");
        // The Java client's default partitioner (murmur2 of the key, positive
        // modulo the partition count), so a Kafka Streams or Flink job keyed
        // the same way is co-partitioned with the relay's topics. librdkafka's
        // own default (`consistent_random`, CRC32) puts most keys elsewhere.
        // Set before the pass-through properties: an operator may choose
        // another one in `[kafka.producer]`.
        client.set("partitioner", PARTITIONER);
        // The config check refuses these already; a config built in code
        // reaches here unchecked.
        for (name, value) in &config.producer {
            properties::check(name, value).map_err(|reason| SinkError::KafkaProperty {
                name: name.clone(),
                reason,
            })?;
            client.set(name, value);
        }
        let producer = client
            .set("bootstrap.servers", &brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set(
                "message.timeout.ms",
                config.delivery_timeout.as_millis().to_string(),
            )
            .create()
            .map_err(|source| SinkError::KafkaSetup {
                brokers: brokers.clone(),
                source: Box::new(source),
            })?;
        Ok(KafkaSink {
            producer,
            brokers,
            v1: config.topics(Version::V1),
            v2: config.topics(Version::V2),
            events_topic: config.events_topic.clone(),
            delivery_timeout: config.delivery_timeout,
            granularity: config.granularity,
            versions: config.message_versions.clone(),
        })
    }

    /// Messages in the producer waiting to be sent or for their delivery
    /// report (librdkafka's `rd_kafka_outq_len`).
    pub fn queue_depth(&self) -> i32 {
        self.producer.in_flight_count()
    }

    /// Wait up to `timeout` for every message still in the producer to be
    /// delivered (shutdown). Returns how many were left when it gave up.
    pub async fn flush(&self, timeout: Duration) -> i32 {
        let producer = self.producer.clone();
        let left = tokio::task::spawn_blocking(move || {
            let _ = producer.flush(timeout);
            producer.in_flight_count()
        })
        .await;
        left.unwrap_or_else(|_| self.queue_depth())
    }

    /// Publish every reading and alarm of the batch and wait until the
    /// brokers acknowledged all of them.
    pub async fn deliver(&self, delivery: Arc<Delivery>) -> Result<(), SinkError> {
        let granularity = self.granularity;
        let rendered = {
            let delivery = delivery.clone();
            let versions = self.versions.clone();
            tokio::task::spawn_blocking(move || render(&delivery, granularity, &versions))
                .await
                .map_err(|e| SinkError::Task {
                    sink: "kafka",
                    message: e.to_string(),
                })?
        };
        let batch = &delivery.batch;
        let seq = batch.seq.to_string();
        let instance = batch.instance.map(|i| format!("{:016x}", i.get()));
        let failed = |topic: &str, source| SinkError::KafkaDelivery {
            topic: topic.to_owned(),
            gateway: batch.gateway_id.clone(),
            seq: batch.seq,
            source: Box::new(source),
        };
        let deadline = Instant::now() + self.delivery_timeout;
        let mut pending: Vec<(&str, DeliveryFuture)> = Vec::new();
        for (n, msg) in rendered.iter().enumerate() {
            let topics = match msg.version {
                Version::V1 => &self.v1,
                Version::V2 => &self.v2,
            };
            let (topic, schema) = match msg.kind {
                Kind::Alarm => (topics.alarms.as_str(), msg.version.alarm_schema()),
                Kind::Event => (self.events_topic.as_str(), EVENT_SCHEMA),
                Kind::Reading => {
                    let schema = match granularity {
                        Granularity::Reading => msg.version.reading_schema(),
                        Granularity::Series => msg.version.series_batch_schema(),
                    };
                    (topics.readings.as_str(), schema)
                }
            };
            let key = match msg.series {
                Some(i) => series_key(msg.version, &batch.gateway_id, &batch.series[i].name),
                None => batch.gateway_id.clone(),
            };
            let mut headers = OwnedHeaders::new_with_capacity(5)
                .insert(Header {
                    key: "gateway",
                    value: Some(batch.gateway_id.as_str()),
                })
                .insert(Header {
                    key: "batch_seq",
                    value: Some(seq.as_str()),
                })
                .insert(Header {
                    key: "schema",
                    value: Some(schema),
                });
            if let Some(instance) = &instance {
                headers = headers.insert(Header {
                    key: "spool_instance",
                    value: Some(instance.as_str()),
                });
            }
            if delivery.conflict {
                headers = headers.insert(Header {
                    key: "batch_conflict",
                    value: Some("true"),
                });
            }
            let mut record = FutureRecord::to(topic)
                .key(key.as_str())
                .payload(msg.payload.as_slice())
                .headers(headers);
            loop {
                match self.producer.send_result(record) {
                    Ok(report) => {
                        pending.push((topic, report));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                        if Instant::now() < deadline =>
                    {
                        record = back;
                        if pending.is_empty() {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        } else {
                            await_reports(&mut pending)
                                .await
                                .map_err(|(t, e)| failed(t, e))?;
                        }
                    }
                    Err((source, _)) => return Err(failed(topic, source)),
                }
            }
            if n % 1024 == 1023 {
                // Enqueueing is synchronous; let other requests run.
                tokio::task::yield_now().await;
            }
        }
        await_reports(&mut pending)
            .await
            .map_err(|(t, e)| failed(t, e))
    }
}

/// Wait for every delivery report in `pending`, emptying it; the first
/// failure wins.
async fn await_reports<'t>(
    pending: &mut Vec<(&'t str, DeliveryFuture)>,
) -> Result<(), (&'t str, KafkaError)> {
    for (topic, report) in pending.drain(..) {
        match report.await {
            Ok(Ok(_)) => {}
            Ok(Err((e, _message))) => return Err((topic, e)),
            // The producer dropped the report: treat like a failed delivery.
            Err(_canceled) => return Err((topic, KafkaError::Canceled)),
        }
    }
    Ok(())
}

/// For each generation in `versions`: readings first (one message per
/// reading, or one per series that has points), then alarms; then gateway
/// events once (gaps, then device states, then SPC rebaselines); each in
/// batch order.
fn render(delivery: &Delivery, granularity: Granularity, versions: &[Version]) -> Vec<Outgoing> {
    let batch = &delivery.batch;
    let mut out = Vec::with_capacity(
        (batch.reading_count() + batch.alarms.len()) * versions.len()
            + batch.gaps.len()
            + batch.devices.len(),
    );
    for &version in versions {
        render_series(delivery, granularity, version, &mut out);
    }
    for gap in &batch.gaps {
        out.push(Outgoing {
            kind: Kind::Event,
            version: Version::V1,
            series: None,
            payload: delivery.gap_json(gap),
        });
    }
    for device in &batch.devices {
        out.push(Outgoing {
            kind: Kind::Event,
            version: Version::V1,
            series: None,
            payload: delivery.device_json(device),
        });
    }
    for (series, alarm) in delivery.rebaselines() {
        out.push(Outgoing {
            kind: Kind::Event,
            version: Version::V1,
            series: None,
            payload: delivery.rebaseline_json(series, alarm),
        });
    }
    out
}

/// The readings and alarms of one generation.
fn render_series(
    delivery: &Delivery,
    granularity: Granularity,
    version: Version,
    out: &mut Vec<Outgoing>,
) {
    let batch = &delivery.batch;
    for (i, series) in batch.series.iter().enumerate() {
        if granularity == Granularity::Series {
            if !series.points.is_empty() {
                out.push(Outgoing {
                    kind: Kind::Reading,
                    version,
                    series: Some(i),
                    payload: delivery.series_json_as(version, series),
                });
            }
            continue;
        }
        for point in &series.points {
            out.push(Outgoing {
                kind: Kind::Reading,
                version,
                series: Some(i),
                payload: delivery.reading_json_as(version, series, point),
            });
        }
    }
    for (i, series, alarm) in delivery.alarms_indexed() {
        out.push(Outgoing {
            kind: Kind::Alarm,
            version,
            series: Some(i),
            payload: delivery.alarm_json_as(version, series, alarm),
        });
    }
}

mod ready;

#[cfg(test)]
mod tests;
