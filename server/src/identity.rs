//! Who this member is: its ID, its cluster's ID and the initial members. Computed from the
//! flags on first start (as etcd does) and kept in `<data-dir>/member/identity.json`, so a
//! restart with an existing data dir ignores `--initial-cluster*` as etcd does.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use ketch_config::Config;
use ketch_raft::transport::wire::{ETCD_CLUSTER_HEADER, PATH_MEMBERS_LIST, PeerMember};
use rustls::ClientConfig;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityMember {
    pub id: u64,
    pub name: String,
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub member_id: u64,
    pub cluster_id: u64,
    /// Sorted by ID, as `member list` shows them.
    pub members: Vec<IdentityMember>,
}

pub fn member_dir(config: &Config) -> PathBuf {
    config.data_dir.join("member")
}

fn identity_path(member_dir: &Path) -> PathBuf {
    member_dir.join("identity.json")
}

/// Reads the identity of an existing member, or bootstraps one from the flags and makes it
/// durable before anything else is written. `peer_tls` dials `https://` peers when joining.
pub fn load_or_bootstrap(
    config: &Config,
    peer_tls: Option<&Arc<ClientConfig>>,
) -> anyhow::Result<Identity> {
    let dir = member_dir(config);
    let path = identity_path(&dir);
    if path.exists() {
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        return serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()));
    }
    let boot = config
        .bootstrap()
        .map_err(|e| anyhow::anyhow!("{}", e.stderr_text()))?;
    let client_urls: Vec<String> = config
        .advertise_client_urls
        .iter()
        .map(ToString::to_string)
        .collect();
    if config.initial_cluster_state == ketch_config::ClusterState::Existing {
        let identity = join_existing(config, &boot, &client_urls, peer_tls)?;
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        write_durably(&path, serde_json::to_string_pretty(&identity)?.as_bytes())?;
        return Ok(identity);
    }
    let identity = Identity {
        member_id: boot.local_member_id.0,
        cluster_id: boot.cluster_id.0,
        members: boot
            .members
            .iter()
            .map(|m| IdentityMember {
                id: m.id.0,
                name: m.name.clone(),
                peer_urls: m.peer_urls.iter().map(ToString::to_string).collect(),
                // Other members publish their client URLs when they join; only ours is known.
                client_urls: if m.id == boot.local_member_id {
                    client_urls.clone()
                } else {
                    Vec::new()
                },
            })
            .collect(),
    };
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    write_durably(&path, serde_json::to_string_pretty(&identity)?.as_bytes())?;
    Ok(identity)
}

/// How long one peer may take to answer `GET /members`.
const FETCH_TIMEOUT: Duration = Duration::from_secs(1);

/// `--initial-cluster-state existing`: the member's ID is the one the running cluster gave
/// it at `member add`, found by its peer URLs in a running member's `/members`, as etcd's
/// `GetClusterFromRemotePeers` and `ValidateClusterAndAssignIDs` do.
fn join_existing(
    config: &Config,
    boot: &ketch_config::Bootstrap,
    client_urls: &[String],
    peer_tls: Option<&Arc<ClientConfig>>,
) -> anyhow::Result<Identity> {
    let own: Vec<String> = sorted(
        config
            .initial_advertise_peer_urls
            .iter()
            .map(ToString::to_string),
    );
    let peers = boot
        .members
        .iter()
        .filter(|m| m.name != config.name)
        .flat_map(|m| m.peer_urls.iter().map(ToString::to_string));
    let (cluster_id, remote) = peers
        .filter_map(|url| match fetch_members(&url, peer_tls, FETCH_TIMEOUT) {
            Ok(found) => Some(found),
            Err(e) => {
                // etcd's words, with Go's wording of TLS refusals.
                tracing::warn!(
                    "could not get cluster response from {url}: Get \"{url}{PATH_MEMBERS_LIST}\": \
                     {e:#}"
                );
                None
            }
        })
        .next()
        .context(
            "cannot fetch cluster info from peer urls: could not retrieve cluster information \
             from the given URLs",
        )?;
    let me = remote
        .iter()
        .find(|m| sorted(m.peer_urls.iter().cloned()) == own)
        .with_context(|| {
            format!(
                "error validating peerURLs {}: unmatched member while checking PeerURLs",
                own.join(",")
            )
        })?;
    let member_id = me.id;
    let members = remote
        .iter()
        .map(|m| IdentityMember {
            id: m.id,
            name: if m.id == member_id {
                config.name.clone()
            } else {
                m.name.clone()
            },
            peer_urls: m.peer_urls.clone(),
            client_urls: if m.id == member_id {
                client_urls.to_vec()
            } else {
                m.client_urls.clone()
            },
        })
        .collect();
    Ok(Identity {
        member_id,
        cluster_id,
        members,
    })
}

fn sorted(urls: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = urls.collect();
    v.sort();
    v
}

/// `GET <peer-url>/members` over HTTP/1.1 (inside TLS for an `https://` URL): the cluster ID
/// and the members.
pub fn fetch_members(
    peer_url: &str,
    peer_tls: Option<&Arc<ClientConfig>>,
    timeout: Duration,
) -> anyhow::Result<(u64, Vec<PeerMember>)> {
    let (host_port, https) = match peer_url.strip_prefix("https://") {
        Some(rest) => (rest, true),
        None => (
            peer_url
                .strip_prefix("http://")
                .context("peer URLs are http:// or https://")?,
            false,
        ),
    };
    let host_port = host_port.trim_end_matches('/');
    let addr = host_port
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("{host_port} resolves to nothing"))?;
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "GET {PATH_MEMBERS_LIST} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n"
    );
    let answer = if https {
        let tls = peer_tls.context(
            "https peer URL, but this member has no peer TLS configuration (--peer-cert-file/\
             --peer-key-file, --peer-trusted-ca-file or --peer-auto-tls)",
        )?;
        exchange_tls(tls, host_port, stream, &request)?
    } else {
        exchange(stream, &request)?
    };
    parse_members_answer(&answer)
}

/// Sends `request` and reads the whole answer (the server closes after it).
fn exchange(mut stream: impl Read + Write, request: &str) -> std::io::Result<String> {
    stream.write_all(request.as_bytes())?;
    stream.flush()?;
    let mut answer = Vec::new();
    match stream.read_to_end(&mut answer) {
        Ok(_) => {}
        // A TLS peer may close without close_notify once it has answered.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !answer.is_empty() => {}
        Err(e) => return Err(e),
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// [`exchange`] inside TLS: presents this member's peer certificate and verifies the peer's;
/// a refusal either way reads as Go words it (`remote error: tls: bad certificate`).
fn exchange_tls(
    tls: &Arc<ClientConfig>,
    host_port: &str,
    stream: TcpStream,
    request: &str,
) -> anyhow::Result<String> {
    let host = ketch_raft::transport::tls::host_of(host_port);
    let name = rustls_pki_types::ServerName::try_from(host.to_owned())
        .with_context(|| format!("peer host {host}"))?;
    let conn = rustls::ClientConnection::new(tls.clone(), name)?;
    let tls_stream = rustls::StreamOwned::new(conn, stream);
    exchange(tls_stream, request)
        .map_err(|e| anyhow::anyhow!(ketch_raft::transport::tls::dial_error_text(&e)))
}

fn parse_members_answer(answer: &str) -> anyhow::Result<(u64, Vec<PeerMember>)> {
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .context("malformed /members answer")?;
    anyhow::ensure!(head.starts_with("HTTP/1.1 200"), "/members answered {head}");
    let cluster = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case(ETCD_CLUSTER_HEADER)
                .then(|| value.trim())
        })
        .context("/members without a cluster ID")?;
    let cluster_id = u64::from_str_radix(cluster, 16)?;
    Ok((cluster_id, serde_json::from_str(body)?))
}

/// temp file, fsync, rename, fsync the directory: the file is whole or absent after a crash.
fn write_durably(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    let parent = path.parent().context("identity file has a parent dir")?;
    fs::File::open(parent)?.sync_all()?;
    Ok(())
}
