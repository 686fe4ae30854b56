//! Prometheus metrics with etcd's names, rendered as text for `/metrics`. Counters and gauges
//! owned by the server are atomics; raft and WAL figures are read from the raft handle's status
//! when the page is rendered.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::node::Node;
use crate::version::ETCD_COMPAT_VERSION;

#[derive(Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
pub struct ServerMetrics {
    pub proposals_pending: Gauge,
    pub proposals_failed: Gauge,
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
    );
}

pub async fn render(node: &Node) -> String {
    let mut out = String::with_capacity(4096);
    let raft = node.raft.status();
    let (db_size, keys) = {
        let store = node.raft.store();
        let store = store.read();
        (store.size_bytes(), store.revision())
    };
    let has_leader = u8::from(raft.leader_id != 0);
    metric(
        &mut out,
        "etcd_server_has_leader",
        "gauge",
        "Whether or not a leader exists. 1 is existence, 0 is not.",
        has_leader,
    );
    metric(
        &mut out,
        "etcd_server_is_leader",
        "gauge",
        "Whether or not this member is a leader. 1 if is, 0 otherwise.",
        u8::from(raft.is_leader),
    );
    metric(
        &mut out,
        "etcd_server_proposals_committed_total",
        "gauge",
        "The total number of consensus proposals committed.",
        raft.commit_index,
    );
    metric(
        &mut out,
        "etcd_server_proposals_applied_total",
        "gauge",
        "The total number of consensus proposals applied.",
        raft.applied_index,
    );
    metric(
        &mut out,
        "etcd_server_proposals_pending",
        "gauge",
        "The current number of pending proposals to commit.",
        node.metrics.proposals_pending.get(),
    );
    metric(
        &mut out,
        "etcd_server_proposals_failed_total",
        "counter",
        "The total number of failed proposals seen.",
        node.metrics.proposals_failed.get(),
    );
    metric(
        &mut out,
        "etcd_mvcc_db_total_size_in_bytes",
        "gauge",
        "Total size of the underlying database physically allocated in bytes.",
        db_size,
    );
    metric(
        &mut out,
        "etcd_mvcc_db_total_size_in_use_in_bytes",
        "gauge",
        "Total size of the underlying database logically in use in bytes.",
        db_size,
    );
    metric(
        &mut out,
        "etcd_debugging_mvcc_current_revision",
        "gauge",
        "The current revision of store.",
        keys,
    );
    metric(
        &mut out,
        "etcd_server_term",
        "gauge",
        "The current term of this member.",
        raft.term,
    );
    metric(
        &mut out,
        "ketch_server_read_index_rounds_total",
        "counter",
        "ReadIndex rounds this member started: each confirms the read index once for every linearizable read queued before it (on the leader, followers' ReadIndex requests too).",
        node.raft.read_rounds(),
    );
    let (forwarded_batches, forwarded_writes) = node.raft.forwarded_batches_and_writes();
    metric(
        &mut out,
        "ketch_server_forwarded_writes_total",
        "counter",
        "Client writes this member forwarded to the leader while following.",
        forwarded_writes,
    );
    metric(
        &mut out,
        "ketch_server_forwarded_write_batches_total",
        "counter",
        "Peer requests that carried this member's forwarded writes (writes that wait while earlier batches are in flight go together).",
        forwarded_batches,
    );
    // The WAL lives on the raft core; a stopped member has no WAL figures to show.
    if let Ok(wal) = node.raft.wal_metrics().await {
        out.push_str(&wal.fsync_seconds.render_prometheus(
            "etcd_disk_wal_fsync_duration_seconds",
            "The latency distributions of fsync called by WAL.",
        ));
    }
    let _ = writeln!(
        out,
        "# HELP etcd_server_version Which version is running. 1 for 'server_version' label with current version.\n# TYPE etcd_server_version gauge\netcd_server_version{{server_version=\"{ETCD_COMPAT_VERSION}\"}} 1"
    );
    out
}
