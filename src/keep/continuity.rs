//! The kernel's own word on whether a filesystem is frozen, and on when a
//! freeze ends, whoever ends it.
//!
//! Linux offers no query, but `unlinkat(dir_fd, "<a name that does not
//! exist>", 0)` on a frozen filesystem waits in `mnt_want_write` (its thread
//! shows `percpu_rwsem_wait` as its wait channel) and returns `ENOENT` just
//! after the thaw, whoever thawed; on a thawed filesystem it returns `ENOENT`
//! at once. It changes nothing on the filesystem, and a new FIFREEZE cannot
//! complete before such a waiter has passed, so no thaw goes unseen.
//!
//! A waiter cannot be killed while it waits, and a process with one cannot
//! finish exiting before the thaw: waiters run only in the holder, never in
//! the caller's process. Past 120 s the kernel's hung-task detector reports a
//! waiter, as it reports any writer that a freeze blocks.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::event::EventfdFlags;
use rustix::fs::AtFlags;
use rustix::io::Errno;

use crate::os::process::{self, fresh_generation};
use crate::os::syscalls;

/// What a waiter tells of its filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seen {
    /// Its thread waits in the kernel for the filesystem to be thawed.
    Frozen,
    /// Its thread was let through: the filesystem was thawed when it looked,
    /// or has been thawed since it started waiting.
    Thawed,
    /// No waiter can run there (a read-only mount, a file rather than a
    /// directory): the kernel will not tell.
    CannotTell,
}

const RUNNING: u8 = 0;
const RELEASED: u8 = 1;
const CANNOT_TELL: u8 = 2;

/// What the waiter's thread shares with the holder.
struct Shared {
    /// The thread's id, once it runs (0 before).
    tid: AtomicI32,
    /// [`RUNNING`], [`RELEASED`] or [`CANNOT_TELL`].
    outcome: AtomicU8,
}

/// Waiter threads still running in this process, released or not by their
/// [`Waiter`]: a process with one blocked cannot finish exiting, so the
/// holder stays while any runs.
static RUNNING_THREADS: AtomicUsize = AtomicUsize::new(0);

/// True while any waiter thread of this process has not returned.
pub(crate) fn any_thread_running() -> bool {
    RUNNING_THREADS.load(Ordering::Acquire) > 0
}

/// A thread waiting to be let through by a thaw of one filesystem.
pub(crate) struct Waiter {
    shared: Arc<Shared>,
    /// Readable (an eventfd) once the thread has returned.
    done: OwnedFd,
}

impl Waiter {
    /// Starts a waiter on the filesystem of `dir`, a directory on it.
    pub(crate) fn start(dir: BorrowedFd<'_>) -> io::Result<Waiter> {
        let dir = rustix::io::fcntl_dupfd_cloexec(dir, 0)?;
        let done = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        let signal = rustix::io::fcntl_dupfd_cloexec(&done, 0)?;
        let shared = Arc::new(Shared {
            tid: AtomicI32::new(0),
            outcome: AtomicU8::new(RUNNING),
        });
        // 128 random bits: a name that no file has, so nothing is removed.
        let name = format!(
            ".freezefs-waiter-{:016x}{:016x}",
            fresh_generation(),
            fresh_generation()
        );
        let theirs = Arc::clone(&shared);
        RUNNING_THREADS.fetch_add(1, Ordering::AcqRel);
        let spawned = {
            let _blocked = syscalls::AllSignalsBlocked::new();
            std::thread::Builder::new()
                .name("freezefs-waiter".into())
                .stack_size(64 * 1024)
                .spawn(move || wait(&dir, &name, &theirs, &signal))
        };
        if let Err(e) = spawned {
            RUNNING_THREADS.fetch_sub(1, Ordering::AcqRel);
            return Err(e);
        }
        Ok(Waiter { shared, done })
    }

    /// The thread, as a freeze's record names it (its id and start time),
    /// once it runs.
    pub(crate) fn thread(&self) -> Option<(u32, u64)> {
        let tid = u32::try_from(self.shared.tid.load(Ordering::Acquire)).ok()?;
        let start = process::thread_start_time(std::process::id(), tid)?;
        (tid != 0).then_some((tid, start))
    }

    /// The fd that becomes readable when the thread returns, for a poll set.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.done.as_fd()
    }

    /// True once the thread was let through (the filesystem was thawed).
    pub(crate) fn released(&self) -> bool {
        self.shared.outcome.load(Ordering::Acquire) == RELEASED
    }

    /// What it tells now; `None` while its thread has neither returned nor
    /// been seen waiting for a thaw.
    pub(crate) fn look(&self) -> Option<Seen> {
        match self.shared.outcome.load(Ordering::Acquire) {
            RELEASED => return Some(Seen::Thawed),
            CANNOT_TELL => return Some(Seen::CannotTell),
            _ => {}
        }
        let tid = self.shared.tid.load(Ordering::Acquire);
        let task = format!("/proc/self/task/{tid}");
        (tid != 0 && waits_for_thaw(&task)).then_some(Seen::Frozen)
    }

    /// What it tells, waiting up to `limit` for it to settle.
    pub(crate) fn settle(&self, limit: Duration) -> Option<Seen> {
        let end = Instant::now() + limit;
        let mut pause = Duration::from_micros(5);
        loop {
            if let Some(seen) = self.look() {
                return Some(seen);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    }
}

/// The thread: one `unlinkat` of a name that does not exist.
fn wait(dir: &OwnedFd, name: &str, shared: &Shared, signal: &OwnedFd) {
    shared.tid.store(
        rustix::thread::gettid().as_raw_nonzero().get(),
        Ordering::Release,
    );
    let outcome = loop {
        match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
            Err(Errno::INTR) => continue,
            // Let through. (Ok: a file of that random name existed; it did
            // not wait either way.)
            Err(Errno::NOENT) | Ok(()) => break RELEASED,
            // EROFS, ENOTDIR, EACCES...: the kernel will not make it wait.
            Err(_) => break CANNOT_TELL,
        }
    };
    shared.outcome.store(outcome, Ordering::Release);
    let _ = rustix::io::write(signal, &1u64.to_ne_bytes());
    RUNNING_THREADS.fetch_sub(1, Ordering::AcqRel);
}

/// Whether the holder's watcher thread `(tid, start)`, recorded with a freeze,
/// still waits for that freeze's thaw: read from `/proc` by any process of
/// the holder's user or root, even once the holder itself was killed (a
/// waiting thread outlives the rest of its process). `false` once it was let
/// through or is gone: a thaw happened since FIFREEZE.
pub(crate) fn watcher_waits(holder_pid: u32, (tid, start): (u32, u64)) -> bool {
    process::thread_start_time(holder_pid, tid) == Some(start)
        && waits_for_thaw(&format!("/proc/{holder_pid}/task/{tid}"))
}

/// True when the kernel says the thread at `task` (a `/proc/.../task/TID`
/// directory) sleeps waiting for a frozen filesystem to be thawed: its wait
/// channel, or, where that is hidden, its state (asleep, uninterruptibly)
/// and its stack. A woken thread is running, never waiting, so a thaw is
/// seen at once.
fn waits_for_thaw(task: &str) -> bool {
    let read = |what: &str| std::fs::read_to_string(format!("{task}/{what}"));
    match read("wchan") {
        Ok(wchan) if wchan.contains("percpu_rwsem") => true,
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
