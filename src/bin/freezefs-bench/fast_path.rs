//! The fast path as a C program sees it: the exported `freezefs()` called
//! from a child process whose state directory is on a tmpfs, on an idle
//! ext4, side by side with the raw ioctls and `statx` in the same process.
//! Medians of [`CYCLES`] cycles and [`QUERIES`] QUERYs, and the system
//! calls of each kind of call, counted by the kernel (`perf_event_open` on
//! the `raw_syscalls:sys_enter` tracepoint): the caller's, and its
//! holder's (the process and every thread it starts while counted).
#![allow(unsafe_code)] // the C ABI itself, and perf_event_open

use std::ffi::{CString, c_char, c_int, c_ulong};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::scratch::{FIFREEZE, FITHAW, ScratchFs, raw_ioctl};

unsafe extern "C" {
    fn freezefs(mount_point: *mut c_char, option_flags: c_ulong, timeout: c_int) -> c_int;
}

const FS_Q_THAW: c_ulong = 0;
const FS_Q_FREEZE: c_ulong = 1;
const FS_Q_QUERY: c_ulong = 2;

/// Cycles per figure, as the goals are stated.
pub(crate) const CYCLES: usize = 40;
/// QUERYs per figure.
pub(crate) const QUERIES: usize = 2000;
/// Calls per system-call count.
const COUNTED: u64 = 20;

/// The four figures and what they stand beside, in microseconds, and the
/// system calls per call (caller, holder) where the kernel counted them.
#[derive(Debug, Clone)]
pub(crate) struct FastPath {
    pub raw_cycle: f64,
    pub untimed_cycle: f64,
    pub timed_cycle: f64,
    pub statx: f64,
    pub query_frozen: f64,
    pub query_thawed: f64,
    /// (call, caller's system calls, holder's system calls) per call.
    pub syscalls: Vec<(String, f64, f64)>,
    /// Whether the holder's system calls were counted.
    pub holder_counted: bool,
}

/// The goals of the fast path: (what, measured, met).
pub(crate) fn goals(f: &FastPath) -> Vec<(String, String, bool)> {
    let ratio = |x: f64| x / f.raw_cycle;
    vec![
        (
            "C ABI: FREEZE + THAW, no timeout, <= 1.3x raw".into(),
            format!(
                "{:.0} us vs {:.0} us = {:.2}x",
                f.untimed_cycle,
                f.raw_cycle,
                ratio(f.untimed_cycle)
            ),
            ratio(f.untimed_cycle) <= 1.3,
        ),
        (
            "C ABI: FREEZE + THAW, 60 s timeout, <= 1.5x raw".into(),
            format!(
                "{:.0} us vs {:.0} us = {:.2}x",
                f.timed_cycle,
                f.raw_cycle,
                ratio(f.timed_cycle)
            ),
            ratio(f.timed_cycle) <= 1.5,
        ),
        (
            "C ABI: QUERY of a freezefs freeze <= 5 us".into(),
            format!("{:.1} us (statx {:.1} us)", f.query_frozen, f.statx),
            f.query_frozen <= 5.0,
        ),
        (
            "C ABI: QUERY of a thawed filesystem, no record, <= 50 us".into(),
            format!("{:.1} us", f.query_thawed),
            f.query_thawed <= 50.0,
        ),
    ]
}

/// The section of the report.
pub(crate) fn table(f: &FastPath) -> String {
    let mut t = format!(
        "\nFast path through the C ABI (state on tmpfs, idle ext4; medians of {CYCLES} cycles, {QUERIES} QUERYs):\n"
    );
    let rows = [
        ("raw FIFREEZE + FITHAW", f.raw_cycle),
        ("freezefs FREEZE + THAW, no timeout", f.untimed_cycle),
        ("freezefs FREEZE + THAW, 60 s timeout", f.timed_cycle),
        ("statx of the mount point", f.statx),
        ("QUERY of a freezefs freeze", f.query_frozen),
        ("QUERY of a thawed filesystem, no record", f.query_thawed),
    ];
    for (name, us) in rows {
        t.push_str(&format!("  {name:<42} {us:>8.1} us\n"));
    }
    if f.syscalls.is_empty() {
        t.push_str("  system calls: not counted (no tracefs, or perf_event_open refused)\n");
    } else {
        t.push_str("  system calls per call:                     caller   holder\n");
        for (call, caller, holder) in &f.syscalls {
            let holder = if f.holder_counted {
                format!("{holder:>6.1}")
            } else {
                "     -".to_string()
            };
            t.push_str(&format!("  {call:<42} {caller:>6.1}   {holder}\n"));
        }
    }
    t
}

/// Runs the measurement in a child process (the C ABI reads its settings
/// from the environment) and reads its figures.
pub(crate) fn measure(fs: &ScratchFs, state_dir: &Path) -> FastPath {
    fs.settle();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(&exe)
        .arg("--fast-path-child")
        .arg(&fs.mnt)
        .env("FREEZEFS_RUNDIR", state_dir)
        .env(
            "FREEZEFS_HOLDER",
            exe.parent().unwrap().join("freezefs-holder"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "fast path child: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&String::from_utf8_lossy(&out.stdout))
}

fn parse(text: &str) -> FastPath {
    let mut f = FastPath {
        raw_cycle: f64::NAN,
        untimed_cycle: f64::NAN,
        timed_cycle: f64::NAN,
        statx: f64::NAN,
        query_frozen: f64::NAN,
        query_thawed: f64::NAN,
        syscalls: Vec::new(),
        holder_counted: true,
    };
    for line in text.lines() {
        let words: Vec<&str> = line.split('\t').collect();
        let num = |i: usize| {
            words
                .get(i)
                .and_then(|w| w.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        match words.first().copied() {
            Some("raw") => f.raw_cycle = num(1),
            Some("untimed") => f.untimed_cycle = num(1),
            Some("timed") => f.timed_cycle = num(1),
            Some("statx") => f.statx = num(1),
            Some("query_frozen") => f.query_frozen = num(1),
            Some("query_thawed") => f.query_thawed = num(1),
            Some("syscalls") => f.syscalls.push((words[1].to_string(), num(2), num(3))),
            Some("no_holder_count") => f.holder_counted = false,
            _ => {}
        }
    }
    f
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn call(mnt: &CString, flags: c_ulong, timeout: c_int) -> c_int {
    // SAFETY: `mnt` is a NUL-terminated string that outlives the call,
    // which does not keep it.
    unsafe { freezefs(mnt.as_ptr().cast_mut(), flags, timeout) }
}

fn must(what: &str, got: c_int, want: c_int) {
    assert_eq!(
        got,
        want,
        "{what}: {got} ({})",
        std::io::Error::last_os_error()
    );
}

fn timed_us(n: usize, mut f: impl FnMut()) -> Vec<f64> {
    (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect()
}

/// A count of system calls entered by one task (and, with `inherit`, the
/// threads and children it starts while counted).
struct SyscallCounter(OwnedFd);

impl SyscallCounter {
    fn new(pid: i32, inherit: bool) -> Option<SyscallCounter> {
        let id: u64 =
            std::fs::read_to_string("/sys/kernel/tracing/events/raw_syscalls/sys_enter/id")
                .or_else(|_| {
                    std::fs::read_to_string(
                        "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id",
                    )
                })
                .ok()?
                .trim()
                .parse()
                .ok()?;
        // struct perf_event_attr, PERF_ATTR_SIZE_VER0 (64 bytes): type
        // PERF_TYPE_TRACEPOINT, size, config (the tracepoint), and the flag
        // bits word (bit 1: inherit).
        let mut attr = [0u64; 8];
        attr[0] = 2 | (64u64 << 32);
        attr[1] = id;
        attr[5] = if inherit { 1 << 1 } else { 0 };
        // SAFETY: attr is a valid, zero-filled perf_event_attr of the size
        // it states, alive across the call; the other arguments are plain
        // integers (cpu -1: any; no group; PERF_FLAG_FD_CLOEXEC).
        let fd = unsafe {
            libc::syscall(
                libc::SYS_perf_event_open,
                attr.as_ptr(),
                pid,
                -1 as c_int,
                -1 as c_int,
                8 as c_ulong,
            )
        };
        if fd < 0 {
            return None;
        }
        // SAFETY: perf_event_open just returned this fd, owned by no one else.
        Some(SyscallCounter(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    fn read(&self) -> u64 {
        let mut bytes = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `bytes`, alive across the call.
        let n = unsafe { libc::read(self.0.as_raw_fd(), bytes.as_mut_ptr().cast(), 8) };
        if n == 8 { u64::from_ne_bytes(bytes) } else { 0 }
    }
}

/// Caller's and holder's system calls per call of `f`, over [`COUNTED`]
/// calls; the counting itself is taken off (the caller's counts are read
/// innermost: only the second read's own call falls between them).
fn count(
    caller: &SyscallCounter,
    holder: Option<&SyscallCounter>,
    mut f: impl FnMut(),
) -> (f64, f64) {
    let h0 = holder.map_or(0, SyscallCounter::read);
    let c0 = caller.read();
    for _ in 0..COUNTED {
        f();
    }
    let c1 = caller.read();
    let h1 = holder.map_or(0, SyscallCounter::read);
    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / COUNTED as f64;
    (per(c0, c1) - 1.0 / COUNTED as f64, per(h0, h1))
}

/// `--fast-path-child MNT`: the measurement, figures on stdout.
pub(crate) fn child(mnt: &Path) {
    let c_mnt = CString::new(mnt.as_os_str().as_encoded_bytes()).unwrap();
    let root = std::fs::File::open(mnt).unwrap();
    let raw_cycle = || {
        raw_ioctl(&root, FIFREEZE).unwrap();
        raw_ioctl(&root, FITHAW).unwrap();
    };
    let cycle = |timeout: c_int| {
        must("FREEZE", call(&c_mnt, FS_Q_FREEZE, timeout), 0);
        must("THAW", call(&c_mnt, FS_Q_THAW, 0), 0);
    };
    for _ in 0..5 {
        raw_cycle();
        cycle(-1);
        cycle(60);
    }
    println!("raw\t{}", median(timed_us(CYCLES, raw_cycle)));
    println!("untimed\t{}", median(timed_us(CYCLES, || cycle(-1))));
    println!("timed\t{}", median(timed_us(CYCLES, || cycle(60))));

    must("FREEZE", call(&c_mnt, FS_Q_FREEZE, 60), 0);
    let query_frozen = timed_us(QUERIES, || must("QUERY", call(&c_mnt, FS_Q_QUERY, 0), 1));
    let statx = timed_us(QUERIES, || {
        let _ = rustix::fs::statx(
            rustix::fs::CWD,
            mnt,
            rustix::fs::AtFlags::empty(),
            rustix::fs::StatxFlags::BASIC_STATS,
        );
    });
    must("THAW", call(&c_mnt, FS_Q_THAW, 0), 0);
    let query_thawed = timed_us(QUERIES, || must("QUERY", call(&c_mnt, FS_Q_QUERY, 0), 0));
    println!("statx\t{}", median(statx));
    println!("query_frozen\t{}", median(query_frozen));
    println!("query_thawed\t{}", median(query_thawed));

    let Some(caller) = SyscallCounter::new(0, false) else {
        return;
    };
    // The holder counted is the one keeping a freeze now; the counts
    // follow at once, so that it is still the one serving them.
    must("FREEZE", call(&c_mnt, FS_Q_FREEZE, 60), 0);
    let holder = freezefs::status(mnt)
        .ok()
        .and_then(|s| s.holder_pid)
        .and_then(|pid| SyscallCounter::new(pid as i32, true));
    must("THAW", call(&c_mnt, FS_Q_THAW, 0), 0);
    let mut rows = Vec::new();
    for (name, timeout) in [
        ("FREEZE + THAW, no timeout", -1),
        ("FREEZE + THAW, 60 s timeout", 60),
    ] {
        rows.push((name, count(&caller, holder.as_ref(), || cycle(timeout))));
    }
    must("FREEZE", call(&c_mnt, FS_Q_FREEZE, 60), 0);
    rows.push((
        "QUERY of a freezefs freeze",
        count(&caller, holder.as_ref(), || {
            call(&c_mnt, FS_Q_QUERY, 0);
        }),
    ));
    must("THAW", call(&c_mnt, FS_Q_THAW, 0), 0);
    rows.push((
        "QUERY of a thawed filesystem",
        count(&caller, holder.as_ref(), || {
            call(&c_mnt, FS_Q_QUERY, 0);
        }),
    ));
    if holder.is_none() {
        println!("no_holder_count");
    }
    for (name, (caller, holder)) in rows {
        println!("syscalls\t{name}\t{caller}\t{holder}");
    }
}
