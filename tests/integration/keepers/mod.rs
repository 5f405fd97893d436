//! A freeze ends by its deadline however its keepers die (issue 18): the
//! caller's cgroup killed or frozen ([`callers`]), the holder killed,
//! stopped or told to stop ([`holders`]), on real ext4, xfs and btrfs. Each
//! trial prints one line `keepers: SCENARIO FS past_deadline_ms=N`.

mod callers;
mod holders;

use crate::support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{Scratch, live_holders, wait_until, with_env};

/// Trials per scenario and filesystem.
pub(super) const TRIALS: usize = 3;
/// The promise: thawed within this much of the deadline.
const LATE_LIMIT_MS: i64 = 1000;

/// A cgroup v2 of the test's own, under the writable cgroup2 mount, for
/// processes the test started; killed and removed on drop.
pub(super) struct TestCgroup(PathBuf, std::cell::RefCell<Vec<Child>>);

impl TestCgroup {
    pub(super) fn new() -> TestCgroup {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        let root = mounts
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                (f.get(2) == Some(&"cgroup2")).then(|| PathBuf::from(f[1]))
            })
            .expect("cgroup v2 is not mounted: these tests cannot run");
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = root.join(format!("freezefs-test.{}.{n}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        TestCgroup(dir, Default::default())
    }

    pub(super) fn write(&self, file: &str, value: &str) {
        std::fs::write(self.0.join(file), value).unwrap();
    }

    /// Runs `script` under sh inside this cgroup, then sleeps on (a
    /// service's main process); returns once it said "ready".
    pub(super) fn run(&self, fs: &Scratch, script: &str) -> u32 {
        self.run_until(
            fs,
            &format!("{script} && echo ready && exec sleep 60"),
            "ready",
        )
    }

    /// Runs `script` under sh inside this cgroup; returns once its first
    /// line on stdout is `said`.
    pub(super) fn run_until(&self, fs: &Scratch, script: &str, expected: &str) -> u32 {
        use std::io::{BufRead, BufReader};
        let procs = self.0.join("cgroup.procs");
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("echo $$ > {} && {script}", procs.display()))
            .stdout(Stdio::piped());
        let mut child = with_env(&mut cmd, fs).spawn().unwrap();
        let mut said = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut said)
            .unwrap();
        assert_eq!(said.trim(), expected, "the caller did not freeze");
        let pid = child.id();
        self.1.borrow_mut().push(child);
        pid
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("cgroup.freeze"), "0");
        let _ = std::fs::write(self.0.join("cgroup.kill"), "1");
        for mut child in self.1.borrow_mut().drain(..) {
            let _ = child.wait();
        }
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            std::fs::remove_dir(&self.0).is_ok()
        });
    }
}

pub(super) fn boot_ns() -> i64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// The recorded deadline of the one freeze on record (`CLOCK_BOOTTIME`).
pub(super) fn deadline_ns(fs: &Scratch) -> i64 {
    let record = fs.record_text().expect("a freeze on record");
    record
        .lines()
        .find_map(|l| l.strip_prefix("deadline_boot_ns "))
        .and_then(|v| v.parse().ok())
        .expect("a timed freeze")
}

/// Waits for the kernel to say thawed; returns how late that was past
/// `deadline` in ms (negative: before it), and fails past the promise.
pub(super) fn thawed_late_ms(fs: &Scratch, deadline: i64, scenario: &str) -> i64 {
    let limit = Duration::from_millis(((deadline - boot_ns()).max(0) / 1_000_000) as u64 + 3000);
    let thawed = wait_until(limit, Duration::from_millis(10), || !fs.kernel_frozen());
    let late = (boot_ns() - deadline) / 1_000_000;
    eprintln!(
        "keepers: {scenario} {} past_deadline_ms={late}",
        fs.kind.name()
    );
    assert!(
        thawed,
        "{scenario}: still frozen {late} ms past the deadline"
    );
    assert!(late <= LATE_LIMIT_MS, "{scenario}: thawed {late} ms late");
    late
}

/// `freezefs -t TIMEOUT MNT` through the command, with `fs`'s state
/// directory and `env` besides; it must succeed.
pub(super) fn freeze_by_command(
    fs: &Scratch,
    mnt: &std::path::Path,
    timeout: &str,
    env: &[(&str, &std::ffi::OsStr)],
) {
    let mut cmd = Command::new(freezefs_bin());
    let mut cmd = with_env(cmd.args(["-t", timeout]).arg(mnt), fs);
    cmd.envs(env.iter().copied());
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{out:?}");
}

pub(super) fn freezefs_bin() -> &'static str {
    crate::support::freezefs_exe()
}

pub(super) fn holder_of(fs: &Scratch) -> u32 {
    let holders = live_holders(fs);
    assert_eq!(holders.len(), 1, "holders: {holders:?}");
    holders[0]
}

pub(super) fn signal(pid: u32, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    let _ = rustix::process::kill_process(pid, sig);
}
