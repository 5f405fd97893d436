//! The measurements, each side by side with the raw ioctls (and util-linux
//! fsfreeze where a command is the natural rival).

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, UNIX_EPOCH};

use freezefs::{Freezer, Timeout};

use crate::scratch::{FIFREEZE, FITHAW, ScratchFs, raw_ioctl, run};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Method {
    Raw,
    Fsfreeze,
    Freezefs,
}

impl Method {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Method::Raw => "raw FIFREEZE",
            Method::Fsfreeze => "fsfreeze -f",
            Method::Freezefs => "freezefs",
        }
    }

    fn freeze(self, fs: &ScratchFs, freezer: &Freezer) {
        match self {
            Method::Raw => raw_ioctl(fs.root(), FIFREEZE).unwrap(),
            Method::Fsfreeze => run(Command::new("fsfreeze").arg("-f").arg(&fs.mnt)),
            Method::Freezefs => freezer.freeze(&fs.mnt, Timeout::Never).unwrap(),
        }
    }

    fn thaw(self, fs: &ScratchFs, freezer: &Freezer) {
        match self {
            Method::Raw => raw_ioctl(fs.root(), FITHAW).unwrap(),
            Method::Fsfreeze => run(Command::new("fsfreeze").arg("-u").arg(&fs.mnt)),
            Method::Freezefs => freezer.thaw(&fs.mnt).unwrap(),
        }
    }
}

pub(crate) struct Stall {
    pub method: Method,
    pub dirty_mib: u64,
    /// Longest gap a writer appending every 0.5 ms saw.
    pub stall_ms: f64,
    /// From the call to frozen (the call's return).
    pub to_frozen_ms: f64,
}

/// Writer stall: a writer appends 4 KiB every 0.5 ms while the filesystem,
/// with `dirty_mib` MiB of dirty page cache, is frozen and thawed at once.
pub(crate) fn writer_stall(
    fs: &ScratchFs,
    freezer: &Freezer,
    method: Method,
    dirty_mib: u64,
) -> Stall {
    fs.settle();
    fs.dirty(dirty_mib);
    let stop = Arc::new(AtomicBool::new(false));
    let times = Arc::new(Mutex::new(Vec::<Instant>::with_capacity(20_000)));
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(fs.mnt.join("log"))
        .unwrap();
    let writer = {
        let (stop, times) = (Arc::clone(&stop), Arc::clone(&times));
        thread::spawn(move || {
            let block = [0x42u8; 4096];
            while !stop.load(Ordering::Relaxed) {
                log.write_all(&block).unwrap();
                times.lock().unwrap().push(Instant::now());
                thread::sleep(Duration::from_micros(500));
            }
        })
    };
    thread::sleep(Duration::from_millis(100));
    let start = Instant::now();
    method.freeze(fs, freezer);
    let frozen = Instant::now();
    method.thaw(fs, freezer);
    thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let times = times.lock().unwrap();
    let stall = times
        .windows(2)
        .filter(|w| w[1] >= start)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    Stall {
        method,
        dirty_mib,
        stall_ms: ms(stall),
        to_frozen_ms: ms(frozen - start),
    }
}

pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Sorted samples in microseconds.
pub(crate) struct Samples(pub Vec<f64>);

impl Samples {
    pub(crate) fn collect(n: usize, mut f: impl FnMut()) -> Samples {
        let mut v: Vec<f64> = (0..n)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1e6
            })
            .collect();
        v.sort_by(f64::total_cmp);
        Samples(v)
    }

    pub(crate) fn quantile(&self, q: f64) -> f64 {
        let i = ((self.0.len() as f64 - 1.0) * q).round() as usize;
        self.0[i]
    }

    pub(crate) fn mean(&self) -> f64 {
        self.0.iter().sum::<f64>() / self.0.len() as f64
    }

    pub(crate) fn max(&self) -> f64 {
        *self.0.last().unwrap()
    }
}

/// Freeze+thaw cycles on an idle filesystem.
pub(crate) fn cycles(fs: &ScratchFs, freezer: &Freezer, n: usize) -> Vec<(&'static str, Samples)> {
    fs.settle();
    let raw = Samples::collect(n, || {
        raw_ioctl(fs.root(), FIFREEZE).unwrap();
        raw_ioctl(fs.root(), FITHAW).unwrap();
    });
    let untimed = Samples::collect(n, || {
        freezer.freeze(&fs.mnt, Timeout::Never).unwrap();
        freezer.thaw(&fs.mnt).unwrap();
    });
    let timed = Samples::collect(n, || {
        freezer.freeze(&fs.mnt, Timeout::Seconds(60)).unwrap();
        freezer.thaw(&fs.mnt).unwrap();
    });
    let fsfreeze = Samples::collect((n / 10).max(3), || {
        run(Command::new("fsfreeze").arg("-f").arg(&fs.mnt));
        run(Command::new("fsfreeze").arg("-u").arg(&fs.mnt));
    });
    vec![
        ("raw FIFREEZE+FITHAW", raw),
        ("freezefs untimed", untimed),
        ("freezefs timed (thread + holder)", timed),
        ("fsfreeze -f / -u", fsfreeze),
    ]
}

/// Names of the hook figures in the cycle table.
pub(crate) const EMPTY_HOOK_DIR: &str = "freezefs untimed, empty hook directory";
pub(crate) const ONE_HOOK: &str = "freezefs untimed, one hook";
pub(crate) const HOOK_ALONE: &str = "that hook run alone (spawn+wait)";

/// What hooks add to an untimed cycle: with an empty hook directory, with
/// one hook (`#!/bin/sh`, `exit 0`), and that hook run alone. A cycle with
/// a hook runs it twice (freeze, then thaw in the holder, which the next
/// freeze's hooks wait for).
pub(crate) fn hook_cycles(
    fs: &ScratchFs,
    freezer: &Freezer,
    work: &Path,
    n: usize,
) -> Vec<(&'static str, Samples)> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    let empty = work.join("hooks-empty");
    let one = work.join("hooks-one");
    for dir in [&empty, &one] {
        std::fs::create_dir_all(dir).unwrap();
        mode(dir, 0o755);
    }
    let hook = one.join("10-nothing");
    std::fs::write(&hook, "#!/bin/sh\nexit 0\n").unwrap();
    mode(&hook, 0o755);
    fs.settle();
    let cycle = |dir: &Path| {
        let f = freezer.clone().with_hooks_dir(dir);
        Samples::collect(n, || {
            f.freeze(&fs.mnt, Timeout::Never).unwrap();
            f.thaw(&fs.mnt).unwrap();
        })
    };
    let with_empty = cycle(&empty);
    let with_one = cycle(&one);
    let alone = Samples::collect(n, || {
        let status = Command::new(&hook)
            .args(["freeze", "/"])
            .env_clear()
            .status()
            .unwrap();
        assert!(status.success());
    });
    vec![
        (EMPTY_HOOK_DIR, with_empty),
        (ONE_HOOK, with_one),
        (HOOK_ALONE, alone),
    ]
}

fn now_boot() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// |thaw - deadline| of 1 s freezes, in microseconds: the deadline from the
/// status right after the freeze, the thaw when a blocked writer gets through.
pub(crate) fn timeout_accuracy(fs: &ScratchFs, freezer: &Freezer, trials: usize) -> Samples {
    let mut errors = Vec::with_capacity(trials);
    for i in 0..trials {
        freezer.freeze(&fs.mnt, Timeout::Seconds(1)).unwrap();
        let left = freezer.status(&fs.mnt).unwrap().time_left.unwrap();
        let deadline = now_boot() + left;
        let path = fs.mnt.join(format!("t{i}"));
        let done = thread::spawn(move || {
            std::fs::write(path, b"x").unwrap();
            now_boot()
        });
        let thawed = done.join().unwrap();
        let error = thawed.abs_diff(deadline);
        errors.push(error.as_secs_f64() * 1e6);
    }
    errors.sort_by(f64::total_cmp);
    Samples(errors)
}

/// Skew (first to last FIFREEZE) of freezing several filesystems with
/// `dirty_mib` each: freezefs_all, and a loop of fsfreeze -f. Milliseconds.
pub(crate) fn skew(
    filesystems: &[ScratchFs],
    freezer: &Freezer,
    dirty_mib: u64,
) -> (f64, f64, f64) {
    for fs in filesystems {
        fs.settle();
        fs.dirty(dirty_mib);
    }
    let paths: Vec<&Path> = filesystems.iter().map(|f| f.mnt.as_path()).collect();
    let start = Instant::now();
    freezer.freeze_all(&paths, Timeout::Seconds(60)).unwrap();
    let call_ms = ms(start.elapsed());
    let since: Vec<f64> = paths
        .iter()
        .map(|p| {
            let t = freezer.status(p).unwrap().frozen_since.unwrap();
            t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64() * 1e3
        })
        .collect();
    let ours = since.iter().cloned().fold(f64::MIN, f64::max)
        - since.iter().cloned().fold(f64::MAX, f64::min);
    freezer.thaw_all(&paths).unwrap();

    for fs in filesystems {
        fs.settle();
        fs.dirty(dirty_mib);
    }
    let done: Vec<Instant> = paths
        .iter()
        .map(|p| {
            run(Command::new("fsfreeze").arg("-f").arg(p));
            Instant::now()
        })
        .collect();
    let theirs = ms(*done.last().unwrap() - done[0]);
    for p in &paths {
        run(Command::new("fsfreeze").arg("-u").arg(p));
    }
    (ours, theirs, call_ms)
}

/// QUERY latency (and, for contrast, a read of mountinfo) at the current
/// number of mounts. Run inside a private mount namespace.
pub(crate) fn query_latency(mnt: &Path, freezer: &Freezer, n: usize) -> (usize, Samples, Samples) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    let query = Samples::collect(n, || {
        freezer.is_frozen(mnt).unwrap();
    });
    let mountinfo = Samples::collect(n.min(200), || {
        let _ = std::fs::read("/proc/self/mountinfo").unwrap();
    });
    (mounts, query, mountinfo)
}

/// Adds bind mounts until the namespace has `total` mounts.
pub(crate) fn add_bind_mounts(dir: &Path, total: usize) {
    let source = dir.join("bind-source");
    std::fs::create_dir_all(&source).unwrap();
    let have = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    let c_source = std::ffi::CString::new(source.as_os_str().as_encoded_bytes()).unwrap();
    for i in have..total {
        let target = dir.join(format!("b{i}"));
        std::fs::create_dir_all(&target).unwrap();
        let c_target = std::ffi::CString::new(target.as_os_str().as_encoded_bytes()).unwrap();
        crate::scratch::bind_mount(&c_source, &c_target)
            .unwrap_or_else(|e| panic!("bind mount {i}: {e}"));
    }
}

/// What watching freezes costs, and how soon another tool's thaw is seen.
pub(crate) struct Truth {
    /// QUERY of a thawed filesystem with no record, its holder running (us).
    pub(crate) probe_warm: Samples,
    /// The same when a holder must start first (us).
    pub(crate) probe_cold: Samples,
    /// From another tool's FITHAW until QUERY says 0 (us).
    pub(crate) other_thaw_seen: Samples,
}

/// Kernel truth on an idle filesystem: QUERY answered by the holder's probe
/// (warm, then with a holder to start), and another tool's thaw of a
/// freezefs freeze, timed until QUERY stops saying frozen.
pub(crate) fn kernel_truth(fs: &ScratchFs, freezer: &Freezer, n: usize, trials: usize) -> Truth {
    fs.settle();
    assert!(!freezer.is_frozen(&fs.mnt).unwrap());
    let probe_warm = Samples::collect(n, || {
        assert!(!freezer.is_frozen(&fs.mnt).unwrap());
    });
    let mut cold = Vec::with_capacity(trials);
    for _ in 0..trials {
        // Long enough for the idle holder to exit (it lingers 50 ms).
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        assert!(!freezer.is_frozen(&fs.mnt).unwrap());
        cold.push(t.elapsed().as_secs_f64() * 1e6);
    }
    cold.sort_by(f64::total_cmp);
    let probe_cold = Samples(cold);
    let mut seen = Vec::with_capacity(trials);
    for _ in 0..trials {
        freezer.freeze(&fs.mnt, Timeout::Seconds(60)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let t = Instant::now();
        raw_ioctl(fs.root(), FITHAW).unwrap();
        while freezer.is_frozen(&fs.mnt).unwrap() {}
        seen.push(t.elapsed().as_secs_f64() * 1e6);
        // THAW now only says the freeze ended (EALREADY).
        let _ = freezer.thaw(&fs.mnt);
    }
    seen.sort_by(f64::total_cmp);
    Truth {
        probe_warm,
        probe_cold,
        other_thaw_seen: Samples(seen),
    }
}

/// `freezefs -l` (list) latency at the current number of mounts, which it
/// reads and probes (one superblock each). Run in a private mount namespace.
pub(crate) fn list_latency(freezer: &Freezer, n: usize) -> (usize, Samples) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .count();
    let list = Samples::collect(n, || {
        freezer.list().unwrap();
    });
    (mounts, list)
}
