//! How many items spotswap asks AWS for per call: a batch of ids sent in one call, or a page
//! of results. The AWS adapter sends these numbers and the in-memory cloud counts its calls
//! with them, so a component test's call counts are what a real pass would make.
//!
//! Each number is at most the limit the AWS API reference gives for the call; this module
//! holds nothing else (no retry policy, no concurrency) and decides nothing.

/// Instance ids per `DescribeInstances` call, sent as an `instance-id` filter: a filter takes
/// at most 200 values (EC2 API reference, "Filters": "the maximum number of filter values
/// specified on a single call is 200"), so a batch is 200.
pub const INSTANCE_ID_BATCH: usize = 200;

/// Instances per `DescribeInstances` page (`MaxResults`: 5 to 1,000).
pub const INSTANCE_PAGE: i32 = 1000;

/// Instance ids per `DescribeAutoScalingInstances` call (`InstanceIds`: at most 50; its
/// `MaxRecords` defaults to 50, so a batch is one page).
pub const MEMBERSHIP_BATCH: usize = 50;

/// Groups per `DescribeAutoScalingGroups` page (`MaxRecords`: default 50, at most 100).
pub const GROUP_PAGE: i32 = 100;

/// Names per `DescribeLaunchConfigurations` call (`LaunchConfigurationNames`: at most 50; its
/// `MaxRecords` defaults to 50, so a batch is one page).
pub const LAUNCH_CONFIG_BATCH: usize = 50;

/// AMI ids per `DescribeImages` call, sent as an `image-id` filter: at most 200 filter values
/// per call, as for [`INSTANCE_ID_BATCH`].
pub const IMAGE_BATCH: usize = 200;

/// Instance types per `DescribeInstanceTypes` page (`MaxResults`: 5 to 100).
pub const TYPE_PAGE: i32 = 100;

/// (type, AZ) pairs per `DescribeInstanceTypeOfferings` page (`MaxResults`: 5 to 1,000).
pub const OFFERING_PAGE: i32 = 1000;

/// Price points per `DescribeSpotPriceHistory` page (`MaxResults`: 5 to 1,000).
pub const SPOT_PRICE_PAGE: i32 = 1000;

/// Products per Pricing `GetProducts` page (`MaxResults`: 1 to 100).
pub const PRODUCT_PAGE: i32 = 100;

/// Instance ids per `TerminateInstances` call, as the in-memory cloud counts them. The AWS
/// adapter sends all of a call's ids in one request (the few orphans a pass terminates).
pub const TERMINATE_BATCH: usize = 1000;

/// Calls of one read (pages by id, per-group reads) in flight at once within a region: each
/// still waits for its request token (`crate::pacing`), so this only bounds the answers held
/// in memory at once.
pub const READ_CONCURRENCY: usize = 8;

/// Launch template versions per `DescribeLaunchTemplateVersions` page (its `MaxResults` is
/// 1-200).
pub const TEMPLATE_VERSION_PAGE: i32 = 200;

/// Groups per `DescribeTags` call when a pass reads one tag of named groups, sent as an
/// `auto-scaling-group` filter (at most 1,000 values per filter type) with a `key` filter: each
/// group has at most one tag of a key, so 100 groups are one page (`MaxRecords`: at most 100).
pub const GROUP_TAG_BATCH: usize = 100;

/// Scaling activities a `DescribeScalingActivities` page asks for: the most the API returns
/// (Auto Scaling API reference, `MaxRecords`, 100).
pub const ACTIVITY_PAGE: i32 = 100;

/// Tags per `CreateOrUpdateTags` call when a pass writes one tag on many groups. The API takes
/// a list of tags, each naming its group, and documents no count limit; 50 keeps a request
/// small.
pub const GROUP_TAG_WRITE_BATCH: usize = 50;
