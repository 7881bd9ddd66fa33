//! Report by exception on the wire: a v6 series entry with a 5th element
//! (`[deadband, max_silence_ms]`) round-trips; an entry without it decodes
//! as "every reading sent" (`reporting: None`), so every batch written
//! before the field still reads the same; a version before v6 cannot carry
//! it; a description no consumer could use is refused both ways.

use edge_wire::codec::{encode_version, envelope};
use edge_wire::{decode, encode, Limits, Reporting, WireError};
use proptest::prelude::*;

use crate::support::sample_batch;

fn reporting(deadband: f64, max_silence_ms: u64) -> Reporting {
    Reporting {
        deadband,
        max_silence_ms,
    }
}

#[test]
fn a_reported_series_round_trips_and_the_others_stay_unmarked() {
    let mut batch = sample_batch(50);
    batch.series[0].reporting = Some(reporting(0.05, 60_000));
    let back = decode(&encode(&batch).unwrap(), &Limits::default()).unwrap();
    assert_eq!(back, batch);
    assert_eq!(back.series[0].reporting, Some(reporting(0.05, 60_000)));
    assert!(back.series[1..].iter().all(|s| s.reporting.is_none()));
}

/// Guards against the field changing the bytes of batches that do not use
/// it: without report by exception the v6 document is the one written
/// before the field existed (4-element series entries, `0x84`).
#[test]
fn a_batch_without_it_keeps_four_element_series_entries() {
    let batch = sample_batch(3);
    let bytes = encode(&batch).unwrap();
    let (_, frame) = envelope::open(&bytes, &Limits::default()).unwrap();
    let doc = envelope::decompress(frame, &Limits::default()).unwrap();
    let mut reported = batch.clone();
    reported.series[0].reporting = Some(reporting(1.0, 1_000));
    let rbytes = encode(&reported).unwrap();
    let (_, rframe) = envelope::open(&rbytes, &Limits::default()).unwrap();
    let rdoc = envelope::decompress(rframe, &Limits::default()).unwrap();
    // The reported document is the plain one plus array(5) instead of
    // array(4) and the 2-element array [f64 (9 bytes), uint (3 bytes)].
    assert_eq!(rdoc.len(), doc.len() + 1 + 9 + 3);
    assert!(decode(&bytes, &Limits::default())
        .unwrap()
        .series
        .iter()
        .all(|s| s.reporting.is_none()));
}

#[test]
fn versions_before_v6_cannot_carry_it() {
    let mut batch = sample_batch(3);
    batch.series[1].reporting = Some(reporting(0.5, 60_000));
    let e = encode_version(&batch, 5).unwrap_err();
    assert!(
        e.to_string().contains("cannot say that series") && e.to_string().contains("v5"),
        "{e}"
    );
}

#[test]
fn an_unusable_description_is_refused_by_encode() {
    for (r, says) in [
        (reporting(-1.0, 1_000), "deadband -1 must be"),
        (reporting(f64::NAN, 1_000), "deadband NaN must be"),
        (reporting(0.0, 0), "max_silence_ms must be above 0"),
    ] {
        let mut batch = sample_batch(3);
        batch.series[0].reporting = Some(r);
        match encode(&batch) {
            Err(WireError::Invalid(m)) => assert!(m.contains(says), "{m}"),
            other => panic!("{r:?}: {other:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_reporting_round_trips(deadband in 0.0f64..1e12, ms in 1u64..u64::MAX, which in 0usize..4) {
        let mut batch = sample_batch(5);
        let i = which % batch.series.len();
        batch.series[i].reporting = Some(reporting(deadband, ms));
        let back = decode(&encode(&batch).unwrap(), &Limits::default()).unwrap();
        prop_assert_eq!(back, batch);
    }
}
