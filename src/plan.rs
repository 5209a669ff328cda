//! The planner: `plan(snapshot, settings, now) -> Plan`, every decision of a pass as data.
//!
//! For each group it decides, from what the snapshot shows and nothing else, which spot clones
//! to launch, which ready clones to swap in, which clones are orphans, and which leftover
//! MaxSize changes to restore; everything it leaves alone gets a skip with a reason. The swap
//! protocol's state lives in tags (DESIGN.md section 3), so re-planning from a fresh snapshot
//! after any crash finishes what a previous pass started.
//!
//! This module is pure: no I/O, no clock (`now` is passed in), no logging, no randomness.
//! Iteration is over sorted maps and explicit sorts, so the same input gives the same plan.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::compat::{AmiNeeds, Reason, Requirements};
use crate::model::{
    Group, Instance, InstanceState, InstanceTypeSpec, LaunchRef, Market, Member, Os, PriceSource,
    Snapshot, tags,
};
use crate::settings::{GroupSettings, Settings};

/// How many of the cheapest compatible types a group's launches rotate over, least used first.
/// Racing to the single cheapest pool concentrates interruptions (DESIGN.md section 5); three
/// pools keep most of the saving while no one interruption takes out the group.
pub const DIVERSITY_WIDTH: usize = 3;

/// Candidate types handed to one launch, in order: capacity errors fall through to the next.
pub const MAX_CANDIDATES: usize = 8;

/// Auto Scaling processes whose suspension means the user has paused changes that a swap
/// needs: attaching is a launch for Auto Scaling, removing the old instance a termination.
const BLOCKING_PROCESSES: [&str; 2] = ["Launch", "Terminate"];

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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    Act(Action),
    Skip(Skip),
}

/// A price a decision used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceUsed {
    pub instance_type: String,
    pub market: Market,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    pub os: Os,
    /// USD per hour, after the on-demand multiplier for on-demand prices.
    pub price: f64,
    /// `pricing API`, `bundled us-east-1 table of 2023-08-30`, `spot history, highest over 60 min`.
    pub source: String,
}

/// A candidate type for a clone, as ranked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub instance_type: String,
    /// The spot price judged over the window, USD per hour.
    pub spot_price: f64,
}

/// A MaxSize change around a swap: raised by one so the attach fits, restored afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MaxSizeChange {
    pub original: u32,
    pub raised: u32,
}

/// What a pass does. Each group's actions run in the order the plan lists them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Action {
    /// Launch a spot clone of an on-demand instance, trying the candidates in order, tagged
    /// `spotswap:group` and `spotswap:replaces` in the launch call itself.
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
    },
    /// Attach a ready clone, then terminate the on-demand instance through the group with
    /// `ShouldDecrementDesiredCapacity=true`; raise and restore MaxSize around it when full.
    Swap {
        clone: String,
        replaces: String,
        #[serde(default)]
        max_size: Option<MaxSizeChange>,
    },
    /// A clone is attached but the instance it replaces is still in the group: a pass stopped
    /// mid-swap. Terminate the replaced instance through the group, decrementing desired.
    CompleteSwap { clone: String, replaces: String },
    /// Terminate a clone that will never be swapped in.
    TerminateOrphan { clone: String, reason: OrphanReason },
    /// Put MaxSize back to the value recorded in `spotswap:max-size` and remove the tag.
    RestoreMaxSize { current: u32, restored: u32 },
}

impl Action {
    /// A short name for tables and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Action::LaunchClone { .. } => "launch-clone",
            Action::Swap { .. } => "swap",
            Action::CompleteSwap { .. } => "complete-swap",
            Action::TerminateOrphan { .. } => "terminate-orphan",
            Action::RestoreMaxSize { .. } => "restore-max-size",
        }
    }
}

/// Why a clone is an orphan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
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
    /// Swapping it in would take on-demand capacity below the group's minimum.
    NotNeeded,
}

/// Why a group or an instance is left alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "kebab-case")]
pub enum Skip {
    NotOptedIn,
    /// A setting tag has a value that cannot be used: the group is left untouched.
    InvalidSetting {
        setting: String,
        tag: String,
        value: String,
        problem: String,
    },
    /// A tag spotswap itself writes holds a value it cannot read: the group is left untouched.
    InvalidProtocolTag {
        tag: String,
        value: String,
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
    /// This pass terminates the instance's stuck clone; the next pass may try again.
    PreviousCloneTerminated {
        clone: String,
    },
}

impl Skip {
    /// The stable kebab-case word for this skip.
    pub fn name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("reason").and_then(|r| r.as_str()).map(str::to_string))
            .unwrap_or_default()
    }
}

/// Plans a pass over one region's snapshot.
pub fn plan(snapshot: &Snapshot, settings: &Settings, now: DateTime<Utc>) -> Plan {
    let ctx = Context::new(snapshot, settings, now);
    let mut out = Vec::new();
    let mut groups: Vec<&Group> = snapshot.groups.iter().collect();
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    for g in &groups {
        plan_group(&ctx, g, &mut out);
    }
    // Clones whose group is not in the snapshot: the group was deleted or is no longer opted
    // in (discovery only lists opted-in groups). Unattached ones can only cost money.
    let known: BTreeSet<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    for (group, clones) in &ctx.clones {
        if known.contains(group) {
            continue;
        }
        for c in clones.iter().filter(|c| c.auto_scaling_group.is_none()) {
            out.push(ctx.orphan(group, c, OrphanReason::GroupNotOptedIn, None));
        }
    }
    Plan {
        region: snapshot.region.clone(),
        on_demand_source: snapshot.on_demand.source.clone(),
        decisions: out,
    }
}

/// Lookups built once per plan.
struct Context<'a> {
    snap: &'a Snapshot,
    settings: &'a Settings,
    now: DateTime<Utc>,
    /// Live clones (not shutting down or terminated) by the group they were launched for.
    clones: BTreeMap<&'a str, Vec<&'a Instance>>,
    spot: SpotIndex<'a>,
}

/// Spot price history by pool, for judging prices over a window.
pub struct SpotIndex<'a> {
    /// Points by (product, AZ, type), sorted by time.
    points: HashMap<PoolKey<'a>, Vec<(DateTime<Utc>, f64)>>,
}

impl<'a> SpotIndex<'a> {
    /// Indexes a snapshot's spot price points.
    pub fn new(points: &'a [crate::model::SpotPricePoint]) -> Self {
        let mut index: HashMap<_, Vec<_>> = HashMap::new();
        for p in points {
            index
                .entry((
                    p.product_description.as_str(),
                    p.availability_zone.as_str(),
                    p.instance_type.as_str(),
                ))
                .or_default()
                .push((p.timestamp, p.price));
        }
        for v in index.values_mut() {
            v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        }
        SpotIndex { points: index }
    }

    /// The spot price of a pool judged over the window ending at `now`: the highest of the
    /// price in effect when the window opened and every price since. Seed 001's lesson: one
    /// tick is noise. `None` when the pool has no known price.
    pub fn price(
        &self,
        product: &str,
        az: &str,
        ty: &str,
        now: DateTime<Utc>,
        window_minutes: u32,
    ) -> Option<f64> {
        let points = self.points.get(&(product, az, ty))?;
        let start = now - Duration::minutes(i64::from(window_minutes));
        let first_in = points.partition_point(|(t, _)| *t < start);
        let from = first_in.saturating_sub(1);
        points[from..]
            .iter()
            .map(|(_, p)| *p)
            .filter(|p| *p > 0.0)
            .reduce(f64::max)
    }
}

/// A spot pool for one product: (product description, AZ, instance type).
type PoolKey<'a> = (&'a str, &'a str, &'a str);

impl<'a> Context<'a> {
    fn new(snap: &'a Snapshot, settings: &'a Settings, now: DateTime<Utc>) -> Self {
        let mut clones: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
        for i in snap.instances.values() {
            if let Some((group, _)) = i.clone_of()
                && !i.state.is_gone()
            {
                clones.entry(group).or_default().push(i);
            }
        }
        let spot = SpotIndex::new(&snap.spot_prices);
        Context {
            snap,
            settings,
            now,
            clones,
            spot,
        }
    }

    fn spot_price(&self, product: &str, az: &str, ty: &str, window_minutes: u32) -> Option<f64> {
        self.spot.price(product, az, ty, self.now, window_minutes)
    }

    fn spot_source(window_minutes: u32) -> String {
        format!("spot price history, highest over {window_minutes} min")
    }

    /// An orphan-termination decision, costed at the clone's spot price.
    fn orphan(
        &self,
        group: &str,
        clone: &Instance,
        reason: OrphanReason,
        pricing: Option<&GroupPricing>,
    ) -> Decision {
        let window = pricing.map_or(self.settings.group.spot_price_window_minutes, |p| p.window);
        let product = pricing.map_or(Os::Linux.spot_product_description(), |p| &p.product);
        let os = pricing.map_or(Os::Linux, |p| p.os);
        let price = self.spot_price(
            product,
            &clone.availability_zone,
            &clone.instance_type,
            window,
        );
        Decision {
            group: group.to_string(),
            instance: Some(clone.instance_id.clone()),
            verdict: Verdict::Act(Action::TerminateOrphan {
                clone: clone.instance_id.clone(),
                reason,
            }),
            hourly_cost_before: price,
            hourly_cost_after: Some(0.0),
            prices: price
                .map(|p| PriceUsed {
                    instance_type: clone.instance_type.clone(),
                    market: Market::Spot,
                    availability_zone: Some(clone.availability_zone.clone()),
                    os,
                    price: p,
                    source: Self::spot_source(window),
                })
                .into_iter()
                .collect(),
        }
    }
}

/// How a group is priced: its OS, spot product and multiplier.
#[derive(Clone)]
struct GroupPricing {
    os: Os,
    product: String,
    multiplier: f64,
    window: u32,
}

/// A skip of a whole group, costed at what the group's in-service instances cost now (a skip
/// changes nothing, so before and after are equal; `None` when a price is unknown).
fn group_skip(ctx: &Context, group: &Group, skip: Skip) -> Decision {
    // The group's own settings where they can be read, the global ones otherwise.
    let policy = ctx
        .settings
        .for_group(&group.tags)
        .unwrap_or_else(|_| ctx.settings.group.clone());
    let os = ctx
        .snap
        .group_os(group, policy.spot_product_description.as_deref());
    let pricing = GroupPricing {
        os,
        product: policy
            .spot_product_description
            .clone()
            .unwrap_or_else(|| os.spot_product_description().to_string()),
        multiplier: policy.on_demand_price_multiplier,
        window: policy.spot_price_window_minutes,
    };
    let mut total = Some(0.0);
    let mut prices: Vec<PriceUsed> = Vec::new();
    for m in group.members.iter().filter(|m| m.is_in_service()) {
        let Some(i) = ctx.snap.instances.get(&m.instance_id) else {
            total = None;
            continue;
        };
        let price = match i.market {
            Market::OnDemand => on_demand_price(ctx, &pricing, &i.instance_type),
            Market::Spot => swap_prices(ctx, &pricing, i),
        };
        match price {
            Some(p) => {
                total = total.map(|t| t + p.price);
                if !prices.contains(&p) {
                    prices.push(p);
                }
            }
            None => total = None,
        }
    }
    Decision {
        group: group.name.clone(),
        instance: None,
        verdict: Verdict::Skip(skip),
        hourly_cost_before: total,
        hourly_cost_after: total,
        prices,
    }
}

/// A clone of this group, as classified for this pass.
enum CloneState<'a> {
    /// Attached and done, or attached with the replaced instance still there.
    Attached {
        clone: &'a Instance,
        replaced_still_member: bool,
    },
    /// Unattached, replaced instance still in service: waiting or ready.
    Pending { clone: &'a Instance, ready: bool },
}

fn plan_group(ctx: &Context, group: &Group, out: &mut Vec<Decision>) {
    let clones: &[&Instance] = ctx.clones.get(group.name.as_str()).map_or(&[], |v| v);
    let unattached =
        |c: &&&Instance| c.auto_scaling_group.is_none() && group.member(&c.instance_id).is_none();

    if !ctx.settings.opts_in(&group.tags) {
        out.push(group_skip(ctx, group, Skip::NotOptedIn));
        for c in clones.iter().filter(unattached) {
            out.push(ctx.orphan(&group.name, c, OrphanReason::GroupNotOptedIn, None));
        }
        return;
    }
    let policy = match ctx.settings.for_group(&group.tags) {
        Ok(p) => p,
        Err(e) => {
            let tag = e
                .source
                .strip_prefix("tag ")
                .unwrap_or(&e.source)
                .to_string();
            out.push(group_skip(
                ctx,
                group,
                Skip::InvalidSetting {
                    setting: e.setting,
                    tag,
                    value: e.value,
                    problem: e.problem,
                },
            ));
            return;
        }
    };
    let leftover_max = match group.tags.get(tags::MAX_SIZE) {
        None => None,
        Some(v) => match v.trim().parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                out.push(group_skip(
                    ctx,
                    group,
                    Skip::InvalidProtocolTag {
                        tag: tags::MAX_SIZE.into(),
                        value: v.clone(),
                    },
                ));
                return;
            }
        },
    };
    let interruptions = match parse_interruptions(group.tags.get(tags::INTERRUPTED)) {
        Ok(v) => v,
        Err(value) => {
            out.push(group_skip(
                ctx,
                group,
                Skip::InvalidProtocolTag {
                    tag: tags::INTERRUPTED.into(),
                    value,
                },
            ));
            return;
        }
    };

    // How the group is priced needs its launch spec and AMI; orphan clean-up does not, so a
    // group whose spec is unreadable still gets its clones cleaned up with Linux prices.
    let launch = resolve_launch(ctx, group, &policy);
    let pricing = launch.as_ref().ok().map(|l| l.pricing.clone());
    // Whether spotswap may launch and swap in this group now; clean-up happens either way.
    let blocked = eligibility(ctx, group, &policy);
    let can_swap = blocked.is_none() && launch.is_ok();

    // 1. Classify clones: attached, pending, or orphans.
    let grace = Duration::seconds(i64::from(group.health_check_grace_period_secs));
    let timeout = grace + Duration::minutes(i64::from(policy.orphan_timeout_minutes));
    let mut states = Vec::new();
    let mut orphans: Vec<(&Instance, OrphanReason)> = Vec::new();
    let mut by_target: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
    for c in clones {
        let (_, replaces) = c.clone_of().expect("clones are tagged");
        if !unattached(&c) {
            let replaced_still_member = group.member(&c.instance_id).is_some()
                && group
                    .member(replaces)
                    .is_some_and(|m| !m.lifecycle_state.starts_with("Terminating"));
            states.push(CloneState::Attached {
                clone: c,
                replaced_still_member,
            });
            continue;
        }
        let target_ok = group.member(replaces).is_some_and(Member::is_in_service)
            && ctx
                .snap
                .instances
                .get(replaces)
                .is_some_and(|i| !i.state.is_gone());
        if !target_ok {
            orphans.push((c, OrphanReason::TargetGone));
        } else if matches!(c.state, InstanceState::Stopped | InstanceState::Stopping) {
            orphans.push((c, OrphanReason::NotRunning));
        } else if ctx.now - c.launch_time > timeout
            && !(can_swap && c.state == InstanceState::Running)
        {
            // A clone that can be swapped in now is, however long it waited: terminating it
            // and launching another would only pay twice for the same capacity.
            orphans.push((c, OrphanReason::Timeout));
        } else {
            by_target.entry(replaces).or_default().push(c);
        }
    }
    for (_, mut cs) in by_target {
        // Keep one clone per target: running first, then the oldest, then by id.
        cs.sort_by(|a, b| {
            (a.state != InstanceState::Running)
                .cmp(&(b.state != InstanceState::Running))
                .then(a.launch_time.cmp(&b.launch_time))
                .then(a.instance_id.cmp(&b.instance_id))
        });
        for extra in &cs[1..] {
            orphans.push((extra, OrphanReason::Duplicate));
        }
        let keep = cs[0];
        let ready = keep.state == InstanceState::Running && ctx.now - keep.launch_time >= grace;
        states.push(CloneState::Pending { clone: keep, ready });
    }

    // 2. Finish swaps a previous pass left half done.
    let mut completing: BTreeSet<&str> = BTreeSet::new();
    let mut desired = group.desired_capacity;
    for s in &states {
        if let CloneState::Attached {
            clone,
            replaced_still_member: true,
        } = s
        {
            let (_, replaces) = clone.clone_of().expect("clones are tagged");
            out.push(swap_decision(
                ctx,
                group,
                pricing.as_ref(),
                &policy,
                clone,
                replaces,
                Action::CompleteSwap {
                    clone: clone.instance_id.clone(),
                    replaces: replaces.to_string(),
                },
            ));
            desired = desired.saturating_sub(1);
            completing.insert(replaces);
        }
    }

    // 3. Restore a MaxSize a previous pass left raised. Never below desired capacity, which
    // Auto Scaling would refuse.
    let mut max_size = group.max_size;
    if let Some(original) = leftover_max {
        let restored = original.max(desired);
        out.push(Decision {
            group: group.name.clone(),
            instance: None,
            verdict: Verdict::Act(Action::RestoreMaxSize {
                current: group.max_size,
                restored,
            }),
            hourly_cost_before: Some(0.0),
            hourly_cost_after: Some(0.0),
            prices: Vec::new(),
        });
        max_size = restored;
    }

    // 4. Orphans.
    orphans.sort_by(|a, b| a.0.instance_id.cmp(&b.0.instance_id));
    for (c, reason) in &orphans {
        out.push(ctx.orphan(&group.name, c, *reason, pricing.as_ref()));
    }

    // 5. Is the group one spotswap may change now?
    if let Some(skip) = blocked {
        out.push(group_skip(ctx, group, skip));
        return;
    }
    let launch = match launch {
        Ok(l) => l,
        Err(skip) => {
            out.push(group_skip(ctx, group, skip));
            return;
        }
    };

    // 6. Swaps of ready clones, and waits for the others, within the on-demand floor.
    // An instance whose swap is being completed is leaving: it is neither capacity to keep
    // nor an instance to replace.
    let in_service: Vec<&Member> = group
        .members
        .iter()
        .filter(|m| m.is_in_service() && !completing.contains(m.instance_id.as_str()))
        .collect();
    let on_demand_ids: BTreeSet<&str> = in_service
        .iter()
        .filter(|m| {
            ctx.snap
                .instances
                .get(&m.instance_id)
                .is_some_and(|i| i.market == Market::OnDemand)
        })
        .map(|m| m.instance_id.as_str())
        .collect();
    let keep = policy.min_on_demand(in_service.len() as u32);
    let mut on_demand = on_demand_ids.len() as u32;
    let mut in_flight: BTreeSet<&str> = BTreeSet::new();
    let mut unready = 0u32;
    let mut pending: Vec<(&Instance, bool)> = states
        .iter()
        .filter_map(|s| match s {
            CloneState::Pending { clone, ready } => Some((*clone, *ready)),
            CloneState::Attached { .. } => None,
        })
        .collect();
    pending.sort_by(|a, b| a.0.instance_id.cmp(&b.0.instance_id));
    let mut kept: Vec<&Instance> = Vec::new();
    for (clone, ready) in pending {
        let (_, replaces) = clone.clone_of().expect("clones are tagged");
        if on_demand <= keep {
            out.push(ctx.orphan(
                &group.name,
                clone,
                OrphanReason::NotNeeded,
                Some(&launch.pricing),
            ));
            continue;
        }
        on_demand -= 1;
        in_flight.insert(replaces);
        kept.push(clone);
        if ready {
            // The attach raises desired capacity by one and fails past MaxSize (DESIGN.md
            // section 9), so a full group gets one more slot for the length of the swap.
            let max_change = (desired + 1 > max_size).then_some(MaxSizeChange {
                original: max_size,
                raised: desired + 1,
            });
            out.push(swap_decision(
                ctx,
                group,
                Some(&launch.pricing),
                &policy,
                clone,
                replaces,
                Action::Swap {
                    clone: clone.instance_id.clone(),
                    replaces: replaces.to_string(),
                    max_size: max_change,
                },
            ));
        } else {
            unready += 1;
            let skip = if clone.state == InstanceState::Running {
                let ready_at = clone.launch_time + grace;
                Skip::CloneNotReady {
                    clone: clone.instance_id.clone(),
                    ready_in_seconds: (ready_at - ctx.now).num_seconds().max(0),
                }
            } else {
                Skip::CloneStarting {
                    clone: clone.instance_id.clone(),
                    state: clone.state,
                }
            };
            let mut d = instance_decision(ctx, group, &launch.pricing, replaces, skip);
            if let Some(p) = swap_prices(ctx, &launch.pricing, clone) {
                d.hourly_cost_after = Some(p.price);
                d.prices.push(p);
            }
            out.push(d);
        }
    }

    // An instance whose clone was just terminated as stuck waits one pass before the next
    // try, so a launch that keeps failing costs one clone per pass at most, not two.
    let retry_next_pass: BTreeMap<&str, &str> = orphans
        .iter()
        .filter(|(_, r)| matches!(r, OrphanReason::Timeout | OrphanReason::NotRunning))
        .map(|(c, _)| {
            let (_, replaces) = c.clone_of().expect("clones are tagged");
            (replaces, c.instance_id.as_str())
        })
        .collect();

    // 7. Launch clones for a batch of on-demand instances, spread over AZs.
    plan_launches(
        ctx,
        group,
        &policy,
        &launch,
        &interruptions,
        LaunchState {
            on_demand_ids,
            on_demand,
            keep,
            in_flight,
            unready,
            kept,
            retry_next_pass,
        },
        out,
    );
}

/// What the launch step starts from, after swaps.
struct LaunchState<'a> {
    on_demand_ids: BTreeSet<&'a str>,
    /// On-demand instances left once in-flight clones are swapped in.
    on_demand: u32,
    keep: u32,
    /// Instances that already have a clone.
    in_flight: BTreeSet<&'a str>,
    /// Clones still waiting after this pass.
    unready: u32,
    /// Clones that stay in flight (waiting or being swapped in this pass).
    kept: Vec<&'a Instance>,
    /// Instances whose clone this pass terminates as stuck, by that clone.
    retry_next_pass: BTreeMap<&'a str, &'a str>,
}

/// Why spotswap must not launch or swap in this group now, if so.
fn eligibility(ctx: &Context, group: &Group, policy: &GroupSettings) -> Option<Skip> {
    // Mixed instances policies already buy spot their own way; warm pools and instance
    // refreshes replace instances behind our back. AutoSpotting skipped the first silently.
    if group.mixed_instances_policy {
        return Some(Skip::MixedInstancesPolicy);
    }
    if group.warm_pool {
        return Some(Skip::WarmPool);
    }
    if group.instance_refresh_in_progress {
        return Some(Skip::InstanceRefreshInProgress);
    }
    let suspended: Vec<String> = group
        .suspended_processes
        .iter()
        .filter(|p| BLOCKING_PROCESSES.contains(&p.as_str()))
        .cloned()
        .collect();
    if !suspended.is_empty() {
        return Some(Skip::ProcessesSuspended {
            processes: suspended,
        });
    }
    if !policy
        .cron_schedule
        .allows(ctx.now, policy.cron_timezone, policy.cron_schedule_state)
    {
        return Some(Skip::OutsideSchedule {
            schedule: policy.cron_schedule.to_string(),
            timezone: policy.cron_timezone.name().to_string(),
            state: match policy.cron_schedule_state {
                crate::schedule::ScheduleState::On => "on".into(),
                crate::schedule::ScheduleState::Off => "off".into(),
            },
        });
    }
    None
}

/// The group's launch spec, AMI and pricing, resolved.
struct Launch<'a> {
    launch_ref: &'a LaunchRef,
    ami_needs_from: &'a crate::model::Ami,
    ephemeral: u32,
    pricing: GroupPricing,
}

fn resolve_launch<'a>(
    ctx: &Context<'a>,
    group: &'a Group,
    policy: &GroupSettings,
) -> Result<Launch<'a>, Skip> {
    let Some(launch_ref) = group.launch.as_ref() else {
        return Err(Skip::NoLaunchSpec { launch: None });
    };
    let Some(spec) = ctx.snap.launch_specs.get(&launch_ref.key()) else {
        return Err(Skip::NoLaunchSpec {
            launch: Some(launch_ref.to_string()),
        });
    };
    let Some(ami) = ctx.snap.amis.get(&spec.image_id) else {
        return Err(Skip::AmiNotFound {
            image_id: spec.image_id.clone(),
        });
    };
    let (os, product) = match &policy.spot_product_description {
        Some(p) => (
            Os::from_product_description(p).expect("validated by settings"),
            p.clone(),
        ),
        None => {
            let os = Os::of_ami(ami);
            (os, os.spot_product_description().to_string())
        }
    };
    Ok(Launch {
        launch_ref,
        ami_needs_from: ami,
        ephemeral: spec.ephemeral_mappings().max(ami.ephemeral_mappings()),
        pricing: GroupPricing {
            os,
            product,
            multiplier: policy.on_demand_price_multiplier,
            window: policy.spot_price_window_minutes,
        },
    })
}

/// The on-demand price of a type for the group, multiplied, with its provenance.
fn on_demand_price(ctx: &Context, pricing: &GroupPricing, ty: &str) -> Option<PriceUsed> {
    let list = ctx.snap.on_demand.price(ty, pricing.os)?;
    Some(PriceUsed {
        instance_type: ty.to_string(),
        market: Market::OnDemand,
        availability_zone: None,
        os: pricing.os,
        price: list * pricing.multiplier,
        source: format!(
            "{}{}",
            ctx.snap.on_demand.source,
            if pricing.multiplier == 1.0 {
                String::new()
            } else {
                format!(" x {}", pricing.multiplier)
            }
        ),
    })
}

/// The spot price a clone runs at, with its provenance.
fn swap_prices(ctx: &Context, pricing: &GroupPricing, clone: &Instance) -> Option<PriceUsed> {
    let price = ctx.spot_price(
        &pricing.product,
        &clone.availability_zone,
        &clone.instance_type,
        pricing.window,
    )?;
    Some(PriceUsed {
        instance_type: clone.instance_type.clone(),
        market: Market::Spot,
        availability_zone: Some(clone.availability_zone.clone()),
        os: pricing.os,
        price,
        source: Context::spot_source(pricing.window),
    })
}

/// A decision about one on-demand instance, costed at its on-demand price both before and
/// after (a skip changes nothing).
fn instance_decision(
    ctx: &Context,
    group: &Group,
    pricing: &GroupPricing,
    instance_id: &str,
    skip: Skip,
) -> Decision {
    let od = ctx
        .snap
        .instances
        .get(instance_id)
        .and_then(|i| on_demand_price(ctx, pricing, &i.instance_type));
    Decision {
        group: group.name.clone(),
        instance: Some(instance_id.to_string()),
        verdict: Verdict::Skip(skip),
        hourly_cost_before: od.as_ref().map(|p| p.price),
        hourly_cost_after: od.as_ref().map(|p| p.price),
        prices: od.into_iter().collect(),
    }
}

/// A swap or swap completion, costed: the replaced instance's on-demand price before, the
/// clone's spot price after.
fn swap_decision(
    ctx: &Context,
    group: &Group,
    pricing: Option<&GroupPricing>,
    policy: &GroupSettings,
    clone: &Instance,
    replaces: &str,
    action: Action,
) -> Decision {
    let fallback = GroupPricing {
        os: Os::Linux,
        product: Os::Linux.spot_product_description().into(),
        multiplier: policy.on_demand_price_multiplier,
        window: policy.spot_price_window_minutes,
    };
    let pricing = pricing.unwrap_or(&fallback);
    let od = ctx
        .snap
        .instances
        .get(replaces)
        .and_then(|i| on_demand_price(ctx, pricing, &i.instance_type));
    let spot = swap_prices(ctx, pricing, clone);
    Decision {
        group: group.name.clone(),
        instance: Some(replaces.to_string()),
        verdict: Verdict::Act(action),
        hourly_cost_before: od.as_ref().map(|p| p.price),
        hourly_cost_after: spot.as_ref().map(|p| p.price),
        prices: od.into_iter().chain(spot).collect(),
    }
}

/// Parses `spotswap:interrupted`: space-separated `TYPE@AZ@RFC3339` entries. `Err` carries
/// the unreadable value.
pub fn parse_interruptions(
    value: Option<&String>,
) -> Result<Vec<(String, String, DateTime<Utc>)>, String> {
    let Some(v) = value else {
        return Ok(Vec::new());
    };
    v.split_whitespace()
        .map(|entry| {
            let mut parts = entry.splitn(3, '@');
            match (parts.next(), parts.next(), parts.next()) {
                (Some(t), Some(az), Some(at)) if !t.is_empty() && !az.is_empty() => {
                    let at = DateTime::parse_from_rfc3339(at)
                        .map_err(|_| v.clone())?
                        .with_timezone(&Utc);
                    Ok((t.to_string(), az.to_string(), at))
                }
                _ => Err(v.clone()),
            }
        })
        .collect()
}

/// Formats one `spotswap:interrupted` entry.
pub fn interruption_entry(instance_type: &str, az: &str, at: DateTime<Utc>) -> String {
    format!(
        "{instance_type}@{az}@{}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

fn plan_launches(
    ctx: &Context,
    group: &Group,
    policy: &GroupSettings,
    launch: &Launch,
    interruptions: &[(String, String, DateTime<Utc>)],
    state: LaunchState,
    out: &mut Vec<Decision>,
) {
    let pricing = &launch.pricing;
    // Candidates: on-demand, in service, healthy, unprotected, running, without a clone.
    let mut victims: Vec<&Instance> = Vec::new();
    for id in &state.on_demand_ids {
        if state.in_flight.contains(id) {
            continue;
        }
        if let Some(clone) = state.retry_next_pass.get(id) {
            let skip = Skip::PreviousCloneTerminated {
                clone: clone.to_string(),
            };
            out.push(instance_decision(ctx, group, pricing, id, skip));
            continue;
        }
        let member = group.member(id).expect("ids come from members");
        let instance = ctx
            .snap
            .instances
            .get(*id)
            .expect("on-demand ids are known instances");
        let skip = if !member.is_healthy() {
            Some(Skip::Unhealthy)
        } else if member.protected_from_scale_in {
            Some(Skip::ProtectedFromScaleIn)
        } else if instance.state != InstanceState::Running {
            Some(Skip::NotRunning {
                state: instance.state,
            })
        } else {
            None
        };
        match skip {
            Some(s) => out.push(instance_decision(ctx, group, pricing, id, s)),
            None => victims.push(instance),
        }
    }
    // On-demand members not in service are left to Auto Scaling.
    for m in &group.members {
        if !m.is_in_service()
            && ctx
                .snap
                .instances
                .get(&m.instance_id)
                .is_some_and(|i| i.market == Market::OnDemand)
        {
            out.push(instance_decision(
                ctx,
                group,
                pricing,
                &m.instance_id,
                Skip::NotInService {
                    lifecycle_state: m.lifecycle_state.clone(),
                },
            ));
        }
    }

    let room = state.on_demand.saturating_sub(state.keep);
    let replaceable = (victims.len() as u32).min(room);
    let allowance = policy
        .replacements_per_pass
        .allowance(replaceable + state.unready);
    let limit = allowance.saturating_sub(state.unready).min(replaceable);

    // Types already in use in the group, so launches rotate over the cheapest pools.
    let mut usage: BTreeMap<String, u32> = BTreeMap::new();
    for m in &group.members {
        if let Some(i) = ctx.snap.instances.get(&m.instance_id)
            && i.market == Market::Spot
        {
            *usage.entry(i.instance_type.clone()).or_default() += 1;
        }
    }
    // Clones this pass terminates do not count: their pools are not in use any more.
    for c in &state.kept {
        *usage.entry(c.instance_type.clone()).or_default() += 1;
    }

    let mut launched = 0u32;
    let mut batch_limited = 0u32;
    for victim in spread_over_azs(victims) {
        let id = victim.instance_id.as_str();
        // Past the floor, an instance will stay on-demand whatever the batch: say so.
        if launched + batch_limited >= room {
            out.push(instance_decision(
                ctx,
                group,
                pricing,
                id,
                Skip::MinOnDemand {
                    keep: state.keep,
                    on_demand: state.on_demand_ids.len() as u32,
                },
            ));
            continue;
        }
        if launched >= limit {
            batch_limited += 1;
            out.push(instance_decision(
                ctx,
                group,
                pricing,
                id,
                Skip::BatchLimit { limit },
            ));
            continue;
        }
        match launch_for(ctx, group, policy, launch, interruptions, &usage, victim) {
            Ok(d) => {
                if let Verdict::Act(Action::LaunchClone { candidates, .. }) = &d.verdict {
                    *usage
                        .entry(candidates[0].instance_type.clone())
                        .or_default() += 1;
                }
                out.push(d);
                launched += 1;
            }
            Err(skip) => out.push(instance_decision(ctx, group, pricing, id, skip)),
        }
    }
}

/// Orders instances so that consecutive picks come from the AZ with the most on-demand
/// instances left, oldest instance first within an AZ: a batch never drains one AZ.
fn spread_over_azs(victims: Vec<&Instance>) -> Vec<&Instance> {
    let mut by_az: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
    for v in victims {
        by_az
            .entry(v.availability_zone.as_str())
            .or_default()
            .push(v);
    }
    for list in by_az.values_mut() {
        // Reversed, so pop() takes the oldest.
        list.sort_by(|a, b| {
            b.launch_time
                .cmp(&a.launch_time)
                .then(b.instance_id.cmp(&a.instance_id))
        });
    }
    let mut out = Vec::new();
    loop {
        let next = by_az
            .iter()
            .filter(|(_, l)| !l.is_empty())
            .max_by(|a, b| a.1.len().cmp(&b.1.len()).then(b.0.cmp(a.0)))
            .map(|(az, _)| *az);
        let Some(az) = next else { break };
        let list = by_az.get_mut(az).expect("key from map");
        out.push(list.pop().expect("non-empty"));
    }
    out
}

/// Chooses and ranks the candidate types for one instance, or says why there are none.
fn launch_for(
    ctx: &Context,
    group: &Group,
    policy: &GroupSettings,
    launch: &Launch,
    interruptions: &[(String, String, DateTime<Utc>)],
    usage: &BTreeMap<String, u32>,
    victim: &Instance,
) -> Result<Decision, Skip> {
    let pricing = &launch.pricing;
    let Some(base) = ctx.snap.instance_types.get(&victim.instance_type) else {
        return Err(Skip::UnknownInstanceType {
            instance_type: victim.instance_type.clone(),
        });
    };
    let Some(od) = on_demand_price(ctx, pricing, &victim.instance_type) else {
        return Err(Skip::NoOnDemandPrice {
            instance_type: victim.instance_type.clone(),
            os: pricing.os,
        });
    };
    let list_price = od.price / pricing.multiplier;
    let req = Requirements {
        base,
        ami: AmiNeeds::from_ami(launch.ami_needs_from, base),
        ephemeral_mappings: launch.ephemeral,
        allowed: &policy.allowed_instance_types,
        disallowed: &policy.disallowed_instance_types,
        allow_burstable: policy.allow_burstable,
    };
    let az = victim.availability_zone.as_str();
    let offered = ctx.snap.offerings.get(az);
    let cooldown = Duration::minutes(i64::from(policy.interruption_cooldown_minutes));
    let mut rejected: BTreeMap<Reason, u32> = BTreeMap::new();
    let mut ok: Vec<Candidate> = Vec::new();
    for c in ctx.snap.instance_types.values() {
        match judge(
            ctx,
            &req,
            c,
            az,
            offered,
            interruptions,
            cooldown,
            pricing,
            od.price,
        ) {
            Ok(price) => ok.push(Candidate {
                instance_type: c.instance_type.clone(),
                spot_price: price,
            }),
            Err(r) => *rejected.entry(r).or_default() += 1,
        }
    }
    if ok.is_empty() {
        return Err(Skip::NoCheaperType { rejected });
    }
    let candidates = rank(ok, usage);
    let first = &candidates[0];
    let spot = PriceUsed {
        instance_type: first.instance_type.clone(),
        market: Market::Spot,
        availability_zone: Some(az.to_string()),
        os: pricing.os,
        price: first.spot_price,
        source: Context::spot_source(pricing.window),
    };
    Ok(Decision {
        group: group.name.clone(),
        instance: Some(victim.instance_id.clone()),
        hourly_cost_before: Some(od.price),
        hourly_cost_after: Some(first.spot_price),
        prices: vec![od, spot],
        verdict: Verdict::Act(Action::LaunchClone {
            replaces: victim.instance_id.clone(),
            replaced_type: victim.instance_type.clone(),
            availability_zone: az.to_string(),
            subnet_id: victim.subnet_id.clone(),
            launch: launch.launch_ref.clone(),
            candidates,
            max_price: list_price,
            product_description: pricing.product.clone(),
        }),
    })
}

/// Judges one candidate type for one instance: compatibility, then placement and price.
/// Returns the windowed spot price of an eligible candidate.
#[allow(clippy::too_many_arguments)]
fn judge(
    ctx: &Context,
    req: &Requirements,
    c: &InstanceTypeSpec,
    az: &str,
    offered: Option<&BTreeSet<String>>,
    interruptions: &[(String, String, DateTime<Utc>)],
    cooldown: Duration,
    pricing: &GroupPricing,
    limit: f64,
) -> Result<f64, Reason> {
    req.check(c)?;
    if offered.is_some_and(|o| !o.contains(&c.instance_type)) {
        return Err(Reason::NotOffered);
    }
    if interruptions
        .iter()
        .any(|(t, z, at)| *t == c.instance_type && z == az && ctx.now - *at < cooldown)
    {
        return Err(Reason::RecentlyInterrupted);
    }
    // Unknown price = not eligible, never "free" (DESIGN.md section 4).
    let price = ctx
        .spot_price(&pricing.product, az, &c.instance_type, pricing.window)
        .ok_or(Reason::NoSpotPrice)?;
    if price > limit {
        return Err(Reason::TooExpensive);
    }
    Ok(price)
}

/// Ranks eligible candidates: the [`DIVERSITY_WIDTH`] cheapest first, least used in the group
/// first among them, then the rest by price. Ties break by name, so plans are stable.
fn rank(mut ok: Vec<Candidate>, usage: &BTreeMap<String, u32>) -> Vec<Candidate> {
    ok.sort_by(|a, b| {
        a.spot_price
            .total_cmp(&b.spot_price)
            .then(a.instance_type.cmp(&b.instance_type))
    });
    let width = DIVERSITY_WIDTH.min(ok.len());
    let used = |c: &Candidate| usage.get(&c.instance_type).copied().unwrap_or(0);
    ok[..width].sort_by(|a, b| {
        used(a)
            .cmp(&used(b))
            .then(a.spot_price.total_cmp(&b.spot_price))
            .then(a.instance_type.cmp(&b.instance_type))
    });
    ok.truncate(MAX_CANDIDATES);
    ok
}
