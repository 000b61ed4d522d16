//! Does sled give disk space back? A measurement for issue 17 (retention that gives space
//! back), run by `benches/sled_space.sh`; figures and conclusion in docs/state-retention.md.
//!
//! Uses sled directly, opened as `src/state` opens it (sled 0.34.7 from Cargo.toml, no flush
//! timer, 64 MiB cache, default segment size and mode), and measures the state directory
//! (apparent bytes and allocated blocks, `db` file and `blobs/` apart) in three layouts:
//!
//! - `per-key`: N payloads under time-ordered keys in one tree; the oldest 90 % removed key by
//!   key, as retention would; then as many new payloads written again (is the freed space
//!   reused?), a second retention cycle, and a reopen.
//! - `drop-tree`: the same payloads in 10 trees of N/10 (one per time segment); the oldest 9
//!   trees dropped whole, then the same new writes, cycle and reopen.
//! - `export`: the per-key state after its deletes, exported and imported into a fresh
//!   directory (sled's own copy-compaction).
//!
//! usage: sled-space [N [PAYLOAD_BYTES [DIR]]]  (default 100000 payloads of 5000 bytes, under
//! $TMPDIR); each layout's directory is deleted once measured.

// A synchronous program with no async runtime: it waits and times with std, not tokio.
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const SEGMENTS: u64 = 10;

fn main() -> Res<()> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let payload: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5000);
    let base: PathBuf = args
        .next()
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    if n < SEGMENTS * 10 {
        return Err(format!("N must be at least {}", SEGMENTS * 10).into());
    }
    let base = base.join(format!("sled-space-{}", std::process::id()));
    std::fs::create_dir_all(&base)?;
    println!(
        "sled 0.34.7, {n} payloads of {payload} bytes ({} MB of values), time-ordered u64 keys",
        n * payload as u64 / 1_000_000
    );
    println!(
        "{:<10} {:<44} {:>9} {:>10} {:>10} {:>9} {:>8}",
        "layout", "step", "live", "apparent", "allocated", "blobs", "secs"
    );
    let result = per_key(&base, n, payload).and_then(|()| drop_tree(&base, n, payload));
    let _ = std::fs::remove_dir_all(&base);
    result
}

fn open(dir: &Path) -> Res<sled::Db> {
    Ok(sled::Config::new()
        .path(dir)
        .flush_every_ms(None)
        .cache_capacity(64 * 1024 * 1024)
        .open()?)
}

/// A payload that neither sled nor the file system could shrink (xorshift bytes).
fn value(i: u64, len: usize) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[derive(Default)]
struct Size {
    apparent: u64,
    allocated: u64,
    blobs: u64,
}

fn du(dir: &Path) -> Res<Size> {
    let mut size = Size::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                size.apparent += meta.len();
                size.allocated += meta.blocks() * 512;
                if entry.path().components().any(|c| c.as_os_str() == "blobs") {
                    size.blobs += meta.blocks() * 512;
                }
            }
        }
    }
    Ok(size)
}

struct Report<'a> {
    layout: &'a str,
    dir: PathBuf,
    start: Instant,
}

impl Report<'_> {
    fn row(&self, step: &str, live: u64, payload: usize) -> Res<()> {
        let s = du(&self.dir)?;
        let mb = |b: u64| format!("{:.0} MB", b as f64 / 1e6);
        println!(
            "{:<10} {:<44} {:>9} {:>10} {:>10} {:>9} {:>8.1}",
            self.layout,
            step,
            mb(live * payload as u64),
            mb(s.apparent),
            mb(s.allocated),
            mb(s.blobs),
            self.start.elapsed().as_secs_f64()
        );
        Ok(())
    }
}

fn write(tree: &sled::Tree, keys: std::ops::Range<u64>, payload: usize) -> Res<()> {
    for i in keys {
        tree.insert(i.to_be_bytes(), value(i, payload))?;
    }
    Ok(())
}

fn remove(tree: &sled::Tree, keys: std::ops::Range<u64>) -> Res<()> {
    for i in keys {
        tree.remove(i.to_be_bytes())?;
    }
    Ok(())
}

fn per_key(base: &Path, n: u64, payload: usize) -> Res<()> {
    let r = Report {
        layout: "per-key",
        dir: base.join("per-key"),
        start: Instant::now(),
    };
    let keep = n / 10;
    let db = open(&r.dir)?;
    let tree = db.open_tree("inbox")?;
    write(&tree, 0..n, payload)?;
    db.flush()?;
    r.row("1. N written, flushed", n, payload)?;
    remove(&tree, 0..n - keep)?;
    db.flush()?;
    r.row("2. oldest 90% removed, flushed", keep, payload)?;
    std::thread::sleep(Duration::from_secs(5));
    db.flush()?;
    r.row("3. 5 s later", keep, payload)?;
    write(&tree, n..2 * n - keep, payload)?;
    db.flush()?;
    r.row("4. 0.9 N new written (live N again)", n, payload)?;
    remove(&tree, n - keep..2 * n - 2 * keep)?;
    write(&tree, 2 * n - keep..3 * n - 2 * keep, payload)?;
    db.flush()?;
    r.row("5. second cycle: 90% removed, 0.9 N new", n, payload)?;
    remove(&tree, 2 * n - 2 * keep..3 * n - 3 * keep)?;
    db.flush()?;
    r.row("6. oldest 90% removed again", keep, payload)?;
    drop(tree);
    drop(db);
    std::thread::sleep(Duration::from_millis(500));
    let db = open(&r.dir)?;
    db.flush()?;
    r.row("7. reopened", keep, payload)?;

    // sled's own compaction: copy every tree into a fresh database.
    let e = Report {
        layout: "export",
        dir: base.join("export"),
        start: Instant::now(),
    };
    let copy = open(&e.dir)?;
    copy.import(db.export());
    copy.flush()?;
    let live = copy.open_tree("inbox")?.len() as u64;
    e.row("8. state of 7 exported into a fresh dir", live, payload)?;
    drop(copy);
    drop(db);
    std::fs::remove_dir_all(&e.dir)?;
    std::fs::remove_dir_all(&r.dir)?;
    Ok(())
}

fn segment(db: &sled::Db, s: u64) -> Res<sled::Tree> {
    Ok(db.open_tree(format!("seg{s:04}"))?)
}

fn drop_tree(base: &Path, n: u64, payload: usize) -> Res<()> {
    let r = Report {
        layout: "drop-tree",
        dir: base.join("drop-tree"),
        start: Instant::now(),
    };
    let per = n / SEGMENTS;
    let keep = SEGMENTS / 10;
    let db = open(&r.dir)?;
    // Segment s holds keys s*per .. (s+1)*per.
    let fill = |from: u64, to: u64| -> Res<()> {
        for s in from..to {
            write(&segment(&db, s)?, s * per..(s + 1) * per, payload)?;
        }
        Ok(())
    };
    let drop_segments = |from: u64, to: u64| -> Res<()> {
        for s in from..to {
            db.drop_tree(format!("seg{s:04}"))?;
        }
        Ok(())
    };
    fill(0, SEGMENTS)?;
    db.flush()?;
    r.row("1. N written in 10 trees, flushed", n, payload)?;
    drop_segments(0, SEGMENTS - keep)?;
    db.flush()?;
    r.row("2. oldest 9 trees dropped, flushed", n / 10, payload)?;
    std::thread::sleep(Duration::from_secs(5));
    db.flush()?;
    r.row("3. 5 s later", n / 10, payload)?;
    fill(SEGMENTS, 2 * SEGMENTS - keep)?;
    db.flush()?;
    r.row("4. 0.9 N new written (live N again)", n, payload)?;
    drop_segments(SEGMENTS - keep, 2 * SEGMENTS - 2 * keep)?;
    fill(2 * SEGMENTS - keep, 3 * SEGMENTS - 2 * keep)?;
    db.flush()?;
    r.row("5. second cycle: 9 dropped, 0.9 N new", n, payload)?;
    drop_segments(2 * SEGMENTS - 2 * keep, 3 * SEGMENTS - 3 * keep)?;
    db.flush()?;
    r.row("6. oldest 9 trees dropped again", n / 10, payload)?;
    drop(db);
    std::thread::sleep(Duration::from_millis(500));
    let db = open(&r.dir)?;
    db.flush()?;
    r.row("7. reopened", n / 10, payload)?;
    drop(db);
    std::fs::remove_dir_all(&r.dir)?;
    Ok(())
}
