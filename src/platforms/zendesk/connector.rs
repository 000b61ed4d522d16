//! The live Zendesk connector: `GET /api/v2/users/me` for checks, the nine catalogued actions
//! ([`super::actions`]) on the Support API, bulk ticket updates through `update_many` with
//! job-status polling, and webhook registration ([`super::registration`]).
//!
//! | action | calls |
//! |---|---|
//! | `create_ticket` | `POST /api/v2/tickets` with `Idempotency-Key` (the job step's key) |
//! | `update_ticket`, `add_comment`, `assign_ticket`, `change_status`, `set_priority` | `PUT /api/v2/tickets/{id}` |
//! | `add_tags` | `PUT /api/v2/tickets/{id}/tags` (adds; `POST` would replace) |
//! | `apply_macro` | `GET /api/v2/tickets/{id}/macros/{macro_id}/apply`, then `PUT /api/v2/tickets/{id}` with the result as a safe update |
//! | `create_user` | `POST /api/v2/users`, or `POST /api/v2/users/create_or_update` with `upsert` |
//!
//! `update_ticket` and `add_tags` send `safe_update` with the given `updated_stamp` (a 409
//! when the ticket changed since). `apply_macro` always does: the macro's result was computed
//! on the ticket as of its `updated_at`, so a change in between would otherwise be
//! overwritten; that collision is transient (the retry reads the ticket again).
//!
//! `update_ticket`, `assign_ticket`, `change_status`, `set_priority` and `add_tags` are
//! batchable: [`Connector::execute_many`] sends them through
//! `PUT /api/v2/tickets/update_many` (100 tickets a job, one ticket once a job; `add_tags`
//! only in the documented bulk form `?ids=…` with `{"ticket":{"additional_tags":[…]}}`, one
//! job per identical tag set, since Zendesk ignores `additional_tags` in a `tickets` array), polls
//! `GET /api/v2/job_statuses/{id}` until the job completes, and reads the updated tickets back
//! with `GET /api/v2/tickets/show_many` for the results.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ::http::Method;
use serde_json::{Map, Value, json};

use super::client::{BadCredential, ZendeskClient};
use super::params::{Params, ZendeskParams};
use crate::manifest::Integration;
use crate::platforms::connector::{
    ActionCall, ActionOutput, ConnectError, Connector, Health, PlatformError, WebhookSync,
    WebhookTarget,
};
use crate::platforms::http;
use crate::secrets::ResolveContext;

/// Timeout of one HTTP request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Most tickets in one `update_many` job.
pub const BULK_LIMIT: usize = 100;

/// Time between two polls of a job status.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Polls of one job before giving up (transiently).
pub const MAX_POLLS: u32 = 120;

/// Builds the Zendesk connector of `integration`.
pub fn connect(
    integration: &Integration,
    ctx: &ResolveContext<'_>,
) -> Result<Arc<dyn Connector>, ConnectError> {
    Ok(Arc::new(connect_zendesk(integration, ctx)?))
}

/// [`connect`], keeping the Zendesk type: resolves `subdomain` and either `email` +
/// `api_token` or `oauth_token` (the API token wins when both are set), and reads the
/// `[config]` defaults.
pub fn connect_zendesk(
    integration: &Integration,
    ctx: &ResolveContext<'_>,
) -> Result<ZendeskConnector, ConnectError> {
    let subdomain = http::required_credential(integration, "subdomain", ctx)?;
    let subdomain = subdomain
        .expose_str()
        .map(|s| s.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let subdomain = subdomain
        .strip_suffix(".zendesk.com")
        .unwrap_or(&subdomain)
        .to_owned();
    if subdomain.is_empty()
        || !subdomain
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(ConnectError::Client(
            "credential `subdomain` must be the account name (`acme` for https://acme.zendesk.com)"
                .into(),
        ));
    }
    let base = http::base_url(integration, &format!("https://{subdomain}.zendesk.com"));
    let http_client = http::client(REQUEST_TIMEOUT)?;
    let email = http::credential(integration, "email", ctx)?;
    let api_token = http::credential(integration, "api_token", ctx)?;
    let oauth = http::credential(integration, "oauth_token", ctx)?;
    let client = match (email, api_token, oauth) {
        (Some(email), Some(token), _) => {
            let email = email.expose_str().unwrap_or_default().to_owned();
            ZendeskClient::with_api_token(http_client, base, &email, &token)
        }
        (_, _, Some(token)) => ZendeskClient::with_oauth(http_client, base, &token),
        (None, Some(_), None) => return Err(ConnectError::Missing("email".into())),
        (Some(_), None, None) => return Err(ConnectError::Missing("api_token".into())),
        (None, None, None) => {
            return Err(ConnectError::Missing(
                "api_token` (with `email`) or `oauth_token".into(),
            ));
        }
    }
    .map_err(|e: BadCredential| ConnectError::Client(e.to_string()))?;
    let config = &integration.config;
    let id = |k: &str| {
        config
            .get(k)
            .and_then(Value::as_i64)
            .filter(|n| *n > 0)
            .map(i64::unsigned_abs)
    };
    let s = |k: &str| config.get(k).and_then(Value::as_str).map(str::to_owned);
    Ok(ZendeskConnector {
        client,
        default_group_id: id("default_group_id"),
        default_priority: s("default_priority"),
        default_type: s("default_type"),
        comments_public: config
            .get("comments_public")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        ticket_events_via: match s("ticket_events_via").as_deref() {
            Some("event_subscription") => TicketEventsVia::EventSubscription,
            _ => TicketEventsVia::Trigger,
        },
        poll_interval: DEFAULT_POLL_INTERVAL,
    })
}

/// How ticket and comment events are registered (config `ticket_events_via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketEventsVia {
    /// One owned trigger per event, with a `notification_webhook` action to a
    /// trigger-connected webhook (the default: every plan has triggers).
    Trigger,
    /// `zen:event-type:ticket.*` subscriptions on the event webhook.
    EventSubscription,
}

/// The live Zendesk connector.
#[derive(Debug)]
pub struct ZendeskConnector {
    pub(super) client: ZendeskClient,
    default_group_id: Option<u64>,
    default_priority: Option<String>,
    default_type: Option<String>,
    comments_public: bool,
    pub(super) ticket_events_via: TicketEventsVia,
    poll_interval: Duration,
}

/// A ticket id and the `ticket` object of its update.
type TicketChange = (u64, Map<String, Value>);

/// A call's index and its ticket change, in a bulk job.
type BulkItem = (usize, u64, Map<String, Value>);

/// Actions [`Connector::execute_many`] sends through `update_many`.
const BATCHABLE: &[&str] = &[
    "update_ticket",
    "assign_ticket",
    "change_status",
    "set_priority",
    "add_tags",
];

#[async_trait::async_trait]
impl Connector for ZendeskConnector {
    /// `GET /api/v2/users/me`. Zendesk answers it for anyone ("Allowed for: anonymous users"),
    /// so an answer without a user id, or with a role other than agent or admin, is refused as
    /// bad credentials.
    async fn probe(
        &self,
        target: &crate::platforms::probe::ProbeTarget,
    ) -> Result<Vec<crate::platforms::probe::Finding>, PlatformError> {
        super::probe::run(&self.client, self.ticket_events_via, target).await
    }

    async fn check(&self) -> Result<Health, PlatformError> {
        let a = self
            .client
            .call(Method::GET, "api/v2/users/me", &[], None, None)
            .await
            .map_err(|e| match e {
                PlatformError::NotFound { detail } => PlatformError::NotFound {
                    detail: format!("{detail} (is the subdomain right?)"),
                },
                other => other,
            })?;
        let user = a.body.get("user").cloned().unwrap_or(Value::Null);
        let id = id_string(user.get("id"));
        let role = user.get("role").and_then(Value::as_str).unwrap_or("");
        let Some(id) = id else {
            return Err(PlatformError::Unauthorized {
                detail: "GET /api/v2/users/me answered an anonymous user: the credentials were not accepted".into(),
            });
        };
        if role != "agent" && role != "admin" {
            return Err(PlatformError::Unauthorized {
                detail: format!(
                    "GET /api/v2/users/me: user {id} has the role `{}`; supportopsd needs an agent or admin",
                    if role.is_empty() { "none" } else { role }
                ),
            });
        }
        let name = user.get("name").and_then(Value::as_str).unwrap_or("?");
        let email = user.get("email").and_then(Value::as_str).unwrap_or("?");
        Ok(Health {
            // Events carry the acting user's id (`actor_id`, `current_user.id`, the comment
            // author): the same number.
            identity: Some(id.clone()),
            detail: format!("authenticated as {name} <{email}> (user {id}, {role})"),
        })
    }

    async fn execute(&self, call: &ActionCall) -> Result<ActionOutput, PlatformError> {
        let spec = crate::platforms::params::action_spec(&super::DESCRIPTOR, &call.action)?;
        let p = Params::check(spec, &call.parameters)?;
        let result = match spec.name {
            "create_ticket" => self.create_ticket(&p, &call.idempotency_key).await?,
            "update_ticket" | "add_comment" | "assign_ticket" | "change_status"
            | "set_priority" => {
                let (id, body) = self.ticket_update(&p)?;
                let a = self
                    .client
                    .call(
                        Method::PUT,
                        &format!("api/v2/tickets/{id}"),
                        &[],
                        Some(&json!({ "ticket": body })),
                        None,
                    )
                    .await?;
                ticket_result(spec.name, &a.body)
            }
            "add_tags" => self.add_tags(&p).await?,
            "apply_macro" => self.apply_macro(&p).await?,
            "create_user" => self.create_user(&p).await?,
            other => {
                return Err(PlatformError::Invalid(format!(
                    "the zendesk connector cannot perform `{other}`"
                )));
            }
        };
        Ok(ActionOutput { result })
    }

    fn batchable(&self, action: &str) -> bool {
        BATCHABLE.contains(&action)
    }

    /// The text a trigger body leaves out ([`super::events::delivery`]): the ticket
    /// (`GET /api/v2/tickets/{id}`), its requester and assignee
    /// (`GET /api/v2/users/show_many?ids=`, skipped when it has neither), and for
    /// `comment.created` the delivered comment (`GET /api/v2/tickets/{id}/comments` newest
    /// first, one; when a newer comment came meanwhile, one page of 100 is searched for it).
    async fn enrich(
        &self,
        event: &str,
        objects: &Map<String, Value>,
    ) -> Result<Map<String, Value>, PlatformError> {
        let Some(id) = objects
            .get("ticket")
            .and_then(|t| t.get("id"))
            .and_then(Value::as_u64)
        else {
            return Err(PlatformError::Invalid(
                "the event has no ticket id to enrich it with".into(),
            ));
        };
        let answer = self
            .client
            .call(
                Method::GET,
                &format!("api/v2/tickets/{id}"),
                &[],
                None,
                None,
            )
            .await?;
        let ticket = answer.body.get("ticket").cloned().unwrap_or(Value::Null);
        if !ticket.is_object() {
            return Err(PlatformError::Rejected {
                status: answer.status.as_u16(),
                detail: format!("GET /api/v2/tickets/{id}: the answer has no `ticket`"),
            });
        }
        let person = |k: &str| ticket.get(k).and_then(Value::as_u64).filter(|n| *n > 0);
        let (requester_id, assignee_id) = (person("requester_id"), person("assignee_id"));
        let mut users: HashMap<u64, Value> = HashMap::new();
        let ids: Vec<String> = [requester_id, assignee_id]
            .into_iter()
            .flatten()
            .map(|n| n.to_string())
            .collect();
        if !ids.is_empty() {
            let a = self
                .client
                .call(
                    Method::GET,
                    "api/v2/users/show_many",
                    &[("ids", ids.join(","))],
                    None,
                    None,
                )
                .await?;
            for u in a
                .body
                .get("users")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(uid) = u.get("id").and_then(Value::as_u64) {
                    users.insert(uid, u.clone());
                }
            }
        }
        let comment = if event == "comment.created" {
            let wanted = objects
                .get("comment")
                .and_then(|c| c.get("id"))
                .and_then(Value::as_u64);
            self.comment(id, wanted).await?
        } else {
            None
        };
        let user = |uid: Option<u64>| uid.and_then(|u| users.get(&u));
        Ok(super::events::enriched(
            &ticket,
            user(requester_id),
            user(assignee_id),
            comment.as_ref(),
        ))
    }

    async fn execute_many(&self, calls: &[ActionCall]) -> Vec<Result<ActionOutput, PlatformError>> {
        self.bulk(calls).await
    }

    /// A `[webhook] secret` in the manifest means the webhook is made by hand (the contract):
    /// then only what to do is reported, and the deliveries are verified with that secret.
    async fn sync_webhook(&self, target: &WebhookTarget) -> Result<WebhookSync, PlatformError> {
        if target.secret.is_some() {
            return Ok(WebhookSync::Manual(format!(
                "`[webhook] secret` is set, so this webhook is made by hand: in Zendesk Admin Center create a webhook to {} (POST, JSON) signed with that secret, subscribed to or triggered by: {} (the trigger body to paste, ids only, is in docs/integrations/zendesk.md, \"A webhook you make by hand\"); remove `secret` to let supportopsd create it and read its signing secret",
                target.url,
                target.events.join(", ")
            )));
        }
        self.sync(target).await
    }

    async fn remove_webhook(&self, target: &WebhookTarget) -> Result<usize, PlatformError> {
        self.remove(target).await
    }
}

/// Read-only ticket keys dropped from a macro's result before it is saved.
const READ_ONLY: &[&str] = &[
    "id",
    "url",
    "created_at",
    "updated_at",
    "via",
    "satisfaction_rating",
    "sharing_agreement_ids",
    "followup_ids",
    "has_incidents",
    "is_public",
    "allow_channelback",
    "allow_attachments",
    "description",
    "recipient",
    "generated_timestamp",
    "from_messaging_channel",
    "encoded_id",
];

impl ZendeskConnector {
    /// The same connector, polling bulk jobs every `interval`.
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    async fn create_ticket(
        &self,
        p: &Params<'_>,
        idempotency_key: &str,
    ) -> Result<Value, PlatformError> {
        let a = p.action();
        let mut t = Map::new();
        let text = p.string("comment").unwrap_or_default();
        if text.trim().is_empty() {
            return Err(PlatformError::Invalid(format!("{a}: `comment` is empty")));
        }
        let mut comment = Map::new();
        let key = if p.bool("html_comment") == Some(true) {
            "html_body"
        } else {
            "body"
        };
        comment.insert(key.into(), Value::String(text));
        if let Some(public) = p.bool("public") {
            comment.insert("public".into(), Value::Bool(public));
        }
        t.insert("comment".into(), Value::Object(comment));
        if let Some(s) = p.text("subject") {
            t.insert("subject".into(), Value::String(s));
        }
        match (p.id("requester_id")?, p.text("requester_email")) {
            (Some(_), Some(_)) => {
                return Err(PlatformError::Invalid(format!(
                    "{a}: give `requester_id` or `requester_email`, not both"
                )));
            }
            (Some(id), None) => {
                if p.text("requester_name").is_some() {
                    return Err(PlatformError::Invalid(format!(
                        "{a}: `requester_name` goes with `requester_email`, not `requester_id`"
                    )));
                }
                t.insert("requester_id".into(), id.into());
            }
            (None, Some(email)) => {
                check_email(a, "requester_email", &email)?;
                let mut r = Map::new();
                r.insert("email".into(), Value::String(email));
                if let Some(n) = p.text("requester_name") {
                    r.insert("name".into(), Value::String(n));
                }
                t.insert("requester".into(), Value::Object(r));
            }
            (None, None) => {
                if p.text("requester_name").is_some() {
                    return Err(PlatformError::Invalid(format!(
                        "{a}: `requester_name` needs `requester_email`"
                    )));
                }
            }
        }
        for k in [
            "submitter_id",
            "assignee_id",
            "organization_id",
            "brand_id",
            "ticket_form_id",
        ] {
            if let Some(v) = p.id(k)? {
                t.insert(k.into(), v.into());
            }
        }
        if let Some(g) = p.id("group_id")?.or(self.default_group_id) {
            t.insert("group_id".into(), g.into());
        }
        if let Some(s) = p.string("status") {
            t.insert("status".into(), Value::String(s));
        }
        if let Some(s) = p.string("priority").or(self.default_priority.clone()) {
            t.insert("priority".into(), Value::String(s));
        }
        let ty = p.string("type").or(self.default_type.clone());
        if let Some(s) = &ty {
            t.insert("type".into(), Value::String(s.clone()));
        }
        common_fields(p, &mut t, ty.as_deref())?;
        let answer = self
            .client
            .call(
                Method::POST,
                "api/v2/tickets",
                &[],
                Some(&json!({ "ticket": t })),
                Some(idempotency_key),
            )
            .await?;
        if let Some(hit) = answer
            .headers
            .get("x-idempotency-lookup")
            .and_then(|v| v.to_str().ok())
        {
            tracing::debug!(lookup = hit, "zendesk idempotency lookup");
        }
        Ok(ticket_result("create_ticket", &answer.body))
    }

    /// The ticket id and the `ticket` object of a `PUT /api/v2/tickets/{id}` for the
    /// single-ticket update actions (also the items of a bulk update).
    fn ticket_update(&self, p: &Params<'_>) -> Result<(u64, Map<String, Value>), PlatformError> {
        let a = p.action();
        let id = p.required_id("ticket_id")?;
        let mut t = Map::new();
        match a {
            "update_ticket" => {
                if let Some(s) = p.text("subject") {
                    t.insert("subject".into(), Value::String(s));
                }
                for k in ["status", "priority", "type"] {
                    if let Some(v) = p.string(k) {
                        t.insert(k.into(), Value::String(v));
                    }
                }
                for k in [
                    "custom_status_id",
                    "assignee_id",
                    "group_id",
                    "organization_id",
                    "requester_id",
                ] {
                    if let Some(v) = p.id(k)? {
                        t.insert(k.into(), v.into());
                    }
                }
                let ty = p.string("type");
                common_fields(p, &mut t, ty.as_deref())?;
                if t.is_empty() {
                    return Err(PlatformError::Invalid(format!(
                        "{a}: nothing to change: give at least one ticket field"
                    )));
                }
                safe_update(p, &mut t)?;
            }
            "add_comment" => {
                let mut c = Map::new();
                match (p.string("body"), p.string("html_body")) {
                    (Some(_), Some(_)) => {
                        return Err(PlatformError::Invalid(format!(
                            "{a}: give `body` or `html_body`, not both"
                        )));
                    }
                    (Some(b), None) if !b.trim().is_empty() => {
                        c.insert("body".into(), Value::String(b));
                    }
                    (None, Some(h)) if !h.trim().is_empty() => {
                        c.insert("html_body".into(), Value::String(h));
                    }
                    _ => {
                        return Err(PlatformError::Invalid(format!("{a}: the comment is empty")));
                    }
                }
                c.insert(
                    "public".into(),
                    Value::Bool(p.bool("public").unwrap_or(self.comments_public)),
                );
                if let Some(author) = p.id("author_id")? {
                    c.insert("author_id".into(), author.into());
                }
                t.insert("comment".into(), Value::Object(c));
            }
            "assign_ticket" => {
                match (p.id("assignee_id")?, p.text("assignee_email")) {
                    (Some(_), Some(_)) => {
                        return Err(PlatformError::Invalid(format!(
                            "{a}: give `assignee_id` or `assignee_email`, not both"
                        )));
                    }
                    (Some(id), None) => {
                        t.insert("assignee_id".into(), id.into());
                    }
                    (None, Some(email)) => {
                        check_email(a, "assignee_email", &email)?;
                        t.insert("assignee_email".into(), Value::String(email));
                    }
                    (None, None) => {}
                }
                if let Some(g) = p.id("group_id")? {
                    t.insert("group_id".into(), g.into());
                }
                if t.is_empty() {
                    return Err(PlatformError::Invalid(format!(
                        "{a}: needs a non-empty `assignee_id`, `assignee_email` or `group_id`"
                    )));
                }
            }
            "change_status" => {
                if let Some(s) = p.string("status") {
                    t.insert("status".into(), Value::String(s));
                }
                if let Some(c) = p.id("custom_status_id")? {
                    t.insert("custom_status_id".into(), c.into());
                }
            }
            "set_priority" => {
                if let Some(s) = p.string("priority") {
                    t.insert("priority".into(), Value::String(s));
                }
            }
            other => {
                return Err(PlatformError::Invalid(format!(
                    "`{other}` is not a ticket update"
                )));
            }
        }
        Ok((id, t))
    }

    async fn add_tags(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let id = p.required_id("ticket_id")?;
        let tags = tags(p)?;
        let mut body = Map::new();
        body.insert("tags".into(), json!(tags));
        safe_update(p, &mut body)?;
        if body.contains_key("safe_update") {
            // The Tags API takes the flag as a string.
            body.insert("safe_update".into(), Value::String("true".into()));
        }
        let a = self
            .client
            .call(
                Method::PUT,
                &format!("api/v2/tickets/{id}/tags"),
                &[],
                Some(&Value::Object(body)),
                None,
            )
            .await?;
        Ok(json!({ "tags": a.body.get("tags").cloned().unwrap_or_else(|| json!(tags)) }))
    }

    async fn apply_macro(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let id = p.required_id("ticket_id")?;
        let macro_id = p.required_id("macro_id")?;
        let a = self
            .client
            .call(
                Method::GET,
                &format!("api/v2/tickets/{id}/macros/{macro_id}/apply"),
                &[],
                None,
                None,
            )
            .await?;
        let Some(after) = a.body.pointer("/result/ticket").and_then(Value::as_object) else {
            return Err(PlatformError::Rejected {
                status: a.status.as_u16(),
                detail: format!(
                    "GET /api/v2/tickets/{id}/macros/{macro_id}/apply: the answer has no `result.ticket`"
                ),
            });
        };
        let stamp = after
            .get("updated_at")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let mut t = after.clone();
        for k in READ_ONLY {
            t.remove(*k);
        }
        if let Some(Value::Object(c)) = t.get_mut("comment") {
            c.remove("scoped_body");
            let empty = ["body", "html_body"]
                .iter()
                .all(|k| c.get(*k).and_then(Value::as_str).is_none_or(str::is_empty));
            if empty {
                t.remove("comment");
            }
        }
        if let Some(s) = stamp {
            t.insert("updated_stamp".into(), Value::String(s));
            t.insert("safe_update".into(), Value::Bool(true));
        }
        let saved = self
            .client
            .call(
                Method::PUT,
                &format!("api/v2/tickets/{id}"),
                &[],
                Some(&json!({ "ticket": t })),
                None,
            )
            .await
            .map_err(|e| match e {
                PlatformError::Rejected { status: 409, detail } => PlatformError::Transient {
                    detail: format!(
                        "apply_macro: the ticket changed while the macro was applied; retrying reads it again ({detail})"
                    ),
                    retry_after: None,
                },
                other => other,
            })?;
        Ok(ticket_result("apply_macro", &saved.body))
    }

    async fn create_user(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let a = p.action();
        let name = p
            .text("name")
            .ok_or_else(|| PlatformError::Invalid(format!("{a}: `name` is empty")))?;
        let email = p.text("email").unwrap_or_default();
        check_email(a, "email", &email)?;
        let mut u = Map::new();
        u.insert("name".into(), Value::String(name));
        u.insert("email".into(), Value::String(email));
        if let Some(r) = p.string("role") {
            u.insert("role".into(), Value::String(r));
        }
        if let Some(o) = p.id("organization_id")? {
            u.insert("organization_id".into(), o.into());
        }
        for k in ["external_id", "phone"] {
            if let Some(v) = p.text(k) {
                u.insert(k.into(), Value::String(v));
            }
        }
        if p.raw("tags").is_some() {
            u.insert("tags".into(), json!(tags(p)?));
        }
        if let Some(v) = p.bool("verified") {
            u.insert("verified".into(), Value::Bool(v));
        }
        if let Some(f) = p.raw("user_fields") {
            u.insert("user_fields".into(), f.clone());
        }
        let path = if p.bool("upsert") == Some(true) {
            "api/v2/users/create_or_update"
        } else {
            "api/v2/users"
        };
        let ans = self
            .client
            .call(Method::POST, path, &[], Some(&json!({ "user": u })), None)
            .await?;
        let user = ans.body.get("user").cloned().unwrap_or(Value::Null);
        let g = |k: &str| user.get(k).cloned().unwrap_or(Value::Null);
        Ok(json!({
            "id": g("id"),
            "email": g("email"),
            "url": g("url"),
            "created_at": g("created_at"),
        }))
    }

    /// The comment `wanted` of ticket `id` (the newest when `wanted` is `None`): the newest
    /// comment first, then one page of the 100 newest. `Some(Value::Null)` when it is not
    /// among them (its body stays unknown).
    async fn comment(&self, id: u64, wanted: Option<u64>) -> Result<Option<Value>, PlatformError> {
        for per_page in ["1", "100"] {
            let a = self
                .client
                .call(
                    Method::GET,
                    &format!("api/v2/tickets/{id}/comments"),
                    &[("sort_order", "desc".into()), ("per_page", per_page.into())],
                    None,
                    None,
                )
                .await?;
            let comments = a.body.get("comments").and_then(Value::as_array);
            let found = comments
                .into_iter()
                .flatten()
                .find(|c| wanted.is_none_or(|w| c.get("id").and_then(Value::as_u64) == Some(w)));
            if let Some(c) = found {
                return Ok(Some(c.clone()));
            }
            if comments.is_none_or(|c| c.len() < per_page.parse().unwrap_or(1)) {
                break;
            }
        }
        tracing::info!(
            ticket = id,
            "zendesk: the delivered comment is not among the ticket's 100 newest; its body stays empty"
        );
        Ok(Some(Value::Null))
    }

    /// [`Connector::execute_many`]: checks every call, sends the batchable ones through
    /// `update_many` jobs, and performs the others one by one.
    async fn bulk(&self, calls: &[ActionCall]) -> Vec<Result<ActionOutput, PlatformError>> {
        let mut out: Vec<Option<Result<ActionOutput, PlatformError>>> = vec![None; calls.len()];
        // (call index, ticket id, ticket object)
        let mut items: Vec<(usize, u64, Map<String, Value>)> = Vec::new();
        let mut singles = Vec::new();
        for (i, call) in calls.iter().enumerate() {
            match self.bulk_item(call) {
                Ok(Some((id, t))) => items.push((i, id, t)),
                Ok(None) => singles.push(i),
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        // Jobs of at most BULK_LIMIT tickets, each ticket at most once per job. `add_tags`
        // goes in the documented bulk form only (`?ids=` with one `ticket` object whose
        // `additional_tags` apply to all of them: Zendesk ignores `additional_tags` inside a
        // `tickets` array), so its calls are grouped by identical tag sets; everything else
        // goes as a batch of different changes.
        let mut jobs: Vec<(Option<Value>, Vec<BulkItem>)> = Vec::new();
        for item in items {
            let tags = item.2.get("additional_tags").cloned();
            let fits = jobs.iter().position(|(t, j)| {
                *t == tags && j.len() < BULK_LIMIT && !j.iter().any(|(_, id, _)| *id == item.1)
            });
            match fits {
                Some(j) => jobs[j].1.push(item),
                None => jobs.push((tags, vec![item])),
            }
        }
        for (tags, job) in jobs {
            let results = self.run_job(&job, tags.as_ref()).await;
            for ((i, _, _), r) in job.iter().zip(results) {
                let action = calls[*i].action.as_str();
                out[*i] = Some(r.map(|ticket| ActionOutput {
                    result: ticket_result(action, &json!({ "ticket": ticket })),
                }));
            }
        }
        for i in singles {
            out[i] = Some(self.execute(&calls[i]).await);
        }
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(PlatformError::Invalid("the call was not performed".into()))
                })
            })
            .collect()
    }

    /// The `update_many` item of a call, `None` when it must go alone (a safe update, which
    /// carries its own stamp), or the parameter error.
    fn bulk_item(&self, call: &ActionCall) -> Result<Option<TicketChange>, PlatformError> {
        let spec = crate::platforms::params::action_spec(&super::DESCRIPTOR, &call.action)?;
        let p = Params::check(spec, &call.parameters)?;
        if !BATCHABLE.contains(&spec.name)
            || p.raw("updated_stamp").is_some()
            || p.bool("safe_update") == Some(true)
        {
            return Ok(None);
        }
        if spec.name == "add_tags" {
            let id = p.required_id("ticket_id")?;
            let mut list = tags(&p)?;
            if list.is_empty() {
                // Nothing to add: the single call answers the ticket's tags as they are.
                return Ok(None);
            }
            // Sorted and deduplicated, so that calls adding the same set share a job.
            list.sort();
            list.dedup();
            let mut t = Map::new();
            t.insert("additional_tags".into(), json!(list));
            return Ok(Some((id, t)));
        }
        self.ticket_update(&p).map(Some)
    }

    /// Runs one `update_many` job and reads the tickets back: one result per item, in order.
    /// With `additional_tags`, the job is the bulk form `?ids=…` with
    /// `{"ticket":{"additional_tags":[…]}}` (every item adds exactly these tags); without,
    /// the batch form `{"tickets":[{id, …}]}`.
    async fn run_job(
        &self,
        job: &[(usize, u64, Map<String, Value>)],
        additional_tags: Option<&Value>,
    ) -> Vec<Result<Value, PlatformError>> {
        let all = |e: PlatformError| job.iter().map(|_| Err(e.clone())).collect::<Vec<_>>();
        let (query, body) = match additional_tags {
            Some(tags) => {
                let ids: Vec<String> = job.iter().map(|(_, id, _)| id.to_string()).collect();
                (
                    vec![("ids", ids.join(","))],
                    json!({ "ticket": { "additional_tags": tags } }),
                )
            }
            None => {
                let tickets: Vec<Value> = job
                    .iter()
                    .map(|(_, id, t)| {
                        let mut t = t.clone();
                        t.insert("id".into(), (*id).into());
                        Value::Object(t)
                    })
                    .collect();
                (Vec::new(), json!({ "tickets": tickets }))
            }
        };
        let started = match self
            .client
            .call(
                Method::PUT,
                "api/v2/tickets/update_many",
                &query,
                Some(&body),
                None,
            )
            .await
        {
            Ok(a) => a,
            Err(e) => return all(e),
        };
        let status = match self.poll_job(&started.body).await {
            Ok(s) => s,
            Err(e) => return all(e),
        };
        let mut by_id: HashMap<u64, &Value> = HashMap::new();
        for r in status
            .get("results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(id) = r.get("id").and_then(Value::as_u64) {
                by_id.insert(id, r);
            }
        }
        let failed_job = status.get("status").and_then(Value::as_str) == Some("failed");
        let ids: Vec<String> = job
            .iter()
            .filter(|(_, id, _)| by_id.get(id).is_some_and(|r| !item_failed(r)))
            .map(|(_, id, _)| id.to_string())
            .collect();
        let mut fresh: HashMap<u64, Value> = HashMap::new();
        if !ids.is_empty() {
            match self
                .client
                .call(
                    Method::GET,
                    "api/v2/tickets/show_many",
                    &[("ids", ids.join(","))],
                    None,
                    None,
                )
                .await
            {
                Ok(a) => {
                    for t in a
                        .body
                        .get("tickets")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(id) = t.get("id").and_then(Value::as_u64) {
                            fresh.insert(id, t.clone());
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "zendesk show_many after update_many failed"),
            }
        }
        job.iter()
            .map(|(_, id, t)| match by_id.get(id) {
                Some(r) if item_failed(r) => {
                    let what = [r.get("error"), r.get("details")]
                        .into_iter()
                        .flatten()
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(": ");
                    Err(PlatformError::Rejected {
                        status: 422,
                        detail: http::excerpt(&format!("update_many: ticket {id}: {what}")),
                    })
                }
                Some(_) => Ok(fresh.get(id).cloned().unwrap_or_else(|| {
                    let mut t = t.clone();
                    t.insert("id".into(), (*id).into());
                    Value::Object(t)
                })),
                None if failed_job => Err(PlatformError::Rejected {
                    status: 200,
                    detail: http::excerpt(&format!(
                        "update_many job failed: {}",
                        status
                            .get("message")
                            .and_then(Value::as_str)
                            .unwrap_or("no message")
                    )),
                }),
                None => Err(PlatformError::Transient {
                    detail: format!("update_many: the job reported nothing for ticket {id}"),
                    retry_after: None,
                }),
            })
            .collect()
    }

    /// Polls a job until it is `completed` or `failed`; its final `job_status`.
    async fn poll_job(&self, started: &Value) -> Result<Value, PlatformError> {
        let mut status = started.get("job_status").cloned().unwrap_or(Value::Null);
        let Some(job_id) = status.get("id").and_then(Value::as_str).map(str::to_owned) else {
            return Err(PlatformError::Rejected {
                status: 200,
                detail: "PUT /api/v2/tickets/update_many: the answer has no `job_status.id`".into(),
            });
        };
        if !job_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(PlatformError::Rejected {
                status: 200,
                detail: "PUT /api/v2/tickets/update_many: the job id is not an id".into(),
            });
        }
        for _ in 0..MAX_POLLS {
            if let Some("completed" | "failed") = status.get("status").and_then(Value::as_str) {
                return Ok(status);
            }
            tokio::time::sleep(self.poll_interval).await;
            let a = self
                .client
                .call(
                    Method::GET,
                    &format!("api/v2/job_statuses/{job_id}"),
                    &[],
                    None,
                    None,
                )
                .await?;
            status = a.body.get("job_status").cloned().unwrap_or(Value::Null);
        }
        Err(PlatformError::Transient {
            detail: format!("update_many job {job_id} still running after {MAX_POLLS} polls"),
            retry_after: None,
        })
    }
}

/// Whether a job result says its ticket failed (`success: false`, or an `error` without
/// `success`).
fn item_failed(r: &Value) -> bool {
    match r.get("success").and_then(Value::as_bool) {
        Some(ok) => !ok,
        None => r.get("error").is_some_and(|e| !e.is_null()),
    }
}

/// Fields `create_ticket` and `update_ticket` share: tags, external id, due time, custom fields.
fn common_fields(
    p: &Params<'_>,
    t: &mut Map<String, Value>,
    ty: Option<&str>,
) -> Result<(), PlatformError> {
    let a = p.action();
    if p.raw("tags").is_some() {
        t.insert("tags".into(), json!(tags(p)?));
    }
    if let Some(x) = p.string("external_id") {
        t.insert("external_id".into(), Value::String(x));
    }
    if let Some(d) = p.text("due_at") {
        if !looks_like_rfc3339(&d) {
            return Err(PlatformError::Invalid(format!(
                "{a}: `due_at` must be an RFC 3339 time such as 2026-12-01T09:00:00Z, got {d:?}"
            )));
        }
        if ty.is_some_and(|t| t != "task") {
            return Err(PlatformError::Invalid(format!(
                "{a}: `due_at` is only for tickets of type `task`"
            )));
        }
        t.insert("due_at".into(), Value::String(d));
    }
    if let Some(Value::Array(fields)) = p.raw("custom_fields") {
        for f in fields {
            if f.get("id").and_then(Value::as_u64).is_none() {
                return Err(PlatformError::Invalid(format!(
                    "{a}: every `custom_fields` entry needs an integer `id`"
                )));
            }
        }
        t.insert("custom_fields".into(), Value::Array(fields.clone()));
    }
    Ok(())
}

/// `safe_update` with `updated_stamp`: a stamp alone asks for a safe update; `safe_update`
/// without a stamp cannot work.
fn safe_update(p: &Params<'_>, t: &mut Map<String, Value>) -> Result<(), PlatformError> {
    let a = p.action();
    match (p.bool("safe_update"), p.text("updated_stamp")) {
        (Some(true), None) => Err(PlatformError::Invalid(format!(
            "{a}: `safe_update` needs `updated_stamp` (the ticket's `updated_at` as last seen)"
        ))),
        (Some(false), _) | (None, None) => Ok(()),
        (_, Some(stamp)) => {
            if !looks_like_rfc3339(&stamp) {
                return Err(PlatformError::Invalid(format!(
                    "{a}: `updated_stamp` must be the ticket's `updated_at` (RFC 3339), got {stamp:?}"
                )));
            }
            t.insert("updated_stamp".into(), Value::String(stamp));
            t.insert("safe_update".into(), Value::Bool(true));
            Ok(())
        }
    }
}

/// The `tags` parameter: at least one, no spaces (Zendesk splits tags on spaces).
fn tags(p: &Params<'_>) -> Result<Vec<String>, PlatformError> {
    let a = p.action();
    let tags = p.strings("tags").unwrap_or_default();
    if tags.is_empty() && p.action() == "add_tags" {
        return Err(PlatformError::Invalid(format!("{a}: `tags` names no tag")));
    }
    if let Some(bad) = tags.iter().find(|t| t.chars().any(char::is_whitespace)) {
        return Err(PlatformError::Invalid(format!(
            "{a}: tag {bad:?} contains a space (Zendesk tags are single words)"
        )));
    }
    Ok(tags)
}

fn check_email(action: &str, name: &str, email: &str) -> Result<(), PlatformError> {
    let ok = email
        .split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.starts_with('.'))
        && !email.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(PlatformError::Invalid(format!(
            "{action}: `{name}` is not an email address: {email:?}"
        )))
    }
}

/// A loose RFC 3339 shape check (`2026-12-01T09:00:00Z`, offsets and fractions allowed).
fn looks_like_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && (b[10] == b'T' || b[10] == b't')
        && b[13] == b':'
        && b[16] == b':'
        && (s.ends_with('Z')
            || s.ends_with('z')
            || s.get(19..).is_some_and(|rest| rest.contains(['+', '-'])))
}

/// An id as text (`123` or `"123"`), `None` for null, 0 or anything else.
pub(crate) fn id_string(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => n.as_u64().filter(|n| *n > 0).map(|n| n.to_string()),
        Value::String(s) => {
            let s = s.trim();
            (!s.is_empty() && s != "0" && s.chars().all(|c| c.is_ascii_digit()))
                .then(|| s.to_owned())
        }
        _ => None,
    }
}

/// The catalogued result fields of a ticket action, from `{"ticket": …, "audit": …}`.
fn ticket_result(action: &str, body: &Value) -> Value {
    let t = body.get("ticket").cloned().unwrap_or(Value::Null);
    let g = |k: &str| t.get(k).cloned().unwrap_or(Value::Null);
    match action {
        "create_ticket" => json!({
            "id": g("id"), "url": g("url"), "status": g("status"),
            "requester_id": g("requester_id"), "created_at": g("created_at"),
        }),
        "add_comment" => json!({
            "id": g("id"),
            "audit_id": body.pointer("/audit/id").cloned().unwrap_or(Value::Null),
            "updated_at": g("updated_at"),
        }),
        "assign_ticket" => json!({
            "id": g("id"), "assignee_id": g("assignee_id"), "group_id": g("group_id"),
        }),
        "change_status" => json!({ "id": g("id"), "status": g("status") }),
        "set_priority" => json!({ "id": g("id"), "priority": g("priority") }),
        "add_tags" => json!({ "tags": g("tags") }),
        _ => json!({ "id": g("id"), "status": g("status"), "updated_at": g("updated_at") }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_results_fail_by_flag_or_error() {
        assert!(!item_failed(
            &json!({"id": 1, "status": "Updated", "success": true})
        ));
        assert!(item_failed(&json!({"id": 1, "success": false})));
        assert!(item_failed(
            &json!({"id": 1, "error": "TicketUpdateFailed"})
        ));
        assert!(!item_failed(&json!({"id": 1, "status": "Updated"})));
    }

    #[test]
    fn rfc3339_shapes() {
        assert!(looks_like_rfc3339("2026-12-01T09:00:00Z"));
        assert!(looks_like_rfc3339("2026-12-01T09:00:00.123+02:00"));
        assert!(!looks_like_rfc3339("2026-12-01"));
        assert!(!looks_like_rfc3339("2026-12-01T09:00:00"));
        assert!(!looks_like_rfc3339("éééééééééééééééééééééé"));
        assert!(!looks_like_rfc3339("2026-12-01T09:00:0éééé"));
    }

    #[test]
    fn ids_as_text() {
        assert_eq!(id_string(Some(&json!(42))), Some("42".into()));
        assert_eq!(id_string(Some(&json!("42"))), Some("42".into()));
        assert_eq!(id_string(Some(&json!("0"))), None);
        assert_eq!(id_string(Some(&json!(null))), None);
        assert_eq!(id_string(Some(&json!("4x"))), None);
    }
}
