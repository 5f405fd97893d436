//! What the agent makes of the group's changes: a new epoch to join, the
//! epoch's end (and why, from `ended`), another member lost or failed
//! ([`ending::member_failure`], as the freezing command reads them too),
//! its own registration gone.

use crate::ending;
use crate::error::Fallible;
use crate::group_watch::Change;
use crate::keys::{self, Ended, Epoch, GroupKey};

use super::{Agent, PartEnd};

impl Agent {
    /// Acts on the changes; an error when this agent can no longer serve
    /// (another agent took its name).
    pub(super) async fn on_changes(&mut self, changes: &[Change]) -> Fallible<()> {
        // A command that ends an epoch writes `ended` in the same revision.
        let ended: Option<Ended> = changes
            .iter()
            .find(|c| c.put && c.key == GroupKey::Ended)
            .and_then(|c| keys::from_json(&c.value));
        for change in changes {
            match &change.key {
                // A put of the epoch it knows (moved to another lease) is no
                // new epoch.
                GroupKey::Epoch if change.put && change.create_revision > self.seen_epoch => {
                    self.seen_epoch = change.create_revision;
                    self.end_part("a new epoch began", false);
                    if let Some(doc) = keys::from_json::<Epoch>(&change.value) {
                        // A part still ending is replaced once its thaw is
                        // reported: the new one starts then.
                        self.next = Some((change.create_revision, doc));
                    }
                }
                GroupKey::Epoch if change.put => {}
                GroupKey::Epoch => {
                    // An epoch announced while the last part was thawing,
                    // and ended before it began, is not begun at all.
                    self.next = None;
                    let end = self.part.as_ref().map(|part| match &ended {
                        Some(e) if e.epoch == part.epoch => PartEnd {
                            why: e.why.clone(),
                            asked: e.asked,
                            epoch_gone: true,
                        },
                        _ if part.group_left().as_secs() < 1 => PartEnd {
                            why: "the group's timeout passed".to_string(),
                            asked: false,
                            epoch_gone: true,
                        },
                        _ => PartEnd {
                            why: "the epoch ended without a word of why: the freezing command \
                                  was lost (it died, hung or lost etcd), or etcd was too full \
                                  to record why"
                                .to_string(),
                            asked: false,
                            epoch_gone: true,
                        },
                    });
                    if let Some(end) = end {
                        self.end_part_as(end);
                    }
                }
                GroupKey::Member(node) if *node == self.name => {
                    let what_happened = if !change.put {
                        "was deleted"
                    } else if change.lease != self.lease.id {
                        "was rewritten under another lease"
                    } else {
                        continue;
                    };
                    let why = format!("its own registration {what_happened}");
                    self.end_group(&why).await;
                    self.register_again(what_happened).await?;
                }
                _ => {
                    let Some(part) = &self.part else { continue };
                    let failed = ending::member_failure(part.epoch, change)
                        .filter(|(node, _)| *node != self.name && part.doc.members.contains(node));
                    if let Some((_, why)) = failed {
                        self.end_group(&why).await;
                    }
                }
            }
        }
        self.begin_next().await;
        Ok(())
    }

    pub(super) async fn begin_next(&mut self) {
        if self.part.is_none() {
            if let Some((epoch, doc)) = self.next.take() {
                self.begin(epoch, doc).await;
            }
        }
    }
}
