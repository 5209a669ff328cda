//! Observe: read one region into a [`Snapshot`] through the [`Inventory`] boundary.
//!
//! It makes the minimum read set: the selected groups (filtered server-side where the tag
//! filter allows), their members and every clone in batches, the launch specs and AMIs in use,
//! instance types and their offerings, spot price history for the products in use over the
//! longest price window, and on-demand prices for the operating systems in use. Reads that do
//! not wait on each other's answers go out together. Instance types, offerings and on-demand
//! prices come from the process's [`ReadCache`] while they are fresh, and the observation says
//! how old each one is. Live data comes first; where instance types or on-demand prices cannot
//! be read, the bundled catalog and price table stand in, and the snapshot says so. It decides
//! nothing: that is the planner's job.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use chrono::{DateTime, Duration, Utc};

use std::sync::Arc;

use futures::StreamExt;

use crate::cache::{CachedRead, Offerings, OsPriceList, ReadCache};
use crate::catalog::Catalog;
use crate::cloud::{CloudError, GroupQuery, Inventory};
use crate::model::{
    Group, Instance, LoadBalancer, OnDemandPrices, Os, OsPrices, PriceSource, Snapshot,
};
use crate::price_table::BundledPrices;
use crate::pricing::GroupPricing;
use crate::settings::{GroupPolicy, Settings};

/// A region's snapshot, each group's policy as resolved for this pass, and what had to be
/// filled in from bundled data.
#[derive(Debug, Clone)]
pub struct Observation {
    pub snapshot: Snapshot,
    /// Every listed group's policy, by name: resolved here once, reused by the planner and the
    /// savings report.
    pub policies: BTreeMap<String, GroupPolicy>,
    /// Reads that failed and were replaced by bundled data, in plain words.
    pub warnings: Vec<String>,
    /// Figures taken from the cache instead of read, with their age.
    pub cached: Vec<CachedRead>,
}

/// Reads one region; `cache` holds what earlier passes of this process read.
pub async fn observe<I: Inventory>(
    inv: &I,
    settings: &Settings,
    cache: &ReadCache,
    now: DateTime<Utc>,
) -> Result<Observation, CloudError> {
    let region = inv.region().to_string();
    let mut warnings = Vec::new();
    let mut cached = Vec::new();
    let query = GroupQuery::for_settings(settings);
    let (groups, clones) = futures::try_join!(inv.groups(&query), inv.clones())?;
    let mut clones = clones;
    let policies = settings.policies(&groups);
    let mut snapshot = Snapshot {
        region: region.clone(),
        groups: Vec::new(),
        instances: BTreeMap::new(),
        launch_specs: BTreeMap::new(),
        amis: BTreeMap::new(),
        instance_types: BTreeMap::new(),
        offerings: BTreeMap::new(),
        spot_prices: Vec::new(),
        on_demand: OnDemandPrices {
            source: PriceSource::Live,
            prices: BTreeMap::new(),
        },
        owned_templates: Vec::new(),
        activities: BTreeMap::new(),
        launch_refused: None,
        target_health: BTreeMap::new(),
    };
    if groups.is_empty() && clones.is_empty() {
        // Nothing to do here: no need to read types and prices.
        return Ok(Observation {
            snapshot,
            policies,
            warnings,
            cached,
        });
    }

    // Which group each clone is attached to, when its group is not among those listed (not
    // opted in any more): an attached clone is an ordinary member, never an orphan.
    let members: BTreeSet<&str> = groups
        .iter()
        .flat_map(|g| g.members.iter().map(|m| m.instance_id.as_str()))
        .collect();
    // A clone of a listed group is a member or not, as the listing says.
    let listed: BTreeSet<&str> = groups.iter().map(|g| g.name.as_str()).collect();
    let unknown: Vec<String> = clones
        .iter()
        .filter(|c| c.auto_scaling_group.is_none() && !members.contains(c.instance_id.as_str()))
        .filter(|c| c.clone_of().is_none_or(|(g, _)| !listed.contains(g)))
        // A terminated clone belongs to no group any more.
        .filter(|c| !c.state.is_gone())
        .map(|c| c.instance_id.clone())
        .collect();
    let clone_ids: BTreeSet<&str> = clones.iter().map(|c| c.instance_id.as_str()).collect();
    let wanted: Vec<String> = members
        .iter()
        .filter(|id| !clone_ids.contains(**id))
        .map(|id| id.to_string())
        .collect();
    let refs: Vec<_> = groups
        .iter()
        .filter_map(|g| g.launch.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();

    // Everything else at once: none of these waits on another's answer, except the AMIs (on
    // the launch specs) and the prices (on the AMIs, which say the OS).
    let specs_and_prices = async {
        let specs = inv.launch_specs(&refs).await?;
        let image_ids: Vec<String> = specs
            .values()
            .map(|s| s.image_id.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let amis = inv.images(&image_ids).await?;
        let mut partial = Snapshot {
            launch_specs: specs,
            ..snapshot.clone()
        };
        for ami in amis {
            partial.amis.insert(ami.image_id.clone(), ami);
        }
        // The products and OSes the groups are priced as, and the longest price window.
        let mut oses: BTreeSet<Os> = BTreeSet::new();
        let mut products: BTreeSet<String> = BTreeSet::new();
        let mut window = settings.group.spot_price_window_minutes;
        for g in &groups {
            // Groups with unusable settings are left alone and costed under the global
            // settings.
            let policy = match &policies[&g.name] {
                GroupPolicy::OptedIn(p) => p,
                GroupPolicy::NotOptedIn | GroupPolicy::Invalid(_) => &settings.group,
            };
            let pricing = GroupPricing::for_group(&partial, g, policy);
            window = window.max(pricing.window);
            oses.insert(pricing.os);
            products.insert(pricing.product);
        }
        // Orphans of groups not listed are costed as Linux.
        oses.insert(Os::Linux);
        products.insert(Os::Linux.spot_product_description().to_string());
        let products: Vec<String> = products.into_iter().collect();
        let start = now - Duration::minutes(i64::from(window));
        let oses: Vec<Os> = oses.into_iter().collect();
        let (spot, on_demand) = futures::join!(
            inv.spot_prices(&products, start, now),
            on_demand_prices(inv, cache, &oses, now)
        );
        Ok::<_, CloudError>((partial, spot?, on_demand))
    };
    let membership = async {
        if unknown.is_empty() {
            Ok(BTreeMap::new())
        } else {
            inv.group_membership(&unknown).await
        }
    };
    // The recent scaling activities of the groups a stopped pass may have left a swap in: the
    // planner settles such a swap from them (ARCHITECTURE.md, "The swap protocol as a state
    // machine"). Rare, so one call per group is fine.
    let doubtful: Vec<&str> = groups
        .iter()
        .filter(|g| matches!(policies.get(&g.name), Some(GroupPolicy::OptedIn(_))))
        .filter(|g| crate::protocol::in_doubt(&g.tags, now))
        .map(|g| g.name.as_str())
        .collect();
    let since = now - Duration::minutes(crate::protocol::ACTIVITY_LOOKBACK_MINUTES);
    let activities = futures::stream::iter(doubtful)
        .map(|g| async move { (g, inv.activities(g, since).await) })
        .buffer_unordered(crate::cloud::limits::READ_CONCURRENCY)
        .collect::<Vec<_>>();
    // How its group's load balancers see each clone attached in a swap whose instance is still
    // a member: the planner lets that instance go only once the clone serves everywhere
    // (README, "How it decides"). One call per load balancer, only for those clones.
    let asks = health_asks(&groups, &clones);
    let health = async {
        if asks.is_empty() {
            Ok(BTreeMap::new())
        } else {
            inv.target_health(&asks).await
        }
    };
    let (membership, instances, specs_and_prices, types, offerings, owned, activities, health) = futures::join!(
        membership,
        inv.instances(&wanted),
        specs_and_prices,
        cached_read(cache.types(&region, now), || async {
            let types = Arc::new(inv.instance_types().await?);
            cache.put_types(&region, now, types.clone());
            Ok(types)
        }),
        cached_read(cache.offerings(&region, now), || async {
            let offerings: Arc<Offerings> = Arc::new(inv.offerings().await?);
            cache.put_offerings(&region, now, offerings.clone());
            Ok(offerings)
        }),
        inv.owned_templates(),
        activities,
        health,
    );
    match health {
        Ok(h) => snapshot.target_health = h,
        Err(e) => warnings.push(format!(
            "load balancer health of swapped-in clones unknown, their swaps wait: {e}"
        )),
    }
    for (g, read) in activities {
        match read {
            Ok(a) => {
                snapshot.activities.insert(g.to_string(), a);
            }
            Err(e) => warnings.push(format!(
                "scaling activities of {g} unknown, a swap a stopped pass left there is not settled this pass: {e}"
            )),
        }
    }

    let membership = membership?;
    for c in &mut clones {
        if let Some(g) = membership.get(&c.instance_id) {
            c.auto_scaling_group = Some(g.clone());
        }
    }
    for i in instances?.into_iter().chain(clones) {
        snapshot.instances.insert(i.instance_id.clone(), i);
    }
    let (partial, spot_prices, on_demand) = specs_and_prices?;
    snapshot.launch_specs = partial.launch_specs;
    snapshot.amis = partial.amis;
    snapshot.spot_prices = spot_prices;
    // Only to remove the ones no group needs any more: a failed read removes none this pass.
    match owned {
        Ok(t) => snapshot.owned_templates = t,
        Err(e) => warnings.push(format!(
            "spotswap's launch templates unknown, none removed this pass: {e}"
        )),
    }
    match types {
        Ok((types, from_cache)) => {
            cached.extend(from_cache);
            for t in types.iter() {
                snapshot
                    .instance_types
                    .insert(t.instance_type.clone(), t.clone());
            }
        }
        Err(e) => warnings.push(format!(
            "instance types from the bundled catalog ({}): {e}",
            crate::catalog::bundled_source()
        )),
    }
    Catalog::bundled().fill_missing(&mut snapshot.instance_types);
    match offerings {
        Ok((o, from_cache)) => {
            cached.extend(from_cache);
            snapshot.offerings = Arc::unwrap_or_clone(o);
        }
        Err(e) => warnings.push(format!(
            "instance type offerings unknown, spot prices stand for them: {e}"
        )),
    }

    match on_demand {
        Ok((prices, from_cache)) if !prices.is_empty() => {
            cached.extend(from_cache);
            snapshot.on_demand.prices = prices;
        }
        result => {
            let why = match result {
                Err(e) => e.to_string(),
                Ok(_) => "the pricing API returned no prices".to_string(),
            };
            match BundledPrices::bundled().on_demand(&region) {
                Some(bundled) => {
                    warnings.push(format!(
                        "on-demand prices from the {}: {why}",
                        bundled.source
                    ));
                    snapshot.on_demand = bundled;
                }
                None => {
                    warnings.push(format!(
                        "no on-demand prices for {region} (the bundled table covers {} only): {why}",
                        BundledPrices::bundled().region()
                    ));
                    snapshot.on_demand.source = PriceSource::Bundled {
                        region: BundledPrices::bundled().region().to_string(),
                        date: BundledPrices::bundled().date().to_string(),
                    };
                }
            }
        }
    }
    snapshot.groups = groups;
    Ok(Observation {
        snapshot,
        policies,
        warnings,
        cached,
    })
}

/// For each load balancer of a group, the clones attached to that group whose replaced
/// instance is still a member (a swap waiting for the clone to serve).
fn health_asks(groups: &[Group], clones: &[Instance]) -> BTreeMap<LoadBalancer, Vec<String>> {
    let mut asks: BTreeMap<LoadBalancer, Vec<String>> = BTreeMap::new();
    // Each such group with its members, looked up by id (a scan per clone would be quadratic
    // in a large group).
    let by_name: BTreeMap<&str, (&Group, HashSet<&str>)> = groups
        .iter()
        .filter(|g| g.behind_load_balancers())
        .map(|g| {
            let members = g.members.iter().map(|m| m.instance_id.as_str()).collect();
            (g.name.as_str(), (g, members))
        })
        .collect();
    if by_name.is_empty() {
        return asks;
    }
    for c in clones {
        let Some((group, replaces)) = crate::protocol::clone_of(c) else {
            continue;
        };
        let Some((g, members)) = by_name.get(group) else {
            continue;
        };
        if replaces.is_empty()
            || !members.contains(c.instance_id.as_str())
            || !members.contains(replaces)
        {
            continue;
        }
        for lb in g.load_balancers() {
            asks.entry(lb).or_default().push(c.instance_id.clone());
        }
    }
    asks
}

/// The cached value if fresh (and the record of its use), else what `read` returns.
async fn cached_read<T, F, Fut>(
    fresh: Option<(T, CachedRead)>,
    read: F,
) -> Result<(T, Option<CachedRead>), CloudError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, CloudError>>,
{
    match fresh {
        Some((value, used)) => Ok((value, Some(used))),
        None => Ok((read().await?, None)),
    }
}

/// On-demand prices for `oses`: each OS from the cache while fresh, the others in one read.
async fn on_demand_prices<I: Inventory>(
    inv: &I,
    cache: &ReadCache,
    oses: &[Os],
    now: DateTime<Utc>,
) -> Result<(BTreeMap<String, OsPrices>, Vec<CachedRead>), CloudError> {
    let region = inv.region();
    let mut lists: Vec<(Os, Arc<OsPriceList>)> = Vec::new();
    let mut used = Vec::new();
    let mut missing = Vec::new();
    for &os in oses {
        match cache.on_demand(region, os, now) {
            Some((list, u)) => {
                lists.push((os, list));
                used.push(u);
            }
            None => missing.push(os),
        }
    }
    if !missing.is_empty() {
        let read = inv.on_demand_prices(&missing).await?;
        for os in missing {
            let list: OsPriceList = read
                .iter()
                .filter_map(|(t, p)| Some((t.clone(), p.get(os)?)))
                .collect();
            let list = Arc::new(list);
            // An empty answer is not kept: the bundled table stands in, and the next pass asks
            // again.
            if !list.is_empty() {
                cache.put_on_demand(region, os, now, list.clone());
            }
            lists.push((os, list));
        }
    }
    let mut prices: BTreeMap<String, OsPrices> = BTreeMap::new();
    for (os, list) in lists {
        for (t, p) in list.iter() {
            prices.entry(t.clone()).or_default().set(os, Some(*p));
        }
    }
    Ok((prices, used))
}
