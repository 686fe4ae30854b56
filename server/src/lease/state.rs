//! The replicated state the server's raft drives: ketch's MVCC store plus what etcd's lessor
//! persists beside it — each lease's granted TTL and its last checkpointed remaining TTL — so
//! both are in every snapshot and replayed from the log on restart. Pure: no clock, no I/O.
//!
//! The active alarms (`crate::alarm`) are part of it too.
//!
//! Snapshot format (all integers little-endian): magic `KETCHST\0`, u32 version (2), u64
//! length of the MVCC snapshot, the MVCC snapshot bytes, u64 lease count, then per lease i64
//! id, i64 granted TTL, i64 remaining TTL (0 = none); u64 alarm count, then per alarm u64
//! member ID and i32 alarm type; then a CRC-32C of everything before it. Version 1 (no alarm
//! section) and a bare MVCC snapshot (no leases' TTLs) are read too.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::ops::Deref;

use ketch_mvcc::{FrozenStore, MvccError, Store};
use ketch_proto::ketchpb::{RaftRequest, RaftResponse, raft_request, raft_response};
use ketch_proto::mvccpb::Event;
use ketch_proto::{LeaseCheckpointRequest, LeaseCheckpointResponse, ResponseHeader};
use ketch_raft::StateStore;

use crate::alarm::Alarms;

const STATE_MAGIC: &[u8; 8] = b"KETCHST\0";
const STATE_FORMAT_VERSION: u32 = 2;
/// The layout before alarms were kept: read, never written.
const STATE_FORMAT_VERSION_NO_ALARMS: u32 = 1;

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
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

#[derive(Debug, Clone, Default)]
pub struct ReplicatedStore {
    mvcc: Store,
    ttls: BTreeMap<i64, LeaseTtl>,
    /// Bumped on every grant or revoke applied, so the lessor knows when to re-read the table.
    lease_generation: u64,
    alarms: Alarms,
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

impl StateStore for ReplicatedStore {
    type Event = Event;
    type Error = MvccError;

    fn apply(
        &mut self,
        req: &RaftRequest,
        events: &mut Vec<Event>,
    ) -> Result<RaftResponse, MvccError> {
        use raft_request::Request as Q;
        if self.alarms.refuses(req) {
            return Err(MvccError::NoSpace);
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
            _ => self.mvcc.apply(req, events),
        }
    }

    type Frozen = FrozenState;

    fn freeze(&self) -> FrozenState {
        FrozenState {
            mvcc: self.mvcc.freeze(),
            ttls: self.ttls.clone(),
            alarms: self.alarms.clone(),
        }
    }

    fn read_snapshot(&mut self, r: &mut dyn Read) -> io::Result<()> {
        let mut buf = Vec::new();
        r.read_to_end(&mut buf)?;
        *self = decode_snapshot(&buf)?;
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
    if version != STATE_FORMAT_VERSION && version != STATE_FORMAT_VERSION_NO_ALARMS {
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
    if version != STATE_FORMAT_VERSION_NO_ALARMS {
        for _ in 0..p.i64()? {
            let member_id = p.i64()? as u64;
            let alarm = i32::from_le_bytes(p.take(4)?.try_into().expect("4 bytes"));
            state.alarms.insert(member_id, alarm);
        }
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
        lease_generation: 0,
        alarms: Alarms::default(),
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
        RaftRequest { request: Some(r) }
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
            MvccError::NoSpace,
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
