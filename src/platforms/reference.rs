//! The platform reference (`docs/platforms.md`), rendered from the catalogue so the documentation
//! cannot drift from what `validate` accepts. A test fails when the committed file differs.

use std::fmt::Write as _;

use super::{Actors, EventSpec, ParamSpec, ParamType, PlatformKind, WebhookSecret};

fn param_type(ty: &ParamType) -> String {
    match ty {
        ParamType::String => "string".into(),
        ParamType::Integer => "integer".into(),
        ParamType::Number => "number".into(),
        ParamType::Bool => "boolean".into(),
        ParamType::StringList => "list of strings".into(),
        ParamType::Object => "table".into(),
        ParamType::ObjectList => "list of tables".into(),
        ParamType::Any => "any".into(),
        ParamType::Enum(v) => v
            .iter()
            .map(|x| format!("`{x}`"))
            .collect::<Vec<_>>()
            .join(" \\| "),
        ParamType::Code(c) => c
            .iter()
            .map(|(n, v)| format!("`{v}`/`{n}`"))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

fn params_table(out: &mut String, params: &[ParamSpec]) {
    let _ = writeln!(
        out,
        "| name | type | required | description |\n|---|---|---|---|"
    );
    for p in params {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            p.name,
            param_type(&p.ty),
            if p.required { "yes" } else { "no" },
            cell(p.description)
        );
    }
}

/// Who supportopsd is on an integration of `kind`: the identities the connection check reports
/// (`Connector::check`'s identity and `other_identities`), which the loop guard compares with
/// an event's actors.
fn identities(kind: PlatformKind) -> &'static str {
    match kind {
        PlatformKind::Slack => {
            "the app's bot user id (`U…`) and its bot id (`B…`), from `auth.test`"
        }
        PlatformKind::Zendesk => {
            "the id of the user the API credentials belong to (`GET /api/v2/users/me`)"
        }
        PlatformKind::Freshdesk => {
            "the agent id of the API key (`GET /api/v2/agents/me`), compared with the rule body's `performer_id` (`{{event_performer.id}}`; unconfirmed, see docs/integrations/freshdesk.md)"
        }
        PlatformKind::Trello => "the member id of the token (`GET /1/members/me`)",
        PlatformKind::Notion => "the integration's bot user id (`GET /v1/users/me`)",
        PlatformKind::GoogleSheets => "not compared: no Sheets event names an actor",
        PlatformKind::Supportopsd => "`supportopsd`",
    }
}

/// The line naming who caused `event` (its catalogue `actors`).
fn actors_line(event: &EventSpec) -> String {
    let list = |paths: &[&str]| -> String {
        paths
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match event.actors {
        Actors::Each(p) => format!(
            "Actors (loop guard): {}; the event is supportopsd's own when any of them is.",
            list(p)
        ),
        Actors::Joint(p) => format!(
            "Actors (loop guard): {}; the event is supportopsd's own only when every author is.",
            list(p)
        ),
        Actors::Always(id) => format!("Actors (loop guard): always `{id}`."),
        Actors::Nobody(why) => {
            format!("Actors (loop guard): none: {why}. The loop guard does not apply.")
        }
    }
}

/// How each configuration of a platform delivers `event` (the catalogue's `Delivery`): one
/// line per mode that delivers fewer fields, enriches some, or refuses the event.
fn deliveries(out: &mut String, kind: PlatformKind, config: &[ParamSpec], event: &EventSpec) {
    let mut configs = vec![serde_json::Map::new()];
    for p in config {
        if let ParamType::Enum(values) = p.ty {
            for v in values {
                let mut c = serde_json::Map::new();
                c.insert(p.name.to_owned(), serde_json::Value::from(*v));
                configs.push(c);
            }
        }
    }
    let mut seen: Vec<&'static str> = Vec::new();
    let list = |fields: &[&str]| {
        fields
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for c in &configs {
        let Some(d) = kind.delivery(event, c) else {
            continue;
        };
        if seen.contains(&d.mode) {
            continue;
        }
        seen.push(d.mode);
        if let Some(why) = d.refused {
            let _ = writeln!(out, "\nWith {}: **refused by `validate`**. {why}", d.mode);
            continue;
        }
        let mut parts = Vec::new();
        if !d.absent.is_empty() {
            parts.push(format!(
                "never delivered (`validate` refuses them): {}",
                list(d.absent)
            ));
        }
        if !d.enriched.is_empty() {
            parts.push(format!(
                "fetched by the enrichment step when a rule reads them ({}): {}",
                d.enrichment_calls
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                list(d.enriched)
            ));
        }
        if parts.is_empty() {
            parts.push("every field is delivered".to_owned());
        }
        let _ = writeln!(out, "\nWith {}: {}.", d.mode, parts.join("; "));
    }
}

/// Renders the whole reference as markdown.
pub fn markdown() -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Platform reference\n\n\
         Generated from the catalogue compiled into `supportopsd` (a test keeps this file fresh).\n\
         Every action parameter may also be a template string such as `\"{{{{ ticket.id }}}}\"`."
    );
    for kind in PlatformKind::ALL {
        let d = kind.descriptor();
        let _ = writeln!(
            out,
            "\n## {} (`platform = \"{}\"`)\n",
            d.title,
            kind.as_str()
        );
        if kind.is_builtin() {
            let _ = writeln!(
                out,
                "Built in: supportopsd emits these events itself. No credentials, no `[webhook]`, \
                 no actions; nothing from outside may deliver them (see `docs/alerts.md`).\n"
            );
        }
        if d.credentials.is_empty() {
            let _ = writeln!(out, "### Credentials\n\nNone.");
        } else {
            let _ = writeln!(
                out,
                "### Credentials\n\n| field | secret | required | description |\n|---|---|---|---|"
            );
        }
        for c in d.credentials {
            let required = if d.credential_sets.is_empty() {
                if c.required { "yes" } else { "no" }
            } else if d.credential_sets.iter().all(|s| s.contains(&c.name)) {
                "yes"
            } else {
                "in one set"
            };
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} |",
                c.name,
                if c.secret { "yes" } else { "no" },
                required,
                cell(c.description)
            );
        }
        if !d.credential_sets.is_empty() {
            let sets: Vec<String> = d
                .credential_sets
                .iter()
                .map(|s| {
                    s.iter()
                        .map(|f| format!("`{f}`"))
                        .collect::<Vec<_>>()
                        .join(" + ")
                })
                .collect();
            let _ = writeln!(out, "\nGive one complete set: {}.", sets.join(", or "));
        }
        if d.webhook_secret == WebhookSecret::Optional {
            let _ = writeln!(
                out,
                "\n`[webhook] secret` may be given (a secret reference)."
            );
        }
        if !d.config.is_empty() {
            let _ = writeln!(out, "\n### Config (`[config]`)\n");
            params_table(&mut out, d.config);
        }
        let _ = writeln!(out, "\n### Events\n");
        let _ = writeln!(
            out,
            "Loop guard: supportopsd's identity on the integration: {}. An event the actors \
             named below say supportopsd caused runs only the rules that say \
             `allow_self = true` in `[trigger]`.\n",
            identities(kind)
        );
        for e in d.events {
            let note = if e.deliverable {
                ""
            } else {
                " **(cannot be delivered; `validate` refuses it)**"
            };
            let _ = writeln!(out, "#### `{}`{note}\n\n{}\n", e.name, e.description);
            let _ = writeln!(
                out,
                "Primary object: `{}` (bare condition keys are its fields).\n",
                e.primary
            );
            let fields: Vec<String> = e
                .fields
                .iter()
                .map(|f| format!("`{}` ({:?})", f.path, f.ty).to_lowercase())
                .collect();
            let _ = writeln!(out, "Fields: {}.", fields.join(", "));
            if !e.changes.is_empty() {
                let ch: Vec<String> = e.changes.iter().map(|c| format!("`{c}`")).collect();
                let _ = writeln!(out, "\nReports changes of: {}.", ch.join(", "));
            }
            let _ = writeln!(out, "\n{}", actors_line(e));
            deliveries(&mut out, kind, d.config, e);
            out.push('\n');
        }
        let _ = writeln!(out, "### Actions\n");
        if d.actions.is_empty() {
            let _ = writeln!(out, "None.\n");
        }
        for a in d.actions {
            let _ = writeln!(out, "#### `{}`\n\n{}\n", a.name, a.description);
            params_table(&mut out, a.params);
            for g in a.require_one_of {
                let g: Vec<String> = g.iter().map(|x| format!("`{x}`")).collect();
                let _ = writeln!(out, "\nNeeds at least one of {}.", g.join(", "));
            }
            if !a.result.is_empty() {
                let r: Vec<String> = a.result.iter().map(|f| format!("`{}`", f.path)).collect();
                let _ = writeln!(
                    out,
                    "\nResult fields (for `actions[N].result.…`): {}.",
                    r.join(", ")
                );
            }
            let resend = d.resend(a.name);
            if resend != crate::platforms::Resend::Safe {
                let _ = writeln!(
                    out,
                    "\nAfter a lost answer (5xx, timeout): {}.",
                    resend.describe()
                );
            }
            out.push('\n');
        }
    }
    out
}
