//! The group's syslog events, beside the library's own: every member's
//! freeze, failure and thaw, with the group, the epoch and the node, as
//! `freezefs-group[PID]: freezefs.group what=WHAT group=G epoch=E node=N ...`.
//! Sent by the library's own writer: one non-blocking datagram to
//! `/dev/log` (or `$FREEZEFS_SYSLOG_SOCKET`), dropped when nobody listens.

use freezefs::syslog::{Severity, escape_field, send_line};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum What {
    /// The member froze its mounts for the epoch.
    Frozen,
    /// The member could not freeze.
    Failed,
    /// The member thawed, as asked.
    Thawed,
    /// The member thawed on a failure (a member, the freezing command or
    /// etcd lost), or its own freeze ended early.
    ThawedOnFailure,
}

impl What {
    fn word(self) -> &'static str {
        match self {
            What::Frozen => "frozen",
            What::Failed => "failed",
            What::Thawed => "thawed",
            What::ThawedOnFailure => "thawed-on-failure",
        }
    }

    fn severity(self) -> Severity {
        match self {
            What::Frozen | What::Thawed => Severity::Notice,
            What::ThawedOnFailure => Severity::Warning,
            What::Failed => Severity::Error,
        }
    }
}

pub(crate) struct Event<'a> {
    pub(crate) what: What,
    pub(crate) group: &'a str,
    pub(crate) epoch: i64,
    pub(crate) node: &'a str,
    pub(crate) mounts: &'a [String],
    pub(crate) reason: &'a str,
}

impl Event<'_> {
    /// The event's words, after `freezefs-group[PID]: `.
    fn text(&self) -> String {
        format!(
            "freezefs.group what={} group={} epoch={} node={} mounts={} reason={}",
            self.what.word(),
            self.group,
            self.epoch,
            self.node,
            escape_field(&self.mounts.join(",")),
            escape_field(self.reason),
        )
    }

    /// Sends the event, or drops it: never waits.
    pub(crate) fn send(&self) {
        send_line("freezefs-group", self.what.severity(), &self.text());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_the_group_epoch_and_node() {
        let text = Event {
            what: What::ThawedOnFailure,
            group: "g",
            epoch: 42,
            node: "n1",
            mounts: &["/srv/a b".into(), "/srv/c".into()],
            reason: "member n2 lost",
        }
        .text();
        assert_eq!(
            text,
            "freezefs.group what=thawed-on-failure group=g epoch=42 node=n1 mounts=/srv/a\\040b,/srv/c reason=member\\040n2\\040lost"
        );
    }
}
