//! A bbolt database writer: lays out named top-level buckets of sorted key/value pairs as one
//! complete bbolt file (format version 2, 4096-byte pages), in memory. Pure: no I/O.
//!
//! Layout written: pages 0 and 1 are the two meta pages (txid 0 and 1, identical otherwise);
//! then every bucket's pages, leaves first and the branch levels above them; then the root
//! bucket's pages. Every page below the high-water mark is reachable, so there is no free
//! page, and, as etcd 3.4 writes it (`NoFreelistSync`), no freelist page either: the meta's
//! freelist id is `u64::MAX` and bbolt rebuilds the (empty) freelist when it opens the file.
//! A bucket whose leaf fits in a quarter page is inlined in its parent, as bbolt does.
//!
//! Page header (16 bytes, little-endian): u64 id, u16 flags, u16 element count, u32 overflow
//! (pages after the first that the page spans). Leaf element: u32 flags (1 = bucket), u32
//! pos (from the element to its key), u32 key size, u32 value size; branch element: u32 pos,
//! u32 key size, u64 child page id; keys and values follow the element array.

pub const PAGE_SIZE: usize = 4096;
const PAGE_HEADER_BYTES: usize = 16;
/// Leaf and branch elements are both 16 bytes.
const ELEMENT_BYTES: usize = 16;
const META_CHECKSUMMED_BYTES: usize = 56;
const MAGIC: u32 = 0xED0C_DAED;
const FORMAT_VERSION: u32 = 2;
const PAGE_BRANCH: u16 = 0x01;
const PAGE_LEAF: u16 = 0x02;
const PAGE_META: u16 = 0x04;
const BUCKET_LEAF_FLAG: u32 = 0x01;
/// bbolt's `pgidNoFreelist`: the freelist is not stored.
const NO_FREELIST: u64 = u64::MAX;
/// bbolt inlines a bucket whose leaf (header included) is at most a quarter page.
const MAX_INLINE_BUCKET_BYTES: usize = PAGE_SIZE / 4;
/// The element count is a u16 in the page header.
const MAX_ELEMENTS_PER_PAGE: usize = u16::MAX as usize;

/// One top-level bucket: its name and its pairs, sorted by key, keys unique.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bucket {
    pub name: Vec<u8>,
    pub entries: Vec<(Vec<u8>, Vec<u8>)>,
}

/// The bytes of a bbolt file holding `buckets` (sorted by name, names unique). Panics on
/// unsorted or duplicate names or keys: the caller builds them sorted.
pub fn build_db(buckets: &[Bucket]) -> Vec<u8> {
    assert_strictly_sorted(buckets.iter().map(|b| &b.name[..]), "bucket names");
    let mut w = PageWriter {
        out: vec![0; 2 * PAGE_SIZE],
    };
    let values: Vec<Vec<u8>> = buckets.iter().map(|b| bucket_value(&mut w, b)).collect();
    let root_elements: Vec<Leaf<'_>> = buckets
        .iter()
        .zip(&values)
        .map(|(b, v)| Leaf {
            flags: BUCKET_LEAF_FLAG,
            key: &b.name,
            value: v,
        })
        .collect();
    let root = write_tree(&mut w, &root_elements);
    let high_water = w.next_pgid();
    let mut out = w.out;
    for txid in 0..2u64 {
        write_meta(&mut out, txid, root, high_water);
    }
    out
}

struct Leaf<'a> {
    flags: u32,
    key: &'a [u8],
    value: &'a [u8],
}

/// Appends whole pages; `out.len()` is always a multiple of the page size.
struct PageWriter {
    out: Vec<u8>,
}

impl PageWriter {
    fn next_pgid(&self) -> u64 {
        (self.out.len() / PAGE_SIZE) as u64
    }

    /// Places an encoded page (header id and overflow unset) at the next page id.
    fn place(&mut self, mut page: Vec<u8>) -> u64 {
        let id = self.next_pgid();
        let pages = page.len().div_ceil(PAGE_SIZE);
        page[0..8].copy_from_slice(&id.to_le_bytes());
        page[12..16].copy_from_slice(&((pages - 1) as u32).to_le_bytes());
        page.resize(pages * PAGE_SIZE, 0);
        self.out.extend_from_slice(&page);
        id
    }
}

/// A bucket's value in its parent: its header (root page id, sequence 0), followed by its
/// leaf page when inlined (root id 0).
fn bucket_value(w: &mut PageWriter, b: &Bucket) -> Vec<u8> {
    assert_strictly_sorted(b.entries.iter().map(|(k, _)| &k[..]), "bucket keys");
    let elements: Vec<Leaf<'_>> = b
        .entries
        .iter()
        .map(|(k, v)| Leaf {
            flags: 0,
            key: k,
            value: v,
        })
        .collect();
    let leaf_bytes: usize = PAGE_HEADER_BYTES + elements.iter().map(leaf_size).sum::<usize>();
    let mut value = vec![0u8; 16];
    if leaf_bytes <= MAX_INLINE_BUCKET_BYTES {
        value.extend_from_slice(&leaf_page(&elements));
    } else {
        let root = write_tree(w, &elements);
        value[0..8].copy_from_slice(&root.to_le_bytes());
    }
    value
}

/// Writes a B+tree of `elements` (sorted) bottom-up and returns its root page id.
fn write_tree(w: &mut PageWriter, elements: &[Leaf<'_>]) -> u64 {
    let mut level: Vec<(&[u8], u64)> = split(elements, leaf_size)
        .into_iter()
        .map(|chunk| {
            (
                chunk.first().map_or(&[][..], |e| e.key),
                w.place(leaf_page(chunk)),
            )
        })
        .collect();
    while level.len() > 1 {
        level = split(&level, |(k, _)| ELEMENT_BYTES + k.len())
            .into_iter()
            .map(|chunk| (chunk[0].0, w.place(branch_page(chunk))))
            .collect();
    }
    level[0].1
}

fn leaf_size(e: &Leaf<'_>) -> usize {
    ELEMENT_BYTES + e.key.len() + e.value.len()
}

/// Groups consecutive items into pages: a page takes items while they fit, and at least one
/// (an item larger than a page gets a page of its own with overflow pages). Never empty.
fn split<T>(items: &[T], size: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, PAGE_HEADER_BYTES);
    for (i, item) in items.iter().enumerate() {
        let n = size(item);
        let full = bytes + n > PAGE_SIZE || i - start == MAX_ELEMENTS_PER_PAGE;
        if i > start && full {
            chunks.push(&items[start..i]);
            (start, bytes) = (i, PAGE_HEADER_BYTES);
        }
        bytes += n;
    }
    chunks.push(&items[start..]);
    chunks
}

fn page_with_header(flags: u16, count: usize) -> Vec<u8> {
    let mut p = vec![0u8; PAGE_HEADER_BYTES + ELEMENT_BYTES * count];
    p[8..10].copy_from_slice(&flags.to_le_bytes());
    p[10..12].copy_from_slice(&(count as u16).to_le_bytes());
    p
}

/// A leaf page (id 0, no overflow: what an inline bucket holds, or `place` fills them in).
fn leaf_page(elements: &[Leaf<'_>]) -> Vec<u8> {
    let mut p = page_with_header(PAGE_LEAF, elements.len());
    for (i, e) in elements.iter().enumerate() {
        let at = PAGE_HEADER_BYTES + ELEMENT_BYTES * i;
        let pos = (p.len() - at) as u32;
        let fields = [e.flags, pos, e.key.len() as u32, e.value.len() as u32];
        for (j, f) in fields.iter().enumerate() {
            p[at + 4 * j..at + 4 * j + 4].copy_from_slice(&f.to_le_bytes());
        }
        p.extend_from_slice(e.key);
        p.extend_from_slice(e.value);
    }
    p
}

/// A branch page: per child, its first key and page id.
fn branch_page(children: &[(&[u8], u64)]) -> Vec<u8> {
    let mut p = page_with_header(PAGE_BRANCH, children.len());
    for (i, (key, pgid)) in children.iter().enumerate() {
        let at = PAGE_HEADER_BYTES + ELEMENT_BYTES * i;
        let pos = (p.len() - at) as u32;
        p[at..at + 4].copy_from_slice(&pos.to_le_bytes());
        p[at + 4..at + 8].copy_from_slice(&(key.len() as u32).to_le_bytes());
        p[at + 8..at + 16].copy_from_slice(&pgid.to_le_bytes());
        p.extend_from_slice(key);
    }
    p
}

/// Meta page `txid % 2`: magic, version, page size, flags, root bucket (root page, sequence),
/// freelist page, high-water page id, txid, then FNV-1a 64 of those 56 bytes.
fn write_meta(out: &mut [u8], txid: u64, root: u64, high_water: u64) {
    let page = &mut out[txid as usize * PAGE_SIZE..(txid as usize + 1) * PAGE_SIZE];
    page[0..8].copy_from_slice(&txid.to_le_bytes());
    page[8..10].copy_from_slice(&PAGE_META.to_le_bytes());
    let mut meta = Vec::with_capacity(META_CHECKSUMMED_BYTES + 8);
    meta.extend_from_slice(&MAGIC.to_le_bytes());
    meta.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    meta.extend_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
    meta.extend_from_slice(&0u32.to_le_bytes());
    for n in [root, 0, NO_FREELIST, high_water, txid] {
        meta.extend_from_slice(&n.to_le_bytes());
    }
    let checksum = fnv1a_64(&meta);
    meta.extend_from_slice(&checksum.to_le_bytes());
    page[PAGE_HEADER_BYTES..PAGE_HEADER_BYTES + meta.len()].copy_from_slice(&meta);
}

fn fnv1a_64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET_BASIS, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

fn assert_strictly_sorted<'a>(mut keys: impl Iterator<Item = &'a [u8]>, what: &str) {
    let Some(mut prev) = keys.next() else { return };
    for k in keys {
        assert!(prev < k, "bbolt export: {what} not sorted or not unique");
        prev = k;
    }
}

#[cfg(test)]
mod tests {
    //! Reads the written file back with a small independent bbolt reader and checks every
    //! pair, the meta checksums and that each page is used exactly once (what bbolt's
    //! `tx.Check` verifies). Deterministic sizes cover inline buckets, multi-level trees and
    //! values spanning overflow pages.
    use super::*;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
    }
    fn u32_at(b: &[u8], at: usize) -> usize {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
    }
    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    type Pairs = Vec<(u32, Vec<u8>, Vec<u8>)>;

    /// Walks the tree at `page` (an offset into `buf`), appending leaf pairs in order and
    /// marking the pages it owns in `used`.
    fn walk(db: &[u8], buf: &[u8], page: usize, used: &mut [u32], out: &mut Pairs) {
        let (flags, count) = (u16_at(buf, page + 8), u16_at(buf, page + 10) as usize);
        for i in 0..count {
            let at = page + PAGE_HEADER_BYTES + ELEMENT_BYTES * i;
            if flags == PAGE_LEAF {
                let (f, pos, ks, vs) = (
                    u32_at(buf, at),
                    u32_at(buf, at + 4),
                    u32_at(buf, at + 8),
                    u32_at(buf, at + 12),
                );
                let k = buf[at + pos..at + pos + ks].to_vec();
                let v = buf[at + pos + ks..at + pos + ks + vs].to_vec();
                out.push((f as u32, k, v));
            } else {
                assert_eq!(flags, PAGE_BRANCH);
                let (pos, ks, child) = (u32_at(buf, at), u32_at(buf, at + 4), u64_at(buf, at + 8));
                let first = out.len();
                visit(db, child, used, out);
                assert_eq!(
                    out[first].1,
                    buf[at + pos..at + pos + ks],
                    "branch key = child's first key"
                );
            }
        }
    }

    fn visit(db: &[u8], pgid: u64, used: &mut [u32], out: &mut Pairs) {
        let page = pgid as usize * PAGE_SIZE;
        assert_eq!(u64_at(db, page), pgid);
        let overflow = u32_at(db, page + 12);
        for n in &mut used[pgid as usize..=pgid as usize + overflow] {
            *n += 1;
        }
        walk(db, db, page, used, out);
    }

    fn read_back(db: &[u8]) -> Vec<(Vec<u8>, Pairs)> {
        assert_eq!(db.len() % PAGE_SIZE, 0);
        for txid in 0..2 {
            let m = txid * PAGE_SIZE + PAGE_HEADER_BYTES;
            assert_eq!(u32_at(db, m) as u32, MAGIC);
            assert_eq!(u64_at(db, m + 56), fnv1a_64(&db[m..m + 56]));
            assert_eq!(u64_at(db, m + 48), txid as u64);
            assert_eq!(u64_at(db, m + 32), NO_FREELIST);
            assert_eq!(u64_at(db, m + 40) as usize, db.len() / PAGE_SIZE);
        }
        let mut used = vec![0u32; db.len() / PAGE_SIZE];
        used[0] = 1;
        used[1] = 1;
        let mut root = Vec::new();
        visit(db, u64_at(db, PAGE_HEADER_BYTES + 16), &mut used, &mut root);
        let buckets = root
            .into_iter()
            .map(|(flags, name, value)| {
                assert_eq!(flags, BUCKET_LEAF_FLAG);
                let mut pairs = Vec::new();
                match u64_at(&value, 0) {
                    0 => walk(db, &value, 16, &mut used, &mut pairs),
                    pgid => visit(db, pgid, &mut used, &mut pairs),
                }
                (name, pairs)
            })
            .collect();
        assert!(
            used.iter().all(|n| *n == 1),
            "every page used once: {used:?}"
        );
        buckets
    }

    fn sample(name: &str, n: usize, value_bytes: impl Fn(usize) -> usize) -> Bucket {
        let entries = (0..n)
            .map(|i| {
                (
                    format!("key{i:08}").into_bytes(),
                    vec![i as u8; value_bytes(i)],
                )
            })
            .collect();
        Bucket {
            name: name.into(),
            entries,
        }
    }

    #[test]
    fn buckets_read_back_with_every_page_used_once() {
        let buckets = vec![
            sample("big", 5000, |i| i % 300),
            sample("empty", 0, |_| 0),
            sample("huge-values", 5, |i| i * 7000),
            sample("small", 3, |_| 4),
        ];
        let db = build_db(&buckets);
        let got = read_back(&db);
        assert_eq!(got.len(), buckets.len());
        for (b, (name, pairs)) in buckets.iter().zip(got) {
            assert_eq!(b.name, name);
            let pairs: Vec<_> = pairs
                .into_iter()
                .map(|(f, k, v)| {
                    assert_eq!(f, 0);
                    (k, v)
                })
                .collect();
            assert_eq!(
                b.entries,
                pairs,
                "bucket {:?}",
                String::from_utf8_lossy(&name)
            );
        }
    }

    #[test]
    fn small_buckets_are_inline_and_large_ones_get_pages() {
        let db = build_db(&[sample("a", 3, |_| 4), sample("b", 1000, |_| 10)]);
        let root = u64_at(&db, PAGE_HEADER_BYTES + 16) as usize * PAGE_SIZE;
        let value_of = |i: usize| {
            let at = root + PAGE_HEADER_BYTES + ELEMENT_BYTES * i;
            let pos = u32_at(&db, at + 4) + u32_at(&db, at + 8);
            u64_at(&db, at + pos)
        };
        assert_eq!(value_of(0), 0, "inline");
        assert_ne!(value_of(1), 0, "own pages");
    }

    #[test]
    #[should_panic(expected = "not sorted")]
    fn unsorted_keys_panic() {
        let b = Bucket {
            name: b"x".to_vec(),
            entries: vec![(b"b".to_vec(), vec![]), (b"a".to_vec(), vec![])],
        };
        build_db(&[b]);
    }
}
