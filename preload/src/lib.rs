//! `libfreezefs_preload.so`: gives existing tools freezefs's guarantees.
//!
//! Preloaded into any program (`LD_PRELOAD=libfreezefs_preload.so fsfreeze -f
//! /mnt`), it interposes `ioctl()`. The freeze and thaw requests become
//! freezefs freezes and thaws of the fd's filesystem, with a deadline, a
//! holder and an entry in `freezefs -l`. Every other request goes straight to
//! the next `ioctl()` (libc's).
//!
//! | request | value | becomes |
//! |---|---|---|
//! | `FIFREEZE` (= old `XFS_IOC_FREEZE`) | `0xC0045877` | freeze; timeout: see below |
//! | `FITHAW` (= old `XFS_IOC_THAW`) | `0xC0045878` | thaw |
//! | `VX_FREEZE` (Solaris VxFS) | `0x564F4C64` | freeze; timeout by value (> 0 s, 0 default, < 0 none) |
//! | `VX_THAW` (Solaris VxFS) | `0x564F4C65` | thaw |
//! | `VX_FREEZE_ALL` (Solaris VxFS, LP64) | `0x56584606` | `struct vx_freezeall { int num; int timeout; int *fds; }`: all or nothing |
//!
//! FIFREEZE's timeout: `FREEZEFS_TIMEOUT` from the environment (whole
//! seconds; 0 the default, negative none), else the sysconfigtab default. A
//! `FREEZEFS_TIMEOUT` that is not a whole number fails the freeze with
//! EINVAL and one line on stderr: nothing is frozen. FIFREEZE's third
//! argument is ignored: callers pass 0 (util-linux), a pointer to 1
//! (xfs_io) or nothing at all (qemu-guest-agent, open-vm-tools: whatever a
//! register holds). A tool written for the never-merged 2008 timeout patch
//! opts in with `FREEZEFS_FIFREEZE_TIMEOUT_POINTER=1`: then an argument that
//! points to a value > 1 is that many seconds (0 and 1 mean none given).
//! Both variables are ignored in setuid and setgid programs.
//!
//! A thaw answers by its caller's contract when the freeze had already timed
//! out: `FITHAW` EINVAL (the kernel's "not frozen", which qemu-guest-agent
//! relies on), `VX_THAW` ETIMEDOUT (VxFS's).
//!
//! Results keep the kernel's contract, so that tools behave as without the
//! shim: EBUSY already frozen, EINVAL not frozen, EOPNOTSUPP cannot be frozen,
//! EPERM not privileged.
//!
//! `/`, `/usr` and `/var` are frozen as the kernel would, not refused as
//! `freezefs()` refuses them: a hypervisor's guest agent must quiesce the
//! root disk, and would silently skip a filesystem that answers EOPNOTSUPP.
//! Their deadline is always finite: the timeout asked for, capped by
//! `freezefs_protected_max_timeout` (`vfs:` stanza, 60 s by default);
//! `FREEZEFS_TIMEOUT=-1` does not lift the cap. The one filesystem refused is
//! the one holding the state directory, whose freeze would freeze what keeps
//! it: EDEADLK (which guest agents do not skip: the whole freeze fails and
//! is rolled back), with one line on stderr.
//!
//! Exports: `ioctl`, and the freezefs C API of the core it embeds (the same
//! implementation as libfreezefs.so, so a program preloaded with the shim
//! also gets a working `freezefs()`).
//!
//! ABI note: `ioctl` is variadic in C; stable Rust cannot define variadic
//! functions, so it is defined with the one pointer-sized argument every
//! ioctl takes. On x86_64 and aarch64 Linux a variadic callee finds that
//! argument in the same register as a fixed one, which is what makes
//! LD_PRELOAD ioctl shims work.

// All of this crate is C boundary: an interposed libc function.
#![allow(unsafe_code)]

use std::ffi::{c_int, c_ulong, c_void};
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicPtr, Ordering};

use freezefs::ffi_guard::{guarded, set_errno};
use freezefs::ioctl_numbers::{FIFREEZE, FITHAW, VX_FREEZE, VX_FREEZE_ALL, VX_THAW};
use freezefs::{EndReason, Error, Freezer, Timeout};

/// VxFS's argument to `VX_FREEZE_ALL`.
#[repr(C)]
struct VxFreezeAll {
    num: c_int,
    timeout: c_int,
    fds: *const c_int,
}

type IoctlFn = unsafe extern "C" fn(c_int, c_ulong, *mut c_void) -> c_int;

/// The next `ioctl` in the lookup order (libc's), found once.
fn next_ioctl() -> Option<IoctlFn> {
    static NEXT: AtomicPtr<c_void> = AtomicPtr::new(std::ptr::null_mut());
    let mut ptr = NEXT.load(Ordering::Acquire);
    if ptr.is_null() {
        // SAFETY: dlsym with a NUL-terminated name only reads the loader's tables.
        ptr = unsafe { libc::dlsym(libc::RTLD_NEXT, c"ioctl".as_ptr()) };
        NEXT.store(ptr, Ordering::Release);
    }
    // SAFETY: the symbol "ioctl" is libc's int ioctl(int, unsigned long, ...),
    // called with the one argument every ioctl takes.
    (!ptr.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, IoctlFn>(ptr) })
}

/// The kernel's errno for this outcome, so that tools keep behaving.
fn kernel_errno(error: &Error) -> c_int {
    match error {
        Error::AlreadyFrozen(_) => libc::EBUSY,
        Error::NotFrozen(_) => libc::EINVAL,
        Error::Unsupported { .. } | Error::Protected { .. } => libc::EOPNOTSUPP,
        Error::HoldsStateDir { .. } => libc::EDEADLK,
        Error::NotPrivileged => libc::EPERM,
        other => other.errno(),
    }
}

/// The library's C guard, answering with the kernel's errno.
fn run(body: impl FnOnce() -> Result<(), Error>) -> c_int {
    guarded(|| body().map(|()| 0), kernel_errno)
}

fn borrowed(fd: c_int) -> Result<BorrowedFd<'static>, Error> {
    if fd < 0 {
        return Err(Error::Os {
            what: "ioctl".into(),
            source: std::io::Error::from_raw_os_error(libc::EBADF),
        });
    }
    // SAFETY: the caller passed this fd to ioctl; it stays open for the call.
    Ok(unsafe { BorrowedFd::borrow_raw(fd) })
}

/// Reads the int the argument points to, without trusting the pointer:
/// process_vm_readv fails with EFAULT where a plain read would crash.
fn read_int(ptr: *const c_void) -> Option<c_int> {
    if (ptr as usize) < 4096 {
        return None;
    }
    let mut value: c_int = 0;
    let local = libc::iovec {
        iov_base: (&mut value as *mut c_int).cast(),
        iov_len: std::mem::size_of::<c_int>(),
    };
    let remote = libc::iovec {
        iov_base: ptr as *mut c_void,
        iov_len: std::mem::size_of::<c_int>(),
    };
    // SAFETY: reads 4 bytes of our own address space into `value`; a bad
    // address is reported as an error, not a fault.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    (n == std::mem::size_of::<c_int>() as isize).then_some(value)
}

/// The environment variable, unless the process runs under `AT_SECURE`.
fn secure_env(name: &str) -> Option<String> {
    // SAFETY: getauxval reads the auxiliary vector only.
    let secure = unsafe { libc::getauxval(libc::AT_SECURE) } != 0;
    (!secure).then(|| std::env::var(name).ok()).flatten()
}

/// FIFREEZE's timeout: the 2008 patch's pointer when the tool opted in,
/// else `FREEZEFS_TIMEOUT`, else the default. A `FREEZEFS_TIMEOUT` that is
/// not a whole number is an error, said on stderr.
fn fifreeze_timeout(arg: *const c_void) -> Result<Timeout, Error> {
    let pointer = secure_env("FREEZEFS_FIFREEZE_TIMEOUT_POINTER").is_some_and(|v| v == "1");
    if let Some(seconds) = pointer.then(|| read_int(arg)).flatten().filter(|&v| v > 1) {
        return Ok(Timeout::Seconds(seconds as u32));
    }
    match secure_env("FREEZEFS_TIMEOUT") {
        None => Ok(Timeout::Default),
        Some(value) => match value.trim().parse::<c_int>() {
            Ok(seconds) => Ok(Timeout::from_c(seconds)),
            Err(_) => {
                eprintln!(
                    "freezefs shim: FREEZEFS_TIMEOUT={value:?} is not a whole number of seconds; nothing was frozen"
                );
                Err(Error::InvalidArgument(
                    "FREEZEFS_TIMEOUT is not a whole number",
                ))
            }
        },
    }
}

/// The freezer of every freeze the shim makes: the kernel's contract for
/// `/`, `/usr` and `/var`, with a capped deadline.
fn freezer() -> Freezer {
    Freezer::from_env().with_protected_capped()
}

/// Freezes through the core, saying on stderr, in one line, why a freeze
/// failed when the kernel's errno cannot (the holder missing, an unsafe
/// state directory, the state directory's own filesystem): tools show the
/// errno, and the reason would otherwise be only in syslog.
fn freeze_fd(fd: c_int, timeout: Result<Timeout, Error>) -> Result<(), Error> {
    said_on_stderr(freezer().freeze_fd(borrowed(fd)?, timeout?))
}

fn said_on_stderr(result: Result<(), Error>) -> Result<(), Error> {
    if let Err(e) = &result {
        if !matches!(
            e,
            Error::AlreadyFrozen(_)
                | Error::Unsupported { .. }
                | Error::Protected { .. }
                | Error::NotPrivileged
                | Error::InvalidArgument(_)
        ) {
            eprintln!("freezefs shim: freeze failed: {e}");
        }
    }
    result
}

/// `VX_THAW`: a freeze that had already timed out answers ETIMEDOUT.
fn vx_thaw(fd: c_int) -> Result<(), Error> {
    let freezer = Freezer::from_env();
    let fd = borrowed(fd)?;
    match freezer.thaw_fd(fd) {
        Err(Error::NotFrozen(path)) => {
            let timed_out = freezer
                .status_fd(fd)
                .ok()
                .and_then(|s| s.last_freeze)
                .is_some_and(|last| last.reason == EndReason::Timeout);
            Err(if timed_out {
                Error::Os {
                    what: format!("{}: the freeze had timed out", path.display()),
                    source: std::io::Error::from_raw_os_error(libc::ETIMEDOUT),
                }
            } else {
                Error::NotFrozen(path)
            })
        }
        other => other,
    }
}

fn freeze_all(arg: *const c_void) -> Result<(), Error> {
    if arg.is_null() {
        return Err(Error::InvalidArgument("VX_FREEZE_ALL without an argument"));
    }
    // SAFETY: VX_FREEZE_ALL's argument is a struct vx_freezeall.
    let request = unsafe { &*(arg as *const VxFreezeAll) };
    let count =
        usize::try_from(request.num).map_err(|_| Error::InvalidArgument("negative count"))?;
    if count > 0 && request.fds.is_null() {
        return Err(Error::InvalidArgument("no fds"));
    }
    // SAFETY: the struct's fds points to num ints.
    let fds = unsafe { std::slice::from_raw_parts(request.fds, count) };
    let fds: Vec<BorrowedFd<'_>> = fds
        .iter()
        .map(|&fd| borrowed(fd))
        .collect::<Result<_, _>>()?;
    // All or nothing, one deadline, deepest first: the core's multi-freeze.
    said_on_stderr(freezer().freeze_all_fds(&fds, Timeout::from_c(request.timeout)))
}

/// The interposed `ioctl()`.
///
/// # Safety
/// As for libc's `ioctl()`: `arg` is what `request` expects.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: *mut c_void) -> c_int {
    // The kernel compares request numbers as 32-bit; callers may pass them
    // sign-extended.
    match request as u32 {
        FIFREEZE => run(|| freeze_fd(fd, fifreeze_timeout(arg))),
        FITHAW => run(|| Freezer::from_env().thaw_fd(borrowed(fd)?)),
        VX_THAW => run(|| vx_thaw(fd)),
        VX_FREEZE => run(|| freeze_fd(fd, Ok(Timeout::from_c(arg as isize as c_int)))),
        VX_FREEZE_ALL => run(|| freeze_all(arg)),
        _ => match next_ioctl() {
            // SAFETY: passes the caller's arguments through unchanged.
            Some(next) => unsafe { next(fd, request, arg) },
            None => {
                set_errno(libc::ENOSYS);
                -1
            }
        },
    }
}
