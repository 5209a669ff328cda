//! The account's state and the AWS semantics the swap protocol depends on: instances and their
//! group membership, launch template versions, the simulated clock (a launched instance stays
//! pending until its boot delay has passed), scripted faults, call counts, and what Auto
//! Scaling does when a member leaves (it launches a replacement unless desired capacity was
//! decremented).
//!
//! Every change here costs O(its batch), never a scan of the account. This module must not
//! lock, sleep or await: the handles in the parent module hold the lock around one operation
//! and sleep its latency once the lock is released.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::cloud::CloudError;
use crate::cloud::activity::{self, Leaving};
use crate::model::{
    Ami, Group, Instance, InstancePlacement, InstanceState, InstanceTypeSpec, LaunchRef,
    LaunchSpec, Market, Member, OsPrices,
};
use crate::protocol as tags;

/// Where the clock starts: 2024-01-01T00:00:00Z.
const START_SECS: i64 = 1_704_067_200;

/// The time the clock starts at.
pub(super) fn start() -> DateTime<Utc> {
    DateTime::from_timestamp(START_SECS, 0).expect("a valid timestamp")
}

/// The whole account: the clock, latency, id counter, scripted faults and every region.
pub(super) struct State {
    pub(super) clock: Clock,
    pub(super) latency: Duration,
    pub(super) next_id: u64,
    pub(super) faults: HashMap<String, VecDeque<Option<CloudError>>>,
    pub(super) account_calls: BTreeMap<&'static str, u64>,
    pub(super) regions: BTreeMap<String, RegionState>,
    /// The fault-injection hooks' state (`chaos`).
    pub(super) chaos: super::chaos::Chaos,
}

impl Default for State {
    fn default() -> Self {
        State {
            clock: Clock {
                now: start(),
                boot_delay: TimeDelta::zero(),
            },
            latency: Duration::ZERO,
            next_id: 0,
            faults: HashMap::new(),
            account_calls: BTreeMap::new(),
            regions: BTreeMap::new(),
            chaos: Default::default(),
        }
    }
}

/// The simulated time, and how long a launched instance stays pending.
#[derive(Clone, Copy)]
pub(super) struct Clock {
    pub(super) now: DateTime<Utc>,
    pub(super) boot_delay: TimeDelta,
}

impl Clock {
    /// Whether an instance is running now: pending ones boot `boot_delay` after launch.
    pub(super) fn running(self, i: &Instance) -> bool {
        i.state == InstanceState::Running || self.booted(i)
    }

    fn booted(self, i: &Instance) -> bool {
        i.state == InstanceState::Pending && self.now >= i.launch_time + self.boot_delay
    }

    /// The instance as EC2 would describe it now.
    pub(super) fn observe(self, i: &Instance) -> Instance {
        let mut seen = i.clone();
        if self.booted(i) {
            seen.state = InstanceState::Running;
        }
        seen
    }
}

#[derive(Default)]
pub(super) struct RegionState {
    pub(super) azs: Vec<String>,
    pub(super) groups: BTreeMap<String, Group>,
    pub(super) instances: BTreeMap<String, Instance>,
    /// Ids of instances tagged `spotswap:group`, so `clones()` reads no other instance.
    pub(super) clones: BTreeSet<String>,
    /// When each terminated instance was terminated: EC2 lists a terminated instance for
    /// about an hour afterwards.
    pub(super) terminated_at: HashMap<String, DateTime<Utc>>,
    /// EC2's request token buckets, by operation, when the test sets them: a call that finds
    /// its bucket empty fails with `RequestLimitExceeded`, as EC2's does.
    pub(super) buckets: HashMap<&'static str, crate::pacing::Bucket>,
    /// Every operation without a bucket of its own gets its documented one on first use.
    pub(super) documented_buckets: bool,
    /// Latency of this region's calls, instead of the account's.
    pub(super) latency: Option<Duration>,
    /// Calls refused by those buckets, by operation.
    pub(super) throttled: BTreeMap<&'static str, u64>,
    /// Launches die at boot with this `StateReason` code (a clone that can never boot, such
    /// as one whose volumes use an unusable KMS key), when set.
    pub(super) boot_failure: Option<String>,
    /// Instance id -> group name, for every group member.
    pub(super) membership: HashMap<String, String>,
    /// When each member joined its group: its load balancers register it then.
    pub(super) joined: HashMap<String, DateTime<Utc>>,
    /// How long a registered instance stays `initial` before its load balancers call it
    /// `healthy` (zero: at once, as moto answers).
    pub(super) health_delay: TimeDelta,
    /// Instances their load balancers never call healthy (`unhealthy` once the delay is over).
    pub(super) never_healthy: HashSet<String>,
    pub(super) launch_configs: BTreeMap<String, LaunchSpec>,
    pub(super) templates: BTreeMap<String, Template>,
    pub(super) amis: BTreeMap<String, Ami>,
    /// `None`: the bundled catalog.
    pub(super) instance_types: Option<Arc<Vec<InstanceTypeSpec>>>,
    /// `None`: every type in every AZ.
    pub(super) offerings: Option<BTreeMap<String, BTreeSet<String>>>,
    /// (product description, type, AZ) -> time -> price.
    pub(super) spot_prices: BTreeMap<(String, String, String), BTreeMap<DateTime<Utc>, f64>>,
    pub(super) on_demand: BTreeMap<String, OsPrices>,
    /// (type, AZ) pools with no capacity.
    pub(super) unavailable: HashSet<(String, String)>,
    /// Types whose every launch is refused, with the error.
    pub(super) refused: HashMap<String, CloudError>,
    /// Operations IAM refuses (as a role, an SCP or a boundary would), by AWS operation name:
    /// the decoded authorization message EC2 would encode in its `UnauthorizedOperation`.
    pub(super) denied: HashMap<String, String>,
    /// RunInstances `ClientToken` -> the instance it launched.
    pub(super) client_tokens: HashMap<String, String>,
    /// CreateFleet `ClientToken` -> the instances (and types) it launched.
    pub(super) fleet_tokens: HashMap<String, Vec<(String, String)>>,
    pub(super) calls: BTreeMap<&'static str, u64>,
    /// Each group's scaling activities as Auto Scaling words them: (start, description, cause),
    /// oldest first.
    pub(super) activities: BTreeMap<String, Vec<(DateTime<Utc>, String, String)>>,
}

#[derive(Default)]
pub(super) struct Template {
    pub(super) name: Option<String>,
    pub(super) versions: BTreeMap<i64, LaunchSpec>,
    pub(super) default_version: i64,
    /// For a template spotswap created: the launch configuration in its tag.
    pub(super) launch_configuration: Option<String>,
    pub(super) created: DateTime<Utc>,
}

impl RegionState {
    /// Stores an instance, keeping the clone and membership indexes right.
    pub(super) fn insert(&mut self, mut instance: Instance) {
        let id = instance.instance_id.clone();
        if instance.auto_scaling_group.is_none() {
            instance.auto_scaling_group = self.membership.get(&id).cloned();
        }
        if instance.tags.contains_key(tags::GROUP) {
            self.clones.insert(id.clone());
        } else {
            self.clones.remove(&id);
        }
        self.instances.insert(id, instance);
    }

    /// The spec a launch reference names, `$Latest` and `$Default` resolved.
    pub(super) fn resolve(&self, launch: &LaunchRef) -> Option<LaunchSpec> {
        match launch {
            LaunchRef::LaunchConfiguration { name } => self.launch_configs.get(name).cloned(),
            LaunchRef::LaunchTemplate { id, name, version } => {
                let template = self.templates.get(id).or_else(|| {
                    let name = name.as_ref()?;
                    self.templates
                        .values()
                        .find(|t| t.name.as_ref() == Some(name))
                })?;
                let number = match version.as_str() {
                    "$Latest" => *template.versions.keys().next_back()?,
                    "$Default" => template.default_version,
                    n => n.parse().ok()?,
                };
                let mut spec = template.versions.get(&number)?.clone();
                spec.resolved_version = Some(number);
                Some(spec)
            }
        }
    }

    /// The group as Auto Scaling would describe it now: pending members that booted are in
    /// service.
    pub(super) fn observe_group(&self, group: &Group, clock: Clock) -> Group {
        let mut seen = group.clone();
        for m in &mut seen.members {
            if m.lifecycle_state == "Pending"
                && self
                    .instances
                    .get(&m.instance_id)
                    .is_some_and(|i| clock.running(i))
            {
                m.lifecycle_state = "InService".into();
            }
        }
        seen
    }

    /// Removes an instance from its group's members; returns the group.
    pub(super) fn remove_member(&mut self, id: &str) -> Option<String> {
        self.joined.remove(id);
        let group = self.membership.remove(id)?;
        if let Some(g) = self.groups.get_mut(&group) {
            g.members.retain(|m| m.instance_id != id);
        }
        Some(group)
    }

    pub(super) fn add_member(
        &mut self,
        group: &str,
        id: &str,
        lifecycle_state: &str,
        at: DateTime<Utc>,
    ) {
        self.joined.insert(id.to_string(), at);
        if let Some(g) = self.groups.get_mut(group) {
            g.members.push(Member {
                instance_id: id.to_string(),
                lifecycle_state: lifecycle_state.to_string(),
                health_status: "Healthy".into(),
                protected_from_scale_in: false,
            });
            self.membership.insert(id.to_string(), group.to_string());
        }
        if let Some(i) = self.instances.get_mut(id) {
            i.auto_scaling_group = Some(group.to_string());
        }
    }
}

/// The calls of a paginated listing of `items`, `page` items a call (a page size as sent to
/// AWS): at least one.
pub(super) fn pages(items: usize, page: i32) -> usize {
    let page = usize::try_from(page).expect("a positive page size");
    items.div_ceil(page).max(1)
}

/// One operation's view of the state: its region, the clock, the fault queues and the number
/// of AWS calls it made.
pub(super) struct Ctx<'a> {
    pub(super) clock: Clock,
    pub(super) next_id: &'a mut u64,
    pub(super) faults: &'a mut HashMap<String, VecDeque<Option<CloudError>>>,
    pub(super) region: &'a mut RegionState,
    pub(super) calls: u32,
}

impl Ctx<'_> {
    /// Counts one AWS call, failing it if a fault is queued for the operation.
    pub(super) fn call(&mut self, operation: &'static str) -> Result<(), CloudError> {
        self.calls += 1;
        *self.region.calls.entry(operation).or_default() += 1;
        if self.region.documented_buckets && !self.region.buckets.contains_key(operation) {
            let (size, refill) = crate::pacing::documented_bucket(operation);
            let bucket = crate::pacing::Bucket::full(size, refill, tokio::time::Instant::now());
            self.region.buckets.insert(operation, bucket);
        }
        if let Some(b) = self.region.buckets.get_mut(operation)
            && !b.try_take(tokio::time::Instant::now())
        {
            *self.region.throttled.entry(operation).or_default() += 1;
            return Err(CloudError::new(
                operation,
                crate::cloud::ErrorKind::Throttled,
                Some("RequestLimitExceeded"),
                "Request limit exceeded.",
            ));
        }
        pop_fault(self.faults, operation)
    }

    /// Counts the calls of a read by `ids` in batches: none for no ids.
    pub(super) fn batches(
        &mut self,
        operation: &'static str,
        ids: usize,
        batch: usize,
    ) -> Result<(), CloudError> {
        for _ in 0..ids.div_ceil(batch) {
            self.call(operation)?;
        }
        Ok(())
    }

    /// A fresh instance id: `i-` and 17 hex digits from a counter shared by every region.
    pub(super) fn new_id(&mut self) -> String {
        loop {
            *self.next_id += 1;
            let id = format!("i-{:017x}", *self.next_id);
            if !self.region.instances.contains_key(&id) {
                return id;
            }
        }
    }

    /// Launches a running (or, with a boot delay, pending) on-demand member of a group.
    pub(super) fn launch_member(
        &mut self,
        group: &str,
        instance_type: &str,
        az: &str,
        like: Option<&Instance>,
    ) -> String {
        let Some(g) = self.region.groups.get(group) else {
            panic!("group {group} does not exist");
        };
        let spec = g.launch.as_ref().and_then(|l| self.region.resolve(l));
        let tags = g
            .tags
            .iter()
            .filter(|(k, _)| g.propagated_tag_keys.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // Auto Scaling puts its instances in the group's placement group, with the spec's tenancy.
        let placement = InstancePlacement::of(
            g.placement_group.as_deref(),
            spec.as_ref().and_then(|s| s.tenancy.as_deref()),
        );
        let instance = Instance {
            instance_id: self.new_id(),
            instance_type: instance_type.to_string(),
            availability_zone: az.to_string(),
            subnet_id: like.and_then(|i| i.subnet_id.clone()),
            market: Market::OnDemand,
            state: InstanceState::Pending,
            state_reason: None,
            launch_time: self.clock.now,
            image_id: spec
                .map(|s| s.image_id)
                .or_else(|| like.and_then(|i| i.image_id.clone())),
            auto_scaling_group: Some(group.to_string()),
            tags,
            placement,
        };
        let id = instance.instance_id.clone();
        self.region.insert(instance);
        self.region
            .add_member(group, &id, "Pending", self.clock.now);
        id
    }

    /// Auto Scaling replacing a member that left without a decrement: a new on-demand member
    /// of the group's launch spec type (or the old type) in the same AZ.
    pub(super) fn replace(&mut self, group: &str, gone: &Instance) {
        let Some(g) = self.region.groups.get(group) else {
            return;
        };
        let instance_type = g
            .launch
            .as_ref()
            .and_then(|l| self.region.resolve(l))
            .and_then(|s| s.instance_type)
            .unwrap_or_else(|| gone.instance_type.clone());
        self.launch_member(group, &instance_type, &gone.availability_zone, Some(gone));
    }

    /// Records a scaling activity of `group`, as `DescribeScalingActivities` lists it.
    pub(super) fn activity(&mut self, group: &str, description: String, cause: String) {
        self.region
            .activities
            .entry(group.to_string())
            .or_default()
            .push((self.clock.now, description, cause));
    }

    /// Terminates an instance for `reason` (EC2's `StateReason` code); a group member leaves
    /// its group (for `why`, in its scaling activities), which replaces it if `replace`.
    pub(super) fn terminate(&mut self, id: &str, replace: bool, reason: &str, why: Leaving) {
        let Some(i) = self.region.instances.get_mut(id) else {
            return;
        };
        if i.state == InstanceState::Terminated {
            return;
        }
        i.state = InstanceState::Terminated;
        i.state_reason = Some(reason.to_string());
        self.region
            .terminated_at
            .insert(id.to_string(), self.clock.now);
        let gone = i.clone();
        let group = self.region.remove_member(id);
        if let Some(group) = &group {
            let desired = self
                .region
                .groups
                .get(group)
                .map_or(0, |g| g.desired_capacity);
            let cause = activity::cause(id, why, self.clock.now, desired + 1, desired);
            self.activity(group, format!("{}{id}", activity::TERMINATING), cause);
        }
        if let Some(group) = group
            && replace
        {
            self.replace(&group, &gone);
        }
    }
}

pub(super) fn pop_fault(
    faults: &mut HashMap<String, VecDeque<Option<CloudError>>>,
    operation: &str,
) -> Result<(), CloudError> {
    // `None` in the queue is a call let through before the faults behind it.
    match faults.get_mut(operation).and_then(VecDeque::pop_front) {
        Some(Some(e)) => Err(e),
        Some(None) | None => Ok(()),
    }
}
