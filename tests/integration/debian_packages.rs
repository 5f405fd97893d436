//! The Debian packages (issue 26): `make deb`, lintian, and each package
//! installed, upgraded, reinstalled, removed and purged in the systemd
//! sandbox (an overlay of `/`, never the machine's own root).

use crate::support;
use crate::systemd_sandbox::{MNT, Sandbox, boot_ns, thawed_late_ms};

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use support::{crate_dir, run, wait_until};

/// The lintian warnings left, each for a reason: the library ships in
/// `freezefs` itself, beside the holder it cannot work without, not in a
/// package of its own named `libfreezefs1`.
const LINTIAN_WARNINGS_LEFT: &[&str] = &["package-name-doesnt-match-sonames"];

/// Where the packages are inside a sandbox.
const DEBS: &str = "/tmp/debs";

struct Packages {
    /// `make deb`'s output directory.
    dir: PathBuf,
    version: String,
    arch: String,
    /// freezefs's own package again under a higher version: what an
    /// upgrade installs.
    upgrade: PathBuf,
}

impl Packages {
    /// A package's file name.
    fn deb(&self, name: &str) -> String {
        format!("{name}_{}_{}.deb", self.version, self.arch)
    }
}

/// One `make deb` for every test.
fn packages() -> &'static Packages {
    static BUILT: OnceLock<Packages> = OnceLock::new();
    BUILT.get_or_init(|| {
        run(Command::new("make")
            .current_dir(crate_dir())
            .arg("deb")
            .env("CARGO", env!("CARGO")));
        let dir = crate_dir().join("target/deb");
        let arch = run(Command::new("dpkg").arg("--print-architecture"))
            .trim()
            .to_owned();
        let version = env!("CARGO_PKG_VERSION").to_owned();
        let built = dir.join(format!("freezefs_{version}_{arch}.deb"));
        assert!(built.exists(), "make deb did not write {}", built.display());
        // Under target/, replaced by each run: no litter in /tmp.
        let work = crate_dir().join("target/deb-test");
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        let unpacked = work.join("freezefs");
        run(Command::new("dpkg-deb")
            .arg("-R")
            .arg(&built)
            .arg(&unpacked));
        let control = unpacked.join("DEBIAN/control");
        let text = std::fs::read_to_string(&control).unwrap().replace(
            &format!("\nVersion: {version}\n"),
            &format!("\nVersion: {version}+upgrade\n"),
        );
        std::fs::write(&control, text).unwrap();
        let upgrade = work.join(format!("freezefs_{version}+upgrade_{arch}.deb"));
        run(Command::new("dpkg-deb")
            .args(["--root-owner-group", "-b"])
            .arg(&unpacked)
            .arg(&upgrade));
        Packages {
            dir,
            version,
            arch,
            upgrade,
        }
    })
}

/// A sandbox without freezefs's units, the packages copied into [`DEBS`].
fn sandbox_with_packages() -> Sandbox {
    let packages = packages();
    let sandbox = Sandbox::boot_without_units();
    // A container image's policy-rc.d (Docker's refuses every start) would
    // keep dpkg from starting the socket; the sandbox stands for a machine
    // without one, and the overlay keeps the machine's own.
    sandbox.sh("rm -f /usr/sbin/policy-rc.d");
    let debs = sandbox.inside(DEBS);
    std::fs::create_dir_all(&debs).unwrap();
    for entry in std::fs::read_dir(&packages.dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "deb") {
            std::fs::copy(&path, debs.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::copy(
        &packages.upgrade,
        debs.join(packages.upgrade.file_name().unwrap()),
    )
    .unwrap();
    sandbox
}

fn install(sandbox: &Sandbox, names: &[&str]) {
    let debs: Vec<String> = names
        .iter()
        .map(|n| format!("{DEBS}/{}", packages().deb(n)))
        .collect();
    sandbox.sh(&format!("dpkg -i {}", debs.join(" ")));
}

fn unit_state(sandbox: &Sandbox, verb: &str, unit: &str) -> String {
    let out = sandbox.run(&format!("systemctl {verb} {unit}"));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The executable a process runs, as the kernel names it.
fn exe_of(sandbox: &Sandbox, pid: u32) -> String {
    sandbox
        .sh(&format!("readlink /proc/{pid}/exe"))
        .trim()
        .to_owned()
}

#[test]
fn lintian_reports_no_error_and_only_the_warnings_left_on_purpose() {
    let packages = packages();
    let changes = packages.dir.join(format!(
        "freezefs_{}_{}.changes",
        packages.version, packages.arch
    ));
    // lintian leaves its ELF caches (mldbm-elf-*) in TMPDIR: one of ours.
    let scratch = crate_dir().join("target/deb-test/lintian-tmp");
    std::fs::create_dir_all(&scratch).unwrap();
    let out = Command::new("lintian")
        .args(["--pedantic", "--display-info"])
        .arg(&changes)
        .env("TMPDIR", &scratch)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&scratch);
    let said = String::from_utf8_lossy(&out.stdout);
    eprintln!("lintian:\n{said}");
    for line in said.lines() {
        assert!(!line.starts_with("E:"), "{line}");
        if line.starts_with("W:") {
            assert!(
                LINTIAN_WARNINGS_LEFT.iter().any(|tag| line.contains(tag)),
                "a new lintian warning: {line}"
            );
        }
    }
    assert!(out.status.success(), "{said}");
}

#[test]
fn installing_enables_and_starts_the_socket_and_the_service_holder_keeps_a_freeze() {
    let sandbox = sandbox_with_packages();
    install(&sandbox, &["freezefs"]);
    let socket = "freezefs-holder.socket";
    let service = "freezefs-holder.service";
    assert_eq!(unit_state(&sandbox, "is-enabled", socket), "enabled");
    assert_eq!(unit_state(&sandbox, "is-active", socket), "active");
    assert_eq!(unit_state(&sandbox, "is-active", service), "inactive");
    let guard = "freezefs-guard.service";
    assert_eq!(unit_state(&sandbox, "is-enabled", guard), "enabled");
    assert_eq!(unit_state(&sandbox, "is-active", guard), "active");
    assert_eq!(
        exe_of(&sandbox, sandbox.main_pid(guard)),
        "/usr/sbin/freezefs"
    );
    let cache = sandbox.sh("ldconfig -p");
    assert!(
        cache
            .lines()
            .any(|l| l.trim_start().starts_with("libfreezefs.so.1 ")
                && l.ends_with("-linux-gnu/libfreezefs.so.1")),
        "{cache}"
    );
    sandbox.sh(&format!("/usr/sbin/freezefs -t 3 {MNT}"));
    let deadline = sandbox.deadline_ns();
    assert!(sandbox.frozen());
    let holder = sandbox.main_pid(service);
    assert_ne!(holder, 0, "the freeze is not kept by the service");
    assert_eq!(
        exe_of(&sandbox, holder),
        "/usr/libexec/freezefs/freezefs-holder"
    );
    thawed_late_ms(&sandbox, deadline, "package-installed");
}

/// The guard the package starts thaws a freeze that `fsfreeze -f` made
/// and forgot, once it has lasted the limit of the sysconfigtab (3 s here,
/// written after the guard started: it rereads the file when it changes).
#[test]
fn the_installed_guard_thaws_a_freeze_another_tool_forgot() {
    let sandbox = sandbox_with_packages();
    install(&sandbox, &["freezefs"]);
    sandbox.sh("printf 'vfs:\\n\\tfreezefs_foreign_max_timeout = 3\\n' >/etc/sysconfigtab");
    // The guard's next tick reads it.
    std::thread::sleep(Duration::from_millis(1000));
    sandbox.sh(&format!("fsfreeze -f {MNT}"));
    let frozen = Instant::now();
    assert!(sandbox.frozen());
    assert!(
        wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            !sandbox.frozen()
        }),
        "the installed guard did not thaw the freeze within 10 s"
    );
    let took = frozen.elapsed();
    eprintln!(
        "packages: guard-thawed-fsfreeze took_ms={}",
        took.as_millis()
    );
    assert!(
        took >= Duration::from_millis(2900) && took <= Duration::from_millis(4300),
        "thawed {took:?} after the freeze"
    );
}

/// How long the freeze lasts that an upgrade must keep: longer than dpkg
/// takes on a busy machine (6.3 s beside stress-ng --cpu 2 --io 2, which
/// fights its fsyncs).
const HELD_S: u32 = 20;

/// Freezes for [`HELD_S`], runs `install` while frozen, and checks that the
/// freeze lasted to its deadline, ended as a timeout, ran its thaw hook
/// once, and that a new holder from the installed executable serves next.
fn freeze_outlives(sandbox: &Sandbox, install: &str, scenario: &str) {
    sandbox.sh("mkdir -p /etc/freezefs/hooks.d && \
         printf '#!/bin/sh\\necho \"$1\" >>/root/hooks.log\\n' >/etc/freezefs/hooks.d/10-log && \
         chmod 755 /etc/freezefs/hooks.d/10-log");
    sandbox.sh(&format!("/usr/sbin/freezefs -t {HELD_S} {MNT}"));
    let deadline = sandbox.deadline_ns();
    let old = sandbox.main_pid("freezefs-holder.service");
    let asked = Instant::now();
    sandbox.sh(install);
    eprintln!(
        "packages: {scenario} took_ms={} left_ms_to_deadline={}",
        asked.elapsed().as_millis(),
        (deadline - boot_ns()) / 1_000_000
    );
    assert!(deadline > boot_ns(), "{scenario} outlasted the freeze");
    assert!(sandbox.frozen(), "{scenario} thawed the freeze");
    assert_eq!(sandbox.main_pid("freezefs-holder.service"), old);
    thawed_late_ms(sandbox, deadline, scenario);
    let thaw = sandbox.run(&format!("/usr/sbin/thawfs {MNT}"));
    assert_eq!(thaw.status.code(), Some(1));
    let said = String::from_utf8_lossy(&thaw.stderr);
    assert!(said.contains("its timeout passed"), "{said}");
    let log = sandbox.inside("/root/hooks.log");
    let hooks = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(wait_until(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || hooks().contains("thaw")
    ));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(hooks(), "freeze\nthaw\n");
    let replaced = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        let pid = sandbox.main_pid("freezefs-holder.service");
        pid != 0 && pid != old
    });
    assert!(replaced, "the old holder did not give way");
    let new = sandbox.main_pid("freezefs-holder.service");
    assert_eq!(
        exe_of(sandbox, new),
        "/usr/libexec/freezefs/freezefs-holder"
    );
    sandbox.sh(&format!(
        "/usr/sbin/freezefs -t 30 {MNT} && /usr/sbin/thawfs {MNT}"
    ));
}

#[test]
fn upgrading_while_frozen_keeps_the_freeze_to_its_deadline_and_its_thaw_hook_runs_once() {
    let sandbox = sandbox_with_packages();
    install(&sandbox, &["freezefs"]);
    let upgrade = packages().upgrade.file_name().unwrap().to_owned();
    freeze_outlives(
        &sandbox,
        &format!("dpkg -i {DEBS}/{}", upgrade.to_string_lossy()),
        "package-upgrade-while-frozen",
    );
    let version = sandbox.sh("dpkg-query -W -f '${Version}' freezefs");
    assert_eq!(version, format!("{}+upgrade", packages().version));
}

#[test]
fn reinstalling_with_apt_while_frozen_keeps_the_freeze_to_its_deadline() {
    let sandbox = sandbox_with_packages();
    install(&sandbox, &["freezefs"]);
    freeze_outlives(
        &sandbox,
        &format!(
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --reinstall {DEBS}/{}",
            packages().deb("freezefs")
        ),
        "package-reinstall-while-frozen",
    );
}

#[test]
fn removing_stops_the_units_and_thaws_and_purging_leaves_nothing_behind() {
    let sandbox = sandbox_with_packages();
    let listed: Vec<String> = {
        let deb = format!("{DEBS}/{}", packages().deb("freezefs"));
        sandbox
            .sh(&format!("dpkg-deb -c {deb} | sed 's/.* \\.//; s/ -> .*//'"))
            .lines()
            .map(|l| l.trim_end_matches('/').to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    };
    let exists = |path: &String| {
        sandbox
            .run(&format!("test -e {path} -o -L {path}"))
            .status
            .success()
    };
    let there_before: Vec<&String> = listed.iter().filter(|p| exists(p)).collect();
    install(&sandbox, &["freezefs"]);
    sandbox.sh(&format!("/usr/sbin/freezefs -t 60 {MNT}"));
    let asked = boot_ns();
    sandbox.sh("dpkg -r freezefs");
    assert!(wait_until(
        Duration::from_secs(1),
        Duration::from_millis(10),
        || !sandbox.frozen()
    ));
    eprintln!(
        "packages: package-remove thawed_after_ms={}",
        (boot_ns() - asked) / 1_000_000
    );
    for unit in [
        "freezefs-holder.socket",
        "freezefs-holder.service",
        "freezefs-guard.service",
    ] {
        assert_eq!(
            unit_state(&sandbox, "is-active", unit),
            "inactive",
            "{unit}"
        );
    }
    sandbox.sh("dpkg -P freezefs");
    let left: Vec<&String> = listed
        .iter()
        .filter(|p| !there_before.contains(p) && exists(p))
        .collect();
    assert!(left.is_empty(), "left after purge: {left:?}");
    let ours = sandbox.sh(
        "find /run/freezefs /sys/fs/cgroup/freezefs.holder /sys/fs/cgroup/freezefs.warden \
         /etc/systemd /var/lib/systemd -name '*freezefs*' 2>/dev/null; true",
    );
    assert_eq!(ours, "", "state left after purge");
}

#[test]
fn the_dev_package_builds_a_c_program_that_runs_with_the_installed_library() {
    let sandbox = sandbox_with_packages();
    install(&sandbox, &["freezefs", "libfreezefs-dev"]);
    std::fs::copy(
        crate_dir().join("examples/tru64_freeze.c"),
        sandbox.inside("/tmp/tru64_freeze.c"),
    )
    .unwrap();
    sandbox.sh(
        "cc -Wall -Wextra -Werror -o /tmp/tru64_freeze /tmp/tru64_freeze.c \
         $(pkg-config --cflags --libs freezefs-compat)",
    );
    let loaded = sandbox.sh("ldd /tmp/tru64_freeze");
    assert!(
        loaded.contains("libfreezefs.so.1 => /lib/")
            || loaded.contains("libfreezefs.so.1 => /usr/lib/"),
        "{loaded}"
    );
    let printed = sandbox.sh(&format!("/tmp/tru64_freeze {MNT}"));
    assert!(printed.contains("frozen, FS_Q_QUERY says 1"), "{printed}");
    assert!(!sandbox.frozen());
}

#[test]
fn the_group_package_needs_freezefs_and_installs_its_agent_neither_enabled_nor_started() {
    let sandbox = sandbox_with_packages();
    let alone = sandbox.run(&format!(
        "dpkg -i {DEBS}/{}",
        packages().deb("freezefs-group")
    ));
    assert!(!alone.status.success());
    let said = String::from_utf8_lossy(&alone.stderr);
    assert!(said.contains("depends on freezefs"), "{said}");
    install(&sandbox, &["freezefs", "freezefs-group"]);
    sandbox.sh("/usr/sbin/freezefs-group --help >/dev/null");
    let agent = "freezefs-group-agent.service";
    assert_eq!(unit_state(&sandbox, "is-enabled", agent), "disabled");
    assert_eq!(unit_state(&sandbox, "is-active", agent), "inactive");
}
