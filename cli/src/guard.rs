//! `freezefs --guard`: the guard in the foreground, until SIGTERM or
//! SIGINT, for systems without systemd (freezefs-guard.service runs the
//! same) and for tests. It says once what it watches; what it sees and
//! does goes to syslog, never to its own output, which it must never
//! wait on while a filesystem is frozen.

use freezefs::{Freezer, GuardStart};

/// Runs the guard; its exit status.
pub fn run() -> i32 {
    let started = |start: GuardStart| {
        let plan = match start.thaw_after_s {
            Some(s) => format!("a freeze made by another tool is thawed after {s} s"),
            None => {
                "freezes made by other tools are only reported (freezefs_foreign_max_timeout is 0)"
                    .into()
            }
        };
        eprintln!(
            "freezefs: guarding {} filesystem{}: {plan}",
            start.filesystems,
            if start.filesystems == 1 { "" } else { "s" }
        );
    };
    match Freezer::from_env().guard_host(started) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("freezefs: --guard: {e}");
            1
        }
    }
}
