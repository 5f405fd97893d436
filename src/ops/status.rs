//! What is frozen, by whom, until when: one filesystem, or all of them.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::end_reason::EndReason;
use crate::error::{Error, Result};
use crate::ops::query;
use crate::ops::resolve::Resolved;
use crate::ops::settings::Settings;
use crate::os::mounts::{self, Device, MountTable};
use crate::os::process::{now_boot_ns, wall_time_of};
use crate::store::foreign_notes::{self, ForeignNote};
use crate::store::hold_notes::HoldBreakNote;
use crate::store::liveness;
use crate::store::record::{Phase, Record};
use crate::store::state_dir::StateDir;
use crate::timeout::Timeout;

/// Where a filesystem is in a freeze (Linux `freeze_super` stages; NetBSD
/// fstrans NORMAL/SUSPENDING/SUSPENDED).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FreezeState {
    /// Not frozen.
    Thawed,
    /// Flushing before FIFREEZE: writes still flow. QUERY says 0.
    Freezing,
    /// Frozen. QUERY says 1.
    Frozen,
}

impl FreezeState {
    /// The word `freezefs -l` and `--json` show.
    pub fn name(self) -> &'static str {
        match self {
            FreezeState::Thawed => "thawed",
            FreezeState::Freezing => "freezing",
            FreezeState::Frozen => "frozen",
        }
    }
}

/// The state of one filesystem's freeze.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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
    /// Frozen by a tool other than freezefs (`fsfreeze`, a hypervisor's
    /// agent, a raw `FIFREEZE`), in the kernel's word: who, since when and
    /// until when are unknown.
    pub frozen_by_other_tool: bool,
    /// How the last freeze made through freezefs ended, while it is
    /// remembered: until a later freeze of this filesystem ends, or a reboot.
    pub last_freeze: Option<LastFreeze>,
    /// The hold hooks holding their locks for this freeze, in the order
    /// they took them.
    pub holds: Vec<HoldHook>,
    /// A hold hook that ended while this freeze was in force: it no longer
    /// holds what it promised.
    pub hold_broken: Option<HoldBreak>,
    /// Another tool's freeze, as the guard (`freezefs --guard`) sees it;
    /// `None` when no guard runs for this state directory.
    pub foreign: Option<ForeignFreeze>,
}

/// What the guard knows of a freeze another tool made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ForeignFreeze {
    /// Since when the guard has seen it frozen (it was frozen before, by
    /// less than a second when the guard ran then).
    pub seen_frozen_since: SystemTime,
    /// When the guard thaws it; `None` when it only reports
    /// (`freezefs_foreign_max_timeout` 0 or negative).
    pub guard_thaws_at: Option<SystemTime>,
    /// The guard's process.
    pub guard_pid: u32,
}

impl ForeignFreeze {
    fn from_note(note: &ForeignNote) -> ForeignFreeze {
        ForeignFreeze {
            seen_frozen_since: UNIX_EPOCH + Duration::from_nanos(note.seen_unix_ns),
            guard_thaws_at: note.thaw_at_boot_ns.map(wall_time_of),
            guard_pid: note.guard_pid,
        }
    }
}

/// A hold hook holding its lock for a freeze.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HoldHook {
    /// Its file name in the hold hook directory.
    pub name: String,
    /// Its process (the leader of its process group).
    pub pid: u32,
    /// What it said after `ready`: a binlog position, say.
    pub ready: String,
}

/// A hold hook that ended while its freeze was in force.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HoldBreak {
    /// Its file name in the hold hook directory.
    pub hook: String,
    /// "exit 1", "killed by signal 9", "its process was gone".
    pub why: String,
    /// When it ended, when known.
    pub ended_at: Option<SystemTime>,
    /// How long it had held, from its `ready`, when known.
    pub held_for: Option<Duration>,
}

impl HoldBreak {
    fn from_note(note: &HoldBreakNote) -> HoldBreak {
        HoldBreak {
            hook: note.name.clone(),
            why: note.why.clone(),
            ended_at: note.ended_at(),
            held_for: note.held_for(),
        }
    }
}

fn hold_hooks(record: &Record) -> Vec<HoldHook> {
    record
        .holds
        .iter()
        .map(|note| HoldHook {
            name: note.name.clone(),
            pid: note.pid,
            ready: note.ready.clone(),
        })
        .collect()
}

/// How the last freeze made through freezefs ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastFreeze {
    /// Thawed on request, timed out, thawed by another tool, or undone
    /// because its freezer died.
    pub reason: EndReason,
    /// When it ended (wall clock).
    pub ended_at: SystemTime,
    /// When it was frozen (wall clock).
    pub frozen_since: SystemTime,
    /// The process that froze it.
    pub pid: u32,
    /// Its timeout: `Seconds(n)` or `Never`.
    pub timeout: Timeout,
    /// The mount point it was frozen through.
    pub mount_point: PathBuf,
    /// The hold hooks that held their locks for it.
    pub holds: Vec<HoldHook>,
    /// A hold hook that ended while it was in force.
    pub hold_broken: Option<HoldBreak>,
}

impl LastFreeze {
    fn from_record(record: &Record) -> Option<LastFreeze> {
        let ended = record.ended?;
        Some(LastFreeze {
            reason: ended.reason,
            ended_at: UNIX_EPOCH + Duration::from_nanos(ended.at_unix_ns),
            frozen_since: UNIX_EPOCH + Duration::from_nanos(record.frozen_at_unix_ns),
            pid: record.pid,
            timeout: record.timeout_s.map_or(Timeout::Never, Timeout::Seconds),
            mount_point: record.mount_point.clone(),
            holds: hold_hooks(record),
            hold_broken: record.hold_broken.as_ref().map(HoldBreak::from_note),
        })
    }
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
            frozen_by_other_tool: false,
            last_freeze: None,
            holds: Vec::new(),
            hold_broken: None,
            foreign: None,
        }
    }

    /// Another tool's freeze, with what the guard noted of it in `dir`.
    fn frozen_by_other_tool(
        mount_point: PathBuf,
        device: Device,
        fs_type: String,
        dir: Option<&StateDir>,
    ) -> Status {
        let foreign = dir
            .and_then(|dir| foreign_notes::read(dir, device))
            .map(|note| ForeignFreeze::from_note(&note));
        Status {
            state: FreezeState::Frozen,
            frozen_by_other_tool: true,
            foreign,
            ..Status::thawed(mount_point, device, fs_type)
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
            frozen_by_other_tool: false,
            last_freeze: None,
            holds: hold_hooks(record),
            hold_broken: record.hold_broken.as_ref().map(HoldBreak::from_note),
            foreign: None,
        }
    }
}

/// The state of the filesystem `named` names, with how its last freeze
/// ended.
pub(crate) fn status(settings: &Settings, named: &Resolved) -> Result<Status> {
    let mount = &named.mount;
    let live = query::live_record(settings, named)?;
    let dir = StateDir::open(&settings.state_dir, false)?;
    let mut status = match live {
        Some(record) => Status::from_record(&record, now_boot_ns()),
        None if query::frozen_by_any_tool(settings, named)? => Status::frozen_by_other_tool(
            mount.mount_point.clone(),
            mount.device,
            mount.fs_type.clone(),
            dir.as_ref(),
        ),
        None => Status::thawed(
            mount.mount_point.clone(),
            mount.device,
            mount.fs_type.clone(),
        ),
    };
    if let Some(dir) = dir {
        status.last_freeze = dir
            .read_ended(mount.device)?
            .as_ref()
            .and_then(LastFreeze::from_record);
    }
    Ok(status)
}

/// What `freezefs -l` shows: every freeze that could be told, and what
/// could not be (a broken record, a holder that did not answer), each
/// naming its file or mount point.
#[derive(Debug)]
pub struct Listing {
    /// The frozen (or freezing) filesystems, by mount point.
    pub frozen: Vec<Status>,
    /// What could not be read or asked.
    pub problems: Vec<Error>,
}

/// Every frozen (or freezing) filesystem, by mount point; an error when any
/// record or probe failed (see [`listing`] for the rest).
pub(crate) fn list(settings: &Settings) -> Result<Vec<Status>> {
    let listing = listing(settings)?;
    match listing.problems.into_iter().next() {
        Some(problem) => Err(problem),
        None => Ok(listing.frozen),
    }
}

/// Every frozen (or freezing) filesystem, by mount point: those frozen
/// through the freezer's state directory, whose freezes that are over are
/// ended on the way, and those another tool froze, one line per superblock.
/// A record that cannot be read, or a filesystem whose probe fails, is set
/// aside in `problems`; it hides nothing else.
pub(crate) fn listing(settings: &Settings) -> Result<Listing> {
    let mut all = Vec::new();
    let mut problems = Vec::new();
    // Devices told already: a broken record's too, whose freeze is freezefs's.
    let mut seen: Vec<Device> = Vec::new();
    let dir = StateDir::open(&settings.state_dir, false)?;
    if let Some(dir) = &dir {
        for device in dir.recorded_devices()? {
            let record = match dir.read(device) {
                Ok(Some(record)) => record,
                Ok(None) => continue,
                Err(e) => {
                    seen.push(device);
                    problems.push(e);
                    continue;
                }
            };
            if liveness::is_over(&record) {
                query::end_by_mount_point(dir, &record);
                continue;
            }
            match query::watched_still(dir, &record) {
                Ok(true) => {}
                // Ended as thawed by another tool; the kernel is asked below
                // whether anything froze it since.
                Ok(false) => continue,
                Err(e) => {
                    seen.push(device);
                    problems.push(e);
                    continue;
                }
            }
            seen.push(device);
            all.push(Status::from_record(&record, now_boot_ns()));
        }
    }
    let table = MountTable::read().map_err(|e| Error::os("/proc/self/mountinfo", e))?;
    for entry in table.entries() {
        if seen.contains(&entry.device) || !mounts::on_block_device(&entry.fs_type) {
            continue;
        }
        // The mount point may be covered by a later mount: only a path that
        // still reaches this superblock stands for it.
        let Ok(named) = Resolved::path(&entry.mount_point) else {
            continue;
        };
        if named.device() != entry.device {
            continue;
        }
        seen.push(entry.device);
        match query::frozen_by_any_tool(settings, &named) {
            Ok(true) => all.push(Status::frozen_by_other_tool(
                entry.mount_point.clone(),
                entry.device,
                entry.fs_type.clone(),
                dir.as_ref(),
            )),
            Ok(false) => {}
            Err(e) => problems.push(e),
        }
    }
    all.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
    Ok(Listing {
        frozen: all,
        problems,
    })
}
