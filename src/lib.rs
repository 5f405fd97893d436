//! # freezefs
//!
//! The Tru64 UNIX AdvFS `freezefs(2)` API on Linux. Linux offers only the
//! `FIFREEZE`/`FITHAW` ioctls: no timeout, no owner, no way to ask whether a
//! filesystem is frozen. freezefs adds all three and keeps AdvFS's promises:
//!
//! - a freeze has a timeout (given, the sysconfigtab default, or none), kept by
//!   a helper thread that thaws even a caller that deadlocked on its own
//!   frozen filesystem;
//! - any process can ask whether a filesystem is frozen, and thaw it;
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

mod config;
mod error;
mod events;
mod ffi;
mod forksafe;
mod freeze;
mod freezer;
mod guard;
mod holder;
mod holder_main;
mod keeper;
mod mounts;
mod policy;
mod process;
mod record;
mod reset;
mod spawn;
mod state;
mod status;
mod sys;
mod target;
mod timeout;
mod timer;
mod window;

use std::path::Path;

pub use config::{DefaultTimeout, FALLBACK_SECONDS, SYSCONFIGTAB, SYSCONFIGTAB_ENV};
pub use error::{Error, Result};
pub use freezer::Freezer;
pub use guard::FreezeGuard;
pub use mounts::Device;
pub use state::{RUNDIR, RUNDIR_ENV};
pub use status::{FreezeState, Status};
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

/// The default timeout the sysconfigtab file in force gives now.
pub fn default_timeout() -> DefaultTimeout {
    config::default_timeout(&config::sysconfigtab_path())
}

#[doc(hidden)]
/// Entry points for the fuzz harness (tests/fuzz.rs): the parsers that read
/// untrusted bytes, with their invariants checked by the caller.
pub mod fuzzing {
    /// The default timeout a sysconfigtab text gives.
    pub fn sysconfigtab(text: &[u8]) -> crate::DefaultTimeout {
        crate::config::default_timeout_from(text)
    }

    /// Mount points of a mountinfo text, and each one escaped and read back.
    pub fn mountinfo(text: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        use std::os::unix::ffi::OsStrExt;
        crate::mounts::parse_mountinfo(text)
            .into_iter()
            .map(|e| {
                let raw = e.mount_point.as_os_str().as_bytes().to_vec();
                let again =
                    crate::mounts::unescape_octal(crate::mounts::escape_octal(&raw).as_bytes());
                (raw, again)
            })
            .collect()
    }

    /// A state record: parsed, written back, parsed again (equal when Some).
    pub fn record(text: &[u8]) -> Option<bool> {
        let r = crate::record::Record::from_text(text).ok()?;
        Some(crate::record::Record::from_text(r.to_text().as_bytes()).ok() == Some(r))
    }
}

#[doc(hidden)]
/// The `freezefs-holder` executable's main (an internal helper).
pub fn holder_process_main(args: &[std::ffi::OsString]) -> i32 {
    holder_main::main(args)
}

pub use holder::HOLDER_ENV;
