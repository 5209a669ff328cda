//! Observe: read one region into a [`Snapshot`] through the [`Inventory`] boundary.
//!
//! It makes the minimum read set: the selected groups (filtered server-side where the tag
//! filter allows), their members and every clone in batches, the launch specs and AMIs in use,
//! instance types and their offerings, spot price history for the products in use over the
//! longest price window, and on-demand prices for the operating systems in use. Live data comes
//! first; where instance types or on-demand prices cannot be read, the bundled catalog and
//! price table stand in, and the snapshot says so. It decides nothing: that is the planner's job.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use crate::catalog::Catalog;
use crate::cloud::{CloudError, GroupQuery, Inventory};
use crate::model::{OnDemandPrices, Os, PriceSource, Snapshot};
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
}

/// Reads one region.
pub async fn observe<I: Inventory>(
    inv: &I,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Observation, CloudError> {
    let region = inv.region().to_string();
    let mut warnings = Vec::new();
    let groups = inv.groups(&GroupQuery::for_settings(settings)).await?;
    let policies = settings.policies(&groups);
    let mut clones = inv.clones().await?;
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
    };
    if groups.is_empty() && clones.is_empty() {
        // Nothing to do here: no need to read types and prices.
        return Ok(Observation {
            snapshot,
            policies,
            warnings,
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
    if !unknown.is_empty() {
        let membership = inv.group_membership(&unknown).await?;
        for c in &mut clones {
            if let Some(g) = membership.get(&c.instance_id) {
                c.auto_scaling_group = Some(g.clone());
            }
        }
    }
    let clone_ids: BTreeSet<String> = clones.iter().map(|c| c.instance_id.clone()).collect();
    let wanted: Vec<String> = members
        .iter()
        .filter(|id| !clone_ids.contains(**id))
        .map(|id| id.to_string())
        .collect();
    for i in inv.instances(&wanted).await?.into_iter().chain(clones) {
        snapshot.instances.insert(i.instance_id.clone(), i);
    }

    let refs: Vec<_> = groups
        .iter()
        .filter_map(|g| g.launch.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    snapshot.launch_specs = inv.launch_specs(&refs).await?;
    // Only to remove the ones no group needs any more: a failed read removes none this pass.
    match inv.owned_templates().await {
        Ok(t) => snapshot.owned_templates = t,
        Err(e) => warnings.push(format!(
            "spotswap's launch templates unknown, none removed this pass: {e}"
        )),
    }
    let image_ids: Vec<String> = snapshot
        .launch_specs
        .values()
        .map(|s| s.image_id.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    for ami in inv.images(&image_ids).await? {
        snapshot.amis.insert(ami.image_id.clone(), ami);
    }

    match inv.instance_types().await {
        Ok(types) => {
            for t in types {
                snapshot.instance_types.insert(t.instance_type.clone(), t);
            }
        }
        Err(e) => warnings.push(format!(
            "instance types from the bundled catalog ({}): {e}",
            crate::catalog::bundled_source()
        )),
    }
    Catalog::bundled().fill_missing(&mut snapshot.instance_types);
    match inv.offerings().await {
        Ok(o) => snapshot.offerings = o,
        Err(e) => warnings.push(format!(
            "instance type offerings unknown, spot prices stand for them: {e}"
        )),
    }

    // The products and OSes the groups are priced as, and the longest price window.
    let mut oses: BTreeSet<Os> = BTreeSet::new();
    let mut products: BTreeSet<String> = BTreeSet::new();
    let mut window = settings.group.spot_price_window_minutes;
    for g in &groups {
        // Groups with unusable settings are left alone and costed under the global settings.
        let policy = match &policies[&g.name] {
            GroupPolicy::OptedIn(p) => p,
            GroupPolicy::NotOptedIn | GroupPolicy::Invalid(_) => &settings.group,
        };
        let pricing = GroupPricing::for_group(&snapshot, g, policy);
        window = window.max(pricing.window);
        oses.insert(pricing.os);
        products.insert(pricing.product);
    }
    // Orphans of groups not listed are costed as Linux.
    oses.insert(Os::Linux);
    products.insert(Os::Linux.spot_product_description().to_string());
    let products: Vec<String> = products.into_iter().collect();
    let start = now - Duration::minutes(i64::from(window));
    snapshot.spot_prices = inv.spot_prices(&products, start).await?;

    let oses: Vec<Os> = oses.into_iter().collect();
    match inv.on_demand_prices(&oses).await {
        Ok(prices) if !prices.is_empty() => snapshot.on_demand.prices = prices,
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
    })
}
