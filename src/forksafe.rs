//! Keeps the library consistent in the child of a `fork()`.
//!
//! Two things would otherwise go wrong in a child forked while another thread
//! was inside the library: a mutex held by a thread that does not exist there,
//! and an inherited copy of a lock fd, which would keep the parent's `flock`
//! held for as long as the child lives. Fork handlers take both mutexes
//! before the fork, release them in the parent, and in the child close the
//! copies of lock fds and reset the timer (its thread exists only in the parent).

use std::cell::RefCell;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};

use crate::keeper::Watch;
use crate::sys;
use crate::timer::{self, ThreadState};

/// Raw numbers of the [`ParentOnlyFd`]s open in this process.
static LOCK_FDS: Mutex<Vec<RawFd>> = Mutex::new(Vec::new());

type Stash = (
    MutexGuard<'static, ThreadState>,
    MutexGuard<'static, Vec<Watch>>,
    MutexGuard<'static, Vec<RawFd>>,
);

thread_local! {
    /// The guards taken by the prepare handler, released by parent/child
    /// (both run in the thread that called fork).
    static STASH: RefCell<Option<Stash>> = const { RefCell::new(None) };
}

/// Locks a mutex, ignoring poisoning: every critical section here leaves
/// its data consistent even if a panic interrupted it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

extern "C" fn prepare() {
    let (thread, watches) = timer::mutexes();
    let stash = (lock(thread), lock(watches), lock(&LOCK_FDS));
    STASH.with(|s| *s.borrow_mut() = Some(stash));
}

extern "C" fn parent() {
    STASH.with(|s| drop(s.borrow_mut().take()));
}

extern "C" fn child() {
    STASH.with(|s| {
        if let Some((mut thread, mut watches, mut fds)) = s.borrow_mut().take() {
            for fd in fds.drain(..) {
                sys::close_raw(fd);
            }
            thread.reset_in_child(&mut watches);
        }
    });
}

/// Registers the fork handlers once, at the first use of the library (never
/// at load time).
pub fn ensure_registered() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // Without handlers the library still works; only a fork during a
        // call could then leave a stale lock in the child.
        let _ = sys::register_atfork(prepare, parent, child);
    });
}

/// An fd that a forked child must not keep (a lock fd, whose copy would
/// keep the parent's `flock` held; a holder connection, whose copy would
/// keep it open): registered when opened and closed by the child handler.
pub struct ParentOnlyFd(Option<OwnedFd>);

impl ParentOnlyFd {
    /// Opens and registers, both under the registry mutex, so that a fork
    /// can never copy such an fd that the child handler does not know of.
    pub fn open<E>(open: impl FnOnce() -> Result<OwnedFd, E>) -> Result<ParentOnlyFd, E> {
        ensure_registered();
        let mut fds = lock(&LOCK_FDS);
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
    /// Closes and forgets, under the registry mutex for the same reason.
    fn drop(&mut self) {
        if let Some(fd) = self.0.take() {
            let mut fds = lock(&LOCK_FDS);
            let raw = fd.as_raw_fd();
            fds.retain(|&f| f != raw);
            drop(fd);
        }
    }
}
