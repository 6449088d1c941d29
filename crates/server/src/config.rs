//! Service configuration: built by the CLI from flags, environment and an optional TOML file.

use std::path::Path;
use std::time::Duration;

use lpgw_gateway::{BudgetConfig, Ceiling};
use serde::Deserialize;

use crate::error::ConfigError;

/// Everything the service needs besides the gateway settings.
///
/// Every field has a default, so a TOML file may set only some of them; durations are given
/// in seconds (`*_secs`).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// API keys accepted; empty runs the service open (logged loudly at start-up).
    pub api_keys: Vec<String>,
    /// Concurrent jobs one key may hold. Default 10.
    pub max_jobs_per_key: usize,
    /// Concurrent jobs in total. Default 64.
    pub max_jobs: usize,
    /// Concurrent jobs started from one client address (see `trusted_proxies`), checked
    /// together with the other limits. Default 8; 0 means no limit.
    pub max_jobs_per_ip: usize,
    /// Job starts (`POST /start-job`, `POST /stream/start`) one client address may make per
    /// second, on average; past it the answer is 429 with `Retry-After`. Default 2; 0 means
    /// no limit.
    pub start_rate_per_ip: f64,
    /// Job starts one client address may make in a burst before `start_rate_per_ip`
    /// applies. Default 10.
    pub start_burst_per_ip: u32,
    /// Addresses of reverse proxies whose `X-Forwarded-For` is believed: for a request from
    /// one of them, the client is the right-most address in that header that is not a
    /// trusted proxy. From any other peer the header is ignored. Default empty.
    pub trusted_proxies: Vec<String>,
    /// Model used when a start request names none. Default `noop`.
    pub default_model: String,
    /// Models started through the live-runner flow. Default `["scope"]`.
    pub live_runner_models: Vec<String>,
    /// Hosts (`host` or `host:port`) a caller may name in `orchestrator_url`. Empty: the
    /// field is refused with 400.
    pub orchestrator_allow_list: Vec<String>,
    /// Frame rate hint for the encoder. Default 24.
    pub fps: u32,
    /// JPEG quality of output frames. Default 80.
    pub jpeg_quality: u8,
    /// Largest JSON body accepted, in bytes. Default 64 KiB.
    pub max_json_bytes: usize,
    /// Largest JPEG frame accepted (HTTP body or WebSocket message), in bytes; larger
    /// frames are counted and skipped. Default 4 MiB.
    pub max_frame_bytes: usize,
    /// WebSocket messages past this size close the socket with 1009. Default 16 MiB.
    pub ws_hard_limit_bytes: usize,
    /// A job with no request, frame or viewer for this long is closed. Default 300 s.
    pub idle_timeout_secs: u64,
    /// SSE heartbeat period. Default 15 s.
    pub sse_heartbeat_secs: u64,
    /// How long shutdown may spend closing jobs. Default 10 s.
    pub shutdown_timeout_secs: u64,
    /// Allowed CORS origins; `["*"]` (the default) allows any.
    pub cors_origins: Vec<String>,
    /// Serve `/metrics` without a key. Default true.
    pub metrics_public: bool,
    /// The most any job pays (`[ceiling]` in TOML); the CLI hands it to the gateway.
    /// Default: 5 USD per hour on both flows (see [`Ceiling`]).
    pub ceiling: Ceiling,
    /// What each API key (or, when the service runs open, everyone together) may spend per
    /// `budget_window_secs` (`[key_budget]`: `usd` and/or `wei`). Default: no limit.
    pub key_budget: BudgetConfig,
    /// What the whole service may spend per `budget_window_secs` (`[service_budget]`).
    /// Default: no limit.
    pub service_budget: BudgetConfig,
    /// The sliding window budgets apply to. Default 86 400 s (a day).
    pub budget_window_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            max_jobs_per_key: 10,
            max_jobs: 64,
            max_jobs_per_ip: 8,
            start_rate_per_ip: 2.0,
            start_burst_per_ip: 10,
            trusted_proxies: Vec::new(),
            default_model: "noop".into(),
            live_runner_models: vec!["scope".into()],
            orchestrator_allow_list: Vec::new(),
            fps: 24,
            jpeg_quality: 80,
            max_json_bytes: 64 * 1024,
            max_frame_bytes: 4 * 1024 * 1024,
            ws_hard_limit_bytes: 16 * 1024 * 1024,
            idle_timeout_secs: 300,
            sse_heartbeat_secs: 15,
            shutdown_timeout_secs: 10,
            cors_origins: vec!["*".into()],
            metrics_public: true,
            ceiling: Ceiling::default(),
            key_budget: BudgetConfig::default(),
            service_budget: BudgetConfig::default(),
            budget_window_secs: 86_400,
        }
    }
}

impl ServerConfig {
    /// Reads a TOML file; missing fields keep their defaults.
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        Self::from_toml_str(&text)
    }

    /// Parses TOML text; missing fields keep their defaults.
    pub fn from_toml_str(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError(e.to_string()))
    }

    /// The idle timeout as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs.max(1))
    }

    /// The SSE heartbeat period as a duration.
    pub fn sse_heartbeat(&self) -> Duration {
        Duration::from_secs(self.sse_heartbeat_secs.max(1))
    }

    /// The shutdown budget as a duration.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout_secs.max(1))
    }

    /// The budget window as a duration.
    pub fn budget_window(&self) -> Duration {
        Duration::from_secs(self.budget_window_secs.max(1))
    }

    /// Whether `model` starts through the live-runner flow.
    pub fn is_live_runner_model(&self, model: &str) -> bool {
        self.live_runner_models.iter().any(|m| m == model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_only_named_fields() {
        let c = ServerConfig::from_toml_str(
            "api_keys = [\"k1\"]\nmax_jobs_per_key = 2\nidle_timeout_secs = 5\n",
        )
        .unwrap();
        assert_eq!(c.api_keys, vec!["k1".to_string()]);
        assert_eq!(c.max_jobs_per_key, 2);
        assert_eq!(c.idle_timeout(), Duration::from_secs(5));
        assert_eq!(c.default_model, "noop");
    }

    #[test]
    fn per_address_limits_have_defaults_and_toml_names() {
        let d = ServerConfig::default();
        assert_eq!(d.max_jobs_per_ip, 8);
        assert_eq!(d.start_rate_per_ip, 2.0);
        assert_eq!(d.start_burst_per_ip, 10);
        assert!(d.trusted_proxies.is_empty());
        let c = ServerConfig::from_toml_str(
            "max_jobs_per_ip = 0\nstart_rate_per_ip = 0.5\nstart_burst_per_ip = 3\n\
             trusted_proxies = [\"10.0.0.1\"]\n",
        )
        .unwrap();
        assert_eq!(c.max_jobs_per_ip, 0);
        assert_eq!(c.start_rate_per_ip, 0.5);
        assert_eq!(c.start_burst_per_ip, 3);
        assert_eq!(c.trusted_proxies, vec!["10.0.0.1".to_string()]);
    }

    #[test]
    fn unknown_toml_fields_are_errors() {
        assert!(ServerConfig::from_toml_str("api_key = \"typo\"").is_err());
    }
}
