//! QUERY: is a filesystem frozen through freezefs? Answered from its record;
//! a record that is over (see [`Over::of`]) is ended on the way and reported
//! as no freeze.

use std::os::fd::AsFd;
use std::path::Path;

use crate::error::Result;
use crate::keep::end::end_if_over;
use crate::ops::freezer::Freezer;
use crate::ops::resolve::Resolved;
use crate::os::mounts::Device;
use crate::os::target::Target;
use crate::store::liveness;
use crate::store::record::{Phase, Record};
use crate::store::state_dir::StateDir;

/// QUERY: frozen (not freezing, not thawing) through freezefs.
pub(crate) fn is_frozen(freezer: &Freezer, named: &Resolved) -> Result<bool> {
    let record = live_record(freezer, named.device(), &named.target)?;
    Ok(record.is_some_and(|r| r.phase == Phase::Frozen))
}

/// The record of a live freeze of `device`; one that is over is ended
/// (thawed through `target`, removed) and reported as none.
pub(crate) fn live_record(
    freezer: &Freezer,
    device: Device,
    target: &Target,
) -> Result<Option<Record>> {
    let Some(dir) = StateDir::open(&freezer.state_dir, false)? else {
        return Ok(None);
    };
    let Some(record) = dir.read(device)? else {
        return Ok(None);
    };
    if liveness::is_over(&record) {
        let mount_fd = target.open_for_ioctl()?;
        end_if_over(
            &dir,
            device,
            record.generation,
            mount_fd.as_fd(),
            false,
            true,
        )?;
        return Ok(None);
    }
    Ok(Some(record))
}

/// A record found over while listing: reach its filesystem through the
/// recorded mount point (checking it is still that superblock) and end it;
/// a record of another boot whose mount is gone is only removed.
pub(crate) fn end_by_mount_point(dir: &StateDir, record: &Record) {
    let reached = Target::open(Path::new(&record.mount_point))
        .ok()
        .filter(|target| target.mount().map(|m| m.device).ok() == Some(record.device))
        .and_then(|target| target.open_for_ioctl().ok());
    match reached {
        Some(mount_fd) => {
            let _ = end_if_over(
                dir,
                record.device,
                record.generation,
                mount_fd.as_fd(),
                false,
                true,
            );
        }
        None if record.boot_id != crate::os::process::boot_id() => {
            let _ = dir.remove(record.device);
        }
        None => {}
    }
}
