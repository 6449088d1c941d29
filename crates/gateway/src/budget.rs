//! Spending budgets: how much may be paid over a sliding window, per API key or for a whole
//! service, and the [`Wallet`] a job's payments draw on.
//!
//! Every payment's expected value is known once the signer has minted it and before it is
//! handed to the orchestrator. The payment driver asks the wallet for a hold on that value;
//! a hold that would take any budget past its limit is refused, so the payment is never
//! sent and the job's payments stop with [`BudgetExhausted`]. An accepted payment commits
//! its hold; one the orchestrator refused gives it back.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A budget's limit: at most `max_wei` of expected value paid in any `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetLimit {
    /// Wei.
    pub max_wei: u128,
    /// The sliding window the limit applies to.
    pub window: Duration,
}

/// A budget as configured: USD, wei or both (the smaller wins), over a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// USD per window, converted at the ceiling's ETH price.
    pub usd: Option<f64>,
    /// Wei per window (an integer, or a decimal string past 64 bits).
    #[serde(deserialize_with = "crate::ceiling::wei_option")]
    pub wei: Option<u128>,
}

impl BudgetConfig {
    /// The limit over `window`, or `None` when neither amount is set. A USD amount that does
    /// not convert (negative, NaN, zero ETH price) is a zero budget: nothing may be paid.
    pub fn limit(&self, eth_usd: f64, window: Duration) -> Option<BudgetLimit> {
        let from_usd = self.usd.map(|usd| {
            crate::Ceiling {
                eth_usd,
                ..crate::Ceiling::default()
            }
            .wei_for_usd(usd)
            .unwrap_or(0)
        });
        let max_wei = match (from_usd, self.wei) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return None,
        };
        Some(BudgetLimit { max_wei, window })
    }
}

/// A budget that has no room for a payment (or, at a start, no room left at all).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "budget {name} exhausted: spent {spent_wei} wei (${spent_usd:.4}) of {limit_wei} wei \
     (${limit_usd:.4}) in the last {window_secs} s; this payment needs {needed_wei} wei"
)]
pub struct BudgetExhausted {
    /// The budget's name (`key#0`, `service`).
    pub name: String,
    /// Spent in the window, wei.
    pub spent_wei: u128,
    /// The limit, wei.
    pub limit_wei: u128,
    /// What the refused payment would have added (0 for a start check).
    pub needed_wei: u128,
    /// The window, seconds.
    pub window_secs: u64,
    /// `spent_wei` in USD at the configured ETH price.
    pub spent_usd: f64,
    /// `limit_wei` in USD at the configured ETH price.
    pub limit_usd: f64,
}

/// The spend of one window, as plain data: entries older than the window drop out.
#[derive(Debug)]
struct SpendWindow {
    window: Duration,
    entries: VecDeque<(u64, Instant, u128)>,
    total: u128,
    next_id: u64,
}

impl SpendWindow {
    fn new(window: Duration) -> Self {
        Self {
            window,
            entries: VecDeque::new(),
            total: 0,
            next_id: 0,
        }
    }

    fn prune(&mut self, now: Instant) {
        while let Some(&(_, at, v)) = self.entries.front() {
            if now.saturating_duration_since(at) < self.window {
                break;
            }
            self.total = self.total.saturating_sub(v);
            self.entries.pop_front();
        }
    }

    fn spent(&mut self, now: Instant) -> u128 {
        self.prune(now);
        self.total
    }

    /// Adds `value` if the total stays within `max`; returns the entry's id.
    fn try_add(&mut self, max: u128, value: u128, now: Instant) -> Result<u64, u128> {
        self.prune(now);
        let after = self.total.saturating_add(value);
        if after > max {
            return Err(self.total);
        }
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push_back((id, now, value));
        self.total = after;
        Ok(id)
    }

    /// Gives back an entry (a payment that was not accepted).
    fn remove(&mut self, id: u64) {
        if let Some(i) = self.entries.iter().rposition(|e| e.0 == id)
            && let Some((_, _, v)) = self.entries.remove(i)
        {
            self.total = self.total.saturating_sub(v);
        }
    }
}

/// A named budget shared by every job that draws on it.
#[derive(Debug)]
pub struct Budget {
    name: String,
    limit: BudgetLimit,
    eth_usd: f64,
    spend: Mutex<SpendWindow>,
}

impl Budget {
    /// A budget called `name` (for logs and errors) with `limit`; `eth_usd` is used only to
    /// show amounts in USD.
    pub fn new(name: impl Into<String>, limit: BudgetLimit, eth_usd: f64) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            limit,
            eth_usd,
            spend: Mutex::new(SpendWindow::new(limit.window)),
        })
    }

    /// The budget's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The limit.
    pub fn limit(&self) -> BudgetLimit {
        self.limit
    }

    /// Wei spent (held or accepted) in the window now.
    pub fn spent_wei(&self) -> u128 {
        self.lock().spent(Instant::now())
    }

    /// `Err` when nothing is left in the window (a start is refused then).
    pub fn check(&self) -> Result<(), BudgetExhausted> {
        let spent = self.spent_wei();
        if spent >= self.limit.max_wei {
            return Err(self.exhausted(spent, 0));
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SpendWindow> {
        self.spend.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn exhausted(&self, spent: u128, needed: u128) -> BudgetExhausted {
        BudgetExhausted {
            name: self.name.clone(),
            spent_wei: spent,
            limit_wei: self.limit.max_wei,
            needed_wei: needed,
            window_secs: self.limit.window.as_secs(),
            spent_usd: usd(spent, self.eth_usd),
            limit_usd: usd(self.limit.max_wei, self.eth_usd),
        }
    }
}

fn usd(wei: u128, eth_usd: f64) -> f64 {
    // Lossy by design: for people.
    #[allow(clippy::cast_precision_loss)]
    let w = wei as f64;
    w / 1e18 * eth_usd
}

/// One accepted payment, as the wallet's observer sees it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct PaymentRecord {
    /// `lv2v` (legacy) or `live-runner`.
    pub flow: &'static str,
    /// The orchestrator (or payment URL origin) paid.
    pub orchestrator: String,
    /// The manifest or session ID paid for.
    pub manifest_id: String,
    /// Expected value of the payment, wei.
    pub value_wei: u128,
    /// The value in USD at the configured ETH price.
    pub usd: f64,
    /// The price unit the signer billed (`720p-pixel-seconds`, `seconds`, `fixed`).
    pub unit: &'static str,
    /// The price paid, for people (`25000 wei/pixel ($4.9766/hour at 720p30)`).
    pub price: String,
}

type Observer = Arc<dyn Fn(&PaymentRecord) + Send + Sync>;

/// What a job's payments draw on: any number of budgets, all of which must have room for a
/// payment, and an observer told of every accepted payment. The default wallet has no
/// budget and no observer.
#[derive(Clone, Default)]
pub struct Wallet {
    budgets: Vec<Arc<Budget>>,
    observer: Option<Observer>,
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Wallet")
            .field(
                "budgets",
                &self.budgets.iter().map(|b| b.name()).collect::<Vec<_>>(),
            )
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

impl PartialEq for Wallet {
    fn eq(&self, other: &Self) -> bool {
        self.budgets.len() == other.budgets.len()
            && self
                .budgets
                .iter()
                .zip(&other.budgets)
                .all(|(a, b)| Arc::ptr_eq(a, b))
            && match (&self.observer, &other.observer) {
                (None, None) => true,
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Wallet {
    /// Adds a budget every payment must fit in.
    #[must_use]
    pub fn with_budget(mut self, budget: Arc<Budget>) -> Self {
        self.budgets.push(budget);
        self
    }

    /// Sets the observer of accepted payments (it must not block).
    #[must_use]
    pub fn on_payment(mut self, f: impl Fn(&PaymentRecord) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(f));
        self
    }

    /// `Err` naming the first budget with nothing left.
    pub fn check(&self) -> Result<(), BudgetExhausted> {
        self.budgets.iter().try_for_each(|b| b.check())
    }

    /// Holds `value` in every budget, all or none.
    pub(crate) fn hold(&self, value: u128) -> Result<Hold, BudgetExhausted> {
        let now = Instant::now();
        let mut parts = Vec::with_capacity(self.budgets.len());
        for b in &self.budgets {
            let added = b.lock().try_add(b.limit.max_wei, value, now);
            match added {
                Ok(id) => parts.push((b.clone(), id)),
                Err(spent) => {
                    // Dropping `parts` gives back what was held in the others.
                    drop(Hold { parts });
                    return Err(b.exhausted(spent, value));
                }
            }
        }
        Ok(Hold { parts })
    }

    pub(crate) fn record(&self, r: &PaymentRecord) {
        if let Some(f) = &self.observer {
            f(r);
        }
    }
}

/// Value held in budgets for a payment in flight; dropped without [`Hold::commit`], it is
/// given back.
#[derive(Debug)]
pub(crate) struct Hold {
    parts: Vec<(Arc<Budget>, u64)>,
}

impl Hold {
    /// The payment was accepted: the value stays spent.
    pub(crate) fn commit(mut self) {
        self.parts.clear();
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        for (b, id) in self.parts.drain(..) {
            b.lock().remove(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn budget(max: u128) -> Arc<Budget> {
        Budget::new(
            "key#0",
            BudgetLimit {
                max_wei: max,
                window: HOUR,
            },
            2000.0,
        )
    }

    #[test]
    fn configured_budgets_take_the_smaller_amount() {
        let w = Duration::from_secs(60);
        assert_eq!(BudgetConfig::default().limit(2000.0, w), None);
        let usd = BudgetConfig {
            usd: Some(1.0),
            wei: None,
        };
        assert_eq!(usd.limit(2000.0, w).unwrap().max_wei, 500_000_000_000_000);
        let both = BudgetConfig {
            usd: Some(1.0),
            wei: Some(7),
        };
        assert_eq!(both.limit(2000.0, w).unwrap().max_wei, 7);
        assert_eq!(usd.limit(0.0, w).unwrap().max_wei, 0);
        let neg = BudgetConfig {
            usd: Some(-1.0),
            wei: None,
        };
        assert_eq!(neg.limit(2000.0, w).unwrap().max_wei, 0);
    }

    #[test]
    fn window_drops_old_spend() {
        let t0 = Instant::now();
        let mut w = SpendWindow::new(Duration::from_secs(10));
        assert_eq!(w.try_add(100, 60, t0), Ok(0));
        assert_eq!(w.try_add(100, 50, t0 + Duration::from_secs(5)), Err(60));
        assert_eq!(w.try_add(100, 40, t0 + Duration::from_secs(5)), Ok(1));
        assert_eq!(w.spent(t0 + Duration::from_secs(9)), 100);
        // The first entry leaves the window at 10 s.
        assert_eq!(w.spent(t0 + Duration::from_secs(10)), 40);
        assert_eq!(w.try_add(100, 60, t0 + Duration::from_secs(10)), Ok(2));
        w.remove(2);
        assert_eq!(w.spent(t0 + Duration::from_secs(10)), 40);
        w.remove(99);
        assert_eq!(w.spent(t0 + Duration::from_secs(15)), 0);
    }

    #[test]
    fn holds_are_all_or_nothing_and_given_back_unless_committed() {
        let small = budget(100);
        let big = Budget::new(
            "service",
            BudgetLimit {
                max_wei: 1000,
                window: HOUR,
            },
            2000.0,
        );
        let w = Wallet::default()
            .with_budget(big.clone())
            .with_budget(small.clone());
        let h = w.hold(70).unwrap();
        assert_eq!((big.spent_wei(), small.spent_wei()), (70, 70));
        let err = w.hold(40).unwrap_err();
        assert_eq!(err.name, "key#0");
        assert_eq!(
            (err.spent_wei, err.limit_wei, err.needed_wei),
            (70, 100, 40)
        );
        // The refused hold left nothing behind in the budget that had room.
        assert_eq!(big.spent_wei(), 70);
        drop(h);
        assert_eq!((big.spent_wei(), small.spent_wei()), (0, 0));
        w.hold(100).unwrap().commit();
        assert_eq!(small.spent_wei(), 100);
        assert!(w.check().is_err());
        assert!(Wallet::default().check().is_ok());
    }

    #[test]
    fn exhaustion_names_the_figures() {
        let b = budget(2_000_000_000_000_000);
        Wallet::default()
            .with_budget(b.clone())
            .hold(2_000_000_000_000_000)
            .unwrap()
            .commit();
        let text = b.check().unwrap_err().to_string();
        assert!(text.contains("budget key#0 exhausted"), "{text}");
        assert!(text.contains("($4.0000) of 2000000000000000 wei"), "{text}");
        assert!(text.contains("last 3600 s"), "{text}");
    }

    #[test]
    fn concurrent_holds_never_overspend() {
        let b = budget(1000);
        let w = Wallet::default().with_budget(b.clone());
        let held: Vec<_> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..16).map(|_| s.spawn(|| w.hold(100).ok())).collect();
            hs.into_iter().filter_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(held.len(), 10);
        assert_eq!(b.spent_wei(), 1000);
    }
}
