//! Ending a freeze that is over: the one routine that the helper thread, the
//! holder and every call that notices a stale record go through. It works
//! under the superblock's lock, only if the record still carries the
//! generation that was seen, and only if it is still over then, so that a
//! late keeper never thaws a newer freeze.

use std::os::fd::BorrowedFd;

use crate::error::Result;
use crate::events;
use crate::os::mounts::Device;
use crate::os::{process, syscalls};
use crate::store::liveness::Over;
use crate::store::state_dir::{SbLock, StateDir};

/// What [`end_if_over`] found.
pub(crate) enum Ending {
    /// It was over and is ended now, or it had ended already (no record, or
    /// a newer generation).
    Ended,
    /// It is alive; look again at this `CLOCK_BOOTTIME` (its deadline), or
    /// when the record changes.
    Alive(Option<u64>),
    /// Someone holds the superblock's lock (only without `wait`).
    Busy,
}

/// Ends the freeze of `device` that has `generation`, if it is over: FITHAW
/// through `mount_fd` (an fd opened before its FIFREEZE, or a fresh one),
/// remove the record, send the event. `attempt_open`: see [`Over::of`].
/// `wait`: block for the lock rather than answer [`Ending::Busy`].
pub(crate) fn end_if_over(
    dir: &StateDir,
    device: Device,
    generation: u64,
    mount_fd: BorrowedFd<'_>,
    attempt_open: bool,
    wait: bool,
) -> Result<Ending> {
    let _lock: SbLock = if wait {
        dir.lock(device)?
    } else {
        match dir.try_lock(device)? {
            Some(lock) => lock,
            None => return Ok(Ending::Busy),
        }
    };
    let Some(record) = dir.read(device)? else {
        return Ok(Ending::Ended);
    };
    if record.generation != generation {
        return Ok(Ending::Ended);
    }
    let Some(over) = Over::of(&record, process::now_boot_ns(), attempt_open) else {
        return Ok(Ending::Alive(record.deadline_boot_ns));
    };
    if over.needs_thaw() {
        // EINVAL here means another tool thawed it already; either way it is over.
        let _ = syscalls::fithaw(mount_fd);
    }
    dir.remove(device)?;
    events::about_over(&record, over);
    Ok(Ending::Ended)
}
