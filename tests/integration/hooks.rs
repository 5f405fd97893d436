//! Freeze and thaw hooks (`/etc/freezefs/hooks.d`, here a directory of the
//! test's own): freeze hooks in order before the flush, thaw hooks in
//! reverse after the thaw, however the freeze ends, run by the holder.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::support::{
    Kind, Scratch, Syslog, crate_dir, event, frozen_writer, fzctl, program, sigkill, wait_until,
    with_env,
};

/// A hook directory in `fs`'s scratch directory; every hook appends
/// `NAME ACTION MOUNTPOINT DEVICE REASON` to `fs.dir/hooks.log`.
fn hook_dir(fs: &Scratch) -> PathBuf {
    let dir = fs.dir.join("hooks");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn add_hook(fs: &Scratch, name: &str, body: &str) {
    let path = hook_dir(fs).join(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"{name} $1 $2 $FREEZEFS_DEVICE ${{FREEZEFS_THAW_REASON:--}}\" >> {}\n{body}\n",
            fs.dir.join("hooks.log").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn log(fs: &Scratch) -> Vec<String> {
    std::fs::read_to_string(fs.dir.join("hooks.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// What a hook run logs.
fn line(name: &str, action: &str, fs: &Scratch, reason: &str) -> String {
    let device = fs.device();
    format!("{name} {action} {} {device} {reason}", fs.mnt.display())
}

/// Waits until the log has `n` lines (thaw hooks run after the thaw, in
/// the holder).
fn log_of(fs: &Scratch, n: usize) -> Vec<String> {
    wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
        log(fs).len() >= n
    });
    std::thread::sleep(Duration::from_millis(50));
    log(fs)
}

fn hooked(cmd: &mut Command, fs: &Scratch) -> Command {
    let mut cmd = with_env(cmd, fs);
    cmd.env("FREEZEFS_HOOKS_DIR", fs.dir.join("hooks"));
    cmd
}

fn freezefs(fs: &Scratch, args: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = Command::new(crate::support::freezefs_exe());
    cmd.args(args);
    hooked(&mut cmd, fs).output().unwrap()
}

fn thawfs(fs: &Scratch) -> Output {
    let mut cmd = Command::new(crate::support::thawfs_exe());
    cmd.arg(&fs.mnt);
    hooked(&mut cmd, fs).output().unwrap()
}

fn freeze_for(fs: &Scratch, seconds: &str) {
    let out = freezefs(fs, &["-t".as_ref(), seconds.as_ref(), fs.mnt.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn freeze_hooks_run_in_order_before_and_thaw_hooks_in_reverse_after() {
    let fs = Scratch::new(Kind::Ext4);
    add_hook(&fs, "10-a", "");
    add_hook(&fs, "20-b", "");
    add_hook(&fs, ".hidden", "exit 1");
    freeze_for(&fs, "30");
    assert_eq!(
        log(&fs),
        [
            line("10-a", "freeze", &fs, "-"),
            line("20-b", "freeze", &fs, "-")
        ]
    );
    assert!(thawfs(&fs).status.success());
    assert_eq!(
        log_of(&fs, 4)[2..],
        [
            line("20-b", "thaw", &fs, "thawed"),
            line("10-a", "thaw", &fs, "thawed")
        ]
    );
}

#[test]
fn hooks_run_outside_the_freeze_window_so_a_hook_writing_to_its_filesystem_completes() {
    let fs = Scratch::new(Kind::Xfs);
    add_hook(&fs, "10-writer", "echo written > \"$2/by-hook-$1\"; sync");
    freeze_for(&fs, "30");
    assert!(fs.mnt.join("by-hook-freeze").exists());
    assert!(thawfs(&fs).status.success());
    assert!(wait_until(
        Duration::from_secs(10),
        Duration::from_millis(10),
        || fs.mnt.join("by-hook-thaw").exists()
    ));
}

#[test]
fn a_failing_freeze_hook_cancels_the_freeze_and_undoes_the_hooks_that_ran() {
    let fs = Scratch::new(Kind::Ext4);
    let syslog = Syslog::new(&fs.dir);
    add_hook(&fs, "10-a", "");
    add_hook(&fs, "20-fails", "echo 'database refused' >&2; exit 3");
    add_hook(&fs, "30-c", "");
    let mut cmd = Command::new(program("fzctl"));
    cmd.arg("1").arg(&fs.mnt).arg("30");
    let mut cmd = hooked(&mut cmd, &fs);
    cmd.env("FREEZEFS_SYSLOG_SOCKET", &syslog.path);
    assert_eq!(fzctl(&mut cmd), "rc=-1 errno=ECANCELED");
    assert!(!fs.kernel_frozen());
    assert_eq!(fs.record_text(), None);
    assert_eq!(
        log(&fs),
        [
            line("10-a", "freeze", &fs, "-"),
            line("20-fails", "freeze", &fs, "-"),
            line("10-a", "thaw", &fs, "rolled-back"),
        ]
    );
    let events = syslog.drain();
    let failed = events
        .iter()
        .find(|e| e.contains("freezefs.hook") && e.contains("20-fails"))
        .unwrap_or_else(|| panic!("no event names the hook: {events:#?}"));
    assert!(
        failed.contains("exit\\0403") && failed.contains("database\\040refused"),
        "{failed}"
    );
    assert!(event(&events, "freezefs.failed").contains("20-fails"));
}

#[test]
fn a_hanging_freeze_hook_is_killed_at_its_limit_and_cancels_the_freeze() {
    let fs = Scratch::new(Kind::Ext4);
    std::fs::write(fs.sysconfigtab(), "vfs:\n\tfreezefs_hook_timeout = 1\n").unwrap();
    add_hook(&fs, "10-hangs", "sleep 37.5");
    let started = Instant::now();
    let mut cmd = Command::new(program("fzctl"));
    cmd.arg("1").arg(&fs.mnt).arg("30");
    assert_eq!(fzctl(&mut hooked(&mut cmd, &fs)), "rc=-1 errno=ECANCELED");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(!fs.kernel_frozen());
    let left = Command::new("pgrep")
        .args(["-f", "sleep 37.5"])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "the hook's child outlived it");
}

#[test]
fn thaw_hooks_run_when_the_timeout_ends_the_freeze() {
    let fs = Scratch::new(Kind::Btrfs);
    add_hook(&fs, "10-a", "");
    freeze_for(&fs, "1");
    assert_eq!(log_of(&fs, 2)[1], line("10-a", "thaw", &fs, "timeout"));
    assert!(!fs.kernel_frozen());
}

#[test]
fn thaw_hooks_run_from_the_holder_after_the_caller_is_killed() {
    let fs = Scratch::new(Kind::Ext4);
    add_hook(&fs, "10-a", "");
    let mut child = frozen_writer(&fs, "1", |cmd| hooked(cmd, &fs));
    sigkill(child.id());
    assert_eq!(log_of(&fs, 2)[1], line("10-a", "thaw", &fs, "timeout"));
    child.wait().unwrap();
}

#[test]
fn thaw_hooks_run_after_another_tool_thaws_the_freeze() {
    let fs = Scratch::new(Kind::Ext4);
    add_hook(&fs, "10-a", "");
    freeze_for(&fs, "30");
    fs.other_tool_thaws().unwrap();
    assert_eq!(log_of(&fs, 2)[1], line("10-a", "thaw", &fs, "other-tool"));
}

/// Two filesystems frozen together: every freeze hook runs before the first
/// flush. Each hook writes into both filesystems, which would block (and
/// time the hook out) once either was frozen.
#[test]
fn with_several_filesystems_every_freeze_hook_runs_before_the_first_freeze() {
    let a = Scratch::new(Kind::Ext4);
    let b = Scratch::new(Kind::Xfs);
    std::fs::write(a.sysconfigtab(), "vfs:\n\tfreezefs_hook_timeout = 3\n").unwrap();
    add_hook(
        &a,
        "10-both",
        &format!(
            "echo x > {a}/from-$1-$FREEZEFS_DEVICE && echo x > {b}/from-$1-$FREEZEFS_DEVICE && sync",
            a = a.mnt.display(),
            b = b.mnt.display()
        ),
    );
    let out = freezefs(
        &a,
        &[
            "-t".as_ref(),
            "30".as_ref(),
            a.mnt.as_os_str(),
            b.mnt.as_os_str(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(a.kernel_frozen() && b.kernel_frozen());
    let ran = log(&a);
    assert_eq!(ran.len(), 2, "{ran:?}");
    assert!(ran.iter().all(|l| l.starts_with("10-both freeze ")));
    let mut cmd = Command::new(crate::support::thawfs_exe());
    cmd.arg(&a.mnt).arg(&b.mnt);
    assert!(hooked(&mut cmd, &a).status().unwrap().success());
    assert_eq!(log_of(&a, 4).len(), 4);
}

#[test]
fn a_rolled_back_freeze_all_runs_the_thaw_hooks_of_every_member() {
    let a = Scratch::new(Kind::Ext4);
    let b = Scratch::new(Kind::Ext4);
    add_hook(&a, "10-a", "");
    // Frozen by another tool: its FIFREEZE fails after the hooks ran.
    b.other_tool_freezes().unwrap();
    let mut cmd = Command::new(program("fzctl"));
    cmd.args(["all", "30"]).arg(&a.mnt).arg(&b.mnt);
    let answer = fzctl(&mut hooked(&mut cmd, &a));
    b.other_tool_thaws().unwrap();
    assert_eq!(answer, "rc=-1 errno=EALREADY");
    assert!(!a.kernel_frozen());
    let ran = log(&a);
    let reasons: Vec<&str> = ran.iter().map(|l| l.rsplit(' ').next().unwrap()).collect();
    assert_eq!(reasons, ["-", "-", "rolled-back", "rolled-back"], "{ran:?}");
}

#[test]
fn a_hook_directory_or_hook_that_others_could_change_is_refused() {
    let fs = Scratch::new(Kind::Ext4);
    add_hook(&fs, "10-a", "");
    let dir = hook_dir(&fs);
    let try_freeze = || {
        let mut cmd = Command::new(program("fzctl"));
        cmd.arg("1").arg(&fs.mnt).arg("30");
        fzctl(&mut hooked(&mut cmd, &fs))
    };
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    assert_eq!(try_freeze(), "rc=-1 errno=EACCES");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(dir.join("10-a"), std::fs::Permissions::from_mode(0o775)).unwrap();
    assert_eq!(try_freeze(), "rc=-1 errno=EACCES");
    std::fs::remove_file(dir.join("10-a")).unwrap();
    std::os::unix::fs::symlink("/bin/true", dir.join("10-link")).unwrap();
    assert_eq!(try_freeze(), "rc=-1 errno=EACCES");
    assert!(!fs.kernel_frozen());
    assert!(log(&fs).is_empty(), "a refused hook ran");
}

#[test]
fn the_postgresql_example_hook_checkpoints_before_a_freeze() {
    let stub = crate::support::mkdtemp("freezefs-psql");
    let calls = stub.join("calls");
    std::fs::write(
        stub.join("psql"),
        format!("#!/bin/sh\necho \"$@\" >> {}\n", calls.display()),
    )
    .unwrap();
    // runuser of the stub runs its command as is; pg_isready says "up".
    std::fs::write(
        stub.join("runuser"),
        "#!/bin/sh\nwhile [ \"$1\" != -- ]; do shift; done\nshift\nexec \"$@\"\n",
    )
    .unwrap();
    std::fs::write(stub.join("pg_isready"), "#!/bin/sh\nexit 0\n").unwrap();
    for tool in ["psql", "runuser", "pg_isready"] {
        std::fs::set_permissions(stub.join(tool), std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let hook = crate_dir().join("examples/hooks/50-postgresql");
    for action in ["freeze", "thaw"] {
        let status = Command::new(&hook)
            .args([action, "/srv/db"])
            .env("PATH", format!("{}:/usr/bin:/bin", stub.display()))
            .env("FREEZEFS_MOUNT_POINT", "/srv/db")
            .status()
            .unwrap();
        assert!(status.success(), "{action}");
    }
    let said = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("CHECKPOINT"), "{said}");
    std::fs::remove_dir_all(stub).unwrap();
}

#[test]
fn a_missing_hook_directory_is_no_error() {
    let fs = Scratch::new(Kind::Ext4);
    let missing: &Path = &fs.dir.join("no-such-hooks");
    let mut cmd = Command::new(crate::support::freezefs_exe());
    cmd.args(["-t", "30"]).arg(&fs.mnt);
    let mut cmd = with_env(&mut cmd, &fs);
    cmd.env("FREEZEFS_HOOKS_DIR", missing);
    assert!(cmd.status().unwrap().success());
    assert!(fs.kernel_frozen());
    assert!(fs.freezer().thaw(&fs.mnt).is_ok());
}

/// A thaw followed at once by a new freeze: the first freeze's thaw hooks
/// (resume) end before the second's freeze hooks (pause) begin, even when
/// they are slow.
#[test]
fn a_freezes_thaw_hooks_end_before_the_next_freezes_freeze_hooks_begin() {
    let fs = Scratch::new(Kind::Ext4);
    add_hook(&fs, "10-slow-thaw", "[ \"$1\" = thaw ] && sleep 0.3; true");
    freeze_for(&fs, "30");
    assert!(thawfs(&fs).status.success());
    freeze_for(&fs, "30");
    let ran = log(&fs);
    let actions: Vec<&str> = ran.iter().map(|l| l.split(' ').nth(1).unwrap()).collect();
    assert_eq!(actions, ["freeze", "thaw", "freeze"], "{ran:?}");
    assert!(thawfs(&fs).status.success());
}

#[test]
fn a_freeze_through_the_shim_runs_the_hooks_too() {
    let fs = Scratch::new(Kind::Ext4);
    add_hook(&fs, "10-a", "");
    let mut cmd = Command::new("fsfreeze");
    cmd.arg("-f").arg(&fs.mnt);
    let mut cmd = hooked(&mut cmd, &fs);
    cmd.env("LD_PRELOAD", crate::support::shim())
        .env("FREEZEFS_TIMEOUT", "30");
    assert!(cmd.status().unwrap().success());
    assert!(fs.record_text().is_some(), "the shim is not active");
    assert_eq!(log(&fs), [line("10-a", "freeze", &fs, "-")]);
    assert!(thawfs(&fs).status.success());
    assert_eq!(log_of(&fs, 2)[1], line("10-a", "thaw", &fs, "thawed"));
}

/// A thaw hook that fails is logged, run once, and never holds the thaw.
#[test]
fn a_failing_thaw_hook_is_run_once_and_the_thaw_stands() {
    let fs = Scratch::new(Kind::Ext4);
    add_hook(&fs, "10-fails-thaw", "[ \"$1\" = thaw ] && exit 4; true");
    freeze_for(&fs, "30");
    assert!(thawfs(&fs).status.success());
    assert!(!fs.kernel_frozen());
    let ran = log_of(&fs, 2);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(log(&fs), ran, "the failed thaw hook ran again");
    assert_eq!(ran[1], line("10-fails-thaw", "thaw", &fs, "thawed"));
}

/// A hook may stop what it started with SIGTERM, and trap SIGINT or
/// SIGHUP: it starts with no signal blocked, whatever the holder blocks.
#[test]
fn hooks_start_with_no_signal_blocked() {
    let fs = Scratch::new(Kind::Ext4);
    let masks = fs.dir.join("masks");
    add_hook(
        &fs,
        "10-mask",
        &format!(
            "grep SigBlk /proc/self/status | sed \"s/^/$1 /\" >> {}",
            masks.display()
        ),
    );
    freeze_for(&fs, "30");
    assert!(thawfs(&fs).status.success());
    log_of(&fs, 2);
    let seen = std::fs::read_to_string(&masks).unwrap();
    assert_eq!(
        seen,
        "freeze SigBlk:\t0000000000000000\nthaw SigBlk:\t0000000000000000\n"
    );
}
