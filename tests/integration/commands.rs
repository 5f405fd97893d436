//! freezefs(8) and thawfs(8) end to end, on real filesystems.

use crate::support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{Kind, Scratch, with_env};

fn freezefs(fs: &Scratch, args: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = Command::new(crate::support::freezefs_exe());
    cmd.args(args);
    with_env(&mut cmd, fs).output().unwrap()
}

fn thawfs(fs: &Scratch, args: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = Command::new(crate::support::thawfs_exe());
    cmd.args(args);
    with_env(&mut cmd, fs).output().unwrap()
}

fn os(s: &str) -> &std::ffi::OsStr {
    std::ffi::OsStr::new(s)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_freeze_with_t_2_is_seen_by_q_and_thaws_about_2_s_later_with_no_process_left() {
    let fs = Scratch::new(Kind::Ext4);
    let mnt = fs.mnt.as_os_str();
    let start = Instant::now();
    let out = freezefs(&fs, &[os("-t"), os("2"), mnt]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "the command did not return at once"
    );

    let q = freezefs(&fs, &[os("-q"), mnt]);
    assert_eq!(q.status.code(), Some(0));
    assert_eq!(stdout(&q).trim(), format!("{} is frozen", fs.mnt.display()));

    let thawed = fs
        .write_in_background()
        .recv_timeout(Duration::from_secs(5))
        .unwrap();
    let after = thawed.duration_since(start);
    eprintln!("freezefs -t 2: thawed {after:?} after the command started");
    assert!(
        after >= Duration::from_millis(1950) && after < Duration::from_millis(2600),
        "{after:?}"
    );

    let q = freezefs(&fs, &[os("-q"), mnt]);
    assert_eq!(q.status.code(), Some(1));
    assert_eq!(
        stdout(&q).trim(),
        format!("{} is not frozen", fs.mnt.display())
    );
    assert!(
        support::wait_until(Duration::from_secs(1), Duration::from_millis(10), || {
            let out = Command::new("pgrep")
                .arg("-f")
                .arg(fs.state_dir().as_os_str())
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
                .all(|stat| {
                    stat.rsplit_once(')')
                        .is_some_and(|r| r.1.trim_start().starts_with('Z'))
                })
        }),
        "a holder is still running"
    );
}

#[test]
fn freeze_without_t_takes_the_sysconfigtab_default() {
    let fs = Scratch::new(Kind::Xfs);
    support::write_sysconfigtab(&fs.sysconfigtab(), "1");
    let out = freezefs(&fs, &[fs.mnt.as_os_str()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(fs.record_text().unwrap().contains("timeout_s 1\n"));
    fs.write_in_background()
        .recv_timeout(Duration::from_secs(5))
        .unwrap();
}

#[test]
fn list_shows_every_frozen_filesystem_as_a_table_and_as_json() {
    let a = Scratch::new(Kind::Ext4);
    // Other tests freeze their own filesystems meanwhile: -l lists every
    // frozen filesystem of the machine, so only this one's lines count.
    let mine = |text: &str| {
        let name = a.mnt.to_string_lossy().into_owned();
        text.lines().any(|l| l.contains(&name))
    };
    assert!(!mine(&stdout(&freezefs(&a, &[os("-l")]))));
    assert!(!mine(&stdout(&freezefs(&a, &[os("-l"), os("--json")]))));

    assert!(
        freezefs(&a, &[os("-t"), os("30"), a.mnt.as_os_str()])
            .status
            .success()
    );
    let table = stdout(&freezefs(&a, &[os("-l")]));
    let row = table
        .lines()
        .find(|l| l.starts_with(&*a.mnt.to_string_lossy()))
        .expect(&table);
    assert!(
        row.contains("ext4") && row.contains("frozen") && row.contains("30s"),
        "{row}"
    );
    let status = a.freezer().status(&a.mnt).unwrap();
    assert!(
        row.contains(&status.holder_pid.unwrap().to_string()),
        "{row}"
    );

    let json = stdout(&freezefs(&a, &[os("-l"), os("--json")]));
    assert!(
        json.starts_with("[{") && json.trim_end().ends_with("}]"),
        "{json}"
    );
    for needle in [
        format!("\"mount_point\":\"{}\"", a.mnt.display()),
        format!("\"device\":\"{}\"", status.device),
        "\"state\":\"frozen\"".to_string(),
        "\"timeout\":30".to_string(),
        format!("\"pid\":{}", status.pid.unwrap()),
        format!("\"holder_pid\":{}", status.holder_pid.unwrap()),
        "\"time_left_ms\":".to_string(),
        "\"frozen_since\":\"20".to_string(),
    ] {
        assert!(json.contains(&needle), "{needle} not in {json}");
    }
    assert!(thawfs(&a, &[a.mnt.as_os_str()]).status.success());
}

#[test]
fn thawfs_exits_0_when_it_thawed_and_1_with_a_message_when_not_frozen() {
    let fs = Scratch::new(Kind::Btrfs);
    let mnt = fs.mnt.as_os_str();
    assert!(freezefs(&fs, &[os("-t"), os("-1"), mnt]).status.success());
    let out = thawfs(&fs, &[mnt]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!fs.kernel_frozen());
    let out = thawfs(&fs, &[mnt]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .trim()
            .starts_with(&format!("thawfs: {}: not frozen", fs.mnt.display())),
        "{}",
        stderr(&out)
    );
}

#[test]
fn errors_name_the_mount_point_and_give_a_hint() {
    let fs = Scratch::new(Kind::Ext4);
    let sub = fs.mnt.join("sub");
    std::fs::create_dir(&sub).unwrap();
    let out = freezefs(&fs, &[sub.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .trim()
            .starts_with(&format!("freezefs: {}: not a mount point", sub.display())),
        "{}",
        stderr(&out)
    );
    let out = freezefs(&fs, &[os("-t"), os("1"), os("/")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("freezefs: /: refusing to freeze /"),
        "{}",
        stderr(&out)
    );
    let out = freezefs(&fs, &[os("-q"), sub.as_os_str()]);
    assert_eq!(out.status.code(), Some(2), "-q exits 2 on error");
    let tmpfs = Scratch::new(Kind::Tmpfs);
    let out = freezefs(&tmpfs, &[tmpfs.mnt.as_os_str()]);
    assert!(
        stderr(&out).contains("tmpfs filesystems cannot be frozen"),
        "{}",
        stderr(&out)
    );
    let out = thawfs(&fs, &[sub.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!fs.kernel_frozen());
}

#[test]
fn usage_errors_exit_2() {
    let fs = Scratch::new(Kind::Ext4);
    let mnt = fs.mnt.as_os_str();
    for args in [
        vec![],
        vec![os("-x"), mnt],
        vec![os("-t")],
        vec![os("-t"), os("soon"), mnt],
        vec![os("-q")],
        vec![os("-l"), mnt],
        vec![os("--json"), mnt],
        vec![os("-q"), os("-t"), os("5"), mnt],
        vec![os("-q"), mnt, mnt],
        vec![os("-r")],
        vec![os("-r"), os("5")],
        vec![os("-r"), os("x"), mnt],
        vec![os("-r"), os("5"), mnt, mnt],
    ] {
        let out = freezefs(&fs, &args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "freezefs {args:?}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("--help"), "{}", stderr(&out));
    }
    for args in [vec![], vec![os("-z")]] {
        assert_eq!(thawfs(&fs, &args).status.code(), Some(2), "thawfs {args:?}");
    }
    assert!(!fs.kernel_frozen());
}

#[test]
fn help_and_version() {
    let fs = Scratch::new(Kind::Tmpfs);
    for (tool, name) in [
        (
            freezefs as fn(&Scratch, &[&std::ffi::OsStr]) -> Output,
            "freezefs",
        ),
        (thawfs, "thawfs"),
    ] {
        for flag in ["-h", "--help"] {
            let out = tool(&fs, &[os(flag)]);
            assert_eq!(out.status.code(), Some(0));
            assert!(stdout(&out).starts_with("Usage:"), "{name} {flag}");
        }
        for flag in ["-V", "--version"] {
            let out = tool(&fs, &[os(flag)]);
            assert_eq!(
                stdout(&out).trim(),
                format!("{name} (freezefs) {}", env!("CARGO_PKG_VERSION"))
            );
        }
    }
}

#[test]
fn the_t_option_accepts_its_spellings() {
    let fs = Scratch::new(Kind::Ext4);
    let mnt = fs.mnt.as_os_str();
    for args in [
        vec![os("-t5"), mnt],
        vec![os("--timeout=5"), mnt],
        vec![os("--timeout"), os("5"), mnt],
    ] {
        let out = freezefs(&fs, &args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        assert!(fs.record_text().unwrap().contains("timeout_s 5\n"));
        assert!(thawfs(&fs, &[mnt]).status.success());
    }
}
