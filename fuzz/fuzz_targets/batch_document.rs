//! CBOR documents, sealed into a valid envelope first: random bytes rarely
//! get past the zstd checksum, so this target spends its time in the CBOR
//! reader and validation instead.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|document: &[u8]| {
    // Sealed as the version the document's shape says (a 6-element top
    // array is v5 with device events, a 5-element one v3 with gaps,
    // anything else v2), so the corpus of v2 documents and mutations
    // towards v3 and v5 all reach the reader.
    let version = match document.first() {
        Some(&0x86) => 5,
        Some(&0x85) => 3,
        _ => 2,
    };
    if let Ok(body) = edge_wire::codec::envelope::seal_version(document, version) {
        common::decode_and_validate(&body);
    }
});
