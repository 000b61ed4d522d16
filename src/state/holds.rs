//! Runtime holds (`meta` tree, keys `hold/rule/<id>` and `hold/integration/<id>`): the
//! emergency brakes an operator puts on with `supportopsd pause` and takes off with `resume`.
//! A paused rule matches nothing; a paused integration's actions wait in the queue. What the
//! daemon does with a hold is the runtime's (`runtime::holds`); this file keeps them.
//!
//! Guarantees: placing and releasing a hold is ONE transaction with its audit record (`paused`,
//! `resumed`), flushed before returning, so after a crash either both are there or neither;
//! placing a hold that is already placed writes nothing and returns the hold in place (the
//! first reason and time are kept); releasing one that is not placed writes nothing.
//! [`Store::holds`] lists them by kind (rules first), then id. Nothing here is secret: a
//! reason is the operator's free text (bounded by the caller), `by` names who asked.

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::TransactionError;

use super::{AuditRecord, Error, Store, abort, codec, trees};

/// The prefix of every hold's key in `meta`.
const PREFIX: &str = "hold/";

/// What a hold stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldKind {
    /// A rule: it matches nothing while paused (no job is created for it).
    Rule,
    /// An integration: every action (and enrichment) that would call it waits in the queue.
    Integration,
}

impl HoldKind {
    /// `rule` or `integration`.
    pub fn as_str(self) -> &'static str {
        match self {
            HoldKind::Rule => "rule",
            HoldKind::Integration => "integration",
        }
    }
}

/// One hold: a paused rule or integration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    /// What it stops.
    pub kind: HoldKind,
    /// The rule's or integration's id.
    pub id: String,
    /// Why (the operator's words; never empty when placed through the API or the CLI).
    pub reason: String,
    /// When it was placed, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Who placed it, in words (`operator API (admin token)`, `command line, in the state`).
    pub by: String,
}

/// The `meta` key of a hold.
fn key(kind: HoldKind, id: &str) -> String {
    format!("{PREFIX}{}/{id}", kind.as_str())
}

impl Store {
    /// Every hold, rules first, each kind by id.
    pub fn holds(&self) -> Result<Vec<Hold>, Error> {
        let t = self.t()?;
        let mut out: Vec<Hold> = Vec::new();
        for item in t.meta.scan_prefix(PREFIX.as_bytes()) {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let hold: Hold = codec::decode(trees::META, &k, &v)?;
            if key(hold.kind, &hold.id).as_bytes() != &*k {
                return Err(Error::Corrupt {
                    tree: trees::META,
                    key: String::from_utf8_lossy(&k).into_owned(),
                    detail: format!("record is for the {} {:?}", hold.kind.as_str(), hold.id),
                });
            }
            out.push(hold);
        }
        out.sort_by(|a, b| (a.kind, &a.id).cmp(&(b.kind, &b.id)));
        Ok(out)
    }

    /// Places `hold` with `audit` in one transaction, then flushes. `Ok(None)`: placed;
    /// `Ok(Some(existing))`: it was already placed, nothing was written.
    pub fn place_hold(&self, hold: &Hold, audit: &AuditRecord) -> Result<Option<Hold>, Error> {
        let t = self.t()?;
        let _writing = self.writing();
        let k = key(hold.kind, &hold.id);
        let value = codec::encode(trees::META, &k, hold)?;
        let encoded = self.encode_audit(std::slice::from_ref(audit))?;
        let result: Result<Option<Hold>, TransactionError<Error>> = (&t.meta, &t.audit)
            .transaction(|(meta, log)| {
                if let Some(v) = meta.get(k.as_bytes())? {
                    let existing: Hold =
                        codec::decode(trees::META, k.as_bytes(), &v).map_err(abort)?;
                    return Ok(Some(existing));
                }
                meta.insert(k.as_bytes(), value.as_slice())?;
                for (key, value) in &encoded {
                    log.insert(&key[..], value.as_slice())?;
                }
                Ok(None)
            });
        let existing = self.tx_result(result)?;
        if existing.is_none() {
            self.flush()?;
        }
        Ok(existing)
    }

    /// Releases the hold on `kind` `id` with `audit` in one transaction, then flushes. The
    /// hold released, or `None` (nothing written) when there was none.
    pub fn release_hold(
        &self,
        kind: HoldKind,
        id: &str,
        audit: &AuditRecord,
    ) -> Result<Option<Hold>, Error> {
        let t = self.t()?;
        let _writing = self.writing();
        let k = key(kind, id);
        let encoded = self.encode_audit(std::slice::from_ref(audit))?;
        let result: Result<Option<Hold>, TransactionError<Error>> = (&t.meta, &t.audit)
            .transaction(|(meta, log)| {
                let Some(v) = meta.remove(k.as_bytes())? else {
                    return Ok(None);
                };
                let released: Hold = codec::decode(trees::META, k.as_bytes(), &v).map_err(abort)?;
                for (key, value) in &encoded {
                    log.insert(&key[..], value.as_slice())?;
                }
                Ok(Some(released))
            });
        let released = self.tx_result(result)?;
        if released.is_some() {
            self.flush()?;
        }
        Ok(released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{AuditFilter, AuditKind};
    use serde_json::json;

    fn hold(kind: HoldKind, id: &str, reason: &str) -> Hold {
        Hold {
            kind,
            id: id.into(),
            reason: reason.into(),
            at_ms: 10,
            by: "test".into(),
        }
    }

    fn record(kind: AuditKind, resource_type: &str, id: &str) -> AuditRecord {
        AuditRecord {
            at_ms: 10,
            kind,
            resource_type: resource_type.into(),
            resource_id: id.into(),
            detail: json!({"reason": "loop"}),
        }
    }

    fn audit_count(store: &Store) -> usize {
        store
            .audit(&AuditFilter {
                limit: 1_000,
                ..AuditFilter::default()
            })
            .unwrap()
            .len()
    }

    #[test]
    fn holds_are_placed_once_listed_in_order_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert!(store.holds().unwrap().is_empty());
            let paused = record(AuditKind::Paused, "integration", "slack");
            let slack = hold(HoldKind::Integration, "slack", "loop");
            assert_eq!(store.place_hold(&slack, &paused).unwrap(), None);
            let rule = hold(HoldKind::Rule, "vip", "runaway");
            let paused_rule = record(AuditKind::Paused, "rule", "vip");
            assert_eq!(store.place_hold(&rule, &paused_rule).unwrap(), None);
            assert_eq!(audit_count(&store), 2);
            // Again, with another reason: the first is kept and nothing is written.
            let again = hold(HoldKind::Rule, "vip", "another reason");
            assert_eq!(
                store.place_hold(&again, &paused_rule).unwrap(),
                Some(rule.clone())
            );
            assert_eq!(audit_count(&store), 2);
            // A rule and an integration of the same id are different holds.
            let same_id = hold(HoldKind::Rule, "slack", "x");
            assert_eq!(store.place_hold(&same_id, &paused_rule).unwrap(), None);
        }
        // Flushed before returning: a reopen (no explicit flush) sees them.
        let store = Store::open(dir.path()).unwrap();
        let ids: Vec<(HoldKind, String)> = store
            .holds()
            .unwrap()
            .into_iter()
            .map(|h| (h.kind, h.id))
            .collect();
        assert_eq!(
            ids,
            vec![
                (HoldKind::Rule, "slack".to_owned()),
                (HoldKind::Rule, "vip".to_owned()),
                (HoldKind::Integration, "slack".to_owned()),
            ]
        );
        assert_eq!(store.holds().unwrap()[1].reason, "runaway");
    }

    #[test]
    fn releasing_removes_once_with_its_audit_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let h = hold(HoldKind::Integration, "fd", "maintenance");
        store
            .place_hold(&h, &record(AuditKind::Paused, "integration", "fd"))
            .unwrap();
        let resumed = record(AuditKind::Resumed { dropped: 0 }, "integration", "fd");
        assert_eq!(
            store
                .release_hold(HoldKind::Integration, "fd", &resumed)
                .unwrap(),
            Some(h)
        );
        assert_eq!(audit_count(&store), 2);
        // Not held any more: nothing released, nothing written.
        assert_eq!(
            store
                .release_hold(HoldKind::Integration, "fd", &resumed)
                .unwrap(),
            None
        );
        assert_eq!(
            store.release_hold(HoldKind::Rule, "fd", &resumed).unwrap(),
            None
        );
        assert_eq!(audit_count(&store), 2);
        assert!(store.holds().unwrap().is_empty());
    }

    #[test]
    fn a_hold_under_the_wrong_key_is_corruption_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let h = hold(HoldKind::Rule, "a", "r");
        store
            .put(&store.t().unwrap().meta, trees::META, "hold/rule/b", &h)
            .unwrap();
        assert!(matches!(store.holds(), Err(Error::Corrupt { .. })));
        store
            .t()
            .unwrap()
            .meta
            .insert("hold/rule/b".as_bytes(), &b"not json"[..])
            .unwrap();
        assert!(matches!(store.holds(), Err(Error::Corrupt { .. })));
    }
}
