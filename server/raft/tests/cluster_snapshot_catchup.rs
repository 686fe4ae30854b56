//! A member that lagged past the leader's purged log is caught up by a snapshot sent over the
//! peer transport: with a snapshot every 100 entries and 10 entries kept below it, a stopped
//! follower misses 300 writes, is restarted, and must end with the leader's snapshot file
//! and a store equal to the others (`hash_kv`).

mod cluster_common;

use std::path::Path;
use std::time::{Duration, Instant};

use cluster_common::*;

const CONVERGE_WAIT: Duration = Duration::from_secs(15);

/// Names of the snapshot files in `<data-dir>/snap/`, sorted.
fn snapshots(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join("snap"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".snap"))
        .collect();
    names.sort();
    names
}

/// The log index a snapshot file name `<term:016x>-<index:016x>.snap` covers.
fn snapshot_index(name: &str) -> u64 {
    let stem = name.strip_suffix(".snap").unwrap();
    u64::from_str_radix(stem.split_once('-').unwrap().1, 16).unwrap()
}

#[test]
fn lagging_member_is_caught_up_by_snapshot() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let group = members(&ports);
    let start_member = |i: usize| {
        let mut o = options(dirs[i].path(), i as u64 + 1, &group);
        o.snapshot_count = 100;
        o.snapshot_catchup_entries = 10;
        ClusterMember::start(o, ports[i])
    };
    let mut ms: Vec<Option<ClusterMember>> = (0..3).map(|i| Some(start_member(i))).collect();
    let leader = wait_leader(&refs(&ms), LEADER_WAIT);
    write_puts(&refs(&ms), "a", 20);
    wait_converged(&refs(&ms), CONVERGE_WAIT);

    let lagging = (0..3).find(|i| *i != leader).unwrap();
    let lag_index = ms[lagging].as_ref().unwrap().handle.status().last_log_index;
    ms[lagging].take().unwrap().stop();
    write_puts(&refs(&ms), "b", 300);
    let leader_snap = wait_for_snapshot(dirs[leader].path(), lag_index + 100);
    // The leader kept only 10 entries below its snapshot: the lagging member's next entry
    // is gone from its log, so only a snapshot can catch it up.
    assert!(snapshot_index(&leader_snap) - 10 > lag_index + 1);

    ms[lagging] = Some(start_member(lagging));
    let (_, rev) = wait_converged(&refs(&ms), CONVERGE_WAIT);
    assert_eq!(rev, 321, "320 puts from revision 1");
    // The member's next entry was purged on the leader (asserted above), so it can only hold
    // data past it by installing a leader snapshot. Which one depends on timing: the newest
    // file on the leader's disk may not yet be the snapshot openraft sends.
    let received = snapshots(dirs[lagging].path());
    assert!(
        received.iter().any(|s| snapshot_index(s) > lag_index + 1),
        "lagging member (last index {lag_index}) holds {received:?}; leader's newest is {leader_snap}"
    );
    // And it keeps following: a write after the catch-up reaches it.
    write_puts(&refs(&ms), "c", 5);
    assert_eq!(wait_converged(&refs(&ms), CONVERGE_WAIT).1, 326);
}

/// Waits for the newest snapshot in `data_dir` to cover at least `index`; returns its name.
fn wait_for_snapshot(data_dir: &Path, index: u64) -> String {
    let start = Instant::now();
    loop {
        if let Some(newest) = snapshots(data_dir)
            .pop()
            .filter(|n| snapshot_index(n) >= index)
        {
            return newest;
        }
        assert!(start.elapsed() < CONVERGE_WAIT, "no snapshot past {index}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn refs(ms: &[Option<ClusterMember>]) -> Vec<&ClusterMember> {
    ms.iter().flatten().collect()
}
