//! The executor against a test connector: due jobs of one batchable action go out in one bulk
//! call and are settled one by one; everything else takes the single path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{Work, plan, run, run_work};
use crate::event::Event;
use crate::manifest::{IntegrationId, Source};
use crate::platforms::{ActionCall, ActionOutput, Connector, Health, PlatformError, PlatformKind};
use crate::runtime::{Active, Options, Runtime, now_ms};
use crate::secrets::ResolveContext;
use crate::state::{AuditFilter, AuditKind, IngestOutcome};

/// Records every call; answers per ticket.
#[derive(Debug, Default)]
struct TestConnector {
    /// Calls that went through `execute`.
    singles: Mutex<Vec<ActionCall>>,
    /// Calls that went through `execute_many`, one entry per bulk call.
    batches: Mutex<Vec<Vec<ActionCall>>>,
    /// Answer every call with 429 and this `Retry-After`.
    rate_limited: Option<Duration>,
    /// How long a bulk call takes (a job being polled).
    bulk_takes: Option<Duration>,
    /// Where the bulk call looks at its jobs' leases when it ends.
    store: std::sync::OnceLock<Arc<dyn crate::state::State>>,
    /// The lease ends the bulk call saw when it ended, by job.
    leases_seen: Mutex<Vec<Option<u64>>>,
    /// Enrichments asked for: (event, ticket id).
    enrichments: Mutex<Vec<(String, Value)>>,
    /// How many enrichments fail (the platform is down) before one succeeds.
    enrich_failures: Mutex<u32>,
    /// Answer every call with "outcome unknown" (what a real connector makes of a lost answer
    /// to a create).
    outcome_unknown: bool,
    /// While set, a call is recorded and then never answered (the process is killed with the
    /// request in flight).
    hang: std::sync::atomic::AtomicBool,
}

/// The ticket the test connector refuses.
const CLOSED_TICKET: &str = "13";

impl TestConnector {
    fn answer(&self, call: &ActionCall) -> Result<ActionOutput, PlatformError> {
        if self.outcome_unknown {
            return Err(PlatformError::OutcomeUnknown {
                detail: "`create_card`: HTTP 504".into(),
                check: "the list for a card with this name".into(),
            });
        }
        if let Some(d) = self.rate_limited {
            return Err(PlatformError::RateLimited {
                retry_after: Some(d),
            });
        }
        let ticket = match &call.parameters["ticket_id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if ticket == CLOSED_TICKET {
            return Err(PlatformError::Rejected {
                status: 422,
                detail: format!("ticket {ticket} is closed"),
            });
        }
        Ok(ActionOutput {
            result: json!({ "id": ticket, "action": call.action }),
        })
    }

    fn singles(&self) -> Vec<ActionCall> {
        self.singles.lock().unwrap().clone()
    }

    fn batches(&self) -> Vec<Vec<ActionCall>> {
        self.batches.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Connector for TestConnector {
    async fn check(&self) -> Result<Health, PlatformError> {
        Ok(Health {
            identity: None,
            detail: "test".into(),
        })
    }

    async fn execute(&self, call: &ActionCall) -> Result<ActionOutput, PlatformError> {
        self.singles.lock().unwrap().push(call.clone());
        if self.hang.load(std::sync::atomic::Ordering::SeqCst) {
            std::future::pending::<()>().await;
        }
        self.answer(call)
    }

    fn batchable(&self, action: &str) -> bool {
        action == "set_priority"
    }

    async fn enrich(
        &self,
        event: &str,
        objects: &Map<String, Value>,
    ) -> Result<Map<String, Value>, PlatformError> {
        self.enrichments
            .lock()
            .unwrap()
            .push((event.to_owned(), objects["ticket"]["id"].clone()));
        let mut failures = self.enrich_failures.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            return Err(PlatformError::Transient {
                detail: "503 from the platform".into(),
                retry_after: None,
            });
        }
        let mut out = Map::new();
        out.insert(
            "ticket".into(),
            json!({"subject": "Refund \"now\"\nplease"}),
        );
        Ok(out)
    }

    async fn execute_many(&self, calls: &[ActionCall]) -> Vec<Result<ActionOutput, PlatformError>> {
        self.batches.lock().unwrap().push(calls.to_vec());
        if let Some(d) = self.bulk_takes {
            tokio::time::sleep(d).await;
        }
        if let Some(store) = self.store.get() {
            for call in calls {
                let id: u64 = call
                    .idempotency_key
                    .split('-')
                    .nth(1)
                    .unwrap()
                    .parse()
                    .unwrap();
                let lease = store.job(id).unwrap().and_then(|j| j.lease_until_ms);
                self.leases_seen.lock().unwrap().push(lease);
            }
        }
        calls.iter().map(|c| self.answer(c)).collect()
    }
}

const INTEGRATION: &str = r#"id = "zd"
platform = "zendesk"
[credentials]
subdomain = "acme"
email = "agent@example.com"
api_token = { env = "EXECUTE_TEST_UNSET_TOKEN" }
[limits]
requests_per_minute = 6000
"#;

/// A Trello integration: `create_card` is an action that creates its card again if sent twice
/// (`Resend::Duplicates`).
const TRELLO: &str = r#"id = "tr"
platform = "trello"
[credentials]
api_key = "key"
token = { env = "EXECUTE_TEST_UNSET_TOKEN" }
app_secret = { env = "EXECUTE_TEST_UNSET_TOKEN" }
[config]
boards = ["board1"]
default_list = "list1"
"#;

/// A Zendesk ticket creates a Trello card.
const CARD_RULE: &str = r#"id = "card"
[trigger]
integration = "zd"
event = "ticket.created"
[[actions]]
integration = "tr"
action = "create_card"
[actions.parameters]
name = "Ticket {{ ticket.id }}"
"#;

fn rule(id: &str, actions: &[(&str, &str)]) -> String {
    let mut text =
        format!("id = \"{id}\"\n[trigger]\nintegration = \"zd\"\nevent = \"ticket.created\"\n");
    for (action, params) in actions {
        text.push_str(&format!(
            "[[actions]]\nintegration = \"zd\"\naction = \"{action}\"\n[actions.parameters]\nticket_id = \"{{{{ ticket.id }}}}\"\n{params}\n"
        ));
    }
    text
}

/// SEC-09: the review's nested loops, with the inner bound in a variable so that `validate`
/// cannot see it.
const HOSTILE: &str = "{% set n = 20000 %}{% for i in range(100000) %}{% for j in range(n) %}x{% endfor %}{% endfor %}";

struct Harness {
    rt: Arc<Runtime>,
    connector: Arc<TestConnector>,
    _repo: tempfile::TempDir,
    _state: tempfile::TempDir,
}

async fn harness(connector: TestConnector) -> Harness {
    let repo = tempfile::tempdir().unwrap();
    let files = [
        ("integrations/zd.toml", INTEGRATION.to_owned()),
        ("integrations/tr.toml", TRELLO.to_owned()),
        ("rules/card.toml", CARD_RULE.to_owned()),
        (
            "rules/priority.toml",
            rule("priority", &[("set_priority", "priority = \"high\"")]),
        ),
        (
            "rules/urgent.toml",
            rule("urgent", &[("set_priority", "priority = \"urgent\"")]),
        ),
        (
            "rules/comment.toml",
            rule("comment", &[("add_comment", "body = \"Thanks\"")]),
        ),
        (
            "rules/two-step.toml",
            rule(
                "two-step",
                &[
                    ("add_comment", "body = \"Looking\""),
                    ("set_priority", "priority = \"low\""),
                ],
            ),
        ),
        (
            "rules/refund.toml",
            format!(
                "{}[trigger.conditions]\n\"ticket.subject\" = {{ contains = \"Refund\" }}\n",
                rule(
                    "refund",
                    &[("add_comment", "body = \"Re: {{ ticket.subject }}\"")]
                )
            ),
        ),
        (
            "rules/heavy.toml",
            rule(
                "heavy",
                &[("add_comment", &format!("body = \"{HOSTILE}\""))],
            ),
        ),
    ];
    for (path, text) in files {
        let path = repo.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let state = tempfile::tempdir().unwrap();
    let options = Options::new(
        "127.0.0.1:0".parse().unwrap(),
        "http://127.0.0.1:9".into(),
        repo.path().into(),
        state.path().into(),
    );
    let rt = crate::runtime::open(options, None).unwrap();
    let loaded = crate::manifest::load_source(&Source {
        repo: repo.path().into(),
        subdir: None,
        rev: None,
    })
    .unwrap();
    let set = loaded
        .set
        .unwrap_or_else(|| panic!("{}", loaded.diagnostics.render("")));
    let env = |_: &str| None;
    let ctx = ResolveContext::new(None, &env);
    let (mut active, _) = Active::build(
        set,
        None,
        "http://127.0.0.1:9",
        &ctx,
        &crate::policy::Policy::none(),
        &HashMap::new(),
    );
    let connector = Arc::new(connector);
    let _ = connector.store.set(rt.store.clone());
    active.set_connector(IntegrationId::parse("zd").unwrap(), connector.clone());
    active.set_connector(IntegrationId::parse("tr").unwrap(), connector.clone());
    rt.install_active(active);
    Harness {
        rt,
        connector,
        _repo: repo,
        _state: state,
    }
}

/// Ingests a `ticket.created` event for `ticket` matched by `rule`; returns the job id.
fn enqueue(rt: &Runtime, rule: &str, ticket: &str) -> u64 {
    let mut objects = Map::new();
    objects.insert("ticket".into(), json!({ "id": ticket }));
    enqueue_objects(rt, rule, ticket, objects)
}

/// Ingests a `ticket.created` event with these objects; returns the job id.
fn enqueue_objects(rt: &Runtime, rule: &str, ticket: &str, objects: Map<String, Value>) -> u64 {
    let event = Event {
        platform: PlatformKind::Zendesk,
        integration: IntegrationId::parse("zd").unwrap(),
        name: "ticket.created".into(),
        id: format!("{rule}-{ticket}"),
        time: None,
        received_at_ms: now_ms(),
        actor: None,
        actors: Vec::new(),
        objects,
        changes: Map::new(),
        payload: json!({}),
    };
    let now = now_ms();
    match rt
        .store
        .ingest(&event, &[rule.to_owned()], now, now + 3_600_000)
        .unwrap()
    {
        IngestOutcome::Stored { jobs } => jobs[0],
        IngestOutcome::Duplicate => panic!("duplicate event"),
    }
}

/// Leases what is due, as the executor does, and runs it; returns the job ids of each piece
/// of work, batches marked `true`.
async fn drain(rt: &Runtime) -> Vec<(bool, Vec<u64>)> {
    let leased = rt.store.lease_due(now_ms(), 60_000, 100).unwrap();
    let work = plan(rt, leased);
    let shape = work
        .iter()
        .map(|w| match w {
            Work::Single(job) => (false, vec![job.id]),
            Work::Batch { jobs, .. } => (true, jobs.iter().map(|j| j.id).collect()),
        })
        .collect();
    for w in work {
        run_work(rt, w).await;
    }
    shape
}

fn audit_kinds(rt: &Runtime, job: u64) -> Vec<AuditKind> {
    let mut records = rt
        .store
        .audit(&AuditFilter {
            resource_type: Some("job".into()),
            resource_id: Some(job.to_string()),
            since_ms: None,
            limit: 100,
        })
        .unwrap();
    records.reverse();
    records.into_iter().map(|r| r.kind).collect()
}

fn metric_line(rt: &Runtime, prefix: &str) -> Option<String> {
    rt.metrics
        .render()
        .lines()
        .find(|l| l.starts_with(prefix))
        .map(str::to_owned)
}

#[tokio::test]
async fn due_jobs_of_one_batchable_action_go_out_in_one_bulk_call() {
    let h = harness(TestConnector::default()).await;
    let a = enqueue(&h.rt, "priority", "1");
    let b = enqueue(&h.rt, "priority", "2");
    let c = enqueue(&h.rt, "priority", "3");
    let shape = drain(&h.rt).await;
    assert_eq!(shape, vec![(true, vec![a, b, c])]);

    assert!(h.connector.singles().is_empty());
    let batches = h.connector.batches();
    assert_eq!(batches.len(), 1, "one bulk call");
    let tickets: Vec<&Value> = batches[0]
        .iter()
        .map(|c| &c.parameters["ticket_id"])
        .collect();
    assert_eq!(tickets, vec!["1", "2", "3"]);
    assert_eq!(
        batches[0]
            .iter()
            .map(|c| c.idempotency_key.as_str())
            .collect::<Vec<_>>(),
        vec![
            format!("supportopsd-{a}-0"),
            format!("supportopsd-{b}-0"),
            format!("supportopsd-{c}-0")
        ]
    );
    for job in [a, b, c] {
        assert_eq!(h.rt.store.job(job).unwrap(), None, "job {job} acknowledged");
        assert_eq!(
            audit_kinds(&h.rt, job),
            vec![
                AuditKind::ActionAttempted { step: 0 },
                AuditKind::ActionSucceeded { step: 0 }
            ]
        );
    }
    assert_eq!(
        metric_line(&h.rt, "supportopsd_bulk_jobs_total{").as_deref(),
        Some(r#"supportopsd_bulk_jobs_total{platform="zendesk",action="set_priority"} 3"#)
    );
    assert_eq!(h.rt.store.queue_depth(), 0);
}

#[tokio::test]
async fn a_job_at_its_last_step_joins_a_batch_of_another_rule() {
    let h = harness(TestConnector::default()).await;
    // A two-step job whose first step is done: only `set_priority` remains.
    let advanced = enqueue(&h.rt, "two-step", "7");
    let leased = h.rt.store.lease_due(now_ms(), 60_000, 10).unwrap();
    assert_eq!(leased.len(), 1);
    h.rt.store
        .complete_step(advanced, 0, json!({"id": "7"}))
        .unwrap();
    h.rt.store.retry(advanced, "test", 0).unwrap();
    let urgent = enqueue(&h.rt, "urgent", "8");
    let shape = drain(&h.rt).await;
    assert_eq!(shape, vec![(true, vec![advanced, urgent])]);
    let batches = h.connector.batches();
    assert_eq!(batches.len(), 1);
    // Each job's own parameters.
    assert_eq!(batches[0][0].parameters["priority"], "low");
    assert_eq!(
        batches[0][0].idempotency_key,
        format!("supportopsd-{advanced}-1")
    );
    assert_eq!(batches[0][1].parameters["priority"], "urgent");
    assert_eq!(h.rt.store.job(advanced).unwrap(), None);
    assert_eq!(h.rt.store.job(urgent).unwrap(), None);
}

#[tokio::test]
async fn mixed_results_in_one_batch_settle_each_job_on_its_own() {
    let h = harness(TestConnector::default()).await;
    let ok1 = enqueue(&h.rt, "priority", "1");
    let closed = enqueue(&h.rt, "priority", CLOSED_TICKET);
    let ok2 = enqueue(&h.rt, "priority", "2");
    let shape = drain(&h.rt).await;
    assert_eq!(shape, vec![(true, vec![ok1, closed, ok2])]);
    assert_eq!(h.connector.batches().len(), 1);
    assert!(h.connector.singles().is_empty());

    assert_eq!(h.rt.store.job(ok1).unwrap(), None);
    assert_eq!(h.rt.store.job(ok2).unwrap(), None);
    assert_eq!(h.rt.store.job(closed).unwrap(), None);
    let dead = h.rt.store.dead_job(closed).unwrap().expect("dead-lettered");
    let error = dead.job.last_error.unwrap();
    assert!(error.contains("ticket 13 is closed"), "{error}");
    assert!(error.contains("set_priority"), "{error}");
    assert_eq!(dead.job.attempts, 1);
    assert_eq!(h.rt.store.dead_job(ok1).unwrap(), None);
    let kinds = audit_kinds(&h.rt, closed);
    assert_eq!(kinds.len(), 3, "{kinds:?}");
    assert_eq!(kinds[0], AuditKind::ActionAttempted { step: 0 });
    assert!(matches!(kinds[1], AuditKind::ActionFailed { step: 0, .. }));
    assert!(matches!(
        kinds[2],
        AuditKind::ActionDeadLettered { step: 0, .. }
    ));
    let outcomes = h.rt.metrics.render();
    assert!(
        outcomes.contains(r#"supportopsd_actions_total{platform="zendesk",action="set_priority",outcome="succeeded"} 2"#),
        "{outcomes}"
    );
    assert!(
        outcomes.contains(r#"supportopsd_actions_total{platform="zendesk",action="set_priority",outcome="dead_lettered"} 1"#),
        "{outcomes}"
    );
}

#[tokio::test]
async fn a_rate_limited_batch_retries_every_job_after_retry_after() {
    let h = harness(TestConnector {
        rate_limited: Some(Duration::from_secs(600)),
        ..TestConnector::default()
    })
    .await;
    let jobs = [
        enqueue(&h.rt, "priority", "1"),
        enqueue(&h.rt, "priority", "2"),
        enqueue(&h.rt, "urgent", "3"),
    ];
    let before = now_ms();
    let shape = drain(&h.rt).await;
    assert_eq!(shape, vec![(true, jobs.to_vec())]);
    assert_eq!(h.connector.batches().len(), 1);
    for id in jobs {
        let job = h.rt.store.job(id).unwrap().expect("still queued");
        assert_eq!(job.attempts, 1);
        assert_eq!(job.step, 0);
        assert_eq!(job.lease_until_ms, None);
        // Retry-After is the floor of the wait.
        assert!(job.due_ms >= before + 600_000, "job {id} due too soon");
        assert!(job.last_error.unwrap().contains("rate limited"));
        assert_eq!(h.rt.store.dead_job(id).unwrap(), None);
    }
    // One 429 answer, counted once; every job counted as retried.
    assert_eq!(
        metric_line(&h.rt, "supportopsd_rate_limit_waits_total{").as_deref(),
        Some(r#"supportopsd_rate_limit_waits_total{integration="zd"} 1"#)
    );
    assert!(h.rt.metrics.render().contains(
        r#"supportopsd_actions_total{platform="zendesk",action="set_priority",outcome="retried"} 3"#
    ));
    // Nothing is due now: the jobs wait for Retry-After.
    assert!(drain(&h.rt).await.is_empty());
    assert_eq!(h.connector.batches().len(), 1);
}

#[tokio::test]
async fn non_batchable_lone_and_multi_step_jobs_take_the_single_path() {
    let h = harness(TestConnector::default()).await;
    let c1 = enqueue(&h.rt, "comment", "1");
    let c2 = enqueue(&h.rt, "comment", "2");
    let lone = enqueue(&h.rt, "priority", "3");
    let two = enqueue(&h.rt, "two-step", "4");
    let shape = drain(&h.rt).await;
    assert_eq!(
        shape,
        vec![
            (false, vec![c1]),
            (false, vec![c2]),
            (false, vec![two]),
            (false, vec![lone]),
        ]
    );
    assert!(h.connector.batches().is_empty(), "no bulk call");
    let actions: Vec<String> = h
        .connector
        .singles()
        .iter()
        .map(|c| c.action.clone())
        .collect();
    assert_eq!(
        actions,
        vec![
            "add_comment",
            "add_comment",
            "add_comment",
            "set_priority",
            "set_priority"
        ]
    );
    for job in [c1, c2, lone, two] {
        assert_eq!(h.rt.store.job(job).unwrap(), None);
    }
    assert_eq!(metric_line(&h.rt, "supportopsd_bulk_calls_total{"), None);
}

#[tokio::test]
async fn a_batch_member_whose_parameters_fail_is_settled_alone() {
    let h = harness(TestConnector::default()).await;
    // No `ticket` object: `{{ ticket.id }}` cannot be rendered.
    let a = enqueue_objects(&h.rt, "priority", "1", Map::new());
    let b = enqueue(&h.rt, "priority", "2");
    let shape = drain(&h.rt).await;
    assert_eq!(shape, vec![(true, vec![a, b])]);
    let dead = h.rt.store.dead_job(a).unwrap().expect("dead-lettered");
    assert!(dead.job.last_error.unwrap().contains("set_priority"));
    // The remaining one went the single way.
    assert!(h.connector.batches().is_empty());
    assert_eq!(h.connector.singles().len(), 1);
    assert_eq!(h.rt.store.job(b).unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn a_bulk_call_that_outlasts_the_lease_keeps_its_jobs_leased() {
    let h = harness(TestConnector {
        bulk_takes: Some(Duration::from_secs(600)),
        ..TestConnector::default()
    })
    .await;
    let a = enqueue(&h.rt, "priority", "1");
    let b = enqueue(&h.rt, "priority", "2");
    let leased_at = now_ms();
    // Leased for a minute; the bulk call takes ten (of tokio's time).
    let shape = drain(&h.rt).await;
    assert_eq!(shape, vec![(true, vec![a, b])]);
    let seen = h.connector.leases_seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    for lease in seen {
        // Renewed to the daemon's lease (120 s) past the original minute.
        let until = lease.expect("still leased");
        assert!(until >= leased_at + 120_000, "lease not renewed: {until}");
    }
    assert_eq!(h.rt.store.job(a).unwrap(), None);
    assert_eq!(h.rt.store.job(b).unwrap(), None);
}

/// SEC-09: a template that would render for hours is stopped by its fuel, off the async
/// threads, and its job is dead-lettered (not retried) with the limit as the reason; nothing
/// reaches the platform.
#[tokio::test]
async fn a_template_over_its_limits_dead_letters_its_job() {
    let h = harness(TestConnector::default()).await;
    let heavy = enqueue(&h.rt, "heavy", "1");
    // Without the limits this render runs for hours.
    let shape = tokio::time::timeout(Duration::from_secs(60), drain(&h.rt))
        .await
        .expect("the render was stopped");
    assert_eq!(shape, vec![(false, vec![heavy])]);
    assert!(h.connector.singles().is_empty(), "nothing was sent");
    assert_eq!(h.rt.store.job(heavy).unwrap(), None, "not retried");
    let dead = h.rt.store.dead_job(heavy).unwrap().expect("dead-lettered");
    let error = dead.job.last_error.unwrap();
    assert_eq!(
        error,
        "action 0 (`add_comment`): rendering stopped: the template does more work than one render may (its fuel of 250000 ran out)"
    );
    assert_eq!(
        audit_kinds(&h.rt, heavy),
        vec![AuditKind::ActionDeadLettered {
            step: 0,
            error: error.clone()
        }]
    );
    // Nothing is due any more.
    assert!(drain(&h.rt).await.is_empty());
}

/// SEC-12: a platform answering 429 with `Retry-After: 18446744073709551615` (here the largest
/// duration) neither panics nor parks the job for ages: the wait is clamped to an hour, the
/// integration's gate pauses for that hour, and a job meeting the paused gate is put back
/// without an attempt counted or a request sent, instead of holding a worker for the pause.
#[tokio::test]
async fn an_absurd_retry_after_is_clamped_and_a_paused_gate_holds_no_worker() {
    let h = harness(TestConnector {
        rate_limited: Some(Duration::MAX),
        ..TestConnector::default()
    })
    .await;
    let hour = crate::platforms::MAX_RETRY_AFTER.as_millis() as u64;
    let first = enqueue(&h.rt, "comment", "1");
    let before = now_ms();
    drain(&h.rt).await;
    let job = h.rt.store.job(first).unwrap().expect("still queued");
    assert_eq!(job.attempts, 1);
    assert!(job.due_ms >= before + hour, "waits the clamped hour");
    assert!(job.due_ms <= now_ms() + hour, "but no longer");
    assert_eq!(h.connector.singles().len(), 1);

    // The gate is paused: the next job goes back to the queue at once, untried.
    let second = enqueue(&h.rt, "comment", "2");
    tokio::time::timeout(Duration::from_secs(60), drain(&h.rt))
        .await
        .expect("no worker waits out the hour");
    assert_eq!(h.connector.singles().len(), 1, "nothing sent");
    let job = h.rt.store.job(second).unwrap().expect("still queued");
    assert_eq!(job.attempts, 0, "no attempt counted");
    assert_eq!(job.lease_until_ms, None);
    assert!(
        job.due_ms > now_ms() + hour - 60_000,
        "due when the gate reopens"
    );
    assert!(job.due_ms <= now_ms() + hour);
    assert_eq!(
        audit_kinds(&h.rt, second),
        Vec::<AuditKind>::new(),
        "not attempted"
    );
    // A batch meets the paused gate the same way.
    let a = enqueue(&h.rt, "priority", "3");
    let b = enqueue(&h.rt, "priority", "4");
    assert_eq!(drain(&h.rt).await, vec![(true, vec![a, b])]);
    assert!(h.connector.batches().is_empty());
    for id in [a, b] {
        let job = h.rt.store.job(id).unwrap().expect("still queued");
        assert_eq!(job.attempts, 0);
        assert!(job.due_ms > now_ms() + hour - 60_000);
    }
}

/// An enrichment job: the platform is down once (retried like an action, nothing matched
/// meanwhile), then the fields come back, are recorded with the stored event, the rules are
/// matched on the enriched event and their jobs run with the enriched text.
#[tokio::test]
async fn an_enrichment_is_retried_then_matches_the_rules_on_the_enriched_event() {
    use crate::state::ENRICHMENT;
    let h = harness(TestConnector {
        enrich_failures: Mutex::new(1),
        ..TestConnector::default()
    })
    .await;
    let job = enqueue(&h.rt, ENRICHMENT, "7");
    let at = h.rt.store.job(job).unwrap().unwrap().event_id;
    assert_eq!(drain(&h.rt).await, [(false, vec![job])]);
    let retried = h.rt.store.job(job).unwrap().expect("still queued");
    assert_eq!(retried.attempts, 1);
    assert!(
        retried
            .last_error
            .unwrap()
            .contains("503 from the platform")
    );
    assert_eq!(h.rt.store.queue_depth(), 1);
    assert!(
        h.rt.store.event(at).unwrap().unwrap().objects["ticket"]
            .get("subject")
            .is_none()
    );

    h.rt.store.postpone(job, 0).unwrap();
    drain(&h.rt).await;
    assert!(
        h.rt.store.job(job).unwrap().is_none(),
        "the enrichment is done"
    );
    assert_eq!(
        h.connector.enrichments.lock().unwrap().clone(),
        [
            ("ticket.created".to_owned(), json!("7")),
            ("ticket.created".to_owned(), json!("7"))
        ]
    );
    let stored = h.rt.store.event(at).unwrap().unwrap();
    assert_eq!(
        stored.objects["ticket"]["subject"],
        "Refund \"now\"\nplease"
    );
    assert_eq!(stored.objects["ticket"]["id"], "7", "merged, not replaced");
    // Every `ticket.created` rule of `zd` matched, 7 of them (the refund rule's condition holds on the
    // enriched subject); the refund rule renders the enriched text.
    assert_eq!(h.rt.store.queue_depth(), 7);
    drain(&h.rt).await;
    let singles = h.connector.singles();
    assert!(
        singles
            .iter()
            .any(|c| c.parameters["body"] == "Re: Refund \"now\"\nplease"),
        "{singles:?}"
    );
}

/// Issue 22: the jobs an enrichment creates count against their rules' action budgets too: a
/// rule over its budget has its job held to a later minute, the others run at once.
#[tokio::test]
async fn the_jobs_an_enrichment_creates_are_held_by_their_rule_s_budget() {
    use crate::state::ENRICHMENT;
    let h = harness(TestConnector::default()).await;
    // The refund rule has used its whole minute (the daemon's default budget); the test runs
    // within one minute.
    if now_ms() % 60_000 > 50_000 {
        tokio::time::sleep(Duration::from_millis(60_000 - now_ms() % 60_000)).await;
    }
    let now = now_ms();
    let budget = h.rt.options.max_actions_per_minute;
    let used = h.rt.budgets.reserve("refund", budget, budget as usize, now);
    assert!(!used.held);
    let job = enqueue(&h.rt, ENRICHMENT, "7");
    drain(&h.rt).await;
    assert!(
        h.rt.store.job(job).unwrap().is_none(),
        "the enrichment is done"
    );
    assert_eq!(h.rt.store.queue_depth(), 7, "no job is lost");
    let next_minute = (now / 60_000 + 1) * 60_000;
    let due: Vec<(String, u64)> =
        h.rt.store
            .lease_due(next_minute, 3_600_000, 100)
            .unwrap()
            .into_iter()
            .map(|j| (j.rule, j.due_ms))
            .collect();
    assert_eq!(due.len(), 7, "{due:?}");
    for (rule, at) in &due {
        if rule == "refund" {
            assert!(*at >= next_minute, "held: {due:?}");
        } else {
            assert!(*at < next_minute, "{rule} runs at once: {due:?}");
        }
    }
    assert!(h.rt.budgets.throttled(now_ms()).contains_key("refund"));
}

/// An enrichment that keeps failing is dead-lettered like an action, and replaying it
/// enriches again.
#[tokio::test]
async fn an_enrichment_that_keeps_failing_is_dead_lettered_and_replayable() {
    use crate::state::ENRICHMENT;
    let h = harness(TestConnector {
        enrich_failures: Mutex::new(1_000),
        ..TestConnector::default()
    })
    .await;
    let job = enqueue(&h.rt, ENRICHMENT, "8");
    for _ in 0..30 {
        if h.rt.store.job(job).unwrap().is_none() {
            break;
        }
        let _ = h.rt.store.postpone(job, 0);
        drain(&h.rt).await;
    }
    let dead = h.rt.store.dead_job(job).unwrap().expect("dead-lettered");
    assert!(dead.job.last_error.unwrap().contains("gave up"));
    *h.connector.enrich_failures.lock().unwrap() = 0;
    h.rt.store.replay(job, now_ms()).unwrap();
    drain(&h.rt).await;
    assert!(h.rt.store.job(job).unwrap().is_none());
    assert!(h.rt.store.dead_job(job).unwrap().is_none());
    // The rules matched the enriched event.
    assert_eq!(h.rt.store.queue_depth(), 7);
}

/// A delivery is enriched only when a rule on it reads an enriched field the delivery lacks:
/// a hand-made body that carries the subject is matched at once, and an event supportopsd
/// caused is not enriched for rules the loop guard drops anyway.
#[tokio::test]
async fn only_a_delivery_lacking_a_field_its_rules_read_is_enriched() {
    let h = harness(TestConnector::default()).await;
    let active = h.rt.active().unwrap();
    let event = |objects: Value| Event {
        platform: PlatformKind::Zendesk,
        integration: IntegrationId::parse("zd").unwrap(),
        name: "ticket.created".into(),
        id: "e".into(),
        time: None,
        received_at_ms: 0,
        actor: None,
        actors: Vec::new(),
        objects: objects.as_object().cloned().unwrap(),
        changes: Map::new(),
        payload: json!({}),
    };
    let bare = event(json!({"ticket": {"id": 7, "subject": null}}));
    assert!(active.needs_enrichment(&bare, false));
    assert!(!active.needs_enrichment(&bare, true), "no rule allows self");
    let carried = event(json!({"ticket": {"id": 7, "subject": "Refund"}}));
    assert!(!active.needs_enrichment(&carried, false));
    let mut other = bare.clone();
    other.name = "ticket.updated".into();
    assert!(!active.needs_enrichment(&other, false), "no rule on it");
}

/// Issue 16 item 9: a create whose outcome is unknown is dead-lettered at once (never
/// retried), with what to check, under its own metric outcome.
#[tokio::test]
async fn an_unknown_outcome_is_dead_lettered_at_once_with_what_to_check() {
    let h = harness(TestConnector {
        outcome_unknown: true,
        ..TestConnector::default()
    })
    .await;
    let job = enqueue(&h.rt, "card", "7");
    drain(&h.rt).await;
    assert_eq!(h.connector.singles().len(), 1);
    assert!(h.rt.store.job(job).unwrap().is_none());
    let dead = h.rt.store.dead_job(job).unwrap().expect("dead-lettered");
    assert_eq!(dead.job.attempts, 1, "not retried");
    let error = dead.job.last_error.unwrap_or_default();
    assert!(error.contains("outcome unknown"), "{error}");
    assert!(
        error.contains("the list for a card with this name"),
        "{error}"
    );
    assert!(error.contains("replay"), "{error}");
    let metrics = h.rt.metrics.render();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("supportopsd_actions_total")
                && l.contains("action=\"create_card\"")
                && l.contains("outcome=\"outcome_unknown\"")),
        "{metrics}"
    );
}

/// Issue 16 item 12: the process is killed while a create's request is in flight (the
/// platform may have acted). When the job's lease expires and it runs again, the request is
/// not sent a second time: the job is dead-lettered as "outcome unknown". The old code sent
/// it again (the card created twice).
#[tokio::test]
async fn a_create_in_flight_at_a_crash_is_not_sent_again() {
    let connector = TestConnector::default();
    connector
        .hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let h = harness(connector).await;
    let job = enqueue(&h.rt, "card", "8");
    let leased = h.rt.store.lease_due(now_ms(), 60_000, 10).unwrap();
    assert_eq!(leased.len(), 1);
    let rt = h.rt.clone();
    let running = tokio::spawn(async move {
        for w in plan(&rt, leased) {
            run_work(&rt, w).await;
        }
    });
    // Wait until the request is out, then "kill" the worker mid-request.
    for _ in 0..200 {
        if !h.connector.singles().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(h.connector.singles().len(), 1, "the request went out");
    running.abort();
    let _ = running.await;
    h.connector
        .hang
        .store(false, std::sync::atomic::Ordering::SeqCst);

    // After the restart, the lease has expired.
    let leased =
        h.rt.store
            .lease_due(now_ms() + 120_000, 60_000, 10)
            .unwrap();
    assert_eq!(leased.len(), 1);
    for w in plan(&h.rt, leased) {
        run_work(&h.rt, w).await;
    }
    assert_eq!(h.connector.singles().len(), 1, "not sent a second time");
    let dead = h.rt.store.dead_job(job).unwrap().expect("dead-lettered");
    let error = dead.job.last_error.unwrap_or_default();
    assert!(error.contains("outcome unknown"), "{error}");
    assert!(error.contains("in flight"), "{error}");
    assert_eq!(dead.job.in_flight, None);

    // Replayed by the operator (the card was not there): sent again, and done.
    h.rt.store.replay(job, now_ms()).unwrap();
    drain(&h.rt).await;
    assert_eq!(h.connector.singles().len(), 2);
    assert!(h.rt.store.job(job).unwrap().is_none());
    assert!(h.rt.store.dead_job(job).unwrap().is_none());
}

/// An action safe to send twice (a Zendesk update) is not marked in flight: nothing is
/// written before it, and a crash repeats it.
#[tokio::test]
async fn a_safe_action_is_not_marked_in_flight() {
    let connector = TestConnector::default();
    connector
        .hang
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let h = harness(connector).await;
    let job = enqueue(&h.rt, "comment", "9");
    let leased = h.rt.store.lease_due(now_ms(), 60_000, 10).unwrap();
    let rt = h.rt.clone();
    let running = tokio::spawn(async move {
        for w in plan(&rt, leased) {
            run_work(&rt, w).await;
        }
    });
    for _ in 0..200 {
        if !h.connector.singles().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    running.abort();
    let _ = running.await;
    assert_eq!(h.rt.store.job(job).unwrap().and_then(|j| j.in_flight), None);
}

#[tokio::test]
async fn after_shutdown_no_job_is_leased_however_many_workers_are_free() {
    let h = harness(TestConnector::default()).await;
    let job = enqueue(&h.rt, "comment", "1");
    // Each run sees shutdown begun and free workers at once: it must stop without leasing (an
    // unbiased choice between the two would lease on about every other run).
    for _ in 0..32 {
        let shutdown = tokio_util::sync::CancellationToken::new();
        shutdown.cancel();
        run(h.rt.clone(), shutdown).await;
    }
    let due = h.rt.store.lease_due(now_ms(), 60_000, 10).unwrap();
    assert_eq!(due.iter().map(|j| j.id).collect::<Vec<_>>(), vec![job]);
}

#[tokio::test]
async fn a_paused_integration_or_rule_keeps_its_jobs_queued_without_an_attempt_until_resumed() {
    use crate::state::HoldKind;
    let h = harness(TestConnector::default()).await;
    let by = json!({"by": "test"});
    h.rt.pause(HoldKind::Integration, "zd", "maintenance", by.clone())
        .await
        .unwrap();
    // A lone job, a batch and a two-step job: none of them reaches the connector.
    let jobs = [
        enqueue(&h.rt, "comment", "1"),
        enqueue(&h.rt, "priority", "2"),
        enqueue(&h.rt, "urgent", "3"),
        enqueue(&h.rt, "two-step", "4"),
    ];
    let before = now_ms();
    drain(&h.rt).await;
    assert!(h.connector.singles().is_empty() && h.connector.batches().is_empty());
    for id in jobs {
        let job = h.rt.store.job(id).unwrap().expect("still queued");
        assert_eq!((job.attempts, job.step, job.lease_until_ms), (0, 0, None));
        assert!(
            job.due_ms >= before + 59_000,
            "looked at again later, not busy"
        );
        assert!(
            audit_kinds(&h.rt, id).is_empty(),
            "{:?}",
            audit_kinds(&h.rt, id)
        );
    }
    // Nothing is due meanwhile: the executor has nothing to lease.
    assert!(drain(&h.rt).await.is_empty());
    assert_eq!(h.rt.store.dead_depth(), 0);

    // Resumed: every job it held is due at once and runs.
    let resumed =
        h.rt.resume(HoldKind::Integration, "zd", false, by.clone())
            .await
            .unwrap();
    assert_eq!((resumed.woken, resumed.dropped), (4, 0));
    assert!(resumed.released.is_some());
    drain(&h.rt).await;
    for id in jobs {
        assert_eq!(h.rt.store.job(id).unwrap(), None, "job {id} ran");
    }

    // A paused rule's queued jobs wait too; other rules' run.
    h.rt.pause(HoldKind::Rule, "comment", "loop", by.clone())
        .await
        .unwrap();
    let held = enqueue(&h.rt, "comment", "5");
    let other = enqueue(&h.rt, "priority", "6");
    drain(&h.rt).await;
    assert_eq!(h.rt.store.job(other).unwrap(), None);
    assert_eq!(h.rt.store.job(held).unwrap().unwrap().attempts, 0);
    // Dropped on resume: dead-lettered with a reason that says so, counted.
    let resumed =
        h.rt.resume(HoldKind::Rule, "comment", true, by)
            .await
            .unwrap();
    assert_eq!((resumed.woken, resumed.dropped), (0, 1));
    let dead = h.rt.store.dead_job(held).unwrap().expect("dropped");
    assert!(
        dead.job
            .last_error
            .as_deref()
            .unwrap()
            .contains("resumed with --drop-queued (it was paused: loop)")
    );
    assert!(h.rt.holds().is_empty());
}
