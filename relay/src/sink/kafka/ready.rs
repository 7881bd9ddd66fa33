//! The Kafka sink's readiness probe for `/readyz`: a metadata request to the
//! brokers, bounded by a short timeout. It proves a broker answers, not that
//! a produce would be acknowledged (that is what delivery reports are for).

use std::time::Duration;

use super::KafkaSink;
use crate::sink::SinkError;

impl KafkaSink {
    /// Fetch the cluster's metadata within `timeout`.
    pub async fn ready(&self, timeout: Duration) -> Result<(), SinkError> {
        let producer = self.producer.clone();
        let fetched = tokio::task::spawn_blocking(move || {
            use rdkafka::producer::Producer;
            producer
                .client()
                .fetch_metadata(None, timeout)
                .map(|m| m.brokers().len())
        })
        .await
        .map_err(|e| SinkError::Task {
            sink: "kafka",
            message: e.to_string(),
        })?;
        match fetched {
            Ok(brokers) if brokers > 0 => Ok(()),
            Ok(_) => Err(SinkError::Unready {
                sink: "kafka",
                target: self.brokers.clone(),
                reason: "metadata lists no broker".into(),
            }),
            Err(e) => Err(SinkError::Unready {
                sink: "kafka",
                target: self.brokers.clone(),
                reason: format!("metadata request failed: {e}"),
            }),
        }
    }
}
