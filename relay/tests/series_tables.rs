//! Series-table references over HTTP: a relay answers a v6 batch with the
//! id of its series table (recomputed here with SHA-256 over the
//! dictionary as the document holds it), then takes batches that name the
//! table instead of carrying it, with the same readings in the sink; it
//! answers 409 `unknown_series_table` for a table it does not hold (another
//! gateway's, a relay with a fresh store) and still holds its tables after
//! a restart on the same data directory.

use edge_wire::codec::envelope;
use edge_wire::codec::reference::shorten;
use edge_wire::Limits;
use minicbor::Decoder;
use serde_json::Value;

use crate::support::{batch, config, encoded, start, TOKEN_1, TOKEN_2};

/// The series table's id, computed without the code under test.
fn table_id_of(v6: &[u8]) -> String {
    use sha2::Digest as _;
    let doc = zstd::decode_all(&v6[envelope::PREFIX_LEN..]).unwrap();
    let mut d = Decoder::new(&doc);
    d.array().unwrap();
    d.skip().unwrap();
    let start = d.position();
    d.skip().unwrap();
    let full = sha2::Sha256::digest(&doc[start..d.position()]);
    full[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn referenced(v6: &[u8]) -> Vec<u8> {
    shorten(v6, &Limits::default()).unwrap().1
}

fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{page}"))
}

/// The JSON lines of the file sink without the relay's arrival time.
fn lines_without_arrival(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            let o = v.as_object_mut().unwrap();
            o.remove("received");
            o.remove("received_us");
            v
        })
        .collect()
}

#[tokio::test]
async fn a_held_table_is_named_by_id_and_the_sink_gets_the_same_lines() {
    let (cfg, dir) = config();
    let relay = start(cfg, dir).await;
    let first = encoded(&batch("gw-1", 1));
    let id = table_id_of(&first);

    // Not held yet: 409, nothing stored, before any decoding.
    let response = relay.post(Some(TOKEN_1), referenced(&first)).await;
    assert_eq!(response.status(), 409);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "unknown_series_table");
    assert_eq!(error["reason"], "unknown_series_table");
    assert!(error["message"].as_str().unwrap().contains(&id), "{error}");
    assert_eq!(relay.file("readings.jsonl"), "");

    // Self-contained: delivered, and the answer names the table.
    let response = relay.post(Some(TOKEN_1), first.clone()).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["series_table"], id.as_str(), "{answer}");
    let after_first = relay.file("readings.jsonl");

    // The next batch names it: the same lines as it would have left inline.
    let second = encoded(&batch("gw-1", 2));
    assert_eq!(table_id_of(&second), id);
    let short = referenced(&second);
    assert!(short.len() < second.len());
    let response = relay.post(Some(TOKEN_1), short).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["series_table"], id.as_str());
    assert_eq!(answer["seq"], 2);
    let by_reference = relay.file("readings.jsonl")[after_first.len()..].to_owned();
    assert_eq!(
        lines_without_arrival(&by_reference),
        lines_without_arrival(&after_first.replace("\"batch_seq\":1", "\"batch_seq\":2"))
    );
    assert_eq!(
        by_reference.lines().count(),
        batch("gw-1", 2).reading_count()
    );

    // Another gateway does not get gw-1's table.
    let other = encoded(&batch("gw-2", 1));
    assert_eq!(table_id_of(&other), id, "the same series on both gateways");
    let response = relay.post(Some(TOKEN_2), referenced(&other)).await;
    assert_eq!(response.status(), 409);

    let page = relay.metrics().await;
    assert_eq!(metric(&page, "edge_relay_referenced_batches_total"), 1.0);
    assert_eq!(metric(&page, "edge_relay_series_tables_kept_total"), 1.0);
    assert_eq!(
        metric(
            &page,
            "edge_relay_rejected_total{status=\"409\",reason=\"unknown_series_table\"}"
        ),
        2.0
    );
    relay.stop().await;
}

#[tokio::test]
async fn tables_outlive_a_restart_and_a_resent_duplicate_is_still_one_batch() {
    let (cfg, dir) = config();
    let relay = start(cfg.clone(), dir).await;
    let first = encoded(&batch("gw-1", 1));
    assert_eq!(relay.post(Some(TOKEN_1), first.clone()).await.status(), 200);
    let dir = relay.stop().await;

    // Same data directory, new process state: the table comes from the file.
    let relay = start(cfg, dir).await;
    let second = encoded(&batch("gw-1", 2));
    let response = relay.post(Some(TOKEN_1), referenced(&second)).await;
    assert_eq!(response.status(), 200);
    // The same batch again, inline this time: the ledger knows it.
    let response = relay.post(Some(TOKEN_1), second).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["duplicate"], true, "{answer}");
    assert_eq!(answer["series_table"], table_id_of(&first).as_str());
    let lines = relay.file("readings.jsonl");
    assert_eq!(
        lines.matches("\"batch_seq\":2").count(),
        batch("gw-1", 2).reading_count()
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_referenced_batch_that_is_corrupt_or_over_a_limit_is_refused_like_any_other() {
    // A batch whose document fits the limit alone but not with its table.
    let mut big = batch("gw-1", 3);
    for s in &mut big.series {
        let base = s.points[0].ts_us;
        s.points = (0..60)
            .map(|i| edge_wire::Point {
                ts_us: base + i * 1_000_003,
                value: (i as f64 * 0.37).sin(),
                quality: edge_wire::Quality::Good,
            })
            .collect();
    }
    big.alarms.clear();
    let big_v6 = encoded(&big);
    let big_short = referenced(&big_v6);
    let doc = zstd::decode_all(&big_short[22..]).unwrap().len();
    let whole = zstd::decode_all(&big_v6[6..]).unwrap().len();
    assert!(whole > doc);

    let (mut cfg, dir) = config();
    cfg.limits.max_decompressed_bytes = whole - 1;
    let relay = start(cfg, dir).await;
    let first = encoded(&batch("gw-1", 1));
    assert_eq!(relay.post(Some(TOKEN_1), first.clone()).await.status(), 200);

    let mut short = referenced(&encoded(&batch("gw-1", 2)));
    let last = short.len() - 1;
    short[last] ^= 0x55;
    let response = relay.post(Some(TOKEN_1), short).await;
    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["reason"], "decompress", "{error}");

    let response = relay.post(Some(TOKEN_1), big_short).await;
    assert_eq!(response.status(), 413);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("max_decompressed_bytes"),
        "{error}"
    );
    relay.stop().await;
}
