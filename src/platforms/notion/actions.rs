//! Notion actions: pages, database entries, comments and queries (`https://api.notion.com/v1`).
//!
//! Notion's request limits apply to the values given: a rich-text `content` or URL holds at most
//! 2,000 characters, any array (blocks, rich text, multi-select options, relations, people) at
//! most 100 items, and one request at most 1,000 blocks and 500 KB.
//!
//! One row per parameter and result field (the row syntax is in [`crate::platforms::catalog`]);
//! each action's request code is in [`super::connector`].

use crate::platforms::catalog::{fields, param, params};
use crate::platforms::{ActionSpec, FieldSpec, ParamSpec, Resend};

const PAGE_RESULT: &[FieldSpec] = fields![
    "id": String,
    "url": String,
    "created_time": Timestamp,
    "last_edited_time": Timestamp,
    "properties": Object,
];

const PAGE_ID: ParamSpec = param!("page_id": String, required, "Id of the page (with or without dashes), e.g. `{{ page.id }}`.");
const CHILDREN: ParamSpec = param!("children": ObjectList, optional, "Block objects for the page body, passed through (at most 100 per request).");
const ICON: ParamSpec = param!("icon": Object, optional, "Page icon object (`{\"emoji\": \"🎫\"}` or an external file).");
const COVER: ParamSpec = param!("cover": Object, optional, "Page cover object (an external file).");
const PROPERTIES: ParamSpec = param!("properties": Object, required, "Property values keyed by property name, each a table naming the property's type with a plain value (`{\"Status\": {\"select\": \"Open\"}}`, `{\"Due\": {\"date\": \"2026-01-31\"}}`, `{\"Tags\": {\"multi_select\": [\"a\", \"b\"]}}`) or Notion's own value shape; rich-text contents at most 2,000 characters, arrays at most 100 items.");
const IN_TRASH: ParamSpec = param!("in_trash": Bool, optional, "`true` moves the page to the trash, `false` restores it (sent as `archived` before API version 2026-03-11).");
const DATA_SOURCE_ID: ParamSpec = param!("data_source_id": String, optional, "Data source to write to or read from (API version 2025-09-03 and later).");
const DATABASE_ID: ParamSpec = param!("database_id": String, optional, "Database id, for API version 2022-06-28 (fails once the database has more than one data source).");

/// Every Notion action.
pub(crate) static ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "create_page",
        description: "Create a page under another page (`POST /v1/pages` with a `page_id` parent).",
        params: params![
            "parent_page_id": String, optional, "Parent page id; defaults to `[config] default_parent_page`.";
            "title": String, required, "Page title (the only property a page under a page has), at most 2,000 characters.";
            CHILDREN;
            "markdown": String, optional, "Page body as Markdown, instead of `children` (newer API versions).";
            ICON;
            COVER;
        ],
        require_one_of: &[],
        result: PAGE_RESULT,
    },
    ActionSpec {
        name: "update_page",
        description: "Change a page's properties, icon, cover, trash or lock state (`PATCH /v1/pages/{page_id}`).",
        params: params![
            PAGE_ID;
            "properties": Object, optional, PROPERTIES.description;
            ICON;
            COVER;
            IN_TRASH;
            "is_locked": Bool, optional, "Lock or unlock the page against editing in the UI.";
        ],
        require_one_of: &[&["properties", "icon", "cover", "in_trash", "is_locked"]],
        result: PAGE_RESULT,
    },
    ActionSpec {
        name: "create_database_entry",
        description: "Create a row (a page) in a data source or database (`POST /v1/pages`); property keys must match its schema.",
        params: params![
            DATA_SOURCE_ID;
            DATABASE_ID;
            PROPERTIES;
            CHILDREN;
            ICON;
            COVER;
        ],
        require_one_of: &[&["data_source_id", "database_id"]],
        result: PAGE_RESULT,
    },
    ActionSpec {
        name: "update_database_entry",
        description: "Change property values of a row of a data source (`PATCH /v1/pages/{page_id}`).",
        params: params![
            PAGE_ID;
            PROPERTIES;
            ICON;
            COVER;
            IN_TRASH;
        ],
        require_one_of: &[],
        result: PAGE_RESULT,
    },
    ActionSpec {
        name: "add_comment",
        description: "Comment on a page, a block or an existing discussion (`POST /v1/comments`; \
                      needs the integration's insert-comments capability).",
        params: params![
            "page_id": String, optional, "Page to comment on (starts a page-level discussion).";
            "block_id": String, optional, "Block to comment on.";
            "discussion_id": String, optional, "Existing discussion thread to reply to.";
            "text": String, optional, "Plain comment text, sent as one rich-text item (at most 2,000 characters).";
            "rich_text": ObjectList, optional, "Rich-text items passed through instead of `text` (at most 100).";
        ],
        require_one_of: &[
            &["page_id", "block_id", "discussion_id"],
            &["text", "rich_text"],
        ],
        result: fields!["id": String, "discussion_id": String, "created_time": Timestamp],
    },
    ActionSpec {
        name: "query_database",
        description: "Query the rows of a data source (`POST /v1/data_sources/{id}/query`; `/v1/databases/{id}/query` \
                      for 2022-06-28), following `next_cursor` until done or `max_results` rows.",
        params: params![
            DATA_SOURCE_ID;
            DATABASE_ID;
            "filter": Object, optional, "Filter object passed through (`{\"property\": \"Done\", \"checkbox\": {\"equals\": true}}`).";
            "sorts": ObjectList, optional, "Sort objects passed through (`[{\"property\": \"Due\", \"direction\": \"ascending\"}]`).";
            "page_size": Integer, optional, "Rows per request, 1 to 100 (default 100).";
            "start_cursor": String, optional, "Cursor to resume from (a previous result's `next_cursor`).";
            "max_results": Integer, optional, "Stop paging once this many rows are collected (default 100, at most 10,000).";
        ],
        require_one_of: &[&["data_source_id", "database_id"]],
        result: fields![
            "results": List,
            "ids": StringList,
            "count": Integer,
            "has_more": Bool,
            "next_cursor": String,
        ],
    },
];

/// How each creating action may be sent again (see [`Resend`]). Notion has no idempotency
/// key; its official SDK retries a 500 or 503 only for `GET` and `DELETE`
/// (notion-sdk-js `src/Client.ts`, `isRetryable`), never a `POST` that creates. Updates
/// (`PATCH` setting properties) and `query_database` (a read) are retried.
pub(crate) static RESEND: &[(&str, Resend)] = &[
    (
        "create_page",
        Resend::Duplicates {
            check: "the parent page's children for a page with this title",
        },
    ),
    (
        "create_database_entry",
        Resend::Duplicates {
            check: "the database for an entry with these properties (sort by created time)",
        },
    ),
    (
        "add_comment",
        Resend::Duplicates {
            check: "the page's or discussion's comments for this text",
        },
    ),
];
