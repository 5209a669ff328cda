//! Compatibility: can a spot instance of type C stand in for an instance of type T running a
//! given AMI? (README, "Which types, and why".)
//!
//! The answer is a list of small checks run in a fixed order; the first that fails gives the
//! reason, as a stable word users can rely on (`architecture`, `memory`, ...). Price and
//! availability-zone checks belong to the planner, which has the prices; this module judges
//! hardware, AMI, the launch spec's settings and lists only. Pure: no I/O, no clock, no logging.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{
    AcceleratorKind, Ami, Architecture, BootMode, DiskType, EbsOptimizedSupport, EnaSupport,
    InstanceTypeSpec, LaunchSpec, Virtualization,
};
use crate::settings::TypeList;

/// Why a candidate type was rejected. The first nineteen are the compatibility checks, in the
/// order they run; the rest are the planner's price and placement checks, which run after them.
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
    strum::EnumIter,
)]
#[serde(rename_all = "kebab-case")]
#[strum(serialize_all = "kebab-case")]
pub enum Reason {
    Architecture,
    Virtualization,
    BootMode,
    Ena,
    Vcpus,
    Memory,
    Gpu,
    Accelerator,
    InstanceStore,
    Burstable,
    /// The launch spec sets CPU credits (`CreditSpecification`), which only burstable types
    /// accept.
    CpuCredits,
    /// The launch spec configures hibernation, which the type does not support.
    Hibernation,
    /// The launch spec asks for EBS optimization, which the type does not support.
    EbsOptimized,
    /// The launch spec enables Nitro Enclaves, which the type does not support.
    NitroEnclaves,
    /// The launch spec sets a core count or threads per core the type does not offer.
    CpuOptions,
    BareMetal,
    NotAllowed,
    Disallowed,
    NoSpot,
    /// Not offered in the instance's availability zone.
    NotOffered,
    /// The pool (type and AZ) interrupted this group within the cool-down.
    RecentlyInterrupted,
    /// The pool had no capacity for one of this group's clones within the cool-down.
    RecentlyNoCapacity,
    /// No spot price is known for the type in that AZ over the price window.
    NoSpotPrice,
    /// The spot price is above the on-demand price times the multiplier.
    TooExpensive,
}

impl Reason {
    /// The stable word for this reason, as the plan's JSON names it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the AMI needs from an instance type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AmiNeeds {
    pub architecture: Architecture,
    pub virtualization: Virtualization,
    /// `None`: any boot mode the type supports will do.
    pub boot_mode: Option<BootMode>,
    /// Whether the AMI has the ENA driver.
    pub ena: bool,
}

impl AmiNeeds {
    /// What an AMI running on `base` needs, when nothing is known of the AMI: what the base
    /// type implies.
    pub fn implied_by(base: &InstanceTypeSpec) -> AmiNeeds {
        AmiNeeds {
            architecture: primary_architecture(base),
            virtualization: primary_virtualization(base),
            boot_mode: match base.boot_modes.as_slice() {
                [only] => Some(*only),
                _ => None,
            },
            ena: base.ena != EnaSupport::Unsupported,
        }
    }

    /// What `ami` needs, corrected by what its running on `base` proves: an AMI that runs on T
    /// works on T. So an AMI on an ENA-required type has ENA, an AMI with no declared
    /// architecture has T's, and a declared boot mode T cannot use is not the one in force
    /// (real AWS is consistent; emulators and old AMIs are not).
    pub fn from_ami(ami: &Ami, base: &InstanceTypeSpec) -> AmiNeeds {
        let implied = AmiNeeds::implied_by(base);
        let architecture = match ami.architecture {
            Some(a) if base.architectures.contains(&a) => a,
            _ => implied.architecture,
        };
        let virtualization = match ami.virtualization {
            Some(v) if base.virtualization_types.contains(&v) => v,
            _ => implied.virtualization,
        };
        let boot_mode = match ami.boot_mode {
            // uefi-preferred boots on anything: UEFI where supported, legacy BIOS elsewhere.
            Some(BootMode::UefiPreferred) => None,
            Some(b) if base.boot_modes.contains(&b) => Some(b),
            Some(_) => implied.boot_mode,
            // Without a declared mode an AMI boots in each type's default mode
            // (EC2 User Guide, "Boot modes"): no constraint.
            None => None,
        };
        let ena = match ami.ena_support {
            Some(true) => true,
            Some(false) => base.ena == EnaSupport::Required,
            None => implied.ena,
        };
        AmiNeeds {
            architecture,
            virtualization,
            boot_mode,
            ena,
        }
    }
}

fn primary_architecture(t: &InstanceTypeSpec) -> Architecture {
    // i386 types also run x86_64; prefer the 64-bit one an AMI would use today.
    for a in [Architecture::X86_64, Architecture::Arm64] {
        if t.architectures.contains(&a) {
            return a;
        }
    }
    t.architectures
        .first()
        .copied()
        .unwrap_or(Architecture::X86_64)
}

fn primary_virtualization(t: &InstanceTypeSpec) -> Virtualization {
    if t.virtualization_types.is_empty() || t.virtualization_types.contains(&Virtualization::Hvm) {
        Virtualization::Hvm
    } else {
        Virtualization::Paravirtual
    }
}

/// What the launch spec needs from an instance type: the settings EC2 accepts only on some
/// types. A clone is launched with the group's own spec (a template version by reference), so
/// a candidate that refuses one of them can never launch the clone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LaunchNeeds {
    /// A credit specification (`CreditSpecification`): burstable types only.
    pub burstable_only: bool,
    /// `HibernationOptions.Configured`.
    pub hibernation: bool,
    /// `EbsOptimized`.
    pub ebs_optimized: bool,
    /// `EnclaveOptions.Enabled`.
    pub nitro_enclaves: bool,
    /// `CpuOptions.CoreCount`.
    pub core_count: Option<u32>,
    /// `CpuOptions.ThreadsPerCore`.
    pub threads_per_core: Option<u32>,
}

impl LaunchNeeds {
    /// What `spec` needs.
    pub fn of(spec: &LaunchSpec) -> LaunchNeeds {
        LaunchNeeds {
            burstable_only: spec.cpu_credits.is_some(),
            hibernation: spec.hibernation,
            ebs_optimized: spec.ebs_optimized == Some(true),
            nitro_enclaves: spec.nitro_enclaves,
            core_count: spec.cpu_options.and_then(|c| c.core_count),
            threads_per_core: spec.cpu_options.and_then(|c| c.threads_per_core),
        }
    }
}

/// One compatibility check: true when the candidate passes.
type Check<'r> = fn(&Requirements<'r>, &InstanceTypeSpec) -> bool;

/// Everything a candidate is judged against: the replaced instance's type and AMI, the launch
/// spec's ephemeral mappings and settings, and the group's type lists.
#[derive(Debug, Clone)]
pub struct Requirements<'a> {
    pub base: &'a InstanceTypeSpec,
    pub ami: AmiNeeds,
    /// Instance-store volumes the launch spec or AMI maps explicitly.
    pub ephemeral_mappings: u32,
    pub allowed: &'a TypeList,
    pub disallowed: &'a TypeList,
    pub allow_burstable: bool,
    /// What the launch spec needs from a type (a credit specification, hibernation, ...).
    pub launch: LaunchNeeds,
}

impl Requirements<'_> {
    /// Instance-store disks a candidate must have. On Nitro, NVMe instance store is attached
    /// without any mapping, so software may use all of T's disks; otherwise only the mapped
    /// ones (capped at what T has) are in use.
    pub fn required_disks(&self) -> u32 {
        match &self.base.instance_storage {
            Some(s) if s.nvme => s.disk_count(),
            Some(s) => self.ephemeral_mappings.min(s.disk_count()),
            None => 0,
        }
    }

    /// Runs every check on `c` in order and returns the first failure.
    pub fn check(&self, c: &InstanceTypeSpec) -> Result<(), Reason> {
        let checks: [(Check<'_>, Reason); 19] = [
            (Self::architecture_ok, Reason::Architecture),
            (Self::virtualization_ok, Reason::Virtualization),
            (Self::boot_mode_ok, Reason::BootMode),
            (Self::ena_ok, Reason::Ena),
            (|r, c| c.vcpus >= r.base.vcpus, Reason::Vcpus),
            (|r, c| c.memory_mib >= r.base.memory_mib, Reason::Memory),
            (Self::gpu_ok, Reason::Gpu),
            (Self::accelerator_ok, Reason::Accelerator),
            (Self::instance_store_ok, Reason::InstanceStore),
            (Self::burstable_ok, Reason::Burstable),
            (
                |r, c| c.burstable || !r.launch.burstable_only,
                Reason::CpuCredits,
            ),
            (Self::hibernation_ok, Reason::Hibernation),
            (Self::ebs_optimized_ok, Reason::EbsOptimized),
            (Self::nitro_enclaves_ok, Reason::NitroEnclaves),
            (Self::cpu_options_ok, Reason::CpuOptions),
            (Self::bare_metal_ok, Reason::BareMetal),
            (Self::allowed_ok, Reason::NotAllowed),
            (Self::not_disallowed, Reason::Disallowed),
            (|_, c| c.spot_supported, Reason::NoSpot),
        ];
        for (ok, reason) in checks {
            if !ok(self, c) {
                return Err(reason);
            }
        }
        Ok(())
    }

    /// The AMI's architecture must be one the candidate runs: judged from the AMI, never from
    /// a processor name.
    fn architecture_ok(&self, c: &InstanceTypeSpec) -> bool {
        c.architectures.contains(&self.ami.architecture)
    }

    /// An empty list in old data means HVM only.
    fn virtualization_ok(&self, c: &InstanceTypeSpec) -> bool {
        if c.virtualization_types.is_empty() {
            return self.ami.virtualization == Virtualization::Hvm;
        }
        c.virtualization_types.contains(&self.ami.virtualization)
    }

    /// A type that lists no boot modes is an old one that boots legacy BIOS.
    fn boot_mode_ok(&self, c: &InstanceTypeSpec) -> bool {
        match self.ami.boot_mode {
            None | Some(BootMode::UefiPreferred) => true,
            Some(b) if c.boot_modes.is_empty() => b == BootMode::LegacyBios,
            Some(b) => c.boot_modes.contains(&b),
        }
    }

    /// A type that requires ENA will not launch from an AMI without the driver.
    fn ena_ok(&self, c: &InstanceTypeSpec) -> bool {
        self.ami.ena || c.ena != EnaSupport::Required
    }

    /// At least as many GPUs, from each of T's makers, each with at least as much memory.
    fn gpu_ok(&self, c: &InstanceTypeSpec) -> bool {
        let base = &self.base.gpus;
        if base.is_empty() {
            return true;
        }
        if c.gpu_count() < self.base.gpu_count() {
            return false;
        }
        base.iter().all(|need| {
            let same_maker: Vec<_> = c
                .gpus
                .iter()
                .filter(|g| g.manufacturer.eq_ignore_ascii_case(&need.manufacturer))
                .collect();
            same_maker.iter().map(|g| g.count).sum::<u32>() >= need.count
                && same_maker.iter().all(|g| g.memory_mib >= need.memory_mib)
        })
    }

    /// The same idea as GPUs for inference accelerators, Neuron devices, FPGAs and media
    /// accelerators: per kind, as many devices from the same maker with as much memory.
    fn accelerator_ok(&self, c: &InstanceTypeSpec) -> bool {
        let kinds = [
            AcceleratorKind::Inference,
            AcceleratorKind::Neuron,
            AcceleratorKind::Fpga,
            AcceleratorKind::Media,
        ];
        kinds.into_iter().all(|kind| {
            let need: Vec<_> = self
                .base
                .accelerators
                .iter()
                .filter(|a| a.kind == kind)
                .collect();
            if need.is_empty() {
                return true;
            }
            let have: Vec<_> = c.accelerators.iter().filter(|a| a.kind == kind).collect();
            let need_count: u32 = need.iter().map(|a| a.count).sum();
            let have_count: u32 = have.iter().map(|a| a.count).sum();
            have_count >= need_count
                && need.iter().all(|n| {
                    have.iter().any(|h| {
                        h.manufacturer.eq_ignore_ascii_case(&n.manufacturer)
                            && h.memory_mib >= n.memory_mib
                    })
                })
        })
    }

    /// Bare metal both ways: a virtualized workload gains nothing from a whole host, and a
    /// workload on metal needs it (nested virtualization, hardware performance counters,
    /// licences bound to physical cores), so C is metal exactly when T is.
    fn bare_metal_ok(&self, c: &InstanceTypeSpec) -> bool {
        c.bare_metal == self.base.bare_metal
    }

    /// As many disks as are in use, each at least as large, and SSD where T's are SSD, counting
    /// only the disks C would actually get: NVMe instance store is attached automatically on
    /// Nitro, but non-NVMe instance-store volumes exist only where the launch spec (or the AMI)
    /// maps them (EC2 User Guide, "Add instance store volumes to an EC2 instance").
    fn instance_store_ok(&self, c: &InstanceTypeSpec) -> bool {
        let need = self.required_disks();
        if need == 0 {
            return true;
        }
        let base = self
            .base
            .instance_storage
            .as_ref()
            .expect("need > 0 implies storage");
        let Some(have) = &c.instance_storage else {
            return false;
        };
        let ssd_needed = base.all_ssd();
        let usable: Vec<_> = have
            .disks
            .iter()
            .filter(|d| !ssd_needed || d.disk_type == DiskType::Ssd)
            .filter(|d| d.size_gb >= base.smallest_disk_gb())
            .collect();
        let on_candidate: u32 = usable.iter().map(|d| d.count).sum();
        let delivered = if have.nvme {
            on_candidate
        } else {
            on_candidate.min(self.ephemeral_mappings)
        };
        delivered >= need
    }

    /// Burstable types earn and spend CPU credits: a fixed-performance workload would be
    /// throttled on them, so they stand in only for burstable types unless allowed.
    fn burstable_ok(&self, c: &InstanceTypeSpec) -> bool {
        !c.burstable || self.base.burstable || self.allow_burstable
    }

    /// RunInstances refuses hibernation on a type that does not support it (EC2 User Guide,
    /// "Prerequisites for EC2 instance hibernation": supported instance types). Unknown support
    /// is not a rejection: such a type's refusal falls through to the next candidate.
    fn hibernation_ok(&self, c: &InstanceTypeSpec) -> bool {
        !self.launch.hibernation || c.hibernation_supported != Some(false)
    }

    /// EBS optimization can be asked for only on types that support it; those where it is on by
    /// default take the request too, and the rest refuse it (EC2 User Guide, "Amazon
    /// EBS-optimized instance types"; RunInstances answers InvalidParameterCombination). Unknown
    /// support is not a rejection.
    fn ebs_optimized_ok(&self, c: &InstanceTypeSpec) -> bool {
        !self.launch.ebs_optimized
            || c.ebs_optimized_support != Some(EbsOptimizedSupport::Unsupported)
    }

    /// Nitro Enclaves run only on the types that list them as supported (AWS Nitro Enclaves
    /// User Guide, "Requirements"; `NitroEnclavesSupport`). Unknown support is not a rejection.
    fn nitro_enclaves_ok(&self, c: &InstanceTypeSpec) -> bool {
        !self.launch.nitro_enclaves || c.nitro_enclaves_supported != Some(false)
    }

    /// A core count and threads per core must be among the type's `ValidCores` and
    /// `ValidThreadsPerCore` (EC2 User Guide, "CPU options for Amazon EC2 instances"). Where a
    /// type lists none, DescribeInstanceTypes does not say, which cannot be told from missing
    /// data (bare metal lists none, yet its options cannot be changed either): not judged, and a
    /// refusal falls through to the next candidate.
    fn cpu_options_ok(&self, c: &InstanceTypeSpec) -> bool {
        let fits = |want: Option<u32>, valid: &[u32]| {
            want.is_none_or(|w| valid.is_empty() || valid.contains(&w))
        };
        fits(self.launch.core_count, &c.valid_cores)
            && fits(self.launch.threads_per_core, &c.valid_threads_per_core)
    }

    fn allowed_ok(&self, c: &InstanceTypeSpec) -> bool {
        self.allowed.is_empty()
            || self
                .allowed
                .matches(&c.instance_type, &self.base.instance_type)
    }

    /// Both lists apply: unlike AutoSpotting, an allowed list does not switch the other off.
    fn not_disallowed(&self, c: &InstanceTypeSpec) -> bool {
        !self
            .disallowed
            .matches(&c.instance_type, &self.base.instance_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn spec(name: &str) -> &'static InstanceTypeSpec {
        Catalog::bundled()
            .get(name)
            .unwrap_or_else(|| panic!("{name} is in the bundled catalog"))
    }

    /// Checks `candidate` against `base` with the AMI `base` implies, no lists, no mappings.
    fn judge(base: &str, ami: Option<AmiNeeds>, candidate: &str) -> Result<(), Reason> {
        let empty = TypeList::default();
        let base = spec(base);
        Requirements {
            base,
            ami: ami.unwrap_or_else(|| AmiNeeds::implied_by(base)),
            ephemeral_mappings: 0,
            allowed: &empty,
            disallowed: &empty,
            allow_burstable: false,
            launch: LaunchNeeds::default(),
        }
        .check(spec(candidate))
    }

    #[test]
    fn catalog_cases_from_the_issue_give_the_expected_verdicts() {
        let no_ena = AmiNeeds {
            ena: false,
            ..AmiNeeds::implied_by(spec("m4.large"))
        };
        // (base, AMI override, candidate, verdict)
        type Case = (
            &'static str,
            Option<AmiNeeds>,
            &'static str,
            Result<(), Reason>,
        );
        let cases: &[Case] = &[
            ("m5.large", None, "m5a.large", Ok(())),
            ("m5.large", None, "m6i.large", Ok(())),
            ("m5.large", None, "m5.large", Ok(())),
            ("m5.large", None, "c5.large", Err(Reason::Memory)),
            ("m5.large", None, "m6g.large", Err(Reason::Architecture)),
            ("m5.large", None, "t3.large", Err(Reason::Burstable)),
            ("c6gd.large", None, "c6gd.xlarge", Ok(())),
            ("c6gd.large", None, "c6g.large", Err(Reason::InstanceStore)),
            ("c6gd.large", None, "c5d.large", Err(Reason::Architecture)),
            ("g4dn.xlarge", None, "m5.xlarge", Err(Reason::Gpu)),
            ("m4.large", Some(no_ena), "m5.large", Err(Reason::Ena)),
            ("m4.large", Some(no_ena), "m4.xlarge", Ok(())),
            ("i3.large", None, "i3.xlarge", Ok(())),
            ("i3.large", None, "r5d.large", Err(Reason::InstanceStore)),
            ("m5.large", None, "m5.metal", Err(Reason::BareMetal)),
            ("m5.large", None, "m5.xlarge", Ok(())),
            // NVMe instance store comes without mappings; older types' disks only with them, and
            // the launch spec maps none here.
            ("m5d.large", None, "m5d.xlarge", Ok(())),
            ("m5d.large", None, "r5d.large", Ok(())),
            ("m5d.large", None, "r3.xlarge", Err(Reason::InstanceStore)),
            ("m5d.large", None, "c3.2xlarge", Err(Reason::InstanceStore)),
            ("m5d.large", None, "m3.2xlarge", Err(Reason::InstanceStore)),
            ("m5d.large", None, "i2.xlarge", Err(Reason::InstanceStore)),
            // A workload on metal stays on metal.
            ("m5.metal", None, "m5.24xlarge", Err(Reason::BareMetal)),
            ("m5.metal", None, "m5d.metal", Ok(())),
        ];
        for (base, ami, candidate, want) in cases {
            assert_eq!(
                judge(base, *ami, candidate),
                *want,
                "{candidate} for {base}"
            );
        }
    }

    #[test]
    fn every_type_compatible_with_g4dn_xlarge_has_a_16_gib_nvidia_gpu() {
        let base = spec("g4dn.xlarge");
        let mut found = 0;
        for c in Catalog::bundled().iter() {
            if judge("g4dn.xlarge", None, &c.instance_type).is_ok() {
                found += 1;
                assert!(
                    c.gpus
                        .iter()
                        .any(|g| g.manufacturer == "NVIDIA" && g.memory_mib >= 16 * 1024),
                    "{} has no 16 GiB NVIDIA GPU",
                    c.instance_type
                );
                assert!(c.gpu_count() >= base.gpu_count());
            }
        }
        assert!(found > 3, "only {found} types compatible with g4dn.xlarge");
    }

    #[test]
    fn an_inference_accelerator_needs_one_from_the_same_maker() {
        assert_eq!(judge("inf1.xlarge", None, "inf1.2xlarge"), Ok(()));
        assert_eq!(
            judge("inf1.xlarge", None, "c5.2xlarge"),
            Err(Reason::Accelerator)
        );
    }

    #[test]
    fn the_ami_is_corrected_by_what_the_running_type_proves() {
        let m5 = spec("m5.large");
        // What moto reports for every image: no ENA flag, UEFI, no architecture.
        let emulator_ami = Ami {
            image_id: "ami-1".into(),
            boot_mode: Some(BootMode::Uefi),
            ..Ami::default()
        };
        let needs = AmiNeeds::from_ami(&emulator_ami, m5);
        assert_eq!(needs.architecture, Architecture::X86_64);
        assert!(needs.ena, "m5 requires ENA, so the AMI has it");
        assert_eq!(needs.boot_mode, Some(BootMode::Uefi), "m5 supports UEFI");
        // Declared ENA false on an ENA-required type cannot be true.
        let liar = Ami {
            ena_support: Some(false),
            ..emulator_ami.clone()
        };
        assert!(AmiNeeds::from_ami(&liar, m5).ena);
        // A UEFI claim on a legacy-BIOS-only type is not the mode in force.
        let m4 = spec("m4.large");
        let on_m4 = AmiNeeds::from_ami(&emulator_ami, m4);
        assert_eq!(on_m4.boot_mode, Some(BootMode::LegacyBios));
        // An arm64 declaration on an x86 type is wrong.
        let arm = Ami {
            architecture: Some(Architecture::Arm64),
            ..Ami::default()
        };
        assert_eq!(
            AmiNeeds::from_ami(&arm, m5).architecture,
            Architecture::X86_64
        );
    }

    #[test]
    fn a_uefi_only_ami_rejects_legacy_bios_only_types() {
        let uefi = AmiNeeds {
            boot_mode: Some(BootMode::Uefi),
            ..AmiNeeds::implied_by(spec("m5.large"))
        };
        assert_eq!(
            judge("m5.large", Some(uefi), "m4.xlarge"),
            Err(Reason::BootMode)
        );
        assert_eq!(judge("m5.large", Some(uefi), "m6i.large"), Ok(()));
    }

    #[test]
    fn mapped_ephemeral_volumes_need_disks_on_non_nvme_types() {
        let empty = TypeList::default();
        let base = spec("m3.large"); // 1 x 32 GB SSD, not NVMe
        // A current AMI with the ENA driver, which m3 does not need but m5 does.
        let ami = AmiNeeds {
            ena: true,
            ..AmiNeeds::implied_by(base)
        };
        let req = |mappings| Requirements {
            base,
            ami,
            ephemeral_mappings: mappings,
            allowed: &empty,
            disallowed: &empty,
            allow_burstable: false,
            launch: LaunchNeeds::default(),
        };
        assert_eq!(req(0).required_disks(), 0);
        assert_eq!(req(1).required_disks(), 1);
        assert_eq!(req(4).required_disks(), 1, "capped at what the type has");
        assert_eq!(req(0).check(spec("m5.large")), Ok(()));
        assert_eq!(req(1).check(spec("m5.large")), Err(Reason::InstanceStore));
        assert_eq!(req(1).check(spec("m5d.large")), Ok(()));
        // A non-NVMe candidate gets only the mapped volumes: one mapping, one disk.
        assert_eq!(req(1).check(spec("m3.xlarge")), Ok(()));
        let nvme_base = spec("m5d.large"); // 1 x 75 GB NVMe SSD
        let req = |mappings| Requirements {
            base: nvme_base,
            ami: AmiNeeds::implied_by(nvme_base),
            ephemeral_mappings: mappings,
            allowed: &empty,
            disallowed: &empty,
            allow_burstable: false,
            launch: LaunchNeeds::default(),
        };
        assert_eq!(req(0).required_disks(), 1, "NVMe disks are all in use");
        assert_eq!(req(0).check(spec("r3.xlarge")), Err(Reason::InstanceStore));
        assert_eq!(
            req(1).check(spec("r3.xlarge")),
            Ok(()),
            "mapped, it gets its disk"
        );
    }

    #[test]
    fn allowed_and_disallowed_lists_both_apply() {
        let base = spec("m5.large");
        let allowed = TypeList(vec!["m*".into()]);
        let disallowed = TypeList(vec!["m5a.*".into()]);
        let r = Requirements {
            base,
            ami: AmiNeeds::implied_by(base),
            ephemeral_mappings: 0,
            allowed: &allowed,
            disallowed: &disallowed,
            allow_burstable: false,
            launch: LaunchNeeds::default(),
        };
        assert_eq!(r.check(spec("m6i.large")), Ok(()));
        assert_eq!(r.check(spec("m5a.large")), Err(Reason::Disallowed));
        assert_eq!(r.check(spec("r5.large")), Err(Reason::NotAllowed));
        let current = TypeList(vec!["current".into()]);
        let r = Requirements {
            allowed: &current,
            disallowed: &TypeList::default(),
            ..r
        };
        assert_eq!(r.check(spec("m5.large")), Ok(()));
        assert_eq!(r.check(spec("m6i.large")), Err(Reason::NotAllowed));
    }

    #[test]
    fn burstable_candidates_need_a_burstable_base_or_the_setting() {
        let base = spec("m5.large");
        let empty = TypeList::default();
        let mut r = Requirements {
            base,
            ami: AmiNeeds::implied_by(base),
            ephemeral_mappings: 0,
            allowed: &empty,
            disallowed: &empty,
            allow_burstable: false,
            launch: LaunchNeeds::default(),
        };
        assert_eq!(r.check(spec("t3.large")), Err(Reason::Burstable));
        r.allow_burstable = true;
        assert_eq!(r.check(spec("t3.large")), Ok(()));
        assert_eq!(judge("t3.large", None, "t3a.large"), Ok(()));
    }

    #[test]
    fn a_spec_with_cpu_credits_launches_only_burstable_types() {
        let empty = TypeList::default();
        let base = spec("t3.large");
        let r = |burstable_only| Requirements {
            base,
            ami: AmiNeeds::implied_by(base),
            ephemeral_mappings: 0,
            allowed: &empty,
            disallowed: &empty,
            allow_burstable: false,
            launch: LaunchNeeds {
                burstable_only,
                ..LaunchNeeds::default()
            },
        };
        // Without a credit specification, a fixed-performance type may stand in for a T type.
        assert_eq!(r(false).check(spec("m5.large")), Ok(()));
        assert_eq!(r(true).check(spec("m5.large")), Err(Reason::CpuCredits));
        assert_eq!(r(true).check(spec("t3a.large")), Ok(()));
        assert_eq!(r(true).check(spec("t3.xlarge")), Ok(()));
    }

    #[test]
    fn launch_settings_only_some_types_accept_reject_the_others() {
        use crate::model::CpuOptions;
        let spec_of = spec;
        let empty = TypeList::default();
        // A current AMI, with the ENA driver, so Xen and Nitro types can stand in for each other.
        let judge = |base: &str, spec: &LaunchSpec, candidate: &str| {
            let base = spec_of(base);
            Requirements {
                base,
                ami: AmiNeeds {
                    ena: true,
                    ..AmiNeeds::implied_by(base)
                },
                ephemeral_mappings: 0,
                allowed: &empty,
                disallowed: &empty,
                allow_burstable: false,
                launch: LaunchNeeds::of(spec),
            }
            .check(spec_of(candidate))
        };
        let plain = LaunchSpec::default();
        let hibernation = LaunchSpec {
            hibernation: true,
            ..LaunchSpec::default()
        };
        let ebs = LaunchSpec {
            ebs_optimized: Some(true),
            ..LaunchSpec::default()
        };
        let ebs_off = LaunchSpec {
            ebs_optimized: Some(false),
            ..LaunchSpec::default()
        };
        let enclaves = LaunchSpec {
            nitro_enclaves: true,
            ..LaunchSpec::default()
        };
        let cpu = |cores, threads| LaunchSpec {
            cpu_options: Some(CpuOptions {
                core_count: cores,
                threads_per_core: threads,
            }),
            ..LaunchSpec::default()
        };
        let two_cores_one_thread = cpu(Some(2), Some(1));
        let two_cores_two_threads = cpu(Some(2), Some(2));
        let six_cores = cpu(Some(6), None);
        let five_cores = cpu(Some(5), None);
        let one_thread = cpu(None, Some(1));
        // (spec, base, candidate, verdict), on the bundled catalog's facts.
        type Case<'a> = (&'a LaunchSpec, &'a str, &'a str, Result<(), Reason>);
        let cases: &[Case] = &[
            // Hibernation: m5 and m6i support it, m5n does not.
            (&hibernation, "m5.xlarge", "m6i.xlarge", Ok(())),
            (&hibernation, "m5.xlarge", "m5.2xlarge", Ok(())),
            (
                &hibernation,
                "m5.xlarge",
                "m5n.xlarge",
                Err(Reason::Hibernation),
            ),
            (&plain, "m5.xlarge", "m5n.xlarge", Ok(())),
            // EBS optimization: on by default for m5, can be asked for on c3.2xlarge, not at
            // all on c3.8xlarge.
            (&ebs, "c3.xlarge", "m5.xlarge", Ok(())),
            (&ebs, "c3.xlarge", "c3.2xlarge", Ok(())),
            (&ebs, "c3.xlarge", "c3.8xlarge", Err(Reason::EbsOptimized)),
            (&ebs_off, "c3.xlarge", "c3.8xlarge", Ok(())),
            (&plain, "c3.xlarge", "c3.8xlarge", Ok(())),
            // Nitro Enclaves: m5 and m6i have them, r3 (Xen) does not.
            (&enclaves, "m5.xlarge", "m6i.xlarge", Ok(())),
            (
                &enclaves,
                "m5.xlarge",
                "r3.xlarge",
                Err(Reason::NitroEnclaves),
            ),
            (&plain, "m5.xlarge", "r3.xlarge", Ok(())),
            // CPU options: m5.xlarge takes 2 cores (its only count) and 1 or 2 threads a core,
            // m5.2xlarge 2 or 4 cores, m5.4xlarge 2 to 8 by twos, m6a.4xlarge 1 to 8, m7a one
            // thread a core only.
            (&two_cores_one_thread, "m5.xlarge", "m5.2xlarge", Ok(())),
            (&two_cores_one_thread, "m5.xlarge", "m6i.xlarge", Ok(())),
            (&two_cores_one_thread, "m5.xlarge", "m7a.xlarge", Ok(())),
            (&two_cores_two_threads, "m5.xlarge", "m6a.xlarge", Ok(())),
            (
                &two_cores_two_threads,
                "m5.xlarge",
                "m7a.xlarge",
                Err(Reason::CpuOptions),
            ),
            (&one_thread, "m5.xlarge", "m7a.xlarge", Ok(())),
            (&six_cores, "m5.4xlarge", "m5.8xlarge", Ok(())),
            (&six_cores, "m5.4xlarge", "m6i.4xlarge", Ok(())),
            (&five_cores, "m6a.4xlarge", "m6a.4xlarge", Ok(())),
            (
                &five_cores,
                "m6a.4xlarge",
                "m5.4xlarge",
                Err(Reason::CpuOptions),
            ),
            (&plain, "m6a.4xlarge", "m5.4xlarge", Ok(())),
            // A type that lists no valid counts is not judged (bare metal lists none).
            (&six_cores, "m5.metal", "m5d.metal", Ok(())),
        ];
        for (spec, base, candidate, want) in cases {
            assert_eq!(
                judge(base, spec, candidate),
                *want,
                "{candidate} for {base} with {spec:?}"
            );
        }
        // Unknown support is never a rejection: the launch falls through instead. c3.large
        // refuses EBS optimization, Nitro Enclaves and 6 cores; with those facts unknown (and
        // hibernation's), it is not rejected.
        let known = spec_of("c3.large");
        let mut unknown = known.clone();
        unknown.ebs_optimized_support = None;
        unknown.hibernation_supported = None;
        unknown.nitro_enclaves_supported = None;
        unknown.valid_cores = vec![];
        unknown.valid_threads_per_core = vec![];
        for (spec, known_verdict) in [
            (&hibernation, Ok(())),
            (&ebs, Err(Reason::EbsOptimized)),
            (&enclaves, Err(Reason::NitroEnclaves)),
            (&six_cores, Err(Reason::CpuOptions)),
        ] {
            let r = Requirements {
                base: known,
                ami: AmiNeeds::implied_by(known),
                ephemeral_mappings: 0,
                allowed: &empty,
                disallowed: &empty,
                allow_burstable: false,
                launch: LaunchNeeds::of(spec),
            };
            assert_eq!(r.check(known), known_verdict, "{spec:?}");
            assert_eq!(r.check(&unknown), Ok(()), "{spec:?}");
        }
    }

    #[test]
    fn reasons_have_their_stable_words() {
        let words: Vec<String> = [
            Reason::Architecture,
            Reason::Virtualization,
            Reason::BootMode,
            Reason::Ena,
            Reason::Vcpus,
            Reason::Memory,
            Reason::Gpu,
            Reason::Accelerator,
            Reason::InstanceStore,
            Reason::Burstable,
            Reason::CpuCredits,
            Reason::Hibernation,
            Reason::EbsOptimized,
            Reason::NitroEnclaves,
            Reason::CpuOptions,
            Reason::BareMetal,
            Reason::NotAllowed,
            Reason::Disallowed,
            Reason::NoSpot,
        ]
        .iter()
        .map(|r| {
            serde_json::to_value(r)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
        assert_eq!(
            words,
            [
                "architecture",
                "virtualization",
                "boot-mode",
                "ena",
                "vcpus",
                "memory",
                "gpu",
                "accelerator",
                "instance-store",
                "burstable",
                "cpu-credits",
                "hibernation",
                "ebs-optimized",
                "nitro-enclaves",
                "cpu-options",
                "bare-metal",
                "not-allowed",
                "disallowed",
                "no-spot"
            ]
        );
        for w in &words {
            let r: Reason = serde_json::from_value(serde_json::Value::String(w.clone())).unwrap();
            assert_eq!(r.as_str(), w);
        }
        // Every reason, the planner's included: one word, the same in JSON and in text.
        use strum::IntoEnumIterator as _;
        for r in Reason::iter() {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str(), "{r:?}");
        }
    }
}
