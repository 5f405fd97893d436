//! A snapshot of a live MariaDB under examples/hold/50-mariadb (issue 28):
//! sysbench's oltp_write_only and a MyISAM insert loop write while
//! `freezefs -t 20 M -- cp --sparse=always IMAGE COPY` copies the scratch
//! filesystem. The copy passes fsck, myisamchk finds every MyISAM table
//! closed, a second server started on the copy serves its tables, and its
//! MyISAM rows are those counted under the lock. The same copy taken
//! without the hold catches the MyISAM table open: the check can fail.

use crate::mariadb_server::MariaDb;
use crate::support::{self, Kind, Scratch, freezefs_exe, run, with_env};

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Load started by the test, killed with its process group on drop.
struct Load(Child);

impl Drop for Load {
    fn drop(&mut self) {
        if let Some(pgid) = rustix::process::Pid::from_raw(self.0.id() as i32) {
            let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
        }
        let _ = self.0.wait();
    }
}

fn sysbench(db: &MariaDb, action: &str) -> Command {
    let mut cmd = Command::new("sysbench");
    cmd.args(["oltp_write_only", "--db-driver=mysql", "--mysql-user=root"])
        .arg(format!(
            "--mysql-socket={}",
            db.cnf.with_file_name("mysqld.sock").display()
        ))
        .args(["--mysql-db=sb", "--tables=2", "--table-size=10000"])
        .arg(action)
        .current_dir("/");
    cmd
}

/// A second hold hook, after 50-mariadb: under its lock, the MyISAM row
/// count, as its ready text.
fn add_count_hook(hold: &Path, db: &MariaDb) {
    let hook = hold.join("60-count");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nn=$(mariadb --defaults-file={} -N -B -e 'SELECT COUNT(*) FROM t.m') || exit 1\necho \"ready myisam_rows=$n\" >&3\nexec 3>&-\ncat >/dev/null\n",
            db.cnf.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// `freezefs -t 20 MOUNT -- cp --sparse=always IMAGE COPY` with the hold
/// hooks of `hold`; the ready text of 60-count, when it ran.
fn copy_frozen(fs: &Scratch, hold: &Path, copy: &Path) -> Option<u64> {
    let mut cmd = Command::new(freezefs_exe());
    let json = fs.dir.join("during.json");
    let script = format!(
        "{} -l --json > {} && cp --sparse=always {} {}",
        freezefs_exe(),
        json.display(),
        fs.image.as_ref().unwrap().display(),
        copy.display()
    );
    let out = with_env(&mut cmd, fs)
        .env("FREEZEFS_HOLD_DIR", hold)
        .args(["-t", "20"])
        .arg(&fs.mnt)
        .args(["--", "sh", "-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "freezefs -- cp: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = std::fs::read_to_string(&json).unwrap();
    let at = listed.find("myisam_rows=")?;
    let digits: String = listed[at + 12..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    Some(digits.parse().unwrap())
}

/// myisamchk's word on the copy's MyISAM table.
fn myisamchk(data: &Path) -> String {
    let out = Command::new("myisamchk")
        .args(["--check", "--read-only"])
        .arg(data.join("t/m.MYI"))
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mount_copy(copy: &Path, at: &PathBuf) {
    run(Command::new("fsck.ext4").arg("-fn").arg(copy));
    std::fs::create_dir_all(at).unwrap();
    run(Command::new("mount")
        .arg("-o")
        .arg("loop")
        .arg(copy)
        .arg(at));
}

#[test]
fn a_copy_taken_under_the_mariadb_hold_has_its_myisam_tables_closed_and_its_rows_at_the_lock() {
    let fs = Scratch::sized(Kind::Ext4, Some(512));
    let db = MariaDb::install_and_start(&fs.mnt.join("db"), &fs.dir.join("mariadb"));
    db.sql("CREATE DATABASE sb; CREATE DATABASE t; CREATE TABLE t.m (id INT AUTO_INCREMENT PRIMARY KEY, v INT) ENGINE=MyISAM");
    let out = sysbench(&db, "prepare").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _oltp = Load(
        sysbench(&db, "run")
            .args(["--threads=2", "--time=600"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let _myisam = Load(
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "yes 'INSERT INTO t.m (v) VALUES (1);' | mariadb --defaults-file={} --unbuffered",
                db.cnf.display()
            ))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_secs(2));
    let copy = fs.dir.join("copy.img");
    let copy_mnt = fs.dir.join("copy");

    // The control: no hold hook; the MyISAM table is caught open.
    let no_hold = fs.dir.join("no-hold.d");
    assert_eq!(copy_frozen(&fs, &no_hold, &copy), None);
    mount_copy(&copy, &copy_mnt);
    let unheld = myisamchk(&copy_mnt.join("db"));
    support::umount(&copy_mnt);
    std::fs::remove_file(&copy).unwrap();
    assert!(
        unheld.contains("closed the table properly"),
        "without the hold, myisamchk found the table closed: {unheld}"
    );

    // Under the hold.
    let hold = db.hold_dir(&fs, 5);
    add_count_hook(&hold, &db);
    let at_lock = copy_frozen(&fs, &hold, &copy).expect("60-count said no count");
    mount_copy(&copy, &copy_mnt);
    let checked = std::panic::catch_unwind(|| {
        let data = copy_mnt.join("db");
        let said = myisamchk(&data);
        assert!(
            !said.contains("warning") && !said.contains("error"),
            "myisamchk of the copy: {said}"
        );
        let copied = MariaDb::start(&data, &fs.dir.join("mariadb-copy"));
        let rows: u64 = copied.sql("SELECT COUNT(*) FROM t.m").parse().unwrap();
        assert_eq!(rows, at_lock, "MyISAM rows in the copy and at the lock");
        for table in ["t.m", "sb.sbtest1", "sb.sbtest2"] {
            let check = copied.sql(&format!("CHECK TABLE {table}"));
            assert!(check.ends_with("OK"), "CHECK TABLE {table}: {check}");
        }
        eprintln!(
            "mariadb: the copy has {rows} MyISAM rows, as counted under the lock; myisamchk and CHECK TABLE are clean"
        );
    });
    support::umount(&copy_mnt);
    if let Err(panic) = checked {
        std::panic::resume_unwind(panic);
    }
}
