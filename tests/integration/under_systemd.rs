//! The holder's units under a real systemd (issue 18): PID 1 of private
//! mount, pid, cgroup and uts namespaces over a tmpfs-backed overlay of `/`
//! (tests/tools/systemd-sandbox), never over the machine's own root. Inside
//! it, freezefs-holder.socket and .service as `make install` writes them,
//! a scratch ext4 on a loop device, and `systemctl` as an admin uses it.

use crate::systemd_sandbox::{MNT, Sandbox, boot_ns, thawed_late_ms};

use std::time::Duration;

use crate::support::wait_until;

fn freezefs() -> &'static str {
    crate::support::freezefs_exe()
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
    sandbox.sh(&format!("{} {MNT}", crate::support::thawfs_exe()));
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
    let thaw = sandbox.run(&format!("{} {MNT}", crate::support::thawfs_exe()));
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
    let thaw = sandbox.run(&format!("{} {MNT}", crate::support::thawfs_exe()));
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
    sandbox.sh(&format!("{} {MNT}", crate::support::thawfs_exe()));
    assert!(!sandbox.frozen());
}
