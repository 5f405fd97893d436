//! Who may call, and which filesystems may never be frozen.

use rustix::thread::CapabilitySet;

use crate::error::{Error, Result};
use crate::os::mounts::{Device, MountId, superblock_of};
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

/// Why a filesystem is not frozen as any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protection {
    /// It is `/`, `/usr` or `/var`: AdvFS refuses it; under
    /// [`ProtectedNames::FreezeCapped`] it is frozen with a capped deadline.
    Named(&'static str),
    /// It holds the state directory: freezing it would freeze what keeps
    /// the freeze. Always refused.
    HoldsStateDir,
}

/// What a FREEZE does with `/`, `/usr` and `/var`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProtectedNames {
    /// AdvFS's contract: the API and the commands.
    Refuse,
    /// The kernel's contract with a deadline: the shim, whose raw-ioctl
    /// callers (hypervisor agents) must freeze the root disk.
    FreezeCapped,
}

/// The superblocks of `/`, `/usr`, `/var` and the state directory,
/// resolved once per FREEZE (however many filesystems it freezes).
pub(crate) struct ProtectedSuperblocks(Vec<(Protection, Device)>);

impl ProtectedSuperblocks {
    /// Resolves them now.
    pub(crate) fn resolve(state_dir_mount_id: MountId) -> ProtectedSuperblocks {
        let named = PROTECTED_NAMES
            .into_iter()
            .filter_map(|name| Some((Protection::Named(name), identity_of(name)?.mount_id)));
        let state = (Protection::HoldsStateDir, state_dir_mount_id);
        ProtectedSuperblocks(
            named
                .chain([state])
                .filter_map(|(why, id)| Some((why, superblock_of(id).ok()?.device)))
                .collect(),
        )
    }

    /// Why `device` is protected: every reason that holds.
    pub(crate) fn of(&self, device: Device) -> impl Iterator<Item = Protection> + '_ {
        self.0
            .iter()
            .filter(move |(_, d)| *d == device)
            .map(|(why, _)| *why)
    }
}
