//! Per-minute rollups: tree `rollups`, what happened per minute and integration — events by
//! outcome, rule matches, actions by rule, action and outcome — so that rates and charts survive
//! a restart and reach back weeks without keeping every event.
//!
//! Keys are the minute (milliseconds since the Unix epoch / 60,000, `u64` big-endian) followed by
//! the integration id, so a time range is one range scan and an integration filter looks at keys
//! only. Values are [`RollupCounts`] (`codec.rs`). Beside them, each minute's totals over every
//! integration ([`MinuteTotals`]: what the console's charts draw, a day in 1,440 reads however
//! many integrations there are) are keyed `0xFF` followed by the minute, after every per-
//! integration key (a minute's first byte is 0 for the next few million years).
//!
//! Guarantees:
//!
//! - [`Store::add_rollups`] *adds* to what is stored (never overwrites), for every record it is
//!   given, in one transaction: a minute written in parts — the daemon writes what it counted
//!   every few seconds, and a restart continues a minute the previous run had begun — sums to
//!   what was counted. A crash between two writes loses what was counted since the last one and
//!   nothing else (the daemon's writer, `runtime::stats`, says how far apart they are).
//! - [`Store::rollups`] returns records in time order (then by integration); a record covers
//!   the whole minute `minute_ms .. minute_ms + 60,000`.
//! - [`Store::purge_rollups`] removes whole minutes older than a bound (retention); nothing else
//!   removes rollups, so they are independent of event and audit retention.
//! - A minute's [`MinuteTotals`] are added in the same transaction as its per-integration
//!   records, so they always equal the sum of what was added since the totals were introduced
//!   (minutes written by an earlier version have per-integration records and no totals).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sled::transaction::TransactionError;

use super::{Error, Store, abort, codec, trees};

/// A minute, in milliseconds.
pub const MINUTE_MS: u64 = 60_000;

/// The longest range (in minutes: a week) [`Store::rollups_of`] reads one integration's
/// records by a lookup per minute; a longer one is a range scan that skips other integrations'
/// keys.
const POINT_READS: u64 = 7 * 24 * 60;

/// Records removed per transaction by [`Store::purge_rollups`].
const PURGE_CHUNK: usize = 1_000;

/// Deliveries of one integration in one minute, by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventCounts {
    /// Stored, and at least one job created for them (a rule matched, or an enrichment is
    /// pending).
    pub accepted: u64,
    /// Stored, but no rule matched.
    pub accepted_no_rule: u64,
    /// Redeliveries of an event already stored (answered 200, nothing new).
    pub duplicate: u64,
    /// Refused, by reason (`bad_signature`, `stale`, `malformed`, `queue_full`, …: the reasons
    /// of `supportopsd_events_rejected_total`).
    pub rejected: BTreeMap<String, u64>,
}

/// What one integration counted in one minute.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RollupCounts {
    /// Deliveries by outcome (the integration is the one they came from).
    pub events: EventCounts,
    /// Rule matches that created a job, by rule (the integration is the trigger's).
    pub rules: BTreeMap<String, u64>,
    /// Action attempts on the integration: rule → action → outcome (`succeeded`, `retried`,
    /// `dead_lettered`, `outcome_unknown`; `failed` for the operator API's `execute`) → count.
    /// Enrichments count under the rule `(enrichment)`, the operator API's executions under
    /// `(operator)`.
    pub actions: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>,
    /// Actions shadow rules (`mode = "shadow"`) would have performed, recorded and not run:
    /// rule → action → count (the integration is the trigger's). Absent from records written
    /// before shadow rules existed.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub shadow: BTreeMap<String, BTreeMap<String, u64>>,
}

impl RollupCounts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &RollupCounts) {
        let e = &mut self.events;
        e.accepted = e.accepted.saturating_add(other.events.accepted);
        e.accepted_no_rule = e
            .accepted_no_rule
            .saturating_add(other.events.accepted_no_rule);
        e.duplicate = e.duplicate.saturating_add(other.events.duplicate);
        add_map(&mut e.rejected, &other.events.rejected);
        add_map(&mut self.rules, &other.rules);
        for (rule, actions) in &other.actions {
            let mine = self.actions.entry(rule.clone()).or_default();
            for (action, outcomes) in actions {
                add_map(mine.entry(action.clone()).or_default(), outcomes);
            }
        }
        add_nested(&mut self.shadow, &other.shadow);
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        *self == RollupCounts::default()
    }

    /// Deliveries refused, all reasons together.
    pub fn rejected_total(&self) -> u64 {
        self.events
            .rejected
            .values()
            .fold(0, |a, n| a.saturating_add(*n))
    }

    /// Action attempts by outcome, all rules and actions together.
    pub fn actions_by_outcome(&self) -> BTreeMap<String, u64> {
        let mut out = BTreeMap::new();
        for outcomes in self.actions.values().flat_map(BTreeMap::values) {
            add_map(&mut out, outcomes);
        }
        out
    }
}

fn add_nested(
    into: &mut BTreeMap<String, BTreeMap<String, u64>>,
    from: &BTreeMap<String, BTreeMap<String, u64>>,
) {
    for (k, inner) in from {
        add_map(into.entry(k.clone()).or_default(), inner);
    }
}

fn add_map(into: &mut BTreeMap<String, u64>, from: &BTreeMap<String, u64>) {
    for (k, n) in from {
        let slot = into.entry(k.clone()).or_default();
        *slot = slot.saturating_add(*n);
    }
}

/// What one integration counted in one minute, as stored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MinuteRollup {
    /// The minute's start, milliseconds since the Unix epoch (a multiple of [`MINUTE_MS`]).
    pub minute_ms: u64,
    /// The integration id.
    pub integration: String,
    /// The counts.
    #[serde(flatten)]
    pub counts: RollupCounts,
}

/// What every integration together counted in one minute: the sums of its [`RollupCounts`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MinuteTotals {
    /// The minute's start, milliseconds since the Unix epoch (a multiple of [`MINUTE_MS`]).
    pub minute_ms: u64,
    /// Deliveries stored (a rule matched or not).
    pub events: u64,
    /// Of [`MinuteTotals::events`], those no rule matched.
    pub accepted_no_rule: u64,
    /// Deliveries refused, all reasons.
    pub rejected: u64,
    /// [`MinuteTotals::rejected`] by reason.
    pub rejected_by_reason: BTreeMap<String, u64>,
    /// Redeliveries of events already stored.
    pub duplicate: u64,
    /// Rule matches that created a job.
    pub matches: u64,
    /// Action attempts by outcome, all rules and actions.
    pub actions: BTreeMap<String, u64>,
    /// Actions shadow rules would have performed: rule → action → count, all integrations.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub shadow: BTreeMap<String, BTreeMap<String, u64>>,
}

impl MinuteTotals {
    fn add(&mut self, c: &RollupCounts) {
        self.events = self
            .events
            .saturating_add(c.events.accepted)
            .saturating_add(c.events.accepted_no_rule);
        self.accepted_no_rule = self
            .accepted_no_rule
            .saturating_add(c.events.accepted_no_rule);
        self.rejected = self.rejected.saturating_add(c.rejected_total());
        add_map(&mut self.rejected_by_reason, &c.events.rejected);
        self.duplicate = self.duplicate.saturating_add(c.events.duplicate);
        self.matches = c
            .rules
            .values()
            .fold(self.matches, |a, n| a.saturating_add(*n));
        add_map(&mut self.actions, &c.actions_by_outcome());
        add_nested(&mut self.shadow, &c.shadow);
    }

    /// Adds `o` to these totals (a longer window's sum).
    pub fn merge(&mut self, o: &MinuteTotals) {
        self.events = self.events.saturating_add(o.events);
        self.accepted_no_rule = self.accepted_no_rule.saturating_add(o.accepted_no_rule);
        self.rejected = self.rejected.saturating_add(o.rejected);
        add_map(&mut self.rejected_by_reason, &o.rejected_by_reason);
        self.duplicate = self.duplicate.saturating_add(o.duplicate);
        self.matches = self.matches.saturating_add(o.matches);
        add_map(&mut self.actions, &o.actions);
        add_nested(&mut self.shadow, &o.shadow);
    }
}

/// The first byte of a minute-totals key.
const TOTALS: u8 = 0xFF;

/// The key of the totals of minute number `minute`.
fn totals_key(minute: u64) -> [u8; 9] {
    let mut key = [TOTALS; 9];
    key[1..].copy_from_slice(&minute.to_be_bytes());
    key
}

/// The key of `integration`'s record of the minute holding `at_ms`.
fn rollup_key(at_ms: u64, integration: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + integration.len());
    key.extend_from_slice(&(at_ms / MINUTE_MS).to_be_bytes());
    key.extend_from_slice(integration.as_bytes());
    key
}

/// The first key of minute number `minute` (every record of that minute sorts at or after it).
fn minute_start(minute: u64) -> [u8; 8] {
    minute.to_be_bytes()
}

/// The minute (as milliseconds) and integration of a key.
fn split_key(key: &[u8]) -> Result<(u64, &str), Error> {
    let corrupt = || Error::Corrupt {
        tree: trees::ROLLUPS,
        key: format!("{key:02x?}"),
        detail: "not a minute followed by an integration id".to_owned(),
    };
    let (minute, integration) = key.split_at_checked(8).ok_or_else(corrupt)?;
    let minute = u64::from_be_bytes(<[u8; 8]>::try_from(minute).map_err(|_| corrupt())?);
    let integration = std::str::from_utf8(integration).map_err(|_| corrupt())?;
    Ok((minute.saturating_mul(MINUTE_MS), integration))
}

/// A printable name of a rollup key, for errors.
fn key_name(minute_ms: u64, integration: &str) -> String {
    format!("{minute_ms}/{integration}")
}

impl Store {
    /// Adds each record's counts to what is stored for its minute and integration (creating
    /// the record if there is none), all in one transaction. Records with nothing counted are
    /// skipped. Does not flush.
    ///
    /// A stored record that does not decode is replaced by the new counts (logged): the counts
    /// it held cannot be read anyway, and keeping it would stop every later write.
    pub fn add_rollups(&self, records: &[MinuteRollup]) -> Result<(), Error> {
        let t = self.t()?;
        let _writing = self.writing();
        // The same minute and integration twice in one call is summed first.
        let mut batch: BTreeMap<Vec<u8>, MinuteRollup> = BTreeMap::new();
        for r in records.iter().filter(|r| !r.counts.is_empty()) {
            match batch.entry(rollup_key(r.minute_ms, &r.integration)) {
                std::collections::btree_map::Entry::Occupied(mut e) => {
                    e.get_mut().counts.add(&r.counts);
                }
                std::collections::btree_map::Entry::Vacant(e) => {
                    e.insert(r.clone());
                }
            }
        }
        let mut totals: BTreeMap<u64, MinuteTotals> = BTreeMap::new();
        for r in batch.values() {
            let minute = r.minute_ms / MINUTE_MS;
            let t = totals.entry(minute).or_default();
            t.minute_ms = minute * MINUTE_MS;
            t.add(&r.counts);
        }
        let result: Result<(), TransactionError<Error>> = t.rollups.transaction(|tx| {
            for (minute, t) in &totals {
                let key = totals_key(*minute);
                let name = format!("totals/{}", t.minute_ms);
                let mut sum = match tx.get(key)? {
                    Some(v) => codec::decode::<MinuteTotals>(trees::ROLLUPS, name.as_bytes(), &v)
                        .unwrap_or_else(|e| {
                            tracing::warn!(error = %e, "An unreadable rollup total is replaced by the new counts.");
                            MinuteTotals::default()
                        }),
                    None => MinuteTotals::default(),
                };
                sum.minute_ms = t.minute_ms;
                sum.merge(t);
                let bytes = codec::encode(trees::ROLLUPS, &name, &sum).map_err(abort)?;
                tx.insert(&key[..], bytes)?;
            }
            for (key, r) in &batch {
                let name = key_name(r.minute_ms / MINUTE_MS * MINUTE_MS, &r.integration);
                let mut counts = match tx.get(key)? {
                    Some(v) => match codec::decode::<RollupCounts>(trees::ROLLUPS, name.as_bytes(), &v) {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "An unreadable rollup record is replaced by the new counts.");
                            RollupCounts::default()
                        }
                    },
                    None => RollupCounts::default(),
                };
                counts.add(&r.counts);
                let bytes = codec::encode(trees::ROLLUPS, &name, &counts).map_err(abort)?;
                tx.insert(key.as_slice(), bytes)?;
            }
            Ok(())
        });
        self.tx_result(result)
    }

    /// The records of the minutes that overlap `since_ms .. until_ms` (the minute holding
    /// `since_ms` included, `until_ms` excluded), every integration, in time order.
    pub fn rollups(&self, since_ms: u64, until_ms: u64) -> Result<Vec<MinuteRollup>, Error> {
        self.rollups_of(since_ms, until_ms, None, usize::MAX)
    }

    /// Like [`Store::rollups`], only `integration`'s records when given (chosen by key, without
    /// decoding the others), and at most `limit` records.
    pub fn rollups_of(
        &self,
        since_ms: u64,
        until_ms: u64,
        integration: Option<&str>,
        limit: usize,
    ) -> Result<Vec<MinuteRollup>, Error> {
        let t = self.t()?;
        let mut out = Vec::new();
        let first = since_ms / MINUTE_MS;
        let end = until_ms.div_ceil(MINUTE_MS);
        if first >= end || limit == 0 {
            return Ok(out);
        }
        // One integration over a bounded range: a lookup per minute (a day is 1,440, however
        // many integrations there are) instead of walking every integration's keys.
        if let Some(id) = integration
            && end - first <= POINT_READS
        {
            for minute in first..end {
                let Some(v) = t
                    .rollups
                    .get(rollup_key(minute * MINUTE_MS, id))
                    .map_err(|e| self.storage(e))?
                else {
                    continue;
                };
                let minute_ms = minute * MINUTE_MS;
                let counts: RollupCounts =
                    codec::decode(trees::ROLLUPS, key_name(minute_ms, id).as_bytes(), &v)?;
                out.push(MinuteRollup {
                    minute_ms,
                    integration: id.to_owned(),
                    counts,
                });
                if out.len() >= limit {
                    break;
                }
            }
            return Ok(out);
        }
        for item in t.rollups.range(minute_start(first)..minute_start(end)) {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let (minute_ms, id) = split_key(&k)?;
            if integration.is_some_and(|want| want != id) {
                continue;
            }
            let counts: RollupCounts =
                codec::decode(trees::ROLLUPS, key_name(minute_ms, id).as_bytes(), &v)?;
            out.push(MinuteRollup {
                minute_ms,
                integration: id.to_owned(),
                counts,
            });
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// The totals of the minutes that overlap `since_ms .. until_ms`, oldest first; minutes
    /// with nothing counted are absent. A minute without a totals record (written before totals
    /// existed) is summed from its per-integration records: each run of such minutes is one
    /// range scan, which finds nothing once every minute in the range has its totals.
    pub fn rollup_totals(&self, since_ms: u64, until_ms: u64) -> Result<Vec<MinuteTotals>, Error> {
        let t = self.t()?;
        let first = since_ms / MINUTE_MS;
        let end = until_ms.div_ceil(MINUTE_MS);
        let mut out = Vec::new();
        if first >= end {
            return Ok(out);
        }
        let mut next = first;
        for item in t.rollups.range(totals_key(first)..totals_key(end)) {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let mut t: MinuteTotals = codec::decode(trees::ROLLUPS, &k, &v)?;
            let minute = k
                .get(1..9)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes);
            if minute > next {
                self.sum_minutes(next, minute, &mut out)?;
            }
            next = minute.saturating_add(1);
            t.minute_ms = minute.saturating_mul(MINUTE_MS);
            out.push(t);
        }
        if next < end {
            self.sum_minutes(next, end, &mut out)?;
        }
        Ok(out)
    }

    /// Appends the totals of minutes `first .. end` summed from their per-integration records.
    fn sum_minutes(&self, first: u64, end: u64, out: &mut Vec<MinuteTotals>) -> Result<(), Error> {
        let t = self.t()?;
        for item in t.rollups.range(minute_start(first)..minute_start(end)) {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let (minute_ms, id) = split_key(&k)?;
            let counts: RollupCounts =
                codec::decode(trees::ROLLUPS, key_name(minute_ms, id).as_bytes(), &v)?;
            if out.last().is_none_or(|t| t.minute_ms != minute_ms) {
                out.push(MinuteTotals {
                    minute_ms,
                    ..MinuteTotals::default()
                });
            }
            if let Some(t) = out.last_mut() {
                t.add(&counts);
            }
        }
        Ok(())
    }

    /// Removes the records of minutes that ended at or before `before_ms` (retention). Returns
    /// how many. Does not flush.
    pub fn purge_rollups(&self, before_ms: u64) -> Result<usize, Error> {
        let t = self.t()?;
        let end = minute_start(before_ms / MINUTE_MS);
        let mut removed = 0;
        loop {
            // The write guard per chunk (never nested), so a snapshot waits for one chunk at most.
            let _writing = self.writing();
            let mut batch = sled::Batch::default();
            let (mut n, mut records) = (0, 0);
            let totals = totals_key(0)..totals_key(before_ms / MINUTE_MS);
            for item in t
                .rollups
                .range(..end)
                .keys()
                .chain(t.rollups.range(totals).keys())
                .take(PURGE_CHUNK)
            {
                let key = item.map_err(|e| self.storage(e))?;
                // The minutes' totals go with them but are not records of their own.
                if key.first() != Some(&TOTALS) {
                    records += 1;
                }
                batch.remove(key);
                n += 1;
            }
            if n == 0 {
                return Ok(removed);
            }
            t.rollups.apply_batch(batch).map_err(|e| self.storage(e))?;
            removed += records;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// A minute's start, `n` minutes after an arbitrary day.
    fn minute(n: u64) -> u64 {
        1_765_000_000_000 / MINUTE_MS * MINUTE_MS + n * MINUTE_MS
    }

    fn events(
        accepted: u64,
        no_rule: u64,
        duplicate: u64,
        rejected: &[(&str, u64)],
    ) -> RollupCounts {
        RollupCounts {
            events: EventCounts {
                accepted,
                accepted_no_rule: no_rule,
                duplicate,
                rejected: rejected
                    .iter()
                    .map(|(r, n)| ((*r).to_owned(), *n))
                    .collect(),
            },
            ..RollupCounts::default()
        }
    }

    fn rec(at_ms: u64, integration: &str, counts: RollupCounts) -> MinuteRollup {
        MinuteRollup {
            minute_ms: at_ms,
            integration: integration.to_owned(),
            counts,
        }
    }

    #[test]
    fn writes_add_up_across_parts_and_reopens() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let store = Store::open(tmp.path()).unwrap();
            let mut with_actions = events(1, 0, 0, &[]);
            with_actions.rules.insert("notify".into(), 1);
            with_actions
                .actions
                .entry("notify".into())
                .or_default()
                .entry("send_message".into())
                .or_default()
                .insert("succeeded".into(), 2);
            store
                .add_rollups(&[
                    rec(minute(0) + 5, "zd", with_actions.clone()),
                    rec(minute(0) + 7, "zd", events(0, 1, 0, &[("stale", 2)])),
                    rec(minute(0), "slack", RollupCounts::default()),
                ])
                .unwrap();
            store.flush().unwrap();
        }
        // A restart continues the minute: added, not overwritten.
        let store = Store::open(tmp.path()).unwrap();
        let mut more = events(2, 0, 1, &[("stale", 1), ("bad_signature", 1)]);
        more.actions
            .entry("notify".into())
            .or_default()
            .entry("send_message".into())
            .or_default()
            .insert("retried".into(), 1);
        store
            .add_rollups(&[rec(minute(0) + 59_999, "zd", more)])
            .unwrap();
        let got = store.rollups(minute(0), minute(1)).unwrap();
        assert_eq!(got.len(), 1, "{got:?}");
        let r = &got[0];
        assert_eq!((r.minute_ms, r.integration.as_str()), (minute(0), "zd"));
        assert_eq!(r.counts.events.accepted, 3);
        assert_eq!(r.counts.events.accepted_no_rule, 1);
        assert_eq!(r.counts.events.duplicate, 1);
        assert_eq!(r.counts.events.rejected["stale"], 3);
        assert_eq!(r.counts.rejected_total(), 4);
        assert_eq!(r.counts.rules["notify"], 1);
        let outcomes = r.counts.actions_by_outcome();
        assert_eq!((outcomes["succeeded"], outcomes["retried"]), (2, 1));
        // The empty record was not written.
        assert!(
            store
                .rollups_of(0, u64::MAX, Some("slack"), 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn minute_boundaries_and_ranges() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        // The last millisecond of a minute and the first of the next are different records.
        store
            .add_rollups(&[
                rec(minute(1) - 1, "zd", events(1, 0, 0, &[])),
                rec(minute(1), "zd", events(10, 0, 0, &[])),
                rec(minute(1) + 1, "a", events(100, 0, 0, &[])),
                rec(minute(3), "zd", events(1000, 0, 0, &[])),
            ])
            .unwrap();
        let all = store.rollups(0, u64::MAX).unwrap();
        let seen: Vec<(u64, &str, u64)> = all
            .iter()
            .map(|r| {
                (
                    r.minute_ms,
                    r.integration.as_str(),
                    r.counts.events.accepted,
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                (minute(0), "zd", 1),
                (minute(1), "a", 100),
                (minute(1), "zd", 10),
                (minute(3), "zd", 1000)
            ]
        );
        // `since` inside a minute includes that minute; `until` is exclusive.
        let r = store.rollups(minute(1) + 30_000, minute(3)).unwrap();
        assert_eq!(r.len(), 2, "{r:?}");
        let r = store.rollups(minute(1) + 30_000, minute(3) + 1).unwrap();
        assert_eq!(r.len(), 3, "{r:?}");
        assert!(store.rollups(minute(2), minute(3)).unwrap().is_empty());
        assert!(store.rollups(minute(3), minute(3)).unwrap().is_empty());
        // The integration filter and the limit.
        let zd = store.rollups_of(0, u64::MAX, Some("zd"), 2).unwrap();
        assert_eq!(zd.len(), 2);
        assert!(zd.iter().all(|r| r.integration == "zd"));
        // A prefix of another id is another integration.
        assert!(
            store
                .rollups_of(0, u64::MAX, Some("z"), 10)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn retention_purges_whole_old_minutes() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let mut records = Vec::new();
        for m in 0..2_500 {
            records.push(rec(minute(m), "zd", events(1, 0, 0, &[])));
        }
        store.add_rollups(&records).unwrap();
        // Before the middle of minute 2000: minutes 0..2000 are over, 2000 is not.
        assert_eq!(store.purge_rollups(minute(2_000) + 30_000).unwrap(), 2_000);
        let left = store.rollups(0, u64::MAX).unwrap();
        assert_eq!(left.len(), 500);
        assert_eq!(left[0].minute_ms, minute(2_000));
        assert_eq!(store.purge_rollups(minute(2_000)).unwrap(), 0);
        // The totals of the purged minutes went with them.
        let totals = store.rollup_totals(0, u64::MAX).unwrap();
        assert_eq!(totals.len(), 500);
        assert_eq!(totals[0].minute_ms, minute(2_000));
    }

    #[test]
    fn minutes_without_totals_are_summed_from_their_records() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        store
            .add_rollups(&[
                rec(minute(0), "zd", events(2, 1, 0, &[("stale", 1)])),
                rec(minute(0), "fd", events(3, 0, 0, &[])),
                rec(minute(1), "zd", events(1, 0, 0, &[])),
                rec(minute(3), "fd", events(4, 0, 1, &[])),
                rec(minute(5), "zd", events(5, 0, 0, &[])),
            ])
            .unwrap();
        let written = store.rollup_totals(minute(0), minute(6)).unwrap();
        // As a state written before totals existed: minutes 0, 1 and 5 have none.
        for m in [0, 1, 5] {
            store
                .t()
                .unwrap()
                .rollups
                .remove(totals_key(minute(m) / MINUTE_MS))
                .unwrap();
        }
        let summed = store.rollup_totals(minute(0), minute(6)).unwrap();
        assert_eq!(summed, written);
        assert_eq!(
            summed
                .iter()
                .map(|t| (t.minute_ms, t.events, t.accepted_no_rule, t.rejected))
                .collect::<Vec<_>>(),
            vec![
                (minute(0), 6, 1, 1),
                (minute(1), 1, 0, 0),
                (minute(3), 4, 0, 0),
                (minute(5), 5, 0, 0)
            ]
        );
        assert_eq!(summed[0].rejected_by_reason.get("stale"), Some(&1));
        // Bounds cut the summed minutes as they cut the stored ones.
        let middle = store.rollup_totals(minute(1), minute(4)).unwrap();
        assert_eq!(
            middle.iter().map(|t| t.minute_ms).collect::<Vec<_>>(),
            vec![minute(1), minute(3)]
        );
    }

    #[test]
    fn minute_totals_are_the_sums_of_every_integration() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        let mut acted = events(2, 1, 1, &[("stale", 3)]);
        acted.rules.insert("notify".into(), 2);
        acted
            .actions
            .entry("notify".into())
            .or_default()
            .entry("send_message".into())
            .or_default()
            .insert("succeeded".into(), 2);
        store
            .add_rollups(&[
                rec(minute(0) + 5, "zd", acted.clone()),
                rec(minute(0) + 9, "slack", events(4, 0, 0, &[])),
                rec(minute(2), "zd", events(1, 0, 0, &[])),
            ])
            .unwrap();
        // A later write to the same minute adds.
        store.add_rollups(&[rec(minute(0), "fd", acted)]).unwrap();
        let totals = store.rollup_totals(minute(0), minute(3)).unwrap();
        assert_eq!(totals.len(), 2, "{totals:?}");
        let t = &totals[0];
        assert_eq!(t.minute_ms, minute(0));
        assert_eq!(
            (t.events, t.rejected, t.duplicate, t.matches),
            (10, 6, 2, 4)
        );
        assert_eq!(t.actions.get("succeeded"), Some(&4));
        assert_eq!((totals[1].minute_ms, totals[1].events), (minute(2), 1));
        // The per-integration records do not see the totals.
        assert_eq!(store.rollups(0, u64::MAX).unwrap().len(), 4);
        assert!(
            store
                .rollup_totals(minute(1), minute(2))
                .unwrap()
                .is_empty()
        );
        let both = store.rollup_totals(minute(0) + 1, minute(2) + 1).unwrap();
        assert_eq!(both.len(), 2);
        // One integration over a short range is read by a lookup per minute: same answer.
        let zd = store
            .rollups_of(minute(0), minute(3), Some("zd"), usize::MAX)
            .unwrap();
        assert_eq!(
            zd.iter()
                .map(|r| (r.minute_ms, r.counts.events.accepted))
                .collect::<Vec<_>>(),
            vec![(minute(0), 2), (minute(2), 1)]
        );
        assert_eq!(
            store
                .rollups_of(minute(0), minute(3), Some("zd"), 1)
                .unwrap()
                .len(),
            1
        );
        assert!(
            store
                .rollups_of(minute(0), minute(3), Some("z"), 9)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn corrupt_records_are_errors_on_read_and_replaced_on_write() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path()).unwrap();
        store
            .t()
            .unwrap()
            .rollups
            .insert(rollup_key(minute(0), "zd"), &b"\x01{not json"[..])
            .unwrap();
        store
            .t()
            .unwrap()
            .rollups
            .insert(&[0u8, 0, 0, 0, 0, 1][..], &b"\x01{}"[..])
            .unwrap();
        let err = store.rollups(minute(0), minute(1)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Corrupt {
                    tree: trees::ROLLUPS,
                    ..
                }
            ),
            "{err}"
        );
        store
            .add_rollups(&[rec(minute(0), "zd", events(2, 0, 0, &[]))])
            .unwrap();
        let got = store.rollups(minute(0), minute(1)).unwrap();
        assert_eq!(got[0].counts.events.accepted, 2);
        // A key too short to hold a minute.
        let err = store.rollups(0, minute(0)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Corrupt {
                    tree: trees::ROLLUPS,
                    ..
                }
            ),
            "{err}"
        );
    }
}
