//! etcd's revision: `main` is the store-wide counter bumped once per write request, `sub`
//! orders the writes inside one request (a txn's writes share `main`).

/// A write's position in the store's history; ordered by `main`, then `sub`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

impl Revision {
    pub fn new(main: i64, sub: i64) -> Self {
        Revision { main, sub }
    }
}
