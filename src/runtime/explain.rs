//! Explaining a stored delivery (`GET /api/events/{id}/explain`, `supportopsd events explain`):
//! why each rule of its integration did or did not run, evaluated against the revision that
//! was in use when it arrived ([`EventMeta::revision`]), and whether the revision in use now
//! would decide differently. Rule selection and conditions are decided by
//! [`crate::manifest::select`] — the code the daemon decides with — on the event's context view.

use serde_json::{Value, json};

use crate::event::Event;
use crate::manifest::{ManifestSet, select};
use crate::platforms::supportopsd::events::rfc3339_ms;
use crate::state::EventMeta;

use super::active::delivery;

/// A revision's manifests for an explanation.
#[derive(Debug, Clone, Copy)]
pub struct Revision<'a> {
    /// Its commit (`None`: the working tree).
    pub commit: Option<&'a str>,
    /// Its manifests.
    pub set: &'a ManifestSet,
}

/// Why an explanation could not be given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// `only` names a rule in neither revision.
    #[error("no rule `{0}` in the revision recorded with the event or in the one in use")]
    NoSuchRule(String),
}

fn name(commit: Option<&str>) -> &str {
    commit.unwrap_or("working tree")
}

/// Explains `event` (stored as `meta`) against `recorded` — the revision recorded with it, or
/// why that one is not available (`Err`: unknown, or could not be loaded) — and `current`, the
/// revision in use now. When the recorded revision is not available, the current one is
/// evaluated instead and the answer says so; when both are there and differ, both are
/// evaluated and the rules whose outcome differs are named (`current.differs`).
pub fn explain_event(
    event: &Event,
    meta: &EventMeta,
    recorded: Result<Revision<'_>, String>,
    current: Option<Revision<'_>>,
    from_self: bool,
    only: Option<&str>,
) -> Result<Value, Error> {
    let d = delivery(event, from_self);
    let ctx = event.context_view();
    let verdicts = |set: &ManifestSet| -> Option<Vec<Value>> {
        let list = select::explain(set, &d, &ctx, only)?;
        Some(list.iter().map(select::RuleVerdict::to_json).collect())
    };
    let (evaluated, mut notes) = match recorded {
        Ok(rec) => (Some(rec), Vec::new()),
        Err(why) => match current {
            Some(cur) => (
                Some(cur),
                vec![format!(
                    "{why}; explained against the revision now in use ({})",
                    name(cur.commit)
                )],
            ),
            None => (None, vec![format!("{why}, and no revision is in use")]),
        },
    };
    let rules = evaluated.and_then(|rev| verdicts(rev.set));
    let other = current.filter(|c| evaluated.is_some_and(|e| e.commit != c.commit));
    let now = other.and_then(|c| verdicts(c.set).map(|rules| (c, rules)));
    if let Some(id) = only
        && rules.is_none()
        && now.is_none()
    {
        return Err(Error::NoSuchRule(id.to_owned()));
    }
    let rules = rules.unwrap_or_default();
    let current_json = now.map(|(c, now_rules)| {
        let outcome = |list: &[Value], id: &str| -> String {
            list.iter()
                .find(|v| v["rule"] == id)
                .and_then(|v| v["outcome"].as_str())
                .unwrap_or("absent")
                .to_owned()
        };
        let mut ids: Vec<&str> = rules
            .iter()
            .chain(&now_rules)
            .filter_map(|v| v["rule"].as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let differs: Vec<Value> = ids
            .into_iter()
            .filter_map(|id| {
                let (then, now) = (outcome(&rules, id), outcome(&now_rules, id));
                (then != now).then(|| json!({"rule": id, "recorded": then, "current": now}))
            })
            .collect();
        if differs.is_empty() {
            notes.push(format!(
                "the revision now in use ({}) decides the same",
                name(c.commit)
            ));
        } else {
            let names: Vec<&str> = differs.iter().filter_map(|d| d["rule"].as_str()).collect();
            notes.push(format!(
                "the revision now in use ({}) would decide differently for: {}",
                name(c.commit),
                names.join(", ")
            ));
        }
        json!({"revision": c.commit, "differs": differs, "rules": now_rules})
    });
    Ok(json!({
        "event": meta.id,
        "integration": meta.integration.as_str(),
        "platform": meta.platform.as_str(),
        "name": meta.name,
        "event_id": meta.event_id,
        "received_ms": meta.received_ms,
        "received_at": rfc3339_ms(meta.received_ms),
        "recorded_revision": meta.revision,
        "revision": evaluated.and_then(|e| e.commit),
        "matched_on_arrival": meta.rules,
        "from_self": from_self,
        "notes": notes,
        "rules": rules,
        "current": current_json,
    }))
}
