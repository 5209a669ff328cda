//! The write requests the adapter sends besides the launches (`run.rs`, `fleet.rs`): pairing
//! tags, terminations, template deletion and every Auto Scaling write, built as data with no
//! client and no network. The adapter only sends them, so what each request carries, and so
//! what IAM sees of it, is the same in a pass, in the preflight's `DryRun` probes and in the
//! test that holds every request against the stack's role (tests/it/iam.rs; README, "What
//! the role allows, and how that is proven").
//!
//! Nothing here decides anything or touches the network.

use std::collections::BTreeMap;

use aws_sdk_autoscaling::operation::attach_instances::builders::AttachInstancesInputBuilder;
use aws_sdk_autoscaling::operation::create_or_update_tags::builders::CreateOrUpdateTagsInputBuilder;
use aws_sdk_autoscaling::operation::delete_tags::builders::DeleteTagsInputBuilder;
use aws_sdk_autoscaling::operation::detach_instances::builders::DetachInstancesInputBuilder;
use aws_sdk_autoscaling::operation::terminate_instance_in_auto_scaling_group::builders::TerminateInstanceInAutoScalingGroupInputBuilder;
use aws_sdk_autoscaling::operation::update_auto_scaling_group::builders::UpdateAutoScalingGroupInputBuilder;
use aws_sdk_autoscaling::types as asg;
use aws_sdk_ec2::operation::create_tags::builders::CreateTagsInputBuilder;
use aws_sdk_ec2::operation::delete_launch_template::builders::DeleteLaunchTemplateInputBuilder;
use aws_sdk_ec2::operation::terminate_instances::builders::TerminateInstancesInputBuilder;
use aws_sdk_ec2::types as ec2;

/// Tags on an instance (`CreateTags`): how a clone is paired with the instance it replaces.
pub fn tag_instance(instance: &str, tags: &BTreeMap<String, String>) -> CreateTagsInputBuilder {
    let tags: Vec<ec2::Tag> = tags
        .iter()
        .map(|(k, v)| ec2::Tag::builder().key(k).value(v).build())
        .collect();
    aws_sdk_ec2::operation::create_tags::CreateTagsInput::builder()
        .resources(instance)
        .set_tags(Some(tags))
}

/// Terminates instances outside any group (`TerminateInstances`).
pub fn terminate(instances: &[String]) -> TerminateInstancesInputBuilder {
    aws_sdk_ec2::operation::terminate_instances::TerminateInstancesInput::builder()
        .set_instance_ids(Some(instances.to_vec()))
}

/// Deletes a launch template spotswap created (`DeleteLaunchTemplate`).
pub fn delete_template(template_id: &str) -> DeleteLaunchTemplateInputBuilder {
    aws_sdk_ec2::operation::delete_launch_template::DeleteLaunchTemplateInput::builder()
        .launch_template_id(template_id)
}

/// Attaches an instance to a group (`AttachInstances`).
pub fn attach(group: &str, instance: &str) -> AttachInstancesInputBuilder {
    aws_sdk_autoscaling::operation::attach_instances::AttachInstancesInput::builder()
        .auto_scaling_group_name(group)
        .instance_ids(instance)
}

/// Terminates a member through its group (`TerminateInstanceInAutoScalingGroup`).
pub fn terminate_in_group(
    instance: &str,
    decrement: bool,
) -> TerminateInstanceInAutoScalingGroupInputBuilder {
    aws_sdk_autoscaling::operation::terminate_instance_in_auto_scaling_group::TerminateInstanceInAutoScalingGroupInput::builder()
        .instance_id(instance)
        .should_decrement_desired_capacity(decrement)
}

/// Detaches a member from its group (`DetachInstances`).
pub fn detach(group: &str, instance: &str, decrement: bool) -> DetachInstancesInputBuilder {
    aws_sdk_autoscaling::operation::detach_instances::DetachInstancesInput::builder()
        .auto_scaling_group_name(group)
        .instance_ids(instance)
        .should_decrement_desired_capacity(decrement)
}

/// Sets a group's MaxSize (`UpdateAutoScalingGroup`).
pub fn set_max_size(group: &str, max_size: u32) -> UpdateAutoScalingGroupInputBuilder {
    aws_sdk_autoscaling::operation::update_auto_scaling_group::UpdateAutoScalingGroupInput::builder(
    )
    .auto_scaling_group_name(group)
    .max_size(max_size as i32)
}

/// Sets tag `key` on each group to its value, not propagated (`CreateOrUpdateTags`): one call
/// for the groups given (the caller keeps a call within its batch size).
pub fn tag_groups<'a>(
    key: &str,
    values: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> CreateOrUpdateTagsInputBuilder {
    let tags = values.into_iter().map(|(group, value)| {
        asg::Tag::builder()
            .resource_id(group)
            .resource_type("auto-scaling-group")
            .key(key)
            .value(value)
            .propagate_at_launch(false)
            .build()
    });
    aws_sdk_autoscaling::operation::create_or_update_tags::CreateOrUpdateTagsInput::builder()
        .set_tags(Some(tags.collect()))
}

/// Removes a tag from a group (`DeleteTags`).
pub fn untag_group(group: &str, key: &str) -> DeleteTagsInputBuilder {
    aws_sdk_autoscaling::operation::delete_tags::DeleteTagsInput::builder().tags(
        asg::Tag::builder()
            .resource_id(group)
            .resource_type("auto-scaling-group")
            .key(key)
            .build(),
    )
}
