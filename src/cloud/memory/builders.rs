//! Builders for the groups and instances tests seed, so a fixture states only what its test is
//! about: `GroupBuilder::new("web").desired(3).max(4).tag("spot-enabled", "true").build()`.
//!
//! They make plain [`Group`] and [`Instance`] values, for a [`MemoryCloud`](super::MemoryCloud)
//! (`put_group`, `put_instance`) or for a snapshot. A builder must not touch a cloud or read
//! the clock, and checks only what AWS refuses for any group (sizes out of order); whether a
//! value makes sense in an account is the cloud's to answer when it is used.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::state;
use crate::model::{Group, Instance, InstanceState, LaunchRef, Market, Member};
use crate::protocol as tags;

/// An Auto Scaling group under construction.
#[derive(Debug, Clone)]
#[must_use]
pub struct GroupBuilder {
    group: Group,
    /// MaxSize, if set; otherwise the desired capacity.
    max: Option<u32>,
}

impl GroupBuilder {
    /// A group named `name`: MinSize and desired capacity 0, MaxSize the desired capacity unless
    /// set, a 300 s health check grace period (the Auto Scaling console's default), no tags, no
    /// launch configuration or template, no members, and no mixed instances policy, warm pool,
    /// instance refresh or suspended process.
    pub fn new(name: &str) -> Self {
        GroupBuilder {
            group: Group {
                name: name.to_string(),
                min_size: 0,
                max_size: 0,
                desired_capacity: 0,
                health_check_grace_period_secs: 300,
                tags: BTreeMap::new(),
                propagated_tag_keys: BTreeSet::new(),
                launch: None,
                mixed_instances_policy: false,
                warm_pool: false,
                instance_refresh_in_progress: false,
                read_failures: Vec::new(),
                suspended_processes: Vec::new(),
                members: Vec::new(),
                target_group_arns: Vec::new(),
                load_balancer_names: Vec::new(),
                placement_group: None,
            },
            max: None,
        }
    }

    /// The group's placement group.
    pub fn placement_group(mut self, name: impl Into<String>) -> Self {
        self.group.placement_group = Some(name.into());
        self
    }

    /// A target group the group registers its members with (by ARN).
    pub fn target_group(mut self, arn: impl Into<String>) -> Self {
        self.group.target_group_arns.push(arn.into());
        self
    }

    /// A classic load balancer the group registers its members with (by name).
    pub fn classic_load_balancer(mut self, name: impl Into<String>) -> Self {
        self.group.load_balancer_names.push(name.into());
        self
    }

    /// MinSize.
    pub fn min(mut self, min_size: u32) -> Self {
        self.group.min_size = min_size;
        self
    }

    /// Desired capacity.
    pub fn desired(mut self, desired_capacity: u32) -> Self {
        self.group.desired_capacity = desired_capacity;
        self
    }

    /// MaxSize.
    pub fn max(mut self, max_size: u32) -> Self {
        self.max = Some(max_size);
        self
    }

    /// The health check grace period, in seconds.
    pub fn grace_period_secs(mut self, secs: u32) -> Self {
        self.group.health_check_grace_period_secs = secs;
        self
    }

    /// Sets a tag. Whether it propagates at launch is left as it was (not, for a new key).
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.group.tags.insert(key.into(), value.into());
        self
    }

    /// Sets tags, as [`GroupBuilder::tag`] does one by one.
    pub fn tags<K: Into<String>, V: Into<String>>(
        self,
        tags: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        tags.into_iter().fold(self, |b, (k, v)| b.tag(k, v))
    }

    /// Sets a tag that propagates at launch (`PropagateAtLaunch`): Auto Scaling copies it to
    /// the instances it launches.
    pub fn propagated_tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.group.propagated_tag_keys.insert(key.clone());
        self.group.tags.insert(key, value.into());
        self
    }

    /// The launch configuration or launch template version the group launches from.
    pub fn launch(mut self, launch: LaunchRef) -> Self {
        self.group.launch = Some(launch);
        self
    }

    /// The group has a mixed instances policy.
    pub fn mixed_instances_policy(mut self) -> Self {
        self.group.mixed_instances_policy = true;
        self
    }

    /// The group has a warm pool.
    pub fn warm_pool(mut self) -> Self {
        self.group.warm_pool = true;
        self
    }

    /// An instance refresh is in progress.
    pub fn instance_refresh_in_progress(mut self) -> Self {
        self.group.instance_refresh_in_progress = true;
        self
    }

    /// Suspends a scaling process (`Launch`, `Terminate`, ...).
    pub fn suspended(mut self, process: &str) -> Self {
        self.group.suspended_processes.push(process.to_string());
        self
    }

    /// Adds a member: in service, healthy, not protected from scale-in. Its instance is put
    /// separately (see [`InstanceBuilder::in_group`]).
    pub fn member(mut self, instance_id: impl Into<String>) -> Self {
        self.group.members.push(Member {
            instance_id: instance_id.into(),
            lifecycle_state: "InService".into(),
            health_status: "Healthy".into(),
            protected_from_scale_in: false,
        });
        self
    }

    /// The group.
    ///
    /// # Panics
    /// Unless MinSize <= desired capacity <= MaxSize, which Auto Scaling requires of every
    /// group.
    pub fn build(self) -> Group {
        let mut group = self.group;
        group.max_size = self.max.unwrap_or(group.desired_capacity);
        assert!(
            group.min_size <= group.desired_capacity && group.desired_capacity <= group.max_size,
            "group {}: MinSize {} <= desired {} <= MaxSize {} does not hold",
            group.name,
            group.min_size,
            group.desired_capacity,
            group.max_size
        );
        group
    }
}

/// An EC2 instance under construction.
#[derive(Debug, Clone)]
#[must_use]
pub struct InstanceBuilder {
    instance: Instance,
}

impl InstanceBuilder {
    /// A running on-demand instance: launched when a [`MemoryCloud`](super::MemoryCloud)'s
    /// clock starts (2024-01-01T00:00:00Z), with no subnet, AMI, group or tags.
    pub fn on_demand(instance_id: &str, instance_type: &str, az: &str) -> Self {
        InstanceBuilder {
            instance: Instance {
                instance_id: instance_id.to_string(),
                instance_type: instance_type.to_string(),
                availability_zone: az.to_string(),
                subnet_id: None,
                market: Market::OnDemand,
                state: InstanceState::Running,
                state_reason: None,
                launch_time: state::start(),
                image_id: None,
                auto_scaling_group: None,
                tags: BTreeMap::new(),
                placement: None,
            },
        }
    }

    /// A running spot instance, otherwise as [`InstanceBuilder::on_demand`].
    pub fn spot(instance_id: &str, instance_type: &str, az: &str) -> Self {
        let mut b = InstanceBuilder::on_demand(instance_id, instance_type, az);
        b.instance.market = Market::Spot;
        b
    }

    /// The instance state.
    pub fn state(mut self, state: InstanceState) -> Self {
        self.instance.state = state;
        self
    }

    /// The launch time.
    pub fn launched(mut self, at: DateTime<Utc>) -> Self {
        self.instance.launch_time = at;
        self
    }

    /// The subnet.
    pub fn subnet(mut self, subnet_id: impl Into<String>) -> Self {
        self.instance.subnet_id = Some(subnet_id.into());
        self
    }

    /// The AMI.
    pub fn image(mut self, image_id: impl Into<String>) -> Self {
        self.instance.image_id = Some(image_id.into());
        self
    }

    /// The group EC2 says the instance belongs to (the `aws:autoscaling:groupName` tag). The
    /// group's member list is set on the group (see [`GroupBuilder::member`]).
    pub fn in_group(mut self, group: impl Into<String>) -> Self {
        self.instance.auto_scaling_group = Some(group.into());
        self
    }

    /// Sets a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.instance.tags.insert(key.into(), value.into());
        self
    }

    /// Tags the instance as spotswap's clone launched for `group` to replace `replaces` (the
    /// swap protocol's tags, README "How it decides").
    pub fn clone_of(self, group: impl Into<String>, replaces: impl Into<String>) -> Self {
        self.tag(tags::GROUP, group).tag(tags::REPLACES, replaces)
    }

    /// The instance.
    pub fn build(self) -> Instance {
        self.instance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_starts_from_the_documented_defaults() {
        let group = GroupBuilder::new("web").desired(2).build();
        let expected = Group {
            name: "web".into(),
            min_size: 0,
            max_size: 2,
            desired_capacity: 2,
            health_check_grace_period_secs: 300,
            tags: BTreeMap::new(),
            propagated_tag_keys: BTreeSet::new(),
            launch: None,
            mixed_instances_policy: false,
            warm_pool: false,
            instance_refresh_in_progress: false,
            read_failures: Vec::new(),
            suspended_processes: Vec::new(),
            members: Vec::new(),
            target_group_arns: Vec::new(),
            load_balancer_names: Vec::new(),
            placement_group: None,
        };
        assert_eq!(group, expected);
    }

    #[test]
    fn a_plain_tag_keeps_whether_its_key_propagates() {
        let group = GroupBuilder::new("web")
            .propagated_tag("team", "a")
            .tag("team", "b")
            .tag("spot-enabled", "true")
            .build();
        assert_eq!(group.tags["team"], "b");
        assert_eq!(group.propagated_tag_keys, BTreeSet::from(["team".into()]));
    }

    #[test]
    #[should_panic(expected = "MaxSize")]
    fn a_group_with_sizes_out_of_order_is_refused() {
        let _ = GroupBuilder::new("web").desired(3).max(2).build();
    }

    #[test]
    fn a_clone_carries_the_protocol_tags_and_runs_on_spot() {
        let clone = InstanceBuilder::spot("i-2", "m5a.large", "us-east-1a")
            .clone_of("web", "i-1")
            .build();
        assert_eq!(clone.market, Market::Spot);
        assert_eq!(clone.state, InstanceState::Running);
        assert_eq!(clone.launch_time, state::start());
        assert_eq!(clone.clone_of(), Some(("web", "i-1")));
    }
}
