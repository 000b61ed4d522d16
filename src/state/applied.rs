//! The `applied` tree: what the last applies created.
//!
//! Since schema 3 the tree holds one record, [`SET_KEY`]: every applied resource, sorted by key.
//! One record instead of one per resource because sled rewrites a leaf for every insert: the
//! 2,000 resources of a large repository written one by one left ~13 MB of freed leaves in
//! partly used allocator pages at start-up, written as one record ~4 MB
//! (docs/ingest-performance.md, "Idle memory"). Each apply records the whole set; it is
//! compared with the stored one as encoded bytes, so a restart on the same revision decodes
//! nothing and writes only the revision.
//!
//! Guarantees: [`Store::applied`] is sorted by key, keys unique, and a set that is not is
//! reported as corruption; [`Store::record_applied_set`] writes the applied revision and the
//! set in one transaction and flushes before returning, so after a crash either all of an apply
//! is recorded or none of it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::TransactionError;

use super::{Error, Store, codec, meta_keys, trees};

/// The key of the applied set, the `applied` tree's only record.
const SET_NAME: &str = "set";
const SET_KEY: &[u8] = SET_NAME.as_bytes();

/// One applied resource.
///
/// `summary` is shown in plans and status output; it must never contain secret values (secret
/// fields enter it as their reference, `env:NAME`, `file:name` or `sealed:<hash>`; a state
/// written by a build before plan format 1.1 holds a keyed hash of the reference instead).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedResource {
    /// The resource key (unique, non-empty), e.g. `freshdesk-main/webhook/ticket-created`.
    pub key: String,
    /// The fingerprint of the desired state that was applied.
    pub fingerprint: String,
    /// A redaction-safe summary for display.
    pub summary: serde_json::Value,
}

impl Store {
    /// All applied resources, sorted by key.
    pub fn applied(&self) -> Result<Vec<AppliedResource>, Error> {
        let t = self.t()?;
        match t.applied.get(SET_KEY) {
            Ok(Some(v)) => decode_set(&v),
            Ok(None) => Ok(Vec::new()),
            Err(e) => Err(self.storage(e)),
        }
    }

    /// One applied resource by key.
    pub fn get_applied(&self, key: &str) -> Result<Option<AppliedResource>, Error> {
        Ok(self.applied()?.into_iter().find(|r| r.key == key))
    }

    /// Records that the applied resources are now exactly `resources` (in any order), at
    /// `revision`, in one transaction, then flushes. The stored set is compared as encoded
    /// bytes, without decoding it: when nothing changed (a restart on the same revision), only
    /// the revision is written. Returns whether the set changed.
    ///
    /// An empty key or a key given twice is [`Error::InvalidBatch`] and writes nothing.
    pub fn record_applied_set(
        &self,
        revision: &str,
        resources: &[AppliedResource],
    ) -> Result<bool, Error> {
        let t = self.t()?;
        let _writing = self.writing();
        let mut set: BTreeMap<&str, &AppliedResource> = BTreeMap::new();
        for r in resources {
            if r.key.is_empty() {
                return Err(Error::InvalidBatch {
                    detail: "empty resource key".to_owned(),
                });
            }
            if set.insert(r.key.as_str(), r).is_some() {
                return Err(Error::InvalidBatch {
                    detail: format!("resource {:?} appears more than once", r.key),
                });
            }
        }
        let set: Vec<&AppliedResource> = set.into_values().collect();
        let bytes = codec::encode(trees::APPLIED, SET_NAME, &set)?;
        let revision_bytes = codec::encode(trees::META, meta_keys::APPLIED_REVISION, &revision)?;
        let result: Result<bool, TransactionError<Error>> =
            (&t.meta, &t.applied).transaction(|(meta, applied)| {
                meta.insert(
                    meta_keys::APPLIED_REVISION.as_bytes(),
                    revision_bytes.as_slice(),
                )?;
                let changed = applied.get(SET_KEY)?.is_none_or(|v| *v != *bytes);
                if changed {
                    applied.insert(SET_KEY, bytes.as_slice())?;
                }
                Ok(changed)
            });
        let changed = self.tx_result(result)?;
        self.flush()?;
        Ok(changed)
    }

    /// Schema 2 → 3: the per-resource records (each repeating its key) become the one set
    /// record, in one transaction that also writes the new schema version.
    pub(super) fn migrate_v2_applied(&self) -> Result<(), Error> {
        let t = self.t()?;
        let mut set = Vec::new();
        let mut old_keys = Vec::new();
        for item in t.applied.iter() {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let record: AppliedResource = codec::decode(trees::APPLIED, &k, &v)?;
            if record.key.as_bytes() != &*k {
                return Err(Error::Corrupt {
                    tree: trees::APPLIED,
                    key: String::from_utf8_lossy(&k).into_owned(),
                    detail: format!("record is for key {:?}", record.key),
                });
            }
            set.push(record);
            old_keys.push(k);
        }
        // sled iterates in byte order of keys, which for UTF-8 keys is `String` order.
        let set = codec::encode(trees::APPLIED, SET_NAME, &set)?;
        let version = codec::encode(trees::META, meta_keys::SCHEMA_VERSION, &3u32)?;
        let result: Result<(), TransactionError<Error>> =
            (&t.meta, &t.applied).transaction(|(meta, applied)| {
                for k in &old_keys {
                    applied.remove(k)?;
                }
                applied.insert(SET_KEY, set.as_slice())?;
                meta.insert(meta_keys::SCHEMA_VERSION, version.as_slice())?;
                Ok(())
            });
        self.tx_result(result)
    }
}

/// Decodes the applied set and checks that its keys are non-empty, unique and sorted.
fn decode_set(value: &[u8]) -> Result<Vec<AppliedResource>, Error> {
    let set: Vec<AppliedResource> = codec::decode(trees::APPLIED, SET_KEY, value)?;
    let corrupt = |detail: String| Error::Corrupt {
        tree: trees::APPLIED,
        key: SET_NAME.to_owned(),
        detail,
    };
    if set.first().is_some_and(|r| r.key.is_empty()) {
        return Err(corrupt("a resource with an empty key".to_owned()));
    }
    if let Some(pair) = set.windows(2).find(|pair| pair[0].key >= pair[1].key) {
        return Err(corrupt(format!(
            "resources out of order or repeated at {:?}",
            pair[1].key
        )));
    }
    Ok(set)
}
