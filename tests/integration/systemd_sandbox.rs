//! A real systemd as PID 1 of private mount, pid, cgroup and uts
//! namespaces over a tmpfs-backed overlay of `/` (tests/tools/systemd-sandbox),
//! never over the machine's own root, with a scratch ext4 on a loop device
//! inside: for the holder's units and for the Debian packages.

use crate::support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::{crate_dir, holder_exe, kernel_frozen, mkdtemp, wait_until};

/// Where the scratch filesystem is mounted inside the sandbox.
pub(crate) const MNT: &str = "/tmp/mnt";

/// A booted sandbox with a scratch ext4 at [`MNT`]; thawed, unmounted and
/// stopped on drop, whatever happened.
pub(crate) struct Sandbox {
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
    /// With freezefs-holder.socket and .service as `make install` writes
    /// them, for the build tree's holder, and the socket enabled.
    pub(crate) fn boot() -> Sandbox {
        let sandbox = Sandbox::boot_without_units();
        let units = sandbox.inside("/etc/systemd/system");
        for unit in ["freezefs-holder.socket", "freezefs-holder.service"] {
            let text = std::fs::read_to_string(crate_dir().join(format!("systemd/{unit}.in")))
                .unwrap()
                .replace("@HOLDER@", holder_exe())
                .replace("@RUNDIR@", "/run/freezefs");
            std::fs::write(units.join(unit), text).unwrap();
        }
        sandbox.sh("systemctl daemon-reload && systemctl enable --now freezefs-holder.socket");
        sandbox
    }

    /// With none of freezefs's units: a package will bring them.
    pub(crate) fn boot_without_units() -> Sandbox {
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
        sandbox.sh(&format!(
            "truncate -s 64M /tmp/image && mkfs.ext4 -q -F /tmp/image && mkdir {MNT} && mount -o loop /tmp/image {MNT}"
        ));
        sandbox.root = Some(File::open(sandbox.inside(MNT)).unwrap());
        sandbox
    }

    /// A path inside the sandbox, reached from here.
    pub(crate) fn inside(&self, path: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{path}", self.pid))
    }

    /// Runs `script` under sh inside; its output, whatever its status.
    pub(crate) fn run(&self, script: &str) -> Output {
        Command::new(tool())
            .arg("run")
            .arg(&self.dir)
            .args(["sh", "-c", script])
            .output()
            .unwrap()
    }

    /// Runs `script` under sh inside, which must succeed; its stdout.
    pub(crate) fn sh(&self, script: &str) -> String {
        let out = self.run(script);
        assert!(
            out.status.success(),
            "{script}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub(crate) fn frozen(&self) -> bool {
        kernel_frozen(self.root.as_ref().unwrap())
    }

    /// Waits at most `limit` for a freeze another process is making to be
    /// on record as frozen, then asks the kernel. Never polls the kernel
    /// before: its probe is a FIFREEZE of its own, and one that meets the
    /// other process's FIFREEZE makes that freeze fail with EBUSY.
    pub(crate) fn frozen_by_other_process_within(&self, limit: Duration) -> bool {
        let recorded = wait_until(limit, Duration::from_millis(20), || {
            self.records()
                .iter()
                .any(|r| r.lines().any(|l| l == "phase frozen"))
        });
        recorded && self.frozen()
    }

    /// The texts of the freezes on record.
    pub(crate) fn records(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.inside("/run/freezefs")) else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("sb."))
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .collect()
    }

    /// The deadline of the one freeze on record (`CLOCK_BOOTTIME` ns).
    pub(crate) fn deadline_ns(&self) -> i64 {
        self.records()
            .iter()
            .find_map(|r| {
                r.lines()
                    .find_map(|l| l.strip_prefix("deadline_boot_ns ")?.parse().ok())
            })
            .expect("a timed freeze on record")
    }

    /// The main pid of a unit, 0 when it has none.
    pub(crate) fn main_pid(&self, unit: &str) -> u32 {
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

pub(crate) fn boot_ns() -> i64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Waits for the thaw; how late it came past `deadline`, in ms.
pub(crate) fn thawed_late_ms(sandbox: &Sandbox, deadline: i64, scenario: &str) -> i64 {
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
