//! The rules every relay config must follow however it was built (from
//! TOML or in code): [`RelayConfig::problems`], with the server, dedup and
//! topic checks it is made of. Each problem names its key path.

use std::collections::HashSet;

use super::{ConfigIssue, DedupStore, Issues, RelayConfig};

impl RelayConfig {
    /// Rules every config must follow, however it was built. Empty when valid.
    pub fn problems(&self) -> Vec<ConfigIssue> {
        let mut issues = Issues::default();
        if self.gateways.is_empty() {
            issues.add("gateways", "at least one [[gateways]] entry is required");
        }
        let (mut ids, mut tokens) = (HashSet::new(), HashSet::new());
        for (i, gw) in self.gateways.iter().enumerate() {
            if gw.id.is_empty() {
                issues.add(
                    format!("gateways[{i}].id"),
                    "required, and must not be empty",
                );
            } else if !ids.insert(gw.id.as_str()) {
                issues.add(
                    format!("gateways[{i}].id"),
                    format!("{:?} is listed twice", gw.id),
                );
            }
            if gw.tokens.is_empty() {
                issues.add(
                    format!("gateways[{i}].tokens"),
                    "at least one token hash is required (make one with `edge-relay hash-token`)",
                );
            }
            if gw.site.as_deref().is_some_and(str::is_empty) {
                issues.add(format!("gateways[{i}].site"), "must not be empty when set");
            }
            for (key, value) in &gw.tags {
                if key.is_empty() {
                    issues.add(
                        format!("gateways[{i}].tags"),
                        format!("a tag has an empty name (value {value:?})"),
                    );
                }
            }
            for (j, hash) in gw.tokens.iter().enumerate() {
                if !tokens.insert(*hash) {
                    issues.add(
                        format!("gateways[{i}].tokens[{j}]"),
                        "is listed before, for this or another gateway",
                    );
                }
            }
        }
        self.dedup_problems(&mut issues);
        if self.kafka.is_none()
            && self.timeseries.is_none()
            && self.postgres.is_none()
            && self.data_dir.is_none()
        {
            issues.add(
                "data_dir",
                "required when none of [kafka], [timeseries], [postgres] is configured",
            );
        }
        let l = &self.limits;
        for (key, value) in [
            ("max_compressed_bytes", l.max_compressed_bytes),
            ("max_decompressed_bytes", l.max_decompressed_bytes),
            ("max_series", l.max_series),
            ("max_readings", l.max_readings),
            ("max_tags", l.max_tags),
            ("max_string_bytes", l.max_string_bytes),
        ] {
            if value == 0 {
                issues.add(format!("limits.{key}"), "must be greater than 0");
            }
        }
        self.server_problems(&mut issues);
        if let Some(k) = &self.kafka {
            if k.brokers.is_empty() {
                issues.add("kafka.brokers", "at least one broker is required");
            }
            for (i, b) in k.brokers.iter().enumerate() {
                if b.is_empty() || b.contains(',') || b.contains(char::is_whitespace) {
                    issues.add(
                        format!("kafka.brokers[{i}]"),
                        format!("{b:?} is not host:port"),
                    );
                }
            }
            for (key, topic) in [
                ("readings_topic", &k.readings_topic),
                ("alarms_topic", &k.alarms_topic),
                ("readings_topic_v2", &k.readings_topic_v2),
                ("alarms_topic_v2", &k.alarms_topic_v2),
                ("events_topic", &k.events_topic),
            ] {
                if let Err(why) = check_topic(topic) {
                    issues.add(format!("kafka.{key}"), format!("{topic:?}: {why}"));
                }
            }
            // Both generations on one topic would mix two keys per series
            // (and two partitions for it) in one stream.
            if k.message_versions.len() > 1 {
                for v2 in [&k.readings_topic_v2, &k.alarms_topic_v2] {
                    if [&k.readings_topic, &k.alarms_topic].contains(&v2) {
                        issues.add(
                            "kafka.message_versions",
                            format!(
                                "\"both\" needs v2 topics apart from the v1 ones; {v2:?} is both"
                            ),
                        );
                    }
                }
            }
            for (name, value) in &k.producer {
                if let Err(why) = crate::sink::kafka::properties::check(name, value) {
                    issues.add(format!("kafka.producer.{name:?}"), why);
                }
            }
            let ms = k.delivery_timeout.as_millis();
            if !(100..=i32::MAX as u128).contains(&ms) {
                issues.add(
                    "kafka.delivery_timeout_ms",
                    format!("{ms} is outside 100..={}", i32::MAX),
                );
            }
        }
        if let Some(t) = &self.timeseries {
            if t.url.scheme() != "http" {
                let msg = format!(
                    "{:?}: only http:// is supported (no TLS built in yet)",
                    t.url.as_str()
                );
                issues.add("timeseries.url", msg);
            }
            for (key, message) in t.layout.problems() {
                issues.add(format!("timeseries.{key}"), message);
            }
            if t.timeout.is_zero() {
                issues.add("timeseries.timeout_ms", "must be greater than 0");
            }
        }
        if let Some(p) = &self.postgres {
            if let Err(why) = crate::sink::postgres::check_table(&p.table) {
                issues.add("postgres.table", format!("{:?}: {why}", p.table));
            }
            if p.timeout.is_zero() {
                issues.add("postgres.timeout_ms", "must be greater than 0");
            }
            if p.url.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
                issues.add(
                    "postgres.url",
                    "sslmode=require: TLS to PostgreSQL is not built in yet",
                );
            }
        }
        issues.0
    }
}

impl RelayConfig {
    fn server_problems(&self, issues: &mut Issues) {
        let s = &self.server;
        if s.max_connections == 0 {
            issues.add("server.max_connections", "must be greater than 0");
        }
        for (key, value) in [
            ("header_timeout_ms", s.header_timeout),
            ("body_timeout_ms", s.body_timeout),
            ("tls_handshake_timeout_ms", s.tls_handshake_timeout),
        ] {
            if value.is_zero() {
                issues.add(format!("server.{key}"), "must be greater than 0");
            }
        }
        if self.ops_listen == self.listen {
            issues.add(
                "ops.listen",
                format!(
                    "{} is the upload listener's address; the operations endpoints need their own",
                    self.ops_listen
                ),
            );
        }
        let f = &self.fairness;
        for (key, value) in [
            ("requests_per_sec", f.requests_per_sec),
            ("request_burst", f.request_burst),
            ("bytes_per_sec", f.bytes_per_sec),
        ] {
            if value == 0 {
                issues.add(format!("fairness.{key}"), "must be greater than 0");
            }
        }
        if f.byte_burst < self.limits.max_compressed_bytes as u64 {
            issues.add(
                "fairness.byte_burst",
                format!(
                    "{} is below limits.max_compressed_bytes ({}): the largest allowed batch would never pass",
                    f.byte_burst, self.limits.max_compressed_bytes
                ),
            );
        }
    }

    fn dedup_problems(&self, issues: &mut Issues) {
        let d = &self.dedup;
        match d.store {
            DedupStore::Sqlite if self.dedup_path().is_none() => issues.add(
                "dedup.path",
                "required when data_dir is not set: the file where the relay remembers delivered batches",
            ),
            DedupStore::Sqlite => {}
            DedupStore::Postgres => {
                if self.dedup_url().is_none() {
                    issues.add(
                        "dedup.url",
                        "required with store = \"postgres\" when [postgres] is not configured",
                    );
                }
                if let Err(why) = crate::sink::postgres::check_table(&d.table) {
                    issues.add("dedup.table", format!("{:?}: {why}", d.table));
                }
                if d.timeout.is_zero() {
                    issues.add("dedup.timeout_ms", "must be greater than 0");
                }
            }
        }
        if d.window.is_zero() {
            issues.add("dedup.window_hours", "must be greater than 0");
        }
        if self.admission.decode_budget_bytes == 0 {
            issues.add("admission.decode_budget_bytes", "must be greater than 0");
        }
        if d.max_rows == 0 {
            issues.add("dedup.max_rows", "must be greater than 0");
        }
        if d.prune_interval.is_zero() {
            issues.add("dedup.prune_interval_secs", "must be greater than 0");
        }
        // A lease that ends while its delivery still runs lets a retry
        // publish the batch a second time.
        let mut bounds = vec![];
        bounds.extend(
            self.kafka
                .as_ref()
                .map(|k| ("kafka.delivery_timeout_ms", k.delivery_timeout)),
        );
        bounds.extend(
            self.timeseries
                .as_ref()
                .map(|t| ("timeseries.timeout_ms", t.timeout)),
        );
        bounds.extend(
            self.postgres
                .as_ref()
                .map(|p| ("postgres.timeout_ms", p.timeout)),
        );
        if d.store == DedupStore::Postgres {
            bounds.push(("dedup.timeout_ms", d.timeout));
        }
        for (key, bound) in bounds {
            if d.claim_lease <= bound {
                issues.add(
                    "dedup.claim_lease_secs",
                    format!(
                        "{} s must exceed {key} ({} ms): a claim must outlast its delivery",
                        d.claim_lease.as_secs(),
                        bound.as_millis()
                    ),
                );
            }
        }
    }
}

/// Kafka's own rule for topic names.
fn check_topic(topic: &str) -> Result<(), &'static str> {
    if topic.is_empty() || topic.len() > 249 {
        return Err("must be 1 to 249 characters");
    }
    if topic == "." || topic == ".." {
        return Err("must not be . or ..");
    }
    if !topic
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    {
        return Err("may contain only ASCII letters, digits, '.', '_' and '-'");
    }
    Ok(())
}
