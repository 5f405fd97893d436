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
fn hooks(fs: &Scratch, body: &str) -> PathBuf {
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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_freezefs"));
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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_freezefs"));
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
        let mut thaw = Command::new(env!("CARGO_BIN_EXE_thawfs"));
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
