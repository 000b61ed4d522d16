//! Payload segments: append-only files under `<state dir>/events/`, named
//! `<segment id as 16 lowercase hex>.seg`, deleted whole by retention.
//!
//! (Interim version on the i17-layout branch, with the API the lead's module has; replaced by it
//! on merge.) A record is `len: u32 LE ‖ crc32: u32 LE ‖ seq: u64 LE ‖ bytes`; [`Segments::read`]
//! checks the CRC and the sequence number. Appends are written to the file at once (so a crash
//! of the process loses nothing the kernel has), and made durable by [`Segments::sync`].

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A segment rolls over past this size.
const MAX_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// A segment rolls over once this old (milliseconds).
const MAX_SEGMENT_AGE_MS: u64 = 3_600_000;
const HEADER: usize = 16;

/// Where a payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The segment id.
    pub segment: u64,
    /// Offset of the record in the segment file.
    pub offset: u64,
    /// Length of the payload.
    pub len: u32,
}

/// One segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentInfo {
    /// The segment id.
    pub segment: u64,
    /// Its size.
    pub bytes: u64,
    /// Whether it is the one appended to.
    pub open: bool,
}

/// The segment files of a state directory.
#[derive(Debug)]
pub struct Segments {
    dir: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    open: Option<Open>,
    dirty: bool,
}

#[derive(Debug)]
struct Open {
    segment: u64,
    file: File,
    len: u64,
    started_ms: u64,
}

fn name(segment: u64) -> String {
    format!("{segment:016x}.seg")
}

fn parse(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".seg")?;
    if hex.len() != 16 {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

impl Segments {
    /// Opens (creating) `<state_dir>/events/`.
    pub fn open(state_dir: &Path) -> std::io::Result<Segments> {
        let dir = state_dir.join("events");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)?;
        Ok(Segments {
            dir,
            inner: Mutex::new(Inner {
                open: None,
                dirty: false,
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn ids(&self) -> std::io::Result<Vec<u64>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            if let Some(id) = entry?.file_name().to_str().and_then(parse) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    /// Appends `bytes` (of record `seq`) to the open segment, rolling over as needed.
    pub fn append(&self, seq: u64, bytes: &[u8], now_ms: u64) -> std::io::Result<Location> {
        let len = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("too large"))?;
        let mut inner = self.lock();
        let roll = match &inner.open {
            None => true,
            Some(o) => {
                o.len >= MAX_SEGMENT_BYTES
                    || now_ms.saturating_sub(o.started_ms) >= MAX_SEGMENT_AGE_MS
            }
        };
        if roll {
            if let Some(o) = &inner.open {
                o.file.sync_data()?;
            }
            let next = self.ids()?.last().map_or(1, |last| last + 1);
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .read(true)
                .mode(0o600)
                .open(self.dir.join(name(next)))?;
            inner.open = Some(Open {
                segment: next,
                file,
                len: 0,
                started_ms: now_ms,
            });
        }
        let Some(open) = inner.open.as_mut() else {
            return Err(std::io::Error::other("no open segment"));
        };
        let mut record = Vec::with_capacity(HEADER + bytes.len());
        record.extend_from_slice(&len.to_le_bytes());
        record.extend_from_slice(&crc32fast::hash(bytes).to_le_bytes());
        record.extend_from_slice(&seq.to_le_bytes());
        record.extend_from_slice(bytes);
        open.file.write_all(&record)?;
        let at = Location {
            segment: open.segment,
            offset: open.len,
            len,
        };
        open.len += record.len() as u64;
        inner.dirty = true;
        Ok(at)
    }

    /// Reads the payload at `at`, checking its CRC and that it is record `seq`'s.
    pub fn read(&self, at: Location, seq: u64) -> std::io::Result<Vec<u8>> {
        let file = File::open(self.dir.join(name(at.segment)))?;
        let mut buf = vec![0u8; HEADER + at.len as usize];
        file.read_exact_at(&mut buf, at.offset)?;
        let (head, body) = buf.split_at(HEADER);
        let word = |r: std::ops::Range<usize>| head.get(r).unwrap_or_default().to_vec();
        let ok = word(0..4) == at.len.to_le_bytes()
            && word(4..8) == crc32fast::hash(body).to_le_bytes()
            && word(8..16) == seq.to_le_bytes();
        if !ok {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "segment {} offset {}: not record {seq}",
                    at.segment, at.offset
                ),
            ));
        }
        Ok(body.to_vec())
    }

    /// Makes everything appended so far durable.
    pub fn sync(&self) -> std::io::Result<()> {
        let mut inner = self.lock();
        if inner.dirty {
            if let Some(o) = &inner.open {
                o.file.sync_data()?;
            }
            inner.dirty = false;
        }
        Ok(())
    }

    /// Every segment file, oldest first.
    pub fn list(&self) -> std::io::Result<Vec<SegmentInfo>> {
        let open = self.lock().open.as_ref().map(|o| o.segment);
        let mut out = Vec::new();
        for id in self.ids()? {
            let bytes = fs::metadata(self.dir.join(name(id)))?.len();
            out.push(SegmentInfo {
                segment: id,
                bytes,
                open: Some(id) == open,
            });
        }
        Ok(out)
    }

    /// Deletes a segment (never the open one); returns the bytes freed.
    pub fn remove(&self, segment: u64) -> std::io::Result<u64> {
        let inner = self.lock();
        if inner.open.as_ref().is_some_and(|o| o.segment == segment) {
            return Ok(0);
        }
        let path = self.dir.join(name(segment));
        let bytes = fs::metadata(&path)?.len();
        fs::remove_file(&path)?;
        Ok(bytes)
    }

    /// The size of every segment file.
    pub fn bytes(&self) -> std::io::Result<u64> {
        Ok(self.list()?.iter().map(|s| s.bytes).sum())
    }
}
