//! The holder's units under a real systemd (issue 18): PID 1 of private
//! mount, pid, cgroup and uts namespaces over a tmpfs-backed overlay of `/`
//! (tests/tools/systemd-sandbox), never over the machine's own root. Inside
//! it, freezefs-holder.socket and .service as `make install` writes them,
//! a scratch ext4 on a loop device, and `systemctl` as an admin uses it.

use crate::support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::{crate_dir, holder_exe, kernel_frozen, mkdtemp, wait_until};

/// Where the scratch filesystem is mounted inside the sandbox.
const MNT: &str = "/tmp/mnt";

/// A booted sandbox with the units enabled and a scratch ext4 at [`MNT`];
/// thawed, unmounted and stopped on drop, whatever happened.
struct Sandbox {
    dir: PathBuf,
    /// Its PID 1, as seen from here.
    pid: u32,
    /// The scratch mount root, opened from here through `/proc/PID/root`.
    root: Option<File>,
}

fn tool() -> PathBuf {
    crate_dir().join("tests/tools/systemd-sandbox")
}

impl Sandbox {
    fn boot() -> Sandbox {
        support::start_system_guard();
        let dir = mkdtemp("freezefs-test-systemd");
        let bin_dir = Path::new(holder_exe()).parent().unwrap().to_path_buf();
        let out = Command::new(tool())
            .arg("start")
            .arg(&dir)
            .arg(&bin_dir)
            .output()
            .unwrap();
        let mut sandbox = Sandbox {
            dir,
            pid: 0,
            root: None,
        };
        assert!(
            out.status.success(),
            "the sandbox did not boot: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        sandbox.pid = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let units = sandbox.dir.join("root/etc/systemd/system");
        for unit in ["freezefs-holder.socket", "freezefs-holder.service"] {
            let text = std::fs::read_to_string(crate_dir().join(format!("systemd/{unit}.in")))
                .unwrap()
                .replace("@HOLDER@", holder_exe())
                .replace("@RUNDIR@", "/run/freezefs");
            std::fs::write(units.join(unit), text).unwrap();
        }
        sandbox.sh("systemctl daemon-reload && systemctl enable --now freezefs-holder.socket");
        sandbox.sh(&format!(
            "truncate -s 64M /tmp/image && mkfs.ext4 -q -F /tmp/image && mkdir {MNT} && mount -o loop /tmp/image {MNT}"
        ));
        sandbox.root = Some(File::open(sandbox.inside(MNT)).unwrap());
        sandbox
    }

    /// A path inside the sandbox, reached from here.
    fn inside(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.pid))
    }

    /// Runs `script` under sh inside; its output, whatever its status.
    fn run(&self, script: &str) -> Output {
        Command::new(tool())
            .arg("run")
            .arg(&self.dir)
            .args(["sh", "-c", script])
            .output()
            .unwrap()
    }

    /// Runs `script` under sh inside, which must succeed; its stdout.
    fn sh(&self, script: &str) -> String {
        let out = self.run(script);
        assert!(
            out.status.success(),
            "{script}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn frozen(&self) -> bool {
        kernel_frozen(self.root.as_ref().unwrap())
    }

    /// Waits at most `limit` for a freeze another process is making to be
    /// on record as frozen, then asks the kernel. Never polls the kernel
    /// before: its probe is a FIFREEZE of its own, and one that meets the
    /// other process's FIFREEZE makes that freeze fail with EBUSY.
    fn frozen_by_other_process_within(&self, limit: Duration) -> bool {
        let recorded = wait_until(limit, Duration::from_millis(20), || {
            self.records()
                .iter()
                .any(|r| r.lines().any(|l| l == "phase frozen"))
        });
        recorded && self.frozen()
    }

    /// The texts of the freezes on record.
    fn records(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.inside("/run/freezefs")) else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("sb."))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect()
    }

    /// The deadline of the one freeze on record (`CLOCK_BOOTTIME` ns).
    fn deadline_ns(&self) -> i64 {
        self.records()
            .iter()
            .find_map(|r| {
                r.lines()
                    .find_map(|l| l.strip_prefix("deadline_boot_ns ")?.parse().ok())
            })
            .expect("a timed freeze on record")
    }

    /// The main pid of a unit, 0 when it has none.
    fn main_pid(&self, unit: &str) -> u32 {
        self.sh(&format!("systemctl show -p MainPID --value {unit}"))
            .trim()
            .parse()
            .unwrap()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(root) = self.root.take() {
            // EINVAL when it is not frozen: nothing to do.
            let _ = support::fithaw(&root);
        }
        if self.pid != 0 {
            let _ = self.run(&format!("fsfreeze -u {MNT}; umount {MNT}; losetup -D"));
        }
        let _ = Command::new(tool()).arg("stop").arg(&self.dir).status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn boot_ns() -> i64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Waits for the thaw; how late it came past `deadline`, in ms.
fn thawed_late_ms(sandbox: &Sandbox, deadline: i64, scenario: &str) -> i64 {
    let limit = Duration::from_millis(((deadline - boot_ns()).max(0) / 1_000_000) as u64 + 3000);
    let thawed = wait_until(limit, Duration::from_millis(10), || !sandbox.frozen());
    let late = (boot_ns() - deadline) / 1_000_000;
    eprintln!("keepers: {scenario} ext4 past_deadline_ms={late}");
    assert!(
        thawed,
        "{scenario}: still frozen {late} ms past the deadline"
    );
    assert!(late <= 1000, "{scenario}: thawed {late} ms late");
    late
}

fn freezefs() -> &'static str {
    env!("CARGO_BIN_EXE_freezefs")
}

/// `systemctl stop` of a backup service that froze: the unit stops at once
/// (not left deactivating, its freeze's holder in its cgroup), and the
/// freeze still ends by its deadline.
#[test]
fn stopping_a_backup_service_that_froze_leaves_its_freeze_to_the_holder_service() {
    let sandbox = Sandbox::boot();
    sandbox.sh(&format!(
        "systemd-run --unit=backup --service-type=exec sh -c '{} -t 3 {MNT} && sleep 600'",
        freezefs()
    ));
    assert!(
        sandbox.frozen_by_other_process_within(Duration::from_secs(15)),
        "{}",
        sandbox
            .run("systemctl status backup freezefs-holder.service")
            .stdout
            .escape_ascii()
    );
    let deadline = sandbox.deadline_ns();
    let stopped = sandbox.run("timeout 10 systemctl stop backup");
    assert!(stopped.status.success(), "systemctl stop hung: {stopped:?}");
    assert_eq!(
        sandbox.run("systemctl is-active backup").stdout,
        b"inactive\n"
    );
    assert!(
        sandbox.frozen(),
        "the freeze must outlive its caller's unit"
    );
    thawed_late_ms(&sandbox, deadline, "systemd-stop-backup-service");
}

/// `systemctl kill -s KILL` of the holder's service kills every process in
/// its cgroup; the warden lives outside it and thaws by the deadline, and
/// systemd then starts a holder that serves the next freeze.
#[test]
fn killing_the_holder_service_still_thaws_by_the_deadline_and_systemd_starts_a_new_one() {
    let sandbox = Sandbox::boot();
    sandbox.sh(&format!("{} -t 3 {MNT}", freezefs()));
    let deadline = sandbox.deadline_ns();
    let old = sandbox.main_pid("freezefs-holder.service");
    assert_ne!(old, 0);
    sandbox.sh("systemctl kill -s KILL freezefs-holder.service");
    thawed_late_ms(&sandbox, deadline, "systemd-kill-holder-service");
    // Restart=always, once the killed one could finish exiting (the thaw
    // let its waiter go).
    let restarted = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let pid = sandbox.main_pid("freezefs-holder.service");
        pid != 0 && pid != old
    });
    assert!(restarted, "systemd did not restart the holder");
    sandbox.sh(&format!("{} -t 30 {MNT}", freezefs()));
    assert!(sandbox.frozen());
    sandbox.sh(&format!("{} {MNT}", env!("CARGO_BIN_EXE_thawfs")));
    assert!(!sandbox.frozen());
}

/// `systemctl stop` of the holder's service (shutdown, an upgrade): it
/// thaws what it keeps within a second, and thawfs then says why.
#[test]
fn stopping_the_holder_service_thaws_within_a_second_and_thawfs_says_why() {
    let sandbox = Sandbox::boot();
    sandbox.sh(&format!("{} -t 60 {MNT}", freezefs()));
    let asked = boot_ns();
    let stopped = sandbox.run("timeout 10 systemctl stop freezefs-holder.service");
    assert!(stopped.status.success(), "{stopped:?}");
    assert!(wait_until(
        Duration::from_secs(1),
        Duration::from_millis(5),
        || !sandbox.frozen()
    ));
    eprintln!(
        "keepers: systemd-stop-holder-service ext4 thawed_after_ms={}",
        (boot_ns() - asked) / 1_000_000
    );
    let thaw = sandbox.run(&format!("{} {MNT}", env!("CARGO_BIN_EXE_thawfs")));
    assert_eq!(thaw.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&thaw.stderr).contains("its holder was stopped"));
    // Ordered after the filesystems: at shutdown it stops before they go.
    let after = sandbox.sh("systemctl show -p After --value freezefs-holder.service");
    assert!(
        after.contains("local-fs.target") && after.contains("remote-fs.target"),
        "{after}"
    );
}

/// `systemctl reload` of the holder's service (what a package upgrade
/// does): the holder keeps its freeze to the deadline, thaws it there as a
/// timeout, then exits, and systemd starts a new one for the next freeze.
#[test]
fn reloading_the_holder_service_keeps_its_freeze_to_the_deadline_then_starts_a_new_holder() {
    let sandbox = Sandbox::boot();
    sandbox.sh(&format!("{} -t 3 {MNT}", freezefs()));
    let deadline = sandbox.deadline_ns();
    let old = sandbox.main_pid("freezefs-holder.service");
    sandbox.sh("systemctl reload freezefs-holder.service");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(sandbox.main_pid("freezefs-holder.service"), old);
    assert!(sandbox.frozen(), "a reload must not thaw");
    thawed_late_ms(&sandbox, deadline, "systemd-reload-holder-service");
    let thaw = sandbox.run(&format!("{} {MNT}", env!("CARGO_BIN_EXE_thawfs")));
    assert_eq!(thaw.status.code(), Some(1));
    let said = String::from_utf8_lossy(&thaw.stderr);
    assert!(said.contains("its timeout passed"), "{said}");
    let replaced = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let pid = sandbox.main_pid("freezefs-holder.service");
        pid != 0 && pid != old
    });
    assert!(replaced, "the retired holder was not replaced");
    sandbox.sh(&format!("{} -t 30 {MNT}", freezefs()));
    assert!(sandbox.frozen());
    sandbox.sh(&format!("{} {MNT}", env!("CARGO_BIN_EXE_thawfs")));
    assert!(!sandbox.frozen());
}
