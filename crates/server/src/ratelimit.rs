//! Per-client-address rate limits for job starts.
//!
//! The arithmetic is `governor`'s (GCRA, which behaves as a token bucket of `burst` tokens
//! refilled at `per_sec`). The state store is ours, because governor's stores grow without
//! bound and one entry per client address must not: a flood of new addresses (cheap with
//! IPv6) would grow the map forever. [`BoundedStore`] caps the entries and, when full,
//! forgets the buckets that lose least by starting over.

use std::collections::HashMap;
use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::StateStore;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::{NotUntil, Quota};

/// Addresses tracked at most; past this, idle entries are evicted first.
pub(crate) const MAX_TRACKED: usize = 10_000;

/// The longest refill period accepted: a slower rate is taken as this one, so the
/// arithmetic stays within governor's 584-year range.
const MAX_PERIOD: Duration = Duration::from_secs(365 * 24 * 3600);

/// A map from key to the bucket's theoretical arrival time (TAT), holding at most `max`
/// entries. A bucket's TAT is the later the emptier it is, so the smallest TATs are the
/// fullest buckets.
#[derive(Debug)]
pub(crate) struct BoundedStore<K> {
    map: Mutex<HashMap<K, Nanos>>,
    max: usize,
}

impl<K: Eq + Hash> BoundedStore<K> {
    fn new(max: usize) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            max: max.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Nanos>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Makes room in a full map: drops the fullest buckets down to nine tenths of `max`, so
/// a flood of new keys pays for a sort only once per tenth of the map.
fn evict_fullest<K: Eq + Hash + Clone>(map: &mut HashMap<K, Nanos>, max: usize) {
    let target = (max - max / 10).min(max - 1);
    if map.len() <= target {
        return;
    }
    let mut by_tat: Vec<(Nanos, K)> = map.iter().map(|(k, t)| (*t, k.clone())).collect();
    by_tat.sort_unstable_by_key(|(t, _)| *t);
    let excess = map.len() - target;
    for (_, k) in by_tat.into_iter().take(excess) {
        map.remove(&k);
    }
}

impl<K: Eq + Hash + Clone> StateStore for BoundedStore<K> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let mut map = self.lock();
        if let Some(tat) = map.get_mut(key) {
            let (out, next) = f(Some(*tat))?;
            *tat = next;
            return Ok(out);
        }
        if map.len() >= self.max {
            evict_fullest(&mut map, self.max);
        }
        let (out, next) = f(None)?;
        map.insert(key.clone(), next);
        Ok(out)
    }
}

impl<K: Eq + Hash + Clone> ShrinkableKeyedStateStore<K> for BoundedStore<K> {
    fn retain_recent(&self, drop_below: Nanos) {
        self.lock().retain(|_, tat| *tat > drop_below);
    }

    fn shrink_to_fit(&self) {
        self.lock().shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.lock().len()
    }

    fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// One bucket per key, bounded in number (see the module documentation).
pub(crate) struct RateLimiter<K: Eq + Hash + Clone, C: Clock = DefaultClock> {
    inner: governor::RateLimiter<K, BoundedStore<K>, C, NoOpMiddleware<C::Instant>>,
    /// The store's bound, kept here too: governor owns the store.
    max: usize,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// `None` when `per_sec` is not positive (no limit) or `burst` below 1.
    pub(crate) fn new(per_sec: f64, burst: u32, max: usize) -> Option<Self> {
        Self::with_clock(per_sec, burst, max, DefaultClock::default())
    }
}

impl<K: Eq + Hash + Clone, C: Clock> RateLimiter<K, C> {
    /// [`RateLimiter::new`] reading time from `clock`.
    pub(crate) fn with_clock(per_sec: f64, burst: u32, max: usize, clock: C) -> Option<Self> {
        if !(per_sec.is_finite() && per_sec > 0.0) {
            return None;
        }
        let burst = NonZeroU32::new(burst)?;
        let period = Duration::try_from_secs_f64(1.0 / per_sec)
            .unwrap_or(MAX_PERIOD)
            .clamp(Duration::from_nanos(1), MAX_PERIOD);
        let quota = Quota::with_period(period)?.allow_burst(burst);
        Some(Self {
            inner: governor::RateLimiter::new(quota, BoundedStore::new(max), clock),
            max: max.max(1),
        })
    }

    /// Takes a token for `key`; `Err` holds how long until the next one. A full map first
    /// forgets the buckets that are full again (they are the same as no bucket at all).
    pub(crate) fn check(&self, key: &K) -> Result<(), Duration> {
        if self.inner.len() >= self.max {
            self.inner.retain_recent();
        }
        self.inner
            .check_key(key)
            .map_err(|not_until: NotUntil<C::Instant>| {
                not_until.wait_time_from(self.inner.clock().now())
            })
    }

    /// Keys tracked now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A clock the test sets, forwards or backwards.
    #[derive(Clone, Default)]
    struct TestClock(Arc<AtomicU64>);

    impl TestClock {
        fn at(start: Duration) -> Self {
            let c = Self::default();
            c.set(start);
            c
        }

        fn set(&self, t: Duration) {
            self.0
                .store(u64::try_from(t.as_nanos()).unwrap(), Ordering::SeqCst);
        }
    }

    impl Clock for TestClock {
        type Instant = Nanos;

        fn now(&self) -> Nanos {
            Nanos::new(self.0.load(Ordering::SeqCst))
        }
    }

    const T0: Duration = Duration::from_secs(100);

    fn limiter(per_sec: f64, burst: u32, max: usize) -> (RateLimiter<u32, TestClock>, TestClock) {
        let clock = TestClock::at(T0);
        let l = RateLimiter::with_clock(per_sec, burst, max, clock.clone()).unwrap();
        (l, clock)
    }

    #[test]
    fn burst_then_refill_at_the_rate() {
        let (b, clock) = limiter(2.0, 3, 100);
        for _ in 0..3 {
            assert_eq!(b.check(&1), Ok(()));
        }
        let wait = b.check(&1).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Half a token after 250 ms: still refused, 250 ms to go.
        clock.set(T0 + Duration::from_millis(250));
        let wait = b.check(&1).unwrap_err();
        assert!((wait.as_secs_f64() - 0.25).abs() < 1e-9, "{wait:?}");
        clock.set(T0 + Duration::from_millis(500));
        assert_eq!(b.check(&1), Ok(()));
        // A long pause refills only up to the burst.
        clock.set(T0 + Duration::from_secs(60));
        for _ in 0..3 {
            assert_eq!(b.check(&1), Ok(()));
        }
        assert!(b.check(&1).is_err());
    }

    #[test]
    fn a_clock_going_backwards_mints_nothing() {
        let (b, clock) = limiter(2.0, 3, 100);
        clock.set(T0 + Duration::from_secs(10));
        for _ in 0..3 {
            b.check(&1).unwrap();
        }
        clock.set(T0 + Duration::from_secs(5));
        assert!(b.check(&1).is_err());
        clock.set(T0 + Duration::from_secs(10));
        assert!(b.check(&1).is_err());
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let (l, clock) = limiter(1.0, 2, 100);
        assert!(l.check(&1).is_ok());
        assert!(l.check(&1).is_ok());
        assert!(l.check(&1).is_err());
        assert!(l.check(&2).is_ok());
        clock.set(T0 + Duration::from_secs(1));
        assert!(l.check(&1).is_ok());
    }

    #[test]
    fn zero_rate_or_burst_means_no_limiter() {
        assert!(RateLimiter::<u32>::new(0.0, 10, 10).is_none());
        assert!(RateLimiter::<u32>::new(-1.0, 10, 10).is_none());
        assert!(RateLimiter::<u32>::new(f64::NAN, 10, 10).is_none());
        assert!(RateLimiter::<u32>::new(1.0, 0, 10).is_none());
        // Extreme but valid rates are limits, not panics.
        assert!(RateLimiter::<u32>::new(1e-300, 1, 10).is_some());
        assert!(RateLimiter::<u32>::new(1e300, 1, 10).is_some());
    }

    #[test]
    fn a_flood_of_keys_stays_bounded_and_keeps_busy_buckets() {
        let (l, clock) = limiter(1.0, 2, 50);
        // "busy" drains its bucket.
        l.check(&u32::MAX).unwrap();
        l.check(&u32::MAX).unwrap();
        for k in 0..10_000u32 {
            let _ = l.check(&k);
            assert!(l.len() <= 50);
        }
        // Every flooding key used one token of two, "busy" both: it is never the fullest,
        // so it was kept and is still limited.
        assert!(l.check(&u32::MAX).is_err());
        // Idle entries go first: after the refill every old bucket is full, and the insert
        // that finds the map full sweeps them all, keeping only the new, used ones.
        clock.set(T0 + Duration::from_secs(10));
        let fresh = 50 - l.len() + 1;
        for k in 0..fresh {
            l.check(&(1_000_000 + u32::try_from(k).unwrap())).unwrap();
        }
        assert_eq!(l.len(), fresh);
    }
}
