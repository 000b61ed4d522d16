//! `supportopsd check-platform ID`: read-only probes of the real account an integration points
//! at. It loads the manifests like `validate`, resolves the integration's credentials under the
//! host policy like `run`, builds its connector with [`platforms::connect`] and runs the
//! connector's [`crate::platforms::Connector::probe`]: the connection, our registrations as the platform lists
//! them, one of them read back, and every assumption the connector makes that vendor
//! documentation does not confirm, each reported as `matches`, `differs` or `unchecked` (with
//! why). Nothing on the platform is changed: each probe sends its requests through
//! [`crate::platforms::probe::read_only`].
//!
//! Exit codes: 0 every checked assumption matches, 1 at least one differs, 2 the probe could
//! not run (manifests invalid, unknown integration, policy refusal, missing credential,
//! connection refused, credentials refused).

use std::path::PathBuf;

use clap::ValueEnum;
use serde_json::json;

use super::{Exit, GlobalArgs, source};
use crate::manifest::{self, Credential, Integration, IntegrationId};
use crate::platforms::probe::{Finding, ProbeTarget, Verdict};
use crate::platforms::{self, PlatformKind};
use crate::secrets::{self, ResolveContext, Secret, SecretRef};

/// Probe a real account, read-only.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The integration to check (its `id` in the manifests).
    pub id: String,
    /// Read the manifests at a git revision instead of the working tree.
    #[arg(long)]
    pub rev: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// The URL the platforms reach the daemon at: registrations found are compared with
    /// `{public_url}/api/webhooks/{platform}/{id}` (without it, the URL is not compared).
    #[arg(long, env = "SUPPORTOPSD_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The sealing key file, for `sealed` credentials [default: $SUPPORTOPSD_KEY_FILE, then
    /// $CREDENTIALS_DIRECTORY/supportopsd.key].
    #[arg(long, env = "SUPPORTOPSD_KEY_FILE")]
    pub key_file: Option<PathBuf>,
    /// The host policy [default: $CREDENTIALS_DIRECTORY/policy.toml, then
    /// /etc/supportopsd/policy.toml; none found: no override honoured].
    #[arg(long, env = "SUPPORTOPSD_POLICY")]
    pub policy: Option<PathBuf>,
}

/// Output format of `check-platform`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Grouped by platform area, for a terminal.
    Text,
    /// One JSON object: the findings and their counts.
    Json,
}

/// Why the probe could not run (exit 2), in words an operator can act on; never a secret.
struct CannotRun(String);

/// Runs `check-platform`.
pub fn run(args: &Args, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let integration = match load_integration(g, &args.id, args.rev.as_deref()) {
        Ok(i) => i,
        Err(CannotRun(why)) => return cannot_run(args, None, &why),
    };
    let platform = integration.platform;
    match probe(args, &integration) {
        Ok((findings, secrets)) => report(args, &integration, platform, &findings, &secrets),
        Err(CannotRun(why)) => cannot_run(args, Some(platform), &why),
    }
}

/// The integration `id` of the manifests (working tree, or `rev`).
fn load_integration(g: &GlobalArgs, id: &str, rev: Option<&str>) -> Result<Integration, CannotRun> {
    let loaded = manifest::load_source(&source(g, rev))
        .map_err(|e| CannotRun(format!("reading the manifests: {e}")))?;
    let Some(mut set) = loaded.set else {
        eprint!("{}", loaded.diagnostics.render(&super::prefix(g)));
        return Err(CannotRun(format!(
            "the manifests have {} error(s); fix them first (see `supportopsd validate`)",
            loaded.diagnostics.error_count()
        )));
    };
    let wanted = IntegrationId::parse(id).ok();
    let found = wanted.and_then(|w| set.integrations.remove(&w));
    let Some(integration) = found else {
        let ids: Vec<String> = set.integrations.keys().map(ToString::to_string).collect();
        let hint = manifest::diagnostic::did_you_mean(id, ids.iter().map(String::as_str))
            .map(|c| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default();
        return Err(CannotRun(format!(
            "no integration `{id}` in the manifests{hint}; they declare: {}",
            if ids.is_empty() {
                "none".to_owned()
            } else {
                ids.join(", ")
            }
        )));
    };
    if integration.platform == PlatformKind::Supportopsd {
        return Err(CannotRun(format!(
            "`{id}` is the built-in supportopsd platform: there is no account to check"
        )));
    }
    Ok(integration)
}

/// Builds the connector under the host policy and runs its probe. Also returns the resolved
/// secret values, so the output can be checked for them.
fn probe(args: &Args, i: &Integration) -> Result<(Vec<Finding>, Vec<Secret>), CannotRun> {
    let policy = super::run::load_policy(args.policy.as_deref())
        .map_err(|e| CannotRun(format!("the host policy: {e:#}")))?;
    let needs_key = i
        .credentials
        .values()
        .any(|c| matches!(c, Credential::Secret(SecretRef::Sealed(_))))
        || i.webhook
            .as_ref()
            .and_then(|w| w.secret.as_ref())
            .is_some_and(|r| matches!(r, SecretRef::Sealed(_)));
    let key = needs_key
        .then(|| super::run::load_key(args.key_file.as_deref()))
        .flatten();
    let env = secrets::process_env;
    let ctx = ResolveContext::new(key.as_ref(), &env);
    let connector = platforms::connect(i, &ctx, &policy)
        .map_err(|e| CannotRun(format!("integration `{}`: {e}", i.id)))?;
    let webhook_secret = match i.webhook.as_ref().and_then(|w| w.secret.as_ref()) {
        Some(r) => Some(r.resolve(&i.id, "webhook_secret", &ctx).map_err(|e| {
            CannotRun(format!(
                "integration `{}`: `[webhook] secret` ({}): {e}",
                i.id,
                r.describe()
            ))
        })?),
        None => None,
    };
    // Every secret value the integration resolves to: the output must contain none of them.
    let mut known: Vec<Secret> = i
        .credentials
        .iter()
        .filter(|(_, c)| matches!(c, Credential::Secret(_)))
        .filter_map(|(field, _)| platforms::http::credential(i, field, &ctx).ok().flatten())
        .collect();
    if let Some(s) = &webhook_secret {
        known.push(Secret::new(s.expose().to_vec()));
    }
    let mut events: Vec<String> = i
        .webhook
        .as_ref()
        .map(|w| w.events.clone())
        .unwrap_or_default();
    events.sort();
    events.dedup();
    let target = ProbeTarget {
        integration: i.id.clone(),
        url: args
            .public_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
            .map(|u| {
                format!(
                    "{}/api/webhooks/{}/{}",
                    u.trim().trim_end_matches('/'),
                    i.platform.as_str(),
                    i.id
                )
            }),
        events,
        secret: webhook_secret,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CannotRun(format!("starting the async runtime: {e}")))?;
    let findings = rt
        .block_on(connector.probe(&target))
        .map_err(|e| CannotRun(format!("integration `{}`: {e}", i.id)))?;
    Ok((findings, known))
}

/// Prints why the probe could not run; exit 2.
fn cannot_run(args: &Args, platform: Option<PlatformKind>, why: &str) -> anyhow::Result<Exit> {
    match args.format {
        Format::Json => super::emit(
            &(serde_json::to_string_pretty(&json!({
                "integration": args.id,
                "platform": platform.map(PlatformKind::as_str),
                "ran": false,
                "error": why,
            }))? + "\n"),
        )?,
        Format::Text => eprintln!("check-platform {}: could not run: {why}", args.id),
    }
    Ok(Exit::Unchecked)
}

/// Prints the findings; exit 1 when one differs, else 0.
fn report(
    args: &Args,
    i: &Integration,
    platform: PlatformKind,
    findings: &[Finding],
    secrets: &[Secret],
) -> anyhow::Result<Exit> {
    let count = |v: Verdict| findings.iter().filter(|f| f.verdict == v).count();
    let (matches, differs, unchecked) = (
        count(Verdict::Matches),
        count(Verdict::Differs),
        count(Verdict::Unchecked),
    );
    let out = match args.format {
        Format::Json => {
            serde_json::to_string_pretty(&json!({
                "integration": i.id.to_string(),
                "platform": platform.as_str(),
                "ran": true,
                "read_only": true,
                "summary": { "matches": matches, "differs": differs, "unchecked": unchecked },
                "findings": findings,
            }))? + "\n"
        }
        Format::Text => text(i, platform, findings, (matches, differs, unchecked)),
    };
    super::emit(&redact(out, secrets))?;
    Ok(if differs > 0 { Exit::Failure } else { Exit::Ok })
}

/// The text report: findings grouped by area, in the order the probe found them.
fn text(
    i: &Integration,
    platform: PlatformKind,
    findings: &[Finding],
    (matches, differs, unchecked): (usize, usize, usize),
) -> String {
    let mut areas: Vec<(&str, Vec<&Finding>)> = Vec::new();
    for f in findings {
        match areas.iter_mut().find(|(a, _)| *a == f.area) {
            Some((_, list)) => list.push(f),
            None => areas.push((&f.area, vec![f])),
        }
    }
    let mut out = format!(
        "check-platform {} ({}): read-only probes; nothing was changed on the platform.\n",
        i.id,
        platform.as_str()
    );
    for (area, list) in areas {
        out.push_str(&format!("\n{area}\n"));
        for f in list {
            out.push_str(&format!("  {:<9} {}\n", f.verdict.as_str(), f.assumption));
            if !f.request.is_empty() && f.request != "-" {
                out.push_str(&format!("            {}\n", f.request));
            }
            if f.verdict != Verdict::Matches && !f.expected.is_empty() && f.expected != "-" {
                out.push_str(&format!("            expected: {}\n", f.expected));
            }
            let label = if f.verdict == Verdict::Unchecked {
                "why"
            } else {
                "observed"
            };
            out.push_str(&format!("            {label}: {}\n", f.observed));
        }
    }
    out.push_str(&format!(
        "\n{matches} match, {differs} differ{}, {unchecked} unchecked.\n",
        if differs == 1 { "s" } else { "" }
    ));
    out
}

/// `out` with every occurrence of a resolved secret replaced by `***` (the probes never put
/// one in a finding; this is the second line of defence).
fn redact(mut out: String, secrets: &[Secret]) -> String {
    for s in secrets {
        if let Ok(v) = s.expose_str()
            && v.len() >= 4
            && out.contains(v)
        {
            out = out.replace(v, "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_from_the_output() {
        let s = [
            Secret::from("s3cret-value".to_owned()),
            Secret::from("x".to_owned()),
        ];
        assert_eq!(
            redact("a s3cret-value b x".to_owned(), &s),
            "a *** b x".to_owned()
        );
    }
}
