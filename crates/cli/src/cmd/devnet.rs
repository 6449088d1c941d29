//! `lpgw devnet`: a local orchestrator (and remote-signer emulator) for gateways to talk to.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use lpgw_devnet::{Devnet, DevnetConfig, DevnetHandle, Faults, PriceConfig};
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
    /// Print the URLs as one JSON object instead of text.
    #[arg(long)]
    json: bool,
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
        println!("models:         {}", args.models.join(","));
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
