//! Pricing: how a group is priced, what an instance costs, and where every price came from.
//!
//! A group is priced as the operating system it runs (its AMI's platform, unless the
//! `spot-product-description` setting says otherwise), so Windows and RHEL groups are compared
//! with Windows and RHEL prices. On-demand prices are list prices times the group's
//! `on-demand-price-multiplier`; spot prices are judged per pool (type and AZ) over the group's
//! price window, by their highest value, since one tick is noise. An unknown price is unknown,
//! never zero: an instance without one is not eligible, and counts as unpriced in sums.
//!
//! The planner and the savings report both cost instances here, with one [`Prices`] built per
//! region per pass, so one report never shows two prices for the same thing. Pure: no I/O, no
//! clock (`now` is given), no logging.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::model::{
    Group, Instance, Market, OnDemandPrices, Os, PriceSource, Snapshot, SpotPricePoint,
};
use crate::settings::GroupSettings;

/// A price a decision or a sum used, with its provenance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceUsed {
    pub instance_type: String,
    pub market: Market,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability_zone: Option<String>,
    pub os: Os,
    /// USD per hour, after the on-demand multiplier for on-demand prices.
    pub price: f64,
    /// `pricing API`, `bundled us-east-1 table of 2023-08-30`, `spot price history, highest
    /// over 60 min`.
    pub source: String,
}

/// How one group is priced.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupPricing {
    /// The OS whose prices apply.
    pub os: Os,
    /// The spot product description spot prices are read under.
    pub product: String,
    /// Multiplies on-demand list prices.
    pub multiplier: f64,
    /// Minutes over which spot prices are judged.
    pub window: u32,
}

impl GroupPricing {
    /// Pricing for an OS under a group's settings: the product setting wins over `os`.
    pub fn new(os: Os, policy: &GroupSettings) -> Self {
        let (os, product) = match &policy.spot_product_description {
            Some(p) => (Os::from_product_description(p).unwrap_or(os), p.clone()),
            None => (os, os.spot_product_description().to_string()),
        };
        GroupPricing {
            os,
            product,
            multiplier: policy.on_demand_price_multiplier,
            window: policy.spot_price_window_minutes,
        }
    }

    /// How a group is priced: the product setting when given, else the platform of the AMI its
    /// launch spec names, else Linux (the AMI is unknown, so nothing says otherwise).
    pub fn for_group(snapshot: &Snapshot, group: &Group, policy: &GroupSettings) -> Self {
        let os = group_ami_os(snapshot, group).unwrap_or(Os::Linux);
        GroupPricing::new(os, policy)
    }
}

/// The OS of the AMI a group launches, when its launch spec and the AMI are both known.
fn group_ami_os(snapshot: &Snapshot, group: &Group) -> Option<Os> {
    let spec = snapshot.launch_specs.get(&group.launch.as_ref()?.key())?;
    snapshot.amis.get(&spec.image_id).map(Os::of_ami)
}

/// The provenance of a spot price judged over `window` minutes.
pub fn spot_source(window: u32) -> String {
    format!("spot price history, highest over {window} min")
}

/// The provenance of an on-demand price, with the multiplier when it is not 1.
pub fn on_demand_source(source: &PriceSource, multiplier: f64) -> String {
    if multiplier == 1.0 {
        source.to_string()
    } else {
        format!("{source} x {multiplier}")
    }
}

/// A spot pool for one product: (product description, AZ, instance type).
type PoolKey<'a> = (&'a str, &'a str, &'a str);

/// Spot price history by pool, sorted by time, for judging prices over a window.
#[derive(Debug, Default)]
pub struct SpotIndex<'a> {
    points: HashMap<PoolKey<'a>, Vec<(DateTime<Utc>, f64)>>,
}

impl<'a> SpotIndex<'a> {
    /// Indexes spot price points.
    pub fn new(points: &'a [SpotPricePoint]) -> Self {
        let mut index: HashMap<_, Vec<_>> = HashMap::new();
        for p in points {
            index
                .entry((
                    p.product_description.as_str(),
                    p.availability_zone.as_str(),
                    p.instance_type.as_str(),
                ))
                .or_default()
                .push((p.timestamp, p.price));
        }
        for v in index.values_mut() {
            v.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
        }
        SpotIndex { points: index }
    }

    /// The spot price of a pool judged over the window ending at `now`: the highest of the
    /// price in effect when the window opened and every price since (a price stays in effect
    /// until the next change, so the last change before the window still applies at its start).
    /// `None` when the pool has no known positive price.
    pub fn price(
        &self,
        product: &str,
        az: &str,
        ty: &str,
        now: DateTime<Utc>,
        window_minutes: u32,
    ) -> Option<f64> {
        let points = self.points.get(&(product, az, ty))?;
        let start = now - Duration::minutes(i64::from(window_minutes));
        let first_in = points.partition_point(|(t, _)| *t < start);
        let from = first_in.saturating_sub(1);
        points[from..]
            .iter()
            .map(|(_, p)| *p)
            .filter(|p| *p > 0.0)
            .reduce(f64::max)
    }
}

/// Every price of one region at one moment: on-demand list prices and the spot index, built
/// once per region per pass.
#[derive(Debug)]
pub struct Prices<'a> {
    on_demand: &'a OnDemandPrices,
    spot: SpotIndex<'a>,
    now: DateTime<Utc>,
}

impl<'a> Prices<'a> {
    /// The prices a snapshot holds, judged at `now`.
    pub fn new(snapshot: &'a Snapshot, now: DateTime<Utc>) -> Self {
        Prices {
            on_demand: &snapshot.on_demand,
            spot: SpotIndex::new(&snapshot.spot_prices),
            now,
        }
    }

    /// Where the on-demand prices came from.
    pub fn on_demand_source(&self) -> &PriceSource {
        &self.on_demand.source
    }

    /// The on-demand price of a type for the group, multiplied, with its provenance.
    pub fn on_demand(&self, pricing: &GroupPricing, ty: &str) -> Option<PriceUsed> {
        let list = self.on_demand.price(ty, pricing.os)?;
        Some(PriceUsed {
            instance_type: ty.to_string(),
            market: Market::OnDemand,
            availability_zone: None,
            os: pricing.os,
            price: list * pricing.multiplier,
            source: on_demand_source(&self.on_demand.source, pricing.multiplier),
        })
    }

    /// The windowed spot price of a pool for the group, bare (the planner's hot loop).
    pub fn spot_price(&self, pricing: &GroupPricing, az: &str, ty: &str) -> Option<f64> {
        self.spot
            .price(&pricing.product, az, ty, self.now, pricing.window)
    }

    /// The windowed spot price of a pool for the group, with its provenance.
    pub fn spot(&self, pricing: &GroupPricing, az: &str, ty: &str) -> Option<PriceUsed> {
        let price = self.spot_price(pricing, az, ty)?;
        Some(PriceUsed {
            instance_type: ty.to_string(),
            market: Market::Spot,
            availability_zone: Some(az.to_string()),
            os: pricing.os,
            price,
            source: spot_source(pricing.window),
        })
    }

    /// What an instance costs now: its pool's spot price if it runs on spot, the on-demand
    /// price otherwise. `None` when that price is unknown.
    pub fn now(&self, pricing: &GroupPricing, instance: &Instance) -> Option<PriceUsed> {
        match instance.market {
            Market::OnDemand => self.on_demand(pricing, &instance.instance_type),
            Market::Spot => self.spot(
                pricing,
                &instance.availability_zone,
                &instance.instance_type,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::memory::{GroupBuilder, InstanceBuilder};
    use crate::model::OsPrices;
    use crate::settings::Settings;
    use std::collections::BTreeMap;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn point(ty: &str, az: &str, price: f64, t: &str) -> SpotPricePoint {
        SpotPricePoint {
            instance_type: ty.into(),
            availability_zone: az.into(),
            product_description: "Linux/UNIX (Amazon VPC)".into(),
            price,
            timestamp: at(t),
        }
    }

    #[test]
    fn a_spot_price_is_the_highest_over_the_window_including_the_price_in_effect_at_its_start() {
        let points = vec![
            point("m5.large", "a", 0.030, "2026-11-23T08:00:00Z"),
            point("m5.large", "a", 0.050, "2026-11-23T09:10:00Z"),
            point("m5.large", "a", 0.040, "2026-11-23T09:40:00Z"),
            point("m5.large", "a", 0.020, "2026-11-23T09:55:00Z"),
            point("c5.large", "a", 0.0, "2026-11-23T09:50:00Z"),
        ];
        let index = SpotIndex::new(&points);
        let now = at("2026-11-23T10:00:00Z");
        let linux = "Linux/UNIX (Amazon VPC)";
        // (window minutes, type, AZ, product, expected)
        let cases: [(u32, &str, &str, &str, Option<f64>); 7] = [
            // 60 min from 09:00: the 08:00 price is in effect at the start, then 0.05 is seen.
            (60, "m5.large", "a", linux, Some(0.050)),
            // 10 min from 09:50: 0.040 in effect at the start, then 0.020.
            (10, "m5.large", "a", linux, Some(0.040)),
            // 3 min from 09:57: only the price in effect, 0.020.
            (3, "m5.large", "a", linux, Some(0.020)),
            // 180 min from 07:00: every point.
            (180, "m5.large", "a", linux, Some(0.050)),
            (60, "m5.large", "b", linux, None),
            (60, "m5.large", "a", "Windows (Amazon VPC)", None),
            // A zero price is no price.
            (60, "c5.large", "a", linux, None),
        ];
        for (window, ty, az, product, want) in cases {
            assert_eq!(
                index.price(product, az, ty, now, window),
                want,
                "{ty} in {az} as {product} over {window} min"
            );
        }
    }

    fn snapshot() -> Snapshot {
        let mut prices = BTreeMap::new();
        prices.insert(
            "m5.large".to_string(),
            OsPrices {
                linux: Some(0.096),
                windows: Some(0.188),
                ..OsPrices::default()
            },
        );
        Snapshot {
            region: "us-east-1".into(),
            groups: vec![],
            instances: BTreeMap::new(),
            launch_specs: BTreeMap::new(),
            amis: BTreeMap::new(),
            instance_types: BTreeMap::new(),
            offerings: BTreeMap::new(),
            activities: BTreeMap::new(),
            launch_refused: None,
            target_health: BTreeMap::new(),
            spot_prices: vec![point(
                "m5.large",
                "us-east-1a",
                0.04,
                "2026-11-23T09:30:00Z",
            )],
            on_demand: OnDemandPrices {
                source: PriceSource::Live,
                prices,
            },
            owned_templates: Vec::new(),
        }
    }

    fn instance(market: Market, ty: &str) -> Instance {
        match market {
            Market::OnDemand => InstanceBuilder::on_demand("i-1", ty, "us-east-1a"),
            Market::Spot => InstanceBuilder::spot("i-1", ty, "us-east-1a"),
        }
        .build()
    }

    #[test]
    fn an_instance_costs_its_market_price_with_one_rule_for_unknown_prices() {
        let snap = snapshot();
        let prices = Prices::new(&snap, at("2026-11-23T10:00:00Z"));
        let mut policy = Settings::default().group;
        policy.on_demand_price_multiplier = 0.5;
        let linux = GroupPricing::new(Os::Linux, &policy);
        let windows = GroupPricing::new(Os::Windows, &policy);
        let od = prices
            .now(&linux, &instance(Market::OnDemand, "m5.large"))
            .unwrap();
        assert_eq!(od.price, 0.048);
        assert_eq!(od.source, "pricing API x 0.5");
        assert_eq!(
            prices
                .now(&windows, &instance(Market::OnDemand, "m5.large"))
                .unwrap()
                .price,
            0.094
        );
        let spot = prices
            .now(&linux, &instance(Market::Spot, "m5.large"))
            .unwrap();
        assert_eq!(
            (spot.price, spot.source.as_str()),
            (0.04, "spot price history, highest over 60 min")
        );
        // Unknown prices are unknown, never zero.
        assert_eq!(
            prices.now(&windows, &instance(Market::Spot, "m5.large")),
            None
        );
        assert_eq!(
            prices.now(&linux, &instance(Market::OnDemand, "m9.large")),
            None
        );
    }

    #[test]
    fn the_product_setting_decides_the_os_a_group_is_priced_as() {
        let mut policy = Settings::default().group;
        assert_eq!(
            GroupPricing::new(Os::Rhel, &policy).product,
            "Red Hat Enterprise Linux (Amazon VPC)"
        );
        policy.spot_product_description = Some("Windows (Amazon VPC)".into());
        let p = GroupPricing::new(Os::Linux, &policy);
        assert_eq!(
            (p.os, p.product.as_str()),
            (Os::Windows, "Windows (Amazon VPC)")
        );
        let snap = snapshot();
        let group = GroupBuilder::new("web").build();
        // No launch spec known: Linux, unless the setting says otherwise.
        assert_eq!(
            GroupPricing::for_group(&snap, &group, &Settings::default().group).os,
            Os::Linux
        );
        assert_eq!(
            GroupPricing::for_group(&snap, &group, &policy).os,
            Os::Windows
        );
    }
}
