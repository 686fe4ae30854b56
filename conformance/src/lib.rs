//! ketch-conformance: a differential suite that replays etcd scenarios against ketch or real etcd.

pub mod checker;
pub mod faultproxy;
