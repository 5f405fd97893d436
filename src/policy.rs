//! Who may call, and which filesystems may never be frozen.

use rustix::thread::CapabilitySet;

use crate::error::{Error, Result};
use crate::os::mounts::{Device, MountId, describe};
use crate::os::target::{Target, identity_of};

/// The filesystems AdvFS refuses to freeze, by name.
pub(crate) const PROTECTED_NAMES: [&str; 3] = ["/", "/usr", "/var"];

/// euid 0, or `CAP_SYS_ADMIN` in the effective set (what FIFREEZE itself needs).
pub(crate) fn caller_is_privileged() -> bool {
    rustix::process::geteuid().is_root()
        || rustix::thread::capabilities(None)
            .map(|caps| caps.effective.contains(CapabilitySet::SYS_ADMIN))
            .unwrap_or(false)
}

/// `Err(NotPrivileged)` unless [`caller_is_privileged`].
pub(crate) fn require_privilege() -> Result<()> {
    if caller_is_privileged() {
        Ok(())
    } else {
        Err(Error::NotPrivileged)
    }
}

/// Which protected name the target *is* (same inode as `/`, `/usr` or
/// `/var`): `//usr/.`, `/usr/../var`, a symlink to `/var`, a bind mount of
/// `/usr` all land here. Such a path names its filesystem even when it is not
/// a mount root, as on AdvFS.
pub(crate) fn protected_name_of(target: &Target) -> Option<&'static str> {
    PROTECTED_NAMES
        .into_iter()
        .find(|name| identity_of(name).is_some_and(|facts| facts.identity == target.facts.identity))
}

/// The superblocks that are never frozen: those of `/`, `/usr`, `/var` and
/// the state directory, resolved once per FREEZE (however many filesystems
/// it freezes).
pub(crate) struct ProtectedSuperblocks(Vec<(String, Device)>);

impl ProtectedSuperblocks {
    /// Resolves them now.
    pub(crate) fn resolve(state_dir_mount_id: MountId) -> ProtectedSuperblocks {
        let named = PROTECTED_NAMES.into_iter().filter_map(|name| {
            Some((
                format!("{name} (its filesystem is never frozen)"),
                identity_of(name)?.mount_id,
            ))
        });
        let state = (
            "the filesystem holding the state directory".to_string(),
            state_dir_mount_id,
        );
        ProtectedSuperblocks(
            named
                .chain([state])
                .filter_map(|(what, id)| Some((what, describe(id).ok()?.device)))
                .collect(),
        )
    }

    /// Refuses `device`, reached through `path`, if it is one of them.
    pub(crate) fn refuse(&self, path: &std::path::Path, device: Device) -> Result<()> {
        match self.0.iter().find(|(_, d)| *d == device) {
            Some((what, _)) => Err(Error::Protected {
                path: path.to_path_buf(),
                what: what.clone(),
            }),
            None => Ok(()),
        }
    }
}
