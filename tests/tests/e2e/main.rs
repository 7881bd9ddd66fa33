//! End-to-end tests against real services, one test binary with a module
//! per theme (ripgrep's `tests/tests.rs` layout):
//! - [`pipeline`]: Modbus device → agent → relay → tansu and VictoriaMetrics.
//! - [`modbus`]: the Modbus source against the in-process device and pymodbus.

mod modbus;
mod pipeline;
