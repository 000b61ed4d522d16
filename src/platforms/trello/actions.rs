//! Trello actions: the card operations rules can perform (REST API 1, `https://api.trello.com/1`).
//!
//! Parameter names are snake_case versions of Trello's own (`idList` → `id_list`).

use crate::platforms::catalog::{field as r, param as p};
use crate::platforms::{ActionSpec, FieldSpec, ParamSpec, ParamType};
use crate::rules::ValueType;

/// Trello's label colours.
const COLORS: &[&str] = &[
    "green", "yellow", "orange", "red", "purple", "blue", "sky", "lime", "pink", "black",
];

const ID_CARD: ParamSpec = p(
    "id_card",
    ParamType::String,
    true,
    "Id or short link of the card (e.g. `{{ card.id }}`).",
);
const POS: ParamSpec = p(
    "pos",
    ParamType::String,
    false,
    "Position: `top`, `bottom` or a positive number.",
);

const CARD_RESULT: &[FieldSpec] = &[
    r("id", ValueType::String),
    r("short_link", ValueType::String),
    r("url", ValueType::String),
    r("name", ValueType::String),
    r("id_short", ValueType::Integer),
    r("id_list", ValueType::String),
    r("id_board", ValueType::String),
];

/// Every Trello action.
pub(crate) static ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "create_card",
        description: "Create a card in a list (`POST /1/cards`).",
        params: &[
            p(
                "id_list",
                ParamType::String,
                false,
                "List to create the card in; defaults to `[config] default_list`.",
            ),
            p("name", ParamType::String, true, "Card title."),
            p(
                "desc",
                ParamType::String,
                false,
                "Card description (Markdown).",
            ),
            POS,
            p("due", ParamType::String, false, "Due date, RFC 3339."),
            p("start", ParamType::String, false, "Start date, RFC 3339."),
            p(
                "due_complete",
                ParamType::Bool,
                false,
                "Whether the due date is already marked complete.",
            ),
            p(
                "id_members",
                ParamType::StringList,
                false,
                "Member ids to add to the card.",
            ),
            p(
                "id_labels",
                ParamType::StringList,
                false,
                "Ids of existing board labels to put on the card.",
            ),
            p(
                "url_source",
                ParamType::String,
                false,
                "A URL to attach to the card.",
            ),
        ],
        require_one_of: &[],
        result: CARD_RESULT,
    },
    ActionSpec {
        name: "update_card",
        description: "Change fields of a card (`PUT /1/cards/{id}`); only the parameters given are sent.",
        params: &[
            ID_CARD,
            p("name", ParamType::String, false, "New title."),
            p(
                "desc",
                ParamType::String,
                false,
                "New description (Markdown).",
            ),
            p(
                "closed",
                ParamType::Bool,
                false,
                "`true` archives the card, `false` restores it.",
            ),
            p("due", ParamType::String, false, "New due date, RFC 3339."),
            p(
                "start",
                ParamType::String,
                false,
                "New start date, RFC 3339.",
            ),
            p(
                "due_complete",
                ParamType::Bool,
                false,
                "Mark the due date complete or not.",
            ),
            p(
                "id_members",
                ParamType::StringList,
                false,
                "Replace the card's members with these member ids.",
            ),
            p(
                "id_labels",
                ParamType::StringList,
                false,
                "Replace the card's labels with these label ids.",
            ),
            POS,
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
        params: &[
            ID_CARD,
            p("id_list", ParamType::String, true, "Destination list id."),
            p(
                "id_board",
                ParamType::String,
                false,
                "Destination board id, when the list is on another board.",
            ),
            POS,
        ],
        require_one_of: &[],
        result: CARD_RESULT,
    },
    ActionSpec {
        name: "add_comment",
        description: "Comment on a card (`POST /1/cards/{id}/actions/comments`).",
        params: &[
            ID_CARD,
            p("text", ParamType::String, true, "Comment text (Markdown)."),
        ],
        require_one_of: &[],
        result: &[
            r("id", ValueType::String),
            r("date", ValueType::Timestamp),
            r("id_card", ValueType::String),
        ],
    },
    ActionSpec {
        name: "add_checklist",
        description: "Add a checklist to a card (`POST /1/checklists`), then one check item per entry of `items`.",
        params: &[
            ID_CARD,
            p(
                "name",
                ParamType::String,
                false,
                "Checklist title (Trello's default is \"Checklist\").",
            ),
            POS,
            p(
                "items",
                ParamType::StringList,
                false,
                "Check item names, created in order (`POST /1/checklists/{id}/checkItems`).",
            ),
            p(
                "checked",
                ParamType::Bool,
                false,
                "Create the items already checked (default `false`).",
            ),
            p(
                "id_checklist_source",
                ParamType::String,
                false,
                "Copy the items of this existing checklist.",
            ),
        ],
        require_one_of: &[],
        result: &[
            r("id", ValueType::String),
            r("name", ValueType::String),
            r("id_card", ValueType::String),
            r("check_item_ids", ValueType::StringList),
        ],
    },
    ActionSpec {
        name: "add_label",
        description: "Put a label on a card: an existing board label by id (`POST /1/cards/{id}/idLabels`), \
                      or a new one by colour and name (`POST /1/cards/{id}/labels`).",
        params: &[
            ID_CARD,
            p(
                "id_label",
                ParamType::String,
                false,
                "Id of an existing label of the card's board.",
            ),
            p(
                "color",
                ParamType::Enum(COLORS),
                false,
                "Colour of a new board label to create and add.",
            ),
            p(
                "name",
                ParamType::String,
                false,
                "Name of the new label (with `color`).",
            ),
        ],
        require_one_of: &[&["id_label", "color"]],
        result: &[
            r("id_labels", ValueType::StringList),
            r("id", ValueType::String),
        ],
    },
];
