//! What the agent makes of the group's changes: a new epoch to join, the
//! epoch's end (and why, from `ended`), another member lost or failed
//! ([`ending::member_failure`], as the freezing command reads them too).

use crate::ending;
use crate::group_watch::Change;
use crate::keys::{self, Ended, Epoch, GroupKey};
use crate::local;

use super::Agent;

impl Agent {
    pub(super) async fn on_changes(&mut self, changes: &[Change]) {
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
                    let why = self.part.as_ref().map(|part| match &ended {
                        Some(e) if e.epoch == part.epoch => (e.why.clone(), e.asked),
                        _ if local::unix_ms() + 1000 >= part.doc.deadline_unix_ms => {
                            ("the group's deadline passed".to_string(), false)
                        }
                        _ => (
                            "the freezing command was lost: it died, hung or lost etcd".to_string(),
                            false,
                        ),
                    });
                    if let Some((why, asked)) = why {
                        self.end_part(&why, asked);
                    }
                }
                GroupKey::Member(node) if !change.put && *node == self.name => {
                    self.end_part("its own registration vanished from etcd", false);
                }
                _ => {
                    let Some(part) = &self.part else { continue };
                    let failed = ending::member_failure(part.epoch, change)
                        .filter(|(node, _)| *node != self.name && part.doc.members.contains(node));
                    if let Some((_, why)) = failed {
                        self.end_part(&why, false);
                    }
                }
            }
        }
        self.begin_next().await;
    }

    pub(super) async fn begin_next(&mut self) {
        if self.part.is_none() {
            if let Some((epoch, doc)) = self.next.take() {
                self.begin(epoch, doc).await;
            }
        }
    }
}
