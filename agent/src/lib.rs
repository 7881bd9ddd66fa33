//! `edge-agent`: runs on a factory gateway. It polls field devices, checks
//! threshold rules locally, seals readings into batches, commits them to a
//! SQLite spool and forwards them to the relay.
//!
//! Reading order:
//! - [`config`]: the TOML a technician writes, validated with key paths.
//! - [`reading`]: what flows through the pipeline (`Reading`, `Alarm`).
//! - [`source`]: tasks that bring readings in (Modbus TCP, MQTT, simulated).
//! - [`detect`]: alarm rules (limits, rate, stale, flatline, quality,
//!   statistical process control), a pure state machine.
//! - [`exception`]: report by exception (opt-in, lossy): which readings of
//!   a series travel, after detection has judged every one.
//! - [`batch`]: seals readings and alarms into `edge_wire::Batch`es.
//! - [`spool`]: SQLite store of encoded batches awaiting the relay, and of
//!   the alarms raised, so a restart neither raises them again nor forgets
//!   to clear them. Alarm events go to its priority lane.
//! - [`forward`]: sends spooled batches, alarms first, several in flight,
//!   over HTTP or HTTPS (rustls); deletes each after its own 2xx.
//! - [`publish`]: alarm events and retained per-series state on the local
//!   MQTT broker for an HMI, and acknowledgements back.
//! - [`stats`]: counters the agent keeps about itself.
//! - [`devices`]: the device board, each source's devices ok, degraded or
//!   down, for the status page and the device-state events.
//! - [`points`]: the points board, each series' last value and quality,
//!   for the status page.
//! - [`timing`]: the log limiter, the jittered backoff, `sleep_until`.
//! - [`status`]: Prometheus `/metrics` and `/healthz` on `[status] listen`.
//! - [`probe`]: `edge-agent probe modbus`, one read shown in every decoding
//!   for commissioning a device; not part of the running agent.
//!
//! - [`pipeline`]: sources → detect + batch → spool, and alarm events to the
//!   local publisher.
//! - [`assemble`]: the config turned into Modbus links and series names.
//! - [`runner`]: [`Agent::run`] starts and stops all of the above in order.

pub mod assemble;
pub mod batch;
pub mod config;
pub mod detect;
pub mod devices;
pub mod exception;
pub mod forward;
pub mod pipeline;
pub mod points;
pub mod probe;
pub mod publish;
pub mod reading;
pub mod rebaseline;
pub mod runner;
pub mod source;
pub mod spool;
pub mod stats;
pub mod status;
pub mod timing;

pub use assemble::modbus_links;
pub use runner::{Agent, AgentError};
