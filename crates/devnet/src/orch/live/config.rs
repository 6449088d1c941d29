//! Settings of the live-runner registry and the built-in Scope runners.

use std::path::PathBuf;
use std::time::Duration;

/// A runner price in USD as runners register it (`price_info` of a heartbeat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsdPriceConfig {
    /// Decimal USD amount, e.g. `"10"` or `"0.001"`.
    pub price: String,
    /// `hour`, `720p` or `fixed`.
    pub unit: String,
}

impl UsdPriceConfig {
    /// `price` USD per `unit`.
    pub fn new(price: impl Into<String>, unit: impl Into<String>) -> Self {
        Self {
            price: price.into(),
            unit: unit.into(),
        }
    }
}

/// The built-in Scope runners: persistent `live-video-to-video/scope` live runners and the
/// serverless `POST /scope` entry. Both speak the real Scope live runner's protocol: a
/// pipeline must be loaded (`api` `POST /api/v1/pipeline/load`) before `start_stream`.
#[derive(Debug, Clone)]
pub struct ScopeRunnerConfig {
    /// Register the persistent live runners. Default `true`.
    pub persistent: bool,
    /// Persistent runners registered (each its own process with its own pipelines), so that
    /// several streams run at once. Default 4.
    pub runners: u32,
    /// Serve `POST /scope` and list it in discovery. Default `true`.
    pub serverless: bool,
    /// Sessions each persistent runner takes at once. Default 1, as the real runner (the
    /// orchestrator answers 503 `no capacity available for runner` beyond it).
    pub capacity: u32,
    /// Its price (used only when the devnet is priced). Default 2 USD per hour, a realistic
    /// GPU rent and below a gateway's default ceiling (5 USD per hour).
    pub price: UsdPriceConfig,
    /// Concurrent serverless jobs. Default 2.
    pub serverless_capacity: u32,
    /// Label the first persistent runner routes by (`/apps/{label}/...`; the others by
    /// `{label}-2`, `{label}-3`, ...); `None` routes by generated runner IDs.
    /// Default `Some("scope")`.
    pub label: Option<String>,
    /// How long a pipeline load takes (status `loading` meanwhile). Default 300 ms;
    /// [`crate::Faults::scope_load_delay`] overrides it at run time.
    pub load_delay: Duration,
    /// Lifetime of one events segment: events are JSON lines streamed into a segment that
    /// closes this long after it opened, as the real runner's writer does (default 10 s).
    /// `Duration::ZERO` writes one event per segment instead, for readers that take one
    /// document per segment (go-livepeer's LV2V framing).
    pub events_rotate: Duration,
}

impl Default for ScopeRunnerConfig {
    fn default() -> Self {
        Self {
            persistent: true,
            runners: 4,
            serverless: true,
            capacity: 1,
            price: UsdPriceConfig::new("2", "hour"),
            serverless_capacity: 2,
            label: Some("scope".into()),
            load_delay: Duration::from_millis(300),
            events_rotate: Duration::from_secs(10),
        }
    }
}

/// An operator-configured runner (one entry of go-livepeer's `-liveRunnerConfig`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct StaticRunnerConfig {
    /// Unique label; the route when `routing` is `label`.
    pub label: String,
    /// `runner-id` (default) or `label`.
    #[serde(default)]
    pub routing: String,
    /// Serve the runner through a generated proxy URL.
    #[serde(default)]
    pub proxy: bool,
    /// The runner's base URL (never exposed).
    pub runner_url: String,
    /// Optional version string.
    #[serde(default)]
    pub version: String,
    /// Optional metadata (at most 1024 bytes).
    #[serde(default)]
    pub metadata: String,
    /// `persistent` (default) or `single-shot`.
    #[serde(default)]
    pub mode: String,
    /// The app, e.g. `live-video-to-video/scope`.
    pub app: String,
    /// Sessions at once; 0 means 1.
    #[serde(default)]
    pub capacity: u32,
    /// Price in USD; `{"price":..,"currency":"usd","unit":"hour|720p|fixed"}`.
    #[serde(default)]
    pub price_info: Option<serde_json::Value>,
    /// Health URL, absolute or `/path` against `runner_url`.
    pub health_url: String,
    /// Status that means healthy. Default 200.
    #[serde(default)]
    pub healthy_status_code: u16,
}

/// The live-runner side of a devnet (`-useLiveRunners`).
#[derive(Debug, Clone)]
pub struct LiveConfig {
    /// Serve the live-runner endpoints at all; without them every one answers
    /// `404 live runners are not supported`. Default `true`.
    pub enabled: bool,
    /// The bootstrap secret of dynamic registration (`-orchSecret`); `None` disables it.
    /// Default `Some("devnet-orch-secret")`.
    pub orch_secret: Option<String>,
    /// USD per ETH used to convert runner prices. Default 2000.
    pub eth_usd: f64,
    /// Heartbeat interval told to runners (also the expiry sweep period). Default 5 s.
    pub heartbeat_interval: Duration,
    /// A runner without a heartbeat for this long is gone. Default 20 s.
    pub heartbeat_ttl: Duration,
    /// Keepalive period of the o2r channel. Default 10 s.
    pub o2r_keepalive: Duration,
    /// Health-check period of static runners. Default 5 s.
    pub health_interval: Duration,
    /// Health-check timeout. Default 3 s.
    pub health_timeout: Duration,
    /// Static runners.
    pub static_runners: Vec<StaticRunnerConfig>,
    /// A JSON file `{"runners":[...]}` of more static runners, read at start.
    pub static_config: Option<PathBuf>,
    /// The built-in Scope runners; `None` registers none. Default: both.
    pub scope: Option<ScopeRunnerConfig>,
    /// An orchestrator that runs only live runners: no AI-worker LV2V capacity, so
    /// `/live-video-to-video` answers `503 insufficient capacity`. Default `false`.
    pub live_only: bool,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            orch_secret: Some("devnet-orch-secret".into()),
            eth_usd: 2000.0,
            heartbeat_interval: Duration::from_secs(5),
            heartbeat_ttl: Duration::from_secs(20),
            o2r_keepalive: Duration::from_secs(10),
            health_interval: Duration::from_secs(5),
            health_timeout: Duration::from_secs(3),
            static_runners: Vec::new(),
            static_config: None,
            scope: Some(ScopeRunnerConfig::default()),
            live_only: false,
        }
    }
}
