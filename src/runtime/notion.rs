//! Notion's verification token: the first comer does not own a subscription (SEC-04).
//!
//! Notion proves its deliveries with an HMAC keyed by a token it posts once, unsigned, to the
//! subscription's URL. Whoever posts first could otherwise plant their own key. So:
//!
//! - a token is accepted only inside a window an operator opens
//!   ([`Runtime::expect_notion_verification`], 10 minutes by default, at most 60); outside one,
//!   the unsigned request is refused like any unverifiable delivery and nothing is stored;
//! - every token received in the window is kept (sealed) with when it arrived and from which
//!   peer, and shown — all of them — to an admin caller only;
//! - no token verifies anything until the operator confirms one
//!   ([`Runtime::confirm_notion_token`]), comparing with what Notion shows; signed events are
//!   refused before that, and `status` says "waiting for confirmation", never "verified";
//! - [`Runtime::reset_notion_verification`] forgets tokens and confirmation.
//!
//! Every change is one read-modify-write of the integration's [`NotionVerification`] under a
//! lock, flushed before it is answered.

use std::time::Duration;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Runtime;
use super::health::SyncStatus;
use crate::manifest::IntegrationId;
use crate::platforms::inbound::hex;
use crate::secrets::{self, Secret};
use crate::state::{NotionVerification, ReceivedToken};

/// The sealing field of a verification token.
pub const TOKEN_FIELD: &str = "verification_token";
/// A window's length when the operator names none.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10 * 60);
/// The longest window an operator may open.
pub const MAX_WINDOW_MINUTES: u64 = 60;
/// Most tokens kept per integration (a flood of requests inside a window is refused beyond).
pub const MAX_TOKENS: usize = 20;

/// Why a verification token was not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureRefusal {
    /// No window is open (or the subscription is confirmed already): answered like a bad
    /// signature.
    NoWindow,
    /// The window already holds [`MAX_TOKENS`] tokens.
    Full,
    /// No sealing key to keep it with.
    NoKey,
    /// Sealing or storing failed (the text is for the log).
    Failed(String),
}

/// Why an operator's action on a verification was refused (the text is for the operator).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionRefusal {
    /// Not allowed in the current state (409).
    Conflict(String),
    /// The request names nothing usable (400 / 404).
    Invalid(String),
    /// Storing failed (500; the text is for the log).
    Failed(String),
}

/// Which received token the operator confirms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenChoice {
    /// By its number.
    Id(u32),
    /// By its fingerprint (`sha256:…`, or the hex alone).
    Fingerprint(String),
}

/// `sha256:` + the first 16 hex digits of the token's SHA-256.
pub fn token_fingerprint(token: &[u8]) -> String {
    let mut h = hex(&Sha256::digest(token));
    h.truncate(16);
    format!("sha256:{h}")
}

impl Runtime {
    fn notion_record(&self, id: &IntegrationId) -> NotionVerification {
        self.store
            .notion_verification(id.as_str())
            .unwrap_or_default()
    }

    fn notion_guard(&self) -> std::sync::MutexGuard<'_, ()> {
        self.notion_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether unsigned verification requests for `id` are accepted at `now_ms`.
    pub fn notion_window_open(&self, id: &IntegrationId, now_ms: u64) -> bool {
        self.notion_record(id).window_open(now_ms)
    }

    /// Keeps a verification token that arrived from `peer` (only inside an open window; the
    /// same token twice is kept once). Audited without the token.
    pub fn capture_notion_token(
        &self,
        id: &IntegrationId,
        token: &Secret,
        peer: &str,
        now_ms: u64,
    ) -> Result<(), CaptureRefusal> {
        let _guard = self.notion_guard();
        let mut record = self.notion_record(id);
        if !record.window_open(now_ms) {
            return Err(CaptureRefusal::NoWindow);
        }
        let fingerprint = token_fingerprint(token.expose());
        if record.tokens.iter().any(|t| t.fingerprint == fingerprint) {
            return Ok(());
        }
        if record.tokens.len() >= MAX_TOKENS {
            return Err(CaptureRefusal::Full);
        }
        let Some(key) = &self.key else {
            return Err(CaptureRefusal::NoKey);
        };
        let sealed = secrets::seal(key, id, TOKEN_FIELD, token.expose())
            .map_err(|e| CaptureRefusal::Failed(e.to_string()))?;
        let token_id = record.next_id();
        record.tokens.push(ReceivedToken {
            id: token_id,
            sealed,
            fingerprint: fingerprint.clone(),
            received_ms: now_ms,
            peer: peer.to_owned(),
        });
        self.store
            .put_notion_verification(id.as_str(), &record)
            .and_then(|()| self.store.flush())
            .map_err(|e| CaptureRefusal::Failed(e.to_string()))?;
        self.record_audit(
            now_ms,
            crate::state::AuditKind::VerificationTokenCaptured,
            "integration",
            id.as_str(),
            json!({"token_id": token_id, "fingerprint": fingerprint, "peer": peer}),
        );
        self.record_notion_progress(id, &record);
        Ok(())
    }

    /// Opens (or extends) the window in which verification tokens for `id` are accepted, for
    /// `minutes` (default 10, at most 60): until when. With a token confirmed already, this
    /// starts replacing it ("Resend token" in Notion, or a re-created subscription): the
    /// confirmed token keeps verifying deliveries until the operator confirms a new one.
    pub fn expect_notion_verification(
        &self,
        id: &IntegrationId,
        minutes: Option<u64>,
        now_ms: u64,
    ) -> Result<u64, ActionRefusal> {
        let length = match minutes {
            None => DEFAULT_WINDOW,
            Some(m) if (1..=MAX_WINDOW_MINUTES).contains(&m) => Duration::from_secs(m * 60),
            Some(m) => {
                return Err(ActionRefusal::Invalid(format!(
                    "`minutes` must be between 1 and {MAX_WINDOW_MINUTES} (got {m})"
                )));
            }
        };
        let _guard = self.notion_guard();
        let mut record = self.notion_record(id);
        let until = now_ms.saturating_add(u64::try_from(length.as_millis()).unwrap_or(u64::MAX));
        record.window_until_ms = Some(until);
        self.store
            .put_notion_verification(id.as_str(), &record)
            .and_then(|()| self.store.flush())
            .map_err(|e| ActionRefusal::Failed(e.to_string()))?;
        self.record_notion_progress(id, &record);
        Ok(until)
    }

    /// Confirms the received token the operator picked: from now on it alone verifies `id`'s
    /// deliveries, and the window closes. A token confirmed before (being replaced) is
    /// forgotten: deliveries signed with it are refused from now on. The revision's keys are
    /// rebuilt before this returns.
    pub fn confirm_notion_token(
        &self,
        id: &IntegrationId,
        choice: &TokenChoice,
    ) -> Result<ReceivedToken, ActionRefusal> {
        let confirmed = {
            let _guard = self.notion_guard();
            let mut record = self.notion_record(id);
            let previous = record.confirmed_token().cloned();
            if let Some(t) = &previous
                && !record.window_open(super::now_ms())
            {
                return Err(ActionRefusal::Conflict(format!(
                    "`{id}` is verified already (token {} confirmed); to replace it, open a window \
                     (`supportopsd notion expect-verification {id}`), press \"Resend token\" in \
                     Notion, then confirm the new token",
                    t.id
                )));
            }
            let found = record
                .tokens
                .iter()
                .find(|t| match choice {
                    TokenChoice::Id(n) => t.id == *n,
                    TokenChoice::Fingerprint(f) => {
                        !t.fingerprint.is_empty()
                            && (t.fingerprint == *f
                                || t.fingerprint.strip_prefix("sha256:") == Some(f.as_str()))
                    }
                })
                .cloned();
            let Some(token) = found else {
                return Err(ActionRefusal::Invalid(format!(
                    "no received token of `{id}` is {}; {} token(s) received",
                    match choice {
                        TokenChoice::Id(n) => format!("number {n}"),
                        TokenChoice::Fingerprint(f) => format!("fingerprinted `{f}`"),
                    },
                    record.tokens.len()
                )));
            };
            if previous.as_ref().is_some_and(|p| p.id == token.id) {
                return Err(ActionRefusal::Conflict(format!(
                    "token {} of `{id}` is the one confirmed already; confirm the new token Notion sent",
                    token.id
                )));
            }
            record.confirmed = Some(token.id);
            record.window_until_ms = None;
            // The replaced token never verifies again.
            if let Some(p) = &previous {
                record.tokens.retain(|t| t.id != p.id);
            }
            self.store
                .put_notion_verification(id.as_str(), &record)
                .and_then(|()| self.store.flush())
                .map_err(|e| ActionRefusal::Failed(e.to_string()))?;
            self.record_notion_progress(id, &record);
            token
        };
        // The confirmed token becomes the verification key.
        if let Err(e) = self.reload() {
            tracing::warn!(integration = %id, error = %e, "Reloading after a Notion confirmation failed; the token is used from the next load.");
        }
        Ok(confirmed)
    }

    /// Forgets `id`'s tokens, window and confirmation (its deliveries are refused until a new
    /// token is received and confirmed). The revision's keys are rebuilt before this returns.
    pub fn reset_notion_verification(&self, id: &IntegrationId) -> Result<(), ActionRefusal> {
        {
            let _guard = self.notion_guard();
            self.store
                .reset_notion_verification(id.as_str())
                .and_then(|()| self.store.flush())
                .map_err(|e| ActionRefusal::Failed(e.to_string()))?;
            self.signed_seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(id);
            self.record_notion_progress(id, &NotionVerification::default());
        }
        if let Err(e) = self.reload() {
            tracing::warn!(integration = %id, error = %e, "Reloading after a Notion reset failed; the old token is dropped at the next load.");
        }
        Ok(())
    }

    /// Where `id`'s verification stands, for the operator API: the window, every token
    /// received (unsealed only when `reveal`, i.e. for an admin caller) with when it came and
    /// from which peer, and which one is confirmed.
    pub fn notion_verification_view(&self, id: &IntegrationId, reveal: bool, now_ms: u64) -> Value {
        let record = self.notion_record(id);
        let tokens: Vec<Value> = record
            .tokens
            .iter()
            .map(|t| {
                let mut v = json!({
                    "token_id": t.id,
                    "fingerprint": t.fingerprint,
                    "received_ms": t.received_ms,
                    "peer": t.peer,
                    "confirmed": record.confirmed == Some(t.id),
                });
                if reveal
                    && let Some(key) = &self.key
                    && let Ok(secret) = secrets::unseal(key, id, TOKEN_FIELD, &t.sealed)
                {
                    v["verification_token"] =
                        Value::String(String::from_utf8_lossy(secret.expose()).into_owned());
                }
                v
            })
            .collect();
        json!({
            "integration": id.as_str(),
            "window_open": record.window_open(now_ms),
            "window_until_ms": record.window_until_ms.filter(|_| record.window_open(now_ms)),
            "confirmed_token_id": record.confirmed,
            "verified": record.confirmed.is_some(),
            "tokens": tokens,
            "state": progress_of(&record, now_ms, None).1,
        })
    }

    /// Records `id`'s sync status from its verification record (no instructions: the next
    /// reconcile pass adds them while nothing is received).
    fn record_notion_progress(&self, id: &IntegrationId, record: &NotionVerification) {
        let signed = self
            .store
            .signed_delivery_seen(id.as_str())
            .unwrap_or(false);
        let (status, reason) = progress_of(record, super::now_ms(), Some(signed));
        self.record_sync(id.as_str(), status, &reason);
    }

    /// Where a Notion subscription stands (Notion creates them only in its UI): waiting for
    /// verification (with `instructions`), waiting for the operator's confirmation, or
    /// verified.
    pub fn notion_progress(&self, id: &IntegrationId, instructions: &str) -> (SyncStatus, String) {
        let record = self.notion_record(id);
        let signed = self
            .store
            .signed_delivery_seen(id.as_str())
            .unwrap_or(false);
        let (status, reason) = progress_of(&record, super::now_ms(), Some(signed));
        if record.tokens.is_empty() && !record.window_open(super::now_ms()) {
            return (status, format!("waiting for verification: {instructions}"));
        }
        (status, reason)
    }

    /// Integrations' confirmed verification tokens, unsealed (the keys of Notion deliveries).
    pub(super) fn confirmed_notion_tokens(
        &self,
    ) -> std::collections::HashMap<IntegrationId, Secret> {
        let mut out = std::collections::HashMap::new();
        let Some(key) = &self.key else { return out };
        for (id, sealed) in self.store.confirmed_notion_tokens().unwrap_or_default() {
            if let Ok(id) = IntegrationId::parse(&id)
                && let Ok(secret) = secrets::unseal(key, &id, TOKEN_FIELD, &sealed)
            {
                out.insert(id, secret);
            }
        }
        out
    }
}

/// The sync status and reason of a verification record. `signed` says whether a signed
/// delivery was seen (`None`: not asked).
fn progress_of(
    record: &NotionVerification,
    now_ms: u64,
    signed: Option<bool>,
) -> (SyncStatus, String) {
    if let Some(t) = record.confirmed_token()
        && record.window_open(now_ms)
    {
        let new = record.tokens.iter().filter(|n| n.id != t.id).count();
        return (
            SyncStatus::InSync,
            format!(
                "verified with token {} ({}), being replaced: the verification window is open and \
                 {new} new token(s) received; confirm the new one \
                 (`supportopsd notion confirm-verification ID TOKEN_ID`) and deliveries signed \
                 with it are accepted, the old token's refused",
                t.id, t.fingerprint
            ),
        );
    }
    if let Some(t) = record.confirmed_token() {
        let tail = if signed == Some(true) {
            "signed events arrive from the subscription"
        } else {
            "no signed event has arrived yet"
        };
        return (
            SyncStatus::InSync,
            format!(
                "verified: the operator confirmed token {} ({}); {tail}",
                t.id, t.fingerprint
            ),
        );
    }
    let n = record.tokens.len();
    let window = if record.window_open(now_ms) {
        " (the verification window is open)"
    } else {
        ""
    };
    if n > 0 {
        return (
            SyncStatus::Unknown,
            format!(
                "waiting for confirmation: {n} token(s) received{window}; compare them \
                 (`supportopsd notion verification ID` or GET /api/integrations/ID/notion/verification) \
                 with the one Notion shows, then `supportopsd notion confirm-verification ID TOKEN_ID`; \
                 deliveries are refused until then"
            ),
        );
    }
    if record.window_open(now_ms) {
        return (
            SyncStatus::Unknown,
            "waiting for verification: the verification window is open; create the subscription \
             in Notion (or press \"Resend token\") now"
                .to_owned(),
        );
    }
    (
        SyncStatus::Unknown,
        "waiting for verification: open a verification window (`supportopsd notion expect-verification ID`), \
         then create the subscription in Notion"
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(tokens: u32, confirmed: Option<u32>, until: Option<u64>) -> NotionVerification {
        NotionVerification {
            window_until_ms: until,
            tokens: (1..=tokens)
                .map(|id| ReceivedToken {
                    id,
                    sealed: String::new(),
                    fingerprint: format!("sha256:{id:016x}"),
                    received_ms: 1,
                    peer: "127.0.0.1:9".into(),
                })
                .collect(),
            confirmed,
        }
    }

    #[test]
    fn status_never_says_verified_before_confirmation() {
        for (r, starts) in [
            (record(0, None, None), "waiting for verification"),
            (record(0, None, Some(100)), "waiting for verification"),
            (
                record(2, None, Some(100)),
                "waiting for confirmation: 2 token(s)",
            ),
            (
                record(1, None, None),
                "waiting for confirmation: 1 token(s)",
            ),
        ] {
            for signed in [None, Some(false), Some(true)] {
                let (status, reason) = progress_of(&r, 50, signed);
                assert_eq!(status, SyncStatus::Unknown, "{reason}");
                assert!(reason.starts_with(starts), "{reason}");
                assert!(!reason.contains("verified"), "{reason}");
            }
        }
        let (status, reason) = progress_of(&record(2, Some(2), None), 50, Some(true));
        assert_eq!(status, SyncStatus::InSync);
        assert!(reason.starts_with("verified: the operator confirmed token 2"));
        assert!(reason.contains("signed events arrive"));
    }

    fn runtime(dir: &std::path::Path, key: bool) -> std::sync::Arc<Runtime> {
        let options = super::super::Options::new(
            "127.0.0.1:0".parse().unwrap(),
            "http://127.0.0.1:0".into(),
            dir.join("repo"),
            dir.join("state"),
        );
        let key = key.then(|| crate::secrets::SealKey::generate().unwrap());
        super::super::open(options, key).unwrap()
    }

    #[tokio::test]
    async fn tokens_are_kept_only_in_a_window_and_verify_only_once_confirmed() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(dir.path(), true);
        let id = IntegrationId::parse("notion-main").unwrap();
        let token = |t: &str| Secret::from(t.to_owned());
        // No window: refused, nothing kept.
        assert_eq!(
            rt.capture_notion_token(&id, &token("secret_early"), "192.0.2.1:5", 1_000),
            Err(CaptureRefusal::NoWindow)
        );
        assert!(
            rt.store
                .notion_verification("notion-main")
                .unwrap()
                .tokens
                .is_empty()
        );
        for bad in [0, MAX_WINDOW_MINUTES + 1] {
            assert!(matches!(
                rt.expect_notion_verification(&id, Some(bad), 1_000),
                Err(ActionRefusal::Invalid(_))
            ));
        }
        let until = rt.expect_notion_verification(&id, None, 1_000).unwrap();
        assert_eq!(until, 1_000 + 600_000);
        assert!(rt.notion_window_open(&id, until - 1));
        assert!(!rt.notion_window_open(&id, until));
        rt.capture_notion_token(&id, &token("secret_attacker"), "192.0.2.1:5", 2_000)
            .unwrap();
        rt.capture_notion_token(&id, &token("secret_notion"), "198.51.100.7:6", 3_000)
            .unwrap();
        // The same token again is kept once.
        rt.capture_notion_token(&id, &token("secret_notion"), "198.51.100.7:6", 3_500)
            .unwrap();
        let record = rt.store.notion_verification("notion-main").unwrap();
        assert_eq!(record.tokens.len(), 2);
        assert_eq!(record.tokens[1].peer, "198.51.100.7:6");
        assert_eq!(record.tokens[1].received_ms, 3_000);
        // Sealed at rest, shown only when revealed.
        assert!(!format!("{record:?}").contains("secret_notion"));
        let hidden = rt.notion_verification_view(&id, false, 4_000).to_string();
        assert!(!hidden.contains("secret_"), "{hidden}");
        let shown = rt.notion_verification_view(&id, true, 4_000);
        assert_eq!(shown["tokens"][1]["verification_token"], "secret_notion");
        assert_eq!(shown["window_open"], true);
        // Nothing verifies before confirmation.
        assert!(rt.confirmed_notion_tokens().is_empty());
        let fingerprint = token_fingerprint(b"secret_notion");
        let bare = fingerprint.trim_start_matches("sha256:").to_owned();
        let confirmed = rt
            .confirm_notion_token(&id, &TokenChoice::Fingerprint(bare))
            .unwrap();
        assert_eq!(confirmed.id, 2);
        let keys = rt.confirmed_notion_tokens();
        assert_eq!(
            keys.get(&id).map(|s| s.expose().to_vec()),
            Some(b"secret_notion".to_vec())
        );
        // Confirmed: no other confirmation and no new token without a new window.
        assert!(matches!(
            rt.confirm_notion_token(&id, &TokenChoice::Id(1)),
            Err(ActionRefusal::Conflict(_))
        ));
        assert_eq!(
            rt.capture_notion_token(&id, &token("secret_late"), "192.0.2.1:5", 5_000),
            Err(CaptureRefusal::NoWindow)
        );
        // Issue 16 item 10, replacing it ("Resend token"): a window opens while the token is
        // confirmed, which keeps verifying until the new one is confirmed; then only the new
        // one does.
        let now = crate::runtime::now_ms();
        rt.expect_notion_verification(&id, None, now).unwrap();
        rt.capture_notion_token(&id, &token("secret_resent"), "198.51.100.7:6", now)
            .unwrap();
        assert_eq!(
            rt.confirmed_notion_tokens()
                .get(&id)
                .map(|s| s.expose().to_vec()),
            Some(b"secret_notion".to_vec())
        );
        assert!(matches!(
            rt.confirm_notion_token(&id, &TokenChoice::Id(2)),
            Err(ActionRefusal::Conflict(_))
        ));
        let resent = rt
            .confirm_notion_token(
                &id,
                &TokenChoice::Fingerprint(token_fingerprint(b"secret_resent")),
            )
            .unwrap();
        assert_eq!(
            rt.confirmed_notion_tokens()
                .get(&id)
                .map(|s| s.expose().to_vec()),
            Some(b"secret_resent".to_vec())
        );
        let record = rt.store.notion_verification("notion-main").unwrap();
        assert_eq!(record.confirmed, Some(resent.id));
        assert!(
            record.tokens.iter().all(|t| t.id != 2),
            "the old token is gone"
        );
        assert!(!record.window_open(crate::runtime::now_ms()));
        // Reset forgets everything.
        rt.reset_notion_verification(&id).unwrap();
        assert_eq!(
            rt.store.notion_verification("notion-main").unwrap(),
            NotionVerification::default()
        );
        assert!(rt.confirmed_notion_tokens().is_empty());
    }

    #[tokio::test]
    async fn a_window_holds_a_bounded_number_of_tokens_and_needs_a_sealing_key() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(dir.path(), true);
        let id = IntegrationId::parse("notion-main").unwrap();
        rt.expect_notion_verification(&id, Some(60), 0).unwrap();
        for n in 0..MAX_TOKENS {
            rt.capture_notion_token(&id, &Secret::from(format!("secret_{n}")), "p", 1)
                .unwrap();
        }
        assert_eq!(
            rt.capture_notion_token(&id, &Secret::from("secret_more".to_owned()), "p", 1),
            Err(CaptureRefusal::Full)
        );
        assert!(matches!(
            rt.confirm_notion_token(&id, &TokenChoice::Id(99)),
            Err(ActionRefusal::Invalid(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let keyless = runtime(dir.path(), false);
        keyless.expect_notion_verification(&id, None, 0).unwrap();
        assert_eq!(
            keyless.capture_notion_token(&id, &Secret::from("secret_x".to_owned()), "p", 1),
            Err(CaptureRefusal::NoKey)
        );
    }

    #[test]
    fn fingerprints_are_short_and_stable() {
        let f = token_fingerprint(b"secret_abc");
        assert!(f.starts_with("sha256:"));
        assert_eq!(f.len(), "sha256:".len() + 16);
        assert_eq!(f, token_fingerprint(b"secret_abc"));
        assert_ne!(f, token_fingerprint(b"secret_abd"));
    }
}
