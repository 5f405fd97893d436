//! Leaving the cgroups of whoever started us, and the OOM killer's reach.
//!
//! systemd (`systemctl stop`), container runtimes (`docker stop`, `docker
//! pause`) and the OOM killer's group kill act on a cgroup, not on a
//! process or a session: a keeper left in its caller's cgroup dies or
//! freezes with it. So a keeper that no service manager placed moves
//! itself into a cgroup of its own, at the top of every hierarchy that can
//! kill or freeze it:
//!
//! - the cgroup v2 hierarchy (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified`
//!   on the v1/v2 hybrid layout): the child `NAME` of its root, where
//!   `cgroup.kill` and `cgroup.freeze` of any other cgroup cannot reach;
//! - the v1 `freezer` hierarchy (`docker pause` on v1) and systemd's v1
//!   `name=systemd` hierarchy: their root cgroup.
//!
//! Other v1 hierarchies (memory, cpu...) are left alone: leaving them would
//! also leave a limit an admin set on purpose. Inside a container whose
//! cgroup namespace is its whole world, the "root" is the container's own
//! cgroup: nothing can be escaped there (see docs/reliability.md).

use std::io;
use std::path::{Path, PathBuf};

use crate::os::mounts::unescape_octal;

/// What moving out did, hierarchy by hierarchy, for the holder's event.
#[derive(Debug, Default)]
pub(crate) struct Moved {
    /// The cgroups joined.
    pub(crate) joined: Vec<PathBuf>,
    /// The ones that could not be joined, and why.
    pub(crate) failed: Vec<(PathBuf, io::Error)>,
}

/// The cgroup hierarchies of this machine that can kill or freeze a
/// process, from `/proc/self/mounts`: (mount point, true for cgroup v2).
fn hierarchies(mounts: &[u8]) -> Vec<(PathBuf, bool)> {
    use std::os::unix::ffi::OsStrExt;
    mounts
        .split(|&b| b == b'\n')
        .filter_map(|line| {
            let mut fields = line.split(|&b| b == b' ');
            let (_, at, fs_type, options) = (
                fields.next()?,
                fields.next()?,
                fields.next()?,
                fields.next()?,
            );
            let at = PathBuf::from(std::ffi::OsStr::from_bytes(&unescape_octal(at)));
            let v1_kills_or_freezes = || {
                options
                    .split(|&b| b == b',')
                    .any(|o| o == b"freezer" || o == b"name=systemd")
            };
            match fs_type {
                b"cgroup2" => Some((at, true)),
                b"cgroup" if v1_kills_or_freezes() => Some((at, false)),
                _ => None,
            }
        })
        .collect()
}

/// Moves this process (every thread of it) into the cgroup `name` at the
/// top of the v2 hierarchy and into the root of the v1 hierarchies that
/// freeze or kill. Call it before starting threads or children.
pub(crate) fn move_out(name: &str) -> Moved {
    let mounts = std::fs::read("/proc/self/mounts").unwrap_or_default();
    let pid = std::process::id().to_string();
    let mut moved = Moved::default();
    for (at, v2) in hierarchies(&mounts) {
        let target = if v2 { at.join(name) } else { at };
        match join(&target, v2, &pid) {
            Ok(()) => moved.joined.push(target),
            Err(e) => moved.failed.push((target, e)),
        }
    }
    moved
}

fn join(cgroup: &Path, create: bool, pid: &str) -> io::Result<()> {
    if create {
        match std::fs::create_dir(cgroup) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    std::fs::write(cgroup.join("cgroup.procs"), pid)
}

/// Takes this process out of the OOM killer's choice (`oom_score_adj`
/// -1000): killing a keeper frees almost nothing and leaves a filesystem
/// frozen, every writer on it stuck.
pub(crate) fn refuse_oom_kill() -> io::Result<()> {
    std::fs::write("/proc/self/oom_score_adj", "-1000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hybrid_layout_yields_the_unified_hierarchy_freezer_and_systemd() {
        let mounts = b"tmpfs /sys/fs/cgroup tmpfs rw 0 0\n\
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n\
cgroup /sys/fs/cgroup/freezer cgroup rw,relatime,freezer 0 0\n\
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0\n\
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n";
        assert_eq!(
            hierarchies(mounts),
            vec![
                (PathBuf::from("/sys/fs/cgroup/freezer"), false),
                (PathBuf::from("/sys/fs/cgroup/systemd"), false),
                (PathBuf::from("/sys/fs/cgroup/unified"), true),
            ]
        );
    }

    #[test]
    fn the_unified_layout_yields_one_hierarchy_and_escaped_paths_are_read() {
        let mounts = b"cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n\
cgroup2 /srv/my\\040cg cgroup2 rw 0 0\n\
proc /proc proc rw 0 0\n";
        assert_eq!(
            hierarchies(mounts),
            vec![
                (PathBuf::from("/sys/fs/cgroup"), true),
                (PathBuf::from("/srv/my cg"), true),
            ]
        );
    }
}
