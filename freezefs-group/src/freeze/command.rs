//! The command between the barrier and the thaw: run it, pass it the
//! signals a user sends, end the group's freeze as soon as any member fails
//! while it runs, and tell whether every member's freeze held throughout.

use etcd_client::Client;
use freezefs_cli::relay::RELAYED;
use freezefs_cli::{command, exit};
use tokio::signal::unix::{SignalKind, signal};

use super::{Announced, FreezeRequest, NOT_CONSISTENT, failure, print_outcomes};
use crate::ending::{self, Ending, end_warning};
use crate::error::{Fallible, GroupError};
use crate::lease::Lease;

/// Runs the command after the barrier; thaws every member when it exits,
/// or as soon as any member fails or the group's timeout passes while it
/// runs. Once the command has run, its status is the answer unless a
/// member's freeze did not hold (3): a failure to record the end in etcd
/// is a warning, never "nothing frozen".
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
            return Ok(command::start_failure(&e) as u8);
        }
    };
    let pid = child
        .id()
        .and_then(|p| rustix::process::Pid::from_raw(p as i32));
    let mut signals = Signals::new().map_err(GroupError::local)?;
    let mut broken: Option<String> = None;
    let mut etcd_lost = false;
    let deadline = announced.deadline();
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(GroupError::local)?,
            () = tokio::time::sleep_until(deadline), if broken.is_none() => {
                let why = format!("the group's timeout of {} s passed while the command ran", announced.doc.timeout_s);
                end_warning(group, &ending::end_epoch(client, group, announced.epoch, &why, false).await);
                broken = Some(why);
            }
            () = lease.lost(), if !etcd_lost => {
                etcd_lost = true;
                broken.get_or_insert("the freezing command lost etcd: every member thawed on its own".into());
            }
            changes = announced.watch.next(), if broken.is_none() => {
                let counted = changes.iter().filter(|c| !matches!(announced.reporter(c), Some(Err(_))));
                if let Some(why) = counted.filter_map(|c| failure(announced.epoch, &announced.doc.members, c)).next() {
                    end_warning(group, &ending::end_epoch(client, group, announced.epoch, &why, false).await);
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
    let (mut asked, mut full) = (false, false);
    if broken.is_none() {
        let ended = ending::end_epoch(
            client,
            group,
            announced.epoch,
            "thawed after the command finished",
            true,
        )
        .await;
        asked = matches!(ended, Ok(Ending::Recorded | Ending::Unrecorded));
        full = matches!(ended, Ok(Ending::Unrecorded));
        if matches!(ended, Ok(Ending::Over)) {
            broken = Some("the group was thawed meanwhile".into());
        }
        end_warning(group, &ended);
    }
    let outcomes = if etcd_lost {
        None
    } else {
        match ending::outcomes(
            client,
            group,
            announced.epoch,
            &announced.doc.members,
            asked,
            full,
        )
        .await
        {
            Ok(outcomes) => Some(outcomes),
            Err(e) => {
                eprintln!(
                    "freezefs-group: group {group}: warning: the members' reports could not be read: {e}"
                );
                None
            }
        }
    };
    let outcomes = outcomes.unwrap_or_default();
    print_outcomes(&outcomes, true);
    match (&broken, outcomes.all_consistent()) {
        (None, true) => Ok(exit_code(status)),
        _ => {
            let not_held: Vec<&str> = outcomes
                .each
                .iter()
                .filter(|o| !o.consistent())
                .map(|o| o.node.as_str())
                .collect();
            let why = broken.unwrap_or_else(|| {
                if outcomes.each.is_empty() {
                    "the members' reports could not be read".into()
                } else {
                    "a member's freeze did not hold".into()
                }
            });
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
    exit::code_of(status) as u8
}

/// The signals freezefs's commands pass on to the command they run.
struct Signals([(tokio::signal::unix::Signal, rustix::process::Signal); 3]);

impl Signals {
    fn new() -> std::io::Result<Signals> {
        let [a, b, c] = RELAYED;
        let caught = |sig: rustix::process::Signal| {
            signal(SignalKind::from_raw(sig.as_raw())).map(|stream| (stream, sig))
        };
        Ok(Signals([caught(a)?, caught(b)?, caught(c)?]))
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
