//! The fast path remembers what cannot change (a mount's superblock) and
//! what it was told until told otherwise (a record, until the state
//! directory changes). Each test changes the truth behind a process that
//! has just asked, from outside it, and expects the very next QUERY to
//! tell the new truth.

use std::process::Command;
use std::time::Duration;

use freezefs::Timeout;

use crate::support::{Kind, Scratch, fzctl, fzctl_cmd, live_holders, run, wait_until};

/// Asks twice, so that the second answer comes from what was remembered.
fn query_twice(fs: &Scratch, path: &std::path::Path) -> bool {
    let f = fs.freezer();
    let first = f.is_frozen(path).unwrap();
    assert_eq!(
        f.is_frozen(path).unwrap(),
        first,
        "two QUERYs in a row disagree"
    );
    first
}

/// Freezes through another process (one C API call) and expects the next
/// QUERY of this one to say so; thaws.
fn a_freeze_by_another_process_is_seen(fs: &Scratch) {
    assert_eq!(
        fzctl(&mut fzctl_cmd(fs, "1", &fs.mnt, "60")),
        "rc=0 errno=0"
    );
    assert!(fs.freezer().is_frozen(&fs.mnt).unwrap());
    fs.freezer().thaw(&fs.mnt).unwrap();
}

#[test]
fn query_tells_a_thaw_by_another_process_at_once() {
    let fs = Scratch::new(Kind::Ext4);
    fs.freezer().freeze(&fs.mnt, Timeout::Seconds(60)).unwrap();
    assert!(query_twice(&fs, &fs.mnt));
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "0", &fs.mnt, "0")),
        "rc=0 errno=0"
    );
    assert!(!fs.freezer().is_frozen(&fs.mnt).unwrap());
}

#[test]
fn query_tells_a_freeze_by_another_process_at_once() {
    let fs = Scratch::new(Kind::Ext4);
    assert!(!query_twice(&fs, &fs.mnt));
    a_freeze_by_another_process_is_seen(&fs);
}

#[test]
fn query_reads_a_record_changed_in_place_anew() {
    let fs = Scratch::new(Kind::Ext4);
    fs.freezer().freeze(&fs.mnt, Timeout::Seconds(60)).unwrap();
    assert!(query_twice(&fs, &fs.mnt));
    let record = fs.state_dir().join(format!("sb.{}", fs.device()));
    // Overwritten where it lies, not renamed into place: tampering.
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&record)
        .unwrap();
    let err = fs.freezer().is_frozen(&fs.mnt).unwrap_err();
    assert_eq!(err.errno(), libc::EIO, "{err}");
    fs.other_tool_thaws().unwrap();
}

#[test]
fn query_reads_a_state_directory_made_anew_under_a_running_process() {
    let fs = Scratch::new(Kind::Ext4);
    assert!(!query_twice(&fs, &fs.mnt));
    // An administrator's rm -rf while nothing is frozen (and the holder the
    // QUERYs started has gone); the next freeze, by another process, makes
    // the directory again.
    assert!(wait_until(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || { live_holders(&fs).is_empty() }
    ));
    std::fs::remove_dir_all(fs.state_dir()).unwrap();
    a_freeze_by_another_process_is_seen(&fs);
}

#[test]
fn query_answers_for_the_filesystem_mounted_now_at_a_mount_point() {
    let first = Scratch::new(Kind::Ext4);
    let second = Scratch::new(Kind::Ext4);
    let f = first.freezer();
    let at = first.dir.join("at");
    std::fs::create_dir(&at).unwrap();
    let bind = |what: &std::path::Path| {
        run(Command::new("mount").arg("--bind").arg(what).arg(&at));
    };
    bind(&first.mnt);
    assert!(!query_twice(&first, &at));
    run(Command::new("umount").arg(&at));
    bind(&second.mnt);
    // The first is frozen now, the second (mounted at `at` now) is not:
    // an answer for the mount that was there before says frozen.
    // Nothing between here and the umount may panic.
    let frozen = f.freeze(&first.mnt, Timeout::Seconds(60));
    let seen = f.is_frozen(&at);
    let _ = f.thaw(&first.mnt);
    run(Command::new("umount").arg(&at));
    frozen.unwrap();
    assert!(
        !seen.unwrap(),
        "QUERY answered for the filesystem mounted there before"
    );
}

#[test]
fn a_process_that_asks_again_sees_another_tools_freezes_and_thaws_at_once() {
    let fs = Scratch::new(Kind::Ext4);
    let f = fs.freezer();
    // The second QUERY and those after go through the process's own line
    // to a probe thread.
    assert!(!query_twice(&fs, &fs.mnt));
    for _ in 0..3 {
        fs.other_tool_freezes().unwrap();
        assert!(
            f.is_frozen(&fs.mnt).unwrap(),
            "another tool's freeze not seen"
        );
        assert!(
            f.is_frozen(&fs.mnt).unwrap(),
            "asked again, the freeze is gone"
        );
        fs.other_tool_thaws().unwrap();
        assert!(
            !f.is_frozen(&fs.mnt).unwrap(),
            "another tool's thaw not seen"
        );
    }
}

#[test]
fn query_still_answers_after_the_holder_its_line_led_to_exited() {
    let fs = Scratch::new(Kind::Ext4);
    let f = fs.freezer();
    assert!(!query_twice(&fs, &fs.mnt));
    assert!(wait_until(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || { live_holders(&fs).is_empty() }
    ));
    assert!(!f.is_frozen(&fs.mnt).unwrap());
    fs.other_tool_freezes().unwrap();
    let seen = f.is_frozen(&fs.mnt);
    fs.other_tool_thaws().unwrap();
    assert!(
        seen.unwrap(),
        "another tool's freeze not seen through a new holder"
    );
}
