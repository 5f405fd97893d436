//! From what a caller names (a path, or any fd inside a filesystem) to the
//! filesystem it names: the one resolved-target type every operation takes.

use std::os::fd::{BorrowedFd, OwnedFd};

use rustix::fs::FileType;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::os::mounts::{Device, MountEntry};
use crate::os::target::Target;
use crate::policy;

/// A filesystem a caller named, held open.
pub(crate) struct Resolved {
    /// The name as the caller gave it (for an fd, its mount point), for messages.
    pub(crate) given: PathBuf,
    /// The object named, held open.
    pub(crate) target: Target,
    /// The mount it lies on.
    pub(crate) mount: MountEntry,
    /// Which of `/`, `/usr`, `/var` it is under some name, if any.
    pub(crate) protected: Option<&'static str>,
}

/// The mount point of the mount `path` lies on.
pub(crate) fn mount_point_of(path: &Path) -> Result<PathBuf> {
    Ok(Target::open(path)?.mount()?.mount_point)
}

impl Resolved {
    /// Resolves `path`: a mount root, or one of `/`, `/usr`, `/var` under any
    /// name (`//usr/.`, a symlink), which names its filesystem as on AdvFS.
    /// Anything else is [`Error::NotMountPoint`].
    pub(crate) fn path(path: &Path) -> Result<Resolved> {
        Resolved::of_target(path, Target::open(path)?)
    }

    /// [`Resolved::path`] for FREEZE and THAW (see [`Target::open_to_change`]).
    pub(crate) fn path_to_change(path: &Path) -> Result<Resolved> {
        Resolved::of_target(path, Target::open_to_change(path)?)
    }

    fn of_target(path: &Path, target: Target) -> Result<Resolved> {
        // A mount root needs no name check: FREEZE refuses a protected one
        // by its superblock.
        let protected = if target.facts.is_mount_root {
            None
        } else {
            let name = policy::protected_name_of(&target);
            if name.is_none() {
                return Err(Error::NotMountPoint(path.to_path_buf()));
            }
            name
        };
        let mount = target.mount()?;
        Ok(Resolved {
            given: path.to_path_buf(),
            target,
            mount,
            protected,
        })
    }

    /// Resolves an fd to the filesystem it lies on (any fd inside it, as
    /// FIFREEZE accepts: the mount-point rule does not apply).
    pub(crate) fn fd(fd: BorrowedFd<'_>) -> Result<Resolved> {
        let target = Target::from_fd(fd)?;
        let protected = policy::protected_name_of(&target);
        let mount = target.mount()?;
        Ok(Resolved {
            given: mount.mount_point.clone(),
            target,
            mount,
            protected,
        })
    }

    /// A directory on the filesystem, for the holder's waiter (see
    /// [`crate::keep::kernel_truth`]): the target when it is one, else its
    /// mount point when that still names the same mount. Opened before any
    /// freeze (`O_PATH`: nothing is read); `None` when there is none.
    pub(crate) fn directory_fd(&self) -> Option<OwnedFd> {
        let is_dir = |t: &Target| t.facts.file_type == FileType::Directory;
        let dup = |t: &Target| rustix::io::fcntl_dupfd_cloexec(t.fd(), 0).ok();
        if is_dir(&self.target) {
            return dup(&self.target);
        }
        let root = Target::open(&self.mount.mount_point).ok()?;
        let same_mount = root.facts.mount_id == self.target.facts.mount_id;
        (is_dir(&root) && same_mount).then(|| dup(&root)).flatten()
    }

    /// The superblock: what a freeze belongs to.
    pub(crate) fn device(&self) -> Device {
        self.mount.device
    }
}
