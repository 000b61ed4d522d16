//! The keys shared by the inbox and the outbox (a stored delivery's [`EventId`], a job's id
//! and due time) and the counters both keep in transactions, so that neither imports the
//! other.

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use super::{Error, abort, codec};

/// A stored delivery's public id: allocated in arrival order from the database's id generator
/// (increasing, never reused, with gaps), stable for the life of the delivery. Shown as
/// `evt_<decimal>`; serialized as that string (and read from it or from a bare number).
/// Jobs reference their delivery by it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub u64);

impl EventId {
    /// The key in the `event_index` and `inbox_refs` trees: the id big-endian (so that keys
    /// sort in arrival order).
    pub(super) fn key(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// Reads an `event_index` or `inbox_refs` key.
    pub(super) fn parse(tree: &'static str, key: &[u8]) -> Result<EventId, Error> {
        <[u8; 8]>::try_from(key)
            .map(|b| EventId(u64::from_be_bytes(b)))
            .map_err(|_| Error::Corrupt {
                tree,
                key: format!("{key:02x?}"),
                detail: "event id key is not 8 bytes".to_owned(),
            })
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "evt_{}", self.0)
    }
}

/// Why a string is not an [`EventId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an event id (expected evt_<number>): {0:?}")]
pub struct BadEventId(pub String);

impl std::str::FromStr for EventId {
    type Err = BadEventId;

    fn from_str(s: &str) -> Result<EventId, BadEventId> {
        s.strip_prefix("evt_")
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse().ok())
            .map(EventId)
            .ok_or_else(|| BadEventId(s.chars().take(64).collect()))
    }
}

impl Serialize for EventId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<EventId, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Number(u64),
            Text(String),
        }
        match Repr::deserialize(d)? {
            Repr::Number(n) => Ok(EventId(n)),
            Repr::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// The key of the `segment_moved` index (and of schema 4's `event_segments`): segment
/// big-endian ‖ event id big-endian.
pub(super) fn segment_key(segment: u64, id: EventId) -> [u8; 16] {
    due_key(segment, id.0)
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
