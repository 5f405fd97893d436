//! What the agent says: its reports under its lease, and its events. When
//! etcd is full (NOSPACE), a last report that cannot be written is said by
//! deleting `held/NODE` (held) or the report itself (did not hold).

use etcd_client::{PutOptions, Txn, TxnOp};

use super::Agent;
use crate::etcd;
use crate::events::{Event, What};
use crate::keys::{self, Report, ReportState};

impl Agent {
    pub(super) async fn report_failed(&mut self, epoch: i64, why: &str) {
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

    pub(super) async fn put_report(&self, report: &Report) {
        let key = keys::report(&self.group, &self.name);
        let put = etcd::put(
            &self.client,
            "report",
            key,
            keys::to_json(report),
            self.lease.id,
        );
        if let Err(e) = put.await {
            eprintln!("freezefs-group agent {}: {}", self.name, e.text);
        }
    }

    /// The `frozen` report, and `held/NODE` again if it was deleted to
    /// speak through a full etcd.
    pub(super) async fn put_frozen(&mut self, report: &Report) {
        if !self.held_key_gone {
            return self.put_report(report).await;
        }
        let lease = Some(PutOptions::new().with_lease(self.lease.id));
        let puts = [
            TxnOp::put(
                keys::report(&self.group, &self.name),
                keys::to_json(report),
                lease.clone(),
            ),
            TxnOp::put(keys::held(&self.group, &self.name), Vec::new(), lease),
        ];
        match etcd::txn(&self.client, "report", Txn::new().and_then(puts)).await {
            Ok(_) => self.held_key_gone = false,
            Err(e) => eprintln!("freezefs-group agent {}: {e}", self.name),
        }
    }

    /// A part's last report (thawed, or ended early). When etcd is full it
    /// takes deletes only: a member whose freeze held until the epoch was
    /// deleted (`held_to_the_end`) deletes `held/NODE` alone; any other
    /// deletes its report too. Whoever ended the epoch, and found etcd
    /// full, reads that.
    pub(super) async fn put_last_word(&mut self, report: &Report, held_to_the_end: bool) {
        let report_key = keys::report(&self.group, &self.name);
        let put = etcd::put(
            &self.client,
            "report",
            report_key.clone(),
            keys::to_json(report),
            self.lease.id,
        );
        let failure = match put.await {
            Ok(_) => return,
            Err(failure) => failure,
        };
        if !failure.full {
            eprintln!("freezefs-group agent {}: {}", self.name, failure.text);
            return;
        }
        let said = if held_to_the_end {
            "it held until the epoch ended"
        } else {
            "it did not hold"
        };
        eprintln!(
            "freezefs-group agent {}: etcd is full: saying by a deletion that {said}",
            self.name
        );
        let mut deletes = vec![TxnOp::delete(keys::held(&self.group, &self.name), None)];
        if !held_to_the_end {
            deletes.push(TxnOp::delete(report_key, None));
        }
        self.held_key_gone = true;
        let txn = Txn::new().and_then(deletes);
        if let Err(e) = etcd::txn(&self.client, "report by deletion", txn).await {
            eprintln!("freezefs-group agent {}: {e}", self.name);
        }
    }

    pub(super) fn event(&self, what: What, epoch: i64, reason: &str) {
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
