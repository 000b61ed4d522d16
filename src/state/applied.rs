//! The `applied` tree: what the last applies created, keyed by resource key.
//!
//! Guarantees: [`Store::applied`] is sorted by key; each stored record repeats its key and a
//! mismatch is reported as corruption; [`Store::record_apply`] writes the applied revision and
//! all upserts and removals in one transaction and flushes before returning, so after a crash
//! either all of an apply is recorded or none of it.

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::TransactionError;

use super::{Error, Store, codec, meta_keys, storage_error, trees};

/// One applied resource.
///
/// `summary` is shown in plans and status output; it must never contain secret values (secret
/// fields enter `fingerprint` only as a keyed hash of their reference).
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
        // sled iterates in byte order of keys, which for UTF-8 keys is `String` order.
        let mut out = Vec::new();
        for item in self.applied.iter() {
            let (k, v) = item.map_err(|e| storage_error(&self.dir, e))?;
            out.push(decode_record(&k, &v)?);
        }
        Ok(out)
    }

    /// One applied resource by key.
    pub fn get_applied(&self, key: &str) -> Result<Option<AppliedResource>, Error> {
        match self.applied.get(key.as_bytes()) {
            Ok(Some(v)) => decode_record(key.as_bytes(), &v).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(storage_error(&self.dir, e)),
        }
    }

    /// Records an apply in one transaction across `meta` and `applied`: sets the applied
    /// revision to `revision`, inserts or replaces `upserts`, deletes `removals` (absent keys
    /// are fine), then flushes.
    ///
    /// A batch with an empty key, a key upserted twice, or a key both upserted and removed is
    /// [`Error::InvalidBatch`] and writes nothing.
    pub fn record_apply(
        &self,
        revision: &str,
        upserts: &[AppliedResource],
        removals: &[&str],
    ) -> Result<(), Error> {
        let mut seen = std::collections::BTreeSet::new();
        for key in upserts
            .iter()
            .map(|r| r.key.as_str())
            .chain(removals.iter().copied())
        {
            if key.is_empty() {
                return Err(Error::InvalidBatch {
                    detail: "empty resource key".to_owned(),
                });
            }
            if !seen.insert(key) {
                return Err(Error::InvalidBatch {
                    detail: format!("resource {key:?} appears more than once"),
                });
            }
        }
        let revision_bytes = codec::encode(trees::META, meta_keys::APPLIED_REVISION, &revision)?;
        let encoded = upserts
            .iter()
            .map(|r| Ok((r.key.as_str(), codec::encode(trees::APPLIED, &r.key, r)?)))
            .collect::<Result<Vec<_>, Error>>()?;

        let result: Result<(), TransactionError<()>> =
            (&self.meta, &self.applied).transaction(|(meta, applied)| {
                meta.insert(
                    meta_keys::APPLIED_REVISION.as_bytes(),
                    revision_bytes.as_slice(),
                )?;
                for (key, value) in &encoded {
                    applied.insert(key.as_bytes(), value.as_slice())?;
                }
                for key in removals {
                    applied.remove(key.as_bytes())?;
                }
                Ok(())
            });
        match result {
            Ok(()) => self.flush(),
            Err(TransactionError::Storage(e)) => Err(storage_error(&self.dir, e)),
            // The closure never aborts.
            Err(TransactionError::Abort(())) => Err(Error::InvalidBatch {
                detail: "transaction aborted".to_owned(),
            }),
        }
    }
}

/// Decodes an `applied` record and checks that it repeats its key.
fn decode_record(key: &[u8], value: &[u8]) -> Result<AppliedResource, Error> {
    let record: AppliedResource = codec::decode(trees::APPLIED, key, value)?;
    if record.key.as_bytes() != key {
        return Err(Error::Corrupt {
            tree: trees::APPLIED,
            key: String::from_utf8_lossy(key).into_owned(),
            detail: format!("record is for key {:?}", record.key),
        });
    }
    Ok(record)
}
