//! Watches with etcd's require-leader metadata on three real ketch members: a stream opened
//! while a leader exists keeps delivering events; once two members are SIGKILLed (no quorum,
//! no leader) the stream ends with `Unavailable: etcdserver: no leader` after three election
//! timeouts, as etcd's `monitorLeader` ends it; a new require-leader watch is refused at once.

mod common;

use std::time::{Duration, Instant};

use common::{ServerProcess, ketch_bin};
use etcd_client::{Client, ConnectOptions};

/// etcd cancels after 3 election timeouts (1 s each by default) without a leader; allow
/// for the checks' phase, the election attempts and a loaded machine.
const CANCEL_WITHIN: Duration = Duration::from_secs(9);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_leader_watch_ends_when_the_leader_is_gone() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let mut members = ServerProcess::start_cluster(&ketch_bin(), tmp.path(), 3, &[]);
    let options = ConnectOptions::new().with_require_leader(true);
    let mut c = Client::connect([members[0].endpoint()], Some(options.clone()))
        .await
        .expect("connect");
    let mut stream = c.watch("k", None).await.expect("watch");
    c.put("k", "v1", None).await.expect("put");
    let events = loop {
        let msg = stream.message().await.expect("event").expect("open stream");
        if !msg.events().is_empty() {
            break msg.events().len();
        }
    };
    assert_eq!(events, 1, "the put reaches the watch");

    members[1].kill9();
    members[2].kill9();
    let killed = Instant::now();
    let ended = tokio::time::timeout(CANCEL_WITHIN, async {
        loop {
            match stream.message().await {
                Ok(Some(_)) => continue,
                other => return other,
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("stream still open {CANCEL_WITHIN:?} after losing the leader"));
    let status = match ended {
        Err(etcd_client::Error::GRpcStatus(s)) => s,
        other => panic!("stream ended with {other:?}"),
    };
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(status.message(), "etcdserver: no leader");
    println!("cancelled {:?} after the kills", killed.elapsed());

    let mut again = Client::connect([members[0].endpoint()], Some(options))
        .await
        .expect("connect");
    let refused = match again.watch("k", None).await {
        Ok(mut s) => s.message().await.err(),
        Err(e) => Some(e),
    };
    assert!(
        matches!(&refused, Some(etcd_client::Error::GRpcStatus(s)) if s.message() == "etcdserver: no leader"),
        "a new require-leader watch without a leader: {refused:?}"
    );
}
