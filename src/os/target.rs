//! The object a caller names: opened once, without side effects, and
//! described by `statx` (identity, mount id, whether it is a mount root).

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, FileType, Mode, OFlags, StatxAttributes, StatxFlags};

use crate::error::{Error, Result};
use crate::os::mounts::{MountEntry, MountId, describe};

/// `STATX_MNT_ID_UNIQUE` (Linux 6.8), which rustix does not name yet.
const STATX_MNT_ID_UNIQUE: u32 = 0x4000;

/// `PATH_MAX` including the terminating NUL.
const PATH_MAX: usize = libc::PATH_MAX as usize;

/// An inode, as `(st_dev, st_ino)`: two names for the same directory compare equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    dev: (u32, u32),
    ino: u64,
}

/// What `statx` says about a path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PathFacts {
    /// Its inode identity.
    pub identity: Identity,
    /// The mount it is on.
    pub mount_id: MountId,
    /// True when it is the root of that mount.
    pub is_mount_root: bool,
    /// Directory, regular file, ...
    pub file_type: FileType,
}

/// Whether statmount(2) answers here (Linux 6.8; not under every sandbox
/// or valgrind): probed once on `/`. Without it, mount ids are the listed
/// ones and mountinfo is read. An atomic, not a lock: fork-safe.
fn statmount_works() -> bool {
    use std::sync::atomic::{AtomicU8, Ordering};
    static WORKS: AtomicU8 = AtomicU8::new(0); // 0 unknown, 1 no, 2 yes
    match WORKS.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let unique = StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE);
            let works = rustix::fs::statx(CWD, "/", AtFlags::empty(), unique)
                .ok()
                .filter(|st| st.stx_mask & STATX_MNT_ID_UNIQUE != 0)
                .is_some_and(|st| crate::os::syscalls::statmount(st.stx_mnt_id).is_ok());
            WORKS.store(if works { 2 } else { 1 }, Ordering::Relaxed);
            works
        }
    }
}

/// Checks the length rules of the contract and converts to a C string.
pub(crate) fn checked_path(path: &Path) -> Result<CString> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.is_empty() {
        return Err(Error::EmptyPath);
    }
    if bytes.len() >= PATH_MAX {
        return Err(Error::PathTooLong);
    }
    CString::new(bytes).map_err(|_| Error::InvalidArgument("path contains a NUL byte"))
}

/// `statx` of a path (following symlinks) or, with an empty path, of an fd.
pub(crate) fn facts_of<Fd: AsFd>(dirfd: Fd, path: &CStr, what: &Path) -> Result<PathFacts> {
    let flags = if path.is_empty() {
        AtFlags::EMPTY_PATH
    } else {
        AtFlags::empty()
    };
    let id_flag = if statmount_works() {
        StatxFlags::from_bits_retain(STATX_MNT_ID_UNIQUE)
    } else {
        StatxFlags::MNT_ID
    };
    let st = rustix::fs::statx(
        dirfd,
        path,
        flags,
        StatxFlags::TYPE | StatxFlags::INO | id_flag,
    )
    .map_err(|e| Error::os(what.display().to_string(), e))?;
    let mount_id = if st.stx_mask & STATX_MNT_ID_UNIQUE != 0 {
        MountId::Unique(st.stx_mnt_id)
    } else if st.stx_mask & StatxFlags::MNT_ID.bits() != 0 {
        MountId::Listed(st.stx_mnt_id)
    } else {
        return Err(Error::os(
            "statx: this kernel reports no mount id (Linux 5.8 or later is needed)",
            rustix::io::Errno::NOSYS,
        ));
    };
    if !st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) {
        return Err(Error::os(
            "statx: this kernel does not tell mount roots (Linux 5.8 or later is needed)",
            rustix::io::Errno::NOSYS,
        ));
    }
    Ok(PathFacts {
        identity: Identity {
            dev: (st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
        },
        mount_id,
        is_mount_root: st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT),
        file_type: FileType::from_raw_mode(st.stx_mode.into()),
    })
}

/// A path the caller named, held open with `O_PATH` so that every later
/// step works on the same object, whatever happens to the name.
pub(crate) struct Target {
    /// The path as given (or, for an fd, its mount point), for messages.
    pub path: PathBuf,
    fd: OwnedFd,
    /// True when `fd` is open for real (a directory opened read-only, or the
    /// caller's own fd, dup'd), which ioctls accept as it is; false for an
    /// `O_PATH` one.
    ioctl_ready: bool,
    /// What `statx` says about it.
    pub facts: PathFacts,
}

impl Target {
    /// Opens `path` (following symlinks) without reading, writing or
    /// triggering device side effects.
    pub(crate) fn open(path: &Path) -> Result<Target> {
        let c_path = checked_path(path)?;
        let fd = rustix::fs::open(
            c_path.as_c_str(),
            OFlags::PATH | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::os(path.display().to_string(), e))?;
        let facts = facts_of(&fd, c"", path)?;
        Ok(Target {
            path: path.to_path_buf(),
            fd,
            ioctl_ready: false,
            facts,
        })
    }

    /// [`Target::open`] for FREEZE and THAW, which open what they name for
    /// real anyway (an ioctl needs it): a directory is opened read-only at
    /// once, so that one open serves every later step; anything else as
    /// [`Target::open`] does. Never for a QUERY or a listing: an `O_PATH`
    /// open asks no filesystem anything (a FUSE daemon, a network server).
    pub(crate) fn open_to_change(path: &Path) -> Result<Target> {
        let c_path = checked_path(path)?;
        if let Ok(fd) = rustix::fs::open(
            c_path.as_c_str(),
            OFlags::RDONLY
                | OFlags::DIRECTORY
                | OFlags::NONBLOCK
                | OFlags::NOCTTY
                | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            let facts = facts_of(&fd, c"", path)?;
            return Ok(Target {
                path: path.to_path_buf(),
                fd,
                ioctl_ready: true,
                facts,
            });
        }
        Target::open(path)
    }

    /// Takes a caller's fd (any fd inside a filesystem, as FIFREEZE
    /// accepts), dup'd so that the caller keeps its own.
    pub(crate) fn from_fd(fd: BorrowedFd<'_>) -> Result<Target> {
        let own = rustix::io::fcntl_dupfd_cloexec(fd, 0).map_err(|e| Error::os("dup fd", e))?;
        let path = rustix::fs::readlinkat(
            CWD,
            format!("/proc/self/fd/{}", own.as_raw_fd()),
            Vec::new(),
        )
        .map(|p| PathBuf::from(OsStr::from_bytes(p.as_bytes())))
        .unwrap_or_else(|_| PathBuf::from("(fd)"));
        let facts = facts_of(&own, c"", &path)?;
        Ok(Target {
            path,
            fd: own,
            ioctl_ready: true,
            facts,
        })
    }

    /// The fd it is held by: good as the directory fd of `*at` calls, not
    /// always for ioctls (see [`Target::open_for_ioctl`]).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The mount this path is on.
    pub(crate) fn mount(&self) -> Result<MountEntry> {
        describe(self.facts.mount_id)
            .map_err(|e| Error::os(format!("{}: mount not found", self.path.display()), e))
    }

    /// An fd that ioctls work on (`O_PATH` ones do not): the same object,
    /// reopened through `/proc/self/fd`. Only directories and regular files
    /// are reopened, so no device or FIFO is ever opened for real.
    pub(crate) fn open_for_ioctl(&self) -> Result<OwnedFd> {
        if self.ioctl_ready {
            return rustix::io::fcntl_dupfd_cloexec(&self.fd, 0)
                .map_err(|e| Error::os("dup fd", e));
        }
        match self.facts.file_type {
            FileType::Directory | FileType::RegularFile => {}
            _ => {
                return Err(Error::InvalidArgument(
                    "only a directory or a regular file can name a filesystem",
                ));
            }
        }
        let proc_path = format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&self.fd)
        );
        rustix::fs::open(
            proc_path.as_str(),
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY | OFlags::NONBLOCK,
            Mode::empty(),
        )
        .map_err(|e| Error::os(format!("{}: reopen", self.path.display()), e))
    }
}

/// Identity of a well-known path, `None` when it does not exist.
pub(crate) fn identity_of(path: &str) -> Option<PathFacts> {
    let c_path = CString::new(path).ok()?;
    facts_of(CWD, &c_path, Path::new(OsStr::new(path))).ok()
}
