//! An in-memory AWS account for fast component tests: [`MemoryCloud`] stands in for EC2, Auto
//! Scaling and Pricing behind the same [`Account`], [`Inventory`] and [`Actuator`] traits the
//! real adapter implements, so a pass's real code (observe, plan, execute) can run over it.
//!
//! Tests seed it (regions, groups, instances, launch specs, AMIs, types, prices), drive its
//! clock, script faults per AWS operation name, add latency and read call counts. Its semantics
//! mirror what the swap protocol depends on in real AWS (DESIGN.md sections 3 and 9): tags set
//! at launch, AttachInstances failing past MaxSize, a group replacing a member terminated
//! without decrement. Every operation costs O(its batch), never a scan of the account, and the
//! lock is never held across an await, so it can carry the 200,000-instance benchmark of
//! section 11. It must not touch the network, the real clock or the environment, and the
//! binaries never use it.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use super::limits::{
    GROUP_PAGE, IMAGE_BATCH, INSTANCE_ID_BATCH, INSTANCE_PAGE, LAUNCH_CONFIG_BATCH,
    MEMBERSHIP_BATCH, OFFERING_PAGE, PRODUCT_PAGE, SPOT_PRICE_PAGE, TERMINATE_BATCH, TYPE_PAGE,
};
use super::{Account, Actuator, CloneLaunch, CloudError, ErrorKind, GroupQuery, Inventory};
use crate::catalog::Catalog;
use crate::model::{
    Ami, Group, Instance, InstanceState, InstanceTypeSpec, LaunchRef, LaunchSpec, Market, Member,
    Os, OsPrices, SpotPricePoint, tags,
};

/// Where the clock starts: 2024-01-01T00:00:00Z.
const START_SECS: i64 = 1_704_067_200;

/// An in-memory AWS account. Clones share one state.
#[derive(Clone, Default)]
pub struct MemoryCloud {
    state: Arc<Mutex<State>>,
}

/// One region of a [`MemoryCloud`], implementing [`Inventory`] and [`Actuator`].
#[derive(Clone)]
pub struct MemoryRegion {
    cloud: MemoryCloud,
    name: String,
    /// The region's call counts when this handle was made: a handle reports its own calls,
    /// as the AWS adapter's per-pass handles do.
    baseline: BTreeMap<&'static str, u64>,
}

struct State {
    clock: Clock,
    latency: Duration,
    next_id: u64,
    faults: HashMap<String, VecDeque<CloudError>>,
    account_calls: BTreeMap<&'static str, u64>,
    regions: BTreeMap<String, RegionState>,
}

impl Default for State {
    fn default() -> Self {
        State {
            clock: Clock {
                now: DateTime::from_timestamp(START_SECS, 0).expect("a valid timestamp"),
                boot_delay: TimeDelta::zero(),
            },
            latency: Duration::ZERO,
            next_id: 0,
            faults: HashMap::new(),
            account_calls: BTreeMap::new(),
            regions: BTreeMap::new(),
        }
    }
}

/// The simulated time, and how long a launched instance stays pending.
#[derive(Clone, Copy)]
struct Clock {
    now: DateTime<Utc>,
    boot_delay: TimeDelta,
}

impl Clock {
    /// Whether an instance is running now: pending ones boot `boot_delay` after launch.
    fn running(self, i: &Instance) -> bool {
        i.state == InstanceState::Running || self.booted(i)
    }

    fn booted(self, i: &Instance) -> bool {
        i.state == InstanceState::Pending && self.now >= i.launch_time + self.boot_delay
    }

    /// The instance as EC2 would describe it now.
    fn observe(self, i: &Instance) -> Instance {
        let mut seen = i.clone();
        if self.booted(i) {
            seen.state = InstanceState::Running;
        }
        seen
    }
}

#[derive(Default)]
struct RegionState {
    azs: Vec<String>,
    groups: BTreeMap<String, Group>,
    instances: BTreeMap<String, Instance>,
    /// Ids of instances tagged `spotswap:group`, so `clones()` reads no other instance.
    clones: BTreeSet<String>,
    /// Instance id -> group name, for every group member.
    membership: HashMap<String, String>,
    launch_configs: BTreeMap<String, LaunchSpec>,
    templates: BTreeMap<String, Template>,
    amis: BTreeMap<String, Ami>,
    /// `None`: the bundled catalog.
    instance_types: Option<Arc<Vec<InstanceTypeSpec>>>,
    /// `None`: every type in every AZ.
    offerings: Option<BTreeMap<String, BTreeSet<String>>>,
    /// (product description, type, AZ) -> time -> price.
    spot_prices: BTreeMap<(String, String, String), BTreeMap<DateTime<Utc>, f64>>,
    on_demand: BTreeMap<String, OsPrices>,
    /// (type, AZ) pools with no capacity.
    unavailable: HashSet<(String, String)>,
    /// RunInstances `ClientToken` -> the instance it launched.
    client_tokens: HashMap<String, String>,
    calls: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
struct Template {
    name: Option<String>,
    versions: BTreeMap<i64, LaunchSpec>,
    default_version: i64,
}

impl RegionState {
    /// Stores an instance, keeping the clone and membership indexes right.
    fn insert(&mut self, mut instance: Instance) {
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
    fn resolve(&self, launch: &LaunchRef) -> Option<LaunchSpec> {
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
    fn observe_group(&self, group: &Group, clock: Clock) -> Group {
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
    fn remove_member(&mut self, id: &str) -> Option<String> {
        let group = self.membership.remove(id)?;
        if let Some(g) = self.groups.get_mut(&group) {
            g.members.retain(|m| m.instance_id != id);
        }
        Some(group)
    }

    fn add_member(&mut self, group: &str, id: &str, lifecycle_state: &str) {
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

/// One operation's view of the state: its region, the clock, the fault queues and the number
/// of AWS calls it made.
struct Ctx<'a> {
    clock: Clock,
    next_id: &'a mut u64,
    faults: &'a mut HashMap<String, VecDeque<CloudError>>,
    region: &'a mut RegionState,
    calls: u32,
}

impl Ctx<'_> {
    /// Counts one AWS call, failing it if a fault is queued for the operation.
    fn call(&mut self, operation: &'static str) -> Result<(), CloudError> {
        self.calls += 1;
        *self.region.calls.entry(operation).or_default() += 1;
        pop_fault(self.faults, operation)
    }

    /// Counts the calls of a paginated listing of `items`, `page` items a call (a page size
    /// as sent to AWS): at least one.
    fn pages(
        &mut self,
        operation: &'static str,
        items: usize,
        page: i32,
    ) -> Result<(), CloudError> {
        let page = usize::try_from(page).expect("a positive page size");
        for _ in 0..items.div_ceil(page).max(1) {
            self.call(operation)?;
        }
        Ok(())
    }

    /// Counts the calls of a read by `ids` in batches: none for no ids.
    fn batches(
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
    fn new_id(&mut self) -> String {
        loop {
            *self.next_id += 1;
            let id = format!("i-{:017x}", *self.next_id);
            if !self.region.instances.contains_key(&id) {
                return id;
            }
        }
    }

    /// Launches a running (or, with a boot delay, pending) on-demand member of a group.
    fn launch_member(
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
        let instance = Instance {
            instance_id: self.new_id(),
            instance_type: instance_type.to_string(),
            availability_zone: az.to_string(),
            subnet_id: like.and_then(|i| i.subnet_id.clone()),
            market: Market::OnDemand,
            state: InstanceState::Pending,
            launch_time: self.clock.now,
            image_id: spec
                .map(|s| s.image_id)
                .or_else(|| like.and_then(|i| i.image_id.clone())),
            auto_scaling_group: Some(group.to_string()),
            tags,
        };
        let id = instance.instance_id.clone();
        self.region.insert(instance);
        self.region.add_member(group, &id, "Pending");
        id
    }

    /// Auto Scaling replacing a member that left without a decrement: a new on-demand member
    /// of the group's launch spec type (or the old type) in the same AZ.
    fn replace(&mut self, group: &str, gone: &Instance) {
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

    /// Terminates an instance; a group member leaves its group, which replaces it if `replace`.
    fn terminate(&mut self, id: &str, replace: bool) {
        let Some(i) = self.region.instances.get_mut(id) else {
            return;
        };
        if i.state == InstanceState::Terminated {
            return;
        }
        i.state = InstanceState::Terminated;
        let gone = i.clone();
        let group = self.region.remove_member(id);
        if let Some(group) = group
            && replace
        {
            self.replace(&group, &gone);
        }
    }
}

fn pop_fault(
    faults: &mut HashMap<String, VecDeque<CloudError>>,
    operation: &str,
) -> Result<(), CloudError> {
    match faults.get_mut(operation).and_then(VecDeque::pop_front) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// An Auto Scaling `ValidationError`, as AWS reports size conflicts and unknown groups.
fn validation(operation: &str, message: &str) -> CloudError {
    CloudError::new(
        operation,
        ErrorKind::InvalidRequest,
        Some("ValidationError"),
        message,
    )
}

fn group_not_found(operation: &str, group: &str) -> CloudError {
    validation(
        operation,
        &format!("AutoScalingGroup name not found - {group}"),
    )
}

fn set_price(prices: &mut OsPrices, os: Os, price: Option<f64>) {
    let slot = match os {
        Os::Linux => &mut prices.linux,
        Os::Windows => &mut prices.windows,
        Os::Rhel => &mut prices.rhel,
        Os::Suse => &mut prices.suse,
    };
    *slot = price;
}

/// The bundled catalog as a list, cloned once for every cloud.
fn bundled_types() -> Arc<Vec<InstanceTypeSpec>> {
    static TYPES: OnceLock<Arc<Vec<InstanceTypeSpec>>> = OnceLock::new();
    TYPES
        .get_or_init(|| Arc::new(Catalog::bundled().iter().cloned().collect()))
        .clone()
}

impl MemoryCloud {
    /// An empty account: no regions, the clock at 2024-01-01T00:00:00Z, no boot delay, no
    /// latency.
    pub fn new() -> Self {
        MemoryCloud::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on a region for the test-facing API, counting no calls.
    ///
    /// # Panics
    /// If the region was not added, so a misspelt name cannot pass silently.
    fn with_region<T>(&self, region: &str, f: impl FnOnce(&mut Ctx<'_>) -> T) -> T {
        let mut state = self.lock();
        let State {
            clock,
            next_id,
            faults,
            regions,
            ..
        } = &mut *state;
        let Some(region_state) = regions.get_mut(region) else {
            panic!("region {region} was not added: call add_region first");
        };
        f(&mut Ctx {
            clock: *clock,
            next_id,
            faults,
            region: region_state,
            calls: 0,
        })
    }

    /// Runs one trait operation under the lock; returns its result and the latency its calls
    /// owe, to be slept after the lock is released.
    fn operate<T>(
        &self,
        region: &str,
        f: impl FnOnce(&mut Ctx<'_>) -> Result<T, CloudError>,
    ) -> (Result<T, CloudError>, Duration) {
        let mut state = self.lock();
        let State {
            clock,
            latency,
            next_id,
            faults,
            regions,
            ..
        } = &mut *state;
        let Some(region_state) = regions.get_mut(region) else {
            let message = format!("region {region} is not enabled for this account");
            let e = CloudError::new(
                "Connect",
                ErrorKind::Unauthorized,
                Some("AuthFailure"),
                &message,
            );
            return (Err(e), *latency);
        };
        let mut ctx = Ctx {
            clock: *clock,
            next_id,
            faults,
            region: region_state,
            calls: 0,
        };
        let result = f(&mut ctx);
        (result, *latency * ctx.calls)
    }

    /// The simulated time.
    pub fn now(&self) -> DateTime<Utc> {
        self.lock().clock.now
    }

    /// Sets the simulated time.
    pub fn set_now(&self, now: DateTime<Utc>) -> &Self {
        self.lock().clock.now = now;
        self
    }

    /// Moves the simulated time forward.
    pub fn advance(&self, by: Duration) -> &Self {
        let by = TimeDelta::from_std(by).expect("a duration chrono can hold");
        self.lock().clock.now += by;
        self
    }

    /// How long a launched instance stays `Pending` before it is `Running` (default 0).
    pub fn set_boot_delay(&self, delay: Duration) -> &Self {
        self.lock().clock.boot_delay =
            TimeDelta::from_std(delay).expect("a duration chrono can hold");
        self
    }

    /// Latency added to every AWS call, slept with `tokio::time::sleep` (default 0).
    pub fn set_latency(&self, latency: Duration) -> &Self {
        self.lock().latency = latency;
        self
    }

    /// Fails the next `times` calls of `operation` (an AWS name such as `RunInstances`) in any
    /// region with `error`, after the faults already queued for it.
    pub fn fail_next(&self, operation: &str, error: CloudError, times: usize) -> &Self {
        let mut state = self.lock();
        let queue = state.faults.entry(operation.to_string()).or_default();
        queue.extend(std::iter::repeat_n(error, times));
        self
    }

    /// Calls made so far in every region together, `DescribeRegions` included.
    pub fn total_call_counts(&self) -> BTreeMap<String, u64> {
        let state = self.lock();
        let mut total: BTreeMap<String, u64> = BTreeMap::new();
        let all = state.regions.values().flat_map(|r| &r.calls);
        for (op, n) in all.chain(&state.account_calls) {
            *total.entry(op.to_string()).or_default() += n;
        }
        total
    }

    /// Adds a region with its availability zones (or replaces its zones if it exists).
    pub fn add_region(&self, name: &str, azs: &[&str]) -> &Self {
        let mut state = self.lock();
        let region = state.regions.entry(name.to_string()).or_default();
        region.azs = azs.iter().map(|az| az.to_string()).collect();
        self
    }

    /// Stores a group as given. Its members should be instances put with
    /// [`MemoryCloud::put_instance`] (before or after), which then belong to it.
    pub fn put_group(&self, region: &str, group: Group) -> &Self {
        self.with_region(region, |ctx| {
            let r = &mut *ctx.region;
            if let Some(old) = r.groups.remove(&group.name) {
                for m in &old.members {
                    r.membership.remove(&m.instance_id);
                }
            }
            for m in &group.members {
                r.membership
                    .insert(m.instance_id.clone(), group.name.clone());
                if let Some(i) = r.instances.get_mut(&m.instance_id) {
                    i.auto_scaling_group
                        .get_or_insert_with(|| group.name.clone());
                }
            }
            r.groups.insert(group.name.clone(), group);
        });
        self
    }

    /// Stores an instance as given. A `Pending` one turns `Running` once the boot delay has
    /// passed since its launch time.
    pub fn put_instance(&self, region: &str, instance: Instance) -> &Self {
        self.with_region(region, |ctx| ctx.region.insert(instance));
        self
    }

    /// Stores a launch configuration, or a launch template version: a numbered version is
    /// stored as that number, `$Latest` or `$Default` as the next number. A template's
    /// default version is the first one stored.
    pub fn put_launch_spec(&self, region: &str, launch: &LaunchRef, spec: LaunchSpec) -> &Self {
        self.with_region(region, |ctx| match launch {
            LaunchRef::LaunchConfiguration { name } => {
                ctx.region.launch_configs.insert(name.clone(), spec);
            }
            LaunchRef::LaunchTemplate { id, name, version } => {
                let t = ctx.region.templates.entry(id.clone()).or_default();
                let next = t.versions.keys().next_back().map_or(1, |v| v + 1);
                let number = version.parse().unwrap_or(next);
                if t.versions.is_empty() {
                    t.default_version = number;
                }
                if name.is_some() {
                    t.name.clone_from(name);
                }
                t.versions.insert(number, spec);
            }
        });
        self
    }

    /// Sets the version `$Default` resolves to.
    pub fn set_default_version(&self, region: &str, template_id: &str, version: i64) -> &Self {
        self.with_region(region, |ctx| {
            ctx.region
                .templates
                .entry(template_id.to_string())
                .or_default()
                .default_version = version;
        });
        self
    }

    /// Stores an AMI.
    pub fn put_ami(&self, region: &str, ami: Ami) -> &Self {
        self.with_region(region, |ctx| {
            ctx.region.amis.insert(ami.image_id.clone(), ami)
        });
        self
    }

    /// Replaces the region's instance types (default: the bundled catalog).
    pub fn set_instance_types(&self, region: &str, types: Vec<InstanceTypeSpec>) -> &Self {
        self.with_region(region, |ctx| {
            ctx.region.instance_types = Some(Arc::new(types))
        });
        self
    }

    /// Replaces the types offered per AZ (default: every instance type in every AZ). A type not
    /// offered in an AZ cannot be launched there.
    pub fn set_offerings(
        &self,
        region: &str,
        offerings: BTreeMap<String, BTreeSet<String>>,
    ) -> &Self {
        self.with_region(region, |ctx| ctx.region.offerings = Some(offerings));
        self
    }

    /// Adds a spot price point. Points later than the clock are not visible yet.
    pub fn put_spot_price(&self, region: &str, point: SpotPricePoint) -> &Self {
        self.with_region(region, |ctx| {
            let key = (
                point.product_description,
                point.instance_type,
                point.availability_zone,
            );
            ctx.region
                .spot_prices
                .entry(key)
                .or_default()
                .insert(point.timestamp, point.price);
        });
        self
    }

    /// Replaces the region's on-demand prices, by instance type (default: none).
    pub fn set_on_demand(&self, region: &str, prices: BTreeMap<String, OsPrices>) -> &Self {
        self.with_region(region, |ctx| ctx.region.on_demand = prices);
        self
    }

    /// Marks a (type, AZ) pool as having capacity or not (default: it has).
    pub fn set_capacity(
        &self,
        region: &str,
        instance_type: &str,
        az: &str,
        available: bool,
    ) -> &Self {
        self.with_region(region, |ctx| {
            let pool = (instance_type.to_string(), az.to_string());
            if available {
                ctx.region.unavailable.remove(&pool);
            } else {
                ctx.region.unavailable.insert(pool);
            }
        });
        self
    }

    /// Launches `n` on-demand members of an existing group, round-robin over `azs` (the
    /// region's AZs if empty), running per the boot delay, with the group's propagated tags.
    /// The group's sizes are left as they were put. Returns the new ids.
    pub fn launch_group_members(
        &self,
        region: &str,
        group: &str,
        n: usize,
        instance_type: &str,
        azs: &[&str],
    ) -> Vec<String> {
        self.with_region(region, |ctx| {
            let azs: Vec<String> = if azs.is_empty() {
                ctx.region.azs.clone()
            } else {
                azs.iter().map(|az| az.to_string()).collect()
            };
            assert!(!azs.is_empty(), "region {region} has no AZs");
            (0..n)
                .map(|k| ctx.launch_member(group, instance_type, &azs[k % azs.len()], None))
                .collect()
        })
    }

    /// Reclaims a spot instance as a spot interruption would: it terminates, and if it was a
    /// group member, the group launches an on-demand replacement.
    pub fn interrupt(&self, region: &str, id: &str) -> &Self {
        self.with_region(region, |ctx| ctx.terminate(id, true));
        self
    }

    /// A group as Auto Scaling would describe it now.
    pub fn group(&self, region: &str, name: &str) -> Option<Group> {
        self.with_region(region, |ctx| {
            let g = ctx.region.groups.get(name)?;
            Some(ctx.region.observe_group(g, ctx.clock))
        })
    }

    /// An instance as EC2 would describe it now, terminated ones included.
    pub fn instance(&self, region: &str, id: &str) -> Option<Instance> {
        self.with_region(region, |ctx| {
            ctx.region.instances.get(id).map(|i| ctx.clock.observe(i))
        })
    }

    /// Every instance of the region, terminated ones included, by id.
    pub fn instances(&self, region: &str) -> Vec<Instance> {
        self.with_region(region, |ctx| {
            ctx.region
                .instances
                .values()
                .map(|i| ctx.clock.observe(i))
                .collect()
        })
    }
}

impl Account for MemoryCloud {
    type Region = MemoryRegion;

    async fn regions(&self) -> Result<Vec<String>, CloudError> {
        let (result, latency) = {
            let mut state = self.lock();
            *state.account_calls.entry("DescribeRegions").or_default() += 1;
            let result = pop_fault(&mut state.faults, "DescribeRegions");
            (
                result.map(|()| state.regions.keys().cloned().collect()),
                state.latency,
            )
        };
        pause(latency).await;
        result
    }

    fn region(&self, name: &str) -> MemoryRegion {
        let baseline = self
            .lock()
            .regions
            .get(name)
            .map(|r| r.calls.clone())
            .unwrap_or_default();
        MemoryRegion {
            cloud: self.clone(),
            name: name.to_string(),
            baseline,
        }
    }
}

async fn pause(latency: Duration) {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
}

impl MemoryRegion {
    /// Runs one operation on this region, then sleeps the latency of the calls it made.
    async fn run<T>(
        &self,
        f: impl FnOnce(&mut Ctx<'_>) -> Result<T, CloudError>,
    ) -> Result<T, CloudError> {
        let (result, latency) = self.cloud.operate(&self.name, f);
        pause(latency).await;
        result
    }
}

impl Inventory for MemoryRegion {
    fn region(&self) -> &str {
        &self.name
    }

    async fn groups(&self, query: &GroupQuery) -> Result<Vec<Group>, CloudError> {
        self.run(|ctx| {
            let r = &*ctx.region;
            let found: Vec<Group> = r
                .groups
                .values()
                .filter(|g| {
                    query
                        .tag_values
                        .iter()
                        .all(|(k, v)| g.tags.get(k) == Some(v))
                        && query.tag_keys.iter().all(|k| g.tags.contains_key(k))
                })
                .map(|g| r.observe_group(g, ctx.clock))
                .collect();
            ctx.pages("DescribeAutoScalingGroups", found.len(), GROUP_PAGE)?;
            // The AWS adapter asks for each group's latest instance refresh.
            ctx.batches("DescribeInstanceRefreshes", found.len(), 1)?;
            Ok(found)
        })
        .await
    }

    async fn instances(&self, ids: &[String]) -> Result<Vec<Instance>, CloudError> {
        self.run(|ctx| {
            ctx.batches("DescribeInstances", ids.len(), INSTANCE_ID_BATCH)?;
            let mut seen = HashSet::new();
            Ok(ids
                .iter()
                .filter(|id| seen.insert(id.as_str()))
                .filter_map(|id| ctx.region.instances.get(id))
                .map(|i| ctx.clock.observe(i))
                .collect())
        })
        .await
    }

    async fn clones(&self) -> Result<Vec<Instance>, CloudError> {
        self.run(|ctx| {
            let r = &mut *ctx.region;
            let instances = &r.instances;
            r.clones
                .retain(|id| instances.get(id).is_some_and(|i| !i.state.is_gone()));
            let found: Vec<Instance> = r
                .clones
                .iter()
                .map(|id| ctx.clock.observe(&instances[id]))
                .collect();
            ctx.pages("DescribeInstances", found.len(), INSTANCE_PAGE)?;
            Ok(found)
        })
        .await
    }

    async fn group_membership(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, String>, CloudError> {
        self.run(|ctx| {
            ctx.batches("DescribeAutoScalingInstances", ids.len(), MEMBERSHIP_BATCH)?;
            Ok(ids
                .iter()
                .filter_map(|id| Some((id.clone(), ctx.region.membership.get(id)?.clone())))
                .collect())
        })
        .await
    }

    async fn launch_specs(
        &self,
        refs: &[LaunchRef],
    ) -> Result<BTreeMap<String, LaunchSpec>, CloudError> {
        self.run(|ctx| {
            let mut configurations = BTreeSet::new();
            let mut templates = BTreeSet::new();
            for r in refs {
                match r {
                    LaunchRef::LaunchConfiguration { name } => configurations.insert(name),
                    LaunchRef::LaunchTemplate { id, .. } => templates.insert(id),
                };
            }
            ctx.batches(
                "DescribeLaunchConfigurations",
                configurations.len(),
                LAUNCH_CONFIG_BATCH,
            )?;
            ctx.batches("DescribeLaunchTemplateVersions", templates.len(), 1)?;
            Ok(refs
                .iter()
                .filter_map(|r| Some((r.key(), ctx.region.resolve(r)?)))
                .collect())
        })
        .await
    }

    async fn images(&self, ids: &[String]) -> Result<Vec<Ami>, CloudError> {
        self.run(|ctx| {
            ctx.batches("DescribeImages", ids.len(), IMAGE_BATCH)?;
            let mut seen = HashSet::new();
            Ok(ids
                .iter()
                .filter(|id| seen.insert(id.as_str()))
                .filter_map(|id| ctx.region.amis.get(id).cloned())
                .collect())
        })
        .await
    }

    async fn instance_types(&self) -> Result<Vec<InstanceTypeSpec>, CloudError> {
        let types = self
            .run(|ctx| {
                let types = ctx
                    .region
                    .instance_types
                    .clone()
                    .unwrap_or_else(bundled_types);
                ctx.pages("DescribeInstanceTypes", types.len(), TYPE_PAGE)?;
                Ok(types)
            })
            .await?;
        // Cloned outside the lock: the catalog is the one large read.
        Ok(Arc::unwrap_or_clone(types))
    }

    async fn offerings(&self) -> Result<BTreeMap<String, BTreeSet<String>>, CloudError> {
        self.run(|ctx| {
            let offerings = match &ctx.region.offerings {
                Some(o) => o.clone(),
                None => {
                    let types = ctx
                        .region
                        .instance_types
                        .clone()
                        .unwrap_or_else(bundled_types);
                    let all: BTreeSet<String> =
                        types.iter().map(|t| t.instance_type.clone()).collect();
                    ctx.region
                        .azs
                        .iter()
                        .map(|az| (az.clone(), all.clone()))
                        .collect()
                }
            };
            let pairs = offerings.values().map(BTreeSet::len).sum();
            ctx.pages("DescribeInstanceTypeOfferings", pairs, OFFERING_PAGE)?;
            Ok(offerings)
        })
        .await
    }

    async fn spot_prices(
        &self,
        products: &[String],
        start: DateTime<Utc>,
    ) -> Result<Vec<SpotPricePoint>, CloudError> {
        self.run(|ctx| {
            let now = ctx.clock.now;
            let mut found = Vec::new();
            for ((product, instance_type, az), series) in &ctx.region.spot_prices {
                // No product filter means every product, as in EC2.
                if !products.is_empty() && !products.contains(product) {
                    continue;
                }
                let point = |(timestamp, price): (&DateTime<Utc>, &f64)| SpotPricePoint {
                    instance_type: instance_type.clone(),
                    availability_zone: az.clone(),
                    product_description: product.clone(),
                    price: *price,
                    timestamp: *timestamp,
                };
                // The price in effect at `start`, then every change up to now.
                found.extend(series.range(..=start.min(now)).next_back().map(point));
                if start < now {
                    let since = (Bound::Excluded(start), Bound::Included(now));
                    found.extend(series.range(since).map(point));
                }
            }
            ctx.pages("DescribeSpotPriceHistory", found.len(), SPOT_PRICE_PAGE)?;
            Ok(found)
        })
        .await
    }

    async fn on_demand_prices(
        &self,
        oses: &[Os],
    ) -> Result<BTreeMap<String, OsPrices>, CloudError> {
        self.run(|ctx| {
            let oses: BTreeSet<Os> = oses.iter().copied().collect();
            let mut found: BTreeMap<String, OsPrices> = BTreeMap::new();
            for &os in &oses {
                let mut products = 0;
                for (instance_type, prices) in &ctx.region.on_demand {
                    if let Some(price) = prices.get(os) {
                        set_price(
                            found.entry(instance_type.clone()).or_default(),
                            os,
                            Some(price),
                        );
                        products += 1;
                    }
                }
                ctx.pages("GetProducts", products, PRODUCT_PAGE)?;
            }
            Ok(found)
        })
        .await
    }

    fn call_counts(&self) -> BTreeMap<String, u64> {
        let state = self.cloud.lock();
        let Some(region) = state.regions.get(&self.name) else {
            return BTreeMap::new();
        };
        region
            .calls
            .iter()
            .map(|(op, n)| {
                (
                    op.to_string(),
                    n - self.baseline.get(op).copied().unwrap_or(0),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

impl Actuator for MemoryRegion {
    async fn launch_clone(&self, l: &CloneLaunch) -> Result<String, CloudError> {
        const OP: &str = "RunInstances";
        self.run(|ctx| {
            ctx.call(OP)?;
            let r = &*ctx.region;
            if let Some(id) = r.client_tokens.get(&l.client_token) {
                return Ok(id.clone());
            }
            let (instance_type, az) = (&l.instance_type, &l.availability_zone);
            if !r.azs.contains(az) {
                let message = format!("Invalid availability zone: [{az}]");
                return Err(CloudError::new(
                    OP,
                    ErrorKind::InvalidRequest,
                    Some("InvalidParameterValue"),
                    &message,
                ));
            }
            let offered = match r.offerings.as_ref().and_then(|o| o.get(az)) {
                Some(types) => types.contains(instance_type),
                None => true,
            };
            if !offered {
                let message = format!("{instance_type} is not supported in {az}");
                return Err(CloudError::new(
                    OP,
                    ErrorKind::CapacityUnavailable,
                    Some("Unsupported"),
                    &message,
                ));
            }
            if r.unavailable.contains(&(instance_type.clone(), az.clone())) {
                let message =
                    format!("There is no Spot capacity available for {instance_type} in {az}");
                let code = Some("InsufficientInstanceCapacity");
                return Err(CloudError::new(
                    OP,
                    ErrorKind::CapacityUnavailable,
                    code,
                    &message,
                ));
            }
            let id = ctx.new_id();
            ctx.region.insert(Instance {
                instance_id: id.clone(),
                instance_type: instance_type.clone(),
                availability_zone: az.clone(),
                subnet_id: l.subnet_id.clone(),
                market: Market::Spot,
                state: InstanceState::Pending,
                launch_time: ctx.clock.now,
                image_id: Some(l.spec.image_id.clone()),
                auto_scaling_group: None,
                tags: l.tags.clone(),
            });
            if !l.client_token.is_empty() {
                ctx.region
                    .client_tokens
                    .insert(l.client_token.clone(), id.clone());
            }
            Ok(id)
        })
        .await
    }

    async fn attach(&self, group: &str, instance: &str) -> Result<(), CloudError> {
        const OP: &str = "AttachInstances";
        self.run(|ctx| {
            ctx.call(OP)?;
            let r = &mut *ctx.region;
            let g = r
                .groups
                .get_mut(group)
                .ok_or_else(|| group_not_found(OP, group))?;
            match r.instances.get(instance) {
                None => {
                    return Err(validation(
                        OP,
                        &format!("Instance ID(s) are not valid: {instance}"),
                    ));
                }
                Some(i) if !ctx.clock.running(i) => {
                    return Err(validation(
                        OP,
                        &format!("Instance {instance} is not in the running state"),
                    ));
                }
                Some(_) => {}
            }
            if let Some(other) = r.membership.get(instance) {
                return Err(validation(
                    OP,
                    &format!("Instance {instance} is already part of {other}"),
                ));
            }
            if g.desired_capacity + 1 > g.max_size {
                let message = format!(
                    "Attaching 1 instance to {group} would exceed its max size of {}",
                    g.max_size
                );
                return Err(validation(OP, &message));
            }
            g.desired_capacity += 1;
            r.add_member(group, instance, "InService");
            Ok(())
        })
        .await
    }

    async fn terminate_in_group(
        &self,
        instance: &str,
        decrement_desired: bool,
    ) -> Result<(), CloudError> {
        const OP: &str = "TerminateInstanceInAutoScalingGroup";
        self.run(|ctx| {
            ctx.call(OP)?;
            let Some(group) = ctx.region.membership.get(instance).cloned() else {
                let message = format!("Instance Id not found - No managed instance found for instance ID: {instance}");
                return Err(CloudError::new(OP, ErrorKind::InvalidRequest, Some("ValidationError"), &message));
            };
            if decrement_desired {
                let g = ctx.region.groups.get_mut(&group).ok_or_else(|| group_not_found(OP, &group))?;
                if g.desired_capacity <= g.min_size {
                    let message = format!(
                        "Currently, desiredSize equals minSize ({}). Terminating instance without replacement will violate group's min size constraint.",
                        g.min_size
                    );
                    return Err(validation(OP, &message));
                }
                g.desired_capacity -= 1;
            }
            ctx.terminate(instance, !decrement_desired);
            Ok(())
        })
        .await
    }

    async fn detach(
        &self,
        group: &str,
        instance: &str,
        decrement_desired: bool,
    ) -> Result<(), CloudError> {
        const OP: &str = "DetachInstances";
        self.run(|ctx| {
            ctx.call(OP)?;
            if ctx.region.membership.get(instance).map(String::as_str) != Some(group) {
                let message =
                    format!("The instance {instance} is not part of Auto Scaling group {group}.");
                return Err(validation(OP, &message));
            }
            let g = ctx
                .region
                .groups
                .get_mut(group)
                .ok_or_else(|| group_not_found(OP, group))?;
            if decrement_desired {
                g.desired_capacity = g.desired_capacity.saturating_sub(1);
            }
            ctx.region.remove_member(instance);
            if let Some(i) = ctx.region.instances.get_mut(instance) {
                i.auto_scaling_group = None;
            }
            if !decrement_desired {
                let gone = ctx.region.instances.get(instance).cloned();
                if let Some(gone) = gone {
                    ctx.replace(group, &gone);
                }
            }
            Ok(())
        })
        .await
    }

    async fn terminate(&self, instances: &[String]) -> Result<(), CloudError> {
        const OP: &str = "TerminateInstances";
        self.run(|ctx| {
            ctx.batches(OP, instances.len(), TERMINATE_BATCH)?;
            if let Some(id) = instances
                .iter()
                .find(|id| !ctx.region.instances.contains_key(*id))
            {
                let message = format!("The instance ID '{id}' does not exist");
                return Err(CloudError::new(
                    OP,
                    ErrorKind::NotFound,
                    Some("InvalidInstanceID.NotFound"),
                    &message,
                ));
            }
            for id in instances {
                ctx.terminate(id, true);
            }
            Ok(())
        })
        .await
    }

    async fn set_max_size(&self, group: &str, max_size: u32) -> Result<(), CloudError> {
        const OP: &str = "UpdateAutoScalingGroup";
        self.run(|ctx| {
            ctx.call(OP)?;
            let g = ctx.region.groups.get_mut(group).ok_or_else(|| group_not_found(OP, group))?;
            if max_size < g.desired_capacity || max_size < g.min_size {
                let message = format!(
                    "Desired capacity:{} must be between the specified min size:{} and max size:{max_size}",
                    g.desired_capacity, g.min_size
                );
                return Err(validation(OP, &message));
            }
            g.max_size = max_size;
            Ok(())
        })
        .await
    }

    async fn tag_group(&self, group: &str, key: &str, value: &str) -> Result<(), CloudError> {
        const OP: &str = "CreateOrUpdateTags";
        self.run(|ctx| {
            ctx.call(OP)?;
            let g = ctx
                .region
                .groups
                .get_mut(group)
                .ok_or_else(|| group_not_found(OP, group))?;
            g.tags.insert(key.to_string(), value.to_string());
            g.propagated_tag_keys.remove(key);
            Ok(())
        })
        .await
    }

    async fn untag_group(&self, group: &str, key: &str) -> Result<(), CloudError> {
        const OP: &str = "DeleteTags";
        self.run(|ctx| {
            ctx.call(OP)?;
            let g = ctx
                .region
                .groups
                .get_mut(group)
                .ok_or_else(|| group_not_found(OP, group))?;
            g.tags.remove(key);
            g.propagated_tag_keys.remove(key);
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REGION: &str = "eu-west-1";

    fn template(version: &str) -> LaunchRef {
        LaunchRef::LaunchTemplate {
            id: "lt-1".into(),
            name: None,
            version: version.into(),
        }
    }

    fn spec(image_id: &str) -> LaunchSpec {
        LaunchSpec {
            image_id: image_id.into(),
            instance_type: Some("m5.large".into()),
            ..LaunchSpec::default()
        }
    }

    /// One region with group `web` (min 1, max `max`) of `n` running on-demand m5.large.
    fn account(n: u32, max: u32) -> (MemoryCloud, Vec<String>) {
        let cloud = MemoryCloud::new();
        cloud
            .add_region(REGION, &["eu-west-1a", "eu-west-1b"])
            .put_launch_spec(REGION, &template("1"), spec("ami-1"))
            .put_group(
                REGION,
                Group {
                    name: "web".into(),
                    min_size: 1,
                    max_size: max,
                    desired_capacity: n,
                    health_check_grace_period_secs: 300,
                    tags: BTreeMap::from([("spot-enabled".into(), "true".into())]),
                    propagated_tag_keys: BTreeSet::new(),
                    launch: Some(template("$Latest")),
                    mixed_instances_policy: false,
                    warm_pool: false,
                    instance_refresh_in_progress: false,
                    suspended_processes: Vec::new(),
                    members: Vec::new(),
                },
            );
        let ids = cloud.launch_group_members(REGION, "web", n as usize, "m5.large", &[]);
        (cloud, ids)
    }

    fn clone_of(replaces: &str, instance_type: &str, az: &str) -> CloneLaunch {
        CloneLaunch {
            group: "web".into(),
            replaces: replaces.into(),
            instance_type: instance_type.into(),
            availability_zone: az.into(),
            subnet_id: None,
            launch: template("1"),
            spec: spec("ami-1"),
            max_price: 0.096,
            tags: BTreeMap::from([
                (tags::GROUP.into(), "web".into()),
                (tags::REPLACES.into(), replaces.into()),
            ]),
            client_token: format!("token-{replaces}"),
        }
    }

    #[tokio::test]
    async fn attaching_past_max_size_fails_and_changes_nothing() {
        let (cloud, ids) = account(2, 2);
        let region = cloud.region(REGION);
        let clone = region
            .launch_clone(&clone_of(&ids[0], "m5a.large", "eu-west-1a"))
            .await
            .unwrap();
        let e = region.attach("web", &clone).await.unwrap_err();
        assert_eq!(
            (e.kind, e.code.as_deref()),
            (ErrorKind::InvalidRequest, Some("ValidationError"))
        );
        let group = cloud.group(REGION, "web").unwrap();
        assert_eq!((group.desired_capacity, group.members.len()), (2, 2));
        assert_eq!(
            cloud.instance(REGION, &clone).unwrap().auto_scaling_group,
            None
        );
    }

    #[tokio::test]
    async fn terminating_in_group_with_decrement_keeps_desired_where_it_started() {
        let (cloud, ids) = account(2, 3);
        let region = cloud.region(REGION);
        let clone = region
            .launch_clone(&clone_of(&ids[0], "m5a.large", "eu-west-1a"))
            .await
            .unwrap();
        region.attach("web", &clone).await.unwrap();
        assert_eq!(cloud.group(REGION, "web").unwrap().desired_capacity, 3);
        region.terminate_in_group(&ids[0], true).await.unwrap();

        let group = cloud.group(REGION, "web").unwrap();
        assert_eq!(group.desired_capacity, 2);
        let members: Vec<&str> = group
            .members
            .iter()
            .map(|m| m.instance_id.as_str())
            .collect();
        assert_eq!(members, [ids[1].as_str(), clone.as_str()]);
        assert_eq!(
            cloud.instance(REGION, &ids[0]).unwrap().state,
            InstanceState::Terminated
        );
        assert_eq!(
            cloud.instances(REGION).len(),
            3,
            "no replacement was launched"
        );
        let membership = region
            .group_membership(&[ids[0].clone(), clone.clone()])
            .await
            .unwrap();
        assert_eq!(membership, BTreeMap::from([(clone, "web".to_string())]));

        // Without the decrement, the group launches an on-demand replacement.
        region.terminate_in_group(&ids[1], false).await.unwrap();
        let group = cloud.group(REGION, "web").unwrap();
        assert_eq!((group.desired_capacity, group.members.len()), (2, 2));
        let new = cloud
            .instance(REGION, &group.members[1].instance_id)
            .unwrap();
        assert_eq!(
            (new.market, new.state),
            (Market::OnDemand, InstanceState::Running)
        );
        assert_eq!(group.members[1].lifecycle_state, "InService");
    }

    #[tokio::test]
    async fn latest_and_default_resolve_to_their_versions() {
        let (cloud, _) = account(1, 1);
        cloud.put_launch_spec(REGION, &template("3"), spec("ami-3"));
        let region = cloud.region(REGION);
        let refs = [template("$Latest"), template("$Default"), template("2")];
        let specs = region.launch_specs(&refs).await.unwrap();
        let latest = &specs["lt:lt-1:$Latest"];
        assert_eq!(
            (latest.image_id.as_str(), latest.resolved_version),
            ("ami-3", Some(3))
        );
        let default = &specs["lt:lt-1:$Default"];
        assert_eq!(
            (default.image_id.as_str(), default.resolved_version),
            ("ami-1", Some(1))
        );
        assert!(
            !specs.contains_key("lt:lt-1:2"),
            "a missing version is left out"
        );
        assert_eq!(region.call_counts()["DescribeLaunchTemplateVersions"], 1);

        cloud.set_default_version(REGION, "lt-1", 3);
        let specs = region.launch_specs(&[template("$Default")]).await.unwrap();
        assert_eq!(specs["lt:lt-1:$Default"].resolved_version, Some(3));
    }

    #[tokio::test]
    async fn a_scripted_failure_comes_first_then_calls_succeed() {
        let (cloud, ids) = account(1, 1);
        let throttled = CloudError::new(
            "DescribeInstances",
            ErrorKind::Throttled,
            Some("RequestLimitExceeded"),
            "Request limit exceeded.",
        );
        cloud.fail_next("DescribeInstances", throttled.clone(), 1);
        let region = cloud.region(REGION);
        assert_eq!(region.instances(&ids).await.unwrap_err(), throttled);
        assert_eq!(region.instances(&ids).await.unwrap().len(), 1);
        assert_eq!(region.call_counts()["DescribeInstances"], 2);
    }

    #[tokio::test]
    async fn calls_are_counted_per_page_and_batch() {
        let (cloud, mut ids) = account(250, 250);
        ids.push("i-unknown".into());
        let region = cloud.region(REGION);
        assert_eq!(region.instances(&ids).await.unwrap().len(), 250);
        assert!(region.instances(&[]).await.unwrap().is_empty());
        assert_eq!(region.group_membership(&ids).await.unwrap().len(), 250);
        let types = region.instance_types().await.unwrap();
        for k in 0..1500 {
            let point = SpotPricePoint {
                instance_type: format!("t{k}"),
                availability_zone: "eu-west-1a".into(),
                product_description: "Linux/UNIX (Amazon VPC)".into(),
                price: 0.01,
                timestamp: cloud.now(),
            };
            cloud.put_spot_price(REGION, point);
        }
        let linux = ["Linux/UNIX (Amazon VPC)".to_string()];
        assert_eq!(
            region.spot_prices(&linux, cloud.now()).await.unwrap().len(),
            1500
        );
        region.terminate(&[]).await.unwrap();

        let counts = region.call_counts();
        assert_eq!(counts["DescribeInstances"], 3, "251 ids in batches of 100");
        assert_eq!(
            counts["DescribeAutoScalingInstances"], 6,
            "251 ids in batches of 50"
        );
        assert_eq!(
            counts["DescribeInstanceTypes"],
            types.len().div_ceil(100) as u64
        );
        assert_eq!(
            counts["DescribeSpotPriceHistory"], 2,
            "1,500 points in pages of 1,000"
        );
        assert!(!counts.contains_key("TerminateInstances"));
        assert_eq!(cloud.regions().await.unwrap(), [REGION]);
        assert_eq!(cloud.total_call_counts()["DescribeRegions"], 1);
    }

    #[tokio::test]
    async fn the_clock_drives_a_launch_from_pending_to_running() {
        let (cloud, ids) = account(1, 2);
        cloud.set_boot_delay(Duration::from_secs(60));
        let region = cloud.region(REGION);
        let clone = region
            .launch_clone(&clone_of(&ids[0], "m5a.large", "eu-west-1b"))
            .await
            .unwrap();
        assert!(clone.starts_with("i-") && clone.len() == 19, "{clone}");
        let launched = cloud.instance(REGION, &clone).unwrap();
        assert_eq!(
            (launched.state, launched.market),
            (InstanceState::Pending, Market::Spot)
        );
        assert_eq!(launched.launch_time, cloud.now());
        assert_eq!(
            launched.tags,
            clone_of(&ids[0], "m5a.large", "eu-west-1b").tags
        );
        let e = region.attach("web", &clone).await.unwrap_err();
        assert_eq!(
            e.kind,
            ErrorKind::InvalidRequest,
            "a pending instance cannot be attached"
        );

        cloud.advance(Duration::from_secs(59));
        assert_eq!(
            cloud.instance(REGION, &clone).unwrap().state,
            InstanceState::Pending
        );
        cloud.advance(Duration::from_secs(1));
        let clones = region.clones().await.unwrap();
        assert_eq!(clones.len(), 1);
        assert_eq!(
            (clones[0].instance_id.as_str(), clones[0].state),
            (clone.as_str(), InstanceState::Running)
        );
        region.attach("web", &clone).await.unwrap();
    }

    #[tokio::test]
    async fn an_unavailable_pool_fails_with_capacity_unavailable() {
        let (cloud, ids) = account(1, 2);
        cloud.set_capacity(REGION, "m5a.large", "eu-west-1a", false);
        let region = cloud.region(REGION);
        let e = region
            .launch_clone(&clone_of(&ids[0], "m5a.large", "eu-west-1a"))
            .await
            .unwrap_err();
        assert_eq!(
            (e.kind, e.code.as_deref()),
            (
                ErrorKind::CapacityUnavailable,
                Some("InsufficientInstanceCapacity")
            )
        );
        assert!(region.clones().await.unwrap().is_empty());
        region
            .launch_clone(&clone_of(&ids[0], "m5a.large", "eu-west-1b"))
            .await
            .unwrap();
        cloud.set_capacity(REGION, "m5a.large", "eu-west-1a", true);
        region
            .launch_clone(&clone_of("i-other", "m5a.large", "eu-west-1a"))
            .await
            .unwrap();
        assert_eq!(region.clones().await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_retried_launch_with_the_same_token_returns_the_same_clone() {
        let (cloud, ids) = account(1, 2);
        let region = cloud.region(REGION);
        let launch = clone_of(&ids[0], "m5a.large", "eu-west-1a");
        let first = region.launch_clone(&launch).await.unwrap();
        assert_eq!(region.launch_clone(&launch).await.unwrap(), first);
        assert_eq!(region.clones().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn spot_prices_start_with_the_price_in_effect_and_stop_at_now() {
        let (cloud, _) = account(1, 1);
        let t0 = cloud.now();
        for (minutes, price) in [(-90, 0.01), (-30, 0.02), (-10, 0.03), (10, 0.04)] {
            cloud.put_spot_price(
                REGION,
                SpotPricePoint {
                    instance_type: "m5a.large".into(),
                    availability_zone: "eu-west-1a".into(),
                    product_description: "Linux/UNIX (Amazon VPC)".into(),
                    price,
                    timestamp: t0 + TimeDelta::minutes(minutes),
                },
            );
        }
        let region = cloud.region(REGION);
        let since = t0 - TimeDelta::minutes(60);
        let points = region
            .spot_prices(&["Linux/UNIX (Amazon VPC)".into()], since)
            .await
            .unwrap();
        let prices: Vec<f64> = points.iter().map(|p| p.price).collect();
        assert_eq!(prices, [0.01, 0.02, 0.03]);
        let windows = region
            .spot_prices(&["Windows (Amazon VPC)".into()], since)
            .await
            .unwrap();
        assert!(windows.is_empty());
    }
}
