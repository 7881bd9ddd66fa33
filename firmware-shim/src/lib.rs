//! `firmware-shim`: a `no_std`, allocation-free crate for microcontroller
//! firmware that frames sensor readings for the edge agent.
//!
//! - [`message`]: what a device says (birth, samples, heartbeat, time sync,
//!   ack/nack), as plain structs with fixed-capacity `heapless` fields.
//! - [`frame`]: how a message travels: version byte, postcard body, CRC-16,
//!   COBS, 0x00 delimiter (byte by byte in `docs/firmware-frames.md`); a
//!   streaming [`frame::Decoder`] that resynchronises at the next delimiter
//!   after garbage and never panics. The agent uses the same decoder (`std`).
//! - [`outbox`]: the fixed-size ring of unacknowledged samples, resent after a
//!   timeout, dropping (and counting) the oldest when full; a pure state
//!   machine taking `now` in ticks.
//! - [`driver`]: sensor drivers on `embedded-hal` 1.0 (SHT4x over I²C).
//! - [`transport`]: writing frames to, and reading them from, an
//!   `embedded-io` byte stream (`embedded-io-async` behind the feature of
//!   that name).
#![cfg_attr(not(feature = "std"), no_std)]
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod driver;
pub mod frame;
pub mod message;
pub mod outbox;
pub mod transport;

pub use frame::{Decoder, FrameError, FRAME_VERSION, MAX_ENCODED, MAX_FRAME};
/// The fixed-capacity collections the messages are made of, so a user
/// builds them without naming the same `heapless` version.
pub use heapless;
pub use message::{Ack, Birth, Channel, ChannelKind, Message, Nack, NackReason, Reading, Samples};
pub use outbox::Outbox;
