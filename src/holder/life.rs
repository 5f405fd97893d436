//! The holder's life beyond serving: where it lives (out of its callers'
//! cgroups, out of the OOM killer's reach, or where systemd put it), what
//! it takes over when it starts (the records a dead holder kept), what it
//! does when asked to stop (thaw what it keeps), and who replaces it when
//! it is killed (a warden, started beside it).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::events::{self, Event, Kind};
use crate::holder::client;
use crate::holder::hook_jobs::HookJobs;
use crate::hooks::{HookTarget, Hooks};
use crate::keep::end::{Ending, end_as_stopped};
use crate::keep::kernel_truth::{self, Seen, Waiter, WatcherSays};
use crate::keep::watch::Watch;
use crate::os::fork::lock;
use crate::os::{cgroup, process, syscalls, target};
use crate::store::record::{Phase, Record};
use crate::store::state_dir::StateDir;

/// The cgroup (v2) a holder that no service manager placed moves into.
pub(crate) const HOLDER_CGROUP: &str = "freezefs.holder";

/// How long a holder asked to stop keeps trying to thaw what it keeps (a
/// THAW or QUERY may hold a superblock's lock a moment).
const STOP_LIMIT: Duration = Duration::from_millis(900);

/// The listening socket systemd passed (`LISTEN_FDS`, `LISTEN_PID`: see
/// sd_listen_fds(3)), as fd 3; `None` when started by the library.
pub(crate) fn socket_activated() -> Option<OwnedFd> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        == Some(std::process::id());
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<u32>().ok());
    // fd 3 is ours by the protocol.
    (for_us && count == Some(1)).then(|| syscalls::take_inherited_fd(3))
}

/// [`settle_in`] on a thread of its own, off the path of a QUERY that
/// started the holder: a cgroup migration can take milliseconds, and it
/// moves every thread whenever it happens. A freeze waits for it
/// ([`wait_settled`]).
pub(crate) fn settle_in_background(activated: bool, cgroup_name: &'static str) {
    let started = std::thread::Builder::new()
        .name("freezefs-settle".into())
        .spawn(move || {
            settle_in(activated, cgroup_name);
            mark_settled();
        });
    if started.is_err() {
        settle_in(activated, cgroup_name);
        mark_settled();
    }
}

static SETTLED: (Mutex<bool>, std::sync::Condvar) = (Mutex::new(false), std::sync::Condvar::new());

fn mark_settled() {
    *lock(&SETTLED.0) = true;
    SETTLED.1.notify_all();
}

/// Waits (at most a second) until [`settle_in_background`] is done: before the holder
/// takes a freeze, so that the freeze never depends on its caller's cgroup.
pub(crate) fn wait_settled() {
    let mut done = lock(&SETTLED.0);
    let until = Instant::now() + Duration::from_secs(1);
    while !*done {
        let Some(left) = until.checked_duration_since(Instant::now()) else {
            return;
        };
        done = match SETTLED.1.wait_timeout(done, left) {
            Ok((guard, _)) => guard,
            Err(poisoned) => poisoned.into_inner().0,
        };
    }
}

/// Where a keeper lives: a systemd-started holder stays in the cgroup
/// systemd made for it; one the library started, and every warden, leaves
/// its caller's cgroups. All refuse the OOM killer. Problems are logged,
/// not fatal: a keeper in its caller's cgroup still keeps every other
/// promise.
pub(crate) fn settle_in(activated: bool, cgroup_name: &str) {
    if !activated {
        let moved = cgroup::move_out(cgroup_name);
        for (at, e) in &moved.failed {
            note(&format!(
                "could not leave the caller's cgroup for {}: {e}; a stop or freeze of that cgroup reaches the holder",
                at.display()
            ));
        }
    }
    if let Err(e) = cgroup::refuse_oom_kill() {
        note(&format!("could not set oom_score_adj -1000: {e}"));
    }
}

fn note(reason: &str) {
    events::emit(&Event {
        kind: Kind::KeeperWarning,
        mount_point: Path::new("-"),
        device: None,
        pid: std::process::id(),
        uid: rustix::process::getuid().as_raw(),
        timeout: None,
        reason,
        tag: None,
    });
}

/// Takes over every freeze on record whose holder is gone (killed, crashed,
/// or killed and unable to finish exiting): a fresh fd on its mount, a
/// waiter of its own, its thaw hooks. Expired ones end at the first review,
/// with the kernel's word that they are still the recorded freeze.
pub(crate) fn adopt(dir: &Arc<StateDir>, watches: &Mutex<Vec<Watch>>) -> usize {
    let Ok(devices) = dir.recorded_devices() else {
        return 0;
    };
    let mut adopted = 0;
    for device in devices {
        let Ok(Some(record)) = dir.read(device) else {
            continue;
        };
        // A freezer still in its attempt is talking to a holder (maybe us,
        // queued): its `hold` is how that one takes it.
        let in_attempt =
            record.phase == Phase::Freezing && process::is_alive(record.pid, record.pid_start);
        if holder_lives(&record) || in_attempt {
            continue;
        }
        let Some(mount_fd) = reopen_mount(&record) else {
            continue;
        };
        kill_orphaned_holds(&record);
        let waiter = watch_again(dir, &record, mount_fd.as_fd());
        let hooks = owed_hooks(&record);
        lock(watches).push(Watch::adopted(
            Arc::clone(dir),
            record,
            mount_fd,
            waiter,
            hooks,
        ));
        adopted += 1;
    }
    adopted
}

/// Whether the holder a record names runs: neither gone nor a zombie (a
/// killed holder whose waiter keeps it from finishing its exit is dead).
pub(crate) fn holder_lives(record: &Record) -> bool {
    record
        .holder_pid
        .is_some_and(|pid| process::start_time(pid).is_some())
}

/// The hold hooks of a freeze whose holder died: their stdin closed with
/// it, and nobody can tell them when the freeze ends; any still running is
/// killed with its process group (its start time checked against pid
/// reuse). THAW then finds them gone: the hold broke.
pub(crate) fn kill_orphaned_holds(record: &Record) {
    for note in &record.holds {
        if process::is_alive(note.pid, note.pid_start) {
            if let Some(pid) = rustix::process::Pid::from_raw(note.pid as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// The thaw hooks a record says its freeze is owed.
pub(crate) fn owed_hooks(record: &Record) -> Option<(Hooks, HookTarget)> {
    record.thaw_hooks.as_ref().map(|(limit_s, dir)| {
        (
            Hooks {
                dir: dir.clone(),
                limit_s: *limit_s,
                count: 0,
            },
            HookTarget {
                device: record.device,
                mount_point: record.mount_point.clone(),
            },
        )
    })
}

/// An fd for FITHAW on the filesystem a record names. First the holder's
/// own fd, reopened through its watcher's fd table (`/proc/TID/fd/N`),
/// which stays while the watcher waits, also in a killed holder: no path
/// lookup, and the very mount even when the freezer named it in a mount
/// namespace of its own. Else through the mount point, only if that is
/// still the root of a mount of the recorded superblock. Both only open
/// (read), which passes a frozen filesystem.
pub(crate) fn reopen_mount(record: &Record) -> Option<OwnedFd> {
    through_watcher(record).or_else(|| {
        let named = target::Target::open(&record.mount_point).ok()?;
        let mount = named.mount().ok()?;
        (named.facts.is_mount_root && mount.device == record.device)
            .then(|| named.open_for_ioctl().ok())
            .flatten()
    })
}

fn through_watcher(record: &Record) -> Option<OwnedFd> {
    let (tid, start) = record.watcher?;
    let fd = record.holder_fd?;
    // The recorded thread, not another that took its id.
    if !process::start_time(tid).is_some_and(|now| process::same_start(now, start)) {
        return None;
    }
    let held = target::Target::open(Path::new(&format!("/proc/{tid}/fd/{fd}"))).ok()?;
    held.facts
        .is_mount_root
        .then(|| held.open_for_ioctl().ok())
        .flatten()
}

/// Starts a waiter of this holder on an adopted freeze and, once the kernel
/// holds it, records it and this holder in place of the dead one's. A
/// filesystem thawed already lets it through: the first review then finds
/// out how (the dead holder's watcher tells).
fn watch_again(dir: &StateDir, record: &Record, mount_fd: BorrowedFd<'_>) -> Option<Waiter> {
    let (thread_end, teller) = kernel_truth::control_line().ok()?;
    let waiter = Waiter::parked(thread_end).ok()?;
    let thread = kernel_truth::tell_go(&teller, mount_fd).ok()?;
    // The teller's end may go: the thread waits on its own from here.
    drop(teller);
    if waiter.settle(Duration::from_millis(250)) != Some(Seen::Frozen) {
        return Some(waiter);
    }
    if let Ok(Some(_lock)) = dir.try_lock(record.device) {
        if let Ok(Some(mut current)) = dir.read(record.device) {
            // A dead holder's watcher let through is the evidence that a
            // thaw came: kept for the review, not overwritten.
            let thawed_since = kernel_truth::watcher_says(&current) != WatcherSays::Waits;
            if current.generation == record.generation && !thawed_since {
                current.holder_pid = Some(std::process::id());
                current.holder_fd = u32::try_from(std::os::fd::AsRawFd::as_raw_fd(&mount_fd)).ok();
                current.watcher = Some(thread);
                let _ = dir.write(&current);
            }
        }
    }
    Some(waiter)
}

/// Asked to stop: thaws every freeze this holder keeps, records that its
/// holder was stopped, and queues the thaw hooks; gives up on a freeze
/// whose lock stays busy past [`STOP_LIMIT`].
pub(crate) fn stop_all(watches: &Mutex<Vec<Watch>>, jobs: &HookJobs) {
    let started = Instant::now();
    let mut left: Vec<Watch> = std::mem::take(&mut *lock(watches));
    while !left.is_empty() && started.elapsed() < STOP_LIMIT {
        let mut busy = Vec::new();
        for watch in left {
            match end_as_stopped(
                &watch.dir,
                watch.device,
                watch.generation,
                watch.mount_fd.as_fd(),
            ) {
                Ok(Ending::Busy) => busy.push(watch),
                _ => jobs.after_end(watch),
            }
        }
        left = busy;
        if !left.is_empty() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Starts a warden for `dir` unless one runs (it holds `lock.warden`).
pub(crate) fn ensure_warden(dir: &StateDir, systemd: bool) {
    match dir.try_lock_named(client::WARDEN_LOCK_NAME) {
        Ok(Some(free)) => drop(free),
        _ => return,
    }
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return;
    };
    if let Err(e) = client::start_warden(&exe, dir, systemd) {
        note(&format!("could not start the warden: {e}"));
    }
}
