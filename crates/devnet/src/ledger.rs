//! Orchestrator-side accounting: balances per (sender, manifest), pinned prices, and the
//! LV2V meter (core/accounting.go, server/live_payment_processor.go). Pure: time is passed in.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Pixels of one second of 720p30 video: the LV2V billing unit rate (server/ai_process.go).
pub(crate) const LV2V_PIXELS_PER_SEC: u64 = 1280 * 720 * 30;

/// A price: `per_unit` wei for every `pixels` units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Price {
    pub(crate) per_unit: i64,
    pub(crate) pixels: i64,
}

impl Price {
    pub(crate) fn from_info(p: Option<&lpgw_proto::PriceInfo>) -> Self {
        p.map_or(
            Self {
                per_unit: 0,
                pixels: 1,
            },
            |p| Self {
                per_unit: p.price_per_unit,
                pixels: p.pixels_per_unit.max(1),
            },
        )
    }

    /// Fee in wei for `units`, rounded up.
    pub(crate) fn fee(self, units: u64) -> u128 {
        let per = u128::try_from(self.per_unit.max(0)).unwrap_or(0);
        let px = u128::try_from(self.pixels.max(1)).unwrap_or(1);
        (u128::from(units) * per).div_ceil(px)
    }
}

/// Key of a balance: payer address and manifest (session) ID.
pub(crate) type AccountKey = (Vec<u8>, String);

/// Balances untouched this long are forgotten (starter.go:64, core/accounting.go:243-251).
pub(crate) const BALANCE_TTL: Duration = Duration::from_secs(10 * 60);

#[derive(Debug)]
struct Account {
    balance: u128,
    price: Option<Price>,
    updated: Instant,
}

impl Account {
    fn new(now: Instant) -> Self {
        Self {
            balance: 0,
            price: None,
            updated: now,
        }
    }
}

/// Balances and pinned prices.
#[derive(Debug, Default)]
pub(crate) struct Ledger {
    accounts: HashMap<AccountKey, Account>,
}

/// The balance does not cover a fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("insufficient balance, fee={fee}, balance={balance}")]
pub(crate) struct Insufficient {
    pub(crate) fee: u128,
    pub(crate) balance: u128,
}

impl Ledger {
    /// Pins `price` for the account on its first payment; returns the pinned price.
    pub(crate) fn pin(&mut self, key: &AccountKey, price: Price, now: Instant) -> Price {
        let a = self
            .accounts
            .entry(key.clone())
            .or_insert_with(|| Account::new(now));
        a.updated = now;
        *a.price.get_or_insert(price)
    }

    /// The pinned price, if any payment was made.
    pub(crate) fn pinned(&self, key: &AccountKey) -> Option<Price> {
        self.accounts.get(key).and_then(|a| a.price)
    }

    pub(crate) fn credit(&mut self, key: &AccountKey, amount: u128, now: Instant) {
        let a = self
            .accounts
            .entry(key.clone())
            .or_insert_with(|| Account::new(now));
        a.balance = a.balance.saturating_add(amount);
        a.updated = now;
    }

    pub(crate) fn balance(&self, key: &AccountKey) -> u128 {
        self.accounts.get(key).map_or(0, |a| a.balance)
    }

    /// Debits `fee`, or fails leaving the balance unchanged.
    pub(crate) fn debit(
        &mut self,
        key: &AccountKey,
        fee: u128,
        now: Instant,
    ) -> Result<(), Insufficient> {
        let balance = self.balance(key);
        if balance < fee {
            return Err(Insufficient { fee, balance });
        }
        if let Some(a) = self.accounts.get_mut(key) {
            a.balance -= fee;
            a.updated = now;
        }
        Ok(())
    }

    /// Forgets accounts not updated within `ttl` before `now`; returns how many.
    pub(crate) fn sweep(&mut self, now: Instant, ttl: Duration) -> usize {
        let before = self.accounts.len();
        self.accounts
            .retain(|_, a| now.saturating_duration_since(a.updated) < ttl);
        before - self.accounts.len()
    }
}

/// The LV2V meter: bills elapsed time in pixels at most once per interval, carrying the
/// fraction of a pixel-second not yet billed (live_payment_processor.go:70-121).
#[derive(Debug, Clone)]
pub(crate) struct Meter {
    interval: Duration,
    last: Instant,
}

impl Meter {
    pub(crate) fn new(interval: Duration, now: Instant) -> Self {
        Self {
            interval,
            last: now,
        }
    }

    /// Units (pixels) due at `now`, or `None` when the interval has not passed.
    pub(crate) fn tick(&mut self, now: Instant) -> Option<u64> {
        if now < self.last + self.interval {
            return None;
        }
        let elapsed = now.duration_since(self.last);
        let nanos = elapsed.as_nanos();
        let units = nanos * u128::from(LV2V_PIXELS_PER_SEC) / 1_000_000_000;
        // Advance only by the billed duration so fractions carry into the next tick.
        let billed = units * 1_000_000_000 / u128::from(LV2V_PIXELS_PER_SEC);
        self.last += Duration::from_nanos(u64::try_from(billed).unwrap_or(u64::MAX));
        Some(u64::try_from(units).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fee_rounds_up() {
        let p = Price {
            per_unit: 3,
            pixels: 2,
        };
        assert_eq!(p.fee(1), 2);
        assert_eq!(p.fee(2), 3);
        assert_eq!(Price::from_info(None).fee(1_000), 0);
    }

    #[test]
    fn first_payment_pins_price_and_debits_need_balance() {
        let mut l = Ledger::default();
        let k = (vec![1; 20], "m".to_string());
        let p1 = Price {
            per_unit: 1,
            pixels: 1,
        };
        let p2 = Price {
            per_unit: 9,
            pixels: 1,
        };
        let t = Instant::now();
        assert_eq!(l.pin(&k, p1, t), p1);
        assert_eq!(l.pin(&k, p2, t), p1);
        l.credit(&k, 100, t);
        assert_eq!(l.debit(&k, 60, t), Ok(()));
        assert_eq!(
            l.debit(&k, 60, t),
            Err(Insufficient {
                fee: 60,
                balance: 40
            })
        );
        assert_eq!(l.balance(&k), 40);
    }

    #[test]
    fn untouched_balances_expire() {
        let mut l = Ledger::default();
        let t0 = Instant::now();
        let a = (vec![1; 20], "a".to_string());
        let b = (vec![1; 20], "b".to_string());
        l.credit(&a, 5, t0);
        l.credit(&b, 5, t0);
        l.debit(&b, 1, t0 + Duration::from_secs(300)).unwrap();
        assert_eq!(l.sweep(t0 + BALANCE_TTL, BALANCE_TTL), 1);
        assert_eq!(l.balance(&a), 0);
        assert_eq!(l.pinned(&a), None);
        assert_eq!(l.balance(&b), 4);
    }

    #[test]
    fn meter_bills_per_interval_with_carry() {
        let t0 = Instant::now();
        let mut m = Meter::new(Duration::from_secs(5), t0);
        assert_eq!(m.tick(t0 + Duration::from_secs(4)), None);
        assert_eq!(
            m.tick(t0 + Duration::from_millis(10_500)),
            Some(LV2V_PIXELS_PER_SEC * 21 / 2)
        );
        assert_eq!(m.tick(t0 + Duration::from_millis(12_000)), None);
        // 10.5 s more: 21 s in total billed over the two ticks.
        assert_eq!(
            m.tick(t0 + Duration::from_millis(21_000)),
            Some(LV2V_PIXELS_PER_SEC * 21 / 2)
        );
    }
}
