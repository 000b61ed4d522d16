//! The keys shared by the inbox and the outbox (a stored delivery's [`EventRef`], a job's id
//! and due time) and the counters both keep in transactions, so that neither imports the
//! other.

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::{Error, abort, codec, trees};

/// Where a stored delivery is: the end of its dedupe window and a sequence number unique in
/// the database. Jobs reference their delivery by it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct EventRef {
    /// When the delivery's dedupe window closes, milliseconds since the Unix epoch.
    pub until_ms: u64,
    /// Unique among deliveries (from the database's id generator).
    pub seq: u64,
}

impl EventRef {
    /// The `inbox` and `inbox_refs` key: `until_ms` big-endian ‖ `seq` big-endian.
    pub(super) fn key(self) -> [u8; 16] {
        due_key(self.until_ms, self.seq)
    }

    /// Splits an `inbox` key.
    pub(super) fn parse(key: &[u8]) -> Result<EventRef, Error> {
        let (until_ms, seq) = split_key(trees::INBOX, key)?;
        Ok(EventRef { until_ms, seq })
    }
}

impl std::fmt::Display for EventRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.until_ms, self.seq)
    }
}

/// The key of a job in `outbox` and `dead`.
pub(super) fn job_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// The key of a job in the `due` index.
pub(super) fn due_key(ready_ms: u64, id: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&ready_ms.to_be_bytes());
    key[8..].copy_from_slice(&id.to_be_bytes());
    key
}

/// Splits a 16-byte key made by [`due_key`] (of `tree`, named in the error) into its two
/// numbers.
pub(super) fn split_key(tree: &'static str, key: &[u8]) -> Result<(u64, u64), Error> {
    let corrupt = || Error::Corrupt {
        tree,
        key: format!("{key:02x?}"),
        detail: "key is not 16 bytes".to_owned(),
    };
    let (ready, id) = key.split_at_checked(8).ok_or_else(corrupt)?;
    let ready = <[u8; 8]>::try_from(ready).map_err(|_| corrupt())?;
    let id = <[u8; 8]>::try_from(id).map_err(|_| corrupt())?;
    Ok((u64::from_be_bytes(ready), u64::from_be_bytes(id)))
}

/// Reads a `u64` value inside a transaction.
pub(super) fn read_u64(
    tree: &TransactionalTree,
    tree_name: &'static str,
    key: &[u8],
) -> Result<Option<u64>, ConflictableTransactionError<Error>> {
    match tree.get(key)? {
        Some(bytes) => codec::decode(tree_name, key, &bytes)
            .map(Some)
            .map_err(abort),
        None => Ok(None),
    }
}

/// Writes a `u64` value inside a transaction.
pub(super) fn write_u64(
    tree: &TransactionalTree,
    tree_name: &'static str,
    key: &[u8],
    value: u64,
) -> Result<(), ConflictableTransactionError<Error>> {
    let bytes = codec::encode(tree_name, &String::from_utf8_lossy(key), &value).map_err(abort)?;
    tree.insert(key, bytes)?;
    Ok(())
}
