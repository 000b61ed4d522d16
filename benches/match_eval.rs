//! Does evaluating conditions through the one walk that also explains them
//! (`Condition::walk`, issue 18 item 4) cost anything? Times `Condition::eval` against the
//! direct recursive evaluation it replaced (kept here, and only here, as the baseline), over
//! typical rule conditions and ticket contexts, in alternating rounds so that a busy machine
//! slows both alike; prints the median ns per evaluation of each, and what an explanation
//! costs (`rules::explain::explain`, only run when someone asks).
//!
//! `benches/match_eval.sh` (a release build).

use std::hint::black_box;
use tokio::time::Instant;

use serde_json::{Map, Value, json};
use supportopsd::rules::condition::{Condition, compile};
use supportopsd::rules::explain::explain;
use supportopsd::rules::path::{FieldPath, Root};
use supportopsd::rules::{PathType, PathTypes, ValueType};

/// Every path may exist, of any type: the conditions below are well-formed.
struct Open;

impl PathTypes for Open {
    fn type_of(&self, _: &FieldPath) -> PathType {
        PathType::Known(ValueType::Any)
    }
    fn primary(&self) -> &str {
        "ticket"
    }
}

/// The evaluation before issue 18: a direct recursion with short-circuiting `all`/`any`.
fn baseline<R: Root + ?Sized>(c: &Condition, ctx: &R) -> bool {
    match c {
        Condition::All(cs) => cs.iter().all(|c| baseline(c, ctx)),
        Condition::Any(cs) => cs.iter().any(|c| baseline(c, ctx)),
        Condition::Not(c) => !baseline(c, ctx),
        Condition::Test { path, op } => {
            let field = path.lookup_in(ctx).filter(|v| !v.is_null());
            op.eval(field, ctx)
        }
    }
}

fn conditions() -> Vec<Condition> {
    let tables = [
        json!({"priority": 4}),
        json!({"priority": {"gte": 3}, "status": {"in": [2, 3]}}),
        json!({"ticket.tags": {"contains": "vip"}, "not": {"requester.email": {"matches": "@acme\\.example$"}}}),
        json!({"any": [{"priority": 4}, {"ticket.tags": {"contains": "urgent"}}, {"subject": {"matches": "(?i)outage|down"}}]}),
        json!({"status": {"changed_to": 4}, "priority": {"ne": 1}}),
        json!({"all": [{"type": "Incident"}, {"any": [{"priority": {"gt": 2}}, {"requester.email": {"exists": true}}]}], "created_at": {"gte": "2024-01-01T00:00:00Z"}}),
    ];
    tables
        .iter()
        .map(|t| {
            let map: Map<String, Value> = t.as_object().cloned().unwrap_or_default();
            compile(&map, &Open).unwrap_or_else(|e| {
                eprintln!("bench condition does not compile: {e:?}");
                std::process::exit(2)
            })
        })
        .collect()
}

fn contexts() -> Vec<Value> {
    (0..8)
        .map(|i| {
            json!({
                "event": {"platform": "freshdesk", "integration": "freshdesk-main", "name": "ticket_updated"},
                "ticket": {"id": 4000 + i, "priority": (i % 4) + 1, "status": (i % 4) + 2,
                           "type": if i % 2 == 0 { "Incident" } else { "Question" },
                           "subject": if i % 3 == 0 { "Site down for everyone" } else { "Invoice question" },
                           "tags": if i % 2 == 0 { json!(["vip", "billing"]) } else { json!(["billing"]) },
                           "created_at": "2024-05-01T10:00:00Z"},
                "requester": {"email": if i % 5 == 0 { "ceo@acme.example" } else { "dana@example.com" }},
                "changes": {"status": {"from": 2, "to": (i % 4) + 2}},
                "payload": {},
            })
        })
        .collect()
}

fn round(f: &dyn Fn() -> usize, iterations: usize) -> f64 {
    let start = Instant::now();
    let mut held = 0;
    for _ in 0..iterations {
        held += black_box(f());
    }
    black_box(held);
    start.elapsed().as_nanos() as f64 / iterations as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    let iterations: usize = std::env::var("ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let cs = conditions();
    let ctxs = contexts();
    let pairs = (cs.len() * ctxs.len()) as f64;
    // Both must agree everywhere before timing means anything.
    for c in &cs {
        for ctx in &ctxs {
            if c.eval(ctx) != baseline(c, ctx) || explain(c, ctx).held != c.eval(ctx) {
                eprintln!("evaluations disagree on {c:?}");
                std::process::exit(1);
            }
        }
    }
    let new = || {
        cs.iter()
            .map(|c| ctxs.iter().filter(|x| c.eval(*x)).count())
            .sum()
    };
    let old = || {
        cs.iter()
            .map(|c| ctxs.iter().filter(|x| baseline(c, *x)).count())
            .sum()
    };
    let why = || {
        cs.iter()
            .map(|c| ctxs.iter().filter(|x| explain(c, *x).held).count())
            .sum()
    };
    let (mut a, mut b, mut e) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        a.push(round(&old, iterations) / pairs);
        b.push(round(&new, iterations) / pairs);
        e.push(round(&why, iterations / 10) / pairs);
    }
    let (a, b, e) = (median(a), median(b), median(e));
    println!(
        "conditions={} contexts={} rounds={rounds} iterations={iterations}",
        cs.len(),
        ctxs.len()
    );
    println!(
        "baseline_eval_ns={a:.1} walk_eval_ns={b:.1} ratio={:.3} explain_ns={e:.1}",
        b / a
    );
}
