//! What the kernel shows of a waiter from outside its process: whether
//! the thread still exists, and whether its wait channel says it waits for
//! a thaw. This is how a record's watcher is read by whoever holds the
//! record, in any process.

use std::time::{Duration, Instant};

use crate::os::small_file;
use crate::os::syscalls;
use crate::store::record::Record;

/// How long a wait for a waiter to settle yields before it starts sleeping:
/// a waiter settles within tens of microseconds, less than one sleep lasts
/// (timer slack).
pub(super) const SPIN: Duration = Duration::from_micros(300);

/// What the watcher recorded with a freeze tells once it settles (see
/// [`watcher_settles`]): the exact look, for whoever is about to thaw and
/// must not thaw another tool's refreeze.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WatcherSays {
    /// It waits for this freeze's thaw, or none was recorded (a read-only
    /// mount): the freeze is whole as far as the kernel tells.
    Waits,
    /// A thaw let it through: the freeze ended, whoever thawed.
    LetThrough,
    /// It neither waited nor went within [`SETTLE_LIMIT`] (its holder
    /// stopped by a signal between telling it to go and its block): the
    /// kernel's word cannot be had. The freeze is thawed all the same,
    /// never left frozen, and never vouched for.
    Silent,
}

/// The exact look at the watcher recorded with a freeze.
pub(crate) fn watcher_says(record: &Record) -> WatcherSays {
    let (Some(holder), Some(watcher)) = (record.holder_pid, record.watcher) else {
        return WatcherSays::Waits;
    };
    match watcher_settles(holder, watcher, SETTLE_LIMIT) {
        Some(true) => WatcherSays::Waits,
        Some(false) => WatcherSays::LetThrough,
        None => WatcherSays::Silent,
    }
}

/// Whether the holder's watcher thread `(tid, _)`, recorded with a freeze,
/// still exists: it returns (and is gone soon after) when a thaw lets it
/// through. Valid even once the holder itself was killed (a waiting thread
/// outlives the rest of its process).
fn watcher_exists(holder_pid: u32, (tid, _): (u32, u64)) -> bool {
    syscalls::thread_exists(holder_pid, tid)
}

/// Whether the holder's watcher thread still waits for its freeze's thaw,
/// in the kernel's word: `false` once a thaw let it through, even before
/// it ran again (a woken thread no longer waits). One look, for those who
/// look again until it settles.
pub(crate) fn watcher_waits(holder_pid: u32, watcher: (u32, u64)) -> bool {
    watcher_settles(holder_pid, watcher, Duration::ZERO) == Some(true)
}

/// How long [`watcher_says`] gives a watcher to block or go.
const SETTLE_LIMIT: Duration = Duration::from_secs(1);

/// [`watcher_waits`], asked until the watcher waits (`Some(true)`) or is
/// gone (`Some(false)`); `None` when it did neither within `limit`. A
/// recorded watcher exists without waiting twice in its life, and neither
/// tells of a thaw: after its FREEZE told it to go and before it blocks (a
/// FREEZE killed before it saw the watcher wait, a holder the scheduler has
/// not run yet), and after a thaw let it through, before it exits. It never
/// waits again once let through (`Waiter::parked`), so the state it
/// settles in is the answer.
pub(super) fn watcher_settles(
    holder_pid: u32,
    watcher: (u32, u64),
    limit: Duration,
) -> Option<bool> {
    let task = format!("/proc/{holder_pid}/task/{}", watcher.0);
    let start = Instant::now();
    loop {
        if !watcher_exists(holder_pid, watcher) {
            return Some(false);
        }
        if waits_for_thaw(&task) {
            return Some(true);
        }
        if start.elapsed() >= limit {
            return None;
        }
        if start.elapsed() < SPIN {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

/// True when the kernel says the thread at `task` (a `/proc/.../task/TID`
/// directory) sleeps waiting for a frozen filesystem to be thawed: its wait
/// channel, or, where that is hidden, its state (asleep, uninterruptibly)
/// and its stack. A woken thread is running, never waiting, so a thaw is
/// seen at once.
pub(crate) fn waits_for_thaw(task: &str) -> bool {
    let read = |what: &str| {
        small_file::read_proc(&format!("{task}/{what}"))
            .map(|text| String::from_utf8_lossy(&text).into_owned())
    };
    match read("wchan") {
        Ok(wchan) if channel_waits_for_thaw(wchan.as_bytes()) => true,
        Ok(wchan) if !matches!(wchan.trim(), "" | "0") => false,
        _ => {
            let asleep = read("stat").is_ok_and(|stat| {
                stat.rsplit_once(')')
                    .is_some_and(|(_, rest)| rest.trim_start().starts_with('D'))
            });
            asleep
                && read("stack").is_ok_and(|stack| {
                    stack.contains("percpu_rwsem_wait") || stack.contains("mnt_want_write")
                })
        }
    }
}

/// Whether a thread's wait channel, as `/proc/.../wchan` prints it, is the
/// wait of a writer for a frozen filesystem's thaw.
pub(super) fn channel_waits_for_thaw(wchan: &[u8]) -> bool {
    const THAW_WAIT: &[u8] = b"percpu_rwsem";
    wchan.windows(THAW_WAIT.len()).any(|w| w == THAW_WAIT)
}
