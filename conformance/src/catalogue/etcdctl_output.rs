//! etcdctl output formats (-w simple/json/fields/table) for the common commands. The full
//! stdout/stderr/exit code of each run is in the observation and diffed in `both` mode; the
//! assertions here pin the shape etcd gives.

use serde_json::Value;

use crate::scenario::{Area, Ctx, Res, Scenario, ScenarioError, Topology, sc};
use crate::{check, check_eq};

macro_rules! entries {
    ($($name:literal, $f:ident, $fast:expr, $about:literal;)*) => {
        vec![$(sc($name, Area::Etcdctl, Topology::Single, $about, $fast, |c| Box::pin($f(c)))),*]
    };
}

pub fn scenarios() -> Vec<Scenario> {
    entries![
        "etcdctl/put-json", put_json, true, "put -w json: a header with the new revision";
        "etcdctl/put-fields", put_fields, false, "put -w fields: header fields";
        "etcdctl/get-json", get_json, true, "get -w json: base64 keys and values, count";
        "etcdctl/get-fields", get_fields, false, "get -w fields: every KeyValue field";
        "etcdctl/get-table-unsupported", get_table, false, "get -w table is refused by etcdctl";
        "etcdctl/get-hex", get_hex, false, "get --hex prints escaped bytes";
        "etcdctl/del-fields", del_fields, false, "del -w fields: Deleted count";
        "etcdctl/txn-fields", txn_fields, false, "txn -w fields: Succeeded and responses";
        "etcdctl/lease-grant-fields", lease_grant_fields, false, "lease grant -w fields: ID and TTL";
        "etcdctl/lease-timetolive-json", lease_ttl_json, false, "lease timetolive -w json";
        "etcdctl/member-list-json", member_list_json, false, "member list -w json";
        "etcdctl/endpoint-status-table", endpoint_status_table, false, "endpoint status -w table";
        "etcdctl/endpoint-hashkv-json", endpoint_hashkv_json, false, "endpoint hashkv -w json";
        "etcdctl/compaction-json", compaction_json, false, "compaction -w json still prints text";
        "etcdctl/get-limit-json-more", get_limit_json, false, "get --limit -w json has more and count";
    ]
}

async fn ctl_json(c: &mut Ctx, line: &str) -> Res<Value> {
    let out = c.ctl(line).await?;
    check!(out.ok(), "etcdctl {line}: {}", out.stderr);
    serde_json::from_str(&out.stdout)
        .map_err(|e| ScenarioError::Check(format!("{line}: not JSON ({e}): {}", out.stdout)))
}

/// The field names of `-w fields` output, in order.
fn field_names(stdout: &str) -> Vec<String> {
    stdout
        .lines()
        .filter_map(|l| {
            l.strip_prefix('"')
                .and_then(|r| r.split_once('"'))
                .map(|(name, _)| name.to_string())
        })
        .collect()
}

async fn ctl_fields(c: &mut Ctx, line: &str) -> Res<(Vec<String>, String)> {
    let out = c.ctl(line).await?;
    check!(out.ok(), "etcdctl {line}: {}", out.stderr);
    Ok((field_names(&out.stdout), out.stdout))
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

const HEADER: [&str; 4] = ["ClusterID", "MemberID", "Revision", "RaftTerm"];

async fn put_json(c: &mut Ctx) -> Res {
    let v = ctl_json(c, "put foo bar -w json").await?;
    check_eq!(v["header"]["revision"].as_i64(), Some(c.r(1)), "revision");
    check!(v.get("prev_kv").is_none(), "no prev_kv without --prev-kv");
    let v = ctl_json(c, "put foo baz -w json --prev-kv").await?;
    check_eq!(
        v["prev_kv"]["value"],
        Value::from("YmFy"),
        "prev value base64"
    );
    Ok(())
}

async fn put_fields(c: &mut Ctx) -> Res {
    let (got, out) = ctl_fields(c, "put foo bar -w fields").await?;
    check_eq!(got, names(&HEADER), "fields");
    check!(
        out.contains(&format!("\"Revision\" : {}", c.r(1))),
        "revision line: {out}"
    );
    Ok(())
}

async fn get_json(c: &mut Ctx) -> Res {
    c.ctl_ok("put foo bar", "OK").await?;
    let v = ctl_json(c, "get foo -w json").await?;
    check_eq!(v["kvs"][0]["key"], Value::from("Zm9v"), "key base64");
    check_eq!(v["kvs"][0]["value"], Value::from("YmFy"), "value base64");
    check_eq!(v["count"].as_i64(), Some(1), "count");
    check!(v["kvs"][0].get("lease").is_none(), "lease 0 is omitted");
    let v = ctl_json(c, "get nope -w json").await?;
    check!(
        v.get("kvs").is_none() && v.get("count").is_none(),
        "empty result omits kvs and count: {v}"
    );
    Ok(())
}

async fn get_fields(c: &mut Ctx) -> Res {
    c.ctl_ok("put foo bar", "OK").await?;
    let (got, _) = ctl_fields(c, "get foo -w fields").await?;
    let mut want = names(&HEADER);
    want.extend(names(&[
        "Key",
        "CreateRevision",
        "ModRevision",
        "Version",
        "Value",
        "Lease",
        "More",
        "Count",
    ]));
    check_eq!(got, want, "fields");
    Ok(())
}

async fn get_table(c: &mut Ctx) -> Res {
    c.ctl_ok("put foo bar", "OK").await?;
    c.ctl_err("get foo -w table", "table not supported as output format")
        .await?;
    Ok(())
}

async fn get_hex(c: &mut Ctx) -> Res {
    c.ctl_ok("put foo bar", "OK").await?;
    c.ctl_ok("get foo --hex", "\\x66\\x6f\\x6f\n\\x62\\x61\\x72")
        .await?;
    Ok(())
}

async fn del_fields(c: &mut Ctx) -> Res {
    c.ctl_ok("put foo bar", "OK").await?;
    let (got, out) = ctl_fields(c, "del foo -w fields").await?;
    let mut want = names(&HEADER);
    want.push("Deleted".into());
    check_eq!(got, want, "fields");
    check!(out.contains("\"Deleted\" : 1"), "deleted: {out}");
    Ok(())
}

async fn txn_fields(c: &mut Ctx) -> Res {
    let out = c
        .ctl_at(0, "txn -w fields", Some("\nput a 1\n\n\n"))
        .await?;
    check!(out.ok(), "txn: {}", out.stderr);
    let got = field_names(&out.stdout);
    let mut want = names(&HEADER);
    want.push("Succeeded".into());
    want.extend(names(&HEADER));
    check_eq!(got, want, "fields");
    Ok(())
}

async fn lease_grant_fields(c: &mut Ctx) -> Res {
    let (got, out) = ctl_fields(c, "lease grant 10 -w fields").await?;
    let mut want = names(&HEADER);
    want.extend(names(&["ID", "TTL"]));
    check_eq!(got, want, "fields");
    check!(out.contains("\"TTL\" : 10"), "ttl: {out}");
    Ok(())
}

async fn lease_ttl_json(c: &mut Ctx) -> Res {
    let mut cl = c.client().await?;
    let id = crate::scenario::ok(
        cl.lease_grant(
            100,
            Some(etcd_client::LeaseGrantOptions::new().with_id(0x42)),
        )
        .await,
        "grant",
    )?
    .id();
    let v = ctl_json(c, &format!("lease timetolive {id:x} -w json")).await?;
    check_eq!(
        (v["id"].as_i64(), v["granted-ttl"].as_i64()),
        (Some(0x42), Some(100)),
        "(id, granted-ttl)"
    );
    Ok(())
}

async fn member_list_json(c: &mut Ctx) -> Res {
    let v = ctl_json(c, "member list -w json").await?;
    let members = v["members"].as_array().cloned().unwrap_or_default();
    check_eq!(members.len(), 1, "members");
    check_eq!(members[0]["name"], Value::from("m1"), "name");
    check_eq!(
        members[0]["clientURLs"],
        Value::from(vec![c.endpoints[0].clone()]),
        "client URLs"
    );
    Ok(())
}

async fn endpoint_status_table(c: &mut Ctx) -> Res {
    let out = c.ctl("endpoint status -w table").await?;
    let header = "|    ENDPOINT     |        ID        | VERSION | DB SIZE | IS LEADER | IS LEARNER | RAFT TERM | RAFT INDEX | RAFT APPLIED INDEX | ERRORS |";
    let cols = |l: &str| {
        l.split('|')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let got = out.stdout.lines().nth(1).map(cols).unwrap_or_default();
    check_eq!(got, cols(header), "table columns");
    let row = out.stdout.lines().nth(3).map(cols).unwrap_or_default();
    check!(
        row.get(4).map(String::as_str) == Some("true"),
        "single member is leader: {row:?}"
    );
    Ok(())
}

async fn endpoint_hashkv_json(c: &mut Ctx) -> Res {
    c.ctl_ok("put foo bar", "OK").await?;
    let v = ctl_json(c, "endpoint hashkv -w json").await?;
    check!(v[0]["HashKV"]["hash"].is_u64(), "hash: {v}");
    check_eq!(
        v[0]["HashKV"]["header"]["revision"].as_i64(),
        Some(c.r(1)),
        "revision"
    );
    Ok(())
}

async fn compaction_json(c: &mut Ctx) -> Res {
    c.ctl_ok("put foo bar", "OK").await?;
    c.ctl_ok("put foo baz", "OK").await?;
    let rev = c.r(1);
    c.ctl_ok(
        &format!("compaction {rev} -w json"),
        &format!("compacted revision {rev}"),
    )
    .await?;
    Ok(())
}

async fn get_limit_json(c: &mut Ctx) -> Res {
    for k in ["a", "b", "c"] {
        c.ctl_ok(&format!("put {k} 1"), "OK").await?;
    }
    let v = ctl_json(c, "get a z --limit=2 -w json").await?;
    check_eq!(
        (v["more"].as_bool(), v["count"].as_i64()),
        (Some(true), Some(3)),
        "(more, count)"
    );
    check_eq!(v["kvs"].as_array().map(Vec::len), Some(2), "kvs");
    Ok(())
}
