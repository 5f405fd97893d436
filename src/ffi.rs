//! The C ABI: argument conversion, `catch_unwind` and `errno`, nothing else.
//! Every exported body goes through [`guard`].

use std::ffi::{CStr, OsStr, c_char, c_int, c_ulong};
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use crate::error::{Error, Result};
use crate::freezer::Freezer;
use crate::policy;
use crate::sys;
use crate::timeout::Timeout;

/// Thaw the filesystem (Tru64: the absence of the other bits).
pub const FS_Q_THAW: c_ulong = 0x0;
/// Flush the filesystem and freeze it, with a timeout.
pub const FS_Q_FREEZE: c_ulong = 0x1;
/// Ask whether the filesystem is frozen.
pub const FS_Q_QUERY: c_ulong = 0x2;

/// Runs an exported body: a panic becomes -1 with errno `EIO`, an error -1
/// with its errno; nothing unwinds into C.
fn guard(body: impl FnOnce() -> Result<c_int>) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => value,
        Ok(Err(error)) => {
            sys::set_errno(error.errno());
            -1
        }
        Err(_) => {
            sys::set_errno(libc::EIO);
            -1
        }
    }
}

/// Borrows a C string as a path; NULL is `EINVAL`.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string that outlives the call.
unsafe fn path_arg<'a>(ptr: *const c_char) -> Result<&'a Path> {
    if ptr.is_null() {
        return Err(Error::InvalidArgument("mount point is NULL"));
    }
    // SAFETY: non-NULL, and the caller promises a NUL-terminated string.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    Ok(Path::new(OsStr::from_bytes(bytes)))
}

/// Freezes, thaws or queries the filesystem mounted at `mountPoint`.
///
/// `optionFlags` is exactly one of `FS_Q_FREEZE`, `FS_Q_THAW`, `FS_Q_QUERY`.
/// `timeout` (FREEZE only): `> 0` seconds; `0` the default
/// (`freezefs_default_timeout` in the `vfs:` stanza of `/etc/sysconfigtab`,
/// or `$FREEZEFS_SYSCONFIGTAB`; 60 s when missing, 0 or invalid; no timeout
/// when negative); `< 0` no timeout, frozen until thawed.
///
/// Returns: FREEZE and THAW 0 on success; QUERY 1 when frozen, 0 when not;
/// -1 on error with `errno`:
/// - `EPERM`: the caller has neither euid 0 nor `CAP_SYS_ADMIN` (checked first);
/// - `EINVAL`: `mountPoint` is NULL, the flags are unknown or combined, or the
///   path is not the root of a mount;
/// - `ENOENT`: the path does not exist or is empty;
/// - `ENAMETOOLONG`: the path is too long;
/// - `EOPNOTSUPP`: FREEZE of `/`, `/usr`, `/var` or the state directory's
///   filesystem under any name, or of a filesystem that cannot be frozen;
/// - `EALREADY`: FREEZE of a frozen filesystem, THAW of one that is not frozen;
/// - `EACCES`, `ELOOP`, `ENOTDIR`: the state directory (`/run/freezefs`) is
///   unsafe: not owned by root, writable by others, a symlink, not a directory.
///
/// QUERY of a protected filesystem is allowed. THAW of a filesystem frozen
/// by another tool (`fsfreeze -f`) thaws it. Thread-safe.
///
/// # Safety
/// `mountPoint` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
#[allow(non_snake_case)]
pub unsafe extern "C" fn freezefs(
    mountPoint: *mut c_char,
    optionFlags: c_ulong,
    timeout: c_int,
) -> c_int {
    guard(|| {
        policy::require_privilege()?;
        // SAFETY: forwarded from this function's own contract.
        let path = unsafe { path_arg(mountPoint) }?;
        let freezer = Freezer::from_env();
        match optionFlags {
            FS_Q_FREEZE => freezer.freeze(path, Timeout::from_c(timeout)).map(|()| 0),
            FS_Q_THAW => freezer.thaw(path).map(|()| 0),
            FS_Q_QUERY => freezer.is_frozen(path).map(c_int::from),
            _ => Err(Error::InvalidArgument("unknown or combined option flags")),
        }
    })
}
