//! `lpgw runners`: lists the live runners discovery offers, with price (wei and USD),
//! capacity and mode, and whether the price ceiling lets the gateway use them.

use clap::Args;
use lpgw_gateway::{Gateway, PriceUnit, RunnerFilter};

use crate::cmd::orch::GatewayArgs;

/// Options of `lpgw runners`.
#[derive(Debug, Args)]
pub(crate) struct RunnersArgs {
    #[command(flatten)]
    gateway: GatewayArgs,
    /// Only runners of this app (repeatable), e.g. `live-video-to-video/scope`.
    #[arg(long = "app")]
    apps: Vec<String>,
    /// Only runners on this GPU (repeatable), e.g. `H100`.
    #[arg(long = "gpu")]
    gpus: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: RunnersArgs) -> anyhow::Result<()> {
    let settings = args.gateway.settings()?;
    let ceiling = settings.ceiling;
    let gw = Gateway::new(settings)?;
    let filter = RunnerFilter {
        apps: args.apps.clone(),
        gpus: args.gpus.clone(),
    };
    let found = gw.discover_runners(&filter).await?;
    if args.json {
        let runners: Vec<serde_json::Value> = found
            .offers
            .iter()
            .map(|o| {
                serde_json::json!({
                    "url": o.url, "orchestrator": o.orchestrator, "app": o.app,
                    "mode": o.mode.as_str(), "gpu": o.gpu,
                    "capacity": o.capacity, "capacity_used": o.capacity_used,
                    "capacity_available": o.capacity_available,
                    "price_wei": o.price.map(|p| p.wei.to_string()),
                    "unit": o.price.map(|p| p.unit.as_str()),
                    "usd": o.price.map(|p| p.usd(ceiling.eth_usd)),
                    "within_ceiling": o.price.is_none_or(|p| ceiling.check(&p).is_ok()),
                })
            })
            .collect();
        let skipped: Vec<serde_json::Value> = found
            .rejections
            .iter()
            .map(|r| serde_json::json!({"url": r.url, "reason": r.reason.to_string()}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"runners": runners, "skipped": skipped})
            )?
        );
        return Ok(());
    }
    println!(
        "{:<12} {:<34} {:>9} {:>24} {:>14}  URL",
        "MODE", "APP", "FREE/CAP", "PRICE (WEI/UNIT)", "USD"
    );
    for o in &found.offers {
        let (wei, usd) = match o.price {
            Some(p) => {
                let per = if p.unit == PriceUnit::Fixed {
                    "call"
                } else {
                    "h"
                };
                let flag = if ceiling.check(&p).is_ok() { "" } else { " !" };
                (
                    format!("{}/{}", p.wei, p.unit),
                    format!("${:.4}/{per}{flag}", p.usd(ceiling.eth_usd)),
                )
            }
            None => ("-".into(), "free".into()),
        };
        println!(
            "{:<12} {:<34} {:>4}/{:<4} {:>24} {:>14}  {}",
            o.mode.as_str(),
            o.app,
            o.capacity_available,
            o.capacity,
            wei,
            usd,
            o.url
        );
    }
    if found.offers.is_empty() {
        println!("(no runners)");
    }
    for r in &found.rejections {
        eprintln!("skipped {}: {}", r.url, r.reason);
    }
    if found
        .offers
        .iter()
        .any(|o| o.price.is_some_and(|p| ceiling.check(&p).is_err()))
    {
        eprintln!("! above the price ceiling (--max-usd-per-hour): the gateway will not use it");
    }
    Ok(())
}
