//! A generator for big states (`benches/gen_state.sh`): writes a state directory of N stored
//! deliveries through the state module's public API, as the daemon would have written them, and
//! times opening such a state and replaying a journal left by a crash.
//!
//! Only public calls of `supportopsd::state` are used (`Store::open`, `Store::ingest_batch`,
//! `Store::ack`, `Store::retry`, `Store::dead_letter`, `Journal::open`, `Journal::open_deferred`, `Store::apply_ingests`, `Journal::append`, `State::upkeep`), never
//! sled keys, so a new state layout needs at most small edits here. Schema 4: each delivery gets
//! its `EventId` in arrival order and the generator's revision; payloads land in the segment files
//! under `events/` (sealed by the hour of their arrival time), the rest in sled; `open` also
//! reports when the dedupe index, loaded in the background, was ready.
//!
//! The mix: deliveries arrive every `1000 / RATE` ms (default 10 a second) up to now, on two
//! integrations per platform (Freshdesk, Zendesk and Slack 25 % each, Trello and Notion 10 %,
//! Google Sheets 5 %), each a copy of one of the platform's fixture payloads
//! (`src/platforms/<p>/fixtures/*.json`) with its own id. 20 % match no rule, 60 % one, 20 % two.
//! Of the jobs, 90 % are done (acknowledged), 5 % queued, 4 % retrying (due in the next hour,
//! one failed attempt) and 1 % dead-lettered. Audit records as the daemon writes them: "event
//! accepted" and one "rule matched" per job at ingest, then "action succeeded", "action failed"
//! or "action dead-lettered". The later audit records are written in the ingest's transaction
//! (with their later time), which gives the same state as appending them when the job ran, for
//! a fraction of the transactions. The history index (`state::History`: each delivery's jobs
//! and outcome, deliveries by integration, event name, rule and outcome, audit records by
//! delivery) is filled by the same calls, as the daemon fills it (`benches/history.sh` reads
//! it).
//! The daemon's audit bound (`--audit-max-records`, 1,000,000 by
//! default) is applied as its housekeeping would, every 16,384 deliveries: `AUDIT_MAX_RECORDS`
//! sets it (0: keep every audit record, about 3 a delivery). sled's snapshot is written as the
//! daemon writes it (`State::upkeep`): every `SNAPSHOT_AFTER_DELIVERIES` on the way, and at the
//! end as a clean stop does, unless `CRASH` is set (the state a killed daemon leaves, whose next
//! open reads sled's log since the last snapshot).
//!
//! `world` (`benches/console.sh`) writes the same mix, but of the integrations and rules of a
//! manifest repository (`benches/gen_repo.py --mixed`), consistent with it: each delivery is a
//! platform fixture normalised as the event it is (`WORLD_EVENTS`, the events gen_repo.py's
//! rules trigger on), on one of the repository's integrations of that platform (skewed: the
//! first few get far more than the last), with `supportopsd_bench_bucket` (0-99) in its payload,
//! and the rules it matches are the ones the daemon's own selection (`manifest::select`) picks
//! from the repository's committed HEAD, which is also the revision recorded with it. Beside
//! the deliveries it writes what a daemon that ran them would have left: the per-minute rollups
//! (events, rule matches, action outcomes on the actions' integrations), a webhook
//! registration and a health record per integration.
//!
//! Usage (from the repository root, which holds the fixtures):
//!   gen-state generate N DIR [RATE]   write N deliveries into DIR (created, or added to)
//!   gen-state world N DIR REPO [RATE] the same, of REPO's integrations and rules (committed);
//!                                     $PUBLIC_URL (default http://127.0.0.1:18480) is the URL
//!                                     the registrations deliver to
//!   gen-state corpus N FILE REPO      N deliveries of `world` written as an event corpus
//!                                     (`events export`'s format, pseudonymised, each with the
//!                                     revision and the rules matched) for `plan --replay`
//!                                     (benches/behaviour_plan.sh)
//!   gen-state journal M DIR           journal M new deliveries without writing them to sled,
//!                                     then stop as a crash would (the next open replays them)
//!   gen-state open DIR                time `Store::open`, then the replay as the daemon runs it:
//!                                     `Journal::open_deferred` (until it serves), then writing
//!                                     the replayed deliveries to sled

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value, json};
use supportopsd::event::Event;
use supportopsd::manifest::select::{self, Delivery};
use supportopsd::manifest::{IntegrationId, ManifestSet, Revision, Rule, Source};
use supportopsd::platforms::{EventSpec, PlatformKind};
use supportopsd::state::journal::{IngestRecord, Journal};
use supportopsd::state::{
    AuditKind, AuditRecord, HealthRecord, IngestOutcome, MINUTE_MS, MinuteRollup,
    RegistrationRecord, RollupCounts, State, Store, Upkeep,
};
use tokio::time::Instant;

type Failure = Box<dyn std::error::Error>;

/// The daemon's allocator (src/main.rs), so that the figures are the daemon's: sled allocates
/// and frees a great deal, which glibc's allocator makes about a third slower.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Deliveries per `ingest_batch` transaction (the daemon's applier writes up to 1,024).
const BATCH: usize = 1024;

/// One platform of the mix: its share (in percent), integration ids and fixture payloads.
struct Platform {
    kind: PlatformKind,
    share: u64,
    integrations: [IntegrationId; 2],
    /// (event name, payload)
    fixtures: Vec<(String, Value)>,
}

/// splitmix64: deterministic, so that two runs with the same N write the same mix.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What becomes of a job.
#[derive(Clone, Copy)]
enum Fate {
    Done,
    Queued,
    Retrying,
    Dead,
}

fn main() {
    if let Err(e) = run() {
        eprintln!("gen-state: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), Failure> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: gen-state generate N DIR [RATE] | world N DIR REPO [RATE] | corpus N FILE REPO | journal M DIR | open DIR";
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["generate", n, dir, rest @ ..] => {
            let rate: u64 = rest.first().map_or(Ok(10), |r| r.parse())?;
            generate(n.parse()?, Path::new(dir), rate.max(1), None)
        }
        ["world", n, dir, repo, rest @ ..] => {
            let rate: u64 = rest.first().map_or(Ok(10), |r| r.parse())?;
            let set = load_repo(Path::new(repo))?;
            let world = World::new(&set)?;
            generate(n.parse()?, Path::new(dir), rate.max(1), Some(&world))
        }
        ["corpus", n, file, repo] => {
            let set = load_repo(Path::new(repo))?;
            let world = World::new(&set)?;
            corpus(n.parse()?, Path::new(file), &world)
        }
        ["journal", m, dir] => journal(m.parse()?, Path::new(dir)),
        ["open", dir] => open(Path::new(dir)),
        _ => Err(usage.into()),
    }
}

/// Writes `n` deliveries of `world` as an event corpus: what `events export` writes of a
/// daemon that received them (pseudonymised, with the revision and the rules it matched).
fn corpus(n: u64, file: &Path, world: &World<'_>) -> Result<(), Failure> {
    use supportopsd::event::corpus::{Header, Record, Writer};
    use supportopsd::event::pseudonym::{Options, pseudonymise};
    let out = std::io::BufWriter::new(std::fs::File::create(file)?);
    let mut writer = Writer::new(out, &Header::new("daemon"))?;
    let mut rng = Rng(0x5EED_C0DE);
    let start = now_ms()? - n * 100;
    for i in 0..n {
        let at = start + i * 100;
        let (event, rules) = world.delivery(&mut rng, i, at)?;
        writer.record(&Record {
            id: format!("evt_{}", i + 1),
            received_ms: Some(at),
            received_at: None,
            integration: event.integration.to_string(),
            platform: event.platform.as_str().to_owned(),
            event: event.name.clone(),
            revision: Some(world.revision.clone()),
            rules,
            enrichment_pending: false,
            replaced: None,
            payload: pseudonymise(&event.payload, Options::default()).value,
        })?;
    }
    writer.finish()?;
    Ok(())
}

/// The audit bound the generator applies, as the daemon's `--audit-max-records` (default
/// 1,000,000): `AUDIT_MAX_RECORDS` in the environment, 0 for none (every audit record kept).
fn audit_max_records() -> Result<u64, Failure> {
    match std::env::var("AUDIT_MAX_RECORDS") {
        Ok(v) => Ok(v.parse()?),
        Err(_) => Ok(1_000_000),
    }
}

fn now_ms() -> Result<u64, Failure> {
    Ok(u64::try_from(
        SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis(),
    )?)
}

fn platforms() -> Result<Vec<Platform>, Failure> {
    let mix = [
        (PlatformKind::Freshdesk, "freshdesk", 25),
        (PlatformKind::Zendesk, "zendesk", 25),
        (PlatformKind::Slack, "slack", 25),
        (PlatformKind::Trello, "trello", 10),
        (PlatformKind::Notion, "notion", 10),
        (PlatformKind::GoogleSheets, "google_sheets", 5),
    ];
    let mut out = Vec::new();
    for (kind, dir, share) in mix {
        let mut fixtures = Vec::new();
        let path = PathBuf::from("src/platforms").join(dir).join("fixtures");
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&path)
            .map_err(|e| format!("{}: {e} (run from the repository root)", path.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        entries.sort();
        for p in entries {
            let text = std::fs::read_to_string(&p)?;
            let payload: Value = serde_json::from_str(&text)?;
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            fixtures.push((name, payload));
        }
        if fixtures.is_empty() {
            return Err(format!("no fixtures in {}", path.display()).into());
        }
        let id =
            |suffix: &str| IntegrationId::parse(&format!("{}-{suffix}", dir.replace('_', "-")));
        out.push(Platform {
            kind,
            share,
            integrations: [id("main")?, id("eu")?],
            fixtures,
        });
    }
    Ok(out)
}

/// Delivery `n` of the mix, received at `at_ms`: its event and the rules it matched.
fn delivery(platforms: &[Platform], rng: &mut Rng, n: u64, at_ms: u64) -> (Event, Vec<String>) {
    let mut pick = rng.below(100);
    let mut platform = &platforms[0];
    for p in platforms {
        if pick < p.share {
            platform = p;
            break;
        }
        pick -= p.share;
    }
    let integration = platform.integrations[usize::from(rng.below(2) == 1)].clone();
    let fixture = rng.below(platform.fixtures.len() as u64);
    let (name, payload) = &platform.fixtures[usize::try_from(fixture).unwrap_or(0)];
    let mut payload = payload.clone();
    if let Value::Object(map) = &mut payload {
        map.insert("supportopsd_bench_seq".into(), json!(n));
    }
    let mut objects = Map::new();
    objects.insert("object".into(), payload.clone());
    let rules = match rng.below(10) {
        0 | 1 => Vec::new(),
        2..=7 => vec![format!("{integration}-rule-{}", rng.below(5))],
        _ => vec![
            format!("{integration}-rule-{}", rng.below(5)),
            format!("{integration}-escalate"),
        ],
    };
    let event = Event {
        platform: platform.kind,
        integration,
        name: name.clone(),
        id: format!("bench-{n:010}"),
        time: None,
        received_at_ms: at_ms,
        actor: Some(format!("user-{}", rng.below(50))),
        actors: Vec::new(),
        objects,
        changes: Map::new(),
        payload,
    };
    (event, rules)
}

fn fate(rng: &mut Rng) -> Fate {
    match rng.below(100) {
        0..=89 => Fate::Done,
        90..=94 => Fate::Queued,
        95..=98 => Fate::Retrying,
        _ => Fate::Dead,
    }
}

fn audit(at_ms: u64, kind: AuditKind, resource_type: &str, id: &str, detail: Value) -> AuditRecord {
    AuditRecord {
        at_ms,
        kind,
        resource_type: resource_type.into(),
        resource_id: id.into(),
        detail,
    }
}

/// The journaled form of a delivery, with the audit records the daemon writes for it and its
/// jobs; `fates` says what becomes of each job.
/// The revision the generated deliveries were stored under.
const REVISION: &str = "4b825dc642cb6eb9a060e54bf8d69288fbee4904";

fn record(
    event: Event,
    rules: Vec<String>,
    fates: &[Fate],
    at_ms: u64,
    revision: &str,
) -> IngestRecord {
    let key = event.key();
    let mut records = vec![audit(
        at_ms,
        AuditKind::EventAccepted,
        "event",
        &key,
        json!({"name": event.name, "platform": event.platform.as_str()}),
    )];
    for (rule, fate) in rules.iter().zip(fates) {
        records.push(audit(
            at_ms,
            AuditKind::RuleMatched { rule: rule.clone() },
            "rule",
            rule,
            json!({"key": key}),
        ));
        let later = at_ms + 150;
        let step = 0;
        match fate {
            Fate::Done => records.push(audit(
                later,
                AuditKind::ActionSucceeded { step },
                "job",
                rule,
                json!({"key": key}),
            )),
            Fate::Queued => {}
            Fate::Retrying => records.push(audit(
                later,
                AuditKind::ActionFailed {
                    step,
                    error: "HTTP 503 from the platform".into(),
                },
                "job",
                rule,
                json!({"key": key}),
            )),
            Fate::Dead => records.push(audit(
                later,
                AuditKind::ActionDeadLettered {
                    step,
                    error: "HTTP 422 from the platform: invalid field".into(),
                },
                "job",
                rule,
                json!({"key": key}),
            )),
        }
    }
    IngestRecord {
        event,
        rules,
        now_ms: at_ms,
        dedupe_until_ms: at_ms + 72 * 3600 * 1000,
        audit: records,
        revision: Some(revision.to_owned()),
        held: Default::default(),
    }
}

fn generate(n: u64, dir: &Path, rate: u64, world: Option<&World<'_>>) -> Result<(), Failure> {
    let platforms = platforms()?;
    let revision = world.map_or(REVISION, |w| w.revision.as_str());
    let mut rollups: BTreeMap<(u64, String), RollupCounts> = BTreeMap::new();
    let start = Instant::now();
    let store = Store::open(dir)?;
    let end_ms = now_ms()?;
    let step_ms = (1000 / rate).max(1);
    let first_ms = end_ms.saturating_sub(n.saturating_mul(step_ms));
    let mut rng = Rng(0x5eed ^ n);
    let (mut events, mut jobs) = (0u64, [0u64; 4]);
    let mut i = 0u64;
    let audit_max = audit_max_records()?;
    let mut audit_removed = 0;
    let (mut snapshots, mut snapshot_time) = (0, std::time::Duration::ZERO);
    while i < n {
        let count = (n - i).min(BATCH as u64);
        let mut records = Vec::with_capacity(BATCH);
        let mut fates: Vec<Vec<Fate>> = Vec::with_capacity(BATCH);
        for k in i..i + count {
            let at_ms = first_ms + k * step_ms;
            let (event, rules) = match world {
                Some(w) => w.delivery(&mut rng, k, at_ms)?,
                None => delivery(&platforms, &mut rng, k, at_ms),
            };
            let f: Vec<Fate> = rules.iter().map(|_| fate(&mut rng)).collect();
            if let Some(w) = world {
                w.count(&mut rollups, &event, &rules, &f);
            }
            records.push(record(event, rules, &f, at_ms, revision));
            fates.push(f);
        }
        let refs: Vec<&IngestRecord> = records.iter().collect();
        for ((outcome, f), r) in store
            .ingest_batch(&refs)?
            .into_iter()
            .zip(&fates)
            .zip(&records)
        {
            let IngestOutcome::Stored { jobs: ids } = outcome? else {
                continue; // a duplicate: DIR already held this delivery
            };
            events += 1;
            for (id, fate) in ids.into_iter().zip(f) {
                match fate {
                    Fate::Done => {
                        store.ack(id)?;
                        jobs[0] += 1;
                    }
                    Fate::Queued => jobs[1] += 1,
                    Fate::Retrying => {
                        let due = end_ms + rng.below(3_600_000);
                        store.retry(id, "HTTP 503 from the platform", due)?;
                        jobs[2] += 1;
                    }
                    Fate::Dead => {
                        store.dead_letter(id, "HTTP 422 from the platform", r.now_ms + 150)?;
                        jobs[3] += 1;
                    }
                }
            }
        }
        i += count;
        if !rollups.is_empty() {
            store.add_rollups(&drain_rollups(&mut rollups))?;
        }
        // Housekeeping's audit bound, as the daemon applies it while it runs (every 3,000
        // deliveries at 10 a second; here every 16 batches).
        if audit_max > 0 && (i / BATCH as u64).is_multiple_of(16) {
            audit_removed += store.purge_audit_over(audit_max)?;
        }
        // sled's snapshot when due, as the daemon's checkpoint thread writes it while running.
        if let Some(took) = State::upkeep(&store, Upkeep::Running)? {
            snapshots += 1;
            snapshot_time += took;
        }
    }
    if audit_max > 0 {
        audit_removed += store.purge_audit_over(audit_max)?;
    }
    if let Some(w) = world {
        let (registrations, health) = w.write_integrations(&store, end_ms, &mut rng)?;
        println!(
            "world: {} integrations, {} rules at {}; {registrations} registrations and {health} health records written",
            w.set.integrations.len(),
            w.set.rules.len(),
            w.revision,
        );
    }
    store.flush()?;
    // sled's snapshot, as the daemon's clean stop writes it: the state is left as a daemon
    // that ran this long and stopped cleanly leaves it; with CRASH set, as one that was killed
    // leaves it (its last snapshot up to SNAPSHOT_AFTER_DELIVERIES deliveries old).
    let stop = if std::env::var_os("CRASH").is_some() {
        "none at the end (CRASH)".to_owned()
    } else {
        let took = State::upkeep(&store, Upkeep::Stop)?.unwrap_or_default();
        format!("one at the end in {:.1} s", took.as_secs_f64())
    };
    let bytes = store.state_bytes();
    drop(store);
    let took = start.elapsed();
    println!(
        "wrote {events} deliveries (sled's snapshot written {snapshots} times on the way in {:.1} s, {stop}; {} done, {} queued, {} retrying, {} dead-lettered jobs; {audit_removed} audit records removed by the bound of {audit_max}) into {} in {:.1} s ({:.0} deliveries/s); state size {:.1} MB (payloads {:.1} MB, database {:.1} MB)",
        snapshot_time.as_secs_f64(),
        jobs[0],
        jobs[1],
        jobs[2],
        jobs[3],
        dir.display(),
        took.as_secs_f64(),
        events as f64 / took.as_secs_f64().max(1e-9),
        size(dir)? as f64 / 1e6,
        bytes.payloads as f64 / 1e6,
        bytes.database as f64 / 1e6,
    );
    Ok(())
}

/// The events `world` delivers per platform, each with the fixture it copies
/// (`src/platforms/<platform>/fixtures/`): `benches/gen_repo.py --mixed`'s WORLD_EVENTS names the
/// same events (its rules trigger on them, its webhooks declare them).
const WORLD_EVENTS: &[(PlatformKind, &str, &str)] = &[
    (
        PlatformKind::Freshdesk,
        "ticket_created",
        "ticket_created.json",
    ),
    (
        PlatformKind::Freshdesk,
        "ticket_updated",
        "ticket_updated_priority.json",
    ),
    (
        PlatformKind::Freshdesk,
        "ticket_resolved",
        "ticket_resolved.json",
    ),
    (PlatformKind::Freshdesk, "note_created", "note_created.json"),
    (
        PlatformKind::Zendesk,
        "ticket.created",
        "ticket_created_trigger.json",
    ),
    (
        PlatformKind::Zendesk,
        "ticket.updated",
        "ticket_updated_trigger.json",
    ),
    (
        PlatformKind::Zendesk,
        "ticket.solved",
        "ticket_solved_trigger.json",
    ),
    (
        PlatformKind::Zendesk,
        "comment.created",
        "comment_created_trigger.json",
    ),
    (PlatformKind::Slack, "app_mention", "app_mention.json"),
    (PlatformKind::Slack, "message", "message.json"),
    (PlatformKind::Slack, "reaction_added", "reaction_added.json"),
    (PlatformKind::Trello, "updateCard", "updateCard_move.json"),
    (PlatformKind::Trello, "commentCard", "commentCard.json"),
    (PlatformKind::Trello, "createCard", "createCard.json"),
    (PlatformKind::Notion, "page.created", "page.created.json"),
    (
        PlatformKind::Notion,
        "page.properties_updated",
        "page.properties_updated.json",
    ),
    (
        PlatformKind::Notion,
        "comment.created",
        "comment.created.json",
    ),
    (PlatformKind::GoogleSheets, "row_added", "row_added.json"),
];

/// The mix of platforms (percent of the deliveries), as in [`platforms`].
const WORLD_MIX: [(PlatformKind, u64); 6] = [
    (PlatformKind::Freshdesk, 25),
    (PlatformKind::Zendesk, 25),
    (PlatformKind::Slack, 25),
    (PlatformKind::Trello, 10),
    (PlatformKind::Notion, 10),
    (PlatformKind::GoogleSheets, 5),
];

/// The manifests of `repo` at its HEAD commit (the revision the daemon runs and the
/// deliveries record).
fn load_repo(repo: &Path) -> Result<ManifestSet, Failure> {
    let source = Source {
        repo: repo.to_path_buf(),
        subdir: None,
        rev: Some("HEAD".to_owned()),
    };
    let loaded = supportopsd::manifest::load_source(&source)?;
    let errors = loaded.diagnostics.render("");
    loaded
        .set
        .ok_or_else(|| format!("{}: the manifests do not load:\n{errors}", repo.display()).into())
}

/// A manifest repository's integrations and rules, and the fixtures of their events.
struct World<'s> {
    set: &'s ManifestSet,
    /// The commit the manifests were read at.
    revision: String,
    /// Per platform of [`WORLD_MIX`]: its integrations, in id order.
    integrations: Vec<Vec<&'s IntegrationId>>,
    /// Per platform of [`WORLD_MIX`]: the events delivered, with their fixture payloads.
    events: Vec<Vec<(&'static EventSpec, Value)>>,
    /// The enabled rules by trigger (integration, event).
    rules: HashMap<(&'s str, &'static str), Vec<&'s Rule>>,
    /// Every rule by id.
    by_id: HashMap<&'s str, &'s Rule>,
}

impl<'s> World<'s> {
    fn new(set: &'s ManifestSet) -> Result<Self, Failure> {
        let revision = match &set.revision {
            Revision::Commit { id, .. } => id.clone(),
            _ => return Err("the repository's manifests must be committed".into()),
        };
        let mut integrations = Vec::new();
        let mut events = Vec::new();
        for (kind, _) in WORLD_MIX {
            let ids: Vec<&IntegrationId> = set
                .integrations
                .values()
                .filter(|i| i.platform == kind)
                .map(|i| &i.id)
                .collect();
            if ids.is_empty() {
                return Err(format!("the repository has no {} integration", kind.as_str()).into());
            }
            integrations.push(ids);
            let mut mine = Vec::new();
            for (k, name, file) in WORLD_EVENTS {
                if *k != kind {
                    continue;
                }
                let spec = kind
                    .descriptor()
                    .event(name)
                    .ok_or_else(|| format!("{}: no event {name}", kind.as_str()))?;
                let path = PathBuf::from("src/platforms")
                    .join(kind.as_str())
                    .join("fixtures")
                    .join(file);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    format!("{}: {e} (run from the repository root)", path.display())
                })?;
                mine.push((spec, serde_json::from_str(&text)?));
            }
            events.push(mine);
        }
        let mut rules: HashMap<(&str, &'static str), Vec<&Rule>> = HashMap::new();
        for rule in set.rules.values().filter(|r| r.enabled) {
            rules
                .entry((rule.trigger.integration.as_str(), rule.trigger.event.name))
                .or_default()
                .push(rule);
        }
        let by_id = set.rules.values().map(|r| (r.id.as_str(), r)).collect();
        Ok(World {
            set,
            revision,
            integrations,
            events,
            rules,
            by_id,
        })
    }

    /// Delivery `n`, received at `at_ms`: its normalised event and the rules it matches.
    fn delivery(&self, rng: &mut Rng, n: u64, at_ms: u64) -> Result<(Event, Vec<String>), Failure> {
        let mut pick = rng.below(100);
        let mut p = 0;
        for (k, (_, share)) in WORLD_MIX.iter().enumerate() {
            if pick < *share {
                p = k;
                break;
            }
            pick -= share;
        }
        let (kind, _) = WORLD_MIX[p];
        // Skewed: integration ⌊len·u³⌋, so the first of a platform's 250 gets about 16 % of
        // its deliveries and the last a few hundredths of a percent.
        let ids = &self.integrations[p];
        let u = rng.below(1 << 20) as f64 / f64::from(1u32 << 20);
        let index = ((u * u * u) * ids.len() as f64) as usize;
        let integration = ids[index.min(ids.len() - 1)];
        let events = &self.events[p];
        let (spec, fixture) = &events[usize::try_from(rng.below(events.len() as u64))?];
        let mut payload = fixture.clone();
        if let Value::Object(map) = &mut payload {
            map.insert("supportopsd_bench_seq".into(), json!(n));
            map.insert("supportopsd_bench_bucket".into(), json!(rng.below(100)));
        }
        let normalized = (kind.descriptor().normalize)(spec, &payload)
            .map_err(|e| format!("{} {}: {e}", kind.as_str(), spec.name))?;
        let event = Event {
            platform: kind,
            integration: integration.clone(),
            name: spec.name.to_owned(),
            id: format!("bench-{n:010}"),
            time: normalized.time.clone(),
            received_at_ms: at_ms,
            actor: normalized.actor().map(str::to_owned),
            actors: normalized.actors,
            objects: normalized.objects,
            changes: normalized.changes,
            payload,
        };
        let d = Delivery {
            integration,
            event: spec.name,
            builtin: false,
            payload: &event.payload,
            from_self: false,
        };
        let view = event.context_view();
        let rules = self
            .rules
            .get(&(integration.as_str(), spec.name))
            .map(|rs| {
                rs.iter()
                    .filter(|r| select::triggers(r, &d, &view))
                    .map(|r| r.id.as_str().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        Ok((event, rules))
    }

    /// Counts a delivery in the per-minute rollups as the daemon would have: the event and its
    /// rule matches on its integration, each action's outcome on the action's integration.
    fn count(
        &self,
        rollups: &mut BTreeMap<(u64, String), RollupCounts>,
        event: &Event,
        rules: &[String],
        fates: &[Fate],
    ) {
        let minute = event.received_at_ms / MINUTE_MS * MINUTE_MS;
        let mine = rollups
            .entry((minute, event.integration.as_str().to_owned()))
            .or_default();
        if rules.is_empty() {
            mine.events.accepted_no_rule += 1;
        } else {
            mine.events.accepted += 1;
        }
        for rule in rules {
            *mine.rules.entry(rule.clone()).or_default() += 1;
        }
        for (rule, fate) in rules.iter().zip(fates) {
            let Some(r) = self.by_id.get(rule.as_str()) else {
                continue;
            };
            // Done: every action ran; retrying and dead: the first failed.
            let (actions, outcome) = match fate {
                Fate::Done => (r.actions.len(), "succeeded"),
                Fate::Queued => continue,
                Fate::Retrying => (1, "retried"),
                Fate::Dead => (1, "dead_lettered"),
            };
            for action in r.actions.iter().take(actions) {
                let counts = rollups
                    .entry((minute, action.integration.as_str().to_owned()))
                    .or_default();
                *counts
                    .actions
                    .entry(rule.clone())
                    .or_default()
                    .entry(action.action.name.to_owned())
                    .or_default()
                    .entry(outcome.to_owned())
                    .or_default() += 1;
            }
        }
    }

    /// A webhook registration (for an integration with a `[webhook]`) and a health record for
    /// every integration, as the last reconcile of a daemon would have left them; returns how
    /// many of each.
    fn write_integrations(
        &self,
        store: &Store,
        now_ms: u64,
        rng: &mut Rng,
    ) -> Result<(usize, usize), Failure> {
        let public =
            std::env::var("PUBLIC_URL").unwrap_or_else(|_| "http://127.0.0.1:18480".into());
        let (mut registrations, mut health) = (0, 0);
        for (n, integration) in self.set.integrations.values().enumerate() {
            let id = integration.id.as_str();
            let platform = integration.platform.as_str();
            if let Some(webhook) = &integration.webhook {
                let expires = matches!(integration.platform, PlatformKind::GoogleSheets)
                    .then(|| now_ms + 6 * 86_400_000 + rng.below(86_400_000));
                store.put_registration(&RegistrationRecord {
                    integration: id.to_owned(),
                    platform: platform.to_owned(),
                    revision: Some(self.revision.clone()),
                    ids: vec![format!("{:08}", 40_000_000 + n)],
                    url: format!("{public}/api/webhooks/{platform}/{id}"),
                    events: webhook.events.iter().map(|e| e.to_string()).collect(),
                    expires_at_ms: expires,
                    sealed_secret: None,
                    synced_ms: now_ms - rng.below(300_000),
                })?;
                registrations += 1;
            }
            // 1 in 20 degraded (a refused key), 1 in 50 progressing, the rest healthy.
            let (state, reason) = match rng.below(100) {
                0..=4 => (
                    "degraded",
                    "the platform refused the credentials (HTTP 401): check the API key",
                ),
                5..=6 => ("progressing", "registering the webhook"),
                _ => ("healthy", "the connection check succeeded"),
            };
            store.put_health(&HealthRecord {
                integration: id.to_owned(),
                sync: "in_sync".to_owned(),
                sync_reason: "the registration matches the manifest".to_owned(),
                health: state.to_owned(),
                health_reason: reason.to_owned(),
                since_ms: now_ms - rng.below(86_400_000),
                checked_ms: now_ms - rng.below(300_000),
                consecutive_failures: u32::from(state == "degraded") * 3,
            })?;
            health += 1;
        }
        Ok((registrations, health))
    }
}

/// The rollups counted so far, as records (emptied).
fn drain_rollups(rollups: &mut BTreeMap<(u64, String), RollupCounts>) -> Vec<MinuteRollup> {
    std::mem::take(rollups)
        .into_iter()
        .map(|((minute_ms, integration), counts)| MinuteRollup {
            minute_ms,
            integration,
            counts,
        })
        .collect()
}

fn journal(m: u64, dir: &Path) -> Result<(), Failure> {
    let platforms = platforms()?;
    let start = Instant::now();
    let store = Store::open(dir)?;
    let (journal, _) = Journal::open(&store)?;
    let end_ms = now_ms()?;
    // Ids the generator never gives (it counts from 0 up), so every record is new to sled.
    let mut rng = Rng(0x10u64 ^ m);
    for k in 0..m {
        let at_ms = end_ms.saturating_sub(m - k);
        let (mut event, rules) = delivery(&platforms, &mut rng, k, at_ms);
        event.id = format!("journal-{at_ms}-{k:010}");
        let f: Vec<Fate> = rules.iter().map(|_| Fate::Queued).collect();
        journal.append(&record(event, rules, &f, at_ms, REVISION))?;
        if k % 1024 == 1023 {
            journal.sync()?;
        }
    }
    journal.sync()?;
    // A crash: no close, no checkpoint; the records are in the journal only.
    drop(journal);
    drop(store);
    println!(
        "journaled {m} deliveries (not in sled) in {} in {:.1} s; state size {:.1} MB",
        dir.display(),
        start.elapsed().as_secs_f64(),
        size(dir)? as f64 / 1e6,
    );
    Ok(())
}

fn open(dir: &Path) -> Result<(), Failure> {
    let start = Instant::now();
    let store =
        Store::open_existing(dir)?.ok_or_else(|| format!("no state in {}", dir.display()))?;
    let opened = start.elapsed();
    // As the daemon starts: the journal's deliveries are decided (the daemon answers webhooks
    // from then on), then its applier writes them to sled in transactions of 1,024 while it
    // serves; the replayed files go once sled is flushed.
    let replay = Instant::now();
    let (journal, backlog) = Journal::open_deferred(&store)?;
    let replayed = replay.elapsed();
    let (ready_cpu, ready_rss) = (cpu_seconds(), rss_mb("VmRSS:"));
    let restored = backlog.new.len();
    let applying = Instant::now();
    for chunk in backlog.new.chunks(BATCH) {
        let refs: Vec<_> = chunk.iter().collect();
        store.apply_ingests(&refs)?;
    }
    store.flush()?;
    journal.remove_replayed(&backlog.files)?;
    drop(backlog);
    let applied = applying.elapsed();
    let (queued, dead) = (store.queue_depth(), store.dead_depth());
    // The dedupe index loads in the background after open (ingest reads the tree meanwhile).
    while !store.dedupe_index_loaded() {
        #[allow(clippy::disallowed_methods)] // a synchronous tool, no runtime
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let indexed = start.elapsed();
    let bytes = store.state_bytes();
    journal.close()?;
    drop(journal);
    drop(store);
    println!(
        "at ready: process CPU {ready_cpu:.2} s (user + system, all threads, since start), RSS {ready_rss:.0} MB; at the end: peak RSS {:.0} MB",
        rss_mb("VmHWM:")
    );
    println!(
        "Store::open {:.3} s ({queued} jobs queued, {dead} dead-lettered); journal replay {:.3} s to ready ({restored} deliveries restored, decided), then written to sled in {:.3} s (the daemon's applier, in the background); dedupe index loaded in the background {:.3} s after the open began; state size {:.1} MB (payloads {:.1} MB, database {:.1} MB, journal {:.1} MB)",
        opened.as_secs_f64(),
        replayed.as_secs_f64(),
        applied.as_secs_f64(),
        indexed.as_secs_f64(),
        size(dir)? as f64 / 1e6,
        bytes.payloads as f64 / 1e6,
        bytes.database as f64 / 1e6,
        bytes.journal as f64 / 1e6,
    );
    Ok(())
}

/// This process's CPU time so far (user + system, all threads; `/proc/self/stat`, in the
/// kernel's USER_HZ ticks of 1/100 s), 0 where that cannot be read.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces): utime and
    // stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: u64 = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// A memory figure of this process from `/proc/self/status` (`VmRSS:` now, `VmHWM:` its
/// peak), in MB; 0 where that cannot be read.
fn rss_mb(field: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1000.0)
}

/// Bytes in the files under `dir`.
fn size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}
