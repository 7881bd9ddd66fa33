//! Arbitrary bytes into the firmware-shim streaming decoder, as the agent's
//! frames source reads them from a serial line. Checks, beyond "never
//! panics": an outcome only at a delimiter; every decoded message re-encodes
//! to a frame that decodes to the same message; after the input and one
//! delimiter, a known frame decodes (resynchronisation).
#![no_main]

use firmware_shim::frame::{encode, DELIMITER};
use firmware_shim::{Decoder, Message, MAX_ENCODED};

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    let mut d = Decoder::new();
    for &b in bytes {
        if let Some(out) = d.push(b) {
            assert_eq!(b, DELIMITER, "outcome away from a delimiter");
            if let Ok(msg) = out {
                let mut w = [0u8; MAX_ENCODED];
                let n = encode(&msg, &mut w).expect("a decoded message re-encodes");
                let mut again = Decoder::new();
                let (used, back) = again.feed(&w[..n]);
                assert_eq!(used, n);
                // NaN != NaN: compare the encodings, not the values.
                let back = back.expect("one outcome").expect("re-decodes");
                let mut w2 = [0u8; MAX_ENCODED];
                let n2 = encode(&back, &mut w2).expect("re-encodes");
                assert_eq!(&w[..n], &w2[..n2]);
            }
        }
    }
    let probe = Message::Heartbeat { ticks: 300 };
    let mut w = [0u8; MAX_ENCODED];
    let n = encode(&probe, &mut w).expect("fits");
    // Whatever the input's unterminated tail was, it ends here.
    let _ = d.push(DELIMITER);
    let (_, out) = d.feed(&w[..n]);
    assert_eq!(out, Some(Ok(probe)), "no resync after the input and one delimiter");
});
