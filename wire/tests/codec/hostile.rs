//! Hostile and broken input at the envelope level: truncation, corruption,
//! wrong magic or version, oversized and bomb frames, and arbitrary bytes.
//! Decode must return the right error, never panic, and stay within limits.

use std::io::Write;
use std::time::{Duration, Instant};

use edge_wire::codec::envelope::seal;
use edge_wire::{decode, encode, encoded_version, Limits, WireError};
use proptest::prelude::*;

use crate::support::{decode_default, decode_err_measured, peak_allocation, sample_batch};

#[test]
fn every_truncation_is_an_error() {
    let bytes = encode(&sample_batch(40)).unwrap();
    for len in 0..bytes.len() {
        assert!(
            decode_default(&bytes[..len]).is_err(),
            "prefix of {len} bytes decoded"
        );
    }
    assert!(decode_default(&bytes).is_ok());
}

#[test]
fn single_byte_corruption_never_yields_different_readings() {
    // The zstd checksum makes corruption of the compressed body detectable;
    // only bits zstd ignores (the unused bit of the frame header descriptor,
    // a few bits of entropy-table headers) flip without an error, and then
    // the content is unchanged.
    let batch = sample_batch(40);
    let bytes = encode(&batch).unwrap();
    let mut unnoticed = 0;
    for pos in 0..bytes.len() {
        for mask in [0x01u8, 0x10, 0x80, 0xff] {
            let mut corrupt = bytes.clone();
            corrupt[pos] ^= mask;
            if let Ok(decoded) = decode_default(&corrupt) {
                assert_eq!(
                    decoded, batch,
                    "byte {pos} xor {mask:#04x} changed the batch"
                );
                unnoticed += 1;
            }
        }
    }
    let tried = bytes.len() * 4;
    assert!(
        unnoticed * 100 < tried,
        "{unnoticed} of {tried} corruptions went unnoticed"
    );
}

#[test]
fn wrong_magic_and_version() {
    let bytes = encode(&sample_batch(5)).unwrap();
    assert_eq!(encoded_version(&bytes).unwrap(), 8);

    let mut foreign = bytes.clone();
    foreign[0] = b'{';
    let err = decode_default(&foreign).unwrap_err();
    assert_eq!(err.reason(), "bad_magic");
    assert!(err.to_string().starts_with("not an edge batch"), "{err}");

    let mut newer = bytes.clone();
    newer[4..6].copy_from_slice(&11u16.to_be_bytes());
    let err = decode_default(&newer).unwrap_err();
    assert!(
        matches!(
            err,
            WireError::UnsupportedVersion {
                found: 11,
                supported: 10
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "batch format version 11 is not supported, this build reads versions 1 to 10 (7 and 9 with their series table)"
    );
    assert_eq!(err.reason(), "bad_version");
    assert_eq!(encoded_version(&newer).unwrap(), 11);
}

#[test]
fn compressed_size_over_the_limit() {
    let bytes = encode(&sample_batch(100)).unwrap();
    let limits = Limits {
        max_compressed_bytes: bytes.len() - 1,
        ..Limits::default()
    };
    let err = decode(&bytes, &limits).unwrap_err();
    assert!(err.is_too_large());
    assert_eq!(
        err.to_string(),
        format!(
            "batch is {} bytes, limit is {} (max_compressed_bytes)",
            bytes.len(),
            bytes.len() - 1
        )
    );
}

/// `size` zero bytes in a zstd frame that does not announce its size,
/// so the decoder has to find out by decompressing.
fn unannounced_bomb(size: usize) -> Vec<u8> {
    let mut out = b"EDGB\x00\x01".to_vec();
    let mut z = zstd::stream::write::Encoder::new(&mut out, 19).unwrap();
    let chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        z.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
    z.finish().unwrap();
    out
}

#[test]
fn announced_bomb_is_refused_before_decompressing() {
    let bomb = seal(&vec![0u8; (16 << 20) + 1]).unwrap();
    assert!(bomb.len() < 4096, "bomb is {} bytes", bomb.len());
    let started = Instant::now();
    let (err, peak) = decode_err_measured(&bomb);
    assert!(started.elapsed() < Duration::from_millis(100));
    assert!(err.is_too_large(), "{err}");
    assert!(err.to_string().contains("max_decompressed_bytes"), "{err}");
    assert!(peak < 64 << 10, "peak allocation {peak} bytes");
}

#[test]
fn unannounced_bomb_costs_at_most_the_limit() {
    let bomb = unannounced_bomb((16 << 20) + 4096);
    assert!(bomb.len() < 4096, "bomb is {} bytes", bomb.len());
    let started = Instant::now();
    let (err, peak) = decode_err_measured(&bomb);
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        err.to_string(),
        "decompressed document is over 16777216 bytes, limit is 16777216 (max_decompressed_bytes)"
    );
    assert!(peak <= (16 << 20) + 4096, "peak allocation {peak} bytes");

    // A smaller limit bounds memory accordingly.
    let limits = Limits {
        max_decompressed_bytes: 1 << 20,
        ..Limits::default()
    };
    let (result, peak) = peak_allocation(|| decode(&bomb, &limits));
    assert!(result.unwrap_err().is_too_large());
    assert!(peak <= (1 << 20) + 4096, "peak allocation {peak} bytes");
}

#[test]
fn frame_asking_for_a_huge_window_is_refused() {
    let mut out = b"EDGB\x00\x01".to_vec();
    let mut z = zstd::stream::write::Encoder::new(&mut out, 3).unwrap();
    z.window_log(27).unwrap();
    z.long_distance_matching(true).unwrap();
    z.write_all(&[7u8; 100_000]).unwrap();
    z.finish().unwrap();
    let err = decode_default(&out).unwrap_err();
    assert_eq!(err.reason(), "decompress", "{err}");
}

/// Inputs that reach deeper and deeper into the decoder.
fn hostile_input() -> impl Strategy<Value = Vec<u8>> {
    // A v5 batch (a spool instance, a gap and a device event), so `seal`
    // (v5) fits the document and the damage reaches every part, the gap
    // and device lists included.
    let mut batch = crate::support::with_device_event(sample_batch(20));
    batch.gaps.push(edge_wire::Gap {
        reason: edge_wire::GapReason::SpoolFull,
        first_us: batch.created_us - 60_000_000,
        last_us: batch.created_us - 30_000_000,
        readings: 90,
        batches: 3,
        recorded_us: batch.created_us,
    });
    let valid = encode(&batch).unwrap();
    let doc = edge_wire::codec::envelope::decompress(&valid[6..], &Limits::default()).unwrap();
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        prop::collection::vec(any::<u8>(), 0..256).prop_map(|tail| {
            let mut bytes = b"EDGB\x00\x01".to_vec();
            bytes.extend(tail);
            bytes
        }),
        prop::collection::vec(any::<u8>(), 0..256).prop_map(|doc| seal(&doc).unwrap()),
        // The valid document with a few bytes changed, properly sealed, so
        // the CBOR reader and the columns see the damage.
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4).prop_map(
            move |edits| {
                let mut doc = doc.clone();
                for (at, byte) in edits {
                    let i = at.index(doc.len());
                    doc[i] = byte;
                }
                seal(&doc).unwrap()
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decode_of_anything_never_panics(bytes in hostile_input()) {
        let (result, peak) = peak_allocation(|| decode_default(&bytes));
        if let Err(err) = result {
            prop_assert!(!err.reason().is_empty());
            prop_assert!(!err.to_string().is_empty());
        }
        prop_assert!(peak < 1 << 20, "peak allocation {} bytes", peak);
    }

    /// `decode_bound` holds for the v6 value codings too: mutated v6
    /// documents and valid batches never make decode allocate more.
    #[test]
    fn decode_allocates_within_decode_bound(bytes in hostile_input()) {
        let limits = Limits::default();
        if let Ok(bound) = edge_wire::decode_bound(&bytes, &limits) {
            let (_, peak) = peak_allocation(|| decode(&bytes, &limits));
            prop_assert!(peak <= bound, "peak allocation {} bytes, bound {}", peak, bound);
        }
    }

    #[test]
    fn valid_batches_decode_within_decode_bound(batch in crate::support::batch()) {
        let limits = Limits::default();
        let bytes = encode(&batch).unwrap();
        let bound = edge_wire::decode_bound(&bytes, &limits).unwrap();
        let (decoded, peak) = peak_allocation(|| decode(&bytes, &limits));
        prop_assert_eq!(decoded.unwrap(), batch);
        prop_assert!(peak <= bound, "peak allocation {} bytes, bound {}", peak, bound);
    }

    #[test]
    fn random_corruption_never_panics(
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8),
    ) {
        let mut bytes = encode(&sample_batch(20)).unwrap();
        for (at, mask) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        let _ = decode_default(&bytes);
    }
}
