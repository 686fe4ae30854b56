//! What a scenario is: a deterministic program against one target that records an
//! observation (a transcript of every step's response, error or etcdctl output) and checks
//! its own assertions (etcd's behaviour, encoded). The runner diffs observations across targets.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use etcd_client::Client;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use thiserror::Error;

use crate::drivers::etcdctl::{self, CtlOutput};
use crate::drivers::gateway::{self, HttpResponse};
use crate::drivers::grpc;
use crate::servers::Cluster;

/// The areas of the catalogue, as the issue lists them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    Kv,
    Txn,
    Compaction,
    Watch,
    Lease,
    Members,
    Maintenance,
    Limits,
    Gateway,
    Etcdctl,
    Failures,
}

impl Area {
    pub const ALL: [Area; 11] = [
        Area::Kv,
        Area::Txn,
        Area::Compaction,
        Area::Watch,
        Area::Lease,
        Area::Members,
        Area::Maintenance,
        Area::Limits,
        Area::Gateway,
        Area::Etcdctl,
        Area::Failures,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Area::Kv => "kv",
            Area::Txn => "txn",
            Area::Compaction => "compaction",
            Area::Watch => "watch",
            Area::Lease => "lease",
            Area::Members => "members",
            Area::Maintenance => "maintenance",
            Area::Limits => "limits",
            Area::Gateway => "gateway",
            Area::Etcdctl => "etcdctl",
            Area::Failures => "failures",
        }
    }
}

/// What servers a scenario needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Topology {
    /// One member.
    Single,
    /// Three members.
    Three,
    /// Three members with extra flags (`--snapshot-count`), started by the suite only.
    ThreeWith(&'static [&'static str]),
    /// Three members whose peer traffic goes through fault proxies.
    ThreeProxied,
}

impl Topology {
    pub fn size(self) -> usize {
        match self {
            Topology::Single => 1,
            _ => 3,
        }
    }
}

/// Why a scenario did not pass.
#[derive(Debug, Error)]
pub enum ScenarioError {
    /// An assertion about the target's behaviour failed.
    #[error("{0}")]
    Check(String),
    /// The servers could not be started or reached.
    #[error("setup: {0}")]
    Setup(String),
    /// The scenario does not apply in this mode.
    #[error("skipped: {0}")]
    Skip(String),
}

impl From<crate::servers::ServerError> for ScenarioError {
    fn from(e: crate::servers::ServerError) -> Self {
        ScenarioError::Setup(e.to_string())
    }
}

impl From<std::io::Error> for ScenarioError {
    fn from(e: std::io::Error) -> Self {
        ScenarioError::Check(format!("io error: {e}"))
    }
}

/// Scenario result type.
pub type Res<T = ()> = Result<T, ScenarioError>;

/// The boxed future a scenario function returns.
pub type ScenarioFuture<'a> = Pin<Box<dyn Future<Output = Res> + Send + 'a>>;

/// One entry of the catalogue.
#[derive(Clone)]
pub struct Scenario {
    pub name: &'static str,
    pub area: Area,
    pub topology: Topology,
    pub about: &'static str,
    /// Part of the fast subset run in CI.
    pub fast: bool,
    pub run: for<'a> fn(&'a mut Ctx) -> ScenarioFuture<'a>,
}

/// Builds a catalogue entry: `sc(name, area, topology, about, fast, |c| Box::pin(f(c)))`.
pub fn sc(
    name: &'static str,
    area: Area,
    topology: Topology,
    about: &'static str,
    fast: bool,
    run: for<'a> fn(&'a mut Ctx) -> ScenarioFuture<'a>,
) -> Scenario {
    Scenario {
        name,
        area,
        topology,
        about,
        fast,
        run,
    }
}

/// One recorded step.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Step {
    pub label: String,
    pub data: Value,
}

/// The transcript of one scenario run.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct Observation {
    pub steps: Vec<Step>,
}

/// Everything a scenario may touch.
pub struct Ctx {
    /// Client URLs of the members, in member order.
    pub endpoints: Vec<String>,
    /// The servers when the suite started them (None with `--endpoints`).
    pub cluster: Option<Cluster>,
    pub etcdctl_bin: PathBuf,
    pub obs: Observation,
    pub rng: StdRng,
    pub seed: u64,
    /// The store revision when the scenario began (1 on a fresh server).
    pub base_rev: i64,
    /// A temp dir for files a scenario writes (snapshots).
    pub scratch: tempfile::TempDir,
    /// Fault proxies on peer traffic (`Topology::ThreeProxied` only).
    pub proxies: Option<crate::faults::PeerProxies>,
}

impl Ctx {
    pub fn new(
        endpoints: Vec<String>,
        cluster: Option<Cluster>,
        etcdctl_bin: PathBuf,
        seed: u64,
    ) -> Res<Ctx> {
        let scratch = tempfile::Builder::new()
            .prefix("ketch-conformance-scratch-")
            .tempdir()
            .map_err(|e| ScenarioError::Setup(e.to_string()))?;
        Ok(Ctx {
            endpoints,
            cluster,
            etcdctl_bin,
            obs: Observation::default(),
            rng: StdRng::seed_from_u64(seed),
            seed,
            base_rev: 1,
            scratch,
            proxies: None,
        })
    }

    /// The revision after `n` more writes than at the scenario's start.
    pub fn r(&self, n: i64) -> i64 {
        self.base_rev + n
    }

    pub fn record(&mut self, label: impl Into<String>, data: Value) {
        self.obs.steps.push(Step {
            label: label.into(),
            data,
        });
    }

    /// A gRPC client to member 0.
    pub async fn client(&self) -> Res<Client> {
        self.client_at(0).await
    }

    /// A gRPC client to member `i` only.
    pub async fn client_at(&self, i: usize) -> Res<Client> {
        grpc::connect(&self.endpoints[i..=i])
            .await
            .map_err(|e| ScenarioError::Setup(format!("connect {}: {e}", self.endpoints[i])))
    }

    /// The cluster, or a skip when the suite did not start the servers.
    pub fn cluster(&mut self) -> Res<&mut Cluster> {
        self.cluster
            .as_mut()
            .ok_or_else(|| ScenarioError::Skip("needs servers started by the suite".into()))
    }

    /// Runs etcdctl against member `i` and records its output.
    pub async fn ctl_at(&mut self, i: usize, line: &str, stdin: Option<&str>) -> Res<CtlOutput> {
        let args = etcdctl::split_args(line);
        let endpoint = self.endpoints[i].clone();
        self.ctl_args(&endpoint, &args, stdin).await
    }

    /// Runs etcdctl with explicit args and endpoints and records its output.
    pub async fn ctl_args(
        &mut self,
        endpoints: &str,
        args: &[String],
        stdin: Option<&str>,
    ) -> Res<CtlOutput> {
        let out = etcdctl::run(&self.etcdctl_bin, endpoints, args, stdin).await?;
        let stdout_json: Option<Value> = serde_json::from_str(&out.stdout).ok();
        let data = json!({
            "args": out.args,
            "code": out.code,
            "stdout": if stdout_json.is_some() { Value::Null } else { json!(out.stdout) },
            "stdout_json": stdout_json,
            "stderr": out.stderr,
        });
        self.record("etcdctl", data);
        Ok(out)
    }

    /// Runs etcdctl against member 0.
    pub async fn ctl(&mut self, line: &str) -> Res<CtlOutput> {
        self.ctl_at(0, line, None).await
    }

    /// Runs etcdctl and checks it exits 0 printing exactly `stdout` (trailing newline ignored).
    pub async fn ctl_ok(&mut self, line: &str, stdout: &str) -> Res<CtlOutput> {
        let out = self.ctl(line).await?;
        expect_ctl_ok(&out, stdout)?;
        Ok(out)
    }

    /// Runs etcdctl and checks it fails with `stderr` containing `needle`.
    pub async fn ctl_err(&mut self, line: &str, needle: &str) -> Res<CtlOutput> {
        let out = self.ctl(line).await?;
        expect_ctl_err(&out, needle)?;
        Ok(out)
    }

    /// An HTTP request to member `i`'s client port, recorded.
    pub async fn http_at(
        &mut self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Res<HttpResponse> {
        let addr = self.endpoints[i].trim_start_matches("http://").to_string();
        let resp = gateway::request(&addr, method, path, body).await?;
        let body_json = resp.json();
        let data = json!({
            "request": format!("{method} {path}"),
            "request_body": body,
            "status": resp.status,
            "body": if body_json.is_null() { json!(resp.body) } else { body_json },
        });
        self.record("http", data);
        Ok(resp)
    }

    pub async fn http(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Res<HttpResponse> {
        self.http_at(0, method, path, body).await
    }

    /// A path inside the scratch dir.
    pub fn scratch_path(&self, name: &str) -> String {
        self.scratch.path().join(name).display().to_string()
    }
}

/// Checks an etcdctl run exited 0 and printed `stdout` (trailing whitespace ignored).
pub fn expect_ctl_ok(out: &CtlOutput, stdout: &str) -> Res {
    if out.code != Some(0) {
        return Err(ScenarioError::Check(format!(
            "etcdctl {:?} exited {:?}: {}",
            out.args,
            out.code,
            out.stderr.trim()
        )));
    }
    if out.stdout.trim_end() != stdout.trim_end() {
        return Err(ScenarioError::Check(format!(
            "etcdctl {:?}: expected stdout {:?}, got {:?}",
            out.args, stdout, out.stdout
        )));
    }
    Ok(())
}

/// Checks an etcdctl run failed and its stderr contains `needle`.
pub fn expect_ctl_err(out: &CtlOutput, needle: &str) -> Res {
    if out.code == Some(0) || !out.stderr.contains(needle) {
        return Err(ScenarioError::Check(format!(
            "etcdctl {:?}: expected failure with {:?}, got code {:?} stdout {:?} stderr {:?}",
            out.args, needle, out.code, out.stdout, out.stderr
        )));
    }
    Ok(())
}

/// Fails the scenario with a message unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err($crate::scenario::ScenarioError::Check(format!($($fmt)+)));
        }
    };
}

/// Fails the scenario unless `left == right`, naming what was compared.
#[macro_export]
macro_rules! check_eq {
    ($left:expr, $right:expr, $what:expr) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err($crate::scenario::ScenarioError::Check(format!(
                "{}: expected {:?}, got {:?}",
                $what, r, l
            )));
        }
    }};
}

/// Unwraps a gRPC result or fails the scenario with the error.
pub fn ok<T>(r: Result<T, etcd_client::Error>, what: &str) -> Res<T> {
    r.map_err(|e| ScenarioError::Check(format!("{what}: unexpected error {e}")))
}

/// Expects a gRPC error with this code and message (exact).
pub fn expect_grpc_err<T>(r: &Result<T, etcd_client::Error>, code: &str, message: &str) -> Res {
    match r {
        Ok(_) => Err(ScenarioError::Check(format!(
            "expected {code} {message:?}, got success"
        ))),
        Err(e) => {
            let (c, m) = (grpc::err_code(e), grpc::err_message(e));
            if c == code && m == message {
                Ok(())
            } else {
                Err(ScenarioError::Check(format!(
                    "expected {code} {message:?}, got {c} {m:?}"
                )))
            }
        }
    }
}
