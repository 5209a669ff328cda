//! Pacing: every AWS call of a pass kept under its documented request token bucket, so a pass
//! neither meets `RequestLimitExceeded` nor spends its time in the SDK's retries.
//!
//! EC2 throttles each account per region with a token bucket per API action: a call takes a
//! token, the bucket refills at a fixed rate up to its size (EC2 API reference, "Request
//! throttling for the Amazon EC2 API": "each API is evaluated individually"). A region handle
//! (`cloud::aws`, and the in-memory cloud) holds one [`Pacer`] for its pass and waits on it
//! before each call it sends, reads and writes alike; the buckets start full, and every region
//! has its own, as EC2's are per region. This module only keeps time: it decides nothing about
//! what to call.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// The request bucket of an AWS operation: (bucket size, refill per second).
///
/// EC2's documented categories: non-mutating actions (`Describe*`, `Get*`, `List*`) 100,
/// refilled at 20 a second; mutating actions 50, refilled at 5; RunInstances has the smallest
/// bucket of all, 5 refilled at 2. CreateFleet is not listed on the throttling page, so it is
/// taken as mutating. Auto Scaling and the Pricing API publish no bucket sizes: they are
/// assumed to be like EC2's (reads 100/20, writes 50/5), which a pass's few calls per group
/// stay well inside.
pub fn documented_bucket(operation: &str) -> (f64, f64) {
    match operation {
        "RunInstances" => (5.0, 2.0),
        op if is_read(op) => (100.0, 20.0),
        _ => (50.0, 5.0),
    }
}

/// The share of a bucket's documented refill rate a pass paces itself to.
pub const PACING_SHARE: f64 = 0.95;

/// One token bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    capacity: f64,
    refill_per_sec: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket at `now`.
    pub fn full(capacity: f64, refill_per_sec: f64, now: Instant) -> Self {
        Bucket {
            capacity,
            refill_per_sec,
            tokens: capacity,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.refill_per_sec).min(self.capacity);
        self.at = now;
    }

    /// Takes a token if there is one at `now`: what EC2 does with a call.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        // A caller that waited exactly for its token gets it, float rounding notwithstanding.
        if self.tokens >= 1.0 - 1e-9 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// How long from `now` until a token is there, without taking it.
    pub fn delay(&self, now: Instant) -> Duration {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let tokens = (self.tokens + elapsed * self.refill_per_sec).min(self.capacity);
        if tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - tokens) / self.refill_per_sec)
        }
    }

    /// Reserves the next token: how long to wait from `now` before the call may go.
    pub fn reserve(&mut self, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.refill_per_sec)
        }
    }
}

/// One region's buckets for a pass: one per operation, made full on its first call. It also
/// keeps the instant after which the pass sends no call that changes anything: the end of its
/// leases on its groups, less the longest a call can take.
#[derive(Debug, Default)]
pub struct Pacer {
    buckets: Mutex<HashMap<String, Bucket>>,
    writes_until: Mutex<Option<Instant>>,
    /// The operator's stop, while the pass carries out its plan: once it is signalled, no
    /// change goes.
    stop: Mutex<Option<Stop>>,
}

/// The error code of a change not sent because the pass's leases were about to end.
pub const LEASE_ENDING: &str = "LeaseEnding";

/// The error code of a change not sent because the operator stopped the pass.
pub const STOPPED: &str = "Stopped";

/// An operator's request that a pass stop (SIGINT or SIGTERM on `spotswap run`): shared by the
/// signal handler and the pass, cheap to clone. Once signalled, the pass sends no new change:
/// a call in flight finishes, no launch, swap or lease starts, and the leases are given back
/// where no swap step is in doubt.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn new() -> Self {
        Stop::default()
    }

    /// Signals the stop; every holder of a clone sees it.
    pub fn signal(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_signalled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Whether an operation only reads (EC2's and Auto Scaling's naming).
pub fn is_read(operation: &str) -> bool {
    ["Describe", "Get", "List"]
        .iter()
        .any(|p| operation.starts_with(p))
}

impl Pacer {
    /// Buckets of the documented sizes ([`documented_bucket`]), from now.
    pub fn new() -> Self {
        Pacer::default()
    }

    fn with_bucket<T>(&self, operation: &str, f: impl FnOnce(&mut Bucket, Instant) -> T) -> T {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().expect("pacer lock");
        let bucket = buckets.entry(operation.to_string()).or_insert_with(|| {
            let (size, refill) = documented_bucket(operation);
            // A little inside AWS's bucket: our clock and AWS's do not start together, and a
            // call paced to the exact refill instant could arrive a hair early.
            Bucket::full(size - 1.0, refill * PACING_SHARE, now)
        });
        f(bucket, now)
    }

    /// When a call of `operation` could go, from now: a pass does not start a launch it could
    /// only make after its deadline.
    pub fn next_slot(&self, operation: &str) -> Instant {
        self.with_bucket(operation, |b, now| now + b.delay(now))
    }

    /// No call that changes anything goes after `at` (or before it, once an earlier instant
    /// was set: it only moves earlier).
    pub fn stop_writes_at(&self, at: Instant) {
        let mut w = self.writes_until.lock().expect("pacer lock");
        *w = Some(w.map_or(at, |old| old.min(at)));
    }

    /// Changes go only while `stop` is not signalled, until `honour(None)`: what a pass sets
    /// around carrying out its plan (its lease release, after, still goes).
    pub fn honour(&self, stop: Option<Stop>) {
        *self.stop.lock().expect("pacer lock") = stop;
    }

    /// Whether a call of `operation` may go now: reads always; a change only before the
    /// instant [`Pacer::stop_writes_at`] set, and before the operator's stop. A change that
    /// may not go fails as it would if the pass had stopped there, which the swap protocol
    /// recovers from at every step.
    pub fn admit(&self, operation: &str) -> Result<(), crate::cloud::CloudError> {
        let stopped = self
            .stop
            .lock()
            .expect("pacer lock")
            .as_ref()
            .is_some_and(Stop::is_signalled);
        if stopped && !is_read(operation) {
            return Err(crate::cloud::CloudError::new(
                operation,
                crate::cloud::ErrorKind::Other,
                Some(STOPPED),
                "not sent: the pass was stopped by its operator; the next pass takes up where \
                 this one stopped",
            ));
        }
        let until = *self.writes_until.lock().expect("pacer lock");
        match until {
            Some(u) if !is_read(operation) && Instant::now() >= u => {
                Err(crate::cloud::CloudError::new(
                    operation,
                    crate::cloud::ErrorKind::Other,
                    Some(LEASE_ENDING),
                    "not sent: this pass's lease on the group was about to end, so another \
                     pass may take the group over; the next pass takes up where this one stopped",
                ))
            }
            _ => Ok(()),
        }
    }

    /// Waits until a call of `operation` fits its bucket, and takes the token.
    pub async fn wait(&self, operation: &str) {
        let wait = self.with_bucket(operation, |b, now| b.reserve(now));
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_gives_its_size_at_once_then_its_refill_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::full(5.0, 2.0, t0);
        let waits: Vec<f64> = (0..9).map(|_| b.reserve(t0).as_secs_f64()).collect();
        assert_eq!(waits, [0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.5, 2.0]);
        // EC2's side of the same bucket: empty now, one token half a second later.
        let mut ec2 = Bucket::full(5.0, 2.0, t0);
        assert!((0..5).all(|_| ec2.try_take(t0)));
        assert!(!ec2.try_take(t0));
        assert!(ec2.try_take(t0 + Duration::from_millis(500)));
        // Looking does not take: the next token is half a second away, twice.
        let mut peek = Bucket::full(1.0, 2.0, t0);
        assert_eq!(peek.delay(t0), Duration::ZERO);
        assert_eq!(peek.reserve(t0), Duration::ZERO);
        assert_eq!(peek.delay(t0), Duration::from_millis(500));
        assert_eq!(peek.delay(t0), Duration::from_millis(500));
        // It never holds more than its size.
        let mut idle = Bucket::full(5.0, 2.0, t0);
        let later = t0 + Duration::from_secs(60);
        assert!((0..5).all(|_| idle.try_take(later)));
        assert!(!idle.try_take(later));
    }

    #[test]
    fn every_operation_has_the_bucket_of_its_category() {
        assert_eq!(documented_bucket("RunInstances"), (5.0, 2.0));
        assert_eq!(documented_bucket("DescribeInstances"), (100.0, 20.0));
        assert_eq!(
            documented_bucket("DescribeInstanceRefreshes"),
            (100.0, 20.0)
        );
        assert_eq!(documented_bucket("GetProducts"), (100.0, 20.0));
        assert_eq!(documented_bucket("CreateFleet"), (50.0, 5.0));
        assert_eq!(documented_bucket("TerminateInstances"), (50.0, 5.0));
        assert_eq!(documented_bucket("AttachInstances"), (50.0, 5.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pacer_lets_a_bucket_go_at_once_then_at_its_refill_rate() {
        let pacer = Pacer::new();
        let t0 = Instant::now();
        // One token short of the bucket, refilled at 95% of its rate.
        for _ in 0..99 {
            pacer.wait("DescribeInstances").await;
        }
        assert_eq!(Instant::now(), t0);
        pacer.wait("DescribeInstances").await;
        let waited = (Instant::now() - t0).as_secs_f64();
        assert!(
            (waited - 1.0 / (20.0 * PACING_SHARE)).abs() < 1e-3,
            "{waited}"
        );
        // Another operation has its own bucket.
        let before = Instant::now();
        pacer.wait("DescribeImages").await;
        assert_eq!(Instant::now(), before);
    }
}
