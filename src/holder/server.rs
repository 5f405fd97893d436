//! The holder process: keeps every freeze made through the library, timed or
//! not, whatever happens to the process that made it.
//!
//! `freezefs-holder --serve DIR`, started by the library (see
//! [`crate::os::spawn`]) with fd 3 its listening socket and fd 4 the state
//! directory, accepts freezes, keeps them with a [`Keeper`], and exits about
//! [`LINGER_MS`] after it holds nothing, once no client is queued.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};

use crate::holder::client::{HOLDER_LOCK_NAME, SOCKET_NAME};
use crate::holder::hook_jobs::HookJobs;
use crate::holder::inbox::Inbox;
use crate::holder::probes::{Prober, Probers, look_whether_frozen};
use crate::holder::protocol::{Answer, ProbeAnswer, Request};
use crate::holder::{life, warden};
use crate::keep::kernel_truth::{self, Seen, Waiter};
use crate::keep::watch::{Keeper, Watch};
use crate::os::fd_passing;
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
        (Some(b"--warden"), Some(dir)) => {
            let systemd = args.get(3).is_some_and(|a| a.as_bytes() == b"--systemd");
            warden::main(Path::new(dir), systemd)
        }
        _ => {
            eprintln!(
                "freezefs-holder: internal helper of libfreezefs; it is started by the library"
            );
            2
        }
    }
}

fn serve(dir_path: &Path) -> i32 {
    syscalls::ignore_signal(libc::SIGPIPE);
    syscalls::unblock_all_signals();
    // Asked to stop (shutdown, systemctl stop, a hang-up) or to retire
    // (systemctl reload): read in the loop, blocked in every thread started
    // from here on (a hook's child unblocks them: see hooks::running).
    let Ok(stop) = syscalls::blocked_signals_fd(&syscalls::HOLDER_SIGNALS) else {
        return 1;
    };
    let activated = life::socket_activated();
    let systemd = activated.is_some();
    life::settle_in_background(systemd, life::HOLDER_CGROUP);
    let (listener, dir) = match activated {
        // systemd's socket, and the directory it made for it.
        Some(listener) => match StateDir::open(dir_path, true) {
            Ok(Some(dir)) => (listener, dir),
            _ => return 1,
        },
        None => {
            // fds 3 and 4: the launcher's (see crate::os::spawn).
            let (listener, dir_fd) = (
                syscalls::take_inherited_fd(3),
                syscalls::take_inherited_fd(4),
            );
            for fd in [&listener, &dir_fd] {
                let _ = rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC);
            }
            // The socket's peer credentials are those of the process that
            // last called listen(): the client that started us, which may
            // exit at once. Listening again makes them ours, so that
            // clients see a live holder.
            let _ = rustix::net::listen(&listener, 128);
            let Ok(dir) = StateDir::adopt(dir_path, dir_fd) else {
                return 1;
            };
            (listener, dir)
        }
    };
    let _ = rustix::fs::fcntl_setfl(&listener, rustix::fs::OFlags::NONBLOCK);
    // Litter of clients killed between writing a temporary record and
    // renaming it: swept here, off every FREEZE's path.
    dir.sweep_orphans();
    let dir = Arc::new(dir);
    let Ok(mut keeper) = Keeper::new() else {
        return 1;
    };
    let watches: Mutex<Vec<Watch>> = Mutex::new(Vec::new());
    let jobs = HookJobs::default();
    // Room for a hook request naming a few long mount points in hex: one
    // buffer for the holder's life, not one per request.
    let mut request_buf = vec![0u8; 64 * 1024];
    let mut probes = Probers::default();
    let mut inbox = Inbox::default();
    // Asked to retire: exit at the first moment it keeps nothing, so that
    // systemd starts the executable a package upgrade put in its place.
    let mut retiring = false;
    if life::adopt(&dir, &watches) > 0 {
        life::ensure_warden(&dir, systemd);
    }
    loop {
        keeper.prepare(&watches);
        let idle = lock(&watches).is_empty() && probes.by_device.is_empty();
        let (ready, changed, signal) = {
            let held = lock(&watches);
            let (timer, notify) = keeper.fds();
            let mut fds = vec![
                PollFd::new(&stop, PollFlags::IN),
                PollFd::new(&listener, PollFlags::IN),
                PollFd::from_borrowed_fd(timer, PollFlags::IN),
            ];
            fds.extend(notify.map(|fd| PollFd::from_borrowed_fd(fd, PollFlags::IN)));
            fds.extend(
                held.iter()
                    .filter_map(|w| w.attempt.as_ref())
                    .map(|conn| PollFd::new(conn, PollFlags::IN)),
            );
            // Requests are read where they come in: after the waiters, so
            // that `changed` below covers only what the keeper reviews.
            let first_request = fds.len();
            // A waiter let through: a freeze ended, or a probe is done.
            let waiters: Vec<BorrowedFd<'_>> = held
                .iter()
                .filter_map(Watch::waiter_fd)
                .chain(probes.by_device.values().map(|p| p.waiter.fd()))
                .collect();
            let requests = inbox.fds().count();
            fds.extend(
                inbox
                    .fds()
                    .map(|fd| PollFd::from_borrowed_fd(fd, PollFlags::IN)),
            );
            fds.extend(
                waiters
                    .iter()
                    .map(|&fd| PollFd::from_borrowed_fd(fd, PollFlags::IN)),
            );
            // Under systemd the holder stays unless it retires:
            // Restart=always would start it again at once.
            let linger =
                (idle && (!systemd || retiring)).then_some(Duration::from_millis(LINGER_MS as u64));
            let wait = [linger, inbox.next_due()].into_iter().flatten().min();
            let wait = wait.map(|d| rustix::time::Timespec {
                tv_sec: d.as_secs() as i64,
                tv_nsec: i64::from(d.subsec_nanos()),
            });
            let n = rustix::event::poll(&mut fds, wait.as_ref()).unwrap_or(0);
            let signal = if fds[0].revents().is_empty() {
                None
            } else {
                asked_of(&syscalls::pending_signals(&stop))
            };
            let changed = fds[3..first_request]
                .iter()
                .chain(&fds[first_request + requests..])
                .any(|f| !f.revents().is_empty());
            for fd in waiters {
                syscalls::drain(fd);
            }
            (n, changed, signal)
        };
        retiring |= signal == Some(HolderSignal::Retire);
        if signal == Some(HolderSignal::Stop) {
            life::stop_all(&watches, &jobs);
            jobs.holds.release_everything("holder-stopped");
            jobs.wait_idle();
            return 0;
        }
        // A probe let through (its filesystem thawed) is free again.
        let thawed: Vec<Device> = probes
            .by_device
            .iter()
            .filter(|(_, p)| p.waiter.look() == Some(Seen::Thawed))
            .map(|(d, _)| *d)
            .collect();
        for device in thawed {
            let freed = probes.by_device.remove(&device);
            if probes.spare.is_none() {
                probes.spare = freed;
            }
        }
        // Ends first: a freeze's thaw hooks are due before the hooks of a
        // freeze asked for after it.
        for over in keeper.settle(&watches, changed) {
            jobs.after_end(over);
        }
        let held_before = lock(&watches).len();
        let mut probed = false;
        let mut look = false;
        inbox.accept(&listener);
        inbox.take_requests(&mut request_buf, |conn, bytes, fd| {
            let request = Request::parse(bytes);
            if request == Some(Request::Look) && fd.is_none() {
                look = true;
                return;
            }
            probed |= serve_request(conn, request, fd, &dir, &watches, &mut probes, &jobs);
        });
        if look {
            for over in keeper.settle(&watches, true) {
                jobs.after_end(over);
            }
        }
        if lock(&watches).len() > held_before {
            life::ensure_warden(&dir, systemd);
        }
        if probes.spare.is_none() && probed {
            // After the answers: the next probe finds a thread ready.
            probes.spare = Prober::new();
        }
        let nothing_left = lock(&watches).is_empty()
            && probes.by_device.is_empty()
            && !kernel_truth::any_thread_running()
            && !jobs.running();
        let quiet = ready == 0 && inbox.is_empty();
        if quiet && idle && nothing_left {
            // systemd's socket stays with systemd, which queues the next
            // client for the next holder.
            if systemd && retiring {
                return 0;
            }
            if !systemd && may_exit(&listener, &dir) {
                return 0;
            }
        }
    }
}

/// What signals ask of the holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HolderSignal {
    /// SIGTERM, SIGINT or SIGHUP: thaw what it keeps and exit.
    Stop,
    /// SIGUSR1 (`systemctl reload`, a package upgrade): keep every freeze
    /// to its end, then exit, so that systemd starts the new executable.
    Retire,
}

/// `Stop` if any of `signals` asks to stop, else `Retire` if one asks
/// that, else nothing.
fn asked_of(signals: &[i32]) -> Option<HolderSignal> {
    if signals.iter().any(|&s| s != libc::SIGUSR1) {
        Some(HolderSignal::Stop)
    } else if signals.is_empty() {
        None
    } else {
        Some(HolderSignal::Retire)
    }
}

/// Under the start/stop lock: exit only when no client is queued, and take
/// the socket name away first so the next client starts a new holder.
fn may_exit(listener: &OwnedFd, dir: &StateDir) -> bool {
    let Ok(_lock) = dir.lock_named(HOLDER_LOCK_NAME) else {
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

/// Answers one request, with the fd that came with it; true when it asked
/// for a probe.
fn serve_request(
    conn: OwnedFd,
    request: Option<Request>,
    fd: Option<OwnedFd>,
    dir: &Arc<StateDir>,
    watches: &Mutex<Vec<Watch>>,
    probes: &mut Probers,
    jobs: &HookJobs,
) -> bool {
    let answer = match (request, fd) {
        (
            Some(Request::Hold {
                device,
                generation,
                hooks,
            }),
            Some(mount_fd),
        ) => {
            let mut watch =
                Watch::for_attempt(Arc::clone(dir), device, generation, mount_fd, hooks);
            life::wait_settled();
            // The client gets the teller's end of the freeze's waiter, to
            // start it itself just after FIFREEZE.
            let line = kernel_truth::control_line().ok();
            let answer = Answer::Held {
                holder_pid: std::process::id(),
                holder_fd: u32::try_from(std::os::fd::AsRawFd::as_raw_fd(&watch.mount_fd)).ok(),
            };
            let teller = line.as_ref().map(|(_, teller)| teller.as_fd());
            let fds: Vec<BorrowedFd<'_>> = teller.into_iter().collect();
            let _ = fd_passing::send_with_fds(&conn, answer.encode().as_bytes(), &fds);
            // Spawned after the answer, while the client records and
            // flushes.
            watch.waiter = line.and_then(|(thread_end, _)| Waiter::parked(thread_end).ok());
            // Kept open: its end tells the client's attempt is over.
            watch.attempt = Some(conn);
            lock(watches).push(watch);
            return false;
        }
        (Some(Request::Hooks(request)), _) => {
            jobs.answer(Arc::clone(dir), conn, request);
            return false;
        }
        (Some(Request::Probe { device }), Some(dir_fd)) => {
            Answer::Probe(look_whether_frozen(watches, probes, device, &dir_fd))
        }
        (Some(Request::ProbeLine), None) => {
            // A reusable probe thread the client tells to wait itself (see
            // holder::probe_line); it is dismissed when the client closes
            // its end, and waits like any waiter, so that this holder stays
            // while it waits for a thaw.
            let started = kernel_truth::control_line()
                .ok()
                .and_then(|(thread_end, teller)| Waiter::reusable(thread_end).ok().map(|_| teller));
            let Some(teller) = started else {
                Answer::Probe(ProbeAnswer::Failed).say(&conn);
                return false;
            };
            let answer = Answer::Line {
                holder_pid: std::process::id(),
            };
            let _ = fd_passing::send_with_fds(&conn, answer.encode().as_bytes(), &[teller.as_fd()]);
            return false;
        }
        // Not a request, or without the fd it needs.
        _ => Answer::Refused,
    };
    answer.say(&conn);
    answer != Answer::Refused
}
