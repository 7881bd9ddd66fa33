//! Device profiles: the register map of one kind of device (an energy
//! meter, a temperature controller) in its own TOML file, shared by every
//! `[[modbus]]` section that names it with `profile = "<name>"`.
//!
//! A profile is `<profiles_dir>/<name>.toml` with the keys of
//! [`RawProfile`]: `[[points]]` exactly like `[[modbus.points]]`, and a few
//! device-level defaults. This module finds and parses the files and merges
//! a profile's points with a section's; the merged points are validated
//! with the device in `config::modbus`, so a profile's mistakes are
//! reported with the same words as inline ones, named `<file>: points[2].type`.
//!
//! Invariants: only profiles that some section names are read, so a config
//! without profiles never touches the file system; a profile name is only
//! ever looked up among the `.toml` files the directory lists, so it can
//! never reach outside `profiles_dir`.

use crate::config::issue::ConfigIssue;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use super::{RawModbusDevice, RawPoint};

/// A device profile file, `<profiles_dir>/<name>.toml`: the points and defaults of one kind of device.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProfile {
    /// Byte and word order of the device's values, as the device key `byte_order`; a `[[modbus]]` section's own byte_order overrides it.
    pub byte_order: Option<String>,
    /// Reading across gaps, as the device key `max_gap`; a `[[modbus]]` section's own max_gap overrides it.
    pub max_gap: Option<u16>,
    /// Longest read, as the device key `max_read`; a `[[modbus]]` section's own max_read overrides it.
    pub max_read: Option<u16>,
    /// Poll groups, as the device key `poll_groups`; a `[[modbus]]` section's own groups are added and override one of the same name.
    #[serde(default)]
    pub poll_groups: BTreeMap<String, u64>,
    /// Values to read, with the same keys as `[[modbus.points]]`.
    #[serde(default)]
    pub points: Vec<RawPoint>,
}

/// A profile file that was read and parsed.
#[derive(Debug)]
pub struct Profile {
    /// The file as it is named in problems, for example "configs/devices/energy-meter-sdm630.toml".
    pub file: String,
    pub raw: RawProfile,
}

/// The profiles a configuration names, read from its `profiles_dir`.
///
/// Reading is the only I/O of configuration validation; it happens before
/// [`crate::config::AgentConfig::from_raw`], which then only looks names up.
#[derive(Debug)]
pub struct Profiles {
    dir: PathBuf,
    /// Names of the profiles in `dir` (file stems), or why it could not be listed.
    available: Result<Vec<String>, String>,
    /// Every named profile that exists, or why its file is unusable.
    loaded: BTreeMap<String, Result<Profile, ConfigIssue>>,
}

impl Profiles {
    /// No profiles: every `profile` key is then an error.
    pub fn none() -> Profiles {
        Profiles {
            dir: PathBuf::new(),
            available: Ok(Vec::new()),
            loaded: BTreeMap::new(),
        }
    }

    /// Read the profiles called `names` from `dir`. Lists `dir` only if
    /// some name is given; problems are kept for `Profiles::get`.
    pub fn read<'a>(dir: &Path, names: impl IntoIterator<Item = &'a str>) -> Profiles {
        let mut names = names.into_iter().peekable();
        if names.peek().is_none() {
            return Profiles::none();
        }
        let available = list(dir);
        let mut loaded = BTreeMap::new();
        if let Ok(stems) = &available {
            for name in names {
                if stems.iter().any(|s| s == name) && !loaded.contains_key(name) {
                    loaded.insert(
                        name.to_owned(),
                        read_file(&dir.join(format!("{name}.toml"))),
                    );
                }
            }
        }
        Profiles {
            dir: dir.to_owned(),
            available,
            loaded,
        }
    }

    /// The profile called `name`, or the problem to report, where `at` is
    /// the key path of the `profile` key that names it.
    pub(super) fn get(&self, at: &str, name: &str) -> Result<&Profile, ConfigIssue> {
        if let Some(loaded) = self.loaded.get(name) {
            return loaded.as_ref().map_err(Clone::clone);
        }
        let dir = self.dir.display();
        match &self.available {
            Err(e) => Err(ConfigIssue::new(
                at,
                format!("profile {name:?}: cannot list profiles_dir \"{dir}\": {e}"),
            )),
            Ok(stems) if stems.is_empty() => Err(ConfigIssue::new(
                at,
                format!("no profile {name:?} in \"{dir}\" (it holds no .toml files)"),
            )),
            Ok(stems) => Err(ConfigIssue::new(
                at,
                format!(
                    "no profile {name:?} in \"{dir}\" (available: {})",
                    stems.join(", ")
                ),
            )),
        }
    }
}

/// The profile's points, then the section's, each with its key path; an
/// inline point replaces the profile point of the same name in its place.
pub(super) fn merged_points<'a>(
    at: &str,
    d: &'a RawModbusDevice,
    profile: Option<&'a Profile>,
) -> Vec<(String, &'a RawPoint)> {
    let mut points: Vec<(String, &RawPoint, bool)> = profile
        .map(|pr| {
            let at = |j| format!("{}: points[{j}]", pr.file);
            pr.raw
                .points
                .iter()
                .enumerate()
                .map(|(j, pt)| (at(j), pt, true))
                .collect()
        })
        .unwrap_or_default();
    for (j, pt) in d.points.iter().enumerate() {
        let inline = (format!("{at}.points[{j}]"), pt, false);
        // Only a profile point is replaced: two inline points of one name
        // stay two, for the duplicate-series check to report.
        match points
            .iter_mut()
            .find(|(_, q, from_profile)| *from_profile && q.name == pt.name)
        {
            Some(slot) => *slot = inline,
            None => points.push(inline),
        }
    }
    points.into_iter().map(|(key, pt, _)| (key, pt)).collect()
}

/// File stems of the `.toml` files in `dir`, sorted.
fn list(dir: &Path) -> Result<Vec<String>, String> {
    let mut stems = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_some_and(|e| e == "toml") {
            if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
                stems.push(stem.to_owned());
            }
        }
    }
    stems.sort();
    Ok(stems)
}

fn read_file(path: &Path) -> Result<Profile, ConfigIssue> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigIssue::new(&file, format!("cannot read: {e}")))?;
    match parse(&text) {
        Ok(raw) => Ok(Profile { file, raw }),
        Err(e) => Err(ConfigIssue::new(file, e)),
    }
}

/// Parse a profile's text. A problem is named by its key path, such as
/// `points[2].type: invalid type: integer `5`, expected a string`, which the
/// TOML parser's own message (a line and a caret) does not give.
pub(super) fn parse(text: &str) -> Result<RawProfile, String> {
    let e = match toml::from_str::<RawProfile>(text) {
        Ok(raw) => return Ok(raw),
        Err(e) => e,
    };
    let Some(span) = e.span() else {
        return Err(e.message().to_owned());
    };
    let key = DeTable::parse(text)
        .ok()
        .and_then(|doc| key_path_in_table(doc.get_ref(), span.start, ""));
    Err(match key {
        Some(key) => format!("{key}: {}", e.message()),
        // Not valid TOML at all: the line is all there is to go by.
        None => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            format!("line {line}: {}", e.message())
        }
    })
}

/// Key path (`points[2].type`) of the innermost key or value covering byte `at`.
fn key_path_in_table(t: &DeTable, at: usize, prefix: &str) -> Option<String> {
    t.iter().find_map(|(k, v)| {
        let key = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        if k.span().contains(&at) {
            return Some(key);
        }
        key_path_in_value(v.get_ref(), at, &key).or_else(|| v.span().contains(&at).then_some(key))
    })
}

fn key_path_in_value(v: &DeValue, at: usize, prefix: &str) -> Option<String> {
    match v {
        DeValue::Table(t) => key_path_in_table(t, at, prefix),
        DeValue::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
            let key = format!("{prefix}[{i}]");
            key_path_in_value(item.get_ref(), at, &key)
                .or_else(|| item.span().contains(&at).then_some(key))
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
