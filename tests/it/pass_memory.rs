//! Component tests of the real pass (observe -> plan -> execute) over [`MemoryCloud`], the
//! in-memory AWS account: passes run one after another with the clock moved on between them,
//! and the swap protocol's invariants (README, "How it decides") are checked after every pass,
//! including passes that failed half-way: in-service capacity never below where it started,
//! desired capacity back where it started once no swap is in flight, MaxSize as the user left
//! it unless a swap recorded it in `spotswap:max-size`, no clone left unattached past its
//! group's grace period plus the orphan timeout, and groups that are not opted in untouched.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use spotswap::cache::ReadCache;
use spotswap::cloud::memory::{GroupBuilder, InstanceBuilder, MemoryCloud};
use spotswap::cloud::{CloudError, ErrorKind};
use spotswap::model::{
    Ami, Architecture, Group, Instance, InstanceState, LaunchRef, LaunchSpec, Market, OsPrices,
    Secret, SpotPricePoint, Virtualization,
};
use spotswap::pass::{self, PassOptions};
use spotswap::plan::{Action, ActionKind, Decision, OrphanReason, Skip, Verdict};
use spotswap::protocol as tags;
use spotswap::report::{Outcome, PassReport, Status};
use spotswap::settings::Settings;

// ---------------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------------

pub(crate) const REGION: &str = "us-east-1";
const AZS: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const AMI: &str = "ami-0123456789abcdef0";
const LAUNCH_CONFIG: &str = "web-lc";
/// `#!/bin/bash\necho hello\n`, base64.
const USER_DATA: &str = "IyEvYmluL2Jhc2gKZWNobyBoZWxsbwo=";
const LINUX: &str = "Linux/UNIX (Amazon VPC)";
const GRACE_SECS: u32 = 300;
/// The Lambda's schedule: the clock moves this much between passes.
const PASS_INTERVAL: Duration = Duration::from_secs(300);
/// Passes a group of a few instances must converge within.
const MAX_PASSES: usize = 12;

/// Linux on-demand prices, USD per hour.
const ON_DEMAND: [(&str, f64); 5] = [
    ("m5.large", 0.096),
    ("m5a.large", 0.086),
    ("m6i.large", 0.096),
    ("m6a.large", 0.0864),
    ("m5.xlarge", 0.192),
];

/// Linux spot prices, the same in every AZ: three cheap compatible types within 5% of each other
/// (so a group spreads over all three, `spread-price-margin`) and a dearer fourth, all below
/// m5.large's on-demand price. Every other type has no spot price, so is not a
/// candidate.
const SPOT: [(&str, f64); 4] = [
    ("m5a.large", 0.034),
    ("m6a.large", 0.035),
    ("m6i.large", 0.0355),
    ("m5.xlarge", 0.080),
];

/// Every operation of the [`spotswap::cloud::Actuator`] side: a dry run makes none of them.
const WRITES: [&str; 11] = [
    "RunInstances",
    "CreateFleet",
    "CreateLaunchTemplate",
    "DeleteLaunchTemplate",
    "CreateTags",
    "AttachInstances",
    "TerminateInstanceInAutoScalingGroup",
    "TerminateInstances",
    "UpdateAutoScalingGroup",
    "CreateOrUpdateTags",
    "DeleteTags",
];

/// An opted-in group as the user left it.
struct Baseline {
    name: String,
    desired: u32,
    max: u32,
    in_service: usize,
}

/// The in-memory account and what the invariants compare against.
pub(crate) struct Account {
    pub(crate) cloud: MemoryCloud,
    watched: Vec<Baseline>,
    /// Groups that are not opted in, with their members, as seeded.
    untouched: Vec<(Group, Vec<Instance>)>,
}

fn launch_ref() -> LaunchRef {
    LaunchRef::LaunchConfiguration {
        name: LAUNCH_CONFIG.into(),
    }
}

pub(crate) fn group(name: &str, desired: u32, max: u32, extra_tags: &[(&str, &str)]) -> Group {
    GroupBuilder::new(name)
        .min(0)
        .desired(desired)
        .max(max)
        .grace_period_secs(GRACE_SECS)
        .tag("spot-enabled", "true")
        .propagated_tag("team", name)
        // CloudFormation puts reserved tags on the groups it creates, propagated at launch:
        // they must never be copied to a clone.
        .propagated_tag("aws:cloudformation:stack-name", format!("{name}-stack"))
        .tags(extra_tags.iter().copied())
        .launch(launch_ref())
        .build()
}

/// The fixture's launch configuration.
pub(crate) fn fixture_spec() -> LaunchSpec {
    LaunchSpec {
        image_id: AMI.into(),
        instance_type: Some("m5.large".into()),
        security_group_ids: vec!["sg-0123456789abcdef0".into()],
        iam_instance_profile: Some("web-profile".into()),
        user_data: Some(Secret(USER_DATA.into())),
        ..LaunchSpec::default()
    }
}

/// One pass with the default settings at the account's clock, which must fail no action.
pub(crate) async fn clean_pass(a: &Account) -> PassReport {
    let settings = Settings::default();
    let report = pass::run(
        &a.cloud,
        &settings,
        &PassOptions::new(&settings, a.cloud.now()),
    )
    .await
    .expect("the pass starts");
    assert_eq!(report.totals.failures, 0, "{report:#?}");
    report
}

/// Adds `region` with `azs` to `cloud`, seeded as the fixture's region: the launch
/// configuration and its AMI, on-demand prices, and spot prices in every AZ an hour and a half
/// before the clock's now. No groups.
fn seed_region(cloud: &MemoryCloud, region: &str, azs: &[&str]) {
    cloud.add_region(region, azs);
    cloud.put_launch_spec(region, &launch_ref(), fixture_spec());
    cloud.put_ami(
        region,
        Ami {
            image_id: AMI.into(),
            name: Some("web-2024-01".into()),
            architecture: Some(Architecture::X86_64),
            virtualization: Some(Virtualization::Hvm),
            ena_support: Some(true),
            platform_details: Some("Linux/UNIX".into()),
            ..Ami::default()
        },
    );
    cloud.set_on_demand(
        region,
        ON_DEMAND
            .iter()
            .map(|(t, p)| {
                let prices = OsPrices {
                    linux: Some(*p),
                    ..OsPrices::default()
                };
                (t.to_string(), prices)
            })
            .collect(),
    );
    let at = cloud.now() - TimeDelta::minutes(90);
    for az in azs {
        for (t, p) in SPOT {
            cloud.put_spot_price(
                region,
                SpotPricePoint {
                    instance_type: t.into(),
                    availability_zone: az.to_string(),
                    product_description: LINUX.into(),
                    price: p,
                    timestamp: at,
                },
            );
        }
    }
}

impl Account {
    /// One region, the launch configuration and its AMI, on-demand prices, and spot prices in
    /// every AZ an hour and a half before the clock's now. No groups yet.
    pub(crate) fn new() -> Self {
        let cloud = MemoryCloud::new();
        seed_region(&cloud, REGION, &AZS);
        Account {
            cloud,
            watched: Vec::new(),
            untouched: Vec::new(),
        }
    }

    /// An opted-in group of `n` running on-demand m5.large, round-robin over the AZs.
    pub(crate) fn add_group(
        &mut self,
        name: &str,
        n: u32,
        max: u32,
        extra_tags: &[(&str, &str)],
    ) -> Vec<String> {
        self.cloud
            .put_group(REGION, group(name, n, max, extra_tags));
        let ids = self
            .cloud
            .launch_group_members(REGION, name, n as usize, "m5.large", &[]);
        self.watched.push(Baseline {
            name: name.into(),
            desired: n,
            max,
            in_service: in_service(&self.group(name)),
        });
        assert_eq!(self.watched.last().unwrap().in_service, n as usize);
        ids
    }

    /// The fixture's launch configuration makes a public-IP choice from now on, so its clones
    /// launch one `RunInstances` each: a fleet cannot restate the interface it needs.
    fn launch_per_clone(&self) {
        let spec = LaunchSpec {
            associate_public_ip_address: Some(true),
            ..fixture_spec()
        };
        self.cloud.put_launch_spec(REGION, &launch_ref(), spec);
    }

    /// A group that is not opted in (`spot-enabled=false`): no pass may touch it.
    fn add_untouched_group(&mut self, name: &str, n: u32) {
        self.cloud
            .put_group(REGION, group(name, n, 10, &[("spot-enabled", "false")]));
        let ids = self
            .cloud
            .launch_group_members(REGION, name, n as usize, "m5.large", &[]);
        let members = ids.iter().map(|id| self.instance(id)).collect();
        self.untouched.push((self.group(name), members));
    }

    pub(crate) fn group(&self, name: &str) -> Group {
        self.cloud.group(REGION, name).expect("the group exists")
    }

    fn instance(&self, id: &str) -> Instance {
        self.cloud
            .instance(REGION, id)
            .expect("the instance exists")
    }

    /// Members of a group, as instances.
    fn members(&self, name: &str) -> Vec<Instance> {
        self.group(name)
            .members
            .iter()
            .map(|m| self.instance(&m.instance_id))
            .collect()
    }

    /// Live (not terminated or shutting down) clones, attached or not.
    fn live_clones(&self) -> Vec<Instance> {
        self.cloud
            .instances(REGION)
            .into_iter()
            .filter(|i| i.clone_of().is_some() && !i.state.is_gone())
            .collect()
    }

    /// Live clones attached to no group.
    fn unattached_clones(&self) -> Vec<Instance> {
        self.live_clones()
            .into_iter()
            .filter(|c| {
                let (group, _) = c.clone_of().unwrap();
                self.cloud
                    .group(REGION, group)
                    .is_none_or(|g| g.member(&c.instance_id).is_none())
            })
            .collect()
    }

    /// Everything a pass could change: every seeded group and every instance.
    fn state(&self) -> (Vec<Group>, Vec<Instance>) {
        let names = self
            .watched
            .iter()
            .map(|b| b.name.clone())
            .chain(self.untouched.iter().map(|(g, _)| g.name.clone()));
        (
            names.map(|n| self.group(&n)).collect(),
            self.cloud.instances(REGION),
        )
    }

    /// One pass over the account as the CLI runs it, with no checks.
    async fn run(&self, settings: &Settings, opts: &PassOptions) -> PassReport {
        let opts = PassOptions {
            now: self.cloud.now(),
            ..opts.clone()
        };
        pass::run(&self.cloud, settings, &opts)
            .await
            .expect("the pass starts")
    }

    /// One pass over the account as the CLI runs it, then the invariants.
    pub(crate) async fn pass_with(&self, settings: &Settings, opts: &PassOptions) -> PassReport {
        let report = self.run(settings, opts).await;
        self.check_invariants(settings, &report);
        report
    }

    /// A real pass (not a dry run, no deadline).
    pub(crate) async fn pass(&self, settings: &Settings) -> PassReport {
        let opts = PassOptions {
            dry_run: false,
            now: chrono::Utc::now(),
            deadline: None,
            cache: None,
            preflight: None,
            stop: None,
        };
        self.pass_with(settings, &opts).await
    }

    /// Moves the clock on to the next scheduled pass.
    fn wait(&self) {
        self.cloud.advance(PASS_INTERVAL);
    }

    /// Runs passes, the clock moving on between them, until one has nothing to do and no clone
    /// is left unattached. Every pass must go through. Returns the passes' reports.
    pub(crate) async fn converge(&self, settings: &Settings) -> Vec<PassReport> {
        let mut reports = Vec::new();
        for n in 1..=MAX_PASSES {
            let report = self.pass(settings).await;
            assert_eq!(report.exit_code(), 0, "pass {n} failed: {report:#?}");
            let done = actions(&report).is_empty() && self.unattached_clones().is_empty();
            reports.push(report);
            if done {
                return reports;
            }
            self.wait();
        }
        panic!("no convergence within {MAX_PASSES} passes");
    }

    /// The swap protocol's invariants (README, "How it decides"), after any pass.
    fn check_invariants(&self, settings: &Settings, report: &PassReport) {
        let json = serde_json::to_string(report).expect("the report serialises");
        assert!(!json.contains(USER_DATA), "user data in the pass report");
        assert!(!format!("{report:?}").contains(USER_DATA));
        let now = self.cloud.now();
        let context = || format!("at {now}, after a pass that reported {report:#?}");
        let clones = self.live_clones();
        for base in &self.watched {
            let g = self.group(&base.name);
            assert!(
                in_service(&g) >= base.in_service,
                "{}: {} in service, below the {} it started with, {}",
                base.name,
                in_service(&g),
                base.in_service,
                context()
            );
            // A swap in flight: its clone attached while the instance it replaces is still a
            // member. Each one holds desired capacity one above where it started.
            let in_flight = clones
                .iter()
                .filter(|c| {
                    let (group, replaces) = c.clone_of().unwrap();
                    group == base.name
                        && g.member(&c.instance_id).is_some()
                        && g.member(replaces).is_some()
                })
                .count() as u32;
            assert_eq!(
                g.desired_capacity,
                base.desired + in_flight,
                "{}: desired capacity with {in_flight} swaps in flight, {}",
                base.name,
                context()
            );
            match g.tags.get(tags::MAX_SIZE) {
                None => assert_eq!(
                    g.max_size,
                    base.max,
                    "{}: MaxSize changed with no {} tag, {}",
                    base.name,
                    tags::MAX_SIZE,
                    context()
                ),
                Some(v) => {
                    assert_eq!(
                        v,
                        &base.max.to_string(),
                        "{}: {} does not record the user's MaxSize, {}",
                        base.name,
                        tags::MAX_SIZE,
                        context()
                    );
                    assert!(g.max_size >= base.max);
                }
            }
            assert!(
                g.tags
                    .keys()
                    .filter(|k| k.starts_with("spotswap:"))
                    .all(|k| k == tags::MAX_SIZE
                        || k == tags::LAUNCH_BACKOFF
                        || k == tags::INTERRUPTED
                        || k == tags::LEASE
                        || k == tags::SETTLED
                        || k.starts_with("spotswap:min-on-demand")),
                "{}: unexpected spotswap tags on the group: {:?}",
                base.name,
                g.tags
            );
            // A pass that ends gives its leases back (one that died leaves its own to end),
            // except where a swap step failed or a swap stayed in doubt: that lease is left to
            // end, so the next pass reads the group's scaling activities.
            let unfinished = report.regions.iter().any(|r| {
                r.outcomes.iter().any(|o| {
                    o.group == base.name
                        && o.failed()
                        && matches!(
                            o.action,
                            ActionKind::Swap | ActionKind::CompleteSwap | ActionKind::SettleSwap
                        )
                }) || r.plan.as_ref().is_some_and(|p| {
                    p.skips()
                        .any(|(d, s)| d.group == base.name && matches!(s, Skip::SwapInDoubt { .. }))
                })
            });
            // (Only this pass's own lease: one another pass left to end is not its to give.)
            if let Some(lease) = tags::lease(&g.tags)
                .expect("a readable lease")
                .filter(|l| l.holder.starts_with(&report.pass_id))
            {
                assert!(
                    !lease.active_at(now) || unfinished,
                    "{}: lease kept ({lease:?}), {}",
                    base.name,
                    context()
                );
            }
            let policy = settings.for_group(&g.tags).expect("valid settings");
            let bound = TimeDelta::seconds(i64::from(g.health_check_grace_period_secs))
                + TimeDelta::minutes(i64::from(policy.orphan_timeout_minutes));
            for c in &clones {
                let (group, _) = c.clone_of().unwrap();
                if group == base.name && g.member(&c.instance_id).is_none() {
                    assert!(
                        now - c.launch_time <= bound,
                        "{}: clone {} unattached since {}, past grace + orphan timeout, {}",
                        base.name,
                        c.instance_id,
                        c.launch_time,
                        context()
                    );
                }
            }
        }
        for (before, members) in &self.untouched {
            assert_eq!(
                &self.group(&before.name),
                before,
                "a group not opted in changed"
            );
            for m in members {
                assert_eq!(
                    &self.instance(&m.instance_id),
                    m,
                    "a member of a group not opted in changed"
                );
            }
            assert!(
                clones
                    .iter()
                    .all(|c| c.clone_of().unwrap().0 != before.name),
                "a clone was launched for a group not opted in"
            );
        }
    }
}

fn in_service(g: &Group) -> usize {
    g.members.iter().filter(|m| m.is_in_service()).count()
}

fn region(report: &PassReport) -> &spotswap::report::RegionReport {
    assert_eq!(report.regions.len(), 1);
    &report.regions[0]
}

/// The pass's planned actions.
fn actions(report: &PassReport) -> Vec<(&Decision, &Action)> {
    region(report)
        .plan
        .as_ref()
        .map(|p| p.actions().collect())
        .unwrap_or_default()
}

/// The outcomes of one kind of action.
fn outcomes(report: &PassReport, action: ActionKind) -> Vec<&Outcome> {
    region(report)
        .outcomes
        .iter()
        .filter(|o| o.action == action)
        .collect()
}

/// The one launch of a pass, and the clone it launched.
fn the_one_clone(report: &PassReport) -> (&Outcome, String) {
    let [launch] = outcomes(report, ActionKind::LaunchClone)[..] else {
        panic!("one launch expected: {report:#?}");
    };
    let Status::Done {
        instance_id: Some(clone),
        ..
    } = &launch.status
    else {
        panic!("{launch:?}");
    };
    (launch, clone.clone())
}

fn is_done(o: &Outcome) -> bool {
    matches!(o.status, Status::Done { .. })
}

/// The calls made between two readings of the call counts, by operation.
fn delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn writes(calls: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    calls
        .iter()
        .filter(|(op, _)| WRITES.contains(&op.as_str()))
        .map(|(op, n)| (op.clone(), *n))
        .collect()
}

fn count(calls: &BTreeMap<String, u64>, op: &str) -> u64 {
    calls.get(op).copied().unwrap_or(0)
}

fn market_count(instances: &[Instance], market: Market) -> usize {
    instances.iter().filter(|i| i.market == market).count()
}

fn error(operation: &str, kind: ErrorKind, code: &str) -> CloudError {
    CloudError::new(operation, kind, Some(code), "scripted by the test")
}

// ---------------------------------------------------------------------------------------------
// Convergence
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_group_of_eight_on_demand_instances_converges_to_spot_without_a_capacity_dip() {
    let mut account = Account::new();
    let originals = account.add_group("web", 8, 10, &[]);
    account.add_untouched_group("batch", 3);

    let reports = account.converge(&Settings::default()).await;
    assert!(reports.len() <= MAX_PASSES, "{} passes", reports.len());
    let launched: u32 = reports.iter().map(|r| r.totals.clones_launched).sum();
    let swapped: u32 = reports.iter().map(|r| r.totals.swaps).sum();
    assert_eq!(
        (launched, swapped),
        (8, 8),
        "one clone and one swap per instance"
    );

    let g = account.group("web");
    assert_eq!((g.desired_capacity, g.max_size, in_service(&g)), (8, 10, 8));
    let members = account.members("web");
    assert_eq!(market_count(&members, Market::Spot), 8, "{members:#?}");
    let types: BTreeSet<&str> = members.iter().map(|i| i.instance_type.as_str()).collect();
    assert!(
        types.len() >= 3,
        "three compatible types are priced, the group uses {types:?}"
    );
    let mut replaced = BTreeSet::new();
    for clone in &members {
        let t = &clone.tags;
        assert_eq!(t.get(tags::GROUP).map(String::as_str), Some("web"));
        let replaces = t.get(tags::REPLACES).expect("spotswap:replaces");
        assert!(
            originals.contains(replaces),
            "{replaces} is not an original"
        );
        assert!(
            replaced.insert(replaces.clone()),
            "{replaces} replaced twice"
        );
        assert_eq!(t.get("team").map(String::as_str), Some("web"), "{t:?}");
        assert!(!t.keys().any(|k| k.starts_with("aws:")), "{t:?}");
        assert_eq!(clone.image_id.as_deref(), Some(AMI));
    }
    for id in &originals {
        assert!(account.instance(id).state.is_gone(), "{id} still runs");
    }
    assert_eq!(account.live_clones().len(), 8);
    // The last pass saw the converged group: it saves, for each clone, the on-demand price of
    // the m5.large it replaced less the clone's spot price.
    let price = |table: &[(&str, f64)], ty: &str| {
        table
            .iter()
            .find(|(t, _)| *t == ty)
            .map(|(_, p)| *p)
            .unwrap()
    };
    let expected: f64 = members
        .iter()
        .map(|i| price(&ON_DEMAND, "m5.large") - price(&SPOT, &i.instance_type))
        .sum();
    let saving = reports.last().unwrap().totals.hourly_savings_now;
    assert!((saving - expected).abs() < 1e-9, "{saving} != {expected}");
}

/// Extra tags of a group.
type GroupTags = &'static [(&'static str, &'static str)];

#[tokio::test(start_paused = true)]
async fn min_on_demand_number_keeps_that_many_on_demand_instances_as_setting_and_as_tag() {
    let cases: [(Settings, GroupTags, usize); 2] = [
        (
            Settings::from_pairs([("min-on-demand-number", "2")]).unwrap(),
            &[],
            2,
        ),
        (
            Settings::default(),
            &[("spotswap:min-on-demand-number", "3")],
            3,
        ),
    ];
    for (settings, tags, keep) in cases {
        let mut account = Account::new();
        account.add_group("web", 8, 10, tags);
        account.converge(&settings).await;
        let members = account.members("web");
        assert_eq!(market_count(&members, Market::OnDemand), keep, "{tags:?}");
        assert_eq!(market_count(&members, Market::Spot), 8 - keep, "{tags:?}");
        assert_eq!(account.group("web").desired_capacity, 8);
        // And it stays so: another pass plans nothing.
        account.wait();
        let report = account.pass(&settings).await;
        assert!(actions(&report).is_empty(), "{report:#?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_group_at_max_size_converges_and_ends_with_its_max_size_and_no_max_size_tag() {
    let mut account = Account::new();
    account.add_group("web", 4, 4, &[]);
    let before = account.cloud.total_call_counts();

    let reports = account.converge(&Settings::default()).await;

    let g = account.group("web");
    assert_eq!((g.desired_capacity, g.max_size), (4, 4));
    assert!(!g.tags.contains_key(tags::MAX_SIZE), "{:?}", g.tags);
    assert_eq!(market_count(&account.members("web"), Market::Spot), 4);
    let calls = delta(&before, &account.cloud.total_call_counts());
    // Four swaps, each raising MaxSize and putting it back, recorded in the tag meanwhile.
    assert_eq!(count(&calls, "UpdateAutoScalingGroup"), 8, "{calls:?}");
    // Every pass that acts also takes the group's lease and gives it back.
    let acting = reports.iter().filter(|r| !actions(r).is_empty()).count();
    assert_eq!(
        count(&calls, "CreateOrUpdateTags"),
        4 + 2 * acting as u64,
        "{calls:?}"
    );
    assert_eq!(count(&calls, "DeleteTags"), 4, "{calls:?}");
}

// ---------------------------------------------------------------------------------------------
// Dry run
// ---------------------------------------------------------------------------------------------

/// A running clone of a group that is gone: an orphan to terminate (`group-not-opted-in`).
fn put_stray_clone(account: &Account) {
    account.cloud.put_instance(
        REGION,
        InstanceBuilder::spot("i-stray", "m5a.large", AZS[0])
            .clone_of("retired", "")
            .state(InstanceState::Running)
            .build(),
    );
}

#[tokio::test(start_paused = true)]
async fn dry_run_changes_nothing_in_the_account() {
    let mut account = Account::new();
    let originals = account.add_group("web", 8, 8, &[]);
    account.add_untouched_group("batch", 2);
    // A real pass launches two clones, and a clone of a deleted group is left over, so the
    // next pass has a launch, a swap at MaxSize and an orphan to act on.
    let first = account.pass(&Settings::default()).await;
    let launched: Vec<&str> = outcomes(&first, ActionKind::LaunchClone)
        .iter()
        .map(|o| o.instance.as_deref().unwrap())
        .collect();
    assert_eq!(launched.len(), 2);
    assert!(launched.iter().all(|id| originals.iter().any(|o| o == id)));
    put_stray_clone(&account);
    account.wait();

    let flag = PassOptions {
        dry_run: true,
        now: chrono::Utc::now(),
        deadline: None,
        cache: None,
        preflight: None,
        stop: None,
    };
    let setting = Settings::from_pairs([("dry-run", "true")]).unwrap();
    assert!(setting.dry_run);
    let as_the_cli_applies_it = PassOptions {
        dry_run: setting.dry_run,
        now: chrono::Utc::now(),
        deadline: None,
        cache: None,
        preflight: None,
        stop: None,
    };
    for (settings, opts) in [
        (Settings::default(), flag),
        (setting.clone(), as_the_cli_applies_it),
    ] {
        let state = account.state();
        let calls = account.cloud.total_call_counts();

        let report = account.pass_with(&settings, &opts).await;

        assert!(report.dry_run);
        assert_eq!(report.exit_code(), 0);
        let planned: BTreeSet<ActionKind> =
            actions(&report).iter().map(|(_, a)| a.kind()).collect();
        assert_eq!(
            planned,
            BTreeSet::from([
                ActionKind::LaunchClone,
                ActionKind::Swap,
                ActionKind::TerminateOrphan
            ]),
            "{report:#?}"
        );
        let outcomes = &region(&report).outcomes;
        assert_eq!(outcomes.len(), actions(&report).len());
        assert!(outcomes.iter().all(|o| o.status == Status::DryRun));
        assert!(account.state() == state, "the dry run changed the account");
        let made = delta(&calls, &account.cloud.total_call_counts());
        assert!(writes(&made).is_empty(), "a dry run wrote: {made:?}");
        assert!(count(&made, "DescribeAutoScalingGroups") > 0, "{made:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// Faults
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_capacity_error_on_the_first_candidate_falls_through_to_the_next_candidate() {
    let mut account = Account::new();
    let ids = account.add_group("web", 1, 10, &[]);
    let az = account.instance(&ids[0]).availability_zone;
    assert_eq!(az, AZS[0]);
    // m5a.large is the cheapest compatible type, so the first candidate.
    account.cloud.set_capacity(REGION, "m5a.large", &az, false);
    let before = account.cloud.total_call_counts();

    let report = account.pass(&Settings::default()).await;

    assert_eq!(report.exit_code(), 0, "{report:#?}");
    let [(_, Action::LaunchClone { candidates, .. })] = actions(&report)[..] else {
        panic!("one launch expected: {report:#?}");
    };
    assert_eq!(candidates[0].instance_type, "m5a.large");
    let [launch] = outcomes(&report, ActionKind::LaunchClone)[..] else {
        panic!("one launch outcome expected");
    };
    let Status::Done {
        instance_id: Some(clone),
        instance_type: Some(ty),
    } = &launch.status
    else {
        panic!("the launch did not go through: {launch:?}");
    };
    assert_eq!(ty, &candidates[1].instance_type);
    assert_ne!(ty, "m5a.large");
    let clone = account.instance(clone);
    assert_eq!(
        (
            clone.instance_type.as_str(),
            clone.availability_zone.as_str()
        ),
        (ty.as_str(), az.as_str())
    );
    // One fleet: EC2 took the next candidate, and the full pool's error is reported.
    let calls = delta(&before, &account.cloud.total_call_counts());
    assert_eq!(count(&calls, "CreateFleet"), 1, "{calls:?}");
    assert_eq!(count(&calls, "RunInstances"), 0, "{calls:?}");
    assert_eq!(launch.no_capacity, ["m5a.large"]);
    assert_eq!(report.totals.clones_launched, 1);

    // The swap goes through as usual.
    account.wait();
    account.converge(&Settings::default()).await;
    let members = account.members("web");
    assert_eq!(members.len(), 1);
    assert_eq!(members[0].instance_id, clone.instance_id);
}

#[tokio::test(start_paused = true)]
async fn a_launch_with_no_capacity_for_any_candidate_fails_without_a_clone() {
    let mut account = Account::new();
    let ids = account.add_group("web", 1, 10, &[]);
    let az = account.instance(&ids[0]).availability_zone;
    for (t, _) in SPOT {
        account.cloud.set_capacity(REGION, t, &az, false);
    }
    let before = account.cloud.total_call_counts();

    let report = account.pass(&Settings::default()).await;

    assert_eq!(report.exit_code(), 1);
    let [(_, Action::LaunchClone { candidates, .. })] = actions(&report)[..] else {
        panic!("one launch expected: {report:#?}");
    };
    let [launch] = outcomes(&report, ActionKind::LaunchClone)[..] else {
        panic!("one launch outcome expected");
    };
    let Status::Failed { error } = &launch.status else {
        panic!("{launch:?}");
    };
    assert_eq!(error.kind, ErrorKind::CapacityUnavailable);
    let calls = delta(&before, &account.cloud.total_call_counts());
    assert_eq!(count(&calls, "CreateFleet"), 1, "{calls:?}");
    // Every candidate's error is read from the fleet's reply.
    let offered: Vec<&str> = candidates
        .iter()
        .map(|c| c.instance_type.as_str())
        .collect();
    assert_eq!(launch.no_capacity, offered);
    assert!(account.live_clones().is_empty());
}

/// How one launch ended: the type launched, or the code of the error it stopped with; and how
/// many RunInstances calls it made.
type LaunchEnd = (Result<String, Option<String>>, u64);

/// One pass over a group of one m5.large whose launches of the given types are refused with
/// the given kind and code, and whose pools of `no_capacity` types have no capacity. Its
/// launch configuration makes a public-IP choice, so its clones launch one `RunInstances` each
/// (a fleet cannot restate the interface that choice needs).
async fn launch_refused(refused: &[(&str, ErrorKind, &str)], no_capacity: &[&str]) -> LaunchEnd {
    let mut account = Account::new();
    let ids = account.add_group("web", 1, 10, &[]);
    account.launch_per_clone();
    let az = account.instance(&ids[0]).availability_zone;
    for (t, kind, code) in refused {
        let e = error("RunInstances", *kind, code);
        account.cloud.refuse_launches(REGION, t, Some(e));
    }
    for t in no_capacity {
        account.cloud.set_capacity(REGION, t, &az, false);
    }
    let before = account.cloud.total_call_counts();
    let report = account.pass(&Settings::default()).await;
    let [(_, Action::LaunchClone { candidates, .. })] = actions(&report)[..] else {
        panic!("one launch expected: {report:#?}");
    };
    let order: Vec<&str> = candidates
        .iter()
        .map(|c| c.instance_type.as_str())
        .collect();
    assert_eq!(
        order,
        ["m5a.large", "m6a.large", "m6i.large", "m5.xlarge"],
        "the candidates the cases are written for"
    );
    let [launch] = outcomes(&report, ActionKind::LaunchClone)[..] else {
        panic!("one launch outcome expected");
    };
    let end = match &launch.status {
        Status::Done {
            instance_type: Some(ty),
            ..
        } => Ok(ty.clone()),
        Status::Failed { error } => Err(error.code.clone()),
        other => panic!("{other:?}"),
    };
    let calls = delta(&before, &account.cloud.total_call_counts());
    (end, count(&calls, "RunInstances"))
}

#[tokio::test(start_paused = true)]
async fn a_type_that_refuses_the_request_falls_through_until_three_refuse_it_alike() {
    use ErrorKind::{InvalidRequest, NotFound, Unauthorized};
    const COMBINATION: &str = "InvalidParameterCombination";
    const VALUE: &str = "InvalidParameterValue";
    let ok = |t: &str| Ok(t.to_string());
    let stopped = |code: &str| Err(Some(code.to_string()));
    type Case<'a> = (
        &'a str,
        Vec<(&'a str, ErrorKind, &'a str)>,
        Vec<&'a str>,
        LaunchEnd,
    );
    let cases: Vec<Case> = vec![
        (
            "two types refuse the spec: the third launches",
            vec![
                ("m5a.large", InvalidRequest, COMBINATION),
                ("m6a.large", InvalidRequest, COMBINATION),
            ],
            vec![],
            (ok("m6i.large"), 3),
        ),
        (
            "three types in a row refuse it with one code: the spec's fault, the fourth is not tried",
            vec![
                ("m5a.large", InvalidRequest, COMBINATION),
                ("m6a.large", InvalidRequest, COMBINATION),
                ("m6i.large", InvalidRequest, COMBINATION),
                ("m5.xlarge", InvalidRequest, COMBINATION),
            ],
            vec![],
            (stopped(COMBINATION), 3),
        ),
        (
            "different codes are not the same refusal: the fourth launches",
            vec![
                ("m5a.large", InvalidRequest, COMBINATION),
                ("m6a.large", InvalidRequest, COMBINATION),
                ("m6i.large", InvalidRequest, VALUE),
            ],
            vec![],
            (ok("m5.xlarge"), 4),
        ),
        (
            "a capacity error breaks the row: every candidate is tried, the last error returned",
            vec![
                ("m5a.large", InvalidRequest, COMBINATION),
                ("m6a.large", InvalidRequest, COMBINATION),
                ("m5.xlarge", InvalidRequest, COMBINATION),
            ],
            vec!["m6i.large"],
            (stopped(COMBINATION), 4),
        ),
        (
            "a denied call stops at once",
            vec![("m5a.large", Unauthorized, "UnauthorizedOperation")],
            vec![],
            (stopped("UnauthorizedOperation"), 1),
        ),
        (
            "a missing resource stops at once",
            vec![("m5a.large", NotFound, "InvalidSubnetID.NotFound")],
            vec![],
            (stopped("InvalidSubnetID.NotFound"), 1),
        ),
    ];
    for (name, refused, no_capacity, want) in cases {
        assert_eq!(launch_refused(&refused, &no_capacity).await, want, "{name}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_fleet_reads_each_refused_override_and_launches_in_the_first_pool_that_accepts() {
    // A group of one m5.large whose launches of `types` are refused (InvalidParameterCombination).
    let refusing = |types: &[&str]| {
        let mut account = Account::new();
        account.add_group("web", 1, 10, &[]);
        for t in types {
            let e = error(
                "CreateFleet",
                ErrorKind::InvalidRequest,
                "InvalidParameterCombination",
            );
            account.cloud.refuse_launches(REGION, t, Some(e));
        }
        account
    };
    let account = refusing(&["m5a.large", "m6a.large"]);
    let before = account.cloud.total_call_counts();
    let report = account.pass(&Settings::default()).await;
    let [launch] = outcomes(&report, ActionKind::LaunchClone)[..] else {
        panic!("one launch outcome expected: {report:#?}");
    };
    let Status::Done {
        instance_type: Some(ty),
        ..
    } = &launch.status
    else {
        panic!("{launch:?}");
    };
    assert_eq!(ty, "m6i.large");
    // Refusals are not capacity errors: no pool is avoided for them.
    assert!(launch.no_capacity.is_empty());
    let calls = delta(&before, &account.cloud.total_call_counts());
    assert_eq!(count(&calls, "CreateFleet"), 1, "{calls:?}");
    assert_eq!(count(&calls, "RunInstances"), 0, "{calls:?}");

    // When every override refuses, the launch fails with the refusal, not a capacity error.
    let every: Vec<&str> = SPOT.iter().map(|(t, _)| *t).collect();
    let account = refusing(&every);
    let report = account.pass(&Settings::default()).await;
    let [launch] = outcomes(&report, ActionKind::LaunchClone)[..] else {
        panic!("one launch outcome expected: {report:#?}");
    };
    let Status::Failed { error } = &launch.status else {
        panic!("{launch:?}");
    };
    assert_eq!(error.code.as_deref(), Some("InvalidParameterCombination"));
    assert_eq!(error.operation, "CreateFleet");
    assert!(account.live_clones().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_template_kept_for_a_launch_configuration_is_deleted_once_no_group_uses_it() {
    let mut account = Account::new();
    account.add_group("web", 4, 10, &[]);
    let first = account.pass(&Settings::default()).await;
    assert_eq!(first.totals.clones_launched, 1, "{first:#?}");
    let name = tags::owned_template_name(LAUNCH_CONFIG, &fixture_spec());
    let template = async |account: &Account| -> Option<String> {
        owned_templates(account)
            .await
            .into_iter()
            .find(|t| t.name == name)
            .map(|t| t.id)
    };
    let id = template(&account)
        .await
        .expect("the template was made for the first launch");

    // The group moves to a new launch configuration.
    let new_lc = LaunchRef::LaunchConfiguration {
        name: "web-lc-v2".into(),
    };
    account
        .cloud
        .put_launch_spec(REGION, &new_lc, fixture_spec());
    let mut g = account.group("web");
    g.launch = Some(new_lc);
    account.cloud.put_group(REGION, g);

    // Younger than an hour, it may be one a pass beside this one has just made: kept.
    account.wait();
    let report = account.pass(&Settings::default()).await;
    assert!(outcomes(&report, ActionKind::DeleteTemplate).is_empty());
    assert!(template(&account).await.is_some());

    account.cloud.advance(Duration::from_secs(3600));
    let report = account.pass(&Settings::default()).await;
    let [deleted] = outcomes(&report, ActionKind::DeleteTemplate)[..] else {
        panic!("one template deleted: {report:#?}");
    };
    assert!(is_done(deleted), "{deleted:?}");
    assert!(actions(&report).iter().any(|(_, a)| matches!(
        a,
        Action::DeleteTemplate { template_id, launch_configuration, .. }
            if *template_id == id && launch_configuration == LAUNCH_CONFIG
    )));
    assert!(template(&account).await.is_none());
    // The new configuration has its own.
    assert!(
        owned_templates(&account)
            .await
            .iter()
            .any(|t| t.name == tags::owned_template_name("web-lc-v2", &fixture_spec()))
    );
}

/// spotswap's templates in the fixture's region, as the inventory lists them.
async fn owned_templates(account: &Account) -> Vec<spotswap::model::OwnedTemplateRecord> {
    use spotswap::cloud::{Account as _, Inventory as _};
    account
        .cloud
        .region(REGION)
        .owned_templates()
        .await
        .expect("listed")
}

#[tokio::test(start_paused = true)]
async fn a_failure_in_one_group_does_not_stop_another_groups_actions() {
    let mut account = Account::new();
    account.add_group("api", 4, 10, &[]);
    account.add_group("web", 4, 10, &[]);
    // Opted in, but its launch configuration is gone: a skip, and the others go on.
    account.cloud.put_group(REGION, {
        let mut g = group("legacy", 0, 10, &[]);
        g.launch = Some(LaunchRef::LaunchConfiguration {
            name: "deleted-lc".into(),
        });
        g
    });
    let settings = Settings::default();
    let first = account.pass(&settings).await;
    assert_eq!(first.totals.clones_launched, 2, "{first:#?}");
    account.wait();
    account.cloud.fail_next(
        "AttachInstances",
        error("AttachInstances", ErrorKind::Other, "InternalFailure"),
        1,
    );

    let report = account.pass(&settings).await;

    assert_eq!(report.exit_code(), 1);
    assert_eq!(report.totals.failures, 1);
    let swaps = outcomes(&report, ActionKind::Swap);
    assert_eq!(swaps.len(), 2, "{report:#?}");
    let failed: Vec<&&Outcome> = swaps.iter().filter(|o| o.failed()).collect();
    let [failed] = failed[..] else {
        panic!("one swap should fail: {swaps:#?}");
    };
    let other = swaps.iter().find(|o| !o.failed()).unwrap();
    assert!(is_done(other), "{other:?}");
    assert_ne!(failed.group, other.group);
    // Both groups, the failing one included, still launched their next clone.
    for g in ["api", "web"] {
        let launches = outcomes(&report, ActionKind::LaunchClone);
        assert!(
            launches.iter().any(|o| o.group == g && is_done(o)),
            "{g}: {launches:#?}"
        );
    }
    let legacy_skips: Vec<&Skip> = region(&report)
        .plan
        .as_ref()
        .unwrap()
        .skips()
        .filter(|(d, _)| d.group == "legacy")
        .map(|(_, s)| s)
        .collect();
    assert!(
        matches!(legacy_skips[..], [Skip::NoLaunchSpec { .. }]),
        "{legacy_skips:?}"
    );
    // The failed swap is retried by the next pass.
    account.wait();
    account.converge(&settings).await;
    for g in ["api", "web"] {
        assert_eq!(market_count(&account.members(g), Market::Spot), 4);
    }
}

/// A pass dies between the attach and the removal of the on-demand instance; the next pass
/// completes the swap.
async fn crash_mid_swap(max: u32) {
    let mut account = Account::new();
    let ids = account.add_group("web", 2, max, &[]);
    let settings = Settings::default();
    let first = account.pass(&settings).await;
    let [launch] = outcomes(&first, ActionKind::LaunchClone)[..] else {
        panic!("one launch expected: {first:#?}");
    };
    let replaced = launch.instance.clone().unwrap();
    assert!(ids.contains(&replaced));
    account.wait();
    account.cloud.fail_next(
        "TerminateInstanceInAutoScalingGroup",
        error(
            "TerminateInstanceInAutoScalingGroup",
            ErrorKind::Other,
            "ServiceUnavailable",
        ),
        1,
    );

    let crashed = account.pass(&settings).await;

    assert_eq!(crashed.exit_code(), 1);
    let [swap] = outcomes(&crashed, ActionKind::Swap)[..] else {
        panic!("one swap expected: {crashed:#?}");
    };
    assert!(swap.failed());
    let g = account.group("web");
    let clone = account
        .live_clones()
        .into_iter()
        .find(|c| c.clone_of().unwrap().1 == replaced)
        .expect("the clone");
    assert!(
        g.member(&clone.instance_id).is_some(),
        "the clone is attached"
    );
    assert!(
        g.member(&replaced).is_some_and(|m| m.is_in_service()),
        "the on-demand instance is still in service"
    );
    assert_eq!(g.desired_capacity, 3);
    if max == 2 {
        assert_eq!(g.max_size, 3);
        assert_eq!(g.tags.get(tags::MAX_SIZE).map(String::as_str), Some("2"));
    }

    account.wait();
    let next = account.pass(&settings).await;

    assert_eq!(next.exit_code(), 0, "{next:#?}");
    let [complete] = outcomes(&next, ActionKind::CompleteSwap)[..] else {
        panic!("one complete-swap expected: {next:#?}");
    };
    assert!(is_done(complete));
    assert_eq!(complete.instance.as_deref(), Some(replaced.as_str()));
    assert!(account.instance(&replaced).state.is_gone());
    let g = account.group("web");
    assert_eq!((g.desired_capacity, g.max_size), (2, max));
    assert!(!g.tags.contains_key(tags::MAX_SIZE));
    if max == 2 {
        let restored = outcomes(&next, ActionKind::RestoreMaxSize);
        assert!(restored.len() == 1 && is_done(restored[0]), "{next:#?}");
    }
    account.wait();
    account.converge(&settings).await;
    assert_eq!(market_count(&account.members("web"), Market::Spot), 2);
}

/// The swaps a pass planned: the clone, the instance it replaces, and whether it was paired
/// before this pass (no tags to write).
fn swaps(report: &PassReport) -> Vec<(&str, &str, bool)> {
    actions(report)
        .into_iter()
        .filter_map(|(_, a)| match a {
            Action::Swap {
                clone,
                replaces,
                pair,
                ..
            } => Some((clone.as_str(), replaces.as_str(), pair.is_empty())),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_pass_that_dies_between_pairing_and_attach_is_finished_for_the_same_instance() {
    let mut account = Account::new();
    account.add_group("web", 4, 10, &[]);
    let settings = Settings::default();
    let first = account.pass(&settings).await;
    let (_, clone) = the_one_clone(&first);
    let clone = &clone;
    assert_eq!(
        account
            .instance(clone)
            .tags
            .get(tags::REPLACES)
            .map(String::as_str),
        Some(""),
        "launched unpaired"
    );
    account.wait();
    account.cloud.fail_next(
        "AttachInstances",
        error("AttachInstances", ErrorKind::Other, "ServiceUnavailable"),
        1,
    );

    let crashed = account.pass(&settings).await;

    let [swap] = outcomes(&crashed, ActionKind::Swap)[..] else {
        panic!("one swap expected: {crashed:#?}");
    };
    assert!(swap.failed());
    // Paired, not attached.
    let paired = account.instance(clone);
    let target = paired.tags[tags::REPLACES].clone();
    assert!(!target.is_empty());
    assert!(account.group("web").member(clone).is_none());

    account.wait();
    let next = account.pass(&settings).await;

    // The next pass swaps it in for the same instance, with no pairing to redo.
    let swaps = swaps(&next);
    assert!(
        swaps.contains(&(clone.as_str(), target.as_str(), true)),
        "{swaps:?}"
    );
    assert!(account.group("web").member(clone).is_some());
    assert!(account.instance(&target).state.is_gone());
    // No instance ever has two clones paired with it.
    let mut targets = BTreeSet::new();
    for c in account.live_clones() {
        let r = c.tags[tags::REPLACES].clone();
        assert!(
            r.is_empty() || targets.insert(r.clone()),
            "two clones for {r}"
        );
    }
    account.wait();
    account.converge(&settings).await;
    assert_eq!(market_count(&account.members("web"), Market::Spot), 4);
}

#[tokio::test(start_paused = true)]
async fn a_pass_that_dies_mid_swap_is_completed_by_the_next_pass() {
    crash_mid_swap(10).await;
}

#[tokio::test(start_paused = true)]
async fn a_pass_that_dies_mid_swap_at_max_size_is_completed_and_max_size_restored() {
    crash_mid_swap(2).await;
}

#[tokio::test(start_paused = true)]
async fn a_clone_whose_instance_was_terminated_out_of_band_replaces_another_of_its_az() {
    let mut account = Account::new();
    account.add_group("web", 4, 10, &[]);
    let settings = Settings::default();
    let first = account.pass(&settings).await;
    let (launch, clone) = the_one_clone(&first);
    let clone = &clone;
    let launched_for = launch.instance.clone().unwrap();
    // Someone terminates the on-demand instance; the group replaces it.
    account.cloud.interrupt(REGION, &launched_for);
    account.wait();

    let report = account.pass(&settings).await;

    // The clone was launched unpaired: it pairs with an on-demand instance of its AZ that is
    // still there (the group's replacement, or another), so nothing is wasted.
    assert_eq!(report.exit_code(), 0);
    assert!(outcomes(&report, ActionKind::TerminateOrphan).is_empty());
    let swaps = swaps(&report);
    let [(swapped, replaced, false)] = swaps[..] else {
        panic!("one pairing swap expected: {swaps:?}");
    };
    assert_eq!(swapped, clone);
    assert_ne!(replaced, launched_for);
    let paired = account.instance(clone);
    assert_eq!(
        paired.tags.get(tags::REPLACES).map(String::as_str),
        Some(replaced)
    );
    assert_eq!(
        paired.availability_zone,
        account.instance(replaced).availability_zone
    );
    assert!(account.group("web").member(clone).is_some());
    account.wait();
    account.converge(&settings).await;
    assert_eq!(market_count(&account.members("web"), Market::Spot), 4);
}

#[tokio::test(start_paused = true)]
async fn a_clone_that_never_boots_is_terminated_after_grace_plus_orphan_timeout() {
    let mut account = Account::new();
    let ids = account.add_group("web", 4, 10, &[]);
    // Launches from now on stay pending for three hours. (The boot delay applies to every
    // pending instance, so the members are stored as running first.)
    for id in &ids {
        let mut i = account.instance(id);
        i.state = spotswap::model::InstanceState::Running;
        account.cloud.put_instance(REGION, i);
    }
    account.cloud.set_boot_delay(Duration::from_secs(3 * 3600));
    let settings = Settings::default();
    let first = account.pass(&settings).await;
    let [launch] = outcomes(&first, ActionKind::LaunchClone)[..] else {
        panic!("one launch expected: {first:#?}");
    };
    let Status::Done {
        instance_id: Some(clone),
        ..
    } = launch.status.clone()
    else {
        panic!("{launch:?}");
    };
    let launched_at = account.cloud.now();
    // The invariants after every pass check that no pass leaves it past the bound.
    let mut terminated_at = None;
    for _ in 0..20 {
        account.wait();
        let report = account.pass(&settings).await;
        if outcomes(&report, ActionKind::TerminateOrphan)
            .iter()
            .any(|o| o.instance.as_deref() == Some(clone.as_str()) && is_done(o))
        {
            terminated_at = Some(account.cloud.now());
            break;
        }
        assert!(
            outcomes(&report, ActionKind::LaunchClone).is_empty(),
            "one clone at a time: {report:#?}"
        );
    }
    let terminated_at = terminated_at.expect("the stuck clone was never terminated");
    let waited = terminated_at - launched_at;
    assert!(
        waited > TimeDelta::minutes(65) && waited <= TimeDelta::minutes(70),
        "terminated after {waited}"
    );
    assert!(account.instance(&clone).state.is_gone());
}

#[tokio::test(start_paused = true)]
async fn throttled_spot_price_reads_fail_the_region_without_panicking_and_the_next_pass_works() {
    let mut account = Account::new();
    account.add_group("web", 4, 10, &[]);
    account.cloud.fail_next(
        "DescribeSpotPriceHistory",
        CloudError::new(
            "DescribeSpotPriceHistory",
            ErrorKind::Throttled,
            Some("RequestLimitExceeded"),
            "Request limit exceeded.",
        ),
        1,
    );
    let before = account.cloud.total_call_counts();

    let report = account.pass(&Settings::default()).await;

    assert_eq!(report.exit_code(), 1);
    assert_eq!(report.totals.failures, 1);
    let r = region(&report);
    let e = r.error.as_ref().expect("the region reports the error");
    assert_eq!(
        (e.kind, e.code.as_deref()),
        (ErrorKind::Throttled, Some("RequestLimitExceeded"))
    );
    assert!(r.plan.is_none() && r.outcomes.is_empty());
    let made = delta(&before, &account.cloud.total_call_counts());
    assert!(writes(&made).is_empty(), "{made:?}");

    account.wait();
    let next = account.pass(&Settings::default()).await;
    assert_eq!(next.exit_code(), 0, "{next:#?}");
    assert_eq!(next.totals.clones_launched, 1);
}

#[tokio::test(start_paused = true)]
async fn a_pass_past_its_deadline_starts_no_launch_or_swap_but_still_cleans_up_orphans() {
    let mut account = Account::new();
    account.add_group("web", 8, 10, &[]);
    let settings = Settings::default();
    let first = account.pass(&settings).await;
    let launches = outcomes(&first, ActionKind::LaunchClone);
    assert_eq!(launches.len(), 2);
    put_stray_clone(&account);
    account.wait();
    let state = account.state();
    let before = account.cloud.total_call_counts();

    let opts = PassOptions {
        dry_run: false,
        now: chrono::Utc::now(),
        deadline: Some(tokio::time::Instant::now()),
        cache: None,
        preflight: None,
        stop: None,
    };
    let report = account.pass_with(&settings, &opts).await;

    let deferred: Vec<&Outcome> = region(&report)
        .outcomes
        .iter()
        .filter(|o| o.action == ActionKind::LaunchClone || o.action == ActionKind::Swap)
        .collect();
    assert!(
        deferred.iter().any(|o| o.action == ActionKind::Swap)
            && deferred.iter().any(|o| o.action == ActionKind::LaunchClone),
        "{report:#?}"
    );
    assert!(
        deferred.iter().all(|o| o.status == Status::Deferred),
        "{deferred:#?}"
    );
    assert_eq!(report.totals.deferred as usize, deferred.len());
    assert_eq!((report.totals.clones_launched, report.totals.swaps), (0, 0));
    let [orphan] = outcomes(&report, ActionKind::TerminateOrphan)[..] else {
        panic!("one orphan expected: {report:#?}");
    };
    assert!(is_done(orphan));
    assert_eq!(report.exit_code(), 0);
    let made = delta(&before, &account.cloud.total_call_counts());
    assert_eq!(
        writes(&made),
        BTreeMap::from([("TerminateInstances".to_string(), 1)]),
        "only the orphan's termination (a group of a pass past its deadline is not leased)"
    );
    // Nothing else changed: the orphan is the only instance whose state moved.
    let (groups, instances) = account.state();
    assert_eq!(groups, state.0);
    let changed: Vec<&str> = instances
        .iter()
        .zip(&state.1)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.instance_id.as_str())
        .collect();
    assert_eq!(changed, [orphan.instance.as_deref().unwrap()]);
}

// ---------------------------------------------------------------------------------------------
// Calls
// ---------------------------------------------------------------------------------------------

/// The calls of one first pass over a fresh account with one group of `n` instances, the
/// fleet requests its plan makes (one `CreateFleet` each), and the clones launched.
async fn first_pass_calls(
    n: u32,
    full_pools: &[(&str, &str)],
) -> (BTreeMap<String, u64>, u64, u32) {
    let mut account = Account::new();
    account.add_group("web", n, 50, &[]);
    for (t, az) in full_pools {
        account.cloud.set_capacity(REGION, t, az, false);
    }
    let before = account.cloud.total_call_counts();
    let report = account.pass(&Settings::default()).await;
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    let calls = delta(&before, &account.cloud.total_call_counts());
    let fleets: BTreeSet<String> = actions(&report)
        .into_iter()
        .filter_map(|(_, a)| match a {
            Action::LaunchClone { fleet, .. } => Some(fleet.as_ref().expect("a fleet").key.clone()),
            _ => None,
        })
        .collect();
    (calls, fleets.len() as u64, report.totals.clones_launched)
}

#[tokio::test(start_paused = true)]
async fn a_pass_makes_no_per_instance_calls() {
    let (small, small_fleets, small_launched) = first_pass_calls(10, &[]).await;
    let full = [("m5a.large", AZS[0]), ("m6a.large", AZS[1])];
    let (large, large_fleets, large_launched) = first_pass_calls(40, &full).await;

    assert!(count(&small, "DescribeInstances") <= 3, "{small:?}");
    assert_eq!(
        count(&small, "DescribeInstances"),
        count(&large, "DescribeInstances"),
        "10 instances: {small:?}\n40 instances: {large:?}"
    );
    // Every read is the same, whatever the group's size.
    let reads = |calls: &BTreeMap<String, u64>| -> BTreeMap<String, u64> {
        calls
            .iter()
            .filter(|(op, _)| !WRITES.contains(&op.as_str()))
            .map(|(op, n)| (op.clone(), *n))
            .collect()
    };
    // Every read is the same, but for the pool memory: recording the full pools reads the
    // group's `spotswap:interrupted` fresh before the write and back after it, two calls for
    // the group whatever its size (`src/pool_memory.rs`).
    let mut large_reads = reads(&large);
    *large_reads
        .get_mut("DescribeTags")
        .expect("the pool memory's reads") -= 2;
    assert_eq!(reads(&small), large_reads);
    // Beyond the catalog listings (pages of the region's types), every read is a call or two.
    let catalog = ["DescribeInstanceTypes", "DescribeInstanceTypeOfferings"];
    assert!(
        large_reads
            .iter()
            .all(|(op, n)| catalog.contains(&op.as_str()) || *n <= 2),
        "{large:?}"
    );
    // Launches: one CreateFleet per AZ and pool set, however many clones; never a
    // RunInstances. 10 clones over 3 AZs take 3 pool sets in each.
    assert_eq!(small_launched, 2);
    assert_eq!(count(&small, "CreateFleet"), small_fleets);
    assert_eq!(small_fleets, 2);
    assert_eq!(large_launched, 10);
    assert_eq!(large_fleets, 9, "{large:?}");
    // A pool set whose pools are full gets one more fleet over the batch's other pools.
    let large_calls = count(&large, "CreateFleet");
    assert!(
        (large_fleets + 1..=2 * large_fleets).contains(&large_calls),
        "{large:?}"
    );
    assert_eq!(count(&large, "RunInstances"), 0);
    // The launch configuration's template is made once.
    assert_eq!(count(&large, "CreateLaunchTemplate"), 1, "{large:?}");
    // The full pools are remembered with one tag write for the group, not one per launch;
    // the other two are the group's lease, taken and given back.
    assert_eq!(count(&large, "CreateOrUpdateTags"), 1 + 2, "{large:?}");
    assert_eq!(count(&small, "CreateOrUpdateTags"), 2, "{small:?}");
    for op in WRITES
        .iter()
        .filter(|op| !["CreateFleet", "CreateLaunchTemplate", "CreateOrUpdateTags"].contains(op))
    {
        assert_eq!(count(&large, op), 0, "{op}");
    }
}

// ---------------------------------------------------------------------------------------------
// Interruptions
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn an_interrupted_spot_instance_is_replaced_on_demand_by_the_group_and_converted_again() {
    let mut account = Account::new();
    account.add_group("web", 4, 10, &[]);
    let settings = Settings::default();
    account.converge(&settings).await;
    let spot = account.members("web")[0].clone();
    assert_eq!(spot.market, Market::Spot);

    account.cloud.interrupt(REGION, &spot.instance_id);

    let members = account.members("web");
    assert_eq!(members.len(), 4);
    assert!(members.iter().all(|m| m.instance_id != spot.instance_id));
    let on_demand: Vec<&Instance> = members
        .iter()
        .filter(|m| m.market == Market::OnDemand)
        .collect();
    let [replacement] = on_demand[..] else {
        panic!("one on-demand replacement expected: {members:#?}");
    };
    assert_eq!(replacement.availability_zone, spot.availability_zone);
    let replacement = replacement.instance_id.clone();
    assert_eq!(account.group("web").desired_capacity, 4);

    account.wait();
    account.converge(&settings).await;

    let members = account.members("web");
    assert_eq!(market_count(&members, Market::Spot), 4);
    assert!(
        members
            .iter()
            .any(|m| m.tags.get(tags::REPLACES) == Some(&replacement)),
        "the replacement was converted"
    );
    assert!(account.instance(&replacement).state.is_gone());
}

#[tokio::test(start_paused = true)]
async fn a_clone_lost_before_its_swap_is_relaunched_by_a_later_pass() {
    let mut account = Account::new();
    let ids = account.add_group("web", 1, 10, &[]);
    let settings = Settings::default();
    let first = account.pass(&settings).await;
    let [launch] = outcomes(&first, ActionKind::LaunchClone)[..] else {
        panic!("one launch expected: {first:#?}");
    };
    let Status::Done {
        instance_id: Some(lost),
        ..
    } = launch.status.clone()
    else {
        panic!("{launch:?}");
    };
    // Spot reclaims the clone before it is swapped in (the interruption warning was missed).
    account.cloud.interrupt(REGION, &lost);
    account.wait();

    // A clone that died before its swap makes the group back off for the first cool-down,
    // naming the clone and EC2's reason.
    let report = account.pass(&settings).await;
    assert_eq!(
        backing_off(&report),
        Some(Skip::BackingOff {
            failures: 1,
            until: account.cloud.now() + TimeDelta::minutes(10),
            clone: lost.clone(),
            state_reason: "Server.SpotInstanceTermination".into(),
        }),
        "{report:#?}"
    );
    assert!(outcomes(&report, ActionKind::LaunchClone).is_empty());
    account.cloud.advance(Duration::from_secs(600));

    let report = account.pass(&settings).await;

    assert_eq!(report.exit_code(), 0);
    let [relaunch] = outcomes(&report, ActionKind::LaunchClone)[..] else {
        panic!("a new launch for {} expected: {report:#?}", ids[0]);
    };
    let Status::Done {
        instance_id: Some(new),
        ..
    } = &relaunch.status
    else {
        panic!("{relaunch:?}");
    };
    assert_ne!(new, &lost, "the launch returned the lost clone");
    assert_eq!(
        account.live_clones().len(),
        1,
        "a reported launch leaves a clone running"
    );
}

// ---------------------------------------------------------------------------------------------
// More faults
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_swap_at_max_size_that_fails_at_any_step_is_finished_by_later_passes() {
    // The swap's calls at MaxSize, in order: record MaxSize, raise it, attach, remove the
    // on-demand instance, restore MaxSize (UpdateAutoScalingGroup again), drop the record.
    let steps = [
        "CreateOrUpdateTags",
        "UpdateAutoScalingGroup",
        "AttachInstances",
        "TerminateInstanceInAutoScalingGroup",
        "DeleteTags",
    ];
    for op in steps {
        let mut account = Account::new();
        account.add_group("web", 2, 2, &[]);
        let settings = Settings::default();
        let first = account.pass(&settings).await;
        assert_eq!(first.totals.clones_launched, 1, "{op}");
        account.wait();
        // The pass's first tag write is the group's lease (`spotswap:lease`): the swap's own
        // comes after it.
        if op == "CreateOrUpdateTags" {
            account.cloud.pass_next(op, 1);
        }
        account
            .cloud
            .fail_next(op, error(op, ErrorKind::Other, "InternalFailure"), 1);

        let report = account.pass(&settings).await;

        assert_eq!(report.exit_code(), 1, "{op}: {report:#?}");
        let swaps = outcomes(&report, ActionKind::Swap);
        assert!(swaps.len() == 1 && swaps[0].failed(), "{op}: {swaps:#?}");
        account.wait();
        account.converge(&settings).await;
        let g = account.group("web");
        assert_eq!((g.desired_capacity, g.max_size), (2, 2), "{op}");
        assert!(!g.tags.contains_key(tags::MAX_SIZE), "{op}");
        assert_eq!(market_count(&account.members("web"), Market::Spot), 2);
        assert_eq!(account.live_clones().len(), 2, "{op}: no clone left over");
    }
}

#[tokio::test(start_paused = true)]
async fn two_passes_at_once_never_double_a_clone_or_dip_capacity() {
    let mut account = Account::new();
    account.add_group("web", 6, 6, &[]);
    // Every call takes a millisecond, so the two passes interleave at every call.
    account.cloud.set_latency(Duration::from_millis(1));
    let settings = Settings::default();
    let opts = PassOptions {
        dry_run: false,
        now: chrono::Utc::now(),
        deadline: None,
        cache: None,
        preflight: None,
        stop: None,
    };
    let mut converged = false;
    for _ in 0..MAX_PASSES + 4 {
        let (a, b) = tokio::join!(account.run(&settings, &opts), account.run(&settings, &opts));
        account.check_invariants(&settings, &a);
        account.check_invariants(&settings, &b);
        // The group's lease lets one of them change it; the other's actions are superseded.
        let changed = |r: &PassReport| {
            region(r)
                .outcomes
                .iter()
                .any(|o| !matches!(o.status, Status::Superseded { .. }))
        };
        assert!(
            !(changed(&a) && changed(&b)),
            "both changed the group: {a:#?} {b:#?}"
        );
        let mut targets = BTreeSet::new();
        for c in account.live_clones() {
            assert!(
                targets.insert(c.clone_of().unwrap().1.to_string()),
                "two live clones of one instance: {:#?}",
                account.live_clones()
            );
        }
        if actions(&a).is_empty()
            && actions(&b).is_empty()
            && account.unattached_clones().is_empty()
        {
            converged = true;
            break;
        }
        account.wait();
    }
    assert!(converged, "no convergence");
    let g = account.group("web");
    assert_eq!((g.desired_capacity, g.max_size), (6, 6));
    assert_eq!(market_count(&account.members("web"), Market::Spot), 6);
}

/// `lease-seconds`: a pass killed while it holds a group's lease leaves the group to no one
/// until the lease ends; other passes meanwhile leave the group alone and say why; then one
/// takes the group over and finishes what the dead pass started.
#[tokio::test(start_paused = true)]
async fn a_pass_that_dies_holding_a_lease_delays_its_group_until_lease_seconds_have_passed() {
    let mut account = Account::new();
    account.add_group("web", 4, 8, &[]);
    account.cloud.set_latency(Duration::from_millis(20));
    let settings = Settings::from_pairs([("lease-seconds", "120")]).unwrap();
    let opts = PassOptions::new(&settings, account.cloud.now());
    let fleets = |a: &Account| count(&a.cloud.total_call_counts(), "CreateFleet");
    // Killed as soon as it has launched, as a Lambda stopped by its runtime.
    tokio::select! {
        _ = account.run(&settings, &opts) => panic!("the pass ended before it was killed"),
        _ = async {
            while fleets(&account) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        } => {}
    }
    let lease = tags::lease(&account.group("web").tags).unwrap().unwrap();
    let until = lease.until.expect("the dead pass's lease is held");
    // `lease-seconds` to change the group, and the operation timeout's 60 s more.
    assert!(
        until > account.cloud.now() + TimeDelta::seconds(170),
        "{until}"
    );

    // Within the lease: the group is left alone, with the lease's holder and end.
    account.cloud.advance(Duration::from_secs(60));
    let within = account.run(&settings, &opts).await;
    let skips: Vec<&Skip> = region(&within)
        .plan
        .as_ref()
        .unwrap()
        .decisions
        .iter()
        .filter_map(|d| match &d.verdict {
            Verdict::Skip(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(
        skips,
        [&Skip::Leased {
            holder: lease.holder.clone(),
            until
        }],
        "{within:#?}"
    );
    assert!(actions(&within).is_empty());

    // Once it has ended, the next passes take the group over and converge it.
    account.cloud.advance(Duration::from_secs(121));
    account.converge(&settings).await;
    assert_eq!(market_count(&account.members("web"), Market::Spot), 4);
    assert!(account.unattached_clones().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_pass_report_counts_the_calls_of_that_pass_only() {
    let mut account = Account::new();
    account.add_group("web", 4, 10, &[]);
    let settings = Settings::default();
    account.pass(&settings).await;
    account.wait();
    let before = account.cloud.total_call_counts();

    let report = account.pass(&settings).await;

    let mut made = delta(&before, &account.cloud.total_call_counts());
    // The pass lists the account's regions once; every other call is the region's.
    assert_eq!(made.remove("DescribeRegions"), Some(1));
    assert_eq!(region(&report).calls, made);
    assert_eq!(report.totals.calls, made.values().sum::<u64>());
}

/// Log records of the current thread, captured for reading back in a test. One global
/// subscriber serves the whole test binary and keeps only the records of threads that asked:
/// a thread-local subscriber would not do, because `tracing` caches which callsites are enabled
/// process-wide, and other tests run passes on other threads at the same time.
mod log_capture {
    use std::cell::RefCell;
    use std::sync::{Arc, Mutex, Once};

    use tracing::subscriber::Interest;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::{Layer as _, filter::DynFilterFn, fmt};

    type Buffer = Arc<Mutex<Vec<u8>>>;

    thread_local! {
        static BUFFER: RefCell<Option<Buffer>> = const { RefCell::new(None) };
    }

    fn armed() -> bool {
        BUFFER.with(|b| b.borrow().is_some())
    }

    struct ThreadWriter;

    impl std::io::Write for ThreadWriter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            BUFFER.with(|b| {
                if let Some(b) = &*b.borrow() {
                    b.lock().unwrap().extend_from_slice(buf);
                }
            });
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Starts capturing this thread's records, at debug level and above.
    pub fn start() -> Capture {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let layer = fmt::layer()
                .with_writer(|| ThreadWriter)
                .with_ansi(false)
                .with_filter(
                    DynFilterFn::new(|m, _| armed() && *m.level() <= tracing::Level::DEBUG)
                        // Decided per record, never cached per callsite: which thread is
                        // armed changes from one record to the next.
                        .with_callsite_filter(|_| Interest::sometimes()),
                );
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
                .expect("no other global subscriber in the test binary");
        });
        let buffer = Buffer::default();
        BUFFER.with(|b| *b.borrow_mut() = Some(buffer.clone()));
        Capture(buffer)
    }

    /// What this thread logged since [`start`]; capturing stops when it is dropped.
    pub struct Capture(Buffer);

    impl Capture {
        pub fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    impl Drop for Capture {
        fn drop(&mut self) {
            BUFFER.with(|b| *b.borrow_mut() = None);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_multi_region_pass_logs_one_progress_record_per_region_done() {
    let logs = log_capture::start();
    let cloud = MemoryCloud::new();
    for n in 0..3 {
        let region = format!("xx-test-{n}");
        let az = format!("{region}a");
        seed_region(&cloud, &region, &[&az]);
        cloud.put_group(&region, group("web", 2, 4, &[]));
        cloud.launch_group_members(&region, "web", 2, "m5.large", &[]);
    }
    let opts = PassOptions {
        dry_run: true,
        now: cloud.now(),
        deadline: None,
        cache: None,
        preflight: None,
        stop: None,
    };
    let report = pass::run(&cloud, &Settings::default(), &opts)
        .await
        .unwrap();
    assert_eq!(report.totals.regions, 3);
    let text = logs.text();
    let progress: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(pass::PROGRESS_TARGET))
        .collect();
    assert_eq!(progress.len(), 3, "{text}");
    for (n, line) in progress.iter().enumerate() {
        assert!(line.contains(&format!("{}/3 regions", n + 1)), "{line}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_pass_logs_each_outcome_failure_and_skip_inside_pass_region_and_group_spans() {
    // The test runtime is single-threaded: the whole pass runs on this thread.
    let logs = log_capture::start();
    let mut account = Account::new();
    account.add_group("web", 4, 10, &[]);
    account.cloud.fail_next(
        "CreateFleet",
        error(
            "CreateFleet",
            ErrorKind::NotFound,
            "InvalidSubnetID.NotFound",
        ),
        100,
    );

    let report = account
        .run(
            &Settings::default(),
            &PassOptions {
                dry_run: false,
                now: chrono::Utc::now(),
                deadline: None,
                cache: None,
                preflight: None,
                stop: None,
            },
        )
        .await;

    assert_eq!(report.totals.failures, 1, "{report:#?}");
    let text = logs.text();
    let lines: Vec<&str> = text.lines().collect();
    let find = |words: &[&str]| {
        lines
            .iter()
            .copied()
            .filter(|l| words.iter().all(|w| l.contains(w)))
            .collect::<Vec<&str>>()
    };
    // The failure: warn, with the operation, the AWS error code, and where it happened.
    let failed = find(&["WARN", "launch-clone failed"]);
    let [failed] = failed[..] else {
        panic!("one failure record: {text}");
    };
    for part in [
        "pass{",
        "region{region=us-east-1}",
        "group{group=web}",
        "operation=CreateFleet",
        "code=\"InvalidSubnetID.NotFound\"",
        "result=\"failed\"",
    ] {
        assert!(failed.contains(part), "{part} in {failed}");
    }
    // The instances the batch leaves for later: one debug record each, with the reason word.
    assert_eq!(
        find(&[
            "DEBUG",
            "group{group=web}",
            "skip",
            "reason=\"batch-limit\""
        ])
        .len(),
        3,
        "{text}"
    );
    // The summaries, at info.
    assert_eq!(
        find(&["INFO", "pass done", "failures=1"]).len(),
        1,
        "{text}"
    );
    assert_eq!(
        find(&["INFO", "region{region=us-east-1}", "planned"]).len(),
        1,
        "{text}"
    );
    // User data never reaches a log record.
    assert!(!text.contains(USER_DATA), "{text}");
}

#[tokio::test(start_paused = true)]
async fn savings_count_the_passes_own_swaps_against_the_type_the_group_runs_on_demand() {
    let mut account = Account::new();
    account.add_group("web", 4, 10, &[]);
    let settings = Settings::from_pairs([("replacements-per-pass", "100%")]).unwrap();
    let first = account.pass(&settings).await;
    assert_eq!(first.totals.clones_launched, 4, "{first:#?}");
    let before = &region(&first).savings.as_ref().unwrap().groups[0];
    assert_eq!((before.spot, before.on_demand), (0, 4));
    assert_eq!(before.hourly_saving, 0.0);
    account.wait();

    let second = account.pass(&settings).await;

    assert_eq!(second.totals.swaps, 4, "{second:#?}");
    let after = &region(&second).savings.as_ref().unwrap().groups[0];
    // The swaps this pass made are in its own figure, not the next pass's.
    assert_eq!((after.instances, after.spot, after.on_demand), (4, 4, 0));
    // Every clone saves against the m5.large it replaced, whichever type it runs.
    assert!(
        (after.hourly_all_on_demand - 4.0 * 0.096).abs() < 1e-9,
        "{after:#?}"
    );
    let spot: f64 = account
        .members("web")
        .iter()
        .map(|i| SPOT.iter().find(|(t, _)| *t == i.instance_type).unwrap().1)
        .sum();
    assert!((after.hourly_now - spot).abs() < 1e-9, "{after:#?}");
    assert!((after.hourly_saving - (4.0 * 0.096 - spot)).abs() < 1e-9);
    assert_eq!(second.totals.hourly_savings_now, after.hourly_saving);
}

#[tokio::test(start_paused = true)]
async fn an_instance_with_fifty_tags_still_gets_a_clone_within_ec2s_tag_limit() {
    let mut account = Account::new();
    let ids = account.add_group("web", 1, 4, &[]);
    let mut original = account.instance(&ids[0]);
    for n in 0..60 {
        original
            .tags
            .insert(format!("cost-centre-{n:02}"), "x".into());
    }
    original.tags.insert("Name".into(), "web-1".into());
    account.cloud.put_instance(REGION, original);

    let report = account.pass(&Settings::default()).await;

    let [launch] = outcomes(&report, ActionKind::LaunchClone)[..] else {
        panic!("one launch: {report:#?}");
    };
    assert!(is_done(launch), "{launch:?}");
    // The clone is paired when it is swapped in: the pairing writes the instance's tags.
    account.wait();
    let report = account.pass(&Settings::default()).await;
    let plan = region(&report).plan.as_ref().unwrap();
    let Some(Action::Swap { tags_left_out, .. }) = plan
        .actions()
        .map(|(_, a)| a)
        .find(|a| matches!(a, Action::Swap { .. }))
    else {
        panic!("a planned swap: {report:#?}");
    };
    assert!(
        !tags_left_out.is_empty(),
        "the plan names what was left out"
    );
    assert_eq!(report.totals.swaps, 1, "{report:#?}");
    let clone = &account.members("web")[0];
    let user_tags = clone.tags.keys().filter(|k| !k.starts_with("aws:")).count();
    assert_eq!(user_tags, 50, "{:?}", clone.tags);
    assert_eq!(clone.tags.get(tags::REPLACES), Some(&ids[0]));
    assert_eq!(clone.tags.get("Name").map(String::as_str), Some("web-1"));
    assert!(tags_left_out.iter().all(|k| !clone.tags.contains_key(k)));
}

#[tokio::test(start_paused = true)]
async fn a_failed_read_about_one_group_leaves_that_group_alone_and_the_others_go_on() {
    let mut account = Account::new();
    account.add_group("api", 2, 4, &[]);
    account.add_group("web", 2, 4, &[]);
    // Groups are read in name order: the first refresh read (api's) is denied.
    account.cloud.fail_next(
        "DescribeInstanceRefreshes",
        CloudError::new(
            "DescribeInstanceRefreshes",
            ErrorKind::Unauthorized,
            Some("AccessDenied"),
            "not authorized (the role needs autoscaling:DescribeInstanceRefreshes)",
        ),
        1,
    );

    let report = account.pass(&Settings::default()).await;

    let r = region(&report);
    assert!(r.error.is_none(), "the region was read: {report:#?}");
    assert_eq!(report.exit_code(), 0, "a skip is not a failure");
    let plan = r.plan.as_ref().unwrap();
    let skipped: Vec<(&str, &Skip)> = plan
        .skips()
        .filter(|(_, s)| matches!(s, Skip::ReadFailed { .. }))
        .map(|(d, s)| (d.group.as_str(), s))
        .collect();
    let [
        (
            "api",
            Skip::ReadFailed {
                operation,
                code,
                message,
            },
        ),
    ] = skipped[..]
    else {
        panic!("api is skipped with the failed read: {plan:#?}");
    };
    assert_eq!(operation, "DescribeInstanceRefreshes");
    assert_eq!(code.as_deref(), Some("AccessDenied"));
    assert!(
        message.contains("autoscaling:DescribeInstanceRefreshes"),
        "{message}"
    );
    let launched: BTreeSet<&str> = outcomes(&report, ActionKind::LaunchClone)
        .iter()
        .map(|o| o.group.as_str())
        .collect();
    assert_eq!(launched, BTreeSet::from(["web"]));
}

/// A full group whose MaxSize restore is pending (it scaled out past the recorded value) can
/// swap nothing in, so a ready clone past grace + `orphan-timeout-minutes` is terminated
/// rather than left waiting, paid for, until the group scales in (found by the chaos harness,
/// seed 891 of `make chaos`).
#[tokio::test(start_paused = true)]
async fn a_ready_clone_of_a_full_group_whose_max_size_restore_is_pending_times_out() {
    let mut account = Account::new();
    account.add_group("web", 5, 5, &[(tags::MAX_SIZE, "4")]);
    let long_ago = account.cloud.now() - TimeDelta::hours(2);
    account.cloud.put_instance(
        REGION,
        InstanceBuilder::spot("i-waiting", "m5a.large", AZS[0])
            .clone_of("web", "")
            .state(InstanceState::Running)
            .launched(long_ago)
            .build(),
    );
    // The seeded MaxSize is the raised one, so the fixture's invariants do not apply.
    let settings = Settings::default();
    let report = account
        .run(&settings, &PassOptions::new(&settings, chrono::Utc::now()))
        .await;
    let orphans = outcomes(&report, ActionKind::TerminateOrphan);
    assert!(
        matches!(orphans[..], [o] if o.instance.as_deref() == Some("i-waiting") && is_done(o)),
        "{report:#?}"
    );
    assert!(
        region(&report)
            .plan
            .as_ref()
            .unwrap()
            .actions()
            .any(|(_, a)| matches!(
                a,
                Action::TerminateOrphan {
                    reason: OrphanReason::Timeout,
                    ..
                }
            )),
        "{report:#?}"
    );
    assert!(account.unattached_clones().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_group_that_scaled_out_to_a_raised_max_size_gets_its_own_back_once_it_scales_in() {
    use spotswap::cloud::{Account as _, Actuator as _};
    let mut account = Account::new();
    // A pass raised MaxSize 4 -> 5 for a swap and died before restoring it; the group then
    // scaled out to the raised MaxSize.
    let ids = account.add_group("web", 5, 5, &[(tags::MAX_SIZE, "4")]);
    let opts = PassOptions {
        dry_run: false,
        now: chrono::Utc::now(),
        deadline: None,
        cache: None,
        preflight: None,
        stop: None,
    };

    let report = account.run(&Settings::default(), &opts).await;

    assert_eq!(report.totals.failures, 0, "{report:#?}");
    assert!(outcomes(&report, ActionKind::RestoreMaxSize).is_empty());
    let g = account.group("web");
    assert_eq!(g.max_size, 5, "desired capacity 5 allows no lower MaxSize");
    assert_eq!(
        g.tags.get(tags::MAX_SIZE).map(String::as_str),
        Some("4"),
        "the user's MaxSize is still recorded"
    );

    // The group scales in; the next pass gives MaxSize back.
    account
        .cloud
        .region(REGION)
        .terminate_in_group(&ids[4], true)
        .await
        .unwrap();
    account.wait();
    let report = account.run(&Settings::default(), &opts).await;

    let [restore] = outcomes(&report, ActionKind::RestoreMaxSize)[..] else {
        panic!("one restore: {report:#?}");
    };
    assert!(is_done(restore), "{restore:?}");
    let g = account.group("web");
    assert_eq!(g.max_size, 4);
    assert!(!g.tags.contains_key(tags::MAX_SIZE), "{:?}", g.tags);
}

// ---------------------------------------------------------------------------------------------
// The on-demand floor, both ways
// ---------------------------------------------------------------------------------------------

/// Runs passes until the group has `keep` on-demand members and nothing is in flight; returns
/// the on-demand launches and the swaps done on the way.
async fn converge_counting(account: &Account, settings: &Settings) -> (usize, u32) {
    let reports = account.converge(settings).await;
    let launched = reports
        .iter()
        .map(|r| {
            outcomes(r, ActionKind::LaunchOnDemand)
                .into_iter()
                .filter(|o| is_done(o))
                .count()
        })
        .sum();
    let swaps = reports.iter().map(|r| r.totals.swaps).sum();
    (launched, swaps)
}

#[tokio::test(start_paused = true)]
async fn a_raised_on_demand_floor_is_restored_by_swapping_spot_members_out_never_below_desired() {
    let mut account = Account::new();
    account.add_group("web", 6, 8, &[]);
    account.converge(&Settings::default()).await;
    assert_eq!(market_count(&account.members("web"), Market::Spot), 6);

    // The operator raises the floor with a tag.
    let mut g = account.group("web");
    g.tags
        .insert("spotswap:min-on-demand-number".into(), "2".into());
    account.cloud.put_group(REGION, g);
    account.wait();

    // Every pass checks the invariants: in service never below the 6 the group started with,
    // desired capacity 6 but for swaps in flight, MaxSize as the user left it.
    let (launched, swaps) = converge_counting(&account, &Settings::default()).await;
    let members = account.members("web");
    assert_eq!(market_count(&members, Market::OnDemand), 2, "{members:#?}");
    assert_eq!(market_count(&members, Market::Spot), 4, "{members:#?}");
    assert_eq!((launched, swaps), (2, 2), "one launch and one swap each");
    let od: Vec<&Instance> = members
        .iter()
        .filter(|i| i.market == Market::OnDemand)
        .collect();
    assert!(
        od.iter().all(|i| i.instance_type == "m5.large"),
        "the group's own type: {od:#?}"
    );
    let g = account.group("web");
    assert_eq!((g.desired_capacity, g.max_size), (6, 8));

    // And it stays there.
    account.wait();
    let report = account.pass(&Settings::default()).await;
    assert!(actions(&report).is_empty(), "{report:#?}");
}

#[tokio::test(start_paused = true)]
async fn on_demand_instances_lost_to_scale_in_are_brought_back_within_the_batch_limit() {
    use spotswap::cloud::{Account as _, Actuator as _};
    let mut account = Account::new();
    account.add_group("web", 8, 10, &[("spotswap:min-on-demand-number", "3")]);
    let settings = Settings::default();
    account.converge(&settings).await;
    let od: Vec<String> = account
        .members("web")
        .into_iter()
        .filter(|i| i.market == Market::OnDemand)
        .map(|i| i.instance_id)
        .collect();
    assert_eq!(od.len(), 3);

    // Scale-in takes the three on-demand instances: desired capacity drops to 5.
    let region = account.cloud.region(REGION);
    for id in &od {
        region.terminate_in_group(id, true).await.unwrap();
    }
    account.cloud.advance(Duration::from_secs(60));
    let base = &mut account.watched[0];
    (base.desired, base.in_service) = (5, 5);
    assert_eq!(account.group("web").desired_capacity, 5);

    // One launch per pass at most: the budget is a quarter of the three missing, at least one.
    account.wait();
    let first = account.pass(&settings).await;
    let restores: Vec<&Action> = actions(&first)
        .into_iter()
        .map(|(_, a)| a)
        .filter(|a| matches!(a, Action::LaunchOnDemand { .. }))
        .collect();
    assert_eq!(restores.len(), 1, "{first:#?}");
    let Action::LaunchOnDemand {
        keep, on_demand, ..
    } = restores[0]
    else {
        unreachable!()
    };
    assert_eq!((*keep, *on_demand), (3, 0));
    let batch_limited = first
        .regions
        .iter()
        .flat_map(|r| r.plan.iter())
        .flat_map(|p| p.skips())
        .filter(|(_, s)| matches!(s, Skip::BatchLimit { .. }))
        .count();
    assert_eq!(batch_limited, 2, "{first:#?}");

    account.wait();
    let (launched, _) = converge_counting(&account, &settings).await;
    let members = account.members("web");
    assert_eq!(market_count(&members, Market::OnDemand), 3, "{members:#?}");
    assert_eq!(market_count(&members, Market::Spot), 2, "{members:#?}");
    assert_eq!(launched, 2, "the two left after the first pass");
    assert_eq!(account.group("web").desired_capacity, 5);
}

// ---------------------------------------------------------------------------------------------
// Clones that die at boot
// ---------------------------------------------------------------------------------------------

/// The group's back-off skip in a report, if any.
fn backing_off(report: &PassReport) -> Option<Skip> {
    region(report)
        .plan
        .iter()
        .flat_map(|p| p.skips())
        .find(|(_, s)| matches!(s, Skip::BackingOff { .. }))
        .map(|(_, s)| s.clone())
}

#[tokio::test(start_paused = true)]
async fn a_group_whose_clones_die_at_boot_backs_off_longer_each_time_and_recovers_once_one_boots() {
    let mut account = Account::new();
    account.add_group("web", 2, 4, &[]);
    let settings = Settings::from_pairs([("replacements-per-pass", "1")]).unwrap();
    // Every clone dies at boot, as with volumes under a KMS key the role cannot use.
    account
        .cloud
        .set_boot_failure(REGION, Some("Client.InternalError"));

    // Two hours of passes every five minutes: without a back-off, 24 clones.
    let mut launched = Vec::new();
    let mut backoffs = Vec::new();
    for _ in 0..24 {
        let report = account.pass(&settings).await;
        assert_eq!(report.exit_code(), 0, "{report:#?}");
        for o in outcomes(&report, ActionKind::LaunchClone) {
            if let Status::Done {
                instance_id: Some(id),
                ..
            } = &o.status
            {
                launched.push(id.clone());
            }
        }
        for (_, a) in actions(&report) {
            if let Action::BackOff { backoff } = a {
                backoffs.push(backoff.clone());
            }
        }
        if let Some(Skip::BackingOff {
            clone,
            state_reason,
            ..
        }) = backing_off(&report)
        {
            assert!(launched.contains(&clone), "{clone} is one of ours");
            assert_eq!(state_reason, "Client.InternalError");
            assert!(
                outcomes(&report, ActionKind::LaunchClone).is_empty(),
                "no launch while backing off: {report:#?}"
            );
        }
        account.wait();
    }
    // A death is seen the pass after the launch, then the cool-down doubles (10, 20, 40,
    // 80 minutes): launches at 0, 15, 40 and 85 minutes, each failure counted once, in a row.
    assert_eq!(launched.len(), 4, "{launched:?}");
    let counts: Vec<u32> = backoffs.iter().map(|b| b.failures).collect();
    assert_eq!(counts, [1, 2, 3, 4], "{backoffs:#?}");
    for b in &backoffs {
        assert_eq!(b.reason, "Client.InternalError");
        assert!(launched.contains(&b.clone));
    }
    let tag = account.group("web").tags[tags::LAUNCH_BACKOFF].clone();
    assert!(tag.starts_with("failures=4 "), "{tag}");
    assert!(tag.contains(launched.last().unwrap()), "{tag}");

    // The cause is fixed: once the cool-down is over, a clone boots, is swapped in, and the
    // back-off ends.
    account.cloud.set_boot_failure(REGION, None);
    let mut ended = false;
    for _ in 0..60 {
        account.wait();
        let report = account.pass(&settings).await;
        ended |= actions(&report)
            .iter()
            .any(|(_, a)| matches!(a, Action::EndBackOff { failures: 4 }));
        if ended && account.unattached_clones().is_empty() {
            break;
        }
    }
    assert!(ended, "the back-off never ended");
    let g = account.group("web");
    assert!(!g.tags.contains_key(tags::LAUNCH_BACKOFF), "{:?}", g.tags);
    let members = account.members("web");
    assert!(market_count(&members, Market::Spot) >= 1, "{members:#?}");
}

// ---------------------------------------------------------------------------------------------
// Convergence
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_group_of_n_converts_in_n_over_the_batch_plus_one_passes() {
    // (instances, replacements-per-pass, passes that act: ceil(N / batch) + 1)
    let cases = [
        (20, "25%", 5),
        (60, "25%", 5),
        (200, "25%", 5),
        (20, "3", 8),
    ];
    for (n, budget, want) in cases {
        let mut account = Account::new();
        account.add_group("web", n, n + 10, &[]);
        let settings = Settings::from_pairs([("replacements-per-pass", budget)]).unwrap();
        let reports = account.converge(&settings).await;
        let acting = reports.iter().filter(|r| !actions(r).is_empty()).count();
        assert_eq!(acting, want, "{n} instances at {budget}");
        let members = account.members("web");
        assert_eq!(
            market_count(&members, Market::Spot),
            n as usize,
            "{n} at {budget}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Memory of failures
// ---------------------------------------------------------------------------------------------

/// The launches of a report, as (instance, AZ, candidate types).
fn launch_candidates(report: &PassReport) -> Vec<(String, String, Vec<String>)> {
    actions(report)
        .into_iter()
        .filter_map(|(d, a)| match a {
            Action::LaunchClone {
                availability_zone,
                candidates,
                ..
            } => Some((
                d.instance.clone().unwrap_or_default(),
                availability_zone.clone(),
                candidates.iter().map(|c| c.instance_type.clone()).collect(),
            )),
            _ => None,
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_pool_without_capacity_is_remembered_and_avoided_until_the_cool_down_is_over() {
    let mut account = Account::new();
    // Four instances, two of them in the first AZ.
    let ids = account.add_group("web", 4, 10, &[]);
    let az = account.instance(&ids[0]).availability_zone;
    assert_eq!(account.instance(&ids[3]).availability_zone, az);
    let settings = Settings::from_pairs([("replacements-per-pass", "1")]).unwrap();
    // The cheapest pool has no capacity in the first instance's AZ.
    account.cloud.set_capacity(REGION, "m5a.large", &az, false);

    let first = account.pass(&settings).await;
    let launched = launch_candidates(&first);
    assert_eq!(launched[0].1, az, "{first:#?}");
    assert_eq!(launched[0].2[0], "m5a.large", "the cheapest is tried first");
    let [launch] = outcomes(&first, ActionKind::LaunchClone)[..] else {
        panic!("one launch: {first:#?}");
    };
    assert!(is_done(launch), "{launch:?}");
    assert_eq!(
        launch.no_capacity,
        ["m5a.large"],
        "the report names the full pool"
    );
    let tag = account.group("web").tags[tags::INTERRUPTED].clone();
    assert!(
        tag.starts_with(&format!("m5a.large@{az}@")) && tag.ends_with("@no-capacity"),
        "{tag}"
    );

    // The pool has capacity again, but the next passes do not try it in that AZ until the
    // cool-down (60 minutes by default) is over; other AZs still use it.
    account.cloud.set_capacity(REGION, "m5a.large", &az, true);
    let mut seen_in_az = 0;
    for _ in 0..6 {
        account.wait();
        let report = account.pass(&settings).await;
        for (_, launch_az, candidates) in launch_candidates(&report) {
            if launch_az == az {
                seen_in_az += 1;
                assert!(
                    !candidates.contains(&"m5a.large".to_string()),
                    "{candidates:?}"
                );
            }
        }
        // The plan says which pool it left out, and why.
        for (_, a) in actions(&report) {
            if let Action::LaunchClone {
                availability_zone,
                avoided,
                ..
            } = a
                && *availability_zone == az
            {
                let words: Vec<(&str, &str)> = avoided
                    .iter()
                    .map(|p| (p.instance_type.as_str(), p.reason.as_str()))
                    .collect();
                assert_eq!(words, [("m5a.large", "recently-no-capacity")]);
            }
        }
        let skipped: Vec<_> = region(&report)
            .plan
            .iter()
            .flat_map(|p| p.skips())
            .filter_map(|(_, s)| match s {
                Skip::NoCheaperType { rejected } => Some(rejected.clone()),
                _ => None,
            })
            .collect();
        assert!(skipped.is_empty(), "{skipped:?}");
    }
    assert!(seen_in_az > 0, "no launch in {az} to judge");
}

#[tokio::test(start_paused = true)]
async fn a_spent_spot_quota_holds_the_passs_other_launches_with_one_reason() {
    let mut account = Account::new();
    account.add_group("web", 6, 10, &[]);
    let settings = Settings::from_pairs([("replacements-per-pass", "100%")]).unwrap();
    account.cloud.fail_next(
        "CreateFleet",
        error(
            "CreateFleet",
            ErrorKind::LimitExceeded,
            "MaxSpotInstanceCountExceeded",
        ),
        1,
    );
    let before = account.cloud.total_call_counts();
    let report = account.pass(&settings).await;
    let calls = delta(&before, &account.cloud.total_call_counts());
    assert_eq!(count(&calls, "CreateFleet"), 1, "{calls:?}");
    let launches = outcomes(&report, ActionKind::LaunchClone);
    assert_eq!(launches.len(), 6);
    let failed = launches.iter().filter(|o| o.failed()).count();
    let held: Vec<&str> = launches
        .iter()
        .filter_map(|o| match &o.status {
            Status::Held { reason } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!((failed, held.len()), (1, 5), "{launches:#?}");
    for r in held {
        assert!(
            r.contains("spot quota") && r.contains("MaxSpotInstanceCountExceeded"),
            "{r}"
        );
    }
    assert_eq!(report.totals.deferred, 5);
    // Nothing is remembered against a pool: the quota is not the pool's fault.
    assert!(!account.group("web").tags.contains_key(tags::INTERRUPTED));
}

#[tokio::test(start_paused = true)]
async fn a_subnet_out_of_addresses_holds_only_the_launches_into_it() {
    let mut account = Account::new();
    account.add_group("web", 6, 10, &[]);
    let settings = Settings::from_pairs([("replacements-per-pass", "100%")]).unwrap();
    account.cloud.fail_next(
        "CreateFleet",
        error(
            "CreateFleet",
            ErrorKind::SubnetFull,
            "InsufficientFreeAddressesInSubnet",
        ),
        1,
    );
    let report = account.pass(&settings).await;
    let launches = outcomes(&report, ActionKind::LaunchClone);
    let failed: Vec<&&Outcome> = launches.iter().filter(|o| o.failed()).collect();
    assert_eq!(failed.len(), 1, "{launches:#?}");
    let held: Vec<&str> = launches
        .iter()
        .filter_map(|o| match &o.status {
            Status::Held { reason } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    // Two instances per AZ: the other one in the full subnet's AZ is held, the rest launch.
    assert_eq!(held.len(), 1, "{launches:#?}");
    assert!(
        held[0].contains("InsufficientFreeAddressesInSubnet"),
        "{}",
        held[0]
    );
    assert_eq!(launches.iter().filter(|o| is_done(o)).count(), 4);
}

// ---------------------------------------------------------------------------------------------
// Pacing
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn launches_are_paced_under_ec2s_request_bucket_and_none_is_throttled() {
    let mut account = Account::new();
    account.add_group("web", 40, 50, &[]);
    // Clones that launch one RunInstances each (a fleet launches a batch in one call).
    account.launch_per_clone();
    // EC2's RunInstances bucket: 5 calls at once, then 2 a second.
    account
        .cloud
        .set_request_bucket(REGION, "RunInstances", 5.0, 2.0);
    let settings = Settings::from_pairs([("replacements-per-pass", "100%")]).unwrap();
    let started = tokio::time::Instant::now();
    let report = account.pass(&settings).await;
    let took = started.elapsed();
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    assert_eq!(report.totals.clones_launched, 40);
    assert!(account.cloud.throttled(REGION).is_empty());
    // 35 calls past the bucket's five, at two a second: at least 17.5 s.
    assert!(took >= Duration::from_millis(17_400), "{took:?}");
    assert!(took < Duration::from_secs(25), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn every_region_runs_at_once_so_a_busy_region_does_not_hold_up_the_others() {
    // Twelve regions of ten launches each, each under EC2's RunInstances bucket (5, then 2 a
    // second): alone, a region takes 2.5 s; four at a time, twelve would take 7.5 s.
    let cloud = MemoryCloud::new();
    for n in 0..12 {
        let region = format!("xx-test-{n}");
        let azs = [format!("{region}a"), format!("{region}b")];
        seed_region(&cloud, &region, &[&azs[0], &azs[1]]);
        cloud.set_request_bucket(&region, "RunInstances", 5.0, 2.0);
        cloud.put_group(&region, group("web", 10, 20, &[]));
        cloud.launch_group_members(&region, "web", 10, "m5.large", &[]);
    }
    let settings = Settings::from_pairs([("replacements-per-pass", "100%")]).unwrap();
    let opts = PassOptions {
        dry_run: false,
        now: cloud.now(),
        deadline: None,
        cache: None,
        preflight: None,
        stop: None,
    };
    let started = tokio::time::Instant::now();
    let report = pass::run(&cloud, &settings, &opts).await.unwrap();
    let took = started.elapsed();
    assert_eq!(report.exit_code(), 0, "{report:#?}");
    assert_eq!(report.totals.regions, 12);
    assert_eq!(report.totals.clones_launched, 120);
    assert!(took < Duration::from_secs(4), "{took:?}");
}

#[tokio::test(start_paused = true)]
async fn a_launch_that_would_wait_for_ec2s_bucket_past_the_deadline_is_left_to_the_next_pass() {
    let mut account = Account::new();
    account.add_group("web", 40, 50, &[]);
    // Clones that launch one RunInstances each (a fleet launches a batch in one call).
    account.launch_per_clone();
    account
        .cloud
        .set_request_bucket(REGION, "RunInstances", 5.0, 2.0);
    let settings = Settings::from_pairs([("replacements-per-pass", "100%")]).unwrap();
    // Five seconds after the group's lease (which takes one): the bucket's five calls at once,
    // then two a second.
    let opts = PassOptions {
        dry_run: false,
        now: chrono::Utc::now(),
        deadline: Some(tokio::time::Instant::now() + Duration::from_secs(6)),
        cache: None,
        preflight: None,
        stop: None,
    };
    let report = account.run(&settings, &opts).await;
    let launched = report.totals.clones_launched;
    assert!((12..=16).contains(&launched), "{launched} launched");
    assert_eq!(report.totals.deferred, 40 - launched, "{report:#?}");
    assert!(account.cloud.throttled(REGION).is_empty());
    assert_eq!(report.totals.failures, 0);
}

/// `cache-hours` (a warm Lambda container's passes share one cache): a pass within the hours of
/// an earlier one reuses its instance types, offerings and on-demand prices and the report says
/// how old each is; spot prices are read every pass; past the hours, or with 0, they are read
/// again.
#[tokio::test(start_paused = true)]
async fn cache_hours_reuses_types_offerings_and_on_demand_prices_and_the_report_gives_their_age() {
    let mut account = Account::new();
    account.add_group("web", 4, 4, &[]);
    const SLOW: [&str; 3] = [
        "DescribeInstanceTypes",
        "DescribeInstanceTypeOfferings",
        "GetProducts",
    ];
    let calls = |r: &PassReport, op: &str| r.regions[0].calls.get(op).copied().unwrap_or(0);
    let with_cache = |settings: &Settings| PassOptions {
        cache: Some(Arc::new(ReadCache::new(settings.cache_hours))),
        preflight: None,
        stop: None,
        ..PassOptions::new(settings, chrono::Utc::now())
    };

    let settings = Settings::from_pairs([("cache-hours", "1")]).unwrap();
    let opts = with_cache(&settings);
    let first = account.pass_with(&settings, &opts).await;
    assert!(
        SLOW.iter().all(|op| calls(&first, op) >= 1),
        "{:?}",
        first.regions[0].calls
    );
    assert!(first.regions[0].cached.is_empty());
    account.wait();
    let second = account.pass_with(&settings, &opts).await;
    assert!(
        SLOW.iter().all(|op| calls(&second, op) == 0),
        "{:?}",
        second.regions[0].calls
    );
    assert_eq!(calls(&second, "DescribeSpotPriceHistory"), 1);
    let cached: Vec<(&str, i64)> = second.regions[0]
        .cached
        .iter()
        .map(|c| (c.read.as_str(), c.age_minutes))
        .collect();
    assert_eq!(
        cached,
        [
            ("instance-types", 5),
            ("offerings", 5),
            ("on-demand-prices:linux", 5)
        ]
    );
    // The report and the Lambda's answer both say so.
    let json = serde_json::to_value(&second).unwrap();
    assert_eq!(json["regions"][0]["cached"][0]["age_minutes"], 5);
    let answer = serde_json::to_value(second.summary()).unwrap();
    assert_eq!(
        answer["regions"][0]["cached"][2]["read"],
        "on-demand-prices:linux"
    );
    account.cloud.advance(Duration::from_secs(3600));
    let third = account.pass_with(&settings, &opts).await;
    assert!(
        SLOW.iter().all(|op| calls(&third, op) >= 1),
        "past the hours"
    );
    assert!(third.regions[0].cached.is_empty());

    let never = Settings::from_pairs([("cache-hours", "0")]).unwrap();
    let opts = with_cache(&never);
    for _ in 0..2 {
        account.wait();
        let r = account.pass_with(&never, &opts).await;
        assert!(SLOW.iter().all(|op| calls(&r, op) >= 1), "0 hours");
    }
}

/// A dry-run pass over `groups` opted-in groups of 4 on-demand instances, every other one on
/// its own launch template (`$Latest` or `$Default`), the rest on the launch configuration:
/// its calls by operation.
async fn reads_of_a_fresh_account(groups: usize) -> BTreeMap<String, u64> {
    let mut account = Account::new();
    for g in 0..groups {
        let name = format!("g{g:03}");
        if g % 2 == 0 {
            account.add_group(&name, 4, 8, &[]);
            continue;
        }
        let id = format!("lt-{g:017x}");
        let stored = LaunchRef::LaunchTemplate {
            id: id.clone(),
            name: None,
            version: "1".into(),
        };
        account
            .cloud
            .put_launch_spec(REGION, &stored, fixture_spec());
        let mut grp = group(&name, 4, 8, &[]);
        grp.launch = Some(LaunchRef::LaunchTemplate {
            id,
            name: None,
            version: if g % 4 == 1 { "$Latest" } else { "$Default" }.into(),
        });
        account.cloud.put_group(REGION, grp);
        account
            .cloud
            .launch_group_members(REGION, &name, 4, "m5.large", &[]);
    }
    let opts = PassOptions {
        dry_run: true,
        ..PassOptions::new(&Settings::default(), chrono::Utc::now())
    };
    let report = account.run(&Settings::default(), &opts).await;
    assert_eq!(
        report.totals.clones_launched as usize, groups,
        "one clone a group"
    );
    report.regions[0].calls.clone()
}

/// The reads of a pass grow with pages, not with groups: ten times the groups is the same
/// calls of every operation but two, the instances by id (200 a call) and the one read Auto
/// Scaling has no batched form of, `DescribeInstanceRefreshes`, made only for the groups the
/// pass acts on; launch templates on `$Latest`/`$Default` are one call, however many.
#[tokio::test(start_paused = true)]
async fn reads_grow_with_pages_not_with_groups_and_refreshes_only_for_groups_acted_on() {
    let (ten, hundred) = (
        reads_of_a_fresh_account(10).await,
        reads_of_a_fresh_account(100).await,
    );
    let count = |calls: &BTreeMap<String, u64>, op: &str| calls.get(op).copied().unwrap_or(0);
    for op in ten.keys().chain(hundred.keys()) {
        match op.as_str() {
            // The clone listing, and the members 200 ids a call: 40 and 400 of them.
            "DescribeInstances" => {
                assert_eq!(count(&ten, op), 1 + 1);
                assert_eq!(count(&hundred, op), 1 + 2);
            }
            "DescribeInstanceRefreshes" => {
                assert_eq!(count(&ten, op), 10);
                assert_eq!(count(&hundred, op), 100);
            }
            _ => assert_eq!(
                count(&ten, op),
                count(&hundred, op),
                "{op}: {ten:?} {hundred:?}"
            ),
        }
    }
    assert_eq!(count(&hundred, "DescribeLaunchTemplateVersions"), 1);
    assert_eq!(count(&hundred, "DescribeAutoScalingGroups"), 1);
    assert_eq!(count(&hundred, "DescribeLaunchConfigurations"), 1);

    // A converged account: no group has anything to do, so no refresh read at all.
    let mut account = Account::new();
    for g in 0..3 {
        account.add_group(&format!("g{g}"), 2, 4, &[]);
    }
    account.converge(&Settings::default()).await;
    account.wait();
    let last = account.pass(&Settings::default()).await;
    assert!(actions(&last).is_empty());
    assert_eq!(
        count(&last.regions[0].calls, "DescribeInstanceRefreshes"),
        0,
        "{:?}",
        last.regions[0].calls
    );
}

/// An account whose every call hangs (an hour each) still ends a pass with a deadline in bounded
/// time: at the deadline plus `HARD_STOP_AFTER_DEADLINE`, with an error that says what happened.
#[tokio::test(start_paused = true)]
async fn a_pass_whose_calls_never_answer_ends_at_its_hard_stop_with_a_clear_error() {
    let mut account = Account::new();
    account.add_group("web", 2, 4, &[]);
    account.cloud.set_latency(Duration::from_secs(3600));
    let t0 = tokio::time::Instant::now();
    let opts = PassOptions {
        deadline: Some(t0 + Duration::from_secs(5)),
        ..PassOptions::new(&Settings::default(), account.cloud.now())
    };
    let err = pass::run(&account.cloud, &Settings::default(), &opts)
        .await
        .expect_err("the regions could not be listed in time");
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(5) + pass::HARD_STOP_AFTER_DEADLINE
    );
    let text = err.to_string();
    assert!(
        text.contains("DescribeRegions") && text.contains("DeadlineExceeded"),
        "{text}"
    );
    assert!(text.contains("time ran out"), "{text}");
}

/// A region whose calls hang is cut short at the hard stop and reported as such; the pass ends.
#[tokio::test(start_paused = true)]
async fn a_region_whose_calls_never_answer_is_cut_short_at_the_hard_stop_and_reported() {
    let mut account = Account::new();
    account.add_group("web", 2, 4, &[]);
    account
        .cloud
        .set_region_latency(REGION, Duration::from_secs(3600));
    let t0 = tokio::time::Instant::now();
    let opts = PassOptions {
        deadline: Some(t0 + Duration::from_secs(5)),
        ..PassOptions::new(&Settings::default(), account.cloud.now())
    };
    let report = pass::run(&account.cloud, &Settings::default(), &opts)
        .await
        .expect("the regions are listed");
    assert_eq!(
        t0.elapsed(),
        Duration::from_secs(5) + pass::HARD_STOP_AFTER_DEADLINE
    );
    let e = report.regions[0].error.as_ref().expect("cut short");
    assert_eq!(e.code.as_deref(), Some("DeadlineExceeded"));
    assert_ne!(report.exit_code(), 0);
}

/// Between this pass's reads and its calls, another pass (the CLI beside the Lambda, say) swaps
/// in the clone this one planned to swap, and attaches the stray clone this one planned to
/// terminate as an orphan: a read made just before each call sees it, so nothing is attached
/// twice (desired capacity would rise twice) and no member is terminated through EC2.
#[tokio::test(start_paused = true)]
async fn a_clone_another_pass_attached_after_this_one_read_it_is_not_attached_again_nor_terminated()
{
    use spotswap::cloud::{Account as _, Actuator as _};
    let mut account = Account::new();
    account.add_group("web", 2, 4, &[]);
    account.add_group("other", 1, 4, &[]);
    account.pass(&Settings::default()).await;
    put_stray_clone(&account);
    account
        .cloud
        .advance(Duration::from_secs(u64::from(GRACE_SECS) + 60));

    let settings = Settings::default();
    let now = account.cloud.now();
    let region = account.cloud.region(REGION);
    let seen = spotswap::observe::observe(&region, &settings, &ReadCache::new(0), now)
        .await
        .unwrap();
    let plan = spotswap::plan::plan(&seen.snapshot, &settings, now);
    let planned = |kind: ActionKind| -> Vec<String> {
        plan.actions()
            .filter(|(_, a)| a.kind() == kind)
            .filter_map(|(_, a)| match a {
                Action::Swap { clone, .. } | Action::TerminateOrphan { clone, .. } => {
                    Some(clone.clone())
                }
                _ => None,
            })
            .collect()
    };
    let swaps = planned(ActionKind::Swap);
    assert!(!swaps.is_empty(), "{plan:#?}");
    assert_eq!(planned(ActionKind::TerminateOrphan), ["i-stray"]);

    // The other pass, meanwhile.
    let other = account.cloud.region(REGION);
    for clone in &swaps {
        let group = account.instance(clone).tags[tags::GROUP].clone();
        other.attach(&group, clone).await.unwrap();
    }
    other.attach("other", "i-stray").await.unwrap();
    let desired: Vec<u32> = ["web", "other"]
        .iter()
        .map(|g| account.group(g).desired_capacity)
        .collect();

    let before = account.cloud.total_call_counts();
    let opts = PassOptions::new(&settings, now);
    let outcomes =
        spotswap::execute::execute(&region, &seen.snapshot, &plan, &Default::default(), &opts)
            .await;
    let after = account.cloud.total_call_counts();
    let made =
        |op: &str| after.get(op).copied().unwrap_or(0) - before.get(op).copied().unwrap_or(0);

    let checked: Vec<&Outcome> = outcomes
        .iter()
        .filter(|o| matches!(o.action, ActionKind::Swap | ActionKind::TerminateOrphan))
        .collect();
    assert_eq!(checked.len(), swaps.len() + 1);
    for o in checked {
        assert!(
            matches!(&o.status, Status::Superseded { reason } if reason.contains("joined group")),
            "{o:#?}"
        );
    }
    for op in [
        "AttachInstances",
        "TerminateInstances",
        "TerminateInstanceInAutoScalingGroup",
    ] {
        assert_eq!(made(op), 0, "{op}");
    }
    let now_desired: Vec<u32> = ["web", "other"]
        .iter()
        .map(|g| account.group(g).desired_capacity)
        .collect();
    assert_eq!(now_desired, desired);
    assert_eq!(account.instance("i-stray").state, InstanceState::Running);
}
