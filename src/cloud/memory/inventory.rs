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
use crate::cloud::limits::{
    GROUP_PAGE, IMAGE_BATCH, INSTANCE_ID_BATCH, INSTANCE_PAGE, LAUNCH_CONFIG_BATCH,
    MEMBERSHIP_BATCH, OFFERING_PAGE, PRODUCT_PAGE, SPOT_PRICE_PAGE, TYPE_PAGE,
};
use crate::cloud::{CloudError, GroupQuery, Inventory};
use crate::model::{
    Ami, Group, Instance, InstanceTypeSpec, LaunchRef, LaunchSpec, Os, OsPrices,
    OwnedTemplateRecord, SpotPricePoint,
};

fn set_price(prices: &mut OsPrices, os: Os, price: Option<f64>) {
    let slot = match os {
        Os::Linux => &mut prices.linux,
        Os::Windows => &mut prices.windows,
        Os::Rhel => &mut prices.rhel,
        Os::Suse => &mut prices.suse,
    };
    *slot = price;
}

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
        self.run(|ctx| {
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
                .map(|g| r.observe_group(g, ctx.clock))
                .collect();
            ctx.pages("DescribeAutoScalingGroups", found.len(), GROUP_PAGE)?;
            // The AWS adapter asks for each group's latest instance refresh, one call each; a
            // failed one is that group's, as in the adapter.
            let mut found = found;
            for g in &mut found {
                if let Err(e) = ctx.call("DescribeInstanceRefreshes") {
                    g.read_failures.push(e.as_read_failure());
                }
            }
            Ok(found)
        })
        .await
    }

    async fn instances(&self, ids: &[String]) -> Result<Vec<Instance>, CloudError> {
        self.run(|ctx| {
            ctx.batches("DescribeInstances", ids.len(), INSTANCE_ID_BATCH)?;
            let mut seen = HashSet::new();
            Ok(ids
                .iter()
                .filter(|id| seen.insert(id.as_str()))
                .filter_map(|id| ctx.region.instances.get(id))
                .map(|i| ctx.clock.observe(i))
                .collect())
        })
        .await
    }

    async fn clones(&self) -> Result<Vec<Instance>, CloudError> {
        self.run(|ctx| {
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
            ctx.pages("DescribeInstances", found.len(), INSTANCE_PAGE)?;
            Ok(found)
        })
        .await
    }

    async fn group_membership(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, String>, CloudError> {
        self.run(|ctx| {
            ctx.batches("DescribeAutoScalingInstances", ids.len(), MEMBERSHIP_BATCH)?;
            Ok(ids
                .iter()
                .filter_map(|id| Some((id.clone(), ctx.region.membership.get(id)?.clone())))
                .collect())
        })
        .await
    }

    async fn launch_specs(
        &self,
        refs: &[LaunchRef],
    ) -> Result<BTreeMap<String, LaunchSpec>, CloudError> {
        self.run(|ctx| {
            let mut configurations = BTreeSet::new();
            let mut templates = BTreeSet::new();
            for r in refs {
                match r {
                    LaunchRef::LaunchConfiguration { name } => configurations.insert(name),
                    LaunchRef::LaunchTemplate { id, .. } => templates.insert(id),
                };
            }
            ctx.batches(
                "DescribeLaunchConfigurations",
                configurations.len(),
                LAUNCH_CONFIG_BATCH,
            )?;
            ctx.batches("DescribeLaunchTemplateVersions", templates.len(), 1)?;
            Ok(refs
                .iter()
                .filter_map(|r| Some((r.key(), ctx.region.resolve(r)?)))
                .collect())
        })
        .await
    }

    async fn images(&self, ids: &[String]) -> Result<Vec<Ami>, CloudError> {
        self.run(|ctx| {
            ctx.batches("DescribeImages", ids.len(), IMAGE_BATCH)?;
            let mut seen = HashSet::new();
            Ok(ids
                .iter()
                .filter(|id| seen.insert(id.as_str()))
                .filter_map(|id| ctx.region.amis.get(id).cloned())
                .collect())
        })
        .await
    }

    async fn instance_types(&self) -> Result<Vec<InstanceTypeSpec>, CloudError> {
        let types = self
            .run(|ctx| {
                let types = ctx
                    .region
                    .instance_types
                    .clone()
                    .unwrap_or_else(bundled_types);
                ctx.pages("DescribeInstanceTypes", types.len(), TYPE_PAGE)?;
                Ok(types)
            })
            .await?;
        // Cloned outside the lock: the catalog is the one large read.
        Ok(Arc::unwrap_or_clone(types))
    }

    async fn offerings(&self) -> Result<BTreeMap<String, BTreeSet<String>>, CloudError> {
        self.run(|ctx| {
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
            ctx.pages("DescribeInstanceTypeOfferings", pairs, OFFERING_PAGE)?;
            Ok(offerings)
        })
        .await
    }

    async fn spot_prices(
        &self,
        products: &[String],
        start: DateTime<Utc>,
    ) -> Result<Vec<SpotPricePoint>, CloudError> {
        self.run(|ctx| {
            let now = ctx.clock.now;
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
                // The price in effect at `start`, then every change up to now.
                found.extend(series.range(..=start.min(now)).next_back().map(point));
                if start < now {
                    let since = (Bound::Excluded(start), Bound::Included(now));
                    found.extend(series.range(since).map(point));
                }
            }
            ctx.pages("DescribeSpotPriceHistory", found.len(), SPOT_PRICE_PAGE)?;
            Ok(found)
        })
        .await
    }

    async fn on_demand_prices(
        &self,
        oses: &[Os],
    ) -> Result<BTreeMap<String, OsPrices>, CloudError> {
        self.run(|ctx| {
            let oses: BTreeSet<Os> = oses.iter().copied().collect();
            let mut found: BTreeMap<String, OsPrices> = BTreeMap::new();
            for &os in &oses {
                let mut products = 0;
                for (instance_type, prices) in &ctx.region.on_demand {
                    if let Some(price) = prices.get(os) {
                        set_price(
                            found.entry(instance_type.clone()).or_default(),
                            os,
                            Some(price),
                        );
                        products += 1;
                    }
                }
                ctx.pages("GetProducts", products, PRODUCT_PAGE)?;
            }
            Ok(found)
        })
        .await
    }

    async fn owned_templates(&self) -> Result<Vec<OwnedTemplateRecord>, CloudError> {
        self.run(|ctx| {
            ctx.call("DescribeLaunchTemplates")?;
            Ok(ctx
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
                .collect())
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
