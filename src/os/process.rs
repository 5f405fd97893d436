//! Facts about processes and clocks that records carry.

use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use rustix::time::{ClockId, clock_gettime};

/// `CLOCK_BOOTTIME` in nanoseconds: deadlines keep counting through suspend.
pub(crate) fn now_boot_ns() -> u64 {
    let ts = clock_gettime(ClockId::Boottime);
    (ts.tv_sec as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// Wall-clock time in nanoseconds since the epoch.
pub(crate) fn now_unix_ns() -> u64 {
    let ts = clock_gettime(ClockId::Realtime);
    (ts.tv_sec.max(0) as u64).saturating_mul(1_000_000_000) + ts.tv_nsec as u64
}

/// When `boot_ns` (`CLOCK_BOOTTIME`, past or future) falls on the wall
/// clock, as it reads now.
pub(crate) fn wall_time_of(boot_ns: u64) -> SystemTime {
    let now_boot = now_boot_ns();
    let now = SystemTime::now();
    if boot_ns >= now_boot {
        now + std::time::Duration::from_nanos(boot_ns - now_boot)
    } else {
        now - std::time::Duration::from_nanos(now_boot - boot_ns)
    }
}

/// `2026-11-21T05:57:01Z` for a wall-clock time (UTC, no time zone database).
pub fn iso_utc(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's days-to-civil, for the proleptic Gregorian calendar.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// This boot's id (`/proc/sys/kernel/random/boot_id`); "unknown" without /proc.
pub(crate) fn boot_id() -> &'static str {
    static BOOT_ID: OnceLock<String> = OnceLock::new();
    BOOT_ID.get_or_init(|| {
        crate::os::small_file::read_proc("/proc/sys/kernel/random/boot_id")
            .map(|s| String::from_utf8_lossy(&s).trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string())
    })
}

/// A running (not zombie) process's start time in clock ticks since boot
/// (`/proc/PID/stat` field 22); `None` when no such process runs.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    start_time_in(&format!("/proc/{pid}/stat"))
}

/// The calling thread's start time in the terms of [`start_time`] (clock
/// ticks since boot), from the boot clock, for a thread that asks as it
/// starts: the tick the kernel noted, or the next when one fell in between
/// (compare with [`same_start`]). A new thread's `/proc` entry costs tens
/// of microseconds to create; the holder starts a thread per freeze.
pub(crate) fn start_time_now() -> u64 {
    // The clock ticks /proc counts in (the auxiliary vector's AT_CLKTCK).
    let ticks_per_s = rustix::param::clock_ticks_per_second().max(1);
    now_boot_ns() / (1_000_000_000 / ticks_per_s)
}

/// Whether two start times (see [`start_time`]) name one start: equal, or
/// one tick apart (see [`start_time_now`]). A thread id is not handed out
/// again within a tick.
pub(crate) fn same_start(a: u64, b: u64) -> bool {
    a.abs_diff(b) <= 1
}

fn start_time_in(stat_path: &str) -> Option<u64> {
    start_time_in_stat(&crate::os::small_file::read_proc(stat_path).ok()?)
}

/// [`start_time`] from the text of a `stat` file of `/proc`, a process's
/// or a thread's.
pub(crate) fn start_time_in_stat(stat: &[u8]) -> Option<u64> {
    // The command name is in parentheses and may hold anything: skip past
    // the last ')'.
    let after = &stat[stat.iter().rposition(|&b| b == b')')? + 1..];
    let mut fields = std::str::from_utf8(after).ok()?.split_ascii_whitespace();
    let state = fields.next()?; // field 3
    if state == "Z" || state == "X" {
        return None;
    }
    fields.nth(18)?.parse().ok() // field 22
}

/// True while the process that `pid` and `start` name is running.
pub(crate) fn is_alive(pid: u32, start: u64) -> bool {
    start_time(pid) == Some(start)
}

/// This process's id and start time, read once per process (a forked
/// child has another pid, and reads its own). Atomics, not a lock: a
/// forked child must never find it held.
pub(crate) fn current() -> (u32, u64) {
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
    static PID: AtomicU32 = AtomicU32::new(0);
    static START: AtomicU64 = AtomicU64::new(0);
    let pid = std::process::id();
    if PID.load(Ordering::Acquire) == pid {
        return (pid, START.load(Ordering::Acquire));
    }
    let start = start_time(pid).unwrap_or(0);
    START.store(start, Ordering::Release);
    PID.store(pid, Ordering::Release);
    (pid, start)
}

/// 128 fresh random bits (one system call).
pub(crate) fn fresh_u128() -> u128 {
    let mut bytes = [0u8; 16];
    if rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty()).is_err() {
        return u128::from(fresh_generation()) << 64 | u128::from(fresh_generation());
    }
    u128::from_ne_bytes(bytes)
}

/// A fresh random 64-bit number, never 0.
pub(crate) fn fresh_generation() -> u64 {
    let mut bytes = [0u8; 8];
    if rustix::rand::getrandom(&mut bytes, rustix::rand::GetRandomFlags::empty()).is_err() {
        // No entropy syscall: time and pid still make a new value per freeze.
        bytes = (now_boot_ns() ^ (u64::from(std::process::id()) << 40)).to_ne_bytes();
    }
    u64::from_ne_bytes(bytes).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_wrong_start_time_is_not() {
        let (pid, start) = current();
        assert!(start > 0);
        assert!(is_alive(pid, start));
        assert!(!is_alive(pid, start + 1));
    }

    #[test]
    fn a_reaped_child_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert_eq!(start_time(pid), None);
    }

    #[test]
    fn generations_differ() {
        assert_ne!(fresh_generation(), fresh_generation());
    }
}
