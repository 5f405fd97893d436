//! # freezefs
//!
//! The Tru64 UNIX AdvFS `freezefs(2)` API on Linux. Linux offers only the
//! `FIFREEZE`/`FITHAW` ioctls: no timeout, no owner, no way to ask whether a
//! filesystem is frozen. freezefs adds all three and keeps AdvFS's promises:
//!
//! - a freeze has a timeout (given, the sysconfigtab default, or none), kept by
//!   a helper thread that thaws even a caller that deadlocked on its own
//!   frozen filesystem;
//! - any privileged process can ask whether a filesystem is frozen, and thaw it;
//! - `/`, `/usr`, `/var` and the state directory's filesystem are never
//!   frozen, under any of their names;
//! - one freeze per superblock, whatever mount (bind, btrfs subvolume) it is
//!   reached through.
//!
//! ```no_run
//! use freezefs::{Timeout, freeze, is_frozen, thaw};
//!
//! freeze("/srv/db", Timeout::Seconds(30))?;
//! assert!(is_frozen("/srv/db")?);
//! // ... take the snapshot ...
//! thaw("/srv/db")?; // an error here means the freeze timed out: the snapshot is not reliable
//! # Ok::<(), freezefs::Error>(())
//! ```
//!
//! The C API (`freezefs.h`) wraps this one; every error knows its `errno`
//! ([`Error::errno`]).

#![deny(missing_docs)]

// The crate, top down; imports only go down this list (tests/integration/
// layering.rs checks it):
mod ffi; // the C ABI: the only extern "C" code
mod ops; // the operations: FREEZE, THAW, QUERY, status, reset, the RAII guard
mod host_guard; // the guard: no freeze on the host outlives a limit, whoever made it
mod holder; // the holder process, its warden, and how callers reach them
mod keep; // deadlines and kernel truth: the helper thread, the deadline loop
mod holds; // hold hooks: an application's lock held as long as a freeze
mod hooks; // freeze and thaw hooks: finding and running them
mod events; // syslog events
mod policy; // who may call; what is never frozen
mod timeout; // the Timeout type and how it resolves
mod config; // the sysconfigtab file
mod store; // the state directory: records, locks, liveness
mod end_reason; // how a freeze ended
mod os; // facts about the machine and the system calls behind them
mod error; // the error type and its errno

use std::path::{Path, PathBuf};

pub use config::{
    DefaultTimeout, FALLBACK_SECONDS, HOLD_GRACE_FALLBACK_SECONDS, HOOK_FALLBACK_SECONDS,
    PROTECTED_MAX_FALLBACK_SECONDS, SYSCONFIGTAB, SYSCONFIGTAB_ENV,
};
pub use end_reason::EndReason;
pub use error::{Error, Result};
pub use holder::client::HOLDER_ENV;
pub use holds::{HOLD_DIR, HOLD_DIR_ENV};
pub use hooks::{HOOKS_DIR, HOOKS_DIR_ENV};
pub use host_guard::guard_loop::GuardStart;
pub use host_guard::limit::FOREIGN_MAX_FALLBACK_SECONDS;
pub use ops::freeze_guard::FreezeGuard;
pub use ops::freezer::Freezer;
pub use ops::run_frozen::{HeldThroughout, RunFrozen};
pub use ops::status::{
    ForeignFreeze, FreezeState, HoldBreak, HoldHook, LastFreeze, Listing, Status,
};
pub use os::mounts::Device;
pub use os::process::iso_utc;
pub use store::state_dir::{RUNDIR, RUNDIR_ENV};
pub use timeout::Timeout;

/// Flushes and freezes the filesystem mounted at `path`, with a timeout.
///
/// Uses [`Freezer::from_env`]. Fails with [`Error::AlreadyFrozen`] when it is
/// frozen already, [`Error::Protected`] for `/`, `/usr`, `/var`,
/// [`Error::Unsupported`] for filesystems Linux cannot freeze.
pub fn freeze(path: impl AsRef<Path>, timeout: Timeout) -> Result<()> {
    Freezer::from_env().freeze(path, timeout)
}

/// Thaws the filesystem mounted at `path`, also one frozen by another tool.
/// Fails with [`Error::NotFrozen`] when it was not frozen.
pub fn thaw(path: impl AsRef<Path>) -> Result<()> {
    Freezer::from_env().thaw(path)
}

/// True when the filesystem mounted at `path` is frozen through freezefs.
pub fn is_frozen(path: impl AsRef<Path>) -> Result<bool> {
    Freezer::from_env().is_frozen(path)
}

/// Freezes several filesystems all or nothing: see [`Freezer::freeze_all`].
pub fn freeze_all<P: AsRef<Path>>(paths: &[P], timeout: Timeout) -> Result<()> {
    Freezer::from_env().freeze_all(paths, timeout)
}

/// Thaws several filesystems: see [`Freezer::thaw_all`].
pub fn thaw_all<P: AsRef<Path>>(paths: &[P]) -> Result<()> {
    Freezer::from_env().thaw_all(paths)
}

/// Gives a frozen filesystem a new timeout, counted from now: see
/// [`Freezer::reset_timeout`].
pub fn reset_timeout(path: impl AsRef<Path>, timeout: Timeout) -> Result<()> {
    Freezer::from_env().reset_timeout(path, timeout)
}

/// The state of the filesystem mounted at `path`: see [`Freezer::status`].
pub fn status(path: impl AsRef<Path>) -> Result<Status> {
    Freezer::from_env().status(path)
}

/// Every filesystem frozen through freezefs: see [`Freezer::list`].
pub fn list() -> Result<Vec<Status>> {
    Freezer::from_env().list()
}

/// Every frozen filesystem that could be told, and what could not: see
/// [`Freezer::listing`].
pub fn listing() -> Result<Listing> {
    Freezer::from_env().listing()
}

/// The mount point of the mount that `path` lies on, as `findmnt -T` finds
/// it: what to freeze to freeze the filesystem holding `path`.
pub fn mount_point_of(path: impl AsRef<Path>) -> Result<PathBuf> {
    ops::resolve::mount_point_of(path.as_ref())
}

/// True for a filesystem type Linux can never freeze: one that does not
/// live on a block device (tmpfs, ramfs, proc, NFS, FUSE, overlay). Some
/// block filesystems cannot be frozen either (vfat); FREEZE tells.
pub fn never_freezable(fs_type: &str) -> bool {
    !os::mounts::on_block_device(fs_type)
}

/// The default timeout the sysconfigtab file in force gives now.
pub fn default_timeout() -> DefaultTimeout {
    config::default_timeout(&config::sysconfigtab_path())
}

/// Why the sysconfigtab file in force gives the default timeout 60 s
/// rather than what it says (it exists but cannot be read, is not a regular
/// file, is too large, or its value is not a whole number of seconds),
/// naming the file; None when it is usable or absent.
pub fn default_timeout_problem() -> Option<String> {
    config::default_timeout_problem(&config::sysconfigtab_path())
}

#[doc(hidden)]
/// Entry points for the fuzz harness (tests/integration/fuzz.rs): the parsers that read
/// untrusted bytes, with their invariants checked by the caller.
pub mod fuzzing {
    /// The default timeout a sysconfigtab text gives.
    pub fn sysconfigtab(text: &[u8]) -> crate::DefaultTimeout {
        crate::config::default_timeout_from(text)
    }

    /// Mount points of a mountinfo text, and each one escaped and read back.
    /// The guard's reading of the same text is checked on the way: at most
    /// one watched mount per superblock, never a read-only one.
    pub fn mountinfo(text: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        use std::os::unix::ffi::OsStrExt;
        let lines: Vec<_> = text
            .split(|&b| b == b'\n')
            .filter_map(crate::os::mounts::parse_mount_line)
            .collect();
        let watched = crate::host_guard::watched::choose(&lines);
        for (i, w) in watched.iter().enumerate() {
            assert!(watched[..i].iter().all(|o| o.device != w.device));
            assert!(
                lines
                    .iter()
                    .any(|l| l.entry.mount_id == w.mount_id && !l.read_only)
            );
        }
        crate::os::mounts::parse_mountinfo(text)
            .into_iter()
            .map(|e| {
                let raw = e.mount_point.as_os_str().as_bytes().to_vec();
                let again = crate::os::mounts::unescape_octal(
                    crate::os::mounts::escape_octal(&raw).as_bytes(),
                );
                (raw, again)
            })
            .collect()
    }

    /// A holder request line: parsed, encoded, parsed again (equal when
    /// Some).
    pub fn holder_request(line: &[u8]) -> Option<bool> {
        use crate::holder::protocol::Request;
        let request = Request::parse(line)?;
        Some(Request::parse(request.encode().as_bytes()) == Some(request))
    }

    /// A holder answer: parsed, encoded, parsed again (equal when Some).
    pub fn holder_answer(words: &[u8]) -> Option<bool> {
        use crate::holder::protocol::Answer;
        let answer = Answer::parse(std::str::from_utf8(words).ok()?)?;
        Some(Answer::parse(&answer.encode()) == Some(answer))
    }

    /// A state record: parsed, written back, parsed again (equal when Some).
    pub fn record(text: &[u8]) -> Option<bool> {
        let r = crate::store::record::Record::from_text(text).ok()?;
        Some(crate::store::record::Record::from_text(r.to_text().as_bytes()).ok() == Some(r))
    }
}

#[doc(hidden)]
/// Syslog the way freezefs's events go, for freezefs's own tools
/// (`freezefs-group`): one writer for every event of the project.
pub mod syslog {
    pub use crate::events::{Severity, escape_field, send_line};
}

#[doc(hidden)]
/// The C boundary's guard, for the preload shim: no panic crosses into C,
/// every error becomes -1 and an errno.
pub mod ffi_guard {
    pub use crate::ffi::call::guarded;
    pub use crate::os::syscalls::set_errno;
}

#[doc(hidden)]
/// The `freezefs-holder` executable's main (an internal helper).
pub fn holder_process_main(args: &[std::ffi::OsString]) -> i32 {
    holder::server::main(args)
}

#[doc(hidden)]
/// The kernel's and VxFS's freeze ioctl numbers, defined once for the
/// library, the preload shim, the benchmark and the tests, and the raw
/// calls the benchmark measures freezefs against: their unsafe code stays
/// in the library's system-call layer.
pub mod ioctl_numbers {
    pub use crate::os::syscalls::{FIFREEZE, FITHAW, VX_FREEZE, VX_FREEZE_ALL, VX_THAW};
    pub use crate::os::syscalls::{bind_mount, ioctl_no_arg as raw_ioctl};
}
