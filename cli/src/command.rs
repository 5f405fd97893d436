//! The command to run under a freeze: found before anything is frozen, so
//! that a typo freezes nothing.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::exit::{CANNOT_RUN, NOT_FOUND};

/// Why a command cannot run: its exit status, and what to say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CannotRun {
    pub status: i32,
    pub message: String,
}

/// The command's executable: a name with a slash as it is, else the first
/// match in `PATH`.
pub fn find(program: &OsStr) -> Result<PathBuf, CannotRun> {
    let name = Path::new(program);
    let found = if program.as_bytes().contains(&b'/') {
        name.exists().then(|| name.to_path_buf())
    } else {
        std::env::var_os("PATH")
            .unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into())
            .as_bytes()
            .split(|&b| b == b':')
            .map(|dir| Path::new(OsStr::from_bytes(dir)).join(name))
            .find(|p| p.is_file())
    };
    let Some(path) = found else {
        return Err(CannotRun {
            status: NOT_FOUND,
            message: format!("{}: command not found", name.display()),
        });
    };
    let runnable =
        std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if !runnable {
        return Err(CannotRun {
            status: CANNOT_RUN,
            message: format!("{}: not an executable file", path.display()),
        });
    }
    Ok(path)
}

/// The exit status for a command that failed to start.
pub fn start_failure(error: &std::io::Error) -> i32 {
    if error.kind() == std::io::ErrorKind::NotFound {
        NOT_FOUND
    } else {
        CANNOT_RUN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_command_is_127_and_a_file_that_cannot_run_126() {
        let missing = find(OsStr::new("no-such-command-freezefs")).unwrap_err();
        assert_eq!(missing.status, NOT_FOUND);
        assert_eq!(
            missing.message,
            "no-such-command-freezefs: command not found"
        );
        let plain = std::env::temp_dir().join(format!("freezefs-cli-plain.{}", std::process::id()));
        std::fs::write(&plain, "not a program").unwrap();
        let not_executable = find(plain.as_os_str()).unwrap_err();
        std::fs::remove_file(&plain).unwrap();
        assert_eq!(not_executable.status, CANNOT_RUN);
        assert!(find(OsStr::new("sh")).is_ok());
    }
}
