//! The holder, client side, for hooks: ask the holder to run the freeze
//! hooks (waiting for the runs queued ahead too), keep that connection
//! until the freeze is handed over, and ask for a rollback's thaw hooks on
//! it.

use std::path::Path;

use crate::error::{Error, Result};
use crate::holder::client::{
    ANSWER_TIMEOUT_S, connect_or_start, connect_running, receive_within, send, unavailable,
};
use crate::holder::protocol::{Answer, HookRequest, Request};
use crate::holds::HoldHooks;
use crate::hooks::{HookTarget, Hooks};
use crate::os::fork::ParentOnlyFd;
use crate::store::hold_notes::HoldNote;
use crate::store::state_dir::StateDir;

/// The connection a freeze's hooks were asked on, kept by the freezer until
/// its freeze is handed over (recorded with its thaw hooks) or rolled back:
/// if the freezer dies first, the holder sees it close and runs the thaw
/// hooks itself.
pub(crate) struct HooksAsked(ParentOnlyFd);

/// Asks the holder to run the freeze hooks for `targets` and waits for them,
/// and for the runs queued ahead of them: `Err(HookFailed)` when one failed
/// (the holder ran the thaw hooks of those that had run).
pub(crate) fn run_freeze_hooks(
    dir: &StateDir,
    exe: &Path,
    hooks: &Hooks,
    targets: &[HookTarget],
) -> Result<HooksAsked> {
    let request = Request::Hooks(HookRequest::Freeze(hooks.clone(), targets.to_vec())).encode();
    let (answer, conn) = ask_hooks(dir, exe, &request, hook_wait(hooks, targets, 2))?;
    match Answer::parse(&answer) {
        Some(Answer::Ok) => Ok(HooksAsked(conn)),
        Some(Answer::HookFailed { reason }) => Err(Error::HookFailed {
            path: targets
                .first()
                .map(|t| t.mount_point.clone())
                .unwrap_or_default(),
            reason,
        }),
        _ => Err(unavailable(exe, format!("the holder refused: {answer}"))),
    }
}

/// The connection a freeze's hold hooks were started on, kept by the
/// freezer until its freezes are recorded with them, or rolled back: if the
/// freezer dies first, the holder sees it close and releases them.
pub(crate) struct HoldsAsked(ParentOnlyFd);

/// Asks the holder to start the hold hooks for `targets` and waits until
/// each is ready (or one failed: then those ready were released, and the
/// freeze is cancelled).
pub(crate) fn start_holds(
    dir: &StateDir,
    exe: &Path,
    holds: &HoldHooks,
    targets: &[HookTarget],
) -> Result<(HoldsAsked, Vec<HoldNote>)> {
    let request = Request::Hooks(HookRequest::Hold(holds.clone(), targets.to_vec())).encode();
    let wait = hook_wait(&holds.hooks, &[], 1) + holds.grace();
    let (answer, conn) = ask_hooks(dir, exe, &request, wait)?;
    let path = targets
        .first()
        .map(|t| t.mount_point.clone())
        .unwrap_or_default();
    match Answer::parse(&answer) {
        Some(Answer::Holding(notes)) => Ok((HoldsAsked(conn), notes)),
        Some(Answer::HookFailed { reason }) => Err(Error::HookFailed { path, reason }),
        _ => Err(unavailable(exe, format!("the holder refused: {answer}"))),
    }
}

/// Asks the holder to release the hold hooks started on `asked` (a
/// rollback: nothing is frozen), and waits until they have let go.
pub(crate) fn release_holds(asked: HoldsAsked, exe: &Path, holds: &HoldHooks, reason: &str) {
    let request = Request::Hooks(HookRequest::Release(reason.to_string())).encode();
    let HoldsAsked(conn) = asked;
    if send(&conn, exe, &request, &[]).is_ok() {
        let wait = holds.grace() + std::time::Duration::from_secs(ANSWER_TIMEOUT_S as u64);
        let _ = receive_within(&conn, exe, wait);
    }
}

/// Asks the holder to run the thaw hooks for `targets` after a rollback,
/// and waits for them; their failures are the holder's to log. On the
/// connection the freeze hooks were asked on, when there is one, so that
/// the holder knows they are not owed again.
pub(crate) fn run_thaw_hooks(
    dir: &StateDir,
    exe: &Path,
    hooks: &Hooks,
    targets: &[HookTarget],
    reason: &str,
    asked: Option<HooksAsked>,
) -> Result<()> {
    let request = Request::Hooks(HookRequest::Thaw(
        reason.to_string(),
        hooks.clone(),
        targets.to_vec(),
    ))
    .encode();
    let wait = hook_wait(hooks, targets, 1);
    match asked {
        Some(HooksAsked(conn)) => {
            send(&conn, exe, &request, &[])?;
            receive_after_queue(&conn, exe, wait).map(drop)
        }
        None => ask_hooks(dir, exe, &request, wait).map(drop),
    }
}

/// How long hook runs may take: each run's limit and a margin, `rounds`
/// times over (a failed freeze also runs thaw hooks).
fn hook_wait(hooks: &Hooks, targets: &[HookTarget], rounds: u64) -> std::time::Duration {
    let runs = hooks.count.max(1) as u64 * targets.len().max(1) as u64 * rounds;
    std::time::Duration::from_secs(runs * (u64::from(hooks.limit_s) + 2) + ANSWER_TIMEOUT_S as u64)
}

/// Sends a hook request, to the running holder or a new one, and waits for
/// its answer: `wait` for its own runs, plus what the holder said the runs
/// queued ahead of it may take. Returns the answer and the connection.
fn ask_hooks(
    dir: &StateDir,
    exe: &Path,
    request: &str,
    wait: std::time::Duration,
) -> Result<(String, ParentOnlyFd)> {
    let ask = |conn: ParentOnlyFd| {
        send(&conn, exe, request, &[])
            .and_then(|()| receive_after_queue(&conn, exe, wait))
            .map(|answer| (answer, conn))
    };
    match connect_running(dir)? {
        Some(conn) => {
            let asked = std::time::Instant::now();
            match ask(conn) {
                Ok(answer) => Ok(answer),
                // Closed at once: it was exiting as we connected; start
                // anew. Not after a wait: the hooks may have run.
                Err(_) if asked.elapsed() < std::time::Duration::from_millis(200) => {
                    ask(connect_or_start(dir, exe)?)
                }
                Err(e) => Err(e),
            }
        }
        None => ask(connect_or_start(dir, exe)?),
    }
}

/// Reads `queued SECONDS` (the most the runs ahead may take), then the
/// answer, within `wait` plus that.
fn receive_after_queue(
    conn: &ParentOnlyFd,
    exe: &Path,
    wait: std::time::Duration,
) -> Result<String> {
    let first = receive_within(
        conn,
        exe,
        std::time::Duration::from_secs(ANSWER_TIMEOUT_S as u64),
    )?;
    let Some(Answer::Queued { seconds: ahead }) = Answer::parse(&first) else {
        return Ok(first);
    };
    receive_within(conn, exe, wait + std::time::Duration::from_secs(ahead))
}
