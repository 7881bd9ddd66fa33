//! The messages a device and the agent exchange. Every field has a fixed
//! capacity (the `MAX_*` constants), so a message fits a frame of
//! [`MAX_FRAME`](crate::MAX_FRAME) bytes and needs no allocator. Field order
//! is the wire order (postcard), documented in `docs/firmware-frames.md`;
//! append new variants at the end only.
use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

/// Longest channel name, bytes of UTF-8.
pub const MAX_NAME: usize = 16;
/// Longest unit, bytes of UTF-8.
pub const MAX_UNIT: usize = 8;
/// Longest device id, bytes of UTF-8.
pub const MAX_DEVICE_ID: usize = 24;
/// Most channels a device announces in its birth.
pub const MAX_CHANNELS: usize = 4;
/// Most readings in one samples message.
pub const MAX_READINGS: usize = MAX_CHANNELS;

/// One frame's payload. The variant index is the first body byte.
// No allocator to box the birth with; a message lives briefly on the stack.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Message {
    /// Device → agent, first after boot: who it is and what it measures.
    Birth(Birth),
    /// Device → agent: readings taken at one instant.
    Samples(Samples),
    /// Device → agent: still alive, nothing to say.
    Heartbeat {
        /// Device ticks now.
        ticks: u64,
    },
    /// Agent → device: wall clock at the moment of sending, so the device
    /// (or the agent) can map ticks to time.
    TimeSync {
        /// Unix time in milliseconds.
        unix_ms: u64,
        /// The device ticks this answers (from its last heartbeat/samples).
        device_ticks: u64,
    },
    /// Agent → device: samples up to and including `seq` are stored.
    Ack(Ack),
    /// Agent → device: a sample was refused.
    Nack(Nack),
}

/// Device identity and channel table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Birth {
    /// Stable device identifier (serial number).
    pub device_id: String<MAX_DEVICE_ID>,
    /// Firmware version, major/minor/patch.
    pub fw_version: [u8; 3],
    /// Random per boot, so the agent tells a reboot from a repeat.
    pub boot_id: u32,
    /// Ticks per second of the device clock.
    pub tick_hz: u32,
    /// The channels the device reports.
    pub channels: Vec<Channel, MAX_CHANNELS>,
}

/// One entry of the channel table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Channel {
    /// Index used in [`Reading::channel`].
    pub index: u8,
    /// Series name suffix, e.g. `temperature`.
    pub name: String<MAX_NAME>,
    /// Unit, e.g. `degC`.
    pub unit: String<MAX_UNIT>,
    /// What the value is.
    pub kind: ChannelKind,
    /// Multiply the raw value by this to get the unit (absent: 1).
    pub scale: Option<f32>,
}

/// Channel value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelKind {
    /// A measured quantity.
    Analog,
    /// 0 or 1.
    Digital,
    /// A monotonically increasing count.
    Counter,
}

/// Readings taken at one instant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Samples {
    /// Per-boot sequence number, starting at 0, +1 per samples message.
    pub seq: u32,
    /// Device ticks when taken.
    pub ticks: u64,
    /// Samples dropped on the device (outbox full) since the previous
    /// samples message.
    pub dropped: u32,
    /// One or more readings.
    pub readings: Vec<Reading, MAX_READINGS>,
}

/// One channel's value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Reading {
    /// Channel index from the birth's table.
    pub channel: u8,
    /// Raw value (multiply by the channel's scale).
    pub value: f32,
}

/// Cumulative acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// Highest sequence number stored, all lower ones included.
    pub seq: u32,
}

/// Refusal of one samples message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nack {
    /// The refused sequence number.
    pub seq: u32,
    /// Why.
    pub reason: NackReason,
}

/// Why a sample was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NackReason {
    /// No birth seen yet: send the birth again, then resend.
    NoBirth,
    /// A reading names a channel not in the birth: never resend.
    UnknownChannel,
    /// The agent cannot store now: resend later.
    Busy,
}
