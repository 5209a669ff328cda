//! Every write request the AWS adapter builds, held against the statements of the stack's own
//! role: a request the role would refuse fails, naming the call, the resource type and the
//! condition that is not met. moto and the in-memory cloud enforce no IAM, so this is where a
//! refusal a real account would answer shows before a deploy.
//!
//! A small evaluator, not IAM: `Allow` statements only (the role has no `Deny`), actions and
//! resource ARNs matched as IAM globs, and the operators the role uses (`Null`,
//! `StringEquals`, `StringLike`, `Bool`, `ForAllValues:StringEquals`); any other operator
//! fails the test, so it cannot be passed by an operator it does not understand. What each call
//! authorises (the action on each resource it creates or uses, and the condition keys IAM sees)
//! follows the Service Authorization Reference for Amazon EC2 and Amazon EC2 Auto Scaling:
//! `RunInstances` on the instance, its volumes, its network interface, the subnet, security
//! groups, image, key pair, launch template and spot request; an instant `CreateFleet` on the
//! fleet and, since it launches with the caller's permissions, `ec2:CreateFleet` and
//! `ec2:RunInstances` on everything its instances create or use (EC2 User Guide, "EC2 Fleet
//! prerequisites"); tags given at creation also authorise `ec2:CreateTags` with
//! `ec2:CreateAction` (EC2 User Guide, "Grant permission to tag resources during creation");
//! `aws:RequestTag/K` is the tag a resource type gets in the request, per resource type.
//!
//! The role must also refuse what spotswap never sends (an untagged launch, a non-clone's
//! termination, a group not opted in), and every condition of the role is load-bearing: taken
//! out, one of those refusals turns into an allow and the test says which.

use std::collections::BTreeMap;

use aws_sdk_ec2::types as ec2;
use serde_json::Value;
use spotswap::cloud::aws::{fleet, requests, run};
use spotswap::cloud::memory::GroupBuilder;
use spotswap::cloud::{CloneLaunch, FleetLaunch, FleetTemplate, OwnedTemplate};
use spotswap::model::{
    AllocationStrategy, Group, Instance, LaunchRef, LaunchSpec, Market, NetworkInterface,
};
use spotswap::protocol;

use super::cloudformation::{MAIN, REGIONAL, load, read};

const ACCOUNT: &str = "111122223333";
const REGION: &str = "us-east-1";

// ---------------------------------------------------------------------------------------------
// The role, as IAM reads it.

/// One `Allow` statement, its `Fn::Sub` variables replaced.
#[derive(Debug, Clone)]
struct Statement {
    sid: String,
    actions: Vec<String>,
    resources: Vec<String>,
    /// operator -> key -> values
    condition: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// Which branch each template condition takes, and the parameters' values.
struct Deployment {
    conditions: BTreeMap<&'static str, bool>,
    parameters: BTreeMap<&'static str, &'static str>,
}

impl Deployment {
    /// The main stack as deployed with its defaults (opt-in mode, `spot-enabled=true`).
    fn opt_in() -> Self {
        Deployment {
            conditions: BTreeMap::from([("ScopeGroupWritesByOptInTag", true)]),
            parameters: BTreeMap::from([
                ("OptInTagKey", "spot-enabled"),
                ("OptInTagValue", "true"),
            ]),
        }
    }

    /// The regional stack of a member region, forwarding to the default bus of eu-west-1.
    fn regional() -> Self {
        Deployment {
            conditions: BTreeMap::from([("HomeEventBusArnGiven", false)]),
            parameters: BTreeMap::from([("HomeRegion", "eu-west-1"), ("HomeEventBusArn", "")]),
        }
    }

    fn sub(&self, text: &str) -> String {
        let mut out = text
            .replace("${AWS::Partition}", "aws")
            .replace("${AWS::AccountId}", ACCOUNT)
            .replace("${AWS::Region}", REGION);
        for (k, v) in &self.parameters {
            out = out.replace(&format!("${{{k}}}"), v);
        }
        assert!(!out.contains("${"), "a variable left in {out}");
        out
    }

    /// A template value with its intrinsic functions resolved (`Fn::If`, `Fn::Sub`, `Ref` of a
    /// parameter); `Fn::GetAtt` becomes a name that matches no ARN of a request.
    fn resolve(&self, v: &Value) -> Value {
        match v {
            Value::Object(o) if o.contains_key("Fn::If") => {
                let b = o["Fn::If"].as_array().expect("Fn::If takes a list");
                let name = b[0].as_str().expect("a condition name");
                let taken = *self
                    .conditions
                    .get(name)
                    .unwrap_or_else(|| panic!("no branch chosen for condition {name}"));
                self.resolve(&b[if taken { 1 } else { 2 }])
            }
            Value::Object(o) if o.contains_key("Fn::Sub") => {
                let text = o["Fn::Sub"].as_str().expect("Fn::Sub of a string");
                let text = self.sub(text);
                // A policy document written as a JSON string is parsed as IAM will.
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            }
            Value::Object(o) if o.contains_key("Ref") => {
                let name = o["Ref"].as_str().expect("Ref of a name");
                Value::String(
                    self.parameters
                        .get(name)
                        .unwrap_or_else(|| panic!("no value for parameter {name}"))
                        .to_string(),
                )
            }
            Value::Object(o) if o.contains_key("Fn::GetAtt") => {
                Value::String(format!("stack-resource:{}", o["Fn::GetAtt"]))
            }
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, v)| (self.sub(k), self.resolve(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(|v| self.resolve(v)).collect()),
            other => other.clone(),
        }
    }
}

fn list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().flat_map(list).collect(),
        Value::Bool(b) => vec![b.to_string()],
        other => panic!("expected a string or a list of strings: {other}"),
    }
}

/// The permission policies of the template's one role, as `deployment` resolves them.
fn role(path: &str, deployment: &Deployment) -> Vec<Statement> {
    let t = load(path);
    let roles: Vec<&Value> = t["Resources"]
        .as_object()
        .expect("resources")
        .values()
        .filter(|r| r["Type"] == "AWS::IAM::Role")
        .collect();
    assert_eq!(roles.len(), 1, "{path} has one role");
    let mut out = Vec::new();
    for policy in roles[0]["Properties"]["Policies"]
        .as_array()
        .expect("policies")
    {
        let doc = deployment.resolve(&policy["PolicyDocument"]);
        let statements = match &doc["Statement"] {
            Value::Array(a) => a.clone(),
            s => vec![s.clone()],
        };
        for s in statements {
            assert_eq!(s["Effect"], "Allow", "{s}");
            let condition = s["Condition"]
                .as_object()
                .map(|ops| {
                    ops.iter()
                        .map(|(op, keys)| {
                            let keys = keys
                                .as_object()
                                .expect("condition keys")
                                .iter()
                                .map(|(k, v)| (k.clone(), list(v)))
                                .collect();
                            (op.clone(), keys)
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push(Statement {
                sid: s["Sid"].as_str().expect("a Sid").to_string(),
                actions: list(&s["Action"]),
                resources: list(&s["Resource"]),
                condition,
            });
        }
    }
    out
}

/// IAM's glob: `*` any run of characters, `?` one; case-sensitive, as for ARNs and tag values.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

// ---------------------------------------------------------------------------------------------
// What a request asks of IAM.

/// One authorisation IAM makes for a request: an action on one resource, with the condition
/// keys it sees there.
#[derive(Debug, Clone)]
struct Auth {
    call: String,
    action: String,
    resource_type: String,
    arn: String,
    context: BTreeMap<String, Vec<String>>,
}

impl Auth {
    fn new(call: &str, action: &str, resource_type: &str, arn: String) -> Self {
        Auth {
            call: call.into(),
            action: action.into(),
            resource_type: resource_type.into(),
            arn,
            context: BTreeMap::new(),
        }
    }

    fn with(mut self, key: &str, values: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.context
            .insert(key.into(), values.into_iter().map(Into::into).collect());
        self
    }

    /// Tags given for this resource in the request (`aws:RequestTag/K`, `aws:TagKeys`).
    fn request_tags(mut self, tags: &BTreeMap<String, String>) -> Self {
        for (k, v) in tags {
            self.context
                .insert(format!("aws:RequestTag/{k}"), vec![v.clone()]);
        }
        self.context
            .insert("aws:TagKeys".into(), tags.keys().cloned().collect());
        self
    }

    /// Tags the resource carries (`aws:ResourceTag/K`, and the service's own key).
    fn resource_tags(mut self, service: &str, tags: &BTreeMap<String, String>) -> Self {
        for (k, v) in tags {
            self.context
                .insert(format!("aws:ResourceTag/{k}"), vec![v.clone()]);
            self.context
                .insert(format!("{service}:ResourceTag/{k}"), vec![v.clone()]);
        }
        self
    }
}

fn ec2_arn(kind: &str, id: &str) -> String {
    match kind {
        // AMIs have no account in their ARN.
        "image" => format!("arn:aws:ec2:{REGION}::image/{id}"),
        _ => format!("arn:aws:ec2:{REGION}:{ACCOUNT}:{kind}/{id}"),
    }
}

fn group_arn(group: &str) -> String {
    format!(
        "arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:\
         8d6f2a4e-1c3b-4d5e-9f70-0a1b2c3d4e5f:autoScalingGroupName/{group}"
    )
}

fn tags_of(
    specs: &[ec2::TagSpecification],
    kind: ec2::ResourceType,
) -> Option<BTreeMap<String, String>> {
    specs
        .iter()
        .find(|s| s.resource_type() == Some(&kind))
        .map(|s| {
            s.tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_string(),
                        t.value().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
}

/// The resources a launch creates (instance, volume, network interface, spot request) and
/// uses (subnet, security groups, image, key pair, launch template), each with the tags the
/// request gives it, and the `CreateTags` on creation of each type the request tags.
struct LaunchShape {
    call: &'static str,
    /// ec2 actions IAM evaluates on the launch's resources.
    actions: &'static [&'static str],
    tag_specs: Vec<ec2::TagSpecification>,
    subnets: Vec<String>,
    template: Option<String>,
    spec: LaunchSpec,
    spot: bool,
}

impl LaunchShape {
    fn auths(&self) -> Vec<Auth> {
        let mut out = Vec::new();
        let created = [
            ("instance", Some(ec2::ResourceType::Instance)),
            ("volume", Some(ec2::ResourceType::Volume)),
            (
                "network-interface",
                Some(ec2::ResourceType::NetworkInterface),
            ),
        ];
        let mut used: Vec<(&str, String)> = Vec::new();
        for s in &self.subnets {
            used.push(("subnet", s.clone()));
        }
        for sg in &self.spec.security_group_ids {
            used.push(("security-group", sg.clone()));
        }
        for n in &self.spec.network_interfaces {
            for sg in &n.security_group_ids {
                used.push(("security-group", sg.clone()));
            }
        }
        used.push(("image", self.spec.image_id.clone()));
        if let Some(k) = &self.spec.key_name {
            used.push(("key-pair", k.clone()));
        }
        if let Some(t) = &self.template {
            used.push(("launch-template", t.clone()));
        }
        for action in self.actions {
            for (kind, rt) in &created {
                let tags = rt
                    .clone()
                    .and_then(|r| tags_of(&self.tag_specs, r))
                    .unwrap_or_default();
                out.push(
                    Auth::new(self.call, action, kind, ec2_arn(kind, "*")).request_tags(&tags),
                );
            }
            if self.spot {
                let kind = "spot-instances-request";
                out.push(Auth::new(self.call, action, kind, ec2_arn(kind, "*")));
            }
            for (kind, id) in &used {
                out.push(Auth::new(self.call, action, kind, ec2_arn(kind, id)));
            }
        }
        for spec in &self.tag_specs {
            let kind = spec.resource_type().expect("a resource type").as_str();
            let tags = tags_of(&self.tag_specs, spec.resource_type().unwrap().clone()).unwrap();
            out.push(
                Auth::new(self.call, "ec2:CreateTags", kind, ec2_arn(kind, "*"))
                    .with("ec2:CreateAction", [self.call])
                    .request_tags(&tags),
            );
        }
        if self.spec.iam_instance_profile.is_some() {
            out.push(
                Auth::new(
                    self.call,
                    "iam:PassRole",
                    "role",
                    format!("arn:aws:iam::{ACCOUNT}:role/web-instance"),
                )
                .with("iam:PassedToService", ["ec2.amazonaws.com"]),
            );
        }
        out
    }
}

fn fleet_shape(f: &FleetLaunch, spec: &LaunchSpec) -> (LaunchShape, Vec<Auth>) {
    let req = fleet::request(f).build().expect("a CreateFleet request");
    let fleet_tags =
        tags_of(req.tag_specifications(), ec2::ResourceType::Fleet).unwrap_or_default();
    let mut subnets: Vec<String> = req
        .launch_template_configs()
        .iter()
        .flat_map(|c| c.overrides())
        .filter_map(|o| o.subnet_id().map(str::to_string))
        .collect();
    subnets.dedup();
    let template = req.launch_template_configs()[0]
        .launch_template_specification()
        .and_then(|s| s.launch_template_id().or(s.launch_template_name()))
        .map(str::to_string);
    let shape = LaunchShape {
        call: "CreateFleet",
        actions: &["ec2:CreateFleet", "ec2:RunInstances"],
        tag_specs: req
            .tag_specifications()
            .iter()
            .filter(|s| s.resource_type() != Some(&ec2::ResourceType::Fleet))
            .cloned()
            .collect(),
        subnets,
        template,
        spec: spec.clone(),
        spot: true,
    };
    let mut own = vec![
        Auth::new(
            "CreateFleet",
            "ec2:CreateFleet",
            "fleet",
            ec2_arn("fleet", "*"),
        )
        .request_tags(&fleet_tags),
    ];
    if !fleet_tags.is_empty() {
        own.push(
            Auth::new(
                "CreateFleet",
                "ec2:CreateTags",
                "fleet",
                ec2_arn("fleet", "*"),
            )
            .with("ec2:CreateAction", ["CreateFleet"])
            .request_tags(&fleet_tags),
        );
    }
    (shape, own)
}

fn fleet_auths(f: &FleetLaunch, spec: &LaunchSpec) -> Vec<Auth> {
    let (shape, mut own) = fleet_shape(f, spec);
    own.extend(shape.auths());
    own
}

fn run_auths(l: &CloneLaunch) -> Vec<Auth> {
    let req = run::request(l).build().expect("a RunInstances request");
    let mut subnets: Vec<String> = req.subnet_id().map(str::to_string).into_iter().collect();
    subnets.extend(
        req.network_interfaces()
            .iter()
            .filter_map(|n| n.subnet_id().map(str::to_string)),
    );
    let template = req
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .map(str::to_string);
    LaunchShape {
        call: "RunInstances",
        actions: &["ec2:RunInstances"],
        tag_specs: req.tag_specifications().to_vec(),
        subnets,
        template,
        spec: l.spec.clone(),
        spot: req.instance_market_options().is_some(),
    }
    .auths()
}

fn template_auths(t: &OwnedTemplate) -> Vec<Auth> {
    let req = fleet::template_request(t).build().expect("a request");
    let tags =
        tags_of(req.tag_specifications(), ec2::ResourceType::LaunchTemplate).unwrap_or_default();
    let arn = ec2_arn("launch-template", "*");
    vec![
        Auth::new(
            "CreateLaunchTemplate",
            "ec2:CreateLaunchTemplate",
            "launch-template",
            arn.clone(),
        )
        .request_tags(&tags),
        Auth::new(
            "CreateLaunchTemplate",
            "ec2:CreateTags",
            "launch-template",
            arn,
        )
        .with("ec2:CreateAction", ["CreateLaunchTemplate"])
        .request_tags(&tags),
    ]
}

/// `DeleteLaunchTemplate` of a template carrying `carries`.
fn delete_template_auths(carries: &BTreeMap<String, String>) -> Vec<Auth> {
    let req = requests::delete_template("lt-0spotswap")
        .build()
        .expect("a request");
    let id = req.launch_template_id().expect("an id");
    vec![
        Auth::new(
            "DeleteLaunchTemplate",
            "ec2:DeleteLaunchTemplate",
            "launch-template",
            ec2_arn("launch-template", id),
        )
        .resource_tags("ec2", carries),
    ]
}

/// `CreateTags` of `tags` on an instance carrying `carries`.
fn tag_instance_auths(
    carries: &BTreeMap<String, String>,
    tags: &BTreeMap<String, String>,
) -> Vec<Auth> {
    let req = requests::tag_instance("i-0clone", tags)
        .build()
        .expect("a request");
    let sent: BTreeMap<String, String> = req
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect();
    req.resources()
        .iter()
        .map(|id| {
            Auth::new(
                "CreateTags",
                "ec2:CreateTags",
                "instance",
                ec2_arn("instance", id),
            )
            .request_tags(&sent)
            .resource_tags("ec2", carries)
        })
        .collect()
}

fn terminate_auths(carries: &BTreeMap<String, String>) -> Vec<Auth> {
    let req = requests::terminate(&["i-0clone".to_string()])
        .build()
        .expect("a request");
    req.instance_ids()
        .iter()
        .map(|id| {
            Auth::new(
                "TerminateInstances",
                "ec2:TerminateInstances",
                "instance",
                ec2_arn("instance", id),
            )
            .resource_tags("ec2", carries)
        })
        .collect()
}

/// Every Auto Scaling write spotswap makes, on a group carrying `group_tags`: the group is the
/// resource of each (Service Authorization Reference for Amazon EC2 Auto Scaling).
fn group_write_auths(group: &Group) -> Vec<Auth> {
    let on = |call: &str, name: &str| {
        Auth::new(
            call,
            &format!("autoscaling:{call}"),
            "autoScalingGroup",
            group_arn(name),
        )
        .resource_tags("autoscaling", &group.tags)
    };
    let g = group.name.as_str();
    let mut out = Vec::new();
    let attach = requests::attach(g, "i-0clone").build().unwrap();
    out.push(on(
        "AttachInstances",
        attach.auto_scaling_group_name().unwrap(),
    ));
    let detach = requests::detach(g, "i-0clone", false).build().unwrap();
    out.push(on(
        "DetachInstances",
        detach.auto_scaling_group_name().unwrap(),
    ));
    // The request names the instance; IAM authorises on the group it belongs to.
    requests::terminate_in_group("i-0ondemand", true)
        .build()
        .unwrap();
    out.push(on("TerminateInstanceInAutoScalingGroup", g));
    let update = requests::set_max_size(g, 4).build().unwrap();
    out.push(on(
        "UpdateAutoScalingGroup",
        update.auto_scaling_group_name().unwrap(),
    ));
    for key in protocol::PROTOCOL_TAGS.iter().filter(|k| group_tag(k)) {
        let (group_name, value) = (g.to_string(), "x".to_string());
        let req = requests::tag_groups(key, [(&group_name, &value)])
            .build()
            .unwrap();
        for t in req.tags() {
            let tag =
                BTreeMap::from([(t.key().unwrap().to_string(), t.value().unwrap().to_string())]);
            out.push(on("CreateOrUpdateTags", t.resource_id().unwrap()).request_tags(&tag));
        }
        let req = requests::untag_group(g, key).build().unwrap();
        for t in req.tags() {
            let tag = BTreeMap::from([(t.key().unwrap().to_string(), String::new())]);
            out.push(on("DeleteTags", t.resource_id().unwrap()).request_tags(&tag));
        }
    }
    out
}

/// The protocol tags spotswap writes on groups (the others go on instances and templates).
fn group_tag(key: &str) -> bool {
    ![
        protocol::GROUP,
        protocol::REPLACES,
        protocol::ATTACHED,
        protocol::LAUNCHED_FROM,
        protocol::LAUNCH_CONFIGURATION,
    ]
    .contains(&key)
}

// ---------------------------------------------------------------------------------------------
// The evaluator.

/// Why one statement does not allow an authorisation, or `None` if it does.
fn refusal(s: &Statement, a: &Auth) -> Option<String> {
    if !s.actions.iter().any(|p| glob(p, &a.action)) {
        return Some("action not granted".into());
    }
    if !s.resources.iter().any(|p| glob(p, &a.arn)) {
        return Some("resource not covered".into());
    }
    for (op, keys) in &s.condition {
        for (key, wanted) in keys {
            let got = a.context.get(key);
            let ok = match op.as_str() {
                "Null" => match wanted.as_slice() {
                    [w] if w == "false" => got.is_some_and(|v| !v.is_empty()),
                    [w] if w == "true" => got.is_none_or(|v| v.is_empty()),
                    other => panic!("Null takes true or false: {other:?}"),
                },
                "StringEquals" | "Bool" => {
                    got.is_some_and(|v| v.iter().any(|g| wanted.contains(g)))
                }
                "StringLike" => {
                    got.is_some_and(|v| v.iter().any(|g| wanted.iter().any(|w| glob(w, g))))
                }
                "ForAllValues:StringEquals" => {
                    got.is_none_or(|v| v.iter().all(|g| wanted.contains(g)))
                }
                other => panic!("{}: operator {other} is not known to this test", s.sid),
            };
            if !ok {
                return Some(format!(
                    "condition {op} {key} {wanted:?} not met (request has {got:?})"
                ));
            }
        }
    }
    None
}

/// Whether the role allows an authorisation; if not, why, statement by statement (those that
/// grant the action on that resource).
fn decide(role: &[Statement], a: &Auth) -> Result<String, String> {
    let mut why = Vec::new();
    for s in role {
        match refusal(s, a) {
            None => return Ok(s.sid.clone()),
            Some(r) if r != "action not granted" && r != "resource not covered" => {
                why.push(format!("{}: {r}", s.sid))
            }
            Some(_) => {}
        }
    }
    if why.is_empty() {
        why.push("no statement grants the action on this resource".into());
    }
    Err(format!(
        "{} refused: {} on {} ({}): {}",
        a.call,
        a.action,
        a.resource_type,
        a.arn,
        why.join("; ")
    ))
}

/// Every refusal among `auths`, one line each.
fn refused(role: &[Statement], auths: &[Auth]) -> Vec<String> {
    auths.iter().filter_map(|a| decide(role, a).err()).collect()
}

// ---------------------------------------------------------------------------------------------
// The requests a pass sends, from one realistic group.

fn group(opted_in: bool) -> Group {
    let g = GroupBuilder::new("web")
        .min(1)
        .desired(2)
        .max(4)
        .propagated_tag("Name", "web")
        .launch(LaunchRef::LaunchTemplate {
            id: "lt-0web".into(),
            name: None,
            version: "3".into(),
        });
    if opted_in {
        g.tag("spot-enabled", "true").build()
    } else {
        g.build()
    }
}

fn spec(interfaces: bool) -> LaunchSpec {
    LaunchSpec {
        resolved_version: Some(3),
        image_id: "ami-0web".into(),
        key_name: Some("ops".into()),
        security_group_ids: if interfaces {
            Vec::new()
        } else {
            vec!["sg-0web".into()]
        },
        iam_instance_profile: Some("web-instance".into()),
        network_interfaces: if interfaces {
            vec![NetworkInterface {
                device_index: Some(0),
                security_group_ids: vec!["sg-0web".into()],
                ..NetworkInterface::default()
            }]
        } else {
            Vec::new()
        },
        ..LaunchSpec::default()
    }
}

fn a_fleet() -> FleetLaunch {
    let (tags, _) = protocol::launch_tags(&group(true));
    FleetLaunch {
        placement_group: None,
        group: "web".into(),
        availability_zone: "us-east-1a".into(),
        subnets: vec!["subnet-0a".into(), "subnet-0b".into()],
        count: 2,
        types: vec!["m6a.large".into(), "m5a.large".into()],
        strategy: AllocationStrategy::PriceCapacityOptimized,
        template: FleetTemplate::Id("lt-0web".into()),
        version: "3".into(),
        max_price: 0.096,
        hibernate: false,
        tags,
        client_token: "spotswap-fleet-1".into(),
    }
}

fn a_clone_launch(launch: LaunchRef, spec: LaunchSpec, market: Market) -> CloneLaunch {
    let (tags, _) = protocol::launch_tags(&group(true));
    CloneLaunch {
        placement_group: None,
        group: "web".into(),
        replaces: "i-0ondemand".into(),
        instance_type: "m6a.large".into(),
        availability_zone: "us-east-1a".into(),
        subnet_id: Some("subnet-0a".into()),
        launch,
        spec,
        market,
        max_price: 0.096,
        tags,
        client_token: "token".into(),
    }
}

fn lc_spec() -> LaunchSpec {
    LaunchSpec {
        resolved_version: None,
        associate_public_ip_address: Some(true),
        ..spec(false)
    }
}

fn owned_template() -> OwnedTemplate {
    OwnedTemplate {
        name: protocol::owned_template_name("web-lc", &lc_spec()),
        launch_configuration: "web-lc".into(),
        spec: lc_spec(),
    }
}

/// The tags a clone carries once launched: those of its fleet's instances.
fn clone_tags() -> BTreeMap<String, String> {
    let req = fleet::request(&a_fleet()).build().unwrap();
    tags_of(req.tag_specifications(), ec2::ResourceType::Instance).expect("instances are tagged")
}

fn on_demand_instance() -> Instance {
    serde_json::from_value(serde_json::json!({
        "instance_id": "i-0ondemand", "instance_type": "m5.large",
        "availability_zone": "us-east-1a", "market": "on-demand", "state": "running",
        "launch_time": "2026-12-01T10:00:00Z", "auto_scaling_group": "web",
        "tags": {"Name": "web", "team": "payments", "aws:autoscaling:groupName": "web"}
    }))
    .expect("an instance")
}

/// Every request shape a pass sends, by what it is.
fn every_request() -> Vec<(&'static str, Vec<Auth>)> {
    let g = group(true);
    let template = LaunchRef::LaunchTemplate {
        id: "lt-0web".into(),
        name: None,
        version: "$Latest".into(),
    };
    let configuration = LaunchRef::LaunchConfiguration {
        name: "web-lc".into(),
    };
    let mut clone = on_demand_instance();
    clone.instance_id = "i-0clone".into();
    clone.tags = clone_tags();
    let (pair, _) = protocol::pair_tags(&g, &clone, &on_demand_instance());
    let owned: BTreeMap<String, String> = {
        let req = fleet::template_request(&owned_template()).build().unwrap();
        tags_of(req.tag_specifications(), ec2::ResourceType::LaunchTemplate).unwrap()
    };
    vec![
        (
            "a batch of clones (CreateFleet)",
            fleet_auths(&a_fleet(), &spec(false)),
        ),
        (
            "a launch configuration's batch (CreateFleet from spotswap's template)",
            fleet_auths(
                &FleetLaunch {
                    template: FleetTemplate::Name(owned_template().name),
                    version: "1".into(),
                    ..a_fleet()
                },
                &lc_spec(),
            ),
        ),
        (
            "a clone whose template has interfaces (RunInstances)",
            run_auths(&a_clone_launch(template.clone(), spec(true), Market::Spot)),
        ),
        (
            "a launch configuration's clone (RunInstances)",
            run_auths(&a_clone_launch(configuration, lc_spec(), Market::Spot)),
        ),
        (
            "an on-demand instance restoring a floor (RunInstances)",
            run_auths(&a_clone_launch(template, spec(false), Market::OnDemand)),
        ),
        (
            "a launch configuration's template (CreateLaunchTemplate)",
            template_auths(&owned_template()),
        ),
        (
            "that template, unused (DeleteLaunchTemplate)",
            delete_template_auths(&owned),
        ),
        (
            "pairing a clone (CreateTags)",
            tag_instance_auths(&clone_tags(), &pair),
        ),
        (
            "an orphan clone (TerminateInstances)",
            terminate_auths(&clone_tags()),
        ),
        ("the group writes (Auto Scaling)", group_write_auths(&g)),
    ]
}

/// What the role must refuse: requests spotswap never sends, each stopped by a condition.
fn never_sent() -> Vec<(&'static str, Auth)> {
    let ec2 =
        |call: &str, action: &str, kind: &str| Auth::new(call, action, kind, ec2_arn(kind, "*"));
    let user_tags = BTreeMap::from([("Name".to_string(), "db".to_string())]);
    let not_opted = group(false);
    let group_auth = |call: &str, g: &Group| {
        Auth::new(
            call,
            &format!("autoscaling:{call}"),
            "autoScalingGroup",
            group_arn(&g.name),
        )
        .resource_tags("autoscaling", &g.tags)
    };
    // The fleet as an earlier version of fleet.rs sent it: only its instances tagged.
    let (untagged_volumes, _) = fleet_shape(&a_fleet(), &spec(false));
    let untagged_volumes = LaunchShape {
        tag_specs: untagged_volumes
            .tag_specs
            .into_iter()
            .filter(|s| s.resource_type() == Some(&ec2::ResourceType::Instance))
            .collect(),
        ..untagged_volumes
    };
    let untagged_volume = untagged_volumes
        .auths()
        .into_iter()
        .find(|a| a.resource_type == "volume" && a.action == "ec2:RunInstances")
        .unwrap();
    vec![
        ("an untagged instance", ec2("RunInstances", "ec2:RunInstances", "instance").request_tags(&user_tags)),
        ("a fleet's untagged volume", untagged_volume),
        ("an untagged fleet", ec2("CreateFleet", "ec2:CreateFleet", "fleet")),
        (
            "a template not tagged as spotswap's",
            ec2("CreateLaunchTemplate", "ec2:CreateLaunchTemplate", "launch-template").request_tags(&user_tags),
        ),
        ("deleting a user's template", delete_template_auths(&user_tags).remove(0)),
        (
            "tagging an existing volume",
            Auth::new("CreateTags", "ec2:CreateTags", "volume", ec2_arn("volume", "vol-0"))
                .request_tags(&user_tags),
        ),
        ("tagging an instance that is not a clone", tag_instance_auths(&user_tags, &user_tags).remove(0)),
        ("terminating an instance that is not a clone", terminate_auths(&user_tags).remove(0)),
        (
            "passing a role to another service",
            Auth::new("RunInstances", "iam:PassRole", "role", format!("arn:aws:iam::{ACCOUNT}:role/admin"))
                .with("iam:PassedToService", ["lambda.amazonaws.com"]),
        ),
        (
            "using a KMS key outside EC2",
            Auth::new("Decrypt", "kms:Decrypt", "key", format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/k"))
                .with("kms:ViaService", ["s3.us-east-1.amazonaws.com"]),
        ),
        (
            "a KMS grant outside EC2",
            Auth::new("CreateGrant", "kms:CreateGrant", "key", format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/k"))
                .with("kms:ViaService", ["s3.us-east-1.amazonaws.com"])
                .with("kms:GrantIsForAWSResource", ["true"]),
        ),
        (
            "a KMS grant for a person",
            Auth::new("CreateGrant", "kms:CreateGrant", "key", format!("arn:aws:kms:{REGION}:{ACCOUNT}:key/k"))
                .with("kms:ViaService", ["ec2.us-east-1.amazonaws.com"])
                .with("kms:GrantIsForAWSResource", ["false"]),
        ),
        (
            "another service's role under the spot role's name",
            Auth::new(
                "CreateServiceLinkedRole",
                "iam:CreateServiceLinkedRole",
                "role",
                format!("arn:aws:iam::{ACCOUNT}:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"),
            )
            .with("iam:AWSServiceName", ["ecs.amazonaws.com"]),
        ),
        (
            "another service's role under the fleet role's name",
            Auth::new(
                "CreateServiceLinkedRole",
                "iam:CreateServiceLinkedRole",
                "role",
                format!("arn:aws:iam::{ACCOUNT}:role/aws-service-role/ec2fleet.amazonaws.com/AWSServiceRoleForEC2Fleet"),
            )
            .with("iam:AWSServiceName", ["ecs.amazonaws.com"]),
        ),
        ("attaching to a group not opted in", group_auth("AttachInstances", &not_opted)),
        (
            "tagging a group not opted in",
            group_auth("CreateOrUpdateTags", &not_opted)
                .request_tags(&BTreeMap::from([(protocol::LEASE.to_string(), "x".to_string())])),
        ),
        (
            "a user's tag on an opted-in group",
            group_auth("CreateOrUpdateTags", &group(true)).request_tags(&user_tags),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[test]
fn every_request_a_pass_sends_is_allowed_by_the_stacks_role() {
    let role = role(MAIN, &Deployment::opt_in());
    let mut problems = Vec::new();
    for (what, auths) in every_request() {
        assert!(!auths.is_empty(), "{what}: no authorisation derived");
        for p in refused(&role, &auths) {
            problems.push(format!("{what}: {p}"));
        }
    }
    assert!(
        problems.is_empty(),
        "the role refuses:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_role_refuses_every_request_spotswap_never_sends() {
    let role = role(MAIN, &Deployment::opt_in());
    for (what, auth) in never_sent() {
        if let Ok(sid) = decide(&role, &auth) {
            panic!("{what}: allowed by {sid}: {auth:?}");
        }
    }
}

#[test]
fn a_fleet_that_leaves_its_volumes_untagged_is_refused_naming_the_call_the_resource_and_the_condition()
 {
    let role = role(MAIN, &Deployment::opt_in());
    let (_, auth) = never_sent()
        .into_iter()
        .find(|(what, _)| *what == "a fleet's untagged volume")
        .unwrap();
    let why = decide(&role, &auth).unwrap_err();
    for part in [
        "CreateFleet refused",
        "ec2:RunInstances on volume",
        "LaunchCloneInstancesAndVolumesOnlyTaggedWithTheirGroup",
        "Null aws:RequestTag/spotswap:group",
    ] {
        assert!(why.contains(part), "{part} in: {why}");
    }
}

/// Every condition of the role stops something: without it, one request spotswap never
/// sends is allowed. (So a condition dropped by mistake fails this test.)
#[test]
fn every_condition_of_the_role_is_what_refuses_some_request() {
    let role = role(MAIN, &Deployment::opt_in());
    let probes = never_sent();
    let mut idle = Vec::new();
    for (i, s) in role.iter().enumerate() {
        for (op, keys) in &s.condition {
            for key in keys.keys() {
                let mut weaker = role.clone();
                let ops = &mut weaker[i].condition;
                ops.get_mut(op).unwrap().remove(key);
                ops.retain(|_, keys| !keys.is_empty());
                let now_allowed: Vec<&str> = probes
                    .iter()
                    .filter(|(_, a)| decide(&weaker, a).is_ok())
                    .map(|(what, _)| *what)
                    .collect();
                if now_allowed.is_empty() {
                    idle.push(format!("{} {op} {key}", s.sid));
                }
            }
        }
    }
    assert!(idle.is_empty(), "conditions no probe depends on: {idle:?}");
}

/// Two conditions of the launch statements taken out by hand, as a reviewer would: the test of
/// every request then fails for the request that condition stopped.
#[test]
fn removing_a_launch_condition_lets_an_untagged_launch_through() {
    let role = role(MAIN, &Deployment::opt_in());
    let probes = never_sent();
    for (sid, key, probe) in [
        (
            "LaunchCloneInstancesAndVolumesOnlyTaggedWithTheirGroup",
            "aws:RequestTag/spotswap:group",
            "a fleet's untagged volume",
        ),
        (
            "LaunchCloneBatchesThroughInstantFleetsTaggedWithTheirGroup",
            "aws:RequestTag/spotswap:group",
            "an untagged fleet",
        ),
    ] {
        let (_, auth) = probes.iter().find(|(w, _)| *w == probe).unwrap();
        assert!(decide(&role, auth).is_err(), "{probe} refused as deployed");
        let mut weaker = role.clone();
        let s = weaker.iter_mut().find(|s| s.sid == sid).expect(sid);
        s.condition.values_mut().for_each(|keys| {
            keys.remove(key);
        });
        s.condition.retain(|_, keys| !keys.is_empty());
        assert_eq!(decide(&weaker, auth), Ok(sid.to_string()), "{probe}");
    }
}

#[test]
fn in_opt_out_mode_the_group_writes_reach_any_group_with_spotswaps_tags_only() {
    let d = Deployment {
        conditions: BTreeMap::from([("ScopeGroupWritesByOptInTag", false)]),
        parameters: BTreeMap::from([("OptInTagKey", ""), ("OptInTagValue", "true")]),
    };
    let role = role(MAIN, &d);
    let auths = group_write_auths(&group(false));
    assert_eq!(refused(&role, &auths), Vec::<String>::new());
    let user_tag = Auth::new(
        "CreateOrUpdateTags",
        "autoscaling:CreateOrUpdateTags",
        "autoScalingGroup",
        group_arn("web"),
    )
    .request_tags(&BTreeMap::from([("Name".to_string(), "x".to_string())]));
    assert!(decide(&role, &user_tag).is_err());
}

#[test]
fn the_regional_stack_forwards_events_to_the_home_bus_only() {
    let role = role(REGIONAL, &Deployment::regional());
    let put = |arn: &str| {
        Auth::new(
            "PutEvents",
            "events:PutEvents",
            "event-bus",
            arn.to_string(),
        )
    };
    let home = format!("arn:aws:events:eu-west-1:{ACCOUNT}:event-bus/default");
    assert!(decide(&role, &put(&home)).is_ok());
    let other = format!("arn:aws:events:us-west-2:{ACCOUNT}:event-bus/default");
    assert!(decide(&role, &put(&other)).is_err());
    let elsewhere = Auth::new(
        "RunInstances",
        "ec2:RunInstances",
        "instance",
        ec2_arn("instance", "*"),
    );
    assert!(decide(&role, &elsewhere).is_err());
}

/// docs/deploy.md's table of statements is the template's: a row per statement of both
/// stacks' roles, naming each of its actions, and no row for a statement that is gone.
#[test]
fn the_deploy_guide_lists_every_statement_of_the_role_with_its_actions() {
    let doc = read("docs/deploy.md");
    let table = doc
        .split("| Statement (`Sid`) |")
        .nth(1)
        .expect("docs/deploy.md has the table of statements");
    let rows: BTreeMap<String, String> = table
        .lines()
        .skip(1)
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| {
            let rest = l.strip_prefix("| `")?;
            let (sid, row) = rest.split_once('`')?;
            sid.chars()
                .all(|c| c.is_ascii_alphanumeric())
                .then(|| (sid.to_string(), row.to_string()))
        })
        .collect();
    let opt_out = Deployment {
        conditions: BTreeMap::from([("ScopeGroupWritesByOptInTag", false)]),
        parameters: BTreeMap::from([("OptInTagKey", ""), ("OptInTagValue", "true")]),
    };
    let mut statements = role(MAIN, &Deployment::opt_in());
    statements.extend(role(MAIN, &opt_out));
    statements.extend(role(REGIONAL, &Deployment::regional()));
    let mut problems = Vec::new();
    for s in &statements {
        let Some(row) = rows.get(&s.sid) else {
            problems.push(format!("no row for {}", s.sid));
            continue;
        };
        for action in &s.actions {
            let name = action.split(':').nth(1).unwrap();
            if !row.contains(name) {
                problems.push(format!("{}'s row does not name {action}", s.sid));
            }
        }
    }
    for sid in rows.keys() {
        if !statements.iter().any(|s| &s.sid == sid) {
            problems.push(format!("a row for {sid}, which no role has"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
