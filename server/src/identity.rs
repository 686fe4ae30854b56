//! Who this member is: its ID, its cluster's ID and the initial members. Computed from the
//! flags on first start (as etcd does) and kept in `<data-dir>/member/identity.json`, so a
//! restart with an existing data dir ignores `--initial-cluster*` as etcd does.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use ketch_config::Config;
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
