//! The guard (issue 29): `freezefs --guard` thaws a freeze that another
//! tool made and forgot, once it has lasted `freezefs_foreign_max_timeout`
//! (3 s here), whatever the tool: `fsfreeze` without the shim, Python's
//! `fcntl.ioctl`, a raw `syscall(SYS_ioctl)`, a static binary. It leaves
//! freezefs's own freezes to their own deadlines, only reports when the
//! limit is 0, sees a freeze made before it started, and thaws even the
//! filesystem its own executable lies on.
//!
//! A guard acts on every filesystem it sees, so each runs in a mount
//! namespace of the test's own that keeps only the test's scratch mounts
//! (and `/`, which a namespace cannot detach: the guard only probes it,
//! which changes nothing). The freezes are made from outside, on the same
//! superblocks. A freeze's end is told by a writer that waits on it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::private_mounts::PrivateMounts;
use crate::support::{
    Kind, STRICT_C, Scratch, Syslog, cc, crate_dir, event, freezefs_exe, lib_dir, run, thawfs_exe,
    wait_until, with_env,
};

/// A guard running in a namespace (nsenter execs it: its pid is the
/// guard's), and the syslog it reports to.
struct Guard {
    child: Child,
    syslog: Syslog,
}

impl Guard {
    /// Starts `freezefs --guard` in `ns`, with `fs`'s state directory and
    /// a sysconfigtab that sets the limit to `limit`; returns once it said
    /// it runs.
    fn start(ns: &PrivateMounts, fs: &Scratch, limit: &str) -> Guard {
        Guard::start_from(
            ns,
            fs,
            limit,
            Path::new(freezefs_exe()),
            &fs.sysconfigtab(),
            None,
        )
    }

    /// [`Guard::start`] of `exe`, with its sysconfigtab at `sysconfigtab`
    /// (named `inside` where the guard runs, when that differs).
    fn start_from(
        ns: &PrivateMounts,
        fs: &Scratch,
        limit: &str,
        exe: &Path,
        sysconfigtab: &Path,
        inside: Option<&Path>,
    ) -> Guard {
        std::fs::write(
            sysconfigtab,
            format!("vfs:\n\tfreezefs_foreign_max_timeout = {limit}\n"),
        )
        .unwrap();
        let syslog = Syslog::new(&fs.dir);
        let mut cmd = ns.command(exe);
        cmd.arg("--guard");
        let mut child = with_env(&mut cmd, fs)
            .env("FREEZEFS_SYSCONFIGTAB", inside.unwrap_or(sysconfigtab))
            .env("FREEZEFS_SYSLOG_SOCKET", &syslog.path)
            .env_remove("LD_PRELOAD")
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let said = first_line(&mut child);
        assert!(
            said.starts_with("freezefs: guarding "),
            "the guard said: {said:?}"
        );
        Guard { child, syslog }
    }
}

impl Guard {
    /// Waits up to `limit` for an event named `name`: when it came, and
    /// every message heard meanwhile.
    fn heard(&self, name: &str, limit: Duration) -> (Option<Instant>, Vec<String>) {
        let start = Instant::now();
        let mut heard = Vec::new();
        let mut buf = [0u8; 4096];
        while start.elapsed() < limit {
            if let Ok(n) = self.syslog.socket.recv(&mut buf) {
                let message = String::from_utf8_lossy(&buf[..n]).into_owned();
                let found = message.contains(&format!("]: {name} "));
                heard.push(message);
                if found {
                    return (Some(Instant::now()), heard);
                }
            }
        }
        (None, heard)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        crate::support::sigterm(self.child.id());
        // A guard whose probe waits on a filesystem a failed test left
        // frozen finishes exiting when the scratch's drop thaws it: never
        // waited for here.
        let _ = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
    }
}

/// The first line a child wrote on stderr (within 10 s).
fn first_line(child: &mut Child) -> String {
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stderr);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line.clone());
        // The rest, so that the child never blocks on a full pipe.
        let mut rest = String::new();
        while reader.read_line(&mut rest).is_ok_and(|n| n > 0) {
            rest.clear();
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A thread that writes a file on `fs` and tells when the write completed:
/// at once when thawed, at the thaw when frozen.
fn writer(fs: &Scratch) -> mpsc::Receiver<Instant> {
    let (tx, rx) = mpsc::channel();
    let file = fs.mnt.join("written-after-the-thaw");
    std::thread::spawn(move || {
        if std::fs::write(&file, b"x").is_ok() {
            let _ = tx.send(Instant::now());
        }
    });
    rx
}

/// How long after `frozen` the writer got through (`None`: not within `limit`).
fn thawed_after(
    rx: &mpsc::Receiver<Instant>,
    frozen: Instant,
    limit: Duration,
) -> Option<Duration> {
    rx.recv_timeout(limit).ok().map(|at| at - frozen)
}

/// `raw_freeze` (c-tests/raw_freeze.c), built dynamically or statically.
fn raw_freeze(statically: bool) -> PathBuf {
    let out = lib_dir().join(if statically {
        "raw_freeze_static"
    } else {
        "raw_freeze_dynamic"
    });
    let src = crate_dir().join("c-tests/raw_freeze.c");
    let mut args: Vec<&str> = STRICT_C.to_vec();
    if statically {
        args.push("-static");
    }
    args.extend([src.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    cc(&args);
    out
}

/// Freezes `fs` with `freezer` (its whole command line, the mount point
/// last), outside the guard's namespace and without the shim; the moment
/// the freezer returned.
fn freeze_with(freezer: &mut Command, fs: &Scratch) -> Instant {
    run(freezer.arg(&fs.mnt).env_remove("LD_PRELOAD"));
    Instant::now()
}

/// `took` (from a freeze, or from the guard's start) is the limit, 3 s,
/// give or take a tick.
fn assert_thawed_within_3_to_4_s(took: Duration, after: &str) {
    assert!(
        took >= Duration::from_millis(2900) && took <= Duration::from_secs(4),
        "thawed {took:?} after {after}, not within 3 to 4 s"
    );
}

/// The guard thaws the freeze `freezer` makes within 3 to 4 s of it, and
/// says so: another tool froze it, since when, and that it thawed it.
fn thawed_within_3_to_4_s(kind: Kind, freezer: &mut Command) {
    let fs = Scratch::new(kind);
    let ns = PrivateMounts::new(&[&fs]);
    let guard = Guard::start(&ns, &fs, "3");
    let frozen = freeze_with(freezer, &fs);
    let rx = writer(&fs);
    let (noticed, mut said) = guard.heard("freezefs.foreign", Duration::from_secs(3));
    let noticed = noticed.map(|at| at - frozen);
    assert!(
        noticed.is_some_and(|n| n <= Duration::from_secs(1)),
        "the guard noticed the freeze after {noticed:?}, not within 1 s"
    );
    let took = thawed_after(&rx, frozen, Duration::from_secs(10));
    let took = took.expect("the guard did not thaw the freeze within 10 s");
    assert_thawed_within_3_to_4_s(took, "the freeze");
    eprintln!(
        "{kind:?}: frozen by {freezer:?}, noticed after {noticed:?}, thawed by the guard after {took:?}"
    );
    said.extend(guard.syslog.drain());
    let timeout = event(&said, "freezefs.timeout");
    for words in [
        "frozen\\040by\\040another\\040tool",
        "seen\\040frozen\\040since\\040",
        "the\\040guard\\040thawed\\040it",
    ] {
        assert!(timeout.contains(words), "{timeout}");
    }
    event(&said, "freezefs.foreign");
}

#[test]
fn fsfreeze_without_the_shim_is_thawed_by_the_guard_within_3_to_4_s() {
    thawed_within_3_to_4_s(Kind::Ext4, Command::new("fsfreeze").arg("-f"));
}

#[test]
fn a_python_fcntl_ioctl_freeze_is_thawed_by_the_guard_within_3_to_4_s() {
    thawed_within_3_to_4_s(
        Kind::Xfs,
        Command::new("python3").arg("-c").arg(
            "import fcntl, os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\nfcntl.ioctl(fd, 0xC0045877, 0)  # FIFREEZE",
        ),
    );
}

#[test]
fn a_raw_syscall_freeze_is_thawed_by_the_guard_within_3_to_4_s() {
    thawed_within_3_to_4_s(Kind::Btrfs, &mut Command::new(raw_freeze(false)));
}

#[test]
fn a_static_freezers_freeze_is_thawed_by_the_guard_within_3_to_4_s() {
    let freezer = raw_freeze(true);
    let ldd = Command::new("ldd").arg(&freezer).output().unwrap();
    assert!(
        String::from_utf8_lossy(&ldd.stdout).contains("not a dynamic executable")
            || String::from_utf8_lossy(&ldd.stderr).contains("not a dynamic executable"),
        "{} is not static",
        freezer.display()
    );
    thawed_within_3_to_4_s(Kind::Ext4, &mut Command::new(freezer));
}

#[test]
fn a_freezefs_freeze_longer_than_the_limit_is_left_to_its_own_deadline() {
    let fs = Scratch::new(Kind::Ext4);
    let ns = PrivateMounts::new(&[&fs]);
    let guard = Guard::start(&ns, &fs, "3");
    run(&mut with_env(
        Command::new(freezefs_exe()).args(["-t", "10"]).arg(&fs.mnt),
        &fs,
    ));
    let frozen = Instant::now();
    let took = thawed_after(&writer(&fs), frozen, Duration::from_secs(20))
        .expect("the freeze did not end within 20 s");
    assert!(
        took >= Duration::from_millis(9500),
        "a freezefs freeze with -t 10 ended after {took:?}: the guard ended it"
    );
    let said = guard.syslog.drain();
    assert!(
        !said
            .iter()
            .any(|m| m.contains("freezefs.foreign") || m.contains("the\\040guard")),
        "the guard took freezefs's freeze for another tool's: {said:#?}"
    );
}

#[test]
fn with_the_limit_at_0_the_guard_only_reports() {
    let fs = Scratch::new(Kind::Ext4);
    let ns = PrivateMounts::new(&[&fs]);
    let guard = Guard::start(&ns, &fs, "0");
    let frozen = freeze_with(Command::new("fsfreeze").arg("-f"), &fs);
    let rx = writer(&fs);
    assert_eq!(
        thawed_after(&rx, frozen, Duration::from_secs(5)),
        None,
        "the guard thawed with the limit at 0"
    );
    let said = guard.syslog.drain();
    let foreign = event(&said, "freezefs.foreign");
    assert!(foreign.contains("only\\040reports"), "{foreign}");
    run(Command::new("fsfreeze").arg("-u").arg(&fs.mnt));
    assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
    assert!(
        wait_until(Duration::from_secs(3), Duration::from_millis(50), || {
            guard
                .syslog
                .drain()
                .iter()
                .any(|m| m.contains("thawed\\040by\\040another\\040tool"))
        }),
        "the guard did not say that another tool thawed it"
    );
}

#[test]
fn a_freeze_made_before_the_guard_started_is_thawed_the_limit_after_it_starts() {
    let fs = Scratch::new(Kind::Xfs);
    let ns = PrivateMounts::new(&[&fs]);
    freeze_with(Command::new("fsfreeze").arg("-f"), &fs);
    let rx = writer(&fs);
    std::thread::sleep(Duration::from_secs(1));
    let started = Instant::now();
    let _guard = Guard::start(&ns, &fs, "3");
    let took = thawed_after(&rx, started, Duration::from_secs(10))
        .expect("the guard did not thaw a freeze made before it started");
    assert_thawed_within_3_to_4_s(took, "the guard started");
}

#[test]
fn freezefs_l_shows_since_when_the_guard_has_seen_a_foreign_freeze_and_when_it_thaws_it() {
    let fs = Scratch::new(Kind::Ext4);
    let ns = PrivateMounts::new(&[&fs]);
    let guard = Guard::start(&ns, &fs, "30");
    freeze_with(Command::new("fsfreeze").arg("-f"), &fs);
    let rx = writer(&fs);
    let list = || {
        run(&mut with_env(
            Command::new(freezefs_exe()).args(["-l", "--json"]),
            &fs,
        ))
    };
    let mut json = String::new();
    assert!(
        wait_until(Duration::from_secs(3), Duration::from_millis(100), || {
            json = list();
            json.contains("\"guard_thaws_at\":\"")
        }),
        "freezefs -l --json does not show the guard's plan: {json}"
    );
    assert!(json.contains("\"frozen_by_other_tool\":true"), "{json}");
    assert!(json.contains("\"seen_frozen_since\":\""), "{json}");
    assert!(
        json.contains(&format!("\"guard_pid\":{}", guard.child.id())),
        "{json}"
    );
    let table = run(&mut with_env(Command::new(freezefs_exe()).arg("-l"), &fs));
    let row = table
        .lines()
        .find(|l| l.starts_with(&fs.mnt.display().to_string()))
        .unwrap_or_else(|| panic!("no row for the scratch in {table}"));
    let left: f64 = row
        .split_whitespace()
        .find_map(|w| w.strip_suffix('s').and_then(|n| n.parse().ok()))
        .unwrap_or_else(|| panic!("no time left in {row}"));
    assert!((25.0..=30.0).contains(&left), "{row}");
    run(&mut with_env(Command::new(thawfs_exe()).arg(&fs.mnt), &fs));
    assert!(rx.recv_timeout(Duration::from_secs(5)).is_ok());
}

/// Its executable and its sysconfigtab on the frozen filesystem, which is
/// the root of its namespace: it still thaws it.
#[test]
fn the_guard_thaws_a_foreign_freeze_of_the_filesystem_holding_its_own_executable() {
    let fs = Scratch::new(Kind::Ext4);
    let mut ns = PrivateMounts::new(&[&fs]);
    ns.root_in(&fs);
    let bin = fs.mnt.join("guard-bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(freezefs_exe(), bin.join("freezefs")).unwrap();
    let _guard = Guard::start_from(
        &ns,
        &fs,
        "3",
        Path::new("/guard-bin/freezefs"),
        &bin.join("sysconfigtab"),
        Some(Path::new("/guard-bin/sysconfigtab")),
    );
    let frozen = freeze_with(Command::new("fsfreeze").arg("-f"), &fs);
    let took = thawed_after(&writer(&fs), frozen, Duration::from_secs(10))
        .expect("the guard did not thaw the filesystem of its own executable");
    assert_thawed_within_3_to_4_s(took, "the freeze");
}

#[test]
fn a_second_guard_for_the_same_state_directory_is_refused() {
    let fs = Scratch::new(Kind::Ext4);
    let ns = PrivateMounts::new(&[&fs]);
    let _first = Guard::start(&ns, &fs, "3");
    let out = with_env(ns.command(freezefs_exe()).arg("--guard"), &fs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("another guard already runs"), "{said}");
}

#[test]
fn sigterm_ends_the_guard_with_status_0() {
    let fs = Scratch::new(Kind::Ext4);
    let ns = PrivateMounts::new(&[&fs]);
    let mut guard = Guard::start(&ns, &fs, "3");
    crate::support::sigterm(guard.child.id());
    let mut status = None;
    wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        status = guard.child.try_wait().unwrap();
        status.is_some()
    });
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{status:?}");
}

/// A filesystem mounted inside the guard's namespace after it started, on
/// an image of its own; thawed and unmounted there on drop.
struct LateMount<'a> {
    ns: &'a PrivateMounts,
    mnt: PathBuf,
}

impl<'a> LateMount<'a> {
    fn new(ns: &'a PrivateMounts, fs: &Scratch) -> LateMount<'a> {
        let image = fs.dir.join("late.img");
        std::fs::File::create(&image)
            .unwrap()
            .set_len(64 << 20)
            .unwrap();
        run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&image));
        let mnt = fs.dir.join("late");
        std::fs::create_dir(&mnt).unwrap();
        run(ns
            .command("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mnt));
        LateMount { ns, mnt }
    }
}

impl Drop for LateMount<'_> {
    fn drop(&mut self) {
        // Never unmount before thawing.
        let _ = self
            .ns
            .command("fsfreeze")
            .arg("-u")
            .arg(&self.mnt)
            .output();
        let _ = self.ns.command("umount").arg(&self.mnt).output();
    }
}

/// The guard rereads the mount table when it changes: a filesystem mounted
/// after it started is guarded as the others.
#[test]
fn a_filesystem_mounted_after_the_guard_started_is_guarded_too() {
    let fs = Scratch::new(Kind::Ext4);
    let ns = PrivateMounts::new(&[&fs]);
    let _guard = Guard::start(&ns, &fs, "3");
    let late = LateMount::new(&ns, &fs);
    run(ns.command("fsfreeze").arg("-f").arg(&late.mnt));
    let frozen = Instant::now();
    let mut writer = ns
        .command("sh")
        .arg("-c")
        .arg(format!("echo x >{}/written", late.mnt.display()))
        .spawn()
        .unwrap();
    let mut took = None;
    wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
        took = writer.try_wait().unwrap().map(|_| frozen.elapsed());
        took.is_some()
    });
    drop(late);
    let _ = writer.wait();
    let took = took.expect("the guard did not thaw a filesystem mounted after it started");
    assert_thawed_within_3_to_4_s(took, "the freeze");
}
