//! Whether a recorded freeze is still alive: the one place that decides it,
//! for the helper thread, the holder and every call that reads a record.

use crate::os::process;
use crate::store::record::{Phase, Record};

/// Why a record no longer describes a live freeze.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    /// Written during an earlier boot: nothing it says holds, and nothing
    /// is thawed for it.
    OtherBoot,
    /// Its deadline has passed: whoever notices first thaws it.
    Expired,
    /// Its freezer died before FIFREEZE returned: the freeze never reached
    /// anyone, so it is undone.
    Abandoned,
    /// Its thawer died between FITHAW and removing the record: the thaw is
    /// finished.
    HalfThawed,
}

impl Over {
    /// Whether the freeze that `record` describes is over at `now_boot_ns`.
    /// `attempt_open`: the holder still has the freezer's connection, so its
    /// attempt is under way whatever `/proc` says of the freezer.
    pub(crate) fn of(record: &Record, now_boot_ns: u64, attempt_open: bool) -> Option<Over> {
        let alive = |(pid, start): (u32, u64)| process::is_alive(pid, start);
        if record.boot_id != process::boot_id() {
            Some(Over::OtherBoot)
        } else if record.deadline_boot_ns.is_some_and(|d| d <= now_boot_ns) {
            Some(Over::Expired)
        } else if record.phase == Phase::Freezing
            && !attempt_open
            && !alive((record.pid, record.pid_start))
        {
            Some(Over::Abandoned)
        } else if record.phase == Phase::Thawing && !record.thawer.is_some_and(alive) {
            Some(Over::HalfThawed)
        } else {
            None
        }
    }

    /// Whether ending it takes a FITHAW: not for a record of another boot,
    /// whose freeze the reboot ended.
    pub(crate) fn needs_thaw(self) -> bool {
        self != Over::OtherBoot
    }
}

/// True when `record` no longer describes a live freeze, now.
pub(crate) fn is_over(record: &Record) -> bool {
    Over::of(record, process::now_boot_ns(), false).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::mounts::Device;

    fn live() -> Record {
        let (pid, pid_start) = process::current();
        Record {
            generation: 1,
            boot_id: process::boot_id().to_string(),
            device: Device { major: 7, minor: 0 },
            fs_type: "ext4".into(),
            mount_point: "/mnt".into(),
            phase: Phase::Frozen,
            pid,
            pid_start,
            uid: 0,
            frozen_at_unix_ns: 0,
            frozen_at_boot_ns: 0,
            timeout_s: Some(60),
            deadline_boot_ns: Some(100),
            holder_pid: None,
            holder_fd: None,
            thawer: None,
            watcher: None,
            thaw_hooks: None,
            ended: None,
            tag: None,
            holds: Vec::new(),
            hold_broken: None,
        }
    }

    #[test]
    fn a_freeze_before_its_deadline_is_alive_and_after_it_is_expired() {
        assert_eq!(Over::of(&live(), 99, false), None);
        assert_eq!(Over::of(&live(), 100, false), Some(Over::Expired));
    }

    #[test]
    fn a_record_of_another_boot_is_over_and_needs_no_thaw() {
        let r = Record {
            boot_id: "another boot".into(),
            ..live()
        };
        assert_eq!(Over::of(&r, 0, false), Some(Over::OtherBoot));
        assert!(!Over::OtherBoot.needs_thaw());
        assert!(Over::Expired.needs_thaw());
    }

    #[test]
    fn a_freezing_record_is_abandoned_only_when_its_freezer_is_gone_and_no_attempt_is_open() {
        let dead = Record {
            phase: Phase::Freezing,
            pid_start: live().pid_start + 1,
            ..live()
        };
        assert_eq!(Over::of(&dead, 0, false), Some(Over::Abandoned));
        assert_eq!(Over::of(&dead, 0, true), None);
        let alive = Record {
            phase: Phase::Freezing,
            ..live()
        };
        assert_eq!(Over::of(&alive, 0, false), None);
    }

    #[test]
    fn a_thaw_is_half_done_only_when_its_thawer_is_gone() {
        let (pid, start) = process::current();
        let thawing = |thawer| Record {
            phase: Phase::Thawing,
            thawer,
            ..live()
        };
        assert_eq!(Over::of(&thawing(Some((pid, start))), 0, false), None);
        assert_eq!(
            Over::of(&thawing(Some((pid, start + 1))), 0, false),
            Some(Over::HalfThawed)
        );
        assert_eq!(Over::of(&thawing(None), 0, false), Some(Over::HalfThawed));
    }
}
