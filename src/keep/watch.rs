//! Keeping freezes: what the helper thread and the holder process share.
//!
//! A keeper holds a [`Watch`] per freeze: an fd on the mount (opened before
//! FIFREEZE, so thawing needs no path lookup) and the generation it keeps.
//! It sleeps on a `CLOCK_BOOTTIME` timerfd armed for the earliest deadline
//! and on inotify of the state directory, and on every wake reviews its
//! watches against the records, which are the truth. The directory is
//! listened to only while some watch needs it ([`Watch::needs_records`]): a
//! freeze whose waiter waits is ended by nothing that does not let its
//! waiter through (a thaw by anyone) or end its client's attempt, except a
//! reset of its deadline, whose maker says so to the holder; so the
//! renames of a freeze and thaw cycle do not wake a holder that has
//! nothing to do with them (a wake costs more than the rest of its work on
//! a small virtual machine); such a freeze is reviewed every
//! [`REVIEW_PERIOD_NS`] instead, for what no event tells (a thawer that
//! died before its FITHAW). The events are queued meanwhile, and drained
//! at the next review. One inotify instance
//! per keeper, however many freezes it keeps; where none can be had (the
//! user's `fs.inotify.max_user_instances` used up by many keepers on one
//! machine), a second timerfd wakes it every [`REVIEW_PERIOD_NS`] while it
//! keeps anything, and it reviews every record then: slower to notice a
//! change, never wrong, and no freeze is refused for it.
//!
//!
//! - no record, or another generation: the freeze ended elsewhere; let go;
//! - over ([`Over::of`]: deadline passed, freezer or thawer gone): end it
//!   through [`end_if_over`], which thaws only the generation kept;
//! - otherwise follow the record's deadline.
//!
//! A keeper never blocks on a superblock lock: a client holds it while it
//! waits for the holder's answer, so the keeper tries and retries shortly.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustix::fs::inotify;
use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_settime,
};

use crate::hooks::{HookTarget, Hooks};
use crate::keep::end::{
    Ending, defer_to_holder, end_if_over, end_thawed_elsewhere, end_unreadable,
};
use crate::keep::kernel_truth::{Seen, Waiter};
use crate::os::fork::lock;
use crate::os::mounts::Device;
use crate::os::process::now_boot_ns;
use crate::os::syscalls;
use crate::store::liveness::Over;
use crate::store::record::{Phase, Record};
use crate::store::state_dir::StateDir;

/// How soon to try again when a superblock's lock is busy.
const RETRY_NS: u64 = 5_000_000;
/// How often a keeper checks that a thawer still lives.
const THAWER_CHECK_NS: u64 = 100_000_000;
/// How soon to look again at a record that cannot be read.
const UNREADABLE_RETRY_NS: u64 = 1_000_000_000;
/// How often a keeper reviews a record that no inotify event tells it of:
/// without inotify, or while the freeze's waiter waits.
pub(crate) const REVIEW_PERIOD_NS: u64 = 250_000_000;

/// One freeze a keeper holds.
pub(crate) struct Watch {
    /// The state directory holding the record.
    pub(crate) dir: Arc<StateDir>,
    /// The superblock.
    pub(crate) device: Device,
    /// The generation kept.
    pub(crate) generation: u64,
    /// When to look at it next (`CLOCK_BOOTTIME` ns): its deadline, or a
    /// retry; `None` while nothing is due.
    pub(crate) wake_at: Option<u64>,
    /// An fd on the mount, opened before FIFREEZE.
    pub(crate) mount_fd: OwnedFd,
    /// Holder only: the client's connection, open while its freeze attempt
    /// is under way (it closes it when done, or by dying). Until then a
    /// missing record only means "not written yet".
    pub(crate) attempt: Option<OwnedFd>,
    /// Whether the record of this generation has been seen.
    pub(crate) seen: bool,
    /// Holder only: the freeze's waiter (see [`crate::keep::kernel_truth`]),
    /// parked when the attempt came and started by the client just after
    /// its FIFREEZE, which a thaw by anyone lets through.
    pub(crate) waiter: Option<Waiter>,
    /// Helper thread only: at the deadline, leave the thaw to a live holder
    /// for a moment (see [`defer_to_holder`]).
    pub(crate) defers_to_holder: bool,
    /// Holder only: the thaw hooks to run when this freeze ends.
    pub(crate) hooks: Option<(Hooks, HookTarget)>,
    /// The record of this generation as last read: when the file turns
    /// unreadable (garbage, a symlink, a FIFO), its deadline still holds.
    pub(crate) last_record: Option<Record>,
}

impl Watch {
    /// The helper thread's watch of a freeze its caller just made: the
    /// record is written; at `deadline` it thaws, unless a live holder does.
    pub(crate) fn in_caller(
        dir: Arc<StateDir>,
        device: Device,
        generation: u64,
        deadline: u64,
        mount_fd: OwnedFd,
    ) -> Watch {
        Watch {
            dir,
            device,
            generation,
            wake_at: Some(deadline),
            mount_fd,
            attempt: None,
            seen: true,
            waiter: None,
            defers_to_holder: true,
            hooks: None,
            last_record: None,
        }
    }

    /// The holder's watch of a freeze a client is about to make: reviewed
    /// at once, the client's connection marking the attempt (see
    /// [`Watch::attempt`]).
    pub(crate) fn for_attempt(
        dir: Arc<StateDir>,
        device: Device,
        generation: u64,
        mount_fd: OwnedFd,
        hooks: Option<(Hooks, HookTarget)>,
    ) -> Watch {
        Watch {
            dir,
            device,
            generation,
            wake_at: Some(0),
            mount_fd,
            attempt: None,
            seen: false,
            waiter: None,
            defers_to_holder: false,
            hooks,
            last_record: None,
        }
    }

    /// The holder's watch of a freeze whose keeper is gone, taken over
    /// from its record.
    pub(crate) fn adopted(
        dir: Arc<StateDir>,
        record: Record,
        mount_fd: OwnedFd,
        waiter: Option<Waiter>,
        hooks: Option<(Hooks, HookTarget)>,
    ) -> Watch {
        Watch {
            dir,
            device: record.device,
            generation: record.generation,
            wake_at: Some(0),
            mount_fd,
            attempt: None,
            seen: true,
            waiter,
            defers_to_holder: false,
            hooks,
            last_record: Some(record),
        }
    }

    /// The waiter's fd, for a poll set.
    pub(crate) fn waiter_fd(&self) -> Option<BorrowedFd<'_>> {
        self.waiter.as_ref().map(Waiter::fd)
    }

    /// Whether this freeze needs its keeper to follow the state directory:
    /// true unless a waiter, parked or waiting, will wake the keeper when
    /// the freeze ends, and the record was not last seen `thawing` (whose
    /// end is the thawer's last rename, after its FITHAW).
    pub(crate) fn needs_records(&self) -> bool {
        let followed = self.waiter.as_ref().is_some_and(Waiter::running);
        let thawing = self
            .last_record
            .as_ref()
            .is_some_and(|r| r.phase == Phase::Thawing);
        !followed || thawing
    }
}

/// What review decided for a watch.
enum Verdict {
    Keep(Option<u64>),
    Done,
}

/// The timerfd and inotify instance a keeper sleeps on.
pub(crate) struct Keeper {
    timerfd: OwnedFd,
    /// Readable when a record may have changed: an inotify instance, or a
    /// periodic timerfd when none could be had.
    notify: OwnedFd,
    notify_kind: NotifyKind,
    watched: Vec<PathBuf>,
    /// Whether some watch needs the state directory followed now (see
    /// [`Watch::needs_records`]), as of the last [`Keeper::prepare`].
    records_needed: bool,
}

/// What a keeper's `notify` fd is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NotifyKind {
    Inotify,
    /// A timerfd firing every [`REVIEW_PERIOD_NS`] while `armed`.
    Periodic {
        armed: bool,
    },
}

impl Keeper {
    /// Creates the keeper's fds (close-on-exec, non-blocking).
    pub(crate) fn new() -> std::io::Result<Keeper> {
        let timer = || {
            rustix::time::timerfd_create(
                TimerfdClockId::Boottime,
                TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
            )
        };
        let inotify = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK);
        let (notify, notify_kind) = match inotify {
            Ok(fd) => (fd, NotifyKind::Inotify),
            Err(_) => (timer()?, NotifyKind::Periodic { armed: false }),
        };
        Ok(Keeper {
            timerfd: timer()?,
            notify,
            notify_kind,
            watched: Vec::new(),
            records_needed: false,
        })
    }

    /// The timerfd, and the fd that tells of changed records while some
    /// watch needs them, for the caller's poll set.
    pub(crate) fn fds(&self) -> (BorrowedFd<'_>, Option<BorrowedFd<'_>>) {
        let notify = self.records_needed.then(|| self.notify.as_fd());
        (self.timerfd.as_fd(), notify)
    }

    /// Raw numbers of the keeper's fds (the fork handlers close them in a child).
    pub(crate) fn raw_fds(&self) -> [i32; 2] {
        [self.timerfd.as_raw_fd(), self.notify.as_raw_fd()]
    }

    /// Before sleeping: watch each new state directory, arm the timer for
    /// the earliest wake.
    pub(crate) fn prepare(&mut self, watches: &Mutex<Vec<Watch>>) {
        let watches = lock(watches);
        match self.notify_kind {
            NotifyKind::Periodic { armed } if armed == watches.is_empty() => {
                // Armed while anything is kept, disarmed (0) when nothing is.
                let period = if armed { 0 } else { REVIEW_PERIOD_NS };
                let spec = Itimerspec {
                    it_interval: timespec(period),
                    it_value: timespec(period),
                };
                if timerfd_settime(&self.notify, TimerfdTimerFlags::empty(), &spec).is_ok() {
                    self.notify_kind = NotifyKind::Periodic { armed: !armed };
                }
            }
            NotifyKind::Periodic { .. } => {}
            NotifyKind::Inotify => self.watch_new_dirs(&watches),
        }
        // The periodic review stands in for inotify: it is armed only while
        // anything is kept, and is always listened to then.
        self.records_needed = matches!(self.notify_kind, NotifyKind::Periodic { .. })
            || watches.iter().any(Watch::needs_records);
        let next = watches.iter().filter_map(|w| w.wake_at).min();
        let spec = Itimerspec {
            it_interval: timespec(0),
            it_value: timespec(next.unwrap_or(0)),
        };
        let _ = timerfd_settime(&self.timerfd, TimerfdTimerFlags::ABSTIME, &spec);
    }

    /// Adds an inotify watch on each state directory not watched yet.
    fn watch_new_dirs(&mut self, watches: &[Watch]) {
        for w in watches {
            if !self.watched.iter().any(|p| p == w.dir.path()) {
                let proc_path = format!("/proc/self/fd/{}", w.dir.fd().as_raw_fd());
                let flags = inotify::WatchFlags::MOVED_TO
                    | inotify::WatchFlags::DELETE
                    | inotify::WatchFlags::ONLYDIR;
                if inotify::add_watch(&self.notify, proc_path.as_str(), flags).is_ok() {
                    self.watched.push(w.dir.path().to_path_buf());
                }
            }
        }
    }

    /// After waking: reviews the watches that are due, or all of them when a
    /// record changed or a client's attempt ended (`changed`). Returns the
    /// watches whose freeze is over, whoever ended it.
    pub(crate) fn settle(&mut self, watches: &Mutex<Vec<Watch>>, changed: bool) -> Vec<Watch> {
        syscalls::drain(&self.timerfd);
        syscalls::drain(&self.notify);
        let now = now_boot_ns();
        let taken: Vec<Watch> = {
            let mut watches = lock(watches);
            let (take, keep) = std::mem::take(&mut *watches)
                .into_iter()
                .partition(|w| changed || w.wake_at.is_some_and(|t| t <= now));
            *watches = keep;
            take
        };
        let mut over = Vec::new();
        for mut watch in taken {
            match review(&mut watch) {
                Verdict::Keep(wake_at) => {
                    watch.wake_at = wake_at;
                    lock(watches).push(watch);
                }
                Verdict::Done => over.push(watch),
            }
        }
        over
    }
}

fn timespec(ns: u64) -> Timespec {
    Timespec {
        tv_sec: (ns / 1_000_000_000) as i64,
        tv_nsec: (ns % 1_000_000_000) as i64,
    }
}

fn review(watch: &mut Watch) -> Verdict {
    if watch.attempt.as_ref().is_some_and(connection_closed) {
        watch.attempt = None;
    }
    let record = match watch.dir.read(watch.device) {
        Ok(Some(r)) if r.generation == watch.generation => {
            watch.seen = true;
            watch.last_record = Some(r.clone());
            r
        }
        // The client has not written it yet.
        Ok(_) if !watch.seen && watch.attempt.is_some() => return Verdict::Keep(None),
        // Its state directory was removed: no record can be read or ended
        // there any more. The deadline last read still holds while the
        // kernel holds this very freeze (its waiter waits).
        Ok(None) | Err(_) if watch.dir.is_removed() => return review_orphaned(watch),
        // Removed by hand while the kernel still holds this freeze (its
        // waiter waits) and no end of it was recorded: as good as broken.
        Ok(None) if watch.seen && removed_by_hand(watch) => return review_unreadable(watch),
        Ok(_) => return Verdict::Done,
        Err(_) => return review_unreadable(watch),
    };
    let let_through = watch.waiter.as_ref().is_some_and(Waiter::released);
    if let_through && record.phase == Phase::Frozen {
        // Let through while the record still says frozen: unless the
        // freeze's own thaw holds the lock right now, another tool ended it.
        return verdict(end_thawed_elsewhere(
            &watch.dir,
            watch.device,
            watch.generation,
        ));
    }
    let attempt_open = watch.attempt.is_some();
    let now = now_boot_ns();
    match Over::of(&record, now, attempt_open) {
        None if record.phase == Phase::Thawing => {
            // A live thawer: look again shortly, in case it dies halfway.
            Verdict::Keep(Some(now + THAWER_CHECK_NS))
        }
        None => Verdict::Keep(next_review(watch, record.deadline_boot_ns, now)),
        Some(over) => match defer_to_holder(&record, over, now) {
            Some(until) if watch.defers_to_holder => Verdict::Keep(Some(until)),
            _ => verdict(end_if_over(
                &watch.dir,
                watch.device,
                watch.generation,
                watch.mount_fd.as_fd(),
                attempt_open,
                false,
            )),
        },
    }
}

/// When a live freeze is reviewed next: at its deadline and, while its
/// keeper does not follow the state directory (its waiter waits: see
/// [`Watch::needs_records`]), every [`REVIEW_PERIOD_NS`]. A THAW killed
/// between marking the record `thawing` and its FITHAW lets no waiter
/// through and may leave no deadline: only a look at the record finds its
/// dead thawer.
fn next_review(watch: &Watch, deadline: Option<u64>, now: u64) -> Option<u64> {
    if watch.needs_records() {
        return deadline;
    }
    let look = now + REVIEW_PERIOD_NS;
    Some(deadline.map_or(look, |d| d.min(look)))
}

/// Whether the watch's waiter waits now, in the kernel's word: not merely
/// not let through (a waiter that could not wait, or whose filesystem went,
/// tells nothing).
fn waits(watch: &Watch) -> bool {
    watch.waiter.as_ref().and_then(Waiter::look) == Some(Seen::Frozen)
}

/// A watch whose state directory is gone: thawed at the deadline it read
/// last if its waiter still waits, else let go.
fn review_orphaned(watch: &Watch) -> Verdict {
    let waiting = waits(watch);
    let deadline = watch.last_record.as_ref().and_then(|r| r.deadline_boot_ns);
    match deadline {
        Some(deadline) if waiting && deadline > now_boot_ns() => Verdict::Keep(Some(deadline)),
        Some(_) if waiting => {
            let _ = crate::os::syscalls::fithaw(watch.mount_fd.as_fd());
            Verdict::Done
        }
        _ => Verdict::Done,
    }
}

/// Whether the record of a freeze that the kernel still holds went without
/// an end of its generation being remembered: not a thaw of freezefs's.
fn removed_by_hand(watch: &Watch) -> bool {
    let still_frozen = waits(watch);
    let ended_here = watch
        .dir
        .read_ended(watch.device)
        .ok()
        .flatten()
        .is_some_and(|ended| ended.generation == watch.generation);
    still_frozen && !ended_here
}

/// The record cannot be read: the deadline last read holds, and is kept
/// from memory; the file is looked at again meanwhile.
fn review_unreadable(watch: &Watch) -> Verdict {
    let now = now_boot_ns();
    let retry = now + UNREADABLE_RETRY_NS;
    let Some(known) = &watch.last_record else {
        return Verdict::Keep(Some(retry));
    };
    match known.deadline_boot_ns {
        Some(deadline) if deadline <= now => {
            verdict(end_unreadable(&watch.dir, known, watch.mount_fd.as_fd()))
        }
        Some(deadline) => Verdict::Keep(Some(deadline.min(retry))),
        None => Verdict::Keep(Some(retry)),
    }
}

fn verdict(ending: crate::error::Result<Ending>) -> Verdict {
    match ending {
        Ok(Ending::Ended) => Verdict::Done,
        Ok(Ending::Alive(wake_at)) => Verdict::Keep(wake_at),
        Ok(Ending::Busy) => Verdict::Keep(Some(now_boot_ns() + RETRY_NS)),
        Err(_) => Verdict::Keep(Some(now_boot_ns() + UNREADABLE_RETRY_NS)),
    }
}

/// True when the peer closed the connection (EOF or hang-up), not when it
/// only sent something.
pub(crate) fn connection_closed(conn: &OwnedFd) -> bool {
    let mut fds = [rustix::event::PollFd::new(
        conn,
        rustix::event::PollFlags::IN,
    )];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if !matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0) {
        return false;
    }
    // Peek: a request waiting there (`watch`) is the holder's to read.
    let mut byte = [0u8; 1];
    let flags = rustix::net::RecvFlags::DONTWAIT | rustix::net::RecvFlags::PEEK;
    match rustix::net::recv(conn, &mut byte, flags) {
        Ok((0, _)) => true,
        Ok(_) | Err(rustix::io::Errno::AGAIN) => false,
        Err(_) => true,
    }
}
