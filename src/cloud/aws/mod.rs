//! The AWS SDK implementation of the cloud boundary: the only module of the crate that uses
//! the SDK.
//!
//! Every read is batched and paginated by hand, so each page is counted in the pass report
//! (and so the boundary stays free of per-instance or per-type calls). Errors are classified
//! by AWS error code. Every call first waits for its documented request token (the region
//! handle's [`Pacer`], EC2 API reference, "Request throttling"); a throttled answer left over is
//! retried by the SDK's standard retries with short backoffs, and every call has connect,
//! attempt and operation timeouts (`load_config`). This module decides nothing and never logs
//! user data.

pub mod convert;
pub mod fleet;
pub mod pricing;
pub mod requests;
pub mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error as StdError;
use std::sync::{Arc, Mutex};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_sdk_autoscaling as autoscaling;
use aws_sdk_ec2 as ec2;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_types::SdkConfig;
use aws_types::region::Region;
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};

use super::{
    Account, Actuator, CloneLaunch, CloudError, DryRunAnswer, ErrorKind, FleetLaunch, FleetResult,
    GroupQuery, Inventory, OwnedTemplate, Probe, classify, limits,
};
use crate::model::{
    Activity, Ami, Group, Instance, InstanceTypeSpec, LaunchRef, LaunchSpec, LoadBalancer, Os,
    OsPrices, OwnedTemplateRecord, SpotPricePoint, TargetHealth,
};
use crate::pacing::Pacer;
use crate::settings::CallTimeouts;

/// Loads the standard AWS configuration: credentials from the default chain (environment,
/// profile, SSO, instance or task role), the region from the environment or profile unless
/// given, `AWS_ENDPOINT_URL` honoured, standard retries with short backoffs, and `timeouts` on every call (the SDK
/// sets none by default, so an endpoint that accepts a connection and never answers would hold
/// a call, and the pass, for as long as the socket lives). A named profile is used for the
/// credentials even when the environment holds others, as the AWS CLI's `--profile` is; a
/// profile that does not exist is then an error when credentials are loaded, never a pass with
/// the environment's credentials (another account, perhaps).
pub async fn load_config(
    profile: Option<&str>,
    region: Option<&str>,
    timeouts: CallTimeouts,
) -> SdkConfig {
    let timeout_config = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(secs(timeouts.connect_secs))
        .operation_attempt_timeout(secs(timeouts.attempt_secs))
        .operation_timeout(secs(timeouts.operation_secs))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        // Standard retries with short backoffs, not adaptive: every call already waits for its
        // documented request token (`crate::pacing`), so a throttled answer is someone else's
        // burst, gone in a second; adaptive mode's client-side rate limiter then slows every
        // later call for far longer than the buckets need.
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(8)
                .with_initial_backoff(std::time::Duration::from_millis(100))
                .with_max_backoff(std::time::Duration::from_secs(5)),
        )
        .timeout_config(timeout_config);
    if let Some(p) = profile {
        let credentials = aws_config::profile::ProfileFileCredentialsProvider::builder()
            .profile_name(p)
            .build();
        loader = loader.profile_name(p).credentials_provider(credentials);
    }
    if let Some(r) = region {
        loader = loader.region(Region::new(r.to_string()));
    }
    loader.load().await
}

fn secs(n: u32) -> std::time::Duration {
    std::time::Duration::from_secs(n.into())
}

/// Checks that credentials can be found, so a pass that cannot run says so in one line; with
/// a named profile, the line names it.
pub async fn check_credentials(
    config: &SdkConfig,
    profile: Option<&str>,
) -> Result<(), crate::Error> {
    use aws_credential_types::provider::ProvideCredentials;
    let Some(provider) = config.credentials_provider() else {
        return Err(crate::Error::Credentials(
            "no AWS credentials provider is configured".into(),
        ));
    };
    provider
        .provide_credentials()
        .await
        .map(|_| ())
        .map_err(|e| {
            use aws_credential_types::provider::error::CredentialsError;
            match (e, profile) {
                (e, Some(p)) => {
                    // The innermost cause says what is wrong with the profile ("profile ... was
                    // not defined", a missing key): its first line is enough.
                    let mut cause: &dyn std::error::Error = &e;
                    while let Some(next) = cause.source() {
                        cause = next;
                    }
                    let why = cause.to_string();
                    format!(
                        "AWS profile {p:?} gives no credentials: {}",
                        why.lines().next().unwrap_or_default()
                    )
                }
                // The chain's own text lists every provider on its own line: one line is enough.
                (CredentialsError::CredentialsNotLoaded(_), None) => "no AWS credentials found \
                 (tried the environment, profiles, SSO, web identity, container and instance \
                 metadata)"
                    .to_string(),
                (other, None) => format!("AWS credentials could not be loaded: {other}")
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            }
        })
        .map_err(crate::Error::Credentials)
}

/// An AWS account reached through one SDK configuration.
#[derive(Clone)]
pub struct AwsAccount {
    config: SdkConfig,
}

impl AwsAccount {
    /// An account from a loaded configuration.
    pub fn new(config: SdkConfig) -> Self {
        AwsAccount { config }
    }
}

impl Account for AwsAccount {
    type Region = AwsRegion;

    async fn regions(&self) -> Result<Vec<String>, CloudError> {
        let client = ec2::Client::new(&self.config);
        // Without AllRegions, EC2 lists only the regions enabled for the account.
        let out = client.describe_regions().send().await.map_err(|e| {
            let home = self
                .config
                .region()
                .map_or("the home region", |r| r.as_ref());
            cloud_error("DescribeRegions", &endpoint_of(&self.config, home), e)
        })?;
        let mut names: Vec<String> = out
            .regions()
            .iter()
            .filter_map(|r| r.region_name().map(str::to_string))
            .collect();
        names.sort();
        Ok(names)
    }

    fn region(&self, name: &str) -> AwsRegion {
        AwsRegion::new(&self.config, name)
    }
}

/// One region's clients, with a count of the calls made.
#[derive(Clone)]
pub struct AwsRegion {
    region: String,
    /// Where calls go, for error messages: the endpoint override, or the region's AWS ones.
    endpoint: String,
    ec2: ec2::Client,
    autoscaling: autoscaling::Client,
    pricing: aws_sdk_pricing::Client,
    sts: aws_sdk_sts::Client,
    elbv2: aws_sdk_elasticloadbalancingv2::Client,
    elb: aws_sdk_elasticloadbalancing::Client,
    calls: Arc<Mutex<BTreeMap<String, u64>>>,
    /// The region's request buckets for this handle's pass: every call waits for its token.
    pacer: Arc<Pacer>,
}

impl AwsRegion {
    /// Clients for `region`, sharing `config`'s credentials, endpoint and retry settings.
    pub fn new(config: &SdkConfig, region: &str) -> Self {
        let r = Region::new(region.to_string());
        let ec2 =
            ec2::Client::from_conf(ec2::config::Builder::from(config).region(r.clone()).build());
        let autoscaling = autoscaling::Client::from_conf(
            autoscaling::config::Builder::from(config)
                .region(r.clone())
                .build(),
        );
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(config)
                .region(r.clone())
                .build(),
        );
        let elbv2 = aws_sdk_elasticloadbalancingv2::Client::from_conf(
            aws_sdk_elasticloadbalancingv2::config::Builder::from(config)
                .region(r.clone())
                .build(),
        );
        let elb = aws_sdk_elasticloadbalancing::Client::from_conf(
            aws_sdk_elasticloadbalancing::config::Builder::from(config)
                .region(r)
                .build(),
        );
        let pricing = aws_sdk_pricing::Client::from_conf(
            aws_sdk_pricing::config::Builder::from(config)
                .region(Region::new(pricing::endpoint_region(region)))
                .build(),
        );
        AwsRegion {
            region: region.to_string(),
            endpoint: endpoint_of(config, region),
            ec2,
            autoscaling,
            pricing,
            sts,
            elbv2,
            elb,
            calls: Arc::default(),
            pacer: Arc::default(),
        }
    }

    /// Before each call: waits for the operation's request token, and counts the call; a
    /// change the pass may no longer send (its leases are ending) fails unsent.
    async fn call(&self, operation: &str) -> Result<(), CloudError> {
        self.pacer.wait(operation).await;
        self.pacer.admit(operation)?;
        let mut calls = self.calls.lock().expect("call counter lock");
        *calls.entry(operation.to_string()).or_default() += 1;
        Ok(())
    }

    /// Runs a paginated read to its end, counting every page as one call. `page` makes one
    /// call with the given token and returns its items and the next token.
    async fn paginate<T, F, Fut>(&self, operation: &str, mut page: F) -> Result<Vec<T>, CloudError>
    where
        F: FnMut(Option<String>) -> Fut,
        Fut: std::future::Future<Output = Result<(Vec<T>, Option<String>), CloudError>>,
    {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            self.call(operation).await?;
            let (items, next) = page(token).await?;
            out.extend(items);
            token = next.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Whether an instance refresh is running for `group`: the newest refresh is listed
    /// first, and only these statuses mean instances are being replaced behind our back.
    async fn refreshing(&self, group: &str) -> Result<bool, CloudError> {
        self.call("DescribeInstanceRefreshes").await?;
        let out = self
            .autoscaling
            .describe_instance_refreshes()
            .auto_scaling_group_name(group)
            .max_records(1)
            .send()
            .await
            .map_err(|e| self.error("DescribeInstanceRefreshes", e))?;
        use autoscaling::types::InstanceRefreshStatus as S;
        let running = out.instance_refreshes().iter().any(|r| {
            matches!(
                r.status(),
                Some(
                    S::Pending | S::InProgress | S::Cancelling | S::RollbackInProgress | S::Baking
                )
            )
        });
        Ok(running)
    }

    async fn describe_instances(
        &self,
        filters: Vec<ec2::types::Filter>,
    ) -> Result<Vec<Instance>, CloudError> {
        self.paginate("DescribeInstances", |token| {
            let filters = filters.clone();
            async move {
                let page = self
                    .ec2
                    .describe_instances()
                    .set_filters(Some(filters))
                    .max_results(limits::INSTANCE_PAGE)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| self.error("DescribeInstances", e))?;
                let items = page
                    .reservations()
                    .iter()
                    .flat_map(|r| r.instances().iter().filter_map(convert::instance))
                    .collect();
                Ok((items, page.next_token().map(str::to_string)))
            }
        })
        .await
    }
}

fn filter(name: &str, values: impl IntoIterator<Item = impl Into<String>>) -> ec2::types::Filter {
    ec2::types::Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().map(Into::into).collect()))
        .build()
}

/// Classifies an SDK error by its AWS error code.
/// The endpoint a configuration sends a region's calls to, as error messages name it.
fn endpoint_of(config: &SdkConfig, region: &str) -> String {
    match config.endpoint_url() {
        Some(url) => url.to_string(),
        None => format!("the AWS endpoints of {region}"),
    }
}

impl AwsRegion {
    /// A failed call of this region, classified, in one line.
    fn error<E>(&self, operation: &str, e: SdkError<E, HttpResponse>) -> CloudError
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        cloud_error(operation, &self.endpoint, e)
    }
}

fn cloud_error<E>(operation: &str, endpoint: &str, e: SdkError<E, HttpResponse>) -> CloudError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
{
    let code = e.code().map(str::to_string);
    let kind = code.as_deref().map_or(ErrorKind::Other, classify);
    let mut message = match e.message() {
        Some(m) => first_line(m),
        None => answer_without_aws_error(&e, endpoint),
    };
    if kind == ErrorKind::Unauthorized {
        // EC2's message does not always name the action; the operator needs it for the policy.
        message = format!("{message} (the role needs {})", iam_action(operation));
    }
    CloudError {
        operation: operation.to_string(),
        kind,
        code,
        message,
    }
}

/// The IAM action that allows an operation (Service Authorization Reference: the action is
/// the API operation's name, under its service's prefix).
fn iam_action(operation: &str) -> String {
    let service = match operation {
        "GetProducts" => "pricing",
        "DecodeAuthorizationMessage" => "sts",
        "DescribeTargetHealth" | "DescribeInstanceHealth" => "elasticloadbalancing",
        op if op.contains("AutoScaling")
            || op.contains("InstanceRefreshes")
            || matches!(
                op,
                "AttachInstances"
                    | "DetachInstances"
                    | "DescribeLaunchConfigurations"
                    | "CreateOrUpdateTags"
                    | "DeleteTags"
                    // spotswap reads only groups' tags; EC2's comes with the instances.
                    | "DescribeTags"
            ) =>
        {
            "autoscaling"
        }
        _ => "ec2",
    };
    format!("{service}:{operation}")
}

/// One line saying what came back when the answer carries no AWS error code and message: the
/// HTTP status of a non-AWS answer (an HTML error page, an endpoint that does not have the
/// call), or why no answer came (unreachable endpoint, timeout), never the SDK's debug dump.
fn answer_without_aws_error<E>(e: &SdkError<E, HttpResponse>, endpoint: &str) -> String
where
    E: StdError + Send + Sync + 'static,
{
    let status = |r: &HttpResponse| r.status().as_u16();
    match e {
        SdkError::ServiceError(ctx) => format!(
            "HTTP {} from {endpoint} with no AWS error in the answer (the endpoint may not \
             have this call)",
            status(ctx.raw())
        ),
        SdkError::ResponseError(ctx) => format!(
            "HTTP {} from {endpoint} with an answer that is not an AWS response",
            status(ctx.raw())
        ),
        SdkError::TimeoutError(_) => format!("no answer in time from {endpoint}"),
        SdkError::DispatchFailure(_) => format!(
            "cannot reach {endpoint}: {}",
            innermost(e).unwrap_or_else(|| "connection failed".into())
        ),
        _ => innermost(e).unwrap_or_else(|| "the request could not be sent".into()),
    }
}

/// The innermost cause of an error, on one line (where the useful words are: "Connection
/// refused", "dns error").
fn innermost(e: &(dyn StdError + 'static)) -> Option<String> {
    let mut cause = e.source()?;
    while let Some(next) = cause.source() {
        cause = next;
    }
    Some(first_line(&cause.to_string()))
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

impl Inventory for AwsRegion {
    fn region(&self) -> &str {
        &self.region
    }

    async fn groups(&self, query: &GroupQuery) -> Result<Vec<Group>, CloudError> {
        let mut filters: Vec<autoscaling::types::Filter> = query
            .tag_values
            .iter()
            .map(|(k, v)| {
                autoscaling::types::Filter::builder()
                    .name(format!("tag:{k}"))
                    .values(v)
                    .build()
            })
            .collect();
        filters.extend(query.tag_keys.iter().map(|k| {
            autoscaling::types::Filter::builder()
                .name("tag-key")
                .values(k)
                .build()
        }));
        let raw = self
            .paginate("DescribeAutoScalingGroups", |token| {
                let filters = filters.clone();
                async move {
                    let page = self
                        .autoscaling
                        .describe_auto_scaling_groups()
                        .set_filters((!filters.is_empty()).then_some(filters))
                        .set_auto_scaling_group_names(
                            (!query.names.is_empty()).then(|| query.names.clone()),
                        )
                        .max_records(limits::GROUP_PAGE)
                        .set_next_token(token)
                        .send()
                        .await
                        .map_err(|e| self.error("DescribeAutoScalingGroups", e))?;
                    Ok((
                        page.auto_scaling_groups().to_vec(),
                        page.next_token().map(str::to_string),
                    ))
                }
            })
            .await?;
        Ok(raw.iter().filter_map(convert::group).collect())
    }

    async fn refreshes(&self, groups: &[String]) -> BTreeMap<String, Result<bool, CloudError>> {
        // One group's failed read (plain moto has no DescribeInstanceRefreshes; a role may
        // lack the permission) is that group's answer, not the region's.
        stream::iter(groups.to_vec())
            .map(|n| async move {
                let r = self.refreshing(&n).await;
                (n, r)
            })
            .buffer_unordered(limits::READ_CONCURRENCY)
            .collect()
            .await
    }

    async fn instances(&self, ids: &[String]) -> Result<Vec<Instance>, CloudError> {
        // A filter, not InstanceIds: an id that vanished meanwhile must not fail the batch.
        // Batches go out a few at a time: each waits for its token anyway.
        let chunks: Vec<Vec<String>> = ids
            .chunks(limits::INSTANCE_ID_BATCH)
            .map(<[String]>::to_vec)
            .collect();
        let batches: Vec<Vec<Instance>> = stream::iter(chunks)
            .map(|chunk| self.describe_instances(vec![filter("instance-id", chunk)]))
            .buffer_unordered(limits::READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(batches.into_iter().flatten().collect())
    }

    async fn clones(&self) -> Result<Vec<Instance>, CloudError> {
        // Every state: a clone that died before its swap (still listed for about an hour) is
        // what makes its group back off.
        self.describe_instances(vec![filter("tag-key", [crate::protocol::GROUP])])
            .await
    }

    async fn group_membership(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, String>, CloudError> {
        let mut out = BTreeMap::new();
        // DescribeAutoScalingInstances takes at most 50 ids.
        for chunk in ids.chunks(limits::MEMBERSHIP_BATCH) {
            let found = self
                .paginate("DescribeAutoScalingInstances", |token| async move {
                    let page = self
                        .autoscaling
                        .describe_auto_scaling_instances()
                        .set_instance_ids(Some(chunk.to_vec()))
                        .set_next_token(token)
                        .send()
                        .await
                        .map_err(|e| self.error("DescribeAutoScalingInstances", e))?;
                    let items: Vec<(String, String)> = page
                        .auto_scaling_instances()
                        .iter()
                        .filter_map(|i| {
                            Some((
                                i.instance_id()?.to_string(),
                                i.auto_scaling_group_name()?.to_string(),
                            ))
                        })
                        .collect();
                    Ok((items, page.next_token().map(str::to_string)))
                })
                .await?;
            out.extend(found);
        }
        Ok(out)
    }

    async fn group_tags(
        &self,
        groups: &[String],
        key: &str,
    ) -> Result<BTreeMap<String, String>, CloudError> {
        let batches: Vec<Vec<String>> = groups
            .chunks(limits::GROUP_TAG_BATCH)
            .map(<[String]>::to_vec)
            .collect();
        let pages: Vec<Vec<autoscaling::types::TagDescription>> = stream::iter(batches)
            .map(|names| async move {
                let filters = vec![
                    autoscaling::types::Filter::builder()
                        .name("auto-scaling-group")
                        .set_values(Some(names))
                        .build(),
                    autoscaling::types::Filter::builder()
                        .name("key")
                        .values(key)
                        .build(),
                ];
                self.paginate("DescribeTags", |token| {
                    let filters = filters.clone();
                    async move {
                        let page = self
                            .autoscaling
                            .describe_tags()
                            .set_filters(Some(filters))
                            .max_records(limits::GROUP_TAG_BATCH as i32)
                            .set_next_token(token)
                            .send()
                            .await
                            .map_err(|e| self.error("DescribeTags", e))?;
                        Ok((page.tags().to_vec(), page.next_token().map(str::to_string)))
                    }
                })
                .await
            })
            .buffer_unordered(limits::READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(pages
            .into_iter()
            .flatten()
            .filter(|t| t.key() == Some(key))
            .filter_map(|t| Some((t.resource_id()?.to_string(), t.value()?.to_string())))
            .collect())
    }

    async fn launch_specs(
        &self,
        refs: &[LaunchRef],
    ) -> Result<BTreeMap<String, LaunchSpec>, CloudError> {
        let mut out = BTreeMap::new();
        let mut configurations = BTreeSet::new();
        let mut templates: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for r in refs {
            match r {
                LaunchRef::LaunchConfiguration { name } => {
                    configurations.insert(name.clone());
                }
                LaunchRef::LaunchTemplate { id, version, .. } => {
                    templates.entry(id).or_default().insert(version);
                }
            }
        }
        let configurations: Vec<String> = configurations.into_iter().collect();
        // DescribeLaunchConfigurations takes at most 50 names.
        for chunk in configurations.chunks(limits::LAUNCH_CONFIG_BATCH) {
            let found = self
                .paginate("DescribeLaunchConfigurations", |token| async move {
                    let page = self
                        .autoscaling
                        .describe_launch_configurations()
                        .set_launch_configuration_names(Some(chunk.to_vec()))
                        .set_next_token(token)
                        .send()
                        .await
                        .map_err(|e| self.error("DescribeLaunchConfigurations", e))?;
                    let items: Vec<(String, LaunchSpec)> = page
                        .launch_configurations()
                        .iter()
                        .filter_map(|lc| {
                            let name = lc.launch_configuration_name()?.to_string();
                            let key = LaunchRef::LaunchConfiguration { name }.key();
                            Some((key, convert::launch_configuration(lc)?))
                        })
                        .collect();
                    Ok((items, page.next_token().map(str::to_string)))
                })
                .await?;
            out.extend(found);
        }
        // `$Latest` and `$Default` of every template of the region in one paginated read, when
        // more than one template needs them (for one, its own call is as cheap): "to describe
        // all the latest or default launch template versions in your account, omit the
        // launch template id and name" (EC2 API reference, DescribeLaunchTemplateVersions).
        let floating = templates
            .values()
            .filter(|vs| vs.iter().any(|v| v.starts_with('$')))
            .count();
        let mut found: BTreeMap<String, Vec<ec2::types::LaunchTemplateVersion>> = BTreeMap::new();
        let region_wide = floating > 1;
        if region_wide {
            let versions = self
                .paginate("DescribeLaunchTemplateVersions", |token| async move {
                    let page = self
                        .ec2
                        .describe_launch_template_versions()
                        .versions("$Latest")
                        .versions("$Default")
                        .max_results(limits::TEMPLATE_VERSION_PAGE)
                        .set_next_token(token)
                        .send()
                        .await
                        .map_err(|e| self.error("DescribeLaunchTemplateVersions", e))?;
                    Ok((
                        page.launch_template_versions().to_vec(),
                        page.next_token().map(str::to_string),
                    ))
                })
                .await?;
            for v in versions {
                if let Some(id) = v.launch_template_id() {
                    found.entry(id.to_string()).or_default().push(v);
                }
            }
        }
        for (&id, versions) in &templates {
            let have = found.get(id).map(Vec::as_slice).unwrap_or_default();
            let answered = |requested: &str| {
                requested.starts_with('$')
                    || have.iter().any(|v| {
                        v.version_number().map(|n| n.to_string()).as_deref() == Some(requested)
                    })
            };
            // A template the region-wide answer does not hold is gone: its groups have no spec.
            let gone = region_wide && have.is_empty();
            if gone || (region_wide && versions.iter().all(|v| answered(v))) {
                continue;
            }
            // One call for this template, asking for every version its groups name.
            self.call("DescribeLaunchTemplateVersions").await?;
            let result = self
                .ec2
                .describe_launch_template_versions()
                .launch_template_id(id)
                .set_versions(Some(versions.iter().map(|v| v.to_string()).collect()))
                .send()
                .await;
            match result {
                Ok(page) => found
                    .entry(id.to_string())
                    .or_default()
                    .extend(page.launch_template_versions().iter().cloned()),
                Err(e) => {
                    let e = self.error("DescribeLaunchTemplateVersions", e);
                    // A deleted template leaves its groups without a spec: the planner says so.
                    if e.kind != ErrorKind::NotFound {
                        return Err(e);
                    }
                }
            }
        }
        for (id, versions) in templates {
            let Some(found) = found.get(id) else {
                continue;
            };
            for requested in versions {
                let chosen = match requested {
                    "$Latest" => found.iter().max_by_key(|v| v.version_number()),
                    "$Default" => found.iter().find(|v| v.default_version() == Some(true)),
                    n => found
                        .iter()
                        .find(|v| v.version_number().map(|x| x.to_string()).as_deref() == Some(n)),
                };
                if let Some(spec) = chosen.and_then(convert::launch_template_version) {
                    let key = LaunchRef::LaunchTemplate {
                        id: id.to_string(),
                        name: None,
                        version: requested.to_string(),
                    }
                    .key();
                    out.insert(key, spec);
                }
            }
        }
        Ok(out)
    }

    async fn images(&self, ids: &[String]) -> Result<Vec<Ami>, CloudError> {
        let mut out = Vec::new();
        for chunk in ids.chunks(limits::IMAGE_BATCH) {
            let found = self
                .paginate("DescribeImages", |token| async move {
                    let page = self
                        .ec2
                        .describe_images()
                        .filters(filter("image-id", chunk.iter().cloned()))
                        .set_next_token(token)
                        .send()
                        .await
                        .map_err(|e| self.error("DescribeImages", e))?;
                    let items = page.images().iter().filter_map(convert::image).collect();
                    Ok((items, page.next_token().map(str::to_string)))
                })
                .await?;
            out.extend(found);
        }
        Ok(out)
    }

    async fn instance_types(&self) -> Result<Vec<InstanceTypeSpec>, CloudError> {
        self.paginate("DescribeInstanceTypes", |token| async move {
            let page = self
                .ec2
                .describe_instance_types()
                .max_results(limits::TYPE_PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| self.error("DescribeInstanceTypes", e))?;
            let items = page
                .instance_types()
                .iter()
                .filter_map(convert::instance_type)
                .collect();
            Ok((items, page.next_token().map(str::to_string)))
        })
        .await
    }

    async fn offerings(&self) -> Result<BTreeMap<String, BTreeSet<String>>, CloudError> {
        let pairs = self
            .paginate("DescribeInstanceTypeOfferings", |token| async move {
                let page = self
                    .ec2
                    .describe_instance_type_offerings()
                    .location_type(ec2::types::LocationType::AvailabilityZone)
                    .max_results(limits::OFFERING_PAGE)
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| self.error("DescribeInstanceTypeOfferings", e))?;
                let items: Vec<(String, String)> = page
                    .instance_type_offerings()
                    .iter()
                    .filter_map(|o| {
                        Some((
                            o.location()?.to_string(),
                            o.instance_type()?.as_str().to_string(),
                        ))
                    })
                    .collect();
                Ok((items, page.next_token().map(str::to_string)))
            })
            .await?;
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (az, t) in pairs {
            out.entry(az).or_default().insert(t);
        }
        Ok(out)
    }

    async fn spot_prices(
        &self,
        products: &[String],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<SpotPricePoint>, CloudError> {
        self.paginate("DescribeSpotPriceHistory", |token| async move {
            let page = spot_price_request(products, start, end, token)
                .send_with(&self.ec2)
                .await
                .map_err(|e| self.error("DescribeSpotPriceHistory", e))?;
            let items = page
                .spot_price_history()
                .iter()
                .filter_map(convert::spot_price)
                .collect();
            Ok((items, page.next_token().map(str::to_string)))
        })
        .await
    }

    async fn on_demand_prices(
        &self,
        oses: &[Os],
    ) -> Result<BTreeMap<String, OsPrices>, CloudError> {
        use aws_sdk_pricing::types::{Filter, FilterType};
        let mut out: BTreeMap<String, OsPrices> = BTreeMap::new();
        for os in oses {
            let filters: Vec<Filter> = pricing::filters(&self.region, *os)
                .into_iter()
                .map(|(field, value)| {
                    Filter::builder()
                        .r#type(FilterType::TermMatch)
                        .field(field)
                        .value(value)
                        .build()
                        .expect("field, type and value are set")
                })
                .collect();
            let entries = self
                .paginate("GetProducts", |token| {
                    let filters = filters.clone();
                    async move {
                        let page = self
                            .pricing
                            .get_products()
                            .service_code("AmazonEC2")
                            .format_version("aws_v1")
                            .set_filters(Some(filters))
                            .max_results(limits::PRODUCT_PAGE)
                            .set_next_token(token)
                            .send()
                            .await
                            .map_err(|e| self.error("GetProducts", e))?;
                        let items: Vec<(String, f64)> = page
                            .price_list()
                            .iter()
                            .filter_map(|e| pricing::parse_entry(e))
                            .collect();
                        Ok((items, page.next_token().map(str::to_string)))
                    }
                })
                .await?;
            for (t, price) in entries {
                out.entry(t).or_default().set(*os, Some(price));
            }
        }
        Ok(out)
    }

    async fn activities(
        &self,
        group: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Activity>, CloudError> {
        // Newest first (Auto Scaling API reference, DescribeScalingActivities): page only until
        // an activity older than `since`, never through the group's six weeks.
        let mut out = Vec::new();
        let mut token = None;
        loop {
            self.call("DescribeScalingActivities").await?;
            let page = self
                .autoscaling
                .describe_scaling_activities()
                .auto_scaling_group_name(group)
                .max_records(limits::ACTIVITY_PAGE)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| self.error("DescribeScalingActivities", e))?;
            let mut older = false;
            for a in page.activities() {
                let Some(at) = convert::time(a.start_time()) else {
                    continue;
                };
                if at < since {
                    older = true;
                    continue;
                }
                let status = a.status_code().map_or("", |s| s.as_str());
                if let Some(read) = crate::cloud::activity::read(
                    a.description().unwrap_or(""),
                    a.cause().unwrap_or(""),
                    status,
                    at,
                ) {
                    out.push(read);
                }
            }
            token = page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if older || token.is_none() {
                return Ok(out);
            }
        }
    }

    async fn target_health(
        &self,
        asks: &BTreeMap<LoadBalancer, Vec<String>>,
    ) -> Result<BTreeMap<String, Vec<TargetHealth>>, CloudError> {
        let asks: Vec<(LoadBalancer, Vec<String>)> = asks
            .iter()
            .map(|(lb, ids)| (lb.clone(), ids.clone()))
            .collect();
        let answers = stream::iter(asks)
            .map(|(lb, ids)| async move {
                let states = self.load_balancer_health(&lb, &ids).await?;
                Ok::<_, CloudError>((lb, states))
            })
            .buffer_unordered(limits::READ_CONCURRENCY)
            .try_collect::<Vec<_>>()
            .await?;
        let mut out: BTreeMap<String, Vec<TargetHealth>> = BTreeMap::new();
        for (lb, states) in answers {
            for (id, state) in states {
                out.entry(id).or_default().push(TargetHealth {
                    load_balancer: lb.clone(),
                    state,
                });
            }
        }
        Ok(out)
    }

    async fn owned_templates(&self) -> Result<Vec<OwnedTemplateRecord>, CloudError> {
        self.paginate("DescribeLaunchTemplates", |token| async move {
            let page = self
                .ec2
                .describe_launch_templates()
                .filters(
                    ec2::types::Filter::builder()
                        .name("tag-key")
                        .values(crate::protocol::LAUNCH_CONFIGURATION)
                        .build(),
                )
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| self.error("DescribeLaunchTemplates", e))?;
            let items = page
                .launch_templates()
                .iter()
                .filter_map(|t| {
                    let lc = t
                        .tags()
                        .iter()
                        .find(|x| x.key() == Some(crate::protocol::LAUNCH_CONFIGURATION))?
                        .value()?;
                    Some(OwnedTemplateRecord {
                        id: t.launch_template_id()?.to_string(),
                        name: t.launch_template_name()?.to_string(),
                        launch_configuration: lc.to_string(),
                        created: convert::time(t.create_time())?,
                    })
                })
                .collect();
            Ok((items, page.next_token().map(str::to_string)))
        })
        .await
    }

    fn call_counts(&self) -> BTreeMap<String, u64> {
        self.calls.lock().expect("call counter lock").clone()
    }
}

impl Actuator for AwsRegion {
    fn pacer(&self) -> &Pacer {
        &self.pacer
    }

    async fn launch_fleet(&self, f: &FleetLaunch) -> Result<FleetResult, CloudError> {
        self.call("CreateFleet").await?;
        let out = fleet::request(f)
            .send_with(&self.ec2)
            .await
            .map_err(|e| self.error("CreateFleet", e))?;
        Ok(fleet::result(&out))
    }

    async fn ensure_template(&self, t: &OwnedTemplate) -> Result<(), CloudError> {
        self.call("CreateLaunchTemplate").await?;
        match fleet::template_request(t).send_with(&self.ec2).await {
            Ok(_) => Ok(()),
            // Made by an earlier pass: a launch configuration never changes, nor its template.
            Err(e) if e.code() == Some("InvalidLaunchTemplateName.AlreadyExistsException") => {
                Ok(())
            }
            Err(e) => Err(self.error("CreateLaunchTemplate", e)),
        }
    }

    async fn delete_template(&self, template_id: &str) -> Result<(), CloudError> {
        self.call("DeleteLaunchTemplate").await?;
        requests::delete_template(template_id)
            .send_with(&self.ec2)
            .await
            .map(|_| ())
            .map_err(|e| self.error("DeleteLaunchTemplate", e))
    }

    async fn tag_instance(
        &self,
        instance: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<(), CloudError> {
        self.call("CreateTags").await?;
        requests::tag_instance(instance, tags)
            .send_with(&self.ec2)
            .await
            .map(|_| ())
            .map_err(|e| self.error("CreateTags", e))
    }

    async fn launch_clone(&self, l: &CloneLaunch) -> Result<String, CloudError> {
        self.call("RunInstances").await?;
        let out = run::request(l)
            .send_with(&self.ec2)
            .await
            .map_err(|e| self.error("RunInstances", e))?;
        out.instances()
            .first()
            .and_then(|i| i.instance_id())
            .map(str::to_string)
            .ok_or_else(|| {
                CloudError::new(
                    "RunInstances",
                    ErrorKind::Other,
                    None,
                    "no instance in the reply",
                )
            })
    }

    async fn attach(&self, group: &str, instance: &str) -> Result<(), CloudError> {
        self.call("AttachInstances").await?;
        requests::attach(group, instance)
            .send_with(&self.autoscaling)
            .await
            .map(|_| ())
            .map_err(|e| self.error("AttachInstances", e))
    }

    async fn terminate_in_group(&self, instance: &str, decrement: bool) -> Result<(), CloudError> {
        self.call("TerminateInstanceInAutoScalingGroup").await?;
        requests::terminate_in_group(instance, decrement)
            .send_with(&self.autoscaling)
            .await
            .map(|_| ())
            .map_err(|e| self.error("TerminateInstanceInAutoScalingGroup", e))
    }

    async fn detach(&self, group: &str, instance: &str, decrement: bool) -> Result<(), CloudError> {
        self.call("DetachInstances").await?;
        requests::detach(group, instance, decrement)
            .send_with(&self.autoscaling)
            .await
            .map(|_| ())
            .map_err(|e| self.error("DetachInstances", e))
    }

    async fn terminate(&self, instances: &[String]) -> Result<(), CloudError> {
        if instances.is_empty() {
            return Ok(());
        }
        self.call("TerminateInstances").await?;
        requests::terminate(instances)
            .send_with(&self.ec2)
            .await
            .map(|_| ())
            .map_err(|e| self.error("TerminateInstances", e))
    }

    async fn set_max_size(&self, group: &str, max_size: u32) -> Result<(), CloudError> {
        self.call("UpdateAutoScalingGroup").await?;
        requests::set_max_size(group, max_size)
            .send_with(&self.autoscaling)
            .await
            .map(|_| ())
            .map_err(|e| self.error("UpdateAutoScalingGroup", e))
    }

    async fn tag_group(&self, group: &str, key: &str, value: &str) -> Result<(), CloudError> {
        let (group, value) = (group.to_string(), value.to_string());
        self.call("CreateOrUpdateTags").await?;
        requests::tag_groups(key, [(&group, &value)])
            .send_with(&self.autoscaling)
            .await
            .map(|_| ())
            .map_err(|e| self.error("CreateOrUpdateTags", e))
    }

    async fn tag_groups(
        &self,
        key: &str,
        values: &BTreeMap<String, String>,
    ) -> Result<(), CloudError> {
        let all: Vec<(&String, &String)> = values.iter().collect();
        for batch in all.chunks(limits::GROUP_TAG_WRITE_BATCH) {
            self.call("CreateOrUpdateTags").await?;
            requests::tag_groups(key, batch.iter().copied())
                .send_with(&self.autoscaling)
                .await
                .map_err(|e| self.error("CreateOrUpdateTags", e))?;
        }
        Ok(())
    }

    async fn untag_group(&self, group: &str, key: &str) -> Result<(), CloudError> {
        self.call("DeleteTags").await?;
        requests::untag_group(group, key)
            .send_with(&self.autoscaling)
            .await
            .map(|_| ())
            .map_err(|e| self.error("DeleteTags", e))
    }

    async fn dry_run(&self, probe: &Probe) -> DryRunAnswer {
        let op = probe.operation();
        if let Err(e) = self.call(op).await {
            return DryRunAnswer::Failed(e);
        }
        // The very requests a pass sends, with DryRun set.
        let ec2 = &self.ec2;
        match probe {
            Probe::Fleet(f) => {
                let r = fleet::request(f).dry_run(true).send_with(ec2).await;
                self.dry_run_answer(op, r)
            }
            Probe::Clone(l) => {
                let r = run::request(l).dry_run(true).send_with(ec2).await;
                self.dry_run_answer(op, r)
            }
            Probe::Template(t) => {
                let r = fleet::template_request(t)
                    .dry_run(true)
                    .send_with(ec2)
                    .await;
                self.dry_run_answer(op, r)
            }
            Probe::TagInstance { instance, tags } => {
                let r = requests::tag_instance(instance, tags)
                    .dry_run(true)
                    .send_with(ec2)
                    .await;
                self.dry_run_answer(op, r)
            }
            Probe::Terminate { instance } => {
                let r = requests::terminate(std::slice::from_ref(instance))
                    .dry_run(true)
                    .send_with(ec2)
                    .await;
                self.dry_run_answer(op, r)
            }
        }
    }

    async fn decode_authorization(&self, encoded: &str) -> Result<String, CloudError> {
        const OP: &str = "DecodeAuthorizationMessage";
        self.call(OP).await?;
        let out = self
            .sts
            .decode_authorization_message()
            .encoded_message(encoded)
            .send()
            .await
            .map_err(|e| self.error(OP, e))?;
        out.decoded_message()
            .map(str::to_string)
            .ok_or_else(|| CloudError::new(OP, ErrorKind::Other, None, "no decoded message"))
    }
}

impl AwsRegion {
    /// How one load balancer sees `ids`: (instance, state), a classic load balancer's
    /// `InService` read as `healthy`.
    async fn load_balancer_health(
        &self,
        lb: &LoadBalancer,
        ids: &[String],
    ) -> Result<Vec<(String, String)>, CloudError> {
        match lb {
            LoadBalancer::TargetGroup(arn) => {
                const OP: &str = "DescribeTargetHealth";
                self.call(OP).await?;
                let targets = ids.iter().map(|id| {
                    aws_sdk_elasticloadbalancingv2::types::TargetDescription::builder()
                        .id(id)
                        .build()
                });
                let out = self
                    .elbv2
                    .describe_target_health()
                    .target_group_arn(arn)
                    .set_targets(Some(targets.collect()))
                    .send()
                    .await
                    .map_err(|e| self.error(OP, e))?;
                Ok(out
                    .target_health_descriptions()
                    .iter()
                    .filter_map(|d| {
                        let id = d.target()?.id()?.to_string();
                        let state = d
                            .target_health()
                            .and_then(|h| h.state())
                            .map_or("unknown", |s| s.as_str());
                        Some((id, state.to_string()))
                    })
                    .collect())
            }
            LoadBalancer::Classic(name) => {
                const OP: &str = "DescribeInstanceHealth";
                self.call(OP).await?;
                let instances = ids.iter().map(|id| {
                    aws_sdk_elasticloadbalancing::types::Instance::builder()
                        .instance_id(id)
                        .build()
                });
                let out = self
                    .elb
                    .describe_instance_health()
                    .load_balancer_name(name)
                    .set_instances(Some(instances.collect()))
                    .send()
                    .await
                    .map_err(|e| self.error(OP, e))?;
                Ok(out
                    .instance_states()
                    .iter()
                    .filter_map(|s| {
                        let id = s.instance_id()?.to_string();
                        // A classic load balancer serves an instance it calls InService.
                        let state = match s.state() {
                            Some("InService") => "healthy",
                            Some(other) => other,
                            None => "unknown",
                        };
                        Some((id, state.to_string()))
                    })
                    .collect())
            }
        }
    }
}

/// One page of `DescribeSpotPriceHistory` over the closed window `start`..`end`.
fn spot_price_request(
    products: &[String],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    token: Option<String>,
) -> ec2::operation::describe_spot_price_history::builders::DescribeSpotPriceHistoryInputBuilder {
    let time = |t: DateTime<Utc>| aws_smithy_types::DateTime::from_secs(t.timestamp());
    ec2::operation::describe_spot_price_history::DescribeSpotPriceHistoryInput::builder()
        .set_product_descriptions(Some(products.to_vec()))
        .start_time(time(start))
        .end_time(time(end))
        .max_results(limits::SPOT_PRICE_PAGE)
        .set_next_token(token)
}

/// The text after which EC2 puts the encoded authorization message in an
/// `UnauthorizedOperation` answer (EC2 API reference, "Error codes": "Encoded authorization
/// failure message"; decoded by `sts:DecodeAuthorizationMessage`).
const ENCODED_MARKER: &str = "Encoded authorization failure message:";

impl AwsRegion {
    /// A `DryRun` answer read by its error code: `DryRunOperation` is the allow, an
    /// unauthorized code the refusal (with its encoded message), anything else a failure.
    fn dry_run_answer<T, E>(
        &self,
        op: &str,
        r: Result<T, SdkError<E, HttpResponse>>,
    ) -> DryRunAnswer
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    {
        let e = match r {
            // A DryRun request never succeeds on AWS: this endpoint ignored DryRun.
            Ok(_) => {
                return DryRunAnswer::Failed(CloudError::new(
                    op,
                    ErrorKind::Other,
                    None,
                    "the endpoint answered a DryRun request as a real one (it may have made \
                     the change)",
                ));
            }
            Err(e) => e,
        };
        match e.code() {
            Some("DryRunOperation") => DryRunAnswer::Allowed,
            Some(code) if classify(code) == ErrorKind::Unauthorized => {
                let message = e.message().unwrap_or_default().to_string();
                let encoded = message
                    .split_once(ENCODED_MARKER)
                    .map(|(_, rest)| rest.trim().to_string())
                    .filter(|m| !m.is_empty());
                DryRunAnswer::Refused {
                    encoded,
                    message: first_line(
                        message
                            .split_once(ENCODED_MARKER)
                            .map_or(message.as_str(), |(before, _)| before),
                    ),
                }
            }
            _ => DryRunAnswer::Failed(self.error(op, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denied_call_names_the_iam_action_it_needs() {
        let cases = [
            (
                "DescribeInstanceRefreshes",
                "autoscaling:DescribeInstanceRefreshes",
            ),
            ("DescribeTags", "autoscaling:DescribeTags"),
            (
                "DescribeAutoScalingGroups",
                "autoscaling:DescribeAutoScalingGroups",
            ),
            (
                "TerminateInstanceInAutoScalingGroup",
                "autoscaling:TerminateInstanceInAutoScalingGroup",
            ),
            ("AttachInstances", "autoscaling:AttachInstances"),
            (
                "DescribeLaunchConfigurations",
                "autoscaling:DescribeLaunchConfigurations",
            ),
            ("CreateOrUpdateTags", "autoscaling:CreateOrUpdateTags"),
            (
                "DescribeLaunchTemplateVersions",
                "ec2:DescribeLaunchTemplateVersions",
            ),
            ("RunInstances", "ec2:RunInstances"),
            ("GetProducts", "pricing:GetProducts"),
        ];
        for (operation, action) in cases {
            assert_eq!(iam_action(operation), action);
        }
    }

    #[test]
    fn spot_prices_are_asked_over_a_closed_window_ending_at_the_passs_now() {
        let start: DateTime<Utc> = "2026-12-07T09:00:00Z".parse().unwrap();
        let now: DateTime<Utc> = "2026-12-07T10:00:00Z".parse().unwrap();
        let req = spot_price_request(&["Linux/UNIX (Amazon VPC)".into()], start, now, None)
            .build()
            .unwrap();
        assert_eq!(req.start_time().unwrap().secs(), start.timestamp());
        assert_eq!(req.end_time().unwrap().secs(), now.timestamp());
        assert_eq!(req.product_descriptions(), ["Linux/UNIX (Amazon VPC)"]);
    }

    #[test]
    fn an_error_message_is_the_first_line_only() {
        assert_eq!(
            first_line("  Access denied\nraw: Response { ... }"),
            "Access denied"
        );
        assert_eq!(first_line(""), "");
    }
}
