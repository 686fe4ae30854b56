//! The request-per-ticket workloads: put, range, txn-put, txn-mixed, lease-keepalive, and the
//! timestamped puts that feed the watch workloads. Each holds one gRPC client per connection and
//! client task `i` uses connection `i % conns`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use etcd_client::{Client, GetOptions, KvClient, LeaseKeepAliveStream, LeaseKeeper, Txn, TxnOp};
use tokio::time::Instant;

use crate::connect::error_message;
use crate::driver::{Outcome, Workload};
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

fn kv_clients(conns: &[Client]) -> Vec<KvClient> {
    conns.iter().map(|c| c.kv_client()).collect()
}

fn outcome<T>(op: &'static str, r: Result<T, etcd_client::Error>) -> Outcome {
    Outcome {
        op,
        result: r.map(|_| ()).map_err(|e| error_message(&e)),
    }
}

pub struct Put {
    kv: Vec<KvClient>,
    keys: KeyGen,
    value: Vec<u8>,
}

impl Put {
    pub fn new(conns: &[Client], keys: KeyGen, val_size: usize) -> Self {
        Put {
            kv: kv_clients(conns),
            keys,
            value: random_value(val_size),
        }
    }
}

impl Workload for Put {
    fn main_op(&self) -> &'static str {
        "put"
    }
    async fn run(&self, client: usize, t: Ticket) -> Outcome {
        let mut kv = self.kv[client % self.kv.len()].clone();
        let key = self.keys.key(self.keys.number(t.seq));
        outcome("put", kv.put(key, self.value.clone(), None).await)
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
    fn options(&self) -> GetOptions {
        let mut o = GetOptions::new().with_limit(self.limit);
        if let Some(end) = &self.end {
            o = o.with_range(end.clone());
        }
        if self.serializable {
            o = o.with_serializable();
        }
        if self.count_only {
            o = o.with_count_only();
        }
        if self.keys_only {
            o = o.with_keys_only();
        }
        o
    }
}

pub struct Range {
    kv: Vec<KvClient>,
    spec: RangeSpec,
}

impl Range {
    pub fn new(conns: &[Client], spec: RangeSpec) -> Self {
        Range {
            kv: kv_clients(conns),
            spec,
        }
    }
}

impl Workload for Range {
    fn main_op(&self) -> &'static str {
        "range"
    }
    async fn run(&self, client: usize, _t: Ticket) -> Outcome {
        let mut kv = self.kv[client % self.kv.len()].clone();
        let r = kv
            .get(self.spec.key.clone(), Some(self.spec.options()))
            .await;
        outcome("range", r)
    }
}

pub struct TxnPut {
    kv: Vec<KvClient>,
    keys: KeyGen,
    value: Vec<u8>,
    txn_ops: usize,
}

impl TxnPut {
    pub fn new(conns: &[Client], keys: KeyGen, val_size: usize, txn_ops: usize) -> Self {
        TxnPut {
            kv: kv_clients(conns),
            keys,
            value: random_value(val_size),
            txn_ops,
        }
    }
}

impl Workload for TxnPut {
    fn main_op(&self) -> &'static str {
        "txn-put"
    }
    async fn run(&self, client: usize, t: Ticket) -> Outcome {
        let mut kv = self.kv[client % self.kv.len()].clone();
        // Distinct keys within one txn: etcd rejects a txn that puts the same key twice.
        let first = self.keys.number(t.seq);
        let ops: Vec<TxnOp> = (0..self.txn_ops as u64)
            .map(|i| {
                let k = self.keys.key((first + i) % self.keys.key_space);
                TxnOp::put(k, self.value.clone(), None)
            })
            .collect();
        outcome("txn-put", kv.txn(Txn::new().and_then(ops)).await)
    }
}

pub struct TxnMixed {
    kv: Vec<KvClient>,
    keys: KeyGen,
    value: Vec<u8>,
    /// Probability that a request is a read: rw_ratio / (rw_ratio + 1).
    read_share: f64,
    read: RangeSpec,
}

impl TxnMixed {
    pub fn new(
        conns: &[Client],
        keys: KeyGen,
        val_size: usize,
        rw_ratio: f64,
        read: RangeSpec,
    ) -> Self {
        TxnMixed {
            kv: kv_clients(conns),
            keys,
            value: random_value(val_size),
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
        let mut kv = self.kv[client % self.kv.len()].clone();
        let key = self.keys.key(self.keys.number(t.seq));
        if rand::random_bool(self.read_share) {
            let op = TxnOp::get(key, Some(self.read.options()));
            outcome("txn-read", kv.txn(Txn::new().and_then([op])).await)
        } else {
            let op = TxnOp::put(key, self.value.clone(), None);
            outcome("txn-write", kv.txn(Txn::new().and_then([op])).await)
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
    kv: Vec<KvClient>,
    keys: KeyGen,
    val_size: usize,
    base: Instant,
    watchers_per_key: Arc<Vec<u64>>,
    /// Events the watchers should receive in total, counted as puts succeed.
    pub expected_events: Arc<AtomicU64>,
}

impl StampedPut {
    pub fn new(
        conns: &[Client],
        keys: KeyGen,
        val_size: usize,
        base: Instant,
        watchers_per_key: Arc<Vec<u64>>,
    ) -> Self {
        StampedPut {
            kv: kv_clients(conns),
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
        let mut kv = self.kv[client % self.kv.len()].clone();
        let number = self.keys.number(t.seq);
        let sent = t.intended.unwrap_or_else(Instant::now);
        let stamp = u64::try_from(sent.duration_since(self.base).as_nanos()).unwrap_or(u64::MAX);
        let mut value = vec![b'v'; self.val_size];
        value[..STAMP_BYTES].copy_from_slice(&stamp.to_le_bytes());
        let r = kv.put(self.keys.key(number), value, None).await;
        if r.is_ok() {
            let w = self.watchers_per_key[number as usize];
            self.expected_events.fetch_add(w, Ordering::Relaxed);
        }
        outcome("put", r)
    }
}
