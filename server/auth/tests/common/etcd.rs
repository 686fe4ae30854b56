//! A real etcd 3.4 (`/usr/bin/etcd`) on free local ports with a temp data dir, killed by PID
//! on drop, spoken to through its JSON gateway over plain HTTP/1.0 (std only: one request per
//! connection, so no chunked bodies).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ETCD_BIN: &str = "/usr/bin/etcd";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

pub struct EtcdServer {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // Only the process this guard started, by its PID.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// An answer from the gateway: the JSON body, or etcd's error message and gRPC code.
pub type Answer = Result<serde_json::Value, (String, i64)>;

impl EtcdServer {
    /// Starts etcd (bcrypt at its minimum cost, to keep the test fast) and waits until the
    /// gateway answers, bounded by `STARTUP_TIMEOUT`.
    pub fn start() -> EtcdServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client_port, peer_port) = (free_port(), free_port());
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log file");
        let child = Command::new(ETCD_BIN)
            .args(["--name", "auth-test", "--data-dir"])
            .arg(dir.path().join("data"))
            .args([
                "--listen-client-urls",
                &client_url,
                "--advertise-client-urls",
                &client_url,
            ])
            .args([
                "--listen-peer-urls",
                &peer_url,
                "--initial-advertise-peer-urls",
                &peer_url,
            ])
            .args(["--initial-cluster", &format!("auth-test={peer_url}")])
            .args(["--bcrypt-cost", "4"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start /usr/bin/etcd (apt-get install etcd-server)");
        let server = EtcdServer {
            child,
            addr: format!("127.0.0.1:{client_port}"),
            _dir: dir,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while server.try_post("/v3/auth/user/list", "{}", None).is_err() {
            assert!(
                Instant::now() < deadline,
                "etcd did not start within {STARTUP_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// POSTs a JSON body to the gateway, with a token if given.
    pub fn post(&self, path: &str, body: &str, token: Option<&str>) -> Answer {
        self.try_post(path, body, token)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    fn try_post(&self, path: &str, body: &str, token: Option<&str>) -> std::io::Result<Answer> {
        let mut conn = TcpStream::connect(&self.addr)?;
        conn.set_read_timeout(Some(REQUEST_TIMEOUT))?;
        let auth = token
            .map(|t| format!("Authorization: {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST {path} HTTP/1.0\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n",
            self.addr,
            body.len()
        );
        conn.write_all(head.as_bytes())?;
        conn.write_all(body.as_bytes())?;
        let mut raw = Vec::new();
        conn.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw);
        let (_, json) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| std::io::Error::other(format!("no body in {text:?}")))?;
        let value: serde_json::Value = serde_json::from_str(json)
            .map_err(|e| std::io::Error::other(format!("{e}: {json:?}")))?;
        Ok(match value.get("error") {
            Some(msg) => Err((
                msg.as_str().unwrap_or_default().to_string(),
                value["code"].as_i64().unwrap_or(-1),
            )),
            None => Ok(value),
        })
    }
}

/// Standard base64 with padding, as the gateway writes bytes fields.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_matches_known_values() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(b"\0"), "AA==");
    assert_eq!(base64(b"ab"), "YWI=");
    assert_eq!(base64(b"foo"), "Zm9v");
    assert_eq!(base64(b"\\x00"), "XHgwMA==");
}
