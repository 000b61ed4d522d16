//! Slack actions: one spec per Web API method (or method sequence) supportopsd calls.
//!
//! Every method answers HTTP 200 with `{"ok": false, "error": …}` on failure; the client checks
//! `ok`. All actions use the bot token except `set_status`, which needs the user token.

use crate::platforms::catalog::{field as r, param as p};
use crate::platforms::{ActionSpec, ParamType};
use crate::rules::ValueType;

/// Every Slack action.
pub(crate) static ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "send_message",
        description: "Post a message to a channel or thread (chat.postMessage)",
        params: &[
            p(
                "channel",
                ParamType::String,
                false,
                "Channel id or `#name` (default: config `default_channel`)",
            ),
            p(
                "message",
                ParamType::String,
                false,
                "Message text (mrkdwn); Slack's `text`",
            ),
            p(
                "text",
                ParamType::String,
                false,
                "Same as `message`, under Slack's own name",
            ),
            p(
                "blocks",
                ParamType::ObjectList,
                false,
                "Block Kit blocks; `message` is then the notification fallback",
            ),
            p(
                "attachments",
                ParamType::ObjectList,
                false,
                "Legacy attachments",
            ),
            p(
                "thread_ts",
                ParamType::String,
                false,
                "`ts` of the parent message, to reply in its thread",
            ),
            p(
                "reply_broadcast",
                ParamType::Bool,
                false,
                "Also show a thread reply in the channel",
            ),
            p(
                "unfurl_links",
                ParamType::Bool,
                false,
                "Show link previews (default: config `unfurl_links`)",
            ),
            p(
                "unfurl_media",
                ParamType::Bool,
                false,
                "Show media previews",
            ),
            p(
                "mrkdwn",
                ParamType::Bool,
                false,
                "Format the text as mrkdwn (default true)",
            ),
            p(
                "username",
                ParamType::String,
                false,
                "Display name of the bot for this message (needs `chat:write.customize`)",
            ),
            p(
                "icon_emoji",
                ParamType::String,
                false,
                "Emoji icon for this message (`:ticket:`; needs `chat:write.customize`)",
            ),
            p(
                "icon_url",
                ParamType::String,
                false,
                "Image icon for this message (needs `chat:write.customize`)",
            ),
            p(
                "metadata",
                ParamType::Object,
                false,
                "Message metadata: `{ event_type, event_payload }`",
            ),
        ],
        require_one_of: &[&["message", "text", "blocks"]],
        result: &[
            r("ts", ValueType::String),
            r("channel", ValueType::String),
            r("thread_ts", ValueType::String),
        ],
    },
    ActionSpec {
        name: "create_channel",
        description: "Create a public or private channel (conversations.create)",
        params: &[
            p(
                "name",
                ParamType::String,
                true,
                "Channel name: lower case, no spaces or periods, at most 80 characters",
            ),
            p(
                "is_private",
                ParamType::Bool,
                false,
                "Create a private channel (default false)",
            ),
            p(
                "team_id",
                ParamType::String,
                false,
                "Workspace to create it in (Enterprise Grid org tokens only)",
            ),
        ],
        require_one_of: &[],
        result: &[r("id", ValueType::String), r("name", ValueType::String)],
    },
    ActionSpec {
        name: "invite_user",
        description: "Invite users to a channel the bot is a member of (conversations.invite)",
        params: &[
            p("channel", ParamType::String, true, "Channel id"),
            p("users", ParamType::StringList, true, "User ids to invite"),
            p(
                "force",
                ParamType::Bool,
                false,
                "Invite the valid users even if some ids fail",
            ),
        ],
        require_one_of: &[],
        result: &[r("channel", ValueType::String)],
    },
    ActionSpec {
        name: "upload_file",
        description: "Upload a file and share it (files.getUploadURLExternal, upload, files.completeUploadExternal)",
        params: &[
            p(
                "filename",
                ParamType::String,
                true,
                "File name, e.g. `ticket-4021.csv`",
            ),
            p("content", ParamType::String, true, "File content (text)"),
            p(
                "channel",
                ParamType::String,
                false,
                "Channel id to share it in (default: config `default_channel`; without one the file stays private)",
            ),
            p(
                "title",
                ParamType::String,
                false,
                "Title shown for the file",
            ),
            p(
                "initial_comment",
                ParamType::String,
                false,
                "Message posted with the file",
            ),
            p(
                "thread_ts",
                ParamType::String,
                false,
                "`ts` of the parent message, to share it in a thread",
            ),
            p(
                "alt_txt",
                ParamType::String,
                false,
                "Description of an image for screen readers",
            ),
            p(
                "snippet_type",
                ParamType::String,
                false,
                "Syntax type of a snippet (`python`, `csv`…)",
            ),
        ],
        require_one_of: &[],
        result: &[r("id", ValueType::String), r("title", ValueType::String)],
    },
    ActionSpec {
        name: "set_status",
        description: "Set the status of the user owning `user_token` (users.profile.set); empty text and emoji clear it",
        params: &[
            p(
                "status_text",
                ParamType::String,
                false,
                "Status text, at most 100 characters (empty with an empty emoji clears)",
            ),
            p(
                "status_emoji",
                ParamType::String,
                false,
                "Status emoji, e.g. `:palm_tree:`",
            ),
            p(
                "expiration",
                ParamType::Integer,
                false,
                "Unix time the status expires at; 0 = never (default)",
            ),
            p(
                "user",
                ParamType::String,
                false,
                "Another user's id (workspace admins on paid plans only)",
            ),
        ],
        require_one_of: &[&["status_text", "status_emoji"]],
        result: &[
            r("status_text", ValueType::String),
            r("status_emoji", ValueType::String),
            r("expiration", ValueType::Integer),
        ],
    },
];
