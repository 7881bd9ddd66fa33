//! Property test of the decode-and-validate path from raw request bytes,
//! through the real relay over HTTP: random bytes, and valid bodies mutated
//! (bit flips, truncation, splices) either as sent or inside the zstd frame
//! (the CBOR document, sealed again, so the mutation reaches the CBOR
//! reader and validation instead of stopping at the zstd checksum).
//!
//! Properties: the relay never answers 5xx or drops the connection; every
//! refusal is a 4xx with a JSON `message`; an unmutated body is accepted.
//! After the run `/healthz` still answers.

use std::collections::BTreeMap;
use std::sync::Mutex;

use edge_wire::codec::envelope::{decompress, seal_version, PREFIX_LEN};
use edge_wire::Limits;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::support::{batch, config, encoded, start, Running, TOKEN_1};

/// How one body is broken.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip bit `bit` of the byte at `at` (modulo the length).
    Flip { at: usize, bit: u8 },
    /// Keep only the first `len` bytes (modulo the length).
    Truncate { len: usize },
    /// Replace `bytes.len()` bytes from `at` with `bytes` (or append).
    Splice { at: usize, bytes: Vec<u8> },
    /// Insert a copy of the region `from..from+len` at `at`.
    Repeat { from: usize, len: usize, at: usize },
}

impl Mutation {
    fn apply(&self, body: &mut Vec<u8>) {
        let n = body.len().max(1);
        match self {
            Mutation::Flip { at, bit } => {
                if !body.is_empty() {
                    body[at % n] ^= 1 << (bit % 8);
                }
            }
            Mutation::Truncate { len } => body.truncate(len % n),
            Mutation::Splice { at, bytes } => {
                let at = at % n;
                let end = (at + bytes.len()).min(body.len());
                body.splice(at..end, bytes.iter().copied());
            }
            Mutation::Repeat { from, len, at } => {
                let from = from % n;
                let end = (from + len).min(body.len());
                let copy = body[from.min(body.len())..end].to_vec();
                let at = (at % n).min(body.len());
                body.splice(at..at, copy);
            }
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        any::<usize>().prop_map(|len| Mutation::Truncate { len }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Splice { at, bytes }),
        (any::<usize>(), 1usize..64, any::<usize>()).prop_map(|(from, len, at)| Mutation::Repeat {
            from,
            len,
            at
        }),
    ]
}

/// One request body to post.
#[derive(Debug, Clone)]
enum Body {
    /// Arbitrary bytes.
    Random(Vec<u8>),
    /// A valid body with mutations applied to the bytes as sent.
    Outer(u64, Vec<Mutation>),
    /// A valid body whose CBOR document is mutated, then sealed again.
    Inner(u64, Vec<Mutation>),
    /// A valid body, untouched.
    Valid(u64),
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512).prop_map(Body::Random),
        (1u64..1000, prop::collection::vec(mutation(), 1..4))
            .prop_map(|(seq, m)| Body::Outer(seq, m)),
        (1u64..1000, prop::collection::vec(mutation(), 1..4))
            .prop_map(|(seq, m)| Body::Inner(seq, m)),
        (1u64..1000).prop_map(Body::Valid),
    ]
}

impl Body {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Body::Random(bytes) => bytes.clone(),
            Body::Valid(seq) => encoded(&batch("gw-1", *seq)),
            Body::Outer(seq, mutations) => {
                let mut bytes = encoded(&batch("gw-1", *seq));
                mutations.iter().for_each(|m| m.apply(&mut bytes));
                bytes
            }
            Body::Inner(seq, mutations) => {
                let sealed = encoded(&batch("gw-1", *seq));
                // The envelope's fixed prefix, then the zstd frame.
                let mut doc = decompress(&sealed[PREFIX_LEN..], &Limits::default())
                    .expect("a valid body decompresses");
                mutations.iter().for_each(|m| m.apply(&mut doc));
                // Sealed as the version it was written in (v2 without gaps),
                // so the damage reaches the CBOR reader.
                let version = edge_wire::encoded_version(&sealed).expect("a valid prefix");
                seal_version(&doc, version).expect("sealing any document works")
            }
        }
    }
}

async fn check(
    relay: &Running,
    body: &Body,
    statuses: &Mutex<BTreeMap<u16, u32>>,
) -> Result<(), TestCaseError> {
    let response = relay
        .client
        .post(relay.url("/v1/batches"))
        .bearer_auth(TOKEN_1)
        .body(body.bytes())
        .send()
        .await
        .map_err(|e| TestCaseError::fail(format!("request failed: {e}")))?;
    let status = response.status().as_u16();
    *statuses.lock().unwrap().entry(status).or_default() += 1;
    let text = response.text().await.unwrap_or_default();
    if let Body::Valid(_) = body {
        prop_assert_eq!(status, 200, "{}", text);
        return Ok(());
    }
    prop_assert!(
        status == 200 || (400..500).contains(&status),
        "status {} for {:?}: {}",
        status,
        body,
        text
    );
    if status != 200 {
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| TestCaseError::fail(format!("not JSON ({e}): {text}")))?;
        let message = json["message"].as_str().unwrap_or_default();
        prop_assert!(!message.is_empty(), "no message: {}", text);
    }
    Ok(())
}

#[test]
fn random_and_mutated_bodies_get_a_4xx_with_a_message_and_valid_ones_200() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut cfg, dir) = config();
    // Hundreds of requests from one gateway in a few seconds: fairness is
    // not what this test is about (see fairness.rs).
    cfg.fairness.requests_per_sec = 1_000_000;
    cfg.fairness.request_burst = 1_000_000;
    let relay = rt.block_on(start(cfg, dir));
    let mut runner = TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    });
    let statuses = Mutex::new(BTreeMap::new());
    let result = runner.run(&body(), |body| rt.block_on(check(&relay, &body, &statuses)));
    let health = rt.block_on(async {
        relay
            .client
            .get(relay.ops_url("/healthz"))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    rt.block_on(relay.stop());
    result.unwrap();
    assert_eq!(health.unwrap(), 200);
    // The run reached both ends: accepted bodies and refused ones.
    let statuses = statuses.into_inner().unwrap();
    println!("statuses: {statuses:?}");
    assert!(
        statuses.contains_key(&200) && statuses.contains_key(&400),
        "{statuses:?}"
    );
}
