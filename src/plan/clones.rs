//! Clone bookkeeping: what becomes of the clones earlier passes launched. Each is attached
//! (done, or a swap to complete), pending (waiting for the group's grace period, or ready to
//! swap in), or an orphan to terminate; a MaxSize a previous pass left raised is restored.
//!
//! The swap protocol's steps are in the README ("How it decides"): a ready clone is attached,
//! then the on-demand instance leaves through the group with desired capacity decremented, and
//! a full group gets one more slot of MaxSize for the length of the swap. Pure.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::Duration;

use crate::model::{Group, Instance, InstanceState, Market, Member};
use crate::protocol;
use crate::settings::GroupSettings;

use super::{Action, Ctx, Decision, GroupCtx, MaxSizeChange, OrphanReason, Skip, Verdict, costs};

/// Whether a clone is outside its group: not attached, as EC2 and the group both say.
pub fn is_unattached(ctx: &Ctx, group: &Group, clone: &Instance) -> bool {
    clone.auto_scaling_group.is_none() && ctx.member(group, &clone.instance_id).is_none()
}

/// The group's clones, classified.
#[derive(Debug, Default)]
pub struct Bookkeeping<'a> {
    /// Attached clones whose replaced instance is still a member: a pass stopped mid-swap.
    pub half_done: Vec<&'a Instance>,
    /// One unattached clone per replaced instance that is still in service, with whether it
    /// is ready to swap in.
    pub pending: Vec<(&'a Instance, bool)>,
    /// Unattached clones not paired yet, with whether each is ready to swap in: each is
    /// paired with an on-demand instance of its AZ when it is swapped in.
    pub unpaired: Vec<(&'a Instance, bool)>,
    /// Clones to terminate, by id.
    pub orphans: Vec<(&'a Instance, OrphanReason)>,
}

/// Classifies the group's live clones. A clone whose replaced instance is gone, that was
/// stopped, or that waited past the grace period plus the orphan timeout (unless it can be
/// swapped in now) is an orphan; of several clones of one instance, one is kept.
pub fn classify<'a>(
    ctx: &Ctx,
    group: &Group,
    clones: &[&'a Instance],
    policy: &GroupSettings,
    can_swap: bool,
) -> Bookkeeping<'a> {
    let now = ctx.now();
    let grace = Duration::seconds(i64::from(group.health_check_grace_period_secs));
    let timeout = grace + Duration::minutes(i64::from(policy.orphan_timeout_minutes));
    let mut book = Bookkeeping::default();
    let mut by_target: BTreeMap<&str, Vec<&Instance>> = BTreeMap::new();
    // What the group launches from now; unknown when its spec cannot be read, and then no
    // clone is judged drifted.
    let current = group.launch.as_ref().and_then(|l| {
        let spec = ctx.snap().launch_specs.get(&l.key())?;
        Some(protocol::launch_identity(l, spec))
    });
    for &c in clones {
        let (_, replaces) = protocol::clone_of(c).expect("clones are tagged");
        let drifted = current
            .as_deref()
            .zip(c.tags.get(protocol::LAUNCHED_FROM))
            .is_some_and(|(now, from)| now != from);
        if drifted && is_unattached(ctx, group, c) {
            book.orphans.push((c, OrphanReason::Drifted));
            continue;
        }
        if !is_unattached(ctx, group, c) {
            // A clone is paired before it is attached; an attached one without a pair is an
            // ordinary member.
            let replaced_still_member = !replaces.is_empty()
                && ctx.member(group, &c.instance_id).is_some()
                && ctx
                    .member(group, replaces)
                    .is_some_and(|m| !m.lifecycle_state.starts_with("Terminating"));
            if replaced_still_member {
                book.half_done.push(c);
            }
            continue;
        }
        if replaces.is_empty() {
            let ready = c.state == InstanceState::Running && now - c.launch_time >= grace;
            if matches!(c.state, InstanceState::Stopped | InstanceState::Stopping) {
                book.orphans.push((c, OrphanReason::NotRunning));
            } else if now - c.launch_time > timeout && !(can_swap && ready) {
                book.orphans.push((c, OrphanReason::Timeout));
            } else {
                book.unpaired.push((c, ready));
            }
            continue;
        }
        let target_ok = ctx
            .member(group, replaces)
            .is_some_and(Member::is_in_service)
            && ctx
                .snap()
                .instances
                .get(replaces)
                .is_some_and(|i| !i.state.is_gone());
        if !target_ok {
            book.orphans.push((c, OrphanReason::TargetGone));
        } else if matches!(c.state, InstanceState::Stopped | InstanceState::Stopping) {
            book.orphans.push((c, OrphanReason::NotRunning));
        } else if now - c.launch_time > timeout && !(can_swap && c.state == InstanceState::Running)
        {
            // A clone that can be swapped in now is, however long it waited: terminating it
            // and launching another would only pay twice for the same capacity.
            book.orphans.push((c, OrphanReason::Timeout));
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
            book.orphans.push((extra, OrphanReason::Duplicate));
        }
        let keep = cs[0];
        let ready = keep.state == InstanceState::Running && now - keep.launch_time >= grace;
        book.pending.push((keep, ready));
    }
    book.pending
        .sort_by(|a, b| a.0.instance_id.cmp(&b.0.instance_id));
    // Ready clones are paired first, then the oldest.
    book.unpaired.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then(a.0.launch_time.cmp(&b.0.launch_time))
            .then(a.0.instance_id.cmp(&b.0.instance_id))
    });
    book.orphans
        .sort_by(|a, b| a.0.instance_id.cmp(&b.0.instance_id));
    book
}

/// The group after the swaps a previous pass left half done are completed.
#[derive(Debug, Default)]
pub struct AfterCompletions<'a> {
    /// Desired capacity once they are.
    pub desired: u32,
    /// The instances leaving the group, or staying only until their clone serves: neither
    /// capacity to keep nor instances to replace.
    pub leaving: BTreeSet<&'a str>,
    /// Clones whose swap is undone this pass because they never became healthy behind the
    /// group's load balancers: failures the group backs off for.
    pub never_healthy: Vec<&'a Instance>,
}

/// Completes half-done swaps: terminates the replaced instance through the group, once the
/// clone is in service in the group and healthy behind every load balancer of it. Until
/// then the instance stays (skip `clone-not-healthy`); a clone still not healthy
/// `healthy-timeout-minutes` after its attach leaves again (`undo-swap`).
pub fn complete_swaps<'a>(
    g: GroupCtx,
    policy: &GroupSettings,
    book: &Bookkeeping<'a>,
    out: &mut Vec<Decision>,
) -> AfterCompletions<'a> {
    let mut after = AfterCompletions {
        desired: g.group.desired_capacity,
        ..AfterCompletions::default()
    };
    let now = g.ctx.now();
    let timeout = Duration::minutes(i64::from(policy.healthy_timeout_minutes));
    for clone in &book.half_done {
        let (_, replaces) = protocol::clone_of(clone).expect("clones are tagged");
        let Some((load_balancer, state)) = not_serving(g, clone) else {
            out.push(costs::swap(
                g,
                clone,
                replaces,
                Action::CompleteSwap {
                    clone: clone.instance_id.clone(),
                    replaces: replaces.to_string(),
                },
            ));
            after.desired = after.desired.saturating_sub(1);
            after.leaving.insert(replaces);
            continue;
        };
        // An attach before spotswap recorded its time: the clone's launch is the earliest
        // it can have been.
        let attached = clone
            .tags
            .get(protocol::ATTACHED)
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map_or(clone.launch_time, |t| t.with_timezone(&chrono::Utc));
        let left = attached + timeout - now;
        if left <= Duration::zero() {
            out.push(costs::removal(
                g,
                &clone.instance_id,
                Action::UndoSwap {
                    clone: clone.instance_id.clone(),
                    replaces: replaces.to_string(),
                    load_balancer,
                    state,
                },
            ));
            after.desired = after.desired.saturating_sub(1);
            after.leaving.insert(clone.instance_id.as_str());
            after.never_healthy.push(clone);
        } else {
            let skip = Skip::CloneNotHealthy {
                clone: clone.instance_id.clone(),
                load_balancer,
                state,
                undone_in_seconds: left.num_seconds(),
            };
            out.push(costs::instance_skip(g, replaces, skip));
            after.leaving.insert(replaces);
        }
    }
    after
}

/// Why the replaced instance of an attached clone may not leave yet: the first place the clone
/// does not serve (the group itself, by lifecycle state, then each load balancer in order) and
/// what it says there; `None` when it serves everywhere.
fn not_serving(g: GroupCtx, clone: &Instance) -> Option<(String, String)> {
    let member = g.ctx.member(g.group, &clone.instance_id)?;
    if !member.is_in_service() {
        return Some(("the group".to_string(), member.lifecycle_state.clone()));
    }
    let health = g.ctx.snap().target_health.get(&clone.instance_id);
    for lb in g.group.load_balancers() {
        let seen = health.and_then(|h| h.iter().find(|t| t.load_balancer == lb));
        match seen {
            Some(t) if t.is_healthy() => {}
            Some(t) => return Some((lb.name().to_string(), t.state.clone())),
            None => return Some((lb.name().to_string(), "unknown".to_string())),
        }
    }
    None
}

/// Restores a MaxSize a previous pass left raised. Never below desired capacity, which Auto
/// Scaling would refuse: if the group has since scaled out past the recorded value, MaxSize
/// comes down only as far as desired capacity and the tag stays for a later pass, so MaxSize
/// ends where the user left it once the group scales back in (never clamped and forgotten).
/// Returns the MaxSize the group has after this pass's restores, and the recorded value still
/// to come back to, if the restore is not complete.
pub fn restore_max_size(
    group: &Group,
    leftover: Option<u32>,
    desired: u32,
    out: &mut Vec<Decision>,
) -> (u32, Option<u32>) {
    let Some(original) = leftover else {
        return (group.max_size, None);
    };
    let restored = original.max(desired);
    let partial = restored > original;
    let pending = partial.then_some(original);
    if partial && restored == group.max_size {
        // Nothing can change yet; the tag keeps the value to come back to.
        return (group.max_size, pending);
    }
    out.push(Decision {
        group: group.name.clone(),
        instance: None,
        verdict: Verdict::Act(Action::RestoreMaxSize {
            current: group.max_size,
            restored,
            partial,
        }),
        hourly_cost_before: Some(0.0),
        hourly_cost_after: Some(0.0),
        prices: Vec::new(),
    });
    (restored, pending)
}

/// Terminates the orphans found by [`classify`].
pub fn terminate_orphans(g: GroupCtx, book: &Bookkeeping, out: &mut Vec<Decision>) {
    for (c, reason) in &book.orphans {
        out.push(costs::orphan(g.ctx, &g.group.name, c, *reason, g.pricing));
    }
}

/// What the launch stage starts from, once swaps are planned.
#[derive(Debug, Default)]
pub struct LaunchState<'a> {
    /// In-service on-demand members (not leaving).
    pub on_demand_ids: BTreeSet<&'a str>,
    /// In-service spot members (not leaving): what an on-demand instance may replace when the
    /// group is below its floor.
    pub spot_ids: BTreeSet<&'a str>,
    /// On-demand instances once in-flight clones are swapped in (spot clones take one away,
    /// on-demand ones restoring the floor add one).
    pub on_demand: u32,
    /// On-demand instances the group keeps.
    pub keep: u32,
    /// In-service instances (not leaving).
    pub in_service: u32,
    /// Instances that already have a clone.
    pub in_flight: BTreeSet<&'a str>,
    /// Clones still waiting after this pass.
    pub unready: u32,
    /// Clones that stay in flight (waiting or being swapped in this pass).
    pub kept: Vec<&'a Instance>,
}

/// Swaps in ready clones and lets the others wait, within the on-demand floor: a spot clone
/// whose swap would take on-demand capacity below the group's minimum is not needed any more,
/// nor an on-demand one (launched to restore the floor) once the floor is met. While
/// a MaxSize restore is still pending (`restore_pending`: the value recorded in the tag), a
/// swap that would need MaxSize raised again waits, so the recorded value is never lost.
pub fn swaps<'a>(
    g: GroupCtx<'a>,
    policy: &GroupSettings,
    book: &Bookkeeping<'a>,
    after: &AfterCompletions<'a>,
    (max_size, restore_pending): (u32, Option<u32>),
    out: &mut Vec<Decision>,
) -> LaunchState<'a> {
    let GroupCtx {
        ctx,
        group,
        pricing,
    } = g;
    let now = ctx.now();
    let grace = Duration::seconds(i64::from(group.health_check_grace_period_secs));
    // An instance whose swap is being completed is leaving: it is neither capacity to keep
    // nor an instance to replace.
    let in_service: Vec<&Member> = group
        .members
        .iter()
        .filter(|m| m.is_in_service() && !after.leaving.contains(m.instance_id.as_str()))
        .collect();
    let market_of = |m: &&Member| ctx.snap().instances.get(&m.instance_id).map(|i| i.market);
    let ids_on = |market: Market| -> BTreeSet<&str> {
        in_service
            .iter()
            .filter(|m| market_of(m) == Some(market))
            .map(|m| m.instance_id.as_str())
            .collect()
    };
    let on_demand_ids = ids_on(Market::OnDemand);
    let keep = policy.min_on_demand(in_service.len() as u32);
    let state = LaunchState {
        on_demand: on_demand_ids.len() as u32,
        on_demand_ids,
        spot_ids: ids_on(Market::Spot),
        keep,
        in_service: in_service.len() as u32,
        ..LaunchState::default()
    };
    // On-demand clones first: they raise the count the spot clones are judged against.
    let mut pending: Vec<(&Instance, bool)> = book.pending.clone();
    pending.sort_by_key(|(c, _)| c.market != Market::OnDemand);
    let mut swap = SwapState {
        state,
        after,
        max_size,
        restore_pending,
        grace,
        now,
        waiting: 0,
    };
    let not_needed =
        |clone: &Instance| costs::orphan(ctx, &group.name, clone, OrphanReason::NotNeeded, pricing);
    for (clone, ready) in pending {
        let (_, replaces) = protocol::clone_of(clone).expect("clones are tagged");
        let restores_floor = clone.market == Market::OnDemand;
        let needed = if restores_floor {
            swap.state.on_demand < swap.state.keep
        } else {
            swap.state.on_demand > swap.state.keep
        };
        if !needed {
            out.push(not_needed(clone));
            continue;
        }
        swap.take(
            g,
            clone,
            ready,
            replaces,
            (BTreeMap::new(), Vec::new()),
            out,
        );
    }
    // Clones launched unpaired (a fleet's batch) take the oldest replaceable on-demand
    // instance of their AZ that has no clone yet; one that finds none is not needed. Those
    // instances are queued per AZ once, oldest first, so pairing stays linear in a large group.
    let mut free: BTreeMap<&str, VecDeque<&Instance>> = BTreeMap::new();
    if !book.unpaired.is_empty() {
        let mut replaceable: Vec<&Instance> = swap
            .state
            .on_demand_ids
            .iter()
            .filter(|id| !swap.state.in_flight.contains(*id))
            .filter_map(|id| may_replace(g, id).ok())
            .collect();
        replaceable.sort_by(|a, b| {
            a.launch_time
                .cmp(&b.launch_time)
                .then(a.instance_id.cmp(&b.instance_id))
        });
        for i in replaceable {
            free.entry(i.availability_zone.as_str())
                .or_default()
                .push_back(i);
        }
    }
    for &(clone, ready) in &book.unpaired {
        let victim = if swap.state.on_demand > swap.state.keep {
            free.get_mut(clone.availability_zone.as_str())
                .and_then(VecDeque::pop_front)
        } else {
            None
        };
        let Some(victim) = victim else {
            out.push(not_needed(clone));
            continue;
        };
        let pair = protocol::pair_tags(group, clone, victim);
        swap.take(g, clone, ready, &victim.instance_id, pair, out);
    }
    swap.state
}

/// What [`swaps`] carries from one clone to the next.
struct SwapState<'a, 'b> {
    state: LaunchState<'a>,
    after: &'b AfterCompletions<'a>,
    max_size: u32,
    restore_pending: Option<u32>,
    grace: Duration,
    now: chrono::DateTime<chrono::Utc>,
    /// Clones attached this pass whose instance stays until they serve: desired capacity is
    /// that much higher.
    waiting: u32,
}

impl<'a> SwapState<'a, '_> {
    /// Keeps a needed clone in flight for `replaces`: swapped in now if ready, else a skip on
    /// the instance it will replace saying what it waits for.
    fn take(
        &mut self,
        g: GroupCtx<'a>,
        clone: &'a Instance,
        ready: bool,
        replaces: &'a str,
        (pair, tags_left_out): (BTreeMap<String, String>, Vec<String>),
        out: &mut Vec<Decision>,
    ) {
        let GroupCtx { ctx, pricing, .. } = g;
        let state = &mut self.state;
        if clone.market == Market::OnDemand {
            state.on_demand += 1;
        } else {
            state.on_demand -= 1;
        }
        state.in_flight.insert(replaces);
        state.kept.push(clone);
        // The attach raises desired capacity by one and fails past MaxSize (Auto Scaling API
        // reference, AttachInstances), so a full group gets one more slot for the length of
        // the swap.
        let desired = self.after.desired + self.waiting;
        let max_change = (desired + 1 > self.max_size).then_some(MaxSizeChange {
            original: self.max_size,
            raised: desired + 1,
        });
        let blocked_by_restore = max_change.and(self.restore_pending);
        if ready && blocked_by_restore.is_none() {
            let clone_id = clone.instance_id.clone();
            let action = if g.group.behind_load_balancers() {
                // The instance stays until the clone serves (a later pass completes the swap),
                // so desired capacity stays one higher meanwhile: a second attach this pass
                // needs its own slot of MaxSize.
                self.waiting += 1;
                let mut pair = pair;
                pair.insert(protocol::ATTACHED.to_string(), self.now.to_rfc3339());
                Action::AttachClone {
                    clone: clone_id,
                    replaces: replaces.to_string(),
                    max_size: max_change,
                    pair,
                    tags_left_out,
                }
            } else {
                Action::Swap {
                    clone: clone_id,
                    replaces: replaces.to_string(),
                    max_size: max_change,
                    pair,
                    tags_left_out,
                }
            };
            out.push(costs::swap(g, clone, replaces, action));
            return;
        }
        state.unready += 1;
        let skip = if let (true, Some(original)) = (ready, blocked_by_restore) {
            Skip::MaxSizeRestorePending {
                clone: clone.instance_id.clone(),
                original,
            }
        } else if clone.state == InstanceState::Running {
            let ready_at = clone.launch_time + self.grace;
            Skip::CloneNotReady {
                clone: clone.instance_id.clone(),
                ready_in_seconds: (ready_at - self.now).num_seconds().max(0),
            }
        } else {
            Skip::CloneStarting {
                clone: clone.instance_id.clone(),
                state: clone.state,
            }
        };
        let mut d = costs::instance_skip(g, replaces, skip);
        if let Some(p) = ctx.inputs.prices.now(pricing, clone) {
            d.hourly_cost_after = Some(p.price);
            d.prices.push(p);
        }
        out.push(d);
    }
}

/// Whether the in-service member `id` may be replaced now: it is in the snapshot, healthy,
/// unprotected from scale-in and running. The one rule for spot clones and floor restores.
pub fn may_replace<'a>(g: GroupCtx<'a>, id: &str) -> Result<&'a Instance, Skip> {
    let member = g.ctx.member(g.group, id).ok_or(Skip::InstanceNotFound)?;
    match g.ctx.snap().instances.get(id) {
        None => Err(Skip::InstanceNotFound),
        Some(_) if !member.is_healthy() => Err(Skip::Unhealthy),
        Some(_) if member.protected_from_scale_in => Err(Skip::ProtectedFromScaleIn),
        Some(i) if i.state != InstanceState::Running => Err(Skip::NotRunning { state: i.state }),
        Some(i) => Ok(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Snapshot;
    use crate::plan::Inputs;
    use crate::settings::Settings;
    use chrono::{DateTime, Utc};
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    /// A clone of `replaces`, `age_min` minutes old, attached to `web` or not.
    fn clone(
        id: &str,
        replaces: &str,
        state: &str,
        age_min: i64,
        attached: bool,
    ) -> serde_json::Value {
        json!({
            "instance_id": id, "instance_type": "m5a.large", "availability_zone": "us-east-1a",
            "market": "spot", "state": state,
            "launch_time": now() - Duration::minutes(age_min),
            "auto_scaling_group": if attached { Some("web") } else { None },
            "tags": {"spotswap:group": "web", "spotswap:replaces": replaces}
        })
    }

    /// Group `web` (grace 300 s) with on-demand members i-1 (in service) and i-2 (terminating),
    /// the given clones, and attached clones as members.
    fn snapshot(clones: &[serde_json::Value]) -> Snapshot {
        let mut members = vec![
            json!({"instance_id": "i-1", "lifecycle_state": "InService", "health_status": "Healthy"}),
            json!({"instance_id": "i-2", "lifecycle_state": "Terminating", "health_status": "Healthy"}),
        ];
        let mut instances = serde_json::Map::new();
        for id in ["i-1", "i-2"] {
            instances.insert(id.into(), json!({
                "instance_id": id, "instance_type": "m5.large", "availability_zone": "us-east-1a",
                "market": "on-demand", "state": "running", "launch_time": now() - Duration::days(1),
                "auto_scaling_group": "web"
            }));
        }
        for c in clones {
            let id = c["instance_id"].as_str().unwrap();
            if c["auto_scaling_group"] == "web" {
                members.push(json!({"instance_id": id, "lifecycle_state": "InService", "health_status": "Healthy"}));
            }
            instances.insert(id.into(), c.clone());
        }
        serde_json::from_value(json!({
            "region": "us-east-1",
            "groups": [{"name": "web", "min_size": 1, "max_size": 4, "desired_capacity": 2,
                        "health_check_grace_period_secs": 300, "members": members,
                        "tags": {"spot-enabled": "true"}}],
            "instances": instances,
            "on_demand": {"source": {"kind": "live"}, "prices": {}}
        }))
        .unwrap()
    }

    /// What became of each clone: `half-done`, `ready`, `waiting`, an orphan reason, or `done`.
    fn classified(clones: &[serde_json::Value], can_swap: bool) -> Vec<(String, String)> {
        let snap = snapshot(clones);
        let settings = Settings::default();
        let inputs = Inputs::new(&snap, &settings, now());
        let ctx = Ctx::new(&inputs);
        let group = &snap.groups[0];
        let live = ctx.clones.get("web").cloned().unwrap_or_default();
        let book = classify(&ctx, group, &live, &settings.group, can_swap);
        let mut out: Vec<(String, String)> = Vec::new();
        for c in &book.half_done {
            out.push((c.instance_id.clone(), "half-done".into()));
        }
        for (c, ready) in &book.pending {
            let what = if *ready { "ready" } else { "waiting" };
            out.push((c.instance_id.clone(), what.into()));
        }
        for (c, reason) in &book.orphans {
            out.push((c.instance_id.clone(), reason.name().into()));
        }
        for c in live {
            if !out.iter().any(|(id, _)| *id == c.instance_id) {
                out.push((c.instance_id.clone(), "done".into()));
            }
        }
        out.sort();
        out
    }

    #[test]
    fn each_clone_is_pending_half_done_done_or_an_orphan_with_its_reason() {
        // (case, clones, can the group swap now, expected)
        type Case = (
            &'static str,
            Vec<serde_json::Value>,
            bool,
            Vec<(&'static str, &'static str)>,
        );
        let cases: Vec<Case> = vec![
            (
                "past the grace period",
                vec![clone("s-1", "i-1", "running", 10, false)],
                true,
                vec![("s-1", "ready")],
            ),
            (
                "inside the grace period",
                vec![clone("s-1", "i-1", "running", 2, false)],
                true,
                vec![("s-1", "waiting")],
            ),
            (
                "still starting",
                vec![clone("s-1", "i-1", "pending", 10, false)],
                true,
                vec![("s-1", "waiting")],
            ),
            (
                "its instance left the group",
                vec![clone("s-1", "i-9", "running", 10, false)],
                true,
                vec![("s-1", "target-gone")],
            ),
            (
                "its instance is terminating",
                vec![clone("s-1", "i-2", "running", 10, false)],
                true,
                vec![("s-1", "target-gone")],
            ),
            (
                "stopped",
                vec![clone("s-1", "i-1", "stopped", 10, false)],
                true,
                vec![("s-1", "not-running")],
            ),
            (
                "past the timeout but swappable now",
                vec![clone("s-1", "i-1", "running", 70, false)],
                true,
                vec![("s-1", "ready")],
            ),
            (
                "past the timeout in a blocked group",
                vec![clone("s-1", "i-1", "running", 70, false)],
                false,
                vec![("s-1", "timeout")],
            ),
            (
                "past the timeout and never running",
                vec![clone("s-1", "i-1", "pending", 70, false)],
                true,
                vec![("s-1", "timeout")],
            ),
            (
                "attached, its instance still a member",
                vec![clone("s-1", "i-1", "running", 10, true)],
                true,
                vec![("s-1", "half-done")],
            ),
            (
                "attached, its instance gone",
                vec![clone("s-1", "i-9", "running", 10, true)],
                true,
                vec![("s-1", "done")],
            ),
            (
                "attached, its instance terminating",
                vec![clone("s-1", "i-2", "running", 10, true)],
                true,
                vec![("s-1", "done")],
            ),
            (
                "two clones of one instance: the running one, then the older, is kept",
                vec![
                    clone("s-1", "i-1", "pending", 20, false),
                    clone("s-2", "i-1", "running", 5, false),
                    clone("s-3", "i-1", "running", 10, false),
                ],
                true,
                vec![("s-1", "duplicate"), ("s-2", "duplicate"), ("s-3", "ready")],
            ),
            (
                "gone clones are not counted",
                vec![clone("s-1", "i-1", "terminated", 10, false)],
                true,
                vec![],
            ),
        ];
        for (name, clones, can_swap, want) in cases {
            let got = classified(&clones, can_swap);
            let want: Vec<(String, String)> = want
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn max_size_comes_back_to_the_recorded_value_only_once_desired_capacity_allows() {
        let group = |max| {
            crate::cloud::memory::GroupBuilder::new("web")
                .desired(4)
                .max(max)
                .build()
        };
        // (MaxSize now, recorded original, desired after completions, expected action)
        type Case = (u32, Option<u32>, u32, Option<(u32, u32, bool)>);
        let cases: [Case; 6] = [
            (5, None, 4, None),
            (5, Some(4), 4, Some((5, 4, false))),
            // Scaled out to the raised MaxSize: nothing can change, the tag stays.
            (5, Some(4), 5, None),
            // Scaled out, and MaxSize raised further by the user: down to desired, tag stays.
            (7, Some(4), 5, Some((7, 5, true))),
            // Scaled in again: the rest of the way.
            (5, Some(4), 3, Some((5, 4, false))),
            (4, Some(4), 4, Some((4, 4, false))),
        ];
        for (max, original, desired, want) in cases {
            let mut out = Vec::new();
            let (after, pending) = restore_max_size(&group(max), original, desired, &mut out);
            // Still to come back to: the recorded value, while desired capacity is above it.
            assert_eq!(
                pending,
                original.filter(|o| *o < desired),
                "pending restore"
            );
            let got = out.iter().find_map(|d| match &d.verdict {
                Verdict::Act(Action::RestoreMaxSize {
                    current,
                    restored,
                    partial,
                }) => Some((*current, *restored, *partial)),
                _ => None,
            });
            assert_eq!(
                got, want,
                "max {max}, original {original:?}, desired {desired}"
            );
            assert_eq!(after, want.map_or(max, |w| w.1));
        }
    }
}
