//! `edge-agent probe frames`: listen to a microcontroller for a while, for a
//! technician commissioning it: its birth (who it is, what it measures) and
//! its live samples, decoded by the agent's own session rules
//! ([`crate::source::frames::session`]), with the frames that failed.
//!
//! Not the source: nothing is stored and nothing is acknowledged, so the
//! device keeps its samples and resends them to the agent later. Samples
//! that arrive before a birth are answered with `Nack(NoBirth)`, which asks
//! the device for its birth (and to resend what it holds). The formatting
//! is pure and tested; only [`listen`] does I/O.

use std::fmt::Write as _;
use std::time::Duration;

use firmware_shim::frame::{Decoder, FrameError};
use firmware_shim::{Birth, ChannelKind, Message, Nack, NackReason};
use tokio::io::AsyncReadExt;

use crate::config::frames::FramesLink;
use crate::reading::now_us;
use crate::source::frames::session::{Decision, Session};
use crate::source::frames::{open, send};

/// What the probe saw, besides what it printed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Heard {
    pub frames: u64,
    pub births: u64,
    pub samples: u64,
    pub crc_errors: u64,
    pub bad_frames: u64,
}

/// The birth as a technician reads it.
pub fn format_birth(b: &Birth) -> String {
    let mut out = format!(
        "birth: device {:?}, firmware {}.{}.{}, boot {:08x}, clock {} Hz, {} channels\n",
        b.device_id.as_str(),
        b.fw_version[0],
        b.fw_version[1],
        b.fw_version[2],
        b.boot_id,
        b.tick_hz,
        b.channels.len()
    );
    out.push_str("  index  name              unit      kind     scale\n");
    for c in &b.channels {
        let kind = match c.kind {
            ChannelKind::Analog => "analog",
            ChannelKind::Digital => "digital",
            ChannelKind::Counter => "counter",
        };
        let scale = c.scale.map_or("1".to_string(), |s| s.to_string());
        let _ = writeln!(
            out,
            "  {:<5}  {:<16}  {:<8}  {:<7}  {scale}",
            c.index,
            c.name.as_str(),
            c.unit.as_str(),
            kind
        );
    }
    out
}

/// One line for a decision of the session about a samples message.
pub fn format_decision(session: &Session, d: &Decision) -> Option<String> {
    Some(match d {
        Decision::Take { seq, values, lost } => {
            let mut line = format!("sample {seq}:");
            for v in values {
                let (name, unit) = session
                    .channel(v.channel)
                    .map_or((String::from("?"), ""), |c| {
                        (c.series.clone(), c.unit.as_str())
                    });
                let _ = write!(line, " {name}={} {unit}", v.value);
            }
            if *lost > 0 {
                let _ = write!(line, " ({lost} dropped by the device before this one)");
            }
            line.trim_end().to_string()
        }
        Decision::Duplicate { seq } => format!("sample {seq}: resent (seen before)"),
        Decision::Refuse {
            seq,
            reason: NackReason::NoBirth,
        } => format!("sample {seq}: before any birth; asking the device for its birth"),
        Decision::Refuse { seq, reason } => format!("sample {seq}: refused ({reason:?})"),
        Decision::Alive => "heartbeat".to_string(),
        Decision::Birth { .. } | Decision::Ignore => return None,
    })
}

/// Listen on `link` for `seconds`, printing the birth and every sample.
pub async fn listen(link: &FramesLink, seconds: u64) -> std::io::Result<Heard> {
    let mut stream = open(link).await?;
    println!("listening to {link} for {seconds} s (nothing is stored or acknowledged)");
    let mut session = Session::new(None);
    let mut decoder = Decoder::new();
    let mut heard = Heard::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    let mut buf = [0u8; 512];
    loop {
        let n = tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return Ok(heard),
            r = stream.read(&mut buf) => r?,
        };
        if n == 0 {
            println!("the link closed");
            return Ok(heard);
        }
        for &b in &buf[..n] {
            let msg = match decoder.push(b) {
                None => continue,
                Some(Ok(msg)) => msg,
                Some(Err(e)) => {
                    match e {
                        FrameError::Crc => heard.crc_errors += 1,
                        _ => heard.bad_frames += 1,
                    }
                    println!("frame dropped: {e}");
                    continue;
                }
            };
            heard.frames += 1;
            if let Message::Birth(b) = &msg {
                heard.births += 1;
                print!("{}", format_birth(b));
            }
            let d = session.on_message(msg, now_us());
            if let Decision::Take { .. } = d {
                heard.samples += 1;
            }
            if let Decision::Refuse {
                seq,
                reason: NackReason::NoBirth,
            } = d
            {
                let nack = Message::Nack(Nack {
                    seq,
                    reason: NackReason::NoBirth,
                });
                send(&mut stream, &nack).await?;
            }
            if let Some(line) = format_decision(&session, &d) {
                println!("{line}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmware_shim::heapless;
    use firmware_shim::{Channel, Reading, Samples};

    fn birth() -> Birth {
        let mut channels = heapless::Vec::new();
        let _ = channels.push(Channel {
            index: 0,
            name: heapless::String::try_from("temperature").unwrap(),
            unit: heapless::String::try_from("degC").unwrap(),
            kind: ChannelKind::Analog,
            scale: Some(0.5),
        });
        Birth {
            device_id: heapless::String::try_from("sht-9").unwrap(),
            fw_version: [1, 4, 2],
            boot_id: 0xdead_beef,
            tick_hz: 1000,
            channels,
        }
    }

    #[test]
    fn a_birth_and_a_sample_read_as_a_technician_needs_them() {
        let text = format_birth(&birth());
        assert!(
            text.starts_with("birth: device \"sht-9\", firmware 1.4.2, boot deadbeef, clock 1000 Hz, 1 channels\n"),
            "{text}"
        );
        assert!(
            text.contains("  0      temperature       degC      analog   0.5\n"),
            "{text}"
        );
        let mut s = Session::new(None);
        s.on_message(Message::Birth(birth()), 0);
        let d = s.on_message(
            Message::Samples(Samples {
                seq: 3,
                ticks: 10,
                dropped: 0,
                readings: heapless::Vec::from_slice(&[Reading {
                    channel: 0,
                    value: 43.0,
                }])
                .unwrap(),
            }),
            1_000_000,
        );
        assert_eq!(
            format_decision(&s, &d).unwrap(),
            "sample 3: sht-9.temperature=21.5 degC"
        );
        let before = Session::new(None).on_message(
            Message::Samples(Samples {
                seq: 9,
                ticks: 0,
                dropped: 0,
                readings: heapless::Vec::new(),
            }),
            0,
        );
        assert_eq!(
            format_decision(&Session::new(None), &before).unwrap(),
            "sample 9: before any birth; asking the device for its birth"
        );
    }
}
