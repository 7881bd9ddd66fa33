//! `[alarm_publish]`: the local MQTT broker the agent publishes alarm events
//! and per-series alarm state to, for an HMI on the plant network, and the
//! topic it takes acknowledgements from. Raw section and its validation.

use crate::config::issue::Problems;
use serde::Deserialize;

/// `[alarm_publish]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlarmPublish {
    /// Host name or address of the local MQTT broker (for example "127.0.0.1").
    pub host: String,
    /// TCP port of the broker (default 1883).
    pub port: Option<u16>,
    /// First level of every alarm topic: events on `"<topic_prefix>/<gateway_id>/events"`, retained state on `"<topic_prefix>/<gateway_id>/state/<series>"`, acknowledgements read from `"<topic_prefix>/<gateway_id>/ack/<series>"` (default "alarms").
    pub topic_prefix: Option<String>,
    /// MQTT client id of the publisher (default "<gateway_id>-alarms").
    pub client_id: Option<String>,
}

/// The validated `[alarm_publish]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct AlarmPublishConfig {
    pub host: String,
    pub port: u16,
    /// "<topic_prefix>/<gateway_id>": every topic starts with it.
    pub topic_root: String,
    pub client_id: String,
}

impl AlarmPublishConfig {
    /// Where every alarm event goes (QoS 1, not retained).
    pub fn events_topic(&self) -> String {
        format!("{}/events", self.topic_root)
    }

    /// The retained state of one series.
    pub fn state_topic(&self, series: &str) -> String {
        format!("{}/state/{series}", self.topic_root)
    }

    /// The filter acknowledgements arrive on; the series is what follows
    /// "ack/" (it may contain '/').
    pub fn ack_filter(&self) -> String {
        format!("{}/ack/#", self.topic_root)
    }

    /// Where re-baselining commands arrive (QoS 1): a JSON request with
    /// its credentials ([`crate::rebaseline::Body`]).
    pub fn rebaseline_topic(&self) -> String {
        format!("{}/rebaseline", self.topic_root)
    }

    /// Where the answer to each re-baselining command goes (QoS 1, not
    /// retained).
    pub fn rebaseline_result_topic(&self) -> String {
        format!("{}/rebaseline/result", self.topic_root)
    }

    /// The series an acknowledgement topic names, if it is one.
    pub fn ack_series<'t>(&self, topic: &'t str) -> Option<&'t str> {
        topic
            .strip_prefix(self.topic_root.as_str())?
            .strip_prefix("/ack/")
            .filter(|s| !s.is_empty())
    }
}

/// Validate the section, pushing problems with their key paths to `p`.
pub(crate) fn validate(
    p: &mut Problems,
    raw: &RawAlarmPublish,
    gateway_id: &str,
) -> AlarmPublishConfig {
    if raw.host.trim().is_empty() {
        p.add("alarm_publish.host", "must not be empty");
    }
    let prefix = raw.topic_prefix.as_deref().unwrap_or("alarms");
    let plain = |s: &str| {
        !s.is_empty() && !s.starts_with('/') && !s.ends_with('/') && !s.contains(['+', '#', '\0'])
    };
    if !plain(prefix) {
        p.add("alarm_publish.topic_prefix", format!("{prefix:?} must be a non-empty topic without '+', '#' or a leading or trailing '/'"));
    }
    let client_id = raw
        .client_id
        .clone()
        .unwrap_or_else(|| format!("{gateway_id}-alarms"));
    if client_id.is_empty() || client_id.len() > 128 {
        p.add(
            "alarm_publish.client_id",
            format!("{client_id:?} must be 1..=128 bytes"),
        );
    }
    AlarmPublishConfig {
        host: raw.host.clone(),
        port: raw.port.unwrap_or(1883),
        topic_root: format!("{prefix}/{gateway_id}"),
        client_id,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{AgentConfig, ConfigError, TEST_BASE};

    fn parse(section: &str) -> Result<AgentConfig, ConfigError> {
        let text = format!(
            "{TEST_BASE}[[simulated]]\nname = \"s\"\nmean = 1.0\n[alarm_publish]\n{section}"
        );
        AgentConfig::parse(&text, "t.toml")
    }

    #[test]
    fn defaults_and_topics() {
        let c = parse("host = \"127.0.0.1\"\n").unwrap();
        let a = c.alarm_publish.unwrap();
        assert_eq!((a.port, a.client_id.as_str()), (1883, "gw-1-alarms"));
        assert_eq!(a.events_topic(), "alarms/gw-1/events");
        assert_eq!(
            a.state_topic("press-3.oil_temp"),
            "alarms/gw-1/state/press-3.oil_temp"
        );
        assert_eq!(a.ack_filter(), "alarms/gw-1/ack/#");
        assert_eq!(a.ack_series("alarms/gw-1/ack/line/a.t"), Some("line/a.t"));
        assert_eq!(a.ack_series("alarms/gw-1/ack/"), None);
        assert_eq!(a.ack_series("alarms/gw-1/state/x"), None);
        assert_eq!(a.rebaseline_topic(), "alarms/gw-1/rebaseline");
        assert_eq!(a.ack_series("alarms/gw-1/rebaseline"), None);
    }

    #[test]
    fn example_config_section_is_what_it_says() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/agent.example.toml");
        let c = AgentConfig::load(std::path::Path::new(path)).unwrap();
        let a = c.alarm_publish.unwrap();
        assert_eq!((a.host.as_str(), a.port), ("127.0.0.1", 1883));
        assert_eq!(a.events_topic(), format!("alarms/{}/events", c.gateway_id));
        assert_eq!(a.client_id, format!("{}-alarms", c.gateway_id));
    }

    #[test]
    fn bad_values_are_reported_with_key_paths() {
        let Err(ConfigError::Invalid { problems, .. }) =
            parse("host = \" \"\ntopic_prefix = \"plant/#\"\nclient_id = \"\"\n")
        else {
            panic!("expected validation errors");
        };
        let keys: Vec<&str> = problems.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "alarm_publish.host",
                "alarm_publish.topic_prefix",
                "alarm_publish.client_id"
            ]
        );
        assert_eq!(
            problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "alarm_publish.host: must not be empty",
                "alarm_publish.topic_prefix: \"plant/#\" must be a non-empty topic without '+', '#' or a leading or trailing '/'",
                "alarm_publish.client_id: \"\" must be 1..=128 bytes",
            ]
        );
    }
}
