//! The preflight: before the first pass (`spotswap check`, and the Lambda's first invocation
//! in a container), asks EC2 whether the caller may make the writes a pass makes, in each
//! region the pass would act in, by sending them with `DryRun=true`, shaped exactly as a pass
//! sends them: a one-clone `CreateFleet` from a real opted-in group's template, `RunInstances`
//! for a template with network interfaces, `CreateLaunchTemplate` for a launch
//! configuration's group, and `CreateTags` and `TerminateInstances` on a clone.
//! `DryRunOperation` is the allow; `UnauthorizedOperation` carries an encoded message, decoded
//! (`sts:DecodeAuthorizationMessage`) into the action, the resource and whether an explicit
//! deny or the want of an allow refused it. What the role, a key policy, an SCP or a
//! permissions boundary refuses shows here, once, instead of as one failed outcome per clone.
//!
//! Auto Scaling has no `DryRun`: its writes are not asked about here (the project's tests hold
//! them against the stack's role; README, "What the role allows, and how that is proven"). The
//! preflight changes nothing in the account and decides nothing about groups; the planner turns
//! a refused launch into the skip `launch-not-permitted`.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::cloud::{
    Account, Actuator, CloneLaunch, CloudError, DryRunAnswer, FleetLaunch, FleetTemplate,
    GroupQuery, Inventory, OwnedTemplate, Probe,
};
use crate::error::Error;
use crate::model::{
    AllocationStrategy, Group, Instance, InstanceState, LaunchRef, LaunchSpec, Market,
    PermissionRefusal,
};
use crate::protocol;
use crate::settings::{GroupPolicy, Settings};

/// The Auto Scaling writes a pass makes, which have no `DryRun`.
pub const AUTO_SCALING_WRITES: [&str; 6] = [
    "autoscaling:AttachInstances",
    "autoscaling:TerminateInstanceInAutoScalingGroup",
    "autoscaling:DetachInstances",
    "autoscaling:UpdateAutoScalingGroup",
    "autoscaling:CreateOrUpdateTags",
    "autoscaling:DeleteTags",
];

/// One question asked of AWS, and its answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub region: String,
    /// The IAM action the request needs (`ec2:CreateFleet`).
    pub action: String,
    /// What the request was shaped from (a group, a clone), or why there was nothing to shape
    /// it from.
    pub subject: String,
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// What AWS answered one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "verdict", rename_all = "kebab-case")]
pub enum Verdict {
    /// `DryRunOperation`: a pass may send it.
    Allowed,
    /// Refused: what to change.
    Refused {
        #[serde(flatten)]
        refusal: PermissionRefusal,
        fix: String,
    },
    /// Not asked: AWS cannot be asked (Auto Scaling), or nothing in the region to shape the
    /// request from yet.
    NotChecked { why: String },
    /// The question itself failed (a missing resource, an endpoint without the call): says
    /// nothing about permissions.
    Failed { error: String },
}

impl Verdict {
    /// The stable word of the verdict, as its JSON names it.
    pub fn name(&self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Refused { .. } => "refused",
            Verdict::NotChecked { .. } => "not-checked",
            Verdict::Failed { .. } => "failed",
        }
    }
}

/// Every check of every region, and the regions that could not be read.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Preflight {
    pub checks: Vec<Check>,
}

impl Preflight {
    /// The refused checks: what an operator must fix.
    pub fn problems(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| matches!(c.verdict, Verdict::Refused { .. }))
    }

    /// For each region where a launch (`CreateFleet` or `RunInstances`) was refused, what
    /// refused it: the pass skips those regions' launches.
    pub fn launch_refused(&self) -> BTreeMap<String, PermissionRefusal> {
        let mut out = BTreeMap::new();
        for c in &self.checks {
            if let Verdict::Refused { refusal, .. } = &c.verdict
                && (c.action == "ec2:CreateFleet" || c.action == "ec2:RunInstances")
            {
                out.entry(c.region.clone())
                    .or_insert_with(|| refusal.clone());
            }
        }
        out
    }

    /// The exit code operators script against: 0 when nothing was refused, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        i32::from(self.problems().next().is_some())
    }
}

/// Runs the preflight over the regions a pass would act in.
pub async fn run<A: Account>(account: &A, settings: &Settings) -> Result<Preflight, Error> {
    let regions: Vec<String> = account
        .regions()
        .await
        .map_err(Error::Regions)?
        .into_iter()
        .filter(|r| settings.region_enabled(r))
        .collect();
    let mut out = Preflight::default();
    let asked =
        futures::future::join_all(regions.iter().map(|r| region_checks(account, r, settings)))
            .await;
    for checks in asked {
        out.checks.extend(checks);
    }
    Ok(out)
}

/// A probe to send, by the IAM action it asks about, or why there is none to send.
type Planned = (&'static str, Result<Probe, String>);

/// What the probes of a region are shaped from: its opted-in groups, their launch specs (by
/// `LaunchRef::key`) and spotswap's clones.
struct Found {
    groups: Vec<Group>,
    specs: BTreeMap<String, LaunchSpec>,
    clones: Vec<Instance>,
}

impl Found {
    fn spec_of(&self, g: &Group) -> Option<&LaunchSpec> {
        g.launch.as_ref().and_then(|l| self.specs.get(&l.key()))
    }
}

/// The checks of one region: each probe shaped from what the region holds, sent, and its
/// answer read; then the Auto Scaling writes, which cannot be asked about.
async fn region_checks<A: Account>(account: &A, region: &str, settings: &Settings) -> Vec<Check> {
    let cloud = account.region(region);
    let check = |action: &str, subject: String, verdict: Verdict| Check {
        region: region.to_string(),
        action: action.to_string(),
        subject,
        verdict,
    };
    let found = match read(&cloud, settings).await {
        Ok(f) => f,
        Err(e) => {
            let error = format!("the region could not be read: {e}");
            return vec![check(
                "reads",
                "the region".into(),
                Verdict::Failed { error },
            )];
        }
    };
    let mut planned = launch_probes(&cloud, &found).await;
    planned.extend(clone_probes(&found));
    let mut out = Vec::new();
    for (action, probe) in planned {
        let (subject, verdict) = match probe {
            Err(why) => ("-".to_string(), Verdict::NotChecked { why }),
            Ok(p) => (subject_of(&p), ask(&cloud, action, &p).await),
        };
        out.push(check(action, subject, verdict));
    }
    out.push(check(
        "autoscaling writes",
        "-".into(),
        Verdict::NotChecked {
            why: format!(
                "Auto Scaling has no DryRun: its {} writes are held against the stack's role \
                 by the project's tests only",
                AUTO_SCALING_WRITES.len()
            ),
        },
    ));
    out
}

/// The region's opted-in groups, their launch specs and the clones: three reads.
async fn read<R: Inventory>(cloud: &R, settings: &Settings) -> Result<Found, CloudError> {
    let groups = cloud.groups(&GroupQuery::for_settings(settings)).await?;
    let policies = settings.policies(&groups);
    let groups: Vec<Group> = groups
        .into_iter()
        .filter(|g| matches!(policies.get(&g.name), Some(GroupPolicy::OptedIn(_))))
        .collect();
    let refs: Vec<LaunchRef> = groups.iter().filter_map(|g| g.launch.clone()).collect();
    Ok(Found {
        specs: cloud.launch_specs(&refs).await?,
        clones: cloud.clones().await?,
        groups,
    })
}

/// The launches: a batch goes out as a fleet and a spec whose interfaces must be restated as
/// one clone a RunInstances (as the planner decides: `LaunchSpec::run_instances_because`); a
/// launch configuration's group launches from a template spotswap creates for it.
async fn launch_probes<R: Inventory>(cloud: &R, found: &Found) -> Vec<Planned> {
    let by_path = |fleet: bool| {
        found.groups.iter().find_map(|g| {
            let spec = found.spec_of(g)?;
            (spec.run_instances_because().is_none() == fleet).then_some((g, spec))
        })
    };
    // One member of a group, read to place the probe where a clone of it would go.
    let member = async |g: &Group| -> Result<Instance, String> {
        let ids: Vec<String> = g
            .members
            .iter()
            .take(1)
            .map(|m| m.instance_id.clone())
            .collect();
        let found = cloud.instances(&ids).await.map_err(|e| e.to_string())?;
        found
            .into_iter()
            .next()
            .ok_or_else(|| format!("group {} has no instance to place a clone like", g.name))
    };
    let fleet = match by_path(true) {
        None => Err("no opted-in group launches its clones by fleet".to_string()),
        Some((g, spec)) => member(g)
            .await
            .map(|i| Probe::Fleet(fleet_probe(g, spec, &i))),
    };
    let run = match by_path(false) {
        None => Err(
            "no opted-in group launches its clones by RunInstances (a spec with \
                     network interfaces or a public-IP choice)"
                .to_string(),
        ),
        Some((g, spec)) => member(g)
            .await
            .map(|i| Probe::Clone(Box::new(clone_probe(g, spec, &i)))),
    };
    let lc = found
        .groups
        .iter()
        .find_map(|g| match (&g.launch, found.spec_of(g)) {
            (Some(LaunchRef::LaunchConfiguration { name }), Some(spec)) => Some((name, spec)),
            _ => None,
        });
    let template = match lc {
        None => Err("no opted-in group launches from a launch configuration".to_string()),
        Some((name, spec)) => Ok(Probe::Template(Box::new(OwnedTemplate {
            name: protocol::owned_template_name(name, spec),
            launch_configuration: name.clone(),
            spec: spec.clone(),
        }))),
    };
    vec![
        ("ec2:CreateFleet", fleet),
        ("ec2:RunInstances", run),
        ("ec2:CreateLaunchTemplate", template),
    ]
}

/// Pairing and cleaning up act on clones: only an existing one can be asked about.
fn clone_probes(found: &Found) -> Vec<Planned> {
    let clone = found
        .clones
        .iter()
        .find(|c| matches!(c.state, InstanceState::Pending | InstanceState::Running));
    let Some(c) = clone else {
        let why = "no clone in the region yet (asked again once one runs)".to_string();
        return vec![
            ("ec2:CreateTags", Err(why.clone())),
            ("ec2:TerminateInstances", Err(why)),
        ];
    };
    let replaces = c.tags.get(protocol::REPLACES).cloned().unwrap_or_default();
    vec![
        (
            "ec2:CreateTags",
            Ok(Probe::TagInstance {
                instance: c.instance_id.clone(),
                tags: BTreeMap::from([(protocol::REPLACES.to_string(), replaces)]),
            }),
        ),
        (
            "ec2:TerminateInstances",
            Ok(Probe::Terminate {
                instance: c.instance_id.clone(),
            }),
        ),
    ]
}

/// What a probe was shaped from, in a few words.
fn subject_of(p: &Probe) -> String {
    match p {
        Probe::Fleet(f) => {
            let template = match &f.template {
                FleetTemplate::Id(id) => format!("template {id}"),
                FleetTemplate::Name(name) => format!("spotswap's template {name}"),
            };
            format!("group {} ({template} version {})", f.group, f.version)
        }
        Probe::Clone(l) => format!("group {} ({})", l.group, l.launch),
        Probe::Template(t) => format!("launch configuration {}", t.launch_configuration),
        Probe::TagInstance { instance, .. } | Probe::Terminate { instance } => {
            format!("clone {instance}")
        }
    }
}

/// Sends one probe and reads its answer, decoding a refusal.
async fn ask<R: Actuator>(cloud: &R, action: &str, probe: &Probe) -> Verdict {
    match cloud.dry_run(probe).await {
        DryRunAnswer::Allowed => Verdict::Allowed,
        DryRunAnswer::Failed(e) => Verdict::Failed {
            error: e.to_string(),
        },
        DryRunAnswer::Refused { encoded, message } => {
            let decoded = match &encoded {
                Some(m) => cloud
                    .decode_authorization(m)
                    .await
                    .map_err(|e| e.to_string()),
                None => Err(format!("AWS gave no encoded message ({message})")),
            };
            let refusal = refusal(action, decoded);
            let fix = fix(&refusal);
            Verdict::Refused { refusal, fix }
        }
    }
}

/// The refusal a decoded authorization message describes (STS API reference,
/// DecodeAuthorizationMessage: `explicitDeny`, `context.action`, `context.resource`); without
/// one, the action asked for on an unknown resource, saying why.
pub fn refusal(action: &str, decoded: Result<String, String>) -> PermissionRefusal {
    let doc: Result<Value, String> =
        decoded.and_then(|d| serde_json::from_str(&d).map_err(|e| format!("not JSON: {e}")));
    match doc {
        Ok(d) => {
            let explicit = d["explicitDeny"].as_bool().unwrap_or(false);
            let statements: Vec<&str> = d["matchedStatements"]["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["statementId"].as_str())
                .collect();
            let denied_by = match (explicit, statements.is_empty()) {
                (true, true) => {
                    "an explicit Deny (a policy, an SCP or a permissions boundary)".to_string()
                }
                (true, false) => format!("an explicit Deny (statement {})", statements.join(", ")),
                (false, _) => {
                    "no statement allows it (the role, or an SCP or permissions boundary \
                               that does not include it)"
                        .to_string()
                }
            };
            PermissionRefusal {
                action: d["context"]["action"]
                    .as_str()
                    .unwrap_or(action)
                    .to_string(),
                resource: d["context"]["resource"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_string(),
                denied_by,
            }
        }
        Err(why) => PermissionRefusal {
            action: action.to_string(),
            resource: "unknown".into(),
            denied_by: format!("not known: the message could not be decoded ({why})"),
        },
    }
}

/// What the operator should change for a refusal, in one line.
fn fix(r: &PermissionRefusal) -> String {
    if r.denied_by.starts_with("an explicit Deny") {
        format!(
            "exempt the function's role from the Deny of {} on {} (a Deny wins over any Allow)",
            r.action, r.resource
        )
    } else {
        format!(
            "allow {} on {} for the function's role (docs/deploy.md, \"The role and its \
             conditions\"), and in any SCP or permissions boundary over it",
            r.action, r.resource
        )
    }
}

/// A one-clone fleet for `group`, as a pass launches it for `like`.
fn fleet_probe(group: &Group, spec: &LaunchSpec, like: &Instance) -> FleetLaunch {
    // As the pass sends it: a template at the version the plan resolved; a launch
    // configuration through the template spotswap keeps for it, which it creates once and
    // never versions.
    let (template, version) = match &group.launch {
        Some(LaunchRef::LaunchTemplate { id, version, .. }) => (
            FleetTemplate::Id(id.clone()),
            spec.resolved_version
                .map_or_else(|| version.clone(), |v| v.to_string()),
        ),
        Some(LaunchRef::LaunchConfiguration { name }) => (
            FleetTemplate::Name(protocol::owned_template_name(name, spec)),
            "1".to_string(),
        ),
        None => unreachable!("only groups with a launch spec are probed"),
    };
    FleetLaunch {
        placement_group: group.placement_group.clone(),
        group: group.name.clone(),
        availability_zone: like.availability_zone.clone(),
        subnets: like.subnet_id.iter().cloned().collect(),
        count: 1,
        types: vec![like.instance_type.clone()],
        strategy: AllocationStrategy::PriceCapacityOptimized,
        template,
        version,
        max_price: PROBE_MAX_PRICE,
        hibernate: spec.hibernation,
        tags: protocol::launch_tags(group).0,
        client_token: format!("spotswap-preflight-{}", like.instance_id),
    }
}

/// A clone of `like` by `RunInstances`, as a pass launches it.
fn clone_probe(group: &Group, spec: &LaunchSpec, like: &Instance) -> CloneLaunch {
    CloneLaunch {
        placement_group: group.placement_group.clone(),
        group: group.name.clone(),
        replaces: like.instance_id.clone(),
        instance_type: like.instance_type.clone(),
        availability_zone: like.availability_zone.clone(),
        subnet_id: like.subnet_id.clone(),
        launch: group.launch.clone().expect("a template group"),
        spec: spec.clone(),
        market: Market::Spot,
        max_price: PROBE_MAX_PRICE,
        tags: protocol::launch_tags(group).0,
        client_token: format!("spotswap-preflight-{}", like.instance_id),
    }
}

/// The spot max price of a probe. A pass bids the instance's on-demand price; IAM's answer does
/// not depend on the price, so the preflight reads no price list for it.
const PROBE_MAX_PRICE: f64 = 1.0;
