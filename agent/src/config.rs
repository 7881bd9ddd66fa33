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
//! `[uplink]` and its token file or variable (see [`uplink`]), read there so
//! that a broken certificate is reported with its key path like any other
//! problem; relative names are resolved against the config file's
//! directory before that.
//!
//! Every key has a `///` comment here and the same words in
//! `configs/agent.example.toml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

mod alarm_publish;
mod modbus;
mod profile;
mod uplink;

pub use self::alarm_publish::{AlarmPublishConfig, RawAlarmPublish};
pub use self::uplink::{RawUplink, Secret, UplinkConfig, UplinkTls, DEFAULT_MAX_IN_FLIGHT};

pub use self::modbus::{
    frame_gap, ByteOrder, DataType, Link, ModbusDevice, ModbusPoint, Parity, PollGroup,
    RawModbusDevice, RawPoint, RawSerialLine, SerialLine, Table,
};
pub use self::profile::{Profile, Profiles, RawProfile};

pub mod mqtt;

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
    #[error("{path}: {} problem(s):\n  {}", problems.len(), problems.join("\n  "))]
    Invalid { path: String, problems: Vec<String> },
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
    /// Directory of the device profiles that `[[modbus]]` sections name with `profile`, one "<name>.toml" file each; a relative path is relative to the directory of this config file (default "devices", next to the config file).
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
    /// Threshold rules evaluated on the gateway.
    #[serde(default)]
    pub rules: Vec<RawRule>,
    /// Publish alarm events and per-series alarm state on a local MQTT broker (optional).
    pub alarm_publish: Option<RawAlarmPublish>,
}

/// `[spool]`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpool {
    /// Path of the SQLite spool database; its directory must exist and be writable.
    pub path: PathBuf,
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

pub use self::rules::{parse_rule_set, RawFlatline, RawLimit, RawRate, RawRule, RawTimeout};

/// The validated configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub gateway_id: String,
    pub tags: BTreeMap<String, String>,
    pub spool_path: PathBuf,
    pub batch: BatchConfig,
    pub uplink: UplinkConfig,
    pub modbus: Vec<ModbusDevice>,
    pub simulated: Vec<SimulatedSignal>,
    pub mqtt: Vec<mqtt::MqttBroker>,
    pub rules: Vec<crate::detect::Rule>,
    pub alarm_publish: Option<AlarmPublishConfig>,
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
    pub fn serial_line(name: &str, raw: &RawSerialLine) -> Result<SerialLine, Vec<String>> {
        let mut p = Vec::new();
        let one = BTreeMap::from([(name.to_string(), raw)]);
        let mut lines = modbus::validate_serial_lines(&mut p, one);
        match lines.remove(name) {
            Some(line) if p.is_empty() => Ok(line),
            _ => Err(p),
        }
    }

    /// Validate a parsed file with the profiles it names, collecting every
    /// problem with its key path.
    pub fn from_raw(raw: RawConfig, profiles: &Profiles) -> Result<AgentConfig, Vec<String>> {
        let mut p = Vec::new();
        check_name(&mut p, "gateway_id", &raw.gateway_id);
        let batch = BatchConfig {
            max_readings: raw.batch.max_readings.unwrap_or(1000),
            max_age: ms(raw.batch.max_age_ms.unwrap_or(1000)),
        };
        if batch.max_readings == 0 || batch.max_readings > 1_000_000 {
            p.push(format!(
                "batch.max_readings: {} is out of range (1..=1000000)",
                batch.max_readings
            ));
        }
        let uplink = uplink::validate(&mut p, &raw.uplink);
        let lines = modbus::validate_serial_lines(&mut p, &raw.serial);
        let mut modbus = Vec::new();
        let mut indexed = Vec::new();
        for (i, d) in raw.modbus.iter().enumerate() {
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
                    p.push(format!(
                        "simulated[{i}].period_s: {period_s} must be a positive number"
                    ));
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
        let mut series_names: Vec<String> = modbus
            .iter()
            .flat_map(|d| {
                d.points
                    .iter()
                    .map(move |pt| format!("{}.{}", d.name, pt.name))
            })
            .chain(simulated.iter().map(|s| s.name.clone()))
            .collect();
        series_names.sort();
        for w in series_names.windows(2) {
            if w[0] == w[1] {
                p.push(format!("series {:?} is defined twice", w[0]));
            }
        }
        // MQTT series are named by templates: checked by the mqtt module.
        let known = mqtt.is_empty().then_some(&series_names[..]);
        let rules = rules::validate(&mut p, &raw.rules, known);
        if !mqtt.is_empty() {
            mqtt::check_rule_series(&mut p, &raw.rules, &series_names, &mqtt);
        }
        let alarm_publish = raw
            .alarm_publish
            .as_ref()
            .map(|a| alarm_publish::validate(&mut p, a, &raw.gateway_id));
        if modbus.is_empty() && simulated.is_empty() && mqtt.is_empty() {
            p.push(
                "no sources: add at least one [[modbus]], [[simulated]] or [[mqtt]] section".into(),
            );
        }
        if !p.is_empty() {
            // A broken profile is reported once, however many devices use it.
            let mut seen = std::collections::BTreeSet::new();
            p.retain(|problem| seen.insert(problem.clone()));
            return Err(p);
        }
        Ok(AgentConfig {
            gateway_id: raw.gateway_id,
            tags: raw.tags,
            spool_path: raw.spool.path,
            batch,
            uplink,
            modbus,
            simulated,
            mqtt,
            rules,
            alarm_publish,
        })
    }
}

/// Names end up in series names, Kafka keys and line protocol: keep them plain.
fn check_name(p: &mut Vec<String>, at: &str, name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if !ok {
        p.push(format!(
            "{at}: {name:?} must be 1..=128 characters of letters, digits, '-', '_', '.', '/'"
        ));
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
        let all = problems.join("\n");
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
}
