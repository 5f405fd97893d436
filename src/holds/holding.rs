//! One hold hook's process: started, waited for until it says `ready`,
//! watched while it holds, told `thaw REASON` at the end and given its
//! grace, then its process group killed.

use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitIdOptions};

use crate::events::{self, Event, Kind};
use crate::holds::ready::{read_ready, ready_text, spawn};
use crate::hooks::running::{
    KILL_WAIT, Output, append_output, describe_exit, describe_status, hook_name, wait_exit,
};
use crate::hooks::{HookTarget, list};
use crate::os::fork::lock;
use crate::os::process::{now_unix_ns, start_time};

/// Called on the hold's own thread when a hold hook exits before it was
/// told its freeze ended.
pub(crate) type OnBroken = Arc<dyn Fn(&Holding, &Exit) + Send + Sync>;

/// How a hold hook's process ended.
#[derive(Debug, Clone)]
pub(crate) struct Exit {
    /// "exit 0", "killed by signal 9".
    pub(crate) why: String,
    pub(crate) at_unix_ns: u64,
    /// From its `ready` to its exit.
    pub(crate) held: Duration,
}

#[derive(Default)]
struct Life {
    /// Told its freeze ended, with this reason.
    released: Option<String>,
    exited: Option<Exit>,
}

/// A hold hook that said `ready` and holds its lock.
pub(crate) struct Holding {
    pub(crate) name: String,
    pub(crate) pid: u32,
    pub(crate) pid_start: u64,
    /// What it said after `ready`.
    pub(crate) ready_text: String,
    pub(crate) targets: Vec<HookTarget>,
    ready_at: Instant,
    /// The write end of its stdin: closed after `thaw REASON`.
    stdin: Mutex<Option<OwnedFd>>,
    /// Reaped only after its process group is killed: while it is a zombie
    /// its pid, the group's id, cannot be reused.
    child: Mutex<Option<Child>>,
    life: Mutex<Life>,
    changed: Condvar,
    output: Arc<Output>,
}

/// The mount points of `targets`, for events.
fn mount_points(targets: &[HookTarget]) -> String {
    targets
        .iter()
        .map(|t| t.mount_point.display().to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

fn send(kind: Kind, targets: &[HookTarget], text: &str) {
    let Some(first) = targets.first() else {
        return;
    };
    events::emit(&Event {
        kind,
        mount_point: &first.mount_point,
        device: Some(first.device),
        pid: std::process::id(),
        uid: rustix::process::getuid().as_raw(),
        timeout: None,
        reason: text,
        tag: None,
    });
}

/// Kills `pid`'s process group and reaps `child`, waiting for it at most
/// [`KILL_WAIT`]; one stuck in the kernel is reaped by a thread of its own.
fn kill_and_reap(pid: Pid, mut child: Child) -> Option<std::process::ExitStatus> {
    let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    if wait_exit(pid, KILL_WAIT) {
        child.wait().ok()
    } else {
        std::thread::spawn(move || child.wait());
        None
    }
}

impl Holding {
    /// Starts `hook hold MOUNTPOINT...` and waits at most `limit` for its
    /// `ready` line. A hook that is not ready in time is killed with its
    /// process group; `Err` says why, for the caller.
    pub(crate) fn start(
        hook: &Path,
        targets: &[HookTarget],
        limit: Duration,
        on_broken: OnBroken,
    ) -> Result<Arc<Holding>, String> {
        let name = hook_name(hook);
        let started = Instant::now();
        let shown = name.clone();
        let failed = |why: String, output: &Output| {
            let mut text = format!(
                "hold hook {shown} for {}: {why}; the freeze is cancelled",
                mount_points(targets)
            );
            let said = output.text();
            append_output(&mut text, &said);
            send(Kind::HoldFailed, targets, &text);
            match said.trim().lines().last() {
                Some(last) => format!("hold hook {shown}: {why}; it said: {}", last.trim()),
                None => format!("hold hook {shown}: {why}"),
            }
        };
        let output = Arc::new(Output::default());
        let spawned = spawn(hook, targets, &output);
        let (child, stdin, ready) = match spawned {
            Ok(spawned) => spawned,
            Err(e) => return Err(failed(format!("could not run: {e}"), &output)),
        };
        let pid = Pid::from_raw(child.id() as i32).expect("a child's pid");
        let said = read_ready(&ready, pid, limit).and_then(|line| {
            ready_text(&line).ok_or_else(|| {
                format!(
                    "said {:?} instead of ready",
                    String::from_utf8_lossy(&line).trim_end()
                )
            })
        });
        let ready_text = match said {
            Ok(text) => text,
            Err(why) => {
                let status = kill_and_reap(pid, child);
                let why = match status {
                    Some(status) if why.starts_with("exited") => {
                        format!("{why} ({})", describe_status(status))
                    }
                    _ => why,
                };
                return Err(failed(why, &output));
            }
        };
        let pid_start = start_time(child.id()).unwrap_or(0);
        let holding = Arc::new(Holding {
            name,
            pid: child.id(),
            pid_start,
            ready_text,
            targets: targets.to_vec(),
            ready_at: Instant::now(),
            stdin: Mutex::new(Some(stdin)),
            child: Mutex::new(None),
            life: Mutex::new(Life::default()),
            changed: Condvar::new(),
            output,
        });
        send(
            Kind::Hold,
            targets,
            &format!(
                "hold hook {} holds for {}: ready {}in {:.1} ms",
                holding.name,
                mount_points(targets),
                if holding.ready_text.is_empty() {
                    String::new()
                } else {
                    format!("{} ", holding.ready_text)
                },
                started.elapsed().as_secs_f64() * 1000.0
            ),
        );
        let watched = Arc::clone(&holding);
        let watcher = std::thread::Builder::new()
            .name("freezefs-hold".into())
            .spawn(move || watched.watch_exit(on_broken));
        match watcher {
            Ok(_) => {
                *lock(&holding.child) = Some(child);
                Ok(holding)
            }
            Err(e) => {
                kill_and_reap(pid, child);
                Err(failed(format!("could not watch it: {e}"), &holding.output))
            }
        }
    }

    /// Waits for its exit without reaping it; one before its release broke
    /// the hold.
    fn watch_exit(&self, on_broken: OnBroken) {
        let pid = Pid::from_raw(self.pid as i32).expect("a child's pid");
        let status = loop {
            match rustix::process::waitid(
                rustix::process::WaitId::Pid(pid),
                WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
            ) {
                Err(rustix::io::Errno::INTR) => continue,
                other => break other.ok().flatten(),
            }
        };
        let why = status.map_or("ended".to_string(), |s| {
            describe_exit(s.exit_status(), s.terminating_signal())
        });
        let exit = Exit {
            why,
            at_unix_ns: now_unix_ns(),
            held: self.ready_at.elapsed(),
        };
        let broken = {
            let mut life = lock(&self.life);
            life.exited = Some(exit.clone());
            self.changed.notify_all();
            life.released.is_none()
        };
        if broken {
            let mut text = format!(
                "hold hook {} ended while its freeze of {} was in force, after holding {:.1} s: {}; a snapshot taken under it is not application-consistent",
                self.name,
                mount_points(&self.targets),
                exit.held.as_secs_f64(),
                exit.why
            );
            append_output(&mut text, &self.output.text());
            send(Kind::HoldBroken, &self.targets, &text);
            on_broken(self, &exit);
        }
    }

    /// Writes `thaw REASON` on its stdin and closes it, once.
    fn tell(&self, reason: &str) -> bool {
        {
            let mut life = lock(&self.life);
            if life.released.is_some() {
                return false;
            }
            life.released = Some(reason.to_string());
        }
        if let Some(stdin) = lock(&self.stdin).take() {
            let line = format!("thaw {reason}\n");
            let _ = rustix::io::write(&stdin, line.as_bytes());
        }
        true
    }

    /// After [`Holding::tell`]: waits until it exits or `deadline` passes,
    /// kills its process group (whatever it left behind), reaps it and says
    /// how it let go.
    fn finish(&self, deadline: Instant, reason: &str) {
        let exited = {
            let life = lock(&self.life);
            let (life, _) = self
                .changed
                .wait_timeout_while(
                    life,
                    deadline.saturating_duration_since(Instant::now()),
                    |l| l.exited.is_none(),
                )
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            life.exited.clone()
        };
        let held = self.ready_at.elapsed();
        if let Some(child) = lock(&self.child).take() {
            kill_and_reap(Pid::from_raw(self.pid as i32).expect("a pid"), child);
        }
        let (kind, text) = match exited {
            Some(exit) => (
                Kind::Hold,
                format!(
                    "hold hook {} let go of {} (thaw {reason}): {} after holding {:.1} s",
                    self.name,
                    mount_points(&self.targets),
                    exit.why,
                    exit.held.as_secs_f64()
                ),
            ),
            None => (
                Kind::HoldFailed,
                format!(
                    "hold hook {} did not let go of {} within its grace (thaw {reason}): its process group was killed after holding {:.1} s",
                    self.name,
                    mount_points(&self.targets),
                    held.as_secs_f64()
                ),
            ),
        };
        send(kind, &self.targets, &text);
    }
}

/// Releases `holdings` together: each told `thaw REASON` (newest first),
/// then each given the same `grace` to exit, then their process groups
/// killed. Those released before are left alone.
pub(crate) fn release_all(holdings: &[Arc<Holding>], reason: &str, grace: Duration) {
    let told: Vec<&Arc<Holding>> = holdings.iter().rev().filter(|h| h.tell(reason)).collect();
    let deadline = Instant::now() + grace;
    for holding in told {
        holding.finish(deadline, reason);
    }
}

/// Starts every hold hook of `dir` in lexical order, each ready before the
/// next starts. On the first that fails, those ready are released (reason
/// `rolled-back`) and `Err` says what failed.
pub(crate) fn start_all(
    dir: &Path,
    targets: &[HookTarget],
    limit: Duration,
    grace: Duration,
    on_broken: OnBroken,
) -> Result<Vec<Arc<Holding>>, String> {
    let hooks = list(dir).map_err(|e| e.to_string())?;
    let mut ready = Vec::new();
    for hook in &hooks {
        match Holding::start(hook, targets, limit, Arc::clone(&on_broken)) {
            Ok(holding) => ready.push(holding),
            Err(why) => {
                release_all(&ready, "rolled-back", grace);
                return Err(why);
            }
        }
    }
    Ok(ready)
}
