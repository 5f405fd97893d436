//! A MariaDB server of a test's own (Debian's mariadb-server, installed by
//! scripts/install-deps): its data on a scratch filesystem, a unix socket
//! only (`skip-networking`), a binary log, started by the test and stopped
//! by its pid. Never the machine's own service.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{Scratch, crate_dir, wait_until};

/// A running server; stopped (SIGTERM, then SIGKILL) on drop.
pub(crate) struct MariaDb {
    /// The my.cnf-style file its clients read (`[client]` socket and user).
    pub(crate) cnf: PathBuf,
    run_dir: PathBuf,
    server: Child,
}

impl MariaDb {
    /// A new server with its data in `data` (created), its socket, pid
    /// file and log in `run_dir` (off the frozen filesystem).
    pub(crate) fn install_and_start(data: &Path, run_dir: &Path) -> MariaDb {
        std::fs::create_dir_all(data).unwrap();
        let cnf = write_cnf(data, run_dir);
        // The installer is the test's scaffolding, not what it tests: a CI
        // run saw it fail twice in one run and never here, so a failure is
        // told (the installer's own words say only "examine the logs") and
        // tried once more on an empty directory.
        let mut failures = Vec::new();
        for _ in 0..2 {
            let out = Command::new("mariadb-install-db")
                .arg(format!("--defaults-file={}", cnf.display()))
                .args(["--auth-root-authentication-method=socket", "--skip-test-db"])
                .current_dir("/")
                .output()
                .unwrap();
            if out.status.success() {
                break;
            }
            let failure = format!(
                "mariadb-install-db failed ({}): {}\nthe server's log ends:\n{}",
                out.status,
                String::from_utf8_lossy(&out.stderr),
                log_tail(run_dir)
            );
            eprintln!("{failure}");
            failures.push(failure);
            let _ = std::fs::remove_dir_all(data);
            std::fs::create_dir_all(data).unwrap();
            let _ = std::fs::remove_file(run_dir.join("error.log"));
        }
        assert!(failures.len() < 2, "{}", failures.join("\n\n"));
        MariaDb::start(data, run_dir)
    }

    /// A server on data that is already there (a snapshot's copy).
    pub(crate) fn start(data: &Path, run_dir: &Path) -> MariaDb {
        let cnf = write_cnf(data, run_dir);
        let server = Command::new("mariadbd")
            .arg(format!("--defaults-file={}", cnf.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let db = MariaDb {
            cnf,
            run_dir: run_dir.to_path_buf(),
            server,
        };
        let up = wait_until(Duration::from_secs(60), Duration::from_millis(100), || {
            Command::new("mariadb-admin")
                .arg(format!("--defaults-file={}", db.cnf.display()))
                .arg("ping")
                .output()
                .is_ok_and(|o| o.status.success())
        });
        assert!(up, "mariadbd did not start: {}", log_tail(run_dir));
        db
    }

    /// A client command with this server's options.
    pub(crate) fn client(&self) -> Command {
        let mut cmd = Command::new("mariadb");
        cmd.arg(format!("--defaults-file={}", self.cnf.display()))
            .args(["--batch", "--skip-column-names"]);
        cmd
    }

    /// Runs `sql`; its output, trimmed. A failure shows the end of the
    /// server's log with the client's words.
    pub(crate) fn sql(&self, sql: &str) -> String {
        let out = self.client().arg("-e").arg(sql).output().unwrap();
        if !out.status.success() {
            panic!(
                "{sql}: {}{}\nthe server's log ends:\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                log_tail(&self.run_dir)
            );
        }
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Runs `sql` on a thread: the receiver gets the moment it completed.
    pub(crate) fn sql_in_background(&self, sql: &str) -> mpsc::Receiver<Instant> {
        let (tx, rx) = mpsc::channel();
        let mut cmd = self.client();
        cmd.arg("-e").arg(sql);
        std::thread::spawn(move || {
            if cmd.output().is_ok_and(|o| o.status.success()) {
                let _ = tx.send(Instant::now());
            }
        });
        rx
    }

    /// The sessions that wait for a lock a freeze's hold took (FTWRL's
    /// global read lock, or the backup lock).
    pub(crate) fn sessions_waiting_on_the_lock(&self) -> Vec<String> {
        self.sql("SELECT CONCAT(ID, ' ', IFNULL(STATE, ''), ' ', IFNULL(INFO, '')) FROM information_schema.PROCESSLIST WHERE STATE LIKE '%global read lock%' OR STATE LIKE '%backup lock%'")
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A hold hook directory whose 50-mariadb is examples/hold/50-mariadb
    /// pointed at this server, giving up on the lock after `lock_wait_s`.
    pub(crate) fn hold_dir(&self, fs: &Scratch, lock_wait_s: u32) -> PathBuf {
        let dir = fs.dir.join("hold.d");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let hook = dir.join("50-mariadb");
        std::fs::write(
            &hook,
            format!(
                "#!/bin/sh\nFREEZEFS_MARIADB_CNF={} FREEZEFS_MARIADB_LOCK_WAIT={lock_wait_s} exec {} \"$@\"\n",
                self.cnf.display(),
                crate_dir().join("examples/hold/50-mariadb").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.server.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let stopped = wait_until(Duration::from_secs(30), Duration::from_millis(50), || {
            matches!(self.server.try_wait(), Ok(Some(_)))
        });
        if !stopped {
            let _ = self.server.kill();
            let _ = self.server.wait();
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// The last 30 lines of the server's error log in `run_dir`.
fn log_tail(run_dir: &Path) -> String {
    let log = std::fs::read_to_string(run_dir.join("error.log")).unwrap_or_default();
    let tail: Vec<&str> = log.lines().rev().take(30).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// The server's options: its data, a socket only, a binary log, small
/// InnoDB files (the scratch filesystem is small), and the client's.
fn write_cnf(data: &Path, run_dir: &Path) -> PathBuf {
    std::fs::create_dir_all(run_dir).unwrap();
    let cnf = run_dir.join("my.cnf");
    let socket = run_dir.join("mysqld.sock");
    std::fs::write(
        &cnf,
        format!(
            "[mariadbd]\ndatadir={data}\nsocket={socket}\npid-file={run}/mariadbd.pid\nlog-error={run}/error.log\nskip-networking\nuser=root\ninnodb_log_file_size=16M\ninnodb_buffer_pool_size=64M\nlog-bin=binlog\nserver-id=1\n[client]\nsocket={socket}\nuser=root\n",
            data = data.display(),
            socket = socket.display(),
            run = run_dir.display()
        ),
    )
    .unwrap();
    cnf
}
