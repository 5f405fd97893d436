//! The freezefs() contract (DESIGN.md §2), one behaviour per test, on real
//! loop-mounted ext4, xfs and btrfs (and tmpfs, ramfs, vfat where a
//! filesystem cannot be frozen). Run as root.

use crate::support;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use freezefs::{Error, Timeout};
use support::{Kind, Scratch, on_ext4_xfs_btrfs, run};

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(5);

fn errno(r: Result<impl std::fmt::Debug, Error>) -> i32 {
    r.expect_err("expected an error").errno()
}

on_ext4_xfs_btrfs! {
    fn freeze_returns_ok_blocks_writers_and_lets_readers_through(kind) {
        let fs = Scratch::new(kind);
        fs.freezer().freeze(&fs.mnt, Timeout::Seconds(30)).unwrap();
        assert!(fs.kernel_frozen());
        assert!(!fs.write_completes_within(SHORT), "a write went through a frozen filesystem");
        assert!(fs.read_completes_within(LONG), "a reader was blocked");
        fs.freezer().thaw(&fs.mnt).unwrap();
    }
}

on_ext4_xfs_btrfs! {
    fn query_returns_true_while_frozen_and_false_after_thaw(kind) {
        let fs = Scratch::new(kind);
        let f = fs.freezer();
        assert!(!f.is_frozen(&fs.mnt).unwrap());
        f.freeze(&fs.mnt, Timeout::Never).unwrap();
        assert!(f.is_frozen(&fs.mnt).unwrap());
        f.thaw(&fs.mnt).unwrap();
        assert!(!f.is_frozen(&fs.mnt).unwrap());
        assert!(!fs.kernel_frozen());
    }
}

on_ext4_xfs_btrfs! {
    fn thaw_lets_blocked_writers_finish(kind) {
        let fs = Scratch::new(kind);
        fs.freezer().freeze(&fs.mnt, Timeout::Never).unwrap();
        let done = fs.write_in_background();
        assert!(done.recv_timeout(SHORT).is_err(), "the writer was not blocked");
        fs.freezer().thaw(&fs.mnt).unwrap();
        done.recv_timeout(LONG).expect("the writer did not finish after thaw");
    }
}

on_ext4_xfs_btrfs! {
    fn freeze_of_a_frozen_filesystem_fails_ealready(kind) {
        let fs = Scratch::new(kind);
        fs.freezer().freeze(&fs.mnt, Timeout::Never).unwrap();
        assert_eq!(errno(fs.freezer().freeze(&fs.mnt, Timeout::Never)), libc::EALREADY);
        assert!(fs.freezer().is_frozen(&fs.mnt).unwrap(), "the failed freeze changed the state");
        fs.freezer().thaw(&fs.mnt).unwrap();
    }
}

on_ext4_xfs_btrfs! {
    fn thaw_of_a_filesystem_that_is_not_frozen_fails_ealready(kind) {
        let fs = Scratch::new(kind);
        assert_eq!(errno(fs.freezer().thaw(&fs.mnt)), libc::EALREADY);
        assert!(fs.write_completes_within(LONG));
    }
}

on_ext4_xfs_btrfs! {
    fn a_path_inside_the_filesystem_that_is_not_a_mount_root_is_einval(kind) {
        let fs = Scratch::new(kind);
        let sub = fs.mnt.join("subdir");
        std::fs::create_dir(&sub).unwrap();
        let f = fs.freezer();
        assert_eq!(errno(f.freeze(&sub, Timeout::Never)), libc::EINVAL);
        assert_eq!(errno(f.thaw(&sub)), libc::EINVAL);
        assert_eq!(errno(f.is_frozen(&sub)), libc::EINVAL);
        assert!(!fs.kernel_frozen());
    }
}

on_ext4_xfs_btrfs! {
    fn a_bind_mount_names_the_same_freeze(kind) {
        let mut fs = Scratch::new(kind);
        let bind = fs.bind("bind");
        let f = fs.freezer();
        f.freeze(&fs.mnt, Timeout::Never).unwrap();
        assert!(f.is_frozen(&bind).unwrap());
        assert_eq!(errno(f.freeze(&bind, Timeout::Never)), libc::EALREADY);
        f.thaw(&bind).unwrap();
        assert!(!f.is_frozen(&fs.mnt).unwrap());
        assert_eq!(errno(f.thaw(&fs.mnt)), libc::EALREADY);
    }
}

on_ext4_xfs_btrfs! {
    fn thaw_rescues_a_freeze_made_by_fsfreeze(kind) {
        let fs = Scratch::new(kind);
        run(Command::new("fsfreeze").arg("-f").arg(&fs.mnt));
        assert!(fs.kernel_frozen());
        fs.freezer().thaw(&fs.mnt).unwrap();
        assert!(!fs.kernel_frozen());
        assert!(fs.write_completes_within(LONG));
    }
}

on_ext4_xfs_btrfs! {
    fn freeze_of_a_filesystem_frozen_by_fsfreeze_fails_ealready_and_records_nothing(kind) {
        let fs = Scratch::new(kind);
        run(Command::new("fsfreeze").arg("-f").arg(&fs.mnt));
        assert_eq!(errno(fs.freezer().freeze(&fs.mnt, Timeout::Seconds(1))), libc::EALREADY);
        assert_eq!(fs.record_text(), None);
        std::thread::sleep(Duration::from_millis(1500));
        assert!(fs.kernel_frozen(), "the refused freeze's timeout thawed another tool's freeze");
        run(Command::new("fsfreeze").arg("-u").arg(&fs.mnt));
    }
}

on_ext4_xfs_btrfs! {
    fn a_timed_freeze_thaws_itself_at_the_deadline(kind) {
        let fs = Scratch::new(kind);
        // The deadline counts from FIFREEZE's return, somewhere inside the
        // call: not before the call began, not after it returned (its
        // records and checks after FIFREEZE take longer on a loaded machine).
        let called = Instant::now();
        fs.freezer().freeze(&fs.mnt, Timeout::Seconds(1)).unwrap();
        let start = Instant::now();
        let done = fs.write_in_background();
        let finished = done.recv_timeout(LONG).expect("the timeout never thawed it");
        let late = finished.saturating_duration_since(start + Duration::from_secs(1));
        assert!(finished >= called + Duration::from_millis(990), "thawed early");
        assert!(late < Duration::from_millis(100), "thawed {late:?} after the deadline");
        eprintln!("{}: helper thread thawed {late:?} after the deadline", kind.name());
        assert!(!fs.freezer().is_frozen(&fs.mnt).unwrap());
        assert_eq!(fs.record_text(), None);
    }
}

on_ext4_xfs_btrfs! {
    fn an_untimed_freeze_stays_frozen(kind) {
        let fs = Scratch::new(kind);
        fs.freezer().freeze(&fs.mnt, Timeout::Never).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert!(fs.freezer().is_frozen(&fs.mnt).unwrap());
        assert!(fs.kernel_frozen());
        fs.freezer().thaw(&fs.mnt).unwrap();
    }
}

on_ext4_xfs_btrfs! {
    fn a_late_timer_never_thaws_a_newer_freeze(kind) {
        let fs = Scratch::new(kind);
        let f = fs.freezer();
        f.freeze(&fs.mnt, Timeout::Seconds(1)).unwrap();
        f.thaw(&fs.mnt).unwrap();
        f.freeze(&fs.mnt, Timeout::Never).unwrap();
        std::thread::sleep(Duration::from_millis(1600));
        assert!(fs.kernel_frozen(), "the first freeze's timer thawed the second freeze");
        assert!(f.is_frozen(&fs.mnt).unwrap());
        f.thaw(&fs.mnt).unwrap();
    }
}

#[test]
fn btrfs_subvolume_mounts_share_one_freeze() {
    let mut fs = Scratch::new(Kind::Btrfs);
    run(Command::new("btrfs")
        .args(["-q", "subvolume", "create"])
        .arg(fs.mnt.join("sub")));
    let image = fs.image.clone().unwrap();
    let loopdev = run(Command::new("findmnt").args(["-no", "SOURCE"]).arg(&fs.mnt));
    let loopdev = loopdev.trim().to_string();
    assert!(
        loopdev.starts_with("/dev/loop"),
        "{loopdev} from {}",
        image.display()
    );
    let sub = fs.mount_extra("sub", &["-o", "subvol=sub", &loopdev]);
    let f = fs.freezer();
    f.freeze(&sub, Timeout::Never).unwrap();
    assert!(
        f.is_frozen(&fs.mnt).unwrap(),
        "freeze through the subvolume not seen at the top"
    );
    assert_eq!(errno(f.freeze(&fs.mnt, Timeout::Never)), libc::EALREADY);
    assert!(fs.kernel_frozen());
    f.thaw(&fs.mnt).unwrap();
    assert!(!f.is_frozen(&sub).unwrap());
}

#[test]
fn freeze_of_squashfs_tmpfs_ramfs_and_vfat_fails_eopnotsupp_and_records_nothing() {
    for kind in Kind::unfreezable() {
        let fs = Scratch::new(kind);
        let r = fs.freezer().freeze(&fs.mnt, Timeout::Seconds(5));
        assert_eq!(errno(r), libc::EOPNOTSUPP, "{}", kind.name());
        assert_eq!(fs.record_text(), None, "{}", kind.name());
        assert!(!fs.freezer().is_frozen(&fs.mnt).unwrap());
        if kind != Kind::Squashfs {
            assert!(fs.write_completes_within(LONG), "{}", kind.name());
        }
    }
}

#[test]
fn proc_cannot_be_frozen() {
    let fs = Scratch::new(Kind::Tmpfs);
    let r = fs.freezer().freeze("/proc", Timeout::Seconds(1));
    assert_eq!(errno(r), libc::EOPNOTSUPP);
}

#[test]
fn a_missing_path_is_enoent() {
    let fs = Scratch::new(Kind::Ext4);
    let missing = fs.dir.join("does-not-exist");
    let f = fs.freezer();
    assert_eq!(errno(f.freeze(&missing, Timeout::Seconds(1))), libc::ENOENT);
    assert_eq!(errno(f.thaw(&missing)), libc::ENOENT);
    assert_eq!(errno(f.is_frozen(&missing)), libc::ENOENT);
}

#[test]
fn an_empty_path_is_enoent() {
    let fs = Scratch::new(Kind::Ext4);
    let f = fs.freezer();
    assert_eq!(errno(f.freeze("", Timeout::Seconds(1))), libc::ENOENT);
    assert_eq!(errno(f.thaw("")), libc::ENOENT);
    assert_eq!(errno(f.is_frozen("")), libc::ENOENT);
}

#[test]
fn a_path_longer_than_path_max_is_enametoolong() {
    let fs = Scratch::new(Kind::Ext4);
    let long = PathBuf::from(format!("{}/{}", fs.mnt.display(), "a/".repeat(3000)));
    let f = fs.freezer();
    assert_eq!(
        errno(f.freeze(&long, Timeout::Seconds(1))),
        libc::ENAMETOOLONG
    );
    assert_eq!(errno(f.thaw(&long)), libc::ENAMETOOLONG);
    assert_eq!(errno(f.is_frozen(&long)), libc::ENAMETOOLONG);
    let long_name = fs.mnt.join("n".repeat(300));
    assert_eq!(
        errno(f.freeze(&long_name, Timeout::Seconds(1))),
        libc::ENAMETOOLONG
    );
    assert!(!fs.kernel_frozen());
}

/// Mounts the scratch filesystem again at a name that mountinfo escapes
/// or that is not UTF-8, and freezes, queries and thaws through it.
fn freeze_through_a_mount_named(raw_name: &[u8]) {
    let mut fs = Scratch::new(Kind::Ext4);
    let name = std::ffi::OsStr::from_bytes(raw_name);
    let at = fs.dir.join(name);
    std::fs::create_dir(&at).unwrap();
    run(Command::new("mount").arg("--bind").arg(&fs.mnt).arg(&at));
    fs.adopt_mount(at.clone());
    let f = fs.freezer();
    f.freeze(&at, Timeout::Seconds(30)).unwrap();
    assert!(f.is_frozen(&at).unwrap());
    assert!(f.is_frozen(&fs.mnt).unwrap());
    let record = fs.record_text().unwrap();
    let escaped = record
        .lines()
        .find(|l| l.starts_with("mount_point "))
        .unwrap();
    assert!(!escaped.contains('\n') && escaped.is_ascii(), "{escaped}");
    f.thaw(&at).unwrap();
    assert!(!fs.kernel_frozen());
}

#[test]
fn a_mount_point_with_space_tab_newline_and_backslash_works() {
    freeze_through_a_mount_named(b"a b\tc\nd\\e");
}

#[test]
fn a_non_utf8_mount_point_works() {
    freeze_through_a_mount_named(b"mnt-\xff\xfe");
}

#[test]
fn a_non_utf8_path_that_is_not_a_mount_point_is_einval() {
    let fs = Scratch::new(Kind::Ext4);
    let other = fs.mnt.join(std::ffi::OsStr::from_bytes(b"dir-\xff"));
    std::fs::create_dir(&other).unwrap();
    assert_eq!(
        errno(fs.freezer().freeze(&other, Timeout::Seconds(1))),
        libc::EINVAL
    );
}

#[test]
fn seconds_zero_in_the_rust_api_is_einval() {
    let fs = Scratch::new(Kind::Ext4);
    assert_eq!(
        errno(fs.freezer().freeze(&fs.mnt, Timeout::Seconds(0))),
        libc::EINVAL
    );
    assert!(!fs.kernel_frozen());
}

fn assert_refused(f: &freezefs::Freezer, path: &Path) {
    let r = f.freeze(path, Timeout::Seconds(1));
    assert_eq!(
        errno(r),
        libc::EOPNOTSUPP,
        "freeze of {} was not refused",
        path.display()
    );
}

#[test]
fn root_usr_and_var_are_refused_under_every_spelling() {
    let fs = Scratch::new(Kind::Tmpfs);
    let f = fs.freezer();
    for p in [
        "/",
        "/usr",
        "/var",
        "/usr/",
        "//usr/.",
        "/usr/../var",
        "//",
        "/./",
        "/var/../",
        "/usr/bin/..",
    ] {
        assert_refused(&f, Path::new(p));
    }
    support::assert_system_never_frozen();
}

#[test]
fn a_symlink_to_a_protected_filesystem_is_refused() {
    let fs = Scratch::new(Kind::Ext4);
    let f = fs.freezer();
    for (name, target) in [("to-root", "/"), ("to-usr", "/usr"), ("to-var", "/var")] {
        let link = fs.dir.join(name);
        std::os::unix::fs::symlink(target, &link).unwrap();
        assert_refused(&f, &link);
    }
    support::assert_system_never_frozen();
}

#[test]
fn a_bind_mount_of_a_protected_filesystem_is_refused() {
    let mut fs = Scratch::new(Kind::Ext4);
    let f = fs.freezer();
    let of_root = fs.mount_extra("bind-root", &["--bind", "/"]);
    assert_refused(&f, &of_root);
    let of_usr = fs.mount_extra("bind-usr", &["--bind", "/usr"]);
    assert_refused(&f, &of_usr);
    let of_etc = fs.mount_extra("bind-etc", &["--bind", "/etc"]);
    assert_refused(&f, &of_etc);
    support::assert_system_never_frozen();
}

#[test]
fn the_filesystem_holding_the_state_directory_is_refused() {
    let fs = Scratch::new(Kind::Ext4);
    let f = fs.freezer().with_state_dir(fs.mnt.join("state"));
    assert_refused(&f, &fs.mnt);
    assert!(!fs.kernel_frozen());
}

#[test]
fn query_of_a_protected_filesystem_is_allowed() {
    let fs = Scratch::new(Kind::Tmpfs);
    let f = fs.freezer();
    for p in ["/", "/usr", "/var", "//usr/."] {
        assert!(!f.is_frozen(p).unwrap(), "{p}");
    }
}

#[test]
fn the_default_timeout_comes_from_sysconfigtab_and_a_change_applies_to_the_next_freeze() {
    let fs = Scratch::new(Kind::Ext4);
    let f = fs.freezer();
    support::write_sysconfigtab(&fs.sysconfigtab(), "1");
    let start = Instant::now();
    f.freeze(&fs.mnt, Timeout::Default).unwrap();
    assert!(fs.record_text().unwrap().contains("timeout_s 1\n"));
    fs.write_in_background().recv_timeout(LONG).unwrap();
    assert!(start.elapsed() >= Duration::from_millis(990));

    support::write_sysconfigtab(&fs.sysconfigtab(), "2");
    let start = Instant::now();
    f.freeze(&fs.mnt, Timeout::Default).unwrap();
    assert!(fs.record_text().unwrap().contains("timeout_s 2\n"));
    fs.write_in_background().recv_timeout(LONG).unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(1990),
        "the edit did not apply"
    );
}

#[test]
fn a_missing_sysconfigtab_gives_60_seconds() {
    let fs = Scratch::new(Kind::Ext4);
    fs.freezer().freeze(&fs.mnt, Timeout::Default).unwrap();
    assert!(fs.record_text().unwrap().contains("timeout_s 60\n"));
    fs.freezer().thaw(&fs.mnt).unwrap();
}

#[test]
fn a_zero_default_gives_60_seconds() {
    let fs = Scratch::new(Kind::Ext4);
    support::write_sysconfigtab(&fs.sysconfigtab(), "0");
    fs.freezer().freeze(&fs.mnt, Timeout::Default).unwrap();
    assert!(fs.record_text().unwrap().contains("timeout_s 60\n"));
    fs.freezer().thaw(&fs.mnt).unwrap();
}

#[test]
fn a_negative_default_means_no_timeout() {
    let fs = Scratch::new(Kind::Ext4);
    support::write_sysconfigtab(&fs.sysconfigtab(), "-1");
    fs.freezer().freeze(&fs.mnt, Timeout::Default).unwrap();
    assert!(fs.record_text().unwrap().contains("timeout_s none\n"));
    fs.freezer().thaw(&fs.mnt).unwrap();
}

#[test]
fn an_invalid_default_gives_60_seconds() {
    let fs = Scratch::new(Kind::Ext4);
    support::write_sysconfigtab(&fs.sysconfigtab(), "soon");
    fs.freezer().freeze(&fs.mnt, Timeout::Default).unwrap();
    assert!(fs.record_text().unwrap().contains("timeout_s 60\n"));
    fs.freezer().thaw(&fs.mnt).unwrap();
}

#[test]
fn a_huge_timeout_is_kept_without_overflow() {
    let fs = Scratch::new(Kind::Ext4);
    fs.freezer()
        .freeze(&fs.mnt, Timeout::Seconds(i32::MAX as u32))
        .unwrap();
    assert!(fs.freezer().is_frozen(&fs.mnt).unwrap());
    fs.freezer().thaw(&fs.mnt).unwrap();
}
