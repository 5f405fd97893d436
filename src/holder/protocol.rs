//! The holder's protocol, both ends: what a client may ask and what the
//! holder answers, one encoder and one parser each. One message per
//! SOCK_SEQPACKET datagram, a line of words; an fd travels beside some.
//! A message with a part that does not parse, or a word too many, is
//! refused whole.
//!
//! The words are those of every earlier version, so that a client and a
//! holder of different versions still talk:
//!
//! | request | fd | answers |
//! |---|---|---|
//! | `hold DEVICE GENERATION [LIMIT DIR DEVICE MOUNTPOINT]` | the mount | `ok PID FD` (with the waiter's teller), `refused` |
//! | `probe DEVICE` | a directory on it | `frozen`, `thawed`, `cannot`, `unknown`, `failed`, `refused` |
//! | `probe-line` | | `line PID` (with a probe thread's teller), `failed` |
//! | `look` | | none: the holder reviews every freeze it keeps against its record |
//! | `hooks-freeze LIMIT DIR (DEVICE MOUNTPOINT)...` | | `queued SECONDS`, then `ok` or `failed REASON` |
//! | `hooks-thaw REASON LIMIT DIR (DEVICE MOUNTPOINT)...` | | `queued SECONDS`, then `ok` |
//! | `hooks-hold GRACE LIMIT DIR (DEVICE MOUNTPOINT)...` | | `queued SECONDS`, then `holding (NAME PID START TEXT)...` or `failed REASON` |
//! | `hold-release REASON`, on the connection of a `hooks-hold` | | `ok` |
//!
//! Paths, a failed hook's reason and a hold hook's name and text go in hex
//! (any bytes, no spaces; `-` for none).

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use crate::holds::HoldHooks;
use crate::hooks::wire::{hex, unhex};
use crate::hooks::{HookTarget, Hooks};
use crate::os::fd_passing;
use crate::os::mounts::Device;
use crate::store::hold_notes::HoldNote;

/// What a client asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// Keep this freeze attempt (the mount's fd comes with it), and run
    /// the thaw hooks when it ends, if any.
    Hold {
        device: Device,
        generation: u64,
        hooks: Option<(Hooks, HookTarget)>,
    },
    /// Is this filesystem frozen, by whoever? (A directory on it comes
    /// with it.)
    Probe { device: Device },
    /// A probe thread of the client's own, which it tells to wait itself:
    /// answered [`Answer::Line`] with the teller's end of its control line.
    ProbeLine,
    /// A record changed in a way no waiter tells of (a reset of its
    /// deadline): review every freeze. Not answered.
    Look,
    /// Run hooks, in the holder's queue.
    Hooks(HookRequest),
}

/// What a client asks of the hooks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HookRequest {
    /// Run the freeze hooks; answered [`Answer::Ok`] or
    /// [`Answer::HookFailed`].
    Freeze(Hooks, Vec<HookTarget>),
    /// Run the thaw hooks after a rollback, with this reason; answered
    /// [`Answer::Ok`].
    Thaw(String, Hooks, Vec<HookTarget>),
    /// Start the hold hooks and wait until each is ready; answered
    /// [`Answer::Holding`] or [`Answer::HookFailed`]. They hold until the
    /// freezes recorded with them end, or until [`HookRequest::Release`] or
    /// the end of this connection before any is recorded.
    Hold(HoldHooks, Vec<HookTarget>),
    /// Release the hold hooks started on this connection (a rollback), with
    /// this reason; answered [`Answer::Ok`].
    Release(String),
}

/// What a probe found, in the holder's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeAnswer {
    /// A waiter waits in the kernel for a thaw.
    Frozen,
    Thawed,
    /// The kernel will not make a waiter wait (a read-only mount).
    CannotTell,
    /// Not settled within the holder's short look: ask again.
    Unknown,
    /// No waiter could be started: asking again would not help.
    Failed,
}

/// What the holder answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A hold taken: the holder's pid and the number its copy of the
    /// mount fd has there (the waiter's teller comes with it).
    Held {
        holder_pid: u32,
        holder_fd: Option<u32>,
    },
    Probe(ProbeAnswer),
    /// A probe thread started for the client, in this holder (its control
    /// line comes with it).
    Line {
        holder_pid: u32,
    },
    /// The most the hook runs ahead of this request may take.
    Queued {
        seconds: u64,
    },
    /// The hooks ran.
    Ok,
    /// The hold hooks are ready, each holding.
    Holding(Vec<HoldNote>),
    /// A freeze or hold hook failed, for this reason.
    HookFailed {
        reason: String,
    },
    /// Not asked properly, or not by root or the holder's own user.
    Refused,
}

impl Request {
    /// Waits for the next request on a client's connection (one it keeps
    /// open after its first request); `None` when it closed it, or sent
    /// words no client says.
    pub(crate) fn receive(conn: impl AsFd, buf: &mut [u8]) -> Option<Request> {
        fd_passing::recv_with_fd(conn, buf)
            .ok()
            .filter(|(n, _)| *n > 0)
            .and_then(|(n, _)| Request::parse(&buf[..n]))
    }

    /// The line that carries this request.
    pub(crate) fn encode(&self) -> String {
        match self {
            Request::Hold {
                device,
                generation,
                hooks: None,
            } => format!("hold {device} {generation}\n"),
            Request::Hold {
                device,
                generation,
                hooks: Some((hooks, target)),
            } => format!(
                "hold {device} {generation} {} {}\n",
                hooks.wire(),
                target.wire()
            ),
            Request::Probe { device } => format!("probe {device}\n"),
            Request::ProbeLine => "probe-line\n".to_string(),
            Request::Look => "look\n".to_string(),
            Request::Hooks(HookRequest::Freeze(hooks, targets)) => {
                hooks_line("hooks-freeze", hooks, targets)
            }
            Request::Hooks(HookRequest::Thaw(reason, hooks, targets)) => {
                hooks_line(&format!("hooks-thaw {reason}"), hooks, targets)
            }
            Request::Hooks(HookRequest::Hold(holds, targets)) => hooks_line(
                &format!("hooks-hold {}", holds.grace_s),
                &holds.hooks,
                targets,
            ),
            Request::Hooks(HookRequest::Release(reason)) => format!("hold-release {reason}\n"),
        }
    }

    /// Reads a request line, whole or not at all.
    pub(crate) fn parse(bytes: &[u8]) -> Option<Request> {
        let text = OsStr::from_bytes(bytes).to_str()?;
        let mut words = text.split_whitespace();
        let verb = words.next()?;
        let request = match verb {
            "hold" => Request::Hold {
                device: words.next()?.parse().ok()?,
                generation: words.next()?.parse().ok()?,
                // Hooks and their target, both whole, or nothing at all.
                hooks: match words.next() {
                    None => None,
                    Some(limit) => {
                        let mut rest = std::iter::once(limit).chain(&mut words);
                        let hooks = Hooks::from_wire(&mut rest)?;
                        Some((hooks, HookTarget::from_wire(&mut rest)?))
                    }
                },
            },
            "probe" => Request::Probe {
                device: words.next()?.parse().ok()?,
            },
            "probe-line" => Request::ProbeLine,
            "look" => Request::Look,
            "hooks-freeze" | "hooks-thaw" | "hooks-hold" => {
                // A reason is one word: it names why the thaw hooks run.
                let reason = match verb {
                    "hooks-thaw" => Some(words.next()?.to_string()),
                    _ => None,
                };
                let grace_s: Option<u32> = match verb {
                    "hooks-hold" => Some(words.next()?.parse().ok()?),
                    _ => None,
                };
                let hooks = Hooks::from_wire(&mut words)?;
                let mut targets = Vec::new();
                let mut words = words.by_ref().peekable();
                while words.peek().is_some() {
                    targets.push(HookTarget::from_wire(&mut words)?);
                }
                Request::Hooks(match (reason, grace_s) {
                    (_, Some(grace_s)) if !targets.is_empty() => {
                        HookRequest::Hold(HoldHooks { hooks, grace_s }, targets)
                    }
                    (_, Some(_)) => return None,
                    (None, None) => HookRequest::Freeze(hooks, targets),
                    (Some(reason), None) => HookRequest::Thaw(reason, hooks, targets),
                })
            }
            "hold-release" => Request::Hooks(HookRequest::Release(words.next()?.to_string())),
            _ => return None,
        };
        words.next().is_none().then_some(request)
    }
}

fn hooks_line(verb: &str, hooks: &Hooks, targets: &[HookTarget]) -> String {
    let mut line = format!("{verb} {}", hooks.wire());
    for target in targets {
        line.push(' ');
        line.push_str(&target.wire());
    }
    line.push('\n');
    line
}

impl Answer {
    /// Sends this answer on a client's connection; a client gone meanwhile
    /// is no one's concern here.
    pub(crate) fn say(&self, conn: impl AsFd) {
        let _ = rustix::net::send(
            conn,
            self.encode().as_bytes(),
            rustix::net::SendFlags::NOSIGNAL,
        );
    }

    /// The words of this answer.
    pub(crate) fn encode(&self) -> String {
        match self {
            Answer::Held {
                holder_pid,
                holder_fd: Some(fd),
            } => format!("ok {holder_pid} {fd}\n"),
            Answer::Held {
                holder_pid,
                holder_fd: None,
            } => format!("ok {holder_pid}\n"),
            Answer::Probe(found) => match found {
                ProbeAnswer::Frozen => "frozen",
                ProbeAnswer::Thawed => "thawed",
                ProbeAnswer::CannotTell => "cannot",
                ProbeAnswer::Unknown => "unknown",
                ProbeAnswer::Failed => "failed",
            }
            .to_string(),
            Answer::Line { holder_pid } => format!("line {holder_pid}"),
            Answer::Queued { seconds } => format!("queued {seconds}"),
            Answer::Ok => "ok".to_string(),
            Answer::Holding(notes) => {
                let mut line = "holding".to_string();
                for note in notes {
                    line.push_str(&format!(
                        " {} {} {} {}",
                        hex_word(&note.name),
                        note.pid,
                        note.pid_start,
                        hex_word(&note.ready)
                    ));
                }
                line
            }
            Answer::HookFailed { reason } => format!("failed {}", hex(reason.as_bytes())),
            Answer::Refused => "refused".to_string(),
        }
    }

    /// Reads an answer (surrounding blanks ignored), or None for words no
    /// holder says.
    pub(crate) fn parse(text: &str) -> Option<Answer> {
        let mut words = text.split_whitespace();
        let answer = match words.next()? {
            "ok" => match words.next() {
                None => Answer::Ok,
                Some(pid) => Answer::Held {
                    holder_pid: pid.parse().ok()?,
                    holder_fd: match words.next() {
                        None => None,
                        Some(fd) => Some(fd.parse().ok()?),
                    },
                },
            },
            "frozen" => Answer::Probe(ProbeAnswer::Frozen),
            "thawed" => Answer::Probe(ProbeAnswer::Thawed),
            "cannot" => Answer::Probe(ProbeAnswer::CannotTell),
            "unknown" => Answer::Probe(ProbeAnswer::Unknown),
            "failed" => match words.next() {
                None => Answer::Probe(ProbeAnswer::Failed),
                Some(reason) => Answer::HookFailed {
                    reason: String::from_utf8_lossy(&unhex(reason)?).into_owned(),
                },
            },
            "line" => Answer::Line {
                holder_pid: words.next()?.parse().ok()?,
            },
            "queued" => Answer::Queued {
                seconds: words.next()?.parse().ok()?,
            },
            "refused" => Answer::Refused,
            "holding" => {
                let rest: Vec<&str> = words.by_ref().collect();
                if rest.len() % 4 != 0 {
                    return None;
                }
                Answer::Holding(
                    rest.chunks(4)
                        .map(|w| {
                            Some(HoldNote {
                                name: unhex_word(w[0])?,
                                pid: w[1].parse().ok()?,
                                pid_start: w[2].parse().ok()?,
                                ready: unhex_word(w[3])?,
                            })
                        })
                        .collect::<Option<_>>()?,
                )
            }
            _ => return None,
        };
        words.next().is_none().then_some(answer)
    }
}

/// A text as one word: hex, `-` when empty.
fn hex_word(text: &str) -> String {
    if text.is_empty() {
        "-".to_string()
    } else {
        hex(text.as_bytes())
    }
}

fn unhex_word(word: &str) -> Option<String> {
    match word {
        "-" => Some(String::new()),
        _ => String::from_utf8(unhex(word)?).ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn device() -> Device {
        "7:3".parse().unwrap()
    }

    fn hooks() -> Hooks {
        Hooks {
            dir: PathBuf::from("/etc/freezefs/hooks.d"),
            limit_s: 30,
            count: 0,
        }
    }

    fn target(mount_point: &str) -> HookTarget {
        HookTarget {
            device: device(),
            mount_point: PathBuf::from(mount_point),
        }
    }

    fn every_request() -> Vec<Request> {
        vec![
            Request::Hold {
                device: device(),
                generation: 42,
                hooks: None,
            },
            Request::Hold {
                device: device(),
                generation: u64::MAX,
                hooks: Some((hooks(), target("/srv/with space"))),
            },
            Request::Probe { device: device() },
            Request::Hooks(HookRequest::Freeze(
                hooks(),
                vec![target("/a"), target("/b")],
            )),
            Request::Hooks(HookRequest::Thaw("rolled-back".into(), hooks(), vec![])),
            Request::Hooks(HookRequest::Hold(
                HoldHooks {
                    hooks: hooks(),
                    grace_s: 5,
                },
                vec![target("/a"), target("/b")],
            )),
            Request::Hooks(HookRequest::Release("rolled-back".into())),
            Request::ProbeLine,
            Request::Look,
        ]
    }

    #[test]
    fn every_request_reads_back_as_itself() {
        for request in every_request() {
            let line = request.encode();
            assert_eq!(Request::parse(line.as_bytes()), Some(request), "{line}");
        }
    }

    #[test]
    fn the_words_on_the_wire_are_those_older_holders_read() {
        assert_eq!(every_request()[0].encode(), "hold 7:3 42\n");
        assert_eq!(every_request()[2].encode(), "probe 7:3\n");
        let hold = every_request()[1].encode();
        assert!(
            hold.starts_with("hold 7:3 18446744073709551615 30 "),
            "{hold}"
        );
        assert!(
            every_request()[4]
                .encode()
                .starts_with("hooks-thaw rolled-back 30 ")
        );
        assert_eq!(
            Answer::Held {
                holder_pid: 9,
                holder_fd: Some(5)
            }
            .encode(),
            "ok 9 5\n"
        );
    }

    #[test]
    fn every_answer_reads_back_as_itself() {
        let answers = [
            Answer::Held {
                holder_pid: 1,
                holder_fd: Some(3),
            },
            Answer::Held {
                holder_pid: 1,
                holder_fd: None,
            },
            Answer::Probe(ProbeAnswer::Frozen),
            Answer::Probe(ProbeAnswer::Thawed),
            Answer::Probe(ProbeAnswer::CannotTell),
            Answer::Probe(ProbeAnswer::Unknown),
            Answer::Line { holder_pid: 7 },
            Answer::Probe(ProbeAnswer::Failed),
            Answer::Queued { seconds: 31 },
            Answer::Ok,
            Answer::HookFailed {
                reason: "10-db exit 3: no space".into(),
            },
            Answer::Holding(vec![
                HoldNote {
                    name: "50-mariadb".into(),
                    pid: 77,
                    pid_start: 1234,
                    ready: "gtid_binlog_pos=0-1-42".into(),
                },
                HoldNote {
                    name: "60-quiet".into(),
                    pid: 78,
                    pid_start: 1235,
                    ready: String::new(),
                },
            ]),
            Answer::Refused,
        ];
        for answer in answers {
            let words = answer.encode();
            assert_eq!(Answer::parse(&words), Some(answer), "{words}");
        }
    }

    #[test]
    fn a_hostile_request_is_refused_whole() {
        for line in [
            &b""[..],
            b"\n",
            b"hold",
            b"hold 7:3",
            b"hold 7:3 -1",
            b"hold 7:3 42 extra",
            b"hold 7:3 42 30",
            b"hold 7:3 42 30 2f65",
            b"hold 7:3 42 30 2f65 7:3",
            b"hold 7:3 42 30 2f6 7:3 2f61",
            b"hold 7:3 42 30 zz 7:3 2f61",
            b"hold x:y 42",
            b"hold 99999999999:3 42",
            b"probe",
            b"probe 7:3 7:3",
            b"hooks-freeze",
            b"hooks-freeze 30",
            b"hooks-freeze 30 2f65 7:3",
            b"hooks-freeze -30 2f65",
            b"hooks-thaw",
            b"hooks-thaw reason",
            b"hooks-thaw reason 30 2f65 7:3",
            b"hooks-hold 5 30 2f65",
            b"hooks-hold x 30 2f65 7:3 2f61",
            b"hold-release",
            b"hold-release a b",
            b"HOLD 7:3 42",
            b"unhold 7:3",
            b"hold \xff 42",
            b"hold 7:3\x0042",
        ] {
            assert_eq!(
                Request::parse(line),
                None,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn an_answer_no_holder_says_is_none() {
        for words in [
            "",
            "ok x",
            "ok 1 2 3",
            "ok 1 y",
            "frozen now",
            "failed zz",
            "failed 6 1",
            "queued",
            "queued soon",
            "refused twice",
            "holding 2d 1 2",
            "holding zz 1 2 2d",
            "maybe",
        ] {
            assert_eq!(Answer::parse(words), None, "{words:?}");
        }
    }
}
