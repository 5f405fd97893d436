//! Keeps the library consistent in the child of a `fork()`.
//!
//! Two things would otherwise go wrong in a child forked while another thread
//! was inside the library: a mutex held by a thread that does not exist there,
//! and an inherited copy of a lock fd, which would keep the parent's `flock`
//! held for as long as the child lives.
//!
//! Every process-wide mutex of the library is a [`ForkSafe`]: the fork
//! handlers take each one before the fork, release it in the parent, and in
//! the child run the mutex's own reset on its data before releasing it. This
//! module knows none of them: each registers itself when first locked.
//! Never lock one `ForkSafe` while holding another: the handlers take them in
//! the order they were registered.

use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::os::syscalls;

/// Locks a mutex, ignoring poisoning: every critical section of the library
/// leaves its data consistent even if a panic interrupted it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A process-wide mutex that a `fork()` never leaves locked in the child, and
/// whose data the child resets with `in_child` (threads and deadlines exist
/// only in the parent).
pub(crate) struct ForkSafe<T: Send + 'static> {
    mutex: Mutex<T>,
    in_child: fn(&mut T),
    registered: AtomicBool,
}

/// What the fork handlers see of a [`ForkSafe`], whatever its data.
trait Held: Sync {
    /// Locks it and returns the release to run after the fork
    /// (`true` in the child).
    fn hold(&'static self) -> Box<dyn FnOnce(bool)>;
}

impl<T: Send + 'static> Held for ForkSafe<T> {
    fn hold(&'static self) -> Box<dyn FnOnce(bool)> {
        let mut guard = lock(&self.mutex);
        let in_child = self.in_child;
        Box::new(move |child| {
            if child {
                in_child(&mut guard);
            }
            drop(guard);
        })
    }
}

impl<T: Send + 'static> ForkSafe<T> {
    /// A mutex around `value`; `in_child` resets the data in a forked child.
    pub(crate) const fn new(value: T, in_child: fn(&mut T)) -> ForkSafe<T> {
        ForkSafe {
            mutex: Mutex::new(value),
            in_child,
            registered: AtomicBool::new(false),
        }
    }

    /// Locks it (registering it with the fork handlers the first time).
    pub(crate) fn lock(&'static self) -> MutexGuard<'static, T> {
        lock(self.mutex())
    }

    /// The mutex itself, registered, for code that takes any `&Mutex`.
    pub(crate) fn mutex(&'static self) -> &'static Mutex<T> {
        // Flags and the registry's mutex, not a `Once`: a child forked while
        // another thread ran a `call_once` would find it running forever.
        if !self.registered.load(Ordering::Acquire) {
            ensure_handlers();
            let mut registered = lock(&REGISTERED);
            if !self.registered.load(Ordering::Acquire) {
                registered.push(self);
                self.registered.store(true, Ordering::Release);
            }
        }
        &self.mutex
    }
}

/// Every registered [`ForkSafe`], in registration order.
static REGISTERED: Mutex<Vec<&'static dyn Held>> = Mutex::new(Vec::new());

/// What the prepare handler took: the registry's guard and each mutex's
/// release.
type Taken = (
    MutexGuard<'static, Vec<&'static dyn Held>>,
    Vec<Box<dyn FnOnce(bool)>>,
);

thread_local! {
    /// Taken by the prepare handler, released by parent/child (both run in
    /// the thread that called fork).
    static STASH: RefCell<Option<Taken>> = const { RefCell::new(None) };
}

extern "C" fn prepare() {
    let registered = lock(&REGISTERED);
    let releases = registered.iter().map(|held| held.hold()).collect();
    STASH.with(|s| *s.borrow_mut() = Some((registered, releases)));
}

fn release(in_child: bool) {
    STASH.with(|s| {
        if let Some((registered, releases)) = s.borrow_mut().take() {
            for release in releases.into_iter().rev() {
                release(in_child);
            }
            drop(registered);
        }
    });
}

extern "C" fn parent() {
    release(false);
}

extern "C" fn child() {
    release(true);
}

/// Registers the fork handlers once, at the first use of the library (never
/// at load time).
fn ensure_handlers() {
    static REGISTERED_HANDLERS: AtomicBool = AtomicBool::new(false);
    if !REGISTERED_HANDLERS.swap(true, Ordering::AcqRel) {
        // Without handlers the library still works; only a fork during a
        // call could then leave a stale lock in the child.
        let _ = syscalls::register_atfork(prepare, parent, child);
    }
}

/// Raw numbers of the [`ParentOnlyFd`]s open in this process; a forked child
/// closes its copies.
static PARENT_ONLY_FDS: ForkSafe<Vec<RawFd>> = ForkSafe::new(Vec::new(), |fds| {
    for fd in fds.drain(..) {
        syscalls::close_raw(fd);
    }
});

/// An fd that a forked child must not keep (a lock fd, whose copy would
/// keep the parent's `flock` held; a holder connection, whose copy would
/// keep it open): registered when opened and closed in the child.
pub(crate) struct ParentOnlyFd(Option<OwnedFd>);

impl ParentOnlyFd {
    /// Opens and registers, both under the registry's mutex, so that a fork
    /// can never copy such an fd that the child does not know of.
    pub(crate) fn open<E>(open: impl FnOnce() -> Result<OwnedFd, E>) -> Result<ParentOnlyFd, E> {
        let mut fds = PARENT_ONLY_FDS.lock();
        let fd = open()?;
        fds.push(fd.as_raw_fd());
        Ok(ParentOnlyFd(Some(fd)))
    }
}

impl AsFd for ParentOnlyFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_ref().expect("present until dropped").as_fd()
    }
}

impl Drop for ParentOnlyFd {
    /// Closes and forgets, under the registry's mutex for the same reason.
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            let mut fds = PARENT_ONLY_FDS.lock();
            let raw = fd.as_raw_fd();
            fds.retain(|&f| f != raw);
            drop(fd);
        }
    }
}
