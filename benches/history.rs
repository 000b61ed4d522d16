//! The event history's read times on a big state (`benches/history.sh`): opens a state written
//! by `benches/gen_state.sh` and times, in process, what `GET /api/events` and
//! `GET /api/events/{id}` do for a request (`runtime::history::list_json` and `trace_json`: the
//! index reads, the records, the JSON), for each indexed filter, at the newest page and at
//! pages from random positions (cursors), and traces of random deliveries. Prints p50, p99 and
//! the largest time per query over `ITERATIONS` requests. The HTTP round trip on loopback (well
//! under a millisecond) and the rule evaluation of a trace (a few rules' conditions) are not
//! included.
//!
//! Usage: history-bench DIR [ITERATIONS]

use std::path::Path;
use tokio::time::Instant;

use supportopsd::runtime::history::{ListQuery, list_json, trace_json};
use supportopsd::state::{EventId, HistoryFilter, Outcome, Store};

type Failure = Box<dyn std::error::Error>;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// splitmix64, for reproducible positions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

fn main() {
    if let Err(e) = run() {
        eprintln!("history-bench: {e}");
        std::process::exit(2);
    }
}

/// The oldest stored delivery's id (a binary search with one-record pages).
fn oldest(store: &Store, newest: u64) -> Result<u64, Failure> {
    let (mut lo, mut hi) = (0u64, newest);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if store.events_page(Some(EventId(mid + 1)), 1)?.is_empty() {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn report(name: &str, mut ms: Vec<f64>, rows: usize) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{name:<58} p50 {:>7.2} ms  p99 {:>7.2} ms  max {:>7.2} ms  ({} requests, {rows} rows/page avg)",
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(0.0),
        ms.len()
    );
}

fn run() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args
        .first()
        .ok_or("usage: history-bench DIR [ITERATIONS]")?;
    let iterations: usize = args.get(1).map_or(Ok(300), |s| s.parse())?;
    let started = Instant::now();
    let store = Store::open_existing(Path::new(dir))?.ok_or("no state there")?;
    println!(
        "opened {} in {:.2} s ({} deliveries)",
        dir,
        started.elapsed().as_secs_f64(),
        store.events_stored()
    );
    let newest = store
        .events_page(None, 1)?
        .first()
        .ok_or("no deliveries")?
        .clone();
    let first = oldest(&store, newest.id.0)?;
    let oldest_meta = store.events_page(Some(EventId(first + 1)), 1)?;
    let oldest_ms = oldest_meta.first().map_or(0, |m| m.received_ms);
    // The names the generator uses (benches/gen_state.rs): a Freshdesk integration, one of its
    // events, one of its rules.
    let sample = store.history(
        &HistoryFilter {
            integration: Some("freshdesk-main".into()),
            ..HistoryFilter::default()
        },
        None,
        1,
    )?;
    let sample = sample
        .items
        .first()
        .ok_or("no freshdesk-main delivery")?
        .meta
        .clone();
    let filters: Vec<(String, HistoryFilter)> = vec![
        ("(no filter)".into(), HistoryFilter::default()),
        (
            "integration=freshdesk-main".into(),
            HistoryFilter {
                integration: Some("freshdesk-main".into()),
                ..HistoryFilter::default()
            },
        ),
        (
            format!("integration=freshdesk-main&event={}", sample.name),
            HistoryFilter {
                integration: Some("freshdesk-main".into()),
                event: Some(sample.name.clone()),
                ..HistoryFilter::default()
            },
        ),
        (
            "rule=freshdesk-main-escalate".into(),
            HistoryFilter {
                rule: Some("freshdesk-main-escalate".into()),
                ..HistoryFilter::default()
            },
        ),
    ]
    .into_iter()
    .chain(Outcome::ALL.into_iter().map(|o| {
        (
            format!("outcome={o}"),
            HistoryFilter {
                outcome: Some(o),
                ..HistoryFilter::default()
            },
        )
    }))
    .chain([
        (
            "outcome=dead&integration=zendesk-eu".into(),
            HistoryFilter {
                outcome: Some(Outcome::Dead),
                integration: Some("zendesk-eu".into()),
                ..HistoryFilter::default()
            },
        ),
        (
            "outcome=retrying&rule=slack-main-escalate".into(),
            HistoryFilter {
                outcome: Some(Outcome::Retrying),
                rule: Some("slack-main-escalate".into()),
                ..HistoryFilter::default()
            },
        ),
    ])
    .collect();
    let mut rng = Rng(0x4157_0e11);
    let span = newest.received_ms.saturating_sub(oldest_ms).max(1);
    for (name, filter) in &filters {
        for (position, random) in [("newest page", false), ("page at a random cursor", true)] {
            let mut times = Vec::with_capacity(iterations);
            let mut rows = 0;
            for _ in 0..iterations {
                let q = ListQuery {
                    filter: filter.clone(),
                    limit: 50,
                    before: random.then(|| EventId(rng.between(first, newest.id.0))),
                };
                let t = Instant::now();
                let v = list_json(&store, &q, newest.received_ms)?;
                times.push(t.elapsed().as_secs_f64() * 1000.0);
                rows += v["events"].as_array().map_or(0, Vec::len);
            }
            report(
                &format!("events list {name}, {position}"),
                times,
                rows / iterations,
            );
        }
        // A one-hour window somewhere in the history.
        let mut times = Vec::with_capacity(iterations);
        let mut rows = 0;
        for _ in 0..iterations {
            let since = oldest_ms + rng.next() % span;
            let q = ListQuery {
                filter: HistoryFilter {
                    since_ms: Some(since),
                    until_ms: Some(since + 3_600_000),
                    ..filter.clone()
                },
                limit: 50,
                before: None,
            };
            let t = Instant::now();
            let v = list_json(&store, &q, newest.received_ms)?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            rows += v["events"].as_array().map_or(0, Vec::len);
        }
        report(
            &format!("events list {name}, one hour at random"),
            times,
            rows / iterations,
        );
    }
    let mut times = Vec::with_capacity(iterations);
    let mut found = 0;
    for _ in 0..iterations {
        let id = EventId(rng.between(first, newest.id.0));
        // Ids are shared with jobs and audit records: the nearest stored delivery below.
        let id = store
            .events_page(Some(EventId(id.0 + 1)), 1)?
            .first()
            .map_or(newest.id, |m| m.id);
        let t = Instant::now();
        let v = trace_json(
            &store,
            id,
            |_: &supportopsd::event::Event, _: &[supportopsd::state::EventJob]| None,
        )?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        found += usize::from(v.is_some());
    }
    report(
        &format!("events show (random deliveries, {found} found)"),
        times,
        1,
    );
    Ok(())
}
