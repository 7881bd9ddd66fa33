//! `edge-wire`: the batch format (v6, whose value column is coded per
//! series; v2 to v5 still written on request, v1 read only) that the edge
//! agent writes and the relay reads. It knows nothing of Modbus, MQTT,
//! SQLite or Kafka.
//!
//! Reading order:
//! - [`model`]: the plain data types (`Batch`, `Series`, `Point`, `AlarmEvent`, `Gap`,
//!   `DeviceEvent`).
//! - [`codec`]: `encode` (CBOR then zstd) and `decode` (bounded, never panics);
//!   `codec::encode_version` for the versions before v6.
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
    AlarmEvent, AlarmState, Batch, DeviceEvent, DeviceReason, DeviceState, Gap, GapReason,
    LimitKind, Point, Quality, ReasonKind, Reporting, Series, Severity, SpcDetail, FORMAT_VERSION,
    READABLE_VERSIONS, V10,
};
