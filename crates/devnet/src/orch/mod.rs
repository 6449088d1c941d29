//! The orchestrator emulator: gRPC `GetOrchestrator`, `POST /live-video-to-video`,
//! `POST /payment`, `POST /refresh-payment` and the trickle server, on one router.

mod caps;
mod grpc;
pub(crate) mod live;
mod lv2v;
mod payment;
mod segcreds;
mod session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::routing::post;
use lpgw_proto::{AuthToken, Capabilities, OrchestratorInfo, PriceInfo};
use lpgw_trickle::server::TrickleServer;
use rand::RngCore as _;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::AuthKey;
use crate::config::{DevnetConfig, FaultControl, PriceConfig};
use crate::keys::{Address, Keys};
use crate::ledger::{LV2V_PIXELS_PER_SEC, Ledger};
use crate::tickets::TicketBook;

/// Unix seconds now.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// 8 lowercase hex chars from 4 random bytes (core/streamdata.go `RandomManifestID`).
pub(crate) fn random_manifest_id() -> String {
    let mut b = [0u8; 4];
    rand::rng().fill_bytes(&mut b);
    crate::keys::hex(&b)
}

/// LV2V sessions in use per model (pure bookkeeping).
#[derive(Debug, Default)]
pub(crate) struct Capacity {
    in_use: HashMap<String, u32>,
}

impl Capacity {
    pub(crate) fn in_use(&self, model: &str) -> u32 {
        self.in_use.get(model).copied().unwrap_or(0)
    }

    /// Takes one slot if fewer than `total` are in use.
    pub(crate) fn try_reserve(&mut self, model: &str, total: u32) -> bool {
        let used = self.in_use.entry(model.to_string()).or_default();
        if *used >= total {
            return false;
        }
        *used += 1;
        true
    }

    pub(crate) fn release(&mut self, model: &str) {
        if let Some(u) = self.in_use.get_mut(model) {
            *u = u.saturating_sub(1);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every guarded value is plain bookkeeping updated in single steps; keep serving after
    // a panic elsewhere.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Shared state of the orchestrator.
#[derive(Debug)]
pub(crate) struct Orch {
    /// Public base URL (`transcoder` in OrchestratorInfo).
    pub(crate) service_uri: String,
    /// Base of the trickle URLs the built-in runner uses (plain loopback HTTP).
    pub(crate) runner_trickle_base: String,
    pub(crate) keys: Keys,
    pub(crate) address: Address,
    pub(crate) auth: AuthKey,
    /// Whether payments are processed (a price was configured at start).
    pub(crate) onchain: bool,
    pub(crate) models: Vec<String>,
    pub(crate) capacity_per_model: u32,
    pub(crate) auth_ttl: Duration,
    pub(crate) payment_interval: Duration,
    pub(crate) status_interval: Duration,
    pub(crate) tickets: Mutex<TicketBook>,
    pub(crate) ledger: Mutex<Ledger>,
    /// Every accepted payment, for `GET /devnet/ledger`.
    pub(crate) receipts: Mutex<crate::receipts::Receipts>,
    pub(crate) capacity: Mutex<Capacity>,
    pub(crate) sessions: Mutex<HashMap<String, CancellationToken>>,
    pub(crate) trickle: TrickleServer,
    pub(crate) faults: FaultControl,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tracker: TaskTracker,
}

impl Orch {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        cfg: &DevnetConfig,
        keys: Keys,
        service_uri: String,
        runner_trickle_base: String,
        trickle: TrickleServer,
        faults: FaultControl,
        shutdown: CancellationToken,
        tracker: TaskTracker,
    ) -> Self {
        let address = keys.address("orchestrator");
        let ev = cfg.ticket_ev.unwrap_or_else(|| {
            cfg.price.map_or(1, |p| {
                crate::ledger::Price {
                    per_unit: p.per_unit,
                    pixels: p.pixels_per_unit,
                }
                .fee(10 * LV2V_PIXELS_PER_SEC)
                .max(1)
            })
        });
        let ttl = i64::try_from(cfg.ticket_params_ttl.as_secs()).unwrap_or(600);
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        Self {
            service_uri,
            runner_trickle_base,
            auth: AuthKey::new(secret),
            tickets: Mutex::new(TicketBook::new(keys.clone(), address, ev, ttl)),
            keys,
            address,
            onchain: cfg.price.is_some(),
            models: cfg.models.clone(),
            capacity_per_model: cfg.capacity,
            auth_ttl: cfg.auth_token_ttl,
            payment_interval: cfg.payment_interval,
            status_interval: cfg.status_interval,
            ledger: Mutex::new(Ledger::default()),
            receipts: Mutex::default(),
            capacity: Mutex::new(Capacity::default()),
            sessions: Mutex::new(HashMap::new()),
            trickle,
            faults,
            shutdown,
            tracker,
        }
    }

    pub(crate) fn ledger(&self) -> MutexGuard<'_, Ledger> {
        lock(&self.ledger)
    }

    pub(crate) fn receipts(&self) -> MutexGuard<'_, crate::receipts::Receipts> {
        lock(&self.receipts)
    }

    pub(crate) fn tickets(&self) -> MutexGuard<'_, TicketBook> {
        lock(&self.tickets)
    }

    pub(crate) fn capacity(&self) -> MutexGuard<'_, Capacity> {
        lock(&self.capacity)
    }

    pub(crate) fn sessions(&self) -> MutexGuard<'_, HashMap<String, CancellationToken>> {
        lock(&self.sessions)
    }

    /// Sessions per model currently allowed (the configured capacity or its override).
    pub(crate) fn model_capacity(&self) -> u32 {
        self.faults
            .capacity_override()
            .unwrap_or(self.capacity_per_model)
    }

    pub(crate) fn serves(&self, model: &str) -> bool {
        self.models.iter().any(|m| m == model)
    }

    /// Idle LV2V slots of `model`.
    pub(crate) fn idle(&self, model: &str) -> u32 {
        if !self.serves(model) {
            return 0;
        }
        self.model_capacity()
            .saturating_sub(self.capacity().in_use(model))
    }

    /// The full capabilities with the current per-model capacity.
    pub(crate) fn capabilities(&self) -> Capabilities {
        let total = self.model_capacity();
        let cap = self.capacity();
        let models: Vec<(String, u32, u32)> = self
            .models
            .iter()
            .map(|m| {
                let used = cap.in_use(m);
                (m.clone(), total.saturating_sub(used), used)
            })
            .collect();
        caps::advertised(&models)
    }

    /// The current price of one model (devnet prices every model alike).
    pub(crate) fn price(&self, model: Option<&str>) -> Option<PriceInfo> {
        self.faults.price().map(|p: PriceConfig| PriceInfo {
            price_per_unit: p.per_unit,
            pixels_per_unit: p.pixels_per_unit,
            capability: if model.is_some() {
                lpgw_proto::caps::LIVE_VIDEO_TO_VIDEO
            } else {
                0
            },
            constraint: model.unwrap_or_default().to_string(),
        })
    }

    /// A fresh auth token for `session_id`.
    pub(crate) fn auth_token(&self, session_id: String, now: i64) -> AuthToken {
        let ttl = i64::try_from(self.auth_ttl.as_secs()).unwrap_or(1800);
        self.auth.mint(session_id, now + ttl)
    }

    /// OrchestratorInfo without capabilities: transcoder, ticket params and price when priced,
    /// address and a fresh auth token for `session_id`.
    pub(crate) fn base_info(
        &self,
        price: Option<PriceInfo>,
        session_id: String,
        now: i64,
    ) -> OrchestratorInfo {
        let ticket_params = (self.onchain).then(|| {
            let mut seed = [0u8; 32];
            rand::rng().fill_bytes(&mut seed);
            self.tickets().params(now, seed)
        });
        OrchestratorInfo {
            transcoder: self.service_uri.clone(),
            ticket_params,
            price_info: if self.onchain { price } else { None },
            address: self.address.to_vec(),
            auth_token: Some(self.auth_token(session_id, now)),
            ..Default::default()
        }
    }

    /// Sessions currently running.
    pub(crate) fn session_count(&self) -> usize {
        self.sessions().len()
    }
}

/// The orchestrator's router: HTTP endpoints, gRPC and trickle. `/refresh-payment` is
/// served by the live-runner router, which knows the live sessions' ticket parameters.
pub(crate) fn router(orch: Arc<Orch>) -> Router {
    let http = Router::new()
        .route("/live-video-to-video", post(lv2v::start))
        .route("/payment", post(payment::payment))
        .route("/devnet/ledger", axum::routing::get(payment::ledger))
        .with_state(orch.clone());
    Router::new()
        .merge(grpc::router(orch.clone()))
        .merge(http)
        .nest("/ai/trickle", orch.trickle.router())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_reserve_and_release() {
        let mut c = Capacity::default();
        assert!(c.try_reserve("m", 2));
        assert!(c.try_reserve("m", 2));
        assert!(!c.try_reserve("m", 2));
        assert_eq!(c.in_use("m"), 2);
        c.release("m");
        assert!(c.try_reserve("m", 2));
        c.release("x");
        assert_eq!(c.in_use("x"), 0);
    }

    #[test]
    fn manifest_ids_are_8_lowercase_hex() {
        let id = random_manifest_id();
        assert_eq!(id.len(), 8);
        assert!(
            id.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
