//! Tests of [`Store::refresh_snapshot`]: sled closed and opened again under a running store,
//! without losing a write, without deadlocking on nested calls, and giving up (changing
//! nothing) when calls in progress do not finish.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::tests_queue::{check_consistency, event, rules};
use super::*;

thread_local! {
    /// Makes `open_sled` on this thread panic the way sled 0.34 does on some states it cannot
    /// read (tests only).
    pub(super) static OPEN_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with sled's open panicking on this thread.
fn with_open_panicking<T>(f: impl FnOnce() -> T) -> T {
    OPEN_PANICS.with(|p| p.set(true));
    let out = f();
    OPEN_PANICS.with(|p| p.set(false));
    out
}

#[test]
fn a_state_sled_panics_on_is_an_error_that_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    drop(Store::open(tmp.path()).unwrap());
    let err = with_open_panicking(|| Store::open(tmp.path())).unwrap_err();
    assert!(matches!(err, Error::Unreadable { .. }), "{err}");
    let said = err.to_string();
    assert!(
        said.contains("sled failed on its files: injected by a test"),
        "{said}"
    );
    assert!(said.contains("supportopsd state restore"), "{said}");
    // Nothing was held: the state opens once sled does.
    let store = Store::open(tmp.path()).unwrap();
    assert_eq!(store.events_stored(), 0);
}

#[test]
fn a_refresh_whose_reopen_panics_closes_the_state_and_no_call_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(tmp.path()).unwrap());
    store
        .ingest(&event("i", "1"), &rules(&["a"]), 0, u64::MAX)
        .unwrap();
    let err = with_open_panicking(|| store.refresh_snapshot()).unwrap_err();
    assert!(matches!(err, Error::Unreadable { .. }), "{err}");
    // Every later call fails at once, on any thread, rather than waiting for the drain.
    let (tx, rx) = std::sync::mpsc::channel();
    let other = store.clone();
    std::thread::spawn(move || {
        let _ = tx.send(other.job(1).map(|_| ()));
    });
    let answer = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("a call after the failed refresh answered");
    assert!(matches!(answer, Err(Error::Closed { .. })), "{answer:?}");
    assert!(matches!(store.job(1), Err(Error::Closed { .. })));
    // Nothing written was lost: the state opens again with the delivery.
    drop(store);
    let reopened = Store::open(tmp.path()).unwrap();
    assert_eq!(reopened.events_stored(), 1);
}

#[test]
fn a_refresh_under_concurrent_ingest_and_leasing_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let sled = Arc::new(Store::open(tmp.path()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let ingesters: Vec<_> = (0..3)
        .map(|t| {
            let (store, stop) = (sled.clone(), stop.clone());
            std::thread::spawn(move || {
                let store: &dyn State = &*store;
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let ev = event("i", &format!("{t}-{n}"));
                    store.ingest(&ev, &rules(&["a", "b"]), 0, u64::MAX).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    let leaser = {
        let (store, stop) = (sled.clone(), stop.clone());
        std::thread::spawn(move || {
            let store: &dyn State = &*store;
            let mut acked = 0usize;
            while !stop.load(Ordering::Relaxed) {
                for job in store.lease_due(1, 60_000, 16).unwrap() {
                    assert!(store.ack(job.id).unwrap());
                    acked += 1;
                }
                // A nested call: the history read calls further store methods.
                store.history(&HistoryFilter::default(), None, 5).unwrap();
            }
            acked
        })
    };
    let mut done = 0;
    for _ in 0..200 {
        if done == 5 {
            break;
        }
        #[allow(clippy::disallowed_methods)] // a plain thread, not a runtime's
        std::thread::sleep(std::time::Duration::from_millis(30));
        if let Refreshed::Done(_) = sled.refresh_snapshot().unwrap() {
            done += 1;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let ingested: u64 = ingesters.into_iter().map(|t| t.join().unwrap()).sum();
    let acked = leaser.join().unwrap();
    assert_eq!(done, 5, "refreshes done under load");
    assert_eq!(sled.events_stored() as u64, ingested);
    assert_eq!(sled.queue_depth() + acked, 2 * ingested as usize);
    check_consistency(&sled);
    // And all of it is there when the state is opened again.
    drop(sled);
    let reopened = Store::open(tmp.path()).unwrap();
    assert_eq!(reopened.events_stored() as u64, ingested);
    assert_eq!(reopened.queue_depth() + acked, 2 * ingested as usize);
    check_consistency(&reopened);
}

#[test]
fn a_call_that_does_not_finish_puts_the_refresh_off_and_nothing_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(tmp.path()).unwrap());
    store
        .ingest(&event("i", "1"), &rules(&["a"]), 0, u64::MAX)
        .unwrap();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = {
        let store = store.clone();
        std::thread::spawn(move || {
            let t = store.t().unwrap();
            held_tx.send(()).unwrap();
            release_rx.recv().unwrap();
            // Nested calls while holding the trees pass a draining refresh.
            assert_eq!(store.events_stored(), 1);
            drop(t);
        })
    };
    held_rx.recv().unwrap();
    assert_eq!(store.refresh_snapshot().unwrap(), Refreshed::Busy);
    // Calls go on as before.
    assert_eq!(store.events_stored(), 1);
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    assert!(matches!(
        store.refresh_snapshot().unwrap(),
        Refreshed::Done(_)
    ));
    assert_eq!(store.events_stored(), 1);
    // A thread holding the trees itself is told so instead of waiting for itself.
    let t = store.t().unwrap();
    assert_eq!(store.refresh_snapshot().unwrap(), Refreshed::Busy);
    drop(t);
}

#[test]
fn a_snapshot_is_due_after_so_many_deliveries_while_running_and_after_any_at_a_stop() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let state: &dyn State = &store;
    for when in [Upkeep::Running, Upkeep::Stop] {
        assert!(!store.snapshot_due(when));
        assert_eq!(
            state.upkeep(when).unwrap(),
            None,
            "nothing stored since the open"
        );
    }
    store
        .ingest(&event("i", "1"), &rules(&[]), 0, u64::MAX)
        .unwrap();
    assert!(!store.snapshot_due(Upkeep::Running));
    assert_eq!(state.upkeep(Upkeep::Running).unwrap(), None);
    assert!(store.snapshot_due(Upkeep::Stop));
    store.count_stored(SNAPSHOT_AFTER_DELIVERIES as usize - 2);
    assert!(!store.snapshot_due(Upkeep::Running));
    store.count_stored(1);
    assert!(store.snapshot_due(Upkeep::Running));
    assert!(state.upkeep(Upkeep::Running).unwrap().is_some());
    for when in [Upkeep::Running, Upkeep::Stop] {
        assert!(!store.snapshot_due(when));
        assert_eq!(state.upkeep(when).unwrap(), None);
    }
    assert_eq!(store.events_stored(), 1);
    // While running, any delivery stored is due once SNAPSHOT_AFTER passed.
    let hour = std::time::Duration::from_secs(3600);
    assert!(!snapshot_due(Upkeep::Running, 1, SNAPSHOT_AFTER - hour));
    assert!(snapshot_due(Upkeep::Running, 1, SNAPSHOT_AFTER));
    assert!(!snapshot_due(Upkeep::Running, 0, SNAPSHOT_AFTER + hour));
    assert!(!snapshot_due(Upkeep::Stop, 0, SNAPSHOT_AFTER + hour));
}
