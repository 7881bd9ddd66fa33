//! `[status]`: the local address where the agent serves Prometheus metrics
//! and `/healthz` (see [`crate::status`]), and how long the pipeline may
//! stand still before `/healthz` calls it stuck. Raw section and its
//! validation; the section is optional and the page is off without it.

use crate::config::issue::Problems;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// `[status]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatus {
    /// Address and port of the status page (/metrics and /healthz), for example "127.0.0.1:9810"; keep it on a local or plant-network address, it has no authentication.
    pub listen: String,
    /// /healthz answers 503 when readings were produced in the last `stuck_after_s` seconds but none was committed to the spool in that time, or when the spool holds a reading older than this and no upload succeeded in that time (default 300).
    pub stuck_after_s: Option<u64>,
}

/// The validated `[status]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusConfig {
    pub listen: SocketAddr,
    pub stuck_after: Duration,
}

/// Validate the section, pushing problems with their key paths to `p`.
pub(crate) fn validate(p: &mut Problems, raw: &RawStatus) -> StatusConfig {
    let listen = raw.listen.parse().unwrap_or_else(|_| {
        p.add(
            "status.listen",
            format!(
                "{:?} is not an address and port like \"127.0.0.1:9810\"",
                raw.listen
            ),
        );
        SocketAddr::from(([127, 0, 0, 1], 0))
    });
    let stuck_after_s = raw.stuck_after_s.unwrap_or(300);
    if stuck_after_s == 0 {
        p.add("status.stuck_after_s", "must be at least 1");
    }
    StatusConfig {
        listen,
        stuck_after: Duration::from_secs(stuck_after_s),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{AgentConfig, TEST_BASE};

    fn parse(status: &str) -> Result<AgentConfig, String> {
        let text =
            format!("{TEST_BASE}[[simulated]]\nname = \"s\"\nmean = 1.0\n[status]\n{status}\n");
        AgentConfig::parse(&text, "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn status_is_off_without_the_section_and_defaults_the_window() {
        let text = format!("{TEST_BASE}[[simulated]]\nname = \"s\"\nmean = 1.0\n");
        assert!(AgentConfig::parse(&text, "t.toml")
            .unwrap()
            .status
            .is_none());
        let c = parse("listen = \"127.0.0.1:9810\"")
            .unwrap()
            .status
            .unwrap();
        assert_eq!(c.listen.port(), 9810);
        assert_eq!(c.stuck_after.as_secs(), 300);
    }

    #[test]
    fn bad_address_and_zero_window_are_reported_with_key_paths() {
        let err = parse("listen = \"localhost\"\nstuck_after_s = 0").unwrap_err();
        assert!(
            err.contains("status.listen: \"localhost\" is not an address"),
            "{err}"
        );
        assert!(
            err.contains("status.stuck_after_s: must be at least 1"),
            "{err}"
        );
    }
}
