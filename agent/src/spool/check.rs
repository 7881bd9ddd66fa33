//! The start-up check of the spool, and what happens to a spool that fails
//! it: the agent never crash-loops on a bad spool.
//!
//! [`Spool::open_checked`] opens the database, runs `PRAGMA quick_check`
//! (whose time grows with the database, not with anything else), gives
//! rows stored before checksums existed their checksum, and compares the
//! CRC-64 of every unsent batch with the one stored at append. A batch
//! whose bytes changed goes to the `quarantine` table (kept for a
//! technician, never sent) and is counted.
//!
//! A database that cannot be opened as one (not a database, corrupt) or
//! that fails the quick check is salvaged (its readable batches, alarms
//! and drop totals copied into a fresh spool, see [`super::salvage`]), then
//! renamed to
//! `<path>.corrupt-<unix seconds>.<microseconds>` (with `-<n>` added if
//! that name is taken, so two move-asides never overwrite each other; with
//! its `-wal`), logged as an error, and a fresh spool is started.
//! The fresh spool starts its sequence counter at the current time in µs,
//! above every seq the old one can have handed out, so the relay's ledger
//! does not take new batches for duplicates.
//!
//! Not moved aside: a database that is busy, or in a directory the agent
//! cannot write; those errors are returned, since a new file would not fare
//! better.

use std::path::{Path, PathBuf};

use rusqlite::{params, ErrorCode};
use tracing::{error, warn};

use super::salvage::Salvaged;
use super::{checksum, Spool, SpoolError, SpoolOptions};

/// (seq, stored checksum if any, body) of a batch row.
type StoredRow = (i64, Option<i64>, Vec<u8>);

/// What the start-up check found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StartupReport {
    /// Unsent batches whose checksum did not match, moved to quarantine.
    pub corrupt_batches: u64,
    /// Rows stored before checksums existed, given one now.
    pub checksums_added: u64,
    /// Where the previous database was moved, and why, when it could not be
    /// used.
    pub moved_aside: Option<(PathBuf, String)>,
    /// What was copied out of that database into the fresh spool.
    pub salvaged: Salvaged,
}

impl Spool {
    /// Open the spool at `path` and check it (see the module doc). Fails
    /// only when even a fresh spool cannot be created there.
    pub fn open_checked(
        path: &Path,
        options: SpoolOptions,
        now_us: i64,
    ) -> Result<(Spool, StartupReport), SpoolError> {
        let first = Spool::open_with(path, options).and_then(|mut s| {
            let report = s.check(now_us)?;
            Ok((s, report))
        });
        let why = match first {
            Ok(ok) => return Ok(ok),
            Err(e) if is_bad_database(&e) => e.to_string(),
            Err(e) => return Err(e),
        };
        // The fresh spool is built beside the bad one, the readable rows
        // salvaged into it, and only then is the bad one set aside and the
        // fresh one put in its place: a crash midway leaves the bad file
        // where it was, to be salvaged again.
        let fresh = with_suffix(path, ".fresh");
        for leftover in ["", "-wal", "-shm", "-reserve"] {
            let _ = std::fs::remove_file(with_suffix(&fresh, leftover));
        }
        let salvaged = {
            let mut spool = Spool::open_with(&fresh, options)?;
            spool.start_seq_at(now_us)?;
            match spool.salvage_from(path, now_us) {
                Ok(s) => s,
                Err(e) => {
                    error!(spool = %path.display(), error = %e, "salvaging the unusable spool failed; nothing of it is kept");
                    Salvaged::default()
                }
            }
            // Closed here: the last connection folds its WAL back in.
        };
        let _ = std::fs::remove_file(with_suffix(&fresh, "-reserve"));
        let aside = move_aside(path, now_us)?;
        let put = |from: &Path, to: &Path| {
            std::fs::rename(from, to).map_err(|source| SpoolError::MoveAside {
                path: from.to_owned(),
                to: to.to_owned(),
                source,
            })
        };
        put(&fresh, path)?;
        if with_suffix(&fresh, "-wal").exists() {
            put(&with_suffix(&fresh, "-wal"), &with_suffix(path, "-wal"))?;
        }
        let _ = std::fs::remove_file(with_suffix(&fresh, "-shm"));
        error!(spool = %path.display(), moved_to = %aside.display(), reason = %why, salvaged_batches = salvaged.batches, salvaged_readings = salvaged.readings, salvaged_alarms = salvaged.alarms, corrupt_batches = salvaged.corrupt, "SPOOL DATABASE IS UNUSABLE: its readable batches and alarms were copied into a fresh spool and the old file moved aside");
        let spool = Spool::open_with(path, options)?;
        Ok((
            spool,
            StartupReport {
                moved_aside: Some((aside, why)),
                corrupt_batches: salvaged.corrupt,
                salvaged,
                ..StartupReport::default()
            },
        ))
    }

    /// Quick check, checksums of old rows, checksums of unsent batches.
    fn check(&mut self, now_us: i64) -> Result<StartupReport, SpoolError> {
        let problems: Vec<String> = {
            let mut stmt = self
                .conn
                .prepare("PRAGMA quick_check")
                .map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(|e| self.err(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.err(e))?
        };
        if problems != ["ok"] {
            let mut detail = problems.join("; ");
            detail.truncate(500);
            return Err(SpoolError::Corrupt {
                path: self.path.clone(),
                detail,
            });
        }
        let mut report = StartupReport::default();
        let rows = self.bodies().map_err(|e| self.err(e))?;
        let mut corrupt = Vec::new();
        for (seq, stored, body) in rows {
            let computed = checksum(&body);
            match stored {
                None => {
                    self.conn
                        .execute(
                            "UPDATE batches SET checksum = ?2 WHERE seq = ?1",
                            params![seq, computed],
                        )
                        .map_err(|e| self.err(e))?;
                    report.checksums_added += 1;
                }
                Some(stored) if stored != computed => corrupt.push((seq, stored, computed)),
                Some(_) => {}
            }
        }
        for (seq, stored, computed) in corrupt {
            warn!(spool = %self.path.display(), seq, stored = format!("{:016x}", stored as u64), computed = format!("{:016x}", computed as u64), "spooled batch is corrupt; moved to quarantine");
            let reason = format!(
                "checksum mismatch at start-up: stored {:016x}, computed {:016x}",
                stored as u64, computed as u64
            );
            self.quarantine(seq as u64, &reason, now_us)?;
            report.corrupt_batches += 1;
        }
        Ok(report)
    }

    /// (seq, checksum, body) of every unsent batch.
    fn bodies(&self) -> rusqlite::Result<Vec<StoredRow>> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, checksum, body FROM batches ORDER BY seq")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        rows.collect()
    }

    /// Let the next sequence number be at least `first`.
    fn start_seq_at(&self, first: i64) -> Result<(), SpoolError> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES ('next_seq', ?1)
                 ON CONFLICT(key) DO UPDATE SET value = MAX(value, excluded.value)",
                params![first.max(1)],
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }
}

/// The file is there but is not a usable spool database.
fn is_bad_database(e: &SpoolError) -> bool {
    match e {
        SpoolError::Corrupt { .. } => true,
        SpoolError::Sqlite {
            source: rusqlite::Error::SqliteFailure(f, _),
            ..
        } => matches!(f.code, ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt),
        _ => false,
    }
}

/// The name a bad database at `path` is moved to at `now_us`: the first of
/// `<path>.corrupt-<s>.<µs>`, then `...-1`, `...-2`, for which `taken` is
/// false.
pub(crate) fn aside_name(path: &Path, now_us: i64, taken: impl Fn(&Path) -> bool) -> PathBuf {
    let base = format!(
        ".corrupt-{}.{:06}",
        now_us.div_euclid(1_000_000),
        now_us.rem_euclid(1_000_000)
    );
    (0u32..)
        .map(|n| {
            let mut p = path.as_os_str().to_owned();
            p.push(&base);
            if n > 0 {
                p.push(format!("-{n}"));
            }
            PathBuf::from(p)
        })
        .find(|p| !taken(p))
        .expect("some name is free")
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Rename the database (and its WAL) to [`aside_name`]; the shared-memory
/// file is removed, it is rebuilt from the WAL.
fn move_aside(path: &Path, now_us: i64) -> Result<PathBuf, SpoolError> {
    let with = |suffix: &str| {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        PathBuf::from(p)
    };
    let aside = aside_name(path, now_us, |p| {
        let mut wal = p.as_os_str().to_owned();
        wal.push("-wal");
        p.exists() || Path::new(&wal).exists()
    });
    let io = |source| SpoolError::MoveAside {
        path: path.to_owned(),
        to: aside.clone(),
        source,
    };
    std::fs::rename(path, &aside).map_err(io)?;
    let mut aside_wal = aside.as_os_str().to_owned();
    aside_wal.push("-wal");
    match std::fs::rename(with("-wal"), aside_wal) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    match std::fs::remove_file(with("-shm")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
        _ => {}
    }
    Ok(aside)
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
