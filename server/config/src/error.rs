//! The one error type of the configuration boundary. Its kinds follow etcd's exits:
//! command-line syntax and flag values exit 2 after Go's usage text, everything found
//! while verifying the configuration exits 1, `--help` and `--version` exit 0.

use thiserror::Error;

/// Why `Config::parse_from` did not produce a configuration to run with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// `-h`, `-help`, `--help`: print [`crate::help_text`] on stdout, exit 0.
    #[error("help requested")]
    HelpRequested,
    /// `--version`: print [`crate::version_text`] on stdout, exit 0.
    #[error("version requested")]
    VersionRequested,
    /// Command-line syntax or a flag value Go's flag package refuses, e.g.
    /// `flag provided but not defined: -foo`. etcd prints it and its usage line, exits 2.
    #[error("{0}")]
    Usage(String),
    /// Anything found while verifying flags, environment or config file, e.g.
    /// `--election-timeout[400ms] should be at least as 5 times as --heartbeat-interval[100ms]`.
    /// etcd logs `error verifying flags, <msg>. See 'etcd --help'.` and exits 1.
    #[error("{0}")]
    Invalid(String),
    /// A check etcd makes when bootstrapping a new member from `--initial-cluster`, e.g.
    /// `couldn't find local name "x" in the initial cluster configuration`. Exit 1.
    #[error("{0}")]
    Bootstrap(String),
}

impl ConfigError {
    /// The process exit code etcd 3.4.23 uses for this kind of error (measured).
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::HelpRequested | ConfigError::VersionRequested => 0,
            ConfigError::Usage(_) => 2,
            ConfigError::Invalid(_) | ConfigError::Bootstrap(_) => 1,
        }
    }

    /// The text the binary prints on stderr for an error (nothing for help/version, which
    /// go to stdout): etcd's shape with `ketch` in place of `etcd`.
    pub fn stderr_text(&self) -> String {
        match self {
            ConfigError::HelpRequested => crate::help::USAGE_LINE.to_owned(),
            ConfigError::VersionRequested => String::new(),
            ConfigError::Usage(msg) => format!("{msg}\n{}", crate::help::USAGE_LINE),
            ConfigError::Invalid(msg) => {
                format!("error verifying flags, {msg}. See 'ketch --help'.")
            }
            ConfigError::Bootstrap(msg) => msg.clone(),
        }
    }
}
