//! Zendesk actions: one spec per REST call supportopsd makes (Support API v2, JSON bodies
//! wrapped in the resource key, e.g. `{"ticket": {…}}`).
//!
//! Status, priority, type and role are Zendesk's own strings ([`ParamType::Enum`]); ids are
//! integers.

use super::{PRIORITIES, ROLES, STATUSES, TICKET_TYPES};
use crate::platforms::catalog::{field as r, param as p};
use crate::platforms::{ActionSpec, ParamSpec, ParamType};
use crate::rules::ValueType;

const TICKET_ID: ParamSpec = p("ticket_id", ParamType::Integer, true, "Id of the ticket");
const SAFE_UPDATE: ParamSpec = p(
    "safe_update",
    ParamType::Bool,
    false,
    "Fail with a conflict if the ticket changed since `updated_stamp`",
);
const UPDATED_STAMP: ParamSpec = p(
    "updated_stamp",
    ParamType::String,
    false,
    "The ticket's `updated_at` as last seen, for `safe_update`",
);

/// Every Zendesk action.
pub(crate) static ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "create_ticket",
        description: "Create a ticket (POST /api/v2/tickets); retries reuse an Idempotency-Key",
        params: &[
            p("subject", ParamType::String, false, "Subject of the ticket"),
            p(
                "comment",
                ParamType::String,
                true,
                "Body of the first comment (the description)",
            ),
            p(
                "html_comment",
                ParamType::Bool,
                false,
                "Send `comment` as `html_body` instead of plain text",
            ),
            p(
                "public",
                ParamType::Bool,
                false,
                "Whether the first comment is public (default true)",
            ),
            p(
                "requester_id",
                ParamType::Integer,
                false,
                "Requester by user id (default: the authenticated user)",
            ),
            p(
                "requester_email",
                ParamType::String,
                false,
                "Requester by email; a user is created if unknown",
            ),
            p(
                "requester_name",
                ParamType::String,
                false,
                "Name for a requester created from `requester_email`",
            ),
            p(
                "submitter_id",
                ParamType::Integer,
                false,
                "User shown as the submitter",
            ),
            p("assignee_id", ParamType::Integer, false, "Agent to assign"),
            p(
                "group_id",
                ParamType::Integer,
                false,
                "Group to assign (default: config `default_group_id`)",
            ),
            p(
                "organization_id",
                ParamType::Integer,
                false,
                "Organization of the ticket",
            ),
            p("brand_id", ParamType::Integer, false, "Brand of the ticket"),
            p("ticket_form_id", ParamType::Integer, false, "Ticket form"),
            p(
                "status",
                ParamType::Enum(STATUSES),
                false,
                "Status category",
            ),
            p(
                "priority",
                ParamType::Enum(PRIORITIES),
                false,
                "Priority (default: config `default_priority`)",
            ),
            p(
                "type",
                ParamType::Enum(TICKET_TYPES),
                false,
                "Type (default: config `default_type`)",
            ),
            p("tags", ParamType::StringList, false, "Tags"),
            p(
                "external_id",
                ParamType::String,
                false,
                "Id of the ticket in another system",
            ),
            p(
                "due_at",
                ParamType::String,
                false,
                "Due time of a task ticket, RFC 3339",
            ),
            p(
                "custom_fields",
                ParamType::ObjectList,
                false,
                "Custom field values: `[{ id = 123, value = \"…\" }]`",
            ),
        ],
        require_one_of: &[],
        result: &[
            r("id", ValueType::Integer),
            r("url", ValueType::String),
            r("status", ValueType::String),
            r("requester_id", ValueType::Integer),
            r("created_at", ValueType::Timestamp),
        ],
    },
    ActionSpec {
        name: "update_ticket",
        description: "Update any writable ticket fields (PUT /api/v2/tickets/{id})",
        params: &[
            TICKET_ID,
            p("subject", ParamType::String, false, "New subject"),
            p(
                "status",
                ParamType::Enum(STATUSES),
                false,
                "New status category",
            ),
            p(
                "custom_status_id",
                ParamType::Integer,
                false,
                "New custom status (when custom statuses are on)",
            ),
            p(
                "priority",
                ParamType::Enum(PRIORITIES),
                false,
                "New priority",
            ),
            p("type", ParamType::Enum(TICKET_TYPES), false, "New type"),
            p(
                "assignee_id",
                ParamType::Integer,
                false,
                "New assigned agent",
            ),
            p("group_id", ParamType::Integer, false, "New assigned group"),
            p(
                "organization_id",
                ParamType::Integer,
                false,
                "New organization",
            ),
            p("requester_id", ParamType::Integer, false, "New requester"),
            p(
                "tags",
                ParamType::StringList,
                false,
                "Tags (replaces the ticket's tags; see `add_tags` to add)",
            ),
            p(
                "external_id",
                ParamType::String,
                false,
                "Id of the ticket in another system",
            ),
            p(
                "due_at",
                ParamType::String,
                false,
                "Due time of a task ticket, RFC 3339",
            ),
            p(
                "custom_fields",
                ParamType::ObjectList,
                false,
                "Custom field values: `[{ id = 123, value = \"…\" }]`",
            ),
            SAFE_UPDATE,
            UPDATED_STAMP,
        ],
        require_one_of: &[],
        result: &[
            r("id", ValueType::Integer),
            r("status", ValueType::String),
            r("updated_at", ValueType::Timestamp),
        ],
    },
    ActionSpec {
        name: "add_comment",
        description: "Add a public reply or an internal note to a ticket (PUT /api/v2/tickets/{id})",
        params: &[
            TICKET_ID,
            p("body", ParamType::String, false, "Plain-text body"),
            p("html_body", ParamType::String, false, "HTML body"),
            p(
                "public",
                ParamType::Bool,
                false,
                "Public reply (true) or internal note (false); default: config `comments_public`, else false",
            ),
            p(
                "author_id",
                ParamType::Integer,
                false,
                "User the comment is from (default: the authenticated user)",
            ),
        ],
        require_one_of: &[&["body", "html_body"]],
        result: &[
            r("id", ValueType::Integer),
            r("audit_id", ValueType::Integer),
            r("updated_at", ValueType::Timestamp),
        ],
    },
    ActionSpec {
        name: "assign_ticket",
        description: "Assign a ticket to an agent and/or a group (PUT /api/v2/tickets/{id})",
        params: &[
            TICKET_ID,
            p(
                "assignee_id",
                ParamType::Integer,
                false,
                "Agent to assign, by id",
            ),
            p(
                "assignee_email",
                ParamType::String,
                false,
                "Agent to assign, by email",
            ),
            p("group_id", ParamType::Integer, false, "Group to assign"),
        ],
        require_one_of: &[&["assignee_id", "assignee_email", "group_id"]],
        result: &[
            r("id", ValueType::Integer),
            r("assignee_id", ValueType::Integer),
            r("group_id", ValueType::Integer),
        ],
    },
    ActionSpec {
        name: "change_status",
        description: "Set a ticket's status (PUT /api/v2/tickets/{id})",
        params: &[
            TICKET_ID,
            p(
                "status",
                ParamType::Enum(STATUSES),
                false,
                "New status category",
            ),
            p(
                "custom_status_id",
                ParamType::Integer,
                false,
                "New custom status, when custom statuses are on",
            ),
        ],
        require_one_of: &[&["status", "custom_status_id"]],
        result: &[r("id", ValueType::Integer), r("status", ValueType::String)],
    },
    ActionSpec {
        name: "set_priority",
        description: "Set a ticket's priority (PUT /api/v2/tickets/{id})",
        params: &[
            TICKET_ID,
            p(
                "priority",
                ParamType::Enum(PRIORITIES),
                true,
                "New priority",
            ),
        ],
        require_one_of: &[],
        result: &[
            r("id", ValueType::Integer),
            r("priority", ValueType::String),
        ],
    },
    ActionSpec {
        name: "add_tags",
        description: "Add tags to a ticket, keeping the others (PUT /api/v2/tickets/{id}/tags)",
        params: &[
            TICKET_ID,
            p("tags", ParamType::StringList, true, "Tags to add"),
            SAFE_UPDATE,
            UPDATED_STAMP,
        ],
        require_one_of: &[],
        result: &[r("tags", ValueType::StringList)],
    },
    ActionSpec {
        name: "apply_macro",
        description: "Apply a macro: fetch its changes for the ticket (GET /api/v2/tickets/{id}/macros/{macro_id}/apply), then save them (PUT /api/v2/tickets/{id})",
        params: &[
            TICKET_ID,
            p("macro_id", ParamType::Integer, true, "Id of the macro"),
        ],
        require_one_of: &[],
        result: &[
            r("id", ValueType::Integer),
            r("status", ValueType::String),
            r("updated_at", ValueType::Timestamp),
        ],
    },
    ActionSpec {
        name: "create_user",
        description: "Create a user (POST /api/v2/users), or create-or-update with `upsert`",
        params: &[
            p("name", ParamType::String, true, "Full name"),
            p("email", ParamType::String, true, "Primary email"),
            p(
                "role",
                ParamType::Enum(ROLES),
                false,
                "Role (default end-user)",
            ),
            p(
                "organization_id",
                ParamType::Integer,
                false,
                "Organization of the user",
            ),
            p(
                "external_id",
                ParamType::String,
                false,
                "Id of the user in another system",
            ),
            p("phone", ParamType::String, false, "Phone number"),
            p("tags", ParamType::StringList, false, "Tags"),
            p(
                "verified",
                ParamType::Bool,
                false,
                "Mark the email identity verified (no verification email)",
            ),
            p(
                "user_fields",
                ParamType::Object,
                false,
                "Custom user fields by key",
            ),
            p(
                "upsert",
                ParamType::Bool,
                false,
                "Update the user if the email or external id exists (POST /api/v2/users/create_or_update)",
            ),
        ],
        require_one_of: &[],
        result: &[
            r("id", ValueType::Integer),
            r("email", ValueType::String),
            r("url", ValueType::String),
            r("created_at", ValueType::Timestamp),
        ],
    },
];
