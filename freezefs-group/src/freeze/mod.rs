//! `freezefs-group freeze`: announce an epoch, wait for every member to
//! report frozen (the barrier), and either leave the group frozen until its
//! deadline or run a command and thaw every member when it exits.

use std::ffi::OsString;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use tokio::time::Instant;

use crate::ending::{self, Outcomes};
use crate::error::{Fallible, GroupError};
use crate::etcd;
use crate::group_watch::{Change, GroupWatch, Snapshot, bound_to_member};
use crate::keys::{self, Epoch, GroupKey};
use crate::lease::Lease;
use crate::local::{self, unix_ns};

mod barrier;
mod command;

/// The exit status when the command ran but a member's freeze did not hold.
pub(crate) const NOT_CONSISTENT: u8 = freezefs_cli::exit::NOT_HELD as u8;

pub(crate) struct FreezeRequest {
    pub(crate) group: String,
    pub(crate) timeout_s: u32,
    pub(crate) ttl_s: u32,
    pub(crate) members: Option<Vec<String>>,
    pub(crate) cmd: Vec<OsString>,
}

pub(crate) async fn run(client: Client, request: FreezeRequest) -> u8 {
    match freeze(&client, &request).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("freezefs-group: group {}: {e}", request.group);
            1
        }
    }
}

/// The epoch this command announced.
pub(super) struct Announced {
    epoch: i64,
    doc: Epoch,
    watch: GroupWatch,
    /// Each member's registration lease, as `doc.members`: only a report
    /// under it is that member's word.
    leases: Vec<i64>,
    /// When it was announced, on this host's monotonic clock: the group's
    /// timeout counts from here.
    at: Instant,
    /// The same moment by this host's wall clock, to check the members'
    /// freeze times against.
    at_unix_ns: u128,
}

impl Announced {
    /// When the group's timeout ends.
    fn deadline(&self) -> Instant {
        self.at + Duration::from_secs(u64::from(self.doc.timeout_s))
    }

    /// The member a report put is from, if it is that member's word:
    /// written under its registration's lease. `Err` names a report that is
    /// not. (A deletion carries no lease: it is no report.)
    fn reporter(&self, change: &Change) -> Option<Result<usize, String>> {
        let GroupKey::Report(node) = &change.key else {
            return None;
        };
        if !change.put {
            return None;
        }
        let i = self.doc.members.iter().position(|m| m == node)?;
        Some(if bound_to_member(change.lease, self.leases[i]) {
            Ok(i)
        } else {
            Err(node.clone())
        })
    }
}

async fn freeze(client: &Client, request: &FreezeRequest) -> Fallible<u8> {
    let group = &request.group;
    let mut lease = Lease::grant(client, request.ttl_s, true).await?;
    let mut announced = announce(client, request, &lease).await?;
    let members = announced.doc.members.clone();
    let barrier = tokio::select! {
        () = lease.lost() => Err(barrier::BarrierFailure {
            why: "lost etcd before the barrier: every member thaws as the epoch's lease ends".to_string(),
            silent: Vec::new(),
        }),
        reached = barrier::barrier(&mut announced, request.ttl_s) => reached,
    };
    let figures = match barrier {
        Ok(figures) => figures,
        Err(failed) => {
            let why = failed.why;
            let _ = ending::end_epoch(client, group, announced.epoch, &why, false).await;
            // A member that never answered has nothing to say about the end.
            let answered: Vec<String> = members
                .iter()
                .filter(|m| !failed.silent.contains(m))
                .cloned()
                .collect();
            let outcomes =
                ending::outcomes(client, group, announced.epoch, &answered, false, false).await;
            eprintln!("freezefs-group: group {group} not frozen: {why}");
            if let Ok(outcomes) = outcomes {
                print_outcomes(&outcomes, false);
            }
            return Ok(1);
        }
    };
    eprintln!(
        "freezefs-group: group {group}: {} members frozen (epoch {}); {}",
        members.len(),
        announced.epoch,
        figures.line()
    );
    if request.cmd.is_empty() {
        return leave_frozen(client, group, &announced, &lease).await;
    }
    command::run_command(client, request, announced, &mut lease).await
}

/// Writes the epoch under the command's lease, unless the group is frozen
/// already; checks that every member is an agent's registration, before
/// and at its revision. An epoch on record whose member is gone is ended
/// first: nothing of it can still be held.
async fn announce(client: &Client, request: &FreezeRequest, lease: &Lease) -> Fallible<Announced> {
    let group = &request.group;
    let mut before = Snapshot::read(client, group).await?;
    if let Some(found) = before.epoch() {
        let Some(doc) = found.doc else {
            return Err(GroupError::Refused(format!(
                "the group's epoch key holds a value that is not an epoch (epoch {}): see it with freezefs-group status --group {group}, end it with freezefs-group thaw --group {group}",
                found.epoch
            )));
        };
        let Some(gone) = doc.members.iter().find(|m| before.member(m).is_none()) else {
            return Err(frozen_already(group, found.epoch));
        };
        let why = format!("member {gone} was lost: its agent died, hung or lost etcd");
        if ending::end_epoch(client, group, found.epoch, &why, false)
            .await?
            .ended_it()
        {
            eprintln!(
                "freezefs-group: group {group}: ended epoch {}, left behind: {why}",
                found.epoch
            );
        }
        before = Snapshot::read(client, group).await?;
        if let Some(found) = before.epoch() {
            return Err(frozen_already(group, found.epoch));
        }
    }
    let members = match &request.members {
        Some(named) => named.clone(),
        None => before.members().into_iter().map(|m| m.node).collect(),
    };
    if members.is_empty() {
        return Err(GroupError::Refused(
            "no agent is registered: nothing to freeze".into(),
        ));
    }
    for node in &members {
        registration_of(&before, node)?;
    }
    let doc = Epoch {
        members,
        timeout_s: request.timeout_s,
        by: format!("{}:{}", local::hostname(), std::process::id()),
    };
    let (at, at_unix_ns) = (Instant::now(), unix_ns());
    let key = keys::epoch(group);
    let txn = Txn::new()
        .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key.clone(),
            keys::to_json(&doc),
            Some(PutOptions::new().with_lease(lease.id)),
        )]);
    let answer = etcd::txn(client, "announce the epoch", txn).await?;
    let epoch = if answer.succeeded() {
        answer.header().map_or(0, |h| h.revision())
    } else {
        // A retried announcement may find its own first attempt.
        match Snapshot::read(client, group).await?.epoch() {
            Some(found) if found.doc.as_ref() == Some(&doc) && found.lease == lease.id => {
                found.epoch
            }
            found => return Err(frozen_already(group, found.map_or(0, |e| e.epoch))),
        }
    };
    let after = Snapshot::read(client, group).await?;
    let mut leases = Vec::with_capacity(doc.members.len());
    for node in &doc.members {
        match registration_of(&after, node) {
            Ok(lease) => leases.push(lease),
            Err(why) => {
                ending::end_epoch(client, group, epoch, &why.to_string(), false).await?;
                return Err(why);
            }
        }
    }
    Ok(Announced {
        epoch,
        doc,
        watch: GroupWatch::after(client, group, epoch, &after),
        leases,
        at,
        at_unix_ns,
    })
}

fn frozen_already(group: &str, epoch: i64) -> GroupError {
    GroupError::Refused(format!(
        "frozen already (epoch {epoch}); thaw it first with freezefs-group thaw --group {group}"
    ))
}

/// The lease of `node`'s registration, if it is an agent's: a key that
/// exists, parses, and lives under a lease (an agent's registration always
/// does; a key put by hand without one would be waited on in vain).
fn registration_of(seen: &Snapshot, node: &str) -> Fallible<i64> {
    let Some(registration) = seen.member(node) else {
        return Err(GroupError::Refused(format!(
            "member {node} has no agent registered: nothing was frozen"
        )));
    };
    if registration.lease == 0 {
        return Err(GroupError::Refused(format!(
            "member {node}'s key has no lease, so no agent keeps it (it was written by hand?): nothing was frozen"
        )));
    }
    if registration.doc.is_none() {
        return Err(GroupError::Refused(format!(
            "member {node}'s key does not hold an agent's registration: nothing was frozen"
        )));
    }
    Ok(registration.lease)
}

/// What a change says went wrong with `epoch`, if anything.
pub(super) fn failure(epoch: i64, members: &[String], change: &Change) -> Option<String> {
    if change.key == GroupKey::Epoch && !change.put {
        return Some("the group was thawed meanwhile".into());
    }
    ending::member_failure(epoch, change)
        .filter(|(node, _)| members.contains(node))
        .map(|(_, why)| why)
}

/// No command: the epoch moves to a lease that ends at the deadline, so the
/// group stays frozen after this command exits, until `thaw` or the deadline.
async fn leave_frozen(
    client: &Client,
    group: &str,
    announced: &Announced,
    lease: &Lease,
) -> Fallible<u8> {
    let left_s = announced
        .deadline()
        .saturating_duration_since(Instant::now())
        .as_millis()
        .div_ceil(1000) as u32;
    let until_deadline = Lease::grant(client, left_s + 2, false).await?;
    let key = keys::epoch(group);
    let txn = Txn::new()
        .when([Compare::create_revision(
            key.clone(),
            CompareOp::Equal,
            announced.epoch,
        )])
        .and_then([TxnOp::put(
            key,
            keys::to_json(&announced.doc),
            Some(PutOptions::new().with_lease(until_deadline.id)),
        )]);
    let moved = etcd::txn(client, "keep the epoch", txn).await?.succeeded();
    let _ = lease.revoke(client).await;
    if !moved {
        eprintln!(
            "freezefs-group: group {group}: the freeze ended right after the barrier; see freezefs-group status --group {group}"
        );
        return Ok(1);
    }
    println!(
        "group {group}: frozen on {} (epoch {}) for {left_s} s; thaw with: freezefs-group thaw --group {group}",
        announced.doc.members.join(", "),
        announced.epoch
    );
    Ok(0)
}

/// What is said of a report that is not its member's word.
pub(super) fn ignored_report(node: &str) -> String {
    format!(
        "freezefs-group: ignored report/{node}: it was not written under {node}'s registration lease, so it is not {node}'s word"
    )
}

pub(crate) fn print_outcomes(outcomes: &Outcomes, all: bool) {
    for node in &outcomes.ignored {
        eprintln!("{}", ignored_report(node));
    }
    for outcome in outcomes.each.iter().filter(|o| all || !o.consistent()) {
        eprintln!("freezefs-group: {}", outcome.line());
    }
}
