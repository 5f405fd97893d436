//! Hooks come in pairs and leave nothing behind (issue 19): a freeze hook
//! never runs for a client that is gone, every freeze hook that ran gets
//! its thaw hook whoever died, and a hook that leaves a daemon behind
//! costs the holder no thread and no fd.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::{Kind, Scratch, live_holders, wait_until, with_env};

/// A hook directory with one hook: it logs `ACTION REASON` to
/// `fs.dir/hooks.log`, then runs `body`.
pub(crate) fn hooks(fs: &Scratch, body: &str) -> PathBuf {
    let dir = fs.dir.join("hooks");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hook = dir.join("10-pair");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\necho \"$1 ${{FREEZEFS_THAW_REASON:--}}\" >> {}\n{body}\n",
            fs.dir.join("hooks.log").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn log(fs: &Scratch) -> String {
    std::fs::read_to_string(fs.dir.join("hooks.log")).unwrap_or_default()
}

fn hooked(cmd: &mut Command, fs: &Scratch, dir: &Path) -> Command {
    let mut cmd = with_env(cmd, fs);
    cmd.env("FREEZEFS_HOOKS_DIR", dir);
    cmd
}

fn freezefs(fs: &Scratch, dir: &Path, args: &[&str], mnt: &Path) -> Output {
    let mut cmd = Command::new(crate::support::freezefs_exe());
    hooked(cmd.args(args).arg(mnt), fs, dir).output().unwrap()
}

/// Threads and fds of a process.
fn threads_and_fds(pid: u32) -> (usize, usize) {
    let count = |what: &str| {
        std::fs::read_dir(format!("/proc/{pid}/{what}"))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    (count("task"), count("fd"))
}

/// 50 freezes whose hook starts a daemon that keeps its output pipe open:
/// the holder's threads and fds stay flat.
#[test]
fn hooks_that_leave_a_daemon_behind_leak_no_thread_and_no_fd() {
    let fs = Scratch::new(Kind::Ext4);
    let other = Scratch::new(Kind::Ext4);
    // A freeze without hooks keeps the holder running through the loop.
    let mut cmd = Command::new(crate::support::freezefs_exe());
    let out = with_env(cmd.args(["-t", "120"]).arg(&other.mnt), &fs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let holder = live_holders(&fs)[0];
    let dir = hooks(&fs, "sleep 5 &");
    let mut samples = Vec::new();
    for round in 0..50 {
        let out = freezefs(&fs, &dir, &["-t", "30"], &fs.mnt);
        assert!(out.status.success(), "{out:?}");
        let mut thaw = Command::new(crate::support::thawfs_exe());
        let out = hooked(thaw.arg(&fs.mnt), &fs, &dir).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        if round == 9 || round == 49 {
            // The thaw hooks run after the thaw: let them finish.
            wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
                log(&fs).lines().count() >= 2 * (round + 1)
            });
            std::thread::sleep(Duration::from_millis(150));
            samples.push(threads_and_fds(holder));
        }
    }
    eprintln!("hook_pairs: holder (threads, fds) after 10 and 50 freezes: {samples:?}");
    assert_eq!(live_holders(&fs), vec![holder]);
    assert_eq!(samples[0], samples[1], "the holder leaks");
    other
        .freezer()
        .with_state_dir(fs.state_dir())
        .thaw(&other.mnt)
        .unwrap();
}

/// The caller killed while its freeze hook runs: the hook's thaw still
/// runs (reason freezer-died), and nothing stays frozen.
#[test]
fn a_caller_killed_during_its_freeze_hook_still_gets_the_thaw_hook() {
    let fs = Scratch::new(Kind::Ext4);
    let dir = hooks(&fs, "[ \"$1\" = freeze ] && sleep 1.5; exit 0");
    let mut cmd = Command::new(crate::support::freezefs_exe());
    let mut caller = hooked(cmd.args(["-t", "30"]).arg(&fs.mnt), &fs, &dir)
        .spawn()
        .unwrap();
    assert!(wait_until(
        Duration::from_secs(3),
        Duration::from_millis(10),
        || { log(&fs).starts_with("freeze") }
    ));
    caller.kill().unwrap();
    let _ = caller.wait();
    assert!(
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            log(&fs).lines().count() >= 2
        }),
        "{}",
        log(&fs)
    );
    assert_eq!(log(&fs), "freeze -\nthaw freezer-died\n");
    assert!(!fs.kernel_frozen());
    assert_eq!(fs.record_text(), None);
}

/// A client queued behind another's slow freeze hook waits for it (its
/// wait counts the runs ahead), and one killed while queued never has its
/// freeze hook run.
#[test]
fn a_queued_client_waits_for_the_hooks_ahead_and_a_killed_one_runs_none() {
    let slow = Scratch::new(Kind::Ext4);
    let queued = Scratch::new(Kind::Ext4);
    let gone = Scratch::new(Kind::Ext4);
    let dir = hooks(
        &slow,
        &format!(
            "[ \"$1\" = freeze ] && [ \"$2\" = {} ] && sleep 3; echo \"$1 $2\" >> {}; exit 0",
            slow.mnt.display(),
            slow.dir.join("runs.log").display()
        ),
    );
    let start = |fs: &Scratch| {
        let mut cmd = Command::new(crate::support::freezefs_exe());
        let mut cmd = with_env(cmd.args(["-t", "30"]).arg(&fs.mnt), &slow);
        cmd.env("FREEZEFS_HOOKS_DIR", &dir).spawn().unwrap()
    };
    let mut first = start(&slow);
    assert!(wait_until(
        Duration::from_secs(3),
        Duration::from_millis(10),
        || { log(&slow).starts_with("freeze") }
    ));
    let mut second = start(&queued);
    let mut third = start(&gone);
    std::thread::sleep(Duration::from_millis(300));
    third.kill().unwrap();
    let _ = third.wait();
    assert!(first.wait().unwrap().success());
    assert!(
        second.wait().unwrap().success(),
        "the queued client gave up"
    );
    std::thread::sleep(Duration::from_millis(300));
    let runs = std::fs::read_to_string(slow.dir.join("runs.log")).unwrap_or_default();
    assert!(
        !runs.contains(&format!("freeze {}", gone.mnt.display())),
        "a freeze hook ran for a client that was gone: {runs}"
    );
    assert!(queued.kernel_frozen() && slow.kernel_frozen() && !gone.kernel_frozen());
    let freezer = slow.freezer();
    freezer.thaw(&slow.mnt).unwrap();
    freezer.thaw(&queued.mnt).unwrap();
}
