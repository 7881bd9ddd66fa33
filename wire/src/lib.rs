//! `edge-wire`: the batch format (v5 with device-state events, v4 with a spool instance id, v3 with gap records, v2 without; v1 for reading) that the edge agent
//! writes and the relay reads. It knows nothing of Modbus, MQTT, SQLite or Kafka.
//!
//! Reading order:
//! - [`model`]: the plain data types (`Batch`, `Series`, `Point`, `AlarmEvent`, `Gap`,
//!   `DeviceEvent`).
//! - [`codec`]: `encode` (CBOR then zstd) and `decode` (bounded, never panics).
//! - [`validate`]: `Batch::validate`, the invariants `encode` checks.
//! - [`limits`]: the bounds the decoder enforces on hostile input.
//!
//! The format itself is specified in `docs/wire-format.md`.

pub mod codec;
pub mod limits;
pub mod model;
pub mod validate;

pub use codec::{decode, decode_bound, encode, encoded_version, WireError};
pub use limits::Limits;
pub use model::{
    AlarmEvent, AlarmState, Batch, DeviceEvent, DeviceReason, DeviceState, Gap, GapReason, Point,
    Quality, ReasonKind, Series, Severity, FORMAT_VERSION, READABLE_VERSIONS,
};
