//! Series-table references (formats v7 and v9): a v6 or v8 batch without
//! its dictionary, naming it by content id. Checked from outside the codec:
//! the table id is recomputed here with SHA-256 over the dictionary element
//! as the CBOR of the document holds it, the short form decodes to the very batch of
//! the self-contained one, a reader without the table or with another one
//! refuses it with a specific error, and a changed series is a new id.

use edge_wire::codec::reference::{
    decode_bound, decode_parts, expand, hex, parse_hex, referenced_id, shorten, table_id,
    REFERENCE_PREFIX_LEN,
};
use edge_wire::codec::{encode_version, envelope};
use edge_wire::{decode, encode, encoded_version, Limits, Reporting, WireError};
use minicbor::Decoder;

use crate::support::{peak_allocation, sample_batch};

/// The dictionary element's bytes in the v6 document of `body`, found with
/// minicbor directly (not with the code under test).
fn dictionary_bytes(body: &[u8]) -> Vec<u8> {
    let doc = zstd::decode_all(&body[envelope::PREFIX_LEN..]).unwrap();
    let mut d = Decoder::new(&doc);
    assert_eq!(d.array().unwrap(), Some(6));
    d.skip().unwrap();
    let start = d.position();
    d.skip().unwrap();
    doc[start..d.position()].to_vec()
}

fn sha256_16(bytes: &[u8]) -> [u8; 16] {
    use sha2::Digest as _;
    let full = sha2::Sha256::digest(bytes);
    full[..16].try_into().unwrap()
}

#[test]
fn the_short_form_names_the_dictionary_by_its_sha256_and_decodes_to_the_same_batch() {
    let batch = sample_batch(125);
    // (self-contained version, its referenced version): v7 holds a v6
    // document, v9 a v8 one.
    for (version, referenced) in [(6u16, 7u16), (8, 9)] {
        let full = encode_version(&batch, version).unwrap();
        let dictionary = dictionary_bytes(&full);
        let (table, short) = shorten(&full, &Limits::default()).unwrap();
        assert_eq!(table.bytes, dictionary);
        assert_eq!(table.id, sha256_16(&dictionary));
        assert_eq!(table_id(&dictionary), table.id);

        assert_eq!(&short[..4], b"EDGB");
        assert_eq!(short[4..6], referenced.to_be_bytes());
        assert_eq!(&short[6..REFERENCE_PREFIX_LEN], &table.id);
        assert_eq!(referenced_id(&short).unwrap(), Some(table.id));
        assert_eq!(referenced_id(&full).unwrap(), None);
        assert_eq!(encoded_version(&short).unwrap(), referenced);

        let decoded = decode_parts(&short, &Limits::default(), Some(&table.bytes)).unwrap();
        assert_eq!(decoded.batch, batch);
        assert_eq!(decoded.table.as_ref(), Some(&table));
        // The self-contained form says the same table.
        let inline = decode_parts(&full, &Limits::default(), None).unwrap();
        assert_eq!(inline.batch, batch);
        assert_eq!(inline.table, Some(table));
        // Fewer bytes: 1000 readings of 8 series with names, units and 4 tags.
        assert!(
            short.len() + 100 < full.len(),
            "short {} full {}",
            short.len(),
            full.len()
        );
    }
    // v6 and v8 hold the same dictionary element: one table id for both.
    let v6 = shorten(&encode_version(&batch, 6).unwrap(), &Limits::default()).unwrap();
    let v8 = shorten(&encode(&batch).unwrap(), &Limits::default()).unwrap();
    assert_eq!(v6.0, v8.0);
}

/// The envelope's referenced version promises the document's version: a
/// v9 frame holding a v6 document (or v7 a v8 one) is malformed, named.
#[test]
fn a_referenced_version_must_match_the_document_it_holds() {
    let batch = sample_batch(20);
    for (version, wrong) in [(6u16, 9u16), (8, 7)] {
        let (table, mut short) = shorten(
            &encode_version(&batch, version).unwrap(),
            &Limits::default(),
        )
        .unwrap();
        short[4..6].copy_from_slice(&wrong.to_be_bytes());
        let err = decode_parts(&short, &Limits::default(), Some(&table.bytes)).unwrap_err();
        assert_eq!(err.reason(), "malformed", "{err}");
        let expanded = if wrong == 9 { 8 } else { 6 };
        assert!(
            err.to_string().contains(&format!(
                "header says format version {version}, the envelope says {expanded}"
            )),
            "{err}"
        );
    }
}

#[test]
fn without_the_table_or_with_another_one_the_batch_is_refused_by_name() {
    let batch = sample_batch(20);
    let (table, short) = shorten(&encode(&batch).unwrap(), &Limits::default()).unwrap();
    let limits = Limits::default();

    let err = decode(&short, &limits).unwrap_err();
    assert_eq!(err.reason(), "unknown_series_table");
    assert!(
        matches!(err, WireError::UnknownTable { id } if id == table.id),
        "{err}"
    );
    assert!(err.to_string().contains(&hex(&table.id)), "{err}");
    let err = decode_parts(&short, &limits, None).unwrap_err();
    assert_eq!(err.reason(), "unknown_series_table");

    let mut other = sample_batch(20);
    other.series[0].unit = "mg".into();
    let (other_table, _) = shorten(&encode(&other).unwrap(), &limits).unwrap();
    assert_ne!(other_table.id, table.id, "a changed unit is a new table");
    let err = decode_parts(&short, &limits, Some(&other_table.bytes)).unwrap_err();
    assert_eq!(err.reason(), "invalid", "{err}");
}

#[test]
fn every_change_to_the_series_is_a_new_id_and_readings_are_not_part_of_it() {
    let limits = Limits::default();
    let id = |b: &edge_wire::Batch| shorten(&encode(b).unwrap(), &limits).unwrap().0.id;
    let base = sample_batch(10);
    let mut more_readings = sample_batch(40);
    more_readings.seq = base.seq + 7;
    assert_eq!(id(&base), id(&more_readings), "same series, other readings");

    let mut tag = base.clone();
    tag.series[3].tags.insert("line".into(), "3".into());
    let mut renamed = base.clone();
    renamed.series[1].name.push('x');
    let mut reported = base.clone();
    reported.series[2].reporting = Some(Reporting {
        deadband: 0.5,
        max_silence_ms: 60_000,
    });
    let mut fewer = base.clone();
    fewer.series.pop();
    let ids = [id(&base), id(&tag), id(&renamed), id(&reported), id(&fewer)];
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            assert_ne!(a, b);
        }
    }
}

#[test]
fn only_a_v6_batch_is_shortened_and_a_cut_prefix_is_malformed() {
    let limits = Limits::default();
    let v2 = edge_wire::codec::encode_version(&sample_batch(5), 2).unwrap();
    assert_eq!(shorten(&v2, &limits).unwrap_err().reason(), "invalid");
    assert_eq!(decode_parts(&v2, &limits, None).unwrap().table, None);

    let (table, short) = shorten(&encode(&sample_batch(5)).unwrap(), &limits).unwrap();
    for cut in [6, 10, REFERENCE_PREFIX_LEN - 1] {
        let err = referenced_id(&short[..cut]).unwrap_err();
        assert_eq!(err.reason(), "malformed", "cut at {cut}: {err}");
    }
    // The frame cut short: a decompression error, not a panic.
    let err = decode_parts(&short[..short.len() - 3], &limits, Some(&table.bytes)).unwrap_err();
    assert_eq!(err.reason(), "decompress", "{err}");
}

#[test]
fn the_expanded_document_is_held_to_the_decompressed_limit() {
    let batch = sample_batch(50);
    let (table, short) = shorten(&encode(&batch).unwrap(), &Limits::default()).unwrap();
    let doc = zstd::decode_all(&short[REFERENCE_PREFIX_LEN..]).unwrap();
    let exact = Limits {
        max_decompressed_bytes: doc.len() + table.bytes.len(),
        ..Limits::default()
    };
    assert!(expand(&doc, &table.bytes, &exact).is_ok());
    assert_eq!(
        decode_parts(&short, &exact, Some(&table.bytes))
            .unwrap()
            .batch,
        batch
    );
    let one_less = Limits {
        max_decompressed_bytes: exact.max_decompressed_bytes - 1,
        ..Limits::default()
    };
    let err = decode_parts(&short, &one_less, Some(&table.bytes)).unwrap_err();
    assert!(err.is_too_large(), "{err}");

    // A table of junk that hashes right is refused as malformed CBOR.
    let junk = vec![0xff; 64];
    let (_, real_short) = shorten(&encode(&batch).unwrap(), &Limits::default()).unwrap();
    let mut forged = real_short[..6].to_vec();
    forged.extend_from_slice(&table_id(&junk));
    forged.extend_from_slice(&real_short[REFERENCE_PREFIX_LEN..]);
    let err = decode_parts(&forged, &Limits::default(), Some(&junk)).unwrap_err();
    assert_eq!(err.reason(), "malformed", "{err}");
}

#[test]
fn decode_bound_covers_what_decoding_a_referenced_batch_allocates() {
    let batch = sample_batch(500);
    let (table, short) = shorten(&encode(&batch).unwrap(), &Limits::default()).unwrap();
    let limits = Limits::default();
    let bound = decode_bound(&short, table.bytes.len(), &limits).unwrap();
    let (decoded, peak) =
        peak_allocation(|| decode_parts(&short, &limits, Some(&table.bytes)).unwrap());
    assert_eq!(decoded.batch, batch);
    assert!(peak <= bound, "peak {peak} over the bound {bound}");
    // The self-contained form, whose table decode_parts copies out too.
    let full = encode(&batch).unwrap();
    let bound = decode_bound(&full, 0, &limits).unwrap();
    let (decoded, peak) = peak_allocation(|| decode_parts(&full, &limits, None).unwrap());
    assert_eq!(decoded.table, Some(table));
    assert!(peak <= bound, "v6: peak {peak} over the bound {bound}");
}

#[test]
fn table_ids_print_and_parse_as_32_hex_digits() {
    let id = table_id(b"\x80");
    let text = hex(&id);
    assert_eq!(text.len(), 32);
    assert_eq!(text, text.to_lowercase());
    assert_eq!(parse_hex(&text), Some(id));
    assert_eq!(parse_hex(&text.to_uppercase()), Some(id));
    assert_eq!(parse_hex(&text[1..]), None);
    assert_eq!(parse_hex(&format!("{}zz", &text[..30])), None);
    assert_eq!(parse_hex(""), None);
}

proptest::proptest! {
    /// Whatever bytes follow a referenced batch's prefix, decoding with
    /// its table is an error or the batch, never a panic, and never
    /// reserves beyond the bound.
    #[test]
    fn corrupted_referenced_batches_fail_cleanly(
        flips in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 1..8),
    ) {
        let batch = sample_batch(40);
        let (table, mut short) = shorten(&encode(&batch).unwrap(), &Limits::default()).unwrap();
        for (at, byte) in flips {
            let i = REFERENCE_PREFIX_LEN + at % (short.len() - REFERENCE_PREFIX_LEN);
            short[i] ^= byte | 1;
        }
        let limits = Limits::default();
        let bound = decode_bound(&short, table.bytes.len(), &limits);
        let (result, peak) = peak_allocation(|| decode_parts(&short, &limits, Some(&table.bytes)));
        if let (Ok(bound), Err(_)) = (bound, &result) {
            proptest::prop_assert!(peak <= bound, "peak {} over {}", peak, bound);
        }
    }
}
