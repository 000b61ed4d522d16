//! Secrets: references to secret values, the redacting [`Secret`] and AES-256-SIV sealing.
//!
//! Guarantees:
//!
//! - A secret value only ever lives in a [`Secret`] (or a [`SealKey`]): zeroized on drop, printed
//!   as `***` by `Debug` and `Display`, not `Serialize`, readable only through
//!   [`Secret::expose`] / [`Secret::expose_str`].
//! - Manifests hold a [`SecretRef`], never a value: `{ env = "NAME" }`, `{ file = "name" }`
//!   (inside `$CREDENTIALS_DIRECTORY`) or `{ sealed = "sos1:…" }` (see [`seal`] for the format).
//! - No [`Error`] and no redaction-safe rendering ([`SecretRef::describe`],
//!   [`SecretRef::fingerprint`]) contains a secret value: errors name the reference (variable
//!   name, file name, a short hash of the ciphertext), never what it resolves to.
//! - A `{ file = … }` reference cannot escape the credentials directory.
//! - A reference to one of the daemon's own secrets ([`RESERVED_ENV_PREFIX`], [`RESERVED_ENV`],
//!   [`RESERVED_FILES`]) is refused by [`SecretRef::check_reserved`], which `validate` and
//!   [`SecretRef::resolve`] both run: no manifest can hand the sealing key, the operator
//!   tokens or the git credentials to an integration.

mod key;
mod seal;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::manifest::id::IntegrationId;

pub use key::{CREDENTIAL_KEY_NAME, KEY_FILE_ENV, SealKey};
pub use seal::{SEALED_PREFIX, check_sealed_format, seal, unseal};

/// The environment variable systemd sets to the directory of `LoadCredential=` files.
pub const CREDENTIALS_DIRECTORY_ENV: &str = "CREDENTIALS_DIRECTORY";

/// Environment variables starting with this are the daemon's own (its flags, the admin, read
/// and sync tokens, the git credentials, the sealing key's path): no manifest may name one.
pub const RESERVED_ENV_PREFIX: &str = "SUPPORTOPSD_";

/// Further environment variables the daemon reads for itself (systemd's), which no manifest may
/// name.
pub const RESERVED_ENV: &[&str] = &[
    CREDENTIALS_DIRECTORY_ENV,
    "STATE_DIRECTORY",
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
];

/// Files of `$CREDENTIALS_DIRECTORY` the daemon reads for itself, which no manifest may name:
/// the sealing key, the operator API's tokens, the push webhook's secret, the git credentials
/// and the host policy.
pub const RESERVED_FILES: &[&str] = &[
    CREDENTIAL_KEY_NAME,
    "admin.token",
    "read.token",
    "sync.secret",
    "remote.credentials",
    "policy.toml",
];

/// The largest `{ file = … }` secret read, in bytes; larger files are an error.
pub const MAX_SECRET_FILE_LEN: u64 = 1024 * 1024;

/// Everything that can go wrong with secrets. No variant carries a secret value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An `{ env = … }` reference names a variable that is not set.
    #[error("environment variable {var} is not set")]
    EnvNotSet {
        /// The variable name.
        var: String,
    },
    /// An `{ env = … }` reference names a variable that is set to the empty string.
    #[error("environment variable {var} is empty")]
    EnvEmpty {
        /// The variable name.
        var: String,
    },
    /// A `{ file = … }` reference was resolved but `$CREDENTIALS_DIRECTORY` is not set.
    #[error(
        "secret file {file:?} is read from $CREDENTIALS_DIRECTORY (systemd LoadCredential=), which is not set"
    )]
    NoCredentialsDirectory {
        /// The file name.
        file: String,
    },
    /// A `{ file = … }` reference is not a plain file name.
    #[error(
        "secret file {file:?} must be a plain file name inside $CREDENTIALS_DIRECTORY (no '/', no '..')"
    )]
    InvalidFileName {
        /// The rejected file name.
        file: String,
    },
    /// A reference names one of the daemon's own secrets.
    #[error(
        "{reference} is one of the daemon's own secrets ({RESERVED_ENV_PREFIX}*, {CREDENTIALS_DIRECTORY_ENV}, {CREDENTIAL_KEY_NAME}, admin.token, read.token, sync.secret, remote.credentials, policy.toml, …), which no integration may use"
    )]
    Reserved {
        /// [`SecretRef::describe`] of the reference.
        reference: String,
    },
    /// An `{ env = … }` reference has an empty or malformed variable name.
    #[error("invalid environment variable name {var:?}")]
    InvalidEnvName {
        /// The rejected name.
        var: String,
    },
    /// Reading a `{ file = … }` secret failed.
    #[error("cannot read secret file {}", path.display())]
    ReadFile {
        /// The full path that was read.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A `{ file = … }` secret is empty or too large.
    #[error("secret file {} is {problem}", path.display())]
    BadFileSize {
        /// The full path that was read.
        path: PathBuf,
        /// `empty` or `larger than 1 MiB`.
        problem: &'static str,
    },
    /// A `{ sealed = … }` reference was resolved without a sealing key.
    #[error(
        "{reference} needs the sealing key (--key-file, ${KEY_FILE_ENV} or $CREDENTIALS_DIRECTORY/{CREDENTIAL_KEY_NAME})"
    )]
    NoKey {
        /// [`SecretRef::describe`] of the reference.
        reference: String,
    },
    /// No sealing key in any of the three places.
    #[error(
        "no sealing key: pass --key-file, set ${KEY_FILE_ENV}, or provide {CREDENTIAL_KEY_NAME} in $CREDENTIALS_DIRECTORY (systemd LoadCredential=); `supportopsd secret keygen` creates one"
    )]
    KeyNotFound,
    /// The sealing key file could not be read.
    #[error("cannot read sealing key file {}", path.display())]
    KeyFileRead {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The sealing key file does not hold a valid key.
    #[error("invalid sealing key in {}: {reason}", path.display())]
    KeyFileInvalid {
        /// The key file.
        path: PathBuf,
        /// What is wrong (never the content).
        reason: String,
    },
    /// A base64 sealing key is invalid.
    #[error("invalid sealing key: {reason}")]
    InvalidKey {
        /// What is wrong (never the content).
        reason: String,
    },
    /// A `{ sealed = … }` value is malformed (checked without the key).
    #[error("malformed sealed value: {reason}")]
    SealedFormat {
        /// What is wrong (never the content).
        reason: &'static str,
    },
    /// Unsealing failed: wrong key, sealed for another integration or field, or altered.
    /// Deliberately without detail.
    #[error(
        "cannot unseal: wrong key, sealed for another integration or field, or the value was altered"
    )]
    Unseal,
    /// Sealing failed (does not happen with valid inputs; no detail).
    #[error("sealing failed")]
    Seal,
    /// A secret that must be text is not UTF-8.
    #[error("secret is not valid utf-8")]
    NotUtf8,
    /// The operating system's random number generator failed.
    #[error("the operating system random number generator failed: {detail}")]
    Random {
        /// The generator's error.
        detail: String,
    },
}

/// A secret value: zeroized on drop, never printed, never serialized.
///
/// `Debug` and `Display` print `***`. Read it with [`Secret::expose`] or [`Secret::expose_str`],
/// as late as possible (e.g. when building an HTTP header).
#[derive(Clone)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps bytes; they are zeroized when the secret is dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The secret as UTF-8 text, or [`Error::NotUtf8`].
    pub fn expose_str(&self) -> Result<&str, Error> {
        std::str::from_utf8(&self.0).map_err(|_| Error::NotUtf8)
    }
}

/// Equal when the bytes are (compared in constant time).
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.expose(), other.expose());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for Secret {}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self::new(s.into_bytes())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret field's value comes from. This is what manifests hold.
///
/// (De)serializes as a table with exactly one key: `{ env = "FRESHDESK_API_KEY" }`,
/// `{ file = "freshdesk_api_key" }` or `{ sealed = "sos1:…" }`. Unknown keys, several keys, no
/// key, and malformed references (see [`SecretRef::validate`]) are rejected when deserializing.
/// The reference itself is not secret and may be shown (prefer [`SecretRef::describe`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "RawSecretRef")]
pub enum SecretRef {
    /// An environment variable of the daemon.
    Env(String),
    /// A file name inside `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`).
    File(String),
    /// A sealed value, `sos1:…`, bound to its integration and field.
    Sealed(String),
}

/// The deserialization shape of [`SecretRef`], checked in `TryFrom`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSecretRef {
    env: Option<String>,
    file: Option<String>,
    sealed: Option<String>,
}

impl TryFrom<RawSecretRef> for SecretRef {
    type Error = String;

    fn try_from(raw: RawSecretRef) -> Result<Self, String> {
        let r = match (raw.env, raw.file, raw.sealed) {
            (Some(v), None, None) => SecretRef::Env(v),
            (None, Some(f), None) => SecretRef::File(f),
            (None, None, Some(s)) => SecretRef::Sealed(s),
            _ => {
                return Err(
                    "a secret reference has exactly one of the keys `env`, `file` or `sealed`"
                        .to_owned(),
                );
            }
        };
        r.validate().map_err(|e| e.to_string())?;
        Ok(r)
    }
}

/// What [`SecretRef::resolve`] needs from the outside world.
///
/// The environment is a lookup function so that tests need not touch the process environment;
/// use [`process_env`] in production.
pub struct ResolveContext<'a> {
    /// The sealing key, needed only for `{ sealed = … }` references.
    pub key: Option<&'a SealKey>,
    /// Environment lookup for `{ env = … }` references.
    pub env: &'a dyn Fn(&str) -> Option<String>,
    /// The directory `{ file = … }` references are read from (`$CREDENTIALS_DIRECTORY`).
    pub credentials_dir: Option<PathBuf>,
}

impl<'a> ResolveContext<'a> {
    /// A context whose credentials directory is `$CREDENTIALS_DIRECTORY` as seen by `env`
    /// (unset or empty means none).
    pub fn new(key: Option<&'a SealKey>, env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        let credentials_dir = env(CREDENTIALS_DIRECTORY_ENV)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        Self {
            key,
            env,
            credentials_dir,
        }
    }
}

impl fmt::Debug for ResolveContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolveContext")
            .field("key", &self.key)
            .field("env", &"<fn>")
            .field("credentials_dir", &self.credentials_dir)
            .finish()
    }
}

/// The process environment as a lookup function for [`ResolveContext`] and [`SealKey::load`].
/// Unset and non-UTF-8 variables are `None`.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The fixed, public HMAC key of [`SecretRef::fingerprint`] (domain separation, not secrecy).
const REF_FINGERPRINT_KEY: &[u8] = b"supportopsd/secret-ref-fingerprint/v1";

impl SecretRef {
    /// Checks the reference without resolving it: the variable name is non-empty and has no `=`
    /// or NUL, the file name is a plain name (no `/`, `\`, `..`, NUL, not empty), the sealed
    /// value passes [`check_sealed_format`]. Runs offline, without the key.
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            SecretRef::Env(var) => {
                if var.is_empty() || var.contains(['=', '\0']) {
                    return Err(Error::InvalidEnvName { var: var.clone() });
                }
                Ok(())
            }
            SecretRef::File(file) => {
                if !is_plain_file_name(file) {
                    return Err(Error::InvalidFileName { file: file.clone() });
                }
                Ok(())
            }
            SecretRef::Sealed(s) => check_sealed_format(s),
        }
    }

    /// Refuses a reference to one of the daemon's own secrets: an environment variable
    /// starting with [`RESERVED_ENV_PREFIX`] or in [`RESERVED_ENV`], a file in
    /// [`RESERVED_FILES`]. Compared without regard to ASCII case, so that no spelling of them
    /// gets through on a case-insensitive file system. Runs offline.
    pub fn check_reserved(&self) -> Result<(), Error> {
        let reserved = match self {
            SecretRef::Env(var) => {
                var.get(..RESERVED_ENV_PREFIX.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_ENV_PREFIX))
                    || RESERVED_ENV.iter().any(|r| r.eq_ignore_ascii_case(var))
            }
            SecretRef::File(file) => RESERVED_FILES.iter().any(|r| r.eq_ignore_ascii_case(file)),
            SecretRef::Sealed(_) => false,
        };
        if reserved {
            return Err(Error::Reserved {
                reference: self.describe(),
            });
        }
        Ok(())
    }

    /// A redaction-safe rendering: `env:NAME`, `file:name` or `sealed:<12 hex>`, the hex being
    /// the start of the SHA-256 of the whole `sos1:…` string.
    pub fn describe(&self) -> String {
        match self {
            SecretRef::Env(var) => format!("env:{var}"),
            SecretRef::File(file) => format!("file:{file}"),
            SecretRef::Sealed(s) => {
                let digest = Sha256::digest(s.as_bytes());
                let mut h = hex(&digest);
                h.truncate(12);
                format!("sealed:{h}")
            }
        }
    }

    /// A short (16 hex digits) fingerprint of the *reference*, for plan fingerprints.
    ///
    /// This hashes the reference (kind + variable name / file name / ciphertext) with HMAC-SHA256
    /// under a fixed, public domain-separation key, not the secret value: plan runs without the
    /// sealing key and without the daemon's environment. Consequences: changing a reference
    /// (another variable, another file, a resealed value — sealing is randomized) changes the
    /// fingerprint; rotating the value behind an unchanged `env`/`file` reference does not.
    pub fn fingerprint(&self) -> String {
        let (kind, value): (&[u8], &str) = match self {
            SecretRef::Env(v) => (b"env", v),
            SecretRef::File(f) => (b"file", f),
            SecretRef::Sealed(s) => (b"sealed", s),
        };
        let mut h = keyed_fingerprint(REF_FINGERPRINT_KEY, &[kind, value.as_bytes()]);
        h.truncate(16);
        h
    }

    /// Resolves the reference to its value. A reference to the daemon's own secrets is refused
    /// ([`SecretRef::check_reserved`]) before anything is read.
    ///
    /// - `env`: looked up through `ctx.env`; unset or empty is an error.
    /// - `file`: read from `ctx.credentials_dir`; one trailing newline (`\n` or `\r\n`) is
    ///   stripped; an empty file or one over [`MAX_SECRET_FILE_LEN`] is an error.
    /// - `sealed`: unsealed with `ctx.key`, bound to `integration` and `field`.
    ///
    /// Errors name the reference, never the value.
    pub fn resolve(
        &self,
        integration: &IntegrationId,
        field: &str,
        ctx: &ResolveContext<'_>,
    ) -> Result<Secret, Error> {
        self.validate()?;
        self.check_reserved()?;
        match self {
            SecretRef::Env(var) => match (ctx.env)(var) {
                None => Err(Error::EnvNotSet { var: var.clone() }),
                Some(v) if v.is_empty() => Err(Error::EnvEmpty { var: var.clone() }),
                Some(v) => Ok(Secret::from(v)),
            },
            SecretRef::File(file) => {
                let dir = ctx
                    .credentials_dir
                    .as_deref()
                    .ok_or_else(|| Error::NoCredentialsDirectory { file: file.clone() })?;
                read_secret_file(&dir.join(file))
            }
            SecretRef::Sealed(s) => {
                let key = ctx.key.ok_or_else(|| Error::NoKey {
                    reference: self.describe(),
                })?;
                unseal(key, integration, field, s)
            }
        }
    }
}

/// A file name with no path components: not empty, no `/`, `\`, `..` or NUL.
fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && !name.contains("..")
        && !name.contains(['/', '\\', '\0'])
        && Path::new(name).file_name().is_some_and(|f| f == name)
}

/// Reads a secret file, stripping one trailing newline.
fn read_secret_file(path: &Path) -> Result<Secret, Error> {
    let read_err = |source| Error::ReadFile {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut buf = Zeroizing::new(Vec::new());
    file.take(MAX_SECRET_FILE_LEN + 1)
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    if buf.len() as u64 > MAX_SECRET_FILE_LEN {
        return Err(Error::BadFileSize {
            path: path.to_owned(),
            problem: "larger than 1 MiB",
        });
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    if buf.is_empty() {
        return Err(Error::BadFileSize {
            path: path.to_owned(),
            problem: "empty",
        });
    }
    Ok(Secret::new(std::mem::take(&mut *buf)))
}

/// HMAC-SHA256 of `parts` under `key`, as 64 lower-case hex digits.
///
/// Each part is length-prefixed (8-byte big-endian length) so that part boundaries are
/// unambiguous. A building block for fingerprints that must not reveal their input; with a
/// public `key` it is only domain separation, so never feed it a secret *value* with a public key.
pub fn keyed_fingerprint(key: &[u8], parts: &[&[u8]]) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail; fall back to an
    // unkeyed-but-domain-separated SHA-256 rather than panicking if that ever changes.
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            for part in parts {
                mac.update(&(part.len() as u64).to_be_bytes());
                mac.update(part);
            }
            hex(&mac.finalize().into_bytes())
        }
        Err(_) => {
            let mut d = Sha256::new();
            d.update((key.len() as u64).to_be_bytes());
            d.update(key);
            for part in parts {
                d.update((part.len() as u64).to_be_bytes());
                d.update(part);
            }
            hex(&d.finalize())
        }
    }
}

/// `bytes` random bytes from the OS RNG as lower-case hex (twice as many digits): session ids,
/// CSRF tokens, generated secrets.
pub fn random_hex(bytes: usize) -> Result<String, getrandom::Error> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf)?;
    Ok(hex(&buf))
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    s
}

/// Parts of a field or parameter name that mark its value as a credential, compared with the
/// name lower-cased and stripped of `_`, `-`, `.` and spaces (`api_key`, `X-Api-Key`, `apiKey`
/// all read `apikey`).
const CREDENTIAL_NAME_PARTS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "apikey",
    "authorization",
    "credential",
    "privatekey",
    "signature",
    "cookie",
];

/// Whether a field or parameter name says its value is a credential, so that its value is
/// never shown: the one rule for traces' rendered parameters, stored payloads shown by the
/// operator API and pseudonymised fixtures. It errs on the side of hiding: a name merely
/// *containing* one of the parts (`verification_token`, `X-Hub-Signature-256`,
/// `session_cookie`) counts, so a harmless field is sometimes hidden (an agent's e-mail
/// `signature`), never the other way round.
pub fn is_credential_name(name: &str) -> bool {
    let n: String = name
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    CREDENTIAL_NAME_PARTS.iter().any(|part| n.contains(part))
}

#[cfg(test)]
mod tests;

/// The key [`constant_time_eq`] tags both sides with: public, so only domain separation — what
/// hides the lengths is that the tags have a fixed size.
const COMPARISON_KEY: &[u8] = b"supportopsd constant-time comparison of tokens and secrets";

/// Whether two byte strings are equal, without revealing where they differ or their lengths
/// (for tokens and shared secrets; SEC-18). Both sides are HMAC-SHA256-tagged under a fixed key
/// and the 32-byte tags compared in constant time, so a length mismatch does the same work as
/// any other mismatch. (The hashing itself takes time in steps of 64 bytes of input.)
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (Some(tag_a), Some(mac_b)) = (comparison_tag(a), comparison_mac(b)) else {
        // HMAC takes keys of any length; refusing is the safe answer if that ever changes.
        return false;
    };
    // `verify_slice` compares the tags in constant time.
    mac_b.verify_slice(&tag_a).is_ok()
}

/// HMAC-SHA256 under [`COMPARISON_KEY`], fed `input`.
fn comparison_mac(input: &[u8]) -> Option<Hmac<Sha256>> {
    #[cfg(test)]
    constant_time_tests::TAGGED.with(|n| n.set(n.get() + 1));
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(COMPARISON_KEY).ok()?;
    mac.update(input);
    Some(mac)
}

/// The 32-byte tag of `input` under [`COMPARISON_KEY`].
fn comparison_tag(input: &[u8]) -> Option<[u8; 32]> {
    Some(comparison_mac(input)?.finalize().into_bytes().into())
}

#[cfg(test)]
mod constant_time_tests {
    use std::cell::Cell;

    use super::constant_time_eq;

    thread_local! {
        /// How many inputs [`super::comparison_mac`] has tagged on this thread.
        pub(super) static TAGGED: Cell<usize> = const { Cell::new(0) };
    }

    #[test]
    fn compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"", b"a"));
        assert!(constant_time_eq(b"", b""));
    }

    /// SEC-18: a guess of the wrong length does the same work as a guess of the right length —
    /// both sides are tagged and fixed-size tags compared — so timing does not tell an attacker
    /// how long the admin token is. (Comparing the bytes with an early return on a length
    /// mismatch answers a wrong length at once, without tagging anything.)
    #[test]
    fn sec_18_a_wrong_length_does_the_same_work_as_a_wrong_byte() {
        let secret = [b'k'; 40];
        let tagged = |given: &[u8]| {
            let before = TAGGED.with(Cell::get);
            assert!(!constant_time_eq(given, &secret));
            TAGGED.with(Cell::get) - before
        };
        let wrong_byte = tagged(&[b'x'; 40]);
        assert_eq!(wrong_byte, 2);
        for wrong_length in [
            &b""[..],
            &b"k"[..],
            &[b'k'; 39][..],
            &[b'k'; 41][..],
            &[b'k'; 4096][..],
        ] {
            assert_eq!(
                tagged(wrong_length),
                wrong_byte,
                "{} bytes",
                wrong_length.len()
            );
        }
    }
}
