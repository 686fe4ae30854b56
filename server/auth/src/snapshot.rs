//! The auth state in a raft snapshot: versioned, length-prefixed, little-endian, with a
//! CRC-32C trailer, in the style of the MVCC snapshot. Byte layout: docs/auth.md.
//! Tokens are per-member and not included (etcd does not persist them either).

use std::collections::BTreeMap;

use crate::AuthError;
use crate::request::{Password, Permission};
use crate::state::{AuthState, Role, User};

pub const MAGIC: [u8; 8] = *b"KETCHAU\0";
pub const VERSION: u32 = 1;
const CRC_LEN: usize = 4;

const PASSWORD_NONE: u8 = 0;
const PASSWORD_BCRYPT: u8 = 1;

/// Serializes the whole replicated auth state.
pub fn write(state: &AuthState) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.push(u8::from(state.enabled()));
    out.extend_from_slice(&state.revision().to_le_bytes());
    put_len(&mut out, state.users().len());
    for user in state.users().values() {
        write_user(&mut out, user);
    }
    put_len(&mut out, state.roles().len());
    for role in state.roles().values() {
        write_role(&mut out, role);
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).expect("auth snapshot: a length exceeds u32");
    out.extend_from_slice(&len.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_len(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn write_user(out: &mut Vec<u8>, user: &User) {
    put_bytes(out, user.name.as_bytes());
    match &user.password {
        Password::None => {
            out.push(PASSWORD_NONE);
            put_bytes(out, b"");
        }
        Password::Hash(hash) => {
            out.push(PASSWORD_BCRYPT);
            put_bytes(out, hash.as_bytes());
        }
    }
    put_len(out, user.roles.len());
    for role in &user.roles {
        put_bytes(out, role.as_bytes());
    }
}

fn write_role(out: &mut Vec<u8>, role: &Role) {
    put_bytes(out, role.name.as_bytes());
    put_len(out, role.perms.len());
    for perm in &role.perms {
        out.extend_from_slice(&perm.perm_type.to_le_bytes());
        put_bytes(out, &perm.key);
        put_bytes(out, &perm.range_end);
    }
}

/// Reads a snapshot written by `write`, trusting nothing before the checksum has passed.
pub fn read(bytes: &[u8]) -> Result<AuthState, AuthError> {
    if bytes.len() < MAGIC.len() + CRC_LEN {
        return Err(corrupt("shorter than magic and checksum"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - CRC_LEN);
    let stored = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    if crc32c::crc32c(body) != stored {
        return Err(corrupt("checksum mismatch"));
    }
    let mut r = Reader { rest: body };
    if r.take(MAGIC.len())? != MAGIC {
        return Err(corrupt("bad magic"));
    }
    let version = r.u32()?;
    if version != VERSION {
        return Err(corrupt(&format!(
            "unknown version {version} (this reader knows {VERSION})"
        )));
    }
    let enabled = match r.u8()? {
        0 => false,
        1 => true,
        other => return Err(corrupt(&format!("enabled flag {other}"))),
    };
    let revision = r.u64()?;
    let users = read_sorted(&mut r, read_user, |u: &User| u.name.clone())?;
    let roles = read_sorted(&mut r, read_role, |r: &Role| r.name.clone())?;
    if !r.rest.is_empty() {
        return Err(corrupt("bytes after the role list"));
    }
    Ok(AuthState {
        enabled,
        revision,
        users,
        roles,
    })
}

/// A count, then that many records in strictly ascending name order.
fn read_sorted<T>(
    r: &mut Reader<'_>,
    read_one: fn(&mut Reader<'_>) -> Result<T, AuthError>,
    name_of: fn(&T) -> String,
) -> Result<BTreeMap<String, T>, AuthError> {
    let count = r.u32()?;
    let mut map = BTreeMap::new();
    for _ in 0..count {
        let item = read_one(r)?;
        let name = name_of(&item);
        if name.is_empty() || map.last_key_value().is_some_and(|(last, _)| *last >= name) {
            return Err(corrupt("names empty or not in ascending order"));
        }
        map.insert(name, item);
    }
    Ok(map)
}

fn read_user(r: &mut Reader<'_>) -> Result<User, AuthError> {
    let name = r.string()?;
    let kind = r.u8()?;
    let hash = r.string()?;
    let password = match kind {
        PASSWORD_NONE if hash.is_empty() => Password::None,
        PASSWORD_BCRYPT => Password::Hash(hash),
        _ => return Err(corrupt(&format!("user {name:?}: bad password kind {kind}"))),
    };
    let count = r.u32()?;
    let mut roles: Vec<String> = Vec::new();
    for _ in 0..count {
        let role = r.string()?;
        if roles.last().is_some_and(|last| *last >= role) {
            return Err(corrupt(&format!(
                "user {name:?}: roles not in ascending order"
            )));
        }
        roles.push(role);
    }
    Ok(User {
        name,
        password,
        roles,
    })
}

fn read_role(r: &mut Reader<'_>) -> Result<Role, AuthError> {
    let name = r.string()?;
    let count = r.u32()?;
    let mut perms: Vec<Permission> = Vec::new();
    for _ in 0..count {
        let perm_type = r.i32()?;
        let key = r.bytes()?.to_vec();
        let range_end = r.bytes()?.to_vec();
        if perms.last().is_some_and(|last| last.key > key) {
            return Err(corrupt(&format!(
                "role {name:?}: permissions not sorted by key"
            )));
        }
        perms.push(Permission {
            perm_type,
            key,
            range_end,
        });
    }
    Ok(Role { name, perms })
}

fn corrupt(what: &str) -> AuthError {
    AuthError::Snapshot(what.to_string())
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AuthError> {
        if n > self.rest.len() {
            return Err(corrupt("a length runs past the end"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], AuthError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn u8(&mut self) -> Result<u8, AuthError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, AuthError> {
        self.array().map(u32::from_le_bytes)
    }

    fn i32(&mut self) -> Result<i32, AuthError> {
        self.array().map(i32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, AuthError> {
        self.array().map(u64::from_le_bytes)
    }

    fn bytes(&mut self) -> Result<&'a [u8], AuthError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn string(&mut self) -> Result<String, AuthError> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| corrupt("a name is not UTF-8"))
    }
}
