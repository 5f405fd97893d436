//! `freezefs-group freeze`: announce an epoch, wait for every member to
//! report frozen (the barrier), and either leave the group frozen until its
//! deadline or run a command and thaw every member when it exits.

use std::ffi::OsString;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use tokio::time::Instant;

use crate::ending::{self, Outcome};
use crate::etcd::{self, Fallible};
use crate::group_watch::{Change, GroupWatch, Snapshot};
use crate::keys::{self, Epoch, GroupKey, Report, ReportState};
use crate::lease::Lease;
use crate::local::{self, unix_ms, unix_ns};

mod command;

/// The exit status when the command ran but a member's freeze did not hold.
pub(crate) const NOT_CONSISTENT: u8 = 3;

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
}

async fn freeze(client: &Client, request: &FreezeRequest) -> Fallible<u8> {
    let group = &request.group;
    let mut lease = Lease::grant(client, request.ttl_s, true).await?;
    let mut announced = announce(client, request, &lease).await?;
    let members = announced.doc.members.clone();
    let barrier = tokio::select! {
        () = lease.lost() => Err("lost etcd before the barrier: every member thaws as the epoch's lease ends".to_string()),
        reached = barrier(&mut announced, request.timeout_s) => reached,
    };
    let (last_freeze_ns, spread_ms) = match barrier {
        Ok(times) => times,
        Err(why) => {
            let _ = ending::end_epoch(client, group, announced.epoch, &why, false).await;
            let outcomes =
                ending::outcomes(client, group, announced.epoch, &members, thaw_wait(request))
                    .await;
            eprintln!("freezefs-group: group {group} not frozen: {why}");
            print_outcomes(outcomes.ok().as_deref().unwrap_or_default(), false);
            return Ok(1);
        }
    };
    let barrier_ms = (unix_ns().saturating_sub(last_freeze_ns)) as f64 / 1e6;
    eprintln!(
        "freezefs-group: group {group}: {} members frozen (epoch {}); barrier {barrier_ms:.1} ms after the last freeze, freezes spread over {spread_ms:.1} ms",
        members.len(),
        announced.epoch
    );
    if request.cmd.is_empty() {
        return leave_frozen(client, group, &announced, &lease).await;
    }
    command::run_command(client, request, announced, &mut lease).await
}

/// Writes the epoch under the command's lease, unless the group is frozen
/// already; checks that every member is still there at its revision.
async fn announce(client: &Client, request: &FreezeRequest, lease: &Lease) -> Fallible<Announced> {
    let group = &request.group;
    let before = Snapshot::read(client, group).await?;
    let registered: Vec<String> = before.members().into_iter().map(|(n, _)| n).collect();
    let members = match &request.members {
        Some(named) => named.clone(),
        None => registered.clone(),
    };
    if members.is_empty() {
        return Err("no agent is registered: nothing to freeze".into());
    }
    if let Some(missing) = members.iter().find(|m| !registered.contains(m)) {
        return Err(format!(
            "member {missing} has no agent registered: nothing was frozen"
        ));
    }
    let doc = Epoch {
        members,
        deadline_unix_ms: unix_ms() + u64::from(request.timeout_s) * 1000,
        timeout_s: request.timeout_s,
        by: format!("{}:{}", local::hostname(), std::process::id()),
    };
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
            Some((epoch, found)) if found == doc => epoch,
            found => {
                let epoch = found.map_or(0, |(e, _)| e);
                return Err(format!(
                    "frozen already (epoch {epoch}); thaw it first with freezefs-group thaw --group {group}"
                ));
            }
        }
    };
    let after = Snapshot::read(client, group).await?;
    let registered: Vec<String> = after.members().into_iter().map(|(n, _)| n).collect();
    if let Some(gone) = doc.members.iter().find(|m| !registered.contains(m)) {
        let why = format!("member {gone} was lost before it froze");
        ending::end_epoch(client, group, epoch, &why, false).await?;
        return Err(why);
    }
    Ok(Announced {
        epoch,
        doc,
        watch: GroupWatch::after(client, group, epoch),
    })
}

/// Waits until every member reports frozen; the time of the last member's
/// freeze and the spread between the first and the last, or why not.
async fn barrier(announced: &mut Announced, timeout_s: u32) -> Result<(u128, f64), String> {
    let members = &announced.doc.members;
    let mut frozen_at: Vec<Option<u128>> = vec![None; members.len()];
    let give_up = Instant::now() + Duration::from_secs(u64::from(timeout_s));
    while frozen_at.iter().any(Option::is_none) {
        let Ok(changes) = tokio::time::timeout_at(give_up, announced.watch.next()).await else {
            let late: Vec<&str> = members
                .iter()
                .zip(&frozen_at)
                .filter(|(_, at)| at.is_none())
                .map(|(m, _)| m.as_str())
                .collect();
            return Err(format!(
                "{} did not freeze within {timeout_s} s",
                late.join(", ")
            ));
        };
        for change in &changes {
            if let Some(why) = failure(announced.epoch, members, change) {
                return Err(why);
            }
            if let (GroupKey::Report(node), true) = (&change.key, change.put) {
                let report = keys::from_json::<Report>(&change.value);
                if let Some(Report {
                    epoch,
                    state: ReportState::Frozen,
                    frozen_at_unix_ns: Some(at),
                    ..
                }) = report
                {
                    if let Some(i) = members
                        .iter()
                        .position(|m| m == node)
                        .filter(|_| epoch == announced.epoch)
                    {
                        frozen_at[i] = Some(at);
                    }
                }
            }
        }
    }
    let times: Vec<u128> = frozen_at.into_iter().flatten().collect();
    let (first, last) = (
        times.iter().min().copied().unwrap_or(0),
        times.iter().max().copied().unwrap_or(0),
    );
    Ok((last, (last - first) as f64 / 1e6))
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
        .doc
        .deadline_unix_ms
        .saturating_sub(unix_ms())
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

/// How long to wait for the members' last reports: a silent member's lease
/// ends within its TTL, and then it counts as gone.
pub(super) fn thaw_wait(request: &FreezeRequest) -> Duration {
    Duration::from_secs(u64::from(request.ttl_s) + 5)
}

pub(crate) fn print_outcomes(outcomes: &[Outcome], all: bool) {
    for outcome in outcomes.iter().filter(|o| all || !o.consistent()) {
        eprintln!("freezefs-group: {}", outcome.line());
    }
}
