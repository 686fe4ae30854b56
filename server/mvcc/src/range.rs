//! etcd 3.4's Range (`applierV3backend.Range` over `rangeKeys`): count is the number of keys
//! in the span before the min/max filters; sorting or a filter makes the store fetch every
//! key, then filter, sort and cut to `limit`; otherwise it fetches `limit + 1` to learn `more`.

use std::cmp::Ordering;

use ketch_proto::RangeRequest;
use ketch_proto::RangeResponse;
use ketch_proto::mvccpb::KeyValue;
use ketch_proto::range_request::{SortOrder, SortTarget};

use crate::error::MvccError;
use crate::key_span::KeySpan;
use crate::store::{Store, header};

impl Store {
    /// Range as seen by a request whose reads are at `cur_rev` (inside a txn, the txn's own
    /// writes count). The header carries `cur_rev`, as etcd's inner txn responses do.
    pub(crate) fn range_at(
        &self,
        req: &RangeRequest,
        cur_rev: i64,
    ) -> Result<RangeResponse, MvccError> {
        let rev = self.check_read_rev_at(req.revision, cur_rev)?;
        let has_filter = req.min_mod_revision != 0
            || req.max_mod_revision != 0
            || req.min_create_revision != 0
            || req.max_create_revision != 0;
        let fetch_all = req.sort_order != SortOrder::None as i32 || has_filter;
        let fetch_max = if req.limit <= 0 || fetch_all {
            usize::MAX
        } else {
            req.limit as usize + 1
        };
        let target_is_value = req.sort_target == SortTarget::Value as i32;
        // etcd strips values after sorting, so a sort by value needs them until then.
        // (A non-KEY target sorts even with order NONE.)
        let with_value = !req.keys_only || target_is_value;
        let span = KeySpan::new(&req.key, &req.range_end);
        let mut count = 0i64;
        let mut kvs = Vec::new();
        self.for_each_in(&span, |k, h| {
            if let Some(v) = h.live_at(rev) {
                count += 1;
                if !req.count_only && kvs.len() < fetch_max {
                    kvs.push(v.to_kv(k, with_value));
                }
            }
        });
        if has_filter {
            kvs.retain(|kv| passes_filters(req, kv));
        }
        sort_kvs(req, &mut kvs);
        let mut more = false;
        if req.limit > 0 && kvs.len() > req.limit as usize {
            kvs.truncate(req.limit as usize);
            more = true;
        }
        if req.keys_only && with_value {
            kvs.iter_mut().for_each(|kv| kv.value = bytes::Bytes::new());
        }
        Ok(RangeResponse {
            header: header(cur_rev),
            kvs,
            more,
            count,
        })
    }
}

fn passes_filters(req: &RangeRequest, kv: &KeyValue) -> bool {
    !(req.max_mod_revision != 0 && kv.mod_revision > req.max_mod_revision
        || req.min_mod_revision != 0 && kv.mod_revision < req.min_mod_revision
        || req.max_create_revision != 0 && kv.create_revision > req.max_create_revision
        || req.min_create_revision != 0 && kv.create_revision < req.min_create_revision)
}

/// etcd sorts only when asked, or ascending when the target is not KEY (results are already
/// in key order). etcd 3.4.23 is built with Go 1.19, whose `sort.Sort` is an insertion sort up
/// to 12 elements, i.e. stable: ties keep key order, also when descending; a stable sort on the
/// reversed comparison reproduces that. Above 12 elements Go's pdqsort is not stable and etcd's
/// order among ties is an artefact of it; ketch keeps them in key order.
fn sort_kvs(req: &RangeRequest, kvs: &mut [KeyValue]) {
    let target = SortTarget::try_from(req.sort_target).unwrap_or(SortTarget::Key);
    let mut order = SortOrder::try_from(req.sort_order).unwrap_or(SortOrder::None);
    if target != SortTarget::Key && order == SortOrder::None {
        order = SortOrder::Ascend;
    }
    let cmp = |a: &KeyValue, b: &KeyValue| -> Ordering {
        match target {
            SortTarget::Key => a.key.cmp(&b.key),
            SortTarget::Version => a.version.cmp(&b.version),
            SortTarget::Create => a.create_revision.cmp(&b.create_revision),
            SortTarget::Mod => a.mod_revision.cmp(&b.mod_revision),
            SortTarget::Value => a.value.cmp(&b.value),
        }
    };
    match order {
        SortOrder::None => {}
        SortOrder::Ascend if target == SortTarget::Key => {}
        SortOrder::Ascend => kvs.sort_by(cmp),
        SortOrder::Descend => kvs.sort_by(|a, b| cmp(b, a)),
    }
}
