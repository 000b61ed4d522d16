//! Model-based property test of the inbox and outbox: random sequences of operations on a real
//! state, checked after every step against a small in-memory model.
//!
//! Every operation and every check but the backend's own goes through the state interface
//! (`&dyn State`), so another backend runs the same test with its own [`Backend`]: how to open
//! its state in a directory, and the checks only it can make ([`SLED`]: the trees' structure,
//! and which deliveries are stored by event key).
//!
//! Properties: no job is lost (every job ever created is in the outbox, dead-lettered, or was
//! acknowledged exactly once); no job is acknowledged twice; a job is only leased when it is
//! due and not under an unexpired lease (so no two live leases on one job), oldest first;
//! a job is dead-lettered exactly when its attempts reach [`MAX_ATTEMPTS`]; steps and results
//! survive retries, dead-lettering, replays and reopens; `queue_depth`, `dead_depth` and
//! `oldest_due_ms` match the model; the dedupe window and purging behave (a delivery a queued or
//! dead-lettered job references is never purged); and the backend stays structurally consistent
//! (for sled, [`check_consistency`]).

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use serde_json::json;

use super::tests_queue::{check_consistency, event, rules};
use super::*;

/// Attempts after which a job is dead-lettered.
const MAX_ATTEMPTS: u32 = 3;
/// How long an ingested event is deduped.
const DEDUPE_MS: u64 = 300;
/// How long a stored delivery is kept (unless a job references it).
const RETENTION_MS: u64 = 200;

#[derive(Debug, Clone)]
enum Op {
    /// Ingest a new event matching this many rules.
    Enqueue(usize),
    /// Redeliver an earlier event (a duplicate inside its dedupe window).
    Redeliver(usize),
    /// Lease due jobs.
    Lease { lease_ms: u64, limit: usize },
    /// Complete the next step of a job under an unexpired lease.
    CompleteStep(usize),
    /// Acknowledge any job ever created (live, dead or acknowledged before).
    Ack(usize),
    /// Fail a job under an unexpired lease: retry, or dead-letter at the last attempt.
    Fail { pick: usize, backoff_ms: u64 },
    /// Replay any job ever created (only dead ones can be).
    Replay(usize),
    /// Wake any job ever created (a paused integration resumed): only a live, unleased job
    /// due later is made due now.
    Wake(usize),
    /// Let time pass.
    Advance(u64),
    /// Drop the store without releasing leases, and reopen it.
    Crash,
    /// Release leases (graceful shutdown), drop the store and reopen it.
    Shutdown,
    /// Purge expired dedupe entries and unreferenced deliveries past retention.
    Purge,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..4).prop_map(Op::Enqueue),
        1 => any::<usize>().prop_map(Op::Redeliver),
        4 => (1u64..100, 1usize..5).prop_map(|(lease_ms, limit)| Op::Lease { lease_ms, limit }),
        3 => any::<usize>().prop_map(Op::CompleteStep),
        3 => any::<usize>().prop_map(Op::Ack),
        3 => (any::<usize>(), 0u64..50).prop_map(|(pick, backoff_ms)| Op::Fail { pick, backoff_ms }),
        1 => any::<usize>().prop_map(Op::Replay),
        2 => any::<usize>().prop_map(Op::Wake),
        3 => (0u64..150).prop_map(Op::Advance),
        1 => Just(Op::Crash),
        1 => Just(Op::Shutdown),
        1 => Just(Op::Purge),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Live,
    Dead,
    /// Acknowledged (exactly once: a second ack must report `false`).
    Acked,
}

#[derive(Debug, Clone)]
struct MJob {
    event_key: String,
    step: usize,
    attempts: u32,
    due_ms: u64,
    lease_until_ms: Option<u64>,
    place: Place,
}

impl MJob {
    fn ready_ms(&self) -> u64 {
        self.lease_until_ms
            .map_or(self.due_ms, |l| l.max(self.due_ms))
    }
}

#[derive(Debug, Default)]
struct Model {
    now: u64,
    jobs: BTreeMap<u64, MJob>,
    /// Event key → dedupe expiry.
    dedupe: BTreeMap<String, u64>,
    /// Event keys ever ingested, in order (for redeliveries).
    events: Vec<String>,
    /// Every stored delivery, in arrival order: key, when received, its jobs, whether it
    /// should still be stored.
    deliveries: Vec<MDelivery>,
}

#[derive(Debug, Clone)]
struct MDelivery {
    key: String,
    received: u64,
    jobs: Vec<u64>,
    present: bool,
}

impl Model {
    fn ids_where(&self, pred: impl Fn(&MJob) -> bool) -> Vec<u64> {
        self.jobs
            .iter()
            .filter(|(_, j)| pred(j))
            .map(|(id, _)| *id)
            .collect()
    }

    fn held(&self) -> Vec<u64> {
        let now = self.now;
        self.ids_where(|j| j.place == Place::Live && j.lease_until_ms.is_some_and(|l| l > now))
    }

    fn ingest(&mut self, store: &dyn State, key_id: &str, n: usize) {
        let key = format!("model/{key_id}");
        let names: Vec<String> = rules(&["a", "b", "c"])[..n].to_vec();
        let outcome = store
            .ingest(
                &event("model", key_id),
                &names,
                self.now,
                self.now + DEDUPE_MS,
            )
            .unwrap();
        if self.dedupe.get(&key).is_some_and(|until| *until > self.now) {
            assert_eq!(outcome, IngestOutcome::Duplicate);
            return;
        }
        let IngestOutcome::Stored { jobs } = outcome else {
            panic!("{key} should not be a duplicate");
        };
        assert_eq!(jobs.len(), n);
        self.deliveries.push(MDelivery {
            key: key.clone(),
            received: self.now,
            jobs: jobs.clone(),
            present: true,
        });
        for id in jobs {
            assert!(!self.jobs.contains_key(&id), "id {id} reused");
            self.jobs.insert(
                id,
                MJob {
                    event_key: key.clone(),
                    step: 0,
                    attempts: 0,
                    due_ms: self.now,
                    lease_until_ms: None,
                    place: Place::Live,
                },
            );
        }
        self.dedupe.insert(key.clone(), self.now + DEDUPE_MS);
        if !self.events.contains(&key) {
            self.events.push(key);
        }
    }

    fn referenced(&self, d: &MDelivery) -> bool {
        d.jobs.iter().any(|id| self.jobs[id].place != Place::Acked)
    }

    fn present(&self, key: &str) -> bool {
        self.deliveries.iter().any(|d| d.key == key && d.present)
    }
}

fn pick(ids: &[u64], n: usize) -> Option<u64> {
    (!ids.is_empty()).then(|| ids[n % ids.len()])
}

/// A backend under test.
struct Backend<S> {
    /// Opens the state under a directory (again after a crash or a stop).
    open: fn(&Path) -> S,
    /// What only this backend can check: its structure, and that exactly the deliveries the
    /// model expects are stored.
    check: fn(&S, &Model),
}

/// The sled backend ([`Store`]).
const SLED: Backend<Store> = Backend {
    open: open_sled,
    check: check_sled,
};

fn open_sled(dir: &Path) -> Store {
    Store::open(dir).unwrap()
}

fn check_sled(store: &Store, model: &Model) {
    check_consistency(store);
    for key in &model.events {
        assert_eq!(
            store.event_by_key(key).unwrap().is_some(),
            model.present(key),
            "event {key}"
        );
    }
}

fn reopen<S: State>(backend: &Backend<S>, dir: &Path, store: &mut Option<S>) {
    if let Some(s) = store.take() {
        s.flush().unwrap();
        drop(s);
    }
    *store = Some((backend.open)(dir));
}

fn apply(store: &dyn State, model: &mut Model, op: &Op) {
    let now = model.now;
    match *op {
        Op::Enqueue(n) => {
            let key_id = format!("e{}", model.events.len());
            model.ingest(store, &key_id, n);
        }
        Op::Redeliver(p) => {
            if model.events.is_empty() {
                return;
            }
            let key = model.events[p % model.events.len()].clone();
            let key_id = key.trim_start_matches("model/").to_owned();
            model.ingest(store, &key_id, 1);
        }
        Op::Lease { lease_ms, limit } => {
            let mut expected: Vec<(u64, u64)> = model
                .jobs
                .iter()
                .filter(|(_, j)| j.place == Place::Live && j.ready_ms() <= now)
                .map(|(id, j)| (j.ready_ms(), *id))
                .collect();
            expected.sort_unstable();
            expected.truncate(limit);
            let leased = store.lease_due(now, lease_ms, limit).unwrap();
            assert_eq!(
                leased.iter().map(|j| j.id).collect::<Vec<_>>(),
                expected.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
                "leased the wrong jobs"
            );
            for job in leased {
                let m = model.jobs.get_mut(&job.id).unwrap();
                // Never two live leases on one job.
                assert!(m.lease_until_ms.is_none_or(|l| l <= now));
                assert_eq!(job.step, m.step, "progress lost");
                m.lease_until_ms = Some(now + lease_ms);
            }
        }
        Op::CompleteStep(p) => {
            let Some(id) = pick(&model.held(), p) else {
                return;
            };
            let m = model.jobs.get_mut(&id).unwrap();
            let job = store.complete_step(id, m.step, json!(m.step)).unwrap();
            m.step += 1;
            assert_eq!(job.step, m.step);
            let results: Vec<_> = (0..m.step).map(|s| json!(s)).collect();
            assert_eq!(job.results, results);
            // A stale completion of the same step is refused.
            assert!(matches!(
                store.complete_step(id, m.step - 1, json!(null)),
                Err(Error::StepMismatch { .. })
            ));
        }
        Op::Ack(p) => {
            let Some(id) = pick(&model.ids_where(|_| true), p) else {
                return;
            };
            let m = model.jobs.get_mut(&id).unwrap();
            let acked = store.ack(id).unwrap();
            assert_eq!(acked, m.place == Place::Live, "ack of a {:?} job", m.place);
            if acked {
                m.place = Place::Acked;
            }
        }
        Op::Fail {
            pick: p,
            backoff_ms,
        } => {
            let Some(id) = pick(&model.held(), p) else {
                return;
            };
            let m = model.jobs.get_mut(&id).unwrap();
            let stored = store.job(id).unwrap().unwrap();
            assert_eq!(stored.attempts, m.attempts);
            m.attempts += 1;
            m.lease_until_ms = None;
            if m.attempts >= MAX_ATTEMPTS {
                let dead = store.dead_letter(id, "failed", now).unwrap();
                assert_eq!(dead.job.attempts, MAX_ATTEMPTS);
                assert_eq!(dead.dead_at_ms, now);
                m.place = Place::Dead;
            } else {
                let job = store.retry(id, "failed", now + backoff_ms).unwrap();
                assert_eq!(job.attempts, m.attempts);
                m.due_ms = now + backoff_ms;
            }
        }
        Op::Replay(p) => {
            let Some(id) = pick(&model.ids_where(|_| true), p) else {
                return;
            };
            let m = model.jobs.get_mut(&id).unwrap();
            match store.replay(id, now) {
                Ok(job) => {
                    assert_eq!(m.place, Place::Dead);
                    assert_eq!(job.step, m.step);
                    m.place = Place::Live;
                    m.attempts = 0;
                    m.due_ms = now;
                    m.lease_until_ms = None;
                }
                Err(Error::NoSuchDeadJob { .. }) => assert_ne!(m.place, Place::Dead),
                Err(e) => panic!("{e}"),
            }
        }
        Op::Wake(p) => {
            let Some(id) = pick(&model.ids_where(|_| true), p) else {
                return;
            };
            let m = model.jobs.get_mut(&id).unwrap();
            let wakes = m.place == Place::Live
                && m.lease_until_ms.is_none_or(|l| l <= now)
                && m.due_ms > now;
            assert_eq!(store.wake(id, now).unwrap(), wakes, "wake of job {id}");
            if wakes {
                m.due_ms = now;
                m.lease_until_ms = None;
            }
        }
        Op::Advance(ms) => model.now += ms,
        Op::Crash | Op::Shutdown => unreachable!("handled by the caller"),
        Op::Purge => {
            store
                .purge_expired(now, &super::tests_queue::keep_for(RETENTION_MS))
                .unwrap();
            model.dedupe.retain(|_, until| *until > now);
            let gone: Vec<usize> = (0..model.deliveries.len())
                .filter(|i| {
                    let d = &model.deliveries[*i];
                    !model.referenced(d) && d.received + RETENTION_MS <= now
                })
                .collect();
            for i in gone {
                model.deliveries[i].present = false;
            }
        }
    }
}

/// The checks every backend passes, through the interface.
fn check(store: &dyn State, model: &Model) {
    let live = model.ids_where(|j| j.place == Place::Live);
    let dead = model.ids_where(|j| j.place == Place::Dead);
    assert_eq!(store.queue_depth(), live.len(), "queue depth");
    // The queue in pages of 3, by id: exactly the live jobs, none twice.
    let mut listed = Vec::new();
    let mut after = None;
    loop {
        let page = store.queued(after, 3).unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        listed.extend(page.iter().map(|j| j.id));
    }
    assert_eq!(listed, live, "queued jobs");
    assert_eq!(store.dead_depth(), dead.len(), "dead depth");
    assert_eq!(
        store.oldest_due_ms().unwrap(),
        live.iter().map(|id| model.jobs[id].ready_ms()).min()
    );
    for (id, m) in &model.jobs {
        let job = store.job(*id).unwrap();
        let dead_job = store.dead_job(*id).unwrap();
        match m.place {
            Place::Live => {
                let job = job.unwrap_or_else(|| panic!("job {id} lost"));
                assert!(dead_job.is_none());
                assert_eq!(
                    (job.step, job.attempts, job.due_ms, job.lease_until_ms),
                    (m.step, m.attempts, m.due_ms, m.lease_until_ms),
                    "job {id}"
                );
                assert!(job.attempts < MAX_ATTEMPTS);
                assert_eq!(job.event_key, m.event_key);
                let event = store.event(job.event_id).unwrap();
                let event = event.unwrap_or_else(|| panic!("job {id}'s delivery purged"));
                assert_eq!(event.key(), m.event_key);
            }
            Place::Dead => {
                assert!(job.is_none());
                let dead_job = dead_job.unwrap_or_else(|| panic!("dead job {id} lost"));
                assert_eq!(dead_job.job.attempts, MAX_ATTEMPTS);
                assert_eq!(dead_job.job.step, m.step);
                assert_eq!(dead_job.job.last_error.as_deref(), Some("failed"));
                let event = store.event(dead_job.job.event_id).unwrap();
                assert!(event.is_some(), "dead job {id}'s delivery purged");
            }
            Place::Acked => assert!(job.is_none() && dead_job.is_none(), "job {id} resurrected"),
        }
    }
    for key in &model.events {
        assert_eq!(
            store.dedupe_until(key).unwrap(),
            model.dedupe.get(key).copied(),
            "dedupe window of {key}"
        );
    }
}

fn run<S: State>(backend: &Backend<S>, ops: &[Op]) {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Some((backend.open)(tmp.path()));
    let mut model = Model {
        now: 1_000,
        ..Model::default()
    };
    for op in ops {
        match op {
            Op::Crash => reopen(backend, tmp.path(), &mut store),
            Op::Shutdown => {
                let released = store.as_ref().unwrap().release_leases().unwrap();
                let leased = model
                    .jobs
                    .values_mut()
                    .filter(|j| j.place == Place::Live && j.lease_until_ms.is_some());
                let mut n = 0;
                for j in leased {
                    j.lease_until_ms = None;
                    n += 1;
                }
                assert_eq!(released, n);
                reopen(backend, tmp.path(), &mut store);
            }
            op => apply(store.as_ref().unwrap(), &mut model, op),
        }
        let state = store.as_ref().unwrap();
        check(state, &model);
        (backend.check)(state, &model);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn outbox_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        run(&SLED, &ops);
    }
}

/// A fixed sequence through every transition, so that a regression fails without shrinking.
#[test]
fn model_smoke() {
    run(
        &SLED,
        &[
            Op::Enqueue(3),
            Op::Lease {
                lease_ms: 50,
                limit: 2,
            },
            Op::CompleteStep(0),
            Op::Fail {
                pick: 0,
                backoff_ms: 10,
            },
            Op::Crash,
            Op::Advance(60),
            Op::Lease {
                lease_ms: 50,
                limit: 4,
            },
            Op::Fail {
                pick: 0,
                backoff_ms: 0,
            },
            Op::Lease {
                lease_ms: 50,
                limit: 4,
            },
            Op::Fail {
                pick: 0,
                backoff_ms: 0,
            },
            Op::Lease {
                lease_ms: 50,
                limit: 4,
            },
            Op::Fail {
                pick: 0,
                backoff_ms: 0,
            },
            Op::Replay(0),
            Op::Replay(1),
            Op::Ack(0),
            Op::Ack(0),
            Op::Shutdown,
            Op::Redeliver(0),
            Op::Advance(400),
            Op::Redeliver(0),
            Op::Purge,
        ],
    );
}
