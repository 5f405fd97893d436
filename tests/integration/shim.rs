//! The preload shim (`libfreezefs_preload.so`): unmodified raw-ioctl tools
//! (util-linux fsfreeze, xfs_freeze, VxFS callers, the way qemu-guest-agent
//! calls FIFREEZE) get the kernel's contract plus a deadline and a keeper.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::{
    Kind, Scratch, Syslog, event, fzctl, fzctl_cmd, program, shim, under_shim, with_env,
    write_sysconfigtab,
};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn freezefs_q(fs: &Scratch) -> (Option<i32>, String) {
    let mut cmd = Command::new(crate::support::freezefs_exe());
    cmd.arg("-q").arg(&fs.mnt);
    let out = with_env(&mut cmd, fs).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

#[test]
fn fsfreeze_under_the_shim_gets_a_deadline_a_holder_and_a_list_entry() {
    let fs = Scratch::new(Kind::Ext4);
    let mnt = fs.mnt.as_os_str();
    let out = under_shim(&fs, "fsfreeze", &["-f".as_ref(), mnt], Some("2"));
    assert!(out.status.success(), "{}", stderr(&out));
    let frozen_at = Instant::now();
    assert_eq!(
        freezefs_q(&fs),
        (Some(0), format!("{} is frozen", fs.mnt.display()))
    );
    let status = fs.freezer().status(&fs.mnt).unwrap();
    assert_eq!(status.timeout, Some(freezefs::Timeout::Seconds(2)));
    assert!(status.holder_pid.is_some());
    let environ = std::fs::read(format!("/proc/{}/environ", status.holder_pid.unwrap())).unwrap();
    assert!(
        !String::from_utf8_lossy(&environ).contains("LD_PRELOAD"),
        "the holder got the shim"
    );

    let thawed = fs
        .write_in_background()
        .recv_timeout(Duration::from_secs(5))
        .unwrap();
    let after = thawed.duration_since(frozen_at);
    eprintln!("fsfreeze -f under the shim, FREEZEFS_TIMEOUT=2: thawed after {after:?}");
    assert!(
        after > Duration::from_millis(1800) && after < Duration::from_millis(2600),
        "{after:?}"
    );
    assert_eq!(freezefs_q(&fs).0, Some(1));
}

#[test]
fn fsfreeze_under_the_shim_keeps_the_kernel_contract() {
    let fs = Scratch::new(Kind::Btrfs);
    let mnt = fs.mnt.as_os_str();
    let out = under_shim(&fs, "fsfreeze", &["-f".as_ref(), mnt], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        fs.freezer().status(&fs.mnt).unwrap().timeout,
        Some(freezefs::Timeout::Seconds(60))
    );
    let again = under_shim(&fs, "fsfreeze", &["-f".as_ref(), mnt], None);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("Device or resource busy"),
        "{}",
        stderr(&again)
    );
    let thaw = under_shim(&fs, "fsfreeze", &["-u".as_ref(), mnt], None);
    assert!(thaw.status.success(), "{}", stderr(&thaw));
    assert!(!fs.kernel_frozen());
    assert_eq!(fs.record_text(), None, "fsfreeze -u left a record");
    let thaw = under_shim(&fs, "fsfreeze", &["-u".as_ref(), mnt], None);
    assert!(
        stderr(&thaw).contains("Invalid argument"),
        "{}",
        stderr(&thaw)
    );
    let tmpfs = Scratch::new(Kind::Tmpfs);
    let out = under_shim(
        &tmpfs,
        "fsfreeze",
        &["-f".as_ref(), tmpfs.mnt.as_os_str()],
        None,
    );
    assert!(
        stderr(&out).contains("Operation not supported"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn xfs_freeze_under_the_shim_freezes_queries_and_thaws() {
    let fs = Scratch::new(Kind::Xfs);
    let mnt = fs.mnt.as_os_str();
    let out = under_shim(&fs, "xfs_freeze", &["-f".as_ref(), mnt], Some("30"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(freezefs_q(&fs).0, Some(0));
    assert!(fs.kernel_frozen());
    // xfs_io passes a pointer to 1: "no timeout given", so FREEZEFS_TIMEOUT applies.
    assert_eq!(
        fs.freezer().status(&fs.mnt).unwrap().timeout,
        Some(freezefs::Timeout::Seconds(30))
    );
    let again = under_shim(&fs, "xfs_freeze", &["-f".as_ref(), mnt], None);
    assert!(!again.status.success(), "a double freeze was accepted");
    let out = under_shim(&fs, "xfs_freeze", &["-u".as_ref(), mnt], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(freezefs_q(&fs).0, Some(1));
    assert!(!fs.kernel_frozen());
}

#[test]
fn the_2008_patch_timeout_pointer_and_the_vxfs_requests() {
    let a = Scratch::new(Kind::Ext4);
    let b = Scratch::new(Kind::Xfs);
    let call = |fs: &Scratch, args: &[&std::ffi::OsStr]| {
        // A tool written for the 2008 patch, which opts in to its pointer.
        stdout(&vx_call(
            fs,
            args,
            &[("FREEZEFS_FIFREEZE_TIMEOUT_POINTER", "1")],
        ))
    };
    // Every call runs with a's state directory, so a's freezer sees both.
    let timeout = |fs: &Scratch| a.freezer().status(&fs.mnt).unwrap().timeout;
    use freezefs::Timeout::Seconds;

    assert_eq!(
        call(&a, &["fifreeze".as_ref(), a.mnt.as_os_str(), "7".as_ref()]),
        "rc=0 errno=0"
    );
    assert_eq!(timeout(&a), Some(Seconds(7)), "a pointer to 7 is 7 s");
    assert_eq!(
        call(&a, &["fithaw".as_ref(), a.mnt.as_os_str()]),
        "rc=0 errno=0"
    );
    assert_eq!(
        call(&a, &["fifreeze".as_ref(), a.mnt.as_os_str(), "1".as_ref()]),
        "rc=0 errno=0"
    );
    assert_eq!(
        timeout(&a),
        Some(Seconds(60)),
        "a pointer to 1 means none given: the default"
    );
    assert_eq!(
        call(&a, &["fithaw".as_ref(), a.mnt.as_os_str()]),
        "rc=0 errno=0"
    );
    assert_eq!(
        call(&a, &["fithaw".as_ref(), a.mnt.as_os_str()]),
        format!("rc=-1 errno={}", libc::EINVAL)
    );

    assert_eq!(
        call(&a, &["vxfreeze".as_ref(), a.mnt.as_os_str(), "9".as_ref()]),
        "rc=0 errno=0"
    );
    assert_eq!(
        timeout(&a),
        Some(Seconds(9)),
        "VX_FREEZE takes its timeout by value"
    );
    assert_eq!(
        call(&a, &["vxfreeze".as_ref(), a.mnt.as_os_str(), "9".as_ref()]),
        format!("rc=-1 errno={}", libc::EBUSY)
    );
    assert_eq!(
        call(&a, &["vxthaw".as_ref(), a.mnt.as_os_str()]),
        "rc=0 errno=0"
    );

    let all = [
        "vxfreezeall".as_ref(),
        "11".as_ref(),
        a.mnt.as_os_str(),
        b.mnt.as_os_str(),
    ];
    assert_eq!(call(&a, &all), "rc=0 errno=0");
    assert!(a.kernel_frozen() && b.kernel_frozen());
    assert_eq!(
        (timeout(&a), timeout(&b)),
        (Some(Seconds(11)), Some(Seconds(11)))
    );
    assert_eq!(
        call(&a, &["vxthaw".as_ref(), a.mnt.as_os_str()]),
        "rc=0 errno=0"
    );
    assert_eq!(
        call(&b, &["vxthaw".as_ref(), b.mnt.as_os_str()]),
        "rc=0 errno=0"
    );

    // All or nothing: the second is already frozen, so the first is undone.
    assert_eq!(
        call(&b, &["vxfreeze".as_ref(), b.mnt.as_os_str(), "30".as_ref()]),
        "rc=0 errno=0"
    );
    assert_eq!(call(&a, &all), format!("rc=-1 errno={}", libc::EBUSY));
    assert!(
        !a.kernel_frozen(),
        "VX_FREEZE_ALL left the first filesystem frozen"
    );
    assert_eq!(
        call(&b, &["vxthaw".as_ref(), b.mnt.as_os_str()]),
        "rc=0 errno=0"
    );
}

#[test]
fn other_ioctls_pass_through_the_shim() {
    let fs = Scratch::new(Kind::Ext4);
    let image = fs.image.clone().unwrap();
    let out = under_shim(&fs, "losetup", &["-a".as_ref()], None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&*image.to_string_lossy()));
    let out = under_shim(
        &fs,
        "blockdev",
        &["--getsize64".as_ref(), "/dev/loop-control".as_ref()],
        None,
    );
    let direct = Command::new("blockdev")
        .args(["--getsize64", "/dev/loop-control"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        direct.status.code(),
        "a failing ioctl fails the same way"
    );
    assert_eq!(stderr(&out), stderr(&direct));
}

/// vx_ioctls under the shim, with the extra environment given.
fn vx_call(fs: &Scratch, args: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(program("vx_ioctls"));
    cmd.args(args);
    let mut cmd = with_env(&mut cmd, fs);
    cmd.env("LD_PRELOAD", shim());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn fifreezes_third_argument_is_ignored_unless_the_tool_opts_in() {
    let fs = Scratch::new(Kind::Ext4);
    write_sysconfigtab(&fs.sysconfigtab(), "45");
    let freeze = ["fifreeze".as_ref(), fs.mnt.as_os_str(), "7".as_ref()];
    // What qemu-guest-agent and open-vm-tools leave there is no timeout.
    assert_eq!(stdout(&vx_call(&fs, &freeze, &[])), "rc=0 errno=0");
    let timeout = fs.freezer().status(&fs.mnt).unwrap().timeout;
    assert_eq!(
        timeout,
        Some(freezefs::Timeout::Seconds(45)),
        "the default, not 7"
    );
    fs.freezer().thaw(&fs.mnt).unwrap();
    let opted_in = [("FREEZEFS_FIFREEZE_TIMEOUT_POINTER", "1")];
    assert_eq!(stdout(&vx_call(&fs, &freeze, &opted_in)), "rc=0 errno=0");
    let timeout = fs.freezer().status(&fs.mnt).unwrap().timeout;
    assert_eq!(timeout, Some(freezefs::Timeout::Seconds(7)));
    fs.freezer().thaw(&fs.mnt).unwrap();
}

#[test]
fn a_freezefs_timeout_that_is_not_a_number_fails_the_freeze_loudly() {
    let fs = Scratch::new(Kind::Ext4);
    let out = under_shim(
        &fs,
        "fsfreeze",
        &["-f".as_ref(), fs.mnt.as_os_str()],
        Some("soon"),
    );
    assert!(
        !out.status.success(),
        "fsfreeze -f with FREEZEFS_TIMEOUT=soon succeeded"
    );
    assert!(
        stderr(&out).contains("FREEZEFS_TIMEOUT=\"soon\" is not a whole number of seconds"),
        "{}",
        stderr(&out)
    );
    assert!(!fs.kernel_frozen(), "frozen despite the bad setting");
    assert_eq!(fs.record_text(), None);
}

#[test]
fn a_thaw_after_a_timeout_answers_by_the_callers_contract() {
    let fs = Scratch::new(Kind::Ext4);
    let mnt = fs.mnt.as_os_str();
    let one_second = [("FREEZEFS_TIMEOUT", "1")];
    let timed_out = || std::thread::sleep(Duration::from_millis(1300));
    // FITHAW: the kernel's "not frozen", which qemu-guest-agent counts on.
    let freeze = ["fifreeze".as_ref(), mnt, "0".as_ref()];
    assert_eq!(stdout(&vx_call(&fs, &freeze, &one_second)), "rc=0 errno=0");
    timed_out();
    let fithaw = vx_call(&fs, &["fithaw".as_ref(), mnt], &[]);
    assert_eq!(stdout(&fithaw), format!("rc=-1 errno={}", libc::EINVAL));
    // VX_THAW: VxFS's ETIMEDOUT.
    let vxfreeze = ["vxfreeze".as_ref(), mnt, "1".as_ref()];
    assert_eq!(stdout(&vx_call(&fs, &vxfreeze, &[])), "rc=0 errno=0");
    timed_out();
    let vxthaw = vx_call(&fs, &["vxthaw".as_ref(), mnt], &[]);
    assert_eq!(stdout(&vxthaw), format!("rc=-1 errno={}", libc::ETIMEDOUT));
    // freezefs(): AdvFS's EALREADY.
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "1")),
        "rc=0 errno=0"
    );
    timed_out();
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "0", &fs.mnt, "0")),
        "rc=-1 errno=EALREADY"
    );
}

#[test]
fn a_thaw_of_a_filesystem_that_is_not_frozen_is_no_error_event() {
    let fs = Scratch::new(Kind::Ext4);
    let log = Syslog::new(&fs.dir);
    let socket = log.path.to_str().unwrap().to_string();
    let device = fs.device();
    // What qemu-guest-agent's thaw does to every filesystem it sees.
    let out = vx_call(
        &fs,
        &["fithaw".as_ref(), fs.mnt.as_os_str()],
        &[("FREEZEFS_SYSLOG_SOCKET", &socket)],
    );
    assert_eq!(stdout(&out), format!("rc=-1 errno={}", libc::EINVAL));
    let messages = log.drain();
    let failed = event(&messages, "freezefs.failed");
    // daemon.debug: 3 * 8 + 7.
    assert!(failed.starts_with("<31>"), "{failed}");
    assert!(
        failed.contains(&format!(
            "mount_point={} device={device} ",
            fs.mnt.display()
        )),
        "{failed}"
    );
}

#[test]
fn the_shim_says_on_stderr_why_a_freeze_failed() {
    let fs = Scratch::new(Kind::Ext4);
    let mut cmd = Command::new("fsfreeze");
    cmd.arg("-f").arg(&fs.mnt);
    let out = with_env(&mut cmd, &fs)
        .env("LD_PRELOAD", shim())
        .env("FREEZEFS_HOLDER", fs.dir.join("no-such-holder"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = stderr(&out);
    let said: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("freezefs shim: "))
        .collect();
    assert_eq!(said.len(), 1, "{}", stderr(&out));
    assert!(said[0].contains("cannot start the holder"), "{}", said[0]);
    assert!(!fs.kernel_frozen());
}
