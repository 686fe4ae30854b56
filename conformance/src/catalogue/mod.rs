//! The scenario catalogue, one module per area.

use crate::scenario::{Area, Scenario};

mod auth;
mod compaction;
mod etcdctl_output;
mod failures;
mod gateway;
mod kv;
mod lease;
mod limits;
mod maintenance;
mod members;
mod txn;
mod watch;

/// Every scenario, in a stable order.
pub fn all() -> Vec<Scenario> {
    let mut v = Vec::new();
    v.extend(kv::scenarios());
    v.extend(txn::scenarios());
    v.extend(compaction::scenarios());
    v.extend(watch::scenarios());
    v.extend(lease::scenarios());
    v.extend(members::scenarios());
    v.extend(maintenance::scenarios());
    v.extend(limits::scenarios());
    v.extend(gateway::scenarios());
    v.extend(etcdctl_output::scenarios());
    v.extend(auth::scenarios());
    v.extend(failures::scenarios());
    v
}

/// Scenarios whose area equals `filter`, or whose name contains it; `fast` keeps the CI subset.
pub fn select(filter: Option<&str>, fast_only: bool) -> Vec<Scenario> {
    all()
        .into_iter()
        .filter(|s| !fast_only || s.fast)
        .filter(|s| match filter {
            None => true,
            Some(f) => f
                .split(',')
                .any(|f| s.area.name() == f || s.name.contains(f)),
        })
        .collect()
}

/// (area, count) for every area.
pub fn counts(scenarios: &[Scenario]) -> Vec<(Area, usize)> {
    Area::ALL
        .iter()
        .map(|a| (*a, scenarios.iter().filter(|s| s.area == *a).count()))
        .collect()
}
