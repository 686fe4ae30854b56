//! Shared helpers for the ketch-raft integration tests: a small stand-in store (puts only,
//! one revision per put, as etcd counts them) and a member running on its own glommio
//! executor thread, driven from the test thread through `RaftHandle`.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use ketch_proto::ketchpb::{RaftRequest, RaftResponse, raft_request, raft_response};
use ketch_proto::{PutRequest, PutResponse, ResponseHeader};
use ketch_raft::{
    Member, RaftHandle, RaftOptions, SerializedState, StateStore, UnreachableNetwork,
    executor_builder, start,
};

pub const MEMBER_ID: u64 = 0x8e9e05c52164694d;
pub const CLUSTER_ID: u64 = 0xcdf818194e3a8c32;

/// Stand-in for the MVCC store: key -> (value, mod revision).
#[derive(Default, Debug, PartialEq, Eq)]
pub struct TestStore {
    pub revision: i64,
    pub kv: BTreeMap<Vec<u8>, (Vec<u8>, i64)>,
}

#[derive(Debug, thiserror::Error)]
#[error("test store: {0}")]
pub struct TestStoreError(pub String);

impl StateStore for TestStore {
    type Event = (Vec<u8>, i64);
    type Error = TestStoreError;

    fn apply(
        &mut self,
        req: &RaftRequest,
        events: &mut Vec<Self::Event>,
    ) -> Result<RaftResponse, TestStoreError> {
        let Some(raft_request::Request::Put(put)) = &req.request else {
            return Err(TestStoreError("only puts are supported".into()));
        };
        if put.key.is_empty() {
            return Err(TestStoreError("key is not provided".into()));
        }
        self.revision += 1;
        self.kv
            .insert(put.key.to_vec(), (put.value.to_vec(), self.revision));
        events.push((put.key.to_vec(), self.revision));
        let header = ResponseHeader {
            revision: self.revision,
            ..Default::default()
        };
        Ok(RaftResponse {
            response: Some(raft_response::Response::Put(PutResponse {
                header: Some(header),
                prev_kv: None,
            })),
        })
    }

    type Frozen = SerializedState;

    fn freeze(&self) -> SerializedState {
        let mut out = Vec::new();
        self.write_to(&mut out)
            .expect("writing into memory does not fail");
        SerializedState(out)
    }

    fn read_snapshot(&mut self, r: &mut dyn Read) -> io::Result<()> {
        self.read_from(r)
    }

    fn revision(&self) -> i64 {
        self.revision
    }
}

impl TestStore {
    fn write_to(&self, w: &mut dyn Write) -> io::Result<()> {
        w.write_all(&self.revision.to_le_bytes())?;
        w.write_all(&(self.kv.len() as u64).to_le_bytes())?;
        for (k, (v, rev)) in &self.kv {
            for part in [k, v] {
                w.write_all(&(part.len() as u32).to_le_bytes())?;
                w.write_all(part)?;
            }
            w.write_all(&rev.to_le_bytes())?;
        }
        Ok(())
    }

    fn read_from(&mut self, r: &mut dyn Read) -> io::Result<()> {
        fn u64_(r: &mut dyn Read) -> io::Result<u64> {
            let mut b = [0u8; 8];
            r.read_exact(&mut b)?;
            Ok(u64::from_le_bytes(b))
        }
        fn bytes_(r: &mut dyn Read) -> io::Result<Vec<u8>> {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)?;
            let mut v = vec![0u8; u32::from_le_bytes(b) as usize];
            r.read_exact(&mut v)?;
            Ok(v)
        }
        self.revision = u64_(r)? as i64;
        self.kv.clear();
        for _ in 0..u64_(r)? {
            let k = bytes_(r)?;
            let v = bytes_(r)?;
            let rev = u64_(r)? as i64;
            self.kv.insert(k, (v, rev));
        }
        Ok(())
    }
}

pub fn put(key: &str, value: &str) -> RaftRequest {
    RaftRequest {
        request: Some(raft_request::Request::Put(PutRequest {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: Bytes::copy_from_slice(value.as_bytes()),
            ..Default::default()
        })),
        header: None,
        ..RaftRequest::default()
    }
}

pub fn put_revision(resp: &RaftResponse) -> i64 {
    match &resp.response {
        Some(raft_response::Response::Put(p)) => p.header.as_ref().expect("header").revision,
        other => panic!("not a put response: {other:?}"),
    }
}

pub fn single_member_options(data_dir: &Path) -> RaftOptions {
    let mut members = BTreeMap::new();
    members.insert(
        MEMBER_ID,
        Member {
            name: "default".into(),
            peer_urls: vec!["http://localhost:2380".into()],
            client_urls: vec!["http://localhost:2379".into()],
        },
    );
    let mut o = RaftOptions::new(data_dir, MEMBER_ID, CLUSTER_ID, members);
    // Short timeouts keep the tests fast; the logic is the same.
    o.heartbeat_ms = 20;
    o.election_timeout_ms = 150;
    o.request_timeout = Duration::from_secs(10);
    o
}

/// A member on its own executor thread. Dropping it shuts the member down and joins the thread.
pub struct RunningMember<S: StateStore = TestStore> {
    pub handle: RaftHandle<S>,
    pub events: flume::Receiver<Vec<S::Event>>,
    thread: Option<glommio::ExecutorJoinHandle<()>>,
}

/// Bound of the test's event channel.
const TEST_EVENT_QUEUE: usize = 1 << 16;

impl<S: StateStore> RunningMember<S> {
    pub fn start(opts: RaftOptions) -> RunningMember<S> {
        let (htx, hrx) = flume::bounded(1);
        let (etx, erx) = flume::bounded(TEST_EVENT_QUEUE);
        let thread = executor_builder("raft-test")
            .spawn(move || async move {
                let sink: ketch_raft::EventSink<S::Event> = Box::new(move |evs| {
                    etx.try_send(evs).expect("test event queue has room");
                });
                match start::<S, _>(opts, UnreachableNetwork, Some(sink)).await {
                    Ok((handle, node)) => {
                        htx.send(Ok(handle)).unwrap();
                        node.stopped().await;
                    }
                    Err(e) => htx.send(Err(e.to_string())).unwrap(),
                }
            })
            .expect("raft executor");
        let handle = hrx
            .recv_timeout(Duration::from_secs(60))
            .expect("member started in time")
            .expect("member starts");
        RunningMember {
            handle,
            events: erx,
            thread: Some(thread),
        }
    }

    pub fn stop(mut self) {
        self.stop_inner();
    }

    fn stop_inner(&mut self) {
        if let Some(t) = self.thread.take() {
            futures::executor::block_on(self.handle.shutdown());
            t.join().expect("raft executor thread");
        }
    }
}

impl<S: StateStore> Drop for RunningMember<S> {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    futures::executor::block_on(f)
}
