//! Devnet settings and fault knobs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};

/// A price in wei: `per_unit` for every `pixels_per_unit` units (pixels for LV2V).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceConfig {
    /// Wei per `pixels_per_unit` units.
    pub per_unit: i64,
    /// Units the price covers. Must be positive.
    pub pixels_per_unit: i64,
}

impl std::str::FromStr for PriceConfig {
    type Err = crate::DevnetError;

    /// Parses `WEI` (per pixel) or `WEI/PIXELS`, e.g. `1300/1000000`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || crate::DevnetError::Config(format!("invalid price {s:?}: want WEI or WEI/UNITS"));
        let (a, b) = s.trim().split_once('/').unwrap_or((s.trim(), "1"));
        let per_unit: i64 = a.trim().parse().map_err(|_| bad())?;
        let pixels_per_unit: i64 = b.trim().parse().map_err(|_| bad())?;
        if per_unit < 0 || pixels_per_unit <= 0 {
            return Err(bad());
        }
        Ok(Self {
            per_unit,
            pixels_per_unit,
        })
    }
}

impl std::fmt::Display for PriceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.per_unit, self.pixels_per_unit)
    }
}

/// How to run a devnet.
#[derive(Debug, Clone)]
pub struct DevnetConfig {
    /// Orchestrator address (HTTP, HTTP/2 and gRPC on one port). Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// Serve TLS with a self-signed certificate made at start (go-livepeer's default);
    /// `false` serves plain HTTP with h2c. Default `true`.
    pub tls: bool,
    /// Host name put in the service URI and certificate; default: the listen IP.
    pub public_host: Option<String>,
    /// LV2V models served by the built-in runner. Default `["noop", "streamdiffusion"]`.
    pub models: Vec<String>,
    /// Concurrent LV2V sessions per model. Default 4.
    pub capacity: u32,
    /// LV2V price; `None` runs offchain (no tickets, no price, no metering). Default `None`.
    pub price: Option<PriceConfig>,
    /// Expected value of one ticket in wei; default: the price of 10 s of 720p30 (min 1).
    pub ticket_ev: Option<u128>,
    /// Start the remote-signer emulator. Default `false`.
    pub signer: bool,
    /// Signer address (plain HTTP). Default `127.0.0.1:0`.
    pub signer_listen: SocketAddr,
    /// Extra orchestrator URLs the signer lists in `/discover-orchestrators`. Default none.
    pub discovery_extra: Vec<String>,
    /// Auth token lifetime. Default 30 minutes (core/orchestrator.go).
    pub auth_token_ttl: Duration,
    /// Ticket params lifetime. Default 10 minutes.
    pub ticket_params_ttl: Duration,
    /// LV2V meter interval (`-livePaymentInterval`). Default 5 s.
    pub payment_interval: Duration,
    /// How often the built-in runner publishes a status event. Default 10 s (ai-runner).
    pub status_interval: Duration,
    /// Idle timeout of trickle channels. Default 5 minutes.
    pub trickle_idle_timeout: Duration,
    /// Fault knobs. Default: none.
    pub faults: Faults,
    /// Seed of the fault dice. Default 42.
    pub seed: u64,
    /// Live runners, discovery and Scope (spec §1, §2.4). Default: enabled with the
    /// built-in Scope runners.
    pub live: crate::LiveConfig,
}

impl Default for DevnetConfig {
    fn default() -> Self {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            listen: loopback,
            tls: true,
            public_host: None,
            models: vec!["noop".into(), "streamdiffusion".into()],
            capacity: 4,
            price: None,
            ticket_ev: None,
            signer: false,
            signer_listen: loopback,
            discovery_extra: Vec::new(),
            auth_token_ttl: Duration::from_secs(30 * 60),
            ticket_params_ttl: Duration::from_secs(10 * 60),
            payment_interval: Duration::from_secs(5),
            status_interval: Duration::from_secs(10),
            trickle_idle_timeout: Duration::from_secs(300),
            faults: Faults::default(),
            seed: 42,
            live: crate::LiveConfig::default(),
        }
    }
}

/// Fault knobs, changeable at run time through [`FaultControl`].
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Delay before answering GetOrchestrator and `/live-video-to-video`. Default 0.
    pub latency: Duration,
    /// Probability that `/live-video-to-video` is refused with `503 insufficient capacity`
    /// whatever the real capacity. Default 0.
    pub refuse_rate: f64,
    /// Answer GetOrchestrator with an undecodable protobuf body. Default `false`.
    pub garbage_grpc: bool,
    /// Statuses the signer answers to the next `/generate-live-payment` calls, in order,
    /// instead of processing them (480, 481, 482, 500, ...). Default empty.
    pub signer_script: Vec<u16>,
    /// Probability that a signer payment call fails with `signer_fail_status`. Default 0.
    pub signer_fail_rate: f64,
    /// Status of random signer failures. Default 500.
    pub signer_fail_status: Option<u16>,
    /// The built-in Scope live runner fails every app call after a paid reservation with
    /// `409 runner already has an active session` (a runner stuck with a stale session).
    /// Default `false`.
    pub live_stale_session: bool,
    /// How long built-in Scope pipeline loads take, overriding
    /// [`crate::ScopeRunnerConfig::load_delay`] for loads requested from now on.
    /// Default `None`.
    pub scope_load_delay: Option<Duration>,
    /// Built-in Scope pipeline loads fail (after their delay) as a real load failure does:
    /// `GET /api/v1/pipeline/status` says `error` once, then `not_loaded`, and the failure is
    /// only in `logs` (`Failed to load pipeline <key>: ...`). Default `false`.
    pub scope_load_fail: bool,
    /// Built-in Scope runners send no `runner_ready` at job start (nor after a restart).
    /// Default `false`.
    pub scope_no_runner_ready: bool,
    /// How long a built-in Scope runner takes to come back after `POST /api/v1/restart` is
    /// answered (the real one re-executes itself and imports its stack again: seconds).
    /// Default `None`: half a second.
    pub scope_restart_delay: Option<Duration>,
    /// How long a built-in Scope runner takes to answer `stop_stream` with
    /// `stream_stopped`. The real one gives each of its media tasks a second to end before
    /// cancelling it, so its answer comes a little over 2 s after the request. Default
    /// `None`: at once.
    pub scope_stop_delay: Option<Duration>,
    /// A restarting built-in Scope runner first stops its stream cleanly, as the real inner
    /// runner does when its websocket to the wrapper drops: its output publishers close and
    /// its media channels are removed before it comes back. Default `false`: it dies as a
    /// re-executed process does, leaving its channels idle.
    pub scope_restart_closes_channels: bool,
    /// An uncorrelated `{"type":"error","request_id":null,"error":<this>}` the built-in Scope
    /// runners emit as soon as a `start_stream` arrives, before its answer. Default `None`.
    pub scope_uncorrelated_error: Option<String>,
    /// Live-runner session payments are answered in JSON (`{payment_params, orchestrator,
    /// manifest_id, payment_url}`, go-livepeer PR #4029) instead of a binary
    /// `PaymentResult`. Default `false`.
    pub session_payment_json: bool,
    /// Live-runner session payments are answered with this status instead of being
    /// processed (409: a fixed-price session). Default `None`.
    pub session_payment_status: Option<u16>,
    /// 402 challenges carry no `payment_url` (orchestrators before PR #4008, such as
    /// v0.9.0). Default `false`.
    pub challenge_without_payment_url: bool,
    /// 402 challenges carry `payment_interval_ms` (PR #4001's field). Default `None`.
    pub challenge_payment_interval_ms: Option<u64>,
    /// The signer's `/discover-orchestrators` lists orchestrators without their runners (as
    /// after a refresh failure, go-livepeer #4087). Default `false`.
    pub signer_discovery_without_runners: bool,
}

#[derive(Debug)]
struct FaultState {
    faults: Faults,
    price: Option<PriceConfig>,
    capacity: Option<u32>,
    rng: StdRng,
}

/// Live handle on a running devnet's faults, price and capacity. Cheap to clone.
#[derive(Debug, Clone)]
pub struct FaultControl {
    inner: Arc<Mutex<FaultState>>,
}

impl FaultControl {
    pub(crate) fn new(faults: Faults, price: Option<PriceConfig>, seed: u64) -> Self {
        Self {
            inner: Arc::new(Mutex::new(FaultState {
                faults,
                price,
                capacity: None,
                rng: StdRng::seed_from_u64(seed),
            })),
        }
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        // Plain data updated in single statements: a poisoned lock is still consistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces every fault knob.
    pub fn set(&self, faults: Faults) {
        self.lock().faults = faults;
    }

    /// Current fault knobs.
    pub fn get(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Turns the stale-session fault of the built-in Scope runner on or off.
    pub fn set_live_stale_session(&self, on: bool) {
        self.lock().faults.live_stale_session = on;
    }

    /// Answers live-runner session payments in JSON (see [`Faults::session_payment_json`]).
    pub fn set_session_payment_json(&self, on: bool) {
        self.lock().faults.session_payment_json = on;
    }

    /// Answers live-runner session payments with `status` instead of processing them.
    pub fn set_session_payment_status(&self, status: Option<u16>) {
        self.lock().faults.session_payment_status = status;
    }

    /// Leaves `payment_url` out of 402 challenges.
    pub fn set_challenge_without_payment_url(&self, on: bool) {
        self.lock().faults.challenge_without_payment_url = on;
    }

    /// Puts `payment_interval_ms` into 402 challenges.
    pub fn set_challenge_payment_interval_ms(&self, ms: Option<u64>) {
        self.lock().faults.challenge_payment_interval_ms = ms;
    }

    /// Lists orchestrators without their runners in the signer's discovery.
    pub fn set_signer_discovery_without_runners(&self, on: bool) {
        self.lock().faults.signer_discovery_without_runners = on;
    }

    /// Overrides how long built-in Scope pipeline loads take (`None`: the configured delay).
    pub fn set_scope_load_delay(&self, delay: Option<Duration>) {
        self.lock().faults.scope_load_delay = delay;
    }

    /// Makes built-in Scope pipeline loads fail (see [`Faults::scope_load_fail`]) or not.
    pub fn set_scope_load_fail(&self, on: bool) {
        self.lock().faults.scope_load_fail = on;
    }

    /// Suppresses (or restores) `runner_ready` of built-in Scope jobs.
    pub fn set_scope_no_runner_ready(&self, on: bool) {
        self.lock().faults.scope_no_runner_ready = on;
    }

    /// Sets how long built-in Scope runners take to come back from a restart (`None`: the
    /// default half second).
    pub fn set_scope_restart_delay(&self, delay: Option<Duration>) {
        self.lock().faults.scope_restart_delay = delay;
    }

    /// Sets how long built-in Scope runners take to answer `stop_stream` (see
    /// [`Faults::scope_stop_delay`]).
    pub fn set_scope_stop_delay(&self, delay: Option<Duration>) {
        self.lock().faults.scope_stop_delay = delay;
    }

    /// Makes restarting built-in Scope runners close their media channels first (see
    /// [`Faults::scope_restart_closes_channels`]) or not.
    pub fn set_scope_restart_closes_channels(&self, on: bool) {
        self.lock().faults.scope_restart_closes_channels = on;
    }

    /// Sets the uncorrelated error emitted ahead of every `start_stream` answer (`None`
    /// turns it off; see [`Faults::scope_uncorrelated_error`]).
    pub fn set_scope_uncorrelated_error(&self, error: Option<String>) {
        self.lock().faults.scope_uncorrelated_error = error;
    }

    /// Sets the added latency.
    pub fn set_latency(&self, latency: Duration) {
        self.lock().faults.latency = latency;
    }

    /// Queues signer answers (see [`Faults::signer_script`]).
    pub fn push_signer_answers(&self, statuses: &[u16]) {
        self.lock().faults.signer_script.extend_from_slice(statuses);
    }

    /// Changes the LV2V price for new GetOrchestrator answers (pinned prices stay).
    pub fn set_price(&self, price: Option<PriceConfig>) {
        self.lock().price = price;
    }

    /// Overrides the per-model capacity (`None` restores the configured one).
    pub fn set_capacity(&self, capacity: Option<u32>) {
        self.lock().capacity = capacity;
    }

    pub(crate) fn price(&self) -> Option<PriceConfig> {
        self.lock().price
    }

    pub(crate) fn capacity_override(&self) -> Option<u32> {
        self.lock().capacity
    }

    pub(crate) fn latency(&self) -> Duration {
        self.lock().faults.latency
    }

    pub(crate) fn garbage_grpc(&self) -> bool {
        self.lock().faults.garbage_grpc
    }

    /// Rolls the refusal dice.
    pub(crate) fn refuse(&self) -> bool {
        let mut s = self.lock();
        let rate = s.faults.refuse_rate;
        rate > 0.0 && s.rng.random::<f64>() < rate
    }

    /// The forced signer answer for this call, if any.
    pub(crate) fn signer_fault(&self) -> Option<u16> {
        let mut s = self.lock();
        if !s.faults.signer_script.is_empty() {
            return Some(s.faults.signer_script.remove(0));
        }
        let rate = s.faults.signer_fail_rate;
        (rate > 0.0 && s.rng.random::<f64>() < rate)
            .then(|| s.faults.signer_fail_status.unwrap_or(500))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_parsing() {
        let p: PriceConfig = "1300".parse().unwrap();
        assert_eq!((p.per_unit, p.pixels_per_unit), (1300, 1));
        let p: PriceConfig = " 7 / 3 ".parse().unwrap();
        assert_eq!((p.per_unit, p.pixels_per_unit), (7, 3));
        assert_eq!(p.to_string(), "7/3");
        for bad in ["", "x", "1/0", "-1", "1/2/3"] {
            assert!(bad.parse::<PriceConfig>().is_err(), "{bad}");
        }
    }

    #[test]
    fn script_runs_in_order_then_dice_are_seeded() {
        let f = FaultControl::new(
            Faults {
                signer_script: vec![480, 482],
                ..Default::default()
            },
            None,
            1,
        );
        assert_eq!(f.signer_fault(), Some(480));
        assert_eq!(f.signer_fault(), Some(482));
        assert_eq!(f.signer_fault(), None);

        let roll = |seed| {
            let f = FaultControl::new(
                Faults {
                    refuse_rate: 0.5,
                    ..Default::default()
                },
                None,
                seed,
            );
            (0..64).map(|_| f.refuse()).collect::<Vec<_>>()
        };
        assert_eq!(roll(7), roll(7));
        assert!(roll(7).contains(&true) && roll(7).contains(&false));
    }
}
