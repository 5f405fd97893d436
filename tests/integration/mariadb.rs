//! examples/hold/50-mariadb on a real MariaDB (issue 28): its data on a
//! scratch ext4, sysbench and a MyISAM insert loop writing. Under the hold,
//! `freezefs -- cp IMAGE COPY` gives a copy whose MyISAM tables are closed
//! and whose rows are those of the moment of the lock; without it, the
//! tables are caught open. The lock goes within the grace period plus a
//! second of every ending, a client killed while frozen is reported, and
//! a lock held up by a long write cancels the freeze instead of stalling
//! every writer.

use crate::hold_hooks::group_gone;
use crate::mariadb_server::MariaDb;
use crate::support::{
    self, Kind, Scratch, freezefs_exe, live_holders, sigkill, thawfs_exe, with_env,
};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `freezefs_hold_grace` when the sysconfigtab says nothing.
const GRACE: Duration = Duration::from_secs(5);

/// A scratch ext4 with a MariaDB on it, a table of each engine, and the
/// hold hook directory of examples/hold/50-mariadb.
fn server(lock_wait_s: u32) -> (Scratch, MariaDb, PathBuf) {
    let fs = Scratch::sized(Kind::Ext4, Some(512));
    let db = MariaDb::install_and_start(&fs.mnt.join("db"), &fs.dir.join("mariadb"));
    db.sql("CREATE DATABASE t; CREATE TABLE t.i (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=InnoDB; CREATE TABLE t.m (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=MyISAM; INSERT INTO t.i (v) VALUES (1); INSERT INTO t.m (v) VALUES (1)");
    let hold = db.hold_dir(&fs, lock_wait_s);
    (fs, db, hold)
}

fn freezefs(fs: &Scratch, hold: &Path) -> Command {
    let mut cmd = Command::new(freezefs_exe());
    let mut cmd = with_env(&mut cmd, fs);
    cmd.env("FREEZEFS_HOLD_DIR", hold);
    cmd
}

/// `thawfs MOUNT` from another shell.
fn thawfs(fs: &Scratch) -> Output {
    with_env(Command::new(thawfs_exe()).arg(&fs.mnt), fs)
        .output()
        .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The pid (its process group) of the hold hook holding for `fs`, once it
/// is ready: the process whose command line is `50-mariadb hold MOUNT`
/// and that holds a session.
fn hold_pid(fs: &Scratch, db: &MariaDb) -> u32 {
    let wanted = format!("50-mariadb\0hold\0{}\0", fs.mnt.display());
    let mut pid = None;
    support::wait_until(Duration::from_secs(30), Duration::from_millis(20), || {
        pid = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .find_map(|e| {
                let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
                String::from_utf8_lossy(&cmdline)
                    .contains(&wanted)
                    .then(|| e.file_name().to_str()?.parse::<u32>().ok())
                    .flatten()
            });
        pid.is_some()
            && db.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO IS NULL")
                != "0"
    });
    pid.expect("no hold hook holds for the freeze")
}

/// Freezes `fs` with the hold for `timeout` seconds; the hold's pid, and an
/// INSERT started under the lock, which must wait.
fn frozen_and_locked(
    fs: &Scratch,
    db: &MariaDb,
    hold: &Path,
    timeout: &str,
) -> (u32, mpsc::Receiver<Instant>) {
    let out = freezefs(fs, hold)
        .args(["-t", timeout])
        .arg(&fs.mnt)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    insert_waits(fs, db)
}

fn insert_waits(fs: &Scratch, db: &MariaDb) -> (u32, mpsc::Receiver<Instant>) {
    let pgid = hold_pid(fs, db);
    let insert = db.sql_in_background("INSERT INTO t.i (v) VALUES (2)");
    assert!(
        insert.recv_timeout(Duration::from_millis(500)).is_err(),
        "an INSERT completed under the lock"
    );
    (pgid, insert)
}

/// After an ending at `ended`: the waiting INSERT completes within the
/// grace period plus a second, no session waits on the lock, and the hold
/// hook's process group is gone. Returns how long the lock outlived the
/// ending.
fn lock_released(
    db: &MariaDb,
    pgid: u32,
    insert: mpsc::Receiver<Instant>,
    ended: Instant,
    ending: &str,
) -> Duration {
    let limit = GRACE + Duration::from_secs(1);
    let done = insert
        .recv_timeout(limit + Duration::from_secs(5))
        .unwrap_or_else(|_| panic!("{ending}: the INSERT never completed"));
    let after = done.saturating_duration_since(ended);
    assert!(
        after <= limit,
        "{ending}: the lock outlived the freeze by {after:?}"
    );
    assert_eq!(
        db.sessions_waiting_on_the_lock(),
        Vec::<String>::new(),
        "{ending}"
    );
    assert!(
        support::wait_until(Duration::from_secs(1), Duration::from_millis(20), || {
            group_gone(pgid)
        }),
        "{ending}: the hold hook's process group is still there"
    );
    eprintln!(
        "mariadb: {ending}: the lock was released {:.0} ms after the ending",
        after.as_secs_f64() * 1e3
    );
    after
}

#[test]
fn the_lock_goes_when_the_command_ends() {
    let (fs, db, hold) = server(5);
    let mut child = freezefs(&fs, &hold)
        .args(["-t", "30"])
        .arg(&fs.mnt)
        .args(["--", "sleep", "2"])
        .spawn()
        .unwrap();
    let (pgid, insert) = insert_waits(&fs, &db);
    assert!(child.wait().unwrap().success());
    lock_released(&db, pgid, insert, Instant::now(), "the command ended");
}

#[test]
fn the_lock_goes_when_thawfs_thaws_from_another_shell() {
    let (fs, db, hold) = server(5);
    let (pgid, insert) = frozen_and_locked(&fs, &db, &hold, "30");
    let out = thawfs(&fs);
    assert!(out.status.success(), "{}", stderr(&out));
    lock_released(&db, pgid, insert, Instant::now(), "thawfs");
}

#[test]
fn the_lock_goes_at_the_deadline() {
    let (fs, db, hold) = server(5);
    let (pgid, insert) = frozen_and_locked(&fs, &db, &hold, "3");
    let left = fs.freezer().status(&fs.mnt).unwrap().time_left.unwrap();
    let deadline = Instant::now() + left;
    lock_released(&db, pgid, insert, deadline, "the deadline");
}

#[test]
fn the_lock_goes_at_the_deadline_after_the_freezer_is_killed() {
    let (fs, db, hold) = server(5);
    let mut child = freezefs(&fs, &hold)
        .args(["-t", "4"])
        .arg(&fs.mnt)
        .args(["--", "sleep", "100"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let (pgid, insert) = insert_waits(&fs, &db);
    let left = fs.freezer().status(&fs.mnt).unwrap().time_left.unwrap();
    sigkill(child.id());
    let _ = child.wait();
    lock_released(
        &db,
        pgid,
        insert,
        Instant::now() + left,
        "kill -9 of the freezer, then the deadline",
    );
}

#[test]
fn the_lock_goes_when_the_holder_is_killed() {
    let (fs, db, hold) = server(5);
    let (pgid, insert) = frozen_and_locked(&fs, &db, &hold, "30");
    for holder in live_holders(&fs) {
        sigkill(holder);
    }
    // The freeze goes on (its warden and the next holder keep it), so the
    // INSERT now waits on the frozen filesystem, no longer on the lock.
    let killed = Instant::now();
    let limit = GRACE + Duration::from_secs(1);
    assert!(
        support::wait_until(limit, Duration::from_millis(20), || {
            group_gone(pgid) && db.sessions_waiting_on_the_lock().is_empty()
        }),
        "the lock outlived the holder by over {limit:?}: {:?}",
        db.sessions_waiting_on_the_lock()
    );
    eprintln!(
        "mariadb: kill -9 of the holder: the lock was released {:.0} ms after",
        killed.elapsed().as_secs_f64() * 1e3
    );
    let out = thawfs(&fs);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("hold hook 50-mariadb ended"),
        "{}",
        stderr(&out)
    );
    assert!(
        insert.recv_timeout(Duration::from_secs(5)).is_ok(),
        "the INSERT never completed"
    );
}

#[test]
fn the_lock_goes_when_the_holder_is_stopped() {
    let (fs, db, hold) = server(5);
    let (pgid, insert) = frozen_and_locked(&fs, &db, &hold, "30");
    for holder in live_holders(&fs) {
        let pid = rustix::process::Pid::from_raw(holder as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    lock_released(&db, pgid, insert, Instant::now(), "SIGTERM to the holder");
}

#[test]
fn the_lock_goes_when_a_later_freeze_hook_fails() {
    let (fs, db, hold) = server(5);
    let hooks = fs.dir.join("hooks.d");
    std::fs::create_dir(&hooks).unwrap();
    std::fs::set_permissions(&hooks, std::fs::Permissions::from_mode(0o755)).unwrap();
    let failing = hooks.join("10-fails");
    // Fails once the lock is held, as a database's own hook might.
    std::fs::write(
        &failing,
        "#!/bin/sh\n[ \"$1\" = freeze ] && { sleep 1; exit 3; }\nexit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&failing, std::fs::Permissions::from_mode(0o755)).unwrap();
    let child = freezefs(&fs, &hold)
        .env("FREEZEFS_HOOKS_DIR", &hooks)
        .args(["-t", "30"])
        .arg(&fs.mnt)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (pgid, insert) = insert_waits(&fs, &db);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    lock_released(
        &db,
        pgid,
        insert,
        Instant::now(),
        "a later freeze hook failed",
    );
    assert!(fs.records().is_empty());
}

#[test]
fn a_client_killed_while_frozen_is_reported_by_the_command_and_by_thaw() {
    let (fs, db, hold) = server(5);
    let child: Child = freezefs(&fs, &hold)
        .args(["-t", "30"])
        .arg(&fs.mnt)
        .args(["--", "sleep", "3"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pgid = hold_pid(&fs, &db);
    kill_client_of(pgid);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("hold hook 50-mariadb ended at "),
        "{}",
        stderr(&out)
    );
    // The same through THAW.
    let freezer = fs.freezer().with_hold_dir(&hold);
    freezer
        .freeze(&fs.mnt, freezefs::Timeout::Seconds(30))
        .unwrap();
    kill_client_of(hold_pid(&fs, &db));
    std::thread::sleep(Duration::from_millis(500));
    let err = freezer.thaw(&fs.mnt).unwrap_err();
    assert_eq!(err.errno(), libc::ECANCELED, "{err}");
    db.sql("INSERT INTO t.i (v) VALUES (3)");
}

/// SIGKILL to the `mariadb` client the hold hook `pgid` started.
fn kill_client_of(pgid: u32) {
    let client = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .find_map(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let (comm, rest) = stat.split_once(" (")?.1.rsplit_once(')')?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            (comm == "mariadb" && fields.get(2) == Some(&pgid.to_string().as_str()))
                .then(|| stat.split(' ').next()?.parse::<u32>().ok())
                .flatten()
        })
        .expect("the hold hook's client");
    sigkill(client);
}

#[test]
fn a_lock_held_up_by_a_long_write_cancels_the_freeze_within_lock_wait_timeout() {
    let (fs, db, hold) = server(2);
    let update = db.sql_in_background("UPDATE t.m SET v = SLEEP(8) WHERE id = 1");
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    let out = freezefs(&fs, &hold)
        .args(["-t", "30"])
        .arg(&fs.mnt)
        .output()
        .unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("Lock wait timeout exceeded"),
        "{}",
        stderr(&out)
    );
    assert!(took < Duration::from_secs(3), "cancelled after {took:?}");
    assert!(fs.records().is_empty(), "something is frozen");
    assert!(fs.write_completes_within(Duration::from_secs(2)));
    // Writers go on while the long write still runs.
    let insert = db.sql_in_background("INSERT INTO t.i (v) VALUES (4)");
    assert!(
        insert.recv_timeout(Duration::from_secs(2)).is_ok(),
        "writers wait"
    );
    assert!(update.recv_timeout(Duration::from_secs(10)).is_ok());
    eprintln!(
        "mariadb: the freeze was cancelled after {:.0} ms (lock_wait_timeout 2 s)",
        took.as_secs_f64() * 1e3
    );
}
