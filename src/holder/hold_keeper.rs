//! The holder's hold hooks: started for a client, tied to the freezes
//! recorded with them, released when the last of those freezes ends (or
//! at a rollback, or when the client dies before handing a freeze over),
//! and a broken hold written into the records it broke.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::holder::protocol::{Answer, HookRequest, Request};
use crate::holds::{self, Exit, HoldHooks, Holding, OnBroken};
use crate::hooks::HookTarget;
use crate::os::fork::lock;
use crate::os::mounts::Device;
use crate::store::hold_notes::{HoldBreakNote, HoldNote};
use crate::store::record::{Phase, Record};
use crate::store::state_dir::StateDir;

/// The hold hooks of one freeze operation.
struct HeldSet {
    id: u64,
    holdings: Vec<Arc<Holding>>,
    grace: Duration,
    /// The filesystems whose freeze has not ended yet.
    pending: Vec<Device>,
}

impl HeldSet {
    /// Whether `record` was recorded with these holds.
    fn listed_in(&self, record: &Record) -> bool {
        record.holds.iter().any(|note| {
            self.holdings
                .iter()
                .any(|h| h.pid == note.pid && h.pid_start == note.pid_start)
        })
    }
}

/// Every hold set this holder keeps, and the releases under way.
#[derive(Default, Clone)]
pub(crate) struct HoldKeeper(Arc<Kept>);

#[derive(Default)]
struct Kept {
    sets: Mutex<Vec<HeldSet>>,
    releasing: AtomicU64,
    next_id: AtomicU64,
}

impl HoldKeeper {
    /// Whether a hold hook runs or is being released: the holder does not
    /// exit while one is.
    pub(crate) fn any(&self) -> bool {
        !lock(&self.0.sets).is_empty() || self.0.releasing.load(Ordering::Acquire) > 0
    }

    /// Starts the hold hooks for `targets` (on the hook queue's thread) and
    /// answers on `conn`; while they hold, `conn` is watched for a rollback
    /// or its end.
    pub(crate) fn start(
        &self,
        dir: Arc<StateDir>,
        conn: OwnedFd,
        holds: &HoldHooks,
        targets: Vec<HookTarget>,
    ) {
        let broken_dir = Arc::clone(&dir);
        let on_broken: OnBroken =
            Arc::new(move |holding: &Holding, exit: &Exit| mark_broken(&broken_dir, holding, exit));
        let started = holds::start_all(
            &holds.hooks.dir,
            &targets,
            holds.limit(),
            holds.grace(),
            on_broken,
        );
        let holdings = match started {
            Ok(holdings) => holdings,
            Err(reason) => {
                Answer::HookFailed { reason }.say(&conn);
                return;
            }
        };
        let notes: Vec<HoldNote> = holdings
            .iter()
            .map(|h| HoldNote {
                name: h.name.clone(),
                pid: h.pid,
                pid_start: h.pid_start,
                ready: h.ready_text.clone(),
            })
            .collect();
        let id = self.0.next_id.fetch_add(1, Ordering::AcqRel);
        lock(&self.0.sets).push(HeldSet {
            id,
            holdings,
            grace: holds.grace(),
            pending: targets.iter().map(|t| t.device).collect(),
        });
        Answer::Holding(notes).say(&conn);
        let keeper = self.clone();
        let watched = std::thread::Builder::new()
            .name("freezefs-holds".into())
            .spawn(move || keeper.watch_client(dir, conn, id));
        if watched.is_err() {
            // Nobody to tell a rollback from a hand-over: let go now.
            self.release(id, "rolled-back");
        }
    }

    /// Until the client rolls back (`hold-release REASON`) or closes its
    /// connection: then the freezes it did not hand over (no record of
    /// them lists these holds) are no longer waited for.
    fn watch_client(&self, dir: Arc<StateDir>, conn: OwnedFd, id: u64) {
        let mut buf = [0u8; 256];
        if let Some(Request::Hooks(HookRequest::Release(reason))) =
            Request::receive(&conn, &mut buf)
        {
            self.release(id, &reason);
            Answer::Ok.say(&conn);
            return;
        }
        let done = {
            let mut sets = lock(&self.0.sets);
            let Some(set) = sets.iter_mut().find(|s| s.id == id) else {
                return;
            };
            let handed_over = |device: Device| {
                let live = dir.read(device).ok().flatten();
                let ended = dir.read_ended(device).ok().flatten();
                live.iter().chain(ended.iter()).any(|r| set.listed_in(r))
            };
            let kept: Vec<Device> = set
                .pending
                .iter()
                .copied()
                .filter(|&d| handed_over(d))
                .collect();
            set.pending = kept;
            set.pending.is_empty()
        };
        if done {
            self.release(id, "freezer-died");
        }
    }

    /// A freeze ended (`ended` is its remembered end): the holds recorded
    /// with it no longer wait for it; those that wait for nothing more are
    /// released, told how it ended.
    pub(crate) fn freeze_ended(&self, ended: &Record, reason: &str) {
        if ended.holds.is_empty() {
            return;
        }
        let done: Vec<u64> = {
            let mut sets = lock(&self.0.sets);
            sets.iter_mut()
                .filter(|s| s.listed_in(ended))
                .filter_map(|s| {
                    s.pending.retain(|&d| d != ended.device);
                    s.pending.is_empty().then_some(s.id)
                })
                .collect()
        };
        for id in done {
            self.release(id, reason);
        }
    }

    /// Releases one set on a thread of its own: the holder's loop keeps
    /// every deadline while a hook takes its grace.
    fn release(&self, id: u64, reason: &str) {
        let set = {
            let mut sets = lock(&self.0.sets);
            let Some(at) = sets.iter().position(|s| s.id == id) else {
                return;
            };
            sets.remove(at)
        };
        self.0.releasing.fetch_add(1, Ordering::AcqRel);
        let kept = Arc::clone(&self.0);
        let (holdings, grace, reason) = (set.holdings, set.grace, reason.to_string());
        let released = holdings.clone();
        let told = reason.clone();
        let spawned = std::thread::Builder::new()
            .name("freezefs-release".into())
            .spawn(move || {
                holds::release_all(&released, &told, grace);
                kept.releasing.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            holds::release_all(&holdings, &reason, grace);
            self.0.releasing.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Asked to stop: releases every hold set (their freezes were thawed),
    /// and waits until each has let go or been killed.
    pub(crate) fn release_everything(&self, reason: &str) {
        let ids: Vec<u64> = lock(&self.0.sets).iter().map(|s| s.id).collect();
        for id in ids {
            self.release(id, reason);
        }
        while self.any() {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// A hold hook exited before it was told its freeze ended: each live record
/// that lists it (or an ended one that ended after it) says the hold broke.
/// Under each superblock's lock, on the hold's own thread: a FREEZE that
/// holds the lock is waited for.
fn mark_broken(dir: &StateDir, holding: &Holding, exit: &Exit) {
    let broken = HoldBreakNote {
        name: holding.name.clone(),
        at_unix_ns: exit.at_unix_ns,
        held_ms: exit.held.as_millis() as u64,
        why: exit.why.clone(),
    };
    let lists = |r: &Record| {
        r.holds
            .iter()
            .any(|n| n.pid == holding.pid && n.pid_start == holding.pid_start)
    };
    for target in &holding.targets {
        let Ok(_lock) = dir.lock(target.device) else {
            continue;
        };
        if let Ok(Some(mut live)) = dir.read(target.device) {
            if lists(&live) && live.phase != Phase::Thawing && live.hold_broken.is_none() {
                live.hold_broken = Some(broken.clone());
                let _ = dir.write(&live);
            }
            continue;
        }
        if let Ok(Some(mut ended)) = dir.read_ended(target.device) {
            let after = ended.ended.is_some_and(|e| e.at_unix_ns >= exit.at_unix_ns);
            if lists(&ended) && after && ended.hold_broken.is_none() {
                ended.hold_broken = Some(broken.clone());
                let _ = dir.write_ended(&ended);
            }
        }
    }
}
