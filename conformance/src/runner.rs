//! Runs catalogue scenarios against targets: starts fresh servers per scenario (or uses given
//! endpoints), runs the scenario under a time bound, normalises its observation, and in
//! differential mode reports the first difference between targets.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::faults::PeerProxies;
use crate::normalize::{Normalizer, first_difference};
use crate::scenario::{Ctx, Observation, Scenario, ScenarioError, Topology};
use crate::servers::{Cluster, ClusterOptions, ServerKind, ServerSpec};

/// No scenario may run longer than this (including server start-up).
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(180);

/// What to run a scenario against.
#[derive(Clone, Debug)]
pub enum Target {
    /// Servers the suite starts from this binary.
    Spawn(ServerSpec),
    /// A server someone else started (client URLs).
    External(Vec<String>),
}

impl Target {
    pub fn label(&self) -> String {
        match self {
            Target::Spawn(spec) => spec.kind.to_string(),
            Target::External(_) => "endpoints".to_string(),
        }
    }
}

/// The verdict for one scenario on one target.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail(String),
    Skip(String),
}

/// One scenario on one target.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TargetOutcome {
    pub target: String,
    pub status: Status,
    pub duration_ms: u64,
    pub observation: Observation,
    pub normalized: Value,
}

/// One scenario on every selected target.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ScenarioReport {
    pub name: String,
    pub area: String,
    pub about: String,
    pub outcomes: Vec<TargetOutcome>,
    /// In differential mode: the first difference between the normalised observations.
    pub difference: Option<String>,
}

/// Shared settings of a run.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub etcdctl_bin: PathBuf,
    pub seed: u64,
}

/// Runs one scenario on each target in turn and diffs when there are two.
pub async fn run_scenario(s: &Scenario, targets: &[Target], cfg: &RunConfig) -> ScenarioReport {
    let mut outcomes = Vec::with_capacity(targets.len());
    for t in targets {
        outcomes.push(run_on(s, t, cfg).await);
    }
    let difference = match outcomes.as_slice() {
        [a, b] if !a.observation.steps.is_empty() || !b.observation.steps.is_empty() => {
            first_difference("", &a.normalized, &b.normalized)
        }
        _ => None,
    };
    ScenarioReport {
        name: s.name.to_string(),
        area: s.area.name().to_string(),
        about: s.about.to_string(),
        outcomes,
        difference,
    }
}

async fn run_on(s: &Scenario, target: &Target, cfg: &RunConfig) -> TargetOutcome {
    let started = Instant::now();
    let (status, observation, subs) =
        match tokio::time::timeout(SCENARIO_TIMEOUT, run_inner(s, target, cfg)).await {
            Ok(r) => r,
            Err(_) => (
                Status::Fail(format!("timed out after {}s", SCENARIO_TIMEOUT.as_secs())),
                Observation::default(),
                Vec::new(),
            ),
        };
    let normalized = Normalizer::new(subs).observation(&observation);
    TargetOutcome {
        target: target.label(),
        status,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        observation,
        normalized,
    }
}

type Inner = (Status, Observation, Vec<(String, String)>);

async fn run_inner(s: &Scenario, target: &Target, cfg: &RunConfig) -> Inner {
    let prepared = match target {
        Target::Spawn(spec) => spawn_servers(s.topology, spec).await,
        Target::External(eps) => external(s.topology, eps).await,
    };
    let (mut ctx, proxies) = match prepared {
        Ok((endpoints, cluster, proxies)) => {
            match Ctx::new(endpoints, cluster, cfg.etcdctl_bin.clone(), cfg.seed) {
                Ok(ctx) => (ctx, proxies),
                Err(e) => return (status_of(Err(e)), Observation::default(), Vec::new()),
            }
        }
        Err(e) => return (status_of(Err(e)), Observation::default(), Vec::new()),
    };
    ctx.proxies = proxies;
    ctx.base_rev = current_revision(&ctx).await.unwrap_or(1);
    let result = (s.run)(&mut ctx).await;
    if let Err(ScenarioError::Check(why)) = &result {
        // The failing step is often an unrecorded error: keep it in the transcript for the diff.
        ctx.record("scenario failed", Value::String(why.clone()));
    }
    let subs = substitutions(&ctx);
    let obs = std::mem::take(&mut ctx.obs);
    // Dropping ctx (and its cluster) kills every server it started.
    drop(ctx);
    (status_of(result), obs, subs)
}

fn status_of(r: Result<(), ScenarioError>) -> Status {
    match r {
        Ok(()) => Status::Pass,
        Err(ScenarioError::Skip(reason)) => Status::Skip(reason),
        Err(e) => Status::Fail(e.to_string()),
    }
}

type Prepared = (Vec<String>, Option<Cluster>, Option<PeerProxies>);

async fn spawn_servers(topology: Topology, spec: &ServerSpec) -> Result<Prepared, ScenarioError> {
    let extra: Vec<String> = match topology {
        Topology::ThreeWith(flags) => flags.iter().map(|f| f.to_string()).collect(),
        _ => Vec::new(),
    };
    let opts = ClusterOptions {
        size: topology.size(),
        extra_flags: extra,
        proxied_peers: topology == Topology::ThreeProxied,
    };
    let mut cluster = Cluster::spawn(spec, &opts)?;
    // Proxies must listen before members need quorum, i.e. before waiting for health.
    let proxies = if opts.proxied_peers {
        Some(
            PeerProxies::start(&cluster)
                .await
                .map_err(ScenarioError::Setup)?,
        )
    } else {
        None
    };
    cluster.wait_all_healthy().await?;
    Ok((cluster.client_urls(), Some(cluster), proxies))
}

async fn external(topology: Topology, endpoints: &[String]) -> Result<Prepared, ScenarioError> {
    match topology {
        Topology::Single => {}
        Topology::Three if endpoints.len() >= 3 => {}
        _ => {
            return Err(ScenarioError::Skip(
                "needs three members started by the suite".into(),
            ));
        }
    }
    // Scenarios expect an empty key space; revisions are taken relative to the start.
    let mut client = crate::drivers::grpc::connect(endpoints)
        .await
        .map_err(|e| ScenarioError::Setup(format!("connect {endpoints:?}: {e}")))?;
    let wipe = etcd_client::DeleteOptions::new().with_from_key();
    client
        .delete(vec![0u8], Some(wipe))
        .await
        .map_err(|e| ScenarioError::Setup(format!("wipe keys: {e}")))?;
    Ok((endpoints.to_vec(), None, None))
}

async fn current_revision(ctx: &Ctx) -> Option<i64> {
    let mut c = ctx.client().await.ok()?;
    let r = c.get("\0", None).await.ok()?;
    r.header().map(|h| h.revision())
}

/// Literal run-specific strings and the role names they are normalised to.
fn substitutions(ctx: &Ctx) -> Vec<(String, String)> {
    let mut subs = vec![(
        ctx.scratch.path().display().to_string(),
        "<scratch>".to_string(),
    )];
    for (i, ep) in ctx.endpoints.iter().enumerate() {
        subs.push((ep.clone(), format!("<m{}-client>", i + 1)));
        subs.push((
            ep.trim_start_matches("http://").to_string(),
            format!("<m{}-client>", i + 1),
        ));
    }
    if let Some(cluster) = &ctx.cluster {
        subs.push((
            cluster.dir.path().display().to_string(),
            "<dir>".to_string(),
        ));
        subs.push((cluster.token.clone(), "<token>".to_string()));
        for m in &cluster.members {
            let n = &m.config.name;
            subs.push((m.config.client_url(), format!("<{n}-client>")));
            subs.push((m.config.advertised_peer_url(), format!("<{n}-peer>")));
            subs.push((m.config.listen_peer_url(), format!("<{n}-peer-listen>")));
            let port = m.config.client_port;
            subs.push((format!("127.0.0.1:{port}"), format!("<{n}-client>")));
        }
    }
    subs
}

/// The kind a spawn target runs.
pub fn target_kind(t: &Target) -> Option<ServerKind> {
    match t {
        Target::Spawn(spec) => Some(spec.kind),
        Target::External(_) => None,
    }
}
