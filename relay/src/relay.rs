//! The relay's state, independent of HTTP: who may upload (gateway tokens),
//! the decode limits, the sinks and the counters. [`crate::server`] wraps it
//! in routes.
//!
//! Invariants:
//! - Token lookup compares the presented token with *every* configured token
//!   in constant time, so response timing does not reveal how much of a
//!   token matched or which gateway it was close to. (It does reveal the
//!   length; fixed-length hashes come with the token-hashing issue.)
//! - A batch is acknowledged only when every sink returned `Ok`. Deliveries
//!   run as tasks on the relay's [`TaskTracker`], so a client that hangs up
//!   does not cancel a write half-way, and shutdown waits for them.

use std::sync::Arc;

use edge_wire::Limits;
use subtle::ConstantTimeEq;
use tokio_util::task::TaskTracker;

use crate::config::{ConfigError, GatewayConfig, RelayConfig};
use crate::message::Delivery;
use crate::metrics::Metrics;
use crate::sink::{Sink, SinkError};

/// A configured relay, ready to [`crate::serve`]. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    gateways: Vec<GatewayConfig>,
    limits: Limits,
    sinks: Vec<Arc<Sink>>,
    metrics: Arc<Metrics>,
    tracker: TaskTracker,
}

/// Why the relay could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The configuration breaks a rule.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A sink could not be built.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The HTTP server failed.
    #[error("HTTP server on {addr}: {source}")]
    Serve {
        /// The listening address, or `unknown`.
        addr: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl Relay {
    /// Check the config ([`RelayConfig::problems`]) and build its sinks.
    pub fn from_config(config: RelayConfig) -> Result<Relay, RelayError> {
        let issues = config.problems();
        if !issues.is_empty() {
            return Err(ConfigError::Invalid {
                origin: "<code>".into(),
                issues,
            }
            .into());
        }
        let metrics = Arc::new(Metrics::default());
        let sinks = Sink::from_config(&config, &metrics)?
            .into_iter()
            .map(Arc::new)
            .collect();
        Ok(Relay {
            inner: Arc::new(Inner {
                gateways: config.gateways,
                limits: config.limits,
                sinks,
                metrics,
                tracker: TaskTracker::new(),
            }),
        })
    }

    /// The gateway id a bearer token belongs to.
    pub fn authenticate(&self, token: &[u8]) -> Option<&str> {
        let mut found = None;
        for gw in &self.inner.gateways {
            // No early exit: every token is compared every time.
            if bool::from(gw.token.as_bytes().ct_eq(token)) {
                found = Some(gw.id.as_str());
            }
        }
        found
    }

    /// The decode limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Names of the configured sinks, in delivery order.
    pub fn sink_names(&self) -> Vec<&'static str> {
        self.inner.sinks.iter().map(|s| s.name()).collect()
    }

    /// Deliver to every sink concurrently; `Ok` when all acknowledged,
    /// otherwise every failure with the sink's name.
    pub async fn deliver(
        &self,
        delivery: Arc<Delivery>,
    ) -> Result<(), Vec<(&'static str, SinkError)>> {
        let tasks: Vec<_> = self
            .inner
            .sinks
            .iter()
            .map(|sink| {
                let (sink, delivery) = (sink.clone(), delivery.clone());
                let name = sink.name();
                (
                    name,
                    self.inner
                        .tracker
                        .spawn(async move { sink.deliver(delivery).await }),
                )
            })
            .collect();
        let mut failures = Vec::new();
        for (name, task) in tasks {
            let result = task.await.unwrap_or_else(|e| {
                Err(SinkError::Task {
                    sink: name,
                    message: e.to_string(),
                })
            });
            if let Err(e) = result {
                self.inner.metrics.sink_failure(name);
                failures.push((name, e));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures)
        }
    }

    /// Stop accepting delivery tasks and wait for those running.
    pub(crate) async fn drain(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(id: &str, token: &str) -> GatewayConfig {
        GatewayConfig {
            id: id.into(),
            token: token.into(),
        }
    }

    #[test]
    fn authenticate_finds_the_gateway_of_a_token_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let config = RelayConfig::new(
            dir.path(),
            vec![
                gateway("gw-1", "token-of-gateway-1"),
                gateway("gw-2", "token-of-gateway-2"),
            ],
        );
        let relay = Relay::from_config(config).unwrap();
        assert_eq!(relay.authenticate(b"token-of-gateway-2"), Some("gw-2"));
        assert_eq!(relay.authenticate(b"token-of-gateway-1"), Some("gw-1"));
        assert_eq!(relay.authenticate(b"token-of-gateway-"), None);
        assert_eq!(relay.authenticate(b"token-of-gateway-11"), None);
        assert_eq!(relay.authenticate(b""), None);
        assert_eq!(relay.sink_names(), ["file"]);
    }

    #[test]
    fn from_config_rejects_a_config_built_in_code_that_breaks_the_rules() {
        let mut config = RelayConfig::new("/nonexistent", vec![gateway("gw-1", "short")]);
        config.data_dir = None;
        let err = Relay::from_config(config).unwrap_err().to_string();
        assert!(err.contains("gateways[0].token"), "{err}");
        assert!(err.contains("data_dir"), "{err}");
    }
}
