//! Per-client-address rate limits for job starts: one token bucket per address, driven by
//! an explicit clock so the arithmetic is testable without sleeping.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Addresses tracked at most; past this, idle entries are evicted first.
pub(crate) const MAX_TRACKED: usize = 10_000;

/// A token bucket: `rate` tokens per second, at most `burst` stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct TokenBucket {
    tokens: f64,
    at: Instant,
}

/// Bucket parameters shared by every address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Rate {
    /// Tokens added per second; must be positive.
    pub(crate) per_sec: f64,
    /// Tokens stored at most (and held by a new bucket).
    pub(crate) burst: f64,
}

impl TokenBucket {
    /// A full bucket.
    pub(crate) fn full(rate: Rate, now: Instant) -> Self {
        Self {
            tokens: rate.burst,
            at: now,
        }
    }

    /// The tokens held at `now`. A clock that goes backwards adds nothing.
    fn level(&self, rate: Rate, now: Instant) -> f64 {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + dt * rate.per_sec).min(rate.burst)
    }

    /// Takes one token, or says how long until one is available.
    pub(crate) fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        let level = self.level(rate, now);
        // Never move `at` backwards, or a stale clock reading would mint tokens later.
        self.at = self.at.max(now);
        if level >= 1.0 {
            self.tokens = level - 1.0;
            Ok(())
        } else {
            self.tokens = level;
            Err(Duration::from_secs_f64((1.0 - level) / rate.per_sec))
        }
    }

    /// Whether the bucket is full at `now`: then it is the same as no bucket at all, and
    /// forgetting it loses nothing.
    fn is_full(&self, rate: Rate, now: Instant) -> bool {
        self.level(rate, now) >= rate.burst
    }
}

/// One bucket per key, bounded in number.
#[derive(Debug)]
pub(crate) struct RateLimiter<K> {
    rate: Rate,
    buckets: HashMap<K, TokenBucket>,
    max: usize,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// `None` when `per_sec` is not positive (no limit) or `burst` below 1.
    pub(crate) fn new(per_sec: f64, burst: u32, max: usize) -> Option<Self> {
        if !(per_sec.is_finite() && per_sec > 0.0) || burst == 0 {
            return None;
        }
        Some(Self {
            rate: Rate {
                per_sec,
                burst: f64::from(burst),
            },
            buckets: HashMap::new(),
            max: max.max(1),
        })
    }

    /// Takes a token for `key`; `Err` holds how long until the next one.
    pub(crate) fn check(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        let rate = self.rate;
        if let Some(b) = self.buckets.get_mut(key) {
            return b.take(rate, now);
        }
        if self.buckets.len() >= self.max {
            self.evict(now);
        }
        let mut b = TokenBucket::full(rate, now);
        let r = b.take(rate, now);
        self.buckets.insert(key.clone(), b);
        r
    }

    /// Makes room: drops every full bucket; if that freed less than a tenth, drops the
    /// fullest ones (the keys that lose least by starting over) down to nine tenths, so a
    /// flood of new keys pays for a sweep only once per tenth of the map.
    fn evict(&mut self, now: Instant) {
        let rate = self.rate;
        self.buckets.retain(|_, b| !b.is_full(rate, now));
        let target = (self.max - self.max / 10).min(self.max - 1);
        if self.buckets.len() <= target {
            return;
        }
        let mut levels: Vec<(f64, K)> = self
            .buckets
            .iter()
            .map(|(k, b)| (b.level(rate, now), k.clone()))
            .collect();
        levels.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        let excess = self.buckets.len() - target;
        for (_, k) in levels.into_iter().take(excess) {
            self.buckets.remove(&k);
        }
    }

    /// Keys tracked now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        per_sec: 2.0,
        burst: 3.0,
    };

    #[test]
    fn burst_then_refill_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::full(RATE, t0);
        for _ in 0..3 {
            assert_eq!(b.take(RATE, t0), Ok(()));
        }
        let wait = b.take(RATE, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Half a token after 250 ms: still refused, 250 ms to go.
        let t = t0 + Duration::from_millis(250);
        let wait = b.take(RATE, t).unwrap_err();
        assert!((wait.as_secs_f64() - 0.25).abs() < 1e-9, "{wait:?}");
        assert_eq!(b.take(RATE, t0 + Duration::from_millis(500)), Ok(()));
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(b.take(RATE, later), Ok(()));
        }
        assert!(b.take(RATE, later).is_err());
    }

    #[test]
    fn a_clock_going_backwards_mints_nothing() {
        let t0 = Instant::now() + Duration::from_secs(10);
        let mut b = TokenBucket::full(RATE, t0);
        for _ in 0..3 {
            b.take(RATE, t0).unwrap();
        }
        assert!(b.take(RATE, t0 - Duration::from_secs(5)).is_err());
        assert!(b.take(RATE, t0).is_err());
    }

    #[test]
    fn keys_have_their_own_buckets() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(1.0, 2, 100).unwrap();
        assert!(l.check(&"a", t0).is_ok());
        assert!(l.check(&"a", t0).is_ok());
        assert!(l.check(&"a", t0).is_err());
        assert!(l.check(&"b", t0).is_ok());
        assert!(l.check(&"a", t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn zero_rate_or_burst_means_no_limiter() {
        assert!(RateLimiter::<u32>::new(0.0, 10, 10).is_none());
        assert!(RateLimiter::<u32>::new(-1.0, 10, 10).is_none());
        assert!(RateLimiter::<u32>::new(f64::NAN, 10, 10).is_none());
        assert!(RateLimiter::<u32>::new(1.0, 0, 10).is_none());
    }

    #[test]
    fn a_flood_of_keys_stays_bounded_and_keeps_busy_buckets() {
        let t0 = Instant::now();
        let mut l = RateLimiter::new(1.0, 2, 50).unwrap();
        // "busy" drains its bucket.
        l.check(&u32::MAX, t0).unwrap();
        l.check(&u32::MAX, t0).unwrap();
        for k in 0..10_000u32 {
            let _ = l.check(&k, t0);
            assert!(l.len() <= 50);
        }
        // Every flooding key used one token of two, "busy" both: it is never the fullest,
        // so it was kept and is still limited.
        assert!(l.check(&u32::MAX, t0).is_err());
        // Idle entries go first: after the refill every old bucket is full, and the insert
        // that finds the map full sweeps them all, keeping only the new, used ones.
        let later = t0 + Duration::from_secs(10);
        let fresh = 50 - l.len() + 1;
        for k in 0..fresh {
            l.check(&(1_000_000 + u32::try_from(k).unwrap()), later)
                .unwrap();
        }
        assert_eq!(l.len(), fresh);
    }
}
