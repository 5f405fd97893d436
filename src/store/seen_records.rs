//! The records this process has read, remembered until the state directory
//! changes: QUERY, asked again and again of one freeze (monitoring, a
//! guest agent, `freezefs -l`), then reads no file at all.
//!
//! Why a remembered record cannot be stale: an inotify watch on the
//! directory, set before the first record is read, queues an event for
//! every change in it (a record written, renamed, removed or modified in
//! place, the directory itself removed or moved) before the system call
//! that made the change returns. Each lookup first drains the queue and
//! forgets everything on any event; so what it returns was read after the
//! last change that had completed when the lookup began. The directory's
//! path is checked against the watched one at each lookup (`statx`: same
//! inode, owner and mode), so a new directory, a mount over it or another
//! mount namespace is never answered from the old one. A forked child
//! forgets it all (its copy of the watch shares the parent's queue).
//!
//! What it cannot see it leaves alone: whether a freeze ended in the
//! kernel is the watcher's word (see [`crate::keep::kernel_truth`]),
//! checked by the caller at each QUERY, and time (a deadline) is compared
//! at each QUERY too.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::inotify::{self, CreateFlags, ReadFlags, WatchFlags};
use rustix::fs::{AtFlags, CWD, StatxFlags};
use rustix::io::Errno;

use crate::os::fork::ForkSafe;
use crate::os::mounts::Device;
use crate::os::untimed_stat;
use crate::store::record::Record;
use crate::store::state_dir::StateDir;

/// How many superblocks' records are remembered at most.
const REMEMBERED: usize = 64;

/// What changes in the directory forget the remembered records. Not the
/// opens and reads of readers, which change nothing.
fn changes() -> WatchFlags {
    WatchFlags::MODIFY
        | WatchFlags::ATTRIB
        | WatchFlags::CLOSE_WRITE
        | WatchFlags::MOVED_FROM
        | WatchFlags::MOVED_TO
        | WatchFlags::CREATE
        | WatchFlags::DELETE
        | WatchFlags::DELETE_SELF
        | WatchFlags::MOVE_SELF
}

/// The directory as its path names it: inode, owner and mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DirIdentity {
    dev: (u32, u32),
    ino: u64,
    uid: u32,
    mode: u16,
}

fn identity_at(path: &Path) -> Option<DirIdentity> {
    let st = rustix::fs::statx(
        CWD,
        path,
        AtFlags::SYMLINK_NOFOLLOW,
        StatxFlags::TYPE | StatxFlags::MODE | StatxFlags::UID | StatxFlags::INO,
    )
    .ok()?;
    Some(DirIdentity {
        dev: (st.stx_dev_major, st.stx_dev_minor),
        ino: st.stx_ino,
        uid: st.stx_uid,
        mode: st.stx_mode,
    })
}

/// One watched state directory and what was read in it since its last change.
struct Watched {
    path: PathBuf,
    identity: DirIdentity,
    dir: StateDir,
    /// The inotify instance, non-blocking.
    queue: OwnedFd,
    /// `None`: no record of that superblock.
    records: Vec<(Device, Option<Record>)>,
}

impl Watched {
    /// Opens and watches the directory `path` names, if it is the one with
    /// `identity`; the watch is on the open directory itself.
    fn start(path: &Path, identity: DirIdentity) -> Option<Watched> {
        let dir = StateDir::open(path, false).ok()??;
        let queue = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK).ok()?;
        let this_dir = format!("/proc/self/fd/{}", dir.fd().as_raw_fd());
        inotify::add_watch(&queue, this_dir.as_str(), changes()).ok()?;
        // The path may have moved on between the statx and the open.
        (identity_at(path) == Some(identity) && same_inode(&dir, identity)).then(|| Watched {
            path: path.to_path_buf(),
            identity,
            dir,
            queue,
            records: Vec::new(),
        })
    }

    /// Reads every queued event: false when the directory itself went away
    /// (removed, moved, unmounted) or events were lost, and this watch is
    /// of no more use; otherwise any change forgets the records.
    fn drain(&mut self) -> bool {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
        let mut reader = inotify::Reader::new(&self.queue, &mut buf);
        loop {
            match reader.next() {
                Ok(event) => {
                    self.records.clear();
                    let gone = ReadFlags::DELETE_SELF
                        | ReadFlags::MOVE_SELF
                        | ReadFlags::IGNORED
                        | ReadFlags::UNMOUNT
                        | ReadFlags::QUEUE_OVERFLOW;
                    if event.events().intersects(gone) {
                        return false;
                    }
                }
                Err(Errno::AGAIN) => return true,
                Err(Errno::INTR) => {}
                Err(_) => return false,
            }
        }
    }
}

fn same_inode(dir: &StateDir, identity: DirIdentity) -> bool {
    untimed_stat::of_fd(dir.fd().as_fd()).is_ok_and(|st| {
        (st.stx_dev_major, st.stx_dev_minor) == identity.dev && st.stx_ino == identity.ino
    })
}

/// The watched directory of this process, if any.
static WATCHED: ForkSafe<Option<Watched>> = ForkSafe::new(None, |watched| *watched = None);

/// What `judge` makes of the record of `device` in the state directory at
/// `path` as it is now (`None`: it has none), looked at in place, not
/// copied; `None` when it cannot say (no such directory, an unreadable
/// record, no inotify): read it the usual way, which reports the error.
pub(crate) fn judged<T>(
    path: &Path,
    device: Device,
    judge: impl FnOnce(Option<&Record>) -> T,
) -> Option<T> {
    let identity = identity_at(path)?;
    let mut watched = WATCHED.lock();
    let keep = watched
        .as_mut()
        .is_some_and(|w| w.path == path && w.identity == identity && w.drain());
    if !keep {
        *watched = Watched::start(path, identity);
    }
    let w = watched.as_mut()?;
    let known = match w.records.iter().position(|(d, _)| *d == device) {
        Some(i) => i,
        None => {
            let record = w.dir.read(device).ok()?;
            if w.records.len() >= REMEMBERED {
                w.records.clear();
            }
            w.records.push((device, record));
            w.records.len() - 1
        }
    };
    Some(judge(w.records[known].1.as_ref()))
}
