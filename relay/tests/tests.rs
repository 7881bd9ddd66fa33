//! Integration tests: the real relay served in-process on port 0, driven
//! over HTTP with reqwest, one module per theme.
//!
//! - `support`: starting and stopping a relay, building batches.
//! - `bodies`: proptest of random and mutated request bodies.
//! - `batches`: `POST /v1/batches` status codes and what lands in the file sink.
//! - `security`: tokens, hostile bodies, TLS and mutual TLS.
//! - `timeseries`: the line-protocol sink against a fake write endpoint.
//! - `postgres`: the PostgreSQL sink against the real server on 127.0.0.1:5432.
//! - `readyz`: `GET /readyz` with reachable and unreachable sinks.
//! - `fairness`: per-gateway token buckets (429), the operations listener,
//!   unauthenticated refusals counted by reason.
//! - `ledger`: claims released on every path, pruning while running, conflicts.
//! - `series_tables`: batches that name their series table (format v7),
//!   409 for a table the relay does not hold, tables across a restart.
//! - `kafka_faults`: produce errors and a broker outage against librdkafka's
//!   mock cluster, and the metrics they move.

mod batches;
mod bodies;
mod fairness;
mod kafka_faults;
mod ledger;
mod postgres;
mod readyz;
mod security;
mod series_tables;
mod support;
mod timeseries;
