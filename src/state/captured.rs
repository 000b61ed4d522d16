//! Secrets the daemon learns at run time rather than from the manifests: Notion's verification
//! tokens, and where each integration's verification stands ([`NotionVerification`]: the
//! window an operator opened, every token received in it — sealed, AES-256-SIV bound to the
//! integration — and the one the operator confirmed). In `meta`.
//!
//! Earlier versions kept a single token (`captured_token/<id>`), the first one that came;
//! [`Store::notion_verification`] reads such a token as received but **not** confirmed, so an
//! upgraded daemon asks the operator to confirm it (SEC-04).
//!
//! Also what a connector keeps between runs ([`ConnectorKept`]): Slack's rotated app
//! configuration token pair (single-use refresh token: a restart must use the pair stored here,
//! never the spent one of the manifests) and what its manifest sync last wrote. Its secret
//! values arrive sealed (AES-256-SIV, bound to the integration and the field); one record per
//! integration, written with one insert and flushed before [`Store::put_connector_kept`]
//! returns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Error, Store, codec, trees};

const PREFIX: &str = "notion_verification/";
const LEGACY_PREFIX: &str = "captured_token/";
const LEGACY_SHOWN_PREFIX: &str = "captured_token_shown/";
const VERIFIED_PREFIX: &str = "signed_delivery_seen/";
const KEPT_PREFIX: &str = "connector_kept/";

/// What a connector keeps between runs for one integration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectorKept {
    /// Secret values by field, each sealed for (integration, field).
    pub sealed: BTreeMap<String, String>,
    /// Everything else (nothing secret).
    pub data: serde_json::Value,
}

/// A verification token that arrived inside a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedToken {
    /// Its number within the integration's record (1, 2, …), what the operator confirms.
    pub id: u32,
    /// The token, sealed (field `verification_token`).
    pub sealed: String,
    /// `sha256:` + the first 16 hex digits of the token's SHA-256 (to tell tokens apart).
    pub fingerprint: String,
    /// When it arrived, milliseconds since the Unix epoch (0: unknown, kept from an earlier
    /// version).
    pub received_ms: u64,
    /// The TCP peer that posted it (with a reverse proxy in front, the proxy).
    pub peer: String,
}

/// Where an integration's Notion verification stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotionVerification {
    /// Until when (ms since the epoch) unsigned verification requests are accepted.
    pub window_until_ms: Option<u64>,
    /// Every token received, oldest first.
    pub tokens: Vec<ReceivedToken>,
    /// The id of the token the operator confirmed (the only one that verifies signatures).
    pub confirmed: Option<u32>,
}

impl NotionVerification {
    /// Whether unsigned verification requests are accepted at `now`.
    /// A window may be open while a token is confirmed: the operator is replacing it ("Resend
    /// token", a re-created subscription); the confirmed token verifies deliveries until
    /// another is confirmed.
    pub fn window_open(&self, now_ms: u64) -> bool {
        self.window_until_ms.is_some_and(|until| now_ms < until)
    }

    /// The confirmed token, if any.
    pub fn confirmed_token(&self) -> Option<&ReceivedToken> {
        let id = self.confirmed?;
        self.tokens.iter().find(|t| t.id == id)
    }

    /// The next token id.
    pub fn next_id(&self) -> u32 {
        self.tokens
            .iter()
            .map(|t| t.id)
            .max()
            .unwrap_or(0)
            .saturating_add(1)
    }
}

impl Store {
    /// Where an integration's Notion verification stands (a default record when nothing was
    /// done yet; a token kept by an earlier version is returned as received, unconfirmed).
    pub fn notion_verification(&self, integration: &str) -> Result<NotionVerification, Error> {
        let t = self.t()?;
        if let Some(v) =
            self.get::<NotionVerification>(&t.meta, trees::META, &format!("{PREFIX}{integration}"))?
        {
            return Ok(v);
        }
        let legacy = self.get::<String>(
            &t.meta,
            trees::META,
            &format!("{LEGACY_PREFIX}{integration}"),
        )?;
        Ok(NotionVerification {
            window_until_ms: None,
            tokens: legacy
                .into_iter()
                .map(|sealed| ReceivedToken {
                    id: 1,
                    sealed,
                    fingerprint: String::new(),
                    received_ms: 0,
                    peer: "unknown (kept from an earlier version)".to_owned(),
                })
                .collect(),
            confirmed: None,
        })
    }

    /// Stores where an integration's Notion verification stands (and drops a token an earlier
    /// version kept, which the record now holds). Does not flush.
    pub fn put_notion_verification(
        &self,
        integration: &str,
        v: &NotionVerification,
    ) -> Result<(), Error> {
        let t = self.t()?;
        let _writing = self.writing();
        self.put(&t.meta, trees::META, &format!("{PREFIX}{integration}"), v)?;
        self.remove_legacy(integration)
    }

    /// Forgets an integration's verification: window, tokens, confirmation, and that a signed
    /// delivery was seen. Does not flush.
    pub fn reset_notion_verification(&self, integration: &str) -> Result<(), Error> {
        let t = self.t()?;
        let _writing = self.writing();
        for key in [
            format!("{PREFIX}{integration}"),
            format!("{VERIFIED_PREFIX}{integration}"),
        ] {
            t.meta.remove(key.as_bytes()).map_err(|e| self.storage(e))?;
        }
        self.remove_legacy(integration)
    }

    fn remove_legacy(&self, integration: &str) -> Result<(), Error> {
        let t = self.t()?;
        for key in [
            format!("{LEGACY_PREFIX}{integration}"),
            format!("{LEGACY_SHOWN_PREFIX}{integration}"),
        ] {
            t.meta.remove(key.as_bytes()).map_err(|e| self.storage(e))?;
        }
        Ok(())
    }

    /// Records that a signed delivery for the integration was verified (the subscription
    /// works). Does not flush.
    pub fn set_signed_delivery_seen(&self, integration: &str) -> Result<(), Error> {
        let t = self.t()?;
        let _writing = self.writing();
        self.put(
            &t.meta,
            trees::META,
            &format!("{VERIFIED_PREFIX}{integration}"),
            &true,
        )
    }

    /// Whether a signed delivery was ever verified for the integration.
    pub fn signed_delivery_seen(&self, integration: &str) -> Result<bool, Error> {
        let t = self.t()?;
        Ok(self
            .get::<bool>(
                &t.meta,
                trees::META,
                &format!("{VERIFIED_PREFIX}{integration}"),
            )?
            .unwrap_or(false))
    }

    /// Every integration's confirmed token: (integration id, sealed value).
    pub fn confirmed_notion_tokens(&self) -> Result<Vec<(String, String)>, Error> {
        let t = self.t()?;
        let mut out = Vec::new();
        for item in t.meta.scan_prefix(PREFIX.as_bytes()) {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let record: NotionVerification = codec::decode(trees::META, &k, &v)?;
            if let Some(t) = record.confirmed_token() {
                let id = String::from_utf8_lossy(&k[PREFIX.len()..]).into_owned();
                out.push((id, t.sealed.clone()));
            }
        }
        Ok(out)
    }
}

impl Store {
    /// What the connector of `integration` kept, if anything.
    pub fn connector_kept(&self, integration: &str) -> Result<Option<ConnectorKept>, Error> {
        let t = self.t()?;
        self.get(&t.meta, trees::META, &format!("{KEPT_PREFIX}{integration}"))
    }

    /// Replaces what the connector of `integration` keeps, in one insert, and returns once it
    /// is durable (flushed): a rotated single-use token must be on disk before it is used.
    pub fn put_connector_kept(&self, integration: &str, kept: &ConnectorKept) -> Result<(), Error> {
        let t = self.t()?;
        let _writing = self.writing();
        self.put(
            &t.meta,
            trees::META,
            &format!("{KEPT_PREFIX}{integration}"),
            kept,
        )?;
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(id: u32, sealed: &str) -> ReceivedToken {
        ReceivedToken {
            id,
            sealed: sealed.to_owned(),
            fingerprint: format!("sha256:{id:016x}"),
            received_ms: 5,
            peer: "127.0.0.1:1".to_owned(),
        }
    }

    #[test]
    fn round_trip_confirm_and_reset() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.notion_verification("notion-main").unwrap(),
            NotionVerification::default()
        );
        let mut v = NotionVerification {
            window_until_ms: Some(100),
            tokens: vec![token(1, "sos1:attacker"), token(2, "sos1:notion")],
            confirmed: None,
        };
        assert!(v.window_open(99));
        assert!(!v.window_open(100));
        assert_eq!(v.next_id(), 3);
        store.put_notion_verification("notion-main", &v).unwrap();
        // Nothing confirmed: no key.
        assert!(store.confirmed_notion_tokens().unwrap().is_empty());
        v.confirmed = Some(2);
        // A window stays open while a token is confirmed (the operator replaces it).
        assert!(v.window_open(50));
        store.put_notion_verification("notion-main", &v).unwrap();
        assert_eq!(
            store.confirmed_notion_tokens().unwrap(),
            vec![("notion-main".to_owned(), "sos1:notion".to_owned())]
        );
        assert_eq!(store.notion_verification("notion-main").unwrap(), v);
        store.set_signed_delivery_seen("notion-main").unwrap();
        assert!(store.signed_delivery_seen("notion-main").unwrap());
        store.reset_notion_verification("notion-main").unwrap();
        assert_eq!(
            store.notion_verification("notion-main").unwrap(),
            NotionVerification::default()
        );
        assert!(!store.signed_delivery_seen("notion-main").unwrap());
        assert!(store.confirmed_notion_tokens().unwrap().is_empty());
    }

    #[test]
    fn connector_kept_round_trips_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let kept = ConnectorKept {
            sealed: BTreeMap::from([("rotated_app_config_token".to_owned(), "sos1:x".to_owned())]),
            data: serde_json::json!({"exp_s": 5}),
        };
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.connector_kept("slack-main").unwrap(), None);
            store.put_connector_kept("slack-main", &kept).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.connector_kept("slack-main").unwrap(), Some(kept));
        assert_eq!(store.connector_kept("slack-other").unwrap(), None);
    }

    #[test]
    fn a_token_kept_by_an_earlier_version_needs_confirmation() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .put(
                &store.t().unwrap().meta,
                trees::META,
                "captured_token/notion-main",
                &"sos1:old".to_owned(),
            )
            .unwrap();
        let v = store.notion_verification("notion-main").unwrap();
        assert_eq!(v.tokens.len(), 1);
        assert_eq!(v.tokens[0].sealed, "sos1:old");
        assert_eq!(v.confirmed, None);
        assert!(!v.window_open(0));
        assert!(store.confirmed_notion_tokens().unwrap().is_empty());
        store.reset_notion_verification("notion-main").unwrap();
        assert!(
            store
                .notion_verification("notion-main")
                .unwrap()
                .tokens
                .is_empty()
        );
    }
}
