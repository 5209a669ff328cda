//! Pacing: a pass's calls kept under EC2's request token buckets, so it neither meets
//! `RequestLimitExceeded` nor spends its time in the SDK's retries.
//!
//! EC2 throttles each account per region with a token bucket per API action: a call takes a
//! token, the bucket refills at a fixed rate up to its size (EC2 API reference, "Request
//! throttling for the Amazon EC2 API"). A pass paces each region's launches and terminations
//! with buckets of the documented sizes, starting full; every region has its own, as EC2's
//! are per region. This module only keeps time: it decides nothing about what to call.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// EC2's request token buckets for the calls a pass makes in bulk: (action, bucket size,
/// refill per second). RunInstances has the smallest bucket of all (5, refilled at 2 a
/// second); TerminateInstances and CreateFleet are mutating actions (50, 5 a second; EC2's
/// throttling page lists no bucket of CreateFleet's own, so it is in the mutating one). Other
/// calls are a few per group and pass, well inside their buckets.
pub const EC2_BUCKETS: [(&str, f64, f64); 3] = [
    ("RunInstances", 5.0, 2.0),
    ("TerminateInstances", 50.0, 5.0),
    ("CreateFleet", 50.0, 5.0),
];

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
        if self.tokens >= 1.0 {
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

/// One region's buckets for a pass.
#[derive(Debug)]
pub struct Pacer {
    buckets: Mutex<HashMap<&'static str, Bucket>>,
}

impl Pacer {
    /// Full buckets of [`EC2_BUCKETS`], from now.
    pub fn ec2() -> Self {
        let now = Instant::now();
        let buckets = EC2_BUCKETS
            .iter()
            .map(|(op, size, refill)| (*op, Bucket::full(*size, *refill, now)))
            .collect();
        Pacer {
            buckets: Mutex::new(buckets),
        }
    }

    /// When a call of `operation` could go, from now (now for an unpaced operation): a pass
    /// does not start a launch it could only make after its deadline.
    pub fn next_slot(&self, operation: &str) -> Instant {
        let now = Instant::now();
        let buckets = self.buckets.lock().expect("pacer lock");
        now + buckets
            .get(operation)
            .map_or(Duration::ZERO, |b| b.delay(now))
    }

    /// Waits until a call of `operation` fits its bucket (at once for an unpaced operation).
    pub async fn wait(&self, operation: &str) {
        let wait = {
            let mut buckets = self.buckets.lock().expect("pacer lock");
            match buckets.get_mut(operation) {
                Some(b) => b.reserve(Instant::now()),
                None => Duration::ZERO,
            }
        };
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
}
