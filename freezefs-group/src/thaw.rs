//! `freezefs-group thaw`: end the group's freeze, and tell per member whether
//! it held throughout.

use etcd_client::Client;

use crate::ending::{self, Ending, Outcome};
use crate::error::Fallible;
use crate::freeze::print_outcomes;
use crate::group_watch::Snapshot;

pub(crate) async fn run(client: Client, group: String) -> u8 {
    match thaw(&client, &group).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("freezefs-group: group {group}: {e}");
            1
        }
    }
}

async fn thaw(client: &Client, group: &str) -> Fallible<u8> {
    let seen = Snapshot::read(client, group).await?;
    let Some(found) = seen.epoch() else {
        return Ok(not_frozen(group, &seen));
    };
    let epoch = found.epoch;
    let Some(doc) = found.doc else {
        // No agent joins an epoch it cannot read: ending it frees the group.
        let why = "its value was not an epoch; ended by freezefs-group thaw";
        return Ok(
            match ending::end_epoch(client, group, epoch, why, true).await? {
                Ending::Over => not_frozen(group, &Snapshot::read(client, group).await?),
                _ => {
                    println!(
                        "group {group}: ended epoch {epoch}, whose value was not an epoch (no member froze for it)"
                    );
                    0
                }
            },
        );
    };
    let ended =
        ending::end_epoch(client, group, epoch, "thawed by freezefs-group thaw", true).await?;
    if ended == Ending::Over {
        let again = Snapshot::read(client, group).await?;
        return Ok(not_frozen(group, &again));
    }
    ending::end_warning(group, &Ok(ended.clone()));
    let full = ended == Ending::Unrecorded;
    let outcomes = ending::outcomes(client, group, epoch, &doc.members, true, full).await?;
    print_outcomes(&outcomes, true);
    if outcomes.all_consistent() {
        println!(
            "group {group}: thawed (epoch {epoch}); the freeze held throughout on every member"
        );
        Ok(0)
    } else {
        println!(
            "group {group}: thawed (epoch {epoch}); the freeze did not hold throughout: the snapshot is not consistent"
        );
        Ok(1)
    }
}

/// Nothing to thaw: says so, and how the last epoch ended if its members
/// still tell.
fn not_frozen(group: &str, seen: &Snapshot) -> u8 {
    eprintln!("freezefs-group: group {group} is not frozen");
    if let Some(ended) = seen.ended() {
        eprintln!(
            "freezefs-group: its last freeze (epoch {}) ended: {}",
            ended.epoch, ended.why
        );
    }
    let reports: Vec<(String, crate::keys::Report)> = seen
        .members()
        .into_iter()
        .filter_map(|m| Some((m.node.clone(), seen.report_of(&m.node)?)))
        .collect();
    let Some(epoch) = reports.iter().map(|(_, r)| r.epoch).max() else {
        return 1;
    };
    let broken: Vec<String> = reports
        .iter()
        .filter(|(_, r)| r.epoch == epoch)
        .filter(|(node, r)| !Outcome::of(node, r).is_some_and(|o| o.consistent()))
        .map(|(node, r)| format!("{node} ({})", r.why))
        .collect();
    if !broken.is_empty() {
        eprintln!(
            "freezefs-group: its last freeze (epoch {epoch}) ended early on {}: that snapshot is not consistent",
            broken.join(", ")
        );
    }
    1
}
