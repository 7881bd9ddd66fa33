//! What `edge-agent run` refuses to start with even though the config is
//! valid: the example's placeholder secrets still in place, and a file
//! holding a secret that other users may read.
//!
//! These are not config errors: `check-config` prints them as warnings and
//! exits 0, so the example config (and a config being drafted on a laptop)
//! can still be checked as written; `run` prints the same lines and exits
//! non-zero before it opens the spool or a socket. Each line names the key,
//! the file and what to do about it.
//!
//! Covered: the uplink token equal to the example's (wherever it came from:
//! `token`, `token_file` or `token_env`; configs/relay.example.toml admits
//! it, so a relay set up from the examples would let any such gateway in),
//! and the private key files (`client_key_file`) of the uplink and of each
//! MQTT broker when group or others have any access. The token file itself
//! is stricter: a readable one is already a config error (see
//! [`super::uplink`]). Passwords are written in the config itself, whose
//! mode is the packaging's business (0600 root in the .deb).

use std::path::Path;

use super::AgentConfig;

/// The `[uplink] token` of configs/agent.example.toml.
pub const EXAMPLE_TOKEN: &str = "change-me-0123456789abcdef";

impl AgentConfig {
    /// Why `run` must not start with this config, one line per reason;
    /// empty when it may.
    pub fn refusals(&self) -> Vec<String> {
        let mut r = Vec::new();
        if self.uplink.token.expose() == EXAMPLE_TOKEN {
            r.push(format!(
                "uplink.token: still the placeholder {EXAMPLE_TOKEN:?}: replace the token from \
                 configs/agent.example.toml with this gateway's own (the relay admits it by its \
                 hash: edge-relay hash-token)"
            ));
        }
        if let Some((_, key)) = self
            .uplink
            .tls
            .as_ref()
            .and_then(|t| t.client_auth.as_ref())
        {
            private_file(&mut r, "uplink.client_key_file", key);
        }
        for (i, broker) in self.mqtt.iter().enumerate() {
            if let Some((_, key)) = broker.tls.as_ref().and_then(|t| t.client_auth.as_ref()) {
                private_file(&mut r, &format!("mqtt[{i}].tls.client_key_file"), key);
            }
        }
        r
    }
}

/// Push a refusal when group or others have any access to `file`.
fn private_file(r: &mut Vec<String>, at: &str, file: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(file) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    r.push(format!(
                        "{at}: {} holds a private key and is accessible to group or others \
                         (mode {mode:o}); run chmod 600 {}",
                        file.display(),
                        file.display()
                    ));
                }
            }
            Err(e) => r.push(format!("{at}: cannot read {}: {e}", file.display())),
        }
    }
    #[cfg(not(unix))]
    let _ = (r, at, file);
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::EXAMPLE_TOKEN;
    use crate::config::AgentConfig;

    const SOURCE: &str = "[[simulated]]\nname = \"s\"\nmean = 1.0\n";

    fn config(uplink: &str, rest: &str, dir: &std::path::Path) -> AgentConfig {
        let text = format!(
            "gateway_id = \"gw-1\"\n[spool]\npath = \"/tmp/spool.db\"\n[uplink]\n{uplink}\n{SOURCE}{rest}"
        );
        AgentConfig::parse_in(&text, "t.toml", dir).unwrap()
    }

    #[test]
    fn the_example_config_is_refused_for_its_placeholder_token_only() {
        let example =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/agent.example.toml");
        let c = AgentConfig::load(&example).unwrap();
        let r = c.refusals().join("\n");
        assert!(
            r.contains("uplink.token: still the placeholder")
                && r.contains("replace the token from configs/agent.example.toml"),
            "{r}"
        );
        assert_eq!(c.refusals().len(), 1, "{r}");
        // The constant is the example's value, not a guess at it.
        let text = std::fs::read_to_string(&example).unwrap();
        assert!(text.contains(&format!("\ntoken = \"{EXAMPLE_TOKEN}\"\n")));
    }

    #[test]
    fn the_placeholder_is_refused_from_a_token_file_too_and_a_real_token_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, format!("{EXAMPLE_TOKEN}\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = config(
            "url = \"http://h:1/b\"\ntoken_file = \"token\"",
            "",
            dir.path(),
        );
        assert_eq!(c.refusals().len(), 1, "{:?}", c.refusals());
        let c = config(
            "url = \"http://h:1/b\"\ntoken = \"gw-1-k3y\"",
            "",
            dir.path(),
        );
        assert!(c.refusals().is_empty(), "{:?}", c.refusals());
    }

    #[test]
    fn a_client_key_readable_by_others_is_refused_with_the_chmod_to_run() {
        let testdata =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/config/mqtt/testdata");
        let dir = tempfile::tempdir().unwrap();
        for f in ["ca.pem", "client.pem", "client.key"] {
            std::fs::copy(testdata.join(f), dir.path().join(f)).unwrap();
        }
        let key = dir.path().join("client.key");
        let tls = "ca_file = \"ca.pem\"\nclient_cert_file = \"client.pem\"\nclient_key_file = \"client.key\"";
        let uplink = format!("url = \"https://h:1/b\"\ntoken = \"t\"\n{tls}");
        let mqtt = format!(
            "[[mqtt]]\nhost = \"b\"\n[mqtt.tls]\n{tls}\n[[mqtt.subscriptions]]\ntopic = \"a/+\"\nseries = \"{{2}}\"\n"
        );
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        let r = config(&uplink, &mqtt, dir.path()).refusals();
        let chmod = format!("run chmod 600 {}", key.display());
        for at in ["uplink.client_key_file: ", "mqtt[0].tls.client_key_file: "] {
            assert!(
                r.iter()
                    .any(|l| l.starts_with(at) && l.contains("mode 640") && l.ends_with(&chmod)),
                "no {at} line in {r:?}"
            );
        }
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let r = config(&uplink, &mqtt, dir.path()).refusals();
        assert!(r.is_empty(), "{r:?}");
    }
}
