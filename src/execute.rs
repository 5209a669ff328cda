//! Execute: carry out a plan's actions through the [`Actuator`] boundary, each yielding an
//! outcome.
//!
//! Groups run concurrently (bounded); each group's actions run in plan order, the launches
//! that share a fleet request as one `CreateFleet` (made when the first of them comes up). One
//! failure never stops the others. The swap follows the protocol (README, "How it decides";
//! ARCHITECTURE.md, "The swap protocol as a state machine"): pair an unpaired clone by its
//! tags, record the MaxSize on the group before raising it, attach, terminate the on-demand
//! instance through the group with `ShouldDecrementDesiredCapacity=true`, then restore MaxSize
//! and drop the tag.
//! A dry run calls nothing. It never decides: every choice was made by the planner. It logs
//! one record per outcome and per skip, never the launch spec (user data may hold secrets).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use chrono::{DateTime, Duration, Utc};
use futures::stream::{self, StreamExt};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::cloud::{
    Actuator, CloneLaunch, CloudError, ErrorKind, FleetLaunch, FleetTemplate, Inventory,
    OwnedTemplate,
};
use crate::lease::Leases;
use crate::model::{LaunchRef, Market, Snapshot};
use crate::pacing::Pacer;
use crate::pass::PassOptions;
use crate::plan::{Action, Decision, FleetRequest, Plan, Skip, Verdict};
use crate::protocol::{self, Interruption, PoolTrouble};
use crate::report::{Outcome, Status};

/// Groups whose actions run at the same time in one region. Auto Scaling's calls share one
/// throttling bucket per account and region, so a few at a time is plenty.
pub const GROUP_CONCURRENCY: usize = 4;

/// Carries out every action of `plan`, group by group, logging each group's skips (debug) and
/// each action's outcome (info, or warn for a failure) inside a span for the group. The
/// actions of a group whose lease this pass could not take (`leases.lost`) are not carried out:
/// their outcome is `superseded`, with why; those of a group whose lease it did not try to take
/// (`leases.deferred`: its deadline had passed) are `deferred`, as are those not started when
/// the operator stopped the pass.
pub async fn execute<A: Actuator + Inventory>(
    act: &A,
    snapshot: &Snapshot,
    plan: &Plan,
    leases: &Leases,
    opts: &PassOptions,
) -> Vec<Outcome> {
    let mut by_group: BTreeMap<&str, Vec<&Decision>> = BTreeMap::new();
    for d in &plan.decisions {
        by_group.entry(d.group.as_str()).or_default().push(d);
    }
    let holds = Mutex::new(Holds::default());
    let holds = &holds;
    // The region's request buckets for this pass, which the handle's every call waits on: a
    // launch that could only go after the deadline is deferred.
    let pacer = act.pacer();
    let mut results: Vec<(usize, Vec<Outcome>)> = stream::iter(by_group.into_iter().enumerate())
        .map(|(i, (group, decisions))| {
            let span = info_span!("group", group = %group);
            async move {
                let mut out = Vec::new();
                let mut troubled: Vec<Interruption> = Vec::new();
                let mut avoid = Duration::zero();
                let mut fleets_done: BTreeSet<&str> = BTreeSet::new();
                let mut raise_failed = false;
                // A group whose lease this pass did not take: none of its actions goes.
                let unleased = if leases.deferred.contains(group) {
                    Some(Status::Deferred)
                } else {
                    leases.lost.get(group).map(|why| {
                        info!(reason = %why, "group left to the other pass");
                        Status::Superseded {
                            reason: format!("not this pass's to change: {why}"),
                        }
                    })
                };
                if let Some(status) = unleased {
                    let out = decisions
                        .iter()
                        .filter(|d| matches!(d.verdict, Verdict::Act(_)))
                        .map(|d| outcome_of(d, status.clone()))
                        .collect();
                    return (i, out);
                }
                for &d in &decisions {
                    match &d.verdict {
                        // A mistake in the group's settings: loud, so an operator sees it.
                        Verdict::Skip(
                            skip @ (Skip::InvalidSetting { .. } | Skip::NoTypeAllowed { .. }),
                        ) => warn!(
                            reason = skip.name(),
                            details = %details(skip),
                            "group left alone: fix its settings"
                        ),
                        Verdict::Skip(skip) => debug!(
                            instance = d.instance.as_deref().unwrap_or(""),
                            reason = skip.name(),
                            details = %details(skip),
                            "skip"
                        ),
                        Verdict::Act(a) => {
                            // The MaxSize a group's attaches raise to counts on every earlier
                            // attach of the pass having landed: after one failed (or was not
                            // made: superseded, held), a later raise would leave MaxSize a slot
                            // too high, so it waits for the next pass, which plans from what
                            // is there.
                            let raises = matches!(
                                a,
                                Action::Swap {
                                    max_size: Some(_),
                                    ..
                                } | Action::AttachClone {
                                    max_size: Some(_),
                                    ..
                                }
                            );
                            if raises && raise_failed {
                                let o = outcome_of(
                                    d,
                                    Status::Held {
                                        reason: "an earlier attach of this group did not land \
                                                 this pass, so the MaxSize planned for this one \
                                                 is too high; the next pass plans it again"
                                            .into(),
                                    },
                                );
                                log_outcome(&o);
                                out.push(o);
                                continue;
                            }
                            let outcomes = match a {
                                Action::LaunchClone { fleet: Some(f), .. } => {
                                    // The first clone of a fleet launches them all.
                                    if !fleets_done.insert(f.key.as_str()) {
                                        continue;
                                    }
                                    let batch: Vec<&Decision> = decisions
                                        .iter()
                                        .copied()
                                        .filter(|d| fleet_of(d).is_some_and(|g| g.key == f.key))
                                        .collect();
                                    run_fleet(act, snapshot, &batch, opts, holds, pacer).await
                                }
                                _ => {
                                    vec![run_action(act, snapshot, d, a, opts, holds, pacer).await]
                                }
                            };
                            for o in outcomes {
                                log_outcome(&o);
                                raise_failed |= raises
                                    && !matches!(o.status, Status::Done { .. } | Status::DryRun);
                                if let Action::LaunchClone {
                                    avoid_minutes,
                                    availability_zone,
                                    ..
                                } = a
                                {
                                    avoid = avoid.max(Duration::minutes(i64::from(*avoid_minutes)));
                                    troubled.extend(o.no_capacity.iter().map(|t| Interruption {
                                        instance_type: t.clone(),
                                        availability_zone: availability_zone.clone(),
                                        at: opts.now,
                                        trouble: PoolTrouble::NoCapacity,
                                    }));
                                }
                                out.push(o);
                            }
                        }
                    }
                }
                if !troubled.is_empty() {
                    remember_pools(act, group, &troubled, opts.now, avoid).await;
                }
                (i, out)
            }
            .instrument(span)
        })
        .buffer_unordered(GROUP_CONCURRENCY)
        .collect()
        .await;
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().flat_map(|(_, o)| o).collect()
}

/// Records pools that had no capacity in the group's `spotswap:interrupted`, so the next
/// passes avoid them for the cool-down, as they avoid a pool that interrupted the group; merged
/// with what the tag holds at that moment (`crate::pool_memory`), so an interruption the
/// events function recorded during the pass is kept. A failure to record is logged and changes
/// nothing else: the pool is tried again next pass.
async fn remember_pools<A: Actuator + Inventory>(
    act: &A,
    group: &str,
    pools: &[Interruption],
    now: DateTime<Utc>,
    cooldown: Duration,
) {
    let value = protocol::record_pools(&BTreeMap::new(), pools, cooldown);
    let names: Vec<String> = pools
        .iter()
        .map(|p| format!("{}@{}", p.instance_type, p.availability_zone))
        .collect();
    match crate::pool_memory::record(act, group, &value, now, cooldown).await {
        Ok(_) => {
            info!(pools = %names.join(" "), "pools without capacity avoided for the cool-down")
        }
        Err(e) => warn!(
            operation = %e.operation,
            code = e.code.as_deref().unwrap_or(""),
            error = %e.message,
            "could not record the pools without capacity"
        ),
    }
}

/// What this pass has met that later launches use: what holds them back, since they would
/// meet it too (EC2 API reference, "Error codes"): the region's quota for a market (spot
/// instance count, vCPUs), or a subnet (or AZ, without one) out of addresses; and the launch
/// templates it has made, so none is made twice.
#[derive(Debug, Default)]
struct Holds {
    quota: BTreeMap<Market, String>,
    subnets: BTreeMap<String, String>,
    /// spotswap's launch templates made in this pass, by name.
    templates: BTreeSet<String>,
}

impl Holds {
    /// Why a launch of `market` into `place` must not start, if so.
    fn reason(&self, market: Market, place: &str) -> Option<String> {
        if let Some(code) = self.quota.get(&market) {
            let m = match market {
                Market::Spot => "spot",
                Market::OnDemand => "on-demand",
            };
            return Some(format!(
                "the region's {m} quota is used up ({code} earlier in this pass)"
            ));
        }
        self.subnets
            .get(place)
            .map(|code| format!("{place} has no free address ({code} earlier in this pass)"))
    }

    /// Remembers what `e` says about the scope of every later launch.
    fn learn(&mut self, market: Market, place: &str, e: &CloudError) {
        let code = e.code.clone().unwrap_or_else(|| e.operation.clone());
        match e.kind {
            ErrorKind::LimitExceeded => {
                self.quota.insert(market, code);
            }
            ErrorKind::SubnetFull => {
                self.subnets.insert(place.to_string(), code);
            }
            _ => {}
        }
    }
}

/// What a launch action asks for, whichever kind it is: a spot clone tries its ranked
/// candidates, an on-demand instance restoring a floor the group's own type.
struct LaunchRequest<'a> {
    replaces: &'a str,
    availability_zone: &'a str,
    subnet_id: Option<&'a str>,
    launch: &'a LaunchRef,
    tags: &'a BTreeMap<String, String>,
    market: Market,
    /// The spot max price (unused on-demand).
    max_price: f64,
    types: Vec<&'a str>,
}

impl<'a> LaunchRequest<'a> {
    /// The request of a launch action; `None` for any other action.
    fn of(a: &'a Action) -> Option<Self> {
        match a {
            Action::LaunchClone {
                replaces,
                availability_zone,
                subnet_id,
                launch,
                candidates,
                max_price,
                tags,
                ..
            } => Some(LaunchRequest {
                replaces,
                availability_zone,
                subnet_id: subnet_id.as_deref(),
                launch,
                tags,
                market: Market::Spot,
                max_price: *max_price,
                types: candidates
                    .iter()
                    .map(|c| c.instance_type.as_str())
                    .collect(),
            }),
            Action::LaunchOnDemand {
                replaces,
                instance_type,
                availability_zone,
                subnet_id,
                launch,
                tags,
                ..
            } => Some(LaunchRequest {
                replaces,
                availability_zone,
                subnet_id: subnet_id.as_deref(),
                launch,
                tags,
                market: Market::OnDemand,
                max_price: 0.0,
                types: vec![instance_type.as_str()],
            }),
            _ => None,
        }
    }

    /// Where the launch goes, as a full subnet holds launches: its subnet, or its AZ without
    /// one.
    fn place(&self) -> &'a str {
        self.subnet_id.unwrap_or(self.availability_zone)
    }
}

/// One log record per action outcome. Nothing from the launch spec is logged: it may hold
/// user data.
fn log_outcome(o: &Outcome) {
    let instance = o.instance.as_deref().unwrap_or("");
    let action = o.action.name();
    match &o.status {
        Status::Done {
            instance_id,
            instance_type,
        } => info!(
            instance,
            action,
            result = "done",
            clone = instance_id.as_deref().unwrap_or(""),
            instance_type = instance_type.as_deref().unwrap_or(""),
            "{action} done"
        ),
        Status::DryRun => info!(instance, action, result = "dry-run", "{action} (dry run)"),
        Status::Deferred => info!(
            instance,
            action,
            result = "deferred",
            "{action} deferred to the next pass"
        ),
        Status::Held { reason } => info!(
            instance,
            action,
            result = "held",
            reason = %reason,
            "{action} held back: {reason}"
        ),
        Status::Superseded { reason } => info!(
            instance,
            action,
            result = "superseded",
            reason = %reason,
            "{action} not needed: {reason}"
        ),
        Status::Failed { error } => warn!(
            instance,
            action,
            result = "failed",
            operation = %error.operation,
            code = error.code.as_deref().unwrap_or(""),
            error = %error.message,
            "{action} failed"
        ),
    }
}

/// A skip's details as `key=value` words, for its log record.
fn details(skip: &Skip) -> String {
    skip.details()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The fleet request of a launch decision, if it has one.
fn fleet_of(d: &Decision) -> Option<&FleetRequest> {
    match &d.verdict {
        Verdict::Act(Action::LaunchClone { fleet, .. }) => fleet.as_ref(),
        _ => None,
    }
}

/// The outcome of decision `d` with `status`.
fn outcome_of(d: &Decision, status: Status) -> Outcome {
    let hourly_saving = match (d.hourly_cost_before, d.hourly_cost_after) {
        (Some(b), Some(a)) => Some(b - a),
        _ => None,
    };
    let action = match &d.verdict {
        Verdict::Act(a) => a.kind(),
        Verdict::Skip(_) => unreachable!("outcomes are of actions"),
    };
    Outcome {
        group: d.group.clone(),
        instance: d.instance.clone(),
        action,
        status,
        hourly_saving,
        no_capacity: Vec::new(),
    }
}

/// Launches the clones of one fleet request (`batch`, its decisions in plan order) with one
/// `CreateFleet`: the first clones launched are the first decisions' outcomes; the others fail
/// with what the fleet's overrides answered. A launch configuration's group first gets the
/// launch template spotswap keeps for it.
async fn run_fleet<A: Actuator>(
    act: &A,
    snapshot: &Snapshot,
    batch: &[&Decision],
    opts: &PassOptions,
    holds: &Mutex<Holds>,
    pacer: &Pacer,
) -> Vec<Outcome> {
    let all = |status: Status| -> Vec<Outcome> {
        batch
            .iter()
            .map(|d| outcome_of(d, status.clone()))
            .collect()
    };
    let d0 = batch[0];
    let Verdict::Act(Action::LaunchClone {
        availability_zone,
        launch,
        candidates,
        max_price,
        tags,
        fleet: Some(req),
        ..
    }) = &d0.verdict
    else {
        unreachable!("a fleet batch holds fleet launches")
    };
    if opts.dry_run {
        return all(Status::DryRun);
    }
    if opts.stopped()
        || opts.deadline.is_some_and(|d| {
            tokio::time::Instant::now() >= d || pacer.next_slot("CreateFleet") >= d
        })
    {
        return all(Status::Deferred);
    }
    let mut subnets: Vec<String> = Vec::new();
    for d in batch {
        if let Verdict::Act(Action::LaunchClone {
            subnet_id: Some(s), ..
        }) = &d.verdict
            && !subnets.contains(s)
        {
            subnets.push(s.clone());
        }
    }
    let place = subnets
        .first()
        .map_or(availability_zone.as_str(), String::as_str)
        .to_string();
    let place = place.as_str();
    let held = holds
        .lock()
        .expect("holds lock")
        .reason(Market::Spot, place);
    if let Some(reason) = held {
        return all(Status::Held { reason });
    }
    let Some(spec) = snapshot.launch_specs.get(&launch.key()) else {
        let message = format!("{launch} is not in the snapshot");
        let e = CloudError::new("CreateFleet", ErrorKind::InvalidRequest, None, &message);
        return all(Status::Failed { error: e });
    };
    let (template, version) = match (launch, &req.template) {
        (LaunchRef::LaunchTemplate { id, version, .. }, _) => (
            FleetTemplate::Id(id.clone()),
            spec.resolved_version
                .map_or_else(|| version.clone(), |v| v.to_string()),
        ),
        (LaunchRef::LaunchConfiguration { name }, Some(owned)) => {
            let t = OwnedTemplate {
                name: owned.clone(),
                launch_configuration: name.clone(),
                spec: spec.clone(),
            };
            // Created once: an existing one (listed in the snapshot, or made earlier in this
            // pass) is used as it is.
            let known = snapshot.owned_templates.iter().any(|o| &o.name == owned)
                || holds.lock().expect("holds lock").templates.contains(owned);
            if !known {
                if let Err(error) = act.ensure_template(&t).await {
                    return all(Status::Failed { error });
                }
                holds
                    .lock()
                    .expect("holds lock")
                    .templates
                    .insert(owned.clone());
            }
            // spotswap creates its templates once and never adds a version.
            (FleetTemplate::Name(owned.clone()), "1".to_string())
        }
        (LaunchRef::LaunchConfiguration { name }, None) => {
            let message = format!(
                "launch configuration {name} has no launch template to launch a fleet from"
            );
            let e = CloudError::new("CreateFleet", ErrorKind::InvalidRequest, None, &message);
            return all(Status::Failed { error: e });
        }
    };
    let f = FleetLaunch {
        placement_group: placement_group(snapshot, &d0.group),
        group: d0.group.clone(),
        availability_zone: availability_zone.clone(),
        subnets,
        count: batch.len() as u32,
        types: candidates.iter().map(|c| c.instance_type.clone()).collect(),
        strategy: req.strategy,
        template,
        version,
        max_price: *max_price,
        hibernate: spec.hibernation,
        tags: tags.clone(),
        client_token: fleet_token(&d0.group, &req.key, opts.now),
    };
    let mut result = match act.launch_fleet(&f).await {
        Ok(r) => r,
        Err(e) => {
            holds
                .lock()
                .expect("holds lock")
                .learn(Market::Spot, place, &e);
            return all(Status::Failed { error: e });
        }
    };
    // Clones this set's pools had no room for: one more fleet over the batch's other pools.
    let short = f.count.saturating_sub(result.launched.len() as u32);
    let full = |t: &String| {
        result
            .errors
            .iter()
            .any(|(ty, e)| ty.as_ref() == Some(t) && e.kind == ErrorKind::CapacityUnavailable)
    };
    let others: Vec<String> = req.fallback.iter().filter(|t| !full(t)).cloned().collect();
    let only_capacity = result
        .errors
        .iter()
        .all(|(_, e)| e.kind == ErrorKind::CapacityUnavailable);
    if short > 0 && !others.is_empty() && only_capacity {
        let second = FleetLaunch {
            count: short,
            types: others,
            client_token: format!("{}-more", f.client_token),
            ..f.clone()
        };
        match act.launch_fleet(&second).await {
            Ok(r) => {
                result.launched.extend(r.launched);
                result.errors.extend(r.errors);
            }
            Err(e) => result.errors.push((None, e)),
        }
    }
    let mut no_capacity: Vec<String> = Vec::new();
    for (ty, e) in &result.errors {
        // Each override that launched nothing, as the fleet's reply says.
        info!(
            instance_type = ty.as_deref().unwrap_or(""),
            availability_zone = %availability_zone,
            operation = %e.operation,
            code = e.code.as_deref().unwrap_or(""),
            error = %e.message,
            "fleet override launched nothing"
        );
        holds
            .lock()
            .expect("holds lock")
            .learn(Market::Spot, place, e);
        if e.kind == ErrorKind::CapacityUnavailable
            && let Some(ty) = ty
            && !no_capacity.contains(ty)
        {
            no_capacity.push(ty.clone());
        }
    }
    // The error that explains a clone not launched: one that is not about capacity first
    // (it concerns the request, the quota or the subnet), else a capacity error.
    let why = result
        .errors
        .iter()
        .map(|(_, e)| e)
        .find(|e| e.kind != ErrorKind::CapacityUnavailable)
        .or_else(|| result.errors.first().map(|(_, e)| e))
        .cloned()
        .unwrap_or_else(|| {
            let message = format!(
                "the fleet launched {} of {} clones and gave no error",
                result.launched.len(),
                batch.len()
            );
            CloudError::new(
                "CreateFleet",
                ErrorKind::CapacityUnavailable,
                None,
                &message,
            )
        });
    let mut out: Vec<Outcome> = batch
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let status = match result.launched.get(i) {
                Some((id, ty)) => Status::Done {
                    instance_id: Some(id.clone()),
                    instance_type: Some(ty.clone()),
                },
                None => Status::Failed { error: why.clone() },
            };
            outcome_of(d, status)
        })
        .collect();
    out[0].no_capacity = no_capacity;
    out
}

/// Carries out one action.
async fn run_action<A: Actuator + Inventory>(
    act: &A,
    snapshot: &Snapshot,
    d: &Decision,
    a: &Action,
    opts: &PassOptions,
    holds: &Mutex<Holds>,
    pacer: &Pacer,
) -> Outcome {
    let outcome = |status| outcome_of(d, status);
    if opts.dry_run {
        return outcome(Status::DryRun);
    }
    let request = LaunchRequest::of(a);
    let starts_work =
        request.is_some() || matches!(a, Action::Swap { .. } | Action::AttachClone { .. });
    // Stopped by its operator, a pass starts no action at all (one under way finishes its
    // call in flight, and its next change is refused unsent).
    if opts.stopped()
        || (starts_work
            && opts
                .deadline
                .is_some_and(|d| tokio::time::Instant::now() >= d))
    {
        return outcome(Status::Deferred);
    }
    // A read made now, after the plan, before a call that would be wrong if another pass
    // (the CLI beside the Lambda, a deploy's first pass) attached the clone meanwhile: a
    // second attach would raise desired capacity twice, and terminating a member through EC2
    // is a capacity dip until the group replaces it.
    // The same read tells whether the instance a swap replaces is still in its group: one that
    // left it since (terminated by someone else; the group launched a replacement) cannot be
    // swapped out, and attaching the clone anyway would leave desired capacity one high.
    let (unattached, replaced) = match a {
        Action::Swap {
            clone, replaces, ..
        }
        | Action::AttachClone {
            clone, replaces, ..
        } => (Some(clone), Some(replaces)),
        Action::TerminateOrphan { clone, .. } => (Some(clone), None),
        _ => (None, None),
    };
    if let Some(clone) = unattached {
        let ids: Vec<String> = std::iter::once(clone).chain(replaced).cloned().collect();
        match act.group_membership(&ids).await {
            Ok(m) => {
                if let Some(g) = m.get(clone) {
                    return outcome(Status::Superseded {
                        reason: format!(
                            "{clone} joined group {g} after this pass read it (another pass \
                             swapped it in): nothing to attach or terminate"
                        ),
                    });
                }
                if let Some(r) = replaced.filter(|r| m.get(*r) != Some(&d.group)) {
                    return outcome(Status::Superseded {
                        reason: format!(
                            "{r} left group {} after this pass read it: {clone} is not attached \
                             for it (the next pass pairs it again or cleans it up)",
                            d.group
                        ),
                    });
                }
            }
            // Unconfirmed is not confirmed: the next pass decides again.
            Err(error) => return outcome(Status::Failed { error }),
        }
    }
    if let Some(r) = &request {
        // A launch that must wait for the region's RunInstances bucket past the deadline is
        // left to the next pass, like one that starts too late.
        if opts
            .deadline
            .is_some_and(|d| pacer.next_slot("RunInstances") >= d)
        {
            return outcome(Status::Deferred);
        }
        let held = holds
            .lock()
            .expect("holds lock")
            .reason(r.market, r.place());
        if let Some(reason) = held {
            return outcome(Status::Held { reason });
        }
    }
    let mut no_capacity = Vec::new();
    let result = match (a, &request) {
        (_, Some(r)) => {
            let result = launch(act, snapshot, &d.group, r, opts.now, &mut no_capacity).await;
            if let Err(e) = &result {
                holds
                    .lock()
                    .expect("holds lock")
                    .learn(r.market, r.place(), e);
            }
            result.map(|(id, ty)| (Some(id), Some(ty)))
        }
        (
            Action::Swap {
                clone,
                replaces,
                max_size,
                pair,
                ..
            },
            None,
        ) => match swap(act, &d.group, clone, replaces, *max_size, pair).await {
            Ok(Some(reason)) => return outcome(Status::Superseded { reason }),
            Ok(None) => Ok((None, None)),
            Err(e) => Err(e),
        },
        (
            Action::AttachClone {
                clone,
                max_size,
                pair,
                ..
            },
            None,
        ) => attach_clone(act, &d.group, clone, *max_size, pair)
            .await
            .map(|()| (None, None)),
        // The clone goes with desired capacity decremented: the instance it was to replace
        // keeps serving, and the group's size is the user's again.
        (Action::UndoSwap { clone, .. }, None) => act
            .terminate_in_group(clone, true)
            .await
            .map(|()| (None, None)),
        (Action::BackOff { backoff }, None) => act
            .tag_group(&d.group, protocol::LAUNCH_BACKOFF, &backoff.value())
            .await
            .map(|()| (None, None)),
        (Action::EndBackOff { .. }, None) => act
            .untag_group(&d.group, protocol::LAUNCH_BACKOFF)
            .await
            .map(|()| (None, None)),
        (Action::DeleteTemplate { template_id, .. }, None) => act
            .delete_template(template_id)
            .await
            .map(|()| (None, None)),
        (Action::CompleteSwap { clone, replaces }, None) => {
            match remove_replaced(act, &d.group, clone, replaces).await {
                Ok(Some(reason)) => return outcome(Status::Superseded { reason }),
                Ok(None) => Ok((None, None)),
                Err(e) => Err(e),
            }
        }
        (
            Action::SettleSwap {
                remove, settled, ..
            },
            None,
        ) => {
            // The record first: if the pass dies after the removal, no later pass takes a
            // second member out for the same attach; if it dies before, the next takes this
            // same member out (`src/plan/settle.rs`).
            if let Some(v) = settled
                && let Err(e) = act.tag_group(&d.group, protocol::SETTLED, v).await
            {
                return outcome(Status::Failed { error: e });
            }
            // A read made after the decision: only a member still in the group goes, so a
            // pass that raced this one (or the group's own scaling) cannot make it take a
            // second instance out.
            match act.group_membership(std::slice::from_ref(remove)).await {
                Ok(m) if m.get(remove) != Some(&d.group) => {
                    return outcome(Status::Superseded {
                        reason: format!("{remove} has left group {} since it was read", d.group),
                    });
                }
                Ok(_) => act
                    .terminate_in_group(remove, true)
                    .await
                    .map(|()| (None, None)),
                Err(e) => Err(e),
            }
        }
        (Action::TerminateOrphan { clone, .. }, None) => act
            .terminate(std::slice::from_ref(clone))
            .await
            .map(|()| (None, None)),
        (
            Action::RestoreMaxSize {
                restored,
                partial: false,
                ..
            },
            None,
        ) => restore_max_size(act, &d.group, *restored)
            .await
            .map(|()| (None, None)),
        // Desired capacity is above the recorded value: come down as far as it allows and keep
        // the tag, so a later pass finishes the restore.
        (
            Action::RestoreMaxSize {
                restored,
                partial: true,
                ..
            },
            None,
        ) => act
            .set_max_size(&d.group, *restored)
            .await
            .map(|()| (None, None)),
        (Action::LaunchClone { .. } | Action::LaunchOnDemand { .. }, None) => {
            unreachable!("a launch action has a launch request")
        }
    };
    let status = match result {
        Ok((instance_id, instance_type)) => Status::Done {
            instance_id,
            instance_type,
        },
        Err(error) => Status::Failed { error },
    };
    Outcome {
        no_capacity,
        ..outcome(status)
    }
}

/// The placement group of `group`, which its clones go in as its own instances do.
fn placement_group(snapshot: &Snapshot, group: &str) -> Option<String> {
    snapshot
        .groups
        .iter()
        .find(|g| g.name == group)
        .and_then(|g| g.placement_group.clone())
}

/// Launches a clone, trying the candidates in order. A capacity error moves on to the next
/// type. So does a refusal of the request for this type (`InvalidRequest`: EC2 answers
/// InvalidParameterCombination or InvalidParameterValue for a type that does not support the
/// spec's hibernation, EBS optimization or its AMI's ENA setting, say), until the same code has
/// refused three types in a row: that is the spec's fault, which no other type mends, and the
/// launch stops with that error. Any other error stops at once (it would fail for every type
/// alike).
/// An on-demand instance restoring the group's floor has one candidate, the group's own type.
/// Each type that answers with a capacity error is noted in `no_capacity`; a quota or a full
/// subnet stops at once, as every other type would meet it too.
async fn launch<A: Actuator>(
    act: &A,
    snapshot: &Snapshot,
    group: &str,
    r: &LaunchRequest<'_>,
    now: DateTime<Utc>,
    no_capacity: &mut Vec<String>,
) -> Result<(String, String), CloudError> {
    let launch = r.launch;
    let spec = snapshot
        .launch_specs
        .get(&launch.key())
        .cloned()
        .ok_or_else(|| {
            CloudError::new(
                "RunInstances",
                ErrorKind::InvalidRequest,
                None,
                &format!("{launch} is not in the snapshot"),
            )
        })?;
    // Three types refused with one code make it the spec's fault, not the types'.
    const SAME_REFUSALS: usize = 3;
    let mut last = None;
    // The code of the request refusals in a row so far, and how many there were.
    let mut refusals: (Option<String>, usize) = (None, 0);
    for &ty in &r.types {
        let l = CloneLaunch {
            placement_group: placement_group(snapshot, group),
            group: group.to_string(),
            replaces: r.replaces.to_string(),
            instance_type: ty.to_string(),
            availability_zone: r.availability_zone.to_string(),
            subnet_id: r.subnet_id.map(str::to_string),
            launch: launch.clone(),
            spec: spec.clone(),
            market: r.market,
            max_price: r.max_price,
            tags: r.tags.clone(),
            client_token: client_token(r.replaces, ty, now),
        };
        match act.launch_clone(&l).await {
            Ok(id) => return Ok((id, ty.to_string())),
            Err(e) if e.kind == ErrorKind::CapacityUnavailable => {
                refusals = (None, 0);
                no_capacity.push(ty.to_string());
                last = Some(e);
            }
            Err(e) if e.kind == ErrorKind::InvalidRequest => {
                if refusals.1 > 0 && refusals.0 == e.code {
                    refusals.1 += 1;
                } else {
                    refusals = (e.code.clone(), 1);
                }
                if refusals.1 >= SAME_REFUSALS {
                    return Err(e);
                }
                last = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        CloudError::new(
            "RunInstances",
            ErrorKind::InvalidRequest,
            None,
            "no candidate types",
        )
    }))
}

/// An idempotency token: one per pass, instance and type, so a call retried within the pass
/// (by the SDK after a timeout) cannot launch twice, while a later pass can launch again after
/// a clone is lost. EC2 answers a reused token with the original instance for at least a day
/// (EC2 API reference, "Ensuring idempotency"), so the token must change between passes; the
/// protocol's own check for an existing clone of the instance keeps passes from doubling up.
pub fn client_token(replaces: &str, instance_type: &str, now: DateTime<Utc>) -> String {
    let token = format!("spotswap-{replaces}-{instance_type}-{}", now.timestamp());
    // ClientToken is at most 64 ASCII characters.
    token.chars().take(64).collect()
}

/// The idempotency token of a fleet: one per pass, group and request, as [`client_token`] is
/// per instance (ASCII, at most 64 characters, whatever the group's name).
pub fn fleet_token(group: &str, key: &str, now: DateTime<Utc>) -> String {
    let hash = protocol::stable_hash(&format!("{group}\n{key}"));
    format!("spotswap-fleet-{hash:016x}-{}", now.timestamp())
}

/// The swap: attach the clone, remove the on-demand instance through the group, with MaxSize
/// raised around it when the group is full.
/// Carries out a swap; `Ok(Some(why))` when it was undone because the instance it replaces
/// left the group between the attach and its removal.
async fn swap<A: Actuator + Inventory>(
    act: &A,
    group: &str,
    clone: &str,
    replaces: &str,
    max_size: Option<crate::plan::MaxSizeChange>,
    pair: &BTreeMap<String, String>,
) -> Result<Option<String>, CloudError> {
    attach_clone(act, group, clone, max_size, pair).await?;
    // If this fails, the next pass sees the clone attached with the instance still there and
    // completes the swap; MaxSize stays raised until then, recorded in the tag.
    let undone = remove_replaced(act, group, clone, replaces).await?;
    if let Some(m) = max_size {
        restore_max_size(act, group, m.original).await?;
    }
    Ok(undone)
}

/// The first half of a swap: the clone paired (and, behind load balancers, its attach time
/// recorded), MaxSize raised if the group is full, the clone attached. A failed attach puts
/// MaxSize back at once.
async fn attach_clone<A: Actuator>(
    act: &A,
    group: &str,
    clone: &str,
    max_size: Option<crate::plan::MaxSizeChange>,
    pair: &BTreeMap<String, String>,
) -> Result<(), CloudError> {
    // The pair first: if the pass dies before the attach, the next pass finds the clone paired
    // and swaps it in for the same instance.
    if !pair.is_empty() {
        act.tag_instance(clone, pair).await?;
    }
    if let Some(m) = max_size {
        // The tag first: if the pass dies after raising MaxSize, the next pass finds the tag
        // and restores the original value.
        act.tag_group(
            group,
            protocol::MAX_SIZE,
            &protocol::max_size_value(m.original),
        )
        .await?;
        act.set_max_size(group, m.raised).await?;
    }
    if let Err(e) = act.attach(group, clone).await {
        if let Some(m) = max_size {
            // Nothing was attached: give back this attach's own slot now rather than next
            // pass. Slots that clones attached earlier in this pass hold stay, with the tag
            // (MaxSize never goes below desired capacity: Auto Scaling refuses it).
            let back = m.raised.saturating_sub(1).max(m.original);
            let _ = if back == m.original {
                restore_max_size(act, group, m.original).await
            } else {
                act.set_max_size(group, back).await
            };
        }
        return Err(e);
    }
    Ok(())
}

/// Removes the instance a swap replaces through the group, decrementing desired capacity, once
/// its clone is attached. If that fails because the instance has left the group since the
/// pass read it (someone terminated it, and the group launched its replacement), no later
/// pass could tell the attach from a finished swap, so the attach is undone now, the same way:
/// the clone goes with decrement and desired capacity comes back to where the user left it
/// (`Ok(Some(why))`). Any other failure is returned: the next pass completes the swap.
async fn remove_replaced<A: Actuator + Inventory>(
    act: &A,
    group: &str,
    clone: &str,
    replaces: &str,
) -> Result<Option<String>, CloudError> {
    let Err(e) = act.terminate_in_group(replaces, true).await else {
        return Ok(None);
    };
    let gone = act
        .group_membership(&[replaces.to_string()])
        .await
        .is_ok_and(|m| m.get(replaces).map(String::as_str) != Some(group));
    if !gone {
        return Err(e);
    }
    act.terminate_in_group(clone, true).await?;
    Ok(Some(format!(
        "{replaces} left group {group} before {clone}, attached for it, could replace it: \
         {clone} was taken out again, desired capacity with it"
    )))
}

async fn restore_max_size<A: Actuator>(act: &A, group: &str, to: u32) -> Result<(), CloudError> {
    act.set_max_size(group, to).await?;
    act.untag_group(group, protocol::MAX_SIZE).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn client_tokens_are_stable_within_a_pass_and_change_between_passes() {
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 10, 5, 0).unwrap();
        let next_pass = Utc.with_ymd_and_hms(2026, 11, 23, 10, 10, 0).unwrap();
        let a = client_token("i-0123456789abcdef0", "m5a.large", t);
        assert_eq!(a, client_token("i-0123456789abcdef0", "m5a.large", t));
        assert_ne!(
            a,
            client_token("i-0123456789abcdef0", "m5a.large", next_pass)
        );
        assert_ne!(a, client_token("i-0123456789abcdef0", "m6i.large", t));
        let long = client_token("i-0123456789abcdef0", "u7in-32tb.224xlarge", t);
        assert!(long.len() <= 64);
    }
}
