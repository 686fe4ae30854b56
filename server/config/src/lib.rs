//! ketch configuration: etcd 3.4.23's flags, defaults, `ETCD_*` environment variables (and
//! `KETCH_*` aliases) and YAML config file, validated with etcd's rules and messages; the
//! member and cluster IDs etcd derives from them; `--version` and startup-summary text.
//! Pure: no sockets, no server I/O (reading `--config-file` is the only file access).
//!
//! The binary's use:
//! ```no_run
//! use ketch_config::{Config, ConfigError};
//! let cfg = match Config::parse_from(std::env::args_os(), |k| std::env::var(k).ok()) {
//!     Ok(cfg) => cfg,
//!     Err(e @ ConfigError::HelpRequested) => {
//!         eprintln!("{}", e.stderr_text());
//!         print!("{}", ketch_config::help_text());
//!         return;
//!     }
//!     Err(ConfigError::VersionRequested) => { print!("{}", ketch_config::version_text()); return; }
//!     Err(e) => { eprintln!("{}", e.stderr_text()); std::process::exit(e.exit_code()); }
//! };
//! // Fresh data dir: the IDs come from the flags.
//! let boot = cfg.bootstrap().unwrap_or_else(|e| { eprintln!("{e}"); std::process::exit(1) });
//! for (key, value) in ketch_config::startup_summary(&cfg, boot.local_member_id, boot.cluster_id) {
//!     println!("{key}={value}");
//! }
//! ```

mod cluster;
mod config;
mod error;
mod file;
mod flags;
mod goparse;
mod help;
mod summary;
mod url;

pub use cluster::{Bootstrap, Id, InitialMember, cluster_id, member_id, parse_initial_cluster};
pub use config::{
    AutoCompaction, ClusterState, Config, DEFAULT_ADVERTISE_CLIENT_URLS,
    DEFAULT_ELECTION_TIMEOUT_MS, DEFAULT_HEARTBEAT_INTERVAL_MS,
    DEFAULT_INITIAL_ADVERTISE_PEER_URLS, DEFAULT_INITIAL_CLUSTER_TOKEN, DEFAULT_IO_MEMORY_BYTES,
    DEFAULT_LISTEN_CLIENT_URLS, DEFAULT_LISTEN_PEER_URLS, DEFAULT_MAX_REQUEST_BYTES,
    DEFAULT_MAX_TXN_OPS, DEFAULT_NAME, DEFAULT_QUOTA_BACKEND_BYTES, DEFAULT_SNAPSHOT_COUNT,
    ELECTION_TIMEOUT_MS_MAX, Experimental, LogLevel, Notice, NoticeLevel,
    SNAPSHOT_CATCH_UP_ENTRIES, Source, TlsConfig, initial_cluster_from_name,
};
pub use error::ConfigError;
pub use flags::{env_name, unrecognized_env_warnings};
pub use goparse::format_duration;
pub use help::{USAGE_LINE, help_text};
pub use summary::{
    ETCD_API_VERSION, ETCD_COMPAT_VERSION, KETCH_VERSION, git_sha, rust_version, startup_summary,
    version_text,
};
pub use url::{EtcdUrl, join_urls, parse_url_list};
