//! ketch: an etcd v3 compatible key-value store. Parses etcd's flags, checks the host, starts one
//! glommio executor per shard (shard 0 also runs raft), serves the client port, and shuts down
//! cleanly on SIGTERM/SIGINT.

mod alarm;
mod authority;
mod errors;
mod grpc;
mod http;
mod identity;
mod leader_probe;
mod lease;
mod metrics;
mod node;
mod notify;
mod peer;
mod rt;
mod shards;
mod snapshot_export;
mod tls;
mod version;
mod watch;

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use ketch_config::{Config, ConfigError, LogLevel, NoticeLevel};
use nix::sys::signal::{SigSet, Signal};

use crate::identity::Identity;
use crate::node::{Limits, Node};
use crate::shards::{ClientAddr, ShardPlan};
use crate::tls::ClientTls;

/// How often the main thread checks whether the member is ready, for systemd.
const READY_POLL: std::time::Duration = std::time::Duration::from_millis(10);

fn main() -> ExitCode {
    let config = match Config::parse_from(std::env::args_os(), |k| std::env::var(k).ok()) {
        Ok(config) => config,
        Err(ConfigError::VersionRequested) => {
            print!("{}", ketch_config::version_text());
            return ExitCode::SUCCESS;
        }
        Err(e @ ConfigError::HelpRequested) => {
            eprint!("{}", e.stderr_text());
            print!("{}", ketch_config::help_text());
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("{}", e.stderr_text());
            return ExitCode::from(e.exit_code() as u8);
        }
    };
    init_logging(&config);
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(config: &Config) {
    let level = match config.log_level {
        LogLevel::Debug => "debug",
        LogLevel::Info => "info",
        LogLevel::Warn => "warn",
        LogLevel::Error | LogLevel::DPanic | LogLevel::Panic | LogLevel::Fatal => "error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(level))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    for warning in ketch_config::unrecognized_env_warnings(config, std::env::vars()) {
        tracing::warn!("{warning}");
    }
    for notice in &config.notices {
        match notice.level {
            NoticeLevel::Info => tracing::info!("{}", notice.message),
            NoticeLevel::Warn => tracing::warn!("{}", notice.message),
        }
    }
}

/// Resolves a listen URL as Go's net.Listen does for etcd: the first address of the host,
/// IPv4 preferred. `what` names the flag in errors.
pub(crate) fn resolve_listen_url(
    url: &ketch_config::EtcdUrl,
    what: &str,
) -> anyhow::Result<SocketAddr> {
    let host_port = url.host_port();
    let mut addrs: Vec<SocketAddr> = host_port
        .to_socket_addrs()
        .with_context(|| format!("resolving {what} {host_port}"))?
        .collect();
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs
        .first()
        .copied()
        .with_context(|| format!("{host_port} resolves to nothing"))
}

/// The client listen addresses; https URLs serve `tls`.
fn listen_addrs(config: &Config, tls: Option<&ClientTls>) -> anyhow::Result<Vec<ClientAddr>> {
    let mut out = Vec::new();
    for url in &config.listen_client_urls {
        let addr = resolve_listen_url(url, "listen-client-url")?;
        if !out.iter().any(|c: &ClientAddr| c.addr == addr) {
            let tls = tls.filter(|_| url.is_tls()).cloned();
            out.push(ClientAddr { addr, tls });
        }
    }
    Ok(out)
}

fn raft_options(config: &Config, identity: &Identity) -> ketch_raft::RaftOptions {
    let members: BTreeMap<u64, ketch_raft::Member> = identity
        .members
        .iter()
        .map(|m| {
            let member = ketch_raft::Member {
                name: m.name.clone(),
                peer_urls: m.peer_urls.clone(),
                client_urls: m.client_urls.clone(),
            };
            (m.id, member)
        })
        .collect();
    // glommio opens directories by absolute path only.
    let member_dir = identity::member_dir(config);
    let member_dir = std::path::absolute(&member_dir).unwrap_or(member_dir);
    let mut opts =
        ketch_raft::RaftOptions::new(member_dir, identity.member_id, identity.cluster_id, members);
    opts.heartbeat_ms = config.heartbeat_interval_ms;
    opts.election_timeout_ms = config.election_timeout_ms;
    opts.snapshot_count = config.snapshot_count;
    opts.join_existing = config.initial_cluster_state == ketch_config::ClusterState::Existing;
    let client_urls = config.advertise_client_urls.iter().map(ToString::to_string);
    opts.publish = Some((config.name.clone(), client_urls.collect()));
    opts
}

fn run(config: Config) -> anyhow::Result<()> {
    let client_tls = tls::client_tls(&config)?;
    let plan = ShardPlan {
        shards: config.effective_shards() as usize,
        io_memory_bytes: config.io_memory_bytes as usize,
        client_addrs: listen_addrs(&config, client_tls.as_ref())?,
    };
    shards::check_memlock(&plan)?;
    shards::probe_bind(&plan.client_addrs)?;
    let peer_tls = tls::peer_tls(&config)?;
    let peer_addrs = peer::listen_addrs(&config, peer_tls.server.as_ref())?;
    let identity = identity::load_or_bootstrap(&config, peer_tls.client.as_ref())?;
    for (key, value) in ketch_config::startup_summary(
        &config,
        ketch_config::Id(identity.member_id),
        ketch_config::Id(identity.cluster_id),
    ) {
        tracing::info!("{key}: {value}");
    }

    // Block SIGTERM/SIGINT before any thread starts so every thread inherits the mask and the
    // main thread alone receives them in `wait`.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.thread_block().context("blocking SIGTERM/SIGINT")?;

    let limits = Limits {
        election_timeout: std::time::Duration::from_millis(config.election_timeout_ms),
        max_request_bytes: config.max_request_bytes as usize,
        max_txn_ops: config.max_txn_ops as usize,
        quota_bytes: config.effective_quota_backend_bytes().map(|q| q as i64),
        bcrypt_cost: config.bcrypt_cost as u32,
    };
    lease::state::set_auth_config(ketch_auth::AuthConfig {
        token_ttl: std::time::Duration::from_secs(config.auth_token_ttl),
    });
    let raft_options = raft_options(&config, &identity);
    let (cluster_id, member_id) = (identity.cluster_id, identity.member_id);
    let watch_hub = watch::WatchHub::new(config.experimental.watch_progress_notify_interval);
    let lessor = lease::Lessor::new(
        member_id,
        config.heartbeat_interval_ms,
        config.election_timeout_ms,
    );

    let (node_tx, node_rx) = std::sync::mpsc::sync_channel::<anyhow::Result<Arc<Node>>>(1);
    let (bound_tx, bound_rx) = std::sync::mpsc::sync_channel::<anyhow::Result<()>>(plan.shards);
    let mut stops = Vec::with_capacity(plan.shards);
    let mut handles = Vec::with_capacity(plan.shards);

    let (stop0, stop0_rx) = shards::stop_channel();
    stops.push(stop0);
    let addrs = plan.client_addrs.clone();
    let bound = bound_tx.clone();
    let peer_recv_dir = raft_options.data_dir.join("peer-recv");
    let probe_tls = peer_tls.client.clone();
    let shard0 = shards::executor(0, plan.io_memory_bytes)
        .spawn(move || async move {
            let peer_listeners = match peer::bind(&peer_addrs) {
                Ok(listeners) => listeners,
                Err(e) => {
                    let _ = node_tx.send(Err(e));
                    return;
                }
            };
            let started = ketch_raft::start::<lease::ReplicatedStore, _>(
                raft_options,
                ketch_raft::PeerNetwork::new(member_id, cluster_id).with_tls(peer_tls.client),
                Some(watch_hub.sink()),
            )
            .await;
            let (raft, raft_node) = match started {
                Ok(started) => started,
                Err(e) => {
                    let _ = node_tx.send(Err(anyhow::anyhow!("starting raft: {e}")));
                    return;
                }
            };
            let node = Node::new(
                cluster_id,
                member_id,
                limits,
                raft.clone(),
                watch_hub,
                lessor,
            );
            let (peer_stop, peer_stop_rx) = flume::bounded::<()>(1);
            let peers = glommio::spawn_local(peer::serve_peers(
                raft_node.peer_side(),
                node.clone(),
                peer_listeners,
                cluster_id,
                peer_recv_dir,
                peer_stop_rx,
            ));
            let _ = node_tx.send(Ok(node.clone()));
            let removal = glommio::spawn_local(peer::stop_when_removed(node.clone()));
            let (lease_stop, lease_stop_rx) = flume::bounded::<()>(1);
            let lease_loop = glommio::spawn_local(lease::run(node.clone(), lease_stop_rx));
            match shards::bind_listeners(&addrs) {
                Ok(listeners) => {
                    let _ = bound.send(Ok(()));
                    shards::serve(node.clone(), grpc::routes(&node), listeners, stop0_rx).await;
                }
                Err(e) => {
                    let _ = bound.send(Err(e));
                }
            }
            drop(lease_stop);
            lease_loop.await;
            removal.cancel().await;
            raft.shutdown().await;
            raft_node.stopped().await;
            // Peers are served until raft has stopped, so forwarded writes in flight during
            // the drain still reach this member.
            drop(peer_stop);
            peers.await;
        })
        .map_err(|e| anyhow::anyhow!("starting shard 0: {e}"))?;
    handles.push(shard0);

    let node = node_rx.recv().context("shard 0 ended during startup")??;
    leader_probe::spawn(
        node.clone(),
        probe_tls,
        std::time::Duration::from_millis(config.election_timeout_ms),
    );
    for shard in 1..plan.shards {
        let (stop, stop_rx) = shards::stop_channel();
        stops.push(stop);
        let node = node.clone();
        let addrs = plan.client_addrs.clone();
        let bound = bound_tx.clone();
        let handle = shards::executor(shard, plan.io_memory_bytes)
            .spawn(move || async move {
                match shards::bind_listeners(&addrs) {
                    Ok(listeners) => {
                        let _ = bound.send(Ok(()));
                        shards::serve(node.clone(), grpc::routes(&node), listeners, stop_rx).await;
                    }
                    Err(e) => {
                        let _ = bound.send(Err(e));
                    }
                }
            })
            .map_err(|e| anyhow::anyhow!("starting shard {shard}: {e}"))?;
        handles.push(handle);
    }
    // Every shard must be listening before the member calls itself ready; any bind failure
    // stops the whole process, as a failed listen stops etcd.
    let mut startup = Ok(());
    for _ in 0..plan.shards {
        if let Err(e) = bound_rx.recv().context("a shard ended during startup")? {
            startup = Err(e);
            break;
        }
    }
    if let Err(e) = startup {
        stop_all(&stops, handles);
        return Err(e);
    }
    // As etcd: the member serves clients, says so and tells systemd READY=1 once it has
    // published itself (a member of a cluster without quorum never becomes ready). The main
    // thread meanwhile waits for signals.
    let ready_node = node.clone();
    let urls = config.listen_client_urls.clone();
    std::thread::spawn(move || {
        while !ready_node.raft.is_published() {
            std::thread::sleep(READY_POLL);
        }
        log_serving(&urls);
        notify::ready();
    });

    let signal = signals.wait().context("waiting for signals")?;
    tracing::info!("received {signal}, shutting down");
    notify::stopping();
    stop_all(&stops, handles);
    drop(node);
    tracing::info!("stopped");
    Ok(())
}

fn log_serving(urls: &[ketch_config::EtcdUrl]) {
    for url in urls {
        tracing::info!("ready to serve client requests");
        if url.is_tls() {
            tracing::info!("serving client requests on {}", url.host_port());
        } else {
            tracing::info!(
                "serving insecure client requests on {}, this is strongly discouraged!",
                url.host_port()
            );
        }
    }
}

/// Stops shards 1.. first and shard 0 (raft) last, so raft outlives every request it may
/// serve, and waits for each.
fn stop_all(stops: &[shards::StopSender], handles: Vec<glommio::ExecutorJoinHandle<()>>) {
    for stop in stops.iter().rev() {
        let _ = stop.send(());
    }
    for handle in handles.into_iter().rev() {
        if let Err(e) = handle.join() {
            tracing::error!("shard failed: {e}");
        }
    }
}
