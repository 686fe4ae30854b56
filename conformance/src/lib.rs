//! ketch-conformance: a differential suite that replays etcd scenarios against ketch or real etcd.

pub mod checker;
pub mod faultproxy;

pub mod catalogue;
pub mod drivers;
pub mod faults;
pub mod history;
pub mod normalize;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod servers;
