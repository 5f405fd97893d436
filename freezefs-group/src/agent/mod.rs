//! `freezefs-group agent`: one host's member of a group. It registers under
//! a lease of its own, watches the group, freezes its own mount points (and
//! only those) when an epoch names it, reports under its lease, and thaws as
//! soon as anything in the group fails: a member's key or the epoch gone, a
//! member's failure, its own lease lost.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use freezefs::Freezer;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::etcd::{self, Fallible};
use crate::events::{Event, What};
use crate::group_watch::{GroupWatch, Snapshot};
use crate::keys::{self, Epoch, Member, Report, ReportState};
use crate::lease::Lease;
use crate::local::{self, LocalFreeze, LocalNews};

mod changes;

/// How often a frozen agent moves its local deadline along.
const RENEW_PERIOD: Duration = Duration::from_millis(250);

/// How long a stopping agent waits for its thaw to finish.
const THAW_WAIT: Duration = Duration::from_secs(10);

struct Agent {
    client: Client,
    group: String,
    name: String,
    mounts: Vec<PathBuf>,
    mount_names: Vec<String>,
    freezer: Freezer,
    lease: Lease,
    ttl_s: u32,
    part: Option<Part>,
    /// An epoch announced while the last part was still thawing.
    next: Option<(i64, Epoch)>,
    /// The newest epoch seen: only a newer one is joined.
    seen_epoch: i64,
    news: mpsc::UnboundedSender<LocalNews>,
}

/// The epoch this agent takes part in, from its freeze to its report.
struct Part {
    epoch: i64,
    doc: Epoch,
    local: LocalFreeze,
    frozen: bool,
    /// Set once the part is ending: why, and whether a command asked.
    ending: Option<(String, bool)>,
}

pub(crate) async fn run(
    client: Client,
    group: String,
    name: String,
    ttl_s: u32,
    mounts: Vec<PathBuf>,
) -> Fallible<()> {
    let freezer = Freezer::from_env();
    for mount in &mounts {
        freezer
            .status(mount)
            .map_err(|e| format!("{}: {e}", mount.display()))?;
    }
    let mut term = signal(SignalKind::terminate()).map_err(|e| e.to_string())?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| e.to_string())?;
    let lease = Lease::grant(&client, ttl_s, true).await?;
    let (news, mut news_rx) = mpsc::unbounded_channel();
    let mount_names = mounts.iter().map(|m| m.display().to_string()).collect();
    let mut agent = Agent {
        client,
        group,
        name,
        mounts,
        mount_names,
        freezer,
        lease,
        ttl_s,
        part: None,
        next: None,
        seen_epoch: 0,
        news,
    };
    let (seen, registered) = agent.register().await?;
    // From the registration on, not from the read after it: an epoch
    // announced in between (the freezing command saw us registered) is
    // one of ours, and the watch brings it.
    let mut watch = GroupWatch::after(&agent.client, &agent.group, registered);
    // An epoch that began before this agent registered is not joined: its
    // freezing command counted on another agent by this name, and that one
    // is gone, so the epoch is ending anyway.
    agent.seen_epoch = seen
        .epoch()
        .map(|(epoch, _)| epoch)
        .filter(|&epoch| epoch <= registered)
        .unwrap_or(0);
    // The local deadline is the lease's, rounded down to whole seconds:
    // renewals four times a second keep it at least a second ahead while
    // the lease lives, and a hung agent's no later than its lease's end.
    let mut tick = tokio::time::interval(RENEW_PERIOD);
    loop {
        tokio::select! {
            () = agent.lease.lost() => {
                agent.end_part("it lost its etcd lease", false);
                agent.finish(&mut news_rx).await;
                return Err("lost its etcd lease: every freeze of this host ended".into());
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            changes = watch.next() => agent.on_changes(&changes).await,
            Some(news) = news_rx.recv() => agent.on_news(news).await,
            _ = tick.tick() => agent.renew().await,
        }
    }
    agent.end_part("its agent was stopped", false);
    agent.finish(&mut news_rx).await;
    agent.lease.revoke(&agent.client).await
}

impl Agent {
    /// Puts `member/NAME` under the lease, unless another agent holds it:
    /// then waits for that one's lease to end, at most a TTL and a second.
    /// The group as read just after, and the registration's revision.
    async fn register(&mut self) -> Fallible<(Snapshot, i64)> {
        let key = keys::member(&self.group, &self.name);
        let member = Member {
            host: local::hostname(),
            pid: std::process::id(),
            mounts: self.mount_names.clone(),
        };
        let give_up = Instant::now() + Duration::from_secs(u64::from(self.ttl_s) + 1);
        loop {
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(
                    key.clone(),
                    keys::to_json(&member),
                    Some(PutOptions::new().with_lease(self.lease.id)),
                )]);
            let answer = etcd::txn(&self.client, "register", txn).await?;
            if answer.succeeded() {
                let registered = answer.header().map_or(0, |h| h.revision());
                let seen = Snapshot::read(&self.client, &self.group).await?;
                return Ok((seen, registered));
            }
            if Instant::now() >= give_up {
                return Err(format!(
                    "another agent is registered as {} in group {}",
                    self.name, self.group
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// An epoch was announced: freeze if it names this agent.
    async fn begin(&mut self, epoch: i64, doc: Epoch) {
        if !doc.members.contains(&self.name) {
            return;
        }
        let left_ms = doc.deadline_unix_ms.saturating_sub(local::unix_ms());
        if left_ms == 0 {
            self.report_failed(epoch, "the group's deadline passed before it could freeze")
                .await;
            return;
        }
        let timeout_s = self.local_timeout(&doc).unwrap_or(1);
        // Names are plain words (keys::valid_name), so the tag always passes.
        let tag = format!("group={} epoch={epoch} node={}", self.group, self.name);
        let freezer = self
            .freezer
            .clone()
            .with_event_tag(&tag)
            .unwrap_or_else(|_| self.freezer.clone());
        let local = LocalFreeze::start(
            freezer,
            self.mounts.clone(),
            timeout_s,
            epoch,
            self.news.clone(),
        );
        self.part = Some(Part {
            epoch,
            doc,
            local,
            frozen: false,
            ending: None,
        });
    }

    /// The local deadline: no later than the moment etcd may drop this
    /// agent's lease, nor the group's deadline. `None` once either is less
    /// than a second away: the last one set then stands.
    fn local_timeout(&self, doc: &Epoch) -> Option<u32> {
        let lease_left = self
            .lease
            .alive_until()?
            .saturating_duration_since(Instant::now());
        let group_left = doc.deadline_unix_ms.checked_sub(local::unix_ms())?;
        local::whole_seconds(lease_left.min(Duration::from_millis(group_left)))
    }

    fn end_part(&mut self, why: &str, asked: bool) {
        if let Some(part) = &mut self.part {
            if part.ending.is_none() {
                part.ending = Some((why.to_string(), asked));
                part.local.end();
            }
        }
    }

    async fn on_news(&mut self, news: LocalNews) {
        match news {
            LocalNews::Frozen { epoch, at_unix_ns } => {
                let Some(part) = self.part.as_mut().filter(|p| p.epoch == epoch) else {
                    return;
                };
                if part.ending.is_some() {
                    return;
                }
                part.frozen = true;
                let report = Report {
                    epoch,
                    state: ReportState::Frozen,
                    frozen_at_unix_ns: Some(at_unix_ns),
                    held: None,
                    why: String::new(),
                    asked: false,
                };
                self.event(What::Frozen, epoch, "frozen for the group");
                self.put_report(&report).await;
            }
            LocalNews::Failed { epoch, error } => {
                self.part = None;
                self.report_failed(epoch, &error).await;
                self.begin_next().await;
            }
            LocalNews::Thawed { epoch, held, ended } => {
                let (why, asked) = match self.part.take() {
                    Some(Part {
                        ending: Some(ending),
                        ..
                    }) => ending,
                    _ => ("thawed".to_string(), false),
                };
                let why = if ended.is_empty() {
                    why
                } else {
                    format!("{why}; {}", ended.join("; "))
                };
                let what = if held && asked {
                    What::Thawed
                } else {
                    What::ThawedOnFailure
                };
                self.event(what, epoch, &why);
                self.put_report(&Report {
                    epoch,
                    state: ReportState::Thawed,
                    frozen_at_unix_ns: None,
                    held: Some(held),
                    why,
                    asked,
                })
                .await;
                self.begin_next().await;
            }
        }
    }

    /// While frozen, moves the local deadline along with the lease; a freeze
    /// that is no longer there (its deadline, another tool's thaw) ends the
    /// part, and the group with it.
    async fn renew(&mut self) {
        let Some(part) = self
            .part
            .as_ref()
            .filter(|p| p.frozen && p.ending.is_none())
        else {
            return;
        };
        let (epoch, doc) = (part.epoch, part.doc.clone());
        let Some(timeout_s) = self.local_timeout(&doc) else {
            return;
        };
        if let Err(e) = local::renew(&self.freezer, &self.mounts, timeout_s) {
            let why = format!("its freeze ended early ({e})");
            self.put_report(&Report {
                epoch,
                state: ReportState::Ended,
                frozen_at_unix_ns: None,
                held: Some(false),
                why: why.clone(),
                asked: false,
            })
            .await;
            self.end_part(&why, false);
        }
    }

    /// Waits for the part's thaw and reports it.
    async fn finish(&mut self, news_rx: &mut mpsc::UnboundedReceiver<LocalNews>) {
        let give_up = Instant::now() + THAW_WAIT;
        while self.part.is_some() {
            match tokio::time::timeout_at(give_up, news_rx.recv()).await {
                Ok(Some(news)) => self.on_news(news).await,
                _ => return,
            }
        }
    }

    async fn report_failed(&mut self, epoch: i64, why: &str) {
        self.event(What::Failed, epoch, why);
        self.put_report(&Report {
            epoch,
            state: ReportState::Failed,
            frozen_at_unix_ns: None,
            held: None,
            why: why.to_string(),
            asked: false,
        })
        .await;
    }

    async fn put_report(&self, report: &Report) {
        let key = keys::report(&self.group, &self.name);
        let put = etcd::put(
            &self.client,
            "report",
            key,
            keys::to_json(report),
            self.lease.id,
        );
        if let Err(e) = put.await {
            eprintln!("freezefs-group agent {}: {e}", self.name);
        }
    }

    fn event(&self, what: What, epoch: i64, reason: &str) {
        Event {
            what,
            group: &self.group,
            epoch,
            node: &self.name,
            mounts: &self.mount_names,
            reason,
        }
        .send();
    }
}
