//! The `RunInstances` request that launches one clone, built as data with no client and no
//! network, so every rule about what the request carries is unit-tested; the adapter only
//! sends it (`send_with`).
//!
//! A launch template version is launched by reference, so everything it holds is kept; a
//! launch configuration's content is copied field by field. Either way the clone goes into the
//! replaced instance's subnet. Where the launch has network interfaces (the template's own, or
//! the one a launch configuration's public-IP choice needs), the subnet goes on them, never at
//! the top of the request: EC2 refuses a top-level `SubnetId` or `SecurityGroupIds` next to
//! `NetworkInterfaces` (InvalidParameterCombination, "Network interfaces and an instance-level
//! subnet ID may not be specified on the same request"; EC2 API reference, RunInstances).
//! Request parameters replace the template's, so the request restates every interface of the
//! template, each with its own fields (README, "How it decides").

use aws_sdk_ec2::operation::run_instances::RunInstancesInput;
use aws_sdk_ec2::operation::run_instances::builders::RunInstancesInputBuilder;
use aws_sdk_ec2::types as ec2;

use super::convert;
use crate::cloud::CloneLaunch;
use crate::model::{LaunchRef, Market, NetworkInterface};

/// The whole request for one clone of one candidate type.
pub fn request(l: &CloneLaunch) -> RunInstancesInputBuilder {
    let tags: Vec<ec2::Tag> = l
        .tags
        .iter()
        .map(|(k, v)| ec2::Tag::builder().key(k).value(v).build())
        .collect();
    // Tags go on in the launch call itself, never afterwards, so a crash cannot leave an
    // untagged clone (README, "How it decides").
    let tag_specs = [ec2::ResourceType::Instance, ec2::ResourceType::Volume]
        .into_iter()
        .map(|r| {
            ec2::TagSpecification::builder()
                .resource_type(r)
                .set_tags(Some(tags.clone()))
                .build()
        })
        .collect();
    // With hibernation configured, EC2 takes no interruption behaviour but hibernate (EC2 API
    // reference, HibernationOptionsRequest): an interrupted clone then stops, and its group
    // replaces it as unhealthy, as it would a terminated one.
    let interruption = if l.spec.hibernation {
        ec2::InstanceInterruptionBehavior::Hibernate
    } else {
        ec2::InstanceInterruptionBehavior::Terminate
    };
    let market = ec2::InstanceMarketOptionsRequest::builder()
        .market_type(ec2::MarketType::Spot)
        .spot_options(
            ec2::SpotMarketOptions::builder()
                .max_price(format!("{:.6}", l.max_price))
                .spot_instance_type(ec2::SpotInstanceType::OneTime)
                .instance_interruption_behavior(interruption)
                .build(),
        )
        .build();
    let mut req = RunInstancesInput::builder()
        .min_count(1)
        .max_count(1)
        .instance_type(ec2::InstanceType::from(l.instance_type.as_str()))
        .client_token(&l.client_token)
        .set_tag_specifications(Some(tag_specs));
    // No market options is an on-demand launch (EC2 API reference, RunInstances,
    // InstanceMarketOptions): how an instance restoring a group's floor is launched.
    if l.market == Market::Spot {
        req = req.instance_market_options(market);
    }
    let s = &l.spec;
    if let Some(p) = placement(l) {
        req = req.placement(p);
    }
    match &l.launch {
        // The version is the number the plan was made from, not $Latest.
        LaunchRef::LaunchTemplate { id, version, .. } => {
            let version = s
                .resolved_version
                .map_or_else(|| version.clone(), |v| v.to_string());
            req = req.launch_template(
                ec2::LaunchTemplateSpecification::builder()
                    .launch_template_id(id)
                    .version(version)
                    .build(),
            );
        }
        LaunchRef::LaunchConfiguration { .. } => {
            req = req
                .image_id(&s.image_id)
                .set_key_name(s.key_name.clone())
                .set_user_data(s.user_data.as_ref().map(|u| u.0.clone()))
                .set_ebs_optimized(s.ebs_optimized)
                .set_block_device_mappings(Some(convert::block_device_mappings(s)));
            if let Some(m) = s.monitoring {
                req = req.monitoring(
                    ec2::RunInstancesMonitoringEnabled::builder()
                        .enabled(m)
                        .build(),
                );
            }
            if let Some(m) = &s.metadata_options {
                req = req.metadata_options(convert::metadata_options(m));
            }
            if let Some(p) = &s.iam_instance_profile {
                let spec = ec2::IamInstanceProfileSpecification::builder();
                req = req.iam_instance_profile(if p.starts_with("arn:") {
                    spec.arn(p).build()
                } else {
                    spec.name(p).build()
                });
            }
        }
    }
    let interfaces = network_interfaces(l);
    if !interfaces.is_empty() {
        return req.set_network_interfaces(Some(place(&interfaces, l.subnet_id.as_deref())));
    }
    req = req.set_subnet_id(l.subnet_id.clone());
    if let LaunchRef::LaunchConfiguration { .. } = &l.launch {
        req = req.set_security_group_ids(Some(s.security_group_ids.clone()));
    }
    req
}

/// Where the clone goes, if the request must say: the AZ when no subnet decides it, the
/// group's placement group (Auto Scaling puts every instance of a group with a `PlacementGroup`
/// in it), and a launch configuration's tenancy (a template's own placement goes with it by
/// reference: request parameters replace only what they name). `host` tenancy never gets here:
/// spot instances do not run on Dedicated Hosts, and the planner leaves such a group alone.
fn placement(l: &CloneLaunch) -> Option<ec2::Placement> {
    let tenancy = match &l.launch {
        LaunchRef::LaunchConfiguration { .. } => l
            .spec
            .tenancy
            .as_deref()
            .filter(|t| *t != "default")
            .map(ec2::Tenancy::from),
        LaunchRef::LaunchTemplate { .. } => None,
    };
    let az = l
        .subnet_id
        .is_none()
        .then_some(l.availability_zone.as_str());
    if az.is_none() && tenancy.is_none() && l.placement_group.is_none() {
        return None;
    }
    Some(
        ec2::Placement::builder()
            .set_availability_zone(az.map(str::to_string))
            .set_group_name(l.placement_group.clone())
            .set_tenancy(tenancy)
            .build(),
    )
}

/// The interfaces a clone is launched with: a template's own, or for a launch configuration
/// that makes a public-IP choice, the one primary interface that choice needs (EC2 takes it
/// only on an interface, which then carries the security groups too); none otherwise.
fn network_interfaces(l: &CloneLaunch) -> Vec<NetworkInterface> {
    let s = &l.spec;
    match &l.launch {
        LaunchRef::LaunchTemplate { .. } => s.network_interfaces.clone(),
        LaunchRef::LaunchConfiguration { .. } if s.associate_public_ip_address.is_some() => {
            vec![NetworkInterface {
                device_index: Some(0),
                associate_public_ip_address: s.associate_public_ip_address,
                security_group_ids: s.security_group_ids.clone(),
                delete_on_termination: Some(true),
                ..NetworkInterface::default()
            }]
        }
        LaunchRef::LaunchConfiguration { .. } => Vec::new(),
    }
}

/// The request's interfaces: each as the launch spec has it, with the clone's subnet on the
/// primary one (the clone must run where the replaced instance ran, as Auto Scaling itself puts
/// a group's subnet on the primary interface of its template) and on any interface that names
/// no subnet of its own. An interface with its own subnet keeps it. Without a subnet (an
/// instance outside a VPC subnet), every interface stays as it is.
pub fn place(
    interfaces: &[NetworkInterface],
    subnet: Option<&str>,
) -> Vec<ec2::InstanceNetworkInterfaceSpecification> {
    interfaces
        .iter()
        .map(|n| {
            let subnet_id = match subnet {
                Some(s) if n.is_primary() || n.subnet_id.is_none() => Some(s.to_string()),
                _ => n.subnet_id.clone(),
            };
            ec2::InstanceNetworkInterfaceSpecification::builder()
                .set_device_index(n.device_index)
                .set_network_card_index(n.network_card_index)
                .set_subnet_id(subnet_id)
                .set_associate_public_ip_address(n.associate_public_ip_address)
                .set_groups(
                    (!n.security_group_ids.is_empty()).then(|| n.security_group_ids.clone()),
                )
                .set_interface_type(n.interface_type.clone())
                .set_delete_on_termination(n.delete_on_termination)
                .set_description(n.description.clone())
                .set_ipv6_address_count(n.ipv6_address_count)
                .set_secondary_private_ip_address_count(n.secondary_private_ip_address_count)
                .set_network_interface_id(n.network_interface_id.clone())
                .build()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{LaunchSpec, Secret};

    const SUBNET: &str = "subnet-a";

    fn launch(launch: LaunchRef, spec: LaunchSpec) -> CloneLaunch {
        CloneLaunch {
            placement_group: None,
            group: "web".into(),
            replaces: "i-1".into(),
            instance_type: "m5a.large".into(),
            availability_zone: "us-east-1a".into(),
            subnet_id: Some(SUBNET.into()),
            launch,
            spec,
            market: Market::Spot,
            max_price: 0.096,
            tags: BTreeMap::from([("spotswap:group".into(), "web".into())]),
            client_token: "token".into(),
        }
    }

    fn template(interfaces: Vec<NetworkInterface>) -> CloneLaunch {
        launch(
            LaunchRef::LaunchTemplate {
                id: "lt-1".into(),
                name: None,
                version: "$Latest".into(),
            },
            LaunchSpec {
                resolved_version: Some(4),
                image_id: "ami-1".into(),
                network_interfaces: interfaces,
                ..LaunchSpec::default()
            },
        )
    }

    fn configuration(public_ip: Option<bool>) -> CloneLaunch {
        launch(
            LaunchRef::LaunchConfiguration { name: "lc".into() },
            LaunchSpec {
                image_id: "ami-1".into(),
                security_group_ids: vec!["sg-lc".into()],
                user_data: Some(Secret("c2VjcmV0".into())),
                associate_public_ip_address: public_ip,
                ..LaunchSpec::default()
            },
        )
    }

    fn nic(device: i32) -> NetworkInterface {
        NetworkInterface {
            device_index: Some(device),
            ..NetworkInterface::default()
        }
    }

    /// What a request says about the network: the top-level subnet and security groups, and
    /// per interface (device index, subnet, public IP, groups, interface type).
    type Network = (
        Option<String>,
        Vec<String>,
        Vec<(
            Option<i32>,
            Option<String>,
            Option<bool>,
            Vec<String>,
            Option<String>,
        )>,
    );

    fn network(l: &CloneLaunch) -> Network {
        let input = request(l).build().expect("a RunInstances input");
        (
            input.subnet_id().map(str::to_string),
            input.security_group_ids().to_vec(),
            input
                .network_interfaces()
                .iter()
                .map(|n| {
                    (
                        n.device_index(),
                        n.subnet_id().map(str::to_string),
                        n.associate_public_ip_address(),
                        n.groups().to_vec(),
                        n.interface_type().map(str::to_string),
                    )
                })
                .collect(),
        )
    }

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_subnet_goes_on_the_interfaces_whenever_there_are_any_and_only_then_at_the_top() {
        let with_public_ip = NetworkInterface {
            associate_public_ip_address: Some(true),
            security_group_ids: strings(&["sg-web"]),
            ..nic(0)
        };
        let back = NetworkInterface {
            subnet_id: s("subnet-back"),
            security_group_ids: strings(&["sg-back"]),
            ..nic(1)
        };
        let efa = |device, card| NetworkInterface {
            network_card_index: Some(card),
            interface_type: s("efa"),
            security_group_ids: strings(&["sg-efa"]),
            delete_on_termination: Some(true),
            ..nic(device)
        };
        let cases: Vec<(&str, CloneLaunch, Network)> = vec![
            (
                "a template without interfaces: by reference, the subnet at the top",
                template(vec![]),
                (s(SUBNET), vec![], vec![]),
            ),
            (
                "a launch configuration: subnet and groups at the top",
                configuration(None),
                (s(SUBNET), strings(&["sg-lc"]), vec![]),
            ),
            (
                "a launch configuration with a public-IP choice: one primary interface",
                configuration(Some(true)),
                (
                    None,
                    vec![],
                    vec![(Some(0), s(SUBNET), Some(true), strings(&["sg-lc"]), None)],
                ),
            ),
            (
                "a template interface with a public IP and groups",
                template(vec![with_public_ip.clone()]),
                (
                    None,
                    vec![],
                    vec![(Some(0), s(SUBNET), Some(true), strings(&["sg-web"]), None)],
                ),
            ),
            (
                "two interfaces, the second in a subnet of its own",
                template(vec![with_public_ip, back]),
                (
                    None,
                    vec![],
                    vec![
                        (Some(0), s(SUBNET), Some(true), strings(&["sg-web"]), None),
                        (Some(1), s("subnet-back"), None, strings(&["sg-back"]), None),
                    ],
                ),
            ),
            (
                "EFA on two network cards, no subnet named: the clone's subnet on both",
                template(vec![efa(0, 0), efa(1, 1)]),
                (
                    None,
                    vec![],
                    vec![
                        (Some(0), s(SUBNET), None, strings(&["sg-efa"]), s("efa")),
                        (Some(1), s(SUBNET), None, strings(&["sg-efa"]), s("efa")),
                    ],
                ),
            ),
            (
                "a template's own subnet on the primary interface gives way to the instance's",
                template(vec![NetworkInterface {
                    subnet_id: s("subnet-elsewhere"),
                    ..nic(0)
                }]),
                (None, vec![], vec![(Some(0), s(SUBNET), None, vec![], None)]),
            ),
        ];
        for (name, l, want) in cases {
            let got = network(&l);
            assert_eq!(got, want, "{name}");
            if !got.2.is_empty() {
                assert!(
                    got.0.is_none() && got.1.is_empty(),
                    "{name}: nothing at the top"
                );
            }
        }
    }

    #[test]
    fn every_field_of_a_template_interface_is_kept() {
        let full = NetworkInterface {
            device_index: Some(0),
            network_card_index: Some(0),
            subnet_id: None,
            associate_public_ip_address: Some(false),
            security_group_ids: strings(&["sg-1", "sg-2"]),
            interface_type: s("interface"),
            delete_on_termination: Some(true),
            description: s("primary"),
            ipv6_address_count: Some(1),
            secondary_private_ip_address_count: Some(3),
            network_interface_id: None,
        };
        let [n] = &place(std::slice::from_ref(&full), Some(SUBNET))[..] else {
            panic!("one interface");
        };
        assert_eq!(n.device_index(), Some(0));
        assert_eq!(n.network_card_index(), Some(0));
        assert_eq!(n.subnet_id(), Some(SUBNET));
        assert_eq!(n.associate_public_ip_address(), Some(false));
        assert_eq!(n.groups(), ["sg-1", "sg-2"]);
        assert_eq!(n.interface_type(), Some("interface"));
        assert_eq!(n.delete_on_termination(), Some(true));
        assert_eq!(n.description(), Some("primary"));
        assert_eq!(n.ipv6_address_count(), Some(1));
        assert_eq!(n.secondary_private_ip_address_count(), Some(3));
        // Without a subnet for the instance, the template's subnets stand.
        let own = NetworkInterface {
            subnet_id: s("subnet-own"),
            ..full
        };
        assert_eq!(place(&[own], None)[0].subnet_id(), Some("subnet-own"));
    }

    #[test]
    fn the_template_is_launched_by_reference_at_the_planned_version_with_the_clones_settings() {
        let input = request(&template(vec![])).build().unwrap();
        let lt = input.launch_template().expect("by reference");
        assert_eq!(
            (lt.launch_template_id(), lt.version()),
            (Some("lt-1"), Some("4"))
        );
        assert_eq!(input.image_id(), None, "the template's own AMI");
        assert_eq!(input.instance_type().map(|t| t.as_str()), Some("m5a.large"));
        assert_eq!(input.client_token(), Some("token"));
        assert!(input.placement().is_none(), "the subnet decides the AZ");
        let spot = input
            .instance_market_options()
            .and_then(|m| m.spot_options())
            .expect("spot options");
        assert_eq!(spot.max_price(), Some("0.096000"));
        assert_eq!(
            spot.instance_interruption_behavior(),
            Some(&ec2::InstanceInterruptionBehavior::Terminate)
        );
        let tagged: Vec<_> = input
            .tag_specifications()
            .iter()
            .map(|t| (t.resource_type().map(|r| r.as_str()), t.tags().len()))
            .collect();
        assert_eq!(tagged, [(Some("instance"), 1), (Some("volume"), 1)]);
        // A template configured for hibernation: EC2 accepts only the hibernate behaviour.
        let mut hibernating = template(vec![]);
        hibernating.spec.hibernation = true;
        let input = request(&hibernating).build().unwrap();
        assert_eq!(
            input
                .instance_market_options()
                .and_then(|m| m.spot_options())
                .and_then(|s| s.instance_interruption_behavior()),
            Some(&ec2::InstanceInterruptionBehavior::Hibernate)
        );
        // An on-demand launch (restoring a group's floor) has no market options.
        let mut on_demand = template(vec![]);
        on_demand.market = Market::OnDemand;
        let input = request(&on_demand).build().unwrap();
        assert!(input.instance_market_options().is_none());
        // A launch configuration is copied, user data byte for byte.
        let input = request(&configuration(None)).build().unwrap();
        assert!(input.launch_template().is_none());
        assert_eq!(input.image_id(), Some("ami-1"));
        assert_eq!(input.user_data(), Some("c2VjcmV0"));
        // No subnet: the AZ is placed instead.
        let mut l = configuration(None);
        l.subnet_id = None;
        let input = request(&l).build().unwrap();
        assert_eq!(
            input.placement().and_then(|p| p.availability_zone()),
            Some("us-east-1a")
        );
    }

    #[test]
    fn the_groups_placement_group_and_a_configurations_tenancy_go_in_the_placement() {
        let placed = |l: &CloneLaunch| {
            let input = request(l).build().unwrap();
            input.placement().map(|p| {
                (
                    p.availability_zone().map(str::to_string),
                    p.group_name().map(str::to_string),
                    p.tenancy().map(|t| t.as_str().to_string()),
                )
            })
        };
        let s = |v: &str| Some(v.to_string());
        // A dedicated configuration in a placement group, in a subnet: no AZ, the subnet
        // decides it.
        let mut l = configuration(None);
        l.spec.tenancy = s("dedicated");
        l.placement_group = s("web-cluster");
        assert_eq!(placed(&l), Some((None, s("web-cluster"), s("dedicated"))));
        // With interfaces to restate, the placement stays at the top of the request.
        let mut l = configuration(Some(true));
        l.spec.tenancy = s("dedicated");
        assert_eq!(placed(&l), Some((None, None, s("dedicated"))));
        assert_eq!(request(&l).build().unwrap().network_interfaces().len(), 1);
        // Default tenancy says nothing.
        let mut l = configuration(None);
        l.spec.tenancy = s("default");
        assert_eq!(placed(&l), None);
        // A template's tenancy goes with it by reference; the group's placement group is
        // named, next to the AZ when no subnet decides it.
        let mut l = template(vec![]);
        l.spec.tenancy = s("dedicated");
        l.placement_group = s("web-cluster");
        l.subnet_id = None;
        assert_eq!(placed(&l), Some((s("us-east-1a"), s("web-cluster"), None)));
    }
}
