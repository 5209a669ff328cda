//! Golden scenarios: a snapshot in, a plan out, compared with a reviewed expected plan.
//!
//! Each scenario is `tests/golden/<name>.json`, of shape
//! `{"description", "now", "settings": {stem: value}, "snapshot": <model::Snapshot>}`, and its
//! expected plan is `tests/golden/<name>.plan.json`. Fixtures list no instance types: the
//! harness fills them from the bundled catalog, as the pass does when `DescribeInstanceTypes`
//! is unavailable. The plan is compared with the expected file as JSON values, exactly.
//!
//! `SPOTSWAP_BLESS=1 cargo test --test it golden` (re)writes the expected files instead; a test
//! with no expected file fails unless it blesses. A bless is only as good as the review behind
//! it, so every test also asserts, in Rust, the property its scenario exists for, and a file is
//! written only when those assertions pass: a wrong plan cannot be blessed unnoticed.
//!
//! A scenario that shows a known planner bug keeps its golden test `#[ignore]`d, with the
//! assertions the fixed planner must meet and no expected file: once the bug is fixed, run it
//! with `--include-ignored`, review the plan, and bless.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Deref;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use spotswap::catalog::Catalog;
use spotswap::compat::Reason;
use spotswap::model::Snapshot;
use spotswap::plan::{
    Action, ActionKind, Decision, MaxSizeChange, OrphanReason, Plan, Skip, SkipKind, Verdict, plan,
};
use spotswap::settings::Settings;

/// Every scenario a test below runs. The harness refuses a name missing here, and
/// [`every_scenario_file_has_a_test`] compares this list with the directory.
const SCENARIOS: &[&str] = &[
    "plain_convergence",
    "min_on_demand_number",
    "min_on_demand_percentage",
    "not_opted_in",
    "mixed_instances_policy",
    "invalid_setting_tag",
    "clone_not_ready",
    "swap_at_max_size",
    "orphan_clones",
    "leftover_max_size",
    "no_cheaper_type",
    "outside_schedule",
    "interrupted_half_way",
    "interrupted_after_max_size_raise",
    "diversity",
    "duplicate_clones",
    "orphan_timeout",
    "windows_group",
    "recently_interrupted_pool",
    "clone_not_needed_below_floor",
    "instances_not_replaceable",
    "processes_suspended",
];

/// Environment variable that makes the harness write the expected plans instead of checking.
const BLESS: &str = "SPOTSWAP_BLESS";

/// One scenario file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    description: String,
    now: DateTime<Utc>,
    #[serde(default)]
    settings: BTreeMap<String, String>,
    snapshot: Snapshot,
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn blessing() -> bool {
    std::env::var(BLESS).is_ok_and(|v| v == "1")
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).expect("a JSON value serialises")
}

/// Loads a scenario and plans it, without looking at its expected plan.
fn plan_of(name: &str) -> Plan {
    assert!(
        SCENARIOS.contains(&name),
        "scenario {name} is not listed in SCENARIOS"
    );
    let input = golden_dir().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&input)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", input.display()));
    let mut scenario: Scenario = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a scenario: {e}", input.display()));
    assert!(
        !scenario.description.trim().is_empty(),
        "{name}: the description is empty"
    );
    assert!(
        scenario.snapshot.instance_types.is_empty(),
        "{name}: fixtures list no instance types, the bundled catalog supplies them"
    );
    Catalog::bundled().fill_missing(&mut scenario.snapshot.instance_types);
    let settings = Settings::from_pairs(&scenario.settings)
        .unwrap_or_else(|e| panic!("{name}: invalid settings: {e:?}"));
    plan(&scenario.snapshot, &settings, scenario.now)
}

/// A plan checked against its expected file. In bless mode the expected file is written when
/// the test ends without a failed assertion, so a bless never records a plan its own test
/// rejects.
struct Golden {
    plan: Plan,
    bless_to: Option<(PathBuf, String)>,
}

impl Deref for Golden {
    type Target = Plan;
    fn deref(&self) -> &Plan {
        &self.plan
    }
}

impl Drop for Golden {
    fn drop(&mut self) {
        if let Some((path, text)) = self.bless_to.take()
            && !std::thread::panicking()
        {
            std::fs::write(&path, text)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        }
    }
}

/// Loads a scenario, plans it, and checks (or with `SPOTSWAP_BLESS=1` writes) its expected plan.
/// Returns the plan for the test's own assertions.
fn run(name: &str) -> Golden {
    let plan = plan_of(name);
    let actual = serde_json::to_value(&plan).expect("a plan serialises");
    let expected_path = golden_dir().join(format!("{name}.plan.json"));
    if blessing() {
        // Written from the plan itself, so the file keeps the fields in declaration order.
        let text = serde_json::to_string_pretty(&plan).expect("a plan serialises") + "\n";
        return Golden {
            plan,
            bless_to: Some((expected_path, text)),
        };
    }
    let expected_text = std::fs::read_to_string(&expected_path).unwrap_or_else(|e| {
        panic!(
            "{name}: no expected plan at {} ({e}); review the plan and run with {BLESS}=1 to write it",
            expected_path.display()
        )
    });
    let expected: Value = serde_json::from_str(&expected_text)
        .unwrap_or_else(|e| panic!("{} is not JSON: {e}", expected_path.display()));
    if actual != expected {
        panic!(
            "{name}: the plan differs from {}\n--- expected ---\n{}\n--- actual ---\n{}\n\
             If the change is intended, review it and run with {BLESS}=1.",
            expected_path.display(),
            pretty(&expected),
            pretty(&actual)
        );
    }
    Golden {
        plan,
        bless_to: None,
    }
}

// ---- Small views of a plan, for the assertions. ----

fn decisions_for<'a>(plan: &'a Plan, group: &str) -> Vec<&'a Decision> {
    plan.decisions.iter().filter(|d| d.group == group).collect()
}

fn action_kinds(plan: &Plan) -> Vec<ActionKind> {
    plan.actions().map(|(_, a)| a.kind()).collect()
}

fn skip_kinds(plan: &Plan) -> Vec<SkipKind> {
    plan.skips().map(|(_, s)| s.kind()).collect()
}

/// The launch-clone actions: (replaced instance, AZ, candidate types, max price).
fn launches(plan: &Plan) -> Vec<(&str, &str, Vec<&str>, f64)> {
    plan.actions()
        .filter_map(|(_, a)| match a {
            Action::LaunchClone {
                replaces,
                availability_zone,
                candidates,
                max_price,
                ..
            } => Some((
                replaces.as_str(),
                availability_zone.as_str(),
                candidates
                    .iter()
                    .map(|c| c.instance_type.as_str())
                    .collect(),
                *max_price,
            )),
            _ => None,
        })
        .collect()
}

fn orphans(plan: &Plan) -> Vec<(&str, &str, OrphanReason)> {
    plan.actions()
        .filter_map(|(d, a)| match a {
            Action::TerminateOrphan { clone, reason } => {
                Some((d.group.as_str(), clone.as_str(), *reason))
            }
            _ => None,
        })
        .collect()
}

fn count_skips(plan: &Plan, kind: SkipKind) -> usize {
    skip_kinds(plan).iter().filter(|k| **k == kind).count()
}

// ---- The scenarios. ----

#[test]
fn plain_convergence_launches_a_quarter_of_the_on_demand_instances() {
    let plan = run("plain_convergence");
    let l = launches(&plan);
    assert_eq!(l.len(), 2, "a quarter of 8 on-demand instances: {l:?}");
    // Spread: the oldest instance of the two fullest AZs, never two in one AZ.
    assert_eq!(
        l.iter().map(|x| (x.0, x.1)).collect::<Vec<_>>(),
        [
            ("i-0a1b2c3d4e5f60001", "us-east-1a"),
            ("i-0a1b2c3d4e5f60004", "us-east-1b")
        ]
    );
    for (_, az, candidates, max_price) in &l {
        assert_eq!(*max_price, 0.096, "bid the m5.large on-demand price");
        // Every priced type that fits an m5.large and is cheaper in that AZ, cheapest first;
        // c5.large (4 GiB) is priced but too small.
        let mut sorted = candidates.clone();
        sorted.sort();
        assert_eq!(
            sorted,
            [
                "m5.large",
                "m5a.large",
                "m6a.large",
                "m6i.large",
                "m7i.large"
            ],
            "{az}"
        );
    }
    assert_eq!(count_skips(&plan, SkipKind::BatchLimit), 6);
    assert_eq!(plan.decisions.len(), 8);
    // The planner computes every clone's launch tags, so a dry run shows them: the protocol's
    // two, `spotswap:replaces` empty (a clone is paired with an instance at its swap), and the
    // group's propagated ones.
    for (d, a) in plan.actions() {
        if let Action::LaunchClone { tags, .. } = a {
            assert_eq!(tags.get("spotswap:group"), Some(&d.group));
            assert_eq!(tags.get("spotswap:replaces").map(String::as_str), Some(""));
            assert!(tags.keys().all(|k| !k.starts_with("aws:")), "{tags:?}");
        }
    }
}

#[test]
fn a_min_on_demand_number_tag_keeps_that_many_on_demand_instances() {
    let plan = run("min_on_demand_number");
    assert_eq!(
        launches(&plan).len(),
        1,
        "4 on-demand, keep 3: one to replace"
    );
    let kept: Vec<_> = plan
        .skips()
        .filter(|(_, s)| {
            matches!(
                s,
                Skip::MinOnDemand {
                    keep: 3,
                    on_demand: 4
                }
            )
        })
        .collect();
    assert_eq!(kept.len(), 3);
    assert_eq!(plan.decisions.len(), 4);
}

#[test]
fn a_min_on_demand_percentage_setting_keeps_half_rounded_up() {
    let plan = run("min_on_demand_percentage");
    // 5 on-demand in service: keep ceil(2.5) = 3, so 2 are replaceable, a quarter of which
    // (at least one) is launched now.
    assert_eq!(launches(&plan).len(), 1);
    // The other four are skipped; which of batch-limit and min-on-demand each one gets is a
    // matter of reporting (see the golden file), the floor itself is what matters here.
    assert_eq!(plan.skips().count(), 4);
    assert!(plan.skips().all(|(_, s)| matches!(
        s,
        Skip::BatchLimit { limit: 1 } | Skip::MinOnDemand { keep: 3, .. }
    )));
}

#[test]
fn a_group_that_is_not_opted_in_gets_one_skip_and_no_action() {
    let plan = run("not_opted_in");
    assert_eq!(plan.decisions.len(), 1);
    assert_eq!(plan.decisions[0].verdict, Verdict::Skip(Skip::NotOptedIn));
    assert_eq!(plan.decisions[0].instance, None);
    // A group skip is costed at what the group runs now: three m5.large on-demand.
    let d = &plan.decisions[0];
    let cost = d.hourly_cost_before.expect("a known cost");
    assert!((cost - 3.0 * 0.096).abs() < 1e-9, "{cost}");
    assert_eq!(d.hourly_cost_after, d.hourly_cost_before);
    assert_eq!(d.prices.len(), 1);
}

#[test]
fn a_group_with_a_mixed_instances_policy_is_skipped_without_launches() {
    let plan = run("mixed_instances_policy");
    assert_eq!(skip_kinds(&plan), [SkipKind::MixedInstancesPolicy]);
    assert!(action_kinds(&plan).is_empty());
}

#[test]
fn an_invalid_setting_tag_leaves_the_group_untouched_even_with_a_ready_clone() {
    let plan = run("invalid_setting_tag");
    assert_eq!(
        plan.decisions.len(),
        1,
        "one skip, and nothing else for the group"
    );
    match &plan.decisions[0].verdict {
        Verdict::Skip(Skip::InvalidSetting {
            setting,
            tag,
            value,
            ..
        }) => {
            assert_eq!(setting, "min-on-demand-number");
            assert_eq!(tag, "spotswap:min-on-demand-number");
            assert_eq!(value, "two");
        }
        other => panic!("expected invalid-setting, got {other:?}"),
    }
}

#[test]
fn a_clone_younger_than_the_grace_period_waits_and_counts_against_the_batch() {
    let plan = run("clone_not_ready");
    let waiting: Vec<_> = plan
        .skips()
        .filter_map(|(d, s)| match s {
            Skip::CloneNotReady {
                clone,
                ready_in_seconds,
            } => Some((d.instance.as_deref(), clone.as_str(), *ready_in_seconds)),
            _ => None,
        })
        .collect();
    // Launched 120 s ago, grace 300 s.
    assert_eq!(
        waiting,
        [(Some("i-0a1b2c3d4e5f60001"), "i-0f9e8d7c6b5a40001", 180)]
    );
    assert!(
        action_kinds(&plan).is_empty(),
        "no swap, and the one clone in flight uses up this pass's quarter of 4"
    );
}

#[test]
fn a_ready_clone_in_a_full_group_is_swapped_with_max_size_raised_by_one() {
    let plan = run("swap_at_max_size");
    let swaps: Vec<_> = plan
        .actions()
        .filter_map(|(_, a)| match a {
            Action::Swap {
                clone,
                replaces,
                max_size,
                ..
            } => Some((clone.as_str(), replaces.as_str(), *max_size)),
            _ => None,
        })
        .collect();
    assert_eq!(
        swaps,
        [(
            "i-0f9e8d7c6b5a40001",
            "i-0a1b2c3d4e5f60001",
            Some(MaxSizeChange {
                original: 4,
                raised: 5
            })
        )]
    );
    assert!(
        launches(&plan).iter().all(|l| l.0 != "i-0a1b2c3d4e5f60001"),
        "the instance being swapped out gets no second clone"
    );
}

#[test]
fn orphan_clones_are_terminated_when_their_target_or_their_group_is_gone() {
    let plan = run("orphan_clones");
    assert_eq!(
        orphans(&plan),
        [
            ("web-asg", "i-0f9e8d7c6b5a40001", OrphanReason::TargetGone),
            (
                "old-asg",
                "i-0f9e8d7c6b5a40002",
                OrphanReason::GroupNotOptedIn
            ),
        ]
    );
    // The orphan frees its target's slot for nothing: the group still converges normally.
    assert_eq!(launches(&plan).len(), 1);
}

#[test]
fn a_leftover_max_size_tag_with_no_swap_in_flight_is_restored() {
    let plan = run("leftover_max_size");
    let restores: Vec<_> = plan
        .actions()
        .filter_map(|(_, a)| match a {
            Action::RestoreMaxSize {
                current, restored, ..
            } => Some((*current, *restored)),
            _ => None,
        })
        .collect();
    assert_eq!(restores, [(5, 4)]);
    assert_eq!(action_kinds(&plan)[0], ActionKind::RestoreMaxSize);
}

#[test]
fn when_every_spot_price_is_above_on_demand_nothing_is_launched() {
    let plan = run("no_cheaper_type");
    assert!(action_kinds(&plan).is_empty());
    let rejected: Vec<&BTreeMap<Reason, u32>> = plan
        .skips()
        .filter_map(|(_, s)| match s {
            Skip::NoCheaperType { rejected } => Some(rejected),
            _ => None,
        })
        .collect();
    assert_eq!(rejected.len(), 2, "both on-demand instances say why");
    for r in rejected {
        // m5.large, m5a.large and m6i.large are priced, all above 0.096.
        assert_eq!(r.get(&Reason::TooExpensive), Some(&3));
        assert_eq!(r.values().sum::<u32>() as usize, Catalog::bundled().len());
    }
}

#[test]
fn a_group_outside_its_cron_schedule_is_skipped() {
    let plan = run("outside_schedule");
    assert_eq!(plan.decisions.len(), 1);
    assert_eq!(
        plan.decisions[0].verdict,
        Verdict::Skip(Skip::OutsideSchedule {
            schedule: "9-17 1-5".into(),
            timezone: "UTC".into(),
            state: "on".into(),
        })
    );
}

/// Why the two mid-swap scenarios have no blessed plan yet.
const DOUBLE_CLONE_BUG: &str = "planner bug: it plans a launch-clone for the instance a \
    complete-swap removes in the same pass (plan.rs counts that instance as an on-demand victim)";

#[test]
fn an_attached_clone_whose_target_is_still_a_member_completes_the_swap() {
    // Checked without the golden file, which waits for DOUBLE_CLONE_BUG to be fixed.
    let plan = plan_of("interrupted_half_way");
    let completes: Vec<_> = plan
        .actions()
        .filter_map(|(_, a)| match a {
            Action::CompleteSwap { clone, replaces } => Some((clone.as_str(), replaces.as_str())),
            _ => None,
        })
        .collect();
    assert_eq!(completes, [("i-0f9e8d7c6b5a40001", "i-0a1b2c3d4e5f60001")]);
    assert_eq!(action_kinds(&plan)[0], ActionKind::CompleteSwap);
}

#[test]
fn the_instance_a_swap_is_being_completed_for_gets_no_new_clone() {
    let plan = run("interrupted_half_way");
    assert!(
        plan.actions()
            .any(|(_, a)| a.kind() == ActionKind::CompleteSwap)
    );
    assert!(
        launches(&plan).iter().all(|l| l.0 != "i-0a1b2c3d4e5f60001"),
        "{DOUBLE_CLONE_BUG}: {:?}",
        launches(&plan)
    );
}

#[test]
fn a_crash_after_raising_max_size_completes_the_swap_then_restores_max_size() {
    // Checked without the golden file, which waits for DOUBLE_CLONE_BUG to be fixed.
    let plan = plan_of("interrupted_after_max_size_raise");
    let names = action_kinds(&plan);
    assert_eq!(
        &names[..2],
        [ActionKind::CompleteSwap, ActionKind::RestoreMaxSize],
        "terminate with decrement first (desired 5 -> 4), so MaxSize can come back down to 4"
    );
    assert_eq!(
        plan.actions().nth(1).map(|(_, a)| a.clone()),
        Some(Action::RestoreMaxSize {
            current: 5,
            restored: 4,
            partial: false
        })
    );
}

#[test]
fn after_a_crash_mid_swap_the_batch_counts_only_the_on_demand_instances_that_stay() {
    let plan = run("interrupted_after_max_size_raise");
    assert_eq!(
        &action_kinds(&plan)[..2],
        [ActionKind::CompleteSwap, ActionKind::RestoreMaxSize]
    );
    let l = launches(&plan);
    assert!(
        l.iter().all(|l| l.0 != "i-0a1b2c3d4e5f60001"),
        "{DOUBLE_CLONE_BUG}: {l:?}"
    );
    // Three on-demand instances stay once the swap completes: a quarter of 3 is one launch.
    assert_eq!(l.len(), 1);
}

#[test]
fn launches_prefer_the_least_used_of_the_three_cheapest_pools_of_their_az() {
    let plan = run("diversity");
    let firsts: Vec<&str> = launches(&plan).iter().map(|l| l.2[0]).collect();
    // m5a.large is cheapest but already runs one of the group's instances in each AZ; m6a.large,
    // next cheapest, is unused in both AZs launched in (a pool is a type in an AZ).
    // m5.large, fourth cheapest, is never first.
    assert_eq!(firsts, ["m6a.large", "m6a.large"]);
    let azs: Vec<&str> = launches(&plan).iter().map(|l| l.1).collect();
    assert_eq!(azs, ["us-east-1a", "us-east-1b"]);
    for l in launches(&plan) {
        assert_eq!(l.2.len(), 4, "all four priced types are candidates");
    }
}

#[test]
fn of_two_clones_of_one_instance_the_older_is_kept_and_the_other_terminated() {
    let plan = run("duplicate_clones");
    assert_eq!(
        orphans(&plan),
        [("web-asg", "i-0f9e8d7c6b5a40002", OrphanReason::Duplicate)]
    );
    assert!(plan.skips().any(|(_, s)| matches!(
        s,
        Skip::CloneNotReady { clone, .. } if clone == "i-0f9e8d7c6b5a40001"
    )));
}

#[test]
fn a_clone_unattached_past_grace_plus_orphan_timeout_is_terminated() {
    let plan = run("orphan_timeout");
    assert_eq!(
        orphans(&plan),
        [("web-asg", "i-0f9e8d7c6b5a40001", OrphanReason::Timeout)]
    );
    assert!(
        !plan
            .actions()
            .any(|(_, a)| matches!(a, Action::Swap { .. })),
        "a timed-out clone is never swapped in"
    );
    assert!(
        launches(&plan).iter().all(|l| l.0 != "i-0a1b2c3d4e5f60001"),
        "the instance of a stuck clone waits a pass before the next launch"
    );
}

#[test]
fn a_windows_group_is_priced_and_bid_as_windows() {
    let plan = run("windows_group");
    let l = launches(&plan);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].3, 0.188, "m5.large Windows on-demand price");
    let product = plan.actions().find_map(|(_, a)| match a {
        Action::LaunchClone {
            product_description,
            ..
        } => Some(product_description.as_str()),
        _ => None,
    });
    assert_eq!(product, Some("Windows (Amazon VPC)"));
    // Linux spot prices are in the snapshot too, and must not be used.
    assert!(
        l[0].2.iter().all(|t| *t != "m5a.large"),
        "m5a.large has only a Linux spot price"
    );
}

#[test]
fn a_pool_that_interrupted_the_group_recently_is_not_a_candidate() {
    let plan = run("recently_interrupted_pool");
    let l = launches(&plan);
    assert_eq!(l.len(), 1);
    assert_eq!(l[0].1, "us-east-1a");
    assert!(
        !l[0].2.contains(&"m6a.large"),
        "m6a.large@us-east-1a interrupted 20 min ago"
    );
    assert!(l[0].2.contains(&"m5a.large"));
}

#[test]
fn a_pending_clone_is_terminated_when_on_demand_is_already_at_the_floor() {
    let plan = run("clone_not_needed_below_floor");
    assert_eq!(
        orphans(&plan),
        [("web-asg", "i-0f9e8d7c6b5a40001", OrphanReason::NotNeeded)]
    );
    assert!(launches(&plan).is_empty());
    assert!(
        !plan
            .actions()
            .any(|(_, a)| matches!(a, Action::Swap { .. }))
    );
}

#[test]
fn unhealthy_protected_and_pending_instances_are_not_replaced() {
    let plan = run("instances_not_replaceable");
    let by_instance: BTreeMap<&str, SkipKind> = plan
        .skips()
        .filter_map(|(d, s)| Some((d.instance.as_deref()?, s.kind())))
        .collect();
    assert_eq!(by_instance["i-0a1b2c3d4e5f60002"], SkipKind::Unhealthy);
    assert_eq!(
        by_instance["i-0a1b2c3d4e5f60003"],
        SkipKind::ProtectedFromScaleIn
    );
    assert_eq!(by_instance["i-0a1b2c3d4e5f60004"], SkipKind::NotInService);
    assert_eq!(
        launches(&plan).iter().map(|l| l.0).collect::<Vec<_>>(),
        ["i-0a1b2c3d4e5f60001"],
        "only the healthy, unprotected, in-service instance gets a clone"
    );
}

#[test]
fn a_group_with_launch_suspended_is_left_alone() {
    let plan = run("processes_suspended");
    assert_eq!(
        decisions_for(&plan, "web-asg")
            .iter()
            .map(|d| d.verdict.clone())
            .collect::<Vec<_>>(),
        [Verdict::Skip(Skip::ProcessesSuspended {
            processes: vec!["Launch".into()]
        })]
    );
}

#[test]
fn every_scenario_file_has_a_test() {
    let mut inputs = BTreeSet::new();
    let mut expected = BTreeSet::new();
    for entry in std::fs::read_dir(golden_dir()).expect("tests/golden exists") {
        let name = entry.expect("a directory entry").file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".plan.json") {
            expected.insert(stem.to_string());
        } else if let Some(stem) = name.strip_suffix(".json") {
            inputs.insert(stem.to_string());
        } else {
            panic!("unexpected file tests/golden/{name}");
        }
    }
    let listed: BTreeSet<String> = SCENARIOS.iter().map(|s| s.to_string()).collect();
    assert_eq!(listed.len(), SCENARIOS.len(), "a scenario is listed twice");
    assert_eq!(inputs, listed, "scenario files and tested scenarios differ");
    let stray: Vec<_> = expected.difference(&inputs).collect();
    assert!(
        stray.is_empty(),
        "expected plans without a scenario: {stray:?}"
    );
    // The test source must run each listed scenario, so a listed name cannot go untested.
    let source = include_str!("golden.rs");
    for name in SCENARIOS {
        assert!(
            source.contains(&format!("run(\"{name}\")")),
            "no test runs scenario {name}"
        );
    }
}
