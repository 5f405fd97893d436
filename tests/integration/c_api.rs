//! The C API through the public header: C programs in c-tests/ compiled with
//! -Wall -Wextra -Werror and run here against real filesystems, from other
//! processes, uids, umasks and environments.

use crate::support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Output};
use std::time::Duration;

use support::{
    Kind, STRICT_C, Scratch, cc, crate_dir, example, fzctl, fzctl_cmd, lib_dir, program, run,
    with_env,
};

fn tap(out: &Output) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "C test failed ({}):\n{text}",
        out.status
    );
    assert!(!text.contains("not ok"), "{text}");
    text
}

#[test]
fn the_header_compiles_as_pedantic_c99_and_as_cpp() {
    let dir = support::mkdtemp("freezefs-header");
    let src = dir.join("use.c");
    std::fs::write(
        &src,
        "#include <freezefs.h>\nint main(void) { unsigned long f = FS_Q_FREEZE | FS_Q_QUERY | FS_Q_THAW;\n\
         int (*fn)(char *, unsigned long, int) = freezefs; return (int)f + (fn == 0); }\n",
    )
    .unwrap();
    let include = crate_dir().join("include");
    for (compiler, std) in [("cc", "-std=c99"), ("c++", "-std=c++11")] {
        run(Command::new(compiler)
            .args([
                std,
                "-Wall",
                "-Wextra",
                "-Werror",
                "-pedantic",
                "-fsyntax-only",
                "-x",
            ])
            .arg(if compiler == "cc" { "c" } else { "c++" })
            .arg("-I")
            .arg(&include)
            .arg(&src));
    }
    std::fs::remove_dir_all(dir).unwrap();
}

fn c_contract(kind: Kind) {
    let fs = Scratch::new(kind);
    let sub = fs.mnt.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let out = with_env(
        Command::new(program("contract")).arg(&fs.mnt).arg(&sub),
        &fs,
    )
    .output()
    .unwrap();
    let text = tap(&out);
    assert!(text.contains("1..30"), "{text}");
    assert!(!fs.kernel_frozen());
}

#[test]
fn the_c_contract_holds_on_ext4() {
    c_contract(Kind::Ext4);
}

#[test]
fn the_c_contract_holds_on_xfs() {
    c_contract(Kind::Xfs);
}

#[test]
fn the_c_contract_holds_on_btrfs() {
    c_contract(Kind::Btrfs);
}

#[test]
fn the_static_library_links_and_keeps_the_contract() {
    let fs = Scratch::new(Kind::Ext4);
    let sub = fs.mnt.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let lib = lib_dir();
    let exe = fs.dir.join("contract-static");
    cc(&[
        &STRICT_C[..],
        &[
            "-I",
            crate_dir().join("include").to_str().unwrap(),
            crate_dir().join("c-tests/contract.c").to_str().unwrap(),
            lib.join("libfreezefs.a").to_str().unwrap(),
            "-o",
            exe.to_str().unwrap(),
            "-lgcc_s",
            "-lpthread",
            "-ldl",
            "-lm",
            "-lc",
        ],
    ]
    .concat());
    let out = with_env(Command::new(&exe).arg(&fs.mnt).arg(&sub), &fs)
        .output()
        .unwrap();
    tap(&out);
    let ldd = run(Command::new("ldd").arg(&exe));
    assert!(!ldd.contains("libfreezefs"), "linked dynamically: {ldd}");
}

#[test]
fn the_helper_thread_and_fork_children_behave() {
    let fs = Scratch::new(Kind::Ext4);
    let out = with_env(Command::new(program("threads_and_fork")).arg(&fs.mnt), &fs)
        .output()
        .unwrap();
    tap(&out);
    assert!(!fs.kernel_frozen());
}

#[test]
fn a_freeze_made_by_a_process_that_exited_is_seen_and_thawed_by_another() {
    let fs = Scratch::new(Kind::Xfs);
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "-1")),
        "rc=0 errno=0"
    );
    assert!(fs.freezer().is_frozen(&fs.mnt).unwrap());
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "2", &fs.mnt, "0")),
        "rc=1 errno=0"
    );
    fs.freezer().thaw(&fs.mnt).unwrap();
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "2", &fs.mnt, "0")),
        "rc=0 errno=0"
    );
    assert!(!fs.kernel_frozen());
}

#[test]
fn the_deadline_of_a_freezer_that_exited_is_enforced_by_the_next_query() {
    let fs = Scratch::new(Kind::Ext4);
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "1")),
        "rc=0 errno=0"
    );
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "2", &fs.mnt, "0")),
        "rc=1 errno=0"
    );
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "2", &fs.mnt, "0")),
        "rc=0 errno=0"
    );
    assert!(!fs.kernel_frozen());
    assert_eq!(fs.record_text(), None);
}

#[test]
fn the_c_api_reads_the_default_timeout_from_freezefs_sysconfigtab() {
    let fs = Scratch::new(Kind::Ext4);
    support::write_sysconfigtab(&fs.sysconfigtab(), "7");
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "0")),
        "rc=0 errno=0"
    );
    assert!(fs.record_text().unwrap().contains("timeout_s 7\n"));
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "0", &fs.mnt, "0")),
        "rc=0 errno=0"
    );
}

/// Makes the scratch tree reachable for another uid.
fn open_up(fs: &Scratch) {
    std::fs::set_permissions(&fs.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn as_nobody(fs: &Scratch, caps: &[&str], args: &[&str]) -> String {
    fzctl(support::as_nobody(fs, caps, &program("fzctl")).args(args))
}

#[test]
fn an_unprivileged_caller_gets_eperm_for_every_operation_first() {
    let fs = Scratch::new(Kind::Ext4);
    open_up(&fs);
    let mnt = fs.mnt.to_str().unwrap();
    for (flags, path) in [
        ("0", mnt),
        ("1", mnt),
        ("2", mnt),
        ("3", mnt),
        ("1", "-null"),
        ("2", ""),
    ] {
        assert_eq!(
            as_nobody(&fs, &[], &[flags, path, "5"]),
            "rc=-1 errno=EPERM",
            "flags {flags} path {path:?}"
        );
    }
    assert!(!fs.kernel_frozen());
}

#[test]
fn cap_sys_admin_without_root_is_enough() {
    let fs = Scratch::new(Kind::Ext4);
    open_up(&fs);
    // A state directory of that user's own: root's 0700 one is closed to it.
    let run_dir = fs.state_dir();
    std::fs::create_dir(&run_dir).unwrap();
    std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(&run_dir, Some(65534), Some(65534)).unwrap();
    let caps = ["--inh-caps=+sys_admin", "--ambient-caps=+sys_admin"];
    let mnt = fs.mnt.to_str().unwrap();
    assert_eq!(as_nobody(&fs, &caps, &["1", mnt, "30"]), "rc=0 errno=0");
    assert!(fs.kernel_frozen());
    assert_eq!(as_nobody(&fs, &caps, &["2", mnt]), "rc=1 errno=0");
    assert_eq!(as_nobody(&fs, &caps, &["0", mnt]), "rc=0 errno=0");
    assert!(!fs.kernel_frozen());
}

#[test]
fn environment_overrides_are_ignored_in_a_setuid_program() {
    // A tmpfs: QUERY answers it from the state directory alone (no probe).
    let fs = Scratch::new(Kind::Tmpfs);
    open_up(&fs);
    // FREEZEFS_RUNDIR names a symlink: a caller that honours it fails with
    // ELOOP, one that ignores it reads /run/freezefs and answers 0.
    let planted = fs.dir.join("planted");
    std::os::unix::fs::symlink("/etc", &planted).unwrap();
    let setuid = fs.dir.join("fzctl-setuid");
    std::fs::copy(program("fzctl"), &setuid).unwrap();
    std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let mnt = fs.mnt.to_str().unwrap();
    let mut plain = fzctl_cmd(&fs, "2", &fs.mnt, "0");
    plain.env("FREEZEFS_RUNDIR", &planted);
    assert_eq!(fzctl(&mut plain), "rc=-1 errno=ELOOP");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(&setuid)
        .args(["2", mnt]);
    let mut cmd = with_env(&mut cmd, &fs);
    cmd.env("FREEZEFS_RUNDIR", &planted);
    assert_eq!(fzctl(&mut cmd), "rc=0 errno=0");
}

#[test]
fn the_state_directory_is_created_0700_and_records_0600_whatever_the_umask() {
    let fs = Scratch::new(Kind::Ext4);
    let script = format!(
        "umask 0; exec {} 1 {} 30",
        program("fzctl").display(),
        fs.mnt.display()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script);
    assert_eq!(fzctl(&mut with_env(&mut cmd, &fs)), "rc=0 errno=0");
    let dir = std::fs::metadata(fs.state_dir()).unwrap();
    assert_eq!(dir.mode() & 0o7777, 0o700);
    assert_eq!(dir.uid(), 0);
    for entry in std::fs::read_dir(fs.state_dir()).unwrap() {
        let meta = entry.unwrap().metadata().unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o600);
    }
    fs.freezer().thaw(&fs.mnt).unwrap();
}

fn assert_refused_state_dir(fs: &Scratch, want: &str) {
    let got = fzctl(&mut fzctl_cmd(fs, "1", &fs.mnt, "30"));
    assert_eq!(got, format!("rc=-1 errno={want}"));
    assert!(
        !fs.kernel_frozen(),
        "frozen despite an unsafe state directory"
    );
}

#[test]
fn a_state_directory_owned_by_another_user_is_refused() {
    let fs = Scratch::new(Kind::Ext4);
    std::fs::create_dir(fs.state_dir()).unwrap();
    std::fs::set_permissions(fs.state_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::chown(fs.state_dir(), Some(65534), Some(65534)).unwrap();
    assert_refused_state_dir(&fs, "EACCES");
}

#[test]
fn a_group_or_world_writable_state_directory_is_refused() {
    for mode in [0o777, 0o770, 0o702] {
        let fs = Scratch::new(Kind::Ext4);
        std::fs::create_dir(fs.state_dir()).unwrap();
        std::fs::set_permissions(fs.state_dir(), std::fs::Permissions::from_mode(mode)).unwrap();
        assert_refused_state_dir(&fs, "EACCES");
    }
}

#[test]
fn a_symlinked_state_directory_is_refused() {
    let fs = Scratch::new(Kind::Ext4);
    let real = fs.dir.join("real-run");
    std::fs::create_dir(&real).unwrap();
    std::os::unix::fs::symlink(&real, fs.state_dir()).unwrap();
    assert_refused_state_dir(&fs, "ELOOP");
}

#[test]
fn a_state_directory_that_is_a_file_is_refused() {
    let fs = Scratch::new(Kind::Ext4);
    std::fs::write(fs.state_dir(), b"not a directory").unwrap();
    assert_refused_state_dir(&fs, "ENOTDIR");
}

#[test]
fn the_backup_example_takes_a_copy_that_fsck_finds_clean() {
    let fs = Scratch::new(Kind::Ext4);
    std::fs::write(fs.mnt.join("data"), vec![7u8; 1 << 20]).unwrap();
    let image = fs.image.clone().unwrap();
    let copy = fs.dir.join("copy.img");
    let mut cmd = Command::new(example("consistent_backup"));
    cmd.arg(&fs.mnt)
        .arg("30")
        .arg("cp")
        .arg("--sparse=always")
        .arg(&image)
        .arg(&copy);
    let out = with_env(&mut cmd, &fs).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("QUERY says frozen"), "{text}");
    run(Command::new("fsck.ext4").arg("-fn").arg(&copy));
    assert!(!fs.kernel_frozen());
}

#[test]
fn the_backup_example_reports_a_snapshot_outlived_by_its_timeout() {
    let fs = Scratch::new(Kind::Xfs);
    let mut cmd = Command::new(example("consistent_backup"));
    cmd.arg(&fs.mnt).arg("1").arg("sleep").arg("2");
    let out = with_env(&mut cmd, &fs).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("not consistent"), "{err}");
    assert!(!fs.kernel_frozen());
}
