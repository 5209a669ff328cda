//! The CloudFormation templates (`cloudformation/`) deploy what the code expects: the Rust
//! function on `provided.al2023`, one pass at a time on a 5-minute schedule that ends before the
//! next, every setting as a parameter passed under its environment variable, the interruption
//! rules, and a role that grants no wildcard action and scopes every write it can.
//!
//! The templates are read as plain YAML (they use long-form intrinsic functions only); cfn-lint
//! checks them against CloudFormation's own schemas (`make cfn-lint`).

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Map, Value, json};
use spotswap::protocol as tags;
use spotswap::settings::{Check, SETTINGS, Settings};
use yaml_rust2::{Yaml, YamlLoader};

pub(crate) const MAIN: &str = "cloudformation/spotswap.yaml";
pub(crate) const REGIONAL: &str = "cloudformation/regional.yaml";
const TEMPLATES: [&str; 2] = [MAIN, REGIONAL];

pub(crate) fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// A YAML node as JSON (CloudFormation templates are JSON documents written in YAML).
fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Integer(i) => json!(i),
        Yaml::Real(r) => json!(r.parse::<f64>().expect("a YAML real is a number")),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Null => Value::Null,
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        other => panic!("a mapping key that is not a string: {other:?}"),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        Yaml::Alias(_) | Yaml::BadValue => panic!("unsupported YAML node: {y:?}"),
    }
}

pub(crate) fn load(path: &str) -> Value {
    let docs = YamlLoader::load_from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(docs.len(), 1, "{path} holds one YAML document");
    to_json(&docs[0])
}

fn section<'a>(t: &'a Value, name: &str) -> &'a Map<String, Value> {
    t[name]
        .as_object()
        .unwrap_or_else(|| panic!("no {name} section"))
}

fn parameter<'a>(t: &'a Value, name: &str) -> &'a Value {
    section(t, "Parameters")
        .get(name)
        .unwrap_or_else(|| panic!("no parameter {name}"))
}

/// The resources of one type, with their logical ids.
fn resources_of<'a>(t: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    section(t, "Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

fn the_one<'a>(t: &'a Value, kind: &str) -> (&'a str, &'a Value) {
    let found = resources_of(t, kind);
    assert_eq!(found.len(), 1, "one {kind}: {found:?}");
    found[0]
}

/// The pass function (on the schedule).
fn function(t: &Value) -> &Value {
    &t["Resources"]["Function"]["Properties"]
}

/// The events function (spot interruption warnings, rebalance recommendations).
fn events_function(t: &Value) -> &Value {
    &t["Resources"]["EventsFunction"]["Properties"]
}

fn r#ref(name: &str) -> Value {
    json!({ "Ref": name })
}

fn get_att(resource: &str, attribute: &str) -> Value {
    json!({ "Fn::GetAtt": [resource, attribute] })
}

/// A value that is one string or a list of strings.
fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .map(|s| s.as_str().expect("a list of strings").to_string())
            .collect(),
        other => panic!("expected a string or a list of strings: {other}"),
    }
}

/// Resource ARNs as text: plain strings, and `Fn::Sub` patterns as written.
fn resources(v: &Value) -> Vec<String> {
    match v {
        Value::Array(a) => a.iter().flat_map(resources).collect(),
        Value::Object(o) => match o.get("Fn::Sub") {
            Some(Value::String(s)) => vec![s.clone()],
            _ => vec![v.to_string()],
        },
        other => strings(other),
    }
}

/// The rule whose event pattern matches exactly this detail-type of `aws.ec2`.
fn rule_for<'a>(t: &'a Value, detail_type: &str) -> (&'a str, &'a Value) {
    let pattern = json!({"source": ["aws.ec2"], "detail-type": [detail_type]});
    let found: Vec<_> = resources_of(t, "AWS::Events::Rule")
        .into_iter()
        .filter(|(_, r)| r["Properties"]["EventPattern"] == pattern)
        .collect();
    assert_eq!(found.len(), 1, "one rule matching exactly {pattern}");
    found[0]
}

/// A policy document as IAM will see it: both branches of an `Fn::If`, and a JSON string built
/// by `Fn::Sub` parsed as JSON, its `${Name}` variables left as written (as in an `Fn::Sub`
/// resource ARN, which [`resources`] reads as written too).
fn expand_document(doc: &Value) -> Vec<Value> {
    if let Some(branches) = doc.get("Fn::If") {
        let b = branches.as_array().expect("Fn::If takes a list");
        assert_eq!(b.len(), 3, "Fn::If takes a condition and two values");
        return [&b[1], &b[2]]
            .into_iter()
            .flat_map(expand_document)
            .collect();
    }
    if let Some(sub) = doc.get("Fn::Sub") {
        let text = match sub {
            Value::String(s) => s.as_str(),
            Value::Array(a) => a[0].as_str().expect("Fn::Sub's first item is its text"),
            other => panic!("Fn::Sub of {other}"),
        };
        let parsed: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("a policy document string that is not JSON ({e}): {text}"));
        return vec![parsed];
    }
    vec![doc.clone()]
}

/// Every policy document of every role and policy in a template, with a label saying where.
fn policy_documents(t: &Value) -> Vec<(String, Value)> {
    let mut docs = Vec::new();
    for (id, r) in section(t, "Resources") {
        let p = &r["Properties"];
        match r["Type"].as_str() {
            Some("AWS::IAM::Role") => {
                for d in expand_document(&p["AssumeRolePolicyDocument"]) {
                    docs.push((format!("{id} trust policy"), d));
                }
                for policy in p["Policies"].as_array().into_iter().flatten() {
                    for d in expand_document(&policy["PolicyDocument"]) {
                        docs.push((format!("{id} policy {}", policy["PolicyName"]), d));
                    }
                }
            }
            Some("AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy") => {
                for d in expand_document(&p["PolicyDocument"]) {
                    docs.push((id.clone(), d));
                }
            }
            _ => {}
        }
    }
    docs
}

fn statements(doc: &Value) -> Vec<Value> {
    match &doc["Statement"] {
        Value::Array(a) => a.clone(),
        s @ Value::Object(_) => vec![s.clone()],
        other => panic!("a policy document without statements: {other}"),
    }
}

/// Every statement of the main stack's function role that grants `action`.
fn function_statements_granting(action: &str) -> Vec<Value> {
    let t = load(MAIN);
    let found: Vec<Value> = policy_documents(&t)
        .into_iter()
        .filter(|(label, _)| label.starts_with("FunctionRole policy"))
        .flat_map(|(_, d)| statements(&d))
        .filter(|s| strings(&s["Action"]).iter().any(|a| a == action))
        .collect();
    assert!(!found.is_empty(), "no statement grants {action}");
    found
}

#[test]
fn the_templates_use_long_form_intrinsic_functions_only() {
    for path in TEMPLATES {
        for (n, line) in read(path).lines().enumerate() {
            let code = line.split(" #").next().unwrap_or("");
            if code.trim_start().starts_with('#') {
                continue;
            }
            assert!(
                !code.contains(" !") && !code.contains("- !"),
                "{path}:{}: a YAML short tag (write Ref: / Fn::Sub: ... instead): {line}",
                n + 1
            );
        }
    }
}

#[test]
fn the_function_is_the_rust_binary_on_provided_al2023_from_s3() {
    let t = load(MAIN);
    let f = function(&t);
    assert_eq!(f["Runtime"], "provided.al2023");
    assert_eq!(f["Handler"], "bootstrap");
    assert_eq!(f["Code"]["S3Bucket"], r#ref("CodeS3Bucket"));
    assert_eq!(f["Code"]["S3Key"], r#ref("CodeS3Key"));
    assert_eq!(f["Role"], get_att("FunctionRole", "Arn"));
}

#[test]
fn the_architecture_is_a_parameter_x86_64_by_default_as_make_deploy_has_it_or_arm64() {
    let t = load(MAIN);
    assert_eq!(
        function(&t)["Architectures"],
        json!([r#ref("Architecture")])
    );
    let p = parameter(&t, "Architecture");
    assert_eq!(p["Default"], "x86_64");
    assert_eq!(p["AllowedValues"], json!(["arm64", "x86_64"]));
    // The defaults agree across surfaces: `make deploy` deploys what the template expects.
    let makefile = read("Makefile");
    let arch = makefile
        .lines()
        .find_map(|l| l.strip_prefix("ARCH ?= "))
        .expect("the Makefile's ARCH default");
    assert_eq!(p["Default"], arch.trim());
}

#[test]
fn a_pass_runs_every_five_minutes_and_ends_before_the_next_one() {
    let t = load(MAIN);
    assert_eq!(
        parameter(&t, "ScheduleExpression")["Default"],
        "rate(5 minutes)"
    );
    let schedules: Vec<_> = resources_of(&t, "AWS::Events::Rule")
        .into_iter()
        .filter(|(_, r)| r["Properties"].get("ScheduleExpression").is_some())
        .collect();
    assert_eq!(schedules.len(), 1, "one schedule rule");
    let rule = &schedules[0].1["Properties"];
    assert_eq!(rule["ScheduleExpression"], r#ref("ScheduleExpression"));
    assert_eq!(rule["Targets"][0]["Arn"], get_att("Function", "Arn"));

    let f = function(&t);
    assert_eq!(f["Timeout"], r#ref("Timeout"));
    let timeout = parameter(&t, "Timeout");
    let default = timeout["Default"].as_i64().expect("a number");
    let max = timeout["MaxValue"].as_i64().expect("a number");
    assert!(
        default < 300,
        "Timeout default {default} s < the 300 s period"
    );
    assert!(max < 300, "Timeout MaxValue {max} s < the 300 s period");
    assert!(default <= max);

    // One invocation at a time, and no retry that would overlap the next pass.
    assert_eq!(f["ReservedConcurrentExecutions"], 1);
    let invokes = resources_of(&t, "AWS::Lambda::EventInvokeConfig");
    assert_eq!(invokes.len(), 2, "one per function");
    for (id, invoke) in &invokes {
        assert_eq!(invoke["Properties"]["MaximumRetryAttempts"], 0, "{id}");
    }
    let functions: Vec<&Value> = invokes
        .iter()
        .map(|(_, i)| &i["Properties"]["FunctionName"])
        .collect();
    assert!(functions.contains(&&r#ref("Function")));
    assert!(functions.contains(&&r#ref("EventsFunction")));
    // The events function never waits behind a pass, and ends well inside EC2's notice.
    let e = events_function(&t);
    assert!(e.get("ReservedConcurrentExecutions").is_none());
    assert!(
        e["Timeout"].as_i64().is_some_and(|t| t <= 120),
        "{}",
        e["Timeout"]
    );
    assert_eq!(e["Runtime"], "provided.al2023");
    assert_eq!(e["Code"], f["Code"], "the same code");
    assert_eq!(e["Role"], f["Role"]);
}

#[test]
fn logs_are_json_lines_in_the_function_log_group_with_a_retention() {
    let t = load(MAIN);
    let groups = resources_of(&t, "AWS::Logs::LogGroup");
    assert_eq!(groups.len(), 2, "one per function");
    for (gid, group) in &groups {
        assert_eq!(
            group["Properties"]["RetentionInDays"],
            r#ref("LogRetentionInDays"),
            "{gid}"
        );
    }
    let id = "LogGroup";
    let g = &t["Resources"][id]["Properties"];
    assert_eq!(
        g["LogGroupName"],
        json!({"Fn::Sub": "/aws/lambda/${FunctionName}"})
    );
    assert_eq!(
        t["Resources"]["EventsLogGroup"]["Properties"]["LogGroupName"],
        json!({"Fn::Sub": "/aws/lambda/${FunctionName}-events"})
    );
    assert_eq!(
        events_function(&t)["LoggingConfig"]["LogGroup"],
        r#ref("EventsLogGroup")
    );
    assert_eq!(events_function(&t)["LoggingConfig"]["LogFormat"], "JSON");
    let retention = parameter(&t, "LogRetentionInDays");
    assert_eq!(retention["Default"], 14);
    assert!(
        retention["AllowedValues"]
            .as_array()
            .is_some_and(|v| v.contains(&json!(14)))
    );
    let f = function(&t);
    assert_eq!(f["FunctionName"], r#ref("FunctionName"));
    assert_eq!(f["LoggingConfig"]["LogFormat"], "JSON");
    assert_eq!(f["LoggingConfig"]["LogGroup"], r#ref(id));
}

#[test]
fn every_setting_is_a_parameter_with_its_default_passed_as_its_environment_variable() {
    let t = load(MAIN);
    let env = function(&t)["Environment"]["Variables"]
        .as_object()
        .expect("environment variables");
    for d in SETTINGS {
        let name = d.cfn_parameter();
        let p = parameter(&t, &name);
        // The parameter's type and constraints are the setting's deploy-time check, so a bad
        // value fails the deploy, not every invocation.
        match d.check {
            Check::Number { min, max } => {
                assert_eq!(p["Type"], "Number", "{name}");
                assert_eq!(p["MinValue"].as_f64(), Some(min), "{name}");
                assert_eq!(p["MaxValue"].as_f64(), Some(max), "{name}");
                let default: f64 = d.default.parse().expect("a numeric default");
                assert_eq!(p["Default"].as_f64(), Some(default), "{name}");
            }
            Check::Choices(choices) => {
                assert_eq!(p["Type"], "String", "{name}");
                assert_eq!(p["AllowedValues"], json!(choices), "{name}");
                assert!(choices.contains(&d.default), "{name} allows its default");
            }
            Check::Pattern(pattern, why) => {
                assert_eq!(p["Type"], "String", "{name}");
                assert_eq!(p["AllowedPattern"], pattern, "{name}");
                assert_eq!(p["ConstraintDescription"], why, "{name}");
            }
        }
        if !matches!(d.check, Check::Number { .. }) {
            assert_eq!(
                p["Default"].as_str(),
                Some(d.default),
                "{name}'s default is the setting's"
            );
        }
        assert_eq!(
            env.get(&d.env()),
            Some(&r#ref(&name)),
            "{} is the parameter {name}",
            d.env()
        );
    }
    // Nothing else: a variable of a removed setting would be ignored silently.
    let settings: BTreeSet<String> = SETTINGS.iter().map(|d| d.env()).collect();
    let variables: BTreeSet<String> = env.keys().cloned().collect();
    assert_eq!(variables, settings);
    // Both functions read the same settings.
    assert_eq!(
        events_function(&t)["Environment"],
        function(&t)["Environment"]
    );
}

/// Whether a deploy with `value` for the setting passes CloudFormation's parameter check.
fn deploy_accepts(check: Check, value: &str) -> bool {
    match check {
        Check::Number { min, max } => value
            .parse::<f64>()
            .is_ok_and(|n| n.is_finite() && (min..=max).contains(&n)),
        Check::Choices(choices) => choices.contains(&value),
        Check::Pattern(pattern, _) => regex_lite::Regex::new(pattern)
            .expect("a valid pattern")
            .is_match(value),
    }
}

#[test]
fn the_deploy_checks_take_what_the_settings_take_and_refuse_the_usual_mistakes() {
    // (setting, values both take, values the deploy refuses: mostly ones the setting refuses
    // too, so they fail at deploy instead of on every invocation)
    type Case = (
        &'static str,
        &'static [&'static str],
        &'static [&'static str],
    );
    let cases: &[Case] = &[
        (
            "regions",
            &["", "us-east-1", "us-*, eu-west-1", "eu-west-1 eu-central-1"],
            &["us_east_1!"],
        ),
        (
            "tag-filters",
            &["", "spot-enabled=true", "team=web*, env=prod", " a=b "],
            &["bob", "=x"],
        ),
        ("tag-filtering-mode", &["opt-in", "opt-out"], &["sometimes"]),
        ("dry-run", &["true", "false"], &["yes"]),
        ("cache-hours", &["0", "6", "168"], &["-1", "169", "soon"]),
        (
            "lease-seconds",
            &["10", "180", "3600"],
            &["0", "3601", "long"],
        ),
        (
            "connect-timeout-seconds",
            &["1", "5", "300"],
            &["0", "301", "fast"],
        ),
        (
            "attempt-timeout-seconds",
            &["1", "20", "300"],
            &["0", "301", "fast"],
        ),
        (
            "operation-timeout-seconds",
            &["1", "60", "900"],
            &["0", "901", "fast"],
        ),
        ("interruption-action", &["terminate", "detach"], &["stop"]),
        (
            "handle-rebalance-recommendations",
            &["true", "false"],
            &["1"],
        ),
        // A CloudFormation Number cannot require a whole number: 2.5 reaches the function,
        // whose initialisation then fails naming the parameter and the variable.
        (
            "min-on-demand-number",
            &["0", "2", "100000"],
            &["two", "-1"],
        ),
        (
            "min-on-demand-percentage",
            &["0", "50", "33.3", "100"],
            &["142", "-1", "half"],
        ),
        (
            "allowed-instance-types",
            &["", "c5.*", "m5.large, m6i.*", "current"],
            &["c5.large;rm"],
        ),
        (
            "disallowed-instance-types",
            &["", "t2.*", "t3.nano t3.micro"],
            &["t2.*;"],
        ),
        (
            "on-demand-price-multiplier",
            &["1.0", "0.7", "0.01"],
            &["0", "1.5", "x"],
        ),
        (
            "spot-product-description",
            &[
                "",
                "Linux/UNIX",
                "Windows (Amazon VPC)",
                "Red Hat Enterprise Linux",
                "SUSE Linux",
            ],
            &["Linux", "BSD"],
        ),
        (
            "replacements-per-pass",
            &["25%", "3", "12.5%"],
            &["-1", "a quarter"],
        ),
        ("pools-per-az", &["1", "3"], &["0", "many"]),
        (
            "spread-price-margin",
            &["0", "5", "100"],
            &["-1", "101", "cheap"],
        ),
        (
            "allocation-strategy",
            &["price-capacity-optimized", "capacity-optimized-prioritized"],
            &["lowest-price"],
        ),
        ("spot-price-window-minutes", &["1", "60"], &["0", "x"]),
        (
            "cron-schedule",
            &["* *", "9-17 1-5", "*/2 *", "0,12 1-5"],
            &["every day", "9-17"],
        ),
        (
            "cron-timezone",
            &[
                "UTC",
                "Europe/London",
                "America/Argentina/Buenos_Aires",
                "Etc/GMT+5",
            ],
            &["Mars Olympus", ""],
        ),
        ("cron-schedule-state", &["on", "off"], &["maybe"]),
        ("orphan-timeout-minutes", &["0", "60"], &["-5", "soon"]),
        (
            "healthy-timeout-minutes",
            &["1", "10", "1440"],
            &["0", "1441", "soon"],
        ),
        (
            "interruption-cooldown-minutes",
            &["0", "60"],
            &["-5", "soon"],
        ),
        ("allow-burstable", &["true", "false"], &["yes please"]),
    ];
    let covered: BTreeSet<&str> = cases.iter().map(|(stem, _, _)| *stem).collect();
    let all: BTreeSet<&str> = SETTINGS.iter().map(|d| d.stem).collect();
    assert_eq!(covered, all, "every setting has samples");
    for (stem, good, bad) in cases {
        let d = SETTINGS.iter().find(|d| d.stem == *stem).unwrap();
        for v in good.iter().chain([&d.default]) {
            assert!(
                deploy_accepts(d.check, v),
                "{stem}: the deploy refuses {v:?}"
            );
            assert!(
                Settings::from_pairs([(*stem, *v)]).is_ok(),
                "{stem}: the setting refuses {v:?}"
            );
        }
        for v in *bad {
            assert!(
                !deploy_accepts(d.check, v),
                "{stem}: the deploy takes {v:?}"
            );
        }
    }
}

#[test]
fn every_parameter_is_used_and_in_one_parameter_group() {
    for path in TEMPLATES {
        let t = load(path);
        let mut grouped = Vec::new();
        for g in t["Metadata"]["AWS::CloudFormation::Interface"]["ParameterGroups"]
            .as_array()
            .expect("parameter groups")
        {
            grouped.extend(strings(&g["Parameters"]));
        }
        let unique: BTreeSet<&String> = grouped.iter().collect();
        assert_eq!(
            unique.len(),
            grouped.len(),
            "{path}: a parameter in two groups"
        );
        let params: BTreeSet<&String> = section(&t, "Parameters").keys().collect();
        assert_eq!(unique, params, "{path}: parameters and their groups");

        let body = serde_json::to_string(&json!([t["Resources"], t["Conditions"]])).unwrap();
        for p in params {
            assert!(
                body.contains(&format!("{{\"Ref\":\"{p}\"}}"))
                    || body.contains(&format!("${{{p}}}")),
                "{path}: parameter {p} is never used"
            );
        }
    }
}

#[test]
fn the_interruption_rules_match_exactly_the_spot_interruption_warning() {
    let t = load(MAIN);
    let (id, rule) = rule_for(&t, "EC2 Spot Instance Interruption Warning");
    assert!(rule.get("Condition").is_none(), "always there");
    assert_eq!(
        rule["Properties"]["EventPattern"],
        json!({"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]})
    );
    assert_eq!(
        rule["Properties"]["Targets"][0]["Arn"],
        get_att("EventsFunction", "Arn"),
        "{id} invokes the events function"
    );

    let r = load(REGIONAL);
    let (_, forward) = rule_for(&r, "EC2 Spot Instance Interruption Warning");
    assert_eq!(
        forward["Properties"]["EventPattern"],
        json!({"source": ["aws.ec2"], "detail-type": ["EC2 Spot Instance Interruption Warning"]})
    );
}

#[test]
fn the_rebalance_rules_exist_only_when_rebalance_recommendations_are_handled() {
    let t = load(MAIN);
    let (_, rule) = rule_for(&t, "EC2 Instance Rebalance Recommendation");
    let condition = rule["Condition"].as_str().expect("a conditional rule");
    assert_eq!(
        t["Conditions"][condition],
        json!({"Fn::Equals": [r#ref("HandleRebalanceRecommendations"), "true"]})
    );
    assert_eq!(
        rule["Properties"]["Targets"][0]["Arn"],
        get_att("EventsFunction", "Arn")
    );
    assert_eq!(
        parameter(&t, "HandleRebalanceRecommendations")["Default"],
        "false"
    );

    let r = load(REGIONAL);
    let (_, forward) = rule_for(&r, "EC2 Instance Rebalance Recommendation");
    let condition = forward["Condition"].as_str().expect("a conditional rule");
    let definition = r["Conditions"][condition].to_string();
    assert!(
        definition.contains("HandleRebalanceRecommendations"),
        "{condition}: {definition}"
    );
}

#[test]
fn every_rule_of_the_main_stack_may_invoke_the_function() {
    let t = load(MAIN);
    let permissions = resources_of(&t, "AWS::Lambda::Permission");
    for (id, rule) in resources_of(&t, "AWS::Events::Rule") {
        let found: Vec<_> = permissions
            .iter()
            .filter(|(_, p)| p["Properties"]["SourceArn"] == get_att(id, "Arn"))
            .collect();
        assert_eq!(found.len(), 1, "one permission for {id}");
        let (pid, p) = found[0];
        assert_eq!(
            p["Properties"]["Principal"], "events.amazonaws.com",
            "{pid}"
        );
        assert_eq!(p["Properties"]["Action"], "lambda:InvokeFunction", "{pid}");
        // The permission is for the function the rule targets.
        let target = &rule["Properties"]["Targets"][0]["Arn"]["Fn::GetAtt"][0];
        assert_eq!(
            p["Properties"]["FunctionName"],
            json!({ "Ref": target }),
            "{pid}"
        );
        assert_eq!(
            p.get("Condition"),
            rule.get("Condition"),
            "{pid} exists with {id}"
        );
    }
}

#[test]
fn no_policy_grants_every_action_or_a_whole_service() {
    for path in TEMPLATES {
        let t = load(path);
        let docs = policy_documents(&t);
        assert!(!docs.is_empty(), "{path} has policies");
        for (label, doc) in docs {
            assert_eq!(doc["Version"], "2012-10-17", "{path} {label}");
            for s in statements(&doc) {
                assert!(s.get("NotAction").is_none(), "{path} {label}: NotAction");
                assert!(
                    s.get("NotResource").is_none(),
                    "{path} {label}: NotResource"
                );
                assert_eq!(s["Effect"], "Allow", "{path} {label}");
                let sid = s["Sid"].as_str().unwrap_or_default();
                assert!(
                    !sid.is_empty() && sid.chars().all(|c| c.is_ascii_alphanumeric()),
                    "{path} {label}: every statement has a Sid saying why: {s}"
                );
                for action in strings(&s["Action"]) {
                    assert!(
                        action != "*" && !action.ends_with(":*"),
                        "{path} {label}: {action}"
                    );
                    assert!(
                        !action.contains('*'),
                        "{path} {label}: a wildcard action {action} grants what is not listed"
                    );
                }
            }
        }
    }
}

#[test]
fn only_reads_are_granted_on_every_resource_without_a_condition() {
    let t = load(MAIN);
    for (label, doc) in policy_documents(&t) {
        if label.contains("trust policy") {
            continue;
        }
        for s in statements(&doc) {
            let everywhere = resources(&s["Resource"]).iter().any(|r| r == "*");
            if !everywhere || s.get("Condition").is_some() {
                continue;
            }
            for action in strings(&s["Action"]) {
                let name = action.split(':').nth(1).unwrap_or_default();
                // Decoding a refusal's message reads; it takes no resource (the preflight).
                assert!(
                    ["Describe", "Get", "List"]
                        .iter()
                        .any(|p| name.starts_with(p))
                        || action == "sts:DecodeAuthorizationMessage",
                    "{label}: {action} on every resource, unconditioned"
                );
            }
        }
    }
}

#[test]
fn pass_role_is_only_to_ec2() {
    for s in function_statements_granting("iam:PassRole") {
        assert_eq!(
            s["Condition"],
            json!({"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}),
        );
    }
}

/// Whether a statement applies only when the condition key `key` is present: tested by any
/// operator but `Null`, or by `Null` with `"false"` (a `Null` of `"true"` requires it absent).
fn requires(s: &Value, key: &str) -> bool {
    s["Condition"].as_object().is_some_and(|ops| {
        ops.iter().any(|(op, keys)| match keys.get(key) {
            None => false,
            Some(v) if op == "Null" => v == "false",
            Some(_) => true,
        })
    })
}

#[test]
fn ec2_writes_touch_only_clones() {
    let on_clone = |s: &Value, prefix: &str| {
        ["aws", "ec2"]
            .iter()
            .any(|service| requires(s, &format!("{service}:{prefix}/{}", tags::GROUP)))
    };
    // TerminateInstances: only instances carrying spotswap:group.
    for s in function_statements_granting("ec2:TerminateInstances") {
        assert_eq!(strings(&s["Action"]), ["ec2:TerminateInstances"]);
        assert!(
            on_clone(&s, "ResourceTag"),
            "TerminateInstances is conditioned on the spotswap:group tag: {s}"
        );
    }
    // RunInstances: the instance and its volumes only with spotswap:group in the request.
    let launches = function_statements_granting("ec2:RunInstances");
    let mut created_unconditioned = Vec::new();
    for s in &launches {
        let tagged = on_clone(s, "RequestTag");
        for r in resources(&s["Resource"]) {
            let created = r.contains(":instance/") || r.contains(":volume/");
            if created && !tagged {
                created_unconditioned.push(r);
            }
        }
    }
    assert!(
        created_unconditioned.is_empty(),
        "RunInstances creates these without the spotswap:group tag: {created_unconditioned:?}"
    );
    // CreateTags: in the call that creates the resource, or on an instance already tagged as
    // a clone (pairing it with the instance it replaces).
    let tagging = function_statements_granting("ec2:CreateTags");
    assert_eq!(tagging.len(), 2, "{tagging:?}");
    for s in tagging {
        let on_create = s["Condition"]
            == json!({"StringEquals": {"ec2:CreateAction":
                ["RunInstances", "CreateFleet", "CreateLaunchTemplate"]}});
        let on_existing_clone = on_clone(&s, "ResourceTag")
            && resources(&s["Resource"])
                .iter()
                .all(|r| r.contains(":instance/"));
        assert!(on_create || on_existing_clone, "{s}");
    }
    // CreateFleet: its instances only with spotswap:group in the request, as RunInstances.
    for s in function_statements_granting("ec2:CreateFleet") {
        for r in resources(&s["Resource"]) {
            if r.contains(":instance/") {
                assert!(on_clone(&s, "RequestTag"), "{s}");
            }
        }
    }
    // Launch templates: created only tagged as spotswap's, deleted only when so tagged.
    let own = |s: &Value, prefix: &str| {
        requires(s, &format!("aws:{prefix}/{}", tags::LAUNCH_CONFIGURATION))
    };
    for s in function_statements_granting("ec2:CreateLaunchTemplate") {
        assert!(own(&s, "RequestTag"), "{s}");
    }
    let deletes = function_statements_granting("ec2:DeleteLaunchTemplate");
    assert!(!deletes.is_empty());
    for s in deletes {
        assert!(own(&s, "ResourceTag"), "{s}");
    }
}

#[test]
fn group_writes_need_the_opt_in_tag_unless_it_is_empty() {
    let t = load(MAIN);
    let (_, role) = the_one(&t, "AWS::IAM::Role");
    let policies = role["Properties"]["Policies"].as_array().expect("policies");
    let writes: Vec<&Value> = policies
        .iter()
        .filter(|p| {
            p["PolicyDocument"]
                .to_string()
                .contains("autoscaling:AttachInstances")
        })
        .collect();
    assert_eq!(writes.len(), 1, "one policy holds the group writes");
    let doc = &writes[0]["PolicyDocument"];
    let branches = doc["Fn::If"]
        .as_array()
        .expect("chosen by the opt-in tag key");
    let condition = branches[0].as_str().expect("a condition name");
    assert_eq!(
        t["Conditions"][condition],
        json!({"Fn::Not": [{"Fn::Equals": [r#ref("OptInTagKey"), ""]}]})
    );
    assert_eq!(parameter(&t, "OptInTagKey")["Default"], "spot-enabled");
    assert_eq!(parameter(&t, "OptInTagValue")["Default"], "true");

    let scoped = &expand_document(&branches[1])[0];
    let unscoped = &expand_document(&branches[2])[0];
    let grants = |d: &Value| -> Vec<(Vec<String>, Vec<String>)> {
        statements(d)
            .iter()
            .map(|s| (strings(&s["Action"]), resources(&s["Resource"])))
            .collect()
    };
    assert_eq!(
        grants(scoped),
        grants(unscoped),
        "both branches grant the same"
    );

    let granted: BTreeSet<String> = grants(scoped).into_iter().flat_map(|(a, _)| a).collect();
    let expected: BTreeSet<String> = [
        "AttachInstances",
        "DetachInstances",
        "TerminateInstanceInAutoScalingGroup",
        "UpdateAutoScalingGroup",
        "CreateOrUpdateTags",
        "DeleteTags",
    ]
    .iter()
    .map(|a| format!("autoscaling:{a}"))
    .collect();
    assert_eq!(granted, expected);

    let state_tags = json!([
        tags::MAX_SIZE,
        tags::INTERRUPTED,
        tags::LAUNCH_BACKOFF,
        tags::LEASE,
        tags::SETTLED
    ]);
    for s in statements(scoped) {
        assert_eq!(
            s["Condition"]["StringLike"],
            json!({"autoscaling:ResourceTag/${OptInTagKey}": "${OptInTagValue}"}),
            "{s}"
        );
    }
    for d in [scoped, unscoped] {
        for s in statements(d) {
            let tagging = strings(&s["Action"]).iter().any(|a| a.ends_with("Tags"));
            if tagging {
                assert_eq!(
                    s["Condition"]["ForAllValues:StringEquals"]["aws:TagKeys"], state_tags,
                    "group tags: only spotswap's state tags: {s}"
                );
            }
        }
    }
}

#[test]
fn logs_are_written_only_to_the_functions_log_groups() {
    let statements = function_statements_granting("logs:PutLogEvents");
    assert!(!statements.is_empty());
    for s in statements {
        assert_eq!(
            s["Resource"],
            json!([get_att("LogGroup", "Arn"), get_att("EventsLogGroup", "Arn")])
        );
    }
}

#[test]
fn the_main_stack_outputs_what_the_regional_stacks_need() {
    let t = load(MAIN);
    let outputs = section(&t, "Outputs");
    for name in ["FunctionName", "FunctionArn", "RoleArn", "HomeEventBusArn"] {
        assert!(outputs.contains_key(name), "output {name}");
    }
    assert_eq!(
        outputs["HomeEventBusArn"]["Value"],
        json!({"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/default"})
    );
}

#[test]
fn the_regional_stack_forwards_to_the_home_bus_and_skips_the_home_region() {
    let r = load(REGIONAL);
    assert_eq!(
        r["Conditions"]["IsHomeRegion"],
        json!({"Fn::Equals": [r#ref("AWS::Region"), r#ref("HomeRegion")]})
    );
    let home_bus = json!({"Fn::If": [
        "HomeEventBusArnGiven",
        r#ref("HomeEventBusArn"),
        {"Fn::Sub": "arn:${AWS::Partition}:events:${HomeRegion}:${AWS::AccountId}:event-bus/default"}
    ]});
    for (id, rule) in resources_of(&r, "AWS::Events::Rule") {
        let targets = rule["Properties"]["Targets"].as_array().expect("targets");
        assert_eq!(targets.len(), 1, "{id}");
        assert_eq!(targets[0]["Arn"], home_bus, "{id} targets the home bus");
        assert_eq!(targets[0]["RoleArn"], get_att("ForwardRole", "Arn"), "{id}");
    }
    // The role may put events on that bus and nothing else.
    let (_, role) = the_one(&r, "AWS::IAM::Role");
    assert_eq!(
        role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]["Principal"],
        json!({"Service": "events.amazonaws.com"})
    );
    let grants: Vec<Value> = role["Properties"]["Policies"]
        .as_array()
        .expect("policies")
        .iter()
        .flat_map(|p| statements(&p["PolicyDocument"]))
        .collect();
    assert_eq!(grants.len(), 1);
    assert_eq!(strings(&grants[0]["Action"]), ["events:PutEvents"]);
    assert_eq!(grants[0]["Resource"], home_bus);

    // Nothing forwards in the home region: every resource but the placeholder is conditioned
    // on a condition that excludes it.
    for (id, res) in section(&r, "Resources") {
        let condition = res["Condition"]
            .as_str()
            .unwrap_or_else(|| panic!("{id} is conditional"));
        if condition == "IsHomeRegion" {
            assert_eq!(
                res["Type"], "AWS::CloudFormation::WaitConditionHandle",
                "{id}"
            );
            continue;
        }
        let definition = r["Conditions"][condition].to_string();
        assert!(
            condition == "ForwardFromThisRegion"
                || definition.contains("{\"Condition\":\"ForwardFromThisRegion\"}"),
            "{id}: {condition} = {definition} excludes the home region"
        );
    }
    assert_eq!(
        r["Conditions"]["ForwardFromThisRegion"],
        json!({"Fn::Not": [{"Condition": "IsHomeRegion"}]})
    );
}

#[test]
fn kms_keys_are_usable_only_through_ec2_and_grants_only_for_aws_resources() {
    let kms: Vec<Value> = [
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:GenerateDataKeyWithoutPlaintext",
        "kms:ReEncryptFrom",
        "kms:ReEncryptTo",
        "kms:CreateGrant",
    ]
    .iter()
    .flat_map(|a| function_statements_granting(a))
    .collect();
    assert!(
        !kms.is_empty(),
        "the role can launch clones with encrypted volumes"
    );
    for s in &kms {
        assert_eq!(
            s["Condition"]["StringLike"]["kms:ViaService"], "ec2.*.amazonaws.com",
            "only through EC2: {s}"
        );
        assert!(
            strings(&s["Action"]).iter().all(|a| a.starts_with("kms:")),
            "{s}"
        );
    }
    let grants = function_statements_granting("kms:CreateGrant");
    assert!(
        !grants.is_empty(),
        "EC2 needs a grant to attach the volumes"
    );
    for s in grants {
        assert_eq!(
            s["Condition"]["Bool"]["kms:GrantIsForAWSResource"], "true",
            "grants only for AWS resources: {s}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// What operators see: failed invocations, alarms, the dashboard
// ---------------------------------------------------------------------------------------------

fn resource<'a>(t: &'a Value, name: &str) -> &'a Value {
    section(t, "Resources")
        .get(name)
        .unwrap_or_else(|| panic!("resource {name}"))
}

#[test]
fn failed_invocations_of_both_functions_are_kept_in_a_queue_for_14_days() {
    let t = load(MAIN);
    for config in ["FunctionInvokeConfig", "EventsFunctionInvokeConfig"] {
        assert_eq!(
            resource(&t, config)["Properties"]["DestinationConfig"]["OnFailure"]["Destination"],
            get_att("FailedInvocations", "Arn"),
            "{config}"
        );
    }
    let queue = resource(&t, "FailedInvocations");
    assert_eq!(queue["Type"], "AWS::SQS::Queue");
    assert_eq!(queue["Properties"]["MessageRetentionPeriod"], 1_209_600);
    // The role may send there, and nowhere else.
    for s in function_statements_granting("sqs:SendMessage") {
        assert_eq!(strings(&s["Action"]), ["sqs:SendMessage"]);
        assert_eq!(s["Resource"], get_att("FailedInvocations", "Arn"));
    }
}

/// The names of the metrics the function publishes (its EMF lines), by namespace `spotswap`.
fn published_metrics() -> BTreeSet<String> {
    use spotswap::interrupt::{Outcome, Report};
    use spotswap::report::{PassReport, Totals};
    let report = PassReport {
        pass_id: "20261123T100000Z-1".into(),
        started_at: "2026-11-23T10:00:00Z".parse().unwrap(),
        dry_run: false,
        stopped: false,
        totals: Totals {
            instances: 2,
            spot_instances: 1,
            ..Totals::default()
        },
        regions: vec![],
    };
    let interruption = Report {
        region: "us-east-1".into(),
        instance_id: "i-1".into(),
        signal: "interruption-warning",
        outcome: Outcome::Ignored {
            reason: "not a member".into(),
        },
        calls: Default::default(),
    };
    let lines = [
        spotswap::lambda::pass_metrics(&report, "spotswap"),
        spotswap::lambda::interruption_metrics(&interruption, "spotswap", report.started_at),
    ];
    let mut names = BTreeSet::new();
    for line in lines {
        let v: Value = serde_json::from_str(&line).unwrap();
        for d in v["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
            assert_eq!(d["Namespace"], "spotswap");
            for m in d["Metrics"].as_array().unwrap() {
                names.insert(m["Name"].as_str().unwrap().to_string());
            }
        }
    }
    names
}

#[test]
fn alarms_watch_failures_over_passes_missing_passes_and_function_errors() {
    let t = load(MAIN);
    let published = published_metrics();
    let alarm = |name: &str| resource(&t, name)["Properties"].clone();
    let topic = json!([r#ref("AlarmTopic")]);
    // Failures in several passes in a row, live ones only.
    let failures = alarm("FailuresAlarm");
    assert_eq!(failures["Namespace"], "spotswap");
    assert_eq!(failures["MetricName"], "Failures");
    assert_eq!(
        failures["Dimensions"],
        json!([{"Name": "FunctionName", "Value": r#ref("FunctionName")},
               {"Name": "Mode", "Value": "live"}])
    );
    assert_eq!(failures["EvaluationPeriods"], r#ref("FailureAlarmPasses"));
    assert_eq!(failures["DatapointsToAlarm"], r#ref("FailureAlarmPasses"));
    assert_eq!(
        (
            failures["Threshold"].as_f64(),
            &failures["ComparisonOperator"]
        ),
        (Some(0.0), &json!("GreaterThanThreshold"))
    );
    // No completed pass: missing data is the alarm, in either mode.
    let none = alarm("NoPassAlarm");
    assert_eq!(none["MetricName"], "Passes");
    assert_eq!(
        none["Dimensions"],
        json!([{"Name": "FunctionName", "Value": r#ref("FunctionName")}])
    );
    assert_eq!(none["ComparisonOperator"], "LessThanThreshold");
    assert_eq!(none["TreatMissingData"], "breaching");
    for a in [&failures, &none] {
        let m = a["MetricName"].as_str().unwrap();
        assert!(published.contains(m), "{m} is published: {published:?}");
    }
    // Function errors of both functions.
    let errors = alarm("FunctionErrorsAlarm");
    let watched: BTreeSet<String> = errors["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.get("MetricStat"))
        .map(|s| {
            assert_eq!(s["Metric"]["Namespace"], "AWS/Lambda");
            assert_eq!(s["Metric"]["MetricName"], "Errors");
            s["Metric"]["Dimensions"][0]["Value"].to_string()
        })
        .collect();
    assert_eq!(
        watched,
        BTreeSet::from([
            r#ref("Function").to_string(),
            r#ref("EventsFunction").to_string()
        ])
    );
    // A write the preflight found refused, in either mode (a dry-run stack meets it first).
    let permissions = alarm("PermissionProblemsAlarm");
    assert_eq!(permissions["MetricName"], "PermissionProblems");
    assert_eq!(
        permissions["Dimensions"],
        json!([{"Name": "FunctionName", "Value": r#ref("FunctionName")}])
    );
    assert_eq!(
        (
            permissions["Threshold"].as_f64(),
            &permissions["ComparisonOperator"]
        ),
        (Some(0.0), &json!("GreaterThanThreshold"))
    );
    assert!(published.contains("PermissionProblems"), "{published:?}");
    // The failed-invocation queue's visible messages.
    let queued = alarm("FailedInvocationsAlarm");
    assert_eq!(
        (&queued["Namespace"], &queued["MetricName"]),
        (
            &json!("AWS/SQS"),
            &json!("ApproximateNumberOfMessagesVisible")
        )
    );
    assert_eq!(
        queued["Dimensions"],
        json!([{"Name": "QueueName", "Value": get_att("FailedInvocations", "QueueName")}])
    );
    // Events Lambda dropped for either function.
    let dropped = alarm("DroppedEventsAlarm");
    let watched: BTreeSet<(String, String)> = dropped["Metrics"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m.get("MetricStat"))
        .map(|s| {
            (
                s["Metric"]["MetricName"].as_str().unwrap().to_string(),
                s["Metric"]["Dimensions"][0]["Value"].to_string(),
            )
        })
        .collect();
    assert_eq!(
        watched,
        BTreeSet::from([
            ("AsyncEventsDropped".into(), r#ref("Function").to_string()),
            (
                "AsyncEventsDropped".into(),
                r#ref("EventsFunction").to_string()
            ),
        ])
    );
    for a in [&failures, &none, &errors, &permissions, &queued, &dropped] {
        assert_eq!(a["AlarmActions"], topic);
    }
    // Every alarm of the template notifies the topic.
    for (name, a) in resources_of(&t, "AWS::CloudWatch::Alarm") {
        assert_eq!(a["Properties"]["AlarmActions"], topic, "{name}");
    }
    // An e-mail subscription only when an address is given.
    let sub = resource(&t, "AlarmEmailSubscription");
    assert_eq!(sub["Condition"], "HasAlarmEmail");
    assert_eq!(sub["Properties"]["Endpoint"], r#ref("AlarmEmail"));
    assert_eq!(sub["Properties"]["TopicArn"], r#ref("AlarmTopic"));
}

#[test]
fn the_dashboard_charts_savings_spot_share_swaps_launches_failures_and_interruptions() {
    let t = load(MAIN);
    let body = resource(&t, "Dashboard")["Properties"]["DashboardBody"]["Fn::Sub"]
        .as_str()
        .expect("a Fn::Sub string");
    // As CloudFormation substitutes it.
    let body = body
        .replace("${AWS::Region}", "us-east-1")
        .replace("${FunctionName}", "spotswap");
    let v: Value = serde_json::from_str(&body).expect("the dashboard body is JSON");
    let mut charted = BTreeSet::new();
    for w in v["widgets"].as_array().unwrap() {
        for m in w["properties"]["metrics"].as_array().unwrap() {
            assert_eq!(m[0], "spotswap", "{m}");
            charted.insert(m[1].as_str().unwrap().to_string());
        }
    }
    for wanted in [
        "MonthlySavings",
        "SpotCapacityShare",
        "Swaps",
        "ClonesLaunched",
        "Failures",
        "InterruptionsHandled",
    ] {
        assert!(charted.contains(wanted), "{wanted} in {charted:?}");
    }
    let published = published_metrics();
    assert!(
        charted.is_subset(&published),
        "charted {charted:?}, published {published:?}"
    );
}

/// CloudFormation takes a template body of at most 51,200 bytes inline (`--template-body`, and
/// `aws cloudformation deploy --template-file` without `--s3-bucket`; AWS CloudFormation User
/// Guide, "CloudFormation quotas": template body size in a request). Every command the docs and
/// the Makefile give for a template over that sends it through S3 instead.
#[test]
fn a_template_over_the_inline_limit_is_only_ever_sent_through_s3() {
    const INLINE_LIMIT: usize = 51_200;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let texts: Vec<(String, String)> = ["Makefile", "README.md", "docs/deploy.md"]
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(root.join(f)).unwrap();
            (f.to_string(), text)
        })
        .collect();
    for template in TEMPLATES {
        let size = std::fs::metadata(root.join(template)).unwrap().len() as usize;
        if size <= INLINE_LIMIT {
            continue;
        }
        for (file, text) in &texts {
            // Commands, with their backslash-continued lines joined.
            let joined = text.replace("\\\n", " ");
            for command in joined.lines().filter(|l| l.contains(template)) {
                assert!(
                    !command.contains("--template-body"),
                    "{file}: {template} is {size} bytes, over the {INLINE_LIMIT} CloudFormation \
                     takes inline, and is sent with --template-body: {command}"
                );
                if command.contains("--template-file") {
                    assert!(
                        command.contains("--s3-bucket"),
                        "{file}: {template} is {size} bytes, over the {INLINE_LIMIT} CloudFormation \
                         takes inline, and is deployed without --s3-bucket: {command}"
                    );
                }
            }
        }
    }
}

/// Which of `metric_ids` an alarm's metric-math `expression` uses without `FILL(id, ...)`
/// around it. A metric with no datapoint in a period makes any arithmetic over it missing, so
/// an alarm summing a sparse series (a function's errors, published only when there are some)
/// without FILL stays OK however many the other has (CloudWatch User Guide, "Using metric
/// math": FILL).
fn unfilled<'a>(expression: &str, metric_ids: &[&'a str]) -> Vec<&'a str> {
    let tokens: Vec<String> = expression
        .split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect();
    metric_ids
        .iter()
        .copied()
        .filter(|id| {
            tokens.iter().any(|t| t == id)
                && !expression.replace(' ', "").contains(&format!("FILL({id},"))
        })
        .collect()
}

#[test]
fn alarms_can_publish_to_their_topic_and_metric_math_fills_sparse_series() {
    // The check itself: it finds what it must.
    assert_eq!(
        unfilled("pass + events", &["pass", "events"]),
        ["pass", "events"]
    );
    assert_eq!(
        unfilled("FILL(pass, 0) + events", &["pass", "events"]),
        ["events"]
    );
    assert!(unfilled("FILL(pass, 0) + FILL(events, 0)", &["pass", "events"]).is_empty());
    let t = load(MAIN);
    for (name, a) in resources_of(&t, "AWS::CloudWatch::Alarm") {
        let Some(metrics) = a["Properties"]["Metrics"].as_array() else {
            continue;
        };
        let ids: Vec<&str> = metrics
            .iter()
            .filter(|m| m.get("MetricStat").is_some())
            .map(|m| m["Id"].as_str().unwrap())
            .collect();
        for m in metrics {
            if let Some(e) = m["Expression"].as_str() {
                assert!(
                    unfilled(e, &ids).is_empty(),
                    "{name}: {e} sums a series that may have no datapoint without FILL"
                );
            }
        }
    }
    // The topic's key is one whose policy lets CloudWatch alarms use it: an AWS managed key
    // (alias/aws/...) cannot (its policy cannot be edited), so every alarm action would fail.
    for (name, topic) in resources_of(&t, "AWS::SNS::Topic") {
        let key = &topic["Properties"]["KmsMasterKeyId"];
        if key.is_null() {
            continue;
        }
        assert!(
            !key.as_str().is_some_and(|k| k.starts_with("alias/aws/")),
            "{name} is encrypted with an AWS managed key ({key}), which CloudWatch alarms cannot use"
        );
        let key_resource = key["Fn::GetAtt"][0]
            .as_str()
            .or_else(|| key["Ref"].as_str())
            .unwrap_or_else(|| panic!("{name}: its key is a key of this template: {key}"));
        let policy = &resource(&t, key_resource)["Properties"]["KeyPolicy"];
        let lets_cloudwatch = statements(policy).iter().any(|st| {
            st["Effect"] == "Allow"
                && st["Principal"]["Service"] == "cloudwatch.amazonaws.com"
                && ["kms:Decrypt", "kms:GenerateDataKey*"]
                    .iter()
                    .all(|a| strings(&st["Action"]).iter().any(|x| x == a))
        });
        assert!(
            lets_cloudwatch,
            "{name}: {key_resource} does not let CloudWatch alarms use it"
        );
    }
}

/// A StackSet update resets every parameter it does not name to its default (`DryRun` to
/// `true`, every setting to spotswap's; AWS CloudFormation API reference, UpdateStackSet
/// `Parameters` and `UsePreviousValue`). The docs' update keeps every parameter the StackSet
/// has (read from it) and never sets `DryRun` itself.
#[test]
fn the_stack_set_update_keeps_every_parameter_and_never_flips_dry_run() {
    let docs = read("docs/deploy.md").replace("\\\n", " ");
    let updates: Vec<&str> = docs
        .lines()
        .filter(|l| l.contains("update-stack-set"))
        .collect();
    assert!(
        !updates.is_empty(),
        "docs/deploy.md shows a StackSet update"
    );
    let block = docs
        .split("```")
        .find(|b| b.contains("update-stack-set"))
        .unwrap();
    assert!(
        block.contains("describe-stack-set")
            && block.contains("StackSet.Parameters[].ParameterKey"),
        "the update reads the StackSet's parameters to keep them: {block}"
    );
    assert!(block.contains("UsePreviousValue=true"), "{block}");
    for u in &updates {
        assert!(!u.contains("ParameterKey=DryRun,ParameterValue"), "{u}");
    }
    assert!(
        !block.contains("ParameterKey=DryRun,ParameterValue"),
        "{block}"
    );
}
