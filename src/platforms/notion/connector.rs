//! The live Notion connector: `GET /v1/users/me` for checks and the six catalogued actions
//! ([`super::actions`]), every call carrying the pinned `Notion-Version`.
//!
//! | action | calls |
//! |---|---|
//! | `create_page` | `POST /v1/pages` with a `page_id` parent |
//! | `update_page`, `update_database_entry` | `PATCH /v1/pages/{page_id}` |
//! | `create_database_entry` | `POST /v1/pages` with a `data_source_id` parent (2025-09-03 and later; a `database_id` is resolved to its single data source with `GET /v1/databases/{id}`) or a `database_id` parent (2022-06-28) |
//! | `add_comment` | `POST /v1/comments` |
//! | `query_database` | `POST /v1/data_sources/{id}/query` (2022-06-28: `POST /v1/databases/{id}/query`), following `next_cursor` |
//!
//! The version defaults to [`DEFAULT_VERSION`] (the data-source API); `[config] notion_version`
//! pins another. Parameters are checked against the catalogue and property values built and
//! limited ([`super::values`]) before anything is sent: an unknown name, a missing required
//! one, a value of the wrong type or over a Notion limit is [`PlatformError::Invalid`].
//!
//! Webhook subscriptions cannot be created through Notion's API: [`Connector::sync_webhook`]
//! says exactly what to do in Notion's UI, and [`Connector::remove_webhook`] deletes nothing.

use std::sync::Arc;
use std::time::Duration;

use ::http::Method;
use serde_json::{Map, Value, json};

use super::client::{BadToken, NotionClient};
use super::values;
use crate::manifest::Integration;
use crate::platforms::connector::before_create;
use crate::platforms::connector::{
    ActionCall, ActionOutput, ConnectError, Connector, Health, PlatformError, WebhookSync,
    WebhookTarget,
};
use crate::platforms::http;
use crate::platforms::params::{self, Params};
use crate::secrets::ResolveContext;

/// The API base URL unless `[endpoint] base_url` overrides it.
pub const DEFAULT_BASE_URL: &str = "https://api.notion.com/";

/// The `Notion-Version` sent unless `[config] notion_version` pins another: the data-source
/// API (databases split into data sources), the official SDK's default.
pub const DEFAULT_VERSION: &str = "2025-09-03";

/// The first version with data sources (`parent.data_source_id`, `/v1/data_sources/…/query`).
const DATA_SOURCE_VERSION: &str = "2025-09-03";

/// The first version where pages are trashed with `in_trash` rather than `archived`.
const IN_TRASH_VERSION: &str = "2026-03-11";

/// Timeout of one HTTP request (Notion itself gives up after 60 s).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(65);

/// Rows `query_database` collects unless `max_results` says otherwise.
const DEFAULT_MAX_RESULTS: i64 = 100;

/// Most rows one `query_database` collects.
const MAX_RESULTS_CAP: i64 = 10_000;

/// Where Notion lists an integration's settings (its Webhooks tab included).
const INTEGRATIONS_URL: &str = "https://www.notion.so/profile/integrations";

/// Builds the Notion connector of `integration`: resolves `token` (required) and reads
/// `notion_version` and `default_parent_page` from `[config]`.
pub fn connect(
    integration: &Integration,
    ctx: &ResolveContext<'_>,
) -> Result<Arc<dyn Connector>, ConnectError> {
    Ok(Arc::new(connect_notion(integration, ctx)?))
}

/// [`connect`], keeping the Notion type.
pub fn connect_notion(
    integration: &Integration,
    ctx: &ResolveContext<'_>,
) -> Result<NotionConnector, ConnectError> {
    let token = http::credential(integration, "token", ctx)?
        .ok_or_else(|| ConnectError::Missing("token".to_owned()))?;
    let version = match integration.config.get("notion_version") {
        None | Some(Value::Null) => DEFAULT_VERSION.to_owned(),
        Some(Value::String(v)) if super::VERSIONS.contains(&v.trim()) => v.trim().to_owned(),
        Some(other) => {
            return Err(ConnectError::Client(format!(
                "`notion_version` {other} is not one of {}",
                super::VERSIONS.join(", ")
            )));
        }
    };
    let default_parent_page = integration
        .config
        .get("default_parent_page")
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned);
    let client = NotionClient::new(
        http::client(REQUEST_TIMEOUT)?,
        http::base_url(integration, DEFAULT_BASE_URL),
        &token,
        &version,
    )
    .map_err(|e: BadToken| ConnectError::Client(e.to_string()))?;
    Ok(NotionConnector {
        client,
        version,
        default_parent_page,
    })
}

/// The live Notion connector.
#[derive(Debug)]
pub struct NotionConnector {
    client: NotionClient,
    version: String,
    default_parent_page: Option<String>,
}

#[async_trait::async_trait]
impl Connector for NotionConnector {
    async fn probe(
        &self,
        target: &crate::platforms::probe::ProbeTarget,
    ) -> Result<Vec<crate::platforms::probe::Finding>, PlatformError> {
        super::probe::run(
            &self.client,
            &self.version,
            self.default_parent_page.as_deref(),
            target,
        )
        .await
    }

    /// `GET /v1/users/me`: the token's bot user. Its id is what webhook `authors` carry for
    /// changes this integration makes, so it is the identity the loop guard compares.
    async fn check(&self) -> Result<Health, PlatformError> {
        let me = self.client.call(Method::GET, "v1/users/me", None).await?;
        let s = |v: Option<&Value>| {
            v.and_then(Value::as_str)
                .filter(|x| !x.is_empty())
                .map(str::to_owned)
        };
        let id = s(me.get("id"));
        let name = s(me.get("name")).unwrap_or_else(|| "?".into());
        let kind = s(me.get("type")).unwrap_or_else(|| "user".into());
        let workspace = s(me.get("bot").and_then(|b| b.get("workspace_name")))
            .map(|w| format!(" in {w}"))
            .unwrap_or_default();
        Ok(Health {
            detail: format!(
                "authenticated as {kind} {name} ({}){workspace}, Notion-Version {}",
                id.as_deref().unwrap_or("no id"),
                self.version
            ),
            identity: id,
        })
    }

    async fn execute(&self, call: &ActionCall) -> Result<ActionOutput, PlatformError> {
        // What a failure that may have reached the platform becomes for an action that
        // creates something (`RESEND` in actions.rs): never a blind retry.
        let outcome: Result<ActionOutput, PlatformError> = async {
            let spec = params::action_spec(&super::DESCRIPTOR, &call.action)?;
            let p = Params::check(spec, &call.parameters)?;
            let result = match spec.name {
                "create_page" => self.create_page(&p).await?,
                "update_page" => self.update_page(&p, true).await?,
                "update_database_entry" => self.update_page(&p, false).await?,
                "create_database_entry" => self.create_database_entry(&p).await?,
                "add_comment" => self.add_comment(&p).await?,
                "query_database" => self.query_database(&p).await?,
                other => {
                    return Err(PlatformError::Invalid(format!(
                        "the notion connector cannot perform `{other}`"
                    )));
                }
            };
            Ok(ActionOutput { result })
        }
        .await;
        crate::platforms::connector::guard_resend(super::DESCRIPTOR.kind, &call.action, outcome)
    }

    /// Notion has no API for webhook subscriptions: the operator makes one in the
    /// integration's Webhooks tab. This says exactly how.
    async fn sync_webhook(&self, target: &WebhookTarget) -> Result<WebhookSync, PlatformError> {
        Ok(WebhookSync::Manual(self.manual_steps(target)))
    }

    /// Subscriptions are deleted in Notion's UI only; nothing is deleted here.
    async fn remove_webhook(&self, target: &WebhookTarget) -> Result<usize, PlatformError> {
        tracing::info!(
            integration = %target.integration,
            "Notion subscriptions cannot be deleted through the API: delete the one delivering to {} in the integration's Webhooks tab.",
            target.url
        );
        Ok(0)
    }
}

impl NotionConnector {
    /// The pinned `Notion-Version`.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn data_sources(&self) -> bool {
        self.version.as_str() >= DATA_SOURCE_VERSION
    }

    /// What the operator has to do in Notion's UI for `target`.
    pub fn manual_steps(&self, target: &WebhookTarget) -> String {
        let mut events = target.events.clone();
        if events.is_empty() {
            events.push("(none configured: list them in `[webhook] events`)".into());
        }
        let mut text = format!(
            "Notion webhook subscriptions are created in Notion only. Open {INTEGRATIONS_URL}, \
             choose this integration, open its Webhooks tab and click \"+ Create a subscription\". \
             Paste the URL {url} ; choose API version {version} ; tick exactly these events: {events}. \
             Before you click \"Create subscription\", run `supportopsd notion expect-verification {id}`: \
             supportopsd accepts Notion's verification token only inside the window that opens (10 minutes). \
             Notion then posts the token to that URL; `supportopsd notion verification {id}` lists every \
             token received, with when and from where. Compare them with the one Notion shows, confirm it \
             with `supportopsd notion confirm-verification {id} TOKEN_ID`, and back in Notion click \"Verify\", \
             paste it and click \"Verify subscription\". \
             Until a token is confirmed this integration is waiting for verification and its deliveries are refused. \
             The URL cannot be changed after verification: to move it, delete the subscription and \
             create a new one.",
            url = target.url,
            version = self.version,
            events = events.join(", "),
            id = target.integration,
        );
        if !target.url.starts_with("https://") {
            text.push_str(
                " Notion only accepts a public HTTPS URL with a valid certificate: set the daemon's public URL to one.",
            );
        }
        let deprecated: Vec<&str> = target
            .events
            .iter()
            .map(String::as_str)
            .filter(|e| matches!(*e, "database.content_updated" | "database.schema_updated"))
            .collect();
        if self.data_sources() && !deprecated.is_empty() {
            text.push_str(&format!(
                " Note: {} exist only for subscriptions on API version 2022-06-28; on {} use the data_source.* events.",
                deprecated.join(", "),
                self.version
            ));
        }
        text
    }

    async fn create_page(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        let parent = p
            .string("parent_page_id")
            .filter(|s| !s.trim().is_empty())
            .or_else(|| self.default_parent_page.clone())
            .ok_or_else(|| {
                PlatformError::Invalid(
                    "create_page: no `parent_page_id`, and the integration has no `default_parent_page`"
                        .into(),
                )
            })?;
        let parent = notion_id("create_page", "parent_page_id", &parent)?;
        let title = p.string("title").unwrap_or_default();
        if title.trim().is_empty() {
            return Err(PlatformError::Invalid(
                "create_page: `title` is empty".into(),
            ));
        }
        let title =
            values::rich_text(&title, "create_page: `title`").map_err(PlatformError::Invalid)?;
        if p.raw("children").is_some() && p.raw("markdown").is_some() {
            return Err(PlatformError::Invalid(
                "create_page: give `children` or `markdown`, not both".into(),
            ));
        }
        let mut body = Map::new();
        body.insert("parent".into(), json!({ "page_id": parent }));
        body.insert("properties".into(), json!({ "title": { "title": title } }));
        for key in ["children", "icon", "cover"] {
            if let Some(v) = p.raw(key) {
                body.insert(key.into(), v.clone());
            }
        }
        if let Some(md) = p.string("markdown") {
            body.insert("markdown".into(), Value::String(md));
        }
        let body = limited("create_page", body)?;
        let page = self
            .client
            .call(Method::POST, "v1/pages", Some(&body))
            .await?;
        Ok(page_result(&page))
    }

    async fn update_page(&self, p: &Params<'_>, page_action: bool) -> Result<Value, PlatformError> {
        let action = if page_action {
            "update_page"
        } else {
            "update_database_entry"
        };
        let id = notion_id(action, "page_id", &p.string("page_id").unwrap_or_default())?;
        let mut body = Map::new();
        if let Some(m) = p.raw("properties").and_then(Value::as_object) {
            let props = values::properties(m).map_err(|e| invalid(action, &e))?;
            body.insert("properties".into(), Value::Object(props));
        }
        for key in ["icon", "cover"] {
            if let Some(v) = p.raw(key) {
                body.insert(key.into(), v.clone());
            }
        }
        if let Some(t) = p.bool("in_trash") {
            let key = if self.version.as_str() >= IN_TRASH_VERSION {
                "in_trash"
            } else {
                "archived"
            };
            body.insert(key.into(), Value::Bool(t));
        }
        if let Some(l) = p.bool("is_locked") {
            body.insert("is_locked".into(), Value::Bool(l));
        }
        if body.is_empty() {
            return Err(PlatformError::Invalid(format!(
                "{action}: nothing to change (give `properties`, `icon`, `cover` or `in_trash`)"
            )));
        }
        let body = limited(action, body)?;
        let page = self
            .client
            .call(Method::PATCH, &format!("v1/pages/{id}"), Some(&body))
            .await?;
        Ok(page_result(&page))
    }

    async fn create_database_entry(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        const ACTION: &str = "create_database_entry";
        // Resolving the data source is a read: its failure means nothing was created.
        let parent = match self.target(ACTION, p).await.map_err(before_create)? {
            Target::DataSource(id) => json!({ "data_source_id": id }),
            Target::Database(id) => json!({ "database_id": id }),
        };
        let given = p.raw("properties").and_then(Value::as_object);
        let props =
            values::properties(given.unwrap_or(&Map::new())).map_err(|e| invalid(ACTION, &e))?;
        let mut body = Map::new();
        body.insert("parent".into(), parent);
        body.insert("properties".into(), Value::Object(props));
        for key in ["children", "icon", "cover"] {
            if let Some(v) = p.raw(key) {
                body.insert(key.into(), v.clone());
            }
        }
        let body = limited(ACTION, body)?;
        let page = self
            .client
            .call(Method::POST, "v1/pages", Some(&body))
            .await?;
        Ok(page_result(&page))
    }

    async fn add_comment(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        const ACTION: &str = "add_comment";
        let targets: Vec<(&str, String)> = ["page_id", "block_id", "discussion_id"]
            .into_iter()
            .filter_map(|k| p.string(k).filter(|v| !v.trim().is_empty()).map(|v| (k, v)))
            .collect();
        let [(key, id)] = targets.as_slice() else {
            return Err(PlatformError::Invalid(
                "add_comment: give exactly one of `page_id`, `block_id`, `discussion_id`".into(),
            ));
        };
        let id = notion_id(ACTION, key, id)?;
        let rich_text = match (p.string("text"), p.raw("rich_text")) {
            (Some(_), Some(_)) => {
                return Err(PlatformError::Invalid(
                    "add_comment: give `text` or `rich_text`, not both".into(),
                ));
            }
            (Some(t), None) => {
                if t.trim().is_empty() {
                    return Err(PlatformError::Invalid(
                        "add_comment: `text` is empty".into(),
                    ));
                }
                values::rich_text(&t, "add_comment: `text`").map_err(PlatformError::Invalid)?
            }
            (None, Some(r)) => r.clone(),
            (None, None) => {
                return Err(PlatformError::Invalid(
                    "add_comment: needs `text` or `rich_text`".into(),
                ));
            }
        };
        let mut body = Map::new();
        if *key == "discussion_id" {
            body.insert("discussion_id".into(), Value::String(id));
        } else {
            let mut parent = Map::new();
            parent.insert((*key).into(), Value::String(id));
            body.insert("parent".into(), Value::Object(parent));
        }
        body.insert("rich_text".into(), rich_text);
        let body = limited(ACTION, body)?;
        let c = self
            .client
            .call(Method::POST, "v1/comments", Some(&body))
            .await?;
        Ok(json!({
            "id": c.get("id").cloned().unwrap_or(Value::Null),
            "discussion_id": c.get("discussion_id").cloned().unwrap_or(Value::Null),
            "created_time": c.get("created_time").cloned().unwrap_or(Value::Null),
        }))
    }

    async fn query_database(&self, p: &Params<'_>) -> Result<Value, PlatformError> {
        const ACTION: &str = "query_database";
        let page_size = p.int("page_size").unwrap_or(100);
        if !(1..=100).contains(&page_size) {
            return Err(PlatformError::Invalid(format!(
                "query_database: `page_size` {page_size} is not between 1 and 100"
            )));
        }
        let max = p.int("max_results").unwrap_or(DEFAULT_MAX_RESULTS);
        if !(1..=MAX_RESULTS_CAP).contains(&max) {
            return Err(PlatformError::Invalid(format!(
                "query_database: `max_results` {max} is not between 1 and {MAX_RESULTS_CAP}"
            )));
        }
        let mut base = Map::new();
        if let Some(f) = p.raw("filter") {
            base.insert("filter".into(), f.clone());
        }
        if let Some(s) = p.raw("sorts") {
            base.insert("sorts".into(), s.clone());
        }
        // Check the filter and sorts before resolving anything.
        limited(ACTION, base.clone())?;
        let path = match self.target(ACTION, p).await? {
            Target::DataSource(id) => format!("v1/data_sources/{id}/query"),
            Target::Database(id) => format!("v1/databases/{id}/query"),
        };
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        let page_size = usize::try_from(page_size).unwrap_or(100);
        let mut cursor = p.string("start_cursor").filter(|c| !c.is_empty());
        let mut results: Vec<Value> = Vec::new();
        let (has_more, next_cursor) = loop {
            let mut body = base.clone();
            body.insert(
                "page_size".into(),
                Value::from(page_size.min(max - results.len())),
            );
            if let Some(c) = &cursor {
                body.insert("start_cursor".into(), Value::String(c.clone()));
            }
            let a = self
                .client
                .call(Method::POST, &path, Some(&Value::Object(body)))
                .await?;
            let page = a.get("results").and_then(Value::as_array).ok_or_else(|| {
                PlatformError::Rejected {
                    status: 200,
                    detail: format!("POST /{path}: the answer has no `results` list"),
                }
            })?;
            results.extend(page.iter().cloned());
            let more = a.get("has_more").and_then(Value::as_bool) == Some(true);
            let next = a
                .get("next_cursor")
                .and_then(Value::as_str)
                .filter(|c| !c.is_empty())
                .map(str::to_owned);
            match next {
                Some(n) if more && results.len() < max && !page.is_empty() => cursor = Some(n),
                next => break (more && next.is_some(), next.filter(|_| more)),
            }
        };
        let ids: Vec<Value> = results
            .iter()
            .filter_map(|r| r.get("id").cloned())
            .collect();
        Ok(json!({
            "count": results.len(),
            "ids": ids,
            "results": results,
            "has_more": has_more,
            "next_cursor": next_cursor,
        }))
    }

    /// The data source (or, on 2022-06-28, the database) an action addresses. On the
    /// data-source API a `database_id` is resolved with `GET /v1/databases/{id}` to its data
    /// source, which must be the only one.
    async fn target(&self, action: &str, p: &Params<'_>) -> Result<Target, PlatformError> {
        let ds = p.string("data_source_id").filter(|s| !s.trim().is_empty());
        let db = p.string("database_id").filter(|s| !s.trim().is_empty());
        if ds.is_some() && db.is_some() {
            return Err(PlatformError::Invalid(format!(
                "{action}: give `data_source_id` or `database_id`, not both"
            )));
        }
        if !self.data_sources() {
            return match (ds, db) {
                (_, Some(db)) => Ok(Target::Database(notion_id(action, "database_id", &db)?)),
                _ => Err(PlatformError::Invalid(format!(
                    "{action}: `data_source_id` needs Notion-Version {DATA_SOURCE_VERSION} or later (the integration pins {}); give `database_id`",
                    self.version
                ))),
            };
        }
        if let Some(ds) = ds {
            return Ok(Target::DataSource(notion_id(
                action,
                "data_source_id",
                &ds,
            )?));
        }
        let db = notion_id(action, "database_id", &db.unwrap_or_default())?;
        let d = self
            .client
            .call(Method::GET, &format!("v1/databases/{db}"), None)
            .await?;
        let sources: Vec<&str> = d
            .get("data_sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|s| s.get("id").and_then(Value::as_str))
            .collect();
        match sources.as_slice() {
            [one] => Ok(Target::DataSource((*one).to_owned())),
            [] => Err(PlatformError::Rejected {
                status: 200,
                detail: format!("{action}: database {db} has no data source"),
            }),
            many => Err(PlatformError::Invalid(format!(
                "{action}: database {db} has {} data sources ({}); give `data_source_id`",
                many.len(),
                many.join(", ")
            ))),
        }
    }
}

/// What a database action addresses.
#[derive(Debug)]
enum Target {
    DataSource(String),
    Database(String),
}

fn invalid(action: &str, e: &str) -> PlatformError {
    PlatformError::Invalid(format!("{action}: {e}"))
}

/// The body as a value, once within Notion's limits.
fn limited(action: &str, body: Map<String, Value>) -> Result<Value, PlatformError> {
    let body = Value::Object(body);
    values::check_limits(&body).map_err(|e| invalid(action, &e))?;
    Ok(body)
}

/// A Notion id (a UUID, with or without dashes), checked so it can go in a URL path. The
/// refused value is not echoed: a template may have rendered anything into it.
fn notion_id(action: &str, name: &str, v: &str) -> Result<String, PlatformError> {
    let v = v.trim();
    let hex = v.chars().filter(char::is_ascii_hexdigit).count();
    if hex == 32 && v.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        Ok(v.to_owned())
    } else {
        Err(PlatformError::Invalid(format!(
            "{action}: `{name}` is not a Notion id (32 hexadecimal digits, dashes allowed; the value is not repeated here)"
        )))
    }
}

/// The catalogued fields of a page answer.
fn page_result(page: &Map<String, Value>) -> Value {
    let get = |k: &str| page.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "id": get("id"),
        "url": get("url"),
        "created_time": get("created_time"),
        "last_edited_time": get("last_edited_time"),
        "properties": page.get("properties").cloned().unwrap_or_else(|| json!({})),
    })
}
