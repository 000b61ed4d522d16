//! Read-only probes of a real platform account (`supportopsd check-platform ID`): what a probe
//! reports ([`Finding`], [`Verdict`]), what it is told about the integration
//! ([`ProbeTarget`]), and the read-only guard ([`read_only`]) every platform's probe passes
//! each request through before it is sent.
//!
//! A probe checks, against the account the operator points it at, the assumptions the
//! connector makes that vendor documentation does not confirm (see each platform's
//! `docs/integrations/<platform>.md`, "What is confirmed, and what needs a real account"): the
//! connection, our registrations as the platform lists them, and one of them read back. It
//! changes nothing: each platform's `probe.rs` sends requests only through a reader that calls
//! [`read_only`] with the request's method and path first, so a `PUT`, `DELETE` or an
//! unlisted `POST` is refused before it leaves the process.

use std::fmt;

use http::Method;

use super::connector::PlatformError;
use crate::manifest::IntegrationId;
use crate::secrets::Secret;

/// How an assumption fared against the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The platform answered what the connector assumes.
    Matches,
    /// The platform answered something else: the connector's assumption is wrong here.
    Differs,
    /// Could not be checked read-only (nothing of ours registered yet, a credential not set,
    /// the platform refused the read); `observed` says why.
    Unchecked,
}

impl Verdict {
    /// Lower-case name (`matches`, `differs`, `unchecked`).
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Matches => "matches",
            Verdict::Differs => "differs",
            Verdict::Unchecked => "unchecked",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One assumption checked against the account. Never holds a secret value: probes describe
/// secrets ("present", "hidden", "equal to the manifest's") and never copy them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The platform area it belongs to (`connection`, `automation rules`, `manifest`…): the
    /// text output groups by it.
    pub area: String,
    /// The assumption, in a few words (`rule listing pages with page/per_page`).
    pub assumption: String,
    /// The request that checked it (`GET /api/v2/automations/4/rules?page=1&per_page=100`).
    pub request: String,
    /// What the connector expects.
    pub expected: String,
    /// What the platform answered (or why it could not be checked).
    pub observed: String,
    /// The verdict.
    pub verdict: Verdict,
}

impl Finding {
    /// A finding; `matches` chooses between [`Verdict::Matches`] and [`Verdict::Differs`].
    pub fn checked(
        area: &str,
        assumption: &str,
        request: &str,
        expected: impl Into<String>,
        observed: impl Into<String>,
        matches: bool,
    ) -> Finding {
        Finding {
            area: area.to_owned(),
            assumption: assumption.to_owned(),
            request: request.to_owned(),
            expected: expected.into(),
            observed: observed.into(),
            verdict: if matches {
                Verdict::Matches
            } else {
                Verdict::Differs
            },
        }
    }

    /// A finding that could not be checked, and why.
    pub fn unchecked(
        area: &str,
        assumption: &str,
        request: &str,
        expected: impl Into<String>,
        why: impl Into<String>,
    ) -> Finding {
        Finding {
            area: area.to_owned(),
            assumption: assumption.to_owned(),
            request: request.to_owned(),
            expected: expected.into(),
            observed: why.into(),
            verdict: Verdict::Unchecked,
        }
    }
}

/// What a probe is told about the integration.
#[derive(Debug, Clone)]
pub struct ProbeTarget {
    /// The integration (its marker names our registrations on the platform).
    pub integration: IntegrationId,
    /// Where the daemon is reached (`{public_url}/api/webhooks/{platform}/{id}`), when the
    /// operator gave `--public-url`: registrations are then compared with it.
    pub url: Option<String>,
    /// The manifest's `[webhook] events` (sorted, deduplicated); empty without `[webhook]`.
    pub events: Vec<String>,
    /// The manifest's `[webhook] secret`, when it sets one: compared (in constant time) with
    /// what the platform echoes, never shown.
    pub secret: Option<Secret>,
}

impl ProbeTarget {
    /// The ownership marker of the integration's registrations.
    pub fn marker(&self) -> String {
        super::connector::marker(&self.integration)
    }
}

/// Refuses any request a probe must not send: every method but `GET` and `HEAD`, except a
/// `POST` to one of `read_posts` (the platform's named read-only endpoints: Slack's
/// `auth.test`, Google's token exchange). `path` is what the request goes to after the base
/// URL (`api/v2/agents/me`, `auth.test`), without its query; a leading `/` is ignored.
pub fn read_only(method: &Method, path: &str, read_posts: &[&str]) -> Result<(), PlatformError> {
    let path = path.trim_start_matches('/');
    let path = path.split('?').next().unwrap_or(path);
    if *method == Method::GET || *method == Method::HEAD {
        return Ok(());
    }
    if *method == Method::POST && read_posts.contains(&path) {
        return Ok(());
    }
    Err(PlatformError::Invalid(format!(
        "check-platform is read-only: {method} {path} was refused before it was sent"
    )))
}

/// A short description of a JSON value's type, for findings (`number 3`, `string "3"`,
/// `absent`).
pub fn describe(v: Option<&serde_json::Value>) -> String {
    use serde_json::Value;
    match v {
        None | Some(Value::Null) => "absent".to_owned(),
        Some(Value::Number(n)) => format!("number {n}"),
        Some(Value::String(s)) => format!("string {}", Value::String(cut(s, 60))),
        Some(Value::Bool(b)) => format!("boolean {b}"),
        Some(Value::Array(a)) => format!("a list of {}", a.len()),
        Some(Value::Object(o)) => format!("an object with {} key(s)", o.len()),
    }
}

/// `s` cut to `max` characters (`…` appended when cut).
pub fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max).collect();
    out.push('…');
    out
}

/// The findings a probe reports when the connection check itself failed is not a finding:
/// the probe returns the error and `check-platform` exits 2. This turns a failed read after
/// the connection succeeded into a finding that could not be checked.
pub fn unreadable(
    area: &str,
    assumption: &str,
    request: &str,
    expected: &str,
    err: &PlatformError,
) -> Finding {
    Finding::unchecked(
        area,
        assumption,
        request,
        expected,
        format!("the platform refused the read: {err}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reads_pass_the_guard() {
        assert!(read_only(&Method::GET, "api/v2/agents/me", &[]).is_ok());
        assert!(read_only(&Method::HEAD, "/x", &[]).is_ok());
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let e = read_only(&m, "api/v2/automations/4/rules/1", &[]).expect_err("refused");
            assert!(e.to_string().contains("read-only"), "{e}");
        }
        assert!(read_only(&Method::POST, "auth.test", &["auth.test"]).is_ok());
        assert!(read_only(&Method::POST, "/auth.test?x=1", &["auth.test"]).is_ok());
        assert!(read_only(&Method::POST, "apps.manifest.update", &["auth.test"]).is_err());
        assert!(read_only(&Method::PUT, "auth.test", &["auth.test"]).is_err());
    }

    /// A connector without probes of its own reports its connection check and says so.
    #[tokio::test]
    async fn the_default_probe_is_the_connection_check() {
        use crate::platforms::connector::{ActionCall, ActionOutput, Connector, Health};

        #[derive(Debug)]
        struct Plain(bool);

        #[async_trait::async_trait]
        impl Connector for Plain {
            async fn check(&self) -> Result<Health, PlatformError> {
                if self.0 {
                    Ok(Health {
                        identity: Some("U1".into()),
                        detail: "authenticated as @bot".into(),
                    })
                } else {
                    Err(PlatformError::Unauthorized {
                        detail: "bad key".into(),
                    })
                }
            }
            async fn execute(&self, _: &ActionCall) -> Result<ActionOutput, PlatformError> {
                Err(PlatformError::Invalid("no actions".into()))
            }
        }

        let target = ProbeTarget {
            integration: IntegrationId::parse("any-main").expect("id"),
            url: None,
            events: Vec::new(),
            secret: None,
        };
        let findings = Plain(true).probe(&target).await.expect("runs");
        assert_eq!(findings.len(), 2);
        assert_eq!(findings[0].verdict, Verdict::Matches);
        assert_eq!(findings[0].observed, "authenticated as @bot");
        assert_eq!(findings[1].verdict, Verdict::Unchecked);
        assert!(matches!(
            Plain(false).probe(&target).await,
            Err(PlatformError::Unauthorized { .. })
        ));
        assert_eq!(target.marker(), "supportopsd:any-main");
    }

    #[test]
    fn values_are_described_by_type() {
        use serde_json::json;
        assert_eq!(describe(Some(&json!(3))), "number 3");
        assert_eq!(describe(Some(&json!("3"))), "string \"3\"");
        assert_eq!(describe(None), "absent");
        assert_eq!(describe(Some(&json!({"a": 1}))), "an object with 1 key(s)");
        assert_eq!(cut("abcdef", 3), "abc…");
    }
}
