//! Freshdesk actions: one spec per REST call supportopsd makes (API v2, JSON bodies).
//!
//! Status, priority and source are numeric enums; they accept the code or its name
//! ([`ParamType::Code`](crate::platforms::ParamType::Code)). Ticket and contact fields keep
//! Freshdesk's own names.
//!
//! One row per parameter and result field (the row syntax is in [`crate::platforms::catalog`]);
//! each action's request code is in [`super::connector`].

use super::{PRIORITY_CODES, SOURCE_CODES, STATUS_CODES};
use crate::platforms::catalog::{fields, param, params};
use crate::platforms::{ActionSpec, ParamSpec, Resend};

const TICKET_ID: ParamSpec = param!("ticket_id": Integer, required, "Id of the ticket");

/// Every Freshdesk action.
pub(crate) static ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "create_ticket",
        description: "Create a ticket (POST /api/v2/tickets)",
        params: params![
            "subject": String, required, "Subject of the ticket";
            "description": String, required, "HTML body of the ticket";
            "email": String, optional, "Requester's email; a contact is created if unknown";
            "requester_id": Integer, optional, "Id of an existing contact as requester";
            "phone": String, optional, "Requester's phone number (then `name` is needed when there is no email)";
            "name": String, optional, "Requester's name, for a new contact";
            "facebook_id": String, optional, "Requester's Facebook id";
            "twitter_id": String, optional, "Requester's Twitter handle";
            "unique_external_id": String, optional, "Requester's external id";
            "status": Code(STATUS_CODES), optional, "Status (default: config `default_status`, else open)";
            "priority": Code(PRIORITY_CODES), optional, "Priority (default: config `default_priority`, else low)";
            "source": Code(SOURCE_CODES), optional, "Channel the ticket came through (Freshdesk's default is portal)";
            "type": String, optional, "Ticket type, one of the helpdesk's configured types (\"Incident\")";
            "responder_id": Integer, optional, "Agent to assign the ticket to";
            "group_id": Integer, optional, "Group to assign the ticket to";
            "company_id": Integer, optional, "Company of the requester";
            "product_id": Integer, optional, "Product the ticket is about";
            "tags": StringList, optional, "Tags";
            "cc_emails": StringList, optional, "Addresses copied on the ticket";
            "due_by": String, optional, "Resolution due time, RFC 3339";
            "fr_due_by": String, optional, "First-response due time, RFC 3339";
            "custom_fields": Object, optional, "Custom fields by their API name (`cf_…`)";
        ],
        require_one_of: &[&[
            "requester_id",
            "email",
            "phone",
            "facebook_id",
            "twitter_id",
            "unique_external_id",
        ]],
        result: fields![
            "id": Integer,
            "url": String,
            "status": Integer,
            "priority": Integer,
            "requester_id": Integer,
            "created_at": Timestamp,
        ],
    },
    ActionSpec {
        name: "update_ticket",
        description: "Update any ticket fields (PUT /api/v2/tickets/{id})",
        params: params![
            TICKET_ID;
            "subject": String, optional, "New subject";
            "description": String, optional, "New HTML body";
            "status": Code(STATUS_CODES), optional, "New status";
            "priority": Code(PRIORITY_CODES), optional, "New priority";
            "source": Code(SOURCE_CODES), optional, "New source";
            "type": String, optional, "New ticket type";
            "responder_id": Integer, optional, "New assigned agent";
            "group_id": Integer, optional, "New assigned group";
            "company_id": Integer, optional, "New company";
            "product_id": Integer, optional, "New product";
            "tags": StringList, optional, "Tags (replaces the ticket's tags)";
            "due_by": String, optional, "Resolution due time, RFC 3339";
            "fr_due_by": String, optional, "First-response due time, RFC 3339";
            "custom_fields": Object, optional, "Custom fields by their API name (`cf_…`)";
        ],
        require_one_of: &[],
        result: fields![
            "id": Integer,
            "status": Integer,
            "priority": Integer,
            "updated_at": Timestamp,
        ],
    },
    ActionSpec {
        name: "add_note",
        description: "Add a note to a ticket, private by default (POST /api/v2/tickets/{id}/notes)",
        params: params![
            TICKET_ID;
            "body": String, required, "HTML body of the note";
            "private": Bool, optional, "Private note visible to agents only (default true)";
            "incoming": Bool, optional, "Show the note as coming from outside (default false)";
            "notify_emails": StringList, optional, "Agent addresses to notify";
            "user_id": Integer, optional, "Agent or contact the note is from (default: the API key's agent)";
        ],
        require_one_of: &[],
        result: fields![
            "id": Integer,
            "ticket_id": Integer,
            "private": Bool,
            "created_at": Timestamp,
        ],
    },
    ActionSpec {
        name: "add_reply",
        description: "Reply to the requester on a ticket (POST /api/v2/tickets/{id}/reply)",
        params: params![
            TICKET_ID;
            "body": String, required, "HTML body of the reply";
            "cc_emails": StringList, optional, "Addresses copied on the reply";
            "bcc_emails": StringList, optional, "Addresses blind-copied on the reply";
            "from_email": String, optional, "Support address the reply is sent from";
            "user_id": Integer, optional, "Agent the reply is from (default: the API key's agent)";
        ],
        require_one_of: &[],
        result: fields!["id": Integer, "ticket_id": Integer, "created_at": Timestamp],
    },
    ActionSpec {
        name: "assign_ticket",
        description: "Assign a ticket to an agent and/or a group (PUT /api/v2/tickets/{id})",
        params: params![
            TICKET_ID;
            "responder_id": Integer, optional, "Agent to assign";
            "group_id": Integer, optional, "Group to assign";
        ],
        require_one_of: &[&["responder_id", "group_id"]],
        result: fields!["id": Integer, "responder_id": Integer, "group_id": Integer],
    },
    ActionSpec {
        name: "change_status",
        description: "Set a ticket's status (PUT /api/v2/tickets/{id})",
        params: params![
            TICKET_ID;
            "status": Code(STATUS_CODES), required, "New status; custom statuses by number (6 and above)";
        ],
        require_one_of: &[],
        result: fields!["id": Integer, "status": Integer],
    },
    ActionSpec {
        name: "add_time_entry",
        description: "Log time on a ticket (POST /api/v2/tickets/{id}/time_entries); without `time_spent` or `timer_running` Freshdesk starts a timer",
        params: params![
            TICKET_ID;
            "time_spent": String, optional, "Time spent, `hh:mm`";
            "note": String, optional, "Description of the work";
            "billable": Bool, optional, "Billable time (default true)";
            "agent_id": Integer, optional, "Agent the time is logged for (default: the API key's agent)";
            "timer_running": Bool, optional, "Start (true) or do not start (false) a timer; one running timer per agent";
            "executed_at": String, optional, "When the work was done, RFC 3339";
            "start_time": String, optional, "When the timer started, RFC 3339; not allowed with `timer_running = false`";
        ],
        require_one_of: &[],
        result: fields![
            "id": Integer,
            "time_spent": String,
            "timer_running": Bool,
            "agent_id": Integer,
        ],
    },
    ActionSpec {
        name: "create_contact",
        description: "Create a contact (POST /api/v2/contacts)",
        params: params![
            "name": String, required, "Full name";
            "email": String, optional, "Primary email";
            "phone": String, optional, "Phone number";
            "mobile": String, optional, "Mobile number";
            "twitter_id": String, optional, "Twitter handle";
            "unique_external_id": String, optional, "External id";
            "company_id": Integer, optional, "Company of the contact";
            "job_title": String, optional, "Job title";
            "description": String, optional, "Notes about the contact";
            "language": String, optional, "Language code (\"en\")";
            "time_zone": String, optional, "Time zone name (\"Chennai\")";
            "tags": StringList, optional, "Tags";
            "custom_fields": Object, optional, "Custom fields by their API name";
        ],
        require_one_of: &[&[
            "email",
            "phone",
            "mobile",
            "twitter_id",
            "unique_external_id",
        ]],
        result: fields!["id": Integer, "name": String, "email": String, "created_at": Timestamp],
    },
];

/// How each creating action may be sent again (see [`Resend`]). Freshdesk has no idempotency
/// key, and its search index is eventually consistent (a look-up right after a create may
/// miss it), so an uncertain create is dead-lettered with what to look for.
pub(crate) static RESEND: &[(&str, Resend)] = &[
    (
        "create_ticket",
        Resend::Duplicates {
            check: "the requester's recent tickets for one with this subject (`GET /api/v2/tickets?email=<requester>&order_by=created_at`)",
        },
    ),
    (
        "add_note",
        Resend::Duplicates {
            check: "the ticket's conversation for this note (`GET /api/v2/tickets/<ticket_id>/conversations`)",
        },
    ),
    (
        "add_reply",
        Resend::Duplicates {
            check: "the ticket's conversation for this reply (`GET /api/v2/tickets/<ticket_id>/conversations`)",
        },
    ),
    (
        "add_time_entry",
        Resend::Duplicates {
            check: "the ticket's time entries (`GET /api/v2/tickets/<ticket_id>/time_entries`)",
        },
    ),
    (
        "create_contact",
        // With an `email`, a lost answer is settled at once by looking the contact up by it
        // (a unique key); without one (a phone only) it is "outcome unknown".
        Resend::Duplicates {
            check: "the contacts for this phone (`GET /api/v2/contacts?phone=<phone>`)",
        },
    ),
];
