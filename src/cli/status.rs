//! `supportopsd status`: a running daemon's view (through its API), or what the state on disk
//! says when no daemon answers.

use anyhow::bail;

use super::{Exit, GlobalArgs, Target, api_call, state_dir, unexpected};
use crate::state::{State, Store};

/// Show a daemon's status.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the daemon answers.
    #[command(flatten)]
    pub target: Target,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn lines(v: &serde_json::Value, key: &str, field: &str) -> Vec<String> {
    v.get(key)
        .and_then(|p| p.as_array())
        .map(|items| {
            items
                .iter()
                .map(|p| {
                    format!(
                        "  {}: {}",
                        p["integration"].as_str().unwrap_or("?"),
                        p[field].as_str().unwrap_or("")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A duration in milliseconds, roughly, for people.
fn ago(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// One window of `rates` for people: events by outcome, rule matches, actions by outcome.
fn rate_line(w: &serde_json::Value) -> Option<String> {
    let e = w.get("events")?;
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let mut line = format!(
        "{} event(s) stored ({} matched no rule), {} duplicate(s), {} refused; {} rule match(es)",
        n(&e["accepted"]) + n(&e["accepted_no_rule"]),
        n(&e["accepted_no_rule"]),
        n(&e["duplicate"]),
        n(&e["rejected"]),
        n(&w["rules_matched"]),
    );
    let actions: Vec<String> = w["actions"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(outcome, count)| format!("{} {}", n(count), outcome.replace('_', " ")))
        .collect();
    if !actions.is_empty() {
        line.push_str(&format!("; actions: {}", actions.join(", ")));
    }
    Some(line)
}

/// The lines about shadow rules (what each would have done, nothing run) and about rules held
/// by their action budget.
fn shadow_and_throttled(v: &serde_json::Value) -> Vec<String> {
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let mut out = Vec::new();
    for r in v["shadow_rules"].as_array().into_iter().flatten() {
        let per_action: Vec<String> = r["last_24h"]["by_action"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(action, count)| format!("{} {action}", n(count)))
            .collect();
        out.push(format!(
            "rule {} (shadow, nothing run): would have performed {} action(s) in the last hour, {} in 24 h{}, {} in 7 days",
            r["rule"].as_str().unwrap_or("?"),
            n(&r["last_hour"]["total"]),
            n(&r["last_24h"]["total"]),
            if per_action.is_empty() {
                String::new()
            } else {
                format!(" ({})", per_action.join(", "))
            },
            n(&r["last_7d"]["total"]),
        ));
    }
    for t in v["throttled_rules"].as_array().into_iter().flatten() {
        out.push(format!(
            "rule {} throttled: over its budget of {} action(s) a minute since {}; {} job(s) held, the last until {}",
            t["rule"].as_str().unwrap_or("?"),
            n(&t["max_actions_per_minute"]),
            t["since_at"].as_str().unwrap_or("?"),
            n(&t["held"]),
            t["held_until_at"].as_str().unwrap_or("?"),
        ));
    }
    out
}

/// Runs `status`.
pub fn run(args: &Args, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let base = args.target.base();
    let url = format!("{base}/api/status");
    let (source, v) = match api_call(reqwest::Method::GET, &url)? {
        Some((200, body)) => (format!("daemon at {base}"), body),
        Some((code, body)) => return Err(unexpected(&base, code, &body, true)),
        None => {
            let dir = state_dir(g);
            let Some(store) = Store::open_existing(&dir)? else {
                bail!(
                    "no daemon answered at {} and there is no state at {}",
                    base,
                    dir.display()
                );
            };
            let store: &dyn State = &store;
            let registrations = store.registrations()?;
            let integrations: Vec<_> = store
                .health_records()?
                .into_iter()
                .map(|h| {
                    let registration = registrations
                        .iter()
                        .find(|r| r.integration == h.integration);
                    crate::daemon::api::status_entry(&h, None, registration)
                })
                .collect();
            let pin = store.pin()?;
            let holds: Vec<_> = store
                .holds()?
                .iter()
                .map(crate::runtime::holds::hold_json)
                .collect();
            let v = serde_json::json!({
                "applied_revision": store.applied_revision()?,
                "pinned": pin,
                "holds": holds,
                "integrations": integrations,
                "queue_depth": store.queue_depth(),
                "dead_letters": store.dead_depth(),
                "rates": crate::daemon::api::rates(store, crate::runtime::now_ms()),
                "state": crate::daemon::api::state_section(store),
            });
            (
                format!(
                    "state at {} (no daemon answered at {})",
                    dir.display(),
                    base
                ),
                v,
            )
        }
    };
    if args.json {
        let mut v = v;
        crate::daemon::api::with_times(&mut v);
        super::emit(&(serde_json::to_string_pretty(&v)? + "\n"))?;
        return Ok(Exit::Ok);
    }
    println!("supportopsd: {source}");
    let revision = v["applied_revision"]
        .as_str()
        .map_or("none applied".to_owned(), |r| {
            r[..r.len().min(12)].to_owned()
        });
    println!("revision: {revision}");
    if let Some(why) = v["refused"].as_str() {
        println!("newest revision refused: {why}");
    }
    if let Some(pin) = v["pinned"].as_object() {
        let rev = pin["revision"].as_str().unwrap_or("?");
        let reason = pin["reason"].as_str().filter(|r| !r.is_empty());
        println!(
            "pinned to {}{} (`supportopsd unpin` releases it)",
            &rev[..rev.len().min(12)],
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        );
    }
    let now = crate::runtime::now_ms();
    for h in v["holds"].as_array().into_iter().flatten() {
        let since = h["since_ms"].as_u64().unwrap_or(0);
        println!(
            "paused {} {} since {} ({}): {} — by {} (`{}` takes it off)",
            h["kind"].as_str().unwrap_or("?"),
            h["id"].as_str().unwrap_or("?"),
            crate::platforms::supportopsd::events::rfc3339_ms(since),
            ago(now.saturating_sub(since)),
            h["reason"].as_str().unwrap_or(""),
            h["by"].as_str().unwrap_or("?"),
            h["resume"].as_str().unwrap_or("supportopsd resume"),
        );
    }
    for i in v["integrations"].as_array().into_iter().flatten() {
        let since = i["health"]["since_ms"].as_u64().filter(|s| *s > 0);
        let age = since
            .map(|s| {
                format!(
                    " since {} ({})",
                    crate::platforms::supportopsd::events::rfc3339_ms(s),
                    ago(now.saturating_sub(s))
                )
            })
            .unwrap_or_default();
        println!(
            "integration {}{}: {}{} — {}; {} — {}",
            i["id"].as_str().unwrap_or("?"),
            i["platform"]
                .as_str()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default(),
            i["health"]["status"].as_str().unwrap_or("unknown"),
            age,
            i["health"]["reason"].as_str().unwrap_or(""),
            i["sync"]["status"].as_str().unwrap_or("unknown"),
            i["sync"]["reason"].as_str().unwrap_or(""),
        );
    }
    println!(
        "queue: {} job(s), {} dead letter(s)",
        v["queue_depth"].as_u64().unwrap_or(0),
        v["dead_letters"].as_u64().unwrap_or(0)
    );
    for (label, key) in [("last hour", "last_hour"), ("last 24 h", "last_24h")] {
        if let Some(line) = rate_line(&v["rates"][key]) {
            println!("{label}: {line}");
        }
    }
    for line in shadow_and_throttled(&v) {
        println!("{line}");
    }
    if let Some(n) = v["state"]["retention_removed"]["audit_records"]
        .as_u64()
        .filter(|n| *n > 0)
    {
        println!("retention removed: {n} audit record(s)");
    }
    let state = &v["state"];
    if state.is_object() {
        let mb = |n: &serde_json::Value| n.as_u64().unwrap_or(0) as f64 / 1e6;
        println!(
            "state: payloads {:.1} MB, database {:.1} MB, journal {:.1} MB; retention removed {} event(s), {:.1} MB",
            mb(&state["bytes"]["payloads"]),
            mb(&state["bytes"]["database"]),
            mb(&state["bytes"]["journal"]),
            state["retention_removed"]["events"].as_u64().unwrap_or(0),
            mb(&state["retention_removed"]["payload_bytes"]),
        );
        if let Some(why) = state["limit_unmet"].as_str() {
            println!("state over --max-state-size: {why}");
        }
    }
    for pending in v["verification_tokens"].as_array().into_iter().flatten() {
        let id = pending["integration"].as_str().unwrap_or("?");
        println!(
            "Notion verification tokens received for {id}, none confirmed yet (compare them with the one Notion shows, then `supportopsd notion confirm-verification {id} TOKEN_ID`):"
        );
        for t in pending["tokens"].as_array().into_iter().flatten() {
            println!(
                "  token {}: {} (fingerprint {}, from {}, at {}, {} ago)",
                t["token_id"],
                t["verification_token"].as_str().unwrap_or("(hidden)"),
                t["fingerprint"].as_str().unwrap_or(""),
                t["peer"].as_str().unwrap_or("?"),
                crate::platforms::supportopsd::events::rfc3339_ms(
                    t["received_ms"].as_u64().unwrap_or(now)
                ),
                ago(now.saturating_sub(t["received_ms"].as_u64().unwrap_or(now))),
            );
        }
    }
    let problems = lines(&v, "problems", "problem");
    if !problems.is_empty() {
        println!("problems:");
        for l in problems {
            println!("{l}");
        }
    }
    let notes = lines(&v, "notes", "note");
    if !notes.is_empty() {
        println!("to do by hand:");
        for l in notes {
            println!("{l}");
        }
    }
    Ok(Exit::Ok)
}
