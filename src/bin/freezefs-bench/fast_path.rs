//! The fast path as a C program sees it: the exported `freezefs()` called
//! from a child process whose state directory is on a tmpfs, on an idle
//! ext4, side by side with the raw ioctls and `statx` in the same process.
//! Medians of [`CYCLES`] cycles of each kind, taken in turn, and of
//! [`QUERIES`] QUERYs, and the system calls and CPU time of each kind of
//! call, counted by the kernel (`perf_event_open` on the
//! `raw_syscalls:sys_enter` tracepoint and the task clock): the caller's,
//! and its holder's (the process and every thread it starts while
//! counted). On a machine of two CPUs, most of the holder's time adds to
//! the caller's: the cycle waits for it.
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
    /// What each call costs the caller and the holder, per call.
    pub syscalls: Vec<CallCost>,
    /// Whether the holder's system calls were counted.
    pub holder_counted: bool,
}

/// What one kind of call costs, per call, as the kernel counted it.
#[derive(Debug, Clone)]
pub(crate) struct CallCost {
    pub call: String,
    pub caller_syscalls: f64,
    pub holder_syscalls: f64,
    /// CPU time, in microseconds.
    pub caller_cpu_us: f64,
    pub holder_cpu_us: f64,
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
        t.push_str(
            "  per call:                            system calls      CPU time (us)\n                                           caller  holder    caller  holder\n",
        );
        // "-": not counted (no holder count, or a QUERY's CPU time).
        let cell = |x: f64, shown: bool, digits: usize| {
            if shown && !x.is_nan() {
                format!("{x:>6.digits$}")
            } else {
                "     -".to_string()
            }
        };
        for c in &f.syscalls {
            let holder_calls = cell(c.holder_syscalls, f.holder_counted, 1);
            let caller_cpu = cell(c.caller_cpu_us, true, 0);
            let holder_cpu = cell(c.holder_cpu_us, f.holder_counted, 0);
            t.push_str(&format!(
                "  {:<40} {:>6.1}  {holder_calls}    {caller_cpu}  {holder_cpu}\n",
                c.call, c.caller_syscalls
            ));
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
            Some("syscalls") => f.syscalls.push(CallCost {
                call: words[1].to_string(),
                caller_syscalls: num(2),
                holder_syscalls: num(3),
                caller_cpu_us: num(4),
                holder_cpu_us: num(5),
            }),
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

/// A kernel counter of one task (and, with `inherit`, of the threads and
/// children it starts while counted): system calls entered, or CPU time.
struct Counter(OwnedFd);

/// `PERF_TYPE_SOFTWARE`, `PERF_COUNT_SW_TASK_CLOCK` (nanoseconds on a CPU).
const TASK_CLOCK: (u64, u64) = (1, 1);
/// `PERF_TYPE_TRACEPOINT`.
const TRACEPOINT: u64 = 2;

impl Counter {
    /// System calls entered (the `raw_syscalls:sys_enter` tracepoint).
    fn syscalls(pid: i32, inherit: bool) -> Option<Counter> {
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
        Counter::open((TRACEPOINT, id), pid, inherit)
    }

    /// Nanoseconds spent on a CPU.
    fn cpu_time(pid: i32, inherit: bool) -> Option<Counter> {
        Counter::open(TASK_CLOCK, pid, inherit)
    }

    fn open((kind, config): (u64, u64), pid: i32, inherit: bool) -> Option<Counter> {
        // struct perf_event_attr, PERF_ATTR_SIZE_VER0 (64 bytes): type,
        // size, config, and the flag bits word (bit 1: inherit).
        let mut attr = [0u64; 8];
        attr[0] = kind | (64u64 << 32);
        attr[1] = config;
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
        Some(Counter(unsafe { OwnedFd::from_raw_fd(fd as i32) }))
    }

    fn read(&self) -> u64 {
        let mut bytes = [0u8; 8];
        // SAFETY: reads at most 8 bytes into `bytes`, alive across the call.
        let n = unsafe { libc::read(self.0.as_raw_fd(), bytes.as_mut_ptr().cast(), 8) };
        if n == 8 { u64::from_ne_bytes(bytes) } else { 0 }
    }
}

/// One kind of call whose cost is counted.
type CountedCall<'a> = Box<dyn Fn() + 'a>;

/// What a pass of the counting counts. One kind at a time: the tracepoint
/// counted on every system call would be counted in the CPU time.
#[derive(Clone, Copy)]
enum Pass {
    Syscalls,
    CpuTime,
}

impl Pass {
    fn counter(self, pid: i32, inherit: bool) -> Option<Counter> {
        match self {
            Pass::Syscalls => Counter::syscalls(pid, inherit),
            Pass::CpuTime => Counter::cpu_time(pid, inherit),
        }
    }
}

/// What [`COUNTED`] calls of `f` count, per call, for the caller and the
/// holder; the counting itself is taken off (the caller's count is read
/// innermost: only the second read's own call falls between them).
fn count(caller: &Counter, holder: Option<&Counter>, mut f: impl FnMut()) -> (f64, f64) {
    let h0 = holder.map_or(0, Counter::read);
    let c0 = caller.read();
    for _ in 0..COUNTED {
        f();
    }
    let c1 = caller.read();
    let h1 = holder.map_or(0, Counter::read);
    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / COUNTED as f64;
    (per(c0, c1), per(h0, h1))
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
    // One of each per round: whatever the machine does meanwhile (the host's
    // writeback, another guest) falls on the three alike.
    let (mut raw, mut untimed, mut timed) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..CYCLES {
        raw.extend(timed_us(1, raw_cycle));
        untimed.extend(timed_us(1, || cycle(-1)));
        timed.extend(timed_us(1, || cycle(60)));
    }
    println!("raw\t{}", median(raw));
    println!("untimed\t{}", median(untimed));
    println!("timed\t{}", median(timed));

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

    let calls: [(&str, CountedCall); 4] = [
        ("FREEZE + THAW, no timeout", Box::new(|| cycle(-1))),
        ("FREEZE + THAW, 60 s timeout", Box::new(|| cycle(60))),
        (
            "QUERY of a freezefs freeze",
            Box::new(|| must("QUERY", call(&c_mnt, FS_Q_QUERY, 0), 1)),
        ),
        (
            "QUERY of a thawed filesystem",
            Box::new(|| must("QUERY", call(&c_mnt, FS_Q_QUERY, 0), 0)),
        ),
    ];
    let mut costs: Vec<CallCost> = calls
        .iter()
        .map(|(name, _)| CallCost {
            call: name.to_string(),
            caller_syscalls: f64::NAN,
            holder_syscalls: f64::NAN,
            caller_cpu_us: f64::NAN,
            holder_cpu_us: f64::NAN,
        })
        .collect();
    let mut holder_counted = true;
    for pass in [Pass::Syscalls, Pass::CpuTime] {
        let Some(caller) = pass.counter(0, false) else {
            continue;
        };
        // The holder counted is the one keeping a freeze now; the counts
        // follow at once, so that it is still the one serving them.
        must("FREEZE", call(&c_mnt, FS_Q_FREEZE, 60), 0);
        let holder = freezefs::status(mnt)
            .ok()
            .and_then(|s| s.holder_pid)
            .and_then(|pid| pass.counter(pid as i32, true));
        holder_counted &= holder.is_some();
        must("THAW", call(&c_mnt, FS_Q_THAW, 0), 0);
        for (i, (name, f)) in calls.iter().enumerate() {
            let frozen = name.contains("freezefs freeze");
            if frozen {
                must("FREEZE", call(&c_mnt, FS_Q_FREEZE, 60), 0);
            }
            let (by_caller, by_holder) = count(&caller, holder.as_ref(), f);
            if frozen {
                must("THAW", call(&c_mnt, FS_Q_THAW, 0), 0);
            }
            let cost = &mut costs[i];
            match pass {
                // Less the second read of the caller's count.
                Pass::Syscalls => {
                    cost.caller_syscalls = by_caller - 1.0 / COUNTED as f64;
                    cost.holder_syscalls = by_holder;
                }
                // A QUERY's few microseconds are within what the counting
                // itself disturbs; its wall time above says what it costs.
                Pass::CpuTime if name.starts_with("QUERY") => {}
                Pass::CpuTime => {
                    cost.caller_cpu_us = by_caller / 1e3;
                    cost.holder_cpu_us = by_holder / 1e3;
                }
            }
        }
    }
    if !holder_counted {
        println!("no_holder_count");
    }
    for c in costs {
        println!(
            "syscalls\t{}\t{}\t{}\t{}\t{}",
            c.call, c.caller_syscalls, c.holder_syscalls, c.caller_cpu_us, c.holder_cpu_us
        );
    }
}
