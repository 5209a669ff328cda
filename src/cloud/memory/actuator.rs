//! The write side of a [`MemoryRegion`]: [`Actuator`] over the account's state, with the checks
//! AWS makes before it changes anything. RunInstances sets the tags in the launch itself, fails
//! in a pool without capacity or for a type told to refuse launches, and returns the same
//! instance for a repeated client token; AttachInstances fails past MaxSize and for an instance
//! that is not running; a decrementing TerminateInstanceInAutoScalingGroup fails at MinSize; a
//! member that leaves without a decrement is replaced by its group.
//!
//! A write that fails must change nothing (AWS rejects the whole call), and a write must not do
//! more than the one call it stands for.

use std::collections::BTreeMap;

use super::MemoryRegion;
use super::state::{Ctx, RegionState, Template};
use crate::cloud::activity::{self, Leaving};
use crate::cloud::limits::{GROUP_TAG_WRITE_BATCH, TERMINATE_BATCH};
use crate::cloud::{
    Actuator, CloneLaunch, CloudError, DryRunAnswer, ErrorKind, FleetLaunch, FleetResult,
    FleetTemplate, OwnedTemplate, Probe,
};
use crate::model::{Instance, InstancePlacement, InstanceState, Market};
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

/// EC2 refuses a launch whose tag specification carries more than 50 user tags (EC2 User
/// Guide, "Tag restrictions"); `aws:` tags do not count.
fn check_tags(op: &str, tags: &BTreeMap<String, String>) -> Result<(), CloudError> {
    let user_tags = tags
        .keys()
        .filter(|k| !k.starts_with(protocol::AWS_RESERVED_PREFIX))
        .count();
    if user_tags > protocol::TAGS_PER_RESOURCE_MAX {
        return Err(CloudError::new(
            op,
            ErrorKind::InvalidRequest,
            Some("TagLimitExceeded"),
            &format!("The maximum number of Tags per resource is 50; {user_tags} given"),
        ));
    }
    Ok(())
}

/// The encoded authorization message of a refused operation: the decoded document, base64
/// (what EC2 encodes is opaque; only STS can read it, here `decode_authorization`).
fn encode(decoded: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(decoded)
}

/// IAM's refusal of `op`, if the test made IAM refuse it: EC2's `UnauthorizedOperation`, its
/// message ending in the encoded authorization message as EC2's does.
fn check_denied(r: &RegionState, op: &str) -> Result<(), CloudError> {
    match r.denied.get(op) {
        Some(decoded) => Err(CloudError::new(
            op,
            ErrorKind::Unauthorized,
            Some("UnauthorizedOperation"),
            &format!(
                "You are not authorized to perform this operation. Encoded authorization \
                 failure message: {}",
                encode(decoded)
            ),
        )),
        None => Ok(()),
    }
}

/// Whether a launch of `instance_type` in `az` can go ahead: the type is not refused, the AZ
/// exists, the type is offered there, and the pool has capacity.
fn check_pool(r: &RegionState, op: &str, instance_type: &str, az: &str) -> Result<(), CloudError> {
    if let Some(e) = r.refused.get(instance_type) {
        let mut e = e.clone();
        e.operation = op.to_string();
        return Err(e);
    }
    if !r.azs.iter().any(|a| a == az) {
        let message = format!("Invalid availability zone: [{az}]");
        return Err(CloudError::new(
            op,
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
            op,
            ErrorKind::CapacityUnavailable,
            Some("Unsupported"),
            &message,
        ));
    }
    if r.unavailable
        .contains(&(instance_type.to_string(), az.to_string()))
    {
        let message = format!("There is no Spot capacity available for {instance_type} in {az}");
        return Err(CloudError::new(
            op,
            ErrorKind::CapacityUnavailable,
            Some("InsufficientInstanceCapacity"),
            &message,
        ));
    }
    Ok(())
}

/// What a launch asks for one instance.
struct Launched<'a> {
    instance_type: &'a str,
    az: &'a str,
    subnet_id: Option<String>,
    market: Market,
    tags: &'a BTreeMap<String, String>,
    image_id: &'a str,
    placement: Option<Box<InstancePlacement>>,
}

/// Puts one launched instance in the region, dying at boot if the test says so.
fn launch_one(ctx: &mut Ctx<'_>, l: Launched<'_>) -> String {
    let id = ctx.new_id();
    ctx.region.insert(Instance {
        instance_id: id.clone(),
        instance_type: l.instance_type.to_string(),
        availability_zone: l.az.to_string(),
        subnet_id: l.subnet_id,
        market: l.market,
        state: InstanceState::Pending,
        state_reason: None,
        launch_time: ctx.clock.now,
        image_id: Some(l.image_id.to_string()),
        auto_scaling_group: None,
        tags: l.tags.clone(),
        placement: l.placement,
    });
    // EC2 accepts the launch; the instance then dies at boot.
    if let Some(reason) = ctx.region.boot_failure.clone() {
        ctx.terminate(&id, false, &reason, Leaving::Health);
    }
    id
}

impl Actuator for MemoryRegion {
    fn pacer(&self) -> &crate::pacing::Pacer {
        &self.pacer
    }

    async fn launch_clone(&self, l: &CloneLaunch) -> Result<String, CloudError> {
        const OP: &str = "RunInstances";
        self.run(OP, |ctx| {
            ctx.call(OP)?;
            check_denied(ctx.region, OP)?;
            if let Some(id) = ctx.region.client_tokens.get(&l.client_token) {
                return Ok(id.clone());
            }
            check_tags(OP, &l.tags)?;
            check_pool(ctx.region, OP, &l.instance_type, &l.availability_zone)?;
            let id = launch_one(
                ctx,
                Launched {
                    instance_type: &l.instance_type,
                    az: &l.availability_zone,
                    subnet_id: l.subnet_id.clone(),
                    market: l.market,
                    tags: &l.tags,
                    image_id: &l.spec.image_id,
                    // A template's placement goes with it by reference, a configuration's is
                    // copied into the request: either way the spec's tenancy.
                    placement: InstancePlacement::of(
                        l.placement_group.as_deref(),
                        l.spec.tenancy.as_deref(),
                    ),
                },
            );
            if !l.client_token.is_empty() {
                ctx.region
                    .client_tokens
                    .insert(l.client_token.clone(), id.clone());
            }
            Ok(id)
        })
        .await
    }

    async fn launch_fleet(&self, f: &FleetLaunch) -> Result<FleetResult, CloudError> {
        const OP: &str = "CreateFleet";
        self.run(OP, |ctx| {
            ctx.call(OP)?;
            check_denied(ctx.region, OP)?;
            if let Some(launched) = ctx.region.fleet_tokens.get(&f.client_token) {
                return Ok(FleetResult {
                    launched: launched.clone(),
                    errors: Vec::new(),
                });
            }
            check_tags(OP, &f.tags)?;
            let template = match &f.template {
                FleetTemplate::Id(id) => ctx.region.templates.get(id),
                FleetTemplate::Name(name) => ctx
                    .region
                    .templates
                    .values()
                    .find(|t| t.name.as_ref() == Some(name)),
            };
            let spec = template
                .and_then(|t| t.versions.get(&f.version.parse::<i64>().ok()?))
                .cloned()
                .ok_or_else(|| {
                    let message = format!(
                        "launch template {:?} version {} does not exist",
                        f.template, f.version
                    );
                    CloudError::new(
                        OP,
                        ErrorKind::InvalidRequest,
                        Some("InvalidLaunchTemplateId.VersionNotFound"),
                        &message,
                    )
                })?;
            // Every type in every subnet; without subnets, the AZ alone. The overrides are
            // taken in the order given: spotswap ranks them by price, and this cloud has no
            // capacity figures to weigh, so either strategy takes the first pool that has room.
            let subnets: Vec<Option<String>> = if f.subnets.is_empty() {
                vec![None]
            } else {
                f.subnets.iter().cloned().map(Some).collect()
            };
            let mut result = FleetResult::default();
            'types: for ty in &f.types {
                for subnet in &subnets {
                    if result.launched.len() as u32 >= f.count {
                        break 'types;
                    }
                    if let Err(e) = check_pool(ctx.region, OP, ty, &f.availability_zone) {
                        result.errors.push((Some(ty.clone()), e));
                        continue;
                    }
                    while (result.launched.len() as u32) < f.count {
                        let id = launch_one(
                            ctx,
                            Launched {
                                instance_type: ty,
                                az: &f.availability_zone,
                                subnet_id: subnet.clone(),
                                market: Market::Spot,
                                tags: &f.tags,
                                image_id: &spec.image_id,
                                // CreateFleet takes a placement group but no tenancy (EC2 API
                                // reference, Placement): a fleet's clones run on shared
                                // hardware.
                                placement: InstancePlacement::of(
                                    f.placement_group.as_deref(),
                                    None,
                                ),
                            },
                        );
                        result.launched.push((id, ty.clone()));
                    }
                }
            }
            if !f.client_token.is_empty() {
                ctx.region
                    .fleet_tokens
                    .insert(f.client_token.clone(), result.launched.clone());
            }
            Ok(result)
        })
        .await
    }

    async fn ensure_template(&self, t: &OwnedTemplate) -> Result<(), CloudError> {
        const OP: &str = "CreateLaunchTemplate";
        self.run(OP, |ctx| {
            ctx.call(OP)?;
            let exists = ctx
                .region
                .templates
                .values()
                .any(|x| x.name.as_ref() == Some(&t.name));
            if !exists {
                let id = format!("lt-{}", ctx.new_id().trim_start_matches("i-"));
                let mut spec = t.spec.clone();
                spec.resolved_version = Some(1);
                ctx.region.templates.insert(
                    id,
                    Template {
                        name: Some(t.name.clone()),
                        versions: [(1, spec)].into(),
                        default_version: 1,
                        launch_configuration: Some(t.launch_configuration.clone()),
                        created: ctx.clock.now,
                    },
                );
            }
            Ok(())
        })
        .await
    }

    async fn delete_template(&self, template_id: &str) -> Result<(), CloudError> {
        const OP: &str = "DeleteLaunchTemplate";
        self.run(OP, |ctx| {
            ctx.call(OP)?;
            match ctx.region.templates.remove(template_id) {
                Some(_) => Ok(()),
                None => Err(CloudError::new(
                    OP,
                    ErrorKind::NotFound,
                    Some("InvalidLaunchTemplateId.NotFound"),
                    &format!("The specified launch template, with template ID {template_id}, does not exist."),
                )),
            }
        })
        .await
    }

    async fn tag_instance(
        &self,
        instance: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), CloudError> {
        const OP: &str = "CreateTags";
        self.run(OP, |ctx| {
            ctx.call(OP)?;
            let Some(i) = ctx.region.instances.get_mut(instance) else {
                let message = format!("The instance ID '{instance}' does not exist");
                return Err(CloudError::new(
                    OP,
                    ErrorKind::NotFound,
                    Some("InvalidInstanceID.NotFound"),
                    &message,
                ));
            };
            let mut merged = i.tags.clone();
            merged.extend(tags.iter().map(|(k, v)| (k.clone(), v.clone())));
            // A resource carries at most 50 user tags: CreateTags past that fails whole.
            check_tags(OP, &merged)?;
            i.tags = merged;
            if i.tags.contains_key(protocol::GROUP) {
                ctx.region.clones.insert(instance.to_string());
            }
            Ok(())
        })
        .await
    }

    async fn attach(&self, group: &str, instance: &str) -> Result<(), CloudError> {
        const OP: &str = "AttachInstances";
        self.run(OP, |ctx| {
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
            let cause = activity::attach_cause(ctx.clock.now, g.desired_capacity);
            r.add_member(group, instance, "InService", ctx.clock.now);
            ctx.activity(group, format!("{}{instance}", activity::ATTACHING), cause);
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
        self.run(OP, |ctx| {
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
            let why = Leaving::OnRequest { decrement: decrement_desired };
            ctx.terminate(instance, !decrement_desired, protocol::USER_INITIATED_SHUTDOWN, why);
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
        self.run(OP, |ctx| {
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
            let desired = g.desired_capacity;
            ctx.region.remove_member(instance);
            let why = Leaving::OnRequest {
                decrement: decrement_desired,
            };
            let cause = activity::cause(instance, why, ctx.clock.now, desired + 1, desired);
            ctx.activity(group, format!("{}{instance}", activity::DETACHING), cause);
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
        self.run(OP, |ctx| {
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
                ctx.terminate(id, true, protocol::USER_INITIATED_SHUTDOWN, Leaving::Health);
            }
            Ok(())
        })
        .await
    }

    async fn set_max_size(&self, group: &str, max_size: u32) -> Result<(), CloudError> {
        const OP: &str = "UpdateAutoScalingGroup";
        self.run(OP, |ctx| {
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
        self.run(OP, |ctx| {
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

    async fn tag_groups(
        &self,
        key: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<(), CloudError> {
        const OP: &str = "CreateOrUpdateTags";
        let all: Vec<(&String, &String)> = values.iter().collect();
        for batch in all.chunks(GROUP_TAG_WRITE_BATCH) {
            self.run(OP, |ctx| {
                ctx.call(OP)?;
                // Auto Scaling checks every group of the request before it tags any.
                if let Some((missing, _)) = batch
                    .iter()
                    .find(|(g, _)| !ctx.region.groups.contains_key(*g))
                {
                    return Err(group_not_found(OP, missing));
                }
                for (group, value) in batch {
                    let g = ctx.region.groups.get_mut(*group).expect("checked above");
                    g.tags.insert(key.to_string(), (*value).clone());
                    g.propagated_tag_keys.remove(key);
                }
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    async fn untag_group(&self, group: &str, key: &str) -> Result<(), CloudError> {
        const OP: &str = "DeleteTags";
        self.run(OP, |ctx| {
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

    async fn dry_run(&self, probe: &Probe) -> DryRunAnswer {
        let op = probe.operation();
        let answer = self
            .run(op, |ctx| {
                ctx.call(op)?;
                // EC2 checks the instance ids of CreateTags and TerminateInstances before it
                // checks permissions.
                if let Probe::TagInstance { instance, .. } | Probe::Terminate { instance } = probe
                    && !ctx.region.instances.contains_key(instance)
                {
                    return Err(CloudError::new(
                        op,
                        ErrorKind::NotFound,
                        Some("InvalidInstanceID.NotFound"),
                        &format!("The instance ID '{instance}' does not exist"),
                    ));
                }
                Ok(check_denied(ctx.region, op))
            })
            .await;
        match answer {
            Ok(Ok(())) => DryRunAnswer::Allowed,
            Ok(Err(e)) => DryRunAnswer::Refused {
                encoded: e
                    .message
                    .split_once("failure message: ")
                    .map(|(_, m)| m.to_string()),
                message: "You are not authorized to perform this operation.".into(),
            },
            Err(e) => DryRunAnswer::Failed(e),
        }
    }

    async fn decode_authorization(&self, encoded: &str) -> Result<String, CloudError> {
        const OP: &str = "DecodeAuthorizationMessage";
        self.run(OP, |ctx| {
            ctx.call(OP)?;
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| {
                    CloudError::new(
                        OP,
                        ErrorKind::InvalidRequest,
                        Some("InvalidAuthorizationMessageException"),
                        "The message is not a valid encoded authorization message",
                    )
                })
        })
        .await
    }
}
