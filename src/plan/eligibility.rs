//! Group eligibility: whether spotswap may launch and swap in a group now, what the group's
//! protocol tags say, and what its clones are launched from.
//!
//! A group that is blocked still gets its clones cleaned up (that is the bookkeeping stage's
//! job); only new launches and swaps wait. Pure.

use chrono::{DateTime, Utc};

use crate::compat::LaunchNeeds;
use crate::model::{Ami, Group, LaunchRef, RunInstancesBecause, Snapshot};
use crate::protocol::{self, Interruption, LaunchBackoff};
use crate::schedule::ScheduleState;
use crate::settings::GroupSettings;

use super::Skip;

/// Auto Scaling processes whose suspension means the user has paused changes that a swap
/// needs: attaching is a launch for Auto Scaling, removing the old instance a termination.
pub const BLOCKING_PROCESSES: [&str; 2] = ["Launch", "Terminate"];

/// What the group's protocol tags say.
#[derive(Debug, Clone, PartialEq)]
pub struct ProtocolState {
    /// The MaxSize a previous pass recorded before raising it, still to be restored.
    pub leftover_max: Option<u32>,
    /// Pools that recently interrupted the group's instances.
    pub interruptions: Vec<Interruption>,
    /// The group's launch back-off, if its clones have been dying.
    pub launch_backoff: Option<LaunchBackoff>,
}

/// Reads the group's protocol tags; an unreadable one leaves the group untouched, and so does
/// another pass's lease that still holds at `now`.
pub fn protocol_state(group: &Group, now: DateTime<Utc>) -> Result<ProtocolState, Skip> {
    let lease = protocol::lease(&group.tags).map_err(|value| Skip::InvalidProtocolTag {
        tag: protocol::LEASE.into(),
        value,
    })?;
    if let Some(l) = lease.filter(|l| l.active_at(now)) {
        return Err(Skip::Leased {
            holder: l.holder,
            until: l.until.expect("an active lease has an end"),
        });
    }
    let leftover_max =
        protocol::max_size(&group.tags).map_err(|value| Skip::InvalidProtocolTag {
            tag: protocol::MAX_SIZE.into(),
            value,
        })?;
    let interruptions =
        protocol::interruptions(&group.tags).map_err(|value| Skip::InvalidProtocolTag {
            tag: protocol::INTERRUPTED.into(),
            value,
        })?;
    let launch_backoff =
        protocol::launch_backoff(&group.tags).map_err(|value| Skip::InvalidProtocolTag {
            tag: protocol::LAUNCH_BACKOFF.into(),
            value,
        })?;
    Ok(ProtocolState {
        leftover_max,
        interruptions,
        launch_backoff,
    })
}

/// Why spotswap must not launch or swap in this group now, if so.
pub fn blocked(group: &Group, policy: &GroupSettings, now: DateTime<Utc>) -> Option<Skip> {
    if let Some(skip) = blocked_by_group(group) {
        return Some(skip);
    }
    if !policy
        .cron_schedule
        .allows(now, policy.cron_timezone, policy.cron_schedule_state)
    {
        return Some(Skip::OutsideSchedule {
            schedule: policy.cron_schedule.to_string(),
            timezone: policy.cron_timezone.name().to_string(),
            state: match policy.cron_schedule_state {
                ScheduleState::On => "on".into(),
                ScheduleState::Off => "off".into(),
            },
        });
    }
    None
}

/// Why the group's own state forbids changing its instances, whatever the time: what it could
/// not read, mixed instances, a warm pool, an instance refresh, a paused launch or termination.
/// Interruption handling checks this too before it touches a group.
pub fn blocked_by_group(group: &Group) -> Option<Skip> {
    // What could not be read might have said no (an instance refresh under way, say).
    if let Some(f) = group.read_failures.first() {
        return Some(Skip::ReadFailed {
            operation: f.operation.clone(),
            code: f.code.clone(),
            message: f.message.clone(),
        });
    }
    // Mixed instances policies already buy spot their own way; warm pools and instance
    // refreshes replace instances behind our back. AutoSpotting skipped the first silently.
    if group.mixed_instances_policy {
        return Some(Skip::MixedInstancesPolicy);
    }
    if group.warm_pool {
        return Some(Skip::WarmPool);
    }
    if group.instance_refresh_in_progress {
        return Some(Skip::InstanceRefreshInProgress);
    }
    let suspended: Vec<String> = group
        .suspended_processes
        .iter()
        .filter(|p| BLOCKING_PROCESSES.contains(&p.as_str()))
        .cloned()
        .collect();
    if !suspended.is_empty() {
        return Some(Skip::ProcessesSuspended {
            processes: suspended,
        });
    }
    None
}

/// What a group's clones are launched from: its launch reference and what its AMI needs.
#[derive(Debug, Clone)]
pub struct Launch<'a> {
    pub launch_ref: &'a LaunchRef,
    pub ami: &'a Ami,
    /// Instance-store volumes mapped by the launch spec or the AMI.
    pub ephemeral: u32,
    /// What the spec needs from a type: settings only some types accept (CPU credits,
    /// hibernation, EBS optimization, Nitro Enclaves, CPU options).
    pub needs: LaunchNeeds,
    /// The type the group launches on-demand (its spec's), for restoring its on-demand floor.
    pub on_demand_type: Option<&'a str>,
    /// Why the clones launch one `RunInstances` each rather than in a fleet (interfaces to
    /// restate, dedicated tenancy); `None` launches them in fleets.
    pub run_instances_because: Option<RunInstancesBecause>,
    /// What a clone launched now is launched from (`spotswap:launched-from`).
    pub identity: String,
    /// For a launch configuration: the launch template spotswap keeps for its content, which
    /// its fleets launch from.
    pub owned_template: Option<String>,
}

/// The group's allowed and disallowed lists leave no type of the region's catalog at all
/// (`current`, the instance's own type, always leaves one): the skip that says so.
pub fn no_type_allowed(snap: &Snapshot, policy: &GroupSettings) -> Option<Skip> {
    let (allowed, disallowed) = (
        &policy.allowed_instance_types,
        &policy.disallowed_instance_types,
    );
    if (allowed.is_empty() && disallowed.is_empty()) || allowed.names_current() {
        return None;
    }
    let any = snap
        .instance_types
        .keys()
        .any(|t| (allowed.is_empty() || allowed.matches(t, "")) && !disallowed.matches(t, ""));
    (!any).then(|| Skip::NoTypeAllowed {
        allowed: allowed.text(),
        disallowed: disallowed.text(),
    })
}

/// The group's launch spec and AMI, or why they cannot be used.
pub fn resolve_launch<'a>(snap: &'a Snapshot, group: &'a Group) -> Result<Launch<'a>, Skip> {
    let Some(launch_ref) = group.launch.as_ref() else {
        return Err(Skip::NoLaunchSpec { launch: None });
    };
    let Some(spec) = snap.launch_specs.get(&launch_ref.key()) else {
        return Err(Skip::NoLaunchSpec {
            launch: Some(launch_ref.to_string()),
        });
    };
    // A template that attaches an existing interface launches one instance at most: the
    // interface is in use by the instance a clone would replace (EC2 User Guide, "Elastic
    // network interfaces": an interface is attached to one instance at a time).
    if let Some(id) = spec
        .network_interfaces
        .iter()
        .find_map(|n| n.network_interface_id.as_ref())
    {
        return Err(Skip::FixedNetworkInterface {
            network_interface_id: id.clone(),
        });
    }
    if spec.tenancy.as_deref() == Some("host") {
        return Err(Skip::HostTenancy);
    }
    let Some(ami) = snap.amis.get(&spec.image_id) else {
        return Err(Skip::AmiNotFound {
            image_id: spec.image_id.clone(),
        });
    };
    Ok(Launch {
        launch_ref,
        ami,
        ephemeral: spec.ephemeral_mappings().max(ami.ephemeral_mappings()),
        needs: LaunchNeeds::of(spec),
        on_demand_type: spec.instance_type.as_deref(),
        run_instances_because: spec.run_instances_because(),
        identity: crate::protocol::launch_identity(launch_ref, spec),
        owned_template: match launch_ref {
            LaunchRef::LaunchConfiguration { name } => {
                Some(crate::protocol::owned_template_name(name, spec))
            }
            LaunchRef::LaunchTemplate { .. } => None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::memory::GroupBuilder;
    use crate::settings::Settings;
    use std::collections::BTreeMap;

    fn group() -> Group {
        GroupBuilder::new("web").min(1).desired(2).max(4).build()
    }

    fn now() -> DateTime<Utc> {
        "2026-11-23T10:00:00Z".parse().unwrap()
    }

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_group_is_blocked_by_what_replaces_instances_behind_its_back_or_a_closed_schedule() {
        // Monday 2026-11-23 10:00 UTC.
        let now: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
        let open = Settings::default().group;
        let closed = Settings::default()
            .for_group(&tags(&[("spotswap:cron-schedule", "0-8 *")]))
            .unwrap();
        let inverted = Settings::default()
            .for_group(&tags(&[
                ("spotswap:cron-schedule", "0-8 *"),
                ("spotswap:cron-schedule-state", "off"),
            ]))
            .unwrap();
        type Case = (&'static str, fn(&mut Group), bool, Option<&'static str>);
        let cases: [Case; 10] = [
            ("a plain group", |_| {}, true, None),
            (
                "a read about the group failed",
                |g| {
                    g.read_failures.push(crate::model::ReadFailure {
                        operation: "DescribeInstanceRefreshes".into(),
                        code: None,
                        message: "HTTP 500 from the endpoint, not an AWS answer".into(),
                    })
                },
                true,
                Some("read-failed"),
            ),
            (
                "a mixed instances policy",
                |g| g.mixed_instances_policy = true,
                true,
                Some("mixed-instances-policy"),
            ),
            (
                "a warm pool",
                |g| g.warm_pool = true,
                true,
                Some("warm-pool"),
            ),
            (
                "an instance refresh",
                |g| g.instance_refresh_in_progress = true,
                true,
                Some("instance-refresh-in-progress"),
            ),
            (
                "Launch suspended",
                |g| g.suspended_processes = vec!["Launch".into()],
                true,
                Some("processes-suspended"),
            ),
            (
                "Terminate suspended",
                |g| g.suspended_processes = vec!["AZRebalance".into(), "Terminate".into()],
                true,
                Some("processes-suspended"),
            ),
            (
                "only AZRebalance suspended",
                |g| g.suspended_processes = vec!["AZRebalance".into()],
                true,
                None,
            ),
            (
                "outside the schedule",
                |_| {},
                false,
                Some("outside-schedule"),
            ),
            (
                "the policy wins over the schedule",
                |g| g.mixed_instances_policy = true,
                false,
                Some("mixed-instances-policy"),
            ),
        ];
        for (name, change, schedule_open, want) in cases {
            let mut g = group();
            change(&mut g);
            let policy = if schedule_open { &open } else { &closed };
            let got = blocked(&g, policy, now);
            assert_eq!(got.as_ref().map(Skip::name), want, "{name}");
        }
        // "off" inverts the window: the same closed hours now allow acting.
        assert_eq!(blocked(&group(), &inverted, now), None);
        let Some(Skip::ProcessesSuspended { processes }) = blocked(
            &Group {
                suspended_processes: vec!["AZRebalance".into(), "Terminate".into()],
                ..group()
            },
            &open,
            now,
        ) else {
            panic!("blocked by suspended processes");
        };
        assert_eq!(
            processes,
            ["Terminate"],
            "only the blocking processes are named"
        );
    }

    #[test]
    fn unreadable_protocol_tags_leave_the_group_alone() {
        let mut g = group();
        assert_eq!(
            protocol_state(&g, now()),
            Ok(ProtocolState {
                leftover_max: None,
                interruptions: vec![],
                launch_backoff: None,
            })
        );
        g.tags = tags(&[(protocol::MAX_SIZE, "3")]);
        assert_eq!(protocol_state(&g, now()).unwrap().leftover_max, Some(3));
        g.tags = tags(&[(protocol::MAX_SIZE, "x")]);
        assert_eq!(
            protocol_state(&g, now()),
            Err(Skip::InvalidProtocolTag {
                tag: protocol::MAX_SIZE.into(),
                value: "x".into()
            })
        );
        g.tags = tags(&[(protocol::INTERRUPTED, "m5.large")]);
        assert!(matches!(
            protocol_state(&g, now()),
            Err(Skip::InvalidProtocolTag { tag, .. }) if tag == protocol::INTERRUPTED
        ));
        g.tags = tags(&[(protocol::LAUNCH_BACKOFF, "failures=2")]);
        assert!(matches!(
            protocol_state(&g, now()),
            Err(Skip::InvalidProtocolTag { tag, .. }) if tag == protocol::LAUNCH_BACKOFF
        ));
        g.tags = tags(&[(protocol::LEASE, "someone")]);
        assert!(matches!(
            protocol_state(&g, now()),
            Err(Skip::InvalidProtocolTag { tag, .. }) if tag == protocol::LEASE
        ));
    }

    #[test]
    fn another_pass_lease_leaves_the_group_alone_until_it_ends_or_is_released() {
        let mut g = group();
        let until = now() + chrono::Duration::seconds(30);
        g.tags = tags(&[(
            protocol::LEASE,
            &protocol::Lease::held("p1.ab", until).value(),
        )]);
        assert_eq!(
            protocol_state(&g, now()),
            Err(Skip::Leased {
                holder: "p1.ab".into(),
                until
            })
        );
        assert!(
            protocol_state(&g, until).is_ok(),
            "an ended lease holds nothing"
        );
        g.tags = tags(&[(protocol::LEASE, &protocol::Lease::released("p1.ab").value())]);
        assert!(protocol_state(&g, now()).is_ok());
    }

    #[test]
    fn a_launch_needs_the_spec_and_its_ami() {
        let mut snap: Snapshot = serde_json::from_value(serde_json::json!({
            "region": "us-east-1",
            "on_demand": {"source": {"kind": "live"}, "prices": {}}
        }))
        .unwrap();
        let mut g = group();
        assert!(matches!(
            resolve_launch(&snap, &g),
            Err(Skip::NoLaunchSpec { launch: None })
        ));
        let lc = LaunchRef::LaunchConfiguration { name: "lc".into() };
        g.launch = Some(lc.clone());
        assert!(matches!(
            resolve_launch(&snap, &g),
            Err(Skip::NoLaunchSpec { launch: Some(l) }) if l == "launch configuration lc"
        ));
        snap.launch_specs.insert(
            lc.key(),
            crate::model::LaunchSpec {
                image_id: "ami-1".into(),
                ..Default::default()
            },
        );
        assert!(matches!(
            resolve_launch(&snap, &g),
            Err(Skip::AmiNotFound { image_id }) if image_id == "ami-1"
        ));
        snap.amis.insert(
            "ami-1".into(),
            Ami {
                image_id: "ami-1".into(),
                ..Default::default()
            },
        );
        let l = resolve_launch(&snap, &g).unwrap();
        assert_eq!(
            (l.launch_ref, l.ami.image_id.as_str(), l.ephemeral),
            (&lc, "ami-1", 0)
        );
    }

    #[test]
    fn the_launch_specs_settings_narrow_the_candidates_of_its_clones() {
        use crate::compat::LaunchNeeds;
        use crate::model::{CpuOptions, LaunchSpec};
        use crate::plan::testing::{launch_candidates, one_instance};
        use serde_json::json;
        // An m5.xlarge group; the cheapest spot types first: m5n.xlarge (no hibernation),
        // r3.xlarge (no Nitro Enclaves), m7a.xlarge (one thread per core), m6i.xlarge (all of
        // them), r3.8xlarge (no hibernation, EBS optimization or Nitro Enclaves).
        let snapshot = |spec: LaunchSpec| {
            let ami = json!({"image_id": "ami-1", "ena_support": true});
            let spot = [
                ("m5n.xlarge", 0.05),
                ("r3.xlarge", 0.06),
                ("m7a.xlarge", 0.07),
                ("m6i.xlarge", 0.08),
                ("r3.8xlarge", 0.09),
            ];
            one_instance("m5.xlarge", 0.192, spec, ami, &spot)
        };
        let candidates = |spec: LaunchSpec| -> Vec<String> {
            let snap = snapshot(spec);
            let g = &snap.groups[0];
            let needs = resolve_launch(&snap, g).unwrap().needs;
            assert_eq!(needs, LaunchNeeds::of(&snap.launch_specs["lt:lt-1:1"]));
            launch_candidates(&snap)
        };
        let all = [
            "m5n.xlarge",
            "r3.xlarge",
            "m7a.xlarge",
            "m6i.xlarge",
            "r3.8xlarge",
        ];
        assert_eq!(candidates(LaunchSpec::default()), all);
        let cases = [
            (
                LaunchSpec {
                    hibernation: true,
                    ..LaunchSpec::default()
                },
                vec!["r3.xlarge", "m7a.xlarge", "m6i.xlarge"],
            ),
            (
                LaunchSpec {
                    ebs_optimized: Some(true),
                    ..LaunchSpec::default()
                },
                vec!["m5n.xlarge", "r3.xlarge", "m7a.xlarge", "m6i.xlarge"],
            ),
            (
                LaunchSpec {
                    nitro_enclaves: true,
                    ..LaunchSpec::default()
                },
                vec!["m5n.xlarge", "m7a.xlarge", "m6i.xlarge"],
            ),
            (
                LaunchSpec {
                    cpu_options: Some(CpuOptions {
                        core_count: Some(2),
                        threads_per_core: Some(2),
                    }),
                    ..LaunchSpec::default()
                },
                vec!["m5n.xlarge", "r3.xlarge", "m6i.xlarge", "r3.8xlarge"],
            ),
        ];
        for (spec, want) in cases {
            assert_eq!(candidates(spec.clone()), want, "{spec:?}");
        }
    }

    #[test]
    fn a_template_that_attaches_an_existing_interface_skips_the_group_naming_it() {
        use crate::model::{LaunchSpec, NetworkInterface};
        let lt = LaunchRef::LaunchTemplate {
            id: "lt-1".into(),
            name: None,
            version: "1".into(),
        };
        let g = Group {
            launch: Some(lt.clone()),
            ..group()
        };
        let snap = |interfaces: Vec<NetworkInterface>| -> Snapshot {
            let mut snap: Snapshot = serde_json::from_value(serde_json::json!({
                "region": "us-east-1",
                "amis": {"ami-1": {"image_id": "ami-1"}},
                "on_demand": {"source": {"kind": "live"}, "prices": {}}
            }))
            .unwrap();
            let spec = LaunchSpec {
                image_id: "ami-1".into(),
                network_interfaces: interfaces,
                ..LaunchSpec::default()
            };
            snap.launch_specs.insert(lt.key(), spec);
            snap
        };
        let nic = |device: i32, eni: Option<&str>| NetworkInterface {
            device_index: Some(device),
            associate_public_ip_address: Some(true),
            network_interface_id: eni.map(str::to_string),
            ..NetworkInterface::default()
        };
        // Interfaces the template creates are fine: each clone gets its own.
        assert!(resolve_launch(&snap(vec![nic(0, None), nic(1, None)]), &g).is_ok());
        // An existing interface, primary or not, cannot go on a second instance.
        for interfaces in [
            vec![nic(0, Some("eni-0a"))],
            vec![nic(0, None), nic(1, Some("eni-0a"))],
        ] {
            let skip = resolve_launch(&snap(interfaces), &g).unwrap_err();
            assert_eq!(
                skip,
                Skip::FixedNetworkInterface {
                    network_interface_id: "eni-0a".into()
                }
            );
            // The plan says so for the group, and launches nothing for it.
            let mut snap = snap(vec![nic(0, Some("eni-0a"))]);
            snap.groups.push(Group {
                tags: tags(&[("spot-enabled", "true")]),
                ..g.clone()
            });
            let now: DateTime<Utc> = "2026-11-23T10:00:00Z".parse().unwrap();
            let plan = crate::plan::plan(&snap, &Settings::default(), now);
            let verdicts: Vec<_> = plan.decisions.iter().map(|d| &d.verdict).collect();
            assert_eq!(
                verdicts,
                [&crate::plan::Verdict::Skip(skip.clone())],
                "{plan:#?}"
            );
            assert_eq!(skip.name(), "fixed-network-interface");
            assert_eq!(
                skip.details(),
                [("network_interface_id".to_string(), "\"eni-0a\"".to_string())]
            );
        }
    }
}
