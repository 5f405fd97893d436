//! The words of freezefs's commands: errors, the end of a freeze, times
//! and JSON, as freezefs(8) and thawfs(8) print them.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use freezefs::{EndReason, Error, LastFreeze};

/// Exit status for a usage error.
pub use crate::exit::USAGE;

/// What the command was doing, for messages that depend on it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Freeze,
    Thaw,
    Query,
    Reset,
    List,
}

impl Action {
    fn gerund(self) -> &'static str {
        match self {
            Action::Freeze => "freezing",
            Action::Thaw => "thawing",
            Action::Query => "querying",
            Action::Reset => "resetting a timeout",
            Action::List => "listing",
        }
    }
}

/// The reason part of `<command>: <mount point>: <reason>`, with a hint
/// where one helps.
pub fn reason(action: Action, error: &Error) -> String {
    reason_about(action, error, None)
}

/// [`reason`] for a message that names `shown` already: a failed system
/// call names what it was about (the state directory, a hook directory,
/// the mount table) unless that is `shown` itself.
fn reason_about(action: Action, error: &Error, shown: Option<&Path>) -> String {
    if let Error::Os { what, .. } = error {
        let about_shown = shown.is_some_and(|shown| {
            let shown = shown.to_string_lossy();
            *what == shown || what.starts_with(&format!("{shown}: "))
        });
        if !about_shown {
            return format!("{what}: {}", os_reason(error));
        }
        return os_reason(error);
    }
    match error {
        Error::NotPrivileged => format!(
            "permission denied ({} needs root or CAP_SYS_ADMIN)",
            action.gerund()
        ),
        Error::NotMountPoint(path) => match freezefs::mount_point_of(path) {
            Ok(mount) => format!(
                "not a mount point; it lies on the filesystem mounted at {}",
                mount.display()
            ),
            Err(_) => "not a mount point".into(),
        },
        Error::EmptyPath => "empty path".into(),
        Error::PathTooLong => "path too long".into(),
        Error::Protected { what, .. } => format!(
            "refusing to freeze {what}: the system runs from /, /usr and /var, and would hang"
        ),
        Error::HoldsStateDir { state_dir, .. } => format!(
            "refusing to freeze the filesystem holding the state directory {}: it keeps the freeze",
            state_dir.display()
        ),
        Error::Unsupported { fs_type, .. } => format!("{fs_type} filesystems cannot be frozen"),
        Error::AlreadyFrozen(_) => "already frozen (thaw it first with thawfs)".into(),
        Error::NotFrozen(_) => "not frozen".into(),
        Error::ResetNotFrozen(_) => "not frozen; nothing to reset".into(),
        Error::HookFailed { reason, .. } => format!("freeze cancelled: {reason}"),
        Error::HoldBroken {
            hook,
            why,
            ended_at,
            held_for,
            ..
        } => format!(
            "thawed, but {}",
            hold_broken_text(hook, why, *ended_at, *held_for)
        ),
        Error::HolderUnavailable { path, reason } => format!(
            "cannot start the holder {} ({reason}); set FREEZEFS_HOLDER or reinstall",
            path.display()
        ),
        other => other.to_string(),
    }
}

/// What a failed system call's errno means, in words.
fn os_reason(error: &Error) -> String {
    let Error::Os { source, .. } = error else {
        return error.to_string();
    };
    match source.raw_os_error() {
        Some(libc::ENOENT) => "no such file or directory".into(),
        Some(libc::EMFILE) => {
            let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
            format!(
                "too many open files: the open-file limit (ulimit -n) is {}, and a freeze needs about 24",
                limit.map_or("unlimited".to_string(), |n| n.to_string())
            )
        }
        _ => {
            let text = source.to_string();
            text.split(" (os error")
                .next()
                .unwrap_or(&text)
                .to_lowercase()
        }
    }
}

/// A hold hook that ended while its freeze was in force, in one sentence
/// for `thawfs` and `freezefs -- CMD`: which, when, why, and what it means.
/// Its fields are those of [`freezefs::HoldBreak`] and
/// [`Error::HoldBroken`] alike.
pub fn hold_broken_text(
    hook: &str,
    why: &str,
    ended_at: Option<std::time::SystemTime>,
    held_for: Option<std::time::Duration>,
) -> String {
    let when = ended_at.map_or(String::new(), |t| format!(" at {}", iso_utc(t)));
    let held = held_for.map_or(String::new(), |d| {
        format!(", after holding its lock {:.1} s", d.as_secs_f64())
    });
    format!(
        "hold hook {hook} ended{when} while the filesystem was frozen ({why}{held}); the snapshot is not application-consistent"
    )
}

/// What THAW answers when the freeze it would end is over: how and when it
/// ended, and what that means for a snapshot taken under it.
pub fn ended_text(last: &LastFreeze) -> String {
    let lasted = last
        .ended_at
        .duration_since(last.frozen_since)
        .map_or(String::new(), |d| {
            format!(", {:.1} s after it began", d.as_secs_f64())
        });
    let when = format!("{}{lasted}", iso_utc(last.ended_at));
    match last.reason {
        EndReason::Thawed => format!("not frozen (its last freeze was thawed at {when})"),
        EndReason::Timeout => format!(
            "the freeze had already ended: its timeout passed at {when}; a snapshot taken under it may be inconsistent"
        ),
        EndReason::OtherTool => format!(
            "the freeze had already ended: another tool thawed it at {when}; a snapshot taken under it may be inconsistent"
        ),
        EndReason::FreezerDied => format!(
            "the freeze had already ended: its freezer died before it completed ({when}); nothing was frozen for a snapshot"
        ),
        EndReason::HolderStopped => format!(
            "the freeze had already ended: its holder was stopped (shutdown, systemctl stop or a signal) and thawed it at {when}; a snapshot taken under it may be inconsistent"
        ),
        other => format!(
            "the freeze had already ended: {} ({when}); a snapshot taken under it may be inconsistent",
            other.describe()
        ),
    }
}

/// An error of a call on several mount points, which names its own: the
/// error's text, but for a refusal that does not depend on the path.
pub fn whole(action: Action, error: &Error) -> String {
    match error {
        Error::NotPrivileged => reason(action, error),
        other => other.to_string(),
    }
}

/// Prints `<command>: <path>: <reason>` on stderr; an empty path is
/// shown as `''`, so that no field is blank.
pub fn complain(command: &str, action: Action, path: &Path, error: &Error) {
    let shown = if path.as_os_str().is_empty() {
        "''".into()
    } else {
        path.display().to_string()
    };
    eprintln!(
        "{command}: {shown}: {}",
        reason_about(action, error, Some(path))
    );
}

/// A mount point or type as findmnt prints it: a space, a tab, a newline,
/// a backslash, any other control character and any byte that is not UTF-8
/// as `\xHH`, so that a table row always splits into its columns.
pub fn escaped(text: &OsStr) -> String {
    let mut out = String::new();
    for chunk in text.as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() || c == ' ' || c == '\\' {
                let mut buf = [0; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("\\x{b:02x}"));
                }
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// Prints a usage error with the hint to ask for help, and returns [`USAGE`].
pub fn usage_error(command: &str, message: &str) -> i32 {
    eprintln!("{command}: {message}\nTry '{command} --help' for more information.");
    USAGE
}

/// The command's version line.
pub fn version(command: &str) -> String {
    format!("{command} (freezefs) {}", env!("CARGO_PKG_VERSION"))
}

/// The arguments after the program name, as OS strings (paths need not be UTF-8).
pub fn args() -> Vec<OsString> {
    std::env::args_os().skip(1).collect()
}

pub use freezefs::iso_utc;

/// A JSON string literal (lossy for non-UTF-8 bytes).
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
