//! `supportopsd test`: the rule test cases offline, reported as text, JSON or JUnit XML; the
//! coverage bar, `--strict` and the empty-repository check.

use std::io::IsTerminal;

use clap::ValueEnum;

use super::{Exit, GlobalArgs, ci_output, load_checked};
use crate::testing;

/// Run the rule test cases offline.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Test a git revision instead of the working tree.
    #[arg(long, env = "SUPPORTOPSD_REV")]
    pub rev: Option<String>,
    /// Fail when fewer than this percentage of enabled rules is exercised by some case (a
    /// repository with no enabled rule fails it: there is nothing to cover).
    #[arg(long, env = "SUPPORTOPSD_FAIL_UNDER", value_name = "PERCENT")]
    pub fail_under: Option<f64>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Print the report as JSON (the same as `--format json`).
    #[arg(long, conflicts_with = "format")]
    pub json: bool,
    /// Run only the case(s) of this name.
    #[arg(long, value_name = "NAME")]
    pub case: Option<String>,
    /// Treat the manifests' warnings (a rule that can never fire) as errors.
    #[arg(long)]
    pub strict: bool,
    /// Accept a repository with no integrations and no rules (else an error: the wrong folder).
    #[arg(long)]
    pub allow_empty: bool,
}

/// Output format of `test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For a terminal (coloured when it is one).
    Text,
    /// The report as JSON.
    Json,
    /// JUnit XML: a test suite per test file, a test case per case.
    Junit,
}

/// Runs `test`.
pub fn run(args: &Args, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let Some(set) = load_checked(g, args.rev.as_deref(), args.strict, args.allow_empty)? else {
        return Ok(Exit::Failure);
    };
    if let Some(name) = &args.case
        && !set.tests.iter().any(|c| &c.name == name)
    {
        let names: Vec<&str> = set.tests.iter().map(|c| c.name.as_str()).collect();
        let hint = crate::manifest::diagnostic::did_you_mean(name, names.iter().copied())
            .map_or_else(String::new, |s| format!(" Did you mean `{s}`?"));
        if names.is_empty() {
            anyhow::bail!("no test case `{name}`: the repository has no test cases");
        }
        let more = match names.len() {
            n if n > 20 => format!(" and {} more", n - 20),
            _ => String::new(),
        };
        anyhow::bail!(
            "no test case `{name}`.{hint} The cases are: {}{more}",
            names[..names.len().min(20)].join(", ")
        );
    }
    let report = testing::run_only(&set, args.case.as_deref());
    // Coverage says nothing about one case: it is judged on full runs only. No rules to cover
    // cannot pass a bar.
    let below = args.case.is_none()
        && args
            .fail_under
            .is_some_and(|min| report.rules_total == 0 || report.coverage() + 1e-9 < min);
    let format = if args.json { Format::Json } else { args.format };
    if format == Format::Json {
        super::emit(&(serde_json::to_string_pretty(&report)? + "\n"))?;
    } else if format == Format::Junit {
        let bar = args
            .fail_under
            .filter(|_| args.case.is_none())
            .map(|min| ci_output::CoverageBar { min, failed: below });
        super::emit(&ci_output::junit(&report, bar))?;
    } else {
        let color = std::io::stdout().is_terminal();
        let paint = |c: &str, s: &str| {
            if color {
                format!("\x1b[{c}m{s}\x1b[0m")
            } else {
                s.to_owned()
            }
        };
        println!("running {} test case(s)", report.cases.len());
        for c in &report.cases {
            if c.passed {
                if g.quiet == 0 {
                    println!("  {}  {}: {}", paint("32", "ok  "), c.file, c.name);
                }
            } else {
                println!("  {}  {}: {}", paint("31", "FAIL"), c.file, c.name);
                for line in c.failure.as_deref().unwrap_or_default().lines() {
                    println!("        {line}");
                }
            }
        }
        let failed = report.failed();
        println!(
            "\n{} passed, {} failed",
            report.cases.len() - failed,
            failed
        );
        if args.case.is_none() {
            println!("{}", ci_output::coverage_line(&report));
            for (id, file) in &report.uncovered {
                println!("  not exercised: {id} ({file})");
            }
        }
        if let Some(min) = args.fail_under
            && below
        {
            if report.rules_total == 0 {
                println!(
                    "error: no rules to cover, so rule coverage cannot reach --fail-under {min}%"
                );
            } else {
                println!(
                    "error: rule coverage {:.1}% is below --fail-under {min}%",
                    report.coverage()
                );
            }
        }
    }
    Ok(if report.failed() > 0 || below {
        Exit::Failure
    } else {
        Exit::Ok
    })
}
