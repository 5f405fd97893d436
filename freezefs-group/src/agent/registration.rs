//! The agent's registration: `member/NODE` (and `held/NODE` beside it)
//! under its lease, taken at start and taken again when someone deletes or
//! rewrites it while the agent lives.

use std::time::Duration;

use etcd_client::{Compare, CompareOp, PutOptions, Txn, TxnOp};
use tokio::time::Instant;

use super::Agent;
use crate::error::{Fallible, GroupError};
use crate::etcd;
use crate::group_watch::Snapshot;
use crate::keys::{self, GroupKey, Member};
use crate::local;

impl Agent {
    /// Puts `member/NAME` under the lease, unless another agent holds it:
    /// then waits for that one's lease to end, at most a TTL and a second.
    /// The group as read just after, and the registration's revision.
    pub(super) async fn register(&mut self) -> Fallible<(Snapshot, i64)> {
        let key = keys::member(&self.group, &self.name);
        let give_up = Instant::now() + Duration::from_secs(u64::from(self.ttl_s) + 1);
        loop {
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then(self.registration());
            let answer = etcd::txn(&self.client, "register", txn).await?;
            if answer.succeeded() {
                let registered = answer.header().map_or(0, |h| h.revision());
                let seen = Snapshot::read(&self.client, &self.group).await?;
                return Ok((seen, registered));
            }
            if Instant::now() >= give_up {
                return Err(GroupError::Refused(format!(
                    "another agent is registered as {} in group {}",
                    self.name, self.group
                )));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `member/NAME`, and `held/NAME` beside it (what the agent deletes to
    /// say that its freeze held, should etcd be full when it ends), both
    /// under the lease.
    fn registration(&self) -> [TxnOp; 2] {
        let member = Member {
            host: local::hostname(),
            pid: std::process::id(),
            mounts: self.mount_names.clone(),
            clock_unix_ms: local::unix_ms(),
        };
        let lease = Some(PutOptions::new().with_lease(self.lease.id));
        [
            TxnOp::put(
                keys::member(&self.group, &self.name),
                keys::to_json(&member),
                lease.clone(),
            ),
            TxnOp::put(keys::held(&self.group, &self.name), Vec::new(), lease),
        ]
    }

    /// `member/NAME` was deleted, or rewritten under another lease or none,
    /// while this agent's lease lives: registers again at once, over a key
    /// under no lease (no agent's), unless the key now lives under another
    /// lease, another agent's (then this one stops, and its service manager
    /// may start it again).
    pub(super) async fn register_again(&mut self, what_happened: &str) -> Fallible<()> {
        let key = keys::member(&self.group, &self.name);
        for _ in 0..3 {
            let seen = Snapshot::read(&self.client, &self.group).await?;
            let now = seen.entry(&GroupKey::Member(self.name.clone()));
            let unchanged = match now {
                None => Compare::create_revision(key.clone(), CompareOp::Equal, 0),
                Some(e) if e.lease == 0 || e.lease == self.lease.id => {
                    Compare::mod_revision(key.clone(), CompareOp::Equal, e.mod_revision)
                }
                Some(e) => {
                    return Err(GroupError::Refused(format!(
                        "its registration {key} {what_happened}, and now lives under lease {:x}, another agent's: this one stops",
                        e.lease
                    )));
                }
            };
            let txn = Txn::new().when([unchanged]).and_then(self.registration());
            if etcd::txn(&self.client, "register again", txn)
                .await?
                .succeeded()
            {
                eprintln!(
                    "freezefs-group agent {}: its registration {key} {what_happened}; registered again",
                    self.name
                );
                return Ok(());
            }
        }
        Err(GroupError::Refused(format!(
            "its registration {key} {what_happened}, and it keeps changing: this one stops"
        )))
    }
}
