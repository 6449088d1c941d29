//! The ceiling against a devnet priced far above it, on both flows: with no price settings
//! nothing starts and the orchestrator's own ledger shows no payment; with a ceiling above
//! the prices the same starts succeed and what the gateway counts as paid is what the
//! orchestrator credited.

use std::time::Duration;

use lpgw_devnet::{
    Devnet, DevnetConfig, DevnetHandle, LiveConfig, PriceConfig, ScopeRunnerConfig, UsdPriceConfig,
};
use lpgw_gateway::{Ceiling, Gateway, MaxPrice, RejectReason, Settings, StartRequest};
use serde_json::Value;

async fn within<F: std::future::Future>(secs: u64, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .expect("test step timed out")
}

/// `lpgw devnet --price 1000000000 --signer --scope-price 500/hour`: about 199 000 USD per
/// hour on the legacy path and 500 USD per hour for Scope.
async fn dear_devnet() -> DevnetHandle {
    Devnet::start(DevnetConfig {
        price: Some(PriceConfig {
            per_unit: 1_000_000_000,
            pixels_per_unit: 1,
        }),
        signer: true,
        live: LiveConfig {
            scope: Some(ScopeRunnerConfig {
                price: UsdPriceConfig::new("500", "hour"),
                ..ScopeRunnerConfig::default()
            }),
            ..LiveConfig::default()
        },
        ..DevnetConfig::default()
    })
    .await
    .expect("devnet starts")
}

fn settings(d: &DevnetHandle, ceiling: Ceiling) -> Settings {
    let mut s = Settings {
        orchestrators: vec![d.orchestrator_url().to_owned()],
        signer_url: d.signer_url().map(str::to_owned),
        ceiling,
        ..Settings::default()
    };
    s.live.payment_interval = Duration::from_millis(300);
    s
}

/// `GET /devnet/ledger` on the orchestrator's port.
async fn ledger(d: &DevnetHandle) -> Value {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let url = format!("{}/devnet/ledger", d.orchestrator_url());
    within(10, client.get(url).send())
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A refusal for price, or (for a fallback route nobody serves) no offer or no capacity at
/// all: nothing that could have been paid.
fn is_ceiling(r: &RejectReason) -> bool {
    match r {
        RejectReason::OverPriceCeiling(_)
        | RejectReason::OverRunnerCeiling(_)
        | RejectReason::Unavailable(_) => true,
        RejectReason::Rpc { message, .. } => message.contains("OrchestratorCapped"),
        _ => false,
    }
}

#[tokio::test]
async fn with_no_price_settings_neither_flow_pays_a_dear_orchestrator() {
    let d = dear_devnet().await;
    let gw = Gateway::new(settings(&d, Ceiling::default())).unwrap();

    let err = within(20, gw.start(&StartRequest::new("noop")))
        .await
        .unwrap_err();
    let reasons: Vec<String> = err.rejections().iter().map(ToString::to_string).collect();
    assert!(
        err.rejections().iter().all(|r| is_ceiling(&r.reason)),
        "{reasons:#?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("1000000000 wei/pixel")
            && r.contains("$199065.6000/hour")
            && r.contains("$5.0000/hour")),
        "{reasons:#?}"
    );

    let err = within(30, gw.start(&StartRequest::new("scope")))
        .await
        .unwrap_err();
    let reasons: Vec<String> = err.rejections().iter().map(ToString::to_string).collect();
    assert!(
        err.rejections().iter().all(|r| is_ceiling(&r.reason)),
        "{reasons:#?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("$500.0000/hour") && r.contains("$5.0000/hour")),
        "{reasons:#?}"
    );

    // The receiving side agrees: not one ticket.
    assert_eq!(d.paid(), (0, 0));
    let l = ledger(&d).await;
    assert_eq!(l["payments"], 0);
    assert_eq!(l["value_wei"], "0");
    d.shutdown().await;
}

#[tokio::test]
async fn a_ceiling_above_the_prices_starts_and_pays_what_the_orchestrator_credits() {
    let d = dear_devnet().await;
    let ceiling = Ceiling {
        wei_per_pixel: Some(MaxPrice {
            price_per_unit: 2_000_000_000,
            pixels_per_unit: 1,
        }),
        usd_per_hour: 1000.0,
        ..Ceiling::default()
    };
    let gw = Gateway::new(settings(&d, ceiling)).unwrap();

    let lv2v = within(20, gw.start_lv2v(&StartRequest::new("noop")))
        .await
        .expect("legacy start under the ceiling");
    let lv2v_paid = lv2v.payment_stats();
    assert_eq!(lv2v_paid.paid, 1);
    assert!(lv2v_paid.value_wei > 0);
    within(10, lv2v.close()).await;

    let scope = within(30, gw.start(&StartRequest::new("scope")))
        .await
        .expect("scope start under the ceiling");
    let Ok(scope) = scope.into_scope() else {
        panic!("not a scope job")
    };
    // Let the funding loop pay a few more times.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let session = scope.runner_session().expect("persistent session");
    let scope_paid = session.payment_stats();
    within(20, scope.close()).await;
    assert!(scope_paid.paid >= 2, "{scope_paid:?}");

    // What the gateway counted as paid is what the orchestrator credited (the funding loop
    // may have paid once more between the read and the close).
    let (n, wei) = d.paid();
    let l = ledger(&d).await;
    assert_eq!(l["payments"], n);
    assert_eq!(l["value_wei"], wei.to_string());
    let ours = lv2v_paid.value_wei + scope_paid.value_wei;
    let per_payment = scope_paid.value_wei / u128::from(scope_paid.paid);
    assert!(
        n >= lv2v_paid.paid + scope_paid.paid && n <= lv2v_paid.paid + scope_paid.paid + 1,
        "orchestrator saw {n} payments"
    );
    assert!(
        wei >= ours && wei <= ours + per_payment * 2,
        "credited {wei}, counted {ours}"
    );
    assert_eq!(l["by_sender"].as_object().unwrap().len(), 1);
    d.shutdown().await;
}
