//! Read-only probes of a real Freshdesk account (`supportopsd check-platform`): what
//! `docs/integrations/freshdesk.md` lists as unconfirmed about the automation-rule API, checked
//! with `GET`s only ([`crate::platforms::probe::read_only`] refuses anything else).
//!
//! | area | request | assumption |
//! |---|---|---|
//! | connection | `GET /api/v2/agents/me` | the key is an agent's; `X-RateLimit-*` headers are sent |
//! | automation rules | `GET /api/v2/automations/{1,4}/rules?page=N&per_page=M` | a JSON array; `page`/`per_page` page it; ids are unique across pages |
//! | our rules | the same listing | a rule named `supportopsd:<id> <event>` per `[webhook]` event |
//! | rule echo | `GET /api/v2/automations/{type}/rules/{id}` | numbers come back as numbers (performer, events, conditions), `content_layout` stays `"2"`, `custom_headers` values are echoed, the content is echoed as sent, and the drift check sees the echo as unchanged |
//! | ticket statuses | `GET /api/v2/ticket_fields?type=default_status` | the rules' status condition covers every status the account has |

use http::Method;
use serde_json::Value;

use super::client::FreshdeskClient;
use super::registration::{self, RULE_TYPES, TICKET_CREATION};
use crate::platforms::connector::PlatformError;
use crate::platforms::inbound::FRESHDESK_SECRET_HEADER;
use crate::platforms::probe::{Finding, ProbeTarget, describe, unreadable};

/// Sends only reads: the probe holds a [`reader::Reader`], never the client.
mod reader {
    use super::{FreshdeskClient, Method, PlatformError};
    use crate::platforms::freshdesk::client::{Answer, Budget};
    use crate::platforms::probe::read_only;

    /// The Freshdesk client, reduced to `GET`.
    pub(super) struct Reader<'a> {
        client: &'a FreshdeskClient,
    }

    impl<'a> Reader<'a> {
        pub(super) fn new(client: &'a FreshdeskClient) -> Self {
            Self { client }
        }

        /// `GET <base><path>`, after the read-only guard.
        pub(super) async fn get(&self, path: &str, what: &str) -> Result<Answer, PlatformError> {
            read_only(&Method::GET, path, &[])?;
            self.client.request(Method::GET, path, None, what).await
        }

        /// The rate-limit headers of the last answer.
        pub(super) fn budget(&self) -> Budget {
            self.client.budget()
        }
    }
}

/// Runs every Freshdesk probe. `Err` only when the connection check fails.
pub async fn run(
    client: &FreshdeskClient,
    target: &ProbeTarget,
) -> Result<Vec<Finding>, PlatformError> {
    let r = reader::Reader::new(client);
    let mut out = Vec::new();
    connection(&r, &mut out).await?;
    let listed = listing(&r, &mut out).await;
    let ours = our_rules(target, &listed, &mut out);
    // One rule of each type read back: a ticket-updates rule also has performer and events,
    // and a resolved or closed one has a number in its event (`to`), so those come first.
    let rank = |e: &str| match e {
        "ticket_resolved" | "ticket_closed" => 0,
        "ticket_updated" => 1,
        _ => 2,
    };
    for ty in RULE_TYPES {
        if let Some((_, id, event)) = ours
            .iter()
            .filter(|(t, _, _)| *t == ty)
            .min_by_key(|(_, _, e)| rank(e))
        {
            echo(&r, target, ty, id, event, &mut out).await;
        }
    }
    if let Some((_, id, _)) = ours.iter().find(|(ty, _, _)| *ty == TICKET_CREATION) {
        position(&listed, id, &mut out);
    }
    statuses(&r, target, &mut out).await;
    not_read_only(target, &mut out);
    Ok(out)
}

/// What only a change on the account shows: reported `unchecked`, with the test to run by
/// hand on a sandbox ticket.
fn not_read_only(target: &ProbeTarget, out: &mut Vec<Finding>) {
    const AREA: &str = "needs a change on the account (not probed)";
    if target
        .events
        .iter()
        .any(|e| e == "ticket_closed" || e == "ticket_resolved")
    {
        out.push(Finding::unchecked(
            AREA,
            "`ticket_resolved`/`ticket_closed` arrive when the system (a time trigger) makes the change",
            "let the close-after-resolution automation close a resolved sandbox ticket",
            "a `ticket_closed` delivery",
            "performer codes (1 agent, 2 requester, 3 either, 4 system) are not documented, and only a real automation run shows who the change is attributed to",
        ));
    }
    out.push(Finding::unchecked(
        AREA,
        "bulk job states other than queued and in progress are final (each ticket's `success` decides)",
        "POST /api/v2/tickets/bulk_update on two sandbox tickets, then GET /api/v2/jobs/{job_id}",
        "`status` completed (or failed), one `success` per id",
        "a bulk update changes tickets",
    ));
}

const CONNECTION: &str = "connection";
const LISTING: &str = "automation rules (listing)";
const OURS: &str = "automation rules (ours)";
const ECHO: &str = "automation rule read back";

async fn connection(r: &reader::Reader<'_>, out: &mut Vec<Finding>) -> Result<(), PlatformError> {
    let req = "GET /api/v2/agents/me";
    let me = r.get("api/v2/agents/me", "agents/me").await?;
    let id = me.body.get("id");
    out.push(Finding::checked(
        CONNECTION,
        "the API key belongs to an agent (its id is the loop guard's identity)",
        req,
        "an agent with a numeric `id`",
        format!("agent {}", describe(id)),
        id.is_some_and(Value::is_number),
    ));
    let b = r.budget();
    out.push(Finding::checked(
        CONNECTION,
        "answers carry X-RateLimit-Total and X-RateLimit-Remaining",
        req,
        "both headers",
        b.describe()
            .unwrap_or_else(|| "no rate-limit headers".to_owned()),
        b.total.is_some() && b.remaining.is_some(),
    ));
    Ok(())
}

/// What the listing of one automation type gave: `(type, rules)`, `None` when it failed.
type Listed = Vec<(u8, Option<Vec<Value>>)>;

/// The rules of a listing answer, and whether it was the array the connector expects.
fn rules_of(body: &Value) -> (Vec<Value>, bool) {
    match body {
        Value::Array(r) => (r.clone(), true),
        Value::Object(m) => match m.get("rules") {
            Some(Value::Array(r)) => (r.clone(), false),
            _ => (Vec::new(), false),
        },
        _ => (Vec::new(), false),
    }
}

fn id_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

async fn listing(r: &reader::Reader<'_>, out: &mut Vec<Finding>) -> Listed {
    let mut listed = Vec::new();
    for ty in RULE_TYPES {
        let path = format!("api/v2/automations/{ty}/rules?page=1&per_page=100");
        let req = format!("GET /{path}");
        let answer = match r.get(&path, "list automation rules").await {
            Ok(a) => a,
            Err(e) => {
                out.push(unreadable(
                    LISTING,
                    &format!("type {ty} rules can be listed"),
                    &req,
                    "a JSON array of rules",
                    &e,
                ));
                listed.push((ty, None));
                continue;
            }
        };
        let (rules, array) = rules_of(&answer.body);
        out.push(Finding::checked(
            LISTING,
            &format!("type {ty} rules are listed as a JSON array"),
            &req,
            "a JSON array",
            if array {
                format!("an array of {} rule(s)", rules.len())
            } else {
                describe(Some(&answer.body))
            },
            array,
        ));
        let mut ids: Vec<String> = rules.iter().filter_map(|v| id_text(v.get("id"))).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        out.push(Finding::checked(
            LISTING,
            &format!("type {ty}: every listed rule has its own id"),
            &req,
            "no id listed twice",
            format!("{n} rule(s), {} distinct id(s)", ids.len()),
            n == ids.len(),
        ));
        paging(r, ty, &rules, out).await;
        listed.push((ty, Some(rules)));
    }
    listed
}

/// Whether `page`/`per_page` page the listing: with two rules or more, `per_page=1` must give
/// one rule per page, a different one on page 2.
async fn paging(r: &reader::Reader<'_>, ty: u8, all: &[Value], out: &mut Vec<Finding>) {
    let assumption = format!("type {ty} listing pages with `page` and `per_page`");
    let expected = "page=1&per_page=1 and page=2&per_page=1 give one different rule each";
    let req =
        format!("GET /api/v2/automations/{ty}/rules?page=1&per_page=1, then page=2&per_page=1");
    if all.len() < 2 {
        out.push(Finding::unchecked(
            LISTING,
            &assumption,
            &req,
            expected,
            format!(
                "the account has {} rule(s) of this type; paging shows with two or more",
                all.len()
            ),
        ));
        return;
    }
    let mut pages = Vec::new();
    for page in [1, 2] {
        let path = format!("api/v2/automations/{ty}/rules?page={page}&per_page=1");
        match r.get(&path, "list automation rules").await {
            Ok(a) => pages.push(rules_of(&a.body).0),
            Err(e) => {
                out.push(unreadable(LISTING, &assumption, &req, expected, &e));
                return;
            }
        }
    }
    let first = pages.first().map(Vec::as_slice).unwrap_or_default();
    let second = pages.get(1).map(Vec::as_slice).unwrap_or_default();
    let ok = first.len() == 1
        && second.len() == 1
        && id_text(first[0].get("id")) != id_text(second[0].get("id"));
    out.push(Finding::checked(
        LISTING,
        &assumption,
        &req,
        expected,
        format!(
            "page 1: {} rule(s), page 2: {} rule(s){}",
            first.len(),
            second.len(),
            if ok {
                ""
            } else if first.len() > 1 {
                " (per_page is ignored: the connector would read the same list up to 20 times)"
            } else {
                ""
            }
        ),
        ok,
    ));
}

/// Our rules (name carries the marker), as `(type, id, event)`, and a finding per wanted event.
fn our_rules(
    target: &ProbeTarget,
    listed: &Listed,
    out: &mut Vec<Finding>,
) -> Vec<(u8, String, String)> {
    let marker = target.marker();
    let mut ours = Vec::new();
    for (ty, rules) in listed {
        for rule in rules.iter().flatten() {
            let name = rule.get("name").and_then(Value::as_str).unwrap_or("");
            if registration::owned_by(name, &marker)
                && let (Some(id), Some(event)) = (
                    id_text(rule.get("id")),
                    registration::event_of(name, &marker),
                )
            {
                ours.push((*ty, id, event));
            }
        }
    }
    let listed_ok = listed.iter().all(|(_, r)| r.is_some());
    for event in &target.events {
        let Some(ty) = registration::rule_type(event) else {
            continue;
        };
        let req = format!("GET /api/v2/automations/{ty}/rules");
        let assumption = format!("a rule `{marker} {event} …` delivers `{event}`");
        match ours.iter().find(|(t, _, e)| *t == ty && e == event) {
            Some((_, id, _)) => out.push(Finding::checked(
                OURS,
                &assumption,
                &req,
                "listed",
                format!("rule {id}"),
                true,
            )),
            None if listed_ok => out.push(Finding::unchecked(
                OURS,
                &assumption,
                &req,
                "listed",
                "not on the account: the daemon has not registered it (run `supportopsd apply` or the daemon first), or it was deleted",
            )),
            None => {}
        }
    }
    if target.events.is_empty() {
        out.push(Finding::unchecked(
            OURS,
            "our rules are listed",
            "-",
            "-",
            format!(
                "the integration has no [webhook] events; {} rule(s) carry its marker",
                ours.len()
            ),
        ));
    }
    ours
}

/// Reads one of our rules back and compares the echo with what the connector sends.
async fn echo(
    r: &reader::Reader<'_>,
    target: &ProbeTarget,
    ty: u8,
    id: &str,
    event: &str,
    out: &mut Vec<Finding>,
) {
    let path = format!("api/v2/automations/{ty}/rules/{id}");
    let req = format!("GET /{path}");
    let live = match r.get(&path, "view automation rule").await {
        Ok(a) => a.body,
        Err(e) => {
            out.push(unreadable(
                ECHO,
                &format!("type {ty}: {}", "one rule can be read back"),
                &req,
                "the rule as sent",
                &e,
            ));
            return;
        }
    };
    let action = live
        .get("actions")
        .and_then(Value::as_array)
        .and_then(|a| {
            a.iter()
                .find(|a| a.get("field_name").and_then(Value::as_str) == Some("trigger_webhook"))
        })
        .cloned()
        .unwrap_or(Value::Null);
    let live_url = action.get("url").and_then(Value::as_str).unwrap_or("");
    let url = target.url.clone().unwrap_or_else(|| live_url.to_owned());
    let headers = action.get("custom_headers").and_then(Value::as_object);
    let header = headers.and_then(|h| {
        h.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(FRESHDESK_SECRET_HEADER))
            .map(|(_, v)| v)
    });
    // The secret the drift check would compare: the manifest's when it sets one, else the
    // echoed value (a generated secret is only in the daemon's state).
    let secret = target
        .secret
        .as_ref()
        .and_then(|s| s.expose_str().ok().map(str::to_owned))
        .or_else(|| header.and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_default();
    // The rule this one should be: the same name (person or System rule, the secret's key),
    // else the first the connector sends for the event.
    let wanted = registration::desired_rules(&target.marker(), event, &url, &secret);
    let live_name = live.get("name").and_then(Value::as_str);
    let Some(desired) = wanted
        .iter()
        .find(|d| Some(d.name.as_str()) == live_name)
        .or_else(|| wanted.first())
        .map(|d| d.body.clone())
    else {
        return;
    };

    // Numbers: the drift check reads a number and its numeric string alike (the API's GET
    // schema shows `performer.type` and `events.from`/`to` as strings); the observed form is
    // shown either way.
    for (what, pointer) in [
        ("performer.type", "/performer/type"),
        ("events[0].to", "/events/0/to"),
        (
            "conditions[0].properties[0].value[0]",
            "/conditions/0/properties/0/value/0",
        ),
    ] {
        let want = desired.pointer(pointer);
        if !want.is_some_and(Value::is_number) {
            continue;
        }
        let got = live.pointer(pointer);
        // The drift check's own comparison, so the verdict is what a resync would see.
        let same = registration::same(got, want);
        out.push(Finding::checked(
            ECHO,
            &format!("type {ty}: `{what}` is echoed as the number sent, or as its digits"),
            &req,
            describe(want),
            describe(got),
            same,
        ));
    }
    let want_layout = desired.pointer("/actions/0/content_layout");
    let got_layout = action.get("content_layout");
    out.push(Finding::checked(
        ECHO,
        &format!("type {ty}: {}", "`content_layout` is kept as sent"),
        &req,
        describe(want_layout),
        describe(got_layout),
        got_layout == want_layout,
    ));
    let want_content = desired.pointer("/actions/0/content");
    let got_content = action.get("content");
    let content_same = match (got_content, want_content) {
        (Some(Value::String(s)), Some(w)) => {
            serde_json::from_str::<Value>(s).ok().as_ref() == Some(w)
        }
        (l, w) => l == w,
    };
    out.push(Finding::checked(
        ECHO,
        &format!(
            "type {ty}: {}",
            "the webhook content is echoed as sent (an object, or the same JSON as a string)"
        ),
        &req,
        "the body `docs/integrations/freshdesk.md` documents",
        if content_same {
            format!("the same body ({})", describe(got_content))
        } else {
            format!("a different body ({})", describe(got_content))
        },
        content_same,
    ));
    let header_state = match header {
        None => "absent".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "present, value empty (hidden)".to_owned(),
        Some(Value::String(s)) if s.chars().all(|c| c == '*') => {
            "present, value masked (hidden)".to_owned()
        }
        Some(Value::String(s)) => match &target.secret {
            Some(m) if crate::secrets::constant_time_eq(m.expose(), s.as_bytes()) => {
                "present, value echoed (equal to the manifest's secret)".to_owned()
            }
            Some(_) => {
                "present, value echoed but not the manifest's secret (hidden or masked?)".to_owned()
            }
            None => "present, value echoed".to_owned(),
        },
        Some(other) => format!(
            "present, {}",
            describe(Some(other)).split(' ').next().unwrap_or("")
        ),
    };
    // A hidden value (absent, empty, masked) is what the drift check takes on trust: the
    // rule's name carries the secret's key, so a new secret still replaces the rule. Only a
    // value echoed in full that is not the secret differs.
    let hidden = registration::hidden(header);
    let header_ok = hidden
        || match (header, &target.secret) {
            (Some(Value::String(s)), Some(m)) => {
                crate::secrets::constant_time_eq(m.expose(), s.as_bytes())
            }
            (Some(Value::String(_)), None) => true,
            _ => false,
        };
    out.push(Finding::checked(
        ECHO,
        &format!(
            "type {ty}: the `{FRESHDESK_SECRET_HEADER}` custom header is kept (its value echoed, or hidden)"
        ),
        &req,
        "the secret sent, or a hidden value (never shown here)",
        header_state,
        header_ok,
    ));
    if let Some(want_url) = &target.url {
        out.push(Finding::checked(
            ECHO,
            &format!("type {ty}: {}", "the rule posts to this daemon"),
            &req,
            want_url.clone(),
            if live_url.is_empty() {
                "no URL".to_owned()
            } else {
                live_url.to_owned()
            },
            live_url == want_url,
        ));
    }
    let unchanged = registration::matches(&live, &desired);
    out.push(Finding::checked(
        ECHO,
        &format!("type {ty}: {}", "the drift check sees this unchanged rule as unchanged (no rewrite on every resync)"),
        &req,
        "unchanged",
        if unchanged {
            "unchanged".to_owned()
        } else {
            "differs from what the connector sends: every resync would rewrite it and report `repaired`".to_owned()
        },
        unchanged,
    ));
}

/// Where our ticket-creation rule sits: in the "first matching rule" execution mode, an
/// earlier rule that matches stops ours (the mode itself is not readable through the API).
fn position(listed: &Listed, id: &str, out: &mut Vec<Finding>) {
    let rules: Vec<&Value> = listed
        .iter()
        .filter(|(t, _)| *t == TICKET_CREATION)
        .flat_map(|(_, r)| r.iter().flatten())
        .collect();
    let ours = rules
        .iter()
        .find(|r| id_text(r.get("id")).as_deref() == Some(id));
    let pos = ours.and_then(|r| r.get("position"));
    out.push(Finding::unchecked(
        OURS,
        "our ticket-creation rule runs whatever the account's execution mode",
        "GET /api/v2/automations/1/rules",
        "first, or the account runs all matching rules (Admin > Automations > Ticket creation > Execution rule)",
        format!(
            "position {} of {} rule(s); the execution mode cannot be read through the API",
            pos.map_or_else(|| "unknown".to_owned(), ToString::to_string),
            rules.len()
        ),
    ));
}

/// Whether the rules' status condition covers every status of the account.
async fn statuses(r: &reader::Reader<'_>, target: &ProbeTarget, out: &mut Vec<Finding>) {
    let area = "ticket statuses";
    let assumption = "the rules' status condition covers every status of the account";
    let path = "api/v2/ticket_fields?type=default_status";
    let req = format!("GET /{path}");
    let event = target
        .events
        .iter()
        .find(|e| registration::rule_type(e).is_some())
        .map_or("ticket_updated", String::as_str);
    let desired = registration::desired_rules(&target.marker(), event, "https://x/", "")
        .into_iter()
        .next()
        .map_or(Value::Null, |d| d.body);
    let condition: Option<Vec<i64>> = desired
        .get("conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|set| {
            set.get("properties")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .find(|p| p.get("field_name").and_then(Value::as_str) == Some("status"))
        .and_then(|p| p.get("value").and_then(Value::as_array))
        .map(|v| v.iter().filter_map(Value::as_i64).collect());
    let Some(condition) = condition else {
        out.push(Finding::checked(
            area,
            assumption,
            "-",
            "no status condition",
            "the rules have no status condition",
            true,
        ));
        return;
    };
    let fields = match r.get(path, "ticket fields").await {
        Ok(a) => a.body,
        Err(e) => {
            out.push(unreadable(area, assumption, &req, "every status id", &e));
            return;
        }
    };
    let status_field = fields
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f.get("name").and_then(Value::as_str) == Some("status"));
    // `choices` maps each status id to its agent and customer labels.
    let ids: Vec<i64> = status_field
        .and_then(|f| f.get("choices"))
        .and_then(Value::as_object)
        .map(|c| c.keys().filter_map(|k| k.parse().ok()).collect())
        .unwrap_or_default();
    if ids.is_empty() {
        out.push(Finding::unchecked(
            area,
            assumption,
            &req,
            "the status field's `choices`",
            "no status field with numbered choices in the answer",
        ));
        return;
    }
    let missing: Vec<String> = ids
        .iter()
        .filter(|i| !condition.contains(i))
        .map(ToString::to_string)
        .collect();
    out.push(Finding::checked(
        area,
        assumption,
        &req,
        format!("statuses within {condition:?}"),
        if missing.is_empty() {
            format!("statuses {ids:?}")
        } else {
            format!(
                "statuses {} never match the rules' condition: their tickets deliver nothing",
                missing.join(", ")
            )
        },
        missing.is_empty(),
    ));
}
