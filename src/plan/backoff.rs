//! Launch back-off: a group whose clones die before they are swapped in stops launching for a
//! while, instead of paying for a clone that cannot boot on every pass forever.
//!
//! A clone counts as a failure when EC2 lists it terminated without ever joining its group and
//! for a reason other than a `TerminateInstances` call (`Client.UserInitiatedShutdown` is a
//! person's decision, or spotswap's own clean-up), when this pass terminates it as stuck
//! (never running, or stopped), or when this pass undoes its swap because it never became
//! healthy behind the group's load balancers. Each pass that finds new failures adds one to the count in
//! `spotswap:launch-backoff` and waits a cool-down that doubles with each one, from
//! [`FIRST_COOLDOWN_MINUTES`] up to [`MAX_COOLDOWN_MINUTES`]; a clone launched since that
//! boots and becomes ready ends the back-off. Swaps of ready clones and clean-up go on
//! meanwhile. Pure: it decides from the snapshot and the tag, and writes nothing itself.

use chrono::Duration;

use crate::model::Instance;
use crate::protocol::{self, LaunchBackoff};

use super::clones::Bookkeeping;
use super::{Action, Decision, GroupCtx, OrphanReason, Skip, Verdict};

/// The cool-down after the first failure: two passes of the 5-minute schedule.
pub const FIRST_COOLDOWN_MINUTES: i64 = 10;
/// The longest cool-down: a group whose clones cannot boot still tries every four hours, so
/// it recovers by itself once the cause (a key policy, a quota) is fixed.
pub const MAX_COOLDOWN_MINUTES: i64 = 240;

/// How long launches wait after `failures` failures in a row.
pub fn cooldown(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    Duration::minutes((FIRST_COOLDOWN_MINUTES << doublings).min(MAX_COOLDOWN_MINUTES))
}

/// A clone that failed, with the reason to show for it.
struct Failure<'a> {
    clone: &'a Instance,
    reason: String,
}

/// Records new failures and says whether the group's launches wait this pass: `Some(skip)`
/// when they do. Pushes `back-off` when there are new failures and `end-back-off` when a clone
/// launched since the last one is ready.
pub fn check(
    g: GroupCtx,
    recorded: Option<&LaunchBackoff>,
    book: &Bookkeeping,
    never_healthy: &[&Instance],
    out: &mut Vec<Decision>,
) -> Option<Skip> {
    let GroupCtx { ctx, group, .. } = g;
    let now = ctx.now();
    let counted = |c: &Instance| recorded.is_none_or(|b| c.launch_time > b.launched);
    let mut failures: Vec<Failure> = Vec::new();
    let gone = ctx
        .gone_clones
        .get(group.name.as_str())
        .map_or(&[][..], |v| v);
    for &i in gone {
        let dead = i.auto_scaling_group.is_none()
            && i.state_reason
                .as_deref()
                .is_some_and(|r| r != protocol::USER_INITIATED_SHUTDOWN);
        if dead && counted(i) {
            let reason = i.state_reason.clone().unwrap_or_default();
            failures.push(Failure { clone: i, reason });
        }
    }
    for (c, reason) in &book.orphans {
        if matches!(reason, OrphanReason::Timeout | OrphanReason::NotRunning) && counted(c) {
            let state: &str = c.state.into();
            failures.push(Failure {
                clone: c,
                reason: format!("{}:{state}", reason.name()),
            });
        }
    }
    // A clone whose swap is undone this pass because it never served behind the group's load
    // balancers: the group's launches would only bring more of the same.
    for &c in never_healthy {
        if counted(c) {
            failures.push(Failure {
                clone: c,
                reason: "never-healthy".to_string(),
            });
        }
    }
    let last = failures.iter().max_by(|a, b| {
        a.clone
            .launch_time
            .cmp(&b.clone.launch_time)
            .then(a.clone.instance_id.cmp(&b.clone.instance_id))
    });
    if let Some(last) = last {
        // Clones that die together (a batch launched in one pass) are one failure: the count
        // is of passes that found the group's launches failing.
        let n = recorded.map_or(0, |b| b.failures) + 1;
        let backoff = LaunchBackoff {
            failures: n,
            until: now + cooldown(n),
            clone: last.clone.instance_id.clone(),
            launched: last.clone.launch_time,
            reason: last.reason.clone(),
        };
        let skip = skip_for(&backoff);
        out.push(decision(g, Action::BackOff { backoff }));
        return Some(skip);
    }
    let b = recorded?;
    if now < b.until {
        return Some(skip_for(b));
    }
    let booted = book
        .pending
        .iter()
        .chain(&book.unpaired)
        .any(|(c, ready)| *ready && c.launch_time > b.launched)
        || book.half_done.iter().any(|c| c.launch_time > b.launched);
    if booted {
        out.push(decision(
            g,
            Action::EndBackOff {
                failures: b.failures,
            },
        ));
    }
    None
}

fn skip_for(b: &LaunchBackoff) -> Skip {
    Skip::BackingOff {
        failures: b.failures,
        until: b.until,
        clone: b.clone.clone(),
        state_reason: b.reason.clone(),
    }
}

/// A tag change: it costs nothing by itself.
fn decision(g: GroupCtx, action: Action) -> Decision {
    Decision {
        group: g.group.name.clone(),
        instance: None,
        verdict: Verdict::Act(action),
        hourly_cost_before: Some(0.0),
        hourly_cost_after: Some(0.0),
        prices: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Snapshot;
    use crate::plan::clones::classify;
    use crate::plan::{Ctx, Inputs};
    use crate::settings::Settings;
    use chrono::{DateTime, Utc};
    use serde_json::json;

    fn now() -> DateTime<Utc> {
        "2026-11-29T12:00:00Z".parse().unwrap()
    }

    fn mins_ago(m: i64) -> DateTime<Utc> {
        now() - Duration::minutes(m)
    }

    #[test]
    fn the_cool_down_doubles_from_ten_minutes_up_to_four_hours() {
        let got: Vec<i64> = (1..=8).map(|n| cooldown(n).num_minutes()).collect();
        assert_eq!(got, [10, 20, 40, 80, 160, 240, 240, 240]);
        assert_eq!(cooldown(u32::MAX).num_minutes(), 240);
    }

    /// A clone of i-1 for group `web`: `(id, state, state reason, minutes since launch,
    /// attached)`.
    type CloneCase = (&'static str, &'static str, Option<&'static str>, i64, bool);

    /// What `check` decides for group `web` (grace 300 s, member i-1 on-demand) with these
    /// clones and this recorded back-off: the action's word and the skip's failures.
    fn decide(clones: &[CloneCase], recorded: Option<LaunchBackoff>) -> (Vec<String>, Option<u32>) {
        let mut instances = serde_json::Map::new();
        instances.insert("i-1".into(), json!({
            "instance_id": "i-1", "instance_type": "m5.large", "availability_zone": "us-east-1a",
            "market": "on-demand", "state": "running", "launch_time": mins_ago(600),
            "auto_scaling_group": "web"
        }));
        for (id, state, reason, age, attached) in clones {
            instances.insert(
                (*id).into(),
                json!({
                    "instance_id": id, "instance_type": "m5a.large",
                    "availability_zone": "us-east-1a", "market": "spot", "state": state,
                    "state_reason": reason, "launch_time": mins_ago(*age),
                    "auto_scaling_group": if *attached { Some("web") } else { None },
                    "tags": {"spotswap:group": "web", "spotswap:replaces": "i-1"}
                }),
            );
        }
        let snap: Snapshot = serde_json::from_value(json!({
            "region": "us-east-1",
            "groups": [{"name": "web", "min_size": 1, "max_size": 4, "desired_capacity": 1,
                        "health_check_grace_period_secs": 300,
                        "members": [{"instance_id": "i-1", "lifecycle_state": "InService",
                                     "health_status": "Healthy"}],
                        "tags": {"spot-enabled": "true"}}],
            "instances": instances,
            "on_demand": {"source": {"kind": "live"}, "prices": {}}
        }))
        .unwrap();
        let settings = Settings::default();
        let inputs = Inputs::new(&snap, &settings, now());
        let ctx = Ctx::new(&inputs);
        let group = &snap.groups[0];
        let live = ctx.clones.get("web").cloned().unwrap_or_default();
        let book = classify(&ctx, group, &live, &settings.group, true);
        let g = GroupCtx {
            ctx: &ctx,
            group,
            pricing: &inputs.group(group).pricing,
        };
        let mut out = Vec::new();
        let skip = check(g, recorded.as_ref(), &book, &[], &mut out);
        let words = out
            .iter()
            .map(|d| match &d.verdict {
                Verdict::Act(Action::BackOff { backoff }) => format!(
                    "back-off {} {} {} +{}m",
                    backoff.failures,
                    backoff.clone,
                    backoff.reason,
                    (backoff.until - now()).num_minutes()
                ),
                Verdict::Act(a) => a.name().to_string(),
                Verdict::Skip(s) => s.name().to_string(),
            })
            .collect();
        let failures = skip.map(|s| match s {
            Skip::BackingOff { failures, .. } => failures,
            other => panic!("{other:?}"),
        });
        (words, failures)
    }

    fn recorded(failures: u32, until_in: i64, launched_ago: i64) -> Option<LaunchBackoff> {
        Some(LaunchBackoff {
            failures,
            until: now() + Duration::minutes(until_in),
            clone: "s-0".into(),
            launched: mins_ago(launched_ago),
            reason: "Client.InternalError".into(),
        })
    }

    #[test]
    fn clones_that_died_before_their_swap_make_the_group_back_off_and_a_booted_one_ends_it() {
        type Case = (
            &'static str,
            Vec<CloneCase>,
            Option<LaunchBackoff>,
            Vec<&'static str>,
            Option<u32>,
        );
        let kms = Some("Client.InternalError");
        let cases: Vec<Case> = vec![
            ("nothing died", vec![], None, vec![], None),
            (
                "died at boot",
                vec![("s-1", "terminated", kms, 5, false)],
                None,
                vec!["back-off 1 s-1 Client.InternalError +10m"],
                Some(1),
            ),
            (
                "two died together: one failure, the newer named",
                vec![
                    ("s-1", "terminated", kms, 10, false),
                    ("s-2", "shutting-down", kms, 5, false),
                ],
                None,
                vec!["back-off 1 s-2 Client.InternalError +10m"],
                Some(1),
            ),
            (
                "terminated by a TerminateInstances call: someone's decision",
                vec![("s-1", "terminated", Some(USER), 5, false)],
                None,
                vec![],
                None,
            ),
            (
                "no state reason: nothing to go on",
                vec![("s-1", "terminated", None, 5, false)],
                None,
                vec![],
                None,
            ),
            (
                "died after it joined the group: not a launch failure",
                vec![("s-1", "terminated", kms, 50, true)],
                None,
                vec![],
                None,
            ),
            (
                "a second failure doubles the cool-down",
                vec![("s-2", "terminated", kms, 5, false)],
                recorded(1, -5, 30),
                vec!["back-off 2 s-2 Client.InternalError +20m"],
                Some(2),
            ),
            (
                "already counted: still listed, not counted again",
                vec![("s-1", "terminated", kms, 30, false)],
                recorded(1, 5, 30),
                vec![],
                Some(1),
            ),
            (
                "stuck and terminated by this pass",
                vec![("s-1", "pending", None, 70, false)],
                None,
                vec!["back-off 1 s-1 timeout:pending +10m"],
                Some(1),
            ),
            (
                "cool-down over, no clone booted yet: launches go on, the count stays",
                vec![],
                recorded(3, -1, 60),
                vec![],
                None,
            ),
            (
                "cool-down over and a clone launched since is ready: the back-off ends",
                vec![("s-5", "running", None, 6, false)],
                recorded(3, -20, 60),
                vec!["end-back-off"],
                None,
            ),
        ];
        for (name, clones, rec, want_words, want_skip) in cases {
            let (words, skip) = decide(&clones, rec);
            assert_eq!(words, want_words, "{name}");
            assert_eq!(skip, want_skip, "{name}");
        }
    }

    const USER: &str = protocol::USER_INITIATED_SHUTDOWN;
}
