//! The holder killed, stopped or asked to stop: its warden, a new holder
//! and the thaw hooks it owed.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::{
    TRIALS, TestCgroup, boot_ns, deadline_ns, freeze_by_command, freezefs_bin, holder_of, signal,
    thawed_late_ms,
};
use crate::support::{
    self, Kind, Scratch, Syslog, event, live_holders, on_ext4_xfs_btrfs, sigkill, wait_until,
    with_env,
};

on_ext4_xfs_btrfs! {
    fn a_freeze_ends_by_its_deadline_when_the_holder_is_killed_and_the_caller_is_gone(kind) {
        for _ in 0..TRIALS {
            let fs = Scratch::new(kind);
            freeze_by_command(&fs, &fs.mnt, "2", &[]);
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
            freeze_by_command(&fs, &fs.mnt, "2", &[]);
            let deadline = deadline_ns(&fs);
            let holder = holder_of(&fs);
            signal(holder, rustix::process::Signal::STOP);
            thawed_late_ms(&fs, deadline, "holder-sigstop");
            signal(holder, rustix::process::Signal::CONT);
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
        freeze_by_command(
            &fs,
            &fs.mnt,
            "60",
            &[("FREEZEFS_SYSLOG_SOCKET", syslog.path.as_os_str())],
        );
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
        let thaw = with_env(Command::new(crate::support::thawfs_exe()).arg(&fs.mnt), &fs)
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

/// The hook log once it has two lines (freeze, thaw), or what it has.
fn hook_log(fs: &Scratch) -> String {
    let logged = || std::fs::read_to_string(fs.dir.join("hooks.log")).unwrap_or_default();
    wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        logged().lines().count() >= 2
    });
    logged()
}

fn hooked_freeze(fs: &Scratch, timeout: &str) {
    let hooks = crate::hook_pairs::hooks(fs, "");
    freeze_by_command(
        fs,
        &fs.mnt,
        timeout,
        &[("FREEZEFS_HOOKS_DIR", hooks.as_os_str())],
    );
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
    freeze_by_command(&fs, &fs.mnt, "5", &[]);
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
    freeze_by_command(&fs, &other.mnt, "30", &[]);
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
