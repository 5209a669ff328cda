//! No clone from a stale spec, over the in-memory cloud: a clone launched from a template
//! version or a launch configuration the group no longer launches from is never attached. It
//! is terminated `drifted`, and a clone of the current spec is launched instead.

use std::time::Duration;

use spotswap::model::{LaunchRef, LaunchSpec, Secret};
use spotswap::plan::{Action, ActionKind, OrphanReason};
use spotswap::protocol;
use spotswap::report::PassReport;

use super::pass_memory::{Account, REGION, clean_pass as pass, fixture_spec, group};

fn actions(report: &PassReport) -> Vec<Action> {
    report.regions[0]
        .plan
        .as_ref()
        .unwrap()
        .actions()
        .map(|(_, a)| a.clone())
        .collect()
}

/// The live clones and what each was launched from.
fn clones(a: &Account) -> Vec<(String, String)> {
    a.cloud
        .instances(REGION)
        .into_iter()
        .filter(|i| i.clone_of().is_some() && !i.state.is_gone())
        .map(|i| {
            let from = i
                .tags
                .get(protocol::LAUNCHED_FROM)
                .cloned()
                .unwrap_or_default();
            (i.instance_id, from)
        })
        .collect()
}

fn drifted(report: &PassReport) -> Vec<String> {
    actions(report)
        .into_iter()
        .filter_map(|a| match a {
            Action::TerminateOrphan {
                clone,
                reason: OrphanReason::Drifted,
            } => Some(clone),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_configuration_created_again_under_its_name_gets_new_clones_from_a_new_template() {
    let mut a = Account::new();
    a.add_group("web", 1, 3, &[]);
    pass(&a).await;
    let first = clones(&a);
    assert_eq!(first.len(), 1);
    assert!(first[0].1.starts_with("lc:web-lc:"), "{first:?}");
    // The configuration is deleted and created again under the same name, with other user data.
    let recreated = LaunchSpec {
        user_data: Some(Secret("IyEvYmluL2Jhc2gKZWNobyB2Mgo=".into())),
        ..fixture_spec()
    };
    let lc = LaunchRef::LaunchConfiguration {
        name: "web-lc".into(),
    };
    a.cloud.put_launch_spec(REGION, &lc, recreated.clone());
    a.cloud.advance(Duration::from_secs(300));
    let report = pass(&a).await;
    assert_eq!(drifted(&report), [first[0].0.clone()], "{report:#?}");
    assert!(
        !actions(&report)
            .iter()
            .any(|x| matches!(x, Action::Swap { .. } | Action::AttachClone { .. })),
        "the stale clone is never attached"
    );
    // A clone of the current content, from a template of its own.
    let now = clones(&a);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0].0, first[0].0);
    assert_eq!(now[0].1, protocol::launch_identity(&lc, &recreated));
    assert_ne!(now[0].1, first[0].1);
    let fleet_template = actions(&report).into_iter().find_map(|x| match x {
        Action::LaunchClone { fleet, .. } => fleet.and_then(|f| f.template),
        _ => None,
    });
    assert_eq!(
        fleet_template,
        Some(protocol::owned_template_name("web-lc", &recreated))
    );
    assert_ne!(
        protocol::owned_template_name("web-lc", &recreated),
        protocol::owned_template_name("web-lc", &fixture_spec())
    );
    assert!(
        a.cloud
            .group(REGION, "web")
            .unwrap()
            .member(&first[0].0)
            .is_none()
    );
}

#[tokio::test]
async fn a_template_version_bumped_between_launch_and_swap_is_not_attached() {
    let a = Account::new();
    let lt = LaunchRef::LaunchTemplate {
        id: "lt-0web".into(),
        name: Some("web".into()),
        version: "$Latest".into(),
    };
    a.cloud.put_launch_spec(REGION, &lt, fixture_spec());
    let mut g = group("web", 1, 3, &[]);
    g.launch = Some(lt.clone());
    a.cloud.put_group(REGION, g);
    a.cloud
        .launch_group_members(REGION, "web", 1, "m5.large", &[]);
    pass(&a).await;
    let first = clones(&a);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1, "lt:lt-0web:1");
    // Version 2 becomes $Latest before the clone is ready.
    a.cloud.put_launch_spec(
        REGION,
        &LaunchRef::LaunchTemplate {
            id: "lt-0web".into(),
            name: Some("web".into()),
            version: "2".into(),
        },
        LaunchSpec {
            user_data: Some(Secret("IyEvYmluL2Jhc2gKZWNobyB2Mgo=".into())),
            ..fixture_spec()
        },
    );
    a.cloud.advance(Duration::from_secs(300));
    let report = pass(&a).await;
    assert_eq!(drifted(&report), [first[0].0.clone()], "{report:#?}");
    assert!(
        actions(&report)
            .iter()
            .any(|x| x.kind() == ActionKind::LaunchClone),
        "a clone of version 2 is launched: {report:#?}"
    );
    let now = clones(&a);
    assert_eq!(
        now.iter().map(|(_, f)| f.as_str()).collect::<Vec<_>>(),
        ["lt:lt-0web:2"]
    );
    // And it is the one swapped in.
    a.cloud.advance(Duration::from_secs(300));
    let report = pass(&a).await;
    assert!(
        actions(&report)
            .iter()
            .any(|x| matches!(x, Action::Swap { clone, .. } if *clone == now[0].0)),
        "{report:#?}"
    );
}
