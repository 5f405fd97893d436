//! Kernel truth: freezefs knows when its freeze ends, whoever ends it, and
//! sees every freeze, on real ext4, xfs and btrfs. "Another tool" is a raw
//! FIFREEZE/FITHAW straight to the kernel, as fsfreeze, xfs_freeze and
//! qemu-guest-agent issue them.

use std::process::Command;
use std::time::{Duration, Instant};

use freezefs::{EndReason, FreezeState, Timeout};

use crate::support::{
    self, Kind, Scratch, Syslog, check_image, event, fzctl, fzctl_cmd, on_ext4_xfs_btrfs, run,
    running, sigkill, wait_until, with_env,
};

const LONG: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(1);

fn ealready(result: freezefs::Result<()>) {
    assert_eq!(
        result.expect_err("expected EALREADY").errno(),
        libc::EALREADY
    );
}

on_ext4_xfs_btrfs! {
    fn another_tools_thaw_ends_the_freeze_for_query_status_and_list(kind) {
        let fs = Scratch::new(kind);
        let f = fs.freezer();
        f.freeze(&fs.mnt, Timeout::Seconds(30)).unwrap();
        fs.other_tool_thaws().unwrap();
        assert!(
            !f.is_frozen(&fs.mnt).unwrap(),
            "QUERY still says frozen after another tool's thaw returned"
        );
        let status = f.status(&fs.mnt).unwrap();
        assert_eq!(status.state, FreezeState::Thawed);
        assert_eq!(status.last_freeze.unwrap().reason, EndReason::OtherTool);
        assert!(f.list().unwrap().iter().all(|s| s.mount_point != fs.mnt));
        assert!(fs.write_completes_within(LONG));
    }
}

/// Another tool's FITHAW wakes the watcher before it returns, but the
/// thread lingers until it has run and exited: QUERY, status and list look
/// at whether it waits, not whether it is there. Many rounds, since the
/// linger is short; each asks at once, one of the three in turn.
#[test]
fn query_status_and_list_say_thawed_the_moment_another_tools_thaw_returns() {
    let fs = Scratch::new(Kind::Ext4);
    let f = fs.freezer();
    for round in 0..60 {
        f.freeze(&fs.mnt, Timeout::Seconds(30)).unwrap();
        assert!(f.is_frozen(&fs.mnt).unwrap());
        fs.other_tool_thaws().unwrap();
        let frozen = match round % 3 {
            0 => f.is_frozen(&fs.mnt).unwrap(),
            1 => f.status(&fs.mnt).unwrap().state != FreezeState::Thawed,
            _ => f.list().unwrap().iter().any(|s| s.mount_point == fs.mnt),
        };
        assert!(
            !frozen,
            "round {round}: still frozen after another tool's thaw returned"
        );
    }
}

on_ext4_xfs_btrfs! {
    fn a_stale_deadline_never_thaws_another_tools_later_freeze(kind) {
        let fs = Scratch::new(kind);
        let started = Instant::now();
        fs.freezer().freeze(&fs.mnt, Timeout::Seconds(2)).unwrap();
        fs.other_tool_thaws().unwrap();
        fs.other_tool_freezes().unwrap();
        std::thread::sleep(Duration::from_millis(2600).saturating_sub(started.elapsed()));
        assert!(fs.kernel_frozen(), "freezefs's old deadline thawed another tool's freeze");
        fs.other_tool_thaws().unwrap();
    }
}

on_ext4_xfs_btrfs! {
    fn thaw_after_another_tool_thawed_and_refroze_is_ealready_and_touches_nothing(kind) {
        let fs = Scratch::new(kind);
        let f = fs.freezer();
        f.freeze(&fs.mnt, Timeout::Seconds(30)).unwrap();
        let t0 = Instant::now();
        fs.other_tool_thaws().unwrap();
        fs.other_tool_freezes().unwrap();
        eprintln!("{kind:?}: thawed and refrozen by another tool within {:?}", t0.elapsed());
        ealready(f.thaw(&fs.mnt));
        assert!(fs.kernel_frozen(), "THAW thawed another tool's freeze");
        // Told once; the next THAW rescues the other tool's freeze as usual.
        f.thaw(&fs.mnt).unwrap();
        assert!(!fs.kernel_frozen());
    }
}

on_ext4_xfs_btrfs! {
    fn thaw_after_a_timeout_is_ealready_even_when_another_tool_froze_since(kind) {
        let fs = Scratch::new(kind);
        let f = fs.freezer();
        f.freeze(&fs.mnt, Timeout::Seconds(1)).unwrap();
        std::thread::sleep(Duration::from_millis(1300));
        fs.other_tool_freezes().unwrap();
        ealready(f.thaw(&fs.mnt));
        assert!(fs.kernel_frozen(), "THAW after a timeout thawed another tool's freeze");
        let last = f.status(&fs.mnt).unwrap().last_freeze.unwrap();
        assert_eq!(last.reason, EndReason::Timeout);
        fs.other_tool_thaws().unwrap();
    }
}

on_ext4_xfs_btrfs! {
    fn query_status_and_list_see_a_freeze_made_by_another_tool(kind) {
        let fs = Scratch::new(kind);
        let f = fs.freezer();
        fs.other_tool_freezes().unwrap();
        assert!(f.is_frozen(&fs.mnt).unwrap(), "QUERY missed another tool's freeze");
        let status = f.status(&fs.mnt).unwrap();
        assert_eq!(status.state, FreezeState::Frozen);
        assert!(status.frozen_by_other_tool);
        assert_eq!(status.pid, None);
        let listed = f.list().unwrap();
        assert!(
            listed.iter().any(|s| s.mount_point == fs.mnt && s.frozen_by_other_tool),
            "{listed:#?}"
        );
        assert_eq!(
            f.freeze(&fs.mnt, Timeout::Seconds(5)).unwrap_err().errno(),
            libc::EALREADY
        );
        fs.other_tool_thaws().unwrap();
        assert!(!f.is_frozen(&fs.mnt).unwrap());
        assert!(f.list().unwrap().iter().all(|s| s.mount_point != fs.mnt));
    }
}

on_ext4_xfs_btrfs! {
    fn a_thaw_by_freezefs_or_its_timeout_is_not_taken_for_another_tools(kind) {
        let fs = Scratch::new(kind);
        let f = fs.freezer();
        f.freeze(&fs.mnt, Timeout::Seconds(30)).unwrap();
        f.thaw(&fs.mnt).unwrap();
        assert_eq!(f.status(&fs.mnt).unwrap().last_freeze.unwrap().reason, EndReason::Thawed);
        f.freeze(&fs.mnt, Timeout::Seconds(1)).unwrap();
        assert!(
            wait_until(LONG, Duration::from_millis(20), || !fs.kernel_frozen()),
            "the timeout did not thaw"
        );
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(f.status(&fs.mnt).unwrap().last_freeze.unwrap().reason, EndReason::Timeout);
    }
}

on_ext4_xfs_btrfs! {
    fn a_holder_killed_while_its_waiter_waits_leaves_query_truthful(kind) {
        let fs = Scratch::new(kind);
        let f = fs.freezer();
        f.freeze(&fs.mnt, Timeout::Seconds(30)).unwrap();
        let holder = f.status(&fs.mnt).unwrap().holder_pid.unwrap();
        assert!(
            wait_until(LONG, POLL, || waits_in_the_kernel_for_a_thaw(holder)),
            "the holder has no thread waiting for the thaw"
        );
        sigkill(holder);
        // A thread waiting in the kernel keeps it from finishing its exit.
        assert!(wait_until(LONG, POLL, || !running(holder)));
        assert!(f.is_frozen(&fs.mnt).unwrap(), "still frozen, and QUERY must say so");
        fs.other_tool_thaws().unwrap();
        assert!(
            wait_until(LONG, POLL, || !f.is_frozen(&fs.mnt).unwrap()),
            "QUERY lied after another tool's thaw, with the holder dead"
        );
        ealready(f.thaw(&fs.mnt));
    }
}

/// True when a thread of `pid` sleeps waiting for a frozen filesystem.
fn waits_in_the_kernel_for_a_thaw(pid: u32) -> bool {
    threads_waiting_for_a_thaw(pid) > 0
}

/// How many threads of `pid` sleep waiting for a frozen filesystem.
fn threads_waiting_for_a_thaw(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| t.ok())
        .filter(|t| {
            std::fs::read_to_string(t.path().join("wchan"))
                .is_ok_and(|w| w.contains("percpu_rwsem"))
        })
        .count()
}

#[test]
fn another_tools_freeze_is_probed_once_per_superblock_while_it_lasts() {
    let mut fs = Scratch::new(Kind::Ext4);
    let bind = fs.bind("bind");
    let f = fs.freezer();
    fs.other_tool_freezes().unwrap();
    for _ in 0..5 {
        assert!(f.is_frozen(&fs.mnt).unwrap());
        assert!(f.is_frozen(&bind).unwrap());
    }
    let holders = support::live_holders(&fs);
    assert_eq!(holders.len(), 1, "{holders:?}");
    assert_eq!(
        threads_waiting_for_a_thaw(holders[0]),
        1,
        "ten QUERYs through two names of one superblock: one probe, kept"
    );
    fs.other_tool_thaws().unwrap();
    assert!(
        wait_until(LONG, POLL, || threads_waiting_for_a_thaw(holders[0]) == 0),
        "the probe still waits after the thaw"
    );
    assert!(!f.is_frozen(&fs.mnt).unwrap());
}

#[test]
fn a_pseudo_filesystem_is_never_probed() {
    let fs = Scratch::new(Kind::Tmpfs);
    // QUERY and status of it ask no holder (list's probes of the machine's
    // block filesystems would start one: its filter is unit-tested).
    assert!(!fs.freezer().is_frozen(&fs.mnt).unwrap());
    assert!(!fs.freezer().status(&fs.mnt).unwrap().frozen_by_other_tool);
    assert_eq!(
        support::live_holders(&fs),
        Vec::<u32>::new(),
        "a QUERY of a tmpfs started a holder to probe it"
    );
}

on_ext4_xfs_btrfs! {
    fn the_watch_and_the_probe_change_nothing_on_the_frozen_filesystem(kind) {
        let mut fs = Scratch::new(kind);
        std::fs::write(fs.mnt.join("data"), vec![7u8; 1 << 20]).unwrap();
        let f = fs.freezer();
        let before = listing(&fs.mnt);
        f.freeze(&fs.mnt, Timeout::Seconds(30)).unwrap();
        for _ in 0..20 {
            assert!(f.is_frozen(&fs.mnt).unwrap());
        }
        let copy = fs.dir.join("copy");
        std::fs::copy(fs.image.as_ref().unwrap(), &copy).unwrap();
        f.thaw(&fs.mnt).unwrap();
        // And while another tool's freeze is probed.
        fs.other_tool_freezes().unwrap();
        for _ in 0..20 {
            assert!(f.is_frozen(&fs.mnt).unwrap());
        }
        let probed_copy = fs.dir.join("probed-copy");
        std::fs::copy(fs.image.as_ref().unwrap(), &probed_copy).unwrap();
        fs.other_tool_thaws().unwrap();
        assert_eq!(listing(&fs.mnt), before, "something appeared on the filesystem");
        fs.unmount();
        for image in [&copy, &probed_copy] {
            check_image(kind, image);
        }
    }
}

fn listing(dir: &std::path::Path) -> Vec<std::ffi::OsString> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    names
}

on_ext4_xfs_btrfs! {
    fn a_read_only_filesystem_is_kept_by_its_record(kind) {
        let fs = Scratch::new(kind);
        run(Command::new("mount").args(["-o", "remount,ro"]).arg(&fs.mnt));
        let f = fs.freezer();
        f.freeze(&fs.mnt, Timeout::Seconds(30)).unwrap();
        // No waiter can wait on a read-only mount (nothing writes there
        // either): the record answers.
        assert!(f.is_frozen(&fs.mnt).unwrap());
        f.thaw(&fs.mnt).unwrap();
        assert!(!f.is_frozen(&fs.mnt).unwrap());
        assert!(
            wait_until(LONG, Duration::from_millis(20), || support::live_holders(&fs).is_empty()),
            "the holder stayed after a read-only freeze ended"
        );
    }
}

#[test]
fn a_bind_mount_names_the_same_watched_freeze() {
    let mut fs = Scratch::new(Kind::Ext4);
    let bind = fs.bind("bind");
    let f = fs.freezer();
    f.freeze(&bind, Timeout::Seconds(30)).unwrap();
    fs.other_tool_thaws().unwrap();
    assert!(wait_until(LONG, POLL, || !f.is_frozen(&fs.mnt).unwrap()));
    assert!(!f.is_frozen(&bind).unwrap());
    ealready(f.thaw(&fs.mnt));
}

#[test]
fn btrfs_subvolume_mounts_share_one_watched_freeze() {
    let mut fs = Scratch::new(Kind::Btrfs);
    run(Command::new("btrfs")
        .args(["-q", "subvolume", "create"])
        .arg(fs.mnt.join("sub")));
    let device = run(Command::new("findmnt").args(["-no", "SOURCE"]).arg(&fs.mnt));
    let sub = fs.mount_extra("sub", &["-o", "subvol=sub", device.trim()]);
    let f = fs.freezer();
    f.freeze(&sub, Timeout::Seconds(30)).unwrap();
    assert!(f.is_frozen(&fs.mnt).unwrap());
    fs.other_tool_thaws().unwrap();
    assert!(wait_until(LONG, POLL, || !f.is_frozen(&sub).unwrap()));
    assert!(!f.is_frozen(&fs.mnt).unwrap());
    ealready(f.thaw(&sub));
}

#[test]
fn an_event_says_another_tool_thawed_the_freeze() {
    let fs = Scratch::new(Kind::Ext4);
    let log = Syslog::new(&fs.dir);
    let mut freeze = Command::new(crate::support::freezefs_exe());
    freeze.args(["-t", "30"]).arg(&fs.mnt);
    let mut freeze = with_env(&mut freeze, &fs);
    run(freeze.env("FREEZEFS_SYSLOG_SOCKET", &log.path));
    fs.other_tool_thaws().unwrap();
    let messages = log.drain();
    let thawed = event(&messages, "freezefs.thawed");
    assert!(
        thawed.contains("reason=thawed\\040by\\040another\\040tool"),
        "{thawed}"
    );
    assert!(
        thawed.contains(&format!("mount_point={}", fs.mnt.display())),
        "{thawed}"
    );
}

#[test]
fn the_c_api_tells_how_the_last_freeze_ended() {
    let fs = Scratch::new(Kind::Ext4);
    let mnt = fs.mnt.to_str().unwrap();
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "last", &fs.mnt, "")),
        "rc=0 errno=0"
    );
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "30")),
        "rc=0 errno=0"
    );
    fs.other_tool_thaws().unwrap();
    assert!(wait_until(LONG, POLL, || {
        fzctl(&mut fzctl_cmd(&fs, "2", &fs.mnt, "")) == "rc=0 errno=0"
    }));
    // FREEZEFS_ENDED_OTHER_TOOL
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "last", &fs.mnt, "")),
        "rc=1 errno=0 reason=3"
    );
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "0", &fs.mnt, "")),
        "rc=-1 errno=EALREADY",
        "THAW of {mnt} after another tool's thaw"
    );
    fs.other_tool_freezes().unwrap();
    // FREEZEFS_FROZEN with no owner: status says frozen, QUERY 1.
    assert_eq!(fzctl(&mut fzctl_cmd(&fs, "2", &fs.mnt, "")), "rc=1 errno=0");
    fs.other_tool_thaws().unwrap();
}
