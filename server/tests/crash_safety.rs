//! Crash safety: concurrent writers put unique keys into a ketch process that is SIGKILLed at a
//! random moment, many rounds on the same data dir; after each restart every acknowledged write
//! must be there with the value and revision it was acknowledged with, and every key present
//! must be one a writer attempted with the value it attempted (nothing invented).
//! Seeded: KETCH_CRASH_SEED reproduces a run, KETCH_CRASH_ROUNDS sets the round count.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{ServerProcess, free_port, ketch_bin};
use etcd_client::{Client, GetOptions};
use rand::{Rng, SeedableRng, rngs::StdRng};

const WRITERS: usize = 8;

#[derive(Default, Clone)]
struct Ledger {
    /// key -> value attempted (acknowledged or not).
    attempted: HashMap<String, String>,
    /// key -> revision at which the write was acknowledged.
    acked: HashMap<String, i64>,
}

async fn writer(endpoint: String, id: usize, round: usize, ledger: Arc<Mutex<Ledger>>) {
    let Ok(mut client) = Client::connect([endpoint], None).await else {
        return;
    };
    for seq in 0.. {
        let key = format!("r{round}/w{id}/{seq:06}");
        let value = format!("v-{round}-{id}-{seq}");
        ledger
            .lock()
            .unwrap()
            .attempted
            .insert(key.clone(), value.clone());
        match client.put(key.clone(), value, None).await {
            Ok(resp) => {
                let rev = resp.header().expect("put response has a header").revision();
                ledger.lock().unwrap().acked.insert(key, rev);
            }
            Err(_) => return, // the server died under us: outcome unknown, as intended
        }
    }
}

async fn verify(endpoint: &str, ledger: &Ledger) {
    let mut client = Client::connect([endpoint], None)
        .await
        .expect("connect after restart");
    let all = client
        .get("r", Some(GetOptions::new().with_prefix()))
        .await
        .expect("reading everything back");
    let mut present = HashMap::new();
    for kv in all.kvs() {
        let key = kv.key_str().unwrap().to_string();
        let value = kv.value_str().unwrap().to_string();
        let expected = ledger
            .attempted
            .get(&key)
            .unwrap_or_else(|| panic!("key {key} was never written"));
        assert_eq!(
            &value, expected,
            "key {key} holds a value never written to it"
        );
        present.insert(key, kv.mod_revision());
    }
    for (key, rev) in &ledger.acked {
        let got = present
            .get(key)
            .unwrap_or_else(|| panic!("acknowledged write {key}@{rev} lost"));
        assert_eq!(
            got, rev,
            "acknowledged write {key} has revision {got}, was acked at {rev}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_writes_survive_sigkill() {
    let seed: u64 = std::env::var("KETCH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let rounds: usize = std::env::var("KETCH_CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    eprintln!("crash_safety seed {seed} rounds {rounds} (KETCH_CRASH_SEED={seed} reproduces)");
    let mut rng = StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (client_port, peer_port) = (free_port(), free_port());
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let mut total_acked = 0;
    for round in 0..rounds {
        let mut server = ServerProcess::start_on(&ketch_bin(), &data, client_port, peer_port, &[]);
        server.wait_healthy(Duration::from_secs(20));
        let snapshot = ledger.lock().unwrap().clone();
        verify(&server.endpoint(), &snapshot).await;
        let tasks: Vec<_> = (0..WRITERS)
            .map(|id| tokio::spawn(writer(server.endpoint(), id, round, ledger.clone())))
            .collect();
        tokio::time::sleep(Duration::from_millis(rng.random_range(100..1200))).await;
        server.kill9();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
        }
        let acked_now = ledger.lock().unwrap().acked.len();
        eprintln!("round {round}: {} writes acknowledged in total", acked_now);
        total_acked = acked_now;
    }
    assert!(
        total_acked > 0,
        "no write was ever acknowledged: the test proved nothing"
    );
    let mut server = ServerProcess::start_on(&ketch_bin(), &data, client_port, peer_port, &[]);
    server.wait_healthy(Duration::from_secs(20));
    let snapshot = ledger.lock().unwrap().clone();
    verify(&server.endpoint(), &snapshot).await;
}
