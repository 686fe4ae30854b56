//! etcd 3.4.23's `pkg/adt` interval tree (red-black, ordered by begin, each node keeping the
//! largest end below it), ported move for move: insertion, rotations, the max bookkeeping and
//! the `visit` pruning that `Contains` relies on. The pruning assumes intervals are not
//! inverted: a subtree is skipped when its [begin, max) lies "right" of the request, which can
//! hide an interval that covers the request when an inverted interval (a permission with
//! `range_end < key`, which etcd accepts) or an inverted request is involved. etcd's verdict
//! on a range then depends on the tree's shape, so ketch builds the same tree in the same
//! order and asks it. Without inverted intervals it answers as the merged segments do.

use std::cmp::Ordering;

use crate::range_perm::{Bound, Edge};

const SENTINEL: usize = 0;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Node {
    begin: Bound,
    end: Bound,
    max: Bound,
    left: usize,
    right: usize,
    parent: usize,
    red: bool,
}

/// etcd's `Interval.Compare(a, b)`: -1 when `a` is left of `b`, 1 when right, 0 when they
/// overlap (as etcd defines it for possibly inverted intervals).
fn compare(a_begin: Edge<'_>, a_end: Edge<'_>, b_begin: Edge<'_>, b_end: Edge<'_>) -> Ordering {
    if a_begin < b_begin && a_end <= b_begin {
        return Ordering::Less;
    }
    if a_begin >= b_end {
        return Ordering::Greater;
    }
    Ordering::Equal
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntervalTree {
    nodes: Vec<Node>,
    root: usize,
}

impl Default for IntervalTree {
    fn default() -> Self {
        let sentinel = Node {
            begin: Bound::Infinity,
            end: Bound::Infinity,
            max: Bound::Infinity,
            left: SENTINEL,
            right: SENTINEL,
            parent: SENTINEL,
            red: false,
        };
        IntervalTree {
            nodes: vec![sentinel],
            root: SENTINEL,
        }
    }
}

impl IntervalTree {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.nodes.len() - 1
    }

    /// etcd's `Insert`: walk down by begin (ties go right), link, fix colours.
    pub fn insert(&mut self, begin: Bound, end: Bound) {
        let z = self.nodes.len();
        self.nodes.push(Node {
            max: end.clone(),
            begin,
            end,
            left: SENTINEL,
            right: SENTINEL,
            parent: SENTINEL,
            red: true,
        });
        let (mut y, mut x) = (SENTINEL, self.root);
        while x != SENTINEL {
            y = x;
            x = if self.nodes[z].begin < self.nodes[x].begin {
                self.nodes[x].left
            } else {
                self.nodes[x].right
            };
        }
        self.nodes[z].parent = y;
        if y == SENTINEL {
            self.root = z;
        } else {
            if self.nodes[z].begin < self.nodes[y].begin {
                self.nodes[y].left = z;
            } else {
                self.nodes[y].right = z;
            }
            self.update_max(y);
        }
        self.insert_fixup(z);
    }

    fn red(&self, x: usize) -> bool {
        x != SENTINEL && self.nodes[x].red
    }

    /// etcd's `updateMax`, including its early stop when a node's max did not change.
    fn update_max(&mut self, mut x: usize) {
        while x != SENTINEL {
            let n = &self.nodes[x];
            let mut max = &n.end;
            if n.left != SENTINEL && self.nodes[n.left].max > *max {
                max = &self.nodes[n.left].max;
            }
            if n.right != SENTINEL && self.nodes[n.right].max > *max {
                max = &self.nodes[n.right].max;
            }
            if n.max == *max {
                return;
            }
            let max = max.clone();
            self.nodes[x].max = max;
            x = self.nodes[x].parent;
        }
    }

    fn insert_fixup(&mut self, mut z: usize) {
        while self.red(self.nodes[z].parent) {
            let p = self.nodes[z].parent;
            let g = self.nodes[p].parent;
            let left_side = p == self.nodes[g].left;
            let uncle = if left_side {
                self.nodes[g].right
            } else {
                self.nodes[g].left
            };
            if self.red(uncle) {
                self.nodes[uncle].red = false;
                self.nodes[p].red = false;
                self.nodes[g].red = true;
                z = g;
                continue;
            }
            let inner = if left_side {
                self.nodes[p].right
            } else {
                self.nodes[p].left
            };
            if z == inner {
                z = p;
                self.rotate(z, left_side);
            }
            let p = self.nodes[z].parent;
            let g = self.nodes[p].parent;
            self.nodes[p].red = false;
            self.nodes[g].red = true;
            self.rotate(g, !left_side);
        }
        let root = self.root;
        self.nodes[root].red = false;
    }

    /// etcd's `rotateLeft` (`left == true`) and `rotateRight`, with their max updates in
    /// etcd's order.
    fn rotate(&mut self, x: usize, left: bool) {
        let y = if left {
            self.nodes[x].right
        } else {
            self.nodes[x].left
        };
        if y == SENTINEL {
            return;
        }
        let inner = if left {
            self.nodes[y].left
        } else {
            self.nodes[y].right
        };
        if left {
            self.nodes[x].right = inner;
        } else {
            self.nodes[x].left = inner;
        }
        if inner != SENTINEL {
            self.nodes[inner].parent = x;
        }
        self.update_max(x);
        self.replace_parent(x, y);
        if left {
            self.nodes[y].left = x;
        } else {
            self.nodes[y].right = x;
        }
        self.update_max(y);
    }

    fn replace_parent(&mut self, x: usize, y: usize) {
        let xp = self.nodes[x].parent;
        self.nodes[y].parent = xp;
        if xp == SENTINEL {
            self.root = y;
        } else {
            if x == self.nodes[xp].left {
                self.nodes[xp].left = y;
            } else {
                self.nodes[xp].right = y;
            }
            self.update_max(xp);
        }
        self.nodes[x].parent = y;
    }

    /// etcd's `visit`: calls `f` on the nodes it considers overlapping `[begin, end)`, in
    /// order, pruning as etcd prunes; stops when `f` returns false.
    fn visit<'a>(
        &'a self,
        x: usize,
        begin: Edge<'_>,
        end: Edge<'_>,
        f: &mut impl FnMut(&'a Node) -> bool,
    ) -> bool {
        if x == SENTINEL {
            return true;
        }
        let n = &self.nodes[x];
        match compare(begin, end, n.begin.edge(), n.end.edge()) {
            Ordering::Less => self.visit(n.left, begin, end, f),
            Ordering::Greater => {
                if compare(n.begin.edge(), n.max.edge(), begin, end) != Ordering::Equal {
                    return true;
                }
                self.visit(n.left, begin, end, f) && self.visit(n.right, begin, end, f)
            }
            Ordering::Equal => {
                self.visit(n.left, begin, end, f) && f(n) && self.visit(n.right, begin, end, f)
            }
        }
    }

    /// etcd's `Contains`: the visited intervals must be contiguous and reach from at or before
    /// `begin` to at or after `end`. Allocation-free.
    pub fn contains(&self, begin: Edge<'_>, end: Edge<'_>) -> bool {
        let mut first: Option<(Edge<'_>, Edge<'_>)> = None;
        let mut contiguous = true;
        self.visit(self.root, begin, end, &mut |n| {
            let Some((_, max_end)) = first.as_mut() else {
                first = Some((n.begin.edge(), n.end.edge()));
                return true;
            };
            if *max_end < n.begin.edge() {
                contiguous = false;
                return false;
            }
            if n.end.edge() > *max_end {
                *max_end = n.end.edge();
            }
            true
        });
        match first {
            Some((min_begin, max_end)) => contiguous && max_end >= end && min_begin <= begin,
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::range_perm::interval_of;

    fn tree(perms: &[(&[u8], &[u8])]) -> IntervalTree {
        let mut t = IntervalTree::default();
        for (k, e) in perms {
            let (b, e) = interval_of(k, e);
            t.insert(b, e);
        }
        t
    }

    fn contains(t: &IntervalTree, key: &[u8], range_end: &[u8]) -> bool {
        let (b, e) = interval_of(key, range_end);
        t.contains(b.edge(), e.edge())
    }

    #[test]
    fn etcd_denies_this_inverted_range_because_of_pruning() {
        // Observed on etcd 3.4.23: READ on [\0, +inf), [a, b), b; request [ca, a) denied,
        // although "ca" lies in [\0, +inf).
        let t = tree(&[(b"\0", b"\0"), (b"a", b"b"), (b"b", b"")]);
        assert!(!contains(&t, b"ca", b"a"));
        assert!(contains(&t, b"ca", b"cb"));
        assert!(contains(&t, b"ca", b"\0"));
    }

    /// Without inverted intervals, etcd's tree answers every range request as the merged
    /// segments do; seeded from `KETCH_AUTH_SEED` when set.
    #[test]
    fn tree_agrees_with_merged_segments_unless_inverted() {
        use crate::range_perm::RangeSet;
        use rand::{Rng, SeedableRng};
        let seed = std::env::var("KETCH_AUTH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(7);
        eprintln!("seed {seed}");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let key = |rng: &mut rand::rngs::StdRng| -> Vec<u8> {
            (0..rng.random_range(0..3))
                .map(|_| [0u8, b'a', b'b', b'c'][rng.random_range(0..4)])
                .collect()
        };
        // A random (key, range_end) and its interval: from-key one time in five.
        let range = |rng: &mut rand::rngs::StdRng| {
            let k = key(rng);
            let e = if rng.random_bool(0.2) {
                vec![0]
            } else {
                key(rng)
            };
            let (b, end) = interval_of(&k, &e);
            (k, e, b, end)
        };
        for _ in 0..500 {
            let mut intervals = Vec::new();
            for _ in 0..rng.random_range(0..20) {
                let (_, _, b, end) = range(&mut rng);
                if end > b {
                    intervals.push((b, end));
                }
            }
            let mut t = IntervalTree::default();
            for (b, e) in &intervals {
                t.insert(b.clone(), e.clone());
            }
            let merged = RangeSet::from_intervals(intervals.clone());
            for _ in 0..50 {
                let (k, e, b, end) = range(&mut rng);
                if e.is_empty() || end < b {
                    continue;
                }
                assert_eq!(
                    t.contains(b.edge(), end.edge()),
                    merged.covers(&k, &e),
                    "{k:?}..{e:?} over {intervals:?}"
                );
            }
        }
    }

    #[test]
    fn red_black_shape_stays_balanced() {
        let mut t = IntervalTree::default();
        for i in 0..200u8 {
            t.insert(Bound::Key(vec![i]), Bound::Key(vec![i, 1]));
        }
        assert_eq!(t.len(), 200);
        fn height(t: &IntervalTree, x: usize) -> usize {
            if x == SENTINEL {
                return 0;
            }
            1 + height(t, t.nodes[x].left).max(height(t, t.nodes[x].right))
        }
        assert!(height(&t, t.root) <= 16, "height {}", height(&t, t.root));
        assert!(contains(&t, &[10], &[10, 1]));
    }
}
