//! Legacy software (issue 4): Tru64 sources through the compat header,
//! LD_PRELOAD of the library, and the ioctl shim under real fsfreeze and
//! xfs_freeze, on real filesystems.

use crate::support;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use support::{Kind, STRICT_C, Scratch, cc, crate_dir, lib_dir, run, with_env};

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
