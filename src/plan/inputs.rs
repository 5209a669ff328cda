//! What a pass derives once per region from a snapshot and the settings, and hands to every
//! stage: each group's policy (not opted in, unusable settings, or its resolved settings) and
//! pricing, and the region's [`Prices`].
//!
//! Observe resolves the policies (it needs them to know which prices to read), and the planner
//! and the savings report reuse them, so no stage resolves a group's settings again. Pure.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::model::{Group, Os, Snapshot};
use crate::pricing::{GroupPricing, Prices};
use crate::settings::{GroupPolicy, Settings};

/// One group's policy and pricing.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupInputs {
    pub policy: GroupPolicy,
    /// How the group is priced: under its own settings when they are usable, the global ones
    /// otherwise (a group left alone is still costed, at what it runs now).
    pub pricing: GroupPricing,
}

/// Everything the planner and the savings report read, resolved once.
#[derive(Debug)]
pub struct Inputs<'a> {
    pub snapshot: &'a Snapshot,
    pub settings: &'a Settings,
    pub now: DateTime<Utc>,
    pub prices: Prices<'a>,
    groups: BTreeMap<&'a str, GroupInputs>,
}

impl<'a> Inputs<'a> {
    /// Resolves every group's settings from its tags.
    pub fn new(snapshot: &'a Snapshot, settings: &'a Settings, now: DateTime<Utc>) -> Self {
        let policies = settings.policies(&snapshot.groups);
        Inputs::with_policies(snapshot, settings, policies, now)
    }

    /// Uses policies already resolved (by observe) for the snapshot's groups; a group missing
    /// from `policies` is resolved here.
    pub fn with_policies(
        snapshot: &'a Snapshot,
        settings: &'a Settings,
        mut policies: BTreeMap<String, GroupPolicy>,
        now: DateTime<Utc>,
    ) -> Self {
        let groups = snapshot
            .groups
            .iter()
            .map(|g| {
                let policy = policies
                    .remove(&g.name)
                    .unwrap_or_else(|| settings.policy(&g.tags));
                let pricing = match &policy {
                    GroupPolicy::OptedIn(s) => GroupPricing::for_group(snapshot, g, s),
                    _ => GroupPricing::for_group(snapshot, g, &settings.group),
                };
                (g.name.as_str(), GroupInputs { policy, pricing })
            })
            .collect();
        Inputs {
            snapshot,
            settings,
            now,
            prices: Prices::new(snapshot, now),
            groups,
        }
    }

    /// A group's policy and pricing.
    pub fn group(&self, group: &Group) -> &GroupInputs {
        self.groups
            .get(group.name.as_str())
            .expect("every snapshot group is resolved")
    }

    /// Pricing for clones whose group is not in the snapshot: Linux under the global settings,
    /// since nothing says what they run.
    pub fn fallback_pricing(&self) -> GroupPricing {
        GroupPricing::new(Os::Linux, &self.settings.group)
    }
}
