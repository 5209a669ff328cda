//! Seeders and state readers for end-to-end tests, through the real AWS SDK clients: an
//! [`Account`] with a VPC, three subnets in three AZs, a security group, a key pair, an IAM
//! instance profile and a Linux AMI, and Auto Scaling groups built from a [`GroupSpec`] like an
//! operator would build them (launch configuration or launch template, tags, grace period).
//!
//! moto places every instance a group launches in the *first* subnet of the group's
//! `VPCZoneIdentifier`, so [`Account::create_group`] scales the group up one instance at a
//! time, rotating the subnet list, to spread the instances over the three AZs the way AWS
//! would; it leaves the group with the subnets in their natural order.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use aws_sdk_autoscaling::types as asg;
use aws_sdk_ec2::types as ec2t;
use aws_smithy_types::error::display::DisplayErrorContext;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

/// Unwraps an SDK result with the whole error chain in the panic message.
pub trait OrPanic<T> {
    fn or_panic(self, what: &str) -> T;
}

impl<T, E: std::error::Error + Debug> OrPanic<T> for Result<T, E> {
    fn or_panic(self, what: &str) -> T {
        self.unwrap_or_else(|e| panic!("{what}: {}", DisplayErrorContext(&e)))
    }
}

/// How a group launches its instances.
#[derive(Debug, Clone, PartialEq)]
pub enum Launch {
    /// A launch configuration named `<group>-lc`.
    Configuration { user_data: String },
    /// A launch template named `<group>-lt` with two versions (the group uses `$Latest`,
    /// which is version 2; version 1 differs only in its user data, `#!/bin/sh\n# v1`).
    Template { user_data: String },
}

impl Launch {
    pub fn user_data(&self) -> &str {
        match self {
            Launch::Configuration { user_data } | Launch::Template { user_data } => user_data,
        }
    }
}

/// What to build: one Auto Scaling group and its launch configuration or template.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSpec {
    pub name: String,
    pub instance_type: String,
    pub min: i32,
    pub max: i32,
    pub desired: i32,
    /// `HealthCheckGracePeriod` in seconds.
    pub grace_secs: i32,
    /// (key, value, propagate at launch).
    pub tags: Vec<(String, String, bool)>,
    pub launch: Launch,
    /// A mixed instances policy over the template (needs [`Launch::Template`]): overrides
    /// `instance_type` and `m5a.large`, all on-demand.
    pub mixed_instances: bool,
    /// The AMI to launch; `None` is the account's Linux x86_64 AMI.
    pub image_id: Option<String>,
    /// The template's security group and a public IP go on a primary network interface of
    /// the template (needs [`Launch::Template`]) instead of its top-level security groups.
    pub public_ip_interface: bool,
}

impl GroupSpec {
    /// An opted-in (`spot-enabled=true`) group of 3 `instance_type` instances (min 1, max 6),
    /// launched from a launch configuration, grace period 60 s, with a propagated `Name` tag.
    pub fn new(name: &str, instance_type: &str) -> GroupSpec {
        GroupSpec {
            name: name.to_string(),
            instance_type: instance_type.to_string(),
            min: 1,
            max: 6,
            desired: 3,
            grace_secs: 60,
            tags: vec![
                ("spot-enabled".into(), "true".into(), false),
                ("Name".into(), name.to_string(), true),
            ],
            launch: Launch::Configuration {
                user_data: format!("#!/bin/sh\necho {name}\n"),
            },
            mixed_instances: false,
            image_id: None,
            public_ip_interface: false,
        }
    }

    /// Launches this AMI instead of the account's Linux x86_64 one (an arm64 AMI for a
    /// Graviton group, say).
    pub fn image(mut self, image_id: &str) -> Self {
        self.image_id = Some(image_id.to_string());
        self
    }

    pub fn capacity(mut self, min: i32, desired: i32, max: i32) -> Self {
        self.min = min;
        self.desired = desired;
        self.max = max;
        self
    }

    pub fn grace_secs(mut self, secs: i32) -> Self {
        self.grace_secs = secs;
        self
    }

    /// Adds (or replaces) a group tag.
    pub fn tag(mut self, key: &str, value: &str, propagate: bool) -> Self {
        self.tags.retain(|(k, _, _)| k != key);
        self.tags.push((key.into(), value.into(), propagate));
        self
    }

    /// Removes a group tag (for example `spot-enabled`, to make a group that is not opted in).
    pub fn without_tag(mut self, key: &str) -> Self {
        self.tags.retain(|(k, _, _)| k != key);
        self
    }

    pub fn launch_configuration(mut self, user_data: &str) -> Self {
        self.launch = Launch::Configuration {
            user_data: user_data.into(),
        };
        self
    }

    pub fn launch_template(mut self, user_data: &str) -> Self {
        self.launch = Launch::Template {
            user_data: user_data.into(),
        };
        self
    }

    /// Switches to a launch template whose security group and a public IP are on a primary
    /// network interface (`NetworkInterfaces`), as templates for public subnets often are.
    pub fn public_ip_interface(mut self) -> Self {
        if let Launch::Configuration { user_data } = &self.launch {
            self.launch = Launch::Template {
                user_data: user_data.clone(),
            };
        }
        self.public_ip_interface = true;
        self
    }

    /// Switches to a launch template with a mixed instances policy.
    pub fn mixed_instances(mut self) -> Self {
        if let Launch::Configuration { user_data } = &self.launch {
            self.launch = Launch::Template {
                user_data: user_data.clone(),
            };
        }
        self.mixed_instances = true;
        self
    }

    fn lc_name(&self) -> String {
        format!("{}-lc", self.name)
    }

    fn lt_name(&self) -> String {
        format!("{}-lt", self.name)
    }
}

/// A seeded account in one region of the emulator.
#[derive(Debug, Clone)]
pub struct Account {
    pub region: String,
    pub ec2: aws_sdk_ec2::Client,
    pub autoscaling: aws_sdk_autoscaling::Client,
    pub iam: aws_sdk_iam::Client,
    pub vpc_id: String,
    /// Three subnets, one per AZ, in the order of `azs`.
    pub subnet_ids: Vec<String>,
    pub azs: Vec<String>,
    pub security_group_id: String,
    pub key_name: String,
    pub instance_profile_name: String,
    pub instance_profile_arn: String,
    /// A Linux x86_64 HVM AMI among moto's built-in images (`Platform` `Linux/UNIX`).
    pub linux_ami: String,
    /// A Linux arm64 AMI among moto's built-in images, if moto has one.
    pub arm64_ami: Option<String>,
}

fn ec2_filter(name: &str, values: &[&str]) -> ec2t::Filter {
    ec2t::Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

/// The AMI to use for an architecture: moto's images with `Platform` `Linux/UNIX` (moto sets
/// no `PlatformDetails`), HVM; Amazon Linux 2 first, then by name.
fn pick_linux_ami(images: &[ec2t::Image], arch: &str) -> Option<String> {
    let mut linux: Vec<&ec2t::Image> = images
        .iter()
        .filter(|i| i.architecture().map(|a| a.as_str()) == Some(arch))
        .filter(|i| i.virtualization_type().map(|v| v.as_str()) == Some("hvm"))
        .filter(|i| {
            i.platform().map(|p| p.as_str()) == Some("Linux/UNIX")
                || i.platform_details() == Some("Linux/UNIX")
        })
        .collect();
    linux.sort_by_key(|i| {
        let name = i.name().unwrap_or_default();
        (!name.starts_with("amzn2-ami-hvm"), name.to_string())
    });
    linux.first().and_then(|i| i.image_id()).map(str::to_string)
}

impl Account {
    /// Builds the account's network, key, profile and picks the AMIs.
    pub async fn create(config: &SdkConfig) -> Account {
        let region = config
            .region()
            .expect("the SDK config names a region")
            .to_string();
        let ec2 = aws_sdk_ec2::Client::new(config);
        let autoscaling = aws_sdk_autoscaling::Client::new(config);
        let iam = aws_sdk_iam::Client::new(config);

        let mut azs: Vec<String> = ec2
            .describe_availability_zones()
            .send()
            .await
            .or_panic("DescribeAvailabilityZones")
            .availability_zones()
            .iter()
            .filter_map(|z| z.zone_name().map(str::to_string))
            .collect();
        azs.sort();
        azs.truncate(3);
        assert_eq!(azs.len(), 3, "moto knows three AZs in {region}");

        let vpc_id = ec2
            .create_vpc()
            .cidr_block("10.0.0.0/16")
            .send()
            .await
            .or_panic("CreateVpc")
            .vpc()
            .and_then(|v| v.vpc_id())
            .expect("a VPC id")
            .to_string();
        let mut subnet_ids = Vec::new();
        for (i, az) in azs.iter().enumerate() {
            let id = ec2
                .create_subnet()
                .vpc_id(&vpc_id)
                .availability_zone(az)
                .cidr_block(format!("10.0.{i}.0/24"))
                .send()
                .await
                .or_panic("CreateSubnet")
                .subnet()
                .and_then(|s| s.subnet_id())
                .expect("a subnet id")
                .to_string();
            subnet_ids.push(id);
        }
        let security_group_id = ec2
            .create_security_group()
            .group_name("spotswap-test-app")
            .description("spotswap test application")
            .vpc_id(&vpc_id)
            .send()
            .await
            .or_panic("CreateSecurityGroup")
            .group_id()
            .expect("a security group id")
            .to_string();
        let key_name = "spotswap-test-key".to_string();
        ec2.create_key_pair()
            .key_name(&key_name)
            .send()
            .await
            .or_panic("CreateKeyPair");

        // IAM is global: a second region of the same emulator reuses the role and profile.
        let role_name = "spotswap-test-app-role";
        let instance_profile_name = "spotswap-test-app-profile".to_string();
        let existing = iam
            .get_instance_profile()
            .instance_profile_name(&instance_profile_name)
            .send()
            .await
            .ok()
            .and_then(|o| o.instance_profile().map(|p| p.arn().to_string()));
        let instance_profile_arn = match existing {
            Some(arn) => arn,
            None => {
                let trust = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;
                iam.create_role()
                    .role_name(role_name)
                    .assume_role_policy_document(trust)
                    .send()
                    .await
                    .or_panic("CreateRole");
                let arn = iam
                    .create_instance_profile()
                    .instance_profile_name(&instance_profile_name)
                    .send()
                    .await
                    .or_panic("CreateInstanceProfile")
                    .instance_profile()
                    .map(|p| p.arn().to_string())
                    .expect("an instance profile");
                iam.add_role_to_instance_profile()
                    .instance_profile_name(&instance_profile_name)
                    .role_name(role_name)
                    .send()
                    .await
                    .or_panic("AddRoleToInstanceProfile");
                arn
            }
        };

        let images = ec2
            .describe_images()
            .owners("amazon")
            .filters(ec2_filter("state", &["available"]))
            .send()
            .await
            .or_panic("DescribeImages")
            .images()
            .to_vec();
        let linux_ami =
            pick_linux_ami(&images, "x86_64").expect("moto has a Linux x86_64 AMI built in");
        let arm64_ami = pick_linux_ami(&images, "arm64");

        Account {
            region,
            ec2,
            autoscaling,
            iam,
            vpc_id,
            subnet_ids,
            azs,
            security_group_id,
            key_name,
            instance_profile_name,
            instance_profile_arn,
            linux_ami,
            arm64_ami,
        }
    }

    async fn create_launch_configuration(&self, spec: &GroupSpec, user_data: &str) {
        self.autoscaling
            .create_launch_configuration()
            .launch_configuration_name(spec.lc_name())
            .image_id(spec.image_id.as_deref().unwrap_or(&self.linux_ami))
            .instance_type(&spec.instance_type)
            .key_name(&self.key_name)
            .security_groups(&self.security_group_id)
            .iam_instance_profile(&self.instance_profile_name)
            .user_data(BASE64.encode(user_data))
            .block_device_mappings(
                asg::BlockDeviceMapping::builder()
                    .device_name("/dev/xvda")
                    .ebs(
                        asg::Ebs::builder()
                            .volume_size(20)
                            .volume_type("gp3")
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            .instance_monitoring(asg::InstanceMonitoring::builder().enabled(true).build())
            .metadata_options(
                asg::InstanceMetadataOptions::builder()
                    .http_tokens(asg::InstanceMetadataHttpTokensState::Required)
                    .http_endpoint(asg::InstanceMetadataEndpointState::Enabled)
                    .http_put_response_hop_limit(2)
                    .build(),
            )
            .send()
            .await
            .or_panic("CreateLaunchConfiguration");
    }

    fn template_data(&self, spec: &GroupSpec, user_data: &str) -> ec2t::RequestLaunchTemplateData {
        // A template with network interfaces carries its security groups on them (EC2 refuses
        // both at once).
        let (groups, interfaces) = if spec.public_ip_interface {
            let primary =
                ec2t::LaunchTemplateInstanceNetworkInterfaceSpecificationRequest::builder()
                    .device_index(0)
                    .associate_public_ip_address(true)
                    .groups(&self.security_group_id)
                    .delete_on_termination(true)
                    .description("spotswap test primary interface")
                    .build();
            (None, Some(vec![primary]))
        } else {
            (Some(vec![self.security_group_id.clone()]), None)
        };
        ec2t::RequestLaunchTemplateData::builder()
            .image_id(spec.image_id.as_deref().unwrap_or(&self.linux_ami))
            .instance_type(ec2t::InstanceType::from(spec.instance_type.as_str()))
            .key_name(&self.key_name)
            .set_security_group_ids(groups)
            .set_network_interfaces(interfaces)
            .iam_instance_profile(
                ec2t::LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                    .name(&self.instance_profile_name)
                    .build(),
            )
            .user_data(BASE64.encode(user_data))
            .block_device_mappings(
                ec2t::LaunchTemplateBlockDeviceMappingRequest::builder()
                    .device_name("/dev/xvda")
                    .ebs(
                        ec2t::LaunchTemplateEbsBlockDeviceRequest::builder()
                            .volume_size(20)
                            .volume_type(ec2t::VolumeType::Gp3)
                            .delete_on_termination(true)
                            .build(),
                    )
                    .build(),
            )
            .monitoring(
                ec2t::LaunchTemplatesMonitoringRequest::builder()
                    .enabled(true)
                    .build(),
            )
            .metadata_options(
                ec2t::LaunchTemplateInstanceMetadataOptionsRequest::builder()
                    .http_tokens(ec2t::LaunchTemplateHttpTokensState::Required)
                    .http_endpoint(ec2t::LaunchTemplateInstanceMetadataEndpointState::Enabled)
                    .http_put_response_hop_limit(2)
                    .build(),
            )
            .build()
    }

    /// Creates the template (version 1 with placeholder user data, version 2 with the spec's)
    /// and returns its id.
    async fn create_launch_template(&self, spec: &GroupSpec, user_data: &str) -> String {
        let id = self
            .ec2
            .create_launch_template()
            .launch_template_name(spec.lt_name())
            .launch_template_data(self.template_data(spec, "#!/bin/sh\n# v1\n"))
            .send()
            .await
            .or_panic("CreateLaunchTemplate")
            .launch_template()
            .and_then(|t| t.launch_template_id())
            .expect("a launch template id")
            .to_string();
        let version = self
            .ec2
            .create_launch_template_version()
            .launch_template_id(&id)
            .source_version("1")
            .launch_template_data(self.template_data(spec, user_data))
            .send()
            .await
            .or_panic("CreateLaunchTemplateVersion")
            .launch_template_version()
            .and_then(|v| v.version_number())
            .expect("a version number");
        assert_eq!(version, 2, "the second version of {}", spec.lt_name());
        id
    }

    fn mixed_policy(&self, spec: &GroupSpec) -> asg::MixedInstancesPolicy {
        let mut overrides = vec![spec.instance_type.clone()];
        if spec.instance_type != "m5a.large" {
            overrides.push("m5a.large".into());
        }
        asg::MixedInstancesPolicy::builder()
            .launch_template(
                asg::LaunchTemplate::builder()
                    .launch_template_specification(
                        asg::LaunchTemplateSpecification::builder()
                            .launch_template_name(spec.lt_name())
                            .version("$Latest")
                            .build(),
                    )
                    .set_overrides(Some(
                        overrides
                            .iter()
                            .map(|t| {
                                asg::LaunchTemplateOverrides::builder()
                                    .instance_type(t)
                                    .build()
                            })
                            .collect(),
                    ))
                    .build(),
            )
            .instances_distribution(
                asg::InstancesDistribution::builder()
                    .on_demand_base_capacity(0)
                    .on_demand_percentage_above_base_capacity(100)
                    .build(),
            )
            .build()
    }

    /// Creates the group and its launch configuration or template, scales it to the desired
    /// capacity spread over the three subnets, and returns the ids of its instances once they
    /// are all `InService`.
    pub async fn create_group(&self, spec: &GroupSpec) -> Vec<String> {
        assert!(
            0 <= spec.min && spec.min <= spec.desired && spec.desired <= spec.max,
            "min <= desired <= max in {spec:?}"
        );
        assert!(
            !spec.mixed_instances || matches!(spec.launch, Launch::Template { .. }),
            "a mixed instances policy needs a launch template"
        );
        match &spec.launch {
            Launch::Configuration { user_data } => {
                self.create_launch_configuration(spec, user_data).await
            }
            Launch::Template { user_data } => {
                self.create_launch_template(spec, user_data).await;
            }
        }
        let tags: Vec<asg::Tag> = spec
            .tags
            .iter()
            .map(|(k, v, propagate)| {
                asg::Tag::builder()
                    .resource_id(&spec.name)
                    .resource_type("auto-scaling-group")
                    .key(k)
                    .value(v)
                    .propagate_at_launch(*propagate)
                    .build()
            })
            .collect();
        let mut create = self
            .autoscaling
            .create_auto_scaling_group()
            .auto_scaling_group_name(&spec.name)
            .min_size(0)
            .max_size(spec.max)
            .desired_capacity(0)
            .vpc_zone_identifier(self.subnet_ids.join(","))
            .health_check_type("EC2")
            .health_check_grace_period(spec.grace_secs)
            .set_tags(Some(tags));
        create = match (&spec.launch, spec.mixed_instances) {
            (_, true) => create.mixed_instances_policy(self.mixed_policy(spec)),
            (Launch::Configuration { .. }, false) => {
                create.launch_configuration_name(spec.lc_name())
            }
            (Launch::Template { .. }, false) => create.launch_template(
                asg::LaunchTemplateSpecification::builder()
                    .launch_template_name(spec.lt_name())
                    .version("$Latest")
                    .build(),
            ),
        };
        create.send().await.or_panic("CreateAutoScalingGroup");

        // One instance at a time, each time with another subnet first (see the module doc).
        let n = self.subnet_ids.len();
        for i in 0..spec.desired {
            let mut rotated = self.subnet_ids.clone();
            rotated.rotate_left(i as usize % n);
            self.update_group(spec)
                .vpc_zone_identifier(rotated.join(","))
                .desired_capacity(i + 1)
                .send()
                .await
                .or_panic("UpdateAutoScalingGroup (scaling up)");
        }
        // moto stores a grace period of 0 given at creation as 300; an update stores it as is.
        self.update_group(spec)
            .vpc_zone_identifier(self.subnet_ids.join(","))
            .min_size(spec.min)
            .max_size(spec.max)
            .desired_capacity(spec.desired)
            .health_check_grace_period(spec.grace_secs)
            .send()
            .await
            .or_panic("UpdateAutoScalingGroup (final)");

        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let instances = self.instances_of(&spec.name).await;
            let in_service: Vec<String> = instances
                .iter()
                .filter(|i| i.lifecycle_state() == Some(&asg::LifecycleState::InService))
                .filter_map(|i| i.instance_id().map(str::to_string))
                .collect();
            if in_service.len() == spec.desired as usize {
                return in_service;
            }
            assert!(
                Instant::now() < deadline,
                "group {} has {} of {} instances in service: {instances:?}",
                spec.name,
                in_service.len(),
                spec.desired
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An UpdateAutoScalingGroup call that keeps the group's mixed instances policy (moto drops
    /// the policy of a group updated without one).
    fn update_group(
        &self,
        spec: &GroupSpec,
    ) -> aws_sdk_autoscaling::operation::update_auto_scaling_group::builders::UpdateAutoScalingGroupFluentBuilder
    {
        let update = self
            .autoscaling
            .update_auto_scaling_group()
            .auto_scaling_group_name(&spec.name);
        if spec.mixed_instances {
            update.mixed_instances_policy(self.mixed_policy(spec))
        } else {
            update
        }
    }

    /// The group, or `None` if there is none of that name.
    pub async fn try_group(&self, name: &str) -> Option<asg::AutoScalingGroup> {
        self.autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .or_panic("DescribeAutoScalingGroups")
            .auto_scaling_groups()
            .first()
            .cloned()
    }

    /// The group (panics if it does not exist).
    pub async fn group(&self, name: &str) -> asg::AutoScalingGroup {
        self.try_group(name)
            .await
            .unwrap_or_else(|| panic!("no Auto Scaling group {name}"))
    }

    /// The group's instances as the group reports them.
    pub async fn instances_of(&self, name: &str) -> Vec<asg::Instance> {
        self.group(name).await.instances().to_vec()
    }

    /// The ids of the group's instances.
    pub async fn instance_ids_of(&self, name: &str) -> Vec<String> {
        self.instances_of(name)
            .await
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect()
    }

    /// One instance as EC2 reports it (panics if unknown).
    pub async fn instance(&self, id: &str) -> ec2t::Instance {
        self.ec2
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
            .or_panic("DescribeInstances")
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id))
            .cloned()
            .unwrap_or_else(|| panic!("no instance {id}"))
    }

    /// The instance's user data, decoded (DescribeInstanceAttribute userData).
    pub async fn user_data(&self, id: &str) -> Option<String> {
        let out = self
            .ec2
            .describe_instance_attribute()
            .instance_id(id)
            .attribute(ec2t::InstanceAttributeName::UserData)
            .send()
            .await
            .or_panic("DescribeInstanceAttribute userData");
        let encoded = out.user_data().and_then(|v| v.value())?;
        let bytes = BASE64
            .decode(encoded)
            .unwrap_or_else(|e| panic!("user data of {id} is not base64 ({e}): {encoded}"));
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The instance's tags.
    pub async fn tags_of(&self, id: &str) -> BTreeMap<String, String> {
        self.instance(id)
            .await
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }

    /// Every instance in the region, in every state.
    pub async fn all_instances(&self) -> Vec<ec2t::Instance> {
        let mut out = Vec::new();
        let mut pages = self.ec2.describe_instances().into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.or_panic("DescribeInstances");
            out.extend(
                page.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .cloned(),
            );
        }
        out
    }

    /// The instance ids in the `running` state.
    pub async fn running_instance_ids(&self) -> Vec<String> {
        self.all_instances()
            .await
            .iter()
            .filter(|i| i.state().and_then(|s| s.name()) == Some(&ec2t::InstanceStateName::Running))
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect()
    }

    /// In-service members of a group, with whether each runs on spot.
    pub async fn in_service_members(&self, group: &str) -> BTreeMap<String, bool> {
        let mut out = BTreeMap::new();
        for m in self.instances_of(group).await {
            if m.lifecycle_state().map(|s| s.as_str()) != Some("InService") {
                continue;
            }
            let id = m.instance_id().unwrap().to_string();
            let i = self.instance(&id).await;
            out.insert(
                id,
                i.instance_lifecycle().map(|l| l.as_str()) == Some("spot"),
            );
        }
        out
    }

    /// Everything an operator could see change: groups (sizes, tags, members) and instances.
    pub async fn state(&self) -> String {
        let groups = self
            .autoscaling
            .describe_auto_scaling_groups()
            .send()
            .await
            .unwrap();
        let mut text = String::new();
        for g in groups.auto_scaling_groups() {
            let mut tags: Vec<String> = g
                .tags()
                .iter()
                .map(|t| format!("{}={}", t.key().unwrap_or(""), t.value().unwrap_or("")))
                .collect();
            tags.sort();
            let mut members: Vec<String> = g
                .instances()
                .iter()
                .map(|i| {
                    format!(
                        "{}:{:?}",
                        i.instance_id().unwrap_or(""),
                        i.lifecycle_state()
                    )
                })
                .collect();
            members.sort();
            text.push_str(&format!(
                "{} {:?}/{:?}/{:?} {tags:?} {members:?}\n",
                g.auto_scaling_group_name().unwrap_or(""),
                g.min_size(),
                g.desired_capacity(),
                g.max_size()
            ));
        }
        let mut instances: Vec<String> = self
            .all_instances()
            .await
            .iter()
            .map(|i| {
                format!(
                    "{} {:?} {:?}",
                    i.instance_id().unwrap_or(""),
                    i.state().and_then(|s| s.name()),
                    i.instance_lifecycle()
                )
            })
            .collect();
        instances.sort();
        text.push_str(&instances.join("\n"));
        text
    }
}
