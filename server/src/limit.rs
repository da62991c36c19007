//! Rate limits per client address or per session (GCRA: a burst of N, then
//! one every window / N; one instant stored per key): session creation, and
//! the business step's "email already used" answers.
//!
//! Creating a session writes a tenant row: without a limit, one client could
//! fill the database. GCRA rather than a fixed window: a fixed window lets a
//! client send 2N at every window boundary, hour after hour; GCRA lets a
//! client that was quiet for a window send N at once and then N - 1 more
//! within that window (2N - 1), and no more than N in each window after,
//! and needs no timer or background task.

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
    /// Woken when a turn ends (see [`RateLimiter::wait_turn`]).
    freed: tokio::sync::Notify,
}

struct State<K> {
    next: HashMap<K, Instant>,
    prune_at: usize,
    /// Turns held per key: events under way that may yet count.
    held: HashMap<K, u32>,
}

/// What [`RateLimiter::take_turn`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Turn {
    Taken,
    /// The limit is spent: seconds to wait.
    Spent(u64),
    /// The turns held use up what is left: one must end first.
    Busy,
}

impl<K: Hash + Eq> RateLimiter<K> {
    /// `None` when `limit` is 0 (no limit).
    pub fn new(limit: u32, window: Duration) -> Option<RateLimiter<K>> {
        Self::with_burst(limit, window, limit)
    }

    /// `limit` a `window`, of which at most `burst` at once (a fresh key may
    /// send `burst`, then one every window / limit); `None` when `limit`
    /// is 0 (no limit).
    pub fn with_burst(limit: u32, window: Duration, burst: u32) -> Option<RateLimiter<K>> {
        if limit == 0 {
            return None;
        }
        let interval = window / limit;
        Some(RateLimiter {
            interval,
            tolerance: interval * (burst.clamp(1, limit) - 1),
            state: Mutex::new(State {
                next: HashMap::new(),
                prune_at: PRUNE_AT,
                held: HashMap::new(),
            }),
            freed: tokio::sync::Notify::new(),
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

    /// Takes one of `key`'s turns for an event that counts or not once it
    /// has run (an "email already used" answer): taken while the turns held
    /// are fewer than the counts left, so that the limit holds even if every
    /// one of them counts. Events of one key sent at once then wait for each
    /// other only when the limit is near, and never pass it together.
    pub fn take_turn(&self, key: &K, now: Instant) -> Turn
    where
        K: Clone,
    {
        let mut state = self.lock();
        let tat = match self.due(&state, key, now) {
            Ok(tat) => tat,
            Err(wait) => return Turn::Spent(wait),
        };
        // What is left of the tolerance, in counts: `limit` for a fresh key.
        let room = self.tolerance - (tat - now);
        let left = room.as_nanos() / self.interval.as_nanos().max(1) + 1;
        let held = state.held.entry(key.clone()).or_insert(0);
        if u128::from(*held) >= left {
            return Turn::Busy;
        }
        *held += 1;
        Turn::Taken
    }

    /// [`take_turn`](Self::take_turn), waiting (at most `patience`) while
    /// the turns held use up what is left; `Err(seconds)` when the limit is
    /// spent, or still busy after `patience`.
    pub async fn wait_turn(&self, key: &K, patience: Duration) -> Result<(), u64>
    where
        K: Clone,
    {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            // Registered before the look, so that a turn ending in between
            // is not missed.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.take_turn(key, Instant::now()) {
                Turn::Taken => return Ok(()),
                Turn::Spent(wait) => return Err(wait),
                Turn::Busy => {
                    if tokio::time::timeout_at(deadline, freed).await.is_err() {
                        return Err(1);
                    }
                }
            }
        }
    }

    /// Counts one event of `key` at `now`, over the limit or not: an event
    /// that happened, whose outcome is unknown (its request was dropped).
    pub fn count(&self, key: K, now: Instant) {
        let mut state = self.lock();
        let tat = Self::arrival(&state, &key, now);
        self.record(&mut state, key, tat, now);
    }

    /// Ends a turn of `key`; `counted`: the event happened and counts.
    pub fn end_turn(&self, key: K, counted: bool, now: Instant) {
        let mut state = self.lock();
        if let Some(held) = state.held.get_mut(&key) {
            *held -= 1;
            if *held == 0 {
                state.held.remove(&key);
            }
        }
        if counted {
            let tat = Self::arrival(&state, &key, now);
            self.record(&mut state, key, tat, now);
        }
        drop(state);
        self.freed.notify_waiters();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<K>> {
        // A poisoned lock only means another request panicked mid-update of
        // a map of instants: the data is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `key`'s theoretical arrival time, or how long to wait when it is too
    /// far ahead of `now`.
    fn due(&self, state: &State<K>, key: &K, now: Instant) -> Result<Instant, u64> {
        let tat = Self::arrival(state, key, now);
        let ahead = tat - now;
        if ahead > self.tolerance {
            let wait = ahead - self.tolerance;
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(secs.max(1));
        }
        Ok(tat)
    }

    /// `key`'s theoretical arrival time, never before `now`.
    fn arrival(state: &State<K>, key: &K, now: Instant) -> Instant {
        state.next.get(key).map_or(now, |&t| t.max(now))
    }

    fn record(&self, state: &mut State<K>, key: K, tat: Instant, now: Instant) {
        state.next.insert(key, tat + self.interval);
        if state.next.len() >= state.prune_at {
            state.next.retain(|_, t| *t > now);
            state.prune_at = (state.next.len() * 2).max(PRUNE_AT);
        }
    }
}

/// A key as the limits keep it: its 64-bit hash, under a key drawn for
/// this process (so that no one can make keys collide). A session id is
/// any path segment until the library reads it, up to the head's 16 KiB:
/// kept whole for a limit's window, 4,096 of them held 64 MB.
pub fn hashed(key: &str) -> u64 {
    use std::hash::BuildHasher;
    static STATE: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    STATE
        .get_or_init(std::collections::hash_map::RandomState::new)
        .hash_one(key)
}

/// The keyed requests a limit has counted lately: a request sent again
/// under its `Idempotency-Key` is answered its first answer and does
/// nothing more, so it is counted once. Keys are forgotten after `window`
/// (the limit's), or when the request was given back.
pub struct ChargedKeys {
    window: Duration,
    /// By [`hashed`] key: a key holds its session's id, any path segment.
    seen: Mutex<HashMap<u64, Instant>>,
}

impl ChargedKeys {
    pub fn new(window: Duration) -> ChargedKeys {
        ChargedKeys {
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Counts `key`'s request at `now` with `count` (the limit's check),
    /// unless it was counted within the window: `Ok(true)` counted now,
    /// `Ok(false)` counted before (a request sent again), `Err` the
    /// limit's refusal, after which the key is not remembered. One lock
    /// across the check: a duplicate sent at once waits for the first's
    /// count, and never passes on a count that was refused.
    pub fn charge(
        &self,
        key: &str,
        now: Instant,
        count: impl FnOnce() -> Result<(), u64>,
    ) -> Result<bool, u64> {
        let key = hashed(key);
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if seen
            .get(&key)
            .is_some_and(|at| now.saturating_duration_since(*at) < self.window)
        {
            return Ok(false);
        }
        count()?;
        if seen.len() >= PRUNE_AT {
            let window = self.window;
            seen.retain(|_, at| now.saturating_duration_since(*at) < window);
            // Still full of live keys (a flood of fresh ones): forgotten,
            // at worst a retry among them counts again.
            if seen.len() >= PRUNE_AT {
                seen.clear();
            }
        }
        seen.insert(key, now);
        Ok(true)
    }

    /// `key`'s request was given back: sent again, it counts again.
    pub fn forget(&self, key: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.remove(&hashed(key));
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

    /// Sixty an hour, ten at once: the eleventh waits its minute, and one
    /// a minute follows.
    #[test]
    fn a_burst_smaller_than_the_limit_lets_that_many_at_once() {
        let limiter = RateLimiter::with_burst(60, Duration::from_secs(3600), 10).unwrap();
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..10 {
            assert_eq!(limiter.check(ip, t0), Ok(()));
        }
        assert_eq!(limiter.check(ip, t0), Err(60));
        assert_eq!(limiter.check(ip, t0 + Duration::from_secs(60)), Ok(()));
        assert_eq!(limiter.check(ip, t0 + Duration::from_secs(60)), Err(60));
        // A burst past the limit is the limit.
        let limiter = RateLimiter::with_burst(2, Duration::from_secs(60), 10).unwrap();
        assert_eq!(limiter.check(ip, t0), Ok(()));
        assert_eq!(limiter.check(ip, t0), Ok(()));
        assert_eq!(limiter.check(ip, t0), Err(30));
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

    #[test]
    fn a_key_counts_once_per_window_and_again_once_forgotten() {
        let keys = ChargedKeys::new(Duration::from_secs(3600));
        let t0 = Instant::now();
        let first = |keys: &ChargedKeys, key: &str, at: Instant| keys.charge(key, at, || Ok(()));
        assert_eq!(first(&keys, "a", t0), Ok(true));
        assert_eq!(first(&keys, "a", t0 + Duration::from_secs(3599)), Ok(false));
        assert_eq!(first(&keys, "b", t0), Ok(true));
        assert_eq!(first(&keys, "a", t0 + Duration::from_secs(3600)), Ok(true));
        keys.forget("b");
        assert_eq!(first(&keys, "b", t0 + Duration::from_secs(1)), Ok(true));
        // Refused by the limit: not remembered, counted when sent again.
        assert_eq!(keys.charge("c", t0, || Err(60)), Err(60));
        assert_eq!(first(&keys, "c", t0), Ok(true));
        // Bounded: when full, the expired keys go; if none has, all do.
        let len = |keys: &ChargedKeys| keys.seen.lock().unwrap().len();
        for later in [3600, 1] {
            let keys = ChargedKeys::new(Duration::from_secs(3600));
            for n in 0..PRUNE_AT {
                assert_eq!(first(&keys, &n.to_string(), t0), Ok(true));
            }
            assert_eq!(len(&keys), PRUNE_AT);
            assert_eq!(
                first(&keys, "late", t0 + Duration::from_secs(later)),
                Ok(true)
            );
            assert_eq!(len(&keys), 1, "{later}");
        }
        let keys = ChargedKeys::new(Duration::from_secs(3600));
        for n in 0..PRUNE_AT - 1 {
            first(&keys, &n.to_string(), t0).unwrap();
        }
        first(&keys, "fresh", t0 + Duration::from_secs(3599)).unwrap();
        assert_eq!(
            first(&keys, "late", t0 + Duration::from_secs(3600)),
            Ok(true)
        );
        assert_eq!(len(&keys), 2, "the fresh key and the late one");
    }
}
