//! Google Sheets events and their normalisation.
//!
//! Sheets itself sends nothing. Two events exist, each with a JSON shape that supportopsd builds:
//!
//! **`file_changed`**: a Drive push notification on the spreadsheet file. Drive posts an empty
//! body; everything is in `X-Goog-*` headers. The ingress verifies `X-Goog-Channel-Token` against
//! the channel's sealed token, drops that header, and hands over the rest with lower-case names:
//!
//! ```json
//! { "spreadsheet_id": "1AbC…",                 // the integration's spreadsheet (optional)
//!   "received_at": "2026-05-04T09:12:00Z",     // when the ingress received it (optional)
//!   "headers": { "x-goog-channel-id": "…", "x-goog-message-number": "7",
//!                "x-goog-resource-id": "…", "x-goog-resource-state": "update",
//!                "x-goog-resource-uri": "https://www.googleapis.com/drive/v3/files/1AbC…?alt=json",
//!                "x-goog-changed": "content,properties",
//!                "x-goog-channel-expiration": "Tue, 05 May 2026 09:00:00 GMT" } }
//! ```
//!
//! Context: `file` (`id`: spreadsheet id, from `spreadsheet_id` or the resource URI;
//! `resource_id`, `resource_uri`, `resource_state`, `changed` as a list, `message_number` as an
//! integer) and `channel` (`id`, `expiration`). The event id is `<channel id>:<message number>`.
//!
//! **`row_added`**: produced by supportopsd's poller when rows appear below the last known row:
//!
//! ```json
//! { "spreadsheet_id": "1AbC…", "sheet": "Tickets", "sheet_id": 0, "row_number": 42,
//!   "headers": ["Ticket", "Customer"], "values": ["4411", "acme.io"],
//!   "detected_at": "2026-05-04T09:12:00Z", "id": "…optional dedupe key…" }
//! ```
//!
//! Context: `row` (`sheet`, `sheet_id`, `row_number`, `range` in A1 notation, `values`, and
//! `fields`: header → value) and `spreadsheet` (`id`).
//!
//! Neither says who made the change, so the catalogue names no actor (`Actors::Nobody`).

use serde_json::{Map, Value};

use crate::platforms::catalog::fields;
use crate::platforms::{Actors, EventSpec, NormalizeError, Normalized};

/// The two Google Sheets events.
/// Why Sheets events name no actor.
const NO_ACTOR: &str =
    "Drive's change notifications and the row poller do not say who made the change";

pub(crate) static EVENTS: &[EventSpec] = &[
    EventSpec {
        name: "file_changed",
        description: "Drive notified a change to the spreadsheet file (edits are coalesced, about every 3 minutes; \
                      the notification carries no cell data: re-read the range).",
        primary: "file",
        fields: fields![
            "file.id": String,
            "file.resource_id": String,
            "file.resource_uri": String,
            "file.resource_state": String,
            "file.changed": StringList,
            "file.message_number": Integer,
            "channel.id": String,
            "channel.expiration": String,
        ],
        changes: &[],
        deliverable: true,
        actors: Actors::Nobody(NO_ACTOR),
    },
    EventSpec {
        name: "row_added",
        description: "The poller found a new row appended to the watched sheet (rows written by supportopsd itself are included).",
        primary: "row",
        fields: fields![
            "row.sheet": String,
            "row.sheet_id": Integer,
            "row.row_number": Integer,
            "row.range": String,
            "row.values": List,
            "row.fields": Object,
            "spreadsheet.id": String,
        ],
        changes: &[],
        deliverable: true,
        actors: Actors::Nobody(NO_ACTOR),
    },
];

/// Turns the JSON that the ingress (`file_changed`) or the poller (`row_added`) builds into the
/// context objects of `event`.
pub(crate) fn normalize(event: &EventSpec, payload: &Value) -> Result<Normalized, NormalizeError> {
    let root = payload
        .as_object()
        .ok_or_else(|| err("expected an object at the top level of a Google Sheets event"))?;
    match event.name {
        "file_changed" => file_changed(root),
        "row_added" => row_added(root),
        other => Err(err(format!("`{other}` is not a Google Sheets event"))),
    }
}

fn file_changed(root: &Map<String, Value>) -> Result<Normalized, NormalizeError> {
    let headers = root
        .get("headers")
        .and_then(Value::as_object)
        .ok_or_else(|| err("expected an object at `headers`"))?;
    let header = |name: &str| -> Result<Option<&str>, NormalizeError> {
        let found = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v);
        match found {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(err(format!("expected a string at `headers.{name}`"))),
        }
    };
    let state = header("x-goog-resource-state")?
        .ok_or_else(|| err("expected a string at `headers.x-goog-resource-state`"))?;
    let channel_id = header("x-goog-channel-id")?;
    let message_number =
        header("x-goog-message-number")?.and_then(|s| s.trim().parse::<i64>().ok());
    let resource_uri = header("x-goog-resource-uri")?;
    let changed: Vec<Value> = header("x-goog-changed")?
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|k| !k.is_empty())
                .map(|k| Value::String(k.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    let file_id = match root.get("spreadsheet_id") {
        Some(Value::String(s)) => Some(s.clone()),
        None | Some(Value::Null) => resource_uri.and_then(file_id_from_uri),
        Some(_) => return Err(err("expected a string at `spreadsheet_id`")),
    };

    let mut objects = Map::new();
    objects.insert(
        "file".into(),
        obj([
            ("id", opt_str(file_id.as_deref())),
            ("resource_id", opt_str(header("x-goog-resource-id")?)),
            ("resource_uri", opt_str(resource_uri)),
            ("resource_state", Value::String(state.to_owned())),
            ("changed", Value::Array(changed)),
            (
                "message_number",
                message_number.map_or(Value::Null, Value::from),
            ),
        ]),
    );
    objects.insert(
        "channel".into(),
        obj([
            ("id", opt_str(channel_id)),
            ("expiration", opt_str(header("x-goog-channel-expiration")?)),
        ]),
    );
    let id = match (channel_id, message_number) {
        (Some(c), Some(n)) => Some(format!("{c}:{n}")),
        _ => None,
    };
    Ok(Normalized {
        id,
        time: root
            .get("received_at")
            .and_then(Value::as_str)
            .map(str::to_owned),
        objects,
        changes: Map::new(),
        actors: Vec::new(),
    })
}

fn row_added(root: &Map<String, Value>) -> Result<Normalized, NormalizeError> {
    let sheet = root
        .get("sheet")
        .and_then(Value::as_str)
        .ok_or_else(|| err("expected a string at `sheet`"))?;
    let row_number = integer(root.get("row_number"))
        .filter(|n| *n >= 1)
        .ok_or_else(|| err("expected a positive integer at `row_number`"))?;
    let values = match root.get("values") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(err("expected an array at `values`")),
    };
    let headers = match root.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(err("expected an array at `headers`")),
    };
    let mut fields = Map::new();
    for (i, h) in headers.iter().enumerate() {
        let name = match h {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            _ => continue,
        };
        if name.is_empty() || fields.contains_key(&name) {
            continue;
        }
        fields.insert(name, values.get(i).cloned().unwrap_or(Value::Null));
    }
    let width = values.len().max(headers.len());
    let range = a1_row_range(sheet, row_number, width);
    let spreadsheet_id = root.get("spreadsheet_id").and_then(Value::as_str);
    let id = match root.get("id") {
        Some(Value::String(s)) => Some(s.clone()),
        _ => Some(format!(
            "{}:{sheet}:{row_number}",
            spreadsheet_id.unwrap_or_default()
        )),
    };

    let mut objects = Map::new();
    objects.insert(
        "row".into(),
        obj([
            ("sheet", Value::String(sheet.to_owned())),
            (
                "sheet_id",
                integer(root.get("sheet_id")).map_or(Value::Null, Value::from),
            ),
            ("row_number", Value::from(row_number)),
            ("range", Value::String(range)),
            ("values", Value::Array(values)),
            ("fields", Value::Object(fields)),
        ]),
    );
    objects.insert("spreadsheet".into(), obj([("id", opt_str(spreadsheet_id))]));
    Ok(Normalized {
        id,
        time: root
            .get("detected_at")
            .and_then(Value::as_str)
            .map(str::to_owned),
        objects,
        changes: Map::new(),
        actors: Vec::new(),
    })
}

/// The file id in a Drive resource URI (`…/drive/v3/files/<id>?…`).
fn file_id_from_uri(uri: &str) -> Option<String> {
    let rest = uri.split("/files/").nth(1)?;
    let id = rest.split(['?', '/', '#']).next()?;
    (!id.is_empty()).then(|| id.to_owned())
}

/// `Sheet!A42:C42` (the sheet name quoted when needed), or `Sheet!42:42` for an empty row.
pub(crate) fn a1_row_range(sheet: &str, row: i64, width: usize) -> String {
    let name = sheet_ref(sheet);
    if width == 0 {
        format!("{name}!{row}:{row}")
    } else {
        format!("{name}!A{row}:{}{row}", column_letters(width))
    }
}

/// A sheet name as A1 notation writes it: as is when plain, else single-quoted with `'`
/// doubled (`'Bob''s sheet'`).
pub(crate) fn sheet_ref(sheet: &str) -> String {
    let plain = !sheet.is_empty() && sheet.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        sheet.to_owned()
    } else {
        format!("'{}'", sheet.replace('\'', "''"))
    }
}

/// Column letters of a 1-based column number (`1` → `A`, `27` → `AA`).
pub(crate) fn column_letters(mut n: usize) -> String {
    let mut out = Vec::new();
    while n > 0 {
        let rem = (n - 1) % 26;
        out.push(char::from(b'A' + rem as u8));
        n = (n - 1) / 26;
    }
    out.iter().rev().collect()
}

fn integer(v: Option<&Value>) -> Option<i64> {
    match v {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
}

fn opt_str(s: Option<&str>) -> Value {
    s.map_or(Value::Null, |s| Value::String(s.to_owned()))
}

fn obj<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

fn err(msg: impl Into<String>) -> NormalizeError {
    NormalizeError(msg.into())
}
