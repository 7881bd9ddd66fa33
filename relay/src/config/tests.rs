//! Config parsing and checking: defaults, every-error-at-once reporting, and
//! that the example file stays in step with the `///` docs.

use super::*;

const EXAMPLE: &str = include_str!("../../../configs/relay.example.toml");

const MINIMAL: &str = r#"
data_dir = "/var/lib/edge-relay"

[[gateways]]
id = "gw-1"
token = "0123456789abcdef"
"#;

#[test]
fn minimal_config_gets_defaults_and_the_file_sink() {
    let c = RelayConfig::from_toml(MINIMAL).unwrap();
    assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(
        c.data_dir.as_deref(),
        Some(Path::new("/var/lib/edge-relay"))
    );
    assert_eq!(c.limits, Limits::default());
    assert!(c.kafka.is_none() && c.timeseries.is_none());
    assert_eq!(c.gateways[0].id, "gw-1");
}

#[test]
fn example_file_is_valid_and_sets_every_section() {
    let c = RelayConfig::from_toml(EXAMPLE).unwrap();
    let k = c.kafka.expect("example configures [kafka]");
    assert_eq!(k.readings_topic, DEFAULT_READINGS_TOPIC);
    assert_eq!(k.alarms_topic, DEFAULT_ALARMS_TOPIC);
    assert_eq!(
        k.delivery_timeout,
        Duration::from_millis(DEFAULT_DELIVERY_TIMEOUT_MS)
    );
    let t = c.timeseries.expect("example configures [timeseries]");
    assert_eq!(t.layout, crate::sink::line_protocol::LineLayout::default());
    assert_eq!(t.layout.measurement, DEFAULT_MEASUREMENT);
    assert_eq!(t.url.as_str(), "http://127.0.0.1:8428/write");
    let p = c.postgres.expect("example configures [postgres]");
    assert_eq!(p.table, crate::sink::postgres::DEFAULT_TABLE);
}

#[rustfmt::skip]
#[test]
fn message_versions_choose_the_generations_and_both_needs_apart_topics() {
    use crate::message::Version::{self, V1, V2};
    // (the [kafka] lines after brokers, the generations, or the error)
    let table: [(&str, Result<Vec<Version>, &str>); 6] = [
        ("",                                 Ok(vec![V1])),
        ("message_versions = \"v1\"",        Ok(vec![V1])),
        ("message_versions = \"v2\"",        Ok(vec![V2])),
        ("message_versions = \"both\"",      Ok(vec![V1, V2])),
        ("message_versions = \"v3\"",        Err("kafka.message_versions: \"v3\" is not \"v1\", \"v2\" or \"both\"")),
        ("message_versions = \"both\"\nreadings_topic_v2 = \"edge.readings.v1\"",
                                             Err("kafka.message_versions: \"both\" needs v2 topics apart from the v1 ones; \"edge.readings.v1\" is both")),
    ];
    for (lines, expected) in table {
        let text = format!("{MINIMAL}\n[kafka]\nbrokers = [\"k1:9092\"]\n{lines}\n");
        match (RelayConfig::from_toml(&text), expected) {
            (Ok(c), Ok(versions)) => {
                let k = c.kafka.unwrap();
                assert_eq!(k.message_versions, versions, "{lines}");
                assert_eq!((k.readings_topic_v2.as_str(), k.alarms_topic_v2.as_str()),
                           ("edge.readings.v2", "edge.alarms.v2"));
            }
            (Err(e), Err(says)) => assert!(e.to_string().contains(says), "{lines}: {e}"),
            (got, want) => panic!("{lines}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn kafka_and_timeseries_defaults() {
    let text = format!(
        "{MINIMAL}\n[kafka]\nbrokers = [\"k1:9092\", \"k2:9092\"]\n[timeseries]\nurl = \"http://vm:8428/write\"\n"
    );
    let c = RelayConfig::from_toml(&text).unwrap();
    let k = c.kafka.unwrap();
    assert_eq!(k.brokers, ["k1:9092", "k2:9092"]);
    assert_eq!(k.readings_topic, "edge.readings.v1");
    assert_eq!(k.alarms_topic, "edge.alarms.v1");
    assert_eq!(k.delivery_timeout, Duration::from_secs(30));
    let t = c.timeseries.unwrap();
    assert_eq!(t.layout.measurement, "edge");
    assert_eq!(t.timeout, Duration::from_secs(10));
}

#[test]
fn unknown_keys_are_rejected_with_their_name() {
    let err = RelayConfig::from_toml(&format!("{MINIMAL}\n[limits]\nmax_bytes = 5\n")).unwrap_err();
    assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
    assert!(err.to_string().contains("max_bytes"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once_with_its_key_path() {
    let text = r##"
listen = "localhost"

[[gateways]]
id = "gw-1"
token = "0123456789abcdef"

[[gateways]]
id = "gw-1"
token = "short"

[[gateways]]
tokens = ["sha256:zz", "0123456789abcdef-pasted-plaintext"]

[[gateways]]
id = "gw-4"

[[gateways]]
id = "gw-5"
tokens = ["sha256:1c4a6b3b3d4c7b1c3e5b5b8f2f1a7f3c0e9c7d2a7b0a9f8e7d6c5b4a3f2e1d0c", "sha256:1C4A6B3B3D4C7B1C3E5B5B8F2F1A7F3C0E9C7D2A7B0A9F8E7D6C5B4A3F2E1D0C"]

[limits]
max_readings = -1
max_tags = 0

[kafka]
readings_topic = "bad topic"
delivery_timeout_ms = 5

[timeseries]
url = "https://vm:8428/write"
measurement = "#edge"
"##;
    let ConfigError::Invalid { issues, .. } = RelayConfig::from_toml(text).unwrap_err() else {
        panic!("expected Invalid");
    };
    let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
    for expected in [
        "listen",
        "gateways[1].id",
        "gateways[1].token",
        "gateways[2].id",
        "gateways[2].tokens[0]",
        "gateways[2].tokens[1]",
        "gateways[3].tokens",
        "gateways[4].tokens[1]",
        "limits.max_readings",
        "limits.max_tags",
        "kafka.brokers",
        "kafka.readings_topic",
        "kafka.delivery_timeout_ms",
        "timeseries.url",
        "timeseries.measurement",
    ] {
        assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
    }
    // A malformed entry may be a pasted plaintext token: never echoed.
    assert!(
        !issues
            .iter()
            .any(|i| i.message.contains("pasted-plaintext")),
        "{issues:?}"
    );
    let listen = issues.iter().find(|i| i.key == "listen").unwrap();
    assert!(listen.message.contains("\"localhost\""), "{listen}");
}

#[test]
fn data_dir_is_required_only_for_the_file_sink() {
    let no_dir = "[[gateways]]\nid = \"gw-1\"\ntoken = \"0123456789abcdef\"\n";
    let err = RelayConfig::from_toml(no_dir).unwrap_err().to_string();
    assert!(err.contains("data_dir"), "{err}");
    // Kafka alone still needs somewhere to keep the delivered-batch ledger.
    let with_kafka = format!("{no_dir}[kafka]\nbrokers = [\"k:9092\"]\n");
    let err = RelayConfig::from_toml(&with_kafka).unwrap_err().to_string();
    assert!(
        err.contains("dedup.path: required when data_dir is not set"),
        "{err}"
    );
    let with_ledger = format!("{with_kafka}[dedup]\npath = \"/var/lib/edge-relay/delivered.db\"\n");
    let c = RelayConfig::from_toml(&with_ledger).unwrap();
    assert!(c.data_dir.is_none());
    assert_eq!(
        c.dedup_path().unwrap(),
        std::path::Path::new("/var/lib/edge-relay/delivered.db")
    );
    let c = RelayConfig::from_toml(MINIMAL).unwrap();
    assert_eq!(c.dedup_path(), c.data_dir.map(|d| d.join("delivered.db")));
    assert_eq!(c.dedup.window, std::time::Duration::from_secs(168 * 3600));
}

#[test]
fn debug_output_hides_tokens_and_their_hashes() {
    let hash = crate::auth::TokenHash::of(b"another-token-0123").to_config_string();
    let text = format!("{MINIMAL}\n[[gateways]]\nid = \"gw-2\"\ntokens = [\"{hash}\"]\n");
    let c = RelayConfig::from_toml(&text).unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("0123456789abcdef"), "{debug}");
    assert!(!debug.contains(&hash[7..20]), "{debug}");
    assert!(debug.contains("gw-1") && debug.contains("gw-2"), "{debug}");
}

#[test]
fn hashed_tokens_are_accepted_and_plaintext_gets_a_warning() {
    let old = crate::auth::TokenHash::of(b"old-token-0123456789");
    let new = crate::auth::TokenHash::of(b"new-token-0123456789");
    let text = format!(
        "data_dir = \"/d\"\n[[gateways]]\nid = \"gw-1\"\ntokens = [\"{}\", \"{}\"]\n",
        old.to_config_string(),
        new.to_config_string()
    );
    let c = RelayConfig::from_toml(&text).unwrap();
    assert_eq!(c.gateways[0].tokens, [old, new]);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    let c = RelayConfig::from_toml(MINIMAL).unwrap();
    assert_eq!(
        c.gateways[0].tokens,
        [crate::auth::TokenHash::of(b"0123456789abcdef")]
    );
    assert_eq!(c.warnings.len(), 1);
    assert_eq!(c.warnings[0].key, "gateways[0].token");
    assert!(
        c.warnings[0].message.contains("plaintext"),
        "{:?}",
        c.warnings
    );
}

/// Guards the STYLE rule that every key's `///` doc appears, word for word,
/// as a comment in `configs/relay.example.toml`.
#[test]
fn example_file_repeats_every_key_doc() {
    let raw = include_str!("raw.rs");
    let lines: Vec<&str> = raw.lines().map(str::trim).collect();
    // A key doc is a `///` line whose next non-doc, non-attribute line is a
    // struct field (`name: Type,`).
    let is_field = |l: &str| {
        l.ends_with(',')
            && l.split_once(": ")
                .is_some_and(|(name, _)| name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
    };
    let docs: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let doc = l.strip_prefix("/// ")?;
            let next = lines[i + 1..]
                .iter()
                .find(|n| !n.starts_with("///") && !n.starts_with("#["))?;
            is_field(next).then_some(doc)
        })
        .collect();
    assert!(docs.len() >= 20, "found only {} key docs", docs.len());
    for doc in docs {
        assert!(
            EXAMPLE
                .lines()
                .any(|l| l.trim_start_matches(['#', ' ']) == doc),
            "configs/relay.example.toml lacks the comment {doc:?}"
        );
    }
}

#[test]
fn timeseries_layout_keys_are_read_and_checked_with_their_key_path() {
    use crate::sink::line_protocol::{LineLayout, QualityAs};
    let text = format!(
        "{MINIMAL}\n[timeseries]\nurl = \"http://vm:8428/write\"\nmeasurement = \"plant\"\n\
         series_tag = \"sensor\"\ngateway_tag = \"\"\nquality = \"field\"\nquality_key = \"q\"\nvalue_field = \"v\"\n"
    );
    let t = RelayConfig::from_toml(&text).unwrap().timeseries.unwrap();
    assert_eq!(
        t.layout,
        LineLayout {
            measurement: "plant".into(),
            series_tag: "sensor".into(),
            gateway_tag: None,
            quality: QualityAs::Field,
            quality_key: "q".into(),
            value_field: "v".into(),
        }
    );

    let text = format!(
        "{MINIMAL}\n[timeseries]\nurl = \"http://vm:8428/write\"\nseries_tag = \"a,b\"\n\
         gateway_tag = \"time\"\nquality = \"label\"\nvalue_field = \"quality\"\n"
    );
    let ConfigError::Invalid { issues, .. } = RelayConfig::from_toml(&text).unwrap_err() else {
        panic!("expected Invalid");
    };
    let found: Vec<String> = issues.iter().map(|i| i.to_string()).collect();
    for expected in [
        "timeseries.quality: \"label\" is not one of tag, field, none",
        "timeseries.series_tag: \"a,b\": may contain only",
        "timeseries.gateway_tag: \"time\": \"time\" is reserved by InfluxDB",
        "timeseries.value_field: \"quality\" is already used by timeseries.quality_key",
    ] {
        assert!(
            found.iter().any(|f| f.starts_with(expected)),
            "{expected} missing from {found:?}"
        );
    }
}

#[test]
fn postgres_section_defaults_and_errors_name_the_key_without_the_password() {
    let text = format!("{MINIMAL}\n[postgres]\nurl = \"postgresql://edge:pw@db:5433/plant\"\n");
    let p = RelayConfig::from_toml(&text).unwrap().postgres.unwrap();
    assert_eq!(p.table, "edge_readings");
    assert_eq!(p.timeout, Duration::from_secs(10));
    assert_eq!(p.url.get_dbname(), Some("plant"));
    assert!(!format!("{p:?}").contains("pw"), "{p:?}");

    let text = format!(
        "{MINIMAL}\n[postgres]\nurl = \"postgresql://edge:secret-pw@db:notaport/plant\"\ntable = \"Readings\"\ntimeout_ms = -1\n"
    );
    let err = RelayConfig::from_toml(&text).unwrap_err().to_string();
    for expected in [
        "postgres.url: not a PostgreSQL URL",
        "postgres.table: \"Readings\": may contain only lower-case",
        "postgres.timeout_ms: -1 must not be negative",
    ] {
        assert!(err.contains(expected), "{expected} missing from {err}");
    }
    assert!(!err.contains("secret-pw"), "{err}");
    let missing = RelayConfig::from_toml(&format!("{MINIMAL}\n[postgres]\n")).unwrap_err();
    assert!(
        missing
            .to_string()
            .contains("postgres.url: required when [postgres] is present"),
        "{missing}"
    );
}

#[test]
fn producer_properties_that_weaken_delivery_stop_the_start_naming_the_property() {
    let text = format!(
        "{MINIMAL}\n[kafka]\nbrokers = [\"k1:9092\"]\ngranularity = \"series\"\n\
         [kafka.producer]\n\"enable.idempotence\" = false\nacks = 1\n\
         \"max.in.flight.requests.per.connection\" = 10\n\"message.send.max.retries\" = 0\n\
         \"bootstrap.servers\" = \"other:9092\"\n\"linger.ms\" = 20\n\"debug\" = [\"all\"]\n"
    );
    let ConfigError::Invalid { issues, .. } = RelayConfig::from_toml(&text).unwrap_err() else {
        panic!("expected Invalid");
    };
    let keys: Vec<&str> = issues.iter().map(|i| i.key.as_str()).collect();
    for expected in [
        "kafka.producer.\"enable.idempotence\"",
        "kafka.producer.\"acks\"",
        "kafka.producer.\"max.in.flight.requests.per.connection\"",
        "kafka.producer.\"message.send.max.retries\"",
        "kafka.producer.\"bootstrap.servers\"",
        "kafka.producer.\"debug\"",
    ] {
        assert!(keys.contains(&expected), "{expected} missing from {keys:?}");
    }
    assert!(!keys.iter().any(|k| k.contains("linger.ms")), "{keys:?}");

    let ok = format!(
        "{MINIMAL}\n[kafka]\nbrokers = [\"k1:9092\"]\ngranularity = \"series\"\n\
         [kafka.producer]\n\"linger.ms\" = 20\nacks = \"all\"\n\"enable.idempotence\" = true\n"
    );
    let k = RelayConfig::from_toml(&ok).unwrap().kafka.unwrap();
    assert_eq!(k.granularity, Granularity::Series);
    assert_eq!(k.producer["linger.ms"], "20");
    assert_eq!(k.producer["enable.idempotence"], "true");
}

#[test]
fn unknown_granularity_and_empty_site_are_refused() {
    let text = "[[gateways]]\nid = \"gw-1\"\ntoken = \"0123456789abcdef\"\nsite = \"\"\n\
                tags = { \"\" = \"x\" }\n[kafka]\nbrokers = [\"k1:9092\"]\ngranularity = \"batch\"\n";
    let err = RelayConfig::from_toml(text).unwrap_err().to_string();
    assert!(err.contains("kafka.granularity: \"batch\""), "{err}");
    assert!(err.contains("gateways[0].site"), "{err}");
    assert!(err.contains("gateways[0].tags"), "{err}");
}

#[test]
fn gateway_site_and_tags_are_read() {
    let c = RelayConfig::from_toml(EXAMPLE).unwrap();
    let gw = &c.gateways[1];
    assert_eq!(gw.site.as_deref(), Some("plant-a"));
    assert_eq!(gw.tags["line"], "L1");
}

/// The stores keep readings only: without Kafka the file sink in data_dir
/// sits beside them, so alarm and gap events are kept.
#[test]
fn sink_names_add_the_file_sink_wherever_alarms_would_have_nowhere_to_go() {
    let names = |extra: &str| {
        RelayConfig::from_toml(&format!("{MINIMAL}\n{extra}"))
            .unwrap()
            .sink_names()
    };
    let ts = "[timeseries]\nurl = \"http://vm:8428/write\"\n";
    let kafka = "[kafka]\nbrokers = [\"k1:9092\"]\n";
    assert_eq!(names(""), ["file"]);
    assert_eq!(names(ts), ["timeseries", "file"]);
    assert_eq!(names(kafka), ["kafka"]);
    assert_eq!(names(&format!("{kafka}{ts}")), ["kafka", "timeseries"]);
}

#[test]
fn kafka_debug_hides_secret_producer_properties() {
    let text = format!(
        "{MINIMAL}\n[kafka]\nbrokers = [\"k1:9092\"]\n[kafka.producer]\n\
         \"sasl.password\" = \"hunter2\"\n\"linger.ms\" = 20\n"
    );
    let k = RelayConfig::from_toml(&text).unwrap().kafka.unwrap();
    let shown = format!("{k:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("\"linger.ms\": \"20\""), "{shown}");
    assert_eq!(k.producer["sasl.password"], "hunter2");
}

#[test]
fn dedup_keys_choose_the_store_and_bound_the_ledger() {
    let c = RelayConfig::from_toml(MINIMAL).unwrap();
    assert_eq!(c.dedup.store, super::DedupStore::Sqlite);
    assert_eq!(c.dedup.max_rows, 10_000_000);
    assert_eq!(c.dedup.prune_interval, std::time::Duration::from_secs(60));
    assert_eq!(c.dedup.claim_lease, std::time::Duration::from_secs(60));

    // The shared ledger takes the [postgres] sink's server unless told.
    let shared = format!(
        "{MINIMAL}[postgres]\nurl = \"postgresql://edge@db:5432/plant\"\n\
         [dedup]\nstore = \"postgres\"\ntable = \"ops.ledger\"\nmax_rows = 500\n\
         prune_interval_secs = 5\nclaim_lease_secs = 90\nwindow_hours = 2\n"
    );
    let c = RelayConfig::from_toml(&shared).unwrap();
    assert_eq!(c.dedup.store, super::DedupStore::Postgres);
    assert_eq!(c.dedup_url().unwrap().get_dbname(), Some("plant"));
    assert_eq!(c.dedup.table, "ops.ledger");
    assert_eq!(c.dedup.max_rows, 500);
    assert_eq!(c.dedup.prune_interval, std::time::Duration::from_secs(5));
    assert_eq!(c.dedup.claim_lease, std::time::Duration::from_secs(90));
    assert_eq!(c.dedup.window, std::time::Duration::from_secs(7200));

    let bad = format!(
        "{MINIMAL}[kafka]\nbrokers = [\"k:9092\"]\ndelivery_timeout_ms = 120000\n\
         [dedup]\nstore = \"postgres\"\ntable = \"Bad-Name\"\nmax_rows = 0\nclaim_lease_secs = 60\n"
    );
    let err = RelayConfig::from_toml(&bad).unwrap_err().to_string();
    for expected in [
        "dedup.url: required with store = \"postgres\"",
        "dedup.table: \"Bad-Name\"",
        "dedup.max_rows: must be greater than 0",
        "dedup.claim_lease_secs: 60 s must exceed kafka.delivery_timeout_ms (120000 ms)",
    ] {
        assert!(err.contains(expected), "{expected} in {err}");
    }
    let err = RelayConfig::from_toml(&format!("{MINIMAL}[dedup]\nstore = \"redis\"\n"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("dedup.store: \"redis\" is not"), "{err}");
}

#[test]
fn server_ops_and_fairness_are_read_and_checked() {
    let c = RelayConfig::from_toml(MINIMAL).unwrap();
    assert_eq!(c.server, crate::connections::ConnectionLimits::default());
    assert_eq!(c.ops_listen, "127.0.0.1:9181".parse().unwrap());
    assert_eq!(c.fairness, crate::fairness::FairnessConfig::default());

    let text = format!(
        "{MINIMAL}\n[server]\nmax_connections = 64\nheader_timeout_ms = 2000\nbody_timeout_ms = 3000\n\
         tls_handshake_timeout_ms = 4000\nshutdown_grace_ms = 5000\n\
         [ops]\nlisten = \"10.0.0.5:9000\"\n\
         [fairness]\nrequests_per_sec = 5\nrequest_burst = 6\nbytes_per_sec = 7000000\nbyte_burst = 20000000\n"
    );
    let c = RelayConfig::from_toml(&text).unwrap();
    assert_eq!(c.server.max_connections, 64);
    assert_eq!(c.server.header_timeout, Duration::from_secs(2));
    assert_eq!(c.server.body_timeout, Duration::from_secs(3));
    assert_eq!(c.server.tls_handshake_timeout, Duration::from_secs(4));
    assert_eq!(c.server.shutdown_grace, Duration::from_secs(5));
    assert_eq!(c.ops_listen, "10.0.0.5:9000".parse().unwrap());
    assert_eq!(
        c.fairness,
        crate::fairness::FairnessConfig {
            requests_per_sec: 5,
            request_burst: 6,
            bytes_per_sec: 7_000_000,
            byte_burst: 20_000_000,
        }
    );

    let text = format!(
        "listen = \"127.0.0.1:9181\"\n{MINIMAL}\n[server]\nmax_connections = 0\nheader_timeout_ms = 0\n\
         [fairness]\nrequests_per_sec = 0\nbyte_burst = 10\n[limits]\nmax_compressed_bytes = 11\n"
    );
    let err = RelayConfig::from_toml(&text).unwrap_err().to_string();
    for key in [
        "server.max_connections",
        "server.header_timeout_ms",
        "ops.listen",
        "fairness.requests_per_sec",
        "fairness.byte_burst",
    ] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
    let err = RelayConfig::from_toml(&format!("{MINIMAL}\n[ops]\nlisten = \"nowhere\"\n"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ops.listen") && err.contains("nowhere"),
        "{err}"
    );
}
