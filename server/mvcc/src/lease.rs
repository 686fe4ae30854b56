//! The minimal lease table the store needs: which leases exist and which keys each holds.
//! TTLs and expiry belong to the lessor outside the store.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use crate::error::MvccError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LeaseTable {
    leases: BTreeMap<i64, BTreeSet<Bytes>>,
}

impl LeaseTable {
    pub fn grant(&mut self, id: i64) -> Result<(), MvccError> {
        if self.leases.contains_key(&id) {
            return Err(MvccError::LeaseExist);
        }
        self.leases.insert(id, BTreeSet::new());
        Ok(())
    }

    pub fn exists(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    /// Removes the lease and returns its keys in key order.
    pub fn revoke(&mut self, id: i64) -> Result<Vec<Bytes>, MvccError> {
        let keys = self.leases.remove(&id).ok_or(MvccError::LeaseNotFound)?;
        Ok(keys.into_iter().collect())
    }

    pub fn keys_of(&self, id: i64) -> Vec<Bytes> {
        self.leases
            .get(&id)
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn ids(&self) -> Vec<i64> {
        self.leases.keys().copied().collect()
    }

    /// Attaches `key` to lease `id` (no-op for lease 0 or an unknown lease: the caller
    /// checked existence before writing).
    pub fn attach(&mut self, id: i64, key: &Bytes) {
        if let Some(keys) = self.leases.get_mut(&id) {
            keys.insert(key.clone());
        }
    }

    pub fn detach(&mut self, id: i64, key: &Bytes) {
        if let Some(keys) = self.leases.get_mut(&id) {
            keys.remove(&key[..]);
        }
    }
}
