//! `lpgw serve`: the gateway service (both HTTP API families, the WebSocket bridge and the
//! browser app) in front of configured orchestrators.
//!
//! Configuration comes from an optional TOML file (`--config`), then environment variables,
//! then flags; the later wins for every value given.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;
use lpgw_gateway::{Gateway, Settings};
use lpgw_server::{AppState, ServerConfig};

use super::pay::{PayArgs, merge_budget};

/// What the service configuration decides for the gateway: live-runner models and the
/// ceiling (logged, so an operator sees what is in force).
pub(crate) fn apply_service(settings: &mut Settings, config: &ServerConfig) {
    settings.live.models.clone_from(&config.live_runner_models);
    settings.ceiling = config.ceiling;
    tracing::info!(
        "{}",
        super::pay::describe(&settings.ceiling, config.budget_window())
    );
}

/// Options of `lpgw serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "LPGW_LISTEN", default_value = "127.0.0.1:8000")]
    pub(crate) listen: SocketAddr,
    #[command(flatten)]
    pub(crate) service: ServiceArgs,
    #[command(flatten)]
    pub(crate) pay: PayArgs,
    #[command(flatten)]
    pub(crate) upstream: super::upstream::UpstreamArgs,
}

/// The service's own options, shared by `serve` and `demo`.
#[derive(Debug, Args)]
pub(crate) struct ServiceArgs {
    /// API keys, comma separated (none: the service runs open).
    #[arg(long, env = "API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub(crate) api_keys: Vec<String>,
    /// A file with one API key per line.
    #[arg(long, env = "API_KEYS_FILE")]
    pub(crate) api_keys_file: Option<PathBuf>,
    /// Concurrent jobs per key.
    #[arg(long, env = "MAX_JOBS_PER_KEY")]
    pub(crate) max_jobs_per_key: Option<usize>,
    /// Concurrent jobs in total.
    #[arg(long, env = "MAX_JOBS")]
    pub(crate) max_jobs: Option<usize>,
    /// Concurrent jobs per client address (0: no limit).
    #[arg(long, env = "MAX_JOBS_PER_IP")]
    pub(crate) max_jobs_per_ip: Option<usize>,
    /// Job starts per second per client address (0: no limit).
    #[arg(long, env = "START_RATE_PER_IP")]
    pub(crate) start_rate_per_ip: Option<f64>,
    /// Job starts a client address may make in a burst.
    #[arg(long, env = "START_BURST_PER_IP")]
    pub(crate) start_burst_per_ip: Option<u32>,
    /// Reverse-proxy addresses whose X-Forwarded-For is believed, comma separated.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',')]
    pub(crate) trusted_proxies: Vec<String>,
    /// Model used when a request names none.
    #[arg(long, env = "DEFAULT_MODEL_ID")]
    pub(crate) default_model: Option<String>,
    /// Hosts (`host` or `host:port`) callers may name as `orchestrator_url`, comma separated.
    #[arg(long, env = "ORCHESTRATOR_ALLOW_LIST", value_delimiter = ',')]
    pub(crate) allow_orchestrator: Vec<String>,
    /// Close jobs unused for this many seconds.
    #[arg(long, env = "IDLE_TIMEOUT_SECS")]
    pub(crate) idle_timeout_secs: Option<u64>,
    /// Allowed CORS origins, comma separated (`*` for any).
    #[arg(long, env = "CORS_ORIGINS", value_delimiter = ',')]
    pub(crate) cors_origins: Vec<String>,
    /// Encoder frame-rate hint.
    #[arg(long, env = "FPS")]
    pub(crate) fps: Option<u32>,
    /// Output JPEG quality.
    #[arg(long, env = "JPEG_QUALITY")]
    pub(crate) jpeg_quality: Option<u8>,
    /// The most each API key's jobs may pay per budget window, in USD (everyone together
    /// when the service runs open).
    #[arg(long, env = "LPGW_KEY_BUDGET_USD")]
    pub(crate) key_budget_usd: Option<f64>,
    /// The most each API key's jobs may pay per budget window, in wei.
    #[arg(long, env = "LPGW_KEY_BUDGET_WEI")]
    pub(crate) key_budget_wei: Option<u128>,
}

impl ServiceArgs {
    /// The service settings: the file, then environment and flags (pricing and budgets
    /// included).
    pub(crate) fn server_config(&self, pay: &PayArgs) -> anyhow::Result<ServerConfig> {
        let mut c = pay.file()?;
        pay.apply(&mut c)?;
        merge_budget(&mut c.key_budget, self.key_budget_usd, self.key_budget_wei);
        if !self.api_keys.is_empty() {
            c.api_keys.clone_from(&self.api_keys);
        }
        if let Some(p) = &self.api_keys_file {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            c.api_keys.extend(
                text.lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .map(String::from),
            );
        }
        if let Some(v) = self.max_jobs_per_key {
            c.max_jobs_per_key = v;
        }
        if let Some(v) = self.max_jobs {
            c.max_jobs = v;
        }
        if let Some(v) = self.max_jobs_per_ip {
            c.max_jobs_per_ip = v;
        }
        if let Some(v) = self.start_rate_per_ip {
            c.start_rate_per_ip = v;
        }
        if let Some(v) = self.start_burst_per_ip {
            c.start_burst_per_ip = v;
        }
        if !self.trusted_proxies.is_empty() {
            c.trusted_proxies.clone_from(&self.trusted_proxies);
        }
        if let Some(v) = &self.default_model {
            c.default_model.clone_from(v);
        }
        if !self.allow_orchestrator.is_empty() {
            c.orchestrator_allow_list
                .clone_from(&self.allow_orchestrator);
        }
        if let Some(v) = self.idle_timeout_secs {
            c.idle_timeout_secs = v;
        }
        if !self.cors_origins.is_empty() {
            c.cors_origins.clone_from(&self.cors_origins);
        }
        if let Some(v) = self.fps {
            c.fps = v;
        }
        if let Some(v) = self.jpeg_quality {
            c.jpeg_quality = v;
        }
        Ok(c)
    }
}

impl ServeArgs {
    /// The gateway settings: flags, then the token's values.
    pub(crate) fn gateway_settings(&self) -> anyhow::Result<Settings> {
        self.upstream.apply(Settings::default())
    }
}

/// Runs the service until SIGINT or SIGTERM, then closes every job and returns.
pub(crate) async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.service.server_config(&args.pay)?;
    let mut settings = args.gateway_settings()?;
    apply_service(&mut settings, &config);
    let gateway = Gateway::new(settings)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    // Through the log (JSON when asked), so a log collector sees only well-formed lines.
    tracing::info!(url = %format!("http://{addr}/"), "lpgw service listening");
    let state = AppState::new(config, gateway);
    lpgw_server::run(listener, state, super::shutdown_signal()).await?;
    Ok(())
}
