//! FREEZE, one filesystem or several all-or-nothing (VxFS `VX_FREEZE_ALL`):
//! check everything and open every fd first, hand each freeze to the holder,
//! record it, flush all in parallel while writes still flow, then FIFREEZE
//! them in parallel (a mount only after the mounts inside it), under one
//! deadline. On any
//! failure the ones already frozen are thawed, newest first: nothing is left.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::events::{self, Event, Kind, Logger};
use crate::freezer::{Freezer, Named, Stale, staleness};
use crate::holder::{self, Handoff, Pending};
use crate::keeper::Watch;
use crate::mounts::Device;
use crate::policy;
use crate::process::{self, now_boot_ns, now_unix_ns};
use crate::record::{Phase, Record};
use crate::state::{SbLock, StateDir};
use crate::sys;
use crate::target::Target;
use crate::timeout::Timeout;
use crate::timer;
use crate::window;

/// A freeze this call made.
pub(crate) struct Frozen {
    pub(crate) device: Device,
    pub(crate) generation: u64,
    /// The fd the freeze was made through (opened before FIFREEZE).
    pub(crate) mount_fd: OwnedFd,
}

/// One filesystem of a batch, from checks to FIFREEZE.
pub(crate) struct Member {
    pub(crate) path: PathBuf,
    pub(crate) named: Named,
    pub(crate) mount_fd: OwnedFd,
    pub(crate) record: Option<Record>,
    pending: Option<Pending>,
    handoff: Option<Handoff>,
}

impl Member {
    pub(crate) fn device(&self) -> Device {
        self.named.mount.device
    }
}

impl Freezer {
    /// Flushes and freezes the filesystem whose mount point is `path`.
    ///
    /// Errors: see [`Error`]; nothing is left frozen or recorded on error.
    pub fn freeze(&self, path: impl AsRef<Path>, timeout: Timeout) -> Result<()> {
        let path = path.as_ref();
        self.freeze_path(path, timeout)
            .map(drop)
            .inspect_err(|e| events::failed(path, e))
    }

    /// Freezes the filesystem that `fd` lies on: any fd inside it, as the
    /// kernel's FIFREEZE accepts (the mount-point rule does not apply).
    pub fn freeze_fd(&self, fd: BorrowedFd<'_>, timeout: Timeout) -> Result<()> {
        let result = policy::require_privilege()
            .and_then(|()| named_fd(fd))
            .and_then(|(named, protected)| {
                let path = named.mount.mount_point.clone();
                self.freeze_batch(vec![(path, named, protected)], timeout)
                    .map(drop)
            });
        result.inspect_err(|e| events::failed(Path::new("(fd)"), e))
    }

    /// Freezes several filesystems all or nothing, under one deadline. Two
    /// names of one filesystem count once; nested mounts freeze deepest
    /// first. On any failure nothing is left frozen and the first failure
    /// is returned.
    pub fn freeze_all<P: AsRef<Path>>(&self, paths: &[P], timeout: Timeout) -> Result<()> {
        let all = || -> Result<()> {
            policy::require_privilege()?;
            let mut members = Vec::with_capacity(paths.len());
            for path in paths {
                let path = path.as_ref();
                let (named, protected) = self.named(path)?;
                members.push((path.to_path_buf(), named, protected));
            }
            self.freeze_batch(members, timeout).map(drop)
        };
        all().inspect_err(|e| {
            let first = paths.first().map_or(Path::new(""), |p| p.as_ref());
            events::failed(first, e)
        })
    }

    /// [`Freezer::freeze_all`] for fds (any fd inside each filesystem), as
    /// VxFS's `VX_FREEZE_ALL` takes them.
    pub fn freeze_all_fds(&self, fds: &[BorrowedFd<'_>], timeout: Timeout) -> Result<()> {
        policy::require_privilege()?;
        let mut members = Vec::with_capacity(fds.len());
        for &fd in fds {
            let (named, protected) = named_fd(fd)?;
            members.push((named.mount.mount_point.clone(), named, protected));
        }
        self.freeze_batch(members, timeout).map(drop)
    }

    pub(crate) fn freeze_path(&self, path: &Path, timeout: Timeout) -> Result<Frozen> {
        policy::require_privilege()?;
        let (named, protected) = self.named(path)?;
        let mut frozen =
            self.freeze_batch(vec![(path.to_path_buf(), named, protected)], timeout)?;
        Ok(frozen.remove(0))
    }

    fn freeze_batch(
        &self,
        named: Vec<(PathBuf, Named, Option<&'static str>)>,
        timeout: Timeout,
    ) -> Result<Vec<Frozen>> {
        if named.is_empty() {
            return Err(Error::InvalidArgument("no mount point given"));
        }
        let dir = StateDir::open(&self.state_dir, true)?
            .ok_or_else(|| Error::os("state directory", rustix::io::Errno::NOENT))?;
        let protected_superblocks = policy::ProtectedSuperblocks::resolve(dir.mount_id()?);
        let mut members: Vec<Member> = Vec::with_capacity(named.len());
        for (path, named, protected) in named {
            if let Some(name) = protected {
                return Err(Error::Protected {
                    path,
                    what: name.to_string(),
                });
            }
            let device = named.mount.device;
            protected_superblocks.refuse(&path, device)?;
            if members.iter().any(|m| m.device() == device) {
                continue;
            }
            let mount_fd = named.target.open_for_ioctl()?;
            members.push(Member {
                path,
                named,
                mount_fd,
                record: None,
                pending: None,
                handoff: None,
            });
        }
        // Deepest first: a mount inside another freezes before its parent.
        members.sort_by_key(|m| std::cmp::Reverse(m.named.mount.mount_point.components().count()));
        let timeout_s = timeout.resolve(&self.sysconfigtab)?;

        // Locks in device order, so that concurrent batches cannot deadlock.
        let mut devices: Vec<Device> = members.iter().map(Member::device).collect();
        devices.sort();
        let _locks: Vec<SbLock> = devices
            .iter()
            .map(|&d| dir.lock(d))
            .collect::<Result<_>>()?;

        // Connected now: after FIFREEZE, reporting looks no path up.
        let logger = Logger::connect();
        // Likewise the helper thread exists before the freeze window.
        if timeout_s.is_some() {
            timer::start().map_err(|e| Error::os("starting the helper thaw thread", e))?;
        }
        let outcome = self.begin(&dir, &mut members, timeout_s).and_then(|()| {
            window::presync(&members);
            // The holders have had the flush's time to take the attempts.
            for m in &mut members {
                let handoff = m.pending.take().expect("sent in begin").answer(&dir)?;
                if let Some(record) = &mut m.record {
                    record.holder_pid = Some(handoff.holder_pid);
                }
                m.handoff = Some(handoff);
            }
            window::fifreeze_all(&mut members)
        });
        if let Err(e) = outcome {
            for m in &members {
                if m.record.is_some() {
                    let _ = dir.remove(m.device());
                }
            }
            return Err(e);
        }
        // The freeze window: from here on only the state directory, which is
        // never on a frozen filesystem, is touched; no path lookup.
        let frozen = commit(Arc::new(dir), &members, timeout_s)?;
        for m in &members {
            if let Some(record) = &m.record {
                logger.send(&Event {
                    kind: Kind::Frozen,
                    mount_point: &record.mount_point,
                    device: Some(record.device),
                    pid: record.pid,
                    uid: record.uid,
                    timeout: Some(timeout_s),
                    reason: "frozen on request",
                });
            }
        }
        Ok(frozen)
    }

    /// Checks for live freezes, hands each attempt to the holder, records it.
    fn begin(&self, dir: &StateDir, members: &mut [Member], timeout_s: Option<u32>) -> Result<()> {
        let exe = self.holder();
        let (pid, pid_start) = process::current();
        for m in members.iter_mut() {
            let device = m.device();
            match dir.read(device) {
                Ok(Some(old)) => match staleness(&old, now_boot_ns()) {
                    None => return Err(Error::AlreadyFrozen(m.path.clone())),
                    Some(Stale::OtherBoot) => {}
                    Some(Stale::Expired | Stale::Abandoned | Stale::HalfThawed) => {
                        let _ = sys::fithaw(&m.mount_fd);
                    }
                },
                Ok(None) => {}
                // Overwritten below; the kernel says whether it is frozen.
                Err(Error::CorruptRecord { .. }) => {}
                Err(e) => return Err(e),
            }
            let started = now_boot_ns();
            let record = Record {
                generation: process::fresh_generation(),
                boot_id: process::boot_id().to_string(),
                device,
                fs_type: m.named.mount.fs_type.clone(),
                mount_point: m.named.mount.mount_point.clone(),
                phase: Phase::Freezing,
                pid,
                pid_start,
                uid: rustix::process::getuid().as_raw(),
                frozen_at_unix_ns: now_unix_ns(),
                frozen_at_boot_ns: started,
                timeout_s,
                deadline_boot_ns: deadline(started, timeout_s),
                holder_pid: None,
                thawer: None,
            };
            // The holder takes the attempt before its record exists and
            // before FIFREEZE, and keeps our connection until we are done:
            // a caller killed at any point leaves a freeze that is kept to
            // its deadline or undone, never one that nobody keeps. Its
            // answer is read after the flush, just before FIFREEZE.
            m.pending = Some(holder::hold(
                dir,
                &exe,
                device,
                record.generation,
                m.mount_fd.as_fd(),
            )?);
            dir.write(&record)?;
            m.record = Some(record);
        }
        Ok(())
    }
}

fn deadline(from_boot_ns: u64, timeout_s: Option<u32>) -> Option<u64> {
    timeout_s.map(|s| from_boot_ns + u64::from(s) * 1_000_000_000)
}

/// Records every member frozen under one deadline and arms the helper
/// thread; if that fails, undoes every freeze.
fn commit(dir: Arc<StateDir>, members: &[Member], timeout_s: Option<u32>) -> Result<Vec<Frozen>> {
    let all_frozen = now_boot_ns();
    let common_deadline = deadline(all_frozen, timeout_s);
    let mut kept: Result<()> = Ok(());
    for m in members {
        let mut record = m.record.clone().expect("recorded in begin");
        record.phase = Phase::Frozen;
        record.deadline_boot_ns = common_deadline;
        kept = kept
            .and_then(|()| dir.write(&record))
            .and_then(|()| match common_deadline {
                None => Ok(()),
                Some(at) => timer::arm(Watch {
                    dir: Arc::clone(&dir),
                    device: m.device(),
                    generation: record.generation,
                    wake_at: Some(at),
                    attempt: None,
                    seen: true,
                    mount_fd: m
                        .mount_fd
                        .try_clone()
                        .map_err(|e| Error::os("dup mount fd", e))?,
                })
                .map_err(|e| Error::os("starting the helper thaw thread", e)),
            });
    }
    if let Err(e) = kept {
        // A freeze whose deadline cannot be kept is not made at all.
        for m in members.iter().rev() {
            let _ = sys::fithaw(&m.mount_fd);
            let _ = dir.remove(m.device());
            timer::forget(m.device());
        }
        return Err(e);
    }
    // Done: the holder now keeps each freeze by its record alone (dropping
    // the handoffs closes the connections).
    members
        .iter()
        .map(|m| {
            Ok(Frozen {
                device: m.device(),
                generation: m.record.as_ref().expect("recorded").generation,
                mount_fd: m
                    .mount_fd
                    .try_clone()
                    .map_err(|e| Error::os("dup mount fd", e))?,
            })
        })
        .collect()
}

/// Resolves an fd to the filesystem it lies on.
pub(crate) fn named_fd(fd: BorrowedFd<'_>) -> Result<(Named, Option<&'static str>)> {
    let target = Target::from_fd(fd)?;
    let protected = policy::protected_name_of(&target);
    let mount = target.mount()?;
    Ok((Named { target, mount }, protected))
}
