//! `supportopsd completions SHELL`.

use clap::CommandFactory;

use super::{Cli, Exit};

/// Print shell completions.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// Runs `completions`.
pub fn run(args: &Args) -> anyhow::Result<Exit> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "supportopsd", &mut std::io::stdout());
    Ok(Exit::Ok)
}
