//! Running hooks: each with a clean environment and a time limit, its
//! output kept for its event; freeze hooks in order with a rollback, thaw
//! hooks in reverse.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::events::{self, Event, Kind};
use crate::hooks::finding::{HookTarget, Hooks, list};
use crate::os::fork::lock;
use crate::os::syscalls;

/// The output of a hook kept for its event.
pub(crate) const OUTPUT_BYTES: usize = 2048;
/// How long a killed hook may take to go before it is left to exit alone.
pub(crate) const KILL_WAIT: Duration = Duration::from_secs(1);

/// What one hook run came to.
struct Run {
    /// Exited 0 in time.
    ok: bool,
    /// "exit 0", "exit 3", "killed by signal 9", "timed out after 30 s".
    status: String,
    took: Duration,
    output: String,
}

/// Runs every freeze hook for every target, in lexical order, all before
/// any flush. On the first failure, runs the thaw hooks of the runs that
/// succeeded (newest first, reason `rolled-back`) and returns what failed.
/// The environment and working directory every hook runs with, and its
/// own process group (so that it is killed with everything it started).
pub(crate) fn clean_command(hook: &Path, action: &str) -> Command {
    let mut cmd = Command::new(hook);
    cmd.arg(action)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .current_dir("/")
        .process_group(0);
    syscalls::start_unblocked(&mut cmd);
    cmd
}

/// A hook's name in its events: its file name.
pub(crate) fn hook_name(hook: &Path) -> String {
    hook.file_name().map_or_else(
        || hook.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// "exit 0", "exit 3", "killed by signal 9".
pub(crate) fn describe_status(status: std::process::ExitStatus) -> String {
    describe_exit(status.code(), status.signal())
}

/// "exit 0", "killed by signal 9", from an exit code or a signal.
pub(crate) fn describe_exit(code: Option<i32>, signal: Option<i32>) -> String {
    match (code, signal) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        (None, None) => "ended".to_string(),
    }
}

/// Adds a hook's output, when it said anything, to the text of its event.
pub(crate) fn append_output(text: &mut String, output: &str) {
    if !output.trim().is_empty() {
        text.push_str("; output: ");
        text.push_str(output.trim_end());
    }
}

pub(crate) fn run_freeze(hooks: &Hooks, targets: &[HookTarget]) -> std::result::Result<(), String> {
    let list = list(&hooks.dir).map_err(|e| e.to_string())?;
    let mut done: Vec<(&HookTarget, &Path)> = Vec::new();
    for target in targets {
        for hook in &list {
            let run = run_one(hook, "freeze", target, None, hooks.limit_s);
            if !run.ok {
                for (target, hook) in done.iter().rev() {
                    run_one(hook, "thaw", target, Some("rolled-back"), hooks.limit_s);
                }
                return Err(format!(
                    "hook {} freeze {}: {}",
                    hook.display(),
                    target.mount_point.display(),
                    run.status
                ));
            }
            done.push((target, hook));
        }
    }
    Ok(())
}

/// Runs every thaw hook for every target, in reverse lexical order, with
/// the reason the freeze ended; failures are logged only.
pub(crate) fn run_thaw(hooks: &Hooks, targets: &[HookTarget], reason: &str) {
    let Ok(mut list) = list(&hooks.dir) else {
        return;
    };
    list.reverse();
    for target in targets {
        for hook in &list {
            run_one(hook, "thaw", target, Some(reason), hooks.limit_s);
        }
    }
}

/// Runs one hook, bounded by `limit_s`, and sends its event.
fn run_one(
    hook: &Path,
    action: &str,
    target: &HookTarget,
    reason: Option<&str>,
    limit_s: u32,
) -> Run {
    let started = Instant::now();
    let run = spawn_and_wait(
        hook,
        action,
        target,
        reason,
        Duration::from_secs(limit_s.into()),
    )
    .unwrap_or_else(|e| Run {
        ok: false,
        status: format!("could not run: {e}"),
        took: started.elapsed(),
        output: String::new(),
    });
    let name = hook_name(hook);
    let mut text = format!(
        "hook {name} {action}{}: {} in {:.1} ms",
        reason.map_or(String::new(), |r| format!(" ({r})")),
        run.status,
        run.took.as_secs_f64() * 1000.0
    );
    append_output(&mut text, &run.output);
    events::emit(&Event {
        kind: if run.ok { Kind::Hook } else { Kind::HookFailed },
        mount_point: &target.mount_point,
        device: Some(target.device),
        pid: std::process::id(),
        uid: rustix::process::getuid().as_raw(),
        timeout: None,
        reason: &text,
        tag: None,
    });
    run
}

fn spawn_and_wait(
    hook: &Path,
    action: &str,
    target: &HookTarget,
    reason: Option<&str>,
    limit: Duration,
) -> std::io::Result<Run> {
    let started = Instant::now();
    let (reader, writer) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let mut cmd = clean_command(hook, action);
    cmd.arg(&target.mount_point)
        .env("FREEZEFS_MOUNT_POINT", &target.mount_point)
        .env("FREEZEFS_DEVICE", target.device.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer.try_clone()?))
        .stderr(Stdio::from(writer));
    if let Some(reason) = reason {
        cmd.env("FREEZEFS_THAW_REASON", reason);
    }
    let mut child = cmd.spawn()?;
    drop(cmd);
    // Read on a thread of its own: a hook that fills the pipe must not
    // stall, and one whose children keep it open must not hold us.
    let output = Arc::new(Output::default());
    let filled = Arc::clone(&output);
    std::thread::Builder::new()
        .name("freezefs-hook-output".into())
        .spawn(move || filled.read_all(reader))?;
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid");
    let exited = wait_exit(pid, limit);
    let status = if exited {
        child.wait()?
    } else {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        if !wait_exit(pid, KILL_WAIT) {
            // Stuck in the kernel (a write to a frozen filesystem): reaped
            // whenever it goes, by a thread that waits for nothing else.
            std::thread::spawn(move || child.wait());
            return Ok(Run {
                ok: false,
                status: format!(
                    "timed out after {} s, and could not be killed",
                    limit.as_secs()
                ),
                took: started.elapsed(),
                output: output.text(),
            });
        }
        let _ = child.wait();
        return Ok(Run {
            ok: false,
            status: format!("timed out after {} s, killed", limit.as_secs()),
            took: started.elapsed(),
            output: output.text(),
        });
    };
    let took = started.elapsed();
    let status_text = describe_status(status);
    Ok(Run {
        ok: status.success(),
        status: status_text,
        took,
        output: output.text(),
    })
}

/// A hook's output as it is read: the first [`OUTPUT_BYTES`], and whether
/// the pipe reached its end. Reading stops once the hook has exited and a
/// short grace has passed ([`Output::text`]), even when a daemon it started
/// keeps the pipe open: its reader thread and fd go then.
#[derive(Default)]
pub(crate) struct Output {
    kept: Mutex<(Vec<u8>, bool)>,
    ended: Condvar,
    /// Set by [`Output::text`]: stop reading.
    done: std::sync::atomic::AtomicBool,
}

/// How often the reader looks whether it should stop.
const READER_TICK_MS: i64 = 20;

impl Output {
    pub(crate) fn read_all(&self, reader: std::os::fd::OwnedFd) {
        let mut buf = [0u8; 4096];
        let tick = rustix::time::Timespec {
            tv_sec: 0,
            tv_nsec: READER_TICK_MS * 1_000_000,
        };
        while !self.done.load(std::sync::atomic::Ordering::Acquire) {
            let mut fds = [rustix::event::PollFd::new(
                &reader,
                rustix::event::PollFlags::IN,
            )];
            match rustix::event::poll(&mut fds, Some(&tick)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {}
                Err(_) => break,
            }
            match rustix::io::read(&reader, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let mut kept = lock(&self.kept);
                    let room = OUTPUT_BYTES.saturating_sub(kept.0.len());
                    kept.0.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(_) => break,
            }
        }
        lock(&self.kept).1 = true;
        self.ended.notify_all();
    }

    /// What was read; waits a moment for the end of the output of a hook
    /// that has exited, never for its children's, then stops the reader.
    pub(crate) fn text(&self) -> String {
        let kept = lock(&self.kept);
        let (kept, _) = self
            .ended
            .wait_timeout_while(kept, Duration::from_millis(20), |k| !k.1)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.done.store(true, std::sync::atomic::Ordering::Release);
        String::from_utf8_lossy(&kept.0).into_owned()
    }
}

/// Waits until `pid` exits (without reaping it), at most `limit`: through
/// a pidfd, so that the wake comes with the exit.
pub(crate) fn wait_exit(pid: rustix::process::Pid, limit: Duration) -> bool {
    let Ok(pidfd) = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()) else {
        return false;
    };
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let timeout = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        let mut fds = [rustix::event::PollFd::new(
            &pidfd,
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(n) if n > 0 => return true,
            Ok(_) => return false,
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => return false,
        }
    }
}
