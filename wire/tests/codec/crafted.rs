//! Hand-written CBOR documents in a valid envelope: declared counts and
//! lengths beyond the limits or beyond the input, and structural errors.
//! Each case states the exact error it must produce.

use std::convert::Infallible;

use edge_wire::codec::envelope::seal_version;
use minicbor::Encoder;

use crate::support::{decode_default, decode_err_measured};

type Enc = Encoder<Vec<u8>>;
type Written = Result<(), minicbor::encode::Error<Infallible>>;

/// A sealed v1 batch (valid envelope) around a hand-written CBOR document:
/// v1 is still read, and its checks are the ones v2 builds on.
fn sealed_doc(write: impl FnOnce(&mut Enc) -> Written) -> Vec<u8> {
    let mut e = Encoder::new(Vec::new());
    write(&mut e).expect("writing to a Vec");
    seal_version(&e.into_writer(), 1).expect("seal")
}

fn header(e: &mut Enc, readings: u64) -> Written {
    e.array(5)?
        .u16(1)?
        .str("gw")?
        .u64(1)?
        .i64(0)?
        .u64(readings)?;
    Ok(())
}

fn series_entry(e: &mut Enc, id: u32, name: &str) -> Written {
    e.array(4)?.u32(id)?.str(name)?.str("")?.map(0)?;
    Ok(())
}

/// One reading of value 0 (decimal, no exceptions) at `created_us`, good.
fn one_reading(e: &mut Enc) -> Written {
    e.array(6)?
        .u64(1)?
        .bytes(&[0])?
        .u8(0)?
        .u8(0)?
        .bytes(&[0, 0])?
        .bytes(&[0, 1])?;
    Ok(())
}

#[test]
fn declared_counts_over_limits_are_too_large() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            sealed_doc(|e| {
                e.array(4)?;
                header(e, 5_000_000)
            }),
            "batch declares 5000000 readings, limit is 1000000 (max_readings)",
        ),
        (
            sealed_doc(|e| {
                e.array(4)?;
                header(e, 0)?;
                e.array(1 << 40)?;
                Ok(())
            }),
            "batch declares 1099511627776 series, limit is 100000 (max_series)",
        ),
        (
            sealed_doc(|e| {
                e.array(4)?.array(5)?.u16(1)?.str_len(1 << 60)?;
                Ok(())
            }),
            "gateway id is 1152921504606846976 bytes, limit is 1024 (max_string_bytes)",
        ),
        (
            sealed_doc(|e| {
                e.array(4)?;
                header(e, 0)?;
                e.array(1)?.array(4)?.u32(1)?.str("s")?.str("")?.map(33)?;
                Ok(())
            }),
            "series 0 (\"s\") has 33 tags, limit is 32 (max_tags)",
        ),
        (
            sealed_doc(|e| {
                e.array(4)?;
                header(e, 0)?;
                e.array(0)?.array(0)?.array(1 << 33)?;
                Ok(())
            }),
            "batch declares 8589934592 alarms, limit is 100000 (max_alarms)",
        ),
    ];
    for (bytes, message) in cases {
        let (err, peak) = decode_err_measured(&bytes);
        assert_eq!(err.to_string(), message);
        assert!(err.is_too_large());
        assert_eq!(err.reason(), "too_large");
        assert!(peak < 64 << 10, "{message}: peak allocation {peak} bytes");
    }
}

#[test]
fn declared_counts_beyond_the_input_allocate_nothing_large() {
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            // 100000 series allowed, none present.
            sealed_doc(|e| {
                e.array(4)?;
                header(e, 0)?;
                e.array(100_000)?;
                Ok(())
            }),
            "series 0",
        ),
        (
            // A million readings declared, a three-byte timestamp column.
            sealed_doc(|e| {
                e.array(4)?;
                header(e, 1_000_000)?;
                e.array(1)?;
                series_entry(e, 1, "press.temp")?;
                e.array(1)?.array(6)?.u64(1_000_000)?.bytes(&[0, 2, 0])?;
                e.u8(0)?.u8(0)?.bytes(&[])?.bytes(&[])?;
                Ok(())
            }),
            "series 0 (\"press.temp\") timestamps column: 1000000 values declared, column ends after 3",
        ),
        (
            // A 200-byte string declared, 2 present.
            sealed_doc(|e| {
                e.array(4)?.array(5)?.u16(1)?.str_len(200)?;
                Ok(())
            }),
            "gateway id",
        ),
    ];
    for (bytes, message) in cases {
        let (err, peak) = decode_err_measured(&bytes);
        assert_eq!(err.reason(), "malformed", "{err}");
        assert!(err.to_string().contains(message), "{err}");
        assert!(peak < 64 << 10, "{message}: peak allocation {peak} bytes");
    }
}

#[test]
fn structural_errors_name_what_is_wrong() {
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            sealed_doc(|e| {
                e.begin_array()?;
                Ok(())
            }),
            "malformed",
            "document: indefinite-length array",
        ),
        (
            sealed_doc(|e| {
                e.array(4)?.array(5)?.u16(2)?;
                Ok(())
            }),
            "malformed",
            "header says format version 2, the envelope says 1",
        ),
        (
            sealed_doc(|e| {
                e.array(4)?;
                header(e, 0)?;
                e.array(2)?;
                series_entry(e, 7, "a")?;
                series_entry(e, 7, "b")?;
                e.array(2)?.array(0)?.array(0)?.array(0)?;
                Ok(())
            }),
            "invalid",
            "series id 7 appears more than once",
        ),
        (
            sealed_doc(|e| {
                e.array(4)?;
                header(e, 1)?;
                e.array(1)?;
                series_entry(e, 7, "a")?;
                e.array(1)?;
                one_reading(e)?;
                e.array(1)?.array(6)?.u32(8)?.str("r")?.u8(0)?.u64(0)?.u64(0)?.i64(0)?;
                Ok(())
            }),
            "invalid",
            "alarm 0 names series id 8, which is not in the batch",
        ),
        (
            sealed_doc(|e| {
                e.array(4)?;
                header(e, 1)?;
                e.array(1)?;
                series_entry(e, 7, "a")?;
                e.array(1)?;
                one_reading(e)?;
                e.array(0)?.u8(0)?;
                Ok(())
            }),
            "malformed",
            "1 bytes follow the CBOR document",
        ),
        (
            sealed_doc(|e| {
                e.array(4)?;
                header(e, 2)?;
                e.array(1)?;
                series_entry(e, 7, "a")?;
                e.array(1)?;
                one_reading(e)?;
                e.array(0)?;
                Ok(())
            }),
            "malformed",
            "header declares 2 readings, the series hold 1",
        ),
        (
            sealed_doc(|e| {
                e.array(4)?;
                header(e, 0)?;
                e.array(1)?;
                series_entry(e, 7, "a")?;
                e.array(1)?;
                one_reading(e)?;
                Ok(())
            }),
            "malformed",
            "series 0 (\"a\") reading count is 1, more than the 0 left of the 0 the header declares",
        ),
        (
            sealed_doc(|e| {
                e.array(4)?;
                header(e, 0)?;
                e.array(1)?.array(4)?.u32(1)?.str("s")?.str("")?.map(2)?;
                e.str("site")?.str("a")?.str("line")?.str("b")?;
                Ok(())
            }),
            "malformed",
            "series 0 (\"s\") tags: key \"line\" is not after \"site\"",
        ),
        (
            sealed_doc(|e| {
                e.array(4)?;
                header(e, 1)?;
                e.array(1)?;
                series_entry(e, 7, "a")?;
                e.array(1)?.array(6)?.u64(1)?.bytes(&[0])?.u8(1)?.u8(0)?.bytes(&[0x07])?;
                e.bytes(&[0, 1])?;
                Ok(())
            }),
            "malformed",
            "series 0 (\"a\") values column: 1 values declared, column ends after 0",
        ),
        (
            sealed_doc(|e| {
                e.array(4)?;
                header(e, 0)?;
                e.array(1)?.array(4)?.str("not an id")?;
                Ok(())
            }),
            "malformed",
            "series 0 id: unexpected type string",
        ),
    ];
    for (bytes, reason, message) in cases {
        let err = decode_default(&bytes).unwrap_err();
        assert_eq!(err.reason(), reason, "{message}: {err}");
        assert!(err.to_string().contains(message), "{err}");
        assert!(!err.is_too_large());
    }
}
