//! The state directory that every process shares (`/run/freezefs`): one
//! record per frozen superblock, one file holding every superblock's lock,
//! all reached through one directory fd without following symlinks.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::end_reason::EndReason;
use crate::error::{Error, Result};
use crate::os::fork::ParentOnlyFd;
use crate::os::mounts::Device;
use crate::os::small_file;
use crate::os::syscalls;
use crate::os::untimed_stat;
use crate::store::hold_notes::HoldBreakNote;
use crate::store::record::{Ended, Record};

/// The state directory used when `FREEZEFS_RUNDIR` is not set.
pub const RUNDIR: &str = "/run/freezefs";
/// The environment variable that overrides [`RUNDIR`] (ignored under `AT_SECURE`).
pub const RUNDIR_ENV: &str = "FREEZEFS_RUNDIR";
/// Records are tiny; a bigger file is not ours.
const MAX_RECORD_BYTES: u64 = 64 * 1024;

/// The state directory path in force.
pub(crate) fn rundir_path() -> PathBuf {
    syscalls::secure_env(RUNDIR_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(RUNDIR))
}

/// An open, verified state directory.
#[derive(Debug)]
pub(crate) struct StateDir {
    path: PathBuf,
    fd: OwnedFd,
}

/// The file that holds every superblock's lock: the byte at a superblock's
/// offset (see [`lock_offset`]), locked with an open-file-description lock.
/// One file for all, never removed: a freeze creates and removes no lock
/// file of its own.
const SUPERBLOCK_LOCKS: &str = "lock.superblocks";

/// Where a superblock's lock lies in [`SUPERBLOCK_LOCKS`]: one byte per
/// device number, none shared.
fn lock_offset(device: Device) -> i64 {
    (i64::from(device.major) << 32) | i64::from(device.minor)
}

/// Holds a lock until dropped: a superblock's (a byte of
/// [`SUPERBLOCK_LOCKS`]) or one the directory names (an exclusive `flock`
/// on its file). Either goes with the last fd of its open file, and this
/// fd is closed in a forked child (see [`ParentOnlyFd`]).
pub(crate) struct SbLock {
    _fd: ParentOnlyFd,
}

/// `flock`, `EINTR` retried; `Ok(false)` when a non-blocking one finds the
/// file locked.
fn flock(fd: &ParentOnlyFd, op: FlockOperation) -> std::io::Result<bool> {
    loop {
        match rustix::fs::flock(fd, op) {
            Ok(()) => return Ok(true),
            Err(Errno::INTR) => continue,
            Err(Errno::WOULDBLOCK) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}

/// A failed system call `op` on the state directory `path`, which it names.
fn failed(path: &Path, op: &str, e: Errno) -> Error {
    Error::os(format!("state directory {}: {op}", path.display()), e)
}

fn unsafe_dir(path: &Path, problem: &'static str, errno: i32) -> Error {
    Error::UnsafeStateDir {
        path: path.to_path_buf(),
        problem,
        errno,
    }
}

impl StateDir {
    /// Opens the state directory, creating it (root-owned, 0700, whatever the
    /// umask) when `create` is set. `Ok(None)` when it does not exist and
    /// `create` is not set. A symlink, a non-directory, a directory owned by
    /// someone else or writable by group or others is refused.
    pub(crate) fn open(path: &Path, create: bool) -> Result<Option<StateDir>> {
        let exists = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        );
        if let Ok(fd) = exists {
            return StateDir::adopt(path, fd).map(Some);
        }
        if create {
            match rustix::fs::mkdir(path, Mode::RWXU) {
                Ok(()) => {
                    // mkdir's mode went through the umask; state it exactly.
                    rustix::fs::chmod(path, Mode::RWXU).map_err(|e| failed(path, "chmod", e))?;
                }
                Err(Errno::EXIST) => {}
                Err(e) => return Err(failed(path, "mkdir", e)),
            }
        }
        let fd = match rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if !create => return Ok(None),
            Err(Errno::LOOP) => return Err(unsafe_dir(path, "is a symlink", libc::ELOOP)),
            // O_DIRECTORY answers ENOTDIR for a symlink too; tell them apart.
            Err(Errno::NOTDIR) if path.is_symlink() => {
                return Err(unsafe_dir(path, "is a symlink", libc::ELOOP));
            }
            Err(Errno::NOTDIR) => {
                return Err(unsafe_dir(path, "is not a directory", libc::ENOTDIR));
            }
            Err(e) => return Err(failed(path, "open", e)),
        };
        StateDir::adopt(path, fd).map(Some)
    }

    /// Takes an already open state directory, after the same checks.
    pub(crate) fn adopt(path: &Path, fd: OwnedFd) -> Result<StateDir> {
        let st = untimed_stat::of_fd(&fd).map_err(|e| Error::os(path.display().to_string(), e))?;
        let mode = u32::from(st.stx_mode);
        if mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(unsafe_dir(path, "is not a directory", libc::ENOTDIR));
        }
        let euid = rustix::process::geteuid().as_raw();
        if st.stx_uid != 0 && st.stx_uid != euid {
            return Err(unsafe_dir(path, "is owned by another user", libc::EACCES));
        }
        if mode & 0o022 != 0 {
            return Err(unsafe_dir(
                path,
                "is writable by group or others",
                libc::EACCES,
            ));
        }
        Ok(StateDir {
            path: path.to_path_buf(),
            fd,
        })
    }

    /// The directory's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's fd.
    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Whether the directory was removed since it was opened.
    pub(crate) fn is_removed(&self) -> bool {
        untimed_stat::of_fd(&self.fd).is_ok_and(|st| st.stx_nlink == 0)
    }

    fn record_name(device: Device) -> String {
        format!("sb.{device}")
    }

    /// The remembered end of a superblock's last freeze.
    fn ended_name(device: Device) -> String {
        format!("ended.{device}")
    }

    fn err(&self, name: &str, what: &str, e: impl Into<std::io::Error>) -> Error {
        Error::os(format!("{}/{name}: {what}", self.path.display()), e)
    }

    /// Takes the superblock's lock, blocking while another thread or process
    /// holds it.
    pub(crate) fn lock(&self, device: Device) -> Result<SbLock> {
        self.lock_file(SUPERBLOCK_LOCKS, |fd| {
            syscalls::lock_byte(fd, lock_offset(device), true)
        })
        .map(|l| l.expect("a waiting lock either locks or fails"))
    }

    /// Takes the superblock's lock if it is free; `Ok(None)` when it is not.
    pub(crate) fn try_lock(&self, device: Device) -> Result<Option<SbLock>> {
        self.lock_file(SUPERBLOCK_LOCKS, |fd| {
            syscalls::lock_byte(fd, lock_offset(device), false)
        })
    }

    /// Takes a lock of the directory's own (e.g. "lock.holder").
    pub(crate) fn lock_named(&self, name: &str) -> Result<SbLock> {
        self.lock_file(name, |fd| flock(fd, FlockOperation::LockExclusive))
            .map(|l| l.expect("a blocking flock either locks or fails"))
    }

    /// Takes a lock of the directory's own if it is free; `Ok(None)` when
    /// another process holds it (a warden holds `lock.warden` for its life).
    pub(crate) fn try_lock_named(&self, name: &str) -> Result<Option<SbLock>> {
        self.lock_file(name, |fd| {
            flock(fd, FlockOperation::NonBlockingLockExclusive)
        })
    }

    /// Opens the file `name`, creating it, and takes the lock `take` takes
    /// on it (`Ok(false)`: held elsewhere). A file replaced while we waited
    /// for it (removed by hand, say) is not the lock any more: then again,
    /// with the file now at `name`.
    fn lock_file(
        &self,
        name: &str,
        take: impl Fn(&ParentOnlyFd) -> std::io::Result<bool>,
    ) -> Result<Option<SbLock>> {
        loop {
            let fd = ParentOnlyFd::open(|| {
                rustix::fs::openat(
                    &self.fd,
                    name,
                    OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::RUSR | Mode::WUSR,
                )
            })
            .map_err(|e| self.err(name, "open", e))?;
            if !take(&fd).map_err(|e| self.err(name, "lock", e))? {
                return Ok(None);
            }
            let held = untimed_stat::of_fd(&fd).map_err(|e| self.err(name, "fstat", e))?;
            match untimed_stat::at(&self.fd, name) {
                Ok(now) if untimed_stat::same_inode(&now, &held) => {
                    return Ok(Some(SbLock { _fd: fd }));
                }
                Ok(_) | Err(Errno::NOENT) => continue,
                Err(e) => return Err(self.err(name, "stat", e)),
            }
        }
    }

    /// The record of a superblock's live freeze, if there is one.
    pub(crate) fn read(&self, device: Device) -> Result<Option<Record>> {
        self.read_file(&Self::record_name(device))
    }

    /// The remembered end of a superblock's last freeze, if there is one
    /// (of this boot: one of another boot says nothing). A freeze made since
    /// may still be live: the live record comes first.
    pub(crate) fn read_ended(&self, device: Device) -> Result<Option<Record>> {
        Ok(self
            .read_file(&Self::ended_name(device))?
            .filter(|r| r.ended.is_some() && r.boot_id == crate::os::process::boot_id()))
    }

    fn read_file(&self, name: &str) -> Result<Option<Record>> {
        let corrupt = |reason: &str| Error::CorruptRecord {
            path: self.path.join(name),
            reason: reason.to_string(),
        };
        // Never followed, never waited on: a symlink or a FIFO in place of
        // a record is a broken record, like garbage.
        let fd = match rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => return Err(corrupt("a symlink, not a record")),
            Err(e) => return Err(self.err(name, "open", e)),
        };
        let st = untimed_stat::of_fd(&fd).map_err(|e| self.err(name, "fstat", e))?;
        if u32::from(st.stx_mode) & libc::S_IFMT != libc::S_IFREG {
            return Err(corrupt("not a regular file"));
        }
        let expected = usize::try_from(st.stx_size).unwrap_or(0);
        let text = small_file::read_fd(&fd, expected, MAX_RECORD_BYTES as usize)
            .map_err(|e| self.err(name, "read", e))?;
        Record::from_text(&text)
            .map(Some)
            .map_err(|reason| corrupt(&reason))
    }

    /// Writes a record atomically: a private temporary file, then rename.
    /// A crash at any point leaves the old record or the new one, never half.
    pub(crate) fn write(&self, record: &Record) -> Result<()> {
        self.write_file(&Self::record_name(record.device), record)
    }

    fn write_file(&self, name: &str, record: &Record) -> Result<()> {
        self.write_atomically(name, record.device, record.to_text().as_bytes())
    }

    /// Writes `text` to `name` atomically (a private temporary file named
    /// after `device`, then rename).
    pub(crate) fn write_atomically(&self, name: &str, device: Device, text: &[u8]) -> Result<()> {
        let tmp = format!(
            ".tmp.{}.{}.{:x}",
            device,
            std::process::id(),
            crate::os::process::fresh_generation()
        );
        let fd = rustix::fs::openat(
            &self.fd,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::RUSR | Mode::WUSR,
        )
        .map_err(|e| self.err(&tmp, "create", e))?;
        let written = rustix::fs::fchmod(&fd, Mode::RUSR | Mode::WUSR)
            .map_err(std::io::Error::from)
            .and_then(|()| std::fs::File::from(fd).write_all(text))
            .map_err(|e| self.err(&tmp, "write", e))
            .and_then(|()| {
                rustix::fs::renameat(&self.fd, tmp.as_str(), &self.fd, name)
                    .map_err(|e| self.err(name, "rename", e))
            });
        if written.is_err() {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
        }
        written
    }

    /// Removes temporary files left by writers that were killed between
    /// create and rename (their pid no longer runs).
    pub(crate) fn sweep_orphans(&self) {
        let Ok(mut dir) = self.listing() else {
            return;
        };
        while let Some(Ok(entry)) = dir.read() {
            let name = entry.file_name();
            let Some(pid) = name
                .to_str()
                .ok()
                .and_then(|n| n.strip_prefix(".tmp."))
                .and_then(|rest| rest.split('.').nth(1))
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if crate::os::process::start_time(pid).is_none() {
                let _ = rustix::fs::unlinkat(&self.fd, name, AtFlags::empty());
            }
        }
    }

    /// Rewrites a record as being thawed by this process. Called under the
    /// lock before FITHAW: a thaw killed between FITHAW and removing the
    /// record then leaves `thawing` (not frozen to QUERY, finished by
    /// whoever notices the thawer died), never a record that says `frozen`.
    /// A hold found broken before the thaw is remembered with its end.
    pub(crate) fn mark_thawing(
        &self,
        record: &Record,
        hold_broken: Option<&HoldBreakNote>,
    ) -> Result<()> {
        let mut thawing = record.clone();
        if let Some(broken) = hold_broken {
            thawing.hold_broken = Some(broken.clone());
        }
        thawing.phase = crate::store::record::Phase::Thawing;
        thawing.thawer = Some(crate::os::process::current());
        // How it ends once FITHAW succeeds: then one rename remembers it.
        thawing.ended = Some(Ended {
            reason: EndReason::Thawed,
            at_unix_ns: crate::os::process::now_unix_ns(),
            reported: true,
        });
        self.write(&thawing)
    }

    /// After a THAW's FITHAW: the record marked `thawing` becomes the
    /// remembered end of the freeze (thawed on request), in one rename.
    pub(crate) fn finish_thaw(&self, device: Device) -> Result<()> {
        let (live, ended) = (Self::record_name(device), Self::ended_name(device));
        rustix::fs::renameat(&self.fd, live.as_str(), &self.fd, ended.as_str())
            .map_err(|e| self.err(&ended, "rename", e))
    }

    /// Removes a superblock's record; no record is not an error.
    pub(crate) fn remove(&self, device: Device) -> Result<()> {
        self.remove_file(&Self::record_name(device))
    }

    /// Ends the live freeze `record` describes: remembers how and when
    /// (`ended.DEV`, written first, so that a crash in between leaves the
    /// live record to be ended again), then removes the live record.
    /// `reported`: the caller of a THAW is told by this very call.
    pub(crate) fn record_end(
        &self,
        record: &Record,
        reason: EndReason,
        reported: bool,
    ) -> Result<()> {
        let mut ended = record.clone();
        ended.ended = Some(Ended {
            reason,
            at_unix_ns: crate::os::process::now_unix_ns(),
            reported,
        });
        let remembered = self.write_file(&Self::ended_name(record.device), &ended);
        // Removed even when the end could not be written (a full or failing
        // state directory): a live record left behind would have every
        // later call end it again, a FITHAW that may thaw a newer freeze of
        // another tool. The caller reports the error, once.
        let removed = self.remove(record.device);
        remembered.and(removed)
    }

    /// Rewrites a remembered end (`ended.DEV`), with what was learnt since.
    pub(crate) fn write_ended(&self, ended: &Record) -> Result<()> {
        self.write_file(&Self::ended_name(ended.device), ended)
    }

    /// Notes that a THAW has been told how the remembered freeze ended.
    pub(crate) fn mark_end_reported(&self, ended: &Record) -> Result<()> {
        let mut reported = ended.clone();
        if let Some(e) = &mut reported.ended {
            e.reported = true;
        }
        self.write_file(&Self::ended_name(ended.device), &reported)
    }

    pub(crate) fn remove_file(&self, name: &str) -> Result<()> {
        match rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.err(name, "unlink", e)),
        }
    }

    /// A fresh directory stream: a new open file description, since a dup
    /// would share (and leave at the end) the directory's read position.
    pub(crate) fn listing(&self) -> rustix::io::Result<rustix::fs::Dir> {
        let fd = rustix::fs::openat(
            &self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        rustix::fs::Dir::new(fd)
    }

    /// The devices that have a record, in no particular order.
    pub(crate) fn recorded_devices(&self) -> Result<Vec<Device>> {
        let mut dir = self.listing().map_err(|e| self.err(".", "opendir", e))?;
        let mut devices = Vec::new();
        while let Some(entry) = dir.read() {
            let entry = entry.map_err(|e| self.err(".", "readdir", e))?;
            if let Some(device) = entry
                .file_name()
                .to_str()
                .ok()
                .and_then(|n| n.strip_prefix("sb."))
                .and_then(|d| d.parse().ok())
            {
                devices.push(device);
            }
        }
        Ok(devices)
    }

    /// The mount id of the filesystem this directory is on.
    pub(crate) fn mount_id(&self) -> Result<crate::os::mounts::MountId> {
        crate::os::target::facts_of(self.fd.as_fd(), c"", &self.path).map(|f| f.mount_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state directory of a test's own under the temporary directory,
    /// removed when dropped, even when the test fails.
    struct UnitDir(PathBuf);

    impl UnitDir {
        fn new(name: &str) -> (UnitDir, StateDir) {
            let path =
                std::env::temp_dir().join(format!("freezefs-{name}-unit.{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            let dir = StateDir::open(&path, true).unwrap().unwrap();
            (UnitDir(path), dir)
        }
    }

    impl Drop for UnitDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn listing_the_same_directory_twice_sees_everything_both_times() {
        let (unit, dir) = UnitDir::new("state");
        let path = &unit.0;
        for name in ["sb.7:0", "sb.7:1", ".tmp.7:2.999999999.1"] {
            std::fs::write(path.join(name), b"x").unwrap();
        }
        let first = dir.recorded_devices().unwrap().len();
        let second = dir.recorded_devices().unwrap().len();
        dir.sweep_orphans();
        dir.sweep_orphans();
        let left = std::fs::read_dir(path).unwrap().count();
        assert_eq!((first, second), (2, 2));
        assert_eq!(left, 2, "the dead writer's temporary file was not swept");
    }

    /// Each lock is an open of its own: a second lock of a superblock in
    /// the same process (another thread's) waits, another superblock's
    /// lock does not, and dropping the first frees the superblock.
    #[test]
    fn a_superblock_lock_excludes_the_same_process_and_only_that_superblock() {
        let (_unit, dir) = UnitDir::new("lock");
        let first = Device { major: 7, minor: 1 };
        let held = dir.lock(first).unwrap();
        let again = dir.try_lock(first).unwrap().is_some();
        let other = dir
            .try_lock(Device { major: 7, minor: 2 })
            .unwrap()
            .is_some();
        drop(held);
        let after = dir.try_lock(first).unwrap().is_some();
        assert_eq!((again, other, after), (false, true, true));
    }
}
