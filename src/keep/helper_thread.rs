//! The helper thaw thread: keeps the deadlines of this process's timed freezes.
//!
//! Started before the first timed FIFREEZE (never at load time, never inside
//! the freeze window), with every signal blocked, it runs a [`Keeper`] on
//! this process's watches and wakes early when a new one is armed. It is what
//! thaws a caller that deadlocked by writing to the filesystem it froze; the
//! holder process keeps the same deadline for when the caller dies.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use rustix::event::{EventfdFlags, PollFd, PollFlags};

use crate::keep::watch::{Keeper, Watch};
use crate::os::fork::ForkSafe;
use crate::os::mounts::Device;
use crate::os::syscalls;

/// This process's watches. A forked child has no thread: it keeps none.
static WATCHES: ForkSafe<Vec<Watch>> = ForkSafe::new(Vec::new(), Vec::clear);

/// The thread's existence: its wake-up eventfd and the raw numbers of its fds.
struct ThreadState {
    wake: Option<Arc<OwnedFd>>,
    thread_fds: Vec<RawFd>,
}

/// The thread exists only in the parent: a forked child closes its copies
/// of the thread's fds, so that its next timed freeze starts afresh.
static THREAD: ForkSafe<ThreadState> = ForkSafe::new(
    ThreadState {
        wake: None,
        thread_fds: Vec::new(),
    },
    |state| {
        if let Some(wake) = state.wake.take() {
            // The thread's clone of this Arc exists only in the parent; the
            // child closes its copy of the number below.
            std::mem::forget(wake);
        }
        for fd in state.thread_fds.drain(..) {
            syscalls::close_raw(fd);
        }
    },
);

/// Starts the thread if it is not running yet and returns its wake-up fd:
/// called before FIFREEZE, so that the freeze window never has to create it.
pub(crate) fn start() -> io::Result<Arc<OwnedFd>> {
    let mut thread = THREAD.lock();
    if let Some(wake) = &thread.wake {
        return Ok(Arc::clone(wake));
    }
    let wake = Arc::new(rustix::event::eventfd(
        0,
        EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK,
    )?);
    let keeper = Keeper::new()?;
    let mut fds = vec![wake.as_raw_fd()];
    fds.extend(keeper.raw_fds());
    let thread_wake = Arc::clone(&wake);
    {
        let _blocked = syscalls::AllSignalsBlocked::new();
        std::thread::Builder::new()
            .name("freezefs-timer".into())
            .spawn(move || run(thread_wake, keeper))?;
    }
    thread.wake = Some(Arc::clone(&wake));
    thread.thread_fds = fds;
    Ok(wake)
}

/// Keeps a deadline: the thread thaws the freeze when it passes, if the
/// record still has this generation.
pub(crate) fn arm(watch: Watch) -> io::Result<()> {
    let wake = start()?;
    WATCHES.lock().push(watch);
    let _ = rustix::io::write(&*wake, &1u64.to_ne_bytes());
    Ok(())
}

/// Drops this process's watches of a superblock whose freeze ended here.
pub(crate) fn forget(device: Device) {
    drop(take(device));
}

/// Takes this process's watches of a superblock out of the thread's hands
/// while this process ends its freeze, so that the thread is not woken by
/// the records of that end; [`put_back`] if it fails.
pub(crate) fn take(device: Device) -> Vec<Watch> {
    let mut watches = WATCHES.lock();
    let (taken, kept) = std::mem::take(&mut *watches)
        .into_iter()
        .partition(|w| w.device == device);
    *watches = kept;
    taken
}

/// Gives back watches [`take`]n, and has the thread review them.
pub(crate) fn put_back(taken: Vec<Watch>) {
    if taken.is_empty() {
        return;
    }
    WATCHES.lock().extend(taken);
    if let Some(wake) = &THREAD.lock().wake {
        let _ = rustix::io::write(&**wake, &1u64.to_ne_bytes());
    }
}

fn run(wake: Arc<OwnedFd>, mut keeper: Keeper) {
    let watches = WATCHES.mutex();
    loop {
        keeper.prepare(watches);
        let (timer, notify) = keeper.fds();
        let mut fds = vec![
            PollFd::new(&*wake, PollFlags::IN),
            PollFd::from_borrowed_fd(timer, PollFlags::IN),
        ];
        fds.extend(notify.map(|fd| PollFd::from_borrowed_fd(fd, PollFlags::IN)));
        if rustix::event::poll(&mut fds, None).is_err() {
            continue;
        }
        let changed = fds.get(2).is_some_and(|f| !f.revents().is_empty());
        syscalls::drain(&*wake);
        // The holder runs thaw hooks; this thread only lets go.
        drop(keeper.settle(watches, changed));
    }
}
