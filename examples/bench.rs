//! `make bench` (sizes S and M, and the savings against the oracle) and `make bench-large`
//! (S, M and L, and the chart): spotswap's real pass code over the in-memory cloud, with a
//! latency on every AWS call and AWS's request buckets per region, on accounts of growing size.
//! Never a test: it prints figures (docs/benchmarks.md holds the last ones and says how to read
//! them).
//!
//! ```text
//! cargo run --release --example bench -- [--large | --only S|M|L] [--latency-ms 50]
//!     [--svg docs/benchmarks.svg] [--no-savings]
//! ```
//!
//! Sizes: S is 1 region x 10 groups x 10 instances, M 4 x 100 x 10, L 20 x 500 x 20 (200,000
//! instances). Every region has 3 AZs, the bundled instance-type catalog, the bundled on-demand
//! prices and the bundled spot prices varied per AZ (up to 15% either way); each group has its
//! own launch template (on `$Latest`, `$Default` or a pinned version) or launch configuration.
//! Every call sleeps the latency; every operation has its documented request bucket
//! (`spotswap::pacing::documented_bucket`: EC2 reads 100 refilled at 20 a second, writes 50 at
//! 5, RunInstances 5 at 2; Auto Scaling and Pricing assumed alike), and a call past it is
//! refused with `RequestLimitExceeded` and counted as throttled.
//!
//! For each size: the wall and CPU time of a dry-run pass and of a first real pass (with the
//! Lambda's default deadline, 240 s less its 30 s margin), the calls by operation of the dry run
//! beside the minimum read set (what the account's shape needs at AWS's page sizes, with one
//! refresh read per group the pass acts on), throttled calls, the pass's peak heap (bytes
//! allocated by the pass at its peak, counted by this program's allocator: the in-memory
//! account itself is not the pass's), and the size of the Lambda's answer.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use spotswap::catalog::Catalog;
use spotswap::cloud::limits;
use spotswap::cloud::memory::{GroupBuilder, MemoryCloud};
use spotswap::compat::{AmiNeeds, LaunchNeeds, Requirements};
use spotswap::model::{
    Ami, Architecture, LaunchRef, LaunchSpec, Market, Os, SpotPricePoint, Virtualization,
};
use spotswap::pass::{self, PassOptions};
use spotswap::price_table::BundledPrices;
use spotswap::report::PassReport;
use spotswap::settings::{Settings, TypeList};

/// Counts the bytes live and the peak since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call is passed on to the system allocator unchanged; only counters are kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const REGIONS: [&str; 20] = [
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "eu-south-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "ca-central-1",
    "sa-east-1",
    "me-south-1",
    "af-south-1",
];
/// The on-demand types of the groups, in turn.
const GROUP_TYPES: [&str; 10] = [
    "m5.large",
    "m5.xlarge",
    "c5.large",
    "c5.xlarge",
    "r5.large",
    "m6i.large",
    "c6i.large",
    "r6i.large",
    "m5.2xlarge",
    "c5.2xlarge",
];
const AMI: &str = "ami-0b00000000000000a";
/// The Lambda's default timeout less the margin it keeps free.
const LAMBDA_DEADLINE: Duration = Duration::from_secs(240 - 30);

#[derive(Clone, Copy)]
struct Size {
    name: &'static str,
    regions: usize,
    groups: usize,
    per_group: u32,
}

impl Size {
    fn instances(&self) -> usize {
        self.regions * self.groups * self.per_group as usize
    }
}

const S: Size = Size {
    name: "S",
    regions: 1,
    groups: 10,
    per_group: 10,
};
const M: Size = Size {
    name: "M",
    regions: 4,
    groups: 100,
    per_group: 10,
};
const L: Size = Size {
    name: "L",
    regions: 20,
    groups: 500,
    per_group: 20,
};

/// A deterministic factor in [0.85, 1.15] for a spot pool: its price against the bundled one.
fn az_factor(instance_type: &str, az: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in instance_type.bytes().chain(az.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    0.85 + 0.30 * ((h % 10_000) as f64 / 10_000.0)
}

fn azs(region: &str) -> Vec<String> {
    ["a", "b", "c"]
        .iter()
        .map(|z| format!("{region}{z}"))
        .collect()
}

/// The spot price of a pool in the bench's accounts.
fn spot_price(instance_type: &str, az: &str) -> Option<f64> {
    let base = BundledPrices::bundled().linux_spot(instance_type)?;
    Some(base * az_factor(instance_type, az))
}

/// The one AMI of every region: Linux, x86_64, HVM, ENA.
fn bench_ami() -> Ami {
    Ami {
        image_id: AMI.into(),
        architecture: Some(Architecture::X86_64),
        virtualization: Some(Virtualization::Hvm),
        ena_support: Some(true),
        platform_details: Some("Linux/UNIX".into()),
        ..Ami::default()
    }
}

/// The account of a size, every group opted in and all on-demand.
fn account(size: Size) -> MemoryCloud {
    let cloud = MemoryCloud::new();
    let prices = BundledPrices::bundled();
    let on_demand = prices
        .on_demand(prices.region())
        .expect("the bundled table's own region")
        .prices;
    let at = cloud.now() - chrono::TimeDelta::minutes(90);
    let product = Os::Linux.spot_product_description();
    for (r, region) in REGIONS.iter().take(size.regions).enumerate() {
        let zones = azs(region);
        let zone_refs: Vec<&str> = zones.iter().map(String::as_str).collect();
        cloud.add_region(region, &zone_refs);
        cloud.set_on_demand(region, on_demand.clone());
        cloud.put_ami(region, bench_ami());
        for t in prices.instance_types() {
            for az in &zones {
                if let Some(price) = spot_price(t, az) {
                    cloud.put_spot_price(
                        region,
                        SpotPricePoint {
                            instance_type: t.into(),
                            availability_zone: az.clone(),
                            product_description: product.into(),
                            price,
                            timestamp: at,
                        },
                    );
                }
            }
        }
        for g in 0..size.groups {
            let name = format!("team-{g:04}");
            let ty = GROUP_TYPES[g % GROUP_TYPES.len()];
            let spec = LaunchSpec {
                image_id: AMI.into(),
                instance_type: Some(ty.into()),
                ..LaunchSpec::default()
            };
            let id = format!("lt-{:017x}", r * 1_000_000 + g);
            let launch = match g % 8 {
                0..=3 => LaunchRef::LaunchTemplate {
                    id,
                    name: None,
                    version: "$Latest".into(),
                },
                4 | 5 => LaunchRef::LaunchTemplate {
                    id,
                    name: None,
                    version: "$Default".into(),
                },
                6 => LaunchRef::LaunchTemplate {
                    id,
                    name: None,
                    version: "1".into(),
                },
                _ => LaunchRef::LaunchConfiguration {
                    name: format!("{name}-lc"),
                },
            };
            let stored = match &launch {
                LaunchRef::LaunchTemplate { id, .. } => LaunchRef::LaunchTemplate {
                    id: id.clone(),
                    name: None,
                    version: "1".into(),
                },
                lc => lc.clone(),
            };
            cloud.put_launch_spec(region, &stored, spec);
            // One group in ten is at its MaxSize: its swaps raise MaxSize for a moment.
            let max = if g % 10 == 0 {
                size.per_group
            } else {
                size.per_group + 5
            };
            cloud.put_group(
                region,
                GroupBuilder::new(&name)
                    .min(0)
                    .desired(size.per_group)
                    .max(max)
                    .grace_period_secs(300)
                    .tag("spot-enabled", "true")
                    .tag("team", format!("team-{}", g % 17))
                    .propagated_tag("cost-center", format!("cc-{}", g % 5))
                    .launch(launch)
                    .build(),
            );
            cloud.launch_group_members(region, &name, size.per_group as usize, ty, &[]);
        }
    }
    cloud
}

/// The fewest calls a dry-run pass over a fresh account of `size` can make, at AWS's page and
/// batch sizes: what each read must cover, whatever the code.
fn minimum_reads(size: Size) -> BTreeMap<&'static str, u64> {
    let per_region = |items: usize, page: usize| items.div_ceil(page).max(1) as u64;
    let types = Catalog::bundled().len();
    let priced = BundledPrices::bundled().instance_types().count();
    let spot_pools: usize = BundledPrices::bundled()
        .instance_types()
        .filter(|t| BundledPrices::bundled().linux_spot(t).is_some())
        .count()
        * 3;
    let od_linux = BundledPrices::bundled()
        .on_demand(BundledPrices::bundled().region())
        .map(|p| p.prices.values().filter(|p| p.linux.is_some()).count())
        .unwrap_or(priced);
    let members = size.groups * size.per_group as usize;
    let templates = size.groups - size.groups / 8;
    let configurations = size.groups / 8;
    let mut m = BTreeMap::new();
    let r = size.regions as u64;
    m.insert(
        "DescribeAutoScalingGroups",
        r * per_region(size.groups, limits::GROUP_PAGE as usize),
    );
    // The members by id, and the clone listing (one page: no clone yet).
    m.insert(
        "DescribeInstances",
        r * (per_region(members, limits::INSTANCE_ID_BATCH) + 1),
    );
    // `$Latest` and `$Default` of every template in one listing (each template has one
    // version here, which is both).
    m.insert(
        "DescribeLaunchTemplateVersions",
        r * per_region(templates, limits::TEMPLATE_VERSION_PAGE as usize),
    );
    m.insert(
        "DescribeLaunchConfigurations",
        r * per_region(configurations, limits::LAUNCH_CONFIG_BATCH),
    );
    m.insert("DescribeImages", r);
    m.insert(
        "DescribeInstanceTypes",
        r * per_region(types, limits::TYPE_PAGE as usize),
    );
    m.insert(
        "DescribeInstanceTypeOfferings",
        r * per_region(types * 3, limits::OFFERING_PAGE as usize),
    );
    m.insert(
        "DescribeSpotPriceHistory",
        r * per_region(spot_pools, limits::SPOT_PRICE_PAGE as usize),
    );
    m.insert(
        "GetProducts",
        r * per_region(od_linux, limits::PRODUCT_PAGE as usize),
    );
    m.insert("DescribeLaunchTemplates", r);
    // Every group of a fresh account gets clones, so every one needs its refresh read.
    m.insert("DescribeInstanceRefreshes", r * size.groups as u64);
    m
}

/// CPU time of this process so far (user + system), from /proc (in 1/100 s).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

/// A line of /proc/self/status in MB (VmRSS, VmHWM).
fn status_mb(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

struct PassFigures {
    wall: Duration,
    cpu: Duration,
    peak_heap: usize,
    /// Heap the pass's report holds once the pass is done.
    report_heap: usize,
    calls: BTreeMap<String, u64>,
    throttled: u64,
    summary_bytes: usize,
    report: PassReport,
}

async fn measure(cloud: &MemoryCloud, size: Size, dry_run: bool) -> PassFigures {
    let settings = Settings::default();
    let before = cloud.total_call_counts();
    let throttled_before: u64 = REGIONS
        .iter()
        .take(size.regions)
        .map(|r| cloud.throttled(r).values().sum::<u64>())
        .sum();
    let base = LIVE.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    let (cpu0, t0) = (cpu_time(), Instant::now());
    let opts = PassOptions {
        dry_run,
        now: cloud.now(),
        deadline: (!dry_run).then(|| tokio::time::Instant::now() + LAMBDA_DEADLINE),
        cache: None,
        preflight: None,
        stop: None,
    };
    let report = pass::run(cloud, &settings, &opts)
        .await
        .expect("the pass starts");
    let (wall, cpu) = (t0.elapsed(), cpu_time().saturating_sub(cpu0));
    let peak_heap = PEAK.load(Ordering::Relaxed).saturating_sub(base);
    let report_heap = LIVE.load(Ordering::Relaxed).saturating_sub(base);
    let after = cloud.total_call_counts();
    let calls = after
        .iter()
        .map(|(op, n)| (op.clone(), n - before.get(op).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    let throttled: u64 = REGIONS
        .iter()
        .take(size.regions)
        .map(|r| cloud.throttled(r).values().sum::<u64>())
        .sum::<u64>()
        - throttled_before;
    let summary_bytes = serde_json::to_vec(&report.summary())
        .expect("plain data")
        .len();
    PassFigures {
        wall,
        cpu,
        peak_heap,
        report_heap,
        calls,
        throttled,
        summary_bytes,
        report,
    }
}

struct SizeFigures {
    size: Size,
    dry: PassFigures,
    real: PassFigures,
}

fn mb(bytes: usize) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

async fn run_size(size: Size, latency: Duration) -> SizeFigures {
    let t0 = Instant::now();
    let cloud = account(size);
    println!(
        "\n== {} : {} region(s) x {} groups x {} = {} instances (seeded in {:.1} s)",
        size.name,
        size.regions,
        size.groups,
        size.per_group,
        size.instances(),
        t0.elapsed().as_secs_f64()
    );
    for region in REGIONS.iter().take(size.regions) {
        cloud.set_documented_buckets(region);
    }
    cloud.set_latency(latency);
    let dry = measure(&cloud, size, true).await;
    // The request buckets fill again before the next pass, as in the 5 minutes between
    // scheduled passes (writes refill slowest: 50 tokens at 5 a second).
    tokio::time::sleep(Duration::from_secs(10)).await;
    let real = measure(&cloud, size, false).await;
    let min = minimum_reads(size);
    println!(
        "{:<34} {:>10} {:>10} {:>8}",
        "dry-run reads by operation", "calls", "minimum", "ratio"
    );
    let (mut total, mut total_min) = (0u64, 0u64);
    let ops: std::collections::BTreeSet<&str> = dry
        .calls
        .keys()
        .map(String::as_str)
        .chain(min.keys().copied())
        .collect();
    for op in ops {
        let n = dry.calls.get(op).copied().unwrap_or(0);
        let m = min.get(op).copied().unwrap_or(0);
        total += n;
        total_min += m;
        let ratio = if m == 0 {
            "-".to_string()
        } else {
            format!("{:.2}x", n as f64 / m as f64)
        };
        println!("{op:<34} {n:>10} {m:>10} {ratio:>8}");
    }
    println!(
        "{:<34} {total:>10} {total_min:>10} {:>7.2}x",
        "all reads",
        total as f64 / total_min as f64
    );
    for (label, f) in [("dry-run pass", &dry), ("first real pass", &real)] {
        println!(
            "{label:<16} wall {:>7.2} s  cpu {:>7.2} s  peak heap {:>7.1} MB (report {:>6.1} MB)  \
             throttled {:>4}  calls {:>6}  answer {:>6.1} KB",
            f.wall.as_secs_f64(),
            f.cpu.as_secs_f64(),
            mb(f.peak_heap),
            mb(f.report_heap),
            f.throttled,
            f.calls.values().sum::<u64>(),
            f.summary_bytes as f64 / 1024.0
        );
    }
    let t = &real.report.totals;
    let launches: u64 = ["CreateFleet", "RunInstances"]
        .iter()
        .map(|op| real.calls.get(*op).copied().unwrap_or(0))
        .sum();
    println!(
        "first real pass: {} clones launched in {launches} launch calls, {} deferred by the \
         deadline, {} failures",
        t.clones_launched, t.deferred, t.failures
    );
    SizeFigures { size, dry, real }
}

/// Converges an M-size account (paused time: no latency, the clock moved 5 minutes between
/// passes) and prints its hourly spot cost against the oracle and AutoSpotting's rule.
async fn savings_against_the_oracle() {
    let size = M;
    let cloud = account(size);
    let settings = Settings::default();
    let mut passes = 0;
    for _ in 0..30 {
        let opts = PassOptions {
            dry_run: false,
            now: cloud.now(),
            deadline: None,
            cache: None,
            preflight: None,
            stop: None,
        };
        let report = pass::run(&cloud, &settings, &opts)
            .await
            .expect("the pass starts");
        passes += 1;
        let acted = report
            .regions
            .iter()
            .flat_map(|r| r.plan.iter())
            .any(|p| p.actions().next().is_some());
        if !acted {
            break;
        }
        cloud.advance(Duration::from_secs(300));
    }
    let catalog = Catalog::bundled();
    let (allowed, disallowed) = (TypeList::default(), TypeList::default());
    // The cheapest compatible spot price in an AZ for a type, by spotswap's compatibility rules.
    let mut cheapest: BTreeMap<(String, String), f64> = BTreeMap::new();
    let (mut ours, mut oracle, mut on_demand_left) = (0.0, 0.0, 0u32);
    let (mut groups_3plus, mut groups_3pools) = (0u32, 0u32);
    let mut pools_per_group: Vec<usize> = Vec::new();
    let ami = bench_ami();
    for region in REGIONS.iter().take(size.regions) {
        for g in 0..size.groups {
            let name = format!("team-{g:04}");
            let original = GROUP_TYPES[g % GROUP_TYPES.len()];
            let group = cloud.group(region, &name).expect("the group");
            let mut pools = std::collections::BTreeSet::new();
            let mut spot = 0;
            for m in &group.members {
                let i = cloud.instance(region, &m.instance_id).expect("a member");
                let az = i.availability_zone.clone();
                let best = *cheapest
                    .entry((original.to_string(), az.clone()))
                    .or_insert_with(|| {
                        let base = catalog.get(original).expect("a catalog type");
                        let req = Requirements {
                            base,
                            ami: AmiNeeds::from_ami(&ami, base),
                            ephemeral_mappings: 0,
                            allowed: &allowed,
                            disallowed: &disallowed,
                            allow_burstable: false,
                            launch: LaunchNeeds::default(),
                        };
                        catalog
                            .iter()
                            .filter(|c| req.check(c).is_ok())
                            .filter_map(|c| spot_price(&c.instance_type, &az))
                            .fold(f64::INFINITY, f64::min)
                    });
                oracle += best;
                match i.market {
                    Market::Spot => {
                        spot += 1;
                        pools.insert((i.instance_type.clone(), az.clone()));
                        ours += spot_price(&i.instance_type, &az).expect("a priced pool");
                    }
                    Market::OnDemand => {
                        on_demand_left += 1;
                        ours += BundledPrices::bundled()
                            .on_demand(BundledPrices::bundled().region())
                            .and_then(|p| p.prices.get(&i.instance_type)?.linux)
                            .unwrap_or(0.0);
                    }
                }
            }
            if spot >= 3 {
                groups_3plus += 1;
                if pools.len() >= 3 {
                    groups_3pools += 1;
                }
            }
            pools_per_group.push(pools.len());
        }
    }
    pools_per_group.sort_unstable();
    println!(
        "\n== Savings against the oracle: M ({} instances) converged in {passes} passes",
        size.instances()
    );
    println!("hourly cost, spotswap:                 ${ours:>9.2}");
    println!("hourly cost, oracle (cheapest pool):   ${oracle:>9.2}");
    println!(
        "hourly cost, AutoSpotting's rule:      ${oracle:>9.2}  (the cheapest compatible type for \
         each replacement: the oracle's cost, one pool per group and AZ)"
    );
    println!(
        "spotswap over the oracle:              {:>9.2} %",
        (ours / oracle - 1.0) * 100.0
    );
    println!(
        "on-demand instances left: {on_demand_left}; groups of 3+ spot instances over 3+ pools: \
         {groups_3pools} of {groups_3plus}; pools per group: min {}, median {}",
        pools_per_group.first().copied().unwrap_or(0),
        pools_per_group
            .get(pools_per_group.len() / 2)
            .copied()
            .unwrap_or(0)
    );
}

/// A panel of the chart: its title, and each series' label, colour and values.
type Panel = (&'static str, Vec<(&'static str, &'static str, Vec<f64>)>);

/// A chart of wall time and peak heap against account size (log scale), as SVG.
fn chart(figures: &[SizeFigures]) -> String {
    let (w, h, pad) = (360.0, 240.0, 48.0);
    let xs: Vec<f64> = figures
        .iter()
        .map(|f| (f.size.instances() as f64).log10())
        .collect();
    let (x0, x1) = (2.0_f64, 5.5_f64);
    let sx = |x: f64| pad + (x - x0) / (x1 - x0) * (w - 2.0 * pad);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{h}\" \
         font-family=\"sans-serif\" font-size=\"11\">",
        2.0 * w
    );
    let panels: [Panel; 2] = [
        (
            "wall time (s)",
            vec![
                (
                    "dry-run pass",
                    "#1f77b4",
                    figures.iter().map(|f| f.dry.wall.as_secs_f64()).collect(),
                ),
                (
                    "first real pass",
                    "#ff7f0e",
                    figures.iter().map(|f| f.real.wall.as_secs_f64()).collect(),
                ),
            ],
        ),
        (
            "peak heap of the pass (MB)",
            vec![
                (
                    "dry-run pass",
                    "#1f77b4",
                    figures.iter().map(|f| mb(f.dry.peak_heap)).collect(),
                ),
                (
                    "first real pass",
                    "#ff7f0e",
                    figures.iter().map(|f| mb(f.real.peak_heap)).collect(),
                ),
            ],
        ),
    ];
    for (p, (title, series)) in panels.iter().enumerate() {
        let ox = p as f64 * w;
        let top = series
            .iter()
            .flat_map(|(_, _, v)| v.iter().copied())
            .fold(1.0_f64, f64::max)
            * 1.1;
        let sy = |y: f64| h - pad - y / top * (h - 2.0 * pad);
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"20\" text-anchor=\"middle\">{title}</text>",
            ox + w / 2.0
        );
        let _ = writeln!(
            svg,
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\
             <line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
            ox + pad,
            h - pad,
            ox + w - pad,
            h - pad,
            ox + pad,
            pad,
            ox + pad,
            h - pad
        );
        for (f, x) in figures.iter().zip(&xs) {
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{} ({})</text>",
                ox + sx(*x),
                h - pad + 16.0,
                f.size.name,
                f.size.instances()
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.0}</text>\
             <text x=\"{}\" y=\"{}\" text-anchor=\"end\">0</text>",
            ox + pad - 4.0,
            pad + 4.0,
            top,
            ox + pad - 4.0,
            h - pad
        );
        for (k, (label, colour, values)) in series.iter().enumerate() {
            let points: Vec<String> = xs
                .iter()
                .zip(values)
                .map(|(x, y)| format!("{:.1},{:.1}", ox + sx(*x), sy(*y)))
                .collect();
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>",
                points.join(" ")
            );
            for (x, y) in xs.iter().zip(values) {
                let _ = writeln!(
                    svg,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>\
                     <text x=\"{:.1}\" y=\"{:.1}\" font-size=\"9\">{y:.1}</text>",
                    ox + sx(*x),
                    sy(*y),
                    ox + sx(*x) + 4.0,
                    sy(*y) - 4.0
                );
            }
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" fill=\"{colour}\">{label}</text>",
                ox + pad + 8.0,
                pad + 14.0 * (k as f64 + 1.0)
            );
        }
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">instances (log scale)</text>",
            ox + w / 2.0,
            h - 8.0
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let large = args.iter().any(|a| a == "--large");
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
    };
    let latency = Duration::from_millis(
        arg("--latency-ms")
            .map(|v| v.parse().expect("--latency-ms takes milliseconds"))
            .unwrap_or(50),
    );
    let base_rss = status_mb("VmRSS:");
    println!(
        "spotswap bench: latency {} ms per call, documented request buckets per region; \
         process RSS before any account: {base_rss:.1} MB",
        latency.as_millis()
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let sizes: Vec<Size> = match arg("--only") {
        Some(name) => [S, M, L]
            .into_iter()
            .filter(|s| s.name == name.as_str())
            .collect(),
        None if large => vec![S, M, L],
        None => vec![S, M],
    };
    let mut figures = Vec::new();
    for size in sizes {
        figures.push(runtime.block_on(run_size(size, latency)));
    }
    println!("\n== Growth (dry-run pass)");
    for f in &figures {
        let n = f.size.instances() as f64;
        println!(
            "{:>2}: {:>7.1} us cpu and {:>6.0} bytes of peak heap per instance; estimated Lambda \
             RSS {:>6.1} MB (RSS before any account + peak heap)",
            f.size.name,
            f.dry.cpu.as_secs_f64() * 1e6 / n,
            f.dry.peak_heap as f64 / n,
            base_rss + mb(f.dry.peak_heap)
        );
    }
    println!(
        "process peak RSS, the in-memory accounts included: {:.1} MB",
        status_mb("VmHWM:")
    );
    if let Some(path) = arg("--svg") {
        std::fs::write(path, chart(&figures)).expect("the chart is written");
        println!("chart written to {path}");
    }
    if !args.iter().any(|a| a == "--no-savings") {
        let paused = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("a runtime");
        paused.block_on(savings_against_the_oracle());
    }
}
