//! FREEZE, step by step: checks, holder handoff, record, flush, FIFREEZE.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::freezer::{Freezer, Named, Stale, staleness};
use crate::holder;
use crate::keeper::Watch;
use crate::mounts::{Device, MountTable};
use crate::policy;
use crate::process::{self, now_boot_ns, now_unix_ns};
use crate::record::{Phase, Record};
use crate::state::StateDir;
use crate::sys;
use crate::target::Target;
use crate::timeout::Timeout;
use crate::timer;

/// A freeze this call made.
pub(crate) struct Frozen {
    pub(crate) device: Device,
    pub(crate) generation: u64,
    /// The fd the freeze was made through (opened before FIFREEZE).
    pub(crate) mount_fd: OwnedFd,
}

impl Freezer {
    /// Flushes and freezes the filesystem whose mount point is `path`.
    ///
    /// Errors: see [`Error`]; nothing is left frozen or recorded on error.
    pub fn freeze(&self, path: impl AsRef<Path>, timeout: Timeout) -> Result<()> {
        self.freeze_path(path.as_ref(), timeout).map(drop)
    }

    /// Freezes the filesystem that `fd` lies on: any fd inside it, as the
    /// kernel's FIFREEZE accepts (the mount-point rule does not apply).
    pub fn freeze_fd(&self, fd: BorrowedFd<'_>, timeout: Timeout) -> Result<()> {
        policy::require_privilege()?;
        let (named, protected) = named_fd(fd)?;
        let path = named.mount.mount_point.clone();
        self.freeze_named(named, protected, &path, timeout)
            .map(drop)
    }

    pub(crate) fn freeze_path(&self, path: &Path, timeout: Timeout) -> Result<Frozen> {
        policy::require_privilege()?;
        let (named, protected) = self.named(path)?;
        self.freeze_named(named, protected, path, timeout)
    }

    fn freeze_named(
        &self,
        named: Named,
        protected: Option<&'static str>,
        path: &Path,
        timeout: Timeout,
    ) -> Result<Frozen> {
        if let Some(name) = protected {
            return Err(Error::Protected {
                path: path.to_path_buf(),
                what: name.to_string(),
            });
        }
        let dir = StateDir::open(&self.state_dir, true)?
            .ok_or_else(|| Error::os("state directory", rustix::io::Errno::NOENT))?;
        let device = named.mount.device;
        policy::refuse_protected_superblock(&named.target, device, &named.table, dir.mount_id()?)?;
        let timeout_s = timeout.resolve(&self.sysconfigtab)?;
        let mount_fd = named.target.open_for_ioctl()?;

        let _lock = dir.lock(device)?;
        dir.sweep_orphans();
        match dir.read(device) {
            Ok(Some(old)) => match staleness(&old, now_boot_ns()) {
                None => return Err(Error::AlreadyFrozen(path.to_path_buf())),
                Some(Stale::OtherBoot) => {}
                Some(Stale::Expired | Stale::Abandoned) => {
                    let _ = sys::fithaw(&mount_fd);
                }
            },
            Ok(None) => {}
            // Overwritten below; the kernel says whether it is frozen.
            Err(Error::CorruptRecord { .. }) => {}
            Err(e) => return Err(e),
        }

        let (pid, pid_start) = process::current();
        let started = now_boot_ns();
        let deadline_from = |boot: u64| timeout_s.map(|s| boot + u64::from(s) * 1_000_000_000);
        let mut record = Record {
            generation: process::fresh_generation(),
            boot_id: process::boot_id().to_string(),
            device,
            fs_type: named.mount.fs_type.clone(),
            mount_point: named.mount.mount_point.clone(),
            phase: Phase::Freezing,
            pid,
            pid_start,
            uid: rustix::process::getuid().as_raw(),
            frozen_at_unix_ns: now_unix_ns(),
            frozen_at_boot_ns: started,
            timeout_s,
            deadline_boot_ns: deadline_from(started),
            holder_pid: None,
        };
        // The holder takes the freeze before its record exists and before
        // FIFREEZE, and keeps our connection open until we are done: a
        // caller killed at any point leaves a freeze that is kept to its
        // deadline or undone, never one that nobody keeps.
        let handoff = holder::hold(
            &dir,
            &self.holder(),
            device,
            record.generation,
            mount_fd.as_fd(),
        )?;
        record.holder_pid = Some(handoff.holder_pid);
        dir.write(&record)?;

        // Flush while writers still flow, so FIFREEZE only waits for the residue.
        let _ = rustix::fs::syncfs(&mount_fd);
        if let Err(e) = sys::fifreeze(&mount_fd) {
            let _ = dir.remove(device);
            return Err(match e.raw_os_error() {
                Some(libc::EBUSY) => Error::AlreadyFrozen(path.to_path_buf()),
                Some(libc::EOPNOTSUPP) => Error::Unsupported {
                    path: path.to_path_buf(),
                    fs_type: named.mount.fs_type.clone(),
                },
                _ => Error::os(format!("{}: FIFREEZE", path.display()), e),
            });
        }

        // The freeze window: from here on only the state directory, which is
        // never on a frozen filesystem, is touched; no path lookup.
        let frozen_at = now_boot_ns();
        record.phase = Phase::Frozen;
        record.frozen_at_boot_ns = frozen_at;
        record.frozen_at_unix_ns = now_unix_ns();
        record.deadline_boot_ns = deadline_from(frozen_at);
        let dir = Arc::new(dir);
        let kept = dir
            .write(&record)
            .and_then(|()| match record.deadline_boot_ns {
                None => Ok(()),
                Some(deadline_boot_ns) => timer::arm(Watch {
                    dir: Arc::clone(&dir),
                    device,
                    generation: record.generation,
                    wake_at: Some(deadline_boot_ns),
                    attempt: None,
                    seen: true,
                    mount_fd: mount_fd
                        .try_clone()
                        .map_err(|e| Error::os("dup mount fd", e))?,
                })
                .map_err(|e| Error::os("starting the helper thaw thread", e)),
            });
        if let Err(e) = kept {
            // A freeze whose deadline cannot be kept is not made at all.
            let _ = sys::fithaw(&mount_fd);
            let _ = dir.remove(device);
            return Err(e);
        }
        // Done: the holder now keeps the freeze by its record alone.
        drop(handoff);
        Ok(Frozen {
            device,
            generation: record.generation,
            mount_fd,
        })
    }
}

/// Resolves an fd to the filesystem it lies on.
pub(crate) fn named_fd(fd: BorrowedFd<'_>) -> Result<(Named, Option<&'static str>)> {
    let target = Target::from_fd(fd)?;
    let protected = policy::protected_name_of(&target);
    let table = MountTable::read().map_err(|e| Error::os("/proc/self/mountinfo", e))?;
    let mount = target.mount(&table)?.clone();
    Ok((
        Named {
            target,
            mount,
            table,
        },
        protected,
    ))
}
