//! Reaching etcd: the connection with its TLS and auth options, and each
//! request bounded in time, so that an etcd that stopped answering is an
//! error here rather than a wait.

use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, GetResponse, Identity, LeaseGrantResponse,
    PutOptions, TlsOptions, Txn, TxnResponse,
};

use crate::cli::{EtcdOptions, PASSWORD_ENV};
use crate::error::{Fallible, GroupError};

/// How long one request may take before etcd counts as unreachable.
pub(crate) const REQUEST_LIMIT: Duration = Duration::from_secs(2);

/// A request that failed: in words, and whether etcd refused it because it
/// is full (its NOSPACE alarm: reads and deletes still pass, puts do not).
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) text: String,
    pub(crate) full: bool,
}

/// Connects to the endpoints; `password_env` is `$FREEZEFS_ETCD_PASSWORD`.
pub(crate) async fn connect(
    options: &EtcdOptions,
    password_env: Option<String>,
) -> Fallible<Client> {
    let mut connect = ConnectOptions::new()
        .with_connect_timeout(REQUEST_LIMIT)
        // HTTP/2 pings notice a dead connection while a watch is idle.
        .with_keep_alive(Duration::from_secs(1), REQUEST_LIMIT)
        .with_keep_alive_while_idle(true);
    if let Some(user) = &options.user {
        let password = match (&options.password, &options.password_file) {
            (Some(p), _) => p.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| GroupError::File(format!("--password-file {}: {e}", file.display())))?
                .trim_end_matches(['\n', '\r'])
                .to_string(),
            (None, None) => password_env.ok_or_else(|| {
                GroupError::File(format!(
                    "--user {user}: no password (give --password-file or set {PASSWORD_ENV})"
                ))
            })?,
        };
        connect = connect.with_user(user.clone(), password);
    }
    if options.cacert.is_some() || options.cert.is_some() {
        let mut tls = TlsOptions::new();
        if let Some(ca) = &options.cacert {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca, "--cacert")?));
        }
        if let (Some(cert), Some(key)) = (&options.cert, &options.key) {
            tls = tls.identity(Identity::from_pem(
                read(cert, "--cert")?,
                read(key, "--key")?,
            ));
        }
        connect = connect.with_tls(tls);
    }
    let endpoints = answering(&options.endpoints, &connect).await;
    let connecting = Client::connect(&endpoints, Some(connect));
    match tokio::time::timeout(REQUEST_LIMIT, connecting).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(GroupError::Connect(format!(
            "etcd at {}: {e}",
            options.endpoints.join(",")
        ))),
        Err(_) => Err(GroupError::Connect(format!(
            "etcd at {}: no answer within {} s",
            options.endpoints.join(","),
            REQUEST_LIMIT.as_secs()
        ))),
    }
}

/// Of several endpoints, those that answer now: the client balances its
/// requests over every endpoint it is given, and one that is down (a member
/// that died, the old leader) would fail a share of them. All of them when
/// none answers, so that the error names the real problem.
async fn answering(endpoints: &[String], connect: &ConnectOptions) -> Vec<String> {
    if endpoints.len() < 2 {
        return endpoints.to_vec();
    }
    let probes: Vec<_> = endpoints
        .iter()
        .map(|endpoint| {
            let (endpoint, connect) = (endpoint.clone(), connect.clone());
            tokio::spawn(async move {
                let probe = async {
                    let mut client = Client::connect([&endpoint], Some(connect)).await?;
                    client.status().await
                };
                let answered =
                    matches!(tokio::time::timeout(REQUEST_LIMIT, probe).await, Ok(Ok(_)));
                answered.then_some(endpoint)
            })
        })
        .collect();
    let mut live = Vec::new();
    for probe in probes {
        if let Ok(Some(endpoint)) = probe.await {
            live.push(endpoint);
        }
    }
    if live.is_empty() {
        endpoints.to_vec()
    } else {
        live
    }
}

fn read(path: &std::path::Path, what: &str) -> Fallible<Vec<u8>> {
    std::fs::read(path).map_err(|e| GroupError::File(format!("{what} {}: {e}", path.display())))
}

/// Runs one etcd request, at most [`REQUEST_LIMIT`]. A request that
/// reached no live member (one endpoint of several is down: a member that
/// died, the old leader) is sent again until then.
async fn retried<T, F, Fut>(what: &str, mut request: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, etcd_client::Error>>,
{
    let give_up = tokio::time::Instant::now() + REQUEST_LIMIT;
    // What the last attempt that failed said: when the time runs out on a
    // busy machine while the next attempt is still under way, that is the
    // reason (a refused TLS handshake), not the timeout.
    let mut last_failure: Option<String> = None;
    loop {
        match tokio::time::timeout_at(give_up, request()).await {
            Ok(Ok(answer)) => return Ok(answer),
            Ok(Err(e)) if unavailable(&e) && tokio::time::Instant::now() + RETRY < give_up => {
                last_failure = Some(format!("{e}{}", tls_hint(&e)));
                tokio::time::sleep(RETRY).await;
            }
            Ok(Err(e)) => {
                return Err(Failure {
                    text: format!("{what}: {e}{}", tls_hint(&e)),
                    full: full(&e),
                });
            }
            Err(_) => {
                let text = match last_failure {
                    Some(failure) => format!(
                        "{what}: no answer within {} s; the last attempt failed: {failure}",
                        REQUEST_LIMIT.as_secs()
                    ),
                    None => format!(
                        "{what}: etcd did not answer within {} s",
                        REQUEST_LIMIT.as_secs()
                    ),
                };
                return Err(Failure { text, full: false });
            }
        }
    }
}

const RETRY: Duration = Duration::from_millis(100);

/// What to check when TLS is why a request failed: gRPC's words name the
/// handshake's failure, not the option that would mend it.
fn tls_hint(e: &etcd_client::Error) -> &'static str {
    let text = e.to_string();
    if text.contains("UnknownIssuer") {
        " (etcd's certificate is not signed by the CA of --cacert, or no --cacert was given)"
    } else if [
        // How etcd's refusal of a client without a certificate reaches us
        // depends on when in the handshake the alert arrives.
        "fatal alert: BadCertificate",
        "fatal alert: CertificateRequired",
        "connection closed",
        "broken pipe",
    ]
    .iter()
    .any(|said| text.contains(said))
    {
        " (etcd closed the connection: if it asks for client certificates, give --cert and --key)"
    } else {
        ""
    }
}

/// etcd's NOSPACE alarm is raised: it takes no more puts.
fn full(e: &etcd_client::Error) -> bool {
    matches!(e, etcd_client::Error::GRpcStatus(status)
        if status.code() == tonic::Code::ResourceExhausted)
}

fn unavailable(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(status) => status.code() == tonic::Code::Unavailable,
        etcd_client::Error::TransportError(_) => true,
        _ => false,
    }
}

pub(crate) async fn txn(client: &Client, what: &str, txn: Txn) -> Fallible<TxnResponse> {
    Ok(txn_unless_full(client, what, txn).await?)
}

/// A transaction, its failure telling whether etcd is full.
pub(crate) async fn txn_unless_full(
    client: &Client,
    what: &str,
    txn: Txn,
) -> Result<TxnResponse, Failure> {
    retried(what, || {
        let (mut client, txn) = (client.clone(), txn.clone());
        async move { client.txn(txn).await }
    })
    .await
}

pub(crate) async fn get_prefix(
    client: &Client,
    what: &str,
    prefix: String,
) -> Fallible<GetResponse> {
    retried(what, || {
        let (mut client, prefix) = (client.clone(), prefix.clone());
        async move {
            client
                .get(prefix, Some(GetOptions::new().with_prefix()))
                .await
        }
    })
    .await
    .map_err(GroupError::from)
}

/// A put under `lease`, its failure telling whether etcd is full.
pub(crate) async fn put(
    client: &Client,
    what: &str,
    key: String,
    value: Vec<u8>,
    lease: i64,
) -> Result<(), Failure> {
    retried(what, || {
        let (mut client, key, value) = (client.clone(), key.clone(), value.clone());
        async move {
            client
                .put(key, value, Some(PutOptions::new().with_lease(lease)))
                .await
        }
    })
    .await
    .map(drop)
}

pub(crate) async fn lease_grant(client: &Client, ttl_s: u32) -> Fallible<LeaseGrantResponse> {
    retried("lease grant", || {
        let mut client = client.clone();
        async move { client.lease_grant(i64::from(ttl_s), None).await }
    })
    .await
    .map_err(GroupError::from)
}

pub(crate) async fn lease_revoke(client: &Client, id: i64) -> Fallible<()> {
    retried("lease revoke", || {
        let mut client = client.clone();
        async move { client.lease_revoke(id).await }
    })
    .await
    .map(drop)
    .map_err(GroupError::from)
}

/// The TTL etcd granted `id`, in seconds; `None` when the lease is gone.
pub(crate) async fn lease_granted_ttl(client: &Client, id: i64) -> Fallible<Option<i64>> {
    let answer = retried("lease time-to-live", || {
        let mut client = client.clone();
        async move { client.lease_time_to_live(id, None).await }
    })
    .await?;
    Ok((answer.ttl() > 0).then_some(answer.granted_ttl()))
}
