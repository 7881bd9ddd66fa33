//! The refusal policy for `[kafka.producer]`: librdkafka properties an
//! operator may pass through, and the ones the relay refuses because they
//! would weaken delivery or because the relay sets them itself.
//!
//! Pure: a property name and value in, `Ok` or the reason out. The config
//! check ([`crate::RelayConfig::problems`]) runs it on every property, so a
//! refused one stops the start with `kafka.producer."<name>": <why>`.
//!
//! Invariant the policy protects: the producer is idempotent with
//! `acks=all`, retries, and at most 5 requests in flight per connection (the
//! most idempotence keeps in order), so an acknowledged batch is on every
//! in-sync replica exactly once per attempt. Anything not named here is
//! passed to librdkafka unchanged; librdkafka itself rejects unknown names
//! and bad values when the producer is created.

/// Properties the relay sets itself, each with the config key or reason
/// that replaces it.
const OWNED: &[(&str, &str)] = &[
    ("bootstrap.servers", "set kafka.brokers instead"),
    ("metadata.broker.list", "set kafka.brokers instead"),
    (
        "message.timeout.ms",
        "set kafka.delivery_timeout_ms instead",
    ),
    (
        "delivery.timeout.ms",
        "set kafka.delivery_timeout_ms instead",
    ),
    (
        "dr_cb",
        "the relay awaits a delivery report per message and owns the callback",
    ),
    (
        "dr_msg_cb",
        "the relay awaits a delivery report per message and owns the callback",
    ),
    (
        "delivery.report.only.error",
        "the relay needs a report for every message to acknowledge a batch",
    ),
    (
        "transactional.id",
        "the relay does not use Kafka transactions",
    ),
    (
        "client.software.name",
        "the relay names itself to the brokers",
    ),
];

/// Most requests in flight per connection that idempotence keeps in order.
pub const MAX_IN_FLIGHT: u64 = 5;

/// Whether the relay lets `name = value` through to librdkafka; the error
/// says why not, naming the value.
pub fn check(name: &str, value: &str) -> Result<(), String> {
    let v = value.trim();
    if let Some((_, why)) = OWNED.iter().find(|(n, _)| *n == name) {
        return Err(format!("is set by the relay: {why}"));
    }
    match name {
        "enable.idempotence" if !is_true(v) => Err(format!(
            "{value:?} would turn off the idempotent producer; the relay requires enable.idempotence=true \
             so broker-side retries cannot duplicate or reorder a series"
        )),
        "acks" | "request.required.acks" if !matches!(v, "all" | "-1") => Err(format!(
            "{value:?} would acknowledge a message before every in-sync replica has it; the relay requires all (or -1)"
        )),
        "max.in.flight.requests.per.connection" | "max.in.flight" => match v.parse::<u64>() {
            Ok(n) if n <= MAX_IN_FLIGHT => Ok(()),
            Ok(n) => Err(format!(
                "{n} is more than {MAX_IN_FLIGHT}: with idempotence, librdkafka keeps order only up to {MAX_IN_FLIGHT} requests in flight"
            )),
            Err(_) => Err(format!("{value:?} is not a whole number")),
        },
        "message.send.max.retries" | "retries" => match v.parse::<u64>() {
            Ok(0) => Err(
                "0 would fail a batch on the first transient broker error instead of retrying within kafka.delivery_timeout_ms"
                    .into(),
            ),
            Ok(_) => Ok(()),
            Err(_) => Err(format!("{value:?} is not a whole number")),
        },
        _ => Ok(()),
    }
}

/// librdkafka's spellings of a true boolean.
fn is_true(v: &str) -> bool {
    ["true", "t", "1"].iter().any(|t| v.eq_ignore_ascii_case(t))
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn weakening_or_owned_properties_are_refused_with_the_reason() {
        // (name, value, a word the reason must contain)
        let refused = [
            ("enable.idempotence", "false", "idempotent"),
            ("enable.idempotence", "0", "idempotent"),
            ("acks", "1", "all"),
            ("acks", "0", "all"),
            ("request.required.acks", "1", "all"),
            ("max.in.flight.requests.per.connection", "6", "more than 5"),
            ("max.in.flight", "1000", "more than 5"),
            ("max.in.flight", "many", "whole number"),
            ("message.send.max.retries", "0", "first transient"),
            ("retries", "0", "first transient"),
            ("bootstrap.servers", "x:9092", "kafka.brokers"),
            ("message.timeout.ms", "5", "delivery_timeout_ms"),
            ("dr_msg_cb", "x", "callback"),
            ("delivery.report.only.error", "true", "every message"),
            ("transactional.id", "t", "transactions"),
        ];
        for (name, value, word) in refused {
            let why = check(name, value).expect_err(name);
            assert!(why.contains(word), "{name}={value}: {why}");
        }
    }

    #[test]
    fn safe_properties_pass_through() {
        for (name, value) in [
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("acks", "-1"),
            ("max.in.flight.requests.per.connection", "5"),
            ("max.in.flight", "1"),
            ("message.send.max.retries", "10"),
            ("linger.ms", "20"),
            ("compression.type", "zstd"),
            ("batch.size", "1000000"),
            ("security.protocol", "ssl"),
        ] {
            assert_eq!(check(name, value), Ok(()), "{name}={value}");
        }
    }
}
