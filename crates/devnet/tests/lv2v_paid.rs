//! Paid LV2V through the remote-signer emulator: the initial prepayment, follow-up
//! `/payment`s, replay protection, metering, and release of an unpaid session.

mod common;

use std::time::Duration;

use common::*;
use lpgw_devnet::DevnetConfig;
use lpgw_proto::PaymentResult;
use prost::Message as _;
use serde_json::json;

const PX_PER_SEC: u128 = 1280 * 720 * 30;

async fn payment_post(h: &lpgw_devnet::DevnetHandle, payment: &str, seg: &str) -> (u16, Vec<u8>) {
    let r = send(
        http()
            .post(format!("{}/payment", h.orchestrator_url()))
            .header("Livepeer-Payment", payment)
            .header("Livepeer-Segment", seg),
    )
    .await;
    (r.status().as_u16(), r.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn paid_start_then_payment_credits_balance() {
    let h = devnet(priced_with_signer()).await;
    let info = paid_info(&h, "noop").await;
    let first = generate(
        &h,
        json!({ "orchestrator": b64(&info), "type": "lv2v", "capabilities": b64(&lv2v_caps("noop")) }),
    )
    .await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let payment = first.body["payment"].as_str().unwrap();
    let seg = first.body["segCreds"].as_str().unwrap();
    let state = first.body["state"].clone();
    assert!(state["State"].is_string() && state["Sig"].is_string());
    let decoded = lpgw_proto::decode_payment(payment).unwrap();
    assert_eq!(hex(&decoded.sender), h.signer_address()[2..].to_lowercase());
    // 60 s of 720p30 at 1 wei/pixel, tickets worth 10 s each by default: 6 tickets.
    assert_eq!(decoded.ticket_sender_params.len(), 6);
    assert_eq!(decoded.expected_price, info.price_info);

    let (status, body) = start_lv2v(&h, r#"{"model_id":"noop"}"#, payment, seg).await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mid = v["manifest_id"].as_str().unwrap().to_string();
    assert_eq!(h.balance(h.signer_address(), &mid), 60 * PX_PER_SEC);

    // The same tickets cannot be spent twice.
    let (status, text) = start_lv2v(&h, r#"{"model_id":"noop"}"#, payment, seg).await;
    assert_eq!(
        (status, text.as_str()),
        (400, "invalid ticket senderNonce\n")
    );

    // Next payment for the session: state round-trips, manifest is the session's.
    let next = generate(
        &h,
        json!({ "orchestrator": b64(&info), "type": "lv2v", "ManifestID": mid, "state": state }),
    )
    .await;
    assert_eq!(next.status, 200, "{:?}", next.body);
    let p2 = next.body["payment"].as_str().unwrap();
    let s2 = next.body["segCreds"].as_str().unwrap();
    let seg2 = lpgw_proto::decode_seg_data(s2).unwrap();
    assert_eq!(seg2.manifest_id, mid.as_bytes());
    let n2 = lpgw_proto::decode_payment(p2)
        .unwrap()
        .ticket_sender_params
        .len() as u128;
    assert!(n2 >= 1);
    let (status, bytes) = payment_post(&h, p2, s2).await;
    assert_eq!(status, 200);
    let result = PaymentResult::decode(bytes.as_slice()).expect("binary PaymentResult");
    let rinfo = result.info.expect("info");
    assert_eq!(
        rinfo.auth_token, seg2.auth_token,
        "token echoed, not renewed"
    );
    let price = rinfo.price_info.expect("pinned price");
    assert_eq!((price.price_per_unit, price.pixels_per_unit), (1, 1));
    assert!(rinfo.ticket_params.is_some());
    assert_eq!(
        h.balance(h.signer_address(), &mid),
        60 * PX_PER_SEC + n2 * 10 * PX_PER_SEC
    );
    let (status, text) = payment_post(&h, p2, s2).await;
    assert_eq!(status, 400);
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "invalid ticket senderNonce\n"
    );

    // The pinned price makes the session refreshable.
    let r = send(
        http()
            .post(format!("{}/refresh-payment", h.orchestrator_url()))
            .json(&json!({ "sender": h.signer_address(), "manifest_id": mid })),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    let ch: serde_json::Value = r.json().await.unwrap();
    assert_eq!(ch["manifest_id"], mid.as_str());
    assert_eq!(
        ch["payment_url"],
        format!("{}/payment", h.orchestrator_url()).as_str()
    );
    let pinfo: lpgw_proto::OrchestratorInfo =
        lpgw_proto::headers::decode_b64(ch["payment_params"].as_str().unwrap()).unwrap();
    assert_eq!(pinfo.auth_token.unwrap().session_id, mid);
    h.shutdown().await;
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test]
async fn unpaid_session_is_released_by_the_meter() {
    // Tickets worth 1 s, metered every 100 ms: a 1-ticket payment lasts about a second.
    let h = devnet(DevnetConfig {
        ticket_ev: Some(PX_PER_SEC),
        payment_interval: Duration::from_millis(100),
        ..priced_with_signer()
    })
    .await;
    let info = paid_info(&h, "noop").await;
    let p = generate(&h, json!({ "orchestrator": b64(&info), "inPixels": 1 })).await;
    assert_eq!(p.status, 200, "{:?}", p.body);
    let (status, body) = start_lv2v(
        &h,
        r#"{"model_id":"noop"}"#,
        p.body["payment"].as_str().unwrap(),
        p.body["segCreds"].as_str().unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mid = v["manifest_id"].as_str().unwrap();
    let mut publ = lpgw_trickle::client::Publisher::new(
        v["publish_url"].as_str().unwrap(),
        "video/MP2T",
        Default::default(),
    )
    .unwrap();
    // Keep feeding input until the orchestrator closes the session for lack of funds.
    let closed = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            if publ
                .write_segment(bytes::Bytes::from_static(b"segment"))
                .await
                .is_err()
                || h.active_sessions() == 0
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(closed.is_ok(), "session was never released");
    bounded(async {
        while h.active_sessions() != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(!h.has_channel(mid) && !h.has_channel(&format!("{mid}-out")));
    assert_eq!(h.capacity_in_use("noop"), 0);
    assert!(h.balance(h.signer_address(), mid) < PX_PER_SEC);
    h.shutdown().await;
}

#[tokio::test]
async fn offchain_style_start_against_priced_orchestrator_is_refused() {
    let h = devnet(priced_with_signer()).await;
    let info = paid_info(&h, "noop").await;
    // Seg creds without the payer's signature fail the onchain check.
    let (status, text) = start_lv2v(&h, r#"{"model_id":"noop"}"#, "", &offchain_seg(&info)).await;
    assert_eq!((status, text.as_str()), (403, "ErrSegSig\n"));
    h.shutdown().await;
}
