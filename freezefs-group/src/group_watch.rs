//! The group's keys as they change: one etcd watch on the group's prefix,
//! opened again from the next revision whenever its stream breaks (an etcd
//! member restarting, a leader change), so that no change is missed.
//!
//! When etcd cancels the watch (the revisions it needed were compacted
//! while it was away), the changes it missed are gone: the group is read
//! again, and what differs from the keys it knew is handed on as changes
//! (a key gone as a deletion, a key new or rewritten as a put), before it
//! watches on from the revision of that read. An epoch that ended while the
//! watch was away is thus still seen to end.
//!
//! The watch runs in a task of its own and hands its changes over a
//! channel: callers wait for them in `select!` beside a 250 ms timer, and
//! a watch being created when the timer fires must not be dropped and
//! begun again (through a slow link it then never finishes being created).

use std::collections::HashMap;
use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions, WatchStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::Fallible;
use crate::etcd;
use crate::keys::{self, GroupKey};

/// One key's change.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub(crate) key: GroupKey,
    /// A put (else a deletion).
    pub(crate) put: bool,
    pub(crate) value: Vec<u8>,
    pub(crate) create_revision: i64,
    /// The lease the key was written under (0: none): whose word it is.
    pub(crate) lease: i64,
}

/// The group's changes, from the watching task.
pub(crate) struct GroupWatch {
    changes: mpsc::UnboundedReceiver<Vec<Change>>,
    task: JoinHandle<()>,
}

impl GroupWatch {
    /// Watches `group` from the revision after `seen`; `known` is the
    /// group as last read (at `seen` or later), what a gap is told against.
    pub(crate) fn after(client: &Client, group: &str, seen: i64, known: &Snapshot) -> GroupWatch {
        let mut watching = Watching {
            client: client.clone(),
            group: group.to_string(),
            next_revision: seen + 1,
            stream: None,
            known: known.revisions(),
        };
        let (tx, changes) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                if tx.send(watching.next().await).is_err() {
                    return;
                }
            }
        });
        GroupWatch { changes, task }
    }

    /// The next changes, in revision order; safe to drop while it waits.
    /// The watch retries a broken stream for ever: callers bound the wait
    /// by their leases and deadlines.
    pub(crate) async fn next(&mut self) -> Vec<Change> {
        match self.changes.recv().await {
            Some(changes) => changes,
            // The task ended (it panicked): no change will come.
            None => std::future::pending().await,
        }
    }
}

impl Drop for GroupWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The watch itself, owned by its task.
struct Watching {
    client: Client,
    group: String,
    /// The first revision not seen yet.
    next_revision: i64,
    stream: Option<WatchStream>,
    /// Every key of the group as this watch knows it: its create and mod
    /// revisions.
    known: HashMap<Vec<u8>, (i64, i64)>,
}

impl Watching {
    async fn next(&mut self) -> Vec<Change> {
        loop {
            if self.stream.is_none() {
                let options = WatchOptions::new()
                    .with_prefix()
                    .with_start_revision(self.next_revision);
                match self
                    .client
                    .watch(keys::prefix(&self.group), Some(options))
                    .await
                {
                    Ok(stream) => self.stream = Some(stream),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                }
            }
            let stream = self.stream.as_mut().expect("opened above");
            match stream.message().await {
                Ok(Some(answer)) if answer.canceled() => {
                    self.stream = None;
                    match self.read_again().await {
                        Some(missed) if !missed.is_empty() => return missed,
                        Some(_) => {}
                        None => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                }
                Ok(Some(answer)) => {
                    let events = answer.events();
                    let Some(revision) = events
                        .iter()
                        .filter_map(|e| e.kv())
                        .map(|kv| kv.mod_revision())
                        .max()
                    else {
                        continue;
                    };
                    self.next_revision = revision + 1;
                    let changes = events
                        .iter()
                        .filter_map(|e| {
                            let kv = e.kv()?;
                            let put = e.event_type() == EventType::Put;
                            if put {
                                self.known.insert(
                                    kv.key().to_vec(),
                                    (kv.create_revision(), kv.mod_revision()),
                                );
                            } else {
                                self.known.remove(kv.key());
                            }
                            Some(Change {
                                key: keys::classify(&self.group, kv.key()),
                                put,
                                value: kv.value().to_vec(),
                                create_revision: kv.create_revision(),
                                lease: kv.lease(),
                            })
                        })
                        .collect();
                    return changes;
                }
                Ok(None) | Err(_) => {
                    self.stream = None;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }

    /// After a cancelled watch: the group read again, and what changed
    /// since the keys it knew, deletions first (a key whose create revision
    /// changed was deleted, then made anew). `None` when etcd did not answer.
    async fn read_again(&mut self) -> Option<Vec<Change>> {
        let now = Snapshot::read(&self.client, &self.group).await.ok()?;
        let mut changes = Vec::new();
        for (raw, (created, _)) in &self.known {
            let still = now.entries.iter().find(|e| e.raw == *raw);
            if still.is_none_or(|e| e.create_revision != *created) {
                changes.push(Change {
                    key: keys::classify(&self.group, raw),
                    put: false,
                    value: Vec::new(),
                    create_revision: *created,
                    lease: 0,
                });
            }
        }
        for entry in &now.entries {
            if self.known.get(&entry.raw).map(|(_, modified)| *modified) != Some(entry.mod_revision)
            {
                changes.push(entry.as_put());
            }
        }
        self.known = now.revisions();
        self.next_revision = now.revision + 1;
        Some(changes)
    }
}

/// One key of the group as read.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) raw: Vec<u8>,
    pub(crate) key: GroupKey,
    pub(crate) value: Vec<u8>,
    pub(crate) create_revision: i64,
    pub(crate) mod_revision: i64,
    /// The lease it was written under (0: none).
    pub(crate) lease: i64,
}

impl Entry {
    fn as_put(&self) -> Change {
        Change {
            key: self.key.clone(),
            put: true,
            value: self.value.clone(),
            create_revision: self.create_revision,
            lease: self.lease,
        }
    }
}

/// The epoch key as read: its number, and its document unless the value
/// does not parse (a broken epoch: someone else wrote it).
#[derive(Debug, Clone)]
pub(crate) struct EpochEntry {
    pub(crate) epoch: i64,
    pub(crate) doc: Option<keys::Epoch>,
    pub(crate) lease: i64,
}

/// A `member/NODE` key, the agent's registration: its node, its document
/// unless the value does not parse, and the lease it lives under (0: none).
#[derive(Debug, Clone)]
pub(crate) struct Registration {
    pub(crate) node: String,
    pub(crate) doc: Option<keys::Member>,
    pub(crate) lease: i64,
}

impl Registration {
    fn of(node: &str, entry: &Entry) -> Registration {
        Registration {
            node: node.to_string(),
            doc: keys::from_json(&entry.value),
            lease: entry.lease,
        }
    }
}

/// The group's keys now, and the revision they were read at.
pub(crate) struct Snapshot {
    pub(crate) revision: i64,
    pub(crate) entries: Vec<Entry>,
}

impl Snapshot {
    pub(crate) async fn read(client: &Client, group: &str) -> Fallible<Snapshot> {
        let answer = etcd::get_prefix(client, "read the group", keys::prefix(group)).await?;
        Ok(Snapshot {
            revision: answer.header().map_or(0, |h| h.revision()),
            entries: answer
                .kvs()
                .iter()
                .map(|kv| Entry {
                    raw: kv.key().to_vec(),
                    key: keys::classify(group, kv.key()),
                    value: kv.value().to_vec(),
                    create_revision: kv.create_revision(),
                    mod_revision: kv.mod_revision(),
                    lease: kv.lease(),
                })
                .collect(),
        })
    }

    /// Every key's create and mod revisions: what a watch knows.
    fn revisions(&self) -> HashMap<Vec<u8>, (i64, i64)> {
        self.entries
            .iter()
            .map(|e| (e.raw.clone(), (e.create_revision, e.mod_revision)))
            .collect()
    }

    /// The epoch on record, if any.
    pub(crate) fn epoch(&self) -> Option<EpochEntry> {
        self.entry(&GroupKey::Epoch).map(|e| EpochEntry {
            epoch: e.create_revision,
            doc: keys::from_json(&e.value),
            lease: e.lease,
        })
    }

    /// The key `key`, if the group has it.
    pub(crate) fn entry(&self, key: &GroupKey) -> Option<&Entry> {
        self.entries.iter().find(|e| e.key == *key)
    }

    /// Every `member/NODE`.
    pub(crate) fn members(&self) -> Vec<Registration> {
        self.entries
            .iter()
            .filter_map(|e| match &e.key {
                GroupKey::Member(node) => Some(Registration::of(node, e)),
                _ => None,
            })
            .collect()
    }

    /// The registration of `node`, if it has one.
    pub(crate) fn member(&self, node: &str) -> Option<Registration> {
        let entry = self.entry(&GroupKey::Member(node.to_string()))?;
        Some(Registration::of(node, entry))
    }

    /// The lease of `node`'s registration, if it has one.
    fn member_lease(&self, node: &str) -> Option<i64> {
        Some(self.entry(&GroupKey::Member(node.to_string()))?.lease)
    }

    /// `node`'s report, if it counts: written under the lease of `node`'s
    /// registration. The reports that do not count are [`Snapshot::forged`].
    pub(crate) fn report_of(&self, node: &str) -> Option<keys::Report> {
        let lease = self.member_lease(node)?;
        let report = self.entry(&GroupKey::Report(node.to_string()))?;
        bound_to_member(report.lease, lease)
            .then(|| keys::from_json(&report.value))
            .flatten()
    }

    /// The reports that name a registered member but were not written
    /// under its lease: someone else's word, ignored.
    pub(crate) fn forged(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter_map(|e| match &e.key {
                GroupKey::Report(node) => Some((node, e.lease)),
                _ => None,
            })
            .filter(|(node, lease)| {
                self.member_lease(node)
                    .is_some_and(|member| !bound_to_member(*lease, member))
            })
            .map(|(node, _)| node.clone())
            .collect()
    }

    pub(crate) fn ended(&self) -> Option<keys::Ended> {
        self.entries.iter().find_map(|e| match e.key {
            GroupKey::Ended => keys::from_json(&e.value),
            _ => None,
        })
    }
}

/// Whether a key written under `lease` is the word of the member whose
/// registration is under `member_lease`: only its agent holds that lease.
pub(crate) fn bound_to_member(lease: i64, member_lease: i64) -> bool {
    lease != 0 && lease == member_lease
}
