//! Read-only probes of a real Zendesk account (`supportopsd check-platform`), with `GET`s only
//! ([`crate::platforms::probe::read_only`] refuses anything else).
//!
//! | area | request | assumption |
//! |---|---|---|
//! | connection | `GET /api/v2/users/me` | an agent or admin with a numeric id; rate-limit headers |
//! | webhooks | `GET /api/v2/webhooks?filter[name_contains]=<marker>` | `webhooks` with cursor `meta` (`has_more`, `after_cursor`); ours are listed |
//! | webhook read back | `GET /api/v2/webhooks/{id}` | active, `POST`, `json`, our endpoint and subscriptions |
//! | signing secret | `GET /api/v2/webhooks/{id}/signing_secret` | readable (never shown); the `algorithm` value; both webhooks share one secret |
//! | triggers | `GET /api/v2/triggers`, `GET /api/v2/triggers/{id}` | `triggers` with `next_page`; ours listed; conditions and the webhook body kept as sent |
//!
//! Two assumptions cannot be checked without changing something (a comment with a quote and a
//! newline; closing a ticket): they are reported `unchecked` with the test to run by hand.

use http::Method;
use serde_json::Value;

use super::client::ZendeskClient;
use super::connector::TicketEventsVia;
use super::registration::{self, CONDITIONAL, Desired};
use crate::platforms::connector::PlatformError;
use crate::platforms::probe::{Finding, ProbeTarget, describe, unreadable};

/// Sends only reads: the probe holds a [`reader::Reader`], never the client.
mod reader {
    use super::{Method, PlatformError, ZendeskClient};
    use crate::platforms::probe::read_only;
    use crate::platforms::zendesk::client::Answer;

    /// The Zendesk client, reduced to `GET`.
    pub(super) struct Reader<'a> {
        client: &'a ZendeskClient,
    }

    impl<'a> Reader<'a> {
        pub(super) fn new(client: &'a ZendeskClient) -> Self {
            Self { client }
        }

        /// `GET <base><path>?<query>`, after the read-only guard.
        pub(super) async fn get(
            &self,
            path: &str,
            query: &[(&str, String)],
        ) -> Result<Answer, PlatformError> {
            read_only(&Method::GET, path, &[])?;
            self.client.call(Method::GET, path, query, None, None).await
        }
    }
}

const CONNECTION: &str = "connection";
const WEBHOOKS: &str = "webhooks";
const SECRET: &str = "signing secret";
const TRIGGERS: &str = "triggers";

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn id_of(v: &Value) -> Option<String> {
    match v.get("id")? {
        Value::String(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()) => {
            Some(s.clone())
        }
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        _ => None,
    }
}

/// Runs every Zendesk probe. `Err` only when the connection check fails.
pub async fn run(
    client: &ZendeskClient,
    via: TicketEventsVia,
    target: &ProbeTarget,
) -> Result<Vec<Finding>, PlatformError> {
    let r = reader::Reader::new(client);
    let mut out = Vec::new();
    let me = r.get("api/v2/users/me", &[]).await?;
    let user = me.body.get("user").cloned().unwrap_or(Value::Null);
    let role = str_of(&user, "role");
    if !user.get("id").is_some_and(Value::is_number) {
        return Err(PlatformError::Unauthorized {
            detail:
                "GET /api/v2/users/me answered an anonymous user: the credentials were not accepted"
                    .into(),
        });
    }
    out.push(Finding::checked(
        CONNECTION,
        "the credentials are an agent's or an admin's",
        "GET /api/v2/users/me",
        "role agent or admin",
        format!(
            "user {}, role {}",
            describe(user.get("id")),
            describe(user.get("role"))
        ),
        role == "agent" || role == "admin",
    ));
    let h = |n: &str| {
        me.headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let limit = h("x-rate-limit").or_else(|| h("ratelimit-limit"));
    out.push(Finding::checked(
        CONNECTION,
        "answers carry the rate-limit headers (X-Rate-Limit or ratelimit-limit)",
        "GET /api/v2/users/me",
        "a limit header",
        limit.map_or_else(|| "none".to_owned(), |l| format!("limit {l}")),
        h("x-rate-limit").is_some() || h("ratelimit-limit").is_some(),
    ));
    let desired = match Desired::of(&target.events, via) {
        Ok(d) => d,
        Err(e) => {
            out.push(Finding::unchecked(
                WEBHOOKS,
                "our registrations",
                "-",
                "-",
                e.to_string(),
            ));
            return Ok(out);
        }
    };
    let webhooks = webhooks(&r, target, &desired, &mut out).await;
    triggers(&r, target, &desired, &webhooks, &mut out).await;
    out.push(Finding::unchecked(
        "needs a change on the account (not probed)",
        "batched `add_tags` (`update_many?ids=…` with `ticket.additional_tags`) adds the tags",
        "PUT /api/v2/tickets/update_many.json?ids=… with two sandbox tickets, then GET /api/v2/tickets/show_many?ids=…",
        "the tags on both tickets, their other tags kept",
        "Zendesk's guide documents `additional_tags` in the `ids=` bulk form, the one supportopsd sends; only an update shows it",
    ));
    Ok(out)
}

/// Lists, reads back and checks our webhooks; returns `(name, id)` of those found.
async fn webhooks(
    r: &reader::Reader<'_>,
    target: &ProbeTarget,
    desired: &Desired,
    out: &mut Vec<Finding>,
) -> Vec<(String, String)> {
    let marker = target.marker();
    let req = format!("GET /api/v2/webhooks?filter[name_contains]={marker}");
    let list = match r
        .get(
            "api/v2/webhooks",
            &[("filter[name_contains]", marker.clone())],
        )
        .await
    {
        Ok(a) => a.body,
        Err(e) => {
            out.push(unreadable(
                WEBHOOKS,
                "webhooks can be listed",
                &req,
                "a list",
                &e,
            ));
            return Vec::new();
        }
    };
    let listed = list.get("webhooks").and_then(Value::as_array);
    let has_more = list.pointer("/meta/has_more");
    out.push(Finding::checked(
        WEBHOOKS,
        "the list is `webhooks` with cursor paging (`meta.has_more`, `meta.after_cursor`)",
        &req,
        "`webhooks` array and boolean `meta.has_more`",
        format!(
            "`webhooks`: {}, `meta.has_more`: {}",
            describe(list.get("webhooks")),
            describe(has_more)
        ),
        listed.is_some() && has_more.is_some_and(Value::is_boolean),
    ));
    let listed: Vec<Value> = listed.cloned().unwrap_or_default();
    let mut wanted: Vec<(String, Vec<String>)> = Vec::new();
    if !desired.subscriptions.is_empty() {
        wanted.push((format!("{marker} events"), desired.subscriptions.clone()));
    }
    if !desired.trigger_events.is_empty() {
        wanted.push((format!("{marker} tickets"), vec![CONDITIONAL.to_owned()]));
    }
    let mut found = Vec::new();
    let mut secrets: Vec<(String, String)> = Vec::new();
    for (name, subs) in &wanted {
        let Some(id) = listed
            .iter()
            .find(|w| str_of(w, "name") == name)
            .and_then(id_of)
        else {
            out.push(Finding::unchecked(
                WEBHOOKS,
                &format!("a webhook `{name}` is listed"),
                &req,
                "listed",
                "not on the account: the daemon has not registered it (yet), or it was deleted",
            ));
            continue;
        };
        out.push(Finding::checked(
            WEBHOOKS,
            &format!("a webhook `{name}` is listed"),
            &req,
            "listed",
            format!("webhook {id}"),
            true,
        ));
        let path = format!("api/v2/webhooks/{id}");
        let one = format!("GET /{path}");
        match r.get(&path, &[]).await {
            Ok(a) => {
                let w = a.body.get("webhook").cloned().unwrap_or(Value::Null);
                let mut live: Vec<String> = w
                    .get("subscriptions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect();
                live.sort();
                let shape_ok = str_of(&w, "status") == "active"
                    && str_of(&w, "http_method") == "POST"
                    && str_of(&w, "request_format") == "json"
                    && &live == subs;
                out.push(Finding::checked(
                    WEBHOOKS,
                    &format!("`{name}` reads back active, POST, json, with our subscriptions"),
                    &one,
                    format!("active POST json, {}", subs.join(", ")),
                    format!(
                        "{} {} {}, {}",
                        str_of(&w, "status"),
                        str_of(&w, "http_method"),
                        str_of(&w, "request_format"),
                        if live.is_empty() {
                            "no subscriptions".to_owned()
                        } else {
                            live.join(", ")
                        }
                    ),
                    shape_ok,
                ));
                if let Some(url) = &target.url {
                    let endpoint = str_of(&w, "endpoint");
                    out.push(Finding::checked(
                        WEBHOOKS,
                        &format!("`{name}` delivers to this daemon"),
                        &one,
                        url.clone(),
                        endpoint,
                        endpoint == url,
                    ));
                }
            }
            Err(e) => out.push(unreadable(
                WEBHOOKS,
                &format!("`{name}` can be read back"),
                &one,
                "the webhook",
                &e,
            )),
        }
        let path = format!("api/v2/webhooks/{id}/signing_secret");
        let sreq = format!("GET /{path}");
        match r.get(&path, &[]).await {
            Ok(a) => {
                let secret = a
                    .body
                    .pointer("/signing_secret/secret")
                    .and_then(Value::as_str)
                    .filter(|s| !s.is_empty());
                let algorithm = a.body.pointer("/signing_secret/algorithm");
                out.push(Finding::checked(
                    SECRET,
                    &format!("`{name}`'s signing secret is readable (never shown here)"),
                    &sreq,
                    "`signing_secret.secret` present",
                    format!(
                        "secret {}, algorithm {}",
                        if secret.is_some() {
                            "present"
                        } else {
                            "absent"
                        },
                        describe(algorithm)
                    ),
                    secret.is_some(),
                ));
                if let Some(s) = secret {
                    secrets.push((name.clone(), s.to_owned()));
                }
            }
            Err(e) => out.push(unreadable(
                SECRET,
                &format!("`{name}`'s signing secret is readable"),
                &sreq,
                "`signing_secret.secret` present",
                &e,
            )),
        }
        found.push((name.clone(), id));
    }
    if let [(a, sa), (b, sb)] = secrets.as_slice() {
        let same = crate::secrets::constant_time_eq(sa.as_bytes(), sb.as_bytes());
        out.push(Finding::checked(
            SECRET,
            "both webhooks share one signing secret (the one given on create was kept)",
            "GET /api/v2/webhooks/{id}/signing_secret (both)",
            "the same secret",
            if same {
                format!("`{a}` and `{b}` have the same secret")
            } else {
                format!("`{a}` and `{b}` have different secrets: set ticket_events_via = \"event_subscription\" (one webhook)")
            },
            same,
        ));
    }
    found
}

/// Lists our triggers, reads one back per event and compares it with what the connector sends.
async fn triggers(
    r: &reader::Reader<'_>,
    target: &ProbeTarget,
    desired: &Desired,
    webhooks: &[(String, String)],
    out: &mut Vec<Finding>,
) {
    if desired.trigger_events.is_empty() {
        return;
    }
    let marker = target.marker();
    let req = "GET /api/v2/triggers";
    let list = match r.get("api/v2/triggers", &[]).await {
        Ok(a) => a.body,
        Err(e) => {
            out.push(unreadable(
                TRIGGERS,
                "triggers can be listed",
                req,
                "a list",
                &e,
            ));
            return;
        }
    };
    let listed = list.get("triggers").and_then(Value::as_array);
    out.push(Finding::checked(
        TRIGGERS,
        "the list is `triggers` with offset paging (`next_page`)",
        req,
        "`triggers` array and a `next_page` key (null on the last page)",
        format!(
            "`triggers`: {}, `next_page`: {}",
            describe(list.get("triggers")),
            if list.get("next_page").is_some() {
                "present"
            } else {
                "missing"
            }
        ),
        listed.is_some() && list.get("next_page").is_some(),
    ));
    let listed: Vec<Value> = listed.cloned().unwrap_or_default();
    let tickets_webhook = webhooks
        .iter()
        .find(|(n, _)| *n == format!("{marker} tickets"))
        .map(|(_, id)| id.as_str());
    for event in &desired.trigger_events {
        let title = format!("{marker} {event}");
        let Some(id) = listed
            .iter()
            .find(|t| str_of(t, "title") == title)
            .and_then(id_of)
        else {
            out.push(Finding::unchecked(
                TRIGGERS,
                &format!("a trigger `{title}` is listed"),
                req,
                "listed",
                "not on the account: the daemon has not registered it (yet), or it was deleted",
            ));
            continue;
        };
        let path = format!("api/v2/triggers/{id}");
        let one = format!("GET /{path}");
        let t = match r.get(&path, &[]).await {
            Ok(a) => a.body.get("trigger").cloned().unwrap_or(Value::Null),
            Err(e) => {
                out.push(unreadable(
                    TRIGGERS,
                    &format!("`{title}` can be read back"),
                    &one,
                    "the trigger",
                    &e,
                ));
                continue;
            }
        };
        let list_of = |v: Option<&Value>, k: &str| {
            v.and_then(|c| c.get(k))
                .cloned()
                .filter(Value::is_array)
                .unwrap_or_else(|| Value::Array(Vec::new()))
        };
        let want = registration::trigger_conditions(event);
        let live = t.get("conditions");
        let same_conditions = list_of(live, "all") == list_of(Some(&want), "all")
            && list_of(live, "any") == list_of(Some(&want), "any");
        out.push(Finding::checked(
            TRIGGERS,
            &format!("`{title}`: conditions read back as sent"),
            &one,
            want.to_string(),
            live.map_or_else(|| "none".to_owned(), ToString::to_string),
            same_conditions,
        ));
        let action = t
            .get("actions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|a| str_of(a, "field") == "notification_webhook");
        let webhook_id = action
            .and_then(|a| a.pointer("/value/0"))
            .and_then(Value::as_str);
        let body = action
            .and_then(|a| a.pointer("/value/1"))
            .and_then(Value::as_str);
        let want_body: Value =
            serde_json::from_str(&registration::trigger_body(event)).unwrap_or(Value::Null);
        let body_same = body
            .and_then(|b| serde_json::from_str::<Value>(b).ok())
            .is_some_and(|b| b == want_body);
        out.push(Finding::checked(
            TRIGGERS,
            &format!(
                "`{title}`: the webhook body reads back as sent (valid JSON, same placeholders)"
            ),
            &one,
            "the body `docs/integrations/zendesk.md` documents",
            match body {
                None => "no notification_webhook body".to_owned(),
                Some(_) if body_same => "the same body".to_owned(),
                Some(_) => "a different body".to_owned(),
            },
            body_same,
        ));
        if let Some(want_id) = tickets_webhook {
            out.push(Finding::checked(
                TRIGGERS,
                &format!("`{title}`: notifies our `tickets` webhook"),
                &one,
                want_id,
                webhook_id.unwrap_or("none"),
                webhook_id == Some(want_id),
            ));
        }
    }
    let free_text: Vec<&str> = [
        "{{ticket.title}}",
        "{{ticket.latest_comment.value}}",
        "{{ticket.requester.name}}",
        "{{ticket.assignee.name}}",
    ]
    .into_iter()
    .filter(|p| {
        desired
            .trigger_events
            .iter()
            .any(|e| registration::trigger_body(e).contains(p))
    })
    .collect();
    if !free_text.is_empty() {
        out.push(Finding::unchecked(
            TRIGGERS,
            "Zendesk JSON-escapes free-text placeholders inside the trigger body",
            "not read-only: add a comment containing a quote and a newline to a test ticket",
            "the delivery is valid JSON",
            format!(
                "the bodies hold {}; only a delivery shows whether a quote or newline in them breaks the JSON",
                free_text.join(", ")
            ),
        ));
    }
    if desired.trigger_events.iter().any(|e| e == "ticket.closed") {
        out.push(Finding::unchecked(
            TRIGGERS,
            "the `ticket.closed` trigger fires when a ticket is closed",
            "not read-only: close a solved test ticket (or wait for the close automation)",
            "a `ticket.closed` delivery",
            "closing is done by an automation, and a closed ticket cannot be updated: only a real closure shows whether triggers see it",
        ));
    }
}
