//! The live-runner session meter (server/live_payment_processor.go:70-121,
//! server/ai_http.go:340-381): every payment interval it bills the elapsed time in the
//! runner's units at the price the reservation's payment declared, and releases the session
//! when the balance does not cover it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ledger::{AccountKey, Price};

use super::Live;

/// Units due per interval, carrying fractions of a unit (pure).
#[derive(Debug, Clone)]
pub(crate) struct UnitMeter {
    interval: Duration,
    units_per_sec: u64,
    last: Instant,
}

impl UnitMeter {
    pub(crate) fn new(interval: Duration, units_per_sec: u64, now: Instant) -> Self {
        Self {
            interval,
            units_per_sec,
            last: now,
        }
    }

    /// Units due at `now`, or `None` before the interval has passed.
    pub(crate) fn tick(&mut self, now: Instant) -> Option<u64> {
        if now < self.last + self.interval || self.units_per_sec == 0 {
            return None;
        }
        let nanos = now.duration_since(self.last).as_nanos();
        let ups = u128::from(self.units_per_sec);
        let units = nanos * ups / 1_000_000_000;
        // Advance only by the billed time so the fraction carries over.
        let billed = units * 1_000_000_000 / ups;
        self.last += Duration::from_nanos(u64::try_from(billed).unwrap_or(u64::MAX));
        Some(u64::try_from(units).unwrap_or(u64::MAX))
    }
}

/// Meters one paid session until it is released or unpaid.
pub(crate) async fn run(
    live: Arc<Live>,
    route: String,
    sid: String,
    key: AccountKey,
    price: Price,
    units_per_sec: u64,
    cancel: tokio_util::sync::CancellationToken,
) {
    let interval = live.orch.payment_interval.max(Duration::from_millis(10));
    let mut meter = UnitMeter::new(interval, units_per_sec, Instant::now());
    let shutdown = live.orch.shutdown.clone();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        let Some(units) = meter.tick(Instant::now()) else {
            continue;
        };
        let fee = price.fee(units);
        let debit = live.orch.ledger().debit(&key, fee, Instant::now());
        match debit {
            Ok(()) => tracing::debug!(session = %sid, units, fee = %fee, "live session metered"),
            Err(e) => {
                tracing::warn!(session = %sid, error = %e, "live session unpaid, releasing");
                live.release(&route, &sid);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_and_pixels_with_carry() {
        let t0 = Instant::now();
        let mut m = UnitMeter::new(Duration::from_secs(5), 1, t0);
        assert_eq!(m.tick(t0 + Duration::from_secs(4)), None);
        assert_eq!(m.tick(t0 + Duration::from_millis(10_500)), Some(10));
        // 0.5 s carried: 10.5 s later, 21 s in total.
        assert_eq!(m.tick(t0 + Duration::from_millis(21_000)), Some(11));
        let mut px = UnitMeter::new(Duration::from_secs(1), 27_648_000, t0);
        assert_eq!(px.tick(t0 + Duration::from_secs(1)), Some(27_648_000));
        let mut fixed = UnitMeter::new(Duration::from_secs(1), 0, t0);
        assert_eq!(fixed.tick(t0 + Duration::from_secs(9)), None);
    }
}
