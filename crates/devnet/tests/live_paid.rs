//! Paid live-runner sessions (spec §1.8-1.10, §5.10): the 402 challenge, the signer's `live`
//! payment, admission with session ID = manifest ID, duplicates, follow-up payments, and the
//! meter releasing the session when the balance runs out.

mod common;

use std::time::Duration;

use common::*;
use lpgw_devnet::DevnetConfig;
use lpgw_proto::PaymentResult;
use prost::Message as _;
use serde_json::{Value, json};

/// The default Scope runner price, 2 USD per hour at 2000 USD per ETH.
const WEI_PER_SEC: i64 = 277_777_777_777;

fn priced() -> DevnetConfig {
    DevnetConfig {
        payment_interval: Duration::from_millis(200),
        ..priced_with_signer()
    }
}

#[tokio::test]
async fn challenge_paid_admission_duplicate_payment_stop() {
    let h = devnet(priced()).await;
    let svc = h.orchestrator_url().to_string();
    let route = h.scope_runner().unwrap();
    let p = runner_where(&discovery_json(&h).await, "mode", "persistent");
    assert_eq!(
        p["price_info"],
        json!({"price": WEI_PER_SEC, "currency": "wei", "unit": "seconds"})
    );

    let url = format!("{svc}/apps/{route}/session");
    let (s, b) = status_text(http().post(&url)).await;
    assert_eq!(s, 402);
    assert_eq!(
        b,
        "{\"error\":{\"message\":\"invalid live runner payment signer address\"}}\n"
    );

    let r = send(
        http()
            .post(&url)
            .header("Livepeer-Payer-Address", h.signer_address()),
    )
    .await;
    assert_eq!(r.status().as_u16(), 402);
    assert_eq!(r.headers()["content-type"], "application/json");
    let ch: Value = r.json().await.unwrap();
    let mid = ch["manifest_id"].as_str().unwrap().to_string();
    assert_eq!(mid.len(), 8);
    assert_eq!(ch["orchestrator"], svc.as_str());
    assert_eq!(
        ch["payment_url"],
        format!("{svc}/apps/{route}/session/{mid}/payment")
    );
    let params = ch["payment_params"].as_str().unwrap().to_string();
    let info = decode_info(&params);
    let price = info.price_info.clone().unwrap();
    assert_eq!(
        (price.price_per_unit, price.pixels_per_unit),
        (WEI_PER_SEC, 1)
    );
    assert!(info.capabilities.is_none() && info.ticket_params.is_some());
    assert_eq!(info.auth_token.as_ref().unwrap().session_id, mid);
    assert!(
        h.live_sessions(&route).is_empty(),
        "no state kept for a challenge"
    );

    // The signer takes the discovery price padded by 1.2 % (a fraction) as the ceiling, and
    // refuses a ceiling below the runner's price.
    let padded = WEI_PER_SEC as f64 * 1.012;
    let low = generate(
        &h,
        json!({"orchestrator": params, "ManifestID": mid, "type": "live",
        "maxPrice": {"price": WEI_PER_SEC - 1, "currency": "wei", "unit": "seconds"}}),
    )
    .await;
    assert_eq!(low.status, 481, "{:?}", low.body);
    let first = generate(
        &h,
        json!({"orchestrator": params, "ManifestID": mid, "type": "live",
        "maxPrice": {"price": padded, "currency": "wei", "unit": "seconds"}}),
    )
    .await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    let admit = || status_text(with_payment(http().post(&url), &first.body));
    let (s, b) = admit().await;
    assert_eq!(s, 200, "{b}");
    let a: Value = serde_json::from_str(&b).unwrap();
    assert_eq!(a["session_id"], mid.as_str());
    assert_eq!(
        a["control_url"],
        format!("{svc}/apps/{route}/session/{mid}")
    );
    let (s, b) = admit().await;
    assert_eq!((s, b.as_str()), (409, "session already exists\n"));
    assert!(h.balance(h.signer_address(), &mid) > 0);

    // A follow-up payment to the session's payment URL.
    let next = generate(&h, json!({"orchestrator": params, "ManifestID": mid, "type": "live", "state": first.body["state"]})).await;
    assert_eq!(next.status, 200, "{:?}", next.body);
    let before = h.balance(h.signer_address(), &mid);
    let r = send(with_payment(
        http().post(ch["payment_url"].as_str().unwrap()),
        &next.body,
    ))
    .await;
    assert_eq!(r.status().as_u16(), 200);
    let res = PaymentResult::decode(r.bytes().await.unwrap())
        .unwrap()
        .info
        .unwrap();
    assert_eq!(res.auth_token.unwrap().session_id, mid);
    assert_eq!(res.price_info.unwrap().price_per_unit, WEI_PER_SEC);
    assert!(h.balance(h.signer_address(), &mid) >= before);

    // After a `480`, `/refresh-payment` hands out the session's own ticket parameters (worth
    // seconds of the runner's price, not the LV2V ones), so the signer still pays with them.
    let r = send(
        http()
            .post(format!("{svc}/refresh-payment"))
            .json(&json!({"sender": h.signer_address(), "manifest_id": mid})),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    let fresh: Value = r.json().await.unwrap();
    let fresh_params = fresh["payment_params"].as_str().unwrap().to_string();
    let fresh_info = decode_info(&fresh_params);
    let (tp, fresh_tp) = (
        info.ticket_params.as_ref().unwrap(),
        fresh_info.ticket_params.as_ref().unwrap(),
    );
    assert_eq!(
        (&fresh_tp.face_value, &fresh_tp.win_prob),
        (&tp.face_value, &tp.win_prob)
    );
    assert_eq!(fresh_info.price_info.unwrap().price_per_unit, WEI_PER_SEC);
    let again = generate(&h, json!({"orchestrator": fresh_params, "ManifestID": mid, "type": "live", "state": next.body["state"]})).await;
    // Paid with them, or nothing due yet (`482`); never "too many tickets".
    assert!(matches!(again.status, 200 | 482), "{:?}", again.body);
    // Payment for a missing session: 404.
    let (s, b) = status_text(http().post(format!("{svc}/apps/{route}/session/nope/payment"))).await;
    assert_eq!((s, b.as_str()), (404, "runner session not found\n"));

    // Stop (idempotent), then the session takes no more payments.
    for _ in 0..2 {
        let r = send(http().post(format!("{}/stop", a["control_url"].as_str().unwrap()))).await;
        assert_eq!(r.status().as_u16(), 204);
    }
    let r = send(with_payment(
        http().post(ch["payment_url"].as_str().unwrap()),
        &next.body,
    ))
    .await;
    assert_eq!(r.status().as_u16(), 404);
    h.shutdown().await;
}

#[tokio::test]
async fn meter_releases_session_when_payment_runs_out() {
    let h = devnet(priced()).await;
    let svc = h.orchestrator_url().to_string();
    let route = h.scope_runner().unwrap();
    let url = format!("{svc}/apps/{route}/session");
    let ch = send_json(
        http()
            .post(&url)
            .header("Livepeer-Payer-Address", h.signer_address()),
    )
    .await;
    let mid = ch["manifest_id"].as_str().unwrap().to_string();
    let first = generate(
        &h,
        json!({"orchestrator": ch["payment_params"], "ManifestID": mid, "type": "live"}),
    )
    .await;
    let r = send(with_payment(http().post(&url), &first.body)).await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(h.live_sessions(&route), vec![mid.clone()]);
    // The first payment buys about ten seconds; nothing more is paid.
    let released = tokio::time::timeout(Duration::from_secs(25), async {
        while !h.live_sessions(&route).is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(released.is_ok(), "meter released the unpaid session");
    h.shutdown().await;
}

#[tokio::test]
async fn bad_payment_headers_and_serverless_challenge() {
    let h = devnet(priced()).await;
    let svc = h.orchestrator_url().to_string();
    let route = h.scope_runner().unwrap();
    let (s, b) = status_text(
        http()
            .post(format!("{svc}/apps/{route}/session"))
            .header("Livepeer-Payment", "%%%"),
    )
    .await;
    assert_eq!(s, 402);
    assert!(b.starts_with("base64 decode error"));
    let r = send(
        http()
            .post(format!("{svc}/scope"))
            .header("Livepeer-Payer-Address", h.signer_address())
            .json(&json!({})),
    )
    .await;
    assert_eq!(r.status().as_u16(), 402);
    let ch: Value = r.json().await.unwrap();
    assert_eq!(ch["payment_url"], format!("{svc}/payment"));
    h.shutdown().await;
}

#[tokio::test]
async fn signer_discovery_lists_priced_runners() {
    let h = devnet(priced()).await;
    let r = send(http().get(format!(
        "{}/discover-orchestrators?caps=live-video-to-video%2Fscope",
        h.signer_url().unwrap()
    )))
    .await;
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.json().await.unwrap();
    let entry = &v[0];
    assert_eq!(entry["address"], h.orchestrator_url());
    assert!(
        entry["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("live-video-to-video/scope"))
    );
    let runners = entry["runners"].as_array().unwrap();
    let route = h.scope_runner().unwrap();
    let url = format!("{}/apps/{route}/session", h.orchestrator_url());
    let p = runners
        .iter()
        .find(|r| r["mode"] == "persistent" && r["url"] == url.as_str())
        .expect("priced persistent runner listed");
    assert_eq!(p["price_info"]["price"], WEI_PER_SEC);
    h.shutdown().await;
}

async fn fx_challenge(h: &lpgw_devnet::DevnetHandle, url: &str) -> Value {
    let r = send(
        http()
            .post(url)
            .header("Livepeer-Payer-Address", h.signer_address()),
    )
    .await;
    assert_eq!(r.status().as_u16(), 402);
    r.json::<Value>().await.unwrap()
}

async fn fx_pay(h: &lpgw_devnet::DevnetHandle, params: String, mid: &str) -> Value {
    let g = generate(
        h,
        json!({"orchestrator": params, "ManifestID": mid, "type": "fixed"}),
    )
    .await;
    assert_eq!(g.status, 200, "{:?}", g.body);
    g.body
}

async fn fx_send(url: &str, p: &Value) -> (u16, String) {
    status_text(with_payment(http().post(url), p)).await
}

#[tokio::test]
async fn onchain_prices_and_fixed_price_sessions() {
    let h = devnet(priced()).await;
    let svc = h.orchestrator_url().to_string();
    let base = json!({"runner_id":"fx","runner_url":"http://127.0.0.1:9","app":"test/fixed"});
    let (s, b) = heartbeat(&h, &base).await;
    assert_eq!((s, b.as_str()), (400, "price_info.price is required\n"));
    let mut bad = base.clone();
    bad["price_info"] = json!({"price": 1, "currency": "eur"});
    let (s, b) = heartbeat(&h, &bad).await;
    assert_eq!((s, b.as_str()), (400, "price_info.currency must be usd\n"));
    let mut ok = base.clone();
    ok["price_info"] = json!({"price": "0.001", "currency": "usd", "unit": "fixed"});
    let (s, b) = heartbeat(&h, &ok).await;
    assert_eq!(s, 200, "{b}");
    let fx = runner_where(&discovery_json(&h).await, "app", "test/fixed");
    assert_eq!(
        fx["price_info"],
        json!({"price": 500_000_000_000u64, "currency": "wei", "unit": "fixed"})
    );

    let url = format!("{svc}/apps/fx/session");
    // A payment declaring another price is refused before reservation.
    let ch = fx_challenge(&h, &url).await;
    let mid = ch["manifest_id"].as_str().unwrap().to_string();
    let mut info = decode_info(ch["payment_params"].as_str().unwrap());
    info.price_info.as_mut().unwrap().price_per_unit += 1;
    let p = fx_pay(&h, b64(&info), &mid).await;
    let (s, b) = fx_send(&url, &p).await;
    assert_eq!(
        (s, b.as_str()),
        (400, "payment price does not match live runner price\n")
    );
    assert!(h.live_sessions("fx").is_empty());

    // The right price: admitted, one unit accounted at once, no follow-up payments.
    let ch = fx_challenge(&h, &url).await;
    let mid = ch["manifest_id"].as_str().unwrap().to_string();
    let p = fx_pay(&h, ch["payment_params"].as_str().unwrap().to_string(), &mid).await;
    let credit = lpgw_proto::decode_payment(p["payment"].as_str().unwrap())
        .unwrap()
        .ticket_sender_params
        .len() as u128;
    let (s, b) = fx_send(&url, &p).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(h.live_sessions("fx"), vec![mid.clone()]);
    let balance = h.balance(h.signer_address(), &mid);
    assert!(credit >= 1);
    // Tickets are worth one fixed price each (plus rounding); one price was debited.
    assert!(balance < credit * 500_000_001_000, "{balance}");
    assert!(
        balance + 500_000_000_000 >= credit * 500_000_000_000,
        "{balance}"
    );
    let (s, b) = fx_send(ch["payment_url"].as_str().unwrap(), &p).await;
    assert_eq!(
        (s, b.as_str()),
        (
            409,
            "fixed-price live runner sessions do not accept follow-up payments\n"
        )
    );
    h.shutdown().await;
}

#[tokio::test]
async fn live_only_orchestrator_with_a_priced_idle_scope_runner() {
    let h = devnet(DevnetConfig {
        live: lpgw_devnet::LiveConfig {
            live_only: true,
            ..lpgw_devnet::LiveConfig::default()
        },
        ..priced()
    })
    .await;
    // The legacy path sees no AI-worker capacity.
    let (address, sig) = sign_info(&h).await;
    let capped = orch_info(
        &h,
        lpgw_proto::OrchestratorRequest {
            address: address.clone(),
            sig: sig.clone(),
            capabilities: Some(lv2v_caps("noop")),
            ignore_capacity_check: false,
        },
    )
    .await
    .unwrap_err();
    assert!(capped.message().contains("OrchestratorCapped"), "{capped}");
    let info = orch_info(
        &h,
        lpgw_proto::OrchestratorRequest {
            address,
            sig,
            capabilities: None,
            ignore_capacity_check: false,
        },
    )
    .await
    .unwrap();
    let (s, b) = start_lv2v(&h, r#"{"model_id":"noop"}"#, "", &offchain_seg(&info)).await;
    assert_eq!((s, b.as_str()), (503, "insufficient capacity\n"));
    // Discovery shows the Scope runner healthy, priced and idle.
    let p = runner_where(&discovery_json(&h).await, "mode", "persistent");
    assert_eq!(p["app"], "live-video-to-video/scope");
    assert_eq!(p["capacity_available"], 1);
    assert_eq!(p["capacity_used"], 0);
    assert_eq!(p["price_info"]["price"], WEI_PER_SEC);
    h.shutdown().await;
}
