//! `freezefs-group agent`: one host's member of a group. It registers under
//! a lease of its own, watches the group, freezes its own mount points (and
//! only those) when an epoch names it, reports under its lease, and thaws as
//! soon as anything in the group fails: a member's key or the epoch gone, a
//! member's failure, its own lease lost.

use std::path::PathBuf;
use std::time::Duration;

use etcd_client::Client;
use freezefs::Freezer;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::ending;
use crate::error::{Fallible, GroupError};
use crate::events::What;
use crate::group_watch::GroupWatch;
use crate::keys::{Epoch, Report, ReportState};
use crate::lease::Lease;
use crate::local::{self, LocalFreeze, LocalNews};

mod changes;
mod registration;
mod reports;

/// How often a frozen agent moves its local deadline along.
const RENEW_PERIOD: Duration = Duration::from_millis(250);

/// How long an agent may take to freeze before it says `freezing`: the
/// freezing command waits for a member's first word at most the TTL and a
/// second (at least 3 s), and a quick freeze's `frozen` is that word.
const ANSWER_AFTER: Duration = Duration::from_millis(500);

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
    /// It deleted its `held/NODE` to speak through a full etcd: it puts it
    /// back with its next `frozen` report.
    held_key_gone: bool,
    news: mpsc::UnboundedSender<LocalNews>,
}

/// The epoch this agent takes part in, from its freeze to its report.
struct Part {
    epoch: i64,
    doc: Epoch,
    /// When this agent saw the epoch, on its own monotonic clock: the
    /// group's timeout counts from here, whatever the hosts' clocks say.
    seen_at: Instant,
    local: LocalFreeze,
    frozen: bool,
    /// It said `freezing` (or `frozen`): its agent lives.
    answered: bool,
    /// Set once the part is ending.
    ending: Option<PartEnd>,
}

/// Why a part ends.
struct PartEnd {
    why: String,
    /// A command ended the epoch, as asked.
    asked: bool,
    /// It ends because the epoch was deleted: whoever deleted it knows
    /// whether it was asked, even when etcd was too full to say so.
    epoch_gone: bool,
}

impl Part {
    /// The group's time left, by this host's monotonic clock.
    fn group_left(&self) -> Duration {
        Duration::from_secs(u64::from(self.doc.timeout_s)).saturating_sub(self.seen_at.elapsed())
    }
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
            .map_err(|e| GroupError::Local(format!("{}: {e}", mount.display())))?;
    }
    let mut term = signal(SignalKind::terminate()).map_err(GroupError::local)?;
    let mut int = signal(SignalKind::interrupt()).map_err(GroupError::local)?;
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
        held_key_gone: false,
        news,
    };
    let (seen, registered) = agent.register().await?;
    // From the registration on, not from the read after it: an epoch
    // announced in between (the freezing command saw us registered) is
    // one of ours, and the watch brings it.
    let mut watch = GroupWatch::after(&agent.client, &agent.group, registered, &seen);
    // An epoch that began before this agent registered is not joined: its
    // freezing command counted on another agent by this name, and that one
    // is gone, so the epoch is ending anyway.
    agent.seen_epoch = seen
        .epoch()
        .map(|e| e.epoch)
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
                return Err(GroupError::Refused(
                    "lost its etcd lease: every freeze of this host ended".into(),
                ));
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            changes = watch.next() => {
                if let Err(e) = agent.on_changes(&changes).await {
                    agent.end_part(&e.to_string(), false);
                    agent.finish(&mut news_rx).await;
                    let _ = agent.lease.revoke(&agent.client).await;
                    return Err(e);
                }
            }
            Some(news) = news_rx.recv() => agent.on_news(news).await,
            _ = tick.tick() => {
                agent.answer_if_slow().await;
                agent.renew().await;
            }
        }
    }
    agent.end_part("its agent was stopped", false);
    agent.finish(&mut news_rx).await;
    agent.lease.revoke(&agent.client).await
}

impl Agent {
    /// An epoch was announced: freeze if it names this agent.
    async fn begin(&mut self, epoch: i64, doc: Epoch) {
        if !doc.members.contains(&self.name) {
            return;
        }
        let seen_at = Instant::now();
        let timeout_s = self
            .lease
            .alive_until()
            .and_then(|until| {
                let lease_left = until.saturating_duration_since(seen_at);
                local::whole_seconds(lease_left.min(Duration::from_secs(doc.timeout_s.into())))
            })
            .unwrap_or(1);
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
            seen_at,
            local,
            frozen: false,
            answered: false,
            ending: None,
        });
    }

    /// Says `freezing` when the freeze takes longer than [`ANSWER_AFTER`]
    /// (its hooks run): the freezing command counts on a first word to
    /// know that an agent serves the registration. A quick freeze says
    /// `frozen` first, and a put fewer for every member of a large group.
    async fn answer_if_slow(&mut self) {
        let Some(part) = self
            .part
            .as_mut()
            .filter(|p| !p.answered && p.ending.is_none() && p.seen_at.elapsed() >= ANSWER_AFTER)
        else {
            return;
        };
        part.answered = true;
        let epoch = part.epoch;
        self.put_report(&Report {
            epoch,
            state: ReportState::Freezing,
            frozen_at_unix_ns: None,
            held: None,
            why: String::new(),
            asked: false,
        })
        .await;
    }

    /// The local deadline: no later than the moment etcd may drop this
    /// agent's lease, nor the end of the group's timeout. `None` once
    /// either is less than a second away: the last one set then stands.
    fn local_timeout(&self, part: &Part) -> Option<u32> {
        let lease_left = self
            .lease
            .alive_until()?
            .saturating_duration_since(Instant::now());
        local::whole_seconds(lease_left.min(part.group_left()))
    }

    fn end_part(&mut self, why: &str, asked: bool) {
        self.end_part_as(PartEnd {
            why: why.to_string(),
            asked,
            epoch_gone: false,
        });
    }

    fn end_part_as(&mut self, end: PartEnd) {
        if let Some(part) = &mut self.part {
            if part.ending.is_none() {
                part.ending = Some(end);
                part.local.end();
            }
        }
    }

    /// Ends this agent's part and the group's epoch with it: a member of
    /// the epoch is lost or failed, or this one's freeze ended early. Any
    /// live agent may end it; the transaction is guarded by the epoch's
    /// revision, so only the first does, and without `-- CMD` nobody else
    /// would before the group's timeout.
    async fn end_group(&mut self, why: &str) {
        let Some(epoch) = self.part.as_ref().map(|p| p.epoch) else {
            return;
        };
        self.end_part(why, false);
        if let Err(e) = ending::end_epoch(&self.client, &self.group, epoch, why, false).await {
            eprintln!(
                "freezefs-group agent {}: could not end epoch {epoch}: {e}",
                self.name
            );
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
                part.answered = true;
                let report = Report {
                    epoch,
                    state: ReportState::Frozen,
                    frozen_at_unix_ns: Some(at_unix_ns),
                    held: None,
                    why: String::new(),
                    asked: false,
                };
                self.event(What::Frozen, epoch, "frozen for the group");
                self.put_frozen(&report).await;
            }
            LocalNews::Failed { epoch, error } => {
                self.part = None;
                self.report_failed(epoch, &error).await;
                self.begin_next().await;
            }
            LocalNews::Thawed { epoch, held, ended } => {
                let PartEnd {
                    why,
                    asked,
                    epoch_gone,
                } = match self.part.take() {
                    Some(Part {
                        ending: Some(ending),
                        ..
                    }) => ending,
                    _ => PartEnd {
                        why: "thawed".to_string(),
                        asked: false,
                        epoch_gone: false,
                    },
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
                let report = Report {
                    epoch,
                    state: ReportState::Thawed,
                    frozen_at_unix_ns: None,
                    held: Some(held),
                    why,
                    asked,
                };
                self.put_last_word(&report, held && epoch_gone).await;
                self.begin_next().await;
            }
        }
    }

    /// While frozen, moves the local deadline along with the lease; a freeze
    /// that is no longer there (its deadline, another tool's thaw) ends the
    /// part, and the group with it. After the last renewal (the lease or
    /// the group's timeout less than a second away) it still checks, so
    /// that a freeze ended by its deadline ends the group within 250 ms.
    async fn renew(&mut self) {
        let Some(part) = self
            .part
            .as_ref()
            .filter(|p| p.frozen && p.ending.is_none())
        else {
            return;
        };
        let (epoch, timeout_s, group_left) = (part.epoch, part.doc.timeout_s, part.group_left());
        let lost = match self.local_timeout(part) {
            Some(timeout_s) => local::renew(&self.freezer, &self.mounts, timeout_s).err(),
            None => local::still_frozen(&self.freezer, &self.mounts).err(),
        };
        let Some(e) = lost else { return };
        let why = if group_left < Duration::from_secs(1) {
            format!("the group's timeout of {timeout_s} s passed ({e})")
        } else {
            format!("its freeze ended early ({e})")
        };
        let report = Report {
            epoch,
            state: ReportState::Ended,
            frozen_at_unix_ns: None,
            held: Some(false),
            why: why.clone(),
            asked: false,
        };
        self.put_last_word(&report, false).await;
        self.end_group(&why).await;
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
}
