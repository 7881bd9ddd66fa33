//! CBOR documents, sealed into a valid envelope first: random bytes rarely
//! get past the zstd checksum, so this target spends its time in the CBOR
//! reader and validation instead.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|document: &[u8]| {
    // Sealed as the version the document's shape says (a 5-element top
    // array is v3 with gaps, anything else v2), so the corpus of v2
    // documents and mutations towards v3 both reach the reader.
    let version = if document.first() == Some(&0x85) { 3 } else { 2 };
    if let Ok(body) = edge_wire::codec::envelope::seal_version(document, version) {
        common::decode_and_validate(&body);
    }
});
