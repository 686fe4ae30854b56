//! etcd's simple tokens: `<16 random letters>.<raft index of the Authenticate entry>`, held in
//! memory by every member (not replicated, not in snapshots), each valid until it has gone
//! unused for the TTL (`--auth-token-ttl`, 300 s by default): every successful lookup pushes
//! its deadline back, as etcd's `resetSimpleToken` does.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rand::Rng;

/// etcd's `defaultSimpleTokenLength`.
pub const SIMPLE_TOKEN_PREFIX_LEN: usize = 16;
/// etcd's `simpleTokenTTLDefault` (`--auth-token-ttl` default).
pub const TOKEN_TTL_DEFAULT: Duration = Duration::from_secs(300);

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// A random token prefix, drawn by the member that proposes the Authenticate entry (etcd's
/// `GenTokenPrefix`), from the given generator.
pub fn gen_token_prefix_with(rng: &mut impl Rng) -> String {
    (0..SIMPLE_TOKEN_PREFIX_LEN)
        .map(|_| LETTERS[rng.random_range(0..LETTERS.len())] as char)
        .collect()
}

/// A random token prefix from the thread's cryptographically secure generator.
pub fn gen_token_prefix() -> String {
    gen_token_prefix_with(&mut rand::rng())
}

/// The raft index a simple token names, if it has etcd's shape (`<anything>.<decimal>`). A
/// member must have applied that index before it can know the token: etcd waits for it,
/// and so should the server before calling `AuthStore::resolve_token`.
pub fn token_index(token: &str) -> Option<u64> {
    let mut parts = token.split('.');
    let (_, index, None) = (parts.next()?, parts.next()?, parts.next()) else {
        return None;
    };
    index.parse().ok()
}

/// The live tokens of one member: token -> (user, deadline).
#[derive(Debug, Clone, Default)]
pub struct SimpleTokens {
    tokens: HashMap<String, (String, Instant)>,
}

impl SimpleTokens {
    pub fn assign(&mut self, token: String, user: &str, deadline: Instant) {
        self.tokens.insert(token, (user.to_string(), deadline));
    }

    /// The user of a live token, pushing its deadline to `now + ttl`. An expired token is
    /// dropped here (etcd's keeper drops it within a second of its deadline).
    pub fn lookup(&mut self, token: &str, now: Instant, ttl: Duration) -> Option<&str> {
        let expired = matches!(self.tokens.get(token), Some((_, deadline)) if now > *deadline);
        if expired {
            self.tokens.remove(token);
            return None;
        }
        let (user, deadline) = self.tokens.get_mut(token)?;
        *deadline = now + ttl;
        Some(user.as_str())
    }

    /// Drops every token of `user` (etcd's `invalidateUser`: on UserDelete and
    /// UserChangePassword).
    pub fn invalidate_user(&mut self, user: &str) {
        self.tokens.retain(|_, (owner, _)| owner != user);
    }

    pub fn clear(&mut self) {
        self.tokens.clear();
    }

    /// Drops expired tokens; the server calls it about once a second, as etcd's keeper runs.
    pub fn expire(&mut self, now: Instant) {
        self.tokens.retain(|_, (_, deadline)| now <= *deadline);
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn prefix_is_sixteen_ascii_letters() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let p = gen_token_prefix_with(&mut rng);
        assert_eq!(p.len(), SIMPLE_TOKEN_PREFIX_LEN);
        assert!(p.bytes().all(|b| b.is_ascii_alphabetic()));
        assert_ne!(p, gen_token_prefix_with(&mut rng));
    }

    #[test]
    fn token_index_needs_exactly_one_dot_and_a_number() {
        assert_eq!(token_index("BwHMatpXTasCEZGn.91"), Some(91));
        assert_eq!(token_index("bogus"), None);
        assert_eq!(token_index("a.b"), None);
        assert_eq!(token_index("a.1.2"), None);
        assert_eq!(token_index(""), None);
    }

    #[test]
    fn use_pushes_the_deadline_back() {
        let ttl = Duration::from_secs(3);
        let t0 = Instant::now();
        let mut t = SimpleTokens::default();
        t.assign("x.1".into(), "u", t0 + ttl);
        // Used at 2 s and 4 s: still valid at 6.5 s, since each use restarts the TTL.
        assert_eq!(t.lookup("x.1", t0 + Duration::from_secs(2), ttl), Some("u"));
        assert_eq!(t.lookup("x.1", t0 + Duration::from_secs(4), ttl), Some("u"));
        assert_eq!(
            t.lookup("x.1", t0 + Duration::from_millis(6500), ttl),
            Some("u")
        );
        assert_eq!(t.lookup("x.1", t0 + Duration::from_secs(10), ttl), None);
        assert!(t.is_empty());
    }

    #[test]
    fn expire_and_invalidate_drop_only_their_tokens() {
        let t0 = Instant::now();
        let mut t = SimpleTokens::default();
        t.assign("a.1".into(), "u", t0 + Duration::from_secs(1));
        t.assign("b.2".into(), "v", t0 + Duration::from_secs(9));
        t.assign("c.3".into(), "u", t0 + Duration::from_secs(9));
        t.expire(t0 + Duration::from_secs(2));
        assert_eq!(t.len(), 2);
        t.invalidate_user("u");
        assert_eq!(t.len(), 1);
        assert_eq!(t.lookup("b.2", t0, Duration::from_secs(1)), Some("v"));
    }
}
