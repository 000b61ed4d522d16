//! The live Freshdesk connector: `GET /api/v2/agents/me` for checks, the eight catalogued
//! actions ([`super::actions`]) on API v2, `tickets/bulk_update` for several due updates, and
//! the automation rules that deliver events ([`super::registration`]).
//!
//! | action | call |
//! |---|---|
//! | `create_ticket` | `POST /api/v2/tickets` |
//! | `update_ticket`, `assign_ticket`, `change_status` | `PUT /api/v2/tickets/{id}` (several due together: `POST /api/v2/tickets/bulk_update`, then `GET /api/v2/jobs/{job_id}` until the job is done) |
//! | `add_note` | `POST /api/v2/tickets/{id}/notes` |
//! | `add_reply` | `POST /api/v2/tickets/{id}/reply` |
//! | `add_time_entry` | `POST /api/v2/tickets/{id}/time_entries` |
//! | `create_contact` | `POST /api/v2/contacts` |
//!
//! Parameters are checked against the catalogue before anything is sent: an unknown name, a
//! missing required one, a value of the wrong type or outside an enum is
//! [`PlatformError::Invalid`]. Status, priority and source take the number or the name
//! (`"resolved"`, `"Urgent"`, `"feedback widget"`); status also takes a custom status number
//! (6 and above). Rendered values are taken leniently where the meaning is plain (`"42"` for an
//! integer, `"true"` for a boolean, `"a, b"` for a list); `null` counts as absent.
//!
//! `[config]`: `default_status` and `default_priority` fill `create_ticket`'s status and
//! priority when the action names none (else open and low); with `auto_assign = true` a new
//! ticket without `responder_id` or `group_id` goes to `default_responder_id` /
//! `default_group_id`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ::http::Method;
use serde_json::{Map, Value, json};

use super::client::{self as fd, BadKey, FreshdeskClient};
use super::registration::{self, RULE_TYPES};
use super::{PRIORITY_CODES, SOURCE_CODES, STATUS_CODES};
use crate::manifest::Integration;
use crate::platforms::catalog::{ActionSpec, ParamType};
use crate::platforms::connector::{
    ActionCall, ActionOutput, ConnectError, Connector, Health, PlatformError, Registration,
    WebhookSync, WebhookTarget,
};
use crate::platforms::http;
use crate::platforms::inbound::FRESHDESK_SECRET_HEADER;
use crate::platforms::params::{self, Params, bool_value, int_value};
use crate::secrets::{ResolveContext, Secret};

/// Timeout of one HTTP request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The suffix of a bare account name given as `domain` (`acme` → `acme.freshdesk.com`).
pub const DOMAIN_SUFFIX: &str = ".freshdesk.com";

/// Why a custom helpdesk domain does not work: Freshdesk's API overview says the API "works
/// only via Freshdesk domains and not via custom CNAMEs" (developers.freshdesk.com/api).
pub const CNAME_HINT: &str = "Freshdesk's API answers only on the account's own \
    `<account>.freshdesk.com` name, not on a custom (CNAME) helpdesk domain; set `domain` to \
    the freshdesk.com name (Admin > Helpdesk Settings shows it)";

/// Time between two polls of a bulk job.
pub const JOB_POLL_INTERVAL: Duration = Duration::from_secs(1);

/// Polls of a bulk job before giving up (the calls then fail as transient).
pub const JOB_POLL_ATTEMPTS: u32 = 60;

/// Most tickets in one `bulk_update`.
pub const MAX_BULK_IDS: usize = 100;

/// Rules listed per page when looking for ours.
const RULES_PER_PAGE: usize = 100;

/// Most pages of rules read per automation type.
const MAX_RULE_PAGES: usize = 20;

/// Builds the Freshdesk connector of `integration`: resolves `domain` and `api_key` (both
/// required) and reads the `[config]` defaults.
pub fn connect(
    integration: &Integration,
    ctx: &ResolveContext<'_>,
) -> Result<Arc<dyn Connector>, ConnectError> {
    Ok(Arc::new(connect_freshdesk(integration, ctx)?))
}

/// [`connect`], keeping the Freshdesk type.
pub fn connect_freshdesk(
    integration: &Integration,
    ctx: &ResolveContext<'_>,
) -> Result<FreshdeskConnector, ConnectError> {
    let domain_secret = http::required_credential(integration, "domain", ctx)?;
    let domain =
        normalize_domain(domain_secret.expose_str().unwrap_or("")).map_err(ConnectError::Client)?;
    let key = http::required_credential(integration, "api_key", ctx)?;
    let http_client = http::client(REQUEST_TIMEOUT)?;
    let base = http::base_url(integration, &format!("https://{domain}"));
    let client = FreshdeskClient::new(http_client, base, &key)
        .map_err(|e: BadKey| ConnectError::Client(e.to_string()))?;
    let cfg = &integration.config;
    let code_cfg = |name: &str, codes: &[(&str, i64)], custom: bool| {
        cfg.get(name)
            .filter(|v| !v.is_null())
            .map(|v| {
                code_value(v, codes, custom).ok_or_else(|| {
                    ConnectError::Client(format!(
                        "[config] {name}: {}",
                        code_error(codes, custom, v)
                    ))
                })
            })
            .transpose()
    };
    let int_cfg = |name: &str| cfg.get(name).and_then(int_value);
    Ok(FreshdeskConnector {
        client,
        domain,
        default_status: code_cfg("default_status", STATUS_CODES, true)?,
        default_priority: code_cfg("default_priority", PRIORITY_CODES, false)?,
        auto_assign: cfg.get("auto_assign").and_then(bool_value).unwrap_or(false),
        default_group_id: int_cfg("default_group_id"),
        default_responder_id: int_cfg("default_responder_id"),
        job_poll_interval: JOB_POLL_INTERVAL,
    })
}

/// `acme`, `acme.freshdesk.com`, `https://acme.freshdesk.com/` → `acme.freshdesk.com`; anything
/// that is not a host name is an error (which names the credential, not its value).
pub fn normalize_domain(raw: &str) -> Result<String, String> {
    let d = raw.trim();
    let d = d
        .strip_prefix("https://")
        .or_else(|| d.strip_prefix("http://"))
        .unwrap_or(d);
    let d = d.trim_end_matches('/').to_ascii_lowercase();
    let valid = !d.is_empty()
        && d.len() <= 253
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if !valid {
        return Err(
            "credential `domain` must be a Freshdesk host name such as `acme.freshdesk.com` (or the account name `acme`)"
                .into(),
        );
    }
    Ok(if d.contains('.') {
        d
    } else {
        format!("{d}{DOMAIN_SUFFIX}")
    })
}

/// The live Freshdesk connector.
#[derive(Debug)]
pub struct FreshdeskConnector {
    client: FreshdeskClient,
    domain: String,
    default_status: Option<i64>,
    default_priority: Option<i64>,
    auto_assign: bool,
    default_group_id: Option<i64>,
    default_responder_id: Option<i64>,
    job_poll_interval: Duration,
}

/// A call that can join a bulk update: its ticket id and the properties it sets.
type BulkItem = (i64, Map<String, Value>);

/// The actions [`Connector::execute_many`] sends through `tickets/bulk_update`.
const BULK_ACTIONS: &[&str] = &["update_ticket", "assign_ticket", "change_status"];

/// Ticket properties `bulk_update` takes; an update touching anything else goes alone. `tags`
/// is left out: whether `bulk_update` replaces a ticket's tags (as `PUT /tickets/{id}` does) or
/// adds to them is unconfirmed, so an update setting tags is sent on its own.
const BULK_PROPERTIES: &[&str] = &[
    "status",
    "priority",
    "source",
    "type",
    "responder_id",
    "group_id",
    "product_id",
];

#[async_trait::async_trait]
impl Connector for FreshdeskConnector {
    async fn probe(
        &self,
        target: &crate::platforms::probe::ProbeTarget,
    ) -> Result<Vec<crate::platforms::probe::Finding>, PlatformError> {
        super::probe::run(&self.client, target)
            .await
            .map_err(|e| self.check_error(e))
    }

    async fn check(&self) -> Result<Health, PlatformError> {
        let answer = match self
            .client
            .request(Method::GET, "api/v2/agents/me", None, "agents/me")
            .await
        {
            Ok(a) => a,
            Err(e) => return Err(self.check_error(e)),
        };
        let me = &answer.body;
        let id = me.get("id").and_then(|v| match v {
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            _ => None,
        });
        let contact = me.get("contact");
        let s = |k: &str| {
            contact
                .and_then(|c| c.get(k))
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
        };
        let who = match (s("name"), s("email")) {
            (Some(n), Some(e)) => format!("{n} <{e}>"),
            (Some(n), None) => n.to_owned(),
            (None, Some(e)) => e.to_owned(),
            (None, None) => "?".to_owned(),
        };
        let agent = id
            .as_deref()
            .map(|i| format!(" (agent {i})"))
            .unwrap_or_default();
        let budget = self
            .client
            .budget()
            .describe()
            .map(|b| format!("; API budget {b}"))
            .unwrap_or_default();
        Ok(Health {
            identity: id,
            detail: format!("authenticated as {who}{agent} on {}{budget}", self.domain),
        })
    }

    async fn execute(&self, call: &ActionCall) -> Result<ActionOutput, PlatformError> {
        // What a failure that may have reached the platform becomes for an action that
        // creates something (`RESEND` in actions.rs): never a blind retry.
        let outcome: Result<ActionOutput, PlatformError> = async {
            let spec = params::action_spec(&super::DESCRIPTOR, &call.action)?;
            let p = check_params(spec, &call.parameters)?;
            let result = match spec.name {
                "create_ticket" => self.create_ticket(&p).await?,
                "update_ticket" | "assign_ticket" | "change_status" => {
                    self.update(spec.name, &p).await?
                }
                "add_note" => self.add_note(&p).await?,
                "add_reply" => self.add_reply(&p).await?,
                "add_time_entry" => self.add_time_entry(&p).await?,
                "create_contact" => self.create_contact(&p).await?,
                other => {
                    return Err(PlatformError::Invalid(format!(
                        "the freshdesk connector cannot perform `{other}`"
                    )));
                }
            };
            Ok(ActionOutput { result })
        }
        .await;
        crate::platforms::connector::guard_resend(super::DESCRIPTOR.kind, &call.action, outcome)
    }

    fn batchable(&self, action: &str) -> bool {
        BULK_ACTIONS.contains(&action)
    }

    /// Calls that set the same properties on different tickets go through one
    /// `tickets/bulk_update` (polling its job); the others are performed one by one.
    async fn execute_many(&self, calls: &[ActionCall]) -> Vec<Result<ActionOutput, PlatformError>> {
        let mut out: Vec<Option<Result<ActionOutput, PlatformError>>> = vec![None; calls.len()];
        // (action, properties as text) → (call index, ticket id).
        let mut groups: BTreeMap<(String, String), Vec<(usize, i64)>> = BTreeMap::new();
        for (i, call) in calls.iter().enumerate() {
            match self.bulk_candidate(call) {
                Ok(Some((ticket, props))) => {
                    let key = (call.action.clone(), Value::Object(props).to_string());
                    groups.entry(key).or_default().push((i, ticket));
                }
                Ok(None) => {}
                Err(e) => out[i] = Some(Err(e)),
            }
        }
        for ((action, props), members) in groups {
            let mut seen = std::collections::HashSet::new();
            let distinct = members.iter().all(|(_, t)| seen.insert(*t));
            if members.len() < 2 || !distinct {
                continue;
            }
            let props: Map<String, Value> = serde_json::from_str(&props).unwrap_or_default();
            for chunk in members.chunks(MAX_BULK_IDS) {
                let results = self.bulk_update(&action, chunk, &props).await;
                for ((i, _), r) in chunk.iter().zip(results) {
                    out[*i] = Some(r);
                }
            }
        }
        let mut done = Vec::with_capacity(calls.len());
        for (slot, call) in out.into_iter().zip(calls) {
            done.push(match slot {
                Some(r) => r,
                None => self.execute(call).await,
            });
        }
        done
    }

    async fn sync_webhook(&self, target: &WebhookTarget) -> Result<WebhookSync, PlatformError> {
        let marker = target.marker();
        for e in &target.events {
            if registration::rule_type(e).is_none() {
                return Err(PlatformError::Invalid(format!(
                    "Freshdesk cannot deliver `{e}`: automation rules fire on tickets only (deliverable: ticket_created, ticket_updated, ticket_resolved, ticket_closed, note_created)"
                )));
            }
        }
        // The manifest's secret, else the one generated before, else a new one.
        let (secret, generated) = match (&target.secret, target.previous.as_ref()) {
            (Some(s), _) => (s.clone(), false),
            (
                None,
                Some(Registration {
                    secret: Some(s), ..
                }),
            ) => (s.clone(), true),
            (None, _) => (generate_secret()?, true),
        };
        let secret_text = secret
            .expose_str()
            .map_err(|_| PlatformError::Invalid("the webhook secret is not text".into()))?
            .to_owned();
        if secret_text.is_empty() || ::http::HeaderValue::from_str(&secret_text).is_err() {
            return Err(PlatformError::Invalid(
                "the webhook secret must be non-empty text usable in an HTTP header".into(),
            ));
        }
        let recorded: Vec<String> = target
            .previous
            .as_ref()
            .map(|p| p.ids.clone())
            .unwrap_or_default();

        let mut changed = false;
        let mut ids = Vec::new();
        let mut live = match self.owned_rules(&marker, &recorded).await {
            Ok(l) => l,
            // An agent without the admin privilege: the rules must be made by hand.
            Err(e @ PlatformError::Unauthorized { .. }) if !fd::is_suspended(&e) => {
                return Ok(WebhookSync::Manual(manual_steps(target, &secret_text)));
            }
            Err(e) => return Err(e),
        };
        for event in &target.events {
            for want in registration::desired_rules(&marker, event, &target.url, &secret_text) {
                let ty = want.ty;
                // Ours by name, else a rule we recorded that someone renamed.
                let pos = live
                    .iter()
                    .position(|r| r.ty == ty && r.name == want.name)
                    .or_else(|| {
                        live.iter()
                            .position(|r| r.ty == ty && !r.marked && r.recorded)
                    });
                match pos.map(|i| live.remove(i)) {
                    Some(rule) if registration::matches(&rule.body, &want.body) => {
                        ids.push(rule_ref(ty, &rule.id));
                    }
                    Some(rule) => {
                        let path = format!("api/v2/automations/{ty}/rules/{}", rule.id);
                        self.client
                            .request(
                                Method::PUT,
                                &path,
                                Some(&want.body),
                                "update automation rule",
                            )
                            .await?;
                        self.read_back(&rule.id, &want).await?;
                        changed = true;
                        ids.push(rule_ref(ty, &rule.id));
                    }
                    None => {
                        let path = format!("api/v2/automations/{ty}/rules");
                        let a = self
                            .client
                            .request(
                                Method::POST,
                                &path,
                                Some(&want.body),
                                "create automation rule",
                            )
                            .await?;
                        let id = id_text(rule_body(&a.body).get("id")).ok_or_else(|| {
                            PlatformError::Rejected {
                                status: a.status.as_u16(),
                                detail: "create automation rule: the answer has no `id`".into(),
                            }
                        })?;
                        changed = true;
                        ids.push(rule_ref(ty, &id));
                        self.read_back(&id, &want).await?;
                    }
                }
            }
        }
        // What is left carries our marker but delivers nothing wanted: prune it.
        for rule in live.into_iter().filter(|r| r.marked) {
            self.delete_rule(rule.ty, &rule.id).await?;
            changed = true;
        }
        let outcome = if changed {
            target.change_outcome()
        } else {
            crate::platforms::RegistrationOutcome::Unchanged
        };
        Ok(WebhookSync::Registered {
            outcome,
            registration: Registration {
                ids,
                url: target.url.clone(),
                events: target.events.clone(),
                expires_at_ms: None,
                secret: generated.then_some(secret),
            },
        })
    }

    async fn remove_webhook(&self, target: &WebhookTarget) -> Result<usize, PlatformError> {
        let marker = target.marker();
        let mut deleted = 0;
        for rule in self.owned_rules(&marker, &[]).await? {
            if rule.marked && self.delete_rule(rule.ty, &rule.id).await? {
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

/// One automation rule found on the account.
#[derive(Debug)]
struct LiveRule {
    ty: u8,
    id: String,
    name: String,
    /// Its name carries the marker.
    marked: bool,
    /// Its id is in the recorded registration.
    recorded: bool,
    body: Value,
}

/// What to do by hand when the API key's agent may not manage automation rules.
fn manual_steps(target: &WebhookTarget, secret: &str) -> String {
    let which_secret = if target.secret.is_some() {
        "the integration's `[webhook] secret`"
    } else {
        "a secret you also set as the integration's `[webhook] secret` (set one first)"
    };
    let per_rule: Vec<String> = target
        .events
        .iter()
        .flat_map(|e| registration::desired_rules(&target.marker(), e, &target.url, secret))
        .map(|r| {
            let kind = match r.ty {
                registration::TICKET_CREATION => "Ticket Creation (first in the list)",
                _ if r.name.contains("(system)") => "Ticket Updates, performed by the System",
                _ => "Ticket Updates, performed by an agent or requester",
            };
            format!("{kind} rule `{}`", r.name)
        })
        .collect();
    format!(
        "the API key's agent may not manage automation rules (it needs an administrator's key); \
         create these rules by hand in Admin > Automations, each with a Trigger webhook action \
         (POST, JSON, URL {}, header {} set to {which_secret}, the body from the Freshdesk \
         integration docs with its `supportopsd_event`): {}",
        target.url,
        FRESHDESK_SECRET_HEADER,
        per_rule.join(", ")
    )
}

/// A rule as an answer carries it: the body itself, or wrapped in `rule`.
fn rule_body(v: &Value) -> &Value {
    match v.get("rule") {
        Some(r @ Value::Object(_)) => r,
        _ => v,
    }
}

/// `<type>/<id>`, how a rule is recorded in [`Registration::ids`].
fn rule_ref(ty: u8, id: &str) -> String {
    format!("{ty}/{id}")
}

fn id_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// Whether a bulk job in `status` is over: anything but queued or in progress (the values a
/// finished job takes are unconfirmed, so each ticket's own `success` decides, not the job's
/// status). A job without a status is taken as still running.
fn job_done(status: &str) -> bool {
    !matches!(
        status.replace(['_', '-'], " ").as_str(),
        "" | "queued" | "in progress" | "inprogress" | "pending" | "running"
    )
}

/// Whether a finished bulk job's status says it succeeded.
fn job_succeeded(status: &str) -> bool {
    matches!(status, "completed" | "complete" | "success" | "succeeded")
}

/// `true` or `"true"`.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        _ => false,
    }
}

/// 32 random bytes, hex: the shared secret of an integration whose manifest gives none.
fn generate_secret() -> Result<Secret, PlatformError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| PlatformError::Transient {
        detail: format!("cannot generate a webhook secret: {e}"),
        retry_after: None,
    })?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(Secret::from(hex))
}

impl FreshdeskConnector {
    /// The same connector polling bulk jobs every `interval` (tests use a short one).
    pub fn with_job_poll_interval(mut self, interval: Duration) -> Self {
        self.job_poll_interval = interval;
        self
    }

    /// The helpdesk domain (`acme.freshdesk.com`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// What a failed connection check means, in words an operator can act on.
    fn check_error(&self, e: PlatformError) -> PlatformError {
        let domain = &self.domain;
        match e {
            e if fd::is_suspended(&e) => PlatformError::Unauthorized {
                detail: format!("the Freshdesk account {domain} is suspended ({e})"),
            },
            PlatformError::Unauthorized { detail } => PlatformError::Unauthorized {
                detail: format!(
                    "bad credentials: {domain} refused the API key (check `api_key`): {detail}"
                ),
            },
            PlatformError::NotFound { detail } => PlatformError::NotFound {
                detail: format!(
                    "no Freshdesk helpdesk answers at {domain} (wrong `domain`?): {detail}"
                ),
            },
            PlatformError::Rejected { status, detail } if (300..400).contains(&status) => {
                PlatformError::NotFound {
                    detail: format!(
                        "{domain} redirects instead of answering the API (wrong `domain`? {}): {detail}",
                        CNAME_HINT
                    ),
                }
            }
            PlatformError::Transient {
                detail,
                retry_after,
            } => PlatformError::Transient {
                detail: format!("cannot reach {domain}: {detail}"),
                retry_after,
            },
            PlatformError::NotPerformed { detail } => PlatformError::NotPerformed {
                detail: format!("cannot reach {domain}: {detail}"),
            },
            other => other,
        }
    }

    /// `https://<domain>/helpdesk/tickets/<id>`.
    fn ticket_url(&self, id: &Value) -> Value {
        match id {
            Value::Number(n) => {
                Value::String(format!("https://{}/helpdesk/tickets/{n}", self.domain))
            }
            _ => Value::Null,
        }
    }

    /// Every rule of the automation types supportopsd uses whose name carries `marker` or
    /// whose `<type>/<id>` is in `recorded`, each once.
    ///
    /// Pages are read until one is empty or brings no rule not seen before: whether the
    /// endpoint honours `page` and `per_page` is unconfirmed, and an endpoint that ignores them
    /// answers the same list for every page (read once, then stopped), while one that pages by
    /// a smaller size than asked still has its later pages read.
    async fn owned_rules(
        &self,
        marker: &str,
        recorded: &[String],
    ) -> Result<Vec<LiveRule>, PlatformError> {
        let mut out = Vec::new();
        for ty in RULE_TYPES {
            let mut seen = std::collections::HashSet::new();
            for page in 1..=MAX_RULE_PAGES {
                let path =
                    format!("api/v2/automations/{ty}/rules?page={page}&per_page={RULES_PER_PAGE}");
                let a = self
                    .client
                    .request(Method::GET, &path, None, "list automation rules")
                    .await?;
                let rules: Vec<Value> = match a.body {
                    Value::Array(r) => r,
                    Value::Object(mut m) => match m.remove("rules") {
                        Some(Value::Array(r)) => r,
                        _ => Vec::new(),
                    },
                    _ => Vec::new(),
                };
                let mut new_on_page = 0;
                for body in rules {
                    let Some(id) = id_text(body.get("id")) else {
                        continue;
                    };
                    if !seen.insert(id.clone()) {
                        continue;
                    }
                    new_on_page += 1;
                    let name = body
                        .get("name")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned();
                    let marked = registration::owned_by(&name, marker);
                    let is_recorded = recorded.contains(&rule_ref(ty, &id));
                    if marked || is_recorded {
                        out.push(LiveRule {
                            ty,
                            id,
                            name,
                            marked,
                            recorded: is_recorded,
                            body,
                        });
                    }
                }
                if new_on_page == 0 {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Reads a rule back after writing it and checks that Freshdesk kept what was sent (by
    /// meaning, [`registration::mismatch`]). A rule Freshdesk stores differently would be
    /// rewritten on every sync and reported `repaired` each time; this says so instead, naming
    /// what differs (never the secret).
    async fn read_back(
        &self,
        id: &str,
        want: &registration::DesiredRule,
    ) -> Result<(), PlatformError> {
        let ty = want.ty;
        let path = format!("api/v2/automations/{ty}/rules/{id}");
        let a = self
            .client
            .request(Method::GET, &path, None, "read back automation rule")
            .await?;
        match registration::mismatch(rule_body(&a.body), &want.body) {
            None => Ok(()),
            Some(why) => Err(PlatformError::Rejected {
                status: a.status.as_u16(),
                detail: format!(
                    "Freshdesk stored automation rule {ty}/{id} (`{}`) differently from what was sent: {why}; \
                     every sync would rewrite it, so the sync stops here (see \"What is confirmed, and what \
                     needs a real account\" in docs/integrations/freshdesk.md)",
                    want.name
                ),
            }),
        }
    }

    /// Deletes a rule; `false` when it was already gone.
    async fn delete_rule(&self, ty: u8, id: &str) -> Result<bool, PlatformError> {
        let path = format!("api/v2/automations/{ty}/rules/{id}");
        match self
            .client
            .request(Method::DELETE, &path, None, "delete automation rule")
            .await
        {
            Ok(_) => Ok(true),
            Err(PlatformError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn create_ticket(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let action = "create_ticket";
        let mut body = Map::new();
        p.put_str(&mut body, &["subject", "description"]);
        if p.string("subject").is_some_and(|s| s.trim().is_empty()) {
            return Err(PlatformError::Invalid(format!(
                "{action}: `subject` is empty"
            )));
        }
        p.put_str(
            &mut body,
            &[
                "email",
                "phone",
                "name",
                "facebook_id",
                "twitter_id",
                "unique_external_id",
                "type",
                "due_by",
                "fr_due_by",
            ],
        );
        if let Some(e) = p.string("email") {
            check_email(action, "email", &e)?;
        }
        if p.string("phone").is_some()
            && p.string("email").is_none()
            && p.string("name").is_none()
            && p.raw("requester_id").is_none()
        {
            return Err(PlatformError::Invalid(format!(
                "{action}: a requester given by `phone` without `email` needs `name`"
            )));
        }
        p.put_int(
            &mut body,
            &[
                "requester_id",
                "responder_id",
                "group_id",
                "company_id",
                "product_id",
            ],
        )?;
        let status = p.code("status", STATUS_CODES, true)?;
        body.insert(
            "status".into(),
            json!(status.or(self.default_status).unwrap_or(2)),
        );
        let priority = p.code("priority", PRIORITY_CODES, false)?;
        body.insert(
            "priority".into(),
            json!(priority.or(self.default_priority).unwrap_or(1)),
        );
        if let Some(s) = p.code("source", SOURCE_CODES, false)? {
            body.insert("source".into(), json!(s));
        }
        if self.auto_assign && !body.contains_key("responder_id") && !body.contains_key("group_id")
        {
            if let Some(g) = self.default_group_id {
                body.insert("group_id".into(), json!(g));
            }
            if let Some(r) = self.default_responder_id {
                body.insert("responder_id".into(), json!(r));
            }
        }
        p.put_list(&mut body, &["tags", "cc_emails"]);
        if let Some(cc) = p.strings("cc_emails") {
            for e in &cc {
                check_email(action, "cc_emails", e)?;
            }
        }
        p.put_object(&mut body, &["custom_fields"]);
        let a = self
            .client
            .request(
                Method::POST,
                "api/v2/tickets",
                Some(&Value::Object(body)),
                action,
            )
            .await?;
        let t = &a.body;
        let id = t.get("id").cloned().unwrap_or(Value::Null);
        Ok(json!({
            "id": id,
            "url": self.ticket_url(&id),
            "status": t.get("status").cloned().unwrap_or(Value::Null),
            "priority": t.get("priority").cloned().unwrap_or(Value::Null),
            "requester_id": t.get("requester_id").cloned().unwrap_or(Value::Null),
            "created_at": t.get("created_at").cloned().unwrap_or(Value::Null),
        }))
    }

    /// The body of a ticket update (`update_ticket`, `assign_ticket`, `change_status`).
    fn update_body(
        &self,
        action: &str,
        p: &Params<'_>,
    ) -> Result<Map<String, Value>, PlatformError> {
        let mut body = Map::new();
        p.put_str(
            &mut body,
            &["subject", "description", "type", "due_by", "fr_due_by"],
        );
        p.put_int(
            &mut body,
            &["responder_id", "group_id", "company_id", "product_id"],
        )?;
        if let Some(s) = p.code("status", STATUS_CODES, true)? {
            body.insert("status".into(), json!(s));
        }
        if let Some(s) = p.code("priority", PRIORITY_CODES, false)? {
            body.insert("priority".into(), json!(s));
        }
        if let Some(s) = p.code("source", SOURCE_CODES, false)? {
            body.insert("source".into(), json!(s));
        }
        p.put_list(&mut body, &["tags"]);
        p.put_object(&mut body, &["custom_fields"]);
        if body.is_empty() {
            return Err(PlatformError::Invalid(format!(
                "{action}: nothing to change (give at least one field besides `ticket_id`)"
            )));
        }
        Ok(body)
    }

    async fn update(&self, action: &str, p: &Params<'_>) -> Result<Value, PlatformError> {
        let ticket = p.ticket_id(action)?;
        let body = self.update_body(action, p)?;
        let a = self
            .client
            .request(
                Method::PUT,
                &format!("api/v2/tickets/{ticket}"),
                Some(&Value::Object(body)),
                action,
            )
            .await?;
        Ok(update_result(action, ticket, &a.body))
    }

    /// `Some((ticket id, properties))` when `call` can go into a bulk update, `None` when it
    /// must go alone, an error when its parameters are wrong.
    fn bulk_candidate(&self, call: &ActionCall) -> Result<Option<BulkItem>, PlatformError> {
        if !self.batchable(&call.action) {
            return Ok(None);
        }
        let Some(spec) = super::DESCRIPTOR.action(&call.action) else {
            return Ok(None);
        };
        let p = check_params(spec, &call.parameters)?;
        let ticket = p.ticket_id(spec.name)?;
        let body = self.update_body(spec.name, &p)?;
        if body.keys().all(|k| BULK_PROPERTIES.contains(&k.as_str())) {
            Ok(Some((ticket, body)))
        } else {
            Ok(None)
        }
    }

    /// One `tickets/bulk_update` for `members` (call index, ticket id), polling its job; one
    /// result per member, in order.
    async fn bulk_update(
        &self,
        action: &str,
        members: &[(usize, i64)],
        props: &Map<String, Value>,
    ) -> Vec<Result<ActionOutput, PlatformError>> {
        let ids: Vec<i64> = members.iter().map(|(_, t)| *t).collect();
        let all = |e: PlatformError| ids.iter().map(|_| Err(e.clone())).collect::<Vec<_>>();
        let body = json!({ "bulk_action": { "ids": ids, "properties": props } });
        let a = match self
            .client
            .request(
                Method::POST,
                "api/v2/tickets/bulk_update",
                Some(&body),
                "bulk_update",
            )
            .await
        {
            Ok(a) => a,
            Err(e) => return all(e),
        };
        let Some(job) = id_text(a.body.get("job_id")) else {
            return all(PlatformError::Rejected {
                status: a.status.as_u16(),
                detail: "bulk_update: the answer has no `job_id`".into(),
            });
        };
        let mut job_answer = None;
        for attempt in 0..JOB_POLL_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(self.job_poll_interval).await;
            }
            let j = match self
                .client
                .request(Method::GET, &format!("api/v2/jobs/{job}"), None, "bulk job")
                .await
            {
                Ok(j) => j.body,
                Err(e) => return all(e),
            };
            let status = j
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if job_done(&status) {
                job_answer = Some((status, j));
                break;
            }
        }
        let Some((status, job_body)) = job_answer else {
            return all(PlatformError::Transient {
                detail: format!(
                    "bulk_update: job {job} still running after {JOB_POLL_ATTEMPTS} polls"
                ),
                retry_after: None,
            });
        };
        let data: Vec<&Value> = job_body
            .get("data")
            .and_then(Value::as_array)
            .map(|d| d.iter().collect())
            .unwrap_or_default();
        ids.iter()
            .map(|t| {
                let entry = data
                    .iter()
                    .find(|d| d.get("id").and_then(int_value) == Some(*t));
                let ok = match entry {
                    Some(d) => truthy(d.get("success")),
                    // No entry for the ticket: fine only for a job that says it completed and
                    // lists nothing; otherwise the outcome is unknown and the update (idempotent:
                    // it sets properties) is retried.
                    None if data.is_empty() && job_succeeded(&status) => true,
                    None => {
                        return Err(PlatformError::Transient {
                            detail: format!(
                                "bulk_update: job {job} ended `{status}` without a result for ticket {t}"
                            ),
                            retry_after: None,
                        });
                    }
                };
                if ok {
                    Ok(ActionOutput {
                        result: update_result(action, *t, &Value::Object(props.clone())),
                    })
                } else {
                    let why = entry
                        .and_then(|d| d.get("message").or_else(|| d.get("errors")))
                        .map(|m| match m {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .unwrap_or_else(|| format!("the job ended `{status}`"));
                    Err(PlatformError::Rejected {
                        status: 200,
                        detail: http::excerpt(&format!("bulk_update of ticket {t}: {why}")),
                    })
                }
            })
            .collect()
    }

    async fn add_note(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let action = "add_note";
        let ticket = p.ticket_id(action)?;
        let mut body = Map::new();
        p.put_str(&mut body, &["body"]);
        check_nonempty(action, "body", p)?;
        body.insert("private".into(), json!(p.bool("private").unwrap_or(true)));
        if let Some(i) = p.bool("incoming") {
            body.insert("incoming".into(), json!(i));
        }
        p.put_list(&mut body, &["notify_emails"]);
        for e in p.strings("notify_emails").unwrap_or_default() {
            check_email(action, "notify_emails", &e)?;
        }
        p.put_int(&mut body, &["user_id"])?;
        let a = self
            .client
            .request(
                Method::POST,
                &format!("api/v2/tickets/{ticket}/notes"),
                Some(&Value::Object(body)),
                action,
            )
            .await?;
        let n = &a.body;
        Ok(json!({
            "id": n.get("id").cloned().unwrap_or(Value::Null),
            "ticket_id": n.get("ticket_id").cloned().unwrap_or(json!(ticket)),
            "private": n.get("private").cloned().unwrap_or(Value::Null),
            "created_at": n.get("created_at").cloned().unwrap_or(Value::Null),
        }))
    }

    async fn add_reply(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let action = "add_reply";
        let ticket = p.ticket_id(action)?;
        let mut body = Map::new();
        p.put_str(&mut body, &["body", "from_email"]);
        check_nonempty(action, "body", p)?;
        p.put_list(&mut body, &["cc_emails", "bcc_emails"]);
        for key in ["cc_emails", "bcc_emails"] {
            for e in p.strings(key).unwrap_or_default() {
                check_email(action, key, &e)?;
            }
        }
        if let Some(e) = p.string("from_email") {
            check_email(action, "from_email", &e)?;
        }
        p.put_int(&mut body, &["user_id"])?;
        let a = self
            .client
            .request(
                Method::POST,
                &format!("api/v2/tickets/{ticket}/reply"),
                Some(&Value::Object(body)),
                action,
            )
            .await?;
        let r = &a.body;
        Ok(json!({
            "id": r.get("id").cloned().unwrap_or(Value::Null),
            "ticket_id": r.get("ticket_id").cloned().unwrap_or(json!(ticket)),
            "created_at": r.get("created_at").cloned().unwrap_or(Value::Null),
        }))
    }

    async fn add_time_entry(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let action = "add_time_entry";
        let ticket = p.ticket_id(action)?;
        let mut body = Map::new();
        if let Some(t) = p.string("time_spent") {
            if !is_hh_mm(&t) {
                return Err(PlatformError::Invalid(format!(
                    "{action}: `time_spent` must be `hh:mm` (e.g. \"01:30\"), got {t:?}"
                )));
            }
            body.insert("time_spent".into(), json!(t.trim()));
        }
        p.put_str(&mut body, &["note", "executed_at", "start_time"]);
        for key in ["billable", "timer_running"] {
            if let Some(b) = p.bool(key) {
                body.insert(key.into(), json!(b));
            }
        }
        if p.bool("timer_running") == Some(false) && p.string("start_time").is_some() {
            return Err(PlatformError::Invalid(format!(
                "{action}: `start_time` is not allowed with `timer_running = false`"
            )));
        }
        p.put_int(&mut body, &["agent_id"])?;
        let a = self
            .client
            .request(
                Method::POST,
                &format!("api/v2/tickets/{ticket}/time_entries"),
                Some(&Value::Object(body)),
                action,
            )
            .await?;
        let t = &a.body;
        Ok(json!({
            "id": t.get("id").cloned().unwrap_or(Value::Null),
            "time_spent": t.get("time_spent").cloned().unwrap_or(Value::Null),
            "timer_running": t.get("timer_running").cloned().unwrap_or(Value::Null),
            "agent_id": t.get("agent_id").cloned().unwrap_or(Value::Null),
        }))
    }

    /// The contact whose primary email is `email`, if any.
    async fn contact_by_email(&self, email: &str) -> Result<Option<Value>, PlatformError> {
        let path = format!(
            "api/v2/contacts?email={}",
            crate::platforms::http::percent_encode(email, b"")
        );
        let a = self
            .client
            .request(Method::GET, &path, None, "create_contact: look-up by email")
            .await?;
        Ok(a.body.as_array().and_then(|found| {
            found
                .iter()
                .find(|c| {
                    c.get("email")
                        .and_then(Value::as_str)
                        .is_some_and(|e| e.eq_ignore_ascii_case(email))
                })
                .cloned()
        }))
    }

    async fn create_contact(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let action = "create_contact";
        check_nonempty(action, "name", p)?;
        if let Some(e) = p.string("email") {
            check_email(action, "email", &e)?;
        }
        let mut body = Map::new();
        p.put_str(
            &mut body,
            &[
                "name",
                "email",
                "phone",
                "mobile",
                "twitter_id",
                "unique_external_id",
                "job_title",
                "description",
                "language",
                "time_zone",
            ],
        );
        p.put_int(&mut body, &["company_id"])?;
        p.put_list(&mut body, &["tags"]);
        p.put_object(&mut body, &["custom_fields"]);
        let sent = self
            .client
            .request(
                Method::POST,
                "api/v2/contacts",
                Some(&Value::Object(body)),
                action,
            )
            .await;
        let c = match (sent, p.string("email")) {
            (Ok(a), _) => a.body,
            // The answer was lost: a contact's email is unique in Freshdesk, and contacts are
            // filtered by it (`GET /api/v2/contacts?email=`, not the search index): found, it
            // was created; not found, nothing was (and a late create would make a second one
            // refused as a duplicate email, never a second contact).
            (Err(e @ PlatformError::Transient { .. }), Some(email)) => {
                match self.contact_by_email(&email).await {
                    Ok(Some(found)) => found,
                    Ok(None) => {
                        return Err(PlatformError::NotPerformed {
                            detail: format!("{e}; no contact has this email, so none was created"),
                        });
                    }
                    Err(_) => return Err(e),
                }
            }
            (Err(e), _) => return Err(e),
        };
        let c = &c;
        Ok(json!({
            "id": c.get("id").cloned().unwrap_or(Value::Null),
            "name": c.get("name").cloned().unwrap_or(Value::Null),
            "email": c.get("email").cloned().unwrap_or(Value::Null),
            "created_at": c.get("created_at").cloned().unwrap_or(Value::Null),
        }))
    }
}

/// The result of a ticket update, from the ticket Freshdesk returned (or, after a bulk
/// update, the properties that were set).
fn update_result(action: &str, ticket: i64, t: &Value) -> Value {
    let g = |k: &str| t.get(k).cloned().unwrap_or(Value::Null);
    let id = t
        .get("id")
        .filter(|v| v.is_number())
        .cloned()
        .unwrap_or(json!(ticket));
    match action {
        "assign_ticket" => {
            json!({ "id": id, "responder_id": g("responder_id"), "group_id": g("group_id") })
        }
        "change_status" => json!({ "id": id, "status": g("status") }),
        _ => {
            json!({ "id": id, "status": g("status"), "priority": g("priority"), "updated_at": g("updated_at") })
        }
    }
}

fn check_nonempty(action: &str, key: &str, p: &Params<'_>) -> Result<(), PlatformError> {
    if p.string(key).is_none_or(|s| s.trim().is_empty()) {
        return Err(PlatformError::Invalid(format!(
            "{action}: `{key}` is empty"
        )));
    }
    Ok(())
}

/// A plausible address: one `@` with text on both sides, no spaces.
fn check_email(action: &str, key: &str, e: &str) -> Result<(), PlatformError> {
    let e = e.trim();
    let ok = match e.split_once('@') {
        Some((local, host)) => {
            !local.is_empty()
                && host.contains('.')
                && !host.contains('@')
                && !e.contains(char::is_whitespace)
        }
        None => false,
    };
    if ok {
        Ok(())
    } else {
        Err(PlatformError::Invalid(format!(
            "{action}: `{key}` is not an email address: {e:?}"
        )))
    }
}

/// `hh:mm` with minutes below 60.
fn is_hh_mm(s: &str) -> bool {
    let Some((h, m)) = s.trim().split_once(':') else {
        return false;
    };
    !h.is_empty()
        && h.len() <= 4
        && h.chars().all(|c| c.is_ascii_digit())
        && m.len() == 2
        && m.chars().all(|c| c.is_ascii_digit())
        && m.parse::<u8>().is_ok_and(|m| m < 60)
}

/// A numeric code given as a number, a numeric string or a name (case and spaces ignored);
/// with `custom`, numbers of 6 and above (custom statuses) too.
pub(crate) fn code_value(v: &Value, codes: &[(&str, i64)], custom: bool) -> Option<i64> {
    let allowed = |n: i64| codes.iter().any(|(_, c)| *c == n) || (custom && n >= 6);
    match v {
        Value::Number(n) => n.as_i64().filter(|n| allowed(*n)),
        Value::String(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse::<i64>() {
                return Some(n).filter(|n| allowed(*n));
            }
            let key = s.to_ascii_lowercase().replace([' ', '-'], "_");
            codes.iter().find(|(n, _)| *n == key).map(|(_, c)| *c)
        }
        _ => None,
    }
}

fn code_error(codes: &[(&str, i64)], custom: bool, got: &Value) -> String {
    let list: Vec<String> = codes.iter().map(|(n, c)| format!("{c} ({n})")).collect();
    let custom = if custom {
        ", or a custom status number (6 and above)"
    } else {
        ""
    };
    format!("expected one of {}{custom}, got {got}", list.join(", "))
}

/// Checks an action's rendered parameters against its catalogue entry (the shared
/// [`Params`] rules); a code (status, priority, source) is a listed number or name, and `status`
/// may also be a custom status number (6 and above).
fn check_params<'a>(spec: &ActionSpec, v: &'a Value) -> Result<Params<'a>, PlatformError> {
    Params::check_with(spec, v, |ps, v| match ps.ty {
        ParamType::Code(codes) => {
            let custom = ps.name == "status";
            Some(match code_value(v, codes, custom) {
                Some(_) => Ok(()),
                None => Err(code_error(codes, custom, v)),
            })
        }
        _ => None,
    })
}

/// Freshdesk accessors of checked parameters.
trait FreshdeskParams {
    /// A code parameter (already checked), as its number.
    fn code(
        &self,
        name: &str,
        codes: &[(&str, i64)],
        custom: bool,
    ) -> Result<Option<i64>, PlatformError>;
    /// `ticket_id`, a positive integer.
    fn ticket_id(&self, action: &str) -> Result<i64, PlatformError>;
    /// Copies the string parameters `keys` that are present into `body`.
    fn put_str(&self, body: &mut Map<String, Value>, keys: &[&str]);
    /// Copies the integer parameters `keys` that are present into `body`.
    fn put_int(&self, body: &mut Map<String, Value>, keys: &[&str]) -> Result<(), PlatformError>;
    /// Copies the list parameters `keys` that are present into `body`.
    fn put_list(&self, body: &mut Map<String, Value>, keys: &[&str]);
    /// Copies the table parameters `keys` that are present into `body`.
    fn put_object(&self, body: &mut Map<String, Value>, keys: &[&str]);
}

impl FreshdeskParams for Params<'_> {
    fn code(
        &self,
        name: &str,
        codes: &[(&str, i64)],
        custom: bool,
    ) -> Result<Option<i64>, PlatformError> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => code_value(v, codes, custom).map(Some).ok_or_else(|| {
                self.invalid(format_args!(
                    "parameter `{name}`: {}",
                    code_error(codes, custom, v)
                ))
            }),
        }
    }

    fn ticket_id(&self, action: &str) -> Result<i64, PlatformError> {
        self.int("ticket_id").filter(|t| *t > 0).ok_or_else(|| {
            PlatformError::Invalid(format!("{action}: `ticket_id` must be a positive integer"))
        })
    }

    fn put_str(&self, body: &mut Map<String, Value>, keys: &[&str]) {
        for k in keys {
            if let Some(v) = self.string(k) {
                body.insert((*k).into(), Value::String(v));
            }
        }
    }

    fn put_int(&self, body: &mut Map<String, Value>, keys: &[&str]) -> Result<(), PlatformError> {
        for k in keys {
            if self.raw(k).is_some() {
                let n = self
                    .int(k)
                    .ok_or_else(|| self.invalid(format_args!("`{k}` must be an integer")))?;
                body.insert((*k).into(), json!(n));
            }
        }
        Ok(())
    }

    fn put_list(&self, body: &mut Map<String, Value>, keys: &[&str]) {
        for k in keys {
            if let Some(v) = self.strings(k) {
                body.insert((*k).into(), json!(v));
            }
        }
    }

    fn put_object(&self, body: &mut Map<String, Value>, keys: &[&str]) {
        for k in keys {
            if let Some(v @ Value::Object(_)) = self.raw(k) {
                body.insert((*k).into(), v.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_are_normalised() {
        assert_eq!(
            normalize_domain("acme").as_deref(),
            Ok("acme.freshdesk.com")
        );
        assert_eq!(
            normalize_domain(" https://Acme.freshdesk.com/ ").as_deref(),
            Ok("acme.freshdesk.com")
        );
        assert_eq!(
            normalize_domain("support.acme.example").as_deref(),
            Ok("support.acme.example")
        );
        for bad in ["", "acme/api", "a b", "-acme", "acme..com", "user@acme"] {
            assert!(normalize_domain(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn codes_by_name_or_number() {
        assert_eq!(code_value(&json!("Resolved"), STATUS_CODES, true), Some(4));
        assert_eq!(code_value(&json!(" closed "), STATUS_CODES, true), Some(5));
        assert_eq!(code_value(&json!(7), STATUS_CODES, true), Some(7));
        assert_eq!(code_value(&json!("7"), STATUS_CODES, true), Some(7));
        assert_eq!(code_value(&json!(7), PRIORITY_CODES, false), None);
        assert_eq!(code_value(&json!(1), STATUS_CODES, true), None);
        assert_eq!(code_value(&json!("urgent"), PRIORITY_CODES, false), Some(4));
        assert_eq!(
            code_value(&json!("Feedback widget"), SOURCE_CODES, false),
            Some(9)
        );
        assert_eq!(code_value(&json!("highest"), PRIORITY_CODES, false), None);
        assert_eq!(code_value(&json!(true), PRIORITY_CODES, false), None);
    }

    #[test]
    fn small_checks() {
        assert!(is_hh_mm("00:30") && is_hh_mm("12:05") && is_hh_mm(" 1:59 "));
        assert!(!is_hh_mm("1:60") && !is_hh_mm("90") && !is_hh_mm("a:10") && !is_hh_mm(":10"));
        assert!(check_email("a", "email", "jane@example.com").is_ok());
        for bad in [
            "jane",
            "@example.com",
            "jane@",
            "ja ne@example.com",
            "a@b@c.com",
        ] {
            assert!(check_email("a", "email", bad).is_err(), "{bad}");
        }
    }
}
