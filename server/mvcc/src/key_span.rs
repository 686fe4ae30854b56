//! etcd's key/range_end conventions: empty range_end = the single key; range_end "\0" = every
//! key >= key; otherwise the half-open interval [key, range_end), empty when range_end <= key.

use std::ops::Bound;

#[derive(Debug, Clone, Copy)]
pub(crate) enum KeySpan<'a> {
    Empty,
    One(&'a [u8]),
    Range((Bound<&'a [u8]>, Bound<&'a [u8]>)),
}

impl<'a> KeySpan<'a> {
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeySpan::One(key),
            [0] => KeySpan::Range((Bound::Included(key), Bound::Unbounded)),
            end if end <= key => KeySpan::Empty,
            end => KeySpan::Range((Bound::Included(key), Bound::Excluded(end))),
        }
    }

    pub fn contains(&self, k: &[u8]) -> bool {
        match *self {
            KeySpan::Empty => false,
            KeySpan::One(key) => key == k,
            KeySpan::Range((Bound::Included(start), end)) => {
                k >= start
                    && match end {
                        Bound::Excluded(end) => k < end,
                        _ => true,
                    }
            }
            KeySpan::Range(_) => unreachable!("spans start inclusive"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conventions_match_etcd() {
        assert!(KeySpan::new(b"a", b"").contains(b"a"));
        assert!(!KeySpan::new(b"a", b"").contains(b"ab"));
        let from = KeySpan::new(b"b", b"\0");
        assert!(from.contains(b"b") && from.contains(b"zzz") && !from.contains(b"a"));
        let prefix = KeySpan::new(b"a/", b"a0");
        assert!(prefix.contains(b"a/") && prefix.contains(b"a/x") && !prefix.contains(b"a0"));
        assert!(matches!(KeySpan::new(b"b", b"a"), KeySpan::Empty));
        assert!(matches!(KeySpan::new(b"b", b"b"), KeySpan::Empty));
    }
}
