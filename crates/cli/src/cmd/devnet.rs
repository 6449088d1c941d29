//! `lpgw devnet`: a local orchestrator (and remote-signer emulator) for gateways to talk to.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use lpgw_devnet::{
    Devnet, DevnetConfig, DevnetHandle, Faults, LiveConfig, PriceConfig, ScopeRunnerConfig,
    UsdPriceConfig,
};
use lpgw_gateway::Token;
use serde_json::json;

/// Options of `lpgw devnet`.
#[derive(Debug, Args)]
pub(crate) struct DevnetArgs {
    /// Orchestrator address (HTTP/1.1, HTTP/2 and gRPC on one port).
    #[arg(long, default_value = "127.0.0.1:8935")]
    listen: SocketAddr,
    /// LV2V models served by the built-in runner, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "noop,streamdiffusion")]
    models: Vec<String>,
    /// Concurrent sessions per model.
    #[arg(long, default_value_t = 4)]
    capacity: u32,
    /// LV2V price as `WEI` per pixel or `WEI/PIXELS`; without it the devnet runs offchain.
    #[arg(long)]
    price: Option<PriceConfig>,
    /// Also start the remote-signer emulator.
    #[arg(long)]
    signer: bool,
    /// Signer address (plain HTTP).
    #[arg(long, default_value = "127.0.0.1:0")]
    signer_listen: SocketAddr,
    /// Serve plain HTTP with h2c instead of TLS with a self-signed certificate.
    #[arg(long)]
    plain: bool,
    /// Host name put in the service URI and certificate (default: the listen IP).
    #[arg(long)]
    public_host: Option<String>,
    /// Extra delay before answering GetOrchestrator and job starts, in milliseconds
    /// (a fault knob for trying timeouts).
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Seconds between the runner's status events.
    #[arg(long, default_value_t = 10)]
    status_interval_secs: u64,
    /// An orchestrator with only live runners: no AI-worker LV2V capacity, so
    /// `/live-video-to-video` answers `503 insufficient capacity`.
    #[arg(long)]
    live_only: bool,
    /// USD per ETH used to convert live-runner prices to wei.
    #[arg(long, default_value_t = 2000.0)]
    eth_usd: f64,
    /// Price of the built-in Scope runner as `USD/UNIT` (unit `hour`, `720p` or `fixed`),
    /// charged when `--price` makes the devnet paid.
    #[arg(long, default_value = "2/hour", value_parser = parse_usd_price)]
    scope_price: UsdPriceConfig,
    /// Register no built-in Scope runner (neither persistent nor serverless).
    #[arg(long)]
    no_scope: bool,
    /// Built-in persistent Scope runners to register (capacity 1 each, as the real runner),
    /// so that this many Scope streams can run at once.
    #[arg(long, default_value_t = 4)]
    scope_runners: u32,
    /// The bootstrap secret external live runners register with (`Authorization` of their
    /// first heartbeat; go-livepeer `-orchSecret`). Default: `devnet-orch-secret`.
    #[arg(long)]
    orch_secret: Option<String>,
    /// Print the URLs as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// `USD/UNIT`, e.g. `2/hour`, `0.01/720p`, `1/fixed`.
fn parse_usd_price(s: &str) -> Result<UsdPriceConfig, String> {
    let (price, unit) = s
        .split_once('/')
        .ok_or_else(|| format!("expected USD/UNIT such as 2/hour, got {s:?}"))?;
    let price = price.trim().trim_start_matches('$');
    if !price.parse::<f64>().is_ok_and(|p| p.is_finite() && p > 0.0) {
        return Err(format!("price must be a positive decimal, got {price:?}"));
    }
    let unit = unit.trim().to_ascii_lowercase();
    if !matches!(unit.as_str(), "hour" | "720p" | "fixed") {
        return Err(format!("unit must be hour, 720p or fixed, got {unit:?}"));
    }
    Ok(UsdPriceConfig::new(price, unit))
}

impl DevnetArgs {
    fn config(&self) -> DevnetConfig {
        DevnetConfig {
            listen: self.listen,
            tls: !self.plain,
            public_host: self.public_host.clone(),
            models: self.models.clone(),
            capacity: self.capacity,
            price: self.price,
            signer: self.signer,
            signer_listen: self.signer_listen,
            status_interval: Duration::from_secs(self.status_interval_secs.max(1)),
            faults: Faults {
                latency: Duration::from_millis(self.latency_ms),
                ..Faults::default()
            },
            live: LiveConfig {
                live_only: self.live_only,
                eth_usd: self.eth_usd,
                scope: (!self.no_scope).then(|| ScopeRunnerConfig {
                    price: self.scope_price.clone(),
                    runners: self.scope_runners,
                    ..ScopeRunnerConfig::default()
                }),
                orch_secret: self
                    .orch_secret
                    .clone()
                    .or_else(|| LiveConfig::default().orch_secret),
                ..LiveConfig::default()
            },
            ..DevnetConfig::default()
        }
    }
}

/// What a gateway needs to use a running devnet, as JSON.
pub(crate) fn describe(h: &DevnetHandle) -> serde_json::Value {
    let token = Token {
        orchestrators: Some(vec![h.orchestrator_url().to_owned()]),
        signer: h.signer_url().map(str::to_owned),
        ..Token::default()
    };
    json!({
        "orchestrator": h.orchestrator_url(),
        "signer": h.signer_url(),
        "signer_address": h.signer_url().map(|_| h.signer_address()),
        "token": token.encode(),
        "runner_url": h.runner_url(),
        "orch_secret": h.orch_secret(),
        "scope_runner": h.scope_runner(),
        "scope_runners": h.scope_runners(),
    })
}

pub(crate) async fn run(args: DevnetArgs) -> anyhow::Result<()> {
    let shutdown = super::shutdown_signal();
    let handle = Devnet::start(args.config()).await?;
    let info = describe(&handle);
    if args.json {
        println!("{info}");
    } else {
        println!("orchestrator:   {}", handle.orchestrator_url());
        if let Some(s) = handle.signer_url() {
            println!("signer:         {s}");
            println!("signer address: {}", handle.signer_address());
        }
        if args.live_only {
            println!("models:         (live runners only)");
        } else {
            println!("models:         {}", args.models.join(","));
        }
        let routes = handle.scope_runners();
        if !routes.is_empty() {
            println!(
                "scope runners:  {} ({}/{})",
                routes.join(","),
                args.scope_price.price,
                args.scope_price.unit
            );
        }
        // External live runners register here with the orchestrator secret.
        println!("runner url:     {}", handle.runner_url());
        if let Some(secret) = handle.orch_secret() {
            println!("orch secret:    {secret}");
        }
        println!(
            "token:          {}",
            info["token"].as_str().unwrap_or_default()
        );
        println!("(Ctrl-C to stop)");
    }
    shutdown.cancelled().await;
    tracing::info!(sessions = handle.active_sessions(), "stopping devnet");
    handle.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_price_is_usd_per_unit() {
        assert_eq!(
            parse_usd_price("2/hour"),
            Ok(UsdPriceConfig::new("2", "hour"))
        );
        assert_eq!(
            parse_usd_price("$0.01/720P"),
            Ok(UsdPriceConfig::new("0.01", "720p"))
        );
        for bad in ["2", "0/hour", "-1/hour", "x/hour", "2/day", "2/"] {
            assert!(parse_usd_price(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn live_flags_reach_the_config() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: DevnetArgs,
        }
        let cfg = Cli::parse_from(["x"]).args.config();
        let scope = cfg.live.scope.expect("scope by default");
        assert_eq!(scope.price, UsdPriceConfig::new("2", "hour"));
        assert!(!cfg.live.live_only);
        let cfg = Cli::parse_from([
            "x",
            "--live-only",
            "--eth-usd",
            "3000",
            "--scope-price",
            "0.5/fixed",
        ])
        .args
        .config();
        assert!(cfg.live.live_only);
        assert!((cfg.live.eth_usd - 3000.0).abs() < f64::EPSILON);
        assert_eq!(
            cfg.live.scope.expect("scope").price,
            UsdPriceConfig::new("0.5", "fixed")
        );
        let cfg = Cli::parse_from(["x", "--no-scope"]).args.config();
        assert!(cfg.live.scope.is_none());
        let cfg = Cli::parse_from(["x"]).args.config();
        assert_eq!(cfg.live.scope.map(|s| s.runners), Some(4));
        assert_eq!(cfg.live.orch_secret.as_deref(), Some("devnet-orch-secret"));
        let cfg = Cli::parse_from(["x", "--scope-runners", "2", "--orch-secret", "s3"])
            .args
            .config();
        assert_eq!(cfg.live.scope.map(|s| s.runners), Some(2));
        assert_eq!(cfg.live.orch_secret.as_deref(), Some("s3"));
    }
}
