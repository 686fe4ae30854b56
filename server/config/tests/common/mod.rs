//! Helpers shared by the integration tests: parse a command line with a given environment.
#![allow(dead_code)]

use std::collections::HashMap;
use std::ffi::OsString;

use ketch_config::{Config, ConfigError};

/// Parses `ketch <args>` with exactly the environment `env` (nothing from the process).
pub fn parse_env(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let argv = std::iter::once("ketch")
        .chain(args.iter().copied())
        .map(OsString::from);
    Config::parse_from(argv, |k| env.get(k).cloned())
}

/// Parses `ketch <args>` with an empty environment.
pub fn parse(args: &[&str]) -> Result<Config, ConfigError> {
    parse_env(args, &[])
}

/// Parses and expects success.
pub fn ok(args: &[&str]) -> Config {
    parse(args).unwrap_or_else(|e| panic!("{args:?} should parse: {e:?}"))
}

/// Parses and expects `ConfigError::Usage(msg)` (etcd: message + usage, exit 2).
pub fn usage_err(args: &[&str]) -> String {
    match parse(args) {
        Err(ConfigError::Usage(msg)) => msg,
        other => panic!("{args:?}: expected a usage error, got {other:?}"),
    }
}

/// Parses and expects `ConfigError::Invalid(msg)` (etcd: "error verifying flags", exit 1).
pub fn invalid_err(args: &[&str]) -> String {
    match parse(args) {
        Err(ConfigError::Invalid(msg)) => msg,
        other => panic!("{args:?}: expected a validation error, got {other:?}"),
    }
}

pub fn url_strings(urls: &[ketch_config::EtcdUrl]) -> Vec<String> {
    urls.iter().map(ToString::to_string).collect()
}
