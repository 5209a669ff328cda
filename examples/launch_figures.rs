//! `make figures`: how spotswap's launches behave at scale, measured over the in-memory cloud
//! (the component-test AWS account), in paused time. Never a test: it prints figures.
//!
//! ```text
//! cargo run --example launch_figures
//! ```
//!
//! It prints, with the default settings:
//! - the passes a group of N on-demand instances takes to convert (N = 20, 60, 200), against
//!   the `ceil(N / batch) + 1` the README promises;
//! - the spot pools (type and AZ) each converted group ends on, per AZ;
//! - the launch calls (CreateFleet, and RunInstances for clones that must restate network
//!   interfaces: none here) of the first pass over 10 and 100 groups of 40 instances, with the
//!   default batch (25%) and with the whole group at once (100%): one fleet per group, AZ and
//!   pool set, so calls grow with groups x AZs, not with instances.
//!
//! The account has three AZs, one launch configuration (m5.large, Linux) and six compatible
//! spot-priced types, five of them within 5% of the cheapest (the default
//! `spread-price-margin`), every pool with capacity.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::TimeDelta;
use spotswap::cloud::memory::{GroupBuilder, MemoryCloud};
use spotswap::model::{
    Ami, Architecture, LaunchRef, LaunchSpec, Market, OsPrices, SpotPricePoint, Virtualization,
};
use spotswap::pass::{self, PassOptions};
use spotswap::report::PassReport;
use spotswap::settings::Settings;

const REGION: &str = "us-east-1";
const AZS: [&str; 3] = ["us-east-1a", "us-east-1b", "us-east-1c"];
const AMI: &str = "ami-0123456789abcdef0";
const GRACE_SECS: u32 = 300;
/// Linux spot prices, the same in every AZ; m5.large is $0.096 on-demand. Five are within 5%
/// of the cheapest, so groups spread over three pools per AZ (`spread-price-margin`).
const SPOT: [(&str, f64); 6] = [
    ("m5a.large", 0.0340),
    ("m6a.large", 0.0344),
    ("m6i.large", 0.0348),
    ("m5.large", 0.0352),
    ("m5d.large", 0.0356),
    ("m7i.large", 0.0380),
];

fn launch_ref() -> LaunchRef {
    LaunchRef::LaunchConfiguration { name: "lc".into() }
}

/// An account with `groups` opted-in groups of `size` on-demand m5.large each.
fn account(groups: usize, size: u32) -> MemoryCloud {
    let cloud = MemoryCloud::new();
    cloud.add_region(REGION, &AZS);
    cloud.put_launch_spec(
        REGION,
        &launch_ref(),
        LaunchSpec {
            image_id: AMI.into(),
            instance_type: Some("m5.large".into()),
            ..LaunchSpec::default()
        },
    );
    cloud.put_ami(
        REGION,
        Ami {
            image_id: AMI.into(),
            architecture: Some(Architecture::X86_64),
            virtualization: Some(Virtualization::Hvm),
            ena_support: Some(true),
            platform_details: Some("Linux/UNIX".into()),
            ..Ami::default()
        },
    );
    let od = |p: f64| OsPrices {
        linux: Some(p),
        ..OsPrices::default()
    };
    cloud.set_on_demand(
        REGION,
        BTreeMap::from([("m5.large".to_string(), od(0.096))]),
    );
    let at = cloud.now() - TimeDelta::minutes(90);
    for az in AZS {
        for (t, p) in SPOT {
            cloud.put_spot_price(
                REGION,
                SpotPricePoint {
                    instance_type: t.into(),
                    availability_zone: az.into(),
                    product_description: "Linux/UNIX (Amazon VPC)".into(),
                    price: p,
                    timestamp: at,
                },
            );
        }
    }
    for g in 0..groups {
        let name = format!("group-{g:03}");
        cloud.put_group(
            REGION,
            GroupBuilder::new(&name)
                .min(0)
                .desired(size)
                .max(size + 10)
                .grace_period_secs(GRACE_SECS)
                .tag("spot-enabled", "true")
                .launch(launch_ref())
                .build(),
        );
        cloud.launch_group_members(REGION, &name, size as usize, "m5.large", &[]);
    }
    cloud
}

async fn pass(cloud: &MemoryCloud, settings: &Settings) -> PassReport {
    let opts = PassOptions {
        dry_run: false,
        now: cloud.now(),
        deadline: None,
        cache: None,
        preflight: None,
        stop: None,
    };
    pass::run(cloud, settings, &opts)
        .await
        .expect("the pass starts")
}

fn acted(report: &PassReport) -> bool {
    report
        .regions
        .iter()
        .flat_map(|r| r.plan.iter())
        .any(|p| p.actions().next().is_some())
}

/// The spot pools of a group's members, by AZ.
fn pools(cloud: &MemoryCloud, group: &str) -> BTreeMap<String, BTreeSet<String>> {
    let g = cloud.group(REGION, group).expect("the group exists");
    let mut by_az: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &g.members {
        let i = cloud.instance(REGION, &m.instance_id).expect("a member");
        if i.market == Market::Spot {
            by_az
                .entry(i.availability_zone.clone())
                .or_default()
                .insert(i.instance_type.clone());
        }
    }
    by_az
}

#[tokio::main(flavor = "current_thread", start_paused = true)]
async fn main() {
    let settings = Settings::default();
    println!("Converting one group (default settings: replacements-per-pass 25%, pools-per-az 3)");
    println!(
        "{:>6} {:>8} {:>10} {:>9}  pools per AZ at the end",
        "N", "batch", "promised", "passes"
    );
    for n in [20u32, 60, 200] {
        let cloud = account(1, n);
        let mut passes = 0;
        for _ in 0..40 {
            let report = pass(&cloud, &settings).await;
            if !acted(&report) {
                break;
            }
            passes += 1;
            cloud.advance(Duration::from_secs(300));
        }
        let batch = (n as f64 * 0.25).floor().max(1.0) as u32;
        let promised = n.div_ceil(batch) + 1;
        let per_az: Vec<String> = pools(&cloud, "group-000")
            .iter()
            .map(|(az, p)| format!("{az}: {}", p.len()))
            .collect();
        println!(
            "{n:>6} {batch:>8} {promised:>10} {passes:>9}  {}",
            per_az.join(", ")
        );
    }

    println!();
    println!("Launch calls in the first pass, groups of 40 instances over 3 AZs");
    println!(
        "{:>7} {:>6} {:>10} {:>12} {:>13} {:>16}",
        "groups", "batch", "launched", "CreateFleet", "RunInstances", "calls per group"
    );
    for groups in [10usize, 100] {
        for batch in ["25%", "100%"] {
            let settings =
                Settings::from_pairs([("replacements-per-pass", batch)]).expect("valid settings");
            let cloud = account(groups, 40);
            let report = pass(&cloud, &settings).await;
            let calls = |op: &str| {
                report
                    .regions
                    .iter()
                    .map(|r| r.calls.get(op).copied().unwrap_or(0))
                    .sum::<u64>()
            };
            let (fleets, runs) = (calls("CreateFleet"), calls("RunInstances"));
            println!(
                "{groups:>7} {batch:>6} {:>10} {fleets:>12} {runs:>13} {:>16.1}",
                report.totals.clones_launched,
                (fleets + runs) as f64 / groups as f64
            );
        }
    }
}
