//! The holder process: keeps every freeze made through the library, timed or
//! not, whatever happens to the process that made it.
//!
//! `freezefs-holder --serve DIR`, started by the library (see
//! [`crate::os::spawn`]) with fd 3 its listening socket and fd 4 the state
//! directory, accepts freezes, keeps them with a [`Keeper`], and exits about
//! [`LINGER_MS`] after it holds nothing, once no client is queued.

use std::ffi::OsStr;
use std::io::IoSliceMut;
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rustix::event::{PollFd, PollFlags};
use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendFlags, SocketFlags};

use crate::keep::holder_client::{LOCK_NAME, SOCKET_NAME};
use crate::keep::watch::{Keeper, Watch};
use crate::os::fork::lock;
use crate::os::mounts::Device;
use crate::os::syscalls;
use crate::store::state_dir::StateDir;

/// How long a holder that holds nothing waits for more work before it exits.
pub(crate) const LINGER_MS: i64 = 50;

/// Entry point of the `freezefs-holder` executable; returns its exit status.
pub(crate) fn main(args: &[std::ffi::OsString]) -> i32 {
    match (args.get(1).map(|a| a.as_bytes()), args.get(2)) {
        (Some(b"--serve"), Some(dir)) => serve(Path::new(dir)),
        _ => {
            eprintln!(
                "freezefs-holder: internal helper of libfreezefs; it is started by the library"
            );
            2
        }
    }
}

fn serve(dir_path: &Path) -> i32 {
    // Immune to a hang-up of the caller's terminal; its own mask is empty.
    syscalls::ignore_signal(libc::SIGHUP);
    syscalls::ignore_signal(libc::SIGPIPE);
    syscalls::unblock_all_signals();
    // fds 3 and 4: the launcher's (see crate::os::spawn).
    let (listener, dir_fd) = (
        syscalls::take_inherited_fd(3),
        syscalls::take_inherited_fd(4),
    );
    for fd in [&listener, &dir_fd] {
        let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
    }
    let _ = rustix::fs::fcntl_setfl(&listener, rustix::fs::OFlags::NONBLOCK);
    let Ok(dir) = StateDir::adopt(dir_path, dir_fd) else {
        return 1;
    };
    // Litter of clients killed between writing a temporary record and
    // renaming it: swept here, off every FREEZE's path.
    dir.sweep_orphans();
    let dir = Arc::new(dir);
    let Ok(mut keeper) = Keeper::new() else {
        return 1;
    };
    let watches: Mutex<Vec<Watch>> = Mutex::new(Vec::new());
    loop {
        keeper.prepare(&watches);
        let idle = lock(&watches).is_empty();
        let (ready, changed) = {
            let held = lock(&watches);
            let [timer, notify] = keeper.fds();
            let mut fds = vec![
                PollFd::new(&listener, PollFlags::IN),
                PollFd::from_borrowed_fd(timer, PollFlags::IN),
                PollFd::from_borrowed_fd(notify, PollFlags::IN),
            ];
            fds.extend(
                held.iter()
                    .filter_map(|w| w.attempt.as_ref())
                    .map(|conn| PollFd::new(conn, PollFlags::IN)),
            );
            let linger = rustix::time::Timespec {
                tv_sec: 0,
                tv_nsec: LINGER_MS * 1_000_000,
            };
            let n = rustix::event::poll(&mut fds, idle.then_some(&linger)).unwrap_or(0);
            let changed = fds[2..].iter().any(|f| !f.revents().is_empty());
            (n, changed)
        };
        accept_all(&listener, &dir, &watches);
        keeper.settle(&watches, changed);
        if ready == 0 && idle && lock(&watches).is_empty() && may_exit(&listener, &dir) {
            return 0;
        }
    }
}

/// Under the start/stop lock: exit only when no client is queued, and take
/// the socket name away first so the next client starts a new holder.
fn may_exit(listener: &OwnedFd, dir: &StateDir) -> bool {
    let Ok(_lock) = dir.lock_named(LOCK_NAME) else {
        // The directory is gone (or unusable): nobody can reach us any more.
        return true;
    };
    let mut fds = [PollFd::new(listener, PollFlags::IN)];
    let zero = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(n) if n > 0) {
        return false;
    }
    let _ = rustix::fs::unlinkat(dir.fd(), SOCKET_NAME, rustix::fs::AtFlags::empty());
    dir.sweep_orphans();
    true
}

fn accept_all(listener: &OwnedFd, dir: &Arc<StateDir>, watches: &Mutex<Vec<Watch>>) {
    while let Ok(conn) = rustix::net::accept_with(listener, SocketFlags::CLOEXEC) {
        match receive(&conn, dir) {
            Some(mut watch) => {
                let answer = format!("ok {}\n", std::process::id());
                let _ = rustix::net::send(&conn, answer.as_bytes(), SendFlags::NOSIGNAL);
                // Kept open: its end tells the client's attempt is over.
                watch.attempt = Some(conn);
                lock(watches).push(watch);
            }
            None => {
                let _ = rustix::net::send(&conn, b"refused\n", SendFlags::NOSIGNAL);
            }
        }
    }
}

/// Reads one `hold DEVICE GENERATION` request with the mount fd.
fn receive(conn: &OwnedFd, dir: &Arc<StateDir>) -> Option<Watch> {
    let cred = rustix::net::sockopt::socket_peercred(conn).ok()?;
    let euid = rustix::process::geteuid();
    if !(cred.uid.is_root() || cred.uid == euid) {
        return None;
    }
    let _ = rustix::net::sockopt::set_socket_timeout(
        conn,
        rustix::net::sockopt::Timeout::Recv,
        Some(std::time::Duration::from_secs(2)),
    );
    let mut buf = [0u8; 256];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let got = rustix::net::recvmsg(
        conn,
        &mut [IoSliceMut::new(&mut buf)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .ok()?;
    let mut mount_fd = None;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(fds) = message {
            for fd in fds {
                mount_fd.get_or_insert(fd);
            }
        }
    }
    let text = OsStr::from_bytes(&buf[..got.bytes]).to_str()?;
    let mut words = text.split_whitespace();
    if words.next()? != "hold" {
        return None;
    }
    let device: Device = words.next()?.parse().ok()?;
    let generation: u64 = words.next()?.parse().ok()?;
    Some(Watch {
        dir: Arc::clone(dir),
        device,
        generation,
        // Review at once: the record says what to do next.
        wake_at: Some(0),
        mount_fd: mount_fd?,
        attempt: None,
        seen: false,
    })
}
