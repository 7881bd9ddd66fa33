//! End-to-end tests against real services, one test binary with a module
//! per theme (ripgrep's `tests/tests.rs` layout):
//! - [`pipeline`]: Modbus device → agent → relay → tansu and VictoriaMetrics.
//! - [`modbus`]: the Modbus source against the in-process device and pymodbus.
//! - [`mqtt`]: Mosquitto → the agent's MQTT source.
//! - [`rtu`]: Modbus RTU over a socat pseudo-terminal pair against pymodbus.
//! - [`alarms`]: alarm events on the local broker, acknowledgements, the
//!   priority lane to the relay, and alarm state across a SIGKILL.

mod alarms;
mod modbus;
mod mqtt;
mod pipeline;
mod rtu;
