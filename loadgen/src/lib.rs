//! ketch-loadgen: a load generator for etcd v3 compatible endpoints. It runs etcd benchmark's
//! workloads closed loop or open loop at a fixed rate (latency from the intended send time),
//! keeps HdrHistograms per operation, and writes self-describing run folders.

pub mod cli;
pub mod compare;
pub mod connect;
pub mod driver;
pub mod grpc;
pub mod machine;
pub mod pacing;
pub mod report;
pub mod run;
pub mod runfolder;
pub mod stats;
pub mod svg;
pub mod timeseries;
pub mod watch;
pub mod workloads;
