//! `edge-relay`: the cloud side of edge-ingest. It authenticates gateways,
//! decodes their batches (`edge-wire`), hands every reading and alarm to the
//! configured sinks, and answers 200 only once all of them hold the batch
//! durably; otherwise 503 and the gateway retries (at-least-once).
//!
//! Reading order:
//! - [`config`]: the TOML file and the checked [`RelayConfig`].
//! - [`auth`]: gateway token hashes and their constant-time lookup.
//! - [`relay`]: [`Relay`], the state behind the routes (tokens, limits,
//!   sinks, counters) and delivery to all sinks.
//! - [`admission`]: the shared decode budget a batch reserves before it is
//!   decoded, and bounded decoding.
//! - [`server`]: [`serve`], the HTTP routes and status codes.
//! - [`connections`]: the accept loop, connection limits and timeouts, the
//!   shutdown drain.
//! - [`fairness`]: per-gateway token buckets for requests and bytes (429).
//! - [`validation`]: readings that decode but must not be published (422).
//! - [`tls`]: HTTPS with rustls, and mutual TLS naming the gateway.
//! - [`message`]: the JSON published per reading and alarm
//!   (`docs/kafka-messages.md`).
//! - [`sink`]: Kafka, time-series (Influx line protocol), PostgreSQL and the
//!   embedded file sink.
//! - [`ledger`]: which batches were delivered (SQLite or a PostgreSQL table a
//!   fleet shares), claims with leases, so a retry is not published twice.
//! - [`metrics`]: request counters for `GET /metrics`.
//!
//! Not here: Modbus, SQLite, the agent's spool. `main.rs` only parses
//! arguments, loads the config and calls [`serve`].

pub mod admission;
pub mod auth;
pub mod config;
pub mod connections;
pub mod fairness;
pub mod ledger;
pub mod message;
pub mod metrics;
pub mod relay;
pub mod server;
pub mod sink;
pub mod tls;
pub mod validation;

pub use config::{
    ConfigError, GatewayConfig, Granularity, KafkaConfig, PostgresConfig, RelayConfig,
    TimeseriesConfig, TlsConfig,
};
pub use connections::ConnectionLimits;
pub use relay::{Relay, RelayError};
pub use server::{ops_router, serve, serve_tls, serve_with, Listeners};
