//! Tests of the in-memory cloud's own semantics against the AWS facts it stands for: MaxSize on
//! attach, desired capacity on terminate, replacements, launch template resolution, scripted
//! faults, calls counted per page and batch, the clock and capacity. spotswap's decisions over
//! it are tested in tests/it/pass_memory.rs and tests/it/interrupt_memory.rs.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::TimeDelta;

use super::{GroupBuilder, MemoryCloud};
use crate::cloud::{Account, Actuator, CloneLaunch, CloudError, ErrorKind, Inventory};
use crate::model::{InstanceState, LaunchRef, LaunchSpec, Market, SpotPricePoint};
use crate::protocol as tags;

const REGION: &str = "eu-west-1";

fn template(version: &str) -> LaunchRef {
    LaunchRef::LaunchTemplate {
        id: "lt-1".into(),
        name: None,
        version: version.into(),
    }
}

fn spec(image_id: &str) -> LaunchSpec {
    LaunchSpec {
        image_id: image_id.into(),
        instance_type: Some("m5.large".into()),
        ..LaunchSpec::default()
    }
}

/// One region with group `web` (min 1, max `max`) of `n` running on-demand m5.large.
fn account(n: u32, max: u32) -> (MemoryCloud, Vec<String>) {
    let cloud = MemoryCloud::new();
    cloud
        .add_region(REGION, &["eu-west-1a", "eu-west-1b"])
        .put_launch_spec(REGION, &template("1"), spec("ami-1"))
        .put_group(
            REGION,
            GroupBuilder::new("web")
                .min(1)
                .desired(n)
                .max(max)
                .tag("spot-enabled", "true")
                .launch(template("$Latest"))
                .build(),
        );
    let ids = cloud.launch_group_members(REGION, "web", n as usize, "m5.large", &[]);
    (cloud, ids)
}

fn clone_of(replaces: &str, instance_type: &str, az: &str) -> CloneLaunch {
    CloneLaunch {
        placement_group: None,
        group: "web".into(),
        replaces: replaces.into(),
        instance_type: instance_type.into(),
        availability_zone: az.into(),
        subnet_id: None,
        launch: template("1"),
        spec: spec("ami-1"),
        market: crate::model::Market::Spot,
        max_price: 0.096,
        tags: BTreeMap::from([
            (tags::GROUP.into(), "web".into()),
            (tags::REPLACES.into(), replaces.into()),
        ]),
        client_token: format!("token-{replaces}"),
    }
}

#[tokio::test]
async fn attaching_past_max_size_fails_and_changes_nothing() {
    let (cloud, ids) = account(2, 2);
    let region = cloud.region(REGION);
    let clone = region
        .launch_clone(&clone_of(&ids[0], "m5a.large", "eu-west-1a"))
        .await
        .unwrap();
    let e = region.attach("web", &clone).await.unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_deref()),
        (ErrorKind::InvalidRequest, Some("ValidationError"))
    );
    let group = cloud.group(REGION, "web").unwrap();
    assert_eq!((group.desired_capacity, group.members.len()), (2, 2));
    assert_eq!(
        cloud.instance(REGION, &clone).unwrap().auto_scaling_group,
        None
    );
}

#[tokio::test]
async fn terminating_in_group_with_decrement_keeps_desired_where_it_started() {
    let (cloud, ids) = account(2, 3);
    let region = cloud.region(REGION);
    let clone = region
        .launch_clone(&clone_of(&ids[0], "m5a.large", "eu-west-1a"))
        .await
        .unwrap();
    region.attach("web", &clone).await.unwrap();
    assert_eq!(cloud.group(REGION, "web").unwrap().desired_capacity, 3);
    region.terminate_in_group(&ids[0], true).await.unwrap();

    let group = cloud.group(REGION, "web").unwrap();
    assert_eq!(group.desired_capacity, 2);
    let members: Vec<&str> = group
        .members
        .iter()
        .map(|m| m.instance_id.as_str())
        .collect();
    assert_eq!(members, [ids[1].as_str(), clone.as_str()]);
    assert_eq!(
        cloud.instance(REGION, &ids[0]).unwrap().state,
        InstanceState::Terminated
    );
    assert_eq!(
        cloud.instances(REGION).len(),
        3,
        "no replacement was launched"
    );
    let membership = region
        .group_membership(&[ids[0].clone(), clone.clone()])
        .await
        .unwrap();
    assert_eq!(membership, BTreeMap::from([(clone, "web".to_string())]));

    // Without the decrement, the group launches an on-demand replacement.
    region.terminate_in_group(&ids[1], false).await.unwrap();
    let group = cloud.group(REGION, "web").unwrap();
    assert_eq!((group.desired_capacity, group.members.len()), (2, 2));
    let new = cloud
        .instance(REGION, &group.members[1].instance_id)
        .unwrap();
    assert_eq!(
        (new.market, new.state),
        (Market::OnDemand, InstanceState::Running)
    );
    assert_eq!(group.members[1].lifecycle_state, "InService");
}

#[tokio::test]
async fn latest_and_default_resolve_to_their_versions() {
    let (cloud, _) = account(1, 1);
    cloud.put_launch_spec(REGION, &template("3"), spec("ami-3"));
    let region = cloud.region(REGION);
    let refs = [template("$Latest"), template("$Default"), template("2")];
    let specs = region.launch_specs(&refs).await.unwrap();
    let latest = &specs["lt:lt-1:$Latest"];
    assert_eq!(
        (latest.image_id.as_str(), latest.resolved_version),
        ("ami-3", Some(3))
    );
    let default = &specs["lt:lt-1:$Default"];
    assert_eq!(
        (default.image_id.as_str(), default.resolved_version),
        ("ami-1", Some(1))
    );
    assert!(
        !specs.contains_key("lt:lt-1:2"),
        "a missing version is left out"
    );
    assert_eq!(region.call_counts()["DescribeLaunchTemplateVersions"], 1);

    cloud.set_default_version(REGION, "lt-1", 3);
    let specs = region.launch_specs(&[template("$Default")]).await.unwrap();
    assert_eq!(specs["lt:lt-1:$Default"].resolved_version, Some(3));
}

#[tokio::test]
async fn a_scripted_failure_comes_first_then_calls_succeed() {
    let (cloud, ids) = account(1, 1);
    let throttled = CloudError::new(
        "DescribeInstances",
        ErrorKind::Throttled,
        Some("RequestLimitExceeded"),
        "Request limit exceeded.",
    );
    cloud.fail_next("DescribeInstances", throttled.clone(), 1);
    let region = cloud.region(REGION);
    assert_eq!(region.instances(&ids).await.unwrap_err(), throttled);
    assert_eq!(region.instances(&ids).await.unwrap().len(), 1);
    assert_eq!(region.call_counts()["DescribeInstances"], 2);
}

#[tokio::test]
async fn calls_are_counted_per_page_and_batch() {
    let (cloud, mut ids) = account(250, 250);
    ids.push("i-unknown".into());
    let region = cloud.region(REGION);
    assert_eq!(region.instances(&ids).await.unwrap().len(), 250);
    assert!(region.instances(&[]).await.unwrap().is_empty());
    assert_eq!(region.group_membership(&ids).await.unwrap().len(), 250);
    let types = region.instance_types().await.unwrap();
    for k in 0..1500 {
        let point = SpotPricePoint {
            instance_type: format!("t{k}"),
            availability_zone: "eu-west-1a".into(),
            product_description: "Linux/UNIX (Amazon VPC)".into(),
            price: 0.01,
            timestamp: cloud.now(),
        };
        cloud.put_spot_price(REGION, point);
    }
    let linux = ["Linux/UNIX (Amazon VPC)".to_string()];
    assert_eq!(
        region
            .spot_prices(&linux, cloud.now(), cloud.now())
            .await
            .unwrap()
            .len(),
        1500
    );
    region.terminate(&[]).await.unwrap();

    let counts = region.call_counts();
    assert_eq!(counts["DescribeInstances"], 2, "251 ids in batches of 200");
    assert_eq!(
        counts["DescribeAutoScalingInstances"], 6,
        "251 ids in batches of 50"
    );
    assert_eq!(
        counts["DescribeInstanceTypes"],
        types.len().div_ceil(100) as u64
    );
    assert_eq!(
        counts["DescribeSpotPriceHistory"], 2,
        "1,500 points in pages of 1,000"
    );
    assert!(!counts.contains_key("TerminateInstances"));
    assert_eq!(cloud.regions().await.unwrap(), [REGION]);
    assert_eq!(cloud.total_call_counts()["DescribeRegions"], 1);
}

#[tokio::test]
async fn the_clock_drives_a_launch_from_pending_to_running() {
    let (cloud, ids) = account(1, 2);
    cloud.set_boot_delay(Duration::from_secs(60));
    let region = cloud.region(REGION);
    let clone = region
        .launch_clone(&clone_of(&ids[0], "m5a.large", "eu-west-1b"))
        .await
        .unwrap();
    assert!(clone.starts_with("i-") && clone.len() == 19, "{clone}");
    let launched = cloud.instance(REGION, &clone).unwrap();
    assert_eq!(
        (launched.state, launched.market),
        (InstanceState::Pending, Market::Spot)
    );
    assert_eq!(launched.launch_time, cloud.now());
    assert_eq!(
        launched.tags,
        clone_of(&ids[0], "m5a.large", "eu-west-1b").tags
    );
    let e = region.attach("web", &clone).await.unwrap_err();
    assert_eq!(
        e.kind,
        ErrorKind::InvalidRequest,
        "a pending instance cannot be attached"
    );

    cloud.advance(Duration::from_secs(59));
    assert_eq!(
        cloud.instance(REGION, &clone).unwrap().state,
        InstanceState::Pending
    );
    cloud.advance(Duration::from_secs(1));
    let clones = region.clones().await.unwrap();
    assert_eq!(clones.len(), 1);
    assert_eq!(
        (clones[0].instance_id.as_str(), clones[0].state),
        (clone.as_str(), InstanceState::Running)
    );
    region.attach("web", &clone).await.unwrap();
}

#[tokio::test]
async fn an_unavailable_pool_fails_with_capacity_unavailable() {
    let (cloud, ids) = account(1, 2);
    cloud.set_capacity(REGION, "m5a.large", "eu-west-1a", false);
    let region = cloud.region(REGION);
    let e = region
        .launch_clone(&clone_of(&ids[0], "m5a.large", "eu-west-1a"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.kind, e.code.as_deref()),
        (
            ErrorKind::CapacityUnavailable,
            Some("InsufficientInstanceCapacity")
        )
    );
    assert!(region.clones().await.unwrap().is_empty());
    region
        .launch_clone(&clone_of(&ids[0], "m5a.large", "eu-west-1b"))
        .await
        .unwrap();
    cloud.set_capacity(REGION, "m5a.large", "eu-west-1a", true);
    region
        .launch_clone(&clone_of("i-other", "m5a.large", "eu-west-1a"))
        .await
        .unwrap();
    assert_eq!(region.clones().await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_retried_launch_with_the_same_token_returns_the_same_clone() {
    let (cloud, ids) = account(1, 2);
    let region = cloud.region(REGION);
    let launch = clone_of(&ids[0], "m5a.large", "eu-west-1a");
    let first = region.launch_clone(&launch).await.unwrap();
    assert_eq!(region.launch_clone(&launch).await.unwrap(), first);
    assert_eq!(region.clones().await.unwrap().len(), 1);
}

#[tokio::test]
async fn spot_prices_start_with_the_price_in_effect_and_stop_at_now() {
    let (cloud, _) = account(1, 1);
    let t0 = cloud.now();
    for (minutes, price) in [(-90, 0.01), (-30, 0.02), (-10, 0.03), (10, 0.04)] {
        cloud.put_spot_price(
            REGION,
            SpotPricePoint {
                instance_type: "m5a.large".into(),
                availability_zone: "eu-west-1a".into(),
                product_description: "Linux/UNIX (Amazon VPC)".into(),
                price,
                timestamp: t0 + TimeDelta::minutes(minutes),
            },
        );
    }
    let region = cloud.region(REGION);
    let since = t0 - TimeDelta::minutes(60);
    let points = region
        .spot_prices(&["Linux/UNIX (Amazon VPC)".into()], since, cloud.now())
        .await
        .unwrap();
    let prices: Vec<f64> = points.iter().map(|p| p.price).collect();
    assert_eq!(prices, [0.01, 0.02, 0.03]);
    let windows = region
        .spot_prices(&["Windows (Amazon VPC)".into()], since, cloud.now())
        .await
        .unwrap();
    assert!(windows.is_empty());
}
