//! The `spotswap` command line: argument parsing, and turning results into tables or JSON.
//!
//! The binary is one line that calls [`main`]; everything a command does is library code, so
//! tests drive the same paths users do. Parsing settings happens here (flags with environment
//! fallbacks), their meaning lives in [`crate::settings`]. Nothing here decides anything about
//! groups or instances, and nothing prints user data.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::catalog::Catalog;
use crate::like::{AmiOverrides, LikeAnswer, LikeQuery, like};
use crate::model::{Architecture, BootMode, Snapshot, Virtualization};
use crate::plan::{Action, Plan, Verdict, plan};
use crate::price_table::BundledPrices;
use crate::settings::{SETTINGS, Scope, Settings};

/// Swap the on-demand instances of opted-in Auto Scaling groups for compatible, cheaper spot
/// instances.
#[derive(Debug, Parser)]
#[command(name = "spotswap", version, about)]
pub struct Cli {
    /// AWS profile to use (default: the standard chain: environment, AWS_PROFILE, SSO,
    /// instance or task role).
    #[arg(long, global = true)]
    pub profile: Option<String>,
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
    /// Print every setting with its flag, environment variable, tag and default.
    Settings {
        #[arg(long, value_enum, default_value = "table")]
        output: SettingsOutput,
    },
}

/// Formats of the settings reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SettingsOutput {
    Table,
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

/// Every setting as a flag with an environment fallback. One field per row of
/// [`SETTINGS`]; a test keeps the two in step.
#[derive(Debug, Default, Args)]
pub struct SettingsArgs {
    #[arg(long, env = "REGIONS", global = true)]
    pub regions: Option<String>,
    #[arg(long, env = "TAG_FILTERS", global = true)]
    pub tag_filters: Option<String>,
    #[arg(long, env = "TAG_FILTERING_MODE", global = true)]
    pub tag_filtering_mode: Option<String>,
    #[arg(long, env = "DRY_RUN", global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub dry_run: Option<String>,
    #[arg(long, env = "INTERRUPTION_ACTION", global = true)]
    pub interruption_action: Option<String>,
    #[arg(
        long,
        env = "HANDLE_REBALANCE_RECOMMENDATIONS",
        global = true,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    pub handle_rebalance_recommendations: Option<String>,
    #[arg(long, env = "MIN_ON_DEMAND_NUMBER", global = true)]
    pub min_on_demand_number: Option<String>,
    #[arg(long, env = "MIN_ON_DEMAND_PERCENTAGE", global = true)]
    pub min_on_demand_percentage: Option<String>,
    #[arg(long, env = "ALLOWED_INSTANCE_TYPES", global = true)]
    pub allowed_instance_types: Option<String>,
    #[arg(long, env = "DISALLOWED_INSTANCE_TYPES", global = true)]
    pub disallowed_instance_types: Option<String>,
    #[arg(long, env = "ON_DEMAND_PRICE_MULTIPLIER", global = true)]
    pub on_demand_price_multiplier: Option<String>,
    #[arg(long, env = "SPOT_PRODUCT_DESCRIPTION", global = true)]
    pub spot_product_description: Option<String>,
    #[arg(long, env = "REPLACEMENTS_PER_PASS", global = true)]
    pub replacements_per_pass: Option<String>,
    #[arg(long, env = "SPOT_PRICE_WINDOW_MINUTES", global = true)]
    pub spot_price_window_minutes: Option<String>,
    #[arg(long, env = "CRON_SCHEDULE", global = true)]
    pub cron_schedule: Option<String>,
    #[arg(long, env = "CRON_TIMEZONE", global = true)]
    pub cron_timezone: Option<String>,
    #[arg(long, env = "CRON_SCHEDULE_STATE", global = true)]
    pub cron_schedule_state: Option<String>,
    #[arg(long, env = "ORPHAN_TIMEOUT_MINUTES", global = true)]
    pub orphan_timeout_minutes: Option<String>,
    #[arg(long, env = "INTERRUPTION_COOLDOWN_MINUTES", global = true)]
    pub interruption_cooldown_minutes: Option<String>,
    #[arg(long, env = "ALLOW_BURSTABLE", global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    pub allow_burstable: Option<String>,
}

impl SettingsArgs {
    /// The values given, as `(stem, value)` pairs.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let fields: [(&'static str, &Option<String>); 20] = [
            ("regions", &self.regions),
            ("tag-filters", &self.tag_filters),
            ("tag-filtering-mode", &self.tag_filtering_mode),
            ("dry-run", &self.dry_run),
            ("interruption-action", &self.interruption_action),
            (
                "handle-rebalance-recommendations",
                &self.handle_rebalance_recommendations,
            ),
            ("min-on-demand-number", &self.min_on_demand_number),
            ("min-on-demand-percentage", &self.min_on_demand_percentage),
            ("allowed-instance-types", &self.allowed_instance_types),
            ("disallowed-instance-types", &self.disallowed_instance_types),
            (
                "on-demand-price-multiplier",
                &self.on_demand_price_multiplier,
            ),
            ("spot-product-description", &self.spot_product_description),
            ("replacements-per-pass", &self.replacements_per_pass),
            ("spot-price-window-minutes", &self.spot_price_window_minutes),
            ("cron-schedule", &self.cron_schedule),
            ("cron-timezone", &self.cron_timezone),
            ("cron-schedule-state", &self.cron_schedule_state),
            ("orphan-timeout-minutes", &self.orphan_timeout_minutes),
            (
                "interruption-cooldown-minutes",
                &self.interruption_cooldown_minutes,
            ),
            ("allow-burstable", &self.allow_burstable),
        ];
        fields
            .into_iter()
            .filter_map(|(stem, v)| v.clone().map(|v| (stem, v)))
            .collect()
    }

    /// Resolves and validates the settings, reporting every bad value at once.
    pub fn resolve(&self) -> Result<Settings, String> {
        Settings::from_pairs(self.pairs()).map_err(|errs| {
            errs.iter()
                .map(|e| format!("invalid setting: {e}"))
                .collect::<Vec<_>>()
                .join("\n")
        })
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

/// Runs the command line; the binary's whole `main`. Exit codes: 0 done, 2 could not run.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok((text, code)) => {
            use std::io::Write as _;
            // A closed pipe (`spotswap types ... | head`) is the reader's choice, not an error.
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
            ExitCode::from(code)
        }
        Err(message) => {
            eprintln!("spotswap: {message}");
            ExitCode::from(2)
        }
    }
}

/// Runs a parsed command and returns what to print and the exit code: 0 clean, 1 when some
/// actions or regions failed. An `Err` means the command could not run (exit code 2).
pub fn run(cli: Cli) -> Result<(String, u8), String> {
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
            let text = std::fs::read_to_string(&path)
                .map_err(|e| format!("reading {}: {e}", path.display()))?;
            let input = PlanInput::parse(&text)
                .map_err(|e| format!("{} is not a region snapshot: {e}", path.display()))?;
            // A scenario's own settings apply beneath flags and environment variables.
            let pairs = input.settings.into_iter().chain(
                cli.settings
                    .pairs()
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v)),
            );
            let settings = Settings::from_pairs(pairs).map_err(|errs| {
                errs.iter()
                    .map(|e| format!("invalid setting: {e}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
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
        Command::Settings { output } => Ok((settings_reference(output), 0)),
    }
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
) -> Result<(String, u8), String> {
    use crate::cloud::aws::{AwsAccount, check_credentials, load_config};
    use crate::pass::{PassOptions, regions, run_pass};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))?;
    runtime.block_on(async {
        let config = load_config(profile, None).await;
        if config.region().is_none() {
            return Err(
                "no AWS region is configured: set AWS_REGION (or a region in your \
                 profile); spotswap lists the account's regions from there"
                    .to_string(),
            );
        }
        check_credentials(&config).await.map_err(|e| {
            format!(
                "{e}: set AWS_PROFILE or --profile, run `aws sso login`, or export \
                 AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        })?;
        let account = AwsAccount::new(config);
        let regions = regions(&account, settings)
            .await
            .map_err(|e| format!("cannot list the account's regions: {e}"))?;
        if regions.is_empty() {
            return Err("no enabled region matches the regions setting".to_string());
        }
        let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let progress = move |region: &str, stage: &str| {
            if interactive {
                eprintln!("{region}: {stage}");
            }
        };
        let opts = PassOptions {
            dry_run: settings.dry_run || kind != Live::Run,
            deadline: None,
        };
        let report = run_pass(&account, &regions, settings, Utc::now(), &opts, &progress).await;
        let text = match (output, kind) {
            (Output::Json, Live::Report) => json(
                &report
                    .regions
                    .iter()
                    .filter_map(|r| r.savings.as_ref())
                    .collect::<Vec<_>>(),
            ),
            (Output::Json, _) => json(&report),
            (Output::Table, Live::Report) => report_table(&report),
            (Output::Table, _) => pass_table(&report),
        };
        Ok((text, report.exit_code()))
    })
}

/// A pass report as text: per region, every decision, what was done, and the money.
pub fn pass_table(r: &crate::pass::PassReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "spotswap pass at {}{}",
        r.started_at.format("%Y-%m-%d %H:%M:%S UTC"),
        if r.dry_run {
            " (dry run: nothing changed)"
        } else {
            ""
        }
    );
    for region in &r.regions {
        let _ = writeln!(s);
        if let Some(e) = &region.error {
            let _ = writeln!(s, "{}: could not be read: {e}", region.region);
            continue;
        }
        for w in &region.warnings {
            let _ = writeln!(s, "{}: note: {w}", region.region);
        }
        if let Some(p) = &region.plan {
            if p.decisions.is_empty() {
                let _ = writeln!(
                    s,
                    "{}: nothing to do ({} groups seen)",
                    region.region, region.groups
                );
            } else {
                s.push_str(&plan_table(p));
            }
        }
        let done: Vec<_> = region
            .outcomes
            .iter()
            .filter(|o| !matches!(o.status, crate::execute::Status::DryRun))
            .collect();
        if !done.is_empty() {
            let _ = writeln!(s, "Outcomes:");
            for o in done {
                let status = match &o.status {
                    crate::execute::Status::Done {
                        instance_id: Some(id),
                        instance_type: Some(t),
                    } => format!("done: {id} ({t})"),
                    crate::execute::Status::Done { .. } => "done".into(),
                    crate::execute::Status::Failed { error } => format!("FAILED: {error}"),
                    crate::execute::Status::Deferred => "deferred to the next pass".into(),
                    crate::execute::Status::DryRun => "dry run".into(),
                };
                let _ = writeln!(
                    s,
                    "  {:<24} {:<20} {:<17} {status}",
                    o.group,
                    o.instance.as_deref().unwrap_or("-"),
                    o.action.name()
                );
            }
        }
        if let Some(sv) = &region.savings {
            let _ = writeln!(
                s,
                "Savings now: ${:.4}/h (${:.2}/month) against all on-demand",
                sv.hourly_saving, sv.monthly_saving
            );
        }
        let calls: Vec<String> = region
            .calls
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(s, "AWS calls: {}", calls.join(", "));
    }
    let t = &r.totals;
    let _ = writeln!(
        s,
        "\nTotals: {} regions, {} groups, {} clones launched, {} swaps, {} orphans terminated, {} failures{}",
        t.regions,
        t.groups_seen,
        t.clones_launched,
        t.swaps,
        t.orphans_terminated,
        t.failures,
        if t.deferred > 0 {
            format!(", {} deferred", t.deferred)
        } else {
            String::new()
        }
    );
    s
}

/// The savings report as text.
pub fn report_table(r: &crate::pass::PassReport) -> String {
    let mut s = String::new();
    let (mut hourly, mut monthly) = (0.0, 0.0);
    for region in &r.regions {
        if let Some(e) = &region.error {
            let _ = writeln!(s, "{}: could not be read: {e}", region.region);
            continue;
        }
        let Some(sv) = &region.savings else { continue };
        if sv.groups.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "{} (on-demand: {}; spot: {})",
            sv.region,
            source_with_age(&sv.on_demand_source),
            sv.spot_source
        );
        let _ = writeln!(
            s,
            "  {:<24} {:>9} {:>5} {:>5} {:>10} {:>12} {:>10} {:>11}",
            "GROUP", "INSTANCES", "SPOT", "OD", "$/H NOW", "$/H ALL-OD", "SAVED $/H", "SAVED $/MO"
        );
        for g in &sv.groups {
            let _ = writeln!(
                s,
                "  {:<24} {:>9} {:>5} {:>5} {:>10.4} {:>12.4} {:>10.4} {:>11.2}{}",
                g.group,
                g.instances,
                g.spot,
                g.on_demand,
                g.hourly_now,
                g.hourly_all_on_demand,
                g.hourly_saving,
                g.monthly_saving,
                if g.unpriced > 0 {
                    format!("  ({} unpriced)", g.unpriced)
                } else {
                    String::new()
                }
            );
            for p in &g.prices {
                let market = match p.market {
                    crate::model::Market::OnDemand => "on-demand",
                    crate::model::Market::Spot => "spot",
                };
                let _ = writeln!(
                    s,
                    "      {} {market} {}{}: ${:.4}/h ({})",
                    p.instance_type,
                    p.os,
                    p.availability_zone
                        .as_ref()
                        .map(|a| format!(" in {a}"))
                        .unwrap_or_default(),
                    p.price,
                    p.source
                );
            }
        }
        hourly += sv.hourly_saving;
        monthly += sv.monthly_saving;
    }
    let _ = writeln!(s, "Account: saving ${hourly:.4}/h, ${monthly:.2}/month");
    s
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

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("plain data serialises") + "\n"
}

fn types(args: &TypesArgs, settings: &Settings) -> Result<String, String> {
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
    let answer = like(Catalog::bundled(), prices.as_ref(), &query, args.explain)
        .map_err(|e| e.to_string())?;
    Ok(match args.output {
        Output::Json => json(&answer),
        Output::Table => types_table(&answer, prices.is_some(), &args.region),
    })
}

fn types_table(a: &LikeAnswer, priced: bool, region: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Types compatible with {} ({}):",
        a.base,
        a.compatible.len()
    );
    let _ = writeln!(
        s,
        "{:<20} {:>6} {:>10} {:>12}",
        "TYPE", "VCPUS", "MEMORY", "ON-DEMAND"
    );
    for c in &a.compatible {
        let price = c
            .on_demand_price
            .map_or("-".to_string(), |p| format!("${p:.4}/h"));
        let _ = writeln!(
            s,
            "{:<20} {:>6} {:>7} GiB {:>12}",
            c.instance_type,
            c.vcpus,
            format_gib(c.memory_mib),
            price
        );
    }
    if !priced {
        let _ = writeln!(
            s,
            "(no bundled on-demand prices for {region}: the bundled table covers {})",
            BundledPrices::bundled().region()
        );
    }
    if let Some(rejected) = &a.rejected {
        let _ = writeln!(s, "\nRejected ({}):", rejected.len());
        for r in rejected {
            let _ = writeln!(s, "{:<20} {}", r.instance_type, r.reason);
        }
    }
    s
}

fn format_gib(mib: u64) -> String {
    let gib = mib as f64 / 1024.0;
    if gib.fract() == 0.0 {
        format!("{gib:.0}")
    } else {
        format!("{gib:.2}")
    }
}

fn money(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("${v:.4}"))
}

/// The plan as a table: one row per decision.
pub fn plan_table(p: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "Plan for {} (on-demand prices: {})",
        p.region,
        source_with_age(&p.on_demand_source)
    );
    let _ = writeln!(
        s,
        "{:<24} {:<20} {:<18} {:>10} {:>10}  DECISION",
        "GROUP", "INSTANCE", "TYPE/AZ", "$/H NOW", "$/H AFTER"
    );
    for d in &p.decisions {
        let what = match &d.verdict {
            Verdict::Act(a) => describe_action(a),
            Verdict::Skip(skip) => describe_skip(skip),
        };
        let type_az = match &d.verdict {
            Verdict::Act(Action::LaunchClone {
                replaced_type,
                availability_zone,
                ..
            }) => format!("{replaced_type}/{availability_zone}"),
            _ => d
                .prices
                .first()
                .map(|p| {
                    format!(
                        "{}{}",
                        p.instance_type,
                        p.availability_zone
                            .as_ref()
                            .map(|a| format!("/{a}"))
                            .unwrap_or_default()
                    )
                })
                .unwrap_or_default(),
        };
        let _ = writeln!(
            s,
            "{:<24} {:<20} {:<18} {:>10} {:>10}  {}",
            d.group,
            d.instance.as_deref().unwrap_or("-"),
            type_az,
            money(d.hourly_cost_before),
            money(d.hourly_cost_after),
            what
        );
    }
    s
}

/// `skip batch-limit (limit 2)`: the stable reason word, then its details.
fn describe_skip(skip: &crate::plan::Skip) -> String {
    let value = serde_json::to_value(skip).unwrap_or_default();
    let details: Vec<String> = value
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != "reason")
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k} {s:?}"),
            other => format!("{k} {other}"),
        })
        .collect();
    if details.is_empty() {
        format!("skip {}", skip.name())
    } else {
        format!("skip {} ({})", skip.name(), details.join(", "))
    }
}

/// A price source, with the age of a bundled table so nobody mistakes it for today's prices.
fn source_with_age(source: &crate::model::PriceSource) -> String {
    match source {
        crate::model::PriceSource::Bundled { date, .. } => {
            match chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d") {
                Ok(d) => format!(
                    "{source}, {} days old",
                    (Utc::now().date_naive() - d).num_days()
                ),
                Err(_) => source.to_string(),
            }
        }
        crate::model::PriceSource::Live => source.to_string(),
    }
}

fn describe_action(a: &Action) -> String {
    match a {
        Action::LaunchClone {
            candidates,
            max_price,
            ..
        } => {
            let names: Vec<String> = candidates
                .iter()
                .map(|c| format!("{} ${:.4}", c.instance_type, c.spot_price))
                .collect();
            format!(
                "launch spot clone (max ${max_price:.4}): {}",
                names.join(", ")
            )
        }
        Action::Swap {
            clone, max_size, ..
        } => match max_size {
            Some(m) => format!(
                "swap in {clone} (MaxSize {} -> {} -> {})",
                m.original, m.raised, m.original
            ),
            None => format!("swap in {clone}"),
        },
        Action::CompleteSwap { clone, .. } => format!("complete swap of {clone}"),
        Action::TerminateOrphan { clone, reason } => {
            format!(
                "terminate orphan {clone} ({})",
                serde_json::to_value(reason)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            )
        }
        Action::RestoreMaxSize { current, restored } => {
            format!("restore MaxSize {current} -> {restored}")
        }
    }
}

/// The settings reference, from the [`SETTINGS`] table.
pub fn settings_reference(output: SettingsOutput) -> String {
    let mut s = String::new();
    match output {
        SettingsOutput::Markdown => {
            let _ = writeln!(
                s,
                "| Setting (flag) | Environment | CloudFormation | Group tag | Default | Meaning |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|");
            for d in SETTINGS {
                let tag = match d.scope {
                    Scope::Group => match d.alias {
                        Some(a) => format!("`{}` (alias `{a}`)", d.tag()),
                        None => format!("`{}`", d.tag()),
                    },
                    Scope::Global => "global only".into(),
                };
                let default = if d.default.is_empty() {
                    "(empty)".to_string()
                } else {
                    format!("`{}`", d.default)
                };
                let _ = writeln!(
                    s,
                    "| `--{}` | `{}` | `{}` | {} | {} | {} |",
                    d.stem,
                    d.env(),
                    d.cfn_parameter(),
                    tag,
                    default,
                    d.help
                );
            }
        }
        SettingsOutput::Table => {
            for d in SETTINGS {
                let _ = writeln!(s, "--{}  (env {}", d.stem, d.env());
                s.pop();
                match d.scope {
                    Scope::Group => {
                        let _ = write!(s, ", tag {}", d.tag());
                        if let Some(a) = d.alias {
                            let _ = write!(s, " or {a}");
                        }
                    }
                    Scope::Global => s.push_str(", global only"),
                }
                let _ = writeln!(s, ", default {:?})", d.default);
                let _ = writeln!(s, "    {}", d.help);
            }
        }
    }
    s
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
        let stems: Vec<&str> = SettingsArgs::default()
            .pairs()
            .iter()
            .map(|(s, _)| *s)
            .collect();
        assert!(stems.is_empty());
    }

    #[test]
    fn settings_pairs_cover_every_setting() {
        let all = SettingsArgs {
            regions: Some("x".into()),
            tag_filters: Some("x".into()),
            tag_filtering_mode: Some("x".into()),
            dry_run: Some("x".into()),
            interruption_action: Some("x".into()),
            handle_rebalance_recommendations: Some("x".into()),
            min_on_demand_number: Some("x".into()),
            min_on_demand_percentage: Some("x".into()),
            allowed_instance_types: Some("x".into()),
            disallowed_instance_types: Some("x".into()),
            on_demand_price_multiplier: Some("x".into()),
            spot_product_description: Some("x".into()),
            replacements_per_pass: Some("x".into()),
            spot_price_window_minutes: Some("x".into()),
            cron_schedule: Some("x".into()),
            cron_timezone: Some("x".into()),
            cron_schedule_state: Some("x".into()),
            orphan_timeout_minutes: Some("x".into()),
            interruption_cooldown_minutes: Some("x".into()),
            allow_burstable: Some("x".into()),
        };
        let stems: Vec<&str> = all.pairs().iter().map(|(s, _)| *s).collect();
        let want: Vec<&str> = SETTINGS.iter().map(|d| d.stem).collect();
        assert_eq!(stems, want);
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
    }

    #[test]
    fn a_bad_flag_value_names_the_flag_and_the_variable() {
        let cli =
            Cli::try_parse_from(["spotswap", "--min-on-demand-percentage", "140", "settings"])
                .unwrap();
        let err = run(cli).unwrap_err();
        assert!(err.contains("--min-on-demand-percentage"), "{err}");
        assert!(err.contains("MIN_ON_DEMAND_PERCENTAGE"), "{err}");
        assert!(err.contains("140"), "{err}");
    }
}
