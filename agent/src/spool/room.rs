//! Room on the spool's filesystem: the disk is a bound like `max_bytes`.
//!
//! A gateway's disk (eMMC, an SD card) is small and shared with logs, and
//! SQLite needs free space to *free* space: a delete writes WAL frames, and
//! a checkpoint may grow the database file. So the spool never lets itself
//! run the disk to its end:
//!
//! - **Disk bound.** Before every commit the spool reads the free space of
//!   its filesystem (`statvfs`) and bounds itself to what its files hold now
//!   plus that space, minus [`HEADROOM`] left free for the WAL, checkpoints
//!   and deletes ([`bound`]). The tighter of that and `max_bytes` applies,
//!   with the same `on_full` policy: `drop-oldest` drops the oldest reading
//!   batches and records a gap, `block` refuses the batch. Space another
//!   program takes (a log burst) shrinks the bound at the next commit.
//! - **Reserve file.** `<spool>-reserve`, [`RESERVE`] bytes of zeros written
//!   at open when there is room. If SQLite still reports the disk full
//!   (another program filled it between two commits), the spool deletes the
//!   reserve, checkpoints the WAL into the database and then drops or
//!   deletes: the room for that is the reserve's. It is written again once
//!   there is room ([`Reserve::restore`]).
//! - **Default `max_bytes`.** When `[spool] max_bytes` is not set, the agent
//!   takes the spool's files plus half the filesystem's free space at
//!   start-up ([`default_max_bytes`]), so the spool leaves the other half
//!   to logs and the system; `check-config` warns when a configured
//!   `max_bytes` is more than the filesystem can hold ([`oversized`]).
//!
//! [`bound`], [`default_max_bytes`], [`oversized`] and [`pressure`] are pure;
//! [`DiskRoom::read`] and [`Reserve`] are the I/O.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Space left free on the filesystem beyond the spool's disk bound: room
/// for one commit's WAL frames, a checkpoint into the database file and the
/// deletes of delivered batches.
pub const HEADROOM: u64 = 256 * 1024;

/// Size of the reserve file released when SQLite reports the disk full.
pub const RESERVE: u64 = 256 * 1024;

/// The smallest bound a spool gets, whatever the disk says: below it no
/// batch would fit.
pub const MIN_BOUND: u64 = 65_536;

/// What the spool's files take and what the filesystem has left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskRoom {
    /// Length of the database file plus its WAL.
    pub files: u64,
    /// Bytes an unprivileged writer may still take (`f_bavail`).
    pub available: u64,
}

impl DiskRoom {
    /// Read the room for the spool at `path` (its directory's filesystem).
    pub fn read(path: &Path) -> std::io::Result<DiskRoom> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let vfs = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
        let len = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        Ok(DiskRoom {
            files: len(path) + len(&suffixed(path, "-wal")),
            available: vfs.f_bavail.saturating_mul(vfs.f_frsize),
        })
    }
}

/// The bound in force and what set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub bytes: u64,
    /// True when the disk, not `max_bytes`, is the tighter bound.
    pub by_disk: bool,
}

/// The bound on the spool's used bytes: `max_bytes`, or what the disk can
/// hold (the files now plus the free space, less [`HEADROOM`]) when that is
/// smaller; never below [`MIN_BOUND`]. `None` when neither is known.
pub fn bound(max_bytes: Option<u64>, room: Option<DiskRoom>) -> Option<Bound> {
    let disk = room.map(|r| (r.files + r.available).saturating_sub(HEADROOM));
    let b = match (max_bytes, disk) {
        (Some(m), Some(d)) if d < m => Bound {
            bytes: d,
            by_disk: true,
        },
        (Some(m), _) => Bound {
            bytes: m,
            by_disk: false,
        },
        (None, Some(d)) => Bound {
            bytes: d,
            by_disk: true,
        },
        (None, None) => return None,
    };
    Some(Bound {
        bytes: b.bytes.max(MIN_BOUND),
        ..b
    })
}

/// `max_bytes` when the config leaves it out: the spool's files plus half
/// the free space at start-up, at least [`MIN_BOUND`].
pub fn default_max_bytes(room: DiskRoom) -> u64 {
    (room.files + room.available / 2).max(MIN_BOUND)
}

/// The `check-config` warning for a `max_bytes` the filesystem cannot hold:
/// more than the spool's files plus the free space.
pub fn oversized(max_bytes: u64, room: DiskRoom) -> Option<String> {
    let can_hold = room.files + room.available;
    (max_bytes > can_hold).then(|| {
        format!(
            "spool.max_bytes: {max_bytes} bytes ({}) is more than the spool's filesystem can hold \
             ({} free plus {} in the spool now); the disk becomes the bound, and the logs and \
             the system share what is left. Set it to about half the free space, e.g. {}",
            human(max_bytes),
            human(room.available),
            human(room.files),
            default_max_bytes(room)
        )
    })
}

/// The spool's fill state, for `/healthz` and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pressure {
    /// Bytes the spool uses (live pages plus WAL).
    pub used: u64,
    /// The bound in force, 0 when none is known.
    pub bound: u64,
    /// The disk is the bound and the spool is near it (at least 80 %, where
    /// `drop-oldest` drops), or SQLite reported the disk full since the
    /// last commit that fitted.
    pub disk_full: bool,
    /// The last commit was refused (`on_full = "block"` at its bound, or a
    /// disk SQLite could not write even after the reserve was released).
    pub refused: bool,
    /// Free bytes on the spool's filesystem.
    pub available: u64,
}

/// The fill state from the figures: see [`Pressure`].
pub fn pressure(
    used: u64,
    bound: Option<Bound>,
    room: Option<DiskRoom>,
    hit_disk_end: bool,
    refused: bool,
) -> Pressure {
    let near = bound.is_some_and(|b| b.by_disk && used >= b.bytes / 10 * 8);
    Pressure {
        used,
        bound: bound.map_or(0, |b| b.bytes),
        disk_full: near || hit_disk_end,
        refused,
        available: room.map_or(0, |r| r.available),
    }
}

/// The reserve file beside the spool.
#[derive(Debug)]
pub struct Reserve {
    path: PathBuf,
}

impl Reserve {
    pub fn new(spool: &Path) -> Reserve {
        Reserve {
            path: suffixed(spool, "-reserve"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True when the reserve file is there at its full size.
    pub fn held(&self) -> bool {
        std::fs::metadata(&self.path).is_ok_and(|m| m.len() >= RESERVE)
    }

    /// Write the reserve if it is missing and the filesystem has room for it
    /// and the headroom besides. True when it is held afterwards. Bytes are
    /// written (not a sparse `set_len`), so the space is really taken.
    pub fn restore(&self) -> bool {
        if self.held() {
            return true;
        }
        let room = DiskRoom::read(&self.path);
        if !room.is_ok_and(|r| r.available >= RESERVE + HEADROOM) {
            return false;
        }
        let written = std::fs::File::create(&self.path).and_then(|mut f| {
            f.write_all(&vec![0u8; RESERVE as usize])?;
            f.sync_all()
        });
        if written.is_err() {
            let _ = std::fs::remove_file(&self.path);
            return false;
        }
        true
    }

    /// Delete the reserve, giving its room to SQLite. True when there was
    /// one to release.
    pub fn release(&self) -> bool {
        std::fs::remove_file(&self.path).is_ok()
    }
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(suffix);
    PathBuf::from(p)
}

/// Bytes for a technician: KiB, MiB or GiB with one decimal.
fn human(b: u64) -> String {
    const K: f64 = 1024.0;
    let f = b as f64;
    if f >= K * K * K {
        format!("{:.1} GiB", f / (K * K * K))
    } else if f >= K * K {
        format!("{:.1} MiB", f / (K * K))
    } else {
        format!("{:.1} KiB", f / K)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn room(files: u64, available: u64) -> Option<DiskRoom> {
        Some(DiskRoom { files, available })
    }

    #[test]
    fn the_tighter_of_max_bytes_and_the_disk_is_the_bound() {
        // (max_bytes, room, expected bytes, by_disk)
        type Case = (Option<u64>, Option<DiskRoom>, Option<(u64, bool)>);
        let table: &[Case] = &[
            // A big disk: max_bytes rules.
            (Some(2 * MIB), room(MIB, 100 * MIB), Some((2 * MIB, false))),
            // A 3 MiB tmpfs nearly full: the files plus what is left, less
            // the headroom.
            (
                Some(2048 * MIB),
                room(2 * MIB, MIB),
                Some((3 * MIB - HEADROOM, true)),
            ),
            // No max_bytes: the disk alone.
            (None, room(0, 4 * MIB), Some((4 * MIB - HEADROOM, true))),
            // Nothing known: no bound.
            (None, None, None),
            (Some(5 * MIB), None, Some((5 * MIB, false))),
            // A full disk and an empty spool: never below the smallest spool.
            (Some(MIB), room(4096, 0), Some((MIN_BOUND, true))),
        ];
        for (max, r, want) in table {
            let got = bound(*max, *r).map(|b| (b.bytes, b.by_disk));
            assert_eq!(got, *want, "max_bytes {max:?}, room {r:?}");
        }
    }

    #[test]
    fn default_max_bytes_is_the_spool_plus_half_the_free_space() {
        let r = DiskRoom {
            files: 10 * MIB,
            available: 90 * MIB,
        };
        assert_eq!(default_max_bytes(r), 55 * MIB);
        let tiny = DiskRoom {
            files: 0,
            available: 1000,
        };
        assert_eq!(default_max_bytes(tiny), MIN_BOUND);
    }

    #[test]
    fn a_max_bytes_beyond_the_filesystem_is_warned_about() {
        let r = DiskRoom {
            files: MIB,
            available: 3 * MIB,
        };
        assert_eq!(oversized(4 * MIB, r), None);
        let w = oversized(2048 * MIB, r).expect("2 GiB on a 4 MiB disk");
        assert!(w.contains("2.0 GiB"), "{w}");
        assert!(w.contains("3.0 MiB free"), "{w}");
        assert!(w.contains(&(MIB + 3 * MIB / 2).to_string()), "{w}");
    }

    #[test]
    fn disk_full_when_near_a_disk_bound_or_when_sqlite_said_so() {
        let disk = Some(Bound {
            bytes: 1000 * 1024,
            by_disk: true,
        });
        let max = Some(Bound {
            bytes: 1000 * 1024,
            by_disk: false,
        });
        // (used, bound, hit_disk_end, disk_full)
        let table = [
            (900 * 1024, disk, false, true),
            (700 * 1024, disk, false, false),
            // Near max_bytes is the bound doing its job, not a full disk.
            (990 * 1024, max, false, false),
            (10, max, true, true),
            (10, None, false, false),
        ];
        for (used, b, hit, want) in table {
            let p = pressure(used, b, None, hit, false);
            assert_eq!(p.disk_full, want, "used {used}, bound {b:?}, hit {hit}");
        }
    }

    #[test]
    fn the_reserve_is_written_for_real_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let r = Reserve::new(&dir.path().join("spool.db"));
        assert!(!r.held());
        assert!(r.restore());
        assert_eq!(std::fs::metadata(r.path()).unwrap().len(), RESERVE);
        assert!(r.release());
        assert!(!r.held());
        assert!(!r.release(), "nothing left to release");
    }
}
