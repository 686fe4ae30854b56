//! A real etcd 3.4 (`/usr/bin/etcd`) on free local ports with a temp data dir, killed by PID
//! on drop; and applying the generator's operations to it through the `etcd-client` crate.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, DeleteOptions, GetOptions, LeaseGrantOptions, PutOptions,
    SortOrder, SortTarget, Txn, TxnOp,
};
use ketch_proto::compare::{CompareResult, CompareTarget, TargetUnion};
use ketch_proto::{DeleteRangeRequest, PutRequest, RangeRequest, TxnRequest, request_op};
use prost::Message;

use super::{LEASE_TTL_S, Op, Outcome, Resp};

const ETCD_BIN: &str = "/usr/bin/etcd";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct EtcdServer {
    child: Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // Only the process this guard started, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

impl EtcdServer {
    /// Starts etcd and waits until it answers (bounded by `STARTUP_TIMEOUT`).
    pub async fn start() -> (EtcdServer, Client) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client_port, peer_port) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log file");
        let child = Command::new(ETCD_BIN)
            .args(["--name", "mvcc-test", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("mvcc-test={peer_url}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start /usr/bin/etcd (apt-get install etcd-server)");
        let server = EtcdServer {
            child,
            endpoint: client_url,
            _dir: dir,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(mut c) = Client::connect([&server.endpoint], None).await
                && c.get("probe", None).await.is_ok()
            {
                return (server, c);
            }
            assert!(
                Instant::now() < deadline,
                "etcd did not start within {STARTUP_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Re-decodes an etcd-client protobuf message as ketch's type of the same message.
fn convert<A: Message, B: Message + Default>(a: &A) -> B {
    B::decode(a.encode_to_vec().as_slice()).expect("same schema")
}

/// Keeps only the revision of a top-level header (cluster, member and term are the server's).
fn revision_only(h: &mut Option<ketch_proto::ResponseHeader>) {
    if let Some(h) = h {
        *h = ketch_proto::ResponseHeader {
            revision: h.revision,
            ..Default::default()
        };
    }
}

pub async fn apply_to_etcd(c: &mut Client, op: &Op) -> Outcome {
    let result = match op {
        Op::Range(r) => c.get(r.key.to_vec(), Some(get_options(r))).await.map(|x| {
            let mut r: ketch_proto::RangeResponse = convert(&x.0);
            revision_only(&mut r.header);
            Resp::Range(r)
        }),
        Op::Put(r) => c
            .put(r.key.to_vec(), r.value.to_vec(), Some(put_options(r)))
            .await
            .map(|x| {
                let mut r: ketch_proto::PutResponse = convert(&x.0);
                revision_only(&mut r.header);
                Resp::Put(r)
            }),
        Op::Delete(r) => c
            .delete(r.key.to_vec(), Some(delete_options(r)))
            .await
            .map(|x| {
                let mut r: ketch_proto::DeleteRangeResponse = convert(&x.0);
                revision_only(&mut r.header);
                Resp::Delete(r)
            }),
        Op::Txn(r) => c.txn(txn_of(r)).await.map(|x| {
            let mut r: ketch_proto::TxnResponse = convert(&x.0);
            revision_only(&mut r.header);
            Resp::Txn(r)
        }),
        Op::Compact(r) => {
            let opts = etcd_client::CompactionOptions::new().with_physical();
            c.compact(r.revision, Some(opts)).await.map(|x| {
                let mut r: ketch_proto::CompactionResponse = convert(&x.0);
                revision_only(&mut r.header);
                Resp::Compact(r)
            })
        }
        Op::LeaseGrant(id) => {
            let opts = LeaseGrantOptions::new().with_id(*id);
            c.lease_grant(LEASE_TTL_S, Some(opts)).await.map(|x| {
                let mut r: ketch_proto::LeaseGrantResponse = convert(&x.0);
                revision_only(&mut r.header);
                Resp::LeaseGrant(r)
            })
        }
        Op::LeaseRevoke(id) => c.lease_revoke(*id).await.map(|x| {
            let mut r: ketch_proto::LeaseRevokeResponse = convert(&x.0);
            revision_only(&mut r.header);
            Resp::LeaseRevoke(r)
        }),
    };
    result.map_err(|e| match e {
        etcd_client::Error::GRpcStatus(s) => (s.code() as i32, s.message().to_string()),
        other => panic!("etcd transport error: {other}"),
    })
}

fn get_options(r: &RangeRequest) -> GetOptions {
    let mut o = GetOptions::new()
        .with_limit(r.limit)
        .with_revision(r.revision)
        .with_min_mod_revision(r.min_mod_revision)
        .with_max_mod_revision(r.max_mod_revision)
        .with_min_create_revision(r.min_create_revision)
        .with_max_create_revision(r.max_create_revision);
    if !r.range_end.is_empty() {
        o = o.with_range(r.range_end.to_vec());
    }
    let target = [
        SortTarget::Key,
        SortTarget::Version,
        SortTarget::Create,
        SortTarget::Mod,
        SortTarget::Value,
    ][r.sort_target as usize];
    let order = [SortOrder::None, SortOrder::Ascend, SortOrder::Descend][r.sort_order as usize];
    o = o.with_sort(target, order);
    if r.keys_only {
        o = o.with_keys_only();
    }
    if r.count_only {
        o = o.with_count_only();
    }
    o
}

fn put_options(r: &PutRequest) -> PutOptions {
    let mut o = PutOptions::new().with_lease(r.lease);
    if r.prev_kv {
        o = o.with_prev_key();
    }
    if r.ignore_value {
        o = o.with_ignore_value();
    }
    if r.ignore_lease {
        o = o.with_ignore_lease();
    }
    o
}

fn delete_options(r: &DeleteRangeRequest) -> DeleteOptions {
    let mut o = DeleteOptions::new();
    if !r.range_end.is_empty() {
        o = o.with_range(r.range_end.to_vec());
    }
    if r.prev_kv {
        o = o.with_prev_key();
    }
    o
}

fn compare_of(c: &ketch_proto::Compare) -> Compare {
    let op = match CompareResult::try_from(c.result).expect("generated") {
        CompareResult::Equal => CompareOp::Equal,
        CompareResult::Greater => CompareOp::Greater,
        CompareResult::Less => CompareOp::Less,
        CompareResult::NotEqual => CompareOp::NotEqual,
    };
    let key = c.key.to_vec();
    let cmp = match (
        CompareTarget::try_from(c.target).expect("generated"),
        &c.target_union,
    ) {
        (CompareTarget::Version, Some(TargetUnion::Version(n))) => Compare::version(key, op, *n),
        (CompareTarget::Create, Some(TargetUnion::CreateRevision(n))) => {
            Compare::create_revision(key, op, *n)
        }
        (CompareTarget::Mod, Some(TargetUnion::ModRevision(n))) => {
            Compare::mod_revision(key, op, *n)
        }
        (CompareTarget::Value, Some(TargetUnion::Value(v))) => Compare::value(key, op, v.to_vec()),
        (CompareTarget::Lease, Some(TargetUnion::Lease(n))) => Compare::lease(key, op, *n),
        other => panic!("generator made an inexpressible compare {other:?}"),
    };
    if c.range_end.is_empty() {
        cmp
    } else {
        cmp.with_range(c.range_end.to_vec())
    }
}

fn ops_of(ops: &[ketch_proto::RequestOp]) -> Vec<TxnOp> {
    ops.iter()
        .map(
            |op| match op.request.as_ref().expect("generated ops are set") {
                request_op::Request::RequestRange(r) => {
                    TxnOp::get(r.key.to_vec(), Some(get_options(r)))
                }
                request_op::Request::RequestPut(r) => {
                    TxnOp::put(r.key.to_vec(), r.value.to_vec(), Some(put_options(r)))
                }
                request_op::Request::RequestDeleteRange(r) => {
                    TxnOp::delete(r.key.to_vec(), Some(delete_options(r)))
                }
                request_op::Request::RequestTxn(t) => TxnOp::txn(txn_of(t)),
            },
        )
        .collect()
}

fn txn_of(t: &TxnRequest) -> Txn {
    let compares: Vec<Compare> = t.compare.iter().map(compare_of).collect();
    Txn::new()
        .when(compares)
        .and_then(ops_of(&t.success))
        .or_else(ops_of(&t.failure))
}
