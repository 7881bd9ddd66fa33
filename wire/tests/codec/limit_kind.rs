//! The limit kind of an alarm on the wire: a v6 alarm entry with a 9th
//! element (the kind's code) round-trips for each of the four kinds; an
//! entry without it is the 8-element entry it always was; a 9th element
//! of `null` (written before an SPC element) is no kind; a 10th that is
//! not an SPC element is a named error and a hostile one no crash; a
//! version before v6 leaves the kind out; a bad code or arity is named.

use edge_wire::codec::{encode_version, envelope};
use edge_wire::{decode, encode, AlarmState, Batch, LimitKind, Limits};

use crate::support::{alarm, sample_batch};

/// A small batch whose only alarm has `kind`; no gaps, no device events,
/// so its v6 document ends with the alarm entry and two empty lists.
fn with_alarm(kind: Option<LimitKind>) -> Batch {
    let mut batch = sample_batch(3);
    batch.instance = None;
    batch.gaps.clear();
    batch.devices.clear();
    let id = batch.series[0].id;
    batch.alarms = vec![edge_wire::AlarmEvent {
        limit_kind: kind,
        ..alarm(id, "oil.min_max", AlarmState::Raised, 9.5, 10.0, 1_000)
    }];
    batch
}

/// The decompressed v6 document of `batch`.
fn document(batch: &Batch) -> Vec<u8> {
    let bytes = encode(batch).unwrap();
    let (_, frame) = envelope::open(&bytes, &Limits::default()).unwrap();
    envelope::decompress(frame, &Limits::default()).unwrap()
}

fn decode_doc(doc: &[u8]) -> Result<Batch, edge_wire::WireError> {
    decode(
        &envelope::seal_version(doc, edge_wire::FORMAT_VERSION).unwrap(),
        &Limits::default(),
    )
}

#[rustfmt::skip]
#[test]
fn each_limit_kind_round_trips_with_its_code() {
    // (kind, wire code from docs/wire-format.md, JSON name)
    let table = [
        (LimitKind::HighHigh, 1, "high_high"),
        (LimitKind::High,     2, "high"),
        (LimitKind::Low,      3, "low"),
        (LimitKind::LowLow,   4, "low_low"),
    ];
    for (kind, code, name) in table {
        let batch = with_alarm(Some(kind));
        let doc = document(&batch);
        // The entry ends with the code, then the empty gap and device lists.
        assert_eq!(&doc[doc.len() - 3..], &[code, 0x80, 0x80], "{name}");
        assert_eq!(decode_doc(&doc).unwrap(), batch, "{name}");
        assert_eq!(kind.as_str(), name);
        assert_eq!(LimitKind::from_code(code), Some(kind));
    }
    assert_eq!(LimitKind::from_code(0), None);
    assert_eq!(LimitKind::from_code(5), None);
}

/// Guards against the field changing the bytes of alarms that do not use
/// it: 8 elements (`0x88`), one byte shorter than with a kind.
#[test]
fn an_alarm_without_a_kind_keeps_eight_elements() {
    let plain = document(&with_alarm(None));
    let kind = document(&with_alarm(Some(LimitKind::Low)));
    assert_eq!(kind.len(), plain.len() + 1);
    let at = plain.iter().rposition(|&b| b == 0x88).unwrap();
    assert_eq!(kind[at], 0x89);
    assert_eq!(decode_doc(&plain).unwrap().alarms[0].limit_kind, None);
}

/// A null 9th element is no kind (what a writer puts there before an SPC
/// element, `tests/codec/spc.rs`); a 10th that is not an SPC element is a
/// named error.
#[test]
fn a_null_ninth_is_no_kind_and_a_foreign_tenth_is_an_error() {
    let batch = with_alarm(Some(LimitKind::High));
    let doc = document(&batch);
    let entry = doc.iter().rposition(|&b| b == 0x89).unwrap();
    let kind_at = doc.len() - 3;

    let mut null_ninth = doc.clone();
    null_ninth[kind_at] = 0xf6; // null
    let back = decode_doc(&null_ninth).unwrap();
    assert_eq!(back.alarms[0].limit_kind, None);
    assert_eq!(back.alarms[0].rule, "oil.min_max");
    assert_eq!(back.series, batch.series);

    // A 10th element: the map {"n": [1, 2.5]}, not [test, 5 floats].
    let tenth = [0xa1, 0x61, b'n', 0x82, 0x01, 0xf9, 0x41, 0x00];
    let mut ten = doc.clone();
    ten[entry] = 0x8a;
    ten.splice(kind_at + 1..kind_at + 1, tenth);
    let e = decode_doc(&ten).unwrap_err().to_string();
    assert!(e.contains("spc"), "{e}");

    // 11 elements and a bad code are named errors, not panics.
    let mut eleven = doc.clone();
    eleven[entry] = 0x8b;
    eleven.splice(kind_at + 1..kind_at + 1, [0x01, 0x02]);
    let e = decode_doc(&eleven).unwrap_err().to_string();
    assert!(
        e.contains("alarm 0: array of 11 items, expected 8, 9 or 10"),
        "{e}"
    );
    let mut bad = doc.clone();
    bad[kind_at] = 0x07;
    let e = decode_doc(&bad).unwrap_err().to_string();
    assert!(e.contains("limit kind code 7"), "{e}");
}

/// Guards against a hostile 10th element: nested 100 000 arrays deep it is
/// skipped or refused, without overflowing the stack; one that runs past
/// the end of the input is a named error.
#[test]
fn a_deep_or_truncated_tenth_element_is_no_crash() {
    let doc = document(&with_alarm(Some(LimitKind::High)));
    let entry = doc.iter().rposition(|&b| b == 0x89).unwrap();
    let kind_at = doc.len() - 3;
    let mut deep = doc.clone();
    deep[entry] = 0x8a;
    let mut tenth = vec![0x81; 100_000];
    tenth.push(0x00);
    deep.splice(kind_at + 1..kind_at + 1, tenth);
    // Either outcome is fine; what matters is an answer.
    let _ = decode_doc(&deep);

    let mut cut = doc[..kind_at + 1].to_vec();
    cut[entry] = 0x8a;
    cut.push(0x9b); // an array declaring 2^64 - 1 items, and nothing after
    cut.extend_from_slice(&[0xff; 8]);
    assert!(decode_doc(&cut).is_err());
}

#[test]
fn versions_before_v6_leave_the_kind_out() {
    // v2 and v3: the versions a batch without a spool instance is written in.
    let batch = with_alarm(Some(LimitKind::LowLow));
    for version in [2, 3] {
        let legacy = encode_version(&batch, version).unwrap();
        let back = decode(&legacy, &Limits::default()).unwrap();
        assert_eq!(back.alarms[0].limit_kind, None, "v{version}");
        assert_eq!(back.alarms[0].rule, batch.alarms[0].rule);
    }
}
