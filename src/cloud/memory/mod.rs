//! An in-memory AWS account for fast component tests: [`MemoryCloud`] stands in for EC2, Auto
//! Scaling and Pricing behind the same [`Account`], [`Inventory`](super::Inventory) and
//! [`Actuator`](super::Actuator) traits the real adapter implements, so a pass's real code
//! (observe, plan, execute) can run over it. It is a test kit: built for the crate's own tests
//! and with the `test-util` feature only.
//!
//! This module holds the handles and the test-facing API: tests seed the account (regions,
//! groups, instances, launch specs, AMIs, types, prices), drive its clock, script faults per
//! AWS operation name (and refusals of launches per instance type), add latency and read call
//! counts; seeding and inspecting count no calls. `chaos` adds the whole-pass faults of
//! tests/chaos.rs: a crash mid-pass, throttling retried as the AWS adapter retries it, a
//! group's own scaling and an instance terminated from outside spotswap. [`GroupBuilder`] and [`InstanceBuilder`]
//! make the groups and instances to seed. The account's state and its AWS semantics are in
//! `state`, the read side in `inventory`, the write side in `actuator`. Those semantics mirror
//! what the swap protocol relies on in real AWS (README, "How it decides", the swap protocol):
//! tags set at launch, AttachInstances failing past MaxSize, a group replacing a member
//! terminated without decrement, and each group's scaling activities worded as Auto Scaling
//! words them (an attach, a removal on request with or without decrement, a scale-in, a
//! health check), read back through the same reading as the AWS adapter's. Every operation
//! costs O(its batch), never a scan of the account, and the lock is never held across an
//! await, so a test can seed hundreds of thousands of instances. It must not touch the network, the real clock or the environment,
//! and the binaries never use it.

mod actuator;
mod builders;
mod chaos;
mod inventory;
mod state;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

pub use self::builders::{GroupBuilder, InstanceBuilder};
use self::state::{Ctx, State, pop_fault};
use super::activity::Leaving;
use super::{Account, CloudError, ErrorKind};
use crate::model::{
    Ami, Group, Instance, InstanceTypeSpec, LaunchRef, LaunchSpec, LoadBalancer, OsPrices,
    SpotPricePoint,
};

/// An in-memory AWS account. Clones share one state.
#[derive(Clone, Default)]
pub struct MemoryCloud {
    state: Arc<Mutex<State>>,
}

/// One region of a [`MemoryCloud`], implementing [`Inventory`](super::Inventory) and
/// [`Actuator`](super::Actuator).
#[derive(Clone)]
pub struct MemoryRegion {
    cloud: MemoryCloud,
    name: String,
    /// The region's call counts when this handle was made: a handle reports its own calls,
    /// as the AWS adapter's per-pass handles do.
    baseline: BTreeMap<&'static str, u64>,
    /// This handle's request buckets: every call waits for its token, as in the AWS adapter.
    pacer: Arc<crate::pacing::Pacer>,
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
        let latency = ctx.region.latency.unwrap_or(*latency);
        (result, latency * ctx.calls)
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

    /// Latency of one region's calls only (listing the regions keeps the account's).
    pub fn set_region_latency(&self, region: &str, latency: Duration) -> &Self {
        self.with_region(region, |ctx| ctx.region.latency = Some(latency));
        self
    }

    /// Fails the next `times` calls of `operation` (an AWS name such as `RunInstances`) in any
    /// region with `error`, after the faults already queued for it.
    pub fn fail_next(&self, operation: &str, error: CloudError, times: usize) -> &Self {
        let mut state = self.lock();
        let queue = state.faults.entry(operation.to_string()).or_default();
        queue.extend(std::iter::repeat_n(Some(error), times));
        self
    }

    /// Lets the next `calls` calls of `operation` through before the faults queued after this:
    /// `pass_next(op, 1).fail_next(op, e, 1)` fails the second call.
    pub fn pass_next(&self, operation: &str, calls: usize) -> &Self {
        let mut state = self.lock();
        let queue = state.faults.entry(operation.to_string()).or_default();
        queue.extend(std::iter::repeat_n(None, calls));
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

    /// Makes every RunInstances of `instance_type` in the region fail with `error`, as EC2
    /// refuses a launch whose spec the type does not support (hibernation, EBS optimization,
    /// Nitro Enclaves, CPU options: InvalidParameterCombination); `None` lifts it.
    pub fn refuse_launches(
        &self,
        region: &str,
        instance_type: &str,
        error: Option<CloudError>,
    ) -> &Self {
        self.with_region(region, |ctx| match error {
            Some(e) => ctx.region.refused.insert(instance_type.to_string(), e),
            None => ctx.region.refused.remove(instance_type),
        });
        self
    }

    /// How long an instance that joins a group behind load balancers stays `initial` there
    /// before they call it `healthy` (zero, the default: at once).
    pub fn set_health_delay(&self, region: &str, delay: Duration) -> &Self {
        let delay = TimeDelta::from_std(delay).expect("a delay that fits");
        self.with_region(region, |ctx| ctx.region.health_delay = delay);
        self
    }

    /// How `lb` sees `instance` now, as `DescribeTargetHealth` would answer, without a call (for
    /// a test's checks, like [`MemoryCloud::group`]).
    pub fn target_state(&self, region: &str, lb: &LoadBalancer, instance: &str) -> String {
        let state = self.lock();
        let now = state.clock.now;
        state.regions.get(region).map_or_else(
            || "unused".into(),
            |r| inventory::health(r, now, lb, instance),
        )
    }

    /// The load balancers of its group never call `instance` healthy (`unhealthy` once the
    /// health delay is over).
    pub fn set_never_healthy(&self, region: &str, instance: &str) -> &Self {
        self.with_region(region, |ctx| {
            ctx.region.never_healthy.insert(instance.to_string())
        });
        self
    }

    /// Makes IAM refuse `operation` (an AWS name such as `CreateFleet`) in the region, as a
    /// role without the permission, an SCP or a permissions boundary would: the real call and
    /// its `DryRun` answer `UnauthorizedOperation` with an encoded authorization message that
    /// [`Actuator::decode_authorization`](crate::cloud::Actuator::decode_authorization) decodes
    /// into `action` on `resource`, denied explicitly or for want of an allow.
    pub fn deny(
        &self,
        region: &str,
        operation: &str,
        action: &str,
        resource: &str,
        explicit: bool,
    ) -> &Self {
        // The document STS answers DecodeAuthorizationMessage with (STS API reference).
        let decoded = serde_json::json!({
            "allowed": false,
            "explicitDeny": explicit,
            "matchedStatements": {"items": []},
            "failures": {"items": []},
            "context": {
                "principal": {"id": "AROAEXAMPLE:spotswap", "arn": "arn:aws:sts::111122223333:assumed-role/spotswap/spotswap"},
                "action": action,
                "resource": resource,
                "conditions": {"items": []}
            }
        })
        .to_string();
        self.with_region(region, |ctx| {
            ctx.region.denied.insert(operation.to_string(), decoded)
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

    /// Throttles `operation` in the region as EC2 does: a token bucket of `size` tokens,
    /// refilled at `refill_per_sec` (by tokio's clock, so paused-time tests run instantly).
    pub fn set_request_bucket(
        &self,
        region: &str,
        operation: &'static str,
        size: f64,
        refill_per_sec: f64,
    ) -> &Self {
        self.with_region(region, |ctx| {
            let bucket =
                crate::pacing::Bucket::full(size, refill_per_sec, tokio::time::Instant::now());
            ctx.region.buckets.insert(operation, bucket);
        });
        self
    }

    /// Throttles every operation in the region as AWS documents it ([`documented_bucket`]),
    /// except those given a bucket of their own.
    ///
    /// [`documented_bucket`]: crate::pacing::documented_bucket
    pub fn set_documented_buckets(&self, region: &str) -> &Self {
        self.with_region(region, |ctx| ctx.region.documented_buckets = true);
        self
    }

    /// Calls of the region refused for an empty request bucket, by operation.
    pub fn throttled(&self, region: &str) -> BTreeMap<String, u64> {
        self.with_region(region, |ctx| {
            ctx.region
                .throttled
                .iter()
                .map(|(op, n)| (op.to_string(), *n))
                .collect()
        })
    }

    /// Makes every later launch die at boot with EC2 state reason `reason` (for example
    /// `Client.InternalError`, as for volumes under an unusable KMS key); `None` heals it.
    pub fn set_boot_failure(&self, region: &str, reason: Option<&str>) -> &Self {
        self.with_region(region, |ctx| {
            ctx.region.boot_failure = reason.map(str::to_string);
        });
        self
    }

    /// Reclaims a spot instance as a spot interruption would: it terminates, and if it was a
    /// group member, the group launches an on-demand replacement.
    pub fn interrupt(&self, region: &str, id: &str) -> &Self {
        self.with_region(region, |ctx| {
            ctx.terminate(id, true, "Server.SpotInstanceTermination", Leaving::Health)
        });
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
        self.gate("DescribeRegions").await?;
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
            pacer: Arc::default(),
        }
    }
}

async fn pause(latency: Duration) {
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
}

impl MemoryRegion {
    /// Runs one call of `operation` on this region once its request token is there, then
    /// sleeps the call's latency.
    async fn run<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&mut Ctx<'_>) -> Result<T, CloudError>,
    ) -> Result<T, CloudError> {
        self.pacer.wait(operation).await;
        self.pacer.admit(operation)?;
        self.cloud.gate(operation).await?;
        let (result, latency) = self.cloud.operate(&self.name, f);
        pause(latency).await;
        self.cloud.after_call(operation);
        result
    }

    /// A read of `operation` whose answer `f` computes and takes the number of calls `f`
    /// returns with it (its pages or batches; at least one): each call waits for its token,
    /// is counted, and may fail, as the AWS adapter makes them one after another.
    async fn read<T>(
        &self,
        operation: &'static str,
        f: impl FnOnce(&mut Ctx<'_>) -> (T, usize),
    ) -> Result<T, CloudError> {
        let (answer, calls) = self
            .run(operation, |ctx| {
                ctx.call(operation)?;
                Ok(f(ctx))
            })
            .await?;
        for _ in 1..calls {
            self.run(operation, |ctx| ctx.call(operation)).await?;
        }
        Ok(answer)
    }
}
