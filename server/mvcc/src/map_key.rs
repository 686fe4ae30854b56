//! The key type of the store's `BTreeMap`: short keys live inline in the tree node, so a
//! lookup compares them without following a pointer per visited key (the cache misses that
//! dominate point lookups in a large map); longer keys fall back to their shared buffer.
//! Ordered exactly as the key bytes, so the map can be searched with `&[u8]`.

use std::borrow::Borrow;
use std::cmp::Ordering;

use bytes::Bytes;

/// Keys up to this many bytes are stored inline (the enum stays 32 bytes + tag).
const INLINE_KEY_BYTES: usize = 30;

#[derive(Clone)]
pub(crate) enum MapKey {
    Inline {
        len: u8,
        bytes: [u8; INLINE_KEY_BYTES],
    },
    Shared(Bytes),
}

impl MapKey {
    pub fn new(key: &Bytes) -> Self {
        Self::inline(key).unwrap_or_else(|| MapKey::Shared(key.clone()))
    }

    /// The inline form of `key`, or `None` when it is too long to be inline. It holds no
    /// reference to `key`'s buffer.
    pub fn inline(key: &[u8]) -> Option<Self> {
        if key.len() > INLINE_KEY_BYTES {
            return None;
        }
        let mut bytes = [0u8; INLINE_KEY_BYTES];
        bytes[..key.len()].copy_from_slice(key);
        Some(MapKey::Inline {
            len: key.len() as u8,
            bytes,
        })
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            MapKey::Inline { len, bytes } => &bytes[..*len as usize],
            MapKey::Shared(b) => b,
        }
    }
}

impl Borrow<[u8]> for MapKey {
    fn borrow(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for MapKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for MapKey {}

impl PartialOrd for MapKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MapKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl std::fmt::Debug for MapKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", Bytes::copy_from_slice(self.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_byte_order_across_inline_and_shared() {
        let long = Bytes::from(vec![b'a'; 40]);
        let mut keys: Vec<MapKey> = [&b"b"[..], b"a", b"", &long, b"a\0", b"aaaa"]
            .iter()
            .map(|k| MapKey::new(&Bytes::copy_from_slice(k)))
            .collect();
        keys.sort();
        let got: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let mut want: Vec<&[u8]> = vec![b"b", b"a", b"", &long, b"a\0", b"aaaa"];
        want.sort();
        assert_eq!(got, want);
        assert!(matches!(MapKey::new(&long), MapKey::Shared(_)));
    }
}
