//! Text renderers of the `spotswap` command: plans, pass reports, savings, compatible types and
//! the settings reference, as tables for people (JSON output is the library's types, as they
//! serialise). They decide nothing and never print user data.

use std::fmt::Write as _;

use chrono::Utc;
use spotswap::like::LikeAnswer;
use spotswap::model::{Market, PriceSource};
use spotswap::plan::{Action, Plan, Skip, Verdict};
use spotswap::preflight::{Preflight, Verdict as CheckVerdict};
use spotswap::price_table::BundledPrices;
use spotswap::report::{PassReport, Status};
use spotswap::settings::{SETTINGS, Scope, SettingDef};

use crate::args::{SettingsArgs, SettingsOutput};

/// The preflight as text: a line per check (region, IAM action, verdict, what it was shaped
/// from), then a line per problem naming the region, the action, the resource and what to
/// change.
pub fn check_table(p: &Preflight) -> String {
    let mut s = String::new();
    let rw = p
        .checks
        .iter()
        .map(|c| c.region.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let aw = p
        .checks
        .iter()
        .map(|c| c.action.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        s,
        "{:rw$}  {:aw$}  {:11}  DETAIL",
        "REGION", "ACTION", "VERDICT"
    );
    for c in &p.checks {
        let detail = match &c.verdict {
            CheckVerdict::Allowed => c.subject.clone(),
            CheckVerdict::Refused { refusal, .. } => {
                format!(
                    "{} on {}: {}",
                    refusal.action, refusal.resource, refusal.denied_by
                )
            }
            CheckVerdict::NotChecked { why } => why.clone(),
            CheckVerdict::Failed { error } => error.clone(),
        };
        let _ = writeln!(
            s,
            "{:rw$}  {:aw$}  {:11}  {detail}",
            c.region,
            c.action,
            c.verdict.name()
        );
    }
    let problems: Vec<_> = p.problems().collect();
    let _ = writeln!(s);
    if problems.is_empty() {
        let _ = writeln!(s, "No write that could be asked about was refused.");
    } else {
        let _ = writeln!(s, "{} problem(s):", problems.len());
        for c in problems {
            if let CheckVerdict::Refused { refusal, fix } = &c.verdict {
                let _ = writeln!(
                    s,
                    "{}: {} refused on {} ({}): {fix}",
                    c.region, refusal.action, refusal.resource, refusal.denied_by
                );
            }
        }
    }
    s
}

/// A pass report as text: per region, every decision, what was done, and the money.
pub fn pass_table(r: &PassReport) -> String {
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
            .filter(|o| !matches!(o.status, Status::DryRun))
            .collect();
        if !done.is_empty() {
            let _ = writeln!(s, "Outcomes:");
            let gw = group_width(done.iter().map(|o| o.group.as_str()));
            for o in done {
                let status = match &o.status {
                    Status::Done {
                        instance_id: Some(id),
                        instance_type: Some(t),
                    } => format!("done: {id} ({t})"),
                    Status::Done { .. } => "done".into(),
                    Status::Failed { error } => format!("FAILED: {error}"),
                    Status::Deferred => "deferred to the next pass".into(),
                    Status::Held { reason } => format!("held: {reason}"),
                    Status::Superseded { reason } => format!("not needed: {reason}"),
                    Status::DryRun => "dry run".into(),
                };
                let _ = writeln!(
                    s,
                    "  {:<gw$} {:<20} {:<17} {status}",
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
                shown(sv.hourly_saving, 4),
                shown(sv.monthly_saving, 2)
            );
        }
        let calls: Vec<String> = region
            .calls
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let _ = writeln!(s, "AWS calls: {}", calls.join(", "));
        if !region.leases_left.is_empty() {
            let _ = writeln!(
                s,
                "Leases left to end by themselves (a swap step in doubt, or a clone not yet \
                 healthy; the next pass settles it): {}",
                region.leases_left.join(", ")
            );
        }
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
    if r.stopped {
        let left: usize = r.regions.iter().map(|g| g.leases_left.len()).sum();
        let _ = writeln!(
            s,
            "Stopped by the operator: no change was sent after the signal; {} actions not \
             started are deferred to the next pass; {}",
            t.deferred,
            if left == 0 {
                "every lease was given back, so the next pass can start at once".to_string()
            } else {
                format!(
                    "{left} group leases were left to end by themselves (listed above); every \
                     other lease was given back"
                )
            }
        );
    }
    s
}

/// The width of a table's group column: the longest group name (at least 24), so a long
/// name never shifts the columns after it.
fn group_width<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names.map(|n| n.chars().count()).max().unwrap_or(0).max(24)
}

/// The savings report as text.
pub fn report_table(r: &PassReport) -> String {
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
        let gw = group_width(sv.groups.iter().map(|g| g.group.as_str()));
        let _ = writeln!(
            s,
            "  {:<gw$} {:>9} {:>5} {:>5} {:>10} {:>12} {:>10} {:>11}",
            "GROUP", "INSTANCES", "SPOT", "OD", "$/H NOW", "$/H ALL-OD", "SAVED $/H", "SAVED $/MO"
        );
        for g in &sv.groups {
            let _ = writeln!(
                s,
                "  {:<gw$} {:>9} {:>5} {:>5} {:>10.4} {:>12.4} {:>10.4} {:>11.2}{}",
                g.group,
                g.instances,
                g.spot,
                g.on_demand,
                shown(g.hourly_now, 4),
                shown(g.hourly_all_on_demand, 4),
                shown(g.hourly_saving, 4),
                shown(g.monthly_saving, 2),
                if g.unpriced > 0 {
                    format!("  ({} unpriced)", g.unpriced)
                } else {
                    String::new()
                }
            );
            for p in &g.prices {
                let market = match p.market {
                    Market::OnDemand => "on-demand",
                    Market::Spot => "spot",
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
    let _ = writeln!(
        s,
        "Account: saving ${:.4}/h, ${:.2}/month",
        shown(hourly, 4),
        shown(monthly, 2)
    );
    s
}

pub fn types_table(a: &LikeAnswer, priced: bool, region: &str) -> String {
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
    v.map_or("-".into(), |v| format!("${:.4}", shown(v, 4)))
}

/// `v` rounded to the decimals it is shown with, so that a sum's floating-point dust never
/// prints as `-0.00`.
fn shown(v: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    let r = (v * scale).round() / scale;
    if r == 0.0 { 0.0 } else { r }
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
    let gw = group_width(p.decisions.iter().map(|d| d.group.as_str()));
    let _ = writeln!(
        s,
        "{:<gw$} {:<20} {:<18} {:>10} {:>10}  DECISION",
        "GROUP", "INSTANCE", "TYPE/AZ", "$/H NOW", "$/H AFTER"
    );
    for d in &p.decisions {
        let what = match &d.verdict {
            Verdict::Act(a) => describe_action(a),
            Verdict::Skip(skip) => describe_skip(skip),
        };
        let type_az = match &d.verdict {
            Verdict::Act(
                Action::LaunchClone {
                    replaced_type,
                    availability_zone,
                    ..
                }
                | Action::LaunchOnDemand {
                    replaced_type,
                    availability_zone,
                    ..
                },
            ) => format!("{replaced_type}/{availability_zone}"),
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
            "{:<gw$} {:<20} {:<18} {:>10} {:>10}  {}",
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
fn describe_skip(skip: &Skip) -> String {
    let details: Vec<String> = skip
        .details()
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    if details.is_empty() {
        format!("skip {}", skip.name())
    } else {
        format!("skip {} ({})", skip.name(), details.join(", "))
    }
}

/// A price source, with the age of a bundled table so nobody mistakes it for today's prices.
fn source_with_age(source: &PriceSource) -> String {
    match source {
        PriceSource::Bundled { date, .. } => {
            match chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d") {
                Ok(d) => format!(
                    "{source}, {} days old",
                    (Utc::now().date_naive() - d).num_days()
                ),
                Err(_) => source.to_string(),
            }
        }
        PriceSource::Live => source.to_string(),
    }
}

/// The tags a launch leaves out to stay within EC2's 50, if any.
fn left_out(tags: &[String]) -> String {
    if tags.is_empty() {
        String::new()
    } else {
        format!("; tags left out (EC2 allows 50): {}", tags.join(", "))
    }
}

fn describe_action(a: &Action) -> String {
    match a {
        Action::LaunchClone {
            candidates,
            max_price,
            tags_left_out,
            avoided,
            fleet,
            run_instances_because,
            ..
        } => {
            let avoided = if avoided.is_empty() {
                String::new()
            } else {
                let pools: Vec<String> = avoided
                    .iter()
                    .map(|p| format!("{} ({})", p.instance_type, p.reason))
                    .collect();
                format!("; avoided: {}", pools.join(", "))
            };
            let names: Vec<String> = candidates
                .iter()
                .map(|c| format!("{} ${:.4}", c.instance_type, c.spot_price))
                .collect();
            let how = match fleet {
                Some(f) => format!("in fleet {} ({})", f.key, f.strategy.name()),
                None => match run_instances_because {
                    Some(why) => format!("by RunInstances ({})", why.name()),
                    None => "by RunInstances".to_string(),
                },
            };
            format!(
                "launch spot clone {how} (max ${max_price:.4}): {}{avoided}{}",
                names.join(", "),
                left_out(tags_left_out)
            )
        }
        Action::DeleteTemplate {
            name,
            launch_configuration,
            ..
        } => {
            format!("delete launch template {name}: no group uses {launch_configuration} any more")
        }
        Action::LaunchOnDemand {
            instance_type,
            keep,
            on_demand,
            tags_left_out,
            ..
        } => format!(
            "launch on-demand {instance_type} in its place: the group keeps {keep} on-demand, \
             has {on_demand}{}",
            left_out(tags_left_out)
        ),
        Action::Swap {
            clone,
            max_size,
            pair,
            replaces,
            tags_left_out,
        } if !pair.is_empty() => match max_size {
            Some(m) => format!(
                "pair {clone} with {replaces} and swap it in (MaxSize {} -> {} -> {}){}",
                m.original,
                m.raised,
                m.original,
                left_out(tags_left_out)
            ),
            None => format!(
                "pair {clone} with {replaces} and swap it in{}",
                left_out(tags_left_out)
            ),
        },
        Action::Swap {
            clone, max_size, ..
        } => match max_size {
            Some(m) => format!(
                "swap in {clone} (MaxSize {} -> {} -> {})",
                m.original, m.raised, m.original
            ),
            None => format!("swap in {clone}"),
        },
        Action::AttachClone {
            clone,
            replaces,
            max_size,
            ..
        } => {
            let raised = max_size.map_or(String::new(), |m| {
                format!(" (MaxSize {} -> {})", m.original, m.raised)
            });
            format!(
                "attach {clone} for {replaces}{raised}; {replaces} leaves once {clone} is \
                 healthy behind the group's load balancers"
            )
        }
        Action::CompleteSwap { clone, .. } => format!("complete swap of {clone}"),
        Action::UndoSwap {
            clone,
            load_balancer,
            state,
            ..
        } => format!("undo swap of {clone}: never healthy ({load_balancer}: {state})"),
        Action::SettleSwap {
            clone,
            replaces,
            remove,
            ..
        } => format!("settle swap of {clone} for {replaces}: take {remove} out"),
        Action::TerminateOrphan { clone, reason } => {
            format!("terminate orphan {clone} ({})", reason.name())
        }
        Action::RestoreMaxSize {
            current,
            restored,
            partial: false,
        } => format!("restore MaxSize {current} -> {restored}"),
        Action::RestoreMaxSize {
            current,
            restored,
            partial: true,
        } => format!(
            "restore MaxSize {current} -> {restored} (desired capacity allows no lower yet; \
             the rest in a later pass)"
        ),
        Action::BackOff { backoff: b } => format!(
            "back off: clone {} died before its swap ({}), failure {} in a row; no launch \
             until {}",
            b.clone,
            b.reason,
            b.failures,
            b.until.format("%Y-%m-%d %H:%M UTC")
        ),
        Action::EndBackOff { failures } => {
            format!("end back-off: a clone booted after {failures} failures in a row")
        }
    }
}

/// The settings reference, from the [`SETTINGS`] table.
/// The value a setting has in this invocation, and where it came from.
fn effective<'a>(given: &'a SettingsArgs, d: &'a SettingDef) -> (&'a str, &'static str) {
    let value = given
        .given
        .iter()
        .find(|(stem, _)| *stem == d.stem)
        .map_or(d.default, |(_, v)| v.as_str());
    (value, given.source(d.stem))
}

/// `spotswap settings`: every setting's effective value and where it came from (table, JSON),
/// or the README's reference table (markdown).
pub fn settings_reference(output: SettingsOutput, given: &SettingsArgs) -> String {
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
                let (value, from) = effective(given, d);
                let _ = write!(s, "--{} = {value:?}  (from {from}; env {}", d.stem, d.env());
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
        SettingsOutput::Json => {
            let settings: Vec<serde_json::Value> = SETTINGS
                .iter()
                .map(|d| {
                    let (value, from) = effective(given, d);
                    serde_json::json!({
                        "setting": d.stem,
                        "value": value,
                        "source": from,
                        "flag": format!("--{}", d.stem),
                        "environment": d.env(),
                        "tag": (d.scope == Scope::Group).then(|| d.tag()),
                        "default": d.default,
                        "help": d.help,
                    })
                })
                .collect();
            let doc = spotswap::report::json_output(serde_json::json!({"settings": settings}));
            let _ = writeln!(
                s,
                "{}",
                serde_json::to_string_pretty(&doc).expect("plain data")
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_group_name_widens_its_column_and_keeps_the_others_aligned() {
        use spotswap::plan::{Decision, Skip, Verdict};
        let long = "payments-checkout-api-production-blue-eu-west-1";
        let plan = Plan {
            region: "eu-west-1".into(),
            on_demand_source: PriceSource::Live,
            decisions: ["web", long]
                .iter()
                .map(|g| Decision {
                    group: g.to_string(),
                    instance: Some("i-0123456789abcdef0".into()),
                    verdict: Verdict::Skip(Skip::NotOptedIn),
                    hourly_cost_before: None,
                    hourly_cost_after: None,
                    prices: Vec::new(),
                })
                .collect(),
        };
        let text = plan_table(&plan);
        let columns: Vec<usize> = text
            .lines()
            .skip(1)
            .map(|l| {
                l.find("i-0123456789abcdef0")
                    .or_else(|| l.find("INSTANCE"))
                    .expect("an instance column")
            })
            .collect();
        assert_eq!(columns.len(), 3, "{text}");
        assert!(columns.iter().all(|c| *c == long.len() + 1), "{text}");
    }

    #[test]
    fn money_never_shows_a_negative_zero() {
        for v in [-0.0, -1e-17, -0.00004, 0.00004] {
            assert_eq!(format!("{:.4}", shown(v, 4)), "0.0000", "{v}");
            assert_eq!(money(Some(v)), "$0.0000", "{v}");
        }
        assert_eq!(format!("{:.2}", shown(-0.004, 2)), "0.00");
        assert_eq!(
            format!("{:.2}", shown(-0.5, 2)),
            "-0.50",
            "a real loss still shows"
        );
    }
}
