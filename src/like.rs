//! "Which types could replace an instance of type T?": the bundled catalog run through the
//! compatibility checks, for `spotswap types --like T`.
//!
//! It lets users see, before trusting spotswap with a group, exactly which types it would
//! consider and why it rejects the others. Pure: catalog and prices come in as arguments; no
//! I/O, no clock, no logging. Rendering lives with the rest of the CLI output.

use serde::Serialize;

use crate::catalog::Catalog;
use crate::compat::{AmiNeeds, LaunchNeeds, Reason, Requirements};
use crate::model::{Architecture, BootMode, OnDemandPrices, Os, Virtualization};
use crate::settings::TypeList;

/// What the user tells about the AMI; unset fields default to what the base type implies.
#[derive(Debug, Clone, Default)]
pub struct AmiOverrides {
    pub architecture: Option<Architecture>,
    pub virtualization: Option<Virtualization>,
    pub boot_mode: Option<BootMode>,
    pub ena: Option<bool>,
}

/// The question: a base type, an AMI, mappings and lists.
#[derive(Debug, Clone, Default)]
pub struct LikeQuery {
    pub base: String,
    pub ami: AmiOverrides,
    pub ephemeral_mappings: u32,
    pub allowed: TypeList,
    pub disallowed: TypeList,
    pub allow_burstable: bool,
}

/// A compatible type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompatibleType {
    pub instance_type: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    /// Linux on-demand price in the region, USD per hour; `None` where unknown.
    pub on_demand_price: Option<f64>,
}

/// A rejected type and the first check it failed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectedType {
    pub instance_type: String,
    pub reason: Reason,
}

/// The answer. `rejected` is filled only when asked for.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LikeAnswer {
    pub base: String,
    pub compatible: Vec<CompatibleType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<Vec<RejectedType>>,
}

/// Errors a query can meet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LikeError {
    #[error("instance type {0:?} is not in the catalog of {1} types; did you mean {2}?")]
    UnknownType(String, usize, String),
}

/// Judges every catalog type against `query`. Compatible types come cheapest first (unknown
/// prices last), then by name; rejected ones by name.
pub fn like(
    catalog: &Catalog,
    prices: Option<&OnDemandPrices>,
    query: &LikeQuery,
    explain: bool,
) -> Result<LikeAnswer, LikeError> {
    let Some(base) = catalog.get(&query.base) else {
        return Err(LikeError::UnknownType(
            query.base.clone(),
            catalog.len(),
            nearest(catalog, &query.base),
        ));
    };
    let implied = AmiNeeds::implied_by(base);
    let ami = AmiNeeds {
        architecture: query.ami.architecture.unwrap_or(implied.architecture),
        virtualization: query.ami.virtualization.unwrap_or(implied.virtualization),
        boot_mode: query.ami.boot_mode.or(implied.boot_mode),
        ena: query.ami.ena.unwrap_or(implied.ena),
    };
    let req = Requirements {
        base,
        ami,
        ephemeral_mappings: query.ephemeral_mappings,
        allowed: &query.allowed,
        disallowed: &query.disallowed,
        allow_burstable: query.allow_burstable,
        launch: LaunchNeeds::default(),
    };
    let mut compatible = Vec::new();
    let mut rejected = Vec::new();
    for c in catalog.iter() {
        match req.check(c) {
            Ok(()) => compatible.push(CompatibleType {
                instance_type: c.instance_type.clone(),
                vcpus: c.vcpus,
                memory_mib: c.memory_mib,
                on_demand_price: prices.and_then(|p| p.price(&c.instance_type, Os::Linux)),
            }),
            Err(reason) => rejected.push(RejectedType {
                instance_type: c.instance_type.clone(),
                reason,
            }),
        }
    }
    compatible.sort_by(|a, b| {
        let key = |x: &CompatibleType| x.on_demand_price.unwrap_or(f64::INFINITY);
        key(a)
            .total_cmp(&key(b))
            .then(a.instance_type.cmp(&b.instance_type))
    });
    Ok(LikeAnswer {
        base: base.instance_type.clone(),
        compatible,
        rejected: explain.then_some(rejected),
    })
}

/// The catalog names closest to a mistyped one, for the error message.
fn nearest(catalog: &Catalog, name: &str) -> String {
    let mut scored: Vec<(usize, &str)> = catalog
        .iter()
        .map(|t| {
            (
                edit_distance(name, &t.instance_type),
                t.instance_type.as_str(),
            )
        })
        .collect();
    scored.sort();
    scored
        .iter()
        .take(3)
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::price_table::BundledPrices;

    fn ask(query: LikeQuery) -> LikeAnswer {
        let prices = BundledPrices::bundled().on_demand("us-east-1");
        like(Catalog::bundled(), prices.as_ref(), &query, true).unwrap()
    }

    fn reason_for(answer: &LikeAnswer, ty: &str) -> Option<Reason> {
        answer
            .rejected
            .as_ref()
            .unwrap()
            .iter()
            .find(|r| r.instance_type == ty)
            .map(|r| r.reason)
    }

    #[test]
    fn m5_large_is_like_m5a_large_and_not_like_c5_large() {
        let a = ask(LikeQuery {
            base: "m5.large".into(),
            ..LikeQuery::default()
        });
        let m5a = a
            .compatible
            .iter()
            .find(|c| c.instance_type == "m5a.large")
            .expect("m5a.large is compatible");
        assert_eq!(
            (m5a.vcpus, m5a.memory_mib, m5a.on_demand_price),
            (2, 8192, Some(0.086))
        );
        assert_eq!(reason_for(&a, "c5.large"), Some(Reason::Memory));
        assert_eq!(reason_for(&a, "m6g.large"), Some(Reason::Architecture));
        assert_eq!(reason_for(&a, "t3.large"), Some(Reason::Burstable));
        // Cheapest first.
        let prices: Vec<f64> = a
            .compatible
            .iter()
            .filter_map(|c| c.on_demand_price)
            .collect();
        assert!(prices.windows(2).all(|w| w[0] <= w[1]));
        // Every catalog type is in exactly one list.
        assert_eq!(
            a.compatible.len() + a.rejected.as_ref().unwrap().len(),
            Catalog::bundled().len()
        );
    }

    #[test]
    fn ami_options_override_what_the_base_type_implies() {
        let a = ask(LikeQuery {
            base: "m4.large".into(),
            ami: AmiOverrides {
                ena: Some(true),
                ..AmiOverrides::default()
            },
            ..LikeQuery::default()
        });
        assert!(a.compatible.iter().any(|c| c.instance_type == "m5.large"));
        let a = ask(LikeQuery {
            base: "m4.large".into(),
            ..LikeQuery::default()
        });
        assert_eq!(reason_for(&a, "m5.large"), Some(Reason::Ena));
    }

    #[test]
    fn ephemeral_mappings_require_instance_store() {
        let a = ask(LikeQuery {
            base: "m3.large".into(),
            ephemeral_mappings: 1,
            ami: AmiOverrides {
                ena: Some(true),
                ..AmiOverrides::default()
            },
            ..LikeQuery::default()
        });
        assert_eq!(reason_for(&a, "m5.large"), Some(Reason::InstanceStore));
        assert!(a.compatible.iter().any(|c| c.instance_type == "m5d.large"));
    }

    #[test]
    fn an_unknown_base_type_is_an_error_with_suggestions() {
        let err = like(
            Catalog::bundled(),
            None,
            &LikeQuery {
                base: "m5.lrge".into(),
                ..LikeQuery::default()
            },
            false,
        )
        .unwrap_err();
        assert!(err.to_string().contains("m5.large"), "{err}");
    }

    #[test]
    fn without_prices_the_price_is_none_and_rejected_is_left_out() {
        let a = like(
            Catalog::bundled(),
            None,
            &LikeQuery {
                base: "m5.large".into(),
                ..LikeQuery::default()
            },
            false,
        )
        .unwrap();
        assert!(a.compatible.iter().all(|c| c.on_demand_price.is_none()));
        let json = serde_json::to_value(&a).unwrap();
        assert!(json.get("rejected").is_none());
    }
}
