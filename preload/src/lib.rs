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
//! FIFREEZE's timeout, as the 2008 timeout patch had it: when the argument
//! points to a value > 1, that many seconds (0 and 1, what XFS tools pass,
//! mean "none given"); else `FREEZEFS_TIMEOUT` from the environment (seconds;
//! 0 the default, negative none); else the sysconfigtab default.
//!
//! Results keep the kernel's contract, so that tools behave as without the
//! shim: EBUSY already frozen, EINVAL not frozen, EOPNOTSUPP cannot be frozen,
//! EPERM not privileged. Freezing `/`, `/usr`, `/var` (or the state
//! directory's filesystem) fails with EOPNOTSUPP, which the bare kernel would
//! not refuse.
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
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicPtr, Ordering};

use freezefs::ioctl_numbers::{FIFREEZE, FITHAW, VX_FREEZE, VX_FREEZE_ALL, VX_THAW};
use freezefs::{Error, Freezer, Timeout};

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

fn set_errno(errno: c_int) {
    // SAFETY: the calling thread's errno slot.
    unsafe { *libc::__errno_location() = errno };
}

/// The kernel's errno for this outcome, so that tools keep behaving.
fn kernel_errno(error: &Error) -> c_int {
    match error {
        Error::AlreadyFrozen(_) => libc::EBUSY,
        Error::NotFrozen(_) => libc::EINVAL,
        Error::Unsupported { .. } | Error::Protected { .. } => libc::EOPNOTSUPP,
        Error::NotPrivileged => libc::EPERM,
        other => other.errno(),
    }
}

fn run(body: impl FnOnce() -> Result<(), Error>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            set_errno(kernel_errno(&e));
            -1
        }
        Err(_) => {
            set_errno(libc::EIO);
            -1
        }
    }
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

/// FIFREEZE's timeout: the argument, else FREEZEFS_TIMEOUT, else the default.
fn fifreeze_timeout(arg: *const c_void) -> Timeout {
    if let Some(seconds) = read_int(arg).filter(|&v| v > 1) {
        return Timeout::Seconds(seconds as u32);
    }
    // SAFETY: getauxval reads the auxiliary vector only.
    let secure = unsafe { libc::getauxval(libc::AT_SECURE) } != 0;
    let from_env = (!secure)
        .then(|| std::env::var("FREEZEFS_TIMEOUT").ok())
        .flatten()
        .and_then(|v| v.trim().parse::<c_int>().ok());
    from_env.map_or(Timeout::Default, Timeout::from_c)
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
    Freezer::from_env().freeze_all_fds(&fds, Timeout::from_c(request.timeout))
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
        FIFREEZE => run(|| Freezer::from_env().freeze_fd(borrowed(fd)?, fifreeze_timeout(arg))),
        FITHAW | VX_THAW => run(|| Freezer::from_env().thaw_fd(borrowed(fd)?)),
        VX_FREEZE => run(|| {
            Freezer::from_env().freeze_fd(borrowed(fd)?, Timeout::from_c(arg as isize as c_int))
        }),
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
