//! What every exported function shares: one guard that turns errors and
//! panics into `-1` and `errno`, and the conversion of C arguments.
#![allow(unsafe_code)]

use std::ffi::{CStr, OsStr, c_char, c_int};
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use crate::error::{Error, Result};
use crate::os::syscalls;

/// Runs an exported body: a panic becomes -1 with errno `EIO`, an error -1
/// with its errno; nothing unwinds into C.
pub(crate) fn ffi_call(body: impl FnOnce() -> Result<c_int>) -> c_int {
    guarded(body, Error::errno)
}

/// [`ffi_call`] with the caller's own errno for each error: the shim, which
/// stands for the kernel's ioctl, answers with the kernel's.
pub fn guarded(body: impl FnOnce() -> Result<c_int>, errno_of: fn(&Error) -> c_int) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => {
            syscalls::set_errno(errno_of(&error));
            -1
        }
        Err(_) => {
            syscalls::set_errno(libc::EIO);
            -1
        }
    }
}

/// Borrows a C string as a path; NULL is `EINVAL`.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives the call.
pub(crate) unsafe fn path_arg<'a>(ptr: *const c_char) -> Result<&'a Path> {
    if ptr.is_null() {
        return Err(Error::InvalidArgument("mount point is NULL"));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    Ok(Path::new(OsStr::from_bytes(bytes)))
}

/// Borrows `count` C strings as paths; NULL array or element is `EINVAL`.
///
/// # Safety
/// `list` is NULL or points to `count` pointers, each NULL or a string.
pub(crate) unsafe fn path_list<'a>(
    list: *const *mut c_char,
    count: c_int,
) -> Result<Vec<&'a Path>> {
    let count = usize::try_from(count)
        .ok()
        .filter(|&n| n > 0)
        .ok_or(Error::InvalidArgument("count must be at least 1"))?;
    if list.is_null() {
        return Err(Error::InvalidArgument("mount point list is NULL"));
    }
    // SAFETY: list points to count pointers, per the contract.
    let pointers = unsafe { std::slice::from_raw_parts(list, count) };
    // SAFETY: each is NULL or a NUL-terminated string, per the contract.
    pointers.iter().map(|&p| unsafe { path_arg(p) }).collect()
}
