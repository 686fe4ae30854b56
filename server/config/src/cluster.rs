//! `--initial-cluster` and the IDs etcd derives from it. A member's ID is the first 8 bytes
//! (big-endian) of SHA-1 over its sorted peer URLs concatenated, then the cluster token; the
//! cluster ID is the first 8 bytes of SHA-1 over the sorted member IDs, 8 big-endian bytes
//! each (etcd's `membership.NewMember` and `RaftCluster.genID`). Also the checks etcd makes
//! when it bootstraps a member from these flags, with etcd's messages.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use sha1::{Digest, Sha1};

use crate::config::{ClusterState, Config};
use crate::error::ConfigError;
use crate::url::{EtcdUrl, go_list, join_urls, parse_url_list};

/// A member or cluster ID; displays as etcd prints it (lower-case hex, no padding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(pub u64);

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// etcd's member ID for a member with these peer URLs in a cluster bootstrapped with
/// `token` (the URLs are sorted first, as etcd sorts them).
pub fn member_id<S: AsRef<str>>(peer_urls: &[S], token: &str) -> Id {
    let mut urls: Vec<&str> = peer_urls.iter().map(AsRef::as_ref).collect();
    urls.sort_unstable();
    let mut hasher = Sha1::new();
    for url in urls {
        hasher.update(url.as_bytes());
    }
    hasher.update(token.as_bytes());
    Id(first_8_bytes(&hasher.finalize()))
}

/// etcd's cluster ID for these member IDs (sorted first).
pub fn cluster_id(member_ids: &[Id]) -> Id {
    let mut ids: Vec<u64> = member_ids.iter().map(|id| id.0).collect();
    ids.sort_unstable();
    let mut hasher = Sha1::new();
    for id in ids {
        hasher.update(id.to_be_bytes());
    }
    Id(first_8_bytes(&hasher.finalize()))
}

fn first_8_bytes(digest: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

/// etcd's `types.NewURLsMap`: `name=url,name=url`; a name may appear several times (one URL
/// each); each name's URLs are sorted.
pub fn parse_initial_cluster(s: &str) -> Result<BTreeMap<String, Vec<EtcdUrl>>, String> {
    let mut raw: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for entry in s.split(',').filter(|e| !e.is_empty()) {
        let (name, url) = entry.split_once('=').unwrap_or((entry, ""));
        raw.entry(name.to_owned()).or_default().push(url);
    }
    raw.into_iter()
        .map(|(name, urls)| Ok((name, parse_url_list(&urls.join(","))?)))
        .collect()
}

/// etcd's `URLsMap.String()`: sorted `name=url` pairs.
fn urls_map_string<'a>(entries: impl IntoIterator<Item = (&'a str, &'a [EtcdUrl])>) -> String {
    let mut pairs: Vec<String> = entries
        .into_iter()
        .flat_map(|(name, urls)| urls.iter().map(move |u| format!("{name}={u}")))
        .collect();
    pairs.sort();
    pairs.join(",")
}

/// One member of the initial cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    pub id: Id,
    pub name: String,
    /// Sorted, as etcd stores them.
    pub peer_urls: Vec<EtcdUrl>,
}

/// The cluster a new member bootstraps, as etcd computes it from the flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    /// Sorted by ID, as `etcdctl member list` shows them.
    pub members: Vec<InitialMember>,
    pub local_member_id: Id,
    pub cluster_id: Id,
    pub token: String,
}

impl Config {
    /// The checks and IDs of etcd's bootstrap from `--initial-cluster`. Call it only when
    /// the data dir holds no member yet: etcd ignores `--initial-cluster` on restart.
    /// With `--initial-cluster-state existing` the member's real ID is the one the running
    /// cluster assigned (`member add`); the IDs here are then only what the flags imply.
    pub fn bootstrap(&self) -> Result<Bootstrap, ConfigError> {
        let fail = |m: String| ConfigError::Bootstrap(m);
        let map = parse_initial_cluster(&self.initial_cluster)
            .map_err(|e| fail(format!("error setting up initial cluster: {e}")))?;
        let Some(local_urls) = map.get(&self.name) else {
            return Err(fail(format!(
                "couldn't find local name {} in the initial cluster configuration",
                crate::url::go_quote(&self.name)
            )));
        };
        if self.initial_cluster_state == ClusterState::New {
            self.check_advertise_matches_cluster(local_urls)
                .map_err(fail)?;
        }
        let all_urls: Vec<String> = map.values().flatten().map(ToString::to_string).collect();
        let unique: BTreeSet<&String> = all_urls.iter().collect();
        if unique.len() != all_urls.len() {
            let shown = urls_map_string(map.iter().map(|(n, u)| (n.as_str(), u.as_slice())));
            return Err(fail(format!("initial cluster {shown} has duplicate url")));
        }
        let token = self.initial_cluster_token.clone();
        let mut members: Vec<InitialMember> = map
            .into_iter()
            .map(|(name, peer_urls)| InitialMember {
                id: member_id(
                    &peer_urls
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>(),
                    &token,
                ),
                name,
                peer_urls,
            })
            .collect();
        members.sort_by_key(|m| m.id);
        let ids: Vec<Id> = members.iter().map(|m| m.id).collect();
        let local_member_id = members
            .iter()
            .find(|m| m.name == self.name)
            .map(|m| m.id)
            .expect("local member checked above");
        Ok(Bootstrap {
            cluster_id: cluster_id(&ids),
            members,
            local_member_id,
            token,
        })
    }

    /// etcd's `advertiseMatchesCluster`, comparing URL strings (etcd also resolves host
    /// names, so `localhost` and `127.0.0.1` can match there and do not here).
    fn check_advertise_matches_cluster(&self, cluster_urls: &[EtcdUrl]) -> Result<(), String> {
        let mut advertised: Vec<String> = self
            .initial_advertise_peer_urls
            .iter()
            .map(ToString::to_string)
            .collect();
        advertised.sort();
        let in_cluster: Vec<String> = cluster_urls.iter().map(ToString::to_string).collect();
        if advertised == in_cluster {
            return Ok(());
        }
        let compare_error = if advertised.len() != in_cluster.len() {
            format!(
                "len({}) != len({})",
                go_list(&advertised),
                go_list(&in_cluster)
            )
        } else {
            let (a, b) = advertised
                .iter()
                .zip(&in_cluster)
                .find(|(a, b)| a != b)
                .expect("equal-length lists differ somewhere");
            format!(
                "resolved urls: {} != {}",
                crate::url::go_quote(a),
                crate::url::go_quote(b)
            )
        };
        let name = &self.name;
        let missing_from_advertised: Vec<String> = in_cluster
            .iter()
            .filter(|u| !advertised.contains(u))
            .map(|u| format!("{name}={u}"))
            .collect();
        if !missing_from_advertised.is_empty() {
            return Err(format!(
                "--initial-cluster has {} but missing from --initial-advertise-peer-urls={} ({compare_error})",
                missing_from_advertised.join(","),
                advertised.join(",")
            ));
        }
        let missing_from_cluster: Vec<&String> = advertised
            .iter()
            .filter(|u| !in_cluster.contains(u))
            .collect();
        let own = urls_map_string([(name.as_str(), self.initial_advertise_peer_urls.as_slice())]);
        if !missing_from_cluster.is_empty() {
            let missing: Vec<&str> = missing_from_cluster.iter().map(|s| s.as_str()).collect();
            return Err(format!(
                "--initial-advertise-peer-urls has {} but missing from --initial-cluster={own}",
                missing.join(",")
            ));
        }
        Err(format!(
            "failed to resolve {} to match --initial-cluster={own} ({compare_error})",
            join_urls(&self.initial_advertise_peer_urls)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_groups_urls_by_name_and_sorts_them() {
        let map = parse_initial_cluster("a=http://h:2,b=http://h:3,a=http://h:1").expect("valid");
        let a: Vec<String> = map["a"].iter().map(ToString::to_string).collect();
        assert_eq!(a, ["http://h:1", "http://h:2"]);
        assert_eq!(map.len(), 2);
    }

    #[test]
    fn initial_cluster_entry_without_url_fails_as_etcd() {
        // etcd 3.4.23 `--initial-cluster foo`: "error setting up initial cluster: URL scheme
        // must be http, https, unix, or unixs: " (measured).
        assert_eq!(
            parse_initial_cluster("foo"),
            Err("URL scheme must be http, https, unix, or unixs: ".to_owned())
        );
    }

    #[test]
    fn ids_display_as_unpadded_hex() {
        assert_eq!(Id(0x0123).to_string(), "123");
        assert_eq!(Id(0x8e9e05c52164694d).to_string(), "8e9e05c52164694d");
    }
}
