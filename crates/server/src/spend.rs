//! What the service and each key spend: the budgets a job's payments draw on, the figures in
//! status answers and metrics, and one log line per payment naming job, key, amount, unit
//! and USD value.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use lpgw_gateway::{Budget, BudgetExhausted, PaymentRecord, Wallet};
use serde_json::{Value, json};
use tracing::info;

use crate::auth::Owner;
use crate::config::ServerConfig;

/// Spend of one job, updated by its wallet's observer.
#[derive(Debug, Default)]
pub(crate) struct JobSpend {
    inner: Mutex<(u64, u128)>,
}

impl JobSpend {
    /// Payments accepted and their value in wei.
    pub(crate) fn get(&self) -> (u64, u128) {
        *self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn add(&self, wei: u128) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0 = g.0.saturating_add(1);
        g.1 = g.1.saturating_add(wei);
    }
}

/// The service's budgets and spend totals.
pub(crate) struct Spending {
    eth_usd: f64,
    service: Option<Arc<Budget>>,
    /// One budget per owner, made on first use when a key budget is configured.
    keys: Mutex<HashMap<Owner, Arc<Budget>>>,
    key_limit: Option<lpgw_gateway::BudgetLimit>,
    /// Payments and wei per owner since start-up (the budgets only keep their window).
    totals: Mutex<HashMap<Owner, (u64, u128)>>,
}

impl Spending {
    pub(crate) fn new(config: &ServerConfig) -> Self {
        let eth = config.ceiling.eth_usd;
        let window = config.budget_window();
        Self {
            eth_usd: eth,
            service: config
                .service_budget
                .limit(eth, window)
                .map(|l| Budget::new("service", l, eth)),
            keys: Mutex::default(),
            key_limit: config.key_budget.limit(eth, window),
            totals: Mutex::default(),
        }
    }

    fn key_budget(&self, owner: Owner) -> Option<Arc<Budget>> {
        let limit = self.key_limit?;
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        Some(
            keys.entry(owner)
                .or_insert_with(|| Budget::new(owner.label(), limit, self.eth_usd))
                .clone(),
        )
    }

    /// `Err` with the figures when `owner` (or the service) has nothing left to spend.
    pub(crate) fn check(&self, owner: Owner) -> Result<(), BudgetExhausted> {
        self.service.iter().try_for_each(|b| b.check())?;
        self.key_budget(owner).iter().try_for_each(|b| b.check())
    }

    /// The wallet for a new job of `owner`: the service and key budgets, and an observer
    /// that counts each payment for the job and the key and logs it.
    pub(crate) fn wallet(
        self: &Arc<Self>,
        owner: Owner,
        job_id: &str,
        job: Arc<JobSpend>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Wallet {
        let mut w = Wallet::default();
        if let Some(b) = &self.service {
            w = w.with_budget(b.clone());
        }
        if let Some(b) = self.key_budget(owner) {
            w = w.with_budget(b);
        }
        let this = self.clone();
        let job_id = job_id.to_owned();
        w.on_payment(move |r: &PaymentRecord| {
            job.add(r.value_wei);
            {
                let mut t = this.totals.lock().unwrap_or_else(|p| p.into_inner());
                let e = t.entry(owner).or_default();
                e.0 = e.0.saturating_add(1);
                e.1 = e.1.saturating_add(r.value_wei);
            }
            metrics.key_paid(owner.label(), r.value_wei);
            info!(
                job_id = %job_id,
                key = %owner.label(),
                flow = r.flow,
                orchestrator = %r.orchestrator,
                value_wei = %r.value_wei,
                usd = format!("{:.6}", r.usd),
                unit = r.unit,
                price = %r.price,
                "job paid"
            );
        })
    }

    /// USD at the configured ETH price.
    pub(crate) fn usd(&self, wei: u128) -> f64 {
        // Lossy by design: for people.
        #[allow(clippy::cast_precision_loss)]
        let w = wei as f64;
        w / 1e18 * self.eth_usd
    }

    /// The spend of `owner` for status answers: totals since start-up and, where budgets
    /// are configured, what the window holds against each.
    pub(crate) fn owner_json(&self, owner: Owner) -> Value {
        let (payments, wei) = self
            .totals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&owner)
            .copied()
            .unwrap_or_default();
        let mut v = json!({
            "key": owner.label(),
            "payments": payments,
            "spent_wei": wei.to_string(),
            "spent_usd": self.usd(wei),
        });
        let budget = |b: &Budget| {
            let spent = b.spent_wei();
            let limit = b.limit();
            json!({
                "window_secs": limit.window.as_secs(),
                "spent_wei": spent.to_string(),
                "limit_wei": limit.max_wei.to_string(),
                "spent_usd": self.usd(spent),
                "limit_usd": self.usd(limit.max_wei),
            })
        };
        if let Some(b) = self.key_budget(owner) {
            v["budget"] = budget(&b);
        }
        if let Some(b) = &self.service {
            v["service_budget"] = budget(b);
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lpgw_gateway::BudgetConfig;

    fn config(key_wei: Option<u128>, service_wei: Option<u128>) -> ServerConfig {
        ServerConfig {
            key_budget: BudgetConfig {
                usd: None,
                wei: key_wei,
            },
            service_budget: BudgetConfig {
                usd: None,
                wei: service_wei,
            },
            ..ServerConfig::default()
        }
    }

    #[test]
    fn no_budgets_means_no_limit() {
        let s = Spending::new(&config(None, None));
        assert!(s.check(Owner::Key(0)).is_ok());
        let v = s.owner_json(Owner::Key(0));
        assert!(v.get("budget").is_none() && v.get("service_budget").is_none());
    }

    #[test]
    fn each_key_has_its_own_budget_and_the_service_one_is_shared() {
        let s = Arc::new(Spending::new(&config(Some(100), Some(150))));
        let m = Arc::new(crate::metrics::Metrics::default());
        let job = Arc::new(JobSpend::default());
        let w0 = s.wallet(Owner::Key(0), "j0", job.clone(), m.clone());
        assert!(w0.check().is_ok());
        let w1 = s.wallet(Owner::Key(1), "j1", Arc::default(), m);
        assert_eq!(s.owner_json(Owner::Key(0))["budget"]["limit_wei"], "100");
        assert_eq!(
            s.owner_json(Owner::Key(1))["service_budget"]["limit_wei"],
            "150"
        );
        assert!(w1.check().is_ok());
        assert_eq!(job.get(), (0, 0));
    }
}
