//! The holder process keeps freezes whatever happens to their callers
//! (issue 3), on real filesystems.

use crate::support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use freezefs::Timeout;
use support::{
    Kind, Scratch, frozen_writer, fzctl, fzctl_cmd, live_holders, live_wardens, program, running,
    sigkill, with_env,
};

fn holder_of(fs: &Scratch) -> u32 {
    fs.freezer()
        .status(&fs.mnt)
        .unwrap()
        .holder_pid
        .expect("a frozen filesystem has a holder")
}

/// True while the process has an fd on a path under `dir`.
fn holds_fd_under(pid: u32, dir: &std::path::Path) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|fds| {
            fds.filter_map(|e| e.ok())
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .any(|target| target.starts_with(dir))
        })
        .unwrap_or(false)
}

#[test]
fn umount_of_a_frozen_filesystem_fails_ebusy() {
    let fs = Scratch::new(Kind::Ext4);
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "-1")),
        "rc=0 errno=0"
    );
    let out = Command::new("umount").arg(&fs.mnt).output().unwrap();
    assert!(
        !out.status.success(),
        "umount of a frozen filesystem succeeded"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("busy"),
        "{out:?}"
    );
    assert!(fs.kernel_frozen());
    fs.freezer().thaw(&fs.mnt).unwrap();
}

#[test]
fn the_holder_is_detached_clean_and_holds_only_what_it_needs() {
    let fs = Scratch::new(Kind::Xfs);
    // A caller with LD_PRELOAD in its environment and an extra inherited fd.
    let script = format!(
        "exec 7</etc/hostname; exec {} 1 {} 30",
        program("fzctl").display(),
        fs.mnt.display()
    );
    let libm = "/lib/x86_64-linux-gnu/libm.so.6";
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(&script).env("LD_PRELOAD", libm);
    let caller = with_env(&mut cmd, &fs).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&caller.stdout).trim(),
        "rc=0 errno=0"
    );
    let holder = holder_of(&fs);
    assert!(running(holder));
    let environ = std::fs::read(format!("/proc/{holder}/environ")).unwrap();
    assert!(
        !String::from_utf8_lossy(&environ).contains("LD_PRELOAD"),
        "holder env: {environ:?}"
    );
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{holder}/fd"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .map(|t| t.display().to_string())
        .collect();
    assert!(
        !fds.iter().any(|t| t.contains("hostname")),
        "the caller's fd leaked: {fds:?}"
    );
    assert!(
        fds.iter().any(|t| t == &fs.mnt.display().to_string()),
        "no fd on the mount: {fds:?}"
    );
    let stat = std::fs::read_to_string(format!("/proc/{holder}/stat")).unwrap();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let (ppid, session, tty) = (fields[1], fields[3], fields[4]);
    assert_eq!(
        session,
        holder.to_string(),
        "the holder leads its own session"
    );
    assert_eq!(tty, "0", "the holder has no controlling terminal");
    assert_ne!(ppid, std::process::id().to_string());
    let status = std::fs::read_to_string(format!("/proc/{holder}/status")).unwrap();
    // A hang-up is a request to stop, read from a signalfd: blocked, so
    // that it never kills the holder before it thawed.
    let blocked = status.lines().find(|l| l.starts_with("SigBlk:")).unwrap();
    let mask = u64::from_str_radix(blocked.split_whitespace().nth(1).unwrap(), 16).unwrap();
    for sig in [libc::SIGHUP, libc::SIGTERM, libc::SIGINT] {
        assert!(
            mask & (1 << (sig - 1)) != 0,
            "the holder does not block {sig}"
        );
    }
    fs.freezer().thaw(&fs.mnt).unwrap();
}

#[test]
fn the_holder_lets_go_within_100_ms_of_a_thaw_by_another_process_and_exits() {
    let fs = Scratch::new(Kind::Ext4);
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "-1")),
        "rc=0 errno=0"
    );
    let holder = holder_of(&fs);
    assert!(holds_fd_under(holder, &fs.mnt));
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "0", &fs.mnt, "0")),
        "rc=0 errno=0"
    );
    let thawed = Instant::now();
    assert!(
        support::wait_until(Duration::from_secs(2), Duration::from_millis(2), || {
            !holds_fd_under(holder, &fs.mnt)
        }),
        "the holder kept its fd"
    );
    let let_go = thawed.elapsed();
    assert!(
        support::wait_until(Duration::from_secs(2), Duration::from_millis(2), || {
            !running(holder)
        }),
        "the holder did not exit"
    );
    let exited = thawed.elapsed();
    eprintln!("holder let go after {let_go:?}, exited after {exited:?}");
    assert!(
        let_go < Duration::from_millis(100),
        "let go after {let_go:?}"
    );
    assert!(
        exited < Duration::from_millis(200),
        "exited after {exited:?}"
    );
}

#[test]
fn the_caller_has_no_zombie_child_after_starting_holders() {
    let fs = Scratch::new(Kind::Ext4);
    let f = fs.freezer();
    for _ in 0..5 {
        f.freeze(&fs.mnt, Timeout::Seconds(30)).unwrap();
        f.thaw(&fs.mnt).unwrap();
        thread::sleep(Duration::from_millis(120)); // the holder exits; the next freeze starts one
    }
    let me = std::process::id().to_string();
    // Other tests of this process run children of their own, which may be
    // zombies for a moment: only the children a freeze can leave count, the
    // clone children of this thread (they bear its name) and holders.
    let this_thread = std::fs::read_to_string("/proc/thread-self/comm").unwrap();
    let ours = |comm: &str| comm == this_thread.trim() || comm.starts_with("freezefs-holde");
    let zombies: Vec<u32> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let Some((head, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let comm = head.split_once('(').map_or("", |h| h.1);
            let rest: Vec<&str> = rest.split_whitespace().collect();
            rest.first() == Some(&"Z") && rest.get(1) == Some(&me.as_str()) && ours(comm)
        })
        .collect();
    assert!(
        zombies.is_empty(),
        "zombie children of the caller: {zombies:?}"
    );
}

#[test]
fn a_caller_with_a_sigchld_handler_and_waitpid_is_not_disturbed() {
    let fs = Scratch::new(Kind::Ext4);
    let out = with_env(Command::new(program("sigchld")).arg(&fs.mnt), &fs)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("not ok"), "{text}");
}

#[test]
fn a_caller_killed_while_blocked_on_its_own_frozen_filesystem_is_thawed_by_the_holder() {
    let fs = Scratch::new(Kind::Ext4);
    let mut child = frozen_writer(&fs, "2", |cmd| with_env(cmd, &fs));
    let frozen_by = Instant::now();
    thread::sleep(Duration::from_millis(300));
    assert!(fs.kernel_frozen(), "the writer was not blocked");
    // SIGKILL while it is blocked: its helper thread dies with it.
    sigkill(child.id());
    let done = fs.write_in_background();
    let thawed = done
        .recv_timeout(Duration::from_secs(5))
        .expect("never thawed");
    let late = thawed.saturating_duration_since(frozen_by + Duration::from_secs(2));
    assert!(
        late < Duration::from_millis(500),
        "thawed {late:?} after the deadline"
    );
    child.wait().unwrap();
    eprintln!("killed while blocked: thawed {late:?} after the deadline");
}

fn now_boot_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The record's phase and deadline, while it exists.
fn recorded_deadline(fs: &Scratch) -> Option<(String, Option<u64>)> {
    let text = fs.record_text()?;
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(str::to_string)
    };
    Some((field("phase ")?, field("deadline_boot_ns ")?.parse().ok()))
}

/// 50 freezers (timeout 1 s) killed with SIGKILL at random moments of their
/// call, 10 at a time on 5 filesystems: every filesystem is thawed by its
/// deadline + 0.5 s (a freeze that never returned to its caller is undone at
/// once), and no record or holder is left.
#[test]
fn fifty_freezers_killed_at_random_moments_are_all_thawed_by_the_deadline() {
    let filesystems: Vec<Arc<Scratch>> =
        (0..5).map(|_| Arc::new(Scratch::new(Kind::Ext4))).collect();
    let workers: Vec<_> = filesystems
        .iter()
        .enumerate()
        .map(|(n, fs)| {
            let fs = Arc::clone(fs);
            thread::spawn(move || {
                let (mut worst_ns, mut completed) = (0u64, 0);
                for trial in 0..10u64 {
                    let mut child = fzctl_cmd(&fs, "1", &fs.mnt, "1")
                        .stdout(Stdio::null())
                        .spawn()
                        .unwrap();
                    let seed = (n as u64 * 10 + trial) * 2_654_435_761 % 12_000;
                    thread::sleep(Duration::from_micros(seed));
                    sigkill(child.id());
                    child.wait().unwrap();
                    let recorded = recorded_deadline(&fs);
                    let done = fs.write_in_background();
                    done.recv_timeout(Duration::from_secs(5))
                        .expect("never thawed");
                    let thawed_at = now_boot_ns();
                    if let Some((phase, Some(deadline))) = recorded {
                        if phase == "frozen" {
                            completed += 1;
                            let late = thawed_at.saturating_sub(deadline);
                            worst_ns = worst_ns.max(late);
                            assert!(late < 500_000_000, "trial {n}/{trial}: {late} ns late");
                        }
                    }
                    assert!(
                        support::wait_until(
                            Duration::from_secs(1),
                            Duration::from_millis(5),
                            || fs.record_text().is_none()
                        ),
                        "trial {n}/{trial}: a record was left"
                    );
                }
                (worst_ns, completed)
            })
        })
        .collect();
    let results: Vec<(u64, i32)> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let worst = results.iter().map(|r| r.0).max().unwrap();
    let completed: i32 = results.iter().map(|r| r.1).sum();
    eprintln!(
        "50 SIGKILL trials: {completed} froze before the kill, worst thaw {:.1} ms after its deadline",
        worst as f64 / 1e6
    );
    thread::sleep(Duration::from_millis(200));
    for fs in &filesystems {
        let live = live_holders(fs);
        assert!(live.is_empty(), "holders left: {live:?}");
    }
}

#[test]
fn when_the_holder_is_killed_its_warden_enforces_the_deadline() {
    let fs = Scratch::new(Kind::Btrfs);
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "1")),
        "rc=0 errno=0"
    );
    let holder = holder_of(&fs);
    sigkill(holder);
    thread::sleep(Duration::from_millis(1400));
    // The warden kept the deadline; QUERY says so without a thaw of its own.
    assert_eq!(fs.record_text(), None);
    assert!(!fs.kernel_frozen());
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "2", &fs.mnt, "0")),
        "rc=0 errno=0"
    );
    let last = fs.freezer().status(&fs.mnt).unwrap().last_freeze.unwrap();
    assert_eq!(last.reason, freezefs::EndReason::Timeout);
    // And the next freeze starts a new holder.
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "30")),
        "rc=0 errno=0"
    );
    assert_ne!(holder_of(&fs), holder);
    fs.freezer().thaw(&fs.mnt).unwrap();
}

/// A holder killed while a waiter of its waits cannot finish exiting: its
/// socket takes connections and nobody answers. A FREEZE that reaches it
/// hears the silence after its FIFREEZE (a running holder answers while
/// FIFREEZE flushes) and hands the freeze to a new holder: the freeze is
/// kept by a live one, QUERY says so, THAW ends it.
#[test]
fn a_freeze_sent_to_a_killed_holder_whose_waiter_waits_is_kept_by_a_new_one() {
    let a = Scratch::new(Kind::Ext4);
    let b = Scratch::new(Kind::Xfs);
    assert_eq!(fzctl(&mut fzctl_cmd(&a, "1", &a.mnt, "30")), "rc=0 errno=0");
    let killed = holder_of(&a);
    // Its warden first, which would start a new holder within 100 ms.
    for warden in live_wardens(&a) {
        sigkill(warden);
    }
    sigkill(killed);
    thread::sleep(Duration::from_millis(50));
    assert!(
        a.state_dir().join("holder.sock").exists(),
        "the killed holder's socket is gone"
    );
    // b, through a's state directory and its killed holder's socket.
    assert_eq!(fzctl(&mut fzctl_cmd(&a, "1", &b.mnt, "30")), "rc=0 errno=0");
    let f = a.freezer();
    let keeper = f
        .status(&b.mnt)
        .unwrap()
        .holder_pid
        .expect("b has a holder");
    assert_ne!(keeper, killed);
    assert!(running(keeper), "b's holder {keeper} is not running");
    assert!(f.is_frozen(&b.mnt).unwrap());
    assert!(b.kernel_frozen());
    f.thaw(&b.mnt).unwrap();
    assert!(!b.kernel_frozen());
    f.thaw(&a.mnt).unwrap();
}

/// A THAW killed after marking the record `thawing` and before its FITHAW
/// leaves the filesystem frozen, its waiter waiting and its record saying
/// "not frozen": the holder finishes that thaw without anyone asking, even
/// with no deadline to wake it.
#[test]
fn a_thaw_killed_before_its_fithaw_is_finished_by_the_holder() {
    let fs = Scratch::new(Kind::Ext4);
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "-1")),
        "rc=0 errno=0"
    );
    // What such a thawer leaves, written as a THAW writes a record: a dead
    // process marked as the thawer.
    let mut gone = Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let text = fs.record_text().unwrap();
    assert!(text.lines().any(|l| l == "phase frozen"), "{text}");
    fs.rewrite_record(&[
        ("phase", "thawing".to_string()),
        ("thawer", format!("{} 1", gone.id())),
    ]);
    let done = fs.write_in_background();
    let finished = done.recv_timeout(Duration::from_secs(3)).is_ok();
    if !finished {
        let _ = fs.freezer().thaw(&fs.mnt);
    }
    assert!(finished, "the half-done thaw was never finished");
    assert!(!fs.freezer().is_frozen(&fs.mnt).unwrap());
}

#[test]
fn a_holder_that_cannot_be_started_fails_the_freeze_with_echild_and_freezes_nothing() {
    let fs = Scratch::new(Kind::Ext4);
    let mut cmd = fzctl_cmd(&fs, "1", &fs.mnt, "30");
    cmd.env("FREEZEFS_HOLDER", fs.dir.join("no-such-holder"));
    assert_eq!(fzctl(&mut cmd), "rc=-1 errno=ECHILD");
    assert!(!fs.kernel_frozen());
    assert_eq!(fs.record_text(), None);
}

#[test]
fn a_late_holder_never_thaws_a_newer_freeze_made_by_another_process() {
    let fs = Scratch::new(Kind::Xfs);
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "1")),
        "rc=0 errno=0"
    );
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "0", &fs.mnt, "0")),
        "rc=0 errno=0"
    );
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "-1")),
        "rc=0 errno=0"
    );
    thread::sleep(Duration::from_millis(1500));
    assert!(
        fs.kernel_frozen(),
        "the first freeze's deadline thawed the second"
    );
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "2", &fs.mnt, "0")),
        "rc=1 errno=0"
    );
    fs.freezer().thaw(&fs.mnt).unwrap();
}

/// The holder answers clients after the command that started it exited:
/// the next command reuses it rather than starting another (the socket's
/// peer is the holder itself, not its starter).
#[test]
fn a_holder_started_by_a_command_that_exited_serves_the_next_command() {
    let fs = Scratch::new(Kind::Ext4);
    let freezefs = |args: &[&std::ffi::OsStr]| {
        let mut cmd = Command::new(crate::support::freezefs_exe());
        cmd.args(args);
        assert!(with_env(&mut cmd, &fs).status().unwrap().success());
    };
    freezefs(&["-t".as_ref(), "30".as_ref(), fs.mnt.as_os_str()]);
    let first = holder_of(&fs);
    fs.freezer().thaw(&fs.mnt).unwrap();
    freezefs(&["-t".as_ref(), "30".as_ref(), fs.mnt.as_os_str()]);
    assert_eq!(holder_of(&fs), first, "a second holder was started");
    assert_eq!(live_holders(&fs), vec![first]);
    fs.freezer().thaw(&fs.mnt).unwrap();
}

/// The state directory removed while a freeze is kept: the holder still
/// thaws at the deadline it read, then lets go and exits.
#[test]
fn a_holder_whose_state_directory_is_removed_still_thaws_by_the_deadline_and_exits() {
    let fs = Scratch::new(Kind::Ext4);
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "2")),
        "rc=0 errno=0"
    );
    let holder = holder_of(&fs);
    std::fs::remove_dir_all(fs.state_dir()).unwrap();
    assert!(support::wait_until(
        Duration::from_secs(4),
        Duration::from_millis(10),
        || !fs.kernel_frozen()
    ));
    assert!(
        support::wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
            !running(holder)
        }),
        "the holder stayed"
    );
}
