//! FREEZE, one filesystem or several all-or-nothing (VxFS `VX_FREEZE_ALL`):
//! check everything and open every fd first, hand each freeze to the holder,
//! record it, flush all in parallel while writes still flow, then FIFREEZE
//! them in parallel (a mount only after the mounts inside it), under one
//! deadline. On any failure the ones already frozen are thawed, newest
//! first: nothing is left.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use crate::config;
use crate::error::{Error, Result};
use crate::events::{Event, Kind, Logger};
use crate::holder::client::{self, Handoff, Pending, Watching};
use crate::holds::HoldHooks;
use crate::hooks::{self, HookTarget, Hooks};
use crate::keep::end::record_thawed_elsewhere;
use crate::keep::helper_thread;
use crate::keep::watch::Watch;
use crate::ops::before_flush::Asked;
use crate::ops::freeze_window;
use crate::ops::resolve::Resolved;
use crate::ops::settings::Settings;
use crate::os::mounts::Device;
use crate::os::process::{self, now_boot_ns, now_unix_ns};
use crate::os::syscalls;
use crate::policy::{self, ProtectedNames, Protection};
use crate::store::hold_notes::HoldNote;
use crate::store::liveness::Over;
use crate::store::record::{Phase, Record};
use crate::store::state_dir::{SbLock, StateDir};
use crate::timeout::Timeout;

/// A freeze this call made.
pub(crate) struct Frozen {
    pub(crate) device: Device,
    pub(crate) generation: u64,
    /// The fd the freeze was made through (opened before FIFREEZE).
    pub(crate) mount_fd: OwnedFd,
}

/// One filesystem of a batch, from checks to FIFREEZE.
struct Member {
    named: Resolved,
    mount_fd: OwnedFd,
    record: Option<Record>,
    pending: Option<Pending>,
    handoff: Option<Handoff>,
    /// A directory on it for the holder's waiter, opened with the rest.
    waiter_dir: Option<OwnedFd>,
}

impl Member {
    fn device(&self) -> Device {
        self.named.device()
    }

    fn target(&self) -> HookTarget {
        HookTarget {
            device: self.device(),
            mount_point: self.named.mount.mount_point.clone(),
        }
    }

    /// The holder has the attempt: its pid and fd go into the record.
    fn handed_off(&mut self, handoff: Handoff) {
        if let Some(record) = &mut self.record {
            record.holder_pid = Some(handoff.holder_pid);
            record.holder_fd = handoff.holder_fd;
        }
        self.handoff = Some(handoff);
    }
}

/// Before anything runs for it: a member frozen through freezefs fails the
/// batch; a recorded freeze that is over (its keepers have not ended it
/// yet) is thawed; a corrupt record will be overwritten (the kernel says
/// whether it is frozen).
fn check_old_records(dir: &StateDir, members: &[Member]) -> Result<()> {
    for m in members {
        match dir.read(m.device()) {
            Ok(Some(old)) => match Over::of(&old, now_boot_ns(), false) {
                None => return Err(Error::AlreadyFrozen(m.named.given.clone())),
                Some(over) if over.needs_thaw() => {
                    let _ = syscalls::fithaw(&m.mount_fd);
                }
                Some(_) => {}
            },
            Ok(None) | Err(Error::CorruptRecord { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Freezes every filesystem of `named` all or nothing, under one deadline.
pub(crate) fn freeze_batch(
    settings: &Settings,
    named: Vec<Resolved>,
    timeout: Timeout,
) -> Result<Vec<Frozen>> {
    if named.is_empty() {
        return Err(Error::InvalidArgument("no mount point given"));
    }
    let dir = StateDir::open(&settings.state_dir, true)?
        .ok_or_else(|| Error::os("state directory", rustix::io::Errno::NOENT))?;
    let hooks = hooks::find(&settings.hooks_dir, &settings.sysconfigtab)?;
    let holds = HoldHooks::find(&settings.hold_dir, &settings.sysconfigtab)?;
    let protected_superblocks = policy::ProtectedSuperblocks::resolve(dir.mount_id()?);
    let mut holds_protected = false;
    let mut members: Vec<Member> = Vec::with_capacity(named.len());
    for named in named {
        let device = named.device();
        let reasons: Vec<Protection> = named
            .protected
            .map(Protection::Named)
            .into_iter()
            .chain(protected_superblocks.of(device))
            .collect();
        let holds_state_dir = reasons.contains(&Protection::HoldsStateDir);
        let protected_name = reasons.iter().find_map(|why| match why {
            Protection::Named(name) => Some(*name),
            Protection::HoldsStateDir => None,
        });
        // AdvFS's refusal names the protected name first; under the shim
        // the state directory's filesystem is the one refusal left.
        match (settings.protected_names, protected_name) {
            (ProtectedNames::Refuse, Some(name)) => {
                let is_the_name = named.protected.is_some() || named.given == Path::new(name);
                return Err(Error::Protected {
                    what: protected_what(name, is_the_name),
                    path: named.given,
                });
            }
            _ if holds_state_dir => {
                return Err(Error::HoldsStateDir {
                    path: named.mount.mount_point.clone(),
                    state_dir: settings.state_dir.clone(),
                });
            }
            (ProtectedNames::FreezeCapped, Some(_)) => holds_protected = true,
            (_, None) => {}
        }
        if members.iter().any(|m| m.device() == device) {
            continue;
        }
        let mount_fd = named.target.open_for_ioctl()?;
        let waiter_dir = named.directory_fd();
        members.push(Member {
            named,
            mount_fd,
            record: None,
            pending: None,
            handoff: None,
            waiter_dir,
        });
    }
    let asked_s = timeout.resolve(&settings.sysconfigtab)?;
    let cap_s = holds_protected.then(|| config::protected_max_timeout(&settings.sysconfigtab));
    let timeout_s = match cap_s {
        Some(cap) => Some(asked_s.map_or(cap, |asked| asked.min(cap))),
        None => asked_s,
    };
    let frozen_reason = match cap_s {
        Some(cap) if timeout_s != asked_s => {
            format!("frozen on request; a protected filesystem: deadline capped at {cap} s")
        }
        _ => "frozen on request".to_string(),
    };

    // Locks in device order, so that concurrent batches cannot deadlock.
    let mut devices: Vec<Device> = members.iter().map(Member::device).collect();
    devices.sort();
    let _locks: Vec<SbLock> = devices
        .iter()
        .map(|&d| dir.lock(d))
        .collect::<Result<_>>()?;

    // Every freeze hook, for every member, before the first flush.
    let exe = settings.holder();
    let targets: Vec<HookTarget> = members.iter().map(Member::target).collect();
    check_old_records(&dir, &members)?;
    // Kept until the freeze is recorded with its hooks, or rolled back.
    let (mut asked, hold_notes) =
        Asked::before_flush(&dir, exe.clone(), hooks.clone(), holds, targets)?;

    // Connected now: after FIFREEZE, reporting looks no path up.
    let logger = Logger::connect();
    // Likewise the helper thread exists before the freeze window.
    if timeout_s.is_some() {
        helper_thread::start().map_err(|e| Error::os("starting the helper thaw thread", e))?;
    }
    let tag = settings.event_tag.as_deref();
    let outcome = begin(
        &exe,
        &dir,
        &mut members,
        timeout_s,
        hooks.as_ref(),
        &hold_notes,
        tag,
    )
    .and_then(|()| {
        let fds: Vec<BorrowedFd<'_>> = members.iter().map(|m| m.mount_fd.as_fd()).collect();
        freeze_window::presync(&fds);
        // A holder started for this freeze answers before FIFREEZE (it
        // may still be settling in); one that was running answers while
        // FIFREEZE flushes, off the freeze's path (see
        // `take_answers_while_frozen`).
        take_answers_of_started_holders(&mut members)?;
        fifreeze_members(&mut members)?;
        let silent = take_answers_while_frozen(&mut members);
        if !matches!(silent, Ok(false)) {
            for m in members.iter().rev() {
                let _ = syscalls::fithaw(&m.mount_fd);
            }
        }
        if silent? {
            // No holder is started inside the freeze window (an exec, and
            // a wait for it to settle, while writers wait): undone above,
            // handed to the holder that answers now, frozen again.
            for m in members.iter_mut() {
                if let Some(pending) = m.pending.take() {
                    m.handed_off(pending.send_to_new_holder(&dir)?);
                }
            }
            fifreeze_members(&mut members)?;
        }
        start_watches(&mut members);
        Ok(())
    });
    if let Err(e) = outcome {
        for m in &members {
            if m.record.is_some() {
                let _ = dir.remove(m.device());
            }
        }
        asked.roll_back(&dir);
        return Err(e);
    }
    // The freeze window: from here on only the state directory, which is
    // never on a frozen filesystem, is touched; no path lookup.
    let dir = Arc::new(dir);
    let frozen =
        commit(Arc::clone(&dir), &members, timeout_s).inspect_err(|_| asked.roll_back(&dir))?;
    for m in &members {
        if let Some(record) = &m.record {
            logger.send(&Event {
                kind: Kind::Frozen,
                mount_point: &record.mount_point,
                device: Some(record.device),
                pid: record.pid,
                uid: record.uid,
                timeout: Some(timeout_s),
                reason: &frozen_reason,
                tag: record.tag.as_deref(),
            });
        }
    }
    confirm_watches(&dir, &members)?;
    Ok(frozen)
}

/// Reads, before FIFREEZE, the answer of each holder started for this
/// freeze (it may still be settling in): it has the attempt, and its pid
/// and fd go into the record.
fn take_answers_of_started_holders(members: &mut [Member]) -> Result<()> {
    for m in members.iter_mut() {
        if m.pending.as_ref().is_some_and(Pending::to_running_holder) {
            continue;
        }
        if let Some(pending) = m.pending.take() {
            let said = pending.answer_here().map_err(|(_, silent)| silent)?;
            m.handed_off(said?);
        }
    }
    Ok(())
}

/// Reads, just after FIFREEZE, the answers of holders that were running:
/// they took the attempts while FIFREEZE flushed. The attempt, with the
/// fd, is in the holder's queue from the moment it was sent, before the
/// record and FIFREEZE, so a caller killed now leaves it to the holder all
/// the same, which finds the `freezing` record of a dead freezer and undoes
/// it. True when a holder was silent (exiting as we connected, or killed
/// while a waiter of its waits): its attempt is kept for another holder,
/// which is not started here. A refusal is an error.
fn take_answers_while_frozen(members: &mut [Member]) -> Result<bool> {
    let mut silent = false;
    for m in members.iter_mut() {
        let Some(pending) = m.pending.take() else {
            continue;
        };
        match pending.answer_here() {
            Ok(said) => m.handed_off(said?),
            Err((pending, _)) => {
                m.pending = Some(pending);
                silent = true;
            }
        }
    }
    Ok(silent)
}

/// FIFREEZE every member (see [`freeze_window::fifreeze_all`]) and note in
/// its record when it froze; a failure is reported in the contract's terms.
fn fifreeze_members(members: &mut [Member]) -> Result<()> {
    let fds: Vec<BorrowedFd<'_>> = members.iter().map(|m| m.mount_fd.as_fd()).collect();
    let mount_points: Vec<&Path> = members
        .iter()
        .map(|m| m.named.mount.mount_point.as_path())
        .collect();
    match freeze_window::fifreeze_all(&fds, &mount_points) {
        Ok(times) => {
            for (m, at) in members.iter_mut().zip(times) {
                if let Some(record) = &mut m.record {
                    record.frozen_at_boot_ns = at.boot_ns;
                    record.frozen_at_unix_ns = at.unix_ns;
                }
            }
            Ok(())
        }
        Err((i, e)) => {
            let named = &members[i].named;
            Err(match e.raw_os_error() {
                Some(libc::EBUSY) => Error::AlreadyFrozen(named.given.clone()),
                Some(libc::EOPNOTSUPP) => Error::Unsupported {
                    path: named.given.clone(),
                    fs_type: named.mount.fs_type.clone(),
                },
                _ => Error::os(format!("{}: FIFREEZE", named.given.display()), e),
            })
        }
    }
}

/// Starts the holder's waiter of each freeze just made, before anyone hears
/// of it, so that it waits on this very freeze (see
/// [`crate::keep::kernel_truth`]); its thread goes into the record. Confirmed
/// by [`confirm_watches`] once the records are written, which gives it the
/// time to block.
fn start_watches(members: &mut [Member]) {
    for m in members.iter_mut() {
        let (Some(record), Some(handoff)) = (&mut m.record, &m.handoff) else {
            continue;
        };
        record.watcher = handoff.start_watch(m.waiter_dir.as_ref().map(AsFd::as_fd));
    }
}

/// Checks that each waiter waits. A freeze another tool thawed in the
/// meantime is remembered as such (THAW and QUERY will say so); one whose
/// waiter cannot wait (a read-only mount) keeps its record without a
/// watcher, which then answers alone.
fn confirm_watches(dir: &StateDir, members: &[Member]) -> Result<()> {
    for m in members {
        let (Some(thread), Some(handoff)) = (m.record.as_ref().and_then(|r| r.watcher), &m.handoff)
        else {
            continue;
        };
        let watching = handoff.confirm_watch(thread);
        if matches!(watching, Watching::Thread(..)) {
            continue;
        }
        // Under the locks this FREEZE still holds: the record as committed.
        let Some(mut committed) = dir.read(m.device())? else {
            continue;
        };
        if watching == Watching::Ended {
            record_thawed_elsewhere(dir, &committed, false)?;
            helper_thread::forget(m.device());
        } else {
            committed.watcher = None;
            dir.write(&committed)?;
        }
    }
    Ok(())
}

/// Hands each attempt to the holder, records it.
fn begin(
    exe: &Path,
    dir: &StateDir,
    members: &mut [Member],
    timeout_s: Option<u32>,
    hooks: Option<&Hooks>,
    holds: &[HoldNote],
    tag: Option<&str>,
) -> Result<()> {
    let (pid, pid_start) = process::current();
    for m in members.iter_mut() {
        let device = m.device();
        let started = now_boot_ns();
        let record = Record {
            generation: process::fresh_generation(),
            boot_id: process::boot_id().to_string(),
            device,
            fs_type: m.named.mount.fs_type.clone(),
            mount_point: m.named.mount.mount_point.clone(),
            phase: Phase::Freezing,
            pid,
            pid_start,
            uid: rustix::process::getuid().as_raw(),
            frozen_at_unix_ns: now_unix_ns(),
            frozen_at_boot_ns: started,
            timeout_s,
            deadline_boot_ns: deadline(started, timeout_s),
            holder_pid: None,
            holder_fd: None,
            thawer: None,
            watcher: None,
            thaw_hooks: hooks.map(|h| (h.limit_s, h.dir.clone())),
            ended: None,
            tag: tag.map(str::to_string),
            holds: holds.to_vec(),
            hold_broken: None,
        };
        // The attempt is in the holder's queue before its record exists
        // and before FIFREEZE, and our connection stays open until we are
        // done: a caller killed at any point leaves a freeze that is kept
        // to its deadline or undone, never one that nobody keeps. Its
        // answer is read after the flush (see the `take_answers_*`).
        let target = m.target();
        m.pending = Some(client::hold(
            dir,
            exe,
            device,
            record.generation,
            m.mount_fd.as_fd(),
            hooks.map(|hooks| (hooks, &target)),
        )?);
        dir.write(&record)?;
        m.record = Some(record);
    }
    Ok(())
}

/// How a refusal names what was refused: the name the path is, or the
/// name whose filesystem it lies on.
fn protected_what(name: &str, is_the_name: bool) -> String {
    if is_the_name {
        name.to_string()
    } else {
        format!("the filesystem of {name}")
    }
}

fn deadline(from_boot_ns: u64, timeout_s: Option<u32>) -> Option<u64> {
    timeout_s.map(|s| from_boot_ns + u64::from(s) * 1_000_000_000)
}

/// Records every member frozen under one deadline and arms the helper
/// thread; if that fails, undoes every freeze.
fn commit(dir: Arc<StateDir>, members: &[Member], timeout_s: Option<u32>) -> Result<Vec<Frozen>> {
    let all_frozen = now_boot_ns();
    let common_deadline = deadline(all_frozen, timeout_s);
    let mut kept: Result<()> = Ok(());
    for m in members {
        let mut record = m.record.clone().expect("recorded in begin");
        record.phase = Phase::Frozen;
        record.deadline_boot_ns = common_deadline;
        kept = kept
            .and_then(|()| dir.write(&record))
            .and_then(|()| match common_deadline {
                None => Ok(()),
                Some(at) => {
                    let mount_fd = m
                        .mount_fd
                        .try_clone()
                        .map_err(|e| Error::os("dup mount fd", e))?;
                    let watch = Watch::in_caller(
                        Arc::clone(&dir),
                        m.device(),
                        record.generation,
                        at,
                        mount_fd,
                    );
                    helper_thread::arm(watch)
                        .map_err(|e| Error::os("starting the helper thaw thread", e))
                }
            });
    }
    if let Err(e) = kept {
        // A freeze whose deadline cannot be kept is not made at all.
        for m in members.iter().rev() {
            let _ = syscalls::fithaw(&m.mount_fd);
            let _ = dir.remove(m.device());
            helper_thread::forget(m.device());
        }
        return Err(e);
    }
    // Done: the holder now keeps each freeze by its record alone (dropping
    // the handoffs closes the connections).
    members
        .iter()
        .map(|m| {
            Ok(Frozen {
                device: m.device(),
                generation: m.record.as_ref().expect("recorded").generation,
                mount_fd: m
                    .mount_fd
                    .try_clone()
                    .map_err(|e| Error::os("dup mount fd", e))?,
            })
        })
        .collect()
}
