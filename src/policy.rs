//! Who may call, and which filesystems may never be frozen.

use rustix::thread::CapabilitySet;

use crate::error::{Error, Result};
use crate::mounts::{Device, MountId, describe};
use crate::target::{Target, identity_of};

/// The filesystems AdvFS refuses to freeze, by name.
pub const PROTECTED_NAMES: [&str; 3] = ["/", "/usr", "/var"];

/// euid 0, or `CAP_SYS_ADMIN` in the effective set (what FIFREEZE itself needs).
pub fn caller_is_privileged() -> bool {
    rustix::process::geteuid().is_root()
        || rustix::thread::capabilities(None)
            .map(|caps| caps.effective.contains(CapabilitySet::SYS_ADMIN))
            .unwrap_or(false)
}

/// `Err(NotPrivileged)` unless [`caller_is_privileged`].
pub fn require_privilege() -> Result<()> {
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
pub fn protected_name_of(target: &Target) -> Option<&'static str> {
    PROTECTED_NAMES
        .into_iter()
        .find(|name| identity_of(name).is_some_and(|facts| facts.identity == target.facts.identity))
}

/// Refuses to freeze a superblock that holds `/`, `/usr`, `/var` or the state
/// directory, whatever name the caller reached it by.
pub fn refuse_protected_superblock(
    target: &Target,
    device: Device,
    state_dir_mount_id: MountId,
) -> Result<()> {
    let protected = PROTECTED_NAMES
        .into_iter()
        .filter_map(|name| Some((name.to_string(), identity_of(name)?.mount_id)))
        .chain([(
            "the filesystem holding the state directory".to_string(),
            state_dir_mount_id,
        )]);
    for (what, mount_id) in protected {
        if describe(mount_id).ok().map(|m| m.device) == Some(device) {
            let what = if what.starts_with('/') {
                format!("{what} (its filesystem is never frozen)")
            } else {
                what
            };
            return Err(Error::Protected {
                path: target.path.clone(),
                what,
            });
        }
    }
    Ok(())
}
