//! The commands answer --help, --version and a wrong option without
//! touching any filesystem. (Their behaviour on real filesystems is in
//! tests/integration/ at the workspace root, which runs these binaries.)

use std::process::Command;

fn run(exe: &str, args: &[&str]) -> std::process::Output {
    Command::new(exe).args(args).output().unwrap()
}

#[test]
fn help_prints_the_usage_and_exits_0() {
    for exe in [env!("CARGO_BIN_EXE_freezefs"), env!("CARGO_BIN_EXE_thawfs")] {
        let out = run(exe, &["--help"]);
        assert_eq!(out.status.code(), Some(0), "{exe}");
        assert!(
            String::from_utf8_lossy(&out.stdout).starts_with("Usage:"),
            "{exe}"
        );
    }
}

#[test]
fn version_names_the_command_and_freezefs() {
    let out = run(env!("CARGO_BIN_EXE_thawfs"), &["--version"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("thawfs (freezefs) {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn an_unknown_option_is_a_usage_error_2() {
    for exe in [env!("CARGO_BIN_EXE_freezefs"), env!("CARGO_BIN_EXE_thawfs")] {
        let out = run(exe, &["--no-such-option"]);
        assert_eq!(out.status.code(), Some(2), "{exe}");
    }
}
