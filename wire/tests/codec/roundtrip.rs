//! encode → decode returns the batch it was given, bit for bit.

use edge_wire::codec::{encode_version, envelope};
use edge_wire::{
    decode, encode, AlarmState, Batch, Gap, GapReason, Limits, Point, Quality, Series, Severity,
};
use proptest::prelude::*;

use crate::support::{self, sample_batch};

/// Encode → decode in v6 and in the legacy version the batch needs; both
/// must give the same batch, which is returned.
fn round_trip(batch: &Batch) -> Batch {
    let bytes = encode(batch).expect("encode");
    let v6 = decode(&bytes, &Limits::default()).expect("decode");
    let legacy = decode(&encode_legacy(batch), &Limits::default()).expect("decode legacy");
    assert_eq!(
        legacy,
        v6,
        "v{} and v6 decode differently",
        batch.legacy_version()
    );
    v6
}

/// The batch in the oldest version before v6 that carries it, as `encode`
/// wrote it before v6.
fn encode_legacy(batch: &Batch) -> Vec<u8> {
    encode_version(batch, batch.legacy_version()).expect("encode legacy")
}

#[test]
fn sample_batch_round_trips() {
    let batch = sample_batch(300);
    assert_eq!(round_trip(&batch), batch);
}

#[test]
fn empty_batch_round_trips() {
    let batch = Batch {
        gateway_id: String::new(),
        instance: None,
        seq: 0,
        created_us: 0,
        series: Vec::new(),
        alarms: Vec::new(),
        gaps: Vec::new(),
        devices: Vec::new(),
    };
    assert_eq!(round_trip(&batch), batch);
}

#[test]
fn steady_sensor_costs_about_a_byte_per_reading() {
    // A regression guard on the columnar coding: 8 steady 1 Hz sensors with
    // three-decimal values must stay far below line protocol's ~30 bytes.
    let batch = sample_batch(1000);
    let bytes = encode(&batch).unwrap();
    let per_reading = bytes.len() as f64 / batch.reading_count() as f64;
    assert!(per_reading < 1.5, "{per_reading:.2} bytes per reading");
}

#[test]
fn encoding_is_deterministic() {
    let batch = sample_batch(50);
    assert_eq!(encode(&batch).unwrap(), encode(&batch).unwrap());
}

/// The worked example of docs/wire-format.md: if this changes, so must the
/// document (and the format version, unless it is a bug fix).
#[test]
fn tiny_batch_document_bytes() {
    let batch = Batch {
        gateway_id: "gw".into(),
        instance: None,
        seq: 7,
        created_us: 1_000_000,
        series: vec![Series {
            id: 1,
            name: "t".into(),
            unit: "C".into(),
            tags: support::tags(&[("site", "a")]),
            points: vec![
                point(1_000_000, 21.5, Quality::Good),
                point(2_000_000, 21.75, Quality::Good),
                point(3_000_000, 21.5, Quality::Bad),
            ],
            reporting: None,
        }],
        alarms: vec![edge_wire::AlarmEvent {
            severity: Some(edge_wire::Severity::Major),
            ..support::alarm(
                1,
                "hi",
                edge_wire::AlarmState::Raised,
                21.75,
                21.6,
                2_000_000,
            )
        }],
        gaps: Vec::new(),
        devices: Vec::new(),
    };
    let bytes = encode_legacy(&batch);
    assert_eq!(&bytes[..6], b"EDGB\x00\x02");
    let doc = envelope::decompress(&bytes[6..], &Limits::default()).unwrap();
    let expected: &[u8] = &[
        0x84, // document: array(4)
        0x85, 0x02, 0x62, b'g', b'w', 0x07, 0x1a, 0x00, 0x0f, 0x42, 0x40, 0x03, // header
        0x81, 0x84, 0x01, 0x61, b't', 0x61, b'C', 0xa1, 0x64, b's', b'i', b't', b'e', 0x61,
        b'a', // dictionary
        0x81, 0x86, 0x03, // readings: one series, 3 readings
        0x45, 0x00, 0x80, 0x89, 0x7a, 0x00, // timestamps: 0, +1 s, no change
        0x00, 0x02, // decimal, scale 2
        0x45, 0x00, 0xcc, 0x21, 0x32, 0x31, // no exceptions; mantissas 2150, +25, -25
        0x44, 0x00, 0x02, 0x02, 0x01, // qualities: good x2, bad x1
        0x81, 0x88, 0x01, 0x62, b'h', b'i', 0x00, // alarms: series 1, "hi", raised
        0x1b, 0x40, 0x35, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, // value 21.75 bits
        0x1b, 0x40, 0x35, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a, // limit 21.6 bits
        0x1a, 0x00, 0x1e, 0x84, 0x80, // ts_us 2000000
        0x02, // severity major
        0xf6, // no duration: null
    ];
    assert_eq!(doc, expected, "document {doc:02x?}");
    assert_eq!(round_trip(&batch), batch);

    // What `encode_version(_, 6)` writes, v6: document array(6), header
    // array(6) with version 6 and instance 0 (none), the v6 value column,
    // then the empty gap and device lists (docs/wire-format.md §5).
    let bytes = encode_version(&batch, 6).unwrap();
    assert_eq!(&bytes[..6], b"EDGB\x00\x06");
    let doc = envelope::decompress(&bytes[6..], &Limits::default()).unwrap();
    let mut v6 = vec![0x86, 0x86, 0x06];
    v6.extend_from_slice(&expected[3..13]);
    v6.push(0x00); // instance: none
    v6.extend_from_slice(&expected[13..39]);
    v6.extend_from_slice(&[
        0x48, 0x02, 0x04, // values: 8 bytes; shape: mean of 4; 4 range-coded bytes
        0x0d, 0x01, 0xb6, 0x62, // kinds, bit lengths, top bits
        0xcc, 0x28, // raw low bits of 4300, 50 and 11
    ]);
    v6.extend_from_slice(&expected[45..]);
    v6.extend_from_slice(&[0x80, 0x80]); // no gaps, no device events
    assert_eq!(doc.len(), 88);
    assert_eq!(doc, v6, "document {doc:02x?}");
    assert_eq!(decode(&bytes, &Limits::default()).unwrap(), batch);

    // What `encode` writes, v8: the v6 document with version 8 in the
    // header and range-coded bytes from the counted models (the same
    // decisions; the raw bits are the same).
    let bytes = encode(&batch).unwrap();
    assert_eq!(&bytes[..6], b"EDGB\x00\x08");
    let doc = envelope::decompress(&bytes[6..], &Limits::default()).unwrap();
    let mut v8 = v6.clone();
    v8[2] = 0x08;
    let column = v6.len() - 2 - (expected.len() - 45) - 6;
    v8[column..column + 4].copy_from_slice(&[0x0d, 0x02, 0x6d, 0xbb]);
    assert_eq!(doc, v8, "document {doc:02x?}");

    // The same batch from a spool with instance 0x0102030405060708 is v4:
    // document array(5), header array(6) ending in the instance, the rest
    // as above, then the empty gap list (docs/wire-format.md §5).
    let mut batch = batch;
    batch.instance = std::num::NonZeroU64::new(0x0102_0304_0506_0708);
    let bytes = encode_legacy(&batch);
    assert_eq!(&bytes[..6], b"EDGB\x00\x04");
    let doc = envelope::decompress(&bytes[6..], &Limits::default()).unwrap();
    let mut v4 = vec![0x85, 0x86, 0x04];
    v4.extend_from_slice(&expected[3..13]);
    v4.extend_from_slice(&[0x1b, 1, 2, 3, 4, 5, 6, 7, 8]);
    v4.extend_from_slice(&expected[13..]);
    v4.push(0x80);
    assert_eq!(doc.len(), 92);
    assert_eq!(doc, v4, "document {doc:02x?}");
    assert_eq!(round_trip(&batch), batch);

    // With one device event ("p3", modbus, down after ok on a timeout) it
    // is v5: document array(6), header version 5, the rest as in v4, then
    // the device list (docs/wire-format.md §5).
    batch.devices.push(edge_wire::DeviceEvent {
        device: "p3".into(),
        source: "modbus".into(),
        state: edge_wire::DeviceState::Down,
        previous: edge_wire::DeviceState::Ok,
        reason: Some(edge_wire::DeviceReason {
            kind: edge_wire::ReasonKind::Timeout,
            code: None,
            detail: "t/o".into(),
        }),
        at_us: 3_000_000,
        since_us: 1_000_000,
    });
    let bytes = encode_legacy(&batch);
    assert_eq!(&bytes[..6], b"EDGB\x00\x05");
    let doc = envelope::decompress(&bytes[6..], &Limits::default()).unwrap();
    let mut v5 = vec![0x86, 0x86, 0x05];
    v5.extend_from_slice(&v4[3..]);
    v5.extend_from_slice(&[
        0x81, 0x89, // device events: array(1), an entry of 9 fields
        0x62, b'p', b'3', // device "p3"
        0x66, b'm', b'o', b'd', b'b', b'u', b's', // source "modbus"
        0x03, 0x01, // down, previously ok
        0x01, 0xf6, // reason timeout, no exception code
        0x63, b't', b'/', b'o', // detail "t/o"
        0x1a, 0x00, 0x2d, 0xc6, 0xc0, // at_us 3000000
        0x1a, 0x00, 0x0f, 0x42, 0x40, // since_us 1000000
    ]);
    assert_eq!(doc.len(), 122);
    assert_eq!(doc, v5, "document {doc:02x?}");
    assert_eq!(round_trip(&batch), batch);
}

fn point(ts_us: i64, value: f64, quality: Quality) -> Point {
    Point {
        ts_us,
        value,
        quality,
    }
}

#[test]
fn one_million_readings() {
    let base = 1_700_000_000_000_000i64;
    let series = (0..4)
        .map(|s| Series {
            id: s,
            name: format!("press-{s}.temp"),
            unit: "degC".into(),
            tags: support::tags(&[("site", "plant-a")]),
            points: (0..250_000)
                .map(|i| {
                    let value = if s == 3 {
                        // Full-precision values take the XOR path.
                        (i as f64 * 0.001).sin()
                    } else {
                        (20_000 + (i * 7919) % 500) as f64 / 100.0
                    };
                    point(base + i as i64 * 100_000, value, Quality::Good)
                })
                .collect(),
            reporting: None,
        })
        .collect();
    let batch = Batch {
        gateway_id: "gw-big".into(),
        instance: None,
        seq: 1,
        created_us: base,
        series,
        alarms: Vec::new(),
        gaps: Vec::new(),
        devices: Vec::new(),
    };
    assert_eq!(batch.reading_count(), 1_000_000);
    let bytes = encode(&batch).unwrap();
    let decoded = decode(&bytes, &Limits::default()).unwrap();
    assert_eq!(decoded, batch);
}

#[test]
fn encode_refuses_ambiguous_batches() {
    let mut batch = sample_batch(3);
    batch.series[1].id = batch.series[0].id;
    assert_eq!(encode(&batch).unwrap_err().reason(), "invalid");

    let mut batch = sample_batch(3);
    batch.alarms[0].series_id = 12345;
    let err = encode(&batch).unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid batch: alarm 0 names series id 12345, which is not in the batch"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_batch_round_trips(batch in support::batch()) {
        // v6, and the legacy version the batch needs (v2 to v5).
        prop_assert_eq!(round_trip(&batch), batch);
    }

    #[test]
    fn any_values_round_trip_in_one_series(
        values in prop::collection::vec(support::awkward_f64(), 0..200),
    ) {
        let batch = Batch {
            gateway_id: "gw".into(),
            instance: None,
            seq: 1,
            created_us: 0,
            series: vec![Series {
                id: 0,
                name: "s".into(),
                unit: String::new(),
                tags: Default::default(),
                points: values
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| point(i as i64, v, Quality::Good))
                    .collect(),
                    reporting: None,
            }],
            alarms: Vec::new(),
            gaps: Vec::new(),
            devices: Vec::new(),
        };
        prop_assert_eq!(round_trip(&batch), batch);
    }
}

/// The v1 worked example (format version 1, six-field alarms), as agents
/// before v2 still send it.
const V1_EXAMPLE_DOC: &[u8] = &[
    0x84, 0x85, 0x01, 0x62, b'g', b'w', 0x07, 0x1a, 0x00, 0x0f, 0x42, 0x40, 0x03, 0x81, 0x84, 0x01,
    0x61, b't', 0x61, b'C', 0xa1, 0x64, b's', b'i', b't', b'e', 0x61, b'a', 0x81, 0x86, 0x03, 0x45,
    0x00, 0x80, 0x89, 0x7a, 0x00, 0x00, 0x02, 0x45, 0x00, 0xcc, 0x21, 0x32, 0x31, 0x44, 0x00, 0x02,
    0x02, 0x01, 0x81, 0x86, 0x01, 0x62, b'h', b'i', 0x00, 0x1b, 0x40, 0x35, 0xc0, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x1b, 0x40, 0x35, 0x99, 0x99, 0x99, 0x99, 0x99, 0x9a, 0x1a, 0x00, 0x1e, 0x84, 0x80,
];

/// Guards against the v2 bump breaking gateways that still write v1: their
/// batches decode, with no severity and no duration.
#[test]
fn v1_batches_still_decode() {
    let bytes = envelope::seal_version(V1_EXAMPLE_DOC, 1).unwrap();
    let batch = decode(&bytes, &Limits::default()).unwrap();
    assert_eq!(batch.seq, 7);
    assert_eq!(batch.reading_count(), 3);
    let a = &batch.alarms[0];
    assert_eq!(
        (a.rule.as_str(), a.state, a.value, a.limit, a.ts_us),
        ("hi", AlarmState::Raised, 21.75, 21.6, 2_000_000)
    );
    assert_eq!((a.severity, a.duration_us), (None, None));
}

/// v2 fields that a v1 batch cannot hold, and the codes a v2 decoder
/// refuses.
#[test]
fn v2_alarm_fields_round_trip_and_bad_codes_are_named() {
    let mut batch = sample_batch(3);
    batch.alarms[1].severity = Some(Severity::Critical);
    batch.alarms[1].duration_us = Some(4_000_000);
    let mut ack = batch.alarms[0].clone();
    ack.state = AlarmState::Acknowledged;
    ack.severity = Some(Severity::Warning);
    batch.alarms.push(ack);
    assert_eq!(round_trip(&batch), batch);

    // An acknowledged state in a v1 document is not v1.
    let mut doc = V1_EXAMPLE_DOC.to_vec();
    let state_at = doc.len() - 24;
    assert_eq!(doc[state_at], 0x00, "state byte of the v1 example");
    doc[state_at] = 0x02;
    let err = decode(
        &envelope::seal_version(&doc, 1).unwrap(),
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed batch: alarm 0 (\"hi\") state code 2, expected 0 (raised) or 1 (cleared)"
    );

    // Severity code 9 in a v2 document.
    let bytes = encode_legacy(&batch);
    let mut doc = envelope::decompress(&bytes[6..], &Limits::default()).unwrap();
    let n = doc.len();
    // The last alarm ends with its severity (1 byte) and null duration.
    assert_eq!(&doc[n - 2..], &[0x01, 0xf6]);
    doc[n - 2] = 0x09;
    let err = decode(
        &envelope::seal_version(&doc, 2).unwrap(),
        &Limits::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().ends_with(
            "severity code 9, expected 0 (unknown), 1 (warning), 2 (major) or 3 (critical)"
        ),
        "{err}"
    );
}

/// A batch with gap records is written as v3 and reads back whole; one
/// without stays v2 so relays that read only v2 keep taking it; a broken gap
/// is named.
#[test]
fn a_spool_instance_makes_a_v4_batch_with_a_six_field_header() {
    let mut batch = sample_batch(2);
    batch.instance = std::num::NonZeroU64::new(0x0102_0304_0506_0708);
    batch.gaps = vec![Gap {
        reason: GapReason::MaxAge,
        first_us: 1,
        last_us: 2,
        readings: 3,
        batches: 1,
        recorded_us: 4,
    }];
    let bytes = encode_legacy(&batch);
    assert_eq!(&bytes[..6], b"EDGB\x00\x04");
    assert_eq!(decode(&bytes, &Limits::default()).unwrap(), batch);
    let doc = envelope::decompress(&bytes[6..], &Limits::default()).unwrap();
    // document array(5) (gaps included), header array(6): version 4, the
    // gateway id, seq, created_us, reading count, then the instance as a
    // u64 (major type 0, 8-byte head 0x1b).
    let id = batch.gateway_id.as_bytes();
    assert_eq!(doc[..3], [0x85, 0x86, 0x04]);
    assert_eq!(doc[3], 0x60 + id.len() as u8);
    assert_eq!(&doc[4..4 + id.len()], id);
    let instance = [0x1b, 1, 2, 3, 4, 5, 6, 7, 8];
    let at = doc
        .windows(9)
        .position(|w| w == instance)
        .expect("instance in the header");
    assert!(
        at < 4 + id.len() + 20,
        "instance right after the header's counts: {doc:02x?}"
    );

    // Without gaps, still v4, with an empty gap list.
    batch.gaps.clear();
    let bytes = encode_legacy(&batch);
    assert_eq!(edge_wire::encoded_version(&bytes).unwrap(), 4);
    assert_eq!(decode(&bytes, &Limits::default()).unwrap(), batch);
    let doc = envelope::decompress(&bytes[6..], &Limits::default()).unwrap();
    assert_eq!(*doc.last().unwrap(), 0x80, "empty gap list");

    // Instance 0 is reserved: a v4 header holding it is malformed.
    let mut zero = doc.clone();
    zero[at..at + 9].copy_from_slice(&[0x1b, 0, 0, 0, 0, 0, 0, 0, 0]);
    let err = decode(
        &envelope::seal_version(&zero, 4).unwrap(),
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed batch: header spool instance is 0, which is reserved in v4"
    );
    // A v4 document behind a v3 prefix: the header has one field too many.
    let err = decode(
        &envelope::seal_version(&doc, 3).unwrap(),
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed batch: header: array of 6 items, expected 5"
    );
    // Batches without an instance keep their older versions.
    batch.instance = None;
    assert_eq!(
        edge_wire::encoded_version(&encode_legacy(&batch)).unwrap(),
        2
    );
}

#[test]
fn gaps_make_a_v3_batch_and_bad_gaps_are_named() {
    let plain = sample_batch(3);
    assert_eq!(
        edge_wire::encoded_version(&encode_legacy(&plain)).unwrap(),
        2
    );

    let mut batch = sample_batch(3);
    batch.series.clear();
    batch.alarms.clear();
    batch.gaps = vec![
        Gap {
            reason: GapReason::SpoolFull,
            first_us: 1_000,
            last_us: 61_000_000,
            readings: 600,
            batches: 6,
            recorded_us: 70_000_000,
        },
        Gap {
            reason: GapReason::MaxAge,
            first_us: -5,
            last_us: -5,
            readings: 0,
            batches: 1,
            recorded_us: 0,
        },
    ];
    let bytes = encode_legacy(&batch);
    assert_eq!(edge_wire::encoded_version(&bytes).unwrap(), 3);
    assert_eq!(decode(&bytes, &Limits::default()).unwrap(), batch);

    let mut doc = envelope::decompress(&bytes[6..], &Limits::default()).unwrap();

    // Reason code 7: the first gap entry is `0x86 <reason>` after the alarms.
    let at = doc
        .windows(2)
        .position(|w| w == [0x86, 0x01])
        .expect("first gap entry");
    doc[at + 1] = 0x07;
    let err = decode(
        &envelope::seal_version(&doc, 3).unwrap(),
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed batch: gap 0 reason code 7, expected 1 (spool full), 2 (max age) or 3 (dropped by the device)"
    );

    // An interval that ends before it starts: encode refuses it, decode too.
    let mut backwards = batch.clone();
    backwards.gaps[0].last_us = 0;
    let expected = "invalid batch: gap 0 ends at 0 µs, before it starts at 1000 µs";
    assert_eq!(encode(&backwards).unwrap_err().to_string(), expected);

    // More gaps than the limit allows.
    let limits = Limits {
        max_gaps: 1,
        ..Limits::default()
    };
    let err = decode(&bytes, &limits).unwrap_err();
    assert!(err.is_too_large(), "{err}");
    assert!(err.to_string().contains("(max_gaps)"), "{err}");

    // A v2 document sealed as v3 lacks the gap list.
    let v2 = encode_legacy(&plain);
    let v2_doc = envelope::decompress(&v2[6..], &Limits::default()).unwrap();
    let err = decode(
        &envelope::seal_version(&v2_doc, 3).unwrap(),
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed batch: format v3 document: array of 4 items, expected 5"
    );
}

/// A batch with device events is v5 and reads back whole; every other
/// batch keeps its older version (so relays that read v4 keep taking it);
/// unknown codes, a reason-less entry with a detail, too many events and a
/// v4 document behind a v5 prefix are named errors.
#[test]
fn device_events_make_a_v5_batch_and_bad_entries_are_named() {
    let plain = support::with_device_event(sample_batch(2));
    let bytes = encode_legacy(&plain);
    assert_eq!(edge_wire::encoded_version(&bytes).unwrap(), 5);
    assert_eq!(decode(&bytes, &Limits::default()).unwrap(), plain);
    let mut without = plain.clone();
    without.devices.clear();
    assert_eq!(
        edge_wire::encoded_version(&encode_legacy(&without)).unwrap(),
        4
    );

    // An ok event (no reason) and a degraded one with an exception code.
    let mut both = plain.clone();
    both.devices[0].state = edge_wire::DeviceState::Ok;
    both.devices[0].previous = edge_wire::DeviceState::Down;
    both.devices[0].reason = None;
    both.devices.push(edge_wire::DeviceEvent {
        state: edge_wire::DeviceState::Degraded,
        reason: Some(edge_wire::DeviceReason {
            kind: edge_wire::ReasonKind::Exception,
            code: Some(2),
            detail: "exception code 2 (illegal data address)".into(),
        }),
        ..plain.devices[0].clone()
    });
    assert_eq!(round_trip(&both), both);

    let doc = envelope::decompress(&bytes[6..], &Limits::default()).unwrap();
    // The entry: 0x89, "press-3", "modbus", state, previous, reason, ...
    let entry = doc
        .windows(9)
        .position(|w| w == [0x89, 0x67, b'p', b'r', b'e', b's', b's', b'-', b'3'])
        .expect("device entry");
    let state_at = entry + 9 + 7;
    assert_eq!(doc[state_at..state_at + 4], [0x03, 0x01, 0x01, 0xf6]);
    let broken = |at: usize, byte: u8| {
        let mut d = doc.clone();
        d[at] = byte;
        decode(&envelope::seal_version(&d, 5).unwrap(), &Limits::default())
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        broken(state_at, 0x04),
        "malformed batch: device event 0 (\"press-3\") state code 4, expected 0 (pending), 1 (ok), 2 (degraded) or 3 (down)"
    );
    assert_eq!(
        broken(state_at + 1, 0x09),
        "malformed batch: device event 0 (\"press-3\") previous state code 9, expected 0 (pending), 1 (ok), 2 (degraded) or 3 (down)"
    );
    assert_eq!(
        broken(state_at + 2, 0x07),
        "malformed batch: device event 0 (\"press-3\") reason code 7, expected 0 (none), 1 (timeout), 2 (connection refused), 3 (connection lost), 4 (exception), 5 (crc) or 6 (error)"
    );
    assert_eq!(
        broken(state_at + 2, 0x00),
        "malformed batch: device event 0 (\"press-3\") reason: reason 0 (none) with an exception code or a detail"
    );

    let limits = Limits {
        max_device_events: 0,
        ..Limits::default()
    };
    let err = decode(&bytes, &limits).unwrap_err();
    assert!(err.is_too_large(), "{err}");
    assert_eq!(
        err.to_string(),
        "batch declares 1 device events, limit is 0 (max_device_events)"
    );
    let limits = Limits {
        max_string_bytes: 10,
        ..Limits::default()
    };
    let mut long = plain.clone();
    long.gateway_id = "gw".into();
    long.series.clear();
    long.alarms.clear();
    let err = decode(&encode_legacy(&long), &limits).unwrap_err();
    assert!(err.to_string().contains("detail is 22 bytes"), "{err}");

    // A v4 document sealed as v5 lacks the device list.
    let v4 = encode_legacy(&without);
    let v4_doc = envelope::decompress(&v4[6..], &Limits::default()).unwrap();
    let mut as_v5 = v4_doc.clone();
    as_v5[2] = 0x05; // header version
    let err = decode(
        &envelope::seal_version(&as_v5, 5).unwrap(),
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "malformed batch: format v5 document: array of 5 items, expected 6"
    );
    // And a v4 encoder cannot be asked for device events.
    assert!(encode(&Batch {
        instance: None,
        ..plain
    })
    .is_err());
}
