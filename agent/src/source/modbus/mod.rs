//! Modbus TCP and RTU polling of coils, discrete inputs, holding and input
//! registers.
//!
//! The pure parts are tested without sockets: [`plan`] turns a point list
//! into requests, [`decode`] turns registers and bits into numbers,
//! [`schedule`] decides whose turn it is on a link, [`health`] whether a
//! device answers and when to ask it again. The I/O part, [`poll`],
//! runs one link's poll loop ([`ModbusLink`]), and [`mod@line`] guards a serial
//! line between transactions.
//!
//! A link is one TCP connection to one `[[modbus]]` section (several unit
//! ids behind one gateway address are several sections, hence several
//! connections), or one `[serial.<name>]` line shared by every section that
//! names it: one task per link, one transaction in flight per link.

pub mod decode;
pub mod health;
pub mod line;
pub mod plan;
pub mod poll;
pub mod schedule;
pub mod types;

pub use decode::{apply_scale, decode_bits, decode_registers};
pub use plan::{plan_group, plan_reads, ReadBlock, ReadLimits};
pub use poll::{LinkDevice, ModbusLink, ModbusSource};
