//! QUERY: is a filesystem frozen? A freeze made through freezefs is answered
//! from its record, which its holder keeps true to the kernel (see
//! [`crate::keep::kernel_truth`]); a record that is over is ended on the way.
//! Without one, the kernel's word, through the holder's probe: a freeze made
//! by any other tool is seen too.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use crate::error::{Error, Result};
use crate::holder::life;
use crate::holder::protocol::ProbeAnswer;
use crate::holder::{client, probe_line};
use crate::keep::end::{defer_to_holder, end_if_over, record_thawed_elsewhere};
use crate::keep::kernel_truth::{self, WatcherSays};
use crate::ops::resolve::Resolved;
use crate::ops::settings::Settings;
use crate::os::mounts::{self, Device, MountId};
use crate::os::process::now_boot_ns;
use crate::os::target;
use crate::store::liveness::Over;
use crate::store::record::{Phase, Record};
use crate::store::seen_records;
use crate::store::state_dir::StateDir;
use rustix::fs::{Mode, OFlags};

/// What the records say of a path's filesystem, looked up with as few
/// system calls as it takes: one `statx` of the path (a mount root: nothing
/// more to check of the name), its superblock and its record as remembered
/// (see [`mounts::superblock_of`] and [`seen_records`]), and for a live
/// record one read of its watcher's wait channel, held open (see
/// [`kernel_truth::watcher_waits_now`]).
enum OnRecord {
    /// A live record answers.
    Answer(bool),
    /// None: the kernel's word is needed, on this mount of this superblock.
    Nothing(MountId, mounts::Superblock),
}

/// QUERY of a path: from the records when they answer, else from the
/// holder's probe; anything else (a record that is over or whose watcher
/// was let through, a name that is not a mount root, any error) through
/// [`is_frozen`] on the path resolved in full, which also reports errors.
pub(crate) fn is_frozen_at(settings: &Settings, path: &Path) -> Result<bool> {
    match on_record(settings, path) {
        Some(OnRecord::Answer(frozen)) => Ok(frozen),
        Some(OnRecord::Nothing(_, sb)) if !mounts::on_block_device(&sb.fs_type) => Ok(false),
        Some(OnRecord::Nothing(mount_id, sb)) => match directory_on(path, mount_id) {
            Some(dir_fd) => probe(settings, sb.device, dir_fd.as_fd()),
            None => is_frozen(settings, &Resolved::path(path)?),
        },
        None => is_frozen(settings, &Resolved::path(path)?),
    }
}

/// What a remembered record says, before its watcher is looked at.
enum Remembered {
    None,
    NotFrozen,
    /// Frozen, watched by this watcher (a record's `holder_pid` and
    /// `watcher`).
    Frozen(Option<u32>, Option<(u32, u64)>),
}

fn on_record(settings: &Settings, path: &Path) -> Option<OnRecord> {
    let c_path = target::checked_path(path).ok()?;
    let facts = target::facts_of(rustix::fs::CWD, &c_path, path).ok()?;
    if !facts.is_mount_root {
        return None;
    }
    let sb = mounts::superblock_of(facts.mount_id).ok()?;
    let remembered = seen_records::judged(&settings.state_dir, sb.device, |record| {
        let Some(record) = record else {
            return Some(Remembered::None);
        };
        if Over::of(record, now_boot_ns(), false).is_some() {
            return None;
        }
        Some(match record.phase {
            Phase::Frozen => Remembered::Frozen(record.holder_pid, record.watcher),
            _ => Remembered::NotFrozen,
        })
    })??;
    // The watcher is looked at once the remembered records are let go: its
    // held channel has a lock of its own.
    Some(match remembered {
        Remembered::None => OnRecord::Nothing(facts.mount_id, sb),
        Remembered::NotFrozen => OnRecord::Answer(false),
        Remembered::Frozen(holder_pid, watcher) => {
            if !kernel_truth::watcher_waits_now(sb.device, holder_pid, watcher) {
                return None;
            }
            OnRecord::Answer(true)
        }
    })
}

/// The directory `path` names, held (`O_PATH`: nothing is asked of the
/// filesystem), if it is still the root of mount `mount_id` (the path may
/// have been mounted over since it was looked at).
fn directory_on(path: &Path, mount_id: MountId) -> Option<OwnedFd> {
    let fd = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let facts = target::facts_of(&fd, c"", path).ok()?;
    (facts.is_mount_root && facts.mount_id == mount_id).then_some(fd)
}

/// QUERY: frozen (not freezing, not thawing), by freezefs or another tool.
pub(crate) fn is_frozen(settings: &Settings, named: &Resolved) -> Result<bool> {
    match live_record(settings, named)? {
        Some(record) => Ok(record.phase == Phase::Frozen),
        None => frozen_by_any_tool(settings, named),
    }
}

/// Whether a filesystem is frozen, by whichever tool, in the kernel's word
/// (the holder's probe, started on demand): asked when freezefs has no
/// watched freeze of it on record. Never asked of a network, FUSE or pseudo
/// filesystem; `false` where the kernel will not tell (a read-only mount,
/// a path that is not a directory). A holder that cannot be started, or
/// does not answer within 2 s, is an error (`ECHILD`): never a guess.
pub(crate) fn frozen_by_any_tool(settings: &Settings, named: &Resolved) -> Result<bool> {
    if !mounts::on_block_device(&named.mount.fs_type) {
        return Ok(false);
    }
    let Some(dir_fd) = named.directory_fd() else {
        return Ok(false);
    };
    probe(settings, named.device(), dir_fd.as_fd())
}

/// The holder's probe of the filesystem of `dir_fd`, a directory on it, of
/// a type on a block device (see [`frozen_by_any_tool`]).
fn probe(settings: &Settings, device: Device, dir_fd: BorrowedFd<'_>) -> Result<bool> {
    let exe = settings.holder();
    if let Some(found) = probe_line::ask(&settings.state_dir, &exe, device, dir_fd) {
        return Ok(found == ProbeAnswer::Frozen);
    }
    let dir = StateDir::open(&settings.state_dir, true)?
        .ok_or_else(|| Error::os("state directory", rustix::io::Errno::NOENT))?;
    client::ask_whether_frozen(&dir, &exe, device, dir_fd).map(|found| found == ProbeAnswer::Frozen)
}

/// The record of a live freeze of the filesystem `named` names; one that is
/// over is ended (thawed, removed) and reported as none, and so is one whose
/// watcher thread a thaw let through, ended as thawed by another tool even
/// before its holder says so (or when the holder was killed).
pub(crate) fn live_record(settings: &Settings, named: &Resolved) -> Result<Option<Record>> {
    let device = named.device();
    let Some(dir) = StateDir::open(&settings.state_dir, false)? else {
        return Ok(None);
    };
    let Some(record) = dir.read(device)? else {
        return Ok(None);
    };
    let now = now_boot_ns();
    if let Some(over) = Over::of(&record, now, false) {
        if defer_to_holder(&record, over, now).is_some() {
            // Past its deadline: not frozen to anyone, but the thaw is its
            // holder's, which knows whether the freeze is still this one.
            return Ok(None);
        }
        let mount_fd = named.target.open_for_ioctl()?;
        end_if_over(
            &dir,
            device,
            record.generation,
            mount_fd.as_fd(),
            false,
            true,
        )?;
        return Ok(None);
    }
    Ok(watched_still(&dir, &record)?.then_some(record))
}

/// Whether a live record still stands in the kernel's word: a `frozen`
/// record while its watcher waits (else it is over). A watcher that a thaw
/// let through while the record still says frozen means another tool
/// thawed it, and the holder has not said so yet (or was killed): the
/// record is ended so on the way. A watcher that tells nothing (see
/// [`WatcherSays::Silent`]) is an error (`ECHILD`): never a guess.
pub(crate) fn watched_still(dir: &StateDir, record: &Record) -> Result<bool> {
    if record.phase != Phase::Frozen {
        return Ok(true);
    }
    match kernel_truth::watcher_says(record) {
        WatcherSays::Waits => Ok(true),
        WatcherSays::LetThrough => {
            let _lock = dir.lock(record.device)?;
            if let Some(still) = dir
                .read(record.device)?
                .filter(|r| r.generation == record.generation)
            {
                record_thawed_elsewhere(dir, &still, false)?;
            }
            Ok(false)
        }
        WatcherSays::Silent => Err(Error::os(
            format!(
                "the freeze of {} is watched by a thread of holder {} that neither waits nor ends (is the holder stopped?)",
                record.mount_point.display(),
                record.holder_pid.unwrap_or(0)
            ),
            rustix::io::Errno::CHILD,
        )),
    }
}

/// A record found over while listing: reach its filesystem (through its
/// holder's fd, else its mount point, checked to be that superblock) and
/// end it;
/// a record of another boot whose mount is gone is only removed.
pub(crate) fn end_by_mount_point(dir: &StateDir, record: &Record) {
    match life::reopen_mount(record) {
        Some(mount_fd) => {
            let _ = end_if_over(
                dir,
                record.device,
                record.generation,
                mount_fd.as_fd(),
                false,
                true,
            );
        }
        None if record.boot_id != crate::os::process::boot_id() => {
            let _ = dir.remove(record.device);
        }
        None => {}
    }
}
