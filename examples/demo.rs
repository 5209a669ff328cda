//! `make demo`: spotswap's main job, end to end, on a local AWS emulator.
//!
//! It starts the emulator (moto server with realistic spot and on-demand prices) on
//! 127.0.0.1, seeds an account in two regions with the kinds of groups operators run, then
//! runs the real `spotswap` binary pass after pass, exactly as the 5-minute schedule would,
//! until every opted-in group has converged, printing what each pass decided, did and saved.
//! It stops the emulator when done. Nothing here reaches the internet.

#[path = "../tests/it/moto/mod.rs"]
mod moto;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use moto::Emulator;
use moto::seed::{Account, GroupSpec};

const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
/// Short grace periods, so a demo pass can swap what the previous one launched.
const GRACE_SECS: i32 = 4;
const MAX_PASSES: usize = 12;

fn spotswap_binary() -> PathBuf {
    // target/<profile>/examples/demo -> target/<profile>/spotswap
    let exe = std::env::current_exe().expect("the demo knows where it runs from");
    let dir = exe
        .parent()
        .and_then(|p| p.parent())
        .expect("the demo runs from target/<profile>/examples");
    let bin = dir.join("spotswap");
    assert!(
        bin.exists(),
        "{} is missing: run the demo with `make demo`, which builds it",
        bin.display()
    );
    bin
}

fn spotswap(emu: &Emulator, args: &[&str]) -> (String, i32) {
    let out = Command::new(spotswap_binary())
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", emu.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "demo")
        .env("AWS_SECRET_ACCESS_KEY", "demo")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("REGIONS", REGIONS.join(","))
        .env("REPLACEMENTS_PER_PASS", "50%")
        .output()
        .expect("spotswap runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (text, out.status.code().unwrap_or(-1))
}

/// Seeds the account; returns each group as (region, name, description), and each region's
/// handle for reading the result.
async fn seed(emu: &Emulator) -> (Vec<(String, String, String)>, Vec<(String, Account)>) {
    let mut described = Vec::new();
    let mut add = |region: &str, spec: &GroupSpec, what: &str| {
        described.push((region.to_string(), spec.name.clone(), what.to_string()));
    };
    let east = Account::create(&emu.sdk_config("us-east-1")).await;
    let groups = [
        (
            GroupSpec::new("web", "m5.large")
                .capacity(1, 4, 8)
                .launch_configuration("#!/bin/bash\n/opt/web/start --port 8080\n")
                .tag("team", "storefront", true),
            "launch configuration with user data, 4 x m5.large",
        ),
        (
            GroupSpec::new("api", "c5.large")
                .capacity(1, 3, 6)
                .launch_template("#!/bin/bash\n/opt/api/start\n"),
            "launch template on $Latest, 3 x c5.large",
        ),
        (
            GroupSpec::new("batch", "m5.large")
                .capacity(1, 2, 4)
                .without_tag("spot-enabled"),
            "not opted in (no spot-enabled tag): must stay as it is",
        ),
        (
            GroupSpec::new("reports", "r5.large").capacity(1, 3, 6).tag(
                "spotswap:min-on-demand-number",
                "1",
                false,
            ),
            "keeps 1 on-demand (tag spotswap:min-on-demand-number=1), 3 x r5.large",
        ),
        (
            GroupSpec::new("checkout", "m5.xlarge").capacity(2, 2, 2),
            "at MaxSize (2 of 2): swaps need MaxSize raised and restored",
        ),
    ];
    for (spec, what) in groups {
        let spec = spec.grace_secs(GRACE_SECS);
        east.create_group(&spec).await;
        add("us-east-1", &spec, what);
    }
    let west = Account::create(&emu.sdk_config("eu-west-1")).await;
    let mut west_groups = vec![(
        GroupSpec::new("cache", "i3.large").capacity(1, 2, 4),
        "instance store (475 GB NVMe SSD), 2 x i3.large",
    )];
    if let Some(arm) = &west.arm64_ami {
        west_groups.push((
            GroupSpec::new("graviton", "m6g.large")
                .capacity(1, 2, 4)
                .image(arm),
            "arm64 AMI on Graviton, 2 x m6g.large",
        ));
    }
    for (spec, what) in west_groups {
        let spec = spec.grace_secs(GRACE_SECS);
        west.create_group(&spec).await;
        add("eu-west-1", &spec, what);
    }
    let accounts = vec![
        ("us-east-1".to_string(), east),
        ("eu-west-1".to_string(), west),
    ];
    (described, accounts)
}

/// Prints the spot pools (type and AZ) each group's in-service members run on.
async fn print_pools(groups: &[(String, String, String)], accounts: &[(String, Account)]) {
    println!("Spot pools per group at the end (type @ AZ: instances):");
    for (region, name, _) in groups {
        let Some((_, account)) = accounts.iter().find(|(r, _)| r == region) else {
            continue;
        };
        let mut pools: BTreeMap<String, u32> = BTreeMap::new();
        let mut on_demand = 0;
        for (id, spot) in account.in_service_members(name).await {
            if !spot {
                on_demand += 1;
                continue;
            }
            let i = account.instance(&id).await;
            let ty = i.instance_type().map(|t| t.as_str().to_string());
            let az = i
                .placement()
                .and_then(|p| p.availability_zone())
                .map(str::to_string);
            let pool = format!("{} @ {}", ty.unwrap_or_default(), az.unwrap_or_default());
            *pools.entry(pool).or_default() += 1;
        }
        let pools: Vec<String> = pools.iter().map(|(p, n)| format!("{p}: {n}")).collect();
        let pools = if pools.is_empty() {
            "-".to_string()
        } else {
            pools.join(", ")
        };
        println!("  {region:<10} {name:<9} {pools} (on-demand: {on_demand})");
    }
}

/// Whether a pass report says nothing is left to do: no launch or swap planned and no clone
/// waiting.
fn converged(report: &serde_json::Value) -> bool {
    report["regions"].as_array().is_some_and(|regions| {
        regions.iter().all(|r| {
            r["plan"]["decisions"].as_array().is_some_and(|ds| {
                ds.iter().all(|d| {
                    let act = d["verdict"]["act"]["type"].as_str();
                    let skip = d["verdict"]["skip"]["reason"].as_str();
                    !matches!(
                        act,
                        Some("launch-clone" | "launch-on-demand" | "swap" | "complete-swap")
                    ) && !matches!(
                        skip,
                        Some("clone-not-ready" | "clone-starting" | "batch-limit")
                    )
                })
            })
        })
    })
}

#[tokio::main]
async fn main() {
    println!(
        "spotswap demo: a local AWS emulator, a seeded account, and passes until convergence.\n"
    );
    let emu = tokio::task::spawn_blocking(Emulator::start)
        .await
        .expect("the emulator starts");
    println!(
        "Emulator (moto server with realistic prices) listening on {}\n",
        emu.endpoint()
    );
    let (groups, accounts) = seed(&emu).await;
    println!(
        "The account: Auto Scaling groups in {}",
        REGIONS.join(" and ")
    );
    for (region, name, what) in &groups {
        println!("  {region:<10} {name:<9} {what}");
    }
    println!(
        "\nGroups opt in with the tag spot-enabled=true. Each pass launches spot clones for a \
         batch of\non-demand instances (here 50% per pass), and swaps in clones older than the \
         group's grace\nperiod ({GRACE_SECS} s here): attach the clone, then terminate the \
         on-demand instance through the group.\n"
    );
    for pass in 1..=MAX_PASSES {
        println!("================ pass {pass}: $ spotswap run ================");
        let (text, code) = spotswap(&emu, &["run"]);
        print!("{text}");
        if code != 0 {
            println!("(exit code {code}: some actions failed; the next pass retries them)");
        }
        let (json, _) = spotswap(&emu, &["plan", "--output", "json"]);
        let next: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        if converged(&next) {
            println!("\nEvery opted-in group has converged after {pass} passes.\n");
            println!("================ $ spotswap report ================");
            print!("{}", spotswap(&emu, &["report"]).0);
            println!();
            print_pools(&groups, &accounts).await;
            println!(
                "\nThe not-opted-in group `batch` was never touched; `reports` kept one \
                 on-demand instance;\n`checkout` ended with its MaxSize of 2. Stopping the \
                 emulator."
            );
            return;
        }
        tokio::time::sleep(Duration::from_secs(GRACE_SECS as u64 + 1)).await;
    }
    println!("\nNot converged after {MAX_PASSES} passes: see the skips above for why.");
    std::process::exit(1);
}
