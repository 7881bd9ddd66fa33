//! `edge-demo`: a whole plant in one process, for the demo binary and for
//! tests that need a field device without hardware.
//!
//! - [`device`]: a Modbus TCP device served in-process (tokio-modbus server)
//!   whose registers a scenario or a test sets.

pub mod device;
