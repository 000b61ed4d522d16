//! Identifiers: validated newtypes, so a bare `String` never carries meaning across modules.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid id {value:?}: ids are 1 to 63 characters of a-z, 0-9 and '-', starting with a letter or digit"
)]
pub struct InvalidId {
    /// The rejected value.
    pub value: String,
}

/// Checks `^[a-z0-9][a-z0-9-]{0,62}$`.
fn is_valid_id(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an id.
            pub fn parse(s: &str) -> Result<Self, InvalidId> {
                if is_valid_id(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(InvalidId { value: s.to_owned() })
                }
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(s: String) -> Result<Self, InvalidId> {
                if is_valid_id(&s) { Ok(Self(s)) } else { Err(InvalidId { value: s }) }
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// The id of an integration (`integrations/*.toml`), unique across a repository.
    IntegrationId
);
id_type!(
    /// The id of a rule (`rules/*.toml`), unique across a repository.
    RuleId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_rejects() {
        assert!(IntegrationId::parse("freshdesk-main").is_ok());
        assert!(IntegrationId::parse("0abc").is_ok());
        assert!(IntegrationId::parse(&"a".repeat(63)).is_ok());
        for bad in ["", "-a", "A", "a_b", "a b", "é", &"a".repeat(64)] {
            assert!(RuleId::parse(bad).is_err(), "{bad:?}");
        }
    }
}
