//! What the daemon registered on the platforms (`registrations` tree), the health it last saw
//! per integration (`health` tree), and the pinned revision (`meta`).
//!
//! A registration record is what lets the daemon prune and repair without trusting memory: the
//! platform ids it owns, the revision whose manifests made it (so a deleted integration's
//! connector can be rebuilt to remove it), and the inbound secret the platform assigned,
//! sealed. Nothing here is ever a plain secret.

use serde::{Deserialize, Serialize};

use super::{AuditKind, AuditRecord, Error, Store, codec, trees};

/// One integration's webhook registration, as recorded after a successful sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationRecord {
    /// The integration id (also the key).
    pub integration: String,
    /// Its platform (`zendesk`).
    pub platform: String,
    /// The commit whose manifests asked for it (`None`: the working tree).
    pub revision: Option<String>,
    /// The platform's ids of what supportopsd owns.
    pub ids: Vec<String>,
    /// The URL it delivers to.
    pub url: String,
    /// The catalogue events it delivers.
    pub events: Vec<String>,
    /// When it stops on its own, milliseconds since the Unix epoch.
    pub expires_at_ms: Option<u64>,
    /// The inbound secret the platform assigned or supportopsd generated, sealed to
    /// (integration, `registration_secret`).
    pub sealed_secret: Option<String>,
    /// When it was last synced.
    pub synced_ms: u64,
}

/// The field name the registration secret is sealed under (associated data).
pub const REGISTRATION_SECRET_FIELD: &str = "registration_secret";

/// One integration's health as the daemon last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthRecord {
    /// The integration id (also the key).
    pub integration: String,
    /// `in_sync`, `drifted` or `unknown`.
    pub sync: String,
    /// Why, in words an operator can act on.
    pub sync_reason: String,
    /// `healthy`, `progressing`, `degraded`, `missing` or `unknown`.
    pub health: String,
    /// Why, in words an operator can act on.
    pub health_reason: String,
    /// Since when the health has been what it is, milliseconds since the Unix epoch.
    pub since_ms: u64,
    /// When the connection was last checked.
    pub checked_ms: u64,
    /// Connection checks failed in a row.
    pub consecutive_failures: u32,
}

/// The revision the daemon is held on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// The commit (full id).
    pub revision: String,
    /// When it was pinned.
    pub at_ms: u64,
    /// Why (free text from the operator; may be empty).
    pub reason: String,
}

const PIN_KEY: &str = "pinned_revision";
const POLL_CURSOR_PREFIX: &str = "poll_cursor/";

impl Store {
    /// Records a registration (replacing the integration's previous one). Does not flush.
    pub fn put_registration(&self, record: &RegistrationRecord) -> Result<(), Error> {
        let t = self.t()?;
        let _writing = self.writing();
        self.put(
            &t.registrations,
            trees::REGISTRATIONS,
            &record.integration,
            record,
        )
    }

    /// One integration's registration.
    pub fn registration(&self, integration: &str) -> Result<Option<RegistrationRecord>, Error> {
        let t = self.t()?;
        self.get(&t.registrations, trees::REGISTRATIONS, integration)
    }

    /// Every registration, by integration id.
    pub fn registrations(&self) -> Result<Vec<RegistrationRecord>, Error> {
        let t = self.t()?;
        let mut out = Vec::new();
        for item in &t.registrations {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            out.push(codec::decode(trees::REGISTRATIONS, &k, &v)?);
        }
        Ok(out)
    }

    /// Forgets a registration (it was pruned). Does not flush.
    pub fn remove_registration(&self, integration: &str) -> Result<(), Error> {
        let t = self.t()?;
        let _writing = self.writing();
        t.registrations
            .remove(integration.as_bytes())
            .map(|_| ())
            .map_err(|e| self.storage(e))
    }

    /// Records an integration's health. Does not flush.
    pub fn put_health(&self, record: &HealthRecord) -> Result<(), Error> {
        let t = self.t()?;
        let _writing = self.writing();
        self.put(&t.health, trees::HEALTH, &record.integration, record)
    }

    /// Every health record, by integration id.
    pub fn health_records(&self) -> Result<Vec<HealthRecord>, Error> {
        let t = self.t()?;
        let mut out = Vec::new();
        for item in &t.health {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            out.push(codec::decode(trees::HEALTH, &k, &v)?);
        }
        Ok(out)
    }

    /// Forgets an integration's health (it left the manifests). Does not flush.
    pub fn remove_health(&self, integration: &str) -> Result<(), Error> {
        let t = self.t()?;
        let _writing = self.writing();
        t.health
            .remove(integration.as_bytes())
            .map(|_| ())
            .map_err(|e| self.storage(e))
    }

    /// Where an integration's poller stands (what its last poll returned). Does not flush.
    pub fn put_poll_cursor(
        &self,
        integration: &str,
        cursor: &serde_json::Value,
    ) -> Result<(), Error> {
        let t = self.t()?;
        let _writing = self.writing();
        self.put(
            &t.meta,
            trees::META,
            &format!("{POLL_CURSOR_PREFIX}{integration}"),
            cursor,
        )
    }

    /// An integration's poll cursor, if it has polled before.
    pub fn poll_cursor(&self, integration: &str) -> Result<Option<serde_json::Value>, Error> {
        let t = self.t()?;
        self.get(
            &t.meta,
            trees::META,
            &format!("{POLL_CURSOR_PREFIX}{integration}"),
        )
    }

    /// The pinned revision, if any.
    pub fn pin(&self) -> Result<Option<Pin>, Error> {
        let t = self.t()?;
        self.get(&t.meta, trees::META, PIN_KEY)
    }

    /// Holds the daemon on `commit`, audited (`pinned`, with `by`'s fields: who asked, never a
    /// secret). Flushes before returning.
    pub fn pin_revision(
        &self,
        commit: &str,
        reason: &str,
        at_ms: u64,
        by: serde_json::Value,
    ) -> Result<(), Error> {
        let _writing = self.writing();
        self.append_audit_held(&AuditRecord {
            at_ms,
            kind: AuditKind::Pinned,
            resource_type: "revision".to_owned(),
            resource_id: commit.to_owned(),
            detail: with_fields(serde_json::json!({"reason": reason}), by),
        })?;
        self.set_pin_held(Some(&Pin {
            revision: commit.to_owned(),
            at_ms,
            reason: reason.to_owned(),
        }))
    }

    /// Releases the pin, audited (`unpinned`, with `by`'s fields). Flushes before returning.
    pub fn unpin(&self, at_ms: u64, by: serde_json::Value) -> Result<(), Error> {
        let _writing = self.writing();
        let previous = self.pin()?.map(|p| p.revision).unwrap_or_default();
        self.append_audit_held(&AuditRecord {
            at_ms,
            kind: AuditKind::Unpinned,
            resource_type: "revision".to_owned(),
            resource_id: previous,
            detail: with_fields(serde_json::json!({}), by),
        })?;
        self.set_pin_held(None)
    }

    /// Pins (`Some`) or unpins (`None`). Flushes before returning.
    pub fn set_pin(&self, pin: Option<&Pin>) -> Result<(), Error> {
        let _writing = self.writing();
        self.set_pin_held(pin)
    }

    /// [`Store::set_pin`] for a caller that holds [`Store::writing`] already.
    fn set_pin_held(&self, pin: Option<&Pin>) -> Result<(), Error> {
        let t = self.t()?;
        match pin {
            Some(p) => self.put(&t.meta, trees::META, PIN_KEY, p)?,
            None => {
                t.meta
                    .remove(PIN_KEY.as_bytes())
                    .map_err(|e| self.storage(e))?;
            }
        }
        self.flush()
    }
}

/// `detail` with the fields of the object `more` added (a non-object `more` adds nothing).
fn with_fields(mut detail: serde_json::Value, more: serde_json::Value) -> serde_json::Value {
    if let (Some(d), serde_json::Value::Object(more)) = (detail.as_object_mut(), more) {
        d.extend(more);
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str) -> RegistrationRecord {
        RegistrationRecord {
            integration: id.to_owned(),
            platform: "zendesk".to_owned(),
            revision: Some("abc".to_owned()),
            ids: vec!["w1".to_owned()],
            url: "https://ops.example.com/api/webhooks/zendesk/zd".to_owned(),
            events: vec!["ticket.created".to_owned()],
            expires_at_ms: None,
            sealed_secret: Some("sos1:xyz".to_owned()),
            synced_ms: 5,
        }
    }

    #[test]
    fn registrations_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(store.registrations().unwrap().is_empty());
            store.put_registration(&record("zd")).unwrap();
            store.put_registration(&record("an")).unwrap();
            store.remove_registration("an").unwrap();
            store.remove_registration("never-there").unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.registrations().unwrap(), vec![record("zd")]);
        assert_eq!(store.registration("zd").unwrap(), Some(record("zd")));
        assert_eq!(store.registration("an").unwrap(), None);
    }

    #[test]
    fn poll_cursors_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.poll_cursor("gs").unwrap(), None);
        let c = serde_json::json!({"sheet": "Log", "last_row": 7});
        store.put_poll_cursor("gs", &c).unwrap();
        assert_eq!(store.poll_cursor("gs").unwrap(), Some(c));
    }

    #[test]
    fn pin_set_and_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.pin().unwrap(), None);
        let pin = Pin {
            revision: "abc".into(),
            at_ms: 1,
            reason: "incident 42".into(),
        };
        store.set_pin(Some(&pin)).unwrap();
        assert_eq!(store.pin().unwrap(), Some(pin));
        store.set_pin(None).unwrap();
        assert_eq!(store.pin().unwrap(), None);
    }

    #[test]
    fn health_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let h = HealthRecord {
            integration: "zd".into(),
            sync: "in_sync".into(),
            sync_reason: "webhook registered".into(),
            health: "healthy".into(),
            health_reason: "connected as agent 7".into(),
            since_ms: 1,
            checked_ms: 2,
            consecutive_failures: 0,
        };
        store.put_health(&h).unwrap();
        assert_eq!(store.health_records().unwrap(), vec![h]);
        store.remove_health("zd").unwrap();
        assert!(store.health_records().unwrap().is_empty());
    }
}
