//! Format v10: v8 plus the alarm state `rebaselined` (code 3). A batch
//! with such an event is written in v10 and only in v10 (no older version
//! can say it, and v10 has no referenced form); every other batch is still
//! written in v8, byte for byte as before; a v8 document with state 3 is
//! malformed, a v10 one is read.

use edge_wire::codec::{encode_version, envelope, reference};
use edge_wire::{decode, encode, encoded_version, AlarmState, Batch, Limits, SpcDetail};

use crate::support::sample_batch;

/// The sample batch, its first alarm a rebaseline of an SPC test that
/// carries the dropped baseline.
fn rebaselined() -> Batch {
    let mut batch = sample_batch(10);
    batch.alarms.truncate(1);
    batch.alarms[0].state = AlarmState::Rebaselined;
    batch.alarms[0].spc = Some(SpcDetail {
        test: 2,
        centre: 32.0,
        sigma: 0.5,
        lower: 31.0,
        upper: 33.0,
        statistic: f64::NAN,
    });
    batch
}

#[test]
fn a_rebaseline_round_trips_in_v10_and_nothing_else_needs_it() {
    let batch = rebaselined();
    assert!(batch.needs_v10());
    let bytes = encode(&batch).unwrap();
    assert_eq!(encoded_version(&bytes).unwrap(), 10);
    let back = decode(&bytes, &Limits::default()).unwrap();
    assert_eq!(back, batch);
    assert_eq!(back.alarms[0].state.as_str(), "rebaselined");

    // The same batch with a raise instead: v8, the bytes of encode_version(8).
    let mut plain = batch.clone();
    plain.alarms[0].state = AlarmState::Raised;
    assert!(!plain.needs_v10());
    let bytes = encode(&plain).unwrap();
    assert_eq!(encoded_version(&bytes).unwrap(), 8);
    assert_eq!(bytes, encode_version(&plain, 8).unwrap());
}

#[test]
fn no_older_version_carries_it_and_it_has_no_referenced_form() {
    let batch = rebaselined();
    assert_eq!(batch.legacy_version(), 10);
    for v in [2, 3, 4, 5, 6, 8] {
        let e = encode_version(&batch, v).unwrap_err();
        assert_eq!(e.reason(), "invalid", "v{v}: {e}");
        assert!(e.to_string().contains("rebaselined"), "v{v}: {e}");
    }
    for v in [7, 9, 11] {
        assert!(encode_version(&batch, v).is_err(), "v{v} is not written");
    }
    let bytes = encode(&batch).unwrap();
    let e = reference::shorten(&bytes, &Limits::default()).unwrap_err();
    assert!(e.to_string().contains("v10"), "{e}");
}

/// The document of a v10 batch sealed as v8 (the header's version patched
/// too): state code 3 is not a v8 state.
#[test]
fn state_three_in_a_v8_document_is_malformed() {
    let bytes = encode(&rebaselined()).unwrap();
    let (_, frame) = envelope::open(&bytes, &Limits::default()).unwrap();
    let mut doc = envelope::decompress(frame, &Limits::default()).unwrap();
    // [[version (0x0a) ...: the header's version is the 3rd byte.
    assert_eq!(&doc[..3], &[0x86, 0x86, 0x0a]);
    doc[2] = 0x08;
    let e = decode(
        &envelope::seal_version(&doc, 8).unwrap(),
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(e.reason(), "malformed", "{e}");
    assert!(
        e.to_string()
            .contains("state code 3, expected 0 (raised), 1 (cleared) or 2 (acknowledged)"),
        "{e}"
    );
    // Sealed as v10 again, it reads.
    doc[2] = 0x0a;
    let back = decode(
        &envelope::seal_version(&doc, 10).unwrap(),
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(back.alarms[0].state, AlarmState::Rebaselined);
}
