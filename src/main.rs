//! The `supportopsd` binary: parse, set up logging, dispatch, exit.

use std::process::ExitCode;

use clap::Parser;
use supportopsd::cli::{self, Cli};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::init_logging(&cli.global);
    match cli::dispatch(cli) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
