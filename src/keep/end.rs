//! Ending a freeze that is over: the one routine that the helper thread, the
//! holder and every call that notices a stale record go through. It works
//! under the superblock's lock, only if the record still carries the
//! generation that was seen, and only if it is still over then, so that a
//! late keeper never thaws a newer freeze.

use std::os::fd::BorrowedFd;

use crate::end_reason::EndReason;
use crate::error::Result;
use crate::events;
use crate::keep::kernel_truth::{self, WatcherSays};
use crate::os::mounts::Device;
use crate::os::{process, syscalls};
use crate::store::liveness::Over;
use crate::store::record::{Phase, Record};
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
    end_over(dir, &record, over, mount_fd)?;
    Ok(Ending::Ended)
}

/// Ends the freeze `record` describes, found `over`, under its superblock's
/// lock (the caller holds it): FITHAW unless it is of another boot, remember
/// how it ended, send the event.
pub(crate) fn end_over(
    dir: &StateDir,
    record: &Record,
    over: Over,
    mount_fd: BorrowedFd<'_>,
) -> Result<()> {
    match over {
        Over::OtherBoot => dir.remove(record.device)?,
        // The kernel's word first: its watcher let through means that a
        // thaw came since FIFREEZE, and whatever is frozen now (another
        // tool's freeze) is not this one to thaw.
        Over::Expired if kernel_truth::watcher_says(record) == WatcherSays::LetThrough => {
            return record_thawed_elsewhere(dir, record, false);
        }
        Over::Expired | Over::Abandoned | Over::HalfThawed => {
            let (reason, reported) = match over {
                Over::Expired => (EndReason::Timeout, false),
                Over::Abandoned => (EndReason::FreezerDied, false),
                // Its thawer was answered, or died: nobody is left to tell.
                _ => (EndReason::Thawed, true),
            };
            thaw_and_remember(dir, record, mount_fd, reason, reported)?;
        }
    }
    events::about_over(record, over);
    Ok(())
}

/// FITHAW (EINVAL means another tool thawed it already; either way it is
/// over), then the remembered end, under the superblock's lock (the caller
/// holds it). When the end cannot be written, one event says so: the live
/// record is gone all the same, so no later call ends it again.
fn thaw_and_remember(
    dir: &StateDir,
    record: &Record,
    mount_fd: BorrowedFd<'_>,
    reason: EndReason,
    reported: bool,
) -> Result<()> {
    let _ = syscalls::fithaw(mount_fd);
    dir.record_end(record, reason, reported).inspect_err(|e| {
        events::about_record(
            events::Kind::Failed,
            record,
            &format!("thawed, but how the freeze ended could not be recorded: {e}"),
        )
    })
}

/// Ends a freeze past the deadline `known` (its record as last read) whose
/// record file is now unreadable (garbage, a symlink, a FIFO) or was
/// removed by hand: under the lock, only while no record of it can be
/// read, with the kernel's word through the watcher `known` names. The
/// broken file goes with the end.
pub(crate) fn end_unreadable(
    dir: &StateDir,
    known: &Record,
    mount_fd: BorrowedFd<'_>,
) -> Result<Ending> {
    let Some(_lock) = dir.try_lock(known.device)? else {
        return Ok(Ending::Busy);
    };
    match dir.read(known.device) {
        // Readable again: the usual review decides, now.
        Ok(Some(r)) if r.generation == known.generation => {
            return Ok(Ending::Alive(Some(process::now_boot_ns())));
        }
        // A newer freeze on record: not ours to end.
        Ok(Some(_)) => return Ok(Ending::Ended),
        Ok(None) | Err(_) => {}
    }
    end_over(dir, known, Over::Expired, mount_fd)?;
    Ok(Ending::Ended)
}

/// Ends the freeze of `device` that has `generation` because its holder was
/// asked to stop: FITHAW through `mount_fd` unless the kernel shows that a
/// thaw came already, then the remembered end says so (reason
/// `holder-stopped`), for THAW, `thawfs` and the thaw hooks.
pub(crate) fn end_as_stopped(
    dir: &StateDir,
    device: Device,
    generation: u64,
    mount_fd: BorrowedFd<'_>,
) -> Result<Ending> {
    let (_lock, record) = match this_generation(dir, device, generation)? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    if kernel_truth::watcher_says(&record) == WatcherSays::LetThrough {
        record_thawed_elsewhere(dir, &record, false)?;
        return Ok(Ending::Ended);
    }
    thaw_and_remember(dir, &record, mount_fd, EndReason::HolderStopped, false)?;
    events::about_record(
        events::Kind::HolderStopped,
        &record,
        "the holder was asked to stop (SIGTERM, SIGINT or SIGHUP) and thawed it before exiting",
    );
    Ok(Ending::Ended)
}

/// Under the superblock's lock, if it is free: the record of `generation`,
/// or what to answer instead (busy; ended, as no record of it is left).
fn this_generation(
    dir: &StateDir,
    device: Device,
    generation: u64,
) -> Result<std::result::Result<(SbLock, Record), Ending>> {
    let Some(lock) = dir.try_lock(device)? else {
        return Ok(Err(Ending::Busy));
    };
    Ok(match dir.read(device)? {
        Some(record) if record.generation == generation => Ok((lock, record)),
        _ => Err(Ending::Ended),
    })
}

/// Remembers that another tool ended the freeze `record` describes, under
/// its lock (the caller holds it), and says so. `reported`: the caller is
/// a THAW that answers so now.
pub(crate) fn record_thawed_elsewhere(
    dir: &StateDir,
    record: &Record,
    reported: bool,
) -> Result<()> {
    dir.record_end(record, EndReason::OtherTool, reported)?;
    events::about_record(events::Kind::Thawed, record, "thawed by another tool");
    Ok(())
}

/// Ends, on request, a freeze whose watcher tells nothing (see
/// [`WatcherSays::Silent`]), under its lock (the caller holds it): FITHAW,
/// so that nothing stays frozen, then remembered and answered as a freeze
/// that cannot be relied on, since the kernel could not say whether
/// another tool thawed it first.
pub(crate) fn thaw_unvouched(
    dir: &StateDir,
    record: &Record,
    mount_fd: BorrowedFd<'_>,
) -> Result<()> {
    let _ = syscalls::fithaw(mount_fd);
    dir.record_end(record, EndReason::OtherTool, true)?;
    events::about_record(
        events::Kind::Thawed,
        record,
        "thawed on request; its waiter could not tell whether another tool had thawed it first, so it is not vouched for",
    );
    Ok(())
}

/// Ends the freeze of `device` that has `generation` as thawed by another
/// tool: its continuity waiter was let through while its record still said
/// frozen. Under the lock, only if the record still says so (the freeze's
/// own thaw marks the record or removes it under that lock first). From
/// here on its deadline thaws nothing.
pub(crate) fn end_thawed_elsewhere(
    dir: &StateDir,
    device: Device,
    generation: u64,
) -> Result<Ending> {
    let (_lock, record) = match this_generation(dir, device, generation)? {
        Ok(found) => found,
        Err(answer) => return Ok(answer),
    };
    if record.phase != Phase::Frozen {
        return Ok(Ending::Alive(Some(process::now_boot_ns())));
    }
    record_thawed_elsewhere(dir, &record, false)?;
    Ok(Ending::Ended)
}

/// How long whoever notices an expired freeze, other than its holder, leaves
/// the thaw to the holder: the holder alone knows whether the freeze is
/// still the one recorded (another tool may have thawed and refrozen it a
/// moment ago), and it thaws within a few milliseconds of the deadline.
const HOLDER_GRACE_NS: u64 = 20_000_000;

/// For an expired freeze whose holder lives, the end of the grace during
/// which the thaw is left to it; `None` when there is no reason to wait.
pub(crate) fn defer_to_holder(record: &Record, over: Over, now_boot_ns: u64) -> Option<u64> {
    let deadline = record.deadline_boot_ns?;
    let holder_lives = record
        .holder_pid
        .is_some_and(|pid| process::start_time(pid).is_some());
    let until = deadline + HOLDER_GRACE_NS;
    (over == Over::Expired && holder_lives && now_boot_ns < until).then_some(until)
}
