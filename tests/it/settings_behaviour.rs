//! Every setting changes behaviour: each test runs the real planner (or, for `regions`,
//! `Settings::region_enabled`) once with the built-in default and once with the setting
//! changed, and asserts the decisions differ the way the setting promises. Group-scoped
//! settings are changed three ways: as a global value, as a `spotswap:<stem>` group tag, and as
//! the AutoSpotting alias tag where there is one. `dry-run` is covered elsewhere.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, TimeZone, Utc};
use spotswap::catalog::Catalog;
use spotswap::cloud::memory::{GroupBuilder, InstanceBuilder};
use spotswap::compat::Reason;
use spotswap::model::{
    Ami, Architecture, Group, InstanceState, LaunchRef, LaunchSpec, Market, OnDemandPrices, Os,
    OsPrices, PriceSource, Snapshot, SpotPricePoint, Virtualization,
};
use spotswap::plan::{self, Action, OrphanReason, Plan, Skip, Verdict};
use spotswap::protocol::{self as tags, Interruption};
use spotswap::settings::{SETTINGS, Scope, Settings, setting};

/// The stems this file has behaviour tests for. Every test below goes through [`ways`] or
/// [`global`], which refuse a stem that is not listed here.
const COVERED: &[&str] = &[
    "regions",
    "tag-filters",
    "tag-filtering-mode",
    "min-on-demand-number",
    "min-on-demand-percentage",
    "allowed-instance-types",
    "disallowed-instance-types",
    "on-demand-price-multiplier",
    "spot-product-description",
    "replacements-per-pass",
    "pools-per-az",
    "spread-price-margin",
    "allocation-strategy",
    "spot-price-window-minutes",
    "cron-schedule",
    "cron-timezone",
    "cron-schedule-state",
    "orphan-timeout-minutes",
    "healthy-timeout-minutes",
    "interruption-cooldown-minutes",
    "allow-burstable",
];

/// Covered by its own tests elsewhere.
/// Settings whose behaviour tests live elsewhere, because they act outside the planner:
/// `dry-run` in `pass_memory.rs` (`dry_run_changes_nothing_in_the_account`) and `e2e.rs`;
/// `interruption-action` in `src/interrupt.rs` and `lambda.rs`; `handle-rebalance-recommendations`
/// in `lambda.rs`; `cache-hours` in `pass_memory.rs`
/// (`cache_hours_reuses_types_offerings_and_on_demand_prices_and_the_report_gives_their_age`);
/// the three call timeouts in `cli.rs`
/// (`a_hung_endpoint_ends_the_pass_within_the_call_timeouts_with_a_one_line_error`);
/// `lease-seconds` in `pass_memory.rs`
/// (`a_pass_that_dies_holding_a_lease_delays_its_group_until_lease_seconds_have_passed`).
const NOT_HERE: &[&str] = &[
    "dry-run",
    "lease-seconds",
    "cache-hours",
    "connect-timeout-seconds",
    "attempt-timeout-seconds",
    "operation-timeout-seconds",
    "interruption-action",
    "handle-rebalance-recommendations",
];

// ---------------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------------

const REGION: &str = "us-east-1";
const GROUP: &str = "web";
const AMI: &str = "ami-0123456789abcdef0";
const AZS: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const LINUX: &str = "Linux/UNIX (Amazon VPC)";
const WINDOWS: &str = "Windows (Amazon VPC)";

/// Linux spot prices of the fixture, the same in every AZ. With the default multiplier all are
/// below m5.large's 0.096 on-demand price; at 0.5 (limit 0.048) m5.large's is too expensive.
const LINUX_SPOT: [(&str, f64); 4] = [
    ("t3.large", 0.030),
    ("m5a.large", 0.035),
    ("m6i.large", 0.045),
    ("m5.large", 0.055),
];

/// A Thursday, noon UTC.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 9, 12, 0, 0).unwrap()
}

fn instance_id(k: usize) -> String {
    format!("i-{:017x}", k + 1)
}

/// Region us-east-1 with one opted-in group `web` of `n` on-demand m5.large instances spread
/// round-robin over us-east-1a/b/c (instance `k` is in `AZS[k % 3]`), launched from launch
/// configuration `web-lc` with a Linux AMI; bundled on-demand prices and two-hour-old spot
/// prices for four types in every AZ; the bundled instance-type catalog.
fn snapshot(n: usize) -> Snapshot {
    let mut instances = BTreeMap::new();
    let mut group = GroupBuilder::new(GROUP)
        .min(n as u32)
        .desired(n as u32)
        .max(2 * n as u32)
        .tag("spot-enabled", "true")
        .launch(LaunchRef::LaunchConfiguration {
            name: "web-lc".into(),
        });
    for k in 0..n {
        let id = instance_id(k);
        group = group.member(&id);
        instances.insert(
            id.clone(),
            InstanceBuilder::on_demand(&id, "m5.large", AZS[k % AZS.len()])
                .subnet(format!("subnet-{}", k % AZS.len()))
                .launched(now() - Duration::days(3) + Duration::minutes(k as i64))
                .image(AMI)
                .in_group(GROUP)
                .build(),
        );
    }
    let group = group.build();
    let launch_specs = [(
        "lc:web-lc".to_string(),
        LaunchSpec {
            image_id: AMI.into(),
            instance_type: Some("m5.large".into()),
            ..Default::default()
        },
    )]
    .into();
    let amis = [(
        AMI.to_string(),
        Ami {
            image_id: AMI.into(),
            name: Some("web-2024-05".into()),
            architecture: Some(Architecture::X86_64),
            virtualization: Some(Virtualization::Hvm),
            ena_support: Some(true),
            platform_details: Some("Linux/UNIX".into()),
            ..Default::default()
        },
    )]
    .into();
    let od = |linux: f64| OsPrices {
        linux: Some(linux),
        ..Default::default()
    };
    let on_demand = OnDemandPrices {
        source: PriceSource::Bundled {
            region: REGION.into(),
            date: "2023-08-30".into(),
        },
        prices: [
            ("m5.large", od(0.096)),
            ("m5a.large", od(0.086)),
            ("m6i.large", od(0.096)),
            ("t3.large", od(0.0832)),
        ]
        .into_iter()
        .map(|(t, p)| (t.to_string(), p))
        .collect(),
    };
    let mut spot_prices = Vec::new();
    for az in AZS {
        for (ty, price) in LINUX_SPOT {
            spot_prices.push(spot_point(ty, az, LINUX, price, now() - Duration::hours(2)));
        }
    }
    let mut instance_types = BTreeMap::new();
    Catalog::bundled().fill_missing(&mut instance_types);
    Snapshot {
        region: REGION.into(),
        groups: vec![group],
        instances,
        launch_specs,
        amis,
        instance_types,
        offerings: BTreeMap::new(),
        spot_prices,
        on_demand,
        owned_templates: Vec::new(),
        activities: BTreeMap::new(),
        launch_refused: None,
        target_health: BTreeMap::new(),
    }
}

fn spot_point(ty: &str, az: &str, product: &str, price: f64, at: DateTime<Utc>) -> SpotPricePoint {
    SpotPricePoint {
        instance_type: ty.into(),
        availability_zone: az.into(),
        product_description: product.into(),
        price,
        timestamp: at,
    }
}

fn group_mut(snap: &mut Snapshot) -> &mut Group {
    snap.groups
        .iter_mut()
        .find(|g| g.name == GROUP)
        .expect("the fixture has group web")
}

// ---------------------------------------------------------------------------------------------
// Ways to change a setting
// ---------------------------------------------------------------------------------------------

/// One way of applying settings: global pairs, plus tags put on group `web`.
struct Way {
    label: String,
    settings: Settings,
    tags: Vec<(String, String)>,
}

impl Way {
    fn plan(&self, mut snap: Snapshot) -> Plan {
        let group = group_mut(&mut snap);
        for (k, v) in &self.tags {
            group.tags.insert(k.clone(), v.clone());
        }
        plan::plan(&snap, &self.settings, now())
    }
}

fn settings(pairs: &[(&str, &str)]) -> Settings {
    Settings::from_pairs(pairs.iter().copied())
        .unwrap_or_else(|e| panic!("settings {pairs:?} are valid: {e:?}"))
}

/// The default: only `base` (settings shared by both runs of a test) as global values.
fn default_way(base: &[(&str, &str)]) -> Way {
    Way {
        label: "default".into(),
        settings: settings(base),
        tags: Vec::new(),
    }
}

/// A global setting changed through `Settings::from_pairs`, over `base`.
fn global(base: &[(&str, &str)], stem: &str, value: &str) -> Way {
    assert!(COVERED.contains(&stem), "{stem} is listed in COVERED");
    let def = setting(stem).unwrap_or_else(|| panic!("{stem} is a setting"));
    let mut pairs = base.to_vec();
    pairs.push((def.stem, value));
    Way {
        label: format!("global {stem}={value}"),
        settings: settings(&pairs),
        tags: Vec::new(),
    }
}

/// Every way of setting a group-scoped setting: global value, `spotswap:` tag, and the
/// AutoSpotting alias tag when the setting has one. `base` applies globally to all.
fn ways(base: &[(&str, &str)], stem: &str, value: &str) -> Vec<Way> {
    let def = setting(stem).unwrap_or_else(|| panic!("{stem} is a setting"));
    assert_eq!(def.scope, Scope::Group, "{stem} is group-scoped");
    let mut out = vec![global(base, stem, value)];
    out.push(Way {
        label: format!("tag {}={value}", def.tag()),
        settings: settings(base),
        tags: vec![(def.tag(), value.to_string())],
    });
    if let Some(alias) = def.alias {
        out.push(Way {
            label: format!("alias tag {alias}={value}"),
            settings: settings(base),
            tags: vec![(alias.to_string(), value.to_string())],
        });
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Reading plans
// ---------------------------------------------------------------------------------------------

/// A planned clone launch, flattened.
#[derive(Debug)]
struct Launch {
    replaces: String,
    az: String,
    candidates: Vec<String>,
    max_price: f64,
    product: String,
    /// The on-demand price the decision was judged against (after the multiplier).
    on_demand: f64,
    on_demand_os: Os,
}

fn launches(plan: &Plan) -> Vec<Launch> {
    plan.actions()
        .filter_map(|(d, a)| match a {
            Action::LaunchClone {
                replaces,
                availability_zone,
                candidates,
                max_price,
                product_description,
                ..
            } => {
                let od = d
                    .prices
                    .iter()
                    .find(|p| p.market == Market::OnDemand)
                    .expect("a launch names its on-demand price");
                Some(Launch {
                    replaces: replaces.clone(),
                    az: availability_zone.clone(),
                    candidates: candidates.iter().map(|c| c.instance_type.clone()).collect(),
                    max_price: *max_price,
                    product: product_description.clone(),
                    on_demand: od.price,
                    on_demand_os: od.os,
                })
            }
            _ => None,
        })
        .collect()
}

fn launch_in<'a>(launches: &'a [Launch], az: &str) -> &'a Launch {
    launches
        .iter()
        .find(|l| l.az == az)
        .unwrap_or_else(|| panic!("a launch in {az}: {launches:#?}"))
}

fn skips(plan: &Plan) -> Vec<Skip> {
    plan.skips().map(|(_, s)| s.clone()).collect()
}

fn group_skips(plan: &Plan) -> Vec<Skip> {
    plan.decisions
        .iter()
        .filter(|d| d.instance.is_none())
        .filter_map(|d| match &d.verdict {
            Verdict::Skip(s) => Some(s.clone()),
            Verdict::Act(_) => None,
        })
        .collect()
}

/// The rejected-type counts of the plan's one skip, which must be `no-cheaper-type`.
fn no_cheaper_type(plan: &Plan) -> BTreeMap<Reason, u32> {
    match skips(plan).as_slice() {
        [Skip::NoCheaperType { rejected }] => rejected.clone(),
        other => panic!("expected one no-cheaper-type skip, got {other:#?}"),
    }
}

fn count_skips(plan: &Plan, f: impl Fn(&Skip) -> bool) -> usize {
    skips(plan).iter().filter(|s| f(s)).count()
}

fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

// ---------------------------------------------------------------------------------------------
// Coverage
// ---------------------------------------------------------------------------------------------

#[test]
fn every_setting_but_dry_run_has_a_behaviour_test_here() {
    let missing: Vec<&str> = SETTINGS
        .iter()
        .map(|d| d.stem)
        .filter(|s| !COVERED.contains(s) && !NOT_HERE.contains(s))
        .collect();
    assert!(
        missing.is_empty(),
        "settings with no behaviour test: {missing:?}"
    );
    let stale: Vec<&str> = COVERED
        .iter()
        .copied()
        .filter(|s| setting(s).is_none())
        .collect();
    assert!(stale.is_empty(), "COVERED names no such setting: {stale:?}");
    // And each covered stem has a test named after it: `fn min_on_demand_number_...`.
    let source = include_str!("settings_behaviour.rs");
    let untested: Vec<&str> = COVERED
        .iter()
        .copied()
        .filter(|s| !source.contains(&format!("#[test]\nfn {}_", s.replace('-', "_"))))
        .collect();
    assert!(untested.is_empty(), "no test named after: {untested:?}");
}

#[test]
fn the_fixture_launches_one_clone_on_the_cheapest_compatible_type_by_default() {
    let plan = default_way(&[]).plan(snapshot(3));
    let l = launches(&plan);
    assert_eq!(l.len(), 1, "{plan:#?}");
    assert_eq!(l[0].candidates, ["m5a.large", "m6i.large", "m5.large"]);
    assert_eq!(l[0].product, LINUX);
    assert!(approx(l[0].max_price, 0.096));
    assert_eq!(
        count_skips(&plan, |s| matches!(s, Skip::BatchLimit { limit: 1 })),
        2
    );
}

// ---------------------------------------------------------------------------------------------
// Global settings
// ---------------------------------------------------------------------------------------------

#[test]
fn regions_select_which_regions_are_processed() {
    let default = default_way(&[]).settings;
    assert!(default.region_enabled(REGION), "empty means every region");
    assert!(default.region_enabled("eu-west-1"));
    let eu = global(&[], "regions", "eu-*").settings;
    assert!(!eu.region_enabled(REGION));
    assert!(eu.region_enabled("eu-west-1"));
    let listed = global(&[], "regions", "ap-south-1, us-east-1").settings;
    assert!(listed.region_enabled(REGION));
    assert!(!listed.region_enabled("us-east-2"));
    assert!(!listed.region_enabled("eu-west-1"));
}

#[test]
fn tag_filters_choose_which_group_tags_opt_a_group_in() {
    // Default filter spot-enabled=true: web is processed.
    let default = default_way(&[]).plan(snapshot(3));
    assert_eq!(launches(&default).len(), 1);
    assert!(group_skips(&default).is_empty());

    // With team=web* the spot-enabled tag no longer counts.
    let filtered = global(&[], "tag-filters", "team=web*");
    let plan = filtered.plan(snapshot(3));
    assert_eq!(group_skips(&plan), [Skip::NotOptedIn]);
    assert!(launches(&plan).is_empty());

    // ... and a group carrying team=web-frontend is processed.
    let mut snap = snapshot(3);
    let g = group_mut(&mut snap);
    g.tags.clear();
    g.tags.insert("team".into(), "web-frontend".into());
    assert_eq!(launches(&filtered.plan(snap.clone())).len(), 1);
    assert_eq!(
        group_skips(&default_way(&[]).plan(snap)),
        [Skip::NotOptedIn]
    );
}

#[test]
fn tag_filtering_mode_opt_out_processes_untagged_groups_and_excludes_tagged_ones() {
    // An untagged group: left alone in opt-in mode, processed in opt-out mode.
    let mut untagged = snapshot(3);
    group_mut(&mut untagged).tags.clear();
    let plan = default_way(&[]).plan(untagged.clone());
    assert_eq!(group_skips(&plan), [Skip::NotOptedIn]);
    let opt_out = global(&[], "tag-filtering-mode", "opt-out");
    let plan = opt_out.plan(untagged);
    assert!(group_skips(&plan).is_empty(), "{plan:#?}");
    assert_eq!(launches(&plan).len(), 1);

    // The same filter means the opposite: spot-enabled=true opts web in, or out.
    let filter = [("tag-filters", "spot-enabled=true")];
    assert_eq!(launches(&default_way(&filter).plan(snapshot(3))).len(), 1);
    let plan = global(&filter, "tag-filtering-mode", "opt-out").plan(snapshot(3));
    assert_eq!(group_skips(&plan), [Skip::NotOptedIn]);
    assert!(launches(&plan).is_empty());

    // In opt-out mode the default filter is spot-enabled=false.
    let mut tagged_out = snapshot(3);
    group_mut(&mut tagged_out)
        .tags
        .insert("spot-enabled".into(), "false".into());
    assert_eq!(group_skips(&opt_out.plan(tagged_out)), [Skip::NotOptedIn]);
}

// ---------------------------------------------------------------------------------------------
// Group settings
// ---------------------------------------------------------------------------------------------

/// Lets every replaceable instance be replaced in one pass, so a floor shows on its own.
const ALL_AT_ONCE: [(&str, &str); 1] = [("replacements-per-pass", "100%")];

#[test]
fn min_on_demand_number_keeps_that_many_on_demand_instances() {
    let default = default_way(&ALL_AT_ONCE).plan(snapshot(4));
    assert_eq!(launches(&default).len(), 4, "{default:#?}");
    assert_eq!(
        count_skips(&default, |s| matches!(s, Skip::MinOnDemand { .. })),
        0
    );
    for way in ways(&ALL_AT_ONCE, "min-on-demand-number", "3") {
        let plan = way.plan(snapshot(4));
        assert_eq!(launches(&plan).len(), 1, "{}", way.label);
        assert_eq!(
            count_skips(&plan, |s| matches!(s, Skip::MinOnDemand { keep: 3, .. })),
            3,
            "{}: {plan:#?}",
            way.label
        );
    }
}

#[test]
fn min_on_demand_percentage_keeps_that_share_of_instances_on_demand_rounded_up() {
    let default = default_way(&ALL_AT_ONCE).plan(snapshot(4));
    assert_eq!(launches(&default).len(), 4);
    for way in ways(&ALL_AT_ONCE, "min-on-demand-percentage", "50") {
        let plan = way.plan(snapshot(4));
        assert_eq!(launches(&plan).len(), 2, "{}", way.label);
        assert_eq!(
            count_skips(&plan, |s| matches!(s, Skip::MinOnDemand { keep: 2, .. })),
            2,
            "{}",
            way.label
        );
    }
    // 30% of 4 is 1.2, rounded up to 2 kept.
    for way in ways(&ALL_AT_ONCE, "min-on-demand-percentage", "30") {
        assert_eq!(launches(&way.plan(snapshot(4))).len(), 2, "{}", way.label);
    }
}

#[test]
fn allowed_instance_types_limits_the_candidates_to_the_listed_globs() {
    let default = launches(&default_way(&[]).plan(snapshot(1)));
    assert_eq!(
        default[0].candidates,
        ["m5a.large", "m6i.large", "m5.large"]
    );
    for way in ways(&[], "allowed-instance-types", "m6*.large") {
        let l = launches(&way.plan(snapshot(1)));
        assert_eq!(l[0].candidates, ["m6i.large"], "{}", way.label);
    }
    // `current` stands for the replaced instance's own type.
    for way in ways(&[], "allowed-instance-types", "current") {
        let l = launches(&way.plan(snapshot(1)));
        assert_eq!(l[0].candidates, ["m5.large"], "{}", way.label);
    }
    // Nothing allowed that has a price: the instance is skipped, saying why.
    for way in ways(&[], "allowed-instance-types", "c5.*") {
        let plan = way.plan(snapshot(1));
        assert!(launches(&plan).is_empty(), "{}", way.label);
        let rejected = no_cheaper_type(&plan);
        assert!(rejected.contains_key(&Reason::NotAllowed), "{}", way.label);
    }
    // A list that matches no instance type at all (a typo) is said once, for the group,
    // naming the value, instead of as no cheaper type for every instance.
    for way in ways(&[], "allowed-instance-types", "m5.lrage") {
        let plan = way.plan(snapshot(3));
        assert!(launches(&plan).is_empty(), "{}", way.label);
        let said: Vec<&Skip> = plan
            .skips()
            .map(|(_, s)| s)
            .filter(|s| matches!(s, Skip::NoTypeAllowed { .. } | Skip::NoCheaperType { .. }))
            .collect();
        assert_eq!(
            said,
            [&Skip::NoTypeAllowed {
                allowed: "m5.lrage".into(),
                disallowed: String::new()
            }],
            "{}",
            way.label
        );
    }
}

#[test]
fn disallowed_instance_types_removes_the_listed_globs_from_the_candidates() {
    for way in ways(&[], "disallowed-instance-types", "m5a.*") {
        let l = launches(&way.plan(snapshot(1)));
        assert_eq!(l[0].candidates, ["m6i.large", "m5.large"], "{}", way.label);
    }
    // Both lists apply: allowed m*.large minus disallowed m5*.
    let allowed = [("allowed-instance-types", "m*.large")];
    assert_eq!(
        launches(&default_way(&allowed).plan(snapshot(1)))[0].candidates,
        ["m5a.large", "m6i.large", "m5.large"]
    );
    for way in ways(&allowed, "disallowed-instance-types", "m5*") {
        let l = launches(&way.plan(snapshot(1)));
        assert_eq!(l[0].candidates, ["m6i.large"], "{}", way.label);
    }
}

#[test]
fn on_demand_price_multiplier_makes_spot_prices_above_the_scaled_price_too_expensive() {
    let default = launches(&default_way(&[]).plan(snapshot(1)));
    assert!(default[0].candidates.contains(&"m5.large".to_string()));
    assert!(approx(default[0].on_demand, 0.096));
    for way in ways(&[], "on-demand-price-multiplier", "0.5") {
        let l = launches(&way.plan(snapshot(1)));
        // m5.large's spot price 0.055 is above 0.096 x 0.5 = 0.048.
        assert_eq!(l[0].candidates, ["m5a.large", "m6i.large"], "{}", way.label);
        assert!(approx(l[0].on_demand, 0.048), "{}: {l:#?}", way.label);
        // The bid stays the list price.
        assert!(approx(l[0].max_price, 0.096), "{}", way.label);
    }
    // At 0.3 (limit 0.0288) every priced compatible type is too expensive.
    for way in ways(&[], "on-demand-price-multiplier", "0.3") {
        let plan = way.plan(snapshot(1));
        assert!(launches(&plan).is_empty(), "{}", way.label);
        let rejected = no_cheaper_type(&plan);
        assert_eq!(
            rejected.get(&Reason::TooExpensive),
            Some(&3),
            "{}",
            way.label
        );
    }
}

#[test]
fn spot_product_description_windows_prices_the_group_with_windows_prices() {
    let mut snap = snapshot(1);
    let windows_od = [
        ("m5.large", 0.188),
        ("m5a.large", 0.178),
        ("m6i.large", 0.188),
        ("t3.large", 0.1108),
    ];
    for (ty, price) in windows_od {
        snap.on_demand.prices.get_mut(ty).expect("priced").windows = Some(price);
    }
    // Windows spot: m5a.large above Linux m5.large's on-demand price, below Windows'.
    for az in AZS {
        for (ty, price) in [("m6i.large", 0.120), ("m5a.large", 0.150)] {
            let at = now() - Duration::hours(2);
            snap.spot_prices
                .push(spot_point(ty, az, WINDOWS, price, at));
        }
    }
    let default = launches(&default_way(&[]).plan(snap.clone()));
    assert_eq!(default[0].product, LINUX);
    assert_eq!(default[0].on_demand_os, Os::Linux);
    assert!(approx(default[0].max_price, 0.096));
    assert_eq!(
        default[0].candidates,
        ["m5a.large", "m6i.large", "m5.large"]
    );
    for way in ways(&[], "spot-product-description", WINDOWS) {
        let l = launches(&way.plan(snap.clone()));
        assert_eq!(l.len(), 1, "{}", way.label);
        assert_eq!(l[0].product, WINDOWS, "{}", way.label);
        assert_eq!(l[0].on_demand_os, Os::Windows, "{}", way.label);
        assert!(approx(l[0].max_price, 0.188), "{}", way.label);
        assert_eq!(l[0].candidates, ["m6i.large", "m5a.large"], "{}", way.label);
    }
}

#[test]
fn spot_product_description_without_the_vpc_suffix_prices_the_same_product() {
    let mut snap = snapshot(1);
    for (ty, price) in [
        ("m5.large", 0.188),
        ("m5a.large", 0.178),
        ("m6i.large", 0.188),
    ] {
        snap.on_demand.prices.get_mut(ty).expect("priced").windows = Some(price);
    }
    for az in AZS {
        let at = now() - Duration::hours(2);
        snap.spot_prices
            .push(spot_point("m6i.large", az, WINDOWS, 0.120, at));
    }
    // The setting accepts each of these as "Windows, optionally followed by (Amazon VPC)".
    for value in ["Windows", "Windows(Amazon VPC)", " Windows (Amazon VPC) "] {
        for way in ways(&[], "spot-product-description", value) {
            let plan = way.plan(snap.clone());
            let l = launches(&plan);
            assert_eq!(l.len(), 1, "{}: {plan:#?}", way.label);
            assert_eq!(l[0].candidates, ["m6i.large"], "{}", way.label);
            assert_eq!(l[0].product, WINDOWS, "{}", way.label);
        }
    }
}

#[test]
fn replacements_per_pass_sets_how_many_clones_a_pass_launches() {
    let default = default_way(&[]).plan(snapshot(8));
    assert_eq!(launches(&default).len(), 2, "25% of 8");
    assert_eq!(
        count_skips(&default, |s| matches!(s, Skip::BatchLimit { limit: 2 })),
        6
    );
    for way in ways(&[], "replacements-per-pass", "1") {
        let plan = way.plan(snapshot(8));
        assert_eq!(launches(&plan).len(), 1, "{}", way.label);
        assert_eq!(
            count_skips(&plan, |s| matches!(s, Skip::BatchLimit { limit: 1 })),
            7,
            "{}",
            way.label
        );
    }
    for way in ways(&[], "replacements-per-pass", "50%") {
        let plan = way.plan(snapshot(8));
        assert_eq!(launches(&plan).len(), 4, "{}", way.label);
        assert_eq!(
            count_skips(&plan, |s| matches!(s, Skip::BatchLimit { limit: 4 })),
            4,
            "{}",
            way.label
        );
    }
}

#[test]
fn pools_per_az_sets_how_many_spot_pools_each_az_spreads_over() {
    // Nine instances, three per AZ, all launched at once, every pool near enough in price.
    let base = [
        ("replacements-per-pass", "100%"),
        ("spread-price-margin", "100"),
    ];
    let default = first_pools(&default_way(&base).plan(snapshot(9)));
    assert_eq!(default.len(), 3, "{default:?}");
    for (az, p) in &default {
        assert_eq!(p.len(), 3, "{az}: three pools by default: {default:?}");
    }
    for (value, want) in [
        ("1", vec!["m5a.large"]),
        ("2", vec!["m5a.large", "m6i.large"]),
    ] {
        for way in ways(&base, "pools-per-az", value) {
            let got = first_pools(&way.plan(snapshot(9)));
            for (az, p) in &got {
                let p: Vec<&str> = p.iter().map(String::as_str).collect();
                assert_eq!(p, want, "{}: {az}", way.label);
            }
        }
    }
}

/// The pools each AZ's launches lead with (the first candidate of each clone).
fn first_pools(plan: &Plan) -> BTreeMap<String, BTreeSet<String>> {
    let mut by_az: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for l in launches(plan) {
        by_az
            .entry(l.az)
            .or_default()
            .insert(l.candidates[0].clone());
    }
    by_az
}

#[test]
fn spread_price_margin_spreads_only_over_pools_near_the_cheapest_but_over_three_in_all() {
    // m5a.large 0.035, m6i.large 0.045 (29% more), m5.large 0.055: three AZs of three.
    for (value, want) in [
        ("5", vec!["m5a.large"]),
        ("30", vec!["m5a.large", "m6i.large"]),
        ("100", vec!["m5.large", "m5a.large", "m6i.large"]),
    ] {
        for way in ways(&ALL_AT_ONCE, "spread-price-margin", value) {
            let got = first_pools(&way.plan(snapshot(9)));
            assert_eq!(got.len(), 3, "{}: {got:?}", way.label);
            for (az, p) in &got {
                let p: Vec<&str> = p.iter().map(String::as_str).collect();
                assert_eq!(p, want, "{}: {az}", way.label);
            }
        }
    }
    // A group in one AZ spreads over three pools there, whatever they cost.
    let mut one_az = snapshot(9);
    for i in one_az.instances.values_mut() {
        i.availability_zone = "us-east-1a".into();
    }
    let got = first_pools(&default_way(&ALL_AT_ONCE).plan(one_az));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got["us-east-1a"].len(), 3, "{got:?}");
}

#[test]
fn allocation_strategy_is_what_each_fleet_asks_ec2_to_choose_by() {
    let strategies = |plan: &Plan| -> BTreeSet<&'static str> {
        plan.actions()
            .filter_map(|(_, a)| match a {
                Action::LaunchClone { fleet, .. } => {
                    Some(fleet.as_ref().expect("a fleet launch").strategy.name())
                }
                _ => None,
            })
            .collect()
    };
    let default = default_way(&ALL_AT_ONCE).plan(snapshot(9));
    assert_eq!(
        strategies(&default),
        BTreeSet::from(["price-capacity-optimized"])
    );
    for way in ways(
        &ALL_AT_ONCE,
        "allocation-strategy",
        "capacity-optimized-prioritized",
    ) {
        let plan = way.plan(snapshot(9));
        assert_eq!(
            strategies(&plan),
            BTreeSet::from(["capacity-optimized-prioritized"]),
            "{}",
            way.label
        );
    }
}

#[test]
fn spot_price_window_minutes_decides_whether_a_price_spike_45_minutes_ago_counts() {
    let mut snap = snapshot(1);
    // m5a.large spiked above on-demand 45 minutes ago and was back five minutes later.
    for az in AZS {
        let spike = spot_point("m5a.large", az, LINUX, 0.5, now() - Duration::minutes(45));
        let back = spot_point("m5a.large", az, LINUX, 0.035, now() - Duration::minutes(40));
        snap.spot_prices.extend([spike, back]);
    }
    let default = launches(&default_way(&[]).plan(snap.clone()));
    assert_eq!(
        default[0].candidates,
        ["m6i.large", "m5.large"],
        "the spike counts over 60 min"
    );
    for way in ways(&[], "spot-price-window-minutes", "30") {
        let l = launches(&way.plan(snap.clone()));
        assert_eq!(
            l[0].candidates,
            ["m5a.large", "m6i.large", "m5.large"],
            "{}: the spike is outside 30 min",
            way.label
        );
    }
}

#[test]
fn cron_schedule_stops_launches_outside_its_hours() {
    // Noon UTC on a Thursday.
    assert_eq!(launches(&default_way(&[]).plan(snapshot(3))).len(), 1);
    for way in ways(&[], "cron-schedule", "0-6 *") {
        let plan = way.plan(snapshot(3));
        assert!(launches(&plan).is_empty(), "{}", way.label);
        assert!(
            matches!(group_skips(&plan).as_slice(), [Skip::OutsideSchedule { schedule, .. }] if schedule == "0-6 *"),
            "{}: {plan:#?}",
            way.label
        );
    }
    // Weekdays count too: weekends only.
    for way in ways(&[], "cron-schedule", "* 0,6") {
        assert!(launches(&way.plan(snapshot(3))).is_empty(), "{}", way.label);
    }
    // Inside the hours: acts.
    for way in ways(&[], "cron-schedule", "9-17 1-5") {
        assert_eq!(launches(&way.plan(snapshot(3))).len(), 1, "{}", way.label);
    }
}

#[test]
fn cron_timezone_judges_the_schedule_in_that_timezone() {
    // 9-17 contains noon UTC, but not 05:00 in Los Angeles (PDT, UTC-7).
    let schedule = [("cron-schedule", "9-17 *")];
    assert_eq!(launches(&default_way(&schedule).plan(snapshot(3))).len(), 1);
    for way in ways(&schedule, "cron-timezone", "America/Los_Angeles") {
        let plan = way.plan(snapshot(3));
        assert!(launches(&plan).is_empty(), "{}", way.label);
        assert!(
            matches!(group_skips(&plan).as_slice(), [Skip::OutsideSchedule { timezone, .. }] if timezone == "America/Los_Angeles"),
            "{}: {plan:#?}",
            way.label
        );
    }
    // And the other way round: 20-22 does not contain noon UTC, but contains 21:00 in Tokyo.
    let evening = [("cron-schedule", "20-22 *")];
    assert!(launches(&default_way(&evening).plan(snapshot(3))).is_empty());
    for way in ways(&evening, "cron-timezone", "Asia/Tokyo") {
        assert_eq!(launches(&way.plan(snapshot(3))).len(), 1, "{}", way.label);
    }
}

#[test]
fn cron_schedule_state_off_acts_only_outside_the_schedule() {
    // With the always-open default schedule, off means never act.
    for way in ways(&[], "cron-schedule-state", "off") {
        let plan = way.plan(snapshot(3));
        assert!(launches(&plan).is_empty(), "{}", way.label);
        assert!(
            matches!(group_skips(&plan).as_slice(), [Skip::OutsideSchedule { state, .. }] if state == "off"),
            "{}: {plan:#?}",
            way.label
        );
    }
    // Night-time window: noon is outside it, so on stops launches and off allows them.
    let night = [("cron-schedule", "0-6 *")];
    assert!(launches(&default_way(&night).plan(snapshot(3))).is_empty());
    for way in ways(&night, "cron-schedule-state", "off") {
        assert_eq!(launches(&way.plan(snapshot(3))).len(), 1, "{}", way.label);
    }
}

/// The fixture with one running, unattached spot clone of instance 0, launched `age` ago.
fn with_clone(age: Duration) -> Snapshot {
    with_clone_in(age, InstanceState::Running)
}

fn with_clone_in(age: Duration, state: InstanceState) -> Snapshot {
    let mut snap = snapshot(3);
    let target = instance_id(0);
    let clone = InstanceBuilder::spot("i-0c10e000000000001", "m5a.large", AZS[0])
        .subnet("subnet-0")
        .state(state)
        .launched(now() - age)
        .image(AMI)
        .clone_of(GROUP, target)
        .build();
    snap.instances.insert(clone.instance_id.clone(), clone);
    snap
}

fn orphaned(plan: &Plan) -> bool {
    plan.actions().any(|(_, a)| {
        matches!(a, Action::TerminateOrphan { reason: OrphanReason::Timeout, clone } if clone == "i-0c10e000000000001")
    })
}

fn swapped(plan: &Plan) -> bool {
    plan.actions()
        .any(|(_, a)| matches!(a, Action::Swap { clone, .. } if clone == "i-0c10e000000000001"))
}

#[test]
fn orphan_timeout_minutes_sets_how_long_a_stuck_clone_may_wait() {
    // A clone still pending two hours after launch is stuck. Grace 5 min + default 60 min
    // timeout < 120 min: it is an orphan. With 180 minutes it may still wait.
    let stuck = with_clone_in(Duration::hours(2), InstanceState::Pending);
    assert!(orphaned(&default_way(&[]).plan(stuck.clone())));
    for way in ways(&[], "orphan-timeout-minutes", "180") {
        let plan = way.plan(stuck.clone());
        assert!(!orphaned(&plan), "{}: {plan:#?}", way.label);
    }
    // And shorter: a clone pending for 30 minutes waits by default, is an orphan after 10.
    let young = with_clone_in(Duration::minutes(30), InstanceState::Pending);
    assert!(!orphaned(&default_way(&[]).plan(young.clone())));
    for way in ways(&[], "orphan-timeout-minutes", "10") {
        assert!(orphaned(&way.plan(young.clone())), "{}", way.label);
    }
}

#[test]
fn orphan_timeout_minutes_ends_a_clone_the_schedule_keeps_from_swapping() {
    // Outside the schedule, a ready clone cannot be swapped: after the timeout it goes.
    let closed = [("cron-schedule", "0-6 *")];
    let old = with_clone(Duration::hours(2));
    assert!(orphaned(&default_way(&closed).plan(old.clone())));
    for way in ways(&closed, "orphan-timeout-minutes", "180") {
        assert!(!orphaned(&way.plan(old.clone())), "{}", way.label);
    }
}

/// The group behind a target group, with a clone attached for the first instance `attached`
/// ago that the target group still calls `initial`.
fn with_clone_attached_unhealthy(attached: Duration) -> Snapshot {
    let tg = "arn:aws:elasticloadbalancing:us-east-1:111122223333:targetgroup/web/0123456789abcdef";
    let mut snap = snapshot(3);
    let clone_id = "i-0c10e000000000001";
    let clone = InstanceBuilder::spot(clone_id, "m5a.large", AZS[0])
        .subnet("subnet-0")
        .launched(now() - attached - Duration::minutes(10))
        .image(AMI)
        .clone_of(GROUP, instance_id(0))
        .tag(tags::ATTACHED, (now() - attached).to_rfc3339())
        .in_group(GROUP)
        .build();
    snap.instances.insert(clone_id.into(), clone);
    let g = &mut snap.groups[0];
    g.target_group_arns.push(tg.into());
    g.desired_capacity += 1;
    g.members.push(spotswap::model::Member {
        instance_id: clone_id.into(),
        lifecycle_state: "InService".into(),
        health_status: "Healthy".into(),
        protected_from_scale_in: false,
    });
    snap.target_health.insert(
        clone_id.into(),
        vec![spotswap::model::TargetHealth {
            load_balancer: spotswap::model::LoadBalancer::TargetGroup(tg.into()),
            state: "initial".into(),
        }],
    );
    snap
}

fn undone(plan: &Plan) -> bool {
    plan.actions()
        .any(|(_, a)| matches!(a, Action::UndoSwap { clone, .. } if clone == "i-0c10e000000000001"))
}

#[test]
fn healthy_timeout_minutes_sets_how_long_an_attached_clone_may_stay_unhealthy() {
    // Attached 15 minutes ago and still `initial`: past the default 10, the swap is undone;
    // with 30 it waits (the instance it replaces stays, skip clone-not-healthy).
    let snap = with_clone_attached_unhealthy(Duration::minutes(15));
    let plan = default_way(&[]).plan(snap.clone());
    assert!(undone(&plan), "{plan:#?}");
    for way in ways(&[], "healthy-timeout-minutes", "30") {
        let plan = way.plan(snap.clone());
        assert!(!undone(&plan), "{}: {plan:#?}", way.label);
        assert_eq!(
            count_skips(
                &plan,
                |s| matches!(s, Skip::CloneNotHealthy { state, undone_in_seconds, .. }
                if state == "initial" && *undone_in_seconds == 15 * 60)
            ),
            1,
            "{}: {plan:#?}",
            way.label
        );
    }
    // And shorter: attached 3 minutes ago waits by default, is undone after 2.
    let young = with_clone_attached_unhealthy(Duration::minutes(3));
    assert!(!undone(&default_way(&[]).plan(young.clone())));
    for way in ways(&[], "healthy-timeout-minutes", "2") {
        assert!(undone(&way.plan(young.clone())), "{}", way.label);
    }
}

#[test]
fn a_ready_clone_past_the_timeout_is_swapped_rather_than_replaced() {
    // Terminating a ready clone only to launch another would pay twice for one swap.
    let plan = default_way(&[]).plan(with_clone(Duration::hours(2)));
    assert!(swapped(&plan) && !orphaned(&plan), "{plan:#?}");
}

#[test]
fn a_stuck_clone_terminated_by_the_timeout_makes_its_group_back_off() {
    let plan = default_way(&[]).plan(with_clone_in(Duration::hours(2), InstanceState::Pending));
    assert!(orphaned(&plan));
    assert!(launches(&plan).is_empty(), "{plan:#?}");
    let recorded = plan.actions().any(|(_, a)| {
        matches!(a, Action::BackOff { backoff } if backoff.failures == 1
            && backoff.reason == "timeout:pending")
    });
    assert!(recorded, "{plan:#?}");
    let waits = plan
        .skips()
        .any(|(d, s)| d.instance.is_none() && matches!(s, Skip::BackingOff { failures: 1, .. }));
    assert!(waits, "{plan:#?}");
}

#[test]
fn interruption_cooldown_minutes_sets_how_long_an_interrupted_pool_is_avoided() {
    // m5a.large in us-east-1a interrupted the group 90 minutes ago.
    let entry = Interruption {
        instance_type: "m5a.large".into(),
        availability_zone: AZS[0].into(),
        at: now() - Duration::minutes(90),
        trouble: Default::default(),
    }
    .entry();
    let mut snap = snapshot(1);
    group_mut(&mut snap)
        .tags
        .insert(tags::INTERRUPTED.into(), entry);
    // Default 60 minutes: the cool-down is over.
    let default = launches(&default_way(&[]).plan(snap.clone()));
    assert_eq!(launch_in(&default, AZS[0]).candidates[0], "m5a.large");
    for way in ways(&[], "interruption-cooldown-minutes", "120") {
        let plan = way.plan(snap.clone());
        let l = launches(&plan);
        let l = launch_in(&l, AZS[0]);
        assert_eq!(l.candidates, ["m6i.large", "m5.large"], "{}", way.label);
        assert_eq!(l.replaces, instance_id(0));
    }
    // A pool that had no capacity for a clone is avoided the same way, for the same time.
    let full = Interruption {
        instance_type: "m5a.large".into(),
        availability_zone: AZS[0].into(),
        at: now() - Duration::minutes(90),
        trouble: tags::PoolTrouble::NoCapacity,
    }
    .entry();
    let mut snap = snapshot(1);
    group_mut(&mut snap)
        .tags
        .insert(tags::INTERRUPTED.into(), full);
    let default = launches(&default_way(&[]).plan(snap.clone()));
    assert_eq!(launch_in(&default, AZS[0]).candidates[0], "m5a.large");
    for way in ways(&[], "interruption-cooldown-minutes", "120") {
        let plan = way.plan(snap.clone());
        let l = launches(&plan);
        assert_eq!(
            launch_in(&l, AZS[0]).candidates,
            ["m6i.large", "m5.large"],
            "{}",
            way.label
        );
    }
    // Other AZs are not affected by the entry.
    let mut snap = snapshot(2);
    let entry = Interruption {
        instance_type: "m5a.large".into(),
        availability_zone: AZS[0].into(),
        at: now() - Duration::minutes(90),
        trouble: Default::default(),
    }
    .entry();
    group_mut(&mut snap)
        .tags
        .insert(tags::INTERRUPTED.into(), entry);
    for way in ways(&ALL_AT_ONCE, "interruption-cooldown-minutes", "120") {
        let l = launches(&way.plan(snap.clone()));
        assert!(
            launch_in(&l, AZS[1])
                .candidates
                .contains(&"m5a.large".to_string()),
            "{}",
            way.label
        );
        assert!(
            !launch_in(&l, AZS[0])
                .candidates
                .contains(&"m5a.large".to_string()),
            "{}",
            way.label
        );
    }
}

#[test]
fn allow_burstable_lets_burstable_types_replace_non_burstable_instances() {
    let default = launches(&default_way(&[]).plan(snapshot(1)));
    assert!(!default[0].candidates.contains(&"t3.large".to_string()));
    for way in ways(&[], "allow-burstable", "true") {
        let l = launches(&way.plan(snapshot(1)));
        // t3.large is the cheapest pool now.
        assert_eq!(
            l[0].candidates,
            ["t3.large", "m5a.large", "m6i.large", "m5.large"],
            "{}",
            way.label
        );
    }
}
