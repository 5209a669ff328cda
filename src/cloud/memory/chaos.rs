//! Test-kit hooks for fault injection over a whole pass (tests/chaos.rs): a process killed
//! mid-pass, throttling answered as the AWS adapter's SDK retries answer it, a user's or a
//! scaling policy's change of a group's desired capacity, an instance terminated from outside
//! spotswap, and the operator's stop signalled mid-pass. Every AWS call of a
//! [`MemoryRegion`](super::MemoryRegion), and the account's `DescribeRegions`, first passes
//! [`MemoryCloud::gate`].
//!
//! A crash makes every call after the armed one wait forever, so a test can drop the pass as
//! the Lambda service drops a killed invocation: the calls made before it landed, none after.
//! Throttling is drawn from a seeded generator, so a seed replays it. These hooks must not
//! change what a call does once it runs (that is `state`, `inventory` and `actuator`), and
//! seeding through them counts no call.

use std::time::Duration;

use super::MemoryCloud;
use crate::cloud::activity::Leaving;
use crate::cloud::{CloudError, ErrorKind};
use crate::pacing::Stop;
use crate::protocol;

/// Attempts the AWS adapter's SDK makes of a throttled call (`RetryConfig::standard()
/// .with_max_attempts(8)` in `cloud::aws::load_config`).
const ATTEMPTS: u32 = 8;
/// The adapter's first and largest backoffs (100 ms, at most 5 s).
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The hooks' state, in the account's [`State`](super::state::State).
#[derive(Default)]
pub(super) struct Chaos {
    /// Calls that went through the gate so far.
    calls: u64,
    /// Calls after this many (counted by `calls`) never complete.
    crash_at: Option<u64>,
    /// Share of calls throttled, and the generator that draws them (splitmix64).
    throttle: Option<(f64, u64)>,
    /// Throttled attempts retried, and calls that failed after every attempt was throttled.
    retried: u64,
    failed: u64,
    /// The operator's stop, signalled once the given operation has completed this many more
    /// times.
    stop_after: Option<(String, u64, Stop)>,
}

impl Chaos {
    /// The next draw in [0, 1) of the throttling generator, if throttling is on.
    fn throttled(&mut self) -> Option<bool> {
        let (share, state) = self.throttle.as_mut()?;
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        Some(((z >> 11) as f64 / (1u64 << 53) as f64) < *share)
    }
}

impl MemoryCloud {
    /// Kills the process making calls after `calls` more calls: every later call of any region
    /// never completes (it waits forever), so the test drops the pass, as the Lambda service
    /// ends an invocation that is killed mid-pass. The `calls` calls before it land whole.
    /// `None` lifts it, for the next pass.
    pub fn crash_after(&self, calls: Option<u64>) -> &Self {
        let mut state = self.lock();
        state.chaos.crash_at = calls.map(|n| state.chaos.calls + n);
        self
    }

    /// Signals `stop` as the operator's Ctrl-C would, right after the `nth` call of `operation`
    /// from now has completed (the call in flight when the signal came, which lands whole).
    pub fn stop_after(&self, operation: &str, nth: u64, stop: Stop) -> &Self {
        self.lock().chaos.stop_after = Some((operation.to_string(), nth, stop));
        self
    }

    /// After a call of `operation` completes: signals the armed stop if it was the one.
    pub(super) fn after_call(&self, operation: &str) {
        let mut state = self.lock();
        let Some((op, left, stop)) = state.chaos.stop_after.as_mut() else {
            return;
        };
        if op == operation {
            *left = left.saturating_sub(1);
            if *left == 0 {
                stop.signal();
                state.chaos.stop_after = None;
            }
        }
    }

    /// Throttles `share` (0 to 1) of the calls, drawn by a generator seeded with `seed`, and
    /// answers them as the AWS adapter does: its SDK retries a throttled call with standard
    /// retries (8 attempts, backoffs of 100 ms doubling up to 5 s, slept on tokio's clock), so
    /// the pass sees a throttling error only when all 8 attempts were throttled. A throttled
    /// attempt changes nothing, as in AWS. A share of 0 lifts it.
    pub fn set_throttling(&self, share: f64, seed: u64) -> &Self {
        self.lock().chaos.throttle = (share > 0.0).then_some((share, seed));
        self
    }

    /// Throttled attempts retried, and calls failed because every attempt was throttled.
    pub fn throttling_counts(&self) -> (u64, u64) {
        let state = self.lock();
        (state.chaos.retried, state.chaos.failed)
    }

    /// What every call waits on before it runs: a crash armed with [`MemoryCloud::crash_after`]
    /// and throttling set with [`MemoryCloud::set_throttling`].
    pub(super) async fn gate(&self, operation: &str) -> Result<(), CloudError> {
        let crashed = {
            let mut state = self.lock();
            state.chaos.calls += 1;
            state
                .chaos
                .crash_at
                .is_some_and(|at| state.chaos.calls > at)
        };
        if crashed {
            std::future::pending::<()>().await;
        }
        let mut backoff = INITIAL_BACKOFF;
        for attempt in 1..=ATTEMPTS {
            let throttled = {
                let mut state = self.lock();
                let throttled = state.chaos.throttled() == Some(true);
                if throttled && attempt < ATTEMPTS {
                    state.chaos.retried += 1;
                } else if throttled {
                    state.chaos.failed += 1;
                }
                throttled
            };
            if !throttled {
                return Ok(());
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        Err(CloudError::new(
            operation,
            ErrorKind::Throttled,
            Some("Throttling"),
            "Rate exceeded",
        ))
    }

    /// Sets a group's desired capacity as a user's `SetDesiredCapacity` or a scaling policy
    /// does: Auto Scaling launches on-demand members of the launch spec's type into the AZs
    /// with the fewest members, or terminates members (here `victims`, in order, as its
    /// termination policy chooses; then the newest) without replacement, until the group has
    /// `desired` members. Returns the members launched.
    ///
    /// # Panics
    /// If the group does not exist, has no launch spec with a type, or `desired` is outside
    /// MinSize..=MaxSize (Auto Scaling refuses it).
    pub fn set_desired_capacity(
        &self,
        region: &str,
        group: &str,
        desired: u32,
        victims: &[String],
    ) -> Vec<String> {
        self.with_region(region, |ctx| {
            let g = ctx.region.groups.get_mut(group).expect("the group exists");
            assert!(
                (g.min_size..=g.max_size).contains(&desired),
                "desired {desired} outside {}..={}",
                g.min_size,
                g.max_size
            );
            g.desired_capacity = desired;
            let launch = g.launch.clone().expect("a launch spec");
            let instance_type = ctx
                .region
                .resolve(&launch)
                .and_then(|s| s.instance_type)
                .expect("a launch spec with a type");
            let members = |ctx: &super::state::Ctx<'_>| -> Vec<String> {
                ctx.region.groups[group]
                    .members
                    .iter()
                    .map(|m| m.instance_id.clone())
                    .collect()
            };
            let mut victims = victims.iter();
            let mut launched = Vec::new();
            loop {
                let now = members(ctx);
                let have = u32::try_from(now.len()).expect("a small group");
                if have < desired {
                    let az = ctx
                        .region
                        .azs
                        .iter()
                        .min_by_key(|az| {
                            now.iter()
                                .filter(|id| {
                                    ctx.region.instances[id.as_str()].availability_zone == **az
                                })
                                .count()
                        })
                        .cloned()
                        .expect("the region has AZs");
                    launched.push(ctx.launch_member(group, &instance_type, &az, None));
                } else if have > desired {
                    let victim = victims
                        .by_ref()
                        .find(|v| now.contains(v))
                        .or_else(|| now.last())
                        .cloned()
                        .expect("a member");
                    ctx.terminate(
                        &victim,
                        false,
                        protocol::USER_INITIATED_SHUTDOWN,
                        Leaving::ScaleIn,
                    );
                } else {
                    return launched;
                }
            }
        })
    }

    /// Terminates an instance as a `TerminateInstances` call from outside spotswap would (a
    /// person, another tool): a group member is replaced by its group. Counts no call.
    pub fn terminate_out_of_band(&self, region: &str, id: &str) -> &Self {
        self.with_region(region, |ctx| {
            ctx.terminate(id, true, protocol::USER_INITIATED_SHUTDOWN, Leaving::Health)
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{GroupBuilder, MemoryCloud};
    use crate::cloud::{Account, Actuator, ErrorKind, Inventory};
    use crate::model::{InstanceState, LaunchRef, LaunchSpec};

    const REGION: &str = "eu-west-1";

    /// One region with group `web` (min 1, max 6) of `n` running on-demand m5.large.
    fn account(n: u32) -> (MemoryCloud, Vec<String>) {
        let cloud = MemoryCloud::new();
        let lc = LaunchRef::LaunchConfiguration { name: "lc".into() };
        let spec = LaunchSpec {
            image_id: "ami-1".into(),
            instance_type: Some("m5.large".into()),
            ..LaunchSpec::default()
        };
        cloud
            .add_region(REGION, &["eu-west-1a", "eu-west-1b"])
            .put_launch_spec(REGION, &lc, spec)
            .put_group(
                REGION,
                GroupBuilder::new("web")
                    .min(1)
                    .desired(n)
                    .max(6)
                    .launch(lc)
                    .build(),
            );
        let ids = cloud.launch_group_members(REGION, "web", n as usize, "m5.large", &[]);
        (cloud, ids)
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_crash_the_calls_made_landed_and_no_later_call_completes_until_lifted() {
        let (cloud, ids) = account(3);
        let region = cloud.region(REGION);
        cloud.crash_after(Some(1));
        region.terminate(&ids[..1]).await.unwrap();
        let hung = tokio::time::timeout(Duration::from_secs(3600), region.terminate(&ids[1..2]));
        assert!(
            hung.await.is_err(),
            "the call after the crash never answers"
        );
        assert_eq!(
            cloud.instance(REGION, &ids[0]).unwrap().state,
            InstanceState::Terminated
        );
        assert_eq!(
            cloud.instance(REGION, &ids[1]).unwrap().state,
            InstanceState::Running,
            "the call dropped after the crash changed nothing"
        );
        cloud.crash_after(None);
        region.terminate(&ids[1..2]).await.unwrap();
        assert!(cloud.instance(REGION, &ids[1]).unwrap().state.is_gone());
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttled_call_is_retried_eight_times_then_fails_having_changed_nothing() {
        let (cloud, ids) = account(2);
        let region = cloud.region(REGION);
        cloud.set_throttling(1.0, 7);
        let t0 = tokio::time::Instant::now();
        let e = region.terminate(&ids[..1]).await.unwrap_err();
        assert_eq!(e.kind, ErrorKind::Throttled);
        assert_eq!(cloud.throttling_counts(), (7, 1));
        // 100 + 200 + ... + 3,200 ms, then 5 s capped: the SDK's backoffs without jitter.
        assert_eq!(
            t0.elapsed(),
            Duration::from_millis(100 + 200 + 400 + 800 + 1600 + 3200 + 5000)
        );
        assert_eq!(
            cloud.instance(REGION, &ids[0]).unwrap().state,
            InstanceState::Running
        );
        // At 30%, every call of a pass's worth goes through on a retry.
        cloud.set_throttling(0.3, 7);
        for _ in 0..50 {
            region.groups(&Default::default()).await.unwrap();
        }
        let (retried, failed) = cloud.throttling_counts();
        assert!(retried > 7 && failed == 1, "{retried} {failed}");
        cloud.set_throttling(0.0, 0);
        region.terminate(&ids[..1]).await.unwrap();
        assert!(cloud.instance(REGION, &ids[0]).unwrap().state.is_gone());
    }

    #[test]
    fn desired_capacity_set_by_the_user_launches_into_the_emptiest_az_or_terminates_victims() {
        let (cloud, ids) = account(3);
        // Round-robin over two AZs: a, b, a. One more goes to b.
        let launched = cloud.set_desired_capacity(REGION, "web", 4, &[]);
        assert_eq!(launched.len(), 1);
        let new = cloud.instance(REGION, &launched[0]).unwrap();
        assert_eq!(new.availability_zone, "eu-west-1b");
        assert!(
            cloud
                .set_desired_capacity(REGION, "web", 2, &ids[1..])
                .is_empty()
        );
        let g = cloud.group(REGION, "web").unwrap();
        assert_eq!(g.desired_capacity, 2);
        let members: Vec<&str> = g.members.iter().map(|m| m.instance_id.as_str()).collect();
        assert_eq!(members, [ids[0].as_str(), launched[0].as_str()]);
        assert!(cloud.instance(REGION, &ids[1]).unwrap().state.is_gone());
    }

    #[test]
    fn an_instance_terminated_out_of_band_is_replaced_by_its_group() {
        let (cloud, ids) = account(2);
        cloud.terminate_out_of_band(REGION, &ids[0]);
        let g = cloud.group(REGION, "web").unwrap();
        assert_eq!((g.desired_capacity, g.members.len()), (2, 2));
        assert!(g.member(&ids[0]).is_none());
        assert_eq!(
            cloud
                .instance(REGION, &ids[0])
                .unwrap()
                .state_reason
                .as_deref(),
            Some(crate::protocol::USER_INITIATED_SHUTDOWN)
        );
    }
}
