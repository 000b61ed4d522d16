//! The ingest journal: what makes a webhook acknowledgement durable quickly.
//!
//! sled's own flush is slow (milliseconds, whatever the batch), and a webhook may be answered
//! 2xx only once its event is on disk. So each accepted event is appended to this journal, and
//! the journal is `fdatasync`ed — one sync for every delivery that arrived meanwhile (group
//! commit) — while the daemon's writer decides which deliveries are new; new ones are written
//! to sled *without* flushing, before the answer or, under load, within milliseconds after it
//! (`daemon::writer`). Every few seconds, once every journaled delivery is in sled, a
//! checkpoint starts a new journal file, flushes sled (which then holds everything the old file
//! holds) and deletes the old file; the daemon runs the flush and the deletion on a thread of
//! their own, so that ingest goes on during the flush. On open, whatever journal files exist are
//! replayed into sled; replay is idempotent because ingest deduplicates by event key.
//!
//! File format: records of `len: u32 LE ‖ checksum: 8 bytes ‖ payload: JSON`, where the checksum is
//! the payload's CRC-32 (u32 LE) followed by the tag `crc1`; records written by earlier builds
//! carry the first 8 bytes of the payload's SHA-256 instead, and are still read. A torn record at
//! the end of a file (a crash mid-write) fails its length or checksum and ends the replay of that
//! file; it was never acknowledged.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use super::inbox::Prepared as PreparedIngest;
use super::{AuditRecord, Error, IngestOutcome, Store};
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
    file: File,
    /// Records appended since the last sync.
    pending: Vec<u8>,
    /// Bytes in the current file.
    written: u64,
}

/// Records replayed per sled transaction on open.
const REPLAY_BATCH: usize = 1024;

const PREFIX: &str = "ingest-";
const SUFFIX: &str = ".journal";

fn file_name(seq: u64) -> String {
    format!("{PREFIX}{seq:020}{SUFFIX}")
}

/// The tag that marks a CRC-32 checksum.
const CRC_TAG: [u8; 4] = *b"crc1";

/// The checksum of a record's payload: CRC-32 ‖ [`CRC_TAG`] (a fraction of SHA-256's cost on the
/// request threads, and all a torn write needs).
fn checksum(payload: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out[4..].copy_from_slice(&CRC_TAG);
    out
}

/// Whether `sum` is the checksum of `payload`: CRC-32, or the SHA-256 prefix of records written
/// by earlier versions (still replayed after an upgrade).
fn verify(sum: &[u8], payload: &[u8]) -> bool {
    if sum.get(4..) == Some(&CRC_TAG[..]) && sum == checksum(payload) {
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
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name
            .strip_prefix(PREFIX)
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse().ok())
        {
            out.push((seq, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every intact record of one file.
fn read_records(path: &Path) -> Result<Vec<IngestRecord>, Error> {
    let mut reader = BufReader::new(File::open(path).map_err(io(path))?);
    let mut out = Vec::new();
    loop {
        let mut header = [0u8; 12];
        match reader.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(io(path)(e)),
        }
        let mut len = [0u8; 4];
        len.copy_from_slice(&header[..4]);
        let len = u32::from_le_bytes(len) as usize;
        let mut payload = vec![0u8; len];
        if reader.read_exact(&mut payload).is_err() || !verify(&header[4..], &payload) {
            tracing::warn!(journal = %path.display(), "Torn record at the end of the ingest journal (never acknowledged); ignored.");
            break;
        }
        match serde_json::from_slice(&payload) {
            Ok(record) => out.push(record),
            Err(e) => {
                tracing::warn!(journal = %path.display(), error = %e, "Unreadable journal record; ignored.");
            }
        }
    }
    Ok(out)
}

fn create(dir: &Path, seq: u64) -> Result<File, Error> {
    let path = dir.join(file_name(seq));
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(io(&path))
}

impl Journal {
    /// Opens the journal of `store`, replaying (idempotently) what earlier runs journaled but
    /// sled may not have flushed, then starting a fresh file. Returns the journal and how many
    /// records were replayed as new (not already in sled).
    pub fn open(store: &Store) -> Result<(Journal, usize), Error> {
        let dir = store.dir().to_owned();
        let old = existing(&dir)?;
        let mut restored = 0;
        for (_, path) in &old {
            let records = read_records(path)?;
            for chunk in records.chunks(REPLAY_BATCH) {
                let chunk: Vec<&IngestRecord> = chunk.iter().collect();
                for outcome in store.ingest_batch(&chunk)? {
                    if let IngestOutcome::Stored { .. } = outcome? {
                        restored += 1;
                    }
                }
            }
        }
        store.flush()?;
        for (_, path) in &old {
            fs::remove_file(path).map_err(io(path))?;
        }
        let seq = old.last().map_or(1, |(s, _)| s + 1);
        let file = create(&dir, seq)?;
        let journal = Journal {
            dir,
            inner: Mutex::new(Inner {
                seq,
                file,
                pending: Vec::new(),
                written: 0,
            }),
        };
        Ok((journal, restored))
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
        let mut framed = vec![0u8; 12];
        serde_json::to_writer(&mut framed, record).map_err(|e| Error::Journal {
            path: dir.to_owned(),
            source: std::io::Error::other(e),
        })?;
        Self::frame(dir, framed)
    }

    /// [`Journal::encode`] for a record already prepared for sled ([`Store::prepare_ingest`]):
    /// the event and the audit records are copied from their encoded sled values instead of
    /// being serialised a second time. Gives the same record as [`Journal::encode`].
    pub fn encode_prepared(
        dir: &Path,
        record: &IngestRecord,
        prepared: &PreparedIngest,
    ) -> Result<Vec<u8>, Error> {
        let fail = |e: std::io::Error| Error::Journal {
            path: dir.to_owned(),
            source: e,
        };
        let json = |encoded| {
            super::codec::json_payload(encoded)
                .ok_or_else(|| fail(std::io::Error::other("a value not encoded as JSON")))
        };
        let (event, audit) = prepared.encoded();
        let event = json(event)?;
        let mut framed = Vec::with_capacity(12 + event.len() + 256);
        framed.extend_from_slice(&[0u8; 12]);
        framed.extend_from_slice(b"{\"event\":");
        framed.extend_from_slice(event);
        framed.extend_from_slice(b",\"rules\":");
        serde_json::to_writer(&mut framed, &record.rules)
            .map_err(|e| fail(std::io::Error::other(e)))?;
        framed.extend_from_slice(b",\"now_ms\":");
        framed.extend_from_slice(record.now_ms.to_string().as_bytes());
        framed.extend_from_slice(b",\"dedupe_until_ms\":");
        framed.extend_from_slice(record.dedupe_until_ms.to_string().as_bytes());
        framed.extend_from_slice(b",\"audit\":[");
        for (i, a) in audit.enumerate() {
            if i > 0 {
                framed.push(b',');
            }
            framed.extend_from_slice(json(a)?);
        }
        framed.extend_from_slice(b"]}");
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
        self.lock().pending.extend_from_slice(framed);
    }

    /// Writes and `fdatasync`s everything appended so far. Only one caller (the committer)
    /// syncs at a time.
    pub fn sync(&self) -> Result<(), Error> {
        let (buf, file, path) = {
            let mut inner = self.lock();
            if inner.pending.is_empty() {
                return Ok(());
            }
            let buf = std::mem::take(&mut inner.pending);
            inner.written += buf.len() as u64;
            let file = inner.file.try_clone().map_err(io(&self.dir))?;
            (buf, file, self.dir.join(file_name(inner.seq)))
        };
        let mut file = file;
        file.write_all(&buf).map_err(io(&path))?;
        file.sync_data().map_err(io(&path))
    }

    /// Bytes written to the current file.
    pub fn written(&self) -> u64 {
        self.lock().written
    }

    /// Starts a new file (after syncing what is pending into the old one) and returns the old
    /// file's path: delete it with [`Journal::retire`] once sled is flushed.
    pub fn rotate(&self) -> Result<PathBuf, Error> {
        self.sync()?;
        let mut inner = self.lock();
        let old = self.dir.join(file_name(inner.seq));
        inner.seq += 1;
        inner.file = create(&self.dir, inner.seq)?;
        inner.written = 0;
        Ok(old)
    }

    /// Deletes a rotated file whose records sled now holds durably.
    pub fn retire(&self, path: &Path) -> Result<(), Error> {
        fs::remove_file(path).map_err(io(path))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::{Map, json};

    use super::*;
    use crate::manifest::IntegrationId;
    use crate::platforms::PlatformKind;

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
                objects: Map::new(),
                changes: Map::new(),
                payload: json!({"n": id}),
            },
            rules: vec!["r".into()],
            now_ms: 1,
            dedupe_until_ms: u64::MAX,
            audit: Vec::new(),
        }
    }

    #[test]
    fn journaled_but_unflushed_events_are_replayed_once() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let (journal, restored) = Journal::open(&store).unwrap();
            assert_eq!(restored, 0);
            journal.append(&record("a")).unwrap();
            journal.append(&record("b")).unwrap();
            journal.sync().unwrap();
            // sled was never written (as if the crash came before its background flush).
        }
        let store = Store::open(dir.path()).unwrap();
        let (journal, restored) = Journal::open(&store).unwrap();
        assert_eq!(restored, 2);
        assert_eq!(store.queue_depth(), 2);
        assert!(store.event_by_key("fd/a").unwrap().is_some());
        // Replayed into sled and flushed: the old file is gone, and opening again adds nothing.
        drop(journal);
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        let (_, restored) = Journal::open(&store).unwrap();
        assert_eq!(restored, 0);
        assert_eq!(store.queue_depth(), 2);
    }

    #[test]
    fn encoded_records_replay_like_appended_ones() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let (journal, _) = Journal::open(&store).unwrap();
            let framed = Journal::encode(dir.path(), &record("a")).unwrap();
            assert_eq!(&framed[4..12], &checksum(&framed[12..]));
            journal.append_encoded(&framed);
            journal.append(&record("b")).unwrap();
            journal.sync().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let (_, restored) = Journal::open(&store).unwrap();
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
                detail: serde_json::json!({"event": "ticket_created"}),
            };
            2
        ];
        let prepared = store.prepare_ingest(&r).unwrap();
        let fast = Journal::encode_prepared(dir.path(), &r, &prepared).unwrap();
        let slow = Journal::encode(dir.path(), &r).unwrap();
        let value =
            |framed: &[u8]| serde_json::from_slice::<serde_json::Value>(&framed[12..]).unwrap();
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
            let store = Store::open(dir.path()).unwrap();
            let (journal, _) = Journal::open(&store).unwrap();
            journal.append(&record("a")).unwrap();
            journal.sync().unwrap();
        }
        let (_, path) = existing(dir.path()).unwrap().pop().unwrap();
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3]).unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (_, restored) = Journal::open(&store).unwrap();
        assert_eq!(restored, 1);
    }

    /// Records of earlier builds (SHA-256 prefix) still replay after an upgrade; a record whose
    /// CRC does not match its payload ends the replay of its file.
    #[test]
    fn sha256_records_replay_and_a_bad_crc_is_torn() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            let (journal, _) = Journal::open(&store).unwrap();
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
        let store = Store::open(dir.path()).unwrap();
        let (_, restored) = Journal::open(&store).unwrap();
        assert_eq!(restored, 1);
        assert!(store.event_by_key("fd/a").unwrap().is_some());
        assert!(store.event_by_key("fd/b").unwrap().is_none());
        assert!(store.event_by_key("fd/c").unwrap().is_none());
    }

    #[test]
    fn rotation_retires_files_once_sled_is_flushed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (journal, _) = Journal::open(&store).unwrap();
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
}
