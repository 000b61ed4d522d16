//! The `supportopsd` binary: parse, set up logging, dispatch, exit.

use std::process::ExitCode;

use clap::Parser;
use supportopsd::cli::{self, Cli};

/// mimalloc instead of the system allocator: the daemon allocates on its request threads and
/// frees on its ingest writer (and the reverse) all the time, which glibc's per-thread arenas
/// handle poorly (see docs/ingest-performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
