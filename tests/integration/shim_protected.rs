//! `/`, `/usr` and `/var` under the shim: the kernel's contract with a
//! deadline that is always finite, where `freezefs()` and freezefs(8) keep
//! AdvFS's refusal. Scratch images stand in for the three names in a mount
//! namespace of the test's own: the machine's own are never named.

use std::process::Output;
use std::time::Duration;

use crate::private_mounts::PrivateMounts;
use crate::support::{Kind, Scratch, program, under_shim, wait_until, with_env};

/// Scratch images as `/`, `/usr` and `/var` of a namespace of their own,
/// checked to be what those names name there. The first also lends its
/// state directory and sysconfigtab to the tests.
fn protected_stand_ins() -> (Vec<Scratch>, PrivateMounts) {
    let stand_ins: Vec<Scratch> = (0..3).map(|_| Scratch::new(Kind::Ext4)).collect();
    let mut ns = PrivateMounts::new(&stand_ins.iter().collect::<Vec<_>>());
    ns.root_in(&stand_ins[0]);
    ns.mount_over(&stand_ins[1], "/usr");
    ns.mount_over(&stand_ins[2], "/var");
    for (name, fs) in PROTECTED.into_iter().zip(&stand_ins) {
        assert!(ns.names(name, fs), "{name} is not its stand-in");
    }
    (stand_ins, ns)
}

const PROTECTED: [&str; 3] = ["/", "/usr", "/var"];

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn set_protected_cap(fs: &Scratch, seconds: u32) {
    std::fs::write(
        fs.sysconfigtab(),
        format!("vfs:\n\tfreezefs_protected_max_timeout = {seconds}\n"),
    )
    .unwrap();
}

#[test]
fn under_the_shim_root_usr_and_var_freeze_with_a_deadline_no_timeout_cannot_lift() {
    let (stand_ins, ns) = protected_stand_ins();
    let state = &stand_ins[0];
    set_protected_cap(state, 2);
    for name in PROTECTED {
        let out: Output = ns
            .under_shim(state, "fsfreeze", Some("-1"))
            .args(["-f", name])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fsfreeze -f {name}: {}",
            text(&out.stderr)
        );
    }
    for (name, fs) in PROTECTED.into_iter().zip(&stand_ins) {
        assert!(fs.kernel_frozen(), "{name} is not frozen");
    }
    let kept = state.records();
    assert_eq!(kept.len(), 3, "{kept:?}");
    for record in &kept {
        assert!(record.contains("\ntimeout_s 2\n"), "not capped: {record}");
    }
    // The holder thaws each at the cap, with nobody left to ask.
    for (name, fs) in PROTECTED.into_iter().zip(&stand_ins) {
        assert!(
            wait_until(Duration::from_secs(8), Duration::from_millis(20), || !fs
                .kernel_frozen()),
            "{name} outlived its capped deadline"
        );
    }
    crate::support::assert_system_never_frozen();
}

#[test]
fn under_the_shim_a_shorter_timeout_than_the_cap_is_kept() {
    let (stand_ins, ns) = protected_stand_ins();
    let state = &stand_ins[0];
    set_protected_cap(state, 30);
    let out = ns
        .under_shim(state, "fsfreeze", Some("1"))
        .args(["-f", "/var"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        state
            .records()
            .iter()
            .any(|r| r.contains("\ntimeout_s 1\n"))
    );
    assert!(wait_until(
        Duration::from_secs(6),
        Duration::from_millis(20),
        || !stand_ins[2].kernel_frozen()
    ));
}

#[test]
fn the_api_and_the_commands_still_refuse_root_usr_and_var() {
    let (stand_ins, ns) = protected_stand_ins();
    let state = &stand_ins[0];
    for (name, fs) in PROTECTED.into_iter().zip(&stand_ins) {
        let mut api = ns.command(program("fzctl"));
        api.args(["1", name, "5"]);
        let out = with_env(&mut api, state).output().unwrap();
        assert_eq!(text(&out.stdout).trim(), "rc=-1 errno=EOPNOTSUPP", "{name}");

        let mut command = ns.command(crate::support::freezefs_exe());
        command.args(["-t", "5", name]);
        let out = with_env(&mut command, state).output().unwrap();
        assert!(!out.status.success(), "freezefs {name} succeeded");
        assert!(
            text(&out.stderr).contains("refusing"),
            "{}",
            text(&out.stderr)
        );
        assert!(!fs.kernel_frozen(), "{name}");
    }
    crate::support::assert_system_never_frozen();
}

#[test]
fn under_the_shim_the_state_directorys_filesystem_is_refused_with_edeadlk() {
    let fs = Scratch::new(Kind::Ext4);
    let state_dir = fs.mnt.join("run");
    let out = under_shim(
        &fs,
        "env",
        &[
            format!("FREEZEFS_RUNDIR={}", state_dir.display()).as_ref(),
            "fsfreeze".as_ref(),
            "-f".as_ref(),
            fs.mnt.as_os_str(),
        ],
        Some("5"),
    );
    assert!(!out.status.success());
    let said = text(&out.stderr);
    assert!(said.contains("Resource deadlock avoided"), "{said}");
    assert!(
        said.contains("freezefs shim:") && said.contains("holding the state directory"),
        "{said}"
    );
    assert!(
        said.contains(&*fs.mnt.to_string_lossy()),
        "names no mount point: {said}"
    );
    assert!(!fs.kernel_frozen());
    let recorded = std::fs::read_dir(&state_dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.file_name().to_string_lossy().starts_with("sb."))
        })
        .unwrap_or(false);
    assert!(!recorded, "a refused freeze left a record");
}
