//! Notion actions: pages, database entries, comments and queries (`https://api.notion.com/v1`).
//!
//! Notion's request limits apply to the values given: a rich-text `content` or URL holds at most
//! 2,000 characters, any array (blocks, rich text, multi-select options, relations, people) at
//! most 100 items, and one request at most 1,000 blocks and 500 KB.

use crate::platforms::catalog::{field as r, param as p};
use crate::platforms::{ActionSpec, FieldSpec, ParamSpec, ParamType};
use crate::rules::ValueType;

const PAGE_RESULT: &[FieldSpec] = &[
    r("id", ValueType::String),
    r("url", ValueType::String),
    r("created_time", ValueType::Timestamp),
    r("last_edited_time", ValueType::Timestamp),
    r("properties", ValueType::Object),
];

const PAGE_ID: ParamSpec = p(
    "page_id",
    ParamType::String,
    true,
    "Id of the page (with or without dashes), e.g. `{{ page.id }}`.",
);
const CHILDREN: ParamSpec = p(
    "children",
    ParamType::ObjectList,
    false,
    "Block objects for the page body, passed through (at most 100 per request).",
);
const ICON: ParamSpec = p(
    "icon",
    ParamType::Object,
    false,
    "Page icon object (`{\"emoji\": \"🎫\"}` or an external file).",
);
const COVER: ParamSpec = p(
    "cover",
    ParamType::Object,
    false,
    "Page cover object (an external file).",
);
const PROPERTIES: ParamSpec = p(
    "properties",
    ParamType::Object,
    true,
    "Property values keyed by property name, each a table naming the property's type with a plain value \
     (`{\"Status\": {\"select\": \"Open\"}}`, `{\"Due\": {\"date\": \"2026-01-31\"}}`, `{\"Tags\": {\"multi_select\": [\"a\", \"b\"]}}`) \
     or Notion's own value shape; rich-text contents at most 2,000 characters, arrays at most 100 items.",
);
const IN_TRASH: ParamSpec = p(
    "in_trash",
    ParamType::Bool,
    false,
    "`true` moves the page to the trash, `false` restores it (sent as `archived` before API version 2026-03-11).",
);
const DATA_SOURCE_ID: ParamSpec = p(
    "data_source_id",
    ParamType::String,
    false,
    "Data source to write to or read from (API version 2025-09-03 and later).",
);
const DATABASE_ID: ParamSpec = p(
    "database_id",
    ParamType::String,
    false,
    "Database id, for API version 2022-06-28 (fails once the database has more than one data source).",
);

/// Every Notion action.
pub(crate) static ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "create_page",
        description: "Create a page under another page (`POST /v1/pages` with a `page_id` parent).",
        params: &[
            p(
                "parent_page_id",
                ParamType::String,
                false,
                "Parent page id; defaults to `[config] default_parent_page`.",
            ),
            p(
                "title",
                ParamType::String,
                true,
                "Page title (the only property a page under a page has), at most 2,000 characters.",
            ),
            CHILDREN,
            p(
                "markdown",
                ParamType::String,
                false,
                "Page body as Markdown, instead of `children` (newer API versions).",
            ),
            ICON,
            COVER,
        ],
        require_one_of: &[],
        result: PAGE_RESULT,
    },
    ActionSpec {
        name: "update_page",
        description: "Change a page's properties, icon, cover, trash or lock state (`PATCH /v1/pages/{page_id}`).",
        params: &[
            PAGE_ID,
            p(
                "properties",
                ParamType::Object,
                false,
                PROPERTIES.description,
            ),
            ICON,
            COVER,
            IN_TRASH,
            p(
                "is_locked",
                ParamType::Bool,
                false,
                "Lock or unlock the page against editing in the UI.",
            ),
        ],
        require_one_of: &[&["properties", "icon", "cover", "in_trash", "is_locked"]],
        result: PAGE_RESULT,
    },
    ActionSpec {
        name: "create_database_entry",
        description: "Create a row (a page) in a data source or database (`POST /v1/pages`); property keys must match its schema.",
        params: &[
            DATA_SOURCE_ID,
            DATABASE_ID,
            PROPERTIES,
            CHILDREN,
            ICON,
            COVER,
        ],
        require_one_of: &[&["data_source_id", "database_id"]],
        result: PAGE_RESULT,
    },
    ActionSpec {
        name: "update_database_entry",
        description: "Change property values of a row of a data source (`PATCH /v1/pages/{page_id}`).",
        params: &[PAGE_ID, PROPERTIES, ICON, COVER, IN_TRASH],
        require_one_of: &[],
        result: PAGE_RESULT,
    },
    ActionSpec {
        name: "add_comment",
        description: "Comment on a page, a block or an existing discussion (`POST /v1/comments`; \
                      needs the integration's insert-comments capability).",
        params: &[
            p(
                "page_id",
                ParamType::String,
                false,
                "Page to comment on (starts a page-level discussion).",
            ),
            p("block_id", ParamType::String, false, "Block to comment on."),
            p(
                "discussion_id",
                ParamType::String,
                false,
                "Existing discussion thread to reply to.",
            ),
            p(
                "text",
                ParamType::String,
                false,
                "Plain comment text, sent as one rich-text item (at most 2,000 characters).",
            ),
            p(
                "rich_text",
                ParamType::ObjectList,
                false,
                "Rich-text items passed through instead of `text` (at most 100).",
            ),
        ],
        require_one_of: &[
            &["page_id", "block_id", "discussion_id"],
            &["text", "rich_text"],
        ],
        result: &[
            r("id", ValueType::String),
            r("discussion_id", ValueType::String),
            r("created_time", ValueType::Timestamp),
        ],
    },
    ActionSpec {
        name: "query_database",
        description: "Query the rows of a data source (`POST /v1/data_sources/{id}/query`; `/v1/databases/{id}/query` \
                      for 2022-06-28), following `next_cursor` until done or `max_results` rows.",
        params: &[
            DATA_SOURCE_ID,
            DATABASE_ID,
            p(
                "filter",
                ParamType::Object,
                false,
                "Filter object passed through (`{\"property\": \"Done\", \"checkbox\": {\"equals\": true}}`).",
            ),
            p(
                "sorts",
                ParamType::ObjectList,
                false,
                "Sort objects passed through (`[{\"property\": \"Due\", \"direction\": \"ascending\"}]`).",
            ),
            p(
                "page_size",
                ParamType::Integer,
                false,
                "Rows per request, 1 to 100 (default 100).",
            ),
            p(
                "start_cursor",
                ParamType::String,
                false,
                "Cursor to resume from (a previous result's `next_cursor`).",
            ),
            p(
                "max_results",
                ParamType::Integer,
                false,
                "Stop paging once this many rows are collected (default 100, at most 10,000).",
            ),
        ],
        require_one_of: &[&["data_source_id", "database_id"]],
        result: &[
            r("results", ValueType::List),
            r("ids", ValueType::StringList),
            r("count", ValueType::Integer),
            r("has_more", ValueType::Bool),
            r("next_cursor", ValueType::String),
        ],
    },
];
