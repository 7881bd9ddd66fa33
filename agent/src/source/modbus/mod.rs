//! Modbus TCP polling of coils, discrete inputs, holding and input
//! registers.
//!
//! The pure part is tested without sockets: [`plan`] turns a point list
//! into requests, [`decode`] turns registers and bits into numbers. The I/O
//! part, [`poll`], runs one device's poll loop ([`ModbusSource`]).
//!
//! One source polls one `[[modbus]]` section: one unit id over one TCP
//! connection. Several unit ids behind one gateway address are several
//! sections, hence several connections.

pub mod decode;
pub mod plan;
pub mod poll;

pub use decode::{apply_scale, decode_bits, decode_registers};
pub use plan::{plan_reads, ReadBlock, ReadLimits};
pub use poll::{backoff_delay, ModbusSource};
