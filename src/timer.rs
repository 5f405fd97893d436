//! The helper thaw thread: keeps the deadlines of this process's timed freezes.
//!
//! Started by the first timed freeze (never at load time), with every signal
//! blocked. It sleeps on a `CLOCK_BOOTTIME` timerfd armed for the nearest
//! deadline, an eventfd that new watches poke, and an inotify watch on the
//! state directory, so that a freeze ended by any other process releases its
//! mount fd at once. It thaws only under the superblock's lock and only when
//! the record still carries the generation it was armed for: a late timer
//! never thaws a newer freeze.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rustix::event::{EventfdFlags, PollFd, PollFlags};
use rustix::fs::inotify;
use rustix::time::{
    Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_settime,
};

use crate::forksafe::{self, lock};
use crate::mounts::Device;
use crate::process::now_boot_ns;
use crate::record::Phase;
use crate::state::StateDir;
use crate::sys;

/// One deadline this process keeps.
pub struct Watch {
    /// The state directory holding the record.
    pub dir: Arc<StateDir>,
    /// The superblock.
    pub device: Device,
    /// The generation the deadline belongs to.
    pub generation: u64,
    /// `CLOCK_BOOTTIME` deadline, nanoseconds.
    pub deadline_boot_ns: u64,
    /// An fd on the mount, opened before FIFREEZE: thawing needs no path lookup.
    pub mount_fd: OwnedFd,
}

/// The watches and the thread's fds, behind [`state`]'s mutex.
pub struct TimerState {
    watches: Vec<Watch>,
    wake: Option<Arc<OwnedFd>>,
    thread_fds: Vec<RawFd>,
}

static STATE: Mutex<TimerState> = Mutex::new(TimerState {
    watches: Vec::new(),
    wake: None,
    thread_fds: Vec::new(),
});

/// The timer's mutex (the fork handlers take it).
pub fn state() -> &'static Mutex<TimerState> {
    &STATE
}

impl TimerState {
    /// In a forked child: the thread does not exist there and the deadlines
    /// belong to the parent. Drop the watches (closing the child's copies of
    /// their fds) and the thread's fds, so the next timed freeze starts afresh.
    pub fn reset_in_child(&mut self) {
        self.watches.clear();
        if let Some(wake) = self.wake.take() {
            // The thread's clone of this Arc exists only in the parent; the
            // child closes its copy of the number itself below.
            std::mem::forget(wake);
        }
        for fd in self.thread_fds.drain(..) {
            sys::close_raw(fd);
        }
    }
}

/// Keeps a deadline: the thread thaws the freeze when it passes, if the
/// record still has this generation.
pub fn arm(watch: Watch) -> io::Result<()> {
    forksafe::ensure_registered();
    let mut state = lock(&STATE);
    if state.wake.is_none() {
        start_thread(&mut state)?;
    }
    state.watches.push(watch);
    if let Some(wake) = &state.wake {
        poke(wake);
    }
    Ok(())
}

/// Drops this process's watches of a superblock whose freeze ended here.
pub fn forget(device: Device) {
    lock(&STATE).watches.retain(|w| w.device != device);
}

/// Number of deadlines this process keeps (for tests and status).
pub fn watch_count() -> usize {
    lock(&STATE).watches.len()
}

fn poke(wake: &OwnedFd) {
    let _ = rustix::io::write(wake, &1u64.to_ne_bytes());
}

fn start_thread(state: &mut TimerState) -> io::Result<()> {
    let nonblock_cloexec = EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK;
    let wake = Arc::new(rustix::event::eventfd(0, nonblock_cloexec)?);
    let timerfd = rustix::time::timerfd_create(
        TimerfdClockId::Boottime,
        TimerfdFlags::CLOEXEC | TimerfdFlags::NONBLOCK,
    )?;
    let notify = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK)?;
    let fds = [wake.as_raw_fd(), timerfd.as_raw_fd(), notify.as_raw_fd()];
    let thread_wake = Arc::clone(&wake);
    {
        let _blocked = sys::AllSignalsBlocked::new();
        std::thread::Builder::new()
            .name("freezefs-timer".into())
            .spawn(move || run(thread_wake, timerfd, notify))?;
    }
    state.wake = Some(wake);
    state.thread_fds = fds.to_vec();
    Ok(())
}

fn run(wake: Arc<OwnedFd>, timerfd: OwnedFd, notify: OwnedFd) {
    let mut watched_dirs: Vec<PathBuf> = Vec::new();
    loop {
        let next = plan(&notify, &mut watched_dirs);
        let it_value = next.map_or(
            Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            |ns| Timespec {
                tv_sec: (ns / 1_000_000_000) as i64,
                tv_nsec: (ns % 1_000_000_000) as i64,
            },
        );
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value,
        };
        let _ = timerfd_settime(&timerfd, TimerfdTimerFlags::ABSTIME, &spec);

        let mut fds = [
            PollFd::new(&*wake, PollFlags::IN),
            PollFd::new(&timerfd, PollFlags::IN),
            PollFd::new(&notify, PollFlags::IN),
        ];
        if rustix::event::poll(&mut fds, None).is_err() {
            continue;
        }
        let changed = !fds[2].revents().is_empty();
        drain(&*wake);
        drain(&timerfd);
        drain(&notify);

        expire_due();
        if changed {
            follow_records();
        }
    }
}

/// The nearest deadline; adds an inotify watch on each new state directory.
fn plan(notify: &OwnedFd, watched_dirs: &mut Vec<PathBuf>) -> Option<u64> {
    let state = lock(&STATE);
    for w in &state.watches {
        if !watched_dirs.iter().any(|p| p == w.dir.path()) {
            let proc_path = format!("/proc/self/fd/{}", w.dir.fd().as_raw_fd());
            let flags = inotify::WatchFlags::MOVED_TO
                | inotify::WatchFlags::DELETE
                | inotify::WatchFlags::ONLYDIR;
            if inotify::add_watch(notify, proc_path.as_str(), flags).is_ok() {
                watched_dirs.push(w.dir.path().to_path_buf());
            }
        }
    }
    state.watches.iter().map(|w| w.deadline_boot_ns).min()
}

fn drain<Fd: AsFd>(fd: Fd) {
    let mut buf = [0u8; 4096];
    while matches!(rustix::io::read(&fd, &mut buf), Ok(n) if n > 0) {}
}

/// Thaws every freeze whose deadline has passed, if its record still says so.
fn expire_due() {
    let now = now_boot_ns();
    let due: Vec<Watch> = {
        let mut state = lock(&STATE);
        let (due, keep) = std::mem::take(&mut state.watches)
            .into_iter()
            .partition(|w| w.deadline_boot_ns <= now);
        state.watches = keep;
        due
    };
    for watch in due {
        if let Some(later) = expire(&watch) {
            lock(&STATE).watches.push(Watch {
                deadline_boot_ns: later,
                ..watch
            });
        }
    }
}

/// Thaws one freeze under its lock if its record carries the watch's
/// generation and a deadline that has passed. Returns a later deadline to
/// keep watching when the record's deadline moved.
fn expire(watch: &Watch) -> Option<u64> {
    let _lock = watch.dir.lock(watch.device).ok()?;
    let record = watch.dir.read(watch.device).ok()??;
    if record.generation != watch.generation {
        return None;
    }
    let deadline = record.deadline_boot_ns?;
    if deadline > now_boot_ns() {
        return Some(deadline);
    }
    // EINVAL here means another tool thawed it already; either way it is over.
    let _ = sys::fithaw(&watch.mount_fd);
    let _ = watch.dir.remove(watch.device);
    None
}

/// After a change in a state directory: drop watches whose freeze ended
/// elsewhere (releasing the mount), follow moved deadlines.
fn follow_records() {
    let snapshot: Vec<(Arc<StateDir>, Device, u64)> = lock(&STATE)
        .watches
        .iter()
        .map(|w| (Arc::clone(&w.dir), w.device, w.generation))
        .collect();
    for (dir, device, generation) in snapshot {
        let current = match dir.read(device) {
            Ok(Some(r)) if r.generation == generation && r.phase == Phase::Frozen => {
                Some(r.deadline_boot_ns)
            }
            Ok(Some(r)) if r.generation == generation => continue,
            Err(_) => continue,
            _ => None,
        };
        let mut state = lock(&STATE);
        match current {
            Some(Some(deadline)) => state
                .watches
                .iter_mut()
                .filter(|w| w.device == device && w.generation == generation)
                .for_each(|w| w.deadline_boot_ns = deadline),
            Some(None) | None => state
                .watches
                .retain(|w| !(w.device == device && w.generation == generation)),
        }
    }
}
