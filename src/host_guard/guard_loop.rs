//! The guard's loop: a tick every [`TICK`], on which it
//! - forgets the freezes whose probe a thaw let through;
//! - makes a probe that waits for a thaw that freeze's waiter, and starts
//!   a new prober for the rest;
//! - starts the next round when the prober is idle (rereading the mount
//!   table only when the kernel says it changed);
//! - thaws what has lasted the limit.
//!
//! A freeze is seen within two ticks of being made, and thawed at the
//! limit counted from when it was seen (the loop wakes at that moment).

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustix::event::{PollFd, PollFlags};
use rustix::fs::{Mode, OFlags};

use crate::error::{Error, Result};
use crate::host_guard::foreign::{Context, Frozen, Maker, made_by};
use crate::host_guard::limit;
use crate::host_guard::prober::Prober;
use crate::host_guard::watched::{Watched, choose};
use crate::os::mounts::{self, Device, MountLine};
use crate::os::process::{self, fresh_generation, now_boot_ns};
use crate::os::syscalls;
use crate::store::foreign_notes::{self, GUARD_LOCK};
use crate::store::state_dir::StateDir;

/// How often the guard looks: a freeze is seen within two ticks.
pub(crate) const TICK: Duration = Duration::from_millis(300);

/// A probe that has waited this long, in the kernel's wait for a thaw, is
/// a freeze (one that has just begun may not have reached the wait yet).
const STUCK_NS: u64 = 50_000_000;

/// What the guard says once it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GuardStart {
    /// How many filesystems it watches now.
    pub filesystems: usize,
    /// `freezefs_foreign_max_timeout`; `None`: it only reports.
    pub thaw_after_s: Option<u32>,
}

/// The sysconfigtab file's identity and change time: reread when it moves.
fn stamp(path: &Path) -> Option<(u64, u64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
}

/// The mount table, read through `fd` (which also clears its POLLPRI).
fn read_table(fd: &OwnedFd) -> Vec<MountLine> {
    let mut text = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match rustix::io::pread(fd, &mut buf, text.len() as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
        }
    }
    text.split(|&b| b == b'\n')
        .filter_map(mounts::parse_mount_line)
        .collect()
}

/// The guard's state between ticks.
struct Guard {
    dir: StateDir,
    state_dir_device: Option<Device>,
    me: (u32, u64),
    limit_s: Option<u32>,
    probe_name: Arc<str>,
    prober: Option<Prober>,
    watched: Vec<Watched>,
    frozen: Vec<Frozen>,
}

impl Guard {
    fn context(&self) -> Context<'_> {
        Context {
            dir: &self.dir,
            state_dir_frozen: self.state_dir_frozen(),
            guard: self.me,
            limit_s: self.limit_s,
        }
    }

    fn state_dir_frozen(&self) -> bool {
        self.frozen
            .iter()
            .any(|f| Some(f.watched.device) == self.state_dir_device)
    }

    /// Thaws what has lasted the limit, and forgets it.
    fn thaw_what_is_due(&mut self) {
        let state_dir_frozen = self.state_dir_frozen();
        let Guard {
            dir,
            me,
            limit_s,
            frozen,
            ..
        } = self;
        let cx = Context {
            dir,
            state_dir_frozen,
            guard: *me,
            limit_s: *limit_s,
        };
        frozen.retain_mut(|f| !f.thaw_if_due(&cx));
    }

    /// The watched filesystems no retired probe waits on, and that no
    /// freezefs freeze is recorded for: a probe would wait for the end of
    /// that freeze, which is never the guard's to end, and a guard stopped
    /// meanwhile (a package upgrade) could not finish exiting before it.
    fn round(&self) -> Arc<Vec<Watched>> {
        let recorded = self.dir.recorded_devices().unwrap_or_default();
        Arc::new(
            self.watched
                .iter()
                .filter(|w| !self.frozen.iter().any(|f| f.watched.device == w.device))
                .filter(|w| !recorded.contains(&w.device))
                .cloned()
                .collect(),
        )
    }

    fn tick(&mut self, mounts_changed: Option<Vec<MountLine>>) {
        let ended: Vec<Frozen>;
        (ended, self.frozen) = std::mem::take(&mut self.frozen)
            .into_iter()
            .partition(|f| f.waiting.released());
        for f in &ended {
            f.thawed_elsewhere(&self.context());
        }
        if let Some(lines) = mounts_changed {
            self.watched = choose(&lines);
        }
        self.retire_a_stuck_probe();
        if self.prober.is_none() {
            self.prober = Prober::start(Arc::clone(&self.probe_name)).ok();
        }
        if let Some(prober) = self.prober.as_ref().filter(|p| p.idle()) {
            prober.go(self.round());
        }
        self.adopt_freezes_freezefs_let_go();
        self.thaw_what_is_due();
    }

    /// A probe that waits for a thaw: a freeze. Its thread becomes that
    /// freeze's waiter; a new prober goes round the rest at once.
    fn retire_a_stuck_probe(&mut self) {
        let Some(prober) = self.prober.take() else {
            return;
        };
        let Some(probe) = prober.stuck(now_boot_ns().saturating_sub(STUCK_NS)) else {
            self.prober = Some(prober);
            return;
        };
        let watched = probe.watched().clone();
        match prober.retire(&probe) {
            Ok(waiting) => {
                let frozen = Frozen {
                    maker: made_by(&self.dir, watched.device),
                    watched,
                    seen_boot_ns: waiting.probe.began_boot_ns,
                    waiting,
                    kernel_freeze: false,
                    thaw_failed: false,
                };
                self.frozen.push(frozen);
                if let Some(f) = self.frozen.last() {
                    f.noticed(&self.context());
                }
                self.prober = Prober::start(Arc::clone(&self.probe_name)).ok();
                if let Some(prober) = &self.prober {
                    prober.go(self.round());
                }
            }
            Err(prober) => self.prober = Some(prober),
        }
    }

    /// A freezefs freeze whose record is gone while the filesystem stays
    /// frozen: another tool's from now on.
    fn adopt_freezes_freezefs_let_go(&mut self) {
        let mut adopted = Vec::new();
        for (i, f) in self.frozen.iter_mut().enumerate() {
            // Its thaw removes the record just after FITHAW: only a probe
            // that still waits says that the filesystem stayed frozen.
            if f.maker == Maker::Freezefs
                && made_by(&self.dir, f.watched.device) == Maker::Other
                && f.waiting.still_waits()
            {
                f.maker = Maker::Other;
                f.seen_boot_ns = now_boot_ns();
                adopted.push(i);
            }
        }
        for i in adopted {
            self.frozen[i].noticed(&self.context());
        }
    }

    /// How long to sleep: a tick, or less when a thaw falls due sooner.
    fn sleep(&self) -> Duration {
        let now = now_boot_ns();
        self.frozen
            .iter()
            .filter_map(|f| f.thaw_at_boot_ns(self.limit_s))
            .map(|at| Duration::from_nanos(at.saturating_sub(now)))
            .fold(TICK, Duration::min)
            .max(Duration::from_millis(1))
    }

    fn set_limit(&mut self, limit_s: Option<u32>) {
        if limit_s != self.limit_s {
            self.limit_s = limit_s;
            let cx = self.context();
            self.frozen.iter().for_each(|f| f.note(&cx));
        }
    }
}

/// Runs the guard until SIGTERM or SIGINT (SIGHUP rereads the
/// sysconfigtab at once; it is reread anyway when it changes).
/// `started` hears what it watches once its first round is under way.
pub(crate) fn run(
    state_dir: &Path,
    sysconfigtab: &Path,
    started: impl FnOnce(GuardStart),
) -> Result<()> {
    crate::policy::require_privilege()?;
    let signals = syscalls::blocked_signals_fd(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP])
        .map_err(|e| Error::os("signalfd", e))?;
    let dir = StateDir::open(state_dir, true)?
        .ok_or_else(|| Error::os(state_dir.display().to_string(), rustix::io::Errno::NOENT))?;
    let Some(_only_guard) = dir.try_lock_named(GUARD_LOCK)? else {
        return Err(Error::os(
            format!(
                "{}/{GUARD_LOCK}: another guard already runs for this state directory",
                state_dir.display()
            ),
            rustix::io::Errno::BUSY,
        ));
    };
    foreign_notes::remove_all(&dir);
    let state_dir_device = dir
        .mount_id()
        .ok()
        .and_then(|id| mounts::describe(id).ok())
        .map(|m| m.device);
    let mountinfo = rustix::fs::open(
        "/proc/self/mountinfo",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| Error::os("/proc/self/mountinfo", e))?;
    let probe_name: Arc<str> = format!(
        ".freezefs-guard-probe-{:016x}{:016x}",
        fresh_generation(),
        fresh_generation()
    )
    .into();
    let mut config_stamp = stamp(sysconfigtab);
    let mut guard = Guard {
        dir,
        state_dir_device,
        me: process::current(),
        limit_s: limit::read(sysconfigtab),
        prober: Some(
            Prober::start(Arc::clone(&probe_name)).map_err(|e| Error::os("prober thread", e))?,
        ),
        probe_name,
        watched: Vec::new(),
        frozen: Vec::new(),
    };
    guard.tick(Some(read_table(&mountinfo)));
    started(GuardStart {
        filesystems: guard.watched.len(),
        thaw_after_s: guard.limit_s,
    });
    loop {
        let mut fds = [
            PollFd::new(&signals, PollFlags::IN),
            PollFd::new(&mountinfo, PollFlags::PRI),
        ];
        let timeout = rustix::time::Timespec::try_from(guard.sleep()).ok();
        let _ = rustix::event::poll(&mut fds, timeout.as_ref());
        let mounts_changed = fds[1].revents().intersects(PollFlags::PRI | PollFlags::ERR);
        let mut reread = false;
        for signal in syscalls::pending_signals(signals.as_fd()) {
            match signal {
                libc::SIGHUP => reread = true,
                _ => return Ok(()),
            }
        }
        let now_stamp = stamp(sysconfigtab);
        if reread || now_stamp != config_stamp {
            config_stamp = now_stamp;
            guard.set_limit(limit::read(sysconfigtab));
        }
        guard.tick(mounts_changed.then(|| read_table(&mountinfo)));
    }
}
