//! Reads that change slowly, kept between the passes of one process: a region's instance
//! types, their offerings per AZ and its on-demand prices per operating system. A warm Lambda
//! (the same process, invoked every 5 minutes) reads them once per `cache-hours` instead of
//! every pass; the CLI, one pass per process, reads them every time. Spot prices are never
//! cached: they are what a pass judges by. The preflight's answers (`crate::preflight`) are kept
//! here too, for the process's life.
//!
//! It only stores and hands back what a read returned, with when it was read; `observe`
//! decides when to use it and the report states the age of each figure used. It does no I/O
//! and reads no clock: the pass's time is passed in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::model::{InstanceTypeSpec, Os};
use crate::preflight::Preflight;

/// A region's offerings: the instance types offered in each AZ.
pub type Offerings = BTreeMap<String, BTreeSet<String>>;

/// One OS's on-demand prices, by instance type.
pub type OsPriceList = BTreeMap<String, f64>;

/// What a pass used from the cache, and how old it was.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CachedRead {
    /// `instance-types`, `offerings` or `on-demand-prices:<os>`.
    pub read: String,
    pub read_at: DateTime<Utc>,
    pub age_minutes: i64,
}

#[derive(Debug, Default)]
struct RegionEntries {
    types: Option<(DateTime<Utc>, Arc<Vec<InstanceTypeSpec>>)>,
    offerings: Option<(DateTime<Utc>, Arc<Offerings>)>,
    on_demand: BTreeMap<Os, (DateTime<Utc>, Arc<OsPriceList>)>,
}

/// The process's cache, shared by its passes and their regions.
#[derive(Debug)]
pub struct ReadCache {
    ttl: Duration,
    regions: Mutex<HashMap<String, RegionEntries>>,
    /// The preflight's answers, kept for the process's life (a Lambda container's): asked
    /// once, on the first pass.
    preflight: Mutex<Option<Arc<Preflight>>>,
}

impl ReadCache {
    /// A cache whose entries are used for `hours` after their read (0: never used).
    pub fn new(hours: u32) -> Self {
        ReadCache {
            ttl: Duration::hours(i64::from(hours)),
            regions: Mutex::default(),
            preflight: Mutex::default(),
        }
    }

    /// The preflight kept by an earlier pass of this process, if any.
    pub fn preflight(&self) -> Option<Arc<Preflight>> {
        self.preflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Keeps a preflight for the process's life.
    pub fn keep_preflight(&self, p: Arc<Preflight>) {
        *self.preflight.lock().unwrap_or_else(|e| e.into_inner()) = Some(p);
    }

    fn fresh<T: Clone>(
        &self,
        entry: Option<&(DateTime<Utc>, T)>,
        what: &str,
        now: DateTime<Utc>,
    ) -> Option<(T, CachedRead)> {
        let (at, value) = entry?;
        // A read from the future (a clock stepped back) is not trusted either.
        let age = now - *at;
        (age < self.ttl && age >= Duration::zero()).then(|| {
            let used = CachedRead {
                read: what.to_string(),
                read_at: *at,
                age_minutes: age.num_minutes(),
            };
            (value.clone(), used)
        })
    }

    fn with<T>(&self, region: &str, f: impl FnOnce(&mut RegionEntries) -> T) -> T {
        let mut regions = self.regions.lock().unwrap_or_else(|e| e.into_inner());
        f(regions.entry(region.to_string()).or_default())
    }

    /// The region's instance types, if read less than the TTL before `now`.
    pub fn types(
        &self,
        region: &str,
        now: DateTime<Utc>,
    ) -> Option<(Arc<Vec<InstanceTypeSpec>>, CachedRead)> {
        self.with(region, |e| {
            self.fresh(e.types.as_ref(), "instance-types", now)
        })
    }

    /// Keeps the region's instance types as read at `at`.
    pub fn put_types(&self, region: &str, at: DateTime<Utc>, types: Arc<Vec<InstanceTypeSpec>>) {
        self.with(region, |e| e.types = Some((at, types)));
    }

    /// The region's offerings, if read less than the TTL before `now`.
    pub fn offerings(
        &self,
        region: &str,
        now: DateTime<Utc>,
    ) -> Option<(Arc<Offerings>, CachedRead)> {
        self.with(region, |e| {
            self.fresh(e.offerings.as_ref(), "offerings", now)
        })
    }

    /// Keeps the region's offerings as read at `at`.
    pub fn put_offerings(&self, region: &str, at: DateTime<Utc>, offerings: Arc<Offerings>) {
        self.with(region, |e| e.offerings = Some((at, offerings)));
    }

    /// One OS's on-demand prices in the region, if read less than the TTL before `now`.
    pub fn on_demand(
        &self,
        region: &str,
        os: Os,
        now: DateTime<Utc>,
    ) -> Option<(Arc<OsPriceList>, CachedRead)> {
        let what = format!("on-demand-prices:{os}");
        self.with(region, |e| self.fresh(e.on_demand.get(&os), &what, now))
    }

    /// Keeps one OS's on-demand prices in the region as read at `at`.
    pub fn put_on_demand(&self, region: &str, os: Os, at: DateTime<Utc>, prices: Arc<OsPriceList>) {
        self.with(region, |e| {
            e.on_demand.insert(os, (at, prices));
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000, 0).unwrap() + Duration::minutes(minutes)
    }

    #[test]
    fn an_entry_is_used_until_its_ttl_and_says_how_old_it_is() {
        let cache = ReadCache::new(6);
        assert!(cache.types("eu-west-1", t(0)).is_none());
        cache.put_types("eu-west-1", t(0), Arc::new(Vec::new()));
        let (_, used) = cache.types("eu-west-1", t(125)).expect("fresh");
        assert_eq!(used.read, "instance-types");
        assert_eq!(used.age_minutes, 125);
        assert_eq!(used.read_at, t(0));
        assert!(cache.types("eu-west-1", t(6 * 60)).is_none(), "expired");
        assert!(
            cache.types("eu-west-1", t(-1)).is_none(),
            "clock stepped back"
        );
        assert!(cache.types("us-east-1", t(1)).is_none(), "per region");
    }

    #[test]
    fn zero_hours_caches_nothing() {
        let cache = ReadCache::new(0);
        cache.put_offerings("eu-west-1", t(0), Arc::new(Offerings::new()));
        assert!(cache.offerings("eu-west-1", t(0)).is_none());
    }

    #[test]
    fn on_demand_prices_are_kept_per_os() {
        let cache = ReadCache::new(1);
        let linux = Arc::new(OsPriceList::from([("m5.large".to_string(), 0.096)]));
        cache.put_on_demand("eu-west-1", Os::Linux, t(0), linux);
        let (prices, used) = cache.on_demand("eu-west-1", Os::Linux, t(10)).unwrap();
        assert_eq!(prices["m5.large"], 0.096);
        assert_eq!(used.read, "on-demand-prices:linux");
        assert!(cache.on_demand("eu-west-1", Os::Windows, t(10)).is_none());
    }
}
