//! The built-in platform has no webhook: its events are built inside the daemon. Both
//! functions refuse, whatever the request (the route answers 404 before they are reached; they
//! are the second line of defence).

use crate::platforms::{Inbound, InboundRequest, ParseError, VerifyError, VerifyKeys};

/// Refuses every delivery: nobody may post supportopsd's own events from outside.
pub fn verify(_req: &InboundRequest<'_>, _keys: &VerifyKeys) -> Result<(), VerifyError> {
    Err(VerifyError::NotConfigured)
}

/// Refuses every body: supportopsd's own events are never parsed from a delivery.
pub fn parse(_req: &InboundRequest<'_>) -> Result<Inbound, ParseError> {
    Err(ParseError::Malformed(
        "supportopsd's own events cannot be delivered from outside".to_owned(),
    ))
}
