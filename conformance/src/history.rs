//! Recording concurrent KV histories for the linearizability checker: several clients, each
//! bound to one member, issue random put/get/delete on a few keys while a failure happens.
//! Every write that errors is recorded as `Unknown` (it may have been applied); a read that
//! errors is `Failed` (reads change nothing).

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::checker::linearizability::{OpInput, OpOutput, OpResult, Operation};
use crate::drivers::grpc;

/// Keys the workload touches (few keys: contention is what finds anomalies).
pub const WORKLOAD_KEYS: usize = 3;
/// A client's request may take this long before its outcome counts as unknown.
pub const WORKLOAD_REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// After an error a client pauses this long (bounds unknown operations, which cost the checker).
pub const ERROR_BACKOFF: Duration = Duration::from_millis(300);

/// One workload client: its member and its seed.
#[derive(Clone, Debug)]
pub struct WorkloadClient {
    pub id: u32,
    pub endpoint: String,
    pub seed: u64,
}

fn ns_since(origin: Instant) -> u64 {
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Runs one client until `deadline`, returning its operations.
pub async fn run_client(w: WorkloadClient, origin: Instant, deadline: Instant) -> Vec<Operation> {
    let mut rng = StdRng::seed_from_u64(w.seed);
    let mut ops = Vec::new();
    let opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(grpc::CONNECT_TIMEOUT)
        .with_timeout(WORKLOAD_REQUEST_TIMEOUT);
    let Ok(mut cl) = etcd_client::Client::connect([w.endpoint.as_str()], Some(opts)).await else {
        return ops;
    };
    let mut n = 0u32;
    while Instant::now() < deadline {
        let key = format!("lin/{}", rng.random_range(0..WORKLOAD_KEYS));
        let roll = rng.random_range(0..10);
        let call_ns = ns_since(origin);
        let (input, output) = if roll < 5 {
            n += 1;
            let value = format!("c{}-{n}", w.id);
            let r = cl.put(key.as_str(), value.as_str(), None).await;
            let out = match r {
                Ok(p) => OpOutput::Ok(OpResult::Put {
                    revision: p.header().map(|h| h.revision()),
                }),
                Err(_) => OpOutput::Unknown,
            };
            (OpInput::Put { value }, out)
        } else if roll < 9 {
            let out = match cl.get(key.as_str(), None).await {
                Ok(g) => OpOutput::Ok(OpResult::Get {
                    value: g
                        .kvs()
                        .first()
                        .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                    mod_revision: g.kvs().first().map(|kv| kv.mod_revision()),
                    header_revision: g.header().map(|h| h.revision()),
                }),
                Err(_) => OpOutput::Failed,
            };
            (OpInput::Get, out)
        } else {
            let out = match cl.delete(key.as_str(), None).await {
                Ok(d) => OpOutput::Ok(OpResult::Delete {
                    deleted: Some(d.deleted()),
                    revision: d.header().map(|h| h.revision()),
                }),
                Err(_) => OpOutput::Unknown,
            };
            (OpInput::Delete, out)
        };
        let failed = !matches!(output, OpOutput::Ok(_));
        let return_ns = if matches!(output, OpOutput::Unknown) {
            None
        } else {
            Some(ns_since(origin))
        };
        ops.push(Operation {
            client: w.id,
            call_ns,
            return_ns,
            key,
            input,
            output,
        });
        if failed {
            tokio::time::sleep(ERROR_BACKOFF).await;
        }
    }
    ops
}

/// Starts the clients as tasks; await the handle for the whole history.
pub fn spawn_workload(
    clients: Vec<WorkloadClient>,
    origin: Instant,
    duration: Duration,
) -> tokio::task::JoinHandle<Vec<Operation>> {
    tokio::spawn(async move {
        let deadline = Instant::now() + duration;
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|w| tokio::spawn(run_client(w, origin, deadline)))
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            if let Ok(mut ops) = t.await {
                all.append(&mut ops);
            }
        }
        all
    })
}
