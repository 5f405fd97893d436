//! The holder's inbox: connections accepted and not answered yet, every one
//! in the holder's poll set, none read with a wait. A client that connects
//! and says nothing costs a slot for [`REQUEST_LIMIT`], never a deadline
//! or another client's turn.
//!
//! On a `SOCK_SEQPACKET` socket a request arrives whole or not at all, so
//! "whole within a short time" is "any message within [`REQUEST_LIMIT`]".

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::net::{SendFlags, SocketFlags};

use crate::holder::protocol::Answer;
use crate::os::fd_passing;

/// How long a connection may stay silent before it is dropped.
pub(crate) const REQUEST_LIMIT: Duration = Duration::from_millis(500);
/// How many silent connections are kept; past it the oldest goes.
pub(crate) const MAX_WAITING: usize = 64;

/// A connection waiting for its request.
struct Waiting {
    conn: OwnedFd,
    until: Instant,
}

/// The connections accepted and not answered yet.
#[derive(Default)]
pub(crate) struct Inbox {
    waiting: Vec<Waiting>,
}

impl Inbox {
    /// Accepts every queued connection (the listener is non-blocking); one
    /// of another user is told `refused` and closed at once.
    pub(crate) fn accept(&mut self, listener: &OwnedFd) {
        while let Ok(conn) = rustix::net::accept_with(listener, SocketFlags::CLOEXEC) {
            if !peer_may_ask(&conn) {
                let _ = rustix::net::send(
                    &conn,
                    Answer::Refused.encode().as_bytes(),
                    SendFlags::NOSIGNAL,
                );
                continue;
            }
            if self.waiting.len() >= MAX_WAITING {
                self.waiting.remove(0);
            }
            self.waiting.push(Waiting {
                conn,
                until: Instant::now() + REQUEST_LIMIT,
            });
        }
    }

    /// The connections, for the poll set.
    pub(crate) fn fds(&self) -> impl Iterator<Item = BorrowedFd<'_>> {
        self.waiting.iter().map(|w| w.conn.as_fd())
    }

    /// How long the poll may sleep before the first silent connection is
    /// due to be dropped; `None` with none waiting.
    pub(crate) fn next_due(&self) -> Option<Duration> {
        let first = self.waiting.iter().map(|w| w.until).min()?;
        Some(first.saturating_duration_since(Instant::now()))
    }

    /// Whether nothing waits (the holder may exit).
    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Takes each request that has arrived, without waiting, and hands it
    /// to `serve` with its connection, its bytes (in `buf`) and its fd.
    /// Drops connections that closed, sent a message too long for `buf`,
    /// or stayed silent past [`REQUEST_LIMIT`].
    pub(crate) fn take_requests(
        &mut self,
        buf: &mut [u8],
        mut serve: impl FnMut(OwnedFd, &[u8], Option<OwnedFd>),
    ) {
        let now = Instant::now();
        let mut kept = Vec::with_capacity(self.waiting.len());
        for waiting in std::mem::take(&mut self.waiting) {
            match fd_passing::recv_with_fd_now(&waiting.conn, buf) {
                Ok((0, _)) => {}
                Ok((n, fd)) => serve(waiting.conn, &buf[..n], fd),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if waiting.until > now {
                        kept.push(waiting);
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => {
                    let _ = rustix::net::send(
                        &waiting.conn,
                        Answer::Refused.encode().as_bytes(),
                        SendFlags::NOSIGNAL,
                    );
                }
                Err(_) => {}
            }
        }
        self.waiting = kept;
    }
}

/// Root, or the holder's own user.
fn peer_may_ask(conn: &OwnedFd) -> bool {
    rustix::net::sockopt::socket_peercred(conn)
        .is_ok_and(|cred| cred.uid.is_root() || cred.uid == rustix::process::geteuid())
}
