//! A client-side limit on the ClusterPullSecret controller's per-namespace API calls
//! (`--controller-qps`, `--controller-burst`): a token bucket, as client-go puts in front of every
//! client. kube-rs has none, and a reconcile makes one call per selected namespace, so without
//! it a rotation over thousands of namespaces writes as fast as the API server answers.
//!
//! Requests take tokens in arrival order: a caller that finds the bucket empty reserves the next
//! token and sleeps until it is due, so a queue never starves anyone and the rate holds on
//! average as well as at the peak.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Allows `qps` calls a second on average and up to `burst` at once after a quiet spell.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    /// `None`: no limit (`--controller-qps 0`).
    bucket: Option<Arc<Mutex<Bucket>>>,
}

#[derive(Debug)]
struct Bucket {
    per_token: Duration,
    burst: f64,
    /// Tokens at `at`; negative when callers have reserved tokens not yet due.
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// A bucket that starts full. `qps` 0 (or not finite) means no limit; `burst` is at least 1.
    pub fn new(qps: f64, burst: u32) -> RateLimiter {
        if !(qps.is_finite() && qps > 0.0) {
            return RateLimiter::unlimited();
        }
        let burst = f64::from(burst.max(1));
        RateLimiter {
            bucket: Some(Arc::new(Mutex::new(Bucket {
                per_token: Duration::from_secs_f64(1.0 / qps),
                burst,
                tokens: burst,
                at: Instant::now(),
            }))),
        }
    }

    pub fn unlimited() -> RateLimiter {
        RateLimiter { bucket: None }
    }

    /// Waits until this call may go out.
    pub async fn acquire(&self) {
        let wait = self.reserve(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes a token at `now`; how long the caller must wait for it.
    fn reserve(&self, now: Instant) -> Duration {
        let Some(bucket) = &self.bucket else {
            return Duration::ZERO;
        };
        let mut bucket = bucket
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let refilled =
            now.saturating_duration_since(bucket.at).as_secs_f64() / bucket.per_token.as_secs_f64();
        bucket.tokens = (bucket.tokens + refilled).min(bucket.burst) - 1.0;
        bucket.at = now;
        if bucket.tokens >= 0.0 {
            Duration::ZERO
        } else {
            bucket.per_token.mul_f64(-bucket.tokens)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When each of `calls` calls, started together, gets through (time paused: no sleeping).
    async fn release_times(limiter: &RateLimiter, calls: usize) -> Vec<Duration> {
        let start = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..calls {
            let limiter = limiter.clone();
            tasks.spawn(async move {
                limiter.acquire().await;
                start.elapsed()
            });
        }
        let mut times = tasks.join_all().await;
        times.sort();
        times
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_bucket_lets_a_burst_through_then_one_call_per_interval() {
        let limiter = RateLimiter::new(10.0, 3);
        let times = release_times(&limiter, 6).await;
        let ms: Vec<u128> = times.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [0, 0, 0, 100, 200, 300]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_bucket_refills_while_quiet_but_never_beyond_the_burst() {
        let limiter = RateLimiter::new(10.0, 2);
        release_times(&limiter, 2).await;
        // A long quiet spell refills two tokens, not fifty.
        tokio::time::advance(Duration::from_secs(5)).await;
        let ms: Vec<u128> = release_times(&limiter, 4)
            .await
            .iter()
            .map(Duration::as_millis)
            .collect();
        assert_eq!(ms, [0, 0, 100, 200]);
    }

    #[tokio::test(start_paused = true)]
    async fn the_long_run_rate_is_the_qps() {
        let limiter = RateLimiter::new(50.0, 10);
        let times = release_times(&limiter, 510).await;
        // 10 at once, then 500 more at 50/s.
        assert_eq!(times.last().map(Duration::as_millis), Some(10_000));
    }

    #[tokio::test(start_paused = true)]
    async fn qps_zero_means_no_limit() {
        for limiter in [RateLimiter::new(0.0, 5), RateLimiter::unlimited()] {
            let times = release_times(&limiter, 1_000).await;
            assert_eq!(times.last().copied(), Some(Duration::ZERO));
        }
    }

    #[test]
    fn a_burst_of_zero_still_lets_calls_through() {
        let limiter = RateLimiter::new(4.0, 0);
        let now = Instant::now();
        assert_eq!(limiter.reserve(now), Duration::ZERO);
        assert_eq!(limiter.reserve(now), Duration::from_millis(250));
    }
}
