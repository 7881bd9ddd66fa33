//! End-to-end tests against real services, one test binary with a module
//! per theme (ripgrep's `tests/tests.rs` layout):
//! - [`pipeline`]: Modbus device → agent → relay → tansu and VictoriaMetrics.

mod pipeline;
