//! gRPC connections: `--conns` independent channels (one etcd-client `Client` each), spread over
//! the endpoints round-robin, or all to the leader with `--target-leader`; over TLS when
//! `--cacert` / `--cert` / `--key` are given (etcd's benchmark flags).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use serde::Serialize;

/// What an endpoint says about itself (Maintenance.Status).
#[derive(Debug, Clone, Serialize)]
pub struct EndpointStatus {
    pub endpoint: String,
    pub version: String,
    pub member_id: u64,
    pub leader_id: u64,
    pub raft_term: u64,
    pub raft_index: u64,
    pub db_size_bytes: i64,
}

/// How to reach an endpoint: the dial timeout and, for TLS, the CA and client identity.
#[derive(Debug, Clone)]
pub struct Dial {
    pub timeout: Duration,
    tls: Option<TlsOptions>,
    /// The same files as PEM, for the lean KV client (`grpc`).
    ca_pem: Option<Vec<u8>>,
    identity_pem: Option<(Vec<u8>, Vec<u8>)>,
}

impl Dial {
    /// Plain HTTP/2 (no TLS).
    pub fn plain(timeout: Duration) -> Self {
        Dial {
            timeout,
            tls: None,
            ca_pem: None,
            identity_pem: None,
        }
    }

    /// TLS when any of the files is given, as etcd's `--cacert`, `--cert` and `--key`: the CA
    /// that signed the server's certificate, and a client certificate with its key (both or
    /// neither). Without `--cacert` the server is not verifiable and the dial fails.
    pub fn new(
        timeout: Duration,
        cacert: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Self> {
        if cacert.is_none() && cert.is_none() && key.is_none() {
            return Ok(Dial::plain(timeout));
        }
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let mut tls = TlsOptions::new();
        let ca_pem = cacert.map(read).transpose()?;
        if let Some(ca) = &ca_pem {
            tls = tls.ca_certificate(Certificate::from_pem(ca));
        }
        let identity_pem = match (cert, key) {
            (Some(c), Some(k)) => Some((read(c)?, read(k)?)),
            (None, None) => None,
            _ => bail!("--cert and --key go together"),
        };
        if let Some((c, k)) = &identity_pem {
            tls = tls.identity(Identity::from_pem(c, k));
        }
        Ok(Dial {
            timeout,
            tls: Some(tls),
            ca_pem,
            identity_pem,
        })
    }

    /// The rustls config of the lean KV client; `None` for plain HTTP/2.
    pub fn rustls_config(&self) -> Result<Option<std::sync::Arc<rustls::ClientConfig>>> {
        if self.tls.is_none() {
            return Ok(None);
        }
        let ca = self.ca_pem.as_deref().unwrap_or_default();
        let identity = self
            .identity_pem
            .as_ref()
            .map(|(c, k)| (c.as_slice(), k.as_slice()));
        crate::grpc::rustls_config(ca, identity).map(Some)
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    fn options(&self) -> ConnectOptions {
        let o = ConnectOptions::new()
            .with_connect_timeout(self.timeout)
            .with_keep_alive(Duration::from_secs(30), Duration::from_secs(10));
        match &self.tls {
            Some(tls) => o.with_tls(tls.clone()),
            None => o,
        }
    }
}

/// Normalizes `host:port` to `http://host:port` (`https://` with TLS); URLs stay as given.
pub fn endpoint_url(ep: &str, tls: bool) -> String {
    if ep.contains("://") {
        ep.to_string()
    } else if tls {
        format!("https://{ep}")
    } else {
        format!("http://{ep}")
    }
}

/// Connects to one endpoint and checks it answers within the dial timeout.
pub async fn connect_one(endpoint: &str, dial: &Dial) -> Result<Client> {
    let url = endpoint_url(endpoint, dial.is_tls());
    let fut = async {
        let mut c = Client::connect([url.as_str()], Some(dial.options())).await?;
        c.status().await?;
        Ok::<_, etcd_client::Error>(c)
    };
    match tokio::time::timeout(dial.timeout, fut).await {
        Ok(r) => r.with_context(|| format!("connecting to {endpoint}")),
        Err(_) => bail!(
            "connecting to {endpoint}: no answer within {:?}",
            dial.timeout
        ),
    }
}

/// Status of every endpoint, in order.
pub async fn statuses(endpoints: &[String], dial: &Dial) -> Result<Vec<EndpointStatus>> {
    let mut out = Vec::with_capacity(endpoints.len());
    for ep in endpoints {
        let mut c = connect_one(ep, dial).await?;
        let s = c
            .status()
            .await
            .with_context(|| format!("status of {ep}"))?;
        let h = s.header().context("status without header")?;
        out.push(EndpointStatus {
            endpoint: ep.clone(),
            version: s.version().to_string(),
            member_id: h.member_id(),
            leader_id: s.leader(),
            raft_term: s.raft_term(),
            raft_index: s.raft_index(),
            db_size_bytes: s.db_size(),
        });
    }
    Ok(out)
}

/// The endpoints connections should go to: all of them, or only the leader's.
pub fn dial_targets(statuses: &[EndpointStatus], target_leader: bool) -> Result<Vec<String>> {
    if !target_leader {
        return Ok(statuses.iter().map(|s| s.endpoint.clone()).collect());
    }
    match statuses.iter().find(|s| s.member_id == s.leader_id) {
        Some(s) => Ok(vec![s.endpoint.clone()]),
        None => bail!("--target-leader: no endpoint reports itself as the leader"),
    }
}

/// `conns` clients, connection `i` to `targets[i % targets.len()]`.
pub async fn connect_all(targets: &[String], conns: usize, dial: &Dial) -> Result<Vec<Client>> {
    assert!(!targets.is_empty() && conns > 0);
    let mut out = Vec::with_capacity(conns);
    for i in 0..conns {
        out.push(connect_one(&targets[i % targets.len()], dial).await?);
    }
    Ok(out)
}

/// An etcd-client error as the error table shows it: the gRPC status message when there is one
/// (e.g. `etcdserver: too many requests`), else the error's text.
pub fn error_message(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => format!("{:?}: {}", s.code(), s.message()),
        other => other.to_string(),
    }
}
