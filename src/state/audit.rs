//! The audit log: tree `audit`, typed [`AuditRecord`]s keyed by `at_ms ‖ sequence` (both
//! big-endian), so that it is time-ordered and records of the same millisecond keep their
//! order of writing.
//!
//! Guarantees: records are never rewritten; [`Store::audit`] returns them newest first;
//! [`Store::ingest_audited`] appends records in the same transaction as the event and its jobs.
//! Retention removes the oldest first, by age ([`Store::purge_audit`]) and by count
//! ([`Store::purge_audit_over`]), and counts what it removed in `meta`
//! ([`Store::audit_records_removed`]) in the same transactions, so the count survives restarts
//! and crashes exactly.
//!
//! Records never contain secrets: callers must not put secret values (tokens, signing secrets,
//! credentials, raw authorization headers) in `detail`, in a rejection `reason` or in an error
//! text; they name resources and say what happened.

use serde::{Deserialize, Serialize};

use sled::Transactional;
use sled::transaction::TransactionError;

use super::{Error, Store, abort, codec, meta_keys, trees};

/// Records removed per transaction by retention.
const PURGE_CHUNK: usize = 1_000;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuditKind {
    /// A webhook delivery was verified and its event stored.
    EventAccepted,
    /// A webhook delivery was refused (bad signature, unknown integration, duplicate, …).
    EventRejected {
        /// Why (redaction-safe).
        reason: String,
    },
    /// A rule matched an event and a job was created for it.
    RuleMatched {
        /// The rule's name.
        rule: String,
    },
    /// A shadow rule (`mode = "shadow"`) matched an event: no job was created; the detail holds
    /// what it would have done (each action with its rendered parameters, redacted, or the
    /// rendering error).
    RuleShadowed {
        /// The rule's name.
        rule: String,
    },
    /// An action of a job is being run.
    ActionAttempted {
        /// The action's index in the rule.
        step: usize,
    },
    /// An action of a job succeeded.
    ActionSucceeded {
        /// The action's index in the rule.
        step: usize,
    },
    /// An action of a job failed; the job will be retried.
    ActionFailed {
        /// The action's index in the rule.
        step: usize,
        /// The error (redaction-safe).
        error: String,
    },
    /// An action of a job failed for good; the job was dead-lettered.
    ActionDeadLettered {
        /// The action's index in the rule.
        step: usize,
        /// The error (redaction-safe).
        error: String,
    },
    /// A dead-lettered job was put back in the outbox.
    JobReplayed,
    /// An operator had a stored delivery evaluated again against the revision in use
    /// (`POST /api/events/{id}/redeliver`); one job was created per rule named.
    EventRedelivered {
        /// The rules that got a job.
        rules: Vec<String>,
    },
    /// A platform's one-time verification token arrived (inside a window an operator opened)
    /// and was sealed into the state.
    VerificationTokenCaptured,
    /// An operator opened a window in which Notion's verification token is accepted.
    NotionVerificationExpected,
    /// An operator confirmed which received token is Notion's (it now verifies signatures).
    NotionVerificationConfirmed,
    /// An operator reset a Notion verification: tokens and confirmation forgotten.
    NotionVerificationReset,
    /// A revision was loaded, validated and put in use.
    RevisionApplied,
    /// A revision did not validate and was refused; the previous one kept running.
    RevisionRefused {
        /// Why (redaction-safe).
        reason: String,
    },
    /// A webhook registration was created, updated, repaired or renewed on the platform.
    RegistrationSynced {
        /// `created`, `updated`, `repaired` or `renewed`.
        outcome: String,
    },
    /// A webhook registration supportopsd owned was deleted from the platform (pruned).
    RegistrationRemoved,
    /// An integration's connection check started failing.
    IntegrationDegraded {
        /// Why (redaction-safe).
        reason: String,
    },
    /// An integration's connection check succeeds again.
    IntegrationRecovered,
    /// The daemon was held on a revision.
    Pinned,
    /// A pin was released.
    Unpinned,
    /// An operator paused a rule or an integration (`supportopsd pause`); `resource_type` says
    /// which, the detail names the caller and the reason.
    Paused,
    /// An operator resumed a paused rule or integration (`supportopsd resume`); the detail
    /// names the caller.
    Resumed {
        /// Queued jobs of a paused integration dropped instead of run (`--drop-queued`):
        /// dead-lettered, each replayable on its own.
        #[serde(default)]
        dropped: usize,
    },
    /// A rule matched a delivery while paused: no job was created for it (the detail names
    /// the delivery and the hold's reason).
    RulePausedSkipped {
        /// The rule's name.
        rule: String,
    },
    /// A reconcile pass was asked for through the operator API (`POST /api/sync`: an operator,
    /// or a git host's signed push webhook); the detail names the caller and the outcome.
    SyncRequested,
    /// An operator ran an action through the API (`POST /api/integrations/{id}/execute`).
    ActionExecuted {
        /// The action's name.
        action: String,
        /// Why it failed (redaction-safe); `None` when it succeeded.
        error: Option<String>,
    },
    /// Someone signed in to the console (`/ui/login`); the detail names the peer and the kind
    /// of token (`admin`, `read`, `loopback_without_token`), never the token or the session id.
    ConsoleSignedIn,
    /// A console sign-in was refused (a wrong token, or too many failures from the peer); the
    /// detail names the peer and why, never what was typed.
    ConsoleSignInFailed {
        /// Why (`wrong_token`, `rate_limited`, `not_local`).
        reason: String,
    },
    /// Someone signed out of the console; the detail names the peer and the kind of token.
    ConsoleSignedOut,
    /// A backup of the state was taken through the operator API (`POST /api/state/backup`);
    /// the detail names the caller and the snapshot's size, or why it failed.
    StateBackedUp {
        /// Why it failed (redaction-safe); `None` when the whole snapshot was sent.
        error: Option<String>,
    },
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// When it happened, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What happened.
    pub kind: AuditKind,
    /// The kind of resource it concerns (`event`, `job`, `integration`, …).
    pub resource_type: String,
    /// The resource's id (an event key, a job id, an integration id, …).
    pub resource_id: String,
    /// More context. Never a secret (see the module documentation).
    pub detail: serde_json::Value,
}

/// Which records [`Store::audit`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only records of this resource type.
    pub resource_type: Option<String>,
    /// Only records of this resource id.
    pub resource_id: Option<String>,
    /// Only records at or after this time, milliseconds since the Unix epoch.
    pub since_ms: Option<u64>,
    /// At most this many records (0 returns none).
    pub limit: usize,
}

/// Whether `haystack` contains `needle`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

impl AuditFilter {
    /// What the encoding of a record passing the resource filters contains: `"resource_type":
    /// "<type>"` and `"resource_id":"<id>"` as `serde_json` writes them (records are written
    /// compact, format 1, by `codec::encode`).
    fn needles(&self) -> Vec<Vec<u8>> {
        [
            ("resource_type", &self.resource_type),
            ("resource_id", &self.resource_id),
        ]
        .into_iter()
        .filter_map(|(name, value)| {
            let value = serde_json::to_string(value.as_ref()?).ok()?;
            Some(format!("\"{name}\":{value}").into_bytes())
        })
        .collect()
    }

    /// Whether `record` passes the resource filters (the time filter is applied by the scan).
    fn matches(&self, record: &AuditRecord) -> bool {
        self.resource_type
            .as_ref()
            .is_none_or(|t| *t == record.resource_type)
            && self
                .resource_id
                .as_ref()
                .is_none_or(|id| *id == record.resource_id)
    }
}

/// An audit record ready to write: its key and its encoded value.
pub(super) type EncodedRecord = ([u8; 16], Vec<u8>);

/// The key of an audit record.
fn audit_key(at_ms: u64, seq: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&at_ms.to_be_bytes());
    key[8..].copy_from_slice(&seq.to_be_bytes());
    key
}

/// The time of an audit key (0 for a key too short to be one).
fn key_ms(key: &[u8]) -> u64 {
    key.get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_be_bytes)
}

/// How far back from the newest record the size check recounts keys on each check: records
/// are keyed by when they happened, and some are written a little later (a refusal window's
/// record up to a minute after its first refusal); keys older than this when written are
/// missed by the estimate until the next whole walk.
pub(super) const TALLY_WINDOW_MS: u64 = 10 * 60_000;

/// How much newer than the last whole walk the newest record may be before the size check
/// walks the log whole again (which corrects the estimate).
pub(super) const TALLY_RECOUNT_MS: u64 = 3_600_000;

/// What the size check ([`Store::purge_audit_over`]) knows since it last walked the audit log
/// whole, so that the next check counts only recent keys instead of every record.
#[derive(Debug, Clone)]
pub(super) struct AuditTally {
    /// Records in the log (exact after a whole walk, an estimate after).
    pub(super) count: u64,
    /// The first key of the recent window at the last check.
    pub(super) window: [u8; 16],
    /// Records at or after `window` at the last check.
    pub(super) recent: u64,
    /// The newest record's time at the last whole walk.
    pub(super) walked_ms: u64,
    /// Whole walks so far (for tests).
    pub(super) walks: u64,
}

/// A printable name of an audit key, for errors.
fn key_name(key: &[u8]) -> String {
    match <[u8; 16]>::try_from(key) {
        Ok(k) => {
            let (at, seq) = k.split_at(8);
            let at = u64::from_be_bytes(<[u8; 8]>::try_from(at).unwrap_or_default());
            let seq = u64::from_be_bytes(<[u8; 8]>::try_from(seq).unwrap_or_default());
            format!("{at}/{seq}")
        }
        Err(_) => format!("{key:02x?}"),
    }
}

impl Store {
    /// Appends one audit record on its own. Does not flush.
    pub fn append_audit(&self, record: &AuditRecord) -> Result<(), Error> {
        let _writing = self.writing();
        self.append_audit_held(record)
    }

    /// [`Store::append_audit`] for a caller that holds [`Store::writing`] already.
    /// A record of a delivery (`"event"` in its detail) or a refusal is indexed in the same
    /// transaction (`history.rs`).
    pub(super) fn append_audit_held(&self, record: &AuditRecord) -> Result<(), Error> {
        let t = self.t()?;
        let records = std::slice::from_ref(record);
        let encoded = self.encode_audit(records)?;
        let indexed = super::history::audit_keys(records, &encoded, None);
        if indexed.is_empty() {
            for (key, value) in encoded {
                t.audit.insert(key, value).map_err(|e| self.storage(e))?;
            }
            return Ok(());
        }
        let result = (&t.audit, &t.history).transaction(|(audit, history)| {
            for (key, value) in &encoded {
                audit.insert(&key[..], value.as_slice())?;
            }
            for k in &indexed {
                history.insert(k.as_slice(), &[][..])?;
            }
            Ok(())
        });
        self.tx_result(result)
    }

    /// Encodes records with fresh keys, for writing (possibly inside a transaction).
    pub(super) fn encode_audit(
        &self,
        records: &[AuditRecord],
    ) -> Result<Vec<EncodedRecord>, Error> {
        records
            .iter()
            .map(|record| {
                let key = audit_key(record.at_ms, self.next_id()?);
                let value = codec::encode(trees::AUDIT, &key_name(&key), record)?;
                Ok((key, value))
            })
            .collect()
    }

    /// Audit records passing `filter`, newest first. Scans back from the newest record to
    /// `since_ms` (or the beginning), so give `since_ms` when filtering for a rare resource.
    pub fn audit(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, Error> {
        self.audit_bounded(filter, usize::MAX)
            .map(|(records, _)| records)
    }

    /// Like [`Store::audit`], decoding no more than the newest `max_scanned` records of the
    /// range; `true` when it stopped there with older records left unread.
    pub fn audit_bounded(
        &self,
        filter: &AuditFilter,
        max_scanned: usize,
    ) -> Result<(Vec<AuditRecord>, bool), Error> {
        let t = self.t()?;
        let mut out = Vec::new();
        if filter.limit == 0 {
            return Ok((out, false));
        }
        let start = audit_key(filter.since_ms.unwrap_or(0), 0);
        let needles = filter.needles();
        for (scanned, item) in t.audit.range(start..).rev().enumerate() {
            if scanned >= max_scanned {
                return Ok((out, true));
            }
            let (k, v) = item.map_err(|e| self.storage(e))?;
            // A record that passes the resource filters holds their encodings: one that does
            // not is skipped without decoding it (the filters are checked again after).
            if !needles.iter().all(|n| contains(&v, n)) {
                continue;
            }
            let record: AuditRecord = codec::decode(trees::AUDIT, key_name(&k).as_bytes(), &v)?;
            if filter.matches(&record) {
                out.push(record);
                if out.len() >= filter.limit {
                    break;
                }
            }
        }
        Ok((out, false))
    }

    /// Removes audit records older than `before_ms` (the age bound, `--audit-retention`).
    /// Returns how many, and adds them to [`Store::audit_records_removed`]. Does not flush.
    pub fn purge_audit(&self, before_ms: u64) -> Result<usize, Error> {
        let trees = self.t()?;
        let end = audit_key(before_ms, 0);
        let mut tally = self.tally();
        // What the size check counted as recent and this removes (a retention shorter than
        // the window), so its next estimate does not subtract them twice.
        let recent_removed = match tally.as_ref() {
            Some(t) if t.window.as_slice() < end.as_slice() => trees
                .audit
                .range(t.window..end)
                .keys()
                .try_fold(0u64, |n, k| k.map(|_| n + 1))
                .map_err(|e| self.storage(e))?,
            _ => 0,
        };
        let removed = self.remove_audit_before(&end, false)?;
        if let Some(t) = tally.as_mut() {
            t.count = t
                .count
                .saturating_sub(u64::try_from(removed).unwrap_or(u64::MAX));
            t.recent = t.recent.saturating_sub(recent_removed);
        }
        Ok(removed)
    }

    /// Removes the oldest audit records beyond the newest `max_records` (the size bound,
    /// `--audit-max-records`). Returns how many, and adds them to
    /// [`Store::audit_records_removed`]. Does not flush.
    ///
    /// Cost: the log is walked whole (newest first, up to `max_records` keys) only on the first
    /// check, when the estimate says the bound is passed, and at least once an hour of records;
    /// otherwise the check counts the keys of the last [`TALLY_WINDOW_MS`] and what came since
    /// ([`AuditTally`]). A whole walk measured 2.0 s for 300,000 records in a debug build on
    /// the 2-core test machine under load (load average 5.6), and removing 100,000 records
    /// 12 s; the daemon checks once per housekeeping (every 5 minutes) on a blocking thread,
    /// taking the write guard only per removed chunk.
    pub fn purge_audit_over(&self, max_records: u64) -> Result<usize, Error> {
        let t = self.t()?;
        let count_keys = |from: &[u8]| -> Result<u64, Error> {
            t.audit
                .range(from..)
                .keys()
                .try_fold(0u64, |n, k| k.map(|_| n + 1))
                .map_err(|e| self.storage(e))
        };
        let mut tally = self.tally();
        let newest = match t.audit.iter().keys().next_back() {
            None => {
                *tally = None;
                return Ok(0);
            }
            Some(k) => k.map_err(|e| self.storage(e))?,
        };
        let newest_ms = key_ms(&newest);
        let window = audit_key(newest_ms.saturating_sub(TALLY_WINDOW_MS), 0);
        if let Some(t) = tally.as_mut()
            && newest_ms < t.walked_ms.saturating_add(TALLY_RECOUNT_MS)
        {
            let estimate = t
                .count
                .saturating_add(count_keys(&t.window)?)
                .saturating_sub(t.recent);
            if estimate <= max_records {
                t.count = estimate;
                t.recent = count_keys(&window)?;
                t.window = window;
                return Ok(0);
            }
        }
        // A whole walk: the exact count, and the boundary when the bound is passed.
        let skip = usize::try_from(max_records).unwrap_or(usize::MAX);
        let mut walked = 0u64;
        let mut boundary = None;
        for (i, k) in t.audit.iter().keys().rev().enumerate() {
            let k = k.map_err(|e| self.storage(e))?;
            if i == skip {
                boundary = Some(k);
                break;
            }
            walked += 1;
        }
        // The boundary (the newest record beyond the bound) goes too.
        let removed = match &boundary {
            Some(b) => self.remove_audit_before(b, true)?,
            None => 0,
        };
        let walks = tally.as_ref().map_or(0, |t| t.walks).saturating_add(1);
        *tally = Some(AuditTally {
            count: walked,
            recent: count_keys(&window)?,
            window,
            walked_ms: newest_ms,
            walks,
        });
        Ok(removed)
    }

    /// The size check's tally (held while a purge runs).
    pub(super) fn tally(&self) -> std::sync::MutexGuard<'_, Option<AuditTally>> {
        self.audit_tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Audit records removed by retention since the state was created (both bounds).
    pub fn audit_records_removed(&self) -> Result<u64, Error> {
        let t = self.t()?;
        Ok(self
            .get(&t.meta, trees::META, meta_keys::AUDIT_RECORDS_REMOVED)?
            .unwrap_or(0))
    }

    /// Removes the records before `end` (and `end` itself when `inclusive`), oldest first, in
    /// transactions of [`PURGE_CHUNK`] that each also add their count to
    /// [`meta_keys::AUDIT_RECORDS_REMOVED`], so the count stays exact across a crash. The write
    /// guard is taken per chunk (never nested), so a snapshot waits for one chunk at most.
    fn remove_audit_before(&self, end: &[u8], inclusive: bool) -> Result<usize, Error> {
        let t = self.t()?;
        let mut removed = 0;
        loop {
            let _writing = self.writing();
            let upper = if inclusive {
                std::ops::Bound::Included(end)
            } else {
                std::ops::Bound::Excluded(end)
            };
            let keys: Vec<sled::IVec> = t
                .audit
                .range::<&[u8], _>((std::ops::Bound::Unbounded, upper))
                .keys()
                .take(PURGE_CHUNK)
                .collect::<Result<_, _>>()
                .map_err(|e| self.storage(e))?;
            if keys.is_empty() {
                return Ok(removed);
            }
            let n = u64::try_from(keys.len()).unwrap_or(u64::MAX);
            let result: Result<(), TransactionError<Error>> =
                (&t.audit, &t.meta).transaction(|(audit, meta)| {
                    for k in &keys {
                        audit.remove(k)?;
                    }
                    let before: u64 = match meta.get(meta_keys::AUDIT_RECORDS_REMOVED)? {
                        Some(v) => codec::decode(
                            trees::META,
                            meta_keys::AUDIT_RECORDS_REMOVED.as_bytes(),
                            &v,
                        )
                        .map_err(abort)?,
                        None => 0,
                    };
                    let total = codec::encode(
                        trees::META,
                        meta_keys::AUDIT_RECORDS_REMOVED,
                        &before.saturating_add(n),
                    )
                    .map_err(abort)?;
                    meta.insert(meta_keys::AUDIT_RECORDS_REMOVED, total)?;
                    Ok(())
                });
            self.tx_result(result)?;
            removed += keys.len();
        }
    }
}
