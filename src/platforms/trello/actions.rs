//! Trello actions: the card operations rules can perform (REST API 1, `https://api.trello.com/1`).
//!
//! Parameter names are snake_case versions of Trello's own (`idList` → `id_list`).
//!
//! One row per parameter and result field (the row syntax is in [`crate::platforms::catalog`]);
//! each action's request code is in [`super::connector`].

use crate::platforms::catalog::{fields, param, params};
use crate::platforms::{ActionSpec, FieldSpec, ParamSpec, Resend};

/// Trello's label colours.
const COLORS: &[&str] = &[
    "green", "yellow", "orange", "red", "purple", "blue", "sky", "lime", "pink", "black",
];

const ID_CARD: ParamSpec =
    param!("id_card": String, required, "Id or short link of the card (e.g. `{{ card.id }}`).");
const POS: ParamSpec =
    param!("pos": String, optional, "Position: `top`, `bottom` or a positive number.");

const CARD_RESULT: &[FieldSpec] = fields![
    "id": String,
    "short_link": String,
    "url": String,
    "name": String,
    "id_short": Integer,
    "id_list": String,
    "id_board": String,
];

/// Every Trello action.
pub(crate) static ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "create_card",
        description: "Create a card in a list (`POST /1/cards`).",
        params: params![
            "id_list": String, optional, "List to create the card in; defaults to `[config] default_list`.";
            "name": String, required, "Card title.";
            "desc": String, optional, "Card description (Markdown).";
            POS;
            "due": String, optional, "Due date, RFC 3339.";
            "start": String, optional, "Start date, RFC 3339.";
            "due_complete": Bool, optional, "Whether the due date is already marked complete.";
            "id_members": StringList, optional, "Member ids to add to the card.";
            "id_labels": StringList, optional, "Ids of existing board labels to put on the card.";
            "url_source": String, optional, "A URL to attach to the card.";
        ],
        require_one_of: &[],
        result: CARD_RESULT,
    },
    ActionSpec {
        name: "update_card",
        description: "Change fields of a card (`PUT /1/cards/{id}`); only the parameters given are sent.",
        params: params![
            ID_CARD;
            "name": String, optional, "New title.";
            "desc": String, optional, "New description (Markdown).";
            "closed": Bool, optional, "`true` archives the card, `false` restores it.";
            "due": String, optional, "New due date, RFC 3339.";
            "start": String, optional, "New start date, RFC 3339.";
            "due_complete": Bool, optional, "Mark the due date complete or not.";
            "id_members": StringList, optional, "Replace the card's members with these member ids.";
            "id_labels": StringList, optional, "Replace the card's labels with these label ids.";
            POS;
        ],
        require_one_of: &[&[
            "name",
            "desc",
            "closed",
            "due",
            "start",
            "due_complete",
            "id_members",
            "id_labels",
            "pos",
        ]],
        result: CARD_RESULT,
    },
    ActionSpec {
        name: "move_card",
        description: "Move a card to another list, optionally on another board (`PUT /1/cards/{id}` with `idList`).",
        params: params![
            ID_CARD;
            "id_list": String, required, "Destination list id.";
            "id_board": String, optional, "Destination board id, when the list is on another board.";
            POS;
        ],
        require_one_of: &[],
        result: CARD_RESULT,
    },
    ActionSpec {
        name: "add_comment",
        description: "Comment on a card (`POST /1/cards/{id}/actions/comments`).",
        params: params![
            ID_CARD;
            "text": String, required, "Comment text (Markdown).";
        ],
        require_one_of: &[],
        result: fields!["id": String, "date": Timestamp, "id_card": String],
    },
    ActionSpec {
        name: "add_checklist",
        description: "Add a checklist to a card (`POST /1/checklists`), then one check item per entry of `items`.",
        params: params![
            ID_CARD;
            "name": String, optional, "Checklist title (Trello's default is \"Checklist\").";
            POS;
            "items": StringList, optional, "Check item names, created in order (`POST /1/checklists/{id}/checkItems`).";
            "checked": Bool, optional, "Create the items already checked (default `false`).";
            "id_checklist_source": String, optional, "Copy the items of this existing checklist.";
        ],
        require_one_of: &[],
        result: fields![
            "id": String,
            "name": String,
            "id_card": String,
            "check_item_ids": StringList,
        ],
    },
    ActionSpec {
        name: "add_label",
        description: "Put a label on a card: an existing board label by id (`POST /1/cards/{id}/idLabels`), \
                      or a new one by colour and name (`POST /1/cards/{id}/labels`).",
        params: params![
            ID_CARD;
            "id_label": String, optional, "Id of an existing label of the card's board.";
            "color": Enum(COLORS), optional, "Colour of a new board label to create and add.";
            "name": String, optional, "Name of the new label (with `color`).";
        ],
        require_one_of: &[&["id_label", "color"]],
        result: fields!["id_labels": StringList, "id": String],
    },
];

/// How each creating action may be sent again (see [`Resend`]). Trello has no idempotency
/// key and no look-up by a value we could set that is cheap (a card search is a full-text
/// index, eventually consistent), so an uncertain create is dead-lettered.
pub(crate) static RESEND: &[(&str, Resend)] = &[
    (
        "create_card",
        Resend::Duplicates {
            check: "the list for a card with this name",
        },
    ),
    (
        "add_comment",
        Resend::Duplicates {
            check: "the card's activity for this comment",
        },
    ),
    (
        "add_checklist",
        Resend::Duplicates {
            check: "the card's checklists (a partial one may exist: delete it or complete it)",
        },
    ),
    (
        "add_label",
        Resend::Duplicates {
            check: "the card's labels (and the board's labels, when a new one was created)",
        },
    ),
];
