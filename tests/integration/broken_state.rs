//! A full disk, a broken file or a stalled holder can neither stall nor
//! fool the keepers (issue 19): the kernel's word decides, a broken record
//! hides nothing else, and no answer is ever a guess.

use crate::support;

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{Kind, Scratch, Syslog, live_holders, wait_until, with_env};

fn freezefs(fs: &Scratch, args: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = Command::new(crate::support::freezefs_exe());
    with_env(cmd.args(args), fs).output().unwrap()
}

fn freeze(fs: &Scratch, mnt: &Path, timeout: &str) {
    let out = freezefs(fs, &[timeout_flag(), timeout.as_ref(), mnt.as_os_str()]);
    assert!(out.status.success(), "{out:?}");
}

fn timeout_flag() -> &'static std::ffi::OsStr {
    "-t".as_ref()
}

fn record_path(fs: &Scratch) -> std::path::PathBuf {
    fs.state_dir().join(format!("sb.{}", fs.device()))
}

/// A state directory with no room left when a timed-out freeze ends: the
/// thaw happens, the failure to record it is said once, and no later call
/// issues FITHAW again: another tool's later freeze stays frozen and is
/// reported as such.
#[test]
fn a_full_state_directory_never_makes_a_later_call_thaw_another_tools_freeze() {
    let mut fs = Scratch::new(Kind::Ext4);
    let syslog = Syslog::new(&fs.dir);
    fs.mount_extra("run", &["-t", "tmpfs", "-o", "size=64k,mode=0700", "none"]);
    let mut cmd = Command::new(crate::support::freezefs_exe());
    let out = with_env(cmd.args(["-t", "2"]).arg(&fs.mnt), &fs)
        .env("FREEZEFS_SYSLOG_SOCKET", &syslog.path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // Fill what is left, so that the end cannot be written.
    let filler = fs.state_dir().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 64 * 1024]);
    assert!(wait_until(
        Duration::from_secs(4),
        Duration::from_millis(10),
        || { !fs.kernel_frozen() }
    ));
    assert!(wait_until(
        Duration::from_secs(2),
        Duration::from_millis(10),
        || { fs.record_text().is_none() }
    ));
    fs.other_tool_freezes().unwrap();
    for _ in 0..3 {
        let q = freezefs(&fs, &["-q".as_ref(), fs.mnt.as_os_str()]);
        assert_eq!(q.status.code(), Some(0), "{q:?}");
        let l = freezefs(&fs, &["-l".as_ref()]);
        let listed = String::from_utf8_lossy(&l.stdout);
        assert!(
            listed.contains(&format!("{} ", fs.mnt.display())) && listed.contains(" frozen "),
            "{l:?}"
        );
    }
    assert!(
        fs.kernel_frozen(),
        "a later call thawed another tool's freeze"
    );
    fs.other_tool_thaws().unwrap();
    let _ = std::fs::remove_file(&filler);
    let said = syslog.drain();
    let failed: Vec<&String> = said
        .iter()
        .filter(|m| m.contains("could\\040not\\040be\\040recorded"))
        .collect();
    assert_eq!(failed.len(), 1, "{said:#?}");
}

/// What a hostile root user may put in place of a record.
#[derive(Debug, Clone, Copy)]
enum Broken {
    Garbage,
    Symlink,
    Fifo,
}

fn break_record(path: &Path, how: Broken) {
    std::fs::remove_file(path).unwrap();
    match how {
        Broken::Garbage => std::fs::write(path, b"not a record\n").unwrap(),
        Broken::Symlink => std::os::unix::fs::symlink("/etc/hostname", path).unwrap(),
        Broken::Fifo => {
            let status = Command::new("mkfifo")
                .arg("-m")
                .arg("600")
                .arg(path)
                .status();
            assert!(status.unwrap().success());
        }
    }
}

/// A record replaced by garbage, a symlink or a FIFO: QUERY fails at once
/// with EIO (exit 2), the holder keeps the deadline it armed, and the
/// broken file goes with the end.
#[test]
fn a_broken_record_fails_query_with_eio_and_its_deadline_still_holds() {
    for how in [Broken::Garbage, Broken::Symlink, Broken::Fifo] {
        let fs = Scratch::new(Kind::Ext4);
        freeze(&fs, &fs.mnt, "2");
        let record = fs.record_text().unwrap();
        let deadline: i64 = record
            .lines()
            .find_map(|l| l.strip_prefix("deadline_boot_ns ")?.parse().ok())
            .unwrap();
        let (device, path) = (fs.device(), record_path(&fs));
        break_record(&path, how);
        let asked = Instant::now();
        let q = freezefs(&fs, &["-q".as_ref(), fs.mnt.as_os_str()]);
        let said = String::from_utf8_lossy(&q.stderr);
        assert_eq!(q.status.code(), Some(2), "{how:?}: {q:?}");
        assert!(said.contains(&format!("sb.{device}")), "{how:?}: {said}");
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{how:?}: QUERY waited"
        );
        assert!(wait_until(
            Duration::from_secs(4),
            Duration::from_millis(10),
            || { !fs.kernel_frozen() }
        ));
        let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
        let late_ms = (ts.tv_sec * 1_000_000_000 + ts.tv_nsec - deadline) / 1_000_000;
        eprintln!("broken: {how:?} record, thawed {late_ms} ms past the deadline");
        assert!(late_ms < 1000, "{how:?}: {late_ms} ms late");
        assert!(wait_until(
            Duration::from_secs(2),
            Duration::from_millis(10),
            || { std::fs::symlink_metadata(&path).is_err() }
        ));
    }
}

/// `-l` with one broken record: every other freeze is listed, the broken
/// record is named on stderr, and the exit status says so.
#[test]
fn a_broken_record_hides_no_other_freeze_from_list() {
    let fs = Scratch::new(Kind::Ext4);
    let other = Scratch::new(Kind::Xfs);
    freeze(&fs, &fs.mnt, "30");
    freeze(&fs, &other.mnt, "30");
    let (device, path) = (fs.device(), record_path(&fs));
    break_record(&path, Broken::Garbage);
    let l = freezefs(&fs, &["-l".as_ref()]);
    let (out, err) = (
        String::from_utf8_lossy(&l.stdout),
        String::from_utf8_lossy(&l.stderr),
    );
    assert_eq!(l.status.code(), Some(2), "{l:?}");
    assert!(out.contains(&other.mnt.display().to_string()), "{out}");
    assert!(err.contains(&format!("sb.{device}")), "{err}");
    other
        .freezer()
        .with_state_dir(fs.state_dir())
        .thaw(&other.mnt)
        .unwrap();
    let _ = std::fs::remove_file(&path);
    fs.other_tool_thaws().unwrap();
}

/// Another tool froze it and the holder is stopped: QUERY does not say
/// "not frozen" without the kernel's word; it fails (exit 2) within 2 s,
/// and answers again once the holder goes on.
#[test]
fn query_never_says_not_frozen_when_the_holder_cannot_answer() {
    let fs = Scratch::new(Kind::Ext4);
    fs.other_tool_freezes().unwrap();
    let q = freezefs(&fs, &["-q".as_ref(), fs.mnt.as_os_str()]);
    assert_eq!(q.status.code(), Some(0), "{q:?}");
    let holder = live_holders(&fs)[0];
    let pid = rustix::process::Pid::from_raw(holder as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
    let asked = Instant::now();
    let q = freezefs(&fs, &["-q".as_ref(), fs.mnt.as_os_str()]);
    let took = asked.elapsed();
    rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
    assert_eq!(q.status.code(), Some(2), "{q:?}");
    assert!(took < Duration::from_millis(2500), "{took:?}");
    let q = freezefs(&fs, &["-q".as_ref(), fs.mnt.as_os_str()]);
    assert_eq!(q.status.code(), Some(0), "{q:?}");
    fs.other_tool_thaws().unwrap();
}
