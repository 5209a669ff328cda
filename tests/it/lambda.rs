//! The `spotswap-lambda` binary as Lambda runs it: started with a Lambda environment, fed
//! EventBridge events (the exact shapes in `tests/fixtures/events/`) through the local runtime
//! API ([`crate::runtime_api`]), with the local AWS emulator ([`crate::moto`]) behind it. Each
//! test starts its own emulator, runtime API and function process, and checks what the function
//! answered, what it printed, and what changed in the account.

// The binary only exists with the `lambda` feature.
#![cfg(feature = "lambda")]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{Value, json};
use spotswap::cloud::aws::AwsAccount;
use spotswap::pass::{self, PassOptions};
use spotswap::report::PassReport;
use spotswap::settings::Settings;

use crate::moto::Emulator;
use crate::moto::seed::{Account, GroupSpec};
use crate::runtime_api::{FunctionProcess, Invocation, RuntimeApi, spawn_function};

const REGION: &str = "us-east-1";
/// A deadline far enough away that it never matters (Lambda's longest timeout).
const FAR: Duration = Duration::from_secs(900);
/// How long printed lines and the emulator's group activity may take to show.
const SETTLE: Duration = Duration::from_secs(30);

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/events/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The schedule rule's event, in the test region.
fn scheduled() -> Value {
    let mut e = fixture("scheduled.json");
    e["region"] = json!(REGION);
    e
}

/// An EC2 instance event (`fixture`) about `instance_id` in the test region.
fn instance_event(fixture_name: &str, instance_id: &str) -> Value {
    let mut e = fixture(fixture_name);
    e["region"] = json!(REGION);
    e["resources"] = json!([format!(
        "arn:aws:ec2:{REGION}:123456789012:instance/{instance_id}"
    )]);
    e["detail"]["instance-id"] = json!(instance_id);
    e
}

/// The JSON lines the function printed (log records and EMF lines); panics on any other
/// non-empty line, since with `AWS_LAMBDA_LOG_FORMAT=JSON` every line must be JSON.
fn json_lines(f: &FunctionProcess) -> Vec<Value> {
    f.lines()
        .iter()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .ok()
                .filter(Value::is_object)
                .unwrap_or_else(|| panic!("a printed line is not a JSON object: {l}"))
        })
        .collect()
}

/// A log record's message (`fields.message` in tracing's JSON format).
fn message(v: &Value) -> &str {
    v["fields"]["message"].as_str().unwrap_or_default()
}

/// The function's answer, which must be a response (not an error).
fn response(i: Invocation) -> Value {
    match i {
        Invocation::Response(v) => v,
        Invocation::Error {
            error_type,
            message,
        } => panic!("an invocation error ({error_type}): {message}"),
    }
}

/// The function's answer, which must be an error: its message.
fn error_message(i: Invocation) -> String {
    match i {
        Invocation::Error {
            error_type,
            message,
        } => {
            assert!(!error_type.is_empty(), "an error type for {message}");
            message
        }
        Invocation::Response(v) => panic!("expected an invocation error, got {v:#}"),
    }
}

/// An emulator with a seeded account.
struct World {
    emu: Emulator,
    account: Account,
}

/// A function process and the runtime API it polls.
struct Function {
    api: RuntimeApi,
    process: FunctionProcess,
}

impl Function {
    /// One invocation, blocking this worker thread only.
    fn invoke(&self, event: Value, deadline_in: Duration) -> Invocation {
        tokio::task::block_in_place(|| self.api.invoke(event, deadline_in))
    }

    /// Waits for a printed JSON line satisfying `pred` (output is read by other threads).
    fn wait_for_json(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let line = tokio::task::block_in_place(|| {
            self.process.wait_for_line(SETTLE, |l| {
                serde_json::from_str::<Value>(l).is_ok_and(|v| pred(&v))
            })
        })
        .unwrap_or_else(|| panic!("no {what} line; output:\n{}", self.process.output()));
        serde_json::from_str(&line).unwrap()
    }
}

async fn world() -> World {
    let emu = tokio::task::spawn_blocking(Emulator::start)
        .await
        .expect("the emulator starts");
    let account = Account::create(&emu.sdk_config(REGION)).await;
    World { emu, account }
}

impl World {
    /// A new runtime API and the function polling it, with these extra environment variables.
    fn function(&self, extra_env: &[(&str, &str)]) -> Function {
        let api = RuntimeApi::start();
        let process = spawn_function(&api, self.emu.endpoint(), REGION, extra_env);
        Function { api, process }
    }

    /// One pass through the library, as `spotswap run` makes it.
    async fn pass(&self, settings: &[(&str, &str)]) -> PassReport {
        // The emulator lists every region; the pass covers the one seeded.
        let settings = Settings::from_pairs(settings.iter().copied().chain([("regions", REGION)]))
            .expect("valid settings");
        let aws = AwsAccount::new(self.emu.sdk_config(REGION));
        let opts = PassOptions {
            dry_run: false,
            ..PassOptions::new(&settings, Utc::now())
        };
        let report = pass::run(&aws, &settings, &opts)
            .await
            .expect("the pass starts");
        assert_eq!(report.totals.failures, 0, "{report:#?}");
        report
    }

    async fn members(&self, group: &str) -> BTreeMap<String, bool> {
        self.account.in_service_members(group).await
    }

    /// Runs passes (grace period 1 s) until `group` has a spot member swapped in; its id.
    async fn spot_member(&self, group: &str) -> String {
        for _ in 0..12 {
            self.pass(&[]).await;
            if let Some((id, _)) = self.members(group).await.into_iter().find(|(_, s)| *s) {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(1300)).await;
        }
        panic!("no spot member in {group}: {:?}", self.members(group).await);
    }

    /// The instance's pool as spotswap names it: `TYPE@AZ`.
    async fn pool_of(&self, id: &str) -> String {
        let i = self.account.instance(id).await;
        format!(
            "{}@{}",
            i.instance_type().unwrap().as_str(),
            i.placement().and_then(|p| p.availability_zone()).unwrap()
        )
    }

    async fn state_of(&self, id: &str) -> String {
        let i = self.account.instance(id).await;
        i.state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default()
    }

    async fn group_tag(&self, group: &str, key: &str) -> Option<String> {
        self.account
            .group(group)
            .await
            .tags()
            .iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
            .map(str::to_string)
    }

    /// Waits until `gone` has left `group` and the group is back to `desired` in-service
    /// members, one of them new (not in `before`); the new members.
    async fn wait_replaced(
        &self,
        group: &str,
        gone: &str,
        before: &BTreeSet<String>,
        desired: i32,
    ) -> BTreeSet<String> {
        let until = Instant::now() + SETTLE;
        loop {
            let all = self.account.instance_ids_of(group).await;
            let members: BTreeSet<String> = self.members(group).await.into_keys().collect();
            let new: BTreeSet<String> = members.difference(before).cloned().collect();
            if !all.iter().any(|id| id == gone)
                && members.len() == desired as usize
                && !new.is_empty()
            {
                return new;
            }
            assert!(
                Instant::now() < until,
                "{group} did not replace {gone}: instances {all:?}, in service {members:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn state(&self) -> String {
        self.account.state().await
    }
}

/// The EMF line's metric values match the pass report's totals.
fn assert_emf_matches(emf: &Value, report: &Value) {
    let cw = &emf["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(cw["Namespace"], "spotswap", "{emf}");
    // Dimensions independent of the groups: the function, and live or dry-run counts.
    assert_eq!(cw["Dimensions"], json!([["FunctionName", "Mode"]]), "{emf}");
    assert_eq!(emf["FunctionName"], "spotswap");
    let mode = if report["dry_run"] == json!(true) {
        "dry-run"
    } else {
        "live"
    };
    assert_eq!(emf["Mode"], mode);
    // Passes: under the function alone, so a "no pass" alarm sees either mode.
    let passes = &emf["_aws"]["CloudWatchMetrics"][1];
    assert_eq!(passes["Dimensions"], json!([["FunctionName"]]), "{emf}");
    assert_eq!(passes["Metrics"][0]["Name"], "Passes");
    assert_eq!(emf["Passes"], 1.0);
    let t = &report["totals"];
    let monthly = t["hourly_savings_now"].as_f64().unwrap() * 730.0;
    assert!((emf["MonthlySavings"].as_f64().unwrap() - monthly).abs() < 1e-9);
    let (spot, all) = (
        t["spot_instances"].as_f64().unwrap(),
        t["instances"].as_f64().unwrap(),
    );
    if all > 0.0 {
        assert!((emf["SpotCapacityShare"].as_f64().unwrap() - spot * 100.0 / all).abs() < 1e-9);
    }
    for (metric, total) in [
        ("GroupsSeen", "groups_seen"),
        ("ClonesLaunched", "clones_launched"),
        ("Swaps", "swaps"),
        ("OrphansTerminated", "orphans_terminated"),
        ("Failures", "failures"),
        ("MisconfiguredGroups", "misconfigured_groups"),
        ("HourlySavings", "hourly_savings_now"),
    ] {
        assert_eq!(
            emf[metric].as_f64(),
            t[total].as_f64(),
            "{metric} vs totals.{total}: {emf} / {t}"
        );
        assert!(
            cw["Metrics"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["Name"] == metric),
            "{metric} is declared: {emf}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_events_run_passes_that_launch_then_swap_with_json_logs_and_one_emf_line_each() {
    let w = world().await;
    w.account
        .create_group(
            &GroupSpec::new("web", "m5.large")
                .capacity(1, 2, 4)
                .grace_secs(1),
        )
        .await;
    let f = w.function(&[]);

    let first = response(f.invoke(scheduled(), FAR));
    assert_eq!(first["dry_run"], false, "{first:#}");
    assert_eq!(first["totals"]["regions"], 1, "{first:#}");
    assert!(
        first["regions"][0].get("error").is_none(),
        "region error: {first:#}"
    );
    assert!(
        first["totals"]["clones_launched"].as_u64().unwrap() >= 1,
        "{first:#}"
    );
    assert_eq!(first["totals"]["failures"], 0, "{first:#}");

    // Past the grace period, the next tick swaps the clone in.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let second = response(f.invoke(scheduled(), FAR));
    assert!(
        second["totals"]["swaps"].as_u64().unwrap() >= 1,
        "{second:#}"
    );
    assert_eq!(second["totals"]["failures"], 0, "{second:#}");
    let members = w.members("web").await;
    assert_eq!(members.len(), 2);
    assert!(members.values().any(|spot| *spot), "{members:?}");
    assert_eq!(w.account.group("web").await.desired_capacity(), Some(2));

    // One EMF line per pass, then every printed line is JSON.
    let _ = f.wait_for_json("second EMF", |v| {
        v.get("_aws").is_some() && v["Swaps"].as_f64() == second["totals"]["swaps"].as_f64()
    });
    let lines = json_lines(&f.process);
    let emf: Vec<&Value> = lines.iter().filter(|v| v.get("_aws").is_some()).collect();
    assert_eq!(emf.len(), 2, "one EMF line per pass: {emf:#?}");
    assert_emf_matches(emf[0], &first);
    assert_emf_matches(emf[1], &second);
    // Log records (everything else) are tracing's JSON, with the pass summary in fields.
    let logs: Vec<&Value> = lines.iter().filter(|v| v.get("_aws").is_none()).collect();
    assert!(
        logs.iter().all(|v| v["level"].is_string()),
        "log records have a level: {logs:#?}"
    );
    let done: Vec<&&Value> = logs.iter().filter(|v| message(v) == "pass done").collect();
    assert_eq!(done.len(), 2, "{logs:#?}");
    assert_eq!(
        done[0]["fields"]["clones_launched"], first["totals"]["clones_launched"],
        "{done:#?}"
    );
    assert_eq!(done[1]["fields"]["swaps"], second["totals"]["swaps"]);
    assert_eq!(done[0]["level"], "INFO");
    let complaints: Vec<&&Value> = logs
        .iter()
        .filter(|v| v["level"] == "ERROR" || v["level"] == "WARN")
        .collect();
    assert!(complaints.is_empty(), "{complaints:#?}");
}

/// Creates the opted-in group `web` and runs library passes until a spot clone has been
/// swapped in: (that member's id, the members, the desired capacity).
async fn group_with_a_spot_member(w: &World) -> (String, BTreeSet<String>, i32) {
    w.account
        .create_group(
            &GroupSpec::new("web", "m5.large")
                .capacity(1, 2, 4)
                .grace_secs(1),
        )
        .await;
    let spot = w.spot_member("web").await;
    let before: BTreeSet<String> = w.members("web").await.into_keys().collect();
    let desired = w.account.group("web").await.desired_capacity().unwrap();
    (spot, before, desired)
}

/// The interruption tag's newest entry is `pool@<time>`.
fn assert_interrupted_tag(tag: Option<String>, pool: &str) {
    let tag = tag.expect("the group carries spotswap:interrupted");
    let newest = tag.split(' ').next_back().unwrap();
    let at = newest
        .strip_prefix(&format!("{pool}@"))
        .unwrap_or_else(|| panic!("{tag} names {pool}"));
    let at = chrono::DateTime::parse_from_rfc3339(at)
        .unwrap_or_else(|e| panic!("{tag}: {at} is a time ({e})"));
    let age = Utc::now() - at.with_timezone(&Utc);
    assert!(age.num_seconds().abs() < 300, "{tag} is recent");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interruption_warning_terminates_the_spot_member_in_its_group_and_records_the_pool() {
    let w = world().await;
    let (spot, before, desired) = group_with_a_spot_member(&w).await;
    let pool = w.pool_of(&spot).await;
    let f = w.function(&[]);

    let r = response(f.invoke(instance_event("spot-interruption.json", &spot), FAR));
    assert_eq!(r["result"], "replaced", "{r:#}");
    assert_eq!(r["signal"], "spot-interruption");
    assert_eq!(r["region"], REGION);
    assert_eq!(r["instance_id"], spot.as_str());
    assert_eq!(r["group"], "web");
    assert_eq!(r["action"], "terminate");
    assert_eq!(r["pool"], pool.as_str());
    assert_eq!(r["dry_run"], false);

    let new = w.wait_replaced("web", &spot, &before, desired).await;
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(
        w.account.group("web").await.desired_capacity(),
        Some(desired)
    );
    let state = w.state_of(&spot).await;
    assert!(
        matches!(state.as_str(), "shutting-down" | "terminated"),
        "{spot} is {state}"
    );
    assert_interrupted_tag(w.group_tag("web", "spotswap:interrupted").await, &pool);
    let log = f.wait_for_json("replacement", |v| message(v) == "replacement requested");
    assert_eq!(log["fields"]["instance"], spot.as_str(), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_interruption_action_detach_the_instance_leaves_its_group_and_keeps_running() {
    let w = world().await;
    let (spot, before, desired) = group_with_a_spot_member(&w).await;
    let pool = w.pool_of(&spot).await;
    let f = w.function(&[("INTERRUPTION_ACTION", "detach")]);

    let r = response(f.invoke(instance_event("spot-interruption.json", &spot), FAR));
    assert_eq!(r["result"], "replaced", "{r:#}");
    assert_eq!(r["action"], "detach", "{r:#}");
    assert_eq!(r["pool"], pool.as_str());

    let new = w.wait_replaced("web", &spot, &before, desired).await;
    assert_eq!(new.len(), 1, "{new:?}");
    assert_eq!(
        w.account.group("web").await.desired_capacity(),
        Some(desired)
    );
    assert_eq!(
        w.state_of(&spot).await,
        "running",
        "it serves until reclaimed"
    );
    assert_interrupted_tag(w.group_tag("web", "spotswap:interrupted").await, &pool);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_interruption_warning_for_an_instance_outside_opted_in_groups_changes_nothing() {
    let w = world().await;
    let manual = w
        .account
        .create_group(
            &GroupSpec::new("manual", "m5.large")
                .without_tag("spot-enabled")
                .capacity(1, 1, 2)
                .grace_secs(0),
        )
        .await;
    let plain = w
        .account
        .ec2
        .run_instances()
        .image_id(&w.account.linux_ami)
        .instance_type(aws_sdk_ec2::types::InstanceType::M5Large)
        .subnet_id(&w.account.subnet_ids[0])
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    let before = w.state().await;
    let f = w.function(&[]);

    for (id, why) in [(&manual[0], "in group manual"), (&plain, "without a group")] {
        let r = response(f.invoke(instance_event("spot-interruption.json", id), FAR));
        assert_eq!(r["result"], "ignored", "{why}: {r:#}");
        assert_eq!(r["instance_id"], id.as_str());
        let reason = r["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(id.as_str()) && reason.contains("opted"),
            "{why}: {reason}"
        );
        let log = f.wait_for_json("ignored", |v| {
            message(v).starts_with("ignored:") && v["fields"]["instance"] == id.as_str()
        });
        assert_eq!(log["level"], "INFO", "{log}");
    }
    assert_eq!(w.state().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rebalance_recommendation_is_ignored_by_default_and_acted_on_when_enabled() {
    let w = world().await;
    let (spot, before, desired) = group_with_a_spot_member(&w).await;
    let pool = w.pool_of(&spot).await;
    let event = instance_event("rebalance.json", &spot);

    let state = w.state().await;
    let default = w.function(&[]);
    let r = response(default.invoke(event.clone(), FAR));
    assert_eq!(r["result"], "ignored", "{r:#}");
    assert_eq!(r["signal"], "rebalance-recommendation");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("handle-rebalance-recommendations"),
        "{r:#}"
    );
    assert_eq!(w.state().await, state);
    drop(default);

    let enabled = w.function(&[("HANDLE_REBALANCE_RECOMMENDATIONS", "true")]);
    let r = response(enabled.invoke(event, FAR));
    assert_eq!(r["result"], "replaced", "{r:#}");
    assert_eq!(r["signal"], "rebalance-recommendation");
    assert_eq!(r["action"], "terminate");
    assert_eq!(r["pool"], pool.as_str());
    w.wait_replaced("web", &spot, &before, desired).await;
    assert_eq!(
        w.account.group("web").await.desired_capacity(),
        Some(desired)
    );
    assert_interrupted_tag(w.group_tag("web", "spotswap:interrupted").await, &pool);
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_and_unknown_events_are_invocation_errors_that_change_nothing() {
    let w = world().await;
    let members = w
        .account
        .create_group(
            &GroupSpec::new("web", "m5.large")
                .capacity(1, 2, 4)
                .grace_secs(0),
        )
        .await;
    let before = w.state().await;
    let f = w.function(&[]);

    let mut malformed = instance_event("spot-interruption.json", &members[0]);
    malformed["detail"]
        .as_object_mut()
        .unwrap()
        .remove("instance-id");
    let message = error_message(f.invoke(malformed, FAR));
    assert!(
        message.contains("detail.instance-id")
            && message.contains("EC2 Spot Instance Interruption Warning"),
        "{message}"
    );

    let unknown = instance_event("state-change.json", &members[0]);
    let message = error_message(f.invoke(unknown, FAR));
    assert!(
        message.contains("aws.ec2") && message.contains("EC2 Instance State-change Notification"),
        "{message}"
    );

    // The function logged both, and still serves: a rebalance recommendation (ignored by
    // default) is answered.
    let errors: Vec<Value> = json_lines(&f.process)
        .into_iter()
        .filter(|v| v["level"] == "ERROR")
        .collect();
    assert!(errors.len() >= 2, "{}", f.process.output());
    let r = response(f.invoke(instance_event("rebalance.json", &members[0]), FAR));
    assert_eq!(r["result"], "ignored", "{r:#}");
    assert_eq!(w.state().await, before);
}

#[test]
fn an_invalid_setting_fails_the_initialisation_naming_the_variable_and_value() {
    // Settings are read before anything is called, so no emulator: the endpoint is a closed
    // port, and the function must never get as far as polling for an event.
    let api = RuntimeApi::start();
    let f = spawn_function(
        &api,
        "http://127.0.0.1:9",
        REGION,
        &[("MIN_ON_DEMAND_NUMBER", "lots")],
    );
    let status = f
        .wait_exit(Duration::from_secs(30))
        .unwrap_or_else(|| panic!("the function did not exit; {}", f.output()));
    assert!(!status.success(), "{status}");
    let stderr = f.stderr_lines().join("\n");
    assert!(
        stderr.contains("MIN_ON_DEMAND_NUMBER")
            && stderr.contains("MinOnDemandNumber")
            && stderr.contains("lots"),
        "{}",
        f.output()
    );
    // The log record is JSON when the function logs JSON, naming the variable and the stack
    // parameter where the operator fixes the value.
    let record = f
        .stdout_lines()
        .into_iter()
        .chain(f.stderr_lines())
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
        .find(|r| r.to_string().contains("invalid settings"))
        .unwrap_or_else(|| panic!("a JSON record of the error: {}", f.output()));
    let text = record.to_string();
    assert!(
        text.contains("ERROR")
            && text.contains("MIN_ON_DEMAND_NUMBER")
            && text.contains("MinOnDemandNumber"),
        "{record}"
    );
    assert_eq!(api.polls(), 0, "no event was asked for");
    // lambda_runtime does not post to /runtime/init/error for an error returned before `run`
    // (Lambda reports the exit as Runtime.ExitError); if it ever does, it must name both too.
    if let Some(e) = api.init_error() {
        assert!(
            e.message.contains("MIN_ON_DEMAND_NUMBER") && e.message.contains("lots"),
            "{e:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_invocation_near_its_deadline_defers_every_launch_and_changes_nothing() {
    let w = world().await;
    w.account
        .create_group(
            &GroupSpec::new("web", "m5.large")
                .capacity(1, 3, 6)
                .grace_secs(1),
        )
        .await;
    let before = w.state().await;
    let f = w.function(&[("REPLACEMENTS_PER_PASS", "100%")]);
    assert!(Duration::from_secs(5) < spotswap::lambda::DEADLINE_MARGIN);

    let r = response(f.invoke(scheduled(), Duration::from_secs(5)));
    let t = &r["totals"];
    assert_eq!(t["clones_launched"], 0, "{r:#}");
    assert_eq!(t["swaps"], 0, "{r:#}");
    assert_eq!(t["failures"], 0, "{r:#}");
    assert!(t["deferred"].as_u64().unwrap() >= 1, "{r:#}");
    // The answer counts outcomes by action and status: every one deferred.
    let outcomes = r["regions"][0]["outcomes"].as_object().unwrap();
    assert!(!outcomes.is_empty(), "{r:#}");
    for (action, by_status) in outcomes {
        let statuses: Vec<&String> = by_status.as_object().unwrap().keys().collect();
        assert_eq!(statuses, ["deferred"], "{action}: {r:#}");
    }
    let calls = r["regions"][0]["calls"].as_object().unwrap();
    assert!(!calls.contains_key("RunInstances"), "{calls:?}");
    assert_eq!(w.state().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_invocation_past_its_deadline_launches_nothing() {
    let w = world().await;
    w.account
        .create_group(
            &GroupSpec::new("web", "m5.large")
                .capacity(1, 2, 4)
                .grace_secs(1),
        )
        .await;
    let before = w.state().await;
    let f = w.function(&[("REPLACEMENTS_PER_PASS", "100%")]);

    // The deadline is the moment the event is queued: it has passed when the handler starts.
    let r = response(f.invoke(scheduled(), Duration::ZERO));
    let t = &r["totals"];
    assert_eq!(t["clones_launched"], 0, "{r:#}");
    assert!(t["deferred"].as_u64().unwrap() >= 1, "{r:#}");
    assert_eq!(w.state().await, before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_launch_that_fails_is_a_warn_record_naming_the_group_operation_and_code_and_no_record_holds_user_data()
 {
    let w = world().await;
    let secret = "s3cr3t-hunter2";
    let user_data = format!("#!/bin/sh\nexport DB_PASSWORD={secret}\n");
    w.account
        .create_group(
            &GroupSpec::new("web", "m5.large")
                .launch_template(&user_data)
                .capacity(1, 3, 6)
                .grace_secs(1),
        )
        .await;
    // Someone deletes the subnets the group's instances run in: every launch into them fails.
    for s in &w.account.subnet_ids {
        w.account
            .ec2
            .delete_subnet()
            .subnet_id(s)
            .send()
            .await
            .expect("moto deletes the subnet");
    }
    let f = w.function(&[]);

    let r = response(f.invoke(scheduled(), FAR));

    assert!(r["totals"]["failures"].as_u64().unwrap() >= 1, "{r:#}");
    let _ = f.wait_for_json("the pass summary", |v| message(v) == "pass done");
    let lines = json_lines(&f.process);
    let failed: Vec<&Value> = lines
        .iter()
        .filter(|v| v["level"] == "WARN" && v["fields"]["result"] == "failed")
        .collect();
    let [record, ..] = failed[..] else {
        panic!("a failure record: {lines:#?}");
    };
    // Where and what, in the record's own fields and its spans.
    let text = record.to_string();
    assert!(text.contains("\"group\":\"web\""), "{record:#}");
    assert!(
        text.contains(&format!("\"region\":\"{REGION}\"")),
        "{record:#}"
    );
    // The pass it belongs to, as the report names it.
    let pass_id = r["pass_id"].as_str().expect("the report names its pass");
    assert!(text.contains(pass_id), "{record:#}");
    assert_eq!(record["fields"]["action"], "launch-clone", "{record:#}");
    assert!(
        matches!(
            record["fields"]["operation"].as_str(),
            Some("CreateFleet" | "RunInstances")
        ),
        "{record:#}"
    );
    assert_eq!(
        record["fields"]["code"], "InvalidSubnetID.NotFound",
        "{record:#}"
    );
    // No printed line, log record or metric, holds the user data, plain or base64.
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(&user_data);
    for l in f.process.lines() {
        assert!(
            !l.contains(secret) && !l.contains(&encoded),
            "user data in a log line: {l}"
        );
    }
}
