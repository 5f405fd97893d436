//! The wait channels of the watchers this process has asked about, held
//! open: QUERY's look at a freeze on record is one `pread`, and it is
//! exact. Another tool's FITHAW sets the watcher running before the ioctl
//! returns, and a running thread's channel no longer reads as a wait; the
//! thread itself is still there until it has been scheduled and has
//! exited, milliseconds on a busy machine, so its mere existence is no
//! answer.
//!
//! Why a held channel cannot lie: procfs ties the open file to the thread,
//! not to its id, so once that thread has ended a read fails (`ESRCH`)
//! even if its id was handed out again; and the thread is checked to be
//! the recorded watcher (its start time) through the same open task
//! directory before the channel is kept. A channel that reads anything but
//! that wait is forgotten, and the caller asks the slow, settled way. A
//! forked child forgets them all.
//!
//! An application that closes file descriptors it did not open may leave a
//! kept number naming another file of its own: only that file reading as
//! the wait channel of a filesystem wait could then be taken for one, and
//! a forgotten channel is closed only if it is still the one opened.

use std::os::fd::OwnedFd;

use rustix::fs::{Mode, OFlags, Statx};

use super::wait_channel::channel_waits_for_thaw;
use crate::os::fork::ForkSafe;
use crate::os::mounts::Device;
use crate::os::{process, small_file, untimed_stat};

/// How many watchers' channels are held at most: one per superblock, for
/// the last freeze of it asked about (a channel outlives its freeze until
/// its superblock is asked about again, or the list fills).
const HELD_AT_MOST: usize = 16;

/// One held channel: the superblock, its freeze's watcher as recorded, and
/// the file that reads the watcher's wait channel.
struct Held {
    device: Device,
    holder_pid: u32,
    watcher: (u32, u64),
    wchan: OwnedFd,
    /// The open file as opened, to close only what is still ours.
    opened: Statx,
}

static HELD: ForkSafe<Vec<Held>> = ForkSafe::new(Vec::new(), |held| {
    // The child's copies are closed; the parent's stay.
    held.clear();
});

/// Whether the watcher recorded with a freeze of `device` (the record's
/// `holder_pid` and `watcher`) waits for its thaw at this moment, in the
/// kernel's word; true for a freeze recorded without one (a read-only
/// mount), whose record answers alone. False tells nothing more: the
/// watcher may be gone, let through, not yet blocked, or unreadable;
/// [`super::watcher_says`] settles which.
pub(crate) fn watcher_waits_now(
    device: Device,
    holder_pid: Option<u32>,
    watcher: Option<(u32, u64)>,
) -> bool {
    let (Some(holder_pid), Some(watcher)) = (holder_pid, watcher) else {
        return true;
    };
    let mut held = HELD.lock();
    let known = held.iter().position(|h| h.device == device);
    let at = match known {
        Some(at) if held[at].holder_pid == holder_pid && held[at].watcher == watcher => at,
        _ => {
            if let Some(earlier) = known {
                forget(held.swap_remove(earlier));
            }
            let Some(opened) = open_channel(device, holder_pid, watcher) else {
                return false;
            };
            if held.len() >= HELD_AT_MOST {
                held.drain(..).for_each(forget);
            }
            held.push(opened);
            held.len() - 1
        }
    };
    let mut text = [0u8; 64];
    match rustix::io::pread(&held[at].wchan, &mut text, 0) {
        Ok(n) if channel_waits_for_thaw(&text[..n]) => true,
        _ => {
            forget(held.swap_remove(at));
            false
        }
    }
}

/// Opens, for the freeze of `device`, the wait channel of thread `tid` of
/// `holder_pid` if it is the thread that started at `start` (see
/// [`process::same_start`]).
fn open_channel(device: Device, holder_pid: u32, (tid, start): (u32, u64)) -> Option<Held> {
    let task = rustix::fs::open(
        format!("/proc/{holder_pid}/task/{tid}"),
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let in_task = |name: &str| {
        rustix::fs::openat(&task, name, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).ok()
    };
    let stat = small_file::read_fd(in_task("stat")?, 511, 4096).ok()?;
    if !process::start_time_in_stat(&stat).is_some_and(|now| process::same_start(now, start)) {
        return None;
    }
    let wchan = in_task("wchan")?;
    let opened = untimed_stat::of_fd(&wchan).ok()?;
    Some(Held {
        device,
        holder_pid,
        watcher: (tid, start),
        wchan,
        opened,
    })
}

/// Closes a held channel if its number still names the file opened;
/// otherwise the number is the application's now, and stays open.
fn forget(held: Held) {
    let ours = untimed_stat::of_fd(&held.wchan)
        .is_ok_and(|now| untimed_stat::same_inode(&now, &held.opened));
    if !ours {
        std::mem::forget(held.wchan);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOME_DEVICE: Device = Device {
        major: 7,
        minor: 99,
    };

    /// A thread of this test, asleep (not waiting for a thaw), and its
    /// start time.
    fn sleeping_thread() -> (u32, u64) {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            tx.send(rustix::thread::gettid().as_raw_nonzero().get() as u32)
                .unwrap();
            std::thread::sleep(std::time::Duration::from_secs(5));
        });
        let tid = rx.recv().unwrap();
        let stat = small_file::read_proc(&format!("/proc/self/task/{tid}/stat")).unwrap();
        (tid, process::start_time_in_stat(&stat).unwrap())
    }

    #[test]
    fn a_freeze_recorded_without_a_watcher_is_answered_by_its_record() {
        assert!(watcher_waits_now(SOME_DEVICE, None, None));
    }

    #[test]
    fn a_watcher_asleep_for_anything_but_a_thaw_does_not_wait() {
        let watcher = sleeping_thread();
        assert!(!watcher_waits_now(
            SOME_DEVICE,
            Some(std::process::id()),
            Some(watcher)
        ));
    }

    #[test]
    fn a_thread_that_is_not_the_recorded_one_is_not_read() {
        let (tid, start) = sleeping_thread();
        let recorded = (tid, start + 1000);
        assert!(open_channel(SOME_DEVICE, std::process::id(), recorded).is_none());
        assert!(open_channel(SOME_DEVICE, std::process::id(), (tid, start)).is_some());
    }
}
