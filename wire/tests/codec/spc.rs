//! The SPC detail of an alarm on the wire: the optional 10th element of a
//! v6 alarm entry (`[test, centre, sigma, lower, upper, statistic]`, the 9th
//! then null) round-trips; an alarm without it keeps its 8 elements, so
//! every batch written before the field reads and encodes as before; the
//! 9th is the limit kind (null when none); a version before v6 cannot
//! carry it.

use edge_wire::codec::{encode_version, envelope};
use edge_wire::{decode, encode, Batch, Limits, SpcDetail};

use crate::support::sample_batch;

fn detail() -> SpcDetail {
    SpcDetail {
        test: 7,
        centre: 32.1,
        sigma: 0.4,
        lower: -2.0,
        upper: 2.0,
        statistic: 2.25,
    }
}

/// The sample batch with only its first alarm, carrying `spc`.
fn with_spc(spc: Option<SpcDetail>) -> Batch {
    let mut batch = sample_batch(3);
    batch.alarms.truncate(1);
    batch.alarms[0].spc = spc;
    batch
}

fn document(batch: &Batch) -> Vec<u8> {
    let bytes = encode(batch).unwrap();
    let (_, frame) = envelope::open(&bytes, &Limits::default()).unwrap();
    envelope::decompress(frame, &Limits::default()).unwrap()
}

#[test]
fn spc_detail_round_trips_and_other_alarms_stay_without() {
    let mut batch = sample_batch(20);
    batch.alarms[0].spc = Some(detail());
    let back = decode(&encode(&batch).unwrap(), &Limits::default()).unwrap();
    assert_eq!(back, batch);
    assert_eq!(back.alarms[0].spc, Some(detail()));
    assert_eq!(back.alarms[1].spc, None);
}

/// Guards against the field changing the bytes of batches that do not use
/// it, and pins its size: array(10) instead of array(8) (one byte either
/// way), a null, array(6), a small uint and five f64 of 9 bytes.
#[test]
fn the_element_costs_48_bytes_and_nothing_when_absent() {
    let plain = document(&with_spc(None));
    let spc = document(&with_spc(Some(detail())));
    assert_eq!(spc.len(), plain.len() + 1 + 1 + 1 + 5 * 9);
    // The alarm entry starts with array(8) (0x88) without SPC, array(10)
    // (0x8a) with it: series id 4, then the rule "pressure.high" (0x6d).
    let entry = |doc: &[u8], head: u8| {
        doc.windows(3)
            .position(|w| w == [head, 0x04, 0x6d])
            .is_some()
    };
    assert!(entry(&plain, 0x88) && !entry(&plain, 0x8a));
    assert!(entry(&spc, 0x8a));
}

/// The 9th element is the limit kind (`tests/codec/limit_kind.rs`): null
/// before the SPC element when there is none, the kind's code when an
/// alarm has both, and anything else there is a named error.
#[test]
fn the_ninth_element_is_the_limit_kind_and_both_round_trip() {
    let doc = document(&with_spc(Some(detail())));
    // null, array(6), test 7, f64 marker: the 9th element and the start of
    // the 10th.
    let at = doc
        .windows(4)
        .position(|w| w == [0xf6, 0x86, 0x07, 0xfb])
        .expect("the SPC element after a null");

    let mut both = with_spc(Some(detail()));
    both.alarms[0].limit_kind = Some(edge_wire::LimitKind::High);
    let back = decode(&encode(&both).unwrap(), &Limits::default()).unwrap();
    assert_eq!(back.alarms[0].spc, Some(detail()));
    assert_eq!(back.alarms[0].limit_kind, Some(edge_wire::LimitKind::High));
    let with_kind = document(&both);
    assert!(with_kind.windows(3).any(|w| w == [0x02, 0x86, 0x07]));

    // The 9th [1, "up"]: not a limit kind.
    let mut ten = doc.clone();
    ten.splice(at..at + 1, [0x82, 0x01, 0x62, b'u', b'p']);
    let sealed = envelope::seal(&ten).unwrap();
    let e = decode(&sealed, &Limits::default()).unwrap_err();
    assert_eq!(e.reason(), "malformed", "{e}");
    assert!(e.to_string().contains("limit_kind"), "{e}");
}

#[test]
fn versions_before_v6_cannot_carry_it() {
    let e = encode_version(&with_spc(Some(detail())), 5).unwrap_err();
    assert!(e.to_string().contains("SPC detail"), "{e}");
    assert!(encode_version(&with_spc(None), 5).is_ok());
}
