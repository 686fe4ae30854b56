//! The replicated state the server's raft drives: ketch's MVCC store plus what etcd's lessor
//! persists beside it — each lease's granted TTL and its last checkpointed remaining TTL — so
//! both are in every snapshot and replayed from the log on restart. Pure: no clock, no I/O.
//!
//! The store also holds the auth store (`ketch_auth`): auth entries are applied to it, and
//! KV writes are permission-checked against it first (`auth_apply`), in log order on every
//! member. The active alarms (`crate::alarm`) are part of it too.
//!
//! Snapshot format (all integers little-endian): magic `KETCHST\0`, u32 version (2), u64
//! length of the MVCC snapshot, the MVCC snapshot bytes, u64 lease count, then per lease i64
//! id, i64 granted TTL, i64 remaining TTL (0 = none); u64 alarm count, then per alarm u64
//! member ID and i32 alarm type; then u64 length of the auth section and the auth section
//! (`ketch_auth::snapshot`, with its own magic, version and CRC), then a CRC-32C of
//! everything before it. Version 1 (no alarms, no auth section: auth off, no users) and a
//! bare MVCC snapshot (no leases' TTLs either) are read too. docs/auth.md has the layout.
//!
//! A snapshot is taken in two steps: `freeze` (O(1) for the MVCC store, a copy of the small
//! lease, alarm and auth tables) on the apply path, then the serialisation on another thread.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::ops::Deref;
use std::sync::OnceLock;
use std::time::Instant;

use ketch_auth::{ApplyContext, AuthConfig, AuthError, AuthStore};
use ketch_mvcc::{FrozenStore, MvccError, Store};
use ketch_proto::ketchpb::{RaftRequest, RaftResponse, raft_request, raft_response};
use ketch_proto::mvccpb::Event;
use ketch_proto::{LeaseCheckpointRequest, LeaseCheckpointResponse, ResponseHeader};
use ketch_raft::StateStore;

use super::auth_apply;
use crate::alarm::Alarms;

const STATE_MAGIC: &[u8; 8] = b"KETCHST\0";
/// 2 added the alarm and auth sections; 1 is still read (no alarms, auth off, no users).
const STATE_FORMAT_VERSION: u32 = 2;
const STATE_FORMAT_VERSION_1: u32 = 1;

/// The member's auth settings (`--auth-token-ttl`). The raft crate builds stores with
/// `Default` (also when it installs a snapshot), so the settings are process-wide, set once
/// at startup before raft starts.
static AUTH_CONFIG: OnceLock<AuthConfig> = OnceLock::new();

/// Sets the auth settings every store of this process gets; the first call wins.
pub fn set_auth_config(config: AuthConfig) {
    let _ = AUTH_CONFIG.set(config);
}

fn new_auth_store() -> AuthStore {
    AuthStore::new(AUTH_CONFIG.get().cloned().unwrap_or_default())
}

/// Why applying an entry failed: the MVCC store's refusal or the auth store's (a permission
/// check or an auth request's own rules). Every member fails the same entry alike.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    #[error(transparent)]
    Auth(#[from] AuthError),
}

/// What the store keeps of a lease beyond its existence and keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseTtl {
    /// The TTL the lease was granted with (already raised to the minimum), seconds.
    pub granted_ttl: i64,
    /// The remaining TTL at the last checkpoint, seconds; 0 when none is recorded.
    pub remaining_ttl: i64,
}

/// The replicated state frozen for a snapshot (see `StateStore::freeze`).
pub struct FrozenState {
    mvcc: FrozenStore,
    ttls: BTreeMap<i64, LeaseTtl>,
    alarms: Alarms,
    /// The auth section, serialised at the freeze (users and roles are few).
    auth: Vec<u8>,
}

impl ketch_raft::FrozenState for FrozenState {
    fn into_snapshot_bytes(self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(STATE_MAGIC);
        out.extend_from_slice(&STATE_FORMAT_VERSION.to_le_bytes());
        let len_at = out.len();
        out.extend_from_slice(&0u64.to_le_bytes()); // the MVCC part's length, set below
        self.mvcc.append_snapshot(&mut out);
        let mvcc_len = (out.len() - len_at - 8) as u64;
        out[len_at..len_at + 8].copy_from_slice(&mvcc_len.to_le_bytes());
        out.extend_from_slice(&(self.ttls.len() as u64).to_le_bytes());
        for (id, t) in &self.ttls {
            for n in [*id, t.granted_ttl, t.remaining_ttl] {
                out.extend_from_slice(&n.to_le_bytes());
            }
        }
        let alarms: Vec<(u64, i32)> = self.alarms.iter().collect();
        out.extend_from_slice(&(alarms.len() as u64).to_le_bytes());
        for (member_id, alarm) in alarms {
            out.extend_from_slice(&member_id.to_le_bytes());
            out.extend_from_slice(&alarm.to_le_bytes());
        }
        out.extend_from_slice(&(self.auth.len() as u64).to_le_bytes());
        out.extend_from_slice(&self.auth);
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

#[derive(Debug, Clone)]
pub struct ReplicatedStore {
    mvcc: Store,
    ttls: BTreeMap<i64, LeaseTtl>,
    /// Bumped on every grant or revoke applied, so the lessor knows when to re-read the table.
    lease_generation: u64,
    alarms: Alarms,
    auth: AuthStore,
    /// The raft index of the last entry applied here (0 after a snapshot install until the
    /// next entry): a token names the index it was created at, and a member resolves it
    /// only once it applied that far.
    applied_index: u64,
}

impl Default for ReplicatedStore {
    fn default() -> Self {
        ReplicatedStore {
            mvcc: Store::default(),
            ttls: BTreeMap::new(),
            lease_generation: 0,
            alarms: Alarms::default(),
            auth: new_auth_store(),
            applied_index: 0,
        }
    }
}

/// Reads see the MVCC store directly (`store.range(..)`, `store.revision()`).
impl Deref for ReplicatedStore {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.mvcc
    }
}

impl ReplicatedStore {
    pub fn lease_ttl(&self, id: i64) -> Option<LeaseTtl> {
        self.ttls.get(&id).copied()
    }

    /// Every lease with its TTLs, ascending by ID.
    pub fn lease_ttls(&self) -> impl Iterator<Item = (i64, LeaseTtl)> + '_ {
        self.ttls.iter().map(|(id, t)| (*id, *t))
    }

    pub fn lease_generation(&self) -> u64 {
        self.lease_generation
    }

    pub fn alarms(&self) -> &Alarms {
        &self.alarms
    }

    /// The auth store, for checks and token lookups on the request path.
    pub fn auth(&self) -> &AuthStore {
        &self.auth
    }

    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Applies one committed entry at raft index `index`.
    pub fn apply_entry(
        &mut self,
        index: u64,
        req: &RaftRequest,
        events: &mut Vec<Event>,
    ) -> Result<RaftResponse, StoreError> {
        if index != 0 {
            self.applied_index = index;
        }
        let who = auth_apply::who_of(req.header.as_ref());
        if let Some(auth_req) = auth_apply::auth_request_of(req) {
            let ctx = ApplyContext {
                index,
                now: Instant::now(),
            };
            let resp = self.auth.apply(&auth_req?, &who, &ctx)?;
            let response = auth_apply::auth_response(resp, self.mvcc.revision());
            return Ok(RaftResponse {
                response: Some(response),
            });
        }
        auth_apply::check_entry(&self.auth, &self.mvcc, &who, req)?;
        self.apply_kv(req, events)
    }

    fn apply_checkpoint(&mut self, req: &LeaseCheckpointRequest) -> LeaseCheckpointResponse {
        for cp in &req.checkpoints {
            if let Some(t) = self.ttls.get_mut(&cp.id) {
                t.remaining_ttl = cp.remaining_ttl;
            }
        }
        LeaseCheckpointResponse {
            header: Some(ResponseHeader {
                revision: self.mvcc.revision(),
                ..Default::default()
            }),
        }
    }
}

impl ReplicatedStore {
    /// The MVCC and lease side of an entry, once its permission checks passed.
    fn apply_kv(
        &mut self,
        req: &RaftRequest,
        events: &mut Vec<Event>,
    ) -> Result<RaftResponse, StoreError> {
        use raft_request::Request as Q;
        if self.alarms.refuses(req) {
            return Err(MvccError::NoSpace.into());
        }
        match req.request.as_ref() {
            Some(Q::Alarm(r)) => Ok(RaftResponse {
                response: Some(raft_response::Response::Alarm(self.alarms.apply(r))),
            }),
            Some(Q::LeaseCheckpoint(r)) => Ok(RaftResponse {
                response: Some(raft_response::Response::LeaseCheckpoint(
                    self.apply_checkpoint(r),
                )),
            }),
            Some(Q::LeaseGrant(r)) => {
                let resp = self.mvcc.apply(req, events)?;
                let ttl = LeaseTtl {
                    granted_ttl: r.ttl,
                    remaining_ttl: 0,
                };
                self.ttls.insert(r.id, ttl);
                self.lease_generation += 1;
                Ok(resp)
            }
            Some(Q::LeaseRevoke(r)) => {
                let resp = self.mvcc.apply(req, events)?;
                self.ttls.remove(&r.id);
                self.lease_generation += 1;
                Ok(resp)
            }
            _ => Ok(self.mvcc.apply(req, events)?),
        }
    }
}

impl StateStore for ReplicatedStore {
    type Event = Event;
    type Error = StoreError;

    /// An entry at an unknown index (tests): tokens it creates are named `<prefix>.0`.
    fn apply(
        &mut self,
        req: &RaftRequest,
        events: &mut Vec<Event>,
    ) -> Result<RaftResponse, StoreError> {
        self.apply_entry(0, req, events)
    }

    fn apply_at(
        &mut self,
        index: u64,
        req: &RaftRequest,
        events: &mut Vec<Event>,
    ) -> Result<RaftResponse, StoreError> {
        self.apply_entry(index, req, events)
    }

    type Frozen = FrozenState;

    fn freeze(&self) -> FrozenState {
        FrozenState {
            mvcc: self.mvcc.freeze(),
            ttls: self.ttls.clone(),
            alarms: self.alarms.clone(),
            auth: ketch_auth::snapshot::write(self.auth.state()),
        }
    }

    fn read_snapshot(&mut self, r: &mut dyn Read) -> io::Result<()> {
        let mut buf = Vec::new();
        r.read_to_end(&mut buf)?;
        let mut decoded = decode_snapshot(&buf)?;
        // This member's tokens survive the new state unless it has auth off (etcd's Recover).
        let state = decoded.auth.state().clone();
        decoded.auth = std::mem::replace(&mut self.auth, new_auth_store());
        decoded.auth.restore(state);
        *self = decoded;
        Ok(())
    }

    fn revision(&self) -> i64 {
        self.mvcc.revision()
    }
}

fn bad(msg: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("state snapshot: {msg}"))
}

fn decode_snapshot(buf: &[u8]) -> io::Result<ReplicatedStore> {
    if buf.starts_with(ketch_mvcc::SNAPSHOT_MAGIC) {
        return from_bare_mvcc(buf);
    }
    if buf.len() < STATE_MAGIC.len() + 4 + 8 + 4 || !buf.starts_with(STATE_MAGIC) {
        return Err(bad("bad magic or truncated"));
    }
    let (body, trailer) = buf.split_at(buf.len() - 4);
    let want = u32::from_le_bytes(trailer.try_into().expect("4 bytes"));
    if crc32c::crc32c(body) != want {
        return Err(bad("checksum mismatch"));
    }
    let mut p = Cursor { buf: body, pos: 8 };
    let version = u32::from_le_bytes(p.take(4)?.try_into().expect("4 bytes"));
    if version != STATE_FORMAT_VERSION && version != STATE_FORMAT_VERSION_1 {
        return Err(bad(&format!("unknown format version {version}")));
    }
    let mvcc_len = usize::try_from(p.i64()?).map_err(|_| bad("mvcc length"))?;
    let mvcc = Store::read_snapshot(&mut p.take(mvcc_len)?).map_err(io::Error::other)?;
    let mut state = ReplicatedStore {
        mvcc,
        ..Default::default()
    };
    for _ in 0..p.i64()? {
        let (id, granted_ttl, remaining_ttl) = (p.i64()?, p.i64()?, p.i64()?);
        let ttl = LeaseTtl {
            granted_ttl,
            remaining_ttl,
        };
        state.ttls.insert(id, ttl);
    }
    if version == STATE_FORMAT_VERSION {
        for _ in 0..p.i64()? {
            let member_id = p.i64()? as u64;
            let alarm = i32::from_le_bytes(p.take(4)?.try_into().expect("4 bytes"));
            state.alarms.insert(member_id, alarm);
        }
        let auth_len = usize::try_from(p.i64()?).map_err(|_| bad("auth length"))?;
        let auth = ketch_auth::snapshot::read(p.take(auth_len)?).map_err(io::Error::other)?;
        state.auth.restore(auth);
    }
    if p.pos != body.len() {
        return Err(bad("trailing bytes"));
    }
    Ok(state)
}

/// A snapshot written before leases' TTLs were kept: leases get etcd's minimum TTL until the
/// first keep-alive.
fn from_bare_mvcc(mut buf: &[u8]) -> io::Result<ReplicatedStore> {
    let mvcc = Store::read_snapshot(&mut buf).map_err(io::Error::other)?;
    let ttls = mvcc
        .lease_ids()
        .into_iter()
        .map(|id| {
            let ttl = LeaseTtl {
                granted_ttl: crate::lease::DEFAULT_MIN_TTL_SECS,
                remaining_ttl: 0,
            };
            (id, ttl)
        })
        .collect();
    Ok(ReplicatedStore {
        mvcc,
        ttls,
        ..Default::default()
    })
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> io::Result<&'a [u8]> {
        let end = self.pos.checked_add(n).ok_or_else(|| bad("length"))?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| bad("truncated"))?;
        self.pos = end;
        Ok(s)
    }

    fn i64(&mut self) -> io::Result<i64> {
        Ok(i64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ketch_proto::{LeaseCheckpoint, LeaseGrantRequest, LeaseRevokeRequest, PutRequest};

    fn req(r: raft_request::Request) -> RaftRequest {
        RaftRequest {
            request: Some(r),
            header: None,
            ..RaftRequest::default()
        }
    }

    fn grant(id: i64, ttl: i64) -> RaftRequest {
        req(raft_request::Request::LeaseGrant(LeaseGrantRequest {
            id,
            ttl,
        }))
    }

    #[test]
    fn grant_checkpoint_revoke_keep_ttls_in_step_with_the_lease_table() {
        let mut s = ReplicatedStore::default();
        let mut ev = Vec::new();
        s.apply(&grant(7, 30), &mut ev).unwrap();
        assert!(s.apply(&grant(7, 30), &mut ev).is_err(), "duplicate grant");
        let cp = LeaseCheckpointRequest {
            checkpoints: vec![LeaseCheckpoint {
                id: 7,
                remaining_ttl: 12,
            }],
        };
        s.apply(&req(raft_request::Request::LeaseCheckpoint(cp)), &mut ev)
            .unwrap();
        assert_eq!(
            s.lease_ttl(7),
            Some(LeaseTtl {
                granted_ttl: 30,
                remaining_ttl: 12
            })
        );
        let put = PutRequest {
            key: "k".into(),
            value: "v".into(),
            lease: 7,
            ..Default::default()
        };
        s.apply(&req(raft_request::Request::Put(put)), &mut ev)
            .unwrap();
        let revoke = req(raft_request::Request::LeaseRevoke(LeaseRevokeRequest {
            id: 7,
        }));
        s.apply(&revoke, &mut ev).unwrap();
        assert_eq!(s.lease_ttl(7), None);
        assert!(!s.lease_exists(7));
        assert_eq!(s.revision(), 3, "put then revoke deleting the key");
    }

    #[test]
    fn snapshot_round_trips_ttls_and_rejects_corruption() {
        let mut s = ReplicatedStore::default();
        let mut ev = Vec::new();
        s.apply(&grant(1, 5), &mut ev).unwrap();
        s.apply(&grant(2, 600), &mut ev).unwrap();
        let nospace = req(raft_request::Request::Alarm(ketch_proto::AlarmRequest {
            action: ketch_proto::alarm_request::AlarmAction::Activate as i32,
            member_id: 9,
            alarm: ketch_proto::AlarmType::Nospace as i32,
        }));
        s.apply(&nospace, &mut ev).unwrap();
        assert_eq!(
            s.apply(&grant(3, 5), &mut ev).unwrap_err(),
            StoreError::Mvcc(MvccError::NoSpace),
            "NOSPACE refuses lease grants at apply"
        );
        let mut buf = Vec::new();
        s.write_snapshot(&mut buf).unwrap();
        let mut back = ReplicatedStore::default();
        back.read_snapshot(&mut buf.as_slice()).unwrap();
        assert_eq!(back.alarms(), s.alarms(), "alarms survive a snapshot");
        assert_eq!(
            back.lease_ttls().collect::<Vec<_>>(),
            s.lease_ttls().collect::<Vec<_>>()
        );
        assert_eq!(back.lease_ids(), vec![1, 2]);
        let mid = buf.len() / 2;
        buf[mid] ^= 1;
        assert!(back.read_snapshot(&mut buf.as_slice()).is_err());
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    /// A state snapshot in an older layout: `version`, the MVCC part, no leases, nothing
    /// more, and its CRC.
    fn snapshot_of_version(version: u32) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(STATE_MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        let mut mvcc = Vec::new();
        Store::default().append_snapshot(&mut mvcc);
        out.extend_from_slice(&(mvcc.len() as u64).to_le_bytes());
        out.extend_from_slice(&mvcc);
        out.extend_from_slice(&0u64.to_le_bytes());
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn version_1_snapshots_read_with_auth_off_and_unknown_versions_are_refused() {
        let mut s = ReplicatedStore::default();
        s.read_snapshot(&mut snapshot_of_version(1).as_slice())
            .unwrap();
        assert!(!s.auth().enabled());
        assert_eq!(s.auth().revision(), 1, "a fresh auth store");
        let err = s
            .read_snapshot(&mut snapshot_of_version(3).as_slice())
            .unwrap_err();
        assert!(
            err.to_string().contains("unknown format version 3"),
            "{err}"
        );
        // A version-2 snapshot whose auth section is missing is refused, not misread.
        let err = s
            .read_snapshot(&mut snapshot_of_version(2).as_slice())
            .unwrap_err();
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}
