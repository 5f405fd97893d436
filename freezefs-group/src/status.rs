//! `freezefs-group status`: the members, their state, the epoch and the time
//! left, in plain text or JSON.

use etcd_client::Client;
use serde_json::json;

use crate::etcd::Fallible;
use crate::group_watch::Snapshot;
use crate::keys::{Report, ReportState};
use crate::local::unix_ms;

pub(crate) async fn run(client: Client, group: String, as_json: bool) -> u8 {
    match status(&client, &group, as_json).await {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("freezefs-group: group {group}: {e}");
            1
        }
    }
}

/// A member's state in the epoch on record, by its report on that epoch:
/// `frozen`, `freezing`, `failed`, `ended`, `thawed`, or `idle` when it
/// takes no part.
fn state_of(in_epoch: bool, current: Option<&Report>) -> &'static str {
    match (in_epoch, current.map(|r| r.state)) {
        (false, _) => "idle",
        (true, None) => "freezing",
        (true, Some(ReportState::Frozen)) => "frozen",
        (true, Some(ReportState::Failed)) => "failed",
        (true, Some(ReportState::Ended)) => "ended",
        (true, Some(ReportState::Thawed)) => "thawed",
    }
}

async fn status(client: &Client, group: &str, as_json: bool) -> Fallible<()> {
    let seen = Snapshot::read(client, group).await?;
    let epoch = seen.epoch();
    let reports = seen.reports();
    let registered = seen.members();
    let mut names: Vec<String> = registered.iter().map(|(n, _)| n.clone()).collect();
    if let Some((_, doc)) = &epoch {
        for m in &doc.members {
            if !names.contains(m) {
                names.push(m.clone());
            }
        }
    }
    names.sort();
    let members: Vec<serde_json::Value> = names
        .iter()
        .map(|name| {
            let member = registered
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, m)| m.as_ref());
            let current = reports
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, r)| r.as_ref())
                .filter(|r| Some(r.epoch) == epoch.as_ref().map(|(e, _)| *e));
            let in_epoch = epoch
                .as_ref()
                .is_some_and(|(_, d)| d.members.contains(name));
            let state = match member {
                None if in_epoch => "lost",
                _ => state_of(in_epoch, current),
            };
            json!({
                "name": name,
                "registered": member.is_some(),
                "host": member.map(|m| m.host.clone()),
                "pid": member.map(|m| m.pid),
                "mounts": member.map(|m| m.mounts.clone()).unwrap_or_default(),
                "state": state,
                "why": current.map(|r| r.why.clone()).filter(|w| !w.is_empty()),
            })
        })
        .collect();
    let left_s = epoch
        .as_ref()
        .map(|(_, d)| d.deadline_unix_ms.saturating_sub(unix_ms()) as f64 / 1000.0);
    let last_ended = seen.ended();
    if as_json {
        let doc = json!({
            "group": group,
            "frozen": epoch.is_some(),
            "epoch": epoch.as_ref().map(|(e, _)| e),
            "by": epoch.as_ref().map(|(_, d)| d.by.clone()),
            "timeout_s": epoch.as_ref().map(|(_, d)| d.timeout_s),
            "left_s": left_s,
            "members": members,
            "last_ended": last_ended.as_ref().map(|e| json!({"epoch": e.epoch, "why": e.why, "asked": e.asked})),
        });
        println!("{doc}");
        return Ok(());
    }
    match (&epoch, left_s) {
        (Some((e, d)), Some(left)) => println!(
            "group {group}: frozen, epoch {e}, {left:.1} s left of {} s, by {}",
            d.timeout_s, d.by
        ),
        _ => println!("group {group}: not frozen"),
    }
    println!("{:<16} {:<9} {:<8} MOUNTS", "MEMBER", "STATE", "PID");
    for m in &members {
        let pid = m["pid"].as_u64().map_or("-".to_string(), |p| p.to_string());
        let mounts: Vec<&str> = m["mounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
            .collect();
        println!(
            "{:<16} {:<9} {:<8} {}",
            m["name"].as_str().unwrap_or(""),
            m["state"].as_str().unwrap_or(""),
            pid,
            mounts.join(",")
        );
    }
    Ok(())
}
