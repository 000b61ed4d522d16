//! The audit log: tree `audit`, typed [`AuditRecord`]s keyed by `at_ms ‖ sequence` (both
//! big-endian), so that it is time-ordered and records of the same millisecond keep their
//! order of writing.
//!
//! Guarantees: records are never rewritten; [`Store::audit`] returns them newest first;
//! [`Store::ingest_audited`] appends records in the same transaction as the event and its jobs.
//!
//! Records never contain secrets: callers must not put secret values (tokens, signing secrets,
//! credentials, raw authorization headers) in `detail`, in a rejection `reason` or in an error
//! text; they name resources and say what happened.

use serde::{Deserialize, Serialize};

use super::{Error, Store, codec, trees};

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

impl AuditFilter {
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
    pub(super) fn append_audit_held(&self, record: &AuditRecord) -> Result<(), Error> {
        for (key, value) in self.encode_audit(std::slice::from_ref(record))? {
            self.audit.insert(key, value).map_err(|e| self.storage(e))?;
        }
        Ok(())
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
        let mut out = Vec::new();
        if filter.limit == 0 {
            return Ok(out);
        }
        let start = audit_key(filter.since_ms.unwrap_or(0), 0);
        for item in self.audit.range(start..).rev() {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let record: AuditRecord = codec::decode(trees::AUDIT, key_name(&k).as_bytes(), &v)?;
            if filter.matches(&record) {
                out.push(record);
                if out.len() >= filter.limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Removes audit records older than `before_ms` (retention). Returns how many. Does not
    /// flush.
    pub fn purge_audit(&self, before_ms: u64) -> Result<usize, Error> {
        let _writing = self.writing();
        let mut removed = 0;
        for item in self.audit.range(..audit_key(before_ms, 0)).keys() {
            let k = item.map_err(|e| self.storage(e))?;
            self.audit.remove(k).map_err(|e| self.storage(e))?;
            removed += 1;
        }
        Ok(removed)
    }
}
