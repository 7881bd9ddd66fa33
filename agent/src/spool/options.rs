//! How the spool is opened and bounded: the `[spool]` settings other than
//! the path, as the config validates them ([`crate::config`]).

use std::time::Duration;

use super::OnFull;

/// How hard SQLite works to keep a commit across a power failure
/// (`[spool] synchronous`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every commit is on disk (fsync) before it returns: a power failure
    /// loses nothing that was committed.
    #[default]
    Full,
    /// The WAL is synced only at checkpoints: a power failure may lose the
    /// last commits (never corrupts the database); a crash of the agent
    /// alone loses nothing. Much faster on slow flash.
    Normal,
}

impl Synchronous {
    pub(super) fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// How the spool is opened and bounded (`[spool]` minus the path).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct SpoolOptions {
    pub synchronous: Synchronous,
    /// Largest size of database plus WAL file, in bytes.
    pub max_bytes: Option<u64>,
    /// Reading batches older than this (by seal time) are dropped.
    pub max_age: Option<Duration>,
    pub on_full: OnFull,
}
