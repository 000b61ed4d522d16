//! Notion webhook events and their normalisation.
//!
//! Every delivery is one event:
//! `{ "id", "timestamp", "workspace_id", "workspace_name", "subscription_id", "integration_id",
//! "type", "authors": [{id, type}], "accessible_by", "attempt_number", "api_version",
//! "entity": {id, type}, "data": {parent, updated_blocks, updated_properties, page_id…} }`.
//! Bodies are sparse: they name the entity, not its content, which has to be fetched.
//!
//! Context objects:
//!
//! - the primary object, named after the event's entity (`page`, `database`, `data_source`,
//!   `comment`): `id`, plus what the event's `data` says about it (`updated_properties`,
//!   `updated_blocks`, `page_id`);
//! - `entity`: `{id, type}` as sent (`type` may be `block` for linked databases);
//! - `parent`: `{id, type, data_source_id}` from `data.parent` (`null` fields when absent);
//! - `author`: `{id, type}` of the author that caused the event (`person`, `bot` or `agent`;
//!   the first non-bot author when several are aggregated), `authors`: the full list;
//! - `workspace`: `{id, name}`; `delivery`: `{subscription_id, integration_id, attempt_number,
//!   api_version}`; `data`: the raw `data` object.
//!
//! Notion reports no previous values, so `changes` is always empty. The one-off subscription
//! verification body (`{"verification_token": …}`) is not an event and is refused here.

use serde_json::{Map, Value};

use crate::platforms::{Actors, EventSpec, NormalizeError, Normalized};
use crate::rules::ValueType;

use crate::platforms::catalog::fields;
use ValueType::{List, StringList};

/// The primary object's `id`, the fields given (`"path": Type`, as in `fields!`), then the
/// fields every Notion event has.
macro_rules! notion_fields {
    ($primary:literal $(, $path:tt : $ty:ident)* $(,)?) => {
        fields![
            (concat!($primary, ".id")): String,
            $($path: $ty,)*
            "entity.id": String,
            "entity.type": String,
            "parent.id": String,
            "parent.type": String,
            "parent.data_source_id": String,
            "author.id": String,
            "author.type": String,
            "authors": List,
            "workspace.id": String,
            "workspace.name": String,
            "delivery.subscription_id": String,
            "delivery.integration_id": String,
            "delivery.attempt_number": Integer,
            "delivery.api_version": String,
            "data": Object,
        ]
    };
}

/// One event: its name, its primary object, its description, then its own fields
/// (`"path": Type`) after the primary object's `id`.
macro_rules! event {
    ($name:literal, $primary:literal, $desc:literal $(, $path:tt : $ty:ident)* $(,)?) => {
        EventSpec {
            name: $name,
            description: $desc,
            primary: $primary,
            fields: notion_fields!($primary $(, $path: $ty)*),
            changes: &[],
            deliverable: true,
            actors: AUTHORS,
        }
    };
}

/// Who caused a Notion event: its `authors` (several when Notion aggregated edits), the
/// principal `author` first. The event is supportopsd's own only when every author is our bot
/// user, so a person's edit aggregated with ours still runs rules.
const AUTHORS: Actors = Actors::Joint(&["author.id", "authors.*.id"]);

/// Every Notion webhook event type supportopsd catalogues.
pub(crate) static EVENTS: &[EventSpec] = &[
    event!(
        "page.created",
        "page",
        "A page was created (in a data source or under a page)."
    ),
    event!(
        "page.content_updated",
        "page",
        "Blocks of a page changed; `page.updated_blocks` lists them (edits are aggregated).",
        "page.updated_blocks": List,
    ),
    event!(
        "page.properties_updated",
        "page",
        "Properties of a page changed; `page.updated_properties` holds their (URL-encoded) property ids.",
        "page.updated_properties": StringList,
    ),
    event!(
        "page.moved",
        "page",
        "A page was moved; `parent` is its new parent."
    ),
    event!("page.deleted", "page", "A page was moved to the trash."),
    event!(
        "page.undeleted",
        "page",
        "A page was restored from the trash."
    ),
    event!("page.locked", "page", "A page was locked against editing."),
    event!("page.unlocked", "page", "A page was unlocked."),
    event!("database.created", "database", "A database was created."),
    event!(
        "database.moved",
        "database",
        "A database was moved; `parent` is its new parent."
    ),
    event!(
        "database.deleted",
        "database",
        "A database was moved to the trash."
    ),
    event!(
        "database.undeleted",
        "database",
        "A database was restored from the trash."
    ),
    event!(
        "database.content_updated",
        "database",
        "Rows of a database changed (subscriptions on API version 2022-06-28 only; replaced by `data_source.content_updated`).",
        "database.updated_blocks": List,
    ),
    event!(
        "database.schema_updated",
        "database",
        "A database's properties changed (API version 2022-06-28 only; replaced by `data_source.schema_updated`).",
        "database.updated_properties": List,
    ),
    event!(
        "data_source.created",
        "data_source",
        "A data source was added to a database."
    ),
    event!(
        "data_source.content_updated",
        "data_source",
        "Rows of a data source changed (aggregated).",
        "data_source.updated_blocks": List,
    ),
    event!(
        "data_source.moved",
        "data_source",
        "A data source was moved; `parent` is its new database."
    ),
    event!(
        "data_source.deleted",
        "data_source",
        "A data source was moved to the trash."
    ),
    event!(
        "data_source.undeleted",
        "data_source",
        "A data source was restored from the trash."
    ),
    event!(
        "data_source.schema_updated",
        "data_source",
        "Properties of a data source were created, changed or deleted (`updated_properties`: `{id, name, action}`).",
        "data_source.updated_properties": List,
    ),
    event!(
        "comment.created",
        "comment",
        "A comment was added; `comment.page_id` is the page it belongs to.",
        "comment.page_id": String,
    ),
    event!(
        "comment.updated",
        "comment",
        "A comment was edited.",
        "comment.page_id": String,
    ),
    event!(
        "comment.deleted",
        "comment",
        "A comment was deleted.",
        "comment.page_id": String,
    ),
];

/// Turns a Notion webhook body into the context objects of `event`.
pub(crate) fn normalize(event: &EventSpec, payload: &Value) -> Result<Normalized, NormalizeError> {
    let root = payload
        .as_object()
        .ok_or_else(|| err("expected an object at the top level of a Notion webhook body"))?;
    let Some(ty) = root.get("type") else {
        if root.contains_key("verification_token") {
            return Err(err(
                "this is Notion's subscription verification request (`verification_token`), not an event",
            ));
        }
        return Err(err("expected a string at `type`"));
    };
    let ty = ty
        .as_str()
        .ok_or_else(|| err("expected a string at `type`"))?;
    if ty != event.name {
        return Err(err(format!(
            "the payload is a `{ty}` event, not `{}`",
            event.name
        )));
    }
    let entity = req_obj(root.get("entity"), "entity")?;
    let data = opt_obj(root.get("data"), "data")?;
    let parent = opt_obj(data.and_then(|d| d.get("parent")), "data.parent")?;
    let authors = match root.get("authors") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(err("expected an array at `authors`")),
    };
    let author = principal_author(&authors);

    let mut primary = Map::new();
    primary.insert("id".into(), string(entity.get("id")));
    let data_get = |k: &str| data.and_then(|d| d.get(k));
    for extra in event.fields {
        let Some(key) = extra
            .path
            .strip_prefix(event.primary)
            .and_then(|rest| rest.strip_prefix('.'))
        else {
            continue;
        };
        if key == "id" {
            continue;
        }
        let value = match extra.ty {
            StringList => string_list(data_get(key)),
            List => list(data_get(key)),
            _ => string(data_get(key)),
        };
        primary.insert(key.into(), value);
    }

    let mut objects = Map::new();
    objects.insert(event.primary.into(), Value::Object(primary));
    objects.insert(
        "entity".into(),
        obj([
            ("id", string(entity.get("id"))),
            ("type", string(entity.get("type"))),
        ]),
    );
    objects.insert(
        "parent".into(),
        obj([
            ("id", string(parent.and_then(|p| p.get("id")))),
            ("type", string(parent.and_then(|p| p.get("type")))),
            (
                "data_source_id",
                string(parent.and_then(|p| p.get("data_source_id"))),
            ),
        ]),
    );
    objects.insert(
        "author".into(),
        obj([
            ("id", string(author.and_then(|a| a.get("id")))),
            ("type", string(author.and_then(|a| a.get("type")))),
        ]),
    );
    objects.insert("authors".into(), Value::Array(authors.clone()));
    objects.insert(
        "workspace".into(),
        obj([
            ("id", string(root.get("workspace_id"))),
            ("name", string(root.get("workspace_name"))),
        ]),
    );
    let attempt = match root.get("attempt_number") {
        Some(Value::Number(n)) => n.as_i64().map_or(Value::Null, Value::from),
        Some(Value::String(s)) => s.trim().parse::<i64>().map_or(Value::Null, Value::from),
        _ => Value::Null,
    };
    objects.insert(
        "delivery".into(),
        obj([
            ("subscription_id", string(root.get("subscription_id"))),
            ("integration_id", string(root.get("integration_id"))),
            ("attempt_number", attempt),
            ("api_version", string(root.get("api_version"))),
        ]),
    );
    objects.insert(
        "data".into(),
        data.map_or_else(|| Value::Object(Map::new()), |d| Value::Object(d.clone())),
    );

    Ok(Normalized {
        id: root.get("id").and_then(Value::as_str).map(str::to_owned),
        time: root
            .get("timestamp")
            .and_then(Value::as_str)
            .map(str::to_owned),
        actors: event.actors.read(&objects, payload),
        objects,
        changes: Map::new(),
    })
}

/// The author a loop guard should look at: the only author, or the first one that is not a
/// bot when several authors were aggregated (so a person's edit mixed with our bot's is kept).
fn principal_author(authors: &[Value]) -> Option<&Map<String, Value>> {
    let objs = || authors.iter().filter_map(Value::as_object);
    objs()
        .find(|a| a.get("type").and_then(Value::as_str) != Some("bot"))
        .or_else(|| objs().next())
}

fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn err(msg: impl Into<String>) -> NormalizeError {
    NormalizeError(msg.into())
}

fn req_obj<'a>(v: Option<&'a Value>, at: &str) -> Result<&'a Map<String, Value>, NormalizeError> {
    v.and_then(Value::as_object)
        .ok_or_else(|| err(format!("expected an object at `{at}`")))
}

/// An optional sub-object: absent or `null` is `None`, anything but an object is an error.
fn opt_obj<'a>(
    v: Option<&'a Value>,
    at: &str,
) -> Result<Option<&'a Map<String, Value>>, NormalizeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(err(format!("expected an object at `{at}`"))),
    }
}

fn string(v: Option<&Value>) -> Value {
    match v {
        Some(Value::String(s)) => Value::String(s.clone()),
        _ => Value::Null,
    }
}

fn string_list(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Array(a)) => Value::Array(
            a.iter()
                .filter_map(Value::as_str)
                .map(|s| Value::String(s.to_owned()))
                .collect(),
        ),
        _ => Value::Null,
    }
}

fn list(v: Option<&Value>) -> Value {
    match v {
        Some(Value::Array(a)) => Value::Array(a.clone()),
        _ => Value::Null,
    }
}
