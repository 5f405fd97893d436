//! `struct freezefs_status`, as `freezefs_status()` and `freezefs_list()`
//! fill it from a [`Status`], and `struct freezefs_last_freeze`, as
//! `freezefs_last_freeze()` fills it from a [`LastFreeze`].
#![allow(unreachable_pub)] // C's, for cbindgen: see the module above

use std::ffi::{c_char, c_int, c_long, c_longlong, c_uint};
use std::os::unix::ffi::OsStrExt;

use crate::end_reason::EndReason;
use crate::ops::status::{FreezeState, LastFreeze, Status};
use crate::timeout::Timeout;

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

pub(crate) fn fill(out: &mut freezefs_status, status: &Status) {
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
    (out.frozen_since, out.frozen_since_nsec) = status.frozen_since.map_or((0, 0), since_epoch);
    out.timeout = match status.timeout {
        // Another tool's freeze: no deadline that freezefs knows of.
        None if status.frozen_by_other_tool => -1,
        None => 0,
        Some(Timeout::Seconds(n)) => n.min(i32::MAX as u32) as c_int,
        Some(_) => -1,
    };
    out.time_left_ms = status
        .time_left
        .map_or(-1, |d| d.as_millis().min(i64::MAX as u128) as c_longlong);
}

/// `freezefs_last_freeze.reason`: it ended in a way this version of the
/// library does not know (recorded by a newer holder).
pub const FREEZEFS_ENDED_UNKNOWN: c_int = 0;
/// `freezefs_last_freeze.reason`: thawed on request.
pub const FREEZEFS_ENDED_THAWED: c_int = 1;
/// `freezefs_last_freeze.reason`: its timeout passed.
pub const FREEZEFS_ENDED_TIMEOUT: c_int = 2;
/// `freezefs_last_freeze.reason`: another tool thawed it.
pub const FREEZEFS_ENDED_OTHER_TOOL: c_int = 3;
/// `freezefs_last_freeze.reason`: its freezer died before it completed.
pub const FREEZEFS_ENDED_FREEZER_DIED: c_int = 4;
/// `freezefs_last_freeze.reason`: its holder was asked to stop (shutdown,
/// `systemctl stop`) and thawed it.
pub const FREEZEFS_ENDED_HOLDER_STOPPED: c_int = 5;

/// How the last freeze made through freezefs of one filesystem ended,
/// filled by `freezefs_last_freeze()`. A separate struct rather than more
/// fields of `struct freezefs_status`, whose size callers compiled against.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct freezefs_last_freeze {
    /// `FREEZEFS_ENDED_THAWED`, `_TIMEOUT`, `_OTHER_TOOL`, `_FREEZER_DIED`,
    /// `_HOLDER_STOPPED`, or `_UNKNOWN` for a reason a newer holder
    /// recorded.
    pub reason: c_int,
    /// The process that froze it.
    pub pid: c_int,
    /// Its timeout in seconds; -1 for none.
    pub timeout: c_int,
    /// When it was frozen: seconds since the epoch.
    pub frozen_since: c_longlong,
    /// When it was frozen: the nanoseconds part.
    pub frozen_since_nsec: c_long,
    /// When it ended: seconds since the epoch.
    pub ended_at: c_longlong,
    /// When it ended: the nanoseconds part.
    pub ended_at_nsec: c_long,
    /// The mount point it was frozen through, NUL-terminated.
    pub mount_point: [c_char; FREEZEFS_PATH_MAX],
}

fn since_epoch(time: std::time::SystemTime) -> (c_longlong, c_long) {
    let d = time
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    (
        d.as_secs() as c_longlong,
        c_long::from(d.subsec_nanos() as i32),
    )
}

pub(crate) fn fill_last(out: &mut freezefs_last_freeze, last: &LastFreeze) {
    out.reason = match last.reason {
        EndReason::Thawed => FREEZEFS_ENDED_THAWED,
        EndReason::Timeout => FREEZEFS_ENDED_TIMEOUT,
        EndReason::OtherTool => FREEZEFS_ENDED_OTHER_TOOL,
        EndReason::FreezerDied => FREEZEFS_ENDED_FREEZER_DIED,
        EndReason::HolderStopped => FREEZEFS_ENDED_HOLDER_STOPPED,
        EndReason::Unrecognized => FREEZEFS_ENDED_UNKNOWN,
    };
    out.pid = last.pid as c_int;
    out.timeout = match last.timeout {
        Timeout::Seconds(n) => n.min(i32::MAX as u32) as c_int,
        _ => -1,
    };
    (out.frozen_since, out.frozen_since_nsec) = since_epoch(last.frozen_since);
    (out.ended_at, out.ended_at_nsec) = since_epoch(last.ended_at);
    copy_cstr(
        &mut out.mount_point,
        last.mount_point.as_os_str().as_bytes(),
    );
}
