//! Versioned value encoding for every tree: one format byte, then the payload.
//!
//! Format 1 ([`FORMAT_JSON`]) is `0x01` followed by `serde_json` bytes. Guarantees: decoding
//! never panics; an empty value, an unknown format byte, or a payload that does not deserialize
//! is an [`Error::Corrupt`] naming the tree and the key. A future format gets a new byte; this
//! build refuses bytes it does not know instead of guessing.
//!
//! Invariant: `meta/schema_version` is always written in format 1, by every version of
//! supportopsd, so that any build can read it and refuse a newer schema with a clear message.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::Error;

/// Format byte: JSON payload.
pub(crate) const FORMAT_JSON: u8 = 1;

/// Encodes `value` as format 1. `tree` and `key` only name the value in errors.
pub(crate) fn encode<T: Serialize>(
    tree: &'static str,
    key: &str,
    value: &T,
) -> Result<Vec<u8>, Error> {
    let mut out = vec![FORMAT_JSON];
    serde_json::to_writer(&mut out, value).map_err(|source| Error::Encode {
        tree,
        key: key.to_owned(),
        source,
    })?;
    Ok(out)
}

/// The JSON of a value written by [`encode`], to embed it in other JSON without decoding it;
/// `None` for any other format.
pub(crate) fn json_payload(bytes: &[u8]) -> Option<&[u8]> {
    match bytes.split_first() {
        Some((&FORMAT_JSON, payload)) => Some(payload),
        _ => None,
    }
}

/// The format-1 encoding of a value whose JSON is `json` (what [`encode`] gives for it, when
/// `json` is what `serde_json` writes for it), without decoding it.
pub(crate) fn encode_json(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + json.len());
    out.push(FORMAT_JSON);
    out.extend_from_slice(json);
    out
}

/// Decodes a value written by [`encode`]. `tree` and `key` name the value in errors.
pub(crate) fn decode<T: DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, Error> {
    let corrupt = |detail: String| Error::Corrupt {
        tree,
        key: String::from_utf8_lossy(key).into_owned(),
        detail,
    };
    match bytes.split_first() {
        None => Err(corrupt("empty value".to_owned())),
        Some((&FORMAT_JSON, payload)) => serde_json::from_slice(payload)
            .map_err(|e| corrupt(format!("invalid format-1 payload: {e}"))),
        Some((other, _)) => Err(corrupt(format!(
            "unknown value format {other} (written by a newer supportopsd?)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_errors() {
        let bytes = encode("t", "k", &vec![1u32, 2]).unwrap();
        assert_eq!(bytes[0], FORMAT_JSON);
        assert_eq!(decode::<Vec<u32>>("t", b"k", &bytes).unwrap(), vec![1, 2]);
        assert_eq!(json_payload(&bytes), Some(&b"[1,2]"[..]));
        assert_eq!(encode_json(b"[1,2]"), bytes);
        assert_eq!(json_payload(b"\x09[1]"), None);
        for bad in [&b""[..], b"\x09[1]", b"\x01[1,", b"\x01\"str\""] {
            let err = decode::<Vec<u32>>("t", b"k", bad).unwrap_err();
            assert!(matches!(err, Error::Corrupt { tree: "t", .. }), "{err}");
            assert!(err.to_string().contains("\"k\""), "{err}");
        }
    }
}
