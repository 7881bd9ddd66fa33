//! Per-gateway fairness: one gateway, broken or compromised, cannot take
//! the relay from the others. Every authenticated gateway has two token
//! buckets, one counting requests and one counting body bytes
//! (`[fairness]` in the config). A request that finds either bucket empty
//! is answered 429 with `Retry-After` (the seconds until both buckets hold
//! enough again), before its body is read; the agent backs off for that
//! long.
//!
//! Guarantees:
//! - over any interval of `t` seconds a gateway gets at most
//!   `request_burst + requests_per_sec * t` requests and
//!   `byte_burst + bytes_per_sec * t` body bytes past this check;
//! - a refused request takes nothing from either bucket;
//! - a body whose size is only known after reading it (no
//!   `Content-Length`) is charged afterwards, which may leave the byte
//!   bucket in debt: the gateway's next requests wait until it is repaid;
//! - the table holds one entry per configured gateway at most (only
//!   authenticated ids reach it).
//!
//! [`Bucket`] is the pure core: it takes `now` and answers; [`Fairness`]
//! holds one pair per gateway behind a mutex.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default of `fairness.requests_per_sec`.
pub const DEFAULT_REQUESTS_PER_SEC: u64 = 500;
/// Default of `fairness.request_burst`.
pub const DEFAULT_REQUEST_BURST: u64 = 1000;
/// Default of `fairness.bytes_per_sec`: 32 MiB/s.
pub const DEFAULT_BYTES_PER_SEC: u64 = 32 << 20;
/// Default of `fairness.byte_burst`: 64 MiB.
pub const DEFAULT_BYTE_BURST: u64 = 64 << 20;

/// The `[fairness]` section: what each gateway may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FairnessConfig {
    /// Requests a gateway may make per second, sustained.
    pub requests_per_sec: u64,
    /// Requests a gateway may make at once after a quiet spell.
    pub request_burst: u64,
    /// Body bytes a gateway may send per second, sustained.
    pub bytes_per_sec: u64,
    /// Body bytes a gateway may send at once after a quiet spell; at least
    /// `limits.max_compressed_bytes`, so the largest allowed batch passes.
    pub byte_burst: u64,
}

impl Default for FairnessConfig {
    fn default() -> Self {
        FairnessConfig {
            requests_per_sec: DEFAULT_REQUESTS_PER_SEC,
            request_burst: DEFAULT_REQUEST_BURST,
            bytes_per_sec: DEFAULT_BYTES_PER_SEC,
            byte_burst: DEFAULT_BYTE_BURST,
        }
    }
}

/// A token bucket: `rate` tokens per second, at most `burst` held.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Tokens held at `at`; negative after a charge past the level (debt).
    level: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn full(burst: u64, now: Instant) -> Bucket {
        Bucket {
            level: burst as f64,
            at: now,
        }
    }

    /// The level at `now`, refilled at `rate` up to `burst`.
    fn level(&self, now: Instant, rate: u64, burst: u64) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.level + elapsed * rate as f64).min(burst as f64)
    }

    /// How long from `now` until `cost` tokens are held: zero when they are
    /// now. A cost above `burst` is never held; it waits for a full bucket.
    pub fn wait(&self, now: Instant, rate: u64, burst: u64, cost: u64) -> Duration {
        let cost = cost.min(burst) as f64;
        let short = cost - self.level(now, rate, burst);
        if short <= 0.0 {
            Duration::ZERO
        } else if rate == 0 {
            Duration::MAX
        } else {
            // Rounded up to the nanosecond: waiting this long is enough.
            Duration::from_nanos((short / rate as f64 * 1e9).ceil() as u64)
        }
    }

    /// Take `cost` tokens at `now`, going into debt if the level is short.
    pub fn charge(&mut self, now: Instant, rate: u64, burst: u64, cost: u64) {
        self.level = self.level(now, rate, burst) - cost as f64;
        self.at = now.max(self.at);
    }
}

/// What [`Fairness::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go on; the request (and the declared bytes) are charged.
    Admit,
    /// Refuse with 429; retry after this long. `bytes` says which bucket
    /// was short (the byte bucket when true).
    Throttle { retry_after: Duration, bytes: bool },
}

/// One request bucket and one byte bucket per gateway.
#[derive(Debug)]
pub struct Fairness {
    config: FairnessConfig,
    buckets: Mutex<HashMap<String, [Bucket; 2]>>,
}

impl Fairness {
    /// Every gateway starts with full buckets.
    pub fn new(config: FairnessConfig) -> Fairness {
        Fairness {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Admit one request of `gateway` declaring `bytes` of body (0 when
    /// unknown) at `now`, or say how long it must wait. Nothing is charged
    /// when it must wait.
    pub fn admit(&self, gateway: &str, bytes: u64, now: Instant) -> Admission {
        let c = self.config;
        let mut table = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let pair = table.entry(gateway.to_owned()).or_insert_with(|| {
            [
                Bucket::full(c.request_burst, now),
                Bucket::full(c.byte_burst, now),
            ]
        });
        let requests = pair[0].wait(now, c.requests_per_sec, c.request_burst, 1);
        let body = pair[1].wait(now, c.bytes_per_sec, c.byte_burst, bytes);
        if requests.is_zero() && body.is_zero() {
            pair[0].charge(now, c.requests_per_sec, c.request_burst, 1);
            pair[1].charge(now, c.bytes_per_sec, c.byte_burst, bytes);
            return Admission::Admit;
        }
        Admission::Throttle {
            retry_after: requests.max(body),
            bytes: body > requests,
        }
    }

    /// Charge `bytes` more to `gateway`'s byte bucket (a body read without
    /// `Content-Length`, or longer than declared).
    pub fn charge_bytes(&self, gateway: &str, bytes: u64, now: Instant) {
        let c = self.config;
        let mut table = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pair) = table.get_mut(gateway) {
            pair[1].charge(now, c.bytes_per_sec, c.byte_burst, bytes);
        }
    }
}

/// Whole seconds for `Retry-After`: rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait
        .as_secs()
        .saturating_add(u64::from(wait.subsec_nanos() > 0));
    secs.clamp(1, 3600)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn config() -> FairnessConfig {
        FairnessConfig {
            requests_per_sec: 10,
            request_burst: 3,
            bytes_per_sec: 1000,
            byte_burst: 2000,
        }
    }

    #[test]
    fn requests_pass_up_to_the_burst_then_wait_for_the_rate() {
        let t0 = Instant::now();
        let f = Fairness::new(config());
        // (ms after t0, bytes, expected)
        let table: &[(u32, u64, Option<u64>)] = &[
            (0, 0, None),
            (0, 0, None),
            (0, 0, None),
            // burst of 3 used: the next token comes after 1/10 s.
            (0, 0, Some(100)),
            (50, 0, Some(50)),
            (100, 0, None),
            (100, 0, Some(100)),
            // a long quiet spell refills to the burst, not beyond.
            (10_000, 0, None),
            (10_000, 0, None),
            (10_000, 0, None),
            (10_000, 0, Some(100)),
        ];
        for (i, &(at, bytes, want)) in table.iter().enumerate() {
            let got = f.admit("gw", bytes, t0 + at * MS);
            let got = match got {
                Admission::Admit => None,
                Admission::Throttle { retry_after, .. } => Some(retry_after.as_millis() as u64),
            };
            assert_eq!(got, want, "row {i}: at {at} ms");
        }
    }

    #[test]
    fn bytes_are_a_second_bucket_and_a_refusal_charges_nothing() {
        let t0 = Instant::now();
        let f = Fairness::new(config());
        assert_eq!(f.admit("gw", 1500, t0), Admission::Admit);
        // 500 left: 1000 bytes need 500 more, half a second at 1000/s.
        assert_eq!(
            f.admit("gw", 1000, t0),
            Admission::Throttle {
                retry_after: 500 * MS,
                bytes: true
            }
        );
        // The refusal took no request token: two more small requests pass.
        assert_eq!(f.admit("gw", 0, t0), Admission::Admit);
        assert_eq!(f.admit("gw", 0, t0), Admission::Admit);
        assert_eq!(f.admit("gw", 1000, t0 + 500 * MS), Admission::Admit);
    }

    #[test]
    fn gateways_have_their_own_buckets() {
        let t0 = Instant::now();
        let f = Fairness::new(config());
        for _ in 0..3 {
            assert_eq!(f.admit("noisy", 0, t0), Admission::Admit);
        }
        assert!(matches!(
            f.admit("noisy", 0, t0),
            Admission::Throttle { bytes: false, .. }
        ));
        assert_eq!(f.admit("quiet", 0, t0), Admission::Admit);
    }

    #[test]
    fn an_undeclared_body_charged_afterwards_leaves_a_debt() {
        let t0 = Instant::now();
        let f = Fairness::new(config());
        assert_eq!(f.admit("gw", 0, t0), Admission::Admit);
        f.charge_bytes("gw", 3000, t0);
        // 2000 - 3000 = -1000: one byte needs 1001 bytes of refill.
        match f.admit("gw", 1, t0) {
            Admission::Throttle { retry_after, bytes } => {
                assert_eq!(retry_after.as_millis(), 1001);
                assert!(bytes);
            }
            other => panic!("admitted in debt: {other:?}"),
        }
        assert_eq!(f.admit("gw", 1, t0 + 1002 * MS), Admission::Admit);
    }

    #[test]
    fn a_cost_above_the_burst_waits_for_a_full_bucket_not_forever() {
        let t0 = Instant::now();
        let mut b = Bucket::full(2000, t0);
        b.charge(t0, 1000, 2000, 2000);
        assert_eq!(b.wait(t0, 1000, 2000, 5000), 2000 * MS);
        assert_eq!(b.wait(t0 + 2000 * MS, 1000, 2000, 5000), Duration::ZERO);
        assert_eq!(b.wait(t0, 0, 2000, 1), Duration::MAX);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        for (wait_ms, want) in [(1u32, 1), (999, 1), (1000, 1), (1001, 2), (0, 1), (2500, 3)] {
            assert_eq!(retry_after_secs(wait_ms * MS), want, "{wait_ms} ms");
        }
        assert_eq!(retry_after_secs(Duration::MAX), 3600);
    }
}
