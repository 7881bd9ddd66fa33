//! Tests of the `[[mqtt]]` configuration: templates, topic filters,
//! defaults and the key paths of every validation problem.

use super::*;

#[test]
fn templates_expand_topic_levels() {
    let t = Template::parse("{2}.temp").unwrap();
    assert_eq!(t.expand(&["plant", "l1", "temp"]), Ok("l1.temp".into()));
    assert_eq!(t.max_level(), 2);
    assert_eq!(t.expand(&["plant"]), Err(2));
    let t = Template::parse("a{1}-{3}b").unwrap();
    assert_eq!(t.expand(&["x", "y", "z"]), Ok("ax-zb".into()));
    assert!(Template::parse("{0}").is_err());
    assert!(Template::parse("{x}").is_err());
    assert!(Template::parse("{1").is_err());
}

#[test]
fn topic_filters_follow_the_wildcard_rules() {
    for ok in ["a/b", "a/+/c", "#", "a/#", "+", "+/+"] {
        assert_eq!(check_filter(ok), Ok(()), "{ok}");
    }
    for bad in ["", "a/#/c", "a#", "a/b+", "a/+b/c"] {
        assert!(check_filter(bad).is_err(), "{bad}");
    }
}

use crate::config::TEST_BASE as BASE;

fn parse(mqtt: &str) -> Result<crate::config::AgentConfig, Vec<String>> {
    match crate::config::AgentConfig::parse(&format!("{BASE}{mqtt}"), "t.toml") {
        Ok(c) => Ok(c),
        Err(crate::config::ConfigError::Invalid { problems, .. }) => {
            Err(problems.iter().map(ToString::to_string).collect())
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_broker_alone_is_a_source_and_gets_defaults() {
    let c = parse(
        r#"
[[mqtt]]
host = "127.0.0.1"
[[mqtt.subscriptions]]
topic = "plant/+/temp"
series = "{2}.temp"
unit = "degC"
tags = { line = "{2}" }
[[mqtt.subscriptions]]
topic = "plant/+/state"
qos = 1
format = "json"
series = "{2}"
values = [{ pointer = "/temp", name = "temp", unit = "degC" }]
timestamp_pointer = "/ts"
timestamp_format = "ms"
"#,
    )
    .unwrap();
    let b = &c.mqtt[0];
    assert_eq!((b.port, b.client_id.as_str()), (1883, "gw-1-mqtt-0"));
    assert_eq!(b.keep_alive, Duration::from_secs(30));
    assert!(b.clean_session);
    assert_eq!(b.subscriptions[0].format, PayloadFormat::Number);
    assert_eq!(b.subscriptions[1].qos, Qos::AtLeastOnce);
    let PayloadFormat::Json { values, timestamp } = &b.subscriptions[1].format else {
        panic!("json expected");
    };
    assert_eq!(values[0].pointer, "/temp");
    assert_eq!(
        timestamp.as_ref().map(|t| t.format),
        Some(TimestampFormat::Millis)
    );
}

#[test]
fn every_mqtt_problem_is_reported_with_its_key_path() {
    let problems = parse(
        r#"
[[mqtt]]
host = ""
password = "pw"
[[mqtt.subscriptions]]
topic = "plant/#/temp"
series = "{4}.temp"
[[mqtt.subscriptions]]
topic = "plant/+/temp"
qos = 2
format = "xml"
series = "{3}.t"
timestamp_format = "ms"
[[mqtt.subscriptions]]
topic = "plant/+/state"
format = "json"
series = "{9}"
values = [{ pointer = "temp", name = "t" }, { pointer = "/x", name = "t" }]
timestamp_pointer = "/ts"
timestamp_format = "minutes"
"#,
    )
    .unwrap_err()
    .join("\n");
    for expected in [
        "mqtt[0].host: must not be empty",
        "mqtt[0].password: given without a username",
        "mqtt[0].subscriptions[0].topic: \"plant/#/temp\" '#' must be a whole level and the last one",
        "mqtt[0].subscriptions[0].series: {4} but topic \"plant/#/temp\" has only 3 level(s)",
        "mqtt[0].subscriptions[1].qos: 2 is not supported (0 or 1)",
        "mqtt[0].subscriptions[1].format: \"xml\" is not a payload format",
        "mqtt[0].subscriptions[1].timestamp_format: given without timestamp_pointer",
        "mqtt[0].subscriptions[2].series: {9} but topic \"plant/+/state\" has only 3 level(s)",
        "mqtt[0].subscriptions[2].values[0].pointer: \"temp\" is not a JSON pointer",
        "mqtt[0].subscriptions[2].values[1].name: \"t\" is used twice",
        "mqtt[0].subscriptions[2].timestamp_format: \"minutes\" is not a timestamp format",
    ] {
        assert!(problems.contains(expected), "missing {expected:?} in:\n{problems}");
    }
}

#[test]
fn the_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/agent.example.toml");
    let c = crate::config::AgentConfig::load(std::path::Path::new(path)).unwrap();
    assert!(!c.mqtt.is_empty(), "the example shows an [[mqtt]] section");
}

#[test]
fn templates_match_the_names_a_topic_could_give() {
    let t = Template::parse("{2}.temp").unwrap();
    for (name, want) in [
        ("l1.temp", true),
        ("line-1.temp", true),
        (".temp", true),
        ("a/b.temp", false),
        ("l1.tempx", false),
        ("l1.pressure", false),
    ] {
        assert_eq!(t.could_expand_to(name), want, "{name}");
    }
    let t = Template::parse("plant.{1}.{3}").unwrap();
    assert!(t.could_expand_to("plant.a.b.c"));
    assert!(!t.could_expand_to("site.a.b"));
}

#[test]
fn rules_may_name_series_that_mqtt_subscriptions_produce() {
    let mqtt = r#"
[[mqtt]]
host = "127.0.0.1"
[[mqtt.subscriptions]]
topic = "plant/+/temp"
series = "{2}.temp"
[[mqtt.subscriptions]]
topic = "plant/+/drive"
format = "json"
series = "{2}.drive"
values = [{ pointer = "/rpm", name = "rpm" }]
[[mqtt.subscriptions]]
topic = "plant/+/energy"
format = "json-object"
series = "{2}.energy"
"#;
    let rules = r#"
[[rules]]
name = "a"
series = "l1.temp"
max = 1.0
[[rules]]
name = "b"
series = "l1.drive.rpm"
max = 1.0
[[rules]]
name = "c"
series = "l1.energy.import"
max = 1.0
"#;
    parse(&format!("{mqtt}{rules}")).unwrap();
    let problems = parse(&format!(
        "{mqtt}{}",
        rules
            .replace("l1.temp", "l1.pressure")
            .replace("l1.drive.rpm", "l1.drive.current")
    ))
    .unwrap_err()
    .join("\n");
    for expected in [
        "rules[0].series: \"l1.pressure\" is not a configured series",
        "rules[1].series: \"l1.drive.current\" is not a configured series",
    ] {
        assert!(
            problems.contains(expected),
            "missing {expected:?} in:\n{problems}"
        );
    }
}

/// Test certificates made once with the openssl CLI (a CA, a client
/// certificate it signed with its key, and an unrelated key); config
/// validation reads and checks them but never connects.
const TESTDATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/config/mqtt/testdata");

fn tls_broker(protocol: &str, tls: &str) -> String {
    format!(
        r#"
[[mqtt]]
host = "broker.plant"
protocol = "{protocol}"
[mqtt.tls]
{tls}
[[mqtt.subscriptions]]
topic = "plant/+/temp"
series = "{{2}}.temp"
"#
    )
}

#[test]
fn tls_brokers_default_to_port_8883_and_mqtt_5_is_chosen_per_broker() {
    let c = parse(&tls_broker(
        "5",
        &format!(
            r#"ca_file = "{TESTDATA}/ca.pem"
client_cert_file = "{TESTDATA}/client.pem"
client_key_file = "{TESTDATA}/client.key""#
        ),
    ))
    .unwrap();
    let b = &c.mqtt[0];
    assert_eq!((b.port, b.protocol), (8883, MqttProtocol::V5));
    let tls = b.tls.as_ref().expect("tls");
    assert!(tls.ca_file.ends_with("testdata/ca.pem"));
    assert!(tls
        .client_auth
        .as_ref()
        .is_some_and(|(_, key)| key.ends_with("client.key")));

    let c = parse(&tls_broker(
        "3.1.1",
        &format!(r#"ca_file = "{TESTDATA}/ca.pem""#),
    ))
    .unwrap();
    assert_eq!(c.mqtt[0].protocol, MqttProtocol::V311);
    assert_eq!(c.mqtt[0].tls.as_ref().unwrap().client_auth, None);
}

#[test]
fn relative_tls_files_are_taken_from_the_config_files_directory() {
    let text = format!("{BASE}{}", tls_broker("5", r#"ca_file = "ca.pem""#));
    let c = crate::config::AgentConfig::parse_in(&text, "t.toml", std::path::Path::new(TESTDATA))
        .unwrap();
    assert_eq!(
        c.mqtt[0].tls.as_ref().unwrap().ca_file,
        std::path::Path::new(TESTDATA).join("ca.pem")
    );
}

#[test]
fn every_tls_problem_names_the_key_and_the_file() {
    let cases = [
        (
            "6".to_string(),
            format!(r#"ca_file = "{TESTDATA}/ca.pem""#),
            "mqtt[0].protocol: \"6\" is not a supported MQTT version (\"3.1.1\" or \"5\")".to_string(),
        ),
        (
            "5".into(),
            format!(r#"ca_file = "{TESTDATA}/missing.pem""#),
            format!("mqtt[0].tls.ca_file: cannot read \"{TESTDATA}/missing.pem\": "),
        ),
        (
            "5".into(),
            format!(r#"ca_file = "{TESTDATA}/client.key""#),
            format!("mqtt[0].tls.ca_file: \"{TESTDATA}/client.key\" holds no PEM certificate"),
        ),
        (
            "5".into(),
            format!(
                r#"ca_file = "{TESTDATA}/ca.pem"
client_cert_file = "{TESTDATA}/client.pem""#
            ),
            "mqtt[0].tls.client_key_file: required with client_cert_file".into(),
        ),
        (
            "5".into(),
            format!(
                r#"ca_file = "{TESTDATA}/ca.pem"
client_key_file = "{TESTDATA}/client.key""#
            ),
            "mqtt[0].tls.client_cert_file: required with client_key_file".into(),
        ),
        (
            "5".into(),
            format!(
                r#"ca_file = "{TESTDATA}/ca.pem"
client_cert_file = "{TESTDATA}/client.pem"
client_key_file = "{TESTDATA}/ca.pem""#
            ),
            format!("mqtt[0].tls.client_key_file: \"{TESTDATA}/ca.pem\" holds no usable PEM private key"),
        ),
        (
            "5".into(),
            format!(
                r#"ca_file = "{TESTDATA}/ca.pem"
client_cert_file = "{TESTDATA}/client.pem"
client_key_file = "{TESTDATA}/other.key""#
            ),
            format!("mqtt[0].tls.client_key_file: \"{TESTDATA}/other.key\" does not go with client_cert_file \"{TESTDATA}/client.pem\""),
        ),
    ];
    for (protocol, tls, expected) in cases {
        let problems = parse(&tls_broker(&protocol, &tls)).unwrap_err().join("\n");
        assert!(
            problems.contains(&expected),
            "missing {expected:?} in:\n{problems}"
        );
    }
}

/// The example's commented MQTT 5 TLS broker, uncommented, with the test
/// certificates in place of the gateway's: the documented keys stay valid.
#[test]
fn the_example_tls_broker_is_valid_once_uncommented() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/agent.example.toml");
    let example = std::fs::read_to_string(path).unwrap();
    let block: String = example
        .lines()
        .skip_while(|l| !l.starts_with("# [[mqtt]]"))
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or("")))
        .collect();
    assert!(block.contains("[mqtt.tls]"), "no TLS example in:\n{block}");
    let block = block.replace("/etc/edge-agent/mqtt", TESTDATA);
    let c = parse(&block).unwrap_or_else(|p| panic!("{}\n{block}", p.join("\n")));
    assert_eq!(c.mqtt[0].protocol, MqttProtocol::V5);
    assert!(c.mqtt[0].tls.as_ref().unwrap().client_auth.is_some());
    assert!(!c.mqtt[0].clean_session);
}

/// Regression guard: rumqttc's MQTT 5 client panics on a keep-alive under
/// 5 s, so the config must refuse it rather than let the agent crash.
#[test]
fn an_mqtt_5_keep_alive_under_5_s_is_a_config_error() {
    let short = parse(
        r#"
[[mqtt]]
host = "broker.plant"
protocol = "5"
keep_alive_s = 0
[[mqtt.subscriptions]]
topic = "plant/+/temp"
series = "{2}.temp"
"#,
    )
    .unwrap_err();
    assert_eq!(
        short,
        ["mqtt[0].keep_alive_s: 0 is too short for protocol \"5\" (5..=65535; MQTT 5 keep-alive cannot be disabled)"]
    );
}

#[test]
fn sparkplug_subscriptions_and_their_mistakes() {
    let ok = parse(
        "[[mqtt]]\nhost = \"b\"\n[[mqtt.subscriptions]]\ntopic = \"spBv1.0/plant1/#\"\nformat = \"sparkplug\"\nseries = \"{2}.{4}\"\nrebirth_requests = true\nproperty_tags = [\"area\"]\n",
    )
    .unwrap();
    assert_eq!(
        ok.mqtt[0].subscriptions[0].format,
        PayloadFormat::Sparkplug {
            rebirth_requests: true,
            property_tags: vec!["area".into()],
        }
    );
    let off = parse(
        "[[mqtt]]\nhost = \"b\"\n[[mqtt.subscriptions]]\ntopic = \"spBv1.0/#\"\nformat = \"sparkplug\"\nseries = \"{2}\"\n",
    )
    .unwrap();
    assert_eq!(
        off.mqtt[0].subscriptions[0].format,
        PayloadFormat::Sparkplug {
            rebirth_requests: false,
            property_tags: Vec::new(),
        },
        "rebirth requests are off unless asked for"
    );
    let errors = parse(
        "[[mqtt]]\nhost = \"b\"\n\
         [[mqtt.subscriptions]]\ntopic = \"plant/#\"\nformat = \"sparkplug\"\nseries = \"{2}.{5}\"\ntimestamp_pointer = \"/t\"\ntimestamp_format = \"ms\"\n\
         [[mqtt.subscriptions]]\ntopic = \"plant/+/t\"\nseries = \"{2}\"\nrebirth_requests = true\nproperty_tags = [\"a\"]\n\
         [[mqtt.subscriptions]]\ntopic = \"spBv1.0/#\"\nformat = \"sparkplug\"\nseries = \"{2}\"\nproperty_tags = [\"edge_node\"]\n",
    )
    .unwrap_err();
    for want in [
        "mqtt[0].subscriptions[0].topic: \"plant/#\": Sparkplug B topics start with \"spBv1.0/\"",
        "mqtt[0].subscriptions[0].series: {5}: a Sparkplug node topic has 4 levels",
        "mqtt[0].subscriptions[0].timestamp_pointer: not used with format \"sparkplug\"",
        "mqtt[0].subscriptions[1].rebirth_requests: only used with format \"sparkplug\"",
        "mqtt[0].subscriptions[1].property_tags: only used with format \"sparkplug\"",
        "mqtt[0].subscriptions[2].property_tags[0]: \"edge_node\" cannot be a tag name",
    ] {
        assert!(
            errors.iter().any(|e| e.starts_with(want)),
            "{want}\nin {errors:#?}"
        );
    }
}
