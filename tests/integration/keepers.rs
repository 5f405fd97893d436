//! A freeze ends by its deadline however its keepers die (issue 18): the
//! caller's cgroup killed or frozen, the holder killed, stopped or told to
//! stop, on real ext4, xfs and btrfs. Each trial prints one line
//! `keepers: SCENARIO FS past_deadline_ms=N` for the closing figures.

use crate::support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{
    Kind, Scratch, Syslog, event, live_holders, on_ext4_xfs_btrfs, program, shim, sigkill,
    wait_until, with_env,
};

/// Trials per scenario and filesystem.
const TRIALS: usize = 3;
/// The promise: thawed within this much of the deadline.
const LATE_LIMIT_MS: i64 = 1000;

/// A cgroup v2 of the test's own, under the writable cgroup2 mount, for
/// processes the test started; killed and removed on drop.
struct TestCgroup(PathBuf, std::cell::RefCell<Vec<Child>>);

impl TestCgroup {
    fn new() -> TestCgroup {
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

    fn write(&self, file: &str, value: &str) {
        std::fs::write(self.0.join(file), value).unwrap();
    }

    /// Runs `script` under sh inside this cgroup, then sleeps on (a
    /// service's main process); returns once it said "ready".
    fn run(&self, fs: &Scratch, script: &str) -> u32 {
        self.run_until(
            fs,
            &format!("{script} && echo ready && exec sleep 60"),
            "ready",
        )
    }

    /// Runs `script` under sh inside this cgroup; returns once its first
    /// line on stdout is `said`.
    fn run_until(&self, fs: &Scratch, script: &str, expected: &str) -> u32 {
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

fn boot_ns() -> i64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// The recorded deadline of the one freeze on record (`CLOCK_BOOTTIME`).
fn deadline_ns(fs: &Scratch) -> i64 {
    let record = fs.record_text().expect("a freeze on record");
    record
        .lines()
        .find_map(|l| l.strip_prefix("deadline_boot_ns "))
        .and_then(|v| v.parse().ok())
        .expect("a timed freeze")
}

/// Waits for the kernel to say thawed; returns how late that was past
/// `deadline` in ms (negative: before it), and fails past the promise.
fn thawed_late_ms(fs: &Scratch, deadline: i64, scenario: &str) -> i64 {
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

fn freezefs_bin() -> &'static str {
    env!("CARGO_BIN_EXE_freezefs")
}

fn holder_of(fs: &Scratch) -> u32 {
    let holders = live_holders(fs);
    assert_eq!(holders.len(), 1, "holders: {holders:?}");
    holders[0]
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    let _ = rustix::process::kill_process(pid, sig);
}

on_ext4_xfs_btrfs! {
    fn a_freeze_ends_by_its_deadline_when_the_callers_cgroup_is_killed(kind) {
        for _ in 0..TRIALS {
            let fs = Scratch::new(kind);
            let cgroup = TestCgroup::new();
            cgroup.run(&fs, &format!("{} -t 2 {}", freezefs_bin(), fs.mnt.display()));
            let deadline = deadline_ns(&fs);
            cgroup.write("cgroup.kill", "1");
            thawed_late_ms(&fs, deadline, "cgroup.kill");
        }
    }
}

on_ext4_xfs_btrfs! {
    fn a_freeze_ends_by_its_deadline_while_the_callers_cgroup_is_frozen(kind) {
        for _ in 0..TRIALS {
            let fs = Scratch::new(kind);
            let cgroup = TestCgroup::new();
            cgroup.run(&fs, &format!("{} -t 2 {}", freezefs_bin(), fs.mnt.display()));
            let deadline = deadline_ns(&fs);
            cgroup.write("cgroup.freeze", "1");
            thawed_late_ms(&fs, deadline, "cgroup.freeze");
        }
    }
}

on_ext4_xfs_btrfs! {
    fn a_freeze_ends_by_its_deadline_when_the_holder_is_killed_and_the_caller_is_gone(kind) {
        for _ in 0..TRIALS {
            let fs = Scratch::new(kind);
            let mut cmd = Command::new(freezefs_bin());
            let out = with_env(cmd.args(["-t", "2"]).arg(&fs.mnt), &fs).output().unwrap();
            assert!(out.status.success(), "{out:?}");
            let deadline = deadline_ns(&fs);
            let holder = holder_of(&fs);
            sigkill(holder);
            thawed_late_ms(&fs, deadline, "holder-sigkill");
        }
    }
}

on_ext4_xfs_btrfs! {
    fn a_freeze_ends_by_its_deadline_when_the_holder_and_the_caller_are_killed_together(kind) {
        for _ in 0..TRIALS {
            let fs = Scratch::new(kind);
            let cgroup = TestCgroup::new();
            let caller = cgroup.run(&fs, &format!("{} -t 2 {}", freezefs_bin(), fs.mnt.display()));
            let deadline = deadline_ns(&fs);
            let holder = holder_of(&fs);
            sigkill(caller);
            sigkill(holder);
            thawed_late_ms(&fs, deadline, "holder-and-caller-sigkill");
        }
    }
}

on_ext4_xfs_btrfs! {
    fn a_freeze_ends_by_its_deadline_when_the_holder_is_stopped(kind) {
        for _ in 0..TRIALS {
            let fs = Scratch::new(kind);
            let mut cmd = Command::new(freezefs_bin());
            let out = with_env(cmd.args(["-t", "2"]).arg(&fs.mnt), &fs).output().unwrap();
            assert!(out.status.success(), "{out:?}");
            let deadline = deadline_ns(&fs);
            let holder = holder_of(&fs);
            signal(holder, rustix::process::Signal::STOP);
            thawed_late_ms(&fs, deadline, "holder-sigstop");
            signal(holder, rustix::process::Signal::CONT);
        }
    }
}

/// A caller blocked writing to the filesystem it froze cannot die when its
/// cgroup is killed; the holder, outside that cgroup, still thaws.
#[test]
fn a_freeze_ends_by_its_deadline_when_a_caller_that_cannot_die_is_in_the_killed_cgroup() {
    for kind in Kind::FREEZABLE {
        let fs = Scratch::new(kind);
        let cgroup = TestCgroup::new();
        let script = format!(
            "exec {} {} 2",
            program("freeze_then_write").display(),
            fs.mnt.display()
        );
        cgroup.run_until(&fs, &script, "frozen");
        let deadline = deadline_ns(&fs);
        cgroup.write("cgroup.kill", "1");
        thawed_late_ms(&fs, deadline, "cgroup.kill-with-blocked-writer");
    }
}

on_ext4_xfs_btrfs! {
    /// util-linux fsfreeze under the shim, in a unit's cgroup that is then
    /// stopped (a hypervisor agent's unit restarted).
    fn a_shim_freeze_ends_by_its_deadline_when_the_tools_cgroup_is_killed(kind) {
        for _ in 0..TRIALS {
            let fs = Scratch::new(kind);
            let cgroup = TestCgroup::new();
            let script = format!(
                "LD_PRELOAD={} FREEZEFS_TIMEOUT=2 fsfreeze -f {}",
                shim().display(),
                fs.mnt.display()
            );
            cgroup.run(&fs, &script);
            let deadline = deadline_ns(&fs);
            cgroup.write("cgroup.kill", "1");
            thawed_late_ms(&fs, deadline, "shim-cgroup.kill");
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP each: every freeze thawed within 1 s, the end
/// remembered as the holder's stop, and THAW then answers EALREADY.
#[test]
fn a_holder_asked_to_stop_thaws_what_it_keeps_within_a_second_and_says_why() {
    use rustix::process::Signal;
    for sig in [Signal::TERM, Signal::INT, Signal::HUP] {
        let fs = Scratch::new(Kind::Ext4);
        let syslog = Syslog::new(&fs.dir);
        let mut cmd = Command::new(freezefs_bin());
        let out = with_env(cmd.args(["-t", "60"]).arg(&fs.mnt), &fs)
            .env("FREEZEFS_SYSLOG_SOCKET", &syslog.path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let holder = holder_of(&fs);
        let asked = boot_ns();
        signal(holder, sig);
        assert!(
            wait_until(Duration::from_secs(1), Duration::from_millis(5), || !fs
                .kernel_frozen()),
            "{sig:?}: still frozen 1 s after"
        );
        eprintln!(
            "keepers: holder-{sig:?} ext4 thawed_after_ms={}",
            (boot_ns() - asked) / 1_000_000
        );
        assert!(wait_until(
            Duration::from_secs(2),
            Duration::from_millis(10),
            || { !support::running(holder) }
        ));
        let thaw = with_env(Command::new(env!("CARGO_BIN_EXE_thawfs")).arg(&fs.mnt), &fs)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&thaw.stderr);
        assert_eq!(thaw.status.code(), Some(1), "{said}");
        assert!(said.contains("its holder was stopped"), "{said}");
        let messages = syslog.drain();
        assert!(
            event(&messages, "freezefs.thawed").contains("asked\\040to\\040stop"),
            "{messages:#?}"
        );
    }
}

/// A hook directory whose one hook logs `ACTION REASON` to `fs.dir/hooks.log`.
fn logging_hooks(fs: &Scratch) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let hooks = fs.dir.join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    std::fs::set_permissions(&hooks, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hook = hooks.join("10-log");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$1 ${{FREEZEFS_THAW_REASON:--}}\" >> {}\n",
            fs.dir.join("hooks.log").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    hooks
}

/// The hook log once it has two lines (freeze, thaw), or what it has.
fn hook_log(fs: &Scratch) -> String {
    let logged = || std::fs::read_to_string(fs.dir.join("hooks.log")).unwrap_or_default();
    wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        logged().lines().count() >= 2
    });
    logged()
}

fn hooked_freeze(fs: &Scratch, timeout: &str) {
    let hooks = logging_hooks(fs);
    let mut cmd = Command::new(freezefs_bin());
    let out = with_env(cmd.args(["-t", timeout]).arg(&fs.mnt), fs)
        .env("FREEZEFS_HOOKS_DIR", &hooks)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// Thaw hooks are owed whoever dies: the holder killed after a hooked
/// freeze, the next keeper runs them, with the reason.
#[test]
fn the_thaw_hooks_of_a_freeze_whose_holder_was_killed_still_run() {
    let fs = Scratch::new(Kind::Ext4);
    hooked_freeze(&fs, "2");
    let deadline = deadline_ns(&fs);
    sigkill(holder_of(&fs));
    thawed_late_ms(&fs, deadline, "hooked-holder-sigkill");
    assert_eq!(hook_log(&fs), "freeze -\nthaw timeout\n");
}

/// A holder asked to stop runs the thaw hooks of what it thawed, with the
/// reason, before it exits.
#[test]
fn a_holder_asked_to_stop_runs_the_thaw_hooks_with_reason_holder_stopped() {
    let fs = Scratch::new(Kind::Ext4);
    hooked_freeze(&fs, "60");
    signal(holder_of(&fs), rustix::process::Signal::TERM);
    assert_eq!(hook_log(&fs), "freeze -\nthaw holder-stopped\n");
    assert!(!fs.kernel_frozen());
}

/// A killed holder is replaced: a new one serves the state directory and
/// keeps the freeze it took over (its record names it).
#[test]
fn a_killed_holder_is_replaced_by_one_that_adopts_its_freezes() {
    let fs = Scratch::new(Kind::Xfs);
    let mut cmd = Command::new(freezefs_bin());
    let out = with_env(cmd.args(["-t", "5"]).arg(&fs.mnt), &fs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let old = holder_of(&fs);
    sigkill(old);
    let replaced = wait_until(Duration::from_secs(1), Duration::from_millis(10), || {
        live_holders(&fs).iter().any(|&p| p != old)
            && fs
                .record_text()
                .is_some_and(|r| !r.contains(&format!("holder_pid {old}\n")))
    });
    assert!(replaced, "no new holder took over: {:?}", fs.record_text());
    assert!(
        fs.kernel_frozen(),
        "the replacement must keep the freeze, not end it"
    );
    let status = fs.freezer().status(&fs.mnt).unwrap();
    assert_ne!(status.holder_pid, Some(old));
    fs.freezer().thaw(&fs.mnt).unwrap();
}

/// The holder and its warden live outside the caller's cgroups, out of the
/// OOM killer's choice where the kernel lets a process refuse it.
#[test]
fn the_holder_leaves_its_callers_cgroup_and_refuses_the_oom_killer() {
    let fs = Scratch::new(Kind::Ext4);
    let syslog = Syslog::new(&fs.dir);
    let cgroup = TestCgroup::new();
    let script = format!(
        "FREEZEFS_SYSLOG_SOCKET={} {} -t 5 {}",
        syslog.path.display(),
        freezefs_bin(),
        fs.mnt.display()
    );
    cgroup.run(&fs, &script);
    let holder = holder_of(&fs);
    let cgroups = std::fs::read_to_string(format!("/proc/{holder}/cgroup")).unwrap();
    let v2 = cgroups.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    assert_eq!(v2, "/freezefs.holder", "{cgroups}");
    let adj = std::fs::read_to_string(format!("/proc/{holder}/oom_score_adj")).unwrap();
    if may_refuse_oom() {
        assert_eq!(adj.trim(), "-1000");
    } else {
        // This kernel refuses a negative oom_score_adj to everyone: the
        // holder says so rather than pretend.
        let messages = syslog.drain();
        assert!(
            messages.iter().any(|m| m.contains("oom_score_adj")),
            "{messages:#?}"
        );
    }
    fs.freezer().thaw(&fs.mnt).unwrap();
}

/// Whether this kernel lets a root process lower its oom_score_adj.
fn may_refuse_oom() -> bool {
    Command::new("sh")
        .args(["-c", "echo -1 > /proc/self/oom_score_adj"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A freeze made in a mount namespace of the caller's own (a unit with
/// PrivateMounts=, a container sharing /run/freezefs), kept by a holder
/// and a warden that live outside it and cannot see its mount point: when
/// the holder is killed, the warden still reaches the mount through the
/// holder's own fd, and thaws by the deadline.
#[test]
fn a_freeze_named_in_a_private_mount_namespace_ends_by_its_deadline_when_the_holder_is_killed() {
    let fs = Scratch::new(Kind::Ext4);
    // Another freeze, made outside, keeps the holder (and so its warden)
    // running in this mount namespace.
    let other = Scratch::new(Kind::Ext4);
    let mut cmd = Command::new(freezefs_bin());
    let out = with_env(cmd.args(["-t", "30"]).arg(&other.mnt), &fs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let private = fs.dir.join("private");
    std::fs::create_dir(&private).unwrap();
    let script = format!(
        "mount --bind {mnt} {at} && {bin} -t 2 {at} && echo ready && exec sleep 60",
        mnt = fs.mnt.display(),
        at = private.display(),
        bin = freezefs_bin()
    );
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "--propagation", "private", "sh", "-c", &script])
        .stdout(Stdio::piped());
    let mut caller = with_env(&mut cmd, &fs).spawn().unwrap();
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(caller.stdout.as_mut().unwrap()),
        &mut said,
    )
    .unwrap();
    assert_eq!(said.trim(), "ready");
    let deadline = fs
        .records()
        .iter()
        .find(|r| r.contains(&format!("mount_point {}\n", private.display())))
        .and_then(|r| {
            r.lines()
                .find_map(|l| l.strip_prefix("deadline_boot_ns ")?.parse().ok())
        })
        .expect("the private freeze on record");
    sigkill(holder_of(&fs));
    thawed_late_ms(&fs, deadline, "private-namespace-holder-sigkill");
    let _ = caller.kill();
    let _ = caller.wait();
    assert!(
        other.kernel_frozen(),
        "the other freeze is kept by the new holder"
    );
    other
        .freezer()
        .with_state_dir(fs.state_dir())
        .thaw(&other.mnt)
        .unwrap();
}

/// On the v1/v2 hybrid layout, `docker pause` freezes the caller through
/// the v1 freezer hierarchy: the holder sits at its root, out of reach.
#[test]
fn a_freeze_ends_by_its_deadline_while_the_callers_v1_freezer_cgroup_is_frozen() {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let v1_freezer = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(2) == Some(&"cgroup") && f[3].split(',').any(|o| o == "freezer"))
            .then(|| PathBuf::from(f[1]))
    });
    let fs = Scratch::new(Kind::Ext4);
    let Some(root) = v1_freezer else {
        // A unified-only machine: no v1 freezer to escape; the holder must
        // not be in one either.
        eprintln!("NOTE: no cgroup v1 freezer hierarchy here; checking the v2 one only");
        let cgroup = TestCgroup::new();
        cgroup.run(
            &fs,
            &format!("{} -t 2 {}", freezefs_bin(), fs.mnt.display()),
        );
        let deadline = deadline_ns(&fs);
        cgroup.write("cgroup.freeze", "1");
        thawed_late_ms(&fs, deadline, "cgroup.freeze");
        return;
    };
    let frozen_cg = root.join(format!("freezefs-test.{}", std::process::id()));
    std::fs::create_dir(&frozen_cg).unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && {} -t 2 {} && echo ready && exec sleep 60",
            frozen_cg.display(),
            freezefs_bin(),
            fs.mnt.display()
        ))
        .stdout(Stdio::piped());
    let mut caller = with_env(&mut cmd, &fs).spawn().unwrap();
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(caller.stdout.as_mut().unwrap()),
        &mut said,
    )
    .unwrap();
    assert_eq!(said.trim(), "ready");
    let deadline = deadline_ns(&fs);
    std::fs::write(frozen_cg.join("freezer.state"), "FROZEN").unwrap();
    let late = std::panic::catch_unwind(|| thawed_late_ms(&fs, deadline, "v1-freezer-frozen"));
    let _ = std::fs::write(frozen_cg.join("freezer.state"), "THAWED");
    let _ = caller.kill();
    let _ = caller.wait();
    wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        std::fs::remove_dir(&frozen_cg).is_ok()
    });
    late.unwrap();
}
