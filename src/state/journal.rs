//! The ingest journal: what makes a webhook acknowledgement durable quickly.
//!
//! sled's own flush is slow (milliseconds, whatever the batch), and a webhook may be answered
//! 2xx only once its event is on disk. So each accepted event is appended to this journal, and
//! the journal is `fdatasync`ed — one sync for every delivery that arrived meanwhile (group
//! commit) — while the daemon's writer decides which deliveries are new; new ones are written
//! to sled *without* flushing, before the answer or, under load, within milliseconds after it
//! (`daemon::writer`). Every few seconds, once every journaled delivery is in sled, a
//! checkpoint starts a new journal file, flushes sled (which then holds everything the old file
//! holds) and retires the old file (below); the daemon runs the flush and the retirement on a
//! thread of their own, so that ingest goes on during the flush. On open, whatever journal
//! files exist are replayed; replay is idempotent because ingest deduplicates by event key.
//! The replay runs the live writer's steps (prepare, decide, apply) as a pipeline: records are
//! decoded on several threads and prepared in journal order while the batch before is decided.
//! The daemon's open ([`Journal::open_deferred`]) stops there: the new deliveries are reserved
//! in memory and handed to its applier, which writes them to sled in batches while the daemon
//! already serves (writing 100,000 records takes sled several seconds; deciding them, about
//! one), and the replayed files are removed only once sled holds them durably. Tools on a
//! stopped daemon's state ([`Journal::open`]) write each batch in one sled transaction and
//! flush at the end. A clean stop retires the current file as well ([`Journal::close`]), once
//! sled holds everything it does, so the next start finds nothing to replay (and no records
//! left from a recycled file's previous use, which it would report as torn).
//!
//! File format: records of `len: u32 LE ‖ checksum: 8 bytes ‖ payload: JSON`, where the checksum is
//! the payload's CRC-32 (u32 LE) followed by a tag: the file's sequence number (u32 LE, high bit
//! set). Records written by earlier builds carry the tag `crc1`, or the first 8 bytes of the
//! payload's SHA-256 instead, and are still read. A torn record at the end of a file (a crash
//! mid-write) fails its length or checksum and ends the replay of that file; it was never
//! acknowledged.
//!
//! The payload is an [`IngestRecord`] as JSON. Records written by this build begin with a field
//! that says where the event's JSON is: `{"raw":[E,H],"event":<E bytes>,…}`, E
//! the length of the event's JSON (exactly the bytes the state stores for it, `codec`'s format
//! 1 without its format byte) and H the length of its leading fields (platform, integration,
//! name, id: everything an ingest reads of it). A replay takes the event's bytes as they are
//! and decodes only those leading fields and the fields after the event (rules, times, audit
//! records, revision), never the payload: decoding every payload into a `serde_json::Value`
//! and encoding it again was most of a replay's cost. The record is still plain JSON with the
//! same fields (builds that do not know `raw` ignore it and decode the whole record), and
//! records without `raw` (earlier builds), or whose `raw` does not fit the record, are decoded
//! whole, as before. The event's bytes are stored unparsed: the record's checksum says they are
//! what this build wrote; were they not an event, reading the delivery would report it corrupt
//! (`Error::Corrupt`), as for any stored value.
//!
//! Files are recycled: a retired file becomes the spare (`ingest-<seq>.spare`), and the next
//! rotation writes the new file over it from the start instead of appending to a new one. Over
//! blocks that are already written, an `fdatasync` flushes data only: no block allocation, so
//! no filesystem journal commit, which on ext4 also waits for other files' data (sled's). What
//! is left of the spare's old records after the new ones carries the old file's sequence
//! number, so replay stops there; sequence numbers only grow (a new one is above every journal
//! and spare file).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use super::inbox::Prepared as PreparedIngest;
use super::inbox::{Encoded, EventHead};
use super::{AuditRecord, Error, IngestOutcome, Store, codec};
use crate::event::Event;

/// One journaled ingest: everything [`Store::ingest_audited`] needs to redo it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IngestRecord {
    /// The event.
    pub event: Event,
    /// The rules it triggered.
    pub rules: Vec<String>,
    /// When it was received.
    pub now_ms: u64,
    /// Until when it deduplicates.
    pub dedupe_until_ms: u64,
    /// Its audit records.
    pub audit: Vec<AuditRecord>,
    /// The revision in use when it was received (`None`: unknown; records of earlier builds
    /// have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// Rules whose job is held by their action budget (`runtime::budget`), with when it is
    /// due; the others' jobs are due at `now_ms` (records of earlier builds have none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub held: BTreeMap<String, u64>,
}

/// The journal of one state directory.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Sequence number of the current file.
    seq: u64,
    /// Shared with a sync in progress (no file descriptor duplicated per sync).
    file: Arc<File>,
    /// Records appended since the last sync.
    pending: Vec<u8>,
    /// Bytes written to the current file (where the next write goes).
    written: u64,
    /// A retired file to write the next file over.
    spare: Option<PathBuf>,
}

/// Records replayed per sled transaction on open (the live writer's applier writes up to as
/// many in one).
const REPLAY_BATCH: usize = 1024;

/// Fewest records a replay thread decodes (fewer are not worth a thread).
const DECODE_MIN: usize = 64;

/// Most threads decoding journal records on open.
const DECODE_THREADS: usize = 8;

const PREFIX: &str = "ingest-";
const SUFFIX: &str = ".journal";
const SPARE_SUFFIX: &str = ".spare";

fn file_name(seq: u64) -> String {
    format!("{PREFIX}{seq:020}{SUFFIX}")
}

fn spare_name(seq: u64) -> String {
    format!("{PREFIX}{seq:020}{SPARE_SUFFIX}")
}

/// The tag of records framed but not yet appended, and of every CRC-32 record of the builds
/// before files were recycled (never found in a recycled file).
const CRC_TAG: [u8; 4] = *b"crc1";

/// The tag of records appended to file `seq`: its sequence number, high bit set (which `crc1`
/// has not).
fn seq_tag(seq: u64) -> [u8; 4] {
    // Truncation is fine: a file's leftovers are from a recent file, never 2^31 files ago.
    #[allow(clippy::cast_possible_truncation)]
    let low = seq as u32;
    (low | 0x8000_0000).to_le_bytes()
}

/// The checksum of a record's payload: CRC-32 ‖ [`CRC_TAG`] (a fraction of SHA-256's cost on the
/// request threads, and all a torn write needs); appending puts the file's tag in.
fn checksum(payload: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out[4..].copy_from_slice(&CRC_TAG);
    out
}

/// Whether `sum` is the checksum of `payload` in file `seq`: CRC-32 with this file's tag (or
/// `crc1`, from earlier builds), or the SHA-256 prefix of records of still earlier builds (both
/// still replayed after an upgrade).
fn verify(sum: &[u8], payload: &[u8], seq: u64) -> bool {
    let tag = sum.get(4..);
    if (tag == Some(&seq_tag(seq)[..]) || tag == Some(&CRC_TAG[..]))
        && sum.get(..4) == Some(&crc32fast::hash(payload).to_le_bytes()[..])
    {
        return true;
    }
    sum == &Sha256::digest(payload)[..8]
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Journal {
        path: path.to_owned(),
        source,
    }
}

/// Journal files in `dir`, oldest first.
fn existing(dir: &Path) -> Result<Vec<(u64, PathBuf)>, Error> {
    files(dir, SUFFIX)
}

/// Files named `ingest-<seq><suffix>` in `dir`, by sequence number.
fn files(dir: &Path, suffix: &str) -> Result<Vec<(u64, PathBuf)>, Error> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if let Some(seq) = seq_of(&path, suffix) {
            out.push((seq, path));
        }
    }
    out.sort();
    Ok(out)
}

/// The sequence number of a file named `ingest-<seq><suffix>`.
fn seq_of(path: &Path, suffix: &str) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix(PREFIX)?
        .strip_suffix(suffix)?
        .parse()
        .ok()
}

/// The intact records of file `seq`, read a batch at a time, up to the first that is not (torn,
/// or left from the file's previous use): their payloads, checked but not decoded.
struct Frames<'a> {
    path: &'a Path,
    seq: u64,
    reader: BufReader<File>,
    done: bool,
}

impl<'a> Frames<'a> {
    fn open(path: &'a Path, seq: u64) -> Result<Frames<'a>, Error> {
        Ok(Frames {
            path,
            seq,
            reader: BufReader::with_capacity(1 << 20, File::open(path).map_err(io(path))?),
            done: false,
        })
    }

    /// Up to `n` more payloads (none: the end of the file's records).
    fn take(&mut self, n: usize) -> Result<Vec<Vec<u8>>, Error> {
        let mut out = Vec::new();
        while !self.done && out.len() < n {
            let mut header = [0u8; 12];
            match self.reader.read_exact(&mut header) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    self.done = true;
                    break;
                }
                Err(e) => return Err(io(self.path)(e)),
            }
            let mut len = [0u8; 4];
            len.copy_from_slice(&header[..4]);
            let len = u32::from_le_bytes(len) as usize;
            let mut payload = Vec::new();
            // Read through `take`, not into a buffer of `len` bytes: a torn length may be huge.
            let complete = (&mut self.reader)
                .take(len as u64)
                .read_to_end(&mut payload)
                .is_ok_and(|read| read == len);
            if !complete || !verify(&header[4..], &payload, self.seq) {
                tracing::warn!(journal = %self.path.display(), "Torn record at the end of the ingest journal (never acknowledged); ignored.");
                self.done = true;
                break;
            }
            out.push(payload);
        }
        Ok(out)
    }
}

/// How a record written by this build begins: `{"raw":[E,H],"event":` (module doc).
const RAW_OPEN: &[u8] = b"{\"raw\":[";

/// What follows the two numbers of `raw`.
const RAW_EVENT: &[u8] = b"],\"event\":";

/// What follows an encoded event's leading fields (`platform`, `integration`, `name`, `id`,
/// the fields [`EventHead`] reads). Found nowhere before them: a quote inside a JSON string is
/// escaped.
const AFTER_HEAD: &[u8] = b",\"time\":";

/// The length of an encoded event's leading fields ([`AFTER_HEAD`]); `None` if it is not
/// found (then the record is written without `raw`).
fn event_head_len(event: &[u8]) -> Option<usize> {
    event
        .windows(AFTER_HEAD.len())
        .position(|w| w == AFTER_HEAD)
}

/// The fields of a journal record after its event.
#[derive(Deserialize)]
struct Tail {
    rules: Vec<String>,
    now_ms: u64,
    dedupe_until_ms: u64,
    audit: Vec<AuditRecord>,
    #[serde(default)]
    revision: Option<String>,
    #[serde(default)]
    held: BTreeMap<String, u64>,
}

/// A journal record decoded for replay.
enum Journaled {
    /// Written with `raw`: the event kept encoded, only what the ingest reads decoded.
    Raw {
        head: EventHead,
        key: String,
        /// The event as the state stores it ([`codec::encode_json`] of its JSON).
        event: Vec<u8>,
        ingest: Encoded,
        audit: Vec<AuditRecord>,
    },
    /// Decoded whole (a record of an earlier build).
    Full(IngestRecord),
}

impl Journaled {
    /// Decodes a record's payload: by its `raw` field when it has one that fits, else whole.
    fn decode(payload: &[u8]) -> Result<Journaled, serde_json::Error> {
        if let Some(raw) = Self::raw(payload) {
            return Ok(raw);
        }
        serde_json::from_slice(payload).map(Journaled::Full)
    }

    /// A record written with `raw`, its event kept encoded; `None` when `raw` is missing or
    /// does not fit the record (then it is decoded whole).
    fn raw(payload: &[u8]) -> Option<Journaled> {
        /// A decimal number ending at `end`, and what follows `end`.
        fn number(bytes: &[u8], end: u8) -> Option<(usize, &[u8])> {
            let at = bytes.iter().position(|b| *b == end)?;
            let digits = bytes.get(..at)?;
            if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let n = std::str::from_utf8(digits).ok()?.parse().ok()?;
            Some((n, bytes.get(at + 1..)?))
        }
        let rest = payload.strip_prefix(RAW_OPEN)?;
        let (len, rest) = number(rest, b',')?;
        let (head_len, rest) = number(rest, RAW_EVENT[0])?;
        let rest = rest.strip_prefix(&RAW_EVENT[1..])?;
        let event = rest.get(..len)?;
        let tail = rest.get(len..)?.strip_prefix(b",")?;
        let head = event.get(..head_len)?;
        // The leading fields end where `,"time":` begins.
        event.get(head_len..)?.strip_prefix(AFTER_HEAD)?;
        // `{"platform":…,"id":"…"` closed: the leading fields alone.
        let mut head_json = Vec::with_capacity(head.len() + 1);
        head_json.extend_from_slice(head);
        head_json.push(b'}');
        let head: EventHead = serde_json::from_slice(&head_json).ok()?;
        // `"rules":…}` opened: the fields after the event.
        let mut tail_json = Vec::with_capacity(tail.len() + 1);
        tail_json.push(b'{');
        tail_json.extend_from_slice(tail);
        let tail: Tail = serde_json::from_slice(&tail_json).ok()?;
        Some(Journaled::Raw {
            key: crate::event::dedupe_key(&head.integration, &head.id),
            head,
            event: codec::encode_json(event),
            ingest: Encoded {
                rules: tail.rules,
                now_ms: tail.now_ms,
                dedupe_until_ms: tail.dedupe_until_ms,
                revision: tail.revision,
                held: tail.held,
            },
            audit: tail.audit,
        })
    }

    /// Prepares the ingest (ids allocated: call in journal order).
    fn prepare(self, store: &Store) -> Result<PreparedIngest, Error> {
        match self {
            Journaled::Raw {
                head,
                key,
                event,
                ingest,
                audit,
            } => store.prepare_encoded(head, key, event, ingest, &audit),
            Journaled::Full(record) => store.prepare_ingest(&record),
        }
    }
}

/// Decodes journal payloads, in order, on up to `workers` threads; an unreadable one is
/// skipped with a warning (its checksum matched, so it is not torn: written by a build whose
/// record this one cannot read).
fn decode(payloads: &[Vec<u8>], path: &Path, workers: usize) -> Vec<Journaled> {
    let one = |payloads: &[Vec<u8>]| -> Vec<Journaled> {
        payloads
            .iter()
            .filter_map(|payload| match Journaled::decode(payload) {
                Ok(record) => Some(record),
                Err(e) => {
                    tracing::warn!(journal = %path.display(), error = %e, "Unreadable journal record; ignored.");
                    None
                }
            })
            .collect()
    };
    if workers <= 1 || payloads.len() < 2 * DECODE_MIN {
        return one(payloads);
    }
    let per = payloads.len().div_ceil(workers).max(DECODE_MIN);
    std::thread::scope(|s| {
        let mut parts = payloads.chunks(per);
        let first = parts.next().unwrap_or_default();
        let others: Vec<_> = parts
            .map(|part| (part, s.spawn(move || one(part))))
            .collect();
        let mut out = one(first);
        for (part, handle) in others {
            // Decoding does not panic; if it did, that part is decoded again here.
            let mut records = handle.join().unwrap_or_else(|_| one(part));
            out.append(&mut records);
        }
        out
    })
}

/// Opens file `seq` for writing from its start: the spare, renamed, when there is one (its
/// blocks are already written), else a new file.
fn start_file(dir: &Path, seq: u64, spare: Option<PathBuf>) -> Result<File, Error> {
    let path = dir.join(file_name(seq));
    if let Some(spare) = spare
        && let Err(e) = fs::rename(&spare, &path)
    {
        tracing::warn!(error = %e, spare = %spare.display(), "Could not reuse the spare ingest journal file; starting a new one.");
        let _ = fs::remove_file(&spare);
    }
    // 0600 whatever the umask: a journal holds event payloads (SEC-13).
    OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(false)
        .mode(super::perms::FILE_MODE)
        .open(&path)
        .map_err(io(&path))
}

/// Reads, decodes and prepares the records of journal `files`, oldest first, and hands them to
/// `sink` a batch at a time, in journal order.
///
/// A pipeline, so that the cores share the work: one thread reads a batch of records, decodes
/// it on several threads and prepares it (ids allocated in journal order), while this thread
/// runs `sink` on the batch before. Only a few batches are in memory at a time besides what
/// `sink` keeps, whatever the journal's size.
fn pipeline(
    store: &Store,
    files: &[(u64, PathBuf)],
    mut sink: impl FnMut(Vec<PreparedIngest>) -> Result<(), Error>,
) -> Result<(), Error> {
    if files.is_empty() {
        return Ok(());
    }
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(DECODE_THREADS);
    std::thread::scope(|s| {
        let (batches, prepared) =
            std::sync::mpsc::sync_channel::<Result<Vec<PreparedIngest>, Error>>(2);
        s.spawn(move || {
            let read = || -> Result<(), Error> {
                for (seq, path) in files {
                    let mut frames = Frames::open(path, *seq)?;
                    loop {
                        let payloads = frames.take(REPLAY_BATCH)?;
                        if payloads.is_empty() {
                            break;
                        }
                        let records = decode(&payloads, path, workers);
                        drop(payloads);
                        let batch = records
                            .into_iter()
                            .map(|r| r.prepare(store))
                            .collect::<Result<Vec<_>, Error>>()?;
                        if batches.send(Ok(batch)).is_err() {
                            // The sink failed and stopped.
                            return Ok(());
                        }
                    }
                }
                Ok(())
            };
            if let Err(e) = read() {
                let _ = batches.send(Err(e));
            }
        });
        for batch in prepared {
            sink(batch?)?;
        }
        Ok(())
    })
}

/// Replays journal files into `store`, oldest first, exactly as ingesting their records one
/// after another would (the same prepare, decide and apply steps as the live writer), one sled
/// transaction per batch, and returns how many were new. Does not flush.
fn replay(store: &Store, files: &[(u64, PathBuf)]) -> Result<usize, Error> {
    let mut restored = 0;
    pipeline(store, files, |batch| {
        let outcomes = store.commit_prepared(&batch)?;
        restored += outcomes
            .iter()
            .filter(|o| matches!(o, IngestOutcome::Stored { .. }))
            .count();
        Ok(())
    })?;
    Ok(restored)
}

/// Journaled deliveries found on open ([`Journal::open_deferred`]): decided, in memory, and not
/// yet written to the state.
#[derive(Debug, Default)]
pub struct Replay {
    /// The deliveries decided new (not in the state), in journal order. Their dedupe windows
    /// are reserved in memory ([`Store::decide_ingests`]): write every one with
    /// [`Store::apply_ingests`] (the daemon's applier does, like live deliveries).
    pub new: Vec<PreparedIngest>,
    /// The journal files they came from, which hold them until the state does: remove them
    /// with [`Journal::remove_replayed`] once `new` is written and the state flushed, never
    /// before (a crash meanwhile replays them again; what was written by then is a duplicate).
    pub files: Vec<PathBuf>,
}

/// Decides the records of journal `files`, oldest first, exactly as ingesting them one after
/// another would, writing nothing to sled: the new ones, prepared and reserved.
fn decide(store: &Store, files: &[(u64, PathBuf)]) -> Result<Vec<PreparedIngest>, Error> {
    let mut new = Vec::new();
    pipeline(store, files, |batch| {
        let refs: Vec<&PreparedIngest> = batch.iter().collect();
        let outcomes = store.decide_ingests(&refs)?;
        drop(refs);
        new.extend(
            batch
                .into_iter()
                .zip(outcomes)
                .filter(|(_, o)| matches!(o, IngestOutcome::Stored { .. }))
                .map(|(p, _)| p),
        );
        Ok(())
    })?;
    Ok(new)
}

impl Journal {
    /// Opens the journal of `store`, replaying (idempotently) what earlier runs journaled but
    /// sled may not have flushed, then starting a fresh file. Returns the journal and how many
    /// records were replayed as new (not already in sled). For tools working on a stopped
    /// daemon's state; the daemon uses [`Journal::open_deferred`].
    pub fn open(store: &Store) -> Result<(Journal, usize), Error> {
        let dir = store.dir().to_owned();
        let old = existing(&dir)?;
        let restored = replay(store, &old)?;
        store.flush()?;
        for (_, path) in &old {
            fs::remove_file(path).map_err(io(path))?;
        }
        Ok((Self::start(dir, &old)?, restored))
    }

    /// Opens the journal of `store` without writing its records to sled: they are decided
    /// (each new one's dedupe window reserved in memory, so that a later delivery of its key is
    /// a duplicate at once) and returned, for the daemon's applier to write in batches like
    /// live deliveries while the daemon already serves. A fresh file is started; the old files
    /// stay until [`Journal::remove_replayed`] (after the writes and a flush).
    ///
    /// What a crash leaves: the old files, replayed again by the next open; whatever of
    /// [`Replay::new`] was written by then is a duplicate then, the rest is new: each journaled
    /// delivery is in the state exactly once.
    pub fn open_deferred(store: &Store) -> Result<(Journal, Replay), Error> {
        let dir = store.dir().to_owned();
        let old = existing(&dir)?;
        let new = decide(store, &old)?;
        let journal = Self::start(dir, &old)?;
        let files = old.into_iter().map(|(_, path)| path).collect();
        Ok((journal, Replay { new, files }))
    }

    /// Removes journal files that [`Journal::open_deferred`] replayed, once the state holds
    /// durably every delivery they hold (written and flushed). They are deleted, never recycled:
    /// files of earlier builds have records that verify in any file.
    pub fn remove_replayed(&self, files: &[PathBuf]) -> Result<(), Error> {
        for path in files {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(path)(e)),
            }
        }
        Ok(())
    }

    /// Starts the journal's next file after the `old` files (replayed, and kept or removed by
    /// the caller), recycling the newest spare.
    fn start(dir: PathBuf, old: &[(u64, PathBuf)]) -> Result<Journal, Error> {
        // Files of earlier builds are not recycled (their records carry no file tag): only a
        // spare, the newest one, is.
        let mut spares = files(&dir, SPARE_SUFFIX)?;
        let newest = spares.pop();
        for (_, path) in &spares {
            fs::remove_file(path).map_err(io(path))?;
        }
        let last = old
            .last()
            .map(|(s, _)| *s)
            .max(newest.as_ref().map(|(s, _)| *s));
        let seq = last.map_or(1, |s| s + 1);
        let file = Arc::new(start_file(&dir, seq, newest.map(|(_, path)| path))?);
        Ok(Journal {
            dir,
            inner: Mutex::new(Inner {
                seq,
                file,
                pending: Vec::new(),
                written: 0,
                spare: None,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends a record (in memory until the next [`Journal::sync`]). Rotate only once the same
    /// ingest is written to sled.
    pub fn append(&self, record: &IngestRecord) -> Result<(), Error> {
        let framed = Self::encode(&self.dir, record)?;
        self.append_encoded(&framed);
        Ok(())
    }

    /// Encodes a record as a framed journal record (length, checksum, payload), for
    /// [`Journal::append_encoded`]. Needs no journal (`dir`, the state directory, only names
    /// errors): call it on any thread.
    pub fn encode(dir: &Path, record: &IngestRecord) -> Result<Vec<u8>, Error> {
        let fail = |e: serde_json::Error| Error::Journal {
            path: dir.to_owned(),
            source: std::io::Error::other(e),
        };
        let event = serde_json::to_vec(&record.event).map_err(fail)?;
        let audit = record
            .audit
            .iter()
            .map(|a| serde_json::to_vec(a).map_err(fail))
            .collect::<Result<Vec<_>, Error>>()?;
        Self::compose(dir, &event, record, audit.iter().map(|a| Ok(a.as_slice())))
    }

    /// [`Journal::encode`] for a record already prepared for sled ([`Store::prepare_ingest`]):
    /// the event and the audit records are copied from their encoded sled values instead of
    /// being serialised a second time. Gives the same record as [`Journal::encode`] (but for the
    /// delivery's id in its audit records, which preparing adds).
    pub fn encode_prepared(
        dir: &Path,
        record: &IngestRecord,
        prepared: &PreparedIngest,
    ) -> Result<Vec<u8>, Error> {
        let json = |encoded| {
            codec::json_payload(encoded).ok_or_else(|| Error::Journal {
                path: dir.to_owned(),
                source: std::io::Error::other("a value not encoded as JSON"),
            })
        };
        let (event, audit) = prepared.encoded();
        Self::compose(dir, json(event)?, record, audit.map(json))
    }

    /// The framed record of `record` whose event's JSON is `event` and audit records' JSON
    /// `audit`: `raw` first (module doc), then the fields in [`IngestRecord`]'s order.
    fn compose<'a>(
        dir: &Path,
        event: &[u8],
        record: &IngestRecord,
        audit: impl Iterator<Item = Result<&'a [u8], Error>>,
    ) -> Result<Vec<u8>, Error> {
        use std::io::Write as _;

        let fail = |e: std::io::Error| Error::Journal {
            path: dir.to_owned(),
            source: e,
        };
        let mut framed = Vec::with_capacity(12 + event.len() + 320);
        framed.extend_from_slice(&[0u8; 12]);
        match event_head_len(event) {
            Some(head) => {
                framed.extend_from_slice(RAW_OPEN);
                write!(framed, "{},{head}", event.len()).map_err(fail)?;
                framed.extend_from_slice(RAW_EVENT);
            }
            None => framed.extend_from_slice(b"{\"event\":"),
        }
        framed.extend_from_slice(event);
        framed.extend_from_slice(b",\"rules\":");
        serde_json::to_writer(&mut framed, &record.rules)
            .map_err(|e| fail(std::io::Error::other(e)))?;
        write!(
            framed,
            ",\"now_ms\":{},\"dedupe_until_ms\":{},\"audit\":[",
            record.now_ms, record.dedupe_until_ms
        )
        .map_err(fail)?;
        for (i, a) in audit.enumerate() {
            if i > 0 {
                framed.push(b',');
            }
            framed.extend_from_slice(a?);
        }
        framed.push(b']');
        if let Some(revision) = &record.revision {
            framed.extend_from_slice(b",\"revision\":");
            serde_json::to_writer(&mut framed, revision)
                .map_err(|e| fail(std::io::Error::other(e)))?;
        }
        if !record.held.is_empty() {
            framed.extend_from_slice(b",\"held\":");
            serde_json::to_writer(&mut framed, &record.held)
                .map_err(|e| fail(std::io::Error::other(e)))?;
        }
        framed.push(b'}');
        Self::frame(dir, framed)
    }

    /// Fills in the length and checksum of a record whose payload follows 12 placeholder bytes.
    fn frame(dir: &Path, mut framed: Vec<u8>) -> Result<Vec<u8>, Error> {
        let payload = framed.get(12..).unwrap_or_default();
        let len = u32::try_from(payload.len()).map_err(|_| Error::Journal {
            path: dir.to_owned(),
            source: std::io::Error::other("record too large"),
        })?;
        let sum = checksum(payload);
        framed[..4].copy_from_slice(&len.to_le_bytes());
        framed[4..12].copy_from_slice(&sum);
        Ok(framed)
    }

    /// Appends a record made by [`Journal::encode`] (in memory until the next
    /// [`Journal::sync`]). Rotate only once the same ingest is written to sled.
    pub fn append_encoded(&self, framed: &[u8]) {
        let mut inner = self.lock();
        let start = inner.pending.len();
        inner.pending.extend_from_slice(framed);
        // The file's tag, so that a replay of this file after its reuse stops at the end of
        // what this use wrote.
        let tag = seq_tag(inner.seq);
        if let Some(t) = inner.pending.get_mut(start + 8..start + 12)
            && *t == CRC_TAG
        {
            t.copy_from_slice(&tag);
        }
    }

    /// Writes and `fdatasync`s everything appended so far. Only one caller syncs at a time
    /// (the writer's sync thread, or the writer itself while it rotates).
    pub fn sync(&self) -> Result<(), Error> {
        let (buf, at, file, seq) = {
            let mut inner = self.lock();
            if inner.pending.is_empty() {
                return Ok(());
            }
            let buf = std::mem::take(&mut inner.pending);
            let at = inner.written;
            inner.written += buf.len() as u64;
            let file = Arc::clone(&inner.file);
            (buf, at, file, inner.seq)
        };
        std::os::unix::fs::FileExt::write_all_at(&*file, &buf, at)
            .and_then(|()| file.sync_data())
            .map_err(|e| io(&self.dir.join(file_name(seq)))(e))
    }

    /// Bytes written to the current file.
    pub fn written(&self) -> u64 {
        self.lock().written
    }

    /// Starts a new file (after syncing what is pending into the old one) and returns the old
    /// file's path: retire it with [`Journal::retire`] once sled is flushed.
    pub fn rotate(&self) -> Result<PathBuf, Error> {
        self.sync()?;
        let mut inner = self.lock();
        let old = self.dir.join(file_name(inner.seq));
        let spare = inner.spare.take();
        inner.file = Arc::new(start_file(&self.dir, inner.seq + 1, spare)?);
        inner.seq += 1;
        inner.written = 0;
        Ok(old)
    }

    /// Retires the current file on a clean stop, once sled holds durably everything it holds
    /// (every delivery journaled is written to sled, and sled is flushed): like a rotated file,
    /// it becomes the spare or is deleted, so the next start replays nothing and finds no
    /// stale records to report as torn. Nothing may be appended afterwards.
    pub fn close(&self) -> Result<(), Error> {
        self.sync()?;
        let current = self.dir.join(file_name(self.lock().seq));
        self.retire(&current)
    }

    /// Retires a rotated file whose records sled now holds durably: it becomes the spare that
    /// the next rotation writes over, or is deleted when there is one already.
    pub fn retire(&self, path: &Path) -> Result<(), Error> {
        let mut inner = self.lock();
        match seq_of(path, SUFFIX) {
            Some(seq) if inner.spare.is_none() => {
                let spare = self.dir.join(spare_name(seq));
                fs::rename(path, &spare).map_err(io(path))?;
                inner.spare = Some(spare);
                Ok(())
            }
            _ => fs::remove_file(path).map_err(io(path)),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use serde_json::{Map, json};

    use super::*;
    use crate::manifest::IntegrationId;
    use crate::platforms::PlatformKind;

    /// The store in `dir` and its journal (replayed): with how many records were restored.
    fn open_both(dir: &Path) -> (Store, Journal, usize) {
        let store = Store::open(dir).unwrap();
        let (journal, restored) = Journal::open(&store).unwrap();
        (store, journal, restored)
    }

    /// A Freshdesk delivery `id` on integration `fd` that triggered rule `r`, without audit
    /// records.
    pub(crate) fn record(id: &str) -> IngestRecord {
        IngestRecord {
            event: Event {
                platform: PlatformKind::Freshdesk,
                integration: IntegrationId::parse("fd").unwrap(),
                name: "ticket_created".into(),
                id: id.into(),
                time: None,
                received_at_ms: 1,
                actor: None,
                actors: Vec::new(),
                objects: Map::new(),
                changes: Map::new(),
                payload: json!({"n": id}),
            },
            rules: vec!["r".into()],
            now_ms: 1,
            dedupe_until_ms: u64::MAX,
            audit: Vec::new(),
            revision: Some("0123abcd".into()),
            // Held by its rule's action budget: due later than it was received.
            held: [("r".to_owned(), 120_000)].into(),
        }
    }

    #[test]
    fn journaled_but_unflushed_events_are_replayed_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_store, journal, restored) = open_both(dir.path());
            assert_eq!(restored, 0);
            journal.append(&record("a")).unwrap();
            journal.append(&record("b")).unwrap();
            journal.sync().unwrap();
            // sled was never written (as if the crash came before its background flush).
        }
        let (store, journal, restored) = open_both(dir.path());
        assert_eq!(restored, 2);
        assert_eq!(store.queue_depth(), 2);
        assert!(store.event_by_key("fd/a").unwrap().is_some());
        // The jobs its action budget held are due when the record said, not when received.
        assert_eq!(store.oldest_due_ms().unwrap(), Some(120_000));
        assert!(store.lease_due(119_999, 1_000, 10).unwrap().is_empty());
        let leased = store.lease_due(120_000, 1_000, 10).unwrap();
        assert_eq!(leased.len(), 2);
        assert!(
            leased
                .iter()
                .all(|j| j.due_ms == 120_000 && j.created_ms == 1)
        );
        drop(leased);
        // Replayed into sled and flushed: the old file is gone, and opening again adds nothing.
        drop(journal);
        drop(store);
        let (store, _, restored) = open_both(dir.path());
        assert_eq!(restored, 0);
        assert_eq!(store.queue_depth(), 2);
    }

    #[test]
    fn encoded_records_replay_like_appended_ones() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_store, journal, _) = open_both(dir.path());
            let framed = Journal::encode(dir.path(), &record("a")).unwrap();
            assert_eq!(&framed[4..12], &checksum(&framed[12..]));
            journal.append_encoded(&framed);
            journal.append(&record("b")).unwrap();
            journal.sync().unwrap();
        }
        let (store, _, restored) = open_both(dir.path());
        assert_eq!(restored, 2);
        assert!(store.event_by_key("fd/a").unwrap().is_some());
        assert!(store.event_by_key("fd/b").unwrap().is_some());
    }

    /// A record framed from its prepared sled values is the record `encode` gives.
    #[test]
    fn prepared_records_encode_like_records() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut r = record("a");
        r.rules = vec!["r1".into(), "r \"2\"".into()];
        r.audit = vec![
            AuditRecord {
                at_ms: 1,
                kind: crate::state::AuditKind::EventAccepted,
                resource_type: "event".into(),
                resource_id: "fd/a".into(),
                detail: serde_json::json!({"name": "ticket_created"}),
            };
            2
        ];
        let prepared = store.prepare_ingest(&r).unwrap();
        let fast = Journal::encode_prepared(dir.path(), &r, &prepared).unwrap();
        let slow = Journal::encode(dir.path(), &r).unwrap();
        // The prepared audit records name the delivery's id (a replay names the id it then
        // gets): all else is the same.
        let value = |framed: &[u8]| {
            let mut v = serde_json::from_slice::<serde_json::Value>(&framed[12..]).unwrap();
            for a in v["audit"].as_array_mut().unwrap() {
                a["detail"].as_object_mut().unwrap().remove("event");
            }
            v
        };
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&fast[12..]).unwrap()["audit"][0]["detail"]
                ["event"],
            prepared.event_id().to_string()
        );
        assert_eq!(value(&fast), value(&slow));
        assert_eq!(&fast[4..12], &checksum(&fast[12..]));
        assert_eq!(
            u32::from_le_bytes(fast[..4].try_into().unwrap()) as usize,
            fast.len() - 12
        );
    }

    #[test]
    fn a_torn_tail_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_store, journal, _) = open_both(dir.path());
            journal.append(&record("a")).unwrap();
            journal.sync().unwrap();
        }
        let (_, path) = existing(dir.path()).unwrap().pop().unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        let (_store, _, restored) = open_both(dir.path());
        assert_eq!(restored, 1);
    }

    /// Records of earlier builds (SHA-256 prefix) still replay after an upgrade; a record whose
    /// CRC does not match its payload ends the replay of its file.
    #[test]
    fn sha256_records_replay_and_a_bad_crc_is_torn() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_store, journal, _) = open_both(dir.path());
            let mut old = Journal::encode(dir.path(), &record("a")).unwrap();
            let sha = Sha256::digest(&old[12..]);
            old[4..12].copy_from_slice(&sha[..8]);
            journal.append_encoded(&old);
            let mut bad = Journal::encode(dir.path(), &record("b")).unwrap();
            bad[4] ^= 1;
            journal.append_encoded(&bad);
            journal.append(&record("c")).unwrap();
            journal.sync().unwrap();
        }
        let (store, _, restored) = open_both(dir.path());
        assert_eq!(restored, 1);
        assert!(store.event_by_key("fd/a").unwrap().is_some());
        assert!(store.event_by_key("fd/b").unwrap().is_none());
        assert!(store.event_by_key("fd/c").unwrap().is_none());
    }

    #[test]
    fn rotation_retires_files_once_sled_is_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let (store, journal, _) = open_both(dir.path());
        store
            .ingest_audited(&record("a").event, &["r".into()], 1, u64::MAX, &[])
            .unwrap();
        journal.append(&record("a")).unwrap();
        let old = journal.rotate().unwrap();
        store.flush().unwrap();
        journal.retire(&old).unwrap();
        assert_eq!(existing(dir.path()).unwrap().len(), 1);
        assert!(journal.written() == 0);
    }

    /// A file written over a spare replays only what its new use wrote: the records left from
    /// its previous use carry that use's tag. New files are numbered above every spare.
    #[test]
    fn a_recycled_file_replays_only_its_new_records() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_store, journal, _) = open_both(dir.path());
            for id in ["a", "b", "c"] {
                journal.append(&record(id)).unwrap();
            }
            let first = journal.rotate().unwrap();
            journal.retire(&first).unwrap();
            assert_eq!(files(dir.path(), SPARE_SUFFIX).unwrap().len(), 1);
            let second = journal.rotate().unwrap();
            assert!(
                files(dir.path(), SPARE_SUFFIX).unwrap().is_empty(),
                "the third file is the first one, reused"
            );
            journal.retire(&second).unwrap();
            // As long as "a", so that the next record of the first use starts right after it.
            journal.append(&record("d")).unwrap();
            journal.sync().unwrap();
            let (seq, path) = existing(dir.path()).unwrap().pop().unwrap();
            assert_eq!(seq, 3);
            assert!(fs::metadata(&path).unwrap().len() > journal.written());
        }
        let (store, journal, restored) = open_both(dir.path());
        assert_eq!(restored, 1);
        assert!(store.event_by_key("fd/d").unwrap().is_some());
        for id in ["a", "b", "c"] {
            assert!(store.event_by_key(&format!("fd/{id}")).unwrap().is_none());
        }
        assert!(
            files(dir.path(), SPARE_SUFFIX).unwrap().is_empty(),
            "the spare (the second file) became the new file"
        );
        let journals: Vec<u64> = existing(dir.path())
            .unwrap()
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert_eq!(journals, [4], "above the spare's 2 and the replayed 3");
        assert_eq!(journal.lock().seq, 4);
    }

    /// A clean stop closes the journal once sled holds its records: the next open replays
    /// nothing and reports nothing torn, whether the file became the spare or was deleted.
    #[test]
    fn a_closed_journal_leaves_nothing_to_replay() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..3 {
            let (store, journal, restored) = open_both(dir.path());
            assert_eq!(restored, 0, "round {round}");
            let rec = record(&format!("r{round}"));
            journal.append(&rec).unwrap();
            store.ingest_batch(&[&rec]).unwrap();
            store.flush().unwrap();
            if round == 1 {
                // A spare already there: the closed file is deleted instead.
                let old = journal.rotate().unwrap();
                journal.retire(&old).unwrap();
            }
            journal.close().unwrap();
            assert!(existing(dir.path()).unwrap().is_empty(), "round {round}");
            assert_eq!(files(dir.path(), SPARE_SUFFIX).unwrap().len(), 1);
        }
        let (store, _, restored) = open_both(dir.path());
        assert_eq!(restored, 0);
        for round in 0..3 {
            assert!(
                store
                    .event_by_key(&format!("fd/r{round}"))
                    .unwrap()
                    .is_some()
            );
        }
    }

    /// With only a spare left (the journal files removed by hand), the new file is still
    /// numbered above it, so the spare's records do not become the new file's.
    #[test]
    fn a_lone_spare_is_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_store, journal, _) = open_both(dir.path());
            journal.append(&record("a")).unwrap();
            let old = journal.rotate().unwrap();
            journal.retire(&old).unwrap();
        }
        for (_, path) in existing(dir.path()).unwrap() {
            fs::remove_file(path).unwrap();
        }
        for _ in 0..2 {
            let (store, _, restored) = open_both(dir.path());
            assert_eq!(restored, 0);
            assert!(store.event_by_key("fd/a").unwrap().is_none());
        }
    }

    /// Without the file tag, the first use's records would replay again from a reused file.
    #[test]
    fn a_record_of_another_file_does_not_verify() {
        let framed = Journal::encode(Path::new("."), &record("a")).unwrap();
        let payload = &framed[12..];
        let mut sum = [0u8; 8];
        sum.copy_from_slice(&framed[4..12]);
        assert!(
            verify(&sum, payload, 7),
            "an untagged (earlier build) record"
        );
        sum[4..].copy_from_slice(&seq_tag(7));
        assert!(verify(&sum, payload, 7));
        assert!(!verify(&sum, payload, 8));
        assert_ne!(seq_tag(7), CRC_TAG);
    }

    /// A replay of several batches (and two files) gives exactly what ingesting the records
    /// one by one gives: duplicates and redeliveries after a closed window across batch
    /// boundaries, records that sled already held before the crash (the usual case: only its
    /// flush was lost), ids in journal order. Compared field by field with a store that
    /// ingested the same records one after another.
    /// Records of 400 keys, some delivered again within their dedupe window (duplicates) and
    /// some after it (redeliveries), with 0 to 2 rules and an audit record each: more than two
    /// replay batches.
    fn mixed_records() -> Vec<IngestRecord> {
        use crate::state::AuditKind;

        let mut x = 0x5eed_u64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut now = 1_000;
        (0..2 * REPLAY_BATCH + 300)
            .map(|i| {
                now += next(3);
                let mut r = record(&format!("k{}", next(400)));
                // Tells the deliveries of a key apart.
                r.event.payload = json!({"n": i});
                r.rules = (0..next(3)).map(|k| format!("r{k}")).collect();
                r.now_ms = now;
                r.dedupe_until_ms = now + 1 + next(600);
                r.audit = vec![AuditRecord {
                    at_ms: now,
                    kind: AuditKind::EventAccepted,
                    resource_type: "event".into(),
                    resource_id: r.event.key(),
                    detail: json!({"i": i}),
                }];
                r
            })
            .collect()
    }

    /// `records` ingested one by one into a new store: the store, and which were stored.
    fn one_by_one(records: &[IngestRecord]) -> (tempfile::TempDir, Store, Vec<bool>) {
        let dir = tempfile::tempdir().unwrap();
        let one = Store::open(dir.path()).unwrap();
        let stored: Vec<bool> = records
            .iter()
            .map(|r| {
                let outcome = one
                    .ingest_audited(&r.event, &r.rules, r.now_ms, r.dedupe_until_ms, &r.audit)
                    .unwrap();
                matches!(outcome, IngestOutcome::Stored { .. })
            })
            .collect();
        (dir, one, stored)
    }

    /// A crash's leftovers: sled held (flushed) the first `held` records; the journal holds
    /// them too, and everything after them, in two files.
    fn crashed_with(dir: &Path, records: &[IngestRecord], held: usize) {
        let (store, journal, _) = open_both(dir);
        let first: Vec<&IngestRecord> = records[..held].iter().collect();
        store.ingest_batch(&first).unwrap();
        store.flush().unwrap();
        for (i, r) in records.iter().enumerate() {
            journal.append(r).unwrap();
            if i == REPLAY_BATCH + 100 {
                journal.rotate().unwrap();
            }
        }
        journal.sync().unwrap();
        assert_eq!(existing(dir).unwrap().len(), 2);
    }

    /// `many` holds what `one` does: the same deliveries (the latest of each key by id), dedupe
    /// windows, jobs in the same order, audit records.
    fn assert_same_state(many: &Store, one: &Store, records: &[IngestRecord]) {
        use crate::state::tests_queue::check_consistency;

        assert_eq!(many.queue_depth(), one.queue_depth());
        assert_eq!(
            many.t().unwrap().outbox.len(),
            one.t().unwrap().outbox.len()
        );
        assert_eq!(many.t().unwrap().audit.len(), one.t().unwrap().audit.len());
        assert_eq!(
            many.t().unwrap().events.len(),
            one.t().unwrap().events.len()
        );
        let keys: std::collections::BTreeSet<String> =
            records.iter().map(|r| r.event.key()).collect();
        for key in &keys {
            assert_eq!(
                many.dedupe_until(key).unwrap(),
                one.dedupe_until(key).unwrap(),
                "{key}"
            );
            // The latest delivery by id is the latest one in the journal.
            assert_eq!(
                many.event_by_key(key).unwrap(),
                one.event_by_key(key).unwrap(),
                "{key}"
            );
        }
        // Jobs in journal order: by id, the same rules of the same deliveries.
        let jobs = |store: &Store| -> Vec<(String, String, u64)> {
            store
                .t()
                .unwrap()
                .outbox
                .iter()
                .values()
                .map(|v| {
                    let job: crate::state::outbox::Job =
                        serde_json::from_slice(&v.unwrap()[1..]).unwrap();
                    (job.event_key, job.rule, job.created_ms)
                })
                .collect()
        };
        assert_eq!(jobs(many), jobs(one));
        check_consistency(many);
    }

    #[test]
    fn a_big_replay_equals_ingesting_one_by_one() {
        let records = mixed_records();
        let (_one_dir, one, stored) = one_by_one(&records);
        assert!(stored.iter().any(|s| !s), "some duplicates");
        let keys: std::collections::BTreeSet<String> =
            records.iter().map(|r| r.event.key()).collect();
        assert!(
            keys.iter().any(|k| records
                .iter()
                .zip(&stored)
                .filter(|(r, s)| **s && r.event.key() == *k)
                .count()
                > 1),
            "some redeliveries after a closed window"
        );

        let held = 700;
        let dir = tempfile::tempdir().unwrap();
        crashed_with(dir.path(), &records, held);
        let (many, _, restored) = open_both(dir.path());
        let new_in_journal = stored[held..].iter().filter(|s| **s).count();
        assert_eq!(restored, new_in_journal);
        assert_same_state(&many, &one, &records);
        assert!(
            existing(dir.path()).unwrap().len() == 1,
            "replayed files retired"
        );
    }

    /// The daemon's replay: decided at open, written later in batches. A crash half-way through
    /// the writing leaves the files, and the next open decides exactly what is not written
    /// yet; once all is written, the state is what ingesting one by one gives, and the files
    /// go only when [`Journal::remove_replayed`] is called.
    #[test]
    fn a_deferred_replay_interrupted_by_a_crash_equals_ingesting_one_by_one() {
        let records = mixed_records();
        let (_one_dir, one, stored) = one_by_one(&records);
        let held = 700;
        let dir = tempfile::tempdir().unwrap();
        crashed_with(dir.path(), &records, held);
        let new_in_journal = stored[held..].iter().filter(|s| **s).count();
        let written = {
            let store = Store::open(dir.path()).unwrap();
            let (_journal, replay) = Journal::open_deferred(&store).unwrap();
            assert_eq!(replay.new.len(), new_in_journal);
            assert_eq!(replay.files.len(), 2);
            // Nothing is written at open: the held records only.
            assert_eq!(
                store.t().unwrap().events.len(),
                stored[..held].iter().filter(|s| **s).count()
            );
            // A later delivery of a replayed key is a duplicate at once.
            let last = records.last().unwrap();
            let again = store.prepare_ingest(last).unwrap();
            assert_eq!(
                store.decide_ingests(&[&again]).unwrap(),
                vec![IngestOutcome::Duplicate]
            );
            // Half is written, then the crash (sled flushed what was written).
            let half: Vec<&PreparedIngest> = replay.new[..new_in_journal / 2].iter().collect();
            for chunk in half.chunks(REPLAY_BATCH / 2) {
                store.apply_ingests(chunk).unwrap();
            }
            store.flush().unwrap();
            half.len()
        };
        assert_eq!(
            existing(dir.path()).unwrap().len(),
            3,
            "old files and a new one"
        );
        let store = Store::open(dir.path()).unwrap();
        let (journal, replay) = Journal::open_deferred(&store).unwrap();
        assert_eq!(replay.new.len(), new_in_journal - written);
        assert_eq!(replay.files.len(), 3);
        let rest: Vec<&PreparedIngest> = replay.new.iter().collect();
        for chunk in rest.chunks(REPLAY_BATCH) {
            store.apply_ingests(chunk).unwrap();
        }
        store.flush().unwrap();
        journal.remove_replayed(&replay.files).unwrap();
        assert_eq!(existing(dir.path()).unwrap().len(), 1, "the current file");
        assert_same_state(&store, &one, &records);
        drop(journal);
        drop(store);
        let (_store, _journal, restored) = open_both(dir.path());
        assert_eq!(restored, 0, "nothing left to replay");
    }

    /// A record framed as builds before `raw` wrote it: the whole record serialised.
    fn encode_without_raw(record: &IngestRecord) -> Vec<u8> {
        let mut framed = vec![0u8; 12];
        serde_json::to_writer(&mut framed, record).unwrap();
        let payload = framed[12..].to_vec();
        framed[..4].copy_from_slice(&u32::try_from(payload.len()).unwrap().to_le_bytes());
        framed[4..12].copy_from_slice(&checksum(&payload));
        framed
    }

    /// A record as JSON, to compare records (`IngestRecord` has no `PartialEq`).
    fn as_value(record: &IngestRecord) -> serde_json::Value {
        serde_json::to_value(record).unwrap()
    }

    /// A record written by this build is plain JSON that decodes to the record whole (as a
    /// build that does not know `raw` decodes it), and its `raw` field gives the event's exact
    /// stored bytes and what an ingest reads, even when the event's strings look like the
    /// fields around them.
    #[test]
    fn a_raw_record_is_the_record_and_its_event_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = record("x\",\"time\":\"1\"},\"rules\":[]");
        r.event.name = ",\"time\":".into();
        r.event.time = Some("2026-12-06T00:00:00Z".into());
        r.event.payload = json!({"time": ",\"time\":", "n": [1, 2, {"a": "b"}]});
        r.audit = vec![AuditRecord {
            at_ms: 5,
            kind: crate::state::AuditKind::EventAccepted,
            resource_type: "event".into(),
            resource_id: r.event.key(),
            detail: json!({"name": "x"}),
        }];
        let framed = Journal::encode(dir.path(), &r).unwrap();
        let payload = &framed[12..];
        assert!(
            payload.starts_with(RAW_OPEN),
            "{}",
            String::from_utf8_lossy(payload)
        );
        let whole: IngestRecord = serde_json::from_slice(payload).unwrap();
        assert_eq!(as_value(&whole), as_value(&r));
        let Some(Journaled::Raw {
            head,
            key,
            event,
            ingest,
            audit,
        }) = Journaled::raw(payload)
        else {
            panic!("read by its raw field");
        };
        assert_eq!(event, codec::encode("t", "k", &r.event).unwrap());
        assert_eq!(key, r.event.key());
        assert_eq!(
            (head.platform, head.integration, head.name, head.id),
            (
                r.event.platform,
                r.event.integration.clone(),
                r.event.name.clone(),
                r.event.id.clone()
            )
        );
        assert_eq!(
            ingest,
            Encoded {
                rules: r.rules.clone(),
                now_ms: r.now_ms,
                dedupe_until_ms: r.dedupe_until_ms,
                revision: r.revision.clone(),
                held: r.held.clone(),
            }
        );
        assert_eq!(serde_json::to_value(&audit).unwrap(), json!(r.audit));
        // Without a revision (records of earlier builds have none).
        r.revision = None;
        let framed = Journal::encode(dir.path(), &r).unwrap();
        let Some(Journaled::Raw { ingest, .. }) = Journaled::raw(&framed[12..]) else {
            panic!("read by its raw field");
        };
        assert_eq!(ingest.revision, None);
    }

    /// A `raw` field that does not fit its record (a build that wrote it differently) is not
    /// trusted: the record is decoded whole.
    #[test]
    fn a_raw_field_that_does_not_fit_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let r = record("a");
        let framed = Journal::encode(dir.path(), &r).unwrap();
        let payload = String::from_utf8(framed[12..].to_vec()).unwrap();
        let (e, h) = {
            let Some(Journaled::Raw { event, head, .. }) = Journaled::raw(payload.as_bytes())
            else {
                panic!("read by its raw field");
            };
            let _ = head;
            let h = event_head_len(&event[1..]).unwrap();
            (event.len() - 1, h)
        };
        let raw = format!("{{\"raw\":[{e},{h}],");
        assert!(payload.starts_with(&raw));
        for wrong in [
            format!("{{\"raw\":[{},{h}],", e - 1),
            format!("{{\"raw\":[{},{h}],", e + 1),
            format!("{{\"raw\":[{e},{}],", h - 1),
            format!("{{\"raw\":[{e},{}],", e + 1),
            format!("{{\"raw\":[{e},-{h}],"),
            format!("{{\"raw\":[{e}],"),
            "{\"raw\":[],".to_owned(),
        ] {
            let changed = payload.replacen(&raw, &wrong, 1);
            assert!(Journaled::raw(changed.as_bytes()).is_none(), "{wrong}");
            let Ok(Journaled::Full(whole)) = Journaled::decode(changed.as_bytes()) else {
                panic!("decoded whole: {wrong}");
            };
            assert_eq!(as_value(&whole), as_value(&r));
        }
    }

    /// A journal of records written by earlier builds (no `raw`) and by this one, mixed in
    /// the same files (an upgrade after a crash, then a crash again): replayed, deferred or
    /// not, it gives what ingesting the records one by one gives.
    #[test]
    fn old_and_new_records_mixed_replay_like_ingesting_one_by_one() {
        let records = mixed_records();
        let (_one_dir, one, stored) = one_by_one(&records);
        for deferred in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            {
                let (_store, journal, _) = open_both(dir.path());
                for (i, r) in records.iter().enumerate() {
                    // Runs of each kind, and single ones, across the batch boundaries.
                    if (i / 7) % 2 == 0 || i % 5 == 0 {
                        journal.append_encoded(&encode_without_raw(r));
                    } else {
                        journal.append(r).unwrap();
                    }
                    if i == REPLAY_BATCH + 100 {
                        journal.rotate().unwrap();
                    }
                }
                journal.sync().unwrap();
            }
            let store = Store::open(dir.path()).unwrap();
            let restored = if deferred {
                let (_journal, replay) = Journal::open_deferred(&store).unwrap();
                let n = replay.new.len();
                for chunk in replay.new.chunks(REPLAY_BATCH) {
                    let refs: Vec<&PreparedIngest> = chunk.iter().collect();
                    store.apply_ingests(&refs).unwrap();
                }
                n
            } else {
                Journal::open(&store).unwrap().1
            };
            assert_eq!(restored, stored.iter().filter(|s| **s).count());
            assert_same_state(&store, &one, &records);
        }
    }

    /// What the model test does to the journal.
    #[derive(Debug, Clone)]
    enum Op {
        /// Append `n` records.
        Append(usize),
        Sync,
        /// Rotate (syncing first).
        Rotate,
        /// Retire the oldest rotated file (as a checkpoint does once sled is flushed).
        Retire,
        /// Stop without syncing, then open the journal again (replaying it).
        Crash,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        prop_oneof![
            3 => (1..4usize).prop_map(Op::Append),
            2 => Just(Op::Sync),
            2 => Just(Op::Rotate),
            2 => Just(Op::Retire),
            1 => Just(Op::Crash),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]

        /// Random appends, syncs, rotations, retirements and crashes against a model: a replay
        /// brings back exactly the synced records of the files not retired, never a record of
        /// a retired file (whose file may be in use again), never an unsynced one. All records
        /// have the same length, so a reused file's old records start exactly where the new
        /// ones end.
        #[test]
        fn replays_match_the_model(ops in proptest::collection::vec(op(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let mut store = Store::open(dir.path()).unwrap();
            let mut journal = Journal::open(&store).unwrap().0;
            let mut next = 0;
            // Records appended, not synced; synced, in the current file; per rotated file.
            let (mut unsynced, mut current): (Vec<String>, Vec<String>) = (vec![], vec![]);
            let mut rotated: std::collections::VecDeque<(PathBuf, Vec<String>)> =
                std::collections::VecDeque::new();
            // Records the state holds (replayed), and every record ever appended.
            let mut expected = std::collections::BTreeSet::new();
            let mut all = Vec::new();
            for op in ops {
                match op {
                    Op::Append(n) => {
                        for _ in 0..n {
                            let id = format!("e{next:05}");
                            next += 1;
                            journal.append(&record(&id)).unwrap();
                            all.push(id.clone());
                            unsynced.push(id);
                        }
                    }
                    Op::Sync => {
                        journal.sync().unwrap();
                        current.append(&mut unsynced);
                    }
                    Op::Rotate => {
                        current.append(&mut unsynced);
                        let old = journal.rotate().unwrap();
                        rotated.push_back((old, std::mem::take(&mut current)));
                    }
                    Op::Retire => {
                        // Not written to sled first, as a checkpoint would: so that a replay
                        // of a retired record shows (sled would hide it as a duplicate, until
                        // its dedupe window expired).
                        if let Some((old, _)) = rotated.pop_front() {
                            journal.retire(&old).unwrap();
                        }
                    }
                    Op::Crash => {
                        drop(journal);
                        drop(store);
                        unsynced.clear();
                        for (_, records) in rotated.drain(..) {
                            expected.extend(records);
                        }
                        expected.extend(current.drain(..));
                        store = Store::open(dir.path()).unwrap();
                        journal = Journal::open(&store).unwrap().0;
                        for id in &all {
                            let held = store.event_by_key(&format!("fd/{id}")).unwrap().is_some();
                            proptest::prop_assert_eq!(held, expected.contains(id), "record {}", id);
                        }
                    }
                }
            }
        }
    }
}
