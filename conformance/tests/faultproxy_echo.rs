//! The fault proxy, between real TCP clients and a real echo server on loopback: forwards and
//! counts bytes, and each fault (blackhole, refuse, delay with order kept, drop/reset) changes
//! what the client observes at runtime, and lifting it restores service.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ketch_conformance::faultproxy::{Fault, FaultProxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const QUIET: Duration = Duration::from_millis(300);
const PATIENCE: Duration = Duration::from_secs(3);

/// An echo server that stops when dropped.
struct Echo {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo_server() -> Echo {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Echo { addr, task }
}

async fn setup() -> (Echo, FaultProxy) {
    let echo = echo_server().await;
    let proxy = FaultProxy::start_seeded("127.0.0.1:0".parse().expect("addr"), echo.addr, 7)
        .await
        .expect("start proxy");
    (echo, proxy)
}

async fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).await.expect("write");
    let mut buf = vec![0u8; msg.len()];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut buf))
        .await
        .expect("echo within patience")
        .expect("read echo");
    buf
}

/// Does a read on `stream` see the connection end (EOF or reset) within `PATIENCE`?
async fn sees_close(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        match tokio::time::timeout(PATIENCE, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
    false
}

async fn silent(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    match tokio::time::timeout(QUIET, stream.read(&mut buf)).await {
        Err(_) => true,
        Ok(r) => panic!("expected silence, got {r:?}"),
    }
}

#[tokio::test]
async fn forwards_and_counts_bytes() {
    let (_echo, proxy) = setup().await;
    let mut client = TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect");
    let payload: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (mut r, mut w) = client.split();
    let writer = async { w.write_all(&payload).await.expect("write") };
    let mut back = vec![0u8; payload.len()];
    let reader = async { r.read_exact(&mut back).await.expect("read back") };
    tokio::time::timeout(PATIENCE, async { tokio::join!(writer, reader) })
        .await
        .expect("in time");
    assert_eq!(back, payload);
    let stats = proxy.stats();
    assert_eq!(stats.bytes_to_upstream, payload.len() as u64);
    assert_eq!(stats.bytes_to_client, payload.len() as u64);
    assert_eq!(stats.connections_accepted, 1);
}

#[tokio::test]
async fn blackhole_swallows_both_ways_and_healing_reconnects() {
    let (_echo, proxy) = setup().await;
    let mut old = TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect");
    assert_eq!(round_trip(&mut old, b"before").await, b"before");
    proxy.set_fault(Fault::Blackhole);
    old.write_all(b"lost").await.expect("writes still succeed");
    assert!(
        silent(&mut old).await,
        "nothing comes back through a blackhole"
    );
    let mut during = TcpStream::connect(proxy.local_addr())
        .await
        .expect("accepted during blackhole");
    during.write_all(b"also lost").await.expect("write");
    assert!(silent(&mut during).await);
    assert!(proxy.stats().bytes_blackholed >= 13, "{:?}", proxy.stats());
    proxy.set_fault(Fault::None);
    assert!(
        sees_close(&mut old).await,
        "a connection that lost bytes is closed on heal"
    );
    assert!(sees_close(&mut during).await);
    let mut fresh = TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect after heal");
    assert_eq!(round_trip(&mut fresh, b"after").await, b"after");
}

#[tokio::test]
async fn refuse_closes_connections_and_refuses_new_ones() {
    let (_echo, proxy) = setup().await;
    let mut old = TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect");
    assert_eq!(round_trip(&mut old, b"hi").await, b"hi");
    proxy.set_fault(Fault::Refuse);
    assert!(sees_close(&mut old).await, "open connections are closed");
    let deadline = Instant::now() + PATIENCE;
    let refused = loop {
        match TcpStream::connect(proxy.local_addr()).await {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break true,
            _ if Instant::now() > deadline => break false,
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    assert!(refused, "new connections are refused");
    proxy.set_fault(Fault::None);
    let deadline = Instant::now() + PATIENCE;
    let mut fresh = loop {
        match TcpStream::connect(proxy.local_addr()).await {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => panic!("port not reopened: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    };
    assert_eq!(round_trip(&mut fresh, b"back").await, b"back");
}

#[tokio::test]
async fn delay_holds_every_chunk_and_keeps_order() {
    let (_echo, proxy) = setup().await;
    let mut client = TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect");
    assert_eq!(round_trip(&mut client, b"warm").await, b"warm");
    let delay = Duration::from_millis(250);
    proxy.set_fault(Fault::Delay(delay));
    let started = Instant::now();
    assert_eq!(round_trip(&mut client, b"slow").await, b"slow");
    let rtt = started.elapsed();
    assert!(rtt >= delay * 2, "delayed each way: round trip {rtt:?}");
    assert!(
        rtt < delay * 2 + Duration::from_secs(1),
        "not much more: {rtt:?}"
    );
    // Many small writes arrive in order.
    let (mut r, mut w) = client.split();
    let sent: Vec<u8> = (0..=255u8).collect();
    let writer = async {
        for b in &sent {
            w.write_all(&[*b]).await.expect("write");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let mut got = vec![0u8; sent.len()];
    let reader = async { r.read_exact(&mut got).await.expect("read") };
    tokio::time::timeout(PATIENCE * 2, async { tokio::join!(writer, reader) })
        .await
        .expect("in time");
    assert_eq!(got, sent);
    proxy.set_fault(Fault::None);
    let started = Instant::now();
    assert_eq!(round_trip(&mut client, b"fast").await, b"fast");
    assert!(started.elapsed() < delay * 2, "no delay after healing");
}

#[tokio::test]
async fn drop_resets_connections_with_its_probability() {
    let (_echo, proxy) = setup().await;
    let mut open = TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect");
    assert_eq!(round_trip(&mut open, b"x").await, b"x");
    proxy.set_fault(Fault::Drop(0.0));
    assert_eq!(
        round_trip(&mut open, b"kept").await,
        b"kept",
        "probability 0 drops nothing"
    );
    proxy.set_fault(Fault::Drop(1.0));
    assert!(sees_close(&mut open).await, "the open connection is reset");
    let mut fresh = TcpStream::connect(proxy.local_addr())
        .await
        .expect("accepted");
    assert!(sees_close(&mut fresh).await, "a new connection is reset");
    assert!(proxy.stats().connections_killed >= 2);
    proxy.set_fault(Fault::None);
    let mut ok = TcpStream::connect(proxy.local_addr())
        .await
        .expect("connect");
    assert_eq!(round_trip(&mut ok, b"fine").await, b"fine");
}

#[tokio::test]
async fn stop_closes_everything() {
    let (_echo, proxy) = setup().await;
    let addr = proxy.local_addr();
    let mut open = TcpStream::connect(addr).await.expect("connect");
    assert_eq!(round_trip(&mut open, b"x").await, b"x");
    tokio::time::timeout(PATIENCE, proxy.stop())
        .await
        .expect("stops promptly");
    assert!(sees_close(&mut open).await);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "nobody listens after stop"
    );
}
