//! The peer transport: openraft's RPCs between ketch members over HTTP/2 on the peer port
//! (`--listen-peer-urls`), on the raft executor. [`PeerNetwork`] is the client half (give it
//! to `start`), [`serve_peers`] the server half (run it on the raft executor with the
//! `RaftNode`'s `peer_side()`). docs/cluster.md describes the wire.

pub mod allowed;
pub mod client;
pub mod io;
pub mod server;
pub mod tls;
pub mod wire;

pub use client::{
    CONNECT_TIMEOUT, MAX_IN_FLIGHT_PER_PEER, PeerClient, PeerError, PeerNetwork,
    RECONNECT_BACKOFF_MAX, RECONNECT_BACKOFF_MIN, RPC_TIMEOUT_MIN,
};
pub use server::{MAX_PEER_CONNECTIONS, PeerApp, serve_peers, serve_peers_with_app};
