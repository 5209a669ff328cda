//! One pass over an account: for every enabled region, concurrently, observe -> plan ->
//! execute, and a report of what was decided, done, skipped and why, with the money.
//!
//! A region that cannot be read is reported and does not stop the others; an action that
//! fails is reported and does not stop the others. Only a pass that cannot start at all
//! (the account's regions cannot be listed) is an error. No decision is made here.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use serde::Serialize;

use crate::cloud::{Account, CloudError};
use crate::execute::{ExecOptions, Outcome, Status, execute};
use crate::observe::observe;
use crate::plan::{ActionKind, Inputs, Plan, plan_with};
use crate::savings::{Savings, savings};
use crate::settings::Settings;

/// Regions processed at the same time. Each has its own EC2 throttling buckets.
pub const REGION_CONCURRENCY: usize = 4;

/// How to run a pass.
#[derive(Debug, Clone)]
pub struct PassOptions {
    pub dry_run: bool,
    /// No launch or swap starts after this instant.
    pub deadline: Option<tokio::time::Instant>,
}

/// What happened in one region.
#[derive(Debug, Clone, Serialize)]
pub struct RegionReport {
    pub region: String,
    /// Groups observed (in opt-in mode, those carrying the filter tags).
    pub groups: u32,
    /// Why the region could not be read, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<CloudError>,
    /// Reads replaced by bundled data.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    pub outcomes: Vec<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub savings: Option<Savings>,
    /// AWS calls made, by operation.
    pub calls: BTreeMap<String, u64>,
}

/// Counts over the whole pass.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub regions: u32,
    pub groups_seen: u32,
    pub clones_launched: u32,
    pub swaps: u32,
    pub orphans_terminated: u32,
    pub max_size_restored: u32,
    pub failures: u32,
    pub deferred: u32,
    /// Hourly saving of the actions done (or, in a dry run, planned), USD.
    pub hourly_savings: f64,
    /// Hourly saving now, against running every opted-in instance on-demand, USD.
    pub hourly_savings_now: f64,
    pub calls: u64,
}

/// A pass's report: the pass report JSON of the CLI and the Lambda.
#[derive(Debug, Clone, Serialize)]
pub struct PassReport {
    pub started_at: DateTime<Utc>,
    pub dry_run: bool,
    pub totals: Totals,
    pub regions: Vec<RegionReport>,
}

impl PassReport {
    /// 0 when everything went through, 1 when some region or action failed.
    pub fn exit_code(&self) -> u8 {
        u8::from(self.totals.failures > 0)
    }
}

/// The regions a pass covers: those the account has enabled, filtered by the setting.
pub async fn regions<A: Account>(
    account: &A,
    settings: &Settings,
) -> Result<Vec<String>, CloudError> {
    Ok(account
        .regions()
        .await?
        .into_iter()
        .filter(|r| settings.region_enabled(r))
        .collect())
}

/// Runs one pass over the given regions, calling `progress(region, stage)` as it goes.
pub async fn run_pass<A: Account>(
    account: &A,
    regions: &[String],
    settings: &Settings,
    now: DateTime<Utc>,
    opts: &PassOptions,
    progress: &(dyn Fn(&str, &str) + Sync),
) -> PassReport {
    let mut reports: Vec<RegionReport> = stream::iter(regions.iter())
        .map(|r| region_pass(account, r, settings, now, opts, progress))
        .buffer_unordered(REGION_CONCURRENCY)
        .collect()
        .await;
    reports.sort_by(|a, b| a.region.cmp(&b.region));
    let totals = totals(&reports);
    PassReport {
        started_at: now,
        dry_run: opts.dry_run,
        totals,
        regions: reports,
    }
}

async fn region_pass<A: Account>(
    account: &A,
    region: &str,
    settings: &Settings,
    now: DateTime<Utc>,
    opts: &PassOptions,
    progress: &(dyn Fn(&str, &str) + Sync),
) -> RegionReport {
    use crate::cloud::Inventory;
    let cloud = account.region(region);
    progress(region, "observing");
    let observation = match observe(&cloud, settings, now).await {
        Ok(o) => o,
        Err(e) => {
            progress(region, "could not be read");
            return RegionReport {
                region: region.to_string(),
                groups: 0,
                error: Some(e),
                warnings: Vec::new(),
                plan: None,
                outcomes: Vec::new(),
                savings: None,
                calls: cloud.call_counts(),
            };
        }
    };
    let inputs = Inputs::with_policies(
        &observation.snapshot,
        settings,
        observation.policies.clone(),
        now,
    );
    let p = plan_with(&inputs);
    let actions = p.actions().count();
    progress(
        region,
        &format!(
            "{} groups, {actions} actions{}",
            observation.snapshot.groups.len(),
            if opts.dry_run { " (dry run)" } else { "" }
        ),
    );
    let exec = ExecOptions {
        dry_run: opts.dry_run,
        now,
        deadline: opts.deadline,
    };
    let outcomes = execute(&cloud, &observation.snapshot, &p, &exec).await;
    progress(region, "done");
    RegionReport {
        region: region.to_string(),
        groups: observation.snapshot.groups.len() as u32,
        error: None,
        warnings: observation.warnings,
        savings: Some(savings(&inputs)),
        plan: Some(p),
        outcomes,
        calls: cloud.call_counts(),
    }
}

fn totals(reports: &[RegionReport]) -> Totals {
    let mut t = Totals {
        regions: reports.len() as u32,
        ..Totals::default()
    };
    for r in reports {
        if r.error.is_some() {
            t.failures += 1;
        }
        t.calls += r.calls.values().sum::<u64>();
        if let Some(s) = &r.savings {
            t.hourly_savings_now += s.hourly_saving;
        }
        t.groups_seen += r.groups;
        for o in &r.outcomes {
            let done = matches!(o.status, Status::Done { .. } | Status::DryRun);
            match o.status {
                Status::Failed { .. } => t.failures += 1,
                Status::Deferred => t.deferred += 1,
                _ => {}
            }
            if !done {
                continue;
            }
            match o.action {
                ActionKind::LaunchClone => t.clones_launched += 1,
                ActionKind::Swap | ActionKind::CompleteSwap => {
                    t.swaps += 1;
                    t.hourly_savings += o.hourly_saving.unwrap_or(0.0);
                }
                ActionKind::TerminateOrphan => {
                    t.orphans_terminated += 1;
                    t.hourly_savings += o.hourly_saving.unwrap_or(0.0);
                }
                ActionKind::RestoreMaxSize => t.max_size_restored += 1,
            }
        }
    }
    t
}
