//! The group's keys as they change: one etcd watch on the group's prefix,
//! opened again from the next revision whenever its stream breaks (an etcd
//! member restarting, a leader change), so that no change is missed.
//!
//! The watch runs in a task of its own and hands its changes over a
//! channel: callers wait for them in `select!` beside a 250 ms timer, and
//! a watch being created when the timer fires must not be dropped and
//! begun again (through a slow link it then never finishes being created).

use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions, WatchStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::etcd::{self, Fallible};
use crate::keys::{self, GroupKey};

/// One key's change.
#[derive(Debug, Clone)]
pub(crate) struct Change {
    pub(crate) key: GroupKey,
    /// A put (else a deletion).
    pub(crate) put: bool,
    pub(crate) value: Vec<u8>,
    pub(crate) create_revision: i64,
}

/// The group's changes, from the watching task.
pub(crate) struct GroupWatch {
    changes: mpsc::UnboundedReceiver<Vec<Change>>,
    task: JoinHandle<()>,
}

impl GroupWatch {
    /// Watches `group` from the revision after `seen`.
    pub(crate) fn after(client: &Client, group: &str, seen: i64) -> GroupWatch {
        let mut watching = Watching {
            client: client.clone(),
            group: group.to_string(),
            next_revision: seen + 1,
            stream: None,
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
                    // Compacted past what we saw: start from the present.
                    self.next_revision = answer.compact_revision().max(self.next_revision);
                    self.stream = None;
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
                            Some(Change {
                                key: keys::classify(&self.group, kv.key()),
                                put: e.event_type() == EventType::Put,
                                value: kv.value().to_vec(),
                                create_revision: kv.create_revision(),
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
}

/// The group's keys now, and the revision they were read at.
pub(crate) struct Snapshot {
    pub(crate) revision: i64,
    pub(crate) keys: Vec<(GroupKey, Vec<u8>, i64)>,
}

impl Snapshot {
    pub(crate) async fn read(client: &Client, group: &str) -> Fallible<Snapshot> {
        let answer = etcd::get_prefix(client, "read the group", keys::prefix(group)).await?;
        Ok(Snapshot {
            revision: answer.header().map_or(0, |h| h.revision()),
            keys: answer
                .kvs()
                .iter()
                .map(|kv| {
                    (
                        keys::classify(group, kv.key()),
                        kv.value().to_vec(),
                        kv.create_revision(),
                    )
                })
                .collect(),
        })
    }

    /// The epoch on record: its number and document.
    pub(crate) fn epoch(&self) -> Option<(i64, keys::Epoch)> {
        self.keys.iter().find_map(|(k, v, rev)| match k {
            GroupKey::Epoch => Some((*rev, keys::from_json(v)?)),
            _ => None,
        })
    }

    /// Every `member/NODE`: the node, and its document if it parses.
    pub(crate) fn members(&self) -> Vec<(String, Option<keys::Member>)> {
        self.per_node(|key| match key {
            GroupKey::Member(node) => Some(node),
            _ => None,
        })
    }

    /// Every `report/NODE`: the node, and its report if it parses.
    pub(crate) fn reports(&self) -> Vec<(String, Option<keys::Report>)> {
        self.per_node(|key| match key {
            GroupKey::Report(node) => Some(node),
            _ => None,
        })
    }

    fn per_node<'a, T: serde::de::DeserializeOwned>(
        &'a self,
        node_of: impl Fn(&'a GroupKey) -> Option<&'a String>,
    ) -> Vec<(String, Option<T>)> {
        self.keys
            .iter()
            .filter_map(|(k, v, _)| Some((node_of(k)?.clone(), keys::from_json(v))))
            .collect()
    }

    pub(crate) fn ended(&self) -> Option<keys::Ended> {
        self.keys.iter().find_map(|(k, v, _)| match k {
            GroupKey::Ended => keys::from_json(v),
            _ => None,
        })
    }
}
