//! The waiter: a thread, parked in the holder, that waits in the kernel
//! for one filesystem's thaw and is let through by it, whoever thaws; and
//! the control line through which a caller or the holder tells it to go.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use rustix::event::EventfdFlags;
use rustix::fs::AtFlags;
use rustix::io::Errno;
use rustix::net::{AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};

use crate::os::fd_passing;
use crate::os::process;
use crate::os::syscalls;

use super::wait_channel::{SPIN, waits_for_thaw, watcher_settles};

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

/// How long [`Waiter::settle`] watches only for the thread's return.
const QUICK: Duration = Duration::from_micros(30);

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

/// Waiter threads told to wait and not returned yet: a process with one
/// blocked cannot finish exiting, so the holder stays while any runs.
static RUNNING_THREADS: AtomicUsize = AtomicUsize::new(0);

/// True while any waiter thread of this process waits, or may.
pub(crate) fn any_thread_running() -> bool {
    RUNNING_THREADS.load(Ordering::Acquire) > 0
}

/// A waiter's control line, a socket pair: the thread's end, and the end of
/// whoever tells it to go (the client, for a freeze it just made: no round
/// trip through the holder; the holder itself, for a probe). Closing the
/// teller's end before telling dismisses the thread.
pub(crate) fn control_line() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// A thread that waits (or is parked, ready to wait) to be let through by a
/// thaw of one filesystem. Spawning a thread is the slow part of a watch or
/// a probe, so it is done ahead of time; [`tell_go`] starts the wait.
pub(crate) struct Waiter {
    shared: Arc<Shared>,
    /// Readable (an eventfd) once the thread has returned.
    done: OwnedFd,
}

impl Waiter {
    /// A thread parked on `control` (its end of a [`control_line`]) that
    /// waits once and is gone when a thaw lets it through: a freeze's
    /// watcher, whose absence tells that the freeze ended.
    pub(crate) fn parked(control: OwnedFd) -> io::Result<Waiter> {
        Waiter::spawn(control, false)
    }

    /// A thread parked on `control` that parks again after each wait it is
    /// let through: a probe, reused while the filesystems it looks at are
    /// thawed (see [`Waiter::probe`]).
    pub(crate) fn reusable(control: OwnedFd) -> io::Result<Waiter> {
        Waiter::spawn(control, true)
    }

    fn spawn(control: OwnedFd, reusable: bool) -> io::Result<Waiter> {
        let done = rustix::event::eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        let signal = rustix::io::fcntl_dupfd_cloexec(&done, 0)?;
        let shared = Arc::new(Shared {
            tid: AtomicI32::new(0),
            outcome: AtomicU8::new(RUNNING),
        });
        let theirs = Arc::clone(&shared);
        {
            let _blocked = syscalls::AllSignalsBlocked::new();
            syscalls::spawn_detached(
                c"freezefs-waiter",
                64 * 1024,
                Box::new(move || {
                    // Who it is, said at every park: read once.
                    let me = introduce(&theirs);
                    while park_then_wait(&control, &theirs, &signal, &me) && reusable {}
                }),
            )?;
        }
        Ok(Waiter { shared, done })
    }

    /// Starts a wait of a [`Waiter::reusable`] thread, parked, through the
    /// teller's end of its control line, on the filesystem of `dir`.
    pub(crate) fn wait_on(&self, teller: &OwnedFd, dir: BorrowedFd<'_>) -> io::Result<()> {
        // What it said of earlier waits is of no use here: the shared state
        // is what the holder reads.
        let mut buf = [0u8; 64];
        while matches!(
            rustix::net::recv(teller, &mut buf, RecvFlags::DONTWAIT),
            Ok((n, _)) if n > 0
        ) {}
        syscalls::drain(&self.done);
        self.shared.outcome.store(RUNNING, Ordering::Release);
        send_go(teller, dir)
    }

    /// The fd that becomes readable when the thread returns, for a poll set.
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.done.as_fd()
    }

    /// True while the thread is parked or waits: it has not returned.
    pub(crate) fn running(&self) -> bool {
        self.shared.outcome.load(Ordering::Acquire) == RUNNING
    }

    /// True once the thread was let through (the filesystem was thawed).
    pub(crate) fn released(&self) -> bool {
        self.shared.outcome.load(Ordering::Acquire) == RELEASED
    }

    /// What it tells once it returned; `None` before.
    fn returned(&self) -> Option<Seen> {
        match self.shared.outcome.load(Ordering::Acquire) {
            RELEASED => Some(Seen::Thawed),
            CANNOT_TELL => Some(Seen::CannotTell),
            _ => None,
        }
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

    /// What it tells, waiting up to `limit` for it to settle: it usually
    /// does within tens of microseconds, less than one sleep lasts (timer
    /// slack), so it yields first and sleeps only after [`SPIN`].
    pub(crate) fn settle(&self, limit: Duration) -> Option<Seen> {
        let start = Instant::now();
        let mut pause = Duration::from_micros(50);
        loop {
            // On a thawed filesystem it returns within microseconds: watch
            // its outcome alone a moment before asking /proc.
            let seen = if start.elapsed() < QUICK {
                self.returned()
            } else {
                self.look()
            };
            if let Some(seen) = seen {
                return Some(seen);
            }
            let waited = start.elapsed();
            if waited >= limit {
                return None;
            }
            if waited < SPIN {
                std::thread::yield_now();
            } else {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(2));
            }
        }
    }
}

/// Tells a parked waiter, through the teller's end of its control line, to
/// wait on the filesystem of `dir` (a directory on it), and returns the
/// thread's id and start time (which it said when it started).
pub(crate) fn tell_go(control: &OwnedFd, dir: BorrowedFd<'_>) -> io::Result<(u32, u64)> {
    send_go(control, dir)?;
    rustix::net::sockopt::set_socket_timeout(
        control,
        rustix::net::sockopt::Timeout::Recv,
        Some(Duration::from_secs(5)),
    )?;
    let mut buf = [0u8; 64];
    let (n, _) = rustix::net::recv(control, &mut buf, RecvFlags::empty())?;
    hello(&buf[..n]).ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))
}

/// A waiter's hello, said at each park: its thread's id and start time.
pub(crate) fn hello(said: &[u8]) -> Option<(u32, u64)> {
    let (tid, start) = std::str::from_utf8(said).ok()?.split_once(' ')?;
    Some((tid.parse().ok()?, start.parse().ok()?))
}

/// A waiter's last word on a wait it returned from: let through
/// ([`Seen::Thawed`]) or not made to wait ([`Seen::CannotTell`]); `None`
/// for anything else it says (its hello).
pub(crate) fn last_word(said: &[u8]) -> Option<Seen> {
    match said {
        RELEASED_WORD => Some(Seen::Thawed),
        CANNOT_WORD => Some(Seen::CannotTell),
        _ => None,
    }
}

const RELEASED_WORD: &[u8] = b"released";
const CANNOT_WORD: &[u8] = b"cannot";

/// The signal to go, with the directory to wait in.
pub(crate) fn send_go(control: &OwnedFd, dir: BorrowedFd<'_>) -> io::Result<()> {
    fd_passing::send_with_fds(control, b"g", &[dir])
}

/// What the teller of a waiter (see [`tell_go`]) learns once the thread
/// waits for the thaw of a freeze just made, was let through already, or
/// cannot wait at all; `None` when it did not settle within `limit`.
pub(crate) fn confirm(
    control: &OwnedFd,
    pid: u32,
    thread: (u32, u64),
    limit: Duration,
) -> Option<Seen> {
    match watcher_settles(pid, thread, limit)? {
        true => Some(Seen::Frozen),
        false => {
            // It returned: its last word says how.
            let mut buf = [0u8; 16];
            let word = rustix::net::recv(control, &mut buf, RecvFlags::DONTWAIT);
            Some(match word {
                Ok((n, _)) if last_word(&buf[..n]) == Some(Seen::Thawed) => Seen::Thawed,
                _ => Seen::CannotTell,
            })
        }
    }
}

/// The calling thread's id and start time, as a waiter says them, noted in
/// `shared`: called first thing in the thread.
fn introduce(shared: &Shared) -> String {
    let tid = rustix::thread::gettid().as_raw_nonzero().get();
    let start = process::start_time_now();
    shared.tid.store(tid, Ordering::Release);
    format!("{tid} {start}")
}

/// The thread: says who it is (`me`), parks until told to go (with the
/// directory to wait in), then one `unlinkat` of a name that does not
/// exist, and its last word: `released` or `cannot`. False when it was
/// dismissed.
fn park_then_wait(control: &OwnedFd, shared: &Shared, signal: &OwnedFd, me: &str) -> bool {
    // Said at once, so that the teller finds it queued when it tells.
    let _ = rustix::net::send(control, me.as_bytes(), SendFlags::NOSIGNAL);
    let Some(dir) = told_to_go(control) else {
        return false; // dismissed
    };
    RUNNING_THREADS.fetch_add(1, Ordering::AcqRel);
    // 128 random bits: a name that no file has, so nothing is removed.
    let name = format!(".freezefs-waiter-{:032x}", process::fresh_u128());
    let outcome = loop {
        match rustix::fs::unlinkat(&dir, name.as_str(), AtFlags::empty()) {
            Err(Errno::INTR) => continue,
            // Let through. (Ok: a file of that random name existed; it did
            // not wait either way.)
            Err(Errno::NOENT) | Ok(()) => break RELEASED,
            // EROFS, ENOTDIR, EACCES...: the kernel will not make it wait.
            Err(_) => break CANNOT_TELL,
        }
    };
    shared.outcome.store(outcome, Ordering::Release);
    let word = if outcome == RELEASED {
        RELEASED_WORD
    } else {
        CANNOT_WORD
    };
    let _ = rustix::net::send(control, word, SendFlags::NOSIGNAL | SendFlags::DONTWAIT);
    let _ = rustix::io::write(signal, &1u64.to_ne_bytes());
    RUNNING_THREADS.fetch_sub(1, Ordering::AcqRel);
    true
}

/// Blocks until the teller says go, with the directory; `None` when it
/// closed its end or sent no directory.
fn told_to_go(control: &OwnedFd) -> Option<OwnedFd> {
    let mut buf = [0u8; 8];
    match fd_passing::recv_with_fd(control, &mut buf) {
        Ok((n, dir)) if n > 0 => dir,
        _ => None,
    }
}
