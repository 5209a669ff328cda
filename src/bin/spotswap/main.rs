//! The `spotswap` command line: parse, run one command through the library, print the result.
//!
//! Everything a command does is library code, so tests drive the same paths users do; this
//! binary owns only its edges: argument parsing ([`args`]), logging to stderr, and the text
//! renderers ([`render`]). Nothing here decides anything about groups or instances, and
//! nothing prints user data. Exit codes: 0 done, 1 some actions or regions failed, 2 could not
//! run, 130 stopped by its operator (SIGINT or SIGTERM).

mod args;
mod render;

use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Parser;
use spotswap::Error;
use spotswap::catalog::Catalog;
use spotswap::like::{AmiOverrides, LikeQuery, like};
use spotswap::model::Snapshot;
use spotswap::pacing::Stop;
use spotswap::pass::{self, PassOptions};
use spotswap::plan::plan;
use spotswap::price_table::BundledPrices;
use spotswap::settings::Settings;

use args::{Cli, Command, Output, PlanArgs, TypesArgs};
use render::{check_table, pass_table, plan_table, report_table, settings_reference, types_table};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A progress line per region on a terminal, unless quiet or the output is JSON for a
    // program to read.
    let progress = {
        use std::io::IsTerminal as _;
        std::io::stderr().is_terminal() && !cli.quiet && !cli.command.json_output()
    };
    init_logging(cli.verbose, cli.quiet, progress);
    match run(cli) {
        Ok((text, code)) => {
            use std::io::Write as _;
            // A closed pipe (`spotswap types ... | head`) is the reader's choice, not an error.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::from(code)
        }
        Err(e) => {
            eprintln!("spotswap: {e}");
            ExitCode::from(2)
        }
    }
}

/// Log records go to stderr, human-readable (coloured on a terminal). `RUST_LOG` decides the
/// levels when set; otherwise spotswap's warnings and errors, more with `-v` (progress and
/// outcomes), `-vv` (skips with their reasons) and `-vvv` (the AWS SDK's debug records too),
/// only errors with `-q`. The SDK's own records stay out unless asked for: its warnings (a
/// missing config file, say) are not the user's problem when credentials come from elsewhere.
fn init_logging(verbose: u8, quiet: bool, progress: bool) {
    use std::io::IsTerminal as _;
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "spotswap=error",
        (false, 0) => "spotswap=warn",
        (false, 1) => "spotswap=info",
        (false, 2) => "spotswap=debug",
        (false, _) => "debug,spotswap=trace",
    };
    let default = if progress && verbose == 0 {
        format!("{default},{}=info", spotswap::pass::PROGRESS_TARGET)
    } else {
        default.to_string()
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::new(v),
        _ => EnvFilter::new(default),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .init();
}

/// Runs a parsed command and returns what to print and the exit code: 0 clean, 1 when some
/// actions or regions failed. An `Err` means the command could not run (exit code 2).
fn run(cli: Cli) -> Result<(String, u8), Error> {
    let settings = cli.settings.resolve()?;
    match cli.command {
        Command::Types(args) => types(&args, &settings).map(|t| (t, 0)),
        Command::Run(args) => live(cli.profile.as_deref(), &settings, Live::Run, args.output),
        Command::Report(args) => live(cli.profile.as_deref(), &settings, Live::Report, args.output),
        Command::Plan(PlanArgs {
            snapshot: None,
            output,
            ..
        }) => live(cli.profile.as_deref(), &settings, Live::Plan, output),
        Command::Plan(PlanArgs {
            snapshot: Some(path),
            now,
            output,
        }) => {
            let input_error = |problem: String| Error::Input {
                path: path.display().to_string(),
                problem,
            };
            let text = std::fs::read_to_string(&path).map_err(|e| input_error(e.to_string()))?;
            let input = PlanInput::parse(&text)
                .map_err(|e| input_error(format!("not a region snapshot: {e}")))?;
            // A scenario's own settings apply beneath flags and environment variables.
            let pairs = input.settings.into_iter().chain(
                cli.settings
                    .given
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone())),
            );
            let settings = Settings::from_pairs(pairs).map_err(Error::Settings)?;
            let mut snapshot = input.snapshot;
            Catalog::bundled().fill_missing(&mut snapshot.instance_types);
            let now = now.or(input.now).unwrap_or_else(Utc::now);
            let p = plan(&snapshot, &settings, now);
            let text = match output {
                Output::Json => json(&p),
                Output::Table => plan_table(&p),
            };
            Ok((text, 0))
        }
        Command::Settings { output } => Ok((settings_reference(output, &cli.settings), 0)),
        Command::Check(args) => check(cli.profile.as_deref(), &settings, args.output),
    }
}

/// The preflight against the account: every check with its verdict; exit code 1 when
/// something was refused.
fn check(
    profile: Option<&str>,
    settings: &Settings,
    output: Output,
) -> Result<(String, u8), Error> {
    runtime()?.block_on(async {
        let account = connect(profile, settings).await?;
        let p = spotswap::preflight::run(&account, settings).await?;
        if p.checks.is_empty() {
            return Err(Error::Invalid(
                "no enabled region matches the regions setting".into(),
            ));
        }
        let text = match output {
            Output::Json => json(&p),
            Output::Table => check_table(&p),
        };
        Ok((text, p.exit_code() as u8))
    })
}

/// The async runtime of a command that talks to AWS.
fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::System(format!("starting the async runtime: {e}")))
}

/// The account the standard AWS chain (or `--profile`) points at, its credentials checked.
async fn connect(
    profile: Option<&str>,
    settings: &Settings,
) -> Result<spotswap::cloud::aws::AwsAccount, Error> {
    use spotswap::cloud::aws::{AwsAccount, check_credentials, load_config};
    let config = load_config(profile, None, settings.timeouts).await;
    if config.region().is_none() {
        return Err(Error::NoRegion);
    }
    check_credentials(&config, profile).await?;
    Ok(AwsAccount::new(config))
}

/// The commands that talk to AWS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Live {
    Run,
    Plan,
    Report,
}

/// Runs a pass against the account the standard AWS chain (or `--profile`) points at.
fn live(
    profile: Option<&str>,
    settings: &Settings,
    kind: Live,
    output: Output,
) -> Result<(String, u8), Error> {
    runtime()?.block_on(async {
        let account = connect(profile, settings).await?;
        let mut opts = PassOptions {
            dry_run: settings.dry_run || kind != Live::Run,
            ..PassOptions::new(settings, Utc::now())
        };
        // A pass that changes things stops cleanly on SIGINT or SIGTERM; one that only reads
        // may simply end.
        if !opts.dry_run {
            let stop = Stop::new();
            tokio::spawn(stop_on_signals(stop.clone()));
            opts.stop = Some(stop);
        }
        let report = pass::run(&account, settings, &opts).await?;
        if report.regions.is_empty() {
            return Err(Error::Invalid(
                "no enabled region matches the regions setting".into(),
            ));
        }
        let text = match (output, kind) {
            (Output::Json, Live::Report) => json(&serde_json::json!({
                "regions": report
                    .regions
                    .iter()
                    .filter_map(|r| r.savings.as_ref())
                    .collect::<Vec<_>>(),
                "totals": spotswap::report::AccountSavings::of(&report),
            })),
            (Output::Json, _) => json(&report),
            (Output::Table, Live::Report) => report_table(&report),
            (Output::Table, _) => pass_table(&report),
        };
        Ok((text, report.exit_code()))
    })
}

/// The first SIGINT (Ctrl-C) or SIGTERM stops the pass cleanly: no new change, the call in
/// flight finishes, the leases are given back where no swap step is in doubt, and the process
/// exits 130 once it has printed what it did and left. A second one exits at once, leaving the
/// pass's leases to end by themselves.
async fn stop_on_signals(stop: Stop) {
    signalled().await;
    stop.signal();
    eprintln!(
        "spotswap: stopping: no new change is sent; the calls in flight finish and the leases \
         are given back (press Ctrl-C again to exit at once)"
    );
    signalled().await;
    eprintln!(
        "spotswap: exiting at once: the leases this pass holds end by themselves (lease-seconds)"
    );
    std::process::exit(i32::from(spotswap::report::EXIT_STOPPED));
}

/// The next SIGINT or SIGTERM.
async fn signalled() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// What `plan --snapshot` reads: a bare snapshot, or a scenario file (as in `tests/golden/`)
/// holding a snapshot with the moment and settings to plan it with.
struct PlanInput {
    snapshot: Snapshot,
    now: Option<DateTime<Utc>>,
    settings: Vec<(String, String)>,
}

impl PlanInput {
    fn parse(text: &str) -> Result<PlanInput, serde_json::Error> {
        #[derive(serde::Deserialize)]
        struct Scenario {
            snapshot: Snapshot,
            #[serde(default)]
            now: Option<DateTime<Utc>>,
            #[serde(default)]
            settings: std::collections::BTreeMap<String, String>,
        }
        let value: serde_json::Value = serde_json::from_str(text)?;
        if value.get("snapshot").is_some() {
            let s: Scenario = serde_json::from_value(value)?;
            Ok(PlanInput {
                snapshot: s.snapshot,
                now: s.now,
                settings: s.settings.into_iter().collect(),
            })
        } else {
            Ok(PlanInput {
                snapshot: serde_json::from_value(value)?,
                now: None,
                settings: Vec::new(),
            })
        }
    }
}

/// A JSON output: versioned, money rounded (docs/json-output.md).
fn json<T: serde::Serialize>(value: &T) -> String {
    let v = spotswap::report::json_output(value);
    serde_json::to_string_pretty(&v).expect("plain data serialises") + "\n"
}

fn types(args: &TypesArgs, settings: &Settings) -> Result<String, Error> {
    let prices = BundledPrices::bundled().on_demand(&args.region);
    let query = LikeQuery {
        base: args.like.clone(),
        ami: AmiOverrides {
            architecture: args.ami_arch,
            virtualization: args.ami_virtualization,
            boot_mode: args.ami_boot_mode,
            ena: args.ami_ena,
        },
        ephemeral_mappings: args.ephemeral_mappings,
        allowed: settings.group.allowed_instance_types.clone(),
        disallowed: settings.group.disallowed_instance_types.clone(),
        allow_burstable: settings.group.allow_burstable,
    };
    let mut answer = like(Catalog::bundled(), prices.as_ref(), &query, args.explain)
        .map_err(|e| Error::Invalid(e.to_string()))?;
    // Cheapest first already: the limit keeps the cheapest.
    if let Some(n) = args.limit {
        answer.compatible.truncate(n);
    }
    Ok(match args.output {
        Output::Json => json(&answer),
        Output::Table => types_table(&answer, prices.is_some(), &args.region),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_flag_value_names_the_flag_and_the_variable() {
        let cli =
            Cli::try_parse_from(["spotswap", "--min-on-demand-percentage", "140", "settings"])
                .unwrap();
        let err = run(cli).unwrap_err().to_string();
        assert!(err.contains("--min-on-demand-percentage"), "{err}");
        assert!(err.contains("MIN_ON_DEMAND_PERCENTAGE"), "{err}");
        assert!(err.contains("140"), "{err}");
    }
}
