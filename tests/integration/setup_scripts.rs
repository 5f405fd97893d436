//! The set-up script on a fresh cloud image: cargo checked first, only what
//! the demo uses installed for the demo, and apt's lock, held by another
//! apt run, waited for within a bound. apt-get is a stand-in here that
//! records its calls (the real one would change this machine).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::support::{crate_dir, mkdtemp};

/// A stand-in apt-get that says apt's lock is held for its first `busy`
/// calls, then succeeds, writing each call to `calls`.
fn fake_apt_get(dir: &Path, busy: u32) -> PathBuf {
    let exe = dir.join("apt-get");
    std::fs::write(
        &exe,
        format!(
            "#!/bin/sh\necho \"$*\" >> {calls}\nn=$(wc -l < {calls})\n\
             if [ \"$n\" -le {busy} ]; then\n\
             echo 'E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)' >&2\n\
             exit 100\nfi\nexit 0\n",
            calls = dir.join("calls").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    exe
}

/// install-deps with a PATH on which the sbin tools (mkfs.*) are missing,
/// so that it has something to install, and cargo there or not.
fn install_deps(dir: &Path, what: &str, with_cargo: bool, env: &[(&str, &str)]) -> Output {
    let cargo_dir = Path::new(env!("CARGO")).parent().unwrap();
    let mut path = format!("{}:/usr/bin:/bin", dir.display());
    if with_cargo {
        path = format!("{path}:{}", cargo_dir.display());
    }
    Command::new(crate_dir().join("scripts/install-deps"))
        .arg(what)
        .env("PATH", path)
        .env("APT_GET", dir.join("apt-get"))
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn install_deps_waits_for_apts_lock_and_the_demo_gets_only_what_it_uses() {
    let dir = mkdtemp("freezefs-apt");
    fake_apt_get(&dir, 2);
    let out = install_deps(&dir, "demo", true, &[]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("another apt run holds apt's lock"), "{said}");
    let calls = calls(&dir);
    assert_eq!(calls.len(), 4, "{calls:?}");
    let install = calls.iter().find(|c| c.contains(" install ")).unwrap();
    assert!(install.contains("e2fsprogs"), "{install}");
    for unused in [
        "xfsprogs",
        "btrfs-progs",
        "qemu-guest-agent",
        "valgrind",
        "postgresql",
    ] {
        assert!(
            !install.contains(unused),
            "the demo installs {unused}: {install}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn install_deps_gives_up_on_a_lock_held_too_long_with_a_clear_message() {
    let dir = mkdtemp("freezefs-apt");
    fake_apt_get(&dir, 1000);
    let out = install_deps(&dir, "tests", true, &[("APT_LOCK_WAIT", "2")]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("another apt run still holds apt's lock after 2 s; run this again"),
        "{said}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn install_deps_checks_for_cargo_before_apt_runs() {
    let dir = mkdtemp("freezefs-apt");
    fake_apt_get(&dir, 0);
    let out = install_deps(&dir, "demo", false, &[]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(
        said.contains("no cargo on PATH") && said.contains("rustup"),
        "{said}"
    );
    assert!(calls(&dir).is_empty(), "apt ran before the cargo check");
    std::fs::remove_dir_all(dir).unwrap();
}
