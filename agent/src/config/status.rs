//! `[status]`: the local address where the agent serves Prometheus metrics,
//! `/healthz`, the technician's page and its JSON API (see
//! [`crate::status`]), how long the pipeline may stand still before
//! `/healthz` calls it stuck, and `[status.auth]`, the credentials the
//! page's one action (alarm acknowledgement) needs. Raw section and its
//! validation; the section is optional and the page is off without it.
//!
//! A credentials file must not be readable by group or others (`chmod
//! 600`): validation refuses it naming the key, and reads it once, at
//! load.

use crate::config::issue::Problems;
use crate::status::auth::StatusAuth;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// `[status]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatus {
    /// Address and port of the status page (the technician's page on /, its JSON on /api/status, /metrics and /healthz), for example "127.0.0.1:9810"; keep it on a local or plant-network address. The page only reads unless [status.auth] is set; check-config warns about an address other than loopback without it.
    pub listen: String,
    /// /healthz answers 503 when readings were produced in the last `stuck_after_s` seconds but none was committed to the spool in that time, or when the spool holds a reading older than this and no upload succeeded in that time (default 300).
    pub stuck_after_s: Option<u64>,
    /// Credentials for the page's actions (acknowledging an alarm); without this section the page has no buttons and the action answers 403.
    pub auth: Option<RawStatusAuth>,
}

/// `[status.auth]` as written: at least one of the two files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStatusAuth {
    /// File holding the access token(s), one a line, sent as "Authorization: Bearer <token>"; it must not be readable by group or others (chmod 600).
    pub token_file: Option<PathBuf>,
    /// File holding HTTP basic credentials, one "user:password" a line; it must not be readable by group or others (chmod 600).
    pub basic_file: Option<PathBuf>,
}

/// The validated `[status]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusConfig {
    pub listen: SocketAddr,
    pub stuck_after: Duration,
    /// `None`: the page is read only.
    pub auth: Option<StatusAuth>,
}

impl StatusConfig {
    /// The warning `check-config` prints (and `run` logs) for a page that
    /// anyone on the network could act on.
    pub fn warning(&self) -> Option<String> {
        (!self.listen.ip().is_loopback() && self.auth.is_none()).then(|| {
            format!(
                "status.listen: {} is reachable from other machines and [status.auth] is not set: anyone there can read the status page (it cannot act without auth)",
                self.listen
            )
        })
    }
}

/// Read a credentials file given at `key`, refusing one readable by group
/// or others.
fn read_secret(p: &mut Problems, key: &str, path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            p.add(key, format!("cannot read {shown}: {e}"));
            return None;
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        p.add(
            key,
            format!("{shown} is readable by group or others (mode {mode:o}); chmod 600 it"),
        );
        return None;
    }
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) => {
            p.add(key, format!("cannot read {shown}: {e}"));
            None
        }
    }
}

fn validate_auth(p: &mut Problems, raw: &RawStatusAuth) -> Option<StatusAuth> {
    if raw.token_file.is_none() && raw.basic_file.is_none() {
        p.add("status.auth", "needs token_file, basic_file or both");
        return None;
    }
    let mut read = |key: &str, path: &Option<PathBuf>| match path {
        Some(path) => read_secret(p, key, path).map(Some),
        None => Some(None),
    };
    let token = read("status.auth.token_file", &raw.token_file);
    let basic = read("status.auth.basic_file", &raw.basic_file);
    let (token, basic) = (token?, basic?);
    match StatusAuth::from_texts(token.as_deref(), basic.as_deref()) {
        Ok(auth) => Some(auth),
        Err((key, error)) => {
            p.add(format!("status.auth.{key}"), error.to_string());
            None
        }
    }
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
        auth: raw.auth.as_ref().and_then(|a| validate_auth(p, a)),
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

    fn secret_file(dir: &std::path::Path, name: &str, text: &str, mode: u32) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path.display().to_string()
    }

    #[test]
    fn auth_files_are_read_and_a_readable_one_is_refused_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let token = secret_file(dir.path(), "token", "tok-1\n", 0o600);
        let basic = secret_file(dir.path(), "basic", "anna:pw\n", 0o640);
        let c = parse(&format!(
            "listen = \"0.0.0.0:9810\"\n[status.auth]\ntoken_file = \"{token}\""
        ))
        .unwrap();
        let status = c.status.clone().unwrap();
        let auth = status.auth.clone().unwrap();
        assert!(auth.takes_token() && !auth.takes_basic());
        assert_eq!(status.warning(), None, "auth set: no warning");
        assert!(c.warnings().iter().all(|w| !w.contains("status.listen")));

        let err = parse(&format!(
            "listen = \"127.0.0.1:9810\"\n[status.auth]\ntoken_file = \"{token}\"\nbasic_file = \"{basic}\""
        ))
        .unwrap_err();
        assert!(
            err.contains("status.auth.basic_file: ")
                && err.contains("readable by group or others (mode 640)"),
            "{err}"
        );
        let err = parse("listen = \"127.0.0.1:9810\"\n[status.auth]\n").unwrap_err();
        assert!(err.contains("status.auth: needs token_file"), "{err}");
        let err = parse(&format!(
            "listen = \"127.0.0.1:9810\"\n[status.auth]\ntoken_file = \"{}/missing\"",
            dir.path().display()
        ))
        .unwrap_err();
        assert!(err.contains("status.auth.token_file: cannot read"), "{err}");
    }

    #[test]
    fn a_page_open_to_the_network_without_auth_is_warned_about() {
        let open = parse("listen = \"0.0.0.0:9810\"").unwrap();
        let w = open.warnings();
        assert!(
            w.iter()
                .any(|w| w
                    .starts_with("status.listen: 0.0.0.0:9810 is reachable from other machines")),
            "{w:?}"
        );
        let local = parse("listen = \"127.0.0.1:9810\"").unwrap();
        assert!(local
            .warnings()
            .iter()
            .all(|w| !w.contains("status.listen")));
        let v6 = parse("listen = \"[::1]:9810\"").unwrap();
        assert!(v6.warnings().iter().all(|w| !w.contains("status.listen")));
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
