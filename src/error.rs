//! One error type for the whole library, and its one mapping to `errno`.

use std::io;
use std::path::PathBuf;

/// Result of every freezefs operation.
pub type Result<T> = std::result::Result<T, Error>;

/// Why an operation failed. Every variant maps to the `errno` that the C API
/// reports (see [`Error::errno`]), as listed in the contract table of the README.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The caller has neither euid 0 nor `CAP_SYS_ADMIN` (`EPERM`).
    #[error("permission denied: freezefs needs euid 0 or CAP_SYS_ADMIN")]
    NotPrivileged,

    /// A NULL path, an unknown or combined flag, a path with a NUL byte, or
    /// `Timeout::Seconds(0)` (`EINVAL`).
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),

    /// The path is the empty string (`ENOENT`).
    #[error("empty path")]
    EmptyPath,

    /// The path is longer than `PATH_MAX` (`ENAMETOOLONG`).
    #[error("path is longer than PATH_MAX")]
    PathTooLong,

    /// The path exists but is not the root of a mount (`EINVAL`).
    #[error("{}: not a mount point", .0.display())]
    NotMountPoint(PathBuf),

    /// FREEZE of `/`, `/usr` or `/var`, under any of their names
    /// (`EOPNOTSUPP`).
    #[error("{}: refusing to freeze {what}", path.display())]
    Protected {
        /// The path as the caller gave it.
        path: PathBuf,
        /// Which protected filesystem it names, e.g. "/usr".
        what: String,
    },

    /// FREEZE of the filesystem holding the state directory: freezing it
    /// would freeze what keeps the freeze (`EOPNOTSUPP`; the shim says
    /// `EDEADLK`, which raw-ioctl tools do not skip).
    #[error(
        "{}: refusing to freeze the filesystem holding the state directory {}: it keeps the freeze",
        path.display(),
        state_dir.display()
    )]
    HoldsStateDir {
        /// Its mount point (an fd names no path of the caller's).
        path: PathBuf,
        /// The state directory.
        state_dir: PathBuf,
    },

    /// The filesystem cannot be frozen (tmpfs, vfat, proc, ...) (`EOPNOTSUPP`).
    #[error("{}: {fs_type} filesystems cannot be frozen", path.display())]
    Unsupported {
        /// The path as the caller gave it.
        path: PathBuf,
        /// The filesystem type from mountinfo.
        fs_type: String,
    },

    /// FREEZE of a filesystem that is already frozen (`EALREADY`).
    #[error("{}: already frozen", .0.display())]
    AlreadyFrozen(PathBuf),

    /// THAW of a filesystem that is not frozen (`EALREADY`).
    #[error("{}: not frozen", .0.display())]
    NotFrozen(PathBuf),

    /// Reset of the timeout of a filesystem that is not frozen (`EINVAL`,
    /// as the 2008 patch's `FIFREEZE_RESET_TIMEOUT`).
    #[error("{}: not frozen; nothing to reset", .0.display())]
    ResetNotFrozen(PathBuf),

    /// The state directory is unsafe to use: a symlink (`ELOOP`), not a
    /// directory (`ENOTDIR`), owned by another user or group/world-writable
    /// (`EACCES`). Nothing was frozen or thawed.
    #[error("state directory {}: {problem}", path.display())]
    UnsafeStateDir {
        /// The state directory's path.
        path: PathBuf,
        /// What is wrong with it.
        problem: &'static str,
        /// The errno reported for it.
        errno: i32,
    },

    /// The hook directory, or a hook in it, could be changed by someone
    /// other than root, or is not what it should be (`EACCES`). Nothing was
    /// frozen.
    #[error("hooks: {} {problem}", path.display())]
    UnsafeHooks {
        /// The directory or hook.
        path: PathBuf,
        /// What is wrong with it.
        problem: &'static str,
    },

    /// A freeze hook failed or outlived its time limit (`ECANCELED`): the
    /// freeze was not made, and the thaw hooks of those that had run were
    /// run.
    #[error("{}: freeze cancelled: {reason}", path.display())]
    HookFailed {
        /// The mount point (or the path the caller gave).
        path: PathBuf,
        /// Which hook, and how it failed.
        reason: String,
    },

    /// THAW thawed the filesystem (or found its freeze ended), but a hold
    /// hook ended while the freeze was in force (`ECANCELED`): the
    /// application's lock did not hold for the whole freeze, and a
    /// snapshot taken under it is not application-consistent.
    #[error(
        "{}: hold hook {hook} ended while the freeze was in force ({why}{}); the lock it held was gone before the thaw, and a snapshot taken under this freeze is not application-consistent",
        path.display(),
        held_for.map_or(String::new(), |d| format!(", after holding {:.1} s", d.as_secs_f64()))
    )]
    HoldBroken {
        /// The mount point (or the path the caller gave).
        path: PathBuf,
        /// The hold hook's file name.
        hook: String,
        /// "exit 1", "killed by signal 9", "its process was gone".
        why: String,
        /// When it ended, when known.
        ended_at: Option<std::time::SystemTime>,
        /// How long it had held, from its `ready`, when known.
        held_for: Option<std::time::Duration>,
    },

    /// A state record that cannot be parsed (`EIO`): the state directory was
    /// tampered with. QUERY does not guess.
    #[error("state record {}: unreadable ({reason})", path.display())]
    CorruptRecord {
        /// The record file.
        path: PathBuf,
        /// What the parser rejected.
        reason: String,
    },

    /// The holder process, which keeps the freeze if the caller dies, could
    /// not be started or did not answer (`ECHILD`). Nothing was frozen.
    #[error("cannot start the holder {}: {reason}", path.display())]
    HolderUnavailable {
        /// The holder executable tried.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },

    /// A system call failed; its errno is passed through.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// The `errno` value the C API sets for this error.
    pub fn errno(&self) -> i32 {
        match self {
            Error::NotPrivileged => libc::EPERM,
            Error::InvalidArgument(_) | Error::NotMountPoint(_) | Error::ResetNotFrozen(_) => {
                libc::EINVAL
            }
            Error::EmptyPath => libc::ENOENT,
            Error::PathTooLong => libc::ENAMETOOLONG,
            Error::Protected { .. } | Error::HoldsStateDir { .. } | Error::Unsupported { .. } => {
                libc::EOPNOTSUPP
            }
            Error::AlreadyFrozen(_) | Error::NotFrozen(_) => libc::EALREADY,
            Error::UnsafeStateDir { errno, .. } => *errno,
            Error::UnsafeHooks { .. } => libc::EACCES,
            Error::HookFailed { .. } | Error::HoldBroken { .. } => libc::ECANCELED,
            Error::CorruptRecord { .. } => libc::EIO,
            Error::HolderUnavailable { .. } => libc::ECHILD,
            Error::Os { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
        }
    }

    /// Every errno the library sets for an error of its own, with its name:
    /// what the header, freezefs(3) and the README list. [`Error::Os`] also
    /// passes through the errno of a failed system call.
    pub const DOCUMENTED_ERRNOS: [(i32, &'static str); 12] = [
        (libc::EPERM, "EPERM"),
        (libc::EINVAL, "EINVAL"),
        (libc::ENOENT, "ENOENT"),
        (libc::ENAMETOOLONG, "ENAMETOOLONG"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::EALREADY, "EALREADY"),
        (libc::EACCES, "EACCES"),
        (libc::ELOOP, "ELOOP"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::EIO, "EIO"),
        (libc::ECHILD, "ECHILD"),
        (libc::ECANCELED, "ECANCELED"),
    ];

    /// Wraps a failed system call, keeping its errno.
    pub(crate) fn os(what: impl Into<String>, source: impl Into<io::Error>) -> Error {
        Error::Os {
            what: what.into(),
            source: source.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One error of every kind, with every errno an unsafe state directory
    /// reports. The match makes a new variant fail to compile here until it
    /// is listed.
    fn one_of_each() -> Vec<Error> {
        let path = PathBuf::from("/x");
        let all = vec![
            Error::NotPrivileged,
            Error::InvalidArgument("x"),
            Error::EmptyPath,
            Error::PathTooLong,
            Error::NotMountPoint(path.clone()),
            Error::Protected {
                path: path.clone(),
                what: "/".into(),
            },
            Error::HoldsStateDir {
                path: path.clone(),
                state_dir: "/run/freezefs".into(),
            },
            Error::Unsupported {
                path: path.clone(),
                fs_type: "tmpfs".into(),
            },
            Error::AlreadyFrozen(path.clone()),
            Error::NotFrozen(path.clone()),
            Error::ResetNotFrozen(path.clone()),
            Error::UnsafeStateDir {
                path: path.clone(),
                problem: "is a symlink",
                errno: libc::ELOOP,
            },
            Error::UnsafeStateDir {
                path: path.clone(),
                problem: "is not a directory",
                errno: libc::ENOTDIR,
            },
            Error::UnsafeStateDir {
                path: path.clone(),
                problem: "is owned by another user",
                errno: libc::EACCES,
            },
            Error::UnsafeHooks {
                path: path.clone(),
                problem: "is writable by group or others",
            },
            Error::HookFailed {
                path: path.clone(),
                reason: "hook 10-db freeze /x: exit 1".into(),
            },
            Error::HoldBroken {
                path: path.clone(),
                hook: "50-mariadb".into(),
                why: "killed by signal 9".into(),
                ended_at: None,
                held_for: Some(std::time::Duration::from_millis(3200)),
            },
            Error::CorruptRecord {
                path: path.clone(),
                reason: "torn".into(),
            },
            Error::HolderUnavailable {
                path,
                reason: "missing".into(),
            },
        ];
        for e in &all {
            match e {
                Error::NotPrivileged
                | Error::InvalidArgument(_)
                | Error::EmptyPath
                | Error::PathTooLong
                | Error::NotMountPoint(_)
                | Error::Protected { .. }
                | Error::HoldsStateDir { .. }
                | Error::Unsupported { .. }
                | Error::AlreadyFrozen(_)
                | Error::NotFrozen(_)
                | Error::ResetNotFrozen(_)
                | Error::UnsafeStateDir { .. }
                | Error::UnsafeHooks { .. }
                | Error::HookFailed { .. }
                | Error::HoldBroken { .. }
                | Error::CorruptRecord { .. }
                | Error::HolderUnavailable { .. }
                | Error::Os { .. } => {}
            }
        }
        all
    }

    #[test]
    fn every_error_of_the_library_has_a_documented_errno() {
        for e in one_of_each() {
            assert!(
                Error::DOCUMENTED_ERRNOS
                    .iter()
                    .any(|&(errno, _)| errno == e.errno()),
                "{e:?} gives errno {}, which Error::DOCUMENTED_ERRNOS does not list",
                e.errno()
            );
        }
    }

    #[test]
    fn every_documented_errno_is_given_by_some_error() {
        let given: Vec<i32> = one_of_each().iter().map(Error::errno).collect();
        for (errno, name) in Error::DOCUMENTED_ERRNOS {
            assert!(given.contains(&errno), "no error gives {name}");
        }
    }
}
