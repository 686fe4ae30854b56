//! The auth snapshot: random auth states (built by applying random requests) survive
//! write/read unchanged and restore to the same permissions; every single-byte flip and every
//! truncation is refused, and so are well-checksummed bodies with a wrong magic, an unknown
//! version, unsorted names or trailing bytes. Seeded; `KETCH_AUTH_SEED` replays.

mod common;

use common::*;
use ketch_auth::snapshot::{self, MAGIC, VERSION};
use ketch_auth::{
    AuthConfig, AuthError, AuthRequest, AuthStore, GrpcCode, PERM_READWRITE, Password,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const STATES: usize = 40;

fn name(rng: &mut impl Rng) -> String {
    ["root", "a", "b", "Zed", "ünï", "x y"][rng.random_range(0..6)].to_string()
}

fn bytes(rng: &mut impl Rng) -> Vec<u8> {
    (0..rng.random_range(0..4)).map(|_| rng.random()).collect()
}

/// A random state reached through the store's own rules (failures are just skipped).
fn random_store(rng: &mut StdRng) -> AuthStore {
    let mut h = Harness::new();
    for _ in 0..rng.random_range(0..40) {
        let req = match rng.random_range(0..8) {
            0 => user_add(&name(rng), "pw"),
            1 => AuthRequest::UserAdd {
                name: name(rng),
                password: Password::None,
            },
            2 => AuthRequest::RoleAdd { name: name(rng) },
            3 | 4 => grant_role(&name(rng), &name(rng)),
            5 | 6 => grant_perm(
                &name(rng),
                rng.random_range(-1..4),
                &bytes(rng),
                &bytes(rng),
            ),
            _ => AuthRequest::AuthEnable,
        };
        let _ = h.apply(req);
    }
    h.store
}

#[test]
fn random_states_round_trip() {
    let mut rng = StdRng::seed_from_u64(seed("random_states_round_trip"));
    for _ in 0..STATES {
        let store = random_store(&mut rng);
        let bytes = snapshot::write(store.state());
        let state = snapshot::read(&bytes).expect("own snapshot reads back");
        assert_eq!(&state, store.state());
        let restored = AuthStore::from_state(AuthConfig::default(), state);
        assert_eq!(restored.view(), store.view());
        assert_eq!(
            snapshot::write(restored.state()),
            bytes,
            "writing is deterministic"
        );
    }
}

#[test]
fn restore_replaces_state_and_keeps_tokens_only_if_enabled() {
    let mut h = Harness::new();
    h.enable_with_root();
    h.ok(user_add("u", "p"));
    let with_u = snapshot::read(&snapshot::write(h.store.state())).unwrap();
    let t_u = h.login("u", "p").unwrap();
    let t_root = h.login("root", "pw").unwrap();
    h.ok(AuthRequest::UserDelete { name: "u".into() });
    // Restoring an enabled state keeps the member's tokens; a token dropped before stays gone
    // (tokens are not part of the state).
    h.store.restore(with_u.clone());
    assert_eq!(h.store.state(), &with_u);
    assert!(h.store.resolve_token(&t_root, h.now).is_ok());
    assert_eq!(
        h.store.resolve_token(&t_u, h.now),
        Err(AuthError::InvalidAuthToken)
    );
    // Restoring a disabled state drops them all.
    h.ok(AuthRequest::AuthDisable);
    let disabled = snapshot::read(&snapshot::write(h.store.state())).unwrap();
    let mut other = Harness::new();
    other.enable_with_root();
    let t = other.login("root", "pw").unwrap();
    other.store.restore(disabled);
    assert!(!other.store.enabled());
    assert_eq!(
        other.store.resolve_token(&t, other.now),
        Err(AuthError::InvalidAuthToken)
    );
}

fn sample() -> Vec<u8> {
    let mut h = Harness::new();
    h.enable_with_root();
    h.ok(AuthRequest::UserAdd {
        name: "np".into(),
        password: Password::None,
    });
    h.ok(AuthRequest::RoleAdd { name: "r".into() });
    h.ok(grant_perm("r", PERM_READWRITE, b"a", b"z"));
    h.ok(grant_role("np", "r"));
    snapshot::write(h.store.state())
}

fn is_data_loss(r: Result<ketch_auth::AuthState, AuthError>) -> bool {
    matches!(&r, Err(e @ AuthError::Snapshot(_)) if e.grpc_code() == GrpcCode::DataLoss)
}

#[test]
fn every_flipped_byte_and_every_truncation_is_refused() {
    let good = sample();
    for i in 0..good.len() {
        for bit in [0x01, 0x80] {
            let mut bad = good.clone();
            bad[i] ^= bit;
            assert!(
                is_data_loss(snapshot::read(&bad)),
                "flip {bit:#x} at byte {i} accepted"
            );
        }
    }
    for len in 0..good.len() {
        assert!(
            is_data_loss(snapshot::read(&good[..len])),
            "truncation to {len} accepted"
        );
    }
}

/// Replaces the CRC so that the structural checks, not the checksum, must refuse it.
fn reseal(mut body: Vec<u8>) -> Vec<u8> {
    body.truncate(body.len() - 4);
    let crc = crc32c::crc32c(&body);
    body.extend_from_slice(&crc.to_le_bytes());
    body
}

#[test]
fn checksummed_but_malformed_bodies_are_refused() {
    let good = sample();
    assert_eq!(&good[..8], &MAGIC);
    let mut magic = good.clone();
    magic[0] = b'X';
    let mut version = good.clone();
    version[8..12].copy_from_slice(&(VERSION + 1).to_le_bytes());
    let mut flag = good.clone();
    flag[12] = 2;
    let mut trailing = good.clone();
    trailing.insert(good.len() - 4, 0);
    for (what, bad) in [
        ("magic", magic),
        ("version", version),
        ("flag", flag),
        ("trailing", trailing),
    ] {
        let err = snapshot::read(&reseal(bad)).unwrap_err();
        assert!(matches!(err, AuthError::Snapshot(_)), "{what}: {err:?}");
    }
    let err = snapshot::read(&reseal(version_bumped(&good))).unwrap_err();
    assert!(err.to_string().contains("unknown version 2"), "{err}");
}

fn version_bumped(good: &[u8]) -> Vec<u8> {
    let mut v = good.to_vec();
    v[8..12].copy_from_slice(&2u32.to_le_bytes());
    v
}

#[test]
fn unsorted_users_are_refused() {
    // Two users, "np" then "root": swap their first name bytes to break the order while
    // keeping every length valid.
    let good = sample();
    let np = good
        .windows(6)
        .position(|w| w == [2, 0, 0, 0, b'n', b'p'])
        .unwrap();
    let mut bad = good.clone();
    bad[np + 4] = b'z';
    let err = snapshot::read(&reseal(bad)).unwrap_err();
    assert!(err.to_string().contains("ascending"), "{err}");
}
