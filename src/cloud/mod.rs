//! The cloud boundary: what a pass reads from and writes to AWS, in domain terms.
//!
//! Two narrow traits, one region each: [`Inventory`] (the read side, batched calls only) and
//! [`Actuator`] (the write side, one method per kind of change). The AWS SDK implementation
//! lives in [`aws`], the only module of the crate that touches the SDK; `memory` (only with
//! the `test-util` feature) is an in-memory fake for fast component tests that can script
//! faults and count calls; both ask for the page and batch sizes of [`limits`], so their call
//! counts agree. Errors are classified by AWS error code into a small set of kinds, never by
//! message text; scaling activities, which Auto Scaling states only in words, are read by
//! [`activity`] for both. Nothing here decides anything: deciding is the planner's job.

pub mod activity;
pub mod aws;
pub mod limits;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::model::{
    Activity, AllocationStrategy, Ami, Group, Instance, InstanceTypeSpec, LaunchRef, LaunchSpec,
    LoadBalancer, Market, Os, OsPrices, OwnedTemplateRecord, SpotPricePoint, TargetHealth,
};
use crate::settings::{FilterMode, Settings};

/// What kind of failure an AWS call met, decided by its error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// Rate exceeded: retried with backoff by the SDK, reported if it persists.
    Throttled,
    /// No capacity for this type in this AZ: try the next candidate, and avoid the pool.
    CapacityUnavailable,
    /// The account's instance or vCPU quota in the region is used up: no launch of that
    /// market can succeed there until instances go or the quota is raised.
    LimitExceeded,
    /// The subnet has no free IP address: no launch into it can succeed.
    SubnetFull,
    /// The resource is gone (an instance terminated meanwhile, a deleted group).
    NotFound,
    /// Credentials missing or not allowed to make the call.
    Unauthorized,
    /// The request itself is wrong (a bad parameter, a group size conflict).
    InvalidRequest,
    /// Anything else: network failures, service errors.
    Other,
}

/// A failed call: the operation, its classified kind, the AWS error code and message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct CloudError {
    pub operation: String,
    pub kind: ErrorKind,
    pub code: Option<String>,
    pub message: String,
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.code {
            Some(code) => write!(f, "{} failed: {code}: {}", self.operation, self.message),
            None => write!(f, "{} failed: {}", self.operation, self.message),
        }
    }
}

impl CloudError {
    /// The failure as a read that concerns one group: it leaves that group alone.
    pub fn as_read_failure(&self) -> crate::model::ReadFailure {
        crate::model::ReadFailure {
            operation: self.operation.clone(),
            code: self.code.clone(),
            message: self.message.clone(),
        }
    }

    /// An error of a known kind, for fakes and for conditions found outside a call.
    pub fn new(operation: &str, kind: ErrorKind, code: Option<&str>, message: &str) -> Self {
        CloudError {
            operation: operation.to_string(),
            kind,
            code: code.map(str::to_string),
            message: message.to_string(),
        }
    }
}

/// The kind of an AWS error code. One code per line, each with why it belongs where it is
/// (the sets start from Karpenter's `pkg/errors/errors.go` and the EC2 API error reference).
pub fn classify(code: &str) -> ErrorKind {
    match code {
        // EC2 "RequestLimitExceeded", Auto Scaling and Pricing "Throttling"/"ThrottlingException".
        "RequestLimitExceeded"
        | "Throttling"
        | "ThrottlingException"
        | "TooManyRequestsException"
        | "SlowDown"
        | "RequestThrottled"
        | "RequestThrottledException" => ErrorKind::Throttled,
        // Capacity: the pool has no room at this price, or does not offer the type; another
        // type or AZ may still work (EC2 API reference, "Error codes").
        "InsufficientInstanceCapacity"
        | "InsufficientHostCapacity"
        | "InsufficientReservedInstanceCapacity"
        | "InsufficientCapacity"
        | "SpotMaxPriceTooLow"
        | "UnfulfillableCapacity"
        | "Unsupported" => ErrorKind::CapacityUnavailable,
        // The account's quota in the region (spot instance count, vCPUs per market): every
        // other type and AZ meets the same wall.
        "MaxSpotInstanceCountExceeded" | "VcpuLimitExceeded" | "InstanceLimitExceeded" => {
            ErrorKind::LimitExceeded
        }
        // The subnet is out of addresses: every type meets it there.
        "InsufficientFreeAddressesInSubnet" => ErrorKind::SubnetFull,
        // Gone.
        "InvalidInstanceID.NotFound"
        | "InvalidInstanceID.Malformed"
        | "InvalidAMIID.NotFound"
        | "InvalidLaunchTemplateId.NotFound"
        | "InvalidLaunchTemplateName.NotFoundException"
        | "InvalidLaunchTemplateId.VersionNotFound"
        | "InvalidSubnetID.NotFound"
        | "InvalidGroup.NotFound"
        | "ResourceNotFoundException"
        | "NotFoundException" => ErrorKind::NotFound,
        // Credentials.
        "UnauthorizedOperation"
        | "AccessDenied"
        | "AccessDeniedException"
        | "AuthFailure"
        | "InvalidClientTokenId"
        | "UnrecognizedClientException"
        | "ExpiredToken"
        | "ExpiredTokenException"
        | "SignatureDoesNotMatch"
        | "OptInRequired" => ErrorKind::Unauthorized,
        // The request is wrong as sent (Auto Scaling reports size conflicts, e.g. an attach
        // past MaxSize, as ValidationError).
        "ValidationError"
        | "InvalidParameterValue"
        | "InvalidParameterCombination"
        | "InvalidParameter"
        | "MissingParameter"
        | "InvalidRequest"
        | "ResourceInUse"
        | "ScalingActivityInProgress"
        | "InvalidNextToken" => ErrorKind::InvalidRequest,
        _ => ErrorKind::Other,
    }
}

/// Which groups to list. Opt-in mode can filter on the server side by tag; opt-out mode must
/// see every group. The planner checks selection again either way.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupQuery {
    /// `(key, exact value)` pairs to filter on server-side (`tag:KEY`).
    pub tag_values: Vec<(String, String)>,
    /// Keys whose value is a glob: only the key's presence is filtered server-side (`tag-key`).
    pub tag_keys: Vec<String>,
    /// Only these groups, by name (`AutoScalingGroupNames`); empty means any.
    pub names: Vec<String>,
}

impl GroupQuery {
    /// One group, by name, whatever its tags.
    pub fn named(name: &str) -> GroupQuery {
        GroupQuery {
            names: vec![name.to_string()],
            ..GroupQuery::default()
        }
    }

    /// The query for the settings: exact tag values are filtered by Auto Scaling, glob values
    /// only by key (the planner matches the glob); opt-out mode must list every group.
    pub fn for_settings(settings: &Settings) -> GroupQuery {
        let mut q = GroupQuery::default();
        if settings.tag_filtering_mode == FilterMode::OptOut {
            return q;
        }
        for f in &settings.tag_filters {
            if f.value.contains(['*', '?']) {
                q.tag_keys.push(f.key.clone());
            } else {
                q.tag_values.push((f.key.clone(), f.value.clone()));
            }
        }
        q
    }
}

/// The read side of one region. Every method is one batched, paginated AWS read.
pub trait Inventory: Send + Sync {
    /// The region this inventory reads.
    fn region(&self) -> &str;

    /// Auto Scaling groups, with their members (`DescribeAutoScalingGroups`). Whether an
    /// instance refresh is under way is not read here: see [`Inventory::refreshes`].
    fn groups(
        &self,
        query: &GroupQuery,
    ) -> impl Future<Output = Result<Vec<Group>, CloudError>> + Send;

    /// Whether an instance refresh is under way, for each group named
    /// (`DescribeInstanceRefreshes`, one call per group: Auto Scaling has no batched form, so
    /// a pass asks only for the groups it is about to change). One group's failed read is that
    /// group's answer, never the others'.
    fn refreshes(
        &self,
        groups: &[String],
    ) -> impl Future<Output = BTreeMap<String, Result<bool, CloudError>>> + Send;

    /// Instances by id, in batches (`DescribeInstances`). Unknown ids are left out.
    fn instances(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<Vec<Instance>, CloudError>> + Send;

    /// Every instance carrying the `spotswap:group` tag (`DescribeInstances`, tag filter), in
    /// any state: terminated ones too, for as long as EC2 lists them (about an hour).
    fn clones(&self) -> impl Future<Output = Result<Vec<Instance>, CloudError>> + Send;

    /// The groups instances belong to (`DescribeAutoScalingInstances`); absent ids belong to
    /// no group.
    fn group_membership(
        &self,
        ids: &[String],
    ) -> impl Future<Output = Result<BTreeMap<String, String>, CloudError>> + Send;

    /// The value of tag `key` on each named group that has it (`DescribeTags`, filtered by
    /// group names and key): a fresh read of one tag, made after the plan.
    fn group_tags(
        &self,
        groups: &[String],
        key: &str,
    ) -> impl Future<Output = Result<BTreeMap<String, String>, CloudError>> + Send;

    /// Launch configurations and launch template versions (`$Latest` and `$Default`
    /// resolved), keyed by [`LaunchRef::key`]. References that do not exist are left out.
    /// Templates named by `$Latest` or `$Default` are read for the whole region at once
    /// (`DescribeLaunchTemplateVersions` without a template id answers both versions of every
    /// template); only numbered versions that answer does not hold take a call per template.
    fn launch_specs(
        &self,
        refs: &[LaunchRef],
    ) -> impl Future<Output = Result<BTreeMap<String, LaunchSpec>, CloudError>> + Send;

    /// AMIs by id (`DescribeImages`). Deregistered ones are left out.
    fn images(&self, ids: &[String]) -> impl Future<Output = Result<Vec<Ami>, CloudError>> + Send;

    /// Every instance type of the region (`DescribeInstanceTypes`).
    fn instance_types(
        &self,
    ) -> impl Future<Output = Result<Vec<InstanceTypeSpec>, CloudError>> + Send;

    /// Instance types offered per availability zone (`DescribeInstanceTypeOfferings`).
    fn offerings(
        &self,
    ) -> impl Future<Output = Result<BTreeMap<String, BTreeSet<String>>, CloudError>> + Send;

    /// Spot price history from `start` to `end` for the given product descriptions
    /// (`DescribeSpotPriceHistory`), including the price in effect at `start`: EC2 promises
    /// that price only for a closed window, a start and an end time both given (EC2 API
    /// reference, DescribeSpotPriceHistory, `StartTime`).
    fn spot_prices(
        &self,
        products: &[String],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<SpotPricePoint>, CloudError>> + Send;

    /// On-demand prices of this region for the given operating systems (Pricing
    /// `GetProducts`, one paginated query per OS).
    fn on_demand_prices(
        &self,
        oses: &[Os],
    ) -> impl Future<Output = Result<BTreeMap<String, OsPrices>, CloudError>> + Send;

    /// A group's scaling activities that started at `since` or later, newest first
    /// (`DescribeScalingActivities`, paged until older than `since`), as [`activity::read`]
    /// reads them; activities it does not recognise are left out.
    fn activities(
        &self,
        group: &str,
        since: DateTime<Utc>,
    ) -> impl Future<Output = Result<Vec<Activity>, CloudError>> + Send;

    /// How each load balancer sees the instances named for it: `DescribeTargetHealth` for a
    /// target group, `DescribeInstanceHealth` for a classic load balancer, one call each with
    /// those instances only. A classic load balancer's `InService` is `healthy`.
    fn target_health(
        &self,
        asks: &BTreeMap<LoadBalancer, Vec<String>>,
    ) -> impl Future<Output = Result<BTreeMap<String, Vec<TargetHealth>>, CloudError>> + Send;

    /// The launch templates spotswap created for launch configurations
    /// (`DescribeLaunchTemplates`, by the tag key `spotswap:launch-configuration`).
    fn owned_templates(
        &self,
    ) -> impl Future<Output = Result<Vec<OwnedTemplateRecord>, CloudError>> + Send;

    /// Calls made so far, by operation name.
    fn call_counts(&self) -> BTreeMap<String, u64>;
}

/// Puts the answers of [`Inventory::refreshes`] on their groups: a refresh under way, or the
/// failed read (which leaves the group alone). Returns whether any group changed.
pub fn apply_refreshes(
    groups: &mut [Group],
    answers: &BTreeMap<String, Result<bool, CloudError>>,
) -> bool {
    let mut changed = false;
    for g in groups {
        match answers.get(&g.name) {
            Some(Ok(true)) => g.instance_refresh_in_progress = true,
            Some(Err(e)) => g.read_failures.push(e.as_read_failure()),
            Some(Ok(false)) | None => continue,
        }
        changed = true;
    }
    changed
}

/// Everything needed to launch one spot clone of one type.
#[derive(Debug, Clone, PartialEq)]
pub struct CloneLaunch {
    pub group: String,
    pub replaces: String,
    pub instance_type: String,
    pub availability_zone: String,
    pub subnet_id: Option<String>,
    /// Where the parameters come from: a launch template version is launched by reference
    /// (so everything in it is kept, its network interfaces restated with the clone's subnet
    /// on them); a launch configuration's content is copied.
    pub launch: LaunchRef,
    pub spec: LaunchSpec,
    /// The group's placement group: the clone goes in it, as the group's own instances do.
    pub placement_group: Option<String>,
    /// Spot for a clone; on-demand for an instance that restores a group's on-demand floor.
    pub market: Market,
    /// The spot max price, USD per hour (unused on-demand).
    pub max_price: f64,
    /// Every tag of the clone, the protocol's included; applied in the launch call itself.
    pub tags: BTreeMap<String, String>,
    /// Makes a retried launch idempotent (`ClientToken`).
    pub client_token: String,
}

/// The launch template a fleet launches from: the group's own version, or the template
/// spotswap keeps for a launch configuration (EC2 Fleet takes nothing else).
#[derive(Debug, Clone, PartialEq)]
pub enum FleetTemplate {
    Id(String),
    Name(String),
}

/// Everything needed to launch a batch of one group's spot clones in one AZ with one
/// `CreateFleet` (type `instant`): every candidate type is offered in every subnet, and EC2
/// picks by `strategy`.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetLaunch {
    pub group: String,
    pub availability_zone: String,
    /// The subnets of the batch's instances; none means the AZ alone.
    pub subnets: Vec<String>,
    /// How many clones.
    pub count: u32,
    /// Candidate types in spotswap's rank order (their priorities, highest first).
    pub types: Vec<String>,
    pub strategy: AllocationStrategy,
    pub template: FleetTemplate,
    /// A version number, never `$Latest`: the version the plan was made from.
    pub version: String,
    /// The spot max price, USD per hour.
    pub max_price: f64,
    /// The template configures hibernation: interrupted clones must hibernate.
    pub hibernate: bool,
    /// The group's placement group: every override puts its clones in it.
    pub placement_group: Option<String>,
    /// Every tag of the clones; applied in the launch call itself.
    pub tags: BTreeMap<String, String>,
    /// Makes a retried launch idempotent (`ClientToken`).
    pub client_token: String,
}

/// What one fleet launched, and what each override that launched nothing answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FleetResult {
    /// Instance id and type of each clone launched.
    pub launched: Vec<(String, String)>,
    /// Per-override errors: the type they concern, if EC2 says, and the error.
    pub errors: Vec<(Option<String>, CloudError)>,
}

/// A launch template spotswap creates from a launch configuration, so the configuration's
/// groups can launch through EC2 Fleet. Named after the configuration and tagged with it, so
/// it is found again and removed once no group uses the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedTemplate {
    pub name: String,
    pub launch_configuration: String,
    pub spec: LaunchSpec,
}

/// A write sent with `DryRun=true`, shaped exactly as a pass sends it: how the preflight asks
/// EC2 whether the caller may make it (EC2 API reference, "DryRun": `DryRunOperation` if
/// allowed, `UnauthorizedOperation` if not). Auto Scaling has no `DryRun`.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// A one-clone `CreateFleet`.
    Fleet(FleetLaunch),
    /// A clone's `RunInstances`.
    Clone(Box<CloneLaunch>),
    /// The `CreateLaunchTemplate` of a launch configuration's template.
    Template(Box<OwnedTemplate>),
    /// `CreateTags` pairing a clone.
    TagInstance {
        instance: String,
        tags: BTreeMap<String, String>,
    },
    /// `TerminateInstances` of a clone.
    Terminate { instance: String },
}

impl Probe {
    /// The AWS operation the probe sends.
    pub fn operation(&self) -> &'static str {
        match self {
            Probe::Fleet(_) => "CreateFleet",
            Probe::Clone(_) => "RunInstances",
            Probe::Template(_) => "CreateLaunchTemplate",
            Probe::TagInstance { .. } => "CreateTags",
            Probe::Terminate { .. } => "TerminateInstances",
        }
    }
}

/// What EC2 answered a [`Probe`].
#[derive(Debug, Clone, PartialEq)]
pub enum DryRunAnswer {
    /// `DryRunOperation`: the request would have been allowed.
    Allowed,
    /// `UnauthorizedOperation`: refused, with the encoded authorization message EC2 returns
    /// (decoded by [`Actuator::decode_authorization`]), if it gave one.
    Refused {
        encoded: Option<String>,
        message: String,
    },
    /// Any other answer: the probe says nothing about permissions (a missing resource, an
    /// endpoint without the call, a timeout).
    Failed(CloudError),
}

/// The write side of one region.
pub trait Actuator: Send + Sync {
    /// The region's request buckets for this pass, which every call of the handle waits on:
    /// a pass asks it when a launch could go, and defers one that could only go after its
    /// deadline.
    fn pacer(&self) -> &crate::pacing::Pacer;

    /// Launches a batch of spot clones with one `CreateFleet` of type `instant`.
    fn launch_fleet(
        &self,
        fleet: &FleetLaunch,
    ) -> impl Future<Output = Result<FleetResult, CloudError>> + Send;

    /// Creates spotswap's launch template for a launch configuration, unless it exists
    /// (`CreateLaunchTemplate`; an existing name is success: configurations never change).
    fn ensure_template(
        &self,
        template: &OwnedTemplate,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Deletes a launch template spotswap created (`DeleteLaunchTemplate`).
    fn delete_template(
        &self,
        template_id: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Sets tags on an instance (`CreateTags`): how a clone is paired with the on-demand
    /// instance it replaces, just before it is attached.
    fn tag_instance(
        &self,
        instance: &str,
        tags: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Launches one spot instance (`RunInstances`) and returns its id.
    fn launch_clone(
        &self,
        launch: &CloneLaunch,
    ) -> impl Future<Output = Result<String, CloudError>> + Send;

    /// Attaches an instance to a group (`AttachInstances`); desired capacity grows by one.
    fn attach(
        &self,
        group: &str,
        instance: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Terminates a group member through the group (`TerminateInstanceInAutoScalingGroup`),
    /// so lifecycle hooks run.
    fn terminate_in_group(
        &self,
        instance: &str,
        decrement_desired: bool,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Detaches a member from its group (`DetachInstances`); without decrementing, the group
    /// launches a replacement at once while the instance keeps running.
    fn detach(
        &self,
        group: &str,
        instance: &str,
        decrement_desired: bool,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Terminates instances outside any group (`TerminateInstances`).
    fn terminate(
        &self,
        instances: &[String],
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Sets a group's MaxSize (`UpdateAutoScalingGroup`).
    fn set_max_size(
        &self,
        group: &str,
        max_size: u32,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Sets a tag on a group, not propagated (`CreateOrUpdateTags`).
    fn tag_group(
        &self,
        group: &str,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Sets tag `key` on each group to its value, not propagated (`CreateOrUpdateTags`, many
    /// groups a call). A failed call fails the whole batch.
    fn tag_groups(
        &self,
        key: &str,
        values: &BTreeMap<String, String>,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Removes a tag from a group (`DeleteTags`).
    fn untag_group(
        &self,
        group: &str,
        key: &str,
    ) -> impl Future<Output = Result<(), CloudError>> + Send;

    /// Sends a write with `DryRun=true`: nothing changes, and the answer says whether the
    /// caller may make it.
    fn dry_run(&self, probe: &Probe) -> impl Future<Output = DryRunAnswer> + Send;

    /// The JSON document behind an encoded authorization failure message
    /// (`sts:DecodeAuthorizationMessage`): the action, resource and whether an explicit deny
    /// refused it.
    fn decode_authorization(
        &self,
        encoded: &str,
    ) -> impl Future<Output = Result<String, CloudError>> + Send;
}

/// An account: its enabled regions, and a handle on each.
pub trait Account: Send + Sync {
    /// The per-region handle.
    type Region: Inventory + Actuator;

    /// The regions enabled for the account (`DescribeRegions`, opted-in or not required).
    fn regions(&self) -> impl Future<Output = Result<Vec<String>, CloudError>> + Send;

    /// A handle on one region.
    fn region(&self, name: &str) -> Self::Region;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_filters_go_to_the_server_and_globs_by_key_only() {
        let s = Settings::from_pairs([("tag-filters", "spot-enabled=true,team=web*")]).unwrap();
        let q = GroupQuery::for_settings(&s);
        assert_eq!(q.tag_values, vec![("spot-enabled".into(), "true".into())]);
        assert_eq!(q.tag_keys, vec!["team".to_string()]);
        let s = Settings::from_pairs([("tag-filtering-mode", "opt-out")]).unwrap();
        assert_eq!(GroupQuery::for_settings(&s), GroupQuery::default());
    }

    #[test]
    fn error_codes_map_to_their_kinds() {
        let cases = [
            ("RequestLimitExceeded", ErrorKind::Throttled),
            ("Throttling", ErrorKind::Throttled),
            (
                "InsufficientInstanceCapacity",
                ErrorKind::CapacityUnavailable,
            ),
            ("MaxSpotInstanceCountExceeded", ErrorKind::LimitExceeded),
            ("VcpuLimitExceeded", ErrorKind::LimitExceeded),
            ("InsufficientFreeAddressesInSubnet", ErrorKind::SubnetFull),
            ("SpotMaxPriceTooLow", ErrorKind::CapacityUnavailable),
            ("InvalidInstanceID.NotFound", ErrorKind::NotFound),
            ("UnauthorizedOperation", ErrorKind::Unauthorized),
            ("AccessDenied", ErrorKind::Unauthorized),
            ("ValidationError", ErrorKind::InvalidRequest),
            ("InternalError", ErrorKind::Other),
        ];
        for (code, kind) in cases {
            assert_eq!(classify(code), kind, "{code}");
        }
    }
}
