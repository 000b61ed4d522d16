//! Trello webhook events and their normalisation.
//!
//! A board webhook receives every action on the board as
//! `{ "action": { "id", "idMemberCreator", "type", "date", "data": {…}, "memberCreator": {…},
//! "appCreator", "display" }, "model": {…}, "webhook": {…} }`. The event name is `action.type`.
//! A card move is an `updateCard` whose `data` carries `listBefore`/`listAfter` and `old.idList`.
//!
//! Context objects (keys are snake_case versions of Trello's own names):
//!
//! - `card`: `id`, `name`, `id_short`, `short_link`, `url` (built from the short link),
//!   `id_list`, `list` (`{id, name}` of the card's current list), `desc`, `closed`, `due`,
//!   `due_complete`, `pos`. Trello only sends what the action touched, so unsent fields are `null`.
//! - `board`, `list`, `list_before`, `list_after`, `board_source`: `{id, name}` (+ `short_link` on boards).
//! - `member_creator`: `{id, username, full_name}`: who performed the action (also the actor).
//! - `comment` (`commentCard`), `label`, `checklist`, `check_item`, `member`: the action's subject.
//!
//! `changes` comes from `data.old` (previous values) against the card's new values, plus
//! `list: {from: {id, name}, to: {id, name}}` for moves.

use serde_json::{Map, Value};

use crate::platforms::{Actors, EventSpec, NormalizeError, Normalized};
use crate::rules::ValueType;

use crate::platforms::catalog::fields;
use ValueType::{Bool, Integer, Number, Object, String as Str, Timestamp};

/// The card, board and member fields every card event carries, then the fields given
/// (`"path": Type`, as in `fields!`).
macro_rules! card_fields {
    ($($path:tt : $ty:ident),* $(,)?) => {
        fields![
            "card.id": String,
            "card.name": String,
            "card.id_short": Integer,
            "card.short_link": String,
            "card.url": String,
            "board.id": String,
            "board.name": String,
            "board.short_link": String,
            "member_creator.id": String,
            "member_creator.username": String,
            "member_creator.full_name": String,
            $($path: $ty,)*
        ]
    };
}

/// Every Trello action type supportopsd catalogues, as delivered to a board webhook.
/// Every Trello action names who performed it (`action.idMemberCreator`, normalised as
/// `member_creator.id`).
const CREATOR: Actors = Actors::Each(&["member_creator.id"]);

pub(crate) static EVENTS: &[EventSpec] = &[
    EventSpec {
        name: "createCard",
        description: "A card was created on a watched board.",
        primary: "card",
        fields: card_fields!["list.id": String, "list.name": String],
        changes: &[],
        deliverable: true,
        actors: CREATOR,
    },
    EventSpec {
        name: "updateCard",
        description: "A card was edited (name, description, due date, archived, position) or moved between lists.",
        primary: "card",
        fields: card_fields![
            "card.id_list": String,
            "card.list": Object,
            "card.desc": String,
            "card.closed": Bool,
            "card.due": Timestamp,
            "card.due_complete": Bool,
            "card.pos": Number,
            "list.id": String,
            "list.name": String,
            "list_before.id": String,
            "list_before.name": String,
            "list_after.id": String,
            "list_after.name": String,
        ],
        changes: &[
            "name",
            "desc",
            "id_list",
            "list",
            "closed",
            "due",
            "due_complete",
            "pos",
        ],
        deliverable: true,
        actors: CREATOR,
    },
    EventSpec {
        name: "commentCard",
        description: "A comment was added to a card.",
        primary: "comment",
        fields: card_fields![
            "comment.id": String,
            "comment.text": String,
            "list.id": String,
            "list.name": String,
        ],
        changes: &[],
        deliverable: true,
        actors: CREATOR,
    },
    EventSpec {
        name: "addLabelToCard",
        description: "A label was put on a card.",
        primary: "card",
        fields: card_fields![
            "label.id": String,
            "label.name": String,
            "label.color": String,
        ],
        changes: &[],
        deliverable: true,
        actors: CREATOR,
    },
    EventSpec {
        name: "removeLabelFromCard",
        description: "A label was taken off a card.",
        primary: "card",
        fields: card_fields![
            "label.id": String,
            "label.name": String,
            "label.color": String,
        ],
        changes: &[],
        deliverable: true,
        actors: CREATOR,
    },
    EventSpec {
        name: "addChecklistToCard",
        description: "A checklist was added to a card.",
        primary: "card",
        fields: card_fields!["checklist.id": String, "checklist.name": String],
        changes: &[],
        deliverable: true,
        actors: CREATOR,
    },
    EventSpec {
        name: "updateCheckItemStateOnCard",
        description: "A checklist item was ticked or unticked (`state` is `complete` or `incomplete`).",
        primary: "check_item",
        fields: card_fields![
            "check_item.id": String,
            "check_item.name": String,
            "check_item.state": String,
            "checklist.id": String,
            "checklist.name": String,
        ],
        changes: &[],
        deliverable: true,
        actors: CREATOR,
    },
    EventSpec {
        name: "addMemberToCard",
        description: "A member was added to a card.",
        primary: "card",
        fields: card_fields!["member.id": String, "member.name": String],
        changes: &[],
        deliverable: true,
        actors: CREATOR,
    },
    EventSpec {
        name: "moveCardToBoard",
        description: "A card arrived from another board (`board` is the destination, `board_source` the origin).",
        primary: "card",
        fields: card_fields![
            "list.id": String,
            "list.name": String,
            "board_source.id": String,
            "board_source.name": String,
        ],
        changes: &[],
        deliverable: true,
        actors: CREATOR,
    },
    EventSpec {
        name: "deleteCard",
        description: "A card was deleted (only its id, short id and short link remain).",
        primary: "card",
        fields: card_fields!["list.id": String, "list.name": String],
        changes: &[],
        deliverable: true,
        actors: CREATOR,
    },
    EventSpec {
        name: "createList",
        description: "A list was created on a watched board.",
        primary: "list",
        fields: fields![
            "list.id": String,
            "list.name": String,
            "board.id": String,
            "board.name": String,
            "board.short_link": String,
            "member_creator.id": String,
            "member_creator.username": String,
            "member_creator.full_name": String,
        ],
        changes: &[],
        deliverable: true,
        actors: CREATOR,
    },
];

/// Card fields Trello reports under `data.old`, with their context name and type.
const CARD_CHANGES: &[(&str, &str, ValueType)] = &[
    ("name", "name", Str),
    ("desc", "desc", Str),
    ("idList", "id_list", Str),
    ("closed", "closed", Bool),
    ("due", "due", Timestamp),
    ("dueComplete", "due_complete", Bool),
    ("pos", "pos", Number),
];

/// Turns a Trello webhook body (`{action, model, webhook}`) into the context objects of `event`.
pub(crate) fn normalize(event: &EventSpec, payload: &Value) -> Result<Normalized, NormalizeError> {
    let root = payload
        .as_object()
        .ok_or_else(|| err("expected an object at the top level of a Trello webhook body"))?;
    let action = req_obj(root.get("action"), "action")?;
    let ty = action
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| err("expected a string at `action.type`"))?;
    if ty != event.name {
        return Err(err(format!(
            "the payload is a `{ty}` action, not `{}`",
            event.name
        )));
    }
    let data = req_obj(action.get("data"), "action.data")?;

    let mut objects = Map::new();
    let board = opt_obj(data.get("board"), "action.data.board")?;
    objects.insert("board".into(), board_object(board));
    let list = opt_obj(data.get("list"), "action.data.list")?;
    let list_before = opt_obj(data.get("listBefore"), "action.data.listBefore")?;
    let list_after = opt_obj(data.get("listAfter"), "action.data.listAfter")?;
    // The card's current list: `list` on most actions, `listAfter` on moves.
    let current_list = list.or(list_after);
    objects.insert("list".into(), named(current_list));

    let creator = opt_obj(action.get("memberCreator"), "action.memberCreator")?;
    let creator_id = creator
        .and_then(|m| m.get("id"))
        .or_else(|| action.get("idMemberCreator"));
    objects.insert(
        "member_creator".into(),
        obj([
            ("id", string(creator_id)),
            ("username", string(creator.and_then(|m| m.get("username")))),
            ("full_name", string(creator.and_then(|m| m.get("fullName")))),
        ]),
    );

    let mut changes = Map::new();
    if event.name != "createList" {
        let card = opt_obj(data.get("card"), "action.data.card")?;
        objects.insert("card".into(), card_object(card, current_list));
        if event.name == "updateCard" {
            let old = opt_obj(data.get("old"), "action.data.old")?;
            card_changes(card, old, list_before, list_after, &mut changes);
        }
    }

    match event.name {
        "updateCard" => {
            objects.insert("list_before".into(), named(list_before));
            objects.insert("list_after".into(), named(list_after));
        }
        "commentCard" => {
            objects.insert(
                "comment".into(),
                obj([
                    ("id", string(action.get("id"))),
                    ("text", string(data.get("text"))),
                ]),
            );
        }
        "addLabelToCard" | "removeLabelFromCard" => {
            let label = opt_obj(data.get("label"), "action.data.label")?;
            let mut o = named(label);
            if let Value::Object(m) = &mut o {
                m.insert("color".into(), string(label.and_then(|l| l.get("color"))));
            }
            objects.insert("label".into(), o);
        }
        "addChecklistToCard" => {
            let checklist = opt_obj(data.get("checklist"), "action.data.checklist")?;
            objects.insert("checklist".into(), named(checklist));
        }
        "updateCheckItemStateOnCard" => {
            let checklist = opt_obj(data.get("checklist"), "action.data.checklist")?;
            objects.insert("checklist".into(), named(checklist));
            let item = opt_obj(data.get("checkItem"), "action.data.checkItem")?;
            objects.insert(
                "check_item".into(),
                obj([
                    ("id", string(item.and_then(|i| i.get("id")))),
                    ("name", string(item.and_then(|i| i.get("name")))),
                    ("state", string(item.and_then(|i| i.get("state")))),
                ]),
            );
        }
        "addMemberToCard" => {
            let member = opt_obj(data.get("member"), "action.data.member")?;
            let id = member
                .and_then(|m| m.get("id"))
                .or_else(|| data.get("idMember"));
            objects.insert(
                "member".into(),
                obj([
                    ("id", string(id)),
                    ("name", string(member.and_then(|m| m.get("name")))),
                ]),
            );
        }
        "moveCardToBoard" => {
            let source = opt_obj(data.get("boardSource"), "action.data.boardSource")?;
            objects.insert("board_source".into(), named(source));
        }
        _ => {}
    }

    Ok(Normalized {
        id: action.get("id").and_then(Value::as_str).map(str::to_owned),
        time: action
            .get("date")
            .and_then(Value::as_str)
            .map(str::to_owned),
        actors: event.actors.read(&objects, payload),
        objects,
        changes,
    })
}

fn card_changes(
    card: Option<&Map<String, Value>>,
    old: Option<&Map<String, Value>>,
    list_before: Option<&Map<String, Value>>,
    list_after: Option<&Map<String, Value>>,
    changes: &mut Map<String, Value>,
) {
    if let Some(old) = old {
        for (trello, ours, ty) in CARD_CHANGES {
            if let Some(prev) = old.get(*trello) {
                let now = card.and_then(|c| c.get(*trello));
                changes.insert(
                    (*ours).into(),
                    obj([("from", typed(Some(prev), *ty)), ("to", typed(now, *ty))]),
                );
            }
        }
    }
    if list_before.is_some() || list_after.is_some() {
        changes.insert(
            "list".into(),
            obj([("from", named(list_before)), ("to", named(list_after))]),
        );
    }
}

fn card_object(card: Option<&Map<String, Value>>, list: Option<&Map<String, Value>>) -> Value {
    let get = |k: &str| card.and_then(|c| c.get(k));
    let short_link = string(get("shortLink"));
    let url = match &short_link {
        Value::String(s) if !s.is_empty() => Value::String(format!("https://trello.com/c/{s}")),
        _ => Value::Null,
    };
    let id_list = match get("idList") {
        Some(v) if !v.is_null() => string(Some(v)),
        _ => string(list.and_then(|l| l.get("id"))),
    };
    obj([
        ("id", string(get("id"))),
        ("name", string(get("name"))),
        ("id_short", typed(get("idShort"), Integer)),
        ("short_link", short_link),
        ("url", url),
        ("id_list", id_list),
        (
            "list",
            if list.is_some() {
                named(list)
            } else {
                Value::Null
            },
        ),
        ("desc", string(get("desc"))),
        ("closed", typed(get("closed"), Bool)),
        ("due", typed(get("due"), Timestamp)),
        ("due_complete", typed(get("dueComplete"), Bool)),
        ("pos", typed(get("pos"), Number)),
    ])
}

fn board_object(board: Option<&Map<String, Value>>) -> Value {
    let get = |k: &str| board.and_then(|b| b.get(k));
    obj([
        ("id", string(get("id"))),
        ("name", string(get("name"))),
        ("short_link", string(get("shortLink"))),
    ])
}

/// `{id, name}` of a Trello sub-object (list, board, checklist), `null` fields when absent.
fn named(o: Option<&Map<String, Value>>) -> Value {
    obj([
        ("id", string(o.and_then(|m| m.get("id")))),
        ("name", string(o.and_then(|m| m.get("name")))),
    ])
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
    typed(v, Str)
}

/// Coerces a payload value to the catalogued type, `null` when it does not fit.
fn typed(v: Option<&Value>, ty: ValueType) -> Value {
    match (ty, v) {
        (_, None | Some(Value::Null)) => Value::Null,
        (Str | Timestamp, Some(Value::String(s))) => Value::String(s.clone()),
        (Str, Some(Value::Number(n))) => Value::String(n.to_string()),
        (Integer, Some(Value::Number(n))) => n.as_i64().map_or(Value::Null, Value::from),
        (Integer, Some(Value::String(s))) => {
            s.trim().parse::<i64>().map_or(Value::Null, Value::from)
        }
        (Number, Some(Value::Number(n))) => Value::Number(n.clone()),
        (Number, Some(Value::String(s))) => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Null, Value::Number),
        (Bool, Some(Value::Bool(b))) => Value::Bool(*b),
        (Object, Some(v @ Value::Object(_))) => v.clone(),
        _ => Value::Null,
    }
}
