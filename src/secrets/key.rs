//! The sealing key: 64 random bytes (AES-256-SIV), stored as one line of standard base64.
//!
//! Guarantees: the key bytes are zeroized on drop and never printed (`Debug` shows
//! `SealKey(***)`, `Display` shows `***`); errors about key files name the file, never its content; a key file is
//! looked up in a fixed order ([`SealKey::load`]) and an explicitly named file that is missing is
//! an error, not a reason to fall back to the next place.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::{CREDENTIALS_DIRECTORY_ENV, Error};

/// The environment variable naming the sealing key file (second in the lookup order).
pub const KEY_FILE_ENV: &str = "SUPPORTOPSD_KEY_FILE";

/// The key's file name inside `$CREDENTIALS_DIRECTORY` (third in the lookup order).
pub const CREDENTIAL_KEY_NAME: &str = "supportopsd.key";

/// Key length in bytes (AES-256-SIV uses two 256-bit keys).
const KEY_LEN: usize = 64;

/// Longest key file accepted; a valid one is 88 base64 characters plus a newline.
const MAX_KEY_FILE_LEN: u64 = 4096;

/// The AES-256-SIV sealing key.
pub struct SealKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

/// A copy zeroized on drop like the original (the runtime hands one to the store that seals
/// the secrets connectors keep between runs).
impl Clone for SealKey {
    fn clone(&self) -> Self {
        SealKey {
            bytes: self.bytes.clone(),
        }
    }
}

impl SealKey {
    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Result<SealKey, Error> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut *bytes).map_err(|e| Error::Random {
            detail: e.to_string(),
        })?;
        Ok(SealKey { bytes })
    }

    /// Parses standard base64 (with padding) of exactly 64 bytes. Surrounding ASCII whitespace,
    /// such as a trailing newline, is ignored. Errors never include the input.
    pub fn from_base64(s: &str) -> Result<SealKey, Error> {
        let decoded =
            Zeroizing::new(
                STANDARD
                    .decode(s.trim_ascii())
                    .map_err(|_| Error::InvalidKey {
                        reason: "not standard base64".to_owned(),
                    })?,
            );
        if decoded.len() != KEY_LEN {
            return Err(Error::InvalidKey {
                reason: format!("expected {KEY_LEN} bytes, got {}", decoded.len()),
            });
        }
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        bytes.copy_from_slice(&decoded);
        Ok(SealKey { bytes })
    }

    /// The key as standard base64 with padding (88 characters, no newline), zeroized on drop.
    pub fn to_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(STANDARD.encode(*self.bytes))
    }

    /// The raw key bytes, for the sealing code only.
    pub(super) fn bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// Loads the key, returning it and the file it came from. Lookup order:
    ///
    /// 1. `explicit` (`--key-file`),
    /// 2. the file named by `$SUPPORTOPSD_KEY_FILE` (as seen by `env`; empty means unset),
    /// 3. `$CREDENTIALS_DIRECTORY/supportopsd.key` (systemd `LoadCredential=`), if that file
    ///    exists.
    ///
    /// The first place that is configured wins: a file named in 1 or 2 that cannot be read is an
    /// error, not a fall-through. If none applies, [`Error::KeyNotFound`] lists all three.
    pub fn load(
        explicit: Option<&Path>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(SealKey, PathBuf), Error> {
        let non_empty = |name: &str| env(name).filter(|v| !v.is_empty());
        let path = if let Some(p) = explicit {
            p.to_owned()
        } else if let Some(p) = non_empty(KEY_FILE_ENV) {
            PathBuf::from(p)
        } else if let Some(dir) = non_empty(CREDENTIALS_DIRECTORY_ENV) {
            let p = Path::new(&dir).join(CREDENTIAL_KEY_NAME);
            if !p.exists() {
                return Err(Error::KeyNotFound);
            }
            p
        } else {
            return Err(Error::KeyNotFound);
        };
        let key = Self::read_file(&path)?;
        Ok((key, path))
    }

    /// Reads and parses one key file.
    fn read_file(path: &Path) -> Result<SealKey, Error> {
        let read_err = |source| Error::KeyFileRead {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(read_err)?;
        let mut raw = Zeroizing::new(Vec::new());
        file.take(MAX_KEY_FILE_LEN + 1)
            .read_to_end(&mut raw)
            .map_err(read_err)?;
        let invalid = |reason: String| Error::KeyFileInvalid {
            path: path.to_owned(),
            reason,
        };
        if raw.len() as u64 > MAX_KEY_FILE_LEN {
            return Err(invalid("file too large".to_owned()));
        }
        let text = std::str::from_utf8(&raw).map_err(|_| invalid("not text".to_owned()))?;
        SealKey::from_base64(text).map_err(|e| match e {
            Error::InvalidKey { reason } => invalid(reason),
            other => other,
        })
    }
}

impl fmt::Display for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Debug for SealKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SealKey(***)")
    }
}
