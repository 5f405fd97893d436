//! What the guard (`crate::host_guard`) notes of a freeze another tool
//! made, for `freezefs -l`: since when it has seen the filesystem frozen
//! and when it will thaw it. One file per superblock, `foreign.MAJ:MIN`,
//! written only by the guard that holds `lock.guard`, removed when the
//! freeze ends; a note whose guard is gone says nothing.

use rustix::fs::{Mode, OFlags};

use crate::error::Result;
use crate::os::mounts::Device;
use crate::os::process::is_alive;
use crate::store::state_dir::StateDir;

/// The lock a guard holds for its life: one guard per state directory.
pub(crate) const GUARD_LOCK: &str = "lock.guard";

const PREFIX: &str = "foreign.";

/// A foreign freeze as the guard sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ForeignNote {
    pub(crate) device: Device,
    /// The guard, and its start time (its pid may be reused once it exits).
    pub(crate) guard_pid: u32,
    pub(crate) guard_start: u64,
    /// When it first saw it frozen (wall clock).
    pub(crate) seen_unix_ns: u64,
    /// When it thaws it (`CLOCK_BOOTTIME`); `None`: it only reports.
    pub(crate) thaw_at_boot_ns: Option<u64>,
}

impl ForeignNote {
    fn to_text(self) -> String {
        format!(
            "guard={} start={} seen_unix_ns={} thaw_at_boot_ns={}\n",
            self.guard_pid,
            self.guard_start,
            self.seen_unix_ns,
            self.thaw_at_boot_ns
                .map_or("-".to_string(), |t| t.to_string())
        )
    }

    fn from_text(device: Device, text: &str) -> Option<ForeignNote> {
        let value = |key: &str| -> Option<&str> {
            text.split_whitespace()
                .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        };
        Some(ForeignNote {
            device,
            guard_pid: value("guard")?.parse().ok()?,
            guard_start: value("start")?.parse().ok()?,
            seen_unix_ns: value("seen_unix_ns")?.parse().ok()?,
            thaw_at_boot_ns: match value("thaw_at_boot_ns")? {
                "-" => None,
                t => Some(t.parse().ok()?),
            },
        })
    }

    /// Whether the guard that wrote it still runs.
    fn guard_alive(&self) -> bool {
        is_alive(self.guard_pid, self.guard_start)
    }
}

fn name(device: Device) -> String {
    format!("{PREFIX}{device}")
}

/// Writes (or replaces) the note of `note.device`.
pub(crate) fn write(dir: &StateDir, note: &ForeignNote) -> Result<()> {
    dir.write_atomically(&name(note.device), note.device, note.to_text().as_bytes())
}

/// Removes the note of `device`, if any.
pub(crate) fn remove(dir: &StateDir, device: Device) -> Result<()> {
    dir.remove_file(&name(device))
}

/// The note of `device` from a guard that still runs; nothing for a note
/// that is missing, unreadable or a dead guard's.
pub(crate) fn read(dir: &StateDir, device: Device) -> Option<ForeignNote> {
    let fd = rustix::fs::openat(
        dir.fd(),
        name(device).as_str(),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
    .ok()?;
    let text = crate::os::small_file::read_fd(&fd, 511, 512).ok()?;
    let text = String::from_utf8(text).ok()?;
    ForeignNote::from_text(device, &text).filter(ForeignNote::guard_alive)
}

/// Removes every note: a guard starting removes its predecessors'.
pub(crate) fn remove_all(dir: &StateDir) {
    let Ok(mut listing) = dir.listing() else {
        return;
    };
    let mut names = Vec::new();
    while let Some(Ok(entry)) = listing.read() {
        if let Ok(n) = entry.file_name().to_str() {
            if n.starts_with(PREFIX) {
                names.push(n.to_string());
            }
        }
    }
    for n in names {
        let _ = dir.remove_file(&n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_note_reads_back_as_written() {
        let device = Device { major: 7, minor: 3 };
        for thaw_at_boot_ns in [Some(9_000), None] {
            let note = ForeignNote {
                device,
                guard_pid: 42,
                guard_start: 1234,
                seen_unix_ns: 1_700_000_000_000_000_000,
                thaw_at_boot_ns,
            };
            assert_eq!(ForeignNote::from_text(device, &note.to_text()), Some(note));
        }
    }

    #[test]
    fn a_damaged_note_says_nothing() {
        let device = Device { major: 7, minor: 3 };
        for text in [
            "",
            "guard=1",
            "guard=x start=1 seen_unix_ns=1 thaw_at_boot_ns=-",
        ] {
            assert_eq!(ForeignNote::from_text(device, text), None, "{text:?}");
        }
    }
}
