//! Zendesk actions: one spec per REST call supportopsd makes (Support API v2, JSON bodies
//! wrapped in the resource key, e.g. `{"ticket": {…}}`).
//!
//! Status, priority, type and role are Zendesk's own strings
//! ([`ParamType::Enum`](crate::platforms::ParamType::Enum)); ids are integers.
//!
//! One row per parameter and result field (the row syntax is in [`crate::platforms::catalog`]);
//! each action's request code is in [`super::connector`].

use super::{PRIORITIES, ROLES, STATUSES, TICKET_TYPES};
use crate::platforms::catalog::{fields, param, params};
use crate::platforms::{ActionSpec, ParamSpec, Resend};

const TICKET_ID: ParamSpec = param!("ticket_id": Integer, required, "Id of the ticket");
const SAFE_UPDATE: ParamSpec = param!("safe_update": Bool, optional, "Fail with a conflict if the ticket changed since `updated_stamp`");
const UPDATED_STAMP: ParamSpec = param!("updated_stamp": String, optional, "The ticket's `updated_at` as last seen, for `safe_update`");

/// Every Zendesk action.
pub(crate) static ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "create_ticket",
        description: "Create a ticket (POST /api/v2/tickets); retries reuse an Idempotency-Key",
        params: params![
            "subject": String, optional, "Subject of the ticket";
            "comment": String, required, "Body of the first comment (the description)";
            "html_comment": Bool, optional, "Send `comment` as `html_body` instead of plain text";
            "public": Bool, optional, "Whether the first comment is public (default true)";
            "requester_id": Integer, optional, "Requester by user id (default: the authenticated user)";
            "requester_email": String, optional, "Requester by email; a user is created if unknown";
            "requester_name": String, optional, "Name for a requester created from `requester_email`";
            "submitter_id": Integer, optional, "User shown as the submitter";
            "assignee_id": Integer, optional, "Agent to assign";
            "group_id": Integer, optional, "Group to assign (default: config `default_group_id`)";
            "organization_id": Integer, optional, "Organization of the ticket";
            "brand_id": Integer, optional, "Brand of the ticket";
            "ticket_form_id": Integer, optional, "Ticket form";
            "status": Enum(STATUSES), optional, "Status category";
            "priority": Enum(PRIORITIES), optional, "Priority (default: config `default_priority`)";
            "type": Enum(TICKET_TYPES), optional, "Type (default: config `default_type`)";
            "tags": StringList, optional, "Tags";
            "external_id": String, optional, "Id of the ticket in another system";
            "due_at": String, optional, "Due time of a task ticket, RFC 3339";
            "custom_fields": ObjectList, optional, "Custom field values: `[{ id = 123, value = \"…\" }]`";
        ],
        require_one_of: &[],
        result: fields![
            "id": Integer,
            "url": String,
            "status": String,
            "requester_id": Integer,
            "created_at": Timestamp,
        ],
    },
    ActionSpec {
        name: "update_ticket",
        description: "Update any writable ticket fields (PUT /api/v2/tickets/{id})",
        params: params![
            TICKET_ID;
            "subject": String, optional, "New subject";
            "status": Enum(STATUSES), optional, "New status category";
            "custom_status_id": Integer, optional, "New custom status (when custom statuses are on)";
            "priority": Enum(PRIORITIES), optional, "New priority";
            "type": Enum(TICKET_TYPES), optional, "New type";
            "assignee_id": Integer, optional, "New assigned agent";
            "group_id": Integer, optional, "New assigned group";
            "organization_id": Integer, optional, "New organization";
            "requester_id": Integer, optional, "New requester";
            "tags": StringList, optional, "Tags (replaces the ticket's tags; see `add_tags` to add)";
            "external_id": String, optional, "Id of the ticket in another system";
            "due_at": String, optional, "Due time of a task ticket, RFC 3339";
            "custom_fields": ObjectList, optional, "Custom field values: `[{ id = 123, value = \"…\" }]`";
            SAFE_UPDATE;
            UPDATED_STAMP;
        ],
        require_one_of: &[],
        result: fields!["id": Integer, "status": String, "updated_at": Timestamp],
    },
    ActionSpec {
        name: "add_comment",
        description: "Add a public reply or an internal note to a ticket (PUT /api/v2/tickets/{id})",
        params: params![
            TICKET_ID;
            "body": String, optional, "Plain-text body";
            "html_body": String, optional, "HTML body";
            "public": Bool, optional, "Public reply (true) or internal note (false); default: config `comments_public`, else false";
            "author_id": Integer, optional, "User the comment is from (default: the authenticated user)";
        ],
        require_one_of: &[&["body", "html_body"]],
        result: fields!["id": Integer, "audit_id": Integer, "updated_at": Timestamp],
    },
    ActionSpec {
        name: "assign_ticket",
        description: "Assign a ticket to an agent and/or a group (PUT /api/v2/tickets/{id})",
        params: params![
            TICKET_ID;
            "assignee_id": Integer, optional, "Agent to assign, by id";
            "assignee_email": String, optional, "Agent to assign, by email";
            "group_id": Integer, optional, "Group to assign";
        ],
        require_one_of: &[&["assignee_id", "assignee_email", "group_id"]],
        result: fields!["id": Integer, "assignee_id": Integer, "group_id": Integer],
    },
    ActionSpec {
        name: "change_status",
        description: "Set a ticket's status (PUT /api/v2/tickets/{id})",
        params: params![
            TICKET_ID;
            "status": Enum(STATUSES), optional, "New status category";
            "custom_status_id": Integer, optional, "New custom status, when custom statuses are on";
        ],
        require_one_of: &[&["status", "custom_status_id"]],
        result: fields!["id": Integer, "status": String],
    },
    ActionSpec {
        name: "set_priority",
        description: "Set a ticket's priority (PUT /api/v2/tickets/{id})",
        params: params![
            TICKET_ID;
            "priority": Enum(PRIORITIES), required, "New priority";
        ],
        require_one_of: &[],
        result: fields!["id": Integer, "priority": String],
    },
    ActionSpec {
        name: "add_tags",
        description: "Add tags to a ticket, keeping the others (PUT /api/v2/tickets/{id}/tags)",
        params: params![
            TICKET_ID;
            "tags": StringList, required, "Tags to add";
            SAFE_UPDATE;
            UPDATED_STAMP;
        ],
        require_one_of: &[],
        result: fields!["tags": StringList],
    },
    ActionSpec {
        name: "apply_macro",
        description: "Apply a macro: fetch its changes for the ticket (GET /api/v2/tickets/{id}/macros/{macro_id}/apply), then save them (PUT /api/v2/tickets/{id})",
        params: params![
            TICKET_ID;
            "macro_id": Integer, required, "Id of the macro";
        ],
        require_one_of: &[],
        result: fields!["id": Integer, "status": String, "updated_at": Timestamp],
    },
    ActionSpec {
        name: "create_user",
        description: "Create a user (POST /api/v2/users), or create-or-update with `upsert`",
        params: params![
            "name": String, required, "Full name";
            "email": String, required, "Primary email";
            "role": Enum(ROLES), optional, "Role (default end-user)";
            "organization_id": Integer, optional, "Organization of the user";
            "external_id": String, optional, "Id of the user in another system";
            "phone": String, optional, "Phone number";
            "tags": StringList, optional, "Tags";
            "verified": Bool, optional, "Mark the email identity verified (no verification email)";
            "user_fields": Object, optional, "Custom user fields by key";
            "upsert": Bool, optional, "Update the user if the email or external id exists (POST /api/v2/users/create_or_update)";
        ],
        require_one_of: &[],
        result: fields!["id": Integer, "email": String, "url": String, "created_at": Timestamp],
    },
];

/// How each creating action may be sent again (see [`Resend`]): every request carries the
/// job step's `Idempotency-Key`, which Zendesk honours on creates.
pub(crate) static RESEND: &[(&str, Resend)] = &[
    ("create_ticket", Resend::IdempotencyKey),
    ("add_comment", Resend::IdempotencyKey),
    ("create_user", Resend::IdempotencyKey),
    // A set union: adding the same tags twice changes nothing more.
    ("add_tags", Resend::Safe),
];
