//! What freezefs(8) and thawfs(8) say, row by row of what a new admin met:
//! every message names the real problem and, where one helps, the way out.

use std::ffi::OsStr;
use std::process::{Command, Output};
use std::time::Duration;

use crate::private_mounts::PrivateMounts;
use crate::support::{Kind, Scratch, wait_until, with_env};

fn freezefs(fs: &Scratch, args: &[&OsStr]) -> Output {
    let mut cmd = Command::new(crate::support::freezefs_exe());
    cmd.args(args);
    with_env(&mut cmd, fs).output().unwrap()
}

fn thawfs(fs: &Scratch, args: &[&OsStr]) -> Output {
    let mut cmd = Command::new(crate::support::thawfs_exe());
    cmd.args(args);
    with_env(&mut cmd, fs).output().unwrap()
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn said(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

fn printed(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_empty_path_is_shown_quoted_not_as_an_empty_field() {
    let fs = Scratch::new(Kind::Tmpfs);
    let out = freezefs(&fs, &[os("")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(said(&out), "freezefs: '': empty path");
}

#[test]
fn options_that_cannot_go_together_are_named_together() {
    let fs = Scratch::new(Kind::Tmpfs);
    for (args, message) in [
        (
            vec!["-l", "-q"],
            "freezefs: options -l and -q cannot be combined",
        ),
        (
            vec!["-q", "--list"],
            "freezefs: options -q and --list cannot be combined",
        ),
        (
            vec!["--json"],
            "freezefs: --json goes with -l: freezefs -l --json",
        ),
        (
            vec!["-q", "-v", "/x"],
            "freezefs: -v goes with a freeze, not with -q",
        ),
    ] {
        let args: Vec<&OsStr> = args.iter().map(|a| os(a)).collect();
        let out = freezefs(&fs, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert_eq!(said(&out).lines().next(), Some(message), "{args:?}");
    }
}

#[test]
fn short_options_bundle_as_getopt_bundles_them() {
    let fs = Scratch::new(Kind::Ext4);
    let out = freezefs(&fs, &[os("-lq")]);
    assert_eq!(
        said(&out).lines().next(),
        Some("freezefs: options -l and -q cannot be combined")
    );
    let out = freezefs(&fs, &[os("-vt"), os("5"), fs.mnt.as_os_str()]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(fs.record_text().unwrap().contains("\ntimeout_s 5\n"));
    assert!(thawfs(&fs, &[fs.mnt.as_os_str()]).status.success());
    let out = freezefs(&fs, &[os("-zq")]);
    assert_eq!(
        said(&out).lines().next(),
        Some("freezefs: unknown option '-z'")
    );
}

#[test]
fn an_invalid_timeout_says_what_a_valid_one_is() {
    let fs = Scratch::new(Kind::Ext4);
    let out = freezefs(&fs, &[os("-t"), os("1.5"), fs.mnt.as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        said(&out).lines().next(),
        Some(
            "freezefs: invalid timeout '1.5': give whole seconds (0: the default; negative: no timeout)"
        )
    );
    assert!(!fs.kernel_frozen());
}

#[test]
fn a_path_inside_a_mount_names_the_mount_it_lies_on() {
    let fs = Scratch::new(Kind::Ext4);
    let sub = fs.mnt.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let out = freezefs(&fs, &[sub.as_os_str()]);
    assert_eq!(
        said(&out),
        format!(
            "freezefs: {}: not a mount point; it lies on the filesystem mounted at {}",
            sub.display(),
            fs.mnt.display()
        )
    );
}

#[test]
fn refusing_root_says_why_and_says_it_once() {
    let fs = Scratch::new(Kind::Tmpfs);
    // freezefs(8) always refuses /: the machine's own is never frozen.
    let out = freezefs(&fs, &[os("-t"), os("1"), os("/")]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        said(&out),
        "freezefs: /: refusing to freeze /: the system runs from /, /usr and /var, and would hang"
    );
    crate::support::assert_system_never_frozen();
}

#[test]
fn thawfs_after_a_timed_freeze_ended_says_it_ended_early() {
    let fs = Scratch::new(Kind::Ext4);
    assert!(
        freezefs(&fs, &[os("-t"), os("1"), fs.mnt.as_os_str()])
            .status
            .success()
    );
    assert!(wait_until(
        Duration::from_secs(6),
        Duration::from_millis(20),
        || !fs.kernel_frozen()
    ));
    let out = thawfs(&fs, &[fs.mnt.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let message = said(&out);
    assert!(
        message.starts_with(&format!(
            "thawfs: {}: the freeze had already ended: its timeout passed at ",
            fs.mnt.display()
        )),
        "{message}"
    );
    assert!(message.ends_with("a snapshot taken under it may be inconsistent"));
}

#[test]
fn thawfs_on_a_tmpfs_says_it_cannot_be_frozen_at_all() {
    let fs = Scratch::new(Kind::Tmpfs);
    let out = thawfs(&fs, &[fs.mnt.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        said(&out),
        format!(
            "thawfs: {}: tmpfs filesystems cannot be frozen; nothing to thaw",
            fs.mnt.display()
        )
    );
}

#[test]
fn without_root_each_operation_names_itself() {
    let fs = Scratch::new(Kind::Ext4);
    let mnt = fs.mnt.to_str().unwrap();
    for (tool, args, message) in [
        ("freezefs", vec!["-q", mnt], "querying"),
        ("freezefs", vec!["-l"], "listing"),
        ("freezefs", vec!["-r", "5", mnt], "resetting a timeout"),
        ("freezefs", vec![mnt], "freezing"),
        ("thawfs", vec![mnt], "thawing"),
    ] {
        let exe = match tool {
            "freezefs" => crate::support::freezefs_exe(),
            _ => crate::support::thawfs_exe(),
        };
        let out = crate::support::as_nobody(&fs, &[], std::path::Path::new(exe))
            .args(&args)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(
            said(&out).ends_with(&format!(
                "permission denied ({message} needs root or CAP_SYS_ADMIN)"
            )),
            "{tool} {args:?}: {}",
            said(&out)
        );
    }
    assert!(!fs.kernel_frozen());
}

#[test]
fn list_prints_nothing_when_nothing_is_frozen() {
    let fs = Scratch::new(Kind::Ext4);
    // Its own namespace: other tests' freezes are not in sight.
    let ns = PrivateMounts::new(&[&fs]);
    let mut list = ns.command(crate::support::freezefs_exe());
    list.arg("-l");
    let out = with_env(&mut list, &fs).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", said(&out));
    assert_eq!(printed(&out), "");
    assert_eq!(said(&out), "");
}

#[test]
fn list_escapes_mount_points_as_findmnt_does_and_aligns_its_columns() {
    let mut fs = Scratch::new(Kind::Ext4);
    let spaced = fs.bind("a b\tc");
    let ns = PrivateMounts::new(&[&fs]);
    let mut freeze = ns.command(crate::support::freezefs_exe());
    freeze.args(["-t", "30"]).arg(&spaced);
    let out = with_env(&mut freeze, &fs).output().unwrap();
    assert!(out.status.success(), "{}", said(&out));
    let mut list = ns.command(crate::support::freezefs_exe());
    list.arg("-l");
    let table = printed(&with_env(&mut list, &fs).output().unwrap());
    let _ = thawfs(&fs, &[fs.mnt.as_os_str()]);

    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    let escaped = format!("{}/a\\x20b\\x09c", fs.mnt.parent().unwrap().display());
    assert!(lines[1].starts_with(&escaped), "{table}");
    for line in &lines {
        assert_eq!(line.split_whitespace().count(), 9, "{line:?}");
    }
    // Each header starts where its column does (the right-aligned ones end
    // where theirs end).
    for header in ["DEVICE", "TYPE", "STATE"] {
        let at = lines[0].find(header).unwrap();
        let row = lines[1].as_bytes();
        assert!(
            row[at - 1] == b' ' && row[at] != b' ',
            "{header} is not over its column:\n{table}"
        );
    }
    assert_eq!(lines[0].len(), lines[1].len(), "{table}");
}

#[test]
fn v_prints_the_deadline_the_freeze_got() {
    let fs = Scratch::new(Kind::Ext4);
    let out = freezefs(&fs, &[os("-v"), os("-t"), os("30"), fs.mnt.as_os_str()]);
    assert!(out.status.success(), "{}", said(&out));
    let line = printed(&out);
    let _ = thawfs(&fs, &[fs.mnt.as_os_str()]);
    assert!(
        line.starts_with(&format!("{}: frozen until 20", fs.mnt.display())),
        "{line}"
    );
    assert!(line.contains("Z (timeout 30 s)"), "{line}");
}

/// freezefs with `FREEZEFS_RUNDIR` (and more) set to `env`.
fn freezefs_with(fs: &Scratch, env: &[(&str, &std::path::Path)], args: &[&OsStr]) -> Output {
    let mut cmd = Command::new(crate::support::freezefs_exe());
    cmd.args(args);
    let mut cmd = with_env(&mut cmd, fs);
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.output().unwrap()
}

#[test]
fn a_state_directory_that_cannot_be_made_is_named_not_the_mount_point() {
    let fs = Scratch::new(Kind::Ext4);
    let run = fs.dir.join("missing/run");
    for args in [
        vec![os("-t"), os("3"), fs.mnt.as_os_str()],
        vec![os("-q"), fs.mnt.as_os_str()],
    ] {
        let out = freezefs_with(&fs, &[("FREEZEFS_RUNDIR", &run)], &args);
        assert_ne!(out.status.code(), Some(0), "{}", said(&out));
        assert_eq!(
            said(&out),
            format!(
                "freezefs: {}: state directory {}: mkdir: no such file or directory",
                fs.mnt.display(),
                run.display()
            )
        );
    }
    assert!(!fs.kernel_frozen());
}

#[test]
fn a_hook_directory_that_is_not_a_directory_is_named() {
    let fs = Scratch::new(Kind::Ext4);
    let file = fs.dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    let hooks = file.join("hooks");
    let out = freezefs_with(
        &fs,
        &[("FREEZEFS_HOOKS_DIR", &hooks)],
        &[os("-t"), os("3"), fs.mnt.as_os_str()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert_eq!(
        said(&out),
        format!(
            "freezefs: {}: hook directory {}: not a directory",
            fs.mnt.display(),
            hooks.display()
        )
    );
    assert!(!fs.kernel_frozen());
}

#[test]
fn a_holder_executable_that_is_missing_is_named_with_the_way_out() {
    let fs = Scratch::new(Kind::Ext4);
    let holder = fs.dir.join("no-such-holder");
    let out = freezefs_with(
        &fs,
        &[("FREEZEFS_HOLDER", &holder)],
        &[os("-t"), os("3"), fs.mnt.as_os_str()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let said = said(&out);
    assert!(
        said.contains(&format!("cannot start the holder {}", holder.display()))
            && said.contains("set FREEZEFS_HOLDER or reinstall"),
        "{said}"
    );
    assert!(!fs.kernel_frozen());
}

/// A sysconfigtab that is there but gives nothing: each case is named with
/// the file, before the freeze, which still gets the documented 60 s.
#[test]
fn an_unusable_sysconfigtab_is_named_with_what_is_wrong_and_the_freeze_gets_60_s() {
    let fs = Scratch::new(Kind::Ext4);
    let tab = fs.sysconfigtab();
    let cases: [(&str, &dyn Fn()); 3] = [
        ("not a regular file", &|| std::fs::create_dir(&tab).unwrap()),
        ("larger than 1048576 bytes: not read", &|| {
            std::fs::write(&tab, vec![b'#'; 2 << 20]).unwrap()
        }),
        (
            "freezefs_default_timeout = soon is not a whole number of seconds",
            &|| crate::support::write_sysconfigtab(&tab, "soon"),
        ),
    ];
    for (what, make) in cases {
        let _ = std::fs::remove_dir(&tab);
        let _ = std::fs::remove_file(&tab);
        make();
        let out = freezefs(&fs, &[os("-v"), fs.mnt.as_os_str()]);
        assert!(out.status.success(), "{what}: {}", said(&out));
        assert!(
            said(&out).starts_with(&format!(
                "freezefs: warning: {}: {what}; the default timeout is 60 s",
                tab.display()
            )),
            "{what}: {}",
            said(&out)
        );
        assert!(
            printed(&out).contains("(timeout 60 s)"),
            "{}",
            printed(&out)
        );
        let out = thawfs(&fs, &[fs.mnt.as_os_str()]);
        assert!(out.status.success(), "{}", said(&out));
    }
}

#[test]
fn a_missing_sysconfigtab_or_a_given_timeout_draws_no_warning() {
    let fs = Scratch::new(Kind::Ext4);
    let _ = std::fs::remove_file(fs.sysconfigtab());
    let out = freezefs(&fs, &[fs.mnt.as_os_str()]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(said(&out), "");
    thawfs(&fs, &[fs.mnt.as_os_str()]);
    std::fs::create_dir(fs.sysconfigtab()).unwrap();
    let out = freezefs(&fs, &[os("-t"), os("5"), fs.mnt.as_os_str()]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(said(&out), "");
    thawfs(&fs, &[fs.mnt.as_os_str()]);
}

/// A newer holder may record a reason this version does not know: the
/// record still reads, and thawfs says the freeze had ended, not EIO.
#[test]
fn a_reason_a_newer_holder_recorded_is_told_as_unknown_not_as_an_error() {
    let fs = Scratch::new(Kind::Ext4);
    assert!(
        freezefs(&fs, &[os("-t"), os("1"), fs.mnt.as_os_str()])
            .status
            .success()
    );
    let ended = fs.state_dir().join(format!("ended.{}", fs.device()));
    assert!(wait_until(
        Duration::from_secs(6),
        Duration::from_millis(20),
        || std::fs::read_to_string(&ended).is_ok_and(|t| t.contains("\nended timeout "))
    ));
    let text = std::fs::read_to_string(&ended).unwrap();
    std::fs::write(
        &ended,
        text.replace("\nended timeout ", "\nended cosmic-ray "),
    )
    .unwrap();
    let out = thawfs(&fs, &[fs.mnt.as_os_str()]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains(
            "the freeze had already ended: it ended in a way this version of freezefs does not know"
        ),
        "{}",
        said(&out)
    );
}
