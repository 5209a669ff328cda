//! Interruption handling over the in-memory cloud: the instance leaves its group through the
//! group, a replacement is launched, the pool is recorded, and nothing else is touched.

use spotswap::cloud::memory::{GroupBuilder, MemoryCloud};
use spotswap::events::Event;
use spotswap::interrupt::{Outcome, handle};
use spotswap::model::{Group, InstanceState};
use spotswap::protocol as tags;
use spotswap::settings::{InterruptionAction, Settings};

const REGION: &str = "us-east-1";
const WRITES: [&str; 5] = [
    "TerminateInstanceInAutoScalingGroup",
    "DetachInstances",
    "CreateOrUpdateTags",
    "TerminateInstances",
    "UpdateAutoScalingGroup",
];

fn group(name: &str, opted_in: bool) -> Group {
    GroupBuilder::new(name)
        .min(1)
        .desired(2)
        .max(4)
        .tag("spot-enabled", opted_in.to_string())
        .build()
}

/// A cloud with group `web` (opted in or not) of two m5.large members; returns one member.
fn cloud(opted_in: bool) -> (MemoryCloud, String) {
    let cloud = MemoryCloud::new();
    cloud.add_region(REGION, &["us-east-1a", "us-east-1b"]);
    cloud.put_group(REGION, group("web", opted_in));
    let ids = cloud.launch_group_members(REGION, "web", 2, "m5.large", &[]);
    (cloud, ids[0].clone())
}

fn warning(id: &str) -> Event {
    Event::SpotInterruption {
        region: REGION.into(),
        instance_id: id.into(),
        action: "terminate".into(),
        time: None,
    }
}

fn writes(cloud: &MemoryCloud) -> Vec<String> {
    cloud
        .total_call_counts()
        .into_keys()
        .filter(|op| WRITES.contains(&op.as_str()))
        .collect()
}

fn members(cloud: &MemoryCloud) -> Vec<String> {
    let g = cloud.group(REGION, "web").unwrap();
    g.members.iter().map(|m| m.instance_id.clone()).collect()
}

#[tokio::test]
async fn a_warned_instance_is_terminated_in_its_group_which_launches_a_replacement() {
    let (cloud, id) = cloud(true);
    let report = handle(&cloud, &Settings::default(), &warning(&id), cloud.now()).await;
    let Outcome::Replaced {
        group,
        action,
        pool,
        dry_run,
    } = &report.outcome
    else {
        panic!("{report:?}");
    };
    assert_eq!(
        (group.as_str(), *action, *dry_run),
        ("web", InterruptionAction::Terminate, false)
    );
    assert_eq!(pool.as_deref(), Some("m5.large@us-east-1a"));
    let g = cloud.group(REGION, "web").unwrap();
    assert_eq!(g.desired_capacity, 2, "desired capacity kept");
    assert_eq!(g.members.len(), 2, "a replacement joined");
    assert!(!members(&cloud).contains(&id));
    assert_eq!(
        cloud.instance(REGION, &id).unwrap().state,
        InstanceState::Terminated
    );
    let tag = g.tags.get(tags::INTERRUPTED).expect("the pool is recorded");
    assert!(tag.starts_with("m5.large@us-east-1a@"), "{tag}");
}

#[tokio::test]
async fn with_detach_the_instance_leaves_the_group_and_keeps_running() {
    let (cloud, id) = cloud(true);
    let settings = Settings::from_pairs([("interruption-action", "detach")]).unwrap();
    let report = handle(&cloud, &settings, &warning(&id), cloud.now()).await;
    assert!(matches!(
        report.outcome,
        Outcome::Replaced {
            action: InterruptionAction::Detach,
            ..
        }
    ));
    let g = cloud.group(REGION, "web").unwrap();
    assert_eq!(g.desired_capacity, 2);
    assert_eq!(g.members.len(), 2);
    assert!(!members(&cloud).contains(&id));
    assert_eq!(
        cloud.instance(REGION, &id).unwrap().state,
        InstanceState::Running
    );
}

#[tokio::test]
async fn on_a_rebalance_recommendation_detach_terminates_in_the_group_instead() {
    // A detached instance on a soft signal would run outside its group, paid for, until a
    // reclaim that may never come; the next pass would also take a detached clone for an
    // orphan. So a rebalance recommendation always terminates through the group.
    let (cloud, id) = cloud(true);
    let settings = Settings::from_pairs([
        ("interruption-action", "detach"),
        ("handle-rebalance-recommendations", "true"),
    ])
    .unwrap();
    let rebalance = Event::Rebalance {
        region: REGION.into(),
        instance_id: id.clone(),
        time: None,
    };
    let report = handle(&cloud, &settings, &rebalance, cloud.now()).await;
    assert!(
        matches!(
            report.outcome,
            Outcome::Replaced {
                action: InterruptionAction::Terminate,
                ..
            }
        ),
        "{report:?}"
    );
    assert!(!members(&cloud).contains(&id));
    assert_eq!(
        cloud.instance(REGION, &id).unwrap().state,
        InstanceState::Terminated
    );
    assert!(!cloud.total_call_counts().contains_key("DetachInstances"));
    // A warning still detaches.
    let (cloud, id) = self::cloud(true);
    let report = handle(&cloud, &settings, &warning(&id), cloud.now()).await;
    assert!(matches!(
        report.outcome,
        Outcome::Replaced {
            action: InterruptionAction::Detach,
            ..
        }
    ));
}

#[tokio::test]
async fn an_instance_of_a_group_not_opted_in_is_left_alone() {
    let (cloud, id) = cloud(false);
    let before = members(&cloud);
    let report = handle(&cloud, &Settings::default(), &warning(&id), cloud.now()).await;
    assert!(
        matches!(&report.outcome, Outcome::Ignored { reason } if reason.contains(&id)),
        "{report:?}"
    );
    assert_eq!(members(&cloud), before);
    assert!(writes(&cloud).is_empty(), "{:?}", cloud.total_call_counts());
}

#[tokio::test]
async fn an_instance_in_no_group_is_left_alone() {
    let (cloud, _) = cloud(true);
    let report = handle(
        &cloud,
        &Settings::default(),
        &warning("i-00000000000000abc"),
        cloud.now(),
    )
    .await;
    assert!(matches!(report.outcome, Outcome::Ignored { .. }));
    assert!(writes(&cloud).is_empty());
}

#[tokio::test]
async fn a_dry_run_says_what_it_would_do_and_does_nothing() {
    let (cloud, id) = cloud(true);
    let settings = Settings::from_pairs([("dry-run", "true")]).unwrap();
    let report = handle(&cloud, &settings, &warning(&id), cloud.now()).await;
    assert!(matches!(
        report.outcome,
        Outcome::Replaced { dry_run: true, .. }
    ));
    assert!(members(&cloud).contains(&id));
    assert!(writes(&cloud).is_empty());
}

#[tokio::test]
async fn rebalance_recommendations_are_acted_on_only_when_enabled() {
    let (cloud, id) = cloud(true);
    let rebalance = Event::Rebalance {
        region: REGION.into(),
        instance_id: id.clone(),
        time: None,
    };
    let report = handle(&cloud, &Settings::default(), &rebalance, cloud.now()).await;
    assert!(
        matches!(&report.outcome, Outcome::Ignored { reason } if reason.contains("handle-rebalance-recommendations"))
    );
    assert!(members(&cloud).contains(&id));
    assert!(cloud.total_call_counts().is_empty(), "not even a read");
    let on = Settings::from_pairs([("handle-rebalance-recommendations", "true")]).unwrap();
    let report = handle(&cloud, &on, &rebalance, cloud.now()).await;
    assert!(
        matches!(report.outcome, Outcome::Replaced { .. }),
        "{report:?}"
    );
    assert!(!members(&cloud).contains(&id));
}

#[tokio::test]
async fn the_planner_avoids_the_interrupted_pool_afterwards() {
    let (cloud, id) = cloud(true);
    handle(&cloud, &Settings::default(), &warning(&id), cloud.now()).await;
    let g = cloud.group(REGION, "web").unwrap();
    let entries = spotswap::protocol::interruptions(&g.tags).unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (
            entries[0].instance_type.as_str(),
            entries[0].availability_zone.as_str()
        ),
        ("m5.large", "us-east-1a")
    );
    assert_eq!(entries[0].at, cloud.now());
}

#[tokio::test]
async fn a_warning_in_a_group_spotswap_must_not_change_touches_nothing() {
    // (what the group's owner set up, the reason word)
    type Setup = fn(GroupBuilder) -> GroupBuilder;
    let cases: [(Setup, &str); 4] = [
        (|g| g.warm_pool(), "warm-pool"),
        (|g| g.mixed_instances_policy(), "mixed-instances-policy"),
        (
            |g| g.instance_refresh_in_progress(),
            "instance-refresh-in-progress",
        ),
        (|g| g.suspended("Terminate"), "processes-suspended"),
    ];
    for (setup, word) in cases {
        let cloud = MemoryCloud::new();
        cloud.add_region(REGION, &["us-east-1a", "us-east-1b"]);
        let builder = GroupBuilder::new("web")
            .min(1)
            .desired(2)
            .max(4)
            .tag("spot-enabled", "true");
        cloud.put_group(REGION, setup(builder).build());
        let ids = cloud.launch_group_members(REGION, "web", 2, "m5.large", &[]);
        let report = handle(&cloud, &Settings::default(), &warning(&ids[0]), cloud.now()).await;
        let Outcome::Ignored { reason } = &report.outcome else {
            panic!("{word}: {report:?}");
        };
        assert!(reason.contains(word) && reason.contains("web"), "{reason}");
        assert!(writes(&cloud).is_empty(), "{word}: {:?}", writes(&cloud));
    }
}

#[tokio::test]
async fn a_warning_reads_only_the_instances_own_group_however_many_there_are() {
    let (cloud, id) = cloud(true);
    for n in 0..200 {
        let name = format!("other-{n:03}");
        cloud.put_group(REGION, group(&name, true));
    }
    let report = handle(&cloud, &Settings::default(), &warning(&id), cloud.now()).await;
    assert!(
        matches!(report.outcome, Outcome::Replaced { .. }),
        "{report:?}"
    );
    let calls = cloud.total_call_counts();
    // One membership read, one group read, one refresh read; then the two writes.
    for (op, n) in [
        ("DescribeAutoScalingInstances", 1),
        ("DescribeAutoScalingGroups", 1),
        ("DescribeInstanceRefreshes", 1),
    ] {
        assert_eq!(calls.get(op).copied(), Some(n), "{op}: {calls:?}");
    }
}
