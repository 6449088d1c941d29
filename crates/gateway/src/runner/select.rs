//! Which runner to try first, and which not to try at all: pure decisions.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::ceiling::Ceiling;
use crate::error::{RejectReason, Rejection};
use crate::runner::offer::RunnerOffer;

/// Orders candidates: runners with free capacity first, then the cheapest (compared per
/// hour, or per call for fixed prices; unpriced counts as free), then the fastest to answer
/// discovery (unmeasured last). Ties keep discovery order.
pub fn order_candidates(offers: &mut [RunnerOffer]) {
    offers.sort_by_key(|o| {
        (
            o.capacity_available == 0,
            o.price.map_or(0, |p| p.hourly_wei()),
            o.latency.unwrap_or(Duration::MAX),
        )
    });
}

/// Splits offers into those under the price ceiling and rejections naming both prices.
pub(crate) fn apply_ceiling(
    offers: Vec<RunnerOffer>,
    ceiling: &Ceiling,
) -> (Vec<RunnerOffer>, Vec<Rejection>) {
    let mut kept = Vec::with_capacity(offers.len());
    let mut rejected = Vec::new();
    for o in offers {
        match o.price.as_ref().map(|p| ceiling.check(p)) {
            Some(Err(why)) => rejected.push(Rejection {
                url: o.url,
                reason: RejectReason::OverRunnerCeiling(why),
            }),
            _ => kept.push(o),
        }
    }
    (kept, rejected)
}

/// Runners that took a paid reservation and then failed the app call. They are skipped
/// until their cool-down ends so a broken runner is never paid in a loop.
#[derive(Debug, Default)]
pub(crate) struct Cooldowns {
    until: HashMap<String, Instant>,
}

impl Cooldowns {
    /// Puts `url` on cool-down until `now + period`.
    pub(crate) fn put(&mut self, url: &str, now: Instant, period: Duration) {
        self.until.retain(|_, t| *t > now);
        self.until.insert(url.to_owned(), now + period);
    }

    /// Time left on `url`'s cool-down, if any.
    pub(crate) fn remaining(&self, url: &str, now: Instant) -> Option<Duration> {
        self.until
            .get(url)
            .and_then(|t| t.checked_duration_since(now))
            .filter(|d| !d.is_zero())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::offer::RunnerMode;
    use crate::runner::price::{PriceUnit, RunnerPrice};

    fn offer(url: &str, available: u32, wei: Option<u128>, ms: Option<u64>) -> RunnerOffer {
        RunnerOffer {
            url: url.into(),
            orchestrator: "o".into(),
            app: "a".into(),
            mode: RunnerMode::Persistent,
            gpu: None,
            version: None,
            capacity: 2,
            capacity_used: 2 - available.min(2),
            capacity_available: available,
            price: wei.map(|wei| RunnerPrice {
                wei,
                unit: PriceUnit::Seconds,
            }),
            latency: ms.map(Duration::from_millis),
        }
    }

    fn urls(o: &[RunnerOffer]) -> Vec<&str> {
        o.iter().map(|o| o.url.as_str()).collect()
    }

    #[test]
    fn capacity_then_price_then_latency() {
        let mut o = vec![
            offer("full-cheap", 0, Some(1), Some(1)),
            offer("pricey-fast", 1, Some(100), Some(1)),
            offer("cheap-slow", 1, Some(10), Some(50)),
            offer("cheap-fast", 2, Some(10), Some(5)),
            offer("cheap-unmeasured", 1, Some(10), None),
            offer("free", 1, None, Some(90)),
        ];
        order_candidates(&mut o);
        assert_eq!(
            urls(&o),
            [
                "free",
                "cheap-fast",
                "cheap-slow",
                "cheap-unmeasured",
                "pricey-fast",
                "full-cheap"
            ]
        );
    }

    #[test]
    fn units_compare_per_hour() {
        let mut px = offer("pixels", 1, None, None);
        // 10 wei per 720p pixel = 995 328 000 000 wei per hour.
        px.price = Some(RunnerPrice {
            wei: 10,
            unit: PriceUnit::PixelSeconds720p,
        });
        // 1e9 wei per second = 3.6e12 per hour: dearer.
        let mut o = vec![offer("seconds", 1, Some(1_000_000_000), None), px];
        order_candidates(&mut o);
        assert_eq!(urls(&o), ["pixels", "seconds"]);
    }

    #[test]
    fn ceiling_rejects_with_both_prices() {
        let c = Ceiling {
            wei_per_second: Some(50),
            ..Ceiling::default()
        };
        let (kept, rejected) = apply_ceiling(
            vec![
                offer("ok", 1, Some(50), None),
                offer("dear", 1, Some(51), None),
                offer("free", 1, None, None),
            ],
            &c,
        );
        assert_eq!(urls(&kept), ["ok", "free"]);
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].url, "dear");
        let text = rejected[0].reason.to_string();
        assert!(
            text.contains("51 wei/seconds") && text.contains("50 wei/seconds"),
            "{text}"
        );
    }

    #[test]
    fn cooldown_expires() {
        let t0 = Instant::now();
        let mut c = Cooldowns::default();
        c.put("r", t0, Duration::from_secs(60));
        assert_eq!(c.remaining("r", t0), Some(Duration::from_secs(60)));
        assert!(c.remaining("other", t0).is_none());
        assert!(c.remaining("r", t0 + Duration::from_secs(60)).is_none());
    }
}
