//! Hostile input (issue 7), the cases not covered elsewhere; the whole list,
//! with where each is tested, is docs/hostile-input.md. Every case: its
//! documented result, and nothing frozen.

use crate::support;

use std::os::unix::ffi::OsStrExt;
use std::process::Command;

use support::{Kind, Scratch, fzctl, fzctl_cmd, program, with_env};

fn c_api(fs: &Scratch, args: &[&std::ffi::OsStr]) -> String {
    let mut cmd = Command::new(program("fzctl"));
    cmd.args(args);
    fzctl(&mut with_env(&mut cmd, fs))
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

#[test]
fn paths_that_are_not_mount_roots_or_do_not_exist() {
    let fs = Scratch::new(Kind::Ext4);
    for (path, op, want) in [
        ("/tmp/no such\nmount", "1", "rc=-1 errno=ENOENT"),
        ("/tmp/literal\\040escape", "1", "rc=-1 errno=ENOENT"),
        ("/proc/self/fd/0", "1", "rc=-1 errno=EINVAL"),
        ("/proc/self/mountinfo", "2", "rc=-1 errno=EINVAL"),
        ("/dev/null", "1", "rc=-1 errno=EINVAL"),
        ("/proc", "2", "rc=0 errno=0"),
        ("/proc", "1", "rc=-1 errno=EOPNOTSUPP"),
        ("/sys", "1", "rc=-1 errno=EOPNOTSUPP"),
    ] {
        assert_eq!(
            c_api(&fs, &[os(op), os(path), os("5")]),
            want,
            "{op} {path:?}"
        );
    }
    let non_utf8 = std::ffi::OsStr::from_bytes(b"/tmp/\xff\xfe-missing");
    assert_eq!(
        c_api(&fs, &[os("1"), non_utf8, os("5")]),
        "rc=-1 errno=ENOENT"
    );
    assert!(!fs.kernel_frozen());
    support::assert_system_never_frozen();
}

#[test]
fn every_unknown_flag_bit_is_einval_and_freezes_nothing() {
    let fs = Scratch::new(Kind::Ext4);
    let mnt = fs.mnt.as_os_str();
    for bit in 2..64u32 {
        let flags = (1u64 << bit).to_string();
        assert_eq!(
            c_api(&fs, &[os(&flags), mnt, os("5")]),
            "rc=-1 errno=EINVAL",
            "bit {bit}"
        );
    }
    assert!(!fs.kernel_frozen());
}

#[test]
fn reset_with_extreme_timeouts() {
    let fs = Scratch::new(Kind::Xfs);
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "30")),
        "rc=0 errno=0"
    );
    let mnt = fs.mnt.as_os_str();
    assert_eq!(
        c_api(&fs, &[os("reset"), mnt, os(&i32::MIN.to_string())]),
        "rc=0 errno=0"
    );
    assert_eq!(
        fs.freezer().status(&fs.mnt).unwrap().timeout,
        Some(freezefs::Timeout::Never)
    );
    assert_eq!(
        c_api(&fs, &[os("reset"), mnt, os(&i32::MAX.to_string())]),
        "rc=0 errno=0"
    );
    assert_eq!(
        fs.freezer().status(&fs.mnt).unwrap().timeout,
        Some(freezefs::Timeout::Seconds(i32::MAX as u32))
    );
    fs.freezer().thaw(&fs.mnt).unwrap();
}

#[test]
fn hostile_command_arguments() {
    let fs = Scratch::new(Kind::Ext4);
    let run = |args: &[&std::ffi::OsStr]| {
        let mut cmd = Command::new(crate::support::freezefs_exe());
        cmd.args(args);
        with_env(&mut cmd, &fs).output().unwrap()
    };
    let out = run(&[os("-t"), os("99999999999"), fs.mnt.as_os_str()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an overflowing timeout is a usage error"
    );
    let out = run(&[os("/tmp/line\nbreak")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no such file"),
        "{out:?}"
    );
    // A mount point that is not UTF-8 is just a mount point.
    let mut named = Scratch::new(Kind::Ext4);
    let odd = named.dir.join(std::ffi::OsStr::from_bytes(b"\xff\xfe"));
    std::fs::create_dir(&odd).unwrap();
    support::run(
        Command::new("mount")
            .arg("--bind")
            .arg(&named.mnt)
            .arg(&odd),
    );
    named.adopt_mount(odd.clone());
    let mut cmd = Command::new(crate::support::freezefs_exe());
    cmd.args(["-t", "30"]).arg(&odd);
    assert!(with_env(&mut cmd, &named).status().unwrap().success());
    assert!(named.kernel_frozen());
    named.freezer().thaw(&odd).unwrap();
    assert!(!fs.kernel_frozen());
}

#[test]
fn hostile_environment() {
    let fs = Scratch::new(Kind::Ext4);
    // An empty FREEZEFS_RUNDIR means the default; QUERY only reads.
    let mut cmd = fzctl_cmd(&fs, "2", &fs.mnt, "0");
    cmd.env("FREEZEFS_RUNDIR", "");
    assert_eq!(fzctl(&mut cmd), "rc=0 errno=0");
    // A sysconfigtab that does not exist: 60 s.
    let mut cmd = fzctl_cmd(&fs, "1", &fs.mnt, "0");
    cmd.env("FREEZEFS_SYSCONFIGTAB", fs.dir.join("nope"));
    assert_eq!(fzctl(&mut cmd), "rc=0 errno=0");
    assert_eq!(
        fs.freezer().status(&fs.mnt).unwrap().timeout,
        Some(freezefs::Timeout::Seconds(60))
    );
    fs.freezer().thaw(&fs.mnt).unwrap();
    // A "holder" that is not one: no answer, ECHILD, nothing frozen. (A
    // holder already running is used whatever FREEZEFS_HOLDER says: wait
    // for the one started above to exit.)
    std::thread::sleep(std::time::Duration::from_millis(400));
    let mut cmd = fzctl_cmd(&fs, "1", &fs.mnt, "30");
    cmd.env("FREEZEFS_HOLDER", "/bin/true");
    assert_eq!(fzctl(&mut cmd), "rc=-1 errno=ECHILD");
    assert!(!fs.kernel_frozen());
    assert_eq!(fs.record_text(), None);
}

/// Each hostile sysconfigtab gives the 60 s default, at once (a FIFO does
/// not block the freeze).
#[test]
fn hostile_sysconfigtab_files_give_60_seconds() {
    let fs = Scratch::new(Kind::Ext4);
    let dir = fs.dir.join("configs");
    std::fs::create_dir(&dir).unwrap();
    let binary = dir.join("binary");
    std::fs::write(&binary, (0..=255u8).cycle().take(8192).collect::<Vec<u8>>()).unwrap();
    let huge = dir.join("huge");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let fifo = dir.join("fifo");
    support::run(Command::new("mkfifo").arg(&fifo));
    let directory = dir.join("directory");
    std::fs::create_dir(&directory).unwrap();
    let (loop_a, loop_b) = (dir.join("loop-a"), dir.join("loop-b"));
    std::os::unix::fs::symlink(&loop_b, &loop_a).unwrap();
    std::os::unix::fs::symlink(&loop_a, &loop_b).unwrap();
    for config in [&binary, &huge, &fifo, &directory, &loop_a] {
        let started = std::time::Instant::now();
        let mut cmd = fzctl_cmd(&fs, "1", &fs.mnt, "0");
        cmd.env("FREEZEFS_SYSCONFIGTAB", config);
        assert_eq!(fzctl(&mut cmd), "rc=0 errno=0", "{}", config.display());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{} blocked",
            config.display()
        );
        assert_eq!(
            fs.freezer().status(&fs.mnt).unwrap().timeout,
            Some(freezefs::Timeout::Seconds(60)),
            "{}",
            config.display()
        );
        fs.freezer().thaw(&fs.mnt).unwrap();
    }
}

/// An unreadable sysconfigtab (mode 0000, read by a CAP_SYS_ADMIN caller
/// without CAP_DAC_OVERRIDE) gives 60 s.
#[test]
fn an_unreadable_sysconfigtab_gives_60_seconds() {
    let fs = Scratch::new(Kind::Ext4);
    std::fs::set_permissions(&fs.dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let run_dir = fs.state_dir();
    std::fs::create_dir(&run_dir).unwrap();
    std::fs::set_permissions(
        &run_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    std::os::unix::fs::chown(&run_dir, Some(65534), Some(65534)).unwrap();
    support::write_sysconfigtab(&fs.sysconfigtab(), "7");
    std::fs::set_permissions(
        fs.sysconfigtab(),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let caps = ["--inh-caps=+sys_admin", "--ambient-caps=+sys_admin"];
    let mut cmd = support::as_nobody(&fs, &caps, &program("fzctl"));
    cmd.arg("1").arg(&fs.mnt).arg("0");
    assert_eq!(fzctl(&mut cmd), "rc=0 errno=0");
    // That user's state directory is not root's to use: read the record.
    let record = std::fs::read_dir(&run_dir)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().starts_with("sb."))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .unwrap();
    assert!(record.contains("timeout_s 60\n"), "{record}");
    support::run(Command::new("fsfreeze").arg("-u").arg(&fs.mnt));
}

/// A tampered record: QUERY does not guess (EIO); FREEZE, which asks the
/// kernel, replaces it; THAW removes it.
#[test]
fn a_corrupt_record() {
    let fs = Scratch::new(Kind::Ext4);
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "2", &fs.mnt, "0")),
        "rc=0 errno=0"
    );
    let device = fs.device();
    std::fs::create_dir_all(fs.state_dir()).unwrap();
    let record = fs.state_dir().join(format!("sb.{device}"));
    std::fs::write(&record, b"freezefs-record 1\ngeneration 1\n").unwrap();
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "2", &fs.mnt, "0")),
        "rc=-1 errno=EIO"
    );
    assert!(!fs.kernel_frozen());
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "30")),
        "rc=0 errno=0"
    );
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "2", &fs.mnt, "0")),
        "rc=1 errno=0"
    );
    std::fs::write(&record, b"\xff\xfe garbage").unwrap();
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "0", &fs.mnt, "0")),
        "rc=0 errno=0"
    );
    assert!(!record.exists());
    assert!(!fs.kernel_frozen());
}
