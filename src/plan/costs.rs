//! Costing decisions: every decision carries what it concerns costs per hour now and once it
//! is carried out, with the prices behind both, all from [`crate::pricing`].
//!
//! A skip changes nothing, so its costs before and after are equal; a swap goes from the
//! replaced instance's on-demand price to the clone's spot price; an orphan termination from
//! the clone's spot price to nothing. An unknown price leaves a cost `None`, never zero. Pure.

use crate::model::Instance;
use crate::pricing::{GroupPricing, PriceUsed};

use super::{Action, Ctx, Decision, GroupCtx, OrphanReason, Skip, Verdict};

/// A skip of a whole group, costed at what its in-service instances cost now.
pub fn group_skip(g: GroupCtx, skip: Skip) -> Decision {
    let GroupCtx {
        ctx,
        group,
        pricing,
    } = g;
    let mut total = Some(0.0);
    let mut prices: Vec<PriceUsed> = Vec::new();
    for m in group.members.iter().filter(|m| m.is_in_service()) {
        let price = ctx
            .snap()
            .instances
            .get(&m.instance_id)
            .and_then(|i| ctx.inputs.prices.now(pricing, i));
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

/// What an instance of the snapshot costs now, for the group: on-demand or spot.
fn now_of(g: GroupCtx, instance_id: &str) -> Option<PriceUsed> {
    let i = g.ctx.snap().instances.get(instance_id)?;
    g.ctx.inputs.prices.now(g.pricing, i)
}

/// A skip of one instance, costed at what it costs now before and after.
pub fn instance_skip(g: GroupCtx, instance_id: &str, skip: Skip) -> Decision {
    let od = now_of(g, instance_id);
    Decision {
        group: g.group.name.clone(),
        instance: Some(instance_id.to_string()),
        verdict: Verdict::Skip(skip),
        hourly_cost_before: od.as_ref().map(|p| p.price),
        hourly_cost_after: od.as_ref().map(|p| p.price),
        prices: od.into_iter().collect(),
    }
}

/// A swap or swap completion: what the replaced instance costs now before (on-demand, or spot
/// when an on-demand instance replaces it), what the clone costs after.
pub fn swap(g: GroupCtx, clone: &Instance, replaces: &str, action: Action) -> Decision {
    let od = now_of(g, replaces);
    let spot = g.ctx.inputs.prices.now(g.pricing, clone);
    Decision {
        group: g.group.name.clone(),
        instance: Some(replaces.to_string()),
        verdict: Verdict::Act(action),
        hourly_cost_before: od.as_ref().map(|p| p.price),
        hourly_cost_after: spot.as_ref().map(|p| p.price),
        prices: od.into_iter().chain(spot).collect(),
    }
}

/// An orphan termination, costed at the clone's spot price before and nothing after.
pub fn orphan(
    ctx: &Ctx,
    group: &str,
    clone: &Instance,
    reason: OrphanReason,
    pricing: &GroupPricing,
) -> Decision {
    let price = ctx.inputs.prices.now(pricing, clone);
    Decision {
        group: group.to_string(),
        instance: Some(clone.instance_id.clone()),
        verdict: Verdict::Act(Action::TerminateOrphan {
            clone: clone.instance_id.clone(),
            reason,
        }),
        hourly_cost_before: price.as_ref().map(|p| p.price),
        hourly_cost_after: Some(0.0),
        prices: price.into_iter().collect(),
    }
}

/// An instance taken out of its group with desired capacity decremented, costed at its price
/// now before and nothing after.
pub fn removal(g: GroupCtx, instance_id: &str, action: Action) -> Decision {
    let price = now_of(g, instance_id);
    Decision {
        group: g.group.name.clone(),
        instance: Some(instance_id.to_string()),
        verdict: Verdict::Act(action),
        hourly_cost_before: price.as_ref().map(|p| p.price),
        hourly_cost_after: Some(0.0),
        prices: price.into_iter().collect(),
    }
}
