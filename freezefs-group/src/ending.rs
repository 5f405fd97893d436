//! How an epoch ends and what each member made of it: the freezing command,
//! `thaw`, a failure and a live agent that saw a member lost all end it the
//! same way, and read the members' final reports the same way.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use tokio::time::Instant;

use crate::error::{Fallible, GroupError};
use crate::etcd;
use crate::group_watch::{Change, GroupWatch, Snapshot, bound_to_member};
use crate::keys::{self, Ended, GroupKey, Report, ReportState};

/// How an attempt to end an epoch went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Ended, and why recorded in `ended` in the same revision.
    Recorded,
    /// Ended, but etcd is full (NOSPACE): the epoch was deleted, which etcd
    /// allows, and why it ended could not be written.
    Unrecorded,
    /// It had ended already.
    Over,
}

impl Ending {
    /// This attempt ended it.
    pub(crate) fn ended_it(&self) -> bool {
        *self != Ending::Over
    }
}

/// Ends epoch `epoch` if it is still the group's: `ended` is written and
/// the epoch deleted in one transaction guarded by the epoch's revision, so
/// that every agent learns why in the same revision and only one of those
/// racing to end it does. When etcd is full the epoch is deleted alone:
/// every member must thaw whether or not why can be recorded.
pub(crate) async fn end_epoch(
    client: &Client,
    group: &str,
    epoch: i64,
    why: &str,
    asked: bool,
) -> Fallible<Ending> {
    let ended = Ended {
        epoch,
        why: why.to_string(),
        asked,
    };
    let still_ours = Compare::create_revision(keys::epoch(group), CompareOp::Equal, epoch);
    let txn = Txn::new().when([still_ours.clone()]).and_then([
        TxnOp::put(keys::ended(group), keys::to_json(&ended), None),
        TxnOp::delete(keys::epoch(group), None),
    ]);
    match etcd::txn_unless_full(client, "end the epoch", txn).await {
        Ok(answer) if answer.succeeded() => return Ok(Ending::Recorded),
        Ok(_) => return Ok(Ending::Over),
        Err(failure) if !failure.full => return Err(failure.into()),
        Err(_) => {}
    }
    let delete_only = Txn::new()
        .when([still_ours])
        .and_then([TxnOp::delete(keys::epoch(group), None)]);
    if !etcd::txn(client, "end the epoch (etcd is full)", delete_only)
        .await?
        .succeeded()
    {
        return Ok(Ending::Over);
    }
    // Should the alarm have been disarmed meanwhile.
    let record = Txn::new().and_then([TxnOp::put(keys::ended(group), keys::to_json(&ended), None)]);
    Ok(match etcd::txn(client, "record why", record).await {
        Ok(_) => Ending::Recorded,
        Err(_) => Ending::Unrecorded,
    })
}

/// What a change says went wrong with a member in `epoch`: its key gone (its
/// agent died, hung or lost etcd), or its report that it could not freeze or
/// that its freeze ended early. The member, and why.
pub(crate) fn member_failure(epoch: i64, change: &Change) -> Option<(String, String)> {
    match &change.key {
        GroupKey::Member(node) if !change.put => Some((
            node.clone(),
            format!("member {node} was lost: its agent died, hung or lost etcd"),
        )),
        GroupKey::Report(node) if change.put => {
            let report = keys::from_json::<Report>(&change.value).filter(|r| r.epoch == epoch)?;
            let why = match report.state {
                ReportState::Failed => format!("member {node} could not freeze: {}", report.why),
                ReportState::Ended => {
                    format!("member {node}'s freeze ended early: {}", report.why)
                }
                ReportState::Freezing | ReportState::Frozen | ReportState::Thawed => return None,
            };
            Some((node.clone(), why))
        }
        _ => None,
    }
}

/// One member's last word on an epoch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    pub(crate) node: String,
    /// Thawed: whether its freeze held until it thawed; `None` when it never
    /// froze or never answered.
    pub(crate) held: Option<bool>,
    pub(crate) why: String,
    /// Thawed because a command ended the epoch.
    pub(crate) asked: bool,
}

impl Outcome {
    /// Held from its freeze until the group's thaw was asked for.
    pub(crate) fn consistent(&self) -> bool {
        self.held == Some(true) && self.asked
    }

    /// One line for the user.
    pub(crate) fn line(&self) -> String {
        if self.consistent() {
            format!("{}: held throughout", self.node)
        } else {
            format!("{}: not consistent: {}", self.node, self.why)
        }
    }

    /// A report's outcome, once it is final (thawed, or could not freeze).
    pub(crate) fn of(node: &str, report: &Report) -> Option<Outcome> {
        let (held, why) = match report.state {
            ReportState::Thawed => (report.held, report.why.clone()),
            ReportState::Failed => (None, format!("could not freeze: {}", report.why)),
            ReportState::Freezing | ReportState::Frozen | ReportState::Ended => return None,
        };
        Some(Outcome {
            node: node.to_string(),
            held,
            why,
            asked: report.asked,
        })
    }

    fn gone(node: &str) -> Outcome {
        Outcome {
            node: node.to_string(),
            held: None,
            why: "its agent is gone (it died, hung or lost etcd): it thawed on its own".into(),
            asked: false,
        }
    }

    /// Under a full etcd (it takes deletes only): the member deleted its
    /// `held/NODE` key alone, saying its freeze held until the epoch ended.
    fn held_unrecorded(node: &str, asked: bool) -> Outcome {
        Outcome {
            node: node.to_string(),
            held: Some(true),
            why: "thawed when the epoch ended (etcd is full: its report could not be written)"
                .into(),
            asked,
        }
    }

    /// Under a full etcd: the member deleted its report, saying its freeze
    /// did not hold.
    fn not_held_unrecorded(node: &str) -> Outcome {
        Outcome {
            node: node.to_string(),
            held: Some(false),
            why: "its freeze did not hold (etcd is full: it could not write why)".into(),
            asked: false,
        }
    }
}

/// An end that could not be written in full is told; whoever ended it goes
/// on: the members thaw when the epoch goes, recorded or not.
pub(crate) fn end_warning(group: &str, ended: &Fallible<Ending>) {
    match ended {
        Ok(Ending::Unrecorded) => eprintln!(
            "freezefs-group: group {group}: warning: etcd is full (NOSPACE): the epoch was deleted, and every member thaws, but why it ended could not be recorded"
        ),
        Err(e) => eprintln!(
            "freezefs-group: group {group}: warning: could not end the epoch: {e}; every member thaws when the epoch's lease ends"
        ),
        Ok(_) => {}
    }
}

/// The members' last words on an epoch, and the reports that were ignored
/// because they were not written under their member's registration.
#[derive(Default)]
pub(crate) struct Outcomes {
    pub(crate) each: Vec<Outcome>,
    pub(crate) ignored: Vec<String>,
}

impl Outcomes {
    pub(crate) fn all_consistent(&self) -> bool {
        !self.each.is_empty() && self.each.iter().all(Outcome::consistent)
    }
}

/// The longest a member may stay silent about an epoch's end before it is
/// reported as not answering: a live agent answers at once; a dead or hung
/// one is gone when etcd ends its lease, at most its TTL later.
const SILENCE_PAST_TTL: Duration = Duration::from_secs(1);
/// However long the members' TTLs, no wait for their reports is longer.
const SILENCE_MAX: Duration = Duration::from_secs(15);

/// Waits until every member of `members` has given its final report on
/// `epoch` or is gone, at most the longest TTL of the silent members'
/// leases and a second: a member still silent then is reported as not
/// answering. `asked`: the caller ended the epoch as asked (the command
/// finished, or a thaw), which a member that could only delete keys could
/// not be told. `full`: etcd was full when the caller ended it, so that a
/// member's deletion of its `held/NODE` or its report is its word (and
/// otherwise none).
pub(crate) async fn outcomes(
    client: &Client,
    group: &str,
    epoch: i64,
    members: &[String],
    asked: bool,
    full: bool,
) -> Fallible<Outcomes> {
    let seen = Snapshot::read(client, group).await?;
    let mut known: Vec<Option<Outcome>> = vec![None; members.len()];
    let mut leases = vec![0i64; members.len()];
    for (i, node) in members.iter().enumerate() {
        match seen.member(node) {
            None => known[i] = Some(Outcome::gone(node)),
            Some(registration) => {
                leases[i] = registration.lease;
                let report = seen.report_of(node).filter(|r| r.epoch == epoch);
                // When etcd is full a member may have spoken by deleting
                // before this read: its `held/NODE` gone beside its frozen
                // report (held), or its report gone (did not hold).
                let held_key = GroupKey::Held(node.clone());
                known[i] = match report {
                    Some(r) => Outcome::of(node, &r).or_else(|| {
                        (full && seen.entry(&held_key).is_none())
                            .then(|| Outcome::held_unrecorded(node, asked))
                    }),
                    None if full => Some(Outcome::not_held_unrecorded(node)),
                    None => None,
                };
            }
        }
    }
    let mut ignored: Vec<String> = seen
        .forged()
        .into_iter()
        .filter(|n| members.contains(n))
        .collect();
    // One round trip for all the silent members' leases, not one each.
    let asks: Vec<_> = leases
        .iter()
        .zip(&known)
        .filter(|(_, known)| known.is_none())
        .map(|(lease, _)| {
            let (client, lease) = (client.clone(), *lease);
            tokio::spawn(async move { etcd::lease_granted_ttl(&client, lease).await })
        })
        .collect();
    let mut wait = Duration::ZERO;
    for ask in asks {
        let ttl = ask.await.map_err(GroupError::local)??.unwrap_or(0);
        wait = wait.max(Duration::from_secs(ttl.max(0) as u64) + SILENCE_PAST_TTL);
    }
    let limit = wait.min(SILENCE_MAX);
    let give_up = Instant::now() + limit;
    let mut watch = GroupWatch::after(client, group, seen.revision, &seen);
    while known.iter().any(Option::is_none) {
        let Ok(changes) = tokio::time::timeout_at(give_up, watch.next()).await else {
            break;
        };
        // A deletion of `held/NODE` or `report/NODE` alone is a member's
        // word only when etcd is full; the end of its lease deletes every
        // key of it, and a report put in the same answer speaks for it.
        let deletion_speaks = |node: &String| {
            full && !changes.iter().any(|c| match &c.key {
                GroupKey::Report(n) => c.put && n == node,
                GroupKey::Member(n) => !c.put && n == node,
                _ => false,
            })
        };
        for change in &changes {
            let (node, outcome) = match &change.key {
                GroupKey::Report(node) if change.put => {
                    let Some(i) = members.iter().position(|m| m == node) else {
                        continue;
                    };
                    if !bound_to_member(change.lease, leases[i]) {
                        ignored.push(node.clone());
                        continue;
                    }
                    let report =
                        keys::from_json::<Report>(&change.value).filter(|r| r.epoch == epoch);
                    (node, report.and_then(|r| Outcome::of(node, &r)))
                }
                GroupKey::Report(node) if deletion_speaks(node) => {
                    (node, Some(Outcome::not_held_unrecorded(node)))
                }
                GroupKey::Held(node) if !change.put && deletion_speaks(node) => {
                    (node, Some(Outcome::held_unrecorded(node, asked)))
                }
                GroupKey::Member(node) if !change.put => (node, Some(Outcome::gone(node))),
                _ => continue,
            };
            if let Some(i) = members.iter().position(|m| m == node) {
                if known[i].is_none() {
                    known[i] = outcome;
                }
            }
        }
    }
    ignored.sort();
    ignored.dedup();
    Ok(Outcomes {
        each: members
            .iter()
            .zip(known)
            .map(|(node, known)| {
                known.unwrap_or_else(|| Outcome {
                    node: node.clone(),
                    held: None,
                    why: format!("no answer within {:.0} s", limit.as_secs_f64()),
                    asked: false,
                })
            })
            .collect(),
        ignored,
    })
}
