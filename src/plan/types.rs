//! The plan's types: a region's decisions, each an action or a skip with a reason, costed.
//!
//! These are the data a dry run shows and a pass executes; they serialise to the plan JSON of
//! `spotswap plan --output json` and the golden scenarios. Every action, skip and orphan reason
//! has one stable kebab-case word, the same in JSON, tables, logs and metrics. Plain data: no
//! behaviour beyond naming, no I/O.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use strum::{EnumDiscriminants, IntoStaticStr};

use crate::compat::Reason;
use crate::model::{
    AllocationStrategy, InstanceState, LaunchRef, Os, PriceSource, RunInstancesBecause,
};
use crate::pricing::PriceUsed;
use crate::protocol::LaunchBackoff;

/// A pass's decisions for one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub region: String,
    /// Where the on-demand prices came from, and how old they are when bundled.
    pub on_demand_source: PriceSource,
    pub decisions: Vec<Decision>,
}

impl Plan {
    /// The actions, in the order they must run within each group.
    pub fn actions(&self) -> impl Iterator<Item = (&Decision, &Action)> {
        self.decisions.iter().filter_map(|d| match &d.verdict {
            Verdict::Act(a) => Some((d, a)),
            Verdict::Skip(_) => None,
        })
    }

    /// The skips.
    pub fn skips(&self) -> impl Iterator<Item = (&Decision, &Skip)> {
        self.decisions.iter().filter_map(|d| match &d.verdict {
            Verdict::Skip(s) => Some((d, s)),
            Verdict::Act(_) => None,
        })
    }
}

/// One decision: about a group, or about one instance of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub group: String,
    /// The instance concerned: the replaced on-demand instance for launches, swaps and waits,
    /// the clone for orphan terminations; none for group-level decisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    pub verdict: Verdict,
    /// Hourly cost of what the decision concerns now, in USD; `None` where a price is unknown.
    pub hourly_cost_before: Option<f64>,
    /// Hourly cost once the decision is carried out.
    pub hourly_cost_after: Option<f64>,
    /// The prices behind the two costs.
    #[serde(default)]
    pub prices: Vec<PriceUsed>,
}

/// Act or skip.
// A plan holds a few decisions per instance at most: a skip's unused bytes cost nothing worth
// a box (and a box would change every pattern that reads a verdict).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Act(Action),
    Skip(Skip),
}

/// A candidate type for a clone, as ranked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub instance_type: String,
    /// The spot price judged over the window, USD per hour.
    pub spot_price: f64,
}

/// A pool a launch leaves out for what happened in it recently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AvoidedPool {
    pub instance_type: String,
    pub reason: Reason,
}

/// One `CreateFleet` request of a group's launch: the clones of the group that share its key
/// (AZ, replaced type and pool set) go out together, and EC2 picks among their candidates by
/// `strategy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FleetRequest {
    pub key: String,
    pub strategy: AllocationStrategy,
    /// For a launch configuration's group: the launch template spotswap keeps for it
    /// (see [`crate::protocol::owned_template_name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// The batch's other candidates, in rank order: what a second fleet offers for the clones
    /// this one could not launch (its pools had no capacity).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<String>,
}

/// A MaxSize change around a swap: raised by one so the attach fits, restored afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxSizeChange {
    pub original: u32,
    pub raised: u32,
}

/// What a pass does. Each group's actions run in the order the plan lists them.
// A plan holds a few actions per group: the launch variant's size costs nothing worth a box
// (and a box would change every pattern that reads a launch).
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, IntoStaticStr, EnumDiscriminants)]
#[serde(tag = "type", rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
#[strum_discriminants(
    name(ActionKind),
    derive(Serialize, Deserialize, IntoStaticStr, PartialOrd, Ord, Hash),
    serde(rename_all = "kebab-case"),
    strum(serialize_all = "kebab-case"),
    doc = "The kind of an action, without its details: what outcomes and totals count."
)]
pub enum Action {
    /// Launch a spot clone for an on-demand instance (`replaces`: the instance this pass
    /// launches it for; the clone is paired with an on-demand instance of its AZ when it is
    /// swapped in), with the tags computed by the planner (the protocol's `spotswap:group`
    /// among them, `spotswap:replaces` empty) applied in the launch call itself. The clones of
    /// one group that share a `fleet` request go out in one `CreateFleet`, which picks among
    /// the candidates; without one, each clone is a `RunInstances` trying them in order.
    LaunchClone {
        replaces: String,
        replaced_type: String,
        availability_zone: String,
        #[serde(default)]
        subnet_id: Option<String>,
        launch: LaunchRef,
        candidates: Vec<Candidate>,
        /// The spot max price: the replaced type's on-demand price.
        max_price: f64,
        product_description: String,
        /// Every tag the clone is launched with (see [`crate::protocol::clone_tags`]).
        tags: BTreeMap<String, String>,
        /// Tags of the replaced instance left off the clone to stay within EC2's 50 per
        /// resource (the protocol's tags and `Name` are always kept).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tags_left_out: Vec<String>,
        /// Pools of this AZ left out because they recently interrupted the group or had no
        /// capacity for it, with that reason.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        avoided: Vec<AvoidedPool>,
        /// Every other known type left out, counted by the first reason it failed
        /// (compatibility, offering, price), as a skip's `no-cheaper-type` counts them.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        rejected: BTreeMap<Reason, u32>,
        /// How long a candidate pool that answers with a capacity error is avoided afterwards
        /// (the group's `interruption-cooldown-minutes`).
        #[serde(default = "default_avoid_minutes")]
        avoid_minutes: u32,
        /// The fleet this clone is launched in; none when it launches by `RunInstances`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fleet: Option<FleetRequest>,
        /// Why the clone launches by `RunInstances` rather than in a fleet.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        run_instances_because: Option<RunInstancesBecause>,
    },
    /// Launch an on-demand instance of the group's own type to replace a spot member: the group
    /// has fewer on-demand instances than its floor (`keep`), because the floor rose or
    /// scale-in removed on-demand instances. It is swapped in like a spot clone (attached
    /// first, then the spot member leaves through the group with desired capacity
    /// decremented), so the group never runs below desired capacity on the way back.
    LaunchOnDemand {
        replaces: String,
        replaced_type: String,
        instance_type: String,
        availability_zone: String,
        #[serde(default)]
        subnet_id: Option<String>,
        launch: LaunchRef,
        /// The on-demand instances the group keeps, and has now (in flight included).
        keep: u32,
        on_demand: u32,
        tags: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tags_left_out: Vec<String>,
    },
    /// The group's clones died before they were swapped in (terminated at boot, stuck, or
    /// reclaimed first): record one more failure in `spotswap:launch-backoff`, naming the last
    /// clone and its state reason; launches wait until `until`.
    BackOff { backoff: LaunchBackoff },
    /// A clone launched since the last failure booted and is ready: the back-off is over, so
    /// `spotswap:launch-backoff` is removed and a later failure starts from the first
    /// cool-down again.
    EndBackOff { failures: u32 },
    /// Attach a ready clone, then terminate the on-demand instance through the group with
    /// `ShouldDecrementDesiredCapacity=true`; raise and restore MaxSize around it when full.
    Swap {
        clone: String,
        replaces: String,
        #[serde(default)]
        max_size: Option<MaxSizeChange>,
        /// Tags written on the clone before the attach, pairing it with `replaces`
        /// (`spotswap:replaces` and the replaced instance's tags); empty if already paired.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        pair: BTreeMap<String, String>,
        /// Tags of the replaced instance the pairing leaves off the clone to stay within EC2's
        /// 50 per resource (the protocol's tags and `Name` are always kept).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tags_left_out: Vec<String>,
    },
    /// The first half of a swap in a group behind load balancers: pair and attach a ready
    /// clone (raising MaxSize when full, as `swap` does), tagged `spotswap:attached`. The
    /// replaced instance stays until the clone is healthy behind every load balancer of the
    /// group; a later pass then completes the swap (`complete-swap`), or undoes it
    /// (`undo-swap`) past `healthy-timeout-minutes`.
    AttachClone {
        clone: String,
        replaces: String,
        #[serde(default)]
        max_size: Option<MaxSizeChange>,
        /// Tags written on the clone before the attach: the pairing, if not paired yet, and
        /// `spotswap:attached`.
        pair: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tags_left_out: Vec<String>,
    },
    /// A clone is attached but the instance it replaces is still in the group (a pass stopped
    /// mid-swap, or the clone waited to be healthy behind the group's load balancers, and now
    /// is). Terminate the replaced instance through the group, decrementing desired.
    CompleteSwap { clone: String, replaces: String },
    /// A clone attached behind the group's load balancers was not healthy there within the
    /// group's `healthy-timeout-minutes`: it leaves the group with desired capacity
    /// decremented (so the instance it was to replace keeps serving) and is terminated; the
    /// group backs off as for a clone that died at boot.
    UndoSwap {
        clone: String,
        replaces: String,
        /// The first load balancer that did not call it healthy, and what it said.
        load_balancer: String,
        state: String,
    },
    /// A pass stopped between a swap's attach and the removal of the instance it replaces, and
    /// then one of the pair left the group another way (the group's scaling activities say
    /// so): desired capacity is one above what the user set, and no later pass could finish
    /// the swap. Take `remove`, the one still in the group, out through the group with desired
    /// capacity decremented; when both have left, the member the group launched last (its
    /// replacement of them, likeliest).
    SettleSwap {
        clone: String,
        replaces: String,
        remove: String,
        /// When both of the pair have left and another member goes for them: the new value of
        /// `spotswap:settled` (`CLONE>MEMBER` entries), written first so no later pass takes a
        /// second member out for the same attach.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        settled: Option<String>,
    },
    /// Terminate a clone that will never be swapped in.
    TerminateOrphan { clone: String, reason: OrphanReason },
    /// Delete a launch template spotswap created for a launch configuration that no listed
    /// group uses any more.
    DeleteTemplate {
        template_id: String,
        name: String,
        launch_configuration: String,
    },
    /// Put MaxSize back to the value recorded in `spotswap:max-size` and remove the tag. When
    /// desired capacity has since grown past that value (Auto Scaling refuses a MaxSize below
    /// desired), MaxSize comes down only to desired capacity and the tag stays (`partial`), so a
    /// later pass finishes the restore once the group has scaled in.
    RestoreMaxSize {
        current: u32,
        restored: u32,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        partial: bool,
    },
}

fn default_avoid_minutes() -> u32 {
    60
}

impl Action {
    /// The stable kebab-case word for this action, as the plan's JSON names it.
    pub fn name(&self) -> &'static str {
        self.into()
    }

    /// The kind of this action.
    pub fn kind(&self) -> ActionKind {
        self.into()
    }
}

impl ActionKind {
    /// The stable kebab-case word for this kind.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

/// Why a clone is an orphan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, IntoStaticStr)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum OrphanReason {
    /// The instance it replaces is gone, or no longer in service in the group.
    TargetGone,
    /// Its group is gone or no longer opted in.
    GroupNotOptedIn,
    /// Still unattached past the grace period plus the orphan timeout.
    Timeout,
    /// Another clone of the same instance is kept.
    Duplicate,
    /// Stopped or otherwise not going to run.
    NotRunning,
    /// Swapping it in would take on-demand capacity below the group's minimum (a spot clone)
    /// or above it (an on-demand one, launched to restore the minimum).
    NotNeeded,
    /// It was launched from a template version or launch configuration the group no longer
    /// launches from (`spotswap:launched-from`): attached, the group would run an instance of
    /// a spec it does not have. A clone of the current spec is launched instead.
    Drifted,
}

/// Why a group or an instance is left alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, IntoStaticStr, EnumDiscriminants)]
#[serde(tag = "reason", rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
#[strum_discriminants(
    name(SkipKind),
    derive(Serialize, Deserialize, IntoStaticStr, PartialOrd, Ord, Hash),
    serde(rename_all = "kebab-case"),
    strum(serialize_all = "kebab-case"),
    doc = "The kind of a skip, without its details."
)]
pub enum Skip {
    NotOptedIn,
    /// A setting tag has a value that cannot be used: the group is left untouched.
    InvalidSetting {
        setting: String,
        tag: String,
        value: String,
        problem: String,
    },
    /// The group's allowed and disallowed instance types (settings `allowed-instance-types` and
    /// `disallowed-instance-types`, or their `spotswap:` tags) leave no known type at all: a
    /// mistake in the lists, said once for the group rather than as no cheaper type for every
    /// instance. Its clones are still cleaned up.
    NoTypeAllowed {
        allowed: String,
        disallowed: String,
    },
    /// A tag spotswap itself writes holds a value it cannot read: the group is left untouched.
    InvalidProtocolTag {
        tag: String,
        value: String,
    },
    /// Another pass holds the group's lease (`spotswap:lease`): it may be changing the group
    /// right now, so this pass leaves the group and its clones alone until the lease ends.
    Leased {
        holder: String,
        until: DateTime<Utc>,
    },
    /// A swap a stopped pass left cannot be settled this pass (see [`Action::SettleSwap`]):
    /// why, in plain words. The pass keeps the group's lease unreleased, so a later pass looks
    /// again.
    SwapInDoubt {
        why: String,
    },
    /// A read about this group alone failed: it is left alone until the read works.
    ReadFailed {
        operation: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        message: String,
    },
    MixedInstancesPolicy,
    WarmPool,
    InstanceRefreshInProgress,
    ProcessesSuspended {
        processes: Vec<String>,
    },
    OutsideSchedule {
        schedule: String,
        timezone: String,
        state: String,
    },
    /// The group has no launch configuration or template spotswap can read.
    NoLaunchSpec {
        launch: Option<String>,
    },
    AmiNotFound {
        image_id: String,
    },
    UnknownInstanceType {
        instance_type: String,
    },
    NoOnDemandPrice {
        instance_type: String,
        os: Os,
    },
    /// No compatible type is cheaper; `rejected` counts the candidate types by first failure.
    NoCheaperType {
        rejected: BTreeMap<Reason, u32>,
    },
    /// The group keeps this many on-demand instances.
    MinOnDemand {
        keep: u32,
        on_demand: u32,
    },
    /// The group has fewer on-demand instances than it keeps, but its launch spec names no
    /// instance type to launch on-demand.
    NoOnDemandType {
        keep: u32,
        on_demand: u32,
    },
    /// This pass's launches for the group are used up.
    BatchLimit {
        limit: u32,
    },
    NotInService {
        lifecycle_state: String,
    },
    Unhealthy,
    ProtectedFromScaleIn,
    NotRunning {
        state: InstanceState,
    },
    /// The instance is not in the snapshot's instance list.
    InstanceNotFound,
    /// A clone is launched and waits for the group's grace period.
    CloneNotReady {
        clone: String,
        ready_in_seconds: i64,
    },
    /// A clone is launched and not yet running.
    CloneStarting {
        clone: String,
        state: InstanceState,
    },
    /// The clone is ready, but its swap needs MaxSize raised while a restore to `original`
    /// (recorded in `spotswap:max-size`) waits for the group to scale in.
    MaxSizeRestorePending {
        clone: String,
        original: u32,
    },
    /// The group's clones keep dying before they are swapped in: no launch until `until`
    /// (the cool-down doubles with each failure in a row). `clone` is the last one that died,
    /// `state_reason` EC2's reason for it (or how spotswap found it stuck).
    BackingOff {
        failures: u32,
        until: DateTime<Utc>,
        clone: String,
        state_reason: String,
    },
    /// The launch template attaches an existing network interface (`NetworkInterfaceId`): an
    /// interface is attached to one instance at a time, and this one belongs to the instance
    /// already running, so no clone can be launched from the template.
    FixedNetworkInterface {
        network_interface_id: String,
    },
    /// The launch spec asks for `host` tenancy (a Dedicated Host): spot instances do not run on
    /// Dedicated Hosts (EC2 API reference, SpotPlacement: "The host tenancy is not supported for
    /// Spot Instances"), so the group has no clone to swap in.
    HostTenancy,
    /// The preflight found this region's launches refused by IAM (the role, an SCP or a
    /// permissions boundary): no clone is launched until it is fixed, instead of one failed
    /// launch per clone. Swaps of clones already running and clean-up go on.
    LaunchNotPermitted {
        action: String,
        resource: String,
        denied_by: String,
    },
    /// The clone is attached, and the instance it replaces stays until the clone is in
    /// service in the group and healthy behind every load balancer of it: the first that is
    /// not, and what it says (`initial`, `unhealthy`, `unknown` when it did not answer; for
    /// the group itself, the clone's lifecycle state).
    CloneNotHealthy {
        clone: String,
        load_balancer: String,
        state: String,
        /// Seconds left before the swap is undone.
        undone_in_seconds: i64,
    },
}

impl Skip {
    /// The stable kebab-case word for this skip, as the plan's JSON names it.
    pub fn name(&self) -> &'static str {
        self.into()
    }

    /// The kind of this skip.
    pub fn kind(&self) -> SkipKind {
        self.into()
    }

    /// The skip's details as `(field, value)` pairs, as its JSON has them (the reason word
    /// aside), for tables and log records.
    pub fn details(&self) -> Vec<(String, String)> {
        let value = serde_json::to_value(self).unwrap_or_default();
        value
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != "reason")
            .map(|(k, v)| {
                let v = match v {
                    serde_json::Value::String(s) => format!("{s:?}"),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect()
    }
}

impl SkipKind {
    /// The stable kebab-case word for this kind.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

impl OrphanReason {
    /// The stable kebab-case word for this reason.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serde_word(v: &impl Serialize, tag: &str) -> String {
        let v = serde_json::to_value(v).unwrap();
        match v.get(tag) {
            Some(t) => t.as_str().unwrap().to_string(),
            None => v.as_str().unwrap().to_string(),
        }
    }

    #[test]
    fn every_stable_name_is_the_word_the_json_uses() {
        let actions = [
            Action::Swap {
                clone: "i-2".into(),
                replaces: "i-1".into(),
                max_size: None,
                pair: BTreeMap::new(),
                tags_left_out: vec![],
            },
            Action::DeleteTemplate {
                template_id: "lt-1".into(),
                name: "spotswap-lc-web".into(),
                launch_configuration: "web".into(),
            },
            Action::CompleteSwap {
                clone: "i-2".into(),
                replaces: "i-1".into(),
            },
            Action::TerminateOrphan {
                clone: "i-2".into(),
                reason: OrphanReason::TargetGone,
            },
            Action::SettleSwap {
                clone: "i-2".into(),
                replaces: "i-1".into(),
                remove: "i-1".into(),
                settled: None,
            },
            Action::RestoreMaxSize {
                current: 4,
                restored: 3,
                partial: false,
            },
            Action::LaunchOnDemand {
                replaces: "i-1".into(),
                replaced_type: "m5a.large".into(),
                instance_type: "m5.large".into(),
                availability_zone: "us-east-1a".into(),
                subnet_id: None,
                launch: LaunchRef::LaunchConfiguration { name: "lc".into() },
                keep: 2,
                on_demand: 1,
                tags: BTreeMap::new(),
                tags_left_out: vec![],
            },
            Action::LaunchClone {
                replaces: "i-1".into(),
                replaced_type: "m5.large".into(),
                availability_zone: "us-east-1a".into(),
                subnet_id: None,
                launch: LaunchRef::LaunchConfiguration { name: "lc".into() },
                candidates: vec![],
                max_price: 0.096,
                product_description: "Linux/UNIX (Amazon VPC)".into(),
                tags: BTreeMap::new(),
                tags_left_out: vec![],
                avoided: vec![],
                rejected: BTreeMap::new(),
                avoid_minutes: 60,
                fleet: None,
                run_instances_because: None,
            },
        ];
        for a in &actions {
            assert_eq!(a.name(), serde_word(a, "type"));
            assert_eq!(a.kind().name(), a.name());
            assert_eq!(serde_word(&a.kind(), "type"), a.name());
        }
        let skips = [
            Skip::NotOptedIn,
            Skip::NoTypeAllowed {
                allowed: "c9.*".into(),
                disallowed: String::new(),
            },
            Skip::MixedInstancesPolicy,
            Skip::BatchLimit { limit: 2 },
            Skip::NoCheaperType {
                rejected: BTreeMap::new(),
            },
            Skip::InvalidProtocolTag {
                tag: "t".into(),
                value: "v".into(),
            },
            Skip::SwapInDoubt { why: "w".into() },
            Skip::Leased {
                holder: "p.ab".into(),
                until: "2026-11-23T10:00:00Z".parse().unwrap(),
            },
            Skip::CloneNotReady {
                clone: "i-2".into(),
                ready_in_seconds: 3,
            },
        ];
        for s in &skips {
            assert_eq!(s.name(), serde_word(s, "reason"));
            assert_eq!(s.kind().name(), s.name());
        }
        assert_eq!(
            skips.last().unwrap().details(),
            [
                ("clone".to_string(), "\"i-2\"".to_string()),
                ("ready_in_seconds".to_string(), "3".to_string())
            ]
        );
        assert!(skips[0].details().is_empty());
        for r in [
            OrphanReason::TargetGone,
            OrphanReason::GroupNotOptedIn,
            OrphanReason::NotNeeded,
        ] {
            assert_eq!(r.name(), serde_word(&r, "reason"));
        }
    }
}
