//! End to end: the real pass, through the real AWS SDK for Rust, against the local emulator
//! (moto server with realistic prices) on 127.0.0.1. Each test starts its own emulator, seeds
//! an account, runs passes, and asserts the end state the way an operator would check it.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use chrono::Utc;
use spotswap::cloud::aws::AwsAccount;
use spotswap::pass::{self, PassOptions};
use spotswap::plan::{ActionKind, Skip, Verdict};
use spotswap::report::{PassReport, Status};
use spotswap::settings::Settings;

use crate::moto::Emulator;
use crate::moto::seed::{Account, GroupSpec};

const REGION: &str = "us-east-1";

/// An emulator with a seeded account.
struct World {
    emu: Emulator,
    account: Account,
}

async fn world() -> World {
    let emu = tokio::task::spawn_blocking(Emulator::start)
        .await
        .expect("the emulator starts");
    let account = Account::create(&emu.sdk_config(REGION)).await;
    World { emu, account }
}

impl World {
    /// One pass, in process, as `spotswap run` makes it.
    async fn pass(&self, settings: &[(&str, &str)]) -> PassReport {
        // The emulator lists every region; the pass covers the one seeded.
        let settings = Settings::from_pairs(settings.iter().copied().chain([("regions", REGION)]))
            .expect("valid settings");
        let aws = AwsAccount::new(self.emu.sdk_config(REGION));
        let opts = PassOptions::new(&settings, Utc::now());
        let report = pass::run(&aws, &settings, &opts)
            .await
            .expect("the pass starts");
        for r in &report.regions {
            assert!(r.error.is_none(), "region error: {:?}", r.error);
        }
        report
    }

    /// The `spotswap` binary, pointed at the emulator through the standard AWS variables.
    fn spotswap(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_spotswap"));
        c.args(args)
            .env_clear()
            .env("AWS_ENDPOINT_URL", self.emu.endpoint())
            .env("AWS_REGION", REGION)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("REGIONS", REGION)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        c
    }

    /// In-service members of a group, with whether each runs on spot.
    async fn members(&self, group: &str) -> BTreeMap<String, bool> {
        self.account.in_service_members(group).await
    }

    /// Live clones (tagged `spotswap:group`), by id, with the instance each replaces.
    async fn clones(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for i in self.account.all_instances().await {
            let state = i
                .state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string());
            if !matches!(state.as_deref(), Some("pending" | "running")) {
                continue;
            }
            let tags = self.account.tags_of(i.instance_id().unwrap()).await;
            if let Some(r) = tags.get("spotswap:replaces") {
                out.insert(i.instance_id().unwrap().to_string(), r.clone());
            }
        }
        out
    }

    /// Runs passes until the group has no on-demand instance left beyond `keep`, checking
    /// after every pass that capacity never dipped and desired capacity never moved.
    async fn converge(&self, group: &str, keep: usize, settings: &[(&str, &str)]) -> usize {
        let start = self.account.group(group).await;
        let desired = start.desired_capacity().unwrap();
        for pass in 1..=12 {
            let report = self.pass(settings).await;
            assert_eq!(report.totals.failures, 0, "pass {pass}: {report:#?}");
            let g = self.account.group(group).await;
            assert_eq!(
                g.desired_capacity(),
                Some(desired),
                "pass {pass}: desired capacity"
            );
            let members = self.members(group).await;
            assert!(
                members.len() as i32 >= desired,
                "pass {pass}: capacity dipped to {} of {desired}",
                members.len()
            );
            let on_demand = members.values().filter(|spot| !**spot).count();
            if on_demand <= keep && self.unattached_clones(group).await == 0 {
                return pass;
            }
            // Past the grace period before the next pass.
            let grace = g.health_check_grace_period().unwrap_or(0) as u64;
            tokio::time::sleep(Duration::from_millis(grace * 1000 + 300)).await;
        }
        panic!(
            "{group} did not converge in 12 passes: {:?}",
            self.members(group).await
        );
    }

    /// Live clones launched for `group` that are not (yet) among its members.
    async fn unattached_clones(&self, group: &str) -> usize {
        let members: BTreeSet<String> = self.members(group).await.into_keys().collect();
        let mut n = 0;
        for c in self.clones().await.keys() {
            let tags = self.account.tags_of(c).await;
            if tags.get("spotswap:group").map(String::as_str) == Some(group) && !members.contains(c)
            {
                n += 1;
            }
        }
        n
    }

    /// Everything an operator could see change: groups (sizes, tags, members) and instances.
    async fn state(&self) -> String {
        self.account.state().await
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_configuration_group_converges_to_spot_without_a_capacity_dip() {
    let w = world().await;
    w.account
        .create_group(
            &GroupSpec::new("web", "m5.large")
                .capacity(1, 4, 8)
                .grace_secs(1),
        )
        .await;
    let before: BTreeSet<String> = w.members("web").await.into_keys().collect();
    w.converge("web", 0, &[("replacements-per-pass", "50%")])
        .await;
    let after = w.members("web").await;
    assert_eq!(after.len(), 4);
    assert!(after.values().all(|spot| *spot), "all spot: {after:?}");
    assert!(
        before.iter().all(|id| !after.contains_key(id)),
        "every original replaced"
    );
    // Each member is a clone of one of the originals, none doubled.
    let clones = w.clones().await;
    let replaced: BTreeSet<&String> = after.keys().filter_map(|id| clones.get(id)).collect();
    assert_eq!(replaced.len(), 4);
    assert!(replaced.iter().all(|r| before.contains(*r)));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_template_group_on_latest_converges_to_spot() {
    let w = world().await;
    let spec = GroupSpec::new("api", "c5.large")
        .launch_template("#!/bin/sh\necho api v2\n")
        .capacity(1, 3, 6)
        .grace_secs(1);
    w.account.create_group(&spec).await;
    // The batch goes out through instant fleets from the group's own template, one per AZ and
    // pool set, never one RunInstances per clone.
    let first = w.pass(&[("replacements-per-pass", "100%")]).await;
    assert_eq!(first.totals.clones_launched, 3, "{first:#?}");
    let calls = &first.regions[0].calls;
    assert!(!calls.contains_key("RunInstances"), "{calls:?}");
    let fleets = calls.get("CreateFleet").copied().unwrap_or(0);
    assert!((1..=3).contains(&fleets), "{calls:?}");
    for (_, clone) in launched(&first) {
        let tags = w.account.tags_of(&clone).await;
        assert_eq!(tags.get("spotswap:group").map(String::as_str), Some("api"));
    }
    w.converge("api", 0, &[("replacements-per-pass", "100%")])
        .await;
    let after = w.members("api").await;
    assert_eq!(after.len(), 3);
    assert!(after.values().all(|spot| *spot), "{after:?}");
    // The clones run the template version $Latest named when they were launched (version 2).
    for id in after.keys() {
        assert_eq!(
            w.account.user_data(id).await.as_deref(),
            Some("#!/bin/sh\necho api v2\n"),
            "{id}"
        );
    }
}

/// The clones a pass launched: the instance each was launched for, and the clone.
fn launched(report: &PassReport) -> Vec<(String, String)> {
    report.regions[0]
        .outcomes
        .iter()
        .filter(|o| o.action == ActionKind::LaunchClone)
        .filter_map(|o| match &o.status {
            Status::Done {
                instance_id: Some(clone),
                ..
            } => Some((o.instance.clone()?, clone.clone())),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clone_has_the_launch_specs_user_data_byte_for_byte_and_the_groups_tags() {
    let w = world().await;
    // User data with bytes that survive only a byte-exact copy.
    let user_data = "#!/bin/bash\nset -eu\necho 'tabs\tand \"quotes\" and ünïcödé' > /tmp/x\n\n";
    let spec = GroupSpec::new("tagged", "m5.large")
        .launch_configuration(user_data)
        .capacity(1, 2, 4)
        .grace_secs(0)
        .tag("team", "payments", true)
        .tag("cost-center", "cc-42", true)
        .tag("not-propagated", "x", false);
    w.account.create_group(&spec).await;
    let report = w.pass(&[]).await;
    assert_eq!(report.totals.clones_launched, 1, "{report:#?}");
    // moto reports a public-IP choice (false) for every launch configuration, and a fleet
    // cannot restate the interface that choice needs: the clone is one RunInstances.
    let calls = &report.regions[0].calls;
    assert_eq!(calls.get("RunInstances"), Some(&1), "{calls:?}");
    let on_demand: Vec<String> = w.members("tagged").await.into_keys().collect();
    let [(_, clone)] = &launched(&report)[..] else {
        panic!("one clone: {report:#?}");
    };
    assert_eq!(w.account.user_data(clone).await.as_deref(), Some(user_data));
    // The launch call tags it with its group and the group's propagated tags...
    let tags = w.account.tags_of(clone).await;
    assert_eq!(
        tags.get("spotswap:group").map(String::as_str),
        Some("tagged")
    );
    assert_eq!(tags.get("spotswap:replaces").map(String::as_str), Some(""));
    assert_eq!(tags.get("team").map(String::as_str), Some("payments"));
    assert_eq!(tags.get("cost-center").map(String::as_str), Some("cc-42"));
    assert!(!tags.contains_key("not-propagated"));
    assert!(tags.keys().all(|k| !k.starts_with("aws:")), "{tags:?}");
    // ...and the swap pairs it with the instance it replaces, whose own tags it then carries.
    let report = w.pass(&[]).await;
    assert_eq!(report.totals.swaps, 1, "{report:#?}");
    let tags = w.account.tags_of(clone).await;
    let replaces = &tags["spotswap:replaces"];
    assert!(
        on_demand.contains(replaces),
        "{replaces} among {on_demand:?}"
    );
    assert_eq!(tags.get("Name").map(String::as_str), Some("tagged"));
    assert!(!tags.contains_key("not-propagated"));
    // Auto Scaling tags its members itself; spotswap copied no `aws:` tag.
    assert!(
        tags.keys()
            .all(|k| !k.starts_with("aws:") || k == "aws:autoscaling:groupName"),
        "{tags:?}"
    );
    // A spot instance, in the replaced instance's subnet, with the launch spec's profile and key.
    let c = w.account.instance(clone).await;
    let original = w.account.instance(replaces).await;
    assert_eq!(c.instance_lifecycle().map(|l| l.as_str()), Some("spot"));
    assert_eq!(c.subnet_id(), original.subnet_id());
    assert_eq!(c.key_name(), Some(w.account.key_name.as_str()));
    assert!(c.iam_instance_profile().and_then(|p| p.arn()).is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_with_a_public_ip_interface_gets_clones_with_that_interface_in_the_instances_subnet()
 {
    let w = world().await;
    let spec = GroupSpec::new("public", "m5.large")
        .public_ip_interface()
        .capacity(1, 2, 4);
    w.account.create_group(&spec).await;

    let report = w.pass(&[]).await;

    // EC2 refused every launch of such a group before (a top-level subnet next to the
    // template's interfaces: InvalidParameterCombination). moto cannot show that: it refuses a
    // top-level subnet only next to the request's own interfaces, and ignores a template's
    // interfaces in RunInstances. What it shows is the interface the request now carries:
    // before, the clone came up with moto's default security group and no public IP.
    assert_eq!(report.totals.failures, 0, "{report:#?}");
    assert_eq!(report.totals.clones_launched, 1, "{report:#?}");
    assert_eq!(report.regions[0].calls.get("RunInstances"), Some(&1));
    let [(replaces, clone)] = &launched(&report)[..] else {
        panic!("one clone: {report:#?}");
    };
    let c = w.account.instance(clone).await;
    let original = w.account.instance(replaces).await;
    assert_eq!(c.instance_lifecycle().map(|l| l.as_str()), Some("spot"));
    // In the replaced instance's subnet and AZ, through its primary interface, which carries
    // the template's security group and a public IP.
    let subnet = original.subnet_id().expect("the original runs in a subnet");
    assert_eq!(c.subnet_id(), Some(subnet));
    assert_eq!(
        c.placement().and_then(|p| p.availability_zone()),
        original.placement().and_then(|p| p.availability_zone())
    );
    let interfaces = c.network_interfaces();
    assert_eq!(interfaces.len(), 1, "{interfaces:?}");
    let primary = &interfaces[0];
    assert_eq!(primary.attachment().and_then(|a| a.device_index()), Some(0));
    assert_eq!(primary.subnet_id(), Some(subnet));
    let groups: Vec<&str> = primary
        .groups()
        .iter()
        .filter_map(|g| g.group_id())
        .collect();
    assert!(
        groups.contains(&w.account.security_group_id.as_str()),
        "{groups:?}"
    );
    assert!(
        primary.association().and_then(|a| a.public_ip()).is_some()
            || c.public_ip_address().is_some(),
        "a public IP: {primary:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn groups_not_opted_in_or_with_a_mixed_instances_policy_are_untouched() {
    let w = world().await;
    w.account
        .create_group(
            &GroupSpec::new("manual", "m5.large")
                .without_tag("spot-enabled")
                .grace_secs(0),
        )
        .await;
    w.account
        .create_group(
            &GroupSpec::new("mixed", "m5.large")
                .mixed_instances()
                .grace_secs(0),
        )
        .await;
    let before = w.state().await;
    for _ in 0..2 {
        let report = w.pass(&[("replacements-per-pass", "100%")]).await;
        let plan = report.regions[0].plan.as_ref().unwrap();
        assert_eq!(plan.actions().count(), 0, "{plan:#?}");
        assert!(
            plan.skips()
                .any(|(d, s)| d.group == "mixed" && *s == Skip::MixedInstancesPolicy)
        );
    }
    assert_eq!(w.state().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn minimum_on_demand_by_number_and_by_percentage_is_respected() {
    let w = world().await;
    w.account
        .create_group(
            &GroupSpec::new("by-number", "m5.large")
                .capacity(1, 4, 8)
                .grace_secs(1)
                .tag("spotswap:min-on-demand-number", "2", false),
        )
        .await;
    w.account
        .create_group(
            &GroupSpec::new("by-percent", "m5.large")
                .capacity(1, 4, 8)
                .grace_secs(1)
                .tag("autospotting_min_on_demand_percentage", "50", false),
        )
        .await;
    let settings = [("replacements-per-pass", "100%")];
    w.converge("by-number", 2, &settings).await;
    w.converge("by-percent", 2, &settings).await;
    // More passes change nothing: the floor holds.
    w.pass(&settings).await;
    for g in ["by-number", "by-percent"] {
        let m = w.members(g).await;
        assert_eq!(m.values().filter(|s| !**s).count(), 2, "{g}: {m:?}");
        assert_eq!(m.values().filter(|s| **s).count(), 2, "{g}: {m:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_clone_is_attached_before_the_grace_period_has_passed() {
    let w = world().await;
    w.account
        .create_group(
            &GroupSpec::new("slow", "m5.large")
                .capacity(1, 2, 4)
                .grace_secs(3600),
        )
        .await;
    let first = w.pass(&[]).await;
    assert_eq!(first.totals.clones_launched, 1);
    for _ in 0..2 {
        let report = w.pass(&[]).await;
        assert_eq!(report.totals.swaps, 0, "{report:#?}");
        let waiting = report.regions[0]
            .plan
            .as_ref()
            .unwrap()
            .skips()
            .any(|(_, s)| matches!(s, Skip::CloneNotReady { ready_in_seconds, .. } if *ready_in_seconds > 3000));
        assert!(waiting);
    }
    let members = w.members("slow").await;
    assert!(
        members.values().all(|spot| !*spot),
        "nothing attached: {members:?}"
    );
    assert_eq!(w.unattached_clones("slow").await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_group_at_max_size_converges_and_ends_with_its_original_max_size() {
    let w = world().await;
    w.account
        .create_group(
            &GroupSpec::new("full", "m5.large")
                .capacity(1, 3, 3)
                .grace_secs(1),
        )
        .await;
    w.converge("full", 0, &[("replacements-per-pass", "100%")])
        .await;
    let g = w.account.group("full").await;
    assert_eq!(g.max_size(), Some(3));
    assert_eq!(g.desired_capacity(), Some(3));
    assert!(
        g.tags()
            .iter()
            .all(|t| t.key() != Some("spotswap:max-size"))
    );
    assert!(w.members("full").await.values().all(|s| *s));
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_leaves_the_emulator_unchanged() {
    let w = world().await;
    w.account
        .create_group(
            &GroupSpec::new("web", "m5.large")
                .capacity(1, 3, 6)
                .grace_secs(0),
        )
        .await;
    // A real pass first, so that the dry run has a launch, a swap and more to plan.
    w.pass(&[]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = w.state().await;
    let out = w
        .spotswap(&["run", "--dry-run", "--output", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
    let outcomes = report["regions"][0]["outcomes"].as_array().unwrap();
    assert!(!outcomes.is_empty(), "the dry run had something to do");
    assert!(outcomes.iter().all(|o| o["status"] == "dry-run"));
    let calls = report["regions"][0]["calls"].as_object().unwrap();
    for write in [
        "RunInstances",
        "AttachInstances",
        "TerminateInstances",
        "UpdateAutoScalingGroup",
    ] {
        assert!(!calls.contains_key(write), "{write} called in a dry run");
    }
    assert_eq!(w.state().await, before);
    // `spotswap plan` is a dry run too.
    let out = w.spotswap(&["plan"]).output().unwrap();
    assert!(out.status.success());
    assert_eq!(w.state().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_orphan_clone_whose_instance_is_gone_is_terminated() {
    let w = world().await;
    w.account
        .create_group(
            &GroupSpec::new("web", "m5.large")
                .capacity(0, 1, 4)
                .grace_secs(3600),
        )
        .await;
    let on_demand: Vec<String> = w.members("web").await.into_keys().collect();
    w.pass(&[]).await;
    let clones = w.clones().await;
    let clone = clones.keys().next().cloned().expect("a clone");
    // Launched unpaired: it is paired with an on-demand instance of its AZ at its swap.
    assert_eq!(clones[&clone], "");
    // The operator removes the group's only on-demand instance: nothing is left to replace.
    w.account
        .autoscaling
        .terminate_instance_in_auto_scaling_group()
        .instance_id(&on_demand[0])
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .unwrap();
    let report = w.pass(&[]).await;
    assert_eq!(report.totals.orphans_terminated, 1, "{report:#?}");
    let i = w.account.instance(&clone).await;
    let state = i
        .state()
        .and_then(|s| s.name())
        .map(|n| n.as_str().to_string());
    assert!(
        matches!(state.as_deref(), Some("shutting-down" | "terminated")),
        "{state:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_override_tag_skips_that_group_with_a_reason_and_touches_nothing() {
    let w = world().await;
    w.account
        .create_group(&GroupSpec::new("typo", "m5.large").grace_secs(0).tag(
            "spotswap:min-on-demand-number",
            "two",
            false,
        ))
        .await;
    w.account
        .create_group(
            &GroupSpec::new("fine", "m5.large")
                .capacity(1, 2, 4)
                .grace_secs(0),
        )
        .await;
    let before: BTreeMap<String, bool> = w.members("typo").await;
    let report = w.pass(&[]).await;
    let plan = report.regions[0].plan.as_ref().unwrap();
    let skip = plan
        .decisions
        .iter()
        .find(|d| d.group == "typo")
        .expect("a decision for the group");
    match &skip.verdict {
        Verdict::Skip(Skip::InvalidSetting { tag, value, .. }) => {
            assert_eq!(tag, "spotswap:min-on-demand-number");
            assert_eq!(value, "two");
        }
        other => panic!("expected an invalid-setting skip, got {other:?}"),
    }
    assert_eq!(
        plan.decisions.iter().filter(|d| d.group == "typo").count(),
        1
    );
    assert_eq!(w.members("typo").await, before);
    assert!(w.clones().await.values().all(|r| !before.contains_key(r)));
    // The other group was served.
    assert_eq!(report.totals.clones_launched, 1);
    // The CLI's table names the group, the tag and the value.
    let out = w.spotswap(&["plan"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("typo"))
        .unwrap_or_default();
    assert!(
        line.contains("invalid-setting")
            && line.contains("spotswap:min-on-demand-number")
            && line.contains("two"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pass_killed_after_launching_is_completed_by_the_next_with_no_orphan_or_duplicate() {
    let w = world().await;
    w.account
        .create_group(
            &GroupSpec::new("web", "m5.large")
                .capacity(1, 6, 12)
                .grace_secs(1),
        )
        .await;
    let originals: BTreeSet<String> = w.members("web").await.into_keys().collect();
    // A short lease: the killed pass keeps the group's until it ends.
    let mut child = w
        .spotswap(&["run"])
        .env("REPLACEMENTS_PER_PASS", "100%")
        .env("LEASE_SECONDS", "8")
        .env("OPERATION_TIMEOUT_SECONDS", "4")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Kill it as soon as its first clone exists.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while w.clones().await.is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    child.kill().expect("kill the pass by PID");
    let _ = child.wait();
    assert!(
        !w.clones().await.is_empty(),
        "the pass launched before it was killed"
    );
    // Its lease holds the group (8 + 4 s from when it took it): later passes leave the group
    // alone until then.
    let g = w.account.group("web").await;
    let tags: BTreeMap<String, String> = g
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
        .collect();
    let lease = spotswap::protocol::lease(&tags)
        .expect("a readable lease")
        .expect("the killed pass's lease");
    // (Released if the pass, on a busy machine, was through before it was killed.)
    let abandoned = lease.until.is_some();
    if let Some(until) = lease.until {
        let left = (until - Utc::now()).to_std().unwrap_or_default();
        assert!(left <= Duration::from_secs(12), "{lease:?}");
        tokio::time::sleep(left + Duration::from_millis(200)).await;
    }
    // Later passes finish the job; no instance ever has two live clones.
    let settings = [("replacements-per-pass", "100%")];
    for n in 0..6 {
        let report = w.pass(&settings).await;
        if n == 0 && abandoned {
            // The killed pass's lease ended unreleased, so this pass reads the group's scaling
            // activities for a swap in doubt: moto answers none, and the pass goes on.
            let region = &report.regions[0];
            assert!(
                region.calls.get("DescribeScalingActivities").copied() >= Some(1),
                "{:?}",
                region.calls
            );
            let plan = region.plan.as_ref().expect("a plan");
            assert!(
                !plan
                    .skips()
                    .any(|(_, s)| matches!(s, spotswap::plan::Skip::SwapInDoubt { .. })),
                "{plan:#?}"
            );
        }
        let clones = w.clones().await;
        // Unpaired clones (launched, not yet paired: an empty `spotswap:replaces`) replace no
        // instance yet.
        let targets: Vec<&String> = clones.values().filter(|t| !t.is_empty()).collect();
        let distinct: BTreeSet<&String> = targets.iter().copied().collect();
        assert_eq!(
            targets.len(),
            distinct.len(),
            "duplicate clones: {clones:?}"
        );
        if w.members("web").await.values().all(|s| *s) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    let members = w.members("web").await;
    assert_eq!(members.len(), 6);
    assert!(members.values().all(|s| *s), "{members:?}");
    assert_eq!(w.unattached_clones("web").await, 0, "no orphan left");
    assert!(originals.iter().all(|o| !members.contains_key(o)));
    assert_eq!(w.account.group("web").await.desired_capacity(), Some(6));
}

/// Two real passes started at once against the emulator, round after round (two Lambda
/// invocations after a deploy, or the CLI beside the Lambda), on a group at its MaxSize, so
/// every swap raises it: the group's lease lets one of them change the group, the other's
/// actions are superseded. Never two clones for one instance, never an instance attached
/// twice, desired capacity and MaxSize as the user left them after every round.
#[tokio::test(flavor = "multi_thread")]
async fn two_passes_started_at_once_never_double_a_clone_an_attach_or_a_size() {
    let w = world().await;
    w.account
        .create_group(
            &GroupSpec::new("web", "m5.large")
                .capacity(1, 4, 4)
                .grace_secs(1),
        )
        .await;
    let originals: BTreeSet<String> = w.members("web").await.into_keys().collect();
    // Rounds, and rounds in which one pass stood aside for the other (its actions superseded,
    // or its plan skipping the group as leased).
    let (mut rounds, mut stood_aside) = (0, 0);
    let started = std::time::Instant::now();
    for _ in 0..10 {
        rounds += 1;
        let run = || {
            w.spotswap(&["run", "--output", "json"])
                .env("REPLACEMENTS_PER_PASS", "100%")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (run(), run());
        let (mut changed, mut aside) = (0, false);
        for child in [a, b] {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(0), "{stderr}");
            let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let region = &report["regions"][0];
            let outcomes = region["outcomes"].as_array().unwrap();
            if outcomes.iter().any(|o| o["status"] != "superseded") {
                changed += 1;
            }
            let leased = region["plan"]["decisions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["verdict"]["skip"]["reason"] == "leased");
            aside |= leased || outcomes.iter().any(|o| o["status"] == "superseded");
        }
        assert!(changed <= 1, "both passes changed the group");
        stood_aside += usize::from(aside);
        let g = w.account.group("web").await;
        assert_eq!((g.desired_capacity(), g.max_size()), (Some(4), Some(4)));
        let tags: BTreeMap<&str, &str> = g
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?, t.value()?)))
            .collect();
        assert!(!tags.contains_key("spotswap:max-size"), "{tags:?}");
        let ids: Vec<&str> = g
            .instances()
            .iter()
            .filter_map(|i| i.instance_id())
            .collect();
        let distinct: BTreeSet<&str> = ids.iter().copied().collect();
        assert_eq!(
            ids.len(),
            distinct.len(),
            "an instance attached twice: {ids:?}"
        );
        assert_eq!(ids.len(), 4, "{ids:?}");
        // Never more clones than on-demand instances left to replace, never two paired with
        // one instance.
        let members = w.members("web").await;
        let on_demand = members.values().filter(|spot| !**spot).count();
        let clones = w.clones().await;
        let outside: Vec<&String> = clones
            .keys()
            .filter(|c| !members.contains_key(*c))
            .collect();
        assert!(
            outside.len() <= on_demand,
            "{clones:?} for {on_demand} on-demand"
        );
        let paired: Vec<&String> = clones.values().filter(|r| !r.is_empty()).collect();
        let targets: BTreeSet<&String> = paired.iter().copied().collect();
        assert_eq!(
            paired.len(),
            targets.len(),
            "two clones of one instance: {clones:?}"
        );
        if members.values().all(|s| *s) && outside.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    let members = w.members("web").await;
    assert!(members.values().all(|s| *s), "not converged: {members:?}");
    assert!(originals.iter().all(|o| !members.contains_key(o)));
    // The passes did overlap: at least once, one stood aside for the other.
    assert!(stood_aside >= 1, "the passes never met");
    println!(
        "two passes at once: converged in {rounds} rounds ({:.1} s); one pass stood aside for \
         the other in {stood_aside} of them",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_runs_a_pass_and_reports_savings_with_their_price_sources() {
    let w = world().await;
    w.account
        .create_group(
            &GroupSpec::new("web", "m5.large")
                .capacity(1, 2, 4)
                .grace_secs(0),
        )
        .await;
    let out = w.spotswap(&["run", "--output", "json"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["schema_version"], 1);
    assert!(report["pass_id"].is_string());
    assert_eq!(report["totals"]["clones_launched"], 1);
    let calls = report["regions"][0]["calls"].as_object().unwrap();
    assert_eq!(calls["RunInstances"], 1);
    assert!(
        calls["DescribeInstances"].as_u64().unwrap() <= 3,
        "{calls:?}"
    );
    // Live prices from the emulator's pricing API, not the bundled table.
    assert_eq!(
        report["regions"][0]["plan"]["on_demand_source"]["kind"], "live",
        "{}",
        report["regions"][0]["warnings"]
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.spotswap(&["run"]).output().unwrap();
    let out = w.spotswap(&["report"]).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("web") && text.contains("pricing API"),
        "{text}"
    );
    assert!(
        text.contains("$/month") || text.contains("/month"),
        "{text}"
    );
    // As JSON: the regions' savings and the account's totals, money to the cent a month and
    // to 4 decimals an hour.
    let out = w
        .spotswap(&["report", "--output", "json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema_version"], 1);
    let totals = &v["totals"];
    assert_eq!(totals["instances"], 2, "{v:#}");
    assert_eq!(totals["spot"], 1, "{v:#}");
    let decimals = |x: &serde_json::Value| {
        let t = x.to_string();
        t.split_once('.').map_or(0, |(_, d)| d.len())
    };
    assert!(decimals(&totals["monthly_saving"]) <= 2, "{totals}");
    assert!(decimals(&totals["hourly_saving"]) <= 4, "{totals}");
    let regions_monthly: f64 = v["regions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["monthly_saving"].as_f64().unwrap())
        .sum();
    assert!((totals["monthly_saving"].as_f64().unwrap() - regions_monthly).abs() < 0.011);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_logs_to_stderr_as_verbose_as_asked() {
    let w = world().await;
    w.account
        .create_group(&GroupSpec::new("web", "m5.large").capacity(4, 4, 4))
        .await;
    let stderr = |args: &[&str], rust_log: Option<&str>| {
        let mut c = w.spotswap(args);
        if let Some(v) = rust_log {
            c.env("RUST_LOG", v);
        }
        let out = c.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stderr).unwrap()
    };
    // Quiet by default: nothing went wrong, so nothing to say.
    assert_eq!(stderr(&["plan"], None), "");
    // -v: the progress of the pass and every action's outcome.
    let v = stderr(&["-v", "plan"], None);
    for part in [
        "pass done",
        "region{region=us-east-1}",
        "group{group=web}",
        "launch-clone",
    ] {
        assert!(v.contains(part), "{part} in: {v}");
    }
    assert!(!v.contains("DEBUG"), "{v}");
    // -vv: every skip, with its reason word.
    let vv = stderr(&["-vv", "plan"], None);
    assert!(
        vv.lines()
            .any(|l| l.contains("DEBUG") && l.contains("skip") && l.contains("batch-limit")),
        "{vv}"
    );
    // -q and RUST_LOG.
    assert_eq!(stderr(&["-q", "plan"], None), "");
    let by_env = stderr(&["plan"], Some("spotswap=info"));
    assert!(by_env.contains("pass done"), "{by_env}");
}

#[test]
fn without_credentials_the_cli_says_what_to_do_and_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_spotswap"))
        .args(["plan"])
        .env_clear()
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("credentials") && err.contains("AWS_PROFILE"),
        "{err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_named_profile_wins_over_environment_credentials_and_an_unknown_one_exits_2() {
    let w = world().await;
    // A config home with one profile, `ops`; the environment has credentials of its own.
    let home = std::env::temp_dir().join(format!("spotswap-profiles-{}", std::process::id()));
    std::fs::create_dir_all(&home).unwrap();
    let credentials = home.join("credentials");
    let config = home.join("config");
    std::fs::write(
        &credentials,
        "[ops]\naws_access_key_id = testing\naws_secret_access_key = testing\n",
    )
    .unwrap();
    std::fs::write(&config, "[profile ops]\nregion = us-east-1\n").unwrap();
    let run = |profile: &str| {
        w.spotswap(&["--profile", profile, "plan", "--output", "json"])
            .env("AWS_SHARED_CREDENTIALS_FILE", &credentials)
            .env("AWS_CONFIG_FILE", &config)
            .output()
            .unwrap()
    };

    // An unknown profile is an error, not a pass with the environment's credentials.
    let out = run("nosuch");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("nosuch"),
        "the message names the profile: {err}"
    );
    assert!(err.trim().lines().count() <= 2, "{err}");
    assert!(out.stdout.is_empty(), "no pass ran");

    // A known one runs the pass.
    let out = run("ops");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["dry_run"], true);
    std::fs::remove_dir_all(&home).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn on_plain_moto_a_call_it_lacks_skips_each_group_with_the_reason_and_the_pass_goes_on() {
    let emu = tokio::task::spawn_blocking(Emulator::start_plain_moto)
        .await
        .expect("moto starts");
    let account = Account::create(&emu.sdk_config(REGION)).await;
    let w = World { emu, account };
    w.account
        .create_group(&GroupSpec::new("web", "m5.large").capacity(1, 2, 4))
        .await;
    w.account
        .create_group(&GroupSpec::new("api", "m5.large").capacity(1, 1, 4))
        .await;

    let out = w.spotswap(&["run", "--output", "json"]).output().unwrap();

    let err = String::from_utf8_lossy(&out.stderr);
    // Skips are not failures: the region was read and the pass went through.
    assert_eq!(out.status.code(), Some(0), "{err}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let region = &report["regions"][0];
    assert!(region.get("error").is_none(), "{region}");
    let skips: Vec<&serde_json::Value> = region["plan"]["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["verdict"]["skip"]["reason"] == "read-failed")
        .collect();
    let groups: BTreeSet<&str> = skips.iter().map(|d| d["group"].as_str().unwrap()).collect();
    assert_eq!(groups, BTreeSet::from(["api", "web"]), "{region}");
    for d in &skips {
        let skip = &d["verdict"]["skip"];
        assert_eq!(skip["operation"], "DescribeInstanceRefreshes", "{skip}");
        // One line that says what came back, not the SDK's internals.
        let message = skip["message"].as_str().unwrap();
        assert!(message.starts_with("HTTP 5"), "{message}");
        assert!(
            message.contains(w.emu.endpoint()),
            "names the endpoint: {message}"
        );
        assert!(!message.contains('\n') && message.len() < 200, "{message}");
    }
    assert_eq!(report["totals"]["clones_launched"], 0);
    // Nothing was changed in a group whose state could not be read.
    let calls = region["calls"].as_object().unwrap();
    assert!(calls.get("RunInstances").is_none(), "{calls:?}");
    // Missing prices fall back to the bundled table, said in one line.
    assert!(
        region["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| !w.as_str().unwrap().contains('\n')),
        "{region}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clone_that_dies_before_its_swap_makes_its_group_back_off_through_a_group_tag() {
    let w = world().await;
    w.account
        .create_group(
            &GroupSpec::new("web", "m5.large")
                .capacity(1, 2, 4)
                .grace_secs(3600),
        )
        .await;
    let first = w.pass(&[]).await;
    assert_eq!(first.totals.clones_launched, 1, "{first:#?}");
    let (clone, _) = w.clones().await.into_iter().next().expect("a clone");
    // The clone stops before its swap (a boot script that halts it, say).
    w.account
        .ec2
        .stop_instances()
        .instance_ids(&clone)
        .send()
        .await
        .unwrap();

    let second = w.pass(&[]).await;
    assert_eq!(second.totals.orphans_terminated, 1, "{second:#?}");
    assert_eq!(second.totals.clones_launched, 0, "{second:#?}");
    let tags: BTreeMap<String, String> = w
        .account
        .group("web")
        .await
        .tags()
        .iter()
        .map(|t| {
            (
                t.key().unwrap_or_default().to_string(),
                t.value().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let tag = tags
        .get("spotswap:launch-backoff")
        .unwrap_or_else(|| panic!("no back-off tag: {tags:?}"));
    assert!(tag.starts_with("failures=1 "), "{tag}");
    assert!(tag.contains(&format!("clone={clone}")), "{tag}");
    assert!(tag.ends_with("reason=not-running:stopped"), "{tag}");

    // The next pass reads the tag back: no launch, the reason in the plan, and the clone,
    // now listed as terminated by spotswap's own call, is not counted twice.
    let third = w.pass(&[]).await;
    assert_eq!(third.totals.clones_launched, 0, "{third:#?}");
    let plan = third.regions[0].plan.as_ref().unwrap();
    let skip = plan
        .skips()
        .find_map(|(_, s)| match s {
            Skip::BackingOff {
                failures,
                clone: c,
                state_reason,
                ..
            } => Some((*failures, c.clone(), state_reason.clone())),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no back-off skip: {plan:#?}"));
    assert_eq!(skip, (1, clone, "not-running:stopped".to_string()));
    assert!(plan.actions().next().is_none(), "nothing to do: {plan:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_raised_on_demand_floor_is_met_again_with_an_on_demand_instance_of_the_groups_type() {
    let w = world().await;
    w.account
        .create_group(
            &GroupSpec::new("web", "m5.large")
                .capacity(1, 2, 4)
                .grace_secs(1),
        )
        .await;
    let settings = [("replacements-per-pass", "100%")];
    w.converge("web", 0, &settings).await;
    assert!(w.members("web").await.values().all(|spot| *spot));

    // The operator raises the floor to one on-demand instance.
    w.account
        .autoscaling
        .create_or_update_tags()
        .tags(
            aws_sdk_autoscaling::types::Tag::builder()
                .resource_id("web")
                .resource_type("auto-scaling-group")
                .key("spotswap:min-on-demand-number")
                .value("1")
                .propagate_at_launch(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let mut restored = false;
    for pass in 1..=6 {
        let report = w.pass(&settings).await;
        assert_eq!(report.totals.failures, 0, "pass {pass}: {report:#?}");
        let g = w.account.group("web").await;
        assert_eq!(
            g.desired_capacity(),
            Some(2),
            "pass {pass}: desired capacity"
        );
        let members = w.members("web").await;
        assert!(
            members.len() >= 2,
            "pass {pass}: capacity dipped: {members:?}"
        );
        if members.values().filter(|spot| !**spot).count() == 1
            && w.unattached_clones("web").await == 0
        {
            restored = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(1300)).await;
    }
    assert!(
        restored,
        "the floor was not met: {:?}",
        w.members("web").await
    );
    let members = w.members("web").await;
    let (od, _) = members.iter().find(|(_, spot)| !**spot).unwrap();
    let i = w.account.instance(od).await;
    assert_eq!(i.instance_type().map(|t| t.as_str()), Some("m5.large"));
    assert!(i.instance_lifecycle().is_none(), "on-demand: {i:?}");
    let tags = w.account.tags_of(od).await;
    assert_eq!(tags.get("spotswap:group").map(String::as_str), Some("web"));
}

/// Runs passes of the real binary over a fresh group of 3 with `rate` of each pass's calls
/// throttled until it converges: each pass's wall time, and the calls throttled.
async fn converge_throttled(rate: f64) -> (Vec<Duration>, u64) {
    let w = world().await;
    w.account
        .create_group(
            &GroupSpec::new("web", "m5.large")
                .capacity(1, 3, 6)
                .grace_secs(1),
        )
        .await;
    let (mut times, mut throttled) = (Vec::new(), 0u64);
    for pass in 1..=12u64 {
        w.emu.set_throttling(rate, pass);
        let started = std::time::Instant::now();
        let out = w
            .spotswap(&["run", "--output", "json"])
            .env("REPLACEMENTS_PER_PASS", "100%")
            .output()
            .unwrap();
        times.push(started.elapsed());
        let stats = w.emu.throttling();
        // The test's own reads are not throttled.
        w.emu.set_throttling(0.0, 0);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "pass {pass}: {stderr}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(report["totals"]["failures"], 0, "pass {pass}: {report:#}");
        for r in report["regions"].as_array().expect("regions") {
            assert!(r.get("error").is_none(), "pass {pass}: {r:#}");
            assert!(r.get("warnings").is_none(), "pass {pass}: {r:#}");
        }
        throttled += stats["throttled"]
            .as_object()
            .expect("per service")
            .values()
            .map(|n| n.as_u64().unwrap_or(0))
            .sum::<u64>();
        let members = w.members("web").await;
        if members.len() == 3
            && members.values().all(|spot| *spot)
            && w.unattached_clones("web").await == 0
        {
            return (times, throttled);
        }
        tokio::time::sleep(Duration::from_millis(1300)).await;
    }
    panic!("web did not converge: {:?}", w.members("web").await);
}

/// Throttling through the real SDK: the emulator answers 30% of the calls of each pass as AWS
/// answers a throttled call (EC2 `RequestLimitExceeded` 503, Auto Scaling `Throttling` 400,
/// Pricing `ThrottlingException` 400). Passes of the real binary (its own retry configuration)
/// complete, the group converges, and no throttling error reaches a report: the SDK's retries
/// absorb them. The pass times beside an unthrottled run are printed (a figure, not asserted).
#[tokio::test(flavor = "multi_thread")]
async fn under_30_percent_throttling_passes_complete_and_converge_with_no_error_surfaced() {
    let (throttled_times, throttled) = converge_throttled(0.3).await;
    assert!(
        throttled >= 10,
        "the passes met throttling: {throttled} calls"
    );
    let (plain_times, _) = converge_throttled(0.0).await;
    let total = |t: &[Duration]| t.iter().sum::<Duration>().as_secs_f64();
    println!(
        "throttling figure: {} passes in {:.1} s with 30% of calls throttled ({throttled} \
         throttled), {} passes in {:.1} s without: {:.2}x",
        throttled_times.len(),
        total(&throttled_times),
        plain_times.len(),
        total(&plain_times),
        total(&throttled_times) / total(&plain_times)
    );
}

/// `spotswap check` sends each EC2 write a pass makes with `DryRun=true`, shaped from the
/// seeded groups and a clone, and prints every check with its verdict; moto enforces no IAM,
/// so every one it can ask is allowed, and nothing in the account changes. (Refusals are shown
/// over the in-memory cloud, tests/it/preflight.rs.)
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_check_asks_every_write_with_dry_run_and_prints_each_verdict() {
    let w = world().await;
    for spec in [
        // A template without interfaces launches by fleet; the emulator reports a public-IP
        // choice on every launch configuration, so its group launches by RunInstances.
        GroupSpec::new("web", "m5.large")
            .capacity(1, 2, 4)
            .grace_secs(0)
            .launch_template("#!/bin/bash\necho web\n"),
        GroupSpec::new("api", "m5.large")
            .capacity(1, 1, 2)
            .public_ip_interface(),
        GroupSpec::new("legacy", "m5.large")
            .capacity(1, 1, 2)
            .launch_configuration("#!/bin/bash\necho legacy\n"),
    ] {
        w.account.create_group(&spec).await;
    }
    // One pass, so a clone exists to ask CreateTags and TerminateInstances about.
    w.pass(&[]).await;
    let before = w.state().await;
    let out = w.spotswap(&["check"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for action in [
        "ec2:CreateFleet",
        "ec2:RunInstances",
        "ec2:CreateLaunchTemplate",
        "ec2:CreateTags",
        "ec2:TerminateInstances",
    ] {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(action))
            .unwrap_or_else(|| panic!("no line for {action}: {text}"));
        assert_eq!(line.split_whitespace().nth(2), Some("allowed"), "{line}");
    }
    assert!(
        text.lines().any(|l| l.contains("autoscaling writes")
            && l.contains("not-checked")
            && l.contains("no DryRun")),
        "{text}"
    );
    assert!(
        text.contains("No write that could be asked about was refused."),
        "{text}"
    );
    assert_eq!(w.state().await, before, "a check changes nothing");
    let out = w.spotswap(&["check", "--output", "json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema_version"], 1);
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 6, "{v:#}");
    assert!(
        checks
            .iter()
            .all(|c| c["region"] == REGION && c["verdict"].is_string())
    );
    // Every field is in docs/json-output.md.
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/json-output.md"))
        .unwrap();
    let keys = v
        .as_object()
        .unwrap()
        .keys()
        .chain(checks.iter().flat_map(|c| c.as_object().unwrap().keys()));
    for k in keys {
        assert!(
            doc.contains(&format!("`{k}`")),
            "{k} is not in docs/json-output.md"
        );
    }
}

/// The kinds of the actions a pass planned in its (one) region, in plan order.
fn action_kinds(report: &PassReport) -> Vec<ActionKind> {
    report.regions[0]
        .plan
        .as_ref()
        .unwrap()
        .actions()
        .map(|(_, a)| a.kind())
        .collect()
}

/// A group behind an Application Load Balancer's target group, through the emulator: the
/// on-demand instance leaves only in the pass after its clone was attached, once the target
/// group calls the clone healthy. moto registers an attached instance with the group's target
/// groups and reports it `healthy` at once (AWS reports `initial` until its health checks
/// pass, which the in-memory cloud models: tests/it/readiness.rs), so here the wait is one pass.
#[tokio::test(flavor = "multi_thread")]
async fn behind_a_target_group_the_on_demand_instance_leaves_only_once_its_clone_is_healthy() {
    use aws_sdk_elasticloadbalancingv2 as elbv2;
    let w = world().await;
    let config = w.emu.sdk_config(REGION);
    let lb = elbv2::Client::new(&config);
    let tg = lb
        .create_target_group()
        .name("web")
        .protocol(elbv2::types::ProtocolEnum::Http)
        .port(80)
        .vpc_id(&w.account.vpc_id)
        .send()
        .await
        .expect("a target group");
    let tg_arn = tg.target_groups()[0]
        .target_group_arn()
        .unwrap()
        .to_string();
    w.account
        .create_group(
            &GroupSpec::new("web", "m5.large")
                .capacity(1, 1, 2)
                .grace_secs(0)
                .launch_template("#!/bin/bash\necho web\n"),
        )
        .await;
    w.account
        .autoscaling
        .attach_load_balancer_target_groups()
        .auto_scaling_group_name("web")
        .target_group_arns(&tg_arn)
        .send()
        .await
        .expect("the target group attached");
    let on_demand: Vec<String> = w.account.instance_ids_of("web").await;
    assert_eq!(on_demand.len(), 1);
    let health = |id: String| {
        let lb = lb.clone();
        let tg_arn = tg_arn.clone();
        async move {
            let out = lb
                .describe_target_health()
                .target_group_arn(tg_arn)
                .targets(elbv2::types::TargetDescription::builder().id(&id).build())
                .send()
                .await
                .unwrap();
            out.target_health_descriptions()[0]
                .target_health()
                .and_then(|h| h.state())
                .map(|s| s.as_str().to_string())
        }
    };
    // A short lease: the pass that attaches leaves its group's lease to end by itself (a fault
    // meanwhile is settled from the scaling activities), and the next pass comes after it.
    let short_lease = [
        ("lease-seconds", "10"),
        ("operation-timeout-seconds", "5"),
        ("attempt-timeout-seconds", "5"),
    ];
    // Pass 1 launches the clone; pass 2 attaches it and keeps the on-demand instance.
    let first = w.pass(&short_lease).await;
    assert_eq!(first.totals.clones_launched, 1, "{first:#?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = w.pass(&short_lease).await;
    let kinds = action_kinds(&second);
    assert_eq!(kinds, [ActionKind::AttachClone], "{second:#?}");
    let members = w.account.instance_ids_of("web").await;
    assert!(
        members.contains(&on_demand[0]),
        "still serving: {members:?}"
    );
    assert_eq!(members.len(), 2);
    let clone = members
        .iter()
        .find(|m| **m != on_demand[0])
        .unwrap()
        .clone();
    assert_eq!(health(clone.clone()).await.as_deref(), Some("healthy"));
    assert_eq!(w.account.group("web").await.desired_capacity(), Some(2));
    // Pass 3, once the lease has ended, reads the clone healthy and lets the on-demand
    // instance go.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let third = w.pass(&short_lease).await;
    let kinds = action_kinds(&third);
    assert!(kinds.contains(&ActionKind::CompleteSwap), "{third:#?}");
    assert_eq!(third.regions[0].calls.get("DescribeTargetHealth"), Some(&1));
    let members = w.account.instance_ids_of("web").await;
    assert_eq!(members, [clone]);
    assert_eq!(w.account.group("web").await.desired_capacity(), Some(1));
    assert_eq!(third.totals.swaps, 1);
}

/// The value of a group's `spotswap:lease` tag, if any.
async fn lease_tag(w: &World, group: &str) -> Option<String> {
    w.account
        .group(group)
        .await
        .tags()
        .iter()
        .find(|t| t.key() == Some(spotswap::protocol::LEASE))
        .and_then(|t| t.value().map(str::to_string))
}

/// SIGINT to `spotswap run` mid-pass, once its leases are written: the pass sends no new
/// change, gives its leases back (nothing it did is in doubt), prints what it did and left, and
/// exits 130; a run right after it finds no lease in its way and acts.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_mid_pass_gives_the_leases_back_so_the_next_run_acts_at_once() {
    let w = world().await;
    for name in ["web", "api"] {
        w.account
            .create_group(
                &GroupSpec::new(name, "m5.large")
                    .capacity(2, 2, 4)
                    .grace_secs(0)
                    .launch_template("#!/bin/bash\necho hello\n"),
            )
            .await;
    }
    let child = w
        .spotswap(&["run"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spotswap runs");
    // The leases are written, then read back a second later (`lease::SETTLE`): the signal
    // goes in that second, mid-pass.
    let started = std::time::Instant::now();
    loop {
        let held = lease_tag(&w, "web")
            .await
            .is_some_and(|v| v.contains(" until "));
        if held {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the pass never took its leases"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .expect("spotswap ends");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(130), "{stdout}{stderr}");
    assert!(
        stderr.contains("stopping: no new change is sent"),
        "{stderr}"
    );
    assert!(
        stdout.contains("Stopped by the operator") && stdout.contains("every lease was given back"),
        "{stdout}"
    );
    assert!(stdout.contains("deferred to the next pass"), "{stdout}");
    for g in ["web", "api"] {
        let lease = lease_tag(&w, g).await.unwrap_or_default();
        assert!(lease.ends_with(" released"), "{g}: {lease}");
    }
    // Right after it: no `leased` skip, and the groups are acted on.
    let out = w.spotswap(&["run", "--output", "json"]).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = v.to_string();
    assert!(!text.contains("\"leased\""), "{v:#}");
    assert!(
        v["totals"]["clones_launched"].as_u64().unwrap_or(0) >= 1,
        "{v:#}"
    );
}
