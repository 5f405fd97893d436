//! FREEZE, THAW and QUERY: the AdvFS contract, step by step.

use std::path::{Path, PathBuf};

use crate::config;
use crate::error::{Error, Result};
use crate::events::{self, Event, Kind};
use crate::holder;
use crate::mounts::{Device, MountEntry};
use crate::policy;
use crate::process::{self, now_boot_ns};
use crate::record::{Phase, Record};
use crate::state::{self, StateDir};
use crate::sys;
use crate::target::Target;
use crate::timer;

/// Freezes, thaws and queries filesystems, keeping shared state in one
/// state directory and reading default timeouts from one sysconfigtab file.
///
/// [`Freezer::from_env`] is what the C API and the free functions use; build
/// one with other paths to keep tests or tools apart from the system state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freezer {
    pub(crate) state_dir: PathBuf,
    pub(crate) sysconfigtab: PathBuf,
    holder: Option<PathBuf>,
}

/// A path (or fd) resolved to the filesystem it names.
pub(crate) struct Named {
    pub(crate) target: Target,
    pub(crate) mount: MountEntry,
}

/// Why a record no longer describes a live freeze.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stale {
    /// Written during an earlier boot: nothing it says holds.
    OtherBoot,
    /// Its deadline has passed: whoever notices first enforces it.
    Expired,
    /// Its freezer died before FIFREEZE returned: the freeze never reached
    /// anyone, so it is undone.
    Abandoned,
    /// Its thawer died between FITHAW and removing the record: the thaw is
    /// finished.
    HalfThawed,
}

pub(crate) fn staleness(record: &Record, now_boot: u64) -> Option<Stale> {
    if record.boot_id != process::boot_id() {
        Some(Stale::OtherBoot)
    } else if record.deadline_boot_ns.is_some_and(|d| d <= now_boot) {
        Some(Stale::Expired)
    } else if record.phase == Phase::Freezing && !process::is_alive(record.pid, record.pid_start) {
        Some(Stale::Abandoned)
    } else if record.phase == Phase::Thawing
        && !record
            .thawer
            .is_some_and(|(pid, start)| process::is_alive(pid, start))
    {
        Some(Stale::HalfThawed)
    } else {
        None
    }
}

impl Default for Freezer {
    fn default() -> Self {
        Freezer::new()
    }
}

impl Freezer {
    /// `/run/freezefs` and `/etc/sysconfigtab`, whatever the environment says.
    pub fn new() -> Freezer {
        Freezer {
            state_dir: PathBuf::from(state::RUNDIR),
            sysconfigtab: PathBuf::from(config::SYSCONFIGTAB),
            holder: None,
        }
    }

    /// The paths in force: `FREEZEFS_RUNDIR` and `FREEZEFS_SYSCONFIGTAB`
    /// when set (ignored under `AT_SECURE`), else the system ones.
    pub fn from_env() -> Freezer {
        Freezer {
            state_dir: state::rundir_path(),
            sysconfigtab: config::sysconfigtab_path(),
            holder: None,
        }
    }

    /// Uses another state directory.
    pub fn with_state_dir(mut self, path: impl Into<PathBuf>) -> Freezer {
        self.state_dir = path.into();
        self
    }

    /// Reads the default timeout from another file.
    pub fn with_sysconfigtab(mut self, path: impl Into<PathBuf>) -> Freezer {
        self.sysconfigtab = path.into();
        self
    }

    /// Starts this holder executable rather than the one found by default
    /// (`$FREEZEFS_HOLDER`, next to the library, the installed one).
    pub fn with_holder(mut self, path: impl Into<PathBuf>) -> Freezer {
        self.holder = Some(path.into());
        self
    }

    /// The holder executable this freezer starts when none is running.
    pub fn holder(&self) -> PathBuf {
        holder::executable(self.holder.as_deref())
    }

    /// The state directory this freezer uses.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// The sysconfigtab file this freezer reads.
    pub fn sysconfigtab(&self) -> &Path {
        &self.sysconfigtab
    }

    /// Resolves `path` to the filesystem it names: a mount root, or one of
    /// `/`, `/usr`, `/var` under any name. Returns the protected name too.
    pub(crate) fn named(&self, path: &Path) -> Result<(Named, Option<&'static str>)> {
        let target = Target::open(path)?;
        // A mount root needs no name check: FREEZE refuses a protected one
        // by its superblock. Other paths name a filesystem only if they are
        // /, /usr or /var under some spelling.
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
        Ok((Named { target, mount }, protected))
    }

    /// Thaws the filesystem whose mount point is `path`. Always issues
    /// FITHAW, so it also rescues a freeze made by another tool.
    pub fn thaw(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        policy::require_privilege()
            .and_then(|()| self.named(path))
            .and_then(|(named, _)| self.thaw_named(&named, path))
            .inspect_err(|e| events::failed(path, e))
    }

    /// Thaws the filesystem that `fd` lies on (any fd inside it).
    pub fn thaw_fd(&self, fd: std::os::fd::BorrowedFd<'_>) -> Result<()> {
        policy::require_privilege()
            .and_then(|()| crate::freeze::named_fd(fd))
            .and_then(|(named, _)| {
                let path = named.mount.mount_point.clone();
                self.thaw_named(&named, &path)
            })
            .inspect_err(|e| events::failed(Path::new("(fd)"), e))
    }

    /// Thaws several filesystems. Every one is thawed that can be (a thaw
    /// never stops half way: leaving one frozen is the worse outcome); the
    /// first failure, if any, is returned.
    pub fn thaw_all<P: AsRef<Path>>(&self, paths: &[P]) -> Result<()> {
        policy::require_privilege()?;
        if paths.is_empty() {
            return Err(Error::InvalidArgument("no mount point given"));
        }
        let mut first_error = None;
        let mut done: Vec<Device> = Vec::new();
        for path in paths {
            let path = path.as_ref();
            let result = self.named(path).and_then(|(named, _)| {
                if done.contains(&named.mount.device) {
                    return Ok(());
                }
                done.push(named.mount.device);
                self.thaw_named(&named, path)
            });
            if let Err(e) = result {
                events::failed(path, &e);
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn thaw_named(&self, named: &Named, path: &Path) -> Result<()> {
        let device = named.mount.device;
        let mount_fd = named.target.open_for_ioctl()?;
        let dir = StateDir::open(&self.state_dir, false)?;
        let _lock = dir.as_ref().map(|d| d.lock(device)).transpose()?;
        let record = dir.as_ref().and_then(|d| d.read(device).ok().flatten());
        if let (Some(dir), Some(r)) = (&dir, &record) {
            dir.mark_thawing(r)?;
        }
        let thawed = sys::fithaw(&mount_fd);
        let not_frozen = |e: &std::io::Error| e.raw_os_error() == Some(libc::EINVAL);
        if thawed.is_ok() || thawed.as_ref().is_err_and(not_frozen) {
            // Thawed now, or not frozen at all: either way no freeze remains.
            if let Some(dir) = &dir {
                dir.remove(device)?;
            }
            timer::forget(device);
        }
        match thawed {
            Ok(()) => {
                match &record {
                    Some(r) => events::about_record(Kind::Thawed, r, "thawed on request"),
                    None => events::emit(&Event {
                        kind: Kind::Thawed,
                        mount_point: &named.mount.mount_point,
                        device: Some(device),
                        pid: std::process::id(),
                        uid: rustix::process::getuid().as_raw(),
                        timeout: None,
                        reason: "thawed on request (frozen by another tool)",
                    }),
                }
                Ok(())
            }
            Err(e) if not_frozen(&e) => Err(Error::NotFrozen(path.to_path_buf())),
            Err(e) => Err(Error::os(format!("{}: FITHAW", path.display()), e)),
        }
    }

    /// True when the filesystem whose mount point is `path` is frozen through
    /// freezefs (by any process). A freeze still flushing is not frozen yet.
    /// Never freezes anything; thaws only a freeze whose deadline has passed.
    pub fn is_frozen(&self, path: impl AsRef<Path>) -> Result<bool> {
        let (target, mount) = self.filesystem(path.as_ref())?;
        let record = self.live_record(mount.device, &target)?;
        Ok(record.is_some_and(|r| r.phase == Phase::Frozen))
    }

    /// The privilege check, then the filesystem `path` names.
    pub(crate) fn filesystem(&self, path: &Path) -> Result<(Target, MountEntry)> {
        policy::require_privilege()?;
        let (named, _) = self.named(path)?;
        Ok((named.target, named.mount))
    }

    /// The record of a live freeze of `device`; a stale one is enforced
    /// (thawed through `target`, removed) and reported as none.
    pub(crate) fn live_record(&self, device: Device, target: &Target) -> Result<Option<Record>> {
        let Some(dir) = StateDir::open(&self.state_dir, false)? else {
            return Ok(None);
        };
        let Some(record) = dir.read(device)? else {
            return Ok(None);
        };
        if is_stale(&record) {
            enforce(&dir, device, record.generation, target)?;
            return Ok(None);
        }
        Ok(Some(record))
    }
}

/// True when a record no longer describes a live freeze.
pub(crate) fn is_stale(record: &Record) -> bool {
    staleness(record, now_boot_ns()).is_some()
}

/// Ends a stale freeze that a QUERY noticed: under the lock, and only if the
/// record still has the generation that was seen stale.
pub(crate) fn enforce(
    dir: &StateDir,
    device: Device,
    generation: u64,
    target: &Target,
) -> Result<()> {
    let mount_fd = target.open_for_ioctl()?;
    let _lock = dir.lock(device)?;
    let Some(record) = dir.read(device)? else {
        return Ok(());
    };
    let Some(why) = staleness(&record, now_boot_ns()) else {
        return Ok(());
    };
    if record.generation != generation {
        return Ok(());
    }
    if why != Stale::OtherBoot {
        let _ = sys::fithaw(&mount_fd);
    }
    dir.remove(device)?;
    match why {
        Stale::Expired => events::about_record(
            Kind::Timeout,
            &record,
            "deadline passed; thawed by a later call",
        ),
        Stale::Abandoned => events::about_record(
            Kind::Abandoned,
            &record,
            "the freezer died before the freeze completed",
        ),
        Stale::HalfThawed => events::about_record(
            Kind::Thawed,
            &record,
            "finished a thaw whose caller died halfway",
        ),
        Stale::OtherBoot => {}
    }
    Ok(())
}
