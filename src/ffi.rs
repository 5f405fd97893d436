//! The C ABI: argument conversion, `catch_unwind` and `errno`, nothing else.
//! Every exported body goes through [`guard`].

use std::ffi::{CStr, OsStr, c_char, c_int, c_long, c_longlong, c_uint, c_ulong};
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use crate::error::{Error, Result};
use crate::freezer::Freezer;
use crate::policy;
use crate::status::{FreezeState, Status};
use crate::sys;
use crate::timeout::Timeout;

/// Thaw the filesystem (Tru64: the absence of the other bits).
pub const FS_Q_THAW: c_ulong = 0x0;
/// Flush the filesystem and freeze it, with a timeout.
pub const FS_Q_FREEZE: c_ulong = 0x1;
/// Ask whether the filesystem is frozen.
pub const FS_Q_QUERY: c_ulong = 0x2;

/// `freezefs_status.state`: not frozen through freezefs.
pub const FREEZEFS_THAWED: c_int = 0;
/// `freezefs_status.state`: flushing before the freeze; writes still flow.
pub const FREEZEFS_FREEZING: c_int = 1;
/// `freezefs_status.state`: frozen.
pub const FREEZEFS_FROZEN: c_int = 2;
/// Size of `freezefs_status.mount_point`, NUL included (Linux `PATH_MAX`).
pub const FREEZEFS_PATH_MAX: usize = 4096;
/// Size of `freezefs_status.fs_type`, NUL included.
pub const FREEZEFS_FSTYPE_MAX: usize = 32;

/// The state of one filesystem's freeze, filled by `freezefs_status()` and
/// `freezefs_list()`.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct freezefs_status {
    /// `FREEZEFS_THAWED`, `FREEZEFS_FREEZING` or `FREEZEFS_FROZEN`.
    pub state: c_int,
    /// 1 when frozen (what `FS_Q_QUERY` answers), else 0.
    pub frozen: c_int,
    /// The mount point (the one it was frozen through), NUL-terminated.
    pub mount_point: [c_char; FREEZEFS_PATH_MAX],
    /// The filesystem type, NUL-terminated (may be cut short).
    pub fs_type: [c_char; FREEZEFS_FSTYPE_MAX],
    /// The superblock's device number, major part.
    pub dev_major: c_uint,
    /// The superblock's device number, minor part.
    pub dev_minor: c_uint,
    /// The process that froze it; 0 when thawed.
    pub pid: c_int,
    /// The holder process keeping it; 0 when none.
    pub holder_pid: c_int,
    /// When it was frozen: seconds since the epoch; 0 when thawed.
    pub frozen_since: c_longlong,
    /// When it was frozen: the nanoseconds part.
    pub frozen_since_nsec: c_long,
    /// The timeout in seconds; -1 for no timeout; 0 when thawed.
    pub timeout: c_int,
    /// Milliseconds until the deadline; -1 without a timeout or when thawed.
    pub time_left_ms: c_longlong,
}

fn copy_cstr(dst: &mut [c_char], src: &[u8]) {
    let n = src.len().min(dst.len() - 1);
    for (d, &b) in dst.iter_mut().zip(&src[..n]) {
        *d = b as c_char;
    }
    dst[n] = 0;
}

fn fill(out: &mut freezefs_status, status: &Status) {
    out.state = match status.state {
        FreezeState::Thawed => FREEZEFS_THAWED,
        FreezeState::Freezing => FREEZEFS_FREEZING,
        FreezeState::Frozen => FREEZEFS_FROZEN,
    };
    out.frozen = c_int::from(status.state == FreezeState::Frozen);
    copy_cstr(
        &mut out.mount_point,
        status.mount_point.as_os_str().as_bytes(),
    );
    copy_cstr(&mut out.fs_type, status.fs_type.as_bytes());
    out.dev_major = status.device.major;
    out.dev_minor = status.device.minor;
    out.pid = status.pid.map_or(0, |p| p as c_int);
    out.holder_pid = status.holder_pid.map_or(0, |p| p as c_int);
    let since = status
        .frozen_since
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .unwrap_or_default();
    out.frozen_since = since.as_secs() as c_longlong;
    out.frozen_since_nsec = c_long::from(since.subsec_nanos() as i32);
    out.timeout = match status.timeout {
        None => 0,
        Some(Timeout::Seconds(n)) => n.min(i32::MAX as u32) as c_int,
        Some(_) => -1,
    };
    out.time_left_ms = status
        .time_left
        .map_or(-1, |d| d.as_millis().min(i64::MAX as u128) as c_longlong);
}

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

/// Fills `*out` with the state of the filesystem mounted at `mountPoint`:
/// thawed, freezing or frozen, and when frozen by whom, since when, the
/// timeout, the time left and the holder. Returns 0, or -1 with `errno` as
/// for `freezefs()` (and `EINVAL` when `out` is NULL). Like `FS_Q_QUERY`,
/// it thaws a freeze whose deadline has passed.
///
/// # Safety
/// `mountPoint` is NULL or a NUL-terminated string; `out` is NULL or points
/// to writable memory for one `struct freezefs_status`.
#[unsafe(no_mangle)]
#[allow(non_snake_case)]
pub unsafe extern "C" fn freezefs_status(
    mountPoint: *const c_char,
    out: *mut freezefs_status,
) -> c_int {
    guard(|| {
        policy::require_privilege()?;
        // SAFETY: forwarded from this function's own contract.
        let path = unsafe { path_arg(mountPoint) }?;
        // SAFETY: NULL or valid for one struct, per the contract.
        let out = unsafe { out.as_mut() }.ok_or(Error::InvalidArgument("out is NULL"))?;
        let status = Freezer::from_env().status(path)?;
        fill(out, &status);
        Ok(0)
    })
}

/// Lists every filesystem frozen (or freezing) through freezefs: fills up to
/// `capacity` entries of `out` and returns how many there are (which may be
/// more than `capacity`: call again with more room). `out` may be NULL when
/// `capacity` is 0. -1 with `errno` on error (`EINVAL` for a negative
/// capacity or a NULL `out` with room).
///
/// # Safety
/// `out` is NULL or points to writable memory for `capacity` entries.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn freezefs_list(out: *mut freezefs_status, capacity: c_int) -> c_int {
    guard(|| {
        policy::require_privilege()?;
        let capacity =
            usize::try_from(capacity).map_err(|_| Error::InvalidArgument("negative capacity"))?;
        if out.is_null() && capacity > 0 {
            return Err(Error::InvalidArgument("out is NULL"));
        }
        let all = Freezer::from_env().list()?;
        for (i, status) in all.iter().take(capacity).enumerate() {
            // SAFETY: i < capacity, and out has room for capacity entries.
            fill(unsafe { &mut *out.add(i) }, status);
        }
        Ok(c_int::try_from(all.len()).unwrap_or(c_int::MAX))
    })
}

/// Borrows `count` C strings as paths; NULL array or element is `EINVAL`.
///
/// # Safety
/// `list` is NULL or points to `count` pointers, each NULL or a string.
unsafe fn path_list<'a>(list: *const *mut c_char, count: c_int) -> Result<Vec<&'a Path>> {
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

/// Gives a frozen filesystem a new timeout, counted from now, with the
/// rules of `freezefs()` (`> 0` seconds, `0` the default, `< 0` none): the
/// 2008 Linux patch's `FIFREEZE_RESET_TIMEOUT`. Returns 0, or -1 with
/// `errno`: `EINVAL` when it is not frozen, else as for `freezefs()`.
///
/// # Safety
/// `mountPoint` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
#[allow(non_snake_case)]
pub unsafe extern "C" fn freezefs_reset_timeout(
    mountPoint: *const c_char,
    timeout: c_int,
) -> c_int {
    guard(|| {
        policy::require_privilege()?;
        // SAFETY: forwarded from this function's own contract.
        let path = unsafe { path_arg(mountPoint) }?;
        Freezer::from_env()
            .reset_timeout(path, Timeout::from_c(timeout))
            .map(|()| 0)
    })
}

/// Freezes `count` filesystems all or nothing (VxFS `VX_FREEZE_ALL`), under
/// one deadline (`timeout` as for `freezefs()`). Every path is checked and
/// opened before the first freeze; two names of one filesystem count once;
/// nested mounts freeze deepest first; all are flushed in parallel first so
/// that the freezes follow each other closely. On any failure the ones
/// already frozen are thawed, newest first, and -1 is returned with the
/// first failure's `errno`: nothing is left frozen.
///
/// # Safety
/// `mountPoints` is NULL or points to `count` pointers, each NULL or a
/// NUL-terminated string.
#[unsafe(no_mangle)]
#[allow(non_snake_case)]
pub unsafe extern "C" fn freezefs_all(
    mountPoints: *const *mut c_char,
    count: c_int,
    timeout: c_int,
) -> c_int {
    guard(|| {
        policy::require_privilege()?;
        // SAFETY: forwarded from this function's own contract.
        let paths = unsafe { path_list(mountPoints, count) }?;
        Freezer::from_env()
            .freeze_all(&paths, Timeout::from_c(timeout))
            .map(|()| 0)
    })
}

/// Thaws `count` filesystems: every one that can be, then returns 0, or -1
/// with the first failure's `errno` (`EALREADY` for one that was not frozen).
///
/// # Safety
/// As for `freezefs_all()`.
#[unsafe(no_mangle)]
#[allow(non_snake_case)]
pub unsafe extern "C" fn thawfs_all(mountPoints: *const *mut c_char, count: c_int) -> c_int {
    guard(|| {
        policy::require_privilege()?;
        // SAFETY: forwarded from this function's own contract.
        let paths = unsafe { path_list(mountPoints, count) }?;
        Freezer::from_env().thaw_all(&paths).map(|()| 0)
    })
}
