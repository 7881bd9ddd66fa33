//! End-to-end tests against real services, one test binary with a module
//! per theme (ripgrep's `tests/tests.rs` layout):
//! - [`pipeline`]: Modbus device → agent → relay → tansu and VictoriaMetrics.
//! - [`forward`]: the forwarder draining a backlog with several batches in
//!   flight against a test relay that answers out of order and refuses some.
//! - [`forward_tls`]: the forwarder over HTTPS with a client certificate to
//!   the real relay behind a test TLS terminator, and a wrong CA.
//! - [`modbus`]: the Modbus source against the in-process device and pymodbus.
//! - [`mqtt`]: Mosquitto → the agent's MQTT source.
//! - [`rtu`]: Modbus RTU over a socat pseudo-terminal pair against pymodbus.
//! - [`chaos`]: agent, relay and tansu killed at random; nothing lost, duplicates bounded.
//! - [`alarms`]: alarm events on the local broker, acknowledgements, the
//!   priority lane to the relay, and alarm state across a SIGKILL.
//! - [`mqtt_tls`]: the MQTT source over TLS, with MQTT 5, and persistent sessions.
//! - [`mqtt_crash`]: the agent binary killed mid-stream loses no acknowledged QoS 1 message.
//! - [`status`]: the agent's `/metrics` and `/healthz` over HTTP, with the uplink down.
//! - [`page`]: the technician's status page in headless Chromium: a device
//!   down and back, a value change, an alarm acknowledged with auth and
//!   kept across a restart, the read-only page refusing it; screenshots.
//! - [`frames`]: a simulated microcontroller on a pty pair, the cable pulled, the
//!   agent killed, line noise: every sample reaches Kafka.
//! - [`full_disk`]: the spool on a full 2 MiB tmpfs, drop-oldest and block:
//!   gaps, the reserve, held-back sources, SIGTERM, the drain, exact accounting.
//! - [`gaps`]: readings dropped by the spool's age bound arrive as gap events.
//! - [`device_events`]: a Modbus device stopped and started again arrives
//!   as `down` and `ok` device-state events on the events topic.
//! - [`arm`]: the aarch64 agent under qemu polling Modbus and forwarding to the relay.
//! - [`series_tables`]: batches naming their series table once the relay
//!   holds it, across a relay restart, a relay that does not hold it and a
//!   gateway whose series change; every reading once.
//! - [`sinks`]: the relay's InfluxDB, VictoriaMetrics and PostgreSQL sinks, and several sinks at once.
//! - [`ledger`]: a reinstalled agent loses nothing; two relays on one PostgreSQL
//!   ledger behind a round-robin proxy publish each batch once, relays killed.
//! - [`relay_memory`]: decompression bombs against the relay binary, alone and
//!   fifty at once: peak RSS and answer time bounded, another gateway served.
//! - [`relay_kafka`]: the relay binary to tansu: granularities, enrichment, SIGTERM.
//! - [`relay_kafka_v2`]: both message generations: Java-compatible
//!   partitions, keys by gateway and series, the two sites, limit kinds.
//! - [`sparkplug`]: a pysparkplug edge node through Mosquitto: births,
//!   aliases, a seq gap and the rebirth it asks for, the NDEATH will.
//! - [`relay_flood`]: half-sent heads, 2,000 idle and half-open connections
//!   under the unit's descriptor limit, SIGTERM with them open.

mod alarms;
mod arm;
mod chaos;
mod device_events;
mod forward;
mod forward_tls;
mod frames;
mod full_disk;
mod gaps;
mod ledger;
mod modbus;
mod mqtt;
mod mqtt_crash;
mod mqtt_tls;
mod page;
mod pipeline;
mod relay_flood;
mod relay_kafka;
mod relay_kafka_v2;
mod relay_memory;
mod rtu;
mod series_tables;
mod sinks;
mod sparkplug;
mod status;
