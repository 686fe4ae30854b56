//! `ketch --help`: etcd's usage text and flag list, generated from the flag table so it
//! cannot drift from what the parser accepts.

use crate::flags::{Env, FLAGS, Section, env_name};

/// What etcd prints on stderr before a flag error (and before `--help`), in ketch's words.
pub const USAGE_LINE: &str = "Usage:

  ketch [flags]
    Start a ketch server (etcd v3 API compatible).

  ketch --version
    Show the version of ketch.

  ketch -h | --help
    Show the help information about ketch.

  ketch --config-file
    Path to the server configuration file. Note that if a configuration file is provided, other command line flags and environment variables will be ignored.
";

const SECTIONS: &[(Section, &str)] = &[
    (Section::Member, "Member"),
    (Section::Clustering, "Clustering"),
    (Section::Security, "Security"),
    (Section::Auth, "Auth"),
    (Section::Monitoring, "Profiling and Monitoring"),
    (Section::Logging, "Logging"),
    (
        Section::Proxy,
        "v2 Proxy (not supported by ketch: only --proxy=off)",
    ),
    (Section::Experimental, "Experimental feature"),
    (Section::Unsafe, "Unsafe feature"),
    (Section::Ketch, "ketch"),
];

/// The flag list `--help` prints on stdout (exit 0). As etcd does, the binary prints
/// [`USAGE_LINE`] on stderr first (`ConfigError::HelpRequested.stderr_text()`).
pub fn help_text() -> String {
    let mut out = String::new();
    for (section, title) in SECTIONS {
        out.push_str(&format!("\n{title}:\n"));
        for flag in FLAGS.iter().filter(|f| f.section == *section) {
            let env = match flag.env {
                Env::EtcdAndKetch => format!(
                    "{} or {}",
                    env_name("ETCD", flag.name),
                    env_name("KETCH", flag.name)
                ),
                Env::KetchOnly => env_name("KETCH", flag.name),
            };
            out.push_str(&format!(
                "  --{} '{}'\n    {} [env {env}]\n",
                flag.name, flag.default, flag.help
            ));
        }
    }
    out
}
