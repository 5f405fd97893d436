//! The barrier: every member's `frozen` report for the epoch, counted only
//! under its registration's lease, or why not, and the figures of how far
//! apart the members froze.

use std::time::Duration;

use tokio::time::Instant;

use super::{Announced, failure, ignored_report};
use crate::keys::{self, Report, ReportState};
use crate::local::unix_ns;

/// The barrier's figures: when the last member froze and how far apart
/// the members froze, by their clocks, with the members whose clocks are
/// off left out (and named).
pub(super) struct Figures {
    last_freeze_ns: Option<u128>,
    spread_ms: f64,
    skewed: Vec<(String, f64)>,
}

impl Figures {
    pub(super) fn line(&self) -> String {
        let mut line = match self.last_freeze_ns {
            Some(last) => format!(
                "barrier {:.1} ms after the last freeze, freezes spread over {:.1} ms",
                unix_ns().saturating_sub(last) as f64 / 1e6,
                self.spread_ms
            ),
            None => "no freeze time to measure by".to_string(),
        };
        for (node, off_s) in &self.skewed {
            line.push_str(&format!(
                "; {node}'s clock is off by {off_s:+.1} s or more: its freeze time is left out (nothing is timed by it)"
            ));
        }
        line
    }
}

/// Why the barrier was not reached, and the members that never answered.
pub(super) struct BarrierFailure {
    pub(super) why: String,
    pub(super) silent: Vec<String>,
}

impl From<String> for BarrierFailure {
    fn from(why: String) -> BarrierFailure {
        BarrierFailure {
            why,
            silent: Vec::new(),
        }
    }
}

/// Waits until every member reports frozen: the figures, or why not. Each
/// member must answer (`freezing`) within its TTL and a second, or it is
/// no live agent's and the barrier fails at once rather than at `-t`.
pub(super) async fn barrier(
    announced: &mut Announced,
    ttl_s: u32,
) -> Result<Figures, BarrierFailure> {
    let members = announced.doc.members.clone();
    let mut answered = vec![false; members.len()];
    let mut frozen_at: Vec<Option<(u128, u128)>> = vec![None; members.len()];
    let answer_by = announced.at + Duration::from_secs(u64::from(ttl_s) + 1);
    let give_up = announced.deadline();
    while frozen_at.iter().any(Option::is_none) {
        let silent = answered.iter().any(|a| !a);
        let wake = if silent {
            answer_by.min(give_up)
        } else {
            give_up
        };
        let Ok(changes) = tokio::time::timeout_at(wake, announced.watch.next()).await else {
            let silent = named(&members, |i| !answered[i]);
            let why = if Instant::now() >= give_up {
                format!(
                    "{} did not freeze within {} s",
                    named(&members, |i| frozen_at[i].is_none()).join(", "),
                    announced.doc.timeout_s
                )
            } else {
                format!(
                    "{} did not answer within {} s: no live agent serves its registration",
                    silent.join(", "),
                    ttl_s + 1
                )
            };
            return Err(BarrierFailure { why, silent });
        };
        for change in &changes {
            let i = match announced.reporter(change) {
                Some(Ok(i)) => Some(i),
                Some(Err(node)) => {
                    eprintln!("{}", ignored_report(&node));
                    continue;
                }
                None => None,
            };
            if let Some(why) = failure(announced.epoch, &members, change) {
                // In the timeout's last second the members' own deadlines
                // (whole seconds, rounded down) end their parts: the group's
                // timeout is why, and the members still freezing are late.
                let late = named(&members, |i| frozen_at[i].is_none());
                if Instant::now() + Duration::from_secs(1) >= give_up && !late.is_empty() {
                    return Err(format!(
                        "{} did not freeze within {} s ({why})",
                        late.join(", "),
                        announced.doc.timeout_s
                    )
                    .into());
                }
                return Err(why.into());
            }
            let Some(i) = i.filter(|_| change.put) else {
                continue;
            };
            let Some(report) =
                keys::from_json::<Report>(&change.value).filter(|r| r.epoch == announced.epoch)
            else {
                continue;
            };
            answered[i] = true;
            if let (ReportState::Frozen, Some(at)) = (report.state, report.frozen_at_unix_ns) {
                frozen_at[i] = Some((at, unix_ns()));
            }
        }
    }
    // A freeze time outside [announced, seen] by this host's clock is told
    // by a clock that disagrees with it.
    let slack = 1_000_000_000u128;
    let mut skewed = Vec::new();
    let mut times = Vec::new();
    for (node, at) in members.iter().zip(frozen_at.into_iter().flatten()) {
        let (frozen, seen) = at;
        if frozen + slack < announced.at_unix_ns {
            skewed.push((
                node.clone(),
                -((announced.at_unix_ns - frozen) as f64) / 1e9,
            ));
        } else if frozen > seen + slack {
            skewed.push((node.clone(), (frozen - seen) as f64 / 1e9));
        } else {
            times.push(frozen);
        }
    }
    let (first, last) = (times.iter().min().copied(), times.iter().max().copied());
    Ok(Figures {
        last_freeze_ns: last,
        spread_ms: match (first, last) {
            (Some(first), Some(last)) => (last - first) as f64 / 1e6,
            _ => 0.0,
        },
        skewed,
    })
}

/// The members for which `pick` (by their index) holds.
fn named(members: &[String], pick: impl Fn(usize) -> bool) -> Vec<String> {
    members
        .iter()
        .enumerate()
        .filter(|(i, _)| pick(*i))
        .map(|(_, m)| m.clone())
        .collect()
}
