//! Pseudonymisation of a delivery's payload before it leaves the state as a file (a rule test
//! fixture written by `supportopsd events fixture`, later a plan corpus): emails, phone numbers
//! and personal names are each replaced by one stand-in, the same everywhere in the value (in
//! the fields that hold them and inside any text that mentions them), in a deterministic order
//! (the same payload always gives the same file); credentials a platform puts in its bodies
//! (Slack's `token`, Notion's `verification_token`: any key [`secrets::is_credential_name`]
//! marks, named like a token, secret, password, API key, signature, cookie…) are replaced
//! whatever the options; ticket text is kept, or replaced with [`Options::scrub_text`].
//!
//! What counts as what:
//! - an **email** is any `local@domain.tld` in any string; its stand-in keeps the domain (rules
//!   route on it): `dana.whitfield@acme.com` → `person1@acme.com`;
//! - a **phone number** is the value of a phone field (`phone`, `mobile`, `work_phone`, …) and,
//!   inside text, a number written `+CC …` or `(555) 123-4567` / `555-123-4567`;
//! - a **personal name** is the value of a name field (`first_name`, `requester_name`,
//!   `real_name`, `display_name`, `fullName`, `username`, …) or of a plain `name` field of an
//!   object that stands for a person (under `requester`, `assignee`, `user`, `author`, …, or
//!   beside an email or phone field, or a Notion `user` object); each of its words gets a
//!   stand-in (`Dana Whitfield` → `Name1 Name2`), so `Hi Dana` in text becomes `Hi Name1`.
//!   Words are matched whole and case-sensitively; a Trello card's or a board's `name` is not
//!   a person and stays.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;

use regex::Regex;
use serde_json::{Map, Value};

use crate::secrets;

/// What to replace besides personal data and credentials.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Replace ticket text too (subjects, descriptions, comment bodies, message text): rules
    /// that match on it then see the placeholder.
    pub scrub_text: bool,
}

/// The stand-in of scrubbed ticket text.
pub const TEXT_REMOVED: &str = "[text removed]";
/// The stand-in of a credential.
pub const REDACTED: &str = "[redacted]";

/// A pseudonymised value and what was replaced.
#[derive(Debug, Clone, PartialEq)]
pub struct Pseudonymised {
    /// The value with every replacement made.
    pub value: Value,
    /// Distinct emails replaced.
    pub emails: usize,
    /// Distinct phone numbers replaced.
    pub phones: usize,
    /// Distinct name words replaced.
    pub names: usize,
    /// Credential fields replaced.
    pub credentials: usize,
    /// Text fields replaced ([`Options::scrub_text`]).
    pub texts: usize,
}

/// Replaces personal data and credentials in `value` (see the module doc).
pub fn pseudonymise(value: &Value, options: Options) -> Pseudonymised {
    let mut found = Found::default();
    collect(value, None, false, &mut found);
    let table = Table::build(&found);
    let mut out = Pseudonymised {
        value: Value::Null,
        emails: found.emails.len(),
        phones: found.phones.len(),
        names: table.names,
        credentials: 0,
        texts: 0,
    };
    out.value = rewrite(value, None, options, &table, &mut out);
    out
}

/// Replaces only the credential fields of `value` (what an API response that shows a stored
/// payload does); returns how many.
pub fn scrub_credentials(value: &mut Value) -> usize {
    match value {
        Value::Object(m) => m
            .iter_mut()
            .map(|(k, v)| {
                if is_credential(&norm(k)) && !matches!(v, Value::Null | Value::Object(_)) {
                    *v = Value::String(REDACTED.to_owned());
                    1
                } else {
                    scrub_credentials(v)
                }
            })
            .sum(),
        Value::Array(a) => a.iter_mut().map(scrub_credentials).sum(),
        _ => 0,
    }
}

static EMAIL: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"(?i)[a-z0-9._%+\-]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,}").ok()
});

static PHONE_IN_TEXT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r"\+\d[\d ().\-]{6,}\d|\(\d{3}\) ?\d{3}[ .\-]\d{4}\b|\b\d{3}[.\-]\d{3}[.\-]\d{4}\b")
        .ok()
});

/// A key lower-cased without `_`, `-` and spaces: `first_name`, `firstName` → `firstname`.
fn norm(key: &str) -> String {
    key.chars()
        .filter(|c| !matches!(c, '_' | '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Keys whose string value is always a personal name.
const NAME_KEYS: &[&str] = &[
    "firstname",
    "lastname",
    "middlename",
    "givenname",
    "familyname",
    "surname",
    "nickname",
    "fullname",
    "realname",
    "displayname",
    "realnamenormalized",
    "displaynamenormalized",
    "username",
    "screenname",
    "requestername",
    "requestorname",
    "agentname",
    "assigneename",
    "respondername",
    "authorname",
    "contactname",
    "customername",
    "sendername",
    "submittername",
    "creatorname",
    "ownername",
    "reportername",
    "membername",
    "personname",
    "fromname",
    "toname",
];

/// Keys of an object that stands for a person (its plain `name` is a personal name).
const PERSON_KEYS: &[&str] = &[
    "requester",
    "requestor",
    "assignee",
    "submitter",
    "author",
    "user",
    "users",
    "member",
    "members",
    "membercreator",
    "creator",
    "owner",
    "agent",
    "responder",
    "contact",
    "customer",
    "person",
    "people",
    "sender",
    "from",
    "to",
    "cc",
    "bcc",
    "recipient",
    "recipients",
    "collaborators",
    "followers",
    "createdby",
    "lasteditedby",
    "updatedby",
    "actor",
    "profile",
    "currentuser",
];

/// Keys whose value is a phone number.
const PHONE_KEYS: &[&str] = &[
    "phone",
    "phonenumber",
    "mobile",
    "mobilephone",
    "workphone",
    "homephone",
    "telephone",
    "tel",
    "fax",
    "cell",
    "cellphone",
    "requesterphone",
    "requestermobile",
    "contactphone",
];

/// Keys of ticket text (after a `ticket`, `latest` or `last` prefix).
const TEXT_KEYS: &[&str] = &[
    "subject",
    "description",
    "descriptiontext",
    "descriptionhtml",
    "desc",
    "body",
    "bodytext",
    "bodyhtml",
    "htmlbody",
    "plainbody",
    "text",
    "plaintext",
    "comment",
    "commentbody",
    "publiccomment",
    "message",
    "content",
    "note",
    "notes",
    "title",
];

/// Whether a (normalised) key holds a credential: the one rule of [`secrets::is_credential_name`].
fn is_credential(k: &str) -> bool {
    secrets::is_credential_name(k)
}

fn is_text(k: &str) -> bool {
    let bare = ["ticket", "latest", "last"]
        .iter()
        .find_map(|p| k.strip_prefix(p).filter(|rest| !rest.is_empty()))
        .unwrap_or(k);
    TEXT_KEYS.contains(&bare)
}

/// Whether an object stands for a person: under a person key, beside an email or phone field,
/// or a Notion/Slack user object.
fn is_person(parent: Option<&str>, m: &Map<String, Value>) -> bool {
    parent.is_some_and(|p| PERSON_KEYS.contains(&p))
        || m.keys().any(|k| {
            let k = norm(k);
            k == "email" || PHONE_KEYS.contains(&k.as_str())
        })
        || m.get("object").and_then(Value::as_str) == Some("user")
}

/// What the first walk found, in the order found.
#[derive(Debug, Default)]
struct Found {
    /// Lower-cased.
    emails: Vec<String>,
    phones: Vec<String>,
    /// Whole name values.
    names: Vec<String>,
    seen: BTreeSet<(u8, String)>,
}

impl Found {
    fn add(&mut self, kind: u8, v: &str) {
        let v = v.trim();
        if v.is_empty() || !self.seen.insert((kind, v.to_owned())) {
            return;
        }
        match kind {
            0 => self.emails.push(v.to_owned()),
            1 => self.phones.push(v.to_owned()),
            _ => self.names.push(v.to_owned()),
        }
    }

    fn scan_text(&mut self, s: &str) {
        if let Some(re) = EMAIL.as_ref() {
            for m in re.find_iter(s) {
                self.add(0, &m.as_str().to_lowercase());
            }
        }
        if let Some(re) = PHONE_IN_TEXT.as_ref() {
            for m in re.find_iter(s) {
                self.add(1, m.as_str());
            }
        }
    }
}

fn collect(v: &Value, key: Option<&str>, person: bool, found: &mut Found) {
    match v {
        Value::Object(m) => {
            let person = is_person(key, m);
            for (k, child) in m {
                let nk = norm(k);
                if is_credential(&nk) {
                    continue;
                }
                collect(child, Some(&nk), person, found);
            }
        }
        Value::Array(a) => {
            for child in a {
                // An array under a person key holds persons (`people`, `cc`).
                collect(child, key, person, found);
            }
        }
        Value::String(s) => {
            if let Some(k) = key {
                if PHONE_KEYS.contains(&k) {
                    found.add(1, s);
                } else if (NAME_KEYS.contains(&k) || (k == "name" && person))
                    && !EMAIL.as_ref().is_some_and(|re| re.is_match(s))
                {
                    found.add(2, s);
                }
            }
            found.scan_text(s);
        }
        Value::Number(n) if key.is_some_and(|k| PHONE_KEYS.contains(&k)) => {
            found.add(1, &n.to_string());
        }
        _ => {}
    }
}

/// The replacements: each original and its stand-in, and one pattern that finds them all.
#[derive(Debug, Default)]
struct Table {
    /// Emails by lower-cased original.
    emails: HashMap<String, String>,
    /// Phone numbers and name words by original.
    exact: HashMap<String, String>,
    pattern: Option<Regex>,
    names: usize,
}

impl Table {
    fn build(found: &Found) -> Table {
        let mut t = Table::default();
        for (i, e) in found.emails.iter().enumerate() {
            let domain = e.rsplit_once('@').map_or("example.com", |(_, d)| d);
            t.emails
                .insert(e.clone(), format!("person{}@{domain}", i + 1));
        }
        for (i, p) in found.phones.iter().enumerate() {
            t.exact
                .insert(p.clone(), format!("+1-555-01{:02}", (i + 1) % 100));
        }
        let mut words = BTreeMap::new();
        let mut order = Vec::new();
        for name in &found.names {
            for w in name.split(|c: char| c.is_whitespace() || matches!(c, ',' | '(' | ')')) {
                let w = w.trim_matches(|c: char| !c.is_alphanumeric());
                if w.chars().count() < 2 || words.contains_key(w) {
                    continue;
                }
                words.insert(w.to_owned(), ());
                order.push(w.to_owned());
            }
        }
        t.names = order.len();
        for (i, w) in order.iter().enumerate() {
            t.exact.insert(w.clone(), format!("Name{}", i + 1));
        }
        // Longest first, so a longer original wins over one it contains.
        let mut alternatives: Vec<(usize, String)> = t
            .emails
            .keys()
            .map(|e| (e.len(), format!("(?i:{})", regex::escape(e))))
            .chain(found.phones.iter().map(|p| (p.len(), regex::escape(p))))
            .chain(
                order
                    .iter()
                    .map(|w| (w.len(), format!(r"\b{}\b", regex::escape(w)))),
            )
            .collect();
        alternatives.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        if !alternatives.is_empty() {
            let joined: Vec<String> = alternatives.into_iter().map(|(_, a)| a).collect();
            t.pattern = Regex::new(&joined.join("|")).ok();
        }
        t
    }

    fn replace(&self, s: &str) -> String {
        let Some(re) = &self.pattern else {
            return s.to_owned();
        };
        re.replace_all(s, |c: &regex::Captures<'_>| {
            let m = c.get(0).map_or("", |m| m.as_str());
            self.exact
                .get(m)
                .or_else(|| self.emails.get(&m.to_lowercase()))
                .cloned()
                .unwrap_or_else(|| m.to_owned())
        })
        .into_owned()
    }
}

fn rewrite(
    v: &Value,
    key: Option<&str>,
    options: Options,
    table: &Table,
    out: &mut Pseudonymised,
) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, child)| {
                    let nk = norm(k);
                    let new = if is_credential(&nk) && !matches!(child, Value::Null) {
                        if matches!(child, Value::Object(_) | Value::Array(_)) {
                            rewrite(child, Some(&nk), options, table, out)
                        } else {
                            out.credentials += 1;
                            Value::String(REDACTED.to_owned())
                        }
                    } else {
                        rewrite(child, Some(&nk), options, table, out)
                    };
                    (table.replace(k), new)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|c| rewrite(c, key, options, table, out))
                .collect(),
        ),
        Value::String(s) => {
            if options.scrub_text && !s.is_empty() && key.is_some_and(is_text) {
                out.texts += 1;
                Value::String(TEXT_REMOVED.to_owned())
            } else {
                Value::String(table.replace(s))
            }
        }
        Value::Number(n) if key.is_some_and(|k| PHONE_KEYS.contains(&k)) => {
            Value::String(table.replace(&n.to_string()))
        }
        other => other.clone(),
    }
}

/// What kind of stand-in a string holds: the ones [`pseudonymise`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StandIn {
    /// `person1@acme.com`: an email's local part was replaced (its domain is real).
    Email,
    /// `+1-555-0101`: a phone number.
    Phone,
    /// `Name1`: a word of a personal name.
    Name,
    /// [`TEXT_REMOVED`]: ticket text scrubbed ([`Options::scrub_text`]).
    Text,
    /// [`REDACTED`]: a credential.
    Credential,
}

impl StandIn {
    /// In words.
    pub fn as_str(self) -> &'static str {
        match self {
            StandIn::Email => "pseudonymised email",
            StandIn::Phone => "pseudonymised phone number",
            StandIn::Name => "pseudonymised name",
            StandIn::Text => "scrubbed text",
            StandIn::Credential => "redacted credential",
        }
    }
}

static STAND_IN: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r"(?i:\bperson\d+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)*\.[a-z]{2,})|(\+1-555-01\d\d)|(\bName\d+\b)",
    )
    .ok()
});

/// Whether `s` holds one of the stand-ins [`pseudonymise`] writes (an email `personN@domain`,
/// a phone `+1-555-01NN`, a name word `NameN`, [`TEXT_REMOVED`], [`REDACTED`]), and which
/// (the first found). A condition that reads such a value decides on the stand-in, not on what
/// the platform sent: a replay of it is approximate.
pub fn stand_in(s: &str) -> Option<StandIn> {
    if s.contains(TEXT_REMOVED) {
        return Some(StandIn::Text);
    }
    if s == REDACTED {
        return Some(StandIn::Credential);
    }
    let re = STAND_IN.as_ref()?;
    let c = re.captures(s)?;
    Some(if c.get(1).is_some() {
        StandIn::Phone
    } else if c.get(2).is_some() {
        StandIn::Name
    } else {
        StandIn::Email
    })
}

/// The first stand-in in `v` (a string, or any string inside an array or object).
pub fn stand_in_value(v: &Value) -> Option<StandIn> {
    match v {
        Value::String(s) => stand_in(s),
        Value::Array(items) => items.iter().find_map(stand_in_value),
        Value::Object(m) => m.values().find_map(stand_in_value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text_of(v: &Value) -> String {
        serde_json::to_string(v).unwrap()
    }

    #[test]
    fn its_own_stand_ins_are_recognised_and_real_values_are_not() {
        let payload = json!({
            "requester": {"name": "Dana Whitfield", "email": "dana@acme.com", "phone": "+44 20 7946 0958"},
            "description": "Call Dana",
            "token": "xoxb-1"
        });
        let p = pseudonymise(&payload, Options { scrub_text: true }).value;
        assert_eq!(
            stand_in_value(&p["requester"]["email"]),
            Some(StandIn::Email)
        );
        assert_eq!(stand_in_value(&p["requester"]["name"]), Some(StandIn::Name));
        assert_eq!(
            stand_in_value(&p["requester"]["phone"]),
            Some(StandIn::Phone)
        );
        assert_eq!(stand_in_value(&p["description"]), Some(StandIn::Text));
        assert_eq!(stand_in_value(&p["token"]), Some(StandIn::Credential));
        for real in [
            "dana@acme.com",
            "Dana Whitfield",
            "+44 20 7946 0958",
            "Names",
            "Printer offline",
            "personal@x.com",
        ] {
            assert_eq!(stand_in(real), None, "{real}");
        }
    }

    #[test]
    fn emails_phones_and_names_are_replaced_everywhere_with_one_stand_in() {
        let payload = json!({
            "freshdesk_webhook": {
                "requester_name": "Dana Whitfield",
                "requester_email": "Dana.Whitfield@acme.com",
                "requester_phone": "+44 20 7946 0018",
                "ticket_subject": "Dana Whitfield cannot log in",
                "ticket_description": "Call me on +44 20 7946 0018 or mail dana.whitfield@acme.com. Thanks, Dana",
                "agent_email": "ops@acme.com",
            }
        });
        let p = pseudonymise(&payload, Options::default());
        let text = text_of(&p.value);
        for original in [
            "Dana",
            "Whitfield",
            "dana.whitfield",
            "7946",
            "ops@acme.com",
        ] {
            assert!(!text.contains(original), "{original} left in {text}");
        }
        let w = &p.value["freshdesk_webhook"];
        assert_eq!(w["requester_name"], "Name1 Name2");
        // Numbered in the order found (keys in order): the agent's address comes first.
        assert_eq!(w["agent_email"], "person1@acme.com");
        assert_eq!(w["requester_email"], "person2@acme.com");
        assert_eq!(w["requester_phone"], "+1-555-0101");
        assert_eq!(w["ticket_subject"], "Name1 Name2 cannot log in");
        assert_eq!(
            w["ticket_description"],
            "Call me on +1-555-0101 or mail person2@acme.com. Thanks, Name1"
        );
        assert_eq!((p.emails, p.phones, p.names), (2, 1, 2));
        // Deterministic.
        assert_eq!(pseudonymise(&payload, Options::default()), p);
    }

    #[test]
    fn a_plain_name_is_personal_only_on_a_person() {
        let payload = json!({
            "action": {
                "data": {"card": {"name": "Customer cannot reset password"}, "board": {"name": "Support"}},
                "memberCreator": {"fullName": "Marta Ops", "username": "marta_ops", "name": "Marta Ops"}
            },
            "requester": {"name": "Priya Raman", "email": "priya@example.com"},
            "people": [{"object": "user", "name": "Ilse Brandt"}],
            "tags": ["Marta"]
        });
        let p = pseudonymise(&payload, Options::default());
        let text = text_of(&p.value);
        assert_eq!(
            p.value["action"]["data"]["card"]["name"],
            "Customer cannot reset password"
        );
        assert_eq!(p.value["action"]["data"]["board"]["name"], "Support");
        for original in [
            "Marta",
            "marta_ops",
            "Priya",
            "Raman",
            "Ilse",
            "Brandt",
            "priya@",
        ] {
            assert!(!text.contains(original), "{original} left in {text}");
        }
        assert_eq!(
            p.value["tags"][0],
            p.value["action"]["memberCreator"]["fullName"]
                .as_str()
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
        );
    }

    #[test]
    fn credentials_are_redacted_and_text_kept_unless_scrubbed() {
        let payload = json!({
            "token": "one-long-verification-token",
            "verification_token": "secret_abc",
            "event": {"text": "printer on fire", "user": "U1"},
            "api_key": 12345,
            "nested": {"access_token": "xoxb-1", "client_secret": null},
        });
        let p = pseudonymise(&payload, Options::default());
        let text = text_of(&p.value);
        for secret in [
            "one-long-verification-token",
            "secret_abc",
            "xoxb-1",
            "12345",
        ] {
            assert!(!text.contains(secret), "{secret} left in {text}");
        }
        assert_eq!(p.credentials, 4);
        assert_eq!(p.value["event"]["text"], "printer on fire");
        let scrubbed = pseudonymise(&payload, Options { scrub_text: true });
        assert_eq!(scrubbed.value["event"]["text"], TEXT_REMOVED);
        assert_eq!(scrubbed.value["event"]["user"], "U1");
        assert_eq!(scrubbed.texts, 1);

        let mut v = payload.clone();
        assert_eq!(scrub_credentials(&mut v), 4);
        assert_eq!(v["event"]["text"], "printer on fire");
        assert!(!text_of(&v).contains("xoxb-1"));
    }

    #[test]
    fn ids_timestamps_and_numbers_are_not_phone_numbers() {
        let payload = json!({
            "ts": "1720614000.000500",
            "time": "2099-07-11T08:15:00Z",
            "ticket": {"id": "35437", "organization_id": "6607619104125"},
            "text": "order 2024-11-0042, ticket #4021, ip 10.0.0.1, (555) 123-4567"
        });
        let p = pseudonymise(&payload, Options::default());
        assert_eq!(p.value["ts"], payload["ts"]);
        assert_eq!(p.value["time"], payload["time"]);
        assert_eq!(p.value["ticket"], payload["ticket"]);
        assert_eq!(
            p.value["text"],
            "order 2024-11-0042, ticket #4021, ip 10.0.0.1, +1-555-0101"
        );
    }
}
