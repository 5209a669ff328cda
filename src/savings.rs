//! Savings: what each opted-in group costs per hour now, what it would cost all on-demand,
//! and the difference, with the prices used and where they came from.
//!
//! Pure: a function of the pass's [`Inputs`] (the snapshot, each group's settings and pricing,
//! the region's prices). Every instance is costed by [`crate::pricing`], with the same rule
//! and the same prices the planner uses; an instance whose price is unknown is counted as
//! unpriced, never as free.

use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::model::{Group, Market, PriceSource};
use crate::plan::{Action, ActionKind, Inputs, Plan};
use crate::pricing::{PriceUsed, spot_source};
use crate::report::{Outcome, Status};
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

/// What this pass changed in the groups' membership: the swaps carried out (not planned: a
/// dry run changes nothing), as (group, replaced on-demand instance, clone).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Swapped {
    swaps: Vec<(String, String, String)>,
}

impl Swapped {
    /// The swaps and swap completions of `plan` whose outcome is done: each outcome is matched
    /// with its action through the plan's (group, action kind, replaced instance), looked up
    /// once, so a region of thousands of swaps stays linear.
    pub fn from_outcomes(plan: &Plan, outcomes: &[Outcome]) -> Self {
        let mut clones: HashMap<(&str, ActionKind, &str), &str> = HashMap::new();
        for (d, a) in plan.actions() {
            if let Action::Swap {
                clone, replaces, ..
            }
            | Action::CompleteSwap { clone, replaces } = a
            {
                clones.insert(
                    (d.group.as_str(), a.kind(), replaces.as_str()),
                    clone.as_str(),
                );
            }
        }
        let swaps = outcomes
            .iter()
            .filter(|o| matches!(o.status, Status::Done { .. }))
            .filter_map(|o| {
                let replaces = o.instance.as_deref()?;
                let clone = clones.get(&(o.group.as_str(), o.action, replaces))?;
                Some((o.group.clone(), replaces.to_string(), clone.to_string()))
            })
            .collect();
        Swapped { swaps }
    }

    /// The in-service members of a group once these swaps are done: the replaced instances
    /// gone, the clones in.
    fn members<'a>(&'a self, group: &'a Group) -> Vec<&'a str> {
        let mine = self.swaps.iter().filter(|(g, _, _)| *g == group.name);
        let gone: BTreeSet<&str> = mine.clone().map(|(_, r, _)| r.as_str()).collect();
        let mut ids: Vec<&str> = group
            .members
            .iter()
            .filter(|m| m.is_in_service() && !gone.contains(m.instance_id.as_str()))
            .map(|m| m.instance_id.as_str())
            .collect();
        for (_, _, clone) in mine {
            if !ids.contains(&clone.as_str()) {
                ids.push(clone);
            }
        }
        ids
    }
}

/// Costs of every opted-in group with usable settings, once `swapped` is done. Every member
/// counts against the on-demand price of the type the group runs on-demand (its launch spec's
/// type): a spot clone of an m5.xlarge saves against m5.xlarge, whatever type it runs.
pub fn savings(inputs: &Inputs, swapped: &Swapped) -> Savings {
    let snapshot = inputs.snapshot;
    let prices = &inputs.prices;
    let mut groups = Vec::new();
    for g in &snapshot.groups {
        let gi = inputs.group(g);
        if !matches!(gi.policy, GroupPolicy::OptedIn(_)) {
            continue;
        }
        let pricing = &gi.pricing;
        let on_demand_type = g
            .launch
            .as_ref()
            .and_then(|l| snapshot.launch_specs.get(&l.key()))
            .and_then(|spec| spec.instance_type.as_deref());
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
        for id in swapped.members(g) {
            let Some(i) = snapshot.instances.get(id) else {
                continue;
            };
            s.instances += 1;
            let baseline_type = match i.market {
                Market::OnDemand => {
                    s.on_demand += 1;
                    i.instance_type.as_str()
                }
                Market::Spot => {
                    s.spot += 1;
                    on_demand_type.unwrap_or(&i.instance_type)
                }
            };
            let od = prices.on_demand(pricing, baseline_type);
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
        s.hourly_now = tidy(s.hourly_now);
        s.hourly_all_on_demand = tidy(s.hourly_all_on_demand);
        s.hourly_saving = tidy(s.hourly_all_on_demand - s.hourly_now);
        s.monthly_saving = tidy(s.hourly_saving * HOURS_PER_MONTH);
        groups.push(s);
    }
    let hourly_now = tidy(groups.iter().map(|g| g.hourly_now).sum());
    let hourly_all_on_demand = tidy(groups.iter().map(|g| g.hourly_all_on_demand).sum());
    let hourly_saving = tidy(groups.iter().map(|g| g.hourly_saving).sum::<f64>());
    Savings {
        region: snapshot.region.clone(),
        on_demand_source: snapshot.on_demand.source.clone(),
        spot_source: spot_source(inputs.settings.group.spot_price_window_minutes),
        groups,
        hourly_now,
        hourly_all_on_demand,
        hourly_saving,
        monthly_saving: tidy(hourly_saving * HOURS_PER_MONTH),
    }
}

/// Sums of prices carry floating-point dust: a saving of 1e-17 (or -1e-17, which prints as
/// `-0.00`) is no saving. Values are rounded to a millionth of a dollar.
pub fn tidy(v: f64) -> f64 {
    let r = (v * 1e6).round() / 1e6;
    if r == 0.0 { 0.0 } else { r }
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
        let s = savings(&Inputs::new(&snapshot, &settings, now), &Swapped::default());
        assert_eq!(s.groups.len(), 1);
        let g = &s.groups[0];
        assert_eq!((g.instances, g.spot, g.on_demand, g.unpriced), (9, 3, 6, 0));
        // Six m5.large on-demand at 0.096, three m5a.large spot at 0.0412 + 0.042 + 0.0405;
        // all on-demand, the spot clones count as the m5.large the group runs on-demand.
        let now_cost = 6.0 * 0.096 + 0.0412 + 0.042 + 0.0405;
        let all_od = 9.0 * 0.096;
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
        assert_eq!(od.len(), 1, "{:?}", g.prices);
        assert_eq!(od[0].instance_type, "m5.large");
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
        let s = savings(&Inputs::new(&snapshot, &settings, now), &Swapped::default());
        assert!(s.groups.is_empty());
        assert_eq!(s.hourly_saving, 0.0);
    }
}
