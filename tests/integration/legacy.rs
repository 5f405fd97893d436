//! Legacy software (issue 4): Tru64 sources through the compat header,
//! LD_PRELOAD of the library, and the ioctl shim under real fsfreeze and
//! xfs_freeze, on real filesystems.

use crate::support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::{Kind, STRICT_C, Scratch, cc, crate_dir, lib_dir, program, run, with_env};

/// The shim, freshly built (cargo test does not rebuild a cdylib-only
/// workspace member by itself).
fn shim() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let out = Command::new(env!("CARGO"))
                .args(["build", "-p", "freezefs-preload", "--quiet"])
                .current_dir(crate_dir())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let path = lib_dir().parent().unwrap().join("libfreezefs_preload.so");
            assert!(path.exists(), "{}", path.display());
            path
        })
        .clone()
}

fn under_shim(
    fs: &Scratch,
    tool: &str,
    args: &[&std::ffi::OsStr],
    timeout: Option<&str>,
) -> Output {
    let mut cmd = Command::new(tool);
    cmd.args(args);
    let mut cmd = with_env(&mut cmd, fs);
    cmd.env("LD_PRELOAD", shim());
    if let Some(t) = timeout {
        cmd.env("FREEZEFS_TIMEOUT", t);
    }
    cmd.output().unwrap()
}

fn freezefs_q(fs: &Scratch) -> (Option<i32>, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_freezefs"));
    cmd.arg("-q").arg(&fs.mnt);
    let out = with_env(&mut cmd, fs).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn build_tru64_example(extra: &[&str]) -> PathBuf {
    let dir = support::mkdtemp("freezefs-tru64");
    let exe = dir.join("tru64_freeze");
    let lib = lib_dir();
    let mut args: Vec<&str> = extra.to_vec();
    let (compat, include) = (
        crate_dir().join("include/compat"),
        crate_dir().join("include"),
    );
    let src = crate_dir().join("examples/tru64_freeze.c");
    let rpath = format!("-Wl,-rpath,{}", lib.display());
    args.extend([
        "-I",
        compat.to_str().unwrap(),
        "-I",
        include.to_str().unwrap(),
        src.to_str().unwrap(),
        "-o",
        exe.to_str().unwrap(),
        "-L",
        lib.to_str().unwrap(),
        "-Wl,--disable-new-dtags",
        &rpath,
        "-lfreezefs",
    ]);
    cc(&args);
    exe
}

#[test]
fn the_tru64_man_page_example_builds_through_the_compat_header_and_runs() {
    for flags in [&[][..], &STRICT_C[..]] {
        let fs = Scratch::new(Kind::Ext4);
        let exe = build_tru64_example(flags);
        let mut cmd = Command::new(&exe);
        cmd.arg(&fs.mnt);
        let out = with_env(&mut cmd, &fs).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{flags:?}: {text}{}", stderr(&out));
        assert!(
            text.contains("FS_Q_QUERY says 1") && text.contains("thawed"),
            "{text}"
        );
        std::fs::remove_dir_all(exe.parent().unwrap()).unwrap();
    }
}

#[test]
fn the_compat_header_still_is_the_system_sys_mount_h() {
    let dir = support::mkdtemp("freezefs-compat");
    let src = dir.join("both.c");
    std::fs::write(
        &src,
        "#include <sys/mount.h>\nint main(void) { u_long f = FS_Q_QUERY; unsigned long ro = MS_RDONLY;\n\
         int (*m)(const char *, const char *, const char *, unsigned long, const void *) = mount;\n\
         int (*z)(char *, u_long, int) = freezefs;\n\
         (void)m; (void)z; return (int)(f + ro); }\n",
    )
    .unwrap();
    for flags in [&[][..], &STRICT_C[..]] {
        let (compat, include) = (
            crate_dir().join("include/compat"),
            crate_dir().join("include"),
        );
        let mut args = flags.to_vec();
        args.extend([
            "-fsyntax-only",
            "-I",
            compat.to_str().unwrap(),
            "-I",
            include.to_str().unwrap(),
        ]);
        args.push(src.to_str().unwrap());
        cc(&args);
    }
    std::fs::remove_dir_all(dir).unwrap();
}

fn legacy_caller_with_dead_library() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = lib_dir().join("legacy");
            std::fs::create_dir_all(&dir).unwrap();
            let dead = dir.join("libdead.so");
            cc(&[
                "-shared",
                "-fPIC",
                crate_dir()
                    .join("c-tests/dead_freezefs.c")
                    .to_str()
                    .unwrap(),
                "-o",
                dead.to_str().unwrap(),
            ]);
            let exe = dir.join("legacy_caller");
            let rpath = format!("-Wl,-rpath,{}", dir.display());
            cc(&[
                crate_dir()
                    .join("c-tests/legacy_caller.c")
                    .to_str()
                    .unwrap(),
                "-o",
                exe.to_str().unwrap(),
                "-L",
                dir.to_str().unwrap(),
                "-Wl,--disable-new-dtags",
                &rpath,
                "-ldead",
            ]);
            exe
        })
        .clone()
}

#[test]
fn ld_preload_of_libfreezefs_replaces_a_dead_freezefs() {
    let fs = Scratch::new(Kind::Xfs);
    let exe = legacy_caller_with_dead_library();
    let mut cmd = Command::new(&exe);
    cmd.arg(&fs.mnt);
    let dead =
        String::from_utf8_lossy(&with_env(&mut cmd, &fs).output().unwrap().stdout).into_owned();
    assert!(
        dead.contains(&format!("freeze=-1 errno={}", libc::ENOSYS)),
        "{dead}"
    );
    let mut cmd = Command::new(&exe);
    cmd.arg(&fs.mnt);
    let mut cmd = with_env(&mut cmd, &fs);
    cmd.env("LD_PRELOAD", lib_dir().join("libfreezefs.so"));
    let real = String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned();
    assert!(
        real.contains("freeze=0 errno=0") && real.contains("query=1") && real.contains("thaw=0"),
        "{real}"
    );
    assert!(!fs.kernel_frozen());
}

#[test]
fn preloading_libfreezefs_does_nothing_until_called() {
    let exe = legacy_caller_with_dead_library();
    let plain = run(Command::new(&exe).env_remove("LD_PRELOAD"));
    let preloaded = run(Command::new(&exe).env("LD_PRELOAD", lib_dir().join("libfreezefs.so")));
    assert_eq!(
        plain, preloaded,
        "loading the library changed threads, fds or signal handlers"
    );
    assert!(preloaded.contains("threads=1 "), "{preloaded}");
}

#[test]
fn libfreezefs_exports_only_the_api() {
    let symbols = run(Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(lib_dir().join("libfreezefs.so")));
    let names: Vec<&str> = symbols
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(names, support::C_API, "{symbols}");
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
    let vx = program("vx_ioctls");
    let call = |fs: &Scratch, args: &[&std::ffi::OsStr]| {
        let out = under_shim(fs, vx.to_str().unwrap(), args, None);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
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

#[test]
fn the_shim_refuses_to_freeze_root_usr_and_var() {
    let fs = Scratch::new(Kind::Ext4);
    // Prove the shim is active first: if it were not, fsfreeze -f / below
    // would freeze the machine (the test guard would thaw it, and fail).
    let out = under_shim(
        &fs,
        "fsfreeze",
        &["-f".as_ref(), fs.mnt.as_os_str()],
        Some("5"),
    );
    assert!(out.status.success());
    assert!(fs.record_text().is_some(), "the shim is not active");
    run(Command::new("fsfreeze").arg("-u").arg(&fs.mnt));
    for path in ["/", "/usr", "/var"] {
        let out = under_shim(&fs, "fsfreeze", &["-f".as_ref(), path.as_ref()], Some("1"));
        assert!(
            !out.status.success(),
            "fsfreeze -f {path} succeeded under the shim"
        );
        assert!(
            stderr(&out).contains("Operation not supported"),
            "{path}: {}",
            stderr(&out)
        );
    }
    support::assert_system_never_frozen();
}

#[test]
fn the_rust_raii_example_runs() {
    let fs = Scratch::new(Kind::Ext4);
    let exe = lib_dir().parent().unwrap().join("examples/raii_freeze");
    let mut cmd = Command::new(&exe);
    cmd.arg(&fs.mnt).arg("30");
    let out = with_env(&mut cmd, &fs).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(
        text.contains("held: Ok(true)") && text.contains("the freeze held throughout"),
        "{text}"
    );
    assert!(!fs.kernel_frozen());
}
