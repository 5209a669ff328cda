//! Settling a swap a stopped pass left in doubt, from the group's scaling activities.
//!
//! A swap attaches its clone (desired capacity + 1) and then removes the instance it replaces
//! through the group with desired capacity decremented. A pass stopped between the two leaves a
//! swap in flight, which the next pass completes; but if before that the clone or the instance
//! leaves the group another way (a spot interruption, a scale-in, someone terminating it), the
//! group's members alone cannot tell that attach from a finished swap, and desired capacity
//! would stay one above the user's for good. The group's lease tells which groups a pass left
//! unfinished (it ended without being released), and their scaling activities tell what
//! happened: an attach, and whether either of the pair left on request with a decrement (the
//! swap is balanced) or another way (it is not). The one still in the group is then taken out
//! with decrement, once the group's own replacement is in service; with both gone, the member
//! the group launched last, recorded first in `spotswap:settled` with the attach it balances,
//! so its own activity later shows the attach settled. Whatever the activities do
//! not say plainly is left alone with a skip, never guessed: a wrong removal would cost
//! capacity. Pure: reads only the snapshot.

use std::collections::BTreeSet;

use crate::model::{Activity, ActivityKind, Instance, Market};
use crate::protocol;

use super::clones::AfterCompletions;
use super::{Action, Decision, GroupCtx, Skip, costs};

/// Plans the settling of every swap the group's abandoned lease leaves in doubt; what it takes
/// out joins `after` (it leaves the group, desired capacity one lower).
pub fn settle_swaps<'a>(
    g: GroupCtx<'a>,
    after: &mut AfterCompletions<'a>,
    out: &mut Vec<Decision>,
) {
    let (ctx, group) = (g.ctx, g.group);
    let vanished = hold_vanished(g, after, out);
    if !protocol::in_doubt(&group.tags, ctx.now()) {
        return;
    }
    let Some(activities) = ctx.snap().activities.get(&group.name) else {
        out.push(costs::group_skip(
            g,
            Skip::SwapInDoubt {
                why: "the group's scaling activities could not be read".into(),
            },
        ));
        return;
    };
    // The group's clones, live and gone (EC2 lists a terminated one for about an hour).
    let clones: Vec<&'a Instance> = [&ctx.clones, &ctx.gone_clones]
        .into_iter()
        .filter_map(|m| m.get(group.name.as_str()))
        .flatten()
        .copied()
        .collect();
    let mut settled = match protocol::settled(&group.tags) {
        Ok(s) => s,
        Err(v) => {
            out.push(costs::group_skip(
                g,
                Skip::SwapInDoubt {
                    why: format!(
                        "{} holds {v:?}, which is not a list of CLONE>MEMBER entries",
                        protocol::SETTLED
                    ),
                },
            ));
            return;
        }
    };
    let mut seen = BTreeSet::new();
    for attach in activities
        .iter()
        .filter(|a| a.kind == ActivityKind::Attached)
    {
        let Some(clone) = clones.iter().find(|c| c.instance_id == attach.instance_id) else {
            continue;
        };
        let Some((_, replaces)) = protocol::clone_of(clone) else {
            continue;
        };
        if replaces.is_empty()
            || vanished.contains(clone.instance_id.as_str())
            || !seen.insert(clone.instance_id.as_str())
        {
            continue;
        }
        let since = |id: &str, kind: ActivityKind| {
            activities
                .iter()
                .any(|a: &Activity| a.instance_id == id && a.kind == kind && a.at >= attach.at)
        };
        let c = clone.instance_id.as_str();
        // The member an earlier pass took out for this attach, if it recorded one: its own
        // removal with decrement balances the attach.
        let recorded: Option<String> = settled
            .iter()
            .find(|(sc, _)| sc == c)
            .map(|(_, m)| m.clone());
        if since(c, ActivityKind::RemovedWithDecrement)
            || since(replaces, ActivityKind::RemovedWithDecrement)
            || recorded
                .as_deref()
                .is_some_and(|m| since(m, ActivityKind::RemovedWithDecrement))
        {
            continue; // balanced: the swap finished, was undone, or was settled
        }
        let (c_in, r_in) = (
            ctx.member(group, c).is_some(),
            ctx.member(group, replaces).is_some(),
        );
        let in_doubt = |why: String| {
            let mut d = costs::group_skip(g, Skip::SwapInDoubt { why });
            d.instance = Some(c.to_string());
            d
        };
        // While a swap is in doubt, whichever of its pair is still in the group is neither
        // capacity to keep nor an instance to replace this pass: a second clone attached for
        // the same instance would raise desired capacity twice.
        let hold = |after: &mut AfterCompletions<'a>| {
            if c_in {
                after.leaving.insert(c);
            }
            if r_in {
                after.leaving.insert(replaces);
            }
        };
        let gone: Vec<&str> = [(c, c_in), (replaces, r_in)]
            .into_iter()
            .filter(|(_, member)| !member)
            .map(|(id, _)| id)
            .collect();
        if gone.is_empty() {
            continue; // in flight: completed as any swap in flight
        }
        if let Some(unknown) = gone.iter().find(|id| !since(id, ActivityKind::Left)) {
            out.push(in_doubt(format!(
                "{c} was attached for {replaces}, and the scaling activities do not say how \
                 {unknown} left the group"
            )));
            hold(after);
            continue;
        }
        let gone = gone.join(" and ");
        // The one of the pair still in the group; with both gone, the member the group
        // launched last (on-demand first, never a clone): its replacement of the pair,
        // likeliest.
        let (remove, record) = if c_in {
            (Some(clone.instance_id.as_str()), None)
        } else if r_in {
            (Some(replaces), None)
        } else if let Some(m) = recorded.as_deref().and_then(|m| ctx.member(group, m)) {
            // Recorded by a pass that stopped before taking it out: take the same one out.
            (Some(m.instance_id.as_str()), None)
        } else {
            let m = newest_member(g, after);
            (m, m.map(|m| protocol::settled_value(&settled, c, m)))
        };
        let Some(remove) = remove else {
            out.push(in_doubt(format!(
                "{gone} left the group after {c} was attached for {replaces}, and no member \
                 can be taken out for it"
            )));
            hold(after);
            continue;
        };
        if after.leaving.contains(remove) {
            continue;
        }
        // Auto Scaling refuses a decrement below MinSize; and desired capacity at MinSize has
        // no extra instance in it to take out.
        if after.desired <= group.min_size {
            out.push(in_doubt(format!(
                "{gone} left the group after {c} was attached for {replaces}, and desired \
                 capacity is at the group's MinSize ({}): nothing to take out",
                group.min_size
            )));
            hold(after);
            continue;
        }
        // Taking one out must leave the group with desired capacity in service: wait for the
        // group's replacement of `gone`, if it launched one, to be in service.
        let in_service = group
            .members
            .iter()
            .filter(|m| m.is_in_service() && !after.leaving.contains(m.instance_id.as_str()))
            .count();
        if (in_service as u32) < after.desired {
            out.push(in_doubt(format!(
                "{gone} left the group after {c} was attached for {replaces}: {remove} goes once \
                 the group has its desired capacity in service ({in_service} of {})",
                after.desired
            )));
            hold(after);
            continue;
        }
        if record.is_some() {
            // Two settled in one pass: the second record keeps the first.
            settled.retain(|(sc, _)| sc != c);
            settled.push((c.to_string(), remove.to_string()));
        }
        out.push(costs::removal(
            g,
            remove,
            Action::SettleSwap {
                clone: c.to_string(),
                replaces: replaces.to_string(),
                remove: remove.to_string(),
                settled: record,
            },
        ));
        after.desired = after.desired.saturating_sub(1);
        after.leaving.insert(remove);
    }
}

/// Holds the swaps whose attached clone EC2 shows terminated while the group still lists it
/// with the instance it replaces (a spot interruption or a termination from outside, read
/// between the group and its instances, or before Auto Scaling has noticed): the attach raised
/// desired capacity, and the group will replace the clone as it would any member, so the swap
/// cannot complete and the instance must not get a second clone. Each gets a `swap-in-doubt`
/// skip, so the pass leaves the group's lease to end and a later pass settles the swap from the
/// scaling activities once the group has let the clone go. Returns the clones held.
fn hold_vanished<'a>(
    g: GroupCtx<'a>,
    after: &mut AfterCompletions<'a>,
    out: &mut Vec<Decision>,
) -> BTreeSet<&'a str> {
    let (ctx, group) = (g.ctx, g.group);
    let mut held = BTreeSet::new();
    let gone = ctx
        .gone_clones
        .get(group.name.as_str())
        .map_or(&[][..], |v| v.as_slice());
    for &clone in gone {
        let Some((_, replaces)) = protocol::clone_of(clone) else {
            continue;
        };
        let c = clone.instance_id.as_str();
        if replaces.is_empty()
            || ctx.member(group, c).is_none()
            || ctx.member(group, replaces).is_none()
        {
            continue;
        }
        let mut d = costs::group_skip(
            g,
            Skip::SwapInDoubt {
                why: format!(
                    "{c}, attached for {replaces}, is terminated or shutting down while the group \
                     still lists it: the swap is settled from the scaling activities once the \
                     group lets it go"
                ),
            },
        );
        d.instance = Some(c.to_string());
        out.push(d);
        after.leaving.insert(c);
        after.leaving.insert(replaces);
        held.insert(c);
    }
    held
}

/// The in-service member the group launched last, on-demand first, among those not leaving
/// and not clones; failing that (spotswap has since swapped the group's replacements too), the
/// newest clone whose swap is finished (the instance it replaced is no longer a member), so an
/// extra instance is never left for want of an on-demand one.
fn newest_member<'a>(g: GroupCtx<'a>, after: &AfterCompletions<'a>) -> Option<&'a str> {
    let snap = g.ctx.snap();
    let candidates = || {
        g.group
            .members
            .iter()
            .filter(|m| m.is_in_service() && !after.leaving.contains(m.instance_id.as_str()))
            .filter_map(|m| snap.instances.get(&m.instance_id))
    };
    let newest = |i: &&'a Instance| (i.market == Market::OnDemand, i.launch_time, &i.instance_id);
    candidates()
        .filter(|i| protocol::clone_of(i).is_none())
        .max_by_key(newest)
        .or_else(|| {
            candidates()
                .filter(|i| {
                    protocol::clone_of(i)
                        .is_some_and(|(_, r)| r.is_empty() || g.ctx.member(g.group, r).is_none())
                })
                .max_by_key(newest)
        })
        .map(|i| i.instance_id.as_str())
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Duration, Utc};
    use serde_json::json;

    use crate::model::Snapshot;
    use crate::plan::{Action, Skip, Verdict, plan};
    use crate::settings::Settings;

    fn now() -> DateTime<Utc> {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    /// Group `web` (desired `desired`) whose lease a pass abandoned at 09:54 (or released),
    /// with on-demand `members` (id, lifecycle state; launched in that order), clone `i-c1`
    /// paired with `i-1` (a member or not as `members` says, terminated if not), and the
    /// group's recent `activities` (kind, instance; all after the attach at 09:50).
    fn snapshot(
        desired: u32,
        members: &[(&str, &str)],
        activities: Option<&[(&str, &str)]>,
        extra_tags: &[(&str, &str)],
    ) -> Snapshot {
        let mut instances = serde_json::Map::new();
        let mut listed = Vec::new();
        for (n, (id, state)) in members.iter().enumerate() {
            listed.push(
                json!({"instance_id": id, "lifecycle_state": state, "health_status": "Healthy"}),
            );
            if *id == "i-c1" {
                continue;
            }
            instances.insert(id.to_string(), json!({
                "instance_id": id, "instance_type": "m5.large", "availability_zone": "us-east-1a",
                "market": "on-demand", "state": "running",
                "launch_time": now() - Duration::hours(10 - n as i64), "auto_scaling_group": "web"
            }));
        }
        let c1_in = members.iter().any(|(id, _)| *id == "i-c1");
        instances.insert("i-c1".into(), json!({
            "instance_id": "i-c1", "instance_type": "m5a.large", "availability_zone": "us-east-1a",
            "market": "spot", "state": if c1_in { "running" } else { "terminated" },
            "launch_time": now() - Duration::minutes(20),
            "auto_scaling_group": if c1_in { Some("web") } else { None },
            "tags": {"spotswap:group": "web", "spotswap:replaces": "i-1"}
        }));
        let mut tags = json!({"spot-enabled": "true",
                              "spotswap:lease": "p.1 until 2026-11-23T09:54:00Z"});
        for (k, v) in extra_tags {
            tags[*k] = json!(v);
        }
        let mut snap: Snapshot = serde_json::from_value(json!({
            "region": "us-east-1",
            "groups": [{"name": "web", "min_size": 1, "max_size": 6, "desired_capacity": desired,
                        "health_check_grace_period_secs": 300, "members": listed, "tags": tags}],
            "instances": instances,
            "on_demand": {"source": {"kind": "live"}, "prices": {}}
        }))
        .unwrap();
        if let Some(acts) = activities {
            let mut list = vec![json!({"instance_id": "i-c1", "kind": "attached",
                                       "at": "2026-11-23T09:50:00Z"})];
            for (kind, id) in acts {
                list.push(json!({"instance_id": id, "kind": kind, "at": "2026-11-23T09:52:00Z"}));
            }
            snap.activities
                .insert("web".into(), serde_json::from_value(json!(list)).unwrap());
        }
        snap
    }

    /// The settling the plan makes of it: `take ID out [recording V]` or `in doubt: WHY`.
    fn settled(snap: &Snapshot) -> Vec<String> {
        plan(snap, &Settings::default(), now())
            .decisions
            .iter()
            .filter_map(|d| match &d.verdict {
                Verdict::Act(Action::SettleSwap {
                    remove, settled, ..
                }) => Some(match settled {
                    Some(v) => format!("take {remove} out recording {v}"),
                    None => format!("take {remove} out"),
                }),
                Verdict::Skip(Skip::SwapInDoubt { why }) => Some(format!("in doubt: {why}")),
                // A tag of the protocol read as a setting would leave the group alone.
                Verdict::Skip(
                    s @ (Skip::InvalidSetting { .. } | Skip::InvalidProtocolTag { .. }),
                ) => Some(format!("left alone: {s:?}")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_attached_clone_terminated_while_the_group_still_lists_it_holds_its_swap_in_doubt() {
        let members = [
            ("i-1", "InService"),
            ("i-2", "InService"),
            ("i-3", "InService"),
            ("i-c1", "InService"),
        ];
        for (lease, activities) in [
            // The last pass gave its lease back: nothing else would settle it.
            ("p.1 released", None),
            // In doubt, the activities read before the clone went: they show only the attach.
            ("p.1 until 2026-11-23T09:54:00Z", Some(&[][..])),
        ] {
            let mut snap = snapshot(4, &members, activities, &[("spotswap:lease", lease)]);
            snap.instances.get_mut("i-c1").unwrap().state = crate::model::InstanceState::Terminated;
            assert_eq!(
                settled(&snap),
                [
                    "in doubt: i-c1, attached for i-1, is terminated or shutting down while the \
                     group still lists it: the swap is settled from the scaling activities once \
                     the group lets it go"
                ],
                "lease {lease}"
            );
            // The instance it replaces gets no second clone meanwhile.
            let p = plan(&snap, &Settings::default(), now());
            assert!(
                !p.actions()
                    .any(|(d, a)| matches!(a, Action::LaunchClone { .. })
                        && d.instance.as_deref() == Some("i-1")),
                "{p:#?}"
            );
        }
    }

    #[test]
    fn a_swap_whose_clone_or_instance_left_another_way_is_settled_and_nothing_else_is() {
        let serving = [("i-2", "InService"), ("i-3", "InService")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut m = serving.to_vec();
            m.extend_from_slice(extra);
            m
        };
        // (case, desired, members, activities after the attach, extra group tags, expected)
        type Case<'a> = (
            &'a str,
            u32,
            Vec<(&'a str, &'a str)>,
            Option<Vec<(&'a str, &'a str)>>,
            Vec<(&'a str, &'a str)>,
            Vec<&'a str>,
        );
        let cases: Vec<Case> = vec![
            (
                "the clone was interrupted: the instance it replaced goes",
                3,
                with(&[("i-1", "InService")]),
                Some(vec![("left", "i-c1")]),
                vec![],
                vec!["take i-1 out"],
            ),
            (
                "the instance was terminated by someone: the clone goes",
                3,
                with(&[("i-c1", "InService")]),
                Some(vec![("left", "i-1")]),
                vec![],
                vec!["take i-c1 out"],
            ),
            (
                "both left: the member launched last goes, recorded first",
                3,
                with(&[("i-4", "InService")]),
                Some(vec![("left", "i-c1"), ("left", "i-1")]),
                vec![],
                vec!["take i-4 out recording i-c1>i-4"],
            ),
            (
                "both left, already settled by an earlier pass",
                2,
                with(&[]),
                Some(vec![
                    ("left", "i-c1"),
                    ("left", "i-1"),
                    ("removed-with-decrement", "i-4"),
                ]),
                vec![("spotswap:settled", "i-9>i-8 i-c1>i-4")],
                vec![],
            ),
            (
                "both left, recorded by a pass that stopped before the removal: the same member",
                3,
                with(&[("i-4", "InService"), ("i-5", "InService")]),
                Some(vec![("left", "i-c1"), ("left", "i-1")]),
                vec![("spotswap:settled", "i-c1>i-4")],
                vec!["take i-4 out"],
            ),
            (
                "both left, the recorded member left too without decrement: another, recorded",
                3,
                with(&[("i-5", "InService")]),
                Some(vec![("left", "i-c1"), ("left", "i-1"), ("left", "i-4")]),
                vec![("spotswap:settled", "i-c1>i-4")],
                vec!["take i-5 out recording i-c1>i-5"],
            ),
            (
                "a record the pass cannot read",
                3,
                with(&[("i-4", "InService")]),
                Some(vec![("left", "i-c1"), ("left", "i-1")]),
                vec![("spotswap:settled", "i-c1")],
                vec![
                    "in doubt: spotswap:settled holds \"i-c1\", which is not a list of CLONE>MEMBER entries",
                ],
            ),
            (
                "the swap finished: the instance was removed with decrement",
                2,
                with(&[("i-c1", "InService")]),
                Some(vec![("removed-with-decrement", "i-1")]),
                vec![],
                vec![],
            ),
            (
                "the swap was undone: the clone was removed with decrement",
                3,
                with(&[("i-4", "InService")]),
                Some(vec![("left", "i-1"), ("removed-with-decrement", "i-c1")]),
                vec![],
                vec![],
            ),
            (
                "still in flight: completed as any swap in flight",
                3,
                with(&[("i-1", "InService"), ("i-c1", "InService")]),
                Some(vec![]),
                vec![],
                vec![],
            ),
            (
                "the activities do not say how the clone left",
                3,
                with(&[("i-1", "InService")]),
                Some(vec![]),
                vec![],
                vec![
                    "in doubt: i-c1 was attached for i-1, and the scaling activities do not say how i-c1 left the group",
                ],
            ),
            (
                "the group's replacement is not in service yet",
                3,
                vec![
                    ("i-1", "InService"),
                    ("i-2", "InService"),
                    ("i-3", "Pending"),
                ],
                Some(vec![("left", "i-c1")]),
                vec![],
                vec![
                    "in doubt: i-c1 left the group after i-c1 was attached for i-1: i-1 goes once the group has its desired capacity in service (2 of 3)",
                ],
            ),
            (
                "the activities could not be read",
                3,
                with(&[("i-1", "InService")]),
                None,
                vec![],
                vec!["in doubt: the group's scaling activities could not be read"],
            ),
            (
                "the lease was released: nothing is in doubt",
                3,
                with(&[("i-1", "InService")]),
                Some(vec![("left", "i-c1")]),
                vec![("spotswap:lease", "p.1 released")],
                vec![],
            ),
            (
                "the lease still runs: the group is left to its holder",
                3,
                with(&[("i-1", "InService")]),
                Some(vec![("left", "i-c1")]),
                vec![("spotswap:lease", "p.1 until 2026-11-23T10:03:00Z")],
                vec![],
            ),
        ];
        for (case, desired, members, activities, tags, want) in cases {
            let snap = snapshot(desired, &members, activities.as_deref(), &tags);
            assert_eq!(settled(&snap), want, "{case}");
        }
    }
}
