//! One pass over an account: list the enabled regions, then for every region, concurrently,
//! observe -> plan -> execute, and a report of what was decided, done, skipped and why, with
//! the money.
//!
//! A region that cannot be read is reported and does not stop the others; an action that
//! fails is reported and does not stop the others. Only a pass that cannot start at all (the
//! account's regions cannot be listed) is an error. No decision is made here. It logs what the
//! plan and the outcomes say, through `tracing`: a span per pass and per region (execute adds
//! one per group), the summary of each at info, failures at warn or error.

use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use tracing::{Instrument, error, info, info_span, warn};

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cache::ReadCache;
use crate::cloud::{Account, Actuator, Inventory, apply_refreshes};
use crate::error::Error;
use crate::execute::execute;
use crate::lease::Leases;
use crate::observe::observe;
use crate::pacing::Stop;
use crate::plan::{ActionKind, Inputs, plan_with};
use crate::preflight::Preflight;
use crate::report::{PassReport, RegionReport, Totals};
use crate::savings::{Swapped, savings};
use crate::settings::GroupPolicy;
use crate::settings::Settings;
use std::time::Duration;

/// The target of the one record per region done (`N/M regions`), which the CLI shows as a
/// progress line on a terminal even when it shows no other info record.
pub const PROGRESS_TARGET: &str = "spotswap::progress";

/// How long after its deadline (no new launch or swap) a region's pass may still be finishing
/// calls before it is cut short and reported as such. The Lambda keeps 30 s free after the
/// deadline; this leaves 10 s of them to report.
pub const HARD_STOP_AFTER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(20);

/// What a call (or a region's calls) still running at the hard stop fails with.
fn deadline_error(operation: &str) -> crate::cloud::CloudError {
    crate::cloud::CloudError::new(
        operation,
        crate::cloud::ErrorKind::Other,
        Some("DeadlineExceeded"),
        "not finished when the invocation's time ran out (an endpoint that does not answer, or \
         more work than one pass can do); the next pass takes up where this one stopped",
    )
}

/// The report of a region whose pass was still making calls at its hard stop.
fn cut_short(region: &str) -> RegionReport {
    let e = deadline_error("Pass");
    error!(region = %region, error = %e.message, "region cut short");
    RegionReport::failed(region, e, BTreeMap::new())
}

/// How to run a pass.
#[derive(Debug, Clone)]
pub struct PassOptions {
    /// Call nothing that changes the account; report what would have been done.
    pub dry_run: bool,
    /// The pass's time: what the planner judges by, and what idempotency tokens derive from.
    pub now: DateTime<Utc>,
    /// No launch or swap starts after this instant (the Lambda's deadline less a margin);
    /// what is left is picked up by the next pass.
    pub deadline: Option<tokio::time::Instant>,
    /// Slow-changing reads kept by this process across passes (a warm Lambda's); none, and
    /// every pass reads them.
    pub cache: Option<Arc<ReadCache>>,
    /// What the preflight found (`spotswap::preflight`), if it ran: a region whose launches
    /// IAM refuses gets its groups' launches skipped (`launch-not-permitted`), and the report
    /// counts the problems.
    pub preflight: Option<Arc<Preflight>>,
    /// The operator's stop (`spotswap run` on SIGINT or SIGTERM): once signalled, no change
    /// is sent, no launch, swap or lease starts, and the leases are given back where no swap
    /// step is in doubt.
    pub stop: Option<Stop>,
}

impl PassOptions {
    /// Whether the operator has stopped the pass.
    pub fn stopped(&self) -> bool {
        self.stop.as_ref().is_some_and(Stop::is_signalled)
    }
}

impl PassOptions {
    /// A pass at `now` as the settings say (a dry run when the `dry-run` setting is on), with
    /// no deadline.
    pub fn new(settings: &Settings, now: DateTime<Utc>) -> Self {
        PassOptions {
            dry_run: settings.dry_run,
            now,
            deadline: None,
            cache: None,
            preflight: None,
            stop: None,
        }
    }
}

/// Runs one pass over the account's enabled regions that the `regions` setting selects.
pub async fn run<A: Account>(
    account: &A,
    settings: &Settings,
    opts: &PassOptions,
) -> Result<PassReport, Error> {
    // One id per pass in every record and in the report, so an operator can find all of a
    // pass's records (the CLI and the Lambda may run passes at the same second: the process
    // id tells them apart).
    let pass_id = format!(
        "{}-{}",
        opts.now.format("%Y%m%dT%H%M%SZ"),
        std::process::id()
    );
    let span =
        info_span!("pass", pass_id = %pass_id, started_at = %opts.now, dry_run = opts.dry_run);
    // Who this pass is in the leases it takes on groups (`src/lease.rs`), and when it started,
    // to tell the time of a lease from `opts.now`.
    let holder = crate::lease::holder(&pass_id);
    let started = tokio::time::Instant::now();
    let holder = holder.as_str();
    async {
        let listed = match opts.deadline {
            Some(d) => tokio::time::timeout_at(d + HARD_STOP_AFTER_DEADLINE, account.regions())
                .await
                .unwrap_or_else(|_| Err(deadline_error("DescribeRegions"))),
            None => account.regions().await,
        };
        let regions: Vec<String> = match listed {
            Ok(all) => all
                .into_iter()
                .filter(|r| settings.region_enabled(r))
                .collect(),
            Err(e) => {
                error!(
                    operation = %e.operation,
                    code = e.code.as_deref().unwrap_or(""),
                    error = %e.message,
                    "cannot list the account's regions"
                );
                return Err(Error::Regions(e));
            }
        };
        let total = regions.len();
        let done = std::sync::atomic::AtomicUsize::new(0);
        let done = &done;
        let mut reports: Vec<RegionReport> = stream::iter(regions.iter())
            .map(|r| async move {
                let report = match opts.deadline {
                    // Past the deadline a region's calls are abandoned, not waited on: each
                    // call's own timeouts bound it too, but its retries could still outlast
                    // the invocation, which would then end with nothing reported. A region cut
                    // short is like a pass that crashed there: the next pass finishes it from
                    // the tags.
                    Some(d) => tokio::time::timeout_at(
                        d + HARD_STOP_AFTER_DEADLINE,
                        region_pass(account, r, settings, opts, holder, started),
                    )
                    .await
                    .unwrap_or_else(|_| cut_short(r)),
                    None => region_pass(account, r, settings, opts, holder, started).await,
                };
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                info!(
                    target: PROGRESS_TARGET,
                    region = %report.region,
                    done = n,
                    total,
                    "{n}/{total} regions"
                );
                report
            })
            // Every region at once: each has its own API buckets (EC2 API reference, "Request
            // throttling"), so a region waits for nothing but its own calls.
            .buffer_unordered(regions.len().max(1))
            .collect()
            .await;
        reports.sort_by(|a, b| a.region.cmp(&b.region));
        let mut totals = Totals::of(&reports);
        if let Some(p) = &opts.preflight {
            totals.permission_problems = p.problems().count() as u32;
        }
        info!(
            regions = totals.regions,
            groups = totals.groups_seen,
            clones_launched = totals.clones_launched,
            swaps = totals.swaps,
            orphans_terminated = totals.orphans_terminated,
            failures = totals.failures,
            deferred = totals.deferred,
            hourly_savings = totals.hourly_savings_now,
            dry_run = opts.dry_run,
            "pass done"
        );
        if opts.stopped() {
            info!(
                deferred = totals.deferred,
                "stopped by the operator: no change sent since; what was not started is deferred"
            );
        }
        Ok(PassReport {
            pass_id,
            started_at: opts.now,
            dry_run: opts.dry_run,
            stopped: opts.stopped(),
            totals,
            regions: reports,
        })
    }
    .instrument(span)
    .await
}

/// Takes the leases of `groups` and bounds this pass's changes by them: the leases last
/// `lease-seconds` and `operation-timeout-seconds` more; no change is sent after the first
/// `lease-seconds`, so none lands after the leases end, and no launch or swap starts then (the
/// options returned carry that deadline).
async fn take_leases<C: Inventory + Actuator>(
    cloud: &C,
    snapshot: &crate::model::Snapshot,
    groups: &[String],
    settings: &Settings,
    opts: &PassOptions,
    holder: &str,
    started: tokio::time::Instant,
) -> (Leases, PassOptions) {
    // Past its deadline, or stopped, a pass starts nothing, so it takes no lease: the groups'
    // actions wait for the next pass, and the groups are left as they are.
    if opts.stopped()
        || opts
            .deadline
            .is_some_and(|d| tokio::time::Instant::now() >= d)
    {
        let leases = Leases {
            deferred: groups.iter().cloned().collect(),
            ..Leases::default()
        };
        return (leases, opts.clone());
    }
    let window = Duration::from_secs(u64::from(settings.lease_secs));
    let last_call = Duration::from_secs(u64::from(settings.timeouts.operation_secs));
    let taken_at = tokio::time::Instant::now();
    let wall = opts.now + chrono::Duration::from_std(started.elapsed()).unwrap_or_default();
    let leases =
        crate::lease::acquire(cloud, snapshot, groups, holder, wall, window + last_call).await;
    for (g, why) in &leases.lost {
        info!(group = %g, reason = %why, "lease not taken: the group is left this pass");
    }
    let mut exec = opts.clone();
    if !leases.held.is_empty() {
        let stop = taken_at + window;
        cloud.pacer().stop_writes_at(stop);
        exec.deadline = Some(opts.deadline.map_or(stop, |d| d.min(stop)));
    }
    (leases, exec)
}

async fn region_pass<A: Account>(
    account: &A,
    region: &str,
    settings: &Settings,
    opts: &PassOptions,
    holder: &str,
    started: tokio::time::Instant,
) -> RegionReport {
    let cloud = account.region(region);
    let span = info_span!("region", region = %region);
    async {
        let no_cache;
        let cache = match &opts.cache {
            Some(c) => c.as_ref(),
            None => {
                no_cache = ReadCache::new(0);
                &no_cache
            }
        };
        let observation = match observe(&cloud, settings, cache, opts.now).await {
            Ok(o) => o,
            Err(e) => {
                error!(
                    operation = %e.operation,
                    code = e.code.as_deref().unwrap_or(""),
                    error = %e.message,
                    "region could not be read"
                );
                return RegionReport::failed(region, e, cloud.call_counts());
            }
        };
        let crate::observe::Observation {
            mut snapshot,
            policies,
            warnings,
            cached,
        } = observation;
        snapshot.launch_refused = opts
            .preflight
            .as_ref()
            .and_then(|p| p.launch_refused().remove(region));
        for w in &warnings {
            warn!("{w}");
        }
        let first = plan_with(&Inputs::with_policies(
            &snapshot,
            settings,
            policies.clone(),
            opts.now,
        ));
        // Whether an instance refresh is under way, only for the groups the plan would change
        // (one call per group: a group with nothing to do needs none), then the plan again if
        // a refresh (or a failed read) leaves one of them alone.
        let changed: std::collections::BTreeSet<&str> =
            first.actions().map(|(d, _)| d.group.as_str()).collect();
        let acting: Vec<String> = snapshot
            .groups
            .iter()
            .filter(|g| changed.contains(g.name.as_str()))
            .map(|g| g.name.clone())
            .collect();
        let refreshes = if acting.is_empty() {
            Default::default()
        } else {
            cloud.refreshes(&acting).await
        };
        let replan = apply_refreshes(&mut snapshot.groups, &refreshes);
        let inputs = Inputs::with_policies(&snapshot, settings, policies, opts.now);
        let p = if replan { plan_with(&inputs) } else { first };
        info!(
            groups = snapshot.groups.len(),
            actions = p.actions().count(),
            skips = p.skips().count(),
            "planned"
        );
        // The leases of the opted-in groups the plan changes (never a group that is not opted
        // in: spotswap does not touch it), then the plan carried out where they are held.
        let (leases, exec_opts) = if opts.dry_run {
            (Leases::default(), opts.clone())
        } else {
            let acts: std::collections::BTreeSet<&str> =
                p.actions().map(|(d, _)| d.group.as_str()).collect();
            let to_lease: Vec<String> = snapshot
                .groups
                .iter()
                .filter(|g| {
                    // A group whose lease a pass abandoned is leased even with nothing to do,
                    // so that this pass gives the lease back and the next need not read its
                    // scaling activities again.
                    (acts.contains(g.name.as_str()) || crate::protocol::in_doubt(&g.tags, opts.now))
                        && matches!(inputs.group(g).policy, GroupPolicy::OptedIn(_))
                })
                .map(|g| g.name.clone())
                .collect();
            take_leases(
                &cloud, &snapshot, &to_lease, settings, opts, holder, started,
            )
            .await
        };
        cloud.pacer().honour(opts.stop.clone());
        let outcomes = execute(&cloud, &snapshot, &p, &leases, &exec_opts).await;
        cloud.pacer().honour(None);
        // Groups where a swap may be left in doubt: one of its steps failed, or a swap a
        // stopped pass left could not be settled, or a swap waits for its clone to serve
        // behind the group's load balancers (for passes, not milliseconds: a fault that takes
        // the clone or the instance meanwhile must be settled from the scaling activities, as
        // after a stopped pass). Their leases end by themselves, so the next pass reads them.
        let unfinished: std::collections::BTreeSet<String> = outcomes
            .iter()
            .filter(|o| {
                (o.failed()
                    && matches!(
                        o.action,
                        ActionKind::Swap
                            | ActionKind::CompleteSwap
                            | ActionKind::UndoSwap
                            | ActionKind::SettleSwap
                    ))
                    || o.action == ActionKind::AttachClone
                    // A settling superseded (the member to take out left the group meanwhile,
                    // another way) leaves the swap still to settle, from the activities again.
                    || (o.action == ActionKind::SettleSwap
                        && !matches!(o.status, crate::report::Status::Done { .. }))
            })
            .map(|o| o.group.clone())
            .chain(
                p.skips()
                    .filter(|(_, s)| {
                        matches!(
                            s,
                            crate::plan::Skip::SwapInDoubt { .. }
                                | crate::plan::Skip::CloneNotHealthy { .. }
                        )
                    })
                    .map(|(d, _)| d.group.clone()),
            )
            .collect();
        let mut leases_left: Vec<String> = leases
            .held
            .iter()
            .filter(|g| unfinished.contains(*g))
            .cloned()
            .collect();
        if let Err(e) = crate::lease::release(&cloud, &leases, &unfinished).await {
            warn!(
                operation = %e.operation,
                code = e.code.as_deref().unwrap_or(""),
                error = %e.message,
                "could not release the leases: they end by themselves"
            );
            leases_left = leases.held.iter().cloned().collect();
        }
        // Savings as the pass leaves the groups: its own swaps included.
        let savings = savings(&inputs, &Swapped::from_outcomes(&p, &outcomes));
        info!(
            outcomes = outcomes.len(),
            failures = outcomes.iter().filter(|o| o.failed()).count(),
            hourly_savings = savings.hourly_saving,
            "region done"
        );
        RegionReport {
            region: region.to_string(),
            groups: snapshot.groups.len() as u32,
            error: None,
            warnings,
            cached,
            savings: Some(savings),
            plan: Some(p),
            outcomes,
            calls: cloud.call_counts(),
            leases_left,
        }
    }
    .instrument(span)
    .await
}
