//! Which hold hooks a freeze asks for: their directory, found and checked
//! as the hook directory is, their time limits, and how they travel to
//! the holder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config;
use crate::error::Result;
use crate::hooks::{self, Hooks};

/// Where hold hooks live.
pub const HOLD_DIR: &str = "/etc/freezefs/hold.d";
/// The environment variable that overrides [`HOLD_DIR`] (ignored under `AT_SECURE`).
pub const HOLD_DIR_ENV: &str = "FREEZEFS_HOLD_DIR";

/// The hold hook directory in force: the override, or [`HOLD_DIR`].
pub(crate) fn hold_dir_path() -> PathBuf {
    crate::os::syscalls::secure_env(HOLD_DIR_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(HOLD_DIR))
}

/// A hold hook directory that holds hooks: each must be ready within
/// `hooks.limit_s` and gone `grace_s` after it is told the freeze ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HoldHooks {
    pub(crate) hooks: Hooks,
    pub(crate) grace_s: u32,
}

impl HoldHooks {
    /// The hold hooks in force: `None` when the directory does not exist or
    /// holds none; the same ownership rules as the hook directory.
    pub(crate) fn find(dir: &Path, sysconfigtab: &Path) -> Result<Option<HoldHooks>> {
        Ok(hooks::find(dir, sysconfigtab)?.map(|hooks| HoldHooks {
            hooks,
            grace_s: config::hold_grace(sysconfigtab),
        }))
    }

    pub(crate) fn limit(&self) -> Duration {
        Duration::from_secs(self.hooks.limit_s.into())
    }

    pub(crate) fn grace(&self) -> Duration {
        Duration::from_secs(self.grace_s.into())
    }
}
