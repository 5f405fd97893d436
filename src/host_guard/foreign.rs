//! One freeze the guard sees, and how it ends: noted for `freezefs -l`,
//! told to syslog, and thawed with FITHAW once it has lasted the limit,
//! unless it is freezefs's own (it has its own deadline) or the kernel's
//! (FITHAW ends only a userspace freeze).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::events::{self, Event, Kind};
use crate::host_guard::prober::Waiting;
use crate::host_guard::watched::Watched;
use crate::os::mounts::Device;
use crate::os::process::{iso_utc, now_boot_ns, wall_time_of};
use crate::os::syscalls;
use crate::store::foreign_notes::{self, ForeignNote};
use crate::store::state_dir::StateDir;

/// Who froze it, as far as the guard can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Maker {
    /// freezefs: a record in the state directory. Never the guard's to end.
    Freezefs,
    /// Another tool, or the kernel.
    Other,
}

/// A frozen filesystem and the retired probe that waits for its thaw.
pub(crate) struct Frozen {
    pub(crate) watched: Watched,
    pub(crate) waiting: Waiting,
    pub(crate) maker: Maker,
    /// When the guard first saw it frozen (another tool's: since the guard
    /// saw no freezefs record for it).
    pub(crate) seen_boot_ns: u64,
    /// FITHAW said it is not a userspace freeze while it stayed frozen: the
    /// kernel's (a suspend). Said once, then left alone.
    pub(crate) kernel_freeze: bool,
    /// A FITHAW failed otherwise: said once, tried again each tick.
    pub(crate) thaw_failed: bool,
}

/// What the guard needs to note and tell.
pub(crate) struct Context<'a> {
    pub(crate) dir: &'a StateDir,
    /// The state directory's own filesystem is frozen: nothing is written
    /// there meanwhile (a write would wait for the thaw).
    pub(crate) state_dir_frozen: bool,
    pub(crate) guard: (u32, u64),
    /// `freezefs_foreign_max_timeout`; `None`: report only.
    pub(crate) limit_s: Option<u32>,
}

impl Context<'_> {
    fn writable(&self) -> bool {
        !self.state_dir_frozen
    }
}

/// Whether the state directory records a freezefs freeze of `device`.
pub(crate) fn made_by(dir: &StateDir, device: Device) -> Maker {
    match dir.read(device) {
        Ok(None) => Maker::Other,
        // A record, even a broken one: freezefs's keepers answer for it.
        Ok(Some(_)) | Err(_) => Maker::Freezefs,
    }
}

fn unix_ns(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn seconds(ns: u64) -> String {
    format!("{:.1} s", Duration::from_nanos(ns).as_secs_f64())
}

fn tell(kind: Kind, mount_point: &Path, device: Device, limit_s: Option<u32>, reason: &str) {
    events::emit(&Event {
        kind,
        mount_point,
        device: Some(device),
        pid: 0,
        uid: 0,
        timeout: Some(limit_s),
        reason,
        tag: None,
    });
}

impl Frozen {
    /// When the guard thaws it; `None` when it never does.
    pub(crate) fn thaw_at_boot_ns(&self, limit_s: Option<u32>) -> Option<u64> {
        match self.maker {
            Maker::Other => limit_s.map(|s| self.seen_boot_ns + u64::from(s) * 1_000_000_000),
            Maker::Freezefs => None,
        }
    }

    /// Notes it for `freezefs -l` (another tool's only).
    pub(crate) fn note(&self, cx: &Context<'_>) {
        if self.maker == Maker::Other && cx.writable() {
            let _ = foreign_notes::write(
                cx.dir,
                &ForeignNote {
                    device: self.watched.device,
                    guard_pid: cx.guard.0,
                    guard_start: cx.guard.1,
                    seen_unix_ns: unix_ns(wall_time_of(self.seen_boot_ns)),
                    thaw_at_boot_ns: self.thaw_at_boot_ns(cx.limit_s),
                },
            );
        }
    }

    fn forget(&self, cx: &Context<'_>) {
        if cx.writable() {
            let _ = foreign_notes::remove(cx.dir, self.watched.device);
        }
    }

    /// Says that the guard saw it (another tool's only), and notes it.
    pub(crate) fn noticed(&self, cx: &Context<'_>) {
        if self.maker != Maker::Other {
            return;
        }
        let since = iso_utc(wall_time_of(self.seen_boot_ns));
        let plan = match self.thaw_at_boot_ns(cx.limit_s) {
            Some(at) => format!(
                "the guard thaws it at {} (freezefs_foreign_max_timeout {} s)",
                iso_utc(wall_time_of(at)),
                cx.limit_s.unwrap_or(0)
            ),
            None => "the guard only reports it (freezefs_foreign_max_timeout 0)".into(),
        };
        tell(
            Kind::Foreign,
            &self.watched.mount_point,
            self.watched.device,
            cx.limit_s,
            &format!(
                "frozen by another tool (not through freezefs), seen frozen since {since}; {plan}"
            ),
        );
        self.note(cx);
    }

    /// Its probe was let through: another tool (or the kernel) thawed it.
    pub(crate) fn thawed_elsewhere(&self, cx: &Context<'_>) {
        if self.maker != Maker::Other {
            return;
        }
        let reason = format!(
            "thawed by another tool after the guard had seen it frozen for {}",
            seconds(now_boot_ns().saturating_sub(self.seen_boot_ns))
        );
        tell(
            Kind::ForeignEnded,
            &self.watched.mount_point,
            self.watched.device,
            cx.limit_s,
            &reason,
        );
        self.forget(cx);
    }

    /// FITHAW, once it has lasted the limit: true when the guard thawed it
    /// (then it is over). Under the superblock's lock, so that a freezefs
    /// FREEZE or THAW of it is never raced; a lock that is busy waits for
    /// the next tick (the guard never blocks on it).
    pub(crate) fn thaw_if_due(&mut self, cx: &Context<'_>) -> bool {
        let Some(at) = self.thaw_at_boot_ns(cx.limit_s) else {
            return false;
        };
        if now_boot_ns() < at || self.kernel_freeze {
            return false;
        }
        // No lock can be taken while the state directory's filesystem is
        // frozen (its lock files would be written), and then no freezefs
        // FREEZE can run either: it writes its record there first.
        let _lock = if cx.state_dir_frozen {
            None
        } else {
            match cx.dir.try_lock(self.watched.device) {
                Ok(Some(lock)) => Some(lock),
                Ok(None) | Err(_) => return false,
            }
        };
        if made_by(cx.dir, self.watched.device) == Maker::Freezefs {
            self.maker = Maker::Freezefs;
            self.forget(cx);
            return false;
        }
        // Read from the kernel just before: a thaw and refreeze by another
        // tool a moment ago is a new freeze, not this one.
        if !self.waiting.still_waits() {
            return false;
        }
        match syscalls::fithaw(&*self.waiting.probe.root) {
            Ok(()) => {
                let since = iso_utc(wall_time_of(self.seen_boot_ns));
                let reason = format!(
                    "frozen by another tool (not through freezefs), seen frozen since {since}, for {}; the guard thawed it (freezefs_foreign_max_timeout {} s)",
                    seconds(now_boot_ns().saturating_sub(self.seen_boot_ns)),
                    cx.limit_s.unwrap_or(0)
                );
                tell(
                    Kind::Timeout,
                    &self.watched.mount_point,
                    self.watched.device,
                    cx.limit_s,
                    &reason,
                );
                self.forget(cx);
                true
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && self.waiting.still_waits() => {
                self.kernel_freeze = true;
                tell(
                    Kind::ForeignEnded,
                    &self.watched.mount_point,
                    self.watched.device,
                    cx.limit_s,
                    "frozen by the kernel (a suspend in progress), not by a tool: the guard leaves it alone",
                );
                self.forget(cx);
                false
            }
            // Thawed a moment ago: its probe tells at the next tick.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => false,
            Err(e) => {
                if !self.thaw_failed {
                    self.thaw_failed = true;
                    tell(
                        Kind::Failed,
                        &self.watched.mount_point,
                        self.watched.device,
                        cx.limit_s,
                        &format!(
                            "the guard could not thaw a freeze made by another tool: FITHAW: {e}"
                        ),
                    );
                }
                false
            }
        }
    }
}
