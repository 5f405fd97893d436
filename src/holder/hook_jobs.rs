//! The holder's hook runs, on a thread of their own so that the holder's
//! loop keeps every deadline meanwhile; the holder does not exit while one
//! is due.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::holder::hold_keeper::HoldKeeper;
use crate::holder::protocol::{Answer, HookRequest, Request};
use crate::hooks::{self, HookTarget, Hooks};
use crate::keep::watch::{Watch, connection_closed};
use crate::os::fork::lock;
use crate::store::state_dir::StateDir;

/// Whether the freeze of `target` that client `peer` asked hooks for was
/// handed over to its keepers: a record of it, live or ended, carries its
/// thaw hooks, and whoever ends it runs them.
fn handed_over(dir: &StateDir, target: &HookTarget, peer: u32) -> bool {
    let ours = |r: &crate::store::record::Record| r.pid == peer && r.thaw_hooks.is_some();
    let live = dir.read(target.device).ok().flatten();
    let ended = dir.read_ended(target.device).ok().flatten();
    live.iter().chain(ended.iter()).any(ours)
}

/// The most a hook request's runs may take: each hook's limit and a
/// margin, per target (a failed freeze also runs thaw hooks: twice over).
fn bound(request: &HookRequest) -> Duration {
    let (hooks, targets, rounds) = match request {
        HookRequest::Freeze(hooks, targets) => (hooks, targets, 2),
        HookRequest::Thaw(_, hooks, targets) => (hooks, targets, 1),
        // Each started, and released at once should one fail.
        HookRequest::Hold(holds, targets) => (&holds.hooks, targets, 1),
        HookRequest::Release(_) => return Duration::ZERO,
    };
    let runs = hooks::list(&hooks.dir).map_or(1, |l| l.len().max(1)) as u64
        * targets.len().max(1) as u64
        * rounds;
    Duration::from_secs(runs * (u64::from(hooks.limit_s) + 2))
}

/// The hook runs due, run one at a time in the order they came, on a
/// thread of their own: a freeze's thaw hooks (say, resume a database) end
/// before the next freeze's freeze hooks (pause it) begin. One queue for
/// all filesystems (hooks usually quiesce one application that spans
/// them); a client's wait counts the runs ahead of it instead.
#[derive(Default, Clone)]
pub(crate) struct HookJobs {
    queue: Arc<Queue>,
    /// The hold hooks, started in the queue, released by the ends of
    /// their freezes.
    pub(crate) holds: HoldKeeper,
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    /// The jobs due, whether the worker thread is running, and the most
    /// the client requests queued or running may take.
    due: Mutex<(VecDeque<Job>, bool, Duration)>,
    /// Clients whose freeze hooks ran, watched until their freeze is
    /// handed over: the holder does not exit while one is.
    watching: std::sync::atomic::AtomicUsize,
}

impl HookJobs {
    /// Whether a hook run is due or under way.
    pub(crate) fn running(&self) -> bool {
        let due = lock(&self.queue.due);
        !due.0.is_empty()
            || due.1
            || self
                .queue
                .watching
                .load(std::sync::atomic::Ordering::Acquire)
                > 0
            || self.holds.any()
    }

    /// Waits until no hook run is due or under way (a holder about to exit
    /// still owes them). Each run is bounded by its hooks' time limit.
    pub(crate) fn wait_idle(&self) {
        while self.running() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        let mut due = lock(&self.queue.due);
        due.0.push_back(Box::new(job));
        if due.1 {
            return;
        }
        let queue = Arc::clone(&self.queue);
        let started = std::thread::Builder::new()
            .name("freezefs-hooks".into())
            .spawn(move || {
                loop {
                    let next = {
                        let mut due = lock(&queue.due);
                        let next = due.0.pop_front();
                        due.1 = next.is_some();
                        next
                    };
                    match next {
                        Some(job) => job(),
                        None => return,
                    }
                }
            });
        if started.is_ok() {
            due.1 = true;
        } else {
            // No thread: run it here rather than never.
            let job = due.0.pop_back().expect("pushed above");
            drop(due);
            job();
        }
    }

    /// Runs a client's request, and answers it on `conn` when done. First
    /// it answers `queued SECONDS`: how long the runs ahead of it may take,
    /// which the client adds to its own wait. A freeze request whose client
    /// is gone (or gave up) by its turn runs nothing; one whose hooks ran
    /// keeps its connection watched until the freeze is handed over, rolled
    /// back on that connection, or its client is gone: then its thaw hooks
    /// run (reason `freezer-died`).
    pub(crate) fn answer(&self, dir: Arc<StateDir>, conn: OwnedFd, request: HookRequest) {
        let bound = bound(&request);
        let ahead = {
            let mut due = lock(&self.queue.due);
            let ahead = due.2;
            due.2 += bound;
            ahead
        };
        let queued = Answer::Queued {
            seconds: ahead.as_secs() + 1,
        };
        queued.say(&conn);
        let jobs = self.clone();
        self.spawn(move || {
            match request {
                HookRequest::Freeze(hooks, targets) => {
                    if connection_closed(&conn) {
                        // Gone, or gave up waiting: nothing ran, nothing is owed.
                    } else {
                        match hooks::run_freeze(&hooks, &targets) {
                            Ok(()) => {
                                let peer = rustix::net::sockopt::socket_peercred(&conn)
                                    .map(|c| c.pid.as_raw_nonzero().get() as u32)
                                    .unwrap_or(0);
                                Answer::Ok.say(&conn);
                                jobs.watch_owed(dir, conn, peer, hooks, targets);
                            }
                            Err(reason) => Answer::HookFailed { reason }.say(&conn),
                        }
                    }
                }
                HookRequest::Thaw(reason, hooks, targets) => {
                    hooks::run_thaw(&hooks, &targets, &reason);
                    Answer::Ok.say(&conn);
                }
                HookRequest::Hold(holds, targets) => {
                    if !connection_closed(&conn) {
                        jobs.holds.start(dir, conn, &holds, targets);
                    }
                }
                // Only on the connection its hold hooks were started on.
                HookRequest::Release(_) => Answer::Refused.say(&conn),
            }
            let mut due = lock(&jobs.queue.due);
            due.2 = due.2.saturating_sub(bound);
        });
    }

    /// Watches the connection of a client whose freeze hooks ran, on a
    /// thread of its own, until it sends its rollback (run and answered
    /// here) or closes: then, unless a record shows the freeze was handed
    /// over (its keepers run the thaw hooks), the thaw hooks are owed.
    fn watch_owed(
        &self,
        dir: Arc<StateDir>,
        conn: OwnedFd,
        peer: u32,
        hooks: Hooks,
        targets: Vec<HookTarget>,
    ) {
        let jobs = self.clone();
        use std::sync::atomic::Ordering;
        self.queue.watching.fetch_add(1, Ordering::AcqRel);
        let watched = std::thread::Builder::new()
            .name("freezefs-owed".into())
            .spawn(move || {
                let mut buf = [0u8; 64 * 1024];
                match Request::receive(&conn, &mut buf) {
                    Some(Request::Hooks(rollback @ HookRequest::Thaw(..))) => {
                        jobs.answer(dir, conn, rollback)
                    }
                    _ => {
                        let owed: Vec<HookTarget> = targets
                            .into_iter()
                            .filter(|t| !handed_over(&dir, t, peer))
                            .collect();
                        if !owed.is_empty() {
                            jobs.spawn(move || hooks::run_thaw(&hooks, &owed, "freezer-died"));
                        }
                    }
                }
                jobs.queue.watching.fetch_sub(1, Ordering::AcqRel);
            });
        if watched.is_err() {
            // No thread to watch with: the keepers' records decide alone.
            self.queue.watching.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Runs the thaw hooks of a freeze this holder kept, now over, with
    /// how it ended: its remembered end of the same generation. A freeze
    /// with no such end was never made or was rolled back by its client,
    /// which runs its thaw hooks itself.
    /// The hold hooks it was recorded with no longer wait for it.
    pub(crate) fn after_end(&self, watch: Watch) {
        let Ok(Some(ended)) = watch.dir.read_ended(watch.device) else {
            return;
        };
        let Some(end) = ended.ended.filter(|_| ended.generation == watch.generation) else {
            return;
        };
        self.holds.freeze_ended(&ended, end.reason.name());
        let Some((hooks, target)) = watch.hooks else {
            return;
        };
        self.spawn(move || hooks::run_thaw(&hooks, &[target], end.reason.name()));
    }
}
