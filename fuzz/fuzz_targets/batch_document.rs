//! CBOR documents, sealed into a valid envelope first: random bytes rarely
//! get past the zstd checksum, so this target spends its time in the CBOR
//! reader and validation instead.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|document: &[u8]| {
    // Sealed as the version the document's shape says (a 6-element top
    // array is v6 when its header's version byte says 6, else v5 with
    // device events; a 5-element one v3 with gaps; anything else v2), so
    // the corpus of v2 and v6 documents and mutations towards v3 and v5
    // all reach the reader, the v6 value codings included.
    let version = match (document.first(), document.get(2)) {
        (Some(&0x86), Some(&0x06)) => 6,
        (Some(&0x86), _) => 5,
        (Some(&0x85), _) => 3,
        _ => 2,
    };
    if let Ok(body) = edge_wire::codec::envelope::seal_version(document, version) {
        common::decode_and_validate(&body);
    }
});
