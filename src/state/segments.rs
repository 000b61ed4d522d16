//! Payload segments: the stored deliveries' bodies, in append-only files under
//! `<state>/events/`, one file per segment, deleted whole by retention.
//!
//! Why not in sled: sled 0.34 does not give disk space back (removing 90 % of its data leaves
//! its file at its size, measured in [docs/state-retention.md](../../docs/state-retention.md)),
//! so payloads — nearly all of a state's bytes — live where a whole unit can be dropped and
//! its blocks freed at once. sled keeps the small keyed records that say where each payload
//! is (a [`Location`]).
//!
//! Layout: a segment is `<id as 16 lowercase hex>.seg`, made 0600 in a 0700 folder. It starts
//! with a 16-byte header (`SOPSEG\0\x01` ‖ the time it was started, ms since the Unix epoch,
//! `u64` LE), followed by records `len: u32 LE ‖ crc: u32 LE ‖ seq: u64 LE ‖ payload`, where
//! `crc` is the CRC-32 of `seq` (LE) followed by the payload. A segment is written until it
//! holds [`MAX_SEGMENT_BYTES`] or is [`MAX_SEGMENT_AGE_MS`] old, then sealed (never written
//! again; synced, with the folder that names its successor, by the next [`Segments::sync`], so
//! that the appending thread — the ingest applier — does no `fsync`) and a new one started; a segment is also never appended to by a later run
//! (each run starts its own at its first append), so a run's crash leaves at most a torn tail
//! in a sealed segment.
//!
//! Guarantees:
//! - [`Segments::append`] returns once the record is written (to the page cache); every record
//!   appended before [`Segments::sync`] began is durable when it returns.
//!   [`Segments::append_many`] (the ingest applier's: one write per segment for a whole
//!   transaction's payloads) places and seals exactly as one-by-one appends would. The store syncs the
//!   segments before every flush of sled, so sled never durably points at bytes that are not.
//! - [`Segments::read`] checks the record's length, checksum and sequence number: a location
//!   that does not hold what it should is an [`Error::Corrupt`], never a wrong payload.
//! - What a crash may leave behind: records appended but never referenced (their index entry
//!   was not written, or not flushed), and a torn record at the end of a segment. Nothing reads
//!   them; their bytes go when their segment is removed.
//! - Opening writes nothing ([`Segments::open`] on a state without `events/` creates nothing
//!   until the first append), so read-only commands leave the directory as it was.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::Error;

/// The folder under the state directory that holds the segments.
pub const DIR: &str = "events";

/// The file name suffix of a segment.
const SUFFIX: &str = ".seg";

/// A segment is sealed once it holds this many bytes…
pub const MAX_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// …or once it is this old (so retention can drop an hour at a time), or younger when
/// retention is short ([`Segments::set_max_age_ms`]).
pub const MAX_SEGMENT_AGE_MS: u64 = 60 * 60 * 1000;

/// The youngest a segment is sealed at, whatever the retention.
pub const MIN_SEGMENT_AGE_MS: u64 = 1000;

/// The largest encoding buffer [`Segments::append_many`] keeps for the next call.
const SCRATCH_KEPT: usize = 4 * 1024 * 1024;

/// What a segment starts with.
const MAGIC: &[u8; 8] = b"SOPSEG\0\x01";

/// The segment header: [`MAGIC`] ‖ started ms.
const HEADER_LEN: u64 = 16;

/// A record's header: len ‖ crc ‖ seq.
const RECORD_HEADER_LEN: usize = 16;

/// The largest payload a record holds (the length field is a `u32`; a delivery is far
/// smaller, as webhook bodies are limited).
const MAX_PAYLOAD: usize = u32::MAX as usize;

/// Where a payload is: its segment, the offset of its record and the payload's length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The segment id.
    pub segment: u64,
    /// The offset of the record (its header) in the segment file.
    pub offset: u64,
    /// The payload's length in bytes.
    pub len: u32,
}

/// A segment on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment id.
    pub id: u64,
    /// The file's size in bytes.
    pub bytes: u64,
    /// When it was started, ms since the Unix epoch (0 when its header is unreadable).
    pub started_ms: u64,
    /// Whether this run is still appending to it (it cannot be removed).
    pub open: bool,
}

/// The segments of one state directory.
#[derive(Debug)]
pub struct Segments {
    dir: PathBuf,
    inner: Mutex<Inner>,
    /// The buffer [`Segments::append_many`] encodes records into, kept between calls (up to
    /// [`SCRATCH_KEPT`]) so that every ingest transaction does not allocate and fault in a
    /// fresh one.
    scratch: Mutex<Vec<u8>>,
    /// A segment older than this is sealed ([`MAX_SEGMENT_AGE_MS`] unless set lower).
    max_age_ms: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    /// The segment this run appends to, once it appended.
    open: Option<OpenSegment>,
    /// The id the next segment gets (above every segment seen).
    next_id: u64,
    /// Read handles, by segment id.
    readers: HashMap<u64, Arc<File>>,
    /// Whether something was appended since the last sync.
    dirty: bool,
    /// Segments sealed since the last sync, not yet synced.
    sealed: Vec<(u64, Arc<File>)>,
    /// Whether a segment was created since the last sync (its name is not yet durable).
    created: bool,
}

#[derive(Debug)]
struct OpenSegment {
    id: u64,
    file: Arc<File>,
    len: u64,
    started_ms: u64,
}

impl Segments {
    /// The segments under `state_dir` (`events/` need not exist; nothing is created).
    pub fn open(state_dir: &Path) -> Result<Segments, Error> {
        let dir = state_dir.join(DIR);
        let next_id = list_ids(&dir)?.last().map_or(1, |id| id.saturating_add(1));
        Ok(Segments {
            dir,
            inner: Mutex::new(Inner {
                next_id,
                ..Inner::default()
            }),
            scratch: Mutex::new(Vec::new()),
            max_age_ms: std::sync::atomic::AtomicU64::new(MAX_SEGMENT_AGE_MS),
        })
    }

    /// Seals segments once they are `ms` old (kept between [`MIN_SEGMENT_AGE_MS`] and
    /// [`MAX_SEGMENT_AGE_MS`]): retention sets a quarter of its period, so that what it can
    /// only drop a whole segment at a time stays a small part of what it keeps.
    pub fn set_max_age_ms(&self, ms: u64) {
        self.max_age_ms.store(
            ms.clamp(MIN_SEGMENT_AGE_MS, MAX_SEGMENT_AGE_MS),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// How old a segment is when it is sealed.
    pub fn max_age_ms(&self) -> u64 {
        self.max_age_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The folder of the segments.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends the payload of delivery `seq` (received at `now_ms`, which decides when the open
    /// segment is sealed) and says where it is. Not durable until [`Segments::sync`].
    pub fn append(&self, seq: u64, payload: &[u8], now_ms: u64) -> Result<Location, Error> {
        let mut at = self.append_many(&[(seq, payload, now_ms)])?;
        at.pop().ok_or_else(|| Error::Corrupt {
            tree: DIR,
            key: format!("evt_{seq}"),
            detail: "the append returned no location".to_owned(),
        })
    }

    /// Appends many payloads (delivery `seq`, payload, received at `now_ms`), in order, as
    /// [`Segments::append`] one after another would (the same locations, the same sealing), but
    /// with ONE write per segment they land in (one per ingest transaction, in practice) instead
    /// of one per payload. On an error nothing after the last whole write is kept: the open
    /// segment's length goes back to where the failed write began.
    pub fn append_many(&self, items: &[(u64, &[u8], u64)]) -> Result<Vec<Location>, Error> {
        let total: usize = items
            .iter()
            .map(|(_, p, _)| RECORD_HEADER_LEN + p.len())
            .sum();
        let mut buf = std::mem::take(
            &mut *self
                .scratch
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        buf.clear();
        buf.reserve(total);
        let result = self.append_encoded(items, &mut buf);
        if buf.capacity() <= SCRATCH_KEPT {
            buf.clear();
            *self
                .scratch
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = buf;
        }
        result
    }

    /// [`Segments::append_many`] with `buf`, an empty buffer to encode the records into
    /// (before taking the lock).
    fn append_encoded(
        &self,
        items: &[(u64, &[u8], u64)],
        buf: &mut Vec<u8>,
    ) -> Result<Vec<Location>, Error> {
        let mut lens = Vec::with_capacity(items.len());
        for (seq, payload, _) in items {
            let len = u32::try_from(payload.len())
                .ok()
                .filter(|_| payload.len() <= MAX_PAYLOAD)
                .ok_or_else(|| Error::Corrupt {
                    tree: DIR,
                    key: format!("evt_{seq}"),
                    detail: format!("payload of {} bytes is too large", payload.len()),
                })?;
            buf.extend_from_slice(&len.to_le_bytes());
            buf.extend_from_slice(&checksum(*seq, payload).to_le_bytes());
            buf.extend_from_slice(&seq.to_le_bytes());
            buf.extend_from_slice(payload);
            lens.push(len);
        }

        let mut inner = self.inner();
        let max_age_ms = self.max_age_ms();
        let mut out = Vec::with_capacity(items.len());
        // The records not yet written: from `run_start` in `buf`, at `run_offset` in the open
        // segment.
        let mut run_start = 0usize;
        let mut run_offset = 0u64;
        let mut pos = 0usize;
        for ((_, _, now_ms), len) in items.iter().zip(&lens) {
            let record_len = RECORD_HEADER_LEN as u64 + u64::from(*len);
            let keep = inner.open.as_ref().is_some_and(|open| {
                !((open.len > HEADER_LEN
                    && open.len.saturating_add(record_len) > MAX_SEGMENT_BYTES)
                    || now_ms.saturating_sub(open.started_ms) >= max_age_ms)
            });
            if !keep {
                // What is pending goes to the segment being sealed first.
                Self::write_run(&self.dir, &mut inner, &buf[run_start..pos], run_offset)?;
                if let Some(old) = inner.open.take() {
                    // Synced by the next sync (before sled is flushed), not here.
                    inner.sealed.push((old.id, old.file));
                }
                let id = inner.next_id;
                let file = self.create(id, *now_ms)?;
                inner.created = true;
                inner.next_id = id.saturating_add(1);
                inner.readers.insert(id, file.clone());
                inner.open = Some(OpenSegment {
                    id,
                    file,
                    len: HEADER_LEN,
                    started_ms: *now_ms,
                });
                run_start = pos;
            }
            let Some(open) = inner.open.as_mut() else {
                // Set just above when there was none.
                return Err(io_error(
                    &self.dir,
                    0,
                    io::Error::other("no open segment after starting one"),
                ));
            };
            if run_start == pos {
                run_offset = open.len;
            }
            out.push(Location {
                segment: open.id,
                offset: open.len,
                len: *len,
            });
            open.len += record_len;
            pos += record_len as usize;
        }
        Self::write_run(&self.dir, &mut inner, &buf[run_start..pos], run_offset)?;
        Ok(out)
    }

    /// Writes `run` (records already counted in the open segment's length) at `offset` of the
    /// open segment; on an error the segment's length goes back to `offset`.
    fn write_run(dir: &Path, inner: &mut Inner, run: &[u8], offset: u64) -> Result<(), Error> {
        if run.is_empty() {
            return Ok(());
        }
        let Some(open) = inner.open.as_mut() else {
            return Ok(());
        };
        match open.file.write_all_at(run, offset) {
            Ok(()) => {
                inner.dirty = true;
                Ok(())
            }
            Err(e) => {
                open.len = offset;
                Err(io_error(dir, open.id, e))
            }
        }
    }

    /// Makes every record appended before this call durable: the segments sealed since the
    /// last sync, the folder (the names of segments created since), then the open segment.
    pub fn sync(&self) -> Result<(), Error> {
        let (sealed, created, open) = {
            let mut inner = self.inner();
            let sealed = std::mem::take(&mut inner.sealed);
            let created = std::mem::take(&mut inner.created);
            let open = if std::mem::take(&mut inner.dirty) {
                inner.open.as_ref().map(|open| (open.id, open.file.clone()))
            } else {
                None
            };
            (sealed, created, open)
        };
        let failed = |e: Error, this: &Segments| {
            // Synced again by the next call.
            let mut inner = this.inner();
            inner.sealed.extend(sealed.iter().cloned());
            inner.created |= created;
            inner.dirty |= open.is_some();
            e
        };
        for (id, file) in &sealed {
            if let Err(e) = file.sync_data() {
                return Err(failed(io_error(&self.dir, *id, e), self));
            }
        }
        if created && let Err(e) = File::open(&self.dir).and_then(|dir| dir.sync_all()) {
            let e = Error::Segment {
                path: self.dir.clone(),
                source: e,
            };
            return Err(failed(e, self));
        }
        if let Some((id, file)) = &open
            && let Err(e) = file.sync_data()
        {
            return Err(failed(io_error(&self.dir, *id, e), self));
        }
        Ok(())
    }

    /// The payload of delivery `seq` at `at`.
    pub fn read(&self, at: Location, seq: u64) -> Result<Vec<u8>, Error> {
        let file = self.reader(at.segment)?;
        let corrupt = |detail: String| Error::Corrupt {
            tree: DIR,
            key: format!("{} at {} (evt_{seq})", file_name(at.segment), at.offset),
            detail,
        };
        let mut header = [0u8; RECORD_HEADER_LEN];
        file.read_exact_at(&mut header, at.offset)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => corrupt("the record is past the end".to_owned()),
                _ => io_error(&self.dir, at.segment, e),
            })?;
        let (len, rest) = header.split_at(4);
        let (crc, stored_seq) = rest.split_at(4);
        let len = u32::from_le_bytes(len.try_into().unwrap_or_default());
        let crc = u32::from_le_bytes(crc.try_into().unwrap_or_default());
        let stored_seq = u64::from_le_bytes(stored_seq.try_into().unwrap_or_default());
        if len != at.len || stored_seq != seq {
            return Err(corrupt(format!(
                "the record holds evt_{stored_seq} of {len} bytes, expected evt_{seq} of {} bytes",
                at.len
            )));
        }
        let mut payload = vec![0u8; len as usize];
        file.read_exact_at(&mut payload, at.offset + RECORD_HEADER_LEN as u64)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => corrupt("the record is torn".to_owned()),
                _ => io_error(&self.dir, at.segment, e),
            })?;
        if checksum(seq, &payload) != crc {
            return Err(corrupt("checksum mismatch".to_owned()));
        }
        Ok(payload)
    }

    /// Every segment on disk, oldest first.
    pub fn list(&self) -> Result<Vec<SegmentInfo>, Error> {
        let open = self.inner().open.as_ref().map(|o| o.id);
        let mut out = Vec::new();
        for id in list_ids(&self.dir)? {
            let path = self.dir.join(file_name(id));
            let bytes = match fs::metadata(&path) {
                Ok(meta) => meta.len(),
                // Removed meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&self.dir, id, e)),
            };
            out.push(SegmentInfo {
                id,
                bytes,
                started_ms: started_ms(&path).unwrap_or(0),
                open: open == Some(id),
            });
        }
        Ok(out)
    }

    /// The bytes of every segment on disk.
    pub fn bytes(&self) -> Result<u64, Error> {
        let mut total = 0u64;
        for id in list_ids(&self.dir)? {
            match fs::metadata(self.dir.join(file_name(id))) {
                Ok(meta) => total = total.saturating_add(meta.len()),
                // Removed meanwhile.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&self.dir, id, e)),
            }
        }
        Ok(total)
    }

    /// Deletes segment `id` and returns the bytes freed (0 if it was gone). The open segment is
    /// never removed: it is an [`Error::Corrupt`] to ask (a caller bug).
    pub fn remove(&self, id: u64) -> Result<u64, Error> {
        {
            let mut inner = self.inner();
            if inner.open.as_ref().is_some_and(|o| o.id == id) {
                return Err(Error::Corrupt {
                    tree: DIR,
                    key: file_name(id),
                    detail: "the open segment cannot be removed".to_owned(),
                });
            }
            inner.readers.remove(&id);
        }
        let path = self.dir.join(file_name(id));
        let bytes = match fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io_error(&self.dir, id, e)),
        };
        match fs::remove_file(&path) {
            Ok(()) => Ok(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io_error(&self.dir, id, e)),
        }
    }

    /// Seals the open segment (synced; the next append starts a new one), so that retention
    /// can remove everything written so far. Returns the id sealed, if one was open.
    pub fn seal(&self) -> Result<Option<u64>, Error> {
        let old = self.inner().open.take();
        match old {
            Some(old) => {
                old.file.sync_data().map_err(self.io(old.id))?;
                Ok(Some(old.id))
            }
            None => Ok(None),
        }
    }

    /// A read handle of segment `id`, opened on first use.
    fn reader(&self, id: u64) -> Result<Arc<File>, Error> {
        if let Some(file) = self.inner().readers.get(&id) {
            return Ok(file.clone());
        }
        let path = self.dir.join(file_name(id));
        let file = Arc::new(File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::Corrupt {
                tree: DIR,
                key: file_name(id),
                detail: "the segment is gone".to_owned(),
            },
            _ => io_error(&self.dir, id, e),
        })?);
        self.inner().readers.insert(id, file.clone());
        Ok(file)
    }

    /// Creates segment `id` (and the folder), 0600, with its header.
    fn create(&self, id: u64, now_ms: u64) -> Result<Arc<File>, Error> {
        super::perms::create_dir(&self.dir).map_err(self.io(id))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(super::perms::FILE_MODE)
            .open(self.dir.join(file_name(id)))
            .map_err(self.io(id))?;
        let mut header = [0u8; HEADER_LEN as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..].copy_from_slice(&now_ms.to_le_bytes());
        file.write_all_at(&header, 0).map_err(self.io(id))?;
        // The new file's name must survive a crash before anything in sled points into it: the
        // next sync (before sled's next flush) syncs the folder.
        Ok(Arc::new(file))
    }

    fn io(&self, id: u64) -> impl Fn(io::Error) -> Error + '_ {
        move |e| io_error(&self.dir, id, e)
    }
}

fn checksum(seq: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&seq.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// The file name of segment `id`.
pub fn file_name(id: u64) -> String {
    format!("{id:016x}{SUFFIX}")
}

/// The ids of the segments in `dir`, ascending (none when `dir` does not exist). Files that are
/// not segments are ignored.
fn list_ids(dir: &Path) -> Result<Vec<u64>, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir, 0, e)),
    };
    let mut ids: Vec<u64> = entries
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name();
            let hex = name.to_str()?.strip_suffix(SUFFIX)?;
            (hex.len() == 16)
                .then(|| u64::from_str_radix(hex, 16).ok())
                .flatten()
        })
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

/// When the segment at `path` was started, from its header.
fn started_ms(path: &Path) -> Option<u64> {
    let file = File::open(path).ok()?;
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut header, 0).ok()?;
    let (magic, started) = header.split_at(8);
    (magic == MAGIC).then(|| u64::from_le_bytes(started.try_into().unwrap_or_default()))
}

fn io_error(dir: &Path, id: u64, source: io::Error) -> Error {
    Error::Segment {
        path: dir.join(file_name(id)),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = MAX_SEGMENT_AGE_MS;

    fn dir_bytes(dir: &Path) -> u64 {
        fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    #[test]
    fn opening_creates_nothing_until_the_first_append() {
        let tmp = tempfile::tempdir().unwrap();
        let segments = Segments::open(tmp.path()).unwrap();
        assert!(segments.list().unwrap().is_empty());
        segments.sync().unwrap();
        assert!(!tmp.path().join(DIR).exists());
        segments.append(1, b"payload", 0).unwrap();
        assert!(tmp.path().join(DIR).join(file_name(1)).is_file());
    }

    #[test]
    fn payloads_read_back_and_a_wrong_location_is_corrupt_not_a_wrong_payload() {
        let tmp = tempfile::tempdir().unwrap();
        let segments = Segments::open(tmp.path()).unwrap();
        let a = segments.append(7, b"first", 1_000).unwrap();
        let b = segments.append(9, b"second payload", 1_001).unwrap();
        segments.sync().unwrap();
        assert_eq!(segments.read(a, 7).unwrap(), b"first");
        assert_eq!(segments.read(b, 9).unwrap(), b"second payload");
        // The right place, the wrong delivery.
        assert!(matches!(segments.read(a, 8), Err(Error::Corrupt { .. })));
        // A place past the end, and one inside a record.
        let past = Location {
            offset: b.offset + 1_000,
            ..b
        };
        assert!(matches!(segments.read(past, 9), Err(Error::Corrupt { .. })));
        let inside = Location {
            offset: a.offset + 3,
            ..a
        };
        assert!(matches!(
            segments.read(inside, 7),
            Err(Error::Corrupt { .. })
        ));
        // A segment that is not there.
        let gone = Location { segment: 99, ..a };
        assert!(matches!(segments.read(gone, 7), Err(Error::Corrupt { .. })));
    }

    #[test]
    fn a_flipped_byte_fails_the_checksum() {
        let tmp = tempfile::tempdir().unwrap();
        let segments = Segments::open(tmp.path()).unwrap();
        let at = segments.append(1, b"customer data", 0).unwrap();
        segments.sync().unwrap();
        let path = tmp.path().join(DIR).join(file_name(at.segment));
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x20;
        fs::write(&path, bytes).unwrap();
        let reopened = Segments::open(tmp.path()).unwrap();
        let err = reopened.read(at, 1).unwrap_err();
        assert!(err.to_string().contains("checksum"), "{err}");
    }

    #[test]
    fn segments_seal_by_age_and_a_new_run_starts_its_own() {
        let tmp = tempfile::tempdir().unwrap();
        let segments = Segments::open(tmp.path()).unwrap();
        let a = segments.append(1, b"a", 0).unwrap();
        let b = segments.append(2, b"b", HOUR - 1).unwrap();
        let c = segments.append(3, b"c", HOUR).unwrap();
        assert_eq!(a.segment, b.segment);
        assert_eq!(c.segment, a.segment + 1, "an hour later: a new segment");
        let list = segments.list().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].started_ms, 0);
        assert!(!list[0].open && list[1].open);
        drop(segments);

        let again = Segments::open(tmp.path()).unwrap();
        let d = again.append(4, b"d", HOUR + 1).unwrap();
        assert_eq!(
            d.segment,
            c.segment + 1,
            "a later run never appends to an old segment"
        );
        for (at, seq, body) in [(a, 1, b"a"), (b, 2, b"b"), (c, 3, b"c"), (d, 4, b"d")] {
            assert_eq!(again.read(at, seq).unwrap(), body);
        }
    }

    /// Appending does no fsync: a segment sealed by an append, and the folder naming its
    /// successor, wait for the next sync, which syncs them (and the open segment) and leaves
    /// nothing pending.
    #[test]
    fn a_sealed_segment_is_synced_by_the_next_sync_not_by_the_append() {
        let tmp = tempfile::tempdir().unwrap();
        let segments = Segments::open(tmp.path()).unwrap();
        let a = segments.append(1, b"a", 0).unwrap();
        segments.sync().unwrap();
        let b = segments.append(2, b"b", HOUR).unwrap();
        assert_eq!(b.segment, a.segment + 1);
        {
            let inner = segments.inner();
            assert_eq!(
                inner.sealed.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
                vec![a.segment],
                "the sealed segment waits for the sync"
            );
            assert!(inner.created && inner.dirty);
        }
        segments.sync().unwrap();
        let inner = segments.inner();
        assert!(inner.sealed.is_empty() && !inner.created && !inner.dirty);
        drop(inner);
        assert_eq!(segments.read(a, 1).unwrap(), b"a");
        assert_eq!(segments.read(b, 2).unwrap(), b"b");
    }

    #[test]
    fn appending_many_at_once_places_them_as_one_by_one_appends_do_across_seals() {
        const HOUR: u64 = MAX_SEGMENT_AGE_MS;
        let payloads: Vec<(u64, Vec<u8>, u64)> = (1..=6u64)
            .map(|i| {
                (
                    i * 3,
                    format!("payload {i}").repeat(i as usize).into_bytes(),
                    0,
                )
            })
            .chain([
                (40, b"an hour later".to_vec(), HOUR),
                (41, b"x".to_vec(), HOUR),
            ])
            .collect();
        let items: Vec<(u64, &[u8], u64)> = payloads
            .iter()
            .map(|(seq, p, at)| (*seq, p.as_slice(), *at))
            .collect();
        let one = tempfile::tempdir().unwrap();
        let one_by_one = Segments::open(one.path()).unwrap();
        let expected: Vec<Location> = items
            .iter()
            .map(|(seq, p, at)| one_by_one.append(*seq, p, *at).unwrap())
            .collect();
        let many = tempfile::tempdir().unwrap();
        let segments = Segments::open(many.path()).unwrap();
        let got = segments.append_many(&items).unwrap();
        assert_eq!(got, expected);
        assert_eq!(
            got[0].segment + 1,
            got[7].segment,
            "sealed by age in between"
        );
        segments.sync().unwrap();
        for ((seq, payload, _), at) in payloads.iter().zip(&got) {
            assert_eq!(&segments.read(*at, *seq).unwrap(), payload);
        }
        // The files are byte for byte what the single appends wrote.
        for at in [got[0], got[7]] {
            let name = file_name(at.segment);
            assert_eq!(
                fs::read(many.path().join(DIR).join(&name)).unwrap(),
                fs::read(one.path().join(DIR).join(&name)).unwrap()
            );
        }
        // Nothing to append: no location, no segment.
        let empty = tempfile::tempdir().unwrap();
        assert!(
            Segments::open(empty.path())
                .unwrap()
                .append_many(&[])
                .unwrap()
                .is_empty()
        );
        assert!(!empty.path().join(DIR).exists());
    }

    #[test]
    fn a_short_retention_seals_segments_sooner_but_never_under_a_second() {
        let tmp = tempfile::tempdir().unwrap();
        let segments = Segments::open(tmp.path()).unwrap();
        segments.set_max_age_ms(15_000);
        let a = segments.append(1, b"a", 0).unwrap();
        let b = segments.append(2, b"b", 14_999).unwrap();
        let c = segments.append(3, b"c", 15_000).unwrap();
        assert_eq!(a.segment, b.segment);
        assert_eq!(c.segment, a.segment + 1);
        segments.set_max_age_ms(1);
        assert_eq!(segments.max_age_ms(), MIN_SEGMENT_AGE_MS);
        segments.set_max_age_ms(u64::MAX);
        assert_eq!(segments.max_age_ms(), MAX_SEGMENT_AGE_MS);
    }

    #[test]
    fn segments_seal_by_size() {
        let tmp = tempfile::tempdir().unwrap();
        let segments = Segments::open(tmp.path()).unwrap();
        let big = vec![7u8; (MAX_SEGMENT_BYTES / 2) as usize];
        let a = segments.append(1, &big, 0).unwrap();
        let b = segments.append(2, &big, 0).unwrap();
        assert_eq!(b.segment, a.segment + 1);
        assert_eq!(segments.read(a, 1).unwrap().len(), big.len());
    }

    #[test]
    fn removing_a_segment_gives_its_space_back_but_never_the_open_one() {
        let tmp = tempfile::tempdir().unwrap();
        let segments = Segments::open(tmp.path()).unwrap();
        let payload = vec![1u8; 100_000];
        let a = segments.append(1, &payload, 0).unwrap();
        assert!(matches!(
            segments.remove(a.segment),
            Err(Error::Corrupt { .. })
        ));
        assert_eq!(segments.seal().unwrap(), Some(a.segment));
        let b = segments.append(2, &payload, 1).unwrap();
        let before = dir_bytes(&tmp.path().join(DIR));
        let freed = segments.remove(a.segment).unwrap();
        assert!(freed > 100_000);
        assert_eq!(dir_bytes(&tmp.path().join(DIR)), before - freed);
        assert_eq!(segments.bytes().unwrap(), before - freed);
        assert!(matches!(segments.read(a, 1), Err(Error::Corrupt { .. })));
        assert_eq!(segments.read(b, 2).unwrap(), payload);
        assert_eq!(segments.remove(a.segment).unwrap(), 0, "already gone");
    }

    #[test]
    fn segment_files_are_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let segments = Segments::open(tmp.path()).unwrap();
        let at = segments.append(1, b"x", 0).unwrap();
        let dir = tmp.path().join(DIR);
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(file_name(at.segment))), 0o600);
    }

    #[test]
    fn a_torn_tail_leaves_earlier_records_readable() {
        let tmp = tempfile::tempdir().unwrap();
        let segments = Segments::open(tmp.path()).unwrap();
        let a = segments.append(1, b"kept", 0).unwrap();
        let b = segments.append(2, b"torn by a crash", 0).unwrap();
        drop(segments);
        let path = tmp.path().join(DIR).join(file_name(a.segment));
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.set_len(b.offset + 5).unwrap();
        let reopened = Segments::open(tmp.path()).unwrap();
        assert_eq!(reopened.read(a, 1).unwrap(), b"kept");
        assert!(matches!(reopened.read(b, 2), Err(Error::Corrupt { .. })));
    }
}
