//! The C ABI, the only `extern "C"` code: every exported function checks
//! privilege, converts its arguments and calls the safe API, all inside
//! [`ffi_call`], which catches panics and sets `errno`. It reads like a table.
//!
//! Its `pub` items are the C API's, whatever Rust can reach: cbindgen puts
//! only `pub` items into the header.
#![allow(unsafe_code, unreachable_pub)]

pub(crate) mod call;

use std::ffi::{c_char, c_int, c_ulong};

use crate::error::Error;
use crate::ops::freezer::Freezer;
use crate::policy;
use crate::timeout::Timeout;
use call::{ffi_call, path_arg, path_list};
use status_struct::{freezefs_last_freeze, freezefs_status};

/// Thaw the filesystem (Tru64: the absence of the other bits).
pub const FS_Q_THAW: c_ulong = 0x0;
/// Flush the filesystem and freeze it, with a timeout.
pub const FS_Q_FREEZE: c_ulong = 0x1;
/// Ask whether the filesystem is frozen.
pub const FS_Q_QUERY: c_ulong = 0x2;

// After the flags, so that the header keeps its order.
mod status_struct;

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
/// - `EALREADY`: FREEZE of a frozen filesystem; THAW of one that is not
///   frozen, or whose freeze already ended (its timeout passed, or another
///   tool thawed it): the snapshot cannot rely on it, and nothing is touched;
/// - `EACCES`, `ELOOP`, `ENOTDIR`: the state directory (`/run/freezefs`) is
///   unsafe: not owned by root, writable by others, a symlink, not a directory;
///   `EACCES` also for a hook directory or hook that is not root's, or is
///   writable by group or others, or a symlink;
/// - `ECANCELED`: FREEZE: a freeze hook failed or outlived its time limit,
///   or a hold hook was not ready in time; the hooks that ran were undone,
///   nothing was frozen. THAW: a hold hook ended while the freeze was in
///   force; the filesystem is thawed all the same, but a snapshot taken
///   under the freeze is not application-consistent (reported once, like
///   `EALREADY`);
/// - `ECHILD`: FREEZE could not start the holder process that keeps the
///   freeze (missing or not executable); nothing was frozen. QUERY of a
///   filesystem with no freezefs freeze on record: the holder, which asks
///   the kernel, could not be started or did not answer within 2 s; QUERY
///   of a freeze on record whose waiter thread in the holder neither waits
///   nor ends within 1 s (the holder stopped by a signal);
/// - `EIO`: a state record does not parse, or is a symlink, a FIFO or
///   anything but a file (the state directory was tampered with), or a bug
///   inside the library was caught.
///
/// QUERY answers 1 for a freeze made by any tool (`fsfreeze`, a hypervisor's
/// agent), in the kernel's word; QUERY of a protected filesystem is allowed.
/// A freeze made through freezefs is watched: when another tool thaws it,
/// QUERY says 0 as soon as that thaw has returned, and its deadline thaws
/// nothing any more.
/// THAW of a filesystem frozen by another tool (`fsfreeze -f`) with no
/// freezefs freeze on record thaws it. Thread-safe.
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
    ffi_call(|| {
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
/// timeout, the time left and the holder. A freeze made by another tool is
/// `FREEZEFS_FROZEN` with `pid` 0 and `timeout` -1 (its owner is unknown).
/// Returns 0, or -1 with `errno` as for `freezefs()` (and `EINVAL` when
/// `out` is NULL). Like `FS_Q_QUERY`, it thaws a freeze whose deadline has
/// passed. How the last freeze ended: `freezefs_last_freeze()`.
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
    ffi_call(|| {
        policy::require_privilege()?;
        // SAFETY: forwarded from this function's own contract.
        let path = unsafe { path_arg(mountPoint) }?;
        // SAFETY: NULL or valid for one struct, per the contract.
        let out = unsafe { out.as_mut() }.ok_or(Error::InvalidArgument("out is NULL"))?;
        let status = Freezer::from_env().status(path)?;
        status_struct::fill(out, &status);
        Ok(0)
    })
}

/// Fills `*out` with how the last freeze made through freezefs of the
/// filesystem mounted at `mountPoint` ended (thawed, timed out, thawed by
/// another tool, or undone because its freezer died), while it is
/// remembered: until a later freeze of that filesystem ends, or a reboot.
/// Returns 1 when filled, 0 when none is remembered, -1 with `errno` as for
/// `freezefs()` (and `EINVAL` when `out` is NULL).
///
/// # Safety
/// `mountPoint` is NULL or a NUL-terminated string; `out` is NULL or points
/// to writable memory for one `struct freezefs_last_freeze`.
#[unsafe(no_mangle)]
#[allow(non_snake_case)]
pub unsafe extern "C" fn freezefs_last_freeze(
    mountPoint: *const c_char,
    out: *mut freezefs_last_freeze,
) -> c_int {
    ffi_call(|| {
        policy::require_privilege()?;
        // SAFETY: forwarded from this function's own contract.
        let path = unsafe { path_arg(mountPoint) }?;
        // SAFETY: NULL or valid for one struct, per the contract.
        let out = unsafe { out.as_mut() }.ok_or(Error::InvalidArgument("out is NULL"))?;
        match Freezer::from_env().status(path)?.last_freeze {
            Some(last) => {
                status_struct::fill_last(out, &last);
                Ok(1)
            }
            None => Ok(0),
        }
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
    ffi_call(|| {
        policy::require_privilege()?;
        let capacity =
            usize::try_from(capacity).map_err(|_| Error::InvalidArgument("negative capacity"))?;
        if out.is_null() && capacity > 0 {
            return Err(Error::InvalidArgument("out is NULL"));
        }
        let all = Freezer::from_env().list()?;
        for (i, status) in all.iter().take(capacity).enumerate() {
            // SAFETY: i < capacity, and out has room for capacity entries.
            status_struct::fill(unsafe { &mut *out.add(i) }, status);
        }
        Ok(c_int::try_from(all.len()).unwrap_or(c_int::MAX))
    })
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
    ffi_call(|| {
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
    ffi_call(|| {
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
    ffi_call(|| {
        policy::require_privilege()?;
        // SAFETY: forwarded from this function's own contract.
        let paths = unsafe { path_list(mountPoints, count) }?;
        Freezer::from_env().thaw_all(&paths).map(|()| 0)
    })
}
