//! The relay's state, independent of HTTP: who may upload (gateway tokens),
//! the decode limits, the sinks and the counters. [`crate::server`] wraps it
//! in routes.
//!
//! Invariants:
//! - Token lookup hashes the presented token once and compares the hash
//!   with *every* configured hash in constant time ([`crate::auth`]), so
//!   response timing does not reveal which token matched or how close a
//!   wrong one was.
//! - A batch is acknowledged only when every sink returned `Ok`. Deliveries
//!   run as tasks on the relay's [`TaskTracker`], so a client that hangs up
//!   does not cancel a write half-way, and shutdown waits for them.

use std::sync::Arc;

use edge_wire::Limits;
use tokio_util::task::TaskTracker;

use crate::auth::Credentials;
use crate::config::DedupStore;
use crate::config::{ConfigError, GatewayConfig, RelayConfig};
use crate::ledger::{now_ms, BatchKey, Claim, Ledger, LedgerError, LedgerOptions};
use crate::message::{Delivery, Origin};
use crate::metrics::Metrics;
use crate::sink::{Sink, SinkError};
use crate::validation::TimeWindow;

/// Longest wait at shutdown for the Kafka producer to deliver what it
/// still holds. Every answered batch was acknowledged already; what is left
/// belongs to batches that will be answered 503 (or whose client is gone)
/// and will be retried.
pub const SHUTDOWN_FLUSH: std::time::Duration = std::time::Duration::from_secs(10);

/// A configured relay, ready to [`crate::serve`]. Cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    gateways: Vec<GatewayConfig>,
    credentials: Credentials,
    limits: Limits,
    time_window: TimeWindow,
    sinks: Vec<Arc<Sink>>,
    metrics: Arc<Metrics>,
    tracker: TaskTracker,
    ledger: Ledger,
    /// How often [`Relay::prune_ledger`] runs.
    prune_interval: std::time::Duration,
    /// Conflicts are logged at most once per interval, with a count.
    conflict_log: LogLimit,
    /// Bytes all requests together may hold while decoding.
    budget: Arc<crate::admission::DecodeBudget>,
    /// Per-gateway token buckets for requests and bytes.
    fairness: crate::fairness::Fairness,
    /// Requests refused before authentication (no or unknown token) are
    /// logged at most once per interval, with a count.
    unauthorized_log: LogLimit,
    /// Throttled requests are logged at most once per interval.
    throttled_log: LogLimit,
    /// Batches naming a series table this relay does not hold are logged
    /// at most once per interval.
    unknown_table_log: LogLimit,
}

/// At most one log line per [`LogLimit::INTERVAL`]; the calls in between
/// are counted and reported with the next line.
#[derive(Debug, Default)]
pub(crate) struct LogLimit {
    state: std::sync::Mutex<(Option<std::time::Instant>, u64)>,
}

impl LogLimit {
    const INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

    /// `Some(suppressed since the last line)` when a line may be logged now.
    pub(crate) fn allow(&self) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::time::Instant::now();
        match state.0 {
            Some(last) if now.duration_since(last) < Self::INTERVAL => {
                state.1 += 1;
                None
            }
            _ => {
                let suppressed = std::mem::take(&mut state.1);
                state.0 = Some(now);
                Some(suppressed)
            }
        }
    }
}

/// How a batch was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Published to every sink now.
    Now,
    /// Delivered before (same gateway, spool instance, sequence number and
    /// content): not published again.
    Before,
    /// Published to every sink now, flagged: the ledger knew the batch's
    /// key with other content (see [`crate::ledger`]).
    Conflict,
}

/// Why a batch was not stored.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The same batch is being delivered by another request.
    #[error("batch {seq} is being delivered by another request; retry later")]
    InFlight { seq: u64 },
    /// One or more sinks failed; nothing was recorded, so a retry delivers again.
    #[error("{}", .0.iter().map(|(sink, e)| format!("{sink}: {e}")).collect::<Vec<_>>().join("; "))]
    Sinks(Vec<(&'static str, SinkError)>),
    /// The ledger could not be read.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
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
    /// The delivered-batch ledger could not be opened.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
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
        let options = LedgerOptions {
            window: config.dedup.window,
            lease: config.dedup.claim_lease,
            max_rows: config.dedup.max_rows,
        };
        let ledger = match config.dedup.store {
            DedupStore::Sqlite => {
                let path = config
                    .dedup_path()
                    .expect("problems() requires dedup.path or data_dir");
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    // The file sink creates data_dir itself; the ledger may come first.
                    let _ = std::fs::create_dir_all(dir);
                }
                Ledger::sqlite(&path, options)?
            }
            DedupStore::Postgres => Ledger::postgres(
                config
                    .dedup_url()
                    .expect("problems() requires dedup.url or [postgres]"),
                &config.dedup.table,
                config.dedup.timeout,
                options,
            ),
        };
        let sinks = Sink::from_config(&config, &metrics)?
            .into_iter()
            .map(Arc::new)
            .collect();
        Ok(Relay {
            inner: Arc::new(Inner {
                credentials: Credentials::new(
                    config
                        .gateways
                        .iter()
                        .enumerate()
                        .map(|(i, gw)| (i, gw.tokens.as_slice())),
                ),
                gateways: config.gateways,
                limits: config.limits,
                time_window: config.time_window,
                sinks,
                metrics,
                tracker: TaskTracker::new(),
                ledger,
                prune_interval: config.dedup.prune_interval,
                conflict_log: LogLimit::default(),
                fairness: crate::fairness::Fairness::new(config.fairness),
                unauthorized_log: LogLimit::default(),
                throttled_log: LogLimit::default(),
                unknown_table_log: LogLimit::default(),
                budget: crate::admission::DecodeBudget::new(
                    config.admission.decode_budget_bytes,
                    config.admission.decode_wait,
                ),
            }),
        })
    }

    /// Admit one request of `gateway` declaring `bytes` of body now, or say
    /// how long it must wait ([`crate::fairness`]).
    pub fn admit(&self, gateway: &str, bytes: u64) -> crate::fairness::Admission {
        self.inner
            .fairness
            .admit(gateway, bytes, std::time::Instant::now())
    }

    /// Charge body bytes read beyond what the request declared.
    pub fn charge_bytes(&self, gateway: &str, bytes: u64) {
        self.inner
            .fairness
            .charge_bytes(gateway, bytes, std::time::Instant::now());
    }

    /// `Some(lines suppressed since the last one)` when a refusal before
    /// authentication may be logged now.
    pub(crate) fn unauthorized_log(&self) -> Option<u64> {
        self.inner.unauthorized_log.allow()
    }

    /// `Some(lines suppressed since the last one)` when a throttled request
    /// may be logged now.
    pub(crate) fn throttled_log(&self) -> Option<u64> {
        self.inner.throttled_log.allow()
    }

    /// `Some(suppressed)` when a refusal for an unknown series table may be
    /// logged now.
    pub(crate) fn unknown_table_log(&self) -> Option<u64> {
        self.inner.unknown_table_log.allow()
    }

    /// The gateway id a bearer token belongs to.
    pub fn authenticate(&self, token: &[u8]) -> Option<&str> {
        let index = self.inner.credentials.lookup(token)?;
        Some(self.inner.gateways[index].id.as_str())
    }

    /// What the relay adds to every message of a batch from `gateway`
    /// received at `received_us`: the gateway's site and tags.
    pub fn origin(&self, gateway: &str, received_us: i64) -> Origin {
        let gw = self.inner.gateways.iter().find(|g| g.id == gateway);
        Origin {
            site: gw.and_then(|g| g.site.clone()),
            gateway_tags: gw.map(|g| g.tags.clone()).unwrap_or_default(),
            received_us,
        }
    }

    /// The decode limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Decode a body within the shared decode budget
    /// ([`crate::admission::decode`]); hold the reservation while the
    /// batch is in memory.
    pub async fn decode(
        &self,
        body: axum::body::Bytes,
        table: Option<Arc<[u8]>>,
    ) -> Result<(Delivery, crate::admission::Reservation), crate::admission::DecodeError> {
        crate::admission::decode(&self.inner.budget, &self.inner.limits, body, table).await
    }

    /// The shared decode budget.
    pub fn decode_budget(&self) -> &crate::admission::DecodeBudget {
        &self.inner.budget
    }

    /// The accepted window of reading timestamps.
    pub fn time_window(&self) -> &TimeWindow {
        &self.inner.time_window
    }

    /// The counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The `/metrics` page: the counters, then the Kafka producer's queue
    /// depth when Kafka is configured.
    pub fn render_metrics(&self) -> String {
        let mut text = self.inner.metrics.render();
        for sink in &self.inner.sinks {
            if let Sink::Kafka(k) = sink.as_ref() {
                Metrics::render_kafka_queue(&mut text, k.queue_depth());
            }
        }
        text
    }

    /// Names of the configured sinks, in delivery order.
    pub fn sink_names(&self) -> Vec<&'static str> {
        self.inner.sinks.iter().map(|s| s.name()).collect()
    }

    /// Deliver a batch once: a batch the ledger knows is answered
    /// [`Stored::Before`] without publishing; a new one goes to every sink
    /// and is recorded when all acknowledged.
    ///
    /// The claim is owned by a guard ([`crate::ledger::ClaimGuard`]) from
    /// before the first `.await`: dropped here (the client hung up, the
    /// handler was cancelled) it releases the claim. Delivery and recording
    /// then run as one task on the tracker that owns the guard, so a client
    /// that hangs up cannot leave a delivered batch unrecorded, and a sink
    /// failure releases the claim at once.
    pub async fn deliver_once(&self, delivery: Delivery) -> Result<Stored, DeliverError> {
        let mut delivery = delivery;
        let key = BatchKey::of(&delivery.batch);
        let seq = key.seq;
        let (guard, conflict) = match self
            .inner
            .ledger
            .claim(key, delivery.digest, now_ms())
            .await?
        {
            Claim::Delivered => {
                self.inner.metrics.duplicate();
                return Ok(Stored::Before);
            }
            Claim::InFlight => return Err(DeliverError::InFlight { seq }),
            Claim::New { guard, conflict } => (guard, conflict),
        };
        if conflict {
            self.inner.metrics.conflict();
            if let Some(suppressed) = self.inner.conflict_log.allow() {
                let key = guard.key();
                tracing::warn!(
                    gateway = ?key.gateway,
                    instance = %format_args!("{:016x}", key.instance),
                    seq,
                    suppressed,
                    "batch conflicts with a delivered batch of the same gateway, spool instance and seq but other content; publishing it, flagged (batch_conflict)"
                );
            }
        }
        delivery.conflict = conflict;
        let delivery = Arc::new(delivery);
        let relay = self.clone();
        let task = self.inner.tracker.spawn(async move {
            let result = relay.deliver(delivery).await;
            if result.is_ok() {
                let gateway = guard.key().gateway.clone();
                if let Err(e) = guard.record(now_ms()).await {
                    // Stored but not remembered: answer 200 anyway (the
                    // batch is safe); a retry of it would be published again.
                    relay.inner.metrics.ledger_failure();
                    tracing::error!(gateway = ?gateway, seq, error = %e, "delivered batch not recorded in the ledger");
                }
            }
            // On failure the guard is dropped here: the claim is released.
            result
        });
        match task.await {
            Ok(Ok(())) if conflict => Ok(Stored::Conflict),
            Ok(Ok(())) => Ok(Stored::Now),
            Ok(Err(failures)) => Err(DeliverError::Sinks(failures)),
            Err(e) => Err(DeliverError::Sinks(vec![(
                "relay",
                SinkError::Task {
                    sink: "relay",
                    message: e.to_string(),
                },
            )])),
        }
    }

    /// The delivered-batch ledger (which also keeps the gateways' series
    /// tables, [`crate::ledger::tables`]).
    pub fn ledger(&self) -> &Ledger {
        &self.inner.ledger
    }

    /// Prune the ledger once at `now_ms` (see [`Ledger::prune`]), counting
    /// and logging what went.
    pub async fn prune_ledger(&self, now_ms: i64) -> Result<crate::ledger::Pruned, LedgerError> {
        let pruned = self.inner.ledger.prune(now_ms).await?;
        self.inner
            .metrics
            .ledger_pruned(pruned.by_age, pruned.by_rows);
        if pruned.by_rows > 0 {
            tracing::warn!(
                rows = pruned.by_rows,
                "ledger reached dedup.max_rows; forgot the oldest delivered batches before the window ended (a retry of one would be published again)"
            );
        }
        if pruned != Default::default() {
            tracing::debug!(?pruned, "ledger pruned");
        }
        Ok(pruned)
    }

    /// Prune the ledger now and then every `dedup.prune_interval_secs`
    /// until `shutdown`.
    pub(crate) fn spawn_pruner(&self, shutdown: tokio_util::sync::CancellationToken) {
        let relay = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(relay.inner.prune_interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                if let Err(error) = relay.prune_ledger(now_ms()).await {
                    tracing::warn!(%error, "ledger prune failed; trying again at the next interval");
                }
            }
        });
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
                let metrics = self.inner.metrics.clone();
                (
                    name,
                    self.inner.tracker.spawn(async move {
                        let started = std::time::Instant::now();
                        let result = sink.deliver(delivery).await;
                        metrics.sink_latency(name, started.elapsed());
                        result
                    }),
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

    /// Probe every sink concurrently ([`Sink::ready`]), and the ledger; the
    /// sinks that are not ready, each with why, in configuration order, then
    /// `"ledger"` if it cannot be reached (a relay whose shared ledger is
    /// down answers every batch 503). Empty when all are ready.
    pub async fn unready_sinks(&self) -> Vec<(&'static str, SinkError)> {
        let ledger = {
            let ledger = self.inner.ledger.clone();
            tokio::spawn(async move { ledger.ready().await })
        };
        let probes: Vec<_> = self
            .inner
            .sinks
            .iter()
            .map(|sink| {
                let sink = sink.clone();
                (sink.name(), tokio::spawn(async move { sink.ready().await }))
            })
            .collect();
        let mut unready = Vec::new();
        for (name, probe) in probes {
            let result = probe.await.unwrap_or_else(|e| {
                Err(SinkError::Task {
                    sink: name,
                    message: e.to_string(),
                })
            });
            if let Err(e) = result {
                unready.push((name, e));
            }
        }
        match ledger.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => unready.push(("ledger", e.into())),
            Err(e) => unready.push((
                "ledger",
                SinkError::Task {
                    sink: "ledger",
                    message: e.to_string(),
                },
            )),
        }
        unready
    }

    /// Stop accepting delivery tasks, wait for those running, then flush
    /// the Kafka producer for at most [`SHUTDOWN_FLUSH`].
    pub(crate) async fn drain(&self) {
        self.inner.tracker.close();
        self.inner.tracker.wait().await;
        for sink in &self.inner.sinks {
            if let Sink::Kafka(k) = sink.as_ref() {
                let left = k.flush(SHUTDOWN_FLUSH).await;
                if left > 0 {
                    tracing::warn!(left, "kafka producer not flushed within the shutdown bound");
                } else {
                    tracing::info!("kafka producer flushed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(id: &str, token: &str) -> GatewayConfig {
        GatewayConfig::with_token(id, token)
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
        let mut config = RelayConfig::new(
            "/nonexistent",
            vec![GatewayConfig {
                id: "gw-1".into(),
                tokens: vec![],
                site: None,
                tags: Default::default(),
            }],
        );
        config.data_dir = None;
        let err = Relay::from_config(config).unwrap_err().to_string();
        assert!(err.contains("gateways[0].tokens"), "{err}");
        assert!(err.contains("data_dir"), "{err}");
    }
}
