//! CBOR documents, sealed into a valid envelope first: random bytes rarely
//! get past the zstd checksum, so this target spends its time in the CBOR
//! reader and validation instead.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|document: &[u8]| {
    if let Ok(body) = edge_wire::codec::envelope::seal(document) {
        common::decode_and_validate(&body);
    }
});
