//! Watch progress on a real ketch process started with etcd's
//! `--experimental-watch-progress-notify-interval`: a watcher that asked for progress
//! notifications gets an event-less response at the current revision each interval, and a
//! progress request is answered with watch ID -1 at the current revision.

mod common;

use std::time::Duration;

use common::{ServerProcess, ketch_bin};
use etcd_client::{Client, WatchOptions, WatchResponse, WatchStream};

const WAIT: Duration = Duration::from_secs(5);

async fn next(stream: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(WAIT, stream.message())
        .await
        .expect("no watch response in time")
        .expect("stream error")
        .expect("stream ended")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_notifications_and_requests_report_the_current_revision() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let flags = ["--experimental-watch-progress-notify-interval=300ms"];
    let mut server = ServerProcess::start(&ketch_bin(), &tmp.path().join("d"), &flags);
    server.wait_healthy(Duration::from_secs(20));
    let mut c = Client::connect([server.endpoint()], None)
        .await
        .expect("connect");
    let rev = c
        .put("a", "1", None)
        .await
        .expect("put")
        .header()
        .unwrap()
        .revision();
    let mut stream = c
        .watch("a", Some(WatchOptions::new().with_progress_notify()))
        .await
        .expect("watch");
    let created = next(&mut stream).await;
    assert!(created.created());
    let id = created.watch_id();
    let notify = next(&mut stream).await;
    assert_eq!(notify.watch_id(), id, "{notify:?}");
    assert!(notify.events().is_empty() && !notify.canceled());
    assert_eq!(notify.header().unwrap().revision(), rev);

    let mut plain = c.watch("b", None).await.expect("watch b");
    assert!(next(&mut plain).await.created());
    let rev = c
        .put("c", "1", None)
        .await
        .expect("put")
        .header()
        .unwrap()
        .revision();
    plain.request_progress().await.expect("progress request");
    let progress = next(&mut plain).await;
    assert_eq!(progress.watch_id(), -1, "{progress:?}");
    assert!(progress.events().is_empty());
    assert_eq!(progress.header().unwrap().revision(), rev);
    server.kill9();
}
