//! Raw request bodies, exactly as `POST /v1/batches` receives them.
#![no_main]

mod common;

libfuzzer_sys::fuzz_target!(|body: &[u8]| common::decode_and_validate(body));
