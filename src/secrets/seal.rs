//! Sealed values: AES-256-SIV ciphertexts that are safe to commit, bound to their place.
//!
//! # Format (`sos1`)
//!
//! ```text
//! sos1:<base64url, no padding>( nonce[16] || siv_tag[16] || ciphertext[len(plaintext)] )
//! ```
//!
//! - Cipher: AES-256-SIV (RFC 5297, AES-CMAC-SIV, 64-byte key), used through its native vector of
//!   associated-data components: `["supportopsd/sealed/v1", integration id, field name, nonce]`.
//!   Each component is a separate S2V input, so the encoding is unambiguous without separators.
//! - Binding: a value sealed for one integration and field does not unseal for another.
//! - Nonce: 16 random bytes per seal, so sealing the same value twice gives different outputs
//!   (a repository does not reveal which fields share a value). SIV stays secure even if a nonce
//!   ever repeats (it then only reveals equality).
//! - Text: `sos1:` then URL-safe base64 without padding (no `+`, `/` or `=`, nothing to escape
//!   in TOML, URLs or file names). Decoding is strict (no padding, no whitespace, canonical
//!   trailing bits) so each ciphertext has exactly one text form, which matters because plan
//!   fingerprints hash the text.
//!
//! Guarantees: unsealing with a wrong key, wrong integration or field, or an altered value fails
//! with [`Error::Unseal`] and nothing else; [`check_sealed_format`] needs no key.

use aes_siv::siv::Aes256Siv;
use aes_siv::{Key, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroize;

use super::{Error, SealKey, Secret};
use crate::manifest::id::IntegrationId;

/// The prefix of every sealed value (format version 1).
pub const SEALED_PREFIX: &str = "sos1:";

/// The first associated-data component: domain and format version.
const AD_DOMAIN: &[u8] = b"supportopsd/sealed/v1";

/// Random nonce length.
const NONCE_LEN: usize = 16;

/// SIV tag length.
const TAG_LEN: usize = 16;

/// Shortest decoded sealed value: nonce and tag of an empty plaintext.
const MIN_DECODED_LEN: usize = NONCE_LEN + TAG_LEN;

/// The cipher for a key; the temporary key copy is wiped.
fn cipher(key: &SealKey) -> Aes256Siv {
    let mut k = Key::<Aes256Siv>::from(*key.bytes());
    let cipher = Aes256Siv::new(&k);
    k.as_mut_slice().zeroize();
    cipher
}

/// Seals `plaintext` for `integration`'s field `field`. See the module docs for the format.
///
/// Fails only if the operating system's random generator fails ([`Error::Random`]).
pub fn seal(
    key: &SealKey,
    integration: &IntegrationId,
    field: &str,
    plaintext: &[u8],
) -> Result<String, Error> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| Error::Random {
        detail: e.to_string(),
    })?;
    let headers: [&[u8]; 4] = [
        AD_DOMAIN,
        integration.as_str().as_bytes(),
        field.as_bytes(),
        &nonce,
    ];
    let sealed = cipher(key)
        .encrypt(headers, plaintext)
        .map_err(|_| Error::Seal)?;
    let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(&out)))
}

/// Unseals a value sealed by [`seal`] for the same `integration` and `field`.
///
/// Any failure after the format check — wrong key, other integration or field, altered text —
/// is [`Error::Unseal`], without detail. A malformed value is [`Error::SealedFormat`].
pub fn unseal(
    key: &SealKey,
    integration: &IntegrationId,
    field: &str,
    sealed: &str,
) -> Result<Secret, Error> {
    let raw = decode(sealed)?;
    let (nonce, rest) = raw.split_at(NONCE_LEN);
    let headers: [&[u8]; 4] = [
        AD_DOMAIN,
        integration.as_str().as_bytes(),
        field.as_bytes(),
        nonce,
    ];
    let plaintext = cipher(key)
        .decrypt(headers, rest)
        .map_err(|_| Error::Unseal)?;
    Ok(Secret::new(plaintext))
}

/// Checks a sealed value's form without the key: the `sos1:` prefix, strict base64url without
/// padding, and at least the 32 bytes of nonce and tag.
pub fn check_sealed_format(s: &str) -> Result<(), Error> {
    decode(s).map(|_| ())
}

/// Strips the prefix and decodes, checking the minimal length.
fn decode(s: &str) -> Result<Vec<u8>, Error> {
    let body = s.strip_prefix(SEALED_PREFIX).ok_or(Error::SealedFormat {
        reason: "it does not start with \"sos1:\"",
    })?;
    let raw = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| Error::SealedFormat {
            reason: "the part after \"sos1:\" is not unpadded url-safe base64",
        })?;
    if raw.len() < MIN_DECODED_LEN {
        return Err(Error::SealedFormat {
            reason: "it is too short",
        });
    }
    Ok(raw)
}
