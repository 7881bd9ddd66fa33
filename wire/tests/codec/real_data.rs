//! Wire sizes of the real data sets in `testdata/`, pinned: the v8 and v6
//! value columns must keep SKAB valve1 at or below 1.55 bytes per reading and NAB
//! machine temperature at or below 4.0, in batches of 8192 readings, and
//! SKAB valve1 with a series-table reference (v7) at 1000 at or below 1.65, as
//! `scripts/bench --only wire` measures them (`docs/BENCHMARKS.md`). Sizes
//! are deterministic, so this is no timing test. The data sets are loaded
//! and cut by the benchmark's own code (`bench/src/data.rs`).

use edge_wire::codec::encode_version;
use edge_wire::{decode, encode, Limits};

#[path = "../../../bench/src/data.rs"]
#[allow(dead_code)]
mod data;

fn data_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata"))
}

/// Bytes per reading of `dataset` in batches of `size`, in format `version`,
/// after checking that every batch decodes to itself.
fn bytes_per_reading(dataset: &data::Dataset, size: usize, version: u16) -> f64 {
    let mut bytes = 0;
    let mut readings = 0;
    for batch in dataset.batches(size) {
        let encoded = encode_version(&batch, version).expect("encode");
        assert_eq!(decode(&encoded, &Limits::default()).expect("decode"), batch);
        bytes += encoded.len();
        readings += batch.reading_count();
    }
    bytes as f64 / readings as f64
}

/// Check that `dataset` in batches of 8192 costs at most `limit` bytes a
/// reading in v8 and in v6, and show them beside v5 (the legacy coding, as
/// v2).
fn assert_at_most(dataset: &data::Dataset, limit: f64) {
    let v8 = bytes_per_reading(dataset, 8192, 8);
    let v6 = bytes_per_reading(dataset, 8192, 6);
    let v5 = bytes_per_reading(dataset, 8192, 2);
    eprintln!(
        "{} at 8192: v8 {v8:.3} B/reading, v6 {v6:.3}, v5 {v5:.3}",
        dataset.label
    );
    assert!(
        v8 <= limit,
        "{}: v8 {v8:.3} bytes per reading",
        dataset.label
    );
    assert!(
        v6 <= limit,
        "{}: v6 {v6:.3} bytes per reading",
        dataset.label
    );
}

#[test]
fn skab_valve1_at_8192_is_at_most_1_55_bytes_per_reading() {
    assert_at_most(
        &data::load_skab(&data_dir()).expect("testdata/skab/valve1"),
        1.55,
    );
}

#[test]
fn nab_machine_temperature_at_8192_is_at_most_4_bytes_per_reading() {
    assert_at_most(&data::load_nab(&data_dir()).expect("testdata/nab"), 4.0);
}

#[test]
fn encode_writes_v8() {
    let nab = data::load_nab(&data_dir()).expect("testdata/nab");
    let batch = &nab.batches(256)[0];
    assert_eq!(
        edge_wire::encoded_version(&encode(batch).unwrap()).unwrap(),
        8
    );
}

/// Bytes per reading of `dataset` in batches of `size` in format `version`
/// (6 or 8) sent with a series-table reference (format v7, as the agent
/// sends once the relay holds the table), after checking each decodes to
/// itself with its table.
fn referenced_bytes_per_reading(dataset: &data::Dataset, size: usize, version: u16) -> f64 {
    use edge_wire::codec::reference::{decode_parts, shorten};
    let limits = Limits::default();
    let (mut bytes, mut readings) = (0, 0);
    for batch in dataset.batches(size) {
        let (table, short) = shorten(&encode_version(&batch, version).unwrap(), &limits).unwrap();
        let back = decode_parts(&short, &limits, Some(&table.bytes)).unwrap();
        assert_eq!(back.batch, batch);
        bytes += short.len();
        readings += batch.reading_count();
    }
    bytes as f64 / readings as f64
}

/// The target: 1.65 at 1000 with the reference (from 1.89
/// self-contained in v6). v8 reaches it with the range coder's counted
/// adaptation (the adaptive models of a 125-value series learn in a few
/// values instead of a few dozen) and the flush that keeps one or two
/// bytes instead of five per range-coded stream; v6 with the same flush
/// is pinned where it is, so it does not get worse (`docs/BENCHMARKS.md`,
/// "Wire format").
#[test]
fn skab_valve1_at_1000_with_the_table_reference_is_at_most_1_65_bytes_per_reading() {
    let skab = data::load_skab(&data_dir()).expect("testdata/skab/valve1");
    let referenced = referenced_bytes_per_reading(&skab, 1000, 8);
    let referenced_v6 = referenced_bytes_per_reading(&skab, 1000, 6);
    let inline = bytes_per_reading(&skab, 1000, 8);
    eprintln!(
        "SKAB valve1 at 1000: v7 of v8 {referenced:.3} B/reading, v7 of v6 {referenced_v6:.3}, v8 {inline:.3}"
    );
    assert!(referenced <= 1.65, "{referenced:.3} bytes per reading");
    assert!(
        referenced_v6 <= 1.69,
        "{referenced_v6:.3} bytes per reading"
    );
    assert!(
        inline - referenced >= 0.15,
        "the table was about 0.18 a reading"
    );
}
