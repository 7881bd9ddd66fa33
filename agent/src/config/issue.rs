//! One problem of an agent config, with the key it is about, and the
//! collector the validation steps add them to. Like the relay's: the key is
//! the path where the value was written (`modbus[0].points[1].register`,
//! `serial.rs485`), or `<profile file>: points[3].type` for a key of a
//! device profile, so a technician finds the line to change.

use std::fmt;

/// A broken rule of the config, with the key path it is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigIssue {
    /// Where the value is (or should be) written.
    pub key: String,
    /// What is wrong with it, and what would be right.
    pub message: String,
}

impl ConfigIssue {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigIssue {
        ConfigIssue {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// The problems found so far, in the order found.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<ConfigIssue>);

impl Problems {
    pub(crate) fn add(&mut self, key: impl AsRef<str>, message: impl Into<String>) {
        self.0.push(ConfigIssue::new(key.as_ref(), message));
    }

    pub(crate) fn push(&mut self, issue: ConfigIssue) {
        self.0.push(issue);
    }

    /// How many so far: a step compares before and after to learn whether
    /// it added any.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The problems, each once: a broken profile that several devices use
    /// is reported once.
    pub(crate) fn into_issues(self) -> Vec<ConfigIssue> {
        let mut seen = std::collections::BTreeSet::new();
        let mut issues = self.0;
        issues.retain(|issue| seen.insert(issue.clone()));
        issues
    }
}

/// `issues` as the lines of an error message.
pub fn lines(issues: &[ConfigIssue]) -> String {
    issues
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  ")
}
