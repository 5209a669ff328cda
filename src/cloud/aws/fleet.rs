//! The `CreateFleet` request that launches a batch of clones, its reply read back as a
//! [`FleetResult`], and the `CreateLaunchTemplate` request for the template spotswap keeps for
//! a launch configuration: built as data with no client and no network, so what each request
//! carries is unit-tested; the adapter only sends them.
//!
//! A fleet of type `instant` launches synchronously and answers with the instances it launched
//! and an error per override that launched nothing (EC2 API reference, CreateFleet: "instant"
//! fleets return `Instances` and `Errors`). Every candidate type is offered in every subnet of
//! the batch; priorities follow spotswap's ranking, which `capacity-optimized-prioritized`
//! honours and `price-capacity-optimized` ignores. Instant fleets take tags in the request for
//! the instances, their volumes and the fleet, so the clones carry the protocol's tags from
//! launch and every resource the launch creates carries what the role's conditions ask for.

use aws_sdk_ec2::operation::create_fleet::CreateFleetOutput;
use aws_sdk_ec2::operation::create_fleet::builders::CreateFleetInputBuilder;
use aws_sdk_ec2::operation::create_launch_template::CreateLaunchTemplateInput;
use aws_sdk_ec2::operation::create_launch_template::builders::CreateLaunchTemplateInputBuilder;
use aws_sdk_ec2::types as ec2;

use crate::cloud::{CloudError, FleetLaunch, FleetResult, FleetTemplate, OwnedTemplate, classify};
use crate::model::{AllocationStrategy, LaunchSpec};
use crate::protocol;

/// The whole `CreateFleet` request for one batch.
pub fn request(f: &FleetLaunch) -> CreateFleetInputBuilder {
    let spec = match &f.template {
        FleetTemplate::Id(id) => {
            ec2::FleetLaunchTemplateSpecificationRequest::builder().launch_template_id(id)
        }
        FleetTemplate::Name(name) => {
            ec2::FleetLaunchTemplateSpecificationRequest::builder().launch_template_name(name)
        }
    }
    .version(&f.version)
    .build();
    let subnets: Vec<Option<&str>> = if f.subnets.is_empty() {
        vec![None]
    } else {
        f.subnets.iter().map(|s| Some(s.as_str())).collect()
    };
    let max_price = format!("{:.6}", f.max_price);
    let mut overrides = Vec::new();
    for (rank, ty) in f.types.iter().enumerate() {
        for subnet in &subnets {
            let o = ec2::FleetLaunchTemplateOverridesRequest::builder()
                .instance_type(ec2::InstanceType::from(ty.as_str()))
                .max_price(&max_price)
                // Lower is higher priority (EC2 API reference, FleetLaunchTemplateOverrides).
                .priority(rank as f64);
            // The group's placement group goes on every override (EC2 API reference,
            // FleetLaunchTemplateOverridesRequest `Placement`: of a placement, CreateFleet
            // takes the group name; tenancy it does not, which is why a dedicated group's
            // clones launch by RunInstances).
            let o = match &f.placement_group {
                Some(g) => o.placement(ec2::Placement::builder().group_name(g).build()),
                None => o,
            };
            overrides.push(match subnet {
                Some(s) => o.subnet_id(*s).build(),
                None => o.availability_zone(&f.availability_zone).build(),
            });
        }
    }
    let config = ec2::FleetLaunchTemplateConfigRequest::builder()
        .launch_template_specification(spec)
        .set_overrides(Some(overrides))
        .build();
    let strategy = match f.strategy {
        AllocationStrategy::PriceCapacityOptimized => {
            ec2::SpotAllocationStrategy::PriceCapacityOptimized
        }
        AllocationStrategy::CapacityOptimizedPrioritized => {
            ec2::SpotAllocationStrategy::CapacityOptimizedPrioritized
        }
    };
    // With hibernation configured, EC2 takes no interruption behaviour but hibernate (EC2 API
    // reference, HibernationOptionsRequest).
    let interruption = if f.hibernate {
        ec2::SpotInstanceInterruptionBehavior::Hibernate
    } else {
        ec2::SpotInstanceInterruptionBehavior::Terminate
    };
    let tags: Vec<ec2::Tag> = f
        .tags
        .iter()
        .map(|(k, v)| ec2::Tag::builder().key(k).value(v).build())
        .collect();
    aws_sdk_ec2::operation::create_fleet::CreateFleetInput::builder()
        .r#type(ec2::FleetType::Instant)
        .client_token(&f.client_token)
        .launch_template_configs(config)
        .target_capacity_specification(
            ec2::TargetCapacitySpecificationRequest::builder()
                .total_target_capacity(f.count as i32)
                .default_target_capacity_type(ec2::DefaultTargetCapacityType::Spot)
                .build(),
        )
        .spot_options(
            ec2::SpotOptionsRequest::builder()
                .allocation_strategy(strategy)
                .instance_interruption_behavior(interruption)
                .build(),
        )
        .set_tag_specifications(Some(tag_specifications(f, tags)))
}

/// The tags of a fleet's request, on every resource type an instant fleet takes them for
/// (EC2 API reference, CreateFleet `TagSpecifications`: `fleet`, `instance` and `volume` for
/// type `instant`). An instant fleet launches with the caller's permissions, and IAM evaluates
/// `ec2:CreateFleet` and `ec2:RunInstances` for each resource the launch creates (EC2 User
/// Guide, "EC2 Fleet prerequisites"; Service Authorization Reference for Amazon EC2), so the
/// role's `aws:RequestTag/spotswap:group` conditions on instances, volumes and the fleet are met
/// only if each of them is tagged here. The clones' volumes carry the clones' tags, as
/// `RunInstances` tags them; the fleet carries the group's name alone.
fn tag_specifications(f: &FleetLaunch, tags: Vec<ec2::Tag>) -> Vec<ec2::TagSpecification> {
    let of = |r: ec2::ResourceType, tags: Vec<ec2::Tag>| {
        ec2::TagSpecification::builder()
            .resource_type(r)
            .set_tags(Some(tags))
            .build()
    };
    let group = ec2::Tag::builder()
        .key(protocol::GROUP)
        .value(&f.group)
        .build();
    vec![
        of(ec2::ResourceType::Instance, tags.clone()),
        of(ec2::ResourceType::Volume, tags),
        of(ec2::ResourceType::Fleet, vec![group]),
    ]
}

/// The clones a fleet launched and what each failed override answered.
pub fn result(out: &CreateFleetOutput) -> FleetResult {
    let mut r = FleetResult::default();
    for i in out.instances() {
        let ty = i.instance_type().map_or("", |t| t.as_str()).to_string();
        for id in i.instance_ids() {
            r.launched.push((id.clone(), ty.clone()));
        }
    }
    for e in out.errors() {
        let ty = e
            .launch_template_and_overrides()
            .and_then(|l| l.overrides())
            .and_then(|o| o.instance_type())
            .map(|t| t.as_str().to_string());
        let code = e.error_code().unwrap_or("Unknown");
        let message = e.error_message().unwrap_or("");
        r.errors.push((
            ty,
            CloudError::new("CreateFleet", classify(code), Some(code), message),
        ));
    }
    r
}

/// The `CreateLaunchTemplate` request for the template spotswap keeps for a launch
/// configuration: its launch parameters, as a clone launched by `RunInstances` would copy them,
/// and the template tagged with the configuration's name so it is found again. The instance
/// type is left out: each fleet override sets it.
pub fn template_request(t: &OwnedTemplate) -> CreateLaunchTemplateInputBuilder {
    let s = &t.spec;
    let mut data = ec2::RequestLaunchTemplateData::builder()
        .image_id(&s.image_id)
        .set_key_name(s.key_name.clone())
        .set_user_data(s.user_data.as_ref().map(|u| u.0.clone()))
        .set_ebs_optimized(s.ebs_optimized)
        .set_security_group_ids(
            (!s.security_group_ids.is_empty()).then(|| s.security_group_ids.clone()),
        )
        .set_block_device_mappings(Some(block_device_mappings(s)));
    if let Some(m) = s.monitoring {
        data = data.monitoring(
            ec2::LaunchTemplatesMonitoringRequest::builder()
                .enabled(m)
                .build(),
        );
    }
    if let Some(m) = &s.metadata_options {
        let mut b = ec2::LaunchTemplateInstanceMetadataOptionsRequest::builder()
            .set_http_put_response_hop_limit(m.http_put_response_hop_limit);
        if let Some(v) = &m.http_tokens {
            b = b.http_tokens(ec2::LaunchTemplateHttpTokensState::from(v.as_str()));
        }
        if let Some(v) = &m.http_endpoint {
            b = b.http_endpoint(ec2::LaunchTemplateInstanceMetadataEndpointState::from(
                v.as_str(),
            ));
        }
        if let Some(v) = &m.http_protocol_ipv6 {
            b = b.http_protocol_ipv6(ec2::LaunchTemplateInstanceMetadataProtocolIpv6::from(
                v.as_str(),
            ));
        }
        if let Some(v) = &m.instance_metadata_tags {
            b = b.instance_metadata_tags(ec2::LaunchTemplateInstanceMetadataTagsState::from(
                v.as_str(),
            ));
        }
        data = data.metadata_options(b.build());
    }
    if let Some(p) = &s.iam_instance_profile {
        let b = ec2::LaunchTemplateIamInstanceProfileSpecificationRequest::builder();
        data = data.iam_instance_profile(if p.starts_with("arn:") {
            b.arn(p).build()
        } else {
            b.name(p).build()
        });
    }
    CreateLaunchTemplateInput::builder()
        .launch_template_name(&t.name)
        .launch_template_data(data.build())
        .tag_specifications(
            ec2::TagSpecification::builder()
                .resource_type(ec2::ResourceType::LaunchTemplate)
                .tags(
                    ec2::Tag::builder()
                        .key(protocol::LAUNCH_CONFIGURATION)
                        .value(&t.launch_configuration)
                        .build(),
                )
                .build(),
        )
}

fn block_device_mappings(spec: &LaunchSpec) -> Vec<ec2::LaunchTemplateBlockDeviceMappingRequest> {
    spec.block_device_mappings
        .iter()
        .map(|m| {
            let mut b = ec2::LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name(&m.device_name)
                .set_virtual_name(m.virtual_name.clone());
            if m.no_device {
                b = b.no_device("");
            }
            if let Some(e) = &m.ebs {
                let mut eb = ec2::LaunchTemplateEbsBlockDeviceRequest::builder()
                    .set_snapshot_id(e.snapshot_id.clone())
                    .set_volume_size(e.volume_size_gib)
                    .set_iops(e.iops)
                    .set_throughput(e.throughput)
                    .set_delete_on_termination(e.delete_on_termination)
                    .set_encrypted(e.encrypted)
                    .set_kms_key_id(e.kms_key_id.clone());
                if let Some(t) = &e.volume_type {
                    eb = eb.volume_type(ec2::VolumeType::from(t.as_str()));
                }
                b = b.ebs(eb.build());
            }
            b.build()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BlockDeviceMapping, EbsVolume, Secret};
    use std::collections::BTreeMap;

    fn fleet() -> FleetLaunch {
        FleetLaunch {
            placement_group: None,
            group: "web".into(),
            availability_zone: "eu-west-1a".into(),
            subnets: vec!["subnet-a".into(), "subnet-b".into()],
            count: 3,
            types: vec!["m5a.large".into(), "m6a.large".into()],
            strategy: AllocationStrategy::CapacityOptimizedPrioritized,
            template: FleetTemplate::Id("lt-1".into()),
            version: "4".into(),
            max_price: 0.096,
            hibernate: false,
            tags: BTreeMap::from([
                (protocol::GROUP.to_string(), "web".to_string()),
                (protocol::REPLACES.to_string(), String::new()),
            ]),
            client_token: "spotswap-fleet-1".into(),
        }
    }

    #[test]
    fn a_fleet_offers_every_type_in_every_subnet_by_rank_with_the_tags_in_the_call() {
        let req = request(&fleet()).build().unwrap();
        assert_eq!(req.r#type(), Some(&ec2::FleetType::Instant));
        assert_eq!(req.client_token(), Some("spotswap-fleet-1"));
        let cap = req.target_capacity_specification().unwrap();
        assert_eq!(cap.total_target_capacity(), Some(3));
        assert_eq!(
            cap.default_target_capacity_type(),
            Some(&ec2::DefaultTargetCapacityType::Spot)
        );
        let spot = req.spot_options().unwrap();
        assert_eq!(
            spot.allocation_strategy(),
            Some(&ec2::SpotAllocationStrategy::CapacityOptimizedPrioritized)
        );
        assert_eq!(
            spot.instance_interruption_behavior(),
            Some(&ec2::SpotInstanceInterruptionBehavior::Terminate)
        );
        let config = &req.launch_template_configs()[0];
        let lt = config.launch_template_specification().unwrap();
        assert_eq!(lt.launch_template_id(), Some("lt-1"));
        assert_eq!(lt.version(), Some("4"));
        let got: Vec<(&str, &str, f64, &str)> = config
            .overrides()
            .iter()
            .map(|o| {
                (
                    o.instance_type().unwrap().as_str(),
                    o.subnet_id().unwrap(),
                    o.priority().unwrap(),
                    o.max_price().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("m5a.large", "subnet-a", 0.0, "0.096000"),
                ("m5a.large", "subnet-b", 0.0, "0.096000"),
                ("m6a.large", "subnet-a", 1.0, "0.096000"),
                ("m6a.large", "subnet-b", 1.0, "0.096000"),
            ]
        );
        let specs: Vec<(&ec2::ResourceType, Vec<&str>)> = req
            .tag_specifications()
            .iter()
            .map(|t| {
                let keys = t.tags().iter().map(|t| t.key().unwrap()).collect();
                (t.resource_type().unwrap(), keys)
            })
            .collect();
        assert_eq!(
            specs,
            [
                (
                    &ec2::ResourceType::Instance,
                    vec![protocol::GROUP, protocol::REPLACES]
                ),
                (
                    &ec2::ResourceType::Volume,
                    vec![protocol::GROUP, protocol::REPLACES]
                ),
                (&ec2::ResourceType::Fleet, vec![protocol::GROUP]),
            ]
        );
    }

    #[test]
    fn without_subnets_the_az_is_the_override_and_hibernation_sets_the_interruption() {
        let f = FleetLaunch {
            subnets: Vec::new(),
            hibernate: true,
            strategy: AllocationStrategy::PriceCapacityOptimized,
            template: FleetTemplate::Name("spotswap-lc-web".into()),
            ..fleet()
        };
        let req = request(&f).build().unwrap();
        let o = &req.launch_template_configs()[0].overrides()[0];
        assert_eq!(o.availability_zone(), Some("eu-west-1a"));
        assert_eq!(o.subnet_id(), None);
        let lt = req.launch_template_configs()[0]
            .launch_template_specification()
            .unwrap();
        assert_eq!(lt.launch_template_name(), Some("spotswap-lc-web"));
        let spot = req.spot_options().unwrap();
        assert_eq!(
            spot.allocation_strategy(),
            Some(&ec2::SpotAllocationStrategy::PriceCapacityOptimized)
        );
        assert_eq!(
            spot.instance_interruption_behavior(),
            Some(&ec2::SpotInstanceInterruptionBehavior::Hibernate)
        );
    }

    #[test]
    fn the_reply_gives_each_clone_and_each_failed_overrides_type_and_error_kind() {
        let out = CreateFleetOutput::builder()
            .instances(
                ec2::CreateFleetInstance::builder()
                    .instance_type(ec2::InstanceType::from("m6a.large"))
                    .instance_ids("i-1")
                    .instance_ids("i-2")
                    .build(),
            )
            .errors(
                ec2::CreateFleetError::builder()
                    .error_code("InsufficientInstanceCapacity")
                    .error_message("no capacity")
                    .launch_template_and_overrides(
                        ec2::LaunchTemplateAndOverridesResponse::builder()
                            .overrides(
                                ec2::FleetLaunchTemplateOverrides::builder()
                                    .instance_type(ec2::InstanceType::from("m5a.large"))
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .build();
        let r = result(&out);
        assert_eq!(
            r.launched,
            [
                ("i-1".to_string(), "m6a.large".to_string()),
                ("i-2".to_string(), "m6a.large".to_string())
            ]
        );
        assert_eq!(r.errors.len(), 1);
        assert_eq!(r.errors[0].0.as_deref(), Some("m5a.large"));
        assert_eq!(
            r.errors[0].1.kind,
            crate::cloud::ErrorKind::CapacityUnavailable
        );
        assert_eq!(
            r.errors[0].1.code.as_deref(),
            Some("InsufficientInstanceCapacity")
        );
    }

    #[test]
    fn a_launch_configurations_template_copies_its_parameters_and_carries_its_name() {
        let t = OwnedTemplate {
            name: protocol::owned_template_name("web-lc-v2", &LaunchSpec::default()),
            launch_configuration: "web-lc-v2".into(),
            spec: LaunchSpec {
                image_id: "ami-1".into(),
                key_name: Some("ops".into()),
                security_group_ids: vec!["sg-1".into()],
                iam_instance_profile: Some("web-role".into()),
                user_data: Some(Secret("c2VjcmV0".into())),
                monitoring: Some(true),
                block_device_mappings: vec![BlockDeviceMapping {
                    device_name: "/dev/xvda".into(),
                    virtual_name: None,
                    no_device: false,
                    ebs: Some(EbsVolume {
                        volume_size_gib: Some(20),
                        volume_type: Some("gp3".into()),
                        ..EbsVolume::default()
                    }),
                }],
                ..LaunchSpec::default()
            },
        };
        let req = template_request(&t).build().unwrap();
        assert_eq!(req.launch_template_name(), Some(t.name.as_str()));
        let d = req.launch_template_data().unwrap();
        assert_eq!(d.image_id(), Some("ami-1"));
        assert_eq!(d.instance_type(), None);
        assert_eq!(d.key_name(), Some("ops"));
        assert_eq!(d.security_group_ids(), ["sg-1"]);
        assert_eq!(d.user_data(), Some("c2VjcmV0"));
        assert_eq!(d.monitoring().unwrap().enabled(), Some(true));
        assert_eq!(d.iam_instance_profile().unwrap().name(), Some("web-role"));
        let ebs = d.block_device_mappings()[0].ebs().unwrap();
        assert_eq!(ebs.volume_size(), Some(20));
        assert_eq!(ebs.volume_type(), Some(&ec2::VolumeType::Gp3));
        let tag = &req.tag_specifications()[0].tags()[0];
        assert_eq!(tag.key(), Some(protocol::LAUNCH_CONFIGURATION));
        assert_eq!(tag.value(), Some("web-lc-v2"));
    }

    #[test]
    fn every_override_puts_its_clones_in_the_groups_placement_group() {
        let none = request(&fleet()).build().unwrap();
        let overrides = |req: &aws_sdk_ec2::operation::create_fleet::CreateFleetInput| {
            req.launch_template_configs()[0]
                .overrides()
                .iter()
                .map(|o| {
                    o.placement()
                        .and_then(|p| p.group_name())
                        .map(str::to_string)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(overrides(&none), [None, None, None, None]);
        let f = FleetLaunch {
            placement_group: Some("web-cluster".into()),
            ..fleet()
        };
        let req = request(&f).build().unwrap();
        assert_eq!(overrides(&req), vec![Some("web-cluster".to_string()); 4]);
        // CreateFleet takes no tenancy: the overrides never name one.
        assert!(
            req.launch_template_configs()[0]
                .overrides()
                .iter()
                .all(|o| o.placement().and_then(|p| p.tenancy()).is_none())
        );
    }
}
