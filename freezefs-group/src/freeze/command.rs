//! The command between the barrier and the thaw: run it, pass it the
//! signals a user sends, end the group's freeze as soon as any member fails
//! while it runs, and tell whether every member's freeze held throughout.

use etcd_client::Client;
use tokio::signal::unix::{SignalKind, signal};

use super::{Announced, FreezeRequest, NOT_CONSISTENT, failure, print_outcomes, thaw_wait};
use crate::ending::{self, Outcome};
use crate::etcd::Fallible;
use crate::lease::Lease;

/// Runs the command after the barrier; thaws every member when it exits,
/// or as soon as any member fails while it runs.
pub(super) async fn run_command(
    client: &Client,
    request: &FreezeRequest,
    mut announced: Announced,
    lease: &mut Lease,
) -> Fallible<u8> {
    let group = &request.group;
    let (program, args) = request.cmd.split_first().expect("a command");
    let mut child = match tokio::process::Command::new(program).args(args).spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = ending::end_epoch(
                client,
                group,
                announced.epoch,
                "the command could not start",
                true,
            )
            .await;
            eprintln!("freezefs-group: {}: {e}", program.to_string_lossy());
            return Ok(if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            });
        }
    };
    let pid = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32));
    let mut signals = Signals::new().map_err(|e| e.to_string())?;
    let mut broken: Option<String> = None;
    let mut etcd_lost = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(|e| e.to_string())?,
            () = lease.lost(), if !etcd_lost => {
                etcd_lost = true;
                broken.get_or_insert("the freezing command lost etcd: every member thawed on its own".into());
            }
            changes = announced.watch.next(), if broken.is_none() => {
                if let Some(why) = changes.iter().find_map(|c| failure(announced.epoch, &announced.doc.members, c)) {
                    let _ = ending::end_epoch(client, group, announced.epoch, &why, false).await;
                    broken = Some(why);
                }
            }
            sig = signals.next() => {
                if let Some(pid) = pid {
                    let _ = rustix::process::kill_process(pid, sig);
                }
            }
        }
    };
    if broken.is_none() {
        ending::end_epoch(
            client,
            group,
            announced.epoch,
            "thawed after the command finished",
            true,
        )
        .await?;
    }
    let outcomes = if etcd_lost {
        Vec::new()
    } else {
        ending::outcomes(
            client,
            group,
            announced.epoch,
            &announced.doc.members,
            thaw_wait(request),
        )
        .await?
    };
    print_outcomes(&outcomes, true);
    let all_held = !outcomes.is_empty() && outcomes.iter().all(Outcome::consistent);
    match (&broken, all_held) {
        (None, true) => Ok(exit_code(status)),
        _ => {
            let not_held: Vec<&str> = outcomes
                .iter()
                .filter(|o| !o.consistent())
                .map(|o| o.node.as_str())
                .collect();
            let why = broken.unwrap_or_else(|| "a member's freeze did not hold".into());
            eprintln!(
                "freezefs-group: group {group}: the freeze did not hold throughout on {}: {why}; the snapshot is not consistent",
                if not_held.is_empty() {
                    "every member".to_string()
                } else {
                    not_held.join(", ")
                }
            );
            Ok(NOT_CONSISTENT)
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(sig)) => 128u8.wrapping_add(sig as u8),
        _ => 1,
    }
}

/// SIGINT, SIGTERM and SIGHUP, to pass on to the command.
struct Signals([(tokio::signal::unix::Signal, rustix::process::Signal); 3]);

impl Signals {
    fn new() -> std::io::Result<Signals> {
        use rustix::process::Signal;
        Ok(Signals([
            (signal(SignalKind::interrupt())?, Signal::INT),
            (signal(SignalKind::terminate())?, Signal::TERM),
            (signal(SignalKind::hangup())?, Signal::HUP),
        ]))
    }

    async fn next(&mut self) -> rustix::process::Signal {
        let [a, b, c] = &mut self.0;
        tokio::select! {
            _ = a.0.recv() => a.1,
            _ = b.0.recv() => b.1,
            _ = c.0.recv() => c.1,
        }
    }
}
