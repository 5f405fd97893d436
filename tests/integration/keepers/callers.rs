//! The caller's cgroup killed or frozen, a caller that cannot die, and
//! where the holder lives.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::{TRIALS, TestCgroup, deadline_ns, freezefs_bin, holder_of, thawed_late_ms};
use crate::support::{
    Kind, Scratch, Syslog, on_ext4_xfs_btrfs, program, shim, wait_until, with_env,
};

on_ext4_xfs_btrfs! {
    fn a_freeze_ends_by_its_deadline_when_the_callers_cgroup_is_killed(kind) {
        for _ in 0..TRIALS {
            let fs = Scratch::new(kind);
            let cgroup = TestCgroup::new();
            cgroup.run(&fs, &format!("{} -t 2 {}", freezefs_bin(), fs.mnt.display()));
            let deadline = deadline_ns(&fs);
            cgroup.write("cgroup.kill", "1");
            thawed_late_ms(&fs, deadline, "cgroup.kill");
        }
    }
}

on_ext4_xfs_btrfs! {
    fn a_freeze_ends_by_its_deadline_while_the_callers_cgroup_is_frozen(kind) {
        for _ in 0..TRIALS {
            let fs = Scratch::new(kind);
            let cgroup = TestCgroup::new();
            cgroup.run(&fs, &format!("{} -t 2 {}", freezefs_bin(), fs.mnt.display()));
            let deadline = deadline_ns(&fs);
            cgroup.write("cgroup.freeze", "1");
            thawed_late_ms(&fs, deadline, "cgroup.freeze");
        }
    }
}

/// A caller blocked writing to the filesystem it froze cannot die when its
/// cgroup is killed; the holder, outside that cgroup, still thaws.
#[test]
fn a_freeze_ends_by_its_deadline_when_a_caller_that_cannot_die_is_in_the_killed_cgroup() {
    for kind in Kind::FREEZABLE {
        let fs = Scratch::new(kind);
        let cgroup = TestCgroup::new();
        let script = format!(
            "exec {} {} 2",
            program("freeze_then_write").display(),
            fs.mnt.display()
        );
        cgroup.run_until(&fs, &script, "frozen");
        let deadline = deadline_ns(&fs);
        cgroup.write("cgroup.kill", "1");
        thawed_late_ms(&fs, deadline, "cgroup.kill-with-blocked-writer");
    }
}

on_ext4_xfs_btrfs! {
    /// util-linux fsfreeze under the shim, in a unit's cgroup that is then
    /// stopped (a hypervisor agent's unit restarted).
    fn a_shim_freeze_ends_by_its_deadline_when_the_tools_cgroup_is_killed(kind) {
        for _ in 0..TRIALS {
            let fs = Scratch::new(kind);
            let cgroup = TestCgroup::new();
            let script = format!(
                "LD_PRELOAD={} FREEZEFS_TIMEOUT=2 fsfreeze -f {}",
                shim().display(),
                fs.mnt.display()
            );
            cgroup.run(&fs, &script);
            let deadline = deadline_ns(&fs);
            cgroup.write("cgroup.kill", "1");
            thawed_late_ms(&fs, deadline, "shim-cgroup.kill");
        }
    }
}

/// The holder and its warden live outside the caller's cgroups, out of the
/// OOM killer's choice where the kernel lets a process refuse it.
#[test]
fn the_holder_leaves_its_callers_cgroup_and_refuses_the_oom_killer() {
    let fs = Scratch::new(Kind::Ext4);
    let syslog = Syslog::new(&fs.dir);
    let cgroup = TestCgroup::new();
    let script = format!(
        "FREEZEFS_SYSLOG_SOCKET={} {} -t 5 {}",
        syslog.path.display(),
        freezefs_bin(),
        fs.mnt.display()
    );
    cgroup.run(&fs, &script);
    let holder = holder_of(&fs);
    let cgroups = std::fs::read_to_string(format!("/proc/{holder}/cgroup")).unwrap();
    let v2 = cgroups.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    assert_eq!(v2, "/freezefs.holder", "{cgroups}");
    let adj = std::fs::read_to_string(format!("/proc/{holder}/oom_score_adj")).unwrap();
    if may_refuse_oom() {
        assert_eq!(adj.trim(), "-1000");
    } else {
        // This kernel refuses a negative oom_score_adj to everyone: the
        // holder says so rather than pretend.
        let messages = syslog.drain();
        assert!(
            messages.iter().any(|m| m.contains("oom_score_adj")),
            "{messages:#?}"
        );
    }
    fs.freezer().thaw(&fs.mnt).unwrap();
}

/// Whether this kernel lets a root process lower its oom_score_adj.
fn may_refuse_oom() -> bool {
    Command::new("sh")
        .args(["-c", "echo -1 > /proc/self/oom_score_adj"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// On the v1/v2 hybrid layout, `docker pause` freezes the caller through
/// the v1 freezer hierarchy: the holder sits at its root, out of reach.
#[test]
fn a_freeze_ends_by_its_deadline_while_the_callers_v1_freezer_cgroup_is_frozen() {
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let v1_freezer = mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(2) == Some(&"cgroup") && f[3].split(',').any(|o| o == "freezer"))
            .then(|| PathBuf::from(f[1]))
    });
    let fs = Scratch::new(Kind::Ext4);
    let Some(root) = v1_freezer else {
        // A unified-only machine: no v1 freezer to escape; the holder must
        // not be in one either.
        eprintln!("NOTE: no cgroup v1 freezer hierarchy here; checking the v2 one only");
        let cgroup = TestCgroup::new();
        cgroup.run(
            &fs,
            &format!("{} -t 2 {}", freezefs_bin(), fs.mnt.display()),
        );
        let deadline = deadline_ns(&fs);
        cgroup.write("cgroup.freeze", "1");
        thawed_late_ms(&fs, deadline, "cgroup.freeze");
        return;
    };
    let frozen_cg = root.join(format!("freezefs-test.{}", std::process::id()));
    std::fs::create_dir(&frozen_cg).unwrap();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "echo $$ > {}/cgroup.procs && {} -t 2 {} && echo ready && exec sleep 60",
            frozen_cg.display(),
            freezefs_bin(),
            fs.mnt.display()
        ))
        .stdout(Stdio::piped());
    let mut caller = with_env(&mut cmd, &fs).spawn().unwrap();
    let mut said = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(caller.stdout.as_mut().unwrap()),
        &mut said,
    )
    .unwrap();
    assert_eq!(said.trim(), "ready");
    let deadline = deadline_ns(&fs);
    std::fs::write(frozen_cg.join("freezer.state"), "FROZEN").unwrap();
    let late = std::panic::catch_unwind(|| thawed_late_ms(&fs, deadline, "v1-freezer-frozen"));
    let _ = std::fs::write(frozen_cg.join("freezer.state"), "THAWED");
    let _ = caller.kill();
    let _ = caller.wait();
    wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        std::fs::remove_dir(&frozen_cg).is_ok()
    });
    late.unwrap();
}
