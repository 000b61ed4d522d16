//! `supportopsd validate`.

use clap::ValueEnum;

use super::{Exit, GlobalArgs, prefix, source};
use crate::manifest;

/// Validate the manifest repository.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Validate a git revision instead of the working tree.
    #[arg(long, env = "SUPPORTOPSD_REV")]
    pub rev: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Output format of `validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `file:line:col: severity: message` lines.
    Text,
    /// A JSON array of diagnostics.
    Json,
}

/// Runs `validate`.
pub fn run(args: &Args, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let loaded = manifest::load_source(&source(g, args.rev.as_deref()))?;
    let ds = &loaded.diagnostics;
    match args.format {
        Format::Json => super::emit(&(serde_json::to_string_pretty(&ds.located())? + "\n"))?,
        Format::Text => {
            super::emit(&ds.render(&prefix(g)))?;
            if let Some(set) = &loaded.set {
                if g.quiet == 0 {
                    println!(
                        "ok: {} integrations, {} rules, {} test cases{}",
                        set.integrations.len(),
                        set.rules.len(),
                        set.tests.len(),
                        if ds.warning_count() > 0 {
                            format!(", {} warning(s)", ds.warning_count())
                        } else {
                            String::new()
                        }
                    );
                    if let Some(note) = super::policy_note(set) {
                        println!("{note}");
                    }
                }
            } else {
                println!(
                    "{} error(s), {} warning(s)",
                    ds.error_count(),
                    ds.warning_count()
                );
            }
        }
    }
    Ok(if loaded.set.is_some() {
        Exit::Ok
    } else {
        Exit::Failure
    })
}
