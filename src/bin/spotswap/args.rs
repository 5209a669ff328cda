//! The command line's shape: commands, their options, and one flag per setting.
//!
//! The settings flags are not written out here: they are built from the library's `SETTINGS`
//! table (stem, environment variable, help), so a new setting is a flag and an environment
//! variable the moment it is in the table. Parsing a value is the library's job.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Arg, ArgAction, ArgMatches, Args, Command as ClapCommand, FromArgMatches};
use clap::{Parser, Subcommand, ValueEnum};
use spotswap::model::{Architecture, BootMode, Virtualization};
use spotswap::settings::{SETTINGS, Settings};

/// Swap the on-demand instances of opted-in Auto Scaling groups for compatible, cheaper spot
/// instances.
#[derive(Debug, Parser)]
#[command(name = "spotswap", version, about)]
pub struct Cli {
    /// AWS profile to use (default: the standard chain: environment, AWS_PROFILE, SSO,
    /// instance or task role).
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// More log detail on stderr: -v progress and outcomes, -vv skips, -vvv everything
    /// (RUST_LOG, when set, decides instead).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the instance types that could replace an instance of a given type.
    Types(TypesArgs),
    /// Run one pass over the account: launch clones, swap them in, clean up.
    Run(PassArgs),
    /// Show what a pass would do, and why, without changing anything (a dry run). With
    /// --snapshot, plan over a saved region snapshot instead of the account.
    Plan(PlanArgs),
    /// Show what every opted-in group costs now against running all on-demand.
    Report(PassArgs),
    /// Ask AWS, with DryRun, whether the writes a pass makes are allowed in each region it
    /// would act in (the role, key policies, SCPs and permissions boundaries all answer).
    /// Exit code 0 when nothing is refused, 1 when something is.
    Check(PassArgs),
    /// Print every setting: its effective value and where it came from (flag, environment,
    /// default), with its flag, environment variable, tag and default.
    Settings {
        /// table: the effective values; json: the same for programs; markdown: the reference
        /// table of the README.
        #[arg(long, value_enum, default_value = "table")]
        output: SettingsOutput,
    },
}

impl Command {
    /// Whether the command prints JSON for a program to read (no progress lines then).
    pub fn json_output(&self) -> bool {
        match self {
            Command::Types(a) => a.output == Output::Json,
            Command::Run(a) | Command::Report(a) | Command::Check(a) => a.output == Output::Json,
            Command::Plan(a) => a.output == Output::Json,
            Command::Settings { output } => *output == SettingsOutput::Json,
        }
    }
}

/// Formats of `spotswap settings`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SettingsOutput {
    Table,
    Json,
    Markdown,
}

/// `spotswap types --like TYPE`.
#[derive(Debug, Args)]
pub struct TypesArgs {
    /// The instance type to match.
    #[arg(long)]
    pub like: String,
    /// Region whose on-demand prices to show (the bundled table covers us-east-1).
    #[arg(long, default_value = "us-east-1")]
    pub region: String,
    /// AMI architecture (default: what the type implies).
    #[arg(long, value_parser = parse_arch)]
    pub ami_arch: Option<Architecture>,
    /// AMI virtualization type: hvm or paravirtual.
    #[arg(long, value_parser = parse_virtualization)]
    pub ami_virtualization: Option<Virtualization>,
    /// AMI boot mode: legacy-bios, uefi or uefi-preferred.
    #[arg(long, value_parser = parse_boot_mode)]
    pub ami_boot_mode: Option<BootMode>,
    /// Whether the AMI has the ENA driver.
    #[arg(long)]
    pub ami_ena: Option<bool>,
    /// Instance-store volumes the launch spec maps (ephemeralN).
    #[arg(long, default_value_t = 0)]
    pub ephemeral_mappings: u32,
    // --allowed-instance-types, --disallowed-instance-types and --allow-burstable are the
    // global settings flags: one flag, one meaning, wherever it is given.
    /// Also list every rejected type with the first check it failed.
    #[arg(long)]
    pub explain: bool,
    /// Show at most this many candidates (the cheapest; all by default).
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
}

/// `spotswap run` and `spotswap report`.
#[derive(Debug, Args)]
pub struct PassArgs {
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
}

/// `spotswap plan [--snapshot FILE]`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// A region snapshot saved as JSON, or a scenario file holding one (`tests/golden/`).
    #[arg(long)]
    pub snapshot: Option<PathBuf>,
    /// The moment to plan for (RFC 3339); default the scenario's, or now.
    #[arg(long)]
    pub now: Option<DateTime<Utc>>,
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
}

/// Every setting of the `SETTINGS` table as a global flag with its environment variable: the
/// values given, as `(stem, value)` pairs, and where each came from.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SettingsArgs {
    pub given: Vec<(&'static str, String)>,
    /// `flag` or `environment`, per stem given; a stem not given has its default.
    pub sources: Vec<(&'static str, &'static str)>,
}

impl SettingsArgs {
    /// Where the value of `stem` comes from: `flag`, `environment` or `default`.
    pub fn source(&self, stem: &str) -> &'static str {
        self.sources
            .iter()
            .find(|(s, _)| *s == stem)
            .map_or("default", |(_, src)| *src)
    }
}

impl SettingsArgs {
    /// Resolves and validates the settings, reporting every bad value at once.
    pub fn resolve(&self) -> Result<Settings, spotswap::Error> {
        Settings::from_pairs(self.given.iter().map(|(k, v)| (*k, v)))
            .map_err(spotswap::Error::Settings)
    }
}

impl Args for SettingsArgs {
    fn augment_args(cmd: ClapCommand) -> ClapCommand {
        SETTINGS.iter().fold(cmd, |cmd, d| {
            let arg = Arg::new(d.stem)
                .long(d.stem)
                .env(d.env())
                .global(true)
                .help(d.help)
                .value_name("VALUE");
            // A true/false setting is a switch (`--dry-run`) that also takes `--dry-run=false`.
            let arg = if d.is_bool() {
                arg.num_args(0..=1)
                    .require_equals(true)
                    .default_missing_value("true")
            } else {
                arg
            };
            cmd.arg(arg)
        })
    }

    fn augment_args_for_update(cmd: ClapCommand) -> ClapCommand {
        Self::augment_args(cmd)
    }
}

impl FromArgMatches for SettingsArgs {
    fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
        use clap::parser::ValueSource;
        Ok(SettingsArgs {
            given: SETTINGS
                .iter()
                .filter_map(|d| m.get_one::<String>(d.stem).map(|v| (d.stem, v.clone())))
                .collect(),
            sources: SETTINGS
                .iter()
                .filter_map(|d| match m.value_source(d.stem) {
                    Some(ValueSource::CommandLine) => Some((d.stem, "flag")),
                    Some(ValueSource::EnvVariable) => Some((d.stem, "environment")),
                    _ => None,
                })
                .collect(),
        })
    }

    fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

fn parse_arch(s: &str) -> Result<Architecture, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| "expected x86_64, arm64, i386, x86_64_mac or arm64_mac".into())
}

fn parse_virtualization(s: &str) -> Result<Virtualization, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| "expected hvm or paravirtual".into())
}

fn parse_boot_mode(s: &str) -> Result<BootMode, String> {
    serde_json::from_value(serde_json::Value::String(s.into()))
        .map_err(|_| "expected legacy-bios, uefi or uefi-preferred".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_setting_has_a_flag_and_an_environment_variable() {
        let cmd = Cli::command();
        for d in SETTINGS {
            let arg = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(d.stem))
                .unwrap_or_else(|| panic!("no --{} flag", d.stem));
            assert_eq!(
                arg.get_env().and_then(|e| e.to_str()),
                Some(d.env().as_str()),
                "--{} env",
                d.stem
            );
        }
        assert!(SettingsArgs::default().given.is_empty());
    }

    #[test]
    fn every_flag_given_reaches_its_setting() {
        let mut argv = vec!["spotswap".to_string()];
        for d in SETTINGS {
            argv.push(format!("--{}=x", d.stem));
        }
        argv.extend(["settings".to_string()]);
        let cli = Cli::try_parse_from(argv).unwrap();
        let stems: Vec<&str> = cli.settings.given.iter().map(|(s, _)| *s).collect();
        let want: Vec<&str> = SETTINGS.iter().map(|d| d.stem).collect();
        assert_eq!(stems, want);
        assert!(cli.settings.given.iter().all(|(_, v)| v == "x"));
    }

    #[test]
    fn flags_reach_the_settings() {
        let cli = Cli::try_parse_from([
            "spotswap",
            "--min-on-demand-number",
            "2",
            "--dry-run",
            "types",
            "--like",
            "m5.large",
        ])
        .unwrap();
        let s = cli.settings.resolve().unwrap();
        assert_eq!(s.group.min_on_demand_number, 2);
        assert!(s.dry_run);
        let cli = Cli::try_parse_from(["spotswap", "--dry-run=false", "settings"]).unwrap();
        assert!(!cli.settings.resolve().unwrap().dry_run);
    }

    #[test]
    fn verbosity_counts_and_quiet_conflicts_with_it() {
        let cli = Cli::try_parse_from(["spotswap", "-vv", "settings"]).unwrap();
        assert_eq!((cli.verbose, cli.quiet), (2, false));
        let cli = Cli::try_parse_from(["spotswap", "settings", "-q"]).unwrap();
        assert!(cli.quiet);
        assert!(Cli::try_parse_from(["spotswap", "-v", "-q", "settings"]).is_err());
    }
}
