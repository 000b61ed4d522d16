//! `supportopsd validate`: the diagnostics as text, JSON, GitHub workflow commands, SARIF 2.1.0
//! or GitLab Code Quality JSON; `--strict` and the empty-repository check.

use clap::ValueEnum;

use super::{Exit, GlobalArgs, ci_output, prefix, source};
use crate::manifest::{self, Diagnostic, diagnostic::Code};

/// Validate the manifest repository.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Validate a git revision instead of the working tree.
    #[arg(long, env = "SUPPORTOPSD_REV")]
    pub rev: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Treat warnings (a rule that can never fire) as errors.
    #[arg(long)]
    pub strict: bool,
    /// Accept a repository with no integrations and no rules (else an error: the wrong folder).
    #[arg(long)]
    pub allow_empty: bool,
}

/// Output format of `validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `file:line:col: severity: message` lines.
    Text,
    /// A JSON array of diagnostics.
    Json,
    /// GitHub Actions workflow commands (`::error file=…,line=…,col=…::message`): annotations.
    Github,
    /// SARIF 2.1.0, for code scanning.
    Sarif,
    /// A GitLab Code Quality report.
    Gitlab,
}

/// Runs `validate`.
pub fn run(args: &Args, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let loaded = manifest::load_source(&source(g, args.rev.as_deref()))?;
    let mut ds = loaded.diagnostics;
    let warnings = ds.warning_count();
    let strict_failed = args.strict && warnings > 0;
    if strict_failed {
        ds.warnings_as_errors();
    }
    let empty = !args.allow_empty && loaded.set.as_ref().is_some_and(super::is_empty);
    let empty_message = super::empty_message(g, args.rev.as_deref());
    // Machine formats carry it as a diagnostic without a file; text says it on its own line.
    if empty && args.format != Format::Text {
        ds.push(
            Diagnostic::error("", None, empty_message.clone()).with_code(Code::EmptyRepository),
        );
    }
    let ok = loaded.set.is_some() && !strict_failed && !empty;
    let prefix = prefix(g);
    let ci_prefix = ci_output::relative_prefix(&prefix);
    match args.format {
        Format::Json => super::emit(&(serde_json::to_string_pretty(&ds.located())? + "\n"))?,
        Format::Github => super::emit(&ci_output::github(&ds.located(), &ci_prefix))?,
        Format::Sarif => super::emit(
            &(serde_json::to_string_pretty(&ci_output::sarif(&ds.located(), &ci_prefix))? + "\n"),
        )?,
        Format::Gitlab => super::emit(
            &(serde_json::to_string_pretty(&ci_output::gitlab(&ds.located(), &ci_prefix))? + "\n"),
        )?,
        Format::Text => {
            super::emit(&ds.render(&prefix))?;
            match &loaded.set {
                Some(set) if ok => {
                    if g.quiet == 0 {
                        println!(
                            "ok: {} integrations, {} rules, {} test cases{}",
                            set.integrations.len(),
                            set.rules.len(),
                            set.tests.len(),
                            if warnings > 0 {
                                format!(", {warnings} warning(s)")
                            } else {
                                String::new()
                            }
                        );
                        if let Some(note) = super::policy_note(set) {
                            println!("{note}");
                        }
                    }
                }
                _ if empty => println!("error: {empty_message}"),
                _ => {
                    println!(
                        "{} error(s), {} warning(s){}",
                        ds.error_count(),
                        ds.warning_count(),
                        if strict_failed {
                            " (--strict: warnings are errors)"
                        } else {
                            ""
                        }
                    );
                }
            }
        }
    }
    Ok(if ok { Exit::Ok } else { Exit::Failure })
}
