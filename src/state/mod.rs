//! State: the daemon's persistent store, one sled database under `--state`.
//!
//! This is the only module that touches sled; nothing in its public API names a sled type, so
//! the backend can be swapped. Callers outside `state` go through the [`State`] trait
//! (`interface.rs`: what every backend guarantees, method by method); [`Store`] is its sled
//! implementation, named outside `state` only to open a state. Guarantees:
//!
//! - The database has a schema version in `meta`; [`Store::open`] writes it on first open and
//!   refuses state written by a newer schema with [`Error::NewerSchema`].
//! - [`Store::open_existing`] never creates anything (for read-only commands such as `plan`).
//! - One process at a time: a second open is [`Error::Locked`], not a hang or a corruption.
//! - A state sled cannot read is [`Error::Unreadable`], not a crash: sled 0.34 panics on some
//!   (`open_sled` catches it).
//! - Start-up reads a bounded part of sled's log, after a crash too: sled 0.34 writes its
//!   snapshot only when it opens, so [`Store::refresh_snapshot`] closes and reopens the
//!   database every [`SNAPSHOT_AFTER_DELIVERIES`] stored deliveries (the daemon's checkpoint
//!   thread, at most once a minute) and at a clean stop (through [`State::upkeep`]). The sled
//!   handles live in one [`Trees`] that every call takes for its length ([`Store::t`]), so
//!   that the refresh can wait for calls in progress and swap it.
//! - Memory does not wait on sled's deferred frees: each call hands what sled retired on its
//!   thread over to be freed ([`release_garbage`], at most every 100 ms per thread).
//! - Private whatever the umask (`perms.rs`): the directory is created 0700 and every file in
//!   it made 0600, sled's included (after it opened them, and again on
//!   [`Store::secure_files`]).
//! - Every value is versioned (`codec.rs`), except in the `due` index, whose entries are keys
//!   only (empty values); bad bytes are an [`Error::Corrupt`] naming the tree and key, never a
//!   panic.
//! - [`Store::record_applied_set`] changes the applied revision and the applied resources
//!   atomically.
//! - The inbox and outbox (`inbox.rs`, `outbox.rs`): [`Store::ingest`] writes an event's
//!   record (under a new [`EventId`], in arrival order), its dedupe entry and one [`Job`] per
//!   matching rule in one transaction; jobs are leased, advanced step by step, acknowledged,
//!   retried or dead-lettered, each transition atomic. Delivery is at least once: a crash
//!   re-runs at most the jobs that were leased.
//! - Payloads are not in sled but in segment files under `events/` (`segments.rs`,
//!   `payloads.rs`), which retention ([`Store::purge_expired`]) deletes whole: sled does not
//!   give space back (docs/state-retention.md). The segments are synced before every flush of
//!   sled, so sled never durably points at payload bytes that are not on disk.
//! - The audit log (`audit.rs`): typed, time-ordered [`AuditRecord`]s, bounded by age and by
//!   count, with how many retention removed kept in `meta`.
//! - Per-minute rollups (`rollups.rs`): counts per minute and integration, added to (never
//!   overwritten) by each write.
//! - Every public method that writes holds [`Store::writing`] (shared) for as long as it
//!   writes, once per call; a backup (`backup.rs`) takes [`Store::quiesce`] (exclusive) while it
//!   reads every tree, so a snapshot never sees a transaction half-way.
//! - Only [`Store::record_applied_set`] and [`Store::set_applied_revision`] flush by
//!   themselves; the queue operations do not, so the daemon can batch flushes ("group
//!   commit") with [`Store::flush`] or [`Store::flush_async`] before it answers a webhook.
//!
//! Trees are named by the constants in [`trees`]. A new tree (registrations, health, inbox,
//! outbox, dead, audit, …) gets a constant there, a field on [`Store`] opened in
//! `Store::open_db`, and its own file with an `impl Store` block, like `applied.rs`; if it
//! changes the meaning of existing data, bump [`SCHEMA_VERSION`] and add a step to `migrate`.
//! Adding a tree (as for the queue and audit trees) changes nothing existing, so it needs no
//! new schema version. Nothing secret is ever stored here.

mod applied;
mod audit;
pub mod backup;
mod captured;
mod codec;
mod history;
mod holds;
mod inbox;
mod interface;
pub mod journal;
mod keys;
mod migrate;
mod outbox;
mod payloads;
mod perms;
mod registrations;
mod rollups;
pub mod segments;

use std::fmt;
use std::path::{Path, PathBuf};

use sled::transaction::{ConflictableTransactionError, TransactionError};

pub use applied::AppliedResource;
pub use audit::{AuditFilter, AuditKind, AuditRecord};
pub use backup::{BackupError, BackupReport, Checked, StateCounts, Taken};
pub use captured::{ConnectorKept, NotionVerification, ReceivedToken};
pub use history::{
    BadFilter, EventJob, HistoryFilter, HistoryItem, HistoryPage, JobOutcome, Outcome,
};
pub use holds::{Hold, HoldKind};
pub use inbox::{EventMeta, IngestOutcome, PayloadAt};
pub use interface::{
    Audit, Captured, Flushing, History, Holds, Inbox, Outbox, Registrations, Revisions, Rollups,
    State, Upkeep,
};
pub use keys::{BadEventId, EventId};
pub use outbox::{DeadJob, ENRICHMENT, Job};
pub use payloads::{Purged, Retention, RetentionTotals, StateBytes};
pub use registrations::{HealthRecord, Pin, REGISTRATION_SECRET_FIELD, RegistrationRecord};
pub use rollups::{EventCounts, MINUTE_MS, MinuteRollup, MinuteTotals, RollupCounts};

/// The schema version this build writes and understands. Version 2 keys stored deliveries by
/// the end of their dedupe window instead of by event key (version 1); version 3 keeps the
/// applied resources as one record instead of one per resource; version 4 keys deliveries by
/// [`EventId`] (arrival), keeps their payloads in segment files and the dedupe keys apart, by
/// digest; version 5 drops the per-delivery `event_segments` entry: which deliveries a
/// segment holds is its range of ids appended at ingest ([`trees::SEGMENT_RANGES`]) plus the
/// few moved into it later ([`trees::SEGMENT_MOVED`]). [`Store::open`] migrates versions 1
/// to 4 (`migrate.rs`).
///
/// Version 5 had to be a new version, not a new tree beside version 4's: a schema 4 build
/// reading a schema 5 state would find no `event_segments` entry for any segment, take every
/// sealed segment for empty and delete live payloads (of unfinished and dead-lettered jobs
/// too). With the bump it refuses the state ([`Error::NewerSchema`]) instead.
pub const SCHEMA_VERSION: u32 = 5;

/// Names of the sled trees.
pub mod trees {
    /// Schema version and applied revision.
    pub const META: &str = "meta";
    /// Applied resources: one record, `set` → every [`super::AppliedResource`], sorted by key.
    pub const APPLIED: &str = "applied";
    /// Stored deliveries by arrival: [`super::EventId`] big-endian → [`super::EventMeta`] (the
    /// payload is in the segment files). New deliveries are appended at the end.
    pub const EVENTS: &str = "event_index";
    /// Which deliveries each payload segment holds, part 1 (schema 5): segment big-endian →
    /// `(first, last)` [`super::EventId`]s (`u64`s) of the deliveries whose payloads ingest
    /// appended to it, written once per ingest transaction (not per delivery). Ids are
    /// allocated on the request threads, so a segment's range may overlap its neighbours' a
    /// little: retention scans [`EVENTS`] over the range and keeps the records that name the
    /// segment. Removed with the segment file.
    pub const SEGMENT_RANGES: &str = "segment_ranges";
    /// Which deliveries each payload segment holds, part 2: segment big-endian ‖
    /// [`super::EventId`] big-endian → empty value, for the payloads written into a segment
    /// out of id order (an enrichment completing, retention's copy-forward, what the migration
    /// from schema 4 found out of order), removed when the delivery is removed or moved again.
    pub const SEGMENT_MOVED: &str = "segment_moved";
    /// Schema 4's index of the segments, one entry per delivery: segment big-endian ‖
    /// [`super::EventId`] big-endian → empty value (replaced by [`SEGMENT_RANGES`] and
    /// [`SEGMENT_MOVED`] by the migration to schema 5, then dropped).
    pub(super) const V4_EVENT_SEGMENTS: &str = "event_segments";
    /// Dedupe windows: the first 16 bytes of the SHA-256 of the event key
    /// (`integration/platform-event-id`) → `(until_ms, event id)`, kept until `until_ms`.
    pub const DEDUPE: &str = "dedupe_keys";
    /// How many jobs (in [`OUTBOX`] or [`DEAD`]) reference a stored delivery:
    /// [`super::EventId`] big-endian → `u64` (> 0; absent means none). Lets retention decide
    /// atomically.
    pub const INBOX_REFS: &str = "inbox_refs";
    /// Schema 1's deliveries, keyed by event key (moved into [`V3_INBOX`] by the migration).
    pub(super) const V1_EVENTS: &str = "events";
    /// Schema 1's reference counts, keyed by event key.
    pub(super) const V1_EVENT_REFS: &str = "event_refs";
    /// Schemas 2 and 3's deliveries: dedupe window end big-endian ‖ sequence big-endian →
    /// event (moved into [`EVENTS`] and the segments by the migration to schema 4).
    pub(super) const V3_INBOX: &str = "inbox";
    /// Schemas 1 to 3's dedupe window: event key → `u64` expiry (moved into [`DEDUPE`]).
    pub(super) const V3_DEDUPE: &str = "dedupe";
    /// During the migration to schema 4 only: old inbox key → new event id.
    pub(super) const V4_MOVED: &str = "migrate_v4_moved";
    /// Pending jobs: job id (`u64` big-endian) → [`super::Job`].
    pub const OUTBOX: &str = "outbox";
    /// Index of [`OUTBOX`] by readiness: `ready_ms` big-endian ‖ job id big-endian → empty
    /// value. `ready_ms` is the job's `due_ms`, or the end of its lease while it is leased.
    pub const DUE: &str = "due";
    /// Dead-lettered jobs: job id (`u64` big-endian) → [`super::DeadJob`].
    pub const DEAD: &str = "dead";
    /// Audit log: `at_ms` big-endian ‖ sequence big-endian → [`super::AuditRecord`].
    pub const AUDIT: &str = "audit";
    /// Webhook registrations: integration id → [`super::RegistrationRecord`].
    pub const REGISTRATIONS: &str = "registrations";
    /// Integration health: integration id → [`super::HealthRecord`].
    pub const HEALTH: &str = "health";
    /// Per-minute rollups: minute (`at_ms / 60,000`, `u64` big-endian) ‖ integration id →
    /// [`super::RollupCounts`].
    pub const ROLLUPS: &str = "rollups";
    /// The history index (`history.rs`): each delivery's jobs and outcome, deliveries by
    /// integration, event name, rule and outcome, audit records by delivery, refusals by time.
    pub const HISTORY: &str = "history";
}

/// Keys in the `meta` tree.
mod meta_keys {
    /// `u32`: the schema version (always codec format 1, see [`super::codec`]).
    pub(super) const SCHEMA_VERSION: &str = "schema_version";
    /// `String`: the git revision last applied.
    pub(super) const APPLIED_REVISION: &str = "applied_revision";
    /// `u64`: audit records removed by retention (age and size bounds), ever.
    pub(super) const AUDIT_RECORDS_REMOVED: &str = "retention_removed_audit_records";
    /// `u64`: added to every id [`super::Store::next_id`] hands out. Absent (0) in a state
    /// created in place; a restored state ([`super::backup`]) starts above every id of the
    /// state it was backed up from, since sled's id generator starts again from 0.
    pub(super) const ID_BASE: &str = "id_base";
    /// [`super::RetentionTotals`]: what retention removed since the state was created.
    pub(super) const RETENTION: &str = "retention";
    /// `u64`: how far the build of the history index got (the next delivery id to index);
    /// `u64::MAX` once built (or for a state created with it). Absent: not built.
    pub(super) const HISTORY_INDEX: &str = "history_index";
}

/// Everything that can go wrong with the state store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The state directory could not be created or inspected.
    #[error("cannot create state directory {}", dir.display())]
    CreateDir {
        /// The state directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The ingest journal could not be read or written.
    #[error("ingest journal {}: {source}", path.display())]
    Journal {
        /// The journal file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A payload segment file could not be read or written.
    #[error("payload segment {}: {source}", path.display())]
    Segment {
        /// The segment file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the database lock.
    #[error(
        "state at {} is in use by another supportopsd process (a running daemon?)",
        dir.display()
    )]
    Locked {
        /// The state directory.
        dir: PathBuf,
    },
    /// sled could not be opened again after writing its snapshot
    /// ([`Store::refresh_snapshot`]): nothing written is lost; the process must open the state
    /// again (restart it).
    #[error(
        "state at {}: the database could not be opened again after writing its snapshot: restart supportopsd",
        dir.display()
    )]
    Closed {
        /// The state directory.
        dir: PathBuf,
    },
    /// The backend stopped on its own files while opening them instead of returning an error
    /// (sled 0.34 panics on some states it cannot read: see `open_sled`).
    #[error(
        "state at {}: the database could not be read (sled failed on its files: {detail}); restore a backup (`supportopsd state restore FILE --state DIR`) into a new directory",
        dir.display()
    )]
    Unreadable {
        /// The state directory.
        dir: PathBuf,
        /// What the backend said.
        detail: String,
    },
    /// The database was written by a newer schema.
    #[error(
        "state at {} was written by schema version {found}, this build understands up to {supported}: upgrade supportopsd",
        dir.display()
    )]
    NewerSchema {
        /// The state directory.
        dir: PathBuf,
        /// The version found.
        found: u32,
        /// [`SCHEMA_VERSION`].
        supported: u32,
    },
    /// The storage backend failed.
    #[error("state at {}: storage error", dir.display())]
    Storage {
        /// The state directory.
        dir: PathBuf,
        /// The backend's error.
        #[source]
        source: BackendError,
    },
    /// A stored value or key could not be decoded.
    #[error("corrupt state in tree {tree} at key {key:?}: {detail}")]
    Corrupt {
        /// The tree.
        tree: &'static str,
        /// The key (lossily decoded if it is not UTF-8).
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// A value could not be encoded.
    #[error("cannot encode state value for tree {tree} at key {key:?}")]
    Encode {
        /// The tree.
        tree: &'static str,
        /// The key.
        key: String,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// An apply batch is inconsistent (a caller bug).
    #[error("invalid apply batch: {detail}")]
    InvalidBatch {
        /// What is wrong.
        detail: String,
    },
    /// No job with this id is in the outbox (already acknowledged or dead-lettered?).
    #[error("no job {id} in the outbox")]
    NoSuchJob {
        /// The job id.
        id: u64,
    },
    /// No delivery with this id is stored (unknown, or removed by retention).
    #[error("no stored event {id}")]
    NoSuchEvent {
        /// The delivery's id.
        id: EventId,
    },
    /// No job with this id is in the dead-letter tree.
    #[error("no dead-lettered job {id}")]
    NoSuchDeadJob {
        /// The job id.
        id: u64,
    },
    /// A step was completed that is not the job's next step (a stale executor whose lease
    /// expired and whose job another executor has advanced since).
    #[error("job {id} is at step {current}, not at step {given}")]
    StepMismatch {
        /// The job id.
        id: u64,
        /// The job's next step as stored.
        current: usize,
        /// The step the caller completed.
        given: usize,
    },
}

/// An error of the storage backend, kept opaque so that the backend can be swapped.
#[derive(Debug)]
pub struct BackendError(sled::Error);

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for BackendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.0)
    }
}

/// The open state database. Holds the directory's exclusive lock until dropped.
pub struct Store {
    dir: PathBuf,
    /// The open database; empty only while [`Store::refresh_snapshot`] reopens it.
    trees: arc_swap::ArcSwapOption<Trees>,
    /// Set while [`Store::refresh_snapshot`] waits for the trees' users to finish: calls that
    /// hold no [`TreesRef`] wait for it ([`Store::t`]).
    draining: std::sync::atomic::AtomicBool,
    /// Wakes the calls waiting for a refresh to end.
    refreshed: (std::sync::Mutex<()>, std::sync::Condvar),
    /// Deliveries stored since sled last wrote its snapshot (see [`Store::refresh_snapshot`]).
    since_snapshot: std::sync::atomic::AtomicU64,
    /// When sled last wrote its snapshot (at open, or the last refresh).
    snapshot_at: std::sync::Mutex<tokio::time::Instant>,
    /// What the audit log's size check counted (`audit.rs`).
    audit_tally: std::sync::Mutex<Option<audit::AuditTally>>,
    /// Jobs in the outbox, counted at open and kept up to date by every transition (sled's
    /// `len` scans the tree, and ingress asks on every delivery).
    depth: std::sync::atomic::AtomicUsize,
    /// The block of ids [`Store::next_id`] hands out: `next..end`.
    ids: std::sync::Mutex<(u64, u64)>,
    /// Added to every id block (`meta/id_base`, see [`meta_keys::ID_BASE`]).
    id_base: u64,
    /// The dedupe windows by key, in memory (see `inbox.rs`); held while ingests commit.
    /// Loaded on a thread of its own after open (shared with it).
    dedupe_index: std::sync::Arc<std::sync::Mutex<inbox::DedupeIndex>>,
    /// Tells that thread to give up (the store is being dropped).
    dedupe_loader_stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The payload segment files (`events/`).
    segments: segments::Segments,
    /// Shared while payloads are appended until their records commit, exclusive while
    /// retention deletes segment files (`payloads.rs`).
    payloads: std::sync::RwLock<()>,
    /// Taken shared by every method that writes ([`Store::writing`]) and exclusively by a
    /// consistent snapshot ([`Store::quiesce`]), so a snapshot sees no transaction half-way.
    writes: std::sync::RwLock<()>,
    /// Snapshots in progress ([`Store::hold_retention`]): retention deletes no payload file
    /// while one runs, so a snapshot can copy files after it released [`Store::quiesce`].
    retention_holds: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// While alive, retention deletes no payload file ([`Store::hold_retention`]).
#[derive(Debug)]
pub struct RetentionHold(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl Drop for RetentionHold {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Ids per block taken from sled's id generator: block `b` is `b * ID_BLOCK ..
/// (b + 1) * ID_BLOCK`. sled's generator takes its global transaction lock, so calling it for
/// every id made request threads wait for the ingest writer's transaction.
const ID_BLOCK: u64 = 1 << 12;

impl Drop for Store {
    fn drop(&mut self) {
        self.dedupe_loader_stop
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// How often, and how far apart, opening a locked state is retried.
const LOCK_RETRIES: u32 = 10;
const LOCK_RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(100);

impl Store {
    /// Opens the state under `dir`, creating the directory and the database if needed, and
    /// writing [`SCHEMA_VERSION`] on first open.
    ///
    /// Errors: [`Error::Locked`] if another process has it open, [`Error::NewerSchema`] if a
    /// newer supportopsd wrote it.
    pub fn open(dir: &Path) -> Result<Store, Error> {
        perms::create_dir(dir).map_err(|source| Error::CreateDir {
            dir: dir.to_owned(),
            source,
        })?;
        Self::open_db(dir)
    }

    /// Makes every file of the state 0600 and every folder 0700 again: sled writes new files
    /// (snapshots, blobs) with the process umask (the daemon calls this on housekeeping).
    /// Returns how many could not be tightened (each logged).
    pub fn secure_files(&self) -> usize {
        perms::secure_files(&self.dir)
    }

    /// Opens the state under `dir` if a database exists there; `Ok(None)` otherwise, without
    /// creating the directory or any file.
    pub fn open_existing(dir: &Path) -> Result<Option<Store>, Error> {
        // sled 0.34 always writes `conf` and `db` in its directory.
        if !(dir.join("conf").is_file() || dir.join("db").is_file()) {
            return Ok(None);
        }
        Self::open_db(dir).map(Some)
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens the database and its trees and checks (or writes) the schema version.
    fn open_db(dir: &Path) -> Result<Store, Error> {
        Self::open_db_with(dir, true)
    }

    /// A store opened without migrating an older schema (for tests of the migrations).
    #[cfg(test)]
    pub(super) fn open_db_unmigrated(dir: &Path) -> Store {
        Self::open_db_with(dir, false).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Store::open_db`], migrating an older schema if `migrate`.
    fn open_db_with(dir: &Path, migrate: bool) -> Result<Store, Error> {
        let trees = Trees::open(dir, LOCK_RETRIES)?;
        let segments = segments::Segments::open(dir)?;
        let mut store = Store {
            dir: dir.to_owned(),
            trees: arc_swap::ArcSwapOption::from_pointee(trees),
            draining: std::sync::atomic::AtomicBool::new(false),
            refreshed: (std::sync::Mutex::new(()), std::sync::Condvar::new()),
            since_snapshot: std::sync::atomic::AtomicU64::new(0),
            snapshot_at: std::sync::Mutex::new(tokio::time::Instant::now()),
            audit_tally: std::sync::Mutex::new(None),
            depth: std::sync::atomic::AtomicUsize::new(0),
            ids: std::sync::Mutex::new((0, 0)),
            id_base: 0,
            dedupe_index: std::sync::Arc::default(),
            dedupe_loader_stop: std::sync::Arc::default(),
            segments,
            payloads: std::sync::RwLock::new(()),
            writes: std::sync::RwLock::new(()),
            retention_holds: std::sync::Arc::default(),
        };
        let t = store.t()?;
        match store.read_schema_version()? {
            None => {
                store.put(
                    &t.meta,
                    trees::META,
                    meta_keys::SCHEMA_VERSION,
                    &SCHEMA_VERSION,
                )?;
                store.put(&t.meta, trees::META, meta_keys::HISTORY_INDEX, &u64::MAX)?;
                store.flush()?;
            }
            Some(found) if found > SCHEMA_VERSION => {
                return Err(Error::NewerSchema {
                    dir: dir.to_owned(),
                    found,
                    supported: SCHEMA_VERSION,
                });
            }
            Some(found) if migrate => {
                store.migrate(found)?;
                store.build_history_index()?;
            }
            Some(_) => {}
        }
        let id_base = store
            .get(&t.meta, trees::META, meta_keys::ID_BASE)?
            .unwrap_or(0);
        // The queue's depth: the `due` index has exactly one small key per job in the outbox,
        // so counting it reads a fraction of the pages counting the outbox would (cold, half
        // the time at 90,000 jobs).
        let depth = t.due.len();
        drop(t);
        store.id_base = id_base;
        store
            .depth
            .store(depth, std::sync::atomic::Ordering::Relaxed);
        store.load_dedupe_index()?;
        Ok(store)
    }

    /// Loads the in-memory dedupe index on a thread of its own (inline if no thread can be
    /// started): opening does not wait for it; until it is loaded, ingests read the tree. The
    /// thread holds the trees, so a [`Store::refresh_snapshot`] meanwhile waits for it (and
    /// gives up if that takes too long).
    fn load_dedupe_index(&self) -> Result<(), Error> {
        let trees = self.shared_trees()?;
        let index = self.dedupe_index.clone();
        let stop = self.dedupe_loader_stop.clone();
        let spawned = std::thread::Builder::new()
            .name("dedupe-index".into())
            .spawn(move || inbox::load_dedupe_index(&trees.dedupe, &index, &stop));
        if spawned.is_err() {
            let t = self.t()?;
            inbox::load_dedupe_index(&t.dedupe, &self.dedupe_index, &self.dedupe_loader_stop);
        }
        Ok(())
    }

    /// Brings a database of an older schema `from` up to [`SCHEMA_VERSION`]. Version 0 was
    /// never written, so it means corruption.
    fn migrate(&self, from: u32) -> Result<(), Error> {
        if (1..4).contains(&from) {
            // Schemas before 4 had no history index: it is built after the migration (a
            // schema 4 state keeps its own).
            self.reset_history_index()?;
        }
        match from {
            SCHEMA_VERSION => self.drop_legacy_trees(),
            1 => {
                self.migrate_v1_inbox()?;
                self.migrate_v2_applied()?;
                self.migrate_v3_layout()?;
                self.migrate_v4_segments()
            }
            2 => {
                self.migrate_v2_applied()?;
                self.migrate_v3_layout()?;
                self.migrate_v4_segments()
            }
            3 => {
                self.migrate_v3_layout()?;
                self.migrate_v4_segments()
            }
            4 => self.migrate_v4_segments(),
            other => Err(Error::Corrupt {
                tree: trees::META,
                key: meta_keys::SCHEMA_VERSION.to_owned(),
                detail: format!("schema version {other} was never written by supportopsd"),
            }),
        }
    }

    /// The schema version stored in `meta`, if any.
    fn read_schema_version(&self) -> Result<Option<u32>, Error> {
        let t = self.t()?;
        self.get(&t.meta, trees::META, meta_keys::SCHEMA_VERSION)
    }

    /// The schema version of this database (after [`Store::open`], always [`SCHEMA_VERSION`]).
    pub fn schema_version(&self) -> Result<u32, Error> {
        self.read_schema_version()?.ok_or_else(|| Error::Corrupt {
            tree: trees::META,
            key: meta_keys::SCHEMA_VERSION.to_owned(),
            detail: "missing".to_owned(),
        })
    }

    /// The git revision last applied, if any.
    pub fn applied_revision(&self) -> Result<Option<String>, Error> {
        let t = self.t()?;
        self.get(&t.meta, trees::META, meta_keys::APPLIED_REVISION)
    }

    /// Sets the applied revision on its own. Prefer [`Store::record_applied_set`], which also
    /// records the applied resources atomically. Flushes before returning.
    pub fn set_applied_revision(&self, revision: &str) -> Result<(), Error> {
        let t = self.t()?;
        let _writing = self.writing();
        self.put(&t.meta, trees::META, meta_keys::APPLIED_REVISION, &revision)?;
        self.flush()
    }

    /// Writes everything to disk, blocking the calling thread until it is durable.
    pub fn flush(&self) -> Result<(), Error> {
        let t = self.t()?;
        self.sync_payloads()?;
        t.db.flush()
            .map(|_| ())
            .map_err(|e| storage_error(&self.dir, e))
    }

    /// Writes everything to disk without blocking a runtime thread: completes when every write
    /// made before the call is durable. Concurrent callers share flushes ("group commit").
    pub async fn flush_async(&self) -> Result<(), Error> {
        // Held across the await, where this thread may run other calls: not counted as held.
        let t = self.shared_trees()?;
        // An fdatasync of the open segment when anything was appended since the last one (the
        // payloads must be on disk before the records that point at them).
        self.sync_payloads()?;
        t.db.flush_async()
            .await
            .map(|_| ())
            .map_err(|e| storage_error(&self.dir, e))
    }

    /// Held by a method that writes, for as long as it writes. Take it once, at the public
    /// method's entry, never again further down the same call (a nested shared lock can wait
    /// forever behind a waiting [`Store::quiesce`]).
    pub(super) fn writing(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.writes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until no write is in progress and holds off new ones while the guard lives: what a
    /// consistent snapshot of every tree needs.
    pub(super) fn quiesce(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.writes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Holds off the deletion of payload files until the hold is dropped.
    pub fn hold_retention(&self) -> RetentionHold {
        self.retention_holds
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        RetentionHold(self.retention_holds.clone())
    }

    /// Whether a [`RetentionHold`] is alive (retention then deletes no payload file).
    pub(super) fn retention_held(&self) -> bool {
        self.retention_holds
            .load(std::sync::atomic::Ordering::SeqCst)
            > 0
    }

    /// The trees, for one call. Waits while a [`Store::refresh_snapshot`] drains or reopens
    /// them, unless this thread already holds them (a method calling another), which the
    /// refresh waits for instead. [`Error::Closed`] if a refresh could not open sled again.
    pub(super) fn t(&self) -> Result<TreesRef, Error> {
        use std::sync::atomic::Ordering::SeqCst;
        let nested = HELD.with(|h| h.get()) > 0;
        loop {
            if nested || !self.draining.load(SeqCst) {
                if let Some(trees) = self.trees.load_full() {
                    HELD.with(|h| h.set(h.get() + 1));
                    return Ok(TreesRef {
                        trees,
                        _not_send: std::marker::PhantomData,
                    });
                }
                if !self.draining.load(SeqCst) {
                    return Err(Error::Closed {
                        dir: self.dir.clone(),
                    });
                }
            }
            let (lock, wake) = &self.refreshed;
            let guard = lock
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if self.draining.load(SeqCst) {
                // Woken when the refresh ends; the timeout only guards against a lost wake-up.
                let _ = wake.wait_timeout(guard, std::time::Duration::from_millis(50));
            }
        }
    }

    /// The trees for a holder that outlives one call on this thread (the dedupe index loader,
    /// a flush awaited on a runtime): not counted as held by the thread, so it must make no
    /// nested call; a refresh waits for it like for any call in progress.
    pub(super) fn shared_trees(&self) -> Result<std::sync::Arc<Trees>, Error> {
        let t = self.t()?;
        Ok(t.trees.clone())
    }

    /// Counts `n` deliveries stored towards the next [`Store::snapshot_due`].
    fn count_stored(&self, n: usize) {
        self.since_snapshot
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether sled's snapshot should be written again ([`Store::refresh_snapshot`]). While
    /// running: [`SNAPSHOT_AFTER_DELIVERIES`] deliveries stored since the open or the last
    /// refresh, or any stored and [`SNAPSHOT_AFTER`] passed. At a clean stop: any stored.
    pub fn snapshot_due(&self, when: Upkeep) -> bool {
        let stored = self
            .since_snapshot
            .load(std::sync::atomic::Ordering::Relaxed);
        let age = self
            .snapshot_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed();
        snapshot_due(when, stored, age)
    }

    /// Writes sled's snapshot by closing the database and opening it again.
    ///
    /// sled 0.34 writes its snapshot (where each page is in its log) only when it opens: its
    /// `snapshot_after_ops` setting is ignored and nothing else calls its snapshot code. An open
    /// reads every log record written since that snapshot, so without this the start after a
    /// long run reads back everything written since the last start (5–9 s after 1,000,000
    /// deliveries, growing with the history). Done every [`SNAPSHOT_AFTER_DELIVERIES`] while
    /// running, an open after a crash reads at most about that many deliveries' log; done at a
    /// clean stop, it reads none.
    ///
    /// New calls wait while it runs; calls in progress are waited for, at most
    /// [`DRAIN_TIMEOUT`], after which nothing has changed and it returns [`Refreshed::Busy`].
    /// The payload segments are synced and sled flushed before it is closed, so nothing
    /// written is lost whatever happens next. If sled cannot be opened again (for 4 s), every
    /// later call fails with [`Error::Closed`] until the process opens the state again (the
    /// daemon answers webhooks 503 meanwhile and logs that it must be restarted). Returns
    /// [`Refreshed::Busy`] when the calling thread holds the trees itself.
    pub fn refresh_snapshot(&self) -> Result<Refreshed, Error> {
        use std::sync::atomic::Ordering::{Relaxed, SeqCst};
        if HELD.with(|h| h.get()) > 0 {
            return Ok(Refreshed::Busy);
        }
        let began = tokio::time::Instant::now();
        self.draining.store(true, SeqCst);
        // Ends the drain however this returns, a panic included: calls never wait for ever.
        let _drain = Drain(self);
        // Counted in steps of 1 ms rather than timed, so that a paused test clock cannot hold
        // the drain open for ever.
        let mut waited = std::time::Duration::ZERO;
        let trees = loop {
            if let Some(current) = self.trees.load_full() {
                // Ours and the store's own: nobody else holds the trees, and nobody new takes
                // them while draining (a call that had just looked may still: then it is put
                // back and waited for).
                if std::sync::Arc::strong_count(&current) == 2 {
                    drop(current);
                    match self.trees.swap(None).map(std::sync::Arc::try_unwrap) {
                        Some(Ok(trees)) => break trees,
                        Some(Err(back)) => self.trees.store(Some(back)),
                        None => {}
                    }
                }
            }
            if waited >= DRAIN_TIMEOUT {
                return Ok(Refreshed::Busy);
            }
            #[allow(clippy::disallowed_methods)] // never on a runtime thread (see the doc)
            std::thread::sleep(std::time::Duration::from_millis(1));
            waited += std::time::Duration::from_millis(1);
        };
        // The payloads before the records that point at them, then sled, then close it.
        let flushed = self.sync_payloads().and_then(|()| {
            trees
                .db
                .flush()
                .map(|_| ())
                .map_err(|e| storage_error(&self.dir, e))
        });
        if let Err(e) = flushed {
            self.trees.store(Some(std::sync::Arc::new(trees)));
            return Err(e);
        }
        drop(trees);
        // Closing releases sled's lock from its own threads, a moment later: wait for it
        // longer than a plain open does (4 s).
        let trees = Trees::open(&self.dir, 4 * LOCK_RETRIES)?;
        self.trees.store(Some(std::sync::Arc::new(trees)));
        self.since_snapshot.store(0, Relaxed);
        *self
            .snapshot_at
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = tokio::time::Instant::now();
        Ok(Refreshed::Done(began.elapsed()))
    }

    /// Ends a drain and wakes the calls that waited for it ([`Drain`]'s drop).
    fn end_drain(&self) {
        let (lock, wake) = &self.refreshed;
        let _guard = lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.draining
            .store(false, std::sync::atomic::Ordering::SeqCst);
        wake.notify_all();
    }

    /// Maps a sled error to [`Error::Storage`] for this store.
    fn storage(&self, e: sled::Error) -> Error {
        storage_error(&self.dir, e)
    }

    /// A fresh id, unique within this database (ids are never reused, with gaps).
    ///
    /// Ids are unique for the life of the database and increase: each block comes from sled's
    /// generator (unique and increasing across restarts), and a block's ids are all above any
    /// id that generator handed out directly (as schema 1 did) before.
    fn next_id(&self) -> Result<u64, Error> {
        let t = self.t()?;
        let mut ids = self
            .ids
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if ids.0 == ids.1 {
            let block =
                t.db.generate_id()
                    .map_err(|e| storage_error(&self.dir, e))?;
            let start = self
                .id_base
                .saturating_add(block.saturating_add(1).saturating_mul(ID_BLOCK));
            *ids = (start, start.saturating_add(ID_BLOCK));
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Maps the result of a transaction whose closure aborts with an [`Error`].
    fn tx_result<T>(&self, result: Result<T, TransactionError<Error>>) -> Result<T, Error> {
        match result {
            Ok(value) => Ok(value),
            Err(TransactionError::Abort(e)) => Err(e),
            Err(TransactionError::Storage(e)) => Err(storage_error(&self.dir, e)),
        }
    }

    /// Reads and decodes one value.
    fn get<T: serde::de::DeserializeOwned>(
        &self,
        tree: &sled::Tree,
        tree_name: &'static str,
        key: &str,
    ) -> Result<Option<T>, Error> {
        match tree.get(key.as_bytes()) {
            Ok(Some(bytes)) => codec::decode(tree_name, key.as_bytes(), &bytes).map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(storage_error(&self.dir, e)),
        }
    }

    /// Encodes and writes one value.
    fn put<T: serde::Serialize>(
        &self,
        tree: &sled::Tree,
        tree_name: &'static str,
        key: &str,
        value: &T,
    ) -> Result<(), Error> {
        let bytes = codec::encode(tree_name, key, value)?;
        tree.insert(key.as_bytes(), bytes)
            .map(|_| ())
            .map_err(|e| storage_error(&self.dir, e))
    }
}

/// The open sled database and its trees. [`Store::refresh_snapshot`] replaces it whole.
pub(super) struct Trees {
    db: sled::Db,
    meta: sled::Tree,
    applied: sled::Tree,
    events: sled::Tree,
    segment_ranges: sled::Tree,
    segment_moved: sled::Tree,
    dedupe: sled::Tree,
    inbox_refs: sled::Tree,
    outbox: sled::Tree,
    due: sled::Tree,
    dead: sled::Tree,
    audit: sled::Tree,
    registrations: sled::Tree,
    health: sled::Tree,
    rollups: sled::Tree,
    history: sled::Tree,
}

/// A drain in progress ([`Store::refresh_snapshot`]), ended when dropped.
struct Drain<'a>(&'a Store);

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        self.0.end_drain();
    }
}

impl Trees {
    /// Opens the database under `dir` and its trees. sled writes its snapshot here (and only
    /// here: see [`Store::refresh_snapshot`]), after reading its log since the last one.
    /// sled releases its file lock asynchronously when the last handle is dropped, so a store
    /// closed a moment ago (in this process, or by a process that is just exiting) can still
    /// look locked: an open tries again `retries` times, 100 ms apart, before saying so.
    fn open(dir: &Path, retries: u32) -> Result<Trees, Error> {
        let mut attempts = 0;
        let db = loop {
            match open_sled(dir) {
                Err(Error::Locked { .. }) if attempts < retries => {
                    attempts += 1;
                    #[allow(clippy::disallowed_methods)]
                    // synchronous open, never on a runtime thread
                    std::thread::sleep(LOCK_RETRY_DELAY);
                }
                other => break other?,
            }
        };
        // sled made its files with the umask.
        backup::remove_spools(dir);
        perms::secure_dir(dir);
        perms::secure_files(dir);
        let storage = |e| storage_error(dir, e);
        Ok(Trees {
            meta: db.open_tree(trees::META).map_err(storage)?,
            applied: db.open_tree(trees::APPLIED).map_err(storage)?,
            events: db.open_tree(trees::EVENTS).map_err(storage)?,
            segment_ranges: db.open_tree(trees::SEGMENT_RANGES).map_err(storage)?,
            segment_moved: db.open_tree(trees::SEGMENT_MOVED).map_err(storage)?,
            dedupe: db.open_tree(trees::DEDUPE).map_err(storage)?,
            inbox_refs: db.open_tree(trees::INBOX_REFS).map_err(storage)?,
            outbox: db.open_tree(trees::OUTBOX).map_err(storage)?,
            due: db.open_tree(trees::DUE).map_err(storage)?,
            dead: db.open_tree(trees::DEAD).map_err(storage)?,
            audit: db.open_tree(trees::AUDIT).map_err(storage)?,
            registrations: db.open_tree(trees::REGISTRATIONS).map_err(storage)?,
            health: db.open_tree(trees::HEALTH).map_err(storage)?,
            rollups: db.open_tree(trees::ROLLUPS).map_err(storage)?,
            history: db.open_tree(trees::HISTORY).map_err(storage)?,
            db,
        })
    }
}

thread_local! {
    /// How many [`TreesRef`]s this thread holds: a call made while one is held (a method calling
    /// another) must not wait for a refresh that waits for it.
    static HELD: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    /// When this thread last handed its deferred frees over ([`release_garbage`]).
    static RELEASED_AT: std::cell::Cell<Option<tokio::time::Instant>> =
        const { std::cell::Cell::new(None) };
}

/// How often, at most, a thread that calls into the state hands sled's deferred frees over.
const RELEASE_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Hands this thread's deferred frees over, at most every [`RELEASE_EVERY`] (at the end of
/// each outermost call, [`TreesRef`]'s drop).
///
/// sled 0.34 frees what it replaces through crossbeam-epoch: the old versions of its nodes,
/// and each of its 512 KB log buffers once the next one is in use. A free is queued on the
/// thread that made it, in a bag of 64, and handed to the global queue (where it runs once the
/// epoch has moved on and a collection comes round) only when that bag is full. In the soak
/// (`benches/soak.rs`, 100 deliveries a second) the heap rose by 30 MB over five minutes and
/// fell back, again and again, and at its peak 34 MB of it was retired log buffers waiting to
/// be freed (heaptrack; docs/benchmarks.md). Handing the bag over and collecting what is due
/// ([`crossbeam_epoch::Guard::flush`]) took the saw-tooth away: what waits is what a thread
/// retired in the last [`RELEASE_EVERY`] plus the epoch's lag. What a thread retired in its
/// last call before it went idle waits for its next call (or its exit), at most one bag, as
/// before.
fn release_garbage() {
    let now = tokio::time::Instant::now();
    let due = RELEASED_AT.with(|at| match at.get() {
        Some(last) if now.saturating_duration_since(last) < RELEASE_EVERY => false,
        _ => {
            at.set(Some(now));
            true
        }
    });
    if due {
        crossbeam_epoch::pin().flush();
    }
}

/// The trees, held for one call ([`Store::t`]). Not `Send`: it counts what this thread holds.
pub(super) struct TreesRef {
    trees: std::sync::Arc<Trees>,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl std::ops::Deref for TreesRef {
    type Target = Trees;
    fn deref(&self) -> &Trees {
        &self.trees
    }
}

impl Drop for TreesRef {
    fn drop(&mut self) {
        let held = HELD.with(|h| {
            let held = h.get().saturating_sub(1);
            h.set(held);
            held
        });
        if held == 0 {
            release_garbage();
        }
    }
}

/// Deliveries stored after which [`Store::snapshot_due`] says sled's snapshot should be written
/// again while running. What an open reads of sled's log grows with the deliveries written since
/// the last snapshot (their records, jobs, audit and index entries, and later transitions):
/// 100,000 of them took a cold open of 1,000,000 deliveries to 2.7 s, 25,000 to 1.2 s
/// (docs/benchmarks.md); each refresh makes calls wait about half a second at that size, so
/// this is a trade between the two.
pub const SNAPSHOT_AFTER_DELIVERIES: u64 = 25_000;
/// The longest time between two snapshots while anything is written.
pub const SNAPSHOT_AFTER: std::time::Duration = std::time::Duration::from_secs(6 * 60 * 60);
/// [`Store::snapshot_due`] of `stored` deliveries since a snapshot `age` old.
fn snapshot_due(when: Upkeep, stored: u64, age: std::time::Duration) -> bool {
    match when {
        Upkeep::Stop => stored > 0,
        Upkeep::Running => {
            stored >= SNAPSHOT_AFTER_DELIVERIES || (stored > 0 && age >= SNAPSHOT_AFTER)
        }
    }
}

/// How long [`Store::refresh_snapshot`] waits for calls in progress before it gives up.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// What [`Store::refresh_snapshot`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// sled was closed and opened again, writing its snapshot, in this long (calls waited).
    Done(std::time::Duration),
    /// Calls in progress did not finish within the drain timeout: nothing changed; try later.
    Busy,
}

/// How the database is opened (by [`Store::open`], and by a restore writing a fresh one).
fn sled_config(dir: &Path) -> sled::Config {
    sled::Config::new()
        .path(dir)
        // Durability comes from explicit flushes (and the daemon's ingest journal), not from a
        // background timer competing with the writers.
        .flush_every_ms(None)
        // sled's page cache defaults to 1 GiB; a support queue needs far less.
        .cache_capacity(64 * 1024 * 1024)
}

/// Opens sled under `dir`, once. sled 0.34 panics instead of returning an error on some
/// states it cannot read ("tried to serialize Uninitialized" while it rebuilds its snapshot:
/// seen here once, in the reopen at a daemon's stop in the ingest benchmark, whose clean-up
/// was then removing the state directory; reported upstream on damaged databases). The
/// panic is caught and returned as [`Error::Unreadable`]: a process meeting such a state says
/// so and what to do, and a [`Store::refresh_snapshot`] meeting one ends (every later call
/// then fails with [`Error::Closed`]) instead of leaving the calls it drained waiting for ever.
fn open_sled(dir: &Path) -> Result<sled::Db, Error> {
    let opened = std::panic::catch_unwind(|| {
        #[cfg(test)]
        if tests_snapshot::OPEN_PANICS.with(std::cell::Cell::get) {
            panic!("injected by a test: sled failed on its files");
        }
        sled_config(dir).open()
    });
    match opened {
        Ok(result) => result.map_err(|e| open_error(dir, e)),
        Err(panic) => Err(Error::Unreadable {
            dir: dir.to_owned(),
            detail: panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_owned()),
        }),
    }
}

/// Aborts a transaction with `e`.
fn abort(e: Error) -> ConflictableTransactionError<Error> {
    ConflictableTransactionError::Abort(e)
}

/// Maps a sled error to [`Error::Storage`].
fn storage_error(dir: &Path, e: sled::Error) -> Error {
    Error::Storage {
        dir: dir.to_owned(),
        source: BackendError(e),
    }
}

/// Maps an error from opening the database, recognising sled's lock failure.
fn open_error(dir: &Path, e: sled::Error) -> Error {
    if let sled::Error::Io(io) = &e {
        // sled 0.34 wraps the failed `try_lock_exclusive` in an `Other` error with this text.
        if io.kind() == std::io::ErrorKind::WouldBlock
            || io.to_string().contains("could not acquire lock")
        {
            return Error::Locked {
                dir: dir.to_owned(),
            };
        }
    }
    storage_error(dir, e)
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_history;
#[cfg(test)]
mod tests_model;
#[cfg(test)]
mod tests_queue;
#[cfg(test)]
mod tests_retention;
#[cfg(test)]
mod tests_snapshot;
