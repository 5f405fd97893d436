//! Events, the analogue of AdvFS's EVM events: every freeze, thaw, timeout
//! thaw, undo after the caller died, reset and failure goes to syslog, as
//! `freezefs[PID]: freezefs.KIND key=value...`.
//!
//! Sending never blocks: one non-blocking datagram to `/dev/log` (or
//! `$FREEZEFS_SYSLOG_SOCKET`, ignored under `AT_SECURE`), dropped when the
//! socket is absent or full. The socket is kept by the process from one
//! event to the next (an absent one is tried again a second later); a
//! freeze takes it before FIFREEZE, so that nothing in the freeze window
//! looks a path up.

use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SendFlags, SocketAddrUnix, SocketFlags, SocketType};

use crate::os::fork::ForkSafe;
use crate::os::mounts::{Device, escape_octal};
use crate::os::syscalls;
use crate::store::liveness::Over;
use crate::store::record::Record;

/// The environment variable that overrides `/dev/log` (ignored under `AT_SECURE`).
pub(crate) const SOCKET_ENV: &str = "FREEZEFS_SYSLOG_SOCKET";
const DEV_LOG: &str = "/dev/log";
/// syslog facility "daemon".
const FACILITY_DAEMON: u8 = 3;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A filesystem was frozen.
    Frozen,
    /// A filesystem was thawed on request.
    Thawed,
    /// A freeze reached its deadline and was thawed.
    Timeout,
    /// A freeze was thawed because its holder was asked to stop.
    HolderStopped,
    /// The holder or its warden could not arrange a protection of its own
    /// (its own cgroup, oom_score_adj): it goes on without it.
    KeeperWarning,
    /// A freeze whose caller died before it completed was undone.
    Abandoned,
    /// A freeze got a new timeout.
    Reset,
    /// A freeze held on a short lease got its next one (the group agent's
    /// renewals): a reset, logged at debug severity.
    Renewed,
    /// An operation failed.
    Failed,
    /// A THAW found nothing frozen: an answer to its caller (qemu-guest-agent
    /// thaws every filesystem until one says so), not a fault. Named
    /// `freezefs.failed`, at debug severity.
    NothingToThaw,
    /// A freeze or thaw hook ran and succeeded.
    Hook,
    /// A freeze or thaw hook failed, or outlived its time limit.
    HookFailed,
    /// A hold hook said it holds its lock (`ready TEXT`), or let go of it
    /// when told its freeze ended.
    Hold,
    /// A hold hook did not get ready (the freeze was cancelled), or was
    /// killed after its grace.
    HoldFailed,
    /// A hold hook ended while its freeze was in force: the freeze did not
    /// hold what it promised.
    HoldBroken,
    /// The guard saw a filesystem frozen by another tool.
    Foreign,
    /// A freeze the guard saw ended without it: the other tool thawed, or
    /// it was the kernel's own (a suspend), which the guard leaves alone.
    ForeignEnded,
}

impl Kind {
    /// The stable event name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Frozen => "freezefs.frozen",
            Kind::Thawed | Kind::HolderStopped => "freezefs.thawed",
            Kind::Timeout => "freezefs.timeout",
            Kind::Abandoned => "freezefs.abandoned",
            Kind::Reset | Kind::Renewed => "freezefs.reset",
            Kind::Failed | Kind::NothingToThaw => "freezefs.failed",
            Kind::Hook | Kind::HookFailed => "freezefs.hook",
            Kind::Hold | Kind::HoldFailed | Kind::HoldBroken => "freezefs.hold",
            Kind::KeeperWarning => "freezefs.keeper",
            Kind::Foreign | Kind::ForeignEnded => "freezefs.foreign",
        }
    }

    /// syslog severity: notice, warning for a thaw nobody asked for, error.
    fn severity(self) -> Severity {
        match self {
            Kind::Frozen
            | Kind::Thawed
            | Kind::Reset
            | Kind::Hook
            | Kind::Hold
            | Kind::ForeignEnded => Severity::Notice,
            Kind::Timeout
            | Kind::Abandoned
            | Kind::HolderStopped
            | Kind::KeeperWarning
            | Kind::Foreign => Severity::Warning,
            Kind::Failed | Kind::HookFailed | Kind::HoldFailed | Kind::HoldBroken => {
                Severity::Error
            }
            Kind::NothingToThaw | Kind::Renewed => Severity::Debug,
        }
    }
}

/// One event.
pub(crate) struct Event<'a> {
    /// What happened.
    pub(crate) kind: Kind,
    /// The mount point (or the path the caller gave).
    pub(crate) mount_point: &'a Path,
    /// The superblock, when known.
    pub(crate) device: Option<Device>,
    /// The process the event is about (the freezer).
    pub(crate) pid: u32,
    /// That process's real uid.
    pub(crate) uid: u32,
    /// The timeout: `Some(None)` for none; `None` when it does not apply.
    pub(crate) timeout: Option<Option<u32>>,
    /// Why, in words.
    pub(crate) reason: &'a str,
    /// The caller's own `key=value` words (see [`check_tag`]), last.
    pub(crate) tag: Option<&'a str>,
}

/// A syslog severity (RFC 5424).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// 3: an operation failed.
    Error = 3,
    /// 4: something ended that nobody asked to end.
    Warning = 4,
    /// 5: what was asked happened.
    Notice = 5,
    /// 7: routine (renewals, answers that are not faults).
    Debug = 7,
}

/// `<PRI>IDENT[PID]: TEXT`, facility daemon: one syslog datagram.
fn framed(ident: &str, severity: Severity, text: &str) -> String {
    format!(
        "<{}>{ident}[{}]: {text}",
        FACILITY_DAEMON * 8 + severity as u8,
        std::process::id()
    )
}

/// Sends `IDENT[PID]: TEXT` to syslog (facility daemon) the way every
/// freezefs event goes: one non-blocking datagram to `/dev/log` (or
/// `$FREEZEFS_SYSLOG_SOCKET`), dropped when nobody listens. The words of
/// `text` are the caller's; escape each field with [`escape_field`].
pub fn send_line(ident: &str, severity: Severity, text: &str) {
    Logger::send_line_to(socket_path(), &framed(ident, severity, text));
}

/// A field as events carry it: spaces, backslashes and controls as `\ooo`,
/// so that a field stays one word.
pub fn escape_field(text: &str) -> String {
    escape_octal(text.as_bytes())
}

impl Event<'_> {
    fn line(&self) -> String {
        let device = self.device.map_or("-".to_string(), |d| d.to_string());
        let timeout = match self.timeout {
            None => "-".to_string(),
            Some(None) => "none".to_string(),
            Some(Some(s)) => s.to_string(),
        };
        let text = format!(
            "{} mount_point={} device={device} pid={} uid={} timeout={timeout} reason={}",
            self.kind.name(),
            escape_octal(self.mount_point.as_os_str().as_bytes()),
            self.pid,
            self.uid,
            escape_octal(self.reason.as_bytes()),
        );
        let mut line = framed("freezefs", self.kind.severity(), &text);
        // Checked when it was given, but read back from a record here: a
        // tag that no longer passes is left out rather than trusted.
        if let Some(tag) = self.tag.filter(|t| check_tag(t).is_ok()) {
            line.push(' ');
            line.push_str(tag);
        }
        line
    }
}

/// The keys of an event's own fields, which a tag may not reuse.
const OWN_KEYS: [&str; 6] = ["mount_point", "device", "pid", "uid", "timeout", "reason"];
const TAG_MAX_BYTES: usize = 256;

/// Whether `tag` is words an event can carry as they are: `key=value`,
/// single spaces between, at most [`TAG_MAX_BYTES`], no key of the event's
/// own, nothing a syslog reader would need unquoted.
pub(crate) fn check_tag(tag: &str) -> Result<(), &'static str> {
    if tag.is_empty() || tag.len() > TAG_MAX_BYTES {
        return Err("an event tag is 1 to 256 bytes");
    }
    for word in tag.split(' ') {
        let (key, value) = word
            .split_once('=')
            .ok_or("an event tag is key=value words, separated by single spaces")?;
        let key_ok = key.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !key_ok {
            return Err(
                "an event tag's key is a lowercase letter, then lowercase letters, digits or _",
            );
        }
        if OWN_KEYS.contains(&key) {
            return Err("an event tag may not reuse a key of the event's own");
        }
        let value_ok = !value.is_empty()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
        if !value_ok {
            return Err("an event tag's value is letters, digits and -_.:");
        }
    }
    Ok(())
}

/// The syslog socket path in force.
pub(crate) fn socket_path() -> PathBuf {
    syscalls::secure_env(SOCKET_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEV_LOG))
}

/// A connected, non-blocking datagram socket to syslog, or nothing.
pub(crate) struct Logger(Option<Arc<OwnedFd>>);

/// This process's syslog socket, kept from one event to the next: a new
/// socket and a connect (a path lookup) cost several times the send. A
/// forked child starts afresh.
static KEPT: ForkSafe<Option<Kept>> = ForkSafe::new(None, |kept| {
    // The child's copy is not closed: its number may be one the program
    // closed and reused since.
    if let Some(Kept {
        state: KeptState::Connected(socket, _),
        ..
    }) = kept.take()
    {
        std::mem::forget(socket);
    }
});

/// How long a syslog socket that could not be reached is not tried again:
/// events are dropped meanwhile, as they are while it is absent.
const RETRY_ABSENT: Duration = Duration::from_secs(1);

struct Kept {
    path: PathBuf,
    state: KeptState,
}

enum KeptState {
    /// Connected; the socket's device and inode, checked before each use,
    /// so that a number the program closed and reused is never written to
    /// (nor closed: such an fd is left alone).
    Connected(Arc<OwnedFd>, (u64, u64)),
    /// Could not connect at this moment.
    Absent(Instant),
}

impl Logger {
    /// The syslog socket in force, connected (kept from an earlier event
    /// when it still is this process's); nothing when there is none.
    pub(crate) fn connect() -> Logger {
        Logger::kept_for(socket_path())
    }

    /// [`Logger::connect`] to `path`.
    fn kept_for(path: PathBuf) -> Logger {
        let mut kept = KEPT.lock();
        match kept.take() {
            Some(Kept {
                path: was,
                state: KeptState::Connected(socket, id),
            }) => {
                let ours = identity(&socket) == Some(id);
                if ours && was == path {
                    *kept = Some(Kept {
                        path,
                        state: KeptState::Connected(Arc::clone(&socket), id),
                    });
                    return Logger(Some(socket));
                }
                if !ours {
                    // Not ours any more: never closed by us.
                    std::mem::forget(socket);
                }
            }
            Some(Kept {
                path: was,
                state: KeptState::Absent(since),
            }) if was == path && since.elapsed() < RETRY_ABSENT => {
                *kept = Some(Kept {
                    path,
                    state: KeptState::Absent(since),
                });
                return Logger(None);
            }
            _ => {}
        }
        let logger = Logger::connect_to(&path);
        let state = match logger.0.as_ref().and_then(|s| Some((s, identity(s)?))) {
            Some((socket, id)) => KeptState::Connected(Arc::clone(socket), id),
            None => KeptState::Absent(Instant::now()),
        };
        *kept = Some(Kept { path, state });
        logger
    }

    /// Connects to `path`; nothing when it cannot.
    pub(crate) fn connect_to(path: &Path) -> Logger {
        let socket = rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
            None,
        )
        .ok();
        let connected = socket.filter(|s| {
            SocketAddrUnix::new(path).is_ok_and(|addr| rustix::net::connect(s, &addr).is_ok())
        });
        Logger(connected.map(Arc::new))
    }

    /// Sends the event, or drops it: never waits, looks no path up. A
    /// socket whose reader went (syslog restarted) is connected anew by the
    /// next event.
    pub(crate) fn send(&self, event: &Event<'_>) {
        self.send_line(&event.line());
    }

    /// Sends a line; false when the reader is gone.
    fn send_line(&self, line: &str) -> bool {
        let Some(socket) = &self.0 else {
            return true;
        };
        let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
        let sent = rustix::net::send(&**socket, line.as_bytes(), flags);
        if matches!(sent, Err(Errno::CONNREFUSED | Errno::NOTCONN)) {
            forget_kept(socket);
            return false;
        }
        true
    }

    /// Sends a line through the kept socket of `path`, connecting again
    /// once if syslog restarted since: outside any freeze window.
    fn send_line_to(path: PathBuf, line: &str) {
        if !Logger::kept_for(path.clone()).send_line(line) {
            Logger::kept_for(path).send_line(line);
        }
    }
}

/// A socket's device and inode, if the fd is still a socket.
fn identity(socket: &OwnedFd) -> Option<(u64, u64)> {
    let st = crate::os::untimed_stat::of_fd(socket).ok()?;
    let kind = rustix::fs::FileType::from_raw_mode(u32::from(st.stx_mode));
    let dev = rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor);
    (kind == rustix::fs::FileType::Socket).then_some((dev, st.stx_ino))
}

/// Drops the kept socket if it is `socket`, so that the next event
/// connects again.
fn forget_kept(socket: &Arc<OwnedFd>) {
    let mut kept = KEPT.lock();
    if matches!(kept.as_ref(), Some(Kept { state: KeptState::Connected(s, _), .. }) if Arc::ptr_eq(s, socket))
    {
        *kept = None;
    }
}

/// Reports a failed operation on `path` (the mount point once resolved),
/// with the superblock's device when known.
pub(crate) fn failed(path: &Path, device: Option<Device>, error: &crate::error::Error) {
    let kind = match error {
        crate::error::Error::NotFrozen(_) => Kind::NothingToThaw,
        _ => Kind::Failed,
    };
    emit(&Event {
        kind,
        mount_point: path,
        device,
        pid: std::process::id(),
        uid: rustix::process::getuid().as_raw(),
        timeout: None,
        reason: &error.to_string(),
        tag: None,
    });
}

/// Reports how a freeze that was over ended ([`crate::keep::end`]); a record
/// of another boot ends silently.
pub(crate) fn about_over(record: &Record, over: Over) {
    let (kind, reason) = match over {
        Over::Expired => (Kind::Timeout, "deadline passed"),
        Over::Abandoned => (
            Kind::Abandoned,
            "the freezer died before the freeze completed",
        ),
        Over::HalfThawed => (Kind::Thawed, "finished a thaw whose caller died halfway"),
        Over::OtherBoot => return,
    };
    about_record(kind, record, reason);
}

/// Reports what happened to the freeze a record describes.
pub(crate) fn about_record(kind: Kind, record: &Record, reason: &str) {
    emit(&Event {
        kind,
        mount_point: &record.mount_point,
        device: Some(record.device),
        pid: record.pid,
        uid: record.uid,
        timeout: Some(record.timeout_s),
        reason,
        tag: record.tag.as_deref(),
    });
}

/// Sends through this process's syslog socket: for events outside any
/// freeze window.
pub(crate) fn emit(event: &Event<'_>) {
    Logger::send_line_to(socket_path(), &event.line());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_line_has_the_priority_ident_name_and_escaped_fields() {
        let e = Event {
            kind: Kind::Timeout,
            mount_point: Path::new("/mnt/a b"),
            device: Some(Device { major: 7, minor: 2 }),
            pid: 42,
            uid: 0,
            timeout: Some(Some(30)),
            reason: "deadline passed",
            tag: None,
        };
        let line = e.line();
        assert!(line.starts_with("<28>freezefs["), "{line}");
        assert!(line.ends_with("]: freezefs.timeout mount_point=/mnt/a\\040b device=7:2 pid=42 uid=0 timeout=30 reason=deadline\\040passed"), "{line}");
    }

    #[test]
    fn a_tagged_event_ends_with_its_tag() {
        let e = Event {
            kind: Kind::Frozen,
            mount_point: Path::new("/srv"),
            device: None,
            pid: 1,
            uid: 0,
            timeout: Some(Some(5)),
            reason: "frozen on request",
            tag: Some("group=orders epoch=42 node=db-1"),
        };
        assert!(
            e.line()
                .ends_with(" reason=frozen\\040on\\040request group=orders epoch=42 node=db-1"),
            "{}",
            e.line()
        );
        let forged = Event {
            tag: Some("reason=forged"),
            ..e
        };
        assert!(!forged.line().contains("forged"), "{}", forged.line());
    }

    #[test]
    fn a_tag_is_plain_key_value_words() {
        for good in ["group=orders epoch=42 node=db-1", "a=b", "job_2=x.y:z"] {
            assert_eq!(check_tag(good), Ok(()), "{good}");
        }
        let too_long = format!("k={}", "v".repeat(255));
        for bad in [
            "",
            "group",
            "group=",
            "=x",
            "Group=x",
            "2k=x",
            "group=a b=c d",
            "group=a  epoch=1",
            " group=a",
            "group=a ",
            "group=a\nepoch=1",
            "group=a=b",
            "group=a\\040b",
            "reason=x",
            "pid=1",
            "group=\u{e9}",
            too_long.as_str(),
        ] {
            assert!(check_tag(bad).is_err(), "{bad:?} passed");
        }
    }

    fn bound_at(path: &Path) -> OwnedFd {
        let socket = rustix::net::socket(AddressFamily::UNIX, SocketType::DGRAM, None).unwrap();
        rustix::net::bind(&socket, &SocketAddrUnix::new(path).unwrap()).unwrap();
        socket
    }

    fn received(socket: &OwnedFd) -> Option<String> {
        let mut buf = [0u8; 512];
        let (n, _) = rustix::net::recv(socket, &mut buf, rustix::net::RecvFlags::DONTWAIT).ok()?;
        Some(String::from_utf8_lossy(&buf[..n]).into_owned())
    }

    #[test]
    fn the_kept_syslog_socket_follows_a_syslog_that_restarted() {
        let dir = std::env::temp_dir().join(format!("freezefs-syslog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("log");
        let _ = std::fs::remove_file(&path);
        let first = bound_at(&path);
        Logger::send_line_to(path.clone(), "one");
        assert_eq!(received(&first).as_deref(), Some("one"));
        // Restarted: a new socket at the same name.
        drop(first);
        std::fs::remove_file(&path).unwrap();
        let second = bound_at(&path);
        Logger::send_line_to(path.clone(), "two");
        assert_eq!(received(&second).as_deref(), Some("two"));
        Logger::send_line_to(path.clone(), "three");
        assert_eq!(received(&second).as_deref(), Some("three"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_socket_drops_events_without_error() {
        let logger = Logger::connect_to(Path::new("/nonexistent/log"));
        assert!(logger.0.is_none());
        logger.send(&Event {
            kind: Kind::Failed,
            mount_point: Path::new("/"),
            device: None,
            pid: 1,
            uid: 0,
            timeout: None,
            reason: "x",
            tag: None,
        });
    }
}
