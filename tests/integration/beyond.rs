//! Beyond AdvFS (issue 5): reset timeout, all-or-nothing multi-freeze,
//! freeze states, on real filesystems.

use crate::support;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use freezefs::{FreezeState, Timeout};
use support::{Kind, Scratch, fzctl, fzctl_cmd, program, run, with_env};

fn errno<T: std::fmt::Debug>(r: freezefs::Result<T>) -> i32 {
    r.expect_err("expected an error").errno()
}

fn record_field(fs: &Scratch, dir: &std::path::Path, key: &str) -> Option<u64> {
    let _ = fs;
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("sb."))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .find(|text| text.contains(&format!("mount_point {}\n", fs.mnt.display())))
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
        })
}

#[test]
fn reset_timeout_moves_the_deadline_for_the_helper_thread_and_the_holder() {
    let fs = Scratch::new(Kind::Ext4);
    let f = fs.freezer();
    f.freeze(&fs.mnt, Timeout::Seconds(1)).unwrap();
    f.reset_timeout(&fs.mnt, Timeout::Seconds(3)).unwrap();
    thread::sleep(Duration::from_millis(1500));
    assert!(fs.kernel_frozen(), "a keeper thawed at the old deadline");
    let reset_at = Instant::now();
    f.reset_timeout(&fs.mnt, Timeout::Seconds(1)).unwrap();
    let thawed = fs
        .write_in_background()
        .recv_timeout(Duration::from_secs(5))
        .unwrap();
    let after = thawed.duration_since(reset_at);
    eprintln!("reset to 1 s: thawed {after:?} after the reset");
    assert!(
        after >= Duration::from_millis(990) && after < Duration::from_millis(1100),
        "{after:?}"
    );
}

#[test]
fn reset_from_another_process_is_followed_by_the_holder() {
    let fs = Scratch::new(Kind::Xfs);
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "30")),
        "rc=0 errno=0"
    );
    let mut cmd = Command::new(crate::support::freezefs_exe());
    cmd.args(["-r", "1"]).arg(&fs.mnt);
    let reset_at = Instant::now();
    let out = with_env(&mut cmd, &fs).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let thawed = fs
        .write_in_background()
        .recv_timeout(Duration::from_secs(5))
        .unwrap();
    let after = thawed.duration_since(reset_at);
    assert!(
        after < Duration::from_millis(1200),
        "the holder kept the old deadline: {after:?}"
    );
}

#[test]
fn reset_to_never_removes_the_deadline() {
    let fs = Scratch::new(Kind::Btrfs);
    let f = fs.freezer();
    f.freeze(&fs.mnt, Timeout::Seconds(1)).unwrap();
    f.reset_timeout(&fs.mnt, Timeout::Never).unwrap();
    thread::sleep(Duration::from_millis(1500));
    assert!(f.is_frozen(&fs.mnt).unwrap());
    assert!(fs.kernel_frozen());
    assert_eq!(f.status(&fs.mnt).unwrap().timeout, Some(Timeout::Never));
    f.thaw(&fs.mnt).unwrap();
}

#[test]
fn reset_of_a_filesystem_that_is_not_frozen_is_einval() {
    let fs = Scratch::new(Kind::Ext4);
    assert_eq!(
        errno(fs.freezer().reset_timeout(&fs.mnt, Timeout::Seconds(5))),
        libc::EINVAL
    );
    let mut cmd = Command::new(crate::support::freezefs_exe());
    cmd.args(["-r", "5"]).arg(&fs.mnt);
    let out = with_env(&mut cmd, &fs).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not frozen; nothing to reset"));
}

#[test]
fn freeze_all_freezes_ext4_xfs_and_btrfs_under_one_deadline() {
    let a = Scratch::new(Kind::Ext4);
    let b = Scratch::new(Kind::Xfs);
    let c = Scratch::new(Kind::Btrfs);
    let f = a.freezer();
    f.freeze_all(&[&a.mnt, &b.mnt, &c.mnt], Timeout::Seconds(30))
        .unwrap();
    for fs in [&a, &b, &c] {
        assert!(f.is_frozen(&fs.mnt).unwrap());
        assert!(fs.kernel_frozen());
    }
    let deadlines: Vec<Option<u64>> = [&a, &b, &c]
        .iter()
        .map(|fs| record_field(fs, &a.state_dir(), "deadline_boot_ns"))
        .collect();
    assert!(
        deadlines[0].is_some() && deadlines.iter().all(|d| *d == deadlines[0]),
        "{deadlines:?}"
    );
    f.thaw_all(&[&a.mnt, &b.mnt, &c.mnt]).unwrap();
    for fs in [&a, &b, &c] {
        assert!(!fs.kernel_frozen());
    }
}

#[test]
fn two_names_of_one_filesystem_count_once() {
    let mut fs = Scratch::new(Kind::Ext4);
    let bind = fs.bind("bind");
    let f = fs.freezer();
    f.freeze_all(&[&fs.mnt, &bind], Timeout::Seconds(30))
        .unwrap();
    assert!(fs.kernel_frozen());
    f.thaw_all(&[&bind, &fs.mnt]).unwrap();
    assert!(!fs.kernel_frozen());
}

#[test]
fn nested_mounts_freeze_deepest_first() {
    let outer = Scratch::new(Kind::Ext4);
    let inner = Scratch::new(Kind::Xfs);
    let inner_at = outer.mnt.join("inner");
    std::fs::create_dir(&inner_at).unwrap();
    run(Command::new("mount")
        .arg("--bind")
        .arg(&inner.mnt)
        .arg(&inner_at));
    let f = outer.freezer();
    let result = f.freeze_all(&[&outer.mnt, &inner_at], Timeout::Seconds(30));
    let when = |path: &std::path::Path| {
        std::fs::read_dir(outer.state_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("sb."))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .find(|t| t.contains(&format!("mount_point {}\n", path.display())))
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("frozen_at_boot_ns ")?.parse::<u64>().ok())
            })
    };
    let (outer_at, inner_at_ns) = (when(&outer.mnt), when(&inner_at));
    let _ = f.thaw_all(&[&outer.mnt, &inner_at]);
    // The holder lets go of the thawed mounts a moment later.
    support::umount(&inner_at);
    result.unwrap();
    assert!(
        inner_at_ns.unwrap() < outer_at.unwrap(),
        "the outer mount froze first"
    );
}

#[test]
fn a_failure_in_the_middle_of_freeze_all_leaves_nothing_frozen() {
    let a = Scratch::new(Kind::Ext4);
    let b = Scratch::new(Kind::Xfs);
    let c = Scratch::new(Kind::Btrfs);
    let f = a.freezer();
    run(Command::new("fsfreeze").arg("-f").arg(&b.mnt));
    let r = f.freeze_all(&[&a.mnt, &b.mnt, &c.mnt], Timeout::Seconds(30));
    assert_eq!(errno(r), libc::EALREADY);
    assert!(
        !a.kernel_frozen() && !c.kernel_frozen(),
        "freeze_all left a filesystem frozen"
    );
    assert!(!f.is_frozen(&a.mnt).unwrap() && !f.is_frozen(&c.mnt).unwrap());
    run(Command::new("fsfreeze").arg("-u").arg(&b.mnt));

    // A filesystem that cannot be frozen fails at FIFREEZE, after others froze.
    let t = Scratch::new(Kind::Tmpfs);
    let r = f.freeze_all(&[&a.mnt, &t.mnt, &c.mnt], Timeout::Seconds(30));
    assert_eq!(errno(r), libc::EOPNOTSUPP);
    assert!(
        !a.kernel_frozen() && !c.kernel_frozen(),
        "a rollback was missed"
    );
    let leftovers: Vec<_> = std::fs::read_dir(a.state_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("sb."))
        .collect();
    assert!(leftovers.is_empty(), "records left: {leftovers:?}");

    // A bad path is found before anything freezes.
    let r = f.freeze_all(&[a.mnt.clone(), a.dir.join("nope")], Timeout::Seconds(30));
    assert_eq!(errno(r), libc::ENOENT);
    assert!(!a.kernel_frozen());
}

#[test]
fn the_commands_take_several_mount_points() {
    let a = Scratch::new(Kind::Ext4);
    let b = Scratch::new(Kind::Xfs);
    let mut cmd = Command::new(crate::support::freezefs_exe());
    cmd.args(["-t", "30"]).arg(&a.mnt).arg(&b.mnt);
    assert!(with_env(&mut cmd, &a).status().unwrap().success());
    assert!(a.kernel_frozen() && b.kernel_frozen());
    let mut cmd = Command::new(crate::support::thawfs_exe());
    cmd.arg(&a.mnt).arg(&b.mnt);
    assert!(with_env(&mut cmd, &a).status().unwrap().success());
    assert!(!a.kernel_frozen() && !b.kernel_frozen());
}

#[test]
fn the_c_api_of_freeze_all_and_reset() {
    let a = Scratch::new(Kind::Ext4);
    let b = Scratch::new(Kind::Btrfs);
    let out = with_env(
        Command::new(program("all_and_reset"))
            .arg(&a.mnt)
            .arg(&b.mnt),
        &a,
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && !text.contains("not ok"), "{text}");
    assert!(!a.kernel_frozen() && !b.kernel_frozen());
}

#[test]
fn status_shows_freezing_while_the_flush_runs_and_frozen_after() {
    let fs = Arc::new(Scratch::new(Kind::Ext4));
    // Dirty data for the flush to take a while.
    std::fs::write(fs.mnt.join("dirty"), vec![0x5au8; 48 << 20]).unwrap();
    let seen_freezing = Arc::new(AtomicBool::new(false));
    let query_during_freezing = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (fs, seen, queried, done) = (
            Arc::clone(&fs),
            Arc::clone(&seen_freezing),
            Arc::clone(&query_during_freezing),
            Arc::clone(&done),
        );
        thread::spawn(move || {
            let f = fs.freezer();
            while !done.load(Ordering::SeqCst) {
                // QUERY first, then status: a QUERY that said frozen can
                // never be followed by a status that still says freezing.
                let said_frozen = f.is_frozen(&fs.mnt).unwrap_or(false);
                if let Ok(s) = f.status(&fs.mnt) {
                    if s.state == FreezeState::Freezing {
                        seen.store(true, Ordering::SeqCst);
                        if said_frozen {
                            queried.store(true, Ordering::SeqCst);
                        }
                    }
                }
            }
        })
    };
    thread::sleep(Duration::from_millis(20));
    fs.freezer().freeze(&fs.mnt, Timeout::Seconds(30)).unwrap();
    done.store(true, Ordering::SeqCst);
    watcher.join().unwrap();
    assert!(
        seen_freezing.load(Ordering::SeqCst),
        "never saw the freezing state"
    );
    assert!(
        !query_during_freezing.load(Ordering::SeqCst),
        "QUERY said frozen while freezing"
    );
    assert_eq!(
        fs.freezer().status(&fs.mnt).unwrap().state,
        FreezeState::Frozen
    );
    assert!(fs.freezer().is_frozen(&fs.mnt).unwrap());
    fs.freezer().thaw(&fs.mnt).unwrap();
}
