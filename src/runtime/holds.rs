//! Runtime holds, the emergency brakes (`supportopsd pause` / `resume`, the API's
//! `POST /api/rules/{id}/pause` and friends): what a paused rule or integration does to the
//! daemon, and the in-memory copy of the holds that matching and the executor read on every
//! delivery and every job (the state keeps them across restarts: [`crate::state::Holds`]).
//!
//! - A paused **rule** matches nothing: deliveries are stored as always, the rule gets no job
//!   (an audit record of the delivery, `rule_paused_skipped`, says so and its trace shows
//!   `paused`), and those deliveries are not run when it is resumed (`events redeliver` runs
//!   one again). Its jobs queued before the pause wait in the queue like a paused
//!   integration's.
//! - A paused **integration**: its deliveries are stored and matched as always, but every
//!   job whose next action (or enrichment) calls it waits in the queue: the executor puts it
//!   back without counting an attempt ([`HOLD_RECHECK`] later), so it never burns retries,
//!   is never dead-lettered for the pause, and never keeps a worker busy. On resume those jobs
//!   are made due at once ([`Runtime::resume`]), or, with `drop_queued`, dead-lettered
//!   (replayable one by one) and counted in the audit record.
//!
//! Changes are serialised (one pause or resume at a time) and written to the state before the
//! copy here changes, so the copy is never ahead of what a restart would load.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::{Value, json};

use super::{Runtime, now_ms};
use crate::platforms::supportopsd::events::rfc3339_ms;
use crate::state::{AuditKind, AuditRecord, ENRICHMENT, Error, Hold, HoldKind, Job};

/// How long a job held back by a pause waits before the executor looks at it again when
/// nothing wakes it earlier (a resume wakes it at once; this bounds the wait if the daemon
/// stopped between releasing a hold and waking its jobs).
pub const HOLD_RECHECK: Duration = Duration::from_secs(60);

/// The longest reason a hold may carry, in characters.
pub const MAX_REASON: usize = 500;

/// Jobs read per page when a resume looks for the jobs a hold kept back.
const PAGE: usize = 500;

/// The holds in force, by kind and id.
#[derive(Debug, Clone, Default)]
pub struct HoldSet {
    rules: BTreeMap<String, Hold>,
    integrations: BTreeMap<String, Hold>,
}

impl HoldSet {
    /// The holds as the state lists them.
    pub fn from_list(holds: Vec<Hold>) -> HoldSet {
        let mut set = HoldSet::default();
        for h in holds {
            set.map_mut(h.kind).insert(h.id.clone(), h);
        }
        set
    }

    fn map_mut(&mut self, kind: HoldKind) -> &mut BTreeMap<String, Hold> {
        match kind {
            HoldKind::Rule => &mut self.rules,
            HoldKind::Integration => &mut self.integrations,
        }
    }

    /// The hold on a rule, if it is paused.
    pub fn rule(&self, id: &str) -> Option<&Hold> {
        self.rules.get(id)
    }

    /// The hold on an integration, if it is paused.
    pub fn integration(&self, id: &str) -> Option<&Hold> {
        self.integrations.get(id)
    }

    /// The hold on `kind` `id`.
    pub fn get(&self, kind: HoldKind, id: &str) -> Option<&Hold> {
        match kind {
            HoldKind::Rule => self.rule(id),
            HoldKind::Integration => self.integration(id),
        }
    }

    /// What keeps a job of `rule` whose next request goes to `integration` in the queue: the
    /// rule's hold, else the integration's.
    pub fn holding(&self, rule: &str, integration: &str) -> Option<&Hold> {
        self.rule(rule).or_else(|| self.integration(integration))
    }

    /// Every hold, rules first, each kind by id.
    pub fn all(&self) -> impl Iterator<Item = &Hold> {
        self.rules.values().chain(self.integrations.values())
    }

    /// Whether nothing is paused.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.integrations.is_empty()
    }

    /// The matching hook: removes the paused rules from `rules` (the rules a delivery
    /// matched) and returns them with their holds' reasons, in order.
    pub fn take_paused(&self, rules: &mut Vec<String>) -> Vec<(String, String)> {
        if self.rules.is_empty() {
            return Vec::new();
        }
        let mut paused = Vec::new();
        rules.retain(|r| match self.rule(r) {
            Some(h) => {
                paused.push((r.clone(), h.reason.clone()));
                false
            }
            None => true,
        });
        paused
    }
}

/// The in-memory copy of the holds and the lock that serialises changes.
#[derive(Debug, Default)]
pub struct Holds {
    current: RwLock<Arc<HoldSet>>,
    changing: tokio::sync::Mutex<()>,
}

/// What a pause did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paused {
    /// The hold in force.
    pub hold: Hold,
    /// Whether it was in force already (nothing changed; its first reason and time kept).
    pub already: bool,
}

/// What a resume did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// The hold released (`None`: it was not paused; nothing changed).
    pub released: Option<Hold>,
    /// Jobs it kept back that were made due now.
    pub woken: usize,
    /// Jobs it kept back that were dropped (dead-lettered), with `drop_queued`.
    pub dropped: usize,
}

/// A hold's reason checked: required (after trimming) and at most [`MAX_REASON`] characters,
/// without control characters.
pub fn check_reason(reason: &str) -> Result<String, String> {
    let r = reason.trim();
    if r.is_empty() {
        return Err("a reason is required: say why, for the audit log and `status`".to_owned());
    }
    if r.chars().count() > MAX_REASON {
        return Err(format!("the reason is longer than {MAX_REASON} characters"));
    }
    if r.chars().any(char::is_control) {
        return Err("the reason must be one line without control characters".to_owned());
    }
    Ok(r.to_owned())
}

/// A hold as the API, `status` and the console show it.
pub fn hold_json(h: &Hold) -> Value {
    json!({
        "kind": h.kind.as_str(),
        "id": h.id,
        "reason": h.reason,
        "by": h.by,
        "since_ms": h.at_ms,
        "since_at": rfc3339_ms(h.at_ms),
        "resume": format!("supportopsd resume --{} {}", h.kind.as_str(), h.id),
    })
}

impl Runtime {
    /// The holds in force (cheap: an `Arc` of the in-memory copy).
    pub fn holds(&self) -> Arc<HoldSet> {
        self.holds
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_holds(&self, set: HoldSet) {
        *self
            .holds
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(set);
    }

    /// Loads the holds from the state (at start; the state is the truth).
    pub(super) fn load_holds(&self) -> Result<(), Error> {
        let list = self.store.holds()?;
        if !list.is_empty() {
            tracing::warn!(
                holds = list.len(),
                "Paused rules or integrations are kept from the last run; `supportopsd status` lists them."
            );
        }
        self.set_holds(HoldSet::from_list(list));
        Ok(())
    }

    /// Pauses `kind` `id` (an id the caller checked against the revision in use) for
    /// `reason` (checked with [`check_reason`]), audited (`paused`) with `by`'s fields (who
    /// asked, never a secret). Idempotent.
    pub async fn pause(
        &self,
        kind: HoldKind,
        id: &str,
        reason: &str,
        by: Value,
    ) -> Result<Paused, Error> {
        let _changing = self.holds.changing.lock().await;
        let at_ms = now_ms();
        let hold = Hold {
            kind,
            id: id.to_owned(),
            reason: reason.to_owned(),
            at_ms,
            by: by["by"].as_str().unwrap_or("operator").to_owned(),
        };
        let record = AuditRecord {
            at_ms,
            kind: AuditKind::Paused,
            resource_type: kind.as_str().to_owned(),
            resource_id: id.to_owned(),
            detail: with_fields(json!({"reason": reason}), by),
        };
        let existing = self.store.place_hold(&hold, &record)?;
        let already = existing.is_some();
        let hold = existing.unwrap_or(hold);
        let mut set = (*self.holds()).clone();
        set.map_mut(kind).insert(id.to_owned(), hold.clone());
        self.set_holds(set);
        if !already {
            tracing::warn!(kind = kind.as_str(), id, reason, "Paused.");
        }
        Ok(Paused { hold, already })
    }

    /// Resumes `kind` `id`, audited (`resumed`, with how many jobs were dropped). The jobs
    /// the hold kept back are made due at once, or with `drop_queued` dead-lettered first
    /// (while the hold still keeps the executor off them), each with an error that says so.
    pub async fn resume(
        &self,
        kind: HoldKind,
        id: &str,
        drop_queued: bool,
        by: Value,
    ) -> Result<Resumed, Error> {
        let _changing = self.holds.changing.lock().await;
        let Some(hold) = self.holds().get(kind, id).cloned() else {
            return Ok(Resumed {
                released: None,
                woken: 0,
                dropped: 0,
            });
        };
        let dropped = if drop_queued {
            self.drop_held(&hold).await?
        } else {
            0
        };
        let record = AuditRecord {
            at_ms: now_ms(),
            kind: AuditKind::Resumed { dropped },
            resource_type: kind.as_str().to_owned(),
            resource_id: id.to_owned(),
            detail: with_fields(json!({"paused_reason": hold.reason}), by),
        };
        let released = self.store.release_hold(kind, id, &record)?;
        let mut set = (*self.holds()).clone();
        set.map_mut(kind).remove(id);
        self.set_holds(set);
        let woken = self.wake_held(&hold)?;
        if woken > 0 {
            self.work.notify_one();
        }
        tracing::warn!(kind = kind.as_str(), id, woken, dropped, "Resumed.");
        Ok(Resumed {
            released,
            woken,
            dropped,
        })
    }

    /// Whether `job` waits on `hold`: its rule is the paused rule, or its next request goes
    /// to the paused integration (an enrichment calls the delivery's own integration).
    fn waits_on(&self, hold: &Hold, job: &Job) -> bool {
        match hold.kind {
            HoldKind::Rule => job.rule == hold.id,
            HoldKind::Integration if job.rule == ENRICHMENT => self
                .store
                .event_meta(job.event_id)
                .ok()
                .flatten()
                .is_some_and(|m| m.integration.as_str() == hold.id),
            HoldKind::Integration => self.active().is_some_and(|a| {
                a.rule(&job.rule)
                    .and_then(|r| r.actions.get(job.step))
                    .is_some_and(|action| action.integration.as_str() == hold.id)
            }),
        }
    }

    /// The queued jobs waiting on `hold`, page by page.
    fn jobs_on(
        &self,
        hold: &Hold,
        mut each: impl FnMut(&Job) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let mut after = None;
        loop {
            let page = self.store.queued(after, PAGE)?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            after = Some(last.id);
            for job in page.iter().filter(|j| self.waits_on(hold, j)) {
                each(job)?;
            }
        }
    }

    /// Makes the jobs `hold` kept back due now; how many.
    fn wake_held(&self, hold: &Hold) -> Result<usize, Error> {
        let now = now_ms();
        let mut woken = 0;
        let store = self.store.clone();
        self.jobs_on(hold, |job| {
            if store.wake(job.id, now)? {
                woken += 1;
            }
            Ok(())
        })?;
        Ok(woken)
    }

    /// Dead-letters the jobs waiting on `hold` (still in force, so the executor puts back any
    /// it leases meanwhile: a job under a lease is looked at again, a few times); how many.
    async fn drop_held(&self, hold: &Hold) -> Result<usize, Error> {
        let error = format!(
            "dropped: the {} `{}` was resumed with --drop-queued (it was paused: {})",
            hold.kind.as_str(),
            hold.id,
            hold.reason
        );
        let mut dropped = 0;
        for round in 0..5 {
            let now = now_ms();
            let mut leased = 0;
            let store = self.store.clone();
            self.jobs_on(hold, |job| {
                if job.lease_until_ms.is_some_and(|until| until > now) {
                    leased += 1;
                    return Ok(());
                }
                match store.dead_letter(job.id, &error, now) {
                    Ok(_) => {
                        dropped += 1;
                        Ok(())
                    }
                    // Finished or moved meanwhile.
                    Err(Error::NoSuchJob { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            })?;
            if leased == 0 {
                break;
            }
            tracing::debug!(
                leased,
                round,
                "Jobs under a lease while dropping; looking again."
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if dropped > 0 {
            self.store.flush_async().await?;
        }
        Ok(dropped)
    }
}

/// The audit records of the rules a delivery matched while paused (no job was created).
pub fn paused_records(paused: &[(String, String)], key: &str, now: u64) -> Vec<AuditRecord> {
    paused
        .iter()
        .map(|(rule, reason)| AuditRecord {
            at_ms: now,
            kind: AuditKind::RulePausedSkipped { rule: rule.clone() },
            resource_type: "rule".into(),
            resource_id: rule.clone(),
            detail: json!({"key": key, "reason": reason}),
        })
        .collect()
}

/// `detail` with the fields of the object `more` added.
fn with_fields(mut detail: Value, more: Value) -> Value {
    if let (Some(d), Value::Object(more)) = (detail.as_object_mut(), more) {
        d.extend(more);
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hold(kind: HoldKind, id: &str) -> Hold {
        Hold {
            kind,
            id: id.into(),
            reason: format!("why {id}"),
            at_ms: 1,
            by: "t".into(),
        }
    }

    #[test]
    fn paused_rules_are_taken_out_of_what_matched_in_order() {
        let set = HoldSet::from_list(vec![
            hold(HoldKind::Rule, "b"),
            hold(HoldKind::Integration, "a"),
        ]);
        let mut rules = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        let paused = set.take_paused(&mut rules);
        assert_eq!(rules, ["a", "c"]);
        assert_eq!(paused, [("b".to_owned(), "why b".to_owned())]);
        assert_eq!(
            set.holding("x", "a").map(|h| h.kind),
            Some(HoldKind::Integration)
        );
        assert_eq!(set.holding("b", "z").map(|h| h.kind), Some(HoldKind::Rule));
        assert!(set.holding("a", "b").is_none());
        assert_eq!(set.all().count(), 2);
    }

    #[test]
    fn reasons_are_required_bounded_and_one_line() {
        assert!(check_reason("  ").is_err());
        assert!(check_reason(&"x".repeat(MAX_REASON + 1)).is_err());
        assert!(check_reason("a\nb").is_err());
        assert_eq!(check_reason("  loop on #42 ").unwrap(), "loop on #42");
        assert!(check_reason(&"é".repeat(MAX_REASON)).is_ok());
    }

    #[test]
    fn the_json_says_how_to_resume_and_when_in_both_forms() {
        let v = hold_json(&hold(HoldKind::Integration, "slack"));
        assert_eq!(v["resume"], "supportopsd resume --integration slack");
        assert_eq!(v["since_ms"], 1);
        assert_eq!(v["since_at"], "1970-01-01T00:00:00Z");
    }
}
