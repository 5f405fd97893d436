//! What every operation needs to know of its caller's choices: where the
//! state lives, where the defaults and hooks are read, which holder to
//! start, and how `/`, `/usr` and `/var` are treated. [`crate::Freezer`]
//! holds one and hands it to each operation.

use std::path::PathBuf;

use crate::holder::client;
use crate::policy::ProtectedNames;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) state_dir: PathBuf,
    pub(crate) sysconfigtab: PathBuf,
    /// The holder executable asked for, if any (else the one found).
    pub(crate) holder: Option<PathBuf>,
    pub(crate) protected_names: ProtectedNames,
    pub(crate) hooks_dir: PathBuf,
    pub(crate) hold_dir: PathBuf,
    /// Added to every event about this caller's freezes.
    pub(crate) event_tag: Option<String>,
}

impl Settings {
    /// The holder executable to start when none is running.
    pub(crate) fn holder(&self) -> PathBuf {
        client::executable(self.holder.as_deref())
    }
}
