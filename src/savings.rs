//! Savings: what each opted-in group costs per hour now, what it would cost all on-demand,
//! and the difference, with the prices used and where they came from.
//!
//! Pure: a function of the pass's [`Inputs`] (the snapshot, each group's settings and pricing,
//! the region's prices). Every instance is costed by [`crate::pricing`], with the same rule
//! and the same prices the planner uses; an instance whose price is unknown is counted as
//! unpriced, never as free.

use serde::Serialize;

use crate::model::{Market, PriceSource};
use crate::plan::Inputs;
use crate::pricing::{PriceUsed, spot_source};
use crate::settings::GroupPolicy;

/// Hours in a month, as AWS bills them.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// One group's costs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupSavings {
    pub group: String,
    pub instances: u32,
    pub spot: u32,
    pub on_demand: u32,
    /// Instances left out of the sums because a price is unknown.
    pub unpriced: u32,
    pub hourly_now: f64,
    pub hourly_all_on_demand: f64,
    pub hourly_saving: f64,
    pub monthly_saving: f64,
    /// Every distinct price behind the sums, with where it came from.
    pub prices: Vec<PriceUsed>,
}

/// A region's costs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Savings {
    pub region: String,
    pub on_demand_source: PriceSource,
    pub spot_source: String,
    pub groups: Vec<GroupSavings>,
    pub hourly_now: f64,
    pub hourly_all_on_demand: f64,
    pub hourly_saving: f64,
    pub monthly_saving: f64,
}

/// Costs of every opted-in group with usable settings.
pub fn savings(inputs: &Inputs) -> Savings {
    let snapshot = inputs.snapshot;
    let prices = &inputs.prices;
    let mut groups = Vec::new();
    for g in &snapshot.groups {
        let gi = inputs.group(g);
        if !matches!(gi.policy, GroupPolicy::OptedIn(_)) {
            continue;
        }
        let pricing = &gi.pricing;
        let mut s = GroupSavings {
            group: g.name.clone(),
            instances: 0,
            spot: 0,
            on_demand: 0,
            unpriced: 0,
            hourly_now: 0.0,
            hourly_all_on_demand: 0.0,
            hourly_saving: 0.0,
            monthly_saving: 0.0,
            prices: Vec::new(),
        };
        let mut note = |p: &PriceUsed| {
            if !s.prices.contains(p) {
                s.prices.push(p.clone());
            }
        };
        for m in g.members.iter().filter(|m| m.is_in_service()) {
            let Some(i) = snapshot.instances.get(&m.instance_id) else {
                continue;
            };
            s.instances += 1;
            match i.market {
                Market::OnDemand => s.on_demand += 1,
                Market::Spot => s.spot += 1,
            }
            let od = prices.on_demand(pricing, &i.instance_type);
            let now = prices.now(pricing, i);
            for p in od
                .iter()
                .chain(now.iter().filter(|p| p.market == Market::Spot))
            {
                note(p);
            }
            match (now, od) {
                (Some(n), Some(o)) => {
                    s.hourly_now += n.price;
                    s.hourly_all_on_demand += o.price;
                }
                _ => s.unpriced += 1,
            }
        }
        s.hourly_saving = s.hourly_all_on_demand - s.hourly_now;
        s.monthly_saving = s.hourly_saving * HOURS_PER_MONTH;
        groups.push(s);
    }
    let hourly_now = groups.iter().map(|g| g.hourly_now).sum();
    let hourly_all_on_demand = groups.iter().map(|g| g.hourly_all_on_demand).sum();
    let hourly_saving = groups.iter().map(|g| g.hourly_saving).sum::<f64>();
    Savings {
        region: snapshot.region.clone(),
        on_demand_source: snapshot.on_demand.source.clone(),
        spot_source: spot_source(inputs.settings.group.spot_price_window_minutes),
        groups,
        hourly_now,
        hourly_all_on_demand,
        hourly_saving,
        monthly_saving: hourly_saving * HOURS_PER_MONTH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Snapshot;
    use crate::settings::Settings;

    #[test]
    fn savings_cost_spot_at_their_pool_price_and_on_demand_at_list() {
        let scenario: serde_json::Value =
            serde_json::from_str(include_str!("../tests/golden/diversity.json")).unwrap();
        let snapshot: Snapshot = serde_json::from_value(scenario["snapshot"].clone()).unwrap();
        let now = "2023-09-05T14:00:00Z".parse().unwrap();
        let settings = Settings::default();
        let s = savings(&Inputs::new(&snapshot, &settings, now));
        assert_eq!(s.groups.len(), 1);
        let g = &s.groups[0];
        assert_eq!((g.instances, g.spot, g.on_demand, g.unpriced), (9, 3, 6, 0));
        // Six m5.large on-demand at 0.096, three m5a.large spot at 0.0412 + 0.042 + 0.0405.
        let now_cost = 6.0 * 0.096 + 0.0412 + 0.042 + 0.0405;
        let all_od = 6.0 * 0.096 + 3.0 * 0.086;
        assert!((g.hourly_now - now_cost).abs() < 1e-9, "{g:?}");
        assert!((g.hourly_all_on_demand - all_od).abs() < 1e-9, "{g:?}");
        assert!((g.monthly_saving - (all_od - now_cost) * 730.0).abs() < 1e-6);
        assert!((s.hourly_saving - g.hourly_saving).abs() < 1e-12);
        // The prices behind the sums: one on-demand price per type, one spot price per pool.
        let od: Vec<_> = g
            .prices
            .iter()
            .filter(|p| p.market == Market::OnDemand)
            .collect();
        let spot: Vec<_> = g
            .prices
            .iter()
            .filter(|p| p.market == Market::Spot)
            .collect();
        assert_eq!(od.len(), 2, "{:?}", g.prices);
        assert_eq!(spot.len(), 3, "{:?}", g.prices);
        assert!(spot.iter().all(|p| p.source.contains("spot price history")));
        assert!(od.iter().all(|p| p.source.contains("bundled")));
    }

    #[test]
    fn groups_not_opted_in_are_not_counted() {
        let scenario: serde_json::Value =
            serde_json::from_str(include_str!("../tests/golden/not_opted_in.json")).unwrap();
        let snapshot: Snapshot = serde_json::from_value(scenario["snapshot"].clone()).unwrap();
        let settings = Settings::default();
        let now = "2023-09-05T14:00:00Z".parse().unwrap();
        let s = savings(&Inputs::new(&snapshot, &settings, now));
        assert!(s.groups.is_empty());
        assert_eq!(s.hourly_saving, 0.0);
    }
}
