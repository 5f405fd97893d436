//! What is frozen, by whom, until when: one filesystem, or all of them.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Result;
use crate::ops::freezer::Freezer;
use crate::ops::query;
use crate::ops::resolve::Resolved;
use crate::os::mounts::Device;
use crate::os::process::now_boot_ns;
use crate::store::liveness;
use crate::store::record::{Phase, Record};
use crate::store::state_dir::StateDir;
use crate::timeout::Timeout;

/// Where a filesystem is in a freeze (Linux `freeze_super` stages; NetBSD
/// fstrans NORMAL/SUSPENDING/SUSPENDED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeState {
    /// Not frozen through freezefs.
    Thawed,
    /// Flushing before FIFREEZE: writes still flow. QUERY says 0.
    Freezing,
    /// Frozen. QUERY says 1.
    Frozen,
}

/// The state of one filesystem's freeze.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Thawed, freezing or frozen.
    pub state: FreezeState,
    /// The mount point (the one it was frozen through, when frozen).
    pub mount_point: PathBuf,
    /// The superblock's device.
    pub device: Device,
    /// The filesystem type.
    pub fs_type: String,
    /// The process that froze it.
    pub pid: Option<u32>,
    /// When it was frozen (wall clock).
    pub frozen_since: Option<SystemTime>,
    /// Its timeout: `Seconds(n)` or `Never`; `None` when thawed.
    pub timeout: Option<Timeout>,
    /// Time until the deadline; `None` without a timeout or when thawed.
    pub time_left: Option<Duration>,
    /// The holder process keeping it.
    pub holder_pid: Option<u32>,
}

impl Status {
    fn thawed(mount_point: PathBuf, device: Device, fs_type: String) -> Status {
        Status {
            state: FreezeState::Thawed,
            mount_point,
            device,
            fs_type,
            pid: None,
            frozen_since: None,
            timeout: None,
            time_left: None,
            holder_pid: None,
        }
    }

    fn from_record(record: &Record, now_boot: u64) -> Status {
        Status {
            state: match record.phase {
                Phase::Freezing => FreezeState::Freezing,
                Phase::Frozen => FreezeState::Frozen,
                // Being thawed by a live process: as good as thawed.
                Phase::Thawing => FreezeState::Thawed,
            },
            mount_point: record.mount_point.clone(),
            device: record.device,
            fs_type: record.fs_type.clone(),
            pid: Some(record.pid),
            frozen_since: Some(UNIX_EPOCH + Duration::from_nanos(record.frozen_at_unix_ns)),
            timeout: Some(record.timeout_s.map_or(Timeout::Never, Timeout::Seconds)),
            time_left: record
                .deadline_boot_ns
                .map(|d| Duration::from_nanos(d.saturating_sub(now_boot))),
            holder_pid: record.holder_pid,
        }
    }
}

/// The state of the filesystem `named` names.
pub(crate) fn status(freezer: &Freezer, named: &Resolved) -> Result<Status> {
    let mount = &named.mount;
    match query::live_record(freezer, mount.device, &named.target)? {
        Some(record) => Ok(Status::from_record(&record, now_boot_ns())),
        None => Ok(Status::thawed(
            mount.mount_point.clone(),
            mount.device,
            mount.fs_type.clone(),
        )),
    }
}

/// Every filesystem frozen (or freezing) through the freezer's state
/// directory, by mount point; freezes that are over are ended on the way.
pub(crate) fn list(freezer: &Freezer) -> Result<Vec<Status>> {
    let Some(dir) = StateDir::open(freezer.state_dir(), false)? else {
        return Ok(Vec::new());
    };
    let mut all = Vec::new();
    for device in dir.recorded_devices()? {
        let Some(record) = dir.read(device)? else {
            continue;
        };
        if liveness::is_over(&record) {
            query::end_by_mount_point(&dir, &record);
            continue;
        }
        all.push(Status::from_record(&record, now_boot_ns()));
    }
    all.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    Ok(all)
}
