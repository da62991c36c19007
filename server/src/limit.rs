//! Rate limits per client address or per session (GCRA: "at most N per
//! window", smoothed, one instant stored per key): session creation, and the
//! business step's "email already used" answers.
//!
//! Creating a session writes a tenant row: without a limit, one client could
//! fill the database. GCRA rather than a fixed window: a fixed window lets a
//! client send 2N around a window boundary; GCRA never allows more than N in
//! any window, and needs no timer or background task.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Tracked addresses before stale ones are dropped.
const PRUNE_AT: usize = 4096;

pub struct RateLimiter<K = IpAddr> {
    /// Time one request "costs": window / limit.
    interval: Duration,
    /// How far ahead of now an address may have spent: window - interval,
    /// so that a fresh address may send `limit` requests at once.
    tolerance: Duration,
    /// Each address's theoretical arrival time: when its next request would
    /// be "on schedule". An address whose time has passed is as good as new.
    state: Mutex<State<K>>,
}

struct State<K> {
    next: HashMap<K, Instant>,
    prune_at: usize,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// `None` when `limit` is 0 (no limit).
    pub fn new(limit: u32, window: Duration) -> Option<RateLimiter<K>> {
        if limit == 0 {
            return None;
        }
        let interval = window / limit;
        Some(RateLimiter {
            interval,
            tolerance: window.saturating_sub(interval),
            state: Mutex::new(State {
                next: HashMap::new(),
                prune_at: PRUNE_AT,
            }),
        })
    }

    /// Counts one request from `key` at `now`; `Err(seconds)` to wait (at
    /// least 1) when over the limit.
    pub fn check(&self, key: K, now: Instant) -> Result<(), u64> {
        let mut state = self.lock();
        let tat = self.due(&state, &key, now)?;
        self.record(&mut state, key, tat, now);
        Ok(())
    }

    /// Whether `key` may be counted once more at `now`, without counting it
    /// (for answers that cost only when they turn out a certain way).
    pub fn allows(&self, key: &K, now: Instant) -> Result<(), u64> {
        self.due(&self.lock(), key, now).map(|_| ())
    }

    /// Counts one event of `key` at `now`, whether or not over the limit
    /// (it happened): an address past its limit stays refused longer.
    pub fn spend(&self, key: K, now: Instant) {
        let mut state = self.lock();
        let tat = state.next.get(&key).map_or(now, |&t| t.max(now));
        self.record(&mut state, key, tat, now);
    }

    /// Gives back one count that [`check`](Self::check) took for `key`, for
    /// answers that cost only when they turn out a certain way: counted
    /// before the answer is known (so that requests sent at once cannot
    /// all pass a check that none of them has counted yet), then refunded
    /// when it turns out otherwise.
    pub fn refund(&self, key: &K) {
        let mut state = self.lock();
        if let Some(tat) = state.next.get_mut(key) {
            if let Some(earlier) = tat.checked_sub(self.interval) {
                *tat = earlier;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        // A poisoned lock only means another request panicked mid-update of
        // a map of instants: the data is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `key`'s theoretical arrival time, or how long to wait when it is too
    /// far ahead of `now`.
    fn due(&self, state: &State<K>, key: &K, now: Instant) -> Result<Instant, u64> {
        let tat = state.next.get(key).map_or(now, |&t| t.max(now));
        let ahead = tat - now;
        if ahead > self.tolerance {
            let wait = ahead - self.tolerance;
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(secs.max(1));
        }
        Ok(tat)
    }

    fn record(&self, state: &mut State<K>, key: K, tat: Instant, now: Instant) {
        state.next.insert(key, tat + self.interval);
        if state.next.len() >= state.prune_at {
            state.next.retain(|_, t| *t > now);
            state.prune_at = (state.next.len() * 2).max(PRUNE_AT);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_the_limit_at_once_then_says_when_the_next_one_fits() {
        let limiter = RateLimiter::new(3, Duration::from_secs(3600)).unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t0 = Instant::now();
        assert_eq!(limiter.check(ip, t0), Ok(()));
        assert_eq!(limiter.check(ip, t0), Ok(()));
        assert_eq!(limiter.check(ip, t0), Ok(()));
        assert_eq!(limiter.check(ip, t0), Err(1200));
        assert_eq!(
            limiter.check(ip, t0 + Duration::from_millis(1_199_500)),
            Err(1)
        );
        assert_eq!(limiter.check(ip, t0 + Duration::from_secs(1200)), Ok(()));
        assert_eq!(limiter.check(ip, t0 + Duration::from_secs(1200)), Err(1200));
    }

    #[test]
    fn addresses_are_counted_apart() {
        let limiter = RateLimiter::new(1, Duration::from_secs(60)).unwrap();
        let t0 = Instant::now();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "::1".parse().unwrap());
        assert_eq!(limiter.check(a, t0), Ok(()));
        assert_eq!(limiter.check(a, t0), Err(60));
        assert_eq!(limiter.check(b, t0), Ok(()));
    }

    #[test]
    fn zero_disables_the_limit() {
        assert!(RateLimiter::<IpAddr>::new(0, Duration::from_secs(60)).is_none());
    }

    #[test]
    fn allows_counts_nothing_and_spend_counts_past_the_limit() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60)).unwrap();
        let t0 = Instant::now();
        let key = "onb_1".to_string();
        assert_eq!(limiter.allows(&key, t0), Ok(()));
        assert_eq!(limiter.allows(&key, t0), Ok(()));
        limiter.spend(key.clone(), t0);
        limiter.spend(key.clone(), t0);
        assert_eq!(limiter.allows(&key, t0), Err(30));
        limiter.spend(key.clone(), t0);
        assert_eq!(limiter.allows(&key, t0), Err(60));
        assert_eq!(limiter.allows(&key, t0 + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn a_refund_gives_back_the_count_a_check_took() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60)).unwrap();
        let t0 = Instant::now();
        let key = "onb_1".to_string();
        // Two counted at once: a third is refused until one is given back.
        assert_eq!(limiter.check(key.clone(), t0), Ok(()));
        assert_eq!(limiter.check(key.clone(), t0), Ok(()));
        assert_eq!(limiter.check(key.clone(), t0), Err(30));
        limiter.refund(&key);
        assert_eq!(limiter.check(key.clone(), t0), Ok(()));
        assert_eq!(limiter.check(key.clone(), t0), Err(30));
        // A key never counted has nothing to give back.
        limiter.refund(&"onb_2".to_string());
        assert_eq!(limiter.check("onb_2".to_string(), t0), Ok(()));
    }

    #[test]
    fn stale_addresses_are_pruned() {
        let limiter = RateLimiter::new(1, Duration::from_secs(1)).unwrap();
        let t0 = Instant::now();
        for i in 0..PRUNE_AT as u32 - 1 {
            let ip = IpAddr::from(i.to_be_bytes());
            assert_eq!(limiter.check(ip, t0), Ok(()));
        }
        let later = t0 + Duration::from_secs(5);
        assert_eq!(limiter.check("::2".parse().unwrap(), later), Ok(()));
        assert_eq!(limiter.state.lock().unwrap().next.len(), 1);
    }
}
