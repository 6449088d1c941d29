//! GetOrchestrator over TLS (a real tonic client pinning the self-signed certificate) and
//! over h2c: the fields a gateway relies on, pricing, and the LV2V capacity check.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::*;
use lpgw_devnet::{DevnetConfig, PriceConfig};
use lpgw_proto::OrchestratorRequest;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn h2c_offchain_info_has_capacity_and_auth_token() {
    let h = devnet(DevnetConfig {
        capacity: 3,
        ..plain()
    })
    .await;
    let info = orch_info(&h, OrchestratorRequest::default())
        .await
        .expect("info");
    assert_eq!(info.transcoder, h.orchestrator_url());
    assert!(info.ticket_params.is_none(), "offchain: no ticket params");
    assert!(info.price_info.is_none(), "offchain: no price");
    assert_eq!(info.address.len(), 20);
    let tok = info.auth_token.expect("auth token");
    assert_eq!(tok.session_id.len(), 8);
    assert!(
        tok.session_id
            .chars()
            .all(|c| matches!(c, '0'..='9' | 'a'..='f'))
    );
    assert_eq!(tok.token.len(), 32);
    let exp = tok.expiration - now();
    assert!((1790..=1800).contains(&exp), "30 minute expiry, got {exp}");
    let caps = info.capabilities.expect("caps");
    assert_eq!(caps.bitstring[0] & (1 << 35), 1 << 35);
    let models = &caps.constraints.expect("constraints").per_capability[&35].models;
    assert_eq!(models.len(), 2);
    assert_eq!(models["noop"].capacity, 3);
    assert_eq!(models["noop"].capacity_in_use, 0);
    assert!(models.contains_key("streamdiffusion"));
    h.shutdown().await;
}

#[tokio::test]
async fn tls_priced_info_has_price_and_ticket_params() {
    let h = devnet(DevnetConfig {
        tls: true,
        price: Some(PriceConfig {
            per_unit: 7,
            pixels_per_unit: 3,
        }),
        signer: true,
        ..DevnetConfig::default()
    })
    .await;
    assert!(h.orchestrator_url().starts_with("https://127.0.0.1:"));
    // An onchain orchestrator needs the payer's signature from the signer.
    let signed: serde_json::Value = sign_info_response(&h).await.json().await.unwrap();
    let address = signed["address"].as_str().unwrap();
    assert_eq!(address, h.signer_address());
    let req = OrchestratorRequest {
        address: unhex(address),
        sig: unhex(signed["signature"].as_str().unwrap()),
        capabilities: Some(lv2v_caps("noop")),
        ignore_capacity_check: false,
    };
    let info = orch_info(&h, req.clone()).await.expect("info over tls");
    let price = info.price_info.expect("price");
    assert_eq!((price.price_per_unit, price.pixels_per_unit), (7, 3));
    let tp = info.ticket_params.expect("ticket params when priced");
    assert_eq!(tp.recipient, info.address);
    assert!(!tp.face_value.is_empty() && tp.win_prob.len() == 32);

    let bad = OrchestratorRequest {
        sig: vec![1; 65],
        ..req
    };
    let err = orch_info(&h, bad).await.expect_err("forged sig refused");
    assert!(
        err.message().contains("Invalid orchestrator request"),
        "{err:?}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn capacity_check_caps_and_ignore_flag() {
    let h = devnet(DevnetConfig {
        capacity: 0,
        ..plain()
    })
    .await;
    let req = OrchestratorRequest {
        capabilities: Some(lv2v_caps("noop")),
        ..Default::default()
    };
    let err = orch_info(&h, req.clone()).await.expect_err("capped");
    assert!(err.message().contains("OrchestratorCapped"), "{err:?}");
    let ok = orch_info(
        &h,
        OrchestratorRequest {
            ignore_capacity_check: true,
            ..req.clone()
        },
    )
    .await;
    assert!(ok.is_ok(), "{ok:?}");
    // Requests without capabilities are not capacity-checked.
    assert!(orch_info(&h, OrchestratorRequest::default()).await.is_ok());
    h.faults().set_capacity(Some(1));
    assert!(orch_info(&h, req).await.is_ok());
    h.shutdown().await;
}

#[tokio::test]
async fn garbage_fault_breaks_decoding() {
    let h = devnet(plain()).await;
    h.faults().set(lpgw_devnet::Faults {
        garbage_grpc: true,
        ..Default::default()
    });
    let err = orch_info(&h, OrchestratorRequest::default())
        .await
        .expect_err("garbage protobuf");
    assert!(!err.message().is_empty());
    h.shutdown().await;
}
