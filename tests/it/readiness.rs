//! The readiness gate over the in-memory cloud, which models a target group's health checks: a
//! member that joins a group behind a target group is `initial` for a while, then `healthy`
//! (or `unhealthy` for good). The instance a swap replaces leaves only once its clone serves;
//! a clone that never does is taken out again, and the group backs off.

use std::collections::BTreeMap;
use std::time::Duration;

use spotswap::cloud::{Account as _, Inventory};
use spotswap::model::{Group, LoadBalancer, Market};
use spotswap::pass::{self, PassOptions};
use spotswap::plan::{Action, ActionKind, Skip, Verdict};
use spotswap::protocol;
use spotswap::report::PassReport;
use spotswap::settings::Settings;

use super::pass_memory::{Account, REGION, group};

const TARGET_GROUP: &str =
    "arn:aws:elasticloadbalancing:us-east-1:111122223333:targetgroup/web/0123456789abcdef";

/// An account with one opted-in group of `n` on-demand instances behind a target group.
fn account(n: u32) -> Account {
    let a = Account::new();
    let mut g: Group = group("web", n, n + 2, &[]);
    g.target_group_arns.push(TARGET_GROUP.into());
    a.cloud.put_group(REGION, g);
    a.cloud
        .launch_group_members(REGION, "web", n as usize, "m5.large", &[]);
    a
}

async fn pass(a: &Account, settings: &Settings) -> PassReport {
    let report = pass::run(
        &a.cloud,
        settings,
        &PassOptions::new(settings, a.cloud.now()),
    )
    .await
    .expect("the pass starts");
    assert_eq!(report.totals.failures, 0, "{report:#?}");
    report
}

/// The ids of the group's members.
fn member_ids(a: &Account) -> Vec<String> {
    a.cloud
        .group(REGION, "web")
        .unwrap()
        .members
        .iter()
        .map(|m| m.instance_id.clone())
        .collect()
}

/// The group's members the target group calls healthy.
async fn healthy_targets(a: &Account) -> usize {
    let members = member_ids(a);
    let asks = BTreeMap::from([(LoadBalancer::TargetGroup(TARGET_GROUP.into()), members)]);
    let health = a.cloud.region(REGION).target_health(&asks).await.unwrap();
    health
        .values()
        .filter(|h| h.iter().all(|t| t.is_healthy()))
        .count()
}

fn kinds(report: &PassReport) -> Vec<ActionKind> {
    report.regions[0]
        .plan
        .as_ref()
        .unwrap()
        .actions()
        .map(|(_, a)| a.kind())
        .collect()
}

fn skips(report: &PassReport) -> Vec<Skip> {
    report.regions[0]
        .plan
        .as_ref()
        .unwrap()
        .skips()
        .map(|(_, s)| s.clone())
        .collect()
}

fn on_demand_members(a: &Account) -> usize {
    a.cloud
        .group(REGION, "web")
        .unwrap()
        .members
        .iter()
        .filter(|m| a.cloud.instance(REGION, &m.instance_id).unwrap().market == Market::OnDemand)
        .count()
}

#[tokio::test]
async fn behind_a_target_group_the_on_demand_instance_leaves_only_once_its_clone_is_healthy() {
    let a = account(2);
    // Longer than a pass: a clone attached in one pass is still `initial` at the next.
    a.cloud
        .set_health_delay(REGION, Duration::from_secs(7 * 60));
    // The group's own members have served for a while.
    a.cloud.advance(Duration::from_secs(8 * 60));
    let settings = Settings::default();
    let start = healthy_targets(&a).await;
    assert_eq!(start, 2);
    let mut seen: Vec<ActionKind> = Vec::new();
    let mut waited = false;
    for n in 1..=12 {
        let report = pass(&a, &settings).await;
        seen.extend(kinds(&report));
        for s in skips(&report) {
            if let Skip::CloneNotHealthy {
                load_balancer,
                state,
                ..
            } = &s
            {
                assert_eq!(load_balancer, TARGET_GROUP);
                assert_eq!(state, "initial");
                waited = true;
            }
        }
        // The invariant: the target group never serves from fewer members than it was left
        // with.
        let healthy = healthy_targets(&a).await;
        assert!(
            healthy >= start,
            "pass {n}: {healthy} healthy targets of {start}"
        );
        let g = a.cloud.group(REGION, "web").unwrap();
        if on_demand_members(&a) == 0 && g.desired_capacity == 2 {
            assert!(waited, "a swap waited for its clone's health");
            assert!(seen.contains(&ActionKind::AttachClone), "{seen:?}");
            assert!(seen.contains(&ActionKind::CompleteSwap), "{seen:?}");
            assert!(
                !seen.contains(&ActionKind::Swap),
                "no one-step swap: {seen:?}"
            );
            assert!(!g.tags.contains_key(protocol::MAX_SIZE));
            return;
        }
        a.cloud.advance(Duration::from_secs(300));
    }
    panic!("did not converge: {:?}", a.cloud.group(REGION, "web"));
}

#[tokio::test]
async fn a_clone_never_healthy_is_taken_out_again_past_the_timeout_and_the_group_backs_off() {
    let a = account(1);
    let settings = Settings::default();
    // The pass that launches the clone.
    let report = pass(&a, &settings).await;
    assert!(kinds(&report).contains(&ActionKind::LaunchClone));
    let clones: Vec<String> = a
        .cloud
        .instances(REGION)
        .into_iter()
        .filter(|i| i.clone_of().is_some())
        .map(|i| i.instance_id)
        .collect();
    assert_eq!(clones.len(), 1);
    let clone = &clones[0];
    a.cloud.set_never_healthy(REGION, clone);
    let on_demand = member_ids(&a);
    let mut undone = None;
    for n in 2..=8 {
        a.cloud.advance(Duration::from_secs(300));
        let report = pass(&a, &settings).await;
        let plan = report.regions[0].plan.as_ref().unwrap();
        if let Some(Action::UndoSwap {
            clone: c, state, ..
        }) = plan
            .actions()
            .map(|(_, a)| a)
            .find(|a| a.kind() == ActionKind::UndoSwap)
        {
            assert_eq!(c, clone);
            assert_eq!(state, "unhealthy");
            assert!(
                plan.actions()
                    .any(|(_, a)| matches!(a, Action::BackOff { backoff }
                    if backoff.reason == "never-healthy")),
                "{plan:#?}"
            );
            assert!(
                !plan
                    .actions()
                    .any(|(_, a)| a.kind() == ActionKind::LaunchClone),
                "no launch while backing off: {plan:#?}"
            );
            undone = Some(n);
            break;
        }
        // Until then the on-demand instance stays, and serves.
        let g = a.cloud.group(REGION, "web").unwrap();
        assert!(g.member(&on_demand[0]).is_some(), "pass {n}");
    }
    assert!(undone.is_some(), "the swap was undone");
    let g = a.cloud.group(REGION, "web").unwrap();
    assert_eq!(
        g.desired_capacity, 1,
        "desired capacity as the user left it"
    );
    assert!(g.member(clone).is_none());
    assert!(g.member(&on_demand[0]).is_some());
    assert!(
        g.tags.contains_key(protocol::LAUNCH_BACKOFF),
        "{:?}",
        g.tags
    );
    assert!(a.cloud.instance(REGION, clone).unwrap().state.is_gone());
    // The next pass launches nothing while the group backs off.
    a.cloud.advance(Duration::from_secs(60));
    let report = pass(&a, &settings).await;
    assert!(!kinds(&report).contains(&ActionKind::LaunchClone));
    assert!(
        skips(&report)
            .iter()
            .any(|s| matches!(s, Skip::BackingOff { .. })),
        "{:?}",
        skips(&report)
    );
}

#[tokio::test]
async fn a_group_behind_no_load_balancer_still_swaps_in_one_step() {
    let mut a = Account::new();
    a.add_group("plain", 1, 3, &[]);
    let settings = Settings::default();
    pass(&a, &settings).await;
    a.cloud.advance(Duration::from_secs(300));
    let report = pass(&a, &settings).await;
    let k = kinds(&report);
    assert!(k.contains(&ActionKind::Swap), "{k:?}");
    assert!(!k.contains(&ActionKind::AttachClone), "{k:?}");
    let verdicts: Vec<&Verdict> = report.regions[0]
        .plan
        .as_ref()
        .unwrap()
        .decisions
        .iter()
        .map(|d| &d.verdict)
        .collect();
    assert!(
        !verdicts
            .iter()
            .any(|v| matches!(v, Verdict::Skip(Skip::CloneNotHealthy { .. }))),
        "{verdicts:?}"
    );
}

/// A full group attaches several clones in one pass, each with one more slot of MaxSize. When
/// one attach fails, the MaxSize planned for the later ones counts on it, so they wait for the
/// next pass (`held`), and the failed one gives back only its own slot: MaxSize never ends more
/// than one slot above the user's per swap in flight, and back at the user's once none is.
#[tokio::test]
async fn after_a_full_groups_attach_fails_its_later_attaches_wait_and_max_size_comes_back() {
    let a = Account::new();
    let mut g: Group = group("web", 3, 3, &[]);
    g.target_group_arns.push(TARGET_GROUP.into());
    a.cloud.put_group(REGION, g);
    a.cloud
        .launch_group_members(REGION, "web", 3, "m5.large", &[]);
    let settings = Settings::from_pairs([("replacements-per-pass", "3")]).unwrap();
    pass(&a, &settings).await;
    a.cloud.advance(Duration::from_secs(300));
    a.cloud.fail_next(
        "AttachInstances",
        spotswap::cloud::CloudError::new(
            "AttachInstances",
            spotswap::cloud::ErrorKind::Other,
            Some("ServiceUnavailable"),
            "scripted by the test",
        ),
        1,
    );
    let report = pass::run(
        &a.cloud,
        &settings,
        &PassOptions::new(&settings, a.cloud.now()),
    )
    .await
    .unwrap();
    let attaches: Vec<&spotswap::report::Outcome> = report.regions[0]
        .outcomes
        .iter()
        .filter(|o| o.action == ActionKind::AttachClone)
        .collect();
    assert_eq!(attaches.len(), 3, "{report:#?}");
    assert!(attaches[0].failed(), "{:?}", attaches[0]);
    for o in &attaches[1..] {
        assert!(
            matches!(&o.status, spotswap::report::Status::Held { reason } if reason.contains("earlier attach of this group did not land")),
            "{o:?}"
        );
    }
    let g = a.cloud.group(REGION, "web").unwrap();
    assert_eq!((g.desired_capacity, g.max_size), (3, 3));
    assert_eq!(g.tags.get(protocol::MAX_SIZE), None);
    // The next pass attaches them, one slot each.
    a.cloud.advance(Duration::from_secs(300));
    let report = pass(&a, &settings).await;
    assert_eq!(
        kinds(&report)
            .iter()
            .filter(|k| **k == ActionKind::AttachClone)
            .count(),
        3,
        "{report:#?}"
    );
    let g = a.cloud.group(REGION, "web").unwrap();
    assert_eq!((g.desired_capacity, g.max_size), (6, 6));
    assert_eq!(
        g.tags.get(protocol::MAX_SIZE).map(String::as_str),
        Some("3")
    );
}
