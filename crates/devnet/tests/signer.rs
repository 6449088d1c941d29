//! The remote-signer emulator's API: answers, refusals (400/480/481/482/500) and discovery.

mod common;

use std::time::Duration;

use common::*;
use lpgw_devnet::{DevnetConfig, PriceConfig};
use serde_json::json;

#[tokio::test]
async fn sign_orchestrator_info_shape() {
    let h = devnet(priced_with_signer()).await;
    let r = sign_info_response(&h).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let v: serde_json::Value = r.json().await.unwrap();
    let addr = v["address"].as_str().unwrap();
    assert_eq!(addr.len(), 42);
    assert!(addr.starts_with("0x") && addr.chars().any(|c| c.is_ascii_uppercase()));
    let sig = v["signature"].as_str().unwrap();
    assert_eq!(sig.len(), 2 + 130, "65-byte signature");
    h.shutdown().await;
}

#[tokio::test]
async fn validation_errors_are_400() {
    let h = devnet(priced_with_signer()).await;
    let info = paid_info(&h, "noop").await;
    let cases = [
        (json!({}), "missing orchestrator"),
        (
            json!({ "orchestrator": b64(&info), "type": "video" }),
            "invalid job type",
        ),
        (
            json!({ "orchestrator": b64(&info) }),
            "missing billable unit or job type",
        ),
        (
            json!({ "orchestrator": b64(&info), "type": "lv2v", "state": {"State": "e30=", "Sig": "AAAA"} }),
            "missing manifestID",
        ),
        (
            json!({ "orchestrator": b64(&info), "type": "lv2v", "ManifestID": "m", "state": {"State": "e30=", "Sig": "AAAA"} }),
            "invalid sig",
        ),
        (
            json!({ "orchestrator": b64(&info), "type": "lv2v", "maxPrice": {"price": 5, "currency": "wei", "unit": "seconds"} }),
            "maxPrice unit must be 720p-pixel-seconds",
        ),
    ];
    for (body, msg) in cases {
        let r = generate(&h, body.clone()).await;
        assert_eq!(r.status, 400, "{body}");
        assert_eq!(r.body["error"]["message"], msg, "{body}");
    }
    let mut unpriced = info.clone();
    unpriced.price_info = None;
    let r = generate(
        &h,
        json!({ "orchestrator": b64(&unpriced), "type": "lv2v" }),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["message"].as_str()),
        (400, Some("missing or zero priceInfo"))
    );
    let mut no_tickets = info;
    no_tickets.ticket_params = None;
    let r = generate(
        &h,
        json!({ "orchestrator": b64(&no_tickets), "type": "lv2v" }),
    )
    .await;
    assert_eq!(r.status, 400);
    h.shutdown().await;
}

#[tokio::test]
async fn state_checks_job_type_and_orchestrator() {
    let h = devnet(priced_with_signer()).await;
    let info = paid_info(&h, "noop").await;
    let first = generate(&h, json!({ "orchestrator": b64(&info), "type": "lv2v" })).await;
    assert_eq!(first.status, 200);
    let state = first.body["state"].clone();
    let r = generate(
        &h,
        json!({ "orchestrator": b64(&info), "type": "live", "ManifestID": "m", "state": state }),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["message"].as_str()),
        (400, Some("job type mismatch"))
    );
    let mut other = info.clone();
    other.address = vec![9; 20];
    let r = generate(
        &h,
        json!({ "orchestrator": b64(&other), "type": "lv2v", "ManifestID": "m", "state": state }),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["message"].as_str()),
        (400, Some("orchestratorAddress mismatch"))
    );
    h.shutdown().await;
}

#[tokio::test]
async fn refresh_480_when_auth_token_is_in_its_last_tenth() {
    let h = devnet(DevnetConfig {
        auth_token_ttl: Duration::from_secs(60),
        ..priced_with_signer()
    })
    .await;
    let info = paid_info(&h, "noop").await;
    let r = generate(&h, json!({ "orchestrator": b64(&info), "type": "lv2v" })).await;
    assert_eq!(r.status, 480);
    assert_eq!(r.refresh_url.as_deref(), Some(h.orchestrator_url()));
    h.shutdown().await;
}

#[tokio::test]
async fn price_ceiling_481_and_doubling_481() {
    let h = devnet(priced_with_signer()).await;
    let info = paid_info(&h, "noop").await;
    // The `lv2v` ceiling is per pixel, compared as is with the price (1 wei per pixel):
    // 0.5 is below it, the discovery price padded by 1.2 % is above.
    let r = generate(
        &h,
        json!({ "orchestrator": b64(&info), "type": "lv2v",
                "maxPrice": {"price": "0.5", "currency": "wei", "unit": "720p-pixel-seconds"} }),
    )
    .await;
    assert_eq!(r.status, 481, "{:?}", r.body);
    let ok = generate(
        &h,
        json!({ "orchestrator": b64(&info), "type": "lv2v",
                "maxPrice": {"price": 1.012, "currency": "WEI", "unit": "720p-pixel-seconds"} }),
    )
    .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    // The orchestrator triples its price mid-session.
    h.faults().set_price(Some(PriceConfig {
        per_unit: 3,
        pixels_per_unit: 1,
    }));
    let info3 = paid_info(&h, "noop").await;
    let r = generate(
        &h,
        json!({ "orchestrator": b64(&info3), "type": "lv2v", "ManifestID": "m", "state": ok.body["state"] }),
    )
    .await;
    assert_eq!(
        (r.status, r.body["error"]["message"].as_str()),
        (481, Some("Orchestrator price has more than doubled"))
    );
    h.shutdown().await;
}

#[tokio::test]
async fn no_tickets_482_when_balance_covers_the_fee() {
    // One ticket is worth 100 s; the first call bills 60 s, leaving credit for 40 s.
    let h = devnet(DevnetConfig {
        ticket_ev: Some(100 * 27_648_000),
        ..priced_with_signer()
    })
    .await;
    let info = paid_info(&h, "noop").await;
    let first = generate(&h, json!({ "orchestrator": b64(&info), "type": "lv2v" })).await;
    assert_eq!(first.status, 200);
    let n = lpgw_proto::decode_payment(first.body["payment"].as_str().unwrap())
        .unwrap()
        .ticket_sender_params
        .len();
    assert_eq!(n, 1);
    let r = generate(
        &h,
        json!({ "orchestrator": b64(&info), "type": "lv2v", "ManifestID": "m", "state": first.body["state"] }),
    )
    .await;
    assert_eq!(r.status, 482);
    h.shutdown().await;
}

#[tokio::test]
async fn scripted_signer_faults_then_recovery() {
    let h = devnet(priced_with_signer()).await;
    let info = paid_info(&h, "noop").await;
    h.faults().push_signer_answers(&[500, 480]);
    let body = json!({ "orchestrator": b64(&info), "type": "lv2v" });
    let r = generate(&h, body.clone()).await;
    assert_eq!(r.status, 500);
    assert_eq!(r.body["error"]["message"], "Internal Server Error");
    let r = generate(&h, body.clone()).await;
    assert_eq!(r.status, 480);
    assert_eq!(r.refresh_url.as_deref(), Some(h.orchestrator_url()));
    assert_eq!(generate(&h, body).await.status, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn discovery_filters_by_capability() {
    let h = devnet(DevnetConfig {
        discovery_extra: vec!["https://127.0.0.1:1".into()],
        ..priced_with_signer()
    })
    .await;
    let get = |q: &'static str| {
        let url = format!("{}/discover-orchestrators{q}", h.signer_url().unwrap());
        async move {
            let r = send(http().get(url)).await;
            assert_eq!(r.status().as_u16(), 200);
            r.json::<serde_json::Value>().await.unwrap()
        }
    };
    let all = get("").await;
    assert_eq!(all.as_array().unwrap().len(), 2);
    assert_eq!(all[0]["address"], h.orchestrator_url());
    assert!(
        all[0]["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("live-video-to-video/noop"))
    );
    let some = get("?caps=live-video-to-video%2Fnoop").await;
    assert_eq!(some.as_array().unwrap().len(), 2);
    let none = get("?caps=live-video-to-video/other").await;
    assert_eq!(none, json!([]));
    h.shutdown().await;
}
