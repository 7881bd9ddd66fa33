//! Property tests of the frame layer: any message sequence round-trips
//! through `encode` and the streaming `Decoder`, however the bytes are split;
//! the decoder never panics on arbitrary bytes; after garbage or a half frame
//! it resynchronises at the next delimiter.
use firmware_shim::frame::{encode, DELIMITER};
use firmware_shim::message::{MAX_CHANNELS, MAX_DEVICE_ID, MAX_NAME, MAX_READINGS, MAX_UNIT};
use firmware_shim::{
    Ack, Birth, Channel, ChannelKind, Decoder, FrameError, Message, Nack, NackReason, Reading,
    Samples, MAX_ENCODED,
};
use proptest::collection::vec;
use proptest::prelude::*;

/// A heapless string of at most `N` bytes from `chars` (ASCII and a few
/// multi-byte characters, so byte limits are exercised too).
fn hstring<const N: usize>() -> impl Strategy<Value = heapless::String<N>> {
    vec(
        prop_oneof![4 => proptest::char::range('!', '~'), 1 => Just('°'), 1 => Just('µ')],
        0..=N,
    )
    .prop_map(|cs| {
        let mut s = heapless::String::new();
        for c in cs {
            if s.push(c).is_err() {
                break;
            }
        }
        s
    })
}

/// Finite f32s compare equal after a round trip; NaN would not (NaN != NaN),
/// so it is checked bit-exact separately below.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        any::<f32>().prop_filter("not NaN", |v| !v.is_nan()),
        Just(f32::INFINITY),
        Just(-0.0f32),
    ]
}

fn kind() -> impl Strategy<Value = ChannelKind> {
    prop_oneof![
        Just(ChannelKind::Analog),
        Just(ChannelKind::Digital),
        Just(ChannelKind::Counter)
    ]
}

fn channel() -> impl Strategy<Value = Channel> {
    (
        any::<u8>(),
        hstring::<MAX_NAME>(),
        hstring::<MAX_UNIT>(),
        kind(),
        proptest::option::of(value()),
    )
        .prop_map(|(index, name, unit, kind, scale)| Channel {
            index,
            name,
            unit,
            kind,
            scale,
        })
}

fn message() -> impl Strategy<Value = Message> {
    let birth = (
        hstring::<MAX_DEVICE_ID>(),
        any::<[u8; 3]>(),
        any::<u32>(),
        any::<u32>(),
        vec(channel(), 0..=MAX_CHANNELS),
    )
        .prop_map(|(device_id, fw_version, boot_id, tick_hz, chs)| {
            Message::Birth(Birth {
                device_id,
                fw_version,
                boot_id,
                tick_hz,
                channels: heapless::Vec::from_slice(&chs).unwrap(),
            })
        });
    let samples = (
        any::<u32>(),
        any::<u64>(),
        any::<u32>(),
        vec(
            (any::<u8>(), value()).prop_map(|(channel, value)| Reading { channel, value }),
            0..=MAX_READINGS,
        ),
    )
        .prop_map(|(seq, ticks, dropped, rs)| {
            Message::Samples(Samples {
                seq,
                ticks,
                dropped,
                readings: heapless::Vec::from_slice(&rs).unwrap(),
            })
        });
    let reason = prop_oneof![
        Just(NackReason::NoBirth),
        Just(NackReason::UnknownChannel),
        Just(NackReason::Busy)
    ];
    prop_oneof![
        birth,
        samples,
        any::<u64>().prop_map(|ticks| Message::Heartbeat { ticks }),
        (any::<u64>(), any::<u64>()).prop_map(|(unix_ms, device_ticks)| Message::TimeSync {
            unix_ms,
            device_ticks
        }),
        any::<u32>().prop_map(|seq| Message::Ack(Ack { seq })),
        (any::<u32>(), reason).prop_map(|(seq, reason)| Message::Nack(Nack { seq, reason })),
    ]
}

fn wire(msg: &Message) -> Vec<u8> {
    let mut out = [0u8; MAX_ENCODED];
    let n = encode(msg, &mut out).expect("every message fits a frame");
    out[..n].to_vec()
}

/// Feeds `bytes` in chunks of the given sizes (cycled), collecting outcomes.
fn decode_chunked(bytes: &[u8], chunks: &[usize]) -> Vec<Result<Message, FrameError>> {
    let mut d = Decoder::new();
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut i = 0;
    while !rest.is_empty() {
        let take = chunks[i % chunks.len()].clamp(1, rest.len());
        i += 1;
        let mut piece = &rest[..take];
        rest = &rest[take..];
        while !piece.is_empty() {
            let (n, r) = d.feed(piece);
            piece = &piece[n..];
            out.extend(r);
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_sequence_round_trips(msgs in vec(message(), 0..12), chunks in vec(1usize..300, 1..8)) {
        let bytes: Vec<u8> = msgs.iter().flat_map(wire).collect();
        let got = decode_chunked(&bytes, &chunks);
        let want: Vec<Result<Message, FrameError>> = msgs.into_iter().map(Ok).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn a_frame_never_contains_the_delimiter_and_stays_within_max_encoded(msg in message()) {
        let w = wire(&msg);
        prop_assert!(w.len() <= MAX_ENCODED);
        prop_assert_eq!(w.last().copied(), Some(DELIMITER));
        prop_assert!(!w[..w.len() - 1].contains(&DELIMITER));
    }

    #[test]
    fn nan_values_survive_bit_exact(bits in any::<u32>()) {
        let v = f32::from_bits(bits | 0x7F80_0001); // a NaN whatever the rest
        let msg = Message::Samples(Samples {
            seq: 1, ticks: 2, dropped: 0,
            readings: heapless::Vec::from_slice(&[Reading { channel: 0, value: v }]).unwrap(),
        });
        let got = decode_chunked(&wire(&msg), &[64]);
        match &got[..] {
            [Ok(Message::Samples(s))] => prop_assert_eq!(s.readings[0].value.to_bits(), v.to_bits()),
            other => prop_assert!(false, "decoded {:?}", other),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_yield_at_most_one_outcome_per_delimiter(
        bytes in vec(any::<u8>(), 0..2048),
    ) {
        let mut d = Decoder::new();
        let mut outcomes = 0usize;
        for &b in &bytes {
            if d.push(b).is_some() {
                prop_assert_eq!(b, DELIMITER, "an outcome only at a delimiter");
                outcomes += 1;
            }
        }
        prop_assert!(outcomes <= bytes.iter().filter(|&&b| b == DELIMITER).count());
    }

    /// Line noise (anything, ending in the delimiter a receiver then sees),
    /// then frames: every frame after the noise decodes, in order.
    #[test]
    fn resynchronises_after_garbage(
        noise in vec(any::<u8>(), 0..600),
        msgs in vec(message(), 1..6),
        chunks in vec(1usize..64, 1..4),
    ) {
        let mut bytes = noise.clone();
        bytes.push(DELIMITER);
        for m in &msgs {
            bytes.extend(wire(m));
        }
        let got = decode_chunked(&bytes, &chunks);
        // The noise produces at most one outcome per delimiter in it (+1 for
        // the closing one); whatever they are, the frames follow intact.
        let noise_outcomes = got.len() - msgs.len();
        prop_assert!(noise_outcomes <= noise.iter().filter(|&&b| b == DELIMITER).count() + 1);
        let tail: Vec<Message> = got[noise_outcomes..].iter().cloned().map(Result::unwrap).collect();
        prop_assert_eq!(tail, msgs);
    }

    /// A device reset mid-frame: the first `cut` bytes of a frame, then a
    /// complete frame. The half frame merges with the next one up to its
    /// delimiter and is rejected; a sender that flushes with a leading
    /// delimiter loses nothing after it.
    #[test]
    fn a_half_frame_is_rejected_and_the_next_frames_decode(
        first in message(),
        cut_at in any::<prop::sample::Index>(),
        second in message(),
        third in message(),
        flush in any::<bool>(),
    ) {
        let half = wire(&first);
        let cut = cut_at.index(half.len() - 1); // strictly before the delimiter
        let mut bytes = half[..cut].to_vec();
        if flush {
            bytes.push(DELIMITER);
        }
        bytes.extend(wire(&second));
        bytes.extend(wire(&third));
        let got = decode_chunked(&bytes, &[7]);
        let last = got.last().cloned();
        prop_assert_eq!(last, Some(Ok(third.clone())));
        if flush {
            // The flushed half frame is one rejected outcome (or none when
            // nothing of it arrived); the second frame then decodes.
            let rejected = usize::from(cut > 0);
            prop_assert_eq!(got.len(), rejected + 2);
            if cut > 0 {
                prop_assert!(got[0].is_err());
            }
            prop_assert_eq!(&got[rejected], &Ok(second));
        } else if cut > 0 {
            // Merged with the second frame: one outcome, never the first
            // message decoded from a prefix of its bytes.
            prop_assert_eq!(got.len(), 2);
            prop_assert!(got[0] != Ok(first));
        }
    }
}
