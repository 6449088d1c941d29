//! `lpgw demo`: a devnet and the gateway service in one process, ready for a browser.

use std::net::SocketAddr;

use anyhow::Context as _;
use clap::Args;
use lpgw_devnet::{Devnet, DevnetConfig};
use lpgw_gateway::{Gateway, Settings};
use lpgw_server::AppState;

use super::pay::PayArgs;
use super::serve::{ServiceArgs, apply_service};

/// Options of `lpgw demo`: the service options of `lpgw serve` (keys, limits, budgets,
/// ceilings) in front of a local devnet.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Address of the service (the browser app is at `/`).
    #[arg(long, default_value = "127.0.0.1:8000")]
    listen: SocketAddr,
    #[command(flatten)]
    service: ServiceArgs,
    #[command(flatten)]
    pay: PayArgs,
}

/// Starts the devnet (plain HTTP, offchain) and the service in front of it; runs until
/// SIGINT or SIGTERM, then closes every job and the devnet.
pub(crate) async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let config = args.service.server_config(&args.pay)?;
    let devnet = Devnet::start(DevnetConfig {
        tls: false,
        ..DevnetConfig::default()
    })
    .await
    .context("starting the devnet")?;
    let mut settings = Settings {
        orchestrators: vec![devnet.orchestrator_url().to_string()],
        ..Settings::default()
    };
    apply_service(&mut settings, &config);
    let gateway = Gateway::new(settings)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("devnet orchestrator: {}", devnet.orchestrator_url());
    println!("open http://{addr}/ in a browser (Ctrl-C to stop)");
    let state = AppState::new(config, gateway);
    let result = lpgw_server::run(listener, state, super::shutdown_signal()).await;
    devnet.shutdown().await;
    result?;
    Ok(())
}
