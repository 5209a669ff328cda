//! The planner: `plan(snapshot, settings, now) -> Plan`, every decision of a pass as data.
//!
//! For each group it decides, from what the snapshot shows and nothing else, which spot clones
//! to launch, which ready clones to swap in, which clones are orphans, and which leftover
//! MaxSize changes to restore; everything it leaves alone gets a skip with a reason. The swap
//! protocol's state lives in tags ([`crate::protocol`]), so re-planning from a fresh snapshot
//! after any crash finishes what a previous pass started.
//!
//! It runs in stages, one file each: [`inputs`] (each group's settings and pricing, resolved
//! once), [`eligibility`] (may spotswap change the group now, and what does it launch),
//! [`clones`] (the bookkeeping of clones already launched: swaps, completions, orphans, MaxSize
//! restores), [`settle`] (a swap a stopped pass left in doubt), [`backoff`] (a group whose clones keep dying waits before it launches again)
//! and [`launch`] (which instances get a clone, of which types). [`costs`] puts prices on
//! every decision.
//!
//! Pure: no I/O, no clock (`now` is passed in), no logging, no randomness. Iteration is over
//! sorted maps and explicit sorts, so the same input gives the same plan.

pub mod backoff;
pub mod clones;
pub mod costs;
pub mod eligibility;
pub mod inputs;
pub mod launch;
pub mod settle;
mod types;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};

use crate::model::{Group, Instance, Member, Snapshot};
use crate::pricing::GroupPricing;
use crate::protocol;
use crate::settings::{GroupPolicy, Settings};

pub use crate::pricing::PriceUsed;
pub use inputs::{GroupInputs, Inputs};
pub use launch::{MAX_CANDIDATES, PRICE_MARGIN};
pub use types::*;

/// Plans a pass over one region's snapshot, resolving each group's settings and pricing.
pub fn plan(snapshot: &Snapshot, settings: &Settings, now: DateTime<Utc>) -> Plan {
    plan_with(&Inputs::new(snapshot, settings, now))
}

/// Plans a pass from inputs resolved once for the region (the pass shares them with the
/// savings report).
pub fn plan_with(inputs: &Inputs) -> Plan {
    let ctx = Ctx::new(inputs);
    let snapshot = inputs.snapshot;
    let mut out = Vec::new();
    let mut groups: Vec<&Group> = snapshot.groups.iter().collect();
    groups.sort_by(|a, b| a.name.cmp(&b.name));
    for g in &groups {
        plan_group(&ctx, g, &mut out);
    }
    // Clones whose group is not in the snapshot: the group was deleted or is no longer opted
    // in (discovery only lists opted-in groups). Unattached ones can only cost money.
    let known: BTreeSet<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    let fallback = inputs.fallback_pricing();
    for (group, clones) in &ctx.clones {
        if known.contains(group) {
            continue;
        }
        for c in clones.iter().filter(|c| c.auto_scaling_group.is_none()) {
            out.push(costs::orphan(
                &ctx,
                group,
                c,
                OrphanReason::GroupNotOptedIn,
                &fallback,
            ));
        }
    }
    unused_templates(snapshot, inputs.now, &mut out);
    Plan {
        region: snapshot.region.clone(),
        on_demand_source: snapshot.on_demand.source.clone(),
        decisions: out,
    }
}

/// A template spotswap created this long ago at least may be deleted once unused: younger, it
/// may be one a pass running beside this one has just created for a group this pass did not see.
pub const TEMPLATE_MIN_AGE_MINUTES: i64 = 60;

/// Deletes the launch templates spotswap created for launch configurations that no listed
/// group uses any more (the group moved to another configuration or a template, or is gone,
/// or the configuration was created again under its name with other content).
fn unused_templates(snapshot: &Snapshot, now: DateTime<Utc>, out: &mut Vec<Decision>) {
    // The template each listed configuration's content launches from; every template of a
    // configuration whose content could not be read is kept.
    let mut wanted: BTreeSet<String> = BTreeSet::new();
    let mut unread: BTreeSet<&str> = BTreeSet::new();
    for g in &snapshot.groups {
        if let Some(l @ crate::model::LaunchRef::LaunchConfiguration { name }) = &g.launch {
            match snapshot.launch_specs.get(&l.key()) {
                Some(spec) => {
                    wanted.insert(protocol::owned_template_name(name, spec));
                }
                None => {
                    unread.insert(name.as_str());
                }
            }
        }
    }
    for t in &snapshot.owned_templates {
        if wanted.contains(&t.name)
            || unread.contains(t.launch_configuration.as_str())
            || now - t.created < chrono::Duration::minutes(TEMPLATE_MIN_AGE_MINUTES)
        {
            continue;
        }
        out.push(Decision {
            group: String::new(),
            instance: None,
            verdict: Verdict::Act(Action::DeleteTemplate {
                template_id: t.id.clone(),
                name: t.name.clone(),
                launch_configuration: t.launch_configuration.clone(),
            }),
            hourly_cost_before: Some(0.0),
            hourly_cost_after: Some(0.0),
            prices: Vec::new(),
        });
    }
}

/// The inputs plus lookups built once per plan.
pub struct Ctx<'a> {
    pub inputs: &'a Inputs<'a>,
    /// Live clones (not shutting down or terminated) by the group they were launched for.
    pub clones: BTreeMap<&'a str, Vec<&'a Instance>>,
    /// Clones shutting down or terminated (EC2 lists them for about an hour), by group.
    pub gone_clones: BTreeMap<&'a str, Vec<&'a Instance>>,
    /// Every group member by instance id, with its group's name: one lookup per instance, where
    /// a scan of the group's members for each would grow with the square of its size.
    members: HashMap<&'a str, (&'a str, &'a Member)>,
}

impl<'a> Ctx<'a> {
    fn new(inputs: &'a Inputs<'a>) -> Self {
        let mut clones: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
        let mut gone_clones: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
        for i in inputs.snapshot.instances.values() {
            if let Some((group, _)) = protocol::clone_of(i) {
                let by_group = if i.state.is_gone() {
                    &mut gone_clones
                } else {
                    &mut clones
                };
                by_group.entry(group).or_default().push(i);
            }
        }
        let members = inputs
            .snapshot
            .groups
            .iter()
            .flat_map(|g| {
                g.members
                    .iter()
                    .map(|m| (m.instance_id.as_str(), (g.name.as_str(), m)))
            })
            .collect();
        Ctx {
            inputs,
            clones,
            gone_clones,
            members,
        }
    }

    /// The member record of an instance, if it belongs to `group`.
    pub fn member(&self, group: &Group, instance_id: &str) -> Option<&'a Member> {
        self.members
            .get(instance_id)
            .filter(|(g, _)| *g == group.name)
            .map(|(_, m)| *m)
    }

    /// The snapshot being planned.
    pub fn snap(&self) -> &'a Snapshot {
        self.inputs.snapshot
    }

    /// The moment planned for.
    pub fn now(&self) -> DateTime<Utc> {
        self.inputs.now
    }
}

/// One group being planned: the plan's context, the group, and how it is priced.
#[derive(Clone, Copy)]
pub struct GroupCtx<'a> {
    pub ctx: &'a Ctx<'a>,
    pub group: &'a Group,
    pub pricing: &'a GroupPricing,
}

fn plan_group(ctx: &Ctx, group: &Group, out: &mut Vec<Decision>) {
    let clones: &[&Instance] = ctx.clones.get(group.name.as_str()).map_or(&[], |v| v);
    let gi = ctx.inputs.group(group);
    let pricing = &gi.pricing;
    let g = GroupCtx {
        ctx,
        group,
        pricing,
    };
    let policy = match &gi.policy {
        GroupPolicy::NotOptedIn => {
            out.push(costs::group_skip(g, Skip::NotOptedIn));
            for c in clones
                .iter()
                .filter(|c| clones::is_unattached(ctx, group, c))
            {
                out.push(costs::orphan(
                    ctx,
                    &group.name,
                    c,
                    OrphanReason::GroupNotOptedIn,
                    pricing,
                ));
            }
            return;
        }
        GroupPolicy::Invalid(e) => {
            let tag = e
                .source
                .strip_prefix("tag ")
                .unwrap_or(&e.source)
                .to_string();
            let skip = Skip::InvalidSetting {
                setting: e.setting.clone(),
                tag,
                value: e.value.clone(),
                problem: e.problem.clone(),
            };
            out.push(costs::group_skip(g, skip));
            return;
        }
        GroupPolicy::OptedIn(policy) => policy,
    };
    let state = match eligibility::protocol_state(group, ctx.now()) {
        Ok(s) => s,
        Err(skip) => {
            out.push(costs::group_skip(g, skip));
            return;
        }
    };

    // Launching needs the group's launch spec and AMI; clean-up does not, so a group whose
    // spec is unreadable still gets its clones cleaned up.
    let launch = eligibility::resolve_launch(ctx.snap(), group);
    // Whether spotswap may launch and swap in this group now; clean-up happens either way.
    let blocked = eligibility::blocked(group, policy, ctx.now());
    let can_swap = blocked.is_none() && launch.is_ok();

    // A full group whose MaxSize restore is still pending (it scaled out past the value a
    // stopped pass recorded) can swap nothing in: every swap would need MaxSize raised again.
    // Its ready clones then get no exemption from the orphan timeout, or they would wait,
    // paid for, until the group scales in.
    let restore_blocks_swaps = state
        .leftover_max
        .is_some_and(|recorded| group.desired_capacity > recorded)
        && group.desired_capacity >= group.max_size;
    let book = clones::classify(
        ctx,
        group,
        clones,
        policy,
        can_swap && !restore_blocks_swaps,
    );
    let mut after_completions = clones::complete_swaps(g, policy, &book, out);
    settle::settle_swaps(g, &mut after_completions, out);
    let max_size =
        clones::restore_max_size(group, state.leftover_max, after_completions.desired, out);
    clones::terminate_orphans(g, &book, out);
    let backing_off = backoff::check(
        g,
        state.launch_backoff.as_ref(),
        &book,
        &after_completions.never_healthy,
        out,
    );

    if let Some(skip) = blocked {
        out.push(costs::group_skip(g, skip));
        return;
    }
    let launch = match launch {
        Ok(l) => l,
        Err(skip) => {
            out.push(costs::group_skip(g, skip));
            return;
        }
    };
    let next = clones::swaps(g, policy, &book, &after_completions, max_size, out);
    if let Some(skip) = backing_off {
        // Ready clones are swapped in; no new launch until the cool-down is over.
        out.push(costs::group_skip(g, skip));
        return;
    }
    if let Some(skip) = eligibility::no_type_allowed(ctx.snap(), policy) {
        out.push(costs::group_skip(g, skip));
        return;
    }
    let azs = group
        .members
        .iter()
        .filter_map(|m| ctx.snap().instances.get(&m.instance_id))
        .map(|i| i.availability_zone.as_str())
        .collect::<BTreeSet<_>>()
        .len();
    let launches = launch::GroupLaunches {
        g,
        policy,
        launch: &launch,
        interruptions: &state.interruptions,
        azs,
    };
    match &ctx.snap().launch_refused {
        None => launches.plan(next, out),
        Some(refused) => {
            // IAM refuses this region's launches: one skip says so for the group, in place of
            // the launches (which would each fail the same way); its other decisions stand.
            let mut planned = Vec::new();
            launches.plan(next, &mut planned);
            let is_launch = |d: &Decision| {
                matches!(
                    d.verdict,
                    Verdict::Act(Action::LaunchClone { .. } | Action::LaunchOnDemand { .. })
                )
            };
            let launching = planned.iter().any(is_launch);
            out.extend(planned.into_iter().filter(|d| !is_launch(d)));
            if launching {
                let skip = Skip::LaunchNotPermitted {
                    action: refused.action.clone(),
                    resource: refused.resource.clone(),
                    denied_by: refused.denied_by.clone(),
                };
                out.push(costs::group_skip(g, skip));
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Fixtures shared by the planner's unit tests.

    use chrono::{DateTime, Utc};
    use serde_json::json;

    use crate::catalog::Catalog;
    use crate::model::{LaunchSpec, Snapshot};
    use crate::settings::Settings;

    use super::Action;

    /// One opted-in group `web` launching from template `lt-1` version 1 (`spec`, its AMI
    /// `ami-1` as `ami` describes it) with one running on-demand instance `i-1` of
    /// `instance_type` in us-east-1a; that type's Linux on-demand price; `spot` Linux prices in
    /// us-east-1a half an hour before 2026-11-23T10:00Z; the bundled catalog.
    pub fn one_instance(
        instance_type: &str,
        on_demand: f64,
        spec: LaunchSpec,
        ami: serde_json::Value,
        spot: &[(&str, f64)],
    ) -> Snapshot {
        let spot: Vec<serde_json::Value> = spot
            .iter()
            .map(|(ty, price)| {
                json!({"instance_type": ty, "availability_zone": "us-east-1a",
                       "product_description": "Linux/UNIX (Amazon VPC)", "price": price,
                       "timestamp": "2026-11-23T09:30:00Z"})
            })
            .collect();
        let mut snap: Snapshot = serde_json::from_value(json!({
            "region": "us-east-1",
            "groups": [{"name": "web", "min_size": 1, "max_size": 2, "desired_capacity": 1,
                        "health_check_grace_period_secs": 300,
                        "tags": {"spot-enabled": "true"},
                        "launch": {"kind": "launch-template", "id": "lt-1", "version": "1"},
                        "members": [{"instance_id": "i-1", "lifecycle_state": "InService",
                                     "health_status": "Healthy"}]}],
            "instances": {"i-1": {"instance_id": "i-1", "instance_type": instance_type,
                "availability_zone": "us-east-1a", "market": "on-demand",
                "state": "running", "launch_time": "2026-11-22T10:00:00Z",
                "auto_scaling_group": "web"}},
            "amis": {"ami-1": ami},
            "spot_prices": spot,
            "on_demand": {"source": {"kind": "live"},
                          "prices": {instance_type: {"linux": on_demand}}}
        }))
        .expect("the fixture is a snapshot");
        snap.launch_specs.insert(
            "lt:lt-1:1".into(),
            LaunchSpec {
                image_id: "ami-1".into(),
                ..spec
            },
        );
        Catalog::bundled().fill_missing(&mut snap.instance_types);
        snap
    }

    /// The candidate types of the first launch a default plan of `snap` makes at
    /// 2026-11-23T10:00Z; empty without one.
    pub fn launch_candidates(snap: &Snapshot) -> Vec<String> {
        let now: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().expect("a time");
        super::plan(snap, &Settings::default(), now)
            .actions()
            .find_map(|(_, a)| match a {
                Action::LaunchClone { candidates, .. } => {
                    Some(candidates.iter().map(|c| c.instance_type.clone()).collect())
                }
                _ => None,
            })
            .unwrap_or_default()
    }
}
