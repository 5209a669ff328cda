//! The operator's stop (SIGINT or SIGTERM on `spotswap run`), over the in-memory cloud: once
//! it is signalled a pass sends no new change, the call in flight lands whole, and the leases
//! are given back except where a swap step is in doubt, so a pass run right after it acts on
//! every group the first left in no doubt. The end-to-end test sends a real SIGINT to the
//! binary (`e2e.rs`).

use std::time::Duration;

use spotswap::pacing::{STOPPED, Stop};
use spotswap::pass::PassOptions;
use spotswap::plan::{ActionKind, Skip};
use spotswap::protocol;
use spotswap::report::{EXIT_STOPPED, PassReport};
use spotswap::settings::Settings;

use super::pass_memory::{Account, REGION};

fn stopping(a: &Account, stop: &Stop) -> PassOptions {
    PassOptions {
        stop: Some(stop.clone()),
        ..PassOptions::new(&Settings::default(), a.cloud.now())
    }
}

fn leased_skips(report: &PassReport) -> usize {
    report.regions[0]
        .plan
        .as_ref()
        .unwrap()
        .skips()
        .filter(|(_, s)| matches!(s, Skip::Leased { .. }))
        .count()
}

fn lease_of(a: &Account, group: &str) -> protocol::Lease {
    protocol::lease(&a.group(group).tags)
        .expect("a readable lease")
        .expect("a lease")
}

#[tokio::test]
async fn stopped_once_its_leases_are_written_a_pass_starts_nothing_and_gives_every_lease_back() {
    let mut a = Account::new();
    a.add_group("web", 2, 4, &[]);
    a.add_group("api", 2, 4, &[]);
    let settings = Settings::default();
    let stop = Stop::new();
    // Ctrl-C lands while the leases are being written: that call lands whole.
    a.cloud.stop_after("CreateOrUpdateTags", 1, stop.clone());
    let report = a.pass_with(&settings, &stopping(&a, &stop)).await;
    assert!(report.stopped);
    assert_eq!(report.exit_code(), EXIT_STOPPED);
    assert_eq!(report.totals.clones_launched, 0, "{report:#?}");
    assert!(report.totals.deferred > 0, "{report:#?}");
    assert_eq!(report.totals.failures, 0);
    assert!(report.regions[0].leases_left.is_empty());
    let counts = a.cloud.total_call_counts();
    for write in ["CreateFleet", "RunInstances", "CreateLaunchTemplate"] {
        assert_eq!(counts.get(write), None, "{write} sent after the stop");
    }
    for g in ["web", "api"] {
        assert_eq!(lease_of(&a, g).until, None, "{g}: its lease was given back");
    }
    // A pass run right after it (no time passes) finds no lease in its way and acts.
    let next = a.pass(&settings).await;
    assert_eq!(leased_skips(&next), 0, "{next:#?}");
    assert!(next.totals.clones_launched >= 2, "{next:#?}");
}

#[tokio::test]
async fn stopped_mid_swap_a_pass_leaves_that_groups_lease_to_end_and_the_next_settles_it() {
    let mut a = Account::new();
    a.add_group("web", 1, 3, &[]);
    let settings = Settings::default();
    a.pass(&settings).await;
    a.cloud.advance(Duration::from_secs(300));
    let stop = Stop::new();
    // Ctrl-C lands while the clone is being attached: the attach lands, and the replaced
    // instance's removal, the swap's next step, is never sent.
    a.cloud.stop_after("AttachInstances", 1, stop.clone());
    let report = a.pass_with(&settings, &stopping(&a, &stop)).await;
    assert!(report.stopped);
    assert_eq!(report.exit_code(), EXIT_STOPPED);
    let swap = report.regions[0]
        .outcomes
        .iter()
        .find(|o| o.action == ActionKind::Swap)
        .expect("a swap was under way");
    let code = match &swap.status {
        spotswap::report::Status::Failed { error } => error.code.clone(),
        other => panic!("the swap's next step must be refused unsent: {other:?}"),
    };
    assert_eq!(code.as_deref(), Some(STOPPED));
    assert_eq!(report.regions[0].leases_left, ["web"]);
    assert!(
        lease_of(&a, "web").until.is_some(),
        "the lease is left to end"
    );
    // A pass right after it leaves the group alone; once the lease has ended, a pass settles
    // the swap from the group's scaling activities and the group ends swapped, its invariants
    // held after every pass.
    a.cloud.advance(Duration::from_secs(1));
    let next = a.pass(&settings).await;
    assert_eq!(leased_skips(&next), 1, "{next:#?}");
    a.cloud
        .advance(Duration::from_secs(u64::from(settings.lease_secs) + 60));
    a.converge(&settings).await;
    let g = a.group("web");
    assert_eq!(g.members.len(), 1);
    let member = a.cloud.instance(REGION, &g.members[0].instance_id).unwrap();
    assert!(member.clone_of().is_some(), "the swap completed");
}
