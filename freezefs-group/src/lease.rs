//! A lease kept alive, as `etcdctl lease keep-alive` keeps one: the only
//! word on liveness. The keeper renews it every third of its TTL and
//! publishes until when etcd is known to keep it; when a renewal is refused
//! or that moment passes unrenewed, the lease is lost, for good.

use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::Fallible;
use crate::etcd::{self, REQUEST_LIMIT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseState {
    /// etcd keeps the lease at least until then.
    Alive { until: Instant },
    /// Expired or revoked: whatever hung on it is gone.
    Lost,
}

pub(crate) struct Lease {
    pub(crate) id: i64,
    state: watch::Receiver<LeaseState>,
}

impl Lease {
    /// Grants a lease of `ttl_s` seconds; with `keep`, keeps it alive until
    /// it is lost or revoked.
    pub(crate) async fn grant(client: &Client, ttl_s: u32, keep: bool) -> Fallible<Lease> {
        let asked = Instant::now();
        let granted = etcd::lease_grant(client, ttl_s).await?;
        let until = asked + Duration::from_secs(granted.ttl().max(0) as u64);
        let (tx, state) = watch::channel(LeaseState::Alive { until });
        if keep {
            tokio::spawn(keep_alive(client.clone(), granted.id(), ttl_s, until, tx));
        }
        Ok(Lease {
            id: granted.id(),
            state,
        })
    }

    /// Until when etcd keeps the lease, if it is not lost.
    pub(crate) fn alive_until(&self) -> Option<Instant> {
        match *self.state.borrow() {
            LeaseState::Alive { until } if until > Instant::now() => Some(until),
            _ => None,
        }
    }

    /// Returns once the lease is lost.
    pub(crate) async fn lost(&mut self) {
        let _ = self.state.wait_for(|s| *s == LeaseState::Lost).await;
    }

    /// Gives the lease up: the keys under it go at once.
    pub(crate) async fn revoke(&self, client: &Client) -> Fallible<()> {
        etcd::lease_revoke(client, self.id).await
    }
}

async fn keep_alive(
    mut client: Client,
    id: i64,
    ttl_s: u32,
    mut until: Instant,
    tx: watch::Sender<LeaseState>,
) {
    let period = Duration::from_millis(u64::from(ttl_s) * 1000 / 3);
    let mut stream: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
    loop {
        let sent = Instant::now();
        if sent >= until {
            break;
        }
        let limit = REQUEST_LIMIT.min(until - sent);
        match tokio::time::timeout(limit, renew(&mut client, id, ttl_s, &mut stream)).await {
            Ok(Ok(left)) if left > 0 => {
                until = sent + Duration::from_secs(left as u64);
                if tx.send(LeaseState::Alive { until }).is_err() {
                    return;
                }
                tokio::time::sleep(period).await;
            }
            // etcd says the lease is gone: expired or revoked.
            Ok(Ok(_)) => break,
            Ok(Err(etcd_client::Error::LeaseKeepAliveError(_))) if stream.is_none() => break,
            // A broken stream or an unreachable etcd: try again, on a new
            // stream, until the lease would have expired anyway.
            _ => {
                stream = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let _ = tx.send(LeaseState::Lost);
}

/// One renewal: the lease's TTL left, in seconds (0 or less: gone).
async fn renew(
    client: &mut Client,
    id: i64,
    ttl_s: u32,
    stream: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
) -> Result<i64, etcd_client::Error> {
    let Some((keeper, answers)) = stream else {
        // Opening the stream renews once and reads the answer itself: it
        // fails when the lease is gone, and otherwise leaves the full TTL.
        *stream = Some(client.lease_keep_alive(id).await?);
        return Ok(i64::from(ttl_s));
    };
    keeper.keep_alive().await?;
    match answers.message().await? {
        Some(answer) => Ok(answer.ttl()),
        None => Err(etcd_client::Error::LeaseKeepAliveError(
            "stream closed".into(),
        )),
    }
}
