//! Differential test against real etcd 3.4.23: the same random auth requests go to an etcd
//! (through its JSON gateway, as root with a token) and to an `AuthStore`; every answer must
//! match — error message and gRPC code, user and role listings, role permissions in order — and
//! every few steps a user logs in on both and random reads and writes (point, range, prefix,
//! from-key, empty, inverted) must be allowed or denied alike. A second test grows one role far past 12
//! permissions, where etcd's order comes from Go's unstable pdqsort. Seeded; `KETCH_AUTH_SEED` replays.

mod common;
#[path = "common/etcd.rs"]
mod etcd;

use common::*;
use etcd::{Answer, EtcdServer, base64};
use ketch_auth::{AuthError, AuthRequest, AuthResponse, Password, Perm};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const STEPS: usize = 120;
/// Grants to one role in `big_roles_keep_etcds_order`: far above the 12 elements where Go's
/// `sort.Sort` stops being an insertion sort.
const BIG_ROLE_GRANTS: usize = 150;
const PROBE_EVERY: usize = 8;
const PROBES: usize = 12;

const USERS: [&str; 4] = ["root", "u1", "u2", ""];
const ROLES: [&str; 5] = ["root", "r1", "r2", "nor", ""];

/// One request in both shapes: ketch's, and the gateway path and JSON body.
struct Step {
    ketch: AuthRequest,
    path: &'static str,
    body: String,
}

fn pick<'a>(rng: &mut impl Rng, from: &[&'a str]) -> &'a str {
    from[rng.random_range(0..from.len())]
}

fn key(rng: &mut impl Rng) -> Vec<u8> {
    let len = rng.random_range(1..=2);
    (0..len)
        .map(|_| [b'a', b'b', b'c', 0][rng.random_range(0..4)])
        .collect()
}

fn range_end(rng: &mut impl Rng, key: &[u8]) -> Vec<u8> {
    match rng.random_range(0..4) {
        0 => vec![],
        1 => vec![0],
        2 => prefix_end(key),
        _ => self::key(rng),
    }
}

fn random_step(rng: &mut impl Rng) -> Step {
    let (user, role) = (pick(rng, &USERS), pick(rng, &ROLES));
    let j = |v: Value| v.to_string();
    match rng.random_range(0..12) {
        0 | 1 => {
            let no_password = rng.random_bool(0.2);
            let password = if no_password {
                Password::None
            } else {
                match user_add(user, "p") {
                    AuthRequest::UserAdd { password, .. } => password,
                    _ => unreachable!(),
                }
            };
            let body = serde_json::json!({"name": user, "password": "p", "options": {"no_password": no_password}});
            Step {
                ketch: AuthRequest::UserAdd {
                    name: user.into(),
                    password,
                },
                path: "/v3/auth/user/add",
                body: j(body),
            }
        }
        2 => Step {
            ketch: AuthRequest::UserDelete { name: user.into() },
            path: "/v3/auth/user/delete",
            body: j(serde_json::json!({"name": user})),
        },
        3 | 4 => Step {
            ketch: grant_role(user, role),
            path: "/v3/auth/user/grant",
            body: j(serde_json::json!({"user": user, "role": role})),
        },
        5 => Step {
            ketch: AuthRequest::UserRevokeRole {
                name: user.into(),
                role: role.into(),
            },
            path: "/v3/auth/user/revoke",
            body: j(serde_json::json!({"name": user, "role": role})),
        },
        6 => Step {
            ketch: AuthRequest::RoleAdd { name: role.into() },
            path: "/v3/auth/role/add",
            body: j(serde_json::json!({"name": role})),
        },
        7 => Step {
            ketch: AuthRequest::RoleDelete { role: role.into() },
            path: "/v3/auth/role/delete",
            body: j(serde_json::json!({"role": role})),
        },
        8 | 9 => {
            let k = key(rng);
            let e = range_end(rng, &k);
            let t = rng.random_range(0..3);
            let type_name = ["READ", "WRITE", "READWRITE"][t as usize];
            let perm = serde_json::json!({"key": base64(&k), "range_end": base64(&e), "permType": type_name});
            Step {
                ketch: grant_perm(role, t, &k, &e),
                path: "/v3/auth/role/grant",
                body: j(serde_json::json!({"name": role, "perm": perm})),
            }
        }
        10 => {
            let k = key(rng);
            let e = range_end(rng, &k);
            Step {
                ketch: AuthRequest::RoleRevokePermission {
                    role: role.into(),
                    key: k.clone(),
                    range_end: e.clone(),
                },
                path: "/v3/auth/role/revoke",
                body: j(
                    serde_json::json!({"role": role, "key": base64(&k), "range_end": base64(&e)}),
                ),
            }
        }
        _ => match rng.random_range(0..4) {
            0 => Step {
                ketch: AuthRequest::UserGet { name: user.into() },
                path: "/v3/auth/user/get",
                body: j(serde_json::json!({"name": user})),
            },
            1 => Step {
                ketch: AuthRequest::RoleGet { role: role.into() },
                path: "/v3/auth/role/get",
                body: j(serde_json::json!({"role": role})),
            },
            2 => Step {
                ketch: AuthRequest::UserList,
                path: "/v3/auth/user/list",
                body: "{}".into(),
            },
            _ => Step {
                ketch: AuthRequest::RoleList,
                path: "/v3/auth/role/list",
                body: "{}".into(),
            },
        },
    }
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    v[field]
        .as_array()
        .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

/// The gateway omits zero values: READ and empty byte strings.
fn gateway_perms(v: &Value) -> Vec<(String, String, String)> {
    let text = |p: &Value, f: &str| p[f].as_str().unwrap_or_default().to_string();
    v["perm"]
        .as_array()
        .map(|a| {
            let perm_type = |p: &Value| p["permType"].as_str().unwrap_or("READ").to_string();
            a.iter()
                .map(|p| (perm_type(p), text(p, "key"), text(p, "range_end")))
                .collect()
        })
        .unwrap_or_default()
}

fn ketch_perms(perms: &[ketch_proto::authpb::Permission]) -> Vec<(String, String, String)> {
    let name = |t: i32| ["READ", "WRITE", "READWRITE"][t as usize].to_string();
    perms
        .iter()
        .map(|p| (name(p.perm_type), base64(&p.key), base64(&p.range_end)))
        .collect()
}

fn compare(step: &str, ours: Result<AuthResponse, AuthError>, theirs: Answer) {
    let (ours, theirs) = match (ours, theirs) {
        (Err(e), Err((msg, code))) => {
            assert_eq!((e.to_string(), e.grpc_code() as i64), (msg, code), "{step}");
            return;
        }
        (Ok(o), Ok(t)) => (o, t),
        (o, t) => panic!("{step}: ketch {o:?}, etcd {t:?}"),
    };
    match ours {
        AuthResponse::UserGet(r) => assert_eq!(r.roles, strings(&theirs, "roles"), "{step}"),
        AuthResponse::UserList(r) => assert_eq!(r.users, strings(&theirs, "users"), "{step}"),
        AuthResponse::RoleList(r) => assert_eq!(r.roles, strings(&theirs, "roles"), "{step}"),
        AuthResponse::RoleGet(r) => {
            assert_eq!(ketch_perms(&r.perm), gateway_perms(&theirs), "{step}")
        }
        _ => {}
    }
}

/// u1 logs in on both sides; then random requests are allowed or denied alike.
fn probe(rng: &mut impl Rng, h: &mut Harness, etcd: &EtcdServer) {
    let ours = h.login("u1", "p");
    let theirs = etcd.post(
        "/v3/auth/authenticate",
        r#"{"name":"u1","password":"p"}"#,
        None,
    );
    let token = match (ours, theirs) {
        (Ok(_), Ok(v)) => v["token"].as_str().unwrap().to_string(),
        (Err(e), Err((msg, _))) => return assert_eq!(e.to_string(), msg),
        (o, t) => panic!("login: ketch {o:?}, etcd {t:?}"),
    };
    let who = h.who("u1");
    for _ in 0..PROBES {
        let k = key(rng);
        let e = range_end(rng, &k);
        let (perm, path, body) = match rng.random_range(0..3) {
            0 => (
                Perm::Read,
                "/v3/kv/range",
                serde_json::json!({"key": base64(&k), "range_end": base64(&e)}),
            ),
            1 => (
                Perm::Write,
                "/v3/kv/deleterange",
                serde_json::json!({"key": base64(&k), "range_end": base64(&e)}),
            ),
            _ => (
                Perm::Write,
                "/v3/kv/put",
                serde_json::json!({"key": base64(&k), "value": "dg=="}),
            ),
        };
        let end = if path == "/v3/kv/put" { vec![] } else { e };
        let ours = h.store.check(&who, &k, &end, perm);
        let theirs = etcd.post(path, &body.to_string(), Some(&token));
        let what = format!("{path} {k:?}..{end:?}");
        match (ours, theirs) {
            (Ok(()), Ok(_)) => {}
            (Err(e), Err((msg, code))) => {
                assert_eq!((e.to_string(), e.grpc_code() as i64), (msg, code), "{what}")
            }
            (o, t) => panic!("{what}: ketch {o:?}, etcd {t:?}"),
        }
    }
}

#[test]
fn random_auth_requests_match_etcd() {
    let mut rng = StdRng::seed_from_u64(seed("random_auth_requests_match_etcd"));
    let etcd = EtcdServer::start();
    let mut h = Harness::new();
    for (path, body) in [
        ("/v3/auth/user/add", r#"{"name":"root","password":"pw"}"#),
        ("/v3/auth/role/add", r#"{"name":"root"}"#),
        ("/v3/auth/user/grant", r#"{"user":"root","role":"root"}"#),
        ("/v3/auth/user/add", r#"{"name":"u1","password":"p"}"#),
        ("/v3/auth/enable", "{}"),
    ] {
        etcd.post(path, body, None)
            .unwrap_or_else(|e| panic!("{path}: {e:?}"));
        if path == "/v3/auth/enable" {
            h.ok(user_add("u1", "p"));
            h.enable_with_root();
        }
    }
    let root = etcd
        .post(
            "/v3/auth/authenticate",
            r#"{"name":"root","password":"pw"}"#,
            None,
        )
        .unwrap();
    let root_token = root["token"].as_str().unwrap().to_string();
    for i in 0..STEPS {
        let step = random_step(&mut rng);
        let what = format!("step {i}: {} {}", step.path, step.body);
        let ours = h.apply(step.ketch);
        let theirs = etcd.post(step.path, &step.body, Some(&root_token));
        compare(&what, ours, theirs);
        if i % PROBE_EVERY == 0 {
            probe(&mut rng, &mut h, &etcd);
        }
    }
}

/// RoleGet of role "big" on both, auth off.
fn role_get_both(h: &mut Harness, etcd: &EtcdServer, what: &str) {
    let ours = h.apply(AuthRequest::RoleGet { role: "big".into() });
    let theirs = etcd.post("/v3/auth/role/get", r#"{"role":"big"}"#, None);
    compare(what, ours, theirs);
}

#[test]
fn big_roles_keep_etcds_order() {
    let mut rng = StdRng::seed_from_u64(seed("big_roles_keep_etcds_order"));
    let etcd = EtcdServer::start();
    let mut h = Harness::new();
    etcd.post("/v3/auth/role/add", r#"{"name":"big"}"#, None)
        .unwrap();
    h.ok(AuthRequest::RoleAdd { name: "big".into() });
    for i in 0..BIG_ROLE_GRANTS {
        // Few distinct keys, many range ends: long runs of equal keys.
        let k = vec![[b'a', b'b', b'c'][rng.random_range(0..3)]];
        let e = if rng.random_bool(0.1) {
            vec![]
        } else {
            key(&mut rng)
        };
        let t = rng.random_range(0..3);
        let (path, body, req) = if rng.random_bool(0.1) {
            let body =
                serde_json::json!({"role": "big", "key": base64(&k), "range_end": base64(&e)});
            let req = AuthRequest::RoleRevokePermission {
                role: "big".into(),
                key: k,
                range_end: e,
            };
            ("/v3/auth/role/revoke", body, req)
        } else {
            let type_name = ["READ", "WRITE", "READWRITE"][t as usize];
            let perm = serde_json::json!({"key": base64(&k), "range_end": base64(&e), "permType": type_name});
            let body = serde_json::json!({"name": "big", "perm": perm});
            ("/v3/auth/role/grant", body, grant_perm("big", t, &k, &e))
        };
        let what = format!("step {i}: {path} {body}");
        compare(
            &what,
            h.apply(req),
            etcd.post(path, &body.to_string(), None),
        );
        role_get_both(&mut h, &etcd, &what);
    }
}
