//! Why a spool call failed ([`SpoolError`]), and the one place SQLite's
//! SQLITE_FULL becomes [`SpoolError::Full`], which the commit path waits on
//! instead of failing.

use std::path::{Path, PathBuf};

use rusqlite::ErrorCode;

/// Why the spool failed.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("spool {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("spool: batch could not be encoded: {0}")]
    Encode(#[from] edge_wire::WireError),
    #[error("spool: background task failed: {0}")]
    Join(String),
    /// The spool cannot take the batch now: its bound (`max_bytes` or the
    /// disk's, see [`super::room`]) with `on_full = "block"`, or the disk
    /// (SQLITE_FULL) when the reserve and dropping the oldest batches did
    /// not make room. Transient: retry after the forwarder has removed
    /// batches.
    #[error("spool {path}: full ({cause}: {why}); the batch waits")]
    Full {
        path: PathBuf,
        cause: FullCause,
        why: String,
    },
    /// Writing the export failed.
    #[error("spool export: cannot write: {0}")]
    Export(String),
    /// `PRAGMA quick_check` found damage.
    #[error("spool {path}: database is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    /// A bad database could not be moved aside.
    #[error("spool {path}: cannot move the bad database to {to}: {source}")]
    MoveAside {
        path: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
}

/// What filled the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullCause {
    /// `max_bytes` reached with `on_full = "block"`.
    MaxBytes,
    /// The disk bound (free space less the headroom) reached with
    /// `on_full = "block"`.
    DiskBound,
    /// SQLite could not write: the filesystem is full.
    DiskFull,
}

impl std::fmt::Display for FullCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FullCause::MaxBytes => "max_bytes reached",
            FullCause::DiskBound => "the disk is nearly full",
            FullCause::DiskFull => "disk full",
        })
    }
}

impl SpoolError {
    /// True for [`SpoolError::Full`]: wait and retry, nothing is wrong
    /// with the batch.
    pub fn is_full(&self) -> bool {
        matches!(self, SpoolError::Full { .. })
    }
}

/// The error for `source` on the spool at `path`; SQLITE_FULL becomes
/// [`SpoolError::Full`], which the commit path waits on.
pub(super) fn sqlite_error(path: &Path, source: rusqlite::Error) -> SpoolError {
    if is_disk_full(&source) {
        return SpoolError::Full {
            path: path.to_owned(),
            cause: FullCause::DiskFull,
            why: source.to_string(),
        };
    }
    SpoolError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

/// SQLITE_FULL: the disk (or `max_page_count`) has no room left.
pub(super) fn is_disk_full(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == ErrorCode::DiskFull)
}
