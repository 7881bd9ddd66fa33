//! The Kafka sink's configuration (`[kafka]`): brokers, topics, message
//! generations, delivery bound, granularity and pass-through producer
//! properties. Parsed and checked in [`crate::config`]; used by
//! [`super::KafkaSink`].

use std::collections::BTreeMap;
use std::time::Duration;

use crate::message::Version;

/// Default Kafka topic for readings.
pub const DEFAULT_READINGS_TOPIC: &str = "edge.readings.v1";
/// Default Kafka topic for alarm events.
pub const DEFAULT_ALARMS_TOPIC: &str = "edge.alarms.v1";
/// Default Kafka topic for v2 readings (keyed by gateway and series).
pub const DEFAULT_READINGS_TOPIC_V2: &str = "edge.readings.v2";
/// Default Kafka topic for v2 alarm events (keyed by gateway and series).
pub const DEFAULT_ALARMS_TOPIC_V2: &str = "edge.alarms.v2";
/// Default Kafka topic for gateway events (gap records).
pub const DEFAULT_EVENTS_TOPIC: &str = "edge.events.v1";
/// Default bound on one Kafka delivery, in milliseconds.
pub const DEFAULT_DELIVERY_TIMEOUT_MS: u64 = 30_000;
/// Where and how to publish to Kafka. `Debug` hides the values of producer
/// properties that hold secrets (`sasl.password`, `ssl.key.password`, ...).
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Bootstrap brokers, host:port each.
    pub brokers: Vec<String>,
    /// Topic for v1 readings (key = series name), one message per reading.
    pub readings_topic: String,
    /// Topic for v1 alarm events (key = series name), one message per event.
    pub alarms_topic: String,
    /// Topic for v2 readings (key = `<gateway>:<series>`).
    pub readings_topic_v2: String,
    /// Topic for v2 alarm events (key = `<gateway>:<series>`).
    pub alarms_topic_v2: String,
    /// Which message generations to publish, each to its own topics:
    /// `["v1"]`, `["v2"]` or both during a migration; sorted, never empty.
    pub message_versions: Vec<Version>,
    /// Topic for gateway events (readings a gateway dropped under its spool policy), keyed by gateway id.
    pub events_topic: String,
    /// Longest wait for the brokers to acknowledge a message (librdkafka message.timeout.ms); past it the batch fails with 503.
    pub delivery_timeout: Duration,
    /// One message per reading (`Reading`) or one per series per batch (`Series`).
    pub granularity: Granularity,
    /// Extra librdkafka producer properties, passed through unchanged; see
    /// [`crate::sink::kafka::properties`] for the ones the relay refuses.
    pub producer: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret =
            |k: &str| k.contains("password") || k.contains("secret") || k.ends_with(".pem");
        let producer: BTreeMap<&str, &str> = self
            .producer
            .iter()
            .map(|(k, v)| (k.as_str(), if secret(k) { "<hidden>" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("readings_topic", &self.readings_topic)
            .field("alarms_topic", &self.alarms_topic)
            .field("readings_topic_v2", &self.readings_topic_v2)
            .field("alarms_topic_v2", &self.alarms_topic_v2)
            .field("message_versions", &self.message_versions)
            .field("events_topic", &self.events_topic)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("granularity", &self.granularity)
            .field("producer", &producer)
            .finish()
    }
}

impl KafkaConfig {
    /// A config with the default topics, timeout, granularity and message
    /// generation (v1) and no extra producer properties.
    pub fn new(brokers: Vec<String>) -> KafkaConfig {
        KafkaConfig {
            brokers,
            readings_topic: DEFAULT_READINGS_TOPIC.into(),
            alarms_topic: DEFAULT_ALARMS_TOPIC.into(),
            readings_topic_v2: DEFAULT_READINGS_TOPIC_V2.into(),
            alarms_topic_v2: DEFAULT_ALARMS_TOPIC_V2.into(),
            message_versions: vec![Version::V1],
            events_topic: DEFAULT_EVENTS_TOPIC.into(),
            delivery_timeout: Duration::from_millis(DEFAULT_DELIVERY_TIMEOUT_MS),
            granularity: Granularity::default(),
            producer: BTreeMap::new(),
        }
    }

    /// The readings and alarms topics of one generation.
    pub fn topics(&self, version: Version) -> Topics {
        let (readings, alarms) = match version {
            Version::V1 => (&self.readings_topic, &self.alarms_topic),
            Version::V2 => (&self.readings_topic_v2, &self.alarms_topic_v2),
        };
        Topics {
            readings: readings.clone(),
            alarms: alarms.clone(),
        }
    }
}

/// The readings and alarms topics of one message generation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Readings (or series batches).
    pub readings: String,
    /// Alarm events.
    pub alarms: String,
}

/// How readings are cut into Kafka messages (`kafka.granularity`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Granularity {
    /// `"reading"`: one message per reading (`edge.reading.v1`), the easiest to consume.
    #[default]
    Reading,
    /// `"series"`: one message per series per batch (`edge.series-batch.v1`), an
    /// array of points; far fewer messages for high-rate series.
    Series,
}

impl Granularity {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Reading => "reading",
            Granularity::Series => "series",
        }
    }
}
