//! Tests of backups: round trip, ids above the source's, segment files, consistency under
//! concurrent writes, and refusal of damaged files and of a non-empty target.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::super::tests_queue::{check_consistency, event, rules};
use super::*;
use crate::state::{AuditKind, AuditRecord, Hold, HoldKind, IngestOutcome, RegistrationRecord};

fn backup_bytes(store: &Store) -> (Vec<u8>, BackupReport) {
    let mut out = Vec::new();
    let report = store.backup(&mut out, Taken::Offline).unwrap();
    (out, report)
}

fn registration(id: &str) -> RegistrationRecord {
    RegistrationRecord {
        integration: id.to_owned(),
        platform: "zendesk".to_owned(),
        revision: Some("abc".to_owned()),
        ids: vec!["w1".to_owned()],
        url: "https://ops.example.com/api/webhooks/zendesk/zd".to_owned(),
        events: vec!["ticket.created".to_owned()],
        expires_at_ms: None,
        sealed_secret: Some("c2VhbGVk".to_owned()),
        synced_ms: 5,
    }
}

fn jobs(outcome: IngestOutcome) -> Vec<u64> {
    match outcome {
        IngestOutcome::Stored { jobs } => jobs,
        IngestOutcome::Duplicate => panic!("unexpected duplicate"),
    }
}

/// A state with events, queued and dead-lettered jobs, a registration, audit records and two
/// segment files (and a file that is not one).
fn populated(dir: &Path) -> (Store, Vec<u64>) {
    let store = Store::open(dir).unwrap();
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.extend(jobs(
            store
                .ingest(&event("i", &i.to_string()), &rules(&["a", "b"]), 10, 1_000)
                .unwrap(),
        ));
    }
    store.dead_letter(ids[0], "gone", 11).unwrap();
    store.put_registration(&registration("zd")).unwrap();
    store
        .append_audit(&AuditRecord {
            at_ms: 12,
            kind: AuditKind::SyncRequested,
            resource_type: "revision".to_owned(),
            resource_id: "abc".to_owned(),
            detail: serde_json::json!({}),
        })
        .unwrap();
    store
        .place_hold(
            &Hold {
                kind: HoldKind::Integration,
                id: "slack".to_owned(),
                reason: "maintenance".to_owned(),
                at_ms: 13,
                by: "test".to_owned(),
            },
            &AuditRecord {
                at_ms: 13,
                kind: AuditKind::Paused,
                resource_type: "integration".to_owned(),
                resource_id: "slack".to_owned(),
                detail: serde_json::json!({"reason": "maintenance"}),
            },
        )
        .unwrap();
    let seg = dir.join(SEGMENTS_DIR);
    fs::create_dir_all(&seg).unwrap();
    // Beside the segment the ingests wrote, one more (whatever it holds, it is copied as is).
    assert!(seg.join("0000000000000001.seg").is_file());
    fs::write(seg.join("00000000000000a2.seg"), vec![7u8; 300_000]).unwrap();
    fs::write(seg.join("notes.txt"), b"not a segment").unwrap();
    (store, ids)
}

#[test]
fn a_backup_restores_to_the_same_state_with_ids_above_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, ids) = populated(&tmp.path().join("src"));
    let before = store.counts().unwrap();
    assert_eq!(
        before,
        StateCounts {
            events: 20,
            jobs_queued: 39,
            dead_letters: 1,
            audit_records: 2,
            registrations: 1,
        }
    );
    let (bytes, report) = backup_bytes(&store);
    let written = fs::metadata(store.dir().join(SEGMENTS_DIR).join("0000000000000001.seg"))
        .unwrap()
        .len();
    assert_eq!(report.contents.files, 2);
    assert_eq!(report.contents.file_bytes, written + 300_000);
    assert_eq!(report.contents.bytes, bytes.len() as u64);
    assert_eq!(report.header.schema_version, SCHEMA_VERSION);
    // No spool file is left behind.
    assert!(
        fs::read_dir(store.dir())
            .unwrap()
            .flatten()
            .all(|e| !e.file_name().to_string_lossy().ends_with(".spool"))
    );
    let file = tmp.path().join("state.backup");
    fs::write(&file, &bytes).unwrap();
    let (header, contents) = check(&file).unwrap();
    assert_eq!(header, report.header);
    assert_eq!(contents, report.contents);

    let target = tmp.path().join("restored");
    // A job leased when the backup is taken is due at once in the restored state.
    let leased = store.lease_due(10, 3_600_000, 1).unwrap();
    assert_eq!(leased.len(), 1);
    let (bytes, _) = backup_bytes(&store);
    fs::write(&file, &bytes).unwrap();
    let checked = restore(&file, &target).unwrap();
    assert_eq!(checked.counts, before);
    let restored = Store::open(&target).unwrap();
    check_consistency(&restored);
    assert_eq!(restored.registrations().unwrap(), vec![registration("zd")]);
    // Runtime holds are restored with the rest.
    assert_eq!(restored.holds().unwrap(), store.holds().unwrap());
    assert_eq!(restored.holds().unwrap().len(), 1);
    assert_eq!(restored.dead(10).unwrap().len(), 1);
    for id in &ids[1..] {
        assert!(restored.job(*id).unwrap().is_some(), "job {id}");
    }
    assert_eq!(
        fs::read(target.join("events/0000000000000001.seg")).unwrap(),
        fs::read(store.dir().join("events/0000000000000001.seg")).unwrap()
    );
    for id in &ids[1..] {
        let job = restored.job(*id).unwrap().unwrap();
        assert!(
            restored.event(job.event_id).unwrap().is_some(),
            "the payload of job {id}"
        );
    }
    assert_eq!(
        fs::read(target.join("events/00000000000000a2.seg"))
            .unwrap()
            .len(),
        300_000
    );
    assert!(!target.join("events/notes.txt").exists());
    // New ids continue above every id of the source, even though sled's generator restarted.
    let new = jobs(
        restored
            .ingest(&event("i", "new"), &rules(&["a"]), 20, 1_000)
            .unwrap(),
    );
    let source_max = ids.iter().max().copied().unwrap();
    assert!(new[0] > source_max, "{} <= {source_max}", new[0]);
    // Queued jobs are leased as in the source.
    assert_eq!(restored.lease_due(100, 1_000, 1_000).unwrap().len(), 40);
    // The source's dedupe windows hold in the restored state.
    assert_eq!(
        restored
            .ingest(&event("i", "3"), &rules(&["a"]), 20, 1_000)
            .unwrap(),
        IngestOutcome::Duplicate
    );
}

#[test]
fn files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = populated(&tmp.path().join("src"));
    let (bytes, _) = backup_bytes(&store);
    let file = tmp.path().join("b");
    fs::write(&file, &bytes).unwrap();
    let target = tmp.path().join("restored");
    restore(&file, &target).unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&target), 0o700);
    assert_eq!(mode(&target.join("events")), 0o700);
    assert_eq!(mode(&target.join("events/0000000000000001.seg")), 0o600);
    assert_eq!(mode(&target.join("db")), 0o600);
}

#[test]
fn a_backup_taken_under_concurrent_writes_is_consistent() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&tmp.path().join("src")).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let (store, stop, progress) = (store.clone(), stop.clone(), progress.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let ids = jobs(
                    store
                        .ingest(&event("i", &n.to_string()), &rules(&["a", "b"]), 10, 1_000)
                        .unwrap(),
                );
                if n.is_multiple_of(3) {
                    store.ack(ids[0]).unwrap();
                }
                if n.is_multiple_of(5) {
                    store.dead_letter(ids[1], "x", 11).unwrap();
                }
                n += 1;
                progress.store(n, Ordering::SeqCst);
            }
            n
        })
    };
    // Each backup is taken while the writer is busy: after it wrote 20 more deliveries.
    let wait_for = |n: u64| {
        while progress.load(Ordering::SeqCst) < n {
            std::thread::yield_now();
        }
    };
    let mut backups = Vec::new();
    for round in 1..=3 {
        wait_for(round * 20);
        backups.push(backup_bytes(&store).0);
    }
    stop.store(true, Ordering::SeqCst);
    let written = writer.join().unwrap();
    assert!(written > 0);
    for (i, bytes) in backups.iter().enumerate() {
        let file = tmp.path().join(format!("b{i}"));
        fs::write(&file, bytes).unwrap();
        let target = tmp.path().join(format!("r{i}"));
        let checked = restore(&file, &target).unwrap();
        let restored = Store::open(&target).unwrap();
        // Every ingest and transition is whole: jobs, their due entries, dead letters and
        // reference counts agree.
        check_consistency(&restored);
        assert!(checked.counts.events > 0);
    }
}

/// A backup with a hand-made header, checksummed as the writer does.
type Entries<'a> = &'a [(&'a [u8], &'a [u8])];

fn forged(header: &Header, records: &[(&str, Entries<'_>)]) -> Vec<u8> {
    let mut out = Hashing {
        inner: Vec::new(),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let json = serde_json::to_vec(header).unwrap();
    out.write_all(MAGIC).unwrap();
    put_u32(&mut out, FORMAT_VERSION).unwrap();
    put_u32(&mut out, json.len() as u32).unwrap();
    out.write_all(&json).unwrap();
    let mut count = 0;
    for (tree, entries) in records {
        put_tree(&mut out, tree.as_bytes()).unwrap();
        count += 1;
        for (k, v) in *entries {
            put_entry(&mut out, k, v).unwrap();
            count += 1;
        }
    }
    out.write_all(&[TAG_END]).unwrap();
    put_u64(&mut out, count).unwrap();
    let digest = out.hasher.finalize_reset();
    let mut bytes = out.inner;
    bytes.extend_from_slice(&digest);
    bytes
}

fn header(schema_version: u32) -> Header {
    Header {
        schema_version,
        created_ms: 1,
        supportopsd_version: "0.0.0".to_owned(),
        id_floor: 1 << 20,
        taken: Taken::Offline,
    }
}

#[test]
fn a_newer_schema_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("b");
    let version = codec::encode(trees::META, "", &(SCHEMA_VERSION + 1)).unwrap();
    fs::write(
        &file,
        forged(
            &header(SCHEMA_VERSION + 1),
            &[("meta", &[(b"schema_version", &version)])],
        ),
    )
    .unwrap();
    let target = tmp.path().join("r");
    let e = restore(&file, &target).unwrap_err();
    assert!(
        matches!(e, BackupError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1),
        "{e}"
    );
    assert!(e.to_string().contains("newer supportopsd"), "{e}");
    assert!(!target.exists());
}

#[test]
fn a_header_that_disagrees_with_the_state_is_refused_and_cleaned_up() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("b");
    let version = codec::encode(trees::META, "", &1u32).unwrap();
    fs::write(
        &file,
        forged(
            &header(SCHEMA_VERSION),
            &[("meta", &[(b"schema_version", &version)])],
        ),
    )
    .unwrap();
    let target = tmp.path().join("r");
    fs::create_dir(&target).unwrap();
    let e = restore(&file, &target).unwrap_err();
    assert!(e.to_string().contains("schema version"), "{e}");
    // The directory was empty before: it is empty again.
    assert_eq!(fs::read_dir(&target).unwrap().count(), 0);
}

#[test]
fn damaged_files_are_refused_by_check_and_restore() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = populated(&tmp.path().join("src"));
    let (bytes, _) = backup_bytes(&store);
    let file = tmp.path().join("b");
    let target = tmp.path().join("r");
    // Truncated anywhere (in the magic, the header, a tree, a segment file, the checksum).
    for cut in [
        0,
        5,
        20,
        40,
        bytes.len() / 3,
        bytes.len() - 200,
        bytes.len() - 1,
    ] {
        fs::write(&file, &bytes[..cut]).unwrap();
        let e = check(&file).unwrap_err();
        assert!(matches!(e, BackupError::Format(_)), "cut {cut}: {e}");
        assert!(restore(&file, &target).is_err(), "cut {cut}");
        assert!(!target.exists(), "cut {cut}");
    }
    // One byte altered anywhere.
    for at in [30, bytes.len() / 2, bytes.len() - 100, bytes.len() - 5] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        fs::write(&file, &bad).unwrap();
        let e = check(&file).unwrap_err();
        assert!(matches!(e, BackupError::Format(_)), "byte {at}: {e}");
        assert!(restore(&file, &target).is_err());
        assert!(!target.exists());
    }
    // Bytes after the end.
    let mut longer = bytes.clone();
    longer.push(0);
    fs::write(&file, &longer).unwrap();
    assert!(
        check(&file)
            .unwrap_err()
            .to_string()
            .contains("after its end")
    );
    // Not a backup at all.
    fs::write(&file, b"hello").unwrap();
    assert!(check(&file).is_err());
}

#[test]
fn a_non_empty_target_is_refused_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = populated(&tmp.path().join("src"));
    let (bytes, _) = backup_bytes(&store);
    let file = tmp.path().join("b");
    fs::write(&file, &bytes).unwrap();
    let target = tmp.path().join("r");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep"), b"mine").unwrap();
    let e = restore(&file, &target).unwrap_err();
    assert!(matches!(e, BackupError::NotEmpty { .. }), "{e}");
    assert_eq!(fs::read(target.join("keep")).unwrap(), b"mine");
    // A file in place of the directory is refused too.
    let e = restore(&file, &target.join("keep")).unwrap_err();
    assert!(matches!(e, BackupError::NotEmpty { .. }), "{e}");
    // So is the source itself.
    assert!(restore(&file, store.dir()).is_err());
}

#[test]
fn verify_restores_into_scratch_and_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, _) = populated(&tmp.path().join("src"));
    let (bytes, _) = backup_bytes(&store);
    let file = tmp.path().join("b");
    fs::write(&file, &bytes).unwrap();
    let scratch = tmp.path().join("scratch");
    fs::create_dir(&scratch).unwrap();
    let checked = verify(&file, &scratch).unwrap();
    assert_eq!(checked.counts, store.counts().unwrap());
    assert_eq!(fs::read_dir(&scratch).unwrap().count(), 0);
}

#[test]
fn a_stale_spool_is_removed_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    drop(Store::open(&dir).unwrap());
    fs::write(dir.join("backup-1-2.spool"), b"left by a crash").unwrap();
    drop(Store::open(&dir).unwrap());
    assert!(!dir.join("backup-1-2.spool").exists());
}

#[test]
fn segment_names_are_checked() {
    assert!(is_segment_name("00000000000000ff.seg"));
    assert!(!is_segment_name("00000000000000FF.seg"));
    assert!(!is_segment_name("../00000000000000.seg"));
    assert!(!is_segment_name("00000000000000ff.sega"));
}
