//! Starting the holder so that the caller never sees it.
//!
//! posix_spawn is what a library should use in a multi-threaded caller (no
//! fork, no page-table copy, nothing but exec in the child). But its child
//! is the caller's child: its exit raises SIGCHLD and a `waitpid(-1)` of the
//! caller reaps it, which the holder must never cause. So we do what
//! posix_spawn does, twice:
//!
//! 1. a vfork-style clone (`CLONE_VM | CLONE_VFORK`, the caller's thread
//!    suspended meanwhile) with **no exit signal**: a "clone child" that
//!    `waitpid(-1)` skips and that raises nothing. It never execs (exec
//!    would restore SIGCHLD); it only makes step 2 and exits;
//! 2. from it, a vfork-style clone that starts a new session, resets every
//!    signal to its default, puts /dev/null on 0-2, keeps exactly the two
//!    fds the holder needs as 3 and 4, and execs the holder with a clean
//!    environment. Its parent exits at once, so it belongs to init.
//!
//! The library then reaps step 1 with `__WCLONE`. Both children run only
//! async-signal-safe calls on stacks and data prepared before the clone.
//!
//! A system-call wrapper like [`crate::os::syscalls`], and like it allowed
//! `unsafe`.
#![allow(unsafe_code)]

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicI32, Ordering};

use crate::os::syscalls::AllSignalsBlocked;

const STACK_BYTES: usize = 64 * 1024;

/// Everything the children use, built before the clone.
struct Plan {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    fds: [libc::c_int; 2],
    second_stack_top: usize,
    errno: AtomicI32,
}

fn record_errno(plan: &Plan) {
    // SAFETY: __errno_location is the calling thread's errno slot.
    let e = unsafe { *libc::__errno_location() };
    plan.errno
        .store(if e == 0 { libc::EIO } else { e }, Ordering::SeqCst);
}

extern "C" fn first_hop(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: arg is the parent's Plan, alive while the parent is suspended
    // (CLONE_VFORK) until this child exits. clone and _exit are
    // async-signal-safe; the second stack was allocated by the parent.
    unsafe {
        let plan = &*(arg as *const Plan);
        let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
        if libc::clone(
            second_hop,
            plan.second_stack_top as *mut libc::c_void,
            flags,
            arg,
        ) < 0
        {
            record_errno(plan);
        }
        libc::_exit(0)
    }
}

extern "C" fn second_hop(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: as above; only async-signal-safe calls (setsid, sigaction,
    // open, fcntl, dup2, close_range, execve, _exit), no allocation.
    unsafe {
        let plan = &*(arg as *const Plan);
        libc::setsid();
        let mut default: libc::sigaction = std::mem::zeroed();
        default.sa_sigaction = libc::SIG_DFL;
        for signal in 1..libc::SIGRTMAX() {
            libc::sigaction(signal, &default, std::ptr::null_mut());
        }
        let high0 = libc::fcntl(plan.fds[0], libc::F_DUPFD, 5);
        let high1 = libc::fcntl(plan.fds[1], libc::F_DUPFD, 5);
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        let ok = high0 >= 0
            && high1 >= 0
            && null >= 0
            && libc::dup2(null, 0) >= 0
            && libc::dup2(null, 1) >= 0
            && libc::dup2(null, 2) >= 0
            && libc::dup2(high0, 3) >= 0
            && libc::dup2(high1, 4) >= 0;
        if ok {
            // None of the caller's other fds go along.
            libc::syscall(libc::SYS_close_range, 5u32, u32::MAX, 0u32);
            libc::execve(plan.path, plan.argv, plan.envp);
        }
        record_errno(plan);
        libc::_exit(127)
    }
}

fn null_terminated(strings: &[&CStr]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// Starts `path` with `argv` and `envp`, detached as described above, with
/// `fds` as its fds 3 and 4. Returns once it has exec'd (or failed to).
pub(crate) fn spawn_detached(
    path: &CStr,
    argv: &[&CStr],
    envp: &[&CStr],
    fds: [BorrowedFd<'_>; 2],
) -> io::Result<()> {
    let argv = null_terminated(argv);
    let envp = null_terminated(envp);
    let mut first_stack = vec![0u8; STACK_BYTES];
    let mut second_stack = vec![0u8; STACK_BYTES];
    // Stacks grow down; clone wants a 16-byte aligned top.
    let top = |stack: &mut Vec<u8>| (stack.as_mut_ptr() as usize + stack.len()) & !15;
    let plan = Plan {
        path: path.as_ptr(),
        argv: argv.as_ptr(),
        envp: envp.as_ptr(),
        fds: [fds[0].as_raw_fd(), fds[1].as_raw_fd()],
        second_stack_top: top(&mut second_stack),
        errno: AtomicI32::new(0),
    };
    // No handler of the caller's may run on the children's borrowed memory.
    let blocked = AllSignalsBlocked::new();
    // SAFETY: CLONE_VM|CLONE_VFORK suspends this thread until the first hop
    // exits, so the stacks and `plan` outlive every use the children make of
    // them; exit signal 0 (no SIGCHLD in the flags).
    let pid = unsafe {
        libc::clone(
            first_hop,
            top(&mut first_stack) as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK,
            &plan as *const Plan as *mut libc::c_void,
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    let reaped = reap_clone_child(pid);
    drop(blocked);
    reaped?;
    match plan.errno.load(Ordering::SeqCst) {
        0 => Ok(()),
        errno => Err(io::Error::from_raw_os_error(errno)),
    }
}

/// Reaps the first hop: a clone child, so only `__WCLONE` sees it.
fn reap_clone_child(pid: libc::pid_t) -> io::Result<()> {
    let mut status = 0;
    loop {
        // SAFETY: waits for one specific child of ours and writes `status`.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::__WCLONE) };
        if rc == pid {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EINTR) {
            return Err(err);
        }
    }
}
