//! A member stopped and started again at once, on the same ports and data dir, comes up
//! every time, as etcd does: a ketch that just exited leaves its listening sockets to the
//! kernel's io_uring teardown for a few milliseconds, and a restart inside that window used
//! to fail "bind: address already in use" (3 of 8 quick restarts here). Alternates SIGTERM
//! and SIGKILL; each restart must become healthy and still hold the key written first.

mod common;

use std::time::Duration;

use common::{ServerProcess, etcdctl_output, free_port, ketch_bin};

const RESTARTS: usize = 12;
const HEALTHY_WITHIN: Duration = Duration::from_secs(20);

#[test]
fn a_member_restarted_at_once_on_its_ports_comes_up_every_time() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("m");
    let (client_port, peer_port) = (free_port(), free_port());
    let bin = ketch_bin();
    let mut server = ServerProcess::start_on(&bin, &data, client_port, peer_port, &[]);
    server.wait_healthy(HEALTHY_WITHIN);
    let put = etcdctl_output(&server.endpoint(), &["put", "k", "v"], None);
    assert_eq!(
        String::from_utf8_lossy(&put.stdout),
        "OK\n",
        "first put: {put:?}"
    );
    for i in 0..RESTARTS {
        if i % 2 == 0 {
            assert_eq!(
                server.terminate(Duration::from_secs(10)),
                Some(0),
                "SIGTERM exit"
            );
        } else {
            server.kill9();
        }
        server = ServerProcess::start_on(&bin, &data, client_port, peer_port, &[]);
        server.wait_healthy(HEALTHY_WITHIN);
        let got = etcdctl_output(&server.endpoint(), &["get", "k"], None);
        let out = String::from_utf8_lossy(&got.stdout);
        assert_eq!(out, "k\nv\n", "restart {i}: get answered {got:?}");
    }
}
