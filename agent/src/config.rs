//! Agent configuration: the TOML a technician writes, read in two steps.
//!
//! 1. [`RawConfig`] mirrors the file exactly (`deny_unknown_fields`), so a
//!    misspelt key is an error rather than a silently ignored line.
//! 2. [`AgentConfig::from_raw`] validates it into the types the program uses
//!    and reports *every* problem at once, each with its key path, for
//!    example `modbus[0].points[2].register: 70000 is not a register address`.
//!
//! Between the two, the device profiles that `[[modbus]]` sections name are
//! read from `profiles_dir` ([`Profiles::read`]). The one file access in
//! `from_raw` is the PEM files of `[mqtt.tls]` (see [`mqtt`]) and of
//! `[uplink]` and its token file or variable (see `config/uplink.rs`), read there so
//! that a broken certificate is reported with its key path like any other
//! problem; relative names are resolved against the config file's
//! directory before that.
//!
//! A valid config can still be one `run` refuses (the example's placeholder
//! token, a private key readable by others): [`AgentConfig::refusals`], in
//! the `refusal` module; `check-config` shows those as warnings.
//!
//! Every key has a `///` comment here and the same words in
//! `configs/agent.example.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod alarm_publish;
mod exception;
pub mod frames;
mod issue;
mod modbus;
mod profile;
mod refusal;
mod status;
mod uplink;

pub use self::alarm_publish::{AlarmPublishConfig, RawAlarmPublish};
pub use self::exception::{describe as describe_exception, RawReportByException};
pub use self::uplink::{RawUplink, Secret, UplinkConfig, UplinkTls, DEFAULT_MAX_IN_FLIGHT};

pub use self::modbus::{
    frame_gap, ByteOrder, DataType, Link, ModbusDevice, ModbusPoint, Parity, PollGroup,
    RawModbusDevice, RawPoint, RawSerialLine, SerialLine, Table,
};
pub use self::profile::{Profile, Profiles, RawProfile};
pub use self::refusal::EXAMPLE_TOKEN;
pub use self::status::{RawStatus, StatusConfig};

pub mod mqtt;

pub use self::issue::ConfigIssue;
use self::issue::Problems;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or mistyped keys.
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    /// The file parsed but some values are not acceptable.
    #[error("{path}: {} problem(s):\n  {}", problems.len(), issue::lines(problems))]
    Invalid {
        path: String,
        problems: Vec<ConfigIssue>,
    },
}

/// The agent configuration file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// Identifier of this gateway, as registered on the relay (for example "plant-a-gw-1").
    pub gateway_id: String,
    /// Tags added to every series of this gateway (for example site = "plant-a").
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Directory of the device profiles that `[[modbus]]` sections name with `profile`, one `"<name>.toml"` file each; a relative path is relative to the directory of this config file (default "devices", next to the config file).
    pub profiles_dir: Option<PathBuf>,
    /// Where batches wait until the relay has acknowledged them.
    pub spool: RawSpool,
    /// When readings are sealed into a batch.
    #[serde(default)]
    pub batch: RawBatch,
    /// The relay this gateway forwards to.
    pub uplink: RawUplink,
    /// Serial lines (RS-485 buses) for Modbus RTU devices, by name: [serial.rs485-1].
    #[serde(default)]
    pub serial: BTreeMap<String, RawSerialLine>,
    /// Modbus devices to poll, over TCP or a serial line.
    #[serde(default)]
    pub modbus: Vec<RawModbusDevice>,
    /// Simulated signals, for trying the agent without hardware.
    #[serde(default)]
    pub simulated: Vec<RawSimulated>,
    /// MQTT brokers to subscribe to.
    #[serde(default)]
    pub mqtt: Vec<mqtt::RawMqttBroker>,
    /// Microcontrollers running firmware-shim, on a serial line or behind a serial server.
    #[serde(default)]
    pub frames: Vec<frames::RawFrames>,
    /// Threshold rules evaluated on the gateway.
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// Report by exception (opt-in, lossy): series whose readings are sent only when they move, or as a heartbeat; alarms still see every sample.
    #[serde(default)]
    pub report_by_exception: Vec<RawReportByException>,
    /// Publish alarm events and per-series alarm state on a local MQTT broker (optional).
    pub alarm_publish: Option<RawAlarmPublish>,
    /// Serve Prometheus metrics and /healthz on a local address (optional; off when absent).
    pub status: Option<RawStatus>,
}

/// `[spool]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    /// Path of the SQLite spool database; its directory must exist and be writable.
    pub path: PathBuf,
    /// How a commit reaches the disk: "full" (default) syncs every commit, so a power failure loses nothing committed; "normal" syncs only at checkpoints, so a power failure may lose the last few seconds of commits (the database stays consistent; an agent crash alone loses nothing).
    pub synchronous: Option<String>,
    /// Largest size of the spool on disk (database plus WAL) in bytes; when a batch does not fit, `on_full` applies. Default: the spool's files plus half the free space of its filesystem at start-up. The disk is a bound too: the spool never takes the last 256 KiB of its filesystem (docs/spool-sizing.md). At least 65536.
    pub max_bytes: Option<u64>,
    /// Reading batches older than this many seconds are dropped and reported to the relay as a gap, in runs (once the oldest is a tenth past the bound) so a long outage makes a few gaps (default: kept until forwarded).
    pub max_age_s: Option<u64>,
    /// When the spool is full: "drop-oldest" (default) drops the oldest reading batches, then alarm batches, and records a gap; "block" makes the agent wait, so the sources slow down and MQTT acknowledgements wait.
    pub on_full: Option<String>,
}

/// `[batch]`
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    /// Seal a batch once it holds this many readings (default 1000).
    pub max_readings: Option<usize>,
    /// Seal a batch at the latest this many milliseconds after its first reading (default 1000).
    pub max_age_ms: Option<u64>,
}

/// `[[simulated]]`: a generated signal.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSimulated {
    /// Series name.
    pub name: String,
    /// Time between samples in milliseconds (default 1000).
    pub interval_ms: Option<u64>,
    /// Mean value of the sine wave.
    pub mean: f64,
    /// Amplitude of the sine wave (default 1).
    pub amplitude: Option<f64>,
    /// Period of the sine wave in seconds (default 60).
    pub period_s: Option<f64>,
    /// Engineering unit.
    #[serde(default)]
    pub unit: String,
}

mod rules;
mod spc;

pub use self::rules::{parse_rule_set, RawFlatline, RawLimit, RawRate, RawRule, RawTimeout};
pub use self::spc::{RawMode, RawSpc};

/// The validated configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub gateway_id: String,
    pub tags: BTreeMap<String, String>,
    pub spool_path: PathBuf,
    /// `[spool]` durability and bounds.
    pub spool: crate::spool::SpoolOptions,
    pub batch: BatchConfig,
    pub uplink: UplinkConfig,
    pub modbus: Vec<ModbusDevice>,
    pub simulated: Vec<SimulatedSignal>,
    pub mqtt: Vec<mqtt::MqttBroker>,
    pub frames: Vec<frames::FramesDevice>,
    pub rules: Vec<crate::detect::Rule>,
    /// `[[report_by_exception]]`; empty (every reading sent) by default.
    pub report_by_exception: Vec<crate::exception::ExceptionRule>,
    pub alarm_publish: Option<AlarmPublishConfig>,
    pub status: Option<StatusConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchConfig {
    pub max_readings: usize,
    pub max_age: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SimulatedSignal {
    pub name: String,
    pub interval: Duration,
    pub mean: f64,
    pub amplitude: f64,
    pub period_s: f64,
    pub unit: String,
}

impl AgentConfig {
    /// Read, parse and validate a config file; profiles are found
    /// relative to the file's directory.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new(""));
        AgentConfig::parse_in(&text, &path.display().to_string(), dir)
    }

    /// Parse and validate config text; `origin` names it in errors.
    /// Profiles are found relative to the current directory.
    pub fn parse(text: &str, origin: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse_in(text, origin, Path::new(""))
    }

    /// Parse and validate config text as if it were a file in `dir`: a
    /// relative `profiles_dir` (and its default, "devices") is taken from there.
    pub fn parse_in(text: &str, origin: &str, dir: &Path) -> Result<AgentConfig, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        for broker in &mut raw.mqtt {
            if let Some(tls) = &mut broker.tls {
                tls.resolve_in(dir);
            }
        }
        raw.uplink.resolve_in(dir);
        let profiles_dir = dir.join(raw.profiles_dir.as_deref().unwrap_or(Path::new("devices")));
        let names = raw.modbus.iter().filter_map(|d| d.profile.as_deref());
        let profiles = Profiles::read(&profiles_dir, names);
        AgentConfig::from_raw(raw, &profiles).map_err(|problems| ConfigError::Invalid {
            path: origin.to_owned(),
            problems,
        })
    }

    /// Validate one serial line given outside a config file (the probe's
    /// `--rtu`), with the same rules and words as a `[serial.<name>]` section.
    pub fn serial_line(name: &str, raw: &RawSerialLine) -> Result<SerialLine, Vec<ConfigIssue>> {
        let mut p = Problems::default();
        let one = BTreeMap::from([(name.to_string(), raw)]);
        let mut lines = modbus::validate_serial_lines(&mut p, one);
        match lines.remove(name) {
            Some(line) if p.is_empty() => Ok(line),
            _ => Err(p.into_issues()),
        }
    }

    /// Validate a parsed file with the profiles it names, collecting every
    /// problem with its key path.
    pub fn from_raw(raw: RawConfig, profiles: &Profiles) -> Result<AgentConfig, Vec<ConfigIssue>> {
        let mut p = Problems::default();
        check_name(&mut p, "gateway_id", &raw.gateway_id);
        let batch = BatchConfig {
            max_readings: raw.batch.max_readings.unwrap_or(1000),
            max_age: ms(raw.batch.max_age_ms.unwrap_or(1000)),
        };
        if batch.max_readings == 0 || batch.max_readings > 1_000_000 {
            p.add(
                "batch.max_readings",
                format!("{} is out of range (1..=1000000)", batch.max_readings),
            );
        }
        let spool = validate_spool(&mut p, &raw.spool);
        let uplink = uplink::validate(&mut p, &raw.uplink);
        let lines = modbus::validate_serial_lines(&mut p, &raw.serial);
        let mut modbus = Vec::new();
        let mut indexed = Vec::new();
        let mut device_names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, d) in raw.modbus.iter().enumerate() {
            if let Some(first) = device_names.insert(&d.name, i) {
                p.add(format!("modbus[{i}].name"), format!("{:?} is already the name of modbus[{first}]; device names name series and metrics, so each must be unique", d.name));
            }
            if let Some(dev) = modbus::validate_device(&mut p, i, d, profiles, &lines) {
                indexed.push(i);
                modbus.push(dev);
            }
        }
        let numbered: Vec<_> = indexed.iter().copied().zip(modbus.iter()).collect();
        modbus::check_serial_units(&mut p, &numbered);

        let simulated = raw
            .simulated
            .iter()
            .enumerate()
            .map(|(i, s)| {
                check_name(&mut p, &format!("simulated[{i}].name"), &s.name);
                let period_s = s.period_s.unwrap_or(60.0);
                if !(period_s.is_finite() && period_s > 0.0) {
                    p.add(
                        format!("simulated[{i}].period_s"),
                        format!("{period_s} must be a positive number"),
                    );
                }
                SimulatedSignal {
                    name: s.name.clone(),
                    interval: ms(s.interval_ms.unwrap_or(1000).max(1)),
                    mean: s.mean,
                    amplitude: s.amplitude.unwrap_or(1.0),
                    period_s,
                    unit: s.unit.clone(),
                }
            })
            .collect::<Vec<_>>();
        let mqtt: Vec<mqtt::MqttBroker> = raw
            .mqtt
            .iter()
            .enumerate()
            .map(|(i, b)| mqtt::validate_broker(&mut p, i, b, &raw.gateway_id))
            .collect();
        // Every series with the key that defines it, to name the second.
        let defined: Vec<(String, String)> = indexed
            .iter()
            .zip(&modbus)
            .flat_map(|(&i, d)| {
                d.points.iter().map(move |pt| {
                    (
                        format!("{}.{}", d.name, pt.name),
                        format!("modbus[{i}] point {:?}", pt.name),
                    )
                })
            })
            .chain(
                simulated
                    .iter()
                    .enumerate()
                    .map(|(k, s)| (s.name.clone(), format!("simulated[{k}].name"))),
            )
            .collect();
        let mut first_at: BTreeMap<&str, &str> = BTreeMap::new();
        for (series, at) in &defined {
            if let Some(first) = first_at.insert(series, at) {
                p.add(
                    at,
                    format!("series {series:?} is defined twice (first by {first})"),
                );
                first_at.insert(series, first);
            }
        }
        let mut series_names: Vec<String> = defined.into_iter().map(|(s, _)| s).collect();
        series_names.sort();
        series_names.dedup();
        let modbus_lines: std::collections::HashSet<String> = modbus
            .iter()
            .filter_map(|d| match &d.link {
                Link::Serial(l) => Some(l.name.clone()),
                Link::Tcp(_) => None,
            })
            .collect();
        let frames = frames::validate(&mut p, &raw.frames, &lines, &modbus_lines);
        // MQTT series are named by templates (checked by the mqtt module),
        // frames series by the device's birth: not known before.
        let known = (mqtt.is_empty() && frames.is_empty()).then_some(&series_names[..]);
        let rules = rules::validate(&mut p, &raw.rules, known);
        let report_by_exception = exception::validate(&mut p, &raw.report_by_exception, known);
        if !mqtt.is_empty() {
            mqtt::check_rule_series(&mut p, &raw.rules, &series_names, &mqtt);
        }
        let alarm_publish = raw
            .alarm_publish
            .as_ref()
            .map(|a| alarm_publish::validate(&mut p, a, &raw.gateway_id));
        let status = raw.status.as_ref().map(|s| status::validate(&mut p, s));
        // Counted as written: a section that failed validation is reported
        // already, not again as a missing source.
        if raw.modbus.is_empty() && simulated.is_empty() && mqtt.is_empty() && raw.frames.is_empty()
        {
            p.add(
                "sources",
                "none configured; add at least one [[modbus]], [[simulated]], [[mqtt]] or [[frames]] section",
            );
        }
        if !p.is_empty() {
            return Err(p.into_issues());
        }
        Ok(AgentConfig {
            gateway_id: raw.gateway_id,
            tags: raw.tags,
            spool_path: raw.spool.path,
            spool,
            batch,
            uplink,
            modbus,
            simulated,
            mqtt,
            frames,
            rules,
            report_by_exception,
            alarm_publish,
            status,
        })
    }
}

impl AgentConfig {
    /// What `check-config` prints as warnings and `run` logs: likely
    /// mistakes the config may still mean (registers in the 4xxxx/3xxxx notation of device manuals).
    pub fn warnings(&self) -> Vec<String> {
        let mut w = modbus::notation_warnings(&self.modbus);
        w.extend(self.status.as_ref().and_then(|s| s.warning()));
        w
    }
}

/// `[spool]` without the path.
fn validate_spool(p: &mut Problems, raw: &RawSpool) -> crate::spool::SpoolOptions {
    use crate::spool::{OnFull, SpoolOptions, Synchronous};
    let synchronous = match raw.synchronous.as_deref() {
        None | Some("full") => Synchronous::Full,
        Some("normal") => Synchronous::Normal,
        Some(other) => {
            p.add(
                "spool.synchronous",
                format!("{other:?} must be \"full\" or \"normal\""),
            );
            Synchronous::Full
        }
    };
    let on_full = match raw.on_full.as_deref() {
        None | Some("drop-oldest") => OnFull::DropOldest,
        Some("block") => OnFull::Block,
        Some(other) => {
            p.add(
                "spool.on_full",
                format!("{other:?} must be \"drop-oldest\" or \"block\""),
            );
            OnFull::DropOldest
        }
    };
    if let Some(b) = raw.max_bytes.filter(|&b| b < 65_536) {
        p.add(
            "spool.max_bytes",
            format!("{b} is below the smallest spool (65536)"),
        );
    }
    if raw.max_age_s == Some(0) {
        p.add(
            "spool.max_age_s",
            "0 would drop every batch; leave it out for no limit",
        );
    }
    SpoolOptions {
        synchronous,
        max_bytes: raw.max_bytes,
        max_age: raw.max_age_s.map(Duration::from_secs),
        on_full,
    }
}

/// Names end up in series names, Kafka keys and line protocol: keep them plain.
fn check_name(p: &mut Problems, at: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if !ok {
        p.add(
            at,
            format!("{name:?} must be 1..=128 characters of letters, digits, '-', '_', '.', '/'"),
        );
    }
}

fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// The keys every agent config must have, for tests that write a config as
/// text and add only the sections they are about. It ends inside `[uplink]`,
/// so top-level keys go before it and sections after it.
#[cfg(test)]
pub(crate) const TEST_BASE: &str = r#"
gateway_id = "gw-1"
[spool]
path = "/tmp/spool.db"
[uplink]
url = "http://127.0.0.1:8080/v1/batches"
token = "secret"
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> String {
        format!(
            r#"{TEST_BASE}[[modbus]]
name = "press-3"
address = "127.0.0.1:502"
[[modbus.points]]
name = "oil_temp"
register = 100
type = "i16"
scale = 0.1
"#
        )
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = AgentConfig::parse(&minimal(), "t.toml").unwrap();
        assert_eq!(c.batch.max_readings, 1000);
        assert_eq!(c.modbus[0].unit, 1);
        assert_eq!(c.modbus[0].points[0].data_type, DataType::I16);
        assert_eq!(c.modbus[0].points[0].scale, 0.1);
    }

    #[test]
    fn unknown_key_is_rejected_with_its_name() {
        let text = minimal().replace("token = \"secret\"", "token = \"s\"\ntokn = \"x\"");
        let err = AgentConfig::parse(&text, "t.toml").unwrap_err().to_string();
        assert!(err.contains("tokn"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_with_its_key_path() {
        let text = minimal()
            .replace("register = 100", "register = 70000")
            .replace("type = \"i16\"", "type = \"i17\"")
            .replace("127.0.0.1:502", "plc-3")
            + "[[rules]]\nname = \"r\"\nseries = \"nope\"\nmax = 1.0\n";
        let Err(ConfigError::Invalid { problems, .. }) = AgentConfig::parse(&text, "t.toml") else {
            panic!("expected validation errors");
        };
        let all = problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
        for expected in [
            "modbus[0].points[0].register: 70000 is not a register address (0..=65535)",
            "modbus[0].points[0].type: \"i17\" is not a data type",
            "modbus[0].address: \"plc-3\" is not host:port",
            "rules[0].series: \"nope\" is not a configured series",
        ] {
            assert!(all.contains(expected), "missing {expected:?} in:\n{all}");
        }
    }

    #[test]
    fn f32_at_last_register_does_not_fit() {
        let text = minimal()
            .replace("register = 100", "register = 65535")
            .replace("type = \"i16\"", "type = \"f32\"");
        assert!(AgentConfig::parse(&text, "t.toml").is_err());
    }

    #[test]
    fn spool_defaults_are_full_sync_unbounded_drop_oldest() {
        let c = AgentConfig::parse(&minimal(), "t.toml").unwrap();
        assert_eq!(c.spool, crate::spool::SpoolOptions::default());
        assert_eq!(c.spool.synchronous, crate::spool::Synchronous::Full);
        assert_eq!(c.spool.on_full, crate::spool::OnFull::DropOldest);
    }

    #[test]
    fn spool_section_of_the_example_is_what_it_says() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../configs/agent.example.toml");
        let c = AgentConfig::load(std::path::Path::new(path)).unwrap();
        assert_eq!(
            c.spool.max_bytes, None,
            "the example leaves the size to the disk"
        );
        assert_eq!(c.spool.max_age, None);
        let example = std::fs::read_to_string(path).unwrap();
        let source = include_str!("config.rs");
        let start = source.find("pub struct RawSpool").unwrap();
        let end = start + source[start..].find("\n}").unwrap();
        for doc in source[start..end]
            .lines()
            .filter_map(|l| l.trim().strip_prefix("/// "))
        {
            assert!(
                example.contains(&format!("# {doc}")),
                "example lacks {doc:?}"
            );
        }
    }

    #[test]
    fn bad_spool_values_are_reported_with_key_paths() {
        let text = minimal().replace(
            "path = \"/tmp/spool.db\"",
            "path = \"/tmp/spool.db\"\nsynchronous = \"off\"\non_full = \"wait\"\nmax_bytes = 10\nmax_age_s = 0",
        );
        let Err(ConfigError::Invalid { problems, .. }) = AgentConfig::parse(&text, "t.toml") else {
            panic!("expected validation errors");
        };
        assert_eq!(
            (problems[0].key.as_str(), problems[0].message.as_str()),
            (
                "spool.synchronous",
                "\"off\" must be \"full\" or \"normal\""
            )
        );
        assert_eq!(
            problems.iter().map(ToString::to_string).collect::<Vec<_>>(),
            [
                "spool.synchronous: \"off\" must be \"full\" or \"normal\"",
                "spool.on_full: \"wait\" must be \"drop-oldest\" or \"block\"",
                "spool.max_bytes: 10 is below the smallest spool (65536)",
                "spool.max_age_s: 0 would drop every batch; leave it out for no limit",
            ]
        );
    }
}
