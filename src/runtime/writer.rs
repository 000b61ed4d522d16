//! The ingest writer: the one thread that makes accepted deliveries durable, with its journal
//! sync thread, its applier thread and its checkpoint thread (docs/ingest-performance.md has
//! the whole path).
//!
//! A delivery is answered once its journal record is `fdatasync`ed (group commit: one sync for
//! every delivery that arrived meanwhile) and the state has decided whether it is new
//! ([`State::decide_ingests`](crate::state::Inbox::decide_ingests), in memory). The writer hands new deliveries to the applier,
//! which writes them to sled ([`State::apply_ingests`](crate::state::Inbox::apply_ingests)). A sled transaction costs about as much
//! as its contents, so under load the applier gathers deliveries into one transaction every
//! [`APPLY_EVERY`], on its own thread, while the writer goes on journaling; when deliveries
//! come one at a time (the applier had nothing and wrote nothing for [`APPLY_EVERY`]), the
//! writer waits for the write before answering, so each is in sled once answered, as before.
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
use crate::state::journal::{Journal, PreparedIngest, Replay};
use crate::state::{State, Upkeep};

/// Most deliveries the writer takes into one batch (one journal sync).
const INGEST_BATCH: usize = 1024;
/// Under load, how long answered deliveries may wait before they are written to sled.
const APPLY_EVERY: Duration = Duration::from_millis(2);
/// Most answered deliveries waiting to be written to sled.
const APPLY_MAX: usize = 1024;
/// Most deliveries written to sled in one transaction (a backlog, e.g. the journal replayed on
/// start, is written in transactions of this size).
const APPLY_CHUNK: usize = 1024;
/// How long the applier waits before trying again to write to sled after a failure.
const APPLY_RETRY: Duration = Duration::from_millis(250);
/// How often the journal is folded into sled.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// How long a clean stop waits for a running checkpoint before leaving its file to be replayed.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
/// The shortest time between two runs of the state's upkeep while running ([`State::upkeep`]:
/// sled's snapshot, during which state calls wait): under a sustained load of more than
/// [`crate::state::SNAPSHOT_AFTER_DELIVERIES`] deliveries a minute, a start after a crash reads
/// up to a minute's worth of sled's log instead. Counted from the start too (the open wrote one).
const UPKEEP_EVERY: Duration = Duration::from_secs(60);
/// Journal size that forces a checkpoint.
const CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;

type Reply<T> = oneshot::Sender<Result<T, String>>;

/// What the writer is asked to do.
enum Request {
    /// Store a prepared delivery (and its framed journal record).
    Ingest(Box<(PreparedIngest, Vec<u8>)>, Reply<IngestOutcome>),
    /// Answer once every delivery answered so far is written to sled.
    Settle(Reply<()>),
    /// A clean stop: write everything to sled, flush it, retire the journal, then stop (and
    /// answer).
    Close(Reply<()>),
}

/// The handle on the ingest writer's threads; they stop once it is dropped.
#[derive(Debug)]
pub(super) struct Writer {
    requests: SyncSender<Request>,
}

const STOPPED: &str = "the ingest writer has stopped";
const APPLIER_STOPPED: &str = "the ingest applier has stopped";

impl Writer {
    /// Starts the writer, its journal sync, applier and checkpoint threads. `work` is woken
    /// whenever jobs reach sled. `replay`'s deliveries (journaled by an earlier run, decided
    /// but not yet in sled: [`Journal::open_deferred`]) are written first, in transactions of
    /// [`APPLY_CHUNK`], while new deliveries are answered; their journal files are removed at
    /// the first checkpoint after they are written (or on a clean stop).
    pub(super) fn spawn(
        store: Arc<dyn State>,
        journal: Journal,
        replay: Replay,
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
        let applier = ApplierHandle::spawn(store.clone(), work)?;
        let Replay { new, files } = replay;
        applier.backlog(new);
        let state = WriterState {
            store,
            journal,
            checkpoint,
            sync,
            applier,
            last_checkpoint: Instant::now(),
            replayed: files,
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

    /// A clean stop: once every delivery taken is written to sled and sled is flushed, retires
    /// the journal (the next start replays nothing) and stops the writer; deliveries offered
    /// afterwards are refused. When something could not be written, the journal stays for the
    /// next start to replay, and the error says why.
    pub(super) async fn close(&self) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.send(Request::Close(tx)).await?;
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
    store: Arc<dyn State>,
    journal: Arc<Journal>,
    checkpoint: Checkpoint,
    sync: JournalSync,
    applier: ApplierHandle,
    last_checkpoint: Instant,
    /// Journal files replayed on start, removed once sled holds their deliveries durably.
    replayed: Vec<PathBuf>,
}

impl WriterState {
    /// Runs until every [`Writer`] handle is dropped; then lets the applier write what is left
    /// and syncs.
    fn run(mut self, rx: &Receiver<Request>) {
        let mut batch: Vec<(PreparedIngest, Vec<u8>, Reply<IngestOutcome>)> =
            Vec::with_capacity(INGEST_BATCH);
        let mut settles: Vec<Reply<()>> = Vec::new();
        let mut closing: Option<Reply<()>> = None;
        let mut open = true;
        while open {
            let mut take = |request| match request {
                Request::Ingest(boxed, reply) => {
                    let (prepared, framed) = *boxed;
                    batch.push((prepared, framed, reply));
                }
                Request::Settle(reply) => settles.push(reply),
                Request::Close(reply) => closing = Some(reply),
            };
            match rx.recv_timeout(CHECKPOINT_EVERY) {
                Ok(request) => take(request),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
            // Everything waiting joins the batch, up to its limit.
            for request in rx.try_iter().take(INGEST_BATCH) {
                take(request);
            }
            self.cycle(&mut batch);
            for reply in settles.drain(..) {
                self.applier.send(ToApplier::Wait(Waiter::Async(reply)));
            }
            if closing.is_some() {
                open = false;
            } else if self.checkpoint_due() {
                self.checkpoint();
            }
        }
        self.applier.stop();
        let synced = self
            .journal
            .sync()
            .and_then(|()| self.store.flush())
            .map_err(|e| e.to_string());
        if let Err(e) = &synced {
            tracing::warn!(error = %e, "Final journal sync failed.");
        }
        let Some(reply) = closing else { return };
        let _ = reply.send(synced.and_then(|()| self.retire_journal()));
    }

    /// On a clean stop, once sled is flushed: retires the journal when sled holds every
    /// delivery it does (a rotated file still being checkpointed is waited for).
    fn retire_journal(&self) -> Result<(), String> {
        if let Some(why) = self.applier.failing() {
            return Err(format!(
                "deliveries not written to the state ({why}); the journal keeps them for the next start"
            ));
        }
        if self.applier.shared.pending.load(Ordering::Acquire) > 0 {
            return Err(
                "deliveries not written to the state; the journal keeps them for the next start"
                    .to_owned(),
            );
        }
        let deadline = Instant::now() + CLOSE_WAIT;
        while self.checkpoint.busy.load(Ordering::Acquire) {
            if Instant::now() >= deadline {
                return Err(
                    "a journal checkpoint did not finish; the next start replays it".to_owned(),
                );
            }
            #[allow(clippy::disallowed_methods)]
            // the writer's own thread, never a runtime thread
            std::thread::sleep(Duration::from_millis(5));
        }
        self.journal
            .remove_replayed(&self.replayed)
            .and_then(|()| self.journal.close())
            .map_err(|e| e.to_string())
    }

    /// One round: journals the batch and syncs it on the sync thread while deciding it and
    /// handing the new deliveries to the applier; then answers. When the applier was idle, the
    /// answers also wait for it to write them (one at a time, a delivery is in sled once
    /// answered).
    fn cycle(&mut self, batch: &mut Vec<(PreparedIngest, Vec<u8>, Reply<IngestOutcome>)>) {
        if batch.is_empty() {
            return;
        }
        if let Some(why) = self.applier.failing() {
            // sled refused the last write: refuse new deliveries (the platform retries them)
            // instead of holding more and more of them in memory.
            for (_, _, reply) in batch.drain(..) {
                let _ = reply.send(Err(why.clone()));
            }
            return;
        }
        // A duplicate is journaled too (its replay is a duplicate again), so that the journal
        // need not wait for the decision.
        for (_, framed, _) in batch.iter() {
            self.journal.append_encoded(framed);
        }
        let syncing = self.sync.start();
        let prepared: Vec<&PreparedIngest> = batch.iter().map(|(p, _, _)| p).collect();
        let decided = self.store.decide_ingests(&prepared);
        drop(prepared);
        let mut answers = Vec::with_capacity(batch.len());
        let mut new = Vec::new();
        match decided {
            Ok(outcomes) => {
                for ((prepared, _, reply), outcome) in batch.drain(..).zip(outcomes) {
                    if let IngestOutcome::Stored { .. } = outcome {
                        new.push(prepared);
                    }
                    answers.push((reply, Ok(outcome)));
                }
            }
            Err(e) => {
                let e = e.to_string();
                answers.extend(batch.drain(..).map(|(_, _, reply)| (reply, Err(e.clone()))));
            }
        }
        let written = self.applier.write(new);
        let synced = self.sync.finish(syncing, &self.journal);
        let written = written.map_or(Ok(()), |done| Waiter::wait(&done));
        for (reply, outcome) in answers {
            let _ = reply.send(synced.clone().and_then(|()| written.clone()).and(outcome));
        }
    }

    /// Whether a checkpoint is due: not while one runs, nor while the applier is still writing
    /// the journal replayed on start (more than one transaction's worth pending) unless the
    /// journal has grown past [`CHECKPOINT_BYTES`]: the checkpoint waits for the applier, and
    /// the writer would stop answering for the whole backlog. Otherwise that wait is what
    /// holds the writer back when sled falls behind.
    fn checkpoint_due(&self) -> bool {
        let written = self.journal.written();
        let replaying = !self.replayed.is_empty()
            && written <= CHECKPOINT_BYTES
            && self.applier.shared.pending.load(Ordering::Acquire) > APPLY_MAX;
        (self.last_checkpoint.elapsed() >= CHECKPOINT_EVERY || written > CHECKPOINT_BYTES)
            && !self.checkpoint.busy.load(Ordering::Acquire)
            && !replaying
    }

    /// Once every delivery handed to the applier is written, rotates the journal and hands the
    /// old file (and the files replayed on start) to the checkpoint thread: once sled is
    /// flushed, they hold nothing sled does not. The flush runs on the checkpoint thread, so
    /// that ingest goes on meanwhile.
    fn checkpoint(&mut self) {
        self.last_checkpoint = Instant::now();
        let (done, written) = Waiter::blocking();
        self.applier.send(ToApplier::Wait(done));
        if Waiter::wait(&written).is_err() {
            // Not written yet: the journal keeps those deliveries until a later checkpoint.
            return;
        }
        match self.journal.rotate() {
            Ok(old) => {
                self.checkpoint.busy.store(true, Ordering::Release);
                let replayed = std::mem::take(&mut self.replayed);
                if self.checkpoint.files.send((old, replayed)).is_err() {
                    self.checkpoint.busy.store(false, Ordering::Release);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "Journal checkpoint failed; the journal keeps growing until one succeeds.");
            }
        }
    }
}

/// What the writer hands the applier, in order.
enum ToApplier {
    /// Deliveries decided new, to write to sled.
    Write(Vec<PreparedIngest>),
    /// Answer once everything handed before is written (at once, without gathering more).
    Wait(Waiter),
}

/// Someone waiting for the applier: an operator read (async) or the writer itself.
enum Waiter {
    Async(Reply<()>),
    Blocking(SyncSender<Result<(), String>>),
}

impl Waiter {
    /// A waiter for the writer thread, and where its answer arrives.
    fn blocking() -> (Waiter, Receiver<Result<(), String>>) {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        (Waiter::Blocking(tx), rx)
    }

    /// The answer for a [`Waiter::blocking`] waiter.
    fn wait(answer: &Receiver<Result<(), String>>) -> Result<(), String> {
        answer.recv().unwrap_or_else(|_| Err(STOPPED.to_owned()))
    }

    fn answer(self, result: Result<(), String>) {
        let _ = match self {
            Waiter::Async(reply) => reply.send(result).map_err(drop),
            Waiter::Blocking(reply) => reply.send(result).map_err(drop),
        };
    }
}

/// The writer's end of the applier thread.
struct ApplierHandle {
    to: Option<std::sync::mpsc::Sender<ToApplier>>,
    shared: Arc<ApplierShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// What the writer and the applier both see.
struct ApplierShared {
    /// Deliveries handed to the applier and not yet written.
    pending: std::sync::atomic::AtomicUsize,
    /// Why the last write to sled failed, until one succeeds.
    failing: std::sync::Mutex<Option<String>>,
    /// When the last write started, in microseconds since `epoch` (at least 1); 0: never.
    last_write_us: std::sync::atomic::AtomicU64,
    epoch: Instant,
}

impl ApplierShared {
    fn new() -> ApplierShared {
        ApplierShared {
            pending: std::sync::atomic::AtomicUsize::new(0),
            failing: std::sync::Mutex::new(None),
            last_write_us: std::sync::atomic::AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_us(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    fn since_last_write(&self) -> Duration {
        match self.last_write_us.load(Ordering::Acquire) {
            0 => Duration::MAX,
            last => Duration::from_micros(self.now_us().saturating_sub(last)),
        }
    }

    fn failing(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_failing(&self, why: Option<String>) {
        *self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = why;
    }
}

impl ApplierHandle {
    fn spawn(store: Arc<dyn State>, work: Arc<Notify>) -> std::io::Result<ApplierHandle> {
        let (to, rx) = std::sync::mpsc::channel();
        let shared = Arc::new(ApplierShared::new());
        let applier = Applier {
            store,
            work,
            shared: shared.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("ingest-apply".into())
            .spawn(move || applier.run(&rx))?;
        Ok(ApplierHandle {
            to: Some(to),
            shared,
            thread: Some(thread),
        })
    }

    fn failing(&self) -> Option<String> {
        self.shared.failing()
    }

    /// Hands `message` to the applier. If the applier is gone (it panicked), new deliveries
    /// are refused from now on: what it was given stays in the journal for the next start.
    fn send(&self, message: ToApplier) {
        let unsent = match &self.to {
            Some(to) => to.send(message).err().map(|e| e.0),
            None => Some(message),
        };
        let Some(message) = unsent else { return };
        self.shared.set_failing(Some(APPLIER_STOPPED.to_owned()));
        if let ToApplier::Wait(waiter) = message {
            waiter.answer(Err(APPLIER_STOPPED.to_owned()));
        }
    }

    /// Hands a backlog (deliveries decided by an earlier run) to the applier, without waiting.
    fn backlog(&self, new: Vec<PreparedIngest>) {
        if new.is_empty() {
            return;
        }
        self.shared.pending.fetch_add(new.len(), Ordering::AcqRel);
        self.send(ToApplier::Write(new));
    }

    /// Hands `new` to the applier. When it had nothing to do, also asks to hear when they are
    /// written: where that answer arrives.
    fn write(&self, new: Vec<PreparedIngest>) -> Option<Receiver<Result<(), String>>> {
        if new.is_empty() {
            return None;
        }
        let idle = self.shared.pending.fetch_add(new.len(), Ordering::AcqRel) == 0
            && self.shared.since_last_write() >= APPLY_EVERY;
        self.send(ToApplier::Write(new));
        idle.then(|| {
            let (done, written) = Waiter::blocking();
            self.send(ToApplier::Wait(done));
            written
        })
    }

    /// Lets the applier write what it holds, and waits for it to end.
    fn stop(&mut self) {
        self.to = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The applier thread: writes new deliveries to sled, all that are waiting in one transaction
/// (up to [`APPLY_CHUNK`]), at most once per [`APPLY_EVERY`] unless someone waits.
struct Applier {
    store: Arc<dyn State>,
    work: Arc<Notify>,
    shared: Arc<ApplierShared>,
}

impl Applier {
    fn run(self, rx: &Receiver<ToApplier>) {
        let mut new: Vec<PreparedIngest> = Vec::new();
        let mut waiters: Vec<Waiter> = Vec::new();
        let mut open = true;
        let take = |message, new: &mut Vec<_>, waiters: &mut Vec<_>| match message {
            ToApplier::Write(batch) => new.extend(batch),
            ToApplier::Wait(waiter) => waiters.push(waiter),
        };
        loop {
            if new.is_empty() && waiters.is_empty() {
                if !open {
                    break;
                }
                match rx.recv() {
                    Ok(message) => take(message, &mut new, &mut waiters),
                    Err(_) => break,
                }
            }
            // Gather until the write is due.
            while open {
                let failing = self.shared.failing().is_some();
                let urgent = !failing && (!waiters.is_empty() || new.len() >= APPLY_MAX);
                let every = if failing { APPLY_RETRY } else { APPLY_EVERY };
                let wait = every.saturating_sub(self.shared.since_last_write());
                if urgent || wait.is_zero() {
                    break;
                }
                match rx.recv_timeout(wait) {
                    Ok(message) => take(message, &mut new, &mut waiters),
                    Err(RecvTimeoutError::Timeout) => break,
                    Err(RecvTimeoutError::Disconnected) => open = false,
                }
            }
            for message in rx.try_iter() {
                take(message, &mut new, &mut waiters);
            }
            let written = self.write(&mut new);
            for waiter in waiters.drain(..) {
                waiter.answer(written.clone());
            }
            if !open && written.is_err() {
                // Stopping: the journal holds what could not be written, for the next start.
                break;
            }
        }
    }

    /// Writes `new` to sled, emptying it: in one transaction, or one per [`APPLY_CHUNK`]
    /// deliveries of a backlog. On an error keeps what was not written (and its reservations)
    /// for the next attempt.
    fn write(&self, new: &mut Vec<PreparedIngest>) -> Result<(), String> {
        if new.is_empty() {
            return match self.shared.failing() {
                Some(why) => Err(why),
                None => Ok(()),
            };
        }
        let mut done = 0;
        let result = loop {
            let Some(chunk) = new.get(done..new.len().min(done + APPLY_CHUNK)) else {
                break Ok(());
            };
            if chunk.is_empty() {
                break Ok(());
            }
            self.shared
                .last_write_us
                .store(self.shared.now_us().max(1), Ordering::Release);
            let refs: Vec<&PreparedIngest> = chunk.iter().collect();
            match self.store.apply_ingests(&refs) {
                Ok(()) => {
                    self.shared.set_failing(None);
                    self.shared.pending.fetch_sub(chunk.len(), Ordering::AcqRel);
                    if chunk.iter().any(PreparedIngest::has_jobs) {
                        self.work.notify_one();
                    }
                    done += chunk.len();
                }
                Err(e) => {
                    let e = e.to_string();
                    tracing::warn!(error = %e, waiting = new.len() - done, "Writing deliveries to the state failed; ingest is refused until a retry succeeds.");
                    self.shared.set_failing(Some(e.clone()));
                    break Err(e);
                }
            }
        };
        new.drain(..done);
        result
    }
}

/// The writer's end of the checkpoint thread: rotated journal files to fold into sled, and
/// whether a checkpoint is still running (the writer starts no other meanwhile).
struct Checkpoint {
    /// A rotated file, and files replayed on start.
    files: std::sync::mpsc::Sender<(PathBuf, Vec<PathBuf>)>,
    busy: Arc<AtomicBool>,
}

/// The checkpoint thread: flushes sled, then retires the rotated journal file and removes the
/// files replayed on start, which sled now holds durably.
fn checkpointer(
    store: Arc<dyn State>,
    journal: Arc<Journal>,
    files: std::sync::mpsc::Receiver<(PathBuf, Vec<PathBuf>)>,
    busy: Arc<AtomicBool>,
) {
    // When the state's upkeep last ran (the open wrote a snapshot): at most once every UPKEEP_EVERY.
    let mut upkept = Instant::now();
    for (old, replayed) in files {
        let done = store
            .flush()
            .and_then(|()| journal.remove_replayed(&replayed))
            .and_then(|()| journal.retire(&old));
        if let Err(e) = done {
            tracing::warn!(error = %e, "Journal checkpoint failed; the journal keeps growing until one succeeds.");
        }
        // sled's snapshot, when due, so that a start after any stop reads little of its log;
        // state calls wait while it is written, so not more than once every UPKEEP_EVERY.
        if upkept.elapsed() >= UPKEEP_EVERY {
            match store.upkeep(Upkeep::Running) {
                Ok(Some(took)) => {
                    upkept = Instant::now();
                    tracing::info!(took_ms = took.as_millis() as u64, "State snapshot written.");
                }
                Ok(None) => {}
                Err(e) => {
                    upkept = Instant::now();
                    tracing::error!(error = %e, "State snapshot failed: if the state says it is closed, restart supportopsd (nothing written is lost).");
                }
            }
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
    use crate::state::Store;
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
        let (journal, replay) = Journal::open_deferred(&store).unwrap();
        let work = Arc::new(Notify::new());
        let writer = Writer::spawn(store.clone(), journal, replay, work.clone()).unwrap();
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

    /// A delivery handed to an idle applier comes with a wait, answered once it is in sled:
    /// the writer's answer to a lone delivery waits for it.
    #[test]
    fn an_idle_applier_answers_once_the_delivery_is_in_sled() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let mut applier = ApplierHandle::spawn(store.clone(), Arc::new(Notify::new())).unwrap();
        let prepared = store.prepare_ingest(&record("lone")).unwrap();
        assert_eq!(
            store.decide_ingests(&[&prepared]).unwrap().len(),
            1,
            "decided first, as the writer does"
        );
        let written = applier
            .write(vec![prepared])
            .expect("an idle applier is waited for");
        Waiter::wait(&written).unwrap();
        assert!(store.event_by_key("fd/lone").unwrap().is_some());
        assert_eq!(store.queue_depth(), 1);
        applier.stop();
    }

    /// Once the applier is gone, what is handed to it is answered with an error and new
    /// deliveries are refused (503) instead of answered and never written.
    #[test]
    fn a_stopped_applier_refuses_what_comes_after() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let mut applier = ApplierHandle::spawn(store.clone(), Arc::new(Notify::new())).unwrap();
        applier.stop();
        assert_eq!(applier.failing(), None);
        let prepared = store.prepare_ingest(&record("late")).unwrap();
        store.decide_ingests(&[&prepared]).unwrap();
        let written = applier.write(vec![prepared]).expect("nothing was pending");
        assert_eq!(
            Waiter::wait(&written).unwrap_err(),
            APPLIER_STOPPED,
            "the wait is answered"
        );
        assert_eq!(applier.failing().as_deref(), Some(APPLIER_STOPPED));
    }

    /// A journal left by a crash is decided at start and written by the applier while the
    /// writer answers new deliveries: a replayed key is a duplicate at once, a new one is
    /// stored; after `settle` every replayed delivery is in sled; the replayed files stay
    /// until sled is flushed and go at the checkpoint or clean stop after that, so the next
    /// start replays nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replayed_journal_is_written_in_the_background_and_then_retired() {
        let dir = tempfile::tempdir().unwrap();
        let count = 3 * APPLY_CHUNK + 10;
        {
            let store = Store::open(dir.path()).unwrap();
            let (journal, _) = Journal::open(&store).unwrap();
            for n in 0..count {
                journal.append(&record(&format!("j{n}"))).unwrap();
            }
            journal.sync().unwrap();
            // A crash: nothing written to sled.
        }
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let (journal, replay) = Journal::open_deferred(&store).unwrap();
        assert_eq!(replay.new.len(), count);
        let replayed = replay.files.clone();
        assert_eq!(replayed.len(), 1);
        let work = Arc::new(Notify::new());
        let writer = Writer::spawn(store.clone(), journal, replay, work).unwrap();
        assert_eq!(
            ingest(&store, &writer, record("j7")).await,
            IngestOutcome::Duplicate,
            "a replayed key is deduplicated before it is in sled"
        );
        assert!(matches!(
            ingest(&store, &writer, record("fresh")).await,
            IngestOutcome::Stored { .. }
        ));
        writer.settle().await.unwrap();
        assert_eq!(store.queue_depth(), count + 1);
        for n in [0, APPLY_CHUNK, count - 1] {
            assert!(store.event_by_key(&format!("fd/j{n}")).unwrap().is_some());
        }
        writer.close().await.unwrap();
        assert!(!replayed[0].exists(), "removed on the clean stop");
        drop(writer);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let (_journal, replay) = Journal::open_deferred(&store).unwrap();
        assert!(replay.new.is_empty() && replay.files.is_empty());
        assert_eq!(store.queue_depth(), count + 1);
    }

    /// A backlog of several [`APPLY_CHUNK`]s handed to the applier is written whole and
    /// counted down.
    #[test]
    fn a_backlog_is_written_and_counted_down() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(dir.path()).unwrap());
        let work = Arc::new(Notify::new());
        let mut applier = ApplierHandle::spawn(store.clone(), work.clone()).unwrap();
        let backlog: Vec<PreparedIngest> = (0..2 * APPLY_CHUNK + 1)
            .map(|n| store.prepare_ingest(&record(&format!("b{n}"))).unwrap())
            .collect();
        let refs: Vec<&PreparedIngest> = backlog.iter().collect();
        store.decide_ingests(&refs).unwrap();
        drop(refs);
        applier.backlog(backlog);
        let (done, written) = Waiter::blocking();
        applier.send(ToApplier::Wait(done));
        Waiter::wait(&written).unwrap();
        assert_eq!(applier.shared.pending.load(Ordering::Acquire), 0);
        assert_eq!(store.queue_depth(), 2 * APPLY_CHUNK + 1);
        applier.stop();
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
