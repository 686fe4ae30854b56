//! The request-per-ticket workloads: put, range, txn-put, txn-mixed, lease-keepalive, and the
//! timestamped puts that feed the watch workloads. Each holds one gRPC connection per `--conns`
//! and client task `i` uses connection `i % conns`. The KV calls go through the lean client
//! (`grpc`); lease keep-alive streams through etcd-client.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper};
use ketch_proto::etcdserverpb::request_op::Request;
use ketch_proto::etcdserverpb::{PutRequest, RangeRequest, RequestOp, TxnRequest};
use tokio::time::Instant;

use crate::connect::error_message;
use crate::driver::{Outcome, Workload};
use crate::grpc::{CallError, KvConn};
use crate::pacing::Ticket;

/// How keys are chosen: `key_size` bytes, the key number big-endian in the last (at most 8)
/// bytes, drawn at random from `0..key_space` or taken in sequence.
#[derive(Debug, Clone, Copy)]
pub struct KeyGen {
    pub key_size: usize,
    pub key_space: u64,
    pub sequential: bool,
}

impl KeyGen {
    pub fn number(&self, seq: u64) -> u64 {
        if self.sequential {
            seq % self.key_space
        } else {
            rand::random_range(0..self.key_space)
        }
    }

    pub fn key(&self, number: u64) -> Vec<u8> {
        let mut k = vec![0u8; self.key_size];
        let be = number.to_be_bytes();
        let n = self.key_size.min(be.len());
        k[self.key_size - n..].copy_from_slice(&be[be.len() - n..]);
        k
    }
}

/// `len` random printable bytes (a value, as etcd's tool makes one per run).
pub fn random_value(len: usize) -> Vec<u8> {
    (0..len).map(|_| rand::random_range(b'a'..=b'z')).collect()
}

fn outcome<T>(op: &'static str, r: Result<T, etcd_client::Error>) -> Outcome {
    Outcome {
        op,
        result: r.map(|_| ()).map_err(|e| error_message(&e)),
    }
}

fn kv_outcome<T>(op: &'static str, r: Result<T, CallError>) -> Outcome {
    Outcome {
        op,
        result: r.map(|_| ()).map_err(|e| e.to_string()),
    }
}

fn put_request(key: Vec<u8>, value: Bytes) -> PutRequest {
    PutRequest {
        key: key.into(),
        value,
        ..Default::default()
    }
}

fn txn_of(ops: impl IntoIterator<Item = Request>) -> TxnRequest {
    TxnRequest {
        success: ops
            .into_iter()
            .map(|r| RequestOp { request: Some(r) })
            .collect(),
        ..Default::default()
    }
}

pub struct Put {
    kv: Vec<KvConn>,
    keys: KeyGen,
    value: Bytes,
}

impl Put {
    pub fn new(conns: &[KvConn], keys: KeyGen, val_size: usize) -> Self {
        Put {
            kv: conns.to_vec(),
            keys,
            value: random_value(val_size).into(),
        }
    }
}

impl Workload for Put {
    fn main_op(&self) -> &'static str {
        "put"
    }
    async fn run(&self, client: usize, t: Ticket) -> Outcome {
        let kv = &self.kv[client % self.kv.len()];
        let key = self.keys.key(self.keys.number(t.seq));
        kv_outcome("put", kv.put(&put_request(key, self.value.clone())).await)
    }
}

/// Range options as etcd's `benchmark range` takes them.
#[derive(Debug, Clone, Default)]
pub struct RangeSpec {
    pub key: Vec<u8>,
    pub end: Option<Vec<u8>>,
    pub serializable: bool,
    pub limit: i64,
    pub count_only: bool,
    pub keys_only: bool,
}

impl RangeSpec {
    fn request(&self) -> RangeRequest {
        RangeRequest {
            key: self.key.clone().into(),
            range_end: self.end.clone().unwrap_or_default().into(),
            limit: self.limit,
            serializable: self.serializable,
            count_only: self.count_only,
            keys_only: self.keys_only,
            ..Default::default()
        }
    }
}

pub struct Range {
    kv: Vec<KvConn>,
    request: RangeRequest,
}

impl Range {
    pub fn new(conns: &[KvConn], spec: RangeSpec) -> Self {
        Range {
            kv: conns.to_vec(),
            request: spec.request(),
        }
    }
}

impl Workload for Range {
    fn main_op(&self) -> &'static str {
        "range"
    }
    async fn run(&self, client: usize, _t: Ticket) -> Outcome {
        let kv = &self.kv[client % self.kv.len()];
        kv_outcome("range", kv.range(&self.request).await)
    }
}

pub struct TxnPut {
    kv: Vec<KvConn>,
    keys: KeyGen,
    value: Bytes,
    txn_ops: usize,
}

impl TxnPut {
    pub fn new(conns: &[KvConn], keys: KeyGen, val_size: usize, txn_ops: usize) -> Self {
        TxnPut {
            kv: conns.to_vec(),
            keys,
            value: random_value(val_size).into(),
            txn_ops,
        }
    }
}

impl Workload for TxnPut {
    fn main_op(&self) -> &'static str {
        "txn-put"
    }
    async fn run(&self, client: usize, t: Ticket) -> Outcome {
        let kv = &self.kv[client % self.kv.len()];
        // Distinct keys within one txn: etcd rejects a txn that puts the same key twice.
        let first = self.keys.number(t.seq);
        let ops = (0..self.txn_ops as u64).map(|i| {
            let k = self.keys.key((first + i) % self.keys.key_space);
            Request::RequestPut(put_request(k, self.value.clone()))
        });
        kv_outcome("txn-put", kv.txn(&txn_of(ops)).await)
    }
}

pub struct TxnMixed {
    kv: Vec<KvConn>,
    keys: KeyGen,
    value: Bytes,
    /// Probability that a request is a read: rw_ratio / (rw_ratio + 1).
    read_share: f64,
    read: RangeSpec,
}

impl TxnMixed {
    pub fn new(
        conns: &[KvConn],
        keys: KeyGen,
        val_size: usize,
        rw_ratio: f64,
        read: RangeSpec,
    ) -> Self {
        TxnMixed {
            kv: conns.to_vec(),
            keys,
            value: random_value(val_size).into(),
            read_share: rw_ratio / (rw_ratio + 1.0),
            read,
        }
    }
}

impl Workload for TxnMixed {
    fn main_op(&self) -> &'static str {
        "txn-write"
    }
    async fn run(&self, client: usize, t: Ticket) -> Outcome {
        let kv = &self.kv[client % self.kv.len()];
        let key = self.keys.key(self.keys.number(t.seq));
        if rand::random_bool(self.read_share) {
            let mut read = self.read.request();
            read.key = key.into();
            let op = Request::RequestRange(read);
            kv_outcome("txn-read", kv.txn(&txn_of([op])).await)
        } else {
            let op = Request::RequestPut(put_request(key, self.value.clone()));
            kv_outcome("txn-write", kv.txn(&txn_of([op])).await)
        }
    }
}

/// One lease and its keep-alive stream per client task; each request is one keep-alive
/// round trip on that stream.
pub struct LeaseKeepalive {
    streams: Vec<tokio::sync::Mutex<(LeaseKeeper, LeaseKeepAliveStream)>>,
}

/// TTL of the leases the lease-keepalive workload grants (etcd's tool uses 100 s).
pub const LEASE_TTL_S: i64 = 100;

impl LeaseKeepalive {
    pub async fn new(conns: &[Client], clients: usize) -> anyhow::Result<Self> {
        let mut streams = Vec::with_capacity(clients);
        for i in 0..clients {
            let mut lease = conns[i % conns.len()].lease_client();
            let granted = lease.grant(LEASE_TTL_S, None).await?;
            let pair = lease.keep_alive(granted.id()).await?;
            streams.push(tokio::sync::Mutex::new(pair));
        }
        Ok(LeaseKeepalive { streams })
    }
}

impl Workload for LeaseKeepalive {
    fn main_op(&self) -> &'static str {
        "lease-keepalive"
    }
    async fn run(&self, client: usize, _t: Ticket) -> Outcome {
        let mut guard = self.streams[client].lock().await;
        let (keeper, stream) = &mut *guard;
        let r = async {
            keeper.keep_alive().await?;
            match stream.message().await? {
                Some(resp) if resp.ttl() > 0 => Ok(()),
                Some(_) => Err(etcd_client::Error::LeaseKeepAliveError(
                    "lease expired".into(),
                )),
                None => Err(etcd_client::Error::LeaseKeepAliveError(
                    "stream closed".into(),
                )),
            }
        }
        .await;
        outcome("lease-keepalive", r)
    }
}

/// Size of the send timestamp at the front of every timestamped value.
pub const STAMP_BYTES: usize = 8;

/// Puts whose value starts with the send time (nanoseconds since `base`, little-endian), so a
/// watcher can compute put-to-event latency without shared state. In open loop the stamp is the
/// intended send time.
pub struct StampedPut {
    kv: Vec<KvConn>,
    keys: KeyGen,
    val_size: usize,
    base: Instant,
    watchers_per_key: Arc<Vec<u64>>,
    /// Events the watchers should receive in total, counted as puts succeed.
    pub expected_events: Arc<AtomicU64>,
}

impl StampedPut {
    pub fn new(
        conns: &[KvConn],
        keys: KeyGen,
        val_size: usize,
        base: Instant,
        watchers_per_key: Arc<Vec<u64>>,
    ) -> Self {
        StampedPut {
            kv: conns.to_vec(),
            keys,
            val_size: val_size.max(STAMP_BYTES),
            base,
            watchers_per_key,
            expected_events: Arc::new(AtomicU64::new(0)),
        }
    }
}

/// The send time encoded in a stamped value, if it is one.
pub fn value_stamp(base: Instant, value: &[u8]) -> Option<Instant> {
    let b: [u8; STAMP_BYTES] = value.get(..STAMP_BYTES)?.try_into().ok()?;
    Some(base + std::time::Duration::from_nanos(u64::from_le_bytes(b)))
}

impl Workload for StampedPut {
    fn main_op(&self) -> &'static str {
        "put"
    }
    async fn run(&self, client: usize, t: Ticket) -> Outcome {
        let kv = &self.kv[client % self.kv.len()];
        let number = self.keys.number(t.seq);
        let sent = t.intended.unwrap_or_else(Instant::now);
        let stamp = u64::try_from(sent.duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        let mut value = vec![b'v'; self.val_size];
        value[..STAMP_BYTES].copy_from_slice(&stamp.to_le_bytes());
        let r = kv
            .put(&put_request(self.keys.key(number), value.into()))
            .await;
        if r.is_ok() {
            let w = self.watchers_per_key[number as usize];
            self.expected_events.fetch_add(w, Ordering::Relaxed);
        }
        kv_outcome("put", r)
    }
}
