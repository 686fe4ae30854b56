//! Who this member is: its ID, its cluster's ID and the initial members. Computed from the
//! flags on first start (as etcd does) and kept in `<data-dir>/member/identity.json`, so a
//! restart with an existing data dir ignores `--initial-cluster*` as etcd does.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use ketch_config::Config;
use ketch_raft::transport::wire::{ETCD_CLUSTER_HEADER, PATH_MEMBERS_LIST, PeerMember};
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
/// durable before anything else is written.
pub fn load_or_bootstrap(config: &Config) -> anyhow::Result<Identity> {
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
        let identity = join_existing(config, &boot, &client_urls)?;
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
        .filter_map(|url| fetch_members(&url).ok())
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

/// `GET <peer-url>/members` over HTTP/1.1: the cluster ID and the members.
fn fetch_members(peer_url: &str) -> anyhow::Result<(u64, Vec<PeerMember>)> {
    let host_port = peer_url
        .strip_prefix("http://")
        .context("only http:// peer URLs are supported")?
        .trim_end_matches('/');
    let addr = host_port
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("{host_port} resolves to nothing"))?;
    let mut stream = TcpStream::connect_timeout(&addr, FETCH_TIMEOUT)?;
    stream.set_read_timeout(Some(FETCH_TIMEOUT))?;
    write!(
        stream,
        "GET {PATH_MEMBERS_LIST} HTTP/1.1\r\nHost: {host_port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
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
