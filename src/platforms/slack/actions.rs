//! Slack actions: one spec per Web API method (or method sequence) supportopsd calls.
//!
//! Every method answers HTTP 200 with `{"ok": false, "error": …}` on failure; the client checks
//! `ok`. All actions use the bot token except `set_status`, which needs the user token.
//!
//! One row per parameter and result field (the row syntax is in [`crate::platforms::catalog`]);
//! each action's request code is in [`super::connector`].

use crate::platforms::catalog::{fields, params};
use crate::platforms::{ActionSpec, Resend};

/// Every Slack action.
pub(crate) static ACTIONS: &[ActionSpec] = &[
    ActionSpec {
        name: "send_message",
        description: "Post a message to a channel or thread (chat.postMessage)",
        params: params![
            "channel": String, optional, "Channel id or `#name` (default: config `default_channel`)";
            "message": String, optional, "Message text (mrkdwn); Slack's `text`";
            "text": String, optional, "Same as `message`, under Slack's own name";
            "blocks": ObjectList, optional, "Block Kit blocks; `message` is then the notification fallback";
            "attachments": ObjectList, optional, "Legacy attachments";
            "thread_ts": String, optional, "`ts` of the parent message, to reply in its thread";
            "reply_broadcast": Bool, optional, "Also show a thread reply in the channel";
            "unfurl_links": Bool, optional, "Show link previews (default: config `unfurl_links`)";
            "unfurl_media": Bool, optional, "Show media previews";
            "mrkdwn": Bool, optional, "Format the text as mrkdwn (default true)";
            "username": String, optional, "Display name of the bot for this message (needs `chat:write.customize`)";
            "icon_emoji": String, optional, "Emoji icon for this message (`:ticket:`; needs `chat:write.customize`)";
            "icon_url": String, optional, "Image icon for this message (needs `chat:write.customize`)";
            "metadata": Object, optional, "Message metadata: `{ event_type, event_payload }`";
        ],
        require_one_of: &[&["message", "text", "blocks"]],
        result: fields!["ts": String, "channel": String, "thread_ts": String],
    },
    ActionSpec {
        name: "create_channel",
        description: "Create a public or private channel (conversations.create)",
        params: params![
            "name": String, required, "Channel name: lower case, no spaces or periods, at most 80 characters";
            "is_private": Bool, optional, "Create a private channel (default false)";
            "team_id": String, optional, "Workspace to create it in (Enterprise Grid org tokens only)";
        ],
        require_one_of: &[],
        result: fields!["id": String, "name": String],
    },
    ActionSpec {
        name: "invite_user",
        description: "Invite users to a channel the bot is a member of (conversations.invite)",
        params: params![
            "channel": String, required, "Channel id, or `#name` (resolved to its id through conversations.list, cached)";
            "users": StringList, required, "User ids to invite";
            "force": Bool, optional, "Invite the valid users even if some ids fail";
        ],
        require_one_of: &[],
        result: fields!["channel": String],
    },
    ActionSpec {
        name: "upload_file",
        description: "Upload a file and share it (files.getUploadURLExternal, upload, files.completeUploadExternal)",
        params: params![
            "filename": String, required, "File name, e.g. `ticket-4021.csv`";
            "content": String, required, "File content (text)";
            "channel": String, optional, "Channel id or `#name` (resolved to its id) to share it in (default: config `default_channel`; without one the file stays private)";
            "title": String, optional, "Title shown for the file";
            "initial_comment": String, optional, "Message posted with the file";
            "thread_ts": String, optional, "`ts` of the parent message, to share it in a thread";
            "alt_txt": String, optional, "Description of an image for screen readers";
            "snippet_type": String, optional, "Syntax type of a snippet (`python`, `csv`…)";
        ],
        require_one_of: &[],
        result: fields!["id": String, "title": String],
    },
    ActionSpec {
        name: "set_status",
        description: "Set the status of the user owning `user_token` (users.profile.set); empty text and emoji clear it",
        params: params![
            "status_text": String, optional, "Status text, at most 100 characters (empty with an empty emoji clears)";
            "status_emoji": String, optional, "Status emoji, e.g. `:palm_tree:`";
            "expiration": Integer, optional, "Unix time the status expires at; 0 = never (default)";
            "user": String, optional, "Another user's id (workspace admins on paid plans only)";
        ],
        require_one_of: &[&["status_text", "status_emoji"]],
        result: fields!["status_text": String, "status_emoji": String, "expiration": Integer],
    },
];

/// How each creating action may be sent again (see [`Resend`]). Channel names are unique in
/// a workspace (`conversations.create` answers `name_taken`); a message or a file posted
/// twice is posted twice.
pub(crate) static RESEND: &[(&str, Resend)] = &[
    (
        "send_message",
        Resend::Duplicates {
            check: "the channel (or thread) for this message from the bot",
        },
    ),
    (
        "upload_file",
        Resend::Duplicates {
            check: "the channel for this file from the bot",
        },
    ),
    ("create_channel", Resend::UniqueName),
];
