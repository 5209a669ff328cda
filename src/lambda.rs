//! What the `spotswap-lambda` function does with an invocation, apart from the Lambda runtime
//! itself (which stays in the binary, behind the `lambda` feature).
//!
//! A scheduled event runs one pass exactly as `spotswap run` does, starting no launch or swap
//! when too little time is left before the invocation's deadline; the container's first one
//! runs the preflight (`crate::preflight`) before it, and every later one reuses its answers; a spot interruption warning
//! (or an enabled rebalance recommendation) is handled by [`crate::interrupt`]; anything else
//! is an error naming the event's source and detail-type, and touches nothing. Settings come
//! from the same environment variables as the CLI's. Metrics go out as CloudWatch embedded
//! metric format lines. It never logs user data.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tracing::warn;

use std::sync::Arc;

use crate::cache::ReadCache;
use crate::cloud::Account;
use crate::error::Error;
use crate::events::{self, Event};
use crate::interrupt;
use crate::pass::{self, PassOptions};
use crate::preflight::{self, Preflight};
use crate::report::PassReport;
use crate::settings::{SETTINGS, Settings};

/// Time kept free at the end of an invocation: no launch or swap starts later than this
/// before the deadline, so the pass can finish its current steps and report.
pub const DEADLINE_MARGIN: Duration = Duration::from_secs(30);

/// The CloudWatch namespace of spotswap's metrics.
pub const METRICS_NAMESPACE: &str = "spotswap";

/// Reads the settings from the environment variables the CloudFormation template sets (the
/// same names as the CLI's: `MIN_ON_DEMAND_NUMBER`, ...). A bad value names the variable and
/// the stack parameter it comes from, where the operator fixes it.
pub fn settings_from_env() -> Result<Settings, Error> {
    let pairs = SETTINGS
        .iter()
        .filter_map(|d| std::env::var(d.env()).ok().map(|v| (d.stem, v)));
    Settings::from_pairs(pairs).map_err(|errors| {
        Error::Settings(
            errors
                .into_iter()
                .map(|mut e| {
                    if let Some(d) = SETTINGS.iter().find(|d| d.stem == e.setting) {
                        e.source = format!(
                            "environment variable {} (stack parameter {})",
                            d.env(),
                            d.cfn_parameter()
                        );
                    }
                    e
                })
                .collect(),
        )
    })
}

/// What the invocation returns.
#[derive(Debug)]
pub enum Handled {
    Pass(Box<PassReport>),
    Interruption(interrupt::Report),
}

impl Handled {
    /// The JSON the function returns: for a pass, its bounded summary (the decisions are in
    /// the logs).
    pub fn to_json(&self) -> Value {
        match self {
            Handled::Pass(r) => serde_json::to_value(r.summary()),
            Handled::Interruption(r) => serde_json::to_value(r),
        }
        .expect("reports are plain data")
    }
}

/// Handles one invocation. `Err` is an invocation error ([`Error::kind`] is its Lambda
/// `errorType`): an event this function does not handle, a malformed one, or a pass that could
/// not start. `cache` is the container's: what its earlier passes read and may be reused.
pub async fn handle<A: Account>(
    account: &A,
    settings: &Settings,
    payload: &Value,
    now: DateTime<Utc>,
    time_left: Option<Duration>,
    cache: Option<&Arc<ReadCache>>,
) -> Result<Handled, Error> {
    let event = events::parse(payload)?;
    match event {
        Event::Scheduled { .. } => {
            let opts = PassOptions {
                deadline: time_left
                    .map(|left| tokio::time::Instant::now() + left.saturating_sub(DEADLINE_MARGIN)),
                cache: cache.cloned(),
                preflight: match cache {
                    Some(c) => container_preflight(account, settings, c).await,
                    None => None,
                },
                ..PassOptions::new(settings, now)
            };
            let report = pass::run(account, settings, &opts).await?;
            Ok(Handled::Pass(Box::new(report)))
        }
        Event::SpotInterruption { .. } | Event::Rebalance { .. } => Ok(Handled::Interruption(
            interrupt::handle(account, settings, &event, now).await,
        )),
    }
}

/// The container's preflight (`crate::preflight`): asked on its first scheduled invocation,
/// with a WARN record per refused write, then kept in `cache` for the container's life, so
/// later passes make no call for it. One that could not run (the regions could not be listed)
/// is logged and asked again next time.
async fn container_preflight<A: Account>(
    account: &A,
    settings: &Settings,
    cache: &Arc<ReadCache>,
) -> Option<Arc<Preflight>> {
    if let Some(p) = cache.preflight() {
        return Some(p);
    }
    match preflight::run(account, settings).await {
        Ok(p) => {
            for c in p.problems() {
                if let preflight::Verdict::Refused { refusal, fix } = &c.verdict {
                    warn!(
                        region = %c.region,
                        action = %refusal.action,
                        resource = %refusal.resource,
                        denied_by = %refusal.denied_by,
                        "permission problem: {} refused: {fix}",
                        refusal.action
                    );
                }
            }
            let p = Arc::new(p);
            cache.keep_preflight(p.clone());
            Some(p)
        }
        Err(e) => {
            warn!(error = %e, "the preflight could not run; asked again on the next pass");
            None
        }
    }
}

/// The pass's metrics as one CloudWatch embedded metric format line (CloudWatch User Guide,
/// "Embedded metric format specification"): printed to stdout, CloudWatch Logs turns it into
/// metrics with no `PutMetricData` call and no extra permission.
///
/// The dimensions are the function's name and `Mode` (`live`, or `dry-run` for a function
/// set to plan only, whose counts are of what it would have done), never a group: the number
/// of metrics stays the same whatever the account (README, "What it costs to watch").
/// `Passes` and `PermissionProblems` go under the function's name alone, so "no pass
/// completed" and "a write is refused" alarm in either mode.
pub fn pass_metrics(report: &PassReport, function: &str) -> String {
    let t = &report.totals;
    let mut metrics = vec![
        ("GroupsSeen", "Count", f64::from(t.groups_seen)),
        ("ClonesLaunched", "Count", f64::from(t.clones_launched)),
        ("Swaps", "Count", f64::from(t.swaps)),
        (
            "OrphansTerminated",
            "Count",
            f64::from(t.orphans_terminated),
        ),
        ("Failures", "Count", f64::from(t.failures)),
        (
            "MisconfiguredGroups",
            "Count",
            f64::from(t.misconfigured_groups),
        ),
        ("HourlySavings", "None", t.hourly_savings_now),
        (
            "MonthlySavings",
            "None",
            t.hourly_savings_now * crate::savings::HOURS_PER_MONTH,
        ),
    ];
    if let Some(share) = t.spot_share_percent() {
        metrics.push(("SpotCapacityShare", "Percent", share));
    }
    emf(
        function,
        report.dry_run,
        report.started_at,
        &metrics,
        &[
            ("Passes", "Count", 1.0),
            // In either mode: a dry-run stack is where an operator meets a refusal first.
            (
                "PermissionProblems",
                "Count",
                f64::from(t.permission_problems),
            ),
        ],
    )
}

/// The metric of one interruption warning or rebalance recommendation: `InterruptionsHandled`
/// when the function replaced the instance (or, in a dry run, would have), in the same
/// dimensions as [`pass_metrics`].
pub fn interruption_metrics(r: &interrupt::Report, function: &str, at: DateTime<Utc>) -> String {
    let (handled, dry_run) = match &r.outcome {
        interrupt::Outcome::Replaced { dry_run, .. } => (1.0, *dry_run),
        interrupt::Outcome::Ignored { .. } | interrupt::Outcome::Failed { .. } => (0.0, false),
    };
    emf(
        function,
        dry_run,
        at,
        &[("InterruptionsHandled", "Count", handled)],
        &[],
    )
}

/// One EMF metric: name, unit, value.
type Metric<'a> = (&'a str, &'a str, f64);

/// One EMF line: `metrics` under the function's name and mode, `by_function` under the
/// function's name alone.
fn emf(
    function: &str,
    dry_run: bool,
    at: DateTime<Utc>,
    metrics: &[Metric],
    by_function: &[Metric],
) -> String {
    let mode = if dry_run { "dry-run" } else { "live" };
    let names = |ms: &[Metric]| -> Vec<Value> {
        ms.iter()
            .map(|(name, unit, _)| json!({"Name": name, "Unit": unit}))
            .collect()
    };
    let mut directives = vec![json!({
        "Namespace": METRICS_NAMESPACE,
        "Dimensions": [["FunctionName", "Mode"]],
        "Metrics": names(metrics),
    })];
    if !by_function.is_empty() {
        directives.push(json!({
            "Namespace": METRICS_NAMESPACE,
            "Dimensions": [["FunctionName"]],
            "Metrics": names(by_function),
        }));
    }
    let mut line = json!({
        "_aws": {
            "Timestamp": at.timestamp_millis(),
            "CloudWatchMetrics": directives,
        },
        "FunctionName": function,
        "Mode": mode,
    });
    for (name, _, value) in metrics.iter().chain(by_function) {
        line[*name] = json!(value);
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::memory::MemoryCloud;

    #[tokio::test]
    async fn an_unsupported_event_is_an_error_naming_its_source_and_detail_type() {
        let cloud = MemoryCloud::new();
        cloud.add_region("us-east-1", &["us-east-1a"]);
        let event = json!({"source": "aws.s3", "detail-type": "Object Created", "detail": {}});
        let err = handle(&cloud, &Settings::default(), &event, Utc::now(), None, None)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), "UnsupportedEvent");
        let text = err.to_string();
        assert!(
            text.contains("aws.s3") && text.contains("Object Created"),
            "{text}"
        );
        assert!(cloud.total_call_counts().is_empty(), "nothing was called");
    }

    #[tokio::test]
    async fn a_scheduled_event_runs_a_pass_over_the_accounts_regions() {
        let cloud = MemoryCloud::new();
        cloud.add_region("us-east-1", &["us-east-1a"]);
        cloud.add_region("eu-west-1", &["eu-west-1a"]);
        let event = json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
        let s = Settings::from_pairs([("regions", "eu-*")]).unwrap();
        let Handled::Pass(report) = handle(&cloud, &s, &event, Utc::now(), None, None)
            .await
            .unwrap()
        else {
            panic!("a pass");
        };
        let regions: Vec<&str> = report.regions.iter().map(|r| r.region.as_str()).collect();
        assert_eq!(regions, ["eu-west-1"]);
    }

    #[test]
    fn metrics_are_one_embedded_metric_format_line() {
        let report = PassReport {
            pass_id: "20261123T100000Z-1".into(),
            started_at: "2026-11-23T10:00:00Z".parse().unwrap(),
            dry_run: false,
            stopped: false,
            totals: crate::report::Totals {
                groups_seen: 3,
                clones_launched: 2,
                swaps: 1,
                hourly_savings_now: 0.25,
                ..Default::default()
            },
            regions: vec![],
        };
        let line = pass_metrics(&report, "spotswap");
        assert!(!line.contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "spotswap");
        let names: Vec<&str> = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        for n in &names {
            assert!(v.get(*n).is_some(), "{n} has a value");
        }
        assert_eq!(v["GroupsSeen"], 3.0);
        assert_eq!(v["HourlySavings"], 0.25);
        assert_eq!(v["MonthlySavings"], 0.25 * 730.0);
        assert_eq!(v["Mode"], "live");
        assert_eq!(v["_aws"]["Timestamp"], 1_795_428_000_000_i64);
        // No instance: no spot share to report.
        assert!(v.get("SpotCapacityShare").is_none());
    }

    #[test]
    fn a_pass_answers_with_a_summary_that_stays_small_however_many_instances_failed() {
        use crate::cloud::{CloudError, ErrorKind};
        use crate::plan::ActionKind;
        use crate::report::{FAILURES_LISTED, Outcome, RegionReport, Status};
        // 20 regions with 10,000 failed launches each: 200,000 outcomes.
        let failed = |n: usize| Outcome {
            group: format!("group-{:03}", n % 500),
            instance: Some(format!("i-{n:017x}")),
            action: ActionKind::LaunchClone,
            status: Status::Failed {
                error: CloudError::new(
                    "CreateFleet",
                    ErrorKind::CapacityUnavailable,
                    Some("InsufficientInstanceCapacity"),
                    "There is no Spot capacity available that matches your request.",
                ),
            },
            hourly_saving: Some(0.05),
            no_capacity: vec!["m5a.large".into()],
        };
        let regions: Vec<RegionReport> = (0..20)
            .map(|r| RegionReport {
                region: format!("xx-test-{r}"),
                groups: 500,
                error: None,
                warnings: Vec::new(),
                cached: Vec::new(),
                plan: None,
                outcomes: (0..10_000).map(failed).collect(),
                savings: None,
                calls: std::collections::BTreeMap::from([("CreateFleet".to_string(), 9_000)]),
                leases_left: Vec::new(),
            })
            .collect();
        let report = PassReport {
            pass_id: "20261123T100000Z-1".into(),
            started_at: "2026-11-23T10:00:00Z".parse().unwrap(),
            dry_run: false,
            stopped: false,
            totals: crate::report::Totals::of(&regions),
            regions,
        };
        let answer = Handled::Pass(Box::new(report)).to_json();
        let size = answer.to_string().len();
        assert!(size < 256 * 1024, "{size} bytes");
        let region = &answer["regions"][0];
        assert_eq!(
            region["failures"].as_array().unwrap().len(),
            FAILURES_LISTED
        );
        assert_eq!(region["failures_not_listed"], 10_000 - FAILURES_LISTED);
        assert_eq!(region["outcomes"]["launch-clone"]["failed"], 10_000);
        assert_eq!(answer["totals"]["failures"], 200_000);
    }

    #[test]
    fn a_dry_run_publishes_its_counts_under_its_own_mode_never_as_live() {
        let report = PassReport {
            pass_id: "20261123T100000Z-1".into(),
            started_at: "2026-11-23T10:00:00Z".parse().unwrap(),
            dry_run: true,
            stopped: false,
            totals: crate::report::Totals {
                clones_launched: 2,
                swaps: 1,
                instances: 4,
                spot_instances: 1,
                ..Default::default()
            },
            regions: vec![],
        };
        let v: Value = serde_json::from_str(&pass_metrics(&report, "spotswap")).unwrap();
        assert_eq!(v["Mode"], "dry-run");
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["FunctionName", "Mode"]])
        );
        assert_eq!(v["ClonesLaunched"], 2.0);
        assert_eq!(v["SpotCapacityShare"], 25.0);
        // Passes counts in either mode, under the function alone.
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][1]["Dimensions"],
            json!([["FunctionName"]])
        );
        assert_eq!(v["Passes"], 1.0);
    }
}
