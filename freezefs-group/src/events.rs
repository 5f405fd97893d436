//! The group's syslog events, beside the library's own: every member's
//! freeze, failure and thaw, with the group, the epoch and the node, as
//! `freezefs-group[PID]: freezefs.group what=WHAT group=G epoch=E node=N ...`.
//! Sent like the library's: one non-blocking datagram to `/dev/log` (or
//! `$FREEZEFS_SYSLOG_SOCKET`), dropped when nobody listens.

use std::os::unix::net::UnixDatagram;

/// syslog facility "daemon".
const FACILITY_DAEMON: u8 = 3;

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

    fn severity(self) -> u8 {
        match self {
            What::Frozen | What::Thawed => 5,
            What::ThawedOnFailure => 4,
            What::Failed => 3,
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
    pub(crate) fn line(&self) -> String {
        format!(
            "<{}>freezefs-group[{}]: freezefs.group what={} group={} epoch={} node={} mounts={} reason={}",
            FACILITY_DAEMON * 8 + self.what.severity(),
            std::process::id(),
            self.what.word(),
            self.group,
            self.epoch,
            self.node,
            escaped(&self.mounts.join(",")),
            escaped(self.reason),
        )
    }

    /// Sends the event, or drops it: never waits.
    pub(crate) fn send(&self) {
        let path = std::env::var_os("FREEZEFS_SYSLOG_SOCKET")
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/dev/log".into());
        if let Ok(socket) = UnixDatagram::unbound() {
            let _ = socket.set_nonblocking(true);
            let _ = socket.send_to(self.line().as_bytes(), path);
        }
    }
}

/// Spaces, backslashes and controls as `\ooo`, as the library's events
/// escape them: one field stays one word.
fn escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b <= b' ' || b == b'\\' || b >= 0x7f {
            out.push_str(&format!("\\{b:03o}"));
        } else {
            out.push(b as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_names_the_group_epoch_and_node() {
        let line = Event {
            what: What::ThawedOnFailure,
            group: "g",
            epoch: 42,
            node: "n1",
            mounts: &["/srv/a b".into(), "/srv/c".into()],
            reason: "member n2 lost",
        }
        .line();
        assert!(line.starts_with("<28>freezefs-group["), "{line}");
        assert!(
            line.ends_with("]: freezefs.group what=thawed-on-failure group=g epoch=42 node=n1 mounts=/srv/a\\040b,/srv/c reason=member\\040n2\\040lost"),
            "{line}"
        );
    }
}
