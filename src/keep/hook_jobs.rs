//! The holder's hook runs, on a thread of their own so that the holder's
//! loop keeps every deadline meanwhile; the holder does not exit while one
//! is due.

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use rustix::net::SendFlags;

use crate::keep::hook_wire::hex;
use crate::keep::hooks::{self, Hooks, Target};
use crate::keep::watch::Watch;
use crate::os::fork::lock;

/// What a client asks of the hooks.
pub(crate) enum HookRequest {
    /// `hooks-freeze LIMIT DIR (DEVICE MOUNTPOINT)...`: run the freeze hooks,
    /// answer `ok` or `failed REASON`.
    Freeze(Hooks, Vec<Target>),
    /// `hooks-thaw REASON LIMIT DIR (DEVICE MOUNTPOINT)...`: run the thaw
    /// hooks after a rollback, answer `ok`.
    Thaw(String, Hooks, Vec<Target>),
}

impl HookRequest {
    /// Reads a request from its words after the verb.
    pub(crate) fn parse<'a>(verb: &str, mut words: impl Iterator<Item = &'a str>) -> Option<Self> {
        let reason = match verb {
            "hooks-freeze" => None,
            "hooks-thaw" => Some(words.next()?.to_string()),
            _ => return None,
        };
        let hooks = Hooks::from_wire(&mut words)?;
        let mut targets = Vec::new();
        let mut words = words.peekable();
        while words.peek().is_some() {
            targets.push(Target::from_wire(&mut words)?);
        }
        Some(match reason {
            None => HookRequest::Freeze(hooks, targets),
            Some(reason) => HookRequest::Thaw(reason, hooks, targets),
        })
    }
}

/// The hook runs due, run one at a time in the order they came, on a
/// thread of their own: a freeze's thaw hooks (say, resume a database) end
/// before the next freeze's freeze hooks (pause it) begin.
#[derive(Default)]
pub(crate) struct HookJobs(Arc<Queue>);

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Queue {
    /// The jobs due, and whether the worker thread is running.
    due: Mutex<(VecDeque<Job>, bool)>,
}

impl HookJobs {
    /// Whether a hook run is due or under way.
    pub(crate) fn running(&self) -> bool {
        let due = lock(&self.0.due);
        !due.0.is_empty() || due.1
    }

    /// Waits until no hook run is due or under way (a holder about to exit
    /// still owes them). Each run is bounded by its hooks' time limit.
    pub(crate) fn wait_idle(&self) {
        while self.running() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    fn spawn(&self, job: impl FnOnce() + Send + 'static) {
        let mut due = lock(&self.0.due);
        due.0.push_back(Box::new(job));
        if due.1 {
            return;
        }
        let queue = Arc::clone(&self.0);
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

    /// Runs a client's request, and answers it on `conn` when done.
    pub(crate) fn answer(&self, conn: OwnedFd, request: HookRequest) {
        self.spawn(move || {
            let answer = match request {
                HookRequest::Freeze(hooks, targets) => match hooks::run_freeze(&hooks, &targets) {
                    Ok(()) => "ok".to_string(),
                    Err(reason) => format!("failed {}", hex(reason.as_bytes())),
                },
                HookRequest::Thaw(reason, hooks, targets) => {
                    hooks::run_thaw(&hooks, &targets, &reason);
                    "ok".to_string()
                }
            };
            let _ = rustix::net::send(&conn, answer.as_bytes(), SendFlags::NOSIGNAL);
        });
    }

    /// Runs the thaw hooks of a freeze this holder kept, now over, with
    /// how it ended: its remembered end of the same generation. A freeze
    /// with no such end was never made or was rolled back by its client,
    /// which runs its thaw hooks itself.
    pub(crate) fn after_end(&self, watch: Watch) {
        let Some((hooks, target)) = watch.hooks else {
            return;
        };
        let Ok(Some(ended)) = watch.dir.read_ended(watch.device) else {
            return;
        };
        let Some(end) = ended.ended.filter(|_| ended.generation == watch.generation) else {
            return;
        };
        self.spawn(move || hooks::run_thaw(&hooks, &[target], end.reason.name()));
    }
}
