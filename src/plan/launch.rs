//! Launch choice: which on-demand instances get a spot clone this pass, and of which types;
//! and, for a group below its on-demand floor, which spot members get an on-demand instance
//! of the group's own type in their place.
//!
//! Instances are taken from the AZ with the most on-demand instances left, oldest first, so a
//! batch never drains one AZ. For each, every known instance type is judged: compatibility
//! ([`crate::compat`]), offering in the AZ, the interruption cool-down, and a known spot price
//! at most the on-demand price times the multiplier (an unknown price is never "free"). The
//! eligible types are ranked by price, the closest in size first at equal prices, the AZ's
//! preferred pools least used first (up to `pools-per-az` cheapest, within
//! `spread-price-margin` of the cheapest, and enough for the group to span 3 pools: [`spread`]),
//! instead of racing to the single cheapest one, which concentrates interruptions. The clones
//! of one AZ and replaced type form one batch, split over one disjoint pool set per preferred
//! pool: one EC2 Fleet request each
//! (or one `RunInstances` per clone for a spec whose network interfaces must be restated).
//! Pure.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;

use crate::compat::{AmiNeeds, Reason, Requirements};
use crate::model::{Instance, InstanceTypeSpec, Market};
use crate::pricing::{GroupPricing, PriceUsed, spot_source};
use crate::protocol::{self, Interruption, PoolTrouble};
use crate::settings::GroupSettings;

use super::clones::{LaunchState, may_replace};
use super::eligibility::Launch;
use super::{
    Action, AvoidedPool, Candidate, Ctx, Decision, FleetRequest, GroupCtx, Skip, Verdict, costs,
};

/// Candidates whose spot prices are this close (relative to the cheaper) count as the same
/// price, and the one closest in size to the replaced type ranks first: at equal prices a
/// 48-vCPU clone of a 2-vCPU instance only wastes what it reserves (and its ENIs and IPs).
pub const PRICE_MARGIN: f64 = 0.02;

/// Candidate types handed to one launch, in order: capacity errors fall through to the next.
pub const MAX_CANDIDATES: usize = 8;

/// The fewest spot pools a group spreads over in all, whatever `spread-price-margin` says: one
/// pool's interruption then takes out at most about a third of the group.
pub const MIN_POOLS_PER_GROUP: usize = 3;

/// What every launch of one group reads.
pub struct GroupLaunches<'a> {
    pub g: GroupCtx<'a>,
    pub policy: &'a GroupSettings,
    pub launch: &'a Launch<'a>,
    /// Pools that recently interrupted the group.
    pub interruptions: &'a [Interruption],
    /// The AZs the group's instances run in: how many pools per AZ give it
    /// [`MIN_POOLS_PER_GROUP`] in all.
    pub azs: usize,
}

impl<'a> GroupLaunches<'a> {
    /// Plans this pass's launches for the group: a batch of its on-demand instances, spread
    /// over AZs, within the on-demand floor and the `replacements-per-pass` budget; every
    /// instance not launched for gets a skip with the reason.
    pub fn plan(&self, state: LaunchState, out: &mut Vec<Decision>) {
        self.replace_on_demand(&state, out);
        if state.on_demand < state.keep {
            self.restore_floor(&state, out);
        }
    }

    /// Spot clones for a batch of the on-demand instances above the floor.
    fn replace_on_demand(&self, state: &LaunchState, out: &mut Vec<Decision>) {
        let g = self.g;
        let GroupCtx { ctx, group, .. } = g;
        let policy = self.policy;
        // Candidates: on-demand, in service, healthy, unprotected, running, without a clone.
        let victims = self.replaceable(&state.on_demand_ids, state, out);
        // On-demand members not in service are left to Auto Scaling.
        for m in &group.members {
            if !m.is_in_service()
                && ctx
                    .snap()
                    .instances
                    .get(&m.instance_id)
                    .is_some_and(|i| i.market == Market::OnDemand)
            {
                out.push(costs::instance_skip(
                    g,
                    &m.instance_id,
                    Skip::NotInService {
                        lifecycle_state: m.lifecycle_state.clone(),
                    },
                ));
            }
        }

        let room = state.on_demand.saturating_sub(state.keep);
        let replaceable = (victims.len() as u32).min(room);
        // The batch is a share of what the group converts in all (its in-service instances
        // above the floor), not of what is left: a share of what is left shrinks every pass,
        // and a group of N would take many more than N / batch passes. Clones still in flight
        // count against it.
        let convertible = state.in_service.saturating_sub(state.keep);
        let allowance = policy.replacements_per_pass.allowance(convertible);
        let limit = allowance.saturating_sub(state.unready).min(replaceable);

        // Pools (type and AZ) already in use in the group, so launches rotate over the
        // cheapest pools of each AZ.
        let mut usage: BTreeMap<Pool, u32> = BTreeMap::new();
        for m in &group.members {
            if let Some(i) = ctx.snap().instances.get(&m.instance_id)
                && i.market == Market::Spot
            {
                *usage.entry(pool_of(i)).or_default() += 1;
            }
        }
        // Clones this pass terminates do not count: their pools are not in use any more.
        for c in &state.kept {
            *usage.entry(pool_of(c)).or_default() += 1;
        }

        let mut chosen: Vec<&Instance> = Vec::new();
        let mut batch_limited = 0u32;
        // Candidates per AZ and replaced type, judged once: an instance with none is skipped
        // with the reason and takes no place in the batch.
        let mut ranked: BTreeMap<(&str, &str), Result<Ranked, Skip>> = BTreeMap::new();
        for victim in spread_over_azs(victims) {
            let id = victim.instance_id.as_str();
            let key = (
                victim.availability_zone.as_str(),
                victim.instance_type.as_str(),
            );
            let r = ranked
                .entry(key)
                .or_insert_with(|| ranked_for(self, &usage, key.0, key.1));
            if let Err(skip) = r {
                out.push(costs::instance_skip(g, id, skip.clone()));
                continue;
            }
            let launched = chosen.len() as u32;
            // Past the floor, an instance will stay on-demand whatever the batch: say so.
            if launched + batch_limited >= room {
                out.push(costs::instance_skip(
                    g,
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
                out.push(costs::instance_skip(g, id, Skip::BatchLimit { limit }));
                continue;
            }
            chosen.push(victim);
        }

        // One launch per AZ and replaced type: its clones share their candidates, split over
        // one disjoint pool set per preferred pool (one fleet each), so a batch spreads over
        // those pools while EC2 picks, within each set, a pool with capacity.
        let mut batches: BTreeMap<(&str, &str), Vec<&Instance>> = BTreeMap::new();
        for v in chosen {
            batches
                .entry((v.availability_zone.as_str(), v.instance_type.as_str()))
                .or_default()
                .push(v);
        }
        for ((az, ty), batch) in batches {
            let Some(Ok(ranked)) = ranked.get(&(az, ty)) else {
                unreachable!("a chosen instance has candidates")
            };
            let sets = pool_sets(&ranked.candidates, batch.len(), ranked.spread);
            for (n, v) in batch.iter().enumerate() {
                let set = n % sets.len();
                let candidates = sets[set].clone();
                *usage
                    .entry((candidates[0].instance_type.clone(), az.to_string()))
                    .or_default() += 1;
                let fallback: Vec<String> = ranked
                    .candidates
                    .iter()
                    .filter(|c| {
                        !candidates
                            .iter()
                            .any(|o| o.instance_type == c.instance_type)
                    })
                    .map(|c| c.instance_type.clone())
                    .collect();
                let fleet = self
                    .launch
                    .run_instances_because
                    .is_none()
                    .then(|| FleetRequest {
                        fallback,
                        key: format!("{az}/{ty}/{set}"),
                        strategy: policy.allocation_strategy,
                        template: self.launch.owned_template.clone(),
                    });
                out.push(self.launch_decision(v, ranked, candidates, fleet));
            }
        }
    }

    /// The launch of one clone for `victim`, offering `candidates`.
    fn launch_decision(
        &self,
        victim: &Instance,
        ranked: &Ranked,
        candidates: Vec<Candidate>,
        fleet: Option<FleetRequest>,
    ) -> Decision {
        let GroupCtx { group, pricing, .. } = self.g;
        let first = &candidates[0];
        let spot = PriceUsed {
            instance_type: first.instance_type.clone(),
            market: Market::Spot,
            availability_zone: Some(victim.availability_zone.clone()),
            os: pricing.os,
            price: first.spot_price,
            source: spot_source(pricing.window),
        };
        let (mut tags, mut tags_left_out) = protocol::launch_tags(group);
        protocol::add_launch_identity(&mut tags, &mut tags_left_out, &self.launch.identity);
        Decision {
            group: group.name.clone(),
            instance: Some(victim.instance_id.clone()),
            hourly_cost_before: Some(ranked.on_demand.price),
            hourly_cost_after: Some(first.spot_price),
            prices: vec![ranked.on_demand.clone(), spot],
            verdict: Verdict::Act(Action::LaunchClone {
                replaces: victim.instance_id.clone(),
                replaced_type: victim.instance_type.clone(),
                availability_zone: victim.availability_zone.clone(),
                subnet_id: victim.subnet_id.clone(),
                launch: self.launch.launch_ref.clone(),
                candidates,
                max_price: ranked.list_price,
                product_description: pricing.product.clone(),
                tags,
                tags_left_out,
                avoided: ranked.avoided.clone(),
                rejected: ranked.rejected.clone(),
                avoid_minutes: self.policy.interruption_cooldown_minutes,
                fleet,
                run_instances_because: self.launch.run_instances_because,
            }),
        }
    }

    /// Of the in-service members `ids`, those that may be replaced now: healthy, unprotected,
    /// running and without a clone in flight; every other one gets a skip with the reason.
    fn replaceable(
        &self,
        ids: &BTreeSet<&str>,
        state: &LaunchState,
        out: &mut Vec<Decision>,
    ) -> Vec<&'a Instance> {
        let g = self.g;
        let mut victims = Vec::new();
        for id in ids {
            if state.in_flight.contains(id) {
                continue;
            }
            match may_replace(g, id) {
                Ok(i) => victims.push(i),
                Err(s) => out.push(costs::instance_skip(g, id, s)),
            }
        }
        victims
    }

    /// The group runs fewer on-demand instances than it keeps (its floor rose, or scale-in
    /// removed on-demand instances): a batch of its spot members, spread over AZs, each get an
    /// on-demand instance of the group's own type to be swapped in in their place. The swap
    /// attaches before it removes, so capacity never drops below desired on the way.
    fn restore_floor(&self, state: &LaunchState, out: &mut Vec<Decision>) {
        let g = self.g;
        let GroupCtx {
            ctx,
            group,
            pricing,
        } = g;
        let Some(instance_type) = self.launch.on_demand_type else {
            out.push(costs::group_skip(
                g,
                Skip::NoOnDemandType {
                    keep: state.keep,
                    on_demand: state.on_demand,
                },
            ));
            return;
        };
        // The same rules as for an on-demand instance: the user's protection and what Auto
        // Scaling is busy with are respected.
        let victims = self.replaceable(&state.spot_ids, state, out);
        let missing = state.keep - state.on_demand;
        let wanted = (victims.len() as u32).min(missing);
        let limit = self
            .policy
            .replacements_per_pass
            .allowance(wanted + state.unready)
            .saturating_sub(state.unready)
            .min(wanted);
        let od = ctx.inputs.prices.on_demand(pricing, instance_type);
        for (n, victim) in spread_over_azs(victims).into_iter().enumerate() {
            let id = victim.instance_id.as_str();
            if n as u32 >= wanted {
                break;
            }
            if n as u32 >= limit {
                out.push(costs::instance_skip(g, id, Skip::BatchLimit { limit }));
                continue;
            }
            let now = ctx.inputs.prices.now(pricing, victim);
            let (mut tags, mut tags_left_out) =
                protocol::clone_tags_within_limit(group, Some(victim));
            protocol::add_launch_identity(&mut tags, &mut tags_left_out, &self.launch.identity);
            out.push(Decision {
                group: group.name.clone(),
                instance: Some(id.to_string()),
                hourly_cost_before: now.as_ref().map(|p| p.price),
                hourly_cost_after: od.as_ref().map(|p| p.price),
                prices: now.into_iter().chain(od.clone()).collect(),
                verdict: Verdict::Act(Action::LaunchOnDemand {
                    replaces: id.to_string(),
                    replaced_type: victim.instance_type.clone(),
                    instance_type: instance_type.to_string(),
                    availability_zone: victim.availability_zone.clone(),
                    subnet_id: victim.subnet_id.clone(),
                    launch: self.launch.launch_ref.clone(),
                    keep: state.keep,
                    on_demand: state.on_demand,
                    tags,
                    tags_left_out,
                }),
            });
        }
    }
}

/// A spot pool: instance type and AZ. Capacity and interruptions are per pool.
pub type Pool = (String, String);

fn pool_of(i: &Instance) -> Pool {
    (i.instance_type.clone(), i.availability_zone.clone())
}

/// Orders instances so that consecutive picks come from the AZ with the most on-demand
/// instances left, oldest instance first within an AZ: a batch never drains one AZ.
pub fn spread_over_azs(victims: Vec<&Instance>) -> Vec<&Instance> {
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

/// The eligible candidates of one AZ for instances of one type, ranked, and what was left
/// out and why.
pub struct Ranked {
    pub candidates: Vec<Candidate>,
    pub avoided: Vec<AvoidedPool>,
    pub rejected: BTreeMap<Reason, u32>,
    /// How many of the first candidates the AZ's launches spread over (see [`spread`]).
    pub spread: usize,
    /// The replaced type's on-demand price, as the group pays it.
    pub on_demand: PriceUsed,
    /// Its list price: the spot max price.
    pub list_price: f64,
}

/// Chooses and ranks the candidate types for instances of `base_type` in `az`, or says why
/// there are none.
fn ranked_for(
    gl: &GroupLaunches,
    usage: &BTreeMap<Pool, u32>,
    az: &str,
    base_type: &str,
) -> Result<Ranked, Skip> {
    let GroupCtx { ctx, pricing, .. } = gl.g;
    let (policy, launch, interruptions) = (gl.policy, gl.launch, gl.interruptions);
    let Some(base) = ctx.snap().instance_types.get(base_type) else {
        return Err(Skip::UnknownInstanceType {
            instance_type: base_type.to_string(),
        });
    };
    let Some(od) = ctx.inputs.prices.on_demand(pricing, base_type) else {
        return Err(Skip::NoOnDemandPrice {
            instance_type: base_type.to_string(),
            os: pricing.os,
        });
    };
    let list_price = od.price / pricing.multiplier;
    let req = Requirements {
        base,
        ami: AmiNeeds::from_ami(launch.ami, base),
        ephemeral_mappings: launch.ephemeral,
        allowed: &policy.allowed_instance_types,
        disallowed: &policy.disallowed_instance_types,
        allow_burstable: policy.allow_burstable,
        launch: launch.needs,
    };
    let offered = ctx.snap().offerings.get(az);
    let cooldown = Duration::minutes(i64::from(policy.interruption_cooldown_minutes));
    let mut rejected: BTreeMap<Reason, u32> = BTreeMap::new();
    let mut avoided: Vec<AvoidedPool> = Vec::new();
    let mut ok: Vec<Candidate> = Vec::new();
    for c in ctx.snap().instance_types.values() {
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
            Err(r) => {
                if matches!(r, Reason::RecentlyInterrupted | Reason::RecentlyNoCapacity) {
                    avoided.push(AvoidedPool {
                        instance_type: c.instance_type.clone(),
                        reason: r,
                    });
                }
                *rejected.entry(r).or_default() += 1;
            }
        }
    }
    if ok.is_empty() {
        return Err(Skip::NoCheaperType { rejected });
    }
    let used = |t: &str| {
        usage
            .get(&(t.to_string(), az.to_string()))
            .copied()
            .unwrap_or(0)
    };
    let types = &ctx.snap().instance_types;
    let size = |t: &str| {
        types
            .get(t)
            .map_or((u32::MAX, u64::MAX), |s| (s.vcpus, s.memory_mib))
    };
    let prices: Vec<f64> = ok.iter().map(|c| c.spot_price).collect();
    let spread = spread(
        &prices,
        policy.pools_per_az as usize,
        policy.spread_price_margin,
        gl.azs,
    );
    Ok(Ranked {
        candidates: rank(ok, &used, &size, spread),
        spread,
        avoided,
        rejected,
        on_demand: od,
        list_price,
    })
}

/// How many pools of an AZ a group's launches spread over: those priced within
/// `margin_percent` of the AZ's cheapest, at most `pools_per_az`, and at least what spreads
/// the group over [`MIN_POOLS_PER_GROUP`] pools across the `azs` AZs it runs in.
pub fn spread(prices: &[f64], pools_per_az: usize, margin_percent: f64, azs: usize) -> usize {
    let cheapest = prices.iter().copied().fold(f64::INFINITY, f64::min);
    let within = prices
        .iter()
        .filter(|p| **p <= cheapest * (1.0 + margin_percent / 100.0))
        .count();
    let floor = MIN_POOLS_PER_GROUP.div_ceil(azs.max(1));
    within.max(floor).min(pools_per_az).min(prices.len()).max(1)
}

/// Splits a batch's ranked candidates into disjoint pool sets, one fleet each: as many sets
/// as the batch has clones, at most `width` (the AZ's preferred pools, [`spread`]), each led by one of
/// the first `width` candidates and then every `sets`-th after it, so each keeps fallbacks in
/// rank order. One clone, or a width of 1, gets every candidate in one set.
pub fn pool_sets(ranked: &[Candidate], clones: usize, width: usize) -> Vec<Vec<Candidate>> {
    let sets = clones.min(width).min(ranked.len()).max(1);
    (0..sets)
        .map(|s| ranked.iter().skip(s).step_by(sets).cloned().collect())
        .collect()
}

/// Judges one candidate type for one instance: compatibility, then placement and price.
/// Returns the windowed spot price of an eligible candidate.
#[allow(clippy::too_many_arguments)]
fn judge(
    ctx: &Ctx,
    req: &Requirements,
    c: &InstanceTypeSpec,
    az: &str,
    offered: Option<&BTreeSet<String>>,
    interruptions: &[Interruption],
    cooldown: Duration,
    pricing: &GroupPricing,
    limit: f64,
) -> Result<f64, Reason> {
    req.check(c)?;
    if offered.is_some_and(|o| !o.contains(&c.instance_type)) {
        return Err(Reason::NotOffered);
    }
    // The newest trouble in the pool within the cool-down decides the reason.
    let trouble = interruptions
        .iter()
        .filter(|e| e.is_pool(&c.instance_type, az) && ctx.now() - e.at < cooldown)
        .max_by_key(|e| e.at);
    match trouble.map(|e| e.trouble) {
        Some(PoolTrouble::Interrupted) => return Err(Reason::RecentlyInterrupted),
        Some(PoolTrouble::NoCapacity) => return Err(Reason::RecentlyNoCapacity),
        None => {}
    }
    // Unknown price = not eligible, never "free" (README, "Which types, and why").
    let price = ctx
        .inputs
        .prices
        .spot_price(pricing, az, &c.instance_type)
        .ok_or(Reason::NoSpotPrice)?;
    if price > limit {
        return Err(Reason::TooExpensive);
    }
    Ok(price)
}

/// Ranks one instance's eligible candidates: by price, prices within [`PRICE_MARGIN`] of each
/// other counting as equal and then the smallest type (vCPUs, then memory) first; then the
/// first `width` (the group's `pools-per-az`) reordered least used in the instance's AZ first,
/// so the group spreads over that many pools per AZ. Ties break by name, so plans are stable.
pub fn rank(
    mut ok: Vec<Candidate>,
    used: &dyn Fn(&str) -> u32,
    size: &dyn Fn(&str) -> (u32, u64),
    width: usize,
) -> Vec<Candidate> {
    ok.sort_by(|a, b| {
        a.spot_price
            .total_cmp(&b.spot_price)
            .then(size(&a.instance_type).cmp(&size(&b.instance_type)))
            .then(a.instance_type.cmp(&b.instance_type))
    });
    // Bands of prices within the margin of the band's cheapest; by size within a band.
    let mut band = vec![0usize; ok.len()];
    let mut start = 0;
    for i in 1..ok.len() {
        if ok[i].spot_price > ok[start].spot_price * (1.0 + PRICE_MARGIN) {
            start = i;
        }
        band[i] = start;
    }
    let mut keyed: Vec<(usize, Candidate)> = band.into_iter().zip(ok).collect();
    keyed.sort_by(|(ba, a), (bb, b)| {
        ba.cmp(bb)
            .then(size(&a.instance_type).cmp(&size(&b.instance_type)))
            .then(a.spot_price.total_cmp(&b.spot_price))
            .then(a.instance_type.cmp(&b.instance_type))
    });
    let mut ok: Vec<Candidate> = keyed.into_iter().map(|(_, c)| c).collect();
    let width = width.min(ok.len());
    // A stable sort: among equally used pools, the ranking above holds.
    ok[..width].sort_by_key(|c| used(&c.instance_type));
    ok.truncate(MAX_CANDIDATES);
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_spreads_over_the_pools_near_the_cheapest_and_over_three_pools_at_least() {
        let prices = [0.0300, 0.0310, 0.0315, 0.0400, 0.0500];
        // (pools-per-az, margin %, AZs the group runs in) -> pools per AZ.
        let cases = [
            ((3, 5.0, 3), 3),   // three within 5% of 0.030
            ((2, 5.0, 3), 2),   // pools-per-az caps it
            ((3, 1.0, 3), 1),   // only the cheapest within 1%: 3 AZs give 3 pools
            ((3, 1.0, 2), 2),   // 2 AZs: 2 pools each
            ((3, 1.0, 1), 3),   // 1 AZ: 3 pools, whatever they cost
            ((3, 100.0, 3), 3), // always pools-per-az
            ((5, 100.0, 3), 5),
            ((1, 1.0, 1), 1), // pools-per-az 1 is 1
        ];
        for ((pools, margin, azs), want) in cases {
            assert_eq!(
                spread(&prices, pools, margin, azs),
                want,
                "{pools} {margin} {azs}"
            );
        }
        assert_eq!(spread(&[0.03], 3, 5.0, 1), 1, "one candidate, one pool");
    }
    use crate::cloud::memory::InstanceBuilder;
    use chrono::{DateTime, Utc};

    fn candidate(ty: &str, price: f64) -> Candidate {
        Candidate {
            instance_type: ty.into(),
            spot_price: price,
        }
    }

    fn names(c: &[Candidate]) -> Vec<&str> {
        c.iter().map(|c| c.instance_type.as_str()).collect()
    }

    #[test]
    fn ranking_rotates_over_the_three_cheapest_least_used_first_then_by_price() {
        let ok = || {
            vec![
                candidate("m6i.large", 0.045),
                candidate("m5a.large", 0.040),
                candidate("m5.large", 0.050),
                candidate("m6a.large", 0.042),
                candidate("m5n.large", 0.060),
            ]
        };
        // (usage in the group, expected order)
        type Case<'a> = (&'a [(&'a str, u32)], [&'a str; 5]);
        let cases: [Case; 4] = [
            (
                &[],
                [
                    "m5a.large",
                    "m6a.large",
                    "m6i.large",
                    "m5.large",
                    "m5n.large",
                ],
            ),
            (
                &[("m5a.large", 1)],
                [
                    "m6a.large",
                    "m6i.large",
                    "m5a.large",
                    "m5.large",
                    "m5n.large",
                ],
            ),
            (
                &[("m5a.large", 2), ("m6a.large", 1), ("m6i.large", 1)],
                [
                    "m6a.large",
                    "m6i.large",
                    "m5a.large",
                    "m5.large",
                    "m5n.large",
                ],
            ),
            // Usage outside the three cheapest does not move them.
            (
                &[("m5.large", 5)],
                [
                    "m5a.large",
                    "m6a.large",
                    "m6i.large",
                    "m5.large",
                    "m5n.large",
                ],
            ),
        ];
        let same_size = |_: &str| (2, 8192);
        for (usage, want) in cases {
            let usage: BTreeMap<String, u32> =
                usage.iter().map(|(t, n)| (t.to_string(), *n)).collect();
            let used = |t: &str| usage.get(t).copied().unwrap_or(0);
            assert_eq!(
                names(&rank(ok(), &used, &same_size, 3)),
                want,
                "usage {usage:?}"
            );
        }
        let unused = |_: &str| 0;
        // The width is the group's pools-per-az: with 1, the cheapest always leads.
        let used = |t: &str| u32::from(t == "m5a.large");
        assert_eq!(names(&rank(ok(), &used, &same_size, 1))[0], "m5a.large");
        assert_eq!(names(&rank(ok(), &used, &same_size, 2))[0], "m6a.large");
        // Equal prices break by name, so plans are stable.
        let tied = vec![candidate("b", 0.04), candidate("a", 0.04)];
        assert_eq!(names(&rank(tied, &unused, &same_size, 3)), ["a", "b"]);
        // At most MAX_CANDIDATES go to a launch.
        let many: Vec<Candidate> = (0..20)
            .map(|i| candidate(&format!("t{i:02}"), 0.01 * f64::from(i + 1)))
            .collect();
        assert_eq!(rank(many, &unused, &same_size, 3).len(), MAX_CANDIDATES);
    }

    #[test]
    fn at_equal_prices_the_type_closest_in_size_ranks_first() {
        let sizes: BTreeMap<&str, (u32, u64)> = [
            ("c5.24xlarge", (96, 196_608)),
            ("c5.12xlarge", (48, 98_304)),
            ("m5.xlarge", (4, 16_384)),
            ("m5a.large", (2, 8192)),
            ("r5.large", (2, 16_384)),
        ]
        .into_iter()
        .collect();
        let size = |t: &str| sizes[t];
        let unused = |_: &str| 0;
        // One price for everything (moto's constant spot price): smallest first.
        let flat: Vec<Candidate> = sizes.keys().map(|t| candidate(t, 0.035)).collect();
        assert_eq!(
            names(&rank(flat, &unused, &size, 1)),
            [
                "m5a.large",
                "r5.large",
                "m5.xlarge",
                "c5.12xlarge",
                "c5.24xlarge"
            ]
        );
        // Within 2% counts as equal; beyond it, price wins.
        let near = vec![
            candidate("c5.24xlarge", 0.0350),
            candidate("m5a.large", 0.0356),
            candidate("m5.xlarge", 0.0400),
        ];
        assert_eq!(
            names(&rank(near, &unused, &size, 1)),
            ["m5a.large", "c5.24xlarge", "m5.xlarge"]
        );
        let apart = vec![
            candidate("c5.24xlarge", 0.030),
            candidate("m5a.large", 0.035),
        ];
        assert_eq!(
            names(&rank(apart, &unused, &size, 1)),
            ["c5.24xlarge", "m5a.large"]
        );
    }

    fn instance(id: &str, az: &str, launched: &str) -> Instance {
        InstanceBuilder::on_demand(id, "m5.large", az)
            .launched(launched.parse::<DateTime<Utc>>().unwrap())
            .in_group("web")
            .build()
    }

    #[test]
    fn instances_are_taken_from_the_az_with_most_left_oldest_first() {
        let t = |h: u32| format!("2026-11-23T{h:02}:00:00Z");
        // (instances as (id, AZ, launch hour), expected order of ids)
        type Case = (Vec<(&'static str, &'static str, u32)>, Vec<&'static str>);
        let cases: Vec<Case> = vec![
            (vec![], vec![]),
            (vec![("i-1", "a", 1)], vec!["i-1"]),
            // One AZ: oldest first.
            (
                vec![("i-1", "a", 3), ("i-2", "a", 1), ("i-3", "a", 2)],
                vec!["i-2", "i-3", "i-1"],
            ),
            // The fuller AZ first, then alternate as they even out; ties go to the first AZ.
            (
                vec![
                    ("i-1", "a", 1),
                    ("i-2", "b", 1),
                    ("i-3", "b", 2),
                    ("i-4", "b", 3),
                    ("i-5", "c", 1),
                ],
                vec!["i-2", "i-3", "i-1", "i-4", "i-5"],
            ),
            // Equal launch times break by id.
            (vec![("i-9", "a", 1), ("i-8", "a", 1)], vec!["i-8", "i-9"]),
        ];
        for (input, want) in cases {
            let instances: Vec<Instance> = input
                .iter()
                .map(|(id, az, h)| instance(id, az, &t(*h)))
                .collect();
            let got: Vec<&str> = spread_over_azs(instances.iter().collect())
                .iter()
                .map(|i| i.instance_id.as_str())
                .collect();
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn a_template_with_cpu_credits_gets_only_burstable_candidates() {
        use crate::model::LaunchSpec;
        use crate::plan::testing::{launch_candidates as candidates, one_instance};
        let snapshot = |cpu_credits: Option<&str>| {
            let spec = LaunchSpec {
                cpu_credits: cpu_credits.map(str::to_string),
                ..LaunchSpec::default()
            };
            let ami = serde_json::json!({"image_id": "ami-1"});
            one_instance(
                "t3.large",
                0.0832,
                spec,
                ami,
                &[("t3a.large", 0.03), ("m5.large", 0.04)],
            )
        };
        assert_eq!(candidates(&snapshot(None)), ["t3a.large", "m5.large"]);
        assert_eq!(candidates(&snapshot(Some("unlimited"))), ["t3a.large"]);
    }
}
