//! Freshdesk actions: one spec per REST call supportopsd makes (API v2, JSON bodies).
//!
//! Status, priority and source are numeric enums; they accept the code or its name
//! ([`ParamType::Code`]). Ticket and contact fields keep Freshdesk's own names.

use super::{PRIORITY_CODES, SOURCE_CODES, STATUS_CODES};
use crate::platforms::catalog::{field as r, param as p};
use crate::platforms::{ActionSpec, ParamSpec, ParamType};
use crate::rules::ValueType;

const TICKET_ID: ParamSpec = p("ticket_id", ParamType::Integer, true, "Id of the ticket");

/// Every Freshdesk action.
pub(crate) static ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "create_ticket",
        description: "Create a ticket (POST /api/v2/tickets)",
        params: &[
            p("subject", ParamType::String, true, "Subject of the ticket"),
            p(
                "description",
                ParamType::String,
                true,
                "HTML body of the ticket",
            ),
            p(
                "email",
                ParamType::String,
                false,
                "Requester's email; a contact is created if unknown",
            ),
            p(
                "requester_id",
                ParamType::Integer,
                false,
                "Id of an existing contact as requester",
            ),
            p(
                "phone",
                ParamType::String,
                false,
                "Requester's phone number (then `name` is needed when there is no email)",
            ),
            p(
                "name",
                ParamType::String,
                false,
                "Requester's name, for a new contact",
            ),
            p(
                "facebook_id",
                ParamType::String,
                false,
                "Requester's Facebook id",
            ),
            p(
                "twitter_id",
                ParamType::String,
                false,
                "Requester's Twitter handle",
            ),
            p(
                "unique_external_id",
                ParamType::String,
                false,
                "Requester's external id",
            ),
            p(
                "status",
                ParamType::Code(STATUS_CODES),
                false,
                "Status (default: config `default_status`, else open)",
            ),
            p(
                "priority",
                ParamType::Code(PRIORITY_CODES),
                false,
                "Priority (default: config `default_priority`, else low)",
            ),
            p(
                "source",
                ParamType::Code(SOURCE_CODES),
                false,
                "Channel the ticket came through (Freshdesk's default is portal)",
            ),
            p(
                "type",
                ParamType::String,
                false,
                "Ticket type, one of the helpdesk's configured types (\"Incident\")",
            ),
            p(
                "responder_id",
                ParamType::Integer,
                false,
                "Agent to assign the ticket to",
            ),
            p(
                "group_id",
                ParamType::Integer,
                false,
                "Group to assign the ticket to",
            ),
            p(
                "company_id",
                ParamType::Integer,
                false,
                "Company of the requester",
            ),
            p(
                "product_id",
                ParamType::Integer,
                false,
                "Product the ticket is about",
            ),
            p("tags", ParamType::StringList, false, "Tags"),
            p(
                "cc_emails",
                ParamType::StringList,
                false,
                "Addresses copied on the ticket",
            ),
            p(
                "due_by",
                ParamType::String,
                false,
                "Resolution due time, RFC 3339",
            ),
            p(
                "fr_due_by",
                ParamType::String,
                false,
                "First-response due time, RFC 3339",
            ),
            p(
                "custom_fields",
                ParamType::Object,
                false,
                "Custom fields by their API name (`cf_…`)",
            ),
        ],
        require_one_of: &[&[
            "requester_id",
            "email",
            "phone",
            "facebook_id",
            "twitter_id",
            "unique_external_id",
        ]],
        result: &[
            r("id", ValueType::Integer),
            r("url", ValueType::String),
            r("status", ValueType::Integer),
            r("priority", ValueType::Integer),
            r("requester_id", ValueType::Integer),
            r("created_at", ValueType::Timestamp),
        ],
    },
    ActionSpec {
        name: "update_ticket",
        description: "Update any ticket fields (PUT /api/v2/tickets/{id})",
        params: &[
            TICKET_ID,
            p("subject", ParamType::String, false, "New subject"),
            p("description", ParamType::String, false, "New HTML body"),
            p("status", ParamType::Code(STATUS_CODES), false, "New status"),
            p(
                "priority",
                ParamType::Code(PRIORITY_CODES),
                false,
                "New priority",
            ),
            p("source", ParamType::Code(SOURCE_CODES), false, "New source"),
            p("type", ParamType::String, false, "New ticket type"),
            p(
                "responder_id",
                ParamType::Integer,
                false,
                "New assigned agent",
            ),
            p("group_id", ParamType::Integer, false, "New assigned group"),
            p("company_id", ParamType::Integer, false, "New company"),
            p("product_id", ParamType::Integer, false, "New product"),
            p(
                "tags",
                ParamType::StringList,
                false,
                "Tags (replaces the ticket's tags)",
            ),
            p(
                "due_by",
                ParamType::String,
                false,
                "Resolution due time, RFC 3339",
            ),
            p(
                "fr_due_by",
                ParamType::String,
                false,
                "First-response due time, RFC 3339",
            ),
            p(
                "custom_fields",
                ParamType::Object,
                false,
                "Custom fields by their API name (`cf_…`)",
            ),
        ],
        require_one_of: &[],
        result: &[
            r("id", ValueType::Integer),
            r("status", ValueType::Integer),
            r("priority", ValueType::Integer),
            r("updated_at", ValueType::Timestamp),
        ],
    },
    ActionSpec {
        name: "add_note",
        description: "Add a note to a ticket, private by default (POST /api/v2/tickets/{id}/notes)",
        params: &[
            TICKET_ID,
            p("body", ParamType::String, true, "HTML body of the note"),
            p(
                "private",
                ParamType::Bool,
                false,
                "Private note visible to agents only (default true)",
            ),
            p(
                "incoming",
                ParamType::Bool,
                false,
                "Show the note as coming from outside (default false)",
            ),
            p(
                "notify_emails",
                ParamType::StringList,
                false,
                "Agent addresses to notify",
            ),
            p(
                "user_id",
                ParamType::Integer,
                false,
                "Agent or contact the note is from (default: the API key's agent)",
            ),
        ],
        require_one_of: &[],
        result: &[
            r("id", ValueType::Integer),
            r("ticket_id", ValueType::Integer),
            r("private", ValueType::Bool),
            r("created_at", ValueType::Timestamp),
        ],
    },
    ActionSpec {
        name: "add_reply",
        description: "Reply to the requester on a ticket (POST /api/v2/tickets/{id}/reply)",
        params: &[
            TICKET_ID,
            p("body", ParamType::String, true, "HTML body of the reply"),
            p(
                "cc_emails",
                ParamType::StringList,
                false,
                "Addresses copied on the reply",
            ),
            p(
                "bcc_emails",
                ParamType::StringList,
                false,
                "Addresses blind-copied on the reply",
            ),
            p(
                "from_email",
                ParamType::String,
                false,
                "Support address the reply is sent from",
            ),
            p(
                "user_id",
                ParamType::Integer,
                false,
                "Agent the reply is from (default: the API key's agent)",
            ),
        ],
        require_one_of: &[],
        result: &[
            r("id", ValueType::Integer),
            r("ticket_id", ValueType::Integer),
            r("created_at", ValueType::Timestamp),
        ],
    },
    ActionSpec {
        name: "assign_ticket",
        description: "Assign a ticket to an agent and/or a group (PUT /api/v2/tickets/{id})",
        params: &[
            TICKET_ID,
            p("responder_id", ParamType::Integer, false, "Agent to assign"),
            p("group_id", ParamType::Integer, false, "Group to assign"),
        ],
        require_one_of: &[&["responder_id", "group_id"]],
        result: &[
            r("id", ValueType::Integer),
            r("responder_id", ValueType::Integer),
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
                ParamType::Code(STATUS_CODES),
                true,
                "New status; custom statuses by number (6 and above)",
            ),
        ],
        require_one_of: &[],
        result: &[r("id", ValueType::Integer), r("status", ValueType::Integer)],
    },
    ActionSpec {
        name: "add_time_entry",
        description: "Log time on a ticket (POST /api/v2/tickets/{id}/time_entries); without `time_spent` or `timer_running` Freshdesk starts a timer",
        params: &[
            TICKET_ID,
            p(
                "time_spent",
                ParamType::String,
                false,
                "Time spent, `hh:mm`",
            ),
            p("note", ParamType::String, false, "Description of the work"),
            p(
                "billable",
                ParamType::Bool,
                false,
                "Billable time (default true)",
            ),
            p(
                "agent_id",
                ParamType::Integer,
                false,
                "Agent the time is logged for (default: the API key's agent)",
            ),
            p(
                "timer_running",
                ParamType::Bool,
                false,
                "Start (true) or do not start (false) a timer; one running timer per agent",
            ),
            p(
                "executed_at",
                ParamType::String,
                false,
                "When the work was done, RFC 3339",
            ),
            p(
                "start_time",
                ParamType::String,
                false,
                "When the timer started, RFC 3339; not allowed with `timer_running = false`",
            ),
        ],
        require_one_of: &[],
        result: &[
            r("id", ValueType::Integer),
            r("time_spent", ValueType::String),
            r("timer_running", ValueType::Bool),
            r("agent_id", ValueType::Integer),
        ],
    },
    ActionSpec {
        name: "create_contact",
        description: "Create a contact (POST /api/v2/contacts)",
        params: &[
            p("name", ParamType::String, true, "Full name"),
            p("email", ParamType::String, false, "Primary email"),
            p("phone", ParamType::String, false, "Phone number"),
            p("mobile", ParamType::String, false, "Mobile number"),
            p("twitter_id", ParamType::String, false, "Twitter handle"),
            p(
                "unique_external_id",
                ParamType::String,
                false,
                "External id",
            ),
            p(
                "company_id",
                ParamType::Integer,
                false,
                "Company of the contact",
            ),
            p("job_title", ParamType::String, false, "Job title"),
            p(
                "description",
                ParamType::String,
                false,
                "Notes about the contact",
            ),
            p(
                "language",
                ParamType::String,
                false,
                "Language code (\"en\")",
            ),
            p(
                "time_zone",
                ParamType::String,
                false,
                "Time zone name (\"Chennai\")",
            ),
            p("tags", ParamType::StringList, false, "Tags"),
            p(
                "custom_fields",
                ParamType::Object,
                false,
                "Custom fields by their API name",
            ),
        ],
        require_one_of: &[&[
            "email",
            "phone",
            "mobile",
            "twitter_id",
            "unique_external_id",
        ]],
        result: &[
            r("id", ValueType::Integer),
            r("name", ValueType::String),
            r("email", ValueType::String),
            r("created_at", ValueType::Timestamp),
        ],
    },
];
