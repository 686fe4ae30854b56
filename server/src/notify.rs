//! systemd's readiness protocol (`sd_notify`). Under `Type=notify`, systemd passes the path of
//! a unix datagram socket in `NOTIFY_SOCKET` (a leading `@` names an abstract socket); ketch
//! sends `READY=1` once every shard serves the client port and `STOPPING=1` when shutdown
//! begins, as etcd does. Without `NOTIFY_SOCKET` nothing is sent.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// The environment variable systemd sets for `Type=notify` services.
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// Sends `state` (e.g. `READY=1`) to systemd. Returns whether a socket was configured.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os(NOTIFY_SOCKET_ENV) else {
        return Ok(false);
    };
    let socket = UnixDatagram::unbound()?;
    let bytes = path.as_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        let addr = <SocketAddr as std::os::linux::net::SocketAddrExt>::from_abstract_name(name)?;
        socket.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        socket.send_to(state.as_bytes(), &path)?;
    }
    Ok(true)
}

/// Tells systemd the member serves; a failure is logged, not fatal (etcd does the same).
pub fn ready() {
    report("READY=1");
}

/// Tells systemd shutdown has begun.
pub fn stopping() {
    report("STOPPING=1");
}

fn report(state: &str) {
    match notify(state) {
        Ok(true) => tracing::info!("notified systemd: {state}"),
        Ok(false) => {}
        Err(e) => tracing::warn!("notifying systemd ({state}) failed: {e}"),
    }
}
