//! Where connectors keep things between runs ([`StateKept`], the runtime's
//! [`KeptStore`]): one [`ConnectorKept`] record per integration in the state, each secret
//! sealed with the daemon's key (AES-256-SIV, the integration and the field as associated
//! data), written in one insert and flushed before `store` returns. Slack keeps its rotated app
//! configuration token pair here (the refresh token is single-use, so the pair must be durable
//! before it is used) and what its manifest sync last wrote.

use std::sync::Arc;

use crate::manifest::IntegrationId;
use crate::platforms::{Kept, KeptStore};
use crate::secrets::{self, SealKey};
use crate::state::{ConnectorKept, State};

/// The state as a [`KeptStore`].
#[derive(Debug, Clone)]
pub struct StateKept {
    store: Arc<dyn State>,
    key: Option<SealKey>,
}

impl StateKept {
    /// Keeps records in `store`, sealing secrets with `key` (without a key, a record with a
    /// secret cannot be stored, and a stored one cannot be read).
    pub fn new(store: Arc<dyn State>, key: Option<SealKey>) -> StateKept {
        StateKept { store, key }
    }

    fn key(&self) -> Result<&SealKey, String> {
        self.key.as_ref().ok_or_else(|| {
            "the daemon has no sealing key (see `--key-file`, `$SUPPORTOPSD_KEY_FILE` or `$CREDENTIALS_DIRECTORY/supportopsd.key`), so it cannot keep a rotated secret".to_owned()
        })
    }
}

impl KeptStore for StateKept {
    fn load(&self, integration: &IntegrationId) -> Result<Option<Kept>, String> {
        let Some(record) = self
            .store
            .connector_kept(integration.as_str())
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let mut kept = Kept {
            secrets: Default::default(),
            data: record.data,
        };
        for (field, sealed) in &record.sealed {
            let value = secrets::unseal(self.key()?, integration, field, sealed)
                .map_err(|e| format!("cannot unseal the kept `{field}`: {e}"))?;
            kept.secrets.insert(field.clone(), value);
        }
        Ok(Some(kept))
    }

    fn cannot_seal(&self) -> Option<String> {
        self.key().err()
    }

    fn store(&self, integration: &IntegrationId, kept: &Kept) -> Result<(), String> {
        let mut record = ConnectorKept {
            sealed: Default::default(),
            data: kept.data.clone(),
        };
        for (field, value) in &kept.secrets {
            let sealed = secrets::seal(self.key()?, integration, field, value.expose())
                .map_err(|e| format!("cannot seal `{field}`: {e}"))?;
            record.sealed.insert(field.clone(), sealed);
        }
        self.store
            .put_connector_kept(integration.as_str(), &record)
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::Secret;
    use crate::state::Store;

    #[test]
    fn secrets_are_sealed_for_their_integration_and_field_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let key = SealKey::generate().unwrap();
        let kept = StateKept::new(store.clone(), Some(key.clone()));
        let id = IntegrationId::parse("slack-main").unwrap();
        let mut k = Kept::default();
        k.secrets.insert(
            "rotated_app_config_token".into(),
            Secret::from("xoxe.xoxp-very-secret".to_owned()),
        );
        k.data = serde_json::json!({"exp_s": 7});
        kept.store(&id, &k).unwrap();
        let raw = store.connector_kept("slack-main").unwrap().unwrap();
        let text = serde_json::to_string(&raw).unwrap();
        assert!(!text.contains("very-secret"), "{text}");
        let back = kept.load(&id).unwrap().unwrap();
        assert_eq!(
            back.secrets["rotated_app_config_token"].expose(),
            b"xoxe.xoxp-very-secret"
        );
        assert_eq!(back.data, serde_json::json!({"exp_s": 7}));
        // Bound to the integration: another one's record does not unseal as this one's.
        let other = IntegrationId::parse("slack-other").unwrap();
        store.put_connector_kept("slack-other", &raw).unwrap();
        assert!(kept.load(&other).is_err());
        // Without the key nothing secret is stored.
        let keyless = StateKept::new(store, None);
        assert!(
            keyless
                .cannot_seal()
                .is_some_and(|why| why.contains("sealing key"))
        );
        assert!(keyless.store(&id, &k).unwrap_err().contains("sealing key"));
        assert_eq!(kept.cannot_seal(), None);
    }
}
