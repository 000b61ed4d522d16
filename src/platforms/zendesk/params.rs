//! Zendesk's own parameter rules on top of the shared checks of
//! [`crate::platforms::params::Params`] (names, types, required parameters, lenient rendered
//! values): ids are positive integers, free text is trimmed.

use crate::platforms::connector::PlatformError;
pub(crate) use crate::platforms::params::Params;

/// Zendesk accessors of checked parameters.
pub(crate) trait ZendeskParams {
    /// A non-blank string parameter, trimmed.
    fn text(&self, name: &str) -> Option<String>;
    /// A Zendesk id: a positive integer.
    fn id(&self, name: &str) -> Result<Option<u64>, PlatformError>;
    /// A required Zendesk id.
    fn required_id(&self, name: &str) -> Result<u64, PlatformError>;
}

impl ZendeskParams for Params<'_> {
    fn text(&self, name: &str) -> Option<String> {
        self.string(name)
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    }

    fn id(&self, name: &str) -> Result<Option<u64>, PlatformError> {
        match self.int(name) {
            None => Ok(None),
            Some(n) if n > 0 => Ok(Some(n.unsigned_abs())),
            Some(n) => Err(self.invalid(format_args!("`{name}` must be a positive id, got {n}"))),
        }
    }

    fn required_id(&self, name: &str) -> Result<u64, PlatformError> {
        self.id(name)?.ok_or_else(|| self.missing(name))
    }
}
