//! `[[frames]]`: a microcontroller running `firmware-shim`, on a serial
//! line (a UART, or a USB CDC ACM device such as `/dev/ttyACM0`, with the
//! settings of a `[serial.<name>]` section) or behind a serial server (TCP).
//! Raw section and its validation; what the source does is in
//! [`crate::source::frames`].

use crate::config::issue::Problems;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;

use serde::Deserialize;

use super::modbus::SerialLine;

/// `[[frames]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFrames {
    /// Name of this device in the agent's logs and metrics; its series are named `<name>.<channel>` from the channel table the device announces (default: the device id it announces).
    pub name: Option<String>,
    /// The `[serial.<name>]` line the device is wired to (set parity = "none" there for the usual 8N1 UART); give this or `tcp`.
    pub line: Option<String>,
    /// Address of a serial server the device is behind, for example "10.0.0.7:4001"; give this or `line`.
    pub tcp: Option<String>,
    /// Tags added to every series of this device.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// Where the device is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramesLink {
    Serial(SerialLine),
    Tcp(SocketAddr),
}

impl std::fmt::Display for FramesLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FramesLink::Serial(l) => write!(f, "{}", l.device),
            FramesLink::Tcp(a) => write!(f, "tcp://{a}"),
        }
    }
}

/// A validated `[[frames]]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramesDevice {
    /// Series prefix; `None`: the device id from the birth.
    pub name: Option<String>,
    pub link: FramesLink,
    pub tags: BTreeMap<String, String>,
}

/// Validate every `[[frames]]` section, pushing problems with their key
/// paths to `p`. `lines` are the validated `[serial.*]` sections;
/// `modbus_lines` those Modbus RTU devices already use (a line has one
/// owner).
pub(crate) fn validate(
    p: &mut Problems,
    raw: &[RawFrames],
    lines: &BTreeMap<String, SerialLine>,
    modbus_lines: &HashSet<String>,
) -> Vec<FramesDevice> {
    let mut out = Vec::new();
    let mut names = HashSet::new();
    let mut used_lines = HashSet::new();
    for (i, f) in raw.iter().enumerate() {
        let at = format!("frames[{i}]");
        if let Some(name) = &f.name {
            super::check_name(p, &format!("{at}.name"), name);
            if !names.insert(name.clone()) {
                p.add(
                    format!("{at}.name"),
                    format!("{name:?} is used by another [[frames]] section"),
                );
            }
        }
        let link = match (&f.line, &f.tcp) {
            (Some(line), None) => match lines.get(line) {
                Some(l) if modbus_lines.contains(line) => {
                    p.add(format!("{at}.line"), format!("[serial.{line}] is a Modbus RTU line; a microcontroller needs a line of its own"));
                    Some(FramesLink::Serial(l.clone()))
                }
                Some(l) => {
                    if !used_lines.insert(line.clone()) {
                        p.add(
                            format!("{at}.line"),
                            format!("[serial.{line}] is used by another [[frames]] section"),
                        );
                    }
                    Some(FramesLink::Serial(l.clone()))
                }
                None => {
                    p.add(format!("{at}.line"), format!("no [serial.{line}] section; add one with the device, for example device = \"/dev/ttyACM0\""));
                    None
                }
            },
            (None, Some(tcp)) => match tcp.parse::<SocketAddr>() {
                Ok(a) => Some(FramesLink::Tcp(a)),
                Err(_) => {
                    p.add(
                        format!("{at}.tcp"),
                        format!("{tcp:?} is not an address and port like \"10.0.0.7:4001\""),
                    );
                    None
                }
            },
            (Some(_), Some(_)) => {
                p.add(&at, "give `line` or `tcp`, not both");
                None
            }
            (None, None) => {
                p.add(&at, "say where the device is: line = \"<a [serial.<name>] section>\" or tcp = \"host:port\"");
                None
            }
        };
        for k in f.tags.keys() {
            super::check_name(p, &format!("{at}.tags.{k}"), k);
        }
        if let Some(link) = link {
            out.push(FramesDevice {
                name: f.name.clone(),
                link,
                tags: f.tags.clone(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use crate::config::{AgentConfig, TEST_BASE};

    fn parse(extra: &str) -> Result<AgentConfig, String> {
        AgentConfig::parse(&format!("{TEST_BASE}{extra}"), "t.toml").map_err(|e| e.to_string())
    }

    #[test]
    fn a_device_on_a_serial_line_or_a_serial_server() {
        let c = parse(
            "[serial.mcu]\ndevice = \"/dev/ttyACM0\"\nbaud = 115200\nparity = \"none\"\n\
             [[frames]]\nname = \"vib-1\"\nline = \"mcu\"\n[frames.tags]\nline = \"3\"\n\
             [[frames]]\ntcp = \"127.0.0.1:4001\"\n",
        )
        .unwrap();
        assert_eq!(c.frames.len(), 2);
        assert_eq!(c.frames[0].name.as_deref(), Some("vib-1"));
        assert_eq!(c.frames[0].link.to_string(), "/dev/ttyACM0");
        assert_eq!(c.frames[0].tags["line"], "3");
        assert_eq!(c.frames[1].link.to_string(), "tcp://127.0.0.1:4001");
        assert_eq!(c.frames[1].name, None);
    }

    #[test]
    fn where_the_device_is_must_be_said_once_and_exist() {
        let err = parse(
            "[[frames]]\n\
             [[frames]]\nline = \"nope\"\n\
             [[frames]]\nline = \"x\"\ntcp = \"127.0.0.1:1\"\n\
             [[frames]]\ntcp = \"somewhere\"\n",
        )
        .unwrap_err();
        for want in [
            "frames[0]: say where the device is",
            "frames[1].line: no [serial.nope] section",
            "frames[2]: give `line` or `tcp`, not both",
            "frames[3].tcp: \"somewhere\" is not an address",
        ] {
            assert!(err.contains(want), "missing {want:?} in:\n{err}");
        }
    }

    #[test]
    fn a_frames_device_is_a_source() {
        // TEST_BASE has no source: a [[frames]] section alone is enough.
        assert!(parse("[[frames]]\ntcp = \"127.0.0.1:4001\"\n").is_ok());
    }
}
