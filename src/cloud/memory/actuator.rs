//! The write side of a [`MemoryRegion`]: [`Actuator`] over the account's state, with the checks
//! AWS makes before it changes anything. RunInstances sets the tags in the launch itself, fails
//! in a pool without capacity or for a type told to refuse launches, and returns the same
//! instance for a repeated client token; AttachInstances fails past MaxSize and for an instance
//! that is not running; a decrementing TerminateInstanceInAutoScalingGroup fails at MinSize; a
//! member that leaves without a decrement is replaced by its group.
//!
//! A write that fails must change nothing (AWS rejects the whole call), and a write must not do
//! more than the one call it stands for.

use super::MemoryRegion;
use crate::cloud::limits::TERMINATE_BATCH;
use crate::cloud::{Actuator, CloneLaunch, CloudError, ErrorKind};
use crate::model::{Instance, InstanceState};
use crate::protocol;

/// An Auto Scaling `ValidationError`, as AWS reports size conflicts and unknown groups.
fn validation(operation: &str, message: &str) -> CloudError {
    CloudError::new(
        operation,
        ErrorKind::InvalidRequest,
        Some("ValidationError"),
        message,
    )
}

fn group_not_found(operation: &str, group: &str) -> CloudError {
    validation(
        operation,
        &format!("AutoScalingGroup name not found - {group}"),
    )
}

impl Actuator for MemoryRegion {
    async fn launch_clone(&self, l: &CloneLaunch) -> Result<String, CloudError> {
        const OP: &str = "RunInstances";
        self.run(|ctx| {
            ctx.call(OP)?;
            let r = &*ctx.region;
            if let Some(id) = r.client_tokens.get(&l.client_token) {
                return Ok(id.clone());
            }
            let (instance_type, az) = (&l.instance_type, &l.availability_zone);
            // EC2 refuses a launch whose tag specification carries more than 50 user tags
            // (EC2 User Guide, "Tag restrictions"); `aws:` tags do not count.
            let user_tags = l
                .tags
                .keys()
                .filter(|k| !k.starts_with(protocol::AWS_RESERVED_PREFIX))
                .count();
            if user_tags > protocol::TAGS_PER_RESOURCE_MAX {
                return Err(CloudError::new(
                    OP,
                    ErrorKind::InvalidRequest,
                    Some("TagLimitExceeded"),
                    &format!("The maximum number of Tags per resource is 50; {user_tags} given"),
                ));
            }
            if let Some(e) = r.refused.get(instance_type) {
                return Err(e.clone());
            }
            if !r.azs.contains(az) {
                let message = format!("Invalid availability zone: [{az}]");
                return Err(CloudError::new(
                    OP,
                    ErrorKind::InvalidRequest,
                    Some("InvalidParameterValue"),
                    &message,
                ));
            }
            let offered = match r.offerings.as_ref().and_then(|o| o.get(az)) {
                Some(types) => types.contains(instance_type),
                None => true,
            };
            if !offered {
                let message = format!("{instance_type} is not supported in {az}");
                return Err(CloudError::new(
                    OP,
                    ErrorKind::CapacityUnavailable,
                    Some("Unsupported"),
                    &message,
                ));
            }
            if r.unavailable.contains(&(instance_type.clone(), az.clone())) {
                let message =
                    format!("There is no Spot capacity available for {instance_type} in {az}");
                let code = Some("InsufficientInstanceCapacity");
                return Err(CloudError::new(
                    OP,
                    ErrorKind::CapacityUnavailable,
                    code,
                    &message,
                ));
            }
            let id = ctx.new_id();
            ctx.region.insert(Instance {
                instance_id: id.clone(),
                instance_type: instance_type.clone(),
                availability_zone: az.clone(),
                subnet_id: l.subnet_id.clone(),
                market: l.market,
                state: InstanceState::Pending,
                state_reason: None,
                launch_time: ctx.clock.now,
                image_id: Some(l.spec.image_id.clone()),
                auto_scaling_group: None,
                tags: l.tags.clone(),
            });
            if !l.client_token.is_empty() {
                ctx.region
                    .client_tokens
                    .insert(l.client_token.clone(), id.clone());
            }
            // EC2 accepts the launch; the instance then dies at boot.
            if let Some(reason) = ctx.region.boot_failure.clone() {
                ctx.terminate(&id, false, &reason);
            }
            Ok(id)
        })
        .await
    }

    async fn attach(&self, group: &str, instance: &str) -> Result<(), CloudError> {
        const OP: &str = "AttachInstances";
        self.run(|ctx| {
            ctx.call(OP)?;
            let r = &mut *ctx.region;
            let g = r
                .groups
                .get_mut(group)
                .ok_or_else(|| group_not_found(OP, group))?;
            match r.instances.get(instance) {
                None => {
                    return Err(validation(
                        OP,
                        &format!("Instance ID(s) are not valid: {instance}"),
                    ));
                }
                Some(i) if !ctx.clock.running(i) => {
                    return Err(validation(
                        OP,
                        &format!("Instance {instance} is not in the running state"),
                    ));
                }
                Some(_) => {}
            }
            if let Some(other) = r.membership.get(instance) {
                return Err(validation(
                    OP,
                    &format!("Instance {instance} is already part of {other}"),
                ));
            }
            if g.desired_capacity + 1 > g.max_size {
                let message = format!(
                    "Attaching 1 instance to {group} would exceed its max size of {}",
                    g.max_size
                );
                return Err(validation(OP, &message));
            }
            g.desired_capacity += 1;
            r.add_member(group, instance, "InService");
            Ok(())
        })
        .await
    }

    async fn terminate_in_group(
        &self,
        instance: &str,
        decrement_desired: bool,
    ) -> Result<(), CloudError> {
        const OP: &str = "TerminateInstanceInAutoScalingGroup";
        self.run(|ctx| {
            ctx.call(OP)?;
            let Some(group) = ctx.region.membership.get(instance).cloned() else {
                let message = format!("Instance Id not found - No managed instance found for instance ID: {instance}");
                return Err(CloudError::new(OP, ErrorKind::InvalidRequest, Some("ValidationError"), &message));
            };
            if decrement_desired {
                let g = ctx.region.groups.get_mut(&group).ok_or_else(|| group_not_found(OP, &group))?;
                if g.desired_capacity <= g.min_size {
                    let message = format!(
                        "Currently, desiredSize equals minSize ({}). Terminating instance without replacement will violate group's min size constraint.",
                        g.min_size
                    );
                    return Err(validation(OP, &message));
                }
                g.desired_capacity -= 1;
            }
            ctx.terminate(instance, !decrement_desired, protocol::USER_INITIATED_SHUTDOWN);
            Ok(())
        })
        .await
    }

    async fn detach(
        &self,
        group: &str,
        instance: &str,
        decrement_desired: bool,
    ) -> Result<(), CloudError> {
        const OP: &str = "DetachInstances";
        self.run(|ctx| {
            ctx.call(OP)?;
            if ctx.region.membership.get(instance).map(String::as_str) != Some(group) {
                let message =
                    format!("The instance {instance} is not part of Auto Scaling group {group}.");
                return Err(validation(OP, &message));
            }
            let g = ctx
                .region
                .groups
                .get_mut(group)
                .ok_or_else(|| group_not_found(OP, group))?;
            if decrement_desired {
                g.desired_capacity = g.desired_capacity.saturating_sub(1);
            }
            ctx.region.remove_member(instance);
            if let Some(i) = ctx.region.instances.get_mut(instance) {
                i.auto_scaling_group = None;
            }
            if !decrement_desired {
                let gone = ctx.region.instances.get(instance).cloned();
                if let Some(gone) = gone {
                    ctx.replace(group, &gone);
                }
            }
            Ok(())
        })
        .await
    }

    async fn terminate(&self, instances: &[String]) -> Result<(), CloudError> {
        const OP: &str = "TerminateInstances";
        self.run(|ctx| {
            ctx.batches(OP, instances.len(), TERMINATE_BATCH)?;
            if let Some(id) = instances
                .iter()
                .find(|id| !ctx.region.instances.contains_key(*id))
            {
                let message = format!("The instance ID '{id}' does not exist");
                return Err(CloudError::new(
                    OP,
                    ErrorKind::NotFound,
                    Some("InvalidInstanceID.NotFound"),
                    &message,
                ));
            }
            for id in instances {
                ctx.terminate(id, true, protocol::USER_INITIATED_SHUTDOWN);
            }
            Ok(())
        })
        .await
    }

    async fn set_max_size(&self, group: &str, max_size: u32) -> Result<(), CloudError> {
        const OP: &str = "UpdateAutoScalingGroup";
        self.run(|ctx| {
            ctx.call(OP)?;
            let g = ctx.region.groups.get_mut(group).ok_or_else(|| group_not_found(OP, group))?;
            if max_size < g.desired_capacity || max_size < g.min_size {
                let message = format!(
                    "Desired capacity:{} must be between the specified min size:{} and max size:{max_size}",
                    g.desired_capacity, g.min_size
                );
                return Err(validation(OP, &message));
            }
            g.max_size = max_size;
            Ok(())
        })
        .await
    }

    async fn tag_group(&self, group: &str, key: &str, value: &str) -> Result<(), CloudError> {
        const OP: &str = "CreateOrUpdateTags";
        self.run(|ctx| {
            ctx.call(OP)?;
            let g = ctx
                .region
                .groups
                .get_mut(group)
                .ok_or_else(|| group_not_found(OP, group))?;
            g.tags.insert(key.to_string(), value.to_string());
            g.propagated_tag_keys.remove(key);
            Ok(())
        })
        .await
    }

    async fn untag_group(&self, group: &str, key: &str) -> Result<(), CloudError> {
        const OP: &str = "DeleteTags";
        self.run(|ctx| {
            ctx.call(OP)?;
            let g = ctx
                .region
                .groups
                .get_mut(group)
                .ok_or_else(|| group_not_found(OP, group))?;
            g.tags.remove(key);
            g.propagated_tag_keys.remove(key);
            Ok(())
        })
        .await
    }
}
