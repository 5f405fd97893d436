//! Finding hooks: the hook directory, checked for who may write it, and the
//! executables in it, in lexical order.

use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config;
use crate::error::{Error, Result};
use crate::os::mounts::Device;
use crate::os::syscalls;

/// Where hooks live.
pub const HOOKS_DIR: &str = "/etc/freezefs/hooks.d";
/// The environment variable that overrides [`HOOKS_DIR`] (ignored under `AT_SECURE`).
pub const HOOKS_DIR_ENV: &str = "FREEZEFS_HOOKS_DIR";

/// A hook directory that holds hooks, and the time limit of each run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hooks {
    pub(crate) dir: PathBuf,
    pub(crate) limit_s: u32,
    /// How many hooks [`find`] listed: what a client waits for. Not sent to
    /// the holder, which lists the directory when it runs them.
    pub(crate) count: usize,
}

/// A filesystem hooks are run for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HookTarget {
    pub(crate) device: Device,
    pub(crate) mount_point: PathBuf,
}

/// A failed system call on the hook directory `dir`, which it names.
fn dir_failed(dir: &Path, e: std::io::Error) -> Error {
    Error::os(format!("hook directory {}", dir.display()), e)
}

/// The hook directory in force: the override, or [`HOOKS_DIR`].
pub(crate) fn hooks_dir_path() -> PathBuf {
    syscalls::secure_env(HOOKS_DIR_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(HOOKS_DIR))
}

/// The hooks in force: `None` when the directory does not exist or holds
/// no hook (then a freeze costs one `stat` more than without hooks). A
/// directory or hook that someone other than root could change is an error.
pub(crate) fn find(dir: &Path, sysconfigtab: &Path) -> Result<Option<Hooks>> {
    let dir = dir.to_path_buf();
    let meta = match std::fs::symlink_metadata(&dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(dir_failed(&dir, e)),
    };
    if !meta.is_dir() {
        return Err(unsafe_hooks(&dir, "is not a directory"));
    }
    check_owner(&dir, &meta)?;
    let count = list(&dir)?.len();
    Ok((count > 0).then(|| Hooks {
        dir,
        limit_s: config::hook_timeout(sysconfigtab),
        count,
    }))
}

fn unsafe_hooks(path: &Path, problem: &'static str) -> Error {
    Error::UnsafeHooks {
        path: path.to_path_buf(),
        problem,
    }
}

fn check_owner(path: &Path, meta: &Metadata) -> Result<()> {
    if meta.uid() != 0 {
        return Err(unsafe_hooks(path, "is not owned by root"));
    }
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(unsafe_hooks(path, "is writable by group or others"));
    }
    Ok(())
}

/// The hooks of `dir`, in lexical order: executable regular files, as
/// run-parts takes them (names starting with `.` or ending in `~` or a
/// dpkg suffix are left out; a file that is not executable is skipped). A
/// hook someone other than root could change, or a symbolic link, is an
/// error.
pub(crate) fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| dir_failed(dir, e))?;
    let mut hooks = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| dir_failed(dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let skipped = name.starts_with('.')
            || name.ends_with('~')
            || [".dpkg-old", ".dpkg-new", ".dpkg-dist", ".dpkg-tmp"]
                .iter()
                .any(|s| name.ends_with(s));
        if skipped {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| Error::os(path.display().to_string(), e))?;
        if meta.file_type().is_symlink() {
            return Err(unsafe_hooks(&path, "is a symbolic link"));
        }
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            continue;
        }
        check_owner(&path, &meta)?;
        hooks.push(path);
    }
    hooks.sort();
    Ok(hooks)
}
