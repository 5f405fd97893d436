//! Hold hooks (`/etc/freezefs/hold.d`, here a directory of the test's
//! own), with small shell hooks that log what they are told: ready before
//! the freeze or no freeze, told `thaw REASON` after every ending, killed
//! after their grace, and a hold that ends while frozen reported by THAW,
//! thawfs and `freezefs -- CMD`. The MariaDB hook is in mariadb.rs.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::{
    Kind, Scratch, Syslog, freezefs_exe, live_holders, sigkill, thawfs_exe, wait_until, with_env,
};

/// A hold hook that logs `NAME ready` once it said so, and `NAME told
/// LINE` when stdin gives it a line, then runs `after` (its exit).
pub(crate) fn add_hold_hook(fs: &Scratch, name: &str, before_ready: &str, after: &str) -> PathBuf {
    let dir = fs.dir.join("hold.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = fs.dir.join("hold.log");
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/bash\n{before_ready}\necho \"ready $$ {name}\" >&3\nexec 3>&-\necho \"{name} ready $$ $*\" >> {log}\nif read -r line; then echo \"{name} told $line\" >> {log}; fi\n{after}\n",
            log = log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn hold_log(fs: &Scratch) -> Vec<String> {
    std::fs::read_to_string(fs.dir.join("hold.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until the log has a line that contains `text`.
fn logged_within(fs: &Scratch, text: &str, limit: Duration) -> bool {
    wait_until(limit, Duration::from_millis(10), || {
        hold_log(fs).iter().any(|l| l.contains(text))
    })
}

fn held(cmd: &mut Command, fs: &Scratch) -> Command {
    let mut cmd = with_env(cmd, fs);
    cmd.env("FREEZEFS_HOLD_DIR", fs.dir.join("hold.d"));
    cmd
}

fn freezefs(fs: &Scratch, args: &[&str]) -> Output {
    held(Command::new(freezefs_exe()).args(args), fs)
        .output()
        .unwrap()
}

/// `thawfs MOUNT` from another shell.
fn thawfs(fs: &Scratch) -> Output {
    held(Command::new(thawfs_exe()).arg(&fs.mnt), fs)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The pid of the hold hook `name` from `freezefs -l --json`.
fn hold_pid(fs: &Scratch, name: &str) -> u32 {
    let out = freezefs(fs, &["-l", "--json"]);
    let json = String::from_utf8_lossy(&out.stdout).into_owned();
    let at = json
        .find(&format!("\"hook\":\"{name}\",\"pid\":"))
        .unwrap_or_else(|| panic!("no hold {name} in {json}"));
    let rest = &json[at + name.len() + 16..];
    rest[..rest.find(',').unwrap()].parse().unwrap()
}

/// No process of group `pgid` runs (a zombie whose parent has not reaped
/// it yet is not running).
pub(crate) fn group_gone(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    !entries.filter_map(|e| e.ok()).any(|e| {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            return false;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // state, ppid, pgrp
        fields.len() > 2 && fields[0] != "Z" && fields[0] != "X" && fields[2] == pgid.to_string()
    })
}

#[test]
fn a_hold_hook_runs_once_per_freeze_before_it_with_every_mount_point_and_its_ready_text_is_listed()
{
    let fs = Scratch::new(Kind::Ext4);
    let other = Scratch::new(Kind::Ext4);
    add_hold_hook(&fs, "50-lock", "", "");
    let mnt = fs.mnt.to_str().unwrap();
    let out = freezefs(
        &fs,
        &[
            "-t",
            "20",
            mnt,
            other.mnt.to_str().unwrap(),
            "--",
            freezefs_exe(),
            "-l",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let json = String::from_utf8_lossy(&out.stdout);
    assert!(json.contains("\"holds\":[{\"hook\":\"50-lock\""), "{json}");
    assert!(
        json.contains("\"ready\":\"") && json.contains(" 50-lock\"}]"),
        "{json}"
    );
    assert!(logged_within(
        &fs,
        "50-lock told thaw thawed",
        Duration::from_secs(5)
    ));
    let log = hold_log(&fs);
    let ready: Vec<&String> = log.iter().filter(|l| l.contains(" ready ")).collect();
    assert_eq!(ready.len(), 1, "{log:?}");
    assert!(
        ready[0].ends_with(&format!("hold {} {}", mnt, other.mnt.display())),
        "{log:?}"
    );
}

#[test]
fn hold_hooks_are_ready_before_the_freeze_hooks_run() {
    let fs = Scratch::new(Kind::Ext4);
    let log = fs.dir.join("hold.log");
    add_hold_hook(
        &fs,
        "50-lock",
        &format!("sleep 0.2; echo '50-lock locked' >> {}", log.display()),
        "",
    );
    let hooks = fs.dir.join("hooks.d");
    std::fs::create_dir(&hooks).unwrap();
    std::fs::set_permissions(&hooks, std::fs::Permissions::from_mode(0o755)).unwrap();
    let quiesce = hooks.join("10-quiesce");
    std::fs::write(
        &quiesce,
        format!("#!/bin/sh\necho \"10-quiesce $1\" >> {}\n", log.display()),
    )
    .unwrap();
    std::fs::set_permissions(&quiesce, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = held(&mut Command::new(freezefs_exe()), &fs)
        .env("FREEZEFS_HOOKS_DIR", &hooks)
        .args(["-t", "20", fs.mnt.to_str().unwrap(), "--", "true"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let log = hold_log(&fs);
    let at = |line: &str| log.iter().position(|l| l == line);
    assert!(
        at("50-lock locked").unwrap() < at("10-quiesce freeze").unwrap(),
        "{log:?}"
    );
}

#[test]
fn a_hold_hook_not_ready_within_the_hook_timeout_cancels_the_freeze() {
    let fs = Scratch::new(Kind::Ext4);
    std::fs::write(fs.sysconfigtab(), "vfs:\n\tfreezefs_hook_timeout = 1\n").unwrap();
    add_hold_hook(&fs, "50-slow", "sleep 30", "");
    let started = Instant::now();
    let out = freezefs(&fs, &["-t", "20", fs.mnt.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(
        stderr(&out).contains("hold hook 50-slow: not ready within 1 s"),
        "{}",
        stderr(&out)
    );
    assert!(fs.write_completes_within(Duration::from_secs(2)));
    assert!(fs.records().is_empty());
}

#[test]
fn a_hold_hook_that_exits_before_ready_cancels_the_freeze_and_those_holding_let_go() {
    let fs = Scratch::new(Kind::Ext4);
    add_hold_hook(&fs, "10-first", "", "");
    add_hold_hook(&fs, "20-fails", "echo 'no lock for you' >&2; exit 7", "");
    let mut cmd = Command::new(crate::support::program("fzctl"));
    cmd.arg("1").arg(&fs.mnt).arg("20");
    assert_eq!(
        crate::support::fzctl(&mut held(&mut cmd, &fs)),
        "rc=-1 errno=ECANCELED"
    );
    assert!(logged_within(
        &fs,
        "10-first told thaw rolled-back",
        Duration::from_secs(5)
    ));
    assert!(fs.write_completes_within(Duration::from_secs(2)));
}

#[test]
fn a_hold_hook_is_told_after_the_thaw_how_the_freeze_ended() {
    let fs = Scratch::new(Kind::Ext4);
    add_hold_hook(&fs, "50-lock", "", "");
    let mnt = fs.mnt.to_str().unwrap();
    // The deadline.
    let out = freezefs(&fs, &["-t", "1", mnt]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(logged_within(
        &fs,
        "told thaw timeout",
        Duration::from_secs(5)
    ));
    // thawfs from elsewhere.
    assert!(freezefs(&fs, &["-t", "30", mnt]).status.success());
    let thawed = thawfs(&fs);
    assert!(thawed.status.success(), "{}", stderr(&thawed));
    assert!(logged_within(
        &fs,
        "told thaw thawed",
        Duration::from_secs(5)
    ));
    // Another tool.
    assert!(freezefs(&fs, &["-t", "30", mnt]).status.success());
    fs.other_tool_thaws().unwrap();
    assert!(logged_within(
        &fs,
        "told thaw other-tool",
        Duration::from_secs(5)
    ));
}

#[test]
fn a_hold_hook_is_told_when_its_holder_is_stopped() {
    let fs = Scratch::new(Kind::Ext4);
    add_hold_hook(&fs, "50-lock", "", "");
    let out = freezefs(&fs, &["-t", "30", fs.mnt.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    for holder in live_holders(&fs) {
        let pid = rustix::process::Pid::from_raw(holder as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    assert!(logged_within(
        &fs,
        "told thaw holder-stopped",
        Duration::from_secs(5)
    ));
    assert!(fs.write_completes_within(Duration::from_secs(2)));
}

#[test]
fn a_hold_hook_that_ignores_its_stdin_is_killed_with_its_group_after_its_grace() {
    let fs = Scratch::new(Kind::Ext4);
    std::fs::write(fs.sysconfigtab(), "vfs:\n\tfreezefs_hold_grace = 1\n").unwrap();
    add_hold_hook(&fs, "50-stubborn", "sleep 300 &", "trap '' TERM; sleep 300");
    let mnt = fs.mnt.to_str().unwrap();
    assert!(freezefs(&fs, &["-t", "30", mnt]).status.success());
    let pgid = hold_pid(&fs, "50-stubborn");
    let thawed = thawfs(&fs);
    assert!(thawed.status.success(), "{}", stderr(&thawed));
    let told = Instant::now();
    assert!(logged_within(
        &fs,
        "told thaw thawed",
        Duration::from_secs(5)
    ));
    assert!(
        wait_until(Duration::from_secs(4), Duration::from_millis(20), || {
            group_gone(pgid)
        }),
        "the hook's process group outlived its grace"
    );
    assert!(
        told.elapsed() < Duration::from_secs(3),
        "{:?}",
        told.elapsed()
    );
}

#[test]
fn a_hold_hook_that_exits_while_frozen_makes_thaw_answer_ecanceled_once() {
    let fs = Scratch::new(Kind::Ext4);
    add_hold_hook(&fs, "50-quits", "( sleep 0.3; kill $$ ) &", "");
    let freezer = fs.freezer().with_hold_dir(fs.dir.join("hold.d"));
    freezer
        .freeze(&fs.mnt, freezefs::Timeout::Seconds(30))
        .unwrap();
    assert!(wait_until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || freezer
            .status(&fs.mnt)
            .is_ok_and(|s| s.hold_broken.is_some())
    ));
    let err = freezer.thaw(&fs.mnt).unwrap_err();
    assert_eq!(err.errno(), libc::ECANCELED, "{err}");
    assert!(
        err.to_string().contains("hold hook 50-quits ended"),
        "{err}"
    );
    assert!(fs.write_completes_within(Duration::from_secs(2)));
    // Said once: the next THAW finds nothing frozen.
    assert_eq!(freezer.thaw(&fs.mnt).unwrap_err().errno(), libc::EALREADY);
}

#[test]
fn thawfs_exits_1_naming_a_hold_hook_that_ended_while_frozen() {
    let fs = Scratch::new(Kind::Ext4);
    add_hold_hook(&fs, "50-quits", "( sleep 0.3; kill $$ ) &", "");
    let mnt = fs.mnt.to_str().unwrap();
    assert!(freezefs(&fs, &["-t", "30", mnt]).status.success());
    std::thread::sleep(Duration::from_millis(800));
    let out = thawfs(&fs);
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(
        said.contains("thawed, but hold hook 50-quits ended at ")
            && said.contains("killed by signal 15")
            && said.contains("not application-consistent"),
        "{said}"
    );
}

#[test]
fn freezefs_with_a_command_exits_3_naming_a_hold_hook_that_ended_while_frozen() {
    let fs = Scratch::new(Kind::Ext4);
    add_hold_hook(&fs, "50-quits", "( sleep 0.3; kill $$ ) &", "");
    let out = freezefs(
        &fs,
        &["-t", "30", fs.mnt.to_str().unwrap(), "--", "sleep", "1"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("hold hook 50-quits ended at "),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_hold_events_say_the_ready_text_and_how_long_a_broken_hold_held() {
    let fs = Scratch::new(Kind::Ext4);
    add_hold_hook(&fs, "50-quits", "( sleep 0.3; kill $$ ) &", "");
    let syslog = Syslog::new(&fs.dir);
    let out = held(&mut Command::new(freezefs_exe()), &fs)
        .env("FREEZEFS_SYSLOG_SOCKET", &syslog.path)
        .args(["-t", "30", fs.mnt.to_str().unwrap(), "--", "sleep", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let events = syslog.drain();
    let hold: Vec<&String> = events
        .iter()
        .filter(|e| e.contains("freezefs.hold "))
        .collect();
    assert!(
        hold.iter()
            .any(|e| e.contains("hold\\040hook\\04050-quits\\040holds")
                && e.contains("50-quits\\040in")),
        "{hold:#?}"
    );
    assert!(
        hold.iter().any(|e| e.contains("ended\\040while")
            && e.contains("after\\040holding")
            && e.contains("killed\\040by\\040signal\\04015")),
        "{hold:#?}"
    );
}

#[test]
fn a_hold_hook_left_behind_by_a_killed_holder_is_killed_by_the_next_holder() {
    let fs = Scratch::new(Kind::Ext4);
    // Ignores the end of its stdin and holds on.
    add_hold_hook(&fs, "50-orphan", "", "sleep 300");
    let mnt = fs.mnt.to_str().unwrap();
    assert!(freezefs(&fs, &["-t", "30", mnt]).status.success());
    let pgid = hold_pid(&fs, "50-orphan");
    for holder in live_holders(&fs) {
        sigkill(holder);
    }
    // The next call that finds the freeze starts a holder, which adopts it.
    let out = freezefs(&fs, &["-l"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(20), || {
            group_gone(pgid)
        }),
        "the orphaned hold hook still runs"
    );
    let out = thawfs(&fs);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("hold hook 50-orphan ended"),
        "{}",
        stderr(&out)
    );
}
