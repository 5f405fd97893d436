//! THAW: ends the freezefs freeze on record, says so when that freeze ended
//! otherwise (its timeout, another tool's thaw), and rescues a freeze made
//! by another tool when freezefs has none on record.
//!
//! AdvFS's rule: "If error on thaw, cannot rely on the initial freeze." A
//! THAW whose freeze already ended answers `EALREADY` once and touches
//! nothing, even if someone else has frozen the filesystem again since.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use crate::error::{Error, Result};
use crate::events::{self, Event, Kind};
use crate::keep::end::{end_over, record_thawed_elsewhere, thaw_unvouched};
use crate::keep::helper_thread;
use crate::keep::kernel_truth::{self, WatcherSays};
use crate::ops::resolve::Resolved;
use crate::ops::settings::Settings;
use crate::os::mounts::Device;
use crate::os::process::{is_alive, now_boot_ns};
use crate::os::syscalls;
use crate::store::hold_notes::HoldBreakNote;
use crate::store::liveness::Over;
use crate::store::record::{Phase, Record};
use crate::store::state_dir::StateDir;

/// How a THAW of a freeze on record came out.
pub(crate) enum Outcome {
    /// This THAW ended it.
    Thawed,
    /// It had ended before (timeout, another tool): the caller cannot rely
    /// on it, and nothing was touched.
    EndedBefore,
    /// This THAW ended it, but one of its hold hooks had ended before: the
    /// freeze did not hold what it promised.
    ThawedHoldBroken(HoldBreakNote),
}

/// The hold hook of `record` that ended while the freeze was in force: the
/// one its holder saw end, else one whose process is gone (its holder
/// died, or has not written it yet).
fn broken_hold(record: &Record) -> Option<HoldBreakNote> {
    record.hold_broken.clone().or_else(|| {
        record
            .holds
            .iter()
            .find(|note| !is_alive(note.pid, note.pid_start))
            .map(|note| HoldBreakNote {
                name: note.name.clone(),
                at_unix_ns: 0,
                held_ms: 0,
                why: "its process was gone".into(),
            })
    })
}

/// [`Error::HoldBroken`] for `path`.
pub(crate) fn hold_broken_error(path: &Path, broken: HoldBreakNote) -> Error {
    Error::HoldBroken {
        path: path.to_path_buf(),
        ended_at: broken.ended_at(),
        held_for: broken.held_for(),
        hook: broken.name,
        why: broken.why,
    }
}

/// Thaws one filesystem, under its lock.
pub(crate) fn thaw(settings: &Settings, named: &Resolved) -> Result<()> {
    let device = named.device();
    let mount_fd = named.target.open_for_ioctl()?;
    let not_frozen = || Error::NotFrozen(named.given.clone());
    let Some(dir) = StateDir::open(&settings.state_dir, false)? else {
        return rescue(named, mount_fd.as_fd());
    };
    let _lock = dir.lock(device)?;
    match dir.read(device) {
        Ok(Some(record)) => match end_recorded(&dir, &record, mount_fd.as_fd(), &named.given)? {
            Some(Outcome::Thawed) => return Ok(()),
            Some(Outcome::ThawedHoldBroken(broken)) => {
                return Err(hold_broken_error(&named.given, broken));
            }
            Some(Outcome::EndedBefore) => return Err(not_frozen()),
            // It ended just now as its keepers would have: tell below.
            None => {}
        },
        Ok(None) => {}
        Err(_) => {
            // Unreadable (tampered with): the kernel decides, and after the
            // rescue no freeze remains for it to describe.
            let rescued = rescue(named, mount_fd.as_fd());
            dir.remove(device)?;
            helper_thread::forget(device);
            return rescued;
        }
    }
    if let Some(ended) = dir.read_ended(device)? {
        if ended.ended.is_some_and(|e| !e.reported) {
            // The first THAW after a freeze that ended otherwise hears of
            // it: of a broken hold first, the worse news.
            dir.mark_end_reported(&ended)?;
            return Err(match ended.hold_broken {
                Some(broken) => hold_broken_error(&named.given, broken),
                None => not_frozen(),
            });
        }
    }
    rescue(named, mount_fd.as_fd())
}

/// Ends the freeze `record` describes, under its lock (held by the caller):
/// - ended by another tool (its holder's waiter was let through, or FITHAW
///   finds it thawed): remembered as such, [`Outcome::EndedBefore`];
/// - over (deadline passed, freezer or thawer died): ended as its keepers
///   would, `None`: the remembered end says how;
/// - otherwise marked `thawing` (so that a THAW killed halfway never leaves
///   a record that says frozen), FITHAW, remembered as thawed.
pub(crate) fn end_recorded(
    dir: &StateDir,
    record: &Record,
    mount_fd: BorrowedFd<'_>,
    given: &Path,
) -> Result<Option<Outcome>> {
    let over = Over::of(record, now_boot_ns(), false);
    let watched = record.phase == Phase::Frozen && matches!(over, None | Some(Over::Expired));
    // Read from the kernel at once, not waited for from the holder: a thaw
    // and refreeze by another tool a moment ago must not be thawed again.
    let said = if watched {
        kernel_truth::watcher_says(record)
    } else {
        WatcherSays::Waits
    };
    if said != WatcherSays::Waits {
        if said == WatcherSays::Silent {
            thaw_unvouched(dir, record, mount_fd)?;
        } else {
            record_thawed_elsewhere(dir, record, true)?;
        }
        helper_thread::forget(record.device);
        return Ok(Some(Outcome::EndedBefore));
    }
    if let Some(over) = over {
        end_over(dir, record, over, mount_fd)?;
        helper_thread::forget(record.device);
        return Ok(None);
    }
    // Looked at before FITHAW: after it, the holder releases the holds.
    let broken = broken_hold(record);
    // This process's helper thread lets go first: the records of this
    // thaw are no news to it. Given back if the thaw fails.
    let kept_here = helper_thread::take(record.device);
    if let Err(e) = dir.mark_thawing(record, broken.as_ref()) {
        helper_thread::put_back(kept_here);
        return Err(e);
    }
    match syscalls::fithaw(mount_fd) {
        Ok(()) => {
            drop(kept_here);
            dir.finish_thaw(record.device)?;
            events::about_record(Kind::Thawed, record, "thawed on request");
            Ok(Some(match broken {
                Some(broken) => Outcome::ThawedHoldBroken(broken),
                None => Outcome::Thawed,
            }))
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && record.phase == Phase::Frozen => {
            // Thawed already, and its holder could not tell: another tool.
            drop(kept_here);
            record_thawed_elsewhere(dir, record, true)?;
            Ok(Some(Outcome::EndedBefore))
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            // Still freezing or being thawed: no freeze to end.
            drop(kept_here);
            dir.remove(record.device)?;
            Ok(Some(Outcome::EndedBefore))
        }
        Err(e) => {
            helper_thread::put_back(kept_here);
            Err(Error::os(format!("{}: FITHAW", given.display()), e))
        }
    }
}

/// No freezefs freeze to end: FITHAW, so that a freeze made by another tool
/// is thawed too.
fn rescue(named: &Resolved, mount_fd: BorrowedFd<'_>) -> Result<()> {
    match syscalls::fithaw(mount_fd) {
        Ok(()) => {
            events::emit(&Event {
                kind: Kind::Thawed,
                mount_point: &named.mount.mount_point,
                device: Some(named.device()),
                pid: std::process::id(),
                uid: rustix::process::getuid().as_raw(),
                timeout: None,
                reason: "thawed on request (frozen by another tool)",
                tag: None,
            });
            Ok(())
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            Err(Error::NotFrozen(named.given.clone()))
        }
        Err(e) => Err(Error::os(format!("{}: FITHAW", named.given.display()), e)),
    }
}

/// Thaws every filesystem of `paths` that can be (two names of one count
/// once), reporting each failure; returns the first.
pub(crate) fn thaw_all<P: AsRef<Path>>(settings: &Settings, paths: &[P]) -> Result<()> {
    let mut first_error = None;
    let mut done: Vec<Device> = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let result = Resolved::path_to_change(path).and_then(|named| {
            if done.contains(&named.device()) {
                return Ok(());
            }
            done.push(named.device());
            thaw(settings, &named)
        });
        if let Err(e) = result {
            events::failed(path, None, &e);
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
