//! Placement kept, over the in-memory cloud: a group's placement group and its launch spec's
//! tenancy go with every clone, whichever way it is launched. `CreateFleet` takes a placement
//! group but no tenancy (EC2 API reference, Placement), so a dedicated group's clones launch by
//! `RunInstances`, and the plan says why; spot instances do not run on Dedicated Hosts, so a
//! `host` group is left alone. (The in-memory cloud gives a fleet's clones shared tenancy, as
//! a fleet cannot ask for another: a dedicated spec sent through a fleet fails these tests.)

use std::time::Duration;

use spotswap::model::{InstancePlacement, LaunchRef, LaunchSpec, RunInstancesBecause};
use spotswap::plan::{Action, Skip};
use spotswap::report::PassReport;

use super::pass_memory::{Account, REGION, clean_pass as pass, fixture_spec, group};

/// The group `web`, launching from `launch` with `spec`, in placement group `pg`, with two
/// on-demand members.
fn seed(launch: &LaunchRef, spec: LaunchSpec, pg: Option<&str>) -> Account {
    let a = Account::new();
    a.cloud.put_launch_spec(REGION, launch, spec);
    let mut g = group("web", 2, 4, &[]);
    g.launch = Some(launch.clone());
    g.placement_group = pg.map(str::to_string);
    a.cloud.put_group(REGION, g);
    a.cloud
        .launch_group_members(REGION, "web", 2, "m5.large", &[]);
    a
}

fn template() -> LaunchRef {
    LaunchRef::LaunchTemplate {
        id: "lt-0web".into(),
        name: Some("web".into()),
        version: "1".into(),
    }
}

fn configuration() -> LaunchRef {
    LaunchRef::LaunchConfiguration {
        name: "web-lc".into(),
    }
}

/// How each clone launch of the pass goes out: in a fleet (`None`), or by RunInstances and why.
fn launch_paths(report: &PassReport) -> Vec<Option<Option<RunInstancesBecause>>> {
    report.regions[0]
        .plan
        .as_ref()
        .unwrap()
        .actions()
        .filter_map(|(_, a)| match a {
            Action::LaunchClone {
                fleet,
                run_instances_because,
                ..
            } => Some(if fleet.is_some() {
                assert_eq!(*run_instances_because, None);
                None
            } else {
                Some(*run_instances_because)
            }),
            _ => None,
        })
        .collect()
}

/// The placement of every live instance of the region: the group's members and the clones.
fn placements(a: &Account) -> Vec<(String, Option<InstancePlacement>)> {
    a.cloud
        .instances(REGION)
        .into_iter()
        .filter(|i| !i.state.is_gone())
        .map(|i| (i.instance_id, i.placement.map(|p| *p)))
        .collect()
}

fn placed(group: Option<&str>, tenancy: Option<&str>) -> Option<InstancePlacement> {
    InstancePlacement::of(group, tenancy).map(|p| *p)
}

/// Passes until every member of the group is a clone: every instance, the members and the
/// clones alike, is where `want` says after each pass. Returns the reports.
async fn converge_and_check(a: &Account, want: Option<InstancePlacement>) -> Vec<PassReport> {
    let mut reports = Vec::new();
    for _ in 0..8 {
        reports.push(pass(a).await);
        for (id, p) in placements(a) {
            assert_eq!(p, want, "{id} is placed as its group's instances are");
        }
        let group = a.cloud.group(REGION, "web").unwrap();
        let swapped = group.members.iter().all(|m| {
            let i = a.cloud.instance(REGION, &m.instance_id).unwrap();
            i.clone_of().is_some()
        });
        if swapped && group.members.len() == 2 {
            return reports;
        }
        a.cloud.advance(Duration::from_secs(300));
    }
    panic!("the group was not swapped: {reports:#?}");
}

/// How every clone launch of the passes went out.
fn all_paths(reports: &[PassReport]) -> Vec<Option<Option<RunInstancesBecause>>> {
    reports.iter().flat_map(launch_paths).collect()
}

#[tokio::test]
async fn a_dedicated_configuration_in_a_placement_group_gets_dedicated_clones_in_it_by_run_instances()
 {
    let spec = LaunchSpec {
        tenancy: Some("dedicated".into()),
        ..fixture_spec()
    };
    let a = seed(&configuration(), spec, Some("web-cluster"));
    let want = placed(Some("web-cluster"), Some("dedicated"));
    assert!(want.is_some());
    let reports = converge_and_check(&a, want).await;
    assert_eq!(
        all_paths(&reports),
        [Some(Some(RunInstancesBecause::DedicatedTenancy)); 2]
    );
}

#[tokio::test]
async fn a_dedicated_template_launches_its_clones_by_run_instances_with_its_own_tenancy() {
    let spec = LaunchSpec {
        tenancy: Some("dedicated".into()),
        ..fixture_spec()
    };
    let a = seed(&template(), spec, None);
    let reports = converge_and_check(&a, placed(None, Some("dedicated"))).await;
    assert_eq!(
        all_paths(&reports),
        [Some(Some(RunInstancesBecause::DedicatedTenancy)); 2]
    );
}

#[tokio::test]
async fn a_fleet_puts_every_clone_in_the_groups_placement_group() {
    for launch in [template(), configuration()] {
        let a = seed(&launch, fixture_spec(), Some("web-cluster"));
        let reports = converge_and_check(&a, placed(Some("web-cluster"), None)).await;
        assert_eq!(all_paths(&reports), [None, None], "{launch}: in fleets");
    }
}

#[tokio::test]
async fn a_configuration_with_interfaces_in_a_placement_group_puts_its_clones_in_it_too() {
    let spec = LaunchSpec {
        associate_public_ip_address: Some(true),
        ..fixture_spec()
    };
    let a = seed(&configuration(), spec, Some("web-cluster"));
    let reports = converge_and_check(&a, placed(Some("web-cluster"), None)).await;
    assert_eq!(
        all_paths(&reports),
        [Some(Some(RunInstancesBecause::NetworkInterfaces)); 2]
    );
}

#[tokio::test]
async fn a_group_on_dedicated_hosts_is_left_alone_as_spot_cannot_run_there() {
    let spec = LaunchSpec {
        tenancy: Some("host".into()),
        ..fixture_spec()
    };
    let a = seed(&template(), spec, None);
    let report = pass(&a).await;
    let plan = report.regions[0].plan.as_ref().unwrap();
    assert_eq!(plan.actions().count(), 0, "{report:#?}");
    let skips: Vec<&Skip> = plan.skips().map(|(_, s)| s).collect();
    assert!(
        skips.iter().any(|s| matches!(s, Skip::HostTenancy)),
        "{skips:?}"
    );
    assert_eq!(Skip::HostTenancy.name(), "host-tenancy");
}
