//! `supportopsd schema KIND`.

use super::Exit;
use crate::manifest::schema::SchemaKind;

/// Print a JSON Schema.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// integration, rule or test.
    #[arg(value_parser = ["integration", "rule", "test"])]
    pub kind: String,
}

/// Runs `schema`.
pub fn run(args: &Args) -> anyhow::Result<Exit> {
    let kind = SchemaKind::parse(&args.kind)
        .ok_or_else(|| anyhow::anyhow!("unknown schema `{}`", args.kind))?;
    super::emit(&kind.render())?;
    Ok(Exit::Ok)
}
