//! gRPC connections: `--conns` independent channels (one etcd-client `Client` each), spread over
//! the endpoints round-robin, or all to the leader with `--target-leader`.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use etcd_client::{Client, ConnectOptions};
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

fn options(dial_timeout: Duration) -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(dial_timeout)
        .with_keep_alive(Duration::from_secs(30), Duration::from_secs(10))
}

/// Normalizes `host:port` to `http://host:port`.
pub fn endpoint_url(ep: &str) -> String {
    if ep.contains("://") {
        ep.to_string()
    } else {
        format!("http://{ep}")
    }
}

/// Connects to one endpoint and checks it answers within `dial_timeout`.
pub async fn connect_one(endpoint: &str, dial_timeout: Duration) -> Result<Client> {
    let url = endpoint_url(endpoint);
    let fut = async {
        let mut c = Client::connect([url.as_str()], Some(options(dial_timeout))).await?;
        c.status().await?;
        Ok::<_, etcd_client::Error>(c)
    };
    match tokio::time::timeout(dial_timeout, fut).await {
        Ok(r) => r.with_context(|| format!("connecting to {endpoint}")),
        Err(_) => bail!("connecting to {endpoint}: no answer within {dial_timeout:?}"),
    }
}

/// Status of every endpoint, in order.
pub async fn statuses(endpoints: &[String], dial_timeout: Duration) -> Result<Vec<EndpointStatus>> {
    let mut out = Vec::with_capacity(endpoints.len());
    for ep in endpoints {
        let mut c = connect_one(ep, dial_timeout).await?;
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
pub async fn connect_all(
    targets: &[String],
    conns: usize,
    dial_timeout: Duration,
) -> Result<Vec<Client>> {
    assert!(!targets.is_empty() && conns > 0);
    let mut out = Vec::with_capacity(conns);
    for i in 0..conns {
        out.push(connect_one(&targets[i % targets.len()], dial_timeout).await?);
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
