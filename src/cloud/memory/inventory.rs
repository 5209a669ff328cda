//! The read side of a [`MemoryRegion`]: [`Inventory`] over the account's state, answering as
//! the AWS describe calls do (instances that finished booting are running, unknown ids are left
//! out, a spot price history starts with the price in effect at its start time).
//!
//! Each read counts its AWS calls in the pages and batches of [`crate::cloud::limits`], as the
//! AWS adapter makes them, so a test's call counts are a real pass's. A read must not change
//! what the account holds (it only drops clones that are gone from its index of clones) and
//! must cost O(its answer), never a scan of every instance.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, TimeDelta, Utc};

use super::MemoryRegion;
use crate::catalog::Catalog;
use futures::stream::{self, StreamExt, TryStreamExt};

use super::state::{RegionState, pages};
use crate::cloud::activity;
use crate::cloud::limits::{
    ACTIVITY_PAGE, GROUP_PAGE, GROUP_TAG_BATCH, IMAGE_BATCH, INSTANCE_ID_BATCH, INSTANCE_PAGE,
    LAUNCH_CONFIG_BATCH, MEMBERSHIP_BATCH, OFFERING_PAGE, PRODUCT_PAGE, READ_CONCURRENCY,
    SPOT_PRICE_PAGE, TEMPLATE_VERSION_PAGE, TYPE_PAGE,
};
use crate::cloud::{CloudError, GroupQuery, Inventory};
use crate::model::{
    Activity, Ami, Group, Instance, InstanceTypeSpec, LaunchRef, LaunchSpec, LoadBalancer, Os,
    OsPrices, OwnedTemplateRecord, SpotPricePoint, TargetHealth,
};

/// The bundled catalog as a list, cloned once for every cloud.
fn bundled_types() -> Arc<Vec<InstanceTypeSpec>> {
    static TYPES: OnceLock<Arc<Vec<InstanceTypeSpec>>> = OnceLock::new();
    TYPES
        .get_or_init(|| Arc::new(Catalog::bundled().iter().cloned().collect()))
        .clone()
}

impl Inventory for MemoryRegion {
    fn region(&self) -> &str {
        &self.name
    }

    async fn groups(&self, query: &GroupQuery) -> Result<Vec<Group>, CloudError> {
        self.read("DescribeAutoScalingGroups", |ctx| {
            let r = &*ctx.region;
            let found: Vec<Group> = r
                .groups
                .values()
                .filter(|g| {
                    query
                        .tag_values
                        .iter()
                        .all(|(k, v)| g.tags.get(k) == Some(v))
                        && query.tag_keys.iter().all(|k| g.tags.contains_key(k))
                        && (query.names.is_empty() || query.names.contains(&g.name))
                })
                .map(|g| Group {
                    // Only `refreshes` tells, as in AWS.
                    instance_refresh_in_progress: false,
                    ..r.observe_group(g, ctx.clock)
                })
                .collect();
            let calls = pages(found.len(), GROUP_PAGE);
            (found, calls)
        })
        .await
    }

    async fn refreshes(&self, groups: &[String]) -> BTreeMap<String, Result<bool, CloudError>> {
        // One call per group, a few at a time, as in the AWS adapter; a failed one is that
        // group's answer.
        stream::iter(groups.to_vec())
            .map(|name| async move {
                let refreshing = self
                    .run("DescribeInstanceRefreshes", |ctx| {
                        ctx.call("DescribeInstanceRefreshes")?;
                        Ok(ctx
                            .region
                            .groups
                            .get(&name)
                            .is_some_and(|g| g.instance_refresh_in_progress))
                    })
                    .await;
                (name, refreshing)
            })
            .buffer_unordered(READ_CONCURRENCY)
            .collect()
            .await
    }

    async fn instances(&self, ids: &[String]) -> Result<Vec<Instance>, CloudError> {
        let mut seen = HashSet::new();
        let ids: Vec<&String> = ids.iter().filter(|id| seen.insert(id.as_str())).collect();
        let chunks: Vec<Vec<String>> = ids
            .chunks(INSTANCE_ID_BATCH)
            .map(|c| c.iter().map(|id| id.to_string()).collect())
            .collect();
        // One call per batch, a few at a time, as in the AWS adapter.
        let batches: Vec<Vec<Instance>> = stream::iter(chunks)
            .map(|chunk| {
                self.run("DescribeInstances", move |ctx| {
                    ctx.call("DescribeInstances")?;
                    Ok(chunk
                        .iter()
                        .filter_map(|id| ctx.region.instances.get(id.as_str()))
                        .map(|i| ctx.clock.observe(i))
                        .collect())
                })
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(batches.into_iter().flatten().collect())
    }

    async fn clones(&self) -> Result<Vec<Instance>, CloudError> {
        self.read("DescribeInstances", |ctx| {
            let r = &mut *ctx.region;
            let (instances, terminated_at) = (&r.instances, &r.terminated_at);
            // EC2 lists a terminated instance for about an hour (EC2 User Guide, "Terminate
            // Amazon EC2 instances"); after that it is gone from every answer.
            let visible = |id: &String| {
                instances.get(id).is_some_and(|i| {
                    !i.state.is_gone()
                        || terminated_at
                            .get(id)
                            .is_some_and(|t| ctx.clock.now - *t < TimeDelta::hours(1))
                })
            };
            r.clones.retain(visible);
            let found: Vec<Instance> = r
                .clones
                .iter()
                .map(|id| ctx.clock.observe(&instances[id]))
                .collect();
            let calls = pages(found.len(), INSTANCE_PAGE);
            (found, calls)
        })
        .await
    }

    async fn group_membership(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, String>, CloudError> {
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.read("DescribeAutoScalingInstances", |ctx| {
            let found = ids
                .iter()
                .filter_map(|id| Some((id.clone(), ctx.region.membership.get(id)?.clone())))
                .collect();
            (found, ids.len().div_ceil(MEMBERSHIP_BATCH))
        })
        .await
    }

    async fn group_tags(
        &self,
        groups: &[String],
        key: &str,
    ) -> Result<BTreeMap<String, String>, CloudError> {
        if groups.is_empty() {
            return Ok(BTreeMap::new());
        }
        self.read("DescribeTags", |ctx| {
            let found = groups
                .iter()
                .filter_map(|n| {
                    let g = ctx.region.groups.get(n)?;
                    Some((n.clone(), g.tags.get(key)?.clone()))
                })
                .collect();
            (found, groups.len().div_ceil(GROUP_TAG_BATCH))
        })
        .await
    }

    async fn activities(
        &self,
        group: &str,
        since: DateTime<Utc>,
    ) -> Result<Vec<Activity>, CloudError> {
        self.read("DescribeScalingActivities", |ctx| {
            let all = ctx.region.activities.get(group).map_or(&[][..], |v| v);
            // Newest first, as Auto Scaling lists them, read as the AWS adapter reads them.
            let recent: Vec<_> = all
                .iter()
                .rev()
                .take_while(|(at, _, _)| *at >= since)
                .collect();
            let found = recent
                .iter()
                .filter_map(|(at, d, c)| activity::read(d, c, "Successful", *at))
                .collect();
            // Pages of the AWS adapter: the recent ones and the first older one, if any.
            let listed = (recent.len() + usize::from(recent.len() < all.len())).max(1);
            (found, pages(listed, ACTIVITY_PAGE))
        })
        .await
    }

    async fn launch_specs(
        &self,
        refs: &[LaunchRef],
    ) -> Result<BTreeMap<String, LaunchSpec>, CloudError> {
        let mut configurations = BTreeSet::new();
        let mut templates: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for r in refs {
            match r {
                LaunchRef::LaunchConfiguration { name } => {
                    configurations.insert(name);
                }
                LaunchRef::LaunchTemplate { id, version, .. } => {
                    templates.entry(id).or_default().insert(version);
                }
            }
        }
        if !configurations.is_empty() {
            let calls = configurations.len().div_ceil(LAUNCH_CONFIG_BATCH);
            self.read("DescribeLaunchConfigurations", |_| ((), calls))
                .await?;
        }
        // As the AWS adapter: `$Latest` and `$Default` of every template of the region in one
        // paginated read when more than one template needs them, and a call per template for
        // the numbered versions that answer does not hold.
        let floating = templates
            .values()
            .filter(|vs| vs.iter().any(|v| v.starts_with('$')))
            .count();
        let region_wide = floating > 1;
        const OP: &str = "DescribeLaunchTemplateVersions";
        let answered: BTreeMap<String, BTreeSet<i64>> = if region_wide {
            self.read(OP, |ctx| {
                let answer: BTreeMap<String, BTreeSet<i64>> = ctx
                    .region
                    .templates
                    .iter()
                    .filter_map(|(id, t)| {
                        let latest = *t.versions.keys().next_back()?;
                        Some((id.clone(), BTreeSet::from([latest, t.default_version])))
                    })
                    .collect();
                let versions = answer.values().map(BTreeSet::len).sum();
                let calls = pages(versions, TEMPLATE_VERSION_PAGE);
                (answer, calls)
            })
            .await?
        } else {
            BTreeMap::new()
        };
        for (id, versions) in &templates {
            let have = answered.get(*id);
            let gone = region_wide && have.is_none();
            let held = |v: &str| {
                v.starts_with('$')
                    || v.parse()
                        .is_ok_and(|n| have.is_some_and(|h| h.contains(&n)))
            };
            if !(gone || (region_wide && versions.iter().all(|v| held(v)))) {
                self.run(OP, |ctx| ctx.call(OP)).await?;
            }
        }
        // What those calls answered, resolved: no call of its own.
        let (resolved, _) = self.cloud.operate(&self.name, |ctx| {
            Ok(refs
                .iter()
                .filter_map(|r| Some((r.key(), ctx.region.resolve(r)?)))
                .collect())
        });
        resolved
    }

    async fn images(&self, ids: &[String]) -> Result<Vec<Ami>, CloudError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.read("DescribeImages", |ctx| {
            let mut seen = HashSet::new();
            let found = ids
                .iter()
                .filter(|id| seen.insert(id.as_str()))
                .filter_map(|id| ctx.region.amis.get(id).cloned())
                .collect();
            (found, ids.len().div_ceil(IMAGE_BATCH))
        })
        .await
    }

    async fn instance_types(&self) -> Result<Vec<InstanceTypeSpec>, CloudError> {
        let types = self
            .read("DescribeInstanceTypes", |ctx| {
                let types = ctx
                    .region
                    .instance_types
                    .clone()
                    .unwrap_or_else(bundled_types);
                let calls = pages(types.len(), TYPE_PAGE);
                (types, calls)
            })
            .await?;
        // Cloned outside the lock: the catalog is the one large read.
        Ok(Arc::unwrap_or_clone(types))
    }

    async fn offerings(&self) -> Result<BTreeMap<String, BTreeSet<String>>, CloudError> {
        self.read("DescribeInstanceTypeOfferings", |ctx| {
            let offerings = match &ctx.region.offerings {
                Some(o) => o.clone(),
                None => {
                    let types = ctx
                        .region
                        .instance_types
                        .clone()
                        .unwrap_or_else(bundled_types);
                    let all: BTreeSet<String> =
                        types.iter().map(|t| t.instance_type.clone()).collect();
                    ctx.region
                        .azs
                        .iter()
                        .map(|az| (az.clone(), all.clone()))
                        .collect()
                }
            };
            let pairs = offerings.values().map(BTreeSet::len).sum();
            (offerings, pages(pairs, OFFERING_PAGE))
        })
        .await
    }

    async fn target_health(
        &self,
        asks: &BTreeMap<LoadBalancer, Vec<String>>,
    ) -> Result<BTreeMap<String, Vec<TargetHealth>>, CloudError> {
        let mut out: BTreeMap<String, Vec<TargetHealth>> = BTreeMap::new();
        for (lb, ids) in asks {
            let op = match lb {
                LoadBalancer::TargetGroup(_) => "DescribeTargetHealth",
                LoadBalancer::Classic(_) => "DescribeInstanceHealth",
            };
            let states = self
                .read(op, |ctx| {
                    let r = &*ctx.region;
                    let states: Vec<(String, String)> = ids
                        .iter()
                        .map(|id| (id.clone(), health(r, ctx.clock.now, lb, id)))
                        .collect();
                    (states, 1)
                })
                .await?;
            for (id, state) in states {
                out.entry(id).or_default().push(TargetHealth {
                    load_balancer: lb.clone(),
                    state,
                });
            }
        }
        Ok(out)
    }

    async fn spot_prices(
        &self,
        products: &[String],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<SpotPricePoint>, CloudError> {
        self.read("DescribeSpotPriceHistory", |ctx| {
            // Nothing after the window's end, nor after the clock's now.
            let now = ctx.clock.now.min(end);
            let mut found = Vec::new();
            for ((product, instance_type, az), series) in &ctx.region.spot_prices {
                // No product filter means every product, as in EC2.
                if !products.is_empty() && !products.contains(product) {
                    continue;
                }
                let point = |(timestamp, price): (&DateTime<Utc>, &f64)| SpotPricePoint {
                    instance_type: instance_type.clone(),
                    availability_zone: az.clone(),
                    product_description: product.clone(),
                    price: *price,
                    timestamp: *timestamp,
                };
                // The price in effect at `start`, then every change up to the end.
                found.extend(series.range(..=start.min(now)).next_back().map(point));
                if start < now {
                    let since = (Bound::Excluded(start), Bound::Included(now));
                    found.extend(series.range(since).map(point));
                }
            }
            let calls = pages(found.len(), SPOT_PRICE_PAGE);
            (found, calls)
        })
        .await
    }

    async fn on_demand_prices(
        &self,
        oses: &[Os],
    ) -> Result<BTreeMap<String, OsPrices>, CloudError> {
        let oses: BTreeSet<Os> = oses.iter().copied().collect();
        let mut found: BTreeMap<String, OsPrices> = BTreeMap::new();
        // One paginated query per OS, as in the AWS adapter.
        for os in oses {
            let prices: Vec<(String, f64)> = self
                .read("GetProducts", |ctx| {
                    let prices: Vec<(String, f64)> = ctx
                        .region
                        .on_demand
                        .iter()
                        .filter_map(|(t, p)| Some((t.clone(), p.get(os)?)))
                        .collect();
                    let calls = pages(prices.len(), PRODUCT_PAGE);
                    (prices, calls)
                })
                .await?;
            for (instance_type, price) in prices {
                found.entry(instance_type).or_default().set(os, Some(price));
            }
        }
        Ok(found)
    }

    async fn owned_templates(&self) -> Result<Vec<OwnedTemplateRecord>, CloudError> {
        self.read("DescribeLaunchTemplates", |ctx| {
            let found = ctx
                .region
                .templates
                .iter()
                .filter_map(|(id, t)| {
                    Some(OwnedTemplateRecord {
                        id: id.clone(),
                        name: t.name.clone()?,
                        launch_configuration: t.launch_configuration.clone()?,
                        created: t.created,
                    })
                })
                .collect();
            (found, 1)
        })
        .await
    }

    fn call_counts(&self) -> BTreeMap<String, u64> {
        let state = self.cloud.lock();
        let Some(region) = state.regions.get(&self.name) else {
            return BTreeMap::new();
        };
        region
            .calls
            .iter()
            .map(|(op, n)| {
                (
                    op.to_string(),
                    n - self.baseline.get(op).copied().unwrap_or(0),
                )
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// How `lb` sees instance `id`: a member of a group registered with `lb` is `initial` for the
/// region's health delay after it joined, then `healthy` (or `unhealthy`, if told never to
/// pass); anything else is not registered (`unused`, as a target group says).
pub(super) fn health(r: &RegionState, now: DateTime<Utc>, lb: &LoadBalancer, id: &str) -> String {
    let registered = r
        .membership
        .get(id)
        .and_then(|g| r.groups.get(g))
        .is_some_and(|g| g.load_balancers().contains(lb));
    let Some(joined) = r.joined.get(id).filter(|_| registered) else {
        return "unused".into();
    };
    if now < *joined + r.health_delay {
        "initial".into()
    } else if r.never_healthy.contains(id) {
        "unhealthy".into()
    } else {
        "healthy".into()
    }
}
