//! The ingest writer: the one thread that makes accepted deliveries durable, with its journal
//! sync thread and its checkpoint thread (docs/ingest-performance.md has the whole path).
//!
//! A delivery is answered once its journal record is `fdatasync`ed (group commit: one sync for
//! every delivery that arrived meanwhile) and the state has decided whether it is new
//! ([`Store::decide_ingests`], in memory). Writing new deliveries to sled
//! ([`Store::apply_ingests`]) costs about as much per transaction as per delivery, so under
//! load the writer gathers them into one transaction every [`APPLY_EVERY`] instead of one per
//! sync; when deliveries come one at a time, each is written before it is answered, as before.
//! Until written, a delivery is durable in the journal (replayed on start), deduplicated by its
//! in-memory reservation, and its jobs wait: the executor is woken once they are in sled.
//! Operator reads that must see every answered delivery call [`Writer::settle`] first.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::state::IngestOutcome;
use crate::state::Store;
use crate::state::journal::{Journal, PreparedIngest};

/// Most deliveries the writer takes into one batch (one journal sync).
const INGEST_BATCH: usize = 1024;
/// Under load, how long answered deliveries may wait before they are written to sled.
const APPLY_EVERY: Duration = Duration::from_millis(2);
/// Most answered deliveries waiting to be written to sled.
const APPLY_MAX: usize = 1024;
/// How long the writer waits before trying again to write to sled after a failure.
const APPLY_RETRY: Duration = Duration::from_millis(250);
/// How often the journal is folded into sled.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// Journal size that forces a checkpoint.
const CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;

type Reply<T> = oneshot::Sender<Result<T, String>>;

/// What the writer is asked to do.
enum Request {
    /// Store a prepared delivery (and its framed journal record).
    Ingest(Box<(PreparedIngest, Vec<u8>)>, Reply<IngestOutcome>),
    /// Answer once every delivery answered so far is written to sled.
    Settle(Reply<()>),
}

/// The handle on the ingest writer's threads; they stop once it is dropped.
#[derive(Debug)]
pub(super) struct Writer {
    requests: SyncSender<Request>,
}

const STOPPED: &str = "the ingest writer has stopped";

impl Writer {
    /// Starts the writer, its journal sync thread and its checkpoint thread. `work` is woken
    /// whenever jobs reach sled.
    pub(super) fn spawn(
        store: Arc<Store>,
        journal: Journal,
        work: Arc<Notify>,
    ) -> std::io::Result<Writer> {
        let journal = Arc::new(journal);
        let (files, files_rx) = std::sync::mpsc::channel();
        let busy = Arc::new(AtomicBool::new(false));
        let checkpoint = Checkpoint {
            files,
            busy: busy.clone(),
        };
        let (checkpoint_store, checkpoint_journal) = (store.clone(), journal.clone());
        std::thread::Builder::new()
            .name("ingest-checkpoint".into())
            .spawn(move || checkpointer(checkpoint_store, checkpoint_journal, files_rx, busy))?;
        let sync = JournalSync::spawn(journal.clone())?;
        let (requests, rx) = std::sync::mpsc::sync_channel(8 * INGEST_BATCH);
        let state = WriterState {
            store,
            journal,
            checkpoint,
            sync,
            work,
            unapplied: Vec::new(),
            last_apply: Instant::now(),
            failing: None,
            last_checkpoint: Instant::now(),
        };
        std::thread::Builder::new()
            .name("ingest-writer".into())
            .spawn(move || state.run(&rx))?;
        Ok(Writer { requests })
    }

    /// Hands a prepared delivery to the writer and waits until it is durable: its outcome.
    pub(super) async fn ingest(
        &self,
        prepared: PreparedIngest,
        framed: Vec<u8>,
    ) -> Result<IngestOutcome, String> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Ingest(Box::new((prepared, framed)), tx))
            .await?;
        rx.await.map_err(|_| STOPPED.to_owned())?
    }

    /// Waits until every delivery answered so far is written to sled (read-your-writes for
    /// the operator API).
    pub(super) async fn settle(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Settle(tx)).await?;
        rx.await.map_err(|_| STOPPED.to_owned())?
    }

    async fn send(&self, request: Request) -> Result<(), String> {
        match self.requests.try_send(request) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(request)) => {
                // The writer is behind: wait for room off the async threads.
                let sender = self.requests.clone();
                tokio::task::spawn_blocking(move || sender.send(request).map_err(|_| ()))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|()| STOPPED.to_owned())
            }
            Err(TrySendError::Disconnected(_)) => Err(STOPPED.to_owned()),
        }
    }
}

/// The writer thread's state.
struct WriterState {
    store: Arc<Store>,
    journal: Arc<Journal>,
    checkpoint: Checkpoint,
    sync: JournalSync,
    work: Arc<Notify>,
    /// Deliveries answered (durable in the journal, reserved in the dedupe index) but not yet
    /// written to sled.
    unapplied: Vec<PreparedIngest>,
    last_apply: Instant,
    /// Why the last write to sled failed, until one succeeds; ingest is refused meanwhile.
    failing: Option<String>,
    last_checkpoint: Instant,
}

impl WriterState {
    /// Runs until every [`Writer`] handle is dropped, then writes what is left.
    fn run(mut self, rx: &Receiver<Request>) {
        let mut batch: Vec<(PreparedIngest, Vec<u8>, Reply<IngestOutcome>)> =
            Vec::with_capacity(INGEST_BATCH);
        let mut settles: Vec<Reply<()>> = Vec::new();
        let mut open = true;
        while open {
            let mut take = |request| match request {
                Request::Ingest(boxed, reply) => {
                    let (prepared, framed) = *boxed;
                    batch.push((prepared, framed, reply));
                }
                Request::Settle(reply) => settles.push(reply),
            };
            match rx.recv_timeout(self.idle_wait()) {
                Ok(request) => take(request),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            // Everything waiting joins the batch, up to its limit.
            for request in rx.try_iter().take(INGEST_BATCH) {
                take(request);
            }
            self.cycle(&mut batch, &mut settles, !open);
        }
        if let Err(e) = self.journal.sync().and_then(|()| self.store.flush()) {
            tracing::warn!(error = %e, "Final journal sync failed.");
        }
    }

    /// How long to wait for the next request when none is waiting.
    fn idle_wait(&self) -> Duration {
        if self.unapplied.is_empty() {
            CHECKPOINT_EVERY
        } else if self.failing.is_some() {
            APPLY_RETRY
        } else {
            APPLY_EVERY.saturating_sub(self.last_apply.elapsed())
        }
    }

    /// One round: journals the batch and syncs it on the sync thread while deciding it and, when
    /// due, writing what is unapplied to sled; then answers, and checkpoints when due.
    fn cycle(
        &mut self,
        batch: &mut Vec<(PreparedIngest, Vec<u8>, Reply<IngestOutcome>)>,
        settles: &mut Vec<Reply<()>>,
        stopping: bool,
    ) {
        let mut answers: Vec<(Reply<IngestOutcome>, Result<IngestOutcome, String>)> =
            Vec::with_capacity(batch.len());
        let mut syncing = None;
        if let Some(why) = &self.failing {
            // sled refused the last write: refuse new deliveries (the platform retries them)
            // instead of holding more and more of them in memory.
            answers.extend(
                batch
                    .drain(..)
                    .map(|(_, _, reply)| (reply, Err(why.clone()))),
            );
        } else if !batch.is_empty() {
            // A duplicate is journaled too (its replay is a duplicate again), so that the
            // journal need not wait for the decision.
            for (_, framed, _) in batch.iter() {
                self.journal.append_encoded(framed);
            }
            syncing = Some(self.sync.start());
            let prepared: Vec<&PreparedIngest> = batch.iter().map(|(p, _, _)| p).collect();
            let decided = self.store.decide_ingests(&prepared);
            drop(prepared);
            match decided {
                Ok(outcomes) => {
                    for ((prepared, _, reply), outcome) in batch.drain(..).zip(outcomes) {
                        if let IngestOutcome::Stored { .. } = outcome {
                            self.unapplied.push(prepared);
                        }
                        answers.push((reply, Ok(outcome)));
                    }
                }
                Err(e) => {
                    let e = e.to_string();
                    answers.extend(batch.drain(..).map(|(_, _, reply)| (reply, Err(e.clone()))));
                }
            }
        }
        let checkpoint_due = self.checkpoint_due();
        let apply_now = stopping
            || !settles.is_empty()
            || checkpoint_due
            || match self.failing {
                Some(_) => self.last_apply.elapsed() >= APPLY_RETRY,
                None => {
                    self.unapplied.len() >= APPLY_MAX || self.last_apply.elapsed() >= APPLY_EVERY
                }
            };
        let applied = if apply_now { self.apply() } else { Ok(()) };
        let synced = match syncing {
            Some(started) => self.sync.finish(started, &self.journal),
            None => Ok(()),
        };
        for (reply, outcome) in answers {
            let _ = reply.send(synced.clone().and_then(|()| applied.clone()).and(outcome));
        }
        if apply_now {
            for reply in settles.drain(..) {
                let _ = reply.send(applied.clone());
            }
        }
        if checkpoint_due && self.unapplied.is_empty() {
            self.start_checkpoint();
        }
    }

    /// Writes every unapplied delivery to sled in one transaction.
    fn apply(&mut self) -> Result<(), String> {
        if self.unapplied.is_empty() {
            return Ok(());
        }
        // Only a write counts: after a quiet spell, the next delivery is written at once.
        self.last_apply = Instant::now();
        let new: Vec<&PreparedIngest> = self.unapplied.iter().collect();
        match self.store.apply_ingests(&new) {
            Ok(()) => {
                let jobs = new.iter().any(|p| p.has_jobs());
                drop(new);
                self.unapplied.clear();
                self.failing = None;
                if jobs {
                    self.work.notify_one();
                }
                Ok(())
            }
            Err(e) => {
                // Kept (and reserved) to be written on the next attempt; the journal holds them
                // for the next start if none succeeds.
                let e = e.to_string();
                tracing::warn!(error = %e, waiting = new.len(), "Writing deliveries to the state failed; ingest is refused until a retry succeeds.");
                self.failing = Some(e.clone());
                Err(e)
            }
        }
    }

    fn checkpoint_due(&self) -> bool {
        (self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY
            || self.journal.written() > CHECKPOINT_BYTES)
            && !self.checkpoint.busy.load(Ordering::Acquire)
    }

    /// Rotates the journal and hands the old file to the checkpoint thread. Only once every
    /// delivery is written to sled: then, once sled is flushed, the old file holds nothing sled
    /// does not. The flush runs on the checkpoint thread, so that ingest goes on meanwhile.
    fn start_checkpoint(&mut self) {
        self.last_checkpoint = Instant::now();
        match self.journal.rotate() {
            Ok(old) => {
                self.checkpoint.busy.store(true, Ordering::Release);
                if self.checkpoint.files.send(old).is_err() {
                    self.checkpoint.busy.store(false, Ordering::Release);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Journal checkpoint failed; the journal keeps growing until one succeeds.");
            }
        }
    }
}

/// The writer's end of the checkpoint thread: rotated journal files to fold into sled, and
/// whether a checkpoint is still running (the writer starts no other meanwhile).
struct Checkpoint {
    files: std::sync::mpsc::Sender<PathBuf>,
    busy: Arc<AtomicBool>,
}

/// The checkpoint thread: flushes sled, then deletes the rotated journal file, which sled now
/// holds durably.
fn checkpointer(
    store: Arc<Store>,
    journal: Arc<Journal>,
    files: std::sync::mpsc::Receiver<PathBuf>,
    busy: Arc<AtomicBool>,
) {
    for old in files {
        if let Err(e) = store.flush().and_then(|()| journal.retire(&old)) {
            tracing::warn!(error = %e, "Journal checkpoint failed; the journal keeps growing until one succeeds.");
        }
        busy.store(false, Ordering::Release);
    }
}

/// The writer's end of the journal sync thread, which writes and `fdatasync`s the journal while
/// the writer decides the batch and writes to sled.
struct JournalSync {
    go: SyncSender<()>,
    done: Receiver<Result<(), String>>,
}

impl JournalSync {
    /// Spawns the sync thread of `journal`.
    fn spawn(journal: Arc<Journal>) -> std::io::Result<JournalSync> {
        let (go, go_rx) = std::sync::mpsc::sync_channel::<()>(1);
        let (done_tx, done) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("ingest-sync".into())
            .spawn(move || {
                for () in go_rx {
                    if done_tx
                        .send(journal.sync().map_err(|e| e.to_string()))
                        .is_err()
                    {
                        break;
                    }
                }
            })?;
        Ok(JournalSync { go, done })
    }

    /// Starts a sync of everything appended so far; `false` if the thread is gone.
    fn start(&self) -> bool {
        self.go.send(()).is_ok()
    }

    /// Waits for the sync [`JournalSync::start`] started, or syncs here if none could start.
    fn finish(&self, started: bool, journal: &Journal) -> Result<(), String> {
        let result = if started { self.done.recv().ok() } else { None };
        result.unwrap_or_else(|| journal.sync().map_err(|e| e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::journal::IngestRecord;
    use crate::state::{AuditKind, AuditRecord};

    /// A delivery that triggered rule `r`, with its "event accepted" audit record.
    fn record(id: &str) -> IngestRecord {
        let mut r = crate::state::journal::tests::record(id);
        r.audit = vec![AuditRecord {
            at_ms: 1,
            kind: AuditKind::EventAccepted,
            resource_type: "event".into(),
            resource_id: format!("fd/{id}"),
            detail: serde_json::json!({}),
        }];
        r
    }

    fn start() -> (tempfile::TempDir, Arc<Store>, Arc<Writer>, Arc<Notify>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let (journal, _) = Journal::open(&store).unwrap();
        let work = Arc::new(Notify::new());
        let writer = Writer::spawn(store.clone(), journal, work.clone()).unwrap();
        (dir, store, Arc::new(writer), work)
    }

    async fn ingest(store: &Store, writer: &Writer, r: IngestRecord) -> IngestOutcome {
        let prepared = store.prepare_ingest(&r).unwrap();
        let framed = Journal::encode_prepared(store.dir(), &r, &prepared).unwrap();
        writer.ingest(prepared, framed).await.unwrap()
    }

    /// Concurrent deliveries (each event twice) are answered once durable, each event stored
    /// once; after `settle` every answered one is in sled with its job and audit record.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answered_deliveries_are_in_the_state_after_settle() {
        let (_dir, store, writer, _) = start();
        let mut tasks = tokio::task::JoinSet::new();
        for n in 0..400 {
            let (store, writer) = (store.clone(), writer.clone());
            let id = format!("e{}", n % 200);
            tasks.spawn(async move { ingest(&store, &writer, record(&id)).await });
        }
        let mut stored = 0;
        while let Some(outcome) = tasks.join_next().await {
            if let IngestOutcome::Stored { jobs } = outcome.unwrap() {
                assert_eq!(jobs.len(), 1);
                stored += 1;
            }
        }
        assert_eq!(stored, 200, "each event is stored once");
        writer.settle().await.unwrap();
        assert_eq!(store.queue_depth(), 200);
        for n in 0..200 {
            assert!(store.event_by_key(&format!("fd/e{n}")).unwrap().is_some());
        }
        let audit = store
            .audit(&crate::state::AuditFilter {
                limit: 1_000,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(audit.len(), 200);
    }

    /// The executor is woken once jobs are in sled, and finds them there.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn written_jobs_wake_the_executor() {
        let (_dir, store, writer, work) = start();
        let outcome = ingest(&store, &writer, record("a")).await;
        assert!(matches!(outcome, IngestOutcome::Stored { .. }));
        tokio::time::timeout(Duration::from_secs(10), work.notified())
            .await
            .expect("the executor is woken");
        assert_eq!(store.queue_depth(), 1);
    }
}
