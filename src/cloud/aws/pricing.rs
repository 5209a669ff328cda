//! The AWS Pricing API's quirks, as pure functions: which endpoint region to ask, which
//! filters select the one on-demand price a group pays, and how to read a price list entry.
//! No calls here; the adapter makes them.

use crate::model::Os;

/// The Pricing API has endpoints in a few regions only (AWS Price List API guide, "Endpoints"):
/// ask the nearest.
pub fn endpoint_region(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "cn-northwest-1"
    } else if region.starts_with("ap-") {
        "ap-south-1"
    } else if ["eu-", "me-", "af-", "il-"]
        .iter()
        .any(|p| region.starts_with(p))
    {
        "eu-central-1"
    } else {
        "us-east-1"
    }
}

/// The `operatingSystem` attribute value for an OS.
pub fn operating_system(os: Os) -> &'static str {
    match os {
        Os::Linux => "Linux",
        Os::Windows => "Windows",
        Os::Rhel => "RHEL",
        Os::Suse => "SUSE",
    }
}

/// `TERM_MATCH` filters selecting shared-tenancy, no-pre-installed-software, used-capacity,
/// license-included prices of one OS in one region (AWS Price List API, "Filter values").
pub fn filters(region: &str, os: Os) -> Vec<(&'static str, String)> {
    vec![
        ("regionCode", region.to_string()),
        ("operatingSystem", operating_system(os).to_string()),
        ("tenancy", "Shared".into()),
        ("preInstalledSw", "NA".into()),
        ("capacitystatus", "Used".into()),
        ("licenseModel", "No License required".into()),
    ]
}

/// Reads one `PriceList` entry (a JSON document in a string): its instance type and hourly
/// on-demand USD price. `None` for entries without both, or priced at zero.
pub fn parse_entry(text: &str) -> Option<(String, f64)> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let instance_type = v
        .pointer("/product/attributes/instanceType")?
        .as_str()?
        .to_string();
    let on_demand = v.pointer("/terms/OnDemand")?.as_object()?;
    let price = on_demand
        .values()
        .filter_map(|term| term.get("priceDimensions")?.as_object())
        .flat_map(|dims| dims.values())
        .filter(|d| d.get("unit").and_then(|u| u.as_str()) == Some("Hrs"))
        .filter_map(|d| {
            d.pointer("/pricePerUnit/USD")?
                .as_str()?
                .parse::<f64>()
                .ok()
        })
        .find(|p| *p > 0.0)?;
    Some((instance_type, price))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pricing_endpoint_is_the_nearest_of_three() {
        assert_eq!(endpoint_region("us-west-2"), "us-east-1");
        assert_eq!(endpoint_region("sa-east-1"), "us-east-1");
        assert_eq!(endpoint_region("eu-west-1"), "eu-central-1");
        assert_eq!(endpoint_region("me-south-1"), "eu-central-1");
        assert_eq!(endpoint_region("ap-southeast-2"), "ap-south-1");
    }

    #[test]
    fn a_price_list_entry_gives_type_and_hourly_price() {
        let entry = r#"{"product":{"productFamily":"Compute Instance","attributes":{"instanceType":"m5.large","regionCode":"us-east-1","operatingSystem":"Linux"},"sku":"ABC"},"serviceCode":"AmazonEC2","terms":{"OnDemand":{"ABC.JRTCKXETXF":{"offerTermCode":"JRTCKXETXF","sku":"ABC","priceDimensions":{"ABC.JRTCKXETXF.6YS6EN2CT7":{"unit":"Hrs","pricePerUnit":{"USD":"0.0960000000"},"description":"$0.096 per On Demand Linux m5.large Instance Hour"}}}}}}"#;
        assert_eq!(parse_entry(entry), Some(("m5.large".into(), 0.096)));
        assert_eq!(parse_entry("not json"), None);
        let zero = entry.replace("0.0960000000", "0.0000000000");
        assert_eq!(parse_entry(&zero), None, "zero is not a price");
    }

    #[test]
    fn filters_select_one_price_per_type() {
        let f = filters("eu-west-1", Os::Windows);
        assert!(f.contains(&("operatingSystem", "Windows".into())));
        assert!(f.contains(&("regionCode", "eu-west-1".into())));
        assert!(f.contains(&("tenancy", "Shared".into())));
        assert!(f.contains(&("capacitystatus", "Used".into())));
    }
}
