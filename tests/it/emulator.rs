//! The local emulator works through the real AWS SDK for Rust: realistic spot price history
//! and Pricing answers, price pins, seeded groups; and what moto 5.2.5 does for the calls
//! spotswap's AWS adapter relies on, pinned down as assertions so a moto upgrade that changes
//! them fails here first.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_autoscaling::types as asg;
use aws_sdk_ec2::types as ec2t;
use aws_smithy_types::DateTime;

use crate::moto::Emulator;
use crate::moto::seed::{Account, GroupSpec, OrPanic};

const REGION: &str = "us-east-1";
const LINUX_VPC: &str = "Linux/UNIX (Amazon VPC)";

fn minutes_ago(minutes: u64) -> DateTime {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    DateTime::from_secs((now - Duration::from_secs(minutes * 60)).as_secs() as i64)
}

fn secs_ago(t: &DateTime) -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now - t.secs()
}

/// (AZ, product, price, seconds ago) of every history point of one type.
async fn history(
    ec2: &aws_sdk_ec2::Client,
    instance_type: &str,
    products: &[&str],
    start_minutes_ago: Option<u64>,
) -> Vec<(String, String, f64, i64)> {
    let mut req = ec2
        .describe_spot_price_history()
        .instance_types(ec2t::InstanceType::from(instance_type));
    for p in products {
        req = req.product_descriptions(*p);
    }
    if let Some(m) = start_minutes_ago {
        req = req.start_time(minutes_ago(m));
    }
    let out = req.send().await.or_panic("DescribeSpotPriceHistory");
    out.spot_price_history()
        .iter()
        .map(|p| {
            assert_eq!(p.instance_type().map(|t| t.as_str()), Some(instance_type));
            (
                p.availability_zone().unwrap().to_string(),
                p.product_description().unwrap().as_str().to_string(),
                p.spot_price().unwrap().parse::<f64>().unwrap(),
                secs_ago(p.timestamp().unwrap()),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_emulator_starts_quickly_on_loopback_and_moto_answers_behind_it() {
    let emu = Emulator::start();
    eprintln!("emulator started in {:?}", emu.started_in());
    assert!(emu.endpoint().starts_with("http://127.0.0.1:"));
    assert!(
        emu.started_in() < Duration::from_secs(30),
        "{:?}",
        emu.started_in()
    );
    let regions = emu
        .ec2(REGION)
        .describe_regions()
        .send()
        .await
        .or_panic("DescribeRegions");
    assert!(
        regions
            .regions()
            .iter()
            .any(|r| r.region_name() == Some("eu-west-1"))
    );
}

#[tokio::test]
async fn spot_price_history_is_realistic_recent_and_differs_per_az() {
    let emu = Emulator::start();
    let points = history(&emu.ec2(REGION), "m5.large", &[LINUX_VPC], Some(60)).await;
    // m5.large: Linux spot 0.0537 in the bundled table, +-15% per AZ, older point +-6%.
    let azs: BTreeSet<&str> = points.iter().map(|p| p.0.as_str()).collect();
    assert_eq!(
        azs,
        BTreeSet::from([
            "us-east-1a",
            "us-east-1b",
            "us-east-1c",
            "us-east-1d",
            "us-east-1f"
        ]),
        "m5.large is not offered in us-east-1e (moto's offerings)"
    );
    for (az, product, price, age) in &points {
        assert_eq!(product, LINUX_VPC);
        assert!(
            (0.04..0.07).contains(price),
            "{az}: {price} is not near 0.0537"
        );
        assert!((0..4 * 3600).contains(age), "{az}: {age} s old");
    }
    let latest: BTreeMap<&str, f64> = points
        .iter()
        .filter(|p| p.3 < 3600)
        .map(|p| (p.0.as_str(), p.2))
        .collect();
    let distinct: BTreeSet<String> = latest.values().map(|p| format!("{p:.6}")).collect();
    assert_eq!(
        distinct.len(),
        latest.len(),
        "every AZ has its own price: {latest:?}"
    );
    // The same question gives the same prices (deterministic variation).
    let again = history(&emu.ec2(REGION), "m5.large", &[LINUX_VPC], Some(60)).await;
    let again_latest: BTreeMap<&str, f64> = again
        .iter()
        .filter(|p| p.3 < 3600)
        .map(|p| (p.0.as_str(), p.2))
        .collect();
    assert_eq!(latest, again_latest);
}

#[tokio::test]
async fn spot_price_history_honours_start_time_products_and_filters() {
    let emu = Emulator::start();
    let ec2 = emu.ec2(REGION);
    // Points are 20 minutes and 3 hours old; a start time returns the points after it plus
    // the one in effect at it.
    let last_10_min = history(&ec2, "m5.large", &[LINUX_VPC], Some(10)).await;
    assert_eq!(last_10_min.len(), 5, "one point per AZ: {last_10_min:?}");
    assert!(last_10_min.iter().all(|p| (1100..1300).contains(&p.3)));
    let last_hour = history(&ec2, "m5.large", &[LINUX_VPC], Some(60)).await;
    assert_eq!(last_hour.len(), 10, "two points per AZ: {last_hour:?}");
    let older: Vec<_> = last_hour.iter().filter(|p| p.3 > 3600).collect();
    assert_eq!(older.len(), 5);
    assert!(older.iter().all(|p| (10700..10900).contains(&p.3)));
    for o in &older {
        let newer = last_hour.iter().find(|p| p.0 == o.0 && p.3 < 3600).unwrap();
        let change = (o.2 - newer.2).abs() / newer.2;
        assert!(
            (0.015..0.065).contains(&change),
            "{}: {} then {}",
            o.0,
            o.2,
            newer.2
        );
    }

    // Products: Windows is priced as Linux spot + the Windows on-demand premium (0.092).
    let both = history(
        &ec2,
        "m5.large",
        &[LINUX_VPC, "Windows (Amazon VPC)"],
        Some(10),
    )
    .await;
    assert_eq!(both.len(), 10);
    for az in ["us-east-1a", "us-east-1b"] {
        let price = |product: &str| both.iter().find(|p| p.0 == az && p.1 == product).unwrap().2;
        let premium = price("Windows (Amazon VPC)") - price(LINUX_VPC);
        assert!((premium - 0.092).abs() < 1e-5, "{az}: {premium}");
    }
    // No product asked: every VPC product, none of the EC2-Classic ones.
    let all = history(&ec2, "m5.large", &[], Some(10)).await;
    let products: BTreeSet<&str> = all.iter().map(|p| p.1.as_str()).collect();
    assert_eq!(
        products,
        BTreeSet::from([
            LINUX_VPC,
            "Red Hat Enterprise Linux (Amazon VPC)",
            "SUSE Linux (Amazon VPC)",
            "Windows (Amazon VPC)"
        ])
    );

    // Filters and the AvailabilityZone parameter.
    let out = ec2
        .describe_spot_price_history()
        .start_time(minutes_ago(10))
        .filters(
            ec2t::Filter::builder()
                .name("instance-type")
                .values("m5.large")
                .values("c5.large")
                .build(),
        )
        .filters(
            ec2t::Filter::builder()
                .name("product-description")
                .values("Linux/UNIX*")
                .build(),
        )
        .availability_zone("us-east-1b")
        .send()
        .await
        .or_panic("DescribeSpotPriceHistory with filters");
    let got: BTreeSet<(String, String, String)> = out
        .spot_price_history()
        .iter()
        .map(|p| {
            (
                p.availability_zone().unwrap().to_string(),
                p.instance_type().unwrap().as_str().to_string(),
                p.product_description().unwrap().as_str().to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        BTreeSet::from([
            ("us-east-1b".into(), "c5.large".into(), LINUX_VPC.into()),
            ("us-east-1b".into(), "m5.large".into(), LINUX_VPC.into()),
        ]),
        "a product filter with a wildcard matches only the products asked for (VPC by default)"
    );

    // Another region: its own AZs, and prices scaled by a per-region factor.
    let eu = history(&emu.ec2("eu-west-1"), "m5.large", &[LINUX_VPC], Some(10)).await;
    assert!(!eu.is_empty());
    assert!(eu.iter().all(|p| p.0.starts_with("eu-west-1")));
}

#[tokio::test]
async fn spot_price_history_paginates_through_the_sdk_paginator() {
    let emu = Emulator::start();
    let ec2 = emu.ec2(REGION);
    let mut pages = ec2
        .describe_spot_price_history()
        .start_time(minutes_ago(10))
        .product_descriptions(LINUX_VPC)
        .availability_zone("us-east-1a")
        .max_results(200)
        .into_paginator()
        .send();
    let mut page_count = 0;
    let mut seen = BTreeSet::new();
    while let Some(page) = pages.next().await {
        let page = page.or_panic("a page of DescribeSpotPriceHistory");
        page_count += 1;
        assert!(page.spot_price_history().len() <= 200);
        for p in page.spot_price_history() {
            assert!(
                seen.insert(p.instance_type().unwrap().as_str().to_string()),
                "no duplicate across pages"
            );
        }
    }
    // Every priced type offered in us-east-1a (about 600 of the bundled table's 605).
    assert!(seen.len() > 500, "{} types", seen.len());
    assert!(page_count >= 3, "{page_count} pages");
    assert!(seen.contains("m5.large") && seen.contains("t3.micro"));
    // A type with no spot price in the table has no history.
    assert!(!seen.contains("cc2.8xlarge"));
}

fn pricing_filter(field: &str, value: &str) -> aws_sdk_pricing::types::Filter {
    aws_sdk_pricing::types::Filter::builder()
        .r#type(aws_sdk_pricing::types::FilterType::TermMatch)
        .field(field)
        .value(value)
        .build()
        .unwrap()
}

/// The on-demand USD price of the one product the standard filters select.
async fn on_demand(
    pricing: &aws_sdk_pricing::Client,
    instance_type: &str,
    region: &str,
    os: &str,
) -> f64 {
    let out = pricing
        .get_products()
        .service_code("AmazonEC2")
        .format_version("aws_v1")
        .filters(pricing_filter("instanceType", instance_type))
        .filters(pricing_filter("regionCode", region))
        .filters(pricing_filter("operatingSystem", os))
        .filters(pricing_filter("tenancy", "Shared"))
        .filters(pricing_filter("preInstalledSw", "NA"))
        .filters(pricing_filter("capacitystatus", "Used"))
        .filters(pricing_filter("licenseModel", "No License required"))
        .max_results(100)
        .send()
        .await
        .or_panic("GetProducts");
    assert_eq!(out.format_version(), Some("aws_v1"));
    assert_eq!(out.price_list().len(), 1, "{:?}", out.price_list());
    let product: serde_json::Value = serde_json::from_str(&out.price_list()[0]).unwrap();
    let attrs = &product["product"]["attributes"];
    assert_eq!(attrs["instanceType"], instance_type);
    assert_eq!(attrs["regionCode"], region);
    assert_eq!(attrs["operatingSystem"], os);
    let terms = product["terms"]["OnDemand"].as_object().unwrap();
    assert_eq!(terms.len(), 1);
    let dims = terms.values().next().unwrap()["priceDimensions"]
        .as_object()
        .unwrap();
    assert_eq!(dims.len(), 1);
    let dim = dims.values().next().unwrap();
    assert_eq!(dim["unit"], "Hrs");
    dim["pricePerUnit"]["USD"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn pricing_get_products_serves_on_demand_prices_per_operating_system() {
    let emu = Emulator::start();
    let pricing = emu.pricing();
    let linux = on_demand(&pricing, "m5.large", REGION, "Linux").await;
    assert_eq!(linux, 0.096);
    let windows = on_demand(&pricing, "m5.large", REGION, "Windows").await;
    assert_eq!(windows, 0.188);
    assert!(windows > linux);
    assert_eq!(on_demand(&pricing, "m5.large", REGION, "RHEL").await, 0.191);
    assert_eq!(on_demand(&pricing, "m5.large", REGION, "SUSE").await, 0.152);
    // Other regions are the us-east-1 table times a per-region factor (at least 1).
    let eu = on_demand(&pricing, "m5.large", "eu-west-1", "Linux").await;
    assert!((0.096..0.13).contains(&eu), "{eu}");

    // Field names match case-insensitively, as in the real API; unknown values match nothing.
    let out = pricing
        .get_products()
        .service_code("AmazonEC2")
        .filters(pricing_filter("INSTANCETYPE", "m5.large"))
        .filters(pricing_filter("location", "US East (N. Virginia)"))
        .send()
        .await
        .or_panic("GetProducts by location");
    assert_eq!(out.price_list().len(), 4, "one product per OS");
    let none = pricing
        .get_products()
        .service_code("AmazonEC2")
        .filters(pricing_filter("instanceType", "m5.nonexistent"))
        .send()
        .await
        .or_panic("GetProducts for an unknown type");
    assert!(none.price_list().is_empty());

    // Paginated at MaxResults, through the SDK paginator.
    let mut pages = pricing
        .get_products()
        .service_code("AmazonEC2")
        .filters(pricing_filter("regionCode", REGION))
        .filters(pricing_filter("operatingSystem", "Linux"))
        .max_results(100)
        .into_paginator()
        .send();
    let (mut count, mut page_count) = (0, 0);
    while let Some(page) = pages.next().await {
        let page = page.or_panic("a page of GetProducts");
        page_count += 1;
        count += page.price_list().len();
    }
    assert!(count > 600, "{count} Linux products in us-east-1");
    assert!(page_count >= 7, "{page_count} pages");

    let services = pricing
        .describe_services()
        .service_code("AmazonEC2")
        .send()
        .await
        .or_panic("DescribeServices");
    assert_eq!(services.services().len(), 1);
}

#[tokio::test]
async fn pinned_spot_prices_replace_the_history_until_cleared() {
    let emu = Emulator::start();
    let ec2 = emu.ec2(REGION);
    let before = history(&ec2, "m5a.large", &[LINUX_VPC], Some(240)).await;
    emu.pin_spot_price(REGION, "us-east-1a", "m5a.large", Some(LINUX_VPC), 0.5);
    let pinned = history(&ec2, "m5a.large", &[LINUX_VPC], Some(240)).await;
    assert_eq!(pinned.len(), before.len());
    for (az, _, price, _) in &pinned {
        if az == "us-east-1a" {
            assert_eq!(*price, 0.5, "both points are pinned");
        } else {
            assert!(*price < 0.1, "{az} keeps its price: {price}");
        }
    }
    // Another product of the same series is not pinned; a pin without product pins them all.
    let windows = history(&ec2, "m5a.large", &["Windows (Amazon VPC)"], Some(10)).await;
    assert!(windows.iter().all(|p| p.2 < 0.5));
    emu.pin_spot_price(REGION, "us-east-1b", "m5a.large", None, 0.75);
    let all = history(&ec2, "m5a.large", &[], Some(10)).await;
    assert_eq!(
        all.iter()
            .filter(|p| p.0 == "us-east-1b" && p.2 == 0.75)
            .count(),
        4
    );

    emu.clear_pinned_prices();
    let after = history(&ec2, "m5a.large", &[LINUX_VPC], Some(240)).await;
    let prices = |h: &[(String, String, f64, i64)]| -> Vec<(String, String)> {
        let mut v: Vec<_> = h
            .iter()
            .map(|p| (p.0.clone(), format!("{:.6}", p.2)))
            .collect();
        v.sort();
        v
    };
    assert_eq!(prices(&after), prices(&before));
}

#[tokio::test]
async fn seeded_launch_configuration_and_template_groups_reach_desired_capacity_in_three_azs() {
    let emu = Emulator::start();
    let account = Account::create(&emu.sdk_config(REGION)).await;
    eprintln!(
        "AMIs: linux {} arm64 {:?}",
        account.linux_ami, account.arm64_ami
    );
    assert_eq!(account.subnet_ids.len(), 3);

    let lc = GroupSpec::new("web-lc", "m5.large").launch_configuration("#!/bin/sh\necho lc\n");
    let lt = GroupSpec::new("web-lt", "m5.large")
        .launch_template("#!/bin/sh\necho lt v2\n")
        .capacity(2, 4, 5)
        .grace_secs(0);
    for spec in [&lc, &lt] {
        let ids = account.create_group(spec).await;
        assert_eq!(ids.len() as i32, spec.desired);
        let group = account.group(&spec.name).await;
        assert_eq!(group.desired_capacity(), Some(spec.desired));
        assert_eq!(group.min_size(), Some(spec.min));
        assert_eq!(group.max_size(), Some(spec.max));
        assert_eq!(
            group.health_check_grace_period(),
            Some(spec.grace_secs),
            "{}",
            spec.name
        );
        assert_eq!(
            group.vpc_zone_identifier(),
            Some(account.subnet_ids.join(",").as_str())
        );
        let azs: BTreeSet<String> = account
            .instances_of(&spec.name)
            .await
            .iter()
            .map(|i| i.availability_zone().unwrap().to_string())
            .collect();
        assert_eq!(azs.len(), 3, "{}: {azs:?}", spec.name);
        for id in &ids {
            let instance = account.instance(id).await;
            assert_eq!(
                instance.state().and_then(|s| s.name()),
                Some(&ec2t::InstanceStateName::Running)
            );
            assert_eq!(instance.image_id(), Some(account.linux_ami.as_str()));
            assert_eq!(instance.instance_type(), Some(&ec2t::InstanceType::M5Large));
            assert_eq!(
                account.user_data(id).await.as_deref(),
                Some(spec.launch.user_data()),
                "{}: the group's own launch spec ($Latest for the template)",
                spec.name
            );
            let tags = account.tags_of(id).await;
            assert_eq!(tags.get("Name"), Some(&spec.name), "propagated tag");
            assert!(!tags.contains_key("spot-enabled"), "not propagated");
        }
    }
    let lt_group = account.group("web-lt").await;
    let spec = lt_group.launch_template().unwrap();
    assert_eq!(spec.launch_template_name(), Some("web-lt-lt"));
    assert_eq!(spec.version(), Some("$Latest"));
    let lc_group = account.group("web-lc").await;
    assert_eq!(lc_group.launch_configuration_name(), Some("web-lc-lc"));
    assert_eq!(account.all_instances().await.len(), 7);
}

#[tokio::test]
async fn moto_adds_the_group_name_tag_on_launch_and_attach_and_removes_it_on_detach() {
    let emu = Emulator::start();
    let account = Account::create(&emu.sdk_config(REGION)).await;
    let ids = account
        .create_group(&GroupSpec::new("app", "m5.large").capacity(1, 2, 4))
        .await;
    for id in &ids {
        assert_eq!(
            account
                .tags_of(id)
                .await
                .get("aws:autoscaling:groupName")
                .map(String::as_str),
            Some("app")
        );
    }
    let standalone = run_instance(&account, "m5a.large", false, &[("role", "extra")]).await;
    assert!(
        !account
            .tags_of(&standalone)
            .await
            .contains_key("aws:autoscaling:groupName")
    );
    account
        .autoscaling
        .attach_instances()
        .auto_scaling_group_name("app")
        .instance_ids(&standalone)
        .send()
        .await
        .or_panic("AttachInstances");
    assert_eq!(
        account
            .tags_of(&standalone)
            .await
            .get("aws:autoscaling:groupName")
            .map(String::as_str),
        Some("app"),
        "AttachInstances tags the instance with the group name"
    );
    account
        .autoscaling
        .detach_instances()
        .auto_scaling_group_name("app")
        .instance_ids(&standalone)
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .or_panic("DetachInstances");
    assert!(
        !account
            .tags_of(&standalone)
            .await
            .contains_key("aws:autoscaling:groupName"),
        "DetachInstances removes the tag"
    );
    assert_eq!(account.group("app").await.desired_capacity(), Some(2));
}

/// RunInstances of one instance in the first subnet with the account's launch basics.
async fn run_instance(
    account: &Account,
    instance_type: &str,
    spot: bool,
    tags: &[(&str, &str)],
) -> String {
    let mut req = account
        .ec2
        .run_instances()
        .image_id(&account.linux_ami)
        .instance_type(ec2t::InstanceType::from(instance_type))
        .min_count(1)
        .max_count(1)
        .subnet_id(&account.subnet_ids[0])
        .security_group_ids(&account.security_group_id)
        .iam_instance_profile(
            ec2t::IamInstanceProfileSpecification::builder()
                .name(&account.instance_profile_name)
                .build(),
        );
    if !tags.is_empty() {
        let mut spec =
            ec2t::TagSpecification::builder().resource_type(ec2t::ResourceType::Instance);
        for (k, v) in tags {
            spec = spec.tags(ec2t::Tag::builder().key(*k).value(*v).build());
        }
        req = req.tag_specifications(spec.build());
    }
    if spot {
        req = req.instance_market_options(
            ec2t::InstanceMarketOptionsRequest::builder()
                .market_type(ec2t::MarketType::Spot)
                .spot_options(
                    ec2t::SpotMarketOptions::builder()
                        .max_price("0.096")
                        .spot_instance_type(ec2t::SpotInstanceType::OneTime)
                        .build(),
                )
                .build(),
        );
    }
    req.send()
        .await
        .or_panic("RunInstances")
        .instances()
        .first()
        .and_then(|i| i.instance_id())
        .expect("an instance")
        .to_string()
}

#[tokio::test]
async fn moto_run_instances_spot_with_tag_specifications_reports_spot_lifecycle_and_tags() {
    let emu = Emulator::start();
    let account = Account::create(&emu.sdk_config(REGION)).await;
    let spot = run_instance(
        &account,
        "m5a.large",
        true,
        &[("spotswap:group", "app"), ("spotswap:replaces", "i-0123")],
    )
    .await;
    let instance = account.instance(&spot).await;
    assert_eq!(
        instance.instance_lifecycle(),
        Some(&ec2t::InstanceLifecycleType::Spot)
    );
    let tags = account.tags_of(&spot).await;
    assert_eq!(tags.get("spotswap:group").map(String::as_str), Some("app"));
    assert_eq!(
        tags.get("spotswap:replaces").map(String::as_str),
        Some("i-0123")
    );
    assert_eq!(
        instance
            .iam_instance_profile()
            .and_then(|p| p.arn())
            .map(|arn| arn.ends_with(&account.instance_profile_name)),
        Some(true),
        "an instance profile given to RunInstances is reported"
    );
    let on_demand = run_instance(&account, "m5.large", false, &[]).await;
    assert_eq!(
        account.instance(&on_demand).await.instance_lifecycle(),
        None
    );
    // Tag filters on DescribeInstances work (the lifecycle filter does not, a moto gap).
    let found = account
        .ec2
        .describe_instances()
        .filters(
            ec2t::Filter::builder()
                .name("tag:spotswap:group")
                .values("app")
                .build(),
        )
        .send()
        .await
        .or_panic("DescribeInstances by tag");
    let ids: Vec<&str> = found
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| i.instance_id())
        .collect();
    assert_eq!(ids, vec![spot.as_str()]);
}

#[tokio::test]
async fn moto_describe_instance_type_offerings_by_availability_zone() {
    let emu = Emulator::start();
    let ec2 = emu.ec2(REGION);
    let out = ec2
        .describe_instance_type_offerings()
        .location_type(ec2t::LocationType::AvailabilityZone)
        .filters(
            ec2t::Filter::builder()
                .name("instance-type")
                .values("m5.large")
                .values("m5a.large")
                .build(),
        )
        .send()
        .await
        .or_panic("DescribeInstanceTypeOfferings");
    let offered: BTreeSet<(String, String)> = out
        .instance_type_offerings()
        .iter()
        .map(|o| {
            assert_eq!(
                o.location_type(),
                Some(&ec2t::LocationType::AvailabilityZone)
            );
            (
                o.location().unwrap().to_string(),
                o.instance_type().unwrap().as_str().to_string(),
            )
        })
        .collect();
    assert!(offered.contains(&("us-east-1a".into(), "m5.large".into())));
    assert!(offered.contains(&("us-east-1b".into(), "m5a.large".into())));
    assert!(
        !offered.iter().any(|(az, _)| az == "us-east-1e"),
        "us-east-1e offers neither: {offered:?}"
    );
    // Unfiltered, with a page size: moto ignores MaxResults and answers everything at once.
    let all = ec2
        .describe_instance_type_offerings()
        .location_type(ec2t::LocationType::AvailabilityZone)
        .max_results(100)
        .send()
        .await
        .or_panic("DescribeInstanceTypeOfferings, all");
    eprintln!(
        "offerings in one page: {}, next token {:?}",
        all.instance_type_offerings().len(),
        all.next_token()
    );
    assert!(all.instance_type_offerings().len() > 6000);
    assert_eq!(all.next_token(), None);
}

#[tokio::test]
async fn moto_launch_template_versions_resolve_latest_and_default() {
    let emu = Emulator::start();
    let account = Account::create(&emu.sdk_config(REGION)).await;
    account
        .create_group(
            &GroupSpec::new("tpl", "m5.large")
                .launch_template("#!/bin/sh\necho v2\n")
                .capacity(1, 1, 2),
        )
        .await;
    let version = |v: &'static str| {
        let ec2 = account.ec2.clone();
        async move {
            let out = ec2
                .describe_launch_template_versions()
                .launch_template_name("tpl-lt")
                .versions(v)
                .send()
                .await
                .or_panic("DescribeLaunchTemplateVersions");
            assert_eq!(out.launch_template_versions().len(), 1, "{v}");
            out.launch_template_versions()[0].clone()
        }
    };
    let latest = version("$Latest").await;
    assert_eq!(latest.version_number(), Some(2));
    assert_eq!(latest.default_version(), Some(false));
    let data = latest.launch_template_data().unwrap();
    assert_eq!(data.image_id(), Some(account.linux_ami.as_str()));
    assert_eq!(data.key_name(), Some(account.key_name.as_str()));
    assert_eq!(
        data.iam_instance_profile().and_then(|p| p.name()),
        Some(account.instance_profile_name.as_str())
    );
    assert_eq!(
        data.metadata_options().and_then(|m| m.http_tokens()),
        Some(&ec2t::LaunchTemplateHttpTokensState::Required)
    );
    assert_eq!(data.block_device_mappings().len(), 1);
    let default = version("$Default").await;
    assert_eq!(default.version_number(), Some(1));
    assert_eq!(version("2").await.version_number(), Some(2));
}

#[tokio::test]
async fn moto_attach_terminate_in_group_and_plain_terminate_change_capacity_like_this() {
    let emu = Emulator::start();
    let account = Account::create(&emu.sdk_config(REGION)).await;
    let ids = account
        .create_group(&GroupSpec::new("app", "m5.large").capacity(1, 3, 4))
        .await;

    // AttachInstances raises desired capacity by one.
    let clone = run_instance(&account, "m5a.large", true, &[]).await;
    account
        .autoscaling
        .attach_instances()
        .auto_scaling_group_name("app")
        .instance_ids(&clone)
        .send()
        .await
        .or_panic("AttachInstances");
    let group = account.group("app").await;
    assert_eq!(group.desired_capacity(), Some(4));
    assert_eq!(group.instances().len(), 4);
    let attached = group
        .instances()
        .iter()
        .find(|i| i.instance_id() == Some(clone.as_str()))
        .expect("the clone is in the group");
    assert_eq!(
        attached.lifecycle_state(),
        Some(&asg::LifecycleState::InService)
    );

    // Past MaxSize, AttachInstances fails.
    let extra = run_instance(&account, "m5a.large", true, &[]).await;
    let err = account
        .autoscaling
        .attach_instances()
        .auto_scaling_group_name("app")
        .instance_ids(&extra)
        .send()
        .await
        .expect_err("a full group refuses an attach");
    let code = aws_sdk_autoscaling::error::ProvideErrorMetadata::code(&err).map(str::to_string);
    eprintln!(
        "attach past MaxSize: {code:?} {}",
        aws_smithy_types::error::display::DisplayErrorContext(&err)
    );
    assert_eq!(code.as_deref(), Some("ResourceContention"));

    // TerminateInstanceInAutoScalingGroup with decrement: out of the group, terminated, no
    // replacement, desired capacity one lower.
    let out = account
        .autoscaling
        .terminate_instance_in_auto_scaling_group()
        .instance_id(&ids[0])
        .should_decrement_desired_capacity(true)
        .send()
        .await
        .or_panic("TerminateInstanceInAutoScalingGroup");
    assert!(out.activity().is_some());
    let group = account.group("app").await;
    assert_eq!(group.desired_capacity(), Some(3));
    let members: BTreeSet<String> = account.instance_ids_of("app").await.into_iter().collect();
    assert_eq!(
        members,
        BTreeSet::from([ids[1].clone(), ids[2].clone(), clone.clone()])
    );
    assert_eq!(
        account
            .instance(&ids[0])
            .await
            .state()
            .and_then(|s| s.name()),
        Some(&ec2t::InstanceStateName::Terminated)
    );

    // Plain TerminateInstances of a group member: moto replaces it at once, inside the
    // TerminateInstances call (no health-check loop, but a synchronous replacement).
    account
        .ec2
        .terminate_instances()
        .instance_ids(&ids[1])
        .send()
        .await
        .or_panic("TerminateInstances");
    let group = account.group("app").await;
    assert_eq!(group.desired_capacity(), Some(3));
    let members: BTreeSet<String> = account.instance_ids_of("app").await.into_iter().collect();
    assert_eq!(members.len(), 3);
    assert!(!members.contains(&ids[1]));
    let replacement: Vec<&String> = members
        .iter()
        .filter(|id| **id != ids[2] && **id != clone)
        .collect();
    assert_eq!(replacement.len(), 1, "{members:?}");
    let replacement = account.instance(replacement[0]).await;
    assert_eq!(
        replacement.placement().and_then(|p| p.availability_zone()),
        Some(account.azs[0].as_str()),
        "moto launches into the first subnet of VPCZoneIdentifier"
    );

    // TerminateInstanceInAutoScalingGroup without decrement: replaced at once as well.
    account
        .autoscaling
        .terminate_instance_in_auto_scaling_group()
        .instance_id(&ids[2])
        .should_decrement_desired_capacity(false)
        .send()
        .await
        .or_panic("TerminateInstanceInAutoScalingGroup without decrement");
    let members: BTreeSet<String> = account.instance_ids_of("app").await.into_iter().collect();
    assert_eq!(members.len(), 3);
    assert!(!members.contains(&ids[2]));
    assert_eq!(account.group("app").await.desired_capacity(), Some(3));
}

#[tokio::test]
async fn moto_group_instances_ignore_much_of_the_launch_spec() {
    let emu = Emulator::start();
    let account = Account::create(&emu.sdk_config(REGION)).await;
    let lc = account
        .create_group(&GroupSpec::new("lc", "m5.large").capacity(1, 1, 2))
        .await;
    let lt = account
        .create_group(
            &GroupSpec::new("lt", "m5.large")
                .launch_template("#!/bin/sh\necho v2\n")
                .capacity(1, 1, 2),
        )
        .await;
    let lc_instance = account.instance(&lc[0]).await;
    let lt_instance = account.instance(&lt[0]).await;
    // Both launch specs name an instance profile, monitoring, IMDSv2 (http_tokens required,
    // hop limit 2) and a 20 GiB gp3 /dev/xvda; the group's instances show none of that but the
    // volume, next to a default /dev/sda1 root volume.
    for (name, i) in [("lc", &lc_instance), ("lt", &lt_instance)] {
        assert_eq!(
            i.iam_instance_profile(),
            None,
            "{name}: no instance profile"
        );
        assert_eq!(
            i.monitoring().and_then(|m| m.state()),
            Some(&ec2t::MonitoringState::Disabled),
            "{name}"
        );
        let metadata = i.metadata_options().unwrap();
        assert_eq!(
            metadata.http_tokens(),
            Some(&ec2t::HttpTokensState::Optional),
            "{name}"
        );
        assert_eq!(metadata.http_put_response_hop_limit(), Some(1), "{name}");
        let devices: Vec<&str> = i
            .block_device_mappings()
            .iter()
            .filter_map(|b| b.device_name())
            .collect();
        assert_eq!(devices, ["/dev/sda1", "/dev/xvda"], "{name}");
        assert_eq!(
            i.security_groups()[0].group_id(),
            Some(account.security_group_id.as_str()),
            "{name}: the security group is applied"
        );
    }
    assert_eq!(lc_instance.key_name(), None, "lc: no key pair");
    assert_eq!(
        lt_instance.key_name(),
        Some(account.key_name.as_str()),
        "lt: the key pair is applied (moto reads it from the default version)"
    );
    let lt_tags = account.tags_of(&lt[0]).await;
    assert_eq!(
        lt_tags
            .get("aws:ec2launchtemplate:version")
            .map(String::as_str),
        Some("1"),
        "moto tags the default version even though the group uses $Latest (2)"
    );
    assert_eq!(
        account.user_data(&lt[0]).await.as_deref(),
        Some("#!/bin/sh\necho v2\n"),
        "but the image, type and user data are $Latest's"
    );
}

#[tokio::test]
async fn moto_stores_a_zero_grace_period_given_at_creation_as_300() {
    let emu = Emulator::start();
    let account = Account::create(&emu.sdk_config(REGION)).await;
    let spec = GroupSpec::new("g", "m5.large")
        .capacity(0, 0, 1)
        .launch_configuration("x");
    // Build the launch configuration through the seeder, then a second group by hand.
    account.create_group(&spec).await;
    account
        .autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name("zero-grace")
        .launch_configuration_name("g-lc")
        .min_size(0)
        .max_size(1)
        .desired_capacity(0)
        .vpc_zone_identifier(account.subnet_ids.join(","))
        .health_check_grace_period(0)
        .send()
        .await
        .or_panic("CreateAutoScalingGroup");
    assert_eq!(
        account
            .group("zero-grace")
            .await
            .health_check_grace_period(),
        Some(300)
    );
}

#[tokio::test]
async fn moto_keeps_the_launch_spec_and_run_instances_applies_it() {
    let emu = Emulator::start();
    let account = Account::create(&emu.sdk_config(REGION)).await;
    let spec = GroupSpec::new("app", "m5.large")
        .capacity(1, 1, 2)
        .launch_configuration("#!/bin/sh\necho app\n");
    account.create_group(&spec).await;

    // The launch configuration reads back as written.
    let lcs = account
        .autoscaling
        .describe_launch_configurations()
        .launch_configuration_names("app-lc")
        .send()
        .await
        .or_panic("DescribeLaunchConfigurations");
    let lc = &lcs.launch_configurations()[0];
    assert_eq!(lc.image_id(), Some(account.linux_ami.as_str()));
    assert_eq!(lc.key_name(), Some(account.key_name.as_str()));
    assert_eq!(lc.security_groups(), [account.security_group_id.as_str()]);
    assert_eq!(
        lc.iam_instance_profile(),
        Some(account.instance_profile_name.as_str())
    );
    use base64::Engine;
    let user_data = base64::engine::general_purpose::STANDARD
        .decode(lc.user_data().unwrap())
        .unwrap();
    assert_eq!(user_data, b"#!/bin/sh\necho app\n");
    assert_eq!(
        lc.instance_monitoring().and_then(|m| m.enabled()),
        Some(true)
    );
    assert_eq!(
        lc.metadata_options().and_then(|m| m.http_tokens()),
        Some(&asg::InstanceMetadataHttpTokensState::Required)
    );
    let bdm = &lc.block_device_mappings()[0];
    assert_eq!(bdm.device_name(), Some("/dev/xvda"));
    assert_eq!(bdm.ebs().and_then(|e| e.volume_size()), Some(20));
    assert_eq!(bdm.ebs().and_then(|e| e.volume_type()), Some("gp3"));

    // RunInstances with the same spec: what DescribeInstances then shows.
    let id = account
        .ec2
        .run_instances()
        .image_id(&account.linux_ami)
        .instance_type(ec2t::InstanceType::M5aLarge)
        .min_count(1)
        .max_count(1)
        .subnet_id(&account.subnet_ids[1])
        .security_group_ids(&account.security_group_id)
        .key_name(&account.key_name)
        .user_data(lc.user_data().unwrap())
        .iam_instance_profile(
            ec2t::IamInstanceProfileSpecification::builder()
                .name(&account.instance_profile_name)
                .build(),
        )
        .monitoring(
            ec2t::RunInstancesMonitoringEnabled::builder()
                .enabled(true)
                .build(),
        )
        .metadata_options(
            ec2t::InstanceMetadataOptionsRequest::builder()
                .http_tokens(ec2t::HttpTokensState::Required)
                .http_put_response_hop_limit(2)
                .build(),
        )
        .block_device_mappings(
            ec2t::BlockDeviceMapping::builder()
                .device_name("/dev/xvda")
                .ebs(
                    ec2t::EbsBlockDevice::builder()
                        .volume_size(20)
                        .volume_type(ec2t::VolumeType::Gp3)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .or_panic("RunInstances with the launch spec")
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    let i = account.instance(&id).await;
    eprintln!(
        "run_instances: profile {:?} key {:?} monitoring {:?} metadata {:?} bdm {:?} az {:?}",
        i.iam_instance_profile(),
        i.key_name(),
        i.monitoring(),
        i.metadata_options(),
        i.block_device_mappings(),
        i.placement().and_then(|p| p.availability_zone())
    );
    assert_eq!(i.key_name(), Some(account.key_name.as_str()));
    assert!(i.iam_instance_profile().is_some());
    assert_eq!(
        i.placement().and_then(|p| p.availability_zone()),
        Some(account.azs[1].as_str())
    );
    assert_eq!(
        i.metadata_options().and_then(|m| m.http_tokens()),
        Some(&ec2t::HttpTokensState::Required)
    );
    assert_eq!(
        account.user_data(&id).await.as_deref(),
        Some("#!/bin/sh\necho app\n")
    );
    let devices: Vec<&str> = i
        .block_device_mappings()
        .iter()
        .filter_map(|b| b.device_name())
        .collect();
    assert_eq!(devices, ["/dev/xvda"], "only the mapped root volume");
}

#[tokio::test]
async fn seeded_mixed_instances_group_keeps_its_policy() {
    let emu = Emulator::start();
    let account = Account::create(&emu.sdk_config(REGION)).await;
    let ids = account
        .create_group(&GroupSpec::new("mixed", "m5.large").mixed_instances())
        .await;
    assert_eq!(ids.len(), 3);
    let group = account.group("mixed").await;
    let policy = group
        .mixed_instances_policy()
        .expect("the policy survives the seeder's updates");
    let overrides: Vec<&str> = policy
        .launch_template()
        .unwrap()
        .overrides()
        .iter()
        .filter_map(|o| o.instance_type())
        .collect();
    assert_eq!(overrides, ["m5.large", "m5a.large"]);
    assert!(group.launch_template().is_none());
}

#[tokio::test]
async fn create_fleet_instant_launches_a_spot_clone_from_the_latest_template_version() {
    let emu = Emulator::start();
    let account = Account::create(&emu.sdk_config(REGION)).await;
    account
        .create_group(
            &GroupSpec::new("app", "m5.large")
                .launch_template("#!/bin/sh\necho latest\n")
                .capacity(1, 1, 2),
        )
        .await;
    let tags = ec2t::TagSpecification::builder()
        .resource_type(ec2t::ResourceType::Instance)
        .tags(
            ec2t::Tag::builder()
                .key("spotswap:replaces")
                .value("i-1")
                .build(),
        )
        .build();
    let out = account
        .ec2
        .create_fleet()
        .r#type(ec2t::FleetType::Instant)
        .target_capacity_specification(
            ec2t::TargetCapacitySpecificationRequest::builder()
                .total_target_capacity(1)
                .default_target_capacity_type(ec2t::DefaultTargetCapacityType::Spot)
                .build(),
        )
        .spot_options(
            ec2t::SpotOptionsRequest::builder()
                .allocation_strategy(ec2t::SpotAllocationStrategy::PriceCapacityOptimized)
                .build(),
        )
        .launch_template_configs(
            ec2t::FleetLaunchTemplateConfigRequest::builder()
                .launch_template_specification(
                    ec2t::FleetLaunchTemplateSpecificationRequest::builder()
                        .launch_template_name("app-lt")
                        .version("$Latest")
                        .build(),
                )
                .overrides(
                    ec2t::FleetLaunchTemplateOverridesRequest::builder()
                        .instance_type(ec2t::InstanceType::M5aLarge)
                        .subnet_id(&account.subnet_ids[2])
                        .max_price("0.096")
                        .build(),
                )
                .build(),
        )
        .tag_specifications(tags)
        .send()
        .await
        .or_panic("CreateFleet instant");
    assert!(out.errors().is_empty(), "{:?}", out.errors());
    let id = out.instances()[0].instance_ids()[0].clone();
    let i = account.instance(&id).await;
    assert_eq!(
        i.instance_lifecycle(),
        Some(&ec2t::InstanceLifecycleType::Spot)
    );
    assert_eq!(i.instance_type(), Some(&ec2t::InstanceType::M5aLarge));
    assert_eq!(i.image_id(), Some(account.linux_ami.as_str()));
    assert_eq!(
        account.user_data(&id).await.as_deref(),
        Some("#!/bin/sh\necho latest\n")
    );
    let t = account.tags_of(&id).await;
    assert_eq!(t.get("spotswap:replaces").map(String::as_str), Some("i-1"));
    assert_eq!(
        i.placement().and_then(|p| p.availability_zone()),
        Some(account.azs[2].as_str()),
        "the override's subnet"
    );
    assert_eq!(i.key_name(), Some(account.key_name.as_str()));
    // moto's CreateFleet does not apply the template's instance profile or metadata options.
    assert_eq!(i.iam_instance_profile(), None);
    assert_eq!(
        i.metadata_options().and_then(|m| m.http_tokens()),
        Some(&ec2t::HttpTokensState::Optional)
    );
}

#[tokio::test]
async fn describe_instance_refreshes_lists_none_unless_a_test_sets_one() {
    let emu = Emulator::start();
    let account = Account::create(&emu.sdk_config(REGION)).await;
    account
        .create_group(&GroupSpec::new("app", "m5.large").capacity(1, 1, 2))
        .await;
    let refreshes = || async {
        account
            .autoscaling
            .describe_instance_refreshes()
            .auto_scaling_group_name("app")
            .max_records(1)
            .send()
            .await
            .or_panic("DescribeInstanceRefreshes")
            .instance_refreshes()
            .iter()
            .map(|r| r.status().unwrap().clone())
            .collect::<Vec<_>>()
    };
    assert!(refreshes().await.is_empty());
    emu.set_instance_refresh(REGION, "app", "InProgress");
    assert_eq!(refreshes().await, [asg::InstanceRefreshStatus::InProgress]);
    emu.set_instance_refresh(REGION, "app", "Successful");
    assert_eq!(refreshes().await, [asg::InstanceRefreshStatus::Successful]);
    // Another region's group of the same name is another group.
    let other = emu
        .autoscaling("eu-west-1")
        .describe_instance_refreshes()
        .auto_scaling_group_name("app")
        .send()
        .await
        .or_panic("DescribeInstanceRefreshes in eu-west-1");
    assert!(other.instance_refreshes().is_empty());
    emu.clear_instance_refreshes();
    assert!(refreshes().await.is_empty());
}
