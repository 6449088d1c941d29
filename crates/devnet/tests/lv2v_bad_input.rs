//! Bad input to `/live-video-to-video`, `/payment` and `/refresh-payment`: go-livepeer's
//! status codes and bodies (spec §2.2, §5.7), in its order, and never a panic.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::*;
use lpgw_devnet::{DevnetConfig, Faults};
use lpgw_proto::{AuthToken, OrchestratorRequest};

const NOOP: &str = r#"{"model_id":"noop"}"#;

async fn seg(h: &lpgw_devnet::DevnetHandle) -> String {
    offchain_seg(&orch_info(h, OrchestratorRequest::default()).await.unwrap())
}

#[tokio::test]
async fn body_errors_are_400_plain_text() {
    let h = devnet(plain()).await;
    let s = seg(&h).await;
    for body in ["{", "not json", "[1,2]", "{}", "null", r#"{"model_id":7}"#] {
        let (status, text) = start_lv2v(&h, body, "", &s).await;
        assert_eq!(status, 400, "{body}: {text}");
        assert!(text.ends_with('\n'), "plain error ends with a newline");
    }
    let (_, text) = start_lv2v(&h, "{}", "", &s).await;
    assert_eq!(text, "missing model_id\n");
    let r = send(
        http()
            .post(format!("{}/live-video-to-video", h.orchestrator_url()))
            .body("{"),
    )
    .await;
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert_eq!(h.active_sessions(), 0);
    h.shutdown().await;
}

#[tokio::test]
async fn header_errors_402_then_403() {
    let h = devnet(plain()).await;
    let s = seg(&h).await;
    let (status, text) = start_lv2v(&h, NOOP, "!!!not-base64", &s).await;
    assert_eq!(status, 402);
    assert!(text.starts_with("base64 decode error"), "{text}");
    let bad_proto = base64::engine::general_purpose::STANDARD.encode([0x0a, 50, 1]);
    let (status, text) = start_lv2v(&h, NOOP, &bad_proto, &s).await;
    assert_eq!(status, 402);
    assert!(text.starts_with("protobuf unmarshal error"), "{text}");

    let (status, text) = start_lv2v(&h, NOOP, "", "!!!").await;
    assert_eq!((status, text.as_str()), (403, "ErrorSegEncoding\n"));
    let (status, text) = start_lv2v(&h, NOOP, "", &bad_proto).await;
    assert_eq!((status, text.as_str()), (403, "ErrorSegEncoding\n"));
    // Even offchain the segment credentials must carry a token this orchestrator minted.
    let (status, text) = start_lv2v(&h, NOOP, "", "").await;
    assert_eq!((status, text.as_str()), (403, "missing auth token\n"));
    let forged = lpgw_proto::encode_seg_data(&lpgw_proto::SegData {
        auth_token: Some(AuthToken {
            token: vec![0; 32],
            session_id: "00000000".into(),
            expiration: i64::MAX,
        }),
        ..Default::default()
    });
    let (status, text) = start_lv2v(&h, NOOP, "", &forged).await;
    assert_eq!((status, text.as_str()), (403, "invalid auth token\n"));
    let incompatible = {
        let info = orch_info(&h, OrchestratorRequest::default()).await.unwrap();
        lpgw_proto::encode_seg_data(&lpgw_proto::SegData {
            auth_token: info.auth_token,
            capabilities: Some(lv2v_caps("not-served-here")),
            ..Default::default()
        })
    };
    let (status, text) = start_lv2v(&h, NOOP, "", &incompatible).await;
    assert_eq!(
        (status, text.as_str()),
        (403, "incompatible capabilities\n")
    );
    assert_eq!(
        h.capacity_in_use("noop"),
        0,
        "refused starts release their slot"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn expired_auth_token_is_403() {
    let h = devnet(DevnetConfig {
        auth_token_ttl: Duration::ZERO,
        ..plain()
    })
    .await;
    let s = seg(&h).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let (status, text) = start_lv2v(&h, NOOP, "", &s).await;
    assert_eq!((status, text.as_str()), (403, "expired auth token\n"));
    h.shutdown().await;
}

#[tokio::test]
async fn capacity_is_checked_before_payment_and_exhausts_to_503() {
    let h = devnet(DevnetConfig {
        capacity: 1,
        ..plain()
    })
    .await;
    let s = seg(&h).await;
    let (status, text) = start_lv2v(&h, r#"{"model_id":"unknown"}"#, "!!!", &s).await;
    assert_eq!((status, text.as_str()), (503, "insufficient capacity\n"));
    let (status, body) = start_lv2v(&h, NOOP, "", &s).await;
    assert_eq!(status, 200, "{body}");
    // The one slot is taken: 503 comes first, even with a broken payment header.
    let (status, text) = start_lv2v(&h, NOOP, "!!!", &s).await;
    assert_eq!((status, text.as_str()), (503, "insufficient capacity\n"));
    // Other models have their own capacity.
    let (status, _) = start_lv2v(&h, r#"{"model_id":"streamdiffusion"}"#, "", &s).await;
    assert_eq!(status, 200);
    // GetOrchestrator reports the slot in use.
    let info = orch_info(&h, OrchestratorRequest::default()).await.unwrap();
    let m = &info
        .capabilities
        .unwrap()
        .constraints
        .unwrap()
        .per_capability[&35]
        .models["noop"];
    assert_eq!((m.capacity, m.capacity_in_use), (0, 1));
    h.shutdown().await;
}

#[tokio::test]
async fn refusal_fault_answers_503() {
    let h = devnet(DevnetConfig {
        faults: Faults {
            refuse_rate: 1.0,
            ..Default::default()
        },
        ..plain()
    })
    .await;
    let s = seg(&h).await;
    let (status, text) = start_lv2v(&h, NOOP, "", &s).await;
    assert_eq!((status, text.as_str()), (503, "insufficient capacity\n"));
    h.faults().set(Faults::default());
    let (status, _) = start_lv2v(&h, NOOP, "", &s).await;
    assert_eq!(status, 200);
    h.shutdown().await;
}

#[tokio::test]
async fn payment_and_refresh_errors() {
    let h = devnet(plain()).await;
    let c = http();
    let url = h.orchestrator_url();
    let r = send(
        c.post(format!("{url}/payment"))
            .header("Livepeer-Payment", "%%%"),
    )
    .await;
    assert_eq!(r.status().as_u16(), 402);
    let (s, b) = status_text(c.post(format!("{url}/payment"))).await;
    assert_eq!(s, 403);
    assert_eq!(b, "missing auth token\n");

    let refresh = |body: &'static str| {
        let c = c.clone();
        let url = url.to_string();
        async move {
            let r = send(c.post(format!("{url}/refresh-payment")).body(body)).await;
            let status = r.status().as_u16();
            let ct = r.headers()["content-type"].to_str().unwrap().to_string();
            (status, ct, r.text().await.unwrap())
        }
    };
    let (status, ct, text) = refresh("{").await;
    assert_eq!((status, ct.as_str()), (400, "application/json"));
    assert!(text.starts_with(r#"{"error":{"message":"#), "{text}");
    let (status, _, text) = refresh(r#"{"sender":"0x12","manifest_id":"m"}"#).await;
    assert_eq!(status, 400, "{text}");
    let (status, _, text) =
        refresh(r#"{"sender":"0x1111111111111111111111111111111111111111"}"#).await;
    assert_eq!(status, 400, "{text}");
    let (status, _, text) = refresh(
        r#"{"sender":"0x1111111111111111111111111111111111111111","manifest_id":"abcd0123"}"#,
    )
    .await;
    assert_eq!(status, 409);
    assert_eq!(
        text,
        "{\"error\":{\"message\":\"fixed price not found for session\"}}\n"
    );
    h.shutdown().await;
}
