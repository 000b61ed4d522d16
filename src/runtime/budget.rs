//! Action budgets: at most so many actions a minute per rule (`[limits]
//! max_actions_per_minute`, else the daemon's `--max-actions-per-minute`). The backstop against
//! a rule that re-triggers itself through a platform whose deliveries do not say who made the
//! change (the loop guard cannot see its own writes there).
//!
//! Counted where jobs are created (`webhook::store_event`, and the executor once an enrichment
//! is done: [`Runtime::reserve_jobs`](super::Runtime::reserve_jobs)): a job costs its rule's number of
//! actions, in the minute it is due. A job that fits in the current minute is due at once;
//! one that does not is **held**: created due at the start of the first later minute with room
//! (a job costing more than the budget runs alone in a minute). A held job is an ordinary job
//! of the outbox with a later due time, so it is durable like any other and never dropped; the
//! executor runs it when it is due.
//!
//! A throttling episode begins with the first job held and lasts while held jobs wait or the
//! rule went over its budget in the current or the previous minute; `rule.throttled` is emitted
//! when one begins, so once per episode, and `status` lists the rules in one.
//!
//! The counts are in memory: after a restart a rule's minute starts empty, so in the minute of
//! a restart a rule may run up to its budget on top of the jobs held into that minute.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde_json::{Value, json};

use crate::platforms::supportopsd::events::rfc3339_ms;
use crate::state::MINUTE_MS;

/// The daemon-wide default budget (`--max-actions-per-minute`): generous (ten actions a
/// second, sustained), but finite.
pub const DEFAULT_MAX_ACTIONS_PER_MINUTE: u32 = 600;

/// Each rule's scheduled actions per minute and its throttling episode.
#[derive(Debug, Default)]
pub struct Budgets {
    rules: Mutex<HashMap<String, RuleBudget>>,
}

#[derive(Debug, Default)]
struct RuleBudget {
    /// Actions scheduled per minute number (the current minute and later ones).
    minutes: BTreeMap<u64, u64>,
    /// The throttling episode, if one began (it may have ended: [`Episode::active`]).
    episode: Option<Episode>,
}

/// A rule's throttling episode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Episode {
    /// When its first job was held.
    pub since_ms: u64,
    /// When the last job held in it is due.
    pub held_until_ms: u64,
    /// Jobs held in it.
    pub held: u64,
    /// The budget (actions per minute) when the last job was held.
    pub limit: u32,
    /// The last minute number in which the rule went over its budget.
    last_over: u64,
}

impl Episode {
    /// Whether the episode is still going on at `now_ms`: held jobs wait, or the rule went over
    /// its budget in this minute or the previous one.
    pub fn active(&self, now_ms: u64) -> bool {
        self.held_until_ms > now_ms || self.last_over.saturating_add(1) >= now_ms / MINUTE_MS
    }
}

/// Where a job goes ([`Budgets::reserve`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// When it is due.
    pub due_ms: u64,
    /// Whether it was held past the current minute.
    pub held: bool,
    /// The episode this hold began (emit `rule.throttled` for it), if it began one.
    pub began: Option<Episode>,
    /// What it cost, in actions.
    cost: u64,
}

impl Budgets {
    /// Schedules a job of `rule` costing `actions` actions (at least 1) created at `now_ms`,
    /// under a budget of `limit` actions a minute: due at once if the current minute has room,
    /// else held to the start of the first later minute that has (a job costing more than the
    /// budget goes alone into an empty minute).
    pub fn reserve(&self, rule: &str, limit: u32, actions: usize, now_ms: u64) -> Slot {
        let cost = u64::try_from(actions.max(1)).unwrap_or(u64::MAX);
        let cap = u64::from(limit.max(1));
        let minute = now_ms / MINUTE_MS;
        let mut rules = self
            .rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let b = match rules.get_mut(rule) {
            Some(b) => b,
            None => rules.entry(rule.to_owned()).or_default(),
        };
        b.minutes = b.minutes.split_off(&minute);
        if b.episode.is_some_and(|e| !e.active(now_ms)) {
            b.episode = None;
        }
        let mut at = minute;
        loop {
            let used = b.minutes.get(&at).copied().unwrap_or(0);
            if used == 0 || used.saturating_add(cost) <= cap {
                break;
            }
            at = at.saturating_add(1);
        }
        let slot = b.minutes.entry(at).or_default();
        *slot = slot.saturating_add(cost);
        if at == minute {
            return Slot {
                due_ms: now_ms,
                held: false,
                began: None,
                cost,
            };
        }
        let due_ms = at.saturating_mul(MINUTE_MS);
        let began = match &mut b.episode {
            Some(e) => {
                e.held = e.held.saturating_add(1);
                e.held_until_ms = e.held_until_ms.max(due_ms);
                e.limit = limit;
                e.last_over = minute;
                None
            }
            None => {
                let e = Episode {
                    since_ms: now_ms,
                    held_until_ms: due_ms,
                    held: 1,
                    limit,
                    last_over: minute,
                };
                b.episode = Some(e);
                Some(e)
            }
        };
        Slot {
            due_ms,
            held: true,
            began,
            cost,
        }
    }

    /// Gives back a reservation whose job was not created (the delivery was a duplicate, or
    /// storing it failed); an episode it began is forgotten with it.
    pub fn release(&self, rule: &str, slot: &Slot) {
        let mut rules = self
            .rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(b) = rules.get_mut(rule) else { return };
        let minute = slot.due_ms / MINUTE_MS;
        if let Some(n) = b.minutes.get_mut(&minute) {
            *n = n.saturating_sub(slot.cost);
        }
        if slot.began.is_some() {
            b.episode = None;
        } else if slot.held
            && let Some(e) = &mut b.episode
        {
            e.held = e.held.saturating_sub(1);
            // The last minute still holding a job is when the last held job is due.
            let last = b
                .minutes
                .iter()
                .rev()
                .find(|(_, n)| **n > 0)
                .map_or(0, |(m, _)| m.saturating_mul(MINUTE_MS));
            e.held_until_ms = last.max(e.since_ms);
        }
    }

    /// The rules in a throttling episode at `now_ms`, by rule id.
    pub fn throttled(&self, now_ms: u64) -> BTreeMap<String, Episode> {
        let rules = self
            .rules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        rules
            .iter()
            .filter_map(|(r, b)| Some((r.clone(), b.episode.filter(|e| e.active(now_ms))?)))
            .collect()
    }

    /// [`Budgets::throttled`] as `status` and the API show it: one object per rule.
    pub fn throttled_json(&self, now_ms: u64) -> Value {
        Value::Array(
            self.throttled(now_ms)
                .into_iter()
                .map(|(rule, e)| {
                    json!({
                        "rule": rule,
                        "max_actions_per_minute": e.limit,
                        "held": e.held,
                        "since_ms": e.since_ms,
                        "since_at": rfc3339_ms(e.since_ms),
                        "held_until_ms": e.held_until_ms,
                        "held_until_at": rfc3339_ms(e.held_until_ms),
                    })
                })
                .collect(),
        )
    }
}

/// The due times of the held jobs among `slots`, by rule: what the state creates them with.
pub fn held(slots: &[(String, Slot)]) -> BTreeMap<String, u64> {
    slots
        .iter()
        .filter(|(_, s)| s.held)
        .map(|(r, s)| (r.clone(), s.due_ms))
        .collect()
}

impl super::Runtime {
    /// Reserves the job of each rule in `rules` (ids of `active`) created at `now` in its
    /// action budget (`[limits] max_actions_per_minute`, else `--max-actions-per-minute`): a job
    /// costs the rule's number of actions. Give the reservations back with
    /// [`Runtime::release_jobs`](super::Runtime::release_jobs) if the jobs are not created;
    /// once they are, [`Runtime::jobs_held`](super::Runtime::jobs_held).
    pub fn reserve_jobs(
        &self,
        active: &super::Active,
        rules: &[String],
        now: u64,
    ) -> Vec<(String, Slot)> {
        rules
            .iter()
            .filter_map(|id| {
                let rule = active.rule(id)?;
                let limit = rule
                    .limits
                    .max_actions_per_minute
                    .unwrap_or(self.options.max_actions_per_minute);
                let slot = self.budgets.reserve(id, limit, rule.actions.len(), now);
                Some((id.clone(), slot))
            })
            .collect()
    }

    /// Gives back reservations whose jobs were not created.
    pub fn release_jobs(&self, slots: &[(String, Slot)]) {
        for (rule, slot) in slots {
            self.budgets.release(rule, slot);
        }
    }

    /// Once the jobs are created: counts the held ones, and emits `rule.throttled` for each
    /// throttling episode one of them began (so once per episode).
    pub fn jobs_held(&self, active: &super::Active, slots: &[(String, Slot)]) {
        for (rule, slot) in slots.iter().filter(|(_, s)| s.held) {
            self.metrics.job_held(rule);
            if let Some(episode) = slot.began {
                let integration = active
                    .rule(rule)
                    .map(|r| r.trigger.integration.to_string())
                    .unwrap_or_default();
                tracing::warn!(rule = %rule, limit = episode.limit, held_until_ms = episode.held_until_ms, "A rule went over its action budget: its new jobs are held until a later minute.");
                self.emit_throttled(rule, &integration, &episode);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_800_000_000_000 - 1_800_000_000_000 % MINUTE_MS;

    #[test]
    fn jobs_within_the_budget_run_at_once_and_the_rest_wait_for_later_minutes() {
        let b = Budgets::default();
        for i in 0..3 {
            let s = b.reserve("r", 3, 1, T0 + i);
            assert_eq!((s.due_ms, s.held), (T0 + i, false));
        }
        let s = b.reserve("r", 3, 1, T0 + 10);
        assert_eq!((s.due_ms, s.held), (T0 + MINUTE_MS, true));
        assert!(s.began.is_some(), "the first hold begins an episode");
        // The next minute fills, then the one after.
        let dues: Vec<u64> = (0..5)
            .map(|i| b.reserve("r", 3, 1, T0 + 20 + i).due_ms)
            .collect();
        assert_eq!(
            dues,
            [1, 1, 2, 2, 2].map(|m| T0 + m * MINUTE_MS),
            "nothing is dropped: each job goes to the first minute with room"
        );
        // Another rule has its own budget.
        assert!(!b.reserve("other", 3, 1, T0 + 30).held);
        let t = b.throttled(T0 + 40);
        assert_eq!(t.keys().collect::<Vec<_>>(), ["r"]);
        assert_eq!(t["r"].held, 6);
        assert_eq!(t["r"].held_until_ms, T0 + 2 * MINUTE_MS);
    }

    #[test]
    fn a_job_costs_its_rule_s_actions_and_a_costly_one_runs_alone() {
        let b = Budgets::default();
        assert!(!b.reserve("r", 4, 3, T0).held);
        // 3 + 3 > 4: the next minute.
        assert_eq!(b.reserve("r", 4, 3, T0 + 1).due_ms, T0 + MINUTE_MS);
        // Costing more than the budget: alone in an empty minute.
        assert_eq!(b.reserve("r", 4, 9, T0 + 2).due_ms, T0 + 2 * MINUTE_MS);
        // A cheaper job still fits in the current minute (3 + 1), then in the next (3 + 1).
        assert!(!b.reserve("r", 4, 1, T0 + 3).held);
        assert_eq!(b.reserve("r", 4, 1, T0 + 4).due_ms, T0 + MINUTE_MS);
        assert_eq!(b.reserve("r", 4, 1, T0 + 5).due_ms, T0 + 3 * MINUTE_MS);
    }

    #[test]
    fn one_episode_lasts_while_the_rule_keeps_going_over_and_a_new_one_begins_after_a_calm() {
        let b = Budgets::default();
        let mut began = 0;
        // A loop at twice the budget for five minutes: one episode.
        for m in 0..5 {
            for i in 0..4 {
                let s = b.reserve("loop", 2, 1, T0 + m * MINUTE_MS + i * 1_000);
                began += usize::from(s.began.is_some());
            }
        }
        assert_eq!(began, 1, "one rule.throttled for one episode");
        assert!(b.throttled(T0 + 5 * MINUTE_MS).contains_key("loop"));
        // Everything held is due by now and the rule has been calm for two minutes.
        let later = T0 + 30 * MINUTE_MS;
        assert!(b.throttled(later).is_empty());
        assert!(!b.reserve("loop", 2, 1, later).held);
        assert!(!b.reserve("loop", 2, 1, later + 1).held);
        let s = b.reserve("loop", 2, 1, later + 2);
        assert!(s.held && s.began.is_some(), "a new episode: {s:?}");
    }

    #[test]
    fn a_released_reservation_gives_its_room_back_and_forgets_the_episode_it_began() {
        let b = Budgets::default();
        let first = b.reserve("r", 1, 1, T0);
        let held = b.reserve("r", 1, 1, T0 + 1);
        assert!(held.began.is_some());
        b.release("r", &held);
        assert!(b.throttled(T0 + 2).is_empty());
        b.release("r", &first);
        assert!(
            !b.reserve("r", 1, 1, T0 + 3).held,
            "the minute has room again"
        );
        let again = b.reserve("r", 1, 1, T0 + 4);
        assert!(again.began.is_some(), "the forgotten episode begins again");
        // Releasing a later hold gives its minute back, and the episode ends earlier.
        let later = b.reserve("r", 1, 1, T0 + 6);
        assert_eq!(later.due_ms, T0 + 2 * MINUTE_MS);
        b.release("r", &later);
        assert_eq!(b.throttled(T0 + 7)["r"].held_until_ms, T0 + MINUTE_MS);
        let j = b.throttled_json(T0 + 5);
        assert_eq!(j[0]["rule"], "r");
        assert_eq!(j[0]["held"], 1);
        assert_eq!(j[0]["held_until_ms"], T0 + MINUTE_MS);
        assert!(j[0]["held_until_at"].as_str().is_some());
    }
}
