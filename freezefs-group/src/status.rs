//! `freezefs-group status`: whether the group is frozen (and why not), the
//! members, their state and the epoch, in plain text or JSON. A member's state is its own
//! last report, counted only under its registration's lease; a report on
//! an epoch that is no longer the group's is shown as stale, never as idle.

use etcd_client::Client;
use serde_json::json;

use crate::error::Fallible;
use crate::group_watch::Snapshot;
use crate::keys::{Report, ReportState};

pub(crate) async fn run(client: Client, group: String, as_json: bool) -> u8 {
    match status(&client, &group, as_json).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("freezefs-group: group {group}: {e}");
            1
        }
    }
}

fn state_word(state: ReportState) -> &'static str {
    match state {
        ReportState::Freezing => "freezing",
        ReportState::Frozen => "frozen",
        ReportState::Failed => "failed",
        ReportState::Ended => "ended",
        ReportState::Thawed => "thawed",
    }
}

/// A member's state: in the epoch on record, by its report on that epoch
/// (`freezing` until it answers); outside it, `idle` unless its last report
/// left it `frozen`, `freezing` or `ended`, which is then shown, stale.
/// The state, and the stale report's epoch.
fn state_of(current_epoch: Option<i64>, report: Option<&Report>) -> (&'static str, Option<i64>) {
    match (current_epoch, report) {
        (Some(epoch), Some(r)) if r.epoch == epoch => (state_word(r.state), None),
        (Some(_), _) => ("freezing", None),
        (None, Some(r)) if matches!(r.state, ReportState::Thawed | ReportState::Failed) => {
            ("idle", None)
        }
        (None, Some(r)) => (state_word(r.state), Some(r.epoch)),
        (None, None) => ("idle", None),
    }
}

async fn status(client: &Client, group: &str, as_json: bool) -> Fallible<()> {
    let seen = Snapshot::read(client, group).await?;
    let found = seen.epoch();
    let doc = found.as_ref().and_then(|e| e.doc.clone());
    let registered = seen.members();
    let mut names: Vec<String> = registered.iter().map(|m| m.node.clone()).collect();
    for m in doc.iter().flat_map(|d| &d.members) {
        if !names.contains(m) {
            names.push(m.clone());
        }
    }
    names.sort();
    let lost: Vec<&String> = doc
        .iter()
        .flat_map(|d| &d.members)
        .filter(|m| seen.member(m).is_none())
        .collect();
    let (frozen, why) = match (&found, &doc) {
        (None, _) => (
            false,
            seen.ended()
                .map(|e| format!("epoch {} ended: {}", e.epoch, e.why)),
        ),
        (Some(e), None) => (
            false,
            Some(format!(
                "broken: the epoch key's value (epoch {}) is not an epoch; end it with freezefs-group thaw --group {group}",
                e.epoch
            )),
        ),
        (Some(_), Some(_)) if !lost.is_empty() => (
            false,
            Some(format!(
                "member {} was lost: the epoch is ending and every member thaws",
                lost.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        ),
        (Some(_), Some(_)) => (true, None),
    };
    let current = found.as_ref().filter(|_| doc.is_some()).map(|e| e.epoch);
    let members: Vec<serde_json::Value> = names
        .iter()
        .map(|name| {
            let member = registered.iter().find(|m| m.node == *name);
            let in_epoch = doc.as_ref().is_some_and(|d| d.members.contains(name));
            let report = seen.report_of(name);
            let epoch_of_member = current.filter(|_| in_epoch);
            let (state, stale_epoch) = match member {
                None if in_epoch => ("lost", None),
                None => ("idle", None),
                Some(_) => state_of(epoch_of_member, report.as_ref()),
            };
            let doc = member.and_then(|m| m.doc.as_ref());
            json!({
                "name": name,
                "registered": member.is_some(),
                "host": doc.map(|m| m.host.clone()),
                "pid": doc.map(|m| m.pid),
                "clock_unix_ms": doc.map(|m| m.clock_unix_ms),
                "mounts": doc.map(|m| m.mounts.clone()).unwrap_or_default(),
                "state": state,
                "stale": stale_epoch.is_some(),
                "report_epoch": report.as_ref().map(|r| r.epoch),
                "why": report.as_ref().map(|r| r.why.clone()).filter(|w| !w.is_empty()),
            })
        })
        .collect();
    let ignored = seen.forged();
    if as_json {
        let doc_json = json!({
            "group": group,
            "frozen": frozen,
            "why": why,
            "epoch": found.as_ref().map(|e| e.epoch),
            "broken": found.as_ref().is_some_and(|e| e.doc.is_none()),
            "by": doc.as_ref().map(|d| d.by.clone()),
            "timeout_s": doc.as_ref().map(|d| d.timeout_s),
            "members": members,
            "ignored_reports": ignored,
            "last_ended": seen.ended().map(|e| json!({"epoch": e.epoch, "why": e.why, "asked": e.asked})),
        });
        println!("{doc_json}");
        return Ok(());
    }
    match (&found, &doc, frozen) {
        (Some(e), Some(d), true) => println!(
            "group {group}: frozen, epoch {}, timeout {} s, by {}",
            e.epoch, d.timeout_s, d.by
        ),
        _ => println!(
            "group {group}: not frozen{}",
            why.as_ref().map_or(String::new(), |w| format!(" ({w})"))
        ),
    }
    for node in &ignored {
        println!("ignored report/{node}: not written under {node}'s registration lease");
    }
    println!("{:<16} {:<16} {:<8} MOUNTS", "MEMBER", "STATE", "PID");
    for m in &members {
        let pid = m["pid"].as_u64().map_or("-".to_string(), |p| p.to_string());
        let mounts: Vec<&str> = m["mounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        let mut state = m["state"].as_str().unwrap_or("").to_string();
        if m["stale"].as_bool() == Some(true) {
            state.push_str(&format!(" (stale: epoch {})", m["report_epoch"]));
        }
        println!(
            "{:<16} {:<16} {:<8} {}",
            m["name"].as_str().unwrap_or(""),
            state,
            pid,
            mounts.join(",")
        );
    }
    Ok(())
}
