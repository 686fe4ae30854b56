//! Versions ketch reports. On the wire ketch reports the etcd release whose API it implements,
//! so clients that gate features on the server version treat it as that etcd; `ketch
//! --version` names ketch's own version too.

pub use ketch_config::ETCD_COMPAT_VERSION;

/// The cluster version reported in `/version` (etcd reports major.minor.0).
pub const ETCD_CLUSTER_VERSION: &str = "3.4.0";
