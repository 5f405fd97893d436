//! How an epoch ends and what each member made of it: the freezing command,
//! `thaw` and a failure all end it the same way, and read the members'
//! final reports the same way.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use tokio::time::Instant;

use crate::etcd::{self, Fallible};
use crate::group_watch::{Change, GroupWatch, Snapshot};
use crate::keys::{self, Ended, GroupKey, Report, ReportState};

/// Ends epoch `epoch` if it is still the group's: `ended` is written and
/// the epoch deleted in one transaction, so that every agent learns why in
/// the same revision. False when it had ended already.
pub(crate) async fn end_epoch(
    client: &Client,
    group: &str,
    epoch: i64,
    why: &str,
    asked: bool,
) -> Fallible<bool> {
    let ended = Ended {
        epoch,
        why: why.to_string(),
        asked,
    };
    let txn = Txn::new()
        .when([Compare::create_revision(
            keys::epoch(group),
            CompareOp::Equal,
            epoch,
        )])
        .and_then([
            TxnOp::put(keys::ended(group), keys::to_json(&ended), None),
            TxnOp::delete(keys::epoch(group), None),
        ]);
    Ok(etcd::txn(client, "end the epoch", txn).await?.succeeded())
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
                ReportState::Frozen | ReportState::Thawed => return None,
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
            ReportState::Frozen | ReportState::Ended => return None,
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
}

/// Waits, at most `limit`, until every member of `members` has given its
/// final report on `epoch` or is gone; a member still silent then is
/// reported as not answering.
pub(crate) async fn outcomes(
    client: &Client,
    group: &str,
    epoch: i64,
    members: &[String],
    limit: Duration,
) -> Fallible<Vec<Outcome>> {
    let give_up = Instant::now() + limit;
    let seen = Snapshot::read(client, group).await?;
    let mut known: Vec<Option<Outcome>> = vec![None; members.len()];
    let registered: Vec<String> = seen.members().into_iter().map(|(n, _)| n).collect();
    let reports = seen.reports();
    for (i, node) in members.iter().enumerate() {
        let report = reports
            .iter()
            .find(|(n, _)| n == node)
            .and_then(|(_, r)| r.as_ref());
        known[i] = match report {
            Some(r) if r.epoch == epoch => Outcome::of(node, r),
            _ => None,
        };
        if known[i].is_none() && !registered.contains(node) {
            known[i] = Some(Outcome::gone(node));
        }
    }
    let mut watch = GroupWatch::after(client, group, seen.revision);
    while known.iter().any(Option::is_none) {
        let Ok(changes) = tokio::time::timeout_at(give_up, watch.next()).await else {
            break;
        };
        for change in changes {
            let (node, outcome) = match &change.key {
                GroupKey::Report(node) if change.put => {
                    let report =
                        keys::from_json::<Report>(&change.value).filter(|r| r.epoch == epoch);
                    (node.clone(), report.and_then(|r| Outcome::of(node, &r)))
                }
                GroupKey::Member(node) if !change.put => (node.clone(), Some(Outcome::gone(node))),
                _ => continue,
            };
            if let Some(i) = members.iter().position(|m| *m == node) {
                if known[i].is_none() {
                    known[i] = outcome;
                }
            }
        }
    }
    Ok(members
        .iter()
        .zip(known)
        .map(|(node, known)| {
            known.unwrap_or_else(|| Outcome {
                node: node.clone(),
                held: None,
                why: format!("no answer within {} s", limit.as_secs()),
                asked: false,
            })
        })
        .collect())
}
