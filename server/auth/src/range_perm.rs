//! The merged key ranges one user may read or write: etcd's `unifiedRangePermissions`, where
//! every permission of every role of the user goes into an interval tree per access type and a
//! request is allowed when the tree's intervals cover it. Here the intervals are merged once
//! into disjoint sorted segments, so a check is one binary search.
//!
//! Key order is etcd's "bytes affine" order: an empty byte string sorts after every other
//! string (it stands for +infinity), so a permission whose key is empty covers nothing and a
//! range end of `\0` ("from key") reaches infinity.

use std::cmp::Ordering;

/// A position in etcd's affine key order: a key, or the end of the key space.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Bound {
    Key(Vec<u8>),
    Infinity,
}

impl Bound {
    /// etcd's `BytesAffineComparable`: the empty string is infinity.
    pub fn affine(bytes: &[u8]) -> Bound {
        if bytes.is_empty() {
            Bound::Infinity
        } else {
            Bound::Key(bytes.to_vec())
        }
    }

    fn cmp_key(&self, key: &[u8]) -> Ordering {
        match self {
            Bound::Key(k) => k.as_slice().cmp(key),
            Bound::Infinity => Ordering::Greater,
        }
    }
}

impl Ord for Bound {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Bound::Key(a), Bound::Key(b)) => a.cmp(b),
            (Bound::Key(_), Bound::Infinity) => Ordering::Less,
            (Bound::Infinity, Bound::Key(_)) => Ordering::Greater,
            (Bound::Infinity, Bound::Infinity) => Ordering::Equal,
        }
    }
}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A borrowed [`Bound`], so that checks compare without allocating. The derived order is the
/// affine one: keys by bytes, then infinity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Edge<'a> {
    Key(&'a [u8]),
    Infinity,
}

impl Bound {
    pub fn edge(&self) -> Edge<'_> {
        match self {
            Bound::Key(k) => Edge::Key(k),
            Bound::Infinity => Edge::Infinity,
        }
    }
}

/// The edges of a range request (`range_end` not empty), as `interval_of` without copying.
pub fn range_edges<'a>(key: &'a [u8], range_end: &'a [u8]) -> (Edge<'a>, Edge<'a>) {
    debug_assert!(!range_end.is_empty(), "a single key is not a range");
    let begin = if key.is_empty() {
        Edge::Infinity
    } else {
        Edge::Key(key)
    };
    let end = if range_end == [0] {
        Edge::Infinity
    } else {
        Edge::Key(range_end)
    };
    (begin, end)
}

/// The half-open interval `[begin, end)` etcd builds for a granted permission or a checked
/// request: an empty `range_end` is the single key (`[key, key+"\0")`), a `range_end` of `"\0"`
/// is every key from `key` on, anything else is `[key, range_end)`.
pub fn interval_of(key: &[u8], range_end: &[u8]) -> (Bound, Bound) {
    let begin = Bound::affine(key);
    let end = match range_end {
        [] => {
            let mut next = key.to_vec();
            next.push(0);
            Bound::Key(next)
        }
        [0] => Bound::Infinity,
        end => Bound::Key(end.to_vec()),
    };
    (begin, end)
}

/// Disjoint, sorted, non-adjacent segments `[begin, end)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    segments: Vec<(Bound, Bound)>,
}

impl RangeSet {
    /// Merges intervals the way etcd's interval-tree `Contains` joins them: overlapping or
    /// touching intervals form one segment. Empty and inverted intervals (`end <= begin`)
    /// can never be the first interval that covers a key, and never extend a segment, so
    /// they are dropped.
    pub fn from_intervals(mut intervals: Vec<(Bound, Bound)>) -> RangeSet {
        intervals.retain(|(begin, end)| begin < end);
        intervals.sort_by(|a, b| a.0.cmp(&b.0));
        let mut segments: Vec<(Bound, Bound)> = Vec::with_capacity(intervals.len());
        for (begin, end) in intervals {
            match segments.last_mut() {
                Some((_, last_end)) if begin <= *last_end => {
                    if end > *last_end {
                        *last_end = end;
                    }
                }
                _ => segments.push((begin, end)),
            }
        }
        RangeSet { segments }
    }

    pub fn segments(&self) -> &[(Bound, Bound)] {
        &self.segments
    }

    /// Whether a request on `key` (and `range_end`, etcd's conventions) is covered. As in
    /// etcd: a single key must lie in a segment; a range `[key, end)` needs the segment that
    /// holds `key` to reach `end` — so an empty or inverted range is allowed exactly when
    /// `key` itself is. An empty `key` is infinity and lies in no segment. Allocation-free:
    /// this runs before every read and write.
    pub fn covers(&self, key: &[u8], range_end: &[u8]) -> bool {
        if key.is_empty() {
            return false;
        }
        let after = self
            .segments
            .partition_point(|(begin, _)| begin.cmp_key(key) != Ordering::Greater);
        let Some((_, seg_end)) = after.checked_sub(1).map(|i| &self.segments[i]) else {
            return false;
        };
        if seg_end.cmp_key(key) != Ordering::Greater {
            return false;
        }
        match range_end {
            [] => true,
            [0] => *seg_end == Bound::Infinity,
            end => seg_end.cmp_key(end) != Ordering::Less,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(perms: &[(&[u8], &[u8])]) -> RangeSet {
        RangeSet::from_intervals(perms.iter().map(|(k, e)| interval_of(k, e)).collect())
    }

    #[test]
    fn edges_order_as_bounds() {
        let bounds = [
            Bound::affine(b"\0"),
            Bound::affine(b"a"),
            Bound::affine(b"ab"),
            Bound::Infinity,
        ];
        for a in &bounds {
            for b in &bounds {
                assert_eq!(a.cmp(b), a.edge().cmp(&b.edge()));
            }
        }
        assert_eq!(range_edges(b"a", b"\0"), (Edge::Key(b"a"), Edge::Infinity));
        let (b, e) = interval_of(b"", b"c");
        assert_eq!(range_edges(b"", b"c"), (b.edge(), e.edge()));
    }

    #[test]
    fn empty_string_is_infinity() {
        assert!(Bound::affine(b"") > Bound::affine(b"\xff\xff"));
        assert_eq!(interval_of(b"a", b"\0").1, Bound::Infinity);
        assert_eq!(interval_of(b"a", b"").1, Bound::Key(b"a\0".to_vec()));
    }

    #[test]
    fn touching_ranges_merge_and_cover_across_the_seam() {
        let s = set(&[(b"a", b"c"), (b"c", b"e")]);
        assert_eq!(s.segments().len(), 1);
        assert!(s.covers(b"a", b"e"));
        assert!(!s.covers(b"a", b"f"));
    }

    #[test]
    fn gap_breaks_coverage_but_not_single_keys() {
        let s = set(&[(b"a", b"c"), (b"d", b"e")]);
        assert!(!s.covers(b"a", b"e"));
        assert!(s.covers(b"d", b""));
        assert!(!s.covers(b"c", b""));
    }

    #[test]
    fn from_key_permission_covers_from_key_requests() {
        let s = set(&[(b"k", b"\0")]);
        assert!(s.covers(b"k", b"\0"));
        assert!(s.covers(b"z", b"\0"));
        assert!(!s.covers(b"j", b"\0"));
        assert!(set(&[(b"a", b"z")]).covers(b"a", b"z"));
        assert!(!set(&[(b"a", b"z")]).covers(b"a", b"\0"));
    }

    #[test]
    fn empty_key_permission_grants_nothing() {
        // Observed on etcd 3.4.23: key "" with range_end "\0" lets no read through.
        let s = set(&[(b"", b"\0"), (b"", b"")]);
        assert!(!s.covers(b"a", b""));
        assert!(!s.covers(b"\0", b"\0"));
        assert!(s.segments().is_empty());
    }

    #[test]
    fn empty_and_inverted_requests_follow_their_first_key() {
        // Observed on etcd 3.4.23 with a grant of [b, d).
        let s = set(&[(b"b", b"d")]);
        assert!(s.covers(b"c", b"b"));
        assert!(s.covers(b"c", b"c"));
        assert!(!s.covers(b"d", b"d"));
        assert!(!s.covers(b"d", b"c"));
        assert!(!s.covers(b"b", b"e"));
    }
}
