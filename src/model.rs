//! The domain model: what spotswap knows about an account, in its own plain types.
//!
//! These types describe Auto Scaling groups, instances, launch specs, AMIs, instance types and
//! prices as data that serialises to and from JSON, so a region's snapshot can be saved, loaded
//! and fed to the planner in tests. This module must not use AWS SDK types, do I/O or hold
//! behaviour beyond small derived facts; converting from the SDK is the cloud adapter's job.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A CPU architecture as EC2 names it (`DescribeInstanceTypes` and `DescribeImages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Architecture {
    #[serde(rename = "i386")]
    I386,
    #[serde(rename = "x86_64")]
    X86_64,
    #[serde(rename = "arm64")]
    Arm64,
    #[serde(rename = "x86_64_mac")]
    X86_64Mac,
    #[serde(rename = "arm64_mac")]
    Arm64Mac,
}

/// The virtualization type of an AMI or supported by an instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Virtualization {
    Hvm,
    Paravirtual,
}

/// A boot mode. `UefiPreferred` exists only on AMIs: it boots UEFI where the type supports it
/// and legacy BIOS otherwise (EC2 User Guide, "Boot modes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BootMode {
    LegacyBios,
    Uefi,
    UefiPreferred,
}

/// How an instance type relates to the Elastic Network Adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnaSupport {
    Unsupported,
    Supported,
    Required,
}

/// Instance-store disk media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskType {
    Ssd,
    Hdd,
}

/// Whether an instance type takes EBS optimization (`EbsInfo.EbsOptimizedSupport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EbsOptimizedSupport {
    /// EBS optimization cannot be turned on.
    Unsupported,
    /// It can be turned on, at launch.
    Supported,
    /// It is always on.
    Default,
}

/// One kind of GPU on an instance type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GpuSpec {
    pub manufacturer: String,
    pub name: String,
    pub count: u32,
    /// Memory of one GPU.
    pub memory_mib: u64,
}

/// Which family of non-GPU accelerator a device belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AcceleratorKind {
    /// `InferenceAcceleratorInfo` (Inferentia, Qualcomm AI 100).
    Inference,
    /// `NeuronInfo` (Inferentia2, Trainium).
    Neuron,
    /// `FpgaInfo`.
    Fpga,
    /// `MediaAcceleratorInfo`.
    Media,
}

/// One kind of non-GPU accelerator on an instance type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcceleratorSpec {
    pub kind: AcceleratorKind,
    pub manufacturer: String,
    pub name: String,
    pub count: u32,
    /// Memory of one device, where EC2 states it.
    #[serde(default)]
    pub memory_mib: u64,
}

/// A group of identical instance-store disks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskSpec {
    pub count: u32,
    pub size_gb: u64,
    #[serde(rename = "type")]
    pub disk_type: DiskType,
}

/// The instance store of an instance type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceStorage {
    pub disks: Vec<DiskSpec>,
    /// NVMe instance store is attached automatically, with no block device mapping
    /// (EC2 User Guide, "SSD instance store volumes").
    pub nvme: bool,
    pub total_gb: u64,
}

impl InstanceStorage {
    /// Number of disks of every kind.
    pub fn disk_count(&self) -> u32 {
        self.disks.iter().map(|d| d.count).sum()
    }

    /// Size of the smallest disk, in GB.
    pub fn smallest_disk_gb(&self) -> u64 {
        self.disks.iter().map(|d| d.size_gb).min().unwrap_or(0)
    }

    /// Whether every disk is an SSD.
    pub fn all_ssd(&self) -> bool {
        self.disks.iter().all(|d| d.disk_type == DiskType::Ssd)
    }
}

/// What spotswap needs to know of an instance type, from `DescribeInstanceTypes`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InstanceTypeSpec {
    pub instance_type: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub architectures: Vec<Architecture>,
    pub virtualization_types: Vec<Virtualization>,
    pub boot_modes: Vec<BootMode>,
    pub ena: EnaSupport,
    pub burstable: bool,
    pub bare_metal: bool,
    #[serde(default)]
    pub current_generation: bool,
    /// Whether `SupportedUsageClasses` includes `spot`.
    pub spot_supported: bool,
    #[serde(default)]
    pub gpus: Vec<GpuSpec>,
    #[serde(default)]
    pub accelerators: Vec<AcceleratorSpec>,
    #[serde(default)]
    pub instance_storage: Option<InstanceStorage>,
    #[serde(default)]
    pub ebs_baseline_mbps: Option<u64>,
    #[serde(default)]
    pub network_baseline_gbps: Option<f64>,
    /// `HibernationSupported`; `None` where the data does not say (older snapshots).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hibernation_supported: Option<bool>,
    /// `EbsInfo.EbsOptimizedSupport`; `None` where the data does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ebs_optimized_support: Option<EbsOptimizedSupport>,
    /// `NitroEnclavesSupport` is `supported`; `None` where the data does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nitro_enclaves_supported: Option<bool>,
    /// `VCpuInfo.ValidCores`: the core counts CPU options may set. Empty where not stated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub valid_cores: Vec<u32>,
    /// `VCpuInfo.ValidThreadsPerCore`: the threads per core CPU options may set. Empty where
    /// not stated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub valid_threads_per_core: Vec<u32>,
}

impl InstanceTypeSpec {
    /// Total GPUs of every kind.
    pub fn gpu_count(&self) -> u32 {
        self.gpus.iter().map(|g| g.count).sum()
    }
}

/// Whether an instance runs on-demand or on spot (`InstanceLifecycle` in `DescribeInstances`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Market {
    OnDemand,
    Spot,
}

/// How EC2 Fleet chooses among the spot pools a launch offers it (EC2 User Guide, "Allocation
/// strategies for Spot Instances"): `price-capacity-optimized` takes the pools with the most
/// spare capacity, then the cheapest of them; `capacity-optimized-prioritized` follows the
/// order (priorities) given, as far as capacity allows.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum AllocationStrategy {
    #[default]
    PriceCapacityOptimized,
    CapacityOptimizedPrioritized,
}

impl AllocationStrategy {
    /// The name EC2 and the settings use.
    pub fn name(self) -> &'static str {
        self.into()
    }
}

impl std::str::FromStr for AllocationStrategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "price-capacity-optimized" => Ok(AllocationStrategy::PriceCapacityOptimized),
            "capacity-optimized-prioritized" => {
                Ok(AllocationStrategy::CapacityOptimizedPrioritized)
            }
            _ => Err("expected price-capacity-optimized or capacity-optimized-prioritized".into()),
        }
    }
}

/// The EC2 state of an instance.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum InstanceState {
    Pending,
    Running,
    ShuttingDown,
    Terminated,
    Stopping,
    Stopped,
}

impl InstanceState {
    /// Whether the instance is gone or going: it can be neither swapped in nor cleaned up.
    pub fn is_gone(self) -> bool {
        matches!(
            self,
            InstanceState::ShuttingDown | InstanceState::Terminated
        )
    }
}

/// A string that may hold secrets (user data). It serialises as is, so a snapshot round-trips,
/// but its `Debug` never shows the content, so it cannot leak into a log line.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({} bytes, redacted)", self.0.len())
    }
}

/// Where a group or instance gets its launch parameters from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LaunchRef {
    LaunchConfiguration {
        name: String,
    },
    LaunchTemplate {
        id: String,
        #[serde(default)]
        name: Option<String>,
        /// As the group states it: a number, `$Latest` or `$Default`.
        version: String,
    },
}

impl LaunchRef {
    /// The key of this reference in [`Snapshot::launch_specs`].
    pub fn key(&self) -> String {
        match self {
            LaunchRef::LaunchConfiguration { name } => format!("lc:{name}"),
            LaunchRef::LaunchTemplate { id, version, .. } => format!("lt:{id}:{version}"),
        }
    }
}

impl fmt::Display for LaunchRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LaunchRef::LaunchConfiguration { name } => write!(f, "launch configuration {name}"),
            LaunchRef::LaunchTemplate { id, name, version } => match name {
                Some(n) => write!(f, "launch template {n} ({id}) version {version}"),
                None => write!(f, "launch template {id} version {version}"),
            },
        }
    }
}

/// An EBS volume in a block device mapping.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct EbsVolume {
    #[serde(default)]
    pub snapshot_id: Option<String>,
    #[serde(default)]
    pub volume_size_gib: Option<i32>,
    #[serde(default)]
    pub volume_type: Option<String>,
    #[serde(default)]
    pub iops: Option<i32>,
    #[serde(default)]
    pub throughput: Option<i32>,
    #[serde(default)]
    pub delete_on_termination: Option<bool>,
    #[serde(default)]
    pub encrypted: Option<bool>,
    #[serde(default)]
    pub kms_key_id: Option<String>,
}

/// One block device mapping of a launch spec or AMI.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct BlockDeviceMapping {
    pub device_name: String,
    /// `ephemeralN` for an instance-store volume.
    #[serde(default)]
    pub virtual_name: Option<String>,
    #[serde(default)]
    pub ebs: Option<EbsVolume>,
    #[serde(default)]
    pub no_device: bool,
}

impl BlockDeviceMapping {
    /// Whether this mapping asks for an instance-store volume.
    pub fn is_ephemeral(&self) -> bool {
        !self.no_device
            && self
                .virtual_name
                .as_deref()
                .is_some_and(|v| v.starts_with("ephemeral"))
    }
}

/// Instance metadata service options, kept so a clone keeps the IMDSv2 settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MetadataOptions {
    /// `required` (IMDSv2 only) or `optional`.
    #[serde(default)]
    pub http_tokens: Option<String>,
    #[serde(default)]
    pub http_put_response_hop_limit: Option<i32>,
    /// `enabled` or `disabled`.
    #[serde(default)]
    pub http_endpoint: Option<String>,
    #[serde(default)]
    pub http_protocol_ipv6: Option<String>,
    #[serde(default)]
    pub instance_metadata_tags: Option<String>,
}

/// The CPU options of a launch template (`CpuOptions`): fewer cores or one thread per core,
/// for licensing or performance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CpuOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub core_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads_per_core: Option<u32>,
}

/// One network interface of a launch template version
/// (`LaunchTemplateInstanceNetworkInterfaceSpecification`), with the fields RunInstances'
/// `InstanceNetworkInterfaceSpecification` takes back: a clone's launch restates every
/// interface of its template, with the replaced instance's subnet placed on it (README, "How
/// it decides").
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NetworkInterface {
    /// `DeviceIndex`: 0 is the primary interface (on network card 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_index: Option<i32>,
    /// `NetworkCardIndex`, for types with several network cards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_card_index: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub associate_public_ip_address: Option<bool>,
    /// `Groups`: the security groups of this interface.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub security_group_ids: Vec<String>,
    /// `InterfaceType`: `interface` (the default), `efa`, `efa-only` or `trunk`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_on_termination: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6_address_count: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_private_ip_address_count: Option<i32>,
    /// An existing interface the template attaches (`NetworkInterfaceId`). An interface can be
    /// attached to one instance only, and this one belongs to the instance already running, so
    /// such a template cannot be cloned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_interface_id: Option<String>,
}

impl NetworkInterface {
    /// Whether this is the instance's primary interface: device index 0 on network card 0
    /// (EC2 User Guide, "Network cards": the primary interface is device 0 of card 0).
    pub fn is_primary(&self) -> bool {
        self.device_index.unwrap_or(0) == 0 && self.network_card_index.unwrap_or(0) == 0
    }
}

/// Everything needed to launch an instance like the group would: the resolved content of a
/// launch configuration or of one launch template version.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// For launch templates, the version number `$Latest` or `$Default` resolved to.
    #[serde(default)]
    pub resolved_version: Option<i64>,
    pub image_id: String,
    #[serde(default)]
    pub instance_type: Option<String>,
    #[serde(default)]
    pub key_name: Option<String>,
    #[serde(default)]
    pub security_group_ids: Vec<String>,
    /// Instance profile name or ARN.
    #[serde(default)]
    pub iam_instance_profile: Option<String>,
    /// Base64 user data, byte for byte as the launch spec holds it. Never logged.
    #[serde(default)]
    pub user_data: Option<Secret>,
    #[serde(default)]
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    #[serde(default)]
    pub ebs_optimized: Option<bool>,
    #[serde(default)]
    pub monitoring: Option<bool>,
    #[serde(default)]
    pub metadata_options: Option<MetadataOptions>,
    #[serde(default)]
    pub associate_public_ip_address: Option<bool>,
    /// `CreditSpecification.CpuCredits` of a launch template (`standard` or `unlimited`).
    /// Only burstable types accept a credit specification: a launch of any other type from
    /// this template fails (EC2 User Guide, "Burstable performance instances").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_credits: Option<String>,
    /// The network interfaces of a launch template version, in the template's order (launch
    /// configurations have none: their public-IP choice is `associate_public_ip_address`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_interfaces: Vec<NetworkInterface>,
    /// `HibernationOptions.Configured` of a launch template: only types with
    /// `HibernationSupported` launch it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hibernation: bool,
    /// `EnclaveOptions.Enabled` of a launch template: only types with Nitro Enclaves support
    /// launch it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub nitro_enclaves: bool,
    /// `CpuOptions` of a launch template: only types whose valid core counts and threads per
    /// core include them launch it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_options: Option<CpuOptions>,
    /// `PlacementTenancy` of a launch configuration, `Placement.Tenancy` of a template:
    /// `default`, `dedicated` (single-tenant hardware) or `host` (a Dedicated Host). Unset is
    /// `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenancy: Option<String>,
}

/// Why a group's clones launch one `RunInstances` each rather than in a fleet: a stable word
/// of the plan (`launch-clone`'s `run_instances_because`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunInstancesBecause {
    /// The spec has network interfaces to restate with the clone's subnet (a template's own,
    /// or the one a launch configuration's public-IP choice needs), which a fleet's overrides
    /// cannot.
    NetworkInterfaces,
    /// The spec asks for dedicated tenancy, which `CreateFleet` does not take (EC2 API
    /// reference, Placement: `Tenancy` "is not supported for CreateFleet").
    DedicatedTenancy,
}

impl RunInstancesBecause {
    pub fn name(self) -> &'static str {
        match self {
            RunInstancesBecause::NetworkInterfaces => "network-interfaces",
            RunInstancesBecause::DedicatedTenancy => "dedicated-tenancy",
        }
    }
}

impl LaunchSpec {
    /// Why a clone of this spec launches by `RunInstances`, one clone a call, instead of in a
    /// fleet; `None` if a fleet carries everything it needs.
    pub fn run_instances_because(&self) -> Option<RunInstancesBecause> {
        if !self.network_interfaces.is_empty() || self.associate_public_ip_address.is_some() {
            Some(RunInstancesBecause::NetworkInterfaces)
        } else if self.tenancy.as_deref() == Some("dedicated") {
            Some(RunInstancesBecause::DedicatedTenancy)
        } else {
            None
        }
    }

    /// Instance-store volumes this spec maps explicitly.
    pub fn ephemeral_mappings(&self) -> u32 {
        count_ephemeral(&self.block_device_mappings)
    }
}

fn count_ephemeral(mappings: &[BlockDeviceMapping]) -> u32 {
    mappings.iter().filter(|m| m.is_ephemeral()).count() as u32
}

/// An AMI as `DescribeImages` describes it. Every property is optional: emulators and old AMIs
/// leave some unset, and compatibility corrects them with what the running type proves.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Ami {
    pub image_id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub architecture: Option<Architecture>,
    #[serde(default)]
    pub virtualization: Option<Virtualization>,
    #[serde(default)]
    pub boot_mode: Option<BootMode>,
    #[serde(default)]
    pub ena_support: Option<bool>,
    /// `PlatformDetails`, for example `Linux/UNIX`, `Windows`, `Red Hat Enterprise Linux`.
    #[serde(default)]
    pub platform_details: Option<String>,
    /// `Platform`: `windows` for Windows AMIs, absent otherwise.
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub block_device_mappings: Vec<BlockDeviceMapping>,
}

impl Ami {
    /// Instance-store volumes the AMI itself maps.
    pub fn ephemeral_mappings(&self) -> u32 {
        count_ephemeral(&self.block_device_mappings)
    }
}

/// The operating system a group runs, which decides which spot and on-demand prices apply
/// (Windows and RHEL groups are priced as what they are, see [`crate::pricing`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    Linux,
    Windows,
    Rhel,
    Suse,
}

impl Os {
    /// The OS an AMI runs, from `PlatformDetails` and `Platform`; Linux/UNIX when neither says.
    pub fn of_ami(ami: &Ami) -> Os {
        let details = ami
            .platform_details
            .as_deref()
            .unwrap_or("")
            .to_ascii_lowercase();
        if ami.platform.as_deref() == Some("windows") || details.starts_with("windows") {
            Os::Windows
        } else if details.starts_with("red hat") {
            Os::Rhel
        } else if details.starts_with("suse") {
            Os::Suse
        } else {
            Os::Linux
        }
    }

    /// The `DescribeSpotPriceHistory` product description for this OS in a VPC.
    pub fn spot_product_description(self) -> &'static str {
        match self {
            Os::Linux => "Linux/UNIX (Amazon VPC)",
            Os::Windows => "Windows (Amazon VPC)",
            Os::Rhel => "Red Hat Enterprise Linux (Amazon VPC)",
            Os::Suse => "SUSE Linux (Amazon VPC)",
        }
    }

    /// The OS a spot product description prices; `None` for a description EC2 does not use.
    pub fn from_product_description(text: &str) -> Option<Os> {
        let base = text.trim().trim_end_matches("(Amazon VPC)").trim();
        match base {
            "Linux/UNIX" => Some(Os::Linux),
            "Windows" => Some(Os::Windows),
            "Red Hat Enterprise Linux" => Some(Os::Rhel),
            "SUSE Linux" => Some(Os::Suse),
            _ => None,
        }
    }
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Os::Linux => "linux",
            Os::Windows => "windows",
            Os::Rhel => "rhel",
            Os::Suse => "suse",
        })
    }
}

/// An Auto Scaling group's view of one of its instances (`DescribeAutoScalingGroups`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub instance_id: String,
    /// `InService`, `Pending`, `Terminating`, `Standby`, ... as Auto Scaling names them.
    pub lifecycle_state: String,
    /// `Healthy` or `Unhealthy`.
    pub health_status: String,
    #[serde(default)]
    pub protected_from_scale_in: bool,
}

impl Member {
    /// In service and healthy: the only state in which an instance counts as capacity.
    pub fn is_in_service(&self) -> bool {
        self.lifecycle_state == "InService"
    }

    /// Whether Auto Scaling considers the instance healthy.
    pub fn is_healthy(&self) -> bool {
        self.health_status == "Healthy"
    }
}

/// An Auto Scaling group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub name: String,
    pub min_size: u32,
    pub max_size: u32,
    pub desired_capacity: u32,
    pub health_check_grace_period_secs: u32,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Tag keys whose `PropagateAtLaunch` is true.
    #[serde(default)]
    pub propagated_tag_keys: BTreeSet<String>,
    #[serde(default)]
    pub launch: Option<LaunchRef>,
    #[serde(default)]
    pub mixed_instances_policy: bool,
    #[serde(default)]
    pub warm_pool: bool,
    #[serde(default)]
    pub instance_refresh_in_progress: bool,
    /// Reads about this group alone that failed (its instance refreshes, say): the group is
    /// left alone, with the reason, and the others go on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub read_failures: Vec<ReadFailure>,
    #[serde(default)]
    pub suspended_processes: Vec<String>,
    #[serde(default)]
    pub members: Vec<Member>,
    /// The load balancers the group registers its members with: target groups (ARNs) and
    /// classic load balancers (names). A swap's instance leaves only once the clone is healthy
    /// in every one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_group_arns: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub load_balancer_names: Vec<String>,
    /// The group's `PlacementGroup`: every instance it launches goes in it, and so does every
    /// clone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement_group: Option<String>,
}

impl Group {
    /// Whether the group serves behind any load balancer.
    pub fn behind_load_balancers(&self) -> bool {
        !self.target_group_arns.is_empty() || !self.load_balancer_names.is_empty()
    }

    /// Every load balancer of the group, as the health reads name them.
    pub fn load_balancers(&self) -> Vec<LoadBalancer> {
        self.target_group_arns
            .iter()
            .map(|a| LoadBalancer::TargetGroup(a.clone()))
            .chain(
                self.load_balancer_names
                    .iter()
                    .map(|n| LoadBalancer::Classic(n.clone())),
            )
            .collect()
    }
}

/// A load balancer a group registers its members with.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", content = "name", rename_all = "kebab-case")]
pub enum LoadBalancer {
    /// An Application, Network or Gateway Load Balancer's target group, by ARN
    /// (`DescribeTargetHealth`).
    TargetGroup(String),
    /// A Classic Load Balancer, by name (`DescribeInstanceHealth`).
    Classic(String),
}

impl LoadBalancer {
    /// Its ARN or name.
    pub fn name(&self) -> &str {
        match self {
            LoadBalancer::TargetGroup(n) | LoadBalancer::Classic(n) => n,
        }
    }
}

/// How one load balancer sees one instance: `healthy` when it serves (a target group's
/// `healthy`, a classic load balancer's `InService`), otherwise the state it reports
/// (`initial`, `unhealthy`, `draining`, `unused`, `OutOfService`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetHealth {
    pub load_balancer: LoadBalancer,
    pub state: String,
}

impl TargetHealth {
    pub fn is_healthy(&self) -> bool {
        self.state == "healthy"
    }
}

impl Group {
    /// The member record of an instance, if it belongs to this group: a scan of the members,
    /// for one-off questions (the planner looks members up in an index of its own).
    pub fn member(&self, instance_id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.instance_id == instance_id)
    }
}

/// A read that failed: the operation, the AWS error code (absent for an answer that was not an
/// AWS error, such as an HTML error page) and a one-line message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadFailure {
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    pub message: String,
}

/// An EC2 instance (`DescribeInstances`): a group member or a spotswap clone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub instance_id: String,
    pub instance_type: String,
    pub availability_zone: String,
    #[serde(default)]
    pub subnet_id: Option<String>,
    pub market: Market,
    pub state: InstanceState,
    /// EC2's `StateReason` code, where it gives one: for a terminated instance,
    /// `Client.UserInitiatedShutdown` (a `TerminateInstances` call),
    /// `Server.SpotInstanceTermination`, `Client.InternalError` (a boot failure such as an
    /// unusable KMS key), and so on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_reason: Option<String>,
    pub launch_time: DateTime<Utc>,
    #[serde(default)]
    pub image_id: Option<String>,
    /// The group the instance belongs to, as EC2 sees it (the `aws:autoscaling:groupName` tag
    /// Auto Scaling sets on its members): tells an attached clone from an unattached one even
    /// when its group is not in the snapshot.
    #[serde(default)]
    pub auto_scaling_group: Option<String>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// Its placement group and tenancy, where either is not the default (boxed: most
    /// instances have neither, and a region may hold hundreds of thousands).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Box<InstancePlacement>>,
}

/// An instance's placement beyond its AZ: `Placement.GroupName` and `Placement.Tenancy`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InstancePlacement {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenancy: Option<String>,
}

impl InstancePlacement {
    /// The placement of a group name and a tenancy, `None` if both are the default.
    pub fn of(group_name: Option<&str>, tenancy: Option<&str>) -> Option<Box<Self>> {
        let group_name = group_name.filter(|g| !g.is_empty()).map(str::to_string);
        let tenancy = tenancy
            .filter(|t| !t.is_empty() && *t != "default")
            .map(str::to_string);
        (group_name.is_some() || tenancy.is_some()).then(|| {
            Box::new(InstancePlacement {
                group_name,
                tenancy,
            })
        })
    }
}

impl Instance {
    /// For a spotswap clone: the group and the instance it was launched to replace.
    /// (The tags are the swap protocol's: see [`crate::protocol::clone_of`].)
    pub fn clone_of(&self) -> Option<(&str, &str)> {
        crate::protocol::clone_of(self)
    }
}

/// One spot price observation (`DescribeSpotPriceHistory`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpotPricePoint {
    pub instance_type: String,
    pub availability_zone: String,
    pub product_description: String,
    pub price: f64,
    pub timestamp: DateTime<Utc>,
}

/// On-demand prices of one instance type, per OS, in USD per hour.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct OsPrices {
    #[serde(default)]
    pub linux: Option<f64>,
    #[serde(default)]
    pub windows: Option<f64>,
    #[serde(default)]
    pub rhel: Option<f64>,
    #[serde(default)]
    pub suse: Option<f64>,
}

impl OsPrices {
    /// The price for one OS, if known.
    pub fn get(&self, os: Os) -> Option<f64> {
        match os {
            Os::Linux => self.linux,
            Os::Windows => self.windows,
            Os::Rhel => self.rhel,
            Os::Suse => self.suse,
        }
    }

    /// Sets the price for one OS.
    pub fn set(&mut self, os: Os, price: Option<f64>) {
        let slot = match os {
            Os::Linux => &mut self.linux,
            Os::Windows => &mut self.windows,
            Os::Rhel => &mut self.rhel,
            Os::Suse => &mut self.suse,
        };
        *slot = price;
    }
}

/// Where on-demand prices came from, so every report can say how fresh they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum PriceSource {
    /// The AWS Pricing API, during this pass.
    Live,
    /// The table bundled in the binary, published on `date`.
    Bundled { region: String, date: String },
}

impl fmt::Display for PriceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PriceSource::Live => f.write_str("pricing API"),
            PriceSource::Bundled { region, date } => write!(f, "bundled {region} table of {date}"),
        }
    }
}

/// On-demand prices for a region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnDemandPrices {
    pub source: PriceSource,
    pub prices: BTreeMap<String, OsPrices>,
}

impl OnDemandPrices {
    /// The hourly on-demand price of a type for an OS; `None` when unknown (never zero).
    pub fn price(&self, instance_type: &str, os: Os) -> Option<f64> {
        self.prices
            .get(instance_type)
            .and_then(|p| p.get(os))
            .filter(|p| *p > 0.0)
    }
}

/// Everything the planner knows about one region at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub region: String,
    #[serde(default)]
    pub groups: Vec<Group>,
    /// Members of the groups and every spotswap clone, by id.
    #[serde(default)]
    pub instances: BTreeMap<String, Instance>,
    /// Launch specs by [`LaunchRef::key`].
    #[serde(default)]
    pub launch_specs: BTreeMap<String, LaunchSpec>,
    /// AMIs in use, by id.
    #[serde(default)]
    pub amis: BTreeMap<String, Ami>,
    /// Instance types by name: live data, or the bundled catalog as fallback.
    #[serde(default)]
    pub instance_types: BTreeMap<String, InstanceTypeSpec>,
    /// Instance types offered per availability zone. An AZ absent here is unknown: the spot
    /// price of a type in that AZ then stands for its offering.
    #[serde(default)]
    pub offerings: BTreeMap<String, BTreeSet<String>>,
    #[serde(default)]
    pub spot_prices: Vec<SpotPricePoint>,
    pub on_demand: OnDemandPrices,
    /// The launch templates spotswap created for launch configurations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owned_templates: Vec<OwnedTemplateRecord>,
    /// The recent scaling activities of the groups a stopped pass may have left a swap in
    /// (their lease ended without being released), by group; a group whose activities could
    /// not be read is absent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub activities: BTreeMap<String, Vec<Activity>>,
    /// What refused a launch when the preflight asked EC2 with `DryRun` in this region (one
    /// refusal for the region: IAM's answer does not depend on the group); none when launches
    /// are allowed or were not asked about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_refused: Option<PermissionRefusal>,
    /// How the load balancers of its group see each clone attached in a swap whose instance is
    /// still a member (read only for those), by instance id; a load balancer that did not
    /// answer for it is absent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub target_health: BTreeMap<String, Vec<TargetHealth>>,
}

/// An AWS request that IAM refused: the action, the resource it was refused on, and which
/// kind of statement refused it (an explicit deny, or no statement allowing it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PermissionRefusal {
    pub action: String,
    pub resource: String,
    pub denied_by: String,
}

/// What one of a group's scaling activities did to one instance, as far as the swap protocol
/// needs to know (`DescribeScalingActivities`; Auto Scaling keeps six weeks of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    pub instance_id: String,
    pub kind: ActivityKind,
    pub at: DateTime<Utc>,
}

/// The kinds of activity the swap protocol tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivityKind {
    /// The instance was attached (`AttachInstances`): desired capacity went up by one.
    Attached,
    /// The instance was taken out on request with desired capacity decremented
    /// (`TerminateInstanceInAutoScalingGroup` or `DetachInstances` with
    /// `ShouldDecrementDesiredCapacity`): what balances an attach.
    RemovedWithDecrement,
    /// The instance left any other way: a health check (terminated, interrupted), a scale-in,
    /// a removal on request without decrement (the group replaces it).
    Left,
}

/// A launch template spotswap created for a launch configuration, as `DescribeLaunchTemplates`
/// lists it (tagged `spotswap:launch-configuration`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OwnedTemplateRecord {
    pub id: String,
    pub name: String,
    pub launch_configuration: String,
    pub created: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_round_trips_through_json() {
        let scenario: serde_json::Value =
            serde_json::from_str(include_str!("../tests/golden/swap_at_max_size.json")).unwrap();
        let snapshot: Snapshot = serde_json::from_value(scenario["snapshot"].clone()).unwrap();
        assert!(!snapshot.groups.is_empty() && !snapshot.instances.is_empty());
        let text = serde_json::to_string(&snapshot).unwrap();
        let back: Snapshot = serde_json::from_str(&text).unwrap();
        assert_eq!(back, snapshot);
    }

    #[test]
    fn user_data_never_shows_in_debug_output() {
        let spec = LaunchSpec {
            image_id: "ami-1".into(),
            user_data: Some(Secret("c2VjcmV0LXBhc3N3b3Jk".into())),
            ..LaunchSpec::default()
        };
        let debug = format!("{spec:?}");
        assert!(!debug.contains("c2VjcmV0LXBhc3N3b3Jk"), "{debug}");
        assert!(debug.contains("redacted"));
        // It still serialises in full, so a snapshot keeps it byte for byte.
        let json = serde_json::to_string(&spec).unwrap();
        assert!(json.contains("c2VjcmV0LXBhc3N3b3Jk"));
    }

    #[test]
    fn the_os_comes_from_the_ami_platform() {
        let ami = |details: &str, platform: Option<&str>| Ami {
            image_id: "ami-1".into(),
            platform_details: Some(details.into()),
            platform: platform.map(str::to_string),
            ..Ami::default()
        };
        assert_eq!(Os::of_ami(&ami("Linux/UNIX", None)), Os::Linux);
        assert_eq!(Os::of_ami(&ami("Windows", Some("windows"))), Os::Windows);
        assert_eq!(
            Os::of_ami(&ami("Windows with SQL Server Standard", None)),
            Os::Windows
        );
        assert_eq!(Os::of_ami(&ami("Red Hat Enterprise Linux", None)), Os::Rhel);
        assert_eq!(Os::of_ami(&ami("SUSE Linux", None)), Os::Suse);
        assert_eq!(Os::of_ami(&Ami::default()), Os::Linux);
        for os in [Os::Linux, Os::Windows, Os::Rhel, Os::Suse] {
            assert_eq!(
                Os::from_product_description(os.spot_product_description()),
                Some(os)
            );
        }
    }
}
