//! Frames over an `embedded-io` byte stream (UART, USB CDC, TCP on the host).
//! Thin I/O around [`frame`](crate::frame): no state beyond the decoder and a
//! small read buffer.
use crate::frame::{encode, Decoder, FrameError, MAX_ENCODED};
use crate::message::Message;

/// Error of sending or receiving a frame.
#[derive(Debug)]
pub enum LinkError<E> {
    /// The stream failed.
    Io(E),
    /// The peer closed the stream.
    Eof,
    /// The message does not fit a frame (sending only).
    Frame(FrameError),
}

/// Writes `msg` as one frame.
pub fn send<W: embedded_io::Write>(w: &mut W, msg: &Message) -> Result<(), LinkError<W::Error>> {
    let mut out = [0u8; MAX_ENCODED];
    let n = encode(msg, &mut out).map_err(LinkError::Frame)?;
    w.write_all(&out[..n]).map_err(LinkError::Io)
}

/// Reads frames from a stream, keeping bytes past a frame for the next call.
pub struct Receiver {
    decoder: Decoder,
    buf: [u8; 32],
    start: usize,
    end: usize,
}

impl Default for Receiver {
    fn default() -> Self {
        Self::new()
    }
}

impl Receiver {
    /// An empty receiver.
    pub const fn new() -> Self {
        Receiver {
            decoder: Decoder::new(),
            buf: [0; 32],
            start: 0,
            end: 0,
        }
    }

    fn take_buffered(&mut self) -> Option<Result<Message, FrameError>> {
        let (n, out) = self.decoder.feed(&self.buf[self.start..self.end]);
        self.start += n;
        out
    }

    fn refill<E>(&mut self, read: Result<usize, E>) -> Result<(), LinkError<E>> {
        self.start = 0;
        self.end = read.map_err(LinkError::Io)?;
        if self.end == 0 {
            return Err(LinkError::Eof);
        }
        Ok(())
    }

    /// Blocks until the next frame outcome: a message, or why a frame was
    /// rejected (the caller counts it and calls again).
    pub fn recv<R: embedded_io::Read>(
        &mut self,
        r: &mut R,
    ) -> Result<Result<Message, FrameError>, LinkError<R::Error>> {
        loop {
            if let Some(out) = self.take_buffered() {
                return Ok(out);
            }
            let read = r.read(&mut self.buf);
            self.refill(read)?;
        }
    }

    /// As [`Receiver::recv`], on an async stream.
    #[cfg(feature = "embedded-io-async")]
    pub async fn recv_async<R: embedded_io_async::Read>(
        &mut self,
        r: &mut R,
    ) -> Result<Result<Message, FrameError>, LinkError<R::Error>> {
        loop {
            if let Some(out) = self.take_buffered() {
                return Ok(out);
            }
            let read = r.read(&mut self.buf).await;
            self.refill(read)?;
        }
    }
}

/// As [`send`], on an async stream.
#[cfg(feature = "embedded-io-async")]
pub async fn send_async<W: embedded_io_async::Write>(
    w: &mut W,
    msg: &Message,
) -> Result<(), LinkError<W::Error>> {
    let mut out = [0u8; MAX_ENCODED];
    let n = encode(msg, &mut out).map_err(LinkError::Frame)?;
    w.write_all(&out[..n]).await.map_err(LinkError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream handing out at most 3 bytes per read.
    struct Trickle<'a>(&'a [u8]);
    impl embedded_io::ErrorType for Trickle<'_> {
        type Error = core::convert::Infallible;
    }
    impl embedded_io::Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
            let n = buf.len().min(3).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn send_then_receive_two_frames_then_eof() {
        let a = Message::Heartbeat { ticks: 1 };
        let b = Message::Ack(crate::Ack { seq: 7 });
        let mut wire = [0u8; 2 * MAX_ENCODED];
        let mut w: &mut [u8] = &mut wire;
        send(&mut w, &a).unwrap();
        send(&mut w, &b).unwrap();
        let left = w.len();
        let used = wire.len() - left;
        let mut r = Trickle(&wire[..used]);
        let mut rx = Receiver::new();
        assert_eq!(rx.recv(&mut r).unwrap(), Ok(a));
        assert_eq!(rx.recv(&mut r).unwrap(), Ok(b));
        assert!(matches!(rx.recv(&mut r), Err(LinkError::Eof)));
    }
}
