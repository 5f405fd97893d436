//! How a freeze ended: a type of the public API, which records carry and
//! every report (THAW's answer, status, the events, the C struct) tells.

/// How a freeze ended: what THAW, status and `thawfs` report afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// Thawed on request (THAW, `thawfs`, a guard), or a rescue thaw.
    Thawed,
    /// Its timeout passed; the holder, the helper thread or a later call
    /// thawed it.
    Timeout,
    /// Another tool (`fsfreeze -u`, `xfs_freeze -u`, qemu-guest-agent, a raw
    /// `FITHAW`) thawed it: writes could flow from then on.
    OtherTool,
    /// Its freezer died before the freeze completed; it was undone.
    FreezerDied,
    /// The holder that kept it was asked to stop (SIGTERM, SIGINT, SIGHUP:
    /// shutdown, `systemctl stop`, `apt remove`) and thawed it first.
    HolderStopped,
    /// A reason this version does not know, written by a newer holder: the
    /// freeze is over, and how is not known here.
    Unrecognized,
}

impl EndReason {
    /// Every reason this version writes.
    pub(crate) const KNOWN: [EndReason; 5] = [
        EndReason::Thawed,
        EndReason::Timeout,
        EndReason::OtherTool,
        EndReason::FreezerDied,
        EndReason::HolderStopped,
    ];

    /// The word in records, events and `--json`.
    pub fn name(self) -> &'static str {
        match self {
            EndReason::Thawed => "thawed",
            EndReason::Timeout => "timeout",
            EndReason::OtherTool => "other-tool",
            EndReason::FreezerDied => "freezer-died",
            EndReason::HolderStopped => "holder-stopped",
            EndReason::Unrecognized => "unrecognized",
        }
    }

    /// How it ended, in a few words: "its timeout passed".
    pub fn describe(self) -> &'static str {
        match self {
            EndReason::Thawed => "it was thawed on request",
            EndReason::Timeout => "its timeout passed",
            EndReason::OtherTool => "another tool thawed it",
            EndReason::FreezerDied => "its freezer died",
            EndReason::HolderStopped => "its holder was stopped",
            EndReason::Unrecognized => "it ended in a way this version of freezefs does not know",
        }
    }

    /// The reason a record names; one this version does not know is
    /// [`EndReason::Unrecognized`], never an unreadable record.
    pub(crate) fn from_name(name: &str) -> EndReason {
        EndReason::KNOWN
            .into_iter()
            .find(|r| r.name() == name)
            .unwrap_or(EndReason::Unrecognized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_reason_reads_back_and_an_unknown_one_is_unrecognized() {
        for reason in EndReason::KNOWN {
            assert_eq!(EndReason::from_name(reason.name()), reason);
        }
        assert_eq!(EndReason::from_name("cosmic-ray"), EndReason::Unrecognized);
    }
}
