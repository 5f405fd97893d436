//! THAW: ends the freezefs freeze on record, or rescues a freeze made by
//! another tool (FITHAW whoever froze it).

use std::path::Path;

use crate::error::{Error, Result};
use crate::events::{self, Event, Kind};
use crate::keep::helper_thread;
use crate::ops::freezer::Freezer;
use crate::ops::resolve::Resolved;
use crate::os::mounts::Device;
use crate::os::syscalls;
use crate::store::state_dir::StateDir;

/// Thaws one filesystem, under its lock: the record is marked `thawing`
/// first, so that a thaw killed halfway never leaves a record that says
/// `frozen`.
pub(crate) fn thaw(freezer: &Freezer, named: &Resolved) -> Result<()> {
    let device = named.device();
    let mount_fd = named.target.open_for_ioctl()?;
    let dir = StateDir::open(&freezer.state_dir, false)?;
    let _lock = dir.as_ref().map(|d| d.lock(device)).transpose()?;
    let record = dir.as_ref().and_then(|d| d.read(device).ok().flatten());
    if let (Some(dir), Some(r)) = (&dir, &record) {
        dir.mark_thawing(r)?;
    }
    let thawed = syscalls::fithaw(&mount_fd);
    let not_frozen = |e: &std::io::Error| e.raw_os_error() == Some(libc::EINVAL);
    if thawed.is_ok() || thawed.as_ref().is_err_and(not_frozen) {
        // Thawed now, or not frozen at all: either way no freeze remains.
        if let Some(dir) = &dir {
            dir.remove(device)?;
        }
        helper_thread::forget(device);
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
        Err(e) if not_frozen(&e) => Err(Error::NotFrozen(named.given.clone())),
        Err(e) => Err(Error::os(format!("{}: FITHAW", named.given.display()), e)),
    }
}

/// Thaws every filesystem of `paths` that can be (two names of one count
/// once), reporting each failure; returns the first.
pub(crate) fn thaw_all<P: AsRef<Path>>(freezer: &Freezer, paths: &[P]) -> Result<()> {
    let mut first_error = None;
    let mut done: Vec<Device> = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let result = Resolved::path(path).and_then(|named| {
            if done.contains(&named.device()) {
                return Ok(());
            }
            done.push(named.device());
            thaw(freezer, &named)
        });
        if let Err(e) = result {
            events::failed(path, &e);
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
