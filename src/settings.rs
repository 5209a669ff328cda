//! Settings: global values from flags and environment variables, and per-group overrides from
//! group tags, with precedence tag > global > built-in default (README, "Settings").
//!
//! Every setting has one name stem used on every surface: flag `--min-on-demand-number`, env
//! `MIN_ON_DEMAND_NUMBER`, CloudFormation parameter `MinOnDemandNumber`, group tag
//! `spotswap:min-on-demand-number`. AutoSpotting's tag names are accepted as aliases. A bad value
//! is an error naming the setting, where it came from and the value: it never falls back
//! silently, because a typo in a minimum must not let spotswap replace instances the user wanted
//! kept. Pure: parsing and resolution only, no I/O and no logging.

use std::collections::BTreeMap;
use std::fmt;

use chrono_tz::Tz;
use serde::Serialize;

use crate::Error;
use crate::glob;
use crate::model::AllocationStrategy;
use crate::protocol;
use crate::schedule::{Schedule, ScheduleState};

/// Whether a setting is global only or may be overridden per group by a tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Global,
    Group,
}

/// One setting: its stem, default, scope, AutoSpotting alias and one line of help.
#[derive(Debug, Clone, Copy)]
pub struct SettingDef {
    pub stem: &'static str,
    pub default: &'static str,
    pub scope: Scope,
    /// AutoSpotting's tag name for the same setting, accepted on groups.
    pub alias: Option<&'static str>,
    pub help: &'static str,
    /// What a deploy accepts, so a bad value fails the CloudFormation deploy instead of every
    /// invocation: the stack parameter's type and constraints are this.
    pub check: Check,
}

/// The deploy-time form of a setting's rule (CloudFormation parameter constraints). It is
/// looser than or equal to the setting's parser, never stricter on a value the parser takes
/// (tests check both on samples), except for bounds a real account never reaches.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Check {
    /// A `Number` between `min` and `max`.
    Number { min: f64, max: f64 },
    /// One of these (`AllowedValues`).
    Choices(&'static [&'static str]),
    /// Text matching this regular expression (`AllowedPattern`), described for the deploy error.
    Pattern(&'static str, &'static str),
}

impl SettingDef {
    /// The environment variable: `MIN_ON_DEMAND_NUMBER`.
    pub fn env(&self) -> String {
        self.stem.replace('-', "_").to_ascii_uppercase()
    }

    /// The group tag: `spotswap:min-on-demand-number` (only for group-scoped settings).
    pub fn tag(&self) -> String {
        format!("{}{}", protocol::SETTING_PREFIX, self.stem)
    }

    /// Whether the setting is true or false (its default says so): a switch on the command line.
    pub fn is_bool(&self) -> bool {
        matches!(self.default, "true" | "false")
    }

    /// The CloudFormation parameter: `MinOnDemandNumber`.
    pub fn cfn_parameter(&self) -> String {
        self.stem
            .split('-')
            .map(|w| {
                let mut c = w.chars();
                c.next()
                    .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                    .unwrap_or_default()
            })
            .collect()
    }
}

const fn def(
    stem: &'static str,
    default: &'static str,
    scope: Scope,
    alias: Option<&'static str>,
    help: &'static str,
    check: Check,
) -> SettingDef {
    SettingDef {
        stem,
        default,
        scope,
        alias,
        help,
        check,
    }
}

/// Every setting spotswap reads. The README's settings reference is written from this table.
pub const SETTINGS: &[SettingDef] = &[
    def(
        "regions",
        "",
        Scope::Global,
        None,
        "Regions to process, as globs separated by commas or spaces (us-*, eu-west-1); empty means every enabled region",
        Check::Pattern(
            r"^[a-z0-9*?, -]*$",
            "region names or globs (us-*, eu-west-1), separated by commas or spaces",
        ),
    ),
    def(
        "tag-filters",
        "",
        Scope::Global,
        None,
        "Group tags that select groups, as key=value pairs (values are globs); empty means spot-enabled=true in opt-in mode and spot-enabled=false in opt-out mode",
        Check::Pattern(
            r"^[, ]*([^=, ]+=[^, ]*[, ]*)*$",
            "key=value pairs separated by commas or spaces (values may be globs)",
        ),
    ),
    def(
        "tag-filtering-mode",
        "opt-in",
        Scope::Global,
        None,
        "opt-in: process groups carrying every filter tag; opt-out: process every group except those carrying every filter tag",
        Check::Choices(&["opt-in", "opt-out"]),
    ),
    def(
        "dry-run",
        "false",
        Scope::Global,
        None,
        "Plan and report, but change nothing",
        Check::Choices(&["true", "false"]),
    ),
    def(
        "interruption-action",
        "terminate",
        Scope::Global,
        None,
        "What the Lambda does with an opted-in group's spot instance on an interruption warning: terminate (in the group, desired capacity kept, termination hooks run) or detach (the instance leaves the group, which launches a replacement, and runs until reclaimed); on a rebalance recommendation it always terminates",
        Check::Choices(&["terminate", "detach"]),
    ),
    def(
        "handle-rebalance-recommendations",
        "false",
        Scope::Global,
        None,
        "Treat an EC2 rebalance recommendation like an interruption warning (a soft signal: off by default, as it causes churn)",
        Check::Choices(&["true", "false"]),
    ),
    def(
        "cache-hours",
        "6",
        Scope::Global,
        None,
        "Hours a process (a warm Lambda) reuses the instance types, their offerings and the on-demand prices it read in a region; 0 reads them every pass. Spot prices are read every pass",
        Check::Number {
            min: 0.0,
            max: 168.0,
        },
    ),
    def(
        "connect-timeout-seconds",
        "5",
        Scope::Global,
        None,
        "Seconds an AWS call may take to connect before it fails (and is retried)",
        Check::Number {
            min: 1.0,
            max: 300.0,
        },
    ),
    def(
        "attempt-timeout-seconds",
        "20",
        Scope::Global,
        None,
        "Seconds one attempt of an AWS call may take before it fails (and is retried)",
        Check::Number {
            min: 1.0,
            max: 300.0,
        },
    ),
    def(
        "operation-timeout-seconds",
        "60",
        Scope::Global,
        None,
        "Seconds an AWS call may take in all, its retries included, before it fails: an endpoint that never answers ends the pass in bounded time",
        Check::Number {
            min: 1.0,
            max: 900.0,
        },
    ),
    def(
        "lease-seconds",
        "180",
        Scope::Global,
        None,
        "Seconds a pass may change the groups it has leased (tag spotswap:lease), so that two passes at once never change one group; the lease lasts operation-timeout-seconds longer, so no call of the pass lands after it ends, and a pass that dies holding it delays its groups until then",
        Check::Number {
            min: 10.0,
            max: 3600.0,
        },
    ),
    def(
        "min-on-demand-number",
        "0",
        Scope::Group,
        Some("autospotting_min_on_demand_number"),
        "On-demand instances to keep in each group; the larger of this and the percentage wins",
        Check::Number {
            min: 0.0,
            max: 100000.0,
        },
    ),
    def(
        "min-on-demand-percentage",
        "0",
        Scope::Group,
        Some("autospotting_min_on_demand_percentage"),
        "Percentage of in-service instances to keep on-demand (0-100, rounded up)",
        Check::Number {
            min: 0.0,
            max: 100.0,
        },
    ),
    def(
        "allowed-instance-types",
        "",
        Scope::Group,
        Some("autospotting_allowed_instance_types"),
        "Spot types that may be used, as globs; 'current' means the replaced instance's own type; empty allows all",
        Check::Pattern(
            r"^[a-z0-9.*?\-, ]*$",
            "instance types or globs (c5.*, m5.large) or current, separated by commas or spaces",
        ),
    ),
    def(
        "disallowed-instance-types",
        "",
        Scope::Group,
        Some("autospotting_disallowed_instance_types"),
        "Spot types that must not be used, as globs; applies together with the allowed list",
        Check::Pattern(
            r"^[a-z0-9.*?\-, ]*$",
            "instance types or globs (t2.*), separated by commas or spaces",
        ),
    ),
    def(
        "on-demand-price-multiplier",
        "1.0",
        Scope::Group,
        Some("autospotting_on_demand_price_multiplier"),
        "Multiplies on-demand list prices before comparing with spot, above 0 and at most 1 (below 1 models Savings Plans or reservations)",
        Check::Number {
            min: 0.01,
            max: 1.0,
        },
    ),
    def(
        "spot-product-description",
        "",
        Scope::Group,
        Some("autospotting_spot_product_description"),
        "Spot product to price the group as (Linux/UNIX (Amazon VPC), Windows (Amazon VPC), ...); empty means from the AMI's platform",
        Check::Pattern(
            r"^((Linux/UNIX|Windows|Red Hat Enterprise Linux|SUSE Linux)( \(Amazon VPC\))?)?$",
            "empty, or Linux/UNIX, Windows, Red Hat Enterprise Linux or SUSE Linux, optionally followed by (Amazon VPC)",
        ),
    ),
    def(
        "replacements-per-pass",
        "25%",
        Scope::Group,
        None,
        "Clones in flight per group per pass: a number, or a percentage of the group's in-service instances above its on-demand floor (at least one), so a group converts in about 100 / percentage passes",
        Check::Pattern(
            r"^([0-9]+|[0-9]+(\.[0-9]+)?%)$",
            "a whole number (3) or a percentage (25%)",
        ),
    ),
    def(
        "pools-per-az",
        "3",
        Scope::Group,
        None,
        "Most spot pools (type and AZ) a group's spot instances spread over in each AZ: launches take the least used of this many cheapest pools (those within spread-price-margin of the cheapest), so one pool's interruption takes out a share of the group, not all of it",
        Check::Number {
            min: 1.0,
            max: 50.0,
        },
    ),
    def(
        "spread-price-margin",
        "5",
        Scope::Group,
        None,
        "Percentage above the cheapest pool of its AZ within which a pool joins a group's spread over pools-per-az: diversity is bought only where it is nearly free, except that a group always spreads over at least 3 pools in all (1 per AZ over 3 AZs, 3 in a single AZ); 100 always spreads over pools-per-az",
        Check::Number {
            min: 0.0,
            max: 100.0,
        },
    ),
    def(
        "allocation-strategy",
        "price-capacity-optimized",
        Scope::Group,
        None,
        "How EC2 Fleet picks among a launch's ranked pools: price-capacity-optimized (the pools with most capacity, then the cheapest of them) or capacity-optimized-prioritized (spotswap's ranking, as far as capacity allows)",
        Check::Choices(&["price-capacity-optimized", "capacity-optimized-prioritized"]),
    ),
    def(
        "spot-price-window-minutes",
        "60",
        Scope::Group,
        None,
        "Spot prices are judged by their highest value over this many minutes, not only the latest",
        Check::Number {
            min: 1.0,
            max: 10080.0,
        },
    ),
    def(
        "cron-schedule",
        "* *",
        Scope::Group,
        Some("autospotting_cron_schedule"),
        "When to act, as two cron fields, hours and weekdays (\"9-17 1-5\" is 09:00-17:59, Monday to Friday)",
        Check::Pattern(
            r"^[0-9*,/-]+ [0-9*,/-]+$",
            "two cron fields, hours and weekdays (9-17 1-5)",
        ),
    ),
    def(
        "cron-timezone",
        "UTC",
        Scope::Group,
        Some("autospotting_cron_timezone"),
        "IANA timezone of the schedule (Europe/London)",
        Check::Pattern(
            r"^[A-Za-z][A-Za-z0-9_+/-]*$",
            "an IANA timezone (Europe/London)",
        ),
    ),
    def(
        "cron-schedule-state",
        "on",
        Scope::Group,
        Some("autospotting_cron_schedule_state"),
        "on: act inside the schedule; off: act outside it",
        Check::Choices(&["on", "off"]),
    ),
    def(
        "orphan-timeout-minutes",
        "60",
        Scope::Group,
        None,
        "A clone still unattached this long after the group's grace period is terminated",
        Check::Number {
            min: 0.0,
            max: 10080.0,
        },
    ),
    def(
        "healthy-timeout-minutes",
        "10",
        Scope::Group,
        None,
        "A clone attached behind the group's load balancers and not healthy there this long \
         after its attach is taken out again, and the group backs off",
        Check::Number {
            min: 1.0,
            max: 1440.0,
        },
    ),
    def(
        "interruption-cooldown-minutes",
        "60",
        Scope::Group,
        None,
        "A spot pool (type and AZ) that interrupted a group's instance is avoided for this long",
        Check::Number {
            min: 0.0,
            max: 10080.0,
        },
    ),
    def(
        "allow-burstable",
        "false",
        Scope::Group,
        None,
        "Allow burstable (t2, t3, t4g ...) spot types for groups that do not run burstable types",
        Check::Choices(&["true", "false"]),
    ),
];

/// Looks a setting up by stem.
pub fn setting(stem: &str) -> Option<&'static SettingDef> {
    SETTINGS.iter().find(|d| d.stem == stem)
}

/// A setting whose value could not be used, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InvalidSetting {
    /// The setting's stem.
    pub setting: String,
    /// Where the value came from: a tag key, or a flag / environment variable.
    pub source: String,
    pub value: String,
    pub problem: String,
}

impl fmt::Display for InvalidSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} has value {:?}: {}",
            self.source, self.value, self.problem
        )
    }
}

impl std::error::Error for InvalidSetting {}

/// What to do with a spot instance whose interruption warning arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InterruptionAction {
    /// Terminate it through the group without decrementing desired capacity: the group
    /// launches a replacement at once and termination lifecycle hooks run.
    Terminate,
    /// Detach it without decrementing desired capacity: the group launches a replacement at
    /// once and the instance keeps serving until EC2 reclaims it.
    Detach,
}

/// Global or per-group: opt-in or opt-out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterMode {
    OptIn,
    OptOut,
}

/// One `key=value-glob` tag filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagFilter {
    pub key: String,
    pub value: String,
}

/// A list of instance-type globs; `current` stands for the replaced instance's type.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TypeList(pub Vec<String>);

impl TypeList {
    /// Whether the list names nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The list as a setting value: its items separated by commas.
    pub fn text(&self) -> String {
        self.0.join(",")
    }

    /// Whether the list names the replaced instance's own type (`current`).
    pub fn names_current(&self) -> bool {
        self.0.iter().any(|p| p == "current")
    }

    /// Whether `candidate` matches an item of the list, for an instance of type `current`.
    pub fn matches(&self, candidate: &str, current: &str) -> bool {
        self.0.iter().any(|p| {
            if p == "current" {
                candidate == current
            } else {
                glob::matches(p, candidate)
            }
        })
    }
}

/// How many clones a group may launch in one pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Budget {
    Count(u32),
    /// A percentage of the replaceable instances, at least one when it is above zero.
    Percent(f64),
}

impl Budget {
    /// The number of launches allowed when `replaceable` instances could be replaced.
    pub fn allowance(self, replaceable: u32) -> u32 {
        match self {
            Budget::Count(n) => n.min(replaceable),
            Budget::Percent(p) if p <= 0.0 || replaceable == 0 => 0,
            Budget::Percent(p) => ((replaceable as f64 * p / 100.0).floor() as u32)
                .max(1)
                .min(replaceable),
        }
    }
}

/// The settings that apply to one group: globals overlaid with its tags.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSettings {
    pub min_on_demand_number: u32,
    pub min_on_demand_percentage: f64,
    pub allowed_instance_types: TypeList,
    pub disallowed_instance_types: TypeList,
    pub on_demand_price_multiplier: f64,
    /// `None`: price the group as the OS its AMI runs.
    pub spot_product_description: Option<String>,
    pub replacements_per_pass: Budget,
    /// Spot pools per AZ a group's launches rotate over, least used first.
    pub pools_per_az: u32,
    /// Percent above an AZ's cheapest pool within which a pool joins the spread.
    pub spread_price_margin: f64,
    /// How EC2 Fleet chooses among the pools a launch offers.
    pub allocation_strategy: AllocationStrategy,
    pub spot_price_window_minutes: u32,
    pub cron_schedule: Schedule,
    pub cron_timezone: Tz,
    pub cron_schedule_state: ScheduleState,
    pub orphan_timeout_minutes: u32,
    /// How long an attached clone may stay unhealthy behind the group's load balancers before
    /// its swap is undone.
    pub healthy_timeout_minutes: u32,
    pub interruption_cooldown_minutes: u32,
    pub allow_burstable: bool,
}

impl GroupSettings {
    /// The on-demand instances to keep when `in_service` instances serve: the larger of the
    /// number and the percentage, rounded up.
    pub fn min_on_demand(&self, in_service: u32) -> u32 {
        let by_pct = (in_service as f64 * self.min_on_demand_percentage / 100.0 - 1e-9).ceil();
        self.min_on_demand_number.max(by_pct.max(0.0) as u32)
    }
}

/// Global settings, resolved and validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub regions: Vec<String>,
    pub tag_filters: Vec<TagFilter>,
    pub tag_filtering_mode: FilterMode,
    pub dry_run: bool,
    pub interruption_action: InterruptionAction,
    pub handle_rebalance_recommendations: bool,
    /// How long slow-changing reads (instance types, offerings, on-demand prices) are reused
    /// by later passes of the same process.
    pub cache_hours: u32,
    /// How long an AWS call may take: to connect, per attempt, and in all.
    pub timeouts: CallTimeouts,
    /// How long a pass may change the groups it has leased, in seconds; the lease itself lasts
    /// the operation timeout longer.
    pub lease_secs: u32,
    /// Defaults for every group, before its tags.
    pub group: GroupSettings,
    /// The global values of the group-scoped settings as given (or defaulted), with where each
    /// came from: a group's tags are overlaid on these and parsed as one.
    group_values: BTreeMap<&'static str, Sourced>,
}

/// How long an AWS call may take, in seconds: to connect, per attempt, and in all with its
/// retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallTimeouts {
    pub connect_secs: u32,
    pub attempt_secs: u32,
    pub operation_secs: u32,
}

/// A setting's value as text, with where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sourced {
    value: String,
    source: String,
}

/// What the settings say about one group: left alone, unusable, or opted in with its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupPolicy {
    /// The group does not carry the filter tags (or carries them in opt-out mode).
    NotOptedIn,
    /// A setting tag has a value that cannot be used: the group must be left alone.
    Invalid(InvalidSetting),
    /// Opted in, with the global settings overlaid by its tags.
    OptedIn(GroupSettings),
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_pairs(std::iter::empty::<(&str, &str)>())
            .expect("built-in defaults are valid")
    }
}

impl Settings {
    /// Builds settings from `(stem, value)` pairs (flags and environment), over the built-in
    /// defaults of [`SETTINGS`]. Every invalid value is reported, not only the first.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Settings, Vec<InvalidSetting>> {
        let mut values: BTreeMap<&'static str, Sourced> = SETTINGS
            .iter()
            .map(|d| {
                let source = format!("--{} / {}", d.stem, d.env());
                (
                    d.stem,
                    Sourced {
                        value: d.default.to_string(),
                        source,
                    },
                )
            })
            .collect();
        let mut errors = Vec::new();
        for (k, v) in pairs {
            match setting(k.as_ref()) {
                Some(d) => {
                    values
                        .get_mut(d.stem)
                        .expect("every stem has a value")
                        .value = v.as_ref().to_string();
                }
                None => errors.push(InvalidSetting {
                    setting: k.as_ref().to_string(),
                    source: k.as_ref().to_string(),
                    value: v.as_ref().to_string(),
                    problem: "no such setting".into(),
                }),
            }
        }
        let group = parse_group(&|stem| &values[stem]).map_err(|mut e| errors.append(&mut e));
        let mut global = |stem: &'static str, problem: Option<String>| {
            if let Some(problem) = problem {
                errors.push(values[stem].invalid(stem, problem));
            }
        };
        let value = |stem: &str| values[stem].value.as_str();
        let mode = parse_mode(value("tag-filtering-mode"));
        global("tag-filtering-mode", mode.as_ref().err().cloned());
        let mode = mode.unwrap_or(FilterMode::OptIn);
        let filters = parse_tag_filters(value("tag-filters"), mode);
        global("tag-filters", filters.as_ref().err().cloned());
        let interruption_action = parse_interruption_action(value("interruption-action"));
        global(
            "interruption-action",
            interruption_action.as_ref().err().cloned(),
        );
        let rebalance = parse_bool(value("handle-rebalance-recommendations"));
        global(
            "handle-rebalance-recommendations",
            rebalance.as_ref().err().cloned(),
        );
        let dry_run = parse_bool(value("dry-run"));
        global("dry-run", dry_run.as_ref().err().cloned());
        let cache_hours = parse_cache_hours(value("cache-hours"));
        global("cache-hours", cache_hours.as_ref().err().cloned());
        let mut seconds = |stem: &'static str| {
            let n = parse_seconds(value(stem));
            global(stem, n.as_ref().err().cloned());
            n.unwrap_or(1)
        };
        let timeouts = CallTimeouts {
            connect_secs: seconds("connect-timeout-seconds"),
            attempt_secs: seconds("attempt-timeout-seconds"),
            operation_secs: seconds("operation-timeout-seconds"),
        };
        let lease_secs = seconds("lease-seconds");
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Settings {
            regions: glob::split_list(value("regions")),
            tag_filters: filters.expect("checked above"),
            tag_filtering_mode: mode,
            dry_run: dry_run.expect("checked above"),
            interruption_action: interruption_action.expect("checked above"),
            handle_rebalance_recommendations: rebalance.expect("checked above"),
            cache_hours: cache_hours.expect("checked above"),
            timeouts,
            lease_secs,
            group: group.expect("checked above"),
            group_values: values
                .into_iter()
                .filter(|(stem, _)| setting(stem).is_some_and(|d| d.scope == Scope::Group))
                .collect(),
        })
    }

    /// Whether a region is selected by the `regions` setting.
    pub fn region_enabled(&self, region: &str) -> bool {
        self.regions.is_empty() || self.regions.iter().any(|p| glob::matches(p, region))
    }

    /// Whether a group with these tags is opted in. In opt-in mode a group needs every filter
    /// tag; in opt-out mode a group is excluded only when it carries every filter tag
    /// (AutoSpotting's semantics, kept so its users' tags mean the same thing).
    pub fn opts_in(&self, group_tags: &BTreeMap<String, String>) -> bool {
        let all = self.tag_filters.iter().all(|f| {
            group_tags
                .get(&f.key)
                .is_some_and(|v| glob::matches(&f.value, v))
        });
        match self.tag_filtering_mode {
            FilterMode::OptIn => all,
            FilterMode::OptOut => !all,
        }
    }

    /// What the settings say about a group with these tags: resolved once per group per pass.
    pub fn policy(&self, group_tags: &BTreeMap<String, String>) -> GroupPolicy {
        if !self.opts_in(group_tags) {
            return GroupPolicy::NotOptedIn;
        }
        match self.for_group(group_tags) {
            Ok(s) => GroupPolicy::OptedIn(s),
            Err(e) => GroupPolicy::Invalid(e),
        }
    }

    /// Every group's policy, by name.
    pub fn policies(&self, groups: &[crate::model::Group]) -> BTreeMap<String, GroupPolicy> {
        groups
            .iter()
            .map(|g| (g.name.clone(), self.policy(&g.tags)))
            .collect()
    }

    /// The settings for a group: the global values overlaid with the group's tags, a spotswap
    /// tag winning over an AutoSpotting alias for the same setting. The first bad tag value is
    /// returned as an error, and the group must then be left alone; an alias tag with a bad
    /// value is an error even where a spotswap tag overrides it, so no typo goes unseen.
    pub fn for_group(
        &self,
        group_tags: &BTreeMap<String, String>,
    ) -> Result<GroupSettings, InvalidSetting> {
        let overlay = |with_alias: bool, with_tag: bool| {
            let mut values = self.group_values.clone();
            for d in SETTINGS.iter().filter(|d| d.scope == Scope::Group) {
                let alias = d.alias.filter(|_| with_alias).map(str::to_string);
                let tag = Some(d.tag()).filter(|_| with_tag);
                for key in [alias, tag].into_iter().flatten() {
                    if let Some(value) = group_tags.get(&key) {
                        values.insert(
                            d.stem,
                            Sourced {
                                value: value.clone(),
                                source: format!("tag {key}"),
                            },
                        );
                    }
                }
            }
            parse_group(&|stem| &values[stem]).map_err(|mut errs| errs.remove(0))
        };
        let shadowed_alias = SETTINGS.iter().any(|d| {
            d.alias.is_some_and(|a| group_tags.contains_key(a)) && group_tags.contains_key(&d.tag())
        });
        if shadowed_alias {
            overlay(true, false)?;
        }
        let out = overlay(true, true)?;
        // A spotswap-prefixed tag that names no setting is most likely a typo: say so rather
        // than ignore it. The protocol's own tags are not settings.
        for (key, value) in group_tags {
            if let Some(stem) = key.strip_prefix(protocol::SETTING_PREFIX)
                && !protocol::PROTOCOL_TAGS.contains(&key.as_str())
                && !self.tag_filters.iter().any(|f| &f.key == key)
                && !SETTINGS
                    .iter()
                    .any(|d| d.scope == Scope::Group && d.stem == stem)
            {
                return Err(InvalidSetting {
                    setting: stem.into(),
                    source: format!("tag {key}"),
                    value: value.clone(),
                    problem: "no such per-group setting".into(),
                });
            }
        }
        Ok(out)
    }
}

impl Sourced {
    fn invalid(&self, stem: &str, problem: String) -> InvalidSetting {
        InvalidSetting {
            setting: stem.into(),
            source: self.source.clone(),
            value: self.value.clone(),
            problem,
        }
    }
}

/// Parses every group-scoped setting from its text: the one place that maps a stem to its
/// field. Every bad value is reported, in table order.
fn parse_group<'v>(
    values: &dyn Fn(&'static str) -> &'v Sourced,
) -> Result<GroupSettings, Vec<InvalidSetting>> {
    let mut errors = Vec::new();
    let mut field = |stem: &'static str, parse: &dyn Fn(&str) -> Result<Parsed, String>| {
        let v = values(stem);
        parse(v.value.trim())
            .map_err(|problem| errors.push(v.invalid(stem, problem)))
            .ok()
    };
    use Parsed as P;
    let fields = [
        field("min-on-demand-number", &|v| parse_count(v).map(P::Count)),
        field("min-on-demand-percentage", &|v| {
            parse_percent(v).map(P::Number)
        }),
        field("allowed-instance-types", &|v| {
            Ok(P::Types(TypeList(glob::split_list(v))))
        }),
        field("disallowed-instance-types", &|v| {
            Ok(P::Types(TypeList(glob::split_list(v))))
        }),
        field("on-demand-price-multiplier", &|v| {
            parse_multiplier(v).map(P::Number)
        }),
        field("spot-product-description", &|v| {
            parse_product(v).map(P::Product)
        }),
        field("replacements-per-pass", &|v| parse_budget(v).map(P::Budget)),
        field("pools-per-az", &|v| parse_pools(v).map(P::Count)),
        field("spread-price-margin", &|v| parse_percent(v).map(P::Number)),
        field("allocation-strategy", &|v| v.parse().map(P::Strategy)),
        field("spot-price-window-minutes", &|v| {
            parse_window(v).map(P::Count)
        }),
        field("cron-schedule", &|v| {
            v.parse().map(P::Schedule).map_err(|e: Error| e.to_string())
        }),
        field("cron-timezone", &|v| {
            v.parse()
                .map(P::Timezone)
                .map_err(|_| "expected an IANA timezone such as Europe/London".to_string())
        }),
        field("cron-schedule-state", &|v| {
            v.parse().map(P::State).map_err(|e: Error| e.to_string())
        }),
        field("orphan-timeout-minutes", &|v| parse_count(v).map(P::Count)),
        field("healthy-timeout-minutes", &|v| match parse_count(v) {
            Ok(n @ 1..=1440) => Ok(P::Count(n)),
            _ => Err("expected a whole number of minutes from 1 to 1440".to_string()),
        }),
        field("interruption-cooldown-minutes", &|v| {
            parse_count(v).map(P::Count)
        }),
        field("allow-burstable", &|v| parse_bool(v).map(P::Bool)),
    ];
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut it = fields.into_iter().map(|f| f.expect("no errors"));
    let mut next = || it.next().expect("one value per field");
    Ok(GroupSettings {
        min_on_demand_number: next().count(),
        min_on_demand_percentage: next().number(),
        allowed_instance_types: next().types(),
        disallowed_instance_types: next().types(),
        on_demand_price_multiplier: next().number(),
        spot_product_description: next().product(),
        replacements_per_pass: next().budget(),
        pools_per_az: next().count(),
        spread_price_margin: next().number(),
        allocation_strategy: next().strategy(),
        spot_price_window_minutes: next().count(),
        cron_schedule: next().schedule(),
        cron_timezone: next().timezone(),
        cron_schedule_state: next().state(),
        orphan_timeout_minutes: next().count(),
        healthy_timeout_minutes: next().count(),
        interruption_cooldown_minutes: next().count(),
        allow_burstable: next().boolean(),
    })
}

/// One parsed group setting, before it lands in its field.
enum Parsed {
    Count(u32),
    Number(f64),
    Types(TypeList),
    Product(Option<String>),
    Budget(Budget),
    Schedule(Schedule),
    Timezone(Tz),
    State(ScheduleState),
    Bool(bool),
    Strategy(AllocationStrategy),
}

macro_rules! parsed_as {
    ($($name:ident -> $variant:ident: $ty:ty),* $(,)?) => {
        impl Parsed {
            $(fn $name(self) -> $ty {
                match self {
                    Parsed::$variant(v) => v,
                    _ => unreachable!(concat!("the field list and GroupSettings are in step: ", stringify!($name))),
                }
            })*
        }
    };
}

parsed_as!(
    count -> Count: u32,
    number -> Number: f64,
    types -> Types: TypeList,
    product -> Product: Option<String>,
    budget -> Budget: Budget,
    schedule -> Schedule: Schedule,
    timezone -> Timezone: Tz,
    state -> State: ScheduleState,
    boolean -> Bool: bool,
    strategy -> Strategy: AllocationStrategy,
);

fn parse_multiplier(v: &str) -> Result<f64, String> {
    let m: f64 = v
        .parse()
        .map_err(|_| "expected a number such as 0.7".to_string())?;
    // Above 1 would admit spot prices above the on-demand list price, which the spot max price
    // (the list price) would then refuse at launch.
    if !(m.is_finite() && m > 0.0 && m <= 1.0) {
        return Err("expected a number above 0 and at most 1".into());
    }
    Ok(m)
}

/// Stored as the VPC product description EC2 records spot prices under, whatever spelling was
/// given: EC2-Classic products are retired, and prices are looked up by this exact string.
fn parse_product(v: &str) -> Result<Option<String>, String> {
    if v.is_empty() {
        return Ok(None);
    }
    match crate::model::Os::from_product_description(v) {
        Some(os) => Ok(Some(os.spot_product_description().to_string())),
        None => Err("expected Linux/UNIX, Windows, Red Hat Enterprise Linux or SUSE Linux, optionally followed by (Amazon VPC)".into()),
    }
}

fn parse_budget(v: &str) -> Result<Budget, String> {
    if v.ends_with('%') {
        parse_percent(v).map(Budget::Percent)
    } else {
        parse_count(v)
            .map(Budget::Count)
            .map_err(|_| "expected a whole number (3) or a percentage (25%)".to_string())
    }
}

fn parse_pools(v: &str) -> Result<u32, String> {
    match parse_count(v)? {
        0 => Err("expected at least 1 pool".into()),
        n => Ok(n),
    }
}

fn parse_window(v: &str) -> Result<u32, String> {
    match parse_count(v)? {
        0 => Err("expected at least 1 minute".into()),
        n => Ok(n),
    }
}

fn parse_seconds(v: &str) -> Result<u32, String> {
    match parse_count(v.trim()) {
        Ok(0) | Err(_) => Err("expected a whole number of seconds, at least 1".into()),
        Ok(n) => Ok(n),
    }
}

fn parse_cache_hours(v: &str) -> Result<u32, String> {
    match parse_count(v.trim())? {
        n if n <= 168 => Ok(n),
        _ => Err("expected hours from 0 to 168 (a week)".into()),
    }
}

fn parse_interruption_action(v: &str) -> Result<InterruptionAction, String> {
    match v.trim() {
        "terminate" => Ok(InterruptionAction::Terminate),
        "detach" => Ok(InterruptionAction::Detach),
        _ => Err("expected terminate or detach".to_string()),
    }
}

fn parse_count(v: &str) -> Result<u32, String> {
    v.parse::<u32>()
        .map_err(|_| "expected a whole number of at least 0".to_string())
}

fn parse_percent(v: &str) -> Result<f64, String> {
    let p: f64 = v
        .trim_end_matches('%')
        .trim()
        .parse()
        .map_err(|_| "expected a percentage from 0 to 100".to_string())?;
    if !(0.0..=100.0).contains(&p) {
        return Err("expected a percentage from 0 to 100".into());
    }
    Ok(p)
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

fn parse_mode(v: &str) -> Result<FilterMode, String> {
    match v.trim() {
        "opt-in" => Ok(FilterMode::OptIn),
        "opt-out" => Ok(FilterMode::OptOut),
        _ => Err("expected opt-in or opt-out".into()),
    }
}

fn parse_tag_filters(v: &str, mode: FilterMode) -> Result<Vec<TagFilter>, String> {
    let mut out = Vec::new();
    for item in glob::split_list(v) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!("{item:?} is not a key=value pair"));
        };
        if key.is_empty() {
            return Err(format!("{item:?} has an empty key"));
        }
        out.push(TagFilter {
            key: key.into(),
            value: value.into(),
        });
    }
    if out.is_empty() {
        let value = if mode == FilterMode::OptIn {
            "true"
        } else {
            "false"
        };
        out.push(TagFilter {
            key: "spot-enabled".into(),
            value: value.into(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_pairs(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn every_setting_has_one_stem_on_every_surface() {
        let d = setting("min-on-demand-number").unwrap();
        assert_eq!(d.env(), "MIN_ON_DEMAND_NUMBER");
        assert_eq!(d.tag(), "spotswap:min-on-demand-number");
        assert_eq!(d.cfn_parameter(), "MinOnDemandNumber");
        for d in SETTINGS {
            assert!(d.stem.chars().all(|c| c.is_ascii_lowercase() || c == '-'));
        }
    }

    #[test]
    fn built_in_defaults_parse() {
        let s = Settings::default();
        assert_eq!(s.tag_filtering_mode, FilterMode::OptIn);
        assert_eq!(
            s.tag_filters,
            vec![TagFilter {
                key: "spot-enabled".into(),
                value: "true".into()
            }]
        );
        assert!(!s.dry_run);
        assert_eq!(s.group.replacements_per_pass, Budget::Percent(25.0));
    }

    #[test]
    fn regions_select_by_glob() {
        let cases = [
            ("", true),
            ("eu-west-1", false),
            ("eu-west-1 ca-central-1", false),
            ("us-east-1 eu-west-1", true),
            ("us-east-1,eu-west-1", true),
            ("us-east-1, eu-west-1", true),
            ("us-*, eu-*", true),
            ("ap-*, eu-*", false),
            ("us*, eu*", true),
            ("us-east-1eu-west-1", false),
        ];
        for (regions, want) in cases {
            let s = settings(&[("regions", regions)]);
            assert_eq!(s.region_enabled("us-east-1"), want, "{regions:?}");
        }
    }

    #[test]
    fn opt_in_needs_every_filter_tag_and_values_are_globs() {
        let s = settings(&[("tag-filters", "spot-enabled=true,environment=sandbox*")]);
        assert!(s.opts_in(&tags(&[
            ("spot-enabled", "true"),
            ("environment", "sandbox-qa")
        ])));
        assert!(!s.opts_in(&tags(&[("spot-enabled", "true"), ("environment", "dev")])));
        assert!(!s.opts_in(&tags(&[("spot-enabled", "true")])));
        assert!(!Settings::default().opts_in(&tags(&[])));
        assert!(Settings::default().opts_in(&tags(&[("spot-enabled", "true")])));
        assert!(!Settings::default().opts_in(&tags(&[("spot-enabled", "false")])));
    }

    #[test]
    fn opt_out_processes_every_group_but_those_tagged_out() {
        let s = settings(&[("tag-filtering-mode", "opt-out")]);
        assert!(!s.opts_in(&tags(&[("spot-enabled", "false")])));
        assert!(s.opts_in(&tags(&[("spot-enabled", "true")])));
        assert!(s.opts_in(&tags(&[])));
        let s = settings(&[
            ("tag-filtering-mode", "opt-out"),
            ("tag-filters", "spot-enabled=false,environment=dev"),
        ]);
        assert!(!s.opts_in(&tags(&[("spot-enabled", "false"), ("environment", "dev")])));
        assert!(s.opts_in(&tags(&[("spot-enabled", "false"), ("environment", "qa")])));
    }

    #[test]
    fn bad_global_values_are_all_reported() {
        let errs = Settings::from_pairs([
            ("min-on-demand-number", "-1"),
            ("tag-filtering-mode", "sometimes"),
            ("tag-filters", "bob"),
            ("dry-run", "yes"),
        ])
        .unwrap_err();
        let stems: Vec<&str> = errs.iter().map(|e| e.setting.as_str()).collect();
        assert_eq!(
            stems,
            [
                "min-on-demand-number",
                "tag-filtering-mode",
                "tag-filters",
                "dry-run"
            ]
        );
        assert!(errs[0].to_string().contains("MIN_ON_DEMAND_NUMBER"));
    }

    #[test]
    fn dry_run_is_read_from_its_setting() {
        assert!(settings(&[("dry-run", "true")]).dry_run);
        assert!(!settings(&[("dry-run", "false")]).dry_run);
    }

    #[test]
    fn a_tag_overrides_the_global_value_which_overrides_the_default() {
        let global = settings(&[("min-on-demand-number", "2")]);
        assert_eq!(
            global.for_group(&tags(&[])).unwrap().min_on_demand_number,
            2
        );
        let g = global
            .for_group(&tags(&[("spotswap:min-on-demand-number", "5")]))
            .unwrap();
        assert_eq!(g.min_on_demand_number, 5);
        assert_eq!(Settings::default().group.min_on_demand_number, 0);
    }

    #[test]
    fn autospotting_tag_names_are_aliases_and_spotswap_tags_win() {
        let s = Settings::default();
        let g = s
            .for_group(&tags(&[("autospotting_min_on_demand_number", "3")]))
            .unwrap();
        assert_eq!(g.min_on_demand_number, 3);
        let g = s
            .for_group(&tags(&[
                ("autospotting_min_on_demand_number", "3"),
                ("spotswap:min-on-demand-number", "1"),
            ]))
            .unwrap();
        assert_eq!(g.min_on_demand_number, 1);
        let g = s
            .for_group(&tags(&[("autospotting_allowed_instance_types", "c5.*")]))
            .unwrap();
        assert_eq!(g.allowed_instance_types, TypeList(vec!["c5.*".into()]));
    }

    #[test]
    fn a_bad_tag_value_is_an_error_naming_the_tag_and_the_value() {
        let s = Settings::default();
        let cases = [
            ("spotswap:min-on-demand-number", "2.5"),
            ("spotswap:min-on-demand-number", "text"),
            ("autospotting_min_on_demand_number", "-7"),
            ("spotswap:min-on-demand-percentage", "142.2"),
            ("spotswap:min-on-demand-percentage", "-22"),
            ("spotswap:on-demand-price-multiplier", "0"),
            ("spotswap:on-demand-price-multiplier", "1.5"),
            ("spotswap:cron-schedule", "9- 1-5"),
            ("spotswap:cron-timezone", "Mars/Olympus"),
            ("spotswap:cron-schedule-state", "maybe"),
            ("spotswap:allow-burstable", "yes please"),
            ("spotswap:allocation-strategy", "lowest-price"),
            ("spotswap:replacements-per-pass", "many"),
            ("spotswap:spot-price-window-minutes", "0"),
            ("spotswap:spot-product-description", "BeOS"),
            ("spotswap:min-on-demand-numbr", "1"),
        ];
        for (key, value) in cases {
            let err = s.for_group(&tags(&[(key, value)])).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(key) && text.contains(value), "{text}");
        }
    }

    #[test]
    fn a_spot_product_description_is_stored_as_the_vpc_product() {
        let s = Settings::default();
        for value in ["Windows", "Windows(Amazon VPC)", " Windows (Amazon VPC) "] {
            let g = s
                .for_group(&tags(&[("spotswap:spot-product-description", value)]))
                .unwrap();
            assert_eq!(
                g.spot_product_description.as_deref(),
                Some("Windows (Amazon VPC)"),
                "{value:?}"
            );
        }
    }

    #[test]
    fn protocol_tags_on_a_group_are_not_mistaken_for_settings() {
        let s = Settings::default();
        assert!(s.for_group(&tags(&[("spotswap:max-size", "4")])).is_ok());
    }

    #[test]
    fn min_on_demand_is_the_larger_of_number_and_rounded_up_percentage() {
        let mut g = Settings::default().group;
        g.min_on_demand_percentage = 33.0;
        assert_eq!(g.min_on_demand(3), 1);
        g.min_on_demand_percentage = 75.0;
        assert_eq!(g.min_on_demand(3), 3);
        assert_eq!(g.min_on_demand(8), 6);
        g.min_on_demand_number = 7;
        assert_eq!(g.min_on_demand(8), 7);
        g.min_on_demand_percentage = 10.0;
        g.min_on_demand_number = 3;
        assert_eq!(g.min_on_demand(4), 3);
        g.min_on_demand_percentage = 0.0;
        g.min_on_demand_number = 0;
        assert_eq!(g.min_on_demand(1), 0);
        g.min_on_demand_percentage = 50.0;
        assert_eq!(g.min_on_demand(4), 2);
    }

    #[test]
    fn the_replacement_budget_is_a_quarter_by_default_and_at_least_one() {
        let b = Settings::default().group.replacements_per_pass;
        assert_eq!(b.allowance(0), 0);
        assert_eq!(b.allowance(1), 1);
        assert_eq!(b.allowance(3), 1);
        assert_eq!(b.allowance(8), 2);
        assert_eq!(Budget::Count(3).allowance(8), 3);
        assert_eq!(Budget::Count(3).allowance(2), 2);
        assert_eq!(Budget::Count(0).allowance(8), 0);
        assert_eq!(Budget::Percent(100.0).allowance(8), 8);
    }

    #[test]
    fn type_lists_match_globs_and_current() {
        let l = TypeList(glob::split_list("current, c5.*"));
        assert!(l.matches("m5.large", "m5.large"));
        assert!(l.matches("c5.xlarge", "m5.large"));
        assert!(!l.matches("m5a.large", "m5.large"));
    }
}
