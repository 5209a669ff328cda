//! The `spotswap` binary as users run it.

use std::process::Command;

fn spotswap(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_spotswap"))
        .args(args)
        .env_clear()
        .output()
        .expect("the spotswap binary runs")
}

#[test]
fn types_like_m5_large_explain_json_prints_the_documented_shape() {
    let out = spotswap(&[
        "types",
        "--like",
        "m5.large",
        "--explain",
        "--output",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["base"], "m5.large");
    let m5a = v["compatible"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["instance_type"] == "m5a.large")
        .expect("m5a.large is compatible");
    assert_eq!(
        m5a,
        &serde_json::json!({"instance_type": "m5a.large", "vcpus": 2, "memory_mib": 8192, "on_demand_price": 0.086})
    );
    let c5 = v["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["instance_type"] == "c5.large")
        .expect("c5.large is rejected");
    assert_eq!(
        c5,
        &serde_json::json!({"instance_type": "c5.large", "reason": "memory"})
    );
}

#[test]
fn types_without_explain_leaves_rejected_out_and_other_regions_have_no_prices() {
    let out = spotswap(&[
        "types",
        "--like",
        "m5.large",
        "--region",
        "eu-west-1",
        "--output",
        "json",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v.get("rejected").is_none());
    assert!(
        v["compatible"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["on_demand_price"].is_null())
    );
}

#[test]
fn the_settings_flags_apply_to_types() {
    let out = spotswap(&[
        "types",
        "--like",
        "m5.large",
        "--allow-burstable",
        "--disallowed-instance-types",
        "m5a.*",
        "--output",
        "json",
    ]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["compatible"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["instance_type"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"t3.large"));
    assert!(!names.iter().any(|n| n.starts_with("m5a.")));
}

#[test]
fn an_unknown_type_is_a_one_line_error_with_exit_code_2() {
    let out = spotswap(&["types", "--like", "m5.lrge"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("m5.lrge") && err.contains("m5.large"), "{err}");
}

#[test]
fn a_bad_environment_value_is_named_and_nothing_runs() {
    let out = Command::new(env!("CARGO_BIN_EXE_spotswap"))
        .args(["types", "--like", "m5.large"])
        .env_clear()
        .env("MIN_ON_DEMAND_NUMBER", "lots")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("MIN_ON_DEMAND_NUMBER") && err.contains("lots"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn types_limit_keeps_the_cheapest_candidates_in_price_order() {
    let all = spotswap(&["types", "--like", "m5.large", "--output", "json"]);
    let limited = spotswap(&[
        "types", "--like", "m5.large", "--limit", "3", "--output", "json",
    ]);
    assert!(all.status.success() && limited.status.success());
    let all: serde_json::Value = serde_json::from_slice(&all.stdout).unwrap();
    let limited: serde_json::Value = serde_json::from_slice(&limited.stdout).unwrap();
    let all = all["compatible"].as_array().unwrap();
    let limited = limited["compatible"].as_array().unwrap();
    assert!(all.len() > 3);
    assert_eq!(limited[..], all[..3]);
    let prices: Vec<f64> = all
        .iter()
        .filter_map(|c| c["on_demand_price"].as_f64())
        .collect();
    assert!(prices.windows(2).all(|w| w[0] <= w[1]), "{prices:?}");
}

#[test]
fn settings_show_each_effective_value_and_where_it_came_from() {
    use serde_json::json;
    let out = Command::new(env!("CARGO_BIN_EXE_spotswap"))
        .args(["--pools-per-az", "2", "settings", "--output", "json"])
        .env_clear()
        .env("REPLACEMENTS_PER_PASS", "50%")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema_version"], 1);
    let find = |stem: &str| {
        v["settings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["setting"] == stem)
            .unwrap()
            .clone()
    };
    let flag = find("pools-per-az");
    assert_eq!(
        (&flag["value"], &flag["source"]),
        (&json!("2"), &json!("flag"))
    );
    let env = find("replacements-per-pass");
    assert_eq!(
        (&env["value"], &env["source"], &env["environment"]),
        (
            &json!("50%"),
            &json!("environment"),
            &json!("REPLACEMENTS_PER_PASS")
        )
    );
    let default = find("orphan-timeout-minutes");
    assert_eq!(
        (&default["value"], &default["source"]),
        (&json!("60"), &json!("default"))
    );
    // The table says the same, one setting per line.
    let out = Command::new(env!("CARGO_BIN_EXE_spotswap"))
        .args(["--pools-per-az", "2", "settings"])
        .env_clear()
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("--pools-per-az = \"2\"  (from flag;"),
        "{text}"
    );
    assert!(
        text.contains("--orphan-timeout-minutes = \"60\"  (from default;"),
        "{text}"
    );
}

/// The top-level fields of a JSON document, each of which docs/json-output.md must name.
fn documented_fields(out: &std::process::Output) -> Vec<String> {
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["schema_version"], 1, "every JSON output is versioned");
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/json-output.md"))
        .unwrap();
    v.as_object()
        .unwrap()
        .keys()
        .filter(|k| !doc.contains(&format!("`{k}`")))
        .cloned()
        .collect()
}

#[test]
fn the_json_outputs_are_versioned_and_their_fields_documented() {
    let snapshot = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/plain_convergence.json"
    );
    for args in [
        &[
            "types",
            "--like",
            "m5.large",
            "--explain",
            "--output",
            "json",
        ][..],
        &["settings", "--output", "json"],
        &["plan", "--snapshot", snapshot, "--output", "json"],
    ] {
        let undocumented = documented_fields(&spotswap(args));
        assert!(undocumented.is_empty(), "{args:?}: {undocumented:?}");
    }
    // Money to 4 decimals an hour, whatever the float's last digits.
    let out = spotswap(&["plan", "--snapshot", snapshot, "--output", "json"]);
    let text = String::from_utf8(out.stdout).unwrap();
    for line in text.lines().filter(|l| l.contains("\"hourly_cost_")) {
        let number = line.split(':').nth(1).unwrap().trim().trim_end_matches(',');
        let decimals = number.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(decimals <= 4, "{line}");
    }
}

/// An endpoint that accepts connections and never answers (a proxy that hangs, a black-holed
/// VPC endpoint): `spotswap run` gives up within its call timeouts, in one line that names the
/// call, instead of hanging for as long as the socket lives. The server is a listener of this
/// test's own on 127.0.0.1, stopped before the test returns.
#[test]
fn a_hung_endpoint_ends_the_pass_within_the_call_timeouts_with_a_one_line_error() {
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
    listener.set_nonblocking(true).expect("non-blocking accept");
    let addr = listener.local_addr().expect("its address");
    let stop = Arc::new(AtomicBool::new(false));
    let server = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => held.push(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
            held.len()
        })
    };
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_spotswap"))
        .args([
            "run",
            "--connect-timeout-seconds",
            "1",
            "--attempt-timeout-seconds",
            "1",
            "--operation-timeout-seconds",
            "3",
        ])
        .env_clear()
        .env("AWS_ENDPOINT_URL", format!("http://{addr}"))
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .output()
        .expect("the spotswap binary runs");
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let connections = server.join().expect("the server thread");

    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(connections >= 1, "the pass reached the endpoint");
    assert!(took < Duration::from_secs(20), "took {took:?}: {stderr}");
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() <= 2, "one or two lines: {stderr}");
    assert!(
        stderr.contains("DescribeRegions"),
        "names the call: {stderr}"
    );
    assert!(stderr.contains("no answer in time"), "says why: {stderr}");
}
