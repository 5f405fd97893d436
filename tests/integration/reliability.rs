//! Reliability and security (issue 7): leaks, privilege, hostile input,
//! storms, crashes, a full state directory, on real filesystems.

use crate::support;

use std::collections::HashMap;
use std::process::Command;

use support::{Kind, Scratch, fzctl, fzctl_cmd, program, with_env};

fn figures(line: &str) -> HashMap<String, i64> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.parse().unwrap()))
        .collect()
}

/// 1000 freeze/query/thaw cycles (timed, untimed, default): the caller's fd
/// count and thread count do not move; RSS grows by at most 1 MiB.
#[test]
fn a_thousand_cycles_leak_no_fd_thread_or_memory() {
    let fs = Scratch::new(Kind::Ext4);
    let out = with_env(
        Command::new(program("cycles")).arg(&fs.mnt).arg("1000"),
        &fs,
    )
    .output()
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let line = |w: &str| figures(text.lines().find(|l| l.starts_with(w)).unwrap());
    let (before, after) = (line("before"), line("after"));
    eprintln!("1000 cycles: {before:?} -> {after:?}");
    assert_eq!(before["fds"], after["fds"], "fd leak");
    assert_eq!(before["threads"], after["threads"], "thread leak");
    assert!(
        after["rss_kib"] - before["rss_kib"] <= 1024,
        "RSS grew by {} KiB",
        after["rss_kib"] - before["rss_kib"]
    );
}

/// The C API under valgrind: no leak, no invalid access.
#[test]
fn the_c_api_is_clean_under_valgrind() {
    let fs = Scratch::new(Kind::Ext4);
    let mut cmd = Command::new("valgrind");
    cmd.args([
        "--error-exitcode=99",
        "--leak-check=full",
        "--errors-for-leak-kinds=definite",
        "-q",
    ])
    .arg(program("cycles"))
    .arg(&fs.mnt)
    .arg("30");
    let out = with_env(&mut cmd, &fs).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "valgrind: {} {err}", out.status);
    assert!(!fs.kernel_frozen());
}

fn as_nobody(fs: &Scratch, args: &[&str]) -> String {
    fzctl(support::as_nobody(fs, &[], &program("fzctl")).args(args))
}

#[test]
fn every_c_entry_point_returns_eperm_to_an_unprivileged_caller() {
    let fs = Scratch::new(Kind::Ext4);
    std::fs::set_permissions(&fs.dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mnt = fs.mnt.to_str().unwrap();
    for args in [
        vec!["1", mnt, "5"],
        vec!["0", mnt],
        vec!["2", mnt],
        vec!["all", "5", mnt],
        vec!["thawall", mnt],
        vec!["reset", mnt, "5"],
        vec!["status", mnt],
        vec!["list"],
        vec!["status", "-null"],
        vec!["reset", "-null", "5"],
    ] {
        assert_eq!(as_nobody(&fs, &args), "rc=-1 errno=EPERM", "{args:?}");
    }
    assert!(!fs.kernel_frozen());
}

#[test]
fn every_command_refuses_an_unprivileged_caller() {
    let fs = Scratch::new(Kind::Ext4);
    std::fs::set_permissions(&fs.dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mnt = fs.mnt.to_str().unwrap();
    for (bin, args, code) in [
        (crate::support::freezefs_exe(), vec![mnt], 1),
        (crate::support::freezefs_exe(), vec!["-q", mnt], 2),
        (crate::support::freezefs_exe(), vec!["-r", "5", mnt], 1),
        (crate::support::freezefs_exe(), vec!["-l"], 1),
        (crate::support::thawfs_exe(), vec![mnt], 1),
    ] {
        let out = support::as_nobody(&fs, &[], std::path::Path::new(bin))
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(code), "{bin} {args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("permission denied"),
            "{bin} {args:?}"
        );
    }
    assert!(!fs.kernel_frozen());
}

#[test]
fn a_full_state_directory_fails_the_freeze_and_freezes_nothing() {
    let mut fs = Scratch::new(Kind::Ext4);
    let run_dir = fs.state_dir();
    std::fs::create_dir(&run_dir).unwrap();
    support::run(
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k,mode=0700", "none"])
            .arg(&run_dir),
    );
    // Unmounted by the fixture, also if an assertion below fails.
    fs.adopt_mount(run_dir.clone());
    // Fill it up.
    let filler = run_dir.join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 1 << 20]);
    let got = fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "30"));
    let frozen = fs.kernel_frozen();
    let _ = std::fs::remove_file(&filler);
    assert!(
        got == "rc=-1 errno=ENOSPC" || got == "rc=-1 errno=ECHILD",
        "{got}"
    );
    assert!(!frozen, "frozen with no room for its record");
}

#[test]
fn state_files_are_never_followed_through_symlinks() {
    let fs = Scratch::new(Kind::Ext4);
    // A planted record symlink and a planted lock symlink.
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "2", &fs.mnt, "0")),
        "rc=0 errno=0"
    );
    let device = fs.device();
    std::fs::create_dir_all(fs.state_dir()).unwrap();
    let victim = fs.dir.join("victim");
    std::fs::write(&victim, b"untouched").unwrap();
    let lock = fs.state_dir().join("lock.superblocks");
    let _ = std::fs::remove_file(&lock);
    std::os::unix::fs::symlink(&victim, &lock).unwrap();
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "30")),
        "rc=-1 errno=ELOOP"
    );
    assert!(!fs.kernel_frozen());
    std::fs::remove_file(&lock).unwrap();
    let record = fs.state_dir().join(format!("sb.{device}"));
    std::os::unix::fs::symlink(&victim, &record).unwrap();
    // A symlink in place of a record is a broken record: never followed.
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "2", &fs.mnt, "0")),
        "rc=-1 errno=EIO"
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
    assert_eq!(std::fs::read(&victim).unwrap(), b"untouched");
    std::fs::remove_file(&record).unwrap();
}

/// The superblock files in the state directory that start with `prefix`
/// (`lock.7:0`, not `lock.holder`).
fn state_files(fs: &Scratch, prefix: &str) -> Vec<String> {
    std::fs::read_dir(fs.state_dir())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix) && n.contains(':'))
                .collect()
        })
        .unwrap_or_default()
}

/// Every superblock's lock is a byte of one file, `lock.superblocks`: no
/// lock file of a device's own is made by a freeze, a thaw, a refused
/// freeze, a query or a freeze that timed out, so none is ever left.
#[test]
fn superblock_locks_live_in_one_file_and_a_freeze_makes_none_of_its_own() {
    let fs = Scratch::new(Kind::Ext4);
    let tmpfs = Scratch::new(Kind::Tmpfs);
    let freezer = fs.freezer();
    freezer
        .freeze(&fs.mnt, freezefs::Timeout::Seconds(1))
        .unwrap();
    assert_eq!(state_files(&fs, "lock."), Vec::<String>::new());
    assert!(fs.state_dir().join("lock.superblocks").is_file());
    freezer.thaw(&fs.mnt).unwrap();
    freezer.is_frozen(&fs.mnt).unwrap();
    assert!(
        freezer
            .freeze(&tmpfs.mnt, freezefs::Timeout::Seconds(1))
            .is_err()
    );
    assert!(freezer.thaw(&fs.mnt).is_err());
    freezer
        .freeze(&fs.mnt, freezefs::Timeout::Seconds(1))
        .unwrap();
    assert!(support::wait_until(
        std::time::Duration::from_secs(6),
        std::time::Duration::from_millis(20),
        || !fs.kernel_frozen()
    ));
    freezer.status(&fs.mnt).unwrap();
    assert_eq!(state_files(&fs, "lock."), Vec::<String>::new());
}
