//! One freeze's record: what every process needs to know about it, as a small
//! line-oriented text (`key value`), so that an operator can `cat` it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::end_reason::EndReason;
use crate::os::mounts::{Device, escape_octal, unescape_octal};
use crate::store::hold_notes::{HoldBreakNote, HoldNote};

const MAGIC: &str = "freezefs-record 1";

/// Where a freeze is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Recorded, syncing and entering FIFREEZE: writes may still flow.
    Freezing,
    /// FIFREEZE returned: the filesystem is frozen.
    Frozen,
    /// A THAW is under way (FITHAW, then the record goes). If the thawer
    /// dies halfway, whoever notices finishes the thaw; QUERY says 0.
    Thawing,
}

/// How and when a remembered freeze ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ended {
    /// How.
    pub(crate) reason: EndReason,
    /// When (wall clock, nanoseconds since the epoch).
    pub(crate) at_unix_ns: u64,
    /// Whether a THAW has been told of it (or was the end itself): the
    /// first THAW after a freeze that ended otherwise answers `EALREADY`
    /// and touches nothing; later ones rescue as usual.
    pub(crate) reported: bool,
}

/// The shared record of one freeze of one superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    /// A fresh random number per freeze: a timer armed for another
    /// generation never thaws this freeze.
    pub generation: u64,
    /// `/proc/sys/kernel/random/boot_id` when written: a record from an
    /// earlier boot describes nothing.
    pub boot_id: String,
    /// The superblock's device.
    pub device: Device,
    /// The filesystem type.
    pub fs_type: String,
    /// The mount point it was frozen through.
    pub mount_point: PathBuf,
    /// Freezing or frozen.
    pub phase: Phase,
    /// The process that froze it.
    pub pid: u32,
    /// That process's start time (`/proc/PID/stat` field 22), against pid reuse.
    pub pid_start: u64,
    /// Its real uid.
    pub uid: u32,
    /// Wall-clock time of the freeze, nanoseconds since the epoch (for display).
    pub frozen_at_unix_ns: u64,
    /// `CLOCK_BOOTTIME` of the freeze, nanoseconds.
    pub frozen_at_boot_ns: u64,
    /// The timeout in seconds; `None` for no timeout.
    pub timeout_s: Option<u32>,
    /// `CLOCK_BOOTTIME` deadline in nanoseconds; `None` for no timeout.
    pub deadline_boot_ns: Option<u64>,
    /// The holder process keeping this freeze, once it took it.
    pub holder_pid: Option<u32>,
    /// The number of the holder's fd on the mount, opened before FIFREEZE:
    /// a later keeper reopens the very mount through
    /// `/proc/WATCHER/fd/N` while the watcher waits, even from another
    /// mount namespace and without a path lookup.
    pub holder_fd: Option<u32>,
    /// While thawing: the thawing process and its start time.
    pub thawer: Option<(u32, u64)>,
    /// The holder's thread that waits in the kernel for this freeze's thaw
    /// (its id and start time), once confirmed waiting: while it waits, no
    /// thaw has happened since FIFREEZE, whoever would have thawed.
    pub watcher: Option<(u32, u64)>,
    /// The thaw hooks this freeze is owed, when its freeze hooks ran: their
    /// time limit (seconds) and directory. Whoever ends the freeze runs
    /// them, even a holder started after the one that took it died.
    pub thaw_hooks: Option<(u32, PathBuf)>,
    /// Set in a remembered freeze that is over (`ended.DEV`); in a live
    /// record (`sb.DEV`) only while `thawing`, saying how it will have ended.
    pub ended: Option<Ended>,
    /// Words of the caller's, `key=value` each, that every event about this
    /// freeze carries (see [`crate::Freezer::with_event_tag`]), even those
    /// its holder sends after the caller is gone.
    pub tag: Option<String>,
    /// The hold hooks holding for this freeze, in the order they took their
    /// locks; empty without hold hooks.
    pub holds: Vec<HoldNote>,
    /// Set when one of them ended while the freeze was in force.
    pub hold_broken: Option<HoldBreakNote>,
}

impl Record {
    /// The record as text.
    pub(crate) fn to_text(&self) -> String {
        let opt = |v: Option<u64>| v.map_or("none".to_string(), |v| v.to_string());
        let pair = |p: Option<(u32, u64)>| {
            p.map_or("none".to_string(), |(id, start)| format!("{id} {start}"))
        };
        format!(
            "{MAGIC}\ngeneration {}\nboot_id {}\ndevice {}\nfs_type {}\nmount_point {}\nphase {}\npid {}\npid_start {}\nuid {}\nfrozen_at_unix_ns {}\nfrozen_at_boot_ns {}\ntimeout_s {}\ndeadline_boot_ns {}\nholder_pid {}\nholder_fd {}\nthawer {}\nwatcher {}\nthaw_hooks {}\nended {}\ntag {}\nholds {}\nhold_broken {}\nend\n",
            self.generation,
            self.boot_id,
            self.device,
            escape_octal(self.fs_type.as_bytes()),
            escape_octal(self.mount_point.as_os_str().as_bytes()),
            match self.phase {
                Phase::Freezing => "freezing",
                Phase::Frozen => "frozen",
                Phase::Thawing => "thawing",
            },
            self.pid,
            self.pid_start,
            self.uid,
            self.frozen_at_unix_ns,
            self.frozen_at_boot_ns,
            opt(self.timeout_s.map(u64::from)),
            opt(self.deadline_boot_ns),
            opt(self.holder_pid.map(u64::from)),
            opt(self.holder_fd.map(u64::from)),
            pair(self.thawer),
            pair(self.watcher),
            self.thaw_hooks
                .as_ref()
                .map_or("none".to_string(), |(limit, dir)| format!(
                    "{limit} {}",
                    escape_octal(dir.as_os_str().as_bytes())
                )),
            self.ended.map_or("none".to_string(), |e| format!(
                "{} {} {}",
                e.reason.name(),
                e.at_unix_ns,
                u8::from(e.reported)
            )),
            self.tag
                .as_ref()
                .map_or("none".to_string(), |t| escape_octal(t.as_bytes())),
            HoldNote::line(&self.holds),
            HoldBreakNote::line(self.hold_broken.as_ref()),
        )
    }

    /// Parses a record; the error says which field is missing or bad.
    /// Unknown keys are ignored, so newer writers stay readable.
    pub(crate) fn from_text(text: &[u8]) -> Result<Record, String> {
        // The closing "end" line tells a whole record from a torn one.
        let body = text
            .strip_suffix(b"\nend\n")
            .ok_or("no end line: torn record")?;
        let mut lines = body.split(|&b| b == b'\n');
        if lines.next() != Some(MAGIC.as_bytes()) {
            return Err("not a freezefs record".into());
        }
        let mut fields = std::collections::HashMap::new();
        for line in lines.filter(|l| !l.is_empty()) {
            let text = std::str::from_utf8(line).map_err(|_| "non-ASCII line")?;
            let (key, value) = text.split_once(' ').ok_or("line without value")?;
            fields.insert(key, value);
        }
        let get = |key: &str| fields.get(key).copied().ok_or(format!("no {key}"));
        let num = |key: &str| get(key)?.parse::<u64>().map_err(|_| format!("bad {key}"));
        let opt = |key: &str| match get(key)? {
            "none" => Ok(None),
            v => v.parse::<u64>().map(Some).map_err(|_| format!("bad {key}")),
        };
        let small = |key: &str| u32::try_from(num(key)?).map_err(|_| format!("bad {key}"));
        // "none", or "ID START"; absent in records of older writers.
        let pair = |key: &str| -> Result<Option<(u32, u64)>, String> {
            match fields.get(key).copied() {
                None | Some("none") => Ok(None),
                Some(v) => {
                    let bad = || format!("bad {key}");
                    let (id, start) = v.split_once(' ').ok_or_else(bad)?;
                    Ok(Some((
                        id.parse().map_err(|_| bad())?,
                        start.parse().map_err(|_| bad())?,
                    )))
                }
            }
        };
        Ok(Record {
            generation: num("generation")?,
            boot_id: get("boot_id")?.to_string(),
            device: get("device")?.parse().map_err(|_| "bad device")?,
            fs_type: String::from_utf8_lossy(&unescape_octal(get("fs_type")?.as_bytes()))
                .into_owned(),
            mount_point: PathBuf::from(OsStr::from_bytes(&unescape_octal(
                get("mount_point")?.as_bytes(),
            ))),
            phase: match get("phase")? {
                "freezing" => Phase::Freezing,
                "frozen" => Phase::Frozen,
                "thawing" => Phase::Thawing,
                _ => return Err("bad phase".into()),
            },
            pid: small("pid")?,
            pid_start: num("pid_start")?,
            uid: small("uid")?,
            frozen_at_unix_ns: num("frozen_at_unix_ns")?,
            frozen_at_boot_ns: num("frozen_at_boot_ns")?,
            timeout_s: opt("timeout_s")?
                .map(|v| u32::try_from(v).map_err(|_| "bad timeout_s"))
                .transpose()?,
            deadline_boot_ns: opt("deadline_boot_ns")?,
            holder_pid: opt("holder_pid")?
                .map(|v| u32::try_from(v).map_err(|_| "bad holder_pid"))
                .transpose()?,
            // Absent in records of older writers.
            holder_fd: match fields.get("holder_fd").copied() {
                None | Some("none") => None,
                Some(v) => Some(v.parse().map_err(|_| "bad holder_fd")?),
            },
            thawer: pair("thawer")?,
            watcher: pair("watcher")?,
            thaw_hooks: match fields.get("thaw_hooks").copied() {
                None | Some("none") => None,
                Some(v) => {
                    let (limit, dir) = v.split_once(' ').ok_or("bad thaw_hooks")?;
                    Some((
                        limit.parse().map_err(|_| "bad thaw_hooks")?,
                        PathBuf::from(OsStr::from_bytes(&unescape_octal(dir.as_bytes()))),
                    ))
                }
            },
            ended: match fields.get("ended").copied() {
                None | Some("none") => None,
                Some(v) => {
                    let mut words = v.split(' ');
                    let mut next = || words.next().ok_or("bad ended");
                    let reason = EndReason::from_name(next()?);
                    let at_unix_ns = next()?.parse().map_err(|_| "bad ended")?;
                    let reported = match next()? {
                        "0" => false,
                        "1" => true,
                        _ => return Err("bad ended".into()),
                    };
                    Some(Ended {
                        reason,
                        at_unix_ns,
                        reported,
                    })
                }
            },
            // Absent in records of older writers.
            tag: match fields.get("tag").copied() {
                None | Some("none") => None,
                Some(v) => {
                    Some(String::from_utf8(unescape_octal(v.as_bytes())).map_err(|_| "bad tag")?)
                }
            },
            // Absent in records of older writers.
            holds: match fields.get("holds").copied() {
                None => Vec::new(),
                Some(v) => HoldNote::parse_line(v).ok_or("bad holds")?,
            },
            hold_broken: match fields.get("hold_broken").copied() {
                None => None,
                Some(v) => HoldBreakNote::parse_line(v).ok_or("bad hold_broken")?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            generation: 0xdead_beef_1234,
            boot_id: "0b5c1e6e-5a4f-4f1e-9a55-6e3f2f7c9d10".into(),
            device: Device { major: 7, minor: 3 },
            fs_type: "ext4".into(),
            mount_point: PathBuf::from(OsStr::from_bytes(b"/tmp/a b\nc\\d\xff")),
            phase: Phase::Frozen,
            pid: 4242,
            pid_start: 987654,
            uid: 0,
            frozen_at_unix_ns: 1_700_000_000_123_456_789,
            frozen_at_boot_ns: 5_000_000_000,
            timeout_s: Some(60),
            deadline_boot_ns: Some(65_000_000_000),
            holder_pid: Some(77),
            holder_fd: Some(5),
            thawer: None,
            watcher: Some((4243, 987700)),
            thaw_hooks: Some((10, PathBuf::from("/etc/freezefs/hooks d"))),
            ended: None,
            tag: Some("group=orders epoch=42 node=db-1".into()),
            holds: vec![
                HoldNote {
                    name: "50-mariadb".into(),
                    pid: 4300,
                    pid_start: 987800,
                    ready: "gtid_binlog_pos=0-1-42 and more".into(),
                },
                HoldNote {
                    name: "60 odd\nname".into(),
                    pid: 4301,
                    pid_start: 987801,
                    ready: String::new(),
                },
            ],
            hold_broken: Some(HoldBreakNote {
                name: "50-mariadb".into(),
                at_unix_ns: 1_700_000_000_500_000_000,
                held_ms: 1234,
                why: "killed by signal 9".into(),
            }),
        }
    }

    #[test]
    fn a_record_round_trips_through_text_with_a_hostile_mount_point() {
        let r = sample();
        assert_eq!(Record::from_text(r.to_text().as_bytes()).unwrap(), r);
    }

    #[test]
    fn an_untimed_freezing_record_round_trips() {
        let r = Record {
            phase: Phase::Freezing,
            timeout_s: None,
            deadline_boot_ns: None,
            holder_pid: None,
            holder_fd: None,
            thawer: Some((9, 10)),
            thaw_hooks: None,
            ..sample()
        };
        let text = r.to_text();
        assert!(text.contains("timeout_s none\n"));
        assert_eq!(Record::from_text(text.as_bytes()).unwrap(), r);
    }

    #[test]
    fn an_ended_record_round_trips_with_each_reason() {
        for reason in EndReason::KNOWN {
            let r = Record {
                ended: Some(Ended {
                    reason,
                    at_unix_ns: 1_700_000_001_000_000_000,
                    reported: reason == EndReason::Thawed,
                }),
                ..sample()
            };
            assert_eq!(Record::from_text(r.to_text().as_bytes()).unwrap(), r);
        }
    }

    #[test]
    fn a_record_without_an_ended_line_is_a_live_one() {
        let text = sample().to_text().replace("ended none\n", "");
        assert_eq!(Record::from_text(text.as_bytes()).unwrap().ended, None);
    }

    #[test]
    fn a_record_of_an_older_writer_has_no_tag() {
        let text: String = sample()
            .to_text()
            .lines()
            .filter(|l| !l.starts_with("tag "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(Record::from_text(text.as_bytes()).unwrap().tag, None);
    }

    #[test]
    fn a_record_of_an_older_writer_has_no_holds() {
        let text: String = sample()
            .to_text()
            .lines()
            .filter(|l| !l.starts_with("holds ") && !l.starts_with("hold_broken "))
            .map(|l| format!("{l}\n"))
            .collect();
        let read = Record::from_text(text.as_bytes()).unwrap();
        assert_eq!((read.holds, read.hold_broken), (Vec::new(), None));
    }

    #[test]
    fn every_truncation_of_a_record_is_rejected() {
        let text = sample().to_text();
        for cut in 0..text.len() {
            assert!(
                Record::from_text(&text.as_bytes()[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(Record::from_text(b"").is_err());
        assert!(Record::from_text(b"\xff\xfe").is_err());
        assert!(Record::from_text(b"freezefs-record 1\ngeneration x\n").is_err());
        assert!(Record::from_text(b"freezefs-record 2\n").is_err());
    }
}
