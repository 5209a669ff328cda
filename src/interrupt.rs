//! Reacting to a spot interruption warning (or, when enabled, a rebalance recommendation).
//!
//! EC2 gives about two minutes (EC2 User Guide, "Spot Instance interruption notices"). If the
//! instance belongs to an opted-in group, spotswap asks for replacement capacity at once and
//! lets the instance leave through the group, so termination lifecycle hooks run: by default it
//! terminates the instance in the group without decrementing desired capacity (the group
//! launches a replacement); the `interruption-action` setting offers detaching instead (the
//! group launches a replacement, and the instance serves until reclaimed). The interrupted pool
//! (type and AZ) is recorded on the group in `spotswap:interrupted`, so the planner avoids it
//! for the interruption cool-down. Instances outside opted-in groups are left alone.
//!
//! The decision is a pure function; only [`handle`] touches the cloud, through the boundary.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::cloud::GroupQuery;
use crate::cloud::{Account, Actuator, CloudError, Inventory};
use crate::events::Event;
use crate::model::{Group, Instance};
use crate::protocol::{self, Interruption};
use crate::settings::{GroupPolicy, InterruptionAction, Settings};

/// What became of an interruption signal.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    /// Nothing to do, and why.
    Ignored { reason: String },
    /// The instance left its group and the group is launching a replacement.
    Replaced {
        group: String,
        action: InterruptionAction,
        /// The pool now avoided for the cool-down, as `TYPE@AZ`.
        pool: Option<String>,
        dry_run: bool,
    },
    /// A call failed.
    Failed { group: String, error: CloudError },
}

/// The report of one interruption signal, as the Lambda returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub region: String,
    pub instance_id: String,
    pub signal: &'static str,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub calls: std::collections::BTreeMap<String, u64>,
}

/// What to do, decided from what was read.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Ignore(String),
    Replace {
        group: String,
        action: InterruptionAction,
        /// The new value of `spotswap:interrupted`, when the pool is known: merged, when
        /// written, with what the tag holds then (`crate::pool_memory`).
        interrupted_tag: Option<String>,
        pool: Option<String>,
        /// The group's interruption cool-down: how long an entry stays in the tag.
        cooldown_minutes: u32,
    },
}

/// Decides what to do with an interrupted instance. Pure.
pub fn decide(
    settings: &Settings,
    instance_id: &str,
    group: Option<&Group>,
    instance: Option<&Instance>,
    now: DateTime<Utc>,
) -> Decision {
    let Some(group) = group else {
        return Decision::Ignore(format!(
            "instance {instance_id} is not in an opted-in Auto Scaling group"
        ));
    };
    let policy = match settings.policy(&group.tags) {
        GroupPolicy::OptedIn(p) => p,
        GroupPolicy::NotOptedIn => {
            return Decision::Ignore(format!(
                "instance {instance_id} is in group {}, which is not opted in",
                group.name
            ));
        }
        GroupPolicy::Invalid(e) => {
            return Decision::Ignore(format!("group {} is left alone: {e}", group.name));
        }
    };
    // The same eligibility as a pass: what replaces instances behind spotswap's back, or a
    // paused launch or termination, leaves the group to its owner. (The schedule does not:
    // the instance is going anyway, and its replacement is the group's own.)
    if let Some(skip) = crate::plan::eligibility::blocked_by_group(group) {
        return Decision::Ignore(format!(
            "group {} is left alone: {}",
            group.name,
            skip.name()
        ));
    }
    let pool = instance.map(|i| (i.instance_type.as_str(), i.availability_zone.as_str()));
    let interrupted_tag = pool.map(|(ty, az)| {
        let latest = Interruption {
            instance_type: ty.to_string(),
            availability_zone: az.to_string(),
            at: now,
            trouble: protocol::PoolTrouble::Interrupted,
        };
        let cooldown = Duration::minutes(i64::from(policy.interruption_cooldown_minutes));
        protocol::record_interruption(&group.tags, &latest, cooldown)
    });
    Decision::Replace {
        group: group.name.clone(),
        action: settings.interruption_action,
        interrupted_tag,
        pool: pool.map(|(t, az)| format!("{t}@{az}")),
        cooldown_minutes: policy.interruption_cooldown_minutes,
    }
}

/// Handles an interruption or rebalance event. Other events are not for this function.
pub async fn handle<A: Account>(
    account: &A,
    settings: &Settings,
    event: &Event,
    now: DateTime<Utc>,
) -> Report {
    let (region, instance_id, signal) = match event {
        Event::SpotInterruption {
            region,
            instance_id,
            ..
        } => (region, instance_id, "spot-interruption"),
        Event::Rebalance {
            region,
            instance_id,
            ..
        } => (region, instance_id, "rebalance-recommendation"),
        Event::Scheduled { .. } => unreachable!("scheduled events run a pass"),
    };
    let mut report = Report {
        region: region.clone(),
        instance_id: instance_id.clone(),
        signal,
        outcome: Outcome::Ignored {
            reason: String::new(),
        },
        calls: Default::default(),
    };
    if matches!(event, Event::Rebalance { .. }) && !settings.handle_rebalance_recommendations {
        report.outcome = Outcome::Ignored {
            reason: "rebalance recommendations are not acted on \
                     (handle-rebalance-recommendations is false)"
                .into(),
        };
        return report;
    }
    // A rebalance recommendation is a soft signal: the instance may run for hours, or never be
    // reclaimed. Detached on it, a clone would run outside its group, paid for, for as long, so
    // it is terminated through the group whatever `interruption-action` says (README,
    // "Settings").
    let on_rebalance;
    let settings = if matches!(event, Event::Rebalance { .. })
        && settings.interruption_action == InterruptionAction::Detach
    {
        let mut s = settings.clone();
        s.interruption_action = InterruptionAction::Terminate;
        on_rebalance = s;
        &on_rebalance
    } else {
        settings
    };
    let cloud = account.region(region);
    report.outcome = match react(&cloud, settings, instance_id, now).await {
        Ok(o) => o,
        Err((group, error)) => Outcome::Failed { group, error },
    };
    report.calls = cloud.call_counts();
    report
}

async fn react<C: Inventory + Actuator>(
    cloud: &C,
    settings: &Settings,
    instance_id: &str,
    now: DateTime<Utc>,
) -> Result<Outcome, (String, CloudError)> {
    let id = [instance_id.to_string()];
    let membership = cloud
        .group_membership(&id)
        .await
        .map_err(|e| (String::new(), e))?;
    // The one group the instance belongs to: one listing call and one refresh read, however
    // many groups the account has.
    let group = match membership.get(instance_id) {
        None => None,
        Some(name) => {
            let mut found = cloud
                .groups(&GroupQuery::named(name))
                .await
                .map_err(|e| (name.clone(), e))?;
            found.retain(|g| &g.name == name);
            if !found.is_empty() {
                let answers = cloud.refreshes(std::slice::from_ref(name)).await;
                crate::cloud::apply_refreshes(&mut found, &answers);
            }
            found.pop()
        }
    };
    let instance = match &group {
        Some(_) => cloud
            .instances(&id)
            .await
            .ok()
            .and_then(|v| v.into_iter().next()),
        None => None,
    };
    match decide(
        settings,
        instance_id,
        group.as_ref(),
        instance.as_ref(),
        now,
    ) {
        Decision::Ignore(reason) => Ok(Outcome::Ignored { reason }),
        Decision::Replace {
            group,
            action,
            interrupted_tag,
            pool,
            cooldown_minutes,
        } => {
            if !settings.dry_run {
                // Capacity first: the two minutes are for the replacement, the tag can wait.
                let left = match action {
                    InterruptionAction::Terminate => {
                        cloud.terminate_in_group(instance_id, false).await
                    }
                    InterruptionAction::Detach => cloud.detach(&group, instance_id, false).await,
                };
                left.map_err(|e| (group.clone(), e))?;
                if let Some(value) = &interrupted_tag {
                    let cooldown = Duration::minutes(i64::from(cooldown_minutes));
                    crate::pool_memory::record(cloud, &group, value, now, cooldown)
                        .await
                        .map_err(|e| (group.clone(), e))?;
                }
            }
            Ok(Outcome::Replaced {
                group,
                action,
                pool,
                dry_run: settings.dry_run,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::TAG_VALUE_MAX;

    fn interruption_entry(instance_type: &str, az: &str, at: DateTime<Utc>) -> String {
        Interruption {
            instance_type: instance_type.into(),
            availability_zone: az.into(),
            at,
            trouble: Default::default(),
        }
        .entry()
    }
    use crate::cloud::memory::{GroupBuilder, InstanceBuilder};

    fn group(tags: &[(&str, &str)]) -> Group {
        GroupBuilder::new("web")
            .min(1)
            .desired(2)
            .max(4)
            .tags(tags.iter().copied())
            .build()
    }

    fn spot(now: DateTime<Utc>) -> Instance {
        InstanceBuilder::spot("i-1", "m5a.large", "us-east-1a")
            .launched(now)
            .in_group("web")
            .build()
    }

    fn now() -> DateTime<Utc> {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn an_opted_in_groups_instance_is_replaced_and_its_pool_recorded() {
        let g = group(&[("spot-enabled", "true")]);
        let d = decide(
            &Settings::default(),
            "i-1",
            Some(&g),
            Some(&spot(now())),
            now(),
        );
        assert_eq!(
            d,
            Decision::Replace {
                group: "web".into(),
                action: InterruptionAction::Terminate,
                interrupted_tag: Some("m5a.large@us-east-1a@2026-11-23T10:00:00Z".into()),
                pool: Some("m5a.large@us-east-1a".into()),
                cooldown_minutes: 60,
            }
        );
    }

    #[test]
    fn the_interruption_action_setting_chooses_detach() {
        let s = Settings::from_pairs([("interruption-action", "detach")]).unwrap();
        let g = group(&[("spot-enabled", "true")]);
        let d = decide(&s, "i-1", Some(&g), Some(&spot(now())), now());
        assert!(matches!(
            d,
            Decision::Replace {
                action: InterruptionAction::Detach,
                ..
            }
        ));
    }

    #[test]
    fn instances_outside_opted_in_groups_are_ignored_with_a_reason() {
        let d = decide(&Settings::default(), "i-1", None, None, now());
        assert!(matches!(d, Decision::Ignore(r) if r.contains("i-1")));
        let g = group(&[("spot-enabled", "false")]);
        let d = decide(&Settings::default(), "i-1", Some(&g), None, now());
        assert!(matches!(d, Decision::Ignore(r) if r.contains("not opted in")));
        let g = group(&[
            ("spot-enabled", "true"),
            ("spotswap:min-on-demand-number", "x"),
        ]);
        let d = decide(&Settings::default(), "i-1", Some(&g), None, now());
        assert!(matches!(d, Decision::Ignore(r) if r.contains("spotswap:min-on-demand-number")));
    }

    #[test]
    fn old_entries_leave_the_tag_and_recent_ones_stay() {
        let old = interruption_entry("c5.large", "us-east-1b", now() - Duration::hours(3));
        let recent = interruption_entry("m6i.large", "us-east-1c", now() - Duration::minutes(10));
        let value = format!("{old} {recent}");
        let g = group(&[("spot-enabled", "true"), (protocol::INTERRUPTED, &value)]);
        let Decision::Replace {
            interrupted_tag, ..
        } = decide(
            &Settings::default(),
            "i-1",
            Some(&g),
            Some(&spot(now())),
            now(),
        )
        else {
            panic!("replace");
        };
        let tag = interrupted_tag.unwrap();
        assert!(!tag.contains("c5.large"), "{tag}");
        assert!(
            tag.starts_with(&recent) && tag.ends_with("m5a.large@us-east-1a@2026-11-23T10:00:00Z")
        );
        assert!(tag.len() <= TAG_VALUE_MAX);
    }

    #[test]
    fn the_tag_never_exceeds_what_aws_accepts() {
        let many: Vec<String> = (0..20)
            .map(|i| {
                interruption_entry(
                    &format!("m{i}.large"),
                    "us-east-1a",
                    now() - Duration::minutes(i),
                )
            })
            .collect();
        let value = many.join(" ");
        let g = group(&[("spot-enabled", "true"), (protocol::INTERRUPTED, &value)]);
        let Decision::Replace {
            interrupted_tag, ..
        } = decide(
            &Settings::default(),
            "i-1",
            Some(&g),
            Some(&spot(now())),
            now(),
        )
        else {
            panic!("replace");
        };
        let tag = interrupted_tag.unwrap();
        assert!(tag.len() <= TAG_VALUE_MAX, "{}", tag.len());
        assert!(tag.ends_with("m5a.large@us-east-1a@2026-11-23T10:00:00Z"));
    }
}
