//! The health model: per integration, a sync status (is the platform configured the way the
//! manifests say?) and a health (does the connection work?), each with a reason an operator can
//! act on and the time since it has been so.

use crate::platforms::{ConnectError, Health, PlatformError};

/// Whether the platform is configured as declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncStatus {
    /// The registration matches the manifests (or none is declared).
    InSync,
    /// The platform differs and could not be put back yet.
    Drifted,
    /// Not known (not synced yet, or only an operator can do it).
    Unknown,
}

impl SyncStatus {
    /// The name in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::InSync => "in_sync",
            SyncStatus::Drifted => "drifted",
            SyncStatus::Unknown => "unknown",
        }
    }
}

/// Whether the connection works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    /// The last connection check succeeded.
    Healthy,
    /// Waiting for something that is on its way (a first check, a verification).
    Progressing,
    /// The connection check fails.
    Degraded,
    /// Something the integration needs is missing (a credential, a connector).
    Missing,
    /// Not checked.
    Unknown,
}

impl HealthStatus {
    /// The name in status output.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Healthy => "healthy",
            HealthStatus::Progressing => "progressing",
            HealthStatus::Degraded => "degraded",
            HealthStatus::Missing => "missing",
            HealthStatus::Unknown => "unknown",
        }
    }
}

/// The health a connection check result means, with its reason.
pub fn of_check(result: &Result<Health, PlatformError>) -> (HealthStatus, String) {
    match result {
        Ok(h) => (HealthStatus::Healthy, h.detail.clone()),
        Err(e) => (HealthStatus::Degraded, explain(e)),
    }
}

/// The health reason of a built-in `supportopsd` integration (always healthy: nothing to reach).
pub const BUILTIN_HEALTH: &str = "built in: supportopsd emits these events itself";

/// The health of an integration whose connector could not be built.
pub fn of_connect_error(e: &ConnectError) -> (HealthStatus, String) {
    match e {
        ConnectError::NotAvailable(_) => (HealthStatus::Unknown, e.to_string()),
        ConnectError::NoActions(_) => (HealthStatus::Healthy, BUILTIN_HEALTH.to_owned()),
        ConnectError::Missing(_) | ConnectError::Credential { .. } => (
            HealthStatus::Missing,
            format!(
                "{e}: fix the credential reference in the manifest or the daemon's environment"
            ),
        ),
        ConnectError::Client(_) | ConnectError::Policy(_) => {
            (HealthStatus::Degraded, e.to_string())
        }
    }
}

/// A platform failure in words an operator can act on.
pub fn explain(e: &PlatformError) -> String {
    match e {
        PlatformError::Unauthorized { detail } => format!(
            "the platform refused the credentials ({detail}): rotate or fix them, then push the change"
        ),
        PlatformError::NotFound { detail } => format!(
            "the platform answered not found ({detail}): check the domain or subdomain in [credentials]"
        ),
        PlatformError::Transient { detail, .. } => {
            format!("the platform is unreachable or failing ({detail}); retrying with backoff")
        }
        PlatformError::NotPerformed { detail } => {
            format!("the platform is unreachable ({detail}); retrying with backoff")
        }
        PlatformError::OutcomeUnknown { .. } => e.to_string(),
        PlatformError::RateLimited { .. } => match e.retry_after() {
            Some(d) => format!(
                "rate limited by the platform; retrying after {} s",
                d.as_secs()
            ),
            None => "rate limited by the platform; retrying with backoff".to_owned(),
        },
        PlatformError::Rejected { status, detail } => {
            format!("the platform refused the request (HTTP {status}): {detail}")
        }
        PlatformError::Invalid(detail) => format!("invalid configuration: {detail}"),
    }
}

/// How long to wait before checking a failing integration again: 15 s doubled per failure,
/// at most `ceiling`.
pub fn backoff(failures: u32, ceiling: std::time::Duration) -> std::time::Duration {
    let secs = 15u64.saturating_mul(1u64 << failures.saturating_sub(1).min(20));
    std::time::Duration::from_secs(secs).min(ceiling)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_ceiling() {
        let c = Duration::from_secs(300);
        assert_eq!(backoff(1, c), Duration::from_secs(15));
        assert_eq!(backoff(2, c), Duration::from_secs(30));
        assert_eq!(backoff(3, c), Duration::from_secs(60));
        assert_eq!(backoff(9, c), c);
        assert_eq!(backoff(u32::MAX, c), c);
    }

    #[test]
    fn failures_are_explained_for_operators() {
        let (h, why) = of_check(&Err(PlatformError::Unauthorized {
            detail: "401".into(),
        }));
        assert_eq!(h, HealthStatus::Degraded);
        assert!(why.contains("credentials"), "{why}");
        let (h, why) = of_check(&Err(PlatformError::NotFound {
            detail: "no such account".into(),
        }));
        assert_eq!(h, HealthStatus::Degraded);
        assert!(why.contains("domain"), "{why}");
        let (h, _) = of_connect_error(&ConnectError::Missing("api_key".into()));
        assert_eq!(h, HealthStatus::Missing);
        let (h, why) = of_check(&Ok(Health {
            identity: Some("7".into()),
            detail: "connected as agent 7".into(),
        }));
        assert_eq!(
            (h, why.as_str()),
            (HealthStatus::Healthy, "connected as agent 7")
        );
    }
}
