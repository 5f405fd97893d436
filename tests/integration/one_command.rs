//! A consistent snapshot in one command (issue 21): `freezefs MOUNT... --
//! CMD` freezes, runs CMD, thaws when it exits, and exits with CMD's status
//! only if every freeze held throughout (else 3); 125, 126, 127 for its
//! own failures, as env(1) and timeout(1) have them.

use crate::support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use freezefs::Timeout;
use support::{Kind, Scratch, run, wait_until, with_env};

fn freezefs(fs: &Scratch, args: &[&str]) -> Output {
    let mut cmd = Command::new(crate::support::freezefs_exe());
    with_env(cmd.args(args), fs).output().unwrap()
}

fn mnt(fs: &Scratch) -> &str {
    fs.mnt.to_str().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_copy_of_the_image_taken_by_the_command_passes_fsck() {
    let fs = Scratch::new(Kind::Ext4);
    std::fs::write(fs.mnt.join("data"), vec![7u8; 1 << 20]).unwrap();
    let image = fs.image.as_ref().unwrap().to_str().unwrap().to_string();
    let copy = fs.dir.join("copy");
    let out = freezefs(
        &fs,
        &[
            "-t",
            "30",
            mnt(&fs),
            "--",
            "cp",
            &image,
            copy.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!fs.kernel_frozen(), "thawed as soon as the command exited");
    let fsck = Command::new("fsck.ext4")
        .arg("-fn")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{fsck:?}");
}

/// The btrfs recipe: an ext4 image (a VM disk, a loop-mounted filesystem)
/// on btrfs; freeze the ext4, snapshot the btrfs subvolume holding it.
#[test]
fn a_btrfs_snapshot_of_a_frozen_images_subvolume_is_consistent() {
    let host = Scratch::new(Kind::Btrfs);
    run(Command::new("btrfs")
        .args(["-q", "subvolume", "create"])
        .arg(host.mnt.join("vol")));
    let image = host.mnt.join("vol/disk.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
    let mut inner = Scratch::new(Kind::Tmpfs);
    let disk = inner.mount_extra("disk", &["-o", "loop", image.to_str().unwrap()]);
    std::fs::write(disk.join("data"), vec![9u8; 1 << 20]).unwrap();
    let snap = host.mnt.join("snap");
    let out = freezefs(
        &inner,
        &[
            "-t",
            "30",
            disk.to_str().unwrap(),
            "--",
            "btrfs",
            "-q",
            "subvolume",
            "snapshot",
            "-r",
            host.mnt.join("vol").to_str().unwrap(),
            snap.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let fsck = Command::new("fsck.ext4")
        .arg("-fn")
        .arg(snap.join("disk.img"))
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{fsck:?}");
    drop(inner);
    run(Command::new("btrfs")
        .args(["-q", "subvolume", "delete"])
        .arg(&snap));
}

#[test]
fn a_command_that_outlives_the_timeout_exits_3_and_says_how_the_freeze_ended() {
    let fs = Scratch::new(Kind::Ext4);
    let out = freezefs(&fs, &["-t", "2", mnt(&fs), "--", "sleep", "3"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("its timeout passed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_command_thawed_under_by_another_tool_exits_3() {
    let fs = Scratch::new(Kind::Xfs);
    let script = format!("sleep 0.3; fsfreeze -u {}; sleep 0.3", mnt(&fs));
    let out = freezefs(&fs, &["-t", "30", mnt(&fs), "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("another tool thawed it"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_command_under_a_freeze_that_held_exits_with_its_own_status() {
    let fs = Scratch::new(Kind::Ext4);
    let out = freezefs(&fs, &["-t", "30", mnt(&fs), "--", "sh", "-c", "exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(!fs.kernel_frozen());
}

#[test]
fn a_command_not_found_is_127_and_one_not_executable_126_with_nothing_frozen() {
    let fs = Scratch::new(Kind::Ext4);
    let out = freezefs(
        &fs,
        &["-t", "30", mnt(&fs), "--", "no-such-command-anywhere"],
    );
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    let plain = fs.dir.join("plain");
    std::fs::write(&plain, "not a program").unwrap();
    let out = freezefs(&fs, &["-t", "30", mnt(&fs), "--", plain.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(126), "{}", stderr(&out));
    assert!(!fs.kernel_frozen());
    assert_eq!(fs.record_text(), None);
}

/// What would deadlock on the frozen filesystem is refused before
/// anything is frozen: the command on it, a working directory on it,
/// freezefs's own output written into it.
#[test]
fn a_command_that_would_deadlock_on_the_frozen_filesystem_is_refused_first() {
    let fs = Scratch::new(Kind::Ext4);
    let exe = fs.mnt.join("true");
    std::fs::copy("/bin/true", &exe).unwrap();
    let refused = |out: Output, what: &str| {
        assert_eq!(out.status.code(), Some(125), "{what}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("about to be frozen"),
            "{what}: {}",
            stderr(&out)
        );
        assert!(!fs.kernel_frozen(), "{what}: frozen");
        assert_eq!(fs.record_text(), None, "{what}");
    };
    refused(
        freezefs(&fs, &["-t", "30", mnt(&fs), "--", exe.to_str().unwrap()]),
        "the command",
    );
    refused(
        freezefs(&fs, &["-t", "30", "-C", mnt(&fs), mnt(&fs), "--", "true"]),
        "the working directory",
    );
    let log = std::fs::File::create(fs.mnt.join("out")).unwrap();
    let mut cmd = Command::new(crate::support::freezefs_exe());
    let out = with_env(cmd.args(["-t", "30", mnt(&fs), "--", "true"]), &fs)
        .stdout(log)
        .output()
        .unwrap();
    refused(out, "standard output");
}

/// SIGTERM to freezefs while the command runs: the command gets it, the
/// thaw follows its exit, and the exit status is the command's (128 + 15).
#[test]
fn sigterm_to_freezefs_is_passed_to_the_command_and_the_thaw_follows() {
    let fs = Scratch::new(Kind::Ext4);
    let mut cmd = Command::new(crate::support::freezefs_exe());
    let mut child = with_env(cmd.args(["-t", "30", mnt(&fs), "--", "sleep", "30"]), &fs)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(fs.frozen_by_other_process_within(Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(100));
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let asked = Instant::now();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert!(asked.elapsed() < Duration::from_secs(2));
    assert_eq!(status.code(), Some(128 + 15));
    assert!(!fs.kernel_frozen());
}

#[test]
fn kill_9_of_freezefs_leaves_the_freeze_to_its_deadline() {
    let fs = Scratch::new(Kind::Ext4);
    let mut cmd = Command::new(crate::support::freezefs_exe());
    let mut child = with_env(cmd.args(["-t", "2", mnt(&fs), "--", "sleep", "30"]), &fs)
        .spawn()
        .unwrap();
    assert!(fs.frozen_by_other_process_within(Duration::from_secs(5)));
    child.kill().unwrap();
    let _ = child.wait();
    assert!(wait_until(
        Duration::from_secs(4),
        Duration::from_millis(20),
        || { !fs.kernel_frozen() }
    ));
}

/// The Rust API: a closure run while frozen, and whether the freeze held.
#[test]
fn run_frozen_tells_whether_the_freeze_held_throughout() {
    let fs = Scratch::new(Kind::Ext4);
    let freezer = fs.freezer();
    let run = freezer
        .run_frozen(&[&fs.mnt], Timeout::Seconds(30), || fs.kernel_frozen())
        .unwrap();
    assert!(run.output, "frozen while the body ran");
    assert!(run.all_held());
    assert!(!fs.kernel_frozen());
    let run = freezer
        .run_frozen(&[&fs.mnt], Timeout::Seconds(1), || {
            std::thread::sleep(Duration::from_millis(1500))
        })
        .unwrap();
    assert!(!run.all_held());
    let ended = run.freezes[0].ended.as_ref().expect("how it ended");
    assert_eq!(ended.reason, freezefs::EndReason::Timeout);
}
