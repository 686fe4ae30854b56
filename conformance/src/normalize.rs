//! The one place where values that legitimately differ between two servers are normalised
//! before observations are diffed (documented in docs/conformance.md, "Normalisation").
//!
//! - Generated IDs (cluster, member, lease, leader; numeric or hex in etcdctl text) are replaced
//!   by ordinals in order of first appearance (`<id1>`, `<id2>`, ...), so equalities between
//!   IDs are still compared, but not their values.
//! - Raft term/index, db sizes, hashes of the backend, server versions and timings are replaced
//!   by a fixed placeholder.
//! - Loopback URLs and temp paths, which differ run to run, are replaced by the member role
//!   (`<m1-client>`, `<m2-peer>`) and `<scratch>`.

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::scenario::Observation;

/// JSON fields holding generated IDs (compared by ordinal).
const ID_FIELDS: &[&str] = &[
    "cluster_id",
    "member_id",
    "leader",
    "id",
    "ID",
    "lease",
    "lease_id",
    "ids",
    "memberID",
    "clusterID",
];

/// JSON fields whose values differ between implementations by nature (dropped to a placeholder).
const VOLATILE_FIELDS: &[&str] = &[
    "raft_term",
    "raft_index",
    "raft_applied_index",
    "db_size",
    "db_size_in_use",
    "dbSize",
    "dbSizeInUse",
    // `snapshot status`: etcd's bbolt file carries free pages, ketch's does not.
    "totalSize",
    "raftTerm",
    "raftIndex",
    "raftAppliedIndex",
    "hash",
    "elapsed_ms",
    "server_version",
    "etcdserver",
    "etcdcluster",
];

/// Fields holding free text (etcdctl output, error messages), where the text rules apply;
/// elsewhere (keys, values) only the literal substitutions do.
const TEXT_FIELDS: &[&str] = &[
    "stdout",
    "stderr",
    "body",
    "message",
    "cancel_reason",
    "text",
];

const PLACEHOLDER: &str = "<normalised>";

static HEX_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b[0-9a-f]{12,16}\b").expect("regex"));
static FIELD_ID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#""(ClusterID|MemberID|ID|Lease|Leader)" : (\d+)"#).expect("regex")
});
static FIELD_VOLATILE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#""(RaftTerm|RaftIndex|RaftAppliedIndex|DBSize|DBSizeInUse|Hash)" : \d+|"Version" : "[^"]*""#)
        .expect("regex")
});
/// etcdctl's client-side JSON log lines (timestamps, random client IDs) are not server output.
static CLIENT_LOG_LINE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?m)^\{"level":"[a-z]+".*\n?"#).expect("regex"));
static TOOK: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"took = \S+").expect("regex"));
static SIZE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\b\d+(\.\d+)? ?[kMG]?B\b").expect("regex"));
static VERSION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b3\.\d+\.\d+\b").expect("regex"));

/// Normalises observations; one instance per observation (ordinals restart).
pub struct Normalizer {
    /// Literal substrings and their replacement (URLs, temp paths), longest first.
    substitutions: Vec<(String, String)>,
    ids: HashMap<u64, usize>,
}

impl Normalizer {
    pub fn new(mut substitutions: Vec<(String, String)>) -> Self {
        substitutions.sort_by_key(|(from, _)| std::cmp::Reverse(from.len()));
        Normalizer {
            substitutions,
            ids: HashMap::new(),
        }
    }

    /// The observation as JSON with every legitimately-differing value replaced.
    pub fn observation(&mut self, obs: &Observation) -> Value {
        let raw = serde_json::to_value(obs).expect("observation serialises");
        self.value(None, &raw)
    }

    fn id_ordinal(&mut self, id: u64) -> String {
        if id == 0 {
            return "0".to_string();
        }
        let next = self.ids.len() + 1;
        format!("<id{}>", self.ids.entry(id).or_insert(next))
    }

    fn value(&mut self, field: Option<&str>, v: &Value) -> Value {
        if let Some(f) = field {
            if VOLATILE_FIELDS.contains(&f) {
                return Value::String(PLACEHOLDER.into());
            }
            if f == "version" && v.is_string() {
                return Value::String(PLACEHOLDER.into());
            }
            if ID_FIELDS.contains(&f) {
                return self.id_value(v);
            }
        }
        match v {
            Value::Object(map) => Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), self.value(Some(k), v)))
                    .collect(),
            ),
            Value::Array(items) => {
                Value::Array(items.iter().map(|x| self.value(field, x)).collect())
            }
            Value::String(s) if field.is_some_and(|f| TEXT_FIELDS.contains(&f)) => {
                Value::String(self.text(s))
            }
            Value::String(s) => Value::String(self.substitute(s)),
            other => other.clone(),
        }
    }

    /// Replaces run-specific literals (URLs, temp paths) only.
    fn substitute(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (from, to) in &self.substitutions {
            out = out.replace(from.as_str(), to);
        }
        out
    }

    fn id_value(&mut self, v: &Value) -> Value {
        match v {
            Value::Number(n) => match n.as_u64().or_else(|| n.as_i64().map(|x| x as u64)) {
                Some(id) => Value::String(self.id_ordinal(id)),
                None => v.clone(),
            },
            Value::String(s) => match s.parse::<u64>() {
                Ok(id) => Value::String(self.id_ordinal(id)),
                Err(_) => Value::String(self.text(s)),
            },
            Value::Array(items) => Value::Array(items.iter().map(|x| self.id_value(x)).collect()),
            other => self.value(None, other),
        }
    }

    /// Normalises free text (etcdctl output, error messages, HTTP bodies).
    pub fn text(&mut self, s: &str) -> String {
        let mut out = self.substitute(s);
        out = CLIENT_LOG_LINE.replace_all(&out, "").into_owned();
        out = FIELD_VOLATILE
            .replace_all(&out, "<normalised>")
            .into_owned();
        out = TOOK.replace_all(&out, "took = <t>").into_owned();
        out = VERSION.replace_all(&out, "<version>").into_owned();
        out = SIZE.replace_all(&out, "<size>").into_owned();
        out = out
            .split('\n')
            .map(mask_status_table_row)
            .collect::<Vec<_>>()
            .join("\n");
        let with_fields = FIELD_ID.replace_all(&out, |c: &regex::Captures<'_>| {
            let id = c[2].parse::<u64>().unwrap_or(0);
            format!("\"{}\" : {}", &c[1], self.id_ordinal(id))
        });
        let out = with_fields.into_owned();
        HEX_ID
            .replace_all(&out, |c: &regex::Captures<'_>| {
                let id = u64::from_str_radix(&c[0], 16).unwrap_or(0);
                self.id_ordinal(id)
            })
            .into_owned()
    }
}

/// One line of `endpoint status -w table`, with its DB SIZE, RAFT TERM, RAFT INDEX and RAFT
/// APPLIED INDEX cells masked (each server has its own backend size and counts its own
/// elections and internal entries, as the JSON fields masked by `FIELD_VOLATILE`); any other
/// line as it is. Also used by the server's etcdctl parity test.
pub fn mask_status_table_row(line: &str) -> String {
    const MASKED_CELLS: [usize; 4] = [4, 7, 8, 9];
    let cells: Vec<&str> = line.split('|').collect();
    if cells.len() != 12 || cells[3].trim() == "VERSION" || !line.starts_with('|') {
        return line.to_string();
    }
    let masked: Vec<&str> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| {
            if MASKED_CELLS.contains(&i) {
                " <n> "
            } else {
                c
            }
        })
        .collect();
    masked.join("|")
}

/// The first difference between two normalised JSON values, as `path: left != right`.
pub fn first_difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                first_difference(&format!("{path}.{k}"), va, vb)
            })
        }
        (Value::Array(x), Value::Array(y)) => {
            let common = x.iter().zip(y).enumerate();
            if let Some(d) = common
                .into_iter()
                .find_map(|(i, (va, vb))| first_difference(&format!("{path}[{i}]"), va, vb))
            {
                return Some(d);
            }
            (x.len() != y.len()).then(|| format!("{path}: length {} != {}", x.len(), y.len()))
        }
        _ if a == b => None,
        _ => Some(format!("{path}: {} != {}", short(a), short(b))),
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        format!("{}...", &s[..s.floor_char_boundary(200)])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_become_ordinals_and_equalities_survive() {
        let mut n = Normalizer::new(vec![(
            "http://127.0.0.1:40001".into(),
            "<m1-client>".into(),
        )]);
        let v = json!({"member_id": 77u64, "leader": 77u64, "lease": 0, "raft_term": 5,
                       "text": "member 4d for http://127.0.0.1:40001 took = 1.2ms", "version": "3.4.23"});
        let out = n.value(None, &v);
        assert_eq!(out["member_id"], json!("<id1>"));
        assert_eq!(out["leader"], json!("<id1>"));
        assert_eq!(out["lease"], json!("0"));
        assert_eq!(out["raft_term"], json!(PLACEHOLDER));
        assert_eq!(out["version"], json!(PLACEHOLDER));
        assert_eq!(out["text"], json!("member 4d for <m1-client> took = <t>"));
    }

    #[test]
    fn hex_ids_in_text_share_ordinals_with_numeric_ids() {
        let mut n = Normalizer::new(vec![]);
        let _ = n.value(None, &json!({"id": 0x694d7c3f1c2f5a0bu64}));
        assert_eq!(
            n.text("lease 694d7c3f1c2f5a0b granted"),
            "lease <id1> granted"
        );
        assert_eq!(n.text("lease 694d7c3f1c2f5a0c"), "lease <id2>");
    }

    #[test]
    fn status_table_raft_cells_are_masked_and_nothing_else() {
        let row = |term: &str, index: &str| {
            format!(
                "| http://127.0.0.1:1 | 23c9b5709b7a4d59 |  3.4.23 |   20 kB |      true |      \
                 false |         {term} |          {index} |                  {index} |        |\n"
            )
        };
        let mut n = Normalizer::new(vec![]);
        let etcd = n.text(&row("2", "5"));
        let mut n = Normalizer::new(vec![]);
        let ketch = n.text(&row("1", "1").replace("  20 kB", "0 B"));
        assert_eq!(ketch, etcd);
        assert!(etcd.contains("| <n> | <n> | <n> |"), "{etcd}");
        assert!(etcd.contains("true") && etcd.ends_with("|\n"), "{etcd}");
        let header = "| ENDPOINT | ID | VERSION | DB SIZE | IS LEADER | IS LEARNER | RAFT TERM | \
                      RAFT INDEX | RAFT APPLIED INDEX | ERRORS |";
        assert_eq!(n.text(header), header);
    }

    #[test]
    fn first_difference_points_at_the_path() {
        let a = json!({"steps": [{"x": 1}, {"y": [1, 2]}]});
        let b = json!({"steps": [{"x": 1}, {"y": [1, 3]}]});
        assert_eq!(
            first_difference("", &a, &b).as_deref(),
            Some(".steps[1].y[1]: 2 != 3")
        );
        assert_eq!(first_difference("", &a, &a), None);
    }
}
