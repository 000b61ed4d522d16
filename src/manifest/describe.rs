//! A rule in words, for people: "When a ticket is created in Freshdesk `freshdesk-main` and
//! priority is 4 (urgent): post a message to #urgent-tickets with Slack `slack-main`."
//!
//! [`describe`] is pure (no I/O, no state): it reads the validated [`Rule`] and the static
//! catalogue, and returns a [`Sentence`] of plain text parts, never markup (the console escapes
//! it, the CLI prints it). Guarantees:
//!
//! - every condition operator of [`crate::rules::condition`] and every group (`all`, `any`,
//!   `not`, nested) has its wording; a `not` over a single test is said as the negated test
//!   ("does not match");
//! - every catalogued event and action has a phrase ([`EVENT_PHRASES`], [`ACTION_PHRASES`]; a
//!   unit test fails when one is added without), and one that somehow has none is said through
//!   its catalogue description, never an error;
//! - values come from manifests, which anyone with commit access writes: strings are quoted
//!   and escaped like JSON, invisible and direction-changing characters are written as
//!   `\u{…}`, long strings are cut, so a value cannot break the sentence or pass for another
//!   part of it;
//! - a disabled rule and the loop guard are said ([`Sentence::notes`]).

use std::fmt;

use serde_json::Value;

use super::model::{Rule, RuleAction};
use crate::platforms::{Actors, PlatformKind};
use crate::rules::condition::{Condition, Op, parse_timestamp};
use crate::rules::path::FieldPath;
use crate::rules::{Allowed, ValueType};

/// How many characters of a string value are shown before it is cut with `…`.
const MAX_VALUE_CHARS: usize = 80;

/// A rule in words: the parts a page may lay out separately, and their [`fmt::Display`] as one
/// sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sentence {
    /// Whether the rule is enabled (a disabled rule never fires).
    pub enabled: bool,
    /// "When a ticket is created in Freshdesk `freshdesk-main`".
    pub trigger: String,
    /// One entry per condition of the rule's `[trigger.conditions]` table, all of which must
    /// hold ("priority is 4 (urgent)", "either tags contain \"vip\" or …"); empty: none.
    pub conditions: Vec<String>,
    /// One entry per action, in order ("post a message to #urgent with Slack `slack-main`").
    pub actions: Vec<String>,
    /// Whole sentences about when the rule does not fire: disabled, the loop guard.
    pub notes: Vec<String>,
}

impl fmt::Display for Sentence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.enabled {
            f.write_str("(Disabled) ")?;
        }
        f.write_str(&self.trigger)?;
        for c in &self.conditions {
            write!(f, " and {c}")?;
        }
        f.write_str(": ")?;
        if self.actions.is_empty() {
            f.write_str("do nothing")?;
        }
        for (i, a) in self.actions.iter().enumerate() {
            if i > 0 {
                f.write_str(", then ")?;
            }
            f.write_str(a)?;
        }
        f.write_str(".")?;
        for n in &self.notes {
            write!(f, " {n}")?;
        }
        Ok(())
    }
}

/// Describes `rule` in words.
pub fn describe(rule: &Rule) -> Sentence {
    let t = &rule.trigger;
    let event = phrase_of(EVENT_PHRASES, t.platform, t.event.name)
        .map(str::to_owned)
        .unwrap_or_else(|| fallback(t.event.description, true));
    let trigger = format!("When {event} {}", on(t.platform, t.integration.as_str()));
    let ctx = Ctx {
        platform: t.platform,
        primary: t.event.primary,
        fields: t.event.fields,
    };
    let conditions = match &t.condition {
        None => Vec::new(),
        Some(Condition::All(members)) => ctx.top(members),
        Some(c) => ctx.top(std::slice::from_ref(c)),
    };
    let actions = rule.actions.iter().map(action).collect();
    let mut notes = Vec::new();
    if !rule.enabled {
        notes.push("It is disabled (`enabled = false`): it never fires.".to_owned());
    } else if rule.is_shadow() {
        notes.push(
            "It is in shadow mode (`mode = \"shadow\"`): what it would do is recorded, nothing is run."
                .to_owned(),
        );
    }
    if let Some(n) = rule.limits.max_actions_per_minute {
        notes.push(format!(
            "It performs at most {n} action(s) a minute (`[limits] max_actions_per_minute`): beyond that its new jobs wait for a later minute."
        ));
    }
    if t.platform.is_builtin() {
        notes.push(
            "It never fires on a supportopsd event that its own actions led to (loop guard)."
                .to_owned(),
        );
    } else if t.allow_self {
        notes.push(
            "It also fires on events that supportopsd's own actions caused (`allow_self = true`): make sure its conditions cannot re-trigger it."
                .to_owned(),
        );
    } else if !matches!(t.event.actors, Actors::Nobody(_)) {
        notes.push(
            "It does not fire on events that supportopsd's own actions caused (loop guard)."
                .to_owned(),
        );
    }
    Sentence {
        enabled: rule.enabled,
        trigger,
        conditions,
        actions,
        notes,
    }
}

/// "in Freshdesk `freshdesk-main`" (the built-in platform: "in supportopsd `alerts`").
fn on(platform: PlatformKind, integration: &str) -> String {
    let title = if platform.is_builtin() {
        "supportopsd"
    } else {
        platform.descriptor().title
    };
    format!("in {title} `{integration}`")
}

/// One action in words: its phrase with the parameters it names, and where it runs.
fn action(a: &RuleAction) -> String {
    let params = a.parameters_source();
    let phrase = match phrase_of(ACTION_PHRASES, a.platform, a.action.name) {
        Some(p) => fill(p, &params),
        None => fallback(a.action.description, false),
    };
    let title = a.platform.descriptor().title;
    format!("{phrase} with {title} `{}`", a.integration.as_str())
}

/// The phrase a table gives `(platform, name)`.
fn phrase_of(
    table: &'static [(PlatformKind, &str, &'static str)],
    platform: PlatformKind,
    name: &str,
) -> Option<&'static str> {
    table
        .iter()
        .find(|(p, n, _)| *p == platform && *n == name)
        .map(|(_, _, phrase)| *phrase)
}

/// A catalogue description as a phrase: up to its first parenthesis, colon, semicolon or
/// full stop, starting in lower case ("Create a ticket (POST …)" → "create a ticket"); an
/// event's ends with "happens" when asked, since its description is a past-tense sentence.
fn fallback(description: &str, event: bool) -> String {
    let cut = [" (", ": ", "; ", ". "]
        .iter()
        .filter_map(|s| description.find(s))
        .min()
        .unwrap_or(description.len());
    let text = description[..cut].trim_end_matches('.');
    let mut chars = text.chars();
    let head = match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect::<String>(),
        None => String::new(),
    };
    if event {
        format!("this happens: {head}")
    } else {
        head
    }
}

/// Fills `{param}` placeholders from `params`; a `[…]` part is left out unless every
/// placeholder in it has a value. A placeholder without a value outside `[…]` reads "(not set)".
fn fill(template: &str, params: &serde_json::Map<String, Value>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('[') {
            let end = after.find(']').unwrap_or(after.len());
            let (part, complete) = placeholders(&after[..end], params);
            if complete {
                out.push_str(&part);
            }
            rest = after.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find('[').unwrap_or(rest.len());
            out.push_str(&placeholders(&rest[..end], params).0);
            rest = &rest[end..];
        }
    }
    out
}

/// Replaces the `{param}` placeholders of `text`; whether every one had a value.
fn placeholders(text: &str, params: &serde_json::Map<String, Value>) -> (String, bool) {
    let mut out = String::new();
    let mut complete = true;
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let end = after.find('}').unwrap_or(after.len());
        match params.get(&after[..end]).filter(|v| !v.is_null()) {
            Some(v) => out.push_str(&value(v, None)),
            None => {
                complete = false;
                out.push_str("(not set)");
            }
        }
        rest = after.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    (out, complete)
}

/// What conditions need to know about the trigger's event.
struct Ctx {
    platform: PlatformKind,
    primary: &'static str,
    fields: &'static [crate::platforms::FieldSpec],
}

impl Ctx {
    /// The members of the top-level table in words: field tests first, then groups (all must
    /// hold, so the order changes nothing), an `any` group in parentheses unless it is last.
    fn top(&self, members: &[Condition]) -> Vec<String> {
        let is_test = |c: &&Condition| match c {
            Condition::Test { .. } => true,
            Condition::Not(inner) => matches!(inner.as_ref(), Condition::Test { .. }),
            _ => false,
        };
        let ordered: Vec<&Condition> = members
            .iter()
            .filter(is_test)
            .chain(members.iter().filter(|c| !is_test(c)))
            .collect();
        let last = ordered.len().saturating_sub(1);
        ordered
            .iter()
            .enumerate()
            .map(|(i, c)| match c {
                Condition::Any(m) if i < last && !m.is_empty() => {
                    format!("({})", self.group(c, true))
                }
                _ => self.group(c, true),
            })
            .collect()
    }

    /// A condition in words; `top`: a member of the rule's top-level table (no parentheses).
    fn group(&self, c: &Condition, top: bool) -> String {
        let text = match c {
            Condition::Test { path, op } => return self.test(path, op, false),
            Condition::Not(inner) => match inner.as_ref() {
                Condition::Test { path, op } => return self.test(path, op, true),
                other => return format!("not {}", self.group(other, false)),
            },
            Condition::All(members) if members.is_empty() => return "always".to_owned(),
            Condition::Any(members) if members.is_empty() => return "never".to_owned(),
            Condition::All(members) => self.join(members, "and"),
            Condition::Any(members) if top && members.len() == 2 => {
                return format!("either {}", self.join(members, "or"));
            }
            Condition::Any(members) if top => {
                return format!("at least one of: {}", self.join(members, "or"));
            }
            Condition::Any(members) => self.join(members, "or"),
        };
        if top { text } else { format!("({text})") }
    }

    fn join(&self, members: &[Condition], word: &str) -> String {
        members
            .iter()
            .map(|m| self.group(m, false))
            .collect::<Vec<_>>()
            .join(&format!(" {word} "))
    }

    /// One field test in words (negated for `not = { field = … }`).
    fn test(&self, path: &FieldPath, op: &Op, negated: bool) -> String {
        let field = self.field(path);
        let allowed = self
            .platform
            .values()
            .iter()
            .find(|(p, _)| *p == path.to_string())
            .map(|(_, a)| *a);
        let ty = self
            .fields
            .iter()
            .find(|f| f.path == path.to_string())
            .map(|f| f.ty);
        let plural = matches!(ty, Some(ValueType::StringList | ValueType::List));
        let v = |x: &Value| value(x, allowed);
        let time = |x: &Value| x.as_str().is_some_and(|s| parse_timestamp(s).is_some());
        let (is, is_not) = if plural {
            ("are", "are not")
        } else {
            ("is", "is not")
        };
        let (yes, no) = match op {
            Op::Eq(x) => (format!("{is} {}", v(x)), format!("{is_not} {}", v(x))),
            Op::Ne(x) => (format!("{is_not} {}", v(x)), format!("{is} {}", v(x))),
            Op::In(xs) if xs.len() == 1 => (format!("{is} {}", list(xs, allowed, "or")), {
                format!("{is_not} {}", list(xs, allowed, "or"))
            }),
            Op::In(xs) => (
                format!("{is} one of {}", list(xs, allowed, "or")),
                format!("{is} none of {}", list(xs, allowed, "or")),
            ),
            Op::NotIn(xs) => (
                format!("{is} none of {}", list(xs, allowed, "or")),
                format!("{is} one of {}", list(xs, allowed, "or")),
            ),
            Op::Gt(x) if time(x) => (format!("{is} after {}", v(x)), {
                format!("{is} not after {}", v(x))
            }),
            Op::Gte(x) if time(x) => (format!("{is} on or after {}", v(x)), {
                format!("{is} before {}", v(x))
            }),
            Op::Lt(x) if time(x) => (format!("{is} before {}", v(x)), {
                format!("{is} on or after {}", v(x))
            }),
            Op::Lte(x) if time(x) => (format!("{is} on or before {}", v(x)), {
                format!("{is} after {}", v(x))
            }),
            Op::Gt(x) => (format!("{is} greater than {}", v(x)), {
                format!("{is} not greater than {}", v(x))
            }),
            Op::Gte(x) => (format!("{is} at least {}", v(x)), {
                format!("{is} less than {}", v(x))
            }),
            Op::Lt(x) => (format!("{is} less than {}", v(x)), {
                format!("{is} at least {}", v(x))
            }),
            Op::Lte(x) => (format!("{is} at most {}", v(x)), {
                format!("{is} greater than {}", v(x))
            }),
            Op::Contains(x) if plural => (format!("contain {}", v(x)), {
                format!("do not contain {}", v(x))
            }),
            Op::Contains(x) => (format!("contains {}", v(x)), {
                format!("does not contain {}", v(x))
            }),
            Op::Matches(p) => {
                let pattern = value(&Value::String(p.as_str().to_owned()), None);
                let (m, dm) = if plural {
                    ("match", "do not match")
                } else {
                    ("matches", "does not match")
                };
                (
                    format!("{m} the pattern {pattern}"),
                    format!("{dm} the pattern {pattern}"),
                )
            }
            Op::Exists(true) => (format!("{is} set"), format!("{is} not set")),
            Op::Exists(false) => (format!("{is} not set"), format!("{is} set")),
            Op::Changed { expected: true, .. } => {
                ("changed".to_owned(), "did not change".to_owned())
            }
            Op::Changed {
                expected: false, ..
            } => ("did not change".to_owned(), "changed".to_owned()),
            Op::ChangedTo { value: x, .. } => (
                format!("changed to {}", v(x)),
                format!("did not change to {}", v(x)),
            ),
        };
        format!("{field} {}", if negated { no } else { yes })
    }

    /// A field as people read it: relative to the primary object (`ticket.priority` →
    /// `priority`), else the whole path; the event's own fields as "the event's …".
    fn field(&self, path: &FieldPath) -> String {
        let text = match path.strip_prefix(&FieldPath::key(self.primary)) {
            Some(rest) if !rest.is_empty() && rest.root_key().is_some() => rest.to_string(),
            _ => path.to_string(),
        };
        clean(&text)
    }
}

/// Values listed: `"a", "b" or "c"`.
fn list(values: &[Value], allowed: Option<Allowed>, word: &str) -> String {
    let shown: Vec<String> = values.iter().map(|x| value(x, allowed)).collect();
    match shown.split_last() {
        None => "nothing".to_owned(),
        Some((last, [])) => last.clone(),
        Some((last, init)) => format!("{} {word} {last}", init.join(", ")),
    }
}

/// A value as people read it: a string quoted and escaped (a Slack channel name bare:
/// `#urgent`), a coded number with its name (`4 (urgent)`), a list as its items.
fn value(v: &Value, allowed: Option<Allowed>) -> String {
    match v {
        Value::String(s) if is_channel(s) => s.clone(),
        Value::String(s) => quote(s),
        Value::Number(n) => {
            let name = match allowed {
                Some(Allowed::Codes { codes, .. }) => n
                    .as_i64()
                    .and_then(|i| codes.iter().find(|(_, c)| *c == i))
                    .map(|(name, _)| name.replace('_', " ")),
                _ => None,
            };
            match name {
                Some(name) => format!("{n} ({name})"),
                None => n.to_string(),
            }
        }
        Value::Bool(b) => b.to_string(),
        Value::Null => "nothing".to_owned(),
        Value::Array(items) if items.is_empty() => "an empty list".to_owned(),
        Value::Array(items) => format!("[{}]", {
            items
                .iter()
                .map(|x| value(x, allowed))
                .collect::<Vec<_>>()
                .join(", ")
        }),
        Value::Object(m) if m.is_empty() => "an empty table".to_owned(),
        Value::Object(m) => format!(
            "a table of {}",
            list(
                &m.keys()
                    .map(|k| Value::String(k.clone()))
                    .collect::<Vec<_>>(),
                None,
                "and"
            )
        ),
    }
}

/// `#name`: a Slack channel name (lower case letters, digits, `-`, `_`), shown bare.
fn is_channel(s: &str) -> bool {
    s.len() > 1
        && s.len() <= 81
        && s.starts_with('#')
        && s[1..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A string in double quotes, escaped ([`clean`]) and cut at [`MAX_VALUE_CHARS`].
fn quote(s: &str) -> String {
    let mut cut: String = s.chars().take(MAX_VALUE_CHARS).collect();
    if cut.len() < s.len() {
        cut.push('…');
    }
    let escaped = cut.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{}\"", clean(&escaped))
}

/// Control, invisible and direction-changing characters written as `\n`, `\t` or `\u{…}`,
/// so that text from a manifest shows what it holds and cannot reorder the sentence.
fn clean(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_invisible(c) => {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            }
            c => out.push(c),
        }
    }
    out
}

/// Format characters that change how text around them reads: bidirectional controls,
/// zero-width characters, the byte-order mark, soft hyphen.
fn is_invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD | 0x061C | 0x180E | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x2069 | 0xFEFF
    )
}

/// What each catalogued event is, in the present tense, after "When".
pub const EVENT_PHRASES: &[(PlatformKind, &str, &str)] = {
    use PlatformKind::{Freshdesk, GoogleSheets, Notion, Slack, Supportopsd, Trello, Zendesk};
    &[
        (Freshdesk, "ticket_created", "a ticket is created"),
        (Freshdesk, "ticket_updated", "a ticket is updated"),
        (Freshdesk, "ticket_resolved", "a ticket is resolved"),
        (Freshdesk, "ticket_closed", "a ticket is closed"),
        (Freshdesk, "note_created", "a note is added to a ticket"),
        (Freshdesk, "contact_created", "a contact is created"),
        (Freshdesk, "contact_updated", "a contact is updated"),
        (Zendesk, "ticket.created", "a ticket is created"),
        (Zendesk, "ticket.updated", "a ticket is updated"),
        (Zendesk, "ticket.solved", "a ticket is solved"),
        (Zendesk, "ticket.closed", "a ticket is closed"),
        (
            Zendesk,
            "comment.created",
            "a reply or internal note is added to a ticket",
        ),
        (Zendesk, "user.created", "a user is created"),
        (Zendesk, "user.updated", "a user changes"),
        (
            Zendesk,
            "organization.created",
            "an organization is created",
        ),
        (Zendesk, "organization.updated", "an organization changes"),
        (Slack, "message", "a message is posted, edited or deleted"),
        (Slack, "app_mention", "a message mentions the bot"),
        (Slack, "reaction_added", "someone adds a reaction"),
        (Slack, "channel_created", "a channel is created"),
        (Slack, "member_joined_channel", "someone joins a channel"),
        (Slack, "team_join", "a new member joins the workspace"),
        (Trello, "createCard", "a card is created"),
        (Trello, "updateCard", "a card is edited or moved"),
        (Trello, "commentCard", "a card gets a comment"),
        (Trello, "addLabelToCard", "a card gets a label"),
        (Trello, "removeLabelFromCard", "a card loses a label"),
        (Trello, "addChecklistToCard", "a card gets a checklist"),
        (
            Trello,
            "updateCheckItemStateOnCard",
            "a checklist item is ticked or unticked",
        ),
        (Trello, "addMemberToCard", "a member is added to a card"),
        (
            Trello,
            "moveCardToBoard",
            "a card arrives from another board",
        ),
        (Trello, "deleteCard", "a card is deleted"),
        (Trello, "createList", "a list is created"),
        (Notion, "page.created", "a page is created"),
        (Notion, "page.content_updated", "a page's content changes"),
        (
            Notion,
            "page.properties_updated",
            "a page's properties change",
        ),
        (Notion, "page.moved", "a page is moved"),
        (Notion, "page.deleted", "a page is moved to the trash"),
        (
            Notion,
            "page.undeleted",
            "a page is restored from the trash",
        ),
        (Notion, "page.locked", "a page is locked"),
        (Notion, "page.unlocked", "a page is unlocked"),
        (Notion, "database.created", "a database is created"),
        (Notion, "database.moved", "a database is moved"),
        (
            Notion,
            "database.deleted",
            "a database is moved to the trash",
        ),
        (
            Notion,
            "database.undeleted",
            "a database is restored from the trash",
        ),
        (
            Notion,
            "database.content_updated",
            "rows of a database change",
        ),
        (
            Notion,
            "database.schema_updated",
            "a database's properties change",
        ),
        (Notion, "data_source.created", "a data source is added"),
        (
            Notion,
            "data_source.content_updated",
            "rows of a data source change",
        ),
        (Notion, "data_source.moved", "a data source is moved"),
        (
            Notion,
            "data_source.deleted",
            "a data source is moved to the trash",
        ),
        (
            Notion,
            "data_source.undeleted",
            "a data source is restored from the trash",
        ),
        (
            Notion,
            "data_source.schema_updated",
            "a data source's properties change",
        ),
        (Notion, "comment.created", "a comment is added"),
        (Notion, "comment.updated", "a comment is edited"),
        (Notion, "comment.deleted", "a comment is deleted"),
        (GoogleSheets, "file_changed", "the spreadsheet changes"),
        (GoogleSheets, "row_added", "a row is added to the sheet"),
        (
            Supportopsd,
            "integration.degraded",
            "an integration stops working",
        ),
        (
            Supportopsd,
            "integration.recovered",
            "an integration works again",
        ),
        (
            Supportopsd,
            "revision.applied",
            "a new revision of the repository is applied",
        ),
        (
            Supportopsd,
            "revision.refused",
            "the newest revision of the repository is refused",
        ),
        (
            Supportopsd,
            "registration.repaired",
            "a webhook registration is repaired",
        ),
        (
            Supportopsd,
            "job.dead_lettered",
            "a rule's action fails for good (dead letter)",
        ),
        (
            Supportopsd,
            "rule.throttled",
            "a rule goes over its action budget (its new jobs are held)",
        ),
    ]
};

/// What each catalogued action does, imperative, with `{parameter}` placeholders (a `[…]`
/// part only when all its parameters are given); " with <Platform> `<integration>`" follows.
pub const ACTION_PHRASES: &[(PlatformKind, &str, &str)] = {
    use PlatformKind::{Freshdesk, GoogleSheets, Notion, Slack, Trello, Zendesk};
    &[
        (Freshdesk, "create_ticket", "create a ticket {subject}"),
        (Freshdesk, "update_ticket", "update ticket {ticket_id}"),
        (Freshdesk, "add_note", "add a note to ticket {ticket_id}"),
        (Freshdesk, "add_reply", "reply on ticket {ticket_id}"),
        (
            Freshdesk,
            "assign_ticket",
            "assign ticket {ticket_id}[ to agent {responder_id}][ to group {group_id}]",
        ),
        (
            Freshdesk,
            "change_status",
            "set the status of ticket {ticket_id} to {status}",
        ),
        (
            Freshdesk,
            "add_time_entry",
            "log time on ticket {ticket_id}",
        ),
        (Freshdesk, "create_contact", "create a contact {name}"),
        (Zendesk, "create_ticket", "create a ticket[ {subject}]"),
        (Zendesk, "update_ticket", "update ticket {ticket_id}"),
        (Zendesk, "add_comment", "comment on ticket {ticket_id}"),
        (
            Zendesk,
            "assign_ticket",
            "assign ticket {ticket_id}[ to agent {assignee_id}][ to {assignee_email}][ to group {group_id}]",
        ),
        (
            Zendesk,
            "change_status",
            "change the status of ticket {ticket_id}[ to {status}]",
        ),
        (
            Zendesk,
            "set_priority",
            "set the priority of ticket {ticket_id} to {priority}",
        ),
        (Zendesk, "add_tags", "tag ticket {ticket_id} with {tags}"),
        (
            Zendesk,
            "apply_macro",
            "apply macro {macro_id} to ticket {ticket_id}",
        ),
        (Zendesk, "create_user", "create a user {name} <{email}>"),
        (Slack, "send_message", "post a message[ to {channel}]"),
        (Slack, "create_channel", "create a channel {name}"),
        (Slack, "invite_user", "invite {users} to {channel}"),
        (
            Slack,
            "upload_file",
            "upload a file {filename}[ to {channel}]",
        ),
        (
            Slack,
            "set_status",
            "set a user's status[ to {status_text}]",
        ),
        (
            Trello,
            "create_card",
            "create a card {name}[ in list {id_list}]",
        ),
        (Trello, "update_card", "update card {id_card}"),
        (Trello, "move_card", "move card {id_card} to list {id_list}"),
        (Trello, "add_comment", "comment on card {id_card}"),
        (
            Trello,
            "add_checklist",
            "add a checklist[ {name}] to card {id_card}",
        ),
        (
            Trello,
            "add_label",
            "label card {id_card}[ with {name}][ with {color}][ with label {id_label}]",
        ),
        (Notion, "create_page", "create a page {title}"),
        (Notion, "update_page", "update page {page_id}"),
        (
            Notion,
            "create_database_entry",
            "add a row to a database[ {data_source_id}][ {database_id}]",
        ),
        (
            Notion,
            "update_database_entry",
            "update database row {page_id}",
        ),
        (Notion, "add_comment", "add a comment[ on page {page_id}]"),
        (
            Notion,
            "query_database",
            "query a database[ {data_source_id}][ {database_id}]",
        ),
        (
            GoogleSheets,
            "append_row",
            "append a row[ to sheet {sheet}]",
        ),
        (
            GoogleSheets,
            "update_row",
            "update[ row {row_number}][ range {range}][ of sheet {sheet}]",
        ),
        (GoogleSheets, "read_range", "read range {range}"),
        (GoogleSheets, "create_sheet", "add a sheet {title}"),
        (
            GoogleSheets,
            "batch_update",
            "update several ranges of the spreadsheet",
        ),
    ]
};

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;
    use crate::manifest::source::{Contents, FileKind, RawFile, Snapshot, Source};
    use crate::manifest::{ManifestSet, load, load_source};

    /// The example repository's rules in words, by rule id.
    fn examples() -> BTreeMap<String, String> {
        let source = Source {
            repo: Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/repo"),
            subdir: None,
            rev: None,
        };
        let loaded = load_source(&source).unwrap();
        let set = loaded.set.expect("the examples validate");
        set.rules
            .values()
            .map(|r| (r.id.as_str().to_owned(), describe(r).to_string()))
            .collect()
    }

    /// Loads integrations and one rule written in TOML.
    fn load_rule(rule: &str) -> ManifestSet {
        let file = |path: &str, kind, text: &str| RawFile {
            path: path.to_owned(),
            kind,
            contents: Contents::Bytes(text.as_bytes().to_vec()),
        };
        let files = vec![
            file(
                "integrations/fd.toml",
                FileKind::Integration,
                "id = \"freshdesk-main\"\nplatform = \"freshdesk\"\n[credentials]\ndomain = \"acme.freshdesk.com\"\napi_key = { env = \"FD_KEY\" }\n",
            ),
            file(
                "integrations/slack.toml",
                FileKind::Integration,
                "id = \"slack-main\"\nplatform = \"slack\"\n[credentials]\nbot_token = { env = \"SLACK_TOKEN\" }\nsigning_secret = { env = \"SLACK_SIGNING\" }\n",
            ),
            file("rules/r.toml", FileKind::Rule, rule),
        ];
        let loaded = load(&Snapshot::in_memory(files));
        loaded
            .set
            .unwrap_or_else(|| panic!("{:?}", loaded.diagnostics))
    }

    fn sentence(rule: &str) -> Sentence {
        let set = load_rule(rule);
        describe(set.rules.values().next().unwrap())
    }

    #[test]
    fn the_examples_read_as_sentences() {
        let all = examples();
        assert_eq!(
            all["urgent-freshdesk-to-slack"],
            "When a ticket is created in Freshdesk `freshdesk-main` and priority is 4 (urgent): \
             post a message to #urgent-tickets with Slack `slack-main`. \
             It does not fire on events that supportopsd's own actions caused (loop guard)."
        );
        assert_eq!(
            all["refund-review"],
            "When a ticket is created in Zendesk `zendesk-main` and subject matches the pattern \"(?i)\\\\brefund\" \
             and either priority is one of \"high\" or \"urgent\" or tags contain \"billing\": \
             tag ticket \"{{ ticket.id }}\" with [\"refund-review\"] with Zendesk `zendesk-main`, \
             then post a message to #billing with Slack `slack-main`. \
             It does not fire on events that supportopsd's own actions caused (loop guard)."
        );
        assert_eq!(
            all["resolved-vip-note"],
            "When a ticket is resolved in Freshdesk `freshdesk-main` and requester.email does not match the pattern \"@acme\\\\.example$\" \
             and tags contain \"vip\": add a note to ticket \"{{ ticket.id }}\" with Freshdesk `freshdesk-main`. \
             It does not fire on events that supportopsd's own actions caused (loop guard)."
        );
        assert_eq!(
            all["escalation-to-notion"],
            "When a ticket is updated in Freshdesk `freshdesk-main` and priority changed to 4 (urgent): \
             create a page \"Escalation: {{ ticket.subject }} (#{{ ticket.id }})\" with Notion `notion-wiki`. \
             It does not fire on events that supportopsd's own actions caused (loop guard)."
        );
        assert_eq!(
            all["vip-to-trello"],
            "When a ticket is created in Zendesk `zendesk-main` and status is not \"closed\" and tags contain \"vip\": \
             create a card \"VIP: {{ ticket.subject }}\" in list \"5f1a2b3c4d5e6f7a8b9c0e01\" with Trello `trello-escalations`, \
             then add a checklist \"VIP follow-up\" to card \"{{ actions[0].result.id }}\" with Trello `trello-escalations`. \
             It does not fire on events that supportopsd's own actions caused (loop guard)."
        );
        assert_eq!(
            all["trello-move-to-slack"],
            "When a card is edited or moved in Trello `trello-escalations` and id_list changed: \
             post a message to #escalations with Slack `slack-main`. \
             It does not fire on events that supportopsd's own actions caused (loop guard)."
        );
        assert_eq!(
            all["integration-degraded-to-slack"],
            "When an integration stops working in supportopsd `alerts`: \
             post a message to #support-ops with Slack `slack-main`. \
             It never fires on a supportopsd event that its own actions led to (loop guard)."
        );
        assert_eq!(
            all["sheet-row-to-zendesk"],
            "When a row is added to the sheet in Google Sheets `sheets-reporting` and sheet is \"Escalations log\": \
             create a ticket \"Escalation for {{ row.fields.Customer }} (ticket {{ row.fields.Ticket }})\" with Zendesk `zendesk-main`."
        );
        // Every example says its trigger, and an action per `[[actions]]`.
        for (id, text) in &all {
            assert!(text.starts_with("When "), "{id}: {text}");
            assert!(!text.contains("(not set)"), "{id}: {text}");
        }
    }

    #[test]
    fn every_operator_and_group_has_words() {
        let s = sentence(
            r##"
id = "r"
[trigger]
integration = "freshdesk-main"
event = "ticket_updated"
[trigger.conditions]
"ticket.subject" = { eq = "Help", ne = "Spam", contains = "refund", matches = "^x" }
priority = { in = [3, 4], not_in = [1], gt = 1, gte = 2, lt = 5, lte = 4 }
"ticket.type" = { exists = true }
"agent.email" = { exists = false }
status = { changed = true, changed_to = 4 }
"ticket.tags" = { contains = "vip" }
"ticket.priority" = { changed = false }
any = [ { priority = 4 }, { all = [ { "ticket.tags" = { contains = "a" } }, { not = { any = [ { status = 2 }, { status = 3 } ] } } ] } ]
not = { "ticket.subject" = { in = ["a", "b"] } }
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#ops"
message = "hi"
"##,
        );
        let text = s.conditions.join(" | ");
        for expected in [
            "subject is \"Help\"",
            "subject is not \"Spam\"",
            "subject contains \"refund\"",
            "subject matches the pattern \"^x\"",
            "priority is one of 3 (high) or 4 (urgent)",
            "priority is none of 1 (low)",
            "priority is greater than 1 (low)",
            "priority is at least 2 (medium)",
            "priority is less than 5",
            "priority is at most 4 (urgent)",
            "type is set",
            "agent.email is not set",
            "status changed",
            "status changed to 4 (resolved)",
            "tags contain \"vip\"",
            "priority did not change",
            "either priority is 4 (urgent) or (tags contain \"a\" and not (status is 2 (open) or status is 3 (pending)))",
            "subject is none of \"a\" or \"b\"",
        ] {
            assert!(text.contains(expected), "{expected:?} not in {text}");
        }
    }

    #[test]
    fn timestamps_read_as_before_and_after() {
        let s = sentence(
            r##"
id = "r"
[trigger]
integration = "freshdesk-main"
event = "ticket_created"
[trigger.conditions]
"payload.freshdesk_webhook.due" = { gte = "2026-01-01", lt = "2026-02-01T00:00:00Z" }
[[actions]]
integration = "slack-main"
action = "send_message"
[actions.parameters]
channel = "#ops"
message = "x"
"##,
        );
        let text = s.conditions.join(" | ");
        assert!(
            text.contains("payload.freshdesk_webhook.due is on or after \"2026-01-01\""),
            "{text}"
        );
        assert!(
            text.contains("is before \"2026-02-01T00:00:00Z\""),
            "{text}"
        );
    }

    #[test]
    fn disabled_rules_and_allow_self_are_said() {
        let s = sentence(
            r##"
id = "r"
enabled = false
[trigger]
integration = "freshdesk-main"
event = "ticket_created"
allow_self = true
[[actions]]
integration = "freshdesk-main"
action = "change_status"
[actions.parameters]
ticket_id = "{{ ticket.id }}"
status = 4
"##,
        );
        assert!(!s.enabled);
        assert!(s.conditions.is_empty());
        let text = s.to_string();
        assert!(
            text.starts_with("(Disabled) When a ticket is created"),
            "{text}"
        );
        assert!(text.contains("it never fires"), "{text}");
        assert!(text.contains("`allow_self = true`"), "{text}");
        assert!(
            text.contains("set the status of ticket \"{{ ticket.id }}\" to 4 with Freshdesk"),
            "{text}"
        );
    }

    #[test]
    fn hostile_values_cannot_break_the_sentence() {
        let s = sentence(
            "id = \"r\"\n[trigger]\nintegration = \"freshdesk-main\"\nevent = \"ticket_created\"\n\
             [trigger.conditions]\n\"ticket.subject\" = \"a\\\"b\\n<script>alert(1)</script>\\u202Eevil\\u0000\"\n\
             \"payload.x[\\\"we\\\\\\\"ird\\\"]\" = { exists = true }\n\
             [[actions]]\nintegration = \"slack-main\"\naction = \"send_message\"\n\
             [actions.parameters]\nchannel = \"#ops\\n and delete everything\"\nmessage = \"x\"\n",
        );
        let text = s.to_string();
        // One line, the quote inside the value escaped, the invisible characters visible.
        assert!(!text.contains('\n'), "{text}");
        assert!(!text.contains('\u{202e}') && !text.contains('\0'), "{text}");
        assert!(
            text.contains(r##"subject is "a\"b\n<script>alert(1)</script>\u{202e}evil\u{0}""##),
            "{text}"
        );
        assert!(
            text.contains(r##"post a message to "#ops\n and delete everything""##),
            "{text}"
        );
        assert!(text.contains("payload.x[\"we\\\"ird\"] is set"), "{text}");
        // Long values are cut.
        let long = "y".repeat(500);
        let s = sentence(&format!(
            "id = \"r\"\n[trigger]\nintegration = \"freshdesk-main\"\nevent = \"ticket_created\"\n\
             [trigger.conditions]\n\"ticket.subject\" = \"{long}\"\n\
             [[actions]]\nintegration = \"slack-main\"\naction = \"send_message\"\n\
             [actions.parameters]\nchannel = \"#ops\"\nmessage = \"x\"\n"
        ));
        assert!(s.conditions[0].len() < 120, "{}", s.conditions[0]);
        assert!(s.conditions[0].ends_with("…\""), "{}", s.conditions[0]);
    }

    #[test]
    fn every_catalogued_event_and_action_has_a_phrase() {
        for kind in PlatformKind::ALL {
            let d = kind.descriptor();
            for e in d.events {
                assert!(
                    phrase_of(EVENT_PHRASES, kind, e.name).is_some(),
                    "no phrase for event {} of {}",
                    e.name,
                    kind.as_str()
                );
            }
            for a in d.actions {
                let phrase = phrase_of(ACTION_PHRASES, kind, a.name).unwrap_or_else(|| {
                    panic!("no phrase for action {} of {}", a.name, kind.as_str())
                });
                // Every placeholder names a parameter of the action; outside `[…]`, a
                // required one.
                let mut optional = false;
                let mut name = None::<String>;
                for c in phrase.chars() {
                    match (c, &mut name) {
                        ('[', None) => optional = true,
                        (']', None) => optional = false,
                        ('{', None) => name = Some(String::new()),
                        ('}', Some(n)) => {
                            let p = a.params.iter().find(|p| p.name == n.as_str());
                            let p = p.unwrap_or_else(|| {
                                panic!("{}.{}: no parameter {n}", kind.as_str(), a.name)
                            });
                            assert!(
                                optional || p.required,
                                "{}.{}: {n} is optional, put it in […]",
                                kind.as_str(),
                                a.name
                            );
                            name = None;
                        }
                        (c, Some(n)) => n.push(c),
                        _ => {}
                    }
                }
            }
        }
        // No phrase for something the catalogue does not have.
        for (kind, name, _) in EVENT_PHRASES {
            assert!(kind.descriptor().event(name).is_some(), "{name}");
        }
        for (kind, name, _) in ACTION_PHRASES {
            assert!(kind.descriptor().action(name).is_some(), "{name}");
        }
    }

    #[test]
    fn descriptions_fall_back_to_the_catalogue() {
        assert_eq!(
            fallback("Create a ticket (POST /api/v2/tickets)", false),
            "create a ticket"
        );
        assert_eq!(
            fallback("A page was locked against editing.", true),
            "this happens: a page was locked against editing"
        );
        let params = serde_json::Map::new();
        assert_eq!(fill("post[ to {channel}]", &params), "post");
        assert_eq!(fill("move {id_card}", &params), "move (not set)");
    }
}
