//! `freezefs-group thaw`: end the group's freeze, and tell per member whether
//! it held throughout.

use std::time::Duration;

use etcd_client::Client;

use crate::ending::{self, Outcome};
use crate::etcd::Fallible;
use crate::freeze::print_outcomes;
use crate::group_watch::Snapshot;
use crate::keys::Report;

/// How long to wait for the members' last reports. A hung member's lease
/// ends within its TTL (at most an hour, 5 s by default); past this it is
/// reported as not answering.
const REPORT_WAIT: Duration = Duration::from_secs(15);

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
    let Some((epoch, doc)) = seen.epoch() else {
        return Ok(not_frozen(group, &seen));
    };
    if !ending::end_epoch(client, group, epoch, "thawed by freezefs-group thaw", true).await? {
        let again = Snapshot::read(client, group).await?;
        return Ok(not_frozen(group, &again));
    }
    let outcomes = ending::outcomes(client, group, epoch, &doc.members, REPORT_WAIT).await?;
    print_outcomes(&outcomes, true);
    if outcomes.iter().all(Outcome::consistent) {
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
    let reports: Vec<(String, Report)> = seen
        .reports()
        .into_iter()
        .filter_map(|(node, r)| Some((node, r?)))
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
