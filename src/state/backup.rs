//! Backups of the state: one file that [`Store::backup`] writes (through the daemon's
//! `POST /api/state/backup`, or from a stopped daemon's state), [`restore`] turns into a fresh
//! state directory and [`verify`] checks. The format is in `docs/state-backup.md`.
//!
//! Consistency: every sled tree is read under [`Store::quiesce`] (each write method holds
//! [`Store::writing`] for as long as it writes, so no transaction is half-way), into a spool file
//! in the state directory: writers wait only for as long as reading the trees takes, not for the
//! backup's reader (a slow client, a slow disk). The payload segment files (`events/*.seg`,
//! append-only) are then copied up to the length they had while quiesced, under a
//! [`Store::hold_retention`] so that retention deletes none meanwhile. The ingest journal is not
//! copied: the daemon settles it into sled before a backup ([`crate::state::journal`] records
//! not yet in sled are exactly those answered after the backup began), and an offline backup
//! replays a crashed daemon's leftover journal first.
//!
//! Ids: sled's id generator is not in its trees, so a restored database would hand out job,
//! event and audit ids again from 0. The backup records a floor above every id the state
//! handed out, and [`restore`] writes it as the restored state's `meta/id_base`.
//!
//! Nothing secret is in a backup that is not already sealed in the state: captured tokens and
//! registration secrets are sealed (AES-SIV) with the daemon's key, which is not in the state
//! nor in the backup; a restored state needs the same key to unseal them. A backup holds
//! event payloads (customer data) all the same: it is written 0600, created so.
//!
//! Guarantees: a truncated or altered file is refused (a SHA-256 of everything before it ends
//! the file); bad bytes are a [`BackupError::Format`], never a panic; [`restore`] writes into a
//! missing or empty directory only, and removes what it wrote when it fails.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Error, ID_BLOCK, SCHEMA_VERSION, Store, codec, meta_keys, perms, trees};

/// The first bytes of every backup.
pub const MAGIC: &[u8; 16] = b"SUPPORTOPSD-BKP\n";
/// The version of the file format this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Record tags.
const TAG_TREE: u8 = b'T';
const TAG_ENTRY: u8 = b'K';
const TAG_FILE: u8 = b'F';
const TAG_END: u8 = b'E';

/// Most bytes of the JSON header.
const MAX_HEADER: u32 = 64 * 1024;
/// Most bytes of a tree name or a file path.
const MAX_NAME: u16 = 255;
/// Most bytes of a key (sled keys here are ids, event keys, integration ids).
const MAX_KEY: u32 = 1024 * 1024;

/// The folder of the payload segment files, under the state directory.
pub const SEGMENTS_DIR: &str = "events";

/// How the backup was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Taken {
    /// From a running daemon, through its API.
    Online,
    /// From a state no daemon held.
    Offline,
}

/// The backup's header (JSON, after the magic and the format version).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The schema version of the state it holds ([`SCHEMA_VERSION`] of the build that wrote it).
    pub schema_version: u32,
    /// When the snapshot was taken, milliseconds since the Unix epoch.
    pub created_ms: u64,
    /// The supportopsd version that wrote it.
    pub supportopsd_version: String,
    /// Every id the state handed out is below this.
    pub id_floor: u64,
    /// Online or offline.
    pub taken: Taken,
}

/// What a backup holds, counted while reading or writing it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Contents {
    /// Trees.
    pub trees: u64,
    /// Key/value pairs in all trees.
    pub entries: u64,
    /// Payload segment files.
    pub files: u64,
    /// Bytes of those files.
    pub file_bytes: u64,
    /// Bytes of the whole backup.
    pub bytes: u64,
}

/// What [`Store::backup`] did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    /// The header written.
    pub header: Header,
    /// What was written.
    pub contents: Contents,
    /// How long writes waited (the trees were read under [`Store::quiesce`]).
    pub quiesced: Duration,
    /// How long the whole backup took.
    pub took: Duration,
}

/// Counts of a state, as `verify` and `restore` print them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StateCounts {
    /// Stored deliveries.
    pub events: usize,
    /// Jobs in the outbox (queued, retrying or leased).
    pub jobs_queued: usize,
    /// Dead-lettered jobs.
    pub dead_letters: usize,
    /// Audit records.
    pub audit_records: usize,
    /// Webhook registrations.
    pub registrations: usize,
}

/// What [`verify`] and [`restore`] found.
#[derive(Debug, Clone, Serialize)]
pub struct Checked {
    /// The header.
    pub header: Header,
    /// What the file holds.
    pub contents: Contents,
    /// The counts of the state it restores to (after migration, if its schema is older).
    pub counts: StateCounts,
}

/// Everything that can go wrong with a backup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// A file could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The backup could not be written out (the reader went away, the disk is full).
    #[error("writing the backup: {0}")]
    Write(#[source] io::Error),
    /// The file is not a backup this build reads, or it is truncated or altered.
    #[error("not a valid supportopsd backup: {0}")]
    Format(String),
    /// The backup holds a newer schema than this build understands.
    #[error(
        "the backup holds state of schema version {found}, this build understands up to {supported}: restore it with a newer supportopsd"
    )]
    NewerSchema {
        /// The schema in the backup.
        found: u32,
        /// [`SCHEMA_VERSION`].
        supported: u32,
    },
    /// The target of a restore is not an empty directory.
    #[error(
        "{} exists and is not an empty directory: restore writes a new state, into a directory that does not exist or is empty",
        dir.display()
    )]
    NotEmpty {
        /// The directory.
        dir: PathBuf,
    },
    /// The state store failed.
    #[error(transparent)]
    State(#[from] Error),
}

fn io_error(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BackupError {
    let path = path.to_owned();
    move |source| BackupError::Io { what, path, source }
}

fn format(detail: impl Into<String>) -> BackupError {
    BackupError::Format(detail.into())
}

/// A writer that hashes and counts what goes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes and counts what goes through it.
struct Hashed<R> {
    inner: R,
    hasher: Sha256,
    bytes: u64,
}

impl<R: Read> Read for Hashed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Removes the spool files a backup interrupted by a crash left in the state directory `dir`
/// (called on open, when no backup runs).
pub(super) fn remove_spools(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("backup-") && name.ends_with(".spool") {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// The spool file the trees are read into; removed when dropped.
struct Spool {
    path: PathBuf,
    file: File,
}

impl Spool {
    fn create(dir: &Path) -> Result<Spool, BackupError> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = dir.join(format!("backup-{}-{nanos}.spool", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(perms::FILE_MODE)
            .open(&path)
            .map_err(io_error("creating the spool file", &path))?;
        Ok(Spool { path, file })
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

fn put_u16(w: &mut impl Write, v: u16) -> io::Result<()> {
    w.write_all(&v.to_be_bytes())
}

fn put_u32(w: &mut impl Write, v: u32) -> io::Result<()> {
    w.write_all(&v.to_be_bytes())
}

fn put_u64(w: &mut impl Write, v: u64) -> io::Result<()> {
    w.write_all(&v.to_be_bytes())
}

/// A name's length as the format writes it (names are ours: tree names, `events/<hex>.seg`).
fn name_len(name: &[u8]) -> io::Result<u16> {
    u16::try_from(name.len())
        .ok()
        .filter(|n| *n <= MAX_NAME)
        .ok_or_else(|| io::Error::other("a tree or file name is too long for a backup"))
}

fn put_tree(w: &mut impl Write, name: &[u8]) -> io::Result<()> {
    w.write_all(&[TAG_TREE])?;
    put_u16(w, name_len(name)?)?;
    w.write_all(name)
}

fn put_entry(w: &mut impl Write, key: &[u8], value: &[u8]) -> io::Result<()> {
    let too_big = || io::Error::other("a key or value is too large for a backup");
    let klen = u32::try_from(key.len())
        .ok()
        .filter(|n| *n <= MAX_KEY)
        .ok_or_else(too_big)?;
    let vlen = u32::try_from(value.len()).map_err(|_| too_big())?;
    w.write_all(&[TAG_ENTRY])?;
    put_u32(w, klen)?;
    w.write_all(key)?;
    put_u32(w, vlen)?;
    w.write_all(value)
}

/// Whether `name` is a payload segment file's name: 16 lowercase hex digits and `.seg`.
fn is_segment_name(name: &str) -> bool {
    name.len() == 20
        && name.ends_with(".seg")
        && name[..16]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The payload segment files under `dir` and their lengths, by name; none when the folder does
/// not exist.
fn segments(dir: &Path) -> Result<Vec<(String, u64)>, BackupError> {
    let folder = dir.join(SEGMENTS_DIR);
    let entries = match fs::read_dir(&folder) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error("listing", &folder)(e)),
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error("listing", &folder))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry
            .file_type()
            .map_err(io_error("inspecting", &entry.path()))?;
        if kind.is_file() && is_segment_name(&name) {
            let len = entry
                .metadata()
                .map_err(io_error("inspecting", &entry.path()))?
                .len();
            found.push((name, len));
        }
    }
    found.sort();
    Ok(found)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl Store {
    /// Writes a consistent snapshot of the state to `out` (see the module documentation).
    /// Writes wait while the trees are read ([`BackupReport::quiesced`]), not while `out` is
    /// written. On an error, what was written to `out` is incomplete (and fails [`verify`]).
    pub fn backup(&self, out: &mut dyn Write, taken: Taken) -> Result<BackupReport, BackupError> {
        let t = self.t()?;
        let started = Instant::now();
        let _hold = self.hold_retention();
        let spool = Spool::create(&self.dir)?;
        let spool_error = |source| BackupError::Io {
            what: "writing the spool file",
            path: spool.path.clone(),
            source,
        };
        let mut contents = Contents::default();
        let quiet = Instant::now();
        let (header, files) = {
            let _quiet = self.quiesce();
            let mut w = BufWriter::with_capacity(256 * 1024, &spool.file);
            let block = t.db.generate_id().map_err(|e| self.storage(e))?;
            let id_floor = self
                .id_base
                .saturating_add(block.saturating_add(1).saturating_mul(ID_BLOCK));
            for name in t.db.tree_names() {
                let tree = t.db.open_tree(&name).map_err(|e| self.storage(e))?;
                put_tree(&mut w, &name).map_err(spool_error)?;
                contents.trees += 1;
                for item in tree.iter() {
                    let (k, v) = item.map_err(|e| self.storage(e))?;
                    put_entry(&mut w, &k, &v).map_err(spool_error)?;
                    contents.entries += 1;
                }
            }
            w.flush().map_err(spool_error)?;
            let header = Header {
                schema_version: self.schema_version()?,
                created_ms: now_ms(),
                supportopsd_version: env!("CARGO_PKG_VERSION").to_owned(),
                id_floor,
                taken,
            };
            (header, segments(&self.dir)?)
        };
        let quiesced = quiet.elapsed();
        let mut out = Hashing {
            inner: out,
            hasher: Sha256::new(),
            bytes: 0,
        };
        let header_json = serde_json::to_vec(&header)
            .map_err(|e| BackupError::Write(io::Error::other(e.to_string())))?;
        let header_len = u32::try_from(header_json.len())
            .map_err(|_| BackupError::Write(io::Error::other("header too large")))?;
        out.write_all(MAGIC).map_err(BackupError::Write)?;
        put_u32(&mut out, FORMAT_VERSION).map_err(BackupError::Write)?;
        put_u32(&mut out, header_len).map_err(BackupError::Write)?;
        out.write_all(&header_json).map_err(BackupError::Write)?;
        let mut spool_file = &spool.file;
        spool_file
            .rewind()
            .map_err(io_error("reading the spool file", &spool.path))?;
        io::copy(&mut BufReader::new(spool_file), &mut out).map_err(BackupError::Write)?;
        for (name, len) in &files {
            let path = self.dir.join(SEGMENTS_DIR).join(name);
            let file = File::open(&path).map_err(io_error("reading", &path))?;
            let relative = format!("{SEGMENTS_DIR}/{name}");
            out.write_all(&[TAG_FILE]).map_err(BackupError::Write)?;
            put_u16(
                &mut out,
                name_len(relative.as_bytes()).map_err(BackupError::Write)?,
            )
            .map_err(BackupError::Write)?;
            out.write_all(relative.as_bytes())
                .map_err(BackupError::Write)?;
            put_u64(&mut out, *len).map_err(BackupError::Write)?;
            let copied = copy_exactly(&mut file.take(*len), &mut out, &path)?;
            if copied != *len {
                return Err(BackupError::Io {
                    what: "reading",
                    path,
                    source: io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("the segment file shrank below {len} bytes while it was copied"),
                    ),
                });
            }
            contents.files += 1;
            contents.file_bytes += len;
        }
        let records = contents.trees + contents.entries + contents.files;
        out.write_all(&[TAG_END]).map_err(BackupError::Write)?;
        put_u64(&mut out, records).map_err(BackupError::Write)?;
        let digest = out.hasher.finalize_reset();
        out.inner.write_all(&digest).map_err(BackupError::Write)?;
        out.inner.flush().map_err(BackupError::Write)?;
        contents.bytes = out.bytes + digest.len() as u64;
        Ok(BackupReport {
            header,
            contents,
            quiesced,
            took: started.elapsed(),
        })
    }

    /// The counts `verify` and `restore` print.
    pub fn counts(&self) -> Result<StateCounts, Error> {
        let t = self.t()?;
        Ok(StateCounts {
            events: t.events.len(),
            jobs_queued: self.queue_depth(),
            dead_letters: self.dead_depth(),
            audit_records: t.audit.len(),
            registrations: t.registrations.len(),
        })
    }
}

/// Copies `from` into `to`, telling a read error (of `path`) from a write error.
fn copy_exactly(
    from: &mut impl Read,
    to: &mut impl Write,
    path: &Path,
) -> Result<u64, BackupError> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut copied = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error("reading", path)(e)),
        };
        to.write_all(&buf[..n]).map_err(BackupError::Write)?;
        copied += n as u64;
    }
}

/// One record of a backup, as [`read_backup`] hands it over.
enum Item<'a> {
    Tree(&'a [u8]),
    Entry(&'a [u8], &'a [u8]),
    File(&'a str, &'a mut dyn Read),
}

fn read_exact(r: &mut impl Read, buf: &mut [u8], what: &str) -> Result<(), BackupError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            format(format!("truncated ({what} cut short)"))
        } else {
            format(format!("unreadable ({what}): {e}"))
        }
    })
}

fn get_u16(r: &mut impl Read, what: &str) -> Result<u16, BackupError> {
    let mut b = [0u8; 2];
    read_exact(r, &mut b, what)?;
    Ok(u16::from_be_bytes(b))
}

fn get_u32(r: &mut impl Read, what: &str) -> Result<u32, BackupError> {
    let mut b = [0u8; 4];
    read_exact(r, &mut b, what)?;
    Ok(u32::from_be_bytes(b))
}

fn get_u64(r: &mut impl Read, what: &str) -> Result<u64, BackupError> {
    let mut b = [0u8; 8];
    read_exact(r, &mut b, what)?;
    Ok(u64::from_be_bytes(b))
}

/// Reads `len` bytes, growing the buffer as they arrive (a corrupt length in a short file does
/// not allocate it).
fn get_bytes(r: &mut impl Read, len: u64, what: &str) -> Result<Vec<u8>, BackupError> {
    let mut buf = Vec::new();
    r.take(len)
        .read_to_end(&mut buf)
        .map_err(|e| format(format!("unreadable ({what}): {e}")))?;
    if buf.len() as u64 != len {
        return Err(format(format!("truncated ({what} cut short)")));
    }
    Ok(buf)
}

/// Reads a whole backup from `r`, handing every record to `visit` (a file's reader must be
/// read to its end or not at all), and checks its checksum and its end.
fn read_backup(
    r: impl Read,
    visit: &mut dyn FnMut(Item<'_>) -> Result<(), BackupError>,
) -> Result<(Header, Contents), BackupError> {
    let mut r = Hashed {
        inner: BufReader::with_capacity(256 * 1024, r),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut magic = [0u8; 16];
    read_exact(&mut r, &mut magic, "magic")?;
    if &magic != MAGIC {
        return Err(format(
            "it does not start with a supportopsd backup's magic bytes",
        ));
    }
    let version = get_u32(&mut r, "format version")?;
    if version != FORMAT_VERSION {
        return Err(format(format!(
            "format version {version}; this build reads version {FORMAT_VERSION}"
        )));
    }
    let header_len = get_u32(&mut r, "header")?;
    if header_len > MAX_HEADER {
        return Err(format(format!("a header of {header_len} bytes")));
    }
    let header_bytes = get_bytes(&mut r, u64::from(header_len), "header")?;
    let header: Header = serde_json::from_slice(&header_bytes)
        .map_err(|e| format(format!("unreadable header: {e}")))?;
    let mut contents = Contents::default();
    let mut in_tree = false;
    loop {
        let mut tag = [0u8; 1];
        read_exact(&mut r, &mut tag, "record")?;
        match tag[0] {
            TAG_TREE => {
                let len = get_u16(&mut r, "tree name")?;
                if len == 0 || len > MAX_NAME {
                    return Err(format(format!("a tree name of {len} bytes")));
                }
                let name = get_bytes(&mut r, u64::from(len), "tree name")?;
                if !name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_') {
                    return Err(format("a tree name with characters no tree has"));
                }
                visit(Item::Tree(&name))?;
                contents.trees += 1;
                in_tree = true;
            }
            TAG_ENTRY => {
                if !in_tree {
                    return Err(format("an entry before any tree"));
                }
                let klen = get_u32(&mut r, "key")?;
                if klen > MAX_KEY {
                    return Err(format(format!("a key of {klen} bytes")));
                }
                let key = get_bytes(&mut r, u64::from(klen), "key")?;
                let vlen = get_u32(&mut r, "value")?;
                let value = get_bytes(&mut r, u64::from(vlen), "value")?;
                visit(Item::Entry(&key, &value))?;
                contents.entries += 1;
            }
            TAG_FILE => {
                let len = get_u16(&mut r, "file name")?;
                if len > MAX_NAME {
                    return Err(format(format!("a file name of {len} bytes")));
                }
                let name = get_bytes(&mut r, u64::from(len), "file name")?;
                let name = String::from_utf8(name)
                    .ok()
                    .filter(|n| {
                        n.strip_prefix(SEGMENTS_DIR)
                            .and_then(|n| n.strip_prefix('/'))
                            .is_some_and(is_segment_name)
                    })
                    .ok_or_else(|| {
                        format("a file that is not a payload segment (events/<hex>.seg)")
                    })?;
                let size = get_u64(&mut r, "file length")?;
                let mut body = (&mut r).take(size);
                visit(Item::File(&name, &mut body))?;
                // Whatever the visitor left unread.
                io::copy(&mut body, &mut io::sink())
                    .map_err(|e| format(format!("unreadable ({name}): {e}")))?;
                if body.limit() != 0 {
                    return Err(format(format!("truncated ({name} cut short)")));
                }
                contents.files += 1;
                contents.file_bytes += size;
            }
            TAG_END => {
                let records = get_u64(&mut r, "end")?;
                let computed = r.hasher.finalize_reset();
                let mut stored = [0u8; 32];
                read_exact(&mut r.inner, &mut stored, "checksum")?;
                if computed.as_slice() != stored {
                    return Err(format(
                        "its SHA-256 checksum does not match: it was altered or damaged",
                    ));
                }
                if records != contents.trees + contents.entries + contents.files {
                    return Err(format("its record count does not match its records"));
                }
                let mut extra = [0u8; 1];
                match r.inner.read(&mut extra) {
                    Ok(0) => {}
                    Ok(_) => return Err(format("bytes after its end")),
                    Err(e) => return Err(format(format!("unreadable: {e}"))),
                }
                contents.bytes = r.bytes + 32;
                return Ok((header, contents));
            }
            other => return Err(format(format!("an unknown record type {other:#04x}"))),
        }
    }
}

/// Opens a backup file for reading.
fn open_backup(file: &Path) -> Result<File, BackupError> {
    File::open(file).map_err(io_error("opening the backup", file))
}

/// Checks a backup's format and checksum, without restoring it.
pub fn check(file: &Path) -> Result<(Header, Contents), BackupError> {
    read_backup(open_backup(file)?, &mut |item| {
        if let Item::File(_, body) = item {
            io::copy(body, &mut io::sink()).map_err(|e| format(format!("unreadable: {e}")))?;
        }
        Ok(())
    })
}

/// Whether `dir` is missing (`Ok(false)`) or an empty directory (`Ok(true)`); else
/// [`BackupError::NotEmpty`].
fn empty_target(dir: &Path) -> Result<bool, BackupError> {
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error("inspecting", dir)(e)),
        Ok(m) if m.is_dir() => {
            let mut entries = fs::read_dir(dir).map_err(io_error("listing", dir))?;
            if entries.next().is_some() {
                Err(BackupError::NotEmpty {
                    dir: dir.to_owned(),
                })
            } else {
                Ok(true)
            }
        }
        Ok(_) => Err(BackupError::NotEmpty {
            dir: dir.to_owned(),
        }),
    }
}

/// Restores the backup `file` into `dir`, which must not exist or be empty: a fresh sled
/// database (compact: written anew, see docs/state-retention.md) and the payload segment files.
/// The state is then opened once (migrated if its schema is older), the leases of the jobs
/// leased when it was taken are released, and it is counted. On an error,
/// what was written is removed (and `dir` too if it did not exist).
pub fn restore(file: &Path, dir: &Path) -> Result<Checked, BackupError> {
    let existed = empty_target(dir)?;
    let (header, _) = check(file)?;
    if header.schema_version > SCHEMA_VERSION {
        return Err(BackupError::NewerSchema {
            found: header.schema_version,
            supported: SCHEMA_VERSION,
        });
    }
    perms::create_dir(dir).map_err(io_error("creating", dir))?;
    let result = write_state(file, dir, &header).and_then(|contents| {
        let store = Store::open(dir)?;
        // No executor holds the jobs leased when the backup was taken: they are due again at
        // once, not when their leases run out (a request marked in flight stays so marked, and
        // is checked before anything is sent again, as after a crash).
        store.release_leases()?;
        store.flush()?;
        let counts = store.counts()?;
        store.secure_files();
        Ok(Checked {
            header,
            contents,
            counts,
        })
    });
    if result.is_err() {
        remove_written(dir, existed);
    }
    result
}

/// Removes what a failed restore wrote under `dir` (which was empty or missing before).
fn remove_written(dir: &Path, existed: bool) {
    if existed {
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = match entry.file_type() {
                    Ok(t) if t.is_dir() => fs::remove_dir_all(&path),
                    _ => fs::remove_file(&path),
                };
            }
        }
    } else {
        let _ = fs::remove_dir_all(dir);
    }
}

/// Writes the records of `file` into a new database under `dir` (second pass: the checksum is
/// checked again, in case the file changed since the first).
fn write_state(file: &Path, dir: &Path, header: &Header) -> Result<Contents, BackupError> {
    let db = super::open_sled(dir)?;
    let storage = |e| BackupError::State(super::storage_error(dir, e));
    let mut tree: Option<(Vec<u8>, sled::Tree)> = None;
    let mut schema: Option<u32> = None;
    let segments = dir.join(SEGMENTS_DIR);
    let (again, contents) = read_backup(open_backup(file)?, &mut |item| {
        match item {
            Item::Tree(name) => {
                tree = Some((name.to_vec(), db.open_tree(name).map_err(storage)?));
            }
            Item::Entry(key, value) => {
                let Some((name, t)) = &tree else {
                    return Err(format("an entry before any tree"));
                };
                if name == trees::META.as_bytes() && key == meta_keys::SCHEMA_VERSION.as_bytes() {
                    schema = Some(codec::decode(trees::META, key, value)?);
                }
                t.insert(key, value).map_err(storage)?;
            }
            Item::File(name, body) => {
                perms::create_dir(&segments).map_err(io_error("creating", &segments))?;
                let path = dir.join(name);
                let mut out = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(perms::FILE_MODE)
                    .open(&path)
                    .map_err(io_error("creating", &path))?;
                io::copy(body, &mut out).map_err(io_error("writing", &path))?;
                out.sync_all().map_err(io_error("writing", &path))?;
            }
        }
        Ok(())
    })?;
    if &again != header {
        return Err(format("the file changed while it was restored"));
    }
    if schema != Some(header.schema_version) {
        return Err(format(
            "its state's schema version does not match its header",
        ));
    }
    let meta = db.open_tree(trees::META).map_err(storage)?;
    let floor = codec::encode(trees::META, meta_keys::ID_BASE, &header.id_floor)?;
    meta.insert(meta_keys::ID_BASE.as_bytes(), floor)
        .map_err(storage)?;
    db.flush().map_err(storage)?;
    drop(db);
    Ok(contents)
}

/// Checks a backup completely: its format and checksum, then that it restores and opens (into
/// a temporary directory under `scratch`, removed afterwards), with the restored state's counts.
pub fn verify(file: &Path, scratch: &Path) -> Result<Checked, BackupError> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let dir = scratch.join(format!("supportopsd-verify-{}-{nanos}", std::process::id()));
    let result = restore(file, &dir);
    let _ = fs::remove_dir_all(&dir);
    result
}

#[cfg(test)]
#[path = "tests_backup.rs"]
mod tests;
