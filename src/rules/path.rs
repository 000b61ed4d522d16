//! Field paths (`ticket.requester.email`, `actions[0].result.id`).

/// A parsed field path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(String);
