//! Frame encoding and the streaming decoder.
//!
//! A frame, before stuffing, is `version (1) | postcard body | CRC-16 (2, LE)`
//! where the CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no
//! reflection, no xor-out) over version and body. It travels COBS-encoded and
//! followed by one 0x00 delimiter. See `docs/firmware-frames.md`.
//!
//! Guarantees of [`Decoder`]: it never panics and never allocates; a byte
//! string of any content costs at most [`MAX_ENCODED`] bytes of buffer; after
//! garbage, a frame that starts after the next 0x00 decodes normally.
use crate::message::Message;
use crc::{Crc, CRC_16_IBM_3740};

/// Version of the frame format (first byte of every unstuffed frame).
pub const FRAME_VERSION: u8 = 1;
/// Largest unstuffed frame: version, body and CRC.
pub const MAX_FRAME: usize = 192;
/// Largest frame on the wire: COBS-stuffed [`MAX_FRAME`] plus the delimiter.
pub const MAX_ENCODED: usize = cobs::max_encoding_length(MAX_FRAME) + 1;
/// The frame delimiter.
pub const DELIMITER: u8 = 0x00;

/// CRC-16/CCITT-FALSE (also catalogued as CRC-16/IBM-3740).
pub const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_3740);

/// Why a frame was not accepted. Each is counted separately by the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// More than [`MAX_ENCODED`] bytes before a delimiter (discarded up to it),
    /// or a message that does not fit [`MAX_FRAME`] when encoding.
    TooLong,
    /// The bytes are not valid COBS.
    Cobs,
    /// Fewer bytes than version and CRC.
    TooShort,
    /// The CRC does not match.
    Crc,
    /// A version this decoder does not speak.
    Version(u8),
    /// CRC correct but the body is not a message (or has trailing bytes).
    Body,
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            FrameError::TooLong => write!(f, "frame longer than {MAX_FRAME} bytes"),
            FrameError::Cobs => write!(f, "invalid COBS stuffing"),
            FrameError::TooShort => write!(f, "frame shorter than version and CRC"),
            FrameError::Crc => write!(f, "CRC mismatch"),
            FrameError::Version(v) => write!(f, "unsupported frame version {v}"),
            FrameError::Body => write!(f, "body is not a valid message"),
        }
    }
}

impl core::error::Error for FrameError {}

/// Encodes `msg` as a complete wire frame (delimiter included) into `out`;
/// returns the number of bytes written.
pub fn encode(msg: &Message, out: &mut [u8; MAX_ENCODED]) -> Result<usize, FrameError> {
    let mut raw = [0u8; MAX_FRAME];
    raw[0] = FRAME_VERSION;
    let body = postcard::to_slice(msg, &mut raw[1..MAX_FRAME - 2])
        .map_err(|_| FrameError::TooLong)?
        .len();
    let crc_at = 1 + body;
    let crc = CRC16.checksum(&raw[..crc_at]);
    raw[crc_at..crc_at + 2].copy_from_slice(&crc.to_le_bytes());
    let n = cobs::encode(&raw[..crc_at + 2], &mut out[..MAX_ENCODED - 1]);
    out[n] = DELIMITER;
    Ok(n + 1)
}

/// Decodes one unstuffed frame (version, body, CRC).
pub fn decode_raw(raw: &[u8]) -> Result<Message, FrameError> {
    if raw.len() < 3 {
        return Err(FrameError::TooShort);
    }
    let (data, crc) = raw.split_at(raw.len() - 2);
    if CRC16.checksum(data).to_le_bytes() != [crc[0], crc[1]] {
        return Err(FrameError::Crc);
    }
    if data[0] != FRAME_VERSION {
        return Err(FrameError::Version(data[0]));
    }
    match postcard::take_from_bytes::<Message>(&data[1..]) {
        Ok((msg, [])) => Ok(msg),
        _ => Err(FrameError::Body),
    }
}

/// Streaming decoder: feed it bytes as they arrive.
pub struct Decoder {
    buf: [u8; MAX_ENCODED],
    len: usize,
    overflow: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// An empty decoder.
    pub const fn new() -> Self {
        Decoder {
            buf: [0; MAX_ENCODED],
            len: 0,
            overflow: false,
        }
    }

    /// Feeds one byte; at a delimiter, returns the frame's outcome.
    /// Empty frames (two delimiters in a row) are ignored, so a sender may
    /// start with a delimiter to flush a receiver's partial frame.
    pub fn push(&mut self, byte: u8) -> Option<Result<Message, FrameError>> {
        if byte != DELIMITER {
            if self.len < self.buf.len() {
                self.buf[self.len] = byte;
                self.len += 1;
            } else {
                self.overflow = true;
            }
            return None;
        }
        let len = core::mem::replace(&mut self.len, 0);
        if core::mem::replace(&mut self.overflow, false) {
            return Some(Err(FrameError::TooLong));
        }
        if len == 0 {
            return None;
        }
        Some(match cobs::decode_in_place(&mut self.buf[..len]) {
            Ok(n) if n > MAX_FRAME => Err(FrameError::TooLong),
            Ok(n) => decode_raw(&self.buf[..n]),
            Err(_) => Err(FrameError::Cobs),
        })
    }

    /// Feeds bytes until the first frame outcome; returns how many bytes
    /// were consumed and the outcome, if any. Call again with the rest.
    pub fn feed(&mut self, bytes: &[u8]) -> (usize, Option<Result<Message, FrameError>>) {
        for (i, &b) in bytes.iter().enumerate() {
            if let Some(out) = self.push(b) {
                return (i + 1, Some(out));
            }
        }
        (bytes.len(), None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::*;

    fn heartbeat() -> Message {
        Message::Heartbeat { ticks: 300 }
    }

    fn wire(msg: &Message) -> heapless::Vec<u8, MAX_ENCODED> {
        let mut out = [0u8; MAX_ENCODED];
        let n = encode(msg, &mut out).unwrap();
        heapless::Vec::from_slice(&out[..n]).unwrap()
    }

    fn decode_all(bytes: &[u8]) -> heapless::Vec<Result<Message, FrameError>, 16> {
        let mut d = Decoder::new();
        bytes.iter().filter_map(|&b| d.push(b)).collect()
    }

    #[test]
    fn crc_is_ccitt_false() {
        // Check value from the CRC catalogue: "123456789" -> 0x29B1.
        assert_eq!(CRC16.checksum(b"123456789"), 0x29B1);
    }

    #[test]
    fn heartbeat_bytes_match_the_documented_example() {
        // docs/firmware-frames.md, "Worked example": Heartbeat { ticks: 300 }.
        // CRC 0xE445 computed independently of the `crc` crate (a bitwise
        // CRC-16/CCITT-FALSE in Python), as printed in the document.
        let w = wire(&heartbeat());
        assert_eq!(
            &w[..],
            &[0x07, 0x01, 0x02, 0xAC, 0x02, 0x45, 0xE4, 0x00][..]
        );
    }

    #[test]
    fn garbage_then_frame_resynchronises() {
        let mut bytes: heapless::Vec<u8, 64> = heapless::Vec::new();
        bytes.extend_from_slice(&[0x13, 0x37, 0xFF, 0x00]).unwrap();
        bytes.extend_from_slice(&wire(&heartbeat())).unwrap();
        let out = decode_all(&bytes);
        assert_eq!(out.len(), 2);
        assert!(out[0].is_err());
        assert_eq!(out[1], Ok(heartbeat()));
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        let good = wire(&heartbeat());
        for i in 0..good.len() - 1 {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[i] ^= 1 << bit;
                for r in decode_all(&bad) {
                    assert!(r != Ok(heartbeat()), "flip byte {i} bit {bit} accepted");
                }
            }
        }
    }

    #[test]
    fn overlong_input_reports_too_long_and_recovers() {
        let mut d = Decoder::new();
        for _ in 0..MAX_ENCODED + 10 {
            assert_eq!(d.push(0x55), None);
        }
        assert_eq!(d.push(0), Some(Err(FrameError::TooLong)));
        let w = wire(&heartbeat());
        let (n, out) = d.feed(&w);
        assert_eq!((n, out), (w.len(), Some(Ok(heartbeat()))));
    }

    #[test]
    fn wrong_version_is_named() {
        let mut raw = [0x02, 0x02, 0xAC, 0x02, 0, 0];
        let crc = CRC16.checksum(&raw[..4]).to_le_bytes();
        raw[4..].copy_from_slice(&crc);
        assert_eq!(decode_raw(&raw), Err(FrameError::Version(2)));
    }

    #[test]
    fn largest_birth_fits() {
        let ch = Channel {
            index: 255,
            name: core::iter::repeat_n('n', MAX_NAME).collect(),
            unit: core::iter::repeat_n('u', MAX_UNIT).collect(),
            kind: ChannelKind::Counter,
            scale: Some(1.5),
        };
        let birth = Message::Birth(Birth {
            device_id: core::iter::repeat_n('d', MAX_DEVICE_ID).collect(),
            fw_version: [255; 3],
            boot_id: u32::MAX,
            tick_hz: u32::MAX,
            channels: core::iter::repeat_n(ch, MAX_CHANNELS).collect(),
        });
        let out = decode_all(&wire(&birth));
        assert_eq!(&out[..], &[Ok(birth)][..]);
    }
}
