//! The preflight over the in-memory cloud, where a write can be refused as IAM refuses it
//! (`MemoryCloud::deny`): the refusal reported with its action and resource, the Lambda's
//! `PermissionProblems` metric, the region's groups skipped `launch-not-permitted` instead of
//! a failed launch per clone, and no call added to a pass once the preflight has passed.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use spotswap::cache::ReadCache;
use spotswap::lambda::{Handled, handle, pass_metrics};
use spotswap::pass::{self, PassOptions};
use spotswap::plan::{ActionKind, Skip, Verdict as PlanVerdict};
use spotswap::preflight::{self, Verdict};
use spotswap::report::{PassReport, Status};
use spotswap::settings::Settings;

use super::pass_memory::{Account, REGION};

const VOLUMES: &str = "arn:aws:ec2:us-east-1:111122223333:volume/*";

fn scheduled() -> Value {
    json!({"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}})
}

/// An account with one opted-in group of three on-demand instances to convert.
fn account() -> Account {
    let mut a = Account::new();
    a.add_group("web", 3, 6, &[]);
    a
}

async fn lambda_pass(a: &Account, cache: &Arc<ReadCache>) -> PassReport {
    let settings = Settings::default();
    match handle(
        &a.cloud,
        &settings,
        &scheduled(),
        a.cloud.now(),
        None,
        Some(cache),
    )
    .await
    {
        Ok(Handled::Pass(report)) => *report,
        other => panic!("a pass: {other:?}"),
    }
}

#[tokio::test]
async fn with_nothing_refused_every_check_is_allowed_or_says_why_it_was_not_asked() {
    let a = account();
    let p = preflight::run(&a.cloud, &Settings::default())
        .await
        .unwrap();
    let verdicts: BTreeMap<&str, &str> = p
        .checks
        .iter()
        .map(|c| (c.action.as_str(), c.verdict.name()))
        .collect();
    assert_eq!(verdicts["ec2:CreateFleet"], "allowed", "{p:#?}");
    // The fixture's group launches from a launch configuration: spotswap's template for it.
    assert_eq!(verdicts["ec2:CreateLaunchTemplate"], "allowed", "{p:#?}");
    // No group with interfaces, no clone yet, and Auto Scaling has no DryRun.
    for action in [
        "ec2:RunInstances",
        "ec2:CreateTags",
        "ec2:TerminateInstances",
        "autoscaling writes",
    ] {
        assert_eq!(verdicts[action], "not-checked", "{action}: {p:#?}");
    }
    assert_eq!(p.exit_code(), 0);
    assert!(p.launch_refused().is_empty());
}

#[tokio::test]
async fn a_refused_fleet_is_reported_with_its_action_and_resource_and_the_groups_launch_nothing() {
    let a = account();
    a.cloud
        .deny(REGION, "CreateFleet", "ec2:RunInstances", VOLUMES, false);
    // spotswap check's answer.
    let p = preflight::run(&a.cloud, &Settings::default())
        .await
        .unwrap();
    let fleet = p
        .checks
        .iter()
        .find(|c| c.action == "ec2:CreateFleet")
        .unwrap();
    let Verdict::Refused { refusal, fix } = &fleet.verdict else {
        panic!("refused: {fleet:?}");
    };
    assert_eq!(refusal.action, "ec2:RunInstances");
    assert_eq!(refusal.resource, VOLUMES);
    assert!(
        refusal.denied_by.starts_with("no statement allows it"),
        "{refusal:?}"
    );
    assert!(
        fix.contains("ec2:RunInstances") && fix.contains(VOLUMES),
        "{fix}"
    );
    assert_eq!(p.exit_code(), 1);

    // The Lambda: the region's group is skipped, nothing is launched, the metric counts it.
    let cache = Arc::new(ReadCache::new(6));
    let report = lambda_pass(&a, &cache).await;
    let plan = report.regions[0].plan.as_ref().unwrap();
    let skipped: Vec<&Skip> = plan
        .decisions
        .iter()
        .filter_map(|d| match &d.verdict {
            PlanVerdict::Skip(s @ Skip::LaunchNotPermitted { .. }) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(
        skipped,
        [&Skip::LaunchNotPermitted {
            action: "ec2:RunInstances".into(),
            resource: VOLUMES.into(),
            denied_by: refusal.denied_by.clone(),
        }],
        "one skip for the group: {plan:#?}"
    );
    assert!(plan.decisions.iter().all(|d| d.group == "web"), "{plan:#?}");
    assert!(
        report.regions[0]
            .outcomes
            .iter()
            .all(|o| o.action != ActionKind::LaunchClone),
        "no launch was tried: {:#?}",
        report.regions[0].outcomes
    );
    assert_eq!(report.totals.permission_problems, 1);
    assert_eq!(report.totals.failures, 0);
    let metrics: Value = serde_json::from_str(&pass_metrics(&report, "spotswap")).unwrap();
    assert_eq!(metrics["PermissionProblems"], 1.0);

    // Without the preflight, the same pass fails each launch instead.
    let settings = Settings::default();
    let blind = pass::run(
        &a.cloud,
        &settings,
        &PassOptions::new(&settings, a.cloud.now()),
    )
    .await
    .unwrap();
    let launches: Vec<_> = blind.regions[0]
        .outcomes
        .iter()
        .filter(|o| o.action == ActionKind::LaunchClone)
        .collect();
    assert!(!launches.is_empty());
    for o in launches {
        assert!(
            matches!(&o.status, Status::Failed { error }
                if error.code.as_deref() == Some("UnauthorizedOperation")),
            "{o:?}"
        );
    }
    assert!(blind.totals.failures > 0);
}

#[tokio::test]
async fn an_explicit_deny_is_told_apart_and_the_fix_says_to_exempt_the_role() {
    let a = account();
    a.cloud.deny(
        REGION,
        "CreateLaunchTemplate",
        "ec2:CreateLaunchTemplate",
        "arn:aws:ec2:us-east-1:111122223333:launch-template/*",
        true,
    );
    let p = preflight::run(&a.cloud, &Settings::default())
        .await
        .unwrap();
    let problems: Vec<_> = p.problems().collect();
    assert_eq!(problems.len(), 1, "{p:#?}");
    let Verdict::Refused { refusal, fix } = &problems[0].verdict else {
        unreachable!()
    };
    assert!(
        refusal.denied_by.starts_with("an explicit Deny"),
        "{refusal:?}"
    );
    assert!(fix.starts_with("exempt the function's role"), "{fix}");
    // A template refused is not a launch refused: the groups still launch where they can.
    assert!(p.launch_refused().is_empty());
}

#[tokio::test]
async fn once_the_preflight_has_passed_a_lambda_pass_makes_no_more_calls_than_a_pass_without_it() {
    let settings = Settings::default();
    // Two accounts alike: one run by the Lambda (preflight on its first invocation), one by
    // plain passes sharing a cache as a warm container's do.
    let with = account();
    let without = account();
    let cache = Arc::new(ReadCache::new(settings.cache_hours));
    let plain_cache = Arc::new(ReadCache::new(settings.cache_hours));
    let plain = |a: &Account| PassOptions {
        cache: Some(plain_cache.clone()),
        ..PassOptions::new(&settings, a.cloud.now())
    };

    let before = with.cloud.total_call_counts();
    lambda_pass(&with, &cache).await;
    let first = delta(&before, &with.cloud.total_call_counts());
    let before = without.cloud.total_call_counts();
    pass::run(&without.cloud, &settings, &plain(&without))
        .await
        .unwrap();
    let plain_first = delta(&before, &without.cloud.total_call_counts());
    // The first invocation asked: one DryRun CreateFleet and one CreateLaunchTemplate more.
    for op in ["CreateFleet", "CreateLaunchTemplate"] {
        assert_eq!(
            first[op],
            plain_first[op] + 1,
            "{op}: {first:?} against {plain_first:?}"
        );
    }

    with.cloud.advance(std::time::Duration::from_secs(300));
    without.cloud.advance(std::time::Duration::from_secs(300));
    let before = with.cloud.total_call_counts();
    let second = lambda_pass(&with, &cache).await;
    let with_calls = delta(&before, &with.cloud.total_call_counts());
    let before = without.cloud.total_call_counts();
    pass::run(&without.cloud, &settings, &plain(&without))
        .await
        .unwrap();
    let without_calls = delta(&before, &without.cloud.total_call_counts());
    assert_eq!(with_calls, without_calls);
    assert_eq!(second.totals.permission_problems, 0);
}

fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect()
}
