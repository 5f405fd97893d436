//! The helper thaw thread: keeps the deadlines of this process's timed freezes.
//!
//! Started by the first timed freeze (never at load time), with every signal
//! blocked, it runs a [`Keeper`] on this process's watches and wakes early
//! when a new one is armed. It is what thaws a caller that deadlocked by
//! writing to the filesystem it froze; the holder process keeps the same
//! deadline for when the caller dies.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

use rustix::event::{EventfdFlags, PollFd, PollFlags};

use crate::forksafe::{self, lock};
use crate::keeper::{self, Keeper, Watch};
use crate::mounts::Device;
use crate::sys;

static WATCHES: Mutex<Vec<Watch>> = Mutex::new(Vec::new());

/// The thread's existence: its wake-up eventfd and the raw numbers of its fds.
pub struct ThreadState {
    wake: Option<Arc<OwnedFd>>,
    thread_fds: Vec<RawFd>,
}

static THREAD: Mutex<ThreadState> = Mutex::new(ThreadState {
    wake: None,
    thread_fds: Vec::new(),
});

/// The mutexes the fork handlers take, in the order they take them.
pub fn mutexes() -> (&'static Mutex<ThreadState>, &'static Mutex<Vec<Watch>>) {
    (&THREAD, &WATCHES)
}

impl ThreadState {
    /// In a forked child: the thread exists only in the parent, and so do
    /// the deadlines. Close the child's copies of the thread's fds so the
    /// next timed freeze starts afresh.
    pub fn reset_in_child(&mut self, watches: &mut Vec<Watch>) {
        watches.clear();
        if let Some(wake) = self.wake.take() {
            // The thread's clone of this Arc exists only in the parent; the
            // child closes its copy of the number below.
            std::mem::forget(wake);
        }
        for fd in self.thread_fds.drain(..) {
            sys::close_raw(fd);
        }
    }
}

/// Starts the thread if it is not running yet: called before FIFREEZE, so
/// that the freeze window never has to create it.
pub fn start() -> io::Result<()> {
    forksafe::ensure_registered();
    let mut thread = lock(&THREAD);
    if thread.wake.is_none() {
        start_thread(&mut thread)?;
    }
    Ok(())
}

/// Keeps a deadline: the thread thaws the freeze when it passes, if the
/// record still has this generation.
pub fn arm(watch: Watch) -> io::Result<()> {
    forksafe::ensure_registered();
    let mut thread = lock(&THREAD);
    if thread.wake.is_none() {
        start_thread(&mut thread)?;
    }
    lock(&WATCHES).push(watch);
    if let Some(wake) = &thread.wake {
        let _ = rustix::io::write(&**wake, &1u64.to_ne_bytes());
    }
    Ok(())
}

/// Drops this process's watches of a superblock whose freeze ended here.
pub fn forget(device: Device) {
    lock(&WATCHES).retain(|w| w.device != device);
}

fn start_thread(thread: &mut ThreadState) -> io::Result<()> {
    let wake = Arc::new(rustix::event::eventfd(
        0,
        EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK,
    )?);
    let keeper = Keeper::new()?;
    let mut fds = vec![wake.as_raw_fd()];
    fds.extend(keeper.raw_fds());
    let thread_wake = Arc::clone(&wake);
    {
        let _blocked = sys::AllSignalsBlocked::new();
        std::thread::Builder::new()
            .name("freezefs-timer".into())
            .spawn(move || run(thread_wake, keeper))?;
    }
    thread.wake = Some(wake);
    thread.thread_fds = fds;
    Ok(())
}

fn run(wake: Arc<OwnedFd>, mut keeper: Keeper) {
    loop {
        keeper.prepare(&WATCHES);
        let [timer, notify] = keeper.fds();
        let mut fds = [
            PollFd::new(&*wake, PollFlags::IN),
            PollFd::from_borrowed_fd(timer, PollFlags::IN),
            PollFd::from_borrowed_fd(notify, PollFlags::IN),
        ];
        if rustix::event::poll(&mut fds, None).is_err() {
            continue;
        }
        let changed = !fds[2].revents().is_empty();
        keeper::drain(&*wake);
        keeper.settle(&WATCHES, changed);
    }
}
