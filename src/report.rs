//! What a pass reports: per region, the plan, what became of every action, the money, and
//! the AWS calls made; and totals over the whole pass.
//!
//! This is the pass report JSON of `spotswap run --output json` and of the Lambda's return
//! value, so its field names are a contract. Plain data and counting only: rendering it as a
//! table is the `spotswap` binary's job, logging it the pass's.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::cloud::CloudError;
use crate::plan::{ActionKind, Plan, Skip};
use crate::savings::Savings;

/// What happened to one action.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Status {
    Done {
        /// For launches: the clone's id and type.
        #[serde(skip_serializing_if = "Option::is_none")]
        instance_id: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        instance_type: Option<String>,
    },
    Failed {
        error: CloudError,
    },
    /// Dry run: nothing was called.
    DryRun,
    /// Not started: too little time left in this invocation.
    Deferred,
    /// Not started: an earlier launch of this pass met a limit that this one would meet too
    /// (the region's quota, a subnet out of addresses); `reason` says which.
    Held {
        reason: String,
    },
    /// Not done, because a read made just before the call showed it was no longer wanted: the
    /// clone had joined a group since the pass read it (another pass, running at the same time,
    /// swapped it in). `reason` says so.
    Superseded {
        reason: String,
    },
}

/// The outcome of one action.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outcome {
    pub group: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    pub action: ActionKind,
    #[serde(flatten)]
    pub status: Status,
    /// Hourly saving the action brings once done, USD (before minus after).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hourly_saving: Option<f64>,
    /// For a launch: the candidate types that answered with a capacity error in the action's
    /// AZ, in the order tried; those pools are avoided for the cool-down.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub no_capacity: Vec<String>,
}

impl Outcome {
    /// Whether the action failed.
    pub fn failed(&self) -> bool {
        matches!(self.status, Status::Failed { .. })
    }
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
    /// Figures taken from the process's cache instead of read this pass, with their age.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cached: Vec<crate::cache::CachedRead>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Plan>,
    pub outcomes: Vec<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub savings: Option<Savings>,
    /// AWS calls made, by operation.
    pub calls: BTreeMap<String, u64>,
    /// Groups whose lease this pass left to end by itself rather than give back: a swap step
    /// there is in doubt, or a swap waits for its clone's health (the next pass settles it from
    /// the scaling activities once the lease ends).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub leases_left: Vec<String>,
}

impl RegionReport {
    /// A region that could not be read, or was cut short: the error and the calls it made.
    pub fn failed(region: &str, error: CloudError, calls: BTreeMap<String, u64>) -> Self {
        RegionReport {
            region: region.to_string(),
            groups: 0,
            error: Some(error),
            warnings: Vec::new(),
            cached: Vec::new(),
            plan: None,
            outcomes: Vec::new(),
            savings: None,
            calls,
            leases_left: Vec::new(),
        }
    }
}

/// Counts over the whole pass.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Totals {
    pub regions: u32,
    pub groups_seen: u32,
    /// Clones launched: spot ones, and on-demand ones that restore a group's floor.
    pub clones_launched: u32,
    pub swaps: u32,
    pub orphans_terminated: u32,
    pub max_size_restored: u32,
    pub failures: u32,
    /// Actions not started: out of time, or held back by a limit met earlier in the pass.
    pub deferred: u32,
    /// Hourly saving of the actions done (or, in a dry run, planned), USD.
    pub hourly_savings: f64,
    /// Hourly saving now, against running every opted-in instance on-demand, USD.
    pub hourly_savings_now: f64,
    /// AWS calls made in the regions (the one account-wide `DescribeRegions` is not counted).
    pub calls: u64,
    /// In-service instances of the opted-in groups, and how many of them run on spot.
    pub instances: u32,
    pub spot_instances: u32,
    /// Groups left alone for a setting tag spotswap cannot use (`invalid-setting`).
    pub misconfigured_groups: u32,
    /// Writes the preflight found refused by IAM (0 when it found none, or did not run).
    pub permission_problems: u32,
}

impl Totals {
    /// The spot share of the managed capacity, in percent; `None` without instances.
    pub fn spot_share_percent(&self) -> Option<f64> {
        (self.instances > 0)
            .then(|| f64::from(self.spot_instances) * 100.0 / f64::from(self.instances))
    }
}

impl Totals {
    /// Counts over the regions' reports.
    pub fn of(reports: &[RegionReport]) -> Totals {
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
                for g in &s.groups {
                    t.instances += g.instances;
                    t.spot_instances += g.spot;
                }
            }
            if let Some(plan) = &r.plan {
                t.misconfigured_groups += plan
                    .skips()
                    .filter(|(_, s)| matches!(s, Skip::InvalidSetting { .. }))
                    .count() as u32;
            }
            t.groups_seen += r.groups;
            for o in &r.outcomes {
                let done = matches!(o.status, Status::Done { .. } | Status::DryRun);
                match o.status {
                    Status::Failed { .. } => t.failures += 1,
                    Status::Deferred | Status::Held { .. } => t.deferred += 1,
                    _ => {}
                }
                if !done {
                    continue;
                }
                match o.action {
                    ActionKind::LaunchClone | ActionKind::LaunchOnDemand => t.clones_launched += 1,
                    ActionKind::Swap | ActionKind::CompleteSwap => {
                        t.swaps += 1;
                        t.hourly_savings += o.hourly_saving.unwrap_or(0.0);
                    }
                    ActionKind::TerminateOrphan => {
                        t.orphans_terminated += 1;
                        t.hourly_savings += o.hourly_saving.unwrap_or(0.0);
                    }
                    ActionKind::RestoreMaxSize => t.max_size_restored += 1,
                    // Half a swap: it counts when it completes (`complete-swap`).
                    ActionKind::AttachClone
                    | ActionKind::UndoSwap
                    | ActionKind::BackOff
                    | ActionKind::EndBackOff
                    | ActionKind::DeleteTemplate
                    | ActionKind::SettleSwap => {}
                }
            }
        }
        t
    }
}

/// A pass's report: the pass report JSON of the CLI and the Lambda.
#[derive(Debug, Clone, Serialize)]
pub struct PassReport {
    /// The id every log record of the pass carries (its `pass` span's `pass_id`).
    pub pass_id: String,
    pub started_at: DateTime<Utc>,
    pub dry_run: bool,
    /// The operator stopped the pass (SIGINT or SIGTERM): it sent no change after that, and
    /// what it did not start is `deferred`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
    pub totals: Totals,
    pub regions: Vec<RegionReport>,
}

/// The exit code of a pass its operator stopped, as a shell reports a process ended by SIGINT.
pub const EXIT_STOPPED: u8 = 130;

impl PassReport {
    /// 0 when everything went through, 1 when some region or action failed, 130 when the
    /// operator stopped the pass.
    pub fn exit_code(&self) -> u8 {
        if self.stopped {
            EXIT_STOPPED
        } else {
            u8::from(self.totals.failures > 0)
        }
    }
}

/// Failed outcomes a pass's summary lists in full, over all its regions (in region order);
/// past that it counts them only. About 330 bytes each: 100 keep the summary near 35 KB.
pub const FAILURES_LISTED: usize = 100;

/// What the Lambda returns for a pass: the totals and, per region, its counts and its failures,
/// so the answer stays small whatever the account (Lambda caps a response at 6 MB, and a full
/// report is about 1 KB per instance). The decisions themselves are in the logs: one record
/// per outcome, and per skip at debug level.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PassSummary {
    pub pass_id: String,
    pub started_at: DateTime<Utc>,
    pub dry_run: bool,
    pub totals: Totals,
    pub regions: Vec<RegionSummary>,
}

/// One region of a [`PassSummary`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RegionSummary {
    pub region: String,
    pub groups: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<CloudError>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Figures a warm Lambda reused instead of reading them, with their age.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cached: Vec<crate::cache::CachedRead>,
    /// Outcomes counted by action and status (`launch-clone` -> `done` -> 3).
    pub outcomes: BTreeMap<ActionKind, BTreeMap<&'static str, u32>>,
    /// Its failed outcomes in full, as many as the pass's [`FAILURES_LISTED`] leave room for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<Outcome>,
    /// Failed outcomes past those.
    #[serde(skip_serializing_if = "is_zero")]
    pub failures_not_listed: u32,
    pub calls: BTreeMap<String, u64>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Status {
    /// The status's stable word, as the JSON names it.
    pub fn name(&self) -> &'static str {
        match self {
            Status::Done { .. } => "done",
            Status::Failed { .. } => "failed",
            Status::DryRun => "dry-run",
            Status::Deferred => "deferred",
            Status::Held { .. } => "held",
            Status::Superseded { .. } => "superseded",
        }
    }
}

impl PassReport {
    /// The bounded summary of this report.
    pub fn summary(&self) -> PassSummary {
        let mut room = FAILURES_LISTED;
        PassSummary {
            pass_id: self.pass_id.clone(),
            started_at: self.started_at,
            dry_run: self.dry_run,
            totals: self.totals.clone(),
            regions: self
                .regions
                .iter()
                .map(|r| {
                    let mut outcomes: BTreeMap<ActionKind, BTreeMap<&'static str, u32>> =
                        BTreeMap::new();
                    for o in &r.outcomes {
                        *outcomes
                            .entry(o.action)
                            .or_default()
                            .entry(o.status.name())
                            .or_default() += 1;
                    }
                    let failed: Vec<&Outcome> = r.outcomes.iter().filter(|o| o.failed()).collect();
                    let listed = failed.len().min(room);
                    room -= listed;
                    RegionSummary {
                        region: r.region.clone(),
                        groups: r.groups,
                        error: r.error.clone(),
                        warnings: r.warnings.clone(),
                        cached: r.cached.clone(),
                        outcomes,
                        failures: failed[..listed].iter().map(|o| (*o).clone()).collect(),
                        failures_not_listed: (failed.len() - listed) as u32,
                        calls: r.calls.clone(),
                    }
                })
                .collect(),
        }
    }
}

/// The version of spotswap's JSON outputs (`run`, `plan`, `report`, `types`, `settings`),
/// documented in docs/json-output.md. It goes up when a field changes meaning or goes away;
/// new fields may come without it.
pub const JSON_SCHEMA_VERSION: u32 = 1;

/// A JSON output as the CLI prints it: `value`'s object with `schema_version`, and money
/// rounded as docs/json-output.md says: monthly figures to the cent, hourly costs and prices
/// to 4 decimals (a float's last digits are noise, not money).
pub fn json_output(value: impl Serialize) -> serde_json::Value {
    let mut v = serde_json::to_value(value).expect("reports are plain data");
    round_money(&mut v, None);
    match &mut v {
        serde_json::Value::Object(map) => {
            map.insert("schema_version".into(), JSON_SCHEMA_VERSION.into());
            v
        }
        other => serde_json::json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "items": other.take(),
        }),
    }
}

/// Decimals a money field keeps, by its name: `None` for a field that is not money.
fn money_decimals(key: &str) -> Option<i32> {
    if key.starts_with("monthly") {
        Some(2)
    } else if key.starts_with("hourly") || key == "price" || key.ends_with("_price") {
        Some(4)
    } else {
        None
    }
}

fn round_money(v: &mut serde_json::Value, key: Option<&str>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, x) in map.iter_mut() {
                round_money(x, Some(k.as_str()));
            }
        }
        serde_json::Value::Array(items) => {
            // The items of a list of prices are prices too.
            for x in items {
                round_money(x, key);
            }
        }
        serde_json::Value::Number(n) => {
            if let (Some(d), Some(f)) = (key.and_then(money_decimals), n.as_f64())
                && n.is_f64()
            {
                let scale = 10f64.powi(d);
                let r = (f * scale).round() / scale;
                // -0.0 reads as a loss that is not one.
                let r = if r == 0.0 { 0.0 } else { r };
                *v = serde_json::json!(r);
            }
        }
        _ => {}
    }
}

/// The account's totals of `spotswap report`: instances and costs over every region.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AccountSavings {
    pub instances: u32,
    pub spot: u32,
    pub on_demand: u32,
    pub hourly_now: f64,
    pub hourly_all_on_demand: f64,
    pub hourly_saving: f64,
    pub monthly_saving: f64,
}

impl AccountSavings {
    /// Sums the regions' savings.
    pub fn of(report: &PassReport) -> Self {
        // The pass's totals already count the instances (each is spot or on-demand).
        let counted = &report.totals;
        let mut t = AccountSavings {
            instances: counted.instances,
            spot: counted.spot_instances,
            on_demand: counted.instances - counted.spot_instances,
            ..AccountSavings::default()
        };
        for s in report.regions.iter().filter_map(|r| r.savings.as_ref()) {
            t.hourly_now += s.hourly_now;
            t.hourly_all_on_demand += s.hourly_all_on_demand;
            t.hourly_saving += s.hourly_saving;
            t.monthly_saving += s.monthly_saving;
        }
        t
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    #[test]
    fn json_outputs_carry_their_version_and_round_money_by_field() {
        let v = json_output(serde_json::json!({
            "hourly_saving": 0.123456789,
            "monthly_saving": 90.12345,
            "prices": [{"price": 0.0960000001, "instance_type": "m5.large"}],
            "max_price": 0.0961234,
            "spot_price": -0.00000001,
            "vcpus": 2,
            "ratio": 0.333333,
        }));
        assert_eq!(v["schema_version"], JSON_SCHEMA_VERSION);
        assert_eq!(v["hourly_saving"], 0.1235);
        assert_eq!(v["monthly_saving"], 90.12);
        assert_eq!(v["prices"][0]["price"], 0.096);
        assert_eq!(v["max_price"], 0.0961);
        assert_eq!(v["spot_price"].as_f64(), Some(0.0));
        assert!(v["spot_price"].as_f64().unwrap().is_sign_positive());
        assert_eq!(v["vcpus"], 2);
        // Not money: left as it is.
        assert_eq!(v["ratio"], 0.333333);
    }
}
