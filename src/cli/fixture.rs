//! `supportopsd events fixture ID… --to DIR` (and `--raw FILE --integration I --event E`): a
//! real delivery becomes a rule test. Each stored delivery is read through a running daemon's
//! API (`GET /api/events/{id}/payload`) or, when none answers, from `--state`; a saved raw
//! delivery is read from its file, without a daemon. Its payload — with what the daemon's
//! enrichment step added under [`produce::ENRICHED_KEY`] — is pseudonymised
//! ([`corpus::pseudonymise_delivery`], as `events export` does: emails, phone numbers and
//! personal names replaced, credentials always, ticket text with `--scrub-text`) and written as a fixture under `DIR/fixtures/`; a
//! case asserting what the repository's rules produce on that written payload (computed by the
//! same code `supportopsd test` runs) is appended to `DIR/<--file>`. When the repository's rules
//! decide differently from what the daemon did with the delivery, the output says so.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde_json::{Map, Value};

use super::{Exit, GlobalArgs, Target, load_or_report};
use crate::event::corpus;
use crate::event::pseudonym::Options;
use crate::manifest::produce;
use crate::manifest::{IntegrationId, ManifestSet};
use crate::state::{EventId, State};
use crate::testing;

/// Write deliveries as rule test fixtures and cases.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Stored deliveries (`evt_<n>`, from `events list` or the audit log).
    #[arg(value_name = "ID", required_unless_present = "raw")]
    pub ids: Vec<String>,
    /// The repository's tests folder (e.g. `tests`): the fixtures go to its `fixtures/`, the
    /// cases to `--file` in it.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// The test file (in `--to`) the cases are appended to; created when missing.
    #[arg(long, value_name = "NAME", default_value = "events.toml")]
    pub file: String,
    /// A saved raw delivery (its JSON body) instead of stored ones; needs `--integration` and
    /// `--event`.
    #[arg(long, value_name = "FILE", conflicts_with = "ids", requires_all = ["integration", "event"])]
    pub raw: Option<PathBuf>,
    /// The integration a raw delivery arrived on.
    #[arg(long, value_name = "I", requires = "raw")]
    pub integration: Option<String>,
    /// The event a raw delivery is (its catalogue name, e.g. `ticket_created`).
    #[arg(long, value_name = "E", requires = "raw")]
    pub event: Option<String>,
    /// Replace ticket text (subjects, descriptions, comment and message text) too; rules that
    /// match on it then see `[text removed]`.
    #[arg(long)]
    pub scrub_text: bool,
    /// Where to find the daemon.
    #[command(flatten)]
    pub target: Target,
}

/// One delivery to write.
struct Delivery {
    /// What names it: `evt_12`, or the raw file's stem.
    label: String,
    integration: String,
    event: String,
    /// The raw payload (credentials already replaced when it came from the daemon).
    payload: Value,
    /// The stored (possibly enriched) objects, for what enrichment added.
    objects: Option<Map<String, Value>>,
    /// The rules the daemon matched, and under which revision.
    daemon: Option<(Vec<String>, Option<String>)>,
    /// When it was received, RFC 3339.
    received_at: Option<String>,
}

/// Runs `events fixture`.
pub fn run(args: &Args, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let Some(set) = load_or_report(g, None)? else {
        return Ok(Exit::Failure);
    };
    let deliveries = match &args.raw {
        Some(file) => vec![raw_delivery(args, file)?],
        None => stored_deliveries(args, g)?,
    };
    let options = Options {
        scrub_text: args.scrub_text,
    };
    let fixtures = args.to.join("fixtures");
    std::fs::create_dir_all(&fixtures)
        .with_context(|| format!("creating {}", fixtures.display()))?;
    let test_file = args.to.join(&args.file);
    let mut written = Vec::new();
    let mut failed = false;
    for d in &deliveries {
        match write_one(&set, d, options, &fixtures, &test_file) {
            Ok(name) => written.push(name),
            Err(e) => {
                failed = true;
                eprintln!("error: {}: {e:#}", d.label);
            }
        }
    }
    if !written.is_empty() {
        check_written(g, args, &written)?;
    }
    Ok(if failed { Exit::Failure } else { Exit::Ok })
}

fn raw_delivery(args: &Args, file: &Path) -> anyhow::Result<Delivery> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let payload: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a JSON delivery body", file.display()))?;
    let label = file
        .file_stem()
        .map_or_else(|| "raw".to_owned(), |s| s.to_string_lossy().into_owned());
    Ok(Delivery {
        label,
        integration: args.integration.clone().unwrap_or_default(),
        event: args.event.clone().unwrap_or_default(),
        payload,
        objects: None,
        daemon: None,
        received_at: None,
    })
}

fn stored_deliveries(args: &Args, g: &GlobalArgs) -> anyhow::Result<Vec<Delivery>> {
    let ids = args
        .ids
        .iter()
        .map(|s| s.parse::<EventId>().map_err(anyhow::Error::from))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let base = args.target.base();
    let mut store: Option<Box<dyn State>> = None;
    let mut out = Vec::new();
    for id in ids {
        let url = format!("{base}/api/events/{id}/payload");
        let body = match super::api_call(reqwest::Method::GET, &url)? {
            Some((200, body)) => body,
            Some((404, _)) => bail!("no stored event {id} (unknown, or removed by retention)"),
            Some((code, body)) => return Err(super::unexpected(&base, code, &body, true)),
            None => {
                if store.is_none() {
                    store = Some(super::events::open_state(g)?);
                }
                let Some(state) = store.as_deref() else {
                    bail!("no state");
                };
                match (state.event(id)?, state.event_meta(id)?) {
                    (Some(e), Some(m)) => crate::daemon::api::stored_event_json(&e, &m),
                    _ => bail!("no stored event {id} (unknown, or removed by retention)"),
                }
            }
        };
        out.push(delivery_of(&id.to_string(), &body)?);
    }
    Ok(out)
}

fn delivery_of(label: &str, body: &Value) -> anyhow::Result<Delivery> {
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .with_context(|| format!("the stored event has no `{k}`"))
    };
    let rules = body
        .get("rules")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let revision = body
        .get("revision")
        .and_then(Value::as_str)
        .map(str::to_owned);
    Ok(Delivery {
        label: label.to_owned(),
        integration: text("integration")?,
        event: text("event")?,
        payload: body.get("payload").cloned().unwrap_or(Value::Null),
        objects: body.get("objects").and_then(Value::as_object).cloned(),
        daemon: Some((rules, revision)),
        received_at: body
            .get("received_at")
            .and_then(Value::as_str)
            .map(str::to_owned),
    })
}

/// A file name part from a label: letters, digits, `-` and `_`.
fn slug(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// Writes one delivery's fixture and case; returns the case's name.
fn write_one(
    set: &ManifestSet,
    d: &Delivery,
    options: Options,
    fixtures: &Path,
    test_file: &Path,
) -> anyhow::Result<String> {
    let integration = IntegrationId::parse(&d.integration)
        .map_err(|e| anyhow::anyhow!("integration `{}`: {e}", d.integration))?;
    let Some(i) = set.integrations.get(&integration) else {
        bail!(
            "the repository has no integration `{}` (the case needs it)",
            d.integration
        );
    };
    let platform = i.platform;
    let Some(event) = platform.descriptor().event(&d.event) else {
        bail!(
            "{} has no event `{}` (see `supportopsd schema` or docs/platforms.md)",
            platform.as_str(),
            d.event
        );
    };
    let p = corpus::pseudonymise_delivery(platform, event, &d.payload, d.objects.as_ref(), options);
    let run = produce::produce(set, platform, &integration, event, &p.value);
    if let Some(e) = &run.error {
        bail!("the repository's rules cannot run on it, so no case is written: {e}");
    }
    let file_name = format!("{}-{}.json", slug(&d.integration), slug(&d.label));
    let fixture = fixtures.join(&file_name);
    if fixture.exists() {
        bail!(
            "{} exists already; remove it (and its case) to write it again",
            fixture.display()
        );
    }
    let name = match &d.received_at {
        Some(at) => format!("{} ({} {}, received {at})", d.label, d.integration, d.event),
        None => format!("{} ({} {})", d.label, d.integration, d.event),
    };
    let case = case_toml(&name, &d.integration, &d.event, &file_name, &run.produced);
    std::fs::write(&fixture, serde_json::to_string_pretty(&p.value)? + "\n")
        .with_context(|| format!("writing {}", fixture.display()))?;
    append_case(test_file, &case)?;
    let fired: Vec<String> = run.fired.iter().map(ToString::to_string).collect();
    println!(
        "{}: wrote {} ({} email(s), {} phone number(s), {} name word(s){}{} replaced) and the case \"{name}\" in {}: {}",
        d.label,
        fixture.display(),
        p.emails,
        p.phones,
        p.names,
        if p.credentials > 0 {
            format!(", {} credential(s)", p.credentials)
        } else {
            String::new()
        },
        if p.texts > 0 {
            format!(", {} text(s)", p.texts)
        } else {
            String::new()
        },
        test_file.display(),
        if run.produced.is_empty() {
            "expects no actions".to_owned()
        } else {
            format!(
                "expects {}",
                run.produced
                    .iter()
                    .map(|a| format!("{} → {}", a.rule, a.action))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
    );
    if let Some((rules, revision)) = &d.daemon {
        let ran: Vec<&String> = rules
            .iter()
            .filter(|r| r.as_str() != crate::state::ENRICHMENT)
            .collect();
        let mut a: Vec<&String> = ran.clone();
        let mut b: Vec<&String> = fired.iter().collect();
        a.sort();
        b.sort();
        if a != b {
            println!(
                "  note: the daemon matched {} (revision {}); the repository's rules on the written payload match {}",
                list(&ran),
                revision
                    .as_deref()
                    .map_or("unknown", |r| r.get(..12).unwrap_or(r)),
                list(&fired.iter().collect::<Vec<_>>()),
            );
        }
    }
    Ok(name)
}

fn list(rules: &[&String]) -> String {
    if rules.is_empty() {
        "no rule".to_owned()
    } else {
        rules
            .iter()
            .map(|r| format!("`{r}`"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// JSON as TOML; `None` when it holds what TOML cannot (a null, an integer beyond i64).
fn toml_of(v: &Value) -> Option<toml::Value> {
    Some(match v {
        Value::Null => return None,
        Value::Bool(b) => toml::Value::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => toml::Value::Integer(i),
            None if n.is_f64() => toml::Value::Float(n.as_f64()?),
            None => return None,
        },
        Value::String(s) => toml::Value::String(s.clone()),
        Value::Array(a) => toml::Value::Array(a.iter().map(toml_of).collect::<Option<_>>()?),
        Value::Object(m) => toml::Value::Table(
            m.iter()
                .map(|(k, v)| Some((k.clone(), toml_of(v)?)))
                .collect::<Option<_>>()?,
        ),
    })
}

/// The case as TOML (`[[case]]` …, in the order the examples use): every action with its
/// rendered parameters as an inline table (left out of an action whose parameters TOML cannot
/// hold).
fn case_toml(
    name: &str,
    integration: &str,
    event: &str,
    fixture: &str,
    produced: &[produce::Produced],
) -> String {
    let s = |v: &str| toml::Value::String(v.to_owned()).to_string();
    let mut out = format!(
        "[[case]]\nname = {}\nintegration = {}\nevent = {}\npayload = {}\n",
        s(name),
        s(integration),
        s(event),
        s(&format!("fixtures/{fixture}")),
    );
    if produced.is_empty() {
        out.push_str("expect_none = true\n");
    }
    for a in produced {
        out.push_str(&format!(
            "[[case.expect]]\nrule = {}\naction = {}\n",
            s(a.rule.as_str()),
            s(&a.action)
        ));
        if a.shadow {
            out.push_str("shadow = true\n");
        }
        if let Some(p) = toml_of(&a.parameters) {
            out.push_str(&format!("parameters = {p}\n"));
        }
    }
    out
}

fn append_case(file: &Path, case: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    let existed = file.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(file)
        .with_context(|| format!("opening {}", file.display()))?;
    let head = if existed {
        "\n"
    } else {
        "# Cases written by `supportopsd events fixture` from real deliveries (pseudonymised).\n\n"
    };
    f.write_all(format!("{head}{case}").as_bytes())
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(())
}

/// When `--to` is the repository's tests folder, loads it again and runs the written cases,
/// so a case that would not pass is reported now.
fn check_written(g: &GlobalArgs, args: &Args, names: &[String]) -> anyhow::Result<()> {
    let mut tests = g.repo.clone();
    if let Some(p) = &g.path {
        tests.push(p);
    }
    tests.push("tests");
    let same = match (tests.canonicalize(), args.to.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same {
        println!(
            "the cases are not in the repository's tests/ folder ({}): move them there and run `supportopsd test`",
            tests.display()
        );
        return Ok(());
    }
    let Some(set) = load_or_report(g, None)? else {
        bail!("the repository does not load with the written cases");
    };
    let report = testing::run(&set);
    for c in report.cases.iter().filter(|c| names.contains(&c.name)) {
        if c.passed {
            println!("  ok    {}: {}", c.file, c.name);
        } else {
            println!("  FAIL  {}: {}", c.file, c.name);
            for line in c.failure.as_deref().unwrap_or_default().lines() {
                println!("        {line}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_case_reads_back_as_toml_and_leaves_out_parameters_toml_cannot_hold() {
        let produced = [
            produce::Produced {
                rule: crate::manifest::RuleId::parse("r").unwrap(),
                action: "send_message".into(),
                integration: "slack-main".into(),
                parameters: json!({"channel": "#a", "message": "say \"hi\"\nthere", "n": 3}),
                shadow: false,
            },
            produce::Produced {
                rule: crate::manifest::RuleId::parse("r").unwrap(),
                action: "add_note".into(),
                integration: "fd".into(),
                parameters: json!({"body": null}),
                shadow: true,
            },
        ];
        let text = case_toml(
            "evt_1 (a \"b\")",
            "fd",
            "ticket_created",
            "fd-evt_1.json",
            &produced,
        );
        let doc: toml::Table = toml::from_str(&text).unwrap();
        let case = &doc["case"].as_array().unwrap()[0];
        assert_eq!(case["name"].as_str(), Some("evt_1 (a \"b\")"));
        assert_eq!(case["payload"].as_str(), Some("fixtures/fd-evt_1.json"));
        let expect = case["expect"].as_array().unwrap();
        assert_eq!(
            expect[0]["parameters"]["message"].as_str(),
            Some("say \"hi\"\nthere")
        );
        assert_eq!(expect[0]["parameters"]["n"].as_integer(), Some(3));
        assert!(expect[1].get("parameters").is_none());
        assert_eq!(expect[1]["shadow"].as_bool(), Some(true));
        assert!(expect[0].get("shadow").is_none());
        let none = case_toml("n", "fd", "ticket_created", "f.json", &[]);
        assert!(none.contains("expect_none = true"), "{none}");
    }
}
