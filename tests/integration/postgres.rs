//! A real database under the one-command snapshot (issue 21): a PostgreSQL
//! cluster on a scratch ext4, pgbench writing to it, and
//! `freezefs -t 30 M -- cp IMAGE COPY` with examples/hooks/50-postgresql,
//! ten times. Every copy passes `fsck.ext4 -fn`, a server started on it
//! recovers and accepts connections, and its pgbench tables are whole
//! (row counts, `pg_amcheck`). Every server is stopped by its data
//! directory, whatever happens.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{Kind, Scratch, crate_dir, run, succeeded, with_env};

const TRIALS: usize = 10;
const SCALE: u64 = 4;

/// The newest PostgreSQL server's bin directory.
fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is not installed (scripts/install-deps tests installs it)")
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("postgres").exists())
        .collect();
    dirs.sort();
    dirs.pop()
        .expect("no PostgreSQL server in /usr/lib/postgresql")
}

fn as_postgres(program: &str) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args(["-u", "postgres", "--"])
        .arg(pg_bin().join(program));
    cmd
}

/// A running server; stopped (immediate) by its data directory on drop.
struct Server {
    data: PathBuf,
    socket_dir: PathBuf,
    port: u16,
}

impl Server {
    fn start(data: &Path, socket_dir: &Path, port: u16) -> Server {
        std::fs::create_dir_all(socket_dir).unwrap();
        run(Command::new("chown")
            .arg("postgres:postgres")
            .arg(socket_dir));
        let server = Server {
            data: data.to_path_buf(),
            socket_dir: socket_dir.to_path_buf(),
            port,
        };
        let options = format!(
            "-p {port} -k {} -c listen_addresses='' -c fsync=on",
            socket_dir.display()
        );
        let log = socket_dir.join("server.log");
        let out = as_postgres("pg_ctl")
            .args(["-w", "-t", "60", "-D"])
            .arg(data)
            .arg("-l")
            .arg(&log)
            .args(["-o", &options, "start"])
            .output()
            .unwrap();
        if !out.status.success() {
            panic!(
                "pg_ctl start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        server
    }

    fn psql(&self, sql: &str) -> String {
        succeeded(
            as_postgres("psql")
                .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h"])
                .arg(&self.socket_dir)
                .args(["-p", &self.port.to_string(), "-d", "postgres", "-c", sql])
                .output()
                .unwrap(),
            sql,
        )
        .trim()
        .to_string()
    }

    fn client(&self, program: &str) -> Command {
        let mut cmd = as_postgres(program);
        cmd.arg("-h")
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string()]);
        cmd
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl")
            .args(["-D"])
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// pgbench writing until dropped.
struct Load(Child);

impl Drop for Load {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The hook directory: 50-postgresql, through a wrapper that points it at
/// this server (hooks run with a clean environment).
fn hook_dir(fs: &Scratch, server: &Server) -> PathBuf {
    let dir = fs.dir.join("hooks");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hook = dir.join("50-postgresql");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nPATH={}:$PATH PGHOST={} PGPORT={} exec {} \"$@\"\n",
            pg_bin().display(),
            server.socket_dir.display(),
            server.port,
            crate_dir().join("examples/hooks/50-postgresql").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

#[test]
fn ten_copies_of_a_live_postgresql_taken_under_a_freeze_recover_whole() {
    let fs = Scratch::sized(Kind::Ext4, Some(384));
    // The postgres user must reach the data directory (mkdtemp made 0700).
    std::fs::set_permissions(&fs.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let data = fs.mnt.join("pgdata");
    std::fs::create_dir(&data).unwrap();
    run(Command::new("chown").arg("postgres:postgres").arg(&data));
    succeeded(
        as_postgres("initdb")
            .args(["-A", "trust", "-D"])
            .arg(&data)
            .output()
            .unwrap(),
        "initdb",
    );
    let server = Server::start(&data, &fs.dir.join("sock"), 55432);
    succeeded(
        server
            .client("pgbench")
            .args(["-q", "-i", "-s", &SCALE.to_string(), "postgres"])
            .output()
            .unwrap(),
        "pgbench -i",
    );
    let _load = Load(
        server
            .client("pgbench")
            .args(["-c", "4", "-T", "600", "postgres"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(1));
    let hooks = hook_dir(&fs, &server);
    let image = fs.image.clone().unwrap();
    let copy = fs.dir.join("copy.img");
    let copy_mnt = fs.dir.join("copy");
    std::fs::create_dir(&copy_mnt).unwrap();
    for trial in 0..TRIALS {
        let started = Instant::now();
        let mut cmd = Command::new(crate::support::freezefs_exe());
        cmd.args(["-t", "30"])
            .arg(&fs.mnt)
            .arg("--")
            .args(["cp", "--sparse=always"])
            .arg(&image)
            .arg(&copy);
        let out = with_env(&mut cmd, &fs)
            .env("FREEZEFS_HOOKS_DIR", &hooks)
            .output()
            .unwrap();
        succeeded(out, &format!("trial {trial}: freezefs -- cp"));
        let frozen_for = started.elapsed();
        let fsck = Command::new("fsck.ext4")
            .arg("-fn")
            .arg(&copy)
            .output()
            .unwrap();
        succeeded(fsck, &format!("trial {trial}: fsck.ext4 -fn of the copy"));
        run(Command::new("mount")
            .arg("-o")
            .arg("loop")
            .arg(&copy)
            .arg(&copy_mnt));
        let recovered = std::panic::catch_unwind(|| {
            // As a restore does: the copy's lock file names the live server.
            let _ = std::fs::remove_file(copy_mnt.join("pgdata/postmaster.pid"));
            let server = Server::start(&copy_mnt.join("pgdata"), &fs.dir.join("sock2"), 55433);
            let accounts: u64 = server
                .psql("SELECT count(*) FROM pgbench_accounts")
                .parse()
                .unwrap();
            assert_eq!(accounts, SCALE * 100_000, "trial {trial}: accounts");
            let branches: u64 = server
                .psql("SELECT count(*) FROM pgbench_branches")
                .parse()
                .unwrap();
            assert_eq!(branches, SCALE, "trial {trial}: branches");
            server.psql("CREATE EXTENSION IF NOT EXISTS amcheck");
            succeeded(
                server
                    .client("pg_amcheck")
                    .args(["--heapallindexed", "-d", "postgres"])
                    .output()
                    .unwrap(),
                &format!("trial {trial}: pg_amcheck"),
            );
        });
        support::umount(&copy_mnt);
        std::fs::remove_file(&copy).unwrap();
        if let Err(panic) = recovered {
            std::panic::resume_unwind(panic);
        }
        eprintln!(
            "postgres: trial {trial}: freeze, copy and thaw in {:.0} ms; the copy recovered whole",
            frozen_for.as_secs_f64() * 1e3
        );
    }
    drop(server);
}
