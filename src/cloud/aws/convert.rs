//! Pure conversions from AWS SDK types to the domain model, and from the domain to SDK
//! request types. No calls, no logging: only shape changes, unit-tested.

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_autoscaling::types as asg;
use aws_sdk_ec2::types as ec2;
use chrono::{DateTime, Utc};

use crate::model::{
    AcceleratorKind, AcceleratorSpec, Ami, Architecture, BlockDeviceMapping, BootMode, CpuOptions,
    DiskSpec, DiskType, EbsOptimizedSupport, EbsVolume, EnaSupport, GpuSpec, Group, Instance,
    InstancePlacement, InstanceState, InstanceStorage, InstanceTypeSpec, LaunchRef, LaunchSpec,
    Market, Member, MetadataOptions, NetworkInterface, Secret, SpotPricePoint, Virtualization,
};

/// Converts an SDK timestamp.
pub fn time(t: Option<&aws_smithy_types::DateTime>) -> Option<DateTime<Utc>> {
    let t = t?;
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

/// The launch reference of a group.
pub fn group_launch(g: &asg::AutoScalingGroup) -> Option<LaunchRef> {
    if let Some(name) = g.launch_configuration_name() {
        return Some(LaunchRef::LaunchConfiguration { name: name.into() });
    }
    let lt = g.launch_template()?;
    Some(LaunchRef::LaunchTemplate {
        id: lt.launch_template_id()?.to_string(),
        name: lt.launch_template_name().map(str::to_string),
        // Auto Scaling's default when a group names no version is $Default.
        version: lt.version().unwrap_or("$Default").to_string(),
    })
}

/// A group as the model sees it. `refreshing` says whether an instance refresh is running.
pub fn group(g: &asg::AutoScalingGroup) -> Option<Group> {
    let mut tags = BTreeMap::new();
    let mut propagated = BTreeSet::new();
    for t in g.tags() {
        if let Some(k) = t.key() {
            tags.insert(k.to_string(), t.value().unwrap_or_default().to_string());
            if t.propagate_at_launch() == Some(true) {
                propagated.insert(k.to_string());
            }
        }
    }
    Some(Group {
        name: g.auto_scaling_group_name()?.to_string(),
        min_size: count(g.min_size()),
        max_size: count(g.max_size()),
        desired_capacity: count(g.desired_capacity()),
        health_check_grace_period_secs: count(g.health_check_grace_period()),
        tags,
        propagated_tag_keys: propagated,
        launch: group_launch(g),
        mixed_instances_policy: g.mixed_instances_policy().is_some(),
        warm_pool: g.warm_pool_configuration().is_some(),
        // Read for the groups a pass is about to change (`Inventory::refreshes`).
        instance_refresh_in_progress: false,
        read_failures: Vec::new(),
        suspended_processes: g
            .suspended_processes()
            .iter()
            .filter_map(|p| p.process_name().map(str::to_string))
            .collect(),
        members: g.instances().iter().filter_map(member).collect(),
        target_group_arns: g.target_group_arns().to_vec(),
        load_balancer_names: g.load_balancer_names().to_vec(),
        placement_group: g
            .placement_group()
            .filter(|p| !p.is_empty())
            .map(str::to_string),
    })
}

fn count(v: Option<i32>) -> u32 {
    v.unwrap_or(0).max(0) as u32
}

fn member(i: &asg::Instance) -> Option<Member> {
    Some(Member {
        instance_id: i.instance_id()?.to_string(),
        lifecycle_state: i
            .lifecycle_state()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        health_status: i.health_status().unwrap_or("Healthy").to_string(),
        protected_from_scale_in: i.protected_from_scale_in().unwrap_or(false),
    })
}

/// An EC2 instance. `None` for records without an id, type or AZ.
pub fn instance(i: &ec2::Instance) -> Option<Instance> {
    let state = match i.state().and_then(|s| s.name()) {
        Some(ec2::InstanceStateName::Pending) => InstanceState::Pending,
        Some(ec2::InstanceStateName::Running) => InstanceState::Running,
        Some(ec2::InstanceStateName::ShuttingDown) => InstanceState::ShuttingDown,
        Some(ec2::InstanceStateName::Stopping) => InstanceState::Stopping,
        Some(ec2::InstanceStateName::Stopped) => InstanceState::Stopped,
        _ => InstanceState::Terminated,
    };
    let tags: BTreeMap<String, String> = i
        .tags()
        .iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect();
    Some(Instance {
        instance_id: i.instance_id()?.to_string(),
        instance_type: i.instance_type()?.as_str().to_string(),
        availability_zone: i.placement()?.availability_zone()?.to_string(),
        subnet_id: i.subnet_id().map(str::to_string),
        market: match i.instance_lifecycle() {
            Some(ec2::InstanceLifecycleType::Spot) => Market::Spot,
            _ => Market::OnDemand,
        },
        state,
        state_reason: i.state_reason().and_then(|r| r.code()).map(str::to_string),
        launch_time: time(i.launch_time()).unwrap_or(DateTime::UNIX_EPOCH),
        image_id: i.image_id().map(str::to_string),
        // Auto Scaling tags its members; membership is confirmed separately for clones.
        auto_scaling_group: tags.get("aws:autoscaling:groupName").cloned(),
        tags,
        placement: i
            .placement()
            .and_then(|p| InstancePlacement::of(p.group_name(), p.tenancy().map(|t| t.as_str()))),
    })
}

fn architecture(a: &str) -> Option<Architecture> {
    match a {
        "i386" => Some(Architecture::I386),
        "x86_64" => Some(Architecture::X86_64),
        "arm64" => Some(Architecture::Arm64),
        "x86_64_mac" => Some(Architecture::X86_64Mac),
        "arm64_mac" => Some(Architecture::Arm64Mac),
        _ => None,
    }
}

fn virtualization(v: &str) -> Option<Virtualization> {
    match v {
        "hvm" => Some(Virtualization::Hvm),
        "paravirtual" => Some(Virtualization::Paravirtual),
        _ => None,
    }
}

fn boot_mode(b: &str) -> Option<BootMode> {
    match b {
        "legacy-bios" => Some(BootMode::LegacyBios),
        "uefi" => Some(BootMode::Uefi),
        "uefi-preferred" => Some(BootMode::UefiPreferred),
        _ => None,
    }
}

/// An AMI.
pub fn image(i: &ec2::Image) -> Option<Ami> {
    Some(Ami {
        image_id: i.image_id()?.to_string(),
        name: i.name().map(str::to_string),
        architecture: i.architecture().and_then(|a| architecture(a.as_str())),
        virtualization: i
            .virtualization_type()
            .and_then(|v| virtualization(v.as_str())),
        boot_mode: i.boot_mode().and_then(|b| boot_mode(b.as_str())),
        ena_support: i.ena_support(),
        platform_details: i.platform_details().map(str::to_string),
        platform: i.platform().map(|p| p.as_str().to_string()),
        block_device_mappings: i
            .block_device_mappings()
            .iter()
            .map(|m| BlockDeviceMapping {
                device_name: m.device_name().unwrap_or_default().to_string(),
                virtual_name: m.virtual_name().map(str::to_string),
                ebs: m.ebs().map(|e| EbsVolume {
                    snapshot_id: e.snapshot_id().map(str::to_string),
                    volume_size_gib: e.volume_size(),
                    volume_type: e.volume_type().map(|t| t.as_str().to_string()),
                    iops: e.iops(),
                    throughput: e.throughput(),
                    delete_on_termination: e.delete_on_termination(),
                    encrypted: e.encrypted(),
                    kms_key_id: e.kms_key_id().map(str::to_string),
                }),
                no_device: m.no_device().is_some(),
            })
            .collect(),
    })
}

/// An instance type from `DescribeInstanceTypes`.
pub fn instance_type(t: &ec2::InstanceTypeInfo) -> Option<InstanceTypeSpec> {
    let name = t.instance_type()?.as_str().to_string();
    // Inference accelerators, Neuron devices, FPGAs and media accelerators: four SDK types of
    // one shape. Neuron devices name no maker; they are AWS's own.
    let mut accelerators = Vec::new();
    macro_rules! accelerators {
        ($devices:expr, $kind:expr) => {
            for d in $devices {
                let maker = d.manufacturer().unwrap_or_default().to_string();
                accelerators!(@push d, $kind, maker);
            }
        };
        ($devices:expr, $kind:expr, maker = $maker:literal) => {
            for d in $devices {
                accelerators!(@push d, $kind, $maker.to_string());
            }
        };
        (@push $d:ident, $kind:expr, $maker:expr) => {
            accelerators.push(AcceleratorSpec {
                kind: $kind,
                manufacturer: $maker,
                name: $d.name().unwrap_or_default().to_string(),
                count: count($d.count()),
                memory_mib: $d
                    .memory_info()
                    .and_then(|m| m.size_in_mib())
                    .unwrap_or(0)
                    .max(0) as u64,
            })
        };
    }
    if let Some(info) = t.inference_accelerator_info() {
        accelerators!(info.accelerators(), AcceleratorKind::Inference);
    }
    if let Some(info) = t.neuron_info() {
        accelerators!(
            info.neuron_devices(),
            AcceleratorKind::Neuron,
            maker = "AWS"
        );
    }
    if let Some(info) = t.fpga_info() {
        accelerators!(info.fpgas(), AcceleratorKind::Fpga);
    }
    if let Some(info) = t.media_accelerator_info() {
        accelerators!(info.accelerators(), AcceleratorKind::Media);
    }
    let gpus = t
        .gpu_info()
        .map(|g| {
            g.gpus()
                .iter()
                .map(|d| GpuSpec {
                    manufacturer: d.manufacturer().unwrap_or_default().to_string(),
                    name: d.name().unwrap_or_default().to_string(),
                    // Fractional GPUs report Count 0; one partition is still one GPU to us.
                    count: count(d.count()).max(1),
                    memory_mib: d
                        .memory_info()
                        .and_then(|m| m.size_in_mib())
                        .unwrap_or(0)
                        .max(0) as u64,
                })
                .collect()
        })
        .unwrap_or_default();
    let instance_storage = t.instance_storage_info().map(|s| InstanceStorage {
        disks: s
            .disks()
            .iter()
            .map(|d| DiskSpec {
                count: count(d.count()),
                size_gb: d.size_in_gb().unwrap_or(0).max(0) as u64,
                disk_type: match d.r#type() {
                    Some(ec2::DiskType::Hdd) => DiskType::Hdd,
                    _ => DiskType::Ssd,
                },
            })
            .collect(),
        nvme: matches!(
            s.nvme_support(),
            Some(ec2::EphemeralNvmeSupport::Required | ec2::EphemeralNvmeSupport::Supported)
        ),
        total_gb: s.total_size_in_gb().unwrap_or(0).max(0) as u64,
    });
    Some(InstanceTypeSpec {
        instance_type: name,
        vcpus: count(t.v_cpu_info().and_then(|v| v.default_v_cpus())),
        memory_mib: t
            .memory_info()
            .and_then(|m| m.size_in_mib())
            .unwrap_or(0)
            .max(0) as u64,
        architectures: t
            .processor_info()
            .map(|p| {
                p.supported_architectures()
                    .iter()
                    .filter_map(|a| architecture(a.as_str()))
                    .collect()
            })
            .unwrap_or_default(),
        virtualization_types: t
            .supported_virtualization_types()
            .iter()
            .filter_map(|v| virtualization(v.as_str()))
            .collect(),
        boot_modes: t
            .supported_boot_modes()
            .iter()
            .filter_map(|b| boot_mode(b.as_str()))
            .collect(),
        ena: match t.network_info().and_then(|n| n.ena_support()) {
            Some(ec2::EnaSupport::Required) => EnaSupport::Required,
            Some(ec2::EnaSupport::Supported) => EnaSupport::Supported,
            _ => EnaSupport::Unsupported,
        },
        burstable: t.burstable_performance_supported().unwrap_or(false),
        bare_metal: t.bare_metal().unwrap_or(false),
        current_generation: t.current_generation().unwrap_or(false),
        spot_supported: t
            .supported_usage_classes()
            .contains(&ec2::UsageClassType::Spot),
        gpus,
        accelerators,
        instance_storage,
        ebs_baseline_mbps: t
            .ebs_info()
            .and_then(|e| e.ebs_optimized_info())
            .and_then(|o| o.baseline_bandwidth_in_mbps())
            .map(|v| v.max(0) as u64),
        network_baseline_gbps: t
            .network_info()
            .and_then(|n| n.network_cards().first())
            .and_then(|c| c.baseline_bandwidth_in_gbps()),
        hibernation_supported: t.hibernation_supported(),
        ebs_optimized_support: match t.ebs_info().and_then(|e| e.ebs_optimized_support()) {
            Some(ec2::EbsOptimizedSupport::Unsupported) => Some(EbsOptimizedSupport::Unsupported),
            Some(ec2::EbsOptimizedSupport::Supported) => Some(EbsOptimizedSupport::Supported),
            Some(ec2::EbsOptimizedSupport::Default) => Some(EbsOptimizedSupport::Default),
            // A value this SDK does not know says nothing we can judge by.
            _ => None,
        },
        nitro_enclaves_supported: match t.nitro_enclaves_support() {
            Some(ec2::NitroEnclavesSupport::Supported) => Some(true),
            Some(ec2::NitroEnclavesSupport::Unsupported) => Some(false),
            _ => None,
        },
        valid_cores: counts(t.v_cpu_info().map(|v| v.valid_cores())),
        valid_threads_per_core: counts(t.v_cpu_info().map(|v| v.valid_threads_per_core())),
    })
}

/// A list of counts as EC2 states them, negative values (never seen) left out.
fn counts(values: Option<&[i32]>) -> Vec<u32> {
    values
        .unwrap_or_default()
        .iter()
        .filter_map(|v| u32::try_from(*v).ok())
        .collect()
}

/// One spot price observation.
pub fn spot_price(p: &ec2::SpotPrice) -> Option<SpotPricePoint> {
    Some(SpotPricePoint {
        instance_type: p.instance_type()?.as_str().to_string(),
        availability_zone: p.availability_zone()?.to_string(),
        product_description: p.product_description()?.as_str().to_string(),
        price: p.spot_price()?.parse().ok()?,
        timestamp: time(p.timestamp())?,
    })
}

/// A launch configuration's content.
pub fn launch_configuration(lc: &asg::LaunchConfiguration) -> Option<LaunchSpec> {
    Some(LaunchSpec {
        resolved_version: None,
        image_id: lc.image_id()?.to_string(),
        instance_type: lc.instance_type().map(str::to_string),
        key_name: lc.key_name().filter(|k| !k.is_empty()).map(str::to_string),
        security_group_ids: lc.security_groups().to_vec(),
        iam_instance_profile: lc
            .iam_instance_profile()
            .filter(|p| !p.is_empty())
            .map(str::to_string),
        user_data: lc
            .user_data()
            .filter(|u| !u.is_empty())
            .map(|u| Secret(u.to_string())),
        block_device_mappings: lc
            .block_device_mappings()
            .iter()
            .map(|m| BlockDeviceMapping {
                device_name: m.device_name().unwrap_or_default().to_string(),
                virtual_name: m.virtual_name().map(str::to_string),
                ebs: m.ebs().map(|e| EbsVolume {
                    snapshot_id: e.snapshot_id().map(str::to_string),
                    volume_size_gib: e.volume_size(),
                    volume_type: e.volume_type().map(str::to_string),
                    iops: e.iops(),
                    throughput: e.throughput(),
                    delete_on_termination: e.delete_on_termination(),
                    encrypted: e.encrypted(),
                    kms_key_id: None,
                }),
                no_device: m.no_device().unwrap_or(false),
            })
            .collect(),
        ebs_optimized: lc.ebs_optimized(),
        monitoring: lc.instance_monitoring().and_then(|m| m.enabled()),
        metadata_options: lc.metadata_options().map(|m| MetadataOptions {
            http_tokens: m.http_tokens().map(|t| t.as_str().to_string()),
            http_put_response_hop_limit: m.http_put_response_hop_limit(),
            http_endpoint: m.http_endpoint().map(|e| e.as_str().to_string()),
            http_protocol_ipv6: None,
            instance_metadata_tags: None,
        }),
        associate_public_ip_address: lc.associate_public_ip_address(),
        // Launch configurations have no credit specification, no network interfaces, no
        // hibernation, Nitro Enclaves or CPU options.
        cpu_credits: None,
        network_interfaces: Vec::new(),
        hibernation: false,
        nitro_enclaves: false,
        cpu_options: None,
        tenancy: lc
            .placement_tenancy()
            .filter(|t| !t.is_empty())
            .map(str::to_string),
    })
}

/// One launch template version's content.
pub fn launch_template_version(v: &ec2::LaunchTemplateVersion) -> Option<LaunchSpec> {
    let d = v.launch_template_data()?;
    let mut security_group_ids: Vec<String> = d.security_group_ids().to_vec();
    // A template may carry its groups on the primary network interface instead.
    for ni in d.network_interfaces() {
        if ni.device_index().unwrap_or(0) == 0 {
            security_group_ids.extend(ni.groups().iter().cloned());
        }
    }
    Some(LaunchSpec {
        resolved_version: v.version_number(),
        image_id: d.image_id()?.to_string(),
        instance_type: d.instance_type().map(|t| t.as_str().to_string()),
        key_name: d.key_name().map(str::to_string),
        security_group_ids,
        iam_instance_profile: d
            .iam_instance_profile()
            .and_then(|p| p.arn().or(p.name()))
            .map(str::to_string),
        user_data: d.user_data().map(|u| Secret(u.to_string())),
        block_device_mappings: d
            .block_device_mappings()
            .iter()
            .map(|m| BlockDeviceMapping {
                device_name: m.device_name().unwrap_or_default().to_string(),
                virtual_name: m.virtual_name().map(str::to_string),
                ebs: m.ebs().map(|e| EbsVolume {
                    snapshot_id: e.snapshot_id().map(str::to_string),
                    volume_size_gib: e.volume_size(),
                    volume_type: e.volume_type().map(|t| t.as_str().to_string()),
                    iops: e.iops(),
                    throughput: e.throughput(),
                    delete_on_termination: e.delete_on_termination(),
                    encrypted: e.encrypted(),
                    kms_key_id: e.kms_key_id().map(str::to_string),
                }),
                no_device: m.no_device().is_some(),
            })
            .collect(),
        ebs_optimized: d.ebs_optimized(),
        monitoring: d.monitoring().and_then(|m| m.enabled()),
        metadata_options: d.metadata_options().map(|m| MetadataOptions {
            http_tokens: m.http_tokens().map(|t| t.as_str().to_string()),
            http_put_response_hop_limit: m.http_put_response_hop_limit(),
            http_endpoint: m.http_endpoint().map(|e| e.as_str().to_string()),
            http_protocol_ipv6: m.http_protocol_ipv6().map(|e| e.as_str().to_string()),
            instance_metadata_tags: m.instance_metadata_tags().map(|e| e.as_str().to_string()),
        }),
        associate_public_ip_address: d
            .network_interfaces()
            .iter()
            .find(|n| n.device_index().unwrap_or(0) == 0)
            .and_then(|n| n.associate_public_ip_address()),
        cpu_credits: d
            .credit_specification()
            .and_then(|c| c.cpu_credits())
            .map(str::to_string),
        network_interfaces: d
            .network_interfaces()
            .iter()
            .map(network_interface)
            .collect(),
        hibernation: d
            .hibernation_options()
            .and_then(|h| h.configured())
            .unwrap_or(false),
        nitro_enclaves: d
            .enclave_options()
            .and_then(|e| e.enabled())
            .unwrap_or(false),
        cpu_options: d
            .cpu_options()
            .map(|c| CpuOptions {
                core_count: c.core_count().and_then(|v| u32::try_from(v).ok()),
                threads_per_core: c.threads_per_core().and_then(|v| u32::try_from(v).ok()),
            })
            .filter(|c| *c != CpuOptions::default()),
        tenancy: d
            .placement()
            .and_then(|p| p.tenancy())
            .map(|t| t.as_str().to_string()),
    })
}

/// One network interface of a launch template version.
fn network_interface(
    n: &ec2::LaunchTemplateInstanceNetworkInterfaceSpecification,
) -> NetworkInterface {
    NetworkInterface {
        device_index: n.device_index(),
        network_card_index: n.network_card_index(),
        subnet_id: n.subnet_id().filter(|s| !s.is_empty()).map(str::to_string),
        associate_public_ip_address: n.associate_public_ip_address(),
        security_group_ids: n.groups().to_vec(),
        interface_type: n.interface_type().map(str::to_string),
        delete_on_termination: n.delete_on_termination(),
        description: n.description().map(str::to_string),
        ipv6_address_count: n.ipv6_address_count(),
        secondary_private_ip_address_count: n.secondary_private_ip_address_count(),
        network_interface_id: n
            .network_interface_id()
            .filter(|i| !i.is_empty())
            .map(str::to_string),
    }
}

/// The request-side block device mappings of a launch spec.
pub fn block_device_mappings(spec: &LaunchSpec) -> Vec<ec2::BlockDeviceMapping> {
    spec.block_device_mappings
        .iter()
        .map(|m| {
            let mut b = ec2::BlockDeviceMapping::builder().device_name(&m.device_name);
            if let Some(v) = &m.virtual_name {
                b = b.virtual_name(v);
            }
            if m.no_device {
                b = b.no_device("");
            }
            if let Some(e) = &m.ebs {
                let mut eb = ec2::EbsBlockDevice::builder()
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

/// The request-side metadata options of a launch spec.
pub fn metadata_options(m: &MetadataOptions) -> ec2::InstanceMetadataOptionsRequest {
    let mut b = ec2::InstanceMetadataOptionsRequest::builder()
        .set_http_put_response_hop_limit(m.http_put_response_hop_limit);
    if let Some(t) = &m.http_tokens {
        b = b.http_tokens(ec2::HttpTokensState::from(t.as_str()));
    }
    if let Some(e) = &m.http_endpoint {
        b = b.http_endpoint(ec2::InstanceMetadataEndpointState::from(e.as_str()));
    }
    if let Some(e) = &m.http_protocol_ipv6 {
        b = b.http_protocol_ipv6(ec2::InstanceMetadataProtocolState::from(e.as_str()));
    }
    if let Some(e) = &m.instance_metadata_tags {
        b = b.instance_metadata_tags(ec2::InstanceMetadataTagsState::from(e.as_str()));
    }
    b.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spot_instance_with_group_tag_converts() {
        let i = ec2::Instance::builder()
            .instance_id("i-1")
            .instance_type(ec2::InstanceType::from("m5.large"))
            .placement(
                ec2::Placement::builder()
                    .availability_zone("us-east-1a")
                    .build(),
            )
            .instance_lifecycle(ec2::InstanceLifecycleType::Spot)
            .state(
                ec2::InstanceState::builder()
                    .name(ec2::InstanceStateName::Running)
                    .build(),
            )
            .launch_time(aws_smithy_types::DateTime::from_secs(1_700_000_000))
            .tags(
                ec2::Tag::builder()
                    .key("aws:autoscaling:groupName")
                    .value("web")
                    .build(),
            )
            .build();
        let m = instance(&i).unwrap();
        assert_eq!(m.market, Market::Spot);
        assert_eq!(m.state, InstanceState::Running);
        assert_eq!(m.auto_scaling_group.as_deref(), Some("web"));
        assert_eq!(m.launch_time.timestamp(), 1_700_000_000);
    }

    #[test]
    fn a_group_keeps_tags_propagation_and_launch_template_version() {
        let g = asg::AutoScalingGroup::builder()
            .auto_scaling_group_name("web")
            .min_size(1)
            .max_size(4)
            .desired_capacity(2)
            .health_check_grace_period(300)
            .launch_template(
                asg::LaunchTemplateSpecification::builder()
                    .launch_template_id("lt-1")
                    .version("$Latest")
                    .build(),
            )
            .tags(
                asg::TagDescription::builder()
                    .key("team")
                    .value("a")
                    .propagate_at_launch(true)
                    .build(),
            )
            .tags(
                asg::TagDescription::builder()
                    .key("spot-enabled")
                    .value("true")
                    .propagate_at_launch(false)
                    .build(),
            )
            .build();
        let m = group(&g).unwrap();
        assert_eq!(m.propagated_tag_keys, BTreeSet::from(["team".to_string()]));
        assert_eq!(m.tags.len(), 2);
        assert_eq!(
            m.launch,
            Some(LaunchRef::LaunchTemplate {
                id: "lt-1".into(),
                name: None,
                version: "$Latest".into()
            })
        );
    }

    #[test]
    fn placement_groups_and_tenancy_are_read_from_groups_specs_and_instances() {
        let g = asg::AutoScalingGroup::builder()
            .auto_scaling_group_name("web")
            .placement_group("web-cluster")
            .build();
        assert_eq!(
            group(&g).unwrap().placement_group.as_deref(),
            Some("web-cluster")
        );
        let lc = asg::LaunchConfiguration::builder()
            .image_id("ami-1")
            .placement_tenancy("dedicated")
            .build();
        assert_eq!(
            launch_configuration(&lc).unwrap().tenancy.as_deref(),
            Some("dedicated")
        );
        let v = ec2::LaunchTemplateVersion::builder()
            .version_number(1)
            .launch_template_data(
                ec2::ResponseLaunchTemplateData::builder()
                    .image_id("ami-1")
                    .placement(
                        ec2::LaunchTemplatePlacement::builder()
                            .tenancy(ec2::Tenancy::Host)
                            .build(),
                    )
                    .build(),
            )
            .build();
        assert_eq!(
            launch_template_version(&v).unwrap().tenancy.as_deref(),
            Some("host")
        );
        let i = |p: ec2::Placement| {
            let i = ec2::Instance::builder()
                .instance_id("i-1")
                .instance_type(ec2::InstanceType::from("m5.large"))
                .placement(p)
                .build();
            instance(&i).unwrap().placement.map(|p| *p)
        };
        let az = || ec2::Placement::builder().availability_zone("us-east-1a");
        assert_eq!(i(az().tenancy(ec2::Tenancy::Default).build()), None);
        assert_eq!(
            i(az()
                .group_name("web-cluster")
                .tenancy(ec2::Tenancy::Dedicated)
                .build()),
            Some(InstancePlacement {
                group_name: Some("web-cluster".into()),
                tenancy: Some("dedicated".into()),
            })
        );
    }

    #[test]
    fn every_kind_of_accelerator_converts_with_its_maker_count_and_memory() {
        let t = ec2::InstanceTypeInfo::builder()
            .instance_type(ec2::InstanceType::from("x1.test"))
            .inference_accelerator_info(
                ec2::InferenceAcceleratorInfo::builder()
                    .accelerators(
                        ec2::InferenceDeviceInfo::builder()
                            .manufacturer("AWS")
                            .name("Inferentia")
                            .count(2)
                            .memory_info(
                                ec2::InferenceDeviceMemoryInfo::builder()
                                    .size_in_mib(8192)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .neuron_info(
                ec2::NeuronInfo::builder()
                    .neuron_devices(
                        ec2::NeuronDeviceInfo::builder()
                            .name("Trainium")
                            .count(1)
                            .memory_info(
                                ec2::NeuronDeviceMemoryInfo::builder()
                                    .size_in_mib(32768)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .fpga_info(
                ec2::FpgaInfo::builder()
                    .fpgas(
                        ec2::FpgaDeviceInfo::builder()
                            .manufacturer("Xilinx")
                            .name("VU9P")
                            .count(1)
                            .memory_info(
                                ec2::FpgaDeviceMemoryInfo::builder()
                                    .size_in_mib(65536)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .media_accelerator_info(
                ec2::MediaAcceleratorInfo::builder()
                    .accelerators(
                        ec2::MediaDeviceInfo::builder()
                            .manufacturer("Xilinx")
                            .name("U30")
                            .count(2)
                            .memory_info(
                                ec2::MediaDeviceMemoryInfo::builder()
                                    .size_in_mib(24576)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .build();
        let got: Vec<(AcceleratorKind, String, String, u32, u64)> = instance_type(&t)
            .unwrap()
            .accelerators
            .into_iter()
            .map(|a| (a.kind, a.manufacturer, a.name, a.count, a.memory_mib))
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    AcceleratorKind::Inference,
                    "AWS".into(),
                    "Inferentia".into(),
                    2,
                    8192
                ),
                (
                    AcceleratorKind::Neuron,
                    "AWS".into(),
                    "Trainium".into(),
                    1,
                    32768
                ),
                (
                    AcceleratorKind::Fpga,
                    "Xilinx".into(),
                    "VU9P".into(),
                    1,
                    65536
                ),
                (
                    AcceleratorKind::Media,
                    "Xilinx".into(),
                    "U30".into(),
                    2,
                    24576
                ),
            ]
        );
    }

    #[test]
    fn a_template_keeps_every_network_interface_with_its_fields() {
        let nic = ec2::LaunchTemplateInstanceNetworkInterfaceSpecification::builder;
        let v = ec2::LaunchTemplateVersion::builder()
            .version_number(3)
            .launch_template_data(
                ec2::ResponseLaunchTemplateData::builder()
                    .image_id("ami-1")
                    .network_interfaces(
                        nic()
                            .device_index(0)
                            .associate_public_ip_address(true)
                            .groups("sg-1")
                            .groups("sg-2")
                            .delete_on_termination(true)
                            .description("front")
                            .ipv6_address_count(1)
                            .secondary_private_ip_address_count(2)
                            .build(),
                    )
                    .network_interfaces(
                        nic()
                            .device_index(1)
                            .network_card_index(1)
                            .subnet_id("subnet-back")
                            .interface_type("efa")
                            .groups("sg-3")
                            .build(),
                    )
                    .build(),
            )
            .build();
        let spec = launch_template_version(&v).unwrap();
        assert_eq!(
            spec.network_interfaces,
            [
                NetworkInterface {
                    device_index: Some(0),
                    associate_public_ip_address: Some(true),
                    security_group_ids: vec!["sg-1".into(), "sg-2".into()],
                    delete_on_termination: Some(true),
                    description: Some("front".into()),
                    ipv6_address_count: Some(1),
                    secondary_private_ip_address_count: Some(2),
                    ..NetworkInterface::default()
                },
                NetworkInterface {
                    device_index: Some(1),
                    network_card_index: Some(1),
                    subnet_id: Some("subnet-back".into()),
                    interface_type: Some("efa".into()),
                    security_group_ids: vec!["sg-3".into()],
                    ..NetworkInterface::default()
                },
            ]
        );
        assert!(spec.network_interfaces[0].is_primary());
        assert!(!spec.network_interfaces[1].is_primary());
        // The primary interface's public-IP choice and groups stay where they were read before.
        assert_eq!(spec.associate_public_ip_address, Some(true));
        assert_eq!(spec.security_group_ids, ["sg-1", "sg-2"]);
        // An attached existing interface is kept, so the planner can refuse to clone it.
        let fixed = ec2::LaunchTemplateVersion::builder()
            .launch_template_data(
                ec2::ResponseLaunchTemplateData::builder()
                    .image_id("ami-1")
                    .network_interfaces(nic().device_index(0).network_interface_id("eni-1").build())
                    .build(),
            )
            .build();
        assert_eq!(
            launch_template_version(&fixed).unwrap().network_interfaces[0]
                .network_interface_id
                .as_deref(),
            Some("eni-1")
        );
        // A template without interfaces has none.
        let plain = ec2::LaunchTemplateVersion::builder()
            .launch_template_data(
                ec2::ResponseLaunchTemplateData::builder()
                    .image_id("ami-1")
                    .build(),
            )
            .build();
        assert!(
            launch_template_version(&plain)
                .unwrap()
                .network_interfaces
                .is_empty()
        );
    }

    #[test]
    fn the_launch_settings_only_some_types_accept_convert_on_both_sides() {
        let t = ec2::InstanceTypeInfo::builder()
            .instance_type(ec2::InstanceType::from("m5.xlarge"))
            .hibernation_supported(true)
            .nitro_enclaves_support(ec2::NitroEnclavesSupport::Supported)
            .ebs_info(
                ec2::EbsInfo::builder()
                    .ebs_optimized_support(ec2::EbsOptimizedSupport::Default)
                    .build(),
            )
            .v_cpu_info(
                ec2::VCpuInfo::builder()
                    .default_v_cpus(4)
                    .valid_cores(2)
                    .valid_threads_per_core(1)
                    .valid_threads_per_core(2)
                    .build(),
            )
            .build();
        let spec = instance_type(&t).unwrap();
        assert_eq!(spec.hibernation_supported, Some(true));
        assert_eq!(spec.nitro_enclaves_supported, Some(true));
        assert_eq!(
            spec.ebs_optimized_support,
            Some(EbsOptimizedSupport::Default)
        );
        assert_eq!(spec.valid_cores, [2]);
        assert_eq!(spec.valid_threads_per_core, [1, 2]);
        // Where the API says nothing, nothing is known.
        let bare = ec2::InstanceTypeInfo::builder()
            .instance_type(ec2::InstanceType::from("x.large"))
            .build();
        let spec = instance_type(&bare).unwrap();
        assert_eq!(
            (
                spec.hibernation_supported,
                spec.nitro_enclaves_supported,
                spec.ebs_optimized_support
            ),
            (None, None, None)
        );
        assert!(spec.valid_cores.is_empty() && spec.valid_threads_per_core.is_empty());

        let v = ec2::LaunchTemplateVersion::builder()
            .launch_template_data(
                ec2::ResponseLaunchTemplateData::builder()
                    .image_id("ami-1")
                    .ebs_optimized(true)
                    .hibernation_options(
                        ec2::LaunchTemplateHibernationOptions::builder()
                            .configured(true)
                            .build(),
                    )
                    .enclave_options(
                        ec2::LaunchTemplateEnclaveOptions::builder()
                            .enabled(true)
                            .build(),
                    )
                    .cpu_options(
                        ec2::LaunchTemplateCpuOptions::builder()
                            .core_count(2)
                            .threads_per_core(1)
                            .build(),
                    )
                    .build(),
            )
            .build();
        let spec = launch_template_version(&v).unwrap();
        assert!(spec.hibernation && spec.nitro_enclaves);
        assert_eq!(spec.ebs_optimized, Some(true));
        assert_eq!(
            spec.cpu_options,
            Some(CpuOptions {
                core_count: Some(2),
                threads_per_core: Some(1)
            })
        );
        // Switched off or absent, they ask nothing.
        let off = ec2::LaunchTemplateVersion::builder()
            .launch_template_data(
                ec2::ResponseLaunchTemplateData::builder()
                    .image_id("ami-1")
                    .hibernation_options(
                        ec2::LaunchTemplateHibernationOptions::builder()
                            .configured(false)
                            .build(),
                    )
                    .cpu_options(ec2::LaunchTemplateCpuOptions::builder().build())
                    .build(),
            )
            .build();
        let spec = launch_template_version(&off).unwrap();
        assert!(!spec.hibernation && !spec.nitro_enclaves);
        assert_eq!(spec.cpu_options, None);
    }

    #[test]
    fn spot_prices_parse_their_decimal_text() {
        let p = ec2::SpotPrice::builder()
            .instance_type(ec2::InstanceType::from("m5.large"))
            .availability_zone("us-east-1a")
            .product_description(ec2::RiProductDescription::from("Linux/UNIX (Amazon VPC)"))
            .spot_price("0.035100")
            .timestamp(aws_smithy_types::DateTime::from_secs(1_700_000_000))
            .build();
        assert_eq!(spot_price(&p).unwrap().price, 0.0351);
    }
}
