//! QUERY's own line to a probe thread of the holder, for a process that
//! asks again and again whether filesystems with no freezefs freeze are
//! frozen (monitoring, a guest agent): each later probe goes straight to
//! the thread and back, with no hop through the holder's loop.
//!
//! The thread is a reusable waiter (see [`crate::keep::kernel_truth`]): told
//! to go with a directory, it is let through at once on a thawed filesystem
//! and says `released`; on a frozen one it waits in the kernel until the
//! thaw, where `/proc` shows it waiting. So the answer is the kernel's word
//! each time, as through the holder. A line found waiting stays with its
//! filesystem (asked again, it answers "frozen" while it still waits), so a
//! process keeps at most one waiting thread per frozen filesystem.
//!
//! The first probe of a process goes through the holder (one hop, and the
//! holder's probe per superblock shared by all processes); only a process
//! that asks again gets a line. A line whose holder is gone (it exits when
//! idle) is dropped, and the probe goes through the holder again.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags};
use rustix::net::RecvFlags;

use crate::holder::client;
use crate::holder::protocol::{Answer, ProbeAnswer, Request};
use crate::keep::kernel_truth::{self, Seen};
use crate::os::fork::ForkSafe;
use crate::os::mounts::Device;
use crate::store::state_dir::StateDir;

/// How long a probe may take in all before it is given up (the holder's
/// probe is then asked, which has its own limit).
const LINE_LIMIT: Duration = Duration::from_millis(250);

/// How long a probe looks for the thread's word before it sleeps.
const SPIN: Duration = Duration::from_micros(40);

/// Free lines a process keeps at most.
const FREE_LINES: usize = 2;

/// One line: the teller's end, and the thread at the other end.
struct Line {
    state_dir: PathBuf,
    teller: OwnedFd,
    holder_pid: u32,
    /// The thread's id and start time, as it said them.
    thread: (u32, u64),
    /// The filesystem it was found waiting on, if any.
    waiting_on: Option<Device>,
}

/// Every process's lines, and whether it has probed before. A forked child
/// starts with none: the parent's threads answer the parent.
struct Lines {
    asked_before: bool,
    lines: Vec<Line>,
}

static LINES: ForkSafe<Lines> = ForkSafe::new(
    Lines {
        asked_before: false,
        lines: Vec::new(),
    },
    |lines| {
        lines.asked_before = false;
        lines.lines.clear();
    },
);

/// What the thread said to one probe.
enum Said {
    Answer(ProbeAnswer),
    /// It waits for a thaw, in the kernel's word.
    Waiting,
    /// The line is dead (its holder exited) or the thread did not settle.
    Nothing,
}

/// The kernel's word on the filesystem of `dir_fd` through a line of this
/// process's own, to the holder of the state directory at `state_dir`;
/// `None` when no line could answer (the first probe of the process, a
/// holder gone): ask the holder.
pub(crate) fn ask(
    state_dir: &Path,
    exe: &Path,
    device: Device,
    dir_fd: BorrowedFd<'_>,
) -> Option<ProbeAnswer> {
    let taken = {
        let mut lines = LINES.lock();
        if !std::mem::replace(&mut lines.asked_before, true) {
            return None;
        }
        let here = |l: &Line| l.state_dir == state_dir;
        let pick = lines
            .lines
            .iter()
            .position(|l| here(l) && l.waiting_on == Some(device))
            .or_else(|| {
                lines
                    .lines
                    .iter()
                    .position(|l| here(l) && l.waiting_on.is_none())
            });
        pick.map(|i| lines.lines.swap_remove(i))
    };
    let mut line = match taken {
        Some(line) => line,
        None => open(&StateDir::open(state_dir, true).ok()??, exe)?,
    };
    if line.waiting_on == Some(device) {
        if still_waits(&line) {
            put_back(line);
            return Some(ProbeAnswer::Frozen);
        }
        // Let through since: its last word must be read before it is told
        // again, or that word would answer the new question.
        last_word(&line)?;
        line.waiting_on = None;
    }
    let answer = match probe(&mut line, dir_fd) {
        Said::Answer(answer) => answer,
        Said::Waiting => {
            line.waiting_on = Some(device);
            ProbeAnswer::Frozen
        }
        Said::Nothing => return None,
    };
    put_back(line);
    Some(answer)
}

/// Keeps a line for the next probe; past [`FREE_LINES`] free ones, the
/// oldest goes (its thread is dismissed when its end closes).
fn put_back(line: Line) {
    let mut lines = LINES.lock();
    let free = |l: &Line| l.waiting_on.is_none();
    if free(&line) && lines.lines.iter().filter(|l| free(l)).count() >= FREE_LINES {
        if let Some(oldest) = lines.lines.iter().position(free) {
            lines.lines.remove(oldest);
        }
    }
    lines.lines.push(line);
}

/// Asks the holder for a line (starting one when none runs), and waits
/// for its thread to say who it is.
fn open(dir: &StateDir, exe: &Path) -> Option<Line> {
    let conn = match client::connect_running(dir).ok()? {
        Some(conn) => conn,
        None => client::connect_or_start(dir, exe).ok()?,
    };
    client::send(&conn, exe, &Request::ProbeLine.encode(), &[]).ok()?;
    let (said, teller) = client::receive_with_fd(&conn, exe).ok()?;
    let Some(Answer::Line { holder_pid }) = Answer::parse(&said) else {
        return None;
    };
    let teller = teller?;
    let said = word_within(&teller, LINE_LIMIT)?;
    Some(Line {
        state_dir: dir.path().to_path_buf(),
        teller,
        holder_pid,
        thread: kernel_truth::hello(&said)?,
        waiting_on: None,
    })
}

/// Reads a thread's word on the wait it was let through from.
fn last_word(line: &Line) -> Option<()> {
    let started = Instant::now();
    while started.elapsed() < LINE_LIMIT {
        let word = word_within(&line.teller, LINE_LIMIT - started.elapsed())?;
        if kernel_truth::last_word(&word).is_some() {
            return Some(());
        }
    }
    None
}

fn still_waits(line: &Line) -> bool {
    kernel_truth::watcher_waits(line.holder_pid, line.thread)
}

/// One message from the thread, waiting up to `limit`; `None` on timeout,
/// or when the line is dead.
fn word_within(teller: &OwnedFd, limit: Duration) -> Option<Vec<u8>> {
    let mut fds = [PollFd::new(teller, PollFlags::IN)];
    let timeout = rustix::time::Timespec {
        tv_sec: limit.as_secs() as i64,
        tv_nsec: i64::from(limit.subsec_nanos()),
    };
    if rustix::event::poll(&mut fds, Some(&timeout)).ok()? == 0 {
        return None;
    }
    let mut buf = [0u8; 64];
    match rustix::net::recv(teller, &mut buf, RecvFlags::DONTWAIT) {
        Ok((n, _)) if n > 0 => Some(buf[..n].to_vec()),
        _ => None,
    }
}

/// Tells the thread to wait on the filesystem of `dir_fd` and reads what
/// it says: at once on a thawed filesystem; on a frozen one it says
/// nothing, and `/proc` shows it waiting.
fn probe(line: &mut Line, dir_fd: BorrowedFd<'_>) -> Said {
    // Whatever it said since the last probe (its hello after a wait, a
    // last word nobody read) is of no use now.
    let mut buf = [0u8; 64];
    while let Ok((n, _)) = rustix::net::recv(&line.teller, &mut buf, RecvFlags::DONTWAIT) {
        if n == 0 {
            return Said::Nothing;
        }
        if let Some(thread) = kernel_truth::hello(&buf[..n]) {
            line.thread = thread;
        }
    }
    if kernel_truth::send_go(&line.teller, dir_fd).is_err() {
        return Said::Nothing;
    }
    let answer = |word: &[u8]| {
        kernel_truth::last_word(word).map(|seen| {
            Said::Answer(match seen {
                Seen::Thawed => ProbeAnswer::Thawed,
                _ => ProbeAnswer::CannotTell,
            })
        })
    };
    let started = Instant::now();
    // A released thread answers within tens of microseconds: looked for
    // without sleeping first (a sleep's wake-up costs as much again on a
    // virtual machine), then waited for; only a thread that says nothing
    // is looked at in /proc.
    while started.elapsed() < SPIN {
        match rustix::net::recv(&line.teller, &mut buf, RecvFlags::DONTWAIT) {
            Ok((0, _)) => return Said::Nothing,
            Ok((n, _)) => {
                if let Some(said) = answer(&buf[..n]) {
                    return said;
                }
            }
            Err(_) => {}
        }
        // A few microseconds between looks: fewer system calls.
        let next = Instant::now() + Duration::from_micros(4);
        while Instant::now() < next {
            std::hint::spin_loop();
        }
    }
    let mut pause = Duration::from_micros(100);
    loop {
        match word_within(&line.teller, pause) {
            Some(word) => {
                if let Some(said) = answer(&word) {
                    return said;
                }
            }
            None if still_waits(line) => return Said::Waiting,
            None if !alive(&line.teller) || started.elapsed() >= LINE_LIMIT => {
                return Said::Nothing;
            }
            None => pause = (pause * 2).min(Duration::from_millis(5)),
        }
    }
}

/// False once the other end is closed (its holder exited).
fn alive(teller: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(teller, PollFlags::empty())];
    let now = rustix::time::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let _ = rustix::event::poll(&mut fds, Some(&now));
    !fds[0].revents().intersects(PollFlags::HUP | PollFlags::ERR)
}
