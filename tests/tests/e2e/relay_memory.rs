//! Decompression bombs against the real relay binary, as an attacker with
//! one leaked gateway token would send them: a 32 KiB body (a valid batch
//! prefix, then a zstd frame of RLE blocks of zeros that declares no content
//! size and would inflate to 1 GiB), first alone, then fifty at once while
//! another gateway uploads a valid batch.
//!
//! Issue 13 states the bounds: peak RSS growth under 64 MiB for one bomb and
//! under 256 MiB for fifty in parallel, each answered within 200 ms (release
//! build), and memory returned afterwards. RSS is read from
//! `/proc/PID/status` (`VmHWM`, the peak, reset through `clear_refs`;
//! `VmRSS`, the current). Every bomb must get 413 (`max_decompressed_bytes`)
//! or 503 with `Retry-After` (decode budget in use), and the other
//! gateway's batch 200.
//!
//! The RSS bounds are asserted as the issue states them on whatever build
//! runs the test; the answer time is asserted at 200 ms on a release build
//! and with a margin on a debug build (zstd and the decoder unoptimised),
//! and every figure is printed.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::Context;
use edge_tests::{free_port, relay_answers, relay_binary, spawn, wait_until};

const ATTACKER: &str = "gw-leaked";
const ATTACKER_TOKEN: &str = "token-that-leaked-0123456789";
const HONEST: &str = "gw-honest";
const HONEST_TOKEN: &str = "token-of-the-honest-gateway-0123";
const MIB: u64 = 1 << 20;

/// The issue's bomb (see [`edge_tests::zstd_bomb`]).
fn bomb(blocks: u32) -> Vec<u8> {
    edge_tests::zstd_bomb(blocks)
}

fn valid_batch(seq: u64) -> Vec<u8> {
    edge_tests::recent_batch(HONEST, seq, 10)
}

/// `VmRSS` and `VmHWM` of `pid`, in bytes.
fn rss(pid: u32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("no {name} in /proc/{pid}/status"))?;
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()?;
        Ok(kib * 1024)
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// Reset `VmHWM` to the current RSS.
fn reset_peak(pid: u32) -> anyhow::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").context("resetting VmHWM")
}

struct Answer {
    status: u16,
    retry_after: bool,
    message: String,
    took: Duration,
}

fn post(client: &reqwest::blocking::Client, url: &str, token: &str, body: Vec<u8>) -> Answer {
    let started = Instant::now();
    let response = client
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/vnd.edge-batch")
        .body(body)
        .send()
        .expect("the relay answers");
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    let message = response.text().unwrap_or_default();
    Answer {
        status,
        retry_after,
        message,
        took: started.elapsed(),
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn assert_refused(what: &str, a: &Answer) {
    let ok = (a.status == 413 && a.message.contains("max_decompressed_bytes"))
        || (a.status == 503 && a.retry_after && a.message.contains("busy"));
    assert!(ok, "{what}: {} {}", a.status, a.message);
}

#[test]
fn decompression_bombs_cost_bounded_memory_and_time() -> anyhow::Result<()> {
    let logs = tempfile::tempdir()?;
    let work = tempfile::tempdir()?;
    let port = free_port()?;
    let config = work.path().join("relay.toml");
    std::fs::write(
        &config,
        format!(
            r#"listen = "127.0.0.1:{port}"
data_dir = {:?}
[[gateways]]
id = "{ATTACKER}"
token = "{ATTACKER_TOKEN}"
[[gateways]]
id = "{HONEST}"
token = "{HONEST_TOKEN}"
[ops]
listen = "127.0.0.1:0"
"#,
            work.path().join("relay"),
        ),
    )?;
    let binary = relay_binary()?;
    let release = binary
        .parent()
        .is_some_and(|d| d.file_name().is_some_and(|n| n == "release"));
    let args = ["--config", &config.display().to_string()].map(String::from);
    let relay = spawn("edge-relay", &binary, &args, logs.path())?;
    let base = format!("http://127.0.0.1:{port}");
    wait_until("relay", Duration::from_secs(30), || relay_answers(port))?;
    let pid = relay.pid();
    let url = format!("{base}/v1/batches");
    let time_bound = if release {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(2)
    };

    let body = bomb(8_192);
    assert_eq!(body.len(), 32_780, "about 32 KiB");
    let c = client();
    // Warm up: one valid batch, so the baseline includes the relay's
    // ordinary working set.
    let a = post(&c, &url, HONEST_TOKEN, valid_batch(1));
    assert_eq!(a.status, 200, "{}", a.message);

    // One bomb.
    let (before, _) = rss(pid)?;
    reset_peak(pid)?;
    let a = post(&c, &url, ATTACKER_TOKEN, body.clone());
    let (_, peak) = rss(pid)?;
    let one_growth = peak.saturating_sub(before);
    println!(
        "one bomb: {} in {:?}, peak RSS growth {:.1} MiB (VmRSS before {:.1} MiB, {} build)",
        a.status,
        a.took,
        one_growth as f64 / MIB as f64,
        before as f64 / MIB as f64,
        if release { "release" } else { "debug" },
    );
    assert_eq!(a.status, 413, "{}", a.message);
    assert_refused("one bomb", &a);
    assert!(a.took < time_bound, "one bomb took {:?}", a.took);
    assert!(
        one_growth < 64 * MIB,
        "one bomb grew peak RSS by {one_growth} bytes"
    );

    // Fifty at once, and the honest gateway uploading in the middle.
    let (before, _) = rss(pid)?;
    reset_peak(pid)?;
    let start = Arc::new(Barrier::new(51));
    let bombs: Vec<_> = (0..50)
        .map(|_| {
            let (start, url, body) = (start.clone(), url.clone(), body.clone());
            std::thread::spawn(move || {
                let c = client();
                start.wait();
                post(&c, &url, ATTACKER_TOKEN, body)
            })
        })
        .collect();
    start.wait();
    std::thread::sleep(Duration::from_millis(20));
    let honest = post(&c, &url, HONEST_TOKEN, valid_batch(2));
    let answers: Vec<Answer> = bombs.into_iter().map(|t| t.join().unwrap()).collect();
    let (after, peak) = rss(pid)?;
    let growth = peak.saturating_sub(before);
    let slowest = answers.iter().map(|a| a.took).max().unwrap();
    let count = |s: u16| answers.iter().filter(|a| a.status == s).count();
    println!(
        "50 bombs: {} x 413, {} x 503, slowest {:?}, peak RSS growth {:.1} MiB; \
         honest batch {} in {:?}; VmRSS {:.1} MiB before, {:.1} MiB after",
        count(413),
        count(503),
        slowest,
        growth as f64 / MIB as f64,
        honest.status,
        honest.took,
        before as f64 / MIB as f64,
        after as f64 / MIB as f64,
    );
    for (i, a) in answers.iter().enumerate() {
        assert_refused(&format!("bomb {i}"), a);
    }
    assert_eq!(honest.status, 200, "{}", honest.message);
    assert!(slowest < time_bound, "slowest bomb took {slowest:?}");
    assert!(
        growth < 256 * MIB,
        "50 bombs grew peak RSS by {growth} bytes"
    );

    // Memory comes back: RSS settles near where it was.
    let settled = wait_until(
        "RSS back near its baseline",
        Duration::from_secs(10),
        || rss(pid).is_ok_and(|(now, _)| now < before + 32 * MIB),
    );
    let (now, _) = rss(pid)?;
    println!("VmRSS afterwards: {:.1} MiB", now as f64 / MIB as f64);
    settled?;
    // And the relay still serves.
    let a = post(&c, &url, HONEST_TOKEN, valid_batch(3));
    assert_eq!(a.status, 200, "{}", a.message);
    drop(relay);
    Ok(())
}
