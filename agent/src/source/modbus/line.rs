//! One serial line for Modbus RTU: opening it with the configured framing,
//! and the guard that keeps one transaction's bytes from leaking into the
//! next.
//!
//! tokio-modbus owns the transport it talks over, and on a corrupt reply it
//! drops bytes until something decodes or the request times out, without
//! saying why. [`GuardedLine`] sits between the two and:
//!
//! - discards whatever the line holds before each request is written (a
//!   late reply to a request that already timed out, noise), so it can
//!   never be taken for the answer to the next request; the discarded
//!   bytes are counted;
//! - keeps a copy of the bytes of the current reply, so that after a failed
//!   request [`classify`] can tell a CRC error from a slave that did not
//!   answer at all.
//!
//! The port itself is shared (`Arc<Mutex<_>>`) between the guard handles,
//! so after a failure the poller attaches a fresh tokio-modbus context,
//! with an empty frame buffer, to the same open port.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_serial::{DataBits, SerialPortBuilderExt, SerialStream, StopBits};

use crate::config::{Parity, SerialLine};

/// Most reply bytes kept for [`classify`]: a Modbus RTU frame is at most 256.
const KEEP: usize = 512;

/// Open the line's serial device with its baud rate and framing.
pub fn open(line: &SerialLine) -> io::Result<SerialStream> {
    let parity = match line.parity {
        Parity::None => tokio_serial::Parity::None,
        Parity::Even => tokio_serial::Parity::Even,
        Parity::Odd => tokio_serial::Parity::Odd,
    };
    let data_bits = if line.data_bits == 7 {
        DataBits::Seven
    } else {
        DataBits::Eight
    };
    let stop_bits = if line.stop_bits == 2 {
        StopBits::Two
    } else {
        StopBits::One
    };
    tokio_serial::new(&line.device, line.baud)
        .parity(parity)
        .data_bits(data_bits)
        .stop_bits(stop_bits)
        .open_native_async()
        .map_err(io::Error::from)
}

#[derive(Debug, Default)]
struct State {
    /// Set by [`GuardedLine::begin`]: discard what is readable before the
    /// next write.
    flush_before_write: bool,
    /// Bytes read since the last `begin`, at most [`KEEP`].
    reply: Vec<u8>,
    /// Bytes discarded before requests, in total.
    discarded: u64,
}

/// A handle on a shared transport that flushes stale input before each
/// request and records each reply. Clones share the transport and state.
#[derive(Debug)]
pub struct GuardedLine<T> {
    port: Arc<Mutex<T>>,
    state: Arc<Mutex<State>>,
}

impl<T> Clone for GuardedLine<T> {
    fn clone(&self) -> Self {
        GuardedLine {
            port: self.port.clone(),
            state: self.state.clone(),
        }
    }
}

fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<T: AsyncRead + AsyncWrite + Unpin> GuardedLine<T> {
    pub fn new(port: T) -> Self {
        GuardedLine {
            port: Arc::new(Mutex::new(port)),
            state: Arc::default(),
        }
    }

    /// Start a transaction: stale input is discarded before its request is
    /// written, and its reply is recorded from scratch.
    pub fn begin(&self) {
        let mut s = lock(&self.state);
        s.flush_before_write = true;
        s.reply.clear();
    }

    /// The bytes received since [`GuardedLine::begin`].
    pub fn reply(&self) -> Vec<u8> {
        lock(&self.state).reply.clone()
    }

    /// Bytes discarded before requests so far.
    pub fn discarded(&self) -> u64 {
        lock(&self.state).discarded
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedLine<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut *lock(&self.port)).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let mut s = lock(&self.state);
            let room = KEEP.saturating_sub(s.reply.len());
            let new = &buf.filled()[before..];
            s.reply.extend_from_slice(&new[..new.len().min(room)]);
        }
        poll
    }
}

impl<T: AsyncRead + AsyncWrite + Unpin> AsyncWrite for GuardedLine<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut port = lock(&self.port);
        let mut state = lock(&self.state);
        if state.flush_before_write {
            // Read until the line has nothing more; a `Pending` read only
            // registers interest, which costs at most a spurious wake-up.
            let mut scratch = [0u8; 256];
            loop {
                let mut rb = ReadBuf::new(&mut scratch);
                match Pin::new(&mut *port).poll_read(cx, &mut rb) {
                    Poll::Ready(Ok(())) if !rb.filled().is_empty() => {
                        state.discarded += rb.filled().len() as u64;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    _ => break,
                }
            }
            state.flush_before_write = false;
            state.reply.clear();
        }
        drop(state);
        Pin::new(&mut *port).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.port)).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *lock(&self.port)).poll_shutdown(cx)
    }
}

/// What the line brought back for a request that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Not a byte: the slave is absent, off, or has another unit id.
    NoReply,
    /// A whole frame whose CRC does not match: noise on the line.
    Crc,
    /// Part of a frame, or a frame from another unit or function.
    Garbled,
}

impl Failure {
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::NoReply => "no reply",
            Failure::Crc => "CRC error",
            Failure::Garbled => "garbled reply",
        }
    }
}

const MODBUS_CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS);

/// CRC-16/MODBUS of `data`, sent low byte first after the frame.
pub fn crc16(data: &[u8]) -> u16 {
    MODBUS_CRC.checksum(data)
}

/// Why a request to `unit` with function `function` failed, from the bytes
/// it received. A reply has the form unit, function, then for a read a byte
/// count and that many bytes, for an exception (function | 0x80) one code,
/// then the CRC.
pub fn classify(reply: &[u8], unit: u8, function: u8) -> Failure {
    if reply.is_empty() {
        return Failure::NoReply;
    }
    let len = match reply {
        [u, f, ..] if *u == unit && *f == function | 0x80 => 5,
        [u, f, n, ..] if *u == unit && *f == function => 5 + usize::from(*n),
        _ => return Failure::Garbled,
    };
    let Some(frame) = reply.get(..len) else {
        return Failure::Garbled;
    };
    let (body, sent) = frame.split_at(len - 2);
    if u16::from_le_bytes([sent[0], sent[1]]) == crc16(body) {
        // A well-formed frame that still failed: a reply too late or of
        // the wrong length for the request.
        Failure::Garbled
    } else {
        Failure::Crc
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut f = body.to_vec();
        f.extend_from_slice(&crc16(body).to_le_bytes());
        f
    }

    #[test]
    fn crc_matches_the_specification_example() {
        // Modbus over serial line, 6.2.2: read 1 holding register of slave 1 at 0.
        assert_eq!(
            framed(&[0x01, 0x03, 0x00, 0x00, 0x00, 0x01]),
            [0x01, 0x03, 0x00, 0x00, 0x00, 0x01, 0x84, 0x0A]
        );
    }

    #[test]
    fn failures_are_told_apart() {
        let good = framed(&[7, 3, 2, 0x12, 0x34]);
        let mut bad = good.clone();
        bad[3] ^= 0x01;
        let exception = framed(&[7, 0x83, 2]);
        let mut bad_exception = exception.clone();
        bad_exception[4] ^= 0xff;
        let cases: [(&[u8], Failure); 7] = [
            (&[], Failure::NoReply),
            (&bad, Failure::Crc),
            (&bad_exception, Failure::Crc),
            (&good[..4], Failure::Garbled),
            (&good, Failure::Garbled),
            (&framed(&[8, 3, 2, 0, 0]), Failure::Garbled),
            (&framed(&[7, 4, 2, 0, 0]), Failure::Garbled),
        ];
        for (reply, want) in cases {
            assert_eq!(classify(reply, 7, 3), want, "{reply:02x?}");
        }
    }

    #[tokio::test]
    async fn stale_input_is_discarded_before_the_next_request() {
        let (ours, mut device) = tokio::io::duplex(1024);
        let line = GuardedLine::new(ours);
        let mut io = line.clone();
        // A late reply arrives after its request was given up.
        device.write_all(b"late").await.unwrap();
        tokio::task::yield_now().await;
        line.begin();
        io.write_all(b"req").await.unwrap();
        let mut got = [0u8; 3];
        device.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"req");
        device.write_all(b"answer").await.unwrap();
        let mut reply = [0u8; 6];
        io.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"answer", "the late bytes are gone");
        assert_eq!(line.discarded(), 4);
        assert_eq!(line.reply(), b"answer");
    }
}
