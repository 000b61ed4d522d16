//! `supportopsd test`.

use std::io::IsTerminal;

use super::{Exit, GlobalArgs, load_or_report};
use crate::testing;

/// Run the rule test cases offline.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Test a git revision instead of the working tree.
    #[arg(long, env = "SUPPORTOPSD_REV")]
    pub rev: Option<String>,
    /// Fail when fewer than this percentage of enabled rules is exercised by some case.
    #[arg(long, env = "SUPPORTOPSD_FAIL_UNDER", value_name = "PERCENT")]
    pub fail_under: Option<f64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Run only the case(s) of this name.
    #[arg(long, value_name = "NAME")]
    pub case: Option<String>,
}

/// Runs `test`.
pub fn run(args: &Args, g: &GlobalArgs) -> anyhow::Result<Exit> {
    let Some(set) = load_or_report(g, args.rev.as_deref())? else {
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
    // Coverage says nothing about one case: it is judged on full runs only.
    let below = args.case.is_none()
        && args
            .fail_under
            .is_some_and(|min| report.coverage() + 1e-9 < min);
    if args.json {
        super::emit(&(serde_json::to_string_pretty(&report)? + "\n"))?;
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
            println!(
                "rule coverage: {}/{} rules ({:.1}%)",
                report.rules_exercised,
                report.rules_total,
                report.coverage()
            );
            for (id, file) in &report.uncovered {
                println!("  not exercised: {id} ({file})");
            }
        }
        if let Some(min) = args.fail_under
            && below
        {
            println!(
                "error: rule coverage {:.1}% is below --fail-under {min}%",
                report.coverage()
            );
        }
    }
    Ok(if report.failed() > 0 || below {
        Exit::Failure
    } else {
        Exit::Ok
    })
}
